-- The luasip side of the OPTIONS benchmark: a server whose per-request Lua
-- hook does what Kamailio's route.lua does for the same request (a few
-- header checks), so both run Lua once per request.
local luasip = require "luasip"
local port = tonumber(arg[1]) or 5062
local seen, bad = 0, 0
local srv = assert(luasip.server {
  listen = "127.0.0.1:" .. port,
  transports = { "udp" },
  observe = function(req)
    if req.method == "OPTIONS" and req.uri:find("^sip:") then seen = seen + 1 else bad = bad + 1 end
  end,
})
-- For the soak (bench/soak.sh): churn timers and tasks alongside the SIP
-- load, and write the live object counts every 10 s.
local stats_file = os.getenv("SOAK_STATS")
if stats_file then
  luasip.every(0.01, function()
    luasip.spawn(function() luasip.sleep(0.05) end)
    luasip.after(0.02, function() end)
  end)
  luasip.every(10, function()
    local st = luasip.stats()
    local f = io.open(stats_file, "a")
    f:write(string.format("timers=%d armed=%d tasks=%d agents=%d fds=%d options=%d\n",
      st.timers, st.armed_timers, st.tasks, st.agents, st.fds, seen))
    f:close()
  end)
end

luasip.on("shutdown", function()
  io.stderr:write(string.format("options_server: %d OPTIONS, %d other\n", seen, bad))
  srv:close()
end)
print("ready " .. srv.port)
io.stdout:flush()
luasip.run()
