-- pbx.lua — the main demo (`make run`): one process that is a registrar
-- with digest auth, a forking proxy, voicemail with MWI, an echo test, an
-- IVR, a conference room and a presence server with MESSAGE relay.
--
--   luasip examples/pbx.lua [--listen 127.0.0.1:5060] [--data ./pbx-data]
--        [--users users.txt] [--ring-timeout 20] [--trace]
--
-- Dial a user (alice, bob, carol): every phone it registered rings; busy,
-- no answer in --ring-timeout s, or none registered: its voicemail.
-- *43 echo test, *44 IVR demo, *45 conference room, *97 your voicemail.
-- --users: "name password pin" lines. Data (registrations, presence,
-- voicemail index and audio) survive restarts in --data.
local luasip = require "luasip"
local core = require "luasip.core"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:5060", apps = "", data = "pbx-data", users = "", ring_timeout = 20, trace = false,
  algorithms = "MD5", -- "SHA-256,MD5" for phones that take RFC 8760 (Debian's baresip fails on it)
}, "pbx.lua [flags]: registrar, proxy, voicemail, IVR, conference and presence in one process")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local users = { alice = { "alice-secret", "1111" }, bob = { "bob-secret", "2222" }, carol = { "carol-secret", "3333" } }
if opt.users ~= "" then
  local passwords, extra = luasip.auth.read_users(opt.users)
  users = {}
  for name, pw in pairs(passwords) do users[name] = { pw, extra[name][1] } end
end
local function die(...) io.stderr:write("pbx.lua: ", ...) io.stderr:write("\n") os.exit(1) end
local ok, err = core.mkdir(opt.data)
if not ok then die(err) end

-- SIP side: registrar, proxy, presence and MESSAGE
local host = require("luasip.server").parse_listen(opt.listen, 5060)
local srv = assert(luasip.server { listen = opt.listen, domain = host, observe = function(req)
  print(string.format("pbx: %s from %s:%d over %s -> %d", req.method, req.source, req.source_port, req.transport,
                      req.status)) io.stdout:flush()
end })
local location = assert(luasip.location("sqlite:" .. opt.data .. "/location.db"))
local auth = luasip.auth.digest { realm = host, algorithms = opt.algorithms,
                                  lookup = function(u) return users[u] and users[u][1] end }
srv:on("REGISTER", luasip.registrar { location = location, auth = auth })
local presence = assert(luasip.presence_server { server = srv, location = location, auth = auth,
                                                 store = "sqlite:" .. opt.data .. "/presence.db", unknown = "allow" })

-- Media side: a UA the proxy hands calls to (voicemail, echo, IVR, conference)
local apps = assert(luasip.ua { listen = opt.apps ~= "" and opt.apps or host .. ":0" })
local key = core.random_token(16) -- calls to it must come through the proxy
local vm = assert(luasip.voicemail { dir = opt.data .. "/voicemail", domain = host, presence = presence,
  mailboxes = function(box) return users[box] and { pin = users[box][2] } end })

local apps_at = apps.contact:match("^sips?:[^@;>]*@([^;>]+)") or apps.contact:match("^sips?:([^;>]+)")
local function to_apps(req, ext)
  return req:proxy("sip:" .. ext .. "@" .. apps_at, { headers = { ["X-PBX-Key"] = key } })
end

-- The caller when it is one of our users (challenged: false after 407/403).
local function caller_of(req)
  if not srv:is_me(req.from.uri) then return nil end
  local user = req:authenticate(auth, { proxy = true })
  if not user then req:challenge(auth, { proxy = true }) return false end
  if user ~= req.from.uri.user then req:reply(403, "Not Your Identity") return false end
  return user
end

local APPS = { ["*43"] = true, ["*44"] = true, ["*45"] = true, ["*97"] = true }
srv:on("INVITE", function(req)
  if req.msg.to_tag then return req:proxy() end          -- in a dialog: along its route
  local caller = caller_of(req)
  if caller == false then return end
  if not srv:is_me(req.uri) then
    if not caller then return req:reply(403, "No Relaying") end
    return req:proxy()
  end
  local ext = req.uri.user or ""
  if APPS[ext] then return caller and to_apps(req, ext) or req:reply(403, "Local Users Only") end
  if not users[ext] then return req:reply(404, "No Such User") end
  local contacts = location:lookup("sip:" .. ext .. "@" .. host)
  local status = #contacts == 0 and 480 or req:proxy(contacts, { parallel = true, branch_timeout = opt.ring_timeout })
  if status == 486 or status == 408 or status == 480 or status == 600 or status == 603 or
      (status == 487 and not req.cancelled) then
    to_apps(req, "vm-" .. ext)
  end
end)
srv:on("*", function(req)
  if not srv:is_me(req.uri) then return req:proxy() end
  if users[req.uri.user or ""] then
    local contacts = location:lookup("sip:" .. req.uri.user .. "@" .. host)
    if #contacts == 0 then return req:reply(480, "Not Registered") end
    return req:proxy(contacts, { parallel = true })
  end
  req:reply(req.method == "OPTIONS" and 200 or 404) -- OPTIONS to the PBX itself
end)

-- *44: a menu
local function ivr(call)
  call:answer()
  while call.state ~= "terminated" do
    local d = call:collect { prompt = { say = "Press 1 for a tone, 2 for the time, 3 for your number." },
                             max = 1, valid = "[123]", invalid_prompt = "error" }
    if not d then break end
    if d == "1" then call:play { freqs = { 440 }, duration = 1500 }
    elseif d == "2" then call:say(os.date("It is %H %M."))
    else call:say("You are " .. tostring(call.from.uri.user):gsub(".", "%0 ")) end
  end
  call:hangup()
end

apps:on("call", function(call)
  if call.request:header("X-PBX-Key") ~= key then return call:reject(403, "Through The PBX Only") end
  local ext, who = call.request.uri.user or "", call.from.uri.user
  print(string.format("pbx: %s -> %s", tostring(who), ext)) io.stdout:flush()
  local box = ext:match("^vm%-(.+)$")
  if box then return vm:deposit(call, box) end
  if ext == "*97" then return vm:retrieve(call, who) end
  if ext == "*44" then return ivr(call) end
  if not call:answer() then return end
  call:play("beep")
  if ext == "*43" then call:echo { timeout = 600 }
  else luasip.conference("pbx"):join(call) call:wait_hangup(4 * 3600) end
  call:hangup()
end)

luasip.on("shutdown", function(why)
  print("pbx: stopping (" .. why .. ")") io.stdout:flush()
  apps:close() presence:close() vm:close() srv:close() location:close()
end)

local port = srv.port
local names = {}
for name in pairs(users) do names[#names + 1] = name end
table.sort(names)
print(string.format("pbx: listening on %s (domain %s); data in %s", table.concat(srv:addresses(), ", "), host, opt.data))
print("pbx: users (password, voicemail PIN):")
for _, n in ipairs(names) do print(string.format("  %-8s %-16s %s", n, users[n][1], users[n][2] or "-")) end
print("pbx: dial a user; *43 echo test, *44 IVR, *45 conference room, *97 voicemail")
local u = users[names[1]] or { "secret" }
print(string.format("baresip (a line in ~/.baresip/accounts):\n  <sip:%s@%s:%d>;auth_pass=%s", names[1], host, port, u[1]))
print(string.format("any SIP phone:\n  user %s, password %s, domain/registrar %s, port %d, UDP or TCP", names[1], u[1], host, port))
io.stdout:flush()
luasip.run()
print("pbx: stopped")
