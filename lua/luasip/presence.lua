--- Presence on the user-agent side (SIMPLE): publishing our own state
-- with PUBLISH (RFC 3903) in PIDF (RFC 3863) with RPID activities
-- (RFC 4480).
-- The UA's `ua:publish_presence()` comes here; it returns a `Publication`.
--
-- nua keeps the publication: it refreshes it before it expires (with the
-- entity tag, SIP-If-Match, and no body), and removes it with Expires: 0.
-- Updates and removals name the tag themselves, and challenges are
-- answered here, whatever the algorithm: nua forgets the tag when a
-- PUBLISH is challenged.
-- @module luasip.presence
local core = require "luasip.core"
local log = require "luasip.log"

local M = {}

local PIDF = "application/pidf+xml"

--- Now as an RFC 3339 date-time in UTC (PIDF timestamps, isComposing's lastactive).
-- @treturn string e.g. "2024-05-01T12:00:00Z"
function M.timestamp()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local Publication = { __name = "luasip.publication" }
Publication.__index = Publication

function Publication:__tostring()
  return string.format("luasip.publication (%s, %s)", self.state, self.etag or "no etag")
end

--- The PIDF document for opts.
-- opts `{ basic = "open" | "closed", note =, activities = { "away", ... } }`:
-- one tuple with the UA's contact and the note, and the activities in an
-- RPID person element; what `ua:publish_presence` sends and
-- `watcher:accept/notify{ presence = }`.
-- @param ua the luasip.ua UA whose AOR and contact it names
-- @tparam table opts the state:
-- @tparam[opt] string opts.basic "open" (default) or "closed"
-- @tparam[opt] string opts.note a note
-- @tparam[opt] table opts.activities RPID activities (a list of strings), e.g. { "away" }
-- @tparam[opt] string what the name errors are raised for (default "presence.document")
-- @tparam[opt] number level the error level, as error()'s (default 2)
-- @treturn string the PIDF document (XML)
-- @raise "what: ..." at `level` on bad options: `WHAT: presence must be a table`,
-- `WHAT: basic must be "open" or "closed"`, `WHAT: note must be a string`,
-- `WHAT: activities must be a list of strings`, or what the PIDF builder refuses.
function M.document(ua, opts, what, level)
  level = (level or 2) + 1
  what = what or "presence.document"
  if type(opts) ~= "table" then error(what .. ": presence must be a table", level) end
  local basic = opts.basic or "open"
  if basic ~= "open" and basic ~= "closed" then error(what .. ': basic must be "open" or "closed"', level) end
  if opts.note ~= nil and type(opts.note) ~= "string" then error(what .. ": note must be a string", level) end
  if opts.activities ~= nil and type(opts.activities) ~= "table" then
    error(what .. ": activities must be a list of strings", level)
  end
  local ok, xml = pcall(core.pidf_build, {
    entity = ua.aor,
    tuples = { { id = "luasip", basic = basic, contact = ua.contact, note = opts.note,
                 timestamp = M.timestamp() } },
    activities = opts.activities,
  })
  if not ok then error(what .. ": " .. tostring(xml):gsub("^core%.pidf_build: ", ""), level) end
  return xml
end

function Publication:_event(name, status, phrase, msg)
  if (name ~= "r_publish" and name ~= "r_unpublish") or status < 200 then return end
  if self.ua:_retry_auth(self, status, msg, "PUBLISH", name:sub(3), true) then return end
  self.status, self.reason = status, phrase
  if status >= 200 and status < 300 then
    self.etag = msg and msg:header("SIP-ETag") or self.etag
    self.state = name == "r_unpublish" and "removed" or "published"
  elseif not self.waiting then
    -- a refresh nua sent by itself failed: the publication is gone
    log.warn("publication of %s: refresh failed: %d %s", self.ua.aor, status, tostring(phrase))
    self.state = "failed"
  end
  if self.waiting then self.waiting(status, phrase, msg) end
end

-- Send a PUBLISH (method "publish" or "unpublish") and wait for its answer.
function Publication:_send(method, send, timeout, what)
  local status, phrase = self.ua:_transact(self, method, send, timeout, what)
  if status == nil then return nil, phrase, "timeout" end
  if status >= 200 and status < 300 then return self end
  if method == "publish" and self.state ~= "published" then self.state = "failed" end
  return nil, phrase, status
end

--- A publication of our presence, as `ua:publish_presence{...}` returns it.
-- Fields: `pub.state` ("publishing", "published", "failed", "removed"),
-- `pub.etag` (the entity tag of the last 2xx), `pub.status` and
-- `pub.reason` (of the last answer), `pub.uri`. nua refreshes it before it
-- expires; a refresh that fails makes it "failed".
-- @type Publication

--- Change what is published (the same options as `ua:publish_presence`).
-- A PUBLISH with the entity tag of the last one. Of those options it takes
-- basic, note, activities and timeout.
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.basic "open" (default) or "closed"
-- @tparam[opt] string opts.note a note
-- @tparam[opt] table opts.activities RPID activities, e.g. { "away" }
-- @tparam[opt] number opts.timeout seconds to wait for the answer (default 32)
-- @treturn[1] Publication the publication
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in
--   time; nil, "publication removed" after remove())
-- @raise on misuse: `publication:update: basic must be "open" or "closed"`, ...
-- (as `document`).
-- @usage pub:update{ basic = "open", note = "back", activities = {} }
function Publication:update(opts)
  opts = opts or {}
  if self.state == "removed" then return nil, "publication removed" end
  return self:_send("publish", { event = "presence", content_type = PIDF, if_match = self.etag,
    body = M.document(self.ua, opts, "publication:update") }, opts.timeout, "publication:update")
