-- pbx_load.lua — figures for examples/pbx.lua (run by bench/pbx.sh with
-- the PBX's port and pid): sequential calls alice -> bob through the PBX
-- (digest challenge, lookup, fork, Record-Route; bob answers at once), then
-- messages left in bob's voicemail, each timed from the caller's hangup to
-- the MWI NOTIFY that counts it (recording closed, fsync, rename, index
-- durable, NOTIFY out). Bounded: CALLS and MESSAGES, every wait timed.
local luasip = require "luasip"
local core = require "luasip.core"

local port, pid = tonumber(arg[1]), arg[2]
local CALLS, MESSAGES = tonumber(os.getenv("CALLS") or 200), tonumber(os.getenv("MESSAGES") or 10)

local function rss()
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return 0 end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb) / 1024
end

local function phone(user)
  local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:" .. user .. "@127.0.0.1",
                                credentials = { user = user, password = user .. "-secret" },
                                proxy = "sip:127.0.0.1:" .. port })
  assert(ua:register { registrar = "sip:127.0.0.1:" .. port, expires = 600 })
  return ua
end

local function percentile(list, p)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

luasip.spawn(function()
  local alice, bob = phone("alice"), phone("bob")
  local rss0 = rss()
  -- calls
  bob:on("call", function(c) c:answer() end)
  local setup = {}
  local t0 = core.now()
  for i = 1, CALLS do
    local s = core.now()
    local call = assert(alice:call("sip:bob@127.0.0.1", { timeout = 10 }))
    setup[i] = (core.now() - s) * 1000
    call:hangup()
  end
  local elapsed = core.now() - t0
  print(string.format("calls: %d sequential, %.0f calls/s, setup median %.1f ms, p95 %.1f ms",
                      CALLS, CALLS / elapsed, percentile(setup, 0.5), percentile(setup, 0.95)))
  -- voicemail
  local summary
  assert(bob:subscribe("sip:bob@127.0.0.1", "message-summary", function(st) summary = st.summary end))
  bob:on("call", function(c) c:reject(486) end)
  local lag = {}
  for i = 1, MESSAGES do
    local call = assert(alice:call("sip:bob@127.0.0.1", { timeout = 10 }))
    call:dtmf("#")                   -- skip the greeting
    luasip.sleep(1.0)                -- the beep
    call:tone { freqs = { 700 }, duration = 1000 }
    local s = core.now()
    call:hangup()
    local ok = luasip.wait(function(done)
      local t = luasip.every(0.002, function() if summary and summary.voice and summary.voice.new == i then done(true) end end)
      return function() t:close() end
    end, 10)
    assert(ok, "no MWI for message " .. i)
    lag[i] = (core.now() - s) * 1000
  end
  print(string.format("voicemail: %d messages, hangup -> MWI NOTIFY median %.1f ms, p95 %.1f ms",
                      MESSAGES, percentile(lag, 0.5), percentile(lag, 0.95)))
  print(string.format("pbx RSS: %.1f MB with 2 phones registered, %.1f MB after the load", rss0, rss()))
  alice:close() bob:close()
  luasip.stop()
end)
luasip.run()
