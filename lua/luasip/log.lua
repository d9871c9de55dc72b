--- Logging: levels, stderr by default, a pluggable sink.
--
--   local log = require "luasip.log"   -- also luasip.log
--   log.info("listening on %s", addr)   -- string.format when given arguments
--   log.set_level("debug")             -- error, warn, info, debug, trace
--   log.set_sink(function(level, message) ... end)
--
-- SIP message traces (`--trace`, luasip.trace(true)) are emitted at level
-- "sip" and always pass the level filter.
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4, trace = 5, sip = 0 }
M.LEVELS = LEVELS

local threshold = LEVELS.info

local function clock()
  local core = package.loaded["luasip.core"]
  local t = core and core.time and core.time() or os.time()
  local whole = math.floor(t)
  return os.date("%H:%M:%S", whole) .. string.format(".%03d", math.floor((t - whole) * 1000))
end

--- The default sink: one line (or block) per record on stderr.
function M.stderr_sink(level, message)
  io.stderr:write(clock(), " ", level:upper(), " ", message, "\n")
  io.stderr:flush()
end

local sink = M.stderr_sink

function M.set_sink(fn)
  if type(fn) ~= "function" then error("luasip.log.set_sink: expected a function", 2) end
  local old = sink
  sink = fn
  return old
end

function M.get_sink() return sink end

function M.set_level(name)
  if not LEVELS[name] or name == "sip" then
    error("luasip.log.set_level: level must be error, warn, info, debug or trace (got " ..
          tostring(name) .. ")", 2)
  end
  threshold = LEVELS[name]
end

function M.get_level()
  for k, v in pairs(LEVELS) do if v == threshold and k ~= "sip" then return k end end
end

function M.enabled(level) return (LEVELS[level] or 99) <= threshold end

local function emit(level, fmt, ...)
  if LEVELS[level] > threshold then return end
  local msg
  if select("#", ...) > 0 then
    local ok, s = pcall(string.format, fmt, ...)
    msg = ok and s or (tostring(fmt) .. " (bad log format: " .. s .. ")")
  else
    msg = tostring(fmt)
  end
  local ok, err = pcall(sink, level, msg)
  if not ok then
    io.stderr:write("luasip: log sink failed: ", tostring(err), "\n", msg, "\n")
  end
end
M.log = emit

for name in pairs(LEVELS) do
  M[name] = function(fmt, ...) return emit(name, fmt, ...) end
end

return M
