--- luasip.server{...}: a SIP server whose every request lands in a Lua
-- handler, with RFC 3261 behaviour underneath (nta transactions).
--
-- Each request runs its handler in its own task. A handler that ends
-- without a final response gets the best response of its last proxy()
-- relayed, or 500 (logged). An error in a handler answers 500; the loop
-- runs on. Requests following a Route this server recorded (in-dialog
-- ACK, BYE, re-INVITE) are relayed without a handler unless the server was
-- created with `auto_route = false` (then `req.routed` tells), or the
-- Request-URI is ours (a request for this server or its domain).
--
-- The options of `luasip.server{...}` are those of `new`; a handler's
-- `req` is a `Request`, and `req.msg` (like a response in `on_response`)
-- a `Message`.
-- @module luasip.server
-- @usage
--   local srv = assert(luasip.server { listen = "127.0.0.1:5060", domain = "example.com" })
--   srv:on("INVITE", function(req)
--     local st = req:proxy("sip:bob@127.0.0.1:5070")       -- yields until final
--     if st >= 300 then req:proxy("sip:voicemail@127.0.0.1:5090") end
--   end)
--   srv:on("*", function(req) req:reply(404) end)
local core = require "luasip.core"
local log = require "luasip.log"
local task = require "luasip.task"

local M = {}

local Server = { __name = "luasip.server" }
Server.__index = Server

local Request = {}
M.Request = Request

local STANDARD = {}
for m in ("INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE"):gmatch("%S+") do
  STANDARD[m] = true
end

function Server:__tostring()
  return string.format("luasip.server (%s): %s",
    self.agent and table.concat(self:addresses(), ", ") or "closed", self.name)
end

--- Parse a listen address: "host:port", "[v6]:port", "v6", "host".
-- @tparam string s the address
-- @tparam number default_port the port when `s` gives none
-- @treturn[1] string the host (an IPv6 address without its brackets)
-- @treturn[1] number the port
-- @return[2] nil
-- @treturn[2] string "listen must be a string", "listen must look like
-- host:port, got ..." or "port out of range in ..."
-- @usage local host, port = server.parse_listen("[::1]:5070", 5060)  --> "::1", 5070
function M.parse_listen(s, default_port)
  if type(s) ~= "string" or s == "" then return nil, "listen must be a string" end
  local host, port = s:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then
    local colons = select(2, s:gsub(":", ""))
    if colons > 1 then
      host, port = s, ""                    -- bare IPv6 address
    else
      host, port = s:match("^([^:]+):?(%d*)$")
    end
  end
  if not host then return nil, "listen must look like host:port, got " .. s end
  port = port ~= "" and tonumber(port) or default_port
  if port > 65535 then return nil, "port out of range in " .. s end
  return host, port
end

local KNOWN_OPTS = {
  listen = true, transports = true, domain = true, max_size = true, user_agent = true,
  record_route = true, auto_route = true, auth = true, supported = true, observe = true,
  name = true,
}

