--- luasip.server{...}: a SIP server bound to one address on UDP and TCP.
--
-- At this stage it answers OPTIONS with 200 (RFC 3261 §11) and every other
-- method with 501; request routing in Lua builds on it.
--
--   local srv = assert(luasip.server{ listen = "127.0.0.1:5060" })
--   print(srv.port, table.concat(srv:addresses(), " "))
--   srv:close()
--
-- Options:
--   listen      "host:port", "[v6]:port" or "host" (port 5060); port 0
--               picks a free port, the same for every transport
--   transports  list of "udp", "tcp" (default both)
--   max_size    largest SIP message accepted, bytes (default 65536)
--   user_agent  Server header value
--   observe     fn(info) after each request is answered; info has method,
--               uri, from, call_id, cseq, transport, source, source_port,
--               status
local core = require "luasip.core"
local log = require "luasip.log"

local M = {}

local Server = { __name = "luasip.server" }
Server.__index = Server

function Server:__tostring()
  return string.format("luasip.server (%s): %s",
    self.agent and table.concat(self:addresses(), ", ") or "closed", self.name)
end

--- Parse "host:port", "[v6]:port", "v6", "host". Returns host, port or nil, err.
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

function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.server: expected a table of options", 3) end
  local host, port = M.parse_listen(opts.listen or "127.0.0.1:5060", 5060)
  if not host then error("luasip.server: " .. port, 3) end
  if opts.observe ~= nil and type(opts.observe) ~= "function" then
    error("luasip.server: observe must be a function", 3)
  end
  local self = setmetatable({ name = opts.name or "server" }, Server)
  local observe = opts.observe
  local agent, err, code = core.agent {
    host = host,
    port = port,
    transports = opts.transports,
    max_size = opts.max_size,
    user_agent = opts.user_agent or ("luasip/" .. core.version),
    on_request = observe and function(info) observe(info) end,
  }
  if not agent then
    log.debug("luasip.server: %s", err)
    return nil, err, code
  end
  self.agent = agent
  self.host = host
  self.port = agent:port()
  return self
end

--- Bound listening points, e.g. {"udp/127.0.0.1:5060", "tcp/127.0.0.1:5060"}.
function Server:addresses()
  if not self.agent then return {} end
  return self.agent:addresses()
end

--- Stop listening and release the transports. Idempotent.
function Server:close()
  if self.agent then
    self.agent:close()
    self.agent = nil
  end
end
Server.__close = Server.close

return M
