-- presence_server.lua — registrar + presence server + MESSAGE relay
-- (SIMPLE): users register, publish and watch each other's presence, and
-- chat; presence also follows registration (registered = open).
--
--   luasip examples/presence_server.lua --listen 127.0.0.1:5060 \
--        --db sqlite:loc.db --presence-db sqlite:presence.db --policy pending
--   luasip examples/presence_server.lua --no-auth --policy allow
--
-- --policy says what watchers not on a presentity's lists get: "allow",
-- "pending" (wait for `allow`) or "deny". --buddies "alice:bob,carol" puts
-- bob and carol on alice's allow list (and alice on theirs).
local luasip = require "luasip"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:5060", db = "memory:", presence_db = "memory:", domain = "", users = "",
  auth = true, algorithms = "SHA-256,MD5", policy = "pending", buddies = "", trace = false,
}, "presence_server.lua [flags]: registrar + presence server + MESSAGE relay")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local users = opt.users ~= "" and luasip.auth.read_users(opt.users)
  or { alice = "alice-secret", bob = "bob-secret", carol = "carol-secret" }

-- the domain served: users are sip:alice@<domain> (default: the listen host)
local domain = opt.domain ~= "" and opt.domain or require("luasip.server").parse_listen(opt.listen, 5060)
local srv = assert(luasip.server { listen = opt.listen, domain = domain })
local location = assert(luasip.location(opt.db))
local auth = opt.auth and luasip.auth.digest {
  realm = domain, algorithms = opt.algorithms, lookup = function(user) return users[user] end,
} or nil
srv:on("REGISTER", luasip.registrar { location = location, auth = auth })
local presence = assert(luasip.presence_server {
  server = srv, location = location, auth = auth, store = opt.presence_db, unknown = opt.policy,
})

-- buddy lists: mutual allow entries
local function aor(user) return "sip:" .. user .. "@" .. domain end
for entry in opt.buddies:gmatch("[^;%s]+") do
  local owner, list = entry:match("^([^:]+):(.*)$")
  for buddy in (list or ""):gmatch("[^,]+") do
    luasip.spawn(function()
      assert(presence:allow(aor(owner), aor(buddy)))
      assert(presence:allow(aor(buddy), aor(owner)))
    end)
  end
end

-- everything else to a registered user goes to its contacts
srv:on("*", function(req)
  if not srv:is_me(req.uri) then return req:proxy() end
  local contacts = location:lookup(luasip.registrar_aor(req.uri))
  if #contacts == 0 then return req:reply(404, "Not Found") end
  req:proxy(contacts, { parallel = true })
end)

luasip.on("shutdown", function() presence:close(); srv:close(); location:close() end)
print(string.format("presence server: listening on %s, domain %s, auth %s, policy %s",
  table.concat(srv:addresses(), ", "), domain, auth and "on" or "off", opt.policy))
io.stdout:flush()
luasip.run()
