-- The registrar (luasip.registrar over luasip.location) against real peers
-- on 127.0.0.1: SIPp registering, refreshing and un-registering 1,000
-- users, and 1,000 more through digest challenges (spec/sipp/registrar_*.xml);
-- raw REGISTERs over UDP for the rules of RFC 3261 §10.3 (Min-Expires,
-- `*`, Call-ID/CSeq ordering, what the 200 lists, Path, Require, expiry,
-- replayed credentials) on both location backends; and
-- examples/registrar.lua as a child process, killed with SIGKILL in the
-- middle of a SIPp burst, which must keep every binding it acknowledged.
-- SIPp runs as a child with its traces in a temp dir (ports 17000-18999);
-- a failing assertion prints them.
local H = require "helper"
local luasip = require "luasip"
local core = require "luasip.core"
local auth = require "luasip.auth"
local digest = require "luasip.digest"
local socket = require "socket"

local SCENARIOS = H.root .. "/spec/sipp"
local AOR = "sip:alice@127.0.0.1"
local N = 1000

-- LuaJIT does not seed math.random: two runs would pick the same ports.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)

H.require_sipp()

local function rm(dir) os.execute("rm -rf " .. H.shell_quote(dir)) end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A SIPp users file: SEQUENTIAL, then one line per entry.
local function write_csv(path, lines)
  write_file(path, "SEQUENTIAL\n" .. table.concat(lines, "\n") .. "\n")
end

---------------------------------------------------------------------------
-- SIPp

-- A block of 8 UDP ports in 17000-18999 that nothing uses right now, for
-- SIPp's -p (base), -cp (base + 1) and -mp (base + 4 and base + 6).
local function port_block() return H.udp_port_block(17000, 18999) end

local running = {} -- SIPp and luasip children of the current test

-- In a describe: each test gets a fresh directory (handed to set_dir);
-- when it ends, the children in `running` are stopped and it is removed.
local function per_test(set_dir)
  local dir
  before_each(function()
    dir = H.tmpdir()
    set_dir(dir)
  end)
  after_each(function()
    for _, p in ipairs(running) do p:cleanup() end
    running = {}
    rm(dir)
  end)
end

