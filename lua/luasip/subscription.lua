--- Event subscriptions on the user-agent side (RFC 6665): subscribing to
-- another UA's state (presence, RFC 3856; message-summary, RFC 3842; any
-- other package raw), and serving subscriptions to our own.
-- The UA's ua:subscribe() and ua:on("subscribe") come here: ua:subscribe()
-- returns a `Subscription`, and the "subscribe" handler gets a `Watcher`.
--
-- nua keeps both sides going. As subscriber it refreshes the subscription
-- before it expires and answers every NOTIFY itself (200, before the
-- application sees it: a malformed body can only be reported, not
-- refused); after a NOTIFY with Subscription-State: terminated;
-- reason=deactivated or probation it subscribes again by itself, at once
-- or after retry-after (RFC 6665 §4.1.3). As notifier it leaves the first
-- SUBSCRIBE to us (an application method), answers refreshes and the
-- unsubscription (Expires: 0) 200 itself and repeats the last NOTIFY with
-- the new state, and ends the subscription with a NOTIFY when it expires.
-- @module luasip.subscription
local core = require "luasip.core"
local task = require "luasip.task"
local log = require "luasip.log"
local presence = require "luasip.presence"

local M = {}

-- What we accept, and send, for the packages we know.
local TYPES = {
  presence = "application/pidf+xml",
  ["message-summary"] = "application/simple-message-summary",
}

local TOKEN = "^[%w%-%.!%%%*_%+`'~]+$"

-- nua grants at most NUTAG_SUB_EXPIRES (default 3600 s) to a subscriber.
local MAX_EXPIRES = 3600

-- Run fn(...) in a task; an error is logged, never raised into the loop.
local function run(what, fn, ...)
  task.spawn(function(...)
    local ok, err = pcall(fn, ...)
    if not ok and err ~= task.CANCELLED then log.error("%s failed: %s", what, tostring(err)) end
  end, ...)
end

local function failure(status, phrase)
  return nil, phrase, status or (phrase == "timeout" and "timeout" or "closed")
end

-- Subscription-State: state;expires=N;reason=R;retry-after=N (RFC 6665 §8.2.3)
local function subscription_state(value)
  local t = {}
  if type(value) ~= "string" then return t end
  t.state = (value:match("^%s*([%w%-]+)") or ""):lower()
  for k, v in value:gmatch(";%s*([%w%-]+)%s*=%s*([^;%s]+)") do
    k = k:lower()
    if k == "reason" then t.reason = v:lower()
    elseif k == "expires" then t.expires = tonumber(v)
    elseif k == "retry-after" then t.retry_after = tonumber(v) end
  end
  return t
end

--- Parse a message-summary body (RFC 3842).
-- Into `{ waiting = true | false, account =,`
-- `voice = { new =, old =, urgent_new =, urgent_old = }, ... }`: one table
-- per message-context class (voice, fax, pager, multimedia, text, none)
-- that has a line.
-- Tolerant and bounded: unknown or malformed lines are skipped, the
-- optional message headers after the first blank line are ignored, at most
-- 4 KiB and 64 lines are read; never raises.
-- @tparam string body the body (anything else reads as `{ waiting = false }`)
-- @treturn table the summary
-- @usage
-- local s = subscription.message_summary("Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/1)\r\n")
-- -- s.waiting == true; s.voice.new == 2, s.voice.old == 8, s.voice.urgent_old == 1
function M.message_summary(body)
  local t = { waiting = false }
  if type(body) ~= "string" then return t end
  local lines = 0
  for line in (body:sub(1, 4096) .. "\n"):gmatch("([^\n]*)\n") do
    lines = lines + 1
    if lines > 64 then break end
    line = line:gsub("\r$", "")
    if line:match("^%s*$") then
      if lines > 1 then break end
    else
      local name, value = line:match("^%s*([%w%-]+)%s*:%s*(.-)%s*$")
      name = name and name:lower()
      if name == "messages-waiting" then
        t.waiting = value:lower() == "yes"
      elseif name == "message-account" then
        t.account = value
      elseif name then
        local class = name:match("^(%a+)%-message$")
        local new, old, rest = value:match("^(%d%d?%d?%d?%d?%d?%d?%d?%d?)%s*/%s*(%d%d?%d?%d?%d?%d?%d?%d?%d?)%s*(.*)$")
        if class and new and class ~= "waiting" and class ~= "account" then
          local unew, uold = rest:match("^%(%s*(%d%d?%d?%d?%d?%d?%d?%d?%d?)%s*/%s*(%d%d?%d?%d?%d?%d?%d?%d?%d?)%s*%)")
          t[class] = { new = tonumber(new), old = tonumber(old),
                       urgent_new = tonumber(unew) or 0, urgent_old = tonumber(uold) or 0 }
        end
      end
    end
  end
  return t
