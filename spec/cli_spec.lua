-- The `luasip` command, run as a real child process.
local H = require "helper"
local luasip = require "luasip"

local function run(args, opts)
  local p = H.process(H.luasip_argv((table.unpack or unpack)(args)), opts)
  local rc = p:wait(15)
  local out, err = p:output(), p:errors()
  p:cleanup()
  return rc, out, err
end

describe("the luasip command", function()
  H.leakcheck()

  it("prints its version and help", function()
    H.run(function()
      local rc, out = run { "--version" }
      assert.are.equal(0, rc)
      assert.matches("^luasip %S+ %(", out)
      rc, out = run { "--help" }
      assert.are.equal(0, rc)
      assert.matches("usage: luasip %[options%] %[script %[args%.%.%.%]%]", out)
      assert.matches("%-%-trace", out)
    end, 30)
  end)

  it("gives a one-line error and status 2 for a bad flag or a missing script", function()
    H.run(function()
      local rc, out, err = run { "--bogus" }
      assert.are.equal(2, rc)
      assert.are.equal("luasip: unknown option '--bogus' (see luasip --help)\n", err)
      rc, out, err = run { "/nonexistent/script.lua" }
      assert.are.equal(2, rc)
      assert.are.equal("luasip: cannot open script '/nonexistent/script.lua'\n", err)
      rc, out, err = run { "--log-level", "loud", "-e", "" }
      assert.are.equal(2, rc)
      assert.matches("^luasip: bad %-%-log%-level 'loud'", err)
      rc, out, err = run { "-e" }
      assert.are.equal(2, rc)
      assert.are.equal("luasip: option '-e' needs an argument (see luasip --help)\n", err)
    end, 30)
  end)

  it("runs scripts with arg and ..., and -e code", function()
    local dir = H.tmpdir()
    local path = dir .. "/s.lua"
    local f = assert(io.open(path, "w"))
    f:write('print(arg[0], arg[1], arg[2], #arg, ...)\nluasip.sleep(0.01)\nprint("slept")\n')
    f:close()
    H.run(function()
      local rc, out = run { path, "a", "b c" }
      assert.are.equal(0, rc)
      assert.are.equal(path .. "\ta\tb c\t2\ta\tb c\nslept\n", out)
      rc, out = run { "-e", "print(1 + 1)", "-e", "print(luasip.version)" }
      assert.are.equal(0, rc)
      assert.are.equal("2\n" .. luasip.version .. "\n", out)
    end, 30)
    os.execute("rm -rf " .. dir)
  end)

  it("exits 1 with the traceback when a script fails", function()
    H.run(function()
      local rc, _, err = run { "-e", "local function f() error('kaput') end f()" }
      assert.are.equal(1, rc)
      assert.matches("^luasip: %(command line 1%):1: kaput\nstack traceback:", err)
      assert.is_nil(err:find("cli.lua", 1, true))
    end, 30)
  end)

  it("keeps the loop running while timers are armed, then exits", function()
    H.run(function()
      local rc, out = run { "-e", "luasip.after(0.05, function() print('timer') end) print('body done')" }
      assert.are.equal(0, rc)
      assert.are.equal("body done\ntimer\n", out)
    end, 30)
  end)

  it("stops cleanly with status 0 on SIGTERM and SIGINT, running shutdown hooks", function()
    local code = [[
      local srv = assert(luasip.server { listen = "127.0.0.1:0" })
      luasip.on("shutdown", function(reason)
        luasip.sleep(0.05) -- hooks may block: un-REGISTER, BYE
        print("hook ran: " .. reason)
        srv:close()
      end)
      print("ready " .. srv.port)
      io.stdout:flush()
      luasip.run()
      print("run returned")
    ]]
    H.run(function()
      for _, sig in ipairs { "TERM", "INT" } do
        local p = H.process(H.luasip_argv("-e", code))
        p:expect("ready %d+")
        p:signal(sig)
        assert.are.equal(0, p:wait(10))
        assert.matches("hook ran: SIG" .. sig .. "\nrun returned\n", p:output())
        p:cleanup()
      end
    end, 30)
  end)

  it("waits for every shutdown hook, even after one ends at once (regression)", function()
    local code = [[
      luasip.on("shutdown", function() print("quick hook") end)
      luasip.on("shutdown", function() luasip.sleep(0.2) print("slow hook") end)
      print("ready") io.stdout:flush()
      luasip.run()
      print("run returned")
    ]]
    H.run(function()
      local p = H.process(H.luasip_argv("-e", code))
      p:expect("ready")
      p:signal("TERM")
      assert.are.equal(0, p:wait(10))
      assert.are.equal("ready\nquick hook\nslow hook\nrun returned\n", p:output())
      assert.is_nil(p:errors():find("still running", 1, true))
      p:cleanup()
    end, 30)
  end)

  it("refuses luasip calls from finalizers that run after it closed (regression)", function()
    -- The object is created before luasip.core, so at lua_close it is
    -- finalized after luasip's context; calling in used to crash.
    local code = [[
      local core
      local function gc() print(pcall(function() core.stop() end)) io.stdout:flush() end
      if newproxy then
        _G.keep = newproxy(true)
        getmetatable(_G.keep).__gc = gc
      else
        _G.keep = setmetatable({}, { __gc = gc })
      end
      core = require "luasip.core"
      print("exiting") io.stdout:flush()
      os.exit(0, true)
    ]]
    H.run(function()
      local p = H.process({ H.runtime, "-e", code }, { env = { LD_PRELOAD = os.getenv("LD_PRELOAD") or "" } })
      assert.are.equal(0, p:wait(10))
      assert.matches("^exiting\nfalse\t[^\n]*luasip: the Lua state is closing\n$", p:output())
      p:cleanup()
    end, 30)
  end)

  it("interrupts a top-level wait on SIGTERM and still exits 0", function()
    H.run(function()
      local p = H.process(H.luasip_argv("-e", "print('waiting') io.stdout:flush() luasip.sleep(60) print('not reached')"))
      p:expect("waiting")
      p:signal("TERM")
      assert.are.equal(0, p:wait(10))
      assert.is_nil(p:output():find("not reached", 1, true))
      p:cleanup()
    end, 30)
  end)

  it("calls the hup hooks on SIGHUP and keeps running", function()
    local code = [[
      luasip.on("hup", function() print("reload requested") io.stdout:flush() end)
      print("ready") io.stdout:flush()
      luasip.run()
    ]]
    H.run(function()
      local p = H.process(H.luasip_argv("-e", code))
      p:expect("ready")
      p:signal("HUP")
      p:expect("reload requested")
      p:signal("TERM")
      assert.are.equal(0, p:wait(10))
      p:cleanup()
    end, 30)
  end)

  it("--trace prints every SIP message with time and addresses", function()
    H.run(function()
      local data = H.tmpdir()
      finally(function() os.execute("rm -rf " .. H.shell_quote(data)) end)
      local p = H.process(H.luasip_argv("--trace", H.root .. "/examples/pbx.lua", "--listen", "127.0.0.1:0",
                                        "--data", data))
      local out = p:expect("listening on udp/127.0.0.1:%d+")
      local port = tonumber(out:match("udp/127.0.0.1:(%d+)"))
      local r = H.parse_response(H.udp_exchange(port, H.request("OPTIONS", port)))
      assert.are.equal(200, r.status)
      p:expect("pbx: OPTIONS from 127.0.0.1:%d+ over udp %-> 200")
      local err = p:expect("send %d+ bytes to udp/%[127.0.0.1%]:%d+ at", 5, "err")
      assert.matches("[%d:.]+ SIP recv %d+ bytes from udp/%[127.0.0.1%]:%d+ at %d%d:%d%d:%d%d%.%d+\nOPTIONS sip:luasip@127.0.0.1:" .. port .. " SIP/2.0\n", err)
      assert.matches("SIP/2.0 200 OK\n", err)
      p:signal("INT")
      assert.are.equal(0, p:wait(10))
      assert.matches("pbx: stopping %(SIGINT%)\npbx: stopped\n", p:output())
      p:cleanup()
    end, 30)
  end)
end)
