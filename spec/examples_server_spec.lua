-- The server examples, started as a user would start them, with luasip
-- phones (luasip.ua) registering and calling through them.
local H = require "helper"
local luasip = require "luasip"

local function start(script, ...)
  local p = H.process(H.luasip_argv(H.root .. "/examples/" .. script, ...))
  finally(function() p:cleanup() end)   -- killed if the test fails midway
  p:expect("listening on", 10)
  return p
end

local function phone(port, user, password, on_call)
  local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:" .. user .. "@127.0.0.1",
                                credentials = password and { user = user, password = password } or nil })
  if on_call then ua:on("call", on_call) end
  local reg, why, status = ua:register { registrar = "sip:127.0.0.1:" .. port, expires = 120, timeout = 5 }
  assert(reg, "register " .. user .. ": " .. tostring(why) .. " " .. tostring(status))
  return ua, reg
end

describe("server examples", function()
  H.leakcheck()

  it("proxy.lua: registered phones call each other with auth; unknown users get 404; busy goes to voicemail", function()
    local port = 19661
    local vm_answered = 0
    local vm = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:vm@127.0.0.1" })
    vm:on("call", function(call) vm_answered = vm_answered + 1; call:answer(); luasip.sleep(0.2); call:hangup() end)
    local vm_port = vm.port
    local p = start("proxy.lua", "--listen", "127.0.0.1:" .. port,
      "--voicemail", "sip:vm@127.0.0.1:" .. vm_port, "--ring-timeout", "3")
    local bob_mode = "answer"
    H.run(function()
      local alice = phone(port, "alice", "alice-secret")
      local bob = phone(port, "bob", "bob-secret", function(call)
        if bob_mode == "busy" then return call:reject(486, "Busy Here") end
        call:answer()
      end)
      -- wrong password: the registrar refuses
      local eve = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@127.0.0.1",
                                     credentials = { user = "bob", password = "guess" } })
      local reg, _, status = eve:register { registrar = "sip:127.0.0.1:" .. port, timeout = 5 }
      assert.is_nil(reg)
      assert.is_true(status == 401 or status == 403, tostring(status))
      eve:close()

      local call, why, st = alice:call("sip:bob@127.0.0.1:" .. port, { timeout = 5 })
      assert.truthy(call, tostring(why) .. " " .. tostring(st))
      assert.are.equal(0, vm_answered)
      luasip.sleep(0.2)
      assert.truthy(call:hangup())

      local c2, _, st2 = alice:call("sip:nobody@127.0.0.1:" .. port, { timeout = 5 })
      assert.is_nil(c2)
      assert.are.equal(404, st2)

      bob_mode = "busy"
      local c3, why3, st3 = alice:call("sip:bob@127.0.0.1:" .. port, { timeout = 5 })
      assert.truthy(c3, tostring(why3) .. " " .. tostring(st3))
      assert.truthy(H.poll_until(function() return vm_answered == 1 end, 5))
      c3:hangup()
      alice:close()
      bob:close()
      vm:close()
      luasip.sleep(0.3)
    end, 40)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end)
    p:cleanup()
  end)

  it("redirect.lua: answers 302 with the registered contacts", function()
    local port = 19671
    local p = start("redirect.lua", "--listen", "127.0.0.1:" .. port)
    H.run(function()
      local bob = phone(port, "bob")
      local r = H.parse_response(H.udp_exchange(port, H.request("INVITE", port, { uri = "sip:bob@127.0.0.1:" .. port })))
      assert.are.equal(302, r.status)
      assert.matches("^<sip:[^>]*127%.0%.0%.1:" .. bob.port, r.headers.contact[1])
      assert.matches(";expires=%d+", r.headers.contact[1])
      r = H.parse_response(H.udp_exchange(port, H.request("INVITE", port, { uri = "sip:carol@127.0.0.1:" .. port })))
      assert.are.equal(404, r.status)
      bob:close()
      luasip.sleep(0.3)
    end, 20)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end)
    p:cleanup()
  end)
  it("chatbot.lua through presence_server.lua: answers with isComposing first, tells its owner about buddies", function()
    local port = H.free_port("udp")
    start("presence_server.lua", "--listen", "127.0.0.1:" .. port, "--no-auth", "--policy", "allow")
    local server = "sip:127.0.0.1:" .. port
    -- the bot's owner is there before the bot
    local alice = assert(luasip.ua { aor = "sip:alice@127.0.0.1", proxy = server })
    local got, composing = {}, {}
    alice:on("message", function(msg) got[#got + 1] = msg.body end)
    alice:on("composing", function(from, st) composing[#composing + 1] = from .. " " .. st.state end)
    H.run(function() assert(alice:register { registrar = server, expires = 60 }) end)
    local bot = start("chatbot.lua", "--server", server, "--aor", "sip:bot@127.0.0.1",
                      "--owner", "sip:alice@127.0.0.1", "--buddies", "sip:bob@127.0.0.1", "--typing", "0.2")
    H.run(function()
      -- the bot watches bob: closed at first, open once he registers
      local first = H.poll_until(function() return got[1] end, 10)
      assert.equal("sip:bob@127.0.0.1 is closed", first)
      local bob = assert(luasip.ua { aor = "sip:bob@127.0.0.1", proxy = server })
      local reg = assert(bob:register { registrar = server, expires = 60 })
      assert.equal("sip:bob@127.0.0.1 is open", H.poll_until(function() return got[2] end, 10))
      -- chat: isComposing, then the answer
      assert(alice:message("sip:bot@127.0.0.1", "time"))
      assert.matches("^It is %d%d:%d%d:%d%d UTC%.$", H.poll_until(function() return got[3] end, 10))
      assert.equal("sip:bot@127.0.0.1 active", composing[1])
      assert(alice:message("sip:bot@127.0.0.1", "hello bot"))
      assert.equal("You said: hello bot", H.poll_until(function() return got[4] end, 10))
      assert(bot:expect("message from sip:alice@127.0.0.1: hello bot", 5))
      reg:unregister()
      bob:close()
      alice:close()
    end, 40)
  end)
end)
