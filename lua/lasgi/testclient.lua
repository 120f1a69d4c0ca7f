-- In-process test client: drives any LASGI app with no sockets.
--
-- The app runs in a coroutine; receive() and send() are served from queues. An app that yields for its
-- own I/O through luvrs.co is resumed by the loop: the client then runs the loop already loaded
-- (package.loaded.luvrs or package.loaded.luv) one iteration at a time until the app finishes or waits
-- in receive().
local datastructures = require "lasgi.datastructures"
local cookies_mod = require "lasgi.cookies"
local json = require "lasgi.json"
local exceptions = require "lasgi.exceptions"
local loop = require "lasgi.loop"

local M = {}

local WAIT = setmetatable({}, { __name = "lasgi.testclient.WAIT" })

-- Runner: one app call in one coroutine --------------------------------------------------------------

local Runner = { __name = "lasgi.testclient.Runner" }
Runner.__index = Runner

local function new_runner(app, scope, validate)
  local r = setmetatable({ inbox = {}, outbox = {}, done = false, waiting = false, scope = scope }, Runner)
  r.receive = function()
    while r.inbox[1] == nil do
      if r.on_empty then
        local ev = r.on_empty()
        if ev then return ev end
      end
      r.waiting = true
      coroutine.yield(WAIT)
      r.waiting = false
    end
    return table.remove(r.inbox, 1)
  end
  r.send = function(ev)
    if type(ev) ~= "table" or type(ev.type) ~= "string" then
      error("send: argument 'event' must be an event table", 2)
    end
    if validate then validate(r, ev) end
    r.outbox[#r.outbox + 1] = ev
    return true
  end
  r.co = coroutine.create(function()
    -- The error is raised again unchanged (so tests can compare it); the traceback is kept beside it.
    local ok, err = xpcall(app, function(e)
      r.traceback = debug.traceback(tostring(e), 2)
      return e
    end, scope, r.receive, r.send)
    r.done = true
    if not ok then r.err = err end
  end)
  return r
end

-- Resumes the app (it must be waiting on us), then runs the loop while the app waits on something else.
-- `stop` (optional) ends the loop-driving early, e.g. when a message the test waits for arrives.
function Runner:step(stop)
  if self.done then return end
  local ok, err = coroutine.resume(self.co)
  if not ok then
    self.done, self.err = true, err
    return
  end
  self:drive(stop)
end

function Runner:drive(stop)
  while not self.done and not self.waiting and not (stop and stop()) do
    -- Drive the loop luvrs.co resumes from when it is in use, else the loop module already loaded.
    local co = package.loaded["luvrs.co"]
    local uv = co and co.loop() or loop.loaded()
    if not uv then
      self.done, self.err = true, "testclient: the app yielded outside receive/send and no loop module is loaded"
      return
    end
    if not uv.loop_alive() then
      self.done, self.err = true, "testclient: the app is suspended but the loop has nothing left to resume it"
      return
    end
    uv.run("once")
  end
end

-- HTTP ----------------------------------------------------------------------------------------------

local function validate_http(r, ev)
  local st = r.http_state or "start"
  local t = ev.type
  if st == "start" then
    if t ~= "http.response.start" then error("send: expected http.response.start, got " .. t, 3) end
    if math.type(ev.status) ~= "integer" then error("send: http.response.start needs an integer status", 3) end
    for i, h in ipairs(ev.headers or {}) do
      if type(h) ~= "table" or type(h[1]) ~= "string" or type(h[2]) ~= "string"
          or h[1]:find("[^%w!#$%%&'*+%-.^_`|~]") or h[2]:find("[\r\n%z]") then
        error(("send: invalid header at position %d"):format(i), 3)
      end
    end
    if ev.trailers and not (r.scope.extensions and r.scope.extensions["http.response.trailers"]) then
      error("send: trailers = true but http.response.trailers is not offered in scope.extensions", 3)
    end
    r.trailers_expected = ev.trailers == true
    r.http_state = "body"
  elseif st == "body" then
    local finished = r.trailers_expected and "trailers" or "done"
    if t == "http.response.body" then
      if ev.body ~= nil and type(ev.body) ~= "string" then error("send: body must be a string", 3) end
      if not ev.more_body then r.http_state = finished end
    elseif t == "http.response.pathsend" then
      if not (r.scope.extensions and r.scope.extensions["http.response.pathsend"]) then
        error("send: http.response.pathsend is not offered in scope.extensions", 3)
      end
      r.http_state = finished
    else
      error("send: unexpected event " .. t .. " during the response body", 3)
    end
  elseif st == "trailers" then
    if t ~= "http.response.trailers" then error("send: expected http.response.trailers, got " .. t, 3) end
    if not ev.more_trailers then r.http_state = "done" end
  else
    error("send: " .. t .. " after the response completed", 3)
  end
end

---@class lasgi.TestResponse
---@field status integer
---@field headers lasgi.Headers
---@field body string
---@field text string
---@field chunks string[] body events as sent
---@field history table responses of followed redirects
local TestResponse = { __name = "lasgi.TestResponse" }
TestResponse.__index = TestResponse
M.TestResponse = TestResponse

-- The name and raw value of a Set-Cookie header, or nil when it has no "name=value" first.
local function set_cookie_pair(sc)
  return sc:match("^([^;]*)"):match("^%s*([^=]+)=(.*)$")
end

---The body decoded as JSON (raises on invalid JSON).
function TestResponse:json()
  local v, err = json.decode(self.body)
  if v == nil then error("TestResponse:json: " .. tostring(err), 2) end
  return v
end

---Set-Cookie values of this response as a map name -> value.
function TestResponse:cookies()
  local out = {}
  for _, sc in ipairs(self.headers:get_all("set-cookie")) do
    local k, v = set_cookie_pair(sc)
    if k then out[k] = cookies_mod.parse(k .. "=" .. v)[k] end
  end
  return out
end

---@class lasgi.TestClient
---@field app function|table
---@field base_url string
---@field cookies table<string,string>
---@field state table lifespan state passed to every request
local TestClient = { __name = "lasgi.TestClient" }
TestClient.__index = TestClient
M.TestClient = TestClient

---Creates a client. opts: base_url ("http://testserver"), root_path (""), raise_server_exceptions (true:
---an error raised by the app is raised again from the request), headers (sent with every request),
---client ({"testclient", 50000}), extensions (scope.extensions, e.g. {["http.response.pathsend"] = {}};
---with "http.response.trailers", trailers sent by the app end up in response.trailers),
---follow_redirects (true).
---@param app function|table
---@param opts? table
---@return lasgi.TestClient
function M.new(app, opts)
  if app == nil then error("TestClient: argument 'app' is required", 2) end
  opts = opts or {}
  return setmetatable({
    app = app,
    base_url = opts.base_url or "http://testserver",
    root_path = opts.root_path or "",
    raise_server_exceptions = opts.raise_server_exceptions ~= false,
    default_headers = opts.headers,
    client = opts.client or { "testclient", 50000 },
    extensions = opts.extensions or {},
    follow_redirects = opts.follow_redirects ~= false,
    cookies = {},
    state = {},
  }, TestClient)
end

local function shallow(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

local function encode_multipart(data, files)
  local boundary = ("lasgitest%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local out = {}
  local function part(disposition, ctype, content)
    out[#out + 1] = "--" .. boundary .. "\r\n"
    out[#out + 1] = "Content-Disposition: form-data; " .. disposition .. "\r\n"
    if ctype then out[#out + 1] = "Content-Type: " .. ctype .. "\r\n" end
    out[#out + 1] = "\r\n" .. content .. "\r\n"
  end
  for _, p in ipairs(datastructures.query_params(data or {}).list) do
    part(('name="%s"'):format(p[1]), nil, p[2])
  end
  local list = {}
  if files[1] then
    list = files
  else
    local names = {}
    for k in pairs(files) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do list[#list + 1] = { k, files[k] } end
  end
  for _, f in ipairs(list) do
    local name, spec = f[1], f[2]
    if type(spec) == "string" then spec = { filename = name, content = spec } end
    part(('name="%s"; filename="%s"'):format(name, spec.filename or name),
      spec.content_type or "application/octet-stream", spec.content or "")
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

local function resolve(base, url)
  local u = datastructures.url(url)
  if u.scheme ~= "" then return u end
  local b = datastructures.url(base)
  if u.path == "" then u.path = b.path ~= "" and b.path or "/" end
  if u.path:sub(1, 1) ~= "/" then
    u.path = (b.path:match("^(.*/)") or "/") .. u.path
  end
  u.scheme, u.hostname, u.port, u.ipv6 = b.scheme, b.hostname, b.port, b.ipv6
  return u
end

function TestClient:build_scope(kind, method, u, headers)
  local default_port = (u.scheme == "https" or u.scheme == "wss") and 443 or 80
  local raw_path = u.path ~= "" and u.path or "/"
  local scope = {
    type = kind,
    lasgi = { version = "1.0", spec_version = "1.0" },
    http_version = "1.1",
    method = method,
    scheme = u.scheme,
    path = datastructures.unquote(raw_path),
    raw_path = raw_path,
    query_string = u.query,
    root_path = self.root_path,
    headers = headers,
    client = { self.client[1], self.client[2] },
    server = { u.hostname or "testserver", u.port or default_port },
    extensions = shallow(self.extensions),
    state = shallow(self.state),
  }
  if kind == "websocket" then scope.method = nil end
  return scope
end

local function header_list(u, opts, defaults, jar, extra)
  local h = datastructures.headers()
  h:set("host", u:netloc())
  h:set("user-agent", "testclient")
  h:set("accept", "*/*")
  for name, value in datastructures.headers(defaults):items() do h:set(name, value) end
  -- In a map of headers, `false` means "do not send this header at all".
  local given, dropped = opts.headers, {}
  if type(given) == "table" and given[1] == nil then
    given = {}
    for k, v in pairs(opts.headers) do
      if v == false then dropped[k:lower()] = true else given[k] = v end
    end
  end
  local explicit = datastructures.headers(given)
  for _, name in ipairs(explicit:keys()) do h:remove(name) end
  for name, value in explicit:items() do h:add(name, value) end
  for name, value in pairs(extra or {}) do
    if not explicit:has(name) then h:set(name, value) end
  end
  for name in pairs(dropped) do h:remove(name) end
  local jar_cookies = shallow(jar)
  for k, v in pairs(opts.cookies or {}) do jar_cookies[k] = v end
  if next(jar_cookies) and not explicit:has("cookie") then
    local names = {}
    for k in pairs(jar_cookies) do names[#names + 1] = k end
    table.sort(names)
    local parts = {}
    for i, k in ipairs(names) do parts[i] = k .. "=" .. jar_cookies[k] end
    h:set("cookie", table.concat(parts, "; "))
  end
  return h.raw
end

function TestClient:update_cookies(headers)
  for _, sc in ipairs(headers:get_all("set-cookie")) do
    local k, v = set_cookie_pair(sc)
    if k then
      local lower = sc:lower()
      local max_age = tonumber(lower:match(";%s*max%-age=(%-?%d+)"))
      local expires = cookies_mod.parse_http_date(sc:match(";%s*[Ee]xpires=([^;]+)") or "")
      if (max_age and max_age <= 0) or (not max_age and expires and expires <= os.time()) then
        self.cookies[k] = nil
      else
        self.cookies[k] = v
      end
    end
  end
end

---Sends one request and returns a TestResponse. opts: headers, params (query, map or list of pairs),
---content (string body), json (value), data (form fields: urlencoded, or multipart when files are given),
---files (map name -> { filename, content, content_type } or a list of { name, spec }), cookies (extra),
---headers (map or list of pairs; in a map, false drops a default header such as content-length),
---chunk_size (split the body into several http.request events), follow_redirects.
---@param method string
---@param url string
---@param opts? table
---@return lasgi.TestResponse
function TestClient:request(method, url, opts)
  if type(method) ~= "string" then error("TestClient:request: argument 'method' must be a string", 2) end
  if type(url) ~= "string" then error("TestClient:request: argument 'url' must be a string", 2) end
  opts = opts or {}
  local history = {}
  local resp
  method = method:upper()
  for _ = 1, 20 do
    resp = self:send_once(method, url, opts)
    local follow = opts.follow_redirects
    if follow == nil then follow = self.follow_redirects end
    local loc = resp.headers:get("location")
    if not (follow and loc and resp.status >= 300 and resp.status < 400) then break end
    history[#history + 1] = resp
    url = tostring(resolve(tostring(resp.url), loc))
    if resp.status == 303 or ((resp.status == 301 or resp.status == 302) and method == "POST") then
      method = method == "HEAD" and "HEAD" or "GET"
      opts = { headers = opts.headers, cookies = opts.cookies }
    end
  end
  resp.history = history
  return resp
end

function TestClient:send_once(method, url, opts)
  local u = resolve(self.base_url, url)
  if opts.params then
    local extra = datastructures.urlencode(opts.params)
    u.query = u.query ~= "" and (u.query .. "&" .. extra) or extra
  end
  local body, ctype = "", nil
  if opts.content ~= nil then
    body = opts.content
  elseif opts.json ~= nil then
    body, ctype = json.encode(opts.json), "application/json"
  elseif opts.files then
    body, ctype = encode_multipart(opts.data, opts.files)
  elseif opts.data ~= nil then
    if type(opts.data) == "string" then body = opts.data
    else body = datastructures.urlencode(opts.data) end
    ctype = "application/x-www-form-urlencoded"
  end
  local extra = {}
  if ctype then extra["content-type"] = ctype end
  if body ~= "" or method == "POST" or method == "PUT" or method == "PATCH" then
    extra["content-length"] = tostring(#body)
  end
  local headers = header_list(u, opts, self.default_headers, self.cookies, extra)
  local scope = self:build_scope("http", method, u, headers)
  local r = new_runner(self.app, scope, validate_http)
  local size = opts.chunk_size or math.max(#body, 1)
  local pos = 1
  repeat
    local chunk = body:sub(pos, pos + size - 1)
    pos = pos + size
    r.inbox[#r.inbox + 1] = { type = "http.request", body = chunk, more_body = pos <= #body }
  until pos > #body
  r.on_empty = function() return { type = "http.disconnect" } end
  r:step()
  local resp = setmetatable({ url = u, request = { method = method, url = u, scope = scope }, chunks = {} },
    TestResponse)
  local started = false
  for _, ev in ipairs(r.outbox) do
    if ev.type == "http.response.start" then
      started = true
      resp.status = ev.status
      resp.headers = datastructures.headers(ev.headers or {})
    elseif ev.type == "http.response.body" then
      resp.chunks[#resp.chunks + 1] = ev.body or ""
    elseif ev.type == "http.response.trailers" then
      resp.trailers = resp.trailers or datastructures.headers()
      for name, value in datastructures.headers(ev.headers or {}):items() do resp.trailers:add(name, value) end
    elseif ev.type == "http.response.pathsend" then
      resp.pathsend = ev.path
      local f = assert(io.open(ev.path, "rb"))
      resp.chunks[#resp.chunks + 1] = f:read("a")
      f:close()
    end
  end
  if r.err ~= nil then
    if self.raise_server_exceptions then error(r.err, 0) end
    if not started then
      resp.status, resp.headers = 500, datastructures.headers({ { "content-type", "text/plain; charset=utf-8" } })
      resp.chunks = { "Internal Server Error" }
    end
    resp.error, resp.traceback = r.err, r.traceback
  elseif not started then
    error("TestClient: the app returned without starting a response", 0)
  elseif r.http_state ~= "done" then
    error("TestClient: the app returned before completing the response body", 0)
  end
  resp.body = table.concat(resp.chunks)
  resp.text = resp.body
  self:update_cookies(resp.headers)
  return resp
end

for _, m in ipairs({ "get", "head", "post", "put", "patch", "delete", "options" }) do
  TestClient[m] = function(self, url, opts) return self:request(m:upper(), url, opts) end
end

-- WebSocket -------------------------------------------------------------------------------------------

---@class lasgi.TestWebSocket
local TestWebSocket = { __name = "lasgi.TestWebSocket" }
TestWebSocket.__index = TestWebSocket
M.TestWebSocket = TestWebSocket

local WebSocketDenied = { __name = "lasgi.testclient.WebSocketDenied" }
WebSocketDenied.__index = WebSocketDenied
WebSocketDenied.__tostring = function(e) return "WebSocket upgrade denied with HTTP " .. e.status end
M.WebSocketDenied = WebSocketDenied

local function raise_app_error(r)
  if r.err ~= nil then error(r.err, 0) end
end

---Opens a WebSocket session with the app. Raises WebSocketDisconnect (code, reason) when the app closes
---before accepting, or a WebSocketDenied { status, headers, body } for an HTTP denial response.
---opts: subprotocols, headers, cookies.
---@param url string
---@param opts? table
---@return lasgi.TestWebSocket
function TestClient:websocket_connect(url, opts)
  if type(url) ~= "string" then error("TestClient:websocket_connect: argument 'url' must be a string", 2) end
  opts = opts or {}
  local u = resolve(self.base_url, url)
  u.scheme = (u.scheme == "https" or u.scheme == "wss") and "wss" or "ws"
  local headers = header_list(u, opts, self.default_headers, self.cookies, {
    connection = "upgrade", upgrade = "websocket", ["sec-websocket-version"] = "13",
    ["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ==",
  })
  local scope = self:build_scope("websocket", nil, u, headers)
  scope.subprotocols = opts.subprotocols or {}
  local r = new_runner(self.app, scope)
  r.inbox[1] = { type = "websocket.connect" }
  local function first_event() return r.outbox[1] ~= nil end
  r:step(first_event)
  while not r.outbox[1] and not r.done and not r.waiting do r:drive(first_event) end
  local ev = table.remove(r.outbox, 1)
  if not ev then
    raise_app_error(r)
    error("TestClient:websocket_connect: the app did not accept the connection", 2)
  end
  if ev.type == "websocket.close" then
    raise_app_error(r)
    error(exceptions.disconnect(ev.code or 1000, ev.reason), 0)
  elseif ev.type == "websocket.http.response.start" then
    local denied = setmetatable({ status = ev.status, headers = datastructures.headers(ev.headers or {}) },
      WebSocketDenied)
    local parts = {}
    while true do
      local b = table.remove(r.outbox, 1)
      if not b then break end
      parts[#parts + 1] = b.body or ""
    end
    denied.body = table.concat(parts)
    error(denied, 0)
  elseif ev.type ~= "websocket.accept" then
    error("TestClient:websocket_connect: unexpected first event " .. tostring(ev.type), 2)
  end
  return setmetatable({ runner = r, accepted_subprotocol = ev.subprotocol,
                        extra_headers = ev.headers or {}, client = self, closed = false }, TestWebSocket)
end

---Sends a raw event to the app (websocket.receive / websocket.disconnect).
---@param event table
function TestWebSocket:send(event)
  local r = self.runner
  r.inbox[#r.inbox + 1] = event
  if r.waiting then r:step(function() return r.outbox[1] ~= nil end) end
  raise_app_error(r)
end

function TestWebSocket:send_text(text) self:send({ type = "websocket.receive", text = text }) end
function TestWebSocket:send_bytes(data) self:send({ type = "websocket.receive", bytes = data }) end
function TestWebSocket:send_json(v) self:send({ type = "websocket.receive", text = json.encode(v) }) end

---The next event the app sent; raises if the app ended (or waits for a message) with nothing to give.
---@return table
function TestWebSocket:receive()
  local r = self.runner
  local function has_output() return r.outbox[1] ~= nil end
  if not has_output() and not r.done and not r.waiting then r:drive(has_output) end
  local ev = table.remove(r.outbox, 1)
  if ev then return ev end
  raise_app_error(r)
  if r.done then error("TestWebSocket:receive: the app ended without sending anything", 2) end
  error("TestWebSocket:receive: the app is waiting for a message: nothing to receive", 2)
end

local function message(self, field)
  local ev = self:receive()
  if ev.type == "websocket.close" then
    self.closed = true
    error(exceptions.disconnect(ev.code or 1000, ev.reason), 0)
  end
  if ev.type ~= "websocket.send" then error("TestWebSocket: unexpected event " .. tostring(ev.type), 3) end
  if field and ev[field] == nil then error("TestWebSocket: expected a " .. field .. " message", 3) end
  return ev
end

function TestWebSocket:receive_text() return message(self, "text").text end
function TestWebSocket:receive_bytes() return message(self, "bytes").bytes end
function TestWebSocket:receive_json()
  local ev = message(self)
  local v, err = json.decode(ev.text or ev.bytes)
  if v == nil then error("TestWebSocket:receive_json: " .. tostring(err), 2) end
  return v
end

---Disconnects from the client side and lets the app finish.
---@param code? integer default 1000
---@param reason? string
function TestWebSocket:close(code, reason)
  if self.closed then return end
  self.closed = true
  local r = self.runner
  r.inbox[#r.inbox + 1] = { type = "websocket.disconnect", code = code or 1000, reason = reason or "" }
  if r.waiting then r:step() end
  raise_app_error(r)
end
TestWebSocket.__close = function(self) self:close() end

-- Lifespan --------------------------------------------------------------------------------------------

---Runs lifespan startup; its `state` reaches every later request. Raises when startup fails; an app that
---does not support lifespan (raises at once) is accepted, as servers do.
function TestClient:startup()
  if self.lifespan then return self end
  local scope = { type = "lifespan", lasgi = { version = "1.0", spec_version = "1.0" }, state = self.state }
  local r = new_runner(self.app, scope)
  r.inbox[1] = { type = "lifespan.startup" }
  self.lifespan = r
  r:step()
  local ev = table.remove(r.outbox, 1)
  if ev and ev.type == "lifespan.startup.failed" then
    error("lifespan startup failed: " .. tostring(ev.message), 2)
  elseif ev and ev.type == "lifespan.startup.complete" then
    self.state = scope.state
    return self
  end
  if r.err ~= nil and not ev then
    self.lifespan_unsupported = true
    return self
  end
  raise_app_error(r)
  error("lifespan startup: unexpected event " .. tostring(ev and ev.type), 2)
end

---Runs lifespan shutdown; raises when it fails.
function TestClient:shutdown()
  local r = self.lifespan
  if not r or self.lifespan_unsupported or r.done then self.lifespan = nil; return end
  r.inbox[#r.inbox + 1] = { type = "lifespan.shutdown" }
  r:step()
  self.lifespan = nil
  local ev = table.remove(r.outbox, 1)
  if ev and ev.type == "lifespan.shutdown.failed" then
    error("lifespan shutdown failed: " .. tostring(ev.message), 2)
  end
  if not ev or ev.type ~= "lifespan.shutdown.complete" then
    raise_app_error(r)
    error("lifespan shutdown: unexpected event " .. tostring(ev and ev.type), 2)
  end
end

TestClient.__close = function(self) self:shutdown() end

---Runs `fn(client)` between lifespan startup and shutdown (shutdown runs even when fn raises).
---@param fn fun(client: lasgi.TestClient)
function TestClient:run(fn)
  self:startup()
  local ok, err = pcall(fn, self)
  self:shutdown()
  if not ok then error(err, 0) end
end

---Starts the client as a to-be-closed variable: `local client <close> = TestClient.new(app):enter()`.
function TestClient:enter()
  return self:startup()
end

return M
