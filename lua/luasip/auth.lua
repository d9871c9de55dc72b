--- Digest access authentication, server side (RFC 7616, RFC 8760 for SIP,
-- RFC 3261 §22): challenges with stateless signed nonces, verification of
-- Authorization / Proxy-Authorization, nonce-count replay tracking and
-- per-source throttling of failures. For the registrar and proxy roles.
--
-- `auth.digest{...}` makes an authenticator (a `Digest`): `a:check(msg)`
-- verifies a request's credentials and `a:challenge(msg)` makes the
-- challenge for one that has none, or wrong ones.
--
-- Nonces cost no memory to issue: hex of a millisecond timestamp, a
-- sequence number, 40 bits derived from a per-instance secret, and an
-- HMAC-SHA-256 over them keyed with that secret (32 bytes from
-- /dev/urandom), so a nonce altered, forged or issued by another instance
-- (or before a restart) fails. Only nonces with an accepted response are
-- remembered, with their highest nc (sofia's auth_module keeps none).
--
-- Retransmissions: requests answered statelessly (REGISTER) reach check
-- again when the client retransmits because the response was lost. The
-- same request with the same nc is accepted again for 64*T1 (32 s) when
-- it is that transaction: the same top Via branch (RFC 3261 magic
-- cookie), Call-ID and CSeq as the request that last raised the count.
-- A new branch, CSeq or Call-ID with an old nc is a "replay".
-- @module luasip.auth
-- @usage
--   local auth = require "luasip.auth"
--   local a = auth.digest{ realm = "example.com",
--                          lookup = function(user, realm) return db:password(user) end }
--   local user, why = a:check(req)                 -- or a:check(req, { proxy = true })
--   if not user then
--     if why == "throttled" then return 403 end          -- no challenge
--     local status, headers = a:challenge(req, { stale = why == "stale" })
--     return status, headers                             -- 401 + WWW-Authenticate
--   end
local core = require "luasip.core"

local M = {}

local HASHES = { ["MD5"] = true, ["SHA-256"] = true, ["SHA-512-256"] = true }
local RETRANSMIT_MS = 32000 -- 64*T1: how long a client retransmits a non-INVITE request
local OPTIONS = {
  realm = true, lookup = true, algorithms = true, nonce_ttl = true, max_failures = true,
  failure_window = true, max_nonces = true, max_sources = true,
}

local function misuse(msg, level) error("luasip.auth.digest: " .. msg, level or 3) end

-- ------------------------------------------------------------------------
-- HMAC (RFC 2104) and the credentials parser are in C (csrc/ldigest.c,
-- csrc/sip/credentials.c).

M._hmac = function(key, data, alg) -- for the spec's RFC 4231 vector
  return core.hmac(alg or "SHA-256", key, data)
end

--- Parse one credentials value (an Authorization header's).
-- The result is { scheme = lower-case, params = {name = value} } with
-- lower-case names and unquoted values, or nil when malformed (including a
-- parameter given twice, which could be read two ways).
-- @tparam string s the header value
-- @treturn ?table {scheme=, params=}, or nil (also for a non-string)
-- @usage auth.parse_credentials('Digest username="alice", realm="example.com"')
-- --> { scheme = "digest", params = { username = "alice", realm = "example.com" } }
function M.parse_credentials(s)
  if type(s) ~= "string" then return nil end
  local scheme, params = core.credentials(s)
  if not scheme then return nil end
  return { scheme = scheme, params = params }
end

-- ------------------------------------------------------------------------
-- Bounded FIFO of records, oldest first.

local function queue() return { first = 1, last = 0 } end
local function push(q, v) q.last = q.last + 1; q[q.last] = v end
local function peek(q) return q[q.first] end
local function pop(q)
  local v = q[q.first]
  q[q.first] = nil
  q.first = q.first + 1
  return v
end

-- ------------------------------------------------------------------------

-- Milliseconds on the monotonic clock, counted from the instance's
-- creation so that nonces do not tell the host's uptime.
local function now_ms(self) return math.floor(core.now() * 1000) - self._t0 end

local Digest = { __name = "luasip.auth.digest" }
Digest.__index = Digest

function Digest:__tostring()
  return string.format("luasip.auth.digest (realm %q, %s)", self.realm,
    table.concat(self.algorithms, ", "))
end


local function quote(s) return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"' end

local function check_positive(opts, name, default, integer)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0 and v < 1e12) or (integer and v ~= math.floor(v)) then
    misuse(name .. " must be a positive " .. (integer and "integer" or "number"), 4)
  end
  return v
end

local function read_secret()
  local f, err = io.open("/dev/urandom", "rb")
  if not f then return nil, err end
  local s = f:read(32)
  f:close()
  if not s or #s ~= 32 then return nil, "short read from /dev/urandom" end
  return s
end

--- Users and passwords from a file of "name password [more...]" lines.
-- Blank lines and # comments are skipped.
-- @tparam string path the file
-- @treturn table name -> password, for a lookup function
-- @treturn table name -> { the further fields } (a PIN, say)
-- @raise "luasip.auth.read_users: " and why the file cannot be opened
-- @usage local users = auth.read_users("users.txt")
-- local a = auth.digest { realm = "example.com", lookup = function(user) return users[user] end }
function M.read_users(path)
  local users, extra = {}, {}
  local f, err = io.open(path, "r")
  if not f then error("luasip.auth.read_users: " .. err, 2) end
  for line in f:lines() do
    local name, password, rest = line:match("^%s*([^%s#]+)%s+(%S+)(.*)$")
    if name then
      users[name] = password
      local more = {}
      for w in rest:gsub("#.*$", ""):gmatch("%S+") do more[#more + 1] = w end
      extra[name] = more
    end
  end
  f:close()
  return users, extra
end

--- Create a digest authenticator: `luasip.auth.digest{...}`.
-- Returns nil, msg if no random secret could be read. Misspelt options
-- raise.
-- @tparam table opts options:
-- @tparam string opts.realm required, the protection realm
-- @tparam function opts.lookup required, fn(user, realm) -> password
-- string, or { ha1 = "hex" } (H(user:realm:password) for MD5, in hex), or
-- { ha1 = { MD5 = "..", ["SHA-256"] = "..", ["SHA-512-256"] = ".." } }
-- (or { password = "..." }), or nil for an unknown user. It may yield (it
-- runs in the caller's task); an error it raises propagates.
-- @tparam[opt] {string,...}|string opts.algorithms offered, one challenge
-- header each, in this order (RFC 8760 §2.4: most preferred first); any of
-- MD5, SHA-256, SHA-512-256 and their -sess variants; a comma-separated
-- string ("SHA-256,MD5") works too (default { "SHA-256", "MD5" })
-- @tparam[opt] number opts.nonce_ttl seconds a nonce stays fresh; an older
-- one with an otherwise right response gives "stale" (default 300)
-- @tparam[opt] number opts.max_failures failures ("invalid", "replay") a
-- source address may have within failure_window seconds; past that it gets
-- "throttled" until the window ends; a success does not reset the count
-- (default 10)
-- @tparam[opt] number opts.failure_window seconds (default 60)
-- @tparam[opt] number opts.max_nonces nonces whose count is remembered
-- (default 10000)
-- @tparam[opt] number opts.max_sources source addresses whose failures are
-- counted (default 10000)
-- @treturn[1] Digest the authenticator
-- @return[2] nil
-- @treturn[2] string "luasip.auth.digest: cannot read a secret: " and why
-- @raise "luasip.auth.digest: expected a table of options",
-- "luasip.auth.digest: unknown option 'NAME'", "luasip.auth.digest: realm
-- is required", "luasip.auth.digest: lookup is required (a function)",
-- "luasip.auth.digest: algorithms must be a non-empty list",
-- "luasip.auth.digest: unknown algorithm 'NAME' (MD5, SHA-256, SHA-512-256,
-- or -sess)", "luasip.auth.digest: algorithm NAME offered twice",
-- "luasip.auth.digest: NAME must be a positive number" (or "integer":
-- max_failures, max_nonces, max_sources)
-- @usage local a = assert(luasip.auth.digest { realm = "example.com",
--   lookup = function(user) return users[user] end, algorithms = "SHA-256,MD5" })
function M.digest(opts)
  if type(opts) ~= "table" then misuse("expected a table of options") end
  for k in pairs(opts) do
    if not OPTIONS[k] then misuse(string.format("unknown option '%s'", tostring(k))) end
  end
  if type(opts.realm) ~= "string" or opts.realm == "" then misuse("realm is required") end
  if type(opts.lookup) ~= "function" then misuse("lookup is required (a function)") end
  local algorithms, offered = {}, {}
  local list = opts.algorithms or { "SHA-256", "MD5" }
  if type(list) == "string" then
    local names = {}
    for a in list:gmatch("[^,%s]+") do names[#names + 1] = a end
    list = names
  end
  if type(list) ~= "table" or #list == 0 then
    misuse("algorithms must be a non-empty list")
  end
  for i, name in ipairs(list) do
    local up = type(name) == "string" and name:upper() or ""
    local base = up:gsub("%-SESS$", "")
    if not HASHES[base] then
      misuse(string.format("unknown algorithm '%s' (MD5, SHA-256, SHA-512-256, or -sess)",
        tostring(name)))
    end
    local canonical = base .. (up ~= base and "-sess" or "")
    if offered[up] then misuse("algorithm " .. canonical .. " offered twice") end
    offered[up] = { name = canonical, hash = base, sess = up ~= base }
    algorithms[i] = canonical
  end
  local secret, err = read_secret()
  if not secret then return nil, "luasip.auth.digest: cannot read a secret: " .. tostring(err) end
  local self = setmetatable({
    realm = opts.realm,
    algorithms = algorithms,
    nonce_ttl = check_positive(opts, "nonce_ttl", 300),
    max_failures = check_positive(opts, "max_failures", 10, true),
    failure_window = check_positive(opts, "failure_window", 60),
    max_nonces = check_positive(opts, "max_nonces", 10000, true),
    max_sources = check_positive(opts, "max_sources", 10000, true),
    _lookup = opts.lookup,
    _offered = offered,
    _secret = secret,
    _seed = core.hash("SHA-256", secret .. "seed"),
    _counter = 0,
    _t0 = math.floor(core.now() * 1000),
    -- Not a secret: it only lets a client tell our challenges apart.
    _opaque = core.hash("SHA-256", secret .. "opaque"):sub(1, 16),
    -- nonce -> { ts, nc, expires } for nonces with an accepted response.
    _nonces = {}, _nonce_queue = queue(), _nonce_count = 0,
    -- Sequence of the newest nonce evicted for room: an untracked nonce
    -- this old or older may have been evicted, so it is not trusted.
    _nonce_floor = -1,
    -- source -> { source, start, count } within the failure window.
    _sources = {}, _source_queue = queue(), _source_count = 0,
  }, Digest)
  return self
end

local function check_self(self, what)
  if getmetatable(self) ~= Digest then
    error("luasip.auth: " .. what .. ": call it as a method (a:" .. what .. "(...))", 3)
  end
end

-- ------------------------------------------------------------------------
-- Nonces: 12 hex digits of issue time (now_ms), 10 of a sequence number,
-- 10 of the counter hashed with the secret (unguessable), then 32 of
-- HMAC-SHA-256 over those. The sequence orders nonces for _count.

local NONCE_BODY, NONCE_LEN = 32, 64

function Digest:_new_nonce()
  self._counter = self._counter + 1
  local body = string.format("%012x%010x", now_ms(self), self._counter) ..
    core.hash("SHA-256", self._seed .. ":" .. self._counter):sub(1, 10)
  return body .. core.hmac("SHA-256", self._secret, body):sub(1, NONCE_LEN - NONCE_BODY)
end

-- Issue time (ms) and sequence number of a nonce we signed, or nil.
function Digest:_nonce_info(nonce)
  if #nonce ~= NONCE_LEN or nonce:find("[^0-9a-f]") then return nil end
  local body = nonce:sub(1, NONCE_BODY)
  if core.hmac("SHA-256", self._secret, body):sub(1, NONCE_LEN - NONCE_BODY) ~=
     nonce:sub(NONCE_BODY + 1) then
    return nil
  end
  return tonumber(body:sub(1, 12), 16), tonumber(body:sub(13, 22), 16)
end

-- Accept count nc for a fresh nonce, or say why not. Runs without
-- yielding, so two requests racing on one nonce cannot both pass. key
-- names the request's transaction (or is nil): a retransmission of the
-- request that raised the count passes again.
function Digest:_count(nonce, ts, seq, nc, key)
  local rec = self._nonces[nonce]
  if rec then
    if nc <= rec.nc then
      if nc == rec.nc and key and key == rec.key and now_ms(self) - rec.at <= RETRANSMIT_MS then
        return nil
      end
      return "replay"
    end
    rec.nc, rec.key, rec.at = nc, key, now_ms(self)
    return nil
  end
  -- Untracked and no newer than one evicted for room: it may be that one,
  -- so its count is unknown. The client retries with a new nonce.
  if seq <= self._nonce_floor then return "stale" end
  local now, q = now_ms(self), self._nonce_queue
  -- Drop expired records (a second late, so that a dropped nonce is surely
  -- stale by now), then the oldest if still full.
  while peek(q) and (peek(q).expires + 1000 < now or self._nonce_count >= self.max_nonces) do
    local old = pop(q)
    self._nonces[old.nonce] = nil
    self._nonce_count = self._nonce_count - 1
    if old.expires + 1000 >= now and old.seq > self._nonce_floor then self._nonce_floor = old.seq end
  end
  rec = { nonce = nonce, seq = seq, nc = nc, expires = ts + self.nonce_ttl * 1000, key = key, at = now }
  self._nonces[nonce] = rec
  self._nonce_count = self._nonce_count + 1
  push(q, rec)
  return nil
end

-- ------------------------------------------------------------------------
-- Failures per source address.

function Digest:_throttled(source)
  local rec = self._sources[source]
  return rec ~= nil and core.now() - rec.start < self.failure_window
    and rec.count >= self.max_failures
end

function Digest:_failed(source, why)
  local now, q, sources = core.now(), self._source_queue, self._sources
  local rec = sources[source]
  if rec and now - rec.start < self.failure_window then
    rec.count = rec.count + 1
    return nil, why
  end
  -- Records are queued by start, so the expired ones are at the head; a
  -- queued record that was since replaced is just dropped.
  while peek(q) do
    local old = peek(q)
    local current = sources[old.source] == old
    if current and now - old.start < self.failure_window and
       self._source_count < self.max_sources then
      break
    end
    pop(q)
    if current then
      sources[old.source] = nil
      self._source_count = self._source_count - 1
    end
  end
  if sources[source] == nil then self._source_count = self._source_count + 1 end
  rec = { source = source, start = now, count = 1 }
  sources[source] = rec
  push(q, rec)
  return nil, why
end

-- ------------------------------------------------------------------------
-- Checking a request

local function trim(s) return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", "")) end

local function header_values(msg, name)
  if type(msg.headers) == "function" then
    local list = msg:headers(name)
    if type(list) == "table" then return list end
  end
  return { msg:header(name) }
end

-- The Request-URI as the client wrote it: a luasip.message gives sofia's
-- re-encoding of the parsed URI, which can differ from the text in
-- harmless ways, so the request line of the raw message is tried too.
local function uri_matches(msg, uri)
  uri = trim(uri)
  local ruri = msg.uri
  if type(ruri) == "table" then ruri = ruri.str end
  if type(ruri) == "string" and trim(ruri) == uri then return true end
  if type(msg.raw) == "function" then
    local raw = msg:raw()
    local line = raw and raw:match("^[^ \r\n]+ +([^ \r\n]+) +SIP/")
    return line ~= nil and line == uri
  end
  return false
end

-- HA1 for hash from what lookup returned, or nil. A bare { ha1 = "hex" }
-- is MD5's: it cannot answer a SHA-256 response.
local function lookup_ha1(found, user, realm, hash)
  local password = found
  if type(found) == "table" then password = found.password end
  if type(password) == "string" then return core.hash(hash, user .. ":" .. realm .. ":" .. password) end
  if type(found) ~= "table" then return nil end
  local ha1 = found.ha1
  if type(ha1) == "table" then
    ha1 = ha1[hash]
  elseif hash ~= "MD5" then
    return nil
  end
  return type(ha1) == "string" and ha1:lower() or nil
end

-- The credentials for our realm among the header's values: params, or
-- nil and "missing" / "invalid" (some value was malformed). Values of
-- another scheme (Basic, ...) are someone else's and are skipped unparsed;
-- a value that does not even start with a scheme is malformed.
function Digest:_credentials(msg, name)
  local malformed = false
  for _, value in ipairs(header_values(msg, name)) do
    local scheme = type(value) == "string" and value:match("^[ \t]*([%w%-%.!%%%*_%+`'~]+)")
    if not scheme then
      malformed = true
    elseif scheme:lower() == "digest" then
      local _, params = core.credentials(value)
      local realm = params and params.realm
      if realm == self.realm then return params end
      if realm == nil then malformed = true end
    end
  end
  return nil, malformed and "invalid" or "missing"
end

-- Everything about credentials p that needs no password: the algorithm
-- entry and the nonce's issue time and sequence, or nil. qop=auth is required: we
-- always offer it, and RFC 2069 responses without it carry no nc or cnonce.
function Digest:_acceptable(msg, p)
  if not (p.username and p.nonce and p.uri and p.response and p.cnonce and p.cnonce ~= ""
          and p.qop and p.qop:lower() == "auth"
          and p.nc and p.nc:find("^%x%x%x%x%x%x%x%x$") and tonumber(p.nc, 16) > 0) then
    return nil
  end
  -- opaque is optional to return, but must be ours when it is
  if p.opaque ~= nil and p.opaque ~= self._opaque then return nil end
  local alg = self._offered[(p.algorithm or "MD5"):upper()]
  local ts, seq = self:_nonce_info(p.nonce)
  if not (alg and ts and ts <= now_ms(self) + 1000 and uri_matches(msg, p.uri)) then return nil end
  return alg, ts, seq
end

-- The transaction of a request, for telling a retransmission from a
-- replay: top Via branch (RFC 3261 ones only), Call-ID and CSeq; or nil.
local function transaction_key(msg)
  local via, call_id, cseq = msg:header("Via"), msg:header("Call-ID"), msg:header("CSeq")
  if type(via) ~= "string" or type(call_id) ~= "string" or type(cseq) ~= "string" then return nil end
  via = via:match("^[^,]*") -- the first value when several share a line
  local branch = via:match(";%s*[Bb][Rr][Aa][Nn][Cc][Hh]%s*=%s*(z9hG4bK[^;,%s]+)")
  if not branch then return nil end
  return branch .. "\0" .. trim(call_id) .. "\0" .. trim(cseq)
end

--- An authenticator, made by `luasip.auth.digest{...}`.
-- @type Digest

--- Check the credentials of request msg.
-- `a:check(msg [, {proxy = bool}])` -> user, or nil and why. The nonce
-- count of accepted credentials is remembered, and failures are counted
-- per source address (see the module).
-- @tparam luasip.server.Message|table msg the request: a luasip.message
-- or any table with method, uri (the Request-URI string, or a table with
-- .str), source (IP string) and header(self, name); headers(self, name),
-- when present, lets several credentials be searched
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.proxy check Proxy-Authorization instead of
-- Authorization (default false)
-- @treturn[1] string the user
-- @return[2] nil
-- @treturn[2] string why:
--
--   * "missing": no Digest credentials for this realm
--   * "stale": right response to an expired nonce: challenge with stale=true
--   * "invalid": bad response, unknown user, forged nonce, uri mismatch,
--     malformed header...
--   * "replay": nc not above the last one accepted for that nonce (but
--     see retransmissions in the module)
--   * "throttled": the source is over its failure budget: answer 403 and
--     send no challenge
-- @raise "luasip.auth: check: call it as a method (a:check(...))",
-- "luasip.auth: check: expected a request (a luasip.message or a table with
-- header())", "luasip.auth: check: options must be a table", "luasip.auth:
-- check: the request has no method"; an error of the lookup function
-- propagates
function Digest:check(msg, opts)
  check_self(self, "check")
  local mt = type(msg)
  if (mt ~= "table" and mt ~= "userdata") or type(msg.header) ~= "function" then
    error("luasip.auth: check: expected a request (a luasip.message or a table with header())", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("luasip.auth: check: options must be a table", 2)
  end
  local method = msg.method
  if type(method) ~= "string" then error("luasip.auth: check: the request has no method", 2) end
  local source = msg.source
  source = type(source) == "string" and source or "?"
  if self:_throttled(source) then return nil, "throttled" end

  local p, why = self:_credentials(msg, opts and opts.proxy and "Proxy-Authorization"
    or "Authorization")
  if not p then
    if why == "invalid" then return self:_failed(source, why) end
    return nil, why
  end
  local alg, ts, seq = self:_acceptable(msg, p)
  if not alg then return self:_failed(source, "invalid") end
  local user, nonce, uri = p.username, p.nonce, p.uri

  local found = self._lookup(user, self.realm)
  local ha1 = found ~= nil and lookup_ha1(found, user, self.realm, alg.hash)
  if not ha1 then return self:_failed(source, "invalid") end
  local function H(s) return core.hash(alg.hash, s) end
  if alg.sess then ha1 = H(ha1 .. ":" .. nonce .. ":" .. p.cnonce) end
  local want = H(table.concat({ ha1, nonce, p.nc, p.cnonce, p.qop, H(method .. ":" .. uri) }, ":"))
  if p.response:lower() ~= want then return self:_failed(source, "invalid") end

  if now_ms(self) - ts > self.nonce_ttl * 1000 then return nil, "stale" end
  why = self:_count(nonce, ts, seq, tonumber(p.nc, 16), transaction_key(msg))
  if why == "replay" then return self:_failed(source, why) end
  if why then return nil, why end
  return user
end

--- The challenge for an unauthenticated request: status, headers, reason.
-- `a:challenge(msg [, {proxy = bool, stale = bool}])`: one header value
-- per offered algorithm, each with a new nonce.
-- @tparam luasip.server.Message|table msg the request (nonces bind to
-- nothing in it)
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.proxy a proxy's 407 instead of a registrar's
-- 401 (default false)
-- @tparam[opt] boolean opts.stale add stale=true (the credentials were
-- right but their nonce had expired) (default false)
-- @treturn number 401, or 407 with opts.proxy
-- @treturn table { ["WWW-Authenticate"] = {...} }, or
-- { ["Proxy-Authenticate"] = {...} } with opts.proxy: headers for `req:reply`
-- @treturn string "Unauthorized", or "Proxy Authentication Required"
-- @raise "luasip.auth: challenge: call it as a method (a:challenge(...))",
-- "luasip.auth: challenge: options must be a table"
-- @usage local status, headers, reason = a:challenge(req.msg, { proxy = true })
-- req:reply(status, reason, { headers = headers })
function Digest:challenge(msg, opts)
  check_self(self, "challenge")
  if opts ~= nil and type(opts) ~= "table" then
    error("luasip.auth: challenge: options must be a table", 2)
  end
  local _ = msg -- nonces bind to nothing in the request
  local proxy, stale = opts and opts.proxy, opts and opts.stale
  local values = {}
  for i, alg in ipairs(self.algorithms) do
    values[i] = string.format('Digest realm=%s, nonce="%s", opaque="%s", algorithm=%s, qop="auth"%s',
      quote(self.realm), self:_new_nonce(), self._opaque, alg, stale and ", stale=true" or "")
  end
  if proxy then
    return 407, { ["Proxy-Authenticate"] = values }, "Proxy Authentication Required"
  end
  return 401, { ["WWW-Authenticate"] = values }, "Unauthorized"
end

return M
