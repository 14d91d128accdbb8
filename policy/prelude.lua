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
  local c = civil(q.time_unix)
  return string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", c.year, c.month, c.day, c.hour, c.minute, c.second)
end

-- the nested view of the request that `lua:` conditions see as `req`
local function view(q)
  local r = q.view
  if r then return r end
  local h = {}
  for k, v in pairs(q.headers) do h[k] = v end
  r = {
    source = {principal = q.source_principal, ip = q.source_ip, port = q.source_port,
              namespace = q.source_namespace, trustDomain = q.source_trust_domain},
    destination = {service = q.destination_service, principal = q.destination_principal,
                   port = q.destination_port},
    request = {method = q.method, host = q.host, path = q.path, query = q.query,
               headers = h, protocol = q.protocol},
    connection = {mtls = q.mtls == "true", sni = q.sni},
    time = civil(q.time_unix),
  }
  q.view = r
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
  if r.key == nil then
    b.always[#b.always + 1] = id
    return
  end
  for _, v in ipairs(r.exact) do push(b.exact[r.key], v, id) end
  for _, v in ipairs(r.prefixes) do push(b.prefixes[r.key], v, id) end
end

local function finish_bucket(b)
  for _, key in ipairs({"principal", "path"}) do
    b.prefixes[key] = next(b.prefixes[key]) and prefix_index(b.prefixes[key]) or false
  end
  b.dry_allow_exists = b.dry_allow_exists or b.allow_exists
end

local function build()
  local services, names = {}, {}
  for _, p in ipairs(P) do
    if p.services then
      for _, s in ipairs(p.services) do
        if not services[s] then services[s] = true; names[#names + 1] = s end
      end
    end
  end
  WILDCARD = new_bucket(nil)
  for _, s in ipairs(names) do BUCKETS[s] = new_bucket(s) end
  for pi, p in ipairs(P) do
    local sel = p.services and set(p.services)
    if not sel then add_policy(WILDCARD, pi) end
    for _, s in ipairs(names) do
      if not sel or sel[s] then add_policy(BUCKETS[s], pi) end
    end
  end
  for id, r in ipairs(R) do
    local p = P[r.policy]
    if not p.services then add_rule(WILDCARD, id) end
    local sel = p.services and set(p.services)
    for _, s in ipairs(names) do
      if not sel or sel[s] then add_rule(BUCKETS[s], id) end
    end
  end
  finish_bucket(WILDCARD)
  for _, s in ipairs(names) do finish_bucket(BUCKETS[s]) end
end

-- candidate rules for q, ascending by id (= policy order, then rule order)
local lists, found = {}, {}
local function candidates(b, q)
  for i = #lists, 1, -1 do lists[i] = nil end
  local sp, path = q.source_principal, q.path
  if sp then
    local l = b.exact.principal[sp]
    if l then lists[#lists + 1] = l end
    if b.prefixes.principal then prefix_lookup(b.prefixes.principal, sp, lists) end
  end
  if path then
    local l = b.exact.path[path]
    if l then lists[#lists + 1] = l end
    if b.prefixes.path then prefix_lookup(b.prefixes.path, path, lists) end
  end
  if b.always[1] then lists[#lists + 1] = b.always end
  local n = #lists
  if n == 0 then return nil end
  if n == 1 then return lists[1] end
  local out, m = {}, 0
  for i = 1, n do
    for _, id in ipairs(lists[i]) do
      if found[id] == nil then found[id] = true; m = m + 1; out[m] = id end
    end
  end
  for i = 1, m do found[out[i]] = nil end
  sort(out)
  return out
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
  local b = BUCKETS[q.destination_service] or WILDCARD
  local ed, ea, dd, da, audit -- first matching rule ids per category
  local ids = candidates(b, q)
  if ids then
    for _, id in ipairs(ids) do
      local r = R[id]
      local p = P[r.policy]
      local need
      if p.action == "DENY" then need = (not p.dry and not ed) or not dd
      elseif p.action == "ALLOW" then need = (not p.dry and not ea) or not da
      else need = not p.dry and not audit end
      if need and r.fn(q, nil) then
        if p.action == "DENY" then
          if not p.dry and not ed then ed = id end
          if not dd then dd = id end
        elseif p.action == "ALLOW" then
          if not p.dry and not ea then ea = id end
          if not da then da = id end
        else
          audit = id
        end
      end
    end
  end
  local allow, pid, rid, reason
  if ed then
    allow, pid, rid = false, ed, ed
    reason = "denied by DENY policy " .. P[R[ed].policy].id .. " rule " .. R[ed].index
  elseif b.allow_exists then
    if ea then
      allow, pid = true, ea
      reason = "allowed by ALLOW policy " .. P[R[ea].policy].id .. " rule " .. R[ea].index
    else
      allow = false
      reason = "no ALLOW rule matched"
    end
  else
    allow = DEFAULT_ALLOW
    reason = "no ALLOW policy selects " .. (q.destination_service and ("service " .. q.destination_service) or "this request") ..
             (DEFAULT_ALLOW and "; default allow" or "; default deny")
  end
  local dry, dpol, drule
  if b.has_dry then
    local d
    if dd then dry, d = "deny", dd
    elseif b.dry_allow_exists then
      if da then dry, d = "allow", da else dry = "deny" end
    else dry = DEFAULT_ALLOW and "allow" or "deny" end
    if d then dpol, drule = P[R[d].policy].id, R[d].index end
  end
  local ppol, prule, status, body
  if pid then ppol, prule = P[R[pid].policy].id, R[pid].index end
  if not allow then status, body = deny_response(b, pid and R[pid].policy) end
  return allow, ppol, prule, reason, audit ~= nil, dry, dpol, drule, status, body
end

-- Every rule of every policy that selects the workload, with what failed.
local function explain(q)
  local b = BUCKETS[q.destination_service] or WILDCARD
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