end

--- Remove the publication (PUBLISH with Expires: 0).
-- The publication is let go whatever the answer; removing a removed one
-- does nothing.
-- @tparam[opt] number timeout seconds to wait for the answer (default 32)
-- @treturn[1] Publication the publication
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in time)
function Publication:remove(timeout)
  if self.state == "removed" then return self end
  local ok, why, status = self:_send("unpublish", { event = "presence", if_match = self.etag }, timeout,
                                     "publication:remove")
  self.state = "removed"
  if self.h:alive() then self.h:close() end
  return ok, why, status
end

--- @section end

--- Publish the presence of `ua`: what `ua:publish_presence` does.
-- `ua:publish_presence{ basic = "open" | "closed", note =, activities =`
-- `{ "away", ... }, expires = 3600, to =` (default: the UA's AOR)`, timeout }`
-- @param ua the luasip.ua UA
-- @tparam[opt] table opts options:
-- @tparam[opt] string opts.basic "open" (default) or "closed"
-- @tparam[opt] string opts.note a note
-- @tparam[opt] table opts.activities RPID activities, e.g. { "away", ... }
-- @tparam[opt] number opts.expires seconds (default 3600)
-- @tparam[opt] string opts.to the presentity (default: the UA's AOR)
-- @tparam[opt] number opts.timeout seconds to wait for the answer (default 32)
-- @treturn[1] Publication the publication (fields state, etag, status; methods update,
--   remove)
-- @return[2] nil, reason, status on failure (status "timeout" when no answer came in time)
-- @raise on misuse: `ua:publish_presence: expected a table of options`,
-- `ua:publish_presence: expires must be a positive number`, and the errors of
-- `document` (`ua:publish_presence: basic must be "open" or "closed"`, ...).
function M.publish(ua, opts)
  opts = opts or {}
  local what = "ua:publish_presence"
  if type(opts) ~= "table" then error(what .. ": expected a table of options", 2) end
  local expires = opts.expires or 3600
  if type(expires) ~= "number" or expires < 1 then error(what .. ": expires must be a positive number", 2) end
  local body = M.document(ua, opts, what)
  local to = opts.to or ua.aor
  -- one Call-ID for the publication's requests (RFC 3903 asks none, but
  -- nua would otherwise change it between the first and the next)
  local call_id = core.hash("MD5", string.format("%s %s %.6f %d", ua.aor, to, core.now(), math.random(1e9))):sub(1, 24)
  local h = assert(ua.core:handle { to = to, from = ua.from, call_id = call_id .. "@luasip" })
  local pub = setmetatable({ ua = ua, h = h, uri = to, state = "publishing" }, Publication)
  ua.objs[h] = pub
  h:on_collect("destroy")
  return pub:_send("publish", { event = "presence", content_type = PIDF, body = body, uri = to,
                                expires = tostring(math.floor(expires)) }, opts.timeout, what)
end

return M
