--- luasip: SIP applications as short Lua scripts on one C event loop.
--
-- This module is the entry point: the loop (run/step/stop), time, timers,
-- tasks and blocking verbs, fd watches, embedding, signals and shutdown,
-- logging and tracing, and the SIP server. See README.md for the reference.
--
-- Misuse (wrong argument types) raises a one-line error; a runtime failure
-- returns `nil, message, code`, where code is an errno name (`EADDRINUSE`)
-- or, for SIP, a status code.
-- @module luasip
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"

local luasip = {
  --- The version of luasip (a string).
  version = core.version,
  --- The logger: luasip.log (levels, sink, luasip.log.info(fmt, ...) ...).
  log = log,
  --- Raised by waits that were cut short: Ctrl-C at the REPL, or the loop
  -- stopping (shutdown) under a top-level wait (task.INTERRUPTED).
  INTERRUPTED = task.INTERRUPTED,
  --- Raised inside a task's pending wait when the task is cancelled
  -- (task.CANCELLED).
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

-- ------------------------------------------------------------------------
-- The loop

local shutdown_state = nil -- nil, "running" (hooks in progress), "done"

--- Run the loop until luasip.stop() (or a clean shutdown on SIGINT/SIGTERM).
--
-- Returns at once after a shutdown has finished, and in a script being
-- hot-reloaded (see luasip.reload).
-- @raise `luasip.run() cannot be called from a task: tasks already run on the loop`, or `luasip.run() cannot be called from a callback: use luasip.spawn and a blocking verb`.
function luasip.run()
  if package.loaded["luasip.reload"] and package.loaded["luasip.reload"].staging() then return end
  in_task_or_callback("luasip.run()")
  if shutdown_state == "done" then return end
  core.run()
end

--- Run one loop iteration.
--
-- Wait up to timeout_ms (default 0; -1 waits for the next event) and
-- dispatch. Returns ms until the next timer, or nil.
-- @tparam[opt=0] number timeout_ms milliseconds to wait for an event; -1 waits for the next one
-- @treturn ?integer milliseconds until the next timer, or nil when no timer is armed
-- @raise `luasip.step: timeout_ms must be a number`, `luasip.step() cannot be called from a task: tasks already run on the loop`, or `luasip.step() cannot be called from a callback: use luasip.spawn and a blocking verb`.
function luasip.step(timeout_ms)
  in_task_or_callback("luasip.step()")
  if timeout_ms ~= nil and type(timeout_ms) ~= "number" then
    error("luasip.step: timeout_ms must be a number", 2)
  end
  return core.step(timeout_ms or 0)
end

--- Make luasip.run() return, and a top-level wait raise luasip.INTERRUPTED.
-- @function stop
luasip.stop = core.stop

--- Monotonic seconds (for measuring intervals).
-- @function now
-- @treturn number seconds on a monotonic clock
luasip.now = core.now
--- Wall-clock seconds since the epoch.
-- @function time
-- @treturn number seconds since the epoch, with a fractional part
luasip.time = core.time

-- ------------------------------------------------------------------------
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

--- A stopped timer.
--
-- Its methods: t:start(delay [, repeat]), t:stop(), t:close(), t:armed().
-- fn(timer) runs on expiry. Created inside a task, it is closed when the
-- task is cancelled.
-- @tparam function fn called as fn(timer) on each expiry
-- @treturn luasip.timer the timer, not armed: t:start(delay [, repeat]) arms it (seconds from 0 to 1e9; repeat, the period, at least 0.001) and returns it
-- @raise `luasip.timer: argument #1 must be a function`.
function luasip.timer(fn)
  check_fn(fn, "luasip.timer", 1)
  return task.own(core.timer(fn))
end

--- Run fn(timer) once after `seconds`.
--
-- Returns the timer (t:stop() cancels).
-- @tparam number seconds the delay, from 0 to 1e9
-- @tparam function fn called as fn(timer)
-- @treturn luasip.timer the armed timer
-- @raise `luasip.after: argument #1 must be a number of seconds from 0 to 1e9`, or `luasip.after: argument #2 must be a function`.
function luasip.after(seconds, fn)
  check_seconds(seconds, "luasip.after", 1)
  check_fn(fn, "luasip.after", 2)
  return task.own(core.timer(fn)):start(seconds)
end

--- Run fn(timer) every `seconds` (first after `seconds`), until stopped.
-- @tparam number seconds the period, from 0.001 to 1e9
-- @tparam function fn called as fn(timer) on each expiry
-- @treturn luasip.timer the armed timer (t:stop() or t:close() ends it)
-- @raise `luasip.every: argument #1 must be a number of seconds from 0 to 1e9`, `luasip.every: argument #2 must be a function`, or `luasip.every: interval must be at least 0.001 s`.
function luasip.every(seconds, fn)
  check_seconds(seconds, "luasip.every", 1)
  check_fn(fn, "luasip.every", 2)
  if seconds < 0.001 then error("luasip.every: interval must be at least 0.001 s", 2) end
  return task.own(core.timer(fn)):start(seconds, seconds)
end

-- ------------------------------------------------------------------------
-- Tasks and blocking verbs

--- Run fn(...) in a new task, starting now (luasip.task.spawn).
--
-- The task runs until its first wait before spawn returns. An error in it
-- is logged with its traceback.
-- @function spawn
-- @tparam function fn the task's body
-- @param ... arguments for fn
-- @treturn luasip.task.Task the task: task:status(), task:join([timeout]), task:cancel(), task:when_done(fn)
-- @raise `luasip.spawn: expected a function, got TYPE`.
luasip.spawn = task.spawn
--- The media engine: the luasip.media module.
luasip.media = require "luasip.media"
--- The conference room called name (made when first used).
--
-- room:join(call), room:leave(call), room:list(), room:count(),
-- room:close(); see luasip.conference.
-- @function conference
-- @tparam string name the room's name
-- @treturn table the room
-- @raise `luasip.conference: name must be a string`.
luasip.conference = require("luasip.conference").conference
--- Sleep for `seconds` (a blocking verb).
--
-- Inside a task it yields; at top level it drives the loop until done.
-- @function sleep
-- @tparam number seconds from 0 to 1e9
-- @treturn boolean true
-- @raise `luasip.sleep: seconds must be a number from 0 to 1e9`, or, from a plain callback, `luasip.sleep blocks, and cannot be called from a callback: run the code in luasip.spawn(function() ... end)`; luasip.CANCELLED when the task is cancelled, luasip.INTERRUPTED when a top-level wait is interrupted.
luasip.sleep = task.sleep
--- The dual-mode wait every blocking verb is built on (luasip.task.wait).
--
-- `start(done)` begins the operation and returns a `release(reason)`
-- function (or nil), called exactly once when the wait ends: reason is nil
-- when `done(...)` completed it, or "timeout", "cancelled" or
-- "interrupted". Inside a task the wait yields; at top level it drives the
-- loop until done; from a plain callback it raises.
-- @function wait
-- @tparam function start called as start(done); returns release or nil
-- @tparam[opt] number timeout seconds from 0 to 1e9 (nil: no timeout)
-- @tparam[opt="wait"] string what the verb's name, for error messages
-- @return[1] the values done(...) was called with
-- @return[2] nil, "timeout"
-- @raise `WHAT: timeout must be a number of seconds from 0 to 1e9`, or, from a plain callback, `WHAT blocks, and cannot be called from a callback: run the code in luasip.spawn(function() ... end)`; an error raised by start; luasip.CANCELLED when the task is cancelled, luasip.INTERRUPTED when a top-level wait is interrupted.
luasip.wait = task.wait
--- The running task, or nil outside tasks.
-- @function current_task
-- @treturn ?luasip.task.Task the running task, or nil
luasip.current_task = task.current

--- Give other tasks and callbacks a turn (inside a task).
-- @treturn boolean true
function luasip.yield()
  return task.sleep(0)
end

-- ------------------------------------------------------------------------
-- File descriptors

--- Watch fd for readiness.
--
-- Watch fd (integer, Lua file, or object with :getfd()) for "r", "w" or
-- "rw"; fn(watch, events) runs while it is ready, until watch:close().
-- Created inside a task, the watch is closed when the task is cancelled.
-- @tparam integer|file|table fd a descriptor, a Lua file, or an object with :getfd() (LuaSocket)
-- @tparam string events "r", "w" or "rw"
-- @tparam function fn called as fn(watch, events) while fd is ready; events is "r", "w" or "rw"
-- @treturn[1] luasip.watch the watch: watch:modify(events), watch:getfd(), watch:close()
-- @return[2] nil, message, code (an errno name; a regular file gives "EPERM")
-- @raise `luasip.watch: argument #3 must be a function`, or an argument error for a bad fd or events.
function luasip.watch(fd, events, fn)
  check_fn(fn, "luasip.watch", 3)
  local w, err, code = core.watch(fd, events, fn)
  if not w then return nil, err, code end
  return task.own(w)
end

--- Wait (a blocking verb) until fd is ready for `events`.
--
-- Returns the ready events ("r", "w", "rw"), or nil, "timeout".
-- @tparam integer|file|table fd a descriptor, a Lua file, or an object with :getfd()
-- @tparam string events "r", "w" or "rw"
-- @tparam[opt] number timeout seconds from 0 to 1e9 (nil: no timeout)
-- @treturn[1] string the ready events: "r", "w" or "rw"
-- @return[2] nil, "timeout"
-- @raise `luasip.poll: MESSAGE` when fd cannot be watched, `luasip.poll: timeout must be a number of seconds from 0 to 1e9`, or, from a plain callback, `luasip.poll blocks, and cannot be called from a callback: ...`; an argument error for a bad fd or events.
function luasip.poll(fd, events, timeout)
  return task.wait(function(done)
    local w, err = core.watch(fd, events, function(_, ev) done(ev) end)
    if not w then error("luasip.poll: " .. tostring(err), 0) end
    return function() w:close() end
  end, timeout, "luasip.poll")
end

-- ------------------------------------------------------------------------
-- Embedding in another loop (luv, cqueues): poll luasip.pollfd() for
-- readability with luasip.timeout(), then call luasip.step(0). The module
-- also has the cqueues polling protocol: pollfd(), events(), timeout().

--- The loop's pollable descriptor, for embedding in another loop.
--
-- Poll it for readability for at most the timeout (nil: no timer), then
-- call luasip.step(0).
-- @function pollfd
-- @treturn[1] integer the descriptor to poll for readability
-- @treturn[1] ?number seconds until the next timer, or nil when none
-- @return[2] nil, message, "ENOTSUP" (the sofia port in use has no pollable fd)
luasip.pollfd = core.pollfd
--- Seconds until the next timer, for embedding in another loop.
-- @function timeout
-- @treturn ?number seconds until the next timer, or nil when none
luasip.timeout = core.timeout
--- The events to poll luasip.pollfd() for (cqueues' polling protocol).
-- @treturn string "r"
function luasip.events() return "r" end

-- ------------------------------------------------------------------------
-- Events, signals and shutdown

local hooks = { shutdown = {}, hup = {} }

--- Subscribe fn to an event.
--
-- Subscribe fn to "shutdown" (fn(reason), run in a task before the loop
-- stops; un-REGISTER and BYE hook in here) or "hup" (fn(), on SIGHUP).
-- Returns a handle with :remove().
-- @tparam string event "shutdown" or "hup"
-- @tparam function fn called as fn(reason) for "shutdown", fn() for "hup"
-- @treturn table a handle: handle:remove() unsubscribes fn
-- @raise `luasip.on: unknown event EVENT (shutdown, hup)`, or `luasip.on: argument #2 must be a function`.
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

--- Seconds the shutdown hooks get before the loop stops regardless (default 5).
luasip.shutdown_grace = 5

--- Stop cleanly.
--
-- Run every shutdown hook in its own task, then stop the loop when all
-- have finished or after luasip.shutdown_grace seconds. Only the first
-- call does anything.
-- @tparam[opt="shutdown"] string reason given to the hooks: "SIGINT" and "SIGTERM" from signals, "exit" from the luasip command
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
-- @treturn boolean whether luasip.shutdown has been called
function luasip.shutting_down() return shutdown_state ~= nil end

local signal_handlers = {}

--- Route a signal to fn instead of the default.
--
-- Route a signal ("INT", "TERM", "HUP") to fn(name) instead of the
-- default (INT/TERM: luasip.shutdown; HUP: the "hup" hooks). nil restores.
-- @tparam string name "INT", "TERM" or "HUP"
-- @tparam ?function fn called as fn(name) on the signal; nil restores the default
-- @raise `luasip.on_signal: signal must be INT, TERM or HUP`, or `luasip.on_signal: argument #2 must be a function`.
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
-- them back to the process (false).
-- @tparam[opt=true] boolean on false gives the signals back to the process
-- @treturn[1] boolean true
-- @return[2] nil, message, code (an errno name) when the handlers cannot be installed
function luasip.signals(on)
  return core.signals(on ~= false)
end

core.set_handlers {
  error = function(msg) log.error("%s", msg) end,
  signal = on_signal,
  log = on_sofia_output,
}
luasip.signals(true)

-- ------------------------------------------------------------------------
-- Tracing, statistics, SIP server

--- Print every SIP message sent or received (true/false); returns the state.
--
-- The messages are logged at level "sip", which always passes the level
-- filter.
-- @tparam[opt] boolean on true to trace, false to stop; nil only reads the state
-- @treturn boolean whether tracing is on
function luasip.trace(on)
  if on == nil then return core.trace() end
  return core.trace(on and true or false)
end

--- Live object counts: `timers`, `armed_timers`, `watches`, `agents`, `tasks`.
--
-- Also `uas`, `stores`, `requests` (server requests and proxy branches in
-- progress), `media_sessions`, `conferences`, `sip_handles`,
-- `sip_orphans`, `handles`, `closing_uas` and `fds`.
-- @treturn table the counts, by name
function luasip.stats()
  local c = core.counts()
  c.tasks = task.count()
  return c
end

--- A SIP user agent; see luasip.ua.
--
-- A blocking verb: it waits for the SIP stack to start.
-- @tparam table opts the UA's options (listen, aor, credentials, ...; see luasip.ua)
-- @treturn[1] table the user agent
-- @return[2] nil, message, code
-- @raise `luasip.ua: expected a table of options`, or another misuse of the options.
function luasip.ua(opts)
  return require("luasip.ua").new(opts)
end

--- A SIP server; see luasip.server.
--
-- Under hot reload (luasip --reload), a listen address already served
-- gives that server back.
-- @tparam table opts the server's options (listen, transports, domain, auth, ...; see luasip.server)
-- @treturn[1] table the server
-- @return[2] nil, message, code (an errno name such as "EADDRINUSE")
-- @raise `luasip.server: expected a table of options`, `luasip.server: unknown option 'NAME'`, or another misuse of the options.
function luasip.server(opts)
  return require("luasip.reload").server(opts, require("luasip.server").new)
end

--- A location service (registrar bindings): "memory:" or "sqlite:/path/file.db";
-- see luasip.location.
--
-- Under hot reload, a URL already open gives that store back.
-- @tparam[opt="memory:"] string url "memory:" or "sqlite:/path/file.db"
-- @tparam[opt] table opts options:
-- @tparam[opt=1] number opts.expire_interval seconds between sweeps of expired bindings
-- @tparam[opt=10] number opts.timeout seconds a change waits to be durable
-- @tparam[opt=5] number opts.busy_timeout sqlite: seconds to wait for another process's lock
-- @treturn[1] luasip.location.Location the store
-- @return[2] nil, message, code
-- @raise `luasip.location: MESSAGE` for a bad URL or option.
function luasip.location(url, opts)
  return require("luasip.reload").location(url, opts, require("luasip.location").open)
end

--- A REGISTER handler (RFC 3261 §10.3); see luasip.registrar.
-- @tparam table opts the registrar's options (location, auth, min_expires, ...; see luasip.registrar)
-- @treturn table the handler, for server:on("REGISTER", reg)
-- @raise `luasip.registrar: expected a table of options`, `luasip.registrar: unknown option 'NAME'`, or another misuse of the options.
function luasip.registrar(opts)
  return require("luasip.registrar").new(opts)
end

--- A voicemail system on calls of a luasip.ua; see luasip.voicemail.
-- @tparam table opts the voicemail's options (dir, mailboxes, ...; see luasip.voicemail)
-- @treturn[1] table the voicemail system
-- @return[2] nil, message, code
-- @raise `luasip.voicemail: expected a table of options`, `luasip.voicemail: unknown option 'NAME'`, or another misuse of the options.
function luasip.voicemail(opts)
  return require("luasip.voicemail").new(opts)
end

--- A presence server and MESSAGE relay (SIMPLE) on a luasip.server; see
-- luasip.presence_server.
--
-- Under hot reload, the server's presence server is reused: its state
-- stays and its handlers are installed again.
-- @tparam table opts options: `server` (required), `location`, `auth`, `authorize`, `store`, `unknown`, `min_expires`, `max_expires`, `default_expires`, `handlers`, `relay_message` (see luasip.presence_server)
-- @treturn[1] luasip.presence_server.Presence the presence server
-- @return[2] nil, message, code (its store could not be opened)
-- @raise `luasip.presence_server: MESSAGE` for misused options.

function luasip.presence_server(opts)
  return require("luasip.reload").presence_server(opts, require("luasip.presence_server").new)
end

--- The canonical AOR (sip:user@host) of a URI table such as req.uri.
-- @tparam table uri a parsed URI (user, host), such as req.uri or req.from.uri
-- @treturn ?string "sip:user@host" (user unescaped, host in lower case), "sip:host" for a URI without user, or nil for one without host
function luasip.registrar_aor(uri)
  return require("luasip.registrar").aor(uri)
end

--- Server-side digest authentication: luasip.auth.digest{realm=, lookup=}.
--
-- The luasip.auth module, loaded when first used.
luasip.auth = setmetatable({}, { __index = function(_, k) return require("luasip.auth")[k] end })

--- A per-key (source address) rate limit; see luasip.ratelimit.
-- @tparam table opts options: rate, burst, block (see luasip.ratelimit)
-- @treturn table the limiter: limit:allow(key)
-- @raise `luasip.ratelimit: expected a table of options`, `luasip.ratelimit: unknown option 'NAME'`, or another misuse of the options.
function luasip.ratelimit(opts)
  return require("luasip.ratelimit").new(opts)
end

--- Parse command-line flags; see luasip.flags.
--
-- Unknown flags, missing values and --help print the usage and exit.
-- @tparam table argv the script's `arg`
-- @tparam table spec flag name -> default value (its type is the flag's)
-- @tparam[opt] string about the first line of the usage
-- @treturn table the flags: spec's defaults overridden by argv
function luasip.flags(argv, spec, about)
  return require("luasip.flags").parse(argv, spec, about)
end

return luasip
