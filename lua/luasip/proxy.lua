--- req:proxy(targets, opts): the stateful proxy of RFC 3261 §16 as a
-- verb of luasip.server requests.
--
-- luasip.server installs `proxy` and `relay` onto its requests (`install`);
-- they are documented here as methods of a request (luasip.server's
-- `Request`, which documents its other methods).
-- @module luasip.proxy
local core = require "luasip.core"
local log = require "luasip.log"
local task = require "luasip.task"

local M = {}

local DIALOG_FORMING = { INVITE = true, SUBSCRIBE = true, REFER = true }

-- A location binding's next hop: where its REGISTER came from (NAT).
local function hop_of(received)
  if type(received) ~= "string" then return nil end
  local proto, host, port = received:match("^(%a+):(.+):(%d+)$")
  if not proto then return nil end
  if host:find(":", 1, true) and not host:find("^%[") then host = "[" .. host .. "]" end
  return "sip:" .. host .. ":" .. port .. ";transport=" .. proto
end

local function normalize(targets, nat)
  if targets == nil then return { { uri = nil } } end
  if type(targets) == "string" or (type(targets) == "table" and targets.contact) then
    targets = { targets }
  end
  if type(targets) ~= "table" then
    error("req:proxy: targets must be a URI, a binding or a list of them", 3)
  end
  local list = {}
  for i, t in ipairs(targets) do
    if type(t) == "string" then
      list[#list + 1] = { uri = t }
    elseif type(t) == "table" and type(t.contact) == "string" then
      local route
      if t.path and #t.path > 0 then route = table.concat(t.path, ", ") end
      list[#list + 1] = { uri = t.contact, q = t.q, hop = nat and hop_of(t.received) or nil, route = route }
    else
      error("req:proxy: target #" .. i .. " is neither a URI nor a binding", 3)
    end
  end
  return list
end

-- q-value groups, highest first (§16.6); equal or missing q fork together.
local function groups_of(list, opts)
  if opts.serial then
    local g = {}
    for i, t in ipairs(list) do g[i] = { t } end
    return g
  end
  if opts.parallel or #list < 2 then return { list } end
  local byq, qs = {}, {}
  for _, t in ipairs(list) do
    local q = t.q or 1.0
    if not byq[q] then byq[q] = {}; qs[#qs + 1] = q end
    table.insert(byq[q], t)
  end
  table.sort(qs, function(a, b) return a > b end)
  local groups = {}
  for i, q in ipairs(qs) do groups[i] = byq[q] end
  return groups
end

-- §16.7 step 6: lower is better.
local function rank(status)
  if status >= 600 then return 0 end
  if status >= 300 and status < 400 then return 1 end
  if status >= 400 and status < 500 then return 2 end
  return 3
end

local function wake(state)
  if state.wake then
    local w = state.wake
    state.wake = nil
    w(true)
  end
end

local function conclude(state, br, status)
  if br.final then return end
  br.final = status
  if br.timer then br.timer:close(); br.timer = nil end
  state.pending = state.pending - 1
end

-- Resume proxy() once nothing is pending; callers update all state first,
-- since the task runs on before wake() returns.
local function wake_if_done(state)
  if state.pending <= 0 then wake(state) end
end

-- CANCEL what is still pending; such branches count as `status` now
-- (their own 487 comes later and is ignored).
local function cancel_pending(req, state, status)
  for _, br in ipairs(state.branches) do
    if not br.final then
      if br.b then br.b:cancel() end
      br.synthetic = true
      conclude(state, br, status)
      req.finals[#req.finals + 1] = br
    end
  end
end

local function run_hook(opts, resp, br)
  if not opts.on_response then return true end
  local ok, keep = pcall(opts.on_response, resp, br.info)
  if not ok then
    log.error("req:proxy: on_response failed: %s", keep)
    return true
  end
  return keep ~= false
end

local function on_response(req, state, opts, br, status, resp)
  if br.final then
    -- late: a 2xx still goes upstream (the caller must ACK or BYE it)
    -- (and a later proxy() must know a final response went upstream)
    if status >= 200 and status < 300 and resp and req.r:relay(resp) then
      req.final = req.final or status
    end
    return
  end
  br.info.status = status
  if status < 200 then
    if resp and run_hook(opts, resp, br) and not req.final then req.r:relay(resp) end
    return
  end
  br.resp = resp
  if resp then run_hook(opts, resp, br) end
  req.finals[#req.finals + 1] = br
  conclude(state, br, status)
  if status < 300 then
    if resp then
      req.r:relay(resp)
      req.final = req.final or status
    end
    state.answered = status
    cancel_pending(req, state, 487)
  elseif status >= 600 then
    state.global = true
    cancel_pending(req, state, 487)
  end
  wake_if_done(state)
end

local function record_route(req, opts)
  local rr = opts.record_route
  if rr == nil then
    rr = req.server.record_route and DIALOG_FORMING[req.method] and not req.in_dialog
  end
  if not rr then return nil end
  if type(rr) == "string" then return rr end
  local t = req.msg.transport
  return "<" .. req.server.uri .. ";lr" .. ((t == "tcp") and ";transport=tcp" or "") .. ">"
end

local function run_group(req, group, opts, deadline)
  local state = { pending = 0, branches = {} }
  req.active = state
  local rr = record_route(req, opts)
  local extra = opts.headers and core.header_lines(opts.headers, "req:proxy") or ""
  for _, t in ipairs(group) do
    local br = { info = { uri = t.uri or req.ruri, q = t.q } }
    state.branches[#state.branches + 1] = br
    local headers = extra
    if t.route then headers = headers .. "Route: " .. t.route .. "\r\n" end
    state.pending = state.pending + 1
    local b, err = req.r:branch(t.uri, rr, headers ~= "" and headers or nil, t.hop or opts.next_hop,
      function(_, status, resp) on_response(req, state, opts, br, status, resp) end)
    if not b then
      log.warn("req:proxy: %s: %s", tostring(t.uri), err)
      req.finals[#req.finals + 1] = br
      br.synthetic = true
      conclude(state, br, 400)
    else
      br.b = b
      br.info.branch = b
      if opts.branch_timeout then
        br.timer = core.timer(function()
          if br.final then return end
          b:cancel()
          br.synthetic = true
          req.finals[#req.finals + 1] = br
          conclude(state, br, 408)
          wake_if_done(state)
        end)
        br.timer:start(opts.branch_timeout)
      end
    end
  end
  if state.pending > 0 then
    local left = deadline and math.max(0, deadline - core.now()) or nil
    local ok, why = task.wait(function(done)
      state.wake = done
      return function() state.wake = nil end
    end, left, "req:proxy")
    if not ok and why == "timeout" then cancel_pending(req, state, 408) end
  end
  for _, br in ipairs(state.branches) do
    if br.timer then br.timer:close(); br.timer = nil end
  end
  req.active = nil
  return state
end

local function best_of(finals)
  local best
  for _, br in ipairs(finals) do
    local st = br.final
    if st >= 300 then
      if not best or rank(st) < rank(best.final) or
          (rank(st) == rank(best.final) and best.synthetic and not br.synthetic) then
        best = br
      end
    end
  end
  return best
end

local function on_cancel(req)
  req.cancelled = true
  if req.active then
    cancel_pending(req, req.active, 487)
    wake_if_done(req.active)
  end
end

--- Proxy the request statefully (RFC 3261 §16) and wait for the outcome.
-- targets: a URI string, a location binding ({contact=, q=, path=,
-- received=}), or a list of either; nil relays to the Request-URI (after
-- the loose-routing the server already did, an in-dialog request follows
-- its Route). Targets fork in parallel within a q-value group and groups
-- are tried one after the other, highest q first (§16.6); all targets
-- without q form one parallel group.
--
-- It yields until there is a final answer and returns status, response:
--
--   * a 2xx is relayed upstream at once, the other branches are
--     CANCELled, and proxy() returns 200 (or the 2xx status), response;
--   * otherwise nothing final has gone upstream yet: proxy() returns the
--     best response of §16.7 (6xx over 3xx over 4xx over 5xx; a timed-out
--     branch counts as 408, a target that cannot be sent to as 400), so the
--     script may try elsewhere (voicemail on 486/408/480). When the handler
--     ends, the best response is relayed (a 503 as 500, §16.7 step 6; the
--     challenges of every 401/407 merged).
--
-- Provisional responses (but 100) are relayed as they come; INVITEs get
-- 100 Trying at once. Max-Forwards 0 answers 483 (OPTIONS: 200), a loop
-- answers 482. An upstream CANCEL cancels every branch and proxy() returns
-- 487. An ACK or a CANCEL that no transaction of ours matched goes on
-- statelessly (`forward`) to the first target.
-- @tparam ?string|table targets a URI, a location binding, a list of
-- either, or nil for the Request-URI
-- @tparam[opt] table opts options:
-- @tparam[opt] number opts.timeout seconds for the whole proxy(); then the
-- pending branches are CANCELled and count as 408 (default none)
-- @tparam[opt] number opts.branch_timeout seconds a branch may go without
-- a final response before it is CANCELled and counts as 408 (default none)
-- @tparam[opt] boolean opts.parallel true: every target in one group,
-- whatever its q
-- @tparam[opt] boolean opts.serial true: one target at a time, in the
-- given order
-- @tparam[opt] boolean|string opts.record_route override the server's
-- Record-Route default (a string: the Record-Route value to add)
-- @tparam[opt] table opts.headers extra headers for every branch (as for
-- `req:reply`)
-- @tparam[opt] string opts.next_hop URI to send the branches to (an
-- outbound proxy)
-- @tparam[opt] boolean opts.nat true: send to a binding's `received`
-- address (where its REGISTER came from) instead of its Contact
-- @tparam[opt] function opts.on_response fn(response, branch) for every
-- response but 100 before it is relayed; may change the response
-- (response:set_header(...)); returning false keeps a provisional response
-- from going upstream. branch is a table: uri (the target), q, status
-- (the last one received), branch (the client transaction).
-- @treturn[1] number a 2xx status: that response went upstream already
-- @treturn[1] luasip.server.Message the 2xx response
-- @treturn[2] number the best final status (3xx to 6xx), nothing sent
-- upstream yet; 408 also when there was no target at all
-- @treturn[2] ?luasip.server.Message the best response, or nil when its
-- status was made up (a timeout, a target not sent to, a CANCELled branch)
-- @treturn[3] number 487: the client CANCELled the request
-- @treturn[3] ?luasip.server.Message a branch's 487 response, if one came
-- @treturn[4] number 483, 482, or 200 to an OPTIONS with Max-Forwards 0:
-- proxy() answered the request itself
-- @treturn[5] number 0: an ACK or a CANCEL was forwarded statelessly
-- @return[6] nil
-- @treturn[6] string "a final response was already sent", "Max-Forwards is
-- 0" (an ACK, dropped), or why an ACK or a CANCEL could not be forwarded
-- @raise "req:proxy: opts must be a table", "req:proxy: targets must be a
-- URI, a binding or a list of them", "req:proxy: target #N is neither a URI
-- nor a binding", and for bad headers "req:proxy: headers must be a table"
-- and the like
-- @usage local status = req:proxy(loc:lookup(aor), { branch_timeout = 20 })
-- if status == 486 or status == 408 or status == 480 then
--   req:proxy("sip:voicemail@127.0.0.1:5090")
-- end
-- @function Request:proxy
local function proxy(req, targets, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("req:proxy: opts must be a table", 2) end
  local list = normalize(targets, opts.nat)
  local method = req.method
  if method == "ACK" or method == "CANCEL" then
    -- an ACK to a 2xx, or a CANCEL no transaction of ours matched (§16.10):
    -- both go on statelessly. An ACK out of hops is dropped (§16.3 step
    -- 3: it gets no 483), or one looping back to us would go round forever.
    if method == "ACK" and req.r:max_forwards() == 0 then
      log.debug("req:proxy: ACK with Max-Forwards 0 dropped")
      return nil, "Max-Forwards is 0"
    end
    local ok, err = req:forward(list[1].uri, { headers = opts.headers, next_hop = list[1].hop or opts.next_hop })
    return ok and 0 or nil, err
  end
  if req.final then return nil, "a final response was already sent" end
  local mf = req.r:max_forwards()
  if mf == 0 then
    if method == "OPTIONS" then
      req:reply(200, nil, { headers = { Allow = req.server:allow() } })
      return 200
    end
    req:reply(483, "Too Many Hops")
    return 483
  end
  if req.r:loop() then
    req:reply(482, "Loop Detected")
    return 482
  end
  if req.cancelled then return 487 end
  req.r:transaction(function() on_cancel(req) end)
  if method == "INVITE" and not req.trying then
    req.trying = true
    req.r:reply(100, "Trying")
  end
  req.finals = {}
  local deadline = opts.timeout and core.now() + opts.timeout
  for _, group in ipairs(groups_of(list, opts)) do
    local state = run_group(req, group, opts, deadline)
    if state.answered then
      local br
      for _, b in ipairs(state.branches) do
        if b.final == state.answered and not b.synthetic then br = b end
      end
      req.best_status, req.best_response = nil, nil
      return state.answered, br and br.resp
    end
    if state.global or req.cancelled then break end
    if deadline and core.now() >= deadline then break end
  end
  if req.cancelled then
    req.best_status, req.best_response = 487, nil
    for _, br in ipairs(req.finals) do
      if br.final == 487 and br.resp then req.best_response = br.resp end
    end
    return 487, req.best_response
  end
  local best = best_of(req.finals)
  if not best then
    req.best_status = 408
    return 408
  end
  req.best_status = best.final
  req.best_response = not best.synthetic and best.resp or nil
  return best.final, req.best_response
end

-- Relay the best final response of the last proxy() (at the handler's end).
local function relay_best(req)
  local status, resp = req.best_status, req.best_response
  if not status then return nil, "nothing to relay" end
  if status == 503 then return req:reply(500, "Service Unavailable Downstream") end
  if not resp then return req:reply(status) end
  if status == 401 or status == 407 then
    -- §16.7 step 7: every challenge goes up in the one response
    for _, br in ipairs(req.finals or {}) do
      if br.resp and br.resp ~= resp and (br.final == 401 or br.final == 407) then
        for _, name in ipairs { "WWW-Authenticate", "Proxy-Authenticate" } do
          for _, v in ipairs(br.resp:headers(name)) do resp:add_header(name, v) end
        end
      end
    end
  end
  local ok, err = req.r:relay(resp)
  if ok then req.final = status end
  return ok, err
end

--- Send a response of one of our branches upstream.
-- `req:relay(response)` — what proxy() does with the best one when the
-- handler ends. Through the server transaction while it lasts, statelessly
-- after (a 2xx from another fork after the first, §16.7 step 5).
-- @tparam luasip.server.Message response a response to one of our branches
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string "a final response was already sent", "the response
-- has no Via to go back to", "the response could not be sent" or "out of
-- memory"
-- @raise "luasip.request: relay takes a response" for a request
-- @function Request:relay
local function relay(req, resp)
  local ok, err = req.r:relay(resp)
  if ok and resp.status >= 200 then req.final = req.final or resp.status end
  return ok, err
end

--- Install the proxy verbs onto a request class.
-- luasip.server does this for its requests: `proxy` and `relay`, and the
-- private `_on_cancel` and `_relay_best` it calls.
-- @tparam table Request the methods table of the requests
function M.install(Request)
  Request._on_cancel = on_cancel
  Request.proxy = proxy
  Request._relay_best = relay_best
  Request.relay = relay
end

return M
