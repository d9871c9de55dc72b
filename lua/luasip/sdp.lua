--- SDP offer/answer for the user agent (RFC 3264): the offers a call
-- makes, the answers it gives, and reading the media direction.
--
-- sofia's soa is not used (the UA runs nua with media disabled): soa
-- cannot describe SRTP keys or our RTP session, and its SDP parser loops
-- allocating on some malformed m= lines. Remote descriptions are read by
-- `core.sdp_map` (csrc/media/sdpmap.c), which checks every m= line first.
-- @module luasip.sdp
local core = require "luasip.core"

local M = {}

-- Payload types we offer, and their rtpmap lines.
local CODECS = {
  PCMU = { pt = 0, rtpmap = "PCMU/8000", rate = 8000 },
  PCMA = { pt = 8, rtpmap = "PCMA/8000", rate = 8000 },
  -- RFC 7587: always opus/48000/2; we send mono and decode FEC
  opus = { pt = 111, rtpmap = "opus/48000/2", rate = 48000,
           fmtp = "minptime=10;useinbandfec=1;maxaveragebitrate=32000" },
}
-- telephone-event (RFC 4733) at each codec rate we offer
local TE_PT = { [8000] = 101, [48000] = 110 }
--- SRTP suites (RFC 4568, RFC 7714) we key, in our order of preference.
M.SUITES = { "AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_32" }
local SUITE_OK = {}
for _, n in ipairs(M.SUITES) do SUITE_OK[n] = true end

--- What calls offer unless the UA says otherwise.
M.DEFAULT_CODECS = { "opus", "PCMU", "PCMA" }

local function ipver(addr) return addr:find(":", 1, true) and "IP6" or "IP4" end

-- The session part: o= with the call's session id and version.
local function head(addr, id, version)
  local v = ipver(addr)
  return {
    "v=0",
    string.format("o=- %s %d IN %s %s", id or "0", version or 0, v, addr),
    "s=luasip",
    "c=IN " .. v .. " " .. addr,
    "t=0 0",
  }
end

