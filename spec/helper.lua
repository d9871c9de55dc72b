--- Spec helper: run the loop under a guard timer, count live C objects,
--- tasks and file descriptors so a leaking test fails, drive child luasip
--- processes, and talk raw SIP over real sockets on 127.0.0.1.
local luasip = require "luasip"
local core = require "luasip.core"
local task = require "luasip.task"
local socket = require "socket"

local H = {}

-- Sofia opens /dev/urandom once, on the first agent: open it now so the
-- fd counts below see only what a test leaks.
assert(luasip.server { listen = "127.0.0.1:0" }):close()

H.bin = os.getenv("LUASIP_BIN")
H.runtime = os.getenv("LUASIP_RUNTIME") or (jit and "luajit" or "lua5.4")
H.build = os.getenv("LUASIP_BUILD") or "build"
H.root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helper%.lua$")) or "."

--- Run fn() in a task and drive the loop until it returns. Fails with the
--- task's traceback if it errors, or if it is still running after `guard`
--- seconds (default 10).
function H.run(fn, guard)
  guard = guard or 10
  local done, ok, err = false, nil, nil
  local t = task.spawn(function()
    ok, err = xpcall(fn, function(e)
      if e == task.CANCELLED then return e end
      return debug.traceback(type(e) == "string" and e or tostring(e), 2)
    end)
    done = true
  end)
  local deadline = core.now() + guard
  while not done do
    local left = deadline - core.now()
    if left <= 0 then
      local where = debug.traceback(t.co, "task stuck here")
      t:cancel()
      error(string.format("guard timer: the test did not finish within %g s\n%s", guard, where), 2)
    end
    core.step(math.min(100, math.ceil(left * 1000)))
  end
  if not ok then error(err, 0) end
end

--- Poll fn() every 20 ms (a blocking verb: the loop runs meanwhile) until
--- it returns a truthy value, which is returned; nil after `timeout` s.
function H.poll_until(fn, timeout)
  local deadline = core.now() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    luasip.sleep(0.02)
  until core.now() > deadline
  return nil
end

--- Run the loop for `seconds` (at top level).
function H.spin(seconds)
  local deadline = core.now() + seconds
  while core.now() < deadline do
    core.step(math.max(1, math.ceil((deadline - core.now()) * 1000)))
  end
end

--- Live counts after a full collection: C timers, watches, SIP agents,
--- server requests and proxy branches, tasks and open file descriptors.
function H.counts()
  collectgarbage("collect")
  collectgarbage("collect")
  return luasip.stats()
end

