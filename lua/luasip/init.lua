--- luasip: SIP applications as short Lua scripts on one C event loop.
--
-- This module is the entry point: the loop (run/step/stop), time, timers,
-- tasks and blocking verbs, fd watches, embedding, signals and shutdown,
-- logging and tracing, and the SIP server. See README.md for the reference.
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"

local luasip = {
  version = core.version,
  log = log,
  INTERRUPTED = task.INTERRUPTED,
  CANCELLED = task.CANCELLED,
}

-- Errors in callbacks and tasks are logged with their traceback; sofia's
-- own log lines go to debug, SIP traces to the "sip" level.
task.set_error_reporter(function(msg) log.error("%s", msg) end)

local function on_sofia_output(level, source, text)
  if level == "trace" then
    log.sip("%s", text)
  elseif log.enabled("debug") then
    log.debug("sofia/%s: %s", source, text)
  end
end

local function in_task_or_callback(what)
  if task.current() then
    error(what .. " cannot be called from a task: tasks already run on the loop", 3)
  end
end

---------------------------------------------------------------------------
-- The loop

local shutdown_state = nil -- nil, "running" (hooks in progress), "done"

--- Run the loop until luasip.stop() (or a clean shutdown on SIGINT/SIGTERM).
function luasip.run()
  if package.loaded["luasip.reload"] and package.loaded["luasip.reload"].staging() then return end
  in_task_or_callback("luasip.run()")
  if shutdown_state == "done" then return end
  core.run()
end

--- Run one loop iteration: wait up to timeout_ms (default 0; -1 waits for
--- the next event) and dispatch. Returns ms until the next timer, or nil.
function luasip.step(timeout_ms)
  in_task_or_callback("luasip.step()")
  if timeout_ms ~= nil and type(timeout_ms) ~= "number" then
    error("luasip.step: timeout_ms must be a number", 2)
  end
  return core.step(timeout_ms or 0)
end

--- Make luasip.run() return, and a top-level wait raise luasip.INTERRUPTED.
luasip.stop = core.stop

--- Monotonic seconds (for measuring intervals).
luasip.now = core.now
--- Wall-clock seconds since the epoch.
luasip.time = core.time

---------------------------------------------------------------------------
-- Timers

local function check_seconds(v, what, argn)
  if type(v) ~= "number" or not (v >= 0 and v <= 1e9) then
    error(what .. ": argument #" .. argn .. " must be a number of seconds from 0 to 1e9", 3)
  end
end

local function check_fn(v, what, argn)
  if type(v) ~= "function" then
    error(what .. ": argument #" .. argn .. " must be a function", 3)
  end
end

--- A stopped timer: t:start(delay [, repeat]), t:stop(), t:close(), t:armed().
--- fn(timer) runs on expiry. Created inside a task, it is closed when the
--- task is cancelled.
function luasip.timer(fn)
  check_fn(fn, "luasip.timer", 1)
  return task.own(core.timer(fn))
end

--- Run fn(timer) once after `seconds`. Returns the timer (t:stop() cancels).
function luasip.after(seconds, fn)
  check_seconds(seconds, "luasip.after", 1)
  check_fn(fn, "luasip.after", 2)
  return task.own(core.timer(fn)):start(seconds)
end

--- Run fn(timer) every `seconds` (first after `seconds`), until stopped.
function luasip.every(seconds, fn)
  check_seconds(seconds, "luasip.every", 1)
  check_fn(fn, "luasip.every", 2)
  if seconds < 0.001 then error("luasip.every: interval must be at least 0.001 s", 2) end
  return task.own(core.timer(fn)):start(seconds, seconds)
end

---------------------------------------------------------------------------
-- Tasks and blocking verbs

luasip.spawn = task.spawn
luasip.media = require "luasip.media"
luasip.conference = require("luasip.conference").conference
luasip.sleep = task.sleep
luasip.wait = task.wait
luasip.current_task = task.current

--- Give other tasks and callbacks a turn (inside a task).
function luasip.yield()
  return task.sleep(0)
end

---------------------------------------------------------------------------
-- File descriptors

--- Watch fd (integer, Lua file, or object with :getfd()) for "r", "w" or
--- "rw"; fn(watch, events) runs while it is ready, until watch:close().
function luasip.watch(fd, events, fn)
  check_fn(fn, "luasip.watch", 3)
  local w, err, code = core.watch(fd, events, fn)
  if not w then return nil, err, code end
  return task.own(w)
end

--- Wait (a blocking verb) until fd is ready for `events`. Returns the
--- ready events ("r", "w", "rw"), or nil, "timeout".
function luasip.poll(fd, events, timeout)
  return task.wait(function(done)
    local w, err = core.watch(fd, events, function(_, ev) done(ev) end)
    if not w then error("luasip.poll: " .. tostring(err), 0) end
    return function() w:close() end
  end, timeout, "luasip.poll")
end

---------------------------------------------------------------------------
-- Embedding in another loop (luv, cqueues): poll luasip.pollfd() for
-- readability with luasip.timeout(), then call luasip.step(0). The module
-- also has the cqueues polling protocol: pollfd(), events(), timeout().

luasip.pollfd = core.pollfd
luasip.timeout = core.timeout
function luasip.events() return "r" end

---------------------------------------------------------------------------
-- Events, signals and shutdown

local hooks = { shutdown = {}, hup = {} }

