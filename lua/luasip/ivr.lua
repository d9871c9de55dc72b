--- IVR verbs on a call: play, tone, record, collect, dtmf, on_dtmf, echo.
--
-- Each verb waits (yields in a task; drives the loop at top level), takes
-- a timeout, and returns nil, "hangup" when the call ends under it, after
-- releasing what it started (a tone stops, a recording is finalised).
-- Digits the caller types are kept in the order they came (RFC 4733
-- events, or SIP INFO dtmf-relay) until a verb uses them, so callers who
-- know the menu can type ahead.
--
-- These are methods of the call: they appear in the reference of
-- luasip.call ("ivr Functions").
-- @submodule luasip.call
local core = require "luasip.core"
local log = require "luasip.log"

local M = {}

--- Named tones (ITU-T E.180 / North American values; level -13 dBm0).
-- A tone is {freqs = {Hz...}, cadence = {on_ms, off_ms, ...}, duration = ms,
-- level = dBm0}. `Call:play` and `Call:tone` take these names (the table
-- itself is internal to luasip.ivr).
-- @table TONES
-- @field dial 350 + 440 Hz, continuous
-- @field ringback 440 + 480 Hz, 2 s on, 4 s off
-- @field busy 480 + 620 Hz, 0.5 s on, 0.5 s off
-- @field congestion 480 + 620 Hz, 0.25 s on, 0.25 s off
-- @field beep 1000 Hz for 400 ms
-- @field error 480 + 620 Hz, 0.25 s on, 0.25 s off, for 1 s
M.TONES = {
  dial = { freqs = { 350, 440 } },
  ringback = { freqs = { 440, 480 }, cadence = { 2000, 4000 } },
  busy = { freqs = { 480, 620 }, cadence = { 500, 500 } },
  congestion = { freqs = { 480, 620 }, cadence = { 250, 250 } },
  beep = { freqs = { 1000 }, duration = 400 },
  error = { freqs = { 480, 620 }, cadence = { 250, 250 }, duration = 1000 },
}

local DIGITS = "0123456789*#ABCD"

local function check_digits(s, what)
  if type(s) ~= "string" or s:find("[^0-9%*#ABCDabcd]") then
    error(what .. ": expected a string of DTMF digits (0-9 * # A-D)", 3)
  end
  return s:upper()
end

