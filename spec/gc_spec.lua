-- Lifetimes (DESIGN.md contract 4): abandoned objects, closes from inside
-- callbacks, aggressive collection, and closing the Lua state with
-- everything still alive. Run under `make asan-test` these catch any
-- callback into freed memory.
local H = require "helper"
local luasip = require "luasip"
local socket = require "socket"

describe("lifetimes", function()
  H.leakcheck()

  it("collect abandoned, unarmed timers", function()
    local before = H.counts().timers
    for _ = 1, 100 do luasip.timer(function() end) end
    assert.are.equal(before + 100, luasip.stats().timers)
    assert.are.equal(before, H.counts().timers)
  end)

  it("keep armed timers and open watches alive until they are done", function()
    local fired = 0
    for _ = 1, 50 do luasip.after(0.01, function() fired = fired + 1 end) end
    local s = assert(socket.udp())
    assert(s:setsockname("127.0.0.1", 0))
    local _, port = s:getsockname()
    local got
    luasip.watch(s, "r", function(w)
      got = s:receive()
      w:close()
    end)
    collectgarbage("collect")
    collectgarbage("collect")
    local c = socket.udp()
    c:sendto("ping", "127.0.0.1", port)
    c:close()
    H.spin(0.05)
    s:close()
    assert.are.equal(50, fired)
    assert.are.equal("ping", got)
  end)

  it("let a server close itself from its own callback", function()
    local srv
    srv = assert(luasip.server { listen = "127.0.0.1:0", observe = function() srv:close() end })
    local port = srv.port
    H.run(function()
      local r = H.parse_response(H.udp_exchange(port, H.request("OPTIONS", port)))
      assert.are.equal(200, r.status)
      luasip.sleep(0.02) -- the agent is reaped on the next turn
      assert.is_nil(H.udp_exchange(port, H.request("OPTIONS", port), 0.1))
    end)
    assert.are.same({}, srv:addresses())
  end)

  it("survive generational/aggressive GC with traffic, timers and tasks", function()
    local generational = pcall(collectgarbage, "generational") -- Lua 5.4
    if not generational then collectgarbage("setpause", 10) end
    local srv = assert(luasip.server { listen = "127.0.0.1:0", observe = function(i) return { i } end })
    H.run(function()
      local done = 0
      for _ = 1, 50 do
        luasip.spawn(function()
          for _ = 1, 5 do
            luasip.timer(function() end) -- garbage with a C side
            luasip.sleep(0.001)
            collectgarbage("collect")
          end
          done = done + 1
        end)
      end
      for _ = 1, 20 do
        assert.are.equal(200, H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port))).status)
        collectgarbage("collect")
      end
      while done < 50 do luasip.sleep(0.01) end
    end, 20)
    srv:close()
    if generational then collectgarbage("incremental") else collectgarbage("setpause", 200) end
  end)

  it("close the Lua state cleanly with servers, timers, watches and tasks alive", function()
    local code = [[
      local srv = assert(luasip.server { listen = "127.0.0.1:0" })
      luasip.every(0.001, function() end)
      local r = io.popen("sleep 0.3")
      luasip.watch(r, "r", function() end)
      luasip.spawn(function() luasip.sleep(60) end)
      luasip.timer(function() end)
      luasip.sleep(0.02)
      print("closing")
      os.exit(0, true) -- lua_close: finalizers run with all of it live
    ]]
    H.run(function()
      local p = H.process(H.luasip_argv("-e", code))
      assert.are.equal(0, p:wait(10))
      assert.are.equal("closing\n", p:output())
      assert.are.equal("", p:errors())
      p:cleanup()
    end, 20)
  end)
end)
