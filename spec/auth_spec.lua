-- luasip.auth: the server side of digest authentication, answered by the
-- independent client in luasip.digest, on request tables and on requests
-- parsed by sofia (MESSAGEs sent over UDP to a luasip UA).
local H = require "spec.helper"
local luasip = require "luasip"
local core = require "luasip.core"
local task = require "luasip.task"
local auth = require "luasip.auth"
local digest = require "luasip.digest"

local REALM = "example.com"
local URI = "sip:example.com"
local ODD = 'o"ne, il\\' -- quotes, a comma and a backslash in a user name
local USERS = { alice = "secret", bob = "hunter2", [ODD] = "pw" }

local function lookup(user) return USERS[user] end

local function new(opts)
  opts = opts or {}
  opts.realm = opts.realm or REALM
  opts.lookup = opts.lookup or lookup
  return assert(auth.digest(opts))
end

-- A challenge header value as a client sees it, parsed here (not by the
-- module under test): { scheme, params }.
local function parse_challenge(value)
  local scheme, rest = value:match("^(%S+)%s+(.*)$")
  local params = {}
  for k, v in rest:gmatch('([%w%-]+)="([^"]*)"') do params[k:lower()] = v end
  for k, v in rest:gmatch('([%w%-]+)=([^",%s]+)') do params[k:lower()] = v end
  return { scheme = scheme, params = params }
end

-- The challenge of a for algorithm alg (the first one if nil).
local function challenge_for(a, alg, opts)
  local _, headers = a:challenge(nil, opts)
  local values = headers[opts and opts.proxy and "Proxy-Authenticate" or "WWW-Authenticate"]
  for _, v in ipairs(values) do
    local ch = parse_challenge(v)
    if not alg or ch.params.algorithm == alg then return ch end
  end
  error("no challenge for " .. tostring(alg))
end

-- Authorization value answering ch; o overrides user, password, nc, method, uri.
local function answer(ch, o)
  o = o or {}
  return assert(digest.authorization(ch, {
    user = o.user or "alice", password = o.password or USERS[o.user or "alice"],
    method = o.method or "REGISTER", uri = o.uri or URI, nc = o.nc, cnonce = o.cnonce,
  }))
end

