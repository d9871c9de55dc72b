--- `luasip.ua{...}`: a SIP user agent (registration, calls, MESSAGE, OPTIONS).
--
-- `luasip.ua{...}` (`new`; its options are listed there) returns a `UA`.
-- `ua:register{...}` returns a `Registration`, `ua:call()` a luasip.call,
-- `ua:subscribe()` a luasip.subscription Subscription, `ua:on("subscribe")`
-- hands luasip.subscription Watchers to its handler, and
-- `ua:publish_presence{...}` returns a luasip.presence Publication.
-- @module luasip.ua
-- @usage
-- local ua = assert(luasip.ua{ listen = "127.0.0.1:0", aor = "sip:alice@example.com",
--                              credentials = { user = "alice", password = "secret" } })
-- assert(ua:register{ registrar = "sip:127.0.0.1:5060" })
-- local call = assert(ua:call("sip:bob@127.0.0.1:5062", { timeout = 30 }))
-- call:hangup()
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"
local Call = require "luasip.call"
local digest = require "luasip.digest"
local presence = require "luasip.presence"
local subscription = require "luasip.subscription"

local M = {}

local UA = { __name = "luasip.ua" }
UA.__index = UA

function UA:__tostring()
  return string.format("luasip.ua (%s)", self.closed and "closed" or (self.contact or "?"))
end

local function fail_arg(what, msg) error("luasip.ua: " .. what .. ": " .. msg, 4) end

-- Misspelt options raise instead of being ignored.
local function check_options(opts, allowed, what, level)
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("%s: unknown option '%s'", what, tostring(k)), level or 3)
    end
  end
end

local function set(...)
  local t = {}
  for i = 1, select("#", ...) do t[select(i, ...)] = true end
  return t
end

local UA_OPTIONS = set("listen", "aor", "display", "contact_user", "user_agent", "credentials",
  "proxy", "tls", "keepalive", "keepalive_mode", "rport", "session_timer", "min_se", "refresher",
  "rel100", "sdp", "media", "codecs", "srtp", "dtmf_inband", "rtcp_mux", "accept_refer", "timeout", "stun", "stun_timeout", "t1")
local CALL_OPTIONS = set("headers", "timeout", "sdp", "on_progress", "session_timer", "rel100", "from")
local REGISTER_OPTIONS = set("registrar", "expires", "headers", "timeout", "on_state", "backoff",
  "max_backoff")
local REQUEST_OPTIONS = set("headers", "timeout", "from", "body", "content_type")
local SUBSCRIBE_OPTIONS = set("expires", "headers", "timeout", "accept")

local function parse_listen(entry)
  local proto, rest = entry:match("^(%a+)/(.+)$")
  if not proto then proto, rest = nil, entry end
  local host, port = require("luasip.server").parse_listen(rest, 0)
  if not host then return nil, port end
  if proto and proto ~= "udp" and proto ~= "tcp" and proto ~= "tls" then
    return nil, "transport must be udp, tcp or tls: " .. entry
  end
  return { proto = proto, host = host, port = port }
end

-- The From value for an AOR and an optional display name.
local function from_of(aor, display)
  if not display then return "<" .. aor .. ">" end
  return string.format('"%s" <%s>', display:gsub('"', ""), aor)
end

local function hostport(host, port)
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. port
end

local function event_loop_ua(self)
  return function(name, status, phrase, h, msg, info)
    self:_dispatch(name, status, phrase, h, msg, info)
  end
end

