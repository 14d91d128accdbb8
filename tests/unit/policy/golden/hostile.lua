-- ---- generated policies ----

-- shop/hostile (tests/unit/policy/golden/hostile.yaml:3:1)
policies[1] = {id = "shop/hostile", action = "ALLOW", mode = "enforce", deny_status = 403, deny_body = "\034]] end return true --", source = "tests/unit/policy/golden/hostile.yaml:3"}
-- shop/hostile rules[0] (tests/unit/policy/golden/hostile.yaml:8:7)
rules[#rules + 1] = {policy = 1, index = 0,
  to = {
    {paths = {"/a\034]] os.exit() --[[", "/b\010 return true --", "/c\092\034\092", "/%s%d%%", "/end function local"}},
  },
  when = {
    {key = "request.headers[x-evil]", values = {"\013\010-- comment\010return true", "\195\169\228\184\173", "d\000e", "]]..(function() return true end)()..[["}},
  },
}

-- ---- end of generated policies ----
return {format = "ward-bundle/1", default = "deny", revision = "2d22da6339deba44400309647b5e8b9a76ee3caa96685dfa55f6671364cc6330", policies = policies, rules = rules}
