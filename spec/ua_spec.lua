-- luasip.ua: luasip UA <-> luasip UA over real sockets on 127.0.0.1 and [::1].
local H = require "spec.helper"
local luasip = require "luasip"
local core = require "luasip.core"
local sdp = require "luasip.sdp"

-- Every UA a test creates, closed after it whatever happened.
local uas = H.ua_tracker()
local new_ua = uas.new
local counts = H.ua_counts

-- Two UAs on listen; b answers every call (after ring) unless told otherwise.
local function pair(listen, opts)
  opts = opts or {}
  local a = new_ua { listen = listen, aor = "sip:alice@example.test", tls = opts.tls }
  local b = new_ua { listen = listen, aor = "sip:bob@example.test", tls = opts.tls,
                     rel100 = opts.b_rel100 }
  b.incoming = {}
  b:on("call", function(call)
    table.insert(b.incoming, call)
    if opts.on_call then return opts.on_call(call) end
    call:ring()
    assert(call:answer())
  end)
  return a, b
end

local function uri_of(ua, user, host, suffix)
  return string.format("sip:%s@%s:%d%s", user, host, ua.port, suffix or "")
end

local function close_all(...)
  for _, ua in ipairs { ... } do ua:close() end
end

describe("luasip.ua", function()
  local before
  before_each(function() before = counts() end)
  after_each(function()
    uas.close_all()
    local after = counts()
    assert.same(before, after)
  end)

  it("rejects bad options with a one-line error", function()
    assert.has_error(function() luasip.ua { listen = 5 } end)
    assert.has_error(function() luasip.ua { aor = "mailto:x" } end, "luasip.ua: aor: must be a sip: or sips: URI")
    assert.has_error(function() luasip.ua { rel100 = "always" } end)
    local ua = assert(luasip.ua { listen = "127.0.0.1:0" })
    ua:close()
    assert.has_error(function() ua:call("sip:x@127.0.0.1") end, "luasip.ua: used after close()")
  end)

  for _, case in ipairs {
    { "UDP", "127.0.0.1:0", "127.0.0.1", "", "udp" },
    { "TCP", "127.0.0.1:0", "127.0.0.1", ";transport=tcp", "tcp" },
    { "UDP over IPv6", "[::1]:0", "[::1]", "", "udp" },
    { "TCP over IPv6", "[::1]:0", "[::1]", ";transport=tcp", "tcp" },
  } do
    it("calls, answers and hangs up over " .. case[1], function()
      H.run(function()
        local a, b = pair(case[2])
        local progress = {}
        local call, err, status = a:call(uri_of(b, "bob", case[3], case[4]), {
          timeout = 5, headers = { ["X-Case"] = case[1] },
          on_progress = function(_, st) progress[#progress + 1] = st end,
        })
        assert.is_nil(err, tostring(status))
        assert.equal("ready", call.state)
        assert.same({ 180 }, progress)
        local inc = b.incoming[1]
        assert.equal(case[5], inc.request.transport)
        assert.equal(case[1], inc.request:header("X-Case"))
        assert.equal(call.call_id, inc.call_id)
        assert.equal(call.local_tag, inc.remote_tag)
        -- the answering side learns its own tag from the ACK (its 180 was
        -- not reliable: no PRACK came before)
        assert.truthy(H.poll_until(function() return inc.local_tag end, 5))
        assert.equal(call.remote_tag, inc.local_tag)
        assert.equal("sendrecv", sdp.direction(call.remote_sdp))
        assert.truthy(call.local_sdp:find("m=audio", 1, true))
        assert.is_true(call:hangup())
        assert.equal("terminated", call.state)
        assert.is_true(inc:wait_hangup(5))
        assert.equal("remote", inc.hangup_by)
        close_all(a, b)
      end, 20)
    end)
  end

  it("calls over TLS with a verified self-signed certificate (sips:)", function()
    H.run(function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local ok = os.execute(string.format(
        "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 " ..
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 && " ..
        "cat key.pem cert.pem > agent.pem && cp cert.pem cafile.pem", dir))
      assert.truthy(ok)
      local tls = { cert_dir = dir, verify = true }
      local a, b = pair({ "127.0.0.1:0", "tls/127.0.0.1:0" }, { tls = tls })
      assert.is_number(b.tls_port)
      local call, err = a:call(string.format("sips:bob@127.0.0.1:%d", b.tls_port), { timeout = 5 })
      assert.is_nil(err)
      assert.equal("tls", b.incoming[1].request.transport)
      call:hangup()
      close_all(a, b)
      os.execute("rm -rf " .. dir)
    end, 20)
  end)

  it("reports a rejected call as nil, reason, status", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0", { on_call = function(call) call:reject(486, "Busy Here") end })
      local call, reason, status = a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 })
      assert.is_nil(call)
      assert.equal("Busy Here", reason)
      assert.equal(486, status)
      close_all(a, b)
    end, 20)
  end)

  it("redirects with 302 and the contacts", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0", { on_call = function(call) call:redirect("sip:carol@127.0.0.1:9") end })
      local call, reason, status, c = a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 })
      assert.is_nil(call)
      assert.equal(302, status, reason)
      assert.equal("sip:carol@127.0.0.1:9", c.last_response.contact.uri.str)
      close_all(a, b)
    end, 20)
  end)

  it("cancels an unanswered call on timeout", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0", { on_call = function(call) call:ring() call:wait_hangup(10) end })
      local call, reason, status = a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 0.3 })
      assert.is_nil(call)
      assert.equal("timeout", reason)
      assert.equal("timeout", status)
      local inc = b.incoming[1]
      assert.is_true(inc:wait_hangup(5))
      assert.equal(487, inc.status)
      close_all(a, b)
    end, 20)
  end)

  it("survives CANCEL crossing the 200 OK: the call ends cleanly on both sides", function()
    H.run(function()
      local answered = 0
      local a, b = pair("127.0.0.1:0", { on_call = function(call)
        call:ring()
        luasip.sleep(0.05)
        if call:answer({ timeout = 5 }) then answered = answered + 1 end
      end })
      for _ = 1, 5 do
        local c
        local t = luasip.spawn(function()
          c = select(4, a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 0.05 }))
        end)
        assert(t:join(10))
        if c then c:hangup() assert.equal("terminated", c.state) end
      end
      for _, inc in ipairs(b.incoming) do
        assert.is_true(inc:wait_hangup(10))
      end
      assert.equal(5, #b.incoming)
      close_all(a, b)
    end, 40)
  end)

  it("holds and unholds with sendonly/recvonly then sendrecv (RFC 3264)", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
      local inc = b.incoming[1]
      local reinvites = 0
      inc:on("reinvite", function() reinvites = reinvites + 1 end)
      assert.is_true(call:hold())
      assert.equal("sendonly", call:direction_local())
      assert.equal("recvonly", call:direction_remote())
      assert.is_true(H.poll_until(function() return inc:direction_local() == "recvonly" end, 5))
      -- holding from the other side too makes our offer inactive
      assert.is_true(inc:hold())
      assert.equal("inactive", inc:direction_local())
      assert.is_true(inc:unhold())
      assert.is_true(call:unhold())
      assert.equal("sendrecv", call:direction_local())
      assert.equal("sendrecv", call:direction_remote())
      assert.is_true(reinvites >= 2)
      call:hangup()
      close_all(a, b)
    end, 20)
  end)

  it("sends INFO and UPDATE in the dialog, and the peer sees them", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
      local inc = b.incoming[1]
      local infos, updates = {}, 0
      inc:on("info", function(_, msg) infos[#infos + 1] = msg.body end)
      inc:on("update", function() updates = updates + 1 end)
      local resp, status = call:info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")
      assert.truthy(resp, status)
      assert.equal(200, status)
      assert.same({ "Signal=5\r\nDuration=160\r\n" }, infos)
      assert.truthy(call:update())
      assert.equal("ready", call.state) -- not "calling", as nua reports a ready call sending UPDATE
      assert.equal(1, updates)
      -- an UPDATE with a fresh offer of ours is answered (RFC 3311 §5.2)
      local before = call.local_sdp
      local resp2 = assert(call:update { offer = true })
      assert.equal("application/sdp", resp2.content_type)
      assert.equal(2, updates)
      assert.are_not.equal(before, call.local_sdp)
      assert.equal(call.local_sdp, inc.remote_sdp)
      assert.equal(inc.local_sdp, call.remote_sdp)
      assert.equal(resp2.body, call.remote_sdp)
      assert.has_error(function() call:info(5) end, "call:info: expected content type and body strings")
      call:hangup()
      close_all(a, b)
    end, 20)
  end)

  it("uses PRACK for a reliable 183 with early SDP (RFC 3262)", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0", { on_call = function(call)
        call:ring { early_media = true, rel100 = true }
        call.got_prack = call:_wait_until(function() return call.prack_seen end, 5, "prack")
        assert(call:answer())
      end })
      local early
      local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), {
        timeout = 5, rel100 = "required",
        on_progress = function(c, st, _, msg)
          if st == 183 then early = { sdp = c.remote_sdp, require = msg:header("Require"), rseq = msg:header("RSeq") } end
        end,
      }))
      local inc = b.incoming[1]
      assert.truthy(early and early.sdp and early.sdp:find("m=audio", 1, true))
      assert.equal("100rel", early.require)
      assert.truthy(tonumber(early.rseq))
      assert.truthy(inc.got_prack)
      call:hangup()
      close_all(a, b)
    end, 20)
  end)

  it("sends and receives isComposing (RFC 3994), refusing a malformed one with 400", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local seen, texts = {}, {}
      b:on("composing", function(from, state, msg)
        seen[#seen + 1] = { from = from, state = state.state, refresh = state.refresh,
                            content_type = state.content_type, last_active = state.last_active,
                            type = msg.content_type }
      end)
      b:on("message", function(msg) texts[#texts + 1] = msg.body end)
      local to = uri_of(b, "bob", "127.0.0.1")
      assert(a:composing(to, true))
      assert(a:message(to, "hi", { type = "text/plain" }))
      assert(a:composing(to, false))
      assert.equal(2, #seen)
      assert.matches("^sip:alice@", seen[1].from)
      assert.same({ "active", 60, "text/plain", "application/im-iscomposing+xml" },
                  { seen[1].state, seen[1].refresh, seen[1].content_type, seen[1].type })
      assert.equal("idle", seen[2].state)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", seen[2].last_active)
      assert.same({ "hi" }, texts) -- the indications are not messages
      -- malformed, or of the wrong document: 400 before any handler
      for _, body in ipairs { "<isComposing", "<presence xmlns='urn:ietf:params:xml:ns:pidf'/>" } do
        local resp, _, status = a:message(to, body, "application/im-iscomposing+xml")
        assert.is_nil(resp)
        assert.equal(400, status)
      end
      assert.equal(2, #seen)
      close_all(a, b)
    end, 20)
  end)

  it("exchanges MESSAGE and OPTIONS out of dialog, answering from Lua", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local got
      b:on("message", function(msg)
        got = { body = msg.body, type = msg.content_type, from = msg.from.uri.user }
        return 202, "Stored"
      end)
      local resp, reason, status = a:message(uri_of(b, "bob", "127.0.0.1"), "hello bob", "text/plain")
      assert.truthy(resp, reason)
      assert.equal(202, resp.status)
      assert.same({ body = "hello bob", type = "text/plain", from = "alice" }, got)
      b:on("message", function() error("storage failed") end)
      local logged = H.capture_log(function()
        resp, reason, status = a:message(uri_of(b, "bob", "127.0.0.1"), "again")
      end)
      assert.is_nil(resp)
      assert.equal(500, status, reason)
      assert.equal("error", logged[1].level)
      assert.matches("message handler failed: .*storage failed", logged[1].message)
      local opt = assert(a:options(uri_of(b, "bob", "127.0.0.1")))
      assert.equal(200, opt.status)
      assert.truthy(opt:header("Allow"):find("INVITE", 1, true))
      close_all(a, b)
    end, 20)
  end)

  it("lets the message handler answer with msg:reply(), once", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local to = uri_of(b, "bob", "127.0.0.1")
      local seen = {}
      b:on("message", function(msg)
        seen.body, seen.user, seen.type = msg.body, msg.from.uri.user, msg:header("Content-Type")
        seen.first = { msg:reply(486, "Busy Here") }
        seen.second = { msg:reply(200) }
        seen.bad = select(2, pcall(msg.reply, msg, 99))
        return 200 -- ignored: already answered
      end)
      local resp, reason, status = a:message(to, "are you there?")
      assert.is_nil(resp)
      assert.same({ 486, "Busy Here" }, { status, reason })
      assert.same({ "are you there?", "alice", "text/plain" }, { seen.body, seen.user, seen.type })
      assert.same({ true }, seen.first)
      assert.same({ nil, "already answered" }, seen.second)
      assert.matches("msg:reply: status must be an integer in 200..699", seen.bad)
      -- a reply after the handler yielded, and the return value when it does not reply
      b:on("message", function(msg)
        luasip.sleep(0.01)
        if msg.body == "later" then msg:reply(202, "Later") end
        return 480
      end)
      resp = assert(a:message(to, "later"))
      assert.same({ 202, "Later" }, { resp.status, resp.reason })
      resp, reason, status = a:message(to, "now")
      assert.is_nil(resp)
      assert.equal(480, status, reason)
      close_all(a, b)
    end, 20)
  end)

  it("transfers blindly with REFER across three UAs, with NOTIFY sipfrag progress", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local c = new_ua { listen = "127.0.0.1:0", aor = "sip:carol@example.test" }
      local carol_calls = {}
      c:on("call", function(call) carol_calls[#carol_calls + 1] = call call:ring() call:answer() end)
      local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
      local inc = b.incoming[1]
      local progress = {}
      call:on("transfer", function(_, st) progress[#progress + 1] = st end)
      local transferred
      inc:on("transferred", function(_, newcall) transferred = newcall end)
      -- alice asks bob to call carol
      local st = call:refer(uri_of(c, "carol", "127.0.0.1"))
      assert.equal(200, st)
      assert.equal(200, progress[#progress])
      assert.equal(1, #carol_calls)
      assert.is_true(H.poll_until(function() return transferred ~= nil end, 5))
      assert.equal("ready", transferred.state)
      assert.is_true(inc:wait_hangup(5))
      assert.is_true(call:wait_hangup(5))
      transferred:hangup()
      assert.is_true(carol_calls[1]:wait_hangup(5))
      close_all(a, b, c)
    end, 30)
  end)

  it("transfers attended with Replaces (RFC 3891)", function()
    H.run(function()
      -- alice talks to bob and to carol, then joins bob and carol
      local a = new_ua { listen = "127.0.0.1:0", aor = "sip:alice@example.test" }
      local b = new_ua { listen = "127.0.0.1:0", aor = "sip:bob@example.test" }
      local c = new_ua { listen = "127.0.0.1:0", aor = "sip:carol@example.test" }
      local at_bob, at_carol = {}, {}
      b:on("call", function(call) at_bob[#at_bob + 1] = call call:answer() end)
      c:on("call", function(call) at_carol[#at_carol + 1] = call if not call.replaces then call:answer() end end)
      local ab = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
      local ac = assert(a:call(uri_of(c, "carol", "127.0.0.1"), { timeout = 5 }))
      local st = ab:transfer_to(ac)
      assert.equal(200, st)
      -- carol got an INVITE with Replaces that took over her call with alice
      assert.is_true(H.poll_until(function() return #at_carol == 2 end, 5))
      local new = at_carol[2]
      assert.equal(at_carol[1], new.replaces)
      assert.is_true(H.poll_until(function() return new.state == "ready" end, 5))
      assert.is_true(at_carol[1]:wait_hangup(5))
      assert.is_true(ac:wait_hangup(5))
      assert.is_true(ab:wait_hangup(5))
      new:hangup()
      close_all(a, b, c)
    end, 30)
  end)

  it("refreshes session timers, and ends a call whose refresher died (RFC 4028)", function()
    H.run(function()
      local b = new_ua { listen = "127.0.0.1:0", aor = "sip:bob@example.test", min_se = 2 }
      local calls = {}
      b:on("call", function(call)
        calls[#calls + 1] = call
        call.refreshes = 0
        call:on("reinvite", function() call.refreshes = call.refreshes + 1 end)
        call:answer()
      end)
      -- alice in another process, refreshing every SE/2 = 2 s as the UAC
      local dir = H.tmpdir()
      local f = assert(io.open(dir .. "/alice.lua", "w"))
      f:write(string.format([[
local luasip = require "luasip"
local ua = assert(luasip.ua { listen = "127.0.0.1:0", min_se = 2, session_timer = 4, refresher = "local" })
local call = assert(ua:call("sip:bob@127.0.0.1:%d", { timeout = 5 }))
print("up") io.stdout:flush()
call:wait_hangup(60)
]], b.port))
      f:close()
      local p = H.process(H.luasip_argv(dir .. "/alice.lua"))
      p:expect("up\n", 10)
      local call = calls[1]
      assert.equal("4;refresher=uac", call.request:header("Session-Expires"))
      -- two refreshes keep the call up past the first expiry
      assert.truthy(H.poll_until(function() return call.refreshes >= 2 end, 8))
      -- kill alice just after a refresh has completed: the next is ~2 s away.
      -- (Killed while our 200 to a refresh waits for its ACK, the call would
      -- end only when that transaction gives up, after 32 s: under ASan the
      -- window between two polls is wide enough to land in.)
      local n = call.refreshes
      assert.truthy(H.poll_until(function() return call.refreshes > n and call.state == "ready" end, 5))
      -- the reinvite event comes with the re-INVITE, before its ACK: give
      -- the ACK (milliseconds away) time, well inside the ~2 s to the next
      luasip.sleep(0.5)
      p:signal("KILL")
      assert.is_true(call:wait_hangup(10))
      assert.is_true(call.session_expired)
      assert.same({ "local", 408 }, { call.hangup_by, call.status })
      p:wait(5)
      p:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end, 40)
  end)

  it("hangs up a call whose object is collected, and frees its handle", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local function place()
        local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
        assert.equal("ready", call.state)
      end
      place()
      luasip.sleep(0.01) -- let the event that resumed us unwind: it holds the call too
      collectgarbage() collectgarbage()
      local inc = b.incoming[1]
      assert.is_true(inc:wait_hangup(5))
      assert.equal("remote", inc.hangup_by)
      assert.is_true(H.poll_until(function()
        collectgarbage()
        return core.counts().sip_orphans == 0
      end, 5))
      close_all(a, b)
    end, 20)
  end)

  it("hangs up calls when the UA closes", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0")
      local call = assert(a:call(uri_of(b, "bob", "127.0.0.1"), { timeout = 5 }))
      a:close()
      assert.is_true(b.incoming[1]:wait_hangup(5))
      -- no events come after close: the UA ends its call objects itself
      assert.same({ "terminated", 503, "User agent closed" }, { call.state, call.status, call.reason })
      b:close()
    end, 20)
  end)

  it("places 1,000 sequential calls with flat handle, socket and memory counts", function()
    H.run(function()
      local a, b = pair("127.0.0.1:0", { on_call = function(call) call:answer() end })
      local target = uri_of(b, "bob", "127.0.0.1")
      local function batch(n)
        for _ = 1, n do
          local call = assert(a:call(target, { timeout = 5 }))
          call:hangup()
        end
        for _, inc in ipairs(b.incoming) do inc:wait_hangup(5) end
        b.incoming = {}
      end
      batch(100)
      collectgarbage() collectgarbage()
      local mid = counts()
      local mem, heap = collectgarbage("count"), core.heap_bytes()
      batch(900)
      collectgarbage() collectgarbage()
      assert.same(mid, counts())
      assert.is_true(collectgarbage("count") < mem + 512, "Lua heap grew by " .. (collectgarbage("count") - mem) .. " KiB")
      -- C memory too. Completed transactions linger for RFC 3261's timers
      -- (up to 32 s), so look once they are gone: a leak of even half a
      -- KiB per call would show.
      luasip.sleep(33)
      local grown = (core.heap_bytes() - heap) / 1024
      assert.is_true(grown < 512, string.format("C heap grew by %.0f KiB over 900 calls", grown))
      close_all(a, b)
    end, 240)
  end)
end)
