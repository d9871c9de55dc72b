-- registrar.lua — a SIP registrar with digest auth from a users table.
--
--   luasip examples/registrar.lua --listen 127.0.0.1:5060 --db sqlite:reg.db
--   luasip examples/registrar.lua --users users.txt     # "name password" lines
--   luasip examples/registrar.lua --no-auth
local luasip = require "luasip"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:5060", db = "memory:", domain = "", users = "",
  auth = true, algorithms = "SHA-256,MD5", trace = false,
}, "registrar.lua [flags]: a registrar with digest auth")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local users = opt.users ~= "" and luasip.auth.read_users(opt.users)
  or { alice = "alice-secret", bob = "bob-secret", carol = "carol-secret" }

local srv = assert(luasip.server { listen = opt.listen, domain = opt.domain ~= "" and opt.domain or nil })
local realm = opt.domain ~= "" and opt.domain or srv.host
local location = assert(luasip.location(opt.db))
local registrar = luasip.registrar {
  location = location,
  auth = opt.auth and luasip.auth.digest { realm = realm, algorithms = opt.algorithms,
                                            lookup = function(user) return users[user] end } or nil,
}
srv:on("REGISTER", registrar)

luasip.on("shutdown", function() srv:close(); location:close() end)
print(string.format("registrar: listening on %s, realm %s, store %s, auth %s",
  table.concat(srv:addresses(), ", "), realm, opt.db, opt.auth and "on" or "off"))
io.stdout:flush()
luasip.run()
