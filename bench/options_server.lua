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
luasip.on("shutdown", function()
  io.stderr:write(string.format("options_server: %d OPTIONS, %d other\n", seen, bad))
  srv:close()
end)
print("ready " .. srv.port)
io.stdout:flush()
luasip.run()
