-- The WebSocket connection state machine (RFC 6455 + RFC 7692), fed with bytes like the HTTP protocol:
-- data_received(bytes), eof_received(), connection_lost(err), over an injected transport and clock, so specs
-- drive it without a socket. The HTTP protocol hands a connection over with websocket.upgrade{...} when a
-- request asks for `Upgrade: websocket` (see briefs/ws-integration.md).
local frames = require "luvicorn.websocket.frames"
local handshake = require "luvicorn.websocket.handshake"
local deflate = require "luvicorn.websocket.deflate"
local wsutf8 = require "luvicorn.websocket.utf8"

local websocket = {}

local concat = table.concat
local spack = string.pack

---Defaults, in the units of the command line (seconds, bytes, messages).
websocket.DEFAULTS = {
  ws_max_size = 16 * 1024 * 1024,
  ws_max_queue = 32,
  ws_ping_interval = 20.0,
  ws_ping_timeout = 20.0,
  ws_per_message_deflate = true,
  ws_close_timeout = 10.0,     -- how long to wait for the peer's close frame after sending ours
  ws_high_water = 64 * 1024,   -- send() yields while the write queue is above this
  ws_low_water = 16 * 1024,    -- ... until it drops to this
  ws_drain_poll = 5,           -- ms between write-queue checks while waiting for a drain
}

-- Bytes the client may send before the app accepts; past this reading pauses until the handshake ends.
local PRE_ACCEPT_BUFFER = 64 * 1024

websocket.is_upgrade = handshake.is_upgrade

---A clock over a luv-shaped loop module: `now()` in ms and `after(ms, fn)` returning a handle with
---`cancel()`. Without it (a plain function clock) the owner calls `check_timeout(now)` now and then.
---@param uv table
---@return table
function websocket.uv_clock(uv)
  if type(uv) ~= "table" or not uv.new_timer then error("websocket.uv_clock: uv must be a luv-shaped module", 2) end
  return {
    now = function() return uv.now() end,
    after = function(ms, fn)
      local t = uv.new_timer()
      local handle = {}
      function handle.cancel()
        if not t:is_closing() then t:stop(); t:close() end
      end
      t:start(math.max(0, math.ceil(ms)), 0, function()
        handle.cancel()
        fn()
      end)
      return handle
    end,
  }
end

---@class luvicorn.websocket.Protocol
local P = { __name = "luvicorn.websocket.Protocol" }
P.__index = P

local function log(self, level, msg)
  local l = self.log
  if type(l) == "table" and l[level] then
    l[level](l, msg)
  elseif type(l) == "function" then
    l(level, msg)
  elseif l == nil and level == "error" then
    io.stderr:write(msg, "\n")
  end
end

