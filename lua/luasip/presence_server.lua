--- luasip.presence_server{...}: a SIMPLE presence server and MESSAGE relay
-- as handlers on a luasip.server (RFC 3856 presence over RFC 6665
-- SUBSCRIBE/NOTIFY, RFC 3903 PUBLISH, RFC 3428 MESSAGE).
--
-- It installs SUBSCRIBE, PUBLISH and MESSAGE handlers on the server
-- (handlers = false: call pres:subscribe(req), pres:publish(req) and
-- pres:message(req) from handlers of your own).
--
-- SUBSCRIBE (Event: presence, or a package added with pres:package(),
-- such as voicemail's message-summary; others get 489 with Allow-Events): with
-- auth, the watcher is challenged (407) and must be the user of its From
-- (403 otherwise); Expires is capped at `max_expires`, a non-zero one below
-- `min_expires` gets 423; the watcher's standing with the presentity (the
-- Request-URI's AOR) decides the state: the presentity itself and watchers
-- on its allow list are active, those on its deny list get 403, unknown
-- ones get `unknown` ("pending" by default: a NOTIFY with no state until
-- pres:allow()). The subscription is durable before the 200; a NOTIFY
-- follows every accepted SUBSCRIBE and every change of the presentity's
-- state, one at a time per subscription (changes that come while one is
-- in flight are merged into the next). A NOTIFY answered with an error or
-- not at all ends the subscription; so does its expiry (a last NOTIFY
-- with reason=timeout).
--
-- PUBLISH (Event: presence, application/pidf+xml; other types get 415, a
-- malformed document 400): with auth, only the presentity's own user may
-- publish (403). A new publication gets an entity tag (SIP-ETag); a
-- PUBLISH with SIP-If-Match refreshes (no body), modifies (a body) or
-- removes (Expires: 0) the publication with that tag (412 when there is
-- none). Each 200 carries a new tag and the granted Expires.
--
-- A presentity's state: the tuples, notes and activities of all its
-- publications; with none, one tuple from its registration: "open" while
-- it has a binding in `location`, "closed" otherwise (REGISTER, un-REGISTER
-- and expiry reach the watchers through the location's change events).
--
-- MESSAGE (relay_message, default true): relayed to every registered
-- contact of the Request-URI's AOR in parallel; with none, 404 for a
-- Request-URI of ours (our address or domain), and any other is proxied on. With auth, the sender is
-- challenged (407) and must be the user of its From.
--
-- Other event packages (pres:package(event, spec)) share all of this:
-- the dialogs, durability, expiry and merged NOTIFYs; the package gives
-- the body (spec.document(resource)) and the policy, and calls
-- pres:changed(resource, event) when its state changed.
--
-- Options: see new (luasip.presence_server{...} is the same).
-- @module luasip.presence_server
-- @usage
--   local srv = assert(luasip.server { listen = "127.0.0.1:5060" })
--   local loc = luasip.location("memory:")
--   srv:on("REGISTER", luasip.registrar { location = loc })
--   local pres = luasip.presence_server { server = srv, location = loc }
--   pres:allow("sip:bob@example.com", "sip:alice@example.com")
local core = require "luasip.core"
local log = require "luasip.log"
local task = require "luasip.task"
local registrar = require "luasip.registrar"
local store_mod = require "luasip.store"

local M = {}

local Presence = { __name = "luasip.presence_server" }
Presence.__index = Presence

local PIDF = "application/pidf+xml"
local KNOWN = {
  server = true, location = true, auth = true, authorize = true, store = true, unknown = true,
  min_expires = true, max_expires = true, default_expires = true, handlers = true,
  relay_message = true,
}
-- After a restart, NOTIFY CSeqs jump this far past the last one stored
-- (they are stored with each SUBSCRIBE, not with each NOTIFY).
local CSEQ_JUMP = 10000

local function user_of(aor) return aor and aor:match("^sips?:([^@;]+)@") end

--- A presence server on opts.server (this is luasip.presence_server).
--
-- It installs the SUBSCRIBE, PUBLISH and MESSAGE handlers (see the top),
-- carries on the subscriptions its store holds, follows the location's
-- changes and sweeps expired publications and subscriptions once a second.
-- @tparam table opts options:
-- @tparam table opts.server the luasip.server (required)
-- @tparam[opt] luasip.location.Location opts.location the luasip.location of the registrar
-- @tparam[opt] table opts.auth a luasip.auth.digest; nil: no authentication
-- @tparam[opt] function opts.authorize fn(user, aor, req) -> true when user may act as aor (default: the user part of the AOR equals user)
-- @tparam[opt="memory:"] luasip.store.Store|string opts.store a luasip.store or its URL
-- @tparam[opt="pending"] string opts.unknown "pending", "allow" or "deny": watchers on neither list
-- @tparam[opt=60] number opts.min_expires the shortest non-zero Expires accepted (SUBSCRIBE and PUBLISH)
-- @tparam[opt=3600] number opts.max_expires the longest Expires granted (SUBSCRIBE and PUBLISH)
-- @tparam[opt=3600] number opts.default_expires the Expires of a request without one (SUBSCRIBE and PUBLISH)
-- @tparam[opt=true] boolean opts.handlers false: install no handlers
-- @tparam[opt=true] boolean opts.relay_message false: no MESSAGE handler
-- @treturn[1] Presence the presence server
-- @return[2] nil, message, code: the store's URL could not be opened
-- @raise `luasip.presence_server: expected a table of options`, `luasip.presence_server: unknown option 'NAME'`, `luasip.presence_server: server must be a luasip.server`, or `luasip.presence_server: unknown must be "pending", "allow" or "deny"`.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.presence_server: expected a table of options", 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error("luasip.presence_server: unknown option '" .. tostring(k) .. "'", 3) end
  end
  if type(opts.server) ~= "table" or not opts.server.agent then
    error("luasip.presence_server: server must be a luasip.server", 3)
  end
  local unknown = opts.unknown or "pending"
  if unknown ~= "pending" and unknown ~= "allow" and unknown ~= "deny" then
    error('luasip.presence_server: unknown must be "pending", "allow" or "deny"', 3)
  end
  local store = opts.store
  if store == nil or type(store) == "string" then
    local err, code
    store, err, code = store_mod.open(store)
    if not store then return nil, err, code end
  end
  local self = setmetatable({
    server = opts.server,
    location = opts.location,
    auth = opts.auth,
    authorize = opts.authorize or function(user, aor) return user_of(aor) == user end,
    store = store,
    own_store = opts.store == nil or type(opts.store) == "string",
    unknown = unknown,
    min_expires = opts.min_expires or 60,
    max_expires = opts.max_expires or 3600,
    default_expires = opts.default_expires or 3600,
    rt = {},            -- subscription id -> { sub =, cseq =, busy =, due =, final =, head = }
    watching = {},      -- watched key (see wkey) -> { id -> true }
    docs = {},          -- watched key -> the document last notified
    parsed = setmetatable({}, { __mode = "k" }), -- publication record -> its body parsed (or false)
    contact = "<" .. opts.server.uri .. ">", -- of our NOTIFYs
  }, Presence)
  for id, sub in store:each("sub") do self:_track(id, sub, sub.cseq + CSEQ_JUMP) end
  self.packages = { presence = { content_type = PIDF, document = function(aor) return self:document(aor) end } }
  self:install(opts)
  if self.location then
    self.location_sub = self.location:on_change(function(ev) self:_changed(ev.aor) end)
  end
  self.timer = core.timer(function() self:_sweep() end)
  self.timer:start(1, 1)
  return self
end

--- A presence server, made by new (or luasip.presence_server).
-- @type Presence

--- Install the handlers opts asks for on the server (also on hot reload).
--
-- new calls it; luasip.reload calls it again for a reloaded script.
-- @tparam table opts the options of new: handlers (false: install nothing) and relay_message (false: no MESSAGE handler)
function Presence:install(opts)
  if opts.handlers == false then return end
  local srv = self.server
  srv:on("SUBSCRIBE", function(req) return self:subscribe(req) end)
  srv:on("PUBLISH", function(req) return self:publish(req) end)
  if opts.relay_message ~= false then srv:on("MESSAGE", function(req) return self:message(req) end) end
end

function Presence:__tostring()
  local n = 0
  for _ in pairs(self.rt) do n = n + 1 end
  return string.format("luasip.presence_server (%d subscriptions)", n)
end

-- ------------------------------------------------------------------------
-- Helpers

-- What a subscription watches: the presentity for presence, else the
-- event package and its resource.
local function wkey(event, resource)
  if event == "presence" then return resource end
  return event .. " " .. resource
end

local function event_of(req)
  local e = req:header("Event")
  return e and e:match("^%s*([^;%s]+)"):lower()
end

-- The granted expiry, or nil after answering 423 / 400.
function Presence:_expires(req)
  local v = req:header("Expires")
  local n = v == nil and self.default_expires or tonumber(v)
  if not n or n < 0 or n ~= math.floor(n) then
    req:reply(400, "Bad Expires")
    return nil
  end
  if n > 0 and n < self.min_expires then
    req:reply(423, nil, { headers = { ["Min-Expires"] = tostring(self.min_expires) } })
    return nil
  end
  return math.min(n, self.max_expires)
end

-- With auth: the request's sender must be `aor`'s user. Returns true, or
-- false after answering (407 / 403).
function Presence:_authorized(req, aor)
  if not self.auth then return true end
  local user = req:authenticate(self.auth, { proxy = true })
  if not user then
    req:challenge(self.auth, { proxy = true })
    return false
  end
  if not self.authorize(user, aor, req) then
    req:reply(403, "Not Your Identity")
    return false
  end
  return true
end

local function from_aor(req) return req.from and registrar.aor(req.from.uri) end

--- The event packages served, for Allow-Events: "presence, message-summary".
-- @treturn string the package names, presence first, then in order, separated by ", "
function Presence:allow_events()
  local names = {}
  for name in pairs(self.packages) do names[#names + 1] = name end
  table.sort(names, function(a, b) return a == "presence" or (b ~= "presence" and a < b) end)
  return table.concat(names, ", ")
end

--- Serve another event package (RFC 6665) through the same subscriptions.
--
-- spec.content_type (of its NOTIFY bodies), spec.document(resource) ->
-- the body now (resource: the AOR of the Request-URI), and optionally
-- spec.policy(resource, watcher, req) -> "allow", "pending", "deny", or
-- nil for no such resource (404); the default lets only the resource's
-- own user subscribe. Call pres:changed(resource, event) when the body
-- changed. The presence package itself cannot be replaced. A package
-- added again replaces the earlier one.
-- @tparam string event the event package's name, such as "message-summary" (case-insensitive)
-- @tparam table spec the package:
-- @tparam string spec.content_type the Content-Type of its NOTIFY bodies
-- @tparam function spec.document fn(resource) -> the body now (a string)
-- @tparam[opt] function spec.policy fn(resource, watcher, req) -> "allow", "pending", "deny", or nil (404); default: "allow" for the resource itself, "deny" for others
-- @raise `presence_server:package: event must be an event package name`, `presence_server:package: presence is built in`, or `presence_server:package: expected { content_type = string, document = fn [, policy = fn] }`.
function Presence:package(event, spec)
  if type(event) ~= "string" or not event:match("^[%w%.%-!%%%*_%+`'~]+$") then
    error("presence_server:package: event must be an event package name", 2)
  end
  event = event:lower()
  if event == "presence" then error("presence_server:package: presence is built in", 2) end
  if type(spec) ~= "table" or type(spec.content_type) ~= "string" or type(spec.document) ~= "function"
      or (spec.policy ~= nil and type(spec.policy) ~= "function") then
    error("presence_server:package: expected { content_type = string, document = fn [, policy = fn] }", 2)
  end
  self.packages[event] = {
    content_type = spec.content_type, document = spec.document,
    policy = spec.policy or function(resource, watcher) return resource == watcher and "allow" or "deny" end,
  }
end

--- The state of resource (an AOR) in the event package changed.
--
-- Its watchers get a NOTIFY when the body did (merged with one in
-- flight).
-- @tparam string resource the AOR
-- @tparam[opt="presence"] string event the event package
-- @raise `presence_server:changed: expected a resource AOR`, or `presence_server:changed: no event package EVENT`.
function Presence:changed(resource, event)
  if type(resource) ~= "string" then error("presence_server:changed: expected a resource AOR", 2) end
  event = event and event:lower() or "presence"
  if not self.packages[event] then error("presence_server:changed: no event package " .. event, 2) end
  self:_changed(resource, event)
end

--- The rule for watcher on presentity: "allow", "deny" or the default.
--
-- The presentity itself is always allowed; the default is the unknown
-- option ("pending", "allow" or "deny").
-- @tparam string presentity the presentity's AOR
-- @tparam string watcher the watcher's AOR
-- @treturn string "allow", "deny" or "pending"
function Presence:policy(presentity, watcher)
  if presentity == watcher then return "allow" end
  local r = self.store:get("rule", presentity .. " " .. watcher)
  return r and r.rule or self.unknown
end

-- ------------------------------------------------------------------------
-- The presentity's state

--- The PIDF document of presentity: its publications merged, else its
-- registration.
--
-- The tuples (at most 32), notes and activities (16 each) of its live
-- publications, newest first; with none, one tuple "registration", open
-- while the presentity has a binding in the location.
-- @tparam string presentity the presentity's AOR
-- @treturn string the PIDF XML
function Presence:document(presentity)
  local pubs = {}
  for _, p in self.store:each("pub", "presentity", presentity) do pubs[#pubs + 1] = p end
  table.sort(pubs, function(a, b) return a.updated > b.updated end)
  local tuples, notes, activities, ids = {}, {}, {}, {}
  for _, p in ipairs(pubs) do
    local doc = self:_parsed(p)
    for _, t in ipairs(doc and doc.tuples or {}) do
      if #tuples < 32 then
        if ids[t.id] then t = store_mod.changed(t, { id = t.id .. "-" .. p.etag:sub(1, 6) }) end
        ids[t.id] = true
        tuples[#tuples + 1] = t
      end
    end
    for _, n in ipairs(doc and doc.notes or {}) do if #notes < 16 then notes[#notes + 1] = n end end
    for _, a in ipairs(doc and doc.activities or {}) do
      if #activities < 16 then activities[#activities + 1] = a end
    end
  end
  if #tuples == 0 then
    local b = self.location and self.location:lookup(presentity)[1]
    tuples[1] = { id = "registration", basic = b and "open" or "closed", contact = b and b.contact }
  end
  return core.pidf_build { entity = presentity, tuples = tuples, notes = notes, activities = activities }
end

-- A publication's body parsed, once per record (PUBLISH has just parsed
-- it; a refresh keeps its record's): nil when it does not parse. Weak:
-- gone with the record.
function Presence:_parsed(p)
  local doc = self.parsed[p]
  if doc == nil then
    doc = core.pidf_parse(p.body) or false
    self.parsed[p] = doc
  end
  return doc or nil
end

-- The document the watchers of presentity get: built once per change
-- (by _changed) and shared by every NOTIFY, not rebuilt for each watcher.
-- Kept only while it has watchers, whose changes keep it current.
function Presence:_doc(presentity, event)
  event = event or "presence"
  local key = wkey(event, presentity)
  local doc = self.docs[key]
  if not doc then
    doc = self.packages[event].document(presentity)
    if self.watching[key] then self.docs[key] = doc end
  end
  return doc
end

-- The presentity's state may have changed: notify its active watchers
-- when the document did.
function Presence:_changed(presentity, event)
  event = event or "presence"
  local key = wkey(event, presentity)
  local ids = self.watching[key]
  if not ids or not next(ids) then return end
  local doc = self.packages[event].document(presentity)
  if doc == self.docs[key] then return end
  self.docs[key] = doc
  for id in pairs(ids) do
    local rt = self.rt[id]
    if rt and rt.sub.state == "active" then self:_schedule(rt) end
  end
end

-- ------------------------------------------------------------------------
-- Subscriptions and their NOTIFYs

function Presence:_track(id, sub, cseq)
  local rt = self.rt[id]
  if rt then rt.sub = sub return rt end
  rt = { id = id, sub = sub, cseq = cseq or sub.cseq }
  self.rt[id] = rt
  local key = wkey(sub.event, sub.presentity)
  local w = self.watching[key]
  if not w then w = {} self.watching[key] = w end
  w[id] = true
  return rt
end

function Presence:_untrack(rt)
  self.rt[rt.id] = nil
  local key = wkey(rt.sub.event, rt.sub.presentity)
  local w = self.watching[key]
  if w then
    w[rt.id] = nil
    if not next(w) then self.watching[key] = nil self.docs[key] = nil end
  end
end

-- The dialog's part of a subscription's NOTIFYs (From, To, Call-ID,
-- Route, Contact, Event), built once per subscription record: a change
-- fans out to every watcher, and only CSeq, state and body differ. The
-- values come from a parsed SUBSCRIBE: one line each.
local function dialog_head(self, sub)
  local lines = { "From: " .. sub.local_uri .. ";tag=" .. sub.local_tag, "To: " .. sub.remote_uri,
                  "Call-ID: " .. sub.call_id }
  for _, r in ipairs(sub.route or {}) do lines[#lines + 1] = "Route: " .. r end
  lines[#lines + 1] = "Contact: " .. self.contact
  lines[#lines + 1] = "Event: " .. sub.event
  lines[#lines + 1] = "User-Agent: " .. self.server.USER_AGENT
  return table.concat(lines, "\r\n")
end

-- The NOTIFY of the subscription's state now: its whole text.
function Presence:_notify_text(rt)
  local sub = rt.sub
  local state, body
  local pkg = self.packages[sub.event]
  if not pkg then error("no event package " .. tostring(sub.event)) end -- _notify_next ends it
  if rt.final then
    state = "terminated;reason=" .. rt.final
    if rt.final == "timeout" and sub.state == "active" then body = self:_doc(sub.presentity, sub.event) end
  else
    state = string.format("%s;expires=%d", sub.state, math.max(0, math.ceil(sub.expires - core.time())))
    if sub.state == "active" then body = self:_doc(sub.presentity, sub.event) end
  end
  if rt.head_of ~= sub then rt.head, rt.head_of = dialog_head(self, sub), sub end
  rt.cseq = rt.cseq + 1
  return string.format("NOTIFY %s SIP/2.0\r\nMax-Forwards: 70\r\n%s\r\nCSeq: %d NOTIFY\r\n" ..
                       "Subscription-State: %s\r\n%sContent-Length: %d\r\n\r\n%s",
                       sub.target, rt.head, rt.cseq, state, body and "Content-Type: " .. pkg.content_type .. "\r\n" or "",
                       body and #body or 0, body or "")
end

-- A NOTIFY of rt was refused or went unanswered: the subscription ends
-- (forgotten durably, in a task: a store write may wait).
function Presence:_notify_failed(rt, status, why)
  log.info("presence: NOTIFY to %s for %s: %s; subscription ended", rt.sub.watcher, rt.sub.presentity,
           tostring(status or why))
  self:_untrack(rt)
  task.spawn(function()
    if self.store:get("sub", rt.id) then self.store:delete("sub", rt.id) end
  end)
end

-- Send the subscription's state now, and again when the answer comes if
-- it changed meanwhile: one NOTIFY in flight per subscription, the states
-- due in between merged into the next (RFC 6665 §4.2.2). Driven by nta's
-- callbacks: no task or timer per NOTIFY (a presentity's change fans out to
-- every watcher).
function Presence:_notify_next(rt)
  rt.due, rt.busy = false, true
  local final = rt.final -- this NOTIFY ends the subscription
  local sent, b, why = pcall(function()
    return self.server:_send_text(self:_notify_text(rt), nil, function(status, resp)
      rt.busy = false
      if final then return end
      if status >= 300 then
        if not rt.final then self:_notify_failed(rt, status, resp) end
        return
      end
      if rt.due then self:_notify_next(rt) end -- merged: what changed meanwhile, or the end
    end)
  end)
  if not (sent and b) then
    -- not even sent (server closed, a bad stored target)
    rt.busy = false
    if not final then self:_notify_failed(rt, nil, sent and why or b) end
  end
end

-- The subscription's state is due to its watcher: now, or as soon as the
-- NOTIFY in flight is answered.
function Presence:_schedule(rt)
  rt.due = true
  if not rt.busy then self:_notify_next(rt) end
end

-- End a subscription: forget it (durably), then a last NOTIFY.
function Presence:_terminate(rt, reason)
  if rt.final then return end
  rt.final = reason
  self:_untrack(rt)
  if self.store:get("sub", rt.id) then
    local ok, err = self.store:delete("sub", rt.id)
    if not ok then log.warn("presence: removing a subscription: %s", tostring(err)) end
  end
  self:_schedule(rt)
end

--- The SUBSCRIBE handler (installed by default).
--
-- It answers the request (see the top); with a durable store it blocks
-- until the subscription is stored, as handlers may.
-- @tparam table req a SUBSCRIBE request of the server
function Presence:subscribe(req)
  local event = event_of(req)
  local pkg = self.packages[event]
  if not pkg then
    return req:reply(489, nil, { headers = { ["Allow-Events"] = self:allow_events() } })
  end
  local accepts = req:headers("Accept")
  if #accepts > 0 then
    local ok = false
    for _, a in ipairs(accepts) do
      local t = (a:match("^%s*([^;%s]+)") or ""):lower()
      if t == pkg.content_type or t == "*/*" or t == "application/*" then ok = true end
    end
    if not ok then return req:reply(406, nil, { headers = { Accept = pkg.content_type } }) end
  end
  local expires = self:_expires(req)
  if not expires then return end
  local watcher = from_aor(req)
  if not watcher or not req.from.tag then return req:reply(400, "Bad From") end
  local contact = req.msg.contact
  if not contact or not contact.uri then return req:reply(400, "Missing Contact") end
  if not self:_authorized(req, watcher) then return end

  local to_tag = req.msg.to_tag
  if to_tag then
    -- a refresh, or an unsubscribe (Expires: 0)
    local rt = self.rt[req.call_id .. ";" .. to_tag]
    if not rt or rt.sub.remote_tag ~= req.from.tag then return req:reply(481) end
    if expires == 0 then
      req:reply(200, nil, { headers = { Expires = "0" } })
      return self:_terminate(rt, "timeout")
    end
    local sub = store_mod.changed(rt.sub, { expires = core.time() + expires, target = contact.uri.str, cseq = rt.cseq })
    local ok, err = self.store:put("sub", rt.id, sub)
    if not ok then return req:reply(500, "Store Failed: " .. tostring(err)) end
    rt.sub = sub
    req:reply(200, nil, { headers = { Expires = tostring(expires), Contact = self.contact } })
    return self:_schedule(rt)
  end

  local presentity = registrar.aor(req.uri)
  if not presentity then return req:reply(404) end
  local rule
  if pkg.policy then rule = pkg.policy(presentity, watcher, req) else rule = self:policy(presentity, watcher) end
  if rule == nil then return req:reply(404, "No Such Resource") end
  if rule == "deny" then return req:reply(403, "Forbidden by the presentity") end
  local tag = core.random_token(12)
  local route = req:headers("Record-Route")
  local to = req:header("To")
  local sub = {
    presentity = presentity, watcher = watcher, event = event, state = rule == "allow" and "active" or "pending",
    call_id = req.call_id, local_tag = tag, remote_tag = req.from.tag, local_uri = to,
    remote_uri = req:header("From"), target = contact.uri.str, route = route, cseq = 0,
    expires = core.time() + expires,
  }
  local id = req.call_id .. ";" .. tag
  if expires > 0 then
    local ok, err = self.store:put("sub", id, sub)
    if not ok then return req:reply(500, "Store Failed: " .. tostring(err)) end
  end
  req:reply(200, nil, { to_tag = tag, headers = { Expires = tostring(expires),
                                                   Contact = self.contact } })
  if expires == 0 then
    -- a fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then nothing
    local rt = { id = id, sub = sub, cseq = 0, final = "timeout" }
    return self:_schedule(rt)
  end
  self:_schedule(self:_track(id, sub))
end

-- ------------------------------------------------------------------------
-- Watcher rules

function Presence:_rule(presentity, watcher, rule, what)
  if type(presentity) ~= "string" or type(watcher) ~= "string" then
    error("presence_server:" .. what .. ": expected presentity and watcher AORs", 3)
  end
  local ok, err = self.store:put("rule", presentity .. " " .. watcher,
                                 { presentity = presentity, watcher = watcher, rule = rule })
  if not ok then return nil, err end
  for id in pairs(self.watching[presentity] or {}) do
    local rt = self.rt[id]
    if rt and rt.sub.watcher == watcher then
      if rule == "deny" then
        self:_terminate(rt, "rejected")
      elseif rt.sub.state == "pending" then
        local sub = store_mod.changed(rt.sub, { state = "active" })
        if self.store:put("sub", id, sub) then
          rt.sub = sub
          self:_schedule(rt)
        end
      end
    end
  end
  return true
end

--- Let watcher see presentity (both AORs, "sip:user@domain").
--
-- Its pending subscriptions become active at once. Durable; returns true
-- or nil, err. With a durable store, a blocking verb.
-- @tparam string presentity the presentity's AOR
-- @tparam string watcher the watcher's AOR
-- @treturn[1] boolean true, once the rule is durable
-- @return[2] nil, err: the store's error, or "timeout"
-- @raise `presence_server:allow: expected presentity and watcher AORs`.
function Presence:allow(presentity, watcher) return self:_rule(presentity, watcher, "allow", "allow") end

--- Refuse watcher: its subscriptions end (reason=rejected), new ones get 403.
--
-- Durable, like allow.
-- @tparam string presentity the presentity's AOR
-- @tparam string watcher the watcher's AOR
-- @treturn[1] boolean true, once the rule is durable
-- @return[2] nil, err: the store's error, or "timeout"
-- @raise `presence_server:deny: expected presentity and watcher AORs`.
function Presence:deny(presentity, watcher) return self:_rule(presentity, watcher, "deny", "deny") end

--- The subscriptions to presentity (of event, default "presence").
--
-- A list of { watcher =, state =, expires = }.
-- @tparam string presentity the presentity's (or resource's) AOR
-- @tparam[opt="presence"] string event the event package
-- @treturn table a list of { watcher = AOR, state = "active" or "pending", expires = wall-clock seconds }, by watcher
function Presence:watchers(presentity, event)
  local out = {}
  for id in pairs(self.watching[wkey(event or "presence", presentity)] or {}) do
    local s = self.rt[id].sub
    out[#out + 1] = { watcher = s.watcher, state = s.state, expires = s.expires }
  end
  table.sort(out, function(a, b) return a.watcher < b.watcher end)
  return out
end

-- ------------------------------------------------------------------------
-- Publications

--- The PUBLISH handler (installed by default).
--
-- It answers the request (see the top); with a durable store it blocks
-- until the publication is stored, as handlers may.
-- @tparam table req a PUBLISH request of the server
function Presence:publish(req)
  if event_of(req) ~= "presence" then
    return req:reply(489, nil, { headers = { ["Allow-Events"] = "presence" } })
  end
  local presentity = registrar.aor(req.uri)
  if not presentity then return req:reply(404) end
  local expires = self:_expires(req)
  if not expires then return end
  if not self:_authorized(req, presentity) then return end
  local body = req.msg.body
  if body == "" then body = nil end
  local pub, doc
  if body then
    local ctype = (req.msg.content_type or ""):lower()
    if ctype ~= PIDF then return req:reply(415, nil, { headers = { Accept = PIDF } }) end
    local why
    doc, why = core.pidf_parse(body)
    if not doc then return req:reply(400, "Bad PIDF: " .. tostring(why):sub(1, 80)) end
  end
  local match = req:header("SIP-If-Match")
  local old
  if match then
    old = self.store:get("pub", match)
    if not old or old.presentity ~= presentity then return req:reply(412) end
  elseif not body then
    return req:reply(400, "PUBLISH Without Body")
  end
  local etag = core.random_token(16)
  local ops = {}
  if old then ops[1] = { "pub", match, false } end
  if expires > 0 then
    pub = { etag = etag, presentity = presentity, expires = core.time() + expires,
            body = body or old.body, updated = body and core.time() or old.updated }
    ops[#ops + 1] = { "pub", etag, pub }
  end
  local ok, err = self.store:apply(ops)
  if not ok then return req:reply(500, "Store Failed: " .. tostring(err)) end
  if pub then self.parsed[pub] = doc or self.parsed[old] end
  req:reply(200, nil, { headers = { ["SIP-ETag"] = etag, Expires = tostring(expires) } })
  if body or expires == 0 then self:_changed(presentity) end
end

-- ------------------------------------------------------------------------
-- MESSAGE

--- The MESSAGE handler (installed by default): relayed to every contact of
-- the recipient.
--
-- With none, 404 for a Request-URI of ours; any other is proxied on.
-- @tparam table req a MESSAGE request of the server
function Presence:message(req)
  -- our own users prove who they are; other domains' cannot here
  local sender = from_aor(req)
  if sender and self.server:is_me(req.from.uri) and not self:_authorized(req, sender) then return end
  local aor = registrar.aor(req.uri)
  local bindings = aor and self.location and self.location:lookup(aor) or {}
  if #bindings > 0 then return req:proxy(bindings, { parallel = true }) end
  if self.server:is_me(req.uri) then return req:reply(404, "User Not Found") end
  return req:proxy()
end

-- ------------------------------------------------------------------------

-- Once a second: expired publications go (their presentities' watchers
-- are told), expired subscriptions end.
function Presence:_sweep()
  if self.sweeping or self.closed then return end
  local now = core.time()
  local ops, changed, ended = {}, {}, {}
  for etag, p in self.store:each("pub") do
    if p.expires <= now then
      ops[#ops + 1] = { "pub", etag, false }
      changed[p.presentity] = true
    end
  end
  for _, rt in pairs(self.rt) do
    if rt.sub.expires <= now then ended[#ended + 1] = rt end
  end
  if #ops == 0 and #ended == 0 then return end -- the common case: no task
  self.sweeping = true
  task.spawn(function()
    if #ops > 0 then
      local ok, err = self.store:apply(ops)
      if ok then
        for presentity in pairs(changed) do self:_changed(presentity) end
      else
        log.warn("presence: removing expired publications: %s", tostring(err))
      end
    end
    for _, rt in ipairs(ended) do self:_terminate(rt, "timeout") end
    self.sweeping = false
  end)
end

--- Stop: the handlers stay installed but the sweeps and location events
-- stop; the store (when opened here) is closed.
--
-- Idempotent.
function Presence:close()
  if self.closed then return end
  self.closed = true
  self.timer:close()
  if self.location_sub then self.location_sub:cancel() end
  if self.own_store then self.store:close() end
end

return M
