-- SIMPLE bodies (csrc/simple/pidf.c through core): PIDF (RFC 3863) with
-- the data model and RPID activities (RFC 4479, RFC 4480), and
-- isComposing (RFC 3994). Parsing is namespace-aware; malformed, foreign
-- and oversized documents are refused with a reason; built documents
-- parse back to what was given.
local core = require "luasip.core"

local RFC3863 = [[<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    entity="pres:someone@example.com">
  <impp:tuple id="sg89ae">
    <impp:status>
      <impp:basic>open</impp:basic>
    </impp:status>
    <impp:contact priority="0.8">tel:+09012345678</impp:contact>
  </impp:tuple>
</impp:presence>
]]

-- RFC 4480 §5's example, shortened, with an extension element to skip
local RPID = [[<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:r="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:x="urn:example:ext"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status><basic>open</basic><x:mood>fine</x:mood></status>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="ty4658"><status><basic>closed</basic></status></tuple>
  <note>  Away  </note>
  <dm:person id="p1">
    <r:activities><r:appointment/><r:other>lunch</r:other></r:activities>
    <dm:note>Busy</dm:note>
  </dm:person>
</presence>
]]

describe("SIMPLE bodies", function()
  it("parses RFC 3863's example whatever the prefix", function()
    local p = assert(core.pidf_parse(RFC3863))
    assert.equal("pres:someone@example.com", p.entity)
    assert.same({ { id = "sg89ae", basic = "open", contact = "tel:+09012345678", priority = 0.8 } }, p.tuples)
    assert.same({}, p.notes)
    assert.same({}, p.activities)
  end)

  it("parses tuples, notes and RPID activities, skipping unknown elements", function()
    local p = assert(core.pidf_parse(RPID))
    assert.equal(2, #p.tuples)
    assert.same({ id = "bs35r9", basic = "open", contact = "im:someone@mobilecarrier.net", priority = 0.8,
                  note = "Don't Disturb Please!", timestamp = "2005-10-27T16:49:29Z" }, p.tuples[1])
    assert.same({ id = "ty4658", basic = "closed" }, p.tuples[2])
    assert.same({ "Away", "Busy" }, p.notes)
    assert.same({ "appointment", "lunch" }, p.activities)
  end)

  it("refuses malformed, foreign and unsafe documents with a reason", function()
    local cases = {
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='a'>", "malformed XML" },
      { "", "malformed XML" },
      { "<presence entity='x'/>", "not a PIDF document" }, -- no namespace
      { "<p:presence xmlns:p='urn:example:other'/>", "not a PIDF document" },
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple><status/></tuple></presence>", "tuple without an id" },
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='a'><status><basic>maybe</basic></status></tuple></presence>",
        "neither open nor closed" },
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='a'><contact priority='2'>x</contact></tuple></presence>",
        "priority" },
      { "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>]><presence xmlns='urn:ietf:params:xml:ns:pidf'/>",
        "document type declaration" },
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'>" .. string.rep("<x>", 40) .. string.rep("</x>", 40) .. "</presence>",
        "nested deeper" },
      { "<presence xmlns='urn:ietf:params:xml:ns:pidf'><note>" .. string.rep("a", 5000) .. "</note></presence>", "longer than" },
    }
    local many = { "<presence xmlns='urn:ietf:params:xml:ns:pidf'>" }
    for i = 1, 33 do many[#many + 1] = "<tuple id='t" .. i .. "'/>" end
    many[#many + 1] = "</presence>"
    cases[#cases + 1] = { table.concat(many), "more than 32 tuples" }
    for _, c in ipairs(cases) do
      local p, why = core.pidf_parse(c[1])
      assert.is_nil(p, c[2])
      assert.is_truthy(why:find(c[2], 1, true), string.format("%q for %q", why, c[2]))
    end
  end)

  it("leaves an unknown basic status out when lenient (what a watcher receives), and only then", function()
    local doc = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:carol@example.com'>" ..
                "<tuple id='a'><status><basic>?</basic></status><contact>sip:carol@example.com</contact></tuple>" ..
                "<tuple id='b'><status><basic>open</basic></status></tuple></presence>"
    assert.same({ nil, "basic status '?' is neither open nor closed" }, { core.pidf_parse(doc) })
    local p = assert(core.pidf_parse(doc, true))
    assert.same({ { id = "a", contact = "sip:carol@example.com" }, { id = "b", basic = "open" } }, p.tuples)
    -- lenient is about the basic status only
    assert.is_nil((core.pidf_parse("<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple>", true)))
  end)

  it("builds documents that parse back to what was given, escaped", function()
    local t = {
      entity = "sip:bot@example.com",
      tuples = {
        { id = "a1", basic = "open", contact = "sip:bot@127.0.0.1:5060;transport=udp", priority = 0.5,
          note = "<b>&\"quoted\"\ttab", timestamp = "2026-11-21T10:00:00Z" },
        { id = "a2", basic = "closed" },
      },
      notes = { "Lunch & back at 2" },
      activities = { "away", "on-the-phone", "at the <dentist>" },
    }
    local xml = core.pidf_build(t)
    assert.matches('xmlns="urn:ietf:params:xml:ns:pidf"', xml, 1, true)
    assert.is_nil(xml:find("<b>", 1, true))
    assert.matches("<rpid:away/>", xml, 1, true)
    assert.matches("<rpid:other>at the &lt;dentist&gt;</rpid:other>", xml, 1, true)
    local back = assert(core.pidf_parse(xml))
    assert.same(t, back)
    -- an id is made up when none is given
    back = assert(core.pidf_parse(core.pidf_build { entity = "sip:x@y", tuples = { { basic = "open" } } }))
    assert.same({ { id = "t1", basic = "open" } }, back.tuples)
    assert.has_error(function() core.pidf_build { tuples = { { basic = "away" } } } end,
                     'core.pidf_build: basic must be "open" or "closed"')
    assert.has_error(function() core.pidf_build { notes = { 5 } } end, "core.pidf_build: notes[1] must be a string")
  end)

  it("parses and builds isComposing", function()
    local c = assert(core.iscomposing_parse([[<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <state>active</state>
  <contenttype>text/plain</contenttype>
  <refresh>90</refresh>
</isComposing>]]))
    assert.same({ state = "active", content_type = "text/plain", refresh = 90 }, c)
    local t = { state = "idle", last_active = "2026-11-21T10:00:00Z", content_type = "text/plain" }
    assert.same(t, assert(core.iscomposing_parse(core.iscomposing_build(t))))
    local _, why = core.iscomposing_parse("<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'/>")
    assert.matches("without a state", why)
    _, why = core.iscomposing_parse("<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>typing</state></isComposing>")
    assert.matches("neither active nor idle", why)
    assert.has_error(function() core.iscomposing_build { state = "typing" } end,
                     'core.iscomposing_build: state must be "active" or "idle"')
  end)
end)
