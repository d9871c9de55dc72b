-- `luarocks make --local rockspec/luasip-scm-1.rockspec` installs the
-- module, the Lua files and the `luasip` command with no network access:
-- the build runs in a network namespace with no interfaces (unshare -n)
-- and HOME points at a temporary tree.
local H = require "helper"

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end -- Lua 5.1 / LuaJIT
  return ok == true and how == "exit" and code == 0
end

describe("the rockspec", function()
  it("installs offline into a fresh tree and the installed command runs", function()
    local home = H.tmpdir()
    local q = H.shell_quote
    local lua_version = "5.4"
    if H.runtime == "luajit" then
      -- luarocks targets LuaJIT as Lua 5.1 with this user configuration.
      lua_version = "5.1"
      os.execute("mkdir -p " .. q(home .. "/.luarocks"))
      local f = assert(io.open(home .. "/.luarocks/config-5.1.lua", "w"))
      f:write('lua_interpreter = "luajit"\n',
        'variables = { LUA_INCDIR = "/usr/include/luajit-2.1", LUA_BINDIR = "/usr/bin" }\n')
      f:close()
    end
    local offline = sh("unshare -n true 2>/dev/null") and "unshare -n " or ""
    assert.are.equal("unshare -n ", offline, "needs unshare -n (root) to prove the offline build")
    local log = home .. "/luarocks.log"
    local ok = sh(string.format("cd %s && HOME=%s %sluarocks --lua-version=%s make --local " ..
      "rockspec/luasip-scm-1.rockspec >%s 2>&1", q(H.root), q(home), offline, lua_version, q(log)))
    assert(ok, "luarocks make failed:\n" .. (H.read_file(log) or ""))
    local bin = home .. "/.luarocks/bin/luasip"
    local p = io.popen(string.format("HOME=%s %s --version 2>&1; HOME=%s %s -e %s 2>&1", q(home), q(bin),
      q(home), q(bin), q("print(luasip.sleep(0.01), package.searchpath('luasip.core', package.cpath))")))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. q(home))
    local want = H.runtime == "luajit" and "LuaJIT" or "Lua 5.4"
    assert.matches("^luasip %S+ %(" .. want, out)
    assert.matches("\ntrue\t[^\n]*/%.luarocks/lib/lua/" .. lua_version .. "/luasip/core%.so\n", out)
  end)
end)
