-- The REPL, driven through a pseudo-terminal: `script` (util-linux) runs
-- `luasip -i` on a pty and relays the keystrokes we write into a FIFO.
local H = require "helper"
local luasip = require "luasip"

local function repl()
  local dir = H.tmpdir()
  local fifo = dir .. "/keys"
  assert(os.execute("mkfifo " .. H.shell_quote(fifo)))
  local p = H.process({ "script", "-qfec", "env " .. H.leak_env() .. H.shell_quote(H.bin) .. " -i", "/dev/null" },
    { stdin = fifo, env = { TERM = "xterm", LUASIP_HISTORY = "" } })
  local keys = assert(io.open(fifo, "w"))
  local r = { p = p }
  function r.type(s)
    keys:write(s)
    keys:flush()
  end
  -- The output so far as a terminal shows it: "\r ESC[2K" (the REPL
  -- erasing the line) as a visible <erase>, other escapes and CRs dropped.
  function r.screen()
    return (p:output():gsub("\r\27%[2K", "<erase>"):gsub("\27%[[%d;?]*%a", ""):gsub("[\r\a]", ""))
  end
  function r.expect(pattern, timeout)
    local screen = H.poll_until(function()
      local s = r.screen()
      return s:find(pattern) and s
    end, timeout)
    if screen then return screen end
    error(string.format("expected %q on the REPL's screen; got:\n%s", pattern, r.screen()), 2)
  end
  --- Ctrl-D, then the exit code.
  function r.quit()
    r.type("\4")
    return r.close()
  end
  function r.close()
    keys:close()
    local rc = p:wait(10)
    p:cleanup()
    os.execute("rm -rf " .. H.shell_quote(dir))
    return rc
  end
  r.expect("luasip> ")
  return r
end

-- Occurrences of the prompt in the output so far.
local function prompts(text)
  return select(2, text:gsub("luasip> ", ""))
end

describe("the REPL", function()
  H.leakcheck()

  it("prints expression values and runs statements", function()
    H.run(function()
      local r = repl()
      r.type("1 + 2\n")
      r.expect("<erase>3\n")
      r.type("x = {a = 1}\n")
      r.type("x.a * 10, 'str'\n")
      r.expect('<erase>10\t"str"\n')
      r.type("for i = 1, 2 do\n")
      r.expect("%.%.%.> ")
      r.type("print('line', i) end\n")
      r.expect("line\t1\nline\t2\n")
      r.type("error('oops')\n")
      r.expect("oops\n")
      r.type("local x = nil; x.y = 1\n")
      r.expect("<erase>stdin:1: attempt to index")
      assert.are.equal(0, r.quit()) -- Ctrl-D
    end, 30)
  end)

  it("fires timers while the prompt waits, printing above it", function()
    H.run(function()
      local r = repl()
      r.type("luasip.after(0.3, function() print('tick') end)\n")
      r.expect("luasip.timer %(armed%)")
      local before = prompts(r.screen())
      r.type("12") -- a half-typed line when the timer fires
      -- the half-typed line is erased, tick printed, prompt and "12" redrawn
      r.expect("luasip> 12<erase>tick\nluasip> 12")
      r.type("3\n")
      r.expect("<erase>123\n")
      assert.is_true(prompts(r.screen()) > before)
      assert.are.equal(0, r.quit())
    end, 30)
  end)

  it("runs blocking verbs at the prompt, and Ctrl-C interrupts them", function()
    H.run(function()
      local r = repl()
      r.type("luasip.sleep(0.05)\n")
      r.expect("<erase>true\n")
      local t0 = luasip.now()
      r.type("luasip.sleep(60)\n")
      luasip.sleep(0.3)
      r.type("\3") -- Ctrl-C
      r.expect("interrupted\n")
      assert.is_true(luasip.now() - t0 < 10)
      r.type("print('still here')\n")
      r.expect("still here\n")
      r.type("half a line\3") -- Ctrl-C at the prompt drops the line
      r.type("'fresh'\n")
      r.expect('<erase>"fresh"\n')
      assert.are.equal(0, r.quit())
    end, 30)
  end)

  it("Ctrl-C stops a luasip.run() typed at the prompt (regression)", function()
    H.run(function()
      local r = repl()
      r.type("luasip.run()\n")
      luasip.sleep(0.3)
      r.type("\3")
      r.type("'back'\n")
      r.expect('<erase>"back"\n')
      assert.are.equal(0, r.quit())
    end, 30)
  end)

  it("completes luasip names with Tab", function()
    H.run(function()
      local r = repl()
      r.type("luasip.sle\t")
      r.expect("luasip%.sleep")
      r.type("(0)\n")
      r.expect("<erase>true\n")
      assert.are.equal(0, r.quit())
    end, 30)
  end)
end)

describe("the REPL on a pipe", function()
  H.leakcheck()

  it("runs each line as it arrives, without waiting for more input (regression)", function()
    H.run(function()
      local dir = H.tmpdir()
      local fifo = dir .. "/in"
      assert(os.execute("mkfifo " .. H.shell_quote(fifo)))
      local p = H.process(H.luasip_argv("-i"), { stdin = fifo })
      local w = assert(io.open(fifo, "w"))
      w:write("print('one')\nprint('two')\n")
      w:flush()
      p:expect("one\ntwo\n", 5) -- while the pipe stays open
      w:write("1 + 41\n")
      w:flush()
      p:expect("42\n", 5)
      w:close()
      assert.are.equal(0, p:wait(10))
      p:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end, 30)
  end)

  it("reads stdin from a regular file and from /dev/null (regression: it hung)", function()
    H.run(function()
      local dir = H.tmpdir()
      local f = assert(io.open(dir .. "/in.lua", "w"))
      f:write("x = 20\nprint(x + 1)\nx * 2\n")
      f:close()
      local p = H.process(H.luasip_argv("-i"), { stdin = dir .. "/in.lua" })
      assert.are.equal(0, p:wait(10))
      assert.are.equal("21\n40\n", p:output())
      p:cleanup()
      p = H.process(H.luasip_argv("-i")) -- stdin is /dev/null
      assert.are.equal(0, p:wait(10))
      p:cleanup()
      os.execute("rm -rf " .. H.shell_quote(dir))
    end, 30)
  end)
end)

describe("repl helpers", function()
  local repl_mod = require "luasip.repl"

  it("complete fields, methods and globals", function()
    _G.luasip = luasip -- as in the REPL
    assert.are.same({ "luasip.sleep" }, repl_mod.complete("luasip.sle"))
    local c = repl_mod.complete("luasip.s")
    for _, want in ipairs { "luasip.server", "luasip.sleep", "luasip.spawn", "luasip.step", "luasip.stop" } do
      local found = false
      for _, v in ipairs(c) do found = found or v == want end
      assert(found, want .. " missing from completions")
    end
    _G.__repl_probe = setmetatable({}, { __index = { frobnicate = true } })
    assert.are.same({ "__repl_probe:frobnicate" }, repl_mod.complete("__repl_probe:fro"))
    _G.__repl_probe = nil
    assert.are.same({}, repl_mod.complete("nosuchthing.x"))
    _G.luasip = nil
  end)

  it("render values readably", function()
    assert.are.equal('"a\\nb"', repl_mod.repr("a\nb"))
    assert.are.equal("{a = 1, b = {c = true}}", repl_mod.repr({ a = 1, b = { c = true } }))
    assert.are.equal("42", repl_mod.repr(42))
  end)
end)
