-- Digest authentication of the UA against a scripted peer on a real UDP
-- socket: SHA-256 (RFC 8760), algorithm preference, 401 and 407, and the
-- Authorization checked with sha256sum/md5sum, independently of luasip's
-- own hashing. (MD5 against SIPp's verifyauth is in ua_sipp_spec.lua.)
local H = require "spec.helper"
local luasip = require "luasip"
local sip_peer = require "spec.sip_peer"

local function hash(alg, s)
  local tool = alg == "SHA-256" and "sha256sum" or "md5sum"
  local p = assert(io.popen("printf %s " .. H.shell_quote(s) .. " | " .. tool))
  local out = p:read("*a")
  p:close()
  return out:match("^(%x+)")
end

local function params(value)
  local t = {}
  for k, v in value:gmatch('([%w%-]+)="?([^",]*)"?') do t[k:lower()] = v end
  return t
end

local peer = sip_peer.udp
local response = sip_peer.response

-- Check a Digest Authorization value like a server would.
local function verify(value, alg, user, password, method)
  if not value then return false end
  local p = params(value)
  local ha1 = hash(alg, user .. ":" .. p.realm .. ":" .. password)
  local ha2 = hash(alg, method .. ":" .. p.uri)
  local want = hash(alg, table.concat({ ha1, p.nonce, p.nc, p.cnonce, p.qop, ha2 }, ":"))
  return p.response == want and p.algorithm == alg and p.username == user, p
end

describe("UA digest authentication", function()
  H.leakcheck()

  it("registers against a SHA-256 challenge (qop=auth), preferring it to MD5", function()
    H.run(function()
      local checked
      local reg_peer = peer(function(req)
        local auth = req.header("Authorization")
        if not auth then
          return response(req, "401 Unauthorized", {
            'WWW-Authenticate: Digest realm="luasip.test", nonce="n0nce1", qop="auth", algorithm=MD5',
            'WWW-Authenticate: Digest realm="luasip.test", nonce="n0nce2", qop="auth", algorithm=SHA-256',
          })
        end
        local ok, p = verify(auth, "SHA-256", "alice", "secret", "REGISTER")
        checked = { ok = ok, uri = p.uri, nonce = p.nonce }
        if not ok then return response(req, "403 Forbidden") end
        return response(req, "200 OK", { "Contact: " .. req.header("Contact") .. ";expires=60" })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { user = "alice", password = "secret" } })
      local registrar = "sip:127.0.0.1:" .. reg_peer.port
      local reg, reason, status = ua:register { registrar = registrar, expires = 60, timeout = 5 }
      assert.truthy(reg, tostring(reason) .. " " .. tostring(status))
      assert.equal("registered", reg.state)
      assert.same({ ok = true, uri = registrar, nonce = "n0nce2" }, checked)
      ua:close()
      reg_peer.close()
    end, 20)
  end)

  it("fails cleanly with wrong credentials, without retrying forever", function()
    H.run(function()
      local reg_peer = peer(function(req)
        local auth = req.header("Authorization")
        if not auth then
          return response(req, "401 Unauthorized", {
            'WWW-Authenticate: Digest realm="luasip.test", nonce="abc", qop="auth", algorithm=SHA-256',
          })
        end
        if verify(auth, "SHA-256", "alice", "secret", "REGISTER") then
          return response(req, "200 OK", { "Contact: " .. req.header("Contact") })
        end
        return response(req, "403 Forbidden")
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { user = "alice", password = "wrong" } })
      local reg, reason, status = ua:register { registrar = "sip:127.0.0.1:" .. reg_peer.port, timeout = 5 }
      assert.is_nil(reg)
      assert.equal(403, status, reason)
      luasip.sleep(1.5) -- longer than the first backoff: no retry may come
      assert.equal(2, #reg_peer.requests)
      ua:close()
      reg_peer.close()
    end, 20)
  end)

  it("answers a 407 to INVITE with SHA-256 Proxy-Authorization and completes the call", function()
    H.run(function()
      local ok_auth
      local sdp_answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
      local p
      p = peer(function(req)
        if req.method == "INVITE" then
          local auth = req.header("Proxy%-Authorization")
          if not auth then
            return response(req, "407 Proxy Authentication Required", {
              'Proxy-Authenticate: Digest realm="proxy.test", nonce="pn1", qop="auth", algorithm=SHA-256, opaque="op1"',
            })
          end
          local ok, prm = verify(auth, "SHA-256", "alice", "secret", "INVITE")
          ok_auth = ok and prm.opaque == "op1"
          return response(req, "200 OK", {
            "Contact: <sip:peer@127.0.0.1:" .. p.port .. ">", "Content-Type: application/sdp",
          }, sdp_answer)
        elseif req.method == "BYE" then
          return response(req, "200 OK")
        end
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { ["proxy.test"] = { user = "alice", password = "secret" } } })
      local call, reason, status = ua:call("sip:bob@127.0.0.1:" .. p.port, { timeout = 5 })
      assert.truthy(call, tostring(reason) .. " " .. tostring(status))
      assert.is_true(ok_auth)
      assert.truthy(call.remote_sdp:find("m=audio 4000", 1, true))
      call:hangup()
      assert.truthy(H.poll_until(function()
        for _, r in ipairs(p.requests) do if r.method == "BYE" then return true end end
      end, 5))
      local invites = 0
      for _, r in ipairs(p.requests) do if r.method == "INVITE" then invites = invites + 1 end end
      assert.equal(2, invites)
      ua:close()
      p.close()
    end, 20)
  end)

  it("subscribes through a SHA-256 401, and unsubscribes", function()
    H.run(function()
      local checked = {}
      local p
      p = peer(function(req)
        if req.method ~= "SUBSCRIBE" then return nil end
        local auth = req.header("Authorization")
        if not auth then
          return response(req, "401 Unauthorized", {
            'WWW-Authenticate: Digest realm="luasip.test", nonce="sn1", qop="auth", algorithm=SHA-256',
          })
        end
        checked[#checked + 1] = { ok = verify(auth, "SHA-256", "alice", "secret", "SUBSCRIBE"),
                                  expires = req.header("Expires"), event = req.header("Event") }
        if req.header("Expires") == "0" then return response(req, "481 Subscription Does Not Exist") end
        return response(req, "200 OK", { "Expires: 30", "Contact: <sip:peer@127.0.0.1:" .. p.port .. ">" })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { user = "alice", password = "secret" } })
      local sub, reason, status = ua:subscribe("sip:bob@127.0.0.1:" .. p.port, "presence", function() end,
                                               { expires = 60, timeout = 5 })
      assert.truthy(sub, tostring(reason) .. " " .. tostring(status))
      assert.same({ ok = true, expires = "60", event = "presence" }, checked[1])
      assert.equal(30, sub.expires)
      assert.is_true(sub:unsubscribe())
      assert.same({ ok = true, expires = "0", event = "presence" }, checked[#checked])
      ua:close()
      p.close()
    end, 20)
  end)
end)

