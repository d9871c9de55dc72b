--- Voicemail: mailboxes with greetings, messages left after
-- the beep, retrieval by phone, and message-waiting indication (MWI,
-- RFC 3842) through a luasip.presence_server.
--
--   local vm = assert(luasip.voicemail {
--     dir = "/var/lib/pbx/voicemail", domain = "example.com",
--     mailboxes = { alice = { pin = "1234" }, bob = { pin = "4321" } },
--     presence = pres,                  -- MWI to phones that subscribe
--   })
--   ua:on("call", function(call) vm:deposit(call, "alice") end)   -- leave a message
--   ua:on("call", function(call) vm:retrieve(call, "alice") end)  -- listen to them
--
-- Durability: a message is recorded to a temporary file in its mailbox's
-- folder, fsync'ed and renamed (luasip's recorder), and only then entered
-- in the index (a luasip.store, SQLite by default, durable before the
-- verb goes on); it is listed only from the index, so never before it is
-- complete. On open, leftovers of a process killed mid-recording
-- (*.part* files) are removed, a complete file the index missed (killed
-- between the rename and the index write) is entered as a new message,
-- and an index entry whose file is gone is dropped. Deleting removes the
-- file first, then the entry.
--
-- Retrieval (vm:retrieve, what *97 dials in examples/pbx.lua): the PIN,
-- then the counts and a menu: 1 listen, 2 record your greeting, # goodbye.
-- While listening (new messages first, oldest first, then saved ones):
-- 5 repeat, 6 next, 7 delete, 9 save, # back; a message played through is
-- no longer new. Every change reaches the mailbox's MWI watchers.
--
-- Options:
--   dir              folder of the audio (one folder per mailbox; required)
--   store            a luasip.store or its URL (default "sqlite:<dir>/index.db")
--   mailboxes        { [box] = { pin =, name = } }, or fn(box) -> that or nil
--   domain           of the message accounts: sip:<box>@<domain> (required
--                    with presence)
--   presence         a luasip.presence_server: serves the message-summary
--                    package (only a mailbox's own user may subscribe)
--   max_seconds      the longest message (default 120)
--   silence_seconds  a message ends after this much silence (default 5)
--   min_seconds      shorter messages are dropped (default 1)
--   voice            espeak-ng voice of the spoken prompts (default "en")
--   format           "wav" (default) or "ogg" (Ogg Opus)
-- A mailbox's greeting is its owner's recording (retrieval menu 2), else a
-- spoken default naming the mailbox.
--
-- Verbs that change the index (deposit, mark, delete) wait until it is
-- durable: call them in a task (a call handler is one).
-- @classmod luasip.voicemail
local core = require "luasip.core"
local log = require "luasip.log"
local store_mod = require "luasip.store"

local M = {}

local VM = { __name = "luasip.voicemail" }
VM.__index = VM

local SUMMARY = "application/simple-message-summary"
local KNOWN = {
  dir = true, store = true, mailboxes = true, domain = true, presence = true, max_seconds = true,
  silence_seconds = true, min_seconds = true, voice = true, format = true,
}

local function exists(path)
  local f = path and io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The mailbox of an account AOR: its user part.
local function box_of(aor) return aor:match("^sips?:([^@]+)@") end

local function valid_box(box)
  return type(box) == "string" and #box <= 64 and box:match("^[%w][%w%._%-+]*$") ~= nil
end

--- Open a voicemail system (`luasip.voicemail{...}` calls this).
-- @tparam table opts the options above
-- @tparam string opts.dir folder of the audio
-- @tparam table|function opts.mailboxes `{ [box] = { pin =, name = } }` or fn(box)
-- @tparam[opt] string|table opts.store a luasip.store or its URL
-- @tparam[opt] string opts.domain of the message accounts
-- @tparam[opt] luasip.presence_server opts.presence serves MWI
-- @tparam[opt=120] number opts.max_seconds
-- @tparam[opt=5] number opts.silence_seconds
-- @tparam[opt=1] number opts.min_seconds
-- @tparam[opt="en"] string opts.voice
-- @tparam[opt="wav"] string opts.format "wav" or "ogg"
-- @treturn luasip.voicemail the voicemail system, its index repaired
-- @return nil, message, code when the folder or the index cannot be opened
-- @raise "luasip.voicemail: ..." for a bad or unknown option
function M.new(opts)
  if type(opts) ~= "table" then error("luasip.voicemail: expected a table of options", 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error("luasip.voicemail: unknown option '" .. tostring(k) .. "'", 3) end
  end
  if type(opts.dir) ~= "string" or opts.dir == "" then error("luasip.voicemail: dir must be a folder", 3) end
  local boxes = opts.mailboxes
  if type(boxes) ~= "table" and type(boxes) ~= "function" then
    error("luasip.voicemail: mailboxes must be a table or a function", 3)
  end
  if opts.presence and type(opts.domain) ~= "string" then
    error("luasip.voicemail: domain is required with presence", 3)
  end
  local format = opts.format or "wav"
  if format ~= "wav" and format ~= "ogg" then error('luasip.voicemail: format must be "wav" or "ogg"', 3) end
  local ok, err, code = core.mkdir(opts.dir)
  if not ok then return nil, "luasip.voicemail: " .. err, code end
  local store = opts.store
  if store == nil or type(store) == "string" then
    store, err, code = store_mod.open(store or ("sqlite:" .. opts.dir .. "/index.db"))
    if not store then return nil, err, code end
  end
  local self = setmetatable({
    dir = opts.dir, store = store, own_store = opts.store == nil or type(opts.store) == "string",
    lookup = type(boxes) == "function" and boxes or function(box) return boxes[box] end,
    domain = opts.domain, presence = opts.presence,
    max_seconds = opts.max_seconds or 120, silence_seconds = opts.silence_seconds or 5,
    min_seconds = opts.min_seconds or 1, voice = opts.voice, ext = format,
  }, VM)
  self:_recover()
  if self.presence then
    self.presence:package("message-summary", {
      content_type = SUMMARY,
      document = function(aor) return self:summary(box_of(aor) or "") end,
      policy = function(aor, watcher)
        local box = box_of(aor)
        if not box or not self:mailbox(box) then return nil end
        return box_of(watcher) == box and "allow" or "deny"
      end,
    })
  end
  return self
end

function VM:__tostring() return string.format("luasip.voicemail (%s)", self.dir) end

--- The mailbox's settings.
-- @tparam string box the mailbox (a user name)
-- @treturn table|nil `{ pin =, name = }`, or nil when there is no such mailbox
function VM:mailbox(box)
  if not valid_box(box) then return nil end
  return self.lookup(box)
end

-- @local
function VM:_folder(box) return self.dir .. "/" .. box end
function VM:_path(m) return self:_folder(m.box) .. "/" .. m.file end

-- -------------------------------------------------------------------------
-- The index

--- The mailbox's messages, new ones first, each group oldest first.
-- @tparam string box the mailbox
-- @tparam[opt] string folder "new" or "saved": only that folder's
-- @treturn {table,...} `{ id =, box =, from =, time =, seconds =, folder =, path = }` each
function VM:messages(box, folder)
  local out = {}
  for id, m in self.store:each("msg", "box", box) do
    if not folder or m.folder == folder then
      out[#out + 1] = { id = id, box = m.box, from = m.from, time = m.time, seconds = m.seconds,
                        folder = m.folder, path = self:_path(m) }
    end
  end
  table.sort(out, function(a, b)
    if a.folder ~= b.folder then return a.folder == "new" end
    if a.time ~= b.time then return a.time < b.time end
    return a.id < b.id
  end)
  return out
end

--- The counts of new and saved messages.
-- @tparam string box the mailbox
-- @treturn integer new messages
-- @treturn integer saved (heard) messages
function VM:counts(box)
  local new, saved = 0, 0
  for _, m in self.store:each("msg", "box", box) do
    if m.folder == "new" then new = new + 1 else saved = saved + 1 end
  end
  return new, saved
end

--- The account of a mailbox (its Message-Account).
-- @tparam string box the mailbox
-- @treturn string `sip:<box>@<domain>`
function VM:account(box) return "sip:" .. box .. "@" .. (self.domain or "localhost") end

--- The mailbox's message-summary body (RFC 3842), as MWI NOTIFYs carry it.
-- @tparam string box the mailbox
-- @treturn string Messages-Waiting, Message-Account and Voice-Message lines
function VM:summary(box)
  local new, saved = self:counts(box)
  return string.format("Messages-Waiting: %s\r\nMessage-Account: %s\r\nVoice-Message: %d/%d (0/0)\r\n",
                       new > 0 and "yes" or "no", self:account(box), new, saved)
end

function VM:_changed(box)
  if self.presence then self.presence:changed(self:account(box), "message-summary") end
end

-- The record of message id in box, or nil.
function VM:_record(box, id)
  local m = type(id) == "string" and self.store:get("msg", id)
  if m and m.box == box then return m end
end


--- Mark a message "saved" (heard) or "new", durably; MWI watchers are told.
-- @tparam string box the mailbox
-- @tparam string id the message's id
-- @tparam string folder "saved" or "new"
-- @treturn boolean true
-- @return nil, reason ("no such message", a store error)
-- @raise 'voicemail:mark: folder must be "new" or "saved"' 
function VM:mark(box, id, folder)
  if folder ~= "new" and folder ~= "saved" then error('voicemail:mark: folder must be "new" or "saved"', 2) end
  local m = self:_record(box, id)
  if not m then return nil, "no such message" end
  if m.folder == folder then return true end
  local ok, err = self.store:put("msg", id, store_mod.changed(m, { folder = folder }))
  if not ok then return nil, err end
  self:_changed(box)
  return true
end

--- Delete a message: its audio, then its entry; MWI watchers are told.
-- @tparam string box the mailbox
-- @tparam string id the message's id
-- @treturn boolean true
-- @return nil, reason ("no such message", a file or store error)
function VM:delete(box, id)
  local m = self:_record(box, id)
  if not m then return nil, "no such message" end
  local removed, rerr = os.remove(self:_path(m))
  if not removed and exists(self:_path(m)) then return nil, rerr end
  core.fsync_dir(self:_folder(box))
  local ok, err = self.store:delete("msg", id)
  if not ok then return nil, err end
  self:_changed(box)
  return true
end

-- Bring the index and the folders together after a crash (see the top).
function VM:_recover()
  local known = {}
  local drop = {}
  for id, m in self.store:each("msg") do
    if exists(self:_path(m)) then known[m.box .. "/" .. m.file] = true
    else drop[#drop + 1] = { "msg", id, false } end
  end
  local adopt = {}
  for _, box in ipairs(core.listdir(self.dir) or {}) do
    if valid_box(box) then
      for _, name in ipairs(core.listdir(self:_folder(box)) or {}) do
        local path = self:_folder(box) .. "/" .. name
        if name:find("%.part") then
          log.info("voicemail: removing %s, left by an interrupted recording", path)
          os.remove(path)
        elseif name:match("^msg%-") and not known[box .. "/" .. name] then
          local id, t = name:match("^msg%-((%d+)%-[%w]+)%.%w+$")
          if id then
            log.warn("voicemail: %s is complete but was not indexed; listing it as new", path)
            adopt[#adopt + 1] = { "msg", id, { box = box, file = name, from = "unknown", time = tonumber(t),
                                               seconds = 0, folder = "new" } }
          end
        end
      end
    end
  end
  for _, op in ipairs(adopt) do drop[#drop + 1] = op end
  if #drop > 0 then
    local ok, err = self.store:apply(drop)
    if not ok then log.warn("voicemail: repairing the index: %s", tostring(err)) end
  end
end

-- -------------------------------------------------------------------------
-- On a call

-- Speak a prompt; the prompt's digits stay buffered. Returns play's results.
function VM:_say(call, text, stop)
  return call:say(text, { voice = self.voice, stop_on_dtmf = stop or false })
end

local function spell(box)
  if box:match("^%d+$") then return (box:gsub(".", "%0 ")) end
  return box
end

local function plural(n, what) return string.format("%d %s%s", n, what, n == 1 and "" or "s") end

local function answered(call)
  if call.state == "terminated" then return nil, "hangup" end
  if call.answered then return true end
  return call:answer()
end

-- The mailbox's settings once call is answered (an unknown mailbox gets
-- 404 if it is not yet), or nil, reason.
function VM:_answer(call, box)
  local mb = self:mailbox(box)
  if not mb then
    if not call.answered and call.state ~= "terminated" then call:reject(404, "No Such Mailbox") end
    return nil, "no such mailbox"
  end
  local ok, why = answered(call)
  if not ok then return nil, why end
  return mb
end

--- Take a message for box on call (answered here if it is not yet).
-- The greeting (# skips it), a beep, then what the caller says until
-- silence, # or hangup; then the message is indexed and MWI watchers told.
-- An unknown mailbox gets 404 when the call is not answered yet.
-- @tparam luasip.call call an incoming call
-- @tparam string box the mailbox
-- @treturn table the message (`{ id =, box =, from =, time =, seconds =, folder = "new", path = }`), once it is durable and listed
-- @return nil, reason ("hangup" before the beep, "too short", "no such mailbox", a store or file error)
function VM:deposit(call, box)
  local mb, err = self:_answer(call, box)
  if not mb then return nil, err end
  local ok, why
  local greeting = self:greeting(box)
  if greeting then
    ok, why = call:play(greeting, { stop_on_dtmf = "#" })
  else
    ok, why = self:_say(call, string.format("%s is not available. Please leave a message after the tone. "
      .. "Press pound when you are done.", mb.name or ("Extension " .. spell(box))), "#")
  end
  if not ok then return nil, why end
  call:take_digits() -- the # that skipped the greeting
  local folder = self:_folder(box)
  local mk, merr = core.mkdir(folder)
  if not mk then return nil, merr end
  local t = os.time()
  local id = string.format("%d-%s", t, core.random_token(8))
  local file = "msg-" .. id .. "." .. self.ext
  local path, seconds, how, kept_seconds = call:record(folder .. "/" .. file, {
    max_seconds = self.max_seconds, silence_seconds = self.silence_seconds, stop_on = "#", beep = true,
  })
  if not path then
    -- nil, "hangup", path, seconds: the caller hung up, the recording is kept
    if seconds ~= "hangup" then return nil, seconds end
    path, seconds, how = how, kept_seconds, "hangup"
    if not exists(path) then return nil, "hangup" end -- hung up during the beep
  end
  if seconds and seconds < self.min_seconds then
    os.remove(path)
    return nil, "too short"
  end
  local from = call.remote_uri or "unknown"
  local rec = { box = box, file = file, from = from, time = t, seconds = seconds or 0, folder = "new" }
  local put, perr = self.store:put("msg", id, rec)
  if not put then
    -- the audio is safe: the next open lists it
    log.warn("voicemail: indexing a message for %s: %s", box, tostring(perr))
    return nil, perr
  end
  log.info("voicemail: %s left %s a message of %.1f s (%s)", from, box, seconds or 0, how)
  self:_changed(box)
  if call.state ~= "terminated" then
    self:_say(call, "Your message has been saved. Goodbye.")
    call:hangup()
  end
  return { id = id, box = box, from = from, time = t, seconds = seconds or 0, folder = "new", path = path }
end

--- The mailbox's own greeting.
-- @tparam string box the mailbox
-- @treturn string|nil its path, or nil (callers hear the spoken default)
function VM:greeting(box)
  for _, ext in ipairs { "wav", "ogg" } do
    local path = self:_folder(box) .. "/greeting." .. ext
    if exists(path) then return path end
  end
end

--- Record the mailbox's greeting on call (after a beep, until # or silence).
-- The old one is replaced once the new one is complete.
-- @tparam luasip.call call the owner's call
-- @tparam string box the mailbox
-- @treturn string the greeting's path
-- @treturn number its length in seconds
-- @return nil, reason ("hangup", a file error)
function VM:record_greeting(call, box)
  local ok, why = answered(call)
  if not ok then return nil, why end
  local mk, merr = core.mkdir(self:_folder(box))
  if not mk then return nil, merr end
  ok, why = self:_say(call, "Record your greeting after the tone. Press pound when you are done.", "#")
  if not ok then return nil, why end
  call:take_digits()
  local path, seconds = call:record(self:_folder(box) .. "/greeting." .. self.ext,
    { max_seconds = 60, silence_seconds = self.silence_seconds, stop_on = "#", beep = true })
  if not path then return nil, seconds end
  if self.ext ~= "wav" then os.remove(self:_folder(box) .. "/greeting.wav") end
  return path, seconds
end

-- Collect one digit of `valid` after prompt; nil, reason when none came.
function VM:_menu(call, prompt, valid)
  return call:collect { prompt = { say = prompt, voice = self.voice }, max = 1, terminators = "",
                        valid = valid, timeout = 6, retries = 2, invalid_prompt = "error" }
end

-- Play the messages of box, with the per-message options. Returns nil,
-- "hangup" when the call ended.
function VM:_listen(call, box)
  local list = self:messages(box)
  if #list == 0 then return self:_say(call, "You have no messages.") end
  local i = 1
  while i <= #list do
    local m = list[i]
    local played, why = self:_say(call, string.format("%s message %d.", m.folder == "new" and "New" or "Saved", i),
                                  "5679#")
    if played == true then played, why = call:play(m.path, { stop_on_dtmf = "5679#" }) end
    if not played then return nil, why end
    if m.folder == "new" then
      local ok, err = self:mark(box, m.id, "saved") -- heard
      if not ok then log.warn("voicemail: marking a message heard: %s", tostring(err)) end
      m.folder = "saved"
    end
    local d, dwhy = self:_menu(call, "Press 5 to repeat, 6 for the next message, 7 to delete, 9 to save, "
      .. "or pound for the main menu.", "[5679#]")
    if not d and dwhy == "hangup" then return nil, "hangup" end
    if d == "7" then
      local ok, err = self:delete(box, m.id)
      if ok then self:_say(call, "Message deleted.") else log.warn("voicemail: delete: %s", tostring(err)) end
      i = i + 1
    elseif d == "9" then
      self:_say(call, "Message saved.")
      i = i + 1
    elseif d == "#" then
      return true
    elseif d ~= "5" then -- 6, or nothing pressed
      i = i + 1
    end
  end
  return self:_say(call, "No more messages.")
end

--- Let the owner of box listen on call (answered here if it is not yet).
-- The PIN (three tries), then the menu described at the top.
-- @tparam luasip.call call the owner's call
-- @tparam string box the mailbox
-- @treturn boolean true when the caller said goodbye (the call is hung up)
-- @return nil, reason ("hangup", "bad PIN", "no such mailbox")
function VM:retrieve(call, box)
  local mb, err = self:_answer(call, box)
  if not mb then return nil, err end
  if mb.pin then
    local good = false
    for _ = 1, 3 do
      local pin, pwhy = call:collect { prompt = { say = "Please enter your PIN, then press pound.", voice = self.voice },
                                       max = 16, timeout = 8, retries = 0, flush = true }
      if not pin and pwhy == "hangup" then return nil, "hangup" end
      if pin == tostring(mb.pin) then good = true break end
      if self:_say(call, "That PIN is not right.") ~= true then return nil, "hangup" end
    end
    if not good then
      self:_say(call, "Goodbye.")
      call:hangup()
      return nil, "bad PIN"
    end
  end
  while call.state ~= "terminated" do
    local new, saved = self:counts(box)
    local said = self:_say(call, string.format("You have %s and %s.", plural(new, "new message"),
                                               plural(saved, "saved message")), "12#")
    if not said then return nil, "hangup" end
    local d, dwhy = self:_menu(call, "Press 1 to listen to your messages, 2 to record your greeting, "
      .. "or pound to hang up.", "[12#]")
    if not d then
      if dwhy == "hangup" then return nil, "hangup" end
      break
    end
    if d == "#" then break end
    local r, rwhy
    if d == "1" then r, rwhy = self:_listen(call, box) else r, rwhy = self:record_greeting(call, box) end
    if not r and rwhy == "hangup" then return nil, "hangup" end
  end
  self:_say(call, "Goodbye.")
  call:hangup()
  return true
end

--- Close the index (when opened here). Idempotent.
function VM:close()
  if self.closed then return end
  self.closed = true
  if self.own_store then self.store:close() end
end

return M
