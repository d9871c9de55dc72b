--- A call (one INVITE dialog) of a luasip.ua.
-- See README.md, "Calls". `ua:call(uri, opts)` places one; an incoming
-- call comes to the UA's "call" handler.
--
-- State follows sofia's call states: "calling", "proceeding" (1xx
-- received), "received" (incoming, not answered), "early" (1xx sent),
-- "completing"/"completed" (2xx sent or received, ACK pending), "ready"
-- (confirmed), "terminating", "terminated".
--
-- Events (call:on(name, fn)): see `Call:on`.
--
-- The methods that wait (answer, hangup, hold, the IVR verbs, ...) yield
-- when called in a task and drive the loop when called at top level. Called
-- from a plain callback they raise "WHAT blocks, and cannot be called from
-- a callback: run the code in luasip.spawn(function() ... end)"; a timeout
-- that is not a number of seconds raises "WHAT: timeout must be a number of
-- seconds from 0 to 1e9" (WHAT names the method, e.g. "call:answer").
--
-- The IVR verbs (play, say, record, collect, dtmf, bridge, echo, ...) are
-- methods of the call too, defined in luasip.ivr (see "ivr Functions").
-- Each verb waits (yields in a task; drives the loop at top level), takes
-- a timeout, and returns nil, "hangup" when the call ends under it, after
-- releasing what it started (a tone stops, a recording is finalised).
-- Digits the caller types are kept in the order they came (RFC 4733
-- events, or SIP INFO dtmf-relay) until a verb uses them, so callers who
-- know the menu can type ahead.
-- @classmod luasip.call
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"
local sdp = require "luasip.sdp"
local media = require "luasip.media"

local Call = { __name = "luasip.call" }
Call.__index = Call

function Call:__tostring()
  return string.format("luasip.call (%s %s, %s)", self.direction, self.remote_uri or "?", self.state)
end

-- The SDP a message carries, or nil.
local function sdp_of(msg)
  return msg and msg.content_type == "application/sdp" and msg.body or nil
end

local function new(ua, h, direction)
  return setmetatable({
    ua = ua, h = h, direction = direction, state = "init",
    listeners = {}, waiters = {},
  }, Call)
end

-- Call.outgoing and Call.incoming make the call objects of a UA (luasip.ua
-- calls them): not for scripts.
function Call.outgoing(ua, h, uri, opts)
  local c = new(ua, h, "out")
  c.remote_uri = uri
  c.opts = opts
  return c
end

function Call.incoming(ua, h, msg, info)
  local c = new(ua, h, "in")
  c.request = msg
  c.call_id = msg.call_id
  c.remote_tag = msg.from and msg.from.tag
  c.from = msg.from
  c.to = msg.to
  c.remote_uri = msg.from and msg.from.uri.str
  c.remote_sdp = sdp_of(msg)
  c.remote_target = msg.contact and msg.contact.uri.str
  c.state = "received"
  c.rel100_requested = (msg:header("Require") or ""):find("100rel", 1, true) ~= nil
  return c
end

-- -------------------------------------------------------------------------
-- Events and waiting