describe("UA registration and routing", function()
  H.leakcheck()

  it("refreshes a registration before it expires", function()
    H.run(function()
      local p = peer(function(req)
        return response(req, "200 OK", { "Contact: " .. req.header("Contact") .. ";expires=2" })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test" })
      local reg = assert(ua:register { registrar = "sip:127.0.0.1:" .. p.port, expires = 2 })
      assert.equal(2, reg.granted)
      assert.truthy(H.poll_until(function() return #p.requests >= 3 end, 6)) -- two refreshes
      assert.equal("registered", reg.state)
      local cseqs = {}
      for i, r in ipairs(p.requests) do cseqs[i] = tonumber(r.header("CSeq"):match("^(%d+)")) end
      assert.is_true(cseqs[2] > cseqs[1] and cseqs[3] > cseqs[2])
      assert.equal(p.requests[1].header("Call%-ID"), p.requests[3].header("Call%-ID"))
      ua:close()
      p.close()
    end, 20)
  end)

  it("retries a failed registration with backoff and reports each state", function()
    H.run(function()
      local n = 0
      local p = peer(function(req)
        n = n + 1
        if n <= 2 then return response(req, "503 Service Unavailable") end
        return response(req, "200 OK", { "Contact: " .. req.header("Contact") .. ";expires=60" })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test" })
      local states = {}
      local reg, reason, status, r = ua:register {
        registrar = "sip:127.0.0.1:" .. p.port, backoff = 0.2,
        on_state = function(_, state, st) states[#states + 1] = state .. (st and (" " .. st) or "") end,
      }
      assert.is_nil(reg)
      assert.equal(503, status, reason)
      assert.truthy(H.poll_until(function() return r.state == "registered" end, 5))
      -- first retry after 0.2 s, the second after 0.4 s
      assert.same({ "registering", "failed 503", "registering", "failed 503", "registering", "registered 200" },
                  states)
      assert.equal(3, n)
      assert(r:unregister())
      ua:close()
      p.close()
    end, 20)
  end)

  it("sends every request through the outbound proxy", function()
    H.run(function()
      local p = peer(function(req)
        if req.method == "OPTIONS" then return response(req, "200 OK") end
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    proxy = "sip:127.0.0.1:" .. p.port })
      -- a domain that resolves nowhere: only the proxy can carry it
      local resp = assert(ua:options("sip:bob@nowhere.invalid"))
      assert.equal(200, resp.status)
      assert.equal(1, #p.requests)
      assert.equal("sip:bob@nowhere.invalid", p.requests[1].uri)
      ua:close()
      p.close()
    end, 20)
  end)

  it("raises a one-line error on a misspelt option", function()
    local ua = assert(luasip.ua { listen = "127.0.0.1:0" })
    assert.has_error(function() luasip.ua { listen = "127.0.0.1:0", credential = {} } end,
      "luasip.ua: unknown option 'credential'")
    assert.has_error(function() ua:call("sip:x@127.0.0.1:9", { timeot = 1 }) end,
      "ua:call: unknown option 'timeot'")
    assert.has_error(function() ua:register { registar = "sip:x" } end,
      "ua:register: unknown option 'registar'")
    ua:close()
  end)

  -- Regressions found in review (each failed before its fix).
  it("sends BYE when the 200 crosses our CANCEL", function()
    H.run(function()
      local sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
      local invite, p
      p = peer(function(req)
        if req.method == "INVITE" then invite = req return response(req, "180 Ringing") end
        if req.method == "CANCEL" then -- answer the INVITE instead, as if crossing
          return response(invite, "200 OK", { "Contact: <sip:peer@127.0.0.1:" .. p.port .. ">",
                                              "Content-Type: application/sdp" }, sdp)
        end
        if req.method == "BYE" then return response(req, "200 OK") end
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test" })
      local call, reason, status, c = ua:call("sip:bob@127.0.0.1:" .. p.port, { timeout = 0.5 })
      assert.is_nil(call)
      assert.same({ "timeout", "timeout" }, { reason, status })
      assert.truthy(H.poll_until(function() return p.count("BYE") == 1 end, 5))
      assert.truthy(H.poll_until(function() return c.state == "terminated" end, 5))
      assert.equal(1, p.count("ACK"))
      ua:close()
      p.close()
    end, 20)
  end)

  it("answers a MESSAGE inside a call without touching the INVITE", function()
    H.run(function()
      local a = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test" })
      local b = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@luasip.test" })
      local inc, got
      b:on("call", function(call)
        inc = call
        call:on("message", function(_, msg) got = msg.body end)
        call:ring()
      end)
      local t = luasip.spawn(function()
        return a:call("sip:bob@127.0.0.1:" .. b.port, { timeout = 10 })
      end)
      assert.truthy(H.poll_until(function() return inc and inc.state == "early" end, 5))
      -- alice's call sends a MESSAGE in the early dialog; bob then answers
      local calls = {}
      for c in pairs(a.calls) do calls[#calls + 1] = c end
      local resp = assert(calls[1]:_transaction("message", { body = "hi", content_type = "text/plain" }, 5, "message"))
      assert.equal(200, resp.status)
      assert.equal("hi", got)
      assert.is_true(inc:answer())
      local ok, call = t:join(5)
      assert.is_true(ok)
      assert.equal("ready", call.state)
      call:hangup()
      a:close()
      b:close()
    end, 20)
  end)

  it("ends its calls and wakes their waiters when the UA closes", function()
    H.run(function()
      local a = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test" })
      local b = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@luasip.test" })
      b:on("call", function(call) call:answer() end)
      local call = assert(a:call("sip:bob@127.0.0.1:" .. b.port, { timeout = 5 }))
      local woke
      local t = luasip.spawn(function() woke = { call:wait_hangup() } end)
      a:close()
      assert.truthy(t:join(5))
      assert.same({ true }, woke)
      assert.equal("terminated", call.state)
      b:close()
    end, 20)
  end)

  it("ignores credentials tables that are not tables (realm named like a field)", function()
    H.run(function()
      local p = peer(function(req)
        if not req.header("Authorization") then
          return response(req, "401 Unauthorized", {
            'WWW-Authenticate: Digest realm="password", nonce="x", qop="auth", algorithm=SHA-256' })
        end
        local ok = verify(req.header("Authorization"), "SHA-256", "alice", "secret", "REGISTER")
        return response(req, ok and "200 OK" or "403 Forbidden", { "Contact: " .. req.header("Contact") })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { user = "alice", password = "secret" } })
      local reg = assert(ua:register { registrar = "sip:127.0.0.1:" .. p.port, timeout = 5 })
      assert.equal("registered", reg.state)
      ua:close()
      p.close()
    end, 20)
  end)

  it("re-authenticates SHA-256 registration refreshes against one-time nonces", function()
    H.run(function()
      local n, nonce = 0, nil
      local p = peer(function(req)
        local auth = req.header("Authorization")
        local ok, prm = verify(auth, "SHA-256", "alice", "secret", "REGISTER")
        if ok and prm.nonce == nonce then
          nonce = nil -- used up
          return response(req, "200 OK", { "Contact: " .. req.header("Contact") .. ";expires=2" })
        end
        n = n + 1
        nonce = "once" .. n
        return response(req, "401 Unauthorized", {
          'WWW-Authenticate: Digest realm="luasip.test", nonce="' .. nonce .. '", qop="auth", algorithm=SHA-256' })
      end)
      local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@luasip.test",
                                    credentials = { user = "alice", password = "secret" } })
      local reg = assert(ua:register { registrar = "sip:127.0.0.1:" .. p.port, expires = 2, timeout = 5 })
      -- two refreshes, each challenged with a fresh nonce and answered
      assert.truthy(H.poll_until(function() return n >= 3 end, 8))
      assert.truthy(H.poll_until(function() return reg.state == "registered" and nonce == nil end, 5))
      ua:close()
      p.close()
    end, 30)
  end)
end)