end

-- -------------------------------------------------------------------------
-- Subscriber: ua:subscribe()

local Subscription = { __name = "luasip.subscription" }
Subscription.__index = Subscription

function Subscription:__tostring()
  return string.format("luasip.subscription (%s, %s): %s", self.event, self.state, self.uri)
end

-- The options of our SUBSCRIBEs.
function Subscription:_options(expires)
  return { event = self.event, expires = tostring(expires), accept = self.accept, headers = self.headers }
end

function Subscription:_close()
  self.ua.subscriptions[self] = nil
  if self.h:alive() then self.h:close() end
end

-- The state table of a NOTIFY (msg nil: nua gave up waiting for one).
function Subscription:_state(status, msg, info)
  if not msg then
    return { state = "terminated", reason = status == 408 and "timeout" or "failed", status = status,
             event = self.event }
  end
  local ss = subscription_state(msg:header("Subscription-State"))
  local st = {
    state = ss.state, reason = ss.reason, expires = ss.expires, retry_after = ss.retry_after,
    event = msg:header("Event") or self.event, content_type = msg.content_type, body = msg.body,
    msg = msg,
  }
  if not ss.state then
    st.state = info.substate or "active" -- RFC 3265 §3.2.4: no header
  elseif ss.state == "terminated" and info.substate ~= "terminated" then
    st.state, st.resubscribing = "pending", true -- deactivated, probation: nua subscribes again
  elseif ss.state ~= "pending" and ss.state ~= "terminated" then
    st.state = "active" -- extensions count as active, as nua takes them
  end
  local body, kind = st.body, st.event:match("^%s*([^;%s]+)")
  local ctype = (st.content_type or ""):lower()
  if body and body ~= "" and (ctype == "" or ctype == TYPES[kind]) then
    if kind == "presence" then
      -- lenient: a tuple whose basic status is neither open nor closed
      -- (baresip's "?") has basic = nil rather than failing the document
      local p, err = core.pidf_parse(body, true)
      st.presence, st.error = p, err and ("malformed PIDF: " .. err) or nil
    elseif kind == "message-summary" then
      st.summary = M.message_summary(body)
    end
  end
  return st
end

function Subscription:_terminated(st)
  if self.state == "terminated" then return end
  self.state, self.reason = "terminated", st.reason
  self.ua.subscriptions[self] = nil
  run("subscription callback", self.fn, st)
  if not self.waiting then return self:_close() end
  -- the wait in progress closes it; an unsubscription is complete
  if self.unsubscribing then self.waiting(200, "OK") end
end

function Subscription:_event(name, status, phrase, msg, info)
  if name == "i_notify" then
    local st = self:_state(status, msg, info)
    if st.expires then self.expires = st.expires end
    if st.state == "terminated" then return self:_terminated(st) end
    self.state = st.state
    return run("subscription callback", self.fn, st)
  end
  if (name ~= "r_subscribe" and name ~= "r_unsubscribe") or status < 200 then return end
  if self.ua:_retry_auth(self, status, msg, "SUBSCRIBE", name:sub(3)) then return end
  self.status = status
  local waiting = self.waiting
  if name == "r_unsubscribe" then
    self.unsubscribed = status < 300
    -- a 2xx waits for the final NOTIFY
    if status >= 300 and waiting then waiting(status, phrase) end
  elseif status < 300 then
    self.established = true
    self.expires = tonumber(msg and msg:header("Expires")) or self.expires
    if waiting then waiting(status, phrase) end
  elseif not self.established then
    if waiting then waiting(status, phrase) end -- ua:subscribe() reports it
  else
    -- a refresh failed (nua's, sub:refresh() or the re-subscription
    -- after deactivated/probation): the subscription is over
    self:_terminated { state = "terminated", reason = "failed", status = status, event = self.event }
    if waiting then waiting(status, phrase) end
  end
end

--- A subscription of ours, as `ua:subscribe()` returns it.
-- Fields: `sub.state` ("init" until the first NOTIFY, then "active",
-- "pending" or "terminated"), `sub.expires`, `sub.event`, `sub.uri`,
-- `sub.reason` (why it terminated), `sub.status` (of the last answer to a
-- SUBSCRIBE). The UA keeps its subscriptions until they end; closing the
-- UA ends them.
-- @type Subscription

--- Refresh now (SUBSCRIBE in the dialog), asking for `expires` seconds.
-- A refusal ends the subscription.
-- @tparam[opt] number expires seconds (default: what was asked last)
-- @treturn[1] Subscription the subscription
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in 32 s,
--   "closed" when the UA closed; no status when the subscription had terminated)
-- @raise `subscription:refresh: expires must be a positive number`
function Subscription:refresh(expires)
  if expires ~= nil and (type(expires) ~= "number" or expires < 1) then
    error("subscription:refresh: expires must be a positive number", 2)
  end
  if self.state == "terminated" then return nil, "subscription terminated" end
  self.asked = math.floor(expires or self.asked)
  local status, phrase = self.ua:_transact(self, "subscribe", self:_options(self.asked), nil,
                                           "subscription:refresh")
  if self.state == "terminated" then self:_close() end
  if status and status < 300 then return self end
  return failure(status, phrase)
