-- NAT traversal of the UA: the public address learnt with STUN in Contact
-- and SDP, OPTIONS keepalives to the registrar, CRLF keepalives on TCP.
-- The peers are scripted on real loopback sockets: a STUN server that
-- maps every client to 192.0.2.10 (TEST-NET-1), and a registrar.
local H = require "spec.helper"
local luasip = require "luasip"
local socket = require "socket"

local PUBLIC = "192.0.2.10"

-- A STUN server (RFC 5389 Binding) answering with MAPPED-ADDRESS PUBLIC:40000.
local function stun_server()
  local udp = assert(socket.udp())
  assert(udp:setsockname("127.0.0.1", 0))
  udp:settimeout(0)
  local self = { port = select(2, udp:getsockname()), requests = 0 }
  self.watch = luasip.watch(udp:getfd(), "r", function()
    local data, ip, port = udp:receivefrom()
    if not data or #data < 20 or data:byte(1) ~= 0 or data:byte(2) ~= 1 then return end
    self.requests = self.requests + 1
    local a, b, c, d = PUBLIC:match("(%d+)%.(%d+)%.(%d+)%.(%d+)")
    local attr = string.char(0, 1, 0, 8, 0, 1, 0x9c, 0x40, tonumber(a), tonumber(b), tonumber(c), tonumber(d))
    udp:sendto(string.char(0x01, 0x01, 0, #attr) .. data:sub(5, 20) .. attr, ip, port)
  end)
  function self.close() self.watch:close() udp:close() end
  return self
end

-- Answers every request 200 (REGISTER with its Contact) and records them.
local function answer(data)
  local function hdr(n) return data:match("\r\n" .. n .. ":%s*([^\r\n]*)") end
  local lines = { "SIP/2.0 200 OK" }
  for via in data:gmatch("\r\nVia:%s*([^\r\n]*)") do lines[#lines + 1] = "Via: " .. via end
  lines[#lines + 1] = "From: " .. hdr("From")
  lines[#lines + 1] = "To: " .. hdr("To") .. ";tag=reg"
  lines[#lines + 1] = "Call-ID: " .. hdr("Call%-ID")
  lines[#lines + 1] = "CSeq: " .. hdr("CSeq")
  if data:match("^REGISTER") then lines[#lines + 1] = "Contact: " .. hdr("Contact") .. ";expires=60" end
  lines[#lines + 1] = "Content-Length: 0"
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function udp_registrar()
  local udp = assert(socket.udp())
  assert(udp:setsockname("127.0.0.1", 0))
  udp:settimeout(0)
  local self = { port = select(2, udp:getsockname()), requests = {} }
  self.watch = luasip.watch(udp:getfd(), "r", function()
    local data, ip, port = udp:receivefrom()
    if not data or not data:match("^%u+ ") then return end
    table.insert(self.requests, data)
    udp:sendto(answer(data), ip, port)
  end)
  function self.count(method)
    local n = 0
    for _, r in ipairs(self.requests) do if r:match("^" .. method .. " ") then n = n + 1 end end
    return n
  end
  function self.close() self.watch:close() udp:close() end
  return self
end

-- A TCP registrar counting the CRLF keepalives between messages.
local function tcp_registrar()
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0)
  local self = { port = select(2, srv:getsockname()), pings = 0, registers = 0, watches = {} }
  local buf = ""
  self.watches[1] = luasip.watch(srv:getfd(), "r", function()
    local c = srv:accept()
    if not c then return end
    c:settimeout(0)
    self.conn = c
    self.watches[2] = luasip.watch(c:getfd(), "r", function()
      local data, err, partial = c:receive(65536)
      data = data or partial
      if err == "closed" then self.watches[2]:close() end
      buf = buf .. (data or "")
      while #buf > 0 do
        local crlf = buf:match("^\r\n\r\n") or buf:match("^\r\n")
        if crlf then
          self.pings = self.pings + 1
          buf = buf:sub(#crlf + 1)
        else
          local e = buf:find("\r\n\r\n", 1, true)
          if not e then break end
          local head = buf:sub(1, e + 3)
          buf = buf:sub(e + 4)
          if head:match("^REGISTER") then self.registers = self.registers + 1 end
          c:send(answer(head))
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

describe("UA NAT traversal", function()
  H.leakcheck()

  it("puts the address learnt with STUN in Contact and SDP", function()
    H.run(function()
      local stun = stun_server()
      local reg = udp_registrar()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1",
                                    stun = "127.0.0.1:" .. stun.port })
      assert.equal(1, stun.requests)
      assert.equal(PUBLIC, ua.public_host)
      assert(ua:register { registrar = "sip:127.0.0.1:" .. reg.port })
      local contact = reg.requests[1]:match("\r\nContact:%s*([^\r\n]*)")
      assert.equal(string.format("<sip:alice@%s:%d>", PUBLIC, ua.port), contact)
      -- a call: Contact and the offer's c= line carry the public address
      local bob = assert(luasip.ua { listen = "127.0.0.1:0" })
      local got
      bob:on("call", function(call) got = call call:answer() end)
      local call = assert(ua:call("sip:bob@127.0.0.1:" .. bob.port, { timeout = 5 }))
      assert.equal(PUBLIC, got.request.contact.uri.host)
      assert.truthy(got.remote_sdp:find("c=IN IP4 " .. PUBLIC, 1, true))
      call:hangup()
      ua:close()
      bob:close()
      reg.close()
      stun.close()
    end, 20)
  end)

  it("fails to start when the STUN server does not answer", function()
    H.run(function()
      local silent = assert(socket.udp())
      assert(silent:setsockname("127.0.0.1", 0))
      local ua, err, code = luasip.ua { listen = "127.0.0.1:0", stun = "127.0.0.1:" .. select(2, silent:getsockname()),
                                        stun_timeout = 0.5 }
      assert.is_nil(ua)
      assert.equal("stun", code)
      assert.matches("^STUN", err)
      silent:close()
    end, 20)
  end)

  it("sends OPTIONS keepalives to the registrar while registered", function()
    H.run(function()
      local reg = udp_registrar()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1", keepalive = 0.2 })
      local r = assert(ua:register { registrar = "sip:127.0.0.1:" .. reg.port })
      assert.truthy(H.poll_until(function() return reg.count("OPTIONS") >= 3 end, 5))
      assert.equal(200, r.keepalive_status)
      assert(r:unregister())
      local n = reg.count("OPTIONS")
      luasip.sleep(0.5)
      assert.equal(n, reg.count("OPTIONS")) -- none after the un-REGISTER
      ua:close()
      reg.close()
    end, 20)
  end)

  it("sends CRLF keepalives on the registration's TCP connection", function()
    H.run(function()
      local reg = tcp_registrar()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1",
                                    keepalive = 0.2, keepalive_mode = "crlf" })
      assert(ua:register { registrar = "sip:127.0.0.1:" .. reg.port .. ";transport=tcp" })
      assert.truthy(H.poll_until(function() return reg.pings >= 3 end, 5))
      assert.equal(1, reg.registers)
      ua:close()
      reg.close()
    end, 20)
  end)
end)