return function(Call)
  -- -------------------------------------------------------------------------
  -- From the media session and the dialog

  -- what: "dtmf" (digit, ms, source), "play_done", "record_done" (err), "dtmf_sent"
  function Call:_media_event(what, a, b, c)
    if what == "dtmf" then
      self:_dtmf_in(a, b, c)
    elseif what == "play_done" then
      self.play_done = self.play_id
    elseif what == "record_done" then
      self.record_done = { err = a }
    elseif what == "dtmf_sent" then
      self.dtmf_sent = true
    end
    self:_poke()
  end

  -- A digit from the peer (source "rfc4733", "inband" or "info"): buffered for the
  -- verbs, then reported to on_dtmf listeners.
  function Call:_dtmf_in(digit, ms, source)
    self.digits = (self.digits or "") .. digit
    self:_emit("dtmf", digit, source, ms)
  end

  -- SIP INFO carrying a digit (application/dtmf-relay, application/dtmf).
  function Call:_info_dtmf(msg)
    local ct, body = msg.content_type, msg.body or ""
    local digit, ms
    if ct == "application/dtmf-relay" then
      digit = body:match("[Ss]ignal%s*=%s*([%w%*#])")
      ms = tonumber(body:match("[Dd]uration%s*=%s*(%d+)"))
    elseif ct == "application/dtmf" then
      digit = body:match("^%s*([%w%*#])")
    end
    if not digit then return false end
    digit = digit:upper()
    if not DIGITS:find(digit, 1, true) then
      log.warn("call %s: INFO with an unknown DTMF signal", tostring(self.call_id))
      return false
    end
    self:_dtmf_in(digit, ms, "info")
    return true
  end

  -- -------------------------------------------------------------------------
  -- Helpers

  -- The running session, or nil, reason.
  local function media_of(call)
    if call.state == "terminated" then return nil, "hangup" end
    local s = call.media_session
    if s == false or (s == nil and call.explicit_sdp) then
      return nil, "the call has no media of ours (signalling only)"
    end
    if not s or not s:codec() then return nil, "no media negotiated yet" end
    return s
  end

  -- Where the first buffered digit in `set` (any when set is true) is.
  local function find_digit(call, set)
    local buf = call.digits or ""
    for i = 1, #buf do
      if set == true or set:find(buf:sub(i, i), 1, true) then return i end
    end
  end

  -- Take that digit; digits before it are dropped.
  local function take_digit(call, set)
    local i = find_digit(call, set)
    if not i then return nil end
    local d = call.digits:sub(i, i)
    call.digits = call.digits:sub(i + 1)
    return d
  end

  -- The first buffered digit in `set` (any when true), left in the buffer.
  local function peek_digit(call, set)
    local i = find_digit(call, set)
    return i and call.digits:sub(i, i)
  end

  local function tone_spec(source)
    if type(source) == "string" then return M.TONES[source] end
    return source
  end

  -- Start a source on the session; returns the play id.
  local function start_source(call, s, source, opts)
    call.play_id = (call.play_id or 0) + 1
    local t = tone_spec(source)
    if type(t) == "table" then
      s:tone(t)
      return call.play_id, t.duration == nil
    end
    if type(source) == "string" then
      local ok, err = s:play(source, opts and opts.loop)
      if not ok then return nil, err end
      return call.play_id, opts and opts.loop
    end
    error("call:play: source must be a tone name, a tone table or a file path", 3)
  end

  local function stop_source(call, id)
    local s = call.media_session
    if s and call.play_id == id and call.play_done ~= id then s:stop_play() end
  end

  -- -------------------------------------------------------------------------
  -- Verbs

  --- Play a source.
  -- The source is a file path (any format libsndfile reads), a tone name
  -- (`TONES`: "dial", "ringback", "busy", "congestion", "beep", "error"), a tone
  -- table, or { say = text, voice = } (speech, see say). opts: loop (files), stop_on_dtmf (true, or a string of digits
  -- that stop it; the digit stays buffered for collect), timeout (s).
  -- An endless source (a tone without duration, a looped file) plays in
  -- the background and play returns at once, unless opts.timeout is
  -- given: then play waits that long.
  -- Returns true when the source ended (or the timeout of an endless one),
  -- the digit that stopped it, or nil, reason ("hangup", "timeout", ...).
  -- @tparam string|table source a file path, a tone name, a tone table {freqs = {Hz...}, cadence = {on_ms, off_ms, ...}, duration = ms, level = dBm0}, or {say = text, voice = voice}
  -- @tparam[opt] table opts options:
  -- @tparam[opt] boolean opts.loop play a file over and over (an endless source)
  -- @tparam[opt] boolean|string opts.stop_on_dtmf true (any digit), or a string of the digits that stop it; the digit stays buffered for collect
  -- @tparam[opt] number opts.timeout seconds to wait (default: until the source ends, at most 3600; an endless source plays in the background)
  -- @treturn[1] boolean true when the source ended, at the timeout of an endless one, or at once for an endless one without opts.timeout
  -- @treturn[2] string the digit that stopped it (a digit already buffered stops it before it starts)
  -- @return[3] nil, "hangup" when the call ended
  -- @return[4] nil, "timeout" when a source that ends had not ended by opts.timeout (it is stopped)
  -- @return[5] nil, reason without media ("the call has no media of ours (signalling only)", "no media negotiated yet"), or when the file cannot be played
  -- @raise "call:play: options must be a table";
  -- "call:play: expected a string of DTMF digits (0-9 * # A-D)" for a bad stop_on_dtmf;
  -- "call:play: source must be a tone name, a tone table or a file path";
  -- "call:play: timeout must be a number of seconds from 0 to 1e9"; "call:play blocks, and cannot be called from a callback: ..." from a plain callback.
  -- With {say =}, as `Call:say`.
  function Call:play(source, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("call:play: options must be a table", 2) end
    if type(source) == "table" and source.say then
      return self:say(source.say, { voice = source.voice, stop_on_dtmf = opts.stop_on_dtmf,
                                    timeout = opts.timeout })
    end
    local stop = opts.stop_on_dtmf
    if stop ~= nil and stop ~= true and stop ~= false then stop = check_digits(stop, "call:play") end
    local s, why = media_of(self)
    if not s then return nil, why end
    if stop then
      -- a digit already typed stops the prompt before it starts
      local d = peek_digit(self, stop)
      if d then return d end
    end
    local id, endless = start_source(self, s, source, opts)
    if not id then return nil, endless end
    if endless and not opts.timeout then return true end
    local digit
    local v, err = self:_wait_until(function()
      if self.state == "terminated" then return "hangup" end
      if self.play_done == id then return "done" end
      if stop then
        digit = peek_digit(self, stop)
        if digit then return "dtmf" end
      end
    end, opts.timeout or 3600, "call:play")
    stop_source(self, id)
    if v == "hangup" then return nil, "hangup" end
    if v == "done" then return true end
    if v == "dtmf" then return digit end
    if endless and err == "timeout" then return true end
    return nil, err
  end

  --- Play a tone (a name or a table; see play).
  -- Same returns as play.
  -- @tparam string|table spec a tone name (see `TONES`) or a tone table {freqs = {Hz...}, cadence = {on_ms, off_ms, ...}, duration = ms, level = dBm0}
  -- @tparam[opt] table opts options, as for `Call:play`
  -- @return as `Call:play`
  -- @raise "call:tone: unknown tone NAME"; "call:tone: expected a tone name or table"; and as `Call:play`.
  function Call:tone(spec, opts)
    if type(spec) == "string" and not M.TONES[spec] then
      error("call:tone: unknown tone " .. spec, 2)
    end
    if type(spec) ~= "string" and type(spec) ~= "table" then
      error("call:tone: expected a tone name or table", 2)
    end
    return self:play(spec, opts)
  end

  --- Speak text (UTF-8) with espeak-ng.
  -- It is synthesised off the loop thread
  -- (once per voice and text: the result is cached for the process),
  -- then played like a file. opts: voice (an espeak-ng voice, default
  -- "en"), and play's stop_on_dtmf and timeout. Same returns as play.
  -- @tparam string text the text to speak (UTF-8)
  -- @tparam[opt] table opts options:
  -- @tparam[opt] string opts.voice an espeak-ng voice (default "en")
  -- @tparam[opt] boolean|string opts.stop_on_dtmf as for `Call:play`
  -- @tparam[opt] number opts.timeout as for `Call:play`
  -- @return[1] as `Call:play`, once the speech is synthesised
  -- @return[2] nil, "hangup" when the call ended
  -- @return[3] nil, "timeout" when the synthesis took more than 30 s
  -- @return[4] nil, reason without media ("the call has no media of ours (signalling only)", "no media negotiated yet"), or when the synthesis failed
  -- @raise "call:say: text must be a non-empty string"; "call:say: options must be a table";
  -- "call:say: voice must be a string"; "call:say blocks, and cannot be called from a callback: ..." from a plain callback; and as `Call:play`.
  function Call:say(text, opts)
    if type(text) ~= "string" or text == "" then error("call:say: text must be a non-empty string", 2) end
    opts = opts or {}
    if type(opts) ~= "table" then error("call:say: options must be a table", 2) end
    local voice = opts.voice or "en"
    if type(voice) ~= "string" then error("call:say: voice must be a string", 2) end
    local _, why = media_of(self)
    if why then return nil, why end
    local name = core.hash("SHA-256", voice .. "\0" .. text):sub(1, 40)
    local state = {}
    local id, err = core.tts(text, voice, name, function(path, e)
      state.path, state.err, state.done = path, e, true
      self:_poke()
    end)
    if not id then return nil, err end
    local v, werr = self:_wait_until(function()
      if self.state == "terminated" then return "hangup" end
      if state.done then return "done" end
    end, 30, "call:say")
    if v == "hangup" then return nil, "hangup" end
    if not v then return nil, werr end
    if not state.path then return nil, state.err end
    return self:play(state.path, { stop_on_dtmf = opts.stop_on_dtmf, timeout = opts.timeout })
  end

  --- Stop what is playing (a background tone or file, or echo).
  function Call:stop()
    local s = self.media_session
    if s then s:stop_play() s:echo(false) end
  end

  --- Record what the peer says into path.
  -- A .wav path gets PCM 16-bit, .ogg/.opus Ogg Opus; the file is
  -- written to a temporary name and renamed when it ends.
  -- opts: max_seconds (default 300), silence_seconds (stop after that much
  -- silence), stop_on (digits that stop it, default "#"; false: none),
  -- beep (play a beep first), timeout (s, default max_seconds + 10).
  -- Returns path, seconds, why ("max", "silence", "dtmf", "timeout"), or
  -- nil, "hangup", path, seconds when the call ended (the recording is
  -- kept), or nil, error.
  -- @tparam string path the file to write (.wav: PCM 16-bit; .ogg/.opus: Ogg Opus)
  -- @tparam[opt] table opts options:
  -- @tparam[opt] number opts.max_seconds the longest recording (default 300)
  -- @tparam[opt] number opts.silence_seconds stop after that much silence
  -- @tparam[opt] string|false opts.stop_on digits that stop it (default "#"; false: none)
  -- @tparam[opt] boolean opts.beep play a beep first
  -- @tparam[opt] number opts.timeout seconds (default max_seconds + 10)
  -- @treturn[1] string path
  -- @treturn[1] number seconds recorded
  -- @treturn[1] string why it ended: "max", "silence", "dtmf" or "timeout"
  -- @return[2] nil, "hangup", path, seconds when the call ended (the recording is kept)
  -- @return[3] nil, error, "EIO" when the recording cannot be written
  -- @return[4] nil, reason without media ("the call has no media of ours (signalling only)", "no media negotiated yet"), or when the beep could not be played
  -- @raise "call:record: path must be a string"; "call:record: max_seconds must be positive";
  -- "call:record: silence_seconds must be positive";
  -- "call:record: expected a string of DTMF digits (0-9 * # A-D)" for a bad stop_on;
  -- "call:record: timeout must be a number of seconds from 0 to 1e9"; "call:record blocks, and cannot be called from a callback: ..." from a plain callback.
  function Call:record(path, opts)
    if type(path) ~= "string" or path == "" then error("call:record: path must be a string", 2) end
    opts = opts or {}
    local max = opts.max_seconds or 300
    if type(max) ~= "number" or max <= 0 then error("call:record: max_seconds must be positive", 2) end
    local stop = opts.stop_on
    if stop == nil then stop = "#" end
    if stop then stop = check_digits(stop, "call:record") end
    local silence = opts.silence_seconds
    if silence ~= nil and (type(silence) ~= "number" or silence <= 0) then
      error("call:record: silence_seconds must be positive", 2)
    end
    if opts.beep then
      local ok, why = self:play("beep")
      if not ok then return nil, why end
    end
    local s, why = media_of(self)
    if not s then return nil, why end
    self.record_done = nil
    self.record_seconds = nil
    local ok, err = s:record(path, max, silence)
    if not ok then return nil, err, "EIO" end
    local v, werr = self:_wait_until(function()
      if self.state == "terminated" then return "hangup" end
      if self.record_done then return self.record_done.err or "max" end
      if stop and take_digit(self, stop) then return "dtmf" end
    end, opts.timeout or (max + 10), "call:record")
    v = v or werr
    local seconds, serr
    if self.media_session and self.media_session == s then
      seconds, serr = s:stop_record(true)
    end
    if v == "hangup" then return nil, "hangup", path, seconds or self.record_seconds end
    if v ~= "max" and v ~= "dtmf" and v ~= "silence" and v ~= "timeout" then
      return nil, tostring(v), "EIO"
    end
    if not seconds and serr and v ~= "max" and v ~= "silence" then return nil, serr, "EIO" end
    return path, seconds or (self.record_seconds or max), v
  end

  --- Collect digits (the playAndGetDigits pattern).
  -- opts: max (default 1),
  -- min (default 1), timeout (s to the first digit after the prompt,
  -- default 5), inter_digit_timeout (default 3), terminators (default "#";
  -- not part of the result), prompt (a play source, interrupted by the
  -- first digit), retries (further attempts, default 2), invalid_prompt
  -- (played after a wrong entry), valid (a Lua pattern anchored at both
  -- ends, or fn(digits) -> bool), flush (drop digits typed earlier).
  -- Returns digits, terminator (or nil), or nil, "timeout" | "invalid" |
  -- "hangup".
  -- @tparam[opt] table opts options:
  -- @tparam[opt] number opts.max the most digits (default 1)
  -- @tparam[opt] number opts.min the fewest digits (default 1)
  -- @tparam[opt] number opts.timeout seconds to the first digit after the prompt (default 5)
  -- @tparam[opt] number opts.inter_digit_timeout seconds between digits (default 3)
  -- @tparam[opt] string|false opts.terminators digits that end the entry, not part of the result (default "#"; false: none)
  -- @tparam[opt] string|table opts.prompt a play source, interrupted by the first digit
  -- @tparam[opt] number opts.prompt_timeout the prompt's play timeout (see `Call:play`)
  -- @tparam[opt] number opts.retries further attempts (default 2)
  -- @tparam[opt] string|table opts.invalid_prompt a play source played after a wrong entry
  -- @tparam[opt] string|function opts.valid a Lua pattern anchored at both ends, or fn(digits) -> bool
  -- @tparam[opt] boolean opts.flush drop digits typed earlier
  -- @treturn[1] string the digits ("" only when min is 0)
  -- @treturn[1] string|nil the terminator that ended the entry, or nil
  -- @return[2] nil, "timeout" | "invalid" | "hangup"
  -- @raise "call:collect: options must be a table"; "call:collect: need 0 <= min <= max, max >= 1";
  -- "call:collect: expected a string of DTMF digits (0-9 * # A-D)" for bad terminators;
  -- "call:collect: valid must be a pattern or a function";
  -- "call:collect: timeout must be a number of seconds from 0 to 1e9"; "call:collect blocks, and cannot be called from a callback: ..." from a plain callback.
  function Call:collect(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("call:collect: options must be a table", 2) end
    local max, min = opts.max or 1, opts.min or 1
    if type(max) ~= "number" or max < 1 or type(min) ~= "number" or min < 0 or min > max then
      error("call:collect: need 0 <= min <= max, max >= 1", 2)
    end
    local terms = opts.terminators
    if terms == nil then terms = "#" end
    if terms then terms = check_digits(terms, "call:collect") end
    local valid = opts.valid
    if valid ~= nil and type(valid) ~= "string" and type(valid) ~= "function" then
      error("call:collect: valid must be a pattern or a function", 2)
    end
    local timeout = opts.timeout or 5
    local inter = opts.inter_digit_timeout or 3
    local attempts = 1 + (opts.retries or 2)
    if opts.flush then self.digits = "" end
    local outcome = "timeout"
    for _ = 1, attempts do
      if self.state == "terminated" then return nil, "hangup" end
      if opts.prompt then
        local ok, why = self:play(opts.prompt, { stop_on_dtmf = true, timeout = opts.prompt_timeout })
        if not ok and why == "hangup" then return nil, "hangup" end
      end
      local got, term = "", nil
      while #got < max do
        local wait = #got == 0 and timeout or inter
        local d, why = self:_wait_until(function()
          if self.state == "terminated" then return "hangup" end
          return take_digit(self, true)
        end, wait, "call:collect")
        if d == "hangup" then return nil, "hangup" end
        if not d then
          if why ~= "timeout" then return nil, why end
          break
        end
        if terms and terms:find(d, 1, true) then term = d break end
        got = got .. d
      end
      local ok = #got >= min and #got <= max and (got ~= "" or term ~= nil or min == 0)
      if ok and valid then
        if type(valid) == "string" then ok = got:match("^" .. valid .. "$") ~= nil
        else ok = valid(got) and true or false end
      end
      if ok and (got ~= "" or min == 0) then return got, term end
      outcome = (got == "" and not term) and "timeout" or "invalid"
      if opts.invalid_prompt and outcome == "invalid" then
        local _, why = self:play(opts.invalid_prompt)
        if why == "hangup" then return nil, "hangup" end
      end
    end
    return nil, outcome
  end

  --- Send digits to the peer.
  -- They go as RFC 4733 events when telephone-event was
  -- negotiated, else SIP INFO (application/dtmf-relay). opts: duration
  -- (ms per digit, default 100), method ("rfc4733", "info" or "inband":
  -- tones in the audio, each digit followed by as long a pause).
  -- Waits until they are sent. Returns true, or nil, reason.
  -- @tparam string digits DTMF digits (0-9 * # A-D; a-d are taken as A-D)
  -- @tparam[opt] table opts options:
  -- @tparam[opt] number opts.duration ms per digit, from 40 to 5000 (default 100)
  -- @tparam[opt] string opts.method "rfc4733", "info" or "inband" (default: RFC 4733 when negotiated, else INFO)
  -- @tparam[opt] number opts.timeout seconds to wait for each INFO's response (default 32)
  -- @treturn[1] boolean true once they are sent
  -- @return[2] nil, "hangup" when the call ended
  -- @return[3] nil, "telephone-event was not negotiated" with method "rfc4733"
  -- @return[4] nil, "no media session" with method "inband" and no media
  -- @return[5] nil, reason when in-band tones cannot be sent, or "timeout" when the events were not sent in time
  -- @return[6] nil, reason, status when an INFO failed (as `Call:info`)
  -- @raise "call:dtmf: expected a string of DTMF digits (0-9 * # A-D)";
  -- "call:dtmf: duration from 40 to 5000 ms"; 'call:dtmf: method must be "rfc4733", "info" or "inband"';
  -- "call:dtmf blocks, and cannot be called from a callback: ..." from a plain callback (or "call:info blocks, ...").
  function Call:dtmf(digits, opts)
    digits = check_digits(digits, "call:dtmf")
    opts = opts or {}
    local ms = opts.duration or 100
    if type(ms) ~= "number" or ms < 40 or ms > 5000 then error("call:dtmf: duration from 40 to 5000 ms", 2) end
    local method = opts.method
    if method ~= nil and method ~= "rfc4733" and method ~= "info" and method ~= "inband" then
      error('call:dtmf: method must be "rfc4733", "info" or "inband"', 2)
    end
    if self.state == "terminated" then return nil, "hangup" end
    local s = self.media_session
    if method ~= "info" and s and s:codec() then
      self.dtmf_sent = nil
      local inband = method == "inband"
      local ok, err = s:send_dtmf(digits, ms, inband)
      if not ok and inband then return nil, err end
      if ok then
        local v, why = self:_wait_until(function()
          if self.state == "terminated" then return "hangup" end
          if self.dtmf_sent then return "sent" end
        end, #digits * (ms * (inband and 2 or 1) + 80) / 1000 + 2, "call:dtmf")
        if v == "sent" then return true end
        return nil, v or why
      end
    end
    if method == "rfc4733" then return nil, "telephone-event was not negotiated" end
    if method == "inband" then return nil, "no media session" end
    -- no telephone-event: one INFO per digit (RFC 2976 transport)
    for i = 1, #digits do
      local ok, why, code = self:info("application/dtmf-relay",
        string.format("Signal=%s\r\nDuration=%d\r\n", digits:sub(i, i), ms), { timeout = opts.timeout })
      if not ok then
        if self.state == "terminated" then return nil, "hangup" end
        return nil, why, code
      end
    end
    return true
  end

  --- Call fn(call, digit, source, ms) for each digit the peer sends.
  -- The source is "rfc4733", "inband" or "info". Returns a handle with :remove().
  -- This is call:on("dtmf", fn).
  -- @tparam function fn called as fn(call, digit, source, ms)
  -- @treturn table a handle: its :remove() unsubscribes fn
  -- @raise "call:on_dtmf: expected a function" when fn is not a function.
  function Call:on_dtmf(fn)
    if type(fn) ~= "function" then error("call:on_dtmf: expected a function", 2) end
    return self:on("dtmf", fn)
  end

  --- RTP statistics of the call's media (nil without media).
  -- Packets and bytes each way, lost, jitter_ms, rtt_ms, remote_lost,
  -- remote_jitter_ms, rtcp_sent/received, malformed, late, concealed_ms,
  -- recovered_ms (Opus in-band FEC).
  -- After the call ended: the figures at its end.
  -- The table also has unknown_pt, srtp_auth_fail, srtp_replay and latched
  -- (a boolean); rtt_ms and remote_lost/remote_jitter_ms only once RTCP
  -- reports have given them.
  -- @treturn table|nil the statistics, or nil without media
  function Call:stats()
    local s = self.media_session
    if not s then return self.final_stats end
    return s:stats()
  end

  --- Digits received and not yet used by a verb (and clear them).
  -- @treturn string the digits ("" when there are none)
  function Call:take_digits()
    local d = self.digits or ""
    self.digits = ""
    return d
  end

  --- Relay audio (and RFC 4733 digits) between this call and `other`.
  -- It runs until either ends, or opts.timeout (s, default 3600). Both calls keep
  -- running afterwards unless hung up. Returns true when the other call
  -- ended, or nil, "hangup" | "timeout" | reason.
  -- @tparam luasip.call other the other call
  -- @tparam[opt] table opts options:
  -- @tparam[opt] number opts.timeout seconds (default 3600)
  -- @treturn[1] boolean true when the other call ended, or the bridge was ended (`Call:unbridge`)
  -- @return[2] nil, "hangup" | "timeout" when this call ended, or at the timeout
  -- @return[3] nil, "the other call ended" when it had ended before
  -- @return[4] nil, reason when either call has no media ("the call has no media of ours (signalling only)", "no media negotiated yet"), or the two cannot be bridged
  -- @raise "call:bridge: expected a call"; "call:bridge: timeout must be a number of seconds from 0 to 1e9";
  -- "call:bridge blocks, and cannot be called from a callback: ..." from a plain callback.
  function Call:bridge(other, opts)
    if getmetatable(other) ~= getmetatable(self) then error("call:bridge: expected a call", 2) end
    opts = opts or {}
    local a, why = media_of(self)
    if not a then return nil, why end
    local b, why2 = media_of(other)
    if not b then return nil, why2 == "hangup" and "the other call ended" or why2 end
    local ok, err = a:bridge(b)
    if not ok then return nil, err end
    self.bridged_to, other.bridged_to = other, self
    local function relay(to)
      return function(_, digit, source)
        local s = to.media_session
        if source == "rfc4733" and s then s:send_dtmf(digit) end
      end
    end
    local h1, h2 = self:on("dtmf", relay(other)), other:on("dtmf", relay(self))
    local h3 = other:on("hangup", function() self:_poke() end)
    local v, werr = self:_wait_until(function()
      if self.state == "terminated" then return "hangup" end
      if other.state == "terminated" then return "other" end
      if not a:bridged() then return "unbridged" end
    end, opts.timeout or 3600, "call:bridge")
    h1.remove() h2.remove() h3.remove()
    if self.media_session == a then a:bridge(nil) end
    if self.bridged_to == other then self.bridged_to = nil end
    if other.bridged_to == self then other.bridged_to = nil other:_poke() end
    if v == "other" or v == "unbridged" then return true end
    return nil, v or werr
  end

  --- End a bridge this call is in (the bridge() waiting on it returns).
  function Call:unbridge()
    local s = self.media_session
    if s then s:bridge(nil) end
    local peer = self.bridged_to
    self:_poke()
    if peer then peer:_poke() end
  end

  --- Send the peer's audio back to it.
  -- It runs until the call ends, a digit in
  -- opts.stop_on arrives, or opts.timeout (s, default 3600).
  -- Returns the digit, or nil, "hangup" | "timeout".
  -- @tparam[opt] table opts options:
  -- @tparam[opt] string opts.stop_on digits that stop it (default: none)
  -- @tparam[opt] number opts.timeout seconds (default 3600)
  -- @treturn[1] string the digit that stopped it
  -- @return[2] nil, "hangup" | "timeout"
  -- @return[3] nil, reason without media ("the call has no media of ours (signalling only)", "no media negotiated yet")
  -- @raise "call:echo: expected a string of DTMF digits (0-9 * # A-D)" for a bad stop_on;
  -- "call:echo: timeout must be a number of seconds from 0 to 1e9"; "call:echo blocks, and cannot be called from a callback: ..." from a plain callback.
  function Call:echo(opts)
    opts = opts or {}
    local stop = opts.stop_on and check_digits(opts.stop_on, "call:echo")
    local s, why = media_of(self)
    if not s then return nil, why end
    self.play_id = (self.play_id or 0) + 1
    s:echo(true)
    local v, err = self:_wait_until(function()
      if self.state == "terminated" then return "hangup" end
      if stop then
        local d = take_digit(self, stop)
        if d then self.echo_digit = d return "dtmf" end
      end
    end, opts.timeout or 3600, "call:echo")
    if self.media_session == s then s:echo(false) end
    if v == "dtmf" then return self.echo_digit end
    return nil, v or err
  end
end
