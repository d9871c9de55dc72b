--- Logging: levels, stderr by default, a pluggable sink.
--
-- SIP message traces (`--trace`, luasip.trace(true)) are emitted at level
-- "sip" and always pass the level filter. The level is "info" until
-- set_level changes it.
-- @module luasip.log
-- @usage
--   local log = require "luasip.log"   -- also luasip.log
--   log.info("listening on %s", addr)   -- string.format when given arguments
--   log.set_level("debug")             -- error, warn, info, debug, trace
--   log.set_sink(function(level, message) ... end)
local M = {}

local LEVELS = { error = 1, warn = 2, info = 3, debug = 4, trace = 5, sip = 0 }
--- The levels by name, most severe first: error = 1, warn = 2, info = 3,
-- debug = 4, trace = 5, and sip = 0 (SIP traces, never filtered).
M.LEVELS = LEVELS

local threshold = LEVELS.info

local function clock()
  local core = package.loaded["luasip.core"]
  local t = core and core.time and core.time() or os.time()
  local whole = math.floor(t)
  return os.date("%H:%M:%S", whole) .. string.format(".%03d", math.floor((t - whole) * 1000))
end

--- The default sink: one line (or block) per record on stderr.
--
-- Each record is the time (HH:MM:SS.mmm), the level in capitals and the
-- message.
-- @tparam string level the record's level
-- @tparam string message the formatted message
function M.stderr_sink(level, message)
  io.stderr:write(clock(), " ", level:upper(), " ", message, "\n")
  io.stderr:flush()
end

local sink = M.stderr_sink

--- Send every record to fn instead of the current sink.
--
-- A sink that raises is reported on stderr, with the message.
-- @tparam function fn called as fn(level, message)
-- @treturn function the previous sink
-- @raise `luasip.log.set_sink: expected a function`.
function M.set_sink(fn)
  if type(fn) ~= "function" then error("luasip.log.set_sink: expected a function", 2) end
  local old = sink
  sink = fn
  return old
end

--- The current sink.
-- @treturn function the sink, called as fn(level, message)
function M.get_sink() return sink end

--- Set the level: records less severe than it are dropped.
-- @tparam string name "error", "warn", "info", "debug" or "trace"
-- @raise `luasip.log.set_level: level must be error, warn, info, debug or trace (got NAME)`.
function M.set_level(name)
  if not LEVELS[name] or name == "sip" then
    error("luasip.log.set_level: level must be error, warn, info, debug or trace (got " ..
          tostring(name) .. ")", 2)
  end
  threshold = LEVELS[name]
end

--- The current level.
-- @treturn string "error", "warn", "info", "debug" or "trace"
function M.get_level()
  for k, v in pairs(LEVELS) do if v == threshold and k ~= "sip" then return k end end
end

--- Whether a record at level would be emitted now.
-- @tparam string level a level name ("sip" is always enabled)
-- @treturn boolean true when level passes the filter; false for an unknown level
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
--- Log a record at level: string.format(fmt, ...) when given arguments,
-- else fmt as it is.
--
-- A format that fails logs fmt with "(bad log format: ...)".
-- @function log
-- @tparam string level one of LEVELS: "error", "warn", "info", "debug", "trace" or "sip"
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format
-- @raise a Lua error (attempt to compare nil with number) for a level not in LEVELS.
M.log = emit

--- Log at level "error"; like log("error", fmt, ...).
-- @function error
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

--- Log at level "warn"; like log("warn", fmt, ...).
-- @function warn
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

--- Log at level "info"; like log("info", fmt, ...).
-- @function info
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

--- Log at level "debug"; like log("debug", fmt, ...).
-- @function debug
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

--- Log at level "trace"; like log("trace", fmt, ...).
-- @function trace
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

--- Log at level "sip" (SIP message traces; never filtered); like
-- log("sip", fmt, ...).
-- @function sip
-- @tparam string fmt the message, or its format
-- @param ... arguments for string.format

for name in pairs(LEVELS) do
  M[name] = function(fmt, ...) return emit(name, fmt, ...) end
end

return M
