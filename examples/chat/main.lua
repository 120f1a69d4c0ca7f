-- A chat room: `lua5.4 bin/luvicorn examples/chat/main.lua`, then open http://127.0.0.1:8000/ in two tabs.
--
-- The page at / connects to /ws. Every message is broadcast to everyone; joins and leaves are announced;
-- lines typed into the server's terminal (stdin, read through the event loop) are broadcast as well.
local PAGE = [[<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Luvicorn chat</title>
<style>
  body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
  #messages { list-style: none; padding: 0; height: 60vh; overflow-y: auto; border: 1px solid #ccc; }
  #messages li { padding: .2em .5em; }
  #messages li.notice { color: #777; font-style: italic; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  #input { flex: 1; }
</style>
</head>
<body>
<h1>Luvicorn chat</h1>
<p id="status">connecting…</p>
<ul id="messages"></ul>
<form id="form">
  <input id="input" autocomplete="off" placeholder="Say something" disabled>
  <button id="send" disabled>Send</button>
</form>
<script>
  const messages = document.getElementById("messages");
  const input = document.getElementById("input");
  const button = document.getElementById("send");
  const status = document.getElementById("status");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  function show(text) {
    const li = document.createElement("li");
    let data;
    try { data = JSON.parse(text); } catch (e) { data = { kind: "message", text: text }; }
    li.textContent = data.from ? data.from + ": " + data.text : data.text;
    li.className = data.kind;
    messages.appendChild(li);
    messages.scrollTop = messages.scrollHeight;
  }
  ws.onopen = () => {
    status.textContent = "connected";
    input.disabled = false;
    button.disabled = false;
    input.focus();
  };
  ws.onmessage = (event) => show(event.data);
  ws.onclose = (event) => {
    status.textContent = "disconnected (" + event.code + ")";
    input.disabled = true;
    button.disabled = true;
  };
  document.getElementById("form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value !== "") ws.send(input.value);
    input.value = "";
  });
</script>
</body>
</html>
]]

local cjson = require "cjson"

-- The loop module the server runs on (luvicorn.loop when the app runs under Luvicorn).
local function get_loop()
  local ok, uv = pcall(require, "luvicorn.loop")
  if ok then return uv end
  return package.loaded.luvrs or package.loaded.luv or require "luv"
end

local MAX_BACKLOG = 256 -- messages queued for one slow client before it misses some

---@class ChatClient
---@field name string
local Client = { __name = "chat.Client" }
Client.__index = Client

local clients = {} -- set of connected clients
local next_id = 0

-- Each client has a writer coroutine: broadcasts only queue messages and wake it, so a slow client's
-- backpressure (send yielding) never holds up the others or the stdin reader.
local function new_client(send, name)
  local c = setmetatable({ send = send, name = name, queue = {}, head = 1, tail = 0, idle = false }, Client)
  c.co = coroutine.create(function()
    while true do
      if c.head > c.tail then
        if c.closed then return end
        c.idle = true
        coroutine.yield()
        c.idle = false
      else
        local msg = c.queue[c.head]
        c.queue[c.head] = nil
        c.head = c.head + 1
        if not c.send({ type = "websocket.send", text = msg }) then
          c.closed = true
          return
        end
      end
    end
  end)
  assert(coroutine.resume(c.co))
  return c
end

-- Wakes the writer only while it waits on us (idle), never while it waits in send on the server.
function Client:deliver(msg)
  if self.closed then return end
  if self.tail - self.head + 1 < MAX_BACKLOG then
    self.tail = self.tail + 1
    self.queue[self.tail] = msg
  end
  if self.idle then
    local ok, err = coroutine.resume(self.co)
    if not ok then io.stderr:write("chat: writer failed: ", tostring(err), "\n") end
  end
end

function Client:finish()
  self.closed = true
  if self.idle then coroutine.resume(self.co) end
end

local function broadcast(kind, text, from)
  local msg = cjson.encode({ kind = kind, text = text, from = from })
  for c in pairs(clients) do c:deliver(msg) end
end

-- stdin, read through the loop: lines typed into the server's terminal go to everyone.
local stdin
local function start_stdin()
  if stdin then return end
  local uv = get_loop()
  local kind = uv.guess_handle and uv.guess_handle(0)
  stdin = false
  if kind == "tty" and uv.new_tty then
    stdin = uv.new_tty(0, true)
  elseif (kind == "pipe" or kind == nil) and uv.new_pipe then
    local pipe = uv.new_pipe(false)
    if pipe:open(0) then
      stdin = pipe
    else
      pipe:close()
    end
  end
  if not stdin then
    io.stderr:write("chat: not reading stdin (", tostring(kind or "no pipe/tty support in this loop"), ")\n")
    return
  end
  local pending = ""
  stdin:read_start(function(err, data)
    if err or not data then
      stdin:read_stop()
      if not stdin:is_closing() then stdin:close() end
      return
    end
    pending = pending .. data
    while true do
      local line, rest = pending:match("^([^\n]*)\n(.*)$")
      if not line then break end
      pending = rest
      line = line:gsub("\r$", "")
      if line ~= "" and utf8.len(line) then broadcast("server", line, "server") end
    end
  end)
  -- stdin must not keep the server running once everything else has stopped.
  stdin:unref()
end

local function stop_stdin()
  if stdin and not stdin:is_closing() then
    stdin:read_stop()
    stdin:close()
  end
end

local function lifespan(receive, send)
  while true do
    local ev = receive()
    if ev.type == "lifespan.startup" then
      start_stdin()
      send({ type = "lifespan.startup.complete" })
    elseif ev.type == "lifespan.shutdown" then
      stop_stdin()
      broadcast("notice", "the server is shutting down")
      send({ type = "lifespan.shutdown.complete" })
      return
    end
  end
end

local function chat(receive, send)
  local ev = receive()
  if ev.type ~= "websocket.connect" then return end
  send({ type = "websocket.accept" })
  next_id = next_id + 1
  local c = new_client(send, "guest-" .. next_id)
  clients[c] = true
  c:deliver(cjson.encode({ kind = "notice", text = "you are " .. c.name }))
  broadcast("notice", c.name .. " joined")
  while true do
    ev = receive()
    if ev.type == "websocket.disconnect" then break end
    local text = ev.text or ev.bytes
    if text and utf8.len(text) then broadcast("message", text, c.name) end
  end
  clients[c] = nil
  c:finish()
  broadcast("notice", c.name .. " left")
end

local function app(scope, receive, send)
  if scope.type == "lifespan" then return lifespan(receive, send) end
  start_stdin() -- when lifespan is off
  if scope.type == "websocket" then
    if scope.path ~= "/ws" then
      send({ type = "websocket.close", code = 1008 })
      return
    end
    return chat(receive, send)
  end
  if scope.type ~= "http" then error("unsupported scope type " .. tostring(scope.type)) end
  if scope.path == "/" and (scope.method == "GET" or scope.method == "HEAD") then
    send({ type = "http.response.start", status = 200,
      headers = { { "content-type", "text/html; charset=utf-8" }, { "content-length", tostring(#PAGE) } } })
    send({ type = "http.response.body", body = PAGE })
  else
    local body = "Not Found\n"
    send({ type = "http.response.start", status = 404,
      headers = { { "content-type", "text/plain; charset=utf-8" }, { "content-length", tostring(#body) } } })
    send({ type = "http.response.body", body = body })
  end
end

return app
