-- b2bua.lua — a back-to-back user agent: every call it receives (leg A)
-- becomes a new call to --target (leg B). B's ringing is relayed to A; A is
-- answered once B answers, or rejected with B's failure status; whichever
-- leg hangs up first, the other is hung up too.
--   --media bridge (default): each leg has its own RTP session with
--     luasip, which relays the audio (transcoding if the legs chose
--     different codecs) and RFC 4733 digits between them;
--   --media relay: signalling only, each leg gets the other's SDP (early
--     media included), RTP flows end to end.
--
--   luasip examples/b2bua.lua --listen 127.0.0.1:5080 --target sip:bob@127.0.0.1:5090
local luasip = require "luasip"

local opt = luasip.flags(arg, { listen = "127.0.0.1:5080", target = "", media = "bridge", trace = false },
  "b2bua.lua [flags]: --target uri is required")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)
local target, relay = opt.target, opt.media == "relay"
if target == "" then io.stderr:write("b2bua.lua: --target uri is required\n") os.exit(2) end
if opt.media ~= "bridge" and not relay then io.stderr:write("b2bua.lua: --media bridge|relay\n") os.exit(2) end

local ua, err = luasip.ua { listen = opt.listen, media = not relay }
if not ua then io.stderr:write("b2bua.lua: ", err, "\n") os.exit(1) end

local function say(text) print("b2bua: " .. text) io.stdout:flush() end

ua:on("call", function(a)
  say("call from " .. tostring(a.remote_uri) .. ", calling " .. target)
  local b -- leg B, known from its first provisional answer
  a:on("hangup", function() if b then b:hangup() end end)
  local call, reason, status = ua:call(target, {
    sdp = relay and a.remote_sdp or nil,           -- relay: offer A's media to B
    from = "<" .. (a.remote_uri or ua.aor) .. ">",  -- and show B who calls
    on_progress = function(leg, st)
      b = leg
      if a.state == "terminated" then return leg:hangup() end
      if st == 180 or not relay then a:ring()
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
  local ok, why = a:answer { sdp = relay and b.remote_sdp or nil } -- relay: B's media to A
  if not ok then say("A not answered: " .. tostring(why)) return b:hangup() end
  say("connected " .. tostring(a.remote_uri) .. " <-> " .. target)
  a:on("hangup", function() say("call from " .. tostring(a.remote_uri) .. " ended") end)
  if not relay then
    local bridged, berr = a:bridge(b, { timeout = 4 * 3600 })
    if not bridged and berr ~= "hangup" then say("bridge: " .. tostring(berr)) end
    a:hangup()
    b:hangup()
  end
end)

luasip.on("shutdown", function() say("stopping") ua:close() end)
say("listening on " .. ua.contact .. ", " .. (relay and "relaying SDP" or "bridging media") .. " to " .. target)
luasip.run()
