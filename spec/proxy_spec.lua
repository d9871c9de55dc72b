-- The stateful proxy (req:proxy(), lua/luasip/proxy.lua, RFC 3261 §16)
-- between real peers over UDP on 127.0.0.1: SIPp callers and callees
-- (spec/sipp/proxy_*.xml), luasip's own UA and servers, and raw datagrams
-- where the exact bytes matter. The proxy runs in this process (port 0);
-- every SIPp gets a block of fixed ports in 15000-16999 (SIP, control and
-- media ports of its own: other specs use 5060-5099 and random ports) and
-- is killed after the test whatever happened. A failing test prints the
-- traces of the SIPps it started.
local H = require "helper"
local luasip = require "luasip"
local core = require "luasip.core"
local socket = require "socket"

local SCENARIOS = H.root .. "/spec/sipp"

H.require_sipp()

---------------------------------------------------------------------------
-- SIPp

-- A block of 8 ports: SIP at base, control at base+1, media at base+4
-- and base+6 (SIPp binds both).
local function port_block() return H.udp_port_block(15000, 16999) end

-- Every SIPp a test started, killed (if still running) after it.
local started = {}

-- One SIPp trace (-trace_msg) as a list of
-- { dir = "recv" | "sent", time = "YYYY-MM-DD HH:MM:SS.uuuuuu", text = }.
local SEP = "%-%-%-%-%-%-%-%-%-%-+ (%d+%-%d+%-%d+%s+%d+:%d+:[%d%.]+)\r?\n[^\n]-message (%a+)[^\n]*\n\r?\n"
local function parse_trace(raw)
  local list = {}
  local s, e, time, dir = raw:find(SEP, 1)
  while s do
    local ns, ne, ntime, ndir = raw:find(SEP, e + 1)
    local text = raw:sub(e + 1, (ns or #raw + 1) - 1)
    list[#list + 1] = { dir = dir == "received" and "recv" or "sent", time = time, text = text }
    s, e, time, dir = ns, ne, ntime, ndir
  end
  return list
end

--- Start SIPp as a child (H.sipp): `args` are the scenario arguments
--- ({"-sf", file, ...}), opts.calls its -m (default 1), opts.limit its
--- -timeout in seconds (default 20). It gets a block of 8 ports (-cp at
--- base + 1, -mp at base + 4) and is killed after the test; :messages()
--- is its parsed trace.
local function sipp(args, opts)
  opts = opts or {}
  local p = H.sipp(args, {
    port = port_block, limit = opts.limit, name = opts.name,
    argv = function(port)
      return { "-cp", tostring(port + 1), "-mp", tostring(port + 4), "-m", tostring(opts.calls or 1) }
    end,
  })
  started[#started + 1] = p
  function p:messages() return parse_trace(self:raw_messages()) end
  return p
end

local function kill_sipps()
  for _, p in ipairs(started) do p:cleanup() end
  started = {}
end

--- H.run(fn) whose failure carries the traces of the SIPps started.
local function run(fn, guard)
  local ok, err = pcall(H.run, fn, guard or 60)
  if not ok then
    local diag = {}
    for _, p in ipairs(started) do diag[#diag + 1] = p:diag() end
    error(tostring(err) .. "\n" .. table.concat(diag, "\n"), 0)
  end
end

local function expect_success(p, what)
  local rc = p:finish()
  assert(rc == 0, string.format("%s: sipp %s exited %s", what or "", p.name, tostring(rc)))
end

---------------------------------------------------------------------------
-- Reading SIP messages (SIPp traces and raw datagrams)

local function first_line(text) return text:match("^[^\r\n]*") end

-- Every value of header `name` (case-insensitive, one per line).
local function headers(text, name)
  local out, lname = {}, name:lower()
  local head = text:match("^(.-)\r?\n\r?\n") or text
  for line in head:gmatch("[^\r\n]+") do
    local n, v = line:match("^([%w%-]+)%s*:%s*(.*)$")
    if n and n:lower() == lname then out[#out + 1] = v end
  end
  return out
end

local function header(text, name) return headers(text, name)[1] end

-- The messages of a trace going `dir`, whose first line matches `pattern`.
local function select_msgs(msgs, dir, pattern)
  local out = {}
  for _, m in ipairs(msgs) do
    if m.dir == dir and first_line(m.text):find(pattern) then out[#out + 1] = m end
  end
  return out
end

local function received(msgs, pattern) return select_msgs(msgs, "recv", pattern) end
local function sent(msgs, pattern) return select_msgs(msgs, "sent", pattern) end

local function tag_of(value) return value and value:match(";%s*tag=([^;%s>]+)") end
local function branch_of(via) return via and via:match(";%s*branch=([^;%s,]+)") end

---------------------------------------------------------------------------
-- Raw UDP transactions

local seq = 0

--- A request from a raw client: opts.uri, opts.max_forwards (false: no
--- Max-Forwards), opts.headers (lines), opts.body.
local function raw_request(method, port, opts)
  opts = opts or {}
  seq = seq + 1
  local tag = string.format("raw%d-%d", seq, math.random(1e9))
  local lines = {
    string.format("%s %s SIP/2.0", method, opts.uri or ("sip:bob@127.0.0.1:" .. port)),
    string.format("Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-proxyspec-%s;rport", tag),
    string.format("From: <sip:raw@127.0.0.1>;tag=%s", tag),
    string.format("To: <%s>", opts.uri or ("sip:bob@127.0.0.1:" .. port)),
    string.format("Call-ID: %s@127.0.0.1", tag),
    string.format("CSeq: 1 %s", method),
    "Contact: <sip:raw@127.0.0.1:5999>",
  }
  if opts.max_forwards ~= false then
    lines[#lines + 1] = "Max-Forwards: " .. (opts.max_forwards or 70)
  end
  for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
  local body = opts.body or ""
  if body ~= "" then lines[#lines + 1] = "Content-Type: text/plain" end
  lines[#lines + 1] = "Content-Length: " .. #body
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

--- Send a request to 127.0.0.1:port over UDP and collect the responses
--- until a final one (or `timeout` s); the ACK of a non-2xx final
--- response to an INVITE is sent (§17.1.1.3). Returns the list of parsed
--- responses (H.parse_response), the last one final unless timed out.
local function transact(port, msg, timeout)
  local s = assert(socket.udp())
  assert(s:setsockname("127.0.0.1", 0))
  s:settimeout(0)
  local _, lport = s:getsockname()
  msg = msg:gsub("(Via: SIP/2%.0/UDP 127%.0%.0%.1:)5999;", "%1" .. lport .. ";", 1)
    :gsub("(Contact: <sip:raw@127%.0%.0%.1:)5999>", "%1" .. lport .. ">", 1)
  assert(s:sendto(msg, "127.0.0.1", port))
  local responses = {}
  local deadline = core.now() + (timeout or 5)
  while core.now() < deadline do
    if not luasip.poll(s, "r", deadline - core.now()) then break end
    local data = s:receive()
    local r = H.parse_response(data)
    if r then
      responses[#responses + 1] = r
      if r.status >= 200 then break end
    end
  end
  local final = responses[#responses]
  if final and final.status >= 300 and msg:match("^INVITE ") then
    local ack = msg:match("^(.-\r\n)\r\n"):gsub("^INVITE ", "ACK ")
      :gsub("\r\nCSeq: (%d+) INVITE", "\r\nCSeq: %1 ACK")
      :gsub("\r\nTo: [^\r\n]*", "\r\nTo: " .. final.headers.to[1])
      :gsub("\r\nContent%-Type: [^\r\n]*", "")
      :gsub("\r\nContent%-Length: %d+", "\r\nContent-Length: 0")
    assert(s:sendto(ack .. "\r\n", "127.0.0.1", port))
  end
  s:close()
  return responses
end

local function final_of(responses) return responses[#responses] end

--- Send a request that gets no response (an ACK) to 127.0.0.1:port.
local function send_only(port, msg)
  local s = assert(socket.udp())
  assert(s:setsockname("127.0.0.1", 0))
  assert(s:sendto(msg, "127.0.0.1", port))
  s:close()
end

local function statuses(responses)
  local out = {}
  for i, r in ipairs(responses) do out[i] = r.status end
  return out
end

---------------------------------------------------------------------------
-- The proxy

local servers = {}

local function server(opts)
  opts = opts or {}
  opts.listen = opts.listen or "127.0.0.1:0"
  opts.transports = opts.transports or { "udp" }
  local srv = assert(luasip.server(opts))
  servers[#servers + 1] = srv
  return srv
end

local function close_servers()
  for _, srv in ipairs(servers) do srv:close() end
  servers = {}
end

local function uri(user, port) return string.format("sip:%s@127.0.0.1:%d", user, port) end

-- Wait (in a task) until every request and branch object is gone: what
-- the server keeps of answered transactions must not outlive them.
local function requests_drained()
  return H.poll_until(function()
    collectgarbage("collect")
    collectgarbage("collect")
    return luasip.stats().requests == 0
  end, 5)
end

local function assert_drained()
  assert(requests_drained(), "requests/branches still alive: " .. tostring(luasip.stats().requests))
end

---------------------------------------------------------------------------

describe("req:proxy() with real peers", function()
  -- (before H.leakcheck(): busted runs this one first)
  after_each(function()
    kill_sipps()
    close_servers()
  end)
  H.leakcheck()

  it("relays 20 calls from a SIPp caller to a SIPp callee, ACK and BYE along the Record-Route", function()
    local seen = {}
    local srv = server { observe = function(info)
      seen[info.method] = seen[info.method] or {}
      table.insert(seen[info.method], info.status)
    end }
    local results = {}
    run(function()
      local uas = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml" }, { calls = 20, limit = 30 })
      srv:on("INVITE", function(req)
        results[#results + 1] = req:proxy(uri("uas", uas.port))
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "-r", "10", "-l", "5",
                         "127.0.0.1:" .. srv.port }, { calls = 20, limit = 30 })
      expect_success(uac, "caller")
      expect_success(uas, "callee")
      local rr = "<sip:127.0.0.1:" .. srv.port .. ";lr>"
      local proxy_via = "^SIP/2%.0/UDP 127%.0%.0%.1:" .. srv.port .. ";"
      local caller_via = "^SIP/2%.0/UDP 127%.0%.0%.1:" .. uac.port .. ";"
      -- what the callee got: every request through the proxy, the route
      -- set consumed, the caller's Via kept under ours
      local msgs = uas:messages()
      local invites = received(msgs, "^INVITE ")
      assert.are.equal(20, #invites)
      for _, m in ipairs(invites) do
        assert.matches("^INVITE sip:uas@127%.0%.0%.1:" .. uas.port .. " SIP/2%.0$", first_line(m.text))
        assert.are.same({ rr }, headers(m.text, "Record-Route"))
        local vias = headers(m.text, "Via")
        assert.are.equal(2, #vias)
        assert.matches(proxy_via, vias[1])
        assert.matches(caller_via, vias[2])
        assert.are.equal("69", header(m.text, "Max-Forwards"))
      end
      for _, method in ipairs { "ACK", "BYE" } do
        local list = received(msgs, "^" .. method .. " ")
        assert.are.equal(20, #list, method)
        for _, m in ipairs(list) do
          -- to the callee's Contact, our Route removed, through us
          assert.matches("^" .. method .. " sip:uas@127%.0%.0%.1:" .. uas.port .. " SIP/2%.0$", first_line(m.text))
          assert.are.same({}, headers(m.text, "Route"))
          local vias = headers(m.text, "Via")
          assert.are.equal(2, #vias, method)
          assert.matches(proxy_via, vias[1])
          assert.matches(caller_via, vias[2])
          assert.are.equal("69", header(m.text, "Max-Forwards"))
        end
      end
      -- what the caller got and sent: the Record-Route in the 200, the
      -- route set in its ACK and BYE
      local cmsgs = uac:messages()
      local oks = received(cmsgs, "^SIP/2%.0 200 ")
      assert.are.equal(40, #oks) -- 20 INVITEs, 20 BYEs
      for _, m in ipairs(oks) do
        if header(m.text, "CSeq"):find("INVITE") then
          assert.are.same({ rr }, headers(m.text, "Record-Route"))
        end
        assert.are.equal(1, #headers(m.text, "Via")) -- ours removed
      end
      for _, method in ipairs { "ACK", "BYE" } do
        local list = sent(cmsgs, "^" .. method .. " ")
        assert.is_true(#list >= 20)
        for _, m in ipairs(list) do assert.are.same({ rr }, headers(m.text, "Route")) end
      end
      assert.are.equal(20, select(2, uac:logs():gsub("hung up: 200 to BYE", "")))
      assert_drained()
    end, 90)
    assert.are.equal(20, #results)
    for _, st in ipairs(results) do assert.are.equal(200, st) end
    assert.are.equal(20, #seen.INVITE)
    assert.are.equal(20, #seen.ACK)
    assert.are.equal(20, #seen.BYE)
    for _, st in ipairs(seen.BYE) do assert.are.equal(200, st) end
  end)

  it("forks in parallel: the 200 of one callee goes upstream, the ringing one is CANCELled", function()
    local srv = server()
    local result
    run(function()
      local ringing = sipp({ "-sf", SCENARIOS .. "/proxy_uas_ring.xml" }, { name = "ringing" })
      local answering = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml", "-d", "1000" }, { name = "answering" })
      srv:on("INVITE", function(req)
        result = { req:proxy { uri("ringing", ringing.port), uri("answering", answering.port) } }
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller")
      expect_success(answering, "answering callee")
      expect_success(ringing, "ringing callee") -- it requires the CANCEL and the ACK of its 487
      -- the CANCEL is for the INVITE the ringing callee got (same branch)
      local rmsgs = ringing:messages()
      local inv = received(rmsgs, "^INVITE ")
      local cancel = received(rmsgs, "^CANCEL ")
      assert.are.equal(1, #inv)
      assert.are.equal(1, #cancel)
      assert.are.equal(branch_of(header(inv[1].text, "Via")), branch_of(header(cancel[1].text, "Via")))
      assert.are.equal(first_line(inv[1].text):gsub("^INVITE", "CANCEL"), first_line(cancel[1].text))
      assert.are.equal(1, #received(rmsgs, "^ACK ")) -- of its 487, by the proxy
      assert.is_true(cancel[1].time > inv[1].time)
      -- the caller: the 180s of both callees (unless one came after the
      -- 200), the answering callee's 200, no 487
      local cmsgs = uac:messages()
      local ringing_tags = {}
      for _, m in ipairs(received(cmsgs, "^SIP/2%.0 180 ")) do
        local tag = tag_of(header(m.text, "To"))
        assert.matches("[ar]1$", tag)
        assert.is_nil(ringing_tags[tag], "a 180 relayed twice")
        ringing_tags[tag] = true
      end
      assert.is_truthy(next(ringing_tags))
      local oks = received(cmsgs, "^SIP/2%.0 200 ")
      assert.is_true(#oks >= 1)
      assert.matches("a1$", tag_of(header(oks[1].text, "To"))) -- the answering callee's tag
      assert.are.same({}, received(cmsgs, "^SIP/2%.0 4"))
      -- and the dialog went to the one that answered
      assert.are.equal(1, #received(answering:messages(), "^BYE "))
      assert_drained()
    end)
    assert.are.equal(200, result[1])
    assert.are.equal(200, result[2].status)
  end)

  it("forks in sequence by q: the q=1.0 callee first (486), then the q=0.5 one (200)", function()
    local srv = server()
    local result
    local hooked = {}
    run(function()
      local busy = sipp({ "-sf", SCENARIOS .. "/proxy_uas_busy.xml", "-d", "300" }, { name = "busy q=1.0" })
      local answering = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml" }, { name = "answering q=0.5" })
      srv:on("INVITE", function(req)
        -- the lower q listed first: the order must come from q alone
        result = { req:proxy({
          { contact = uri("answering", answering.port), q = 0.5 },
          { contact = uri("busy", busy.port), q = 1.0 },
        }, {
          on_response = function(resp, branch)
            hooked[#hooked + 1] = { status = resp.status, uri = branch.uri, q = branch.q }
          end,
        }) }
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller")
      expect_success(busy, "busy callee")
      expect_success(answering, "answering callee")
      -- the q=0.5 callee was invited only after the q=1.0 one had answered 486
      local busy_486 = sent(busy:messages(), "^SIP/2%.0 486 ")
      local second = received(answering:messages(), "^INVITE ")
      assert.are.equal(1, #busy_486)
      assert.are.equal(1, #second)
      assert.is_true(second[1].time > busy_486[1].time,
        string.format("q=0.5 INVITE at %s, q=1.0 486 at %s", second[1].time, busy_486[1].time))
      -- the caller never saw the 486
      assert.are.same({}, received(uac:messages(), "^SIP/2%.0 486 "))
      assert_drained()
    end)
    assert.are.equal(200, result[1])
    assert.are.equal(486, hooked[1].status)
    assert.matches("^sip:busy@", hooked[1].uri)
    assert.are.equal(1.0, hooked[1].q)
    local last = hooked[#hooked]
    assert.are.equal(200, last.status)
    assert.matches("^sip:answering@", last.uri)
    assert.are.equal(0.5, last.q)
  end)

  it("lets the handler try voicemail after a 486: the caller gets the 200, never the 486", function()
    local srv = server()
    local results = {}
    run(function()
      local busy = sipp({ "-sf", SCENARIOS .. "/proxy_uas_busy.xml" }, { name = "busy" })
      local voicemail = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml" }, { name = "voicemail" })
      srv:on("INVITE", function(req)
        local st = req:proxy(uri("bob", busy.port))
        results[#results + 1] = st
        if st == 486 then
          results[#results + 1] = req:proxy(uri("vm", voicemail.port))
        end
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller") -- a 486 would be an unexpected message
      expect_success(busy, "busy callee") -- it requires the ACK of its 486
      expect_success(voicemail, "voicemail")
      local cmsgs = uac:messages()
      assert.are.same({}, received(cmsgs, "^SIP/2%.0 486 "))
      local oks = received(cmsgs, "^SIP/2%.0 200 ")
      assert.matches("a1$", tag_of(header(oks[1].text, "To")))
      local vm_invite = received(voicemail:messages(), "^INVITE ")
      assert.are.equal(1, #vm_invite)
      assert.matches("^INVITE sip:vm@", first_line(vm_invite[1].text))
      assert.are.equal(1, #received(voicemail:messages(), "^BYE "))
      assert_drained()
    end)
    assert.are.same({ 486, 200 }, results)
  end)

  it("propagates the caller's CANCEL to the ringing callee: 200 to the CANCEL, 487 to the INVITE", function()
    local srv = server()
    local result
    run(function()
      local ringing = sipp({ "-sf", SCENARIOS .. "/proxy_uas_ring.xml" }, { name = "ringing" })
      srv:on("INVITE", function(req)
        local st = req:proxy(uri("bob", ringing.port))
        result = { status = st, cancelled = req.cancelled }
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac_cancel.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller") -- requires the 200 to its CANCEL and the 487
      expect_success(ringing, "ringing callee") -- requires the CANCEL
      assert.matches("cancel answered: 200 to CANCEL", uac:logs())
      assert.matches("terminated: 487 to INVITE", uac:logs())
      assert.matches("cancelled: CANCEL", ringing:logs())
      local cmsgs = uac:messages()
      assert.are.equal(1, #received(cmsgs, "^SIP/2%.0 487 "))
      local oks = received(cmsgs, "^SIP/2%.0 200 ")
      assert.are.equal(1, #oks)
      assert.matches("CANCEL", header(oks[1].text, "CSeq")) -- none to the INVITE
      assert_drained()
    end)
    assert.are.equal(487, result.status)
    assert.is_true(result.cancelled)
  end)

  it("answers Max-Forwards 0 with 483 and forwards Max-Forwards 1 as 0", function()
    local front, back = server(), server()
    local arrived = {}
    back:on("*", function(req)
      arrived[#arrived + 1] = { method = req.method, mf = req:header("Max-Forwards"), seq = req:header("X-Seq") }
      req:reply(200, "Reached")
    end)
    front:on("*", function(req) req:proxy(uri("bob", back.port)) end)
    run(function()
      local function ask(method, mf)
        return transact(front.port, raw_request(method, front.port, { max_forwards = mf }))
      end
      -- 0: not forwarded
      local r = ask("MESSAGE", 0)
      assert.are.same({ 483 }, statuses(r))
      r = ask("INVITE", 0)
      assert.are.same({ 483 }, statuses(r)) -- no 100 Trying first
      assert.are.same({}, arrived)
      -- OPTIONS with 0 are answered by the proxy itself (§16.3 step 3)
      r = ask("OPTIONS", 0)
      assert.are.same({ 200 }, statuses(r))
      assert.is_nil(r[1].reason:find("Reached", 1, true))
      assert.are.same({}, arrived)
      -- 1: forwarded with 0; absent: 70 added
      r = ask("MESSAGE", 1)
      assert.are.same({ 200 }, statuses(r))
      assert.are.equal("Reached", r[1].reason)
      r = ask("MESSAGE", false)
      assert.are.equal(200, final_of(r).status)
      assert.are.same({ { method = "MESSAGE", mf = "0" }, { method = "MESSAGE", mf = "70" } }, arrived)
      -- an ACK (a 2xx's, end to end) with 0 is dropped, not forwarded:
      -- sent first, it would arrive first
      arrived = {}
      send_only(front.port, raw_request("ACK", front.port, { max_forwards = 0, headers = { "X-Seq: mf0" } }))
      send_only(front.port, raw_request("ACK", front.port, { max_forwards = 1, headers = { "X-Seq: mf1" } }))
      assert.is_truthy(H.poll_until(function() return #arrived > 0 end, 5), "no ACK forwarded")
      assert.are.same({ method = "ACK", mf = "0", seq = "mf1" }, arrived[1])
      assert_drained()
    end)
  end)

  it("relays a 483 from a second proxy that got Max-Forwards 0", function()
    local first, second, uas = server(), server(), server()
    local reached = 0
    uas:on("*", function(req) reached = reached + 1; req:reply(200) end)
    second:on("*", function(req) req:proxy(uri("bob", uas.port)) end)
    first:on("*", function(req) req:proxy(uri("bob", second.port)) end)
    run(function()
      local r = transact(first.port, raw_request("MESSAGE", first.port, { max_forwards = 1 }))
      assert.are.same({ 483 }, statuses(r))
      r = transact(first.port, raw_request("INVITE", first.port, { max_forwards = 1 }))
      assert.are.equal(483, final_of(r).status)
      assert.are.equal(0, reached)
      r = transact(first.port, raw_request("MESSAGE", first.port, { max_forwards = 2 }))
      assert.are.same({ 200 }, statuses(r))
      assert.are.equal(1, reached)
      assert_drained()
    end)
  end)

  it("answers 482 to a request that loops back unchanged, and lets a spiral through", function()
    local srv, back = server(), server()
    back:on("*", function(req) req:reply(200, "Spiralled") end)
    local arrivals = {}
    srv:on("*", function(req)
      local user = req.uri.user
      local a = { user = user, vias = #req:headers("Via") }
      arrivals[#arrivals + 1] = a
      if user == "loop" then
        a.status = req:proxy(uri("loop", srv.port)) -- itself, same Request-URI
      elseif user == "spiral" then
        a.status = req:proxy(uri("spiral2", srv.port)) -- itself, a new Request-URI
      elseif user == "alias" then
        req:set_uri(uri("spiral2", srv.port)) -- rewritten, then relayed: to itself
        a.status = req:proxy()
      else
        a.status = req:proxy(uri("bob", back.port)) -- spiral2: on to the callee
      end
    end)
    run(function()
      -- a loop: the second arrival carries our Via with the same hash
      local r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("loop", srv.port) }))
      assert.are.same({ 482 }, statuses(r))
      assert.are.equal(2, #arrivals)
      assert.are.same({ user = "loop", vias = 1, status = 482 }, arrivals[1])
      assert.are.same({ user = "loop", vias = 2, status = 482 }, arrivals[2])
      -- an INVITE too: 100 Trying from the first pass, then the 482
      arrivals = {}
      r = transact(srv.port, raw_request("INVITE", srv.port, { uri = uri("loop", srv.port) }))
      assert.are.same({ 100, 482 }, statuses(r))
      assert.are.equal(2, #arrivals)
      assert.are.equal(482, arrivals[1].status)
      -- a spiral: back with another Request-URI, which is no loop
      arrivals = {}
      r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("spiral", srv.port) }))
      assert.are.same({ 200 }, statuses(r))
      assert.are.equal("Spiralled", r[1].reason)
      assert.are.same({ { user = "spiral", vias = 1, status = 200 }, { user = "spiral2", vias = 2, status = 200 } },
        arrivals)
      -- the same through req:set_uri(): the hash is of the Request-URI as
      -- received, not as rewritten
      arrivals = {}
      r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("alias", srv.port) }))
      assert.are.same({ 200 }, statuses(r))
      assert.are.same({ { user = "alias", vias = 1, status = 200 }, { user = "spiral2", vias = 2, status = 200 } },
        arrivals)
      assert_drained()
    end)
  end)

  it("turns a branch that never answers into 408 after branch_timeout, and CANCELs it", function()
    local srv = server()
    local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
    finally(function() ua:close() end)
    local result
    run(function()
      local ringing = sipp({ "-sf", SCENARIOS .. "/proxy_uas_ring.xml" }, { name = "ringing" })
      srv:on("INVITE", function(req)
        result = { req:proxy(uri("bob", ringing.port), { branch_timeout = 1 }) }
      end)
      local progress = {}
      local call, err, status = ua:call(uri("bob", srv.port), {
        timeout = 15, on_progress = function(_, st) progress[#progress + 1] = st end,
      })
      assert.is_nil(call, "answered")
      assert.are.equal(408, status, tostring(err))
      assert.are.same({ 180 }, progress)
      expect_success(ringing, "ringing callee") -- it requires the CANCEL
      assert.matches("cancelled: CANCEL", ringing:logs())
      assert_drained()
    end)
    assert.are.equal(408, result[1])
  end)

  it("ends the whole proxy() at its timeout: the ringing branch is CANCELled, later groups never tried", function()
    local srv, later = server(), server()
    local invited_later = 0
    later:on("INVITE", function(req) invited_later = invited_later + 1; req:reply(200) end)
    local result
    run(function()
      local ringing = sipp({ "-sf", SCENARIOS .. "/proxy_uas_ring.xml" }, { name = "ringing" })
      srv:on("INVITE", function(req)
        result = { req:proxy({ uri("bob", ringing.port), uri("bob", later.port) },
                             { serial = true, timeout = 1 }) }
      end)
      local r = transact(srv.port, raw_request("INVITE", srv.port), 15)
      assert.are.same({ 100, 180, 408 }, statuses(r))
      expect_success(ringing, "ringing callee") -- it requires the CANCEL
      assert_drained()
    end)
    assert.are.equal(408, result[1])
    assert.are.equal(0, invited_later)
  end)

  it("answers 500 when a handler fails or returns without a response, and keeps serving", function()
    local srv = server()
    srv:on("MESSAGE", function(req)
      local what = req.uri.user
      if what == "fail" then error("handler blew up") end
      if what == "silent" then return end
      req:reply(200, "Fine")
    end)
    local records = H.capture_log(function()
      run(function()
        for _ = 1, 2 do
          local r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("fail", srv.port) }))
          assert.are.same({ 500 }, statuses(r))
          r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("silent", srv.port) }))
          assert.are.same({ 500 }, statuses(r))
          assert.are.equal("No Response From Handler", r[1].reason)
          r = transact(srv.port, raw_request("MESSAGE", srv.port, { uri = uri("ok", srv.port) }))
          assert.are.same({ 200 }, statuses(r))
          assert.are.equal("Fine", r[1].reason)
        end
        assert_drained()
      end)
    end)
    local failed = 0
    for _, rec in ipairs(records) do
      if rec.message:find("handler blew up", 1, true) then failed = failed + 1 end
    end
    assert.are.equal(2, failed)
  end)

  it("relays the callee's own 486 when the handler returns after a failed proxy()", function()
    local srv = server()
    local result
    run(function()
      local busy = sipp({ "-sf", SCENARIOS .. "/proxy_uas_busy.xml" }, { name = "busy" })
      srv:on("INVITE", function(req)
        result = { req:proxy(uri("bob", busy.port)) }
      end)
      local r = transact(srv.port, raw_request("INVITE", srv.port), 10)
      assert.are.same({ 100, 486 }, statuses(r))
      local final = final_of(r)
      -- SIPp's response itself (its marker header and To tag), our Via gone
      assert.are.same({ tostring(busy.port) }, final.headers["x-busy-callee"])
      assert.matches("b1$", tag_of(final.headers.to[1]))
      assert.are.equal(1, #final.headers.via)
      expect_success(busy, "busy callee") -- it requires the proxy's ACK
      assert_drained()
    end)
    assert.are.equal(486, result[1])
    assert.are.equal(486, result[2].status)
  end)

  it("lets on_response change the 180 and the 200 the caller sees, or hold a provisional back", function()
    local srv = server()
    local hold = false
    run(function()
      local uas = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml" }, { calls = 2 })
      srv:on("INVITE", function(req)
        req:proxy(uri("bob", uas.port), {
          on_response = function(resp)
            resp:set_header("X-Hooked", tostring(resp.status))
            if hold and resp.status < 200 then return false end
          end,
        })
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller")
      local cmsgs = uac:messages()
      local ringing = received(cmsgs, "^SIP/2%.0 180 ")
      assert.are.equal(1, #ringing)
      assert.are.same({ "180" }, headers(ringing[1].text, "X-Hooked"))
      local oks = received(cmsgs, "^SIP/2%.0 200 ")
      assert.are.same({ "200" }, headers(oks[1].text, "X-Hooked"))
      -- a 200 to the BYE is not the proxy()'s: no hook there
      assert.are.same({}, headers(oks[#oks].text, "X-Hooked"))
      -- returning false keeps the 180 from the caller
      hold = true
      uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller (held)")
      cmsgs = uac:messages()
      assert.are.same({}, received(cmsgs, "^SIP/2%.0 180 "))
      assert.are.same({ "200" }, headers(received(cmsgs, "^SIP/2%.0 200 ")[1].text, "X-Hooked"))
      expect_success(uas, "callee")
      assert_drained()
    end)
  end)

  -- Regression: headers added to a parsed message went after its body
  -- (sofia appends what SIPTAG_HEADER_STR parses at the end of the
  -- fragment chain), so they reached the peer inside the SDP.
  it("puts the headers a handler adds (req:add_header, opts.headers) above an INVITE's SDP", function()
    local srv = server()
    run(function()
      local uas = sipp({ "-sf", SCENARIOS .. "/proxy_uas.xml" })
      srv:on("INVITE", function(req)
        req:add_header("X-Added", "by-handler")
        req:proxy(uri("bob", uas.port), { headers = { ["X-Branch"] = "by-opts" } })
      end)
      local uac = sipp({ "-sf", SCENARIOS .. "/proxy_uac.xml", "-s", "bob", "127.0.0.1:" .. srv.port })
      expect_success(uac, "caller")
      expect_success(uas, "callee")
      local inv = received(uas:messages(), "^INVITE ")[1].text
      assert.are.same({ "by-handler" }, headers(inv, "X-Added"))
      assert.are.same({ "by-opts" }, headers(inv, "X-Branch"))
      local body = inv:match("\r?\n\r?\n(.*)$"):gsub("%s+$", "")
      assert.matches("^v=0\r?\n", body)
      assert.matches("a=rtpmap:0 PCMU/8000$", body)
      assert.is_nil(body:find("X-", 1, true))
      assert_drained()
    end)
  end)

  it("leaves no request, branch, timer or task behind", function()
    collectgarbage("collect")
    collectgarbage("collect")
    local s = luasip.stats()
    assert.are.equal(0, s.requests)
    assert.are.equal(0, s.tasks)
  end)
end)
