-- Tasks and dual-mode waits (DESIGN.md contract 2).
local H = require "helper"
local luasip = require "luasip"
local task = require "luasip.task"

describe("tasks", function()
  H.leakcheck()

  it("start at once and run until their first wait", function()
    local steps = {}
    local t = luasip.spawn(function(a, b)
      steps[#steps + 1] = a + b
      luasip.sleep(0.01)
      steps[#steps + 1] = "woke"
      return "result", 7
    end, 1, 2)
    assert.are.same({ 3 }, steps)
    assert.are.equal("waiting", t:status())
    H.run(function() assert.are.same({ true, "result", 7 }, { t:join(1) }) end)
    assert.are.same({ 3, "woke" }, steps)
    assert.are.equal("done", t:status())
  end)

  it("wake 10,000 sleepers in deadline order", function()
    local n = 10000
    local woke = {}
    math.randomseed(4475)
    local t0 = luasip.now()
    -- Each sleeper's timer is armed somewhere between reading the clock
    -- before luasip.sleep (`from`) and spawn returning (`armed`): spawn runs
    -- the task up to its first wait. The process can be descheduled in
    -- between (it was, for 9 ms, under ASan on two busy cores), so a
    -- sleeper's true deadline is only known to lie in [from + d, armed + d].
    -- Out of order means a sleeper woke after one whose deadline was
    -- certainly later than its own.
    collectgarbage("stop")
    for i = 1, n do
      local d = math.random(0, 400) / 1000
      local s = { i = i, d = d }
      luasip.spawn(function()
        s.from = luasip.now()
        luasip.sleep(d)
        s.at = luasip.now()
        woke[#woke + 1] = s
      end)
      s.armed = luasip.now()
    end
    collectgarbage("restart")
    assert.are.equal(n, luasip.stats().tasks)
    H.run(function()
      while #woke < n do luasip.sleep(0.05) end
    end, 20)
    assert.are.equal(n, #woke)
    local latest_earliest, by = -math.huge, nil  -- the latest certain deadline so far
    for k = 1, n do
      local w = woke[k]
      -- 1 ms of slack: sofia's timer clock is not quite luasip.now()
      if w.armed + w.d < latest_earliest - 0.001 then
        error(string.format("sleeper %d (due by %.4f) woke after sleeper %d (due at %.4f or later)",
          w.i, w.armed + w.d - t0, by.i, latest_earliest - t0))
      end
      if w.from + w.d > latest_earliest then latest_earliest, by = w.from + w.d, w end
      assert(w.at >= w.from + w.d - 0.001, "a sleeper woke early")
    end
    assert.are.equal(0, luasip.stats().tasks)
  end)

  it("let go of a finished task's function, arguments and results (pooled workers keep none)", function()
    local weak = setmetatable({}, { __mode = "k" })
    local function track(v) weak[v] = true return v end
    for n = 0, 5 do                      -- every argument count the pool passes
      local args = {}
      for i = 1, n do args[i] = track({}) end
      local fn = track(function(...)
        assert(select("#", ...) == n)
        return track({})
      end)
      local t = luasip.spawn(fn, (table.unpack or unpack)(args, 1, n))
      assert.are.equal("done", t:status())
    end
    local records = H.capture_log(function()
      local t = luasip.spawn(function() error(track({}), 0) end)
      assert.are.equal("failed", t:status())
    end)
    assert.are.equal(1, #records)
    -- LuaJIT: a trace compiled while these ran (the pool's loop is hot
    -- after the other specs) holds the closure it was specialised on as a
    -- constant; that is the JIT's cache, not a reference of ours
    if jit then jit.flush() end
    collectgarbage("collect")
    collectgarbage("collect")
    local left = 0
    for _ in pairs(weak) do left = left + 1 end
    -- the tasks were not kept, so their results went with them
    assert.are.equal(0, left)
  end)

  it("log a failing task with its traceback and keep the loop running", function()
    local records = H.capture_log(function()
      local t = luasip.spawn(function()
        luasip.sleep(0.01)
        error("task exploded")
      end)
      H.run(function() assert.are.same({ nil }, { (t:join(1)) }) end)
      assert.are.equal("failed", t:status())
      assert.matches("task exploded", t.error)
    end)
    assert.are.equal("error", records[1].level)
    assert.matches("task exploded", records[1].message)
    assert.matches("stack traceback", records[1].message)
    local ok = false
    H.run(function() luasip.sleep(0.001) ok = true end)
    assert.is_true(ok)
  end)

  it("cancel: the pending wait is released, its timers closed, CANCELLED raised", function()
    local reached, caught, timer_fired = false, nil, false
    local t = luasip.spawn(function()
      luasip.after(0.02, function() timer_fired = true end)
      local ok, err = pcall(luasip.sleep, 10)
      caught = err
      luasip.sleep(1) -- a cancelled task cannot wait again
      reached = true
    end)
    assert.is_true(t:cancel())
    assert.are.equal(task.CANCELLED, caught)
    assert.are.equal("cancelled", t:status())
    assert.is_false(t:cancel())
    H.spin(0.04)
    assert.is_false(reached)
    assert.is_false(timer_fired)
    assert.are.same({ nil, "cancelled" }, { t:join() })
  end)

  it("cancel stops a task that yields bare, outside any wait (regression)", function()
    local turns = 0
    local t = luasip.spawn(function()
      while true do turns = turns + 1 coroutine.yield() end
    end)
    H.spin(0.01)
    assert.is_true(turns >= 1)
    assert.is_true(t:cancel())
    local at_cancel = turns
    H.spin(0.02)
    assert.are.equal(at_cancel, turns)
    assert.are.equal("cancelled", t:status())
  end)

  it("bare coroutine.yield() gives the loop a turn", function()
    local order = {}
    H.run(function()
      luasip.spawn(function()
        order[#order + 1] = "a1"
        coroutine.yield()
        order[#order + 1] = "a2"
      end)
      order[#order + 1] = "main"
      luasip.yield()
      luasip.yield()
    end)
    assert.are.same({ "a1", "main", "a2" }, order)
  end)

  it("reject non-functions", function()
    assert.has_error(function() luasip.spawn(42) end, "luasip.spawn: expected a function, got number")
  end)
end)

describe("dual-mode waits", function()
  H.leakcheck()

  it("drive the loop at top level", function()
    local fired = false
    luasip.after(0.01, function() fired = true end)
    local t0 = luasip.now()
    assert.is_true(luasip.sleep(0.03))
    assert.is_true(fired)
    assert.is_true(luasip.now() - t0 >= 0.029)
  end)

  it("yield inside tasks, so tasks interleave", function()
    local log = {}
    local a = luasip.spawn(function()
      for i = 1, 3 do log[#log + 1] = "a" .. i luasip.sleep(0.01) end
    end)
    local b = luasip.spawn(function()
      luasip.sleep(0.005)
      for i = 1, 3 do log[#log + 1] = "b" .. i luasip.sleep(0.01) end
    end)
    H.run(function() a:join(1) b:join(1) end)
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("raise a clear error in a plain callback", function()
    local err
    luasip.after(0, function()
      local ok, e = pcall(luasip.sleep, 1)
      err = e
    end)
    H.spin(0.02)
    assert.matches("luasip.sleep blocks, and cannot be called from a callback: run the code in luasip.spawn", err)
  end)

  it("time out with nil, \"timeout\" at top level and in tasks", function()
    local function never(done) return function() end end
    local t0 = luasip.now()
    assert.are.same({ nil, "timeout" }, { luasip.wait(never, 0.02) })
    assert.is_true(luasip.now() - t0 >= 0.019)
    H.run(function()
      local t1 = luasip.now()
      assert.are.same({ nil, "timeout" }, { luasip.wait(never, 0.02) })
      assert.is_true(luasip.now() - t1 >= 0.019)
    end)
  end)

  it("release their operation exactly once, with the reason", function()
    local reasons = {}
    local function op(delay)
      return function(done)
        local tm = luasip.after(delay, function() done("value") end)
        return function(reason)
          reasons[#reasons + 1] = reason or "done"
          tm:close()
        end
      end
    end
    assert.are.equal("value", luasip.wait(op(0.01), 1))
    assert.are.same({ nil, "timeout" }, { luasip.wait(op(1), 0.01) })
    H.run(function()
      assert.are.equal("value", luasip.wait(op(0.01), 1))
      assert.are.same({ nil, "timeout" }, { luasip.wait(op(1), 0.01) })
      local t = luasip.spawn(function() luasip.wait(op(1), 5) end)
      t:cancel()
    end)
    assert.are.same({ "done", "timeout", "done", "timeout", "cancelled" }, reasons)
  end)

  it("complete immediately when the operation finishes synchronously", function()
    local function now(done) done(1, nil, 3) end
    assert.are.same({ 1, nil, 3 }, { luasip.wait(now) })
    H.run(function() assert.are.same({ 1, nil, 3 }, { luasip.wait(now, 1) }) end)
  end)

  it("stop() interrupts a top-level wait with luasip.INTERRUPTED", function()
    luasip.after(0.01, function() luasip.stop() end)
    local ok, err = pcall(luasip.sleep, 5)
    assert.is_false(ok)
    assert.are.equal(luasip.INTERRUPTED, err)
    require("luasip.core").clear_stop()
  end)

  it("reject bad timeouts", function()
    assert.has_error(function() luasip.wait(function() end, -1) end,
      "wait: timeout must be a number of seconds from 0 to 1e9")
    assert.has_error(function() luasip.sleep("1") end, "luasip.sleep: seconds must be a number from 0 to 1e9")
  end)
end)
