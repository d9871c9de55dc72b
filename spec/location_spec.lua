-- The location service (luasip.location) on its memory and SQLite backends,
-- and the SQLite store under it (core.sqlite: a writer thread with group
-- commit). Real files, a real child process killed with SIGKILL.
local H = require "helper"
local luasip = require "luasip"
local core = require "luasip.core"
local location = require "luasip.location"

local AOR = "sip:alice@example.com"

local function contacts(list)
  local out = {}
  for i, b in ipairs(list) do out[i] = b.contact end
  return out
end

local function rm(dir) os.execute("rm -rf " .. H.shell_quote(dir)) end

-- Drive the loop (at top level) until fn() is true.
local function until_true(fn, what)
  H.run(function() assert(H.poll_until(fn, 10), what) end, 15)
end

describe("core.sqlite", function()
  H.leakcheck()
  local dir, path
  before_each(function()
    dir = H.tmpdir()
    path = dir .. "/store.db"
  end)
  after_each(function() rm(dir) end)

  it("writes in the background, calls back once durable, and reads every type back", function()
    local db = assert(core.sqlite(path))
    assert.matches("^luasip.sqlite %(open%)", tostring(db))
    assert.is_true(db:exec("CREATE TABLE t (k TEXT PRIMARY KEY, i, d, s, n)"))
    assert.are.same({ { journal_mode = "wal" } }, db:rows("PRAGMA journal_mode"))
    local results = {}
    db:write("INSERT INTO t VALUES (?, ?, ?, ?, ?)", { "positional", 42, 2.5, "a\0b", nil },
      function(ok, err) results[1] = { ok, err } end)
    db:write("INSERT INTO t (k, i, d, s) VALUES (:k, :i, @d, $s)", { k = "named", i = -7, d = 0.125, s = "é" },
      function(ok, err) results[2] = { ok, err } end)
    db:write("INSERT INTO t (k, i) VALUES (?, ?)", { "bool", true }) -- no callback
    db:write("INSERT INTO t (k, i) VALUES (?, ?)", { "last", 1 }, function(ok, err) results[3] = { ok, err } end)
    assert.are.same({}, results) -- callbacks come from the loop, never from write()
    until_true(function() return results[3] end, "the writes did not complete")
    assert.are.same({ { true }, { true }, { true } }, results)
    local rows = assert(db:rows("SELECT * FROM t ORDER BY k"))
    assert.are.same({
      { k = "bool", i = 1 },
      { k = "last", i = 1 },
      { k = "named", i = -7, d = 0.125, s = "é" },
      { k = "positional", i = 42, d = 2.5, s = "a\0b" }, -- NULL is absent
    }, rows)
    if math.type then
      assert.are.equal("integer", math.type(rows[4].i))
      assert.are.equal("float", math.type(rows[4].d))
    end
    assert.are.same({ { k = "named" } }, db:rows("SELECT k FROM t WHERE i = :i", { i = -7 }))
    assert.are.same({}, db:rows("SELECT k FROM t WHERE i > ?", { 100 }))
    local st = db:stats()
    assert.are.equal(4, st.jobs)
    assert.are.equal(0, st.failed)
    assert.are.equal(0, st.pending)
    assert.is_true(st.commits >= 1 and st.commits <= 4)
    db:close()
    db:close() -- idempotent
    assert.matches("%(closed%)", tostring(db))
  end)

  it("fails a bad job alone: the rest of its batch commits, and the job is atomic", function()
    local db = assert(core.sqlite(path))
    assert(db:exec("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    local results = {}
    local function cb(i) return function(ok, err) results[i] = { ok = ok, err = err } end end
    -- Queued in one loop turn, so the writer sees them together.
    db:write("INSERT INTO t VALUES ('a')", nil, cb(1))
    db:write({ { "INSERT INTO t VALUES ('b')" }, { "INSERT INTO t VALUES ('a')" } }, cb(2)) -- 'a' is taken
    db:write({ { "INSERT INTO t VALUES (?)", { "c" } }, { "INSERT INTO t VALUES (:k)", { k = "d" } } }, cb(3))
    db:write("INSERT INTO nowhere VALUES (1)", nil, cb(4))
    db:write("INSERT INTO t VALUES (:nope)", { other = 1 }, cb(5))
    db:write("INSERT INTO t VALUES ('e'); INSERT INTO t VALUES ('f')", nil, cb(6))
    db:write("INSERT INTO t VALUES ('g')", nil, cb(7))
    until_true(function() return results[7] end, "the writes did not complete")
    assert.is_true(results[1].ok)
    assert.is_false(results[2].ok)
    assert.matches("UNIQUE constraint failed", results[2].err)
    assert.is_true(results[3].ok)
    assert.is_false(results[4].ok)
    assert.matches("no such table: nowhere", results[4].err)
    assert.is_false(results[5].ok)
    assert.matches("no parameter named 'other'", results[5].err)
    assert.is_false(results[6].ok)
    assert.matches("one SQL statement at a time", results[6].err)
    assert.is_true(results[7].ok)
    local keys = {}
    for i, r in ipairs(db:rows("SELECT k FROM t ORDER BY k")) do keys[i] = r.k end
    assert.are.same({ "a", "c", "d", "g" }, keys) -- no 'b': its job failed as a whole
    assert.are.equal(4, db:stats().failed)
    db:close()
  end)

  it("commits many concurrent writes in fewer transactions", function()
    local db = assert(core.sqlite(path))
    assert(db:exec("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    local acked = 0
    for i = 1, 200 do
      db:write("INSERT INTO t VALUES (?)", { i }, function(ok) if ok then acked = acked + 1 end end)
    end
    until_true(function() return acked == 200 end, "not every write was acknowledged")
    local st = db:stats()
    assert.are.equal(200, st.jobs)
    assert.is_true(st.commits < st.jobs, st.commits .. " commits for " .. st.jobs .. " jobs")
    assert.are.same({ { n = 200 } }, db:rows("SELECT count(*) AS n FROM t"))
    db:close()
  end)

  it("close() commits everything queued and calls every callback before returning", function()
    local db = assert(core.sqlite(path))
    assert(db:exec("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    local oks = 0
    for i = 1, 50 do
      db:write("INSERT INTO t VALUES (?)", { i }, function(ok) if ok then oks = oks + 1 end end)
    end
    db:close()
    assert.are.equal(50, oks)
    assert.has_error(function() db:write("INSERT INTO t VALUES (1)") end, "luasip.sqlite: used after close()")
    assert.has_error(function() db:rows("SELECT 1") end, "luasip.sqlite: used after close()")
    db = assert(core.sqlite(path))
    assert.are.same({ { n = 50 } }, db:rows("SELECT count(*) AS n FROM t"))
    db:close()
  end)

  it("stays alive while writes are in flight, and is collected once idle", function()
    local before = luasip.stats().stores
    local done = false
    do
      local db = assert(core.sqlite(path))
      assert(db:exec("CREATE TABLE t (k)"))
      db:write("INSERT INTO t VALUES (1)", nil, function(ok) done = ok end)
    end
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(before + 1, luasip.stats().stores)
    until_true(function() return done end, "the write did not complete")
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(before, luasip.stats().stores)
    local db = assert(core.sqlite(path))
    assert.are.same({ { k = 1 } }, db:rows("SELECT k FROM t"))
    db:close()
  end)

  it("logs an error raised by a callback and carries on", function()
    local db = assert(core.sqlite(path))
    assert(db:exec("CREATE TABLE t (k)"))
    local second = false
    local records = H.capture_log(function()
      db:write("INSERT INTO t VALUES (1)", nil, function() error("callback boom") end)
      db:write("INSERT INTO t VALUES (2)", nil, function(ok) second = ok end)
      until_true(function() return second end, "the second write did not complete")
    end)
    local logged = false
    for _, r in ipairs(records) do
      if r.level == "error" and r.message:find("callback boom", 1, true) then logged = true end
    end
    assert.is_true(logged, "the callback's error was not logged")
    assert.are.same({ { n = 2 } }, db:rows("SELECT count(*) AS n FROM t"))
    db:close()
  end)

  it("fails a write on another process's lock, and close() never hangs on a stuck writer", function()
    local fds = H.counts().fds
    local db = assert(core.sqlite(path, { busy_timeout = 0.1 }))
    assert(db:exec("CREATE TABLE t (k)"))
    -- The sqlite3 shell takes the write lock and keeps it until we send it
    -- COMMIT through a fifo.
    local fifo = dir .. "/release"
    assert(os.execute("mkfifo " .. H.shell_quote(fifo)))
    local holder = H.process { "sh", "-c", "(echo 'BEGIN IMMEDIATE;'; echo \"SELECT 'locked';\"; timeout 60 cat " ..
      H.shell_quote(fifo) .. ") | sqlite3 " .. H.shell_quote(path) }
    H.run(function() holder:expect("locked", 10) end)
    local first
    db:write("INSERT INTO t VALUES (1)", nil, function(ok, err) first = { ok, err } end)
    until_true(function() return first end, "the write did not complete")
    assert.are.same({ false, "database is locked" }, first)

    -- This one waits for the lock far longer than close() waits for it.
    local stuck = assert(core.sqlite(path, { busy_timeout = 60, close_timeout = 0.2 }))
    local second
    stuck:write("INSERT INTO t VALUES (2)", nil, function(ok, err) second = { ok, err } end)
    H.run(function() luasip.sleep(0.1) end) -- lets the writer start on it
    local records = H.capture_log(function() stuck:close() end)
    assert.is_false(second[1])
    assert.is_truthy(second[2]:find("outcome unknown", 1, true) or second[2]:find("not written", 1, true),
      second[2])
    if second[2]:find("outcome unknown", 1, true) then
      assert.matches("writer thread was stuck", records[1].message)
    end
    db:close()

    -- Once the lock goes, the abandoned writer finishes on its own and lets
    -- its files go.
    assert(os.execute("echo 'COMMIT;' > " .. H.shell_quote(fifo)))
    H.run(function() assert.are.equal(0, holder:wait(10)) end, 15)
    holder:cleanup()
    if second[2]:find("outcome unknown", 1, true) then
      local check = assert(core.sqlite(path))
      until_true(function() return #check:rows("SELECT k FROM t WHERE k = 2") == 1 end,
        "the abandoned writer did not commit")
      check:close()
    end
    until_true(function() return luasip.stats().fds <= fds end, "the abandoned writer kept its files")
  end)

  it("reports runtime failures as nil, message, code and rejects misuse", function()
    local db, err, code = core.sqlite(dir .. "/missing/dir/x.db")
    assert.is_nil(db)
    assert.matches("unable to open database file", err)
    assert.are.equal("EIO", code)
    db = assert(core.sqlite(path))
    local ok
    ok, err, code = db:exec("CREATE TABLES x")
    assert.is_nil(ok)
    assert.matches("syntax error", err)
    assert.are.equal("EIO", code)
    ok, err = db:rows("SELECT * FROM nowhere")
    assert.is_nil(ok)
    assert.matches("no such table", err)
    assert.has_error(function() db:write("SELECT 1", { {} }) end,
      "luasip.sqlite: a parameter must be a string, number, boolean or nil, not a table")
    assert.has_error(function() db:write("SELECT 1", "x") end,
      "luasip.sqlite: parameters must be a table, not a string")
    assert.has_error(function() db:write({}) end)
    assert.has_error(function() db:write("SELECT 1", nil, 42) end)
    assert.has_error(function() core.sqlite(path, { busy_timeout = -1 }) end)
    db:close()
  end)
end)

local BACKENDS = { "memory", "sqlite" }

for _, kind in ipairs(BACKENDS) do
  describe("luasip.location (" .. kind .. ")", function()
    H.leakcheck()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() rm(dir) end)

    local function url() return kind == "memory" and "memory:" or "sqlite:" .. dir .. "/location.db" end
    local function open(opts) return assert(location.open(url(), opts)) end

    it("saves bindings and looks them up best first: q, then the most recently updated", function()
      local loc = open()
      local now = os.time()
      assert.is_true(loc:save(AOR, { contact = "sip:low@10.0.0.1", expires = now + 600, q = 0.1, updated = now }))
      assert.is_true(loc:save(AOR, { contact = "sip:old@10.0.0.2", expires = now + 600, updated = now - 10 }))
      assert.is_true(loc:save(AOR, { contact = "sip:new@10.0.0.3", expires = now + 600, updated = now - 1 }))
      assert.is_true(loc:save(AOR, { contact = "sip:mid@10.0.0.4", expires = now + 600, q = 0.5 }))
      assert.is_true(loc:save(AOR, { contact = "sip:top@10.0.0.5", expires = now + 600, q = 1 }))
      assert.is_true(loc:save("sip:bob@example.com", { contact = "sip:bob@10.0.0.9", expires = now + 60 }))
      -- q 1 and nil q tie at 1.0; "top" was updated most recently (now)
      assert.are.same({ "sip:top@10.0.0.5", "sip:new@10.0.0.3", "sip:old@10.0.0.2",
                        "sip:mid@10.0.0.4", "sip:low@10.0.0.1" }, contacts(loc:lookup(AOR)))
      assert.are.same({}, loc:lookup("sip:nobody@example.com"))
      assert.are.equal(6, loc:count())
      local all = loc:list()
      assert.are.same({ "sip:bob@10.0.0.9" }, contacts(all["sip:bob@example.com"]))
      assert.are.equal(5, #all[AOR])
      local st = loc:stats()
      assert.are.equal(kind, st.backend)
      assert.are.equal(2, st.aors)
      assert.are.equal(6, st.bindings)
      -- a refresh replaces the binding under its contact
      assert.is_true(loc:save(AOR, { contact = "sip:low@10.0.0.1", expires = now + 900, q = 0.9, cseq = 2 }))
      local b = loc:lookup(AOR)[4]
      assert.are.equal("sip:low@10.0.0.1", b.contact)
      assert.are.equal(0.9, b.q)
      assert.are.equal(now + 900, b.expires)
      assert.are.equal(6, loc:count())
      -- lookups hand out copies
      b.contact = "changed"
      assert.are.equal(5, #loc:lookup(AOR))
      assert.are.equal("sip:top@10.0.0.5", loc:lookup(AOR)[1].contact)
      loc:close()
    end)

    it("keeps every field of a binding", function()
      local loc = open()
      local b = {
        contact = "<sip:alice@192.0.2.4:5060;transport=tcp>", expires = os.time() + 3600.5, q = 0.7,
        call_id = "c1@host", cseq = 101, path = { "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>" },
        received = "tcp:192.0.2.4:40000", user_agent = "spec/1.0", instance = "<urn:uuid:00000000-0000-1000-8000-000000000001>",
        reg_id = 2, updated = 1700000000.25,
      }
      assert.is_true(loc:save(AOR, b))
      local want = {}
      for k, v in pairs(b) do want[k] = v end
      want.aor = AOR
      assert.are.same({ want }, loc:lookup(AOR))
      loc:close()
      if kind == "sqlite" then
        loc = open()
        assert.are.same({ want }, loc:lookup(AOR))
        loc:close()
      end
    end)

    it("applies set and remove together, atomically for the AOR", function()
      local loc = open()
      local now = os.time()
      assert(loc:apply(AOR, { set = {
        { contact = "sip:a@h", expires = now + 60 }, { contact = "sip:b@h", expires = now + 60 },
      } }))
      local events = {}
      local sub = loc:on_change(function(ev) events[#events + 1] = ev end)
      assert.is_true(loc:apply(AOR, {
        remove = { "sip:a@h", "sip:not-there@h" },
        set = { { contact = "sip:c@h", expires = now + 60, q = 0.9 }, { contact = "sip:b@h", expires = now + 120 } },
      }))
      assert.are.same({ "sip:b@h", "sip:c@h" }, contacts(loc:lookup(AOR)))
      assert.are.equal(now + 120, loc:lookup(AOR)[1].expires)
      -- every event carries what the AOR has after the whole change
      assert.are.equal(3, #events)
      assert.are.same({ "remove", "sip:a@h", 2 }, { events[1].kind, events[1].binding.contact, events[1].remaining })
      assert.are.same({ "set", "sip:c@h", 2 }, { events[2].kind, events[2].binding.contact, events[2].remaining })
      assert.are.same({ "set", "sip:b@h", 2 }, { events[3].kind, events[3].binding.contact, events[3].remaining })
      assert.are.equal(AOR, events[1].aor)
      -- an invalid binding anywhere in the change: nothing happens
      events = {}
      assert.has_error(function()
        loc:apply(AOR, { remove = { "sip:b@h" }, set = { { contact = "sip:d@h", expires = now + 60 }, { contact = "sip:e@h" } } })
      end)
      assert.are.same({ "sip:b@h", "sip:c@h" }, contacts(loc:lookup(AOR)))
      assert.are.same({}, events)
      -- a binding that has already expired is a removal
      assert.is_true(loc:apply(AOR, { set = { { contact = "sip:c@h", expires = now - 1 } } }))
      assert.are.same({ "sip:b@h" }, contacts(loc:lookup(AOR)))
      assert.are.same({ "remove", "sip:c@h", 1 }, { events[1].kind, events[1].binding.contact, events[1].remaining })
      -- an empty change is a no-op
      assert.is_true(loc:apply(AOR, {}))
      assert.are.equal(1, #events)
      sub:cancel()
      loc:close()
    end)

    it("removes one contact, or all of an AOR's at once", function()
      local loc = open()
      local now = os.time()
      for i = 1, 4 do assert(loc:save(AOR, { contact = "sip:" .. i .. "@h", expires = now + 60 })) end
      assert(loc:save("sip:bob@example.com", { contact = "sip:bob@h", expires = now + 60 }))
      local events = {}
      loc:on_change(function(ev) events[#events + 1] = ev end)
      assert.is_true(loc:remove(AOR, "sip:2@h"))
      assert.are.same({ "remove", 3 }, { events[1].kind, events[1].remaining })
      assert.is_true(loc:remove(AOR, "sip:unknown@h"))
      assert.are.equal(1, #events)
      -- remove_all, then set: a replacement in one change
      assert.is_true(loc:apply(AOR, { remove_all = true, set = { { contact = "sip:new@h", expires = now + 60 } } }))
      assert.are.same({ "sip:new@h" }, contacts(loc:lookup(AOR)))
      assert.are.equal(5, #events) -- three removes and a set
      assert.is_true(loc:remove(AOR))
      assert.are.same({}, loc:lookup(AOR))
      assert.are.same({ "remove", 0 }, { events[6].kind, events[6].remaining })
      assert.are.same({ "sip:bob@h" }, contacts(loc:lookup("sip:bob@example.com")))
      assert.are.equal(1, loc:count())
      assert.is_nil(loc:list()[AOR])
      loc:close()
    end)

    it("removes expired bindings by itself, on its timer", function()
      local loc = open { expire_interval = 0.05 }
      local expired = {}
      loc:on_change(function(ev) if ev.kind == "expire" then expired[#expired + 1] = ev end end)
      assert(loc:save(AOR, { contact = "sip:short@h", expires = luasip.time() + 0.3 }))
      assert(loc:save(AOR, { contact = "sip:long@h", expires = os.time() + 600 }))
      H.run(function() assert(H.poll_until(function() return #expired > 0 end, 10), "no expire event") end, 15)
      assert.are.equal(1, #expired)
      assert.are.equal("sip:short@h", expired[1].binding.contact)
      assert.are.equal(1, expired[1].remaining)
      assert.are.same({ "sip:long@h" }, contacts(loc:lookup(AOR)))
      assert.are.equal(1, loc:stats().bindings)
      loc:close()
      if kind == "sqlite" then
        loc = open()
        assert.are.same({ "sip:long@h" }, contacts(loc:lookup(AOR)))
        loc:close()
      end
    end)

    it("expire(now) removes what has expired at that time and tells the listeners", function()
      local loc = open { expire_interval = 1000 }
      local now = os.time()
      assert(loc:save(AOR, { contact = "sip:soon@h", expires = now + 50 }))
      assert(loc:save(AOR, { contact = "sip:later@h", expires = now + 500 }))
      assert(loc:save("sip:bob@example.com", { contact = "sip:bob@h", expires = now + 60 }))
      local events = {}
      loc:on_change(function(ev) events[#events + 1] = ev end)
      assert.are.equal(0, loc:expire())
      assert.are.equal(0, #events)
      assert.are.equal(2, loc:expire(now + 100))
      table.sort(events, function(a, b) return a.binding.contact < b.binding.contact end)
      assert.are.same({ "expire", "sip:bob@example.com", "sip:bob@h", 0 },
        { events[1].kind, events[1].aor, events[1].binding.contact, events[1].remaining })
      assert.are.same({ "expire", AOR, "sip:soon@h", 1 },
        { events[2].kind, events[2].aor, events[2].binding.contact, events[2].remaining })
      assert.are.same({ "sip:later@h" }, contacts(loc:lookup(AOR)))
      assert.are.equal(0, loc:expire(now + 100))
      loc:close()
      if kind == "sqlite" then
        loc = open()
        assert.are.equal(1, loc:count())
        loc:close()
      end
    end)

    it("tells listeners until cancelled, and survives a failing listener", function()
      local loc = open()
      local now = os.time()
      local seen, other = {}, 0
      local sub = loc:on_change(function(ev) seen[#seen + 1] = ev.kind .. " " .. ev.binding.contact end)
      loc:on_change(function() other = other + 1 end)
      local records = H.capture_log(function()
        local bad = loc:on_change(function() error("listener boom") end)
        assert.is_true(loc:save(AOR, { contact = "sip:a@h", expires = now + 60 }))
        bad:cancel()
        bad:cancel() -- idempotent
      end)
      assert.are.equal(1, #records)
      assert.are.equal("error", records[1].level)
      assert.matches("change listener failed: .*listener boom", records[1].message)
      assert.are.same({ "sip:a@h" }, contacts(loc:lookup(AOR)))
      sub:cancel()
      assert.is_true(loc:remove(AOR, "sip:a@h"))
      assert.are.same({ "set sip:a@h" }, seen)
      assert.are.equal(2, other)
      loc:close()
    end)

    it("works inside tasks as at top level", function()
      local loc = open()
      local now = os.time()
      H.run(function()
        local tasks = {}
        for i = 1, 5 do
          tasks[i] = luasip.spawn(function()
            return loc:save(AOR, { contact = "sip:" .. i .. "@h", expires = now + 60, q = i / 10 })
          end)
        end
        for i = 1, 5 do assert.are.same({ true, true }, { tasks[i]:join(5) }) end
      end)
      assert.are.same({ "sip:5@h", "sip:4@h", "sip:3@h", "sip:2@h", "sip:1@h" }, contacts(loc:lookup(AOR)))
      loc:close()
    end)

    it("validates its arguments with one-line errors", function()
      local loc = open()
      local now = os.time()
      local function fails(pattern, fn)
        local ok, err = pcall(fn)
        assert.is_false(ok)
        assert.matches(pattern, err)
        assert.is_nil(err:find("\n"), "not one line: " .. err)
      end
      fails("lookup: aor must be a non%-empty string", function() loc:lookup(nil) end)
      fails("save: binding must be a table", function() loc:save(AOR, "sip:x@h") end)
      fails("save: binding.contact must be", function() loc:save(AOR, { expires = now + 60 }) end)
      fails("changes.set%[2%].expires must be a number", function()
        loc:apply(AOR, { set = { { contact = "sip:x@h", expires = now + 60 }, { contact = "sip:y@h" } } })
      end)
      fails("save: binding.q must be a number from 0 to 1", function()
        loc:save(AOR, { contact = "sip:x@h", expires = now + 60, q = 2 })
      end)
      fails("unknown field 'flags'", function()
        loc:save(AOR, { contact = "sip:x@h", expires = now + 60, flags = 1 })
      end)
      fails("aor differs", function()
        loc:save(AOR, { aor = "sip:bob@h", contact = "sip:x@h", expires = now + 60 })
      end)
      fails("cseq must be an integer", function()
        loc:save(AOR, { contact = "sip:x@h", expires = now + 60, cseq = 1.5 })
      end)
      fails("path%[2%] must be", function()
        loc:save(AOR, { contact = "sip:x@h", expires = now + 60, path = { "<sip:p;lr>", 3 } })
      end)
      fails("changes has an unknown field 'delete'", function() loc:apply(AOR, { delete = {} }) end)
      fails("remove_all must be a boolean", function() loc:apply(AOR, { remove_all = 1 }) end)
      fails("remove: contact must be", function() loc:remove(AOR, 5) end)
      fails("expire: now must be a number", function() loc:expire("now") end)
      fails("on_change: fn must be a function", function() loc:on_change({}) end)
      fails("unknown store URL 'redis:nowhere'", function() location.open("redis:nowhere") end)
      fails("unknown option 'interval'", function() location.open("memory:", { interval = 1 }) end)
      fails("expire_interval must be", function() location.open("memory:", { expire_interval = 0 }) end)
      assert.are.equal(0, loc:count())
      loc:close()
      loc:close() -- idempotent
      fails("lookup: used after close%(%)", function() loc:lookup(AOR) end)
      fails("save: used after close%(%)", function() loc:save(AOR, { contact = "sip:x@h", expires = now + 60 }) end)
    end)
  end)
end

describe("luasip.location (sqlite) durability", function()
  H.leakcheck()
  local dir, path
  before_each(function()
    dir = H.tmpdir()
    path = dir .. "/location.db"
  end)
  after_each(function() rm(dir) end)

  local function rows_in_file()
    local db = assert(core.sqlite(path))
    local rows = assert(db:rows("SELECT aor, contact FROM location_bindings ORDER BY aor, contact"))
    db:close()
    return rows
  end

  it("keeps bindings across a restart, but not the ones that expired meanwhile", function()
    local loc = assert(luasip.location("sqlite:" .. path))
    assert(loc:save(AOR, { contact = "sip:stays@h", expires = os.time() + 600, q = 0.5 }))
    assert(loc:save(AOR, { contact = "sip:goes@h", expires = luasip.time() + 0.3 }))
    assert(loc:save("sip:bob@example.com", { contact = "sip:bob@h", expires = os.time() + 600 }))
    loc:close()
    assert.are.equal(3, #rows_in_file())
    H.run(function() luasip.sleep(0.5) end) -- "goes" expires while nothing runs
    loc = assert(luasip.location("sqlite:" .. path))
    assert.are.same({ "sip:stays@h" }, contacts(loc:lookup(AOR)))
    assert.are.equal(0.5, loc:lookup(AOR)[1].q)
    assert.are.same({ "sip:bob@h" }, contacts(loc:lookup("sip:bob@example.com")))
    assert.are.equal(2, loc:count())
    loc:close()
    -- deleted from the file at open, not just hidden
    assert.are.same({ { aor = AOR, contact = "sip:stays@h" }, { aor = "sip:bob@example.com", contact = "sip:bob@h" } },
      rows_in_file())
  end)

  it("changes nothing, in memory or on disk, when the write fails", function()
    local loc = assert(luasip.location("sqlite:" .. path))
    local now = os.time()
    assert(loc:save(AOR, { contact = "sip:keep@h", expires = now + 600 }))
    loc:close()
    local db = assert(core.sqlite(path))
    assert(db:exec([[CREATE TRIGGER refuse BEFORE INSERT ON location_bindings
      WHEN NEW.contact = 'sip:bad@h' BEGIN SELECT RAISE(ABORT, 'refused by the spec trigger'); END]]))
    db:close()
    loc = assert(luasip.location("sqlite:" .. path))
    local events = {}
    loc:on_change(function(ev) events[#events + 1] = ev end)
    local ok, err = loc:apply(AOR, {
      remove = { "sip:keep@h" },
      set = { { contact = "sip:new@h", expires = now + 600 }, { contact = "sip:bad@h", expires = now + 600 } },
    })
    assert.is_nil(ok)
    assert.matches("refused by the spec trigger", err)
    assert.are.same({ "sip:keep@h" }, contacts(loc:lookup(AOR)))
    assert.are.same({}, events)
    -- the next change goes through
    assert.is_true(loc:save(AOR, { contact = "sip:new@h", expires = now + 600, updated = now + 1 }))
    assert.are.equal(1, #events)
    loc:close()
    loc = assert(luasip.location("sqlite:" .. path))
    assert.are.same({ "sip:new@h", "sip:keep@h" }, contacts(loc:lookup(AOR)))
    loc:close()
  end)

  it("batches concurrent changes from many tasks into fewer commits", function()
    local loc = assert(luasip.location("sqlite:" .. path))
    local now = os.time()
    H.run(function()
      local tasks = {}
      for i = 1, 100 do
        tasks[i] = luasip.spawn(function()
          return loc:save("sip:user" .. i .. "@example.com", { contact = "sip:u" .. i .. "@h", expires = now + 600 })
        end)
      end
      for i = 1, 100 do assert.are.same({ true, true }, { tasks[i]:join(10) }) end
    end, 20)
    local st = loc:stats()
    assert.are.equal(100, st.jobs)
    assert.is_true(st.commits < st.jobs, st.commits .. " commits for " .. st.jobs .. " jobs")
    assert.are.equal(100, loc:count())
    loc:close()
    assert.are.equal(100, #rows_in_file())
  end)

  it("close() lets the changes in flight finish and answers their callers", function()
    local loc = assert(luasip.location("sqlite:" .. path))
    local now = os.time()
    local results = {}
    for i = 1, 10 do
      luasip.spawn(function()
        results[i] = loc:save(AOR, { contact = "sip:" .. i .. "@h", expires = now + 600 })
      end)
    end
    assert.are.same({}, results) -- every task waits for its commit
    loc:close()
    for i = 1, 10 do assert.is_true(results[i]) end
    assert.are.equal(0, luasip.stats().tasks)
    assert.are.equal(10, #rows_in_file())
  end)

  it("never loses an acknowledged binding when the process is killed with SIGKILL", function()
    local script = dir .. "/writer.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local loc = assert(luasip.location("sqlite:" .. arg[1]))
      for w = 1, 4 do
        luasip.spawn(function()
          for i = 1, 1e9 do
            local contact = string.format("sip:w%d-%d@127.0.0.1", w, i)
            assert(loc:save("sip:user" .. w .. "@example.com",
              { contact = contact, expires = os.time() + 3600, call_id = "w" .. w, cseq = i }))
            io.stdout:write("acked user", w, " ", contact, "\n")
            io.stdout:flush()
          end
        end)
      end
    ]])
    f:close()
    local p = H.process(H.luasip_argv(script, path))
    local function acked_lines()
      local n = 0
      for _ in p:output():gmatch("\n") do n = n + 1 end
      return n
    end
    H.run(function()
      assert(H.poll_until(function() return acked_lines() >= 300 end, 30),
        "the writer did not get going:\n" .. p:output() .. p:errors())
      p:signal("KILL")
      assert.are.equal(137, p:wait(10))
    end, 45)
    local acked = {}
    local out = p:output()
    p:cleanup()
    for w, contact in out:gmatch("acked user(%d) (%S+)\n") do acked[#acked + 1] = { "sip:user" .. w .. "@example.com", contact } end
    assert.is_true(#acked >= 300, #acked .. " acknowledged")
    local loc = assert(luasip.location("sqlite:" .. path))
    local have = {}
    for aor, list in pairs(loc:list()) do
      for _, b in ipairs(list) do have[aor .. " " .. b.contact] = true end
    end
    local missing = {}
    for _, a in ipairs(acked) do
      if not have[a[1] .. " " .. a[2]] then missing[#missing + 1] = a[2] end
    end
    assert.are.same({}, missing)
    assert.is_true(loc:count() >= #acked)
    loc:close()
  end)
end)
