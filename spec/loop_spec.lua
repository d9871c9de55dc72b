-- The loop: run/step/stop, the clocks, timers, fd watches, embedding.
local H = require "helper"
local luasip = require "luasip"
local socket = require "socket"

describe("the loop", function()
  H.leakcheck()

  it("runs until stop() and returns", function()
    local fired = 0
    luasip.after(0.02, function() fired = fired + 1 end)
    luasip.after(0.05, function() luasip.stop() end)
    local t0 = luasip.now()
    luasip.run()
    assert.are.equal(1, fired)
    assert.is_true(luasip.now() - t0 >= 0.045)
  end)

  it("step() waits at most its timeout and reports the next timer", function()
    local t0 = luasip.now()
    assert.is_nil(luasip.step(30)) -- nothing scheduled by us
    local waited = luasip.now() - t0
    assert.is_true(waited >= 0.025 and waited < 1, "waited " .. waited)
    local tm = luasip.after(5, function() end)
    local next_ms = luasip.step(0)
    assert.is_true(next_ms > 4000 and next_ms <= 5000, "next " .. tostring(next_ms))
    tm:close()
  end)

  it("step() returns after firing the last timer instead of sleeping on", function()
    local fired = false
    luasip.after(0.01, function() fired = true end)
    local t0 = luasip.now()
    while not fired do luasip.step(-1) end
    assert.is_true(luasip.now() - t0 < 0.5)
  end)

  it("waits for timers without spinning through the last millisecond (regression)", function()
    -- A 1.5 ms timer is always less than 1 ms away at some point: the
    -- loop used to spin there, taking thousands of steps per tick.
    local ticks, steps = 0, 0
    local t = luasip.every(0.0015, function(tm)
      ticks = ticks + 1
      if ticks == 40 then tm:stop() end
    end)
    while ticks < 40 do
      steps = steps + 1
      luasip.step(-1)
    end
    t:close()
    assert.is_true(steps <= 3 * ticks, steps .. " steps for " .. ticks .. " ticks")
  end)

  it("rejects run() and step() from callbacks and tasks", function()
    local err1, err2
    luasip.after(0, function()
      err1 = select(2, pcall(luasip.run))
      err2 = select(2, pcall(luasip.step, 0))
    end)
    H.spin(0.02)
    assert.matches("cannot be called from a", err1)
    assert.matches("cannot be called from a", err2)
    H.run(function()
      local ok, err = pcall(luasip.run)
      assert.is_false(ok)
      assert.matches("from a task", err)
    end)
  end)

  it("has a monotonic clock and a wall clock", function()
    local a = luasip.now()
    local b = luasip.now()
    assert.is_true(b >= a)
    assert.is_true(math.abs(luasip.time() - os.time()) < 2)
  end)
end)

