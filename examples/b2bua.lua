-- b2bua.lua — a back-to-back user agent: every call it receives (leg A)
-- becomes a new call to --target (leg B). B's ringing is relayed to A
-- (180, or 183 with B's early media), A is answered with B's SDP once B
-- answers, or rejected with B's failure status; whichever leg hangs up
-- first, the other is hung up too.
--
--   luasip examples/b2bua.lua --listen 127.0.0.1:5080 --target sip:bob@127.0.0.1:5090 [--trace]
local luasip = require "luasip"

local listen, target = "127.0.0.1:5080", nil
local i = 1
while arg and arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "--listen" and v then listen, i = v, i + 1
  elseif a == "--target" and v then target, i = v, i + 1
  elseif a == "--trace" then luasip.trace(true)
  else
    io.stderr:write("b2bua.lua: bad argument '", a, "' (use --listen host:port --target uri [--trace])\n")
    os.exit(2)
  end
  i = i + 1
end
if not target then io.stderr:write("b2bua.lua: --target uri is required\n") os.exit(2) end

local ua, err = luasip.ua { listen = listen, media = false } -- SDP is relayed, not terminated
if not ua then io.stderr:write("b2bua.lua: ", err, "\n") os.exit(1) end

local function say(text) print("b2bua: " .. text) io.stdout:flush() end

ua:on("call", function(a)
  say("call from " .. tostring(a.remote_uri) .. ", calling " .. target)
  local b -- leg B, known from its first provisional answer
  a:on("hangup", function() if b then b:hangup() end end)
  local call, reason, status = ua:call(target, {
    sdp = a.remote_sdp,                           -- offer A's media to B
    from = "<" .. (a.remote_uri or ua.aor) .. ">", -- and show B who calls
    on_progress = function(leg, st)
      b = leg
      if a.state == "terminated" then return leg:hangup() end
      if st == 180 then a:ring()
      elseif st == 183 then a:ring { early_media = true, sdp = leg.remote_sdp } end -- B's early media
    end,
  })
  if not call then
    local code = tonumber(status) or 408 -- "timeout": B did not answer in time
    if code < 300 or code > 699 then code = 500 end
    say("B failed: " .. tostring(status) .. " " .. tostring(reason))
    return a:reject(code, reason)
  end
  b = call
  if a.state == "terminated" then return b:hangup() end -- A gave up meanwhile
  b:on("hangup", function() a:hangup() end)
  local ok, why = a:answer { sdp = b.remote_sdp }      -- B's media to A
  if not ok then say("A not answered: " .. tostring(why)) return b:hangup() end
  say("connected " .. tostring(a.remote_uri) .. " <-> " .. target)
  a:on("hangup", function() say("call from " .. tostring(a.remote_uri) .. " ended") end)
end)

luasip.on("shutdown", function() say("stopping") ua:close() end)
say("listening on " .. ua.contact .. ", relaying calls to " .. target)
luasip.run()
