-- Event subscriptions between two luasip UAs on 127.0.0.1 (RFC 6665):
-- presence (RFC 3856, PIDF) and message-summary (RFC 3842) from
-- ua:subscribe() to a UA serving them with ua:on("subscribe"), the
-- notifier ending them (and nua subscribing again after "deactivated"),
-- refusals, and a scripted peer refusing a refresh.
local H = require "spec.helper"
local luasip = require "luasip"
local core = require "luasip.core"
local task = require "luasip.task"
local subscription = require "luasip.subscription"
local sip_peer = require "spec.sip_peer"

local uas = H.ua_tracker()
local new_ua = uas.new
local function counts() return H.ua_counts(true) end

local function pair()
  return new_ua { aor = "sip:alice@example.test" }, new_ua { aor = "sip:bob@example.test" }
end

local function uri_of(ua) return string.format("sip:bob@127.0.0.1:%d", ua.port) end

local function pidf(basic, note)
  return core.pidf_build { entity = "sip:bob@example.test", tuples = { { id = "t1", basic = basic, note = note } } }
end

-- What callbacks push; pop(timeout) waits (bounded) for the next one.
local function queue()
  local q = { items = {}, first = 1 }
  function q.push(v)
    q.items[#q.items + 1] = v
    if q.wake then q.wake() end
  end
  function q.pop(timeout)
    if q.items[q.first] == nil then
      task.wait(function(done)
        q.wake = done
        return function() q.wake = nil end
      end, timeout or 5, "queue")
    end
    local v = q.items[q.first]
    if v ~= nil then q.first = q.first + 1 end
    return v
  end
  return q
end

describe("ua:subscribe and ua:on('subscribe')", function()
  local before
  before_each(function() before = counts() end)
  after_each(function()
    uas.close_all()
    assert.same(before, counts())
  end)

  it("subscribes to presence: PIDF open, then closed, a refresh, and the unsubscription ends the watcher", function()
    H.run(function()
      local a, b = pair()
      local watchers, notes, ended = queue(), queue(), queue()
      b:on("subscribe", function(w)
        w.on_end = function(_, why) ended.push(why) end
        watchers.push(w)
        assert(w:accept { body = pidf("open", "at my desk") })
      end)
      local sub = assert(a:subscribe(uri_of(b), "presence", notes.push, { expires = 120 }))
      assert.same({ "presence", uri_of(b) }, { sub.event, sub.uri })
      local w = assert(watchers.pop())
      assert.same({ "presence", "sip:alice@example.test", 120, "active" }, { w.event, w.from, w.expires, w.state })
      assert.equal("application/pidf+xml", w.msg:header("Accept"))
      local st = assert(notes.pop())
      assert.same({ "active", "application/pidf+xml", "NOTIFY" }, { st.state, st.content_type, st.msg.method })
      assert.truthy(st.expires > 0 and st.expires <= 120, tostring(st.expires))
      assert.same({ "open", "at my desk" }, { st.presence.tuples[1].basic, st.presence.tuples[1].note })
      assert.is_nil(st.error)
      assert.equal("active", sub.state)
      assert.is_true(w:notify(pidf("closed")))
      st = assert(notes.pop())
      assert.same({ "active", "closed" }, { st.state, st.presence.tuples[1].basic })
      -- nua answers the refresh and repeats the last NOTIFY with the new expiry
      assert.equal(sub, sub:refresh(600))
      st = assert(notes.pop())
      assert.same({ "active", "closed" }, { st.state, st.presence.tuples[1].basic })
      assert.truthy(st.expires > 120, tostring(st.expires))
      assert.is_true(sub:unsubscribe())
      assert.equal("terminated", sub.state)
      st = assert(notes.pop())
      assert.equal("terminated", st.state)
      assert.equal("unsubscribed", ended.pop())
      assert.equal("terminated", w.state)
      assert.same({ nil, "subscription terminated" }, { w:notify(pidf("open")) })
      a:close() b:close()
      assert.equal(4, #notes.items) -- the terminated state came once
      assert.equal(1, #ended.items)
    end, 20)
  end)

  it("serves the UA's own presence built from presence = { basic, note, activities }", function()
    H.run(function()
      local a, b = pair()
      local watchers, notes = queue(), queue()
      b:on("subscribe", function(w)
        assert.has_error(function() w:accept { body = "x", presence = {} } end,
                         "watcher:accept: give body or presence, not both")
        assert.has_error(function() w:accept { presence = { basic = "maybe" } } end,
                         'watcher:accept: basic must be "open" or "closed"')
        assert.has_error(function() w:accept { presence = "open" } end, "watcher:accept: presence must be a table")
        assert(w:accept { presence = { note = "in a meeting", activities = { "meeting", "busy" } } })
        watchers.push(w)
      end)
      local sub = assert(a:subscribe(uri_of(b), "presence", notes.push))
      local w = assert(watchers.pop())
      local st = assert(notes.pop())
      local t = assert(st.presence.tuples[1], st.body)
      assert.same({ "open", "in a meeting", b.contact }, { t.basic, t.note, t.contact })
      assert.same({ "meeting", "busy" }, st.presence.activities)
      assert.equal(b.aor, st.presence.entity)
      assert.is_true(w:notify { presence = { basic = "closed" } })
      st = assert(notes.pop())
      assert.same({ "closed", {} }, { st.presence.tuples[1].basic, st.presence.activities })
      assert.is_true(sub:unsubscribe())
      a:close() b:close()
    end, 20)
  end)

  it("ends when the notifier terminates it, after subscribing again on 'deactivated' (RFC 6665 §4.1.3)", function()
    H.run(function()
      local a, b = pair()
      local watchers, notes = queue(), queue()
      b:on("subscribe", function(w)
        watchers.push(w)
        assert(w:accept("pending"))
      end)
      local sub = assert(a:subscribe(uri_of(b), "presence", notes.push))
      local w1 = assert(watchers.pop())
      local st = assert(notes.pop())
      assert.same({ "pending", nil, nil }, { st.state, st.presence, st.error }) -- no body yet
      assert.is_true(w1:notify { state = "active", body = pidf("open") })
      st = assert(notes.pop())
      assert.same({ "active", "open" }, { st.state, st.presence.tuples[1].basic })
      assert.is_true(w1:terminate("deactivated"))
      assert.equal("terminated", w1.state)
      st = assert(notes.pop())
      assert.same({ "pending", "deactivated", true }, { st.state, st.reason, st.resubscribing })
      assert.equal("pending", sub.state)
      -- nua subscribes again by itself, within seconds
      local w2 = assert(watchers.pop(10), "no new SUBSCRIBE after deactivated")
      assert.are_not.equal(w1, w2)
      assert.equal("pending", assert(notes.pop()).state)
      assert.is_true(w2:terminate("rejected"))
      st = assert(notes.pop())
      assert.same({ "terminated", "rejected" }, { st.state, st.reason })
      assert.same({ "terminated", "rejected" }, { sub.state, sub.reason })
      assert.same({ nil, "subscription terminated" }, { sub:refresh() })
      assert.is_true(sub:unsubscribe())
      a:close() b:close()
      assert.equal(5, #notes.items) -- pending, active, deactivated, pending, rejected
    end, 30)
  end)

  it("parses message-summary (RFC 3842), and reports a malformed PIDF with an error", function()
    H.run(function()
      local a, b = pair()
      local watchers = queue()
      b:on("subscribe", function(w)
        watchers.push(w)
        if w.event == "message-summary" then
          assert(w:accept { body = "Messages-Waiting: yes\r\nMessage-Account: sip:bob@example.test\r\n" ..
                                   "Voice-Message: 2/8 (0/2)\r\n" })
        else
          assert(w:accept { body = "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>" })
        end
      end)
      local notes = queue()
      local mwi = assert(a:subscribe(uri_of(b), "message-summary", notes.push, { expires = 600 }))
      assert.equal("application/simple-message-summary", assert(watchers.pop()).msg:header("Accept"))
      local st = assert(notes.pop())
      assert.same({ "active", "application/simple-message-summary" }, { st.state, st.content_type })
      assert.same({ waiting = true, account = "sip:bob@example.test",
                    voice = { new = 2, old = 8, urgent_new = 0, urgent_old = 2 } }, st.summary)
      -- nua answers every NOTIFY 200 itself: the bad document is delivered
      -- with an error; a callback that raises is logged, and called again
      local pres, again
      local logged = H.capture_log(function()
        pres = assert(a:subscribe(uri_of(b), "presence", function(s)
          notes.push(s)
          if s.error then error("cannot use it") end
        end))
        st = assert(notes.pop())
        assert.is_true(assert(watchers.pop()):notify(pidf("open")))
        again = assert(notes.pop())
      end)
      assert.is_nil(st.presence)
      assert.matches("^malformed PIDF: ", st.error)
      assert.equal("<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>", st.body)
      assert.equal(1, #logged)
      assert.matches("subscription callback failed: .*cannot use it", logged[1].message)
      assert.equal("open", again.presence.tuples[1].basic)
      assert.is_true(mwi:unsubscribe())
      assert.is_true(pres:unsubscribe())
      a:close() b:close()
    end, 20)
  end)

  it("parses message-summary bodies tolerantly, never raising", function()
    local ms = subscription.message_summary
    assert.same({ waiting = false }, ms(nil))
    assert.same({ waiting = false }, ms(""))
    assert.same({ waiting = false }, ms("\0\1 garbage\r\n::::\r\n"))
    assert.same({
      waiting = false, account = "sip:alice@vmail.example.com",
      voice = { new = 0, old = 1, urgent_new = 0, urgent_old = 0 },
      fax = { new = 3, old = 4, urgent_new = 1, urgent_old = 0 },
    }, ms("messages-waiting:   NO  \nMessage-Account: sip:alice@vmail.example.com\n" ..
          "voice-message: 0/1\nFax-Message: 3 / 4 ( 1 / 0 )\n" ..
          "Pager-Message: lots\nText-Message: 12345678901/1\n" ..
          "\r\nVoice-Message: 9/9\r\nTo: <sip:alice@example.com>\r\n"))
    -- bounded: a long body is read up to its first 4 KiB
    local long = "Messages-Waiting: yes\r\n" .. string.rep("X-Junk: y\r\n", 2000) .. "Voice-Message: 1/1\r\n"
    assert.same({ waiting = true }, ms(long))
  end)

  it("refuses SUBSCRIBE with 489 without a handler or for other packages, with Allow-Events", function()
    H.run(function()
      local a, b = pair()
      local sub, reason, status = a:subscribe(uri_of(b), "presence", function() end)
      assert.same({ nil, "Bad Event", 489 }, { sub, reason, status })
      local opt = assert(a:options(uri_of(b)))
      assert.is_nil(opt:header("Allow-Events"))
      assert.truthy(opt:header("Allow"):find("SUBSCRIBE", 1, true))
      b:on("subscribe", function(w) w:accept() end, { "presence" })
      opt = assert(a:options(uri_of(b)))
      assert.equal("presence", opt:header("Allow-Events"))
      assert.same({ nil, "Bad Event", 489 }, { a:subscribe(uri_of(b), "dialog", function() end) })
      -- removing the handler refuses them again
      b:on("subscribe", nil)
      assert.same({ nil, "Bad Event", 489 }, { a:subscribe(uri_of(b), "presence", function() end) })
      a:close() b:close()
    end, 20)
  end)

  it("lets the handler reject, and declines (603) or fails (500) a SUBSCRIBE it left unanswered", function()
    H.run(function()
      local a, b = pair()
      local seen = {}
      b:on("subscribe", function(w)
        if w.msg:header("X-Case") == "reject" then
          seen.first = w:reject(403, "Not Your Business")
          seen.second = { w:reject(404) }
          seen.accept = { w:accept() }
        elseif w.msg:header("X-Case") == "raise" then
          error("no presence today")
        end
      end)
      local function try(case)
        return select(2, a:subscribe(uri_of(b), "presence", function() end, { headers = { ["X-Case"] = case } }))
      end
      local reason, status = try("reject")
      assert.same({ "Not Your Business", 403 }, { reason, status })
      assert.same({ true, { nil, "already answered" }, { nil, "already answered" } },
                  { seen.first, seen.second, seen.accept })
      reason, status = try("ignore")
      assert.same({ "Decline", 603 }, { reason, status })
      local logged = H.capture_log(function() reason, status = try("raise") end)
      assert.equal(500, status, reason)
      assert.matches("subscribe handler failed: .*no presence today", logged[1].message)
      a:close() b:close()
    end, 20)
  end)

  it("raises one-line errors on misuse", function()
    H.run(function()
      local a, b = pair()
      local fn = function() end
      assert.has_error(function() a:subscribe(5, "presence", fn) end, "ua:subscribe: uri must be a sip: or sips: URI")
      assert.has_error(function() a:subscribe(uri_of(b), "pres ence", fn) end,
                       "ua:subscribe: event must be an event package name (a token)")
      assert.has_error(function() a:subscribe(uri_of(b), "presence") end, "ua:subscribe: expected a callback function")
      assert.has_error(function() a:subscribe(uri_of(b), "presence", fn, { expire = 5 }) end,
                       "ua:subscribe: unknown option 'expire'")
      assert.has_error(function() a:subscribe(uri_of(b), "presence", fn, { expires = 0 }) end,
                       "ua:subscribe: expires must be a positive number")
      assert.has_error(function() b:on("subscribe", fn, { "pres ence" }) end,
                       'ua:on: event packages must be tokens such as "presence"')
      assert.has_error(function() b:on("message", fn, { "presence" }) end,
                       'ua:on: only "subscribe" takes a list of event packages')
      local watchers = queue()
      b:on("subscribe", function(w)
        assert.has_error(function() w:notify("x") end, "watcher:notify: accept the subscription first")
        assert.has_error(function() w:accept("maybe") end, 'watcher:accept: state must be "active" or "pending"')
        assert.has_error(function() w:reject(200) end, "watcher:reject: status must be 300..699")
        assert.has_error(function() w:terminate() end, "watcher:terminate: not accepted: use watcher:reject()")
        assert(w:accept())
        assert.has_error(function() w:notify("x") end, "watcher:notify: content_type needed for a body of dialog")
        assert.has_error(function() w:notify { presence = {} } end,
                         "watcher:notify: presence = is for the presence package")
        assert.has_error(function() w:terminate("no such reason") end,
                         'watcher:terminate: reason must be a token such as "noresource"')
        watchers.push(w)
      end, { "dialog" })
      local sub = assert(a:subscribe(uri_of(b), "dialog", fn))
      assert(watchers.pop())
      assert.has_error(function() sub:refresh(-1) end, "subscription:refresh: expires must be a positive number")
      assert.is_true(sub:unsubscribe())
      a:close() b:close()
      assert.has_error(function() a:subscribe(uri_of(b), "presence", fn) end, "luasip.ua: used after close()")
    end, 20)
  end)

  it("ends both sides when the subscriber's UA closes", function()
    H.run(function()
      local a, b = pair()
      local ended = queue()
      b:on("subscribe", function(w)
        w.on_end = function(_, why) ended.push(why) end
        assert(w:accept { body = pidf("open") })
      end)
      local notes = queue()
      local sub = assert(a:subscribe(uri_of(b), "presence", notes.push))
      assert(notes.pop())
      a:close()
      assert.equal("terminated", sub.state)
      -- the closing stack unsubscribes
      assert.equal("unsubscribed", ended.pop())
      b:close()
    end, 20)
  end)

  it("ends the subscription when a refresh is refused (481), once", function()
    H.run(function()
      local peer
      peer = sip_peer.udp(function(req)
        if req.method ~= "SUBSCRIBE" then return nil end
        if req.header("To"):find("tag=", 1, true) then return sip_peer.response(req, "481 Subscription Does Not Exist") end
        return sip_peer.response(req, "200 OK", { "Expires: 60", "Contact: <sip:peer@127.0.0.1:" .. peer.port .. ">" })
      end)
      finally(peer.close)
      local a = new_ua { aor = "sip:alice@example.test" }
      local notes = queue()
      local sub = assert(a:subscribe("sip:bob@127.0.0.1:" .. peer.port, "presence", notes.push, { expires = 60 }))
      assert.same({ "init", 60 }, { sub.state, sub.expires })
      local ok, reason, status = sub:refresh()
      assert.same({ nil, "Subscription Does Not Exist", 481 }, { ok, reason, status })
      local st = assert(notes.pop())
      assert.same({ "terminated", "failed", 481 }, { st.state, st.reason, st.status })
      assert.equal("terminated", sub.state)
      assert.equal(2, peer.count("SUBSCRIBE"))
      assert.is_true(sub:unsubscribe()) -- nothing left to end: no request
      assert.equal(2, peer.count("SUBSCRIBE"))
      a:close()
      assert.equal(1, #notes.items)
    end, 20)
  end)
end)
