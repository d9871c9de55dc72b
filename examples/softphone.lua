-- softphone.lua — a SIP phone at the REPL. Incoming calls and MESSAGEs are
-- printed as they arrive; calls ring until you answer() them.
--
--   luasip -i examples/softphone.lua --listen 127.0.0.1:5070 --aor sip:alice@127.0.0.1
--          [--registrar sip:127.0.0.1:5060] [--user alice --password secret] [--trace]
--
--   dial(uri)  answer()  hangup()  hold()  unhold()  transfer(uri)
--   dtmf(digits)  send(uri, text)  calls()   -- `ua` is the user agent itself
-- Call helpers act on the current call (the last one dialled, answered or
-- received), or on the call (or calls() number) given as the last argument.
local luasip = require "luasip"

local o = { listen = "127.0.0.1:5070" }
local takes_value = { listen = true, aor = true, registrar = true, user = true, password = true }
local i = 1
while arg and arg[i] do
  local flag, v = arg[i]:match("^%-%-(%a+)$"), arg[i + 1]
  if flag == "trace" then luasip.trace(true)
  elseif takes_value[flag] and v then o[flag], i = v, i + 1
  else
    io.stderr:write("softphone.lua: bad argument '", arg[i], "' (use --listen host:port --aor uri",
      " [--registrar uri] [--user u --password p] [--trace])\n")
    os.exit(2)
  end
  i = i + 1
end

ua = assert(luasip.ua {
  listen = o.listen, aor = o.aor,
  credentials = o.user and { user = o.user, password = o.password or "" },
})
print("softphone: " .. ua.aor .. " listening on " .. ua.contact)

local list, current = {}, nil -- live calls, oldest first; the current one
local function track(call)
  list[#list + 1], current = call, call
  call:on("hangup", function(c, status, reason)
    print(string.format("softphone: call with %s ended (%s %s)", c.remote_uri, status, reason))
    for k = #list, 1, -1 do if list[k] == c then table.remove(list, k) end end
    if current == c then current = list[#list] end
  end)
  return call
end

local function pick(c)
  if type(c) == "number" then c = list[c] else c = c or current end
  if not c then error("no such call", 3) end
  current = c
  return c
end

ua:on("call", function(call)
  track(call):ring()
  print("softphone: incoming call from " .. call.remote_uri .. " — answer() or hangup()")
end)

ua:on("message", function(msg)
  print(string.format("softphone: message from %s: %s", msg.from.uri.str, msg.body or ""))
  return 200
end)

function dial(uri, opts)
  if not uri:match("^sips?:") then uri = "sip:" .. uri end
  opts = opts or {}
  opts.on_progress = function(_, status, reason) print("softphone: " .. status .. " " .. reason) end
  local call, reason, status = ua:call(uri, opts)
  if not call then return nil, reason, status end
  return track(call)
end

function answer(c) return pick(c):answer() end
function hangup(c) return pick(c):hangup() end
function hold(c) return pick(c):hold() end
function unhold(c) return pick(c):unhold() end
function transfer(uri, c) return pick(c):refer(uri) end
function dtmf(digits, c) return pick(c):dtmf(digits) end
function send(uri, text) return ua:message(uri, text) end

function calls()
  for k, c in ipairs(list) do
    print(string.format("%s%d  %-3s %-10s %s", c == current and "*" or " ", k, c.direction,
      c.state, c.remote_uri))
  end
end

if o.registrar then
  local reg, reason, status = ua:register { registrar = o.registrar, expires = 600 }
  print(reg and ("softphone: registered at " .. o.registrar)
            or ("softphone: registration failed: " .. tostring(status) .. " " .. tostring(reason)))
end
