-- The luasip side of the UA call benchmark: a UA that answers every call
-- (INVITE -> 200 with SDP -> ACK, then the caller's BYE), as SIPp's
-- built-in uas scenario does on the other side of the comparison.
local luasip = require "luasip"
local port = tonumber(arg[1]) or 5072
-- signalling only, as SIPp's uas is: no RTP sessions
local ua = assert(luasip.ua { listen = "127.0.0.1:" .. port, rel100 = false, media = false })
local answered = 0
ua:on("call", function(call)
  if call:answer() then answered = answered + 1 end
end)
luasip.on("shutdown", function()
  io.stderr:write(string.format("luasip ua: answered %d calls\n", answered))
end)
print("ready") io.stdout:flush()
