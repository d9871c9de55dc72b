--- luasip.store: a durable record store.
--
-- The state of the presence server (publications, subscriptions, watcher
-- rules) and of voicemail (its message index), behind the store interface
-- of luasip.location: the same URLs ("memory:", "sqlite:/path/file.db"),
-- reads served from memory that never block, and changes that return once
-- durable (blocking verbs with a durable backend: call them in a task).
--
-- A record is a flat table of strings, numbers and booleans, plus lists of
-- strings; each lives under (kind, key). Tables handed out are the view's
-- own: treat them as read-only and put() a changed copy.
--
-- Options: see open. luasip.presence_store is an earlier name of this
-- module.
-- @module luasip.store
-- @usage
--   local st = assert(require("luasip.store").open("sqlite:/var/lib/sip/presence.db"))
--   assert(st:put("pub", etag, { presentity = aor, expires = t, body = xml }))
--   for key, rec in st:each("pub") do ... end
local core = require "luasip.core"
local location = require "luasip.location"

local M = {}

local Store = { __name = "luasip.store" }
Store.__index = Store

-- ------------------------------------------------------------------------
-- Records as text: "name=type:length:value" fields, one after the other,
-- with t (string), n (number), b (boolean) and l (a list of strings, its
-- value itself a sequence of "length:item").

local function field(out, k, tag, v)
  out[#out + 1] = string.format("%s=%s:%d:%s", k, tag, #v, v)
end

--- A record as text (the form the sqlite backend stores).
--
-- Fields are sorted by name, so equal records give equal texts.
-- @tparam table rec a record: names -> strings, numbers, booleans or lists of strings
-- @treturn string the encoded record
-- @raise `luasip.store: record keys must be names`, `luasip.store: NAME must list strings`, or `luasip.store: NAME: a TYPE cannot be stored`.
function M.encode(rec)
  local out = {}
  local keys = {}
  for k in pairs(rec) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = rec[k]
    local t = type(v)
    if type(k) ~= "string" or not k:match("^[%w_]+$") then
      error("luasip.store: record keys must be names", 3)
    elseif t == "string" then field(out, k, "t", v)
    elseif t == "number" then field(out, k, "n", string.format("%.17g", v))
    elseif t == "boolean" then field(out, k, "b", v and "1" or "0")
    elseif t == "table" then
      local items = {}
      for i, s in ipairs(v) do
        if type(s) ~= "string" then error("luasip.store: " .. k .. " must list strings", 3) end
        items[i] = #s .. ":" .. s
      end
      field(out, k, "l", table.concat(items))
    else
      error("luasip.store: " .. k .. ": a " .. t .. " cannot be stored", 3)
    end
  end
  return table.concat(out)
end

--- A copy of a record with some fields changed: records handed out are
-- read-only, and a change is put() as such a copy.
-- @tparam table rec a record (or any flat table)
-- @tparam table changes fields to set in the copy
-- @treturn table the copy
function M.changed(rec, changes)
  local c = {}
  for k, v in pairs(rec) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  return c
end

--- The record encoded in text (by encode).
-- @tparam string text an encoded record
-- @treturn[1] table the record
-- @return[2] nil, "corrupt record"
function M.decode(text)
  local rec, pos = {}, 1
  while pos <= #text do
    local k, tag, len, p = text:match("^([%w_]+)=(%a):(%d+):()", pos)
    if not k then return nil, "corrupt record" end
    local v = text:sub(p, p + len - 1)
    if #v ~= tonumber(len) then return nil, "corrupt record" end
    pos = p + len
    if tag == "t" then rec[k] = v
    elseif tag == "n" then rec[k] = tonumber(v)
    elseif tag == "b" then rec[k] = v == "1"
    elseif tag == "l" then
      local list, q = {}, 1
      while q <= #v do
        local n, s = v:match("^(%d+):()", q)
        if not n or s + n - 1 > #v then return nil, "corrupt record" end
        list[#list + 1] = v:sub(s, s + n - 1)
        q = s + n
      end
      rec[k] = list
    else
      return nil, "corrupt record"
    end
  end
  return rec
end

-- ------------------------------------------------------------------------
-- Backends: write(ops, texts, cb) with ops a list of { kind, key, record |
-- false } and texts[i] op i's record encoded (nil for a removal), cb(true)
-- once durable or cb(false, err); `sync` ones call cb at once.

local Memory = { sync = true, name = "memory" }
Memory.__index = Memory
function Memory.write(_, _, _, cb) cb(true) end
function Memory.close() end

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS records (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  record TEXT NOT NULL,
  PRIMARY KEY (kind, key)
) WITHOUT ROWID;
]]
local SQL_PUT = "INSERT OR REPLACE INTO records (kind, key, record) VALUES (:kind, :key, :record)"
local SQL_DELETE = "DELETE FROM records WHERE kind = :kind AND key = :key"

