-- sip_peer.lua — scripted SIP peers for the UA specs, on real loopback
-- sockets: they answer what a test tells them to and record what they got.
-- (A test peer, not part of luasip: it parses only what the tests send.)
local luasip = require "luasip"
local socket = require "socket"

local M = {}

-- Wrap received text as a request: raw, method, uri, header(name).
local function request(data)
  local req = { raw = data, method = data:match("^(%u+) "), uri = data:match("^%u+ (%S+)") }
  function req.header(name)
    return data:match("\r\n" .. name .. ":%s*([^\r\n]*)")
  end
  return req
end

--- A UDP peer answering each request with reply(req) -> response text or nil.
function M.udp(reply)
  local udp = assert(socket.udp())
  assert(udp:setsockname("127.0.0.1", 0))
  udp:settimeout(0)
  local self = { port = select(2, udp:getsockname()), requests = {} }
  self.watch = luasip.watch(udp:getfd(), "r", function()
    local data, ip, port = udp:receivefrom()
    if not data or not data:match("^%u+ ") then return end
    local req = request(data)
    table.insert(self.requests, req)
    local text = reply(req)
    if text then udp:sendto(text, ip, port) end
  end)
  --- How many requests of this method arrived.
  function self.count(method)
    local n = 0
    for _, r in ipairs(self.requests) do if r.method == method then n = n + 1 end end
    return n
  end
  function self.close() self.watch:close() udp:close() end
  return self
end

--- A response to req with its Vias, From, To (tagged), Call-ID and CSeq,
--- extra header lines and a body.
function M.response(req, status, extra, body)
  local lines = { "SIP/2.0 " .. status }
  for via in req.raw:gmatch("\r\nVia:%s*([^\r\n]*)") do lines[#lines + 1] = "Via: " .. via end
  local to = req.header("To")
  if not to:find("tag=", 1, true) then to = to .. ";tag=peer1" end
  lines[#lines + 1] = "From: " .. req.header("From")
  lines[#lines + 1] = "To: " .. to
  lines[#lines + 1] = "Call-ID: " .. req.header("Call%-ID")
  lines[#lines + 1] = "CSeq: " .. req.header("CSeq")
  for _, h in ipairs(extra or {}) do lines[#lines + 1] = h end
  lines[#lines + 1] = "Content-Length: " .. #(body or "")
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

--- 200 OK to anything; to REGISTER with its Contact and expires.
function M.ok(req, expires)
  if req.method == "REGISTER" then
    return M.response(req, "200 OK", { "Contact: " .. req.header("Contact") .. ";expires=" .. (expires or 60) })
  end
  return M.response(req, "200 OK")
end

--- A TCP peer on one connection, answering requests with reply(req) and
--- counting the CRLF keepalives between them (self.pings).
function M.tcp(reply)
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0)
  local self = { port = select(2, srv:getsockname()), pings = 0, requests = {}, watches = {} }
  local buf = ""
  self.watches[1] = luasip.watch(srv:getfd(), "r", function()
    local c = srv:accept()
    if not c then return end
    c:settimeout(0)
    self.conn = c
    self.watches[2] = luasip.watch(c:getfd(), "r", function()
      local data, err, partial = c:receive(65536)
      if err == "closed" then self.watches[2]:close() end
      buf = buf .. (data or partial or "")
      while #buf > 0 do
        local crlf = buf:match("^\r\n\r\n") or buf:match("^\r\n")
        if crlf then
          self.pings = self.pings + 1
          buf = buf:sub(#crlf + 1)
        else
          local e = buf:find("\r\n\r\n", 1, true)
          if not e then break end
          local req = request(buf:sub(1, e + 3))
          buf = buf:sub(e + 4)
          table.insert(self.requests, req)
          local text = reply(req)
          if text then c:send(text) end
        end
      end
    end)
  end)
  function self.close()
    for _, w in pairs(self.watches) do w:close() end
    if self.conn then self.conn:close() end
    srv:close()
  end
  return self
end

return M
