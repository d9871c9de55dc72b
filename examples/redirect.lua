-- redirect.lua — a redirect server: REGISTER stores contacts, any other
-- request gets 302 with the callee's registered contacts (404 if none).
--
--   luasip examples/redirect.lua --listen 127.0.0.1:5060 --db sqlite:loc.db
local luasip = require "luasip"

local opt = luasip.flags(arg, { listen = "127.0.0.1:5060", db = "memory:", trace = false },
  "redirect.lua [flags]: a redirect server")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local srv = assert(luasip.server { listen = opt.listen })
local location = assert(luasip.location(opt.db))
srv:on("REGISTER", luasip.registrar { location = location })
srv:on("*", function(req)
  local contacts = location:lookup(luasip.registrar_aor(req.uri))
  if #contacts == 0 then return req:reply(404, "Not Found") end
  req:redirect(contacts, 302)
end)

luasip.on("shutdown", function() srv:close(); location:close() end)
print("redirect: listening on " .. table.concat(srv:addresses(), ", ") .. ", store " .. opt.db)
io.stdout:flush()
luasip.run()