--- Subscribe fn to "shutdown" (fn(reason), run in a task before the loop
--- stops; un-REGISTER and BYE hook in here) or "hup" (fn(), on SIGHUP).
--- Returns a handle with :remove().
function luasip.on(event, fn)
  local list = hooks[event]
  if not list then
    error("luasip.on: unknown event " .. tostring(event) .. " (shutdown, hup)", 2)
  end
  check_fn(fn, "luasip.on", 2)
  local entry = { fn = fn }
  if package.loaded["luasip.reload"] and package.loaded["luasip.reload"].staging() then
    -- a reloaded script: its first run's hooks stay, over the same objects
    return { remove = function() end }
  end
  list[#list + 1] = entry
  return {
    remove = function()
      for i = #list, 1, -1 do if list[i] == entry then table.remove(list, i) end end
    end,
  }
end

--- Seconds the shutdown hooks get before the loop stops regardless.
luasip.shutdown_grace = 5

--- Stop cleanly: run every shutdown hook in its own task, then stop the
--- loop when all have finished or after luasip.shutdown_grace seconds.
function luasip.shutdown(reason)
  if shutdown_state then return end
  shutdown_state = "running"
  reason = reason or "shutdown"
  if reason:match("^SIG") then
    log.info("shutting down (%s)", reason)
  else
    log.debug("shutting down (%s)", reason)
  end
  local grace = nil
  local function finished()
    if shutdown_state ~= "running" then return end
    shutdown_state = "done"
    if grace then grace:close() end
    core.stop()
  end
  -- Count every hook before starting any: one that ends at once must not
  -- stop the loop under the others.
  local list = {}
  for i, entry in ipairs(hooks.shutdown) do list[i] = entry end
  local pending = #list
  if pending == 0 then return finished() end
  local function one_done()
    pending = pending - 1
    if pending == 0 then finished() end
  end
  for _, entry in ipairs(list) do
    task.spawn(entry.fn, reason):when_done(one_done)
  end
  if shutdown_state ~= "running" then return end
  grace = core.timer(function()
    log.warn("shutdown hooks still running after %g s; stopping anyway", luasip.shutdown_grace)
    finished()
  end)
  grace:start(luasip.shutdown_grace)
end

--- True once a shutdown has started.
function luasip.shutting_down() return shutdown_state ~= nil end

local signal_handlers = {}

--- Route a signal ("INT", "TERM", "HUP") to fn(name) instead of the
--- default (INT/TERM: luasip.shutdown; HUP: the "hup" hooks). nil restores.
function luasip.on_signal(name, fn)
  if name ~= "INT" and name ~= "TERM" and name ~= "HUP" then
    error("luasip.on_signal: signal must be INT, TERM or HUP", 2)
  end
  if fn ~= nil then check_fn(fn, "luasip.on_signal", 2) end
  signal_handlers[name] = fn
end

local function on_signal(name)
  local h = signal_handlers[name]
  if h then return h(name) end
  if name == "HUP" then
    log.info("SIGHUP")
    for _, entry in ipairs(hooks.hup) do task.spawn(entry.fn) end
  else
    luasip.shutdown("SIG" .. name)
  end
end

--- Let luasip handle SIGINT, SIGTERM and SIGHUP (the default), or give
--- them back to the process (false).
function luasip.signals(on)
  return core.signals(on ~= false)
end

core.set_handlers {
  error = function(msg) log.error("%s", msg) end,
  signal = on_signal,
  log = on_sofia_output,
}
luasip.signals(true)

---------------------------------------------------------------------------
-- Tracing, statistics, SIP server

--- Print every SIP message sent or received (true/false); returns the state.
function luasip.trace(on)
  if on == nil then return core.trace() end
  return core.trace(on and true or false)
end

--- Live object counts: timers, armed_timers, watches, agents, tasks.
function luasip.stats()
  local c = core.counts()
  c.tasks = task.count()
  return c
end

--- A SIP user agent; see luasip.ua.
function luasip.ua(opts)
  return require("luasip.ua").new(opts)
end

--- A SIP server; see luasip.server.
function luasip.server(opts)
  return require("luasip.reload").server(opts, require("luasip.server").new)
end

--- A location service (registrar bindings): "memory:" or "sqlite:/path/file.db";
--- see luasip.location.
function luasip.location(url, opts)
  return require("luasip.reload").location(url, opts, require("luasip.location").open)
end

--- A REGISTER handler (RFC 3261 §10.3); see luasip.registrar.
function luasip.registrar(opts)
  return require("luasip.registrar").new(opts)
end

--- A voicemail system on calls of a luasip.ua; see luasip.voicemail.
function luasip.voicemail(opts)
  return require("luasip.voicemail").new(opts)
end

--- A presence server and MESSAGE relay (SIMPLE) on a luasip.server; see
--- luasip.presence_server.

function luasip.presence_server(opts)
  return require("luasip.reload").presence_server(opts, require("luasip.presence_server").new)
end

--- The canonical AOR (sip:user@host) of a URI table such as req.uri.
function luasip.registrar_aor(uri)
  return require("luasip.registrar").aor(uri)
end

--- Server-side digest authentication: luasip.auth.digest{realm=, lookup=}.
luasip.auth = setmetatable({}, { __index = function(_, k) return require("luasip.auth")[k] end })

--- A per-key (source address) rate limit; see luasip.ratelimit.
function luasip.ratelimit(opts)
  return require("luasip.ratelimit").new(opts)
end

--- Parse command-line flags; see luasip.flags.
function luasip.flags(argv, spec, about)
  return require("luasip.flags").parse(argv, spec, about)
end

return luasip
