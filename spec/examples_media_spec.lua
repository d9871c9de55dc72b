-- The media examples run as child processes, called by a luasip UA in
-- this spec that sends DTMF and tones and records what it hears:
-- examples/echo.lua and examples/ivr.lua (menu 1, 2, 3, and a wrong key).
local H = require "helper"
local audio = require "audio"
local luasip = require "luasip"

local function example(name, ...)
  return H.luasip_argv(H.root .. "/examples/" .. name, ...)
end

-- Start an example; the port it listens on.
local function start(name, ...)
  local p = H.process(example(name, ...))
  local port
  H.run(function()
    local line = p:expect("listening on sip:%S+", 10)
    port = tonumber(line:match("listening on sip:[^:]+:(%d+)"))
  end, 15)
  return p, port
end

-- Record what the call hears into path while fn runs; returns the
-- record() results.
local function hearing(call, path, fn)
  local rec
  luasip.spawn(function()
    rec = { call:record(path, { max_seconds = 60, stop_on = false }) }
  end)
  fn()
  return rec
end

local free_port = H.free_port

describe("media examples", function()
  it("ivr.lua takes SIPp's uac_pcap call: PCMA speech, then RFC 2833 digit 1 from a capture", function()
    H.require_sipp()
    local p, port = start("ivr.lua", "--listen", "127.0.0.1:0")
    finally(function() p:cleanup() end)
    local sipp = H.sipp({ "-sf", H.root .. "/spec/sipp/uac_pcap.xml", "127.0.0.1:" .. port },
      { port = free_port, limit = 30, argv = function() return { "-m", "1", "-mp", tostring(free_port()) } end })
    finally(function() sipp:cleanup() end)
    local rc
    H.run(function() rc = sipp:finish(35) end, 40)
    assert.equal(0, rc, sipp:diag())
    H.run(function() assert(p:expect("pressed 1", 5)) end, 10)
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
  end)

  it("echo.lua sends the caller's tone back", function()
    local dir = H.tmpdir()
    local p, port = start("echo.lua", "--listen", "127.0.0.1:0")
    finally(function() p:cleanup() end)
    H.run(function()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0" })
      local call = assert(ua:call("sip:echo@127.0.0.1:" .. port, { timeout = 5 }))
      local rec = hearing(call, dir .. "/echo.wav", function()
        luasip.sleep(0.6) -- the beep first
        assert.is_true(call:tone { freqs = { 1000 }, duration = 1000 })
        luasip.sleep(0.3)
        call:hangup()
      end)
      assert.is_true(H.poll_until(function() return rec[2] ~= nil end, 5))
      ua:close()
    end, 30)
    local samples, rate = audio.read_wav(dir .. "/echo.wav")
    assert(audio.dominant(samples, rate, 1000))
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
    assert.matches("echo: ended; %d+ packets in", p:output())
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)

  it("conference.lua: two callers in one room hear each other", function()
    local dir = H.tmpdir()
    local p, port = start("conference.lua", "--listen", "127.0.0.1:0")
    finally(function() p:cleanup() end)
    local rec = {}
    H.run(function()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0" })
      local a = assert(ua:call("sip:team@127.0.0.1:" .. port, { timeout = 5 }))
      local b = assert(ua:call("sip:team@127.0.0.1:" .. port, { timeout = 5 }))
      assert(p:expect("%(2 here%)", 5))
      luasip.spawn(function()
        rec.b = { b:record(dir .. "/b.wav", { max_seconds = 20, stop_on = false }) }
      end)
      assert.is_true(a:tone { freqs = { 800 }, duration = 1000 })
      luasip.sleep(0.3)
      a:hangup()
      b:hangup()
      assert.is_true(H.poll_until(function() return rec.b ~= nil end, 5))
      ua:close()
    end, 30)
    local samples, rate = audio.read_wav(dir .. "/b.wav")
    assert(audio.dominant_overall(samples, rate, 800, { 300, 1000, 1400, 2000 }))
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
    assert.matches("left team", p:output(), 1, true)
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)

  it("ivr.lua: 1 a tone, 2 records and plays back, 3 speaks, 9 re-prompts", function()
    local dir = H.tmpdir()
    local p, port = start("ivr.lua", "--listen", "127.0.0.1:0", "--dir", dir)
    finally(function() p:cleanup() end)
    local heard = {}
    H.run(function()
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:4711@127.0.0.1" })
      local call = assert(ua:call("sip:ivr@127.0.0.1:" .. port, { timeout = 5 }))
      -- send digits (then run during()) while recording `seconds` of what
      -- the IVR answers
      local function step(name, digits, seconds, during)
        heard[name] = dir .. "/" .. name .. ".wav"
        local sent
        luasip.spawn(function()
          luasip.sleep(0.2)
          sent = { call:dtmf(digits, { duration = 80 }) }
          if during then during() end
        end)
        local r = { call:record(heard[name], { max_seconds = seconds, stop_on = false }) }
        assert.same({ heard[name], "max" }, { r[1], r[3] })
        assert.same({ true }, sent)
      end
      luasip.sleep(0.5) -- the menu starts
      step("tone", "1", 2.0)
      step("wrong", "9", 1.4)
      step("callerid", "3", 4.2)
      step("record", "2", 7, function()
        luasip.sleep(0.8) -- the beep
        assert.is_true(call:tone { freqs = { 700 }, duration = 1000 })
        -- then 3 s of silence end the recording, and it is played back
      end)
      call:hangup()
      ua:close()
    end, 60)
    local function check(name, f, others)
      local samples, rate = audio.read_wav(heard[name])
      local ok, why = audio.dominant_overall(samples, rate, f, others)
      assert(ok, name .. ": " .. tostring(why))
    end
    check("tone", 440, { 300, 700, 1000, 1400, 2000 })
    check("record", 700, { 300, 440, 1400, 2000 }) -- (the beep before it is 1000 Hz)
    -- speech: most of 4 s is loud, and not one pure tone
    local samples, rate = audio.read_wav(heard.callerid)
    assert.is_true(audio.loud_frames(samples, rate, 300) > 40, "the caller ID was spoken")
    check("wrong", 620, { 300, 440, 1000, 1400, 2000 }) -- the error tone, 480 + 620 Hz
    p:signal("TERM")
    H.run(function() assert.are.equal(0, p:wait(10)) end, 15)
    local out = p:output()
    for _, d in ipairs { "1", "3", "2" } do
      assert.matches("pressed " .. d, out, 1, true)
    end
    -- the recording was played back and removed
    local ls = io.popen("ls " .. H.shell_quote(dir)):read("a")
    assert.is_nil(ls:find("ivr-", 1, true))
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)
end)