--- Subscribe fn(call, ...) to an event.
-- fn runs as a plain callback (wrap blocking work in `luasip.spawn`); an
-- error it raises is logged. The events, and what fn gets after the call:
--
-- * "progress" (status, reason, msg): a 1xx to our INVITE
-- * "state" (state): the call state changed
-- * "answered": the call became "ready" the first time
-- * "hangup" (status, reason): the call ended
-- * "reinvite" (msg): a re-INVITE from the peer, already answered
-- * "update" (msg): an UPDATE from the peer, already answered (200 with our
--   answer to an offer, 491 when it crosses an offer of ours)
-- * "info" (msg): an INFO from the peer
-- * "message" (msg): a MESSAGE inside the dialog, answered 200
-- * "prack" (msg): a PRACK from the peer
-- * "refer" (target, msg): a REFER from the peer
-- * "transfer" (status, reason): NOTIFYs about a REFER this call sent
-- * "transferred" (call): the new call placed for a REFER we followed
-- * "dtmf" (digit, source, ms): a digit from the peer (see `Call:on_dtmf`)
-- @tparam string event the event name
-- @tparam function fn called as fn(call, ...) for each event
-- @treturn table a handle: its :remove() unsubscribes fn
-- @raise "call:on: expected a function" when fn is not a function.
-- @usage call:on("hangup", function(_, status, reason) print("ended", status, reason) end)
function Call:on(event, fn)
  if type(fn) ~= "function" then error("call:on: expected a function", 2) end
  local list = self.listeners[event]
  if not list then list = {} self.listeners[event] = list end
  local entry = { fn = fn }
  list[#list + 1] = entry
  return { remove = function()
    for i = #list, 1, -1 do if list[i] == entry then table.remove(list, i) end end
  end }
end

function Call:_emit(event, ...)
  local list = self.listeners[event]
  if list then
    for _, entry in ipairs(list) do
      local ok, err = pcall(entry.fn, self, ...)
      if not ok then log.error("call %s handler failed: %s", event, tostring(err)) end
    end
  end
  self:_poke()
end

-- Re-check every waiter's condition.
-- A waiter that is satisfied ends its wait, whose release removes it from
-- the list; the woken task may add new waiters meanwhile, hence the copy.
function Call:_poke()
  local list = {}
  for i, w in ipairs(self.waiters) do list[i] = w end
  for _, w in ipairs(list) do w.check() end
end

-- Wait until check() returns a truthy value (returned), or timeout.
function Call:_wait_until(check, timeout, what)
  local v = check()
  if v then return v end
  return task.wait(function(done)
    local w
    w = { check = function()
      if w.fired then return end
      local r = check()
      if r then w.fired = true done(r) end
    end }
    table.insert(self.waiters, w)
    return function()
      for i = #self.waiters, 1, -1 do if self.waiters[i] == w then table.remove(self.waiters, i) end end
    end
  end, timeout, what)
end

--- Wait for the call to end.
-- @tparam[opt] number timeout seconds (default forever)
-- @treturn[1] boolean true once the call has ended
-- @return[2] nil, "timeout"
-- @raise "call:wait_hangup: timeout must be a number of seconds from 0 to 1e9";
-- "call:wait_hangup blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:wait_hangup(timeout)
  local v, why = self:_wait_until(function() return self.state == "terminated" end,
                                  timeout, "call:wait_hangup")
  if v then return true end
  return nil, why
end

-- Learn the dialog's identifiers from a message (cheap fields only: this
-- runs for every event).
local function note_dialog(self, msg)
  if not msg then return end
  if not self.call_id then self.call_id = msg.call_id end
  if self.direction == "out" then
    if not self.local_tag then self.local_tag = msg.from_tag end
    if not msg.is_request then
      local tag = msg.to_tag
      if tag then self.remote_tag = tag end
    end
  elseif not self.local_tag and msg.is_request then
    -- requests from the peer carry our tag in To
    local tag = msg.to_tag
    if tag and msg.from_tag == self.remote_tag then self.local_tag = tag end
  end
end

