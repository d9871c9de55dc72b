--- Media for calls: each call of a luasip.ua gets an RTP session of the
-- media engine (csrc/media/), made when the call first needs a
-- description, started on the peer's, closed when the call ends.
--
-- This module is the glue between luasip.call's offer/answer and the
-- engine; the verbs scripts use (play, record, collect, ...) are in
-- luasip.ivr. Scripts need only `ports`; luasip.call calls the others.
-- @module luasip.media
local core = require "luasip.core"
local log = require "luasip.log"
local sdp = require "luasip.sdp"

local M = {}

--- Set the RTP port range.
-- Even ports for RTP, the next odd one for
-- RTCP; before the first call with media. Default 16384-32767.
-- @tparam number min the lowest port, from 1024 to 65534
-- @tparam number max the highest port, above min and at most 65535
-- @raise "bad argument #1 to 'media_ports' (...)" unless min is an integer from 1024 to 65534
-- ("port from 1024 to 65534"); "bad argument #2 to 'media_ports' (...)" unless max is an
-- integer above min, at most 65535 ("port above min, at most 65535");
-- "luasip.media: the port range cannot change while sessions are open";
-- "luasip.media: REASON" when the media engine cannot be made.
-- @usage luasip.media.ports(20000, 20999)
function M.ports(min, max)
  core.media_ports(min, max)
end

local session_ids = 0

-- The call's session, made on first use; false when the UA has media off.
local function session(call)
  if call.media_session ~= nil then return call.media_session end
  if call.ua.media == false then
    call.media_session = false
    return false
  end
  -- the engine calls back through a weak reference: a session must not
  -- keep its call from being collected (and hung up)
  local ref = setmetatable({ call = call }, { __mode = "v" })
  local s, err, code = core.media_session(call.ua.host, function(what, ...)
    local c = ref.call
    if c then c:_media_event(what, ...) end
  end, true) -- weak: collected (and closed) with its call
  if not s then return nil, err, code end
  if call.ua.dtmf_inband ~= nil then s:detect_inband(call.ua.dtmf_inband) end
  call.media_session = s
  return s
end

-- The o= line's session id and version (RFC 4566 §5.2): the version goes
-- up whenever the description changes (RFC 3264 §8).
local function version(call, body_without_o)
  if not call.sdp_id then
    session_ids = session_ids + 1
    call.sdp_id = string.format("%d%04d", os.time(), session_ids % 10000)
    call.sdp_version = 0
  elseif call.sdp_last ~= body_without_o then
    call.sdp_version = call.sdp_version + 1
  end
  call.sdp_last = body_without_o
  return call.sdp_version
end

-- Put the call's session id and version into a description's o= line.
local function stamp(call, body)
  local v = version(call, (body:gsub("o=[^\r\n]*", "", 1)))
  return (body:gsub("(o=%- )%S+ %d+", "%1" .. call.sdp_id .. " " .. v, 1))
end

-- The codecs the UA takes, as the engine's comma list (nil: any).
local function allow(call)
  local c = call.ua.codecs
  return c and table.concat(c, ",") or nil
end

local function address(call)
  return call.ua.public_host or call.ua.host
end

-- The direction we want: sendonly while we hold the call, and inactive
-- when the peer holds us too (RFC 3264 §8.4, RFC 6337 §5.3).
local function want(call, offering)
  if not call.on_hold then return "sendrecv" end
  if offering then
    local peer = sdp.direction(call.remote_sdp)
    if peer == "sendonly" or peer == "inactive" then return "inactive" end
  end
  return "sendonly"
end

local function policy(call)
  if call.media_session == false then return "off" end
  return call.ua.srtp or "optional"
end

