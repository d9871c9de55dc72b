-- Loop micro-benchmarks: the same work on luasip's loop or on luv's
-- (libuv). One measurement per process; bench/run.sh takes medians.
--   luasip|luv  timers|sleepers  [N]   -> prints CPU seconds
--   timers:   N one-shot timers with random 0..100 ms delays, all fired
--   sleepers: N coroutines that each sleep a random 0..100 ms and wake
local impl, test, N = arg[1], arg[2], tonumber(arg[3]) or 100000

math.randomseed(42)
local D = {}
for i = 1, N do D[i] = math.random(0, 100) end

local work = {}

function work.luasip_timers()
  local luasip = require "luasip"
  local fired = 0
  for i = 1, N do luasip.after(D[i] / 1000, function(t) fired = fired + 1 t:close() end) end
  while fired < N do luasip.step(-1) end
end

function work.luasip_sleepers()
  local luasip = require "luasip"
  local woke = 0
  for i = 1, N do luasip.spawn(function() luasip.sleep(D[i] / 1000) woke = woke + 1 end) end
  while woke < N do luasip.step(-1) end
end

function work.luv_timers()
  local uv = require "luv"
  local fired = 0
  for i = 1, N do
    local t = uv.new_timer()
    t:start(D[i], 0, function() fired = fired + 1 t:close() end)
  end
  while fired < N do uv.run("once") end
  uv.run("nowait")
end

-- The least luv needs for the same thing: a coroutine resumed by a timer
-- (no timeout, cancellation or error handling, which luasip's tasks have).
function work.luv_sleepers()
  local uv = require "luv"
  local woke = 0
  local function sleep(ms)
    local co = coroutine.running()
    local t = uv.new_timer()
    t:start(ms, 0, function() t:close() coroutine.resume(co) end)
    coroutine.yield()
  end
  for i = 1, N do coroutine.wrap(function() sleep(D[i]) woke = woke + 1 end)() end
  while woke < N do uv.run("once") end
  uv.run("nowait")
end

local fn = work[impl .. "_" .. test]
if not fn then
  io.stderr:write("usage: loop.lua luasip|luv timers|sleepers [N]\n")
  os.exit(2)
end
if impl == "luasip" then require "luasip" else require "luv" end -- load outside the timing
collectgarbage("collect")
local c0 = os.clock()
fn()
print(string.format("%.4f", os.clock() - c0))