local function resume(self, co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then log(self, "error", "websocket: resuming the app failed: " .. tostring(err)) end
end

-- Wakes the app if it waits in receive(); it only ever waits on us there.
local function wake_receiver(self)
  local co = self.receiver
  if co then
    self.receiver = nil
    resume(self, co)
  end
end

-- Wakes every coroutine waiting in send() for the write queue to drain (an app may send from several).
local function wake_senders(self)
  local list = self.senders
  if #list == 0 then return end
  self.senders = {}
  for i = 1, #list do resume(self, list[i]) end
end

---------------------------------------------------------------------------------------------------
-- Time: named deadlines (ping, pong, close, drain) in clock milliseconds. check_timeout(now) fires the
-- due ones; with a clock that has after(), one timer per connection is kept armed for the earliest.

local function now(self)
  return self.now_fn()
end

local function arm(self)
  if not self.after or self.state == "closed" then return end
  local earliest
  for _, t in pairs(self.deadlines) do
    if not earliest or t < earliest then earliest = t end
  end
  if earliest == self.armed_at then return end
  if self.timer then
    self.timer.cancel()
    self.timer = nil
  end
  self.armed_at = earliest
  if earliest then
    self.timer = self.after(math.max(0, earliest - now(self)), function()
      self.timer, self.armed_at = nil, nil
      self:check_timeout(now(self))
      arm(self)
    end)
  end
end

local function set_deadline(self, name, ms)
  self.deadlines[name] = now(self) + ms
  arm(self)
end

local function clear_deadline(self, name)
  if self.deadlines[name] then
    self.deadlines[name] = nil
    arm(self)
  end
end

---------------------------------------------------------------------------------------------------
-- The transport.

local function update_reading(self)
  local want = self.pause_queue or self.pause_write or self.pause_handshake or false
  if self.state == "closed" or want == self.reading_paused then return end
  self.reading_paused = want
  if want then self.transport:pause_reading() else self.transport:resume_reading() end
end

-- Ends the connection: no more reads or writes; the app sees `self.final` from now on. `now` skips the
-- flush of queued writes (transport:abort, when the transport has it).
local function close_transport(self, abort)
  if self.state == "closed" then return end
  self.state = "closed"
  if not self.final then self.final = { code = frames.ABNORMAL, reason = "" } end
  self.deadlines = {}
  if self.timer then
    self.timer.cancel()
    self.timer = nil
  end
  if not self.transport_lost then
    local tr = self.transport
    if abort and tr.abort then tr:abort() else tr:close() end
  end
  if self.on_close then self.on_close(self) end
  wake_senders(self)
  wake_receiver(self)
end

local function write(self, data)
  if self.state == "closed" then return false end
  self.transport:write(data)
  return true
end

local function queue_size(self)
  local tr = self.transport
  if tr.write_queue_size then return tr:write_queue_size() end
  return tr:get_write_queue_size()
end

-- Waits for the write queue to drain to the low-water mark: the transport calls drained() (when
-- want_drain is set), and a clock with timers also polls, for transports that do not call back.
local function watch_drain(self)
  self.want_drain = true
  if self.after and not self.deadlines.drain then set_deadline(self, "drain", self.drain_poll) end
end

local function send_frame(self, opcode, payload, rsv1)
  return write(self, { frames.header(opcode, #payload, true, rsv1), payload })
end

-- Sends our close frame once; `wait` keeps the connection for the peer's answer (up to the close timeout),
-- otherwise the transport closes right away.
local function send_close(self, code, reason, wait, timeout_ms)
  if self.state == "closed" then return end
  if not self.sent_close then
    self.sent_close = true
    local payload = ""
    if code and code ~= frames.NO_STATUS then payload = frames.close_payload(code, reason) end
    send_frame(self, frames.CLOSE, payload)
  end
  self.deadlines.ping, self.deadlines.pong = nil, nil
  if not wait then
    close_transport(self)
    return
  end
  self.state = "closing"
  if not self.deadlines.close then
    set_deadline(self, "close", timeout_ms or self.close_timeout)
  else
    arm(self)
  end
end

-- Fails the connection (RFC 6455 7.1.7) with `code`. `in_sync` says the byte stream can still be framed, so
-- the peer's close frame can be awaited; otherwise the transport closes at once.
local function fail(self, code, msg, in_sync)
  log(self, "debug", ("websocket: closing with %d: %s"):format(code, msg))
  if not self.final then self.final = { code = code, reason = msg } end
  self.msg_opcode = nil
  send_close(self, code, msg, in_sync)
end

local function enqueue(self, ev)
  self.qn = self.qn + 1
  self.queue[self.qn] = ev
  if self.qn - self.qh + 1 >= self.max_queue and not self.pause_queue then
    self.pause_queue = true
    update_reading(self)
  end
end

local function complete_message(self)
  local data = concat(self.msg_parts)
  local opcode = self.msg_opcode
  local compressed = self.msg_compressed
  local validator = self.msg_utf8
  self.msg_opcode, self.msg_parts, self.msg_size, self.msg_utf8 = nil, nil, 0, nil
  if compressed then
    local out, code, msg = self.codec:decompress(data)
    if not out then return fail(self, code, msg, true) end
    data = out
    if opcode == frames.TEXT and not utf8.len(data) then
      return fail(self, frames.INVALID_DATA, "invalid UTF-8 in a text message", true)
    end
  elseif opcode == frames.TEXT and not validator:finish() then
    return fail(self, frames.INVALID_DATA, "invalid UTF-8 in a text message", true)
  end
  if opcode == frames.TEXT then
    enqueue(self, { type = "websocket.receive", text = data })
  else
    enqueue(self, { type = "websocket.receive", bytes = data })
  end
end

local function data_frame(self, f)
  local op = f.opcode
  if f.fin and op ~= frames.CONTINUATION and not f.rsv1 and not self.msg_opcode then
    -- Fast path: a whole message in one uncompressed frame, the common case.
    local payload = f.payload
    if op == frames.TEXT then
      if not utf8.len(payload) then
        return fail(self, frames.INVALID_DATA, "invalid UTF-8 in a text message", true)
      end
      return enqueue(self, { type = "websocket.receive", text = payload })
    end
    return enqueue(self, { type = "websocket.receive", bytes = payload })
  end
  if op == frames.CONTINUATION then
    if not self.msg_opcode then
      return fail(self, frames.PROTOCOL_ERROR, "continuation frame without a message", true)
    end
  else
    if self.msg_opcode then return fail(self, frames.PROTOCOL_ERROR, "new message inside a fragmented one", true) end
    self.msg_opcode = f.opcode
    self.msg_compressed = f.rsv1
    self.msg_parts = {}
    self.msg_size = 0
    if f.opcode == frames.TEXT and not f.rsv1 then self.msg_utf8 = wsutf8.new() end
  end
  local payload = f.payload
  self.msg_size = self.msg_size + #payload
  self.msg_parts[#self.msg_parts + 1] = payload
  if self.msg_utf8 and not self.msg_utf8:feed(payload) then
    return fail(self, frames.INVALID_DATA, "invalid UTF-8 in a text message", true)
  end
  if f.fin then complete_message(self) end
end

local function control_frame(self, f)
  local op = f.opcode
  if op == frames.PING then
    if self.state == "open" then
      send_frame(self, frames.PONG, f.payload)
      -- A peer that pings without reading would grow our write queue: stop reading until it drains.
      if queue_size(self) > self.high_water then
        self.pause_write = true
        update_reading(self)
        watch_drain(self)
      end
    end
  elseif op == frames.PONG then
    if self.ping_payload and f.payload == self.ping_payload then
      self.ping_payload = nil
      clear_deadline(self, "pong")
    end
  else -- close
    local code, reason, msg = frames.parse_close(f.payload)
    if not code then
      return fail(self, reason --[[@as integer]], msg, false)
    end
    if not self.final then self.final = { code = code, reason = reason } end
    if not self.sent_close then
      -- Echo the peer's code and reason (RFC 6455 5.5.1); an empty close is answered with an empty one.
      self.sent_close = true
      send_frame(self, frames.CLOSE, code == frames.NO_STATUS and "" or f.payload)
    end
    -- The server closes the TCP connection first (RFC 6455 7.1.1).
    close_transport(self)
  end
end

-- Parses and handles every complete frame buffered, then wakes the app once.
local function process(self)
  while self.state == "open" or self.state == "closing" do
    local parser = self.parser
    if self.msg_opcode then
      local left = (self.msg_compressed and self.max_compressed or self.max_size) - self.msg_size
      parser.limit, parser.limit_rsv1 = left, left
    else
      parser.limit, parser.limit_rsv1 = self.max_size, self.max_compressed
    end
    local f, code, msg = parser:next()
    if not f then
      if code then fail(self, code, msg, false) end
      break
    end
    if f.opcode >= 8 then
      control_frame(self, f)
    elseif self.state == "open" then
      data_frame(self, f)
    end
  end
  if self.qn >= self.qh then wake_receiver(self) end
end

local function check_event_headers(fn, headers)
  handshake.check_headers(fn, headers, 3)
end

-- Writes the denial response started with websocket.http.response.start.
local function http_body(self, ev)
  local body = ev.body or ""
  if type(body) ~= "string" then error("send: websocket.http.response.body body must be a string", 3) end
  local more = ev.more_body and true or false
  local r = self.http_response
  if not r.head_sent then
    r.head_sent = true
    local extra = { { "connection", "close" } }
    if r.has_length then
      r.framing = "length"
    elseif not more then
      r.framing = "length"
      extra[#extra + 1] = { "content-length", tostring(#body) }
    else
      r.framing = "chunked"
      extra[#extra + 1] = { "transfer-encoding", "chunked" }
    end
    write(self, handshake.response_head(r.status, self.default_headers, r.headers, extra))
  end
  if r.framing == "chunked" then
    if #body > 0 then write(self, { ("%x\r\n"):format(#body), body, "\r\n" }) end
    if not more then write(self, "0\r\n\r\n") end
  elseif #body > 0 then
    write(self, body)
  end
  if not more then
    r.done = true
    self.final = { code = frames.ABNORMAL, reason = "" }
    close_transport(self)
  end
end

local function open(self, ev)
  local sub = ev.subprotocol
  if sub ~= nil then
    if type(sub) ~= "string" or not handshake.is_token(sub) then
      error("send: websocket.accept subprotocol must be a token string", 3)
    end
    local offered = false
    for _, p in ipairs(self.scope.subprotocols) do
      if p == sub then offered = true end
    end
    if not offered then
      error(("send: websocket.accept subprotocol %q was not offered by the client"):format(sub), 3)
    end
  end
  check_event_headers("send: websocket.accept", ev.headers)
  local ext
  if self.deflate_params then
    ext = self.deflate_response
    self.codec = deflate.new(self.uv, self.deflate_params, self.max_size)
    self.parser.allow_rsv1 = true
  end
  write(self, handshake.accept_response(self.key, sub, ext, ev.headers, self.default_headers))
  self.state = "open"
  log(self, "info", ('%s - "WebSocket %s" [accepted]'):format(self.peer, self.scope.raw_path or self.scope.path))
  self.pause_handshake = false
  update_reading(self)
  if self.ping_interval > 0 then set_deadline(self, "ping", self.ping_interval) end
end

local function reject(self, status, body)
  write(self, handshake.error_response(status, body, nil, self.default_headers))
  if not self.final then self.final = { code = frames.ABNORMAL, reason = "" } end
  close_transport(self)
end

local function make_send(self)
  return function(ev)
    if type(ev) ~= "table" then error("send: event must be a table", 2) end
    local t = ev.type
    local state = self.state
    if t == "websocket.send" then
      if state == "handshake" then error("send: websocket.send before websocket.accept", 2) end
      if self.http_response then error("send: websocket.send after websocket.http.response.start", 2) end
      local text, bytes = ev.text, ev.bytes
      if (text == nil) == (bytes == nil) then
        error("send: websocket.send needs exactly one of text or bytes", 2)
      end
      local opcode, data = frames.TEXT, text
      if bytes ~= nil then
        if type(bytes) ~= "string" then error("send: websocket.send bytes must be a string", 2) end
        opcode, data = frames.BINARY, bytes
      else
        if type(text) ~= "string" then error("send: websocket.send text must be a string", 2) end
        if not utf8.len(text) then error("send: websocket.send text must be valid UTF-8", 2) end
      end
      if self.app_closed and state ~= "closed" then error("send: websocket.send after websocket.close", 2) end
      if state ~= "open" then return nil, "disconnected" end
      local rsv1 = false
      if self.codec then
        local z = self.codec:compress(data)
        if z then data, rsv1 = z, true end
      end
      send_frame(self, opcode, data, rsv1)
      if queue_size(self) > self.high_water then
        local co, main = coroutine.running()
        if main then error("send: must be called inside a coroutine", 2) end
        self.senders[#self.senders + 1] = co
        watch_drain(self)
        coroutine.yield()
        if self.state ~= "open" and self.state ~= "closing" then return nil, "disconnected" end
      end
      return true
    elseif t == "websocket.accept" then
      if state == "closed" then return nil, "disconnected" end
      if state ~= "handshake" or self.http_response then
        error("send: websocket.accept after the handshake ended", 2)
      end
      open(self, ev)
      process(self)
      return true
    elseif t == "websocket.close" then
      local code, reason = ev.code, ev.reason
      if code ~= nil and (math.type(code) ~= "integer" or not frames.valid_close_code(code)) then
        error("send: websocket.close code must be 1000..1003, 1007..1014 or 3000..4999", 2)
      end
      if reason ~= nil and (type(reason) ~= "string" or not utf8.len(reason)) then
        error("send: websocket.close reason must be a UTF-8 string", 2)
      end
      if self.app_closed then error("send: websocket.close sent twice", 2) end
      if self.http_response then error("send: websocket.close after websocket.http.response.start", 2) end
      self.app_closed = true
      if state == "handshake" then
        -- Closing before accept denies the upgrade (LASGI: HTTP 403).
        log(self, "info", ('%s - "WebSocket %s" 403'):format(self.peer, self.scope.raw_path or self.scope.path))
        reject(self, 403, "Forbidden")
        return true
      end
      if state ~= "open" then return nil, "disconnected" end
      send_close(self, code or frames.NORMAL, reason or "", true)
      return true
    elseif t == "websocket.http.response.start" then
      if state == "closed" then return nil, "disconnected" end
      if state ~= "handshake" or self.http_response or self.app_closed then
        error("send: websocket.http.response.start after the handshake ended", 2)
      end
      local status = ev.status
      if math.type(status) ~= "integer" or status < 100 or status > 599 then
        error("send: websocket.http.response.start status must be an integer 100..599", 2)
      end
      check_event_headers("send: websocket.http.response.start", ev.headers)
      local has_length = false
      for _, h in ipairs(ev.headers or {}) do
        if h[1]:lower() == "content-length" then has_length = true end
      end
      self.http_response = { status = status, headers = ev.headers, has_length = has_length }
      log(self, "info", ('%s - "WebSocket %s" %d'):format(self.peer, self.scope.raw_path or self.scope.path, status))
      return true
    elseif t == "websocket.http.response.body" then
      local r = self.http_response
      if not r then error("send: websocket.http.response.body before websocket.http.response.start", 2) end
      if r.done then error("send: websocket.http.response.body after the response completed", 2) end
      if state == "closed" then return nil, "disconnected" end
      http_body(self, ev)
      return true
    end
    error(("send: unknown event type %q"):format(tostring(t)), 2)
  end
end

local function make_receive(self)
  return function()
    while true do
      if self.qh <= self.qn then
        local ev = self.queue[self.qh]
        self.queue[self.qh] = nil
        self.qh = self.qh + 1
        if self.qh > self.qn then self.qh, self.qn = 1, 0 end
        if self.pause_queue and self.qn - self.qh + 1 < self.max_queue then
          self.pause_queue = false
          update_reading(self)
        end
        return ev
      end
      if self.state == "closed" then
        return { type = "websocket.disconnect", code = self.final.code, reason = self.final.reason }
      end
      local co, main = coroutine.running()
      if main then error("receive: must be called inside the app's coroutine", 2) end
      self.receiver = co
      coroutine.yield()
    end
  end
end

-- Runs after the app returns or raises, inside its coroutine.
local function app_done(self, ok, err)
  self.app_finished = true
  if not ok then log(self, "error", "websocket: app error: " .. tostring(err)) end
  if self.state == "handshake" then
    if self.http_response then
      -- A denial response cut short cannot be completed.
      close_transport(self)
    else
      -- No accept, close or response: like Uvicorn, a 500.
      if ok then log(self, "error", "websocket: app returned without accepting or closing the connection") end
      reject(self, 500, "Internal Server Error")
    end
  elseif self.state == "open" then
    if ok then
      send_close(self, frames.NORMAL, "", true)
    else
      if not self.final then self.final = { code = frames.INTERNAL_ERROR, reason = "" } end
      send_close(self, frames.INTERNAL_ERROR, "", true)
    end
  end
  if self.on_app_done then self.on_app_done(self, ok, err) end
end

local function num(config, name)
  local v = config[name]
  if v == nil then v = websocket.DEFAULTS[name] end
  if type(v) ~= "number" or v < 0 then
    error(("websocket.upgrade: config.%s must be a non-negative number"):format(name), 3)
  end
  return v
end

local function websocket_scope(http)
  local scheme = http.scheme == "https" and "wss" or (http.scheme == "wss" and "wss" or "ws")
  local scope = {}
  for k, v in pairs(http) do scope[k] = v end
  scope.type = "websocket"
  scope.method = nil
  scope.scheme = scheme
  scope.lasgi = http.lasgi or { version = "1.0", spec_version = "1.0" }
  scope.extensions = { ["websocket.http.response"] = {} }
  return scope
end

---@class luvicorn.websocket.UpgradeOptions
---@field scope table the request's HTTP scope (type "http", method, http_version, headers, path, ...)
---@field transport table write(data|array), close() (after queued writes), abort()?, pause_reading(),
---resume_reading(), write_queue_size() or get_write_queue_size(); all called as methods (tr:write(...))
---@field app function|table the LASGI app
---@field clock table|function a function returning ms (the owner then calls check_timeout(now)), or
---{now(): ms, after(ms, fn): {cancel()}} to set its own timers (see websocket.uv_clock)
---@field buffered? string bytes received after the request head
---@field config? table ws_max_size, ws_max_queue, ws_ping_interval / ws_ping_timeout / ws_close_timeout (s),
---ws_per_message_deflate
---@field uv? table loop module, for uv.new_deflate / uv.new_inflate (permessage-deflate needs them)
---@field headers? table|string default response headers: {name, value} pairs or ready "name: value\r\n" lines
---@field log? table|function logger: object with info/error/debug methods, or fn(level, msg)
---@field on_close? fun(p: luvicorn.websocket.Protocol) called once when the transport is closed
---@field on_app_done? fun(p: luvicorn.websocket.Protocol, ok: boolean, err: any) called when the app ends

---Takes over a connection whose request asked for `Upgrade: websocket`. Validates the handshake (answering
---400/426 itself), then runs the app in its own coroutine. Returns the protocol object, which receives
---the connection's further data_received / eof_received / connection_lost / drained / check_timeout calls.
---@param opts luvicorn.websocket.UpgradeOptions
---@return luvicorn.websocket.Protocol
function websocket.upgrade(opts)
  if type(opts) ~= "table" then error("websocket.upgrade: opts must be a table", 2) end
  local http = opts.scope
  if type(http) ~= "table" or type(http.headers) ~= "table" then
    error("websocket.upgrade: opts.scope must be an HTTP scope with headers", 2)
  end
  local tr = opts.transport
  if type(tr) ~= "table" and type(tr) ~= "userdata" then
    error("websocket.upgrade: opts.transport must be a transport", 2)
  end
  for _, fn in ipairs { "write", "close", "pause_reading", "resume_reading" } do
    if not tr[fn] then error("websocket.upgrade: opts.transport." .. fn .. " is missing", 2) end
  end
  if not tr.write_queue_size and not tr.get_write_queue_size then
    error("websocket.upgrade: opts.transport.write_queue_size is missing", 2)
  end
  local app = opts.app
  if type(app) ~= "function" and not (getmetatable(app) or {}).__call then
    error("websocket.upgrade: opts.app must be callable", 2)
  end
  local clock, now_fn, after = opts.clock, nil, nil
  if type(clock) == "function" then
    now_fn = clock
  elseif type(clock) == "table" and type(clock.now) == "function" then
    now_fn, after = clock.now, clock.after
  else
    error("websocket.upgrade: opts.clock must be a function returning ms or a table with now() and after()", 2)
  end
  if opts.buffered ~= nil and type(opts.buffered) ~= "string" then
    error("websocket.upgrade: opts.buffered must be a string", 2)
  end
  local config = opts.config or {}
  if type(config) ~= "table" then error("websocket.upgrade: opts.config must be a table", 2) end

  local client = http.client
  local self = setmetatable({
    transport = tr, now_fn = now_fn, after = after, deadlines = {}, log = opts.log, uv = opts.uv,
    reading_paused = false,
    on_close = opts.on_close, on_app_done = opts.on_app_done,
    default_headers = opts.headers,
    peer = client and ((client[1] or "?") .. ":" .. tostring(client[2] or "?")) or "-",
    max_size = math.floor(num(config, "ws_max_size")),
    max_queue = math.max(1, math.floor(num(config, "ws_max_queue"))),
    -- DEFLATE can expand incompressible data slightly (a few bytes per block): a compressed message may
    -- be this much larger than --ws-max-size, which still bounds what it inflates to.
    max_compressed = math.floor(num(config, "ws_max_size")) + math.floor(num(config, "ws_max_size")) // 64 + 1024,
    ping_interval = num(config, "ws_ping_interval") * 1000,
    ping_timeout = num(config, "ws_ping_timeout") * 1000,
    close_timeout = num(config, "ws_close_timeout") * 1000,
    high_water = num(config, "ws_high_water"),
    low_water = num(config, "ws_low_water"),
    drain_poll = num(config, "ws_drain_poll"),
    state = "handshake",
    queue = { { type = "websocket.connect" } }, qh = 1, qn = 1,
    senders = {},
    parser = frames.new_parser { require_mask = true },
    ping_count = 0,
    msg_size = 0,
  }, P)
  local deflate_on = config.ws_per_message_deflate
  if deflate_on == nil then deflate_on = websocket.DEFAULTS.ws_per_message_deflate end

  local req, status, extra, reason = handshake.check(http.method, http.http_version, http.headers)
  self.scope = websocket_scope(http)
  self.scope.subprotocols = req and req.subprotocols or {}
  if not req then
    log(self, "info", ('%s - "WebSocket %s" %d (%s)'):format(self.peer, http.raw_path or http.path, status, reason))
    self.queue, self.qh, self.qn = {}, 1, 0
    write(self, handshake.error_response(status, reason .. "\n", extra, self.default_headers))
    close_transport(self)
    return self
  end
  self.key = req.key
  if deflate_on and deflate.available(opts.uv) then
    self.deflate_response, self.deflate_params = deflate.negotiate(req.extensions)
  end
  if opts.buffered and #opts.buffered > 0 then self.parser:feed(opts.buffered) end
  if self.parser:buffered() > PRE_ACCEPT_BUFFER then
    self.pause_handshake = true
    update_reading(self)
  end

  local receive, send = make_receive(self), make_send(self)
  local co = coroutine.create(function()
    local ok, err = xpcall(app, debug.traceback, self.scope, receive, send)
    app_done(self, ok, err)
  end)
  self.co = co
  resume(self, co)
  return self
end

---Bytes read from the socket.
---@param data string
function P:data_received(data)
  if self.state == "closed" then return end
  self.parser:feed(data)
  if self.state == "handshake" then
    if self.parser:buffered() > PRE_ACCEPT_BUFFER and not self.pause_handshake then
      self.pause_handshake = true
      update_reading(self)
    end
    return
  end
  process(self)
end

---The write queue went back under the low-water mark (called by the transport when want_drain is set).
function P:drained()
  self.want_drain = false
  self.deadlines.drain = nil
  if self.state == "closed" then return end
  if self.pause_write then
    self.pause_write = false
    update_reading(self)
  end
  wake_senders(self)
end

---Fires the deadlines that are due: keepalive pings, the pong timeout (close 1011), the close-handshake
---timeout. With a plain function clock the owner calls this now and then (about once a second is enough).
---@param now_ms number milliseconds on the same clock
---@return boolean closed true when this call closed the connection
function P:check_timeout(now_ms)
  if self.state == "closed" then return false end
  local d = self.deadlines
  if self.want_drain then
    if queue_size(self) <= self.low_water then
      self:drained()
    elseif self.after then
      set_deadline(self, "drain", self.drain_poll)
    end
  end
  if d.close and now_ms >= d.close then
    d.close = nil
    log(self, "debug", "websocket: no close frame from the peer in time")
    close_transport(self, true)
    return true
  end
  if d.pong and now_ms >= d.pong then
    d.pong = nil
    if not self.final then self.final = { code = frames.INTERNAL_ERROR, reason = "keepalive ping timeout" } end
    log(self, "info", ("%s - WebSocket keepalive ping timeout"):format(self.peer))
    send_close(self, frames.INTERNAL_ERROR, "keepalive ping timeout", true)
    -- An unresponsive peer may never take what is queued: a flushing close could wait forever.
    close_transport(self, queue_size(self) > 0)
    return true
  end
  if d.ping and now_ms >= d.ping then
    d.ping = nil
    if self.state == "open" then
      if not self.ping_payload then
        self.ping_count = self.ping_count + 1
        self.ping_payload = spack(">I4", self.ping_count & 0xFFFFFFFF)
        send_frame(self, frames.PING, self.ping_payload)
        if self.ping_timeout > 0 then d.pong = now_ms + self.ping_timeout end
      end
      d.ping = now_ms + self.ping_interval
    end
    arm(self)
  end
  return false
end

---The peer closed its sending side. Without a close frame first this is an abnormal closure (1006).
function P:eof_received()
  if self.state == "closed" then return end
  if not self.final then self.final = { code = frames.ABNORMAL, reason = "" } end
  close_transport(self)
end

---The socket is gone (error or closed by either side).
---@param err? string
function P:connection_lost(err)
  if self.state == "closed" then return end
  if err then log(self, "debug", "websocket: connection lost: " .. tostring(err)) end
  if not self.final then self.final = { code = frames.ABNORMAL, reason = "" } end
  -- The socket is already gone: only the bookkeeping of close_transport is wanted.
  self.transport_lost = true
  close_transport(self)
end

---Graceful shutdown: sends a close frame with `code` (1012 service restart or 1001 going away) and waits
---up to `timeout` seconds for the peer's close frame, then closes. A connection still in its handshake is
---closed at once.
---@param code? integer default 1012
---@param timeout? number seconds, default ws_close_timeout
function P:shutdown(code, timeout)
  code = code or frames.SERVICE_RESTART
  if math.type(code) ~= "integer" or code < 1000 or code > 4999 then
    error("Protocol:shutdown: code must be an integer 1000..4999", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("Protocol:shutdown: timeout must be a non-negative number of seconds", 2)
  end
  if self.state == "closed" then return end
  if self.state == "handshake" then
    if not self.final then self.final = { code = frames.ABNORMAL, reason = "" } end
    close_transport(self)
    return
  end
  if not self.final then self.final = { code = code, reason = "" } end
  if self.state == "open" then
    send_close(self, code, "", true, timeout and timeout * 1000)
  end
end

---A WebSocket connection is never idle for the server's keep-alive bookkeeping (it ends by its own rules)
---until it has closed.
---@return boolean
function P:is_idle()
  return self.state == "closed"
end

---True once the connection is fully closed.
---@return boolean
function P:is_closed()
  return self.state == "closed"
end

---The connection state: "handshake", "open", "closing" or "closed".
---@return string
function P:get_state()
  return self.state
end

return websocket