function Call:_event(name, status, phrase, msg, info)
  note_dialog(self, msg)
  if name == "i_state" then
    if self.deferred_invite and info.callstate == "terminated" and not self.answered then
      local send = self.deferred_invite
      self.deferred_invite = nil
      self.h:send("invite", send)
      return
    end
    if self.ack_response then
      -- the state that follows a 2xx to our re-INVITE says whether it
      -- carried an offer or an answer (nua knows what its INVITE had)
      local resp = self.ack_response
      self.ack_response = nil
      self:_ack(resp, info.offer_recv)
    end
    if self.reinvite_pending and self.final_status then self.reinvite_pending = nil end
    local old = self.state
    local st = info.callstate or self.state
    -- nua reports a ready call that sends an UPDATE as "calling" (and one
    -- that answers an UPDATE with a 1xx as "received"), though the
    -- dialog stays confirmed: keep it ready
    if old == "ready" and (st == "calling" or st == "received") then st = old end
    self.state = st
    if self.state == "terminated" then
      self.status = self.status or status
      self.reason = self.reason or phrase
      self:_forget()
      media.stop(self)
      -- the dialog is over: release the handle now rather than at collection
      if self.h:alive() then self.h:on_collect("destroy") self.h:close() end
    end
    if (self.state == "ready" or self.state == "completing") and self.cancelled and not self.bye_sent then
      -- the 200 crossed our CANCEL: sofia ACKed it, so end the call now
      self.bye_sent = true
      self.h:send("bye")
    end
    if self.state ~= old then
      if self.state == "ready" and not self.answered then
        self.answered = true
        self:_emit("answered")
      end
      self:_emit("state", self.state)
      if self.state == "terminated" then self:_emit("hangup", status, phrase) end
    end
    self:_poke()
  elseif name == "r_invite" then
    -- an answered incoming call ACKs its re-INVITEs itself, at the next state
    local acked_later = self.acks and status >= 200 and status < 300
    if acked_later then self.ack_response = msg end
    self.last_status, self.last_reason, self.last_response = status, phrase, msg
    if (status == 401 or status == 407) and self.invite_send and
       self.ua:_authorize(self.h, msg, self.auth_attempt or 1, "INVITE",
                          self.answered and self.remote_target or self.remote_uri,
                          self.answered and self.reinvite_send or self.invite_send, function(send)
         if self.answered then
           self.h:send("invite", send) -- a re-INVITE: the dialog stays up
         else
           -- sofia ends the INVITE it could not authorize itself: send the
           -- new one (same handle, so same Call-ID and a higher CSeq) once
           -- that first attempt has terminated
           self.deferred_invite = send
         end
       end) then
      self.auth_attempt = (self.auth_attempt or 1) + 1
      return
    end
    if (status == 401 or status == 407) and not self.answered then
      -- nothing more to try: report the challenge as the failure, and have
      -- sofia end the request it keeps waiting for credentials (it answers
      -- credentials it cannot use with an internal 9xx, ignored below)
      self.final_status, self.final_reason = status, phrase
      self.status, self.reason = status, phrase
      self.auth_failed = true
      if self.h:alive() then self.h:authenticate("") end
      self:_poke()
      return
    end
    if status >= 900 and self.auth_failed then return end
    if status >= 200 and status < 300 and msg and not self.remote_target then
      -- the remote target: where in-dialog requests go (RFC 3261 §12.1.2)
      self.remote_target = msg.contact and msg.contact.uri.str
    end
    if status < 300 and sdp_of(msg) and not acked_later then
      self:_remote_description(msg.body) -- the answer to our offer
    end
    if status < 200 then
      self:_emit("progress", status, phrase, msg)
    else
      self.final_status, self.final_reason = status, phrase
      -- a failed re-INVITE ends here; a successful one at the next state
      if status >= 300 then self.reinvite_pending = nil end
      self:_poke()
    end
  elseif name == "i_invite" then
    -- a re-INVITE from the peer: answered here (nua leaves it to us when
    -- it does no offer/answer), then reported
    self:_answer_reinvite(msg)
    self:_emit("reinvite", msg)
  elseif name == "i_ack" then
    -- the answer to an offer we made in a 2xx (the peer's INVITE had none)
    if sdp_of(msg) then
      self:_remote_description(msg.body)
    end
  elseif name == "i_update" then
    self:_answer_update(msg)
    self:_emit("update", msg)
  elseif name == "i_info" then
    if msg then self:_info_dtmf(msg) end
    self:_emit("info", msg)
  elseif name == "i_message" then
    self:_emit("message", msg) -- answered 200 by the binding
  elseif name == "i_prack" then
    self.prack_seen = true
    self:_emit("prack", msg)
  elseif name == "i_refer" then
    self:_incoming_refer(msg, info)
  elseif name == "i_notify" then
    if msg and msg.content_type == "message/sipfrag" and msg.body then
      local st, re = msg.body:match("^SIP/2%.0 (%d%d%d) ?([^\r\n]*)")
      if st then
        self.transfer_status = tonumber(st)
        self:_emit("transfer", tonumber(st), re)
      end
    end
  elseif name == "r_bye" and not self.hangup_by then
    -- a BYE nobody asked for: sofia's session timer expired (RFC 4028 §10)
    self.hangup_by = "local"
    self.session_expired = true
    self.status, self.reason = 408, "Session timeout"
  elseif name == "i_bye" then
    self.status, self.reason = 200, "BYE"
    self.hangup_by = "remote"
  elseif name == "i_cancel" then
    self.status, self.reason = 487, "CANCEL"
    self.hangup_by = "remote"
  elseif name:match("^r_") then
    local r = self.pending and self.pending[name]
    if r and status >= 200 then
      if (status == 401 or status == 407) and
         self.ua:_authorize(self.h, msg, r.attempt, name:sub(3):upper(), self.remote_target or self.remote_uri,
                            r.send, function(send) self.h:send(name:sub(3), send) end) then
        r.attempt = r.attempt + 1
        return
      end
      self.pending[name] = nil
      r.done(status, phrase, msg)
    end
  end
end

-- -------------------------------------------------------------------------
-- UAC

function Call:_start(opts, extra)
  self.explicit_sdp = opts.sdp or self.ua.offer
  local offer, why, code = self:_local_offer()
  if not offer then
    self.state = "terminated"
    self:_forget()
    self.h:close()
    return nil, why, code
  end
  local send = {
    content_type = "application/sdp",
    body = offer,
    headers = opts.headers,
    session_timer = opts.session_timer,
    early_media = true,
    uri = self.remote_uri,
    contact = self.ua:_contact(),
  }
  if opts.rel100 == "required" then send.require = "100rel" end
  for k, v in pairs(extra or {}) do send[k] = v end
  if opts.on_progress then
    self:on("progress", opts.on_progress)
  end
  self.state = "calling"
  self.invite_send = send
  local ok, err = pcall(self.h.send, self.h, "invite", send)
  if not ok then
    -- options sofia cannot send (a bad header): no call was started
    self.state = "terminated"
    self:_forget()
    self.h:close()
    error(err, 0)
  end
  local v, why = self:_wait_until(function()
    if self.state == "ready" or self.state == "completing" then return "answered" end
    if self.state == "terminated" then return "failed" end
    if self.final_status and self.final_status >= 300 and self.state ~= "authenticating" then
      return "failed"
    end
  end, opts.timeout or 60, "ua:call")
  if v == "answered" then return self end
  if not v then
    -- timeout (or interrupted): CANCEL and let the dialog end
    self:hangup()
    return nil, why or "timeout", "timeout", self
  end
  return nil, self.final_reason or self.reason or "failed", self.final_status or self.status, self
end

-- The call has ended: the UA lets go of it.
function Call:_forget()
  self.ua.calls[self] = nil
  self.ua.held[self] = nil
end

-- The UA closed under the call: its stack ended the dialog without
-- telling us, so end the object here.
function Call:_closed_by_ua()
  if self.state == "terminated" then return end
  self.state = "terminated"
  self.status, self.reason = self.status or 503, self.reason or "User agent closed"
  self.hangup_by = self.hangup_by or "local"
  self:_forget()
  media.stop(self)
  self:_emit("state", self.state)
  self:_emit("hangup", self.status, self.reason)
end

--- CANCEL a call that was not answered yet.
-- @treturn boolean true when the CANCEL was asked for; false for an incoming call or one that has ended
function Call:cancel()
  if self.direction ~= "out" or self.state == "terminated" then return false end
  self.cancelled = true
  if self.h:alive() then self.h:send("cancel") end
  return true
end

-- -------------------------------------------------------------------------
-- UAS

local function check_incoming(self, what)
  if self.direction ~= "in" then error("call:" .. what .. ": not an incoming call", 3) end
end

--- Send 180 Ringing, or 183 with SDP.
-- With {early_media=true} send 183 with SDP (reliably
-- when the caller asked for 100rel, or rel100="required" in the UA).
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.early_media send 183 with SDP instead of 180
-- @tparam[opt] string opts.sdp the SDP to send (default: our answer to the peer's offer)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] boolean opts.rel100 send the 1xx reliably (Require: 100rel)
-- @treturn[1] boolean true
-- @return[2] nil, "call is STATE" when the call is no longer "received" or "early"
-- @return[3] nil, reason, status when no answer to the offer can be made: the call is then rejected with that status
-- @raise "call:ring: not an incoming call" for an outgoing call.
function Call:ring(opts)
  check_incoming(self, "ring")
  opts = opts or {}
  if self.state ~= "received" and self.state ~= "early" then return nil, "call is " .. self.state end
  local send = { headers = opts.headers, contact = self.ua:_contact() }
  local status = 180
  if opts.early_media then
    status = 183
    local body, why, code = self:_local_answer(opts.sdp)
    if not body then
      self:reject(code, why)
      return nil, why, code
    end
    send.content_type, send.body = "application/sdp", body
  end
  if opts.rel100 or self.ua.rel100 == "required" or
     (self.rel100_requested and self.ua.rel100) then
    send.require = "100rel"
  end
  self.h:respond(status, nil, send)
  return true
end

--- Answer with 200 OK and wait for the ACK.
-- Returns true, or nil, reason.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.sdp the SDP to send (default: our answer to the peer's offer)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the ACK (default 32)
-- @treturn[1] boolean true once the call is "ready" (at once when it already was)
-- @return[2] nil, "call is STATE" when the call is no longer "received" or "early"
-- @return[3] nil, reason, status when no answer to the offer can be made: the call is then rejected with that status
-- @return[4] nil, "hangup" when the call ended before the ACK
-- @return[5] nil, "timeout"
-- @raise "call:answer: not an incoming call" for an outgoing call;
-- "call:answer: timeout must be a number of seconds from 0 to 1e9";
-- "call:answer blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:answer(opts)
  check_incoming(self, "answer")
  opts = opts or {}
  if self.state == "ready" then return true end
  if self.state ~= "received" and self.state ~= "early" then return nil, "call is " .. self.state end
  local body, why, code = self:_local_answer(opts.sdp)
  if not body then
    self:reject(code, why)
    return nil, why, code
  end
  -- auto_ack off: the ACKs to our re-INVITEs are ours to send (Call:_ack),
  -- for one may have to carry an answer
  self.acks = true
  self.h:respond(200, nil, { content_type = "application/sdp", body = body, headers = opts.headers,
                            contact = self.ua:_contact(), auto_ack = false })
  local v, why = self:_wait_until(function()
    if self.state == "ready" then return "ready" end
    if self.state == "terminated" then return "hangup" end
  end, opts.timeout or 32, "call:answer")
  if v == "ready" then return true end
  return nil, v or why
end

--- Reject with status (default 486) and reason.
-- @tparam[opt] number status a SIP status from 300 to 699 (default 486)
-- @tparam[opt] string reason the reason phrase (default: the standard one)
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers
-- @treturn[1] boolean true
-- @return[2] nil, "call is STATE" when the call is no longer "received" or "early"
-- @raise "call:reject: not an incoming call" for an outgoing call;
-- "call:reject: status must be 300..699".
function Call:reject(status, reason, opts)
  check_incoming(self, "reject")
  status = status or 486
  if type(status) ~= "number" or status < 300 or status > 699 then
    error("call:reject: status must be 300..699", 2)
  end
  if self.state ~= "received" and self.state ~= "early" then return nil, "call is " .. self.state end
  self.h:respond(status, reason, opts and { headers = opts.headers })
  self.status, self.reason = status, reason
  return true
end

--- Redirect with 302 to the given contact URI(s).
-- @tparam string|table contacts a URI, or a list of URIs
-- @tparam[opt] number status the status to send (default 302)
-- @treturn boolean true
-- @raise "call:redirect: not an incoming call" for an outgoing call;
-- "call:redirect: expected a URI or a list of URIs".
function Call:redirect(contacts, status)
  check_incoming(self, "redirect")
  if type(contacts) == "string" then contacts = { contacts } end
  if type(contacts) ~= "table" or #contacts == 0 then
    error("call:redirect: expected a URI or a list of URIs", 2)
  end
  local list = {}
  for i, c in ipairs(contacts) do list[i] = c:match("^<") and c or ("<" .. c .. ">") end
  self.h:respond(status or 302, nil, { contact = table.concat(list, ", ") })
  return true
end

-- -------------------------------------------------------------------------
-- Either side

--- End the call.
-- BYE when answered, CANCEL before the answer for an
-- outgoing call, 603 Decline for an unanswered incoming one. Waits (up to
-- `timeout`, default 5 s) for the end when it can block.
-- @tparam[opt] number timeout seconds to wait for the end (default 5)
-- @treturn[1] boolean true when the call has ended (at once when it already had), or from a plain callback, where it does not wait
-- @return[2] nil, "timeout" when the call has not ended in time
-- @raise "call:wait_hangup: timeout must be a number of seconds from 0 to 1e9" (it waits with wait_hangup).
function Call:hangup(timeout)
  if self.state == "terminated" or not self.h:alive() then return true end
  if self.direction == "in" and (self.state == "received" or self.state == "early") then
    self.h:respond(603, "Decline")
  elseif self.direction == "out" and not self.answered and self.state ~= "completing" then
    self.cancelled = true
    self.h:send("cancel")
  else
    self.bye_sent = true
    self.h:send("bye")
  end
  self.hangup_by = self.hangup_by or "local"
  if task.current() or core.depth() == 0 then
    return self:wait_hangup(timeout or 5)
  end
  return true
end

-- Send an in-dialog request and wait for its final answer.
function Call:_transaction(method, opts, timeout, what)
  local early_uac = self.state == "proceeding" and self.remote_tag -- an early dialog
  if self.state ~= "ready" and self.state ~= "early" and self.state ~= "completing" and not early_uac then
    return nil, "call is " .. self.state
  end
  self.pending = self.pending or {}
  local key = "r_" .. method
  local status, phrase, msg = task.wait(function(done)
    self.pending[key] = { done = done, attempt = 1, send = opts or {} }
    self.h:send(method, opts)
    return function() if self.pending then self.pending[key] = nil end end
  end, timeout or 32, what)
  if not status then return nil, phrase, "timeout" end
  if status >= 200 and status < 300 then return msg or true, status end
  return nil, phrase, status
end

-- re-INVITE: r_invite carries the answer; reuse the UAC wait on final_status.
function Call:_reinvite(send, timeout, what)
  if self.state == "completed" or self.state == "completing" then
    -- a transaction of the peer's is finishing (ACK pending): let it
    self:_wait_until(function() return self.state ~= "completed" and self.state ~= "completing" end,
                     timeout or 32, what)
  end
  if self.state ~= "ready" then return nil, "call is " .. self.state end
  self.final_status = nil
  self.reinvite_pending = true
  self.reinvite_send = send
  self.auth_attempt = 1
  self.h:send("invite", send)
  local v, why = self:_wait_until(function()
    if self.final_status and not self.reinvite_pending then return self.final_status end
    if self.state == "terminated" then return -1 end
  end, timeout or 32, what)
  if not v then return nil, why, "timeout" end
  if v >= 200 and v < 300 then return true end
  return nil, self.final_reason or "failed", v
end

--- Put the call on hold.
-- A re-INVITE offering a=sendonly, or a=inactive when
-- the peer has us on hold (RFC 3264 §8.4, RFC 6337 §5.3).
-- @tparam[opt] number timeout seconds to wait for the answer (default 32)
-- @treturn[1] boolean true when the peer accepted it (2xx)
-- @return[2] nil, reason, status when the peer refused it (status is -1 when the call ended meanwhile)
-- @return[3] nil, "call is STATE" when the call is not "ready"
-- @return[4] nil, "timeout", "timeout"
-- @raise the reason when no offer can be made (e.g. "no RTP port: ...");
-- "call:hold: timeout must be a number of seconds from 0 to 1e9";
-- "call:hold blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:hold(timeout)
  self.on_hold = true
  return self:_reinvite(self:_offer_send(), timeout, "call:hold")
end

--- Take the call off hold (re-INVITE offering a=sendrecv).
-- @tparam[opt] number timeout seconds to wait for the answer (default 32)
-- @treturn[1] boolean true when the peer accepted it (2xx)
-- @return[2] nil, reason, status when the peer refused it (status is -1 when the call ended meanwhile)
-- @return[3] nil, "call is STATE" when the call is not "ready"
-- @return[4] nil, "timeout", "timeout"
-- @raise the reason when no offer can be made (e.g. "no RTP port: ...");
-- "call:unhold: timeout must be a number of seconds from 0 to 1e9";
-- "call:unhold blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:unhold(timeout)
  self.on_hold = false
  return self:_reinvite(self:_offer_send(), timeout, "call:unhold")
end

--- Send a re-INVITE.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.sdp the offer (default: a new offer of ours)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the answer (default 32)
-- @treturn[1] boolean true when the peer accepted it (2xx)
-- @return[2] nil, reason, status when the peer refused it (status is -1 when the call ended meanwhile)
-- @return[3] nil, "call is STATE" when the call is not "ready"
-- @return[4] nil, "timeout", "timeout"
-- @raise the reason when no offer of ours can be made (e.g. "no RTP port: ...");
-- "call:reinvite: timeout must be a number of seconds from 0 to 1e9";
-- "call:reinvite blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:reinvite(opts)
  opts = opts or {}
  local send = self:_offer_send(opts.sdp)
  send.headers = opts.headers
  return self:_reinvite(send, opts.timeout, "call:reinvite")
end

--- Send an UPDATE (RFC 3311).
-- Without options it is a session refresh
-- with no body; opts.offer = true sends a fresh offer of ours (as a
-- re-INVITE would), opts.sdp an offer given verbatim; opts.headers.
-- Returns the 2xx (its answer already applied), or nil, reason, status.
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.offer send a fresh offer of ours
-- @tparam[opt] string opts.sdp an offer to send verbatim
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the response (default 32)
-- @return[1] the 2xx response (true when there is none to give), status
-- @return[2] nil, reason, status when the peer refused it
-- @return[3] nil, "call is STATE" when the call has no dialog to send it in
-- @return[4] nil, "timeout", "timeout"
-- @raise the reason when no offer of ours can be made (e.g. "no RTP port: ...");
-- "call:update: timeout must be a number of seconds from 0 to 1e9";
-- "call:update blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:update(opts)
  opts = opts or {}
  local send = { headers = opts.headers }
  if opts.sdp or opts.offer then
    local o = self:_offer_send(opts.sdp)
    send.content_type, send.body = o.content_type, o.body
  end
  local ok, why, code = self:_transaction("update", send, opts.timeout, "call:update")
  local answer = send.body and ok and ok ~= true and sdp_of(ok)
  if answer then self:_remote_description(answer) end
  return ok, why, code
end

-- -------------------------------------------------------------------------
-- Offer/answer (RFC 3264). nua runs without soa: the call makes its
-- offers and answers here, from its media session (luasip.media), or
-- passes the SDP a script gave verbatim (explicit_sdp: a B2BUA relaying
-- one leg's description to the other).

-- Our next offer (a string), or nil, reason, code.
function Call:_local_offer()
  if self.explicit_sdp then
    self.local_sdp = self.explicit_sdp
    return self.explicit_sdp
  end
  local body, why, code = media.offer(self)
  if not body then return nil, why, code end
  self.local_sdp = body
  return body
end

-- What a re-INVITE or hold sends: an offer.
function Call:_offer_send(explicit)
  local body = explicit
  if body then self.local_sdp = body else body = assert(self:_local_offer()) end
  return { content_type = "application/sdp", body = body }
end

-- Our answer to the peer's offer (remote_sdp), or our offer when the peer
-- made none (it answers in the ACK). explicit: the SDP a script gave.
function Call:_local_answer(explicit)
  explicit = explicit or self.explicit_sdp or self.ua.offer
  if explicit then
    self.explicit_sdp = explicit
    self.local_sdp = explicit
    return explicit
  end
  if self.early_answer then return self.early_answer end -- the 183's, again in the 200
  local body, why, code
  if self.remote_sdp then
    body, why, code = media.answer(self, self.remote_sdp)
  else
    body, why, code = media.offer(self)
  end
  if not body then return nil, why, code end
  self.local_sdp = body
  if self.state == "received" or self.state == "early" then self.early_answer = body end
  return body
end

-- Can we answer the peer's INVITE offer? true, or nil, reason, status.
function Call:_check_offer()
  if not self.remote_sdp then return true end
  local ok, why, code
  if self.ua.offer or self.ua.media == false then
    -- passed on as it is: only its form matters
    ok, why = core.sdp_map(self.remote_sdp)
    if not ok and not why:match("^malformed") then ok = true end
    code = 400
  else
    -- a trial answer (no key is made: nothing is sent)
    ok, why, code = sdp.answer(self.remote_sdp, { codecs = self.ua.codecs,
      srtp = self.ua.srtp or "optional", key = function() return "-" end })
  end
  if ok then return true end
  if code == 400 then return nil, "Bad Session Description", 400 end
  return nil, why, code
end

-- A description from the peer: an answer to ours, or an offer we answer.
function Call:_remote_description(body)
  self.remote_sdp = body
  if not self.explicit_sdp then media.remote(self, body) end
end

-- Our answer to an offer of the peer's (in a re-INVITE, an UPDATE, or the
-- 2xx to an INVITE of ours that had none), or nil, reason, status. A
-- refused offer leaves the session as it was (RFC 3264 §8).
function Call:_answer_offer(offer)
  local body, why, code
  if self.explicit_sdp then
    body = self.local_sdp
  else
    body, why, code = media.answer(self, offer)
  end
  if not body then return nil, why, code or 488 end
  self.remote_sdp, self.local_sdp = offer, body
  return body
end

-- Answer the peer's request being handled: 200 with our description,
-- or, without one, the refusal (code, why).
function Call:_respond_sdp(body, why, code, contact)
  if not body then
    self.h:respond(code, why)
    return
  end
  self.h:respond(200, nil, { content_type = "application/sdp", body = body, contact = contact })
end

-- A re-INVITE from the peer: answer its offer, or offer when it has none.
function Call:_answer_reinvite(msg)
  local offer = sdp_of(msg)
  local body, why, code
  if offer then
    body, why, code = self:_answer_offer(offer)
  else
    body = self.explicit_sdp or self:_local_offer()
  end
  self:_respond_sdp(body, why, code, self.ua:_contact())
end

-- ACK the 2xx (msg) to a re-INVITE of ours (an answered incoming call,
-- whose handle has auto_ack off). nua's own session refresh (RFC 4028)
-- from the called side is a re-INVITE without an offer: the peer offers
-- in its 2xx (offer_recv), and the ACK carries our answer (RFC 3261
-- §13.2.1). An offer we cannot take is still ACKed, then the call ends
-- (RFC 3261 §13.3.1.4 asks the same of a UAS). Otherwise the 2xx's SDP
-- is the answer to our offer.
function Call:_ack(msg, offer_recv)
  local sdp_body = sdp_of(msg)
  if not (offer_recv and sdp_body) then
    self.h:send("ack")
    if sdp_body then self:_remote_description(sdp_body) end
    return
  end
  local body, why = self:_answer_offer(sdp_body)
  self.h:send("ack", body and { content_type = "application/sdp", body = body } or nil)
  if not body then
    self.status, self.reason = 488, why
    self:hangup()
  end
end

-- An UPDATE from the peer (RFC 3311), answered during its event: a
-- session refresh without a body gets a bare 200; an offer gets our
-- answer, 491 when it crosses an offer of ours, and 500 with Retry-After
-- while the peer's INVITE offer still waits for our answer (§5.2).
function Call:_answer_update(msg)
  local offer = sdp_of(msg)
  if not offer then
    self.h:respond(200)
    return
  end
  local ours = self.reinvite_pending or (self.pending and self.pending.r_update and self.pending.r_update.send.body)
    or (self.direction == "out" and not self.remote_sdp) -- our INVITE's offer, unanswered
  if ours then
    self.h:respond(491)
    return
  end
  if self.direction == "in" and (self.state == "received" or self.state == "early")
     and self.remote_sdp and not self.early_answer and not self.explicit_sdp then
    self.h:respond(500, "Overlapping Offer/Answer", { headers = { ["Retry-After"] = tostring(math.random(1, 9)) } })
    return
  end
  local body, why, code = self:_answer_offer(offer)
  if body and self.early_answer then self.early_answer = body end -- the 200 to the INVITE repeats the latest
  self:_respond_sdp(body, why, code)
end

--- Send INFO with a body.
-- For example "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n".
-- @tparam string content_type the body's Content-Type
-- @tparam string body the body
-- @tparam[opt] table opts options:
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the response (default 32)
-- @return[1] the 2xx response (true when there is none to give), status
-- @return[2] nil, reason, status when the peer refused it
-- @return[3] nil, "call is STATE" when the call has no dialog to send it in
-- @return[4] nil, "timeout", "timeout"
-- @raise "call:info: expected content type and body strings";
-- "call:info: timeout must be a number of seconds from 0 to 1e9";
-- "call:info blocks, and cannot be called from a callback: ..." from a plain callback.
-- @usage call:info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")
function Call:info(content_type, body, opts)
  if type(content_type) ~= "string" or type(body) ~= "string" then
    error("call:info: expected content type and body strings", 2)
  end
  opts = opts or {}
  return self:_transaction("info", { content_type = content_type, body = body, headers = opts.headers },
                           opts.timeout, "call:info")
end

--- The direction of our audio as negotiated.
-- "sendrecv", "sendonly", "recvonly" or "inactive", from the
-- last description we sent.
-- @treturn string|nil the direction; nil without a description with audio
function Call:direction_local() return sdp.direction(self.local_sdp) end
--- The direction of the peer's audio as negotiated.
-- "sendrecv", "sendonly", "recvonly" or "inactive", from the
-- last description the peer sent.
-- @treturn string|nil the direction; nil without a description with audio
function Call:direction_remote() return sdp.direction(self.remote_sdp) end

-- -------------------------------------------------------------------------
-- Transfer (RFC 3515, RFC 3891)

local function uri_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- Blind transfer: REFER the peer to target.
-- Waits for the REFER to be
-- accepted (202), then, with opts.wait (default true), for the final
-- NOTIFY of the transfer. Returns the final status of the new call
-- (e.g. 200), or nil, reason, status.
-- @tparam string target the URI the peer is to call
-- @tparam[opt] table opts options:
-- @tparam[opt] boolean opts.wait wait for the final NOTIFY (default true)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout seconds to wait for the 202, then again for the final NOTIFY (default 32)
-- @treturn[1] number the final status of the new call from the NOTIFYs (e.g. 200, or 486 when it failed; 200 when the peer hangs up first)
-- @treturn[2] number 202 with opts.wait = false
-- @return[3] nil, reason, status when the REFER was refused
-- @return[4] nil, "call is STATE" when the call has no dialog to send it in
-- @return[5] nil, "timeout", "timeout"
-- @raise "call:refer: target must be a string";
-- "call:refer: timeout must be a number of seconds from 0 to 1e9";
-- "call:refer blocks, and cannot be called from a callback: ..." from a plain callback.
function Call:refer(target, opts)
  if type(target) ~= "string" then error("call:refer: target must be a string", 2) end
  opts = opts or {}
  local refer_to = target:match("^<") and target or ("<" .. target .. ">")
  self.transfer_status = nil
  local ok, why, code = self:_transaction("refer", { refer_to = refer_to, headers = opts.headers },
                                          opts.timeout, "call:refer")
  if not ok then return nil, why, code end
  if opts.wait == false then return 202 end
  local st, why2 = self:_wait_until(function()
    if self.transfer_status and self.transfer_status >= 200 then return self.transfer_status end
    if self.state == "terminated" and self.hangup_by == "remote" then
      return self.transfer_status or 200
    end
  end, opts.timeout or 32, "call:refer")
  if not st then return nil, why2, "timeout" end
  return st
end

--- Attended transfer: REFER the peer of this call to the peer of `other`.
-- The REFER has Replaces naming the other dialog (RFC 3891).
-- @tparam luasip.call other the other call
-- @tparam[opt] table opts options, as for `Call:refer`
-- @return[1] as `Call:refer`
-- @return[2] nil, "the other call has no confirmed dialog"
-- @raise "call:transfer_to: expected a call"; and as `Call:refer`.
function Call:transfer_to(other, opts)
  if getmetatable(other) ~= Call then error("call:transfer_to: expected a call", 2) end
  if not (other.call_id and other.local_tag and other.remote_tag) then
    return nil, "the other call has no confirmed dialog"
  end
  local replaces = string.format("%s;to-tag=%s;from-tag=%s", other.call_id, other.remote_tag, other.local_tag)
  local target = other.remote_target or other.remote_uri
  target = target:gsub("^<(.*)>$", "%1")
  return self:refer(target .. "?Replaces=" .. uri_escape(replaces), opts)
end

-- An incoming REFER: nua answered 202. Place the new call, reporting its
-- progress to the referrer in NOTIFYs (sofia sends them for the call
-- made with notify_refer), and hang up this call once it is answered.
function Call:_incoming_refer(msg, info)
  local target = msg:header("Refer-To")
  if not target then return end
  target = target:match("^%s*<(.-)>") or target
  self:_emit("refer", target, msg)
  if not self.ua.accept_refer or self.refer_handled then return end
  self.refer_handled = true
  local ua, h = self.ua, self.h
  task.spawn(function()
    local headers_part = target:match("%?(.*)$")
    local uri = target:gsub("%?.*$", "")
    local extra = {}
    if headers_part then
      for k, v in headers_part:gmatch("([^&=]+)=([^&]*)") do
        v = v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)
        extra[#extra + 1] = k .. ": " .. v
      end
    end
    local ok, call = pcall(ua._place, ua, uri, { headers = #extra > 0 and extra or nil, timeout = 60 },
                           { notify_refer = h, refer_event = info.refer_event })
    if not ok then
      -- a Refer-To we cannot turn into a request (bad embedded headers):
      -- no call, and the REFER's subscription ends as failed
      log.warn("REFER to %s: cannot place the call", target)
      return
    end
    if call then
      call.referred_by = self
      ua.held[call] = true -- the UA keeps it: nobody else holds it
      self:_emit("transferred", call)
      self:hangup()
    end
  end)
end

require("luasip.ivr")(Call)

return Call
