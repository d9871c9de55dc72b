-- luasip.log: levels, formatting, the pluggable sink, sofia's output.
local H = require "helper"
local luasip = require "luasip"
local log = luasip.log

describe("luasip.log", function()
  H.leakcheck()
  local level
  before_each(function() level = log.get_level() end)
  after_each(function() log.set_level(level) end)

  it("filters by level and formats arguments", function()
    log.set_level("warn")
    local records = H.capture_log(function()
      log.info("dropped")
      log.warn("kept %d %s", 42, "x")
      log.error("plain %s without args")
      log.debug("dropped too")
    end)
    assert.are.same({
      { level = "warn", message = "kept 42 x" },
      { level = "error", message = "plain %s without args" },
    }, records)
    assert.is_true(log.enabled("error"))
    assert.is_false(log.enabled("debug"))
  end)

  it("survives a bad format and a failing sink", function()
    local records = H.capture_log(function() log.warn("%d", {}) end)
    assert.matches("bad log format", records[1].message)
    local old = log.set_sink(function() error("sink broke") end)
    log.error("goes to stderr instead") -- must not raise
    log.set_sink(old)
  end)

  it("rejects unknown levels and sinks with one-line errors", function()
    assert.has_error(function() log.set_level("loud") end,
      "luasip.log.set_level: level must be error, warn, info, debug or trace (got loud)")
    assert.has_error(function() log.set_sink(42) end, "luasip.log.set_sink: expected a function")
  end)

  it("carries sofia's own log lines, one per record, at debug level", function()
    log.set_level("debug")
    local a = assert(luasip.server { listen = "127.0.0.1:0" })
    local records = H.capture_log(function()
      assert.is_nil(luasip.server { listen = "127.0.0.1:" .. a.port })
    end)
    a:close()
    local found
    for _, r in ipairs(records) do
      assert.is_nil(r.message:find("\n", 1, true))
      if r.message:match("^sofia/nta: nta: bind%(127%.0%.0%.1:%d+;transport=udp%): Address already in use$") then
        found = r
      end
    end
    assert.is_truthy(found)
    assert.are.equal("debug", found.level)
  end)
end)
