-- chatbot.lua — a SIMPLE bot: registers, publishes "open" with a note,
-- answers every MESSAGE (isComposing while it "types", then the reply:
-- `help`, `time`, anything else is echoed), watches a buddy list and tells
-- its owner when a buddy's status changes.
--
--   luasip examples/chatbot.lua --server sip:127.0.0.1:5060 --aor sip:bot@127.0.0.1 \
--        --user bot --password bot-secret --owner sip:alice@127.0.0.1 \
--        --buddies sip:bob@127.0.0.1,sip:carol@127.0.0.1
local luasip = require "luasip"

local opt = luasip.flags(arg, {
  listen = "127.0.0.1:0", server = "sip:127.0.0.1:5060", aor = "sip:bot@127.0.0.1", user = "",
  password = "", owner = "", buddies = "", note = "Ask me the time", typing = 0.5, trace = false,
}, "chatbot.lua [flags]: a chat and presence bot")
if opt.trace then luasip.trace(true) end -- (luasip --trace script.lua works too)

local ua = assert(luasip.ua {
  listen = opt.listen, aor = opt.aor, proxy = opt.server,
  credentials = opt.user ~= "" and { user = opt.user, password = opt.password } or nil,
})
assert(ua:register { registrar = opt.server })
local pub = assert(ua:publish_presence { basic = "open", note = opt.note })

local REPLIES = {
  help = function() return "I answer: help, time; anything else comes back to you." end,
  time = function() return os.date("!It is %H:%M:%S UTC.") end,
}

ua:on("message", function(msg)
  local from = msg.from.uri.str
  local text = (msg.body or ""):gsub("^%s+", ""):gsub("%s+$", "")
  msg:reply(200)                           -- taken; the answer follows
  print(string.format("message from %s: %s", from, text))
  io.stdout:flush()
  ua:composing(from, true)
  luasip.sleep(opt.typing)
  local answer = REPLIES[text:lower()]
  ua:message(from, answer and answer() or ("You said: " .. text))
end)

-- the buddy list: tell the owner about every change of status
local seen = {}
for buddy in opt.buddies:gmatch("[^,%s]+") do
  luasip.spawn(function()
    local sub, why = ua:subscribe(buddy, "presence", function(state)
      local doc = state.presence
      local basic = state.state == "active" and doc and doc.tuples[1] and doc.tuples[1].basic or state.state
      local note = doc and (doc.notes[1] or (doc.tuples[1] and doc.tuples[1].note))
      local now = basic .. (note and (" (" .. note .. ")") or "")
      if seen[buddy] ~= now then
        seen[buddy] = now
        print(string.format("buddy %s is %s", buddy, now))
        io.stdout:flush()
        if opt.owner ~= "" then ua:message(opt.owner, string.format("%s is %s", buddy, now)) end
      end
    end)
    if not sub then print(string.format("cannot watch %s: %s", buddy, tostring(why))) end
  end)
end

luasip.on("shutdown", function() pub:remove(2); ua:close() end)
print(string.format("chatbot: %s registered at %s, listening on %s", opt.aor, opt.server, ua.contact))
io.stdout:flush()
luasip.run()
