-- luasip.voicemail: the index and its crash recovery on a real folder and
-- SQLite file, and its verbs on real calls between luasip UAs on
-- 127.0.0.1 (a greeting recorded by the owner, then heard by a caller).
-- examples/pbx.lua's spec covers deposit, MWI and retrieval end to end.
local H = require "helper"
local audio = require "audio"
local luasip = require "luasip"
local core = require "luasip.core"

local BOXES = { bob = { pin = "2222" }, carol = {} }

local function touch(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text or "RIFF")
  f:close()
end

describe("voicemail", function()
  it("repairs its index on open: leftovers removed, complete files listed, lost files dropped", function()
    local dir = H.tmpdir()
    finally(function() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    H.run(function()
      local vm = assert(luasip.voicemail { dir = dir, mailboxes = BOXES })
      assert.same({}, vm:messages("bob"))
      vm:close()
      assert(core.mkdir(dir .. "/bob"))
      touch(dir .. "/bob/msg-1700000100-aaaa.wav.partX1Y2Z3")  -- killed mid-recording
      touch(dir .. "/bob/msg-1700000200-bbbb.wav")             -- renamed, never indexed
      touch(dir .. "/bob/msg-1700000050-cccc.wav")
      touch(dir .. "/bob/greeting.wav")                         -- not a message
      local logged = H.capture_log(function() vm = assert(luasip.voicemail { dir = dir, mailboxes = BOXES }) end)
      local text = {}
      for _, rec in ipairs(logged) do text[#text + 1] = rec.level .. " " .. rec.message end
      text = table.concat(text, "\n")
      assert.matches("removing [^\n]*msg%-1700000100%-aaaa%.wav%.partX1Y2Z3, left by an interrupted recording", text)
      assert.matches("msg%-1700000200%-bbbb%.wav is complete but was not indexed", text)
      assert.same({ "greeting.wav", "msg-1700000050-cccc.wav", "msg-1700000200-bbbb.wav" }, core.listdir(dir .. "/bob"))
      local list = vm:messages("bob")
      assert.equal(2, #list)
      assert.same({ "1700000050-cccc", "1700000200-bbbb" }, { list[1].id, list[2].id }) -- oldest first
      assert.same({ "new", "new" }, { list[1].folder, list[2].folder })
      assert.equal(dir .. "/bob/greeting.wav", vm:greeting("bob"))
      assert.same({ 2, 0 }, { vm:counts("bob") })
      -- heard: saved; new ones come first
      assert.is_true(vm:mark("bob", "1700000050-cccc", "saved"))
      list = vm:messages("bob")
      assert.same({ "1700000200-bbbb", "1700000050-cccc" }, { list[1].id, list[2].id })
      assert.same({ 1, 1 }, { vm:counts("bob") })
      assert.equal("Messages-Waiting: yes\r\nMessage-Account: sip:bob@localhost\r\nVoice-Message: 1/1 (0/0)\r\n",
                   vm:summary("bob"))
      assert.same({ nil, "no such message" }, { vm:mark("carol", "1700000050-cccc", "new") }) -- not carol's
      -- delete: the file, then the entry
      assert.is_true(vm:delete("bob", "1700000200-bbbb"))
      assert.is_nil(io.open(dir .. "/bob/msg-1700000200-bbbb.wav"))
      assert.same({ 0, 1 }, { vm:counts("bob") })
      vm:close()
      -- a file gone behind the index's back: its entry goes on the next open
      os.remove(dir .. "/bob/msg-1700000050-cccc.wav")
      vm = assert(luasip.voicemail { dir = dir, mailboxes = BOXES })
      assert.same({ 0, 0 }, { vm:counts("bob") })
      assert.matches("Messages%-Waiting: no", vm:summary("bob"))
      assert.is_nil(vm:mailbox("../bob"))
      assert.is_nil(vm:mailbox("dave"))
      vm:close()
    end, 20)
  end)

  it("lists an empty folder as an empty list (regression: UBSan, qsort of NULL)", function()
    local dir = H.tmpdir()
    finally(function() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    assert.same({}, core.listdir(dir))
    assert(core.mkdir(dir .. "/a/b"))
    assert.same({ "a" }, core.listdir(dir))
    local ok, err, code = core.listdir(dir .. "/none")
    assert.same({ nil, "ENOENT" }, { ok, code })
    assert.matches("/none: ", err)
    assert.is_true(core.fsync_dir(dir))
  end)

  it("refuses misuse with one-line errors", function()
    assert.has_error(function() luasip.voicemail { mailboxes = BOXES } end, "luasip.voicemail: dir must be a folder")
    assert.has_error(function() luasip.voicemail { dir = "/tmp/x", mailboxes = BOXES, colour = 1 } end,
      "luasip.voicemail: unknown option 'colour'")
    assert.has_error(function() luasip.voicemail { dir = "/tmp/x", mailboxes = BOXES, presence = {} } end,
      "luasip.voicemail: domain is required with presence")
    local ok, err, code = luasip.voicemail { dir = "/proc/self/no/such", mailboxes = BOXES }
    assert.is_nil(ok)
    assert.matches("^luasip.voicemail: /proc/self/no/such", err)
    assert.truthy(code)
  end)

  it("plays the greeting its owner recorded to the next caller", function()
    local dir = H.tmpdir()
    local heard = H.tmpdir() .. "/greeting-heard.wav"
    finally(function() os.execute("rm -rf " .. H.shell_quote(dir)) end)
    H.run(function()
      local vm = assert(luasip.voicemail { dir = dir, mailboxes = BOXES, silence_seconds = 2 })
      local app = assert(luasip.ua { listen = "127.0.0.1:0" })
      local results = {}
      app:on("call", function(call)
        local what = call.request.uri.user
        if what == "main" then results.retrieve = { vm:retrieve(call, "bob") }
        else results.deposit = { vm:deposit(call, "bob") } end
      end)
      local at = app.contact:match("@([^;>]+)")
      local bob = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:bob@127.0.0.1" })
      -- bob: PIN, 2 (record the greeting), then a 500 Hz tone, then #
      local call = assert(bob:call("sip:main@" .. at, { timeout = 5 }))
      luasip.sleep(0.3)
      assert(call:dtmf("2222#2"))
      assert.truthy(H.poll_until(function()
        for _, n in ipairs(core.listdir(dir .. "/bob") or {}) do if n:find("^greeting%.wav%.part") then return n end end
      end, 30), "the greeting's recording started")
      assert.is_true(call:tone { freqs = { 500 }, duration = 1500 })
      assert(call:dtmf("#"))
      assert.truthy(H.poll_until(function() return vm:greeting("bob") end, 10))
      call:hangup()
      assert.truthy(H.poll_until(function() return results.retrieve end, 10))
      assert.same({ nil, "hangup" }, results.retrieve)
      -- alice hears it, then hangs up before the beep: no message
      local alice = assert(luasip.ua { listen = "127.0.0.1:0", aor = "sip:alice@127.0.0.1" })
      local c2 = assert(alice:call("sip:vm@" .. at, { timeout = 5 }))
      local r = { c2:record(heard, { max_seconds = 1.6, stop_on = false }) }
      assert.equal(heard, r[1])
      c2:hangup()
      assert.truthy(H.poll_until(function() return results.deposit end, 10))
      assert.same({ nil, "hangup" }, results.deposit)
      assert.same({ 0, 0 }, { vm:counts("bob") })
      app:close() bob:close() alice:close() vm:close()
    end, 90)
    local samples, rate = audio.read_wav(heard)
    assert(audio.dominant_overall(samples, rate, 500, { 300, 700, 1000 }))
  end)
end)