end

--- End the subscription: SUBSCRIBE with Expires: 0.
-- Then wait (up to `timeout` s, default 5) for the notifier's final
-- NOTIFY, which the callback sees.
-- A subscription that already terminated is only let go.
-- @tparam[opt] number timeout seconds (default 5)
-- @return[1] true once the notifier agreed (2xx, or 481: it knew no such subscription)
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in time,
--   "closed" when the UA closed)
function Subscription:unsubscribe(timeout)
  if self.state == "terminated" or self.unsubscribing then
    self:_close()
    return true
  end
  self.unsubscribing = true
  local status, phrase = self.ua:_transact(self, "unsubscribe", {}, timeout or 5, "subscription:unsubscribe")
  self.state = "terminated"
  self:_close()
  if (status and (status < 300 or status == 481)) or (not status and self.unsubscribed) then return true end
  return failure(status, phrase)
end
Subscription.close = Subscription.unsubscribe

--- Same as `Subscription:unsubscribe`.
-- @function Subscription:close
-- @tparam[opt] number timeout seconds (default 5)
-- @return[1] true once the notifier agreed
-- @return[2] nil, reason, status on failure

-- The UA closed: its stack ends the subscription.
function Subscription:_closed_by_ua()
  self.state = "terminated"
  if self.waiting then self.waiting(nil, "user agent closed") end
end

--- @section end

--- Subscribe `ua` to `event` at uri: what ua:subscribe() does.
-- ua:subscribe(uri, event, fn, opts) (checked by the UA): see UA:subscribe.
-- @param ua the luasip.ua UA
-- @tparam string uri the sip: or sips: URI to subscribe to
-- @tparam string event the event package (a token)
-- @tparam function fn fn(state), run in a task for every NOTIFY
-- @tparam table opts options (a table, already checked by the UA):
-- @tparam[opt] number opts.expires seconds (default 3600)
-- @tparam[opt] table opts.headers extra headers
-- @tparam[opt] number opts.timeout s to wait for the answer (default 32)
-- @tparam[opt] string opts.accept the Accept value (default the package's type)
-- @treturn[1] Subscription the subscription once the SUBSCRIBE got its 2xx
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in
--   time, "closed" when the UA closed)
-- @raise on misuse: `ua:subscribe: uri must be a sip: or sips: URI`,
-- `ua:subscribe: event must be an event package name (a token)`,
-- `ua:subscribe: expected a callback function`,
-- `ua:subscribe: expires must be a positive number`,
-- `ua:subscribe: accept must be a string`.
function M.subscribe(ua, uri, event, fn, opts)
  local what = "ua:subscribe"
  if type(uri) ~= "string" or not uri:match("^sips?:") then error(what .. ": uri must be a sip: or sips: URI", 3) end
  if type(event) ~= "string" or not event:match(TOKEN) then
    error(what .. ": event must be an event package name (a token)", 3)
  end
  if type(fn) ~= "function" then error(what .. ": expected a callback function", 3) end
  local expires = opts.expires or 3600
  if type(expires) ~= "number" or expires < 1 then error(what .. ": expires must be a positive number", 3) end
  if opts.accept ~= nil and type(opts.accept) ~= "string" then error(what .. ": accept must be a string", 3) end
  local h = assert(ua.core:handle { to = uri, from = ua.from })
  local sub = setmetatable({
    ua = ua, h = h, uri = uri, event = event, fn = fn, state = "init",
    asked = math.floor(expires), expires = math.floor(expires),
    accept = opts.accept or TYPES[event], headers = opts.headers,
  }, Subscription)
  ua.objs[h] = sub
  ua.subscriptions[sub] = true
  local send = sub:_options(sub.asked)
  send.uri = uri
  local status, phrase = ua:_transact(sub, "subscribe", send, opts.timeout, what)
  if status and status < 300 then
    if sub.state == "terminated" then sub:_close() end
    return sub
  end
  sub.state = "terminated"
  sub:_close()
  return failure(status, phrase)
