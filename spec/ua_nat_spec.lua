-- NAT traversal of the UA: the public address learnt with STUN in Contact
-- and SDP, OPTIONS keepalives to the registrar, CRLF keepalives on TCP.
-- The peers are scripted on real loopback sockets: a STUN server that
-- maps every client to 192.0.2.10 (TEST-NET-1), and a registrar.
local H = require "spec.helper"
local luasip = require "luasip"
local socket = require "socket"
local sip_peer = require "spec.sip_peer"

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

local function udp_registrar() return sip_peer.udp(sip_peer.ok) end
local function tcp_registrar() return sip_peer.tcp(sip_peer.ok) end

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
      local contact = reg.requests[1].header("Contact")
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
      assert.equal(1, #reg.requests)
      ua:close()
      reg.close()
    end, 20)
  end)
end)
