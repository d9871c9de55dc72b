-- media_peer.lua — one side of the media capacity benchmark (bench/media.sh).
--
--   media_peer.lua answer PORT FILE DIR       answer every call: play FILE in a
--                                             loop, record into DIR
--   media_peer.lua call URI N SECONDS FILE DIR  place N calls, each playing FILE
--                                             and recording; after they are up,
--                                             measure SECONDS and print a RESULT line
-- Plain RTP. The environment chooses the rest:
--   MEDIA_CODEC   the codec (default PCMU)
--   MEDIA_RECORD  0: do not record (nothing listens, so nothing is decoded)
--   MEDIA_SOURCE  "tone": the calling side plays an endless two-frequency tone,
--                 encoded live, instead of FILE (through the encoded-prompt cache)
-- Bounded: every wait has a timeout.
local luasip = require "luasip"
local core = require "luasip.core"

local role = arg[1]
local function fail(msg) io.stderr:write("media_peer: ", msg, "\n") os.exit(1) end

local codec = os.getenv("MEDIA_CODEC") or "PCMU"
local record = os.getenv("MEDIA_RECORD") ~= "0"

local function start_media(call, file, path, source)
  if source == "tone" then
    luasip.spawn(function() call:tone { freqs = { 440, 1200 }, duration = 3600 * 1000 } end)
  else
    assert(call:play(file, { loop = true }))  -- endless: plays in the background
  end
  if record then
    luasip.spawn(function() call:record(path, { max_seconds = 3600, stop_on = false }) end)
  end
end

if role == "answer" then
  local port, file, dir = tonumber(arg[2]), arg[3], arg[4]
  local ua = assert(luasip.ua { listen = "127.0.0.1:" .. port, codecs = { codec }, srtp = "off" })
  local n = 0
  ua:on("call", function(call)
    if not call:answer() then return end
    n = n + 1
    start_media(call, file, string.format("%s/a%d.wav", dir, n))
    call:wait_hangup(3600)
  end)
  luasip.on("shutdown", function() ua:close() end)
  print("ready " .. ua.port)
  io.stdout:flush()
  luasip.run()
elseif role == "call" then
  local uri, n, seconds, file, dir = arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5], arg[6]
  local ua = assert(luasip.ua { listen = "127.0.0.1:0", codecs = { codec }, srtp = "off" })
  local calls = {}
  for i = 1, n do
    local call, why = ua:call(uri, { timeout = 10 })
    if not call then fail("call " .. i .. ": " .. tostring(why)) end
    calls[i] = call
    start_media(call, file, string.format("%s/c%d.wav", dir, i), os.getenv("MEDIA_SOURCE"))
  end
  luasip.sleep(1) -- settle
  local before = {}
  for i, c in ipairs(calls) do before[i] = c:stats() end
  core.media_timing(true)
  local cpu0, t0 = os.clock(), luasip.now()
  luasip.sleep(seconds)
  local cpu, wall = os.clock() - cpu0, luasip.now() - t0
  local timing = core.media_timing() or {}
  local sent, received, lost, late = 0, 0, 0, 0
  for i, c in ipairs(calls) do
    local s = c:stats()
    sent = sent + s.packets_sent - before[i].packets_sent
    received = received + s.packets_received - before[i].packets_received
    lost = lost + math.max(0, s.lost - before[i].lost)
    late = late + s.late - before[i].late
  end
  local cache = core.media_cache()
  print(string.format("RESULT calls=%d wall=%.2f cpu=%.3f sent=%d received=%d lost=%d late=%d " ..
    "err_p99=%.1f busy_p50=%.1f busy_p99=%.1f send_p99=%.1f encoded=%d reused=%d", n, wall, cpu, sent,
    received, lost, late, timing.interval_error_p99_ms or -1, timing.busy_p50_ms or -1,
    timing.busy_p99_ms or -1, timing.send_error_p99_ms or -1, cache.encoded, cache.reused))
  io.stdout:flush()
  ua:close() -- hangs every call up
else
  fail("usage: media_peer.lua answer PORT FILE DIR | call URI N SECONDS FILE DIR")
end
