-- ---- generated policies ---------------------------------------------------------

-- shop/every-matcher (tests/unit/policy/golden/matchers.yaml:2:1)
policy{id = "shop/every-matcher", action = "ALLOW", dry = false, services = {"payments", "inventory"}, deny_status = 403, deny_body = "forbidden by payments policy", src = "tests/unit/policy/golden/matchers.yaml:2"}
-- shop/every-matcher rules[0] (tests/unit/policy/golden/matchers.yaml:9:7)
K[1] = cidr{"10.0.0.0/8", "2001:db8::/32"}
K[2] = cidr{"10.66.0.0/16"}
K[3] = set{"GET", "HEAD", "PUT", "PATCH", "POST", "OPTIONS"}
K[4] = template("/v1/users/{*}/orders/{**}")
K[5] = regex("^/v2/[0-9]+$")
K[6] = cidr{"10.1.0.0/16"}
rule(1, 0, nil, nil, nil, function(q, ex)
  local v, ok
  ok = false
  repeat -- from[0]
    v = q[SOURCE_PRINCIPAL]
    if v == nil or not (v == "spiffe://example.org/ns/shop/sa/checkout" or prefix(v, "spiffe://example.org/ns/ops/")) then
      if ex then ex[#ex + 1] = "from[0].principals" end
      break
    end
    v = q[SOURCE_PRINCIPAL]
    if v ~= nil and (suffix(v, "/sa/intruder")) then
      if ex then ex[#ex + 1] = "from[0].notPrincipals" end
      break
    end
    ok = true
  until true
  if not ok then repeat -- from[1]
    v = q[SOURCE_NAMESPACE]
    if v == nil or not (v == "shop" or prefix(v, "sh")) then
      if ex then ex[#ex + 1] = "from[1].namespaces" end
      break
    end
    v = q[SOURCE_NAMESPACE]
    if v ~= nil and (v == "quarantine") then
      if ex then ex[#ex + 1] = "from[1].notNamespaces" end
      break
    end
    v = q[SOURCE_TRUST_DOMAIN]
    if v == nil or not (v == "example.org") then
      if ex then ex[#ex + 1] = "from[1].trustDomains" end
      break
    end
    v = q[SOURCE_IP]
    if v == nil or not (cidr_match(K[1], v)) then
      if ex then ex[#ex + 1] = "from[1].ipBlocks" end
      break
    end
    v = q[SOURCE_IP]
    if v ~= nil and (cidr_match(K[2], v)) then
      if ex then ex[#ex + 1] = "from[1].notIpBlocks" end
      break
    end
    ok = true
  until true end
  if not ok then return false end
  ok = false
  repeat -- to[0]
    v = q[METHOD]
    if v == nil or not (K[3][v]) then
      if ex then ex[#ex + 1] = "to[0].methods" end
      break
    end
    v = q[METHOD]
    if v ~= nil and (v == "DELETE") then
      if ex then ex[#ex + 1] = "to[0].notMethods" end
      break
    end
    v = q[HOST]
    if v == nil or not (v == "payments.shop" or suffix(v, ".internal")) then
      if ex then ex[#ex + 1] = "to[0].hosts" end
      break
    end
    v = q[HOST]
    if v ~= nil and (v == "evil.example") then
      if ex then ex[#ex + 1] = "to[0].notHosts" end
      break
    end
    v = q[PATH]
    if v == nil or not (v == "/v1/items" or prefix(v, "/v1/items/") or suffix(v, ".json") or template_match(K[4], v) or regex_match(K[5], v)) then
      if ex then ex[#ex + 1] = "to[0].paths" end
      break
    end
    v = q[PATH]
    if v ~= nil and (v == "/v1/items/secret") then
      if ex then ex[#ex + 1] = "to[0].notPaths" end
      break
    end
    v = q[DESTINATION_PORT]
    if v == nil or not (v == 8443) then
      if ex then ex[#ex + 1] = "to[0].ports" end
      break
    end
    v = q[DESTINATION_PORT]
    if v ~= nil and (v == 22) then
      if ex then ex[#ex + 1] = "to[0].notPorts" end
      break
    end
    ok = true
  until true
  if not ok then return false end
  v = q[HEADERS]["x-tenant"]
  if v == nil or not (v == "acme" or prefix(v, "beta-")) then
    if ex then ex[#ex + 1] = "when[0].values" end
    return false
  end
  if v ~= nil and (v == "beta-blocked") then
    if ex then ex[#ex + 1] = "when[0].notValues" end
    return false
  end
  v = q[SOURCE_IP]
  if v == nil or not (cidr_match(K[6], v)) then
    if ex then ex[#ex + 1] = "when[1].values" end
    return false
  end
  v = q[DESTINATION_PORT] and tostring(q[DESTINATION_PORT])
  if v == nil or not (v == "8443") then
    if ex then ex[#ex + 1] = "when[2].values" end
    return false
  end
  v = rfc3339(q)
  if v == nil or not (prefix(v, "2026-")) then
    if ex then ex[#ex + 1] = "when[3].values" end
    return false
  end
  return true
end)
-- shop/every-matcher rules[1] (tests/unit/policy/golden/matchers.yaml:36:7)
rule(1, 1, nil, nil, nil, function(q, ex)
  local v, ok
  return true
end)

-- default/no-admin (tests/unit/policy/golden/matchers.yaml:39:1)
policy{id = "default/no-admin", action = "DENY", dry = false, src = "tests/unit/policy/golden/matchers.yaml:39"}
-- default/no-admin rules[0] (tests/unit/policy/golden/matchers.yaml:45:7)
K[7] = condition("req.time.hour < 8 or req.time.hour >= 18", "tests/unit/policy/golden/matchers.yaml:47")
rule(2, 0, "path", {}, {"/admin/"}, function(q, ex)
  local v, ok
  ok = false
  repeat -- to[0]
    v = q[PATH]
    if v == nil or not (prefix(v, "/admin/")) then
      if ex then ex[#ex + 1] = "to[0].paths" end
      break
    end
    ok = true
  until true
  if not ok then return false end
  if not lua_cond(K[7], q, "when[0].lua") then
    if ex then ex[#ex + 1] = "when[0].lua" end
    return false
  end
  return true
end)

-- ops/shadow (tests/unit/policy/golden/matchers.yaml:49:1)
policy{id = "ops/shadow", action = "AUDIT", dry = true, src = "tests/unit/policy/golden/matchers.yaml:49"}

-- ---- end of generated policies ----
DEFAULT_ALLOW = false
build()
return {decide = decide, explain = explain, uses = 524286, revision = "509df541cca3a64471b3a7da8bd3662d9ac82050d807dccec954913bdc63afe8"}
