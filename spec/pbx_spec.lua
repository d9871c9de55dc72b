-- examples/pbx.lua started as a user starts it (a child process with its
-- flags), with luasip phones in this spec on real sockets: registration
-- with digest auth, calls through the proxy, busy / no answer / not
-- registered to voicemail, MWI NOTIFYs with the counts, retrieval by DTMF
-- (the message's tone played back), delete, restart, and kill -9 during a
-- recording.
local H = require "helper"
local audio = require "audio"
local luasip = require "luasip"
if os.getenv("TRACE") then luasip.trace(true) end

local PASSWORDS = { alice = "alice-secret", bob = "bob-secret", carol = "carol-secret" }

-- Start the PBX on a free port with its data in dir.
local function start_pbx(dir, port, ...)
  port = port or H.free_port()
  local p = H.process(H.luasip_argv(H.root .. "/examples/pbx.lua", "--listen", "127.0.0.1:" .. port,
                                    "--data", dir, ...))
  H.run(function() p:expect("listening on udp/127%.0%.0%.1:%d+", 15) end, 20)
  return p, port
end

local function stop_pbx(p)
  p:signal("TERM")
  H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
end

-- A phone of user registered at the PBX (all its requests go through it).
-- Its defaults: it supports 100rel, and rings with a 180 that is reliable
-- only when the caller requires it (see ua.lua, only183_100rel), so the
-- caller can take the 200 of voicemail, another fork, after the ring
-- timeout.
local function phone(user, port, opts)
  opts = opts or {}
  local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:" .. user .. "@127.0.0.1",
                                credentials = { user = user, password = PASSWORDS[user] },
                                proxy = "sip:127.0.0.1:" .. port })
  if opts.register ~= false then assert(ua:register { registrar = "sip:127.0.0.1:" .. port, expires = 600 }) end
  return ua
end

-- Subscribe ua to its own mailbox; returns a table whose .summary is the
-- latest message-summary and .wait(fn) polls until fn(summary) is true.
local function mwi(ua, user)
  local box = { count = 0 }
  box.sub = assert(ua:subscribe("sip:" .. user .. "@127.0.0.1", "message-summary", function(st)
    if st.summary then box.summary, box.count = st.summary, box.count + 1 end
  end))
  function box.wait(fn, timeout)
    return H.poll_until(function() return box.summary and fn(box.summary) and box.summary end, timeout or 20)
  end
  return box
end

local function voice(s) return s.voice or { new = 0, old = 0 } end

-- Call the voicemail of user as `from` (answered by it), skip the greeting
-- with #, and say a 700 Hz tone for `seconds`; end with # (or hang up).
local function leave_message(ua, user, seconds, end_with)
  local call = assert(ua:call("sip:" .. user .. "@127.0.0.1", { timeout = 15 }))
  luasip.sleep(0.3)
  assert(call:dtmf("#"))
  luasip.sleep(1.0) -- the beep
  call:tone { freqs = { 700 }, duration = seconds * 1000 }
  if end_with == "#" then
    assert(call:dtmf("#"))
    assert(call:wait_hangup(20)) -- "saved, goodbye", then the PBX hangs up
  else
    call:hangup()
  end
end

