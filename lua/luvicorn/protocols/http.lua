--- The HTTP/1.x protocol: a state machine fed with bytes, socket-free.
---
--- A connection's protocol gets bytes through `data_received`, the peer's end of stream through
--- `eof_received`, the end of the connection through `connection_lost`, and writes through an injected
--- transport:
---
--- ```
--- transport:write(data)           string or array of strings (one vectored write)
--- transport:close()               close once the queued writes are flushed
--- transport:abort()               close now
--- transport:pause_reading()       / transport:resume_reading()
--- transport:get_write_queue_size()    bytes queued and not yet taken by the kernel
--- transport.sendfile             optional: function(self, path, offset, length, cb(err)), the file goes
---                                 from disk to the socket without passing through Lua
--- transport.writev               optional: function(self, ...), writes its string arguments as one
---                                 write(table.concat({...})) would (luvrs: uv.write_batched)
--- ```
---
--- The transport calls `proto:drained()` when a write completes and `proto.want_drain` is set and the
--- queue is at or under `M.LOW_WATER`; the owner calls `proto:check_timeout(now_ms)` now and then.
--- Time comes from `ctx.clock()` (milliseconds, monotonic) and `ctx.time()` (seconds, wall clock).
---@class luvicorn.protocols.http
local M = {}

local find, sub, byte, lower, format, gsub, gmatch, char =
  string.find, string.sub, string.byte, string.lower, string.format, string.gsub, string.gmatch, string.char
local concat = table.concat
local co_create, co_resume, co_yield, co_running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running
local traceback, tonumber, type, tostring, error, xpcall, setmetatable, mtype =
  debug.traceback, tonumber, type, tostring, error, xpcall, setmetatable, math.type

M.HIGH_WATER = 64 * 1024 -- send() waits while more than this is queued for writing
M.LOW_WATER = 16 * 1024 -- and resumes once the queue is back under this
M.READ_BUFFER = 64 * 1024 -- reading stops while this much request body waits for the app

local logging = require("luvicorn.logging")
local proxy = require("luvicorn.proxy")
local proxy_resolve = proxy.resolve

local LASGI = { version = "1.0", spec_version = "1.0" }