--- An offer for call.
-- It carries the port of its session (9 with media off), and
-- fresh SRTP keys unless srtp is off (RTP/SAVP when mandatory; RTP/AVP
-- with a=crypto when optional, RFC 4568 §5.1.1's best effort).
-- @tparam luasip.call call the call (its session is made on first use)
-- @treturn[1] string the offer (SDP)
-- @return[2] nil, "no RTP port: REASON", 503, code when no session can be made (code: the engine's error code)
function M.offer(call)
  local s, err, code = session(call)
  if s == nil then return nil, "no RTP port: " .. tostring(err), 503, code end
  local opts = {
    addr = address(call),
    port = s and s:port() or 9,
    codecs = call.ua.codecs,
    direction = want(call, true),
    rtcp_mux = s and call.ua.rtcp_mux, -- the engine demultiplexes either way
  }
  local p = policy(call)
  call.offered_crypto = nil
  if p ~= "off" then
    local list = {}
    for i, suite in ipairs(sdp.SUITES) do list[i] = { tag = i, suite = suite, key = core.srtp_key(suite) } end
    opts.crypto = list
    opts.proto = p == "mandatory" and "RTP/SAVP" or "RTP/AVP"
    call.offered_crypto = list
  end
  return stamp(call, sdp.offer(opts))
end

--- Answer the peer's offer for call, and start its session on it.
-- Returns the answer, or nil, reason, SIP status.
-- @tparam luasip.call call the call
-- @tparam string offer the peer's offer (SDP)
-- @treturn[1] string the answer (SDP)
-- @return[2] nil, "no RTP port: REASON", 503 when no session can be made
-- @return[3] nil, reason, 488 when the offer cannot be taken (no common codec, SRTP policies disagree), or SRTP or the session cannot start
-- @return[4] nil, reason, 400 for a malformed offer
function M.answer(call, offer)
  local s, err = session(call)
  if s == nil then return nil, "no RTP port: " .. tostring(err), 503 end
  local opts = {
    addr = address(call),
    port = s and s:port() or 9,
    codecs = call.ua.codecs,
    direction = want(call, false),
    srtp = policy(call),
    key = core.srtp_key,
  }
  -- the answer, the mapped offer and its SRTP keying; or nil, why, code
  local r = { sdp.answer(offer, opts) }
  if not r[1] then return nil, r[2], r[3] end
  local body, sec = stamp(call, r[1]), r[3]
  if s then
    local ok, serr
    if sec then
      ok, serr = s:srtp(sec.suite, sec.local_key, sec.remote_key)
    else
      ok, serr = s:srtp(nil)
    end
    if not ok then return nil, serr, 488 end
    call.srtp = sec and sec.suite or nil
    ok, serr = s:start(offer, 0, allow(call))
    if not ok then return nil, serr, 488 end
  end
  return body
end

--- The peer's answer to our offer arrived: start (or change) the session.
-- Failures are logged (warnings), not returned: without a usable SRTP key
-- the call has no media.
-- @tparam luasip.call call the call
-- @tparam string body the peer's answer (SDP)
function M.remote(call, body)
  local s = call.media_session
  if not s then return end
  -- SRTP: the answer names one of the suites we offered, with its key
  local map = core.sdp_map(body, allow(call))
  local sec
  if map and map.crypto and map.crypto[1] and call.offered_crypto then
    local c = map.crypto[1]
    for _, mine in ipairs(call.offered_crypto) do
      if mine.tag == c.tag and mine.suite == c.suite then sec = { mine.suite, mine.key, c.key } end
    end
  end
  if not sec and (policy(call) == "mandatory" or (map and map.secure)) then
    log.warn("call %s: the answer has no SRTP key we can use: no media", tostring(call.call_id))
    s:srtp(nil)
    return
  end
  local ok, err
  if sec then ok, err = s:srtp(sec[1], sec[2], sec[3]) else ok, err = s:srtp(nil) end
  if not ok then
    log.warn("call %s: SRTP not keyed: %s", tostring(call.call_id), tostring(err))
    return
  end
  call.srtp = sec and sec[1] or nil
  ok, err = s:start(body, 0, allow(call))
  if not ok then log.warn("call %s: media not started: %s", tostring(call.call_id), tostring(err)) end
end

--- The call ended: finish a recording in progress (kept, its length in
-- call.record_seconds), keep the final statistics (call.final_stats),
-- and close the session.
-- @tparam luasip.call call the call
function M.stop(call)
  local s = call.media_session
  if s then
    call.media_session = false
    call.record_seconds = s:stop_record(true) or call.record_seconds
    call.final_stats = s:stats()
    s:close()
  end
end

return M
