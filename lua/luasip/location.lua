--- The location service: the registrar's bindings (AOR -> contacts) behind
-- one interface, whatever the backend.
--
-- URLs: "memory:" (the default) keeps bindings in this process only;
-- "sqlite:/path/file.db" keeps them in an SQLite (WAL) file, written by one
-- thread that commits concurrent changes together.
--
-- A binding is a table: `aor`, `contact` (the key within the AOR), `expires`
-- (absolute wall-clock seconds, os.time() based, may be fractional), `q` (nil
-- counts as 1.0), `call_id`, `cseq`, `path` (list of strings, or nil), `received`,
-- `user_agent`, `instance` (+sip.instance), `reg_id`, `updated` (wall-clock seconds;
-- set by the store when not given). Other fields are refused, so every
-- backend stores the same thing. Tables handed out are copies.
--
-- Lookups are served from memory for every backend and never block. A
-- change (apply, save, remove, expire) returns once it is durable, and only
-- then shows in lookups and reaches the on_change listeners, in commit
-- order. With a durable backend a change is a blocking verb: call it in a
-- task (every request handler is one) or at top level. `nil, "timeout"`
-- from a change means its outcome is unknown: should it commit later, the
-- view follows.
--
-- Options: see open (luasip.location(url, opts) is the same).
-- @module luasip.location
-- @usage
--   local loc = assert(require("luasip.location").open("sqlite:/var/lib/pbx/location.db"))
--   assert(loc:apply("sip:alice@example.com", {
--     set = { { contact = "sip:alice@192.0.2.4:5060", expires = os.time() + 3600,
--               call_id = cid, cseq = 7 } },
--   }))                                       -- returns once durable: now send 200
--   for _, b in ipairs(loc:lookup("sip:alice@example.com")) do ... end
local core = require "luasip.core"
local log = require "luasip.log"
local task = require "luasip.task"

local M = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

local Location = { __name = "luasip.location" }
Location.__index = Location

local Subscription = { __name = "luasip.location.subscription" }
Subscription.__index = Subscription

-- ------------------------------------------------------------------------
-- Bindings

local KNOWN = {
  aor = true, contact = true, expires = true, q = true, call_id = true, cseq = true,
  path = true, received = true, user_agent = true, instance = true, reg_id = true,
  updated = true,
}
local STRINGS = { "call_id", "received", "user_agent", "instance" }

local function finite(v)
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

local function integral(v)
  return finite(v) and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53
end

local function copy(b)
  local c = {}
  for k, v in pairs(b) do c[k] = v end
  if b.path then c.path = { unpack(b.path) } end
  return c
end

-- A checked copy of b saved under aor, or nil, message.
local function check_binding(aor, b, where, now)
  if type(b) ~= "table" then return nil, where .. " must be a table" end
  for k in pairs(b) do
    if not KNOWN[k] then return nil, where .. " has an unknown field '" .. tostring(k) .. "'" end
  end
  if b.aor ~= nil and b.aor ~= aor then
    return nil, where .. ".aor differs from the AOR it is saved under"
  end
  if type(b.contact) ~= "string" or b.contact == "" then
    return nil, where .. ".contact must be a non-empty string"
  end
  if not finite(b.expires) then
    return nil, where .. ".expires must be a number (absolute seconds, os.time() based)"
  end
  if b.q ~= nil and not (finite(b.q) and b.q >= 0 and b.q <= 1) then
    return nil, where .. ".q must be a number from 0 to 1, or nil"
  end
  for _, k in ipairs(STRINGS) do
    if b[k] ~= nil and type(b[k]) ~= "string" then
      return nil, where .. "." .. k .. " must be a string or nil"
    end
  end
  if b.cseq ~= nil and not integral(b.cseq) then return nil, where .. ".cseq must be an integer or nil" end
  if b.reg_id ~= nil and not integral(b.reg_id) then return nil, where .. ".reg_id must be an integer or nil" end
  if b.updated ~= nil and not finite(b.updated) then return nil, where .. ".updated must be a number or nil" end
  local path
  if b.path ~= nil then
    if type(b.path) ~= "table" then return nil, where .. ".path must be a list of strings or nil" end
    for i, p in ipairs(b.path) do
      if type(p) ~= "string" or p == "" or p:find("\n", 1, true) then
        return nil, where .. ".path[" .. i .. "] must be a non-empty one-line string"
      end
    end
    if #b.path > 0 then path = { unpack(b.path) } end
  end
  return {
    aor = aor, contact = b.contact, expires = b.expires, q = b.q, call_id = b.call_id,
    cseq = b.cseq, path = path, received = b.received, user_agent = b.user_agent,
    instance = b.instance, reg_id = b.reg_id, updated = b.updated or now,
  }
