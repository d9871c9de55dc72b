-- pbx.lua — the main demo. `make run` starts it on 127.0.0.1:5060.
--
-- At this stage it proves the loop and the SIP stack are alive: it listens
-- on UDP and TCP, answers OPTIONS with 200 and says so, and stops cleanly
-- on Ctrl-C or SIGTERM. Registrar, routing and IVR grow here next.
--
--   luasip examples/pbx.lua [--listen host:port] [--trace]
--   sip-options sip:127.0.0.1:5060      # in another terminal
local luasip = require "luasip"

local listen = "127.0.0.1:5060"
local i = 1
while arg and arg[i] do
  local a = arg[i]
  if a == "--listen" or a == "-l" then
    i = i + 1
    listen = assert(arg[i], "--listen needs host:port")
  elseif a:match("^%-%-listen=") then
    listen = a:match("=(.*)$")
  elseif a == "--trace" then
    luasip.trace(true)
  else
    io.stderr:write("pbx.lua: unknown argument '", a, "' (use --listen host:port, --trace)\n")
    os.exit(2)
  end
  i = i + 1
end

local server, err = luasip.server {
  listen = listen,
  name = "pbx",
  observe = function(req)
    print(string.format("%s from %s:%d over %s -> %d", req.method, req.source,
      req.source_port, req.transport, req.status))
    io.stdout:flush()
  end,
}
if not server then
  io.stderr:write("pbx.lua: ", err, "\n")
  os.exit(1)
end

luasip.on("shutdown", function(reason)
  print("pbx: stopping (" .. reason .. ")")
  server:close()
end)

print("pbx: listening on " .. table.concat(server:addresses(), ", ") ..
  "; answering OPTIONS. Ctrl-C stops.")
io.stdout:flush()
luasip.run()
print("pbx: stopped")
