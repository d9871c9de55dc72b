--- luasip.registrar{...}: a REGISTER handler for luasip.server, RFC 3261
-- §10.3 with Path (RFC 3327), over a luasip.location store.
--
-- For each REGISTER: Require is checked (only "path" is supported: 420
-- otherwise); with auth, the request is challenged (401) until it carries
-- valid credentials for the To user (403 for another user's AOR unless
-- `authorize` allows it); the AOR is the To URI canonicalised
-- (sip:user@host, host in lower case, no port or parameters); each
-- Contact's expiry comes from its expires parameter, else Expires, else
-- default_expires, capped at max_expires; a non-zero expiry below
-- min_expires gets 423 with Min-Expires; `*` with Expires: 0 removes every
-- binding; a binding from the same Call-ID with a CSeq not above the stored
-- one is left alone (an equal CSeq is a retransmission and succeeds, a
-- lower one fails with 500; `*` fails with 500 and removes nothing when a
-- binding has its Call-ID and a CSeq not below its own, §10.3 step 6);
-- the change is durable before the 200, which
-- lists every current binding with its remaining expires. A REGISTER
-- without Contact fetches the bindings. REGISTERs for one AOR are
-- processed one at a time. Replies are stateless: a retransmitted REGISTER
-- is simply processed again (with auth too: luasip.auth accepts the same
-- credentials again in the same transaction, see there).
-- @module luasip.registrar
-- @usage
--   local loc = luasip.location("sqlite:/var/lib/sip/location.db")
--   local reg = luasip.registrar { location = loc, auth = digest, min_expires = 60 }
--   srv:on("REGISTER", reg)           -- or function(req) ... reg(req) end
local core = require "luasip.core"
local log = require "luasip.log"
local task = require "luasip.task"
local server = require "luasip.server"

local M = {}

local Registrar = { __name = "luasip.registrar" }
Registrar.__index = Registrar

local KNOWN = {
  location = true, auth = true, authorize = true, domains = true, min_expires = true,
  max_expires = true, default_expires = true, max_contacts = true,
}

--- Create a registrar: what `luasip.registrar{...}` calls.
-- Misspelt options raise.
-- @tparam[opt] table opts options:
-- @tparam[opt] luasip.location opts.location the location store (default:
-- a new memory one, which `close` closes)
-- @tparam[opt] luasip.auth.Digest opts.auth a luasip.auth.digest; nil: no
-- authentication
-- @tparam[opt] function opts.authorize fn(user, aor, req) -> true when user
-- may register aor (default: the user part of the AOR equals user)
-- @tparam[opt] {string,...} opts.domains list of domains served; others get
-- 404 (default: any)
-- @tparam[opt] number opts.min_expires seconds; a shorter non-zero expiry
-- gets 423 (default 60)
-- @tparam[opt] number opts.max_expires seconds; longer expiries are capped
-- (default 3600)
-- @tparam[opt] number opts.default_expires seconds, without expires
-- parameter or Expires header (default 3600; at least min_expires)
-- @tparam[opt] number opts.max_contacts bindings per AOR (default 10;
-- more: 403)
-- @treturn Registrar the registrar, a handler for `server:on("REGISTER", reg)`
-- @raise "luasip.registrar: expected a table of options",
-- "luasip.registrar: unknown option 'NAME'"
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.registrar: expected a table of options", 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error("luasip.registrar: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local self = setmetatable({
    location = opts.location or require("luasip.location").open("memory:"),
    own_location = opts.location == nil,
    supported = { "path" },             -- merged into the server's by server:on
    auth = opts.auth,
    authorize = opts.authorize,
    min_expires = opts.min_expires or 60,
    max_expires = opts.max_expires or 3600,
    default_expires = opts.default_expires or 3600,
    max_contacts = opts.max_contacts or 10,
    locks = {},
  }, Registrar)
  if opts.domains then
    self.domains = {}
    for _, d in ipairs(opts.domains) do self.domains[d:lower()] = true end
  end
  if self.min_expires > self.default_expires then self.default_expires = self.min_expires end
  return self
end

--- The canonical AOR of a URI table (from msg.to.uri).
-- sip:user@host, the user unescaped and the host in lower case (msg:aor()
-- for a message). Also `luasip.registrar_aor(uri)`.
-- @tparam table uri a parsed URI (user, host)
-- @treturn ?string the AOR, or nil without a host
-- @usage registrar.aor(req.to.uri)  --> "sip:alice@example.com"
function M.aor(uri)
  if not uri or not uri.host then return nil end
  local host = uri.host:lower()
  if uri.user then
    local user = uri.user:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    return "sip:" .. user .. "@" .. host
  end
  return "sip:" .. host
