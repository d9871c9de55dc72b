-- ivr.lua — a menu: 1 plays a tone, 2 records you and plays it back, 3
-- speaks your caller ID; anything else re-prompts.
--
--   luasip examples/ivr.lua --listen 127.0.0.1:5090 --dir /tmp/ivr
--   luasip examples/ivr.lua --prompt menu.wav     # a recorded menu instead of TTS
local luasip = require "luasip"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:5090", dir = "/tmp", prompt = "", trace = false,
}, "ivr.lua [flags]: an IVR menu")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local MENU = "Press 1 for a tone. 2 to record a message and hear it. 3 to hear your caller I D."

local ua = assert(luasip.ua { listen = opt.listen, aor = "sip:ivr@" .. opt.listen })

-- a recorded menu, or the text spoken
local prompt = opt.prompt ~= "" and opt.prompt or { say = MENU }

ua:on("call", function(call)
  local n = 0
  if not call:answer() then return end
  while call.state ~= "terminated" do
    -- collect plays the prompt (a digit interrupts it), waits 5 s for a
    -- digit, and tries three times in all; a wrong key hears the error tone
    local digit, why = call:collect { prompt = prompt, max = 1, timeout = 5, retries = 2,
                                      invalid_prompt = "error", valid = "[123]" }
    print(string.format("ivr: %s pressed %s", tostring(call.remote_uri), tostring(digit or why)))
    io.stdout:flush()
    if not digit then break end
    if digit == "1" then
      call:play { freqs = { 440 }, duration = 1500 }
    elseif digit == "2" then
      n = n + 1
      local path = string.format("%s/ivr-%s-%d.wav", opt.dir, call.call_id:gsub("[^%w]", ""), n)
      local file = call:record(path, { max_seconds = 30, silence_seconds = 3, beep = true })
      if file then call:play(file) os.remove(file) end
    elseif digit == "3" then
      local user = call.from and call.from.uri and call.from.uri.user or "unknown"
      call:say("Your caller I D is " .. user:gsub(".", "%0 "))
    end
  end
  call:hangup()
end)

luasip.on("shutdown", function() ua:close() end)
print("ivr: listening on " .. ua.contact)
io.stdout:flush()
luasip.run()
