-- Ward policy bundle runtime (prepended to every compiled set).
-- The generated part below fills P (policies) and R (rules); build() then
-- indexes the rules per service so a decision looks at candidate rules only.
local ward, type, error, tostring, ipairs, pairs, next, sort = ward, type, error, tostring, ipairs, pairs, next, table.sort
local prefix, suffix = ward.prefix, ward.suffix
local regex, regex_match = ward.regex, ward.regex_match
local template, template_match = ward.template, ward.template_match
local cidr, cidr_match = ward.cidr, ward.cidr_match
local prefix_index, prefix_lookup = ward.prefix_index, ward.prefix_lookup
local condition = ward.condition

local P, R, K = {}, {}, {}
-- hot per-rule data in flat arrays (dense in memory): kind and function
local KIND, FN = {}, {}
-- rule kinds: what a match of the rule decides
local DENY <const>, ALLOW <const>, DRY_DENY <const>, DRY_ALLOW <const>, AUDIT <const> = 1, 2, 3, 4, 5
local DEFAULT_ALLOW = false

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function policy(p) P[#P + 1] = p; return p end
local function rule(p, index, key, exact, prefixes, fn)
  R[#R + 1] = {policy = p, index = index, key = key, exact = exact, prefixes = prefixes, fn = fn}
end

-- time: civil date from a Unix timestamp (UTC), without os.date
local function civil(t)
  local days, secs = t // 86400, t % 86400
  local z = days + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return {unix = t, year = y, month = m, day = d, hour = secs // 3600,
          minute = secs % 3600 // 60, second = secs % 60, weekday = (days + 4) % 7}
end

local function rfc3339(q)
  local c = civil(q[TIME_UNIX])
  return string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", c.year, c.month, c.day, c.hour, c.minute, c.second)
end

-- the nested view of the request that `lua:` conditions see as `req`
local function view(q)
  local r = q[VIEW]
  if r then return r end
  local h = {}
  for k, v in pairs(q[HEADERS]) do h[k] = v end
  r = {
    source = {principal = q[SOURCE_PRINCIPAL], ip = q[SOURCE_IP], port = q[SOURCE_PORT],
              namespace = q[SOURCE_NAMESPACE], trustDomain = q[SOURCE_TRUST_DOMAIN]},
    destination = {service = q[DESTINATION_SERVICE], principal = q[DESTINATION_PRINCIPAL],
                   port = q[DESTINATION_PORT]},
    request = {method = q[METHOD], host = q[HOST], path = q[PATH], query = q[QUERY],
               headers = h, protocol = q[PROTOCOL]},
    connection = {mtls = q[MTLS] == "true", sni = q[SNI]},
    time = civil(q[TIME_UNIX]),
  }
  q[VIEW] = r
  return r
end

local function lua_cond(fn, q, field)
  local ok = fn(view(q))
  if ok == true then return true end
  if ok == false or ok == nil then return false end
  error(field .. ": lua condition returned a " .. type(ok) .. ", not a boolean", 0)
end

-- ---- indexing ---------------------------------------------------------------

local BUCKETS, WILDCARD = {}, nil

local function new_bucket(service)
  return {service = service, policies = {}, rules = {}, exact = {principal = {}, path = {}},
          prefixes = {principal = {}, path = {}}, always = {}, allow_exists = false,
          dry_allow_exists = false, has_dry = false}
end

local function push(t, k, id)
  local l = t[k]
  if not l then l = {}; t[k] = l end
  if l[#l] ~= id then l[#l + 1] = id end
end

local function add_policy(b, pi)
  local p = P[pi]
  b.policies[#b.policies + 1] = pi
  if p.dry then b.has_dry = true end
  if p.action == "ALLOW" then
    if p.dry then b.dry_allow_exists = true else b.allow_exists = true end
  end
end

local function add_rule(b, id)
  local r = R[id]
  b.rules[#b.rules + 1] = id
  if r.kind == nil then return end -- a dry-run AUDIT decides nothing
  if r.key == nil then
    b.always[#b.always + 1] = id
    return
  end
  for _, v in ipairs(r.exact) do push(b.exact[r.key], v, id) end
  for _, v in ipairs(r.prefixes) do push(b.prefixes[r.key], v, id) end
end

local function finish_bucket(b)
  b.default_reason = "no ALLOW policy selects " ..
    (b.service and ("service " .. b.service) or "this workload") ..
    (DEFAULT_ALLOW and "; default allow" or "; default deny")
  for _, key in ipairs({"principal", "path"}) do
    b.prefixes[key] = next(b.prefixes[key]) and prefix_index(b.prefixes[key]) or false
  end
  b.dry_allow_exists = b.dry_allow_exists or b.allow_exists
end

local function build()
  local names, seen = {}, {}
  for _, p in ipairs(P) do
    for _, s in ipairs(p.services or {}) do
      if not seen[s] then seen[s] = true; names[#names + 1] = s end
    end
  end
  WILDCARD = new_bucket(nil)
  for _, s in ipairs(names) do BUCKETS[s] = new_bucket(s) end
  -- the buckets each policy goes in: its services, or every bucket
  local targets = {}
  for pi, p in ipairs(P) do
    local t = {}
    if p.services then
      for s in pairs(set(p.services)) do t[#t + 1] = BUCKETS[s] end
      table.sort(t, function(x, y) return x.service < y.service end)
    else
      t[1] = WILDCARD
      for _, s in ipairs(names) do t[#t + 1] = BUCKETS[s] end
    end
    targets[pi] = t
    for _, b in ipairs(t) do add_policy(b, pi) end
  end
  for id, r in ipairs(R) do
    local p = P[r.policy]
    r.id = p.id
    if p.action == "DENY" then r.kind = p.dry and DRY_DENY or DENY
    elseif p.action == "ALLOW" then r.kind = p.dry and DRY_ALLOW or ALLOW
    elseif not p.dry then r.kind = AUDIT end
    r.reason = (p.action == "DENY" and "denied by DENY policy " or "allowed by ALLOW policy ") ..
               p.id .. " rule " .. r.index
    for _, b in ipairs(targets[r.policy]) do add_rule(b, id) end
    r.exact, r.prefixes = nil, nil -- only the indexes need them
    KIND[id], FN[id] = r.kind or false, r.fn
  end
  finish_bucket(WILDCARD)
  for _, s in ipairs(names) do finish_bucket(BUCKETS[s]) end
end

-- The candidate lists for q: rule ids (each list ascending) that the indexes
-- give for its principal and path, plus the rules no index covers.
local lists = {}
local function collect(b, q)
  if next(lists) then -- left over by a decision that raised an error
    for k in pairs(lists) do lists[k] = nil end
  end
  local n = 0
  local sp, path = q[SOURCE_PRINCIPAL], q[PATH]
  if sp then
    local l = b.exact.principal[sp]
    if l then n = n + 1; lists[n] = l end
    if b.prefixes.principal then prefix_lookup(b.prefixes.principal, sp, lists); n = #lists end
  end
  if path then
    local l = b.exact.path[path]
    if l then n = n + 1; lists[n] = l end
    if b.prefixes.path then prefix_lookup(b.prefixes.path, path, lists); n = #lists end
  end
  if b.always[1] then n = n + 1; lists[n] = b.always end
  return n
end

-- ---- decision ----------------------------------------------------------------

local function deny_response(b, pi)
  if pi then
    local p = P[pi]
    if p.deny_status then return p.deny_status, p.deny_body end
  end
  for _, i in ipairs(b.policies) do
    local p = P[i]
    if p.action == "ALLOW" and not p.dry and p.deny_status then return p.deny_status, p.deny_body end
  end
  return 403, nil
end

-- Returns: allow, policy, rule, reason, audit, dry (nil|"allow"|"deny"),
-- dry_policy, dry_rule, deny_status, deny_body
local function decide(q, ex)
  local b = BUCKETS[q[DESTINATION_SERVICE]] or WILDCARD
  -- the lowest matching rule id per category: enforced deny/allow, the dry
  -- run's deny/allow (enforced rules count there too), audit
  local ed, ea, dd, da, audit
  for li = 1, collect(b, q) do
    local l = lists[li]
    lists[li] = nil
    for j = 1, #l do
      local id = l[j]
      local k = KIND[id]
      if k == DENY then
        if (not ed or id < ed) and FN[id](q, nil) then
          ed = id
          if not dd or id < dd then dd = id end
        end
      elseif k == ALLOW then
        if (not ea or id < ea) and FN[id](q, nil) then
          ea = id
          if not da or id < da then da = id end
        end
      elseif k == DRY_DENY then
        if (not dd or id < dd) and FN[id](q, nil) then dd = id end
      elseif k == DRY_ALLOW then
        if (not da or id < da) and FN[id](q, nil) then da = id end
      elseif k == AUDIT and not audit and FN[id](q, nil) then
        audit = id
      end
    end
  end
  local allow, pid, reason
  if ed then
    allow, pid, reason = false, ed, R[ed].reason
  elseif b.allow_exists then
    if ea then
      allow, pid, reason = true, ea, R[ea].reason
    else
      allow, reason = false, "no ALLOW rule matched"
    end
  else
    allow, reason = DEFAULT_ALLOW, b.default_reason
  end
  local dry, dpol, drule
  if b.has_dry then
    local d
    if dd then dry, d = "deny", dd
    elseif b.dry_allow_exists then
      if da then dry, d = "allow", da else dry = "deny" end
    else dry = DEFAULT_ALLOW and "allow" or "deny" end
    if d then dpol, drule = R[d].id, R[d].index end
  end
  local ppol, prule, status, body
  if pid then ppol, prule = R[pid].id, R[pid].index end
  if not allow then status, body = deny_response(b, pid and R[pid].policy) end
  return allow, ppol, prule, reason, audit ~= nil, dry, dpol, drule, status, body
end

-- Every rule of every policy that selects the workload, with what failed.
local function explain(q)
  local b = BUCKETS[q[DESTINATION_SERVICE]] or WILDCARD
  local out, byp = {}, {}
  for _, pi in ipairs(b.policies) do
    local p = P[pi]
    local e = {policy = p.id, action = p.action, mode = p.dry and "dry-run" or "enforce",
               source = p.src, rules = {}}
    out[#out + 1] = e
    byp[pi] = e
  end
  for _, id in ipairs(b.rules) do
    local r = R[id]
    local failed = {}
    local ok = r.fn(q, failed)
    local e = byp[r.policy]
    e.rules[#e.rules + 1] = ok and {rule = r.index, matched = true}
                                or {rule = r.index, matched = false, failed = failed}
  end
  return out
end

-- ---- generated policies ---------------------------------------------------------
