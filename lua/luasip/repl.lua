--- The luasip REPL: line editing on the loop (libedit's callback interface),
-- so timers, SIP traffic and log lines keep flowing while you type.
--
-- * An expression prints its value(s); a statement just runs; an unfinished
--   chunk continues on the next line.
-- * Blocking verbs (luasip.sleep, later ua:register, call:play ...) work at
--   the prompt: they drive the loop until done. Ctrl-C interrupts them.
-- * Output that arrives while you type (print from callbacks, log lines)
--   appears above the prompt and leaves the line you are typing intact.
-- * Ctrl-C at the prompt drops the line; Ctrl-D exits.
-- * Tab completes global and luasip names, fields and methods.
-- * History is kept in `~/.luasip_history` (`LUASIP_HISTORY` overrides; "" disables).
--
-- Mostly internal: `luasip` with no script, or with -i, runs it.
-- @module luasip.repl
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"

local M = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

--- A short, readable rendering of a value.
--
-- Strings are quoted; plain tables show up to 20 fields, two levels deep;
-- other values (and tables with a metatable) go through tostring.
-- @param v the value
-- @tparam[opt=0] integer depth how deep v is already (for nested tables)
-- @treturn string the rendering
function M.repr(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then return (string.format("%q", v):gsub("\\\n", "\\n")) end
  if t ~= "table" or getmetatable(v) or depth > 1 then return tostring(v) end
  local parts, n = {}, 0
  for k, val in pairs(v) do
    n = n + 1
    if n > 20 then parts[#parts + 1] = "..." break end
    local key = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k
      or ("[" .. M.repr(k, depth + 1) .. "]")
    parts[#parts + 1] = key .. " = " .. M.repr(val, depth + 1)
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Candidates completing `word` ("luasip.sl", "srv:cl", "pri").
function M.complete(word)
  local base, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local scope = _G
  if base then
    for name in base:gmatch("[^%.:]+") do
      if type(scope) ~= "table" and type(scope) ~= "userdata" then return {} end
      local ok, v = pcall(function() return scope[name] end)
      if not ok then return {} end
      scope = v
    end
  else
    base, sep, partial = "", "", word
  end
  local seen, out = {}, {}
  local function collect(tbl)
    if type(tbl) ~= "table" then return end
    for k in pairs(tbl) do
      if type(k) == "string" and not seen[k] and k:sub(1, #partial) == partial
          and k:match("^[%a_][%w_]*$") then
        seen[k] = true
        out[#out + 1] = base .. sep .. k
      end
    end
  end
  collect(scope)
  local mt = getmetatable(scope)
  if type(mt) == "table" then collect(mt.__index) end
  table.sort(out)
  return out
end

--- Run the REPL until Ctrl-D (or the end of standard input), or a shutdown.
--
-- It reads standard input (with line editing on a terminal), sets the
-- global `luasip`, and while it runs replaces `print` and the log sink
-- (restored on return) and handles SIGINT.
-- @tparam[opt] table opts options:
-- @tparam[opt=require "luasip"] table opts.luasip the luasip module to use
function M.run(opts)
  opts = opts or {}
  local luasip = opts.luasip or require "luasip"
  local rl = require "luasip.readline"
  local tty = rl.isatty(0)
  _G.luasip = luasip

  local PROMPT, MORE = "luasip> ", "   ...> "
  local history = os.getenv("LUASIP_HISTORY") or
    (os.getenv("HOME") and os.getenv("HOME") .. "/.luasip_history")
  if history == "" then history = nil end
  if tty and history then rl.read_history(history) end

  local evaluating, pending, eof, buffer, watch = false, nil, false, nil, nil
  local piped = {} -- lines read ahead when stdin is not a terminal
  local partial = ""

  -- Asynchronous output goes above the prompt; output of the line being
  -- evaluated goes straight out.
  local function out(text)
    if evaluating or not tty then
      io.stdout:write(text)
      io.stdout:flush()
    else
      rl.print_above(text)
    end
  end
  local saved_print, saved_sink = _G.print, log.get_sink()
  _G.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    out(table.concat(parts, "\t") .. "\n")
  end
  log.set_sink(function(level, message)
    if evaluating or not tty then return saved_sink(level, message) end
    out(string.format("%s %s\n", level:upper(), message))
  end)
  rl.set_completer(function(word) return M.complete(word) end)

  local function next_piped()
    if #piped > 0 then pending = table.remove(piped, 1) end
  end
  local function on_input()
    if pending or eof then return end
    if tty then
      local line = rl.read_char()
      if line == false then eof = true elseif line then pending = line end
      return
    end
    local data = rl.read_fd(0)
    if data == false then
      if partial ~= "" then piped[#piped + 1] = partial partial = "" end
      if #piped == 0 then eof = true end
    elseif data then
      partial = partial .. data
      for line in partial:gmatch("([^\n]*)\n") do piped[#piped + 1] = line end
      partial = partial:match("[^\n]*$")
    end
    next_piped()
  end
  local function start_reading(prompt)
    if tty then rl.install(prompt) end
    watch = core.watch(0, "r", on_input)
    if not watch and not tty then
      -- a regular file or /dev/null: epoll refuses it, but reading it never
      -- blocks, so read on each loop turn instead
      local tm
      tm = core.timer(function()
        on_input()
        if watch == tm and not pending and not eof then tm:start(0) end
      end)
      watch = tm
      tm:start(0)
    end
  end
  local function stop_reading()
    if watch then watch:close() watch = nil end
  end

  luasip.on_signal("INT", function()
    if evaluating then
      task.interrupt() -- a blocking verb at the prompt raises INTERRUPTED
      core.stop()      -- and luasip.run() typed at the prompt returns
    else
      buffer = nil
      if tty then rl.cancel_line() end
    end
  end)

  local function eval(src)
    local chunk, err = load("return " .. src, "=stdin")
    if not chunk then chunk, err = load(src, "=stdin") end
    if not chunk then
      if err:match("<eof>'?$") then return "more" end
      io.stderr:write(err, "\n")
      return
    end
    evaluating = true
    core.clear_stop()
    local r = pack(xpcall(chunk, function(e)
      if e == task.INTERRUPTED then return e end
      return require("luasip.cli").traceback(e, 3)
    end))
    evaluating = false
    if r[1] then
      if r.n > 1 then
        local parts = {}
        for i = 2, r.n do parts[#parts + 1] = M.repr(r[i]) end
        io.stdout:write(table.concat(parts, "\t"), "\n")
      end
    elseif r[2] == task.INTERRUPTED then
      io.stdout:write("interrupted\n")
    else
      io.stderr:write(tostring(r[2]), "\n")
    end
    io.stdout:flush()
    io.stderr:flush()
  end

  if tty then
    io.stdout:write("luasip ", luasip.version, " (", jit and jit.version or _VERSION,
      ") — Ctrl-D exits, Tab completes\n")
  end
  start_reading(PROMPT)
  while not (eof and not pending) and not (luasip.shutting_down() and core.stopped()) do
    if not pending then core.step(-1) end
    if pending then
      local line = pending
      pending = nil
      stop_reading()
      if tty and line:match("%S") then rl.add_history(line) end
      local src = buffer and (buffer .. "\n" .. line) or line
      buffer = nil
      if eval(src) == "more" then buffer = src end
      if luasip.shutting_down() and core.stopped() then break end
      core.clear_stop()
      if not tty then next_piped() end
      if not pending and not eof then start_reading(buffer and MORE or PROMPT) end
    end
  end
  stop_reading()
  if tty then
    rl.remove()
    if eof then io.stdout:write("\n") end
    if history then rl.write_history(history) end
  end
  luasip.on_signal("INT", nil)
  _G.print = saved_print
  log.set_sink(saved_sink)
end

return M