describe("timers", function()
  H.leakcheck()

  it("fire in deadline order, whatever the order they were armed in", function()
    local order = {}
    for _, d in ipairs { 0.05, 0.01, 0.03, 0.02, 0.04 } do
      luasip.after(d, function() order[#order + 1] = d end)
    end
    H.spin(0.1)
    assert.are.same({ 0.01, 0.02, 0.03, 0.04, 0.05 }, order)
  end)

  it("can be stopped, restarted and closed, also from their own callback", function()
    local count = 0
    local t = luasip.timer(function() count = count + 1 end)
    assert.is_false(t:armed())
    t:start(0.01)
    assert.is_true(t:armed())
    t:stop()
    assert.is_false(t:armed())
    H.spin(0.03)
    assert.are.equal(0, count)
    t:start(0.01)
    t:start(0.02) -- re-arming replaces the deadline
    H.spin(0.05)
    assert.are.equal(1, count)
    t:close()
    t:close() -- idempotent
    assert.has_error(function() t:start(1) end, "luasip.timer: used after close()")
    local self_closed = 0
    luasip.every(0.005, function(tm)
      self_closed = self_closed + 1
      if self_closed == 3 then tm:close() end
    end)
    H.spin(0.05)
    assert.are.equal(3, self_closed)
  end)

  it("repeat without drift", function()
    local ticks = {}
    local t0 = luasip.now()
    local tm = luasip.every(0.01, function(tm)
      ticks[#ticks + 1] = luasip.now() - t0
      if #ticks == 20 then tm:stop() end
    end)
    H.spin(0.4)
    tm:close()
    assert.are.equal(20, #ticks)
    -- The 20th tick is due at 200 ms: late wakeups must not accumulate.
    assert.is_true(ticks[20] >= 0.199 and ticks[20] < 0.25, "20th tick at " .. ticks[20])
  end)

  it("fire even when the program keeps no reference", function()
    local fired = false
    luasip.after(0.01, function() fired = true end)
    collectgarbage("collect")
    H.spin(0.03)
    assert.is_true(fired)
  end)

  it("report errors with a traceback and keep the loop running", function()
    local after = false
    local records = H.capture_log(function()
      luasip.after(0, function() error("boom in a timer") end)
      luasip.after(0.01, function() after = true end)
      H.spin(0.03)
    end)
    assert.is_true(after)
    assert.are.equal("error", records[1].level)
    assert.matches("boom in a timer", records[1].message)
    assert.matches("stack traceback", records[1].message)
  end)

  it("reject bad arguments with one-line errors", function()
    assert.has_error(function() luasip.after(-1, print) end,
      "luasip.after: argument #1 must be a number of seconds from 0 to 1e9")
    assert.has_error(function() luasip.after(1) end, "luasip.after: argument #2 must be a function")
    assert.has_error(function() luasip.every(0, print) end)
    assert.has_error(function() luasip.timer("x") end)
    -- regression: inf and huge delays fired at once (undefined conversion)
    assert.has_error(function() luasip.after(math.huge, print) end)
    assert.has_error(function() luasip.every(math.huge, print) end)
    assert.has_error(function() luasip.sleep(1 / 0) end)
    assert.has_error(function() luasip.sleep(0 / 0) end)
    local t = luasip.timer(print)
    assert.has_error(function() t:start(1e300) end)
    t:close()
    assert.is_nil(luasip.step(math.huge == 0 and 0 or 0)) -- still usable
  end)
end)

describe("fd watches", function()
  H.leakcheck()

  it("call back while readable, with the ready events", function()
    local a = assert(socket.udp())
    assert(a:setsockname("127.0.0.1", 0))
    local _, port = a:getsockname()
    local got = {}
    local w = luasip.watch(a, "r", function(_, ev)
      got[#got + 1] = ev .. ":" .. a:receive()
    end)
    local b = assert(socket.udp())
    b:sendto("one", "127.0.0.1", port)
    b:sendto("two", "127.0.0.1", port)
    H.spin(0.05)
    w:close()
    a:close()
    b:close()
    assert.are.same({ "r:one", "r:two" }, got)
  end)

  it("accept integers, files and getfd() objects, and modify events", function()
    local s = assert(socket.udp())
    assert(s:setsockname("127.0.0.1", 0))
    local writable = 0
    local w = luasip.watch(s:getfd(), "w", function(watch, ev)
      writable = writable + 1
      assert.are.equal("w", ev)
      watch:modify("r") -- nothing to read: no more callbacks
    end)
    H.spin(0.03)
    assert.are.equal(1, writable)
    assert.are.equal(s:getfd(), w:getfd())
    w:close()
    s:close()
    local f = io.popen("echo hello")
    local line
    local fw = assert(luasip.watch(f, "r", function(watch)
      line = f:read("*l")
      watch:close()
    end))
    H.spin(0.2)
    f:close()
    fw:close()
    assert.are.equal("hello", line)
  end)

  it("refuse what epoll cannot watch, such as regular files", function()
    local f = io.open("/dev/null")
    local w, err, code = luasip.watch(f, "r", function() end)
    f:close()
    assert.is_nil(w)
    assert.matches("luasip.watch: ", err)
    assert.are.equal("EPERM", code)
  end)

  it("reject bad descriptors and events", function()
    local w, err, code = luasip.watch(987654, "r", function() end)
    assert.is_nil(w)
    assert.matches("luasip.watch", err)
    assert.are.equal("EBADF", code)
    assert.has_error(function() luasip.watch(0, "x", function() end) end)
    assert.has_error(function() luasip.watch({}, "r", function() end) end)
  end)

  it("poll() waits for readiness as a blocking verb, with a timeout", function()
    H.run(function()
      local s = assert(socket.udp())
      assert(s:setsockname("127.0.0.1", 0))
      local _, port = s:getsockname()
      assert.are.same({ nil, "timeout" }, { luasip.poll(s, "r", 0.02) })
      luasip.after(0.01, function()
        local c = socket.udp()
        c:sendto("x", "127.0.0.1", port)
        c:close()
      end)
      assert.are.equal("r", luasip.poll(s, "r", 1))
      s:close()
    end)
  end)
end)

describe("embedding", function()
  local uv = require "luv"
  uv.run("nowait") -- luv opens its own loop's fds on first use
  H.leakcheck()

  it("exposes a pollable fd and the next timeout", function()
    local fd = assert(luasip.pollfd())
    assert.is_number(fd)
    local tm = luasip.after(2, function() end)
    local t = luasip.timeout()
    assert.is_true(t > 1.9 and t <= 2, "timeout " .. tostring(t))
    local fd2, t2 = luasip.pollfd()
    assert.are.equal(fd, fd2)
    assert.is_true(t2 > 1.9 and t2 <= 2, "pollfd timeout " .. tostring(t2))
    tm:close()
    assert.are.equal("r", luasip.events())
  end)

  it("lets luv drive luasip: SIP and timers run from uv's loop", function()
    local fired, answered = false, nil
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    luasip.after(0.02, function() fired = true end)
    -- luv polls luasip's fd and wakes for its timers; luasip.step(0)
    -- dispatches. No luasip.run() anywhere.
    local poll = uv.new_poll(luasip.pollfd())
    local timer = uv.new_timer()
    local function rearm()
      local t = luasip.timeout()
      timer:stop()
      if t then timer:start(math.ceil(t * 1000), 0, function() luasip.step(0) rearm() end) end
    end
    poll:start("r", function() luasip.step(0) rearm() end)
    rearm()
    local client = uv.new_udp()
    client:bind("127.0.0.1", 0)
    client:recv_start(function(err, data)
      assert(not err, err)
      if data then answered = data end
    end)
    client:send(H.request("OPTIONS", srv.port), "127.0.0.1", srv.port, function() end)
    local guard = uv.new_timer()
    guard:start(2000, 0, function() uv.stop() end)
    local check = uv.new_check()
    check:start(function() if fired and answered then uv.stop() end end)
    uv.run()
    for _, h in ipairs { poll, timer, client, guard, check } do h:close() end
    uv.run("nowait")
    srv:close()
    assert.is_true(fired)
    assert.matches("^SIP/2.0 200 OK", answered)
  end)
end)
