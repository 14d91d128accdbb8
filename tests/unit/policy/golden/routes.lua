-- ---- generated policies ----

-- route shop/payments (tests/unit/policy/golden/routes.yaml:2:1)
routes[1] = {id = "shop/payments", hosts = {"payments", "payments.shop.svc"}, source = "tests/unit/policy/golden/routes.yaml:2", http = {
  -- shop/payments http[0] canary (tests/unit/policy/golden/routes.yaml:8:7)
  {name = "canary", source = "tests/unit/policy/golden/routes.yaml:8",
    match = {
      {paths = {"/v2/*", "/v2"}, methods = {"GET", "HEAD"}, headers = {{name = "x-canary", exact = "1"}, {name = "x-user", prefix = "beta-"}, {name = "x-build", regex = "^[0-9]+$"}}, queryParams = {{name = "debug", exact = "on"}}},
      {headers = {{name = "x-canary", exact = "always"}}},
    },
    destinations = {{service = "payments-v2", weight = 10}, {service = "payments-v1", weight = 90}},
    timeout_ms = 2000,
    retries = {attempts = 2, perTryTimeout_ms = 500, on = {"connect-failure", "reset", "503", "504", "5xx", "gateway-error"}, nonIdempotent = true, maxBodyBytes = 65536},
    rewrite = {prefix = "/"},
    headers = {request = {set = {{name = "x-route", value = "canary"}}, add = {{name = "x-via", value = "ward"}}, remove = {"x-debug", "X-Internal"}}, response = {set = {{name = "Cache-Control", value = "no-store"}}}},
    rateLimit = {requests = 100, per_ms = 1000, key = "request.headers[x-user]"},
    mirror = {service = "payments-shadow", percent = 5},
  },
  -- shop/payments http[1] by-principal (tests/unit/policy/golden/routes.yaml:26:7)
  {name = "by-principal", source = "tests/unit/policy/golden/routes.yaml:26",
    match = {
      {paths = {"/v1/charges/{*}"}},
    },
    destinations = {{service = "payments-v1", weight = 100}},
    retries = {attempts = 1, on = {"connect-failure", "reset", "gateway-error"}, nonIdempotent = false, maxBodyBytes = 0},
    rateLimit = {requests = 10, per_ms = 60000, key = "source.principal"},
  },
  -- shop/payments http[2] stable (tests/unit/policy/golden/routes.yaml:31:7)
  {name = "stable", source = "tests/unit/policy/golden/routes.yaml:31",
    destinations = {{service = "payments-v1", weight = 100}},
  },
}}

-- route default/hostile (tests/unit/policy/golden/routes.yaml:35:1)
routes[2] = {id = "default/hostile", hosts = {"evil"}, source = "tests/unit/policy/golden/routes.yaml:35", http = {
  -- default/hostile http[0] h (tests/unit/policy/golden/routes.yaml:41:7)
  {name = "h", source = "tests/unit/policy/golden/routes.yaml:41",
    match = {
      {headers = {{name = "x-evil", exact = "\034]] os.exit() --[["}, {name = "x-two", regex = "a\092\034]==]"}}, queryParams = {{name = "q]]", prefix = "\034 .. os.exit() .. \034"}}},
    },
    destinations = {{service = "v1", weight = 100}},
    headers = {request = {set = {{name = "x-evil", value = "\034]] return true --[[ \092"}}}},
  },
}}

-- ---- end of generated policies ----
return {format = "ward-bundle/1", default = "deny", revision = "3ac4a87b205aebbacc662398dd3c3d942e83d9a6c5430fb532b3d41e2ca37999", policies = policies, rules = rules, routes = routes}
