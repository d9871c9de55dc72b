-- proxy.lua — registrar + stateful proxy: calls to a registered user fork
-- in parallel to all of its contacts with Record-Route; unknown users get
-- 404; on busy or no answer the call goes to a voicemail URI if one is set.
--
--   luasip examples/proxy.lua --listen 127.0.0.1:5060 --db sqlite:loc.db \
--        --voicemail sip:vm@127.0.0.1:5090 --ring-timeout 30
local luasip = require "luasip"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:5060", db = "memory:", domain = "", users = "", auth = true,
  algorithms = "SHA-256,MD5", voicemail = "", ring_timeout = 30, trace = false,
}, "proxy.lua [flags]: registrar + forking proxy")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local users = opt.users ~= "" and luasip.auth.read_users(opt.users)
  or { alice = "alice-secret", bob = "bob-secret", carol = "carol-secret" }

local srv = assert(luasip.server { listen = opt.listen, domain = opt.domain ~= "" and opt.domain or nil })
local location = assert(luasip.location(opt.db))
local auth = opt.auth and luasip.auth.digest {
  realm = opt.domain ~= "" and opt.domain or srv.host, algorithms = opt.algorithms,
  lookup = function(user) return users[user] end,
} or nil
srv:on("REGISTER", luasip.registrar { location = location, auth = auth })

srv:on("*", function(req)
  if not srv:is_me(req.uri) then return req:proxy() end         -- not for our domain: relay
  local aor = luasip.registrar_aor(req.uri)
  local contacts = location:lookup(aor)
  if #contacts == 0 then return req:reply(404, "Not Found") end
  local status = req:proxy(contacts, { parallel = true, branch_timeout = opt.ring_timeout })
  if req.method == "INVITE" and opt.voicemail ~= "" and
      (status == 486 or status == 408 or status == 480 or status == 487 and not req.cancelled) then
    req:proxy(opt.voicemail)
  end
end)

luasip.on("shutdown", function() srv:close(); location:close() end)
print(string.format("proxy: listening on %s, store %s, auth %s, voicemail %s",
  table.concat(srv:addresses(), ", "), opt.db, auth and "on" or "off",
  opt.voicemail ~= "" and opt.voicemail or "none"))
io.stdout:flush()
luasip.run()
