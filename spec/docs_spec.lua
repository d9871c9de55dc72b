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

  it("README's tour of the examples lists each one with its length", function()
    local readme = assert(H.read_file(H.root .. "/README.md"))
    local _, list = sh("ls " .. H.shell_quote(H.root .. "/examples"))
    local n = 0
    for file in list:gmatch("(%S+%.lua)") do
      n = n + 1
      local lines = select(2, assert(H.read_file(H.root .. "/examples/" .. file)):gsub("\n", ""))
      local listed = readme:match("\n| `examples/" .. file:gsub("%p", "%%%0") .. "` | (%d+) |")
      assert.equal(tostring(lines), listed, "README's line count for examples/" .. file)
    end
    assert.truthy(n >= 10)
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
        if file == "ivr" then -- its verbs are methods of the call
          html = html .. (H.read_file(H.root .. "/docs/classes/luasip.call.html") or "")
        end
        -- functions on the module, its classes and objects; not on storage
        -- backends (Memory, Sqlite) or local tables, nor ones a comment
        -- marks @local
        for before, owner, name in src:gmatch("([^\n]*)\n%s*function ([%w_]+)[.:]([%a][%w_]*)%s*%(") do
          if not name:match("^__") and owner ~= "Memory" and owner ~= "Sqlite" and owner:match("^[%u]")
              or owner == "M" then
            if not before:find("@local", 1, true) and not html:find(name, 1, true) then
              missing[#missing + 1] = file .. ": " .. name
            end
          end
        end
      end
    end
    assert.same({}, missing)
  end)
end)