end

-- The checked form of apply's changes: { remove_all =, remove = {contact},
-- set = {binding} }, or nil, message. A binding already expired in `set`
-- is a removal.
local function check_changes(aor, changes, now)
  if type(changes) ~= "table" then return nil, "changes must be a table" end
  for k in pairs(changes) do
    if k ~= "set" and k ~= "remove" and k ~= "remove_all" then
      return nil, "changes has an unknown field '" .. tostring(k) .. "' (set, remove, remove_all)"
    end
  end
  local ops = { remove_all = false, remove = {}, set = {} }
  if changes.remove_all ~= nil then
    if type(changes.remove_all) ~= "boolean" then return nil, "changes.remove_all must be a boolean" end
    ops.remove_all = changes.remove_all
  end
  if changes.remove ~= nil then
    if type(changes.remove) ~= "table" then return nil, "changes.remove must be a list of contacts" end
    for i, c in ipairs(changes.remove) do
      if type(c) ~= "string" or c == "" then
        return nil, "changes.remove[" .. i .. "] must be a non-empty string"
      end
      ops.remove[#ops.remove + 1] = c
    end
  end
  if changes.set ~= nil then
    if type(changes.set) ~= "table" then return nil, "changes.set must be a list of bindings" end
    for i, b in ipairs(changes.set) do
      local c, err = check_binding(aor, b, "changes.set[" .. i .. "]", now)
      if not c then return nil, err end
      if c.expires <= now then
        ops.remove[#ops.remove + 1] = c.contact
      else
        ops.set[#ops.set + 1] = c
      end
    end
  end
  return ops
end

-- Best first: q descending (nil is 1.0), then the most recently updated.
local function better(a, b)
  local qa, qb = a.q or 1.0, b.q or 1.0
  if qa ~= qb then return qa > qb end
  if a.updated ~= b.updated then return a.updated > b.updated end
  return a.contact < b.contact
end

-- ------------------------------------------------------------------------
-- Backends: write_change(aor, ops, cb), write_expire(cutoff, cb), stats(),
-- close(); cb(true) once durable or cb(false, err). `sync` ones call cb
-- before returning. Loading happens at open.

local Memory = { sync = true, name = "memory" }
Memory.__index = Memory

function Memory.write_change(_, _, _, cb) cb(true) end
function Memory.write_expire(_, _, cb) cb(true) end
function Memory.stats() return {} end
function Memory.close() end

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS location_bindings (
  aor TEXT NOT NULL,
  contact TEXT NOT NULL,
  expires NOT NULL,
  q,
  call_id TEXT,
  cseq INTEGER,
  path TEXT,
  received TEXT,
  user_agent TEXT,
  instance TEXT,
  reg_id INTEGER,
  updated NOT NULL,
  PRIMARY KEY (aor, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS location_bindings_expires ON location_bindings (expires);
]]
-- (expires, q and updated have no declared type, so numbers come back as
-- they went in: integers as integers, fractions as fractions.)

local COLUMNS = "aor, contact, expires, q, call_id, cseq, path, received, user_agent, instance, reg_id, updated"
local SQL_UPSERT = "INSERT OR REPLACE INTO location_bindings (" .. COLUMNS .. ") VALUES " ..
  "(:aor, :contact, :expires, :q, :call_id, :cseq, :path, :received, :user_agent, :instance, :reg_id, :updated)"
local SQL_REMOVE = "DELETE FROM location_bindings WHERE aor = :aor AND contact = :contact"
local SQL_REMOVE_ALL = "DELETE FROM location_bindings WHERE aor = :aor"
local SQL_EXPIRE = "DELETE FROM location_bindings WHERE expires <= :cutoff"
local SQL_LOAD = "SELECT " .. COLUMNS .. " FROM location_bindings"

local Sqlite = { sync = false, name = "sqlite" }
Sqlite.__index = Sqlite

local function to_row(b)
  local row = {}
  for k, v in pairs(b) do row[k] = v end
  if b.path then row.path = table.concat(b.path, "\n") end
  return row
end

local function from_row(row)
  if row.path then
    local path = {}
    for p in row.path:gmatch("[^\n]+") do path[#path + 1] = p end
    row.path = #path > 0 and path or nil
  end
  return row
end

-- Open the database, drop expired rows, and return the backend and the
-- bindings it holds; or nil, message, code.
local function open_sqlite(path, opts, now)
  local db, err, code = core.sqlite(path, { busy_timeout = opts.busy_timeout })
  if not db then return nil, err, code end
  local ok
  ok, err, code = db:exec(SCHEMA)
  if ok then
    -- An expired binding must never come back after a restart.
    ok, err, code = db:exec(string.format("DELETE FROM location_bindings WHERE expires <= %.17g", now))
  end
  local rows
  if ok then
    rows, err, code = db:rows(SQL_LOAD)
  end
  if not rows then
    db:close()
    return nil, path .. ": " .. tostring(err), code
  end
  for i, row in ipairs(rows) do rows[i] = from_row(row) end
  return setmetatable({ db = db }, Sqlite), rows
end

local function write(db, stmts, cb)
  local ok, err = db:write(stmts, cb)
  if not ok then cb(false, err) end
end

function Sqlite:write_change(aor, ops, cb)
  local stmts = {}
  if ops.remove_all then stmts[#stmts + 1] = { SQL_REMOVE_ALL, { aor = aor } } end
  for _, c in ipairs(ops.remove) do stmts[#stmts + 1] = { SQL_REMOVE, { aor = aor, contact = c } } end
  for _, b in ipairs(ops.set) do stmts[#stmts + 1] = { SQL_UPSERT, to_row(b) } end
  write(self.db, stmts, cb)
end

function Sqlite:write_expire(cutoff, cb)
  write(self.db, { { SQL_EXPIRE, { cutoff = cutoff } } }, cb)
end

function Sqlite:stats()
  local s = self.db:stats()
  return { commits = s.commits, jobs = s.jobs }
end

-- Commits what is queued; the changes' callbacks run before it returns.
function Sqlite:close() self.db:close() end

-- ------------------------------------------------------------------------
-- The store

--- Parse a store URL ("memory:" or nil, "sqlite:/path"): kind, path, or
-- nil, message.
--
-- Shared by every store of this shape (luasip.store). "sqlite:///abs/file.db"
-- is read as "sqlite:/abs/file.db".
-- @tparam ?string url "memory:", "sqlite:/path/file.db", or nil (memory)
-- @treturn[1] string the kind: "memory" or "sqlite"
-- @treturn[1] ?string the file's path, for "sqlite"
-- @return[2] nil, message (not a string, no file path, or an unknown URL)
function M.parse_url(url)
  if url == nil or url == "memory:" then return "memory" end
  if type(url) ~= "string" then return nil, "url must be a string" end
  local path = url:match("^sqlite:(.*)$")
  if path then
    if path:sub(1, 3) == "///" then path = path:sub(3) end -- sqlite:///abs/file.db
    if path == "" then return nil, "sqlite: URL has no file path" end
    return "sqlite", path
  end
  return nil, "unknown store URL '" .. url .. "' (memory:, sqlite:/path/file.db)"
end

local function check_options(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return nil, "options must be a table" end
  for k, v in pairs(opts) do
    if k == "expire_interval" then
      if not (finite(v) and v >= 0.001 and v <= 1e9) then
        return nil, "expire_interval must be a number of seconds from 0.001 to 1e9"
      end
    elseif k == "timeout" or k == "busy_timeout" then
      if not (finite(v) and v >= 0 and v <= 3600) then
        return nil, k .. " must be a number of seconds from 0 to 3600"
      end
    else
      return nil, "unknown option '" .. tostring(k) .. "'"
    end
  end
  return opts
end

--- Open a location store (see the top).
--
-- Returns it, or nil, message, code. With sqlite the file's bindings are
-- loaded, the expired ones dropped. This is luasip.location(url, opts).
-- @tparam[opt="memory:"] string url "memory:" or "sqlite:/path/file.db"
-- @tparam[opt] table opts options:
-- @tparam[opt=1] number opts.expire_interval seconds between sweeps of expired bindings (0.001 to 1e9)
-- @tparam[opt=10] number opts.timeout seconds a change waits to be durable (0 to 3600)
-- @tparam[opt=5] number opts.busy_timeout sqlite: seconds to wait for another process's lock (0 to 3600)
-- @treturn[1] Location the store
-- @return[2] nil, "luasip.location: " .. message, code (an errno name, or "EIO" from SQLite)
-- @raise `luasip.location: MESSAGE` for a bad URL (`unknown store URL '...' (memory:, sqlite:/path/file.db)`, `url must be a string`, `sqlite: URL has no file path`) or bad options (`options must be a table`, `unknown option 'NAME'`, `expire_interval must be a number of seconds from 0.001 to 1e9`, `timeout must be a number of seconds from 0 to 3600` ...).
function M.open(url, opts)
  local kind, path = M.parse_url(url)
  if not kind then error("luasip.location: " .. path, 2) end
  local err
  opts, err = check_options(opts)
  if not opts then error("luasip.location: " .. err, 2) end
  local now = core.time()
  local backend, rows, code
  if kind == "sqlite" then
    backend, rows, code = open_sqlite(path, opts, now)
    if not backend then return nil, "luasip.location: " .. rows, code end
  else
    backend, rows = setmetatable({}, Memory), {}
  end
  local self = setmetatable({
    url = url or "memory:",
    backend = backend,
    aors = {},          -- aor -> contact -> binding (the view lookups read)
    n = 0,              -- bindings in the view, expired or not
    next_expiry = math.huge, -- no binding expires before this
    listeners = {},
    timeout = opts.timeout or 10,
  }, Location)
  for _, b in ipairs(rows) do
    local map = self.aors[b.aor]
    if not map then map = {} self.aors[b.aor] = map end
    map[b.contact] = b
    self.n = self.n + 1
    if b.expires < self.next_expiry then self.next_expiry = b.expires end
  end
  local interval = opts.expire_interval or 1
  self.timer = core.timer(function() self:_sweep() end)
  self.timer:start(interval, interval)
  return self
end

function Location:__tostring()
  return string.format("luasip.location (%s%s): %d bindings", self.url,
    self.closed and ", closed" or "", self.n)
end

local function check_open(self, what)
  if getmetatable(self) ~= Location then
    error("luasip.location: " .. what .. ": expected a location store (use ':')", 3)
  end
  if self.closed then error("luasip.location: " .. what .. ": used after close()", 3) end
end

local function check_aor(aor, what)
  if type(aor) ~= "string" or aor == "" then
    error("luasip.location: " .. what .. ": aor must be a non-empty string", 3)
  end
end

-- Tell every listener about each event; a failing listener is logged.
function Location:_emit(events)
  if #events == 0 or #self.listeners == 0 then return end
  local subs = { unpack(self.listeners) }
  for _, ev in ipairs(events) do
    for _, sub in ipairs(subs) do
      if sub.active then
        local ok, err = xpcall(sub.fn, debug.traceback, ev)
        if not ok then log.error("luasip.location: a change listener failed: %s", tostring(err)) end
      end
    end
  end
end

local function count_live(map, now)
  local n = 0
  if map then
    for _, b in pairs(map) do if b.expires > now then n = n + 1 end end
  end
  return n
end

local NO_EVENTS = {}     -- (never written to)

-- Apply durable ops to the view; returns the events (none are made when
-- nobody listens: this runs once per REGISTER).
function Location:_apply_view(aor, ops)
  local events = #self.listeners > 0 and {} or nil
  local map = self.aors[aor]
  local n = self.n
  local function drop(contact)
    local old = map and map[contact]
    if old then
      map[contact] = nil
      n = n - 1
      if events then events[#events + 1] = { aor = aor, kind = "remove", binding = old } end
    end
  end
  if ops.remove_all and map then
    local contacts = {}
    for c in pairs(map) do contacts[#contacts + 1] = c end
    table.sort(contacts)
    for _, c in ipairs(contacts) do drop(c) end
  end
  for _, c in ipairs(ops.remove) do drop(c) end
  local set = ops.set
  for i = 1, #set do
    local b = set[i]
    if not map then
      map = {}
      self.aors[aor] = map
    end
    if not map[b.contact] then n = n + 1 end
    map[b.contact] = b
    if b.expires < self.next_expiry then self.next_expiry = b.expires end
    if events then events[#events + 1] = { aor = aor, kind = "set", binding = b } end
  end
  self.n = n
  if map and next(map) == nil then self.aors[aor] = nil end
  if not events then return NO_EVENTS end
  local remaining = count_live(self.aors[aor], core.time())
  for _, ev in ipairs(events) do
    ev.binding = copy(ev.binding)
    ev.remaining = remaining
  end
  return events
end

-- Drop bindings expired at cutoff from the view; returns the events.
function Location:_expire_view(cutoff)
  local events, touched, min = {}, {}, math.huge
  for aor, map in pairs(self.aors) do
    for contact, b in pairs(map) do
      if b.expires <= cutoff then
        map[contact] = nil
        self.n = self.n - 1
        touched[aor] = true
        events[#events + 1] = { aor = aor, kind = "expire", binding = copy(b) }
      elseif b.expires < min then
        min = b.expires
      end
    end
  end
  for aor in pairs(touched) do
    if next(self.aors[aor]) == nil then self.aors[aor] = nil end
  end
  self.next_expiry = min
  local now = core.time()
  for _, ev in ipairs(events) do ev.remaining = count_live(self.aors[ev.aor], now) end
  return events
end

-- Are there bindings expired at cutoff? (Recomputes next_expiry if not.)
function Location:_has_expired(cutoff)
  if cutoff < self.next_expiry then return false end
  local min = math.huge
  for _, map in pairs(self.aors) do
    for _, b in pairs(map) do
      if b.expires <= cutoff then return true end
      if b.expires < min then min = b.expires end
    end
  end
  self.next_expiry = min
  return false
end

-- Make ops durable, then update the view and tell the listeners; cb(ok, err).
function Location:_commit(aor, ops, cb)
  self.backend:write_change(aor, ops, function(ok, err)
    if ok then self:_emit(self:_apply_view(aor, ops)) end
    if ok then cb(true) else cb(nil, err) end
  end)
end

function Location:_expire(cutoff, cb)
  if not self:_has_expired(cutoff) then return cb(0) end
  self.backend:write_expire(cutoff, function(ok, err)
    if not ok then return cb(nil, err) end
    local events = self:_expire_view(cutoff)
    self:_emit(events)
    cb(#events)
  end)
end

-- The timer's sweep: one expiry write at a time.
function Location:_sweep()
  if self.closed or self.sweeping then return end
  self.sweeping = true
  self:_expire(core.time(), function(n, err)
    self.sweeping = false
    if not n then log.warn("luasip.location: removing expired bindings failed: %s", tostring(err)) end
  end)
end

-- Run start(cb) and return what cb gets: at once for a synchronous backend,
-- otherwise through task.wait (a blocking verb).
-- (what: "module: verb"; shared with luasip.store.)
-- (internal: @local)
function M.wait_durable(sync, timeout, start, what, level)
  local results, waiter
  if not sync and not task.current() and core.depth() > 0 then
    error(what .. " blocks, and cannot be called from a callback: " ..
          "run it in luasip.spawn(function() ... end)", level + 1)
  end
  start(function(...)
    if waiter then return waiter(...) end
    results = pack(...)
  end)
  if results then return unpack(results, 1, results.n) end
  return task.wait(function(done)
    waiter = done
    return function() waiter = nil end
  end, timeout, what)
end

function Location:_wait(start, what, level)
  return M.wait_durable(self.backend.sync, self.timeout, start, "luasip.location: " .. what, level + 1)
end

--- A location store, made by open (or luasip.location).
--
-- Misuse of any method but close raises "luasip.location: VERB: expected
-- a location store (use ':')", or "luasip.location: VERB: used after
-- close()". A to-be-closed variable holding it closes it (__close).
-- @type Location

--- Unexpired bindings of aor, best first (q descending, then most recently
-- updated).
--
-- Never blocks.
-- @tparam string aor the address of record, such as "sip:alice@example.com"
-- @treturn table a list of bindings (copies); empty when there are none
-- @raise `luasip.location: lookup: aor must be a non-empty string`.
function Location:lookup(aor)
  check_open(self, "lookup")
  check_aor(aor, "lookup")
  local out = self:_live(aor, core.time())
  for i, b in ipairs(out) do out[i] = copy(b) end
  return out
end

-- Commit checked ops: returns true once durable, or nil, err.
local function commit(self, aor, ops, what, level)
  if not ops.remove_all and #ops.remove == 0 and #ops.set == 0 then return true end
  if self.backend.sync then             -- memory: no callbacks, no waiting
    self:_emit(self:_apply_view(aor, ops))
    return true
  end
  return self:_wait(function(cb) self:_commit(aor, ops, cb) end, what, level + 1)
end

local function apply(self, aor, changes, what)
  local ops, err = check_changes(aor, changes, core.time())
  if not ops then error("luasip.location: " .. what .. ": " .. err, 3) end
  return commit(self, aor, ops, what, 3)
end

-- For luasip.registrar, which builds its bindings itself from parsed
-- messages: the view's own tables, no copies (read them, never change
-- them), and a change whose ops need no checking ({ remove_all =,
-- remove = {contact}, set = {complete binding with aor and updated} };
-- each binding's expires is in the future).
function Location:_bindings(aor) return self.aors[aor] end

function Location:_apply_trusted(aor, ops)
  check_open(self, "apply")
  return commit(self, aor, ops, "apply", 2)
end

-- The unexpired bindings of aor best first, as the view's own tables
-- (lookup() without the copies).
function Location:_live(aor, now)
  local out = {}
  local map = self.aors[aor]
  if map then
    for _, b in pairs(map) do
      if b.expires > now then out[#out + 1] = b end
    end
    if #out > 1 then table.sort(out, better) end
  end
  return out
end

--- Change aor's bindings atomically.
--
-- `changes = { set = {binding, ...}, remove = {contact, ...}, remove_all = bool }`,
-- applied in the order `remove_all`, `remove`, `set`. Returns true once
-- durable, or nil, err (nothing changed). A binding in `set` that has
-- already expired is a removal. With a durable backend this is a blocking
-- verb; after nil, "timeout" the outcome is unknown (see the top).
-- @tparam string aor the address of record
-- @tparam table changes the changes:
-- @tparam[opt] {table,...} changes.set bindings to add or replace (see the top for their fields; aor may be left out)
-- @tparam[opt] {string,...} changes.remove contacts to remove
-- @tparam[opt=false] boolean changes.remove_all remove every binding of aor first
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise `luasip.location: apply: MESSAGE` for malformed changes (an unknown field, a bad binding: `changes.set[1].contact must be a non-empty string` ...) or aor (`aor must be a non-empty string`); from a plain callback, with a durable backend, `luasip.location: apply blocks, and cannot be called from a callback: run it in luasip.spawn(function() ... end)`.
function Location:apply(aor, changes)
  check_open(self, "apply")
  check_aor(aor, "apply")
  return apply(self, aor, changes, "apply")
end

--- Add or refresh one binding; like apply(aor, {set = {binding}}).
-- @tparam string aor the address of record
-- @tparam table binding the binding (see the top for its fields)
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise `luasip.location: save: binding MESSAGE` for a bad binding (such as `binding.contact must be a non-empty string`), `luasip.location: save: aor must be a non-empty string`; as apply from a plain callback.
function Location:save(aor, binding)
  check_open(self, "save")
  check_aor(aor, "save")
  local _, err = check_binding(aor, binding, "binding", 0)
  if err then error("luasip.location: save: " .. err, 2) end
  return apply(self, aor, { set = { binding } }, "save")
end

--- Remove one contact of aor, or all of them when contact is nil.
-- @tparam string aor the address of record
-- @tparam[opt] string contact the binding's contact; nil removes every binding of aor
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise `luasip.location: remove: contact must be a non-empty string or nil`, `luasip.location: remove: aor must be a non-empty string`; as apply from a plain callback.
function Location:remove(aor, contact)
  check_open(self, "remove")
  check_aor(aor, "remove")
  if contact ~= nil and (type(contact) ~= "string" or contact == "") then
    error("luasip.location: remove: contact must be a non-empty string or nil", 2)
  end
  if contact == nil then return apply(self, aor, { remove_all = true }, "remove") end
  return apply(self, aor, { remove = { contact } }, "remove")
end

--- Remove the bindings expired at `now` (default: the current time) and
-- tell the listeners ("expire" events).
--
-- Returns how many were removed, or nil, err. The store also does this by
-- itself every expire_interval.
-- @tparam[opt] number now wall-clock seconds, os.time() based (default: the current time)
-- @treturn[1] integer how many bindings were removed
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise `luasip.location: expire: now must be a number (os.time() based) or nil`; as apply from a plain callback.
function Location:expire(now)
  check_open(self, "expire")
  if now ~= nil and not finite(now) then
    error("luasip.location: expire: now must be a number (os.time() based) or nil", 2)
  end
  now = now or core.time()
  return self:_wait(function(cb) self:_expire(now, cb) end, "expire", 2)
end

--- Every AOR with unexpired bindings: aor -> list of bindings, best first.
-- @treturn table aor -> list of bindings (copies), best first
function Location:list()
  check_open(self, "list")
  local out = {}
  for aor in pairs(self.aors) do
    local l = self:lookup(aor)
    if #l > 0 then out[aor] = l end
  end
  return out
end

--- The number of unexpired bindings.
-- @treturn integer the number of unexpired bindings, of every AOR
function Location:count()
  check_open(self, "count")
  local now, n = core.time(), 0
  for _, map in pairs(self.aors) do n = n + count_live(map, now) end
  return n
end

--- Statistics of the store.
--
-- { backend =, aors =, bindings = } and what the backend counts (sqlite:
-- commits, jobs: batching shows as commits < jobs).
-- @treturn table backend ("memory" or "sqlite"), aors (AORs in the view), bindings (as count()), and with sqlite commits and jobs
function Location:stats()
  check_open(self, "stats")
  local s = self.backend:stats()
  local aors = 0
  for _ in pairs(self.aors) do aors = aors + 1 end
  s.backend, s.aors, s.bindings = self.backend.name, aors, self:count()
  return s
end

--- Call fn(event) after each durable change.
--
-- event = { aor =, kind = "set" | "remove" | "expire", binding =,
-- remaining = bindings the AOR has now }. fn must not block (spawn a task
-- for that); its errors are logged. Returns a subscription with :cancel().
-- @tparam function fn called as fn(event) for each binding changed, in commit order
-- @treturn Subscription the subscription: sub:cancel() stops it
-- @raise `luasip.location: on_change: fn must be a function`.
function Location:on_change(fn)
  check_open(self, "on_change")
  if type(fn) ~= "function" then error("luasip.location: on_change: fn must be a function", 2) end
  local sub = setmetatable({ fn = fn, active = true, list = self.listeners }, Subscription)
  self.listeners[#self.listeners + 1] = sub
  return sub
end

function Subscription:__tostring()
  return string.format("luasip.location.subscription (%s)", self.active and "active" or "cancelled")
end

--- A listener of a location store's changes, made by Location:on_change.
-- @type Subscription

--- Stop receiving events (idempotent).
function Subscription:cancel()
  if not self.active then return end
  self.active = false
  for i = #self.list, 1, -1 do
    if self.list[i] == self then table.remove(self.list, i) end
  end
end

--- A location store (continued).
-- @type Location

--- Stop the sweeps and close the backend; changes in flight complete
-- first (their callers get their result).
--
-- Idempotent.
function Location:close()
  if self.closed then return end
  self.closed = true
  self.timer:close()
  self.backend:close()
end
Location.__close = Location.close

return M
