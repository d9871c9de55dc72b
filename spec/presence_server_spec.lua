-- luasip.presence_server on a luasip.server, over real sockets on
-- 127.0.0.1: SUBSCRIBE/NOTIFY (RFC 6665, RFC 3856), PUBLISH (RFC 3903),
-- presence from registration, watcher rules, MESSAGE relay, durable
-- state. Watchers and publishers are luasip UAs, or a luasip.server
-- speaking raw SIP where a test needs many dialogs or odd requests.
local luasip = require "luasip"
local core = require "luasip.core"
local task = require "luasip.task"
local H = require "helper"
if os.getenv("TRACE") then luasip.trace(true) end

local PIDF = "application/pidf+xml"

-- A presence server with a registrar on one luasip.server.
local function presence_setup(opts)
  opts = opts or {}
  local srv = assert(luasip.server { listen = opts.listen or "127.0.0.1:0", auth = opts.auth,
                                     domain = "127.0.0.1" })
  local loc = opts.location or luasip.location("memory:")
  srv:on("REGISTER", luasip.registrar { location = loc, auth = opts.auth, min_expires = 1 })
  local popts = { server = srv, location = loc, auth = opts.auth, store = opts.store,
                  unknown = opts.unknown or "allow", min_expires = 1 }
  local pres = assert(luasip.presence_server(popts))
  local env = { srv = srv, loc = loc, pres = pres, domain = "127.0.0.1:" .. srv.port }
  function env.aor(user) return "sip:" .. user .. "@127.0.0.1" end
  function env.uri(user) return "sip:" .. user .. "@" .. env.domain end
  function env.close()
    pres:close()
    srv:close()
    if not opts.location then loc:close() end
  end
  return env
end

-- A raw watcher/publisher: a luasip.server that sends SUBSCRIBEs and
-- PUBLISHes with server:request and records the NOTIFYs it gets, per
-- Call-ID.
local function endpoint()
  local ep = { srv = assert(luasip.server { listen = "127.0.0.1:0" }), notifies = {}, answer = 200 }
  ep.srv:on("NOTIFY", function(req)
    local list = ep.notifies[req.call_id]
    if not list then list = {} ep.notifies[req.call_id] = list end
    list[#list + 1] = { state = req:header("Subscription-State"), body = req.msg.body, cseq = req.cseq,
                        event = req:header("Event"), uri = req.ruri,
                        from = req:header("From"), to = req:header("To") }
    local waited = 0
    while ep.hold and waited < 5 do task.sleep(0.05) waited = waited + 0.05 end -- a slow watcher
    req:reply(ep.answer)
  end)
  local n = 0
  function ep.subscribe(env, watcher, presentity, o)
    o = o or {}
    n = n + 1
    local call_id = o.call_id or string.format("w%d-%s", n, core.random_token(8))
    local st, resp = ep.srv:request("SUBSCRIBE", env.uri(presentity), {
      from = string.format("<%s>;tag=%s", env.aor(watcher), o.from_tag or "wt" .. n),
      to = "<" .. env.aor(presentity) .. ">" .. (o.to_tag and (";tag=" .. o.to_tag) or ""),
      call_id = call_id, cseq = o.cseq or 1, contact = "<" .. ep.srv.uri .. ">",
      headers = { Event = o.event or "presence", Expires = tostring(o.expires or 600),
                  Accept = o.accept or PIDF, ["Record-Route"] = o.record_route },
    })
    return st, resp, call_id
  end
  function ep.publish(env, presentity, o)
    o = o or {}
    local headers = { Event = o.event or "presence", Expires = tostring(o.expires or 600) }
    if o.etag then headers["SIP-If-Match"] = o.etag end
    return ep.srv:request("PUBLISH", env.uri(presentity), {
      from = string.format("<%s>;tag=%s", env.aor(presentity), core.random_token(6)),
      to = "<" .. env.aor(presentity) .. ">", headers = headers, body = o.body,
      content_type = o.body and (o.content_type or PIDF) or nil,
    })
  end
  function ep.wait(call_id, count)
    return H.poll_until(function()
      local list = ep.notifies[call_id]
      return list and #list >= count and list[count]
    end, 10)
  end
  return ep
end

