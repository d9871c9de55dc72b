--- Coroutine tasks and dual-mode waits (DESIGN.md, contract 2).
--
-- Every blocking verb in luasip is built on `task.wait(start, timeout, what)`:
--   * inside a task it yields, and the C completion resumes it;
--   * at top level (script body, REPL prompt) it drives the loop until done;
--   * from a plain callback it raises an error saying to use luasip.spawn.
-- `start(done)` begins the operation and returns a `release(reason)`
-- function, called exactly once when the wait ends: reason is nil when
-- `done(...)` completed it, or "timeout", "cancelled" or "interrupted".
--
-- Scripts reach this module through luasip: luasip.spawn, luasip.sleep,
-- luasip.wait, luasip.current_task, luasip.INTERRUPTED, luasip.CANCELLED.
-- @module luasip.task
local core = require "luasip.core"

local M = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

--- Raised by waits that were cut short: Ctrl-C at the REPL, or the loop
-- stopping (shutdown) under a top-level wait.
M.INTERRUPTED = setmetatable({}, { __tostring = function() return "interrupted" end })
--- Raised inside a task's pending wait when the task is cancelled.
M.CANCELLED = setmetatable({}, { __tostring = function() return "task cancelled" end })

local WAIT = {}      -- what a task yields while it waits
local CANCEL = {}    -- what a cancelled task is resumed with

local by_co = {}  -- coroutine -> task, while the task is unfinished
local nlive = 0
local interrupt_requested = false
local report_error = function(msg) io.stderr:write(msg, "\n") end

local Task = { __name = "luasip.task" }
Task.__index = Task
-- Where the task's function was defined, worked out only when needed.
local function task_name(t)
  local info = debug.getinfo(t.fn, "S")
  return info and (info.short_src .. ":" .. (info.linedefined or "?")) or "?"
end

function Task:__tostring()
  return string.format("luasip.task (%s): %s", self.state, task_name(self))
end

--- The running task, or nil outside tasks.
-- @treturn ?Task the running task, or nil
function M.current()
  local co = coroutine.running()
  return co and by_co[co] or nil
end

--- The number of live tasks (spawned and not yet ended).
-- @treturn integer how many tasks are running or waiting
function M.count() return nlive end

--- Where task errors go (luasip.log installs its error logger).
-- @tparam function fn called as fn(message) with a failed task's error and traceback (the default writes it to stderr)
function M.set_error_reporter(fn) report_error = fn end

local resume

-- Tasks run on pooled worker coroutines: a new coroutine per task costs
-- its creation and, above all, growing its stack again as the task calls
-- deeper (a reallocation per doubling); a server runs a task per request.
-- A worker runs fn(...) under xpcall, yields DONE with the outcome, and
-- waits there for its next job. One that is cancelled in a bare yield is
-- closed, never reused.
local DONE = {}
local POOL_MAX = 128
local pool, npool = {}, 0
local EMPTY = { n = 0 }

