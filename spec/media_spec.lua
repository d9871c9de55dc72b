-- The media engine (csrc/media/) through its binding: two RTP sessions on
-- 127.0.0.1 sending to each other, with real sockets and real files.
local luasip = require "luasip"
local core = require "luasip.core"
local H = require "helper"
local audio = require "audio"
local read_wav = audio.read_wav

local function sdp_for(port, codec_pt, codec)
  local opus = codec == "opus"
  return table.concat({
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
    "m=audio " .. port .. " RTP/AVP " .. codec_pt .. " 101",
    "a=rtpmap:" .. codec_pt .. " " .. codec .. (opus and "/48000/2" or "/8000"),
    opus and ("a=fmtp:" .. codec_pt .. " useinbandfec=1") or "a=ptime:20",
    "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=sendrecv", "",
  }, "\r\n")
end

local function pair(codec_pt, codec)
  local got = { a = {}, b = {} }
  local function handler(name)
    return function(_, what, ...) table.insert(got[name], { what, ... }) end
  end
  local a = assert(core.media_session("127.0.0.1", handler("a")))
  local b = assert(core.media_session("127.0.0.1", handler("b")))
  assert(a:start(sdp_for(b:port(), codec_pt, codec)))
  assert(b:start(sdp_for(a:port(), codec_pt, codec)))
  return a, b, got
end