M.REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [203] = "Non-Authoritative Information", [204] = "No Content", [205] = "Reset Content",
  [206] = "Partial Content", [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [422] = "Unprocessable Content", [426] = "Upgrade Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}
local REASONS = M.REASONS

local STATUS_LINE = setmetatable({}, {
  __index = function(t, status)
    local line = format("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "")
    t[status] = line
    return line
  end,
})

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"
-- "content-length: N\r\n" for the lengths seen, up to a bound (hello-world bodies hit it every time)
local CL_LINE = setmetatable({}, {
  __index = function(t, n)
    local line = "content-length: " .. n .. "\r\n"
    if n <= 16384 then t[n] = line end
    return line
  end,
})
local CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"
local SHUTDOWN_HEAD_GRACE_MS = 1000
local EXT_PLAIN = { ["http.response.pathsend"] = {} }
local EXT_TRAILERS = { ["http.response.pathsend"] = {}, ["http.response.trailers"] = {} }

-- Response header names seen before: valid, and their lower-case form. Bounded: names come from apps.
local valid_names, nvalid = {}, 0
local valid_values, nvalues = {}, 0 -- short response header values seen before (valid)
local STATUS_OK = {} -- statuses seen before (integers in 100..999)

local function hex_byte(h) return char(tonumber(h, 16)) end

---Builds the state shared by every connection of a server.
---@param opts table app (callable), parse_head (fn), parse_request (fn, optional: native), log (logger), and
---the config fields below
---@return table ctx
function M.context(opts)
  if type(opts) ~= "table" then error("luvicorn.protocols.http.context: argument 'opts' must be a table", 2) end
  if opts.app == nil then error("luvicorn.protocols.http.context: argument 'opts.app' is required", 2) end
  if type(opts.parse_head) ~= "function" then
    error("luvicorn.protocols.http.context: argument 'opts.parse_head' must be a function", 2)
  end
  for _, name in ipairs({ "parse_request", "response_headers" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error("luvicorn.protocols.http.context: argument 'opts." .. name .. "' must be a function or nil", 2)
    end
  end
  local extra = {}
  for i, h in ipairs(opts.headers or {}) do extra[i] = h[1] .. ": " .. h[2] .. "\r\n" end
  -- checked even with proxy headers off: a typo in the list should not wait until they are turned on
  local trust, terr = proxy.parse(opts.forwarded_allow_ips or { "127.0.0.1", "::1" })
  if not trust then error(terr, 0) end
  return {
    app = opts.app,
    parse_head = opts.parse_head,
    parse_request = opts.parse_request or false, -- the head parser plus scan_request, in one native call
    response_headers = opts.response_headers or false, -- native twin of cycle_start's header loop
    log = opts.log or logging.new({ level = "warning", access_log = false }),
    clock = opts.clock or function() return os.time() * 1000 end,
    time = opts.time or os.time,
    hrtime = opts.hrtime,
    max_head = opts.max_request_head or 16384,
    max_headers = opts.max_headers or 100,
    max_body = opts.max_body_size,
    keep_alive_ms = (opts.timeout_keep_alive or 5) * 1000,
    head_ms = (opts.timeout_request_head or 10) * 1000,
    root_path = opts.root_path or "",
    scheme = opts.scheme or "http",
    limit_concurrency = opts.limit_concurrency,
    limit_max_requests = opts.limit_max_requests,
    on_max_requests = opts.on_max_requests,
    proxy_headers = opts.proxy_headers ~= false,
    proxy = trust,
    server_header = opts.server_header ~= false,
    date_header = opts.date_header ~= false,
    extra_headers = concat(extra),
    state = opts.state or {},
    server = opts.server,
    uv = opts.uv,
    ws = opts.ws or "auto", -- "none" leaves Upgrade: websocket requests to the app as plain HTTP
    ws_config = opts.ws_config,
    -- counters and caches
    active = 0, -- app calls running
    total = 0, -- requests started
    connections = 0, -- set by the server
    shutting_down = false,
    prefix_time = -1,
    prefix = "",
  }
end

local function head_prefix(ctx)
  local t = ctx.time()
  if t ~= ctx.prefix_time then
    ctx.prefix_time = t
    local parts = {}
    if ctx.date_header then parts[#parts + 1] = os.date("!date: %a, %d %b %Y %H:%M:%S GMT\r\n", t) end
    if ctx.server_header then parts[#parts + 1] = "server: luvicorn\r\n" end
    parts[#parts + 1] = ctx.extra_headers
    ctx.prefix = concat(parts)
  end
  return ctx.prefix
end
M.head_prefix = head_prefix

local Protocol = {}
Protocol.__index = Protocol
Protocol.__name = "luvicorn.HttpProtocol"

local Cycle = {}
Cycle.__index = Cycle
Cycle.__name = "luvicorn.HttpCycle"

local stale_send -- defined with the cycle's send functions below
-- The per-request path calls these as locals: a method call looks the name up in the object, misses,
-- and goes through the metatable (a few hundred instructions per request in all).
local process, start_request, resume, receive_event, send_event, cycle_start, cycle_body, head_end,
  response_complete, app_done

---Creates the protocol of one connection.
---@param ctx table from M.context
---@param transport table see the module comment
---@param client table|nil `{ host, port }` of the peer
---@param server table|nil `{ host, port }` or `{ path }` of the listening socket
---@return table protocol
function M.new(ctx, transport, client, server)
  if type(ctx) ~= "table" then error("luvicorn.protocols.http.new: argument 'ctx' must be a table", 2) end
  if type(transport) ~= "table" and type(transport) ~= "userdata" then
    error("luvicorn.protocols.http.new: argument 'transport' must be a transport", 2)
  end
  -- once per connection: requests from an untrusted peer never look at proxy headers
  local trusted = ctx.proxy_headers and ctx.proxy:peer_trusted(client, server or ctx.server)
  local self = setmetatable({
    ctx = ctx,
    transport = transport,
    client = client,
    server = server or ctx.server,
    trusted = trusted,
    buf = "",
    state = "head", -- head | body | wait | closed
    cycle = false, -- the request whose body is read / whose response is written
    processing = false,
    read_paused = false,
    want_drain = false,
    -- a new connection has the head timeout from the start: a slow first head is slowloris too
    deadline = ctx.clock() + ctx.head_ms,
    deadline_kind = "head",
    upgraded = false,
    spare = false, -- the cycle table, reused by each request
    client_str = false, -- "host:port" for the access log, made once
    -- reading the current request's body
    chunked = false, remaining = 0, chunk_state = "size", body_total = 0, discard = false,
  }, Protocol)
  return self
end

---------------------------------------------------------------------------------------------------
-- Coroutines: each request's app call runs in a coroutine from a pool. The body handles its own
-- completion and errors (xpcall, then app_done), so any party may resume it.

local pool, npool = {}, 0

local handoff = false -- the cycle a pooled coroutine is being resumed for (anything else is spurious)

local function worker(cycle)
  local me = co_running()
  while true do
    local gen, ctx = cycle.gen, cycle.proto.ctx
    local ok, err = xpcall(ctx.app, traceback, cycle.scope, cycle.receive, cycle.send)
    ctx.active = ctx.active - 1
    -- the usual end, a completed response (or the cycle already lent to a later request) and no error,
    -- leaves app_done nothing to do: no call
    if not ok or (cycle.gen == gen and not cycle.response_complete) then app_done(cycle, gen, ok, err) end
    npool = npool + 1
    pool[npool] = me
    repeat cycle = co_yield() until cycle == handoff and cycle
  end
end

local function resume_failed(self, err)
  self.ctx.log:error("Luvicorn request coroutine failed: " .. tostring(err))
end

function resume(self, cycle, arg)
  local ok, err = co_resume(cycle.co, arg)
  if not ok then resume_failed(self, err) end
  if not self.processing and self.state ~= "closed" then process(self) end
end

---------------------------------------------------------------------------------------------------
-- Writing simple responses (rejections, 500, 503, 408).

local function simple_response(ctx, status, text, extra)
  local body = text .. "\n"
  return concat({ STATUS_LINE[status], head_prefix(ctx), extra or "",
    "content-type: text/plain; charset=utf-8\r\ncontent-length: ", tostring(#body),
    "\r\nconnection: close\r\n\r\n", body })
end

---Answers with `status` and a short text body, then closes the connection.
---@param status integer
---@param reason string
function Protocol:reject(status, reason)
  if self.state == "closed" then return end
  local ctx = self.ctx
  if status ~= 503 and status ~= 408 then
    ctx.log:warning(format("Invalid HTTP request received: %d %s", status, reason))
  end
  local cycle = self.cycle
  if cycle and cycle.head_sent then
    -- a response is already on the wire: no room for another one
    ctx.log:warning(format("Closing the connection: %d %s", status, reason))
    cycle.disconnected = true
    if cycle.waiting then resume(self, cycle) end
    return self:abort()
  end
  self.transport:write(simple_response(ctx, status, reason))
  if cycle then
    cycle.disconnected = true
    if cycle.waiting then resume(self, cycle) end
  end
  self:close()
end

---Closes the connection once queued writes are flushed.
function Protocol:close()
  if self.state == "closed" then return end
  self.state = "closed"
  self.deadline = nil
  self.transport:close()
end

---Closes the connection now.
function Protocol:abort()
  if self.state == "closed" and self.aborted then return end
  self.state = "closed"
  self.aborted = true
  self.deadline = nil
  self.transport:abort()
end

---------------------------------------------------------------------------------------------------
-- Reading: heads, then bodies.

local function update_reading(self)
  local want
  local state = self.state
  if state == "body" then
    local cycle = self.cycle
    want = cycle.body_bytes > M.READ_BUFFER
  elseif state == "wait" then
    want = #self.buf > M.READ_BUFFER
  else
    want = false
  end
  if want ~= self.read_paused and state ~= "closed" then
    self.read_paused = want
    if want then self.transport:pause_reading() else self.transport:resume_reading() end
  end
end

---Feeds bytes received from the peer.
---@param data string
function Protocol:data_received(data)
  local state = self.state
  if state == "upgraded" then return self.upgraded:data_received(data) end
  if state == "closed" then return end
  local buf = self.buf
  if buf == "" then self.buf = data else self.buf = buf .. data end
  process(self)
end

-- An incomplete head: the head timeout runs from its first bytes.
local function head_pending(self, ctx)
  if self.deadline_kind ~= "head" then
    self.deadline = ctx.clock() + ctx.head_ms
    self.deadline_kind = "head"
  end
end

function process(self)
  if self.processing then return end
  self.processing = true
  local ctx = self.ctx
  while true do
    local state = self.state
    if state == "head" then
      local buf = self.buf
      if buf == "" then
        if self.deadline_kind ~= "keep-alive" then
          if ctx.shutting_down then self:close() break end
          self.deadline = ctx.clock() + ctx.keep_alive_ms
          self.deadline_kind = "keep-alive"
        end
        break
      end
      local parse_request = ctx.parse_request
      local consumed, method, target, minor, headers, raw_path, query, path, cl, chunked, keep_alive, expect,
        trailers_ok, upgrade, proxied
      if parse_request then
        -- luvrs: one native call also does start_request's field checks and target split (raw_path on);
        -- its rejections come back like the parser's
        consumed, method, target, minor, headers, raw_path, query, path, cl, chunked, keep_alive, expect,
          trailers_ok, upgrade, proxied = parse_request(buf, ctx.max_head, ctx.max_headers, ctx.max_body)
      else
        consumed, method, target, minor, headers = ctx.parse_head(buf, ctx.max_head, ctx.max_headers)
      end
      if not consumed then
        if consumed == nil then head_pending(self, ctx) else self:reject(method, target) end
        break
      end
      if consumed == #buf then self.buf = "" else self.buf = sub(buf, consumed + 1) end
      -- false, not nil: a field set to nil and set again is re-inserted into the table's hash part
      self.deadline, self.deadline_kind = false, false
      start_request(self, method, target, minor, headers, raw_path, query, path, cl, chunked, keep_alive, expect,
        trailers_ok, upgrade, proxied)
    elseif state == "body" then
      if not self:read_body() then break end
    else
      break
    end
  end
  self.processing = false
  -- the usual state here, waiting for a head with reading on, is already right: no call
  if self.read_paused or self.state ~= "head" then update_reading(self) end
end

local function connection_tokens(value, t)
  for tok in gmatch(lower(value), "[^,%s]+") do t[tok] = true end
  return t
end

local targets, ntargets = {}, 0 -- request target -> { raw_path, query_string, path }

local function percent_decode(s)
  if find(s, "%", 1, true) then return (gsub(s, "%%(%x%x)", hex_byte)) end
  return s
end

-- The proxy fields of a request whose peer is trusted, gathered as the proxy resolution wants them.
local function proxy_fields(headers)
  local xfp, xff, fwd
  for i = 1, #headers do
    local h = headers[i]
    local name = h[1]
    if name == "x-forwarded-proto" then
      xfp = xfp and (xfp .. "," .. h[2]) or h[2]
    elseif name == "x-forwarded-for" then
      xff = xff and (xff .. "," .. h[2]) or h[2]
    elseif name == "forwarded" then
      -- one line each: a broken quoted string in one field line cannot swallow the next
      fwd = fwd and (fwd .. "\n" .. h[2]) or h[2]
    end
  end
  return xfp, xff, fwd
end

-- Probes start_request for its Lua field checks alone (scan_request below). The checks stay
-- inline in start_request: as a function of their own, called from process, they cost about 1,400 more
-- instructions per request on the Lua parser's path (ten results passed back, then on).
local SCAN_ONLY = { scan_only = true, ctx = { max_body = false } }
function SCAN_ONLY.reject(_, status, reason) return false, status, reason end

---Starts a request from its parsed head. With the Lua parser the head's fields are checked here; a
---native `uv.http_parse_request` (luvrs) has done that already and passes the results in (raw_path on).
function start_request(self, method, target, minor, headers, raw_path, query, path, cl, chunked, keep_alive,
                       expect, trailers_ok, upgrade, proxied)
  local ctx = self.ctx
  if not raw_path then
    local te, conn, host_n
    host_n = 0
    for i = 1, #headers do
      local h = headers[i]
      local name = h[1]
      if name == "host" then
        host_n = host_n + 1
      elseif name == "content-length" then
        local v = h[2]
        if not find(v, "^%d+$") or #v > 15 then return self:reject(400, "Invalid Content-Length") end
        v = tonumber(v)
        if cl and cl ~= v then return self:reject(400, "Conflicting Content-Length headers") end
        cl = v
      elseif name == "transfer-encoding" then
        te = te and (te .. "," .. h[2]) or h[2]
      elseif name == "connection" then
        conn = connection_tokens(h[2], conn or {})
      elseif name == "expect" then
        if lower(h[2]) == "100-continue" then expect = true end
      elseif name == "te" then
        if find(lower(h[2]), "trailers", 1, true) then trailers_ok = true end
      elseif name == "x-forwarded-proto" or name == "x-forwarded-for" or name == "forwarded" then
        proxied = true
      elseif name == "upgrade" then
        upgrade = h[2]
      end
    end
    if minor == 1 and host_n == 0 then return self:reject(400, "Missing Host header") end
    if host_n > 1 then return self:reject(400, "Multiple Host headers") end
    chunked = false
    if te then
      if cl then return self:reject(400, "Both Content-Length and Transfer-Encoding") end
      if minor == 0 then return self:reject(400, "Transfer-Encoding in an HTTP/1.0 request") end
      local codings = lower(gsub(te, "[ \t]", ""))
      if codings ~= "chunked" then
        if find(codings, "chunked", 1, true) and not find(codings, "chunked$") then
          return self:reject(400, "Transfer-Encoding must end with chunked")
        end
        return self:reject(501, "Unsupported Transfer-Encoding")
      end
      chunked = true
    end
    if cl and ctx.max_body and cl > ctx.max_body then return self:reject(413, "Request body too large") end

    -- the request target: origin-form, absolute-form, or "*" (split once per distinct short target)
    local split = targets[target]
    if split then
      raw_path, query, path = split[1], split[2], split[3]
    else
      raw_path, query = target, ""
      local q = find(target, "?", 1, true)
      if q then raw_path, query = sub(target, 1, q - 1), sub(target, q + 1) end
      if byte(raw_path, 1) ~= 47 then
        if raw_path ~= "*" then
          local rest = raw_path:match("^[hH][tT][tT][pP][sS]?://[^/]*(.*)$")
          if not rest then return self:reject(400, "Invalid request target") end
          raw_path = rest == "" and "/" or rest
        end
      end
      path = percent_decode(raw_path)
      if ntargets < 1024 and #target <= 128 then
        targets[target] = { raw_path, query, path }
        ntargets = ntargets + 1
      end
    end
    if minor == 1 then
      keep_alive = not (conn and conn.close)
    else
      keep_alive = (conn and conn["keep-alive"] and not conn.close) or false
    end
    if self.scan_only then
      return raw_path, query, path, cl or false, chunked, keep_alive, expect or false, trailers_ok or false,
        upgrade or false, proxied or false
    end
  end
  local root = ctx.root_path
  if root ~= "" then path, raw_path = root .. path, root .. raw_path end

  if ctx.shutting_down then keep_alive = false end
  ctx.total = ctx.total + 1
  if ctx.limit_max_requests and ctx.total >= ctx.limit_max_requests then
    keep_alive = false
    if ctx.total == ctx.limit_max_requests and ctx.on_max_requests then ctx.on_max_requests() end
  end
  if ctx.limit_concurrency and (ctx.active >= ctx.limit_concurrency or ctx.connections > ctx.limit_concurrency) then
    return self:reject(503, "Service Unavailable")
  end

  local client, scheme = self.client, ctx.scheme
  if proxied and self.trusted then
    local xfp, xff, fwd = proxy_fields(headers)
    client, scheme = proxy_resolve(ctx.proxy, client, scheme, fwd, xff, xfp)
  end

  local lstate = ctx.state
  local state = {}
  if next(lstate) ~= nil then
    for k, v in next, lstate do state[k] = v end
  end
  local http_version = minor == 1 and "1.1" or "1.0"
  local scope = {
    type = "http",
    lasgi = LASGI,
    http_version = http_version,
    method = method,
    scheme = scheme,
    path = path,
    raw_path = raw_path,
    query_string = query,
    root_path = root,
    headers = headers,
    client = client,
    server = self.server,
    state = state,
    extensions = trailers_ok and EXT_TRAILERS or EXT_PLAIN,
  }
  if upgrade and ctx.ws ~= "none" and find(lower(upgrade), "websocket", 1, true) then
    local ws = ctx.websocket
    if ws == nil then
      local ok, mod = pcall(require, "luvicorn.protocols.websocket")
      ws = ok and mod or false
      ctx.websocket = ws
      if not ok then ctx.log:warning("WebSocket support unavailable: " .. tostring(mod)) end
    end
    if ws then return self:upgrade(ws, scope) end
  end
  local has_body = chunked or (cl and cl > 0)
  -- A connection reuses its cycle table from one request to the next: building a table with this many
  -- fields costs more than the rest of the request's bookkeeping. `gen` tells the requests apart: the
  -- receive/send functions and the coroutine of an earlier request see a different gen and act as
  -- "response complete" (that request's response completed before this one could start).
  local cycle = self.spare
  if not cycle then
    cycle = setmetatable({
      gen = 0, proto = self, scope = false, co = false, receive = false, send = false,
      target = false, http_version = false, keep_alive = false, expect_100 = false, trailers_ok = false,
      -- request body, as queued for the app (the reading state is the connection's)
      chunks = false, nchunks = 0, body_bytes = 0, body_done = false, final_delivered = false,
      -- response
      response_started = false, response_complete = false, disconnected = false, waiting = false,
      t0 = false, status = 0, cl = false, sent = 0, no_body = false, want_trailers = false, hdrs = "",
      head_sent = false, chunked_out = false, app_connection = false, body_finished = false,
      trailer_started = false, dirty = false,
    }, Cycle)
    self.spare = cycle
  end
  local gen = cycle.gen + 1
  cycle.gen = gen
  cycle.scope, cycle.target, cycle.http_version, cycle.keep_alive = scope, target, http_version, keep_alive
  cycle.expect_100, cycle.trailers_ok, cycle.body_done = expect and has_body or false, trailers_ok or false,
    not has_body
  cycle.response_started, cycle.response_complete, cycle.disconnected, cycle.head_sent = false, false, false, false
  cycle.t0 = ctx.log.access_enabled and ctx.hrtime and ctx.hrtime() or false
  -- Not reset: status, cl, sent, no_body, hdrs and app_connection, which http.response.start sets before
  -- anything reads them. The rest only request bodies, receive, waits, trailers and chunked responses
  -- change, and those mark the cycle dirty: most requests skip the second half of the reset.
  if cycle.dirty then
    cycle.chunks, cycle.nchunks, cycle.body_bytes, cycle.final_delivered, cycle.waiting = false, 0, 0, false, false
    cycle.want_trailers, cycle.chunked_out, cycle.body_finished, cycle.trailer_started = false, false, false, false
    cycle.dirty = false
  end
  cycle.receive = function()
    if cycle.gen ~= gen then return { type = "http.disconnect" } end
    return receive_event(cycle)
  end
  cycle.send = function(event)
    if cycle.gen ~= gen then return stale_send(event) end
    -- the two usual events skip send_event's call; it takes the others, and misuse
    if type(event) == "table" then
      local t = event.type
      if t == "http.response.body" then return cycle_body(cycle, event) end
      if t == "http.response.start" then return cycle_start(cycle, event) end
    end
    return send_event(cycle, event)
  end
  self.cycle = cycle
  if has_body then
    self.state = "body"
    -- the body-reading fields: only read in state "body", so set only for requests with a body
    self.chunked = chunked
    self.remaining = chunked and 0 or cl -- bytes of the current chunk / of the body still to read
    self.chunk_state, self.body_total, self.discard = "size", 0, false
  else
    self.state = "wait"
  end

  local co
  if npool > 0 then
    co = pool[npool]
    pool[npool] = nil
    npool = npool - 1
  else
    co = co_create(worker)
  end
  cycle.co = co
  ctx.active = ctx.active + 1
  handoff = cycle
  -- resume(self, cycle, cycle), inlined: a call less per request
  local ok, err = co_resume(co, cycle)
  if not ok then resume_failed(self, err) end
  if not self.processing and self.state ~= "closed" then process(self) end
  handoff = false
end

-- Hands the connection to the WebSocket protocol, which answers the handshake (or rejects it) itself.
function Protocol:upgrade(ws, scope)
  local ctx = self.ctx
  local buffered = self.buf
  self.buf = ""
  self.state = "upgraded"
  self.upgraded = ws.upgrade({
    scope = scope, transport = self.transport, app = ctx.app, clock = ctx.clock, buffered = buffered,
    config = ctx.ws_config, uv = ctx.uv, headers = head_prefix(ctx), log = ctx.log,
  })
end

local function deliver(self, cycle, data)
  local n = #data
  self.body_total = self.body_total + n
  local max = self.ctx.max_body
  if max and self.body_total > max then
    if cycle.response_started then
      self:abort()
    else
      self:reject(413, "Request body too large")
    end
    return false
  end
  if self.discard then return true end
  local k = cycle.nchunks + 1
  cycle.nchunks, cycle.dirty = k, true
  local chunks = cycle.chunks
  if not chunks then
    chunks = {}
    cycle.chunks = chunks
  end
  chunks[k] = data
  cycle.body_bytes = cycle.body_bytes + n
  return true
end

local function body_complete(self, cycle)
  cycle.body_done = true
  if self.discard then
    self.cycle = false
    self.state = "head"
  else
    self.state = "wait"
  end
end

-- Reads what it can of the current body; true when the state changed (the caller loops).
function Protocol:read_body()
  local cycle = self.cycle
  local buf = self.buf
  local got = false
  if not self.chunked then
    local n = #buf
    if n == 0 then return false end
    local want = self.remaining
    local data
    if n <= want then
      data, self.buf = buf, ""
    else
      data, self.buf = sub(buf, 1, want), sub(buf, want + 1)
    end
    self.remaining = want - #data
    if not deliver(self, cycle, data) then return false end
    got = true
    if self.remaining == 0 then body_complete(self, cycle) end
  else
    local pos, len = 1, #buf
    while true do
      local cs = self.chunk_state
      if cs == "size" then
        local e = find(buf, "\r\n", pos, true)
        if not e then
          if len - pos > 1024 then return self:reject(400, "Invalid chunk size line") or false end
          break
        end
        local line = sub(buf, pos, e - 1)
        local hex = line:match("^(%x+)")
        if not hex or #hex > 15 then return self:reject(400, "Invalid chunk size") or false end
        local rest = sub(line, #hex + 1)
        if rest ~= "" and not find(rest, "^[ \t]*;[^\r\n]*$") then
          return self:reject(400, "Invalid chunk size") or false
        end
        pos = e + 2
        local size = tonumber(hex, 16)
        if size == 0 then
          self.chunk_state = "trailers"
        else
          self.remaining = size
          self.chunk_state = "data"
        end
      elseif cs == "data" then
        if pos > len then break end
        local want = self.remaining
        local avail = len - pos + 1
        local take = avail < want and avail or want
        local data = (pos == 1 and take == len) and buf or sub(buf, pos, pos + take - 1)
        pos = pos + take
        self.remaining = want - take
        if not deliver(self, cycle, data) then return false end
        got = true
        if self.remaining == 0 then self.chunk_state = "crlf" end
      elseif cs == "crlf" then
        if len - pos + 1 < 2 then break end
        if sub(buf, pos, pos + 1) ~= "\r\n" then return self:reject(400, "Invalid chunk data end") or false end
        pos = pos + 2
        self.chunk_state = "size"
      else -- trailers: field lines until an empty line, read and dropped
        local e = find(buf, "\r\n", pos, true)
        if not e then
          if len - pos > self.ctx.max_head then return self:reject(431, "Request trailers too large") or false end
          break
        end
        if e == pos then
          pos = pos + 2
          got = true
          self.buf = sub(buf, pos)
          body_complete(self, cycle)
          break
        end
        if find(sub(buf, pos, e - 1), "[\n\r%z]") then return self:reject(400, "Invalid trailer line") or false end
        pos = e + 2
      end
    end
    if self.state == "body" then self.buf = pos > len and "" or sub(buf, pos) end
  end
  if got and cycle.waiting == "receive" then resume(self, cycle) end
  return self.state ~= "body"
end

---The peer will send no more.
function Protocol:eof_received()
  local state = self.state
  if state == "upgraded" then return self.upgraded:eof_received() end
  if state == "closed" then return end
  if state == "wait" then
    -- the request is complete: let the response finish, then close
    self.cycle.keep_alive = false
    return
  end
  local cycle = self.cycle
  if state == "body" and cycle and not self.discard then
    cycle.disconnected = true
    if cycle.waiting then resume(self, cycle) end
  end
  self:close()
end

---The connection is gone (closed by either side, or failed).
---@param err string|nil
function Protocol:connection_lost(err)
  if self.state == "upgraded" then
    self.state = "closed"
    return self.upgraded:connection_lost(err)
  end
  self.lost_error = err
  self.state = "closed"
  self.deadline = nil
  local cycle = self.cycle
  if cycle and not cycle.disconnected then
    cycle.disconnected = true
    if cycle.waiting then resume(self, cycle) end
  end
end

---The write queue went back under the low-water mark.
function Protocol:drained()
  if self.state == "upgraded" then
    local ws = self.upgraded
    if ws.drained then ws:drained() end
    return
  end
  self.want_drain = false
  local cycle = self.cycle
  if cycle and cycle.waiting == "send" then resume(self, cycle) end
end

---Closes the connection when its deadline passed (keep-alive idle, or a request head too slow).
---@param now number milliseconds, same clock as ctx.clock
---@return boolean closed
function Protocol:check_timeout(now)
  if self.state == "upgraded" then
    local ws = self.upgraded
    return ws.check_timeout and ws:check_timeout(now) or false
  end
  local deadline = self.deadline
  if not deadline or now < deadline or self.state == "closed" then return false end
  if self.deadline_kind == "head" and self.buf ~= "" then
    self.ctx.log:debug("Closing a connection whose request head did not arrive in time")
    self:reject(408, "Request head timeout")
  else
    self:close()
  end
  return true
end

---Graceful shutdown: idle connections close now, busy ones after their current response.
function Protocol:shutdown()
  if self.state == "upgraded" then return self.upgraded:shutdown() end
  if self.state == "closed" then return end
  if self.state == "head" then
    -- Closing at once would fail a request already on its way: the first one of a connection accepted
    -- just before, or the next one a proxy sends on its idle keep-alive connection (nginx does not retry
    -- a POST). A short grace lets it arrive; it is answered with connection: close.
    self.deadline = math.min(self.deadline, self.ctx.clock() + SHUTDOWN_HEAD_GRACE_MS)
  elseif self.cycle then
    self.cycle.keep_alive = false
  end
end

---True when no request is in progress on this connection.
function Protocol:is_idle()
  return self.state == "head" and self.buf == ""
end

---------------------------------------------------------------------------------------------------
-- The request cycle: receive and send.

function receive_event(self)
  local proto = self.proto
  self.dirty = true -- final_delivered, waiting
  if self.expect_100 then
    self.expect_100 = false
    if not self.response_started and not self.disconnected then proto.transport:write(CONTINUE) end
  end
  while true do
    if self.disconnected or self.response_complete then return { type = "http.disconnect" } end
    local n = self.nchunks
    if n > 0 or (self.body_done and not self.final_delivered) then
      local body
      if n == 1 then body = self.chunks[1] elseif n == 0 then body = "" else body = concat(self.chunks, "", 1, n) end
      if n > 0 then self.chunks = false end
      self.nchunks = 0
      self.body_bytes = 0
      local more = not self.body_done
      if not more then self.final_delivered = true end
      if proto.read_paused and proto.cycle == self then update_reading(proto) end
      return { type = "http.request", body = body, more_body = more }
    end
    if co_running() ~= self.co then
      error("receive: must be called from the request's coroutine", 2)
    end
    self.waiting = "receive"
    co_yield()
    self.waiting = false
  end
end

local function wait_drain(self)
  local proto = self.proto
  local transport = proto.transport
  while not self.disconnected and transport:get_write_queue_size() > M.HIGH_WATER do
    if co_running() ~= self.co then return end -- cannot wait outside the request's coroutine
    proto.want_drain = true
    self.waiting, self.dirty = "send", true
    co_yield()
    self.waiting = false
  end
end

local function bad(msg, level)
  error("send: " .. msg, level + 1)
end

-- send() of a request whose response completed (its connection has moved on to another request).
function stale_send(event)
  if type(event) ~= "table" then bad("event must be a table", 2) end
  local t = event.type
  if t == "http.response.start" or t == "http.response.body" or t == "http.response.pathsend"
    or t == "http.response.trailers" then
    bad(t .. " after the response completed", 2)
  end
  bad("unknown event type " .. tostring(t), 2)
end

-- The message for what is wrong with response header `i` (kind as uv.http_response_headers names it).
local function header_error(headers, i, kind)
  local h = headers[i]
  if kind == "pair" then return format("header %d must be a pair of strings", i) end
  if kind == "name" then return format("invalid header name %q", h[1]) end
  if kind == "value" then return format("invalid value for header %q", h[1]) end
  if kind == "content-length" then return "invalid content-length " .. h[2] end
  return "transfer-encoding is chosen by the server"
end

function cycle_start(self, event)
  if self.response_started then bad("http.response.start sent twice", 3) end
  local status = event.status
  if not STATUS_OK[status] then
    if mtype(status) ~= "integer" or status < 100 or status > 999 then
      bad("http.response.start needs an integer 'status' in 100..999, got " .. tostring(status), 3)
    end
    STATUS_OK[status] = true
  end
  local headers = event.headers
  if headers == nil then headers = {} elseif type(headers) ~= "table" then
    bad("http.response.start 'headers' must be an array of {name, value} pairs", 3)
  end
  local hdrs = ""
  local cl, app_connection
  local native = self.proto.ctx.response_headers
  if native then
    -- luvrs: the same checks and the joined lines in one call (uv.http_response_headers)
    local connection, close
    hdrs, cl, connection, close = native(headers)
    if not hdrs then bad(header_error(headers, cl, connection), 3) end
    if close then self.keep_alive = false end
    app_connection = connection
  else
    -- the app's header lines as one string: a concatenation per header beats a parts table and its growth
    for i = 1, #headers do
      local h = headers[i]
      if type(h) ~= "table" then bad(header_error(headers, i, "pair"), 3) end
      local name, value = h[1], h[2]
      -- Names and short values seen before are known valid: the caches save the checks, which are
      -- calls into C and cost more than the rest of the header's handling.
      local lname = valid_names[name]
      if not lname then
        if type(name) ~= "string" then bad(header_error(headers, i, "pair"), 3) end
        if not find(name, TOKEN) then bad(header_error(headers, i, "name"), 3) end
        lname = lower(name)
        if nvalid < 1024 then
          valid_names[name] = lname
          nvalid = nvalid + 1
        end
      end
      if not valid_values[value] then
        if type(value) ~= "string" then bad(header_error(headers, i, "pair"), 3) end
        if find(value, "\r", 1, true) or find(value, "\n", 1, true) or find(value, "\0", 1, true) then
          bad(header_error(headers, i, "value"), 3)
        end
        if nvalues < 4096 and #value <= 256 then
          valid_values[value] = true
          nvalues = nvalues + 1
        end
      end
      if lname == "content-length" then
        if not find(value, "^%d+$") then bad(header_error(headers, i, "content-length"), 3) end
        cl = tonumber(value)
      elseif lname == "connection" then
        if find(lower(value), "close", 1, true) then self.keep_alive = false end
        app_connection = true
      elseif lname == "transfer-encoding" then
        bad(header_error(headers, i, "transfer-encoding"), 3)
      end
      hdrs = hdrs .. name .. ": " .. value .. "\r\n"
    end
  end
  self.hdrs = hdrs
  self.app_connection = app_connection or false
  self.response_started = true
  self.status = status
  self.cl = cl or false
  self.sent = 0
  self.no_body = self.scope.method == "HEAD" or status < 200 or status == 204 or status == 304
  local want_trailers = event.trailers and self.trailers_ok or false
  self.want_trailers = want_trailers
  if want_trailers then self.dirty = true end
  if self.disconnected then return nil, "disconnected" end
  return true
end

-- The end of a head: the framing header chosen from what we know at the first body event, the
-- connection header, the blank line. Returned as two strings the caller joins to the rest of the head
-- (or hands to transport.writev with it): a third concatenation here would cost an interned string.
-- Marks the head sent.
local END = "\r\n"
local CLOSE_END = "connection: close\r\n\r\n"
local KEEP_ALIVE_END = "connection: keep-alive\r\n\r\n"
function head_end(self, first_len, final)
  local framing, tail = "", END
  if self.no_body then
    if self.scope.method == "HEAD" and not self.cl and final and first_len > 0 then framing = CL_LINE[first_len] end
  elseif self.cl then -- luacheck: ignore 542
  elseif final and not self.want_trailers then
    self.cl = first_len
    framing = CL_LINE[first_len]
  elseif self.http_version == "1.1" then
    self.chunked_out, self.dirty = true, true
    framing = "transfer-encoding: chunked\r\n"
  else
    self.keep_alive = false -- HTTP/1.0 streaming: the end of the connection ends the body
  end
  if not self.keep_alive then
    if not self.app_connection then tail = CLOSE_END end
  elseif self.http_version == "1.0" and not self.app_connection then
    tail = KEEP_ALIVE_END
  end
  self.head_sent = true
  return framing, tail
end

-- The response head, joined, for a write of its own.
local function joined_head(self, framing, tail)
  return STATUS_LINE[self.status] .. head_prefix(self.proto.ctx) .. self.hdrs .. framing .. tail
end

-- A response head and its whole body in one write; with transport.writev, no joined string.
local function write_whole(self, transport, framing, tail, body)
  local status_line, prefix = STATUS_LINE[self.status], head_prefix(self.proto.ctx)
  local writev = transport.writev
  if writev then
    writev(transport, status_line, prefix, self.hdrs, framing, tail, body)
  else
    transport:write(status_line .. prefix .. self.hdrs .. framing .. tail .. body) -- one string, not two
  end
end

function cycle_body(self, event)
  if not self.response_started then bad("http.response.body before http.response.start", 3) end
  if self.response_complete or self.body_finished then
    bad("http.response.body after the response completed", 3)
  end
  local body = event.body
  if body == nil then
    body = ""
  elseif type(body) ~= "string" then
    bad("http.response.body 'body' must be a string", 3)
  end
  local more = event.more_body and true or false
  if self.disconnected then
    if not more then self.response_complete = true end
    return nil, "disconnected"
  end
  local len = #body
  local proto = self.proto
  if not (more or self.head_sent or self.no_body or self.cl or self.want_trailers) and len <= 16384
    and self.keep_alive and self.http_version == "1.1" then
    -- The usual response, one small body with its length unknown until now, on a connection that stays
    -- open: what head_end and the general path below would do, without their tests.
    self.cl, self.sent, self.head_sent = len, len, true
    write_whole(self, proto.transport, CL_LINE[len], END, body)
    response_complete(proto, self)
    if self.disconnected then return nil, "disconnected" end
    return true
  end
  local framing, tail -- set when the head goes out with this event
  if not self.head_sent then framing, tail = head_end(self, len, not more) end
  if not self.no_body then
    -- the body bytes sent: checked against content-length, and the access log's $bytes
    local sent = self.sent + len
    local cl = self.cl
    if cl and sent > cl then
      proto:abort()
      bad("response body longer than content-length", 3)
    end
    self.sent = sent
    if cl and not more and sent < cl then
      proto:abort()
      bad("response body shorter than content-length", 3)
    end
  end
  local transport = proto.transport
  local head
  if framing then
    if self.no_body or self.chunked_out or len > 16384 then
      head = joined_head(self, framing, tail)
    else
      write_whole(self, transport, framing, tail, body)
    end
  end
  if self.no_body then
    if head then transport:write(head) end
  elseif self.chunked_out then
    local last = (not more and not self.want_trailers) and "0\r\n\r\n" or nil
    if len > 0 then
      if head then
        transport:write({ head, format("%x\r\n", len), body, last and "\r\n0\r\n\r\n" or "\r\n" })
      else
        transport:write({ format("%x\r\n", len), body, last and "\r\n0\r\n\r\n" or "\r\n" })
      end
    elseif head then
      transport:write(last and (head .. last) or head)
    elseif last then
      transport:write(last)
    end
  elseif head then
    transport:write({ head, body })
  elseif len > 0 and not framing then
    transport:write(body)
  end
  if more then
    wait_drain(self)
  elseif self.want_trailers then
    self.body_finished = true
  else
    response_complete(proto, self)
  end
  if self.disconnected then return nil, "disconnected" end
  return true
end

function Cycle:trailers(event)
  if not self.trailers_ok then bad("http.response.trailers needs the request to send 'TE: trailers'", 3) end
  if not self.want_trailers then bad("http.response.trailers without trailers = true in the start event", 3) end
  if self.response_complete then bad("http.response.trailers after the response completed", 3) end
  if not self.head_sent then
    local ok, err = cycle_body(self, { body = "", more_body = true })
    if not ok then return ok, err end
  end
  local headers = event.headers or {}
  local parts, n = {}, 0
  for i = 1, #headers do
    local name, value = headers[i][1], headers[i][2]
    if type(name) ~= "string" or not find(name, TOKEN) or type(value) ~= "string" or find(value, "[\r\n%z]") then
      bad(format("invalid trailer %d", i), 3)
    end
    parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = name, ": ", value, "\r\n"
    n = n + 4
  end
  local more = event.more_trailers and true or false
  if self.disconnected then
    if not more then self.response_complete = true end
    return nil, "disconnected"
  end
  if not self.trailer_started then
    self.trailer_started = true
    if self.chunked_out then self.proto.transport:write("0\r\n") end
  end
  if self.chunked_out and n > 0 then self.proto.transport:write(concat(parts, "", 1, n)) end
  if not more then
    if self.chunked_out then self.proto.transport:write("\r\n") end
    response_complete(self.proto, self)
  end
  return true
end

function Cycle:pathsend(event)
  if not self.response_started then bad("http.response.pathsend before http.response.start", 3) end
  if self.head_sent or self.response_complete then bad("http.response.pathsend after body events", 3) end
  local path = event.path
  if type(path) ~= "string" then bad("http.response.pathsend needs a string 'path'", 3) end
  local f, err = io.open(path, "rb")
  if not f then bad("http.response.pathsend cannot open " .. tostring(err), 3) end
  local size = f:seek("end")
  if self.disconnected then
    f:close()
    self.response_complete = true
    return nil, "disconnected"
  end
  if self.cl and self.cl ~= size then
    f:close()
    self.proto:abort()
    bad("http.response.pathsend: content-length differs from the file size", 3)
  end
  self.want_trailers = false
  local framing, tail = head_end(self, size, true)
  local head = joined_head(self, framing, tail)
  local proto = self.proto
  local transport = proto.transport
  transport:write(head)
  if self.no_body or size == 0 then
    f:close()
  elseif transport.sendfile then
    f:close()
    local done, failure = false, nil
    transport:sendfile(path, 0, size, function(e)
      done, failure = true, e
      if self.waiting == "send" then resume(proto, self) end
    end)
    while not done and not self.disconnected do
      self.waiting, self.dirty = "send", true
      co_yield()
      self.waiting = false
    end
    if failure then
      proto:abort()
      return nil, "disconnected"
    end
  else
    f:seek("set", 0)
    while not self.disconnected do
      local chunk = f:read(65536)
      if not chunk then break end
      transport:write(chunk)
      wait_drain(self)
    end
    f:close()
  end
  if self.disconnected then
    self.response_complete = true
    return nil, "disconnected"
  end
  if not self.no_body then self.sent = size end
  response_complete(proto, self)
  return true
end

function send_event(self, event)
  if type(event) ~= "table" then bad("event must be a table", 2) end
  local t = event.type
  if t == "http.response.body" then return cycle_body(self, event)
  elseif t == "http.response.start" then return cycle_start(self, event)
  elseif t == "http.response.pathsend" then return self:pathsend(event)
  elseif t == "http.response.trailers" then return self:trailers(event)
  end
  bad("unknown event type " .. tostring(t), 2)
end

function response_complete(self, cycle)
  cycle.response_complete = true
  local ctx = self.ctx
  if ctx.log.access_enabled then
    local ms = cycle.t0 and (ctx.hrtime() - cycle.t0) / 1e6 or 0
    local client = cycle.scope.client
    if client == self.client then
      client = self.client_str
      if not client then
        client = logging.client_str(self.client)
        self.client_str = client
      end
    end
    -- the scope and the body bytes feed a custom --access-log-format; the default line ignores them
    ctx.log:access(client, cycle.scope.method, cycle.target, cycle.http_version, cycle.status,
      REASONS[cycle.status] or "", ms, cycle.scope, cycle.sent)
  end
  if self.cycle ~= cycle or self.state == "closed" then return end
  if not cycle.keep_alive then
    self:close()
    return
  end
  if cycle.body_done then
    self.cycle = false
    self.state = "head"
  elseif cycle.expect_100 or self.chunked or self.remaining > M.READ_BUFFER then
    -- the client waits for 100-continue, or too much body is left to read and drop: close instead
    self:close()
    return
  else
    self.discard = true
    cycle.chunks, cycle.nchunks, cycle.body_bytes = false, 0, 0
    self.deadline = ctx.clock() + ctx.head_ms
    self.deadline_kind = "body"
  end
  if not self.processing then process(self) end
end

-- The end of an app call that raised, or returned before its response completed; the worker has
-- already taken the call off ctx.active.
function app_done(self, gen, ok, err)
  local proto = self.proto
  local ctx = proto.ctx
  if self.gen ~= gen or self.response_complete then
    if not ok then ctx.log:error("Exception in LASGI application\n" .. tostring(err)) end
    return
  end
  if not ok then
    ctx.log:error("Exception in LASGI application\n" .. tostring(err))
  elseif not self.response_started then
    ctx.log:error("LASGI callable returned without starting response.")
  else
    ctx.log:error("LASGI callable returned without completing response.")
  end
  self.response_complete = true
  if proto.cycle ~= self or proto.state == "closed" or self.disconnected then return end
  if not self.response_started then
    self.status = 500
    proto.transport:write(simple_response(ctx, 500, "Internal Server Error"))
    if ctx.log.access_enabled then
      proto.ctx.log:access(self.scope.client, self.scope.method, self.target, self.http_version, 500,
        "Internal Server Error", 0, self.scope, #"Internal Server Error\n")
    end
    proto:close()
  else
    proto:abort()
  end
end

M.Protocol = Protocol
M.Cycle = Cycle

---Checks a request head's fields and splits its target, as start_request does with the Lua parser: the
---Lua twin of luvrs's `uv.http_parse_request` (a differential spec holds them to the same results).
---Returns `raw_path, query_string, path, content_length|false, chunked, keep_alive, expect_100, trailers,
---upgrade|false, proxied`, or `false, status, reason`.
function M.scan_request(target, minor, headers, max_body)
  SCAN_ONLY.ctx.max_body = max_body
  return start_request(SCAN_ONLY, nil, target, minor, headers)
end
M.pool_size = function() return npool end

return M
