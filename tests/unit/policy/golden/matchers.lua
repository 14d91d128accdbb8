-- ---- generated policies ----

-- shop/every-matcher (tests/unit/policy/golden/matchers.yaml:2:1)
policies[1] = {id = "shop/every-matcher", action = "ALLOW", mode = "enforce", services = {"payments", "inventory"}, deny_status = 403, deny_body = "forbidden by payments policy", source = "tests/unit/policy/golden/matchers.yaml:2"}
-- shop/every-matcher rules[0] (tests/unit/policy/golden/matchers.yaml:9:7)
rules[#rules + 1] = {policy = 1, index = 0,
  from = {
    {principals = {"spiffe://example.org/ns/shop/sa/checkout", "spiffe://example.org/ns/ops/*"}, notPrincipals = {"*/sa/intruder"}},
    {namespaces = {"shop", "sh*"}, notNamespaces = {"quarantine"}, trustDomains = {"example.org"}, ipBlocks = {"10.0.0.0/8", "2001:db8::/32"}, notIpBlocks = {"10.66.0.0/16"}},
  },
  to = {
    {methods = {"GET", "HEAD", "PUT", "PATCH", "POST", "OPTIONS"}, notMethods = {"DELETE"}, hosts = {"payments.shop", "*.internal"}, notHosts = {"evil.example"}, ports = {8443}, notPorts = {22}, paths = {"/v1/items", "/v1/items/*", "*.json", "/v1/users/{*}/orders/{**}", {regex = "^/v2/[0-9]+$"}}, notPaths = {"/v1/items/secret"}},
  },
  when = {
    {key = "request.headers[x-tenant]", values = {"acme", "beta-*"}, notValues = {"beta-blocked"}},
    {key = "source.ip", values = {"10.1.0.0/16"}},
    {key = "destination.port", values = {"8443"}},
    {key = "time", values = {"2026-*"}},
  },
}
-- shop/every-matcher rules[1] (tests/unit/policy/golden/matchers.yaml:36:7)
rules[#rules + 1] = {policy = 1, index = 1,
}

-- default/no-admin (tests/unit/policy/golden/matchers.yaml:39:1)
policies[2] = {id = "default/no-admin", action = "DENY", mode = "enforce", source = "tests/unit/policy/golden/matchers.yaml:39"}
-- default/no-admin rules[0] (tests/unit/policy/golden/matchers.yaml:45:7)
rules[#rules + 1] = {policy = 2, index = 0,
  to = {
    {paths = {"/admin/*"}},
  },
  when = {
    {lua = condition("req.time.hour < 8 or req.time.hour >= 18", "tests/unit/policy/golden/matchers.yaml:47")},
  },
}

-- ops/shadow (tests/unit/policy/golden/matchers.yaml:49:1)
policies[3] = {id = "ops/shadow", action = "AUDIT", mode = "dry-run", source = "tests/unit/policy/golden/matchers.yaml:49"}

-- ---- end of generated policies ----
return {format = "ward-bundle/1", default = "deny", revision = "509df541cca3a64471b3a7da8bd3662d9ac82050d807dccec954913bdc63afe8", policies = policies, rules = rules}