local function pidf(entity, basic, note)
  return core.pidf_build { entity = entity, tuples = { { id = "t1", basic = basic, note = note } } }
end

local function basic_of(body)
  local doc = assert(core.pidf_parse(assert(body, "a NOTIFY without a body")))
  return doc.tuples[1].basic, doc.tuples[1].note, doc
end

describe("presence server", function()
  it("notifies a watcher of publications and of registration, to their end", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local st, resp, cid = ep.subscribe(env, "alice", "bob")
      assert.equal(200, st)
      assert.equal("600", resp:header("Expires"))
      assert.truthy(resp.to_tag)
      local n1 = ep.wait(cid, 1)
      assert.matches("^active;expires=", n1.state)
      assert.equal("presence", n1.event)
      assert.equal("closed", basic_of(n1.body))       -- not registered, nothing published
      -- publish, modify, remove
      local pst, presp = ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "at my desk"), expires = 60 })
      assert.equal(200, pst)
      local etag = assert(presp:header("SIP-ETag"))
      assert.equal("60", presp:header("Expires"))
      local basic, note = basic_of(ep.wait(cid, 2).body)
      assert.same({ "open", "at my desk" }, { basic, note })
      pst, presp = ep.publish(env, "bob", { etag = etag, body = pidf(env.aor("bob"), "open", "in a meeting") })
      assert.equal(200, pst)
      local etag2 = presp:header("SIP-ETag")
      assert.is_not.equal(etag, etag2)                -- a new tag for every change
      basic, note = basic_of(ep.wait(cid, 3).body)
      assert.same({ "open", "in a meeting" }, { basic, note })
      assert.equal(412, (ep.publish(env, "bob", { etag = etag, expires = 60 })))  -- the old tag is gone
      assert.equal(200, (ep.publish(env, "bob", { etag = etag2, expires = 0 })))
      assert.equal("closed", basic_of(ep.wait(cid, 4).body))
      -- registration: a REGISTER opens, an un-REGISTER closes
      local ua = assert(luasip.ua { aor = env.aor("bob") })
      local reg = assert(ua:register { registrar = "sip:" .. env.domain, expires = 60 })
      local doc
      basic, note, doc = basic_of(ep.wait(cid, 5).body)
      assert.equal("open", basic)
      assert.matches("^sip:bob@127%.0%.0%.1:" .. ua.port, doc.tuples[1].contact)
      assert(reg:unregister())
      assert.equal("closed", basic_of(ep.wait(cid, 6).body))
      -- a publication that is not refreshed expires
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "brb"), expires = 1 })))
      assert.equal("open", basic_of(ep.wait(cid, 7).body))
      assert.equal("closed", basic_of(ep.wait(cid, 8).body))
      -- NOTIFY CSeqs only go up
      for i = 2, 8 do assert.is_true(ep.notifies[cid][i].cseq > ep.notifies[cid][i - 1].cseq) end
      -- the watcher unsubscribes: a last NOTIFY, and the server forgets it
      st = ep.subscribe(env, "alice", "bob", { call_id = cid, to_tag = resp.to_tag, from_tag = "wt1",
                                               cseq = 2, expires = 0 })
      assert.equal(200, st)
      assert.matches("^terminated", ep.wait(cid, 9).state)
      assert.same({}, env.pres:watchers(env.aor("bob")))
      -- a refresh of the ended subscription is refused
      assert.equal(481, (ep.subscribe(env, "alice", "bob", { call_id = cid, to_tag = resp.to_tag,
                                                             from_tag = "wt1", cseq = 3 })))
      ua:close()
      ep.srv:close()
      env.close()
    end, 30)
  end)

  it("three luasip UAs: A watches B's publications and registration; C waits, then is refused", function()
    H.run(function()
      local env = presence_setup { unknown = "pending" }
      local proxy = "sip:" .. env.domain
      local function ua(user) return assert(luasip.ua { aor = env.aor(user), proxy = proxy }) end
      local a, b, c = ua("alice"), ua("bob"), ua("carol")
      local bob = env.aor("bob")
      assert(env.pres:allow(bob, env.aor("alice")))
      local seen = {}
      local sub = assert(a:subscribe(bob, "presence", function(st) seen[#seen + 1] = st end))
      local function nth(n)
        local st = H.poll_until(function() return seen[n] end, 10)
        assert(st, "no NOTIFY #" .. n)
        assert.equal("active", st.state)
        local t = st.presence.tuples[1]
        return t.basic, t.note, st.presence
      end
      assert.equal("closed", nth(1))                         -- the initial NOTIFY
      local pub = assert(b:publish_presence { basic = "open", note = "working" })
      local basic, note, doc = nth(2)
      assert.same({ "open", "working" }, { basic, note })
      assert(pub:update { basic = "open", note = "lunch", activities = { "lunch" } })
      basic, note, doc = nth(3)
      assert.same({ "open", "lunch", { "lunch" } }, { basic, note, doc.activities })
      assert(pub:remove())
      assert.equal("closed", nth(4))
      local reg = assert(b:register { registrar = proxy, expires = 60 })
      assert.equal("open", nth(5))
      assert(reg:unregister())
      assert.equal("closed", nth(6))
      -- a publication nobody refreshes expires (sent raw: nua would refresh it)
      local ep = endpoint()
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(bob, "open", "brb"), expires = 1 })))
      basic, note = nth(7)
      assert.same({ "open", "brb" }, { basic, note })
      assert.equal("closed", nth(8))
      -- carol is unknown to bob: pending, and nothing disclosed; then denied
      local cs = {}
      assert(c:subscribe(bob, "presence", function(st) cs[#cs + 1] = st end))
      assert.equal("pending", H.poll_until(function() return cs[1] end, 10).state)
      assert.is_nil(cs[1].presence)
      assert(env.pres:deny(bob, env.aor("carol")))
      local last = H.poll_until(function() return cs[2] end, 10)
      assert.same({ "terminated", "rejected" }, { last.state, last.reason })
      assert(sub:unsubscribe())
      assert(H.poll_until(function() return #env.pres:watchers(bob) == 0 end, 10))
      ep.srv:close()
      a:close() b:close() c:close()
      env.close()
    end, 40)
  end)

  it("ends a subscription that is not refreshed, and one whose NOTIFY fails", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local st, _, cid = ep.subscribe(env, "alice", "bob", { expires = 1 })
      assert.equal(200, st)
      assert.matches("^active", ep.wait(cid, 1).state)
      assert.equal("terminated;reason=timeout", ep.wait(cid, 2).state)
      local st2, _, cid2 = ep.subscribe(env, "carol", "bob")
      assert.equal(200, st2)
      assert(ep.wait(cid2, 1))
      ep.answer = 481                                    -- the watcher forgot it
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open") })))
      assert(ep.wait(cid2, 2))
      assert(H.poll_until(function() return #env.pres:watchers(env.aor("bob")) == 0 end, 5))
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("sends NOTIFYs in the subscription's dialog: tags, CSeq, and through its Record-Route", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      -- the watcher's proxy recorded its route: the NOTIFYs come back through it
      local seen = {}
      local proxy = assert(luasip.server { listen = "127.0.0.1:0",
                                           observe = function(i) seen[#seen + 1] = i.method .. " " .. i.uri end })
      local st, sresp, cid = ep.subscribe(env, "alice", "bob",
                                          { record_route = "<sip:127.0.0.1:" .. proxy.port .. ";lr>" })
      assert.equal(200, st)
      local to_tag = assert(sresp:header("To"):match("tag=([^;>%s]+)"))
      local n1 = assert(ep.wait(cid, 1))
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open") })))
      local n2 = assert(ep.wait(cid, 2))
      for _, n in ipairs { n1, n2 } do
        assert.equal(ep.srv.uri, n.uri)                   -- to the watcher's Contact,
        assert.matches("tag=" .. to_tag, n.from, 1, true) -- in its dialog
        assert.matches("tag=wt1", n.to, 1, true)
        assert.equal("presence", n.event)
      end
      assert.equal(n1.cseq + 1, n2.cseq)
      -- by way of the proxy (RFC 3261 §12.2.1.1), not straight to the Contact
      assert(H.poll_until(function() return #seen >= 2 end, 5))
      assert.same({ "NOTIFY " .. ep.srv.uri, "NOTIFY " .. ep.srv.uri }, seen)
      proxy:close()
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("merges the publications of a presentity, renaming tuple ids they share, the same way each time", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "desk") })))
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "closed", "phone") })))
      local first = env.pres:document(env.aor("bob"))
      local doc = assert(core.pidf_parse(first))
      assert.equal(2, #doc.tuples)
      assert.are_not.equal(doc.tuples[1].id, doc.tuples[2].id)
      assert.equal(first, env.pres:document(env.aor("bob")))
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("merges the changes made while a NOTIFY is in flight, and still ends with the final NOTIFY", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local st, sresp, cid = ep.subscribe(env, "alice", "bob")
      assert.equal(200, st)
      local to_tag = assert(sresp:header("To"):match("tag=([^;>%s]+)"))
      assert(ep.wait(cid, 1))
      ep.hold = true                          -- alice is slow to answer NOTIFY 2
      local st1, resp = ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "one") })
      assert.equal(200, st1)
      assert.equal("one", select(2, basic_of(ep.wait(cid, 2).body)))
      local etag = resp:header("SIP-ETag")
      for _, note in ipairs { "two", "three" } do
        st1, resp = ep.publish(env, "bob", { etag = etag, body = pidf(env.aor("bob"), "open", note) })
        assert.equal(200, st1)
        etag = resp:header("SIP-ETag")
      end
      -- and she unsubscribes, all while NOTIFY 2 waits for its answer
      assert.equal(200, (ep.subscribe(env, "alice", "bob", { call_id = cid, from_tag = "wt1", cseq = 2,
                                                             to_tag = to_tag, expires = 0 })))
      ep.hold = false
      local last = ep.wait(cid, 3)
      assert.equal("terminated;reason=timeout", last.state)
      assert.equal("three", select(2, basic_of(last.body))) -- two and three merged into the last
      task.sleep(0.6)
      assert.equal(3, #ep.notifies[cid])
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("notifies 100 watchers of one PUBLISH", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local cids = {}
      for i = 1, 100 do
        local st, _, cid = ep.subscribe(env, "watcher" .. i, "bob")
        assert.equal(200, st)
        cids[i] = cid
      end
      for i = 1, 100 do assert(ep.wait(cids[i], 1)) end
      assert.equal(100, #env.pres:watchers(env.aor("bob")))
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "hello all") })))
      for i = 1, 100 do
        local basic, note = basic_of(ep.wait(cids[i], 2).body)
        assert.same({ "open", "hello all" }, { basic, note })
      end
      ep.srv:close()
      env.close()
    end, 60)
  end)

  it("keeps unknown watchers pending until allowed, and rejects denied ones", function()
    H.run(function()
      local env = presence_setup { unknown = "pending" }
      local ep = endpoint()
      local bob, alice, mallory = env.aor("bob"), env.aor("alice"), env.aor("mallory")
      local st, _, cid = ep.subscribe(env, "alice", "bob")
      assert.equal(200, st)
      local n1 = ep.wait(cid, 1)
      assert.matches("^pending;expires=", n1.state)
      assert.is_nil(n1.body ~= "" and n1.body or nil)   -- nothing is disclosed while pending
      assert.same({ { watcher = alice, state = "pending", expires = env.pres:watchers(bob)[1].expires } },
                  env.pres:watchers(bob))
      assert(env.pres:allow(bob, alice))
      local n2 = ep.wait(cid, 2)
      assert.matches("^active;expires=", n2.state)
      assert.equal("closed", basic_of(n2.body))
      -- deny: the subscription ends, and a new one is refused
      local st3, _, cid3 = ep.subscribe(env, "mallory", "bob")
      assert.equal(200, st3)
      assert.matches("^pending", ep.wait(cid3, 1).state)
      assert(env.pres:deny(bob, mallory))
      assert.equal("terminated;reason=rejected", ep.wait(cid3, 2).state)
      assert.equal(403, (ep.subscribe(env, "mallory", "bob")))
      -- the presentity may always watch itself
      local st4, _, cid4 = ep.subscribe(env, "bob", "bob")
      assert.equal(200, st4)
      assert.matches("^active", ep.wait(cid4, 1).state)
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("answers bad SUBSCRIBE and PUBLISH requests with the right error", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local st, resp = ep.subscribe(env, "alice", "bob", { event = "dialog" })
      assert.equal(489, st)
      assert.equal("presence", resp:header("Allow-Events"))
      assert.equal(406, (ep.subscribe(env, "alice", "bob", { accept = "application/xpidf+xml" })))
      env.pres.min_expires = 60
      st, resp = ep.subscribe(env, "alice", "bob", { expires = 5 })
      assert.equal(423, st)
      assert.equal("60", resp:header("Min-Expires"))
      assert.equal(481, (ep.subscribe(env, "alice", "bob", { to_tag = "nosuch" })))
      st, resp = ep.publish(env, "bob", { body = "hello", content_type = "text/plain" })
      assert.equal(415, st)
      assert.equal(PIDF, resp:header("Accept"))
      st, resp = ep.publish(env, "bob", { body = "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple" })
      assert.equal(400, st)
      assert.matches("^Bad PIDF", resp.reason)
      assert.equal(400, (ep.publish(env, "bob", {})))             -- no body, no tag
      assert.equal(412, (ep.publish(env, "bob", { etag = "nosuch" })))
      assert.equal(489, (ep.publish(env, "bob", { event = "dialog", body = pidf(env.aor("bob"), "open") })))
      ep.srv:close()
      env.close()
    end)
  end)

  it("answers a SIPp peer's malformed PIDF with 400, other types with 415, other events with 489", function()
    H.require_sipp()
    local env = presence_setup()
    local sipp = H.sipp({ "-sf", H.root .. "/spec/sipp/presence_bad.xml", "127.0.0.1:" .. env.srv.port },
      { port = function() return H.udp_port_block(17000, 17999) end, limit = 10,
        argv = function() return { "-m", "1" } end })
    H.run(function() assert.equal(0, sipp:finish(), sipp:diag()) end, 20)
    assert.same({}, env.pres:watchers(env.aor("bob")))
    for _ in env.pres.store:each("pub") do error("a bad PUBLISH was stored") end
    sipp:cleanup()
    env.close()
  end)

  it("authenticates watchers and publishers: 407, then only their own identity", function()
    H.run(function()
      local auth = luasip.auth.digest { realm = "127.0.0.1", lookup = function(user)
        return ({ alice = "a-secret", bob = "b-secret" })[user]
      end }
      local env = presence_setup { auth = auth }
      local ep = endpoint()
      local st, resp = ep.subscribe(env, "alice", "bob")
      assert.equal(407, st)
      assert.truthy(resp:header("Proxy-Authenticate"))
      -- luasip UAs answer the challenge
      local alice = assert(luasip.ua { aor = env.aor("alice"), proxy = "sip:" .. env.domain,
                                       credentials = { user = "alice", password = "a-secret" } })
      local bob = assert(luasip.ua { aor = env.aor("bob"), proxy = "sip:" .. env.domain,
                                     credentials = { user = "bob", password = "b-secret" } })
      local pub = assert(bob:publish_presence { basic = "open", note = "authenticated" })
      assert.equal("published", pub.state)
      -- alice may not publish bob's presence
      local eve = assert(luasip.ua { aor = env.aor("bob"), proxy = "sip:" .. env.domain,
                                     credentials = { user = "alice", password = "a-secret" } })
      local ok, why, status = eve:publish_presence { basic = "closed" }
      assert.is_nil(ok, why)
      assert.equal(403, status)
      assert(pub:remove())
      alice:close() bob:close() eve:close()
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("keeps subscriptions and publications in a durable store across a restart", function()
    H.run(function()
      local dir = H.tmpdir()
      local url = "sqlite:" .. dir .. "/presence.db"
      local env = presence_setup { store = url }
      local port = env.srv.port
      local ep = endpoint()
      local st, _, cid = ep.subscribe(env, "alice", "bob")
      assert.equal(200, st)
      assert(ep.wait(cid, 1))
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "before") })))
      local before = ep.wait(cid, 2)
      env.close()
      -- a new server on the same address, over the same store
      env = presence_setup { store = url, listen = "127.0.0.1:" .. port }
      assert.equal(1, #env.pres:watchers(env.aor("bob")))
      assert.equal("before", select(2, basic_of(env.pres:document(env.aor("bob")))))
      assert.equal(200, (ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open", "after") })))
      local after = ep.wait(cid, 3)
      assert.equal("after", select(2, basic_of(after.body)))
      assert.is_true(after.cseq > before.cseq)
      ep.srv:close()
      env.close()
    end, 20)
  end)

  it("serves another event package: its bodies, its policy, changed() notifies", function()
    H.run(function()
      local env = presence_setup()
      local ep = endpoint()
      local waiting = { [env.aor("bob")] = 0 }
      env.pres:package("message-summary", {
        content_type = "application/simple-message-summary",
        document = function(aor)
          local n = waiting[aor] or 0
          return string.format("Messages-Waiting: %s\r\nVoice-Message: %d/0\r\n", n > 0 and "yes" or "no", n)
        end,
      })
      assert.equal("presence, message-summary", env.pres:allow_events())
      -- the default policy: only the resource's own user
      local MS = { event = "message-summary", accept = "application/simple-message-summary" }
      assert.equal(403, (ep.subscribe(env, "alice", "bob", MS)))
      assert.equal(406, (ep.subscribe(env, "bob", "bob", { event = "message-summary", accept = PIDF })))
      local st, _, cid = ep.subscribe(env, "bob", "bob", MS)
      assert.equal(200, st)
      local n1 = ep.wait(cid, 1)
      assert.equal("message-summary", n1.event)
      assert.matches("Messages%-Waiting: no", n1.body)
      waiting[env.aor("bob")] = 2
      env.pres:changed(env.aor("bob"), "message-summary")
      assert.matches("Voice%-Message: 2/0", ep.wait(cid, 2).body)
      env.pres:changed(env.aor("bob"), "message-summary") -- no change: no NOTIFY
      -- presence watchers of bob are a different set
      local pst, _, pcid = ep.subscribe(env, "alice", "bob")
      assert.equal(200, pst)
      assert.matches("pidf", ep.wait(pcid, 1).body)
      waiting[env.aor("bob")] = 3
      env.pres:changed(env.aor("bob"), "message-summary")
      assert.matches("Voice%-Message: 3/0", ep.wait(cid, 3).body)
      assert.is_nil(ep.notifies[cid][4])
      assert.is_nil(ep.notifies[pcid][2])
      assert.equal(1, #env.pres:watchers(env.aor("bob"), "message-summary"))
      -- an unknown package lists what is served
      local est, eresp = ep.subscribe(env, "bob", "bob", { event = "dialog" })
      assert.equal(489, est)
      assert.equal("presence, message-summary", eresp:header("Allow-Events"))
      assert.has_error(function() env.pres:package("presence", { content_type = "x", document = print }) end,
        "presence_server:package: presence is built in")
      assert.has_error(function() env.pres:changed(env.aor("bob"), "dialog") end,
        "presence_server:changed: no event package dialog")
      env.close()
      ep.srv:close()
    end, 30)
  end)

  it("relays MESSAGE to every contact of the recipient, 404 for an unknown one", function()
    H.run(function()
      local env = presence_setup()
      local got = {}
      local function bob_device(name)
        local ua = assert(luasip.ua { aor = env.aor("bob"), contact_user = "bob-" .. name })
        ua:on("message", function(msg) got[#got + 1] = { name, msg.body } end)
        ua:on("composing", function(from, state) got[#got + 1] = { name, "composing " .. state.state, from } end)
        assert(ua:register { registrar = "sip:" .. env.domain, expires = 60 })
        return ua
      end
      local b1, b2 = bob_device("desk"), bob_device("phone")
      assert.equal(2, #env.loc:lookup(env.aor("bob")))
      local alice = assert(luasip.ua { aor = env.aor("alice"), proxy = "sip:" .. env.domain })
      assert(alice:message(env.aor("bob"), "hi bob"))
      assert(H.poll_until(function() return #got == 2 end, 5))
      table.sort(got, function(x, y) return x[1] < y[1] end)
      assert.same({ { "desk", "hi bob" }, { "phone", "hi bob" } }, got)
      got = {}
      assert(alice:composing(env.aor("bob"), true))
      assert(H.poll_until(function() return #got == 2 end, 5))
      assert.same({ "composing active", env.aor("alice") }, { got[1][2], got[1][3] })
      local ok, why, status = alice:message(env.aor("nobody"), "anyone?")
      assert.is_nil(ok, why)
      assert.equal(404, status)
      alice:close() b1:close() b2:close()
      env.close()
    end, 20)
  end)
end)

describe("presence store", function()
  local store = require "luasip.store"

  it("encodes records and decodes them back, refusing corrupt text", function()
    local rec = { a = "x=1:2:3", n = 1.5, i = 42, yes = true, no = false, route = { "<sip:p1;lr>", "", "a:b" } }
    assert.same(rec, assert(store.decode(store.encode(rec))))
    assert.same({}, assert(store.decode("")))
    for _, bad in ipairs { "a=t:5:abc", "a=q:1:x", "=t:1:x", "a=l:3:9:x" } do
      assert.is_nil(store.decode(bad), bad)
    end
    assert.has_error(function() store.encode { f = function() end } end)
  end)

  it("takes an empty list of changes on every backend (a PUBLISH with a body and Expires: 0)", function()
    local dir = H.tmpdir()
    finally(function() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    H.run(function()
      for _, url in ipairs { "memory:", "sqlite:" .. dir .. "/p.db" } do
        local st = assert(store.open(url))
        assert.is_true(st:apply {})
        st:close()
      end
      -- through the server: a new publication that expires at once is
      -- answered (200) and stores nothing
      local env = presence_setup { store = "sqlite:" .. dir .. "/pres.db" }
      local ep = endpoint()
      local st = ep.publish(env, "bob", { body = pidf(env.aor("bob"), "open"), expires = 0 })
      assert.equal(200, st)
      env.close()
      ep.srv:close()
    end, 20)
  end)

  it("keeps what it stores across a reopen (sqlite), and forgets deletions", function()
    H.run(function()
      local url = "sqlite:" .. H.tmpdir() .. "/p.db"
      local st = assert(store.open(url))
      assert(st:apply { { "pub", "e1", { presentity = "sip:b@h", expires = 10 } },
                        { "pub", "e2", { presentity = "sip:c@h", expires = 20 } } })
      assert(st:delete("pub", "e1"))
      st:close()
      st = assert(store.open(url))
      assert.is_nil(st:get("pub", "e1"))
      assert.same({ presentity = "sip:c@h", expires = 20 }, st:get("pub", "e2"))
      st:close()
    end)
  end)

  it("iterates over the records with a field's value, through an index kept by every change", function()
    H.run(function()
      local st = assert(store.open("memory:"))
      local function keys(...)
        local out = {}
        for k, rec in st:each(...) do out[#out + 1] = k .. "=" .. rec.presentity end
        table.sort(out)
        return out
      end
      assert(st:apply { { "pub", "e1", { presentity = "sip:b@h" } }, { "pub", "e2", { presentity = "sip:c@h" } },
                        { "pub", "e3", { presentity = "sip:b@h" } }, { "sub", "s1", { presentity = "sip:b@h" } } })
      assert.same({ "e1=sip:b@h", "e3=sip:b@h" }, keys("pub", "presentity", "sip:b@h")) -- builds the index
      assert(st:apply { { "pub", "e1", false }, { "pub", "e2", { presentity = "sip:b@h" } },
                        { "pub", "e4", { presentity = "sip:d@h" } } })
      assert.same({ "e2=sip:b@h", "e3=sip:b@h" }, keys("pub", "presentity", "sip:b@h"))
      assert.same({}, keys("pub", "presentity", "sip:c@h"))
      assert.same({ "e4=sip:d@h" }, keys("pub", "presentity", "sip:d@h"))
      assert.same({ "e2=sip:b@h", "e3=sip:b@h", "e4=sip:d@h" }, keys("pub"))
      assert.same({ "s1=sip:b@h" }, keys("sub", "presentity", "sip:b@h"))
      -- a change while iterating is safe
      for k in st:each("pub", "presentity", "sip:b@h") do assert(st:delete("pub", k)) end
      assert.same({ "e4=sip:d@h" }, keys("pub"))
      assert.same({}, keys("pub", "presentity", "sip:b@h"))
      st:close()
    end)
  end)
end)
