-- ---- generated policies ---------------------------------------------------------

-- shop/hostile (tests/unit/policy/golden/hostile.yaml:3:1)
policy{id = "shop/hostile", action = "ALLOW", dry = false, deny_status = 403, deny_body = "\034]] end return true --", src = "tests/unit/policy/golden/hostile.yaml:3"}
-- shop/hostile rules[0] (tests/unit/policy/golden/hostile.yaml:8:7)
K[1] = set{"/a\034]] os.exit() --[[", "/b\010 return true --", "/c\092\034\092", "/%s%d%%", "/end function local"}
rule(1, 0, "path", {"/a\034]] os.exit() --[[", "/b\010 return true --", "/c\092\034\092", "/%s%d%%", "/end function local"}, {}, function(q, ex)
  local v, ok
  ok = false
  repeat -- to[0]
    v = q[PATH]
    if v == nil or not (K[1][v]) then
      if ex then ex[#ex + 1] = "to[0].paths" end
      break
    end
    ok = true
  until true
  if not ok then return false end
  v = q[HEADERS]["x-evil"]
  if v == nil or not (v == "\013\010-- comment\010return true" or v == "\195\169\228\184\173" or v == "d\000e" or v == "]]..(function() return true end)()..[[") then
    if ex then ex[#ex + 1] = "when[0].values" end
    return false
  end
  return true
end)

-- ---- end of generated policies ----
DEFAULT_ALLOW = false
build()
return {decide = decide, explain = explain, uses = 133186, revision = "2d22da6339deba44400309647b5e8b9a76ee3caa96685dfa55f6671364cc6330"}
