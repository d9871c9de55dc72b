--- luasip.ratelimit{...}: a per-key request rate limit in the spirit of
-- Kamailio's pike.
--
-- Each key (usually the source address) has a token bucket; a key that
-- empties it is blocked for `block` seconds, without affecting any other
-- key.
-- @module luasip.ratelimit
-- @usage
--   local pike = luasip.ratelimit { rate = 20, burst = 40, block = 30 }
--   srv:on("*", function(req)
--     if not pike:allow(req.source) then return req:reply(503, "Rate Limited") end
--     ...
--   end)
local core = require "luasip.core"

local M = {}
local Limit = { __name = "luasip.ratelimit" }
Limit.__index = Limit

--- Create a rate limit: what `luasip.ratelimit{...}` calls.
-- @tparam[opt] table opts options:
-- @tparam[opt] number opts.rate tokens per second (default 10)
-- @tparam[opt] number opts.burst bucket size (default 2 * rate)
-- @tparam[opt] number opts.block seconds a key stays blocked once over
-- (default 10)
-- @tparam[opt] number opts.max_keys bound on the keys tracked (default
-- 100000): once that many are tracked, a new key first has the keys idle
-- long enough to have a full bucket again (and not blocked) forgotten
-- @treturn Limit the rate limit
-- @raise "luasip.ratelimit: expected a table of options",
-- "luasip.ratelimit: unknown option 'NAME'", "luasip.ratelimit: rate must
-- be a positive number"
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("luasip.ratelimit: expected a table of options", 3) end
  for k in pairs(opts) do
    if k ~= "rate" and k ~= "burst" and k ~= "block" and k ~= "max_keys" then
      error("luasip.ratelimit: unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  local rate = opts.rate or 10
  if type(rate) ~= "number" or rate <= 0 then error("luasip.ratelimit: rate must be a positive number", 3) end
  return setmetatable({
    rate = rate, burst = opts.burst or 2 * rate, block = opts.block or 10,
    max_keys = opts.max_keys or 100000, keys = {}, n = 0,
  }, Limit)
end

-- Forget keys idle long enough to have a full bucket again.
function Limit:_prune(now)
  local idle = self.burst / self.rate
  for k, b in pairs(self.keys) do
    if now - b.t > idle and now >= b.until_ then self.keys[k] = nil; self.n = self.n - 1 end
  end
end

--- A rate limit, made by `luasip.ratelimit{...}` (`new`).
-- @type Limit

--- true when a request from key may go ahead (and takes a token).
-- A key that finds its bucket empty is blocked for `block` seconds.
-- @param key the key, usually `req.source`; nil is always allowed
-- @treturn boolean
function Limit:allow(key)
  if key == nil then return true end
  local now = core.now()
  local b = self.keys[key]
  if not b then
    if self.n >= self.max_keys then self:_prune(now) end
    b = { tokens = self.burst, t = now, until_ = 0 }
    self.keys[key] = b
    self.n = self.n + 1
  end
  if now < b.until_ then return false end
  b.tokens = math.min(self.burst, b.tokens + (now - b.t) * self.rate)
  b.t = now
  if b.tokens < 1 then
    b.until_ = now + self.block
    return false
  end
  b.tokens = b.tokens - 1
  return true
end

--- Is key blocked right now?
-- @param key the key
-- @treturn boolean
function Limit:blocked(key)
  local b = self.keys[key]
  return b ~= nil and core.now() < b.until_
end

return M