describe("media engine", function()
  for _, c in ipairs { { 0, "PCMU" }, { 8, "PCMA" } } do
    it("carries a tone " .. c[2] .. " from one session into the other's recording", function()
      local path = os.tmpname() .. ".wav"
      H.run(function()
        local a, b, got = pair(c[1], c[2])
        assert.equal(c[2], a:codec())
        assert(b:record(path))
        assert(a:tone { freqs = { 1000 }, duration = 1000 })
        local t0 = luasip.now()
        while #got.a == 0 and luasip.now() - t0 < 3 do luasip.sleep(0.02) end
        assert.same({ { "play_done" } }, got.a)
        luasip.sleep(0.3)
        local seconds = assert(b:stop_record())
        assert.is_true(seconds > 1.2 and seconds < 1.6, "recorded " .. seconds .. " s")
        local st = b:stats()
        assert.is_true(st.packets_received >= 60, "received " .. st.packets_received)
        assert.equal(0, st.malformed)
        assert.is_true(a:stats().packets_sent >= 60)
        a:close()
        b:close()
      end)
      local samples, rate = read_wav(path)
      os.remove(path)
      assert.equal(8000, rate)
      -- the loudest 100 ms window is the tone, 1000 Hz dominates it, and it
      -- lasted about a second (loud 20 ms frames)
      assert(audio.dominant(samples, rate, 1000))
      local loud = audio.loud_frames(samples, rate)
      assert.is_true(loud >= 45 and loud <= 55, loud .. " loud frames (want ~50)")
    end)
  end

  it("SRTP: the right keys carry audio; a wrong key decodes nothing and counts failures", function()
    local suite = "AES_CM_128_HMAC_SHA1_80"
    local ka, kb, wrong = core.srtp_key(suite), core.srtp_key(suite), core.srtp_key(suite)
    local dir = H.tmpdir()
    H.run(function()
      local a, b = pair(0, "PCMU")
      assert(a:srtp(suite, ka, kb))
      assert(b:srtp(suite, kb, ka))
      assert(b:record(dir .. "/good.wav"))
      assert(a:tone { freqs = { 1000 }, duration = 600 })
      luasip.sleep(0.9)
      assert(b:stop_record())
      assert.equal(0, b:stats().srtp_auth_fail)
      -- b now expects another key than the one a sends with
      assert(b:srtp(suite, kb, wrong))
      assert(b:record(dir .. "/bad.wav"))
      assert(a:tone { freqs = { 1000 }, duration = 600 })
      luasip.sleep(0.9)
      assert(b:stop_record())
      local st = b:stats()
      assert.is_true(st.srtp_auth_fail >= 25, "auth failures " .. st.srtp_auth_fail)
      -- keys that are not the suite's 30 bytes of base64 are refused
      assert.same({ nil, "malformed SRTP key", "EINVAL" }, { a:srtp(suite, "short", kb) })
      local ok, err = a:srtp(suite, "c2hvcnQ=", kb)
      assert.is_nil(ok)
      assert.matches("SRTP key of 5 bytes, the suite needs 30", err)
      a:close()
      b:close()
    end)
    local good, rate = read_wav(dir .. "/good.wav")
    assert(audio.dominant(good, rate, 1000))
    local bad = read_wav(dir .. "/bad.wav")
    assert.equal(0, audio.loud_frames(bad, rate), "nothing decoded under the wrong key")
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)

  for _, case in ipairs { { 0, "PCMU" }, { 111, "opus" } } do
  local pt, codec = case[1], case[2]
  it("conceals injected loss and reordering (" .. codec .. "): the recording stays continuous", function()
    local socket = require "socket"
    local dir = H.tmpdir()
    local st
    H.run(function()
      local got = {}
      local a = assert(core.media_session("127.0.0.1", function() end))
      local b = assert(core.media_session("127.0.0.1", function() end))
      -- a relay between a and b drops every 10th packet and swaps neighbours
      local relay = assert(socket.udp())
      assert(relay:setsockname("127.0.0.1", 0))
      relay:settimeout(0)
      local _, rport = relay:getsockname()
      -- b sends into a sink (a must not latch onto b and bypass the relay);
      -- b latches onto the relay, which drops what b sends it
      local sink = assert(socket.udp())
      assert(sink:setsockname("127.0.0.1", 0))
      local _, sport = sink:getsockname()
      assert(a:start(sdp_for(rport, pt, codec)))
      assert(b:start(sdp_for(sport, pt, codec)))
      local running, n, held = true, 0, nil
      local aport, bport = a:port(), b:port()
      luasip.spawn(function()
        while running do
          if luasip.poll(relay, "r", 0.1) then
            local data, _, from = relay:receivefrom()
            while data do
              if from == aport then -- (b's own packets, latched back here, are dropped)
                n = n + 1
                if n % 10 == 5 then
                  got.dropped = (got.dropped or 0) + 1
                elseif n % 10 == 2 then
                  held = data -- sent after the next one: out of order
                else
                  relay:sendto(data, "127.0.0.1", bport)
                  if held then relay:sendto(held, "127.0.0.1", bport) held = nil end
                end
              end
              data, _, from = relay:receivefrom()
            end
          end
        end
      end)
      assert(b:record(dir .. "/lossy.wav"))
      assert(a:tone { freqs = { 1000 }, duration = 1000 })
      luasip.sleep(1.4)
      assert(b:stop_record())
      running = false
      st = b:stats()
      st.dropped = got.dropped
      a:close()
      b:close()
      luasip.sleep(0.15)
      relay:close()
      sink:close()
    end)
    assert.is_true(st.dropped >= 5, "dropped " .. tostring(st.dropped))
    assert.is_true(st.lost >= 5, "lost " .. st.lost)
    if codec == "opus" then
      -- each lone loss is rebuilt from the next packet's in-band FEC
      assert.is_true(st.recovered_ms >= 100, "recovered " .. st.recovered_ms .. " ms")
    else
      assert.is_true(st.concealed_ms >= 100, "concealed " .. st.concealed_ms .. " ms")
      assert.equal(0, st.recovered_ms)
    end
    local samples, rate = read_wav(dir .. "/lossy.wav")
    assert.equal(codec == "opus" and 48000 or 8000, rate)
    -- over the whole second (a rebuilt frame is rougher than the rest)
    assert(audio.dominant_overall(samples, rate, 1000, { 300, 600, 1400, 2000, 3000 }, 100))
    -- every 20 ms of the second stays loud: the gaps were filled
    local loud = audio.loud_frames(samples, rate)
    assert.is_true(loud >= 47 and loud <= 55, loud .. " loud frames (want ~50)")
    os.execute("rm -rf " .. H.shell_quote(dir))
  end)
  end

  it("sends and receives RFC 4733 digits in order, each once", function()
    H.run(function()
      local a, b, got = pair(0, "PCMU")
      assert(a:send_dtmf("0123456789*#", 60))
      local t0 = luasip.now()
      while #got.b < 12 and luasip.now() - t0 < 5 do luasip.sleep(0.02) end
      luasip.sleep(0.2)
      local digits = {}
      for _, e in ipairs(got.b) do
        assert.equal("dtmf", e[1])
        digits[#digits + 1] = e[2]
        assert.is_true(e[3] >= 60 and e[3] <= 100, "duration " .. e[3])
      end
      assert.equal("0123456789*#", table.concat(digits))
      assert.same({ "dtmf_sent" }, got.a[#got.a])
      a:close()
      b:close()
    end)
  end)

  it("maps a remote description: codec by the peer's order, telephone-event, rtcp-mux, crypto", function()
    local m = assert(core.sdp_map(table.concat({
      "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
      "m=video 5000 RTP/AVP 96", "a=rtpmap:96 H264/90000",
      "m=audio 4000 RTP/SAVP 18 8 0 101", "a=rtpmap:101 telephone-event/8000", "a=rtcp-mux",
      "a=ptime:30",
      "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
      "",
    }, "\r\n")))
    assert.equal("10.0.0.1", m.addr)
    assert.equal(4000, m.port)
    assert.equal(8, m.pt)
    assert.equal("PCMA", m.codec)
    assert.equal(101, m.te_pt)
    assert.equal(30, m.ptime)
    assert.is_true(m.rtcp_mux)
    assert.equal(4000, m.rtcp_port)
    assert.is_true(m.secure)
    assert.equal("AES_CM_128_HMAC_SHA1_80", m.crypto[1].suite)
    assert.equal("WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4", m.crypto[1].key)
    local bad, err = core.sdp_map("v=0\r\nthis is not sdp")
    assert.is_nil(bad)
    assert.is_string(err)
    assert.is_nil((core.sdp_map("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n")))
  end)

  it("refuses an m= line that makes sofia's SDP parser allocate forever (regression: fuzz)", function()
    -- spec/fuzz/corpus/sdpmap/regress-sofia-format-loop: sofia loops in
    -- parse_media on a format it cannot tokenise under a non-RTP transport
    -- (and its siblings: the port ending early, blanks after the proto, an
    -- indented m= line, which sofia reads as one)
    for _, m in ipairs { 'm=audio 4000 udp "', "m=audio 4000 RT\156\156\156P/SAVP 0 8 101",
                         "m=audio 4000 udp 0/1", "m=audio 4P00T0R /AVP 0", "m=audio 4000 RT\t\t",
                         "m=audio 4000 udp \t", "\tm=audio 0 0 \224\254 a=i" } do
      local ok, err = core.sdp_map("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n" ..
        m .. "\r\n")
      assert.is_nil(ok)
      assert.matches("format list", err)
    end
  end)

  it("drops malformed packets and counts them, and keeps running", function()
    H.run(function()
      local a, b = pair(0, "PCMU")
      local socket = require "socket"
      local u = socket.udp()
      for _, junk in ipairs { "", "x", string.rep("\255", 12), "\128\0\0\1" .. string.rep("\0", 4),
                              "\159\0" .. string.rep("\0", 30), "\160\0" .. string.rep("\0", 10) .. "\0" } do
        u:sendto(junk, "127.0.0.1", b:port())
      end
      -- well-formed PCMU with timestamps and sequence numbers all over the
      -- place: the jitter buffer must neither overflow nor stall
      local function be32(v) return string.char(math.floor(v / 16777216) % 256,
        math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256) end
      for k, ts in ipairs { 0, 2147483647, 2147483648, 4294967295, 160, 3000000000, 1 } do
        u:sendto("\128\0" .. string.char(k * 37 % 256, k * 91 % 256) .. be32(ts) .. be32(4242) ..
          string.rep("\255", 160), "127.0.0.1", b:port())
      end
      u:close()
      luasip.sleep(0.3)
      local st = b:stats()
      assert.is_true(st.malformed >= 4, "malformed " .. st.malformed)
      assert.is_true(st.packets_received > 0)
      a:close()
      b:close()
    end)
  end)

  it("refuses misuse with one-line errors", function()
    assert.has_error(function() core.media_session(42) end)
    local s = assert(core.media_session("127.0.0.1", function() end))
    assert.has_error(function() s:tone { freqs = {} } end)
    assert.has_error(function() s:tone { freqs = { 5000 } } end) -- above 4 kHz at 8 kHz
    local ok, err = s:record("/nonexistent/dir/x.wav")
    assert.is_nil(ok)
    assert.matches("no media", err)
    s:close()
    assert.has_error(function() s:port() end, "luasip.media_session: used after close()")
    assert.is_nil((core.media_session("not-an-ip", function() end)))
  end)
end)