end

-- One REGISTER per AOR at a time: a durable store yields between the
-- lookup and the write, and the CSeq checks need both to see one state.
local function lock(self, aor)
  local q = self.locks[aor]
  if not q then
    self.locks[aor] = {}
    return true
  end
  return task.wait(function(done)
    q[#q + 1] = done
    return function(reason)
      if reason then
        for i, w in ipairs(q) do if w == done then table.remove(q, i) break end end
      end
    end
  end, 30, "registrar")
end

local function unlock(self, aor)
  local q = self.locks[aor]
  if not q then return end
  local nxt = table.remove(q, 1)
  if nxt then nxt(true) else self.locks[aor] = nil end
end

local function contact_header(b, now)
  local v = "Contact: <" .. b.contact .. ">;expires=" .. math.max(0, math.floor(b.expires - now + 0.5))
  if b.q then v = v .. ";q=" .. string.format("%.3g", b.q) end
  return v .. "\r\n"
end

local date_at, date_line = nil, nil
local function date_header(now)
  now = math.floor(now)
  if now ~= date_at then
    date_at, date_line = now, os.date("!Date: %a, %d %b %Y %H:%M:%S GMT\r\n", now)
  end
  return date_line
end

-- The 200: every binding with its remaining expires (the values were
-- parsed by sofia on the way in, so they are safe to echo).
local function ok_reply(req, bindings, path)
  local now = core.time()
  local n = #bindings
  local text
  if n == 1 and not path then           -- the common case, no table
    text = date_header(now) .. contact_header(bindings[1], now)
  else
    local lines = { date_header(now) }
    for i = 1, n do lines[i + 1] = contact_header(bindings[i], now) end
    if path then
      for _, p in ipairs(path) do lines[#lines + 1] = "Path: " .. p .. "\r\n" end
    end
    text = table.concat(lines)
  end
  return req:reply(200, "OK", { header_text = text })
end

local ONLY_PATH = { path = true }

local function supports_path(msg)
  for _, v in ipairs(msg:headers("Supported")) do
    for tag in v:gmatch("[^,%s]+") do
      if tag:lower() == "path" then return true end
    end
  end
  return false
end

-- The contacts of the request with their expiry (seconds from now), or
-- nil, status, reason, headers. msg:contact_list() gives the parameters
-- as strings; each entry becomes { contact, expires, q, instance, reg_id }.
local function parse_contacts(self, msg)
  local contacts = msg:contact_list()
  local hdr = msg:header("Expires")
  local expires_hdr
  if hdr then
    expires_hdr = tonumber(hdr:match("^%s*(%d+)%s*$"))
    if not expires_hdr then return nil, 400, "Bad Expires" end
  end
  local star = false
  for i = 1, #contacts do
    local c = contacts[i]
    local uri = c.uri
    if uri == "*" then
      star = true
    else
      c.contact, c.uri = uri, nil
      local e = c.expires
      if e ~= nil then
        e = tonumber(e)
        if not e or e < 0 then return nil, 400, "Bad Contact Expires" end
      end
      e = math.floor(e or expires_hdr or self.default_expires)
      if e > 0 and e < self.min_expires then
        return nil, 423, "Interval Too Brief", { ["Min-Expires"] = tostring(self.min_expires) }
      end
      if e > self.max_expires then e = self.max_expires end
      c.expires = e
      local q = c.q
      if q then
        q = tonumber(q)
        if not q or q < 0 or q > 1 then return nil, 400, "Bad q-value" end
        c.q = q
      end
      if c.reg_id then c.reg_id = math.tointeger(tonumber(c.reg_id)) end
    end
  end
  if star then
    if #contacts > 1 or expires_hdr ~= 0 then return nil, 400, "Invalid Wildcard Contact" end
    return {}, true
  end
  return contacts, false
end

local function newer(b, call_id, cseq)
  if b.call_id ~= call_id then return true end
  return cseq > (b.cseq or 0)
end

-- The update of §10.3 steps 6-8 for one AOR: returns 200, or a status
-- and reason. Runs under the AOR's lock when the store can yield.
local function update(self, msg, aor, list, star, path, now)
  local loc = self.location
  local current = loc:_bindings(aor)     -- contact -> binding, maybe expired ones
  if #list == 0 and not star then return 200 end
  local call_id, cseq = msg.call_id, msg.cseq
  local set, remove = {}, {}
  if star then
    -- §10.3 step 6: a binding from this Call-ID with a CSeq not below
    -- the request's aborts the whole update.
    if current then
      for contact, b in pairs(current) do
        if b.expires > now then
          if not newer(b, call_id, cseq) then return 500, "Out of Order CSeq" end
          remove[#remove + 1] = contact
        end
      end
    end
  else
    local source, received = msg.source, nil
    if source then
      received = (msg.transport or "udp") .. ":" .. source .. ":" .. tostring(msg.source_port)
    end
    local ua = msg:header("User-Agent")
    local added                          -- contact -> true, for the count
    for i = 1, #list do
      local c = list[i]
      local contact = c.contact
      local old = current and current[contact]
      if old and old.expires <= now then old = nil end
      if old and not newer(old, call_id, cseq) then
        if old.call_id == call_id and cseq < (old.cseq or 0) then
          return 500, "Out of Order CSeq"
        end
        -- the same CSeq again: a retransmission, already applied
      elseif c.expires == 0 then
        if old then remove[#remove + 1] = contact end
      else
        set[#set + 1] = {
          aor = aor, contact = contact, expires = now + c.expires, q = c.q, call_id = call_id,
          cseq = cseq, path = path, received = received, user_agent = ua, instance = c.instance,
          reg_id = c.reg_id, updated = now,
        }
        if not old then
          added = added or {}
          added[contact] = true
        end
      end
    end
    -- bindings after the change: the live ones kept plus the new contacts
    local n = 0
    if current then
      for _, b in pairs(current) do
        if b.expires > now then n = n + 1 end
      end
      n = n - #remove
    end
    if added then for _ in pairs(added) do n = n + 1 end end
    if n > self.max_contacts then return 403, "Too Many Contacts" end
  end
  if #set == 0 and #remove == 0 then return 200 end
  local done, err = loc:_apply_trusted(aor, { remove_all = false, remove = remove, set = set })
  if not done then
    log.error("registrar: cannot store %s: %s", aor, tostring(err))
    return 500, "Location Store Failed"
  end
  return 200
end

--- A registrar, made by `luasip.registrar{...}` (`new`).
-- @type Registrar

--- Handle one REGISTER (the registrar is also callable: reg(req)).
-- It answers the request: 200 with the bindings, or 400, 403, 404, 405
-- (not a REGISTER), 420, 423, 500, or a 401 challenge. It may wait (the
-- auth lookup, a durable store, another REGISTER for the same AOR), so it
-- runs in the request's task.
-- @tparam luasip.server.Request req the request
-- @return what `req:reply` returns: true, or nil, err
-- @raise an error of the location store, or of the auth's lookup function,
-- propagates
function Registrar:handle(req)
  if req.method ~= "REGISTER" then return req:reply(405, nil, { headers = { Allow = "REGISTER" } }) end
  local msg = req.msg
  local bad = server.unknown_option_tags(msg, "Require", ONLY_PATH)
  if bad then return req:reply(420, "Bad Extension", { headers = { Unsupported = bad } }) end
  local aor, to_user, to_host = msg:aor()
  if not aor then return req:reply(404, "Not Found") end
  if self.domains and not self.domains[to_host] then
    return req:reply(404, "Domain Not Served")
  end
  if self.auth then
    local user, why = req:authenticate(self.auth, { proxy = false })
    if not user then
      if why ~= "missing" then log.info("registrar: %s from %s: %s", aor, tostring(req.source), why) end
      return req:challenge(self.auth, { proxy = false })
    end
    local allowed
    if self.authorize then allowed = self.authorize(user, aor, req) else allowed = (to_user == user) end
    if not allowed then return req:reply(403, "Forbidden") end
  end
  local list, star, reason, headers = parse_contacts(self, msg)
  if not list then return req:reply(star, reason, { headers = headers }) end

  local path
  if msg:header("Path") then path = msg:headers("Path") end
  local loc = self.location
  -- A store that yields between the lookup and the write needs the lock.
  local locked = not loc.backend.sync
  if locked and not lock(self, aor) then return req:reply(500, "Registrar Busy") end
  -- Fractional wall-clock seconds: with os.time() a binding for N
  -- seconds would live anywhere from N - 1 to N seconds.
  local ok, status, why = pcall(update, self, msg, aor, list, star, path, core.time())
  if locked then unlock(self, aor) end
  if not ok then error(status, 0) end
  if status ~= 200 then return req:reply(status, why) end
  return ok_reply(req, loc:_live(aor, core.time()), path and supports_path(msg) and path or nil)
end

Registrar.__call = Registrar.handle

--- Close the location store if the registrar made it.
function Registrar:close()
  if self.own_location then self.location:close() end
end

return M