--- The UAs a spec file opens, each closed after its test whatever
--- happened: `local uas = H.ua_tracker()`, `uas.new(opts)` -> a UA (raises
--- when it cannot open), and `uas.close_all()` in after_each.
function H.ua_tracker()
  local t = { list = {} }
  function t.new(opts)
    local ua = assert(luasip.ua(opts))
    t.list[#t.list + 1] = ua
    return ua
  end
  function t.close_all()
    for _, ua in ipairs(t.list) do ua:close() end
    t.list = {}
  end
  return t
end

--- What a UA spec checks is back where it was after a test: SIP handles,
--- handles, UAs (open and closing) and fds; with `tasks`, also tasks and
--- timers. After a full collection.
function H.ua_counts(tasks)
  collectgarbage() collectgarbage()
  local c = core.counts()
  local t = { sip_handles = c.sip_handles, handles = c.handles, uas = c.uas, closing = c.closing_uas, fds = c.fds }
  if tasks then
    local s = luasip.stats()
    t.tasks, t.timers = s.tasks, s.timers
  end
  return t
end

--- Inside a describe(): fail any test that leaves more live objects than
--- it found.
function H.leakcheck()
  local before
  local busted = require "busted"
  busted.before_each(function() before = H.counts() end)
  busted.after_each(function()
    local after = H.counts()
    for _, k in ipairs { "timers", "watches", "agents", "stores", "requests", "tasks", "fds" } do
      assert(after[k] <= before[k], string.format("leaked %s: %d before, %d after",
        k, before[k], after[k]))
    end
  end)
end

--- Capture luasip.log records while fn runs; returns the list of
--- {level=, message=}.
function H.capture_log(fn)
  local records = {}
  local old = luasip.log.set_sink(function(level, message)
    records[#records + 1] = { level = level, message = message }
  end)
  local ok, err = pcall(fn)
  luasip.log.set_sink(old)
  if not ok then error(err, 0) end
  return records
end

function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/luasip-spec.XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.shell_quote = shell_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
H.read_file = read_file

--- Start a child process (argv list) in the background, its output in
--- files. Returns an object with pid, :wait(timeout) -> exit code,
--- :signal(name), :output(), :errors(), :cleanup().
function H.process(argv, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local cmd = {}
  for i, a in ipairs(argv) do cmd[i] = shell_quote(a) end
  local env = ""
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. shell_quote(v) .. " " end
  if argv[1] == H.bin then env = H.leak_env() .. env end
  local stdin = opts.stdin and shell_quote(opts.stdin) or "/dev/null"
  local script = string.format(
    "%s%s <%s >%s/out 2>%s/err & pid=$!; echo $pid > %s/pid; wait $pid; echo $? > %s/rc",
    env ~= "" and ("env " .. env) or "", table.concat(cmd, " "), stdin, dir, dir, dir, dir)
  os.execute("sh -c " .. shell_quote(script) .. " >/dev/null 2>&1 &")
  local proc = { dir = dir }
  local deadline = core.now() + 5
  while not proc.pid and core.now() < deadline do
    proc.pid = tonumber(read_file(dir .. "/pid") or "")
    if not proc.pid then socket.sleep(0.005) end
  end
  assert(proc.pid, "child process did not start: " .. table.concat(argv, " "))
  function proc:output() return read_file(dir .. "/out") or "" end
  function proc:errors() return read_file(dir .. "/err") or "" end
  function proc:signal(name) os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null") end
  --- Wait (a blocking verb: the loop runs meanwhile) for the exit code.
  function proc:wait(timeout)
    self.rc = H.poll_until(function() return tonumber(read_file(dir .. "/rc") or "") end, timeout)
    if not self.rc then return nil, "timeout" end
    return self.rc
  end
  --- Wait until `pattern` appears in the output (or errors).
  function proc:expect(pattern, timeout, where)
    -- { text } when it appears, { false } once the child has exited
    local found = H.poll_until(function()
      local t = where == "err" and self:errors() or self:output()
      if t:find(pattern) then return { t } end
      if read_file(dir .. "/rc") then return { false } end
    end, timeout)
    if found and found[1] then return found[1] end
    error(string.format("expected %q in the child's %s; got:\n%s\nstderr:\n%s", pattern,
      where == "err" and "stderr" or "stdout", self:output(), self:errors()), 2)
  end
  function proc:cleanup()
    if not read_file(dir .. "/rc") then
      self:signal("KILL")
      -- gone before the caller removes what it was writing
      local deadline = core.now() + 2
      while not read_file(dir .. "/rc") and core.now() < deadline do socket.sleep(0.01) end
    end
    if self.rc == 134 and H.leak_env() ~= "" then
      io.stderr:write("luasip child aborted under the sanitizer:\n", self:errors(), "\n")
    end
    os.execute("rm -rf " .. shell_quote(dir))
  end
  return proc
end

--- Under `make asan-test` (sanitizer runtime preloaded, leak detection
--- off for the many tools specs run), turn LeakSanitizer on for luasip
--- processes: "VAR=value " to put before the command, or "".
function H.leak_env()
  if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then return "" end
  return "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 "
end

--- argv for the luasip command of the runtime under test.
function H.luasip_argv(...)
  local argv = { H.bin }
  for i = 1, select("#", ...) do argv[#argv + 1] = select(i, ...) end
  return argv
end

---------------------------------------------------------------------------
-- SIPp (Debian sip-tester) and the UDP ports it needs

--- Fail when sipp is missing: `make test` installs it, so that is an
--- error, not a reason to skip.
--- A UDP (or "tcp") port on 127.0.0.1 that was free a moment ago.
function H.free_port(kind)
  local s = assert(kind == "tcp" and socket.tcp() or socket.udp())
  assert(s:setsockname("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Two non-blocking UDP sockets on 127.0.0.1 at an even port and the one
--- above it, as RTP and RTCP are: { sock =, port = } each.
function H.udp_pair()
  for _ = 1, 100 do
    local a = assert(socket.udp())
    assert(a:setsockname("127.0.0.1", 0))
    local _, port = a:getsockname()
    port = tonumber(port)
    if port % 2 == 1 then
      a:close()
      a = assert(socket.udp())
      port = port - 1
      if not a:setsockname("127.0.0.1", port) then a:close() a = nil end
    end
    if a then
      local b = assert(socket.udp())
      if b:setsockname("127.0.0.1", port + 1) then
        a:settimeout(0) b:settimeout(0)
        return { sock = a, port = port }, { sock = b, port = port + 1 }
      end
      a:close() b:close()
    end
  end
  error("no free pair of UDP ports")
end

function H.require_sipp()
  local ok = os.execute("command -v sipp >/dev/null 2>&1")
  assert(ok == true or ok == 0, "sipp (Debian sip-tester) is not installed: run make deps")
end

--- The UDP ports bound on this host right now (any address), as a set.
function H.udp_ports_in_use()
  local used = {}
  for _, f in ipairs { "/proc/net/udp", "/proc/net/udp6" } do
    for port in (read_file(f) or ""):gmatch("\n%s*%d+: %x+:(%x+) ") do used[tonumber(port, 16)] = true end
  end
  return used
end

--- A block of 8 consecutive UDP ports in [first, last] that nothing uses
--- now: SIPp's -p (base), -cp (base + 1) and -mp (base + 4 and base + 6).
--- Specs running at the same time get different blocks (the start is
--- drawn from the time in microseconds).
function H.udp_port_block(first, last)
  local used = H.udp_ports_in_use()
  local blocks = math.floor((last - first + 1) / 8)
  for _ = 1, 1000 do
    local n = math.random(0, 1e6) + math.floor(socket.gettime() * 1e6)
    local base = first + 8 * (n % blocks)
    local free = true
    for p = base, base + 7 do
      if used[p] then free = false break end
    end
    if free then return base end
  end
  error(string.format("no free block of UDP ports in %d-%d", first, last))
end

--- Start SIPp as a child listening on 127.0.0.1 (a blocking verb).
--- `args` are the scenario arguments ({"-sf", file, ...} or {"-sn", "uas"});
--- opts.port() gives the port to try (-p), opts.argv adds arguments that
--- depend on it (opts.argv(port) -> list: -cp, -mp, -m ...), opts.limit
--- is its -timeout in seconds (default 20; -timeout_error makes it fail
--- then), opts.name names it in diagnostics. Its traces (messages, errors,
--- <log> actions) go into a temp dir. Returns once SIPp listens, retrying
--- on another port when the one drawn was taken meanwhile. The object has
--- .port, .name, :finish(timeout) -> exit code, :raw_messages(), :logs(),
--- :diag() (everything, for failure messages) and :cleanup().
function H.sipp(args, opts)
  local limit = opts.limit or 20
  for _ = 1, 5 do
    local port = opts.port()
    local dir = H.tmpdir()
    local argv = { "sipp" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    for _, a in ipairs {
      "-i", "127.0.0.1", "-bind_local", "-p", tostring(port), "-nostdin",
      "-timeout", limit .. "s", "-timeout_error",
      "-trace_msg", "-message_file", dir .. "/messages.log",
      "-trace_err", "-error_file", dir .. "/errors.log",
      "-trace_logs", "-log_file", dir .. "/logs.log",
    } do argv[#argv + 1] = a end
    for _, a in ipairs(opts.argv and opts.argv(port) or {}) do argv[#argv + 1] = a end
    local p = H.process(argv)
    p.port = port
    p.name = opts.name or args[2] and args[2]:match("([^/]+)%.xml$") or "sipp"
    local cleanup = p.cleanup
    function p:cleanup()
      if self.cleaned then return end
      self.cleaned = true
      cleanup(self)
      os.execute("rm -rf " .. shell_quote(dir))
    end
    local up = H.poll_until(function()
      if H.udp_ports_in_use()[port] then return "up" end
      if read_file(p.dir .. "/rc") then return "exited" end
    end, 5)
    if up == "up" then
      function p:raw_messages() return read_file(dir .. "/messages.log") or "" end
      function p:logs() return read_file(dir .. "/logs.log") or "" end
      function p:diag()
        return string.format(
          "=== sipp %s (%s)\nexit: %s\n--- stderr:\n%s\n--- errors.log:\n%s\n--- logs.log:\n%s\n--- messages.log:\n%s",
          self.name, table.concat(argv, " "), tostring(self.rc), self:errors(),
          read_file(dir .. "/errors.log") or "", self:logs(), self:raw_messages())
      end
      function p:finish(timeout)
        if self.rc then return self.rc end
        return (self:wait(timeout or (limit + 5)))
      end
      return p
    end
    local errors, output = p:errors(), p:output()
    p:cleanup()
    if not (up == "exited" and errors:find("bind", 1, true)) then
      error(string.format("sipp did not start (%s):\n%s\n%s", tostring(up), errors, output), 2)
    end
    -- the port was taken meanwhile: try another
  end
  error("could not start sipp on a free port", 2)
end

---------------------------------------------------------------------------
-- Raw SIP over real sockets, driven by luasip.poll (a blocking verb).

local seq = 0
--- A minimal, valid SIP request.
function H.request(method, port, opts)
  opts = opts or {}
  seq = seq + 1
  local transport = (opts.transport or "udp"):upper()
  local lport = opts.local_port or 5999
  local lines = {
    string.format("%s %s SIP/2.0", method, opts.uri or ("sip:luasip@127.0.0.1:" .. port)),
    string.format("Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-spec-%d-%d;rport", transport,
      lport, seq, math.random(1e9)),
    "Max-Forwards: 70",
    string.format("From: <sip:spec@127.0.0.1>;tag=spec%d", seq),
    opts.to and ("To: " .. opts.to) or string.format("To: <sip:luasip@127.0.0.1:%d>", port),
    string.format("Call-ID: spec-%d-%d@127.0.0.1", seq, math.random(1e9)),
    string.format("CSeq: %d %s", opts.cseq or 1, method),
  }
  for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
  local body = opts.body or ""
  if body ~= "" then lines[#lines + 1] = "Content-Type: " .. (opts.content_type or "text/plain") end
  lines[#lines + 1] = "Content-Length: " .. #body
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

--- Parse a SIP response: { status=, reason=, headers = {lower-name = {values}} }.
function H.parse_response(text)
  if not text then return nil end
  local status, reason = text:match("^SIP/2%.0 (%d%d%d) ([^\r\n]*)")
  if not status then return nil end
  local r = { status = tonumber(status), reason = reason, headers = {}, raw = text }
  for name, value in text:gmatch("\r\n([%w%-]+):%s*([^\r\n]*)") do
    local k = name:lower()
    r.headers[k] = r.headers[k] or {}
    table.insert(r.headers[k], value)
  end
  return r
end

--- Send `msg` over UDP to 127.0.0.1:port and wait for one datagram back.
function H.udp_exchange(port, msg, timeout)
  local s = assert(socket.udp())
  assert(s:setsockname("127.0.0.1", 0))
  s:settimeout(0)
  -- Put our real port in Via, as a client would: nta answers some errors
  -- (505) to the Via sent-by without looking at rport.
  local _, lport = s:getsockname()
  msg = msg:gsub("(Via: SIP/2%.0/UDP 127%.0%.0%.1:)5999;", "%1" .. lport .. ";", 1)
  assert(s:sendto(msg, "127.0.0.1", port))
  local ev = luasip.poll(s, "r", timeout or 2)
  local data = ev and s:receive()
  s:close()
  return data
end

--- Send `msg` over a new TCP connection and read one response (headers).
function H.tcp_exchange(port, msg, timeout)
  local s = assert(socket.tcp())
  s:settimeout(1)
  assert(s:connect("127.0.0.1", port))
  s:settimeout(0)
  assert(s:send(msg))
  local buf = ""
  local deadline = core.now() + (timeout or 2)
  while not buf:find("\r\n\r\n", 1, true) and core.now() < deadline do
    if not luasip.poll(s, "r", deadline - core.now()) then break end
    local data, err, partial = s:receive(4096)
    buf = buf .. (data or partial or "")
    if err == "closed" then break end
  end
  s:close()
  return buf ~= "" and buf or nil
end

return H
