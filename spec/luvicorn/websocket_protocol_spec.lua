-- Socket-free specs of the WebSocket connection state machine: a fake transport records writes, a
-- manual clock drives timeouts, and client frames are built masked with luvicorn.websocket.frames.
local ws = require "luvicorn.protocols.websocket"
local frames = require "luvicorn.websocket.frames"

local MASK = "\1\2\3\4"
local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

local function new_transport()
  local t = { out = {}, closed = false, aborted = false, paused = false, queue = 0, pauses = 0 }
  function t:write(data)
    assert(not self.closed, "write after close")
    if type(data) == "table" then data = table.concat(data) end
    self.out[#self.out + 1] = data
  end
  function t:close() self.closed = true end
  function t:abort() self.closed, self.aborted = true, true end
  function t:pause_reading() self.paused = true; self.pauses = self.pauses + 1 end
  function t:resume_reading() self.paused = false end
  function t:write_queue_size() return self.queue end
  function t:take()
    local s = table.concat(self.out)
    self.out = {}
    return s
  end
  return t
end

local function request(extra)
  local h = {
    { "host", "example.com" },
    { "upgrade", "websocket" },
    { "connection", "Upgrade" },
    { "sec-websocket-key", KEY },
    { "sec-websocket-version", "13" },
  }
  for _, p in ipairs(extra or {}) do h[#h + 1] = p end
  return {
    type = "http", lasgi = { version = "1.0", spec_version = "1.0" }, http_version = "1.1", method = "GET",
    scheme = "http", path = "/ws", raw_path = "/ws", query_string = "a=1", root_path = "", headers = h,
    client = { "127.0.0.1", 50000 }, server = { "127.0.0.1", 8000 }, state = { db = 1 },
    extensions = { ["http.response.pathsend"] = {} },
  }
end

-- Splits what the server wrote into an HTTP head (if any) and frames.
local function parse_output(s)
  local head, rest = s:match("^(HTTP/1%.1 .-\r\n\r\n)(.*)$")
  if not head then rest = s end
  local p = frames.new_parser { require_mask = false, allow_rsv1 = true }
  p:feed(rest)
  local list = {}
  while true do
    local f = p:next()
    if not f then break end
    list[#list + 1] = f
  end
  return head, list, p:buffered()
end

-- A connection with a manual clock. `app` defaults to an echo app that records what it received.
local function connect(opts)
  opts = opts or {}
  local c = { tr = new_transport(), now = 0, events = opts.events or {}, log = {} }
  if opts.queue then c.tr.write_queue_size = function() return opts.queue() end end
  local app = opts.app or function(scope, receive, send)
    c.scope = scope
    local ev = receive()
    c.events[#c.events + 1] = ev
    send { type = "websocket.accept", subprotocol = opts.subprotocol }
    while true do
      ev = receive()
      c.events[#c.events + 1] = ev
      if ev.type == "websocket.disconnect" then return end
      c.send_result = { send { type = "websocket.send", text = ev.text, bytes = ev.bytes } }
    end
  end
  c.proto = ws.upgrade {
    scope = opts.scope or request(opts.headers),
    buffered = opts.buffered,
    transport = c.tr,
    app = app,
    clock = opts.clock or function() return c.now end,
    config = opts.config,
    uv = opts.uv,
    headers = opts.default_headers,
    log = function(level, msg) c.log[#c.log + 1] = level .. ": " .. msg end,
  }
  function c.send(op, payload, fin, rsv1)
    c.proto:data_received(frames.encode(op, payload, fin, rsv1, MASK))
  end
  function c.output()
    return parse_output(c.tr:take())
  end
  function c.tick(ms)
    c.now = c.now + ms
    c.proto:check_timeout(c.now)
  end
  return c
end

local function open(opts)
  local c = connect(opts)
  local head, list = c.output()
  assert(head and head:find("^HTTP/1.1 101 "), "expected a 101, got " .. tostring(head))
  return c, head, list
end

local function close_code(f)
  assert.equal(frames.CLOSE, f.opcode)
  return (frames.parse_close(f.payload))
end

describe("websocket protocol", function()
  describe("handshake", function()
    it("gives the app a websocket scope and websocket.connect, then answers 101 on accept", function()
      local c, head = open { headers = { { "sec-websocket-protocol", "chat, v2" } } }
      assert.equal("websocket", c.scope.type)
      assert.equal("ws", c.scope.scheme)
      assert.is_nil(c.scope.method)
      assert.equal("/ws", c.scope.path)
      assert.equal("a=1", c.scope.query_string)
      assert.same({ "chat", "v2" }, c.scope.subprotocols)
      assert.same({ db = 1 }, c.scope.state)
      assert.same({ ["websocket.http.response"] = {} }, c.scope.extensions)
      assert.same({ version = "1.0", spec_version = "1.0" }, c.scope.lasgi)
      assert.same({ type = "websocket.connect" }, c.events[1])
      assert.truthy(head:find("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 1, true))
      assert.is_nil(head:find("sec-websocket-protocol", 1, true))
      assert.equal("open", c.proto:get_state())
    end)

    it("uses wss for an https request", function()
      local s = request()
      s.scheme = "https"
      local c = open { scope = s }
      assert.equal("wss", c.scope.scheme)
    end)

    it("sends the chosen subprotocol and the app's extra headers", function()
      local c = connect {
        headers = { { "sec-websocket-protocol", "chat, v2" } },
        default_headers = { { "server", "luvicorn" } },
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept", subprotocol = "v2", headers = { { "x-session", "42" } } }
          receive()
        end,
      }
      local head = c.output()
      assert.truthy(head:find("\r\nsec-websocket-protocol: v2\r\n", 1, true))
      assert.truthy(head:find("\r\nx-session: 42\r\n", 1, true))
      assert.truthy(head:find("\r\nserver: luvicorn\r\n", 1, true))
    end)

    it("raises in the app for a subprotocol the client did not offer, and answers 500", function()
      local err
      local c = connect {
        headers = { { "sec-websocket-protocol", "chat" } },
        app = function(_, receive, send)
          receive()
          local ok, e = pcall(send, { type = "websocket.accept", subprotocol = "other" })
          err = e
          assert(not ok)
          error("give up")
        end,
      }
      assert.truthy(err:find('websocket.accept subprotocol "other" was not offered', 1, true))
      assert.truthy(c.tr:take():find("^HTTP/1.1 500 "))
      assert.is_true(c.tr.closed)
    end)

    it("answers 400 to a bad handshake and 426 with the version to a wrong version, without the app", function()
      local called = false
      local c = connect { headers = { { "sec-websocket-key", "x" } }, app = function() called = true end }
      local out = c.tr:take()
      assert.truthy(out:find("^HTTP/1.1 400 Bad Request\r\n"))
      assert.is_true(c.tr.closed)
      assert.is_false(called)
      local s = request()
      s.headers[5] = { "sec-websocket-version", "8" }
      c = connect { scope = s, app = function() called = true end }
      out = c.tr:take()
      assert.truthy(out:find("^HTTP/1.1 426 Upgrade Required\r\n"))
      assert.truthy(out:find("\r\nsec-websocket-version: 13\r\n", 1, true))
      assert.is_false(called)
    end)

    it("rejects with 403 when the app closes before accepting; receive then says disconnect", function()
      local after
      local c = connect {
        app = function(_, receive, send)
          receive()
          assert(send { type = "websocket.close" })
          after = receive()
        end,
      }
      local out = c.tr:take()
      assert.truthy(out:find("^HTTP/1.1 403 Forbidden\r\n"))
      assert.is_true(c.tr.closed)
      assert.equal("websocket.disconnect", after.type)
      assert.equal(1006, after.code)
    end)

    it("answers 500 when the app returns or fails without accepting", function()
      local c = connect { app = function(_, receive) receive() end }
      assert.truthy(c.tr:take():find("^HTTP/1.1 500 "))
      assert.is_true(c.tr.closed)
      c = connect { app = function() error("boom") end }
      assert.truthy(c.tr:take():find("^HTTP/1.1 500 "))
      assert.truthy(c.log[1]:find("boom", 1, true))
    end)

    it("sends a custom denial with websocket.http.response (Content-Length from a single body)", function()
      local c = connect {
        app = function(_, receive, send)
          receive()
          send { type = "websocket.http.response.start", status = 401, headers = { { "www-authenticate", "Basic" } } }
          send { type = "websocket.http.response.body", body = "who are you?" }
        end,
      }
      local out = c.tr:take()
      assert.truthy(out:find("^HTTP/1.1 401 Unauthorized\r\n"))
      assert.truthy(out:find("\r\nwww-authenticate: Basic\r\n", 1, true))
      assert.truthy(out:find("\r\ncontent-length: 12\r\n", 1, true))
      assert.equal("\r\n\r\nwho are you?", out:sub(-16))
      assert.is_true(c.tr.closed)
    end)

    it("streams a denial body in chunks when it comes in parts", function()
      local c = connect {
        app = function(_, receive, send)
          receive()
          send { type = "websocket.http.response.start", status = 404 }
          send { type = "websocket.http.response.body", body = "not ", more_body = true }
          send { type = "websocket.http.response.body", body = "here" }
        end,
      }
      local out = c.tr:take()
      assert.truthy(out:find("\r\ntransfer%-encoding: chunked\r\n"))
      local tail = "\r\n\r\n4\r\nnot \r\n4\r\nhere\r\n0\r\n\r\n"
      assert.equal(tail, out:sub(-#tail))
    end)

    it("raises for misuse before accept", function()
      local errs = {}
      connect {
        app = function(_, receive, send)
          receive()
          errs[1] = select(2, pcall(send, { type = "websocket.send", text = "x" }))
          errs[2] = select(2, pcall(send, { type = "websocket.http.response.body", body = "" }))
          errs[3] = select(2, pcall(send, { type = "nope" }))
          errs[4] = select(2, pcall(send, "x"))
          errs[5] = select(2, pcall(send, { type = "websocket.http.response.start", status = 99 }))
          send { type = "websocket.accept" }
          errs[6] = select(2, pcall(send, { type = "websocket.accept" }))
          errs[7] = select(2, pcall(send, { type = "websocket.send", text = "a", bytes = "b" }))
          errs[8] = select(2, pcall(send, { type = "websocket.send", text = "\xff" }))
          errs[9] = select(2, pcall(send, { type = "websocket.close", code = 99 }))
        end,
      }
      assert.truthy(errs[1]:find("websocket.send before websocket.accept", 1, true))
      assert.truthy(errs[2]:find("before websocket.http.response.start", 1, true))
      assert.truthy(errs[3]:find('unknown event type "nope"', 1, true))
      assert.truthy(errs[4]:find("event must be a table", 1, true))
      assert.truthy(errs[5]:find("status must be an integer", 1, true))
      assert.truthy(errs[6]:find("accept after the handshake", 1, true))
      assert.truthy(errs[7]:find("exactly one of text or bytes", 1, true))
      assert.truthy(errs[8]:find("valid UTF%-8"))
      assert.truthy(errs[9]:find("code must be 1000..1003, 1007..1014 or 3000..4999", 1, true))
    end)

    it("keeps bytes that arrived with the head and handles them after accept", function()
      local c, _, list = open { buffered = frames.encode(frames.TEXT, "early", true, false, MASK) }
      assert.same({ type = "websocket.receive", text = "early" }, c.events[2])
      assert.equal("early", list[1].payload)
    end)

    it("pauses reading when a client sends too much before the app accepts", function()
      local waiting
      local c = connect {
        app = function(_, receive)
          receive()
          waiting = coroutine.running()
          coroutine.yield()
        end,
      }
      assert.is_false(c.tr.paused)
      c.proto:data_received(string.rep("x", 70000))
      assert.is_true(c.tr.paused)
      assert.is_truthy(waiting)
    end)
  end)

  describe("messages", function()
    it("echoes text and binary", function()
      local c = open()
      c.send(frames.TEXT, "héllo")
      c.send(frames.BINARY, "\0\1\2\255")
      assert.same({ type = "websocket.receive", text = "héllo" }, c.events[2])
      assert.same({ type = "websocket.receive", bytes = "\0\1\2\255" }, c.events[3])
      local _, list = c.output()
      assert.equal(frames.TEXT, list[1].opcode)
      assert.equal("héllo", list[1].payload)
      assert.equal(frames.BINARY, list[2].opcode)
      assert.equal("\0\1\2\255", list[2].payload)
      assert.same({ true }, c.send_result)
    end)

    for _, n in ipairs { 0, 125, 126, 65535, 65536, 1 << 20 } do
      it("receives and sends a payload of " .. n .. " bytes", function()
        local c = open()
        local payload = string.rep("z", n)
        c.send(frames.BINARY, payload)
        local _, list = c.output()
        assert.equal(payload, list[1].payload)
      end)
    end

    it("reassembles fragments, with control frames interleaved", function()
      local c = open()
      c.send(frames.TEXT, "frag", false)
      c.send(frames.PING, "p1")
      c.send(frames.CONTINUATION, "men", false)
      c.send(frames.PONG, "unsolicited")
      c.send(frames.CONTINUATION, "ted")
      assert.same({ type = "websocket.receive", text = "fragmented" }, c.events[2])
      local _, list = c.output()
      assert.equal(frames.PONG, list[1].opcode)
      assert.equal("p1", list[1].payload)
      assert.equal("fragmented", list[2].payload)
    end)

    it("accepts a UTF-8 character split across fragments", function()
      local c = open()
      c.send(frames.TEXT, "\xe2\x82", false)
      c.send(frames.CONTINUATION, "\xac!")
      assert.equal("€!", c.events[2].text)
    end)

    it("answers every ping with a pong carrying the same payload", function()
      local c = open()
      c.send(frames.PING, "")
      c.send(frames.PING, string.rep("x", 125))
      local _, list = c.output()
      assert.equal(2, #list)
      assert.equal(frames.PONG, list[1].opcode)
      assert.equal("", list[1].payload)
      assert.equal(string.rep("x", 125), list[2].payload)
    end)

    it("handles frames fed one byte at a time", function()
      local c = open()
      local bytes = frames.encode(frames.TEXT, "slow", true, false, MASK)
      for i = 1, #bytes do c.proto:data_received(bytes:sub(i, i)) end
      assert.equal("slow", c.events[2].text)
    end)
  end)

  describe("random framing", function()
    it("delivers random messages intact whatever the fragmentation and read chunking", function()
      math.randomseed(6455)
      for _ = 1, 30 do
        local c = open()
        local wire, want, pings = {}, {}, {}
        for m = 1, math.random(1, 8) do
          local text = math.random() < 0.5
          local parts = {}
          for i = 1, math.random(1, 300) do
            parts[i] = text and utf8.char(math.random(0x20, 0x2FF), math.random(0x1F600, 0x1F64F))
              or string.char(math.random(0, 255))
          end
          local msg = table.concat(parts)
          want[m] = { text = text, msg = msg }
          -- Cut the message anywhere (even inside a UTF-8 sequence) into 1..4 fragments.
          local cuts, pos = {}, 1
          for _ = 1, math.random(0, 3) do cuts[#cuts + 1] = math.random(pos, #msg + 1); pos = cuts[#cuts] end
          cuts[#cuts + 1] = #msg + 1
          local start = 1
          for k, cut in ipairs(cuts) do
            local op = k == 1 and (text and frames.TEXT or frames.BINARY) or frames.CONTINUATION
            wire[#wire + 1] = frames.encode(op, msg:sub(start, cut - 1), k == #cuts, false, MASK)
            start = cut
            if math.random() < 0.3 then
              local ping = "p" .. #pings
              pings[#pings + 1] = ping
              wire[#wire + 1] = frames.encode(frames.PING, ping, true, false, MASK)
            end
          end
        end
        local bytes = table.concat(wire)
        local i = 1
        while i <= #bytes do
          local n = math.random(1, 200)
          c.proto:data_received(bytes:sub(i, i + n - 1))
          i = i + n
        end
        for m, w in ipairs(want) do
          local ev = c.events[m + 1]
          assert.equal(w.msg, w.text and ev.text or ev.bytes)
        end
        local _, list = c.output()
        local pongs = {}
        for _, f in ipairs(list) do
          if f.opcode == frames.PONG then pongs[#pongs + 1] = f.payload end
        end
        assert.same(pings, pongs)
      end
    end)
  end)

  describe("violations", function()
    local function violation(name, bytes, want, opts)
      it(name .. " closes with " .. want, function()
        local c = open(opts)
        c.proto:data_received(bytes)
        local _, list = c.output()
        local last = list[#list]
        assert.equal(want, close_code(last))
        -- The app learns the code too.
        if c.tr.closed then
          assert.equal("websocket.disconnect", c.events[#c.events].type)
          assert.equal(want, c.events[#c.events].code)
        end
      end)
    end
    violation("an unmasked frame", "\x81\x05Hello", 1002)
    violation("RSV1 without permessage-deflate", frames.encode(1, "x", true, true, MASK), 1002)
    violation("RSV2", "\xa1\x80" .. MASK, 1002)
    violation("RSV3", "\x91\x80" .. MASK, 1002)
    violation("opcode 3", "\x83\x80" .. MASK, 1002)
    violation("opcode 11", "\x8b\x80" .. MASK, 1002)
    violation("a fragmented ping", "\x09\x80" .. MASK, 1002)
    violation("a ping over 125 bytes", frames.header(9, 126, true, false, MASK) .. string.rep("x", 126), 1002)
    violation("a continuation without a message", frames.encode(0, "x", true, false, MASK), 1002)
    violation("a new message inside a fragmented one",
      frames.encode(1, "a", false, false, MASK) .. frames.encode(1, "b", true, false, MASK), 1002)
    violation("a close frame with a 1-byte payload", frames.encode(8, "\3", true, false, MASK), 1002)
    violation("a close frame with code 1005", frames.encode(8, "\3\237", true, false, MASK), 1002)
    violation("a close frame with code 999", frames.encode(8, "\3\231", true, false, MASK), 1002)
    violation("invalid UTF-8 in a text message", frames.encode(1, "a\xffb", true, false, MASK), 1007)
    violation("a surrogate in a text message", frames.encode(1, "\xed\xa0\x80", true, false, MASK), 1007)
    violation("invalid UTF-8 across fragments",
      frames.encode(1, "ok\xf4", false, false, MASK) .. frames.encode(0, "\x90\x80\x80", true, false, MASK), 1007)
    violation("a text message ending inside a character",
      frames.encode(1, "ok\xe2\x82", false, false, MASK) .. frames.encode(0, "", true, false, MASK), 1007)
    violation("invalid UTF-8 in a close reason", frames.encode(8, "\3\232\xff", true, false, MASK), 1007)
    violation("a message over --ws-max-size", frames.encode(2, string.rep("x", 101), true, false, MASK), 1009,
      { config = { ws_max_size = 100 } })
    violation("fragments adding up over --ws-max-size", frames.encode(2, string.rep("x", 60), false, false, MASK)
      .. frames.encode(0, string.rep("x", 60), true, false, MASK), 1009, { config = { ws_max_size = 100 } })

    it("fails fast on invalid UTF-8 before the message ends", function()
      local c = open()
      c.send(frames.TEXT, "ok\xc0", false)
      local _, list = c.output()
      assert.equal(1007, close_code(list[1]))
    end)

    it("rejects a too-large frame from its header alone and closes at once", function()
      local c = open { config = { ws_max_size = 1000 } }
      c.proto:data_received(frames.header(frames.BINARY, 1 << 30, true, false, MASK))
      local _, list = c.output()
      assert.equal(1009, close_code(list[1]))
      assert.is_true(c.tr.closed)
    end)

    it("after a 1007 waits for the client's close frame, then closes the connection", function()
      local c = open()
      c.send(frames.TEXT, "\xff")
      assert.equal("closing", c.proto:get_state())
      assert.is_false(c.tr.closed)
      c.send(frames.TEXT, "ignored")
      c.send(frames.CLOSE, frames.close_payload(1007))
      assert.is_true(c.tr.closed)
      local _, list = c.output()
      assert.equal(1, #list)
      assert.equal(1007, c.events[#c.events].code)
    end)

    it("closes after a protocol error without waiting (the stream cannot be framed any more)", function()
      local c = open()
      c.proto:data_received("\x81\x05Hello")
      assert.is_true(c.tr.closed)
    end)
  end)

  describe("closing", function()
    it("echoes the client's code and reason, closes, and tells the app", function()
      local c = open()
      c.send(frames.CLOSE, frames.close_payload(4001, "bye now"))
      local _, list = c.output()
      assert.equal(1, #list)
      assert.equal(frames.CLOSE, list[1].opcode)
      assert.equal(frames.close_payload(4001, "bye now"), list[1].payload)
      assert.is_true(c.tr.closed)
      assert.same({ type = "websocket.disconnect", code = 4001, reason = "bye now" }, c.events[#c.events])
    end)

    it("answers an empty close with an empty close; the app sees 1005", function()
      local c = open()
      c.send(frames.CLOSE, "")
      local _, list = c.output()
      assert.equal("", list[1].payload)
      assert.same({ type = "websocket.disconnect", code = 1005, reason = "" }, c.events[#c.events])
    end)

    it("sends the app's close with code and reason and waits for the client's", function()
      local events = {}
      local c = open {
        events = events,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          local ev = receive()
          send { type = "websocket.close", code = 4000, reason = ev.text }
          local ok1, err1 = pcall(send, { type = "websocket.send", text = "late" })
          local ok2 = pcall(send, { type = "websocket.close" })
          events[#events + 1] = { send_raises = not ok1 and err1, second_close_raises = not ok2 }
          events[#events + 1] = receive()
        end,
      }
      c.send(frames.TEXT, "done")
      local _, list = c.output()
      assert.equal(frames.close_payload(4000, "done"), list[1].payload)
      assert.equal("closing", c.proto:get_state())
      assert.is_false(c.tr.closed)
      c.send(frames.CLOSE, frames.close_payload(4000, "done"))
      assert.is_true(c.tr.closed)
      assert.same({ type = "websocket.disconnect", code = 4000, reason = "done" }, c.events[#c.events])
      assert.is_true(c.events[#c.events - 1].second_close_raises)
      assert.truthy(c.events[#c.events - 1].send_raises:find("websocket.send after websocket.close", 1, true))
    end)

    it("closes the connection when the client does not answer the close in time", function()
      local events = {}
      local c = open {
        events = events,
        config = { ws_close_timeout = 3 },
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          send { type = "websocket.close" }
          events[#events + 1] = receive()
        end,
      }
      c.tick(2999)
      assert.is_false(c.tr.closed)
      c.tick(1)
      assert.is_true(c.tr.closed)
      assert.equal(1006, c.events[#c.events].code)
    end)

    it("closes with 1000 when the app returns and 1011 when it fails", function()
      local c = connect { app = function(_, receive, send) receive(); send { type = "websocket.accept" } end }
      local _, list = c.output()
      assert.equal(1000, close_code(list[1]))
      c = connect { app = function(_, receive, send) receive(); send { type = "websocket.accept" }; error("x") end }
      _, list = c.output()
      assert.equal(1011, close_code(list[1]))
    end)

    it("gives the app 1006 when the connection drops, and send returns nil, 'disconnected'", function()
      local c = open()
      c.proto:connection_lost("ECONNRESET")
      assert.same({ type = "websocket.disconnect", code = 1006, reason = "" }, c.events[#c.events])
      local res
      local events = {}
      c = open {
        events = events,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          receive()
          res = { send { type = "websocket.send", text = "x" } }
          events[#events + 1] = receive()
        end,
      }
      c.proto:eof_received()
      assert.same({ nil, "disconnected" }, res)
      assert.is_true(c.tr.closed)
      assert.equal(1006, c.events[#c.events].code)
    end)

    it("ignores bytes after the connection closed", function()
      local c = open()
      c.send(frames.CLOSE, "")
      c.tr:take()
      c.send(frames.TEXT, "late")
      assert.equal("", c.tr:take())
    end)
  end)

  describe("keepalive", function()
    it("pings every interval and closes with 1011 when no pong comes in time", function()
      local c = open { config = { ws_ping_interval = 20, ws_ping_timeout = 5 } }
      c.tick(19999)
      assert.equal(0, #select(2, c.output()))
      c.tick(1)
      local _, list = c.output()
      assert.equal(frames.PING, list[1].opcode)
      c.tick(4999)
      assert.is_false(c.tr.closed)
      c.tick(1)
      _, list = c.output()
      assert.equal(1011, close_code(list[1]))
      assert.is_true(c.tr.closed)
      assert.equal(1011, c.events[#c.events].code)
    end)

    it("keeps the connection when the pong answers the ping", function()
      local c = open { config = { ws_ping_interval = 20, ws_ping_timeout = 5 } }
      for _ = 1, 3 do
        c.tick(20000)
        local _, list = c.output()
        assert.equal(frames.PING, list[1].opcode)
        c.send(frames.PONG, list[1].payload)
        c.tick(5000)
        assert.is_false(c.tr.closed)
      end
    end)

    it("does not ping when the interval is 0, and never times out when the timeout is 0", function()
      local c = open { config = { ws_ping_interval = 0 } }
      c.tick(1000000)
      assert.equal("", c.tr:take())
      c = open { config = { ws_ping_interval = 1, ws_ping_timeout = 0 } }
      c.tick(1000)
      c.tick(1000000)
      assert.is_false(c.tr.closed)
    end)

    it("sets its own timers with a clock that has after()", function()
      local timers = {}
      local now = 0
      local clock = {
        now = function() return now end,
        after = function(ms, fn)
          local t = { at = now + ms, fn = fn }
          function t.cancel() t.cancelled = true end
          timers[#timers + 1] = t
          return t
        end,
      }
      local function advance(ms)
        now = now + ms
        for _, t in ipairs(timers) do
          if not t.cancelled and not t.fired and t.at <= now then
            t.fired = true
            t.fn()
          end
        end
      end
      local c = open { clock = clock, config = { ws_ping_interval = 1, ws_ping_timeout = 1 } }
      advance(1000)
      local _, list = c.output()
      assert.equal(frames.PING, list[1].opcode)
      advance(1000)
      assert.is_true(c.tr.closed)
      local live = 0
      for _, t in ipairs(timers) do
        if not t.cancelled and not t.fired then live = live + 1 end
      end
      assert.equal(0, live)
    end)
  end)

  describe("backpressure", function()
    it("makes send wait while the write queue is over the high-water mark, until drained()", function()
      local queue, sent = 0, 0
      local c = connect {
        config = { ws_high_water = 1000, ws_low_water = 100 },
        queue = function() return queue end,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          for _ = 1, 3 do
            queue = queue + 600
            assert(send { type = "websocket.send", bytes = string.rep("x", 600) })
            sent = sent + 1
          end
        end,
      }
      -- 600 queued: under the mark; 1200: over it, so the second send waits.
      assert.equal(1, sent)
      assert.is_true(c.proto.want_drain)
      queue = 100
      c.proto:drained()
      assert.equal(3, sent)
      local _, list = c.output()
      assert.equal(3, #list - 1) -- three messages, then the close after the app returned
    end)

    it("checks the queue itself on check_timeout, for transports that do not call drained()", function()
      local queue, waited = 1 << 20, false
      local c = connect {
        queue = function() return queue end,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          send { type = "websocket.send", bytes = "y" }
          waited = true
        end,
      }
      assert.is_false(waited)
      c.tick(1)
      assert.is_false(waited)
      queue = 0
      c.tick(1)
      assert.is_true(waited)
    end)

    it("polls the queue with its own timer when the clock has after()", function()
      local queue, waited = 1 << 20, false
      local pending = {}
      local clock = {
        now = function() return 0 end,
        after = function(ms, fn)
          local t = { ms = ms, fn = fn }
          function t.cancel() t.cancelled = true end
          pending[#pending + 1] = t
          return t
        end,
      }
      connect {
        clock = clock,
        config = { ws_ping_interval = 0 },
        queue = function() return queue end,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          send { type = "websocket.send", bytes = "y" }
          waited = true
        end,
      }
      assert.is_false(waited)
      local t = table.remove(pending)
      assert.equal(5, t.ms)
      queue = 0
      t.fn()
      assert.is_true(waited)
    end)

    it("wakes every coroutine waiting in send when the queue drains", function()
      local queue, done = 1 << 20, {}
      local send_fn
      local c = connect {
        queue = function() return queue end,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          send_fn = send
          local helper = coroutine.create(function()
            send { type = "websocket.send", text = "from a helper" }
            done[#done + 1] = "helper"
          end)
          coroutine.resume(helper)
          send { type = "websocket.send", text = "from the app" }
          done[#done + 1] = "app"
        end,
      }
      assert.is_function(send_fn)
      assert.same({}, done)
      queue = 0
      c.proto:drained()
      table.sort(done)
      assert.same({ "app", "helper" }, done)
    end)

    it("returns nil, 'disconnected' to a waiting sender when the connection drops", function()
      local res
      local c = connect {
        queue = function() return 1 << 20 end,
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          res = { send { type = "websocket.send", bytes = "y" } }
        end,
      }
      assert.is_nil(res)
      c.proto:connection_lost()
      assert.same({ nil, "disconnected" }, res)
    end)

    it("pauses reading while ws-max-queue messages wait for the app, and resumes as it reads", function()
      local pending
      local c = open {
        config = { ws_max_queue = 3 },
        app = function(_, receive, send)
          receive()
          send { type = "websocket.accept" }
          pending = receive
          coroutine.yield() -- waits for the spec, not for the server
        end,
      }
      c.send(frames.TEXT, "1")
      c.send(frames.TEXT, "2")
      assert.is_false(c.tr.paused)
      c.send(frames.TEXT, "3")
      assert.is_true(c.tr.paused)
      -- Consume from a helper coroutine standing in for the app.
      local got = {}
      local co = coroutine.wrap(function() for _ = 1, 2 do got[#got + 1] = pending().text end end)
      co()
      assert.same({ "1", "2" }, got)
      assert.is_false(c.tr.paused)
    end)

    it("stops reading while pongs pile up for a client that does not read", function()
      local c = open { config = { ws_high_water = 1000, ws_low_water = 10 } }
      c.tr.queue = 2000
      c.send(frames.PING, "x")
      assert.is_true(c.tr.paused)
      c.tr.queue = 0
      c.proto:drained()
      assert.is_false(c.tr.paused)
    end)
  end)

  describe("graceful shutdown", function()
    for _, code in ipairs { 1012, 1001 } do
      it("closes with " .. code .. " and waits for the client's close frame", function()
        local c = open()
        c.proto:shutdown(code, 5)
        local _, list = c.output()
        assert.equal(code, close_code(list[1]))
        assert.is_false(c.tr.closed)
        c.send(frames.CLOSE, frames.close_payload(code))
        assert.is_true(c.tr.closed)
        assert.equal(code, c.events[#c.events].code)
      end)
    end

    it("closes anyway after the timeout", function()
      local c = open()
      c.proto:shutdown(1012, 2)
      c.tick(1999)
      assert.is_false(c.tr.closed)
      c.tick(1)
      assert.is_true(c.tr.closed)
    end)

    it("closes a connection still in its handshake at once", function()
      local c = connect { app = function(_, receive) receive(); coroutine.yield() end }
      c.proto:shutdown()
      assert.is_true(c.tr.closed)
    end)
  end)

  describe("permessage-deflate", function()
    -- Stored-block raw DEFLATE, as in websocket_deflate_spec.
    local function fake_uv()
      local uv = {}
      function uv.new_deflate()
        return {
          write = function(_, data)
            return "\0" .. string.pack("<I2I2", #data, (~#data) & 0xFFFF) .. data .. "\0\0\0\255\255"
          end,
          reset = function() end,
        }
      end
      function uv.new_inflate(opts)
        return {
          write = function(_, data)
            local out, pos = {}, 1
            while pos <= #data do
              local hdr, len, nlen = string.unpack("<BI2I2", data, pos)
              if hdr > 1 or len ~= (~nlen) & 0xFFFF then return nil, "EINVAL" end
              out[#out + 1] = data:sub(pos + 5, pos + 4 + len)
              pos = pos + 5 + len
            end
            local s = table.concat(out)
            if #s > opts.max_output then return nil, "EMSGSIZE" end
            return s
          end,
          reset = function() end,
        }
      end
      return uv
    end
    local function compress(s)
      return "\0" .. string.pack("<I2I2", #s, (~#s) & 0xFFFF) .. s .. "\0"
    end
    local OFFER = { { "sec-websocket-extensions", "permessage-deflate; client_max_window_bits" } }

    it("is negotiated when the loop has the primitive and the client offers it", function()
      local _, head = open { uv = fake_uv(), headers = OFFER }
      assert.truthy(head:find("\r\nsec-websocket-extensions: permessage-deflate\r\n", 1, true))
    end)

    it("is not negotiated on a loop without the primitive (real luv) or when disabled", function()
      local _, head = open { uv = {}, headers = OFFER }
      assert.is_nil(head:find("sec-websocket-extensions", 1, true))
      _, head = open { uv = fake_uv(), headers = OFFER, config = { ws_per_message_deflate = false } }
      assert.is_nil(head:find("sec-websocket-extensions", 1, true))
    end)

    it("decompresses RSV1 messages (also fragmented) and compresses what the app sends", function()
      local c = open { uv = fake_uv(), headers = OFFER }
      c.send(frames.TEXT, compress("héllo"), true, true)
      assert.equal("héllo", c.events[2].text)
      local _, list = c.output()
      assert.is_true(list[1].rsv1)
      assert.equal("héllo", (fake_uv().new_inflate { max_output = 100 }):write(list[1].payload .. "\0\0\255\255"))
      local z = compress("fragmented")
      c.send(frames.BINARY, z:sub(1, 4), false, true)
      c.send(frames.CONTINUATION, z:sub(5))
      assert.equal("fragmented", c.events[3].bytes)
      c.send(frames.TEXT, "plain")
      assert.equal("plain", c.events[4].text)
    end)

    it("closes with 1009 when a message inflates past --ws-max-size", function()
      local c = open { uv = fake_uv(), headers = OFFER, config = { ws_max_size = 10 } }
      c.send(frames.BINARY, compress(string.rep("x", 11)), true, true)
      local _, list = c.output()
      assert.equal(1009, close_code(list[#list]))
    end)

    it("accepts a compressed payload a little over --ws-max-size when it inflates within it", function()
      local c = open { uv = fake_uv(), headers = OFFER, config = { ws_max_size = 100 } }
      local z = compress(string.rep("r", 100))
      assert.is_true(#z > 100)
      c.send(frames.BINARY, z, true, true)
      assert.equal(string.rep("r", 100), c.events[2].bytes)
      c.send(frames.BINARY, string.rep("\0", 1200), true, true)
      local _, list = c.output()
      assert.equal(1009, close_code(list[#list]))
      assert.is_true(c.tr.closed) -- refused from the frame header
    end)

    it("closes with 1007 for invalid UTF-8 after decompression and for corrupt data", function()
      local c = open { uv = fake_uv(), headers = OFFER }
      c.send(frames.TEXT, compress("\xff"), true, true)
      local _, list = c.output()
      assert.equal(1007, close_code(list[#list]))
      c = open { uv = fake_uv(), headers = OFFER }
      c.send(frames.BINARY, "\7junk", true, true)
      _, list = c.output()
      assert.equal(1007, close_code(list[#list]))
    end)

    it("sends uncompressed frames when the primitive has no deflater for the agreed window", function()
      local uv = fake_uv()
      uv.new_deflate = function() return nil, "ENOTSUP: window_bits 15 only", "ENOTSUP" end
      local c, head = open { uv = uv, headers = {
        { "sec-websocket-extensions", "permessage-deflate; server_max_window_bits=10" } } }
      assert.truthy(head:find("permessage-deflate; server_max_window_bits=10", 1, true))
      c.send(frames.TEXT, compress("in"), true, true)
      local _, list = c.output()
      assert.is_false(list[1].rsv1)
      assert.equal("in", list[1].payload)
    end)

    it("rejects RSV1 on a continuation frame with 1002", function()
      local c = open { uv = fake_uv(), headers = OFFER }
      c.send(frames.BINARY, "x", false, true)
      c.send(frames.CONTINUATION, "y", true, true)
      local _, list = c.output()
      assert.equal(1002, close_code(list[#list]))
    end)
  end)

  describe("arguments", function()
    it("names the function and the argument", function()
      assert.has_error(function() ws.upgrade() end, "websocket.upgrade: opts must be a table")
      assert.has_error(function() ws.upgrade { scope = {} } end,
        "websocket.upgrade: opts.scope must be an HTTP scope with headers")
      assert.has_error(function()
        ws.upgrade { scope = request(), transport = new_transport(), app = function() end, clock = 5 }
      end, "websocket.upgrade: opts.clock must be a function returning ms or a table with now() and after()")
      assert.has_error(function()
        ws.upgrade { scope = request(), transport = new_transport(), app = function() end,
          clock = function() return 0 end, config = { ws_max_size = -1 } }
      end, "websocket.upgrade: config.ws_max_size must be a non-negative number")
    end)
  end)
end)
