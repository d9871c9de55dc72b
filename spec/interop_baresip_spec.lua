-- Interop with baresip (Debian baresip-core): baresip calls
-- examples/ivr.lua with Opus and mandatory SRTP, sends the digit 1
-- (RFC 4733) and records what it hears (its sndfile module); driven over
-- its ctrl_tcp socket (netstring JSON).
local H = require "helper"
local audio = require "audio"
local luasip = require "luasip"
local socket = require "socket"

local free_port = H.free_port

local function example(name, ...)
  return H.luasip_argv(H.root .. "/examples/" .. name, ...)
end

-- A baresip in dir, controlled over TCP: :cmd(command, params), :events().
-- opts: account (its accounts line), contacts (lines), app_modules.
local function baresip(dir, opts)
  opts = opts or {}
  local sip, ctrl = free_port("udp"), free_port("tcp")
  while ctrl == sip + 1 do ctrl = free_port("tcp") end -- sip+1 is its TLS port
  local f = assert(io.open(dir .. "/config", "w"))
  f:write(table.concat({
    "poll_method epoll", "sip_listen 127.0.0.1:" .. sip,
    "audio_player aubridge,nowhere", "audio_source ausine,800",
    "ausrc_srate 48000", "ausrc_channels 2", "auplay_srate 48000", "auplay_channels 2",
    "module_path /usr/lib/baresip/modules",
    "module g711.so", "module opus.so", "module srtp.so", "module ausine.so",
    "module aubridge.so", "module sndfile.so", "snd_path " .. dir .. "/dump",
    "module_app account.so", "module_app menu.so", "module_app ctrl_tcp.so",
    opts.app_modules or "", "ctrl_tcp_listen 127.0.0.1:" .. ctrl, "" }, "\n"))
  f:close()
  f = assert(io.open(dir .. "/accounts", "w"))
  f:write((opts.account or "<sip:bs@127.0.0.1>;regint=0;mediaenc=srtp-mand;audio_codecs=opus/48000/2") .. "\n")
  f:close()
  f = assert(io.open(dir .. "/contacts", "w"))
  f:write(table.concat(opts.contacts or {}, "\n") .. "\n")
  f:close()
  os.execute("mkdir -p " .. H.shell_quote(dir .. "/dump"))
  local p = H.process({ "baresip", "-f", dir })
  local b = { p = p, buf = "", seen = {} }
  H.run(function()
    assert(H.poll_until(function()
      local c = socket.tcp()
      c:settimeout(0.2)
      if c:connect("127.0.0.1", ctrl) then b.c = c return true end
      c:close()
    end, 10), "baresip's ctrl_tcp did not come up:\n" .. p:errors() .. p:output())
  end, 15)
  b.c:settimeout(0)
  function b:cmd(command, params)
    local js = string.format('{"command":"%s","params":"%s","token":"t"}', command, params or "")
    assert(self.c:send(#js .. ":" .. js .. ","))
  end
  -- read what arrived; each netstring's JSON text is kept in seen
  function b:pump()
    local data, _, partial = self.c:receive(65536)
    self.buf = self.buf .. (data or partial or "")
    while true do
      local len, rest = self.buf:match("^(%d+):(.*)$")
      if not len or #rest < tonumber(len) + 1 then break end
      self.seen[#self.seen + 1] = rest:sub(1, tonumber(len))
      self.buf = rest:sub(tonumber(len) + 2)
    end
  end
  function b:wait_event(pattern, timeout)
    return H.poll_until(function()
      self:pump()
      for _, e in ipairs(self.seen) do if e:find(pattern) then return e end end
    end, timeout)
  end
  -- wait (up to 15 s) until baresip's contact list shows `who` as `status`
  -- (Online, Offline, Busy, ...)
  function b:contact_is(status, who)
    return H.poll_until(function()
      self.seen = {}
      self:cmd("contacts")
      local list = self:wait_event('"response"', 2)
      return list and list:find(status .. "[^\n]*" .. who:gsub("%p", "%%%0"))
    end, 15)
  end
  b.sip_port = sip
  return b
end

describe("interop with baresip", function()
  it("baresip calls ivr.lua with Opus and SRTP, presses 1 and hears the tone", function()
    local ok = os.execute("command -v baresip >/dev/null 2>&1")
    assert(ok == true or ok == 0, "baresip (Debian baresip-core) is not installed: run make deps")
    local dir = H.tmpdir()
    local ivr = H.process(example("ivr.lua", "--listen", "127.0.0.1:0", "--dir", dir))
    local port
    H.run(function()
      port = tonumber(ivr:expect("listening on sip:%S+", 10):match("listening on sip:[^:]+:(%d+)"))
    end, 15)
    local b = baresip(dir)
    finally(function()
      pcall(b.cmd, b, "quit")
      b.p:cleanup()
      ivr:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end)
    local menc
    H.run(function()
      b:cmd("dial", "sip:ivr@127.0.0.1:" .. port)
      assert(b:wait_event('"CALL_ESTABLISHED"', 10), table.concat(b.seen, "\n"))
      menc = b:wait_event('"CALL_MENC"', 5)
      luasip.sleep(2.5) -- into the spoken menu
      b:cmd("sndcode", "1")
      luasip.sleep(2.5) -- the tone
      b:cmd("hangup")
      assert(b:wait_event('"CALL_CLOSED"', 10), table.concat(b.seen, "\n"))
      assert(ivr:expect("pressed 1", 5))
    end, 40)
    assert.matches("AES_CM_128_HMAC_SHA1_80", menc)
    local p = io.popen("ls " .. H.shell_quote(dir .. "/dump") .. "/*-dec.wav")
    local heard = p:read("l")
    p:close()
    assert(heard, "baresip recorded nothing")
    local samples, rate = audio.read_wav(heard)
    assert.equal(48000, rate)
    -- the menu was spoken, then 440 Hz played for 1.5 s
    assert.is_true(audio.loud_frames(samples, rate, 300) > 50, "baresip heard the menu")
    local windows = audio.tone_windows(samples, rate, 440, { 300, 1000, 1400, 2000 })
    assert.is_true(windows >= 10, windows .. " windows of 440 Hz (want >= 10 of the 15)")
  end)
  it("baresip registers, publishes, watches and chats through presence_server.lua", function()
    local dir = H.tmpdir()
    local srv = H.process(example("presence_server.lua", "--listen", "127.0.0.1:0", "--policy", "allow",
                                  "--algorithms", "MD5", os.getenv("TRACE") and "--trace" or nil)) -- baresip answers MD5 challenges only
    local port
    H.run(function()
      port = tonumber(srv:expect("listening on udp/[^:]+:(%d+)", 10):match("listening on udp/[^:]+:(%d+)"))
    end, 15)
    local server_uri = "sip:127.0.0.1:" .. port
    local b = baresip(dir, {
      app_modules = "module_app contact.so\nmodule_app presence.so",
      account = string.format('<sip:carol@127.0.0.1>;auth_pass=carol-secret;outbound="%s";regint=60;pubint=60',
                              server_uri),
      contacts = { '"Alice" <sip:alice@127.0.0.1>;presence=p2p' },
    })
    local alice = assert(luasip.ua { aor = "sip:alice@127.0.0.1", proxy = server_uri,
                                     credentials = { user = "alice", password = "alice-secret" } })
    finally(function()
      alice:close()
      pcall(b.cmd, b, "quit")
      b.p:cleanup()
      srv:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end)
    local got = {}
    alice:on("message", function(msg) got[#got + 1] = msg.body end)
    H.run(function()
      -- baresip's subscription to alice sees her registration, then her publication
      local reg = assert(alice:register { registrar = server_uri, expires = 60 })
      local function status_is(what) return b:contact_is(what, "alice@127.0.0.1") end
      assert(status_is("Online"), table.concat(b.seen, "\n") .. "\n--- server:\n" .. srv:errors())
      -- alice chats with baresip through the relay, and baresip answers
      assert(b.p:expect("baresip is ready", 5))
      assert(H.poll_until(function() return alice:options("sip:carol@127.0.0.1") end, 10),
             "carol never registered: " .. b.p:output())
      local resp = assert(alice:message("sip:carol@127.0.0.1", "hello carol"))
      -- answered by baresip itself, through the relay
      assert.matches("baresip", tostring(resp:header("User-Agent") or resp:header("Server")), resp:raw())
      b:cmd("message", "hi alice")
      assert(H.poll_until(function() return got[1] end, 10), b.p:output())
      assert.equal("hi alice", got[1])
      -- alice goes away: baresip sees her offline
      assert(reg:unregister())
      assert(status_is("Offline"), table.concat(b.seen, "\n"))
    end, 60)
  end)

  it("baresip, set up with the line pbx.lua prints, registers and calls into voicemail", function()
    local dir, data = H.tmpdir(), H.tmpdir()
    local pbx = H.process(example("pbx.lua", "--listen", "127.0.0.1:" .. free_port(), "--data", data,
                                  os.getenv("TRACE") and "--trace" or nil))
    local line
    H.run(function() line = pbx:expect("baresip %(a line in ~/.baresip/accounts%):\n  ([^\n]+)", 10) end, 15)
    line = line:match("baresip %(a line in ~/.baresip/accounts%):\n  ([^\n]+)")
    assert.matches("^<sip:alice@127%.0%.0%.1:%d+>;auth_pass=alice%-secret$", line)
    local port = tonumber(line:match(":(%d+)>"))
    -- without baresip's mwi module: now and then (1 run in 4 here) its
    -- SUBSCRIBE answers a 407 with another SUBSCRIBE without credentials,
    -- in a tight loop; bob's luasip phone checks the MWI instead
    local b = baresip(dir, { account = line })
    local bob = assert(luasip.ua { aor = "sip:bob@127.0.0.1", proxy = "sip:127.0.0.1:" .. port,
                                   credentials = { user = "bob", password = "bob-secret" } })
    finally(function()
      if os.getenv("PBX_LOG") then
        local f = io.open(os.getenv("PBX_LOG"), "w") f:write(pbx:output(), pbx:errors(), b.p:output(), b.p:errors()) f:close()
      end
      bob:close()
      pcall(b.cmd, b, "quit")
      b.p:cleanup()
      pbx:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir) .. " " .. H.shell_quote(data))
    end)
    H.run(function()
      -- (registered before its ctrl_tcp socket was up: the PBX's log says it)
      assert(pbx:expect("REGISTER from 127%.0%.0%.1:%d+ over udp %-> 200", 10))
      -- bob has no phone registered: his voicemail answers baresip
      local summary
      assert(bob:subscribe("sip:bob@127.0.0.1", "message-summary", function(st) summary = st.summary end))
      b:cmd("dial", "bob")
      assert(b:wait_event('"CALL_ESTABLISHED"', 10), table.concat(b.seen, "\n") .. pbx:output() .. b.p:output())
      -- its 800 Hz sine after the greeting and the beep, then it hangs up
      assert(H.poll_until(function()
        for _, n in ipairs(require("luasip.core").listdir(data .. "/voicemail/bob") or {}) do
          if n:find("%.part") then return true end
        end
      end, 30), "the recording did not start")
      luasip.sleep(2)
      b:cmd("hangup")
      assert(b:wait_event('"CALL_CLOSED"', 10), table.concat(b.seen, "\n"))
      assert(H.poll_until(function() return summary and summary.voice and summary.voice.new == 1 end, 10),
             "MWI for bob's new message")
    end, 60)
    local files = require("luasip.core").listdir(data .. "/voicemail/bob")
    assert.equal(1, #files, table.concat(files, " "))
    local samples, rate = audio.read_wav(data .. "/voicemail/bob/" .. files[1])
    assert(audio.dominant_overall(samples, rate, 800, { 400, 1000, 1400 }))
  end)

  it("baresip watches a luasip UA's own presence, and the UA watches baresip's (no server between)", function()
    local dir = H.tmpdir()
    local alice = assert(luasip.ua { aor = "sip:alice@127.0.0.1" })
    local alice_uri = "sip:alice@127.0.0.1:" .. alice.port
    local b = baresip(dir, {
      app_modules = "module_app contact.so\nmodule_app presence.so",
      account = "<sip:carol@127.0.0.1>;regint=0",
      contacts = { string.format('"Alice" <%s>;presence=p2p', alice_uri) },
    })
    finally(function()
      alice:close()
      pcall(b.cmd, b, "quit")
      b.p:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end)
    H.run(function()
      -- alice is the notifier: baresip subscribes to her directly
      local watcher
      alice:on("subscribe", function(w)
        assert(w:accept { presence = { basic = "open", note = "at my desk" } })
        watcher = w
      end)
      assert(b:contact_is("Online", alice_uri:sub(5)), table.concat(b.seen, "\n") .. b.p:output())
      assert.equal("sip:carol@127.0.0.1", watcher.from)
      assert.is_true(watcher:notify { presence = { basic = "open", activities = { "busy" } } })
      assert(b:contact_is("Busy", alice_uri:sub(5)), table.concat(b.seen, "\n"))
      assert.is_true(watcher:notify { presence = { basic = "closed" } })
      assert(b:contact_is("Offline", alice_uri:sub(5)), table.concat(b.seen, "\n"))
      -- and the other way: alice subscribes to baresip's notifier
      local states = {}
      local sub = assert(alice:subscribe("sip:carol@127.0.0.1:" .. b.sip_port, "presence", function(st)
        states[#states + 1] = st
      end))
      assert(H.poll_until(function() return states[1] end, 10))
      local st = states[1]
      assert.equal("active", st.state, st.msg and st.msg:raw())
      -- before its user picks a status baresip sends <basic>?</basic>
      assert.is_nil(st.error, st.body)
      assert.same({ nil, "sip:carol@127.0.0.1" }, { st.presence.tuples[1].basic, st.presence.tuples[1].contact })
      b:cmd("presence_online")
      assert(H.poll_until(function() return states[2] end, 10), b.p:output())
      assert.equal("open", states[2].presence.tuples[1].basic, states[2].body)
      b:cmd("presence_offline")
      assert(H.poll_until(function() return states[3] end, 10), b.p:output())
      assert.equal("closed", states[3].presence.tuples[1].basic, states[3].body)
      assert.is_true(sub:unsubscribe())
      assert.equal("terminated", states[#states].state)
    end, 90)
  end)
end)