local Sqlite = { sync = false, name = "sqlite" }
Sqlite.__index = Sqlite

function Sqlite:write(ops, texts, cb)
  local stmts = {}
  for i, op in ipairs(ops) do
    if op[3] then
      stmts[i] = { SQL_PUT, { kind = op[1], key = op[2], record = texts[i] } }
    else
      stmts[i] = { SQL_DELETE, { kind = op[1], key = op[2] } }
    end
  end
  local ok, err = self.db:write(stmts, cb)
  if not ok then cb(false, err) end
end

function Sqlite:close() self.db:close() end

local function open_sqlite(path, opts)
  local db, err, code = core.sqlite(path, { busy_timeout = opts.busy_timeout })
  if not db then return nil, err, code end
  local ok, rows
  ok, err, code = db:exec(SCHEMA)
  if ok then rows, err, code = db:rows("SELECT kind, key, record FROM records") end
  if not rows then
    db:close()
    return nil, path .. ": " .. tostring(err), code
  end
  return setmetatable({ db = db }, Sqlite), rows
end

-- ------------------------------------------------------------------------
-- The store

--- Open a presence store.
--
-- Returns it, or nil, message, code. With sqlite the file's records are
-- loaded (records that do not decode are skipped).
-- @tparam[opt="memory:"] string url "memory:" or "sqlite:/path/file.db"
-- @tparam[opt] table opts options:
-- @tparam[opt=10] number opts.timeout seconds a change waits to be durable
-- @tparam[opt=5] number opts.busy_timeout sqlite: seconds to wait for another process's lock
-- @treturn[1] Store the store
-- @return[2] nil, "luasip.store: " .. message, code (an errno name, or "EIO" from SQLite)
-- @raise `luasip.store: MESSAGE` for a bad URL (as luasip.location.parse_url), `luasip.store: options must be a table`, or `luasip.store: unknown option 'NAME'`.
function M.open(url, opts)
  local kind, path = location.parse_url(url)
  if not kind then error("luasip.store: " .. path, 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.store: options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "timeout" and k ~= "busy_timeout" then
      error("luasip.store: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local self = setmetatable({ url = url or "memory:", view = {}, indexes = {}, timeout = opts.timeout or 10 }, Store)
  if kind == "sqlite" then
    local backend, rows, code = open_sqlite(path, opts)
    if not backend then return nil, "luasip.store: " .. rows, code end
    self.backend = backend
    for _, row in ipairs(rows) do
      local rec = M.decode(row.record)
      if rec then self:_view(row.kind)[row.key] = rec end
    end
  else
    self.backend = setmetatable({}, Memory)
  end
  return self
end

function Store:__tostring()
  return string.format("luasip.store (%s)", self.url)
end

function Store:_view(kind)
  local v = self.view[kind]
  if not v then v = {} self.view[kind] = v end
  return v
end

--- A record store, made by open.
--
-- A to-be-closed variable holding it closes it (__close).
-- @type Store

--- The record under (kind, key), or nil.
--
-- Never blocks.
-- @tparam string kind the kind of record
-- @tparam string key the record's key within kind
-- @treturn ?table the record (the view's own: read-only), or nil
function Store:get(kind, key)
  local v = self.view[kind]
  return v and v[key]
end

-- The index of kind's records by the value of their field: value ->
-- { key -> true }. Built on first use, then kept by every change.
function Store:_index(kind, field)
  local by_field = self.indexes[kind]
  if not by_field then by_field = {} self.indexes[kind] = by_field end
  local idx = by_field[field]
  if not idx then
    idx = {}
    for key, rec in pairs(self.view[kind] or {}) do
      local v = rec[field]
      if v ~= nil then
        local keys = idx[v]
        if not keys then keys = {} idx[v] = keys end
        keys[key] = true
      end
    end
    by_field[field] = idx
  end
  return idx
end

-- The view of (kind, key) becomes rec (nil: removed), its indexes with it.
function Store:_set(kind, key, rec)
  local view = self:_view(kind)
  local old = view[key]
  view[key] = rec
  for field, idx in pairs(self.indexes[kind] or {}) do
    local ov, nv = old and old[field], rec and rec[field]
    if ov ~= nv then
      local keys = ov ~= nil and idx[ov]
      if keys then
        keys[key] = nil
        if not next(keys) then idx[ov] = nil end
      end
      if nv ~= nil then
        keys = idx[nv]
        if not keys then keys = {} idx[nv] = keys end
        keys[key] = true
      end
    end
  end
end

--- Iterate over the records of a kind.
--
-- For key, record in st:each(kind), or over those whose `field` is
-- `value`: st:each(kind, field, value) (indexed: the first such call
-- builds an index of kind by field, which every change then keeps; the
-- cost is that of the matching records). Changes made while iterating are
-- safe. Never blocks.
-- @tparam string kind the kind of record
-- @tparam[opt] string field a field to select on
-- @param[opt] value the value field must have
-- @return an iterator of key, record (in no particular order), for a generic for
function Store:each(kind, field, value)
  local copy = {}
  local view = self.view[kind] or {}
  if field ~= nil then
    for k in pairs(self:_index(kind, field)[value] or {}) do copy[k] = view[k] end
  else
    for k, r in pairs(view) do copy[k] = r end
  end
  return next, copy
end

--- Apply changes atomically.
--
-- A list of { kind, key, record } (a record of false removes the key).
-- Returns true once durable (then the view shows it), or nil, err: nothing
-- changed, or, after "timeout", the outcome is unknown (should it commit
-- later, the view follows). With a durable backend this is a blocking
-- verb.
-- @tparam {table,...} ops the changes: { kind, key, record | false }, ...
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise `luasip.store: used after close()`, `luasip.store: each change is { kind, key, record|false }`, a record that cannot be stored (see encode), or, from a plain callback with a durable backend, `luasip.store: apply blocks, and cannot be called from a callback: run it in luasip.spawn(function() ... end)`.
function Store:apply(ops)
  if self.closed then error("luasip.store: used after close()", 2) end
  local texts = {}
  for i, op in ipairs(ops) do
    if type(op[1]) ~= "string" or type(op[2]) ~= "string" then
      error("luasip.store: each change is { kind, key, record|false }", 2)
    end
    if op[3] then texts[i] = M.encode(op[3]) end -- refuses what cannot be stored, now
  end
  if #ops == 0 then return true end -- nothing to write (SQLite refuses an empty batch)
  local ok, err = location.wait_durable(self.backend.sync, self.timeout, function(cb)
    self.backend:write(ops, texts, function(done, why)
      -- the view follows the durable state, even after a timed-out wait
      if done then
        for _, op in ipairs(ops) do self:_set(op[1], op[2], op[3] or nil) end
      end
      cb(done, why)
    end)
  end, "luasip.store: apply", 2)
  if not ok then return nil, err or "timeout" end
  return true
end

--- Store one record (a durable change); see apply.
-- @tparam string kind the kind of record
-- @tparam string key the record's key within kind
-- @tparam table record the record (replaces any under kind, key)
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise as apply.
function Store:put(kind, key, record) return self:apply { { kind, key, record } } end

--- Remove one record (a durable change); see apply.
-- @tparam string kind the kind of record
-- @tparam string key the record's key within kind
-- @treturn[1] boolean true, once durable
-- @return[2] nil, err: the backend's error, or "timeout"
-- @raise as apply.
function Store:delete(kind, key) return self:apply { { kind, key, false } } end

--- Close the backend (queued writes complete first).
--
-- Idempotent.
function Store:close()
  if self.closed then return end
  self.closed = true
  self.backend:close()
end
Store.__close = Store.close

return M
