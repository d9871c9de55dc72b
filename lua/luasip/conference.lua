--- Conference rooms: luasip.conference(name) mixes the audio of every call
-- that joins, each caller hearing everyone but themselves (N-1 mixing in
-- csrc/media/conf.c, once per 20 ms tick).
--
-- Rooms are found by name while they have members; an empty room closes
-- and a later join opens it again. All members run the same codec rate.
-- @classmod luasip.conference
-- @usage
--   local room = luasip.conference("sales")
--   room:join(call)          -- until room:leave(call) or the call ends
local core = require "luasip.core"

local M = {}
local rooms = {}

local Room = { __name = "luasip.conference" }
Room.__index = Room

function Room:__tostring()
  return string.format("luasip.conference (%s, %d members)", self.name, self:count())
end

--- Add a call (answered, with media).
-- Returns true, or nil, reason. The call leaves the room when it ends.
-- @tparam luasip.call call the call
-- @treturn[1] boolean true
-- @return[2] nil, "hangup" when the call has ended
-- @return[3] nil, "the call has no media running"
-- @return[4] nil, "this room was closed"
-- @return[5] nil, reason when the mixer cannot take the call
-- @raise "conference:join: expected a call".
function Room:join(call)
  if type(call) ~= "table" or not call.state then
    error("conference:join: expected a call", 2)
  end
  if call.state == "terminated" then return nil, "hangup" end
  local s = call.media_session
  if not s or not s:codec() then return nil, "the call has no media running" end
  if not self.c then
    self.c = core.media_conference()
    rooms[self.name] = self
  end
  if rooms[self.name] ~= self then return nil, "this room was closed" end
  local ok, err = self.c:join(s)
  if not ok then return nil, err end
  if not self.members[call] then
    self.members[call] = call:on("hangup", function() self:leave(call) end)
  end
  return true
end

--- Remove a call from the room (it hears silence again).
-- The room closes when its last member leaves.
-- @tparam luasip.call call the call
-- @treturn boolean true, or false when the call was not in the room
function Room:leave(call)
  local h = self.members[call]
  if not h then return false end
  h.remove()
  self.members[call] = nil
  local s = call.media_session
  if s and self.c then self.c:leave(s) end
  if next(self.members) == nil then self:close() end
  return true
end

--- The calls in the room.
-- @treturn {luasip.call,...} a list of the calls
function Room:list()
  local list = {}
  for c in pairs(self.members) do list[#list + 1] = c end
  return list
end

--- The number of calls in the room.
-- @treturn number the count
function Room:count()
  local n = 0
  for _ in pairs(self.members) do n = n + 1 end
  return n
end

--- Close the room: every member leaves.
function Room:close()
  for c, h in pairs(self.members) do h.remove() self.members[c] = nil end
  if self.c then self.c:close() self.c = nil end
  if rooms[self.name] == self then rooms[self.name] = nil end
end

--- The room called name (made when first used).
-- This is luasip.conference(name) (the module's `conference` function).
-- @function luasip.conference
-- @tparam string name the room's name
-- @treturn luasip.conference the room
-- @raise "luasip.conference: name must be a string" (also for "").
function M.conference(name)
  if type(name) ~= "string" or name == "" then error("luasip.conference: name must be a string", 2) end
  local r = rooms[name]
  if r then return r end
  r = setmetatable({ name = name, members = {} }, Room)
  rooms[name] = r
  return r
end

return M
