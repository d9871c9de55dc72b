--- The `luasip` command: run a script, evaluate code, or open the REPL.
--
-- After the script body returns, the loop keeps running while anything can
-- still happen (a server listening, a watch, an armed timer, a live task),
-- then shutdown hooks run and the process exits. `luasip --help` lists the
-- options. Mostly internal: bin/luasip calls main.
-- @module luasip.cli
local M = {}

local USAGE = [=[
usage: luasip [options] [script [args...]]
  -e code            run code (may be repeated)
  -l name            require library 'name' into global 'name'
  -i                 open the REPL after the script or -e code
  --trace            print every SIP message sent or received
  --reload           reload the script on SIGHUP or when its file changes:
                     new requests get the new handlers, those in progress
                     finish with the old ones
  --log-level LEVEL  error, warn, info (default), debug or trace
  -v, --version      print the version and exit
  -h, --help         print this help and exit
  --                 stop handling options
  -                  run standard input as the script
With no script and no -e, luasip opens the REPL when standard input is a
terminal, and runs standard input otherwise.]=]

local EXIT_USAGE = 2

local function die(msg, code)
  io.stderr:write("luasip: ", msg, "\n")
  io.stderr:flush()
  os.exit(code or 1, true)
end

local function usage_error(msg)
  die(msg .. " (see luasip --help)", EXIT_USAGE)
end

-- Parse argv (a Lua `arg` table). Returns an options table.
function M.parse(argv)
  local o = { exec = {}, libs = {}, interactive = false, trace = false }
  local i = 1
  local function value(flag)
    i = i + 1
    local v = argv[i]
    if v == nil then usage_error("option '" .. flag .. "' needs an argument") end
    return v
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--" then i = i + 1 break
    elseif a == "-" then break
    elseif a == "-e" then o.exec[#o.exec + 1] = value(a)
    elseif a == "-l" then o.libs[#o.libs + 1] = value(a)
    elseif a == "-i" then o.interactive = true
    elseif a == "--trace" then o.trace = true
    elseif a == "--reload" then o.reload = true
    elseif a == "--log-level" then o.log_level = value(a)
    elseif a:match("^%-%-log%-level=") then o.log_level = a:match("=(.*)$")
    elseif a == "-v" or a == "--version" then o.version = true
    elseif a == "-h" or a == "--help" then o.help = true
    elseif a:sub(1, 1) == "-" then usage_error("unknown option '" .. a .. "'")
    else break end
    i = i + 1
  end
  o.script = argv[i]
  o.script_index = i
  return o
end

--- The traceback of an error raised under xpcall, without the frames of
-- the command (or REPL) that called it.
--
-- Use from the message handler.
-- @param err the error value (a non-string is converted with tostring)
-- @tparam[opt=2] integer level the level debug.traceback starts at
-- @treturn string the message and its traceback, cut at the xpcall
function M.traceback(err, level)
  local msg = type(err) == "string" and err or tostring(err)
  local lines = {}
  for line in debug.traceback(msg, level or 2):gmatch("[^\n]+") do
    if line:find("in function 'xpcall'", 1, true) then break end
    lines[#lines + 1] = line
  end
  if lines[#lines] == "stack traceback:" then lines[#lines] = nil end
  return table.concat(lines, "\n")
end
local function report(err) return M.traceback(err, 3) end

local function interrupted(err)
  local task = require "luasip.task"
  return err == task.INTERRUPTED
end

-- Run fn under xpcall; an interrupt (shutdown) is a clean end.
local function protected(fn, ...)
  local ok, err = xpcall(fn, function(e)
    if interrupted(e) then return e end
    return report(e)
  end, ...)
  if ok or interrupted(err) then return true end
  io.stderr:write("luasip: ", tostring(err), "\n")
  return false
end

local function keep_running(luasip)
  local core = require "luasip.core"
  local task = require "luasip.task"
  local function alive()
    return core.busy() or task.count() > 0
  end
  while not luasip.shutting_down() and alive() and not core.stopped() do
    core.step(-1)
  end
end

local function finish(luasip, code)
  -- Shutdown hooks (un-REGISTER, BYE) run on every clean exit.
  if not luasip.shutting_down() then
    local core = require "luasip.core"
    core.clear_stop()
    luasip.shutdown("exit")
    while not core.stopped() do core.step(-1) end
  end
  io.stdout:flush()
  os.exit(code, true)
end

--- Run the `luasip` command with argv (what bin/luasip does).
--
-- Never returns: the process exits with 0, 1 (a script or -e code failed)
-- or 2 (a usage error).
-- @tparam ?table argv the command's arguments, as the lua command's `arg`
function M.main(argv)
  argv = argv or {}
  local o = M.parse(argv)
  if o.help then
    io.stdout:write(USAGE, "\n")
    os.exit(0, true)
  end
  local luasip = require "luasip"
  _G.luasip = luasip -- scripts, -e code and the REPL see it without a require
  if o.version then
    io.stdout:write("luasip ", luasip.version, " (", jit and jit.version or _VERSION, ")\n")
    os.exit(0, true)
  end
  if o.log_level then
    local ok, err = pcall(luasip.log.set_level, o.log_level)
    if not ok then usage_error("bad --log-level '" .. o.log_level .. "': use error, warn, info, debug or trace") end
  end
  if o.trace then luasip.trace(true) end

  -- The script's `arg`, as the lua command builds it.
  local script_arg = {}
  for k = 1, #argv do script_arg[k - o.script_index] = argv[k] end
  script_arg[-o.script_index] = argv[-1] or argv[0]
  _G.arg = script_arg

  for _, name in ipairs(o.libs) do
    local ok, lib = pcall(require, name)
    if not ok then die(tostring(lib), EXIT_USAGE) end
    _G[name:match("[^.]+$")] = lib
  end

  local ok = true
  for n, code in ipairs(o.exec) do
    local chunk, err = load(code, "=(command line " .. n .. ")")
    if not chunk then die(err, EXIT_USAGE) end
    ok = protected(chunk)
    if not ok then finish(luasip, 1) end
  end

  local tty = require("luasip.readline").isatty(0)
  if o.script then
    local chunk, err
    if o.script == "-" then
      chunk, err = load(io.stdin:read("*a"), "=stdin")
    else
      local f = io.open(o.script, "r")
      if not f then die("cannot open script '" .. o.script .. "'", EXIT_USAGE) end
      f:close()
      chunk, err = loadfile(o.script)
    end
    if not chunk then die(err, 1) end
    local args = {}
    for k = 1, #script_arg do args[k] = script_arg[k] end
    if o.reload then
      if o.script == "-" then usage_error("--reload needs a script file") end
      require("luasip.reload").enable(o.script, args, luasip)
    end
    ok = protected(chunk, (table.unpack or unpack)(args))
    if not ok then finish(luasip, 1) end
  elseif #o.exec == 0 and not o.interactive then
    if tty then
      o.interactive = true
    else
      local chunk, err = load(io.stdin:read("*a"), "=stdin")
      if not chunk then die(err, 1) end
      ok = protected(chunk)
      if not ok then finish(luasip, 1) end
    end
  end

  if o.interactive then
    require("luasip.repl").run { luasip = luasip }
  elseif not luasip.shutting_down() then
    local ran = protected(keep_running, luasip)
    if not ran then finish(luasip, 1) end
  end
  finish(luasip, 0)
end

return M