--- Start SIPp as a child: o.target ("127.0.0.1:port"), o.scenario (a file
--- of spec/sipp), o.csv, o.calls, o.base (port_block()), o.rate (calls/s),
--- o.open (most calls at once), o.cid (-cid_str), o.recv_timeout (ms),
--- o.limit (s, the whole run). Returns the process with :finish(timeout)
--- -> exit code, :stats() (the totals of -trace_stat), :acked() (user ->
--- the expires the 200 listed, from the scenario's "ok" log lines),
--- :diag() (everything, for failure messages).
local function sipp(o)
  local dir = H.tmpdir()
  local argv = {
    "sipp", o.target, "-sf", SCENARIOS .. "/" .. o.scenario, "-inf", o.csv,
    "-i", "127.0.0.1", "-bind_local", "-p", tostring(o.base), "-cp", tostring(o.base + 1),
    "-mp", tostring(o.base + 4), "-m", tostring(o.calls), "-r", tostring(o.rate or 500),
    "-l", tostring(o.open or 200), "-nostdin", "-timeout", tostring(o.limit or 60) .. "s", "-timeout_error",
    "-recv_timeout", tostring(o.recv_timeout or 5000), "-cid_str", o.cid or "%u-%p@luasip-spec",
    "-trace_stat", "-stf", dir .. "/stat.csv", "-fd", "1",
    "-trace_err", "-error_file", dir .. "/errors.log",
    "-trace_logs", "-log_file", dir .. "/logs.log",
  }
  local p = H.process(argv)
  running[#running + 1] = p
  local cleanup = p.cleanup
  function p:cleanup()
    cleanup(self)
    rm(dir)
  end
  function p:finish(timeout)
    if self.rc then return self.rc end
    return (self:wait(timeout or (o.limit or 60) + 10))
  end
  function p:logs() return H.read_file(dir .. "/logs.log") or "" end
  function p:stats()
    local text = H.read_file(dir .. "/stat.csv") or ""
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local st = {}
    if #lines < 2 then return st end
    local names, values = {}, {}
    for v in (lines[1] .. ";"):gmatch("([^;]*);") do names[#names + 1] = v end
    for v in (lines[#lines] .. ";"):gmatch("([^;]*);") do values[#values + 1] = v end
    for i, name in ipairs(names) do st[name] = values[i] end
    return {
      outgoing = tonumber(st["OutgoingCall(C)"]), successful = tonumber(st["SuccessfulCall(C)"]),
      failed = tonumber(st["FailedCall(C)"]), retransmissions = tonumber(st["Retransmissions(C)"]),
    }
  end
  function p:acked()
    local acked, n = {}, 0
    for user, expires in self:logs():gmatch("ok (%S+) ?(%d*)\n") do
      if not acked[user] then n = n + 1 end
      acked[user] = expires
    end
    return acked, n
  end
  function p:diag()
    local function tail(s, n) return #s > n and ("..." .. s:sub(-n)) or s end
    return string.format("%s\nexit: %s\n--- stdout:\n%s\n--- stderr:\n%s\n--- errors.log:\n%s",
      table.concat(argv, " "), tostring(self.rc), tail(self:output(), 3000), tail(self:errors(), 2000),
      tail(H.read_file(dir .. "/errors.log") or "", 4000))
  end
  return p
end

---------------------------------------------------------------------------
-- Raw REGISTERs over UDP

--- A UDP client on 127.0.0.1 for the registrar at port. c:register(o)
--- sends a REGISTER (o.user, o.call_id, o.cseq, o.contacts = {values},
--- o.expires, o.headers = {lines}, o.branch) and returns the parsed final
--- response and the raw request; c:send(raw) sends raw as it is.
local function client(port)
  local s = assert(socket.udp())
  assert(s:setsockname("127.0.0.1", 0))
  s:settimeout(0)
  local _, lport = s:getsockname()
  local c = { n = 0, lport = tonumber(lport) }
  function c:send(raw)
    local branch = assert(raw:match("branch=([^;\r]+)"))
    assert(s:sendto(raw, "127.0.0.1", port))
    local deadline = core.now() + 5
    while core.now() < deadline do
      if not luasip.poll(s, "r", deadline - core.now()) then break end
      local data = s:receive()
      local r = H.parse_response(data)
      if r and r.status >= 200 and data:find(branch, 1, true) then return r end
    end
    error("no final response to:\n" .. raw, 2)
  end
  function c:register(o)
    o = o or {}
    self.n = self.n + 1
    local user = o.user or "alice"
    local lines = {
      "REGISTER sip:127.0.0.1:" .. port .. " SIP/2.0",
      string.format("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport", self.lport,
        o.branch or string.format("z9hG4bK-reg-%d-%d", self.n, math.random(1e9))),
      "Max-Forwards: 70",
      string.format("From: <sip:%s@127.0.0.1>;tag=f%d", user, self.n),
      string.format("To: <sip:%s@127.0.0.1>", user),
      "Call-ID: " .. (o.call_id or string.format("reg-%d-%d@spec", self.n, math.random(1e9))),
      string.format("CSeq: %d REGISTER", o.cseq or 1),
    }
    for _, v in ipairs(o.contacts or {}) do lines[#lines + 1] = "Contact: " .. v end
    if o.expires then lines[#lines + 1] = "Expires: " .. o.expires end
    for _, h in ipairs(o.headers or {}) do lines[#lines + 1] = h end
    lines[#lines + 1] = "Content-Length: 0"
    local raw = table.concat(lines, "\r\n") .. "\r\n\r\n"
    return self:send(raw), raw
  end
  function c:close() s:close() end
  return c
end

--- The bindings a response lists: contact -> { expires =, q = }, and
--- their number.
local function listed(r)
  local out, n = {}, 0
  for _, line in ipairs(r.headers.contact or {}) do
    for uri, params in (line .. ","):gmatch("<([^>]*)>([^,]*),") do
      out[uri] = {
        expires = tonumber(params:match(";%s*expires=(%d+)")),
        q = tonumber(params:match(";%s*q=([%d.]+)")),
      }
      n = n + 1
    end
  end
  return out, n
end

local function contacts_of(bindings)
  local out = {}
  for i, b in ipairs(bindings) do out[i] = b.contact end
  return out
end

-- Is the remaining lifetime of a listed or stored expiry within [lo, hi]?
local function within(v, lo, hi)
  return type(v) == "number" and v >= lo and v <= hi
end

---------------------------------------------------------------------------

describe("luasip.registrar with SIPp", function()
  H.leakcheck()
  local dir
  per_test(function(d) dir = d end)

  local function server(opts)
    local loc = assert(luasip.location("memory:"))
    opts.location = loc
    local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
    srv:on("REGISTER", luasip.registrar(opts))
    finally(function()
      srv:close()
      loc:close()
    end)
    return srv, loc
  end

  it("registers, refreshes and un-registers 1,000 users", function()
    local srv, loc = server {}
    local base = port_block()
    local csv = dir .. "/users.csv"
    H.run(function()
      for _, phase in ipairs {
        { name = "register", cseq = 1, expires = 3600, count = N },
        { name = "refresh", cseq = 2, expires = 1800, count = N },
        { name = "unregister", cseq = 3, expires = 0, count = 0 },
      } do
        local lines = {}
        for i = 1, N do lines[i] = string.format("user%04d;%d;%d", i, phase.cseq, phase.expires) end
        write_csv(csv, lines)
        -- the same Call-ID per user in every phase, and the same Contact
        local p = sipp { target = "127.0.0.1:" .. srv.port, scenario = "registrar_register.xml", csv = csv,
                         calls = N, base = base, cid = "reg-%u@luasip-spec", limit = 90 }
        local rc = p:finish()
        local st = p:stats()
        local why = phase.name .. ":\n" .. p:diag()
        assert.are.equal(0, rc, why)
        assert.are.equal(N, st.successful, why)
        assert.are.equal(0, st.failed, why)
        assert.are.equal(phase.count, loc:count(), why)
        local acked, n = p:acked()
        assert.are.equal(N, n, why)
        for i = 1, N do
          local user = string.format("user%04d", i)
          if phase.expires > 0 then
            -- its binding, listed with the expiry granted
            assert(within(tonumber(acked[user]), phase.expires - 60, phase.expires),
              phase.name .. ": " .. user .. " listed with expires " .. tostring(acked[user]))
            local b = loc:lookup("sip:" .. user .. "@127.0.0.1")
            assert.are.equal(1, #b, user)
            assert.are.equal(string.format("sip:%s@127.0.0.1:%d", user, base), b[1].contact)
            assert.are.equal("reg-" .. i .. "@luasip-spec", b[1].call_id)
            assert.are.equal(phase.cseq, b[1].cseq)
            assert(within(b[1].expires - luasip.time(), phase.expires - 60, phase.expires), user)
          else
            assert.are.equal("", acked[user], user .. ": the 200 still lists a binding")
          end
        end
        p:cleanup()
      end
    end, 400)
  end)

  it("registers 1,000 users through MD5 digest challenges, and refuses a wrong password", function()
    local passwords = {}
    for i = 1, N do passwords[string.format("user%04d", i)] = "pw-" .. i end
    passwords.intruder = "right"
    local a = assert(auth.digest { realm = "luasip.test", algorithms = { "MD5" },
                                   lookup = function(user) return passwords[user] end })
    local srv, loc = server { auth = a }
    local csv = dir .. "/users.csv"
    local lines = {}
    for i = 1, N do
      local user = string.format("user%04d", i)
      lines[i] = string.format("%s;[authentication username=%s password=%s]", user, user, passwords[user])
    end
    lines[N + 1] = "intruder;[authentication username=intruder password=wrong]"
    write_csv(csv, lines)
    H.run(function()
      local p = sipp { target = "127.0.0.1:" .. srv.port, scenario = "registrar_auth.xml", csv = csv,
                       calls = N + 1, base = port_block(), limit = 120 }
      local rc = p:finish()
      local st = p:stats()
      local why = p:diag()
      assert.are.equal(N, st.successful, why)
      assert.are.equal(1, st.failed, why) -- the intruder's answer gets a 401 again
      assert.are.equal(1, rc, why)
      assert.are.equal(N, loc:count(), why)
      local acked, n = p:acked()
      assert.are.equal(N, n, why)
      assert.is_nil(acked.intruder)
      assert.are.same({}, loc:lookup("sip:intruder@127.0.0.1"))
      for i = 1, N do
        local user = string.format("user%04d", i)
        assert(within(tonumber(acked[user]), 3540, 3600), user .. " listed with expires " .. tostring(acked[user]))
        local b = loc:lookup("sip:" .. user .. "@127.0.0.1")
        assert.are.equal(1, #b, user)
        assert.are.equal(2, b[1].cseq) -- from the authenticated REGISTER
      end
    end, 200)
  end)
end)

---------------------------------------------------------------------------

for _, kind in ipairs { "memory", "sqlite" } do
  describe("luasip.registrar (" .. kind .. " store) over UDP", function()
    H.leakcheck()
    local dir
    before_each(function() dir = H.tmpdir() end)
    after_each(function() rm(dir) end)

    -- A registrar server on a free port; closed when the test ends.
    local function server(opts, supported)
      local loc = assert(luasip.location(kind == "memory" and "memory:" or ("sqlite:" .. dir .. "/loc.db")))
      opts.location = loc
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" }, supported = supported })
      srv:on("REGISTER", luasip.registrar(opts))
      finally(function()
        srv:close()
        loc:close()
      end)
      return srv, loc
    end

    -- Run fn(c) in the loop with a client of srv, closed afterwards.
    local function with_client(srv, fn)
      H.run(function()
        local c = client(srv.port)
        local ok, err = pcall(fn, c)
        c:close()
        if not ok then error(err, 0) end
      end, 30)
    end

    it("rejects a replayed Authorization, but answers a retransmission of it again", function()
      local a = assert(auth.digest { realm = "luasip.test", algorithms = { "MD5" },
                                     lookup = function(user) return user == "alice" and "alice-pw" or nil end })
      local srv, loc = server { auth = a }
      with_client(srv, function(c)
        local ruri = "sip:127.0.0.1:" .. srv.port
        local contact = "<sip:alice@192.0.2.10:5060>"
        local r = c:register { call_id = "replay@spec", cseq = 1, contacts = { contact }, expires = 600 }
        assert.are.equal(401, r.status)
        local ch = assert(auth.parse_credentials(r.headers["www-authenticate"][1]))
        assert.are.equal("MD5", ch.params.algorithm)
        local function signed(nc)
          return "Authorization: " .. assert(digest.authorization(ch, { user = "alice", password = "alice-pw",
            method = "REGISTER", uri = ruri, nc = nc, cnonce = "0a4f113b" }))
        end
        local raw
        r, raw = c:register { call_id = "replay@spec", cseq = 2, contacts = { contact }, expires = 600,
                              headers = { signed(1) } }
        assert.are.equal(200, r.status)
        local before = loc:lookup(AOR)
        assert.are.same({ "sip:alice@192.0.2.10:5060" }, contacts_of(before))

        -- a retransmission (the same bytes, the same branch: the 200 was lost)
        r = c:send(raw)
        assert.are.equal(200, r.status)
        assert.is_truthy(listed(r)["sip:alice@192.0.2.10:5060"])

        -- the same request again in a new transaction: a replay
        local replay = raw:gsub("branch=[^;\r]+", "branch=z9hG4bK-replayed", 1)
        r = c:send(replay)
        assert.are.equal(401, r.status)
        assert.is_truthy(r.headers["www-authenticate"])
        -- and in a new transaction with a new CSeq, or removing the binding
        r = c:register { call_id = "replay@spec", cseq = 3, contacts = { contact }, expires = 0,
                         headers = { signed(1) } }
        assert.are.equal(401, r.status)
        assert.are.same(before, loc:lookup(AOR))
        -- the next nonce count is not a replay
        r = c:register { call_id = "replay@spec", cseq = 4, contacts = { contact }, expires = 0,
                         headers = { signed(2) } }
        assert.are.equal(200, r.status)
        assert.are.same({}, loc:lookup(AOR))
      end)
    end)

    it("answers 423 with Min-Expires to a too brief expiry; a Contact's expires overrides Expires", function()
      local srv, loc = server { min_expires = 60, max_expires = 3600, default_expires = 1200 }
      with_client(srv, function(c)
        local r = c:register { contacts = { "<sip:a@192.0.2.1>" }, expires = 10 }
        assert.are.equal(423, r.status)
        assert.are.same({ "60" }, r.headers["min-expires"])
        assert.are.same({}, loc:lookup(AOR))
        -- the parameter wins over the header, both ways
        r = c:register { contacts = { "<sip:a@192.0.2.1>;expires=120" }, expires = 10 }
        assert.are.equal(200, r.status)
        assert(within(listed(r)["sip:a@192.0.2.1"].expires, 119, 120), r.raw)
        r = c:register { contacts = { "<sip:b@192.0.2.1>;expires=10" }, expires = 3600 }
        assert.are.equal(423, r.status)
        assert.are.same({ "60" }, r.headers["min-expires"])
        -- one too brief contact fails the whole request
        r = c:register { contacts = { "<sip:b@192.0.2.1>;expires=600", "<sip:c@192.0.2.1>;expires=5" } }
        assert.are.equal(423, r.status)
        assert.are.same({ "sip:a@192.0.2.1" }, contacts_of(loc:lookup(AOR)))
        -- no expiry given: default_expires; above max_expires: capped
        r = c:register { contacts = { "<sip:d@192.0.2.1>", "<sip:e@192.0.2.1>;expires=86400" } }
        assert.are.equal(200, r.status)
        local l = listed(r)
        assert(within(l["sip:d@192.0.2.1"].expires, 1199, 1200), r.raw)
        assert(within(l["sip:e@192.0.2.1"].expires, 3599, 3600), r.raw)
        -- zero is not too brief: it removes
        r = c:register { contacts = { "<sip:a@192.0.2.1>;expires=0" }, expires = 3600 }
        assert.are.equal(200, r.status)
        assert.is_nil(listed(r)["sip:a@192.0.2.1"])
        assert.are.same({ "sip:d@192.0.2.1", "sip:e@192.0.2.1" }, (function()
          local l2 = contacts_of(loc:lookup(AOR))
          table.sort(l2)
          return l2
        end)())
      end)
    end)

    it("removes every binding for * with Expires: 0, and refuses * otherwise", function()
      local srv, loc = server {}
      with_client(srv, function(c)
        local r = c:register { call_id = "x@spec", cseq = 1, contacts = { "<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>" },
                               expires = 600 }
        assert.are.equal(200, r.status)
        local two = loc:lookup(AOR)
        assert.are.equal(2, #two)
        for _, bad in ipairs {
          { contacts = { "*" }, expires = 60 },
          { contacts = { "*" } },                              -- no Expires at all
          { contacts = { "*", "<sip:c@192.0.2.3>" }, expires = 0 },
          { contacts = { "*, <sip:c@192.0.2.3>" }, expires = 0 },
        } do
          bad.call_id, bad.cseq = "y@spec", 1
          r = c:register(bad)
          assert.are.equal(400, r.status, table.concat(bad.contacts, " | "))
          assert.are.same(two, loc:lookup(AOR))
        end
        r = c:register { call_id = "y@spec", cseq = 1, contacts = { "*" }, expires = 0 }
        assert.are.equal(200, r.status)
        assert.is_nil(r.headers.contact)
        assert.are.same({}, loc:lookup(AOR))
        assert.are.equal(0, loc:count())
        -- from the Call-ID of a binding, * must carry a higher CSeq (§10.3 step 6)
        r = c:register { call_id = "z@spec", cseq = 5, contacts = { "<sip:a@192.0.2.1>" }, expires = 600 }
        assert.are.equal(200, r.status)
        r = c:register { call_id = "x@spec", cseq = 1, contacts = { "<sip:b@192.0.2.2>" }, expires = 600 }
        assert.are.equal(200, r.status)
        for _, cseq in ipairs { 4, 5 } do
          r = c:register { call_id = "z@spec", cseq = cseq, contacts = { "*" }, expires = 0 }
          assert.are.equal(500, r.status)
          assert.are.equal(2, #loc:lookup(AOR)) -- nothing removed, not even b
        end
        r = c:register { call_id = "z@spec", cseq = 6, contacts = { "*" }, expires = 0 }
        assert.are.equal(200, r.status)
        assert.are.same({}, loc:lookup(AOR))
      end)
    end)

    it("orders updates by Call-ID and CSeq, and answers a retransmission again", function()
      local srv, loc = server {}
      with_client(srv, function(c)
        local A = "<sip:a@192.0.2.1>"
        local r = c:register { call_id = "x@spec", cseq = 5, contacts = { A }, expires = 600 }
        assert.are.equal(200, r.status)
        local first = loc:lookup(AOR)[1]
        assert.are.same({ "x@spec", 5 }, { first.call_id, first.cseq })
        -- the same Call-ID with a lower CSeq: fails, changes nothing
        r = c:register { call_id = "x@spec", cseq = 4, contacts = { A }, expires = 1200 }
        assert.are.equal(500, r.status)
        r = c:register { call_id = "x@spec", cseq = 4, contacts = { A }, expires = 0 }
        assert.are.equal(500, r.status)
        assert.are.same({ first }, loc:lookup(AOR))
        -- a higher CSeq updates
        r = c:register { call_id = "x@spec", cseq = 6, contacts = { A }, expires = 1200 }
        assert.are.equal(200, r.status)
        assert(within(listed(r)["sip:a@192.0.2.1"].expires, 1199, 1200), r.raw)
        local b = loc:lookup(AOR)[1]
        assert.are.same({ "x@spec", 6 }, { b.call_id, b.cseq })
        assert(within(b.expires - luasip.time(), 1199, 1200))
        -- another Call-ID updates whatever its CSeq
        local raw
        r, raw = c:register { call_id = "y@spec", cseq = 1, contacts = { A }, expires = 900 }
        assert.are.equal(200, r.status)
        local updated = loc:lookup(AOR)
        assert.are.equal(1, #updated)
        assert.are.same({ "y@spec", 1 }, { updated[1].call_id, updated[1].cseq })
        assert(within(updated[1].expires - luasip.time(), 899, 900))
        -- the identical request again (a retransmission): 200 with the same
        -- binding, which is not written again
        local r2 = c:send(raw)
        assert.are.equal(200, r2.status)
        assert.are.same({ ["sip:a@192.0.2.1"] = listed(r)["sip:a@192.0.2.1"] }, listed(r2))
        assert.are.same(updated, loc:lookup(AOR))
        -- the same CSeq in another transaction counts as the same request too
        r2 = c:register { call_id = "y@spec", cseq = 1, contacts = { A }, expires = 3000 }
        assert.are.equal(200, r2.status)
        assert.are.same(updated, loc:lookup(AOR))
      end)
    end)

    it("lists every binding in the 200 with its remaining expires and q, fetches, stores Path", function()
      local srv, loc = server {}
      with_client(srv, function(c)
        local r = c:register { call_id = "x@spec", contacts = { "<sip:a@192.0.2.1:5060>;expires=600",
                                                                "<sip:b@192.0.2.2:5060>;q=0.5" }, expires = 1200 }
        assert.are.equal(200, r.status)
        local l, n = listed(r)
        assert.are.equal(2, n, r.raw)
        assert(within(l["sip:a@192.0.2.1:5060"].expires, 599, 600), r.raw)
        assert(within(l["sip:b@192.0.2.2:5060"].expires, 1199, 1200), r.raw)
        assert.is_nil(l["sip:a@192.0.2.1:5060"].q)
        assert.are.equal(0.5, l["sip:b@192.0.2.2:5060"].q)
        -- a third from another Call-ID: the 200 lists all three
        r = c:register { call_id = "y@spec", contacts = { "<sip:c@192.0.2.3:5060>;q=0.9" }, expires = 300 }
        assert.are.equal(200, r.status)
        l, n = listed(r)
        assert.are.equal(3, n, r.raw)
        assert.are.equal(0.9, l["sip:c@192.0.2.3:5060"].q)
        assert.are.equal(0.5, l["sip:b@192.0.2.2:5060"].q)
        assert(within(l["sip:a@192.0.2.1:5060"].expires, 598, 600), r.raw)
        -- stored best first: q 1.0 (none given), 0.9, 0.5
        local stored = loc:lookup(AOR)
        assert.are.same({ "sip:a@192.0.2.1:5060", "sip:c@192.0.2.3:5060", "sip:b@192.0.2.2:5060" }, contacts_of(stored))
        assert.are.same({ 0.9, 0.5 }, { stored[2].q, stored[3].q })
        assert.is_nil(stored[1].q)
        -- without Contact: a fetch, which changes nothing
        r = c:register { call_id = "z@spec" }
        assert.are.equal(200, r.status)
        local fetched, m = listed(r)
        assert.are.equal(3, m, r.raw)
        assert(within(fetched["sip:c@192.0.2.3:5060"].expires, 298, 300), r.raw)
        assert.are.same(stored, loc:lookup(AOR))
        -- a q-value out of range
        r = c:register { call_id = "z@spec", cseq = 2, contacts = { "<sip:d@192.0.2.4>;q=1.5" } }
        assert.are.equal(400, r.status)
        assert.are.equal(3, #loc:lookup(AOR))
      end)
    end)

    it("stores Path (RFC 3327), echoes it when the UA supports path, and refuses other Require", function()
      -- (the server must list path too: its req:reply turns a 200 to a
      -- Require it does not know into 420, whatever the registrar said)
      local srv, loc = server({}, { "path" })
      with_client(srv, function(c)
        local bob = "sip:bob@127.0.0.1"
        local path = { "Path: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>", "Path: <sip:edge3.example.net;lr>" }
        local want = { "<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>", "<sip:edge3.example.net;lr>" }
        local headers = { "Supported: path", "Require: path" }
        for _, h in ipairs(path) do headers[#headers + 1] = h end
        local r = c:register { user = "bob", contacts = { "<sip:bob@192.0.2.7>" }, expires = 600, headers = headers }
        assert.are.equal(200, r.status)
        assert.are.same(want, r.headers.path)
        assert.are.same(want, loc:lookup(bob)[1].path)
        -- a UA that does not say Supported: path gets no Path back, but
        -- the binding keeps it
        r = c:register { user = "carol", contacts = { "<sip:carol@192.0.2.8>" }, expires = 600, headers = path }
        assert.are.equal(200, r.status)
        assert.is_nil(r.headers.path)
        assert.are.same(want, loc:lookup("sip:carol@127.0.0.1")[1].path)
        -- an extension we do not support
        r = c:register { contacts = { "<sip:a@192.0.2.1>" }, expires = 600, headers = { "Require: foo" } }
        assert.are.equal(420, r.status)
        assert.are.same({ "foo" }, r.headers.unsupported)
        r = c:register { contacts = { "<sip:a@192.0.2.1>" }, expires = 600, headers = { "Require: path, foo" } }
        assert.are.equal(420, r.status)
        assert.are.same({ "foo" }, r.headers.unsupported)
        assert.are.same({}, loc:lookup(AOR))
      end)
    end)

    it("drops a binding once it expires", function()
      local srv, loc = server { min_expires = 1 }
      local events = {}
      loc:on_change(function(ev) events[#events + 1] = ev end)
      with_client(srv, function(c)
        local r = c:register { contacts = { "<sip:brief@192.0.2.1>;expires=1", "<sip:long@192.0.2.2>" }, expires = 600 }
        assert.are.equal(200, r.status)
        local l, n = listed(r)
        assert.are.equal(2, n, r.raw)
        assert.are.equal(1, l["sip:brief@192.0.2.1"].expires)
        assert.are.equal(2, loc:count())
        assert.is_truthy(H.poll_until(function() return #loc:lookup(AOR) == 1 end, 5),
          "the binding did not expire")
        assert.are.same({ "sip:long@192.0.2.2" }, contacts_of(loc:lookup(AOR)))
        r = c:register {}
        assert.are.equal(200, r.status)
        l, n = listed(r)
        assert.are.equal(1, n, r.raw)
        assert.is_truthy(l["sip:long@192.0.2.2"])
        -- and the store removed it for good, not just hid it
        assert.is_truthy(H.poll_until(function()
          for _, ev in ipairs(events) do
            if ev.kind == "expire" and ev.binding.contact == "sip:brief@192.0.2.1" then return true end
          end
        end, 5), "no expire event")
      end)
    end)
  end)
end

---------------------------------------------------------------------------

describe("examples/registrar.lua killed with SIGKILL", function()
  H.leakcheck()
  local dir
  per_test(function(d) dir = d end)

  -- The example as a child luasip process on a free port; returns it and
  -- the port.
  local function start(db)
    local p = H.process(H.luasip_argv(H.root .. "/examples/registrar.lua", "--listen", "127.0.0.1:0",
      "--no-auth", "--db", "sqlite:" .. db))
    running[#running + 1] = p
    local out = p:expect("registrar: listening on udp/127%.0%.0%.1:%d+", 10)
    return p, tonumber(out:match("udp/127%.0%.0%.1:(%d+)"))
  end

  it("keeps every binding it acknowledged with a 200, and none that had expired", function()
    local db = dir .. "/loc.db"
    local SHORT = "sip:shortlived@127.0.0.1"
    -- First a binding with a short expiry, REGISTERed into the same file.
    local short_expires
    do
      local loc = assert(luasip.location("sqlite:" .. db))
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      srv:on("REGISTER", luasip.registrar { location = loc, min_expires = 1 })
      H.run(function()
        local c = client(srv.port)
        local r = c:register { user = "shortlived", contacts = { "<sip:shortlived@192.0.2.9>" }, expires = 2 }
        c:close()
        assert.are.equal(200, r.status)
      end)
      short_expires = loc:lookup(SHORT)[1].expires
      srv:close()
      loc:close()
      local f = assert(core.sqlite(db))
      local rows = assert(f:rows("SELECT aor FROM location_bindings"))
      f:close()
      assert.are.same({ { aor = SHORT } }, rows)
    end

    local BURST = 3000
    local lines = {}
    for i = 1, BURST do lines[i] = string.format("user%04d;1;3600", i) end
    write_csv(dir .. "/users.csv", lines)
    local base = port_block()
    local child, port = start(db)
    local acked, n
    H.run(function()
      local p = sipp { target = "127.0.0.1:" .. port, scenario = "registrar_register.xml", csv = dir .. "/users.csv",
                       calls = BURST, base = base, rate = 400, open = 100, recv_timeout = 2000, limit = 60 }
      -- the short binding has expired, and the burst is well under way
      assert(H.poll_until(function()
        local _, k = p:acked()
        return luasip.time() > short_expires + 0.5 and k >= 400
      end, 30), "the burst did not get going:\n" .. p:diag() .. "\n" .. child:errors())
      child:signal("KILL")
      assert.are.equal(137, child:wait(10))
      p:finish(90)
      acked, n = p:acked()
      local st = p:stats()
      assert(n < BURST and st.failed > 0, "the registrar was killed after the burst:\n" .. p:diag())
      assert.are.equal(n, st.successful, p:diag())
    end, 120)
    assert.is_true(n >= 400)

    -- Restarted on the same file: the acknowledged bindings are served.
    local again
    again, port = start(db)
    H.run(function()
      local c = client(port)
      local ok, err = pcall(function()
        local sample = 0
        for user in pairs(acked) do
          sample = sample + 1
          if sample > 50 then break end
          local r = c:register { user = user }
          assert.are.equal(200, r.status)
          assert.is_truthy(listed(r)[string.format("sip:%s@127.0.0.1:%d", user, base)], r.raw)
        end
        local r = c:register { user = "shortlived" }
        assert.are.equal(200, r.status)
        assert.is_nil(r.headers.contact, r.raw)
      end)
      c:close()
      if not ok then error(err, 0) end
      again:signal("TERM")
      assert.are.equal(0, again:wait(10), again:errors())
    end, 60)

    -- And the file itself, read once both children are gone.
    local loc = assert(luasip.location("sqlite:" .. db))
    local missing = {}
    for user in pairs(acked) do
      local b = loc:lookup("sip:" .. user .. "@127.0.0.1")
      if #b ~= 1 or b[1].contact ~= string.format("sip:%s@127.0.0.1:%d", user, base) then
        missing[#missing + 1] = user
      end
    end
    assert.are.same({}, loc:lookup(SHORT))
    local count = loc:count()
    loc:close()
    assert.are.same({}, missing)
    assert.is_true(count >= n)
    assert.is_true(count <= BURST)
  end)
end)
