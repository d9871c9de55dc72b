-- Crash regressions for the SIP agent: the RFC 4475 torture messages
-- (../shared/conformance/rfc4475) over UDP and TCP at a server whose
-- observe hook reads every field. An unknown method once reached Lua
-- through freed memory, and long URIs as stale stack bytes; under
-- `make asan-test` any such read fails the run. After the barrage the
-- server must still answer OPTIONS and nothing may leak.
local H = require "helper"
local luasip = require "luasip"
local socket = require "socket"

local dir = H.root .. "/spec/fixtures/rfc4475"

local function fixtures()
  local p = io.popen("ls " .. H.shell_quote(dir) .. "/*.dat 2>/dev/null")
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  return files
end

describe("RFC 4475 torture messages", function()
  H.leakcheck()

  it("never crash the server, over UDP and TCP", function()
    local files = fixtures()
    assert(#files >= 40, "RFC 4475 fixtures not found in " .. dir)
    local reports = {}
    local srv = assert(luasip.server {
      listen = "127.0.0.1:0",
      observe = function(info) reports[#reports + 1] = info end,
    })
    H.run(function()
      for _, f in ipairs(files) do
        local msg = assert(H.read_file(f))
        local u = assert(socket.udp())
        u:sendto(msg, "127.0.0.1", srv.port)
        u:close()
        local t = assert(socket.tcp())
        t:settimeout(1)
        if t:connect("127.0.0.1", srv.port) then
          t:settimeout(0)
          t:send(msg)
        end
        luasip.sleep(0.005)
        t:close()
      end
      luasip.sleep(0.2)
      local r = H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port)))
      assert.are.equal(200, r.status)
    end, 60)
    srv:close()
    assert.is_true(#reports > 10, #reports .. " requests reported")
    for _, info in ipairs(reports) do
      assert.is_string(info.method)
      assert.is_true(#info.method > 0)
      assert.is_string(info.uri)
      assert.matches("^%a[%w+.-]*:", info.uri)
      assert.is_true(info.status >= 200 and info.status < 700)
    end
  end)

  it("drop stray responses instead of reading them as requests (crashed once)", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0", observe = function() end })
    H.run(function()
      local u = assert(socket.udp())
      u:sendto("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\r\n" ..
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\n" ..
        "Content-Length: 0\r\n\r\n", "127.0.0.1", srv.port)
      u:close()
      luasip.sleep(0.05)
      assert.are.equal(200, H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port))).status)
    end)
    srv:close()
  end)

  it("through a proxy: every message is relayed or refused, none hangs or crashes it (fuzz: a header loop, an assert on copies)", function()
    -- proxy_order_chain once looped for ever on a request with an
    -- unparsable header, and a copy of one with two Content-Lengths made
    -- sofia assert when serialized; nta answers those 400 first, and the
    -- proxy refuses to copy them if one ever gets through
    local files = fixtures()
    local sink = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
    sink:on("*", function(req) req:reply(404) end)
    local sink_port = sink.port
    local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
    local proxied = 0
    srv:on("*", function(req)
      proxied = proxied + 1
      req:add_header("X-Proxied", "1")
      req:proxy("sip:sink@127.0.0.1:" .. sink_port)
    end)
    H.run(function()
      for _, f in ipairs(files) do
        local u = assert(socket.udp())
        u:sendto(assert(H.read_file(f)), "127.0.0.1", srv.port)
        u:close()
        luasip.sleep(0.005)
      end
      assert.truthy(H.poll_until(function() return H.counts().requests == 0 end, 10))
      -- still proxying: an OPTIONS goes to the sink and its 404 comes back
      assert.are.equal(404, H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port))).status)
    end, 60)
    srv:close()
    sink:close()
    assert.is_true(proxied > 10, proxied .. " requests proxied")
  end)
end)