end

-- -------------------------------------------------------------------------
-- Notifier: ua:on("subscribe", fn(watcher))

--- The Allow-Events value for the packages a "subscribe" handler serves.
-- @tparam[opt] table packages a list of tokens (default presence and message-summary)
-- @tparam string what the name errors are raised for, e.g. "ua:on"
-- @treturn string the Allow-Events value, e.g. "presence, message-summary"
-- @raise for `what` on anything else: `WHAT: event packages must be a list`,
-- `WHAT: event packages must be tokens such as "presence"`.
function M.allow_events(packages, what)
  packages = packages or { "presence", "message-summary" }
  if type(packages) ~= "table" or #packages == 0 then error(what .. ": event packages must be a list", 3) end
  for _, p in ipairs(packages) do
    if type(p) ~= "string" or not p:match(TOKEN) then
      error(what .. ': event packages must be tokens such as "presence"', 3)
    end
  end
  return table.concat(packages, ", ")
end

local Watcher = { __name = "luasip.watcher" }
Watcher.__index = Watcher

function Watcher:__tostring()
  return string.format("luasip.watcher (%s, %s): %s", self.event, self.state, tostring(self.from))
end

local function requested(msg)
  return math.min(tonumber(msg and msg:header("Expires")) or MAX_EXPIRES, MAX_EXPIRES)
end

-- The end of the subscription, once: state "terminated" and on_end.
function Watcher:_ended(why)
  if self.ended then return end
  self.ended, self.state = why, "terminated"
  if self.on_end then run("watcher on_end", self.on_end, self, why) end
end

-- The UA holds the watcher until its handle closes: after the last NOTIFY
-- is answered, so collecting it cannot cut that short.
function Watcher:_close()
  self.ua.watchers[self] = nil
  if self.h:alive() then self.h:close() end
end

-- The body and content type of a NOTIFY from opts (body, content_type,
-- presence), checked before anything is sent: raises "what: ..." for the
-- script that called accept or notify.
function Watcher:_body(opts, what)
  local body, ctype = opts.body, opts.content_type
  if opts.presence ~= nil then
    if body ~= nil then error(what .. ": give body or presence, not both", 3) end
    if self.event ~= "presence" then error(what .. ": presence = is for the presence package", 3) end
    body = presence.document(self.ua, opts.presence, what, 3)
  end
  if body ~= nil and type(body) ~= "string" then error(what .. ": body must be a string", 3) end
  ctype = ctype or (body and TYPES[self.event])
  if body and type(ctype) ~= "string" then error(what .. ": content_type needed for a body of " .. self.event, 3) end
  return body, ctype
end