-- A request table: headers is a list of {name, value}.
local function request(headers, o)
  o = o or {}
  local r = { method = o.method or "REGISTER", uri = o.uri or URI, source = o.source or "192.0.2.1" }
  function r:headers(name)
    local out = {}
    for _, h in ipairs(headers) do
      if h[1]:lower() == name:lower() then out[#out + 1] = h[2] end
    end
    return out
  end
  function r:header(name) return self:headers(name)[1] end
  return r
end

local function with_auth(value, o) return request({ { "Authorization", value } }, o) end

-- Only header(): the minimal request the API promises to read.
local function minimal(value, o)
  local r = with_auth(value, o)
  r.headers = nil
  function r:header(name) if name:lower() == "authorization" then return value end end
  return r
end

describe("luasip.auth.digest", function()
  it("computes HMAC-SHA-256 as RFC 4231 (test case 2) for its nonces", function()
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      auth._hmac("Jefe", "what do ya want for nothing?"))
  end)

  it("parses credentials by RFC 7616's grammar (parse_credentials, C parser)", function()
    local c = auth.parse_credentials(' \tDigest  USERNAME = "a\\\"b,c" ,, realm=x\t,nc=01, q="\0z",')
    assert.same({ scheme = "digest", params = { username = 'a"b,c', realm = "x", nc = "01", q = "\0z" } }, c)
    assert.same({ scheme = "basic", params = {} }, auth.parse_credentials("Basic"))
    local many = {}
    for i = 1, 64 do many[i] = "p" .. i .. "=v" end
    assert.equal(64, #(function() local n = {} for k in pairs(auth.parse_credentials("Digest " .. table.concat(many, ",")).params) do n[#n + 1] = k end return n end)())
    many[65] = "p65=v"
    for _, bad in ipairs {
      "", "  ", '"Digest"', 'Digest"a"=b', "Digest,a=b", "Digest a", "Digest a=", "Digest a=b c=d",
      'Digest a="b', 'Digest a="b\\', "Digest a=b, A=c", "Digest a=b;c", "Digest a=@",
      "Digest " .. table.concat(many, ","), 42,
    } do
      assert.is_nil(auth.parse_credentials(bad), tostring(bad))
    end
  end)

  it("challenges with one header per algorithm, in order, each with its own nonce", function()
    local a = new { algorithms = { "SHA-512-256", "SHA-256", "MD5-sess" } }
    local status, headers, reason = a:challenge(request {})
    assert.equal(401, status)
    assert.equal("Unauthorized", reason)
    local values = headers["WWW-Authenticate"]
    assert.equal(3, #values)
    local seen = {}
    for i, alg in ipairs { "SHA-512-256", "SHA-256", "MD5-sess" } do
      local ch = parse_challenge(values[i])
      assert.equal("Digest", ch.scheme)
      assert.equal(alg, ch.params.algorithm)
      assert.equal(REALM, ch.params.realm)
      assert.equal("auth", ch.params.qop)
      assert.truthy(ch.params.opaque)
      assert.is_nil(ch.params.stale)
      assert.is_nil(seen[ch.params.nonce])
      seen[ch.params.nonce] = true
    end
    local _, stale = a:challenge(nil, { stale = true })
    assert.equal("true", parse_challenge(stale["WWW-Authenticate"][1]).params.stale)
    -- default: SHA-256 first, MD5 last (RFC 8760 §2.4)
    local _, def = new():challenge(nil)
    assert.equal("SHA-256", parse_challenge(def["WWW-Authenticate"][1]).params.algorithm)
    assert.equal("MD5", parse_challenge(def["WWW-Authenticate"][2]).params.algorithm)
  end)

  for _, alg in ipairs { "MD5", "SHA-256", "SHA-512-256", "MD5-sess", "SHA-256-sess", "SHA-512-256-sess" } do
    it("accepts a right " .. alg .. " response and rejects a wrong password", function()
      local a = new { algorithms = { alg } }
      local ch = challenge_for(a, alg)
      assert.equal("alice", a:check(with_auth(answer(ch))))
      -- the minimal request table works too
      assert.equal("bob", a:check(minimal(answer(challenge_for(a, alg), { user = "bob" }))))
      local user, why = a:check(with_auth(answer(challenge_for(a, alg), { password = "wrong" })))
      assert.is_nil(user)
      assert.equal("invalid", why)
    end)
  end

  it("unescapes quoted strings: a user name with a quote, a comma and a backslash", function()
    local a = new()
    local v = answer(challenge_for(a), { user = ODD })
    assert.truthy(v:find('username="o\\"ne, il\\\\"', 1, true), v)
    assert.equal(ODD, a:check(with_auth(v)))
    -- and blanks around '=' and ',' do not matter
    v = answer(challenge_for(a)):gsub(", ", " ,\t "):gsub("=", " = ")
    assert.equal("alice", a:check(with_auth(v)))
  end)

  it("accepts the algorithm parameter in any case, and MD5 when it is absent", function()
    local a = new { algorithms = { "MD5" } }
    local v = answer(challenge_for(a, "MD5")):gsub("algorithm=MD5", "algorithm=md5")
    assert.equal("alice", a:check(with_auth(v)))
    v = answer(challenge_for(a, "MD5")):gsub(", algorithm=MD5", "")
    assert.equal("alice", a:check(with_auth(v)))
  end)

  it("rejects an algorithm it did not offer", function()
    local a = new { algorithms = { "SHA-256" } }
    local ch = challenge_for(a, "SHA-256")
    ch.params.algorithm = "MD5" -- a downgrade, with our nonce
    local user, why = a:check(with_auth(answer(ch)))
    assert.is_nil(user)
    assert.equal("invalid", why)
  end)

  it("says invalid for an unknown user, missing for no credentials or another realm", function()
    local a = new()
    local user, why = a:check(with_auth(answer(challenge_for(a), { user = "mallory", password = "x" })))
    assert.is_nil(user)
    assert.equal("invalid", why)
    assert.same({ nil, "missing" }, { a:check(request {}) })
    local ch = challenge_for(a)
    ch.params.realm = "other.org"
    assert.same({ nil, "missing" }, { a:check(with_auth(answer(ch))) })
    -- a Basic credential is not ours either
    assert.same({ nil, "missing" }, { a:check(with_auth("Basic YWxpY2U6c2VjcmV0")) })
  end)

  it("picks the credentials for its realm among several", function()
    local a = new()
    local other = challenge_for(a)
    other.params.realm = "other.org"
    local r = request {
      { "Authorization", answer(other, { password = "whatever" }) },
      { "Authorization", "Basic YWxpY2U6c2VjcmV0" },
      { "Authorization", answer(challenge_for(a), { user = "bob" }) },
    }
    assert.equal("bob", a:check(r))
  end)

  it("requires the uri parameter to be the Request-URI (RFC 3261 §22.4)", function()
    local a = new()
    local v = answer(challenge_for(a), { uri = "sip:other.example.com" })
    assert.same({ nil, "invalid" }, { a:check(with_auth(v)) })
    -- but surrounding blanks do not matter
    v = answer(challenge_for(a), { uri = "sip:example.com" })
    assert.equal("alice", a:check(with_auth(v, { uri = "  sip:example.com " })))
    -- a message whose uri is a parsed table (luasip.message) is read by .str
    v = answer(challenge_for(a))
    assert.equal("alice", a:check(with_auth(v, { uri = { str = URI, host = "example.com" } })))
  end)

  it("rejects forged, altered and foreign nonces", function()
    local a, b = new(), new()
    local function flip(s, i)
      local c = s:sub(i, i)
      return s:sub(1, i - 1) .. (c == "0" and "1" or "0") .. s:sub(i + 1)
    end
    local ch = challenge_for(a)
    local nonce = ch.params.nonce
    local cases = {
      forged = string.rep("0", #nonce),
      made_up = "deadbeef",
      time_altered = flip(nonce, 2),
      random_altered = flip(nonce, 20),
      mac_altered = flip(nonce, #nonce),
      upper_case = nonce:upper() ~= nonce and nonce:upper() or flip(nonce, 1),
      truncated = nonce:sub(1, -2),
      extended = nonce .. "0",
      foreign = challenge_for(b).params.nonce,
    }
    for name, n in pairs(cases) do
      ch.params.nonce = n
      local user, why = a:check(with_auth(answer(ch)))
      assert.is_nil(user, name)
      assert.equal("invalid", why, name)
    end
    -- the untouched nonce still works, and b accepts its own
    ch.params.nonce = nonce
    assert.equal("alice", a:check(with_auth(answer(ch))))
    assert.equal("alice", b:check(with_auth(answer(challenge_for(b)))))
  end)

  it("rejects an opaque that is not its own but tolerates a missing one", function()
    local a = new()
    local ch = challenge_for(a)
    local good = ch.params.opaque
    ch.params.opaque = "not-ours"
    assert.same({ nil, "invalid" }, { a:check(with_auth(answer(ch))) })
    ch.params.opaque = nil
    assert.equal("alice", a:check(with_auth(answer(ch))))
    assert.truthy(good)
  end)

  it("rejects RFC 2069 responses (no qop) and other qop values", function()
    local a = new()
    local ch = challenge_for(a)
    ch.params.qop = nil
    local v = answer(ch)
    assert.falsy(v:find("qop=", 1, true))
    assert.same({ nil, "invalid" }, { a:check(with_auth(v)) })
    v = answer(challenge_for(a)):gsub("qop=auth", "qop=auth-int")
    assert.same({ nil, "invalid" }, { a:check(with_auth(v)) })
  end)

  it("says stale for an expired nonce with a right response, then takes the new one", function()
    H.run(function()
      local a = new { nonce_ttl = 0.3 }
      local ch = challenge_for(a)
      luasip.sleep(0.5)
      assert.same({ nil, "stale" }, { a:check(with_auth(answer(ch))) })
      -- not stale when the password is wrong: that is just invalid
      assert.same({ nil, "invalid" }, { a:check(with_auth(answer(ch, { password = "nope" }))) })
      local status, headers = a:challenge(nil, { stale = true })
      assert.equal(401, status)
      local fresh = parse_challenge(headers["WWW-Authenticate"][1])
      assert.equal("true", fresh.params.stale)
      assert.equal("alice", a:check(with_auth(answer(fresh))))
    end)
  end)

  it("rejects a nonce count that does not increase, per nonce", function()
    local a = new()
    local ch = challenge_for(a)
    assert.equal("alice", a:check(with_auth(answer(ch, { nc = 1 }))))
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch, { nc = 1 }))) })
    assert.equal("alice", a:check(with_auth(answer(ch, { nc = 2 }))))
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch, { nc = 2 }))) })
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch, { nc = 1 }))) })
    assert.equal("alice", a:check(with_auth(answer(ch, { nc = 7 })))) -- gaps are fine
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch, { nc = 5 }))) })
    -- the very same header, replayed byte for byte
    local v = answer(ch, { nc = 8 })
    assert.equal("alice", a:check(with_auth(v)))
    assert.same({ nil, "replay" }, { a:check(with_auth(v)) })
    -- nc zero is not a count
    assert.same({ nil, "invalid" }, { a:check(with_auth(answer(challenge_for(a), { nc = 0 }))) })
  end)

  it("tracks two nonces independently", function()
    local a = new()
    local one, two = challenge_for(a), challenge_for(a)
    assert.not_equal(one.params.nonce, two.params.nonce)
    assert.equal("alice", a:check(with_auth(answer(one, { nc = 1 }))))
    assert.equal("alice", a:check(with_auth(answer(two, { nc = 1 }))))
    assert.equal("alice", a:check(with_auth(answer(one, { nc = 2 }))))
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(two, { nc = 1 }))) })
    assert.equal("alice", a:check(with_auth(answer(two, { nc = 2 }))))
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(one, { nc = 2 }))) })
  end)

  it("bounds the nonces it tracks without letting an evicted one be replayed", function()
    local a = new { max_nonces = 3 }
    local chs = {}
    for i = 1, 5 do
      chs[i] = challenge_for(a)
      assert.equal("alice", a:check(with_auth(answer(chs[i], { nc = 1 }))))
    end
    assert.is_true(a._nonce_count <= 3)
    -- nonce 1 was evicted: replaying it must not pass; the client gets a new nonce
    local user, why = a:check(with_auth(answer(chs[1], { nc = 1 })))
    assert.is_nil(user)
    assert.equal("stale", why)
    -- the tracked ones still count
    assert.same({ nil, "replay" }, { a:check(with_auth(answer(chs[5], { nc = 1 }))) })
    assert.equal("alice", a:check(with_auth(answer(chs[5], { nc = 2 }))))
  end)

  it("counts two racing requests with one nc once, while lookup yields", function()
    H.run(function()
      local a = new { lookup = function(user)
        luasip.sleep(0.05)
        return USERS[user]
      end }
      local v = answer(challenge_for(a), { nc = 1 })
      local results = {}
      for i = 1, 2 do
        task.spawn(function() results[i] = { a:check(with_auth(v)) } end)
      end
      assert.truthy(H.poll_until(function() return results[1] and results[2] end, 5))
      local ok, replay = 0, 0
      for _, r in ipairs(results) do
        if r[1] == "alice" then ok = ok + 1 elseif r[2] == "replay" then replay = replay + 1 end
      end
      assert.same({ 1, 1 }, { ok, replay })
    end)
  end)

  it("throttles one source past max_failures while others still authenticate", function()
    H.run(function()
      local a = new { max_failures = 3, failure_window = 1 }
      local bad = { source = "198.51.100.7" }
      local good = { source = "203.0.113.5" }
      for _ = 1, 3 do
        local user, why = a:check(with_auth(answer(challenge_for(a), { password = "guess" }), bad))
        assert.is_nil(user)
        assert.equal("invalid", why)
      end
      -- now even right credentials, for any user, from that address are refused
      assert.same({ nil, "throttled" }, { a:check(with_auth(answer(challenge_for(a)), bad)) })
      assert.same({ nil, "throttled" },
        { a:check(with_auth(answer(challenge_for(a), { user = "bob" }), bad)) })
      assert.same({ nil, "throttled" }, { a:check(request({}, bad)) })
      -- another address is untouched, and its successes do not help the first
      assert.equal("alice", a:check(with_auth(answer(challenge_for(a)), good)))
      assert.same({ nil, "invalid" },
        { a:check(with_auth(answer(challenge_for(a), { password = "x" }), good)) })
      assert.equal("bob", a:check(with_auth(answer(challenge_for(a), { user = "bob" }), good)))
      assert.same({ nil, "throttled" }, { a:check(with_auth(answer(challenge_for(a)), bad)) })
      -- replays count as failures too
      local ch = challenge_for(a)
      assert.equal("alice", a:check(with_auth(answer(ch), good)))
      assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch), good)) })
      assert.same({ nil, "replay" }, { a:check(with_auth(answer(ch), good)) })
      assert.same({ nil, "throttled" }, { a:check(with_auth(answer(challenge_for(a)), good)) })
      -- the window passes: the first address may try again
      luasip.sleep(1.1)
      assert.equal("alice", a:check(with_auth(answer(challenge_for(a)), bad)))
      assert.equal("alice", a:check(with_auth(answer(challenge_for(a)), good)))
    end)
  end)

  it("keeps the failure records bounded", function()
    local a = new { max_failures = 2, max_sources = 50 }
    for i = 1, 500 do
      a:check(with_auth("Digest garbage", { source = "10.0." .. (i % 250) .. "." .. i }))
    end
    local n = 0
    for _ in pairs(a._sources) do n = n + 1 end
    assert.is_true(n <= 50, n .. " sources kept")
    assert.equal(n, a._source_count)
  end)

  it("says invalid for malformed credentials and never raises", function()
    local a = new()
    local good = answer(challenge_for(a))
    local function edit(pattern, repl) return (good:gsub(pattern, repl)) end
    local cases = {
      "", " ", "Digest", "Digest ", "Digest ,,,", "\1\2\3\255", "=", "@@@ garbage", '"Digest"',
      'Digest realm="example.com', -- unterminated
      'Digest realm="example.com\\"', -- the closing quote is escaped
      'Digest realm="example.com\\', -- backslash at the end
      'Digest realm=example.com username="alice"', -- no comma
      'Digest realm="example.com", nonce=', -- no value
      'Digest realm="example.com", =x',
      'Digest realm="example.com", realm="example.com"', -- twice
      'Digest realm="example.com", nonce="x" junk',
      'Digest realm="example.com", uri="a,b", response',
      'Digest username="alice"', -- no realm
      'Digest realm="example.com", ' .. string.rep("a=b, ", 5000),
      edit('response="%x+"', 'response="zz"'),
      edit("nc=%x+", "nc=1"),
      edit("nc=%x+", "nc=0000000g"),
      edit("nc=%x+", "nc=-0000001"),
      edit('cnonce="[^"]*"', 'cnonce=""'),
      edit('username="alice", ', ""),
      edit(', uri="[^"]*"', ""),
      edit(', response="[^"]*"', ""),
      edit(', nonce="[^"]*"', ""),
      edit(', cnonce="[^"]*"', ""),
      edit(', qop=auth', ""),
      edit('"alice"', '"alice'), -- unterminated inside a right header
    }
    for i, v in ipairs(cases) do
      local ok, user, why = pcall(a.check, a, with_auth(v, { source = "10.1.1." .. i }))
      assert.is_true(ok, user)
      assert.is_nil(user, v)
      assert.equal("invalid", why, v)
    end
    -- the right header itself passes: the cases failed for what was changed
    assert.equal("alice", a:check(with_auth(good)))
    -- other schemes (even a token glued to the params) are someone else's
    for _, v in ipairs { "Basic YWxpY2U6c2VjcmV0", "Bearer abc.def", "garbage", 'Digestrealm="example.com"' } do
      assert.same({ nil, "missing" }, { a:check(with_auth(v)) }, v)
    end
    -- a malformed value next to right credentials does not hide them
    local r = request { { "Authorization", 'Digest realm="example.com' },
                        { "Authorization", answer(challenge_for(a), { user = "bob" }) } }
    assert.equal("bob", a:check(r))
  end)

  it("survives random mutations of a right header without raising", function()
    local a = new { max_failures = 1e9 }
    local good = answer(challenge_for(a))
    math.randomseed(7)
    local chars = '" \\,=\t\0\255aZ'
    local outcomes = {}
    for _ = 1, 2000 do
      local v = good
      for _ = 1, math.random(1, 4) do
        local i = math.random(1, #v)
        local r = math.random(3)
        if r == 1 then -- delete
          v = v:sub(1, i - 1) .. v:sub(i + 1)
        else -- replace or insert one of the tricky characters
          local k = math.random(#chars)
          v = v:sub(1, i - 1) .. chars:sub(k, k) .. v:sub(r == 2 and i + 1 or i)
        end
      end
      local ok, user, why = pcall(a.check, a, with_auth(v))
      assert.is_true(ok, user)
      assert.truthy(user == "alice" or why == "invalid" or why == "missing" or why == "replay",
        tostring(why))
      outcomes[why or "ok"] = true
    end
    assert.truthy(outcomes.invalid)
  end)

  it("reads Proxy-Authorization and answers 407 in proxy mode", function()
    local a = new()
    local status, headers, reason = a:challenge(nil, { proxy = true })
    assert.equal(407, status)
    assert.equal("Proxy Authentication Required", reason)
    assert.is_nil(headers["WWW-Authenticate"])
    local ch = parse_challenge(headers["Proxy-Authenticate"][1])
    local v = answer(ch, { method = "INVITE", uri = "sip:bob@example.com" })
    local r = request({ { "Proxy-Authorization", v } }, { method = "INVITE", uri = "sip:bob@example.com" })
    assert.same({ nil, "missing" }, { a:check(r) }) -- not read as Authorization
    assert.equal("alice", a:check(r, { proxy = true }))
    -- and Authorization is not read in proxy mode
    local r2 = request({ { "Authorization", answer(challenge_for(a), { method = "INVITE",
      uri = "sip:bob@example.com" }) } }, { method = "INVITE", uri = "sip:bob@example.com" })
    assert.same({ nil, "missing" }, { a:check(r2, { proxy = true }) })
    -- the method is part of the response
    local r3 = request({ { "Proxy-Authorization", answer(challenge_for(a, nil, { proxy = true }),
      { method = "INVITE", uri = "sip:bob@example.com" }) } }, { method = "BYE", uri = "sip:bob@example.com" })
    assert.same({ nil, "invalid" }, { a:check(r3, { proxy = true }) })
  end)

  it("accepts an HA1 from lookup instead of a password", function()
    local md5 = core.hash("MD5", "alice:" .. REALM .. ":secret")
    local sha = core.hash("SHA-256", "alice:" .. REALM .. ":secret")
    local a = new { algorithms = { "SHA-256", "MD5", "MD5-sess" }, lookup = function(user, realm)
      assert.equal(REALM, realm)
      if user == "alice" then return { ha1 = md5 } end
      if user == "bob" then return { ha1 = { MD5 = md5:upper(), ["SHA-256"] = sha } } end
      if user == "carol" then return { ha1 = { ["SHA-256"] = sha } } end
    end }
    -- alice's HA1 really is for "secret": other passwords fail
    assert.equal("alice", a:check(with_auth(answer(challenge_for(a, "MD5"), { password = "secret" }))))
    assert.equal("alice", a:check(with_auth(answer(challenge_for(a, "MD5-sess"), { password = "secret" }))))
    assert.same({ nil, "invalid" },
      { a:check(with_auth(answer(challenge_for(a, "MD5"), { password = "hunter2" }))) })
    -- a bare HA1 is MD5's: it cannot check a SHA-256 response
    assert.same({ nil, "invalid" },
      { a:check(with_auth(answer(challenge_for(a, "SHA-256"), { password = "secret" }))) })
    -- per-algorithm HA1s (bob's were made with alice's name, so answer as alice's hashes)
    local ch = challenge_for(a, "SHA-256")
    local v = answer(ch, { user = "alice", password = "secret" }):gsub('username="alice"', 'username="carol"')
    assert.equal("carol", a:check(with_auth(v)))
    v = answer(challenge_for(a, "MD5"), { user = "alice", password = "secret" })
        :gsub('username="alice"', 'username="bob"')
    assert.equal("bob", a:check(with_auth(v))) -- an upper-case HA1 is fine
    v = answer(challenge_for(a, "MD5"), { user = "alice", password = "secret" })
        :gsub('username="alice"', 'username="carol"')
    assert.same({ nil, "invalid" }, { a:check(with_auth(v)) }) -- carol has no MD5 HA1
  end)

  it("raises one-line errors on misuse", function()
    local function err(fn)
      local ok, e = pcall(fn)
      assert.is_false(ok)
      assert.falsy(e:find("\n"), e)
      return e
    end
    assert.matches("auth_spec.lua:%d+: luasip.auth.digest: realm is required$",
      err(function() local _ = auth.digest { lookup = lookup } end))
    assert.matches("auth_spec.lua:%d+: luasip.auth.digest: lookup is required",
      err(function() local _ = auth.digest { realm = REALM } end))
    assert.matches("luasip.auth.digest: unknown algorithm 'SHA%-1'",
      err(function() local _ = auth.digest { realm = REALM, lookup = lookup, algorithms = { "SHA-1" } } end))
    assert.matches("luasip.auth.digest: unknown option 'nonce_tll'",
      err(function() local _ = auth.digest { realm = REALM, lookup = lookup, nonce_tll = 5 } end))
    assert.matches("auth_spec.lua:%d+: luasip.auth.digest: nonce_ttl must be a positive number",
      err(function() local _ = auth.digest { realm = REALM, lookup = lookup, nonce_ttl = -1 } end))
    assert.matches("luasip.auth.digest: expected a table", err(function() local _ = auth.digest() end))
    local a = new()
    assert.matches("auth_spec.lua:%d+: luasip.auth: check: expected a request",
      err(function() local _ = a:check(nil) end))
    assert.matches("auth_spec.lua:%d+: luasip.auth: check: call it as a method",
      err(function() local _ = a.check(with_auth("x")) end))
    assert.matches("luasip.auth: check: the request has no method",
      err(function() local _ = a:check { header = function() end } end))
    assert.matches("luasip.auth: challenge: options must be a table",
      err(function() local _ = a:challenge(nil, true) end))
    assert.equal("luasip.auth.digest", getmetatable(a).__name)
    assert.matches('^luasip.auth.digest %(realm "example.com"', tostring(a))
  end)
end)

describe("luasip.auth.digest on sofia-parsed requests", function()
  H.leakcheck()

  -- A luasip UA whose MESSAGE handler checks each request with a and
  -- answers 200 or 403 with the reason; returns ua, a send(headers) that
  -- returns the status, reason and the checked message's Request-URI.
  local function server(a, opts)
    local ua = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:luasip@127.0.0.1" })
    local seen
    ua:on("message", function(msg)
      local user, why = a:check(msg, opts)
      seen = { uri = msg.uri.str, source = msg.source, user = user }
      if user then return 200, "Welcome " .. user end
      return 403, why
    end)
    local function send(headers)
      local raw = H.request("MESSAGE", ua.port, { headers = headers, body = "hi" })
      local resp = H.parse_response(H.udp_exchange(ua.port, raw, 3))
      assert.truthy(resp, "no response")
      return resp.status, resp.reason, seen
    end
    return ua, send
  end

  it("authenticates, counts nc and rejects wrong passwords on real messages", function()
    H.run(function()
      local a = new { algorithms = { "SHA-256", "MD5-sess" } }
      local ua, send = server(a)
      local ruri = "sip:luasip@127.0.0.1:" .. ua.port
      local ch = challenge_for(a, "SHA-256")
      local status, reason, seen = send { "Authorization: " .. answer(ch, { method = "MESSAGE", uri = ruri }) }
      assert.equal(200, status, reason)
      assert.equal("Welcome alice", reason)
      assert.same({ uri = ruri, source = "127.0.0.1", user = "alice" }, seen)
      status, reason = send { "Authorization: " .. answer(ch, { method = "MESSAGE", uri = ruri }) }
      assert.same({ 403, "replay" }, { status, reason })
      status, reason = send { "Authorization: " .. answer(ch, { method = "MESSAGE", uri = ruri, nc = 2 }) }
      assert.same({ 200, "Welcome alice" }, { status, reason })
      status, reason = send { "Authorization: " .. answer(challenge_for(a, "MD5-sess"),
        { method = "MESSAGE", uri = ruri, user = "bob" }) }
      assert.same({ 200, "Welcome bob" }, { status, reason })
      status, reason = send { "Authorization: " .. answer(challenge_for(a, "SHA-256"),
        { method = "MESSAGE", uri = ruri, password = "wrong" }) }
      assert.same({ 403, "invalid" }, { status, reason })
      status, reason = send {}
      assert.same({ 403, "missing" }, { status, reason })
      status, reason, seen = send { "Authorization: " .. answer(challenge_for(a, "SHA-256"),
        { method = "MESSAGE", uri = ruri, user = ODD }) }
      assert.same({ 200, "Welcome " .. ODD }, { status, reason })
      assert.equal(ODD, seen.user)
      -- a uri that is not the Request-URI
      status, reason = send { "Authorization: " .. answer(challenge_for(a, "SHA-256"),
        { method = "MESSAGE", uri = "sip:luasip@127.0.0.1" }) }
      assert.same({ 403, "invalid" }, { status, reason })
      ua:close()
    end, 20)
  end)

  it("finds its realm among several Authorization and reads Proxy-Authorization", function()
    H.run(function()
      local a = new()
      local ua, send = server(a)
      local ruri = "sip:luasip@127.0.0.1:" .. ua.port
      local other = challenge_for(a)
      other.params.realm = "other.org"
      local status, reason = send {
        "Authorization: " .. answer(other, { method = "MESSAGE", uri = ruri }),
        "Authorization: " .. answer(challenge_for(a), { method = "MESSAGE", uri = ruri, user = "bob" }),
      }
      assert.same({ 200, "Welcome bob" }, { status, reason })
      ua:close()

      local p = new()
      local pua, psend = server(p, { proxy = true })
      ruri = "sip:luasip@127.0.0.1:" .. pua.port
      status, reason = psend { "Authorization: " .. answer(challenge_for(p), { method = "MESSAGE", uri = ruri }) }
      assert.same({ 403, "missing" }, { status, reason })
      status, reason = psend { "Proxy-Authorization: " .. answer(challenge_for(p, nil, { proxy = true }),
        { method = "MESSAGE", uri = ruri }) }
      assert.same({ 200, "Welcome alice" }, { status, reason })
      pua:close()
    end, 20)
  end)
end)
