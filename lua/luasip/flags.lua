--- luasip.flags(arg, spec): command-line flags for scripts.
--
-- Accepts --name value, --name=value and --flag (booleans; --no-flag turns
-- one off). Unknown flags, missing values and --help print the usage and
-- exit (2, or 0 for --help). Dashes in names match underscores in spec.
-- @module luasip.flags
-- @usage
--   local opt = luasip.flags(arg, {
--     listen = "127.0.0.1:5060",      -- a default value: the flag takes a value
--     db = "memory:",
--     trace = false,                  -- a boolean: --trace turns it on
--   }, "registrar.lua: a registrar with digest auth")
local M = {}

local function usage(spec, about)
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  table.sort(names)
  local lines = { about or "usage:" }
  for _, k in ipairs(names) do
    local v = spec[k]
    local flag = "--" .. k:gsub("_", "-")
    if type(v) == "boolean" then
      lines[#lines + 1] = string.format("  %-20s (default %s)", flag, tostring(v))
    else
      lines[#lines + 1] = string.format("  %-20s (default %s)", flag .. " VALUE", tostring(v))
    end
  end
  return table.concat(lines, "\n")
end

--- Parse argv against spec (this is luasip.flags).
--
-- A flag whose default is a boolean takes no value (--flag sets it,
-- --no-flag clears it); one whose default is a number needs a number;
-- any other takes a string. On an unknown flag, a missing or bad value or
-- an argument that is not a flag, the error and the usage go to stderr
-- and the process exits with status 2; --help (or -h) prints the usage
-- (about, then every flag with its default) to stdout and exits with 0.
-- @tparam ?table argv the arguments, such as the script's `arg` (nil: none)
-- @tparam table spec flag name -> default value; the default's type is the flag's
-- @tparam[opt] string about the usage's first line (default "usage:")
-- @treturn table a copy of spec with the values given in argv
function M.parse(argv, spec, about)
  local out = {}
  for k, v in pairs(spec) do out[k] = v end
  local i = 1
  local function fail(msg)
    io.stderr:write(msg, "\n", usage(spec, about), "\n")
    os.exit(2)
  end
  while argv and argv[i] do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      print(usage(spec, about))
      os.exit(0)
    end
    local name, value = a:match("^%-%-([%w%-_]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-_]+)$") end
    if not name then fail("unexpected argument '" .. a .. "'") end
    local key = name:gsub("%-", "_")
    local negated = false
    if spec[key] == nil and key:match("^no_") and type(spec[key:sub(4)]) == "boolean" then
      key, negated = key:sub(4), true
    end
    local default = spec[key]
    if default == nil then fail("unknown flag --" .. name) end
    if type(default) == "boolean" then
      if value then fail("--" .. name .. " takes no value") end
      out[key] = not negated
    else
      if not value then
        i = i + 1
        value = argv[i]
        if value == nil then fail("--" .. name .. " needs a value") end
      end
      if type(default) == "number" then
        value = tonumber(value) or fail("--" .. name .. " needs a number")
      end
      out[key] = value
    end
    i = i + 1
  end
  return out
end

return M
