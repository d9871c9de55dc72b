-- The API reference in docs/ is what `make docs` makes from the doc
-- comments now (LDoc, tools/docs.sh), and it documents every public
-- function of lua/luasip.
local H = require "helper"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

-- Modules that are machinery of the `luasip` command, not an API.
local INTERNAL = { cli = true, reload = true, repl = true, presence_store = true }

describe("the API reference", function()
  it("in docs/ is what the doc comments make now (run `make docs` after changing them)", function()
    local tmp = H.tmpdir()
    finally(function() os.execute("rm -rf " .. H.shell_quote(tmp)) end)
    local code, out = sh("sh " .. H.shell_quote(H.root .. "/tools/docs.sh") .. " " .. H.shell_quote(tmp .. "/docs"))
    assert.equal(0, code, out)
    code, out = sh("diff -r " .. H.shell_quote(H.root .. "/docs") .. " " .. H.shell_quote(tmp .. "/docs"))
    assert.equal(0, code, "docs/ is out of date; run `make docs`:\n" .. out:sub(1, 2000))
  end)

  it("documents every public function of every module", function()
    local missing = {}
    local _, list = sh("ls " .. H.shell_quote(H.root .. "/lua/luasip"))
    for file in list:gmatch("(%S+)%.lua") do
      if not INTERNAL[file] then
        local src = assert(H.read_file(H.root .. "/lua/luasip/" .. file .. ".lua"))
        local html = table.concat {
          H.read_file(H.root .. "/docs/modules/luasip." .. file .. ".html") or "",
          H.read_file(H.root .. "/docs/classes/luasip." .. file .. ".html") or "",
          file == "init" and (H.read_file(H.root .. "/docs/modules/luasip.html") or "") or "",
        }
        for name in src:gmatch("\n%s*function [%w_]+[.:]([%a][%w_]*)%s*%(") do
          if not name:match("^__") and not html:find(name, 1, true) then
            missing[#missing + 1] = file .. ": " .. name
          end
        end
      end
    end
    assert.same({}, missing)
  end)
end)
