-- luasip.presence_store: the earlier name of luasip.store (kept for scripts
-- that use it).
return require "luasip.store"
