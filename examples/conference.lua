-- conference.lua — a conference room anyone can dial into.
--
--   luasip examples/conference.lua --listen 127.0.0.1:5070
--   baresip: /dial sip:room@127.0.0.1:5070      (any user part: the room name)
local luasip = require "luasip"

local opt = luasip.flags(arg, { listen = "127.0.0.1:5070", trace = false },
  "conference.lua [flags]: dial sip:<room>@host to join <room>")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local ua = assert(luasip.ua { listen = opt.listen, aor = "sip:conference@" .. opt.listen })
ua:on("call", function(call)
  local name = call.request.uri.user or "main"
  if not call:answer() then return end
  local room = luasip.conference(name)
  call:play("beep")
  local ok, why = room:join(call)
  if not ok then print("conference: " .. why) return call:hangup() end
  print(string.format("conference: %s joined %s (%d here)", tostring(call.remote_uri), name, room:count()))
  io.stdout:flush()
  call:wait_hangup(4 * 3600) -- the room lets go of the call when it hangs up
  print(string.format("conference: %s left %s (%d here)", tostring(call.remote_uri), name, room:count()))
  io.stdout:flush()
end)

luasip.on("shutdown", function() ua:close() end)
print("conference: listening on " .. ua.contact)
io.stdout:flush()
luasip.run()
