-- echo.lua — answer every call and send the caller's audio back.
--
--   luasip examples/echo.lua --listen 127.0.0.1:5080
--   baresip: /dial sip:echo@127.0.0.1:5080
local luasip = require "luasip"

local opt = luasip.flags(arg, { listen = "127.0.0.1:5080", trace = false },
  "echo.lua [flags]: an echo test")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local ua = assert(luasip.ua { listen = opt.listen, aor = "sip:echo@" .. opt.listen })
ua:on("call", function(call)
  print("echo: call from " .. tostring(call.remote_uri))
  if not call:answer() then return end
  call:play("beep")
  call:echo { timeout = 600 } -- until the caller hangs up (or 10 minutes)
  call:hangup()
  local st = call:stats()
  print(string.format("echo: ended; %d packets in, %d out, %d lost, jitter %.1f ms",
    st.packets_received, st.packets_sent, st.lost, st.jitter_ms))
  io.stdout:flush()
end)

luasip.on("shutdown", function() ua:close() end)
print("echo: listening on " .. ua.contact)
io.stdout:flush()
luasip.run()