describe("pbx.lua", function()
  it("starts from a clean clone with the README's quick start, and answers OPTIONS", function()
    -- the quick start is these two commands; `make run ARGS=...` passes flags
    local readme = assert(H.read_file(H.root .. "/README.md"))
    local quick = assert(readme:match("## Quick start(.-)\n## "), "README has a Quick start")
    assert.matches("\nmake run\n", quick)
    assert.matches("\nmake test\n", quick)
    assert.matches('make run ARGS="', readme, 1, true)
    local tmp = H.tmpdir()
    finally(function() os.execute("rm -rf " .. H.shell_quote(tmp)) end)
    local cloned = os.execute("git clone -q " .. H.shell_quote(H.root) .. " " .. H.shell_quote(tmp .. "/luasip"))
    assert.truthy(cloned == true or cloned == 0, "git clone failed") -- Lua 5.4: true; LuaJIT: 0
    local port = H.free_port()
    -- as a user would type it, without this spec's sanitizer preload
    local p = H.process { "sh", "-c", string.format("cd %s && exec env -u LD_PRELOAD make run ARGS='--listen 127.0.0.1:%d --data %s'",
                                                    H.shell_quote(tmp .. "/luasip"), port, H.shell_quote(tmp .. "/data")) }
    -- the PBX itself: make's child (p is make: the shell exec'd it), not
    -- make, nor the shell that waits for it; no pkill (it hung under the
    -- sanitizer's preload)
    local function signal_pbx(sig)
      local f = io.open("/proc/" .. p.pid .. "/task/" .. p.pid .. "/children")
      local kids = f and f:read("a") or ""
      if f then f:close() end
      for pid in kids:gmatch("%d+") do os.execute("kill -" .. sig .. " " .. pid .. " 2>/dev/null") end
    end
    finally(function() signal_pbx("KILL") p:cleanup() end)
    H.run(function()
      p:expect("pbx: listening on udp/127%.0%.0%.1:" .. port, 240)
      local r = H.parse_response(H.udp_exchange(port, H.request("OPTIONS", port)))
      assert.equal(200, r.status)
    end, 250)
    assert.matches("any SIP phone:", p:output())
    signal_pbx("TERM")
    H.run(function() assert.equal(0, p:wait(20)) end, 25)
    assert.matches("pbx: stopped", p:output())
  end)

  it("registers two phones with digest auth and connects their calls both ways", function()
    local dir = H.tmpdir()
    local p, port = start_pbx(dir)
    finally(function() p:cleanup() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    H.run(function()
      local alice, bob = phone("alice", port), phone("bob", port)
      -- a wrong password is refused
      local eve = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:carol@127.0.0.1",
                                     credentials = { user = "carol", password = "wrong" } })
      local ok, _, status = eve:register { registrar = "sip:127.0.0.1:" .. port, timeout = 5 }
      assert.is_nil(ok)
      assert.equal(401, status)
      eve:close()
      for _, pair in ipairs { { alice, bob, "bob" }, { bob, alice, "alice" } } do
        local caller, callee, name = pair[1], pair[2], pair[3]
        local incoming
        callee:on("call", function(c) incoming = c c:answer() end)
        local call = assert(caller:call("sip:" .. name .. "@127.0.0.1", { timeout = 10 }))
        assert.truthy(H.poll_until(function() return incoming and incoming.answered end, 5))
        local heard = H.tmpdir() .. "/heard.wav"
        local rec
        luasip.spawn(function() rec = { call:record(heard, { max_seconds = 3, stop_on = false }) } end)
        assert.is_true(incoming:tone { freqs = { 1000 }, duration = 1500 })
        assert.truthy(H.poll_until(function() return rec end, 5))
        local samples, rate = audio.read_wav(heard)
        assert(audio.dominant_overall(samples, rate, 1000, { 400, 700, 1400 }))
        call:hangup()
        assert.truthy(incoming:wait_hangup(5))
      end
      alice:close() bob:close()
    end, 60)
    stop_pbx(p)
  end)

  it("has an echo test (*43), an IVR (*44) and a conference room (*45)", function()
    local dir = H.tmpdir()
    local p, port = start_pbx(dir)
    finally(function() p:cleanup() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    local wav = H.tmpdir()
    local rec = {}
    H.run(function()
      local alice, bob = phone("alice", port), phone("bob", port)
      -- hear `seconds` of call into name.wav while fn runs
      local function hear(call, name, seconds, fn)
        luasip.spawn(function()
          rec[name] = { call:record(wav .. "/" .. name .. ".wav", { max_seconds = seconds, stop_on = false }) }
        end)
        fn()
        assert.truthy(H.poll_until(function() return rec[name] end, seconds + 5))
      end
      local echo = assert(alice:call("sip:*43@127.0.0.1", { timeout = 10 }))
      hear(echo, "echo", 3, function()
        luasip.sleep(0.6) -- the beep
        assert.is_true(echo:tone { freqs = { 700 }, duration = 1500 })
      end)
      echo:hangup()
      local ivr = assert(alice:call("sip:*44@127.0.0.1", { timeout = 10 }))
      luasip.sleep(0.3)
      assert(ivr:dtmf("1"))
      hear(ivr, "ivr", 2.5, function() end)
      ivr:hangup()
      local a = assert(alice:call("sip:*45@127.0.0.1", { timeout = 10 }))
      local b = assert(bob:call("sip:*45@127.0.0.1", { timeout = 10 }))
      luasip.sleep(0.8) -- both joined, past the beeps
      hear(b, "room", 2.5, function() assert.is_true(a:tone { freqs = { 900 }, duration = 1500 }) end)
      a:hangup() b:hangup()
      alice:close() bob:close()
    end, 90)
    local function check(name, f)
      local samples, rate = audio.read_wav(wav .. "/" .. name .. ".wav")
      assert(audio.dominant_overall(samples, rate, f, { 300, 500, 1000, 1400 }), name)
    end
    check("echo", 700)
    check("ivr", 440)
    check("room", 900)
    os.execute("rm -rf " .. H.shell_quote(wav))
    stop_pbx(p)
    assert.matches("alice %-> %*43", p:output())
    assert.matches("bob %-> %*45", p:output())
  end)

  it("sends busy, unanswered and unregistered calls to voicemail, with MWI, retrieval and delete", function()
    local dir = H.tmpdir()
    local p, port = start_pbx(dir, nil, "--ring-timeout", "2")
    finally(function() if os.getenv("PBX_LOG") then io.stderr:write(p:output(), p:errors()) end p:cleanup() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    local heard = H.tmpdir() .. "/playback.wav"
    H.run(function()
      local alice, bob = phone("alice", port), phone("bob", port)
      local box = mwi(bob, "bob")
      assert.truthy(box.wait(function(s) return s.waiting == false end))
      assert.equal("sip:bob@127.0.0.1", box.summary.account)
      -- another user may not watch bob's mailbox
      local _, _, st = alice:subscribe("sip:bob@127.0.0.1", "message-summary", function() end)
      assert.equal(403, st)

      -- busy: bob's phone answers 486
      bob:on("call", function(c) c:reject(486) end)
      leave_message(alice, "bob", 2, "hangup")
      local s = box.wait(function(x) return voice(x).new == 1 end)
      assert.truthy(s, "MWI after the first message")
      assert.is_true(s.waiting)
      assert.same({ 1, 0 }, { s.voice.new, s.voice.old })

      -- no answer within --ring-timeout: ringing, then voicemail
      local rang = false
      bob:on("call", function(c) rang = true c:ring() end)
      leave_message(alice, "bob", 1.5, "#")
      assert.is_true(rang)
      assert.truthy(box.wait(function(x) return voice(x).new == 2 end), "MWI after the second message")
      bob:on("call", nil)

      -- not registered: carol's voicemail at once
      local carol = phone("carol", port, { register = false })
      leave_message(alice, "carol", 1, "#")
      local cbox = mwi(carol, "carol")
      assert.truthy(cbox.wait(function(x) return voice(x).new == 1 end))

      -- *97: PIN, 1 to listen; the first message is heard, then deleted
      local call = assert(bob:call("sip:*97@127.0.0.1", { timeout = 10 }))
      local rec
      luasip.spawn(function() rec = { call:record(heard, { max_seconds = 60, stop_on = false }) } end)
      luasip.sleep(0.5)
      assert(call:dtmf("2222#1"))
      -- played through: no longer new
      assert.truthy(box.wait(function(x) return voice(x).new == 1 and voice(x).old == 1 end, 40))
      assert(call:dtmf("7"))
      s = box.wait(function(x) return voice(x).new == 1 and voice(x).old == 0 end, 20)
      assert.truthy(s, "MWI after the delete")
      assert.is_true(s.waiting)
      -- the second one: 9 saves it; nothing new is left
      assert.truthy(box.wait(function(x) return voice(x).new == 0 and voice(x).old == 1 end, 40))
      assert(call:dtmf("9"))
      luasip.sleep(1.5)
      call:hangup()
      assert.truthy(H.poll_until(function() return rec end, 10))
      s = box.summary
      assert.is_false(s.waiting)
      box.sub:unsubscribe() cbox.sub:unsubscribe()
      alice:close() bob:close() carol:close()
    end, 180)
    local samples, rate = audio.read_wav(heard)
    assert(audio.dominant_overall(samples, rate, 700, { 400, 1000, 1400 }))
    -- what is left on disk: one saved message of bob's, one of carol's
    local core = require "luasip.core"
    local bobs = core.listdir(dir .. "/voicemail/bob")
    assert.equal(1, #bobs, table.concat(bobs, " "))
    assert.matches("^msg%-.*%.wav$", bobs[1])
    stop_pbx(p)
    assert.matches("alice %-> vm%-bob", p:output())
    assert.matches("bob %-> %*97", p:output())
  end)

  it("keeps registrations and messages across a restart, and no partial message after kill -9", function()
    local dir = H.tmpdir()
    local p, port = start_pbx(dir)
    finally(function() p:cleanup() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    local core = require "luasip.core"
    local alice, bob
    H.run(function()
      alice, bob = phone("alice", port), phone("bob", port, { register = true })
      leave_message(alice, "carol", 1.5, "#")
    end, 60)
    stop_pbx(p)
    p:cleanup()

    -- restarted: bob's registration from before still routes his calls,
    -- carol's message is still there
    p = start_pbx(dir, port)
    H.run(function()
      local answered
      bob:on("call", function(c) answered = c:answer() end)
      local call = assert(alice:call("sip:bob@127.0.0.1", { timeout = 10 }))
      assert.truthy(H.poll_until(function() return answered end, 5))
      call:hangup()
      local carol = phone("carol", port, { register = false })
      local cbox = mwi(carol, "carol")
      assert.truthy(cbox.wait(function(x) return voice(x).new == 1 end))
      cbox.sub:unsubscribe()
      carol:close()

      -- kill -9 while alice is recording a message for carol
      local c2 = assert(alice:call("sip:carol@127.0.0.1", { timeout = 15 }))
      luasip.sleep(0.3)
      assert(c2:dtmf("#"))
      local part = H.poll_until(function()
        for _, n in ipairs(core.listdir(dir .. "/voicemail/carol") or {}) do
          if n:find("%.part") then return n end
        end
      end, 10)
      assert.truthy(part, "a recording in progress")
      c2:tone { freqs = { 700 }, duration = 1000 }
      p:signal("KILL")
      assert.truthy(H.poll_until(function() return p:wait(0.1) end, 5))
      c2:hangup(1)
    end, 60)
    p:cleanup()

    p = start_pbx(dir, port)
    H.run(function()
      local carol = phone("carol", port, { register = false })
      local cbox = mwi(carol, "carol")
      assert.truthy(cbox.wait(function(x) return voice(x).new == 1 end))
      luasip.sleep(0.5)
      assert.equal(1, voice(cbox.summary).new) -- still one: the interrupted one is not listed
      cbox.sub:unsubscribe()
      carol:close()
      alice:close() bob:close()
    end, 30)
    local names = core.listdir(dir .. "/voicemail/carol")
    assert.equal(1, #names, table.concat(names, " "))
    assert.matches("^msg%-", names[1])
    stop_pbx(p)
    assert.matches("interrupted recording", p:errors() .. p:output())
  end)
end)
