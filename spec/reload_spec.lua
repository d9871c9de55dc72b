-- Hot reload (`luasip --reload script.lua`): new requests get the new
-- handlers, calls in progress finish, a broken script leaves the old ones.
local H = require "helper"
local luasip = require "luasip"

local SIPP = H.root .. "/spec/sipp/"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local ROUTER = [[
local luasip = require "luasip"
local srv = assert(luasip.server { listen = "127.0.0.1:%d", transports = { "udp" } })
srv:on("INVITE", function(req)
  print("route %s " .. req.call_id); io.stdout:flush()
  req:proxy("sip:uas@127.0.0.1:%d")
end)
srv:on("OPTIONS", function(req) req:reply(200, "Version %s") end)
luasip.on("shutdown", function() srv:close() end)
print("loaded %s"); io.stdout:flush()
luasip.run()
]]

local function router(port, version, uas_port)
  return string.format(ROUTER, port, version, uas_port, version, version)
end

local function options_reason(port)
  local r = H.parse_response(H.udp_exchange(port, H.request("OPTIONS", port)))
  return r and r.reason
end

describe("hot reload", function()
  H.leakcheck()

  it("swaps handlers on SIGHUP and keeps them when the new script fails", function()
    local dir = H.tmpdir()
    local script = dir .. "/router.lua"
    local port = 19561
    write(script, router(port, "A", 19562))
    local p = H.process(H.luasip_argv("--reload", script))
    finally(function() p:cleanup() end)
    H.run(function()
      p:expect("loaded A", 10)
      assert.are.equal("Version A", options_reason(port))
      write(script, router(port, "B", 19562))
      p:signal("HUP")
      p:expect("loaded B", 10)
      assert.are.equal("Version B", options_reason(port))
      write(script, router(port, "C", 19562) .. "\nthis is not Lua (\n")
      p:signal("HUP")
      p:expect("the old handlers stay", 10, "err")
      assert.are.equal("Version B", options_reason(port))
      write(script, router(port, "D", 19562):gsub("luasip.run%(%)", "error('boom at load')"))
      p:signal("HUP")
      H.poll_until(function() return p:errors():find("boom at load", 1, true) end, 10)
      assert.matches("boom at load.*the old handlers stay", p:errors())
      assert.are.equal("Version B", options_reason(port))
      p:signal("TERM")
      assert.are.equal(0, p:wait(10))
    end, 40)
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)

  it("reloads on a file change while SIPp calls run: no call fails, new calls take the new route", function()
    local dir = H.tmpdir()
    local script = dir .. "/router.lua"
    local port, uas_a, uas_b = 19571, 19572, 19574
    write(script, router(port, "A", uas_a))
    local p = H.process(H.luasip_argv("--reload", script))
    local a = H.process { "sipp", "-sf", SIPP .. "rr_uas.xml", "-i", "127.0.0.1", "-p", tostring(uas_a),
      "-mp", "19580", "-nostdin", "-timeout", "40" }
    local b = H.process { "sipp", "-sf", SIPP .. "rr_uas.xml", "-i", "127.0.0.1", "-p", tostring(uas_b),
      "-mp", "19584", "-nostdin", "-timeout", "40" }
    local uac
    finally(function()
      for _, proc in ipairs { uac, a, b, p } do
        if proc then proc:signal("KILL"); proc:cleanup() end
      end
    end)
    H.run(function()
      p:expect("loaded A", 10)
      uac = H.process { "sipp", "127.0.0.1:" .. port, "-sf", SIPP .. "reload_uac.xml", "-s", "uas",
        "-i", "127.0.0.1", "-p", "19576", "-mp", "19588", "-m", "40", "-r", "8", "-nostdin",
        "-timeout", "30", "-timeout_error", "-trace_err", "-error_file", dir .. "/uac_err.log" }
      H.poll_until(function() return select(2, p:output():gsub("route A", "")) >= 10 end, 10)
      write(script, router(port, "B", uas_b))      -- the watcher notices within a second
      p:expect("loaded B", 10)
      assert.are.equal(0, uac:wait(40))
      local out = p:output()
      local before, after = out:match("^(.-)loaded B(.*)$")
      assert.truthy(before, out)
      local na = select(2, before:gsub("route A", ""))
      local nb = select(2, after:gsub("route B", ""))
      assert.is_true(na >= 10, out)
      assert.is_true(nb >= 5, out)
      assert.is_nil(after:find("route A", 1, true))   -- no new call took the old route
      assert.are.equal(40, select(2, out:gsub("route [AB]", "")))
      assert.matches("new requests use the new handlers", p:errors())
      p:signal("TERM")
      assert.are.equal(0, p:wait(10))
    end, 60)
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)
end)