--- Create a SIP server: what `luasip.server{...}` calls.
-- It listens at once; handlers are added with `Server:on`. Misspelt
-- options raise.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.listen "host:port", "[v6]:port" or "host" (port
-- 5060); port 0 picks a free port, the same for every transport (default
-- "127.0.0.1:5060")
-- @tparam[opt] {string,...} opts.transports list of "udp", "tcp" (default both)
-- @tparam[opt] string|{string,...} opts.domain the SIP domain served (also a
-- host name meaning "us"); a string or a list
-- @tparam[opt] number opts.max_size largest SIP message accepted, bytes
-- (default 65536)
-- @tparam[opt] string opts.user_agent Server header value (default
-- "luasip/" followed by the version)
-- @tparam[opt] boolean opts.record_route true (default): Record-Route on
-- INVITE, SUBSCRIBE and REFER that this server proxies
-- @tparam[opt] boolean opts.auto_route relay requests that follow a Route
-- this server recorded without a handler (see the module; default true)
-- @tparam[opt] luasip.auth.Digest opts.auth a luasip.auth.digest object for
-- `req:authenticate()` and `req:challenge()`
-- @tparam[opt] {string,...} opts.supported option tags a 2xx of our own may
-- accept in Require
-- @tparam[opt] function opts.observe fn(info) after each request is
-- answered; info has method, uri, from, call_id, cseq, transport, source,
-- source_port, status (0 when no final response was sent)
-- @tparam[opt] string opts.name a name shown by tostring(server) (default
-- "server")
-- @treturn[1] Server the server
-- @return[2] nil
-- @treturn[2] string why it cannot listen
-- @treturn[2] string the error code, "EADDRINUSE"
-- @raise "luasip.server: expected a table of options", "luasip.server:
-- unknown option 'NAME'", "luasip.server: observe must be a function",
-- "luasip.server: domain must be a string or a list of strings", or
-- "luasip.server: " followed by what `parse_listen` found wrong in listen;
-- a bad transports list raises "luasip.agent: transport must be \"udp\" or
-- \"tcp\"" (or "luasip.agent: no transports").
-- @usage local srv = assert(luasip.server { listen = "127.0.0.1:0", domain = "example.com" })
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.server: expected a table of options", 3) end
  for k in pairs(opts) do
    if not KNOWN_OPTS[k] then error("luasip.server: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local host, port = M.parse_listen(opts.listen or "127.0.0.1:5060", 5060)
  if not host then error("luasip.server: " .. port, 3) end
  if opts.observe ~= nil and type(opts.observe) ~= "function" then
    error("luasip.server: observe must be a function", 3)
  end
  local domains = opts.domain
  if type(domains) == "string" then domains = { domains } end
  if domains ~= nil and type(domains) ~= "table" then
    error("luasip.server: domain must be a string or a list of strings", 3)
  end
  local self = setmetatable({
    name = opts.name or "server",
    handlers = {},
    observe = opts.observe,
    domains = domains or {},
    auth = opts.auth,
    auto_route = opts.auto_route ~= false,
    record_route = opts.record_route ~= false,
    supported = {},
    requests = 0,
  }, Server)
  for _, tag in ipairs(opts.supported or {}) do self.supported[tag:lower()] = true end
  local agent, err, code = core.agent {
    host = host,
    port = port,
    transports = opts.transports,
    max_size = opts.max_size,
    user_agent = opts.user_agent or ("luasip/" .. core.version),
    aliases = domains,
    on_request = function(r) self:_dispatch(r) end,
  }
  if not agent then
    log.debug("luasip.server: %s", err)
    return nil, err, code
  end
  self.agent = agent
  self.host = host
  self.port = agent:port()
  self.domain = self.domains[1] or host
  local h = host:find(":", 1, true) and ("[" .. host .. "]") or host
  self.uri = "sip:" .. h .. ":" .. self.port
  self:_sync()
  return self
end

--- A SIP server, made by `luasip.server{...}` (`new`).
-- @type Server

--- The URI of this server, "sip:host:port" (the port it got, with port 0).
-- @tfield string uri

--- The listening host.
-- @tfield string host

--- The listening port.
-- @tfield number port

--- The first domain served, else the host.
-- @tfield string domain

--- The `name` option of `new`.
-- @tfield string name

--- How many requests have arrived.
-- @tfield number requests

--- The User-Agent value, "luasip/" followed by the version.
-- For the headers of requests a role builds itself.
-- @tfield string USER_AGENT

--- The bound listening points.
-- For example {"udp/127.0.0.1:5060", "tcp/127.0.0.1:5060"}.
-- @treturn {string,...} the listening points; empty once closed
function Server:addresses()
  if not self.agent then return {} end
  return self.agent:addresses()
end

--- The methods this server answers (for Allow).
-- @treturn string "OPTIONS" and every method with a handler, sorted and
-- comma-separated, e.g. "INVITE, OPTIONS, REGISTER"
function Server:allow()
  local list = { "OPTIONS" }
  for m in pairs(self.handlers) do
    if m ~= "*" and m ~= "OPTIONS" then list[#list + 1] = m end
  end
  table.sort(list)
  return table.concat(list, ", ")
end

-- OPTIONS are answered in C unless a handler or observe wants them.
function Server:_sync()
  if not self.agent then return end
  if self.handlers.OPTIONS or self.handlers["*"] or self.observe then
    self.agent:answer_options(nil)
  else
    self.agent:answer_options(self:allow())
  end
end

--- Handle requests of this method with fn(req); nil removes.
-- `server:on(method, fn)`: method "*" means any method without a handler
-- of its own. Each request runs fn(req) in its own task. A callable object
-- such as a registrar works too, and the option tags it lists in its
-- `supported` field join the server's.
-- @tparam string method a method name such as "INVITE" (any case), or "*"
-- @tparam ?function|table fn the handler fn(req) (`req` is a `Request`), a
-- callable object, or nil to remove the handler
-- @treturn Server the server
-- @raise "server:on: method must be a string such as \"INVITE\" or \"*\"",
-- "server:on: handler must be a function"
-- @usage srv:on("OPTIONS", function(req) req:reply(200) end)
-- srv:on("REGISTER", luasip.registrar { auth = digest })
function Server:on(method, fn)
  if type(method) ~= "string" or method == "" then
    error("server:on: method must be a string such as \"INVITE\" or \"*\"", 2)
  end
  if type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call then
    local obj = fn                      -- a callable handler object (a registrar)
    fn = function(req) return obj(req) end
    -- the extensions it implements (the registrar: path) are ours now
    for _, tag in ipairs(obj.supported or {}) do self.supported[tag:lower()] = true end
  end
  if fn ~= nil and type(fn) ~= "function" then error("server:on: handler must be a function", 2) end
  method = method == "*" and "*" or method:upper()
  if self.staged then            -- a hot reload in progress (luasip.reload)
    self.staged[method] = fn
    return self
  end
  self.handlers[method] = fn
  self:_sync()
  return self
end

--- Replace every handler at once (hot reload).
-- Requests already running keep the handler they started with.
-- @tparam table handlers method ("INVITE", "*", ...) -> fn(req)
function Server:set_handlers(handlers)
  self.handlers = {}
  for m, fn in pairs(handlers) do self.handlers[m] = fn end
  self:_sync()
end

--- Is this URI one of ours?
-- Ours: our address with our port (a parsed URI, as `req.uri`), or one of
-- our domains (with our port, when the URI has one). A bare host string is
-- compared as a host only.
-- @tparam string|table uri a host, or a parsed URI (host, port, scheme)
-- @treturn boolean
function Server:is_me(uri)
  local host, port = uri, nil
  if type(uri) == "table" then host, port = uri.host, uri.port end
  if not host then return false end
  host = host:lower():gsub("^%[(.*)%]$", "%1")
  for _, d in ipairs(self.domains) do
    if d:lower() == host then return port == nil or port == self.port end
  end
  if host ~= self.host then return false end
  if type(uri) ~= "table" then return true end
  return (port or (uri.scheme == "sips" and 5061 or 5060)) == self.port
end

local USER_AGENT = "luasip/" .. core.version
Server.USER_AGENT = USER_AGENT
local REQUEST_OPTS = { from = true, to = true, call_id = true, cseq = true, route = true,
  contact = true, headers = true, body = true, content_type = true, next_hop = true, timeout = true }

-- The text of a request of ours (see server:request), checked: raises
-- "server:request: ..." for the script's call (level 3: the caller of the
-- method that called this).
local function request_text(self, method, uri, opts)
  if type(method) ~= "string" or not method:match("^%u+$") then error("server:request: method must be an upper-case token", 3) end
  if type(uri) ~= "string" or uri:find("[%s<>]") then error("server:request: uri must be a URI string", 3) end
  if type(opts) ~= "table" then error("server:request: options must be a table", 3) end
  for k in pairs(opts) do
    if not REQUEST_OPTS[k] then error("server:request: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local lines = { method .. " " .. uri .. " SIP/2.0", "Max-Forwards: 70" }
  local function add(name, v)
    if v == nil then return end
    if type(v) ~= "string" and type(v) ~= "number" then
      error("server:request: " .. name .. " must be a string", 4)
    end
    v = tostring(v)
    if v:find("[\r\n]") then error("server:request: " .. name .. " must be one line", 4) end
    lines[#lines + 1] = name .. ": " .. v
  end
  add("From", opts.from or ("<" .. self.uri .. ">;tag=" .. core.random_token(10)))
  add("To", opts.to or ("<" .. uri .. ">"))
  add("Call-ID", opts.call_id or (core.random_token(20) .. "@" .. self.host))
  add("CSeq", string.format("%d %s", opts.cseq or 1, method))
  for _, r in ipairs(opts.route or {}) do add("Route", r) end
  add("Contact", opts.contact)
  add("User-Agent", USER_AGENT)
  local extra = opts.headers and core.header_lines(opts.headers, "server:request")
  if extra and extra ~= "" then lines[#lines + 1] = (extra:gsub("\r\n$", "")) end
  local body = opts.body or ""
  if opts.body then add("Content-Type", opts.content_type or "text/plain") end
  add("Content-Length", #body)
  lines[#lines + 1] = ""
  lines[#lines + 1] = body
  return table.concat(lines, "\r\n")
end

--- Send a request of our own and wait for its final response.
-- `server:request(method, uri, opts)` — a NOTIFY for a subscription we
-- serve, a MESSAGE. Not for INVITE, ACK or CANCEL. A blocking verb: in a
-- task (a handler is one) it yields, at top level it runs the loop until
-- done.
-- @tparam string method an upper-case method such as "NOTIFY"
-- @tparam string uri the Request-URI
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.from From header value; it needs its tag
-- (default: our URI with a new tag)
-- @tparam[opt] string opts.to To header value (default: the Request-URI)
-- @tparam[opt] string opts.call_id Call-ID (default: a new one)
-- @tparam[opt] number opts.cseq CSeq number (default 1)
-- @tparam[opt] {string,...} opts.route list of Route values, in order
-- @tparam[opt] string opts.contact Contact header value
-- @tparam[opt] table opts.headers extra headers (as for `Request:reply`)
-- @tparam[opt] string opts.body the body
-- @tparam[opt] string opts.content_type the body's type (default
-- "text/plain" with a body)
-- @tparam[opt] string opts.next_hop URI to send to instead of the first
-- Route or the Request-URI
-- @tparam[opt] number opts.timeout seconds (default 32: nta's own Timer F
-- gives 408 before that)
-- @treturn[1] number the final status; nta makes up 408 or 503 when
-- nothing comes back
-- @treturn[1] ?Message the final response (nil when nta made the
-- status up)
-- @return[2] nil for a request that could not be sent, or no answer in time
-- @treturn[2] string "server closed", "timeout", or why it could not be
-- sent (such as "INVITE, ACK and CANCEL are not sent this way")
-- @raise "server:request: method must be an upper-case token",
-- "server:request: uri must be a URI string", "server:request: options must
-- be a table", "server:request: unknown option 'NAME'", "server:request: NAME
-- must be a string" or "... must be one line" for a header option, and
-- from a plain callback "server:request blocks, and cannot be called from a
-- callback: run the code in luasip.spawn(function() ... end)".
-- @usage local status = srv:request("MESSAGE", "sip:bob@127.0.0.1:5070", {
--   from = "<sip:alice@example.com>;tag=1", body = "hello" })
function Server:request(method, uri, opts)
  opts = opts or {}
  local text = request_text(self, method, uri, opts)
  if not self.agent then return nil, "server closed" end
  return task.wait(function(done)
    local b, err = self.agent:request(text, opts.next_hop, function(_, st, msg)
      if st >= 200 then done(st, msg) end
    end)
    if not b then done(nil, err) return end
    return function() b:close() end
  end, opts.timeout or 32, "server:request")
end

-- A request of ours from its whole text (no Via; a role that sends many
-- builds them itself: the presence server's NOTIFYs), without waiting:
-- fn(status, response) runs once, from the event loop, with the final
-- response (nta makes up 408 or 503); no task, no timer of ours (nta's
-- Timer F ends it). Returns the branch, or nil, err.
function Server:_send_text(text, next_hop, fn)
  if not self.agent then return nil, "server closed" end
  return self.agent:request(text, next_hop, function(_, st, msg)
    if st >= 200 then fn(st, msg) end
  end)
end

--- Stop listening; requests in progress are answered 500 and released.
-- Idempotent.
function Server:close()
  if self.agent then
    self.agent:close()
    self.agent = nil
  end
end
Server.__close = Server.close

-- ---- dispatch -----------------------------------------------------------

local function traceback(e)
  if e == task.CANCELLED then return e end
  return debug.traceback(type(e) == "string" and e or tostring(e), 2)
end

local function observe(req)
  local ob = req.server.observe
  if not ob then return end
  local m = req.msg
  local from = m.from
  local ok, err = pcall(ob, {
    method = req.method, uri = req.ruri, from = from and from.uri and from.uri.str or "",
    call_id = m.call_id, cseq = m.cseq, transport = m.transport,
    source = m.source, source_port = m.source_port, status = req.final or 0,
  })
  if not ok then log.error("luasip.server: observe: %s", err) end
end

-- The end of every handler task: make sure the request got its answer.
local function run_handler(req, fn)
  local ok, err = xpcall(fn, traceback, req)
  if req.method == "ACK" then return observe(req) end
  if not ok then
    if err ~= task.CANCELLED then
      log.error("luasip.server: %s handler failed: %s", req.method, err)
    end
    if not req.final then req:reply(500, "Server Internal Error") end
  elseif not req.final then
    if req.cancelled and not req.best_status then
      req:reply(487, "Request Terminated")
    elseif req.best_response then
      req:_relay_best()
    elseif req.best_status then
      req:reply(req.best_status)
    else
      log.warn("luasip.server: the %s handler ended without a final response: 500 sent", req.method)
      req:reply(500, "No Response From Handler")
    end
  end
  observe(req)
end

function Server:_dispatch(r)
  local msg = r:message()
  local method = msg.method
  local req = setmetatable({ r = r, msg = msg, server = self, method = method }, Request)
  local _, routed = r:info()
  req.routed = routed
  self.requests = self.requests + 1
  local fn = self.handlers[method]
  if routed and self.auto_route and not self:is_me(msg.uri) then
    fn = Request.proxy
  elseif not fn then
    fn = self.handlers["*"]
  end
  if not fn then
    if method == "ACK" then return end
    if method == "OPTIONS" then
      req:reply(200, nil, { headers = { Allow = self:allow(), Accept = "application/sdp" } })
    elseif method == "CANCEL" then
      req:reply(481)                   -- no transaction of ours matched it
    elseif STANDARD[method] then
      req:reply(405, nil, { headers = { Allow = self:allow() } })
    else
      req:reply(501, nil, { headers = { Allow = self:allow() } })
    end
    return observe(req)
  end
  if method == "INVITE" then
    -- a transaction from the start: a CANCEL that comes while the handler
    -- is still busy (auth, a lookup) then finds it, and sets req.cancelled
    r:transaction(function() req:_on_cancel() end)
  end
  task.spawn(run_handler, req, fn)
end

-- ---- requests -----------------------------------------------------------

-- Fields read from the message on first use.
local LAZY = {
  ruri = function(req) return req.msg.uri.str end,
  uri = function(req) return req.msg.uri end,
  source = function(req) return req.msg.source end,
  from = function(req) return req.msg.from end,
  to = function(req) return req.msg.to end,
  call_id = function(req) return req.msg.call_id end,
  cseq = function(req) return req.msg.cseq end,
  in_dialog = function(req) return req.msg.to_tag ~= nil end,
}

function Request:__index(k)
  local m = Request[k]
  if m ~= nil then return m end
  local lazy = LAZY[k]
  if lazy then
    local v = lazy(self)
    rawset(self, k, v)
    return v
  end
  return self.msg[k]
end

function Request:__tostring()
  return "luasip.request (" .. self.method .. " " .. tostring(self.call_id) .. ")"
end

--- A request, as a handler gets it: fn(req) of `Server:on`.
-- Besides the fields below, `req.body`, `req.content_type`,
-- `req.contact`, `req.transport` and the other fields of its `Message`
-- read through to `req.msg`. `req:proxy()` and `req:relay()` are installed
-- by luasip.proxy, which documents them in full.
-- @type Request

--- The method, such as "INVITE".
-- @tfield string method

--- The Request-URI as a string.
-- @tfield string ruri

--- The Request-URI parsed: scheme, user, password, host, port, params,
-- headers, str.
-- @tfield table uri

--- The From header: display, uri (parsed), tag, params.
-- @tfield table from

--- The To header, as `from`.
-- @tfield table to

--- The Call-ID.
-- @tfield string call_id

--- The CSeq number.
-- @tfield number cseq

--- The sender's IP address.
-- @tfield string source

--- True when the To has a tag (a request within a dialog).
-- @tfield boolean in_dialog

--- True when a Route of this server was consumed on arrival.
-- See `auto_route` in `new`.
-- @tfield boolean routed

--- The parsed request.
-- @tfield Message msg

--- The server it came to.
-- @tfield Server server

--- The status of the final response sent (0 after `forward`), nil before.
-- @tfield number final

--- True once the client CANCELled the request.
-- @tfield boolean cancelled

--- The user that `authenticate` accepted.
-- @tfield string user

--- The first value of header `name`, or nil (`req.msg:header(name)`).
-- @tparam string name the header name (any case, long or compact form)
-- @treturn ?string the value
-- @usage local ua = req:header("User-Agent")
function Request:header(name) return self.msg:header(name) end
--- Every value of header `name`, in order (`req.msg:headers(name)`).
-- Without a name, every header as a {name, value} pair.
-- @tparam[opt] string name the header name
-- @treturn {string,...} the values (empty when there is none), or a list of
-- {name, value} without a name
function Request:headers(name) return self.msg:headers(name) end
--- Append a header to the request (`req.msg:add_header`).
-- Changing the request before relaying it: a later `proxy()` or `forward()`
-- sends it changed.
-- @tparam string name the header name
-- @tparam string value the header value (one line)
-- @treturn boolean true
-- @raise "luasip.message: bad header name 'NAME'", "luasip.message: header
-- 'NAME' has a line break in its value", "luasip.message: cannot add header
-- 'NAME'" (sofia could not parse it)
function Request:add_header(name, value) return self.msg:add_header(name, value) end
--- Replace every header of that name with one value (`req.msg:set_header`).
-- @tparam string name the header name
-- @tparam string value the header value (one line)
-- @treturn boolean true
-- @raise "luasip.message: bad header name 'NAME'", "luasip.message: header
-- 'NAME' has a line break in its value", "luasip.message: cannot add header
-- 'NAME'" (sofia could not parse it)
function Request:set_header(name, value) return self.msg:set_header(name, value) end
--- Remove every header of that name (`req.msg:remove_header`).
-- @tparam string name the header name
-- @treturn number how many were removed
function Request:remove_header(name) return self.msg:remove_header(name) end

--- Rewrite the Request-URI (before proxy() or forward()).
-- @tparam string uri the new Request-URI
-- @raise "req:set_uri: uri must be a string", "luasip.request: bad URI 'URI'"
function Request:set_uri(uri)
  if type(uri) ~= "string" then error("req:set_uri: uri must be a string", 2) end
  self.r:set_uri(uri)
  self.ruri, self.uri = nil, nil
end

local function header_lines(headers)
  if headers == nil then return nil end
  return core.header_lines(headers, "req:reply")
end

--- @section end

--- The option tags of msg's `name` headers that are not in the set `known`.
-- `name`: Require, Supported, ...; `known`: lower-case tag -> true. For a
-- role that implements extensions (the registrar checks Require with it).
-- @tparam Message msg a message (or anything with header() and headers())
-- @tparam string name the header name
-- @tparam table known the tags supported, lower-case tag -> true
-- @treturn ?string the unknown tags as "a, b", or nil when there is none
-- @usage local bad = server.unknown_option_tags(req.msg, "Require", { path = true })
-- if bad then return req:reply(420, "Bad Extension", { headers = { Unsupported = bad } }) end
function M.unknown_option_tags(msg, name, known)
  if not msg:header(name) then return nil end
  local bad
  for _, v in ipairs(msg:headers(name)) do
    for tag in v:gmatch("[^,%s]+") do
      if not known[tag:lower()] then
        bad = bad or {}
        bad[#bad + 1] = tag
      end
    end
  end
  return bad and table.concat(bad, ", ") or nil
end

--- @type Request

-- The option tags of Require that we do not support (§8.2.2.3).
function Request:_unsupported()
  return M.unknown_option_tags(self.msg, "Require", self.server.supported)
end

--- Send a provisional or final response.
-- `req:reply(status [, reason] [, {headers=, body=, content_type=, to_tag=}])`;
-- the options may come in the place of the reason. A 2xx of our own to a
-- request whose Require we do not support becomes 420 with Unsupported.
-- @tparam number status 100 to 699
-- @tparam[opt] string reason the reason phrase (default: the standard one
-- for the status)
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers: name -> value or list of
-- values, or a list of "Name: value" strings
-- @tparam[opt] string opts.header_text "Name: value\r\n..." instead of
-- headers: lines built and checked by the caller
-- @tparam[opt] string opts.body the body
-- @tparam[opt] string opts.content_type the body's type (default
-- "text/plain" with a body)
-- @tparam[opt] string opts.to_tag the To tag of a response that makes a
-- dialog, such as a SUBSCRIBE's 2xx
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string "a final response was already sent", "ACK gets no
-- response", "cannot set the To tag" or "the response could not be sent"
-- @raise "req:reply: status must be a number", "luasip.request: status must
-- be 100..699", and for bad headers "req:reply: headers must be a table",
-- "req:reply: header values must be strings" and the like
-- @usage req:reply(486, "Busy Here")
-- req:reply(200, { headers = { Contact = "<sip:me@127.0.0.1>" }, body = sdp,
--   content_type = "application/sdp" })
function Request:reply(status, reason, opts)
  if type(status) ~= "number" then error("req:reply: status must be a number", 2) end
  if type(reason) == "table" and opts == nil then reason, opts = nil, reason end
  opts = opts or {}
  if self.final then return nil, "a final response was already sent" end
  if status >= 200 and status < 300 and self.method ~= "CANCEL" then
    local bad = self:_unsupported()
    if bad then
      status, reason, opts = 420, "Bad Extension", { headers = { Unsupported = bad } }
    end
  end
  local ok, err = self.r:reply(status, reason, opts.header_text or header_lines(opts.headers), opts.body,
    opts.body and (opts.content_type or "text/plain") or nil, opts.to_tag)
  if ok and status >= 200 then self.final = status end
  return ok, err
end

--- Answer with a redirect (3xx) listing the contacts.
-- `req:redirect(contacts [, status=302])` — contacts: URI strings or
-- location bindings (their q-values and remaining expires go along).
-- @tparam string|table contacts a URI, a binding, or a list of either
-- @tparam[opt=302] number status a 3xx status
-- @return what `reply` returns: true, or nil, err
-- @raise "req:redirect: contacts must be a list", "req:redirect: status must
-- be 3xx"
-- @usage req:redirect(loc:lookup(aor))
function Request:redirect(contacts, status)
  status = status or 302
  if type(contacts) == "string" or (type(contacts) == "table" and contacts.contact) then
    contacts = { contacts }
  end
  if type(contacts) ~= "table" then error("req:redirect: contacts must be a list", 2) end
  if status < 300 or status > 399 then error("req:redirect: status must be 3xx", 2) end
  local lines, now = {}, os.time()
  for _, c in ipairs(contacts) do
    if type(c) == "string" then
      lines[#lines + 1] = c:find("^<") and c or ("<" .. c .. ">")
    else
      local v = "<" .. c.contact .. ">"
      if c.q then v = v .. ";q=" .. string.format("%.3g", c.q) end
      if c.expires then v = v .. ";expires=" .. math.max(0, math.floor(c.expires - now)) end
      lines[#lines + 1] = v
    end
  end
  return self:reply(status, nil, { headers = { Contact = lines } })
end

--- Relay the request statelessly (§16.11).
-- `req:forward([uri] [, {headers=, next_hop=}])` — stateless relay: no
-- transaction, no retransmissions, no response handling of ours. The
-- handler's end sends no response after it. Max-Forwards 0 answers 483
-- (an ACK is dropped).
-- @tparam[opt] string uri the target (nil: the Request-URI)
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers (as for `reply`)
-- @tparam[opt] string opts.next_hop URI to send to instead of the first
-- Route or the Request-URI
-- @treturn[1] boolean true: sent, or answered 483 Too Many Hops
-- @return[2] nil
-- @treturn[2] string why, such as "Max-Forwards is 0" (an ACK), "bad target
-- URI: ...", "cannot forward the request"
-- @raise for bad headers "req:reply: headers must be a table" and the like
-- (the messages say req:reply)
function Request:forward(uri, opts)
  opts = opts or {}
  local mf = self.r:max_forwards()
  if mf == 0 then
    if self.method == "ACK" then return nil, "Max-Forwards is 0" end  -- dropped (§16.3)
    return self:reply(483, "Too Many Hops")
  end
  local ok, err = self.r:forward(uri, nil, header_lines(opts.headers), opts.next_hop)
  if ok and self.method ~= "ACK" then self.final = self.final or 0 end
  self.forwarded = ok
  return ok, err
end

--- Check the request's digest credentials.
-- The user authenticated by the server's digest auth (or the given
-- one), or nil, why ("missing", "stale", "invalid", "replay",
-- "throttled"). A REGISTER is checked as a registrar (Authorization),
-- anything else as a proxy (Proxy-Authorization) unless opts.proxy says.
-- The auth may be left out: `req:authenticate(opts)`. Sets `req.user`.
-- @tparam[opt] luasip.auth.Digest auth the authenticator (default: the
-- server's `auth`)
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.proxy check Proxy-Authorization (true) or
-- Authorization (false) (default: false for a REGISTER, else true)
-- @treturn[1] string the authenticated user
-- @return[2] nil
-- @treturn[2] string why: "missing", "stale", "invalid", "replay" or
-- "throttled" (see `luasip.auth.Digest:check`)
-- @raise "req:authenticate: the server has no auth (luasip.server{auth =
-- ...})"; an error of the auth's lookup function propagates
-- @usage local user = req:authenticate()
-- if not user then return req:challenge() end
function Request:authenticate(auth, opts)
  if type(auth) ~= "table" or not auth.check then auth, opts = self.server.auth, auth end
  if not auth then error("req:authenticate: the server has no auth (luasip.server{auth = ...})", 2) end
  opts = opts or {}
  local proxy = opts.proxy
  if proxy == nil then proxy = self.method ~= "REGISTER" end
  local user, why = auth:check(self.msg, { proxy = proxy })
  self.auth_why, self.auth_proxy, self.auth_used = why, proxy, auth
  if user then self.user = user end
  return user, why
end

--- Answer with a challenge.
-- 401 (registrar) or 407 (proxy), stale=true when the nonce had merely
-- expired; 403 to a throttled source. It follows the last `authenticate`:
-- its auth, its proxy choice and its why. The auth may be left out:
-- `req:challenge(opts)`.
-- @tparam[opt] luasip.auth.Digest auth the authenticator (default: the one
-- `authenticate` used, else the server's `auth`)
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.proxy 407 (true) or 401 (false) (default: as
-- `authenticate` decided, else false for a REGISTER and true otherwise)
-- @return what `reply` returns: true, or nil, err
-- @raise "req:challenge: the server has no auth (luasip.server{auth = ...})"
-- @usage if not req:authenticate() then return req:challenge() end
function Request:challenge(auth, opts)
  if type(auth) ~= "table" or not auth.challenge then auth, opts = self.auth_used or self.server.auth, auth end
  if not auth then error("req:challenge: the server has no auth (luasip.server{auth = ...})", 2) end
  opts = opts or {}
  local proxy = opts.proxy
  if proxy == nil then proxy = self.auth_proxy end
  if proxy == nil then proxy = self.method ~= "REGISTER" end
  if self.auth_why == "throttled" then return self:reply(403, "Too Many Failed Attempts") end
  local status, headers = auth:challenge(self.msg, { proxy = proxy, stale = self.auth_why == "stale" })
  return self:reply(status, nil, { headers = headers })
end

--- Proxy the request statefully (RFC 3261 §16) and wait for the outcome.
-- Installed by luasip.proxy, where every option and return form is
-- documented.
-- @tparam ?string|table targets a URI, a location binding, a list of
-- either, or nil for the Request-URI
-- @tparam[opt] table opts timeout, branch_timeout, parallel, serial,
-- record_route, headers, next_hop, nat, on_response
-- @treturn number the status (see luasip.proxy for every form)
-- @treturn ?Message the response
-- @function Request:proxy

--- Send a response of one of our branches upstream.
-- Installed by luasip.proxy.
-- @tparam Message response
-- @return true, or nil, err
-- @function Request:relay

--- A parsed SIP message, request or response (`luasip.message`, in C).
-- `req.msg`, a branch's response in `on_response` and the response of
-- `Server:request`. Its fields are decoded on access from sofia's parsed
-- headers, so nothing the parser rejected ever reaches Lua: a header sofia
-- could not parse is absent and shows up only in `raw()`. Absent fields
-- are nil.
-- @type Message

--- The method of a request, or of a response's CSeq.
-- @tfield string method

--- A response's status.
-- @tfield number status

--- A response's reason phrase.
-- @tfield string reason

--- True for a request.
-- @tfield boolean is_request

--- A request's Request-URI parsed: scheme, user, password, host, port,
-- params (table), headers, str (the whole URI).
-- @tfield table uri

--- The From header: display, uri (parsed), tag, params.
-- @tfield table from

--- The To header, as `from`.
-- @tfield table to

--- The From tag.
-- @tfield string from_tag

--- The To tag.
-- @tfield string to_tag

--- The first Contact: display, uri (parsed), params.
-- @tfield table contact

--- Every Contact, as `contact`.
-- @tfield table contacts

--- The Call-ID.
-- @tfield string call_id

--- The CSeq number.
-- @tfield number cseq

--- The body.
-- @tfield string body

--- The Content-Type's type, such as "application/sdp".
-- @tfield string content_type

--- The sender's IP address.
-- @tfield string source

--- The sender's port.
-- @tfield number source_port

--- The transport, "udp" or "tcp" (a request's comes from its top Via).
-- @tfield string transport

--- The first value of header `name`, or nil.
-- The name matches in any case, long or compact form; an unknown
-- header's name matches case-insensitively.
-- @tparam string name the header name
-- @treturn ?string the value
-- @function Message:header

--- Every value of header `name`, in order, or every header.
-- `m:headers([name])` -> list of values for name, or of {name, value} for
-- all.
-- @tparam[opt] string name the header name
-- @treturn table a list of values (empty when there is none), or without a
-- name a list of {name, value}
-- @function Message:headers

--- The whole message as text.
-- @treturn string the message
-- @function Message:raw

--- Append a header (parsed by sofia).
-- @tparam string name the header name
-- @tparam string value the header value (one line)
-- @treturn boolean true
-- @raise "luasip.message: bad header name 'NAME'", "luasip.message: header
-- 'NAME' has a line break in its value", "luasip.message: cannot add header
-- 'NAME'" (sofia could not parse it)
-- @function Message:add_header

--- Replace every header of that name with one value.
-- @tparam string name the header name
-- @tparam string value the header value (one line)
-- @treturn boolean true
-- @raise "luasip.message: bad header name 'NAME'", "luasip.message: header
-- 'NAME' has a line break in its value", "luasip.message: cannot add header
-- 'NAME'" (sofia could not parse it)
-- @function Message:set_header

--- Remove every header of that name.
-- @tparam string name the header name
-- @treturn number how many were removed
-- @function Message:remove_header

--- The To URI as an address-of-record.
-- "sip:user@host" with the user unescaped, the host in lower case and no
-- port or parameters (RFC 3261 §10.3 step 5; a sips To gives the same AOR
-- as sip), then the user (or nil) and the host; nil for no To or a scheme
-- other than sip/sips.
-- @treturn[1] string the AOR
-- @treturn[1] ?string the user, unescaped
-- @treturn[1] string the host, in lower case
-- @return[2] nil
-- @function Message:aor

--- The Contacts as flat records, for registrars.
-- A list of {uri=, expires=, q=, instance=, reg_id=}, one per Contact,
-- with the parameters as their raw strings (absent ones nil); uri is "*"
-- for a wildcard. The flat form of `m.contacts`.
-- @treturn table the list (empty without Contact)
-- @function Message:contact_list

--- The authentication challenges of a response.
-- A list of {scheme=, proxy=, params={realm=, nonce=, ...}} from
-- WWW-Authenticate (proxy false) and Proxy-Authenticate (proxy true), the
-- parameter names in lower case and the values unquoted.
-- @treturn table the list (empty when there is none)
-- @function Message:challenges

require("luasip.proxy").install(Request)

return M
