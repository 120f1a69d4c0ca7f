-- The HTTP/1.x protocol state machine, driven with bytes and a fake transport: no socket, no loop.
-- Every case runs over each available request-head parser.
local http = require("luvicorn.protocols.http")
local parsers = require("luvicorn.parsers")
local logging = require("luvicorn.logging")
local fixtures = require("fixtures")

local ok_uv, uv = pcall(require, "luvrs")
if not ok_uv then uv = nil end

-- A transport that records what the protocol does.
-- With `writev`, it also has the optional transport.writev (luvrs: uv.write_batched) and counts its calls.
local function fake_transport(writev)
  local t = { out = {}, closed = false, aborted = false, paused = false, queue = 0, pauses = 0, writevs = 0 }
  function t.write(_, data)
    assert.is_false(t.closed, "write after close")
    if type(data) == "table" then data = table.concat(data) end
    t.out[#t.out + 1] = data
  end
  if writev then
    function t.writev(self, ...)
      for i = 1, select("#", ...) do assert.are.equal("string", type((select(i, ...)))) end
      t.writevs = t.writevs + 1
      self:write({ ... })
    end
  end
  function t.close() t.closed = true end
  function t.abort() t.closed = true; t.aborted = true end
  function t.pause_reading() t.paused = true; t.pauses = t.pauses + 1 end
  function t.resume_reading() t.paused = false end
  function t.get_write_queue_size() return t.queue end
  function t.text() return table.concat(t.out) end
  return t
end

-- Splits a byte stream of responses into { status, headers (lower-case name -> value), body, head }.
local function responses(s)
  local list, pos = {}, 1
  while pos <= #s do
    local e = s:find("\r\n\r\n", pos, true)
    if not e then error("incomplete response head: " .. s:sub(pos)) end
    local head = s:sub(pos, e + 1)
    local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do
      headers[name:lower()] = headers[name:lower()] and (headers[name:lower()] .. ", " .. value) or value
    end
    pos = e + 4
    local body = ""
    local no_body = status == 100 or status == 204 or status == 304 or list.head_next
    if headers["content-length"] and not no_body then
      local n = tonumber(headers["content-length"])
      body = s:sub(pos, pos + n - 1)
      pos = pos + n
    elseif headers["transfer-encoding"] == "chunked" then
      local parts = {}
      while true do
        local le = s:find("\r\n", pos, true)
        local size = tonumber(s:sub(pos, le - 1), 16)
        pos = le + 2
        if size == 0 then
          local te = s:find("\r\n\r\n", pos - 2, true)
          headers.trailer_block = s:sub(pos, te + 1)
          pos = te + 4
          break
        end
        parts[#parts + 1] = s:sub(pos, pos + size - 1)
        pos = pos + size + 2
      end
      body = table.concat(parts)
    elseif not no_body and status ~= 100 then
      body = s:sub(pos)
      pos = #s + 1
    end
    list[#list + 1] = { status = status, headers = headers, body = body, head = head }
  end
  return list
end

for _, impl in ipairs(parsers.available(uv)) do
  describe("http protocol (" .. impl.name .. " parser)", function()
    local now, errors
    local function make(app, opts)
      opts = opts or {}
      errors = {}
      local log = logging.new({ level = "debug", access_log = opts.access_log or false,
        err = { write = function(_, line) errors[#errors + 1] = line end, flush = function() end },
        out = opts.out })
      opts.app = app
      opts.parse_head = impl.parse_head
      opts.parse_request = impl.parse_request
      opts.response_headers = impl.response_headers
      opts.log = log
      opts.clock = function() return now end
      opts.time = function() return 1700000000 end
      opts.hrtime = function() return now * 1e6 end
      local ctx = http.context(opts)
      local t = fake_transport(opts.writev)
      local p = http.new(ctx, t, { "127.0.0.1", 5000 }, { "127.0.0.1", 8000 })
      return p, t, ctx
    end
    before_each(function() now = 1000 end)

    -- The connection's deadline is `ms` from now: open 1 ms before it, closed by check_timeout at it.
    local function closes_after(p, t, ms)
      now = now + ms - 1
      assert.is_false(p:check_timeout(now))
      assert.is_false(t.closed)
      now = now + 1
      assert.is_true(p:check_timeout(now))
      assert.is_true(t.closed)
    end

    local function hello(_, _, send)
      send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
      send({ type = "http.response.body", body = "Hello, world!" })
    end

    it("answers a GET with content-length, date and server headers, and keeps the connection", function()
      local p, t = make(hello)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = responses(t.text())
      assert.are.equal(1, #r)
      assert.are.equal(200, r[1].status)
      assert.are.equal("Hello, world!", r[1].body)
      assert.are.equal("13", r[1].headers["content-length"])
      assert.are.equal("Tue, 14 Nov 2023 22:13:20 GMT", r[1].headers.date)
      assert.are.equal("luvicorn", r[1].headers.server)
      assert.is_nil(r[1].headers.connection)
      assert.is_false(t.closed)
      assert.is_true(p:is_idle())
    end)

    it("writes the head and the body in one write", function()
      local p, t = make(hello)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal(1, #t.out)
    end)

    it("gives a complete response to transport.writev when there is one, the same bytes as write", function()
      local big = string.rep("b", 20000)
      local app = function(scope, _, send)
        local q = scope.query_string
        local headers = { { "content-type", "text/plain" } }
        if q == "cl" then headers[2] = { "content-length", "5" } end
        send({ type = "http.response.start", status = q == "204" and 204 or 200, headers = headers })
        if q == "stream" then send({ type = "http.response.body", body = "ab", more_body = true }) end
        send({ type = "http.response.body", body = q == "big" and big or "hello" })
      end
      local requests = { "GET /?plain HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD /?head HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /?204 HTTP/1.1\r\nHost: x\r\n\r\n", "GET /?cl HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /?stream HTTP/1.1\r\nHost: x\r\n\r\n", "GET /?big HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /?plain HTTP/1.0\r\n\r\n" }
      local p1, t1 = make(app)
      local p2, t2 = make(app, { writev = true })
      for _, req in ipairs(requests) do
        p1:data_received(req)
        p2:data_received(req)
      end
      assert.are.equal(t1.text(), t2.text())
      assert.are.equal(#requests, select(2, t2.text():gsub("HTTP/1%.1 %d%d%d ", "")))
      -- plain, content-length and HTTP/1.0 go through writev; HEAD, 204, streamed and big ones do not
      assert.are.equal(3, t2.writevs)
      assert.are.equal(0, t1.writevs)
    end)

    it("builds the scope", function()
      local seen
      local p = make(function(scope, receive, send)
        seen = scope
        assert.are.same({ type = "http.request", body = "", more_body = false }, receive())
        hello(scope, receive, send)
      end, { root_path = "/root" })
      p:data_received("GET /a%20b/c?x=%20&y HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")
      assert.are.equal("http", seen.type)
      assert.are.same({ version = "1.0", spec_version = "1.0" }, seen.lasgi)
      assert.are.equal("1.1", seen.http_version)
      assert.are.equal("GET", seen.method)
      assert.are.equal("http", seen.scheme)
      assert.are.equal("/root/a b/c", seen.path)
      assert.are.equal("/root/a%20b/c", seen.raw_path)
      assert.are.equal("x=%20&y", seen.query_string)
      assert.are.equal("/root", seen.root_path)
      assert.are.same({ { "host", "x" }, { "x-a", "1" } }, seen.headers)
      assert.are.same({ "127.0.0.1", 5000 }, seen.client)
      assert.are.same({ "127.0.0.1", 8000 }, seen.server)
      assert.are.same({}, seen.state)
      assert.is_table(seen.extensions["http.response.pathsend"])
      assert.is_nil(seen.extensions["http.response.trailers"])
    end)

    it("copies the lifespan state into each scope (shallow)", function()
      local states = {}
      local lstate = { db = "conn" }
      local p = make(function(scope, r, s)
        states[#states + 1] = scope.state
        scope.state.mine = true
        hello(scope, r, s)
      end, { state = lstate })
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal(2, #states)
      assert.are.equal("conn", states[2].db)
      assert.is_nil(states[2].mine == true and states[1] == states[2] or nil)
      assert.is_nil(lstate.mine)
    end)

    it("answers pipelined requests in order", function()
      local p, t = make(function(scope, _, send)
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = scope.path })
      end)
      p:data_received("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = responses(t.text())
      assert.are.same({ "/1", "/2", "/3" }, { r[1].body, r[2].body, r[3].body })
    end)

    it("survives many pipelined requests in one read", function()
      local p, t = make(hello)
      p:data_received(("GET / HTTP/1.1\r\nHost: x\r\n\r\n"):rep(2000))
      assert.are.equal(2000, #responses(t.text()))
    end)

    it("answers a request that arrives one byte at a time", function()
      local p, t = make(hello)
      for c in ("GET / HTTP/1.1\r\nHost: x\r\n\r\n"):gmatch(".") do p:data_received(c) end
      assert.are.equal(200, responses(t.text())[1].status)
    end)

    it("closes after Connection: close from the client", function()
      local p, t = make(hello)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local r = responses(t.text())
      assert.are.equal("close", r[1].headers.connection)
      assert.is_true(t.closed)
      assert.is_false(t.aborted)
    end)

    it("closes after Connection: close from the app", function()
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200, headers = { { "Connection", "close" } } })
        send({ type = "http.response.body", body = "x" })
      end)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal("close", responses(t.text())[1].headers.connection)
      assert.is_true(t.closed)
    end)

    it("closes HTTP/1.0 connections by default and keeps them with keep-alive", function()
      local p, t = make(hello)
      p:data_received("GET / HTTP/1.0\r\n\r\n")
      assert.are.equal("close", responses(t.text())[1].headers.connection)
      assert.is_true(t.closed)
      local p2, t2 = make(hello)
      p2:data_received("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
      assert.are.equal("keep-alive", responses(t2.text())[1].headers.connection)
      assert.is_false(t2.closed)
    end)

    it("streams a response with chunked encoding", function()
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = "a", more_body = true })
        send({ type = "http.response.body", body = "", more_body = true })
        send({ type = "http.response.body", body = "bc", more_body = true })
        send({ type = "http.response.body", body = "" })
      end)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = responses(t.text())
      assert.are.equal("chunked", r[1].headers["transfer-encoding"])
      assert.are.equal("abc", r[1].body)
      assert.is_false(t.closed)
    end)

    it("streams to HTTP/1.0 by closing the connection", function()
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = "a", more_body = true })
        send({ type = "http.response.body", body = "b" })
      end)
      p:data_received("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      local r = responses(t.text())
      assert.is_nil(r[1].headers["transfer-encoding"])
      assert.are.equal("ab", r[1].body)
      assert.is_true(t.closed)
    end)

    it("keeps the app's content-length and checks the body against it", function()
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200, headers = { { "content-length", "4" } } })
        send({ type = "http.response.body", body = "ab", more_body = true })
        send({ type = "http.response.body", body = "cd" })
      end)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local r = responses(t.text())
      assert.are.equal("abcd", r[1].body)
      assert.is_nil(r[1].headers["transfer-encoding"])
    end)

    it("fails a body longer than content-length and closes", function()
      local result
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200, headers = { { "content-length", "2" } } })
        result = { pcall(send, { type = "http.response.body", body = "abc" }) }
      end)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_false(result[1])
      assert.matches("longer than content%-length", result[2])
      assert.is_true(t.aborted)
    end)

    it("fails a body shorter than content-length and closes", function()
      local p, t = make(function(_, _, send)
        send({ type = "http.response.start", status = 200, headers = { { "content-length", "5" } } })
        send({ type = "http.response.body", body = "abc" })
      end)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_true(t.aborted)
      assert.matches("shorter than content%-length", errors[1])
    end)

    it("sends no body for HEAD but the length GET would have", function()
      local p, t = make(hello)
      p:data_received("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
      local text = t.text()
      assert.matches("content%-length: 13\r\n", text)
      assert.are.equal("\r\n\r\n", text:sub(-4))
      assert.is_false(t.closed)
    end)

    it("sends no body and no framing for 204 and 304", function()
      for _, status in ipairs({ 204, 304 }) do
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = status })
          send({ type = "http.response.body", body = "" })
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local text = t.text()
        assert.is_nil(text:find("content-length", 1, true))
        assert.is_nil(text:find("transfer-encoding", 1, true))
        assert.are.equal("\r\n\r\n", text:sub(-4))
      end
    end)

    it("omits date and server headers when told, and adds --header ones", function()
      local p, t = make(hello, { date_header = false, server_header = false, headers = { { "x-extra", "1" } } })
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local h = responses(t.text())[1].headers
      assert.is_nil(h.date)
      assert.is_nil(h.server)
      assert.are.equal("1", h["x-extra"])
    end)

    describe("request bodies", function()
      local function echo(_, receive, send)
        local parts, events = {}, 0
        repeat
          local ev = receive()
          assert.are.equal("http.request", ev.type)
          parts[#parts + 1] = ev.body
          events = events + 1
        until not ev.more_body
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = table.concat(parts) .. "|" .. events })
      end

      it("reads a Content-Length body", function()
        local p, t = make(echo)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        assert.are.equal("hello|1", responses(t.text())[1].body)
      end)

      it("streams a body that arrives in pieces as several events", function()
        local p, t = make(echo)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
        p:data_received("lo")
        p:data_received("world")
        assert.are.equal("helloworld|3", responses(t.text())[1].body)
      end)

      it("de-chunks a chunked body, with extensions and trailers dropped", function()
        local p, t = make(echo)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        assert.are.equal("hello world|1", responses(t.text())[1].body)
      end)

      it("de-chunks a chunked body fed one byte at a time", function()
        local p, t = make(echo)
        local req = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
          .. "A\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
        for c in req:gmatch(".") do p:data_received(c) end
        local r = responses(t.text())
        assert.are.equal(2, #r)
        assert.matches("^0123456789x|", r[1].body)
      end)

      it("keeps the bytes after a body for the next request", function()
        local p, t = make(echo)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local r = responses(t.text())
        assert.are.equal("ab|1", r[1].body)
        assert.are.equal("|1", r[2].body)
      end)

      it("drops a small unread body and serves the next request", function()
        local p, t = make(hello)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
        p:data_received("cGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(2, #responses(t.text()))
        assert.is_false(t.closed)
      end)

      it("returns http.disconnect after the response completed", function()
        local after
        local p = make(function(s, r, send)
          hello(s, r, send)
          after = r()
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.same({ type = "http.disconnect" }, after)
      end)

      it("wakes a waiting receive with http.disconnect when the connection is lost", function()
        local events = {}
        local p = make(function(_, receive)
          events[#events + 1] = receive()
          events[#events + 1] = receive()
        end)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        p:connection_lost()
        assert.are.same({ type = "http.request", body = "ab", more_body = true }, events[1])
        assert.are.same({ type = "http.disconnect" }, events[2])
      end)

      it("pauses reading past 64 KiB of unreceived body and resumes when the app receives", function()
        local receive_fn
        local p, t = make(function(_, receive) receive_fn = receive; coroutine.yield() end)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n")
        p:data_received(("x"):rep(70000))
        assert.is_true(t.paused)
        p:data_received(("x"):rep(1000)) -- what was in flight is still accepted
        assert.is_true(t.paused)
        assert.is_function(receive_fn)
      end)

      it("answers Expect: 100-continue when the app first receives", function()
        local p, t = make(echo)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert.are.equal("HTTP/1.1 100 Continue\r\n\r\n", t.text())
        p:data_received("hi")
        local r = responses(t.text())
        assert.are.equal(100, r[1].status)
        assert.are.equal("hi|1", r[2].body)
      end)

      it("does not send 100 Continue when the app answers without receiving", function()
        local p, t = make(hello)
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        local r = responses(t.text())
        assert.are.equal(200, r[1].status)
        assert.are.equal(1, #r)
        assert.is_true(t.closed)
      end)
    end)

    describe("rejections", function()
      local function rejected(req, status, opts)
        local called = false
        local p, t = make(function(scope, receive, send)
          called = true
          local ev
          repeat ev = receive() until ev.type == "http.disconnect" or not ev.more_body
          hello(scope, receive, send)
        end, opts)
        p:data_received(req)
        local r = responses(t.text())
        assert.are.equal(1, #r, "one response")
        assert.are.equal(status, r[1].status)
        assert.are.equal("close", r[1].headers.connection)
        assert.are.equal("text/plain; charset=utf-8", r[1].headers["content-type"])
        assert.is_true(#r[1].body > 1)
        assert.is_true(t.closed)
        return called, r[1]
      end

      local cases = {
        { "a malformed request line", "GET/ HTTP/1.1\r\n\r\n", 400 },
        { "a malformed header", "GET / HTTP/1.1\r\nHost x\r\n\r\n", 400 },
        { "both Content-Length and Transfer-Encoding",
          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
        { "differing Content-Length values",
          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
        { "an invalid Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400 },
        { "gzip as the final coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
        { "an unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
        { "an invalid chunk size",
          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400 },
        { "a chunk size with junk", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400 },
        { "a huge chunk size",
          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400 },
        { "a chunk without its CRLF",
          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXX", 400 },
        { "a bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400 },
        { "obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n  c\r\n\r\n", 400 },
        { "a missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400 },
        { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
        { "Transfer-Encoding on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
        { "HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505 },
        { "an invalid target", "GET abc HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
      }
      for _, case in ipairs(cases) do
        it("answers " .. case[3] .. " to " .. case[1], function()
          rejected(case[2], case[3])
        end)
      end

      it("answers 414 to a request line over --max-request-head", function()
        rejected("GET /" .. ("a"):rep(200) .. " HTTP/1.1\r\n", 414, { max_request_head = 100 })
      end)

      it("answers 431 to a head over --max-request-head", function()
        rejected("GET / HTTP/1.1\r\nHost: x\r\nA: " .. ("a"):rep(200), 431, { max_request_head = 100 })
      end)

      it("answers 431 past --max-headers", function()
        rejected("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", 431, { max_headers = 2 })
      end)

      it("answers 413 to a Content-Length over --max-body-size without calling the app", function()
        local called = rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", 413, { max_body_size = 10 })
        assert.is_false(called)
      end)

      it("answers 413 when a chunked body grows over --max-body-size", function()
        local events = {}
        local p, t = make(function(_, receive)
          repeat local ev = receive(); events[#events + 1] = ev until ev.type == "http.disconnect"
        end, { max_body_size = 10 })
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
        p:data_received("8\r\n12345678\r\n")
        local r = responses(t.text())
        assert.are.equal(413, r[1].status)
        assert.is_true(t.closed)
        assert.are.equal("http.disconnect", events[#events].type)
      end)

      it("answers 503 over --limit-concurrency", function()
        local p, t, ctx = make(hello, { limit_concurrency = 5 })
        ctx.active = 5
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(503, responses(t.text())[1].status)
      end)
    end)

    describe("app failures", function()
      it("answers 500 and closes when the app fails before starting", function()
        local p, t = make(function() error("boom") end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(500, responses(t.text())[1].status)
        assert.is_true(t.closed)
        assert.matches("boom", errors[1])
        assert.matches("traceback", errors[1])
      end)

      it("closes the connection when the app fails after starting", function()
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = 200 })
          send({ type = "http.response.body", body = "part", more_body = true })
          error("late boom")
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.is_true(t.aborted)
        assert.matches("late boom", errors[1])
      end)

      it("answers 500 when the app returns without starting", function()
        local p, t = make(function() end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(500, responses(t.text())[1].status)
        assert.matches("without starting", errors[1])
      end)

      it("closes when the app returns without completing", function()
        local p, t = make(function(_, _, send) send({ type = "http.response.start", status = 200 }) end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.is_true(t.aborted)
        assert.matches("without completing", errors[1])
      end)

      it("raises for misuse: unknown event, body before start, body after end, bad headers", function()
        local results = {}
        local p = make(function(_, _, send)
          results[1] = { pcall(send, { type = "nope" }) }
          results[2] = { pcall(send, { type = "http.response.body", body = "x" }) }
          results[3] = { pcall(send, { type = "http.response.start", status = 200, headers = { { "a b", "1" } } }) }
          results[4] = { pcall(send, { type = "http.response.start", status = 200, headers = { { "a", "1\r\n" } } }) }
          results[5] = { pcall(send, { type = "http.response.start", status = "200" }) }
          send({ type = "http.response.start", status = 200 })
          results[6] = { pcall(send, { type = "http.response.start", status = 200 }) }
          send({ type = "http.response.body", body = "x" })
          results[7] = { pcall(send, { type = "http.response.body", body = "x" }) }
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for i = 1, 7 do
          assert.is_false(results[i][1], "case " .. i)
          assert.matches("^send: ", results[i][2]:gsub("^[^:]*:%d+: ", ""))
        end
      end)

      it("returns nil, 'disconnected' from send once the connection is gone", function()
        local result
        local p = make(function(_, receive, send)
          send({ type = "http.response.start", status = 200 })
          send({ type = "http.response.body", body = "a", more_body = true })
          receive() -- the (empty) body
          receive() -- waits until disconnect
          result = { send({ type = "http.response.body", body = "b" }) }
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        p:connection_lost("ECONNRESET")
        assert.are.same({ nil, "disconnected" }, result)
      end)
    end)

    describe("write backpressure", function()
      it("send waits while the queue is over the high-water mark and resumes on drain", function()
        local progress = 0
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = 200 })
          for _ = 1, 3 do
            send({ type = "http.response.body", body = "x", more_body = true })
            progress = progress + 1
          end
          send({ type = "http.response.body", body = "" })
        end)
        t.queue = http.HIGH_WATER + 1
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.are.equal(0, progress)
        assert.is_true(p.want_drain)
        t.queue = 0
        p:drained()
        assert.are.equal(3, progress)
        assert.are.equal("xxx", responses(t.text())[1].body)
      end)
    end)

    describe("timeouts", function()
      it("closes an idle keep-alive connection after --timeout-keep-alive", function()
        local p, t = make(hello, { timeout_keep_alive = 5 })
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        closes_after(p, t, 5000)
      end)

      it("closes a client whose head does not arrive within --timeout-request-head", function()
        local p, t = make(hello, { timeout_request_head = 2 })
        p:data_received("GET / HTTP/1.1\r\n")
        now = now + 1000
        p:data_received("Host: x\r\n") -- trickling bytes does not extend the deadline
        closes_after(p, t, 1000)
        assert.are.equal(408, responses(t.text())[1].status)
      end)

      it("does not time out while the app works on a request", function()
        local p, t = make(function() coroutine.yield() end, { timeout_keep_alive = 1, timeout_request_head = 1 })
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        now = now + 60000
        assert.is_false(p:check_timeout(now))
        assert.is_false(t.closed)
      end)
    end)

    describe("graceful shutdown", function()
      it("gives an idle keep-alive connection a second, then closes it", function()
        local p, t = make(hello)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        p.ctx.shutting_down = true
        p:shutdown()
        closes_after(p, t, 1000)
      end)

      it("answers a request that arrives in that second with connection: close", function()
        local p, t = make(hello)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        p.ctx.shutting_down = true
        p:shutdown()
        now = now + 300
        p:data_received("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        local r = responses(t.text())
        assert.are.equal(2, #r)
        assert.are.equal(200, r[2].status)
        assert.are.equal("close", r[2].headers.connection)
        assert.is_true(t.closed)
      end)

      it("gives a connection accepted just before the shutdown a second to send its request", function()
        local p, t = make(hello)
        p.ctx.shutting_down = true -- as the server sets it before shutting each connection down
        p:shutdown()
        assert.is_false(t.closed)
        now = now + 500
        assert.is_false(p:check_timeout(now))
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local r = responses(t.text())
        assert.are.equal(200, r[1].status)
        assert.are.equal("close", r[1].headers.connection)
        assert.is_true(t.closed)
      end)

      it("closes a fresh connection that sends nothing within that second", function()
        local p, t = make(hello)
        p:data_received("GET / HT")
        p:shutdown()
        closes_after(p, t, 1000)
      end)

      it("lets an in-flight response finish with connection: close", function()
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = 200 })
          coroutine.yield() -- stands for a luvrs.co wait: resumed from outside
          send({ type = "http.response.body", body = "done" })
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        p:shutdown()
        assert.is_false(t.closed)
        assert(coroutine.resume(p.cycle.co))
        local r = responses(t.text())
        assert.are.equal("done", r[1].body)
        assert.are.equal("close", r[1].headers.connection)
        assert.is_true(t.closed)
        assert.is_false(t.aborted)
      end)
    end)

    describe("extensions", function()
      it("sends trailers when the request sent TE: trailers", function()
        local seen
        local p, t = make(function(scope, _, send)
          seen = scope.extensions
          send({ type = "http.response.start", status = 200, trailers = true })
          send({ type = "http.response.body", body = "abc" })
          send({ type = "http.response.trailers", headers = { { "x-checksum", "42" } } })
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        assert.is_table(seen["http.response.trailers"])
        local r = responses(t.text())
        assert.are.equal("chunked", r[1].headers["transfer-encoding"])
        assert.are.equal("abc", r[1].body)
        assert.are.equal("x-checksum: 42\r\n", r[1].headers.trailer_block)
        assert.is_false(t.closed)
      end)

      it("sends a file with pathsend (no transport sendfile: read in chunks)", function()
        local path = fixtures.tmpfile(("0123456789"):rep(10000))
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = 200 })
          send({ type = "http.response.pathsend", path = path })
        end)
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        os.remove(path)
        local r = responses(t.text())
        assert.are.equal("100000", r[1].headers["content-length"])
        assert.are.equal(("0123456789"):rep(10000), r[1].body)
      end)

      it("hands pathsend to transport.sendfile when there is one", function()
        local path = fixtures.tmpfile("abc")
        local p, t = make(function(_, _, send)
          send({ type = "http.response.start", status = 200 })
          send({ type = "http.response.pathsend", path = path })
        end)
        local pending
        t.sendfile = function(_, fpath, offset, length, cb)
          pending = { fpath, offset, length, cb }
        end
        p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        os.remove(path)
        assert.are.same({ path, 0, 3 }, { pending[1], pending[2], pending[3] })
        assert.is_false(p:is_idle())
        pending[4](nil)
        assert.is_true(p:is_idle())
      end)
    end)

    it("writes an access log line with the response time", function()
      local lines = {}
      local out = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end, flush = function() end }
      local p = make(hello, { access_log = true, out = out })
      p:data_received("GET /x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.same({}, lines) -- buffered until the server's next flush
      p.ctx.log:flush()
      assert.matches('^INFO:     127%.0%.0%.1:5000 %- "GET /x%?y=1 HTTP/1%.1" 200 OK %d+%.%d%dms\n$', lines[1])
    end)

    it("passes the scope and the response body bytes to a custom access-log format", function()
      local out = { text = "", write = function(self, s) self.text = self.text .. s end, flush = function() end }
      local p, t = make(function(scope, _, send)
        if scope.path == "/boom" then error("boom") end
        send({ type = "http.response.start", status = 200 })
        if scope.path == "/stream" then
          send({ type = "http.response.body", body = "abc", more_body = true })
          send({ type = "http.response.body", body = "", more_body = true })
          send({ type = "http.response.body", body = "defgh" })
        else
          send({ type = "http.response.body", body = "Hello, world!" })
        end
      end)
      local err = { text = "", write = out.write, flush = out.flush }
      p.ctx.log = logging.new({ out = out, err = err, access_log_format = "$request_line $status $bytes $http_x_id" })
      p:data_received("GET /a HTTP/1.1\r\nHost: x\r\nX-Id: 1\r\n\r\n"
        .. "GET /stream HTTP/1.1\r\nHost: x\r\nX-Id: 2\r\n\r\n"
        .. "HEAD /a HTTP/1.1\r\nHost: x\r\nX-Id: 3\r\n\r\n"
        .. "GET /boom HTTP/1.1\r\nHost: x\r\nX-Id: 4\r\n\r\n")
      p.ctx.log:flush()
      assert.are.equal("GET /a HTTP/1.1 200 13 1\nGET /stream HTTP/1.1 200 8 2\nHEAD /a HTTP/1.1 200 0 3\n"
        .. "GET /boom HTTP/1.1 500 22 4\n", out.text)
      local r = responses(t.text())
      assert.are.equal("abcdefgh", r[2].body)
      assert.are.equal(22, #r[4].body)
      assert.matches("ERROR:    Exception in LASGI application\n.*boom", err.text)
    end)

    it("uses X-Forwarded-* from a trusted proxy only", function()
      local seen
      local app = function(scope, r, s) seen = scope; hello(scope, r, s) end
      local p = make(app)
      p:data_received("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"
        .. "X-Forwarded-Proto: https\r\n\r\n")
      assert.are.equal("https", seen.scheme)
      assert.are.equal("10.0.0.1", seen.client[1])
      local p2 = make(app, { forwarded_allow_ips = { "10.9.9.9" } })
      p2:data_received("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n")
      assert.are.equal("http", seen.scheme)
      assert.are.equal("127.0.0.1", seen.client[1])
    end)

    it("keeps an earlier request's receive and send from touching the next request", function()
      local first_send, first_receive
      local n = 0
      local p, t = make(function(scope, receive, send)
        n = n + 1
        if n == 1 then first_send, first_receive = send, receive end
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = scope.path })
      end)
      p:data_received("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
      local late_send
      -- the second request's app waits, so it is the connection's current request
      local p2, t2 = make(function(scope, _, send)
        if scope.path == "/1" then
          late_send = send
          send({ type = "http.response.start", status = 200 })
          send({ type = "http.response.body", body = "one" })
          return
        end
        send({ type = "http.response.start", status = 200 })
        coroutine.yield()
        send({ type = "http.response.body", body = "two" })
      end)
      p2:data_received("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
      local ok, err = pcall(late_send, { type = "http.response.body", body = "intruder" })
      assert.is_false(ok)
      assert.matches("after the response completed", err)
      assert(coroutine.resume(p2.cycle.co))
      local r = responses(t2.text())
      assert.are.same({ "one", "two" }, { r[1].body, r[2].body })
      -- and on the first connection, after its request is over
      assert.are.same({ type = "http.disconnect" }, first_receive())
      assert.has_error(function() first_send({ type = "http.response.start", status = 200 }) end)
      assert.are.equal("/1", responses(t.text())[1].body)
      assert.is_true(p:is_idle())
    end)

    describe("starts a request afresh on a connection after", function()
      -- Each first request leaves different per-request state behind on the connection; the second,
      -- a plain GET, must see none of it.
      local TE_GET = "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"
      local cases = {
        { "a body read after 100-continue, a wait, a streamed response with trailers",
          "POST / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
          { "ab", "cd" },
          function(receive, send, t)
            assert.are.equal("abcd", receive().body .. receive().body)
            send({ type = "http.response.start", status = 200, trailers = true })
            t.queue = http.HIGH_WATER + 1
            send({ type = "http.response.body", body = "a", more_body = true })
            send({ type = "http.response.body", body = "b" })
            send({ type = "http.response.trailers", headers = { { "x-t", "1" } } })
          end },
        { "a body the app never read", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", { "hi" },
          function(_, send, _, pause)
            pause() -- until the body is in
            send({ type = "http.response.start", status = 200 })
            send({ type = "http.response.body", body = "ok" })
          end },
        { "an empty body received", TE_GET, {},
          function(receive, send)
            receive()
            send({ type = "http.response.start", status = 200 })
            send({ type = "http.response.body", body = "ok" })
          end },
        { "trailers on a HEAD response", "HEAD / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n", {},
          function(_, send)
            send({ type = "http.response.start", status = 200, trailers = true })
            send({ type = "http.response.body", body = "" })
            send({ type = "http.response.trailers", headers = {} })
          end },
        { "a streamed response", TE_GET, {},
          function(_, send)
            send({ type = "http.response.start", status = 200 })
            send({ type = "http.response.body", body = "a", more_body = true })
            send({ type = "http.response.body", body = "b" })
          end },
      }
      for _, case in ipairs(cases) do
        local name, head, pieces, first = case[1], case[2], case[3], case[4]
        it(name, function()
          local n, seen, paused = 0, {}, nil
          local function pause() -- until the test resumes the app
            paused = coroutine.running()
            coroutine.yield()
          end
          local p, t
          p, t = make(function(_, receive, send)
            n = n + 1
            if n == 1 then return first(receive, send, t, pause) end
            seen.event = receive()
            seen.trailers = { pcall(send, { type = "http.response.trailers", headers = {} }) }
            send({ type = "http.response.start", status = 200 })
            send({ type = "http.response.body", body = "plain" })
          end)
          p:data_received(head)
          for _, piece in ipairs(pieces) do p:data_received(piece) end
          if paused then assert(coroutine.resume(paused)) end
          t.queue = 0
          p:drained()
          assert.are.equal(1, n)
          t.out = {}
          p:data_received(TE_GET)
          assert.are.same({ type = "http.request", body = "", more_body = false }, seen.event)
          assert.is_false(seen.trailers[1])
          assert.matches("without trailers = true", seen.trailers[2])
          local r = responses(t.text())
          assert.are.equal(1, #r)
          assert.are.equal("plain", r[1].body)
          assert.are.equal("5", r[1].headers["content-length"])
          assert.is_nil(r[1].headers["transfer-encoding"])
          assert.is_false(t.closed)
          assert.is_true(p:is_idle())
        end)
      end
    end)

    it("never raises on random and malformed input fed in random pieces", function()
      math.randomseed(4242)
      local seeds = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
      }
      local function echo(_, receive, send)
        local ev
        repeat ev = receive() until ev.type ~= "http.request" or not ev.more_body
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = "ok" })
      end
      for _ = 1, 500 do
        local p, t = make(echo)
        local stream = {}
        for i = 1, math.random(1, 4) do stream[i] = seeds[math.random(#seeds)] end
        local s = table.concat(stream)
        for _ = 1, math.random(0, 3) do
          local pos = math.random(1, #s)
          s = s:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. s:sub(pos + 1)
        end
        local pos = 1
        while pos <= #s and not t.closed do
          local n = math.random(1, 20)
          p:data_received(s:sub(pos, pos + n - 1))
          pos = pos + n
        end
        if not t.closed then p:eof_received() end
        p:connection_lost()
        for _, r in ipairs(responses(t.text())) do assert.is_number(r.status) end
      end
    end)

    it("closes on EOF when idle, and finishes the response on EOF after a complete request", function()
      local p, t = make(hello)
      p:eof_received()
      assert.is_true(t.closed)
      local send_fn
      local p2, t2 = make(function(_, _, send) send_fn = send; coroutine.yield() end)
      p2:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      p2:eof_received()
      assert.is_false(t2.closed)
      assert.is_function(send_fn)
    end)
  end)
end

-- Proxy headers as the protocol applies them (the choice itself is luvicorn.proxy's, see proxy_spec.lua):
-- trust decided per connection from the peer, the scope's client and scheme per request.
describe("http protocol proxy headers", function()
  local function serve(peer, server, opts, request)
    local seen
    opts = opts or {}
    opts.app = function(scope, _, send)
      seen = scope
      send({ type = "http.response.start", status = 200 })
      send({ type = "http.response.body", body = "" })
    end
    opts.parse_head = parsers.available(uv)[1].parse_head
    opts.log = logging.new({ level = "critical", access_log = false })
    local p = http.new(http.context(opts), fake_transport(), peer, server)
    p:data_received(request)
    return seen, p
  end
  local TCP = { "127.0.0.1", 8000 }
  local UNIX = { "/run/app.sock", nil }
  local XFF = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\r\n"
  local FWD = 'GET / HTTP/1.1\r\nHost: x\r\nForwarded: for="[2001:db8::7]:4711";proto=https\r\n'
    .. "Forwarded: for=10.1.2.3;proto=http\r\n\r\n"

  it("trusts the default loopback peers, IPv6 included, and any form of their address", function()
    for _, peer in ipairs({ "127.0.0.1", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1" }) do
      local scope, p = serve({ peer, 5000 }, TCP, nil, XFF)
      assert.is_true(p.trusted, peer)
      assert.are.same({ "10.1.2.3", 0 }, scope.client, peer) -- 10.1.2.3 is not trusted by default
      assert.are.equal("https", scope.scheme)
    end
  end)

  it("walks X-Forwarded-For through trusted CIDR networks", function()
    local scope = serve({ "10.0.0.5", 5000 }, TCP, { forwarded_allow_ips = { "10.0.0.0/8" } }, XFF)
    assert.are.same({ "203.0.113.7", 0 }, scope.client)
    assert.are.equal("https", scope.scheme)
  end)

  it("ignores the headers from an untrusted peer, and with proxy headers off", function()
    local scope, p = serve({ "192.0.2.1", 5000 }, TCP, { forwarded_allow_ips = { "10.0.0.0/8" } }, XFF)
    assert.is_false(p.trusted)
    assert.are.same({ "192.0.2.1", 5000 }, scope.client)
    assert.are.equal("http", scope.scheme)
    scope, p = serve({ "127.0.0.1", 5000 }, TCP, { proxy_headers = false }, XFF)
    assert.is_false(p.trusted)
    assert.are.same({ "127.0.0.1", 5000 }, scope.client)
    assert.are.equal("http", scope.scheme)
  end)

  it("uses Forwarded, with the port and proto of the chosen element", function()
    local scope = serve({ "10.0.0.5", 5000 }, TCP, { forwarded_allow_ips = { "10.0.0.0/8" } }, FWD)
    assert.are.same({ "2001:db8::7", 4711 }, scope.client)
    assert.are.equal("https", scope.scheme)
  end)

  it("ignores Forwarded when X-Forwarded-For is there: a proxy may pass the client's own on", function()
    local scope = serve({ "10.0.0.5", 5000 }, TCP, { forwarded_allow_ips = { "10.0.0.0/8" } },
      FWD:gsub("\r\n\r\n$", "\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n"))
    assert.are.same({ "198.51.100.1", 0 }, scope.client)
    assert.are.equal("http", scope.scheme)
  end)

  it("trusts a Unix-socket peer only with unix:", function()
    local scope, p = serve(nil, UNIX, { forwarded_allow_ips = { "unix:" } }, XFF)
    assert.is_true(p.trusted)
    assert.are.same({ "10.1.2.3", 0 }, scope.client)
    assert.are.equal("https", scope.scheme)
    scope, p = serve(nil, UNIX, nil, XFF)
    assert.is_false(p.trusted)
    assert.is_nil(scope.client)
    assert.are.equal("http", scope.scheme)
  end)

  it("raises the trust list's error from context", function()
    local ok, err = pcall(http.context, { app = function() end, parse_head = function() end,
      forwarded_allow_ips = { "127.0.0.1", "10.0.0.0/40" } })
    assert.is_false(ok)
    assert.are.equal("--forwarded-allow-ips: invalid entry '10.0.0.0/40': the prefix length must be a number "
      .. "from 0 to 32", err)
  end)
end)

describe("http protocol response headers: uv.http_response_headers and the Lua loop agree", function()
  local native = uv and uv.http_response_headers
  if not native then
    pending("no native response-header check in this loop module")
    return
  end
  local lua_parser = parsers.choose("lua")

  -- What a start with `headers` leads to: the bytes written, or send's error without its position.
  local function outcome(headers, use_native)
    local t = fake_transport()
    local result
    local ctx = http.context({
      app = function(_, _, send)
        local ok, err = pcall(send, { type = "http.response.start", status = 200, headers = headers })
        if not ok then
          result = "error: " .. tostring(err):gsub("^[^:]*:%d+: ", "")
          send({ type = "http.response.start", status = 500 })
        end
        send({ type = "http.response.body", body = "x" })
      end,
      parse_head = lua_parser.parse_head,
      response_headers = use_native and native or nil,
      log = logging.new({ level = "critical", access_log = false }),
      clock = function() return 0 end, time = function() return 1700000000 end,
    })
    local p = http.new(ctx, t, { "127.0.0.1", 5000 }, { "127.0.0.1", 8000 })
    p:data_received("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return result or t.text()
  end

  it("on hand-picked lists", function()
    local cases = {
      {}, { { "Content-Type", "text/plain" }, { "X-A", "" } },
      { { "content-length", "1" } }, { { "Content-Length", "2" } },
      { { "content-length", "1" }, { "content-length", "x" } },
      { { "content-length", "99999999999999999999" } }, { { "content-length", "" } },
      { { "Connection", "Keep-Alive, CLOSE" } }, { { "connection", "upgrade" } },
      { { "transfer-encoding", "chunked" } }, { { "a b", "1" } }, { { "", "1" } }, { { "a", "1\r\n" } },
      { { "a", "\0" } }, { { "a\n", "1" } }, { { 1, "x" } }, { { "x", 2 } }, { "xy" }, { { "x" } },
    }
    for i, headers in ipairs(cases) do
      assert.are.equal(outcome(headers, false), outcome(headers, true), "case " .. i)
    end
  end)

  it("on 3,000 random lists", function()
    local names = { "content-length", "Content-Length", "connection", "CONNECTION", "transfer-encoding",
      "x-a", "X-Tok!#$%&'*+-.^_`|~9", "a b", "a:b", "", "\195\169", "x\0y", "a\r" }
    local values = { "", "0", "12", "007", "1 2", "-1", "close", "keep-alive, Close", "CLOSE", "upgrade",
      "text/plain", "\t tab", "bad\r\n", "nul\0", "lf\n", "\255\254", ("v"):rep(300) }
    math.randomseed(7)
    for round = 1, 3000 do
      local headers = {}
      for i = 1, math.random(0, 4) do
        local r = math.random(40)
        if r == 1 then headers[i] = 5
        elseif r == 2 then headers[i] = { names[math.random(#names)] }
        elseif r == 3 then headers[i] = { true, "x" }
        else headers[i] = { names[math.random(#names)], values[math.random(#values)] } end
      end
      assert.are.equal(outcome(headers, false), outcome(headers, true), "round " .. round)
    end
  end)
end)
