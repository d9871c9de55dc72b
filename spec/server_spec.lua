-- The minimal SIP server: binds UDP and TCP, answers OPTIONS, traces.
local H = require "helper"
local luasip = require "luasip"

describe("luasip.server", function()
  H.leakcheck()

  it("binds UDP and TCP on one free port when asked for port 0", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    assert.is_true(srv.port > 1024)
    assert.are.same({ "udp/127.0.0.1:" .. srv.port, "tcp/127.0.0.1:" .. srv.port }, srv:addresses())
    assert.matches("luasip.server %(udp/127.0.0.1:%d+", tostring(srv))
    srv:close()
    srv:close() -- idempotent
    assert.are.same({}, srv:addresses())
  end)

  it("answers OPTIONS over UDP with 200, Allow and Accept, and reports it", function()
    local seen = {}
    local srv = assert(luasip.server { listen = "127.0.0.1:0", observe = function(info) seen[#seen + 1] = info end })
    H.run(function()
      local r = H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port)))
      assert.are.equal(200, r.status)
      assert.are.same({ "OPTIONS" }, r.headers.allow)
      assert.are.same({ "application/sdp" }, r.headers.accept)
      assert.matches("^luasip/", r.headers.server[1])
      assert.matches(";tag=", r.headers.to[1])
    end)
    srv:close()
    assert.are.equal(1, #seen)
    assert.are.equal("OPTIONS", seen[1].method)
    assert.are.equal(200, seen[1].status)
    assert.are.equal("udp", seen[1].transport)
    assert.are.equal("127.0.0.1", seen[1].source)
    assert.matches("^sip:luasip@127.0.0.1:", seen[1].uri)
    assert.are.equal("sip:spec@127.0.0.1", seen[1].from)
  end)

  it("answers OPTIONS over TCP", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    H.run(function()
      local r = H.parse_response(H.tcp_exchange(srv.port, H.request("OPTIONS", srv.port, { transport = "tcp" })))
      assert.are.equal(200, r.status)
    end)
    srv:close()
  end)

  it("answers sofia's own sip-options client over UDP and TCP", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    H.run(function()
      for _, suffix in ipairs { "", ";transport=tcp" } do
        local p = H.process { "sip-options", "--bind=sip:127.0.0.1:*", "sip:127.0.0.1:" .. srv.port .. suffix }
        assert.are.equal(0, p:wait(10))
        assert.matches("SIP/2.0 200 OK", p:output())
        assert.matches("Allow: OPTIONS", p:output())
        p:cleanup()
      end
    end, 20)
    srv:close()
  end)

  it("serves IPv6", function()
    local srv = assert(luasip.server { listen = "[::1]:0", transports = { "udp" } })
    assert.are.same({ "udp/[::1]:" .. srv.port }, srv:addresses())
    H.run(function()
      local p = H.process { "sip-options", "--bind=sip:[::1]:*", "sip:[::1]:" .. srv.port }
      assert.are.equal(0, p:wait(10))
      assert.matches("SIP/2.0 200 OK", p:output())
      p:cleanup()
    end, 15)
    srv:close()
  end)

  it("answers what it cannot handle yet with the right errors", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0", max_size = 4096 })
    H.run(function()
      local function ask(msg) return H.parse_response(H.udp_exchange(srv.port, msg)) end
      local r = ask(H.request("INVITE", srv.port))
      assert.are.equal(405, r.status)   -- a method the server has no handler for
      assert.are.same({ "OPTIONS" }, r.headers.allow)
      r = ask(H.request("OPTIONS", srv.port, { headers = { "Require: foo, bar" } }))
      assert.are.equal(420, r.status)
      assert.are.same({ "foo, bar" }, r.headers.unsupported)
      r = ask(H.request("OPTIONS", srv.port, { uri = "mailto:someone@example.com" }))
      assert.are.equal(416, r.status)
      r = ask((H.request("OPTIONS", srv.port):gsub("SIP/2%.0\r\n", "SIP/7.0\r\n", 1)))
      assert.are.equal(505, r.status)
      r = ask((H.request("OPTIONS", srv.port):gsub("CSeq: 1 OPTIONS", "CSeq: x OPTIONS")))
      assert.are.equal(400, r.status)
      r = ask(H.request("OPTIONS", srv.port, { headers = { "X-Big: " .. string.rep("a", 5000) } }))
      assert.are.equal(413, r.status)
      -- still alive and answering
      assert.are.equal(200, ask(H.request("OPTIONS", srv.port)).status)
    end)
    srv:close()
  end)

  it("reports unknown methods and long URIs intact (regressions: use-after-free, truncation)", function()
    local seen = {}
    local srv = assert(luasip.server { listen = "127.0.0.1:0", observe = function(i) seen[#seen + 1] = i end })
    local long_uri = "sip:" .. string.rep("u", 300) .. "@127.0.0.1:" .. srv.port .. ";x=" .. string.rep("p", 200)
    H.run(function()
      assert.are.equal(501, H.parse_response(H.udp_exchange(srv.port, H.request("FOOBAR", srv.port))).status)
      assert.are.equal(200, H.parse_response(H.udp_exchange(srv.port,
        H.request("OPTIONS", srv.port, { uri = long_uri }))).status)
    end)
    srv:close()
    assert.are.equal("FOOBAR", seen[1].method)
    assert.are.equal(501, seen[1].status)
    assert.are.equal(long_uri, seen[2].uri)
  end)

  it("reports a busy port as nil, message, code", function()
    local a = assert(luasip.server { listen = "127.0.0.1:0" })
    local b, err, code = luasip.server { listen = "127.0.0.1:" .. a.port }
    assert.is_nil(b)
    assert.matches("cannot listen on udp/127.0.0.1:" .. a.port, err)
    assert.are.equal("EADDRINUSE", code)
    local port = a.port
    a:close()
    local c = assert(luasip.server { listen = "127.0.0.1:" .. port }) -- released
    c:close()
  end)

  it("rejects bad options with one-line errors", function()
    assert.has_error(function() luasip.server { listen = "127.0.0.1:99999" } end,
      "luasip.server: port out of range in 127.0.0.1:99999")
    assert.has_error(function() luasip.server { transports = { "sctp" } } end,
      "luasip.agent: transport must be \"udp\" or \"tcp\"")
    assert.has_error(function() luasip.server "x" end, "luasip.server: expected a table of options")
    assert.has_error(function() luasip.server { observe = 1 } end, "luasip.server: observe must be a function")
  end)

  it("traces every message sent and received, with time and addresses", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    local records = H.capture_log(function()
      luasip.trace(true)
      H.run(function()
        assert.are.equal(200, H.parse_response(H.udp_exchange(srv.port, H.request("OPTIONS", srv.port))).status)
      end)
      luasip.trace(false)
      H.run(function() H.udp_exchange(srv.port, H.request("OPTIONS", srv.port)) end)
    end)
    srv:close()
    local sip = {}
    for _, r in ipairs(records) do if r.level == "sip" then sip[#sip + 1] = r.message end end
    assert.are.equal(2, #sip)
    assert.matches("^recv %d+ bytes from udp/%[127.0.0.1%]:%d+ at %d%d:%d%d:%d%d%.%d+\nOPTIONS sip:luasip@", sip[1])
    assert.matches("^send %d+ bytes to udp/%[127.0.0.1%]:%d+ at [%d:.]+\nSIP/2.0 200 OK\n", sip[2])
    assert.is_false(luasip.trace())
  end)

  it("keeps a traced message whole when its body looks like the trace framing", function()
    local srv = assert(luasip.server { listen = "127.0.0.1:0" })
    local fake = string.rep("-", 72) -- tport indents it into its own framing line
    local body = "a\r\n" .. fake .. "\r\nrecv 10 bytes from udp/[6.6.6.6]:1 at 00:00:00.000000:\r\nforged\r\n"
    local records = H.capture_log(function()
      luasip.trace(true)
      H.run(function() H.udp_exchange(srv.port, H.request("OPTIONS", srv.port, { body = body })) end)
      luasip.trace(false)
    end)
    srv:close()
    local recv
    for _, r in ipairs(records) do
      assert.is_nil(r.message:find("6.6.6.6", 1, true) and r.message:find("^recv 10 bytes"),
        "a forged trace record was emitted")
      if r.level == "sip" and r.message:match("^recv") then recv = r.message end
    end
    assert.matches("\nforged\n", recv) -- the rest of the body stayed in the record
  end)

  describe("request routing", function()
    local function ask(port, method, opts)
      return H.parse_response(H.udp_exchange(port, H.request(method, port, opts)))
    end

    it("runs each request's handler in its own task and answers what it replies", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      local seen = {}
      srv:on("MESSAGE", function(req)
        seen[#seen + 1] = req
        luasip.sleep(0.05)                    -- a handler may block: others go on
        req:reply(202, "Taken", { headers = { ["X-Seen"] = tostring(#seen) } })
      end)
      H.run(function()
        local r = ask(srv.port, "MESSAGE")
        assert.are.equal(202, r.status)
        assert.are.equal("Taken", r.reason)
        assert.are.same({ "1" }, r.headers["x-seen"])
        assert.are.equal("MESSAGE", seen[1].method)
        assert.are.equal("127.0.0.1", seen[1].source)
        assert.matches("^sip:luasip@127.0.0.1:", seen[1].ruri)
      end)
      srv:close()
    end)

    it("gives registrars the To AOR and the Contact parameters in flat form", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      local got = {}
      srv:on("REGISTER", function(req)
        got[#got + 1] = { aor = { req.msg:aor() }, contacts = req.msg:contact_list() }
        req:reply(200)
      end)
      H.run(function()
        ask(srv.port, "REGISTER", {
          to = "<sip:Al%69ce@EXAMPLE.Com:5070;transport=tcp?x=y>",
          headers = {
            'Contact: <sip:alice@192.0.2.1:5060;transport=udp>;expires=60;q=0.5;+sip.instance="<urn:uuid:1>";reg-id=2',
            "Contact: sip:alice@192.0.2.2",
          },
        })
        ask(srv.port, "REGISTER", { to = "<sips:EXAMPLE.com>", headers = { "Contact: *" } })
        ask(srv.port, "REGISTER", { to = "<tel:+15551234>" })
        ask(srv.port, "REGISTER", { to = "<sip:a%00b@example.com>" })
      end)
      srv:close()
      assert.are.same({ "sip:Alice@example.com", "Alice", "example.com" }, got[1].aor)
      assert.are.same({
        { uri = "sip:alice@192.0.2.1:5060;transport=udp", expires = "60", q = "0.5",
          instance = '"<urn:uuid:1>"', reg_id = "2" },
        { uri = "sip:alice@192.0.2.2" },
      }, got[1].contacts)
      assert.are.same({ "sip:example.com", nil, "example.com" }, got[2].aor)
      assert.are.same({ { uri = "*" } }, got[2].contacts)
      assert.are.same({}, got[3].aor)                 -- not a SIP URI: no AOR
      assert.are.same({}, got[3].contacts)
      assert.are.same({ "sip:a\0b@example.com", "a\0b", "example.com" }, got[4].aor)
    end)

    it("answers 500 when a handler fails or ends without a final response, and keeps serving", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      srv:on("MESSAGE", function() error("handler bug") end)
      srv:on("INFO", function() end)                   -- no response at all
      srv:on("PUBLISH", function(req) req:reply(200) end)
      local log = H.capture_log(function()
        H.run(function()
          assert.are.equal(500, ask(srv.port, "MESSAGE").status)
          assert.are.equal(500, ask(srv.port, "INFO").status)
          assert.are.equal(200, ask(srv.port, "PUBLISH").status)
        end)
      end)
      srv:close()
      local text = {}
      for _, r in ipairs(log) do text[#text + 1] = r.message end
      text = table.concat(text, "\n")
      assert.matches("handler bug", text)
      assert.matches("ended without a final response", text)
    end)

    it("answers 405 with Allow for a known method without a handler, 501 for an unknown one", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      srv:on("MESSAGE", function(req) req:reply(200) end)
      H.run(function()
        local r = ask(srv.port, "SUBSCRIBE")
        assert.are.equal(405, r.status)
        assert.are.same({ "MESSAGE, OPTIONS" }, r.headers.allow)
        r = ask(srv.port, "FROBNICATE")
        assert.are.equal(501, r.status)
        -- OPTIONS answered with the methods the server handles
        assert.are.same({ "MESSAGE, OPTIONS" }, ask(srv.port, "OPTIONS").headers.allow)
      end)
      srv:close()
    end)

    it("turns a 2xx of its own into 420 when the request requires an unsupported extension", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" }, supported = { "timer" } })
      srv:on("MESSAGE", function(req) req:reply(200) end)
      H.run(function()
        local r = ask(srv.port, "MESSAGE", { headers = { "Require: foo, timer" } })
        assert.are.equal(420, r.status)
        assert.are.same({ "foo" }, r.headers.unsupported)
        assert.are.equal(200, ask(srv.port, "MESSAGE", { headers = { "Require: timer" } }).status)
        -- Proxy-Require: nothing is supported (RFC 3261 §16.3 step 5)
        r = ask(srv.port, "MESSAGE", { headers = { "Proxy-Require: bar" } })
        assert.are.equal(420, r.status)
        assert.are.same({ "bar" }, r.headers.unsupported)
      end)
      srv:close()
    end)

    it("rejects misuse with one-line errors", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0", transports = { "udp" } })
      assert.has_error(function() srv:on(5, function() end) end,
        "server:on: method must be a string such as \"INVITE\" or \"*\"")
      assert.has_error(function() srv:on("INVITE", 5) end, "server:on: handler must be a function")
      assert.has_error(function() luasip.server { lisen = "x" } end, "luasip.server: unknown option 'lisen'")
      srv:close()
    end)
  end)

  describe("luasip.ratelimit", function()
    it("blocks a key over its rate without affecting other keys", function()
      local pike = luasip.ratelimit { rate = 5, burst = 5, block = 60 }
      local allowed = 0
      for _ = 1, 20 do
        if pike:allow("192.0.2.1") then allowed = allowed + 1 end
      end
      assert.are.equal(5, allowed)
      assert.is_true(pike:blocked("192.0.2.1"))
      assert.is_true(pike:allow("192.0.2.2"))
      assert.is_false(pike:allow("192.0.2.1"))
      assert.has_error(function() luasip.ratelimit { rate = 0 } end, "luasip.ratelimit: rate must be a positive number")
    end)

    it("refills the bucket over time", function()
      local pike = luasip.ratelimit { rate = 50, burst = 1, block = 0 }
      assert.is_true(pike:allow("k"))
      assert.is_false(pike:allow("k"))
      H.run(function() luasip.sleep(0.1) end)
      assert.is_true(pike:allow("k"))
    end)
  end)
  describe("server:request", function()
    it("sends a request of its own and returns the final response", function()
      H.run(function()
        local peer = assert(luasip.server { listen = "127.0.0.1:0" })
        local seen
        peer:on("NOTIFY", function(req)
          seen = { event = req:header("Event"), body = req.msg.body, route = req.routed,
                   from_tag = req.from.tag, cseq = req.cseq }
          req:reply(200, nil, { headers = { ["X-Seen"] = "yes" } })
        end)
        local srv = assert(luasip.server { listen = "127.0.0.1:0" })
        local st, resp = srv:request("NOTIFY", peer.uri, {
          from = "<sip:a@127.0.0.1>;tag=t1", cseq = 7, headers = { Event = "presence" },
          body = "hello", content_type = "text/plain",
        })
        assert.equal(200, st)
        assert.equal("yes", resp:header("X-Seen"))
        assert.same({ event = "presence", body = "hello", route = false, from_tag = "t1", cseq = 7 }, seen)
        -- nobody listens: the port is unreachable, nta makes up 503
        local dead = assert(luasip.server { listen = "127.0.0.1:0" })
        local dead_uri = dead.uri
        dead:close()
        local st2, resp2 = srv:request("OPTIONS", dead_uri, { timeout = 5 })
        assert.equal(503, st2)
        assert.equal(503, resp2.status)
        peer:close()
        srv:close()
      end)
    end)

    it("refuses misuse with a one-line error", function()
      local srv = assert(luasip.server { listen = "127.0.0.1:0" })
      assert.has_error(function() srv:request("invite", "sip:a@b") end,
                       "server:request: method must be an upper-case token")
      assert.has_error(function() srv:request("NOTIFY", "sip:a@b", { headers = { Event = "a\r\nX: y" } }) end)
      assert.has_error(function() srv:request("NOTIFY", "sip:a@b", { nope = 1 }) end,
                       "server:request: unknown option 'nope'")
      H.run(function()
        local ok, err = srv:request("INVITE", "sip:a@127.0.0.1")
        assert.is_nil(ok)
        assert.matches("not sent this way", err)
      end)
      srv:close()
    end)

    it("answers through a transaction made after the request arrived (regression: tport refcount)", function()
      H.run(function()
        local srv = assert(luasip.server { listen = "127.0.0.1:0" })
        srv:on("SUBSCRIBE", function(req)
          luasip.sleep(0.01) -- the delivery is over: the transaction comes later
          req:reply(200, nil, { to_tag = "tag" .. req.cseq })
        end)
        srv:on("OPTIONS", function(req) req:reply(200) end)
        local peer = assert(luasip.server { listen = "127.0.0.1:0" })
        for i = 1, 4 do
          local st, resp = peer:request("SUBSCRIBE", srv.uri, { cseq = i, headers = { Event = "x" } })
          assert.equal(200, st)
          assert.equal("tag" .. i, resp.to_tag)
        end
        collectgarbage() collectgarbage()
        -- the listening transport is still there, both ways
        assert.equal(200, (peer:request("OPTIONS", srv.uri)))
        assert.equal(200, (srv:request("OPTIONS", srv.uri)))
        peer:close()
        srv:close()
      end)
    end)

    it("lets the script close the server as soon as the answer is in (regression: use after free)", function()
      H.run(function()
        local peer = assert(luasip.server { listen = "127.0.0.1:0" })
        peer:on("OPTIONS", function(req) req:reply(200) end)
        for _ = 1, 3 do
          local srv = assert(luasip.server { listen = "127.0.0.1:0" })
          assert.equal(200, (srv:request("OPTIONS", peer.uri)))
          srv:close() -- still inside the client transaction's callback
        end
        local again = assert(luasip.server { listen = "127.0.0.1:0" })
        assert.equal(200, (again:request("OPTIONS", peer.uri)))
        again:close()
        peer:close()
      end)
    end)
  end)
end)
