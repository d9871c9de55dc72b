--- SDP helpers for the user agent: the default audio offer, and reading
--- the media direction of a description (RFC 3264 §5.1, §8.4).
--
-- Offer/answer itself is done by sofia's soa; this module only builds the
-- description a call offers and inspects what was negotiated.
local M = {}

--- The audio description a call offers until the media engine provides
--- real RTP: PCMU, PCMA and telephone-event on `port` (default 9, the
--- conventional "discard" port: a valid description that carries nothing).
function M.default_offer(addr, port)
  addr = addr or "127.0.0.1"
  local ipver = addr:find(":", 1, true) and "IP6" or "IP4"
  port = port or 9
  return table.concat({
    "v=0",
    "o=- 0 0 IN " .. ipver .. " " .. addr,
    "s=luasip",
    "c=IN " .. ipver .. " " .. addr,
    "t=0 0",
    "m=audio " .. port .. " RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "",
  }, "\r\n")
end

--- The direction of the first audio stream: "sendrecv", "sendonly",
--- "recvonly" or "inactive" (a port of 0 is inactive), or nil without one.
function M.direction(sdp)
  if type(sdp) ~= "string" then return nil end
  local session_dir, media_dir, seen_m, found, port
  for line in (sdp .. "\n"):gmatch("([^\r\n]*)\r?\n") do
    local m, p = line:match("^m=(%w+) (%d+)")
    if m then
      if found then break end
      seen_m = true
      if m == "audio" then found, port = true, tonumber(p) end
    else
      local dir = line:match("^a=(%a+)%s*$")
      if dir == "sendrecv" or dir == "sendonly" or dir == "recvonly" or dir == "inactive" then
        if found then media_dir = dir
        elseif not seen_m then session_dir = dir end
      end
    end
  end
  if not found then return nil end
  if port == 0 then return "inactive" end
  return media_dir or session_dir or "sendrecv"
end

return M
