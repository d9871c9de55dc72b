--- Hot reload of a routing script.
--
-- The script runs under `luasip --reload script.lua`.
--
-- On SIGHUP, or when the script file changes, the script runs again in
-- reload mode: luasip.server{} with a listen address already served
-- returns that server, whose :on() calls now fill a staged handler table;
-- luasip.location(url) returns the store already open for url;
-- luasip.run() returns at once and luasip.on("shutdown") is not added
-- twice. If the script runs to its end, every reused server switches to
-- its staged handlers in one step: new requests get the new handlers,
-- while requests, transactions and calls in progress finish with the
-- handlers they started with. If it fails to load or raises, the error is
-- logged and the old handlers stay.
--
-- Mostly internal: the luasip command enables it, and luasip.server,
-- luasip.location, luasip.presence_server, luasip.run and luasip.on
-- consult it. A script may ask whether it runs under reload, or reload
-- itself.
-- @module luasip.reload
local log = require "luasip.log"

local M = {}

local state -- { path, args, servers = {}, locations = {}, presences = {}, staging, staged }

--- Whether hot reload is on.
--
-- It is when the script runs under `luasip --reload`.
-- @treturn boolean true when hot reload is on
function M.enabled() return state ~= nil end

--- Whether the script is being run again by a reload right now.
--
-- While it is, luasip.run() returns at once and luasip.on() adds no hook.
-- @treturn ?boolean true during a reload; false, or nil before the first reload
function M.staging() return state ~= nil and state.staging end

local function server_key(opts)
  local t = opts.transports and table.concat(opts.transports, ",") or "udp,tcp"
  return tostring(opts.listen or "127.0.0.1:5060") .. "|" .. t
end

-- luasip.server's constructor under reload (create makes a new one).
function M.server(opts, create)
  if not state or type(opts) ~= "table" then return create(opts) end
  local key = server_key(opts)
  local srv = state.servers[key]
  if state.staging and srv and srv.agent then
    srv.staged = {}
    state.staged[#state.staged + 1] = srv
    return srv
  end
  local s, err, code = create(opts)
  if s then state.servers[key] = s end
  return s, err, code
end

-- luasip.location's constructor under reload.
function M.location(url, opts, create)
  if not state then return create(url, opts) end
  local key = tostring(url or "memory:")
  local loc = state.locations[key]
  if state.staging and loc and not loc.closed then return loc end
  local l, err, code = create(url, opts)
  if l then state.locations[key] = l end
  return l, err, code
end

-- luasip.presence_server's constructor under reload: the server reused
-- keeps its presence state (subscriptions, publications, rules); the
-- handlers are installed again into the staged table.
function M.presence_server(opts, create)
  if not state or type(opts) ~= "table" then return create(opts) end
  local p = state.presences[opts.server]
  if state.staging and p and not p.closed then
    p:install(opts)
    return p
  end
  local n, err, code = create(opts)
  if n then state.presences[opts.server] = n end
  return n, err, code
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Run the script again; returns true when the new handlers are in place.
--
-- SIGHUP and a change of the script's file call it. A script that fails
-- to load or raises is logged, and the old handlers stay.
-- @tparam[opt="request"] string why the reason, for the log
-- @treturn boolean true when the new handlers are in place; false when hot reload is off or the script failed
function M.reload(why)
  if not state then return false end
  local unpack = table.unpack or unpack
  local chunk, err = loadfile(state.path)
  if not chunk then
    log.error("reload (%s): %s; the old handlers stay", why or "request", err)
    return false
  end
  state.staging, state.staged = true, {}
  local ok, e = xpcall(chunk, debug.traceback, unpack(state.args))
  state.staging = false
  local staged = state.staged
  state.staged = nil
  if not ok then
    for _, srv in ipairs(staged) do srv.staged = nil end
    log.error("reload (%s): %s failed: %s; the old handlers stay", why or "request", state.path, e)
    return false
  end
  for _, srv in ipairs(staged) do
    local h = srv.staged
    srv.staged = nil
    srv:set_handlers(h)
  end
  log.info("reload (%s): %s loaded; new requests use the new handlers", why or "request", state.path)
  return true
end

-- Called by the CLI before the script first runs.
function M.enable(path, args, luasip)
  state = { path = path, args = args, servers = {}, locations = {}, presences = {},
            content = read_all(path) }
  luasip.on("hup", function() M.reload("SIGHUP") end)
  -- Watch the file (by content: no stat in plain Lua) once a second.
  local t = luasip.every(1, function()
    local now = read_all(path)
    if now and now ~= state.content then
      state.content = now
      M.reload("file changed")
    end
  end)
  luasip.on("shutdown", function() t:close() end)
end

return M
