-- The user-agent examples, run as real child processes over real sockets
-- on 127.0.0.1: a call through examples/b2bua.lua to a UA in this spec,
-- and examples/softphone.lua driven through its REPL.
local H = require "helper"
local luasip = require "luasip"

local function example(name, ...)
  return H.luasip_argv(H.root .. "/examples/" .. name, ...)
end

-- A callee UA and the list of calls it got; `behave(call, n)` runs in the
-- task of the n-th call (default: ring, answer).
local function callee(behave, sdp)
  local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@127.0.0.1", sdp = sdp })
  local got = {}
  ua:on("call", function(call)
    got[#got + 1] = call
    if behave then return behave(call, #got) end
    call:ring()
    luasip.sleep(0.1)
    assert(call:answer())
  end)
  return ua, got
end

describe("examples/b2bua.lua", function()
  H.leakcheck()

  it("bridges a call to --target and hangs up each leg when the other ends", function()
    local bob, got = callee()
    local p = H.process(example("b2bua.lua", "--listen", "127.0.0.1:0",
                                "--target", "sip:bob@127.0.0.1:" .. bob.port))
    finally(function() bob:close() p:cleanup() end)
    H.run(function()
      local port = p:expect("listening on sip:%S+:%d+", 10):match("listening on sip:%S-:(%d+)")
      local alice = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
      local uri = "sip:bob@127.0.0.1:" .. port

      -- A answered once B answers, after B's 180 was relayed
      local progress = {}
      local a = assert(alice:call(uri, { timeout = 10,
        on_progress = function(_, status) progress[#progress + 1] = status end }))
      assert.are.equal("ready", a.state)
      assert.are.same({ 180 }, progress)
      assert.are.equal(1, #got)
      local b = got[1]
      assert.are.equal("ready", b.state)
      assert.are.equal("sip:alice@127.0.0.1", b.remote_uri) -- the caller, relayed
      p:expect("connected sip:alice@127%.0%.0%.1 <%-> sip:bob@", 5)

      -- A hangs up: B is hung up
      assert.is_true(a:hangup(5))
      assert.are.equal("terminated", a.state)
      assert.is_true(b:wait_hangup(5))
      assert.are.equal("remote", b.hangup_by)

      -- B hangs up: A is hung up
      a = assert(alice:call(uri, { timeout = 10 }))
      b = got[2]
      assert.are.equal("ready", b.state)
      assert.is_true(b:hangup(5))
      assert.is_true(a:wait_hangup(5))
      assert.are.equal("remote", a.hangup_by)
      assert.are.equal("terminated", b.state)
      alice:close()
    end, 60)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
    assert.matches("b2bua: stopping", p:output())
  end)

  it("rejects A with B's failure, and cancels B when A gives up", function()
    local bob, got = callee(function(call, n)
      if n == 1 then return call:reject(486, "Busy Here") end
      call:ring() -- and never answer
    end)
    local p = H.process(example("b2bua.lua", "--listen", "127.0.0.1:0",
                                "--target", "sip:bob@127.0.0.1:" .. bob.port))
    finally(function() bob:close() p:cleanup() end)
    H.run(function()
      local port = p:expect("listening on sip:%S+:%d+", 10):match("listening on sip:%S-:(%d+)")
      local alice = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
      local uri = "sip:bob@127.0.0.1:" .. port

      local call, reason, status = alice:call(uri, { timeout = 10 })
      assert.is_nil(call)
      assert.are.equal(486, status)
      assert.are.equal("Busy Here", reason)

      -- A times out while B rings: A's CANCEL reaches B
      local ringing = false
      call, reason, status = alice:call(uri, { timeout = 1,
        on_progress = function(_, st) ringing = ringing or st == 180 end })
      assert.is_nil(call)
      assert.are.equal("timeout", status)
      assert.is_true(ringing)
      local b = got[2]
      assert.is_true(b:wait_hangup(5))
      assert.are.equal(487, b.status)
      alice:close()
    end, 60)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
  end)
  it("bridges the audio between the legs (--media bridge, the default)", function()
    local audio = require "audio"
    local dir = H.tmpdir()
    local rec
    local bob = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@127.0.0.1", codecs = { "PCMA" } })
    bob:on("call", function(call)
      assert(call:answer())
      rec = { call:record(dir .. "/bob.wav", { max_seconds = 20, stop_on = false }) }
    end)
    local p = H.process(example("b2bua.lua", "--listen", "127.0.0.1:0",
                                "--target", "sip:bob@127.0.0.1:" .. bob.port))
    finally(function() bob:close() p:cleanup() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    H.run(function()
      local port = p:expect("listening on sip:%S+:%d+", 10):match("listening on sip:%S-:(%d+)")
      local alice = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
      local a = assert(alice:call("sip:bob@127.0.0.1:" .. port, { timeout = 10 }))
      assert.equal("opus", a.media_session:codec()) -- A speaks Opus, B PCMA: transcoded
      p:expect("connected", 5)
      assert.is_true(a:tone { freqs = { 1000 }, duration = 1000 })
      luasip.sleep(0.3)
      assert.is_true(a:hangup(5))
      assert.is_true(H.poll_until(function() return rec ~= nil end, 5))
      alice:close()
    end, 30)
    assert.equal("hangup", rec[2])
    local samples, rate = audio.read_wav(dir .. "/bob.wav")
    assert(audio.dominant(samples, rate, 1000))
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
  end)

  it("relays B's 183 and answer SDP to A (--media relay)", function()
    local bob, got = callee(function(call)
      call:ring { early_media = true }
      luasip.sleep(0.1)
      assert(call:answer())
    end, require("luasip.sdp").default_offer("127.0.0.1", 4000))
    local p = H.process(example("b2bua.lua", "--listen", "127.0.0.1:0", "--media", "relay",
                                "--target", "sip:bob@127.0.0.1:" .. bob.port))
    finally(function() bob:close() p:cleanup() end)
    H.run(function()
      local port = p:expect("listening on sip:%S+:%d+", 10):match("listening on sip:%S-:(%d+)")
      local alice = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
      local early
      local a = assert(alice:call("sip:bob@127.0.0.1:" .. port, { timeout = 10,
        on_progress = function(_, status, _, msg) if status == 183 then early = msg.body end end }))
      assert.matches("m=audio 4000 ", early)             -- B's early media
      assert.matches("m=audio 4000 ", a.remote_sdp)      -- B's answer
      -- A's offer (A's own RTP port) reached B
      assert.equal(a.local_sdp:match("m=audio (%d+) "), got[1].remote_sdp:match("m=audio (%d+) "))
      assert.is_true(a:hangup(5))
      assert.is_true(got[1]:wait_hangup(5))
      alice:close()
    end, 60)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
  end)
end)

describe("examples/softphone.lua", function()
  H.leakcheck()

  it("starts in -i mode, dials, lists and hangs up calls from the REPL", function()
    local bob, got = callee()
    local dir = H.tmpdir()
    local input = dir .. "/input"
    local f = assert(io.open(input, "w"))
    f:write("print('port', ua.port)\n",
            "dial('sip:bob@127.0.0.1:" .. bob.port .. "')\n",
            "calls()\n",
            "hangup()\n",
            "calls()\n",
            "print('done')\n")
    f:close()
    -- through a pipe: the REPL cannot watch a regular file on stdin
    local cmd = {}
    for i, a in ipairs(H.luasip_argv("-i", H.root .. "/examples/softphone.lua",
      "--listen", "127.0.0.1:0", "--aor", "sip:alice@127.0.0.1")) do cmd[i] = H.shell_quote(a) end
    local p = H.process { "sh", "-c", "cat " .. H.shell_quote(input) .. " | " .. H.leak_env() ..
      "exec " .. table.concat(cmd, " ") }
    finally(function() bob:close() p:cleanup() os.execute("rm -rf " .. dir) end)
    H.run(function() assert.are.equal(0, p:wait(20)) end, 30)
    local out = p:output()
    assert.matches("softphone: sip:alice@127%.0%.0%.1 listening on sip:alice@127%.0%.0%.1:%d+\n", out)
    assert.matches("\nport\t%d+\n", out)
    assert.matches("softphone: 180 Ringing\n", out)
    assert.matches("%*1  out ready      sip:bob@127%.0%.0%.1:" .. bob.port .. "\n", out)
    assert.matches("softphone: call with sip:bob@127%.0%.0%.1:%d+ ended", out)
    assert.matches("\ndone\n$", out)
    assert.are.equal(1, #got)
    assert.are.equal("terminated", got[1].state)
    assert.are.equal("remote", got[1].hangup_by)
  end)
end)