--- An audio offer.
-- It offers telephone-event (RFC 4733) at the rate of each codec offered.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.addr the address for o= and c= (default "127.0.0.1")
-- @tparam[opt] number opts.port default 9, the "discard" port: a valid description that
--   carries nothing
-- @tparam[opt] table opts.codecs names, in our order of preference: "opus", "PCMU", "PCMA";
--   default all three
-- @tparam[opt] string opts.direction default sendrecv
-- @tparam[opt] number opts.ptime the a=ptime value, ms
-- @tparam[opt] string opts.id the session id for the o= line (default "0")
-- @tparam[opt] number opts.version the session version for the o= line (default 0)
-- @tparam[opt] string opts.proto default "RTP/AVP"
-- @tparam[opt] table opts.crypto a list of { tag =, suite =, key = } for a=crypto lines
-- @tparam[opt] boolean opts.rtcp_mux true: offer RTCP on the RTP port, RFC 5761 §5.1.1
-- @treturn string the description (CRLF line ends)
-- @raise `luasip.sdp: unknown codec NAME`
-- @usage local offer = sdp.offer{ addr = "192.0.2.1", port = 40000, codecs = { "PCMU" } }
function M.offer(opts)
  opts = opts or {}
  local addr = opts.addr or "127.0.0.1"
  local codecs = opts.codecs or M.DEFAULT_CODECS
  local lines = head(addr, opts.id, opts.version)
  local pts, maps, rates = {}, {}, {}
  for _, name in ipairs(codecs) do
    local c = CODECS[name]
    if not c then error("luasip.sdp: unknown codec " .. tostring(name), 2) end
    pts[#pts + 1] = c.pt
    maps[#maps + 1] = "a=rtpmap:" .. c.pt .. " " .. c.rtpmap
    if c.fmtp then maps[#maps + 1] = "a=fmtp:" .. c.pt .. " " .. c.fmtp end
    if not rates[c.rate] then
      rates[c.rate] = true
      rates[#rates + 1] = c.rate
    end
  end
  for _, rate in ipairs(rates) do
    local te = TE_PT[rate]
    pts[#pts + 1] = te
    maps[#maps + 1] = "a=rtpmap:" .. te .. " telephone-event/" .. rate
    maps[#maps + 1] = "a=fmtp:" .. te .. " 0-16"
  end
  lines[#lines + 1] = string.format("m=audio %d %s %s", opts.port or 9, opts.proto or "RTP/AVP",
                                    table.concat(pts, " "))
  for _, l in ipairs(maps) do lines[#lines + 1] = l end
  for _, c in ipairs(opts.crypto or {}) do
    lines[#lines + 1] = string.format("a=crypto:%d %s inline:%s", c.tag, c.suite, c.key)
  end
  if opts.ptime then lines[#lines + 1] = "a=ptime:" .. opts.ptime end
  if opts.rtcp_mux then lines[#lines + 1] = "a=rtcp-mux" end
  lines[#lines + 1] = "a=" .. (opts.direction or "sendrecv")
  lines[#lines + 1] = ""
  return table.concat(lines, "\r\n")
end

--- The description a UA offered before it had media: kept for scripts.
-- `offer{ addr = addr, port = port }`: the default codecs.
-- @tparam[opt] string addr the address (default "127.0.0.1")
-- @tparam[opt] number port the port (default 9)
-- @treturn string the description
function M.default_offer(addr, port)
  return M.offer { addr = addr, port = port }
end

-- Our direction in an answer: what we want, limited by what the peer
-- offers (RFC 3264 §6.1).
local ANSWER_DIR = {
  sendrecv = { sendrecv = "sendrecv", sendonly = "recvonly", recvonly = "sendonly", inactive = "inactive" },
  sendonly = { sendrecv = "sendonly", sendonly = "inactive", recvonly = "sendonly", inactive = "inactive" },
  recvonly = { sendrecv = "recvonly", sendonly = "recvonly", recvonly = "inactive", inactive = "inactive" },
  inactive = { sendrecv = "inactive", sendonly = "inactive", recvonly = "inactive", inactive = "inactive" },
}

--- Answer an offer.
-- Streams other than the audio one are rejected (port 0). An offer that
-- carries crypto is never answered with plain RTP.
-- @tparam string|table offer the offer's text or `core.sdp_map()` of it
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.addr the address for o= and c= (default "127.0.0.1")
-- @tparam[opt] number opts.port the audio port (default 9)
-- @tparam[opt] string opts.direction what we want, default sendrecv
-- @tparam[opt] string opts.id the session id for the o= line (default "0")
-- @tparam[opt] number opts.version the session version for the o= line (default 0)
-- @tparam[opt] number opts.ptime the a=ptime value, ms
-- @tparam[opt] table opts.codecs names we accept; default all we have: the first of them
--   in the offer's order is chosen (read when offer is text)
-- @tparam[opt] string opts.srtp "off" (default), "optional" or "mandatory"
-- @tparam[opt] function opts.key key(suite) -> a base64 key of ours
-- @treturn[1] string the answer
-- @treturn[1] table the mapped offer
-- @treturn[1] table the SRTP keying `{ suite =, local_key =, remote_key = }` (nil for plain RTP)
-- @return[2] nil, reason, 488 when no audio stream with a codec we have is offered or the
--   SRTP policies disagree
-- @return[3] nil, reason, 400 when the offer is malformed
function M.answer(offer, opts)
  opts = opts or {}
  local map = offer
  if type(offer) == "string" then
    local why
    map, why = core.sdp_map(offer, opts.codecs and table.concat(opts.codecs, ","))
    if not map then
      return nil, why, why:match("^malformed") and 400 or 488
    end
  end
  if not map.codec or map.port == 0 then
    return nil, "no common codec", 488
  end
  local policy = opts.srtp or "off"
  local sec
  local offered = map.crypto and #map.crypto > 0
  if offered or map.secure then
    if policy == "off" then return nil, "SRTP offered, and this UA has srtp off", 488 end
    for _, c in ipairs(map.crypto or {}) do
      if SUITE_OK[c.suite] then sec = c break end
    end
    if not sec then return nil, "no SRTP suite in common", 488 end
    local key = opts.key and opts.key(sec.suite)
    if not key then return nil, "no SRTP key", 488 end
    sec = { tag = sec.tag, suite = sec.suite, local_key = key, remote_key = sec.key }
  elseif policy == "mandatory" then
    return nil, "SRTP is mandatory and the offer has none", 488
  end
  local addr = opts.addr or "127.0.0.1"
  local lines = head(addr, opts.id, opts.version)
  for i, st in ipairs(map.streams) do
    if i ~= map.audio then
      -- a stream we do not take: rejected with port 0, same format
      lines[#lines + 1] = string.format("m=%s 0 %s %s", st.media, st.proto, st.fmt)
    else
      local fmts = string.format("%d", map.pt)
      if map.te_pt then fmts = string.format("%s %d", fmts, map.te_pt) end
      lines[#lines + 1] = string.format("m=audio %d %s %s", opts.port or 9, st.proto, fmts)
      local chans = (map.channels or 1) > 1 and string.format("/%d", map.channels) or ""
      lines[#lines + 1] = string.format("a=rtpmap:%d %s/%d%s", map.pt, map.codec, map.rate, chans)
      if map.codec:lower() == "opus" then
        -- our receiving side: we decode in-band FEC and take the peer's bitrate
        lines[#lines + 1] = string.format("a=fmtp:%d minptime=10;useinbandfec=1", map.pt)
      elseif map.fmtp then
        lines[#lines + 1] = string.format("a=fmtp:%d %s", map.pt, map.fmtp)
      end
      if map.te_pt then
        lines[#lines + 1] = string.format("a=rtpmap:%d telephone-event/%d", map.te_pt, map.te_rate or map.rate)
        lines[#lines + 1] = string.format("a=fmtp:%d 0-16", map.te_pt)
      end
      if opts.ptime then lines[#lines + 1] = "a=ptime:" .. opts.ptime end
      if map.rtcp_mux then lines[#lines + 1] = "a=rtcp-mux" end
      if sec then
        lines[#lines + 1] = string.format("a=crypto:%d %s inline:%s", sec.tag, sec.suite, sec.local_key)
      end
      local want = opts.direction or "sendrecv"
      lines[#lines + 1] = "a=" .. ANSWER_DIR[want][map.direction or "sendrecv"]
    end
  end
  lines[#lines + 1] = ""
  return table.concat(lines, "\r\n"), map, sec
end

--- The direction of the first audio stream.
-- A port of 0 is inactive; a stream without a direction attribute takes the
-- session's, else sendrecv.
-- @tparam string sdp the description
-- @treturn[1] string "sendrecv", "sendonly", "recvonly" or "inactive"
-- @return[2] nil without an audio stream (or when sdp is not a string)
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