-- The message handler: a failure's traceback is taken where it happened
-- (the worker's stack is unwound by the time the task is finished).
local function on_error(e)
  if e ~= M.CANCELLED then
    local t = by_co[coroutine.running()]
    if t and not t.quiet then
      t.traceback = debug.traceback(type(e) == "string" and e or tostring(e), 2)
    end
  end
  return e
end

local IDLE = {}
local idle
-- A job: fn with n arguments, up to three of them in a, b, c, more packed
-- in a (no varargs: LuaJIT keeps a vararg frame's values alive across
-- the tail call below). Its outcome is yielded with DONE; the next resume
-- (at once, by resumed()) lets go of the job and tail-calls idle(), so a
-- pooled worker keeps no reference to its last job's function or
-- arguments (a request would otherwise live until the worker's reuse).
local function work(fn, n, a, b, c)
  if n == 0 then
    coroutine.yield(DONE, xpcall(fn, on_error))
  elseif n == 1 then
    coroutine.yield(DONE, xpcall(fn, on_error, a))
  elseif n == 2 then
    coroutine.yield(DONE, xpcall(fn, on_error, a, b))
  elseif n == 3 then
    coroutine.yield(DONE, xpcall(fn, on_error, a, b, c))
  else
    coroutine.yield(DONE, xpcall(fn, on_error, unpack(a, 1, a.n)))
  end
  fn, a, b, c = nil, nil, nil, nil
  return idle()
end
function idle() return work(coroutine.yield(IDLE)) end

local function finish(t, ok, res)
  by_co[t.co] = nil
  nlive = nlive - 1
  t.results = res
  if ok then
    t.state = "done"
  elseif res[1] == M.CANCELLED then
    t.state = "cancelled"
  else
    t.state = "failed"
    t.error = res[1]
    if not t.quiet then
      local msg = res[1]
      if type(msg) ~= "string" then msg = tostring(msg) end
      report_error("task " .. task_name(t) .. " failed: " .. (t.traceback or debug.traceback(t.co, msg)))
    end
  end
  t.traceback = nil
  local joiners = t.joiners
  t.joiners = nil
  if joiners then
    for i = 1, #joiners do joiners[i]() end
  end
  if t.done_fn then t.done_fn(t) end
end

local function outcome(...)
  if select("#", ...) == 0 then return EMPTY end
  return pack(...)
end

-- What a resume returned: the task ended, waits, or yielded bare.
local function resumed(t, ok, first, ...)
  if ok and first == DONE then
    local co = t.co
    if npool < POOL_MAX and not t.cancelled then
      local parked, state = coroutine.resume(co)   -- into idle()
      if parked and state == IDLE then
        npool = npool + 1
        pool[npool] = co
      end
    end
    return finish(t, (...), outcome(select(2, ...)))
  end
  if coroutine.status(t.co) == "dead" then
    return finish(t, ok, pack(first, ...))
  end
  if first == WAIT then
    t.state = "waiting"
  else
    -- A bare coroutine.yield(): give the loop a turn, then carry on.
    t.state = "waiting"
    local tm
    tm = core.timer(function()
      tm:close()
      t.yield_timer = nil
      resume(t)
    end)
    t.yield_timer = tm
    tm:start(0)
  end
end

-- Resume a suspended task with the given values and record what it did.
function resume(t, ...)
  if coroutine.status(t.co) ~= "suspended" then return end
  t.state = "running"
  return resumed(t, coroutine.resume(t.co, ...))
end

--- Run fn(...) in a new task, starting now.
--
-- Returns the task. It runs until its first wait (or its end) before
-- spawn returns. This is luasip.spawn.
-- @tparam function fn the task's body
-- @param ... arguments for fn
-- @treturn Task the task
-- @raise `luasip.spawn: expected a function, got TYPE`.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    error("luasip.spawn: expected a function, got " .. type(fn), 2)
  end
  local co
  if npool > 0 then
    co = pool[npool]
    pool[npool] = nil
    npool = npool - 1
  else
    co = coroutine.create(work)
  end
  local t = setmetatable({ co = co, fn = fn, state = "running" }, Task)
  by_co[co] = t
  nlive = nlive + 1
  -- a worker waiting for a job is resumed with the job
  local n = select("#", ...)
  if n <= 3 then
    resumed(t, coroutine.resume(co, fn, n, ...))
  else
    resumed(t, coroutine.resume(co, fn, n, pack(...)))
  end
  return t
end

--- A task, made by luasip.spawn (its __name is "luasip.task").
-- @type Task

--- The task's state: "ready", "running", "waiting", "done", "failed" or "cancelled".
-- @treturn string the state
function Task:status() return self.state end

local function finished(t)
  return t.state == "done" or t.state == "failed" or t.state == "cancelled"
end

--- Call fn(task) once the task has ended (at once if it already has).
--
-- A task keeps one such function: a second call before the end replaces
-- the first.
-- @tparam function fn called as fn(task)
-- @return what fn returned, when the task had already ended; else nothing
function Task:when_done(fn)
  if finished(self) then return fn(self) end
  self.done_fn = fn
end

--- Wait for the task to end.
--
-- Returns true, results... when it returned, or nil, error | "cancelled" |
-- "timeout". A blocking verb.
-- @tparam[opt] number timeout seconds from 0 to 1e9 (nil: no timeout)
-- @treturn[1] boolean true, followed by the task's results
-- @return[2] nil, the error the task failed with
-- @return[3] nil, "cancelled"
-- @return[4] nil, "timeout"
-- @raise `task:join: timeout must be a number of seconds from 0 to 1e9`, or, from a plain callback, `task:join blocks, and cannot be called from a callback: run the code in luasip.spawn(function() ... end)`.
function Task:join(timeout)
  if not finished(self) then
    local ok, why = M.wait(function(done)
      self.joiners = self.joiners or {}
      local entry = function() done(true) end
      table.insert(self.joiners, entry)
      return function()
        local j = self.joiners
        if j then
          for i = #j, 1, -1 do if j[i] == entry then table.remove(j, i) end end
        end
      end
    end, timeout, "task:join")
    if not ok then return nil, why end
  end
  if self.state == "done" then return true, unpack(self.results, 1, self.results.n) end
  if self.state == "cancelled" then return nil, "cancelled" end
  return nil, self.error
end

--- Cancel the task.
--
-- Its pending wait is released and raises task.CANCELLED inside it, and
-- timers it created are closed. A task that is not in a wait (it yielded
-- bare, or is cancelling itself) is stopped where it is. Returns true if
-- the task was still running.
-- @treturn boolean true if the task was still running, false if it had already ended
-- @raise task.CANCELLED when a task cancels itself (that ends it).
function Task:cancel()
  if finished(self) then return false end
  self.cancelled = true
  if self.owned then
    for obj in pairs(self.owned) do pcall(obj.close, obj) end
  end
  if self.yield_timer then
    self.yield_timer:close()
    self.yield_timer = nil
  end
  if coroutine.running() == self.co then error(M.CANCELLED, 0) end
  if self.waiting then
    self.waiting.finish("cancelled")
    resume(self, CANCEL) -- unwinds the task through its wait
  end
  if not finished(self) then
    -- Not in a luasip wait: never resume it again.
    if coroutine.close then coroutine.close(self.co) end
    finish(self, false, pack(M.CANCELLED))
  end
  return true
end

--- The end of the Task methods.
-- @section end

--- Tie a closable object (timer, watch) to the running task, if any, so
-- cancelling the task closes it.
--
-- The task holds it weakly.
-- @tparam table|userdata obj an object with a close method
-- @return obj
function M.own(obj)
  local t = M.current()
  if t then
    t.owned = t.owned or setmetatable({}, { __mode = "k" })
    t.owned[obj] = true
  end
  return obj
end

--- Make the top-level wait in progress (if any) raise task.INTERRUPTED.
function M.interrupt() interrupt_requested = true end

local function check_timeout(timeout, what)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0 and timeout <= 1e9)) then
    error(what .. ": timeout must be a number of seconds from 0 to 1e9", 3)
  end
