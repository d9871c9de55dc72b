--- Conference rooms: luasip.conference(name) mixes the audio of every call
--- that joins, each caller hearing everyone but themselves (N-1 mixing in
--- csrc/media/conf.c, once per 20 ms tick).
--
--   local room = luasip.conference("sales")
--   room:join(call)          -- until room:leave(call) or the call ends
--
-- Rooms are found by name while they have members; an empty room closes
-- and a later join opens it again. All members run the same codec rate.
local core = require "luasip.core"

local M = {}
local rooms = {}

local Room = { __name = "luasip.conference" }
Room.__index = Room

function Room:__tostring()
  return string.format("luasip.conference (%s, %d members)", self.name, self:count())
end

--- Add a call (answered, with media). Returns true, or nil, reason.
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
function Room:list()
  local list = {}
  for c in pairs(self.members) do list[#list + 1] = c end
  return list
end

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
function M.conference(name)
  if type(name) ~= "string" or name == "" then error("luasip.conference: name must be a string", 2) end
  local r = rooms[name]
  if r then return r end
  r = setmetatable({ name = name, members = {} }, Room)
  rooms[name] = r
  return r
end

return M