--- Create a user agent and wait until its SIP stack has bound.
-- Scripts call it as `luasip.ua{...}`. Misspelt options raise instead of
-- being ignored. Every UA is closed by luasip's shutdown hooks.
-- @tparam[opt] table opts options:
-- @tparam[opt] string|table opts.listen "host:port" ([v6]:port, port 0 = any free port), or a list
--   of "udp/host:port", "tcp/host:port", "tls/host:port" (the first plain entry is the main
--   contact; default "127.0.0.1:0" on UDP and TCP)
-- @tparam[opt] string opts.aor address of record, e.g. "sip:alice@example.com" (default
--   "sip:luasip@" and the bound address)
-- @tparam[opt] string opts.display display name for From
-- @tparam[opt] string opts.contact_user user part of Contact (default: the AOR's user)
-- @tparam[opt] string opts.user_agent User-Agent header (default "luasip/" and the version)
-- @tparam[opt] table opts.credentials `{user=, password=}` for any realm, or
--   `{[realm] = {user=, password=}}`
-- @tparam[opt] string opts.proxy outbound proxy URI (every request is sent through it)
-- @tparam[opt] table opts.tls `{cert_dir = dir holding agent.pem and cafile.pem, verify = false | true}`
-- @tparam[opt] number opts.keepalive seconds between NAT keepalives (OPTIONS; CRLF on TCP/TLS:
--   see `keepalive_mode`)
-- @tparam[opt] string opts.keepalive_mode "options" (default: an OPTIONS to the registrar
--   while registered) or "crlf" (CRLF keepalives on TCP/TLS connections, RFC 5626)
-- @tparam[opt] boolean opts.rport false: do not ask for rport (RFC 3581; default true)
-- @tparam[opt] number opts.session_timer seconds (RFC 4028; 0 = off), with `min_se` and `refresher`
-- @tparam[opt] number opts.min_se the session timer's Min-SE, seconds (RFC 4028)
-- @tparam[opt] string opts.refresher the session timer's refresher: "local", "remote", "any"
--   or "none"
-- @tparam[opt] string|false opts.rel100 "supported" (default), "required" or false (RFC 3262;
-- answering, a 180 is reliable only when the caller requires 100rel, a 183 with early media
-- whenever it supports it)
-- @tparam[opt] string opts.sdp a description every call offers and answers verbatim, with
--   no media of ours (default: each call gets an RTP session and offers `codecs` and
--   telephone-event)
-- @tparam[opt] boolean opts.media false: no RTP sessions; calls offer port 9 (signalling only)
-- @tparam[opt] table opts.codecs codecs to offer and accept, in order (default
--   {"opus", "PCMU", "PCMA"})
-- @tparam[opt] string opts.srtp "optional" (default: offer RTP/AVP with SDES keys, accept
--   either), "mandatory" (RTP/SAVP only) or "off" (plain RTP; crypto offers get 488)
-- @tparam[opt] string|boolean opts.dtmf_inband listen for DTMF tones in the audio: "auto"
--   (default: while the peer negotiated no telephone-event), true or false
-- @tparam[opt] boolean opts.rtcp_mux offer RTCP on the RTP port (RFC 5761; default true: it
--   is used when the answer agrees, and the separate RTCP port is kept otherwise); offers
--   with rtcp-mux are always accepted
-- @tparam[opt] boolean opts.accept_refer place the call an incoming REFER asks for
--   (default true)
-- @tparam[opt] string opts.stun "host:port" of a STUN server: learn the public address
--   (RFC 5389) for Contact and SDP
-- @tparam[opt] number opts.stun_timeout seconds to wait for the STUN answer (default 5)
-- @tparam[opt] number opts.t1 RFC 3261's T1 in seconds (default 0.5); transactions linger
--   `64*T1` after completing
-- @tparam[opt] number opts.timeout seconds to wait for the stack to bind (default 5)
-- @treturn[1] UA the user agent
-- @return[2] nil, message, code on failure (code "timeout" when the stack did not start
--   in time, "stun" when the STUN request failed)
-- @raise on misuse: `luasip.ua: expected a table of options`,
-- `luasip.ua: unknown option 'NAME'`, `luasip.ua: listen: a string or a list`
-- (or what is wrong with an entry), `luasip.ua: aor: must be a sip: or sips: URI`,
-- `luasip.ua: srtp: ...`, `luasip.ua: dtmf_inband: ...`,
-- `luasip.ua: credentials: must be a table`, `luasip.ua: rel100: ...`.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.ua: expected a table of options", 3) end
  check_options(opts, UA_OPTIONS, "luasip.ua", 4)
  local listen = opts.listen or "127.0.0.1:0"
  if type(listen) == "string" then listen = { listen } end
  if type(listen) ~= "table" or #listen == 0 then fail_arg("listen", "a string or a list") end
  local url, sips_url, main, tls_port
  for _, entry in ipairs(listen) do
    local l, err = parse_listen(entry)
    if not l then fail_arg("listen", err) end
    if l.proto == "tls" then
      local port = l.port
      if port == 0 then
        port = core.free_port(l.host)
        if not port then fail_arg("listen", "no free TCP port on " .. l.host) end
      end
      sips_url = "sips:" .. hostport(l.host, port)
      tls_port = port
    elseif not url then
      url = "sip:" .. hostport(l.host, l.port) .. (l.proto and (";transport=" .. l.proto) or "")
      main = l
    end
  end
  if not url and sips_url then
    -- TLS only: nua still needs a plain listening point; keep it on TCP
    local h = sips_url:match("^sips:(.*):%d+$")
    url = "sip:" .. h .. ":0;transport=tcp"
    main = { host = h:gsub("^%[(.*)%]$", "%1") }
  end
  if opts.aor ~= nil and (type(opts.aor) ~= "string" or not opts.aor:match("^sips?:")) then
    fail_arg("aor", "must be a sip: or sips: URI")
  end
  if opts.srtp ~= nil and opts.srtp ~= "off" and opts.srtp ~= "optional" and opts.srtp ~= "mandatory" then
    fail_arg("srtp", 'must be "off", "optional" or "mandatory"')
  end
  if opts.dtmf_inband ~= nil and opts.dtmf_inband ~= "auto" and type(opts.dtmf_inband) ~= "boolean" then
    fail_arg("dtmf_inband", 'must be "auto", true or false')
  end
  local creds = opts.credentials
  if creds ~= nil and type(creds) ~= "table" then fail_arg("credentials", "must be a table") end
  local rel100 = opts.rel100
  if rel100 == nil then rel100 = "supported" end
  if rel100 ~= false and rel100 ~= "supported" and rel100 ~= "required" then
    fail_arg("rel100", 'must be "supported", "required" or false')
  end
  local aor = opts.aor or ("sip:luasip@" .. hostport(main.host, main.port ~= 0 and main.port or 5060))
  local from = from_of(aor, opts.display)
  local self = setmetatable({
    aor = aor,
    from = from,
    host = main.host,
    credentials = creds,
    rel100 = rel100,
    keepalive = opts.keepalive,
    keepalive_mode = opts.keepalive_mode or "options",
    offer = opts.sdp,
    media = opts.media,
    codecs = opts.codecs,
    srtp = opts.srtp,
    dtmf_inband = opts.dtmf_inband,
    rtcp_mux = opts.rtcp_mux ~= false,
    accept_refer = opts.accept_refer ~= false,
    objs = setmetatable({}, { __mode = "kv" }), -- handle -> Call / Registration / request
    calls = setmetatable({}, { __mode = "k" }),  -- live calls (for Replaces)
    held = {},  -- calls the UA keeps until they end: incoming and transferred ones
    handlers = {},
    registrations = {},
    subscriptions = {}, -- ours, until they end (see luasip.subscription)
    watchers = {},      -- subscriptions to us, likewise
  }, UA)
  local tls = opts.tls or {}
  local supported = "timer, replaces, norefersub"
  if rel100 then supported = "100rel, " .. supported end
  local core_opts = {
    url = url,
    sips_url = sips_url,
    from = from,
    user_agent = opts.user_agent or ("luasip/" .. core.version),
    proxy = opts.proxy,
    certificate_dir = tls.cert_dir,
    tls_verify_policy = tls.cert_dir and (tls.verify and 3 or 0) or nil,
    -- CRLF keepalives on TCP/TLS connections (RFC 5626 §3.5.1); OPTIONS
    -- keepalives to the registrar are sent by Registration (below)
    tport_keepalive = opts.keepalive and opts.keepalive_mode == "crlf"
                      and math.floor(opts.keepalive * 1000) or nil,
    session_timer = opts.session_timer,
    min_se = opts.min_se,
    refresher = opts.refresher,
    supported = supported,
    -- SUBSCRIBE: without event packages (ua:on("subscribe") adds them)
    -- nua refuses it with 489 Bad Event, not 405 (RFC 6665 §3.2.2)
    allow = "INVITE, ACK, BYE, CANCEL, OPTIONS, PRACK, MESSAGE, UPDATE, INFO, REFER, NOTIFY, SUBSCRIBE",
    contact_user = opts.contact_user or aor:match("^sips?:([^@;:]+)@"),
    early_media = true,
    -- a 180 goes reliably only when the caller requires 100rel (a 183 with
    -- early media whenever it supports it), as FreeSWITCH does: a caller's
    -- nua binds its INVITE to the fork whose 1xx it PRACKed, and drops a
    -- 200 from another fork (voicemail after a proxy's ring timeout)
    only183_100rel = true,
    auto_302 = false, -- redirects are the script's decision
    client_rport = opts.rport ~= false,
    -- no soa: calls make their own offers and answers (luasip.sdp,
    -- luasip.media), so SDP never reaches sofia's parser
    media_enable = false,
    -- RFC 3261 T1 (default 0.5 s); transactions linger 64*T1 after completing
    sip_t1 = opts.t1 and math.floor(opts.t1 * 1000) or nil,
    sip_t1x64 = opts.t1 and math.floor(opts.t1 * 64000) or nil,
    on_event = event_loop_ua(self),
  }
  local cua, err, code = core.ua(core_opts)
  if not cua then return nil, err, code end
  self.core = cua
  self.tls_port = tls_port
  -- Learn the bound contact (the port, for port 0).
  local ok, why = task.wait(function(done)
    self._on_params = done
    cua:get_params()
    return function() self._on_params = nil end
  end, opts.timeout or 5, "luasip.ua")
  if not ok then
    cua:close()
    return nil, "the SIP stack did not start: " .. tostring(why), "timeout"
  end
  if opts.stun then
    -- learn the public address (RFC 5389) for Contact and SDP
    local addr, err = task.wait(function(done)
      local q, qerr = core.stun(opts.stun, main.host, function(a, _, e) done(a, e) end)
      if not q then done(nil, qerr) return end
      return function() q:close() end
    end, opts.stun_timeout or 5, "luasip.ua (STUN)")
    if not addr then
      cua:close()
      return nil, "STUN: " .. tostring(err), "stun"
    end
    self.public_host = addr
  end
  if not opts.aor and self.port then
    -- the default AOR names the port actually bound
    self.aor = "sip:luasip@" .. hostport(main.host, self.port)
    self.from = from_of(self.aor, opts.display)
  end
  self.shutdown_hook = require("luasip").on("shutdown", function() self:close() end)
  return self
end

-- -------------------------------------------------------------------------
-- Events from the stack

local function params_of(self, info)
  if info.contact then
    self.contact = info.contact
    local hp = info.contact:match("@(.*)$") or info.contact:match("^sips?:(.*)$")
    hp = hp:gsub("[;>].*$", "")
    self.port = tonumber(hp:match("%]:(%d+)$") or hp:match("^[^:]*:(%d+)$"))
  end
end

function UA:_dispatch(name, status, phrase, h, msg, info)
  if name == "r_get_params" then
    params_of(self, info)
    if self._on_params then self._on_params(true) end
    return
  end
  if not h then return end
  local obj = self.objs[h]
  if obj then return obj:_event(name, status, phrase, msg, info) end
  -- A new incoming request.
  if name == "i_invite" then
    return self:_incoming_call(h, msg, info)
  elseif name == "i_message" then
    return self:_incoming_message(h, msg)
  elseif name == "i_subscribe" and status < 200 then
    return subscription.incoming(self, h, msg, self.handlers.subscribe)
  elseif name == "i_options" or name == "i_info" then
    -- nua answered it; give the application a look
    local fn = self.handlers[name:sub(3)]
    if fn then task.spawn(fn, msg) end
  end
end

function UA:_incoming_call(h, msg, info)
  h:adopt()
  h:on_collect("bye")
  local call = Call.incoming(self, h, msg, info)
  self:_track(h, call, true)
  -- An offer we cannot use is refused before any handler sees the call:
  -- 400 when malformed, 488 when it has no audio codec we have (only when
  -- the UA does media; a signalling-only UA passes SDP on as it is).
  local ok, why, code = call:_check_offer()
  if not ok then return call:reject(code, why) end
  -- INVITE with Replaces (RFC 3891): take over a confirmed dialog.
  local replaces = msg:header("Replaces")
  if replaces then
    local old = self:_find_replaced(replaces)
    if not old then return call:reject(481, "Call/Transaction Does Not Exist") end
    call.replaces = old
    task.spawn(function()
      if call:answer() then old:hangup() end
      local fn = self.handlers.call
      if fn then fn(call) end
    end)
    return
  end
  local fn = self.handlers.call
  if not fn then return call:reject(480, "No handler") end
  task.spawn(function()
    local ok, err = pcall(fn, call)
    if not ok then
      if err ~= task.CANCELLED then log.error("call handler failed: %s", tostring(err)) end
      if call.state == "received" or call.state == "early" then
        call:reject(500, "Server Internal Error")
      end
    end
  end)
end

function UA:_find_replaced(value)
  local call_id = value:match("^%s*([^;%s]+)")
  local to_tag = value:match(";%s*to%-tag=([^;%s]+)")
  local from_tag = value:match(";%s*from%-tag=([^;%s]+)")
  for c in pairs(self.calls) do
    if c.call_id == call_id and c.local_tag == to_tag and c.remote_tag == from_tag
       and c.state ~= "terminated" then
      return c
    end
  end
end

local ISCOMPOSING = "application/im-iscomposing+xml"

-- The MESSAGE as the "message" handler sees it: the message's fields and
-- methods (messages take no new fields), and msg:reply(status [, reason])
-- to answer it from the handler.
local function incoming_message(msg, reply)
  local wrapper = {}
  function wrapper.reply(self, status, reason)
    if self ~= wrapper then error("msg:reply: call it as msg:reply(status [, reason])", 2) end
    if type(status) ~= "number" or status % 1 ~= 0 or status < 200 or status > 699 then
      error("msg:reply: status must be an integer in 200..699", 2)
    end
    if reason ~= nil and type(reason) ~= "string" then error("msg:reply: reason must be a string", 2) end
    return reply(status, reason)
  end
  return setmetatable(wrapper, {
    __index = function(t, k)
      local v = msg[k]
      if type(v) ~= "function" then return v end
      local method = function(self, ...) return v(self == t and msg or self, ...) end
      rawset(t, k, method)
      return method
    end,
    __tostring = function() return tostring(msg) end,
  })
end

function UA:_incoming_message(h, msg)
  local fn = self.handlers.message
  local state
  if msg.content_type == ISCOMPOSING then
    -- a composition indication (RFC 3994): an event, not a message
    local why
    state, why = core.iscomposing_parse(msg.body or "")
    if not state then
      h:adopt()
      h:respond(400, "Bad isComposing: " .. why:sub(1, 80))
      h:close()
      return
    end
    fn = self.handlers.composing
    if not fn then
      h:adopt()
      h:respond(200)
      h:close()
      return
    end
  end
  if not fn then return end -- not adopted: answered 500 by the binding
  h:adopt()
  local replied = false
  -- answer once: from msg:reply() in the handler, else after it returns
  local function reply(status, reason)
    if replied then return nil, "already answered" end
    replied = true
    if not h:alive() then return nil, "user agent closed" end
    h:respond(status, reason)
    h:close()
    return true
  end
  task.spawn(function()
    local ok, status, reason
    if state then
      ok, status = pcall(fn, msg.from and msg.from.uri.str, state, msg)
      status = ok and 200 or status
    else
      ok, status, reason = pcall(fn, incoming_message(msg, reply))
    end
    if not ok then
      log.error("message handler failed: %s", tostring(status))
      status, reason = 500, "Server Internal Error"
    end
    if type(status) ~= "number" then status = 200 end
    reply(status, reason)
  end)
end

local EVENTS = { call = true, message = true, composing = true, options = true, info = true,
                 subscribe = true }

--- A user agent, as `luasip.ua{...}` returns it.
-- Fields: `ua.aor`, `ua.contact` (the bound contact), `ua.port` (the bound
-- port), `ua.tls_port`, `ua.public_host` (the address STUN found). A UA
-- may be held in a to-be-closed variable: its `__close` is `UA:close`.
-- The methods that send requests (call, register, options, message,
-- composing, subscribe, `publish_presence`) raise
-- `luasip.ua: used after close()` on a closed UA. Those that wait (in a
-- task, or driving the loop at top level) raise
-- `WHAT: timeout must be a number of seconds from 0 to 1e9` for a bad
-- timeout, and `WHAT blocks, and cannot be called from a callback: ...`
-- from a plain callback.
-- @type UA

--- Subscribe to UA events: set `fn` as the handler of `event`.
-- The events, and what `fn` gets:
--
-- - "call" fn(call) (each in its own task): an incoming luasip.call. The
--   handler decides (ring, answer, reject, redirect) and may return at
--   once: the UA keeps the call until it ends. Without a handler calls
--   get 480; if the handler raises before answering, 500. An offer we
--   cannot use gets 400 (malformed) or 488 (no audio codec we have) before
--   any handler sees the call.
-- - "message" fn(msg) -> status, reason (the answer; default 200; or the
--   handler answers itself with msg:reply(status [, reason]), once: a
--   second reply returns nil, "already answered", and the return value is
--   then ignored). msg has the message's fields and methods. Without a
--   handler, or when the handler raises, the MESSAGE gets 500.
-- - "composing" `fn(from_uri, state, msg)` for isComposing indications
--   (RFC 3994; state = `{ state = "active" | "idle", content_type =,`
--   `last_active =, refresh = }`; answered 200, a malformed one 400 before
--   any handler).
-- - "options" fn(msg), "info" fn(msg) (out of dialog; already answered).
-- - "subscribe" fn(watcher) for SUBSCRIBEs to the event packages listed
--   in `packages` (default `{ "presence", "message-summary" }`; others get
--   489 Bad Event with Allow-Events): see luasip.subscription's Watcher
--   (accept, reject, notify, terminate; fields event, from, msg, expires,
--   state; `on_end` fn(watcher, why)). A SUBSCRIBE the handler leaves
--   unanswered gets 603, and 500 when the handler raises.
-- @tparam string event "call", "message", "composing", "options", "info" or "subscribe"
-- @tparam[opt] function fn the handler; nil removes it
-- @tparam[opt] table packages for "subscribe" only: the event packages served (a list of
--   tokens; default { "presence", "message-summary" })
-- @raise on misuse:
-- `ua:on: unknown event NAME (call, message, composing, options, info, subscribe)`,
-- `ua:on: expected a function`,
-- `ua:on: only "subscribe" takes a list of event packages`,
-- `ua:on: event packages must be a list`,
-- `ua:on: event packages must be tokens such as "presence"`.
-- msg:reply raises `msg:reply: status must be an integer in 200..699` and
-- `msg:reply: reason must be a string`.
function UA:on(event, fn, packages)
  if not EVENTS[event] then
    error("ua:on: unknown event " .. tostring(event) .. " (call, message, composing, options, info, subscribe)", 2)
  end
  if fn ~= nil and type(fn) ~= "function" then error("ua:on: expected a function", 2) end
  if packages ~= nil and event ~= "subscribe" then
    error('ua:on: only "subscribe" takes a list of event packages', 2)
  end
  if event == "subscribe" and fn then
    -- nua refuses other packages with 489 before we see them (RFC 6665 §3.2.2)
    self.core:set_params { allow_events = subscription.allow_events(packages, "ua:on") }
  end
  self.handlers[event] = fn
end

-- -------------------------------------------------------------------------
-- Authentication: answer 401/407 once per challenge set

-- Answer a 401/407 on handle h. MD5 challenges go to sofia's digest
-- client (it keeps the nonce count and re-authorizes refreshes by
-- itself); other algorithms (SHA-256, SHA-512-256) are computed here and
-- the request is sent again with resend(opts): a copy of the challenged
-- request's options `sent` plus the (Proxy-)Authorization. method and uri
-- are those of the challenged request. own: compute MD5 here as well
-- (sofia's resend would lose what its request state forgot on the
-- challenge, such as a PUBLISH's entity tag). Returns true when a new
-- attempt was sent, or false, reason.
function UA:_authorize(h, msg, attempt, method, uri, sent, resend, own)
  local creds = self.credentials
  if not creds or not msg or attempt > 3 then return false, "no credentials" end
  local list = {}
  for _, ch in ipairs(msg:challenges()) do
    -- challenged again after answering: the credentials were refused,
    -- unless the server only found the nonce stale (RFC 7616 §3.3)
    local stale = (ch.params.stale or ""):lower() == "true"
    if ch.scheme:lower() == "digest" and (attempt == 1 or stale) then list[#list + 1] = ch end
  end
  table.sort(list, function(x, y) return digest.rank(x) < digest.rank(y) end)
  for _, ch in ipairs(list) do
    local realm = ch.params.realm or ""
    local c = creds[realm]
    if type(c) ~= "table" then c = (type(creds.user) == "string" and creds) or creds["*"] end
    if type(c) ~= "table" or type(c.user) ~= "string" or type(c.password) ~= "string" then c = nil end
    local alg = digest.algorithm(ch)
    if c and alg then
      if alg == "MD5" and not own then
        h:authenticate(string.format('Digest:"%s":%s:%s', (realm:gsub('"', "")), c.user, c.password))
        return true
      elseif resend then
        local value, err = digest.authorization(ch, {
          user = c.user, password = c.password, method = method, uri = uri, nc = 1,
        })
        if not value then return false, err end
        local opts = {}
        for k, v in pairs(sent or {}) do opts[k] = v end
        opts[ch.proxy and "proxy_authorization" or "authorization"] = value
        resend(opts)
        return true
      end
    end
  end
  return false, "no usable challenge"
end

-- A 401/407 answer to the request obj (fields h, attempt, uri, send =
-- the options sent) made with verb ("subscribe", ...): answer the
-- challenge. Returns true when the request went out again.
function UA:_retry_auth(obj, status, msg, method, verb, own)
  if (status ~= 401 and status ~= 407) or not obj.send then return false end
  if not self:_authorize(obj.h, msg, obj.attempt, method, obj.uri, obj.send,
                         function(opts) obj.h:send(verb, opts) end, own) then
    return false
  end
  obj.attempt = obj.attempt + 1
  return true
end

-- Send verb with options send on obj.h and wait (timeout s, default 32)
-- until obj's events call obj.waiting(...): returns what it was given, or
-- nil, "timeout".
function UA:_transact(obj, verb, send, timeout, what)
  obj.attempt, obj.send = 1, send
  return task.wait(function(done)
    obj.waiting = done
    obj.h:send(verb, send)
    return function() obj.waiting = nil end
  end, timeout or 32, what)
end

-- -------------------------------------------------------------------------
-- Out-of-dialog requests

local Request = {}
Request.__index = Request

function Request:_event(name, status, phrase, msg)
  if not name:match("^r_") or status < 200 then return end
  if self.ua:_retry_auth(self, status, msg, self.method:upper(), self.method) then return end
  self.done(status, phrase, msg)
end

-- Send method on a new handle and wait for the final answer.
function UA:_request(method, uri, opts, what)
  self:_check()
  opts = opts or {}
  if type(opts) ~= "table" then error(what .. ": expected a table of options", 3) end
  check_options(opts, REQUEST_OPTIONS, what, 4)
  local h = assert(self.core:handle { to = uri, from = opts.from or self.from })
  local req = setmetatable({ ua = self, h = h, attempt = 1, method = method, uri = uri }, Request)
  self.objs[h] = req
  local send = {}
  for k, v in pairs(opts) do if k ~= "timeout" and k ~= "from" then send[k] = v end end
  send.uri = uri
  req.send = send
  local status, phrase, msg = task.wait(function(done)
    req.done = done
    h:send(method, send)
    return function() h:close() end
  end, opts.timeout or 32, what)
  if status == nil then return nil, phrase, "timeout" end
  if status >= 200 and status < 300 then return msg or true end
  return nil, phrase, status, msg
end

--- OPTIONS to uri.
-- @tparam string uri the request URI
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers: `{ Name = "value" | { "v1", "v2" } }` or a
--   list of "Name: value" lines
-- @tparam[opt] number opts.timeout seconds to wait for the final answer (default 32)
-- @tparam[opt] string opts.from the From value (default the UA's)
-- @tparam[opt] string opts.body a body to send
-- @tparam[opt] string opts.content_type the body's content type
-- @return[1] the response message (a 2xx)
-- @return[2] nil, reason, status, response on failure (status "timeout" when no final
--   answer came in time)
-- @raise on misuse: `luasip.ua: used after close()`,
-- `ua:options: expected a table of options`, `ua:options: unknown option 'NAME'`.
function UA:options(uri, opts)
  return self:_request("options", uri, opts, "ua:options")
end

--- MESSAGE (RFC 3428) to uri.
-- `ua:message(uri, body [, content_type [, opts]])` or
-- `ua:message(uri, body, { type =, headers =, timeout = })`.
-- @tparam string uri the request URI
-- @tparam string body the message
-- @tparam[opt] string|table content_type the body's content type (default "text/plain"), or
--   the options table, whose `type` is then the content type
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the final answer (default 32)
-- @tparam[opt] string opts.from the From value (default the UA's)
-- @return[1] the response (a 2xx)
-- @return[2] nil, reason, status, response on failure (status "timeout" when no final
--   answer came in time)
-- @raise on misuse: `ua:message: body must be a string`,
-- `luasip.ua: used after close()`, `ua:message: expected a table of options`,
-- `ua:message: unknown option 'NAME'`.
-- @usage
-- assert(ua:message("sip:bob@example.com", "hello"))
-- ua:message("sip:bob@example.com", "hello", { type = "text/plain", timeout = 5 })
function UA:message(uri, body, content_type, opts)
  if type(body) ~= "string" then error("ua:message: body must be a string", 2) end
  if type(content_type) == "table" then
    opts, content_type = content_type, content_type.type
  end
  local o = {}
  for k, v in pairs(opts or {}) do if k ~= "type" then o[k] = v end end
  o.body = body
  o.content_type = content_type or "text/plain"
  return self:_request("message", uri, o, "ua:message")
end

--- Publish our presence (RFC 3903, PIDF): see luasip.presence.publish.
-- `ua:publish_presence{ basic = "open" | "closed", note =, activities =,`
-- `expires = 3600 }` -> the publication (update, remove), or nil, reason,
-- status.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.basic "open" (default) or "closed"
-- @tparam[opt] string opts.note a note
-- @tparam[opt] table opts.activities RPID activities, e.g. { "away" }
-- @tparam[opt] number opts.expires seconds (default 3600)
-- @tparam[opt] string opts.to the presentity URI (default: the UA's AOR)
-- @tparam[opt] number opts.timeout seconds to wait for the answer (default 32)
-- @return[1] the luasip.presence Publication (fields state, etag, status; methods update,
--   remove)
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in time)
-- @raise on misuse: `luasip.ua: used after close()`,
-- `ua:publish_presence: expected a table of options`,
-- `ua:publish_presence: expires must be a positive number`, and the errors of
-- luasip.presence.document (`ua:publish_presence: basic must be "open" or "closed"`, ...).
-- @usage
-- local pub = assert(ua:publish_presence{ basic = "open", note = "at lunch",
--                                         activities = { "away" } })
-- pub:update{ basic = "closed" }
function UA:publish_presence(opts)
  self:_check()
  return presence.publish(self, opts)
end

--- Subscribe to `event` at uri (RFC 6665).
-- "presence" (RFC 3856, PIDF), "message-summary" (RFC 3842) or any other
-- package (raw bodies). fn(state) runs in a task for every NOTIFY, with
-- state = `{ state = "active" | "pending" | "terminated", reason =,`
-- `expires =, retry_after =, event =, content_type =, body =, msg =,`
-- `presence =` (PIDF, parsed by `core.pidf_parse`) or
-- `error = "malformed PIDF: ..."`, `summary =` (see
-- `luasip.subscription.message_summary`) `}`.
-- @tparam string uri the sip: or sips: URI to subscribe to
-- @tparam string event the event package (a token)
-- @tparam function fn fn(state) for every NOTIFY
-- @tparam[opt] table opts options:
-- @tparam[opt] number opts.expires seconds (default 3600)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout s to wait for the answer (default 32)
-- @tparam[opt] string opts.accept the Accept value (default the package's type)
-- @return[1] the luasip.subscription Subscription (fields state, expires, event, uri;
--   refresh([expires]), unsubscribe([timeout])) once the SUBSCRIBE got its 2xx
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in
--   time, "closed" when the UA closed)
-- @raise on misuse: `luasip.ua: used after close()`,
-- `ua:subscribe: expected a table of options`, `ua:subscribe: unknown option 'NAME'`,
-- `ua:subscribe: uri must be a sip: or sips: URI`,
-- `ua:subscribe: event must be an event package name (a token)`,
-- `ua:subscribe: expected a callback function`,
-- `ua:subscribe: expires must be a positive number`,
-- `ua:subscribe: accept must be a string`.
function UA:subscribe(uri, event, fn, opts)
  self:_check()
  opts = opts or {}
  if type(opts) ~= "table" then error("ua:subscribe: expected a table of options", 2) end
  check_options(opts, SUBSCRIBE_OPTIONS, "ua:subscribe")
  return subscription.subscribe(self, uri, event, fn, opts)
end

--- Tell uri we are composing a message (true) or stopped (false).
-- An isComposing indication (RFC 3994) in a MESSAGE.
-- @tparam string uri the request URI
-- @tparam boolean active true while composing, false when stopped
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.content_type the type of the message being composed
--   (default "text/plain")
-- @tparam[opt] number opts.refresh seconds while active (default 60)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the final answer (default 32)
-- @return[1] the response (a 2xx)
-- @return[2] nil, reason, status, response on failure (status "timeout" when no final
--   answer came in time)
-- @raise on misuse: `luasip.ua: used after close()`.
function UA:composing(uri, active, opts)
  opts = opts or {}
  local body = core.iscomposing_build {
    state = active and "active" or "idle",
    content_type = opts.content_type or "text/plain",
    refresh = active and (opts.refresh or 60) or nil,
    last_active = not active and presence.timestamp() or nil,
  }
  return self:_request("message", uri, { body = body, content_type = ISCOMPOSING, headers = opts.headers,
                                         timeout = opts.timeout }, "ua:composing")
end

-- -------------------------------------------------------------------------
-- Registration

local Registration = { __name = "luasip.registration" }
Registration.__index = Registration

function Registration:__tostring()
  return string.format("luasip.registration (%s): %s", self.state, self.registrar or self.ua.aor)
end

function Registration:_set(state, status, phrase)
  self.state = state
  self.status = status
  self.reason = phrase
  log.debug("registration %s: %s %s %s", self.ua.aor, state, tostring(status), tostring(phrase))
  if self.on_state then
    local fn = self.on_state
    task.spawn(fn, self, state, status, phrase)
  end
  local w = self.waiter
  if w and state ~= "registering" then self.waiter = nil w(state, status, phrase) end
end

-- The options of our REGISTER.
function Registration:_options()
  return {
    registrar = self.registrar,
    expires = tostring(self.expires),
    headers = self.headers,
    contact = self.ua:_contact(),
  }
end

function Registration:_send()
  self.attempt = 1
  self:_set("registering")
  self.h:send("register", self:_options())
end

-- The expiry the registrar granted our binding (RFC 3261 §10.2.4): the
-- expires parameter of our Contact in the 200, else its Expires header.
function Registration:_granted(msg)
  if not msg then return self.expires end
  local mine = self.ua.contact and self.ua.contact:gsub("^<(.*)>$", "%1"):gsub(";.*$", "")
  for _, c in ipairs(msg.contacts or {}) do
    local uri = c.uri.str and c.uri.str:gsub(";.*$", "")
    if uri == mine and tonumber(c.params.expires) then return tonumber(c.params.expires) end
  end
  if #(msg.contacts or {}) == 1 and tonumber(msg.contacts[1].params.expires) then
    return tonumber(msg.contacts[1].params.expires)
  end
  return tonumber(msg:header("Expires")) or self.expires
end

-- The Request-URI of our REGISTERs: the registrar, or the AOR's domain.
function Registration:_request_uri()
  if self.registrar then return (self.registrar:gsub("^<(.*)>$", "%1")) end
  local scheme, host = self.ua.aor:match("^(sips?):[^@]*@?([^;>?]+)")
  return scheme .. ":" .. host
end

function Registration:_retry()
  if self.closed then return end
  local delay = math.min(self.backoff * 2 ^ (self.failures - 1), self.max_backoff)
  self.failures = self.failures + 1
  self:_cancel_retry()
  self.retry_timer = core.timer(function()
    self.retry_timer:close()
    self.retry_timer = nil
    if not self.closed then self:_send() end
  end)
  self.retry_timer:start(delay)
  self.next_retry = delay
end

function Registration:_cancel_retry()
  if self.retry_timer then self.retry_timer:close() self.retry_timer = nil end
  if self.keepalive_timer then self.keepalive_timer:close() self.keepalive_timer = nil end
end

-- OPTIONS keepalive: an OPTIONS to the registrar every `keepalive`
-- seconds keeps the NAT binding of our contact open (what sofia's outbound
-- module would do; it is not used here because it also insists on
-- validating the contact through the registrar).
function Registration:_keepalive()
  local ua = self.ua
  if not ua.keepalive or ua.keepalive_mode ~= "options" or self.keepalive_timer then return end
  self.keepalive_timer = core.timer(function()
    if self.closed or ua.closed or self.state ~= "registered" then return end
    self.keepalives = (self.keepalives or 0) + 1
    local h = ua.core:handle { to = ua.aor, from = ua.from }
    if not h then return end
    local req = setmetatable({ ua = ua, h = h, attempt = 1, method = "options",
                               uri = self:_request_uri(), send = {} }, Request)
    req.done = function(status)
      self.keepalive_status = status
      h:close()
    end
    ua.objs[h] = req
    h:send("options", { uri = req.uri })
  end)
  self.keepalive_timer:start(ua.keepalive, ua.keepalive)
end

function Registration:_event(name, status, phrase, msg)
  if name == "r_register" then
    if status < 200 then return end

    if (status == 401 or status == 407) then
      local ok = self.ua:_authorize(self.h, msg, self.attempt, "REGISTER", self:_request_uri(),
                                    self:_options(), function(opts) self.h:send("register", opts) end)
      if ok then self.attempt = self.attempt + 1 return end
    end
    if status == 401 or status == 407 or (status == 403 and self.attempt > 1) then
      -- refused credentials: retrying would only be refused again, and
      -- sofia would keep the request waiting for credentials
      self.closed_by_auth = true
      self.closed = true
      self.ua.registrations[self] = nil
      self.h:on_collect("destroy")
      self.h:close()
    end
    if status < 300 then
      self.attempt = 1 -- a refresh may be challenged again: answer it afresh
      self:_keepalive()
      self.failures = 1
      self.contacts = msg and msg.contacts
      self.granted = self:_granted(msg)
      self:_set("registered", status, phrase)
    else
      self:_set("failed", status, phrase)
      if not self.closed_by_auth then self:_retry() end
    end
  elseif name == "r_unregister" and status >= 200 then
    self:_set("unregistered", status, phrase)
  end
end

--- Register the AOR (RFC 3261 §10) and keep it registered.
-- nua refreshes it before expiry, failures are retried with exponential
-- backoff (also after a failed first attempt: unregister the registration
-- returned as the fourth value to stop). A challenge it cannot answer, or
-- credentials the registrar refuses, end it without retrying.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.registrar URI (default the AOR's domain)
-- @tparam[opt] number opts.expires s (default 3600)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout s to wait for the first answer (default 32)
-- @tparam[opt] function opts.on_state `fn(reg, state, status, reason)`, run in a task at each
--   change of state ("registering", "registered", "failed", "unregistered")
-- @tparam[opt] number opts.backoff first retry delay, s (default 1)
-- @tparam[opt] number opts.max_backoff longest retry delay, s (default 300)
-- @treturn[1] Registration the registration once registered
-- @return[2] nil, reason, status, reg on failure (status "timeout" when no answer came in
--   time, "closed" when the UA closed)
-- @raise on misuse: `luasip.ua: used after close()`,
-- `ua:register: expected a table of options`, `ua:register: unknown option 'NAME'`.
-- @usage
-- local reg = assert(ua:register{ registrar = "sip:127.0.0.1:5060" })
function UA:register(opts)
  self:_check()
  opts = opts or {}
  if type(opts) ~= "table" then error("ua:register: expected a table of options", 2) end
  check_options(opts, REGISTER_OPTIONS, "ua:register")
  local h = assert(self.core:handle { to = self.aor, from = self.from })
  h:on_collect("unregister")
  local reg = setmetatable({
    ua = self, h = h, state = "init",
    registrar = opts.registrar,
    expires = opts.expires or 3600,
    headers = opts.headers,
    on_state = opts.on_state,
    backoff = opts.backoff or 1,
    max_backoff = opts.max_backoff or 300,
    failures = 1,
  }, Registration)
  self.objs[h] = reg
  self.registrations[reg] = true
  local state, status, phrase = task.wait(function(done)
    reg.waiter = done
    reg:_send()
    return function() reg.waiter = nil end
  end, opts.timeout or 32, "ua:register")
  if state == "registered" then return reg end
  if state == nil then return nil, "timeout", "timeout", reg end
  if state == "closed" then return nil, "user agent closed", "closed", reg end
  return nil, phrase, status, reg
end

--- A registration of a UA, as `ua:register{...}` returns it.
-- Fields: `reg.state` ("init", then "registering", "registered", "failed",
-- "unregistered"), `reg.status` and `reg.reason` (of the last answer),
-- `reg.granted` (the expiry the registrar granted), `reg.contacts` (the
-- Contacts of its last 2xx), `reg.next_retry` (the delay of the last
-- retry scheduled, s).
-- @type Registration

--- Remove the registration (un-REGISTER) and wait for the answer (bounded).
-- A registration that is not registered (or already removed) is only let go.
-- @tparam[opt] number timeout seconds to wait for the answer (default 5)
-- @return[1] true
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in time)
function Registration:unregister(timeout)
  if self.closed then
    if self.h:alive() then self.h:close() end
    return true
  end
  self.closed = true
  self:_cancel_retry()
  self.ua.registrations[self] = nil
  if not self.h:alive() then return true end
  if self.state ~= "registered" then self.h:close() return true end
  local state, status, phrase = task.wait(function(done)
    self.waiter = done
    self.h:send("unregister", { registrar = self.registrar })
    return function() self.waiter = nil end
  end, timeout or 5, "registration:unregister")
  self.h:close()
  if state == "unregistered" and status < 300 then return true end
  return nil, phrase or status, status
end
Registration.close = Registration.unregister

--- Same as `Registration:unregister`.
-- @function Registration:close
-- @tparam[opt] number timeout seconds to wait for the answer (default 5)
-- @return[1] true
-- @return[2] nil, reason, status on failure

--- @type UA

--- Un-REGISTER every registration of this UA.
-- One after the other, each as `Registration:unregister(timeout)`.
-- @tparam[opt] number timeout seconds to wait for each answer (default 5)
-- @return true
function UA:unregister(timeout)
  for reg in pairs(self.registrations) do reg:unregister(timeout) end
  return true
end

-- -------------------------------------------------------------------------
-- Calls

--- Place a call to uri.
-- Waits until it is answered, fails or times out.
-- @tparam string uri the URI to call
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout s (default 60; CANCEL on expiry)
-- @tparam[opt] string opts.sdp a description to offer verbatim (default the UA's `sdp`
--   option, else an offer of our media)
-- @tparam[opt] function opts.on_progress `fn(call, status, reason, msg)` for 1xx (183 has
--   early SDP in `call.remote_sdp`)
-- @tparam[opt] number opts.session_timer seconds (RFC 4028)
-- @tparam[opt] string opts.rel100 "required" asks for PRACK
-- @tparam[opt] string opts.from the From value (default the UA's)
-- @treturn[1] luasip.call the call, answered
-- @return[2] nil, reason, status, call on failure (status "timeout" when it timed out and
--   was cancelled; no call when no INVITE could be made, e.g. no RTP port: 503)
-- @raise on misuse: `luasip.ua: used after close()`, `ua:call: uri must be a string`,
-- `ua:call: expected a table of options`, `ua:call: unknown option 'NAME'`; and the
-- stack's error when it cannot send the INVITE (a bad header).
-- @usage
-- local call = assert(ua:call("sip:bob@127.0.0.1:5062", { timeout = 30 }))
-- call:hangup()
function UA:call(uri, opts)
  self:_check()
  if type(uri) ~= "string" then error("ua:call: uri must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("ua:call: expected a table of options", 2) end
  check_options(opts, CALL_OPTIONS, "ua:call")
  return self:_place(uri, opts)
end

-- Start an outgoing call (extra: sofia options the API does not offer,
-- such as notify_refer) and wait for its outcome, as ua:call() returns it.
function UA:_place(uri, opts, extra)
  local h = assert(self.core:handle { to = uri, from = opts.from or self.from })
  h:on_collect("bye")
  local call = Call.outgoing(self, h, uri, opts)
  self:_track(h, call)
  return call:_start(opts, extra)
end

-- Route the events of handle h to call, and know the call until it ends
-- (held: keep it alive too, for calls nobody else holds).
function UA:_track(h, call, held)
  self.objs[h] = call
  self.calls[call] = true
  if held then self.held[call] = true end
end

-- The Contact to send when the public address differs from the bound one
-- (STUN): the public IP with our SIP port, which assumes a port-preserving
-- NAT. nil lets sofia build it.
function UA:_contact()
  if not self.public_host or not self.port then return nil end
  local user = self.contact and self.contact:match("^sips?:([^@]+)@")
  local params = self.contact and self.contact:match(":%d+(;.*)$") or ""
  return string.format("<sip:%s%s:%d%s>", user and (user .. "@") or "", self.public_host, self.port, params)
end

-- -------------------------------------------------------------------------

function UA:_check()
  if self.closed then error("luasip.ua: used after close()", 3) end
end

--- Close the UA.
-- Calls are hung up and registrations removed by the stack as it shuts down; waits (up to `timeout`, default 5 s) for that to
-- finish when called from a task or at top level.
-- Its calls, registrations and subscriptions end at once, waking whoever
-- waits on them. Closing a closed UA does nothing. It is also the UA's
-- `__close` metamethod.
-- @tparam[opt] number timeout seconds to wait for the stack (default 5)
-- @return[1] true
-- @return[2] nil, reason ("timeout" or "interrupted") when the stack did not finish in time
function UA:close(timeout)
  if self.closed then return true end
  self.closed = true
  if self.shutdown_hook then self.shutdown_hook.remove() end
  for reg in pairs(self.registrations) do reg:_cancel_retry() reg.closed = true end
  self.core:close()
  -- the stack hangs up and un-registers by itself but reports nothing
  -- more: end the Lua objects now, waking whoever waits on them
  local calls = {}
  for c in pairs(self.calls) do calls[#calls + 1] = c end
  for c in pairs(self.held) do if not self.calls[c] then calls[#calls + 1] = c end end
  for _, c in ipairs(calls) do c:_closed_by_ua() end
  for reg in pairs(self.registrations) do
    reg.state = "unregistered"
    local w = reg.waiter
    if w then reg.waiter = nil w("closed") end
  end
  self.registrations = {}
  local subs, watchers = self.subscriptions, self.watchers
  self.subscriptions, self.watchers = {}, {}
  for sub in pairs(subs) do sub:_closed_by_ua() end
  for w in pairs(watchers) do w:_closed_by_ua() end
  if task.current() or core.depth() == 0 then
    local ok, done, why = pcall(task.wait, function(done)
      local tm
      tm = core.timer(function()
        if core.closing_uas() == 0 then done(true) end
      end)
      tm:start(0.01, 0.02)
      return function() tm:close() end
    end, timeout or 5, "ua:close")
    if ok and done then return true end
    return nil, ok and why or "interrupted"
  end
  return true
end
-- (a to-be-closed variable closed by an error passes the error object as
-- the second argument: it is not a timeout)
function UA:__close() return self:close() end

M.UA = UA
return M
