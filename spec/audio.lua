-- Audio checks for the media specs: WAV reading, Goertzel power, and the
-- dominant tone and loud length of a recording.
local M = {}

if not string.unpack then -- LuaJIT: the WAV reader needs string.unpack
  string.unpack = function(fmt, s, pos)
    pos = pos or 1
    if fmt == "<I4" then
      local b1, b2, b3, b4 = s:byte(pos, pos + 3)
      return b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
    end
    local b1, b2 = s:byte(pos, pos + 1)
    local v = b1 + b2 * 256
    return v >= 32768 and v - 65536 or v
  end
end

-- 16-bit PCM samples (the first channel) and rate of a WAV file (finds
-- the data chunk).
function M.read_wav(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  assert(s:sub(1, 4) == "RIFF" and s:sub(9, 12) == "WAVE", "not a WAV file")
  local rate = string.unpack("<I4", s, 25)
  local channels = s:byte(23) + 256 * s:byte(24)
  local i = 13
  while i + 8 <= #s do
    local id, len = s:sub(i, i + 3), string.unpack("<I4", s, i + 4)
    if id == "data" then
      local samples = {}
      for k = 0, len / 2 / channels - 1 do
        samples[k + 1] = string.unpack("<i2", s, i + 8 + 2 * channels * k)
      end
      return samples, rate
    end
    i = i + 8 + len + len % 2
  end
  error("no data chunk")
end

-- Goertzel power of frequency f over samples[from..to].
function M.power(samples, rate, f, from, to)
  local w = 2 * math.pi * f / rate
  local c, s1, s2 = 2 * math.cos(w), 0, 0
  for k = from, to do
    local s0 = samples[k] + c * s1 - s2
    s2, s1 = s1, s0
  end
  return s1 * s1 + s2 * s2 - c * s1 * s2
end


local function le(v, bytes)
  local t = {}
  for i = 1, bytes do
    t[i] = string.char(v % 256)
    v = math.floor(v / 256)
  end
  return table.concat(t)
end

-- Write a 16-bit PCM WAV of `seconds` at rate with channels, each sample
-- fn(t) in -1..1 (t in seconds).
function M.write_wav(path, rate, channels, seconds, fn)
  local n = math.floor(rate * seconds)
  local parts = {}
  for i = 0, n - 1 do
    local v = math.floor(fn(i / rate) * 32000 + 0.5)
    if v < 0 then v = v + 65536 end
    local sample = le(v, 2)
    for _ = 1, channels do parts[#parts + 1] = sample end
  end
  local data = table.concat(parts)
  local f = assert(io.open(path, "wb"))
  f:write("RIFF", le(36 + #data, 4), "WAVE", "fmt ", le(16, 4), le(1, 2), le(channels, 2),
          le(rate, 4), le(rate * channels * 2, 4), le(channels * 2, 2), le(16, 2),
          "data", le(#data, 4), data)
  f:close()
end

-- A sine of f Hz at amplitude a (0..1), for write_wav.
function M.sine(f, a)
  return function(t) return (a or 0.5) * math.sin(2 * math.pi * f * t) end
end

-- The loudest 100 ms window of samples: its start.
function M.loudest(samples)
  local best, at = 0, 1
  for k = 1, #samples - 800, 400 do
    local e = 0
    for j = k, k + 799 do e = e + samples[j] * samples[j] end
    if e > best then best, at = e, k end
  end
  return at, best
end

-- Is f dominant (100x the power) over the others in the loudest window?
function M.dominant(samples, rate, f, others)
  local at = M.loudest(samples)
  local pf = M.power(samples, rate, f, at, at + 799)
  for _, g in ipairs(others or { 300, 600, 1400, 2000, 3000 }) do
    if not (pf > 100 * M.power(samples, rate, g, at, at + 799)) then
      return false, string.format("%d Hz is not dominant over %d Hz", f, g)
    end
  end
  return true
end

-- Is f dominant (ratio x the power, default 10) over the others across
-- the whole recording (for recordings that also hold other sounds)?
function M.dominant_overall(samples, rate, f, others, ratio)
  local pf = M.power(samples, rate, f, 1, #samples)
  for _, g in ipairs(others) do
    if not (pf > (ratio or 10) * M.power(samples, rate, g, 1, #samples)) then
      return false, string.format("%d Hz is not dominant over %d Hz", f, g)
    end
  end
  return true
end

-- How many 100 ms windows have f 100x the power of each of the others.
function M.tone_windows(samples, rate, f, others)
  local n, count = math.floor(rate / 10), 0
  for k = 1, #samples - n + 1, n do
    local pf, ok = M.power(samples, rate, f, k, k + n - 1), true
    for _, g in ipairs(others) do
      if not (pf > 100 * M.power(samples, rate, g, k, k + n - 1)) then ok = false break end
    end
    if ok and pf > 0 then count = count + 1 end
  end
  return count
end

-- How many 20 ms frames have a mean amplitude above level (default 1000).
function M.loud_frames(samples, rate, level)
  local n = math.floor(rate / 50)
  local loud = 0
  for k = 1, #samples - n + 1, n do
    local e = 0
    for j = k, k + n - 1 do e = e + math.abs(samples[j]) end
    if e / n > (level or 1000) then loud = loud + 1 end
  end
  return loud
end

return M