-- Send a NOTIFY with body, ctype and Subscription-State `state` (nua
-- adds the expiry) and wait (up to timeout s) for its answer.
function Watcher:_notify(body, ctype, state, timeout, what)
  local queue = self.notifies
  local status, phrase = task.wait(function(done)
    queue[#queue + 1] = done
    self.h:send("notify", { event = self.event_header, subscription_state = state, body = body,
                            content_type = body and ctype or nil })
    return function(reason)
      if not reason then return end
      for i, d in ipairs(queue) do if d == done then table.remove(queue, i) break end end
    end
  end, timeout or 32, what)
  if status and status < 300 then return true end
  return failure(status, phrase)
end

local function check_state(state, what)
  if state ~= "active" and state ~= "pending" then error(what .. ': state must be "active" or "pending"', 3) end
end

--- A subscription to us, as the UA's "subscribe" handler gets it.
-- Fields: `watcher.event` (the package), `watcher.from` (the subscriber's
-- URI), `watcher.msg` (the last SUBSCRIBE), `watcher.expires`,
-- `watcher.state` ("received", then "active" | "pending", then
-- "terminated"). Set `watcher.on_end = fn(watcher, why)` to learn, once,
-- how it ended: why is "unsubscribed", "expired", "terminated" (by us),
-- "rejected", "failed" (a NOTIFY refused) or "closed" (the UA closed).
-- The handler answers with accept() or reject(); one that returns without
-- answering declines (603), one that raises gets 500.
-- @type Watcher

--- Accept the subscription: 200 (or 202 for "pending") and the first NOTIFY.
-- 202 is what an RFC 3265 subscriber reads as awaiting authorization;
-- RFC 6665 §8.3.1 has subscribers take both alike.
-- `watcher:accept([state])` or `watcher:accept{ state = "active" | "pending",`
-- `body =, content_type =, presence =, timeout = }` (`presence = { basic =,`
-- `note =, activities = }`: our PIDF document, as `ua:publish_presence`).
-- @tparam[opt] string|table opts the state ("active", the default, or "pending"), or options:
-- @tparam[opt] string opts.state "active" (default) or "pending"
-- @tparam[opt] string opts.body the body of the first NOTIFY
-- @tparam[opt] string opts.content_type its content type (default the package's: PIDF for
--   presence, application/simple-message-summary for message-summary)
-- @tparam[opt] table opts.presence `{ basic =, note =, activities = }`: our PIDF document
--   as the body (presence package only)
-- @tparam[opt] number opts.timeout seconds to wait for the NOTIFY's answer (default 32)
-- @return[1] true once the NOTIFY is answered
-- @return[2] nil, reason, status on failure (nil, "already answered" when the
--   subscription was answered before)
-- @raise on misuse: `watcher:accept: state must be "active" or "pending"`,
-- `watcher:accept: give body or presence, not both`,
-- `watcher:accept: presence = is for the presence package`,
-- `watcher:accept: body must be a string`,
-- `watcher:accept: content_type needed for a body of EVENT`, and
-- luasip.presence.document's errors for `presence`.
-- @usage
-- ua:on("subscribe", function(watcher)
--   watcher:accept{ presence = { basic = "open", note = "available" } }
-- end, { "presence" })
function Watcher:accept(opts)
  if type(opts) ~= "table" then opts = { state = opts } end
  local state = opts.state or "active"
  check_state(state, "watcher:accept")
  local body, ctype = self:_body(opts, "watcher:accept")
  if self.state ~= "received" then return nil, "already answered" end
  self.h:respond(state == "active" and 200 or 202)
  self.state = state
  return self:_notify(body, ctype, state, opts.timeout, "watcher:accept")
end

--- Refuse the subscription: reject(status [, reason]).
-- @tparam number status 300..699 (e.g. 403, 489 Bad Event)
-- @tparam[opt] string reason the reason phrase
-- @return[1] true
-- @return[2] nil, "already answered"
-- @raise `watcher:reject: status must be 300..699`
function Watcher:reject(status, reason)
  if type(status) ~= "number" or status < 300 or status > 699 then
    error("watcher:reject: status must be 300..699", 2)
  end
  if self.state ~= "received" then return nil, "already answered" end
  self.h:respond(status, reason)
  self:_ended("rejected")
  self:_close()
  return true
end

--- Send our state.
-- `watcher:notify(body [, content_type])` or `watcher:notify{ body =,`
-- `content_type =, presence =, state = "active" | "pending", timeout = }`
-- (`content_type` defaults to PIDF for presence and
-- application/simple-message-summary for message-summary). The NOTIFY
-- carries Subscription-State: state;expires=(what remains). A 481 ends the
-- subscription.
-- @tparam string|table body the body, or options:
-- @tparam[opt] string body.body the body
-- @tparam[opt] string body.content_type its content type (default the package's)
-- @tparam[opt] table body.presence `{ basic =, note =, activities = }`: our PIDF document as
--   the body (presence package only)
-- @tparam[opt] string body.state "active" or "pending" (default: as it is)
-- @tparam[opt] number body.timeout seconds to wait for the answer (default 32)
-- @tparam[opt] string content_type the body's content type, with a string body
-- @return[1] true once answered
-- @return[2] nil, reason, status on failure (nil, "subscription terminated" when it has
--   ended)
-- @raise on misuse: `watcher:notify: state must be "active" or "pending"`,
-- `watcher:notify: accept the subscription first`, and the body errors of
-- watcher:accept (`watcher:notify: body must be a string`, ...).
function Watcher:notify(body, content_type)
  local opts = type(body) == "table" and body or { body = body, content_type = content_type }
  if opts.state ~= nil then check_state(opts.state, "watcher:notify") end
  if self.state == "received" then error("watcher:notify: accept the subscription first", 2) end
  local body, ctype = self:_body(opts, "watcher:notify")
  if self.state == "terminated" then return nil, "subscription terminated" end
  self.state = opts.state or self.state
  return self:_notify(body, ctype, self.state, opts.timeout, "watcher:notify")
end

--- End the subscription: a NOTIFY with Subscription-State: terminated;reason=`reason`.
-- Ending a terminated subscription does nothing.
-- @tparam[opt] string reason a token (default "noresource"; "deactivated" or "probation"
--   ask the subscriber to subscribe again, RFC 6665 §4.1.3)
-- @tparam[opt] number timeout seconds to wait for the answer (default 32)
-- @return[1] true once answered
-- @return[2] nil, reason, status on failure
-- @raise on misuse: `watcher:terminate: reason must be a token such as "noresource"`,
-- `watcher:terminate: not accepted: use watcher:reject()`.
function Watcher:terminate(reason, timeout)
  reason = reason or "noresource"
  if type(reason) ~= "string" or not reason:match(TOKEN) then
    error('watcher:terminate: reason must be a token such as "noresource"', 2)
  end
  if self.state == "received" then error("watcher:terminate: not accepted: use watcher:reject()", 2) end
  if self.state == "terminated" then return true end
  self.state, self.ending = "terminated", "terminated"
  return self:_notify(nil, nil, "terminated;reason=" .. reason, timeout, "watcher:terminate")
end

function Watcher:_event(name, status, phrase, msg, info)
  if name == "i_subscribe" and status >= 200 then
    -- a refresh or the unsubscription: nua answered and NOTIFYs
    self.msg, self.expires = msg, requested(msg)
    if info.substate == "terminated" then self:_ended("unsubscribed") end
  elseif name == "r_notify" and status >= 200 then
    local done = table.remove(self.notifies, 1)
    if status >= 300 then self.ending = self.ending or "failed" end
    if info.substate == "terminated" then
      -- the last NOTIFY: ours, nua's at expiry or after the unsubscription
      self:_ended(self.ending or "expired")
      self:_close()
    end
    if done then done(status, phrase) end
  end
end

-- The UA closed: its stack sends the final NOTIFY.
function Watcher:_closed_by_ua()
  self:_ended("closed")
  local queue = self.notifies
  self.notifies = {}
  for _, done in ipairs(queue) do done(nil, "user agent closed") end
end

--- @section end

--- A new SUBSCRIBE on handle h: offered to fn(watcher) in a task (none: 489).
-- The handler answers with accept() or reject(); one that returns
-- without answering declines (603), one that raises gets 500. The UA calls
-- it for each new SUBSCRIBE; scripts use ua:on("subscribe", fn).
-- @param ua the luasip.ua UA
-- @param h the SUBSCRIBE's handle (luasip.core)
-- @param msg the SUBSCRIBE
-- @tparam[opt] function fn the "subscribe" handler, fn(watcher)
function M.incoming(ua, h, msg, fn)
  h:adopt()
  local event = msg:header("Event") or ""
  local w = setmetatable({
    ua = ua, h = h, msg = msg, event = event:match("^%s*([^;%s]*)"), event_header = event,
    from = msg.from and msg.from.uri.str, expires = requested(msg), state = "received", notifies = {},
  }, Watcher)
  ua.objs[h] = w
  if not fn then return w:reject(489, "Bad Event") end
  ua.watchers[w] = true
  task.spawn(function()
    local ok, err = pcall(fn, w)
    if not ok and err ~= task.CANCELLED then log.error("subscribe handler failed: %s", tostring(err)) end
    if w.state == "received" then
      if ok then w:reject(603, "Decline") else w:reject(500, "Server Internal Error") end
    end
  end)
end

return M