end

-- A waiting task is resumed with (w, results...) or with CANCEL.
local function woken(first, ...)
  if first == CANCEL then error(M.CANCELLED, 0) end
  return ...
end

local function wait_in_task(t, start, timeout)
  if t.cancelled then error(M.CANCELLED, 0) end
  local w = {}
  local starting, sync
  -- Ends the wait once, whatever ends it: completion, timeout, cancel.
  function w.finish(reason)
    if t.waiting ~= w then return false end
    t.waiting = nil
    if w.timer then w.timer:close() end
    if w.release then w.release(reason) end
    return true
  end
  local function done(...)
    if not w.finish(nil) then return end
    if starting then sync = pack(...) return end
    resume(t, w, ...)
  end
  t.waiting = w
  if timeout then
    w.timer = core.timer(function()
      if w.finish("timeout") then resume(t, w, nil, "timeout") end
    end)
    w.timer:start(timeout)
  end
  starting = true
  local ok, release = pcall(start, done)
  starting = false
  if not ok then
    w.finish("cancelled")
    error(release, 0)
  end
  if sync then  -- done() was called before start() returned
    if release then release(nil) end
    return unpack(sync, 1, sync.n)
  end
  w.release = release
  return woken(coroutine.yield(WAIT))
end

local function wait_at_top(start, timeout)
  local results
  local release = start(function(...)
    if not results then results = pack(...) end
  end)
  local deadline = timeout and core.now() + timeout
  local reason
  while not results do
    if core.stopped() then reason = "interrupted" break end
    if interrupt_requested then
      interrupt_requested = false
      reason = "interrupted"
      break
    end
    local ms = -1
    if deadline then
      local left = deadline - core.now()
      if left <= 0 then reason = "timeout" break end
      ms = math.ceil(left * 1000)
    end
    core.step(ms)
  end
  if release then release(reason) end
  if reason == "interrupted" then error(M.INTERRUPTED, 0) end
  if reason == "timeout" then return nil, "timeout" end
  return unpack(results, 1, results.n)
end

--- The dual-mode wait every blocking verb is built on (see the top).
--
-- This is luasip.wait. Inside a task the wait yields; at top level it
-- drives the loop until done; from a plain callback it raises.
-- @tparam function start called as start(done): begins the operation and returns release(reason), or nil
-- @tparam[opt] number timeout seconds from 0 to 1e9 (nil: no timeout)
-- @tparam[opt="wait"] string what the verb's name, for error messages
-- @return[1] the values done(...) was called with
-- @return[2] nil, "timeout"
-- @raise `WHAT: timeout must be a number of seconds from 0 to 1e9`, or, from a plain callback, `WHAT blocks, and cannot be called from a callback: run the code in luasip.spawn(function() ... end)`; an error raised by start; task.CANCELLED in a task being cancelled, task.INTERRUPTED when a top-level wait is interrupted.
function M.wait(start, timeout, what)
  what = what or "wait"
  check_timeout(timeout, what)
  local t = M.current()
  if t then return wait_in_task(t, start, timeout) end
  if core.depth() > 0 then
    error(what .. " blocks, and cannot be called from a callback: " ..
          "run the code in luasip.spawn(function() ... end)", 3)
  end
  interrupt_requested = false
  return wait_at_top(start, timeout)
end

--- Sleep for `seconds` (a blocking verb).
--
-- Returns true. This is luasip.sleep.
-- @tparam number seconds from 0 to 1e9
-- @treturn boolean true
-- @raise `luasip.sleep: seconds must be a number from 0 to 1e9`, or, from a plain callback, `luasip.sleep blocks, and cannot be called from a callback: run the code in luasip.spawn(function() ... end)`; task.CANCELLED in a task being cancelled, task.INTERRUPTED when a top-level wait is interrupted.
function M.sleep(seconds)
  if type(seconds) ~= "number" or not (seconds >= 0 and seconds <= 1e9) then
    error("luasip.sleep: seconds must be a number from 0 to 1e9", 2)
  end
  return M.wait(function(done)
    local tm = core.timer(function() done(true) end)
    tm:start(seconds)
    return function() tm:close() end
  end, nil, "luasip.sleep")
end

return M
