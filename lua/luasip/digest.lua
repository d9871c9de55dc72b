--- Digest access authentication, client side (RFC 7616 / RFC 8760 for SIP):
-- the Authorization value for a challenge, with MD5, SHA-256 and
-- SHA-512-256, their -sess variants, and qop=auth.
--
-- The challenge comes parsed by sofia (msg:challenges()); only the hashing
-- (OpenSSL, core.hash) and the response formula live here.
-- @module luasip.digest
local core = require "luasip.core"

local M = {}

local ALGS = { ["MD5"] = "MD5", ["SHA-256"] = "SHA-256", ["SHA-512-256"] = "SHA-512-256" }

--- The hash a challenge asks for, and whether it is a -sess variant.
-- The hash ("MD5", "SHA-256", ...), whether it is a -sess variant, or nil
-- when unsupported. A challenge without algorithm asks for MD5.
-- @tparam table ch a challenge from msg:challenges() ({scheme=, proxy=,
-- params=})
-- @treturn ?string "MD5", "SHA-256" or "SHA-512-256"; nil when unsupported
-- @treturn boolean true for a -sess variant
function M.algorithm(ch)
  local alg = (ch.params.algorithm or "MD5"):upper()
  local sess = false
  if alg:sub(-5) == "-SESS" then alg, sess = alg:sub(1, -6), true end
  return ALGS[alg], sess
end

-- Order of preference among several challenges for one realm (RFC 8760 §2.4).
local RANK = { ["SHA-512-256"] = 1, ["SHA-256"] = 2, ["MD5"] = 3 }
--- The rank of a challenge in the order of preference (RFC 8760 §2.4).
-- For choosing among several challenges for one realm: lower is better.
-- @tparam table ch a challenge from msg:challenges()
-- @treturn number 1 for SHA-512-256, 2 for SHA-256, 3 for MD5, 99 for an
-- unsupported algorithm
-- @usage table.sort(challenges, function(x, y) return digest.rank(x) < digest.rank(y) end)
function M.rank(ch)
  local alg = M.algorithm(ch)
  return alg and RANK[alg] or 99
end

local function quote(s) return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"' end

--- Authorization header value answering challenge ch for a request.
-- ch comes from msg:challenges(). The same value answers a
-- Proxy-Authenticate challenge, in Proxy-Authorization.
-- @tparam table ch a challenge from msg:challenges()
-- @tparam table opts options:
-- @tparam string opts.user the user name
-- @tparam string opts.password the password
-- @tparam string opts.method the request's method
-- @tparam string opts.uri the request's Request-URI
-- @tparam[opt] number opts.nc the nonce count (default 1)
-- @tparam[opt] string opts.cnonce the client nonce (default random)
-- @treturn[1] string the header value, "Digest username=..., ..."
-- @return[2] nil
-- @treturn[2] string "unsupported digest algorithm NAME" or "unsupported
-- qop VALUE" (a challenge without qop=auth among its qops)
-- @usage local value = assert(digest.authorization(ch, { user = "alice",
--   password = "secret", method = "REGISTER", uri = "sip:example.com" }))
function M.authorization(ch, opts)
  local alg, sess = M.algorithm(ch)
  if not alg then return nil, "unsupported digest algorithm " .. tostring(ch.params.algorithm) end
  local function H(s) return core.hash(alg, s) end
  local p = ch.params
  local realm, nonce = p.realm or "", p.nonce or ""
  local cnonce = opts.cnonce or core.hash("MD5", tostring(core.now()) .. tostring(math.random()) .. nonce):sub(1, 16)
  local nc = string.format("%08x", opts.nc or 1)
  local ha1 = H(opts.user .. ":" .. realm .. ":" .. opts.password)
  if sess then ha1 = H(ha1 .. ":" .. nonce .. ":" .. cnonce) end
  local qop
  if p.qop then
    for q in p.qop:gmatch("[^,%s]+") do if q:lower() == "auth" then qop = "auth" end end
    if not qop then return nil, "unsupported qop " .. p.qop end
  end
  local ha2 = H(opts.method .. ":" .. opts.uri)
  local response
  if qop then
    response = H(table.concat({ ha1, nonce, nc, cnonce, qop, ha2 }, ":"))
  else
    response = H(ha1 .. ":" .. nonce .. ":" .. ha2)
  end
  local parts = {
    "Digest username=" .. quote(opts.user),
    "realm=" .. quote(realm),
    "nonce=" .. quote(nonce),
    "uri=" .. quote(opts.uri),
    "response=" .. quote(response),
    "algorithm=" .. (p.algorithm or "MD5"),
  }
  if p.opaque then parts[#parts + 1] = "opaque=" .. quote(p.opaque) end
  if qop then
    parts[#parts + 1] = "qop=" .. qop
    parts[#parts + 1] = "nc=" .. nc
  end
  if qop or sess then -- a -sess HA1 uses the cnonce: the server needs it
    parts[#parts + 1] = "cnonce=" .. quote(cnonce)
  end
  return table.concat(parts, ", ")
end

return M
