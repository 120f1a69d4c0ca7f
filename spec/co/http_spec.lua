-- luvrs.co.http: the HTTP/1.1 client against small HTTP servers written here on luvrs.co sockets.
local H = require "helper"
local uv = H.uv
local co = require "luvrs.co"
local pool = require "luvrs.co.pool"
local http = require "luvrs.co.http"

local go = H.go

-- Reads one request (head + Content-Length or chunked body) from a server-side socket.
local function read_request(s)
  local line = s:read_until("\r\n")
  if not line then return nil end
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  assert(method, "bad request line: " .. line)
  local headers, order = {}, {}
  while true do
    local h = assert(s:read_until("\r\n"))
    if h == "" then break end
    local n, v = h:match("^([^:]+):%s*(.-)%s*$")
    headers[n:lower()] = v
    order[#order + 1] = n
  end
  local body = ""
  if headers["content-length"] then
    body = assert(s:read_exactly(tonumber(headers["content-length"])))
  elseif headers["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local size = tonumber(assert(s:read_until("\r\n")), 16)
      if size == 0 then
        assert.equal("", s:read_until("\r\n"))
        break
      end
      parts[#parts + 1] = assert(s:read_exactly(size))
      assert.equal("", s:read_until("\r\n"))
      parts.n = (parts.n or 0) + 1
    end
    body = table.concat(parts)
    headers.chunks = #parts
  end
  return { method = method, target = target, version = version, headers = headers, order = order, body = body }
end

local function respond(s, status, body, extra)
  local lines = { ("HTTP/1.1 %d X\r\n"):format(status) }
  for _, h in ipairs(extra or {}) do lines[#lines + 1] = h .. "\r\n" end
  lines[#lines + 1] = "Content-Length: " .. #body .. "\r\n\r\n"
  lines[#lines + 1] = body
  return s:write(lines)
end

-- A keep-alive HTTP server; route(req, sock, st) writes the response and returns false to close.
local function http_server(route)
  local st = { accepted = 0, requests = 0, log = {} }
  st.server = assert(co.tcp_listen("127.0.0.1", 0, function(s)
    st.accepted = st.accepted + 1
    while true do
      local req = read_request(s)
      if not req then return end
      st.requests = st.requests + 1
      st.log[#st.log + 1] = req
      if route(req, s, st) == false then return end
    end
  end))
  st.port = st.server.port
  st.url = "http://127.0.0.1:" .. st.port
  return st
end

local function echo_route(req, s)
  respond(s, 200, req.method .. " " .. req.target .. " " .. req.body, { "X-Seen: 1", "Set-Cookie: a=1",
    "Set-Cookie: b=2" })
end

describe("luvrs.co.http", function()
  local servers
  before_each(function() servers = {} end)
  after_each(function()
    pool.default:close()
    for _, st in ipairs(servers) do st.server:close(true) end
    H.run(1000) -- let close callbacks run: luv 1.44 crashes at exit on a listener closed but not yet swept
    H.after_each()
  end)
  local function server(route)
    local st = http_server(route)
    servers[#servers + 1] = st
    return st
  end

  describe("parse_url", function()
    it("splits http and http+unix URLs", function()
      local u = http.parse_url("http://Example.com:8080/a/b?x=1#frag")
      assert.same({ scheme = "http", host = "example.com", port = 8080, target = "/a/b?x=1",
        authority = "example.com:8080" }, u)
      assert.same({ scheme = "http", host = "[::1]", port = 80, target = "/?q", authority = "[::1]" },
        http.parse_url("http://[::1]?q"))
      assert.same({ scheme = "http+unix", unix = "/tmp/s.sock", target = "/p", authority = "localhost" },
        http.parse_url("http+unix://%2Ftmp%2Fs.sock/p"))
      assert.same({ nil, "unsupported scheme 'https'" }, { http.parse_url("https://x/") })
      assert.same({ nil, "bad port" }, { http.parse_url("http://x:99999/") })
      assert.same({ nil, "not an absolute URL" }, { http.parse_url("/relative") })
    end)
  end)

  describe("request", function()
    it("GETs a Content-Length response; headers by name and in order", function()
      local st = server(echo_route)
      go(function()
        local status, headers, body = http.request({ url = st.url .. "/hello?x=1" })
        assert.equal(200, status)
        assert.equal("GET /hello?x=1 ", body)
        assert.equal("1", headers["x-seen"])
        assert.equal("a=1, b=2", headers["set-cookie"])
        assert.same({ "X-Seen", "1" }, headers[1])
        assert.same({ "Set-Cookie", "b=2" }, headers[3])
        local req = st.log[1]
        assert.equal("127.0.0.1:" .. st.port, req.headers.host)
        assert.equal(http.USER_AGENT, req.headers["user-agent"])
        assert.equal("1.1", req.version)
      end)
    end)

    it("sends headers given as a map or as pairs, and refuses header injection", function()
      local st = server(echo_route)
      go(function()
        assert.equal(200, (http.request({ url = st.url, headers = { ["X-A"] = "1", ["X-N"] = 2 } })))
        assert.equal("1", st.log[1].headers["x-a"])
        assert.equal("2", st.log[1].headers["x-n"])
        assert.equal(200, (http.request({ url = st.url, headers = { { "X-B", "b" }, { "Host", "h.example" } } })))
        assert.equal("b", st.log[2].headers["x-b"])
        assert.equal("h.example", st.log[2].headers.host)
        assert.has_error(function() http.request({ url = st.url, headers = { ["X-C"] = "a\r\nEvil: 1" } }) end,
          'luvrs.co.http.request: argument \'opts.headers\' has an invalid value for "X-C"')
        assert.has_error(function() http.request({ url = st.url, headers = { ["Bad Name"] = "1" } }) end)
      end)
    end)

    it("reads chunked responses (extensions and trailers too)", function()
      local st = server(function(_, s)
        s:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        s:write("5;ext=1\r\nhello\r\n")
        co.sleep(5)
        s:write("1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n")
      end)
      go(function()
        local status, headers, body = http.request({ url = st.url })
        assert.equal(200, status)
        assert.equal("chunked", headers["transfer-encoding"])
        assert.equal("hello world!", body)
        assert.equal(1, pool.default:count()) -- read to the end: back in the pool
      end)
    end)

    it("reads a body delimited by the connection close, and does not pool it", function()
      local st = server(function(_, s)
        s:write("HTTP/1.1 200 OK\r\n\r\nuntil ")
        co.sleep(5)
        s:write("close")
        return false
      end)
      go(function()
        local status, _, body = http.request({ url = st.url })
        assert.equal(200, status)
        assert.equal("until close", body)
        assert.equal(0, pool.default:count())
      end)
    end)

    it("HEAD and 204 responses have no body", function()
      local st = server(function(req, s)
        if req.method == "HEAD" then
          s:write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        else
          s:write("HTTP/1.1 204 No Content\r\n\r\n")
        end
      end)
      go(function()
        local status, headers, body = http.request({ url = st.url, method = "HEAD" })
        assert.equal(200, status)
        assert.equal("1000", headers["content-length"])
        assert.equal("", body)
        status, headers, body = http.request({ url = st.url, method = "DELETE" })
        assert.equal(204, status)
        assert.is_nil(headers["content-length"])
        assert.equal("", body)
      end)
      assert.equal(1, st.accepted)
    end)

    it("skips 1xx interim responses", function()
      local st = server(function(_, s)
        s:write("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        respond(s, 201, "made")
      end)
      go(function()
        local status, _, body = http.request({ url = st.url, method = "POST", body = "x" })
        assert.equal(201, status)
        assert.equal("made", body)
      end)
    end)

    it("sends string, array and streamed (chunked) bodies", function()
      local st = server(echo_route)
      go(function()
        local _, _, body = http.request({ url = st.url .. "/s", method = "POST", body = "payload" })
        assert.equal("POST /s payload", body)
        assert.equal("7", st.log[1].headers["content-length"])
        _, _, body = http.request({ url = st.url .. "/a", method = "PUT", body = { "ab", "cd" } })
        assert.equal("PUT /a abcd", body)
        local pieces = { "one,", "", "two,", "three" }
        local i = 0
        _, _, body = http.request({ url = st.url .. "/c", method = "POST", body = function()
          i = i + 1
          if i == 3 then co.sleep(5) end
          return pieces[i]
        end })
        assert.equal("POST /c one,two,three", body)
        assert.equal("chunked", st.log[3].headers["transfer-encoding"])
        assert.equal(3, st.log[3].headers.chunks)
        -- a streamed body with a Content-Length given is sent as is
        local sent = false
        _, _, body = http.request({ url = st.url .. "/l", method = "POST", headers = { ["Content-Length"] = "3" },
          body = function()
            if sent then return nil end
            sent = true
            return "xyz"
          end })
        assert.equal("POST /l xyz", body)
        -- POST without a body says Content-Length: 0
        http.request({ url = st.url, method = "POST" })
        assert.equal("0", st.log[5].headers["content-length"])
      end)
      assert.equal(1, st.accepted)
    end)

    it("reuses one pooled connection for ten sequential requests", function()
      local st = server(echo_route)
      go(function()
        for i = 1, 10 do
          local status, _, body = http.request({ url = st.url .. "/" .. i })
          assert.equal(200, status)
          assert.equal("GET /" .. i .. " ", body)
        end
      end)
      assert.equal(1, st.accepted)
      assert.equal(10, st.requests)
    end)

    it("does not reuse a connection the server marks Connection: close, or when pool = false", function()
      local st = server(function(req, s)
        if req.target == "/close" then
          respond(s, 200, "bye", { "Connection: close" })
          return false
        end
        respond(s, 200, "ok")
      end)
      go(function()
        http.request({ url = st.url .. "/close" })
        http.request({ url = st.url .. "/close" })
        assert.equal(2, st.accepted)
        assert.equal(0, pool.default:count())
        http.request({ url = st.url .. "/x", pool = false })
        assert.equal("close", st.log[3].headers.connection)
        assert.equal(3, st.accepted)
        assert.equal(0, pool.default:count())
        -- a pool of one's own
        local p = pool.new({ size = 1 })
        http.request({ url = st.url .. "/x", pool = p })
        http.request({ url = st.url .. "/x", pool = p })
        assert.equal(4, st.accepted)
        assert.equal(1, p:count())
        p:close()
      end)
    end)

    it("retries an idempotent request once when a pooled connection turns out closed", function()
      local st = server(function(_, s, st)
        if st.requests == 2 then return false end -- closes without answering the 2nd request
        respond(s, 200, "r" .. st.requests)
      end)
      go(function()
        assert.equal("r1", select(3, http.request({ url = st.url })))
        assert.equal("r3", select(3, http.request({ url = st.url })))
        -- the new connection went back to the pool
        assert.equal("r4", select(3, http.request({ url = st.url })))
      end)
      assert.equal(2, st.accepted)
    end)

    it("streams a body with stream = true", function()
      local big = string.rep("0123456789", 20000)
      local st = server(function(req, s)
        if req.target == "/chunked" then
          s:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
          for i = 1, 3 do s:write(("%x\r\n%s\r\n"):format(#big, big)) co.sleep(i) end
          s:write("0\r\n\r\n")
        else
          respond(s, 200, big)
        end
      end)
      go(function()
        local status, _, body = http.request({ url = st.url .. "/len", stream = true })
        assert.equal(200, status)
        local n, pieces = 0, 0
        while true do
          local data, err = body:read(10000)
          assert.is_nil(err)
          if not data then break end
          assert.is_true(#data <= 10000)
          n, pieces = n + #data, pieces + 1
        end
        assert.equal(#big, n)
        assert.is_true(pieces >= 20)
        assert.is_nil(body:read())
        assert.equal(1, pool.default:count())
        status, _, body = http.request({ url = st.url .. "/chunked", stream = true })
        assert.equal(200, status)
        assert.equal(3 * #big, #body:read_all())
        assert.equal(1, st.accepted)
        -- abandoning a body closes its connection
        status, _, body = http.request({ url = st.url .. "/len", stream = true })
        assert.equal(200, status)
        assert.is_string(body:read(5))
        body:close()
        assert.same({ nil, "closed" }, { body:read() })
        assert.equal(0, pool.default:count())
        http.request({ url = st.url .. "/len" })
        assert.equal(2, st.accepted)
      end)
    end)

    it("limits the body with max_body", function()
      local st = server(function(_, s) respond(s, 200, string.rep("x", 1000)) end)
      go(function()
        assert.same({ nil, "EMSGSIZE" }, { http.request({ url = st.url, max_body = 999 }) })
        assert.equal(1000, #select(3, http.request({ url = st.url, max_body = 1000 })))
      end)
    end)

    it("returns EPROTO for a malformed response and closed for a truncated one", function()
      local st = server(function(req, s)
        if req.target == "/garbage" then
          s:write("SMTP ready\r\n\r\n")
        elseif req.target == "/badchunk" then
          s:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        else
          s:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        end
        return false
      end)
      go(function()
        assert.same({ nil, "EPROTO" }, { http.request({ url = st.url .. "/garbage" }) })
        assert.same({ nil, "EPROTO" }, { http.request({ url = st.url .. "/badchunk" }) })
        assert.same({ nil, "closed" }, { http.request({ url = st.url .. "/short" }) })
      end)
    end)

    it("returns ECONNRESET when the server resets the connection mid-body", function()
      local st = server(function(_, s)
        s:write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        co.sleep(50)
        uv.tcp_close_reset(s.handle)
        return false
      end)
      go(function()
        local status, _, body = http.request({ url = st.url, stream = true })
        assert.equal(200, status)
        assert.equal("partial", body:read())
        assert.same({ nil, "ECONNRESET" }, { body:read() })
      end)
    end)

    it("times out connecting, sending and reading", function()
      local st = server(function(req, s)
        if req.target == "/slow" then co.sleep(10000) end
        respond(s, 200, "ok")
      end)
      local full = uv.new_tcp()
      assert(full:bind("127.0.0.1", 0))
      assert(full:listen(1, function() end))
      local fport = full:getsockname().port
      go(function()
        local t0 = uv.hrtime()
        assert.same({ nil, "timeout" }, { http.request({ url = st.url .. "/slow", timeout = 60 }) })
        local took = (uv.hrtime() - t0) / 1e6
        assert.is_true(took >= 55 and took < 1000, "took " .. took)
        assert.same({ nil, "timeout" }, { http.request({ url = st.url .. "/slow", timeout = { read = 30 } }) })
        -- connect: a listener that never accepts fills its queue, then SYNs go unanswered
        local timeouts = 0
        for _ = 1, 4 do
          local _, err = http.request({ url = "http://127.0.0.1:" .. fport .. "/", pool = false,
            timeout = { connect = 100, read = 100 } })
          if err == "timeout" then timeouts = timeouts + 1 end
        end
        assert.is_true(timeouts >= 3)
        -- send: a server that never reads a large upload
        local idle = assert(co.tcp_listen("127.0.0.1", 0, function() co.sleep(10000) end))
        local _, err = http.request({ url = "http://127.0.0.1:" .. idle.port .. "/", method = "POST",
          body = string.rep("u", 64 * 1024 * 1024), timeout = { send = 100 } })
        assert.equal("timeout", err)
        idle:close(true)
      end, 10000)
      full:close()
    end)

    it("returns the connect error", function()
      local t = uv.new_tcp()
      assert(t:bind("127.0.0.1", 0))
      local port = t:getsockname().port
      t:close()
      go(function()
        assert.same({ nil, "ECONNREFUSED" }, { http.request({ url = "http://127.0.0.1:" .. port .. "/" }) })
      end)
    end)

    it("talks HTTP over Unix sockets (http+unix URLs and opts.unix_socket)", function()
      local path = os.tmpname()
      os.remove(path)
      local accepted = 0
      local srv = assert(co.unix_listen(path, function(s)
        accepted = accepted + 1
        while true do
          local req = read_request(s)
          if not req then return end
          respond(s, 200, req.target .. " host=" .. req.headers.host)
        end
      end))
      go(function()
        local url = "http+unix://" .. path:gsub("/", "%%2F") .. "/items?id=3"
        local status, _, body = http.request({ url = url })
        assert.equal(200, status)
        assert.equal("/items?id=3 host=localhost", body)
        status, _, body = http.request({ url = "http://app.local/x", unix_socket = path })
        assert.equal(200, status)
        assert.equal("/x host=app.local", body)
      end)
      assert.equal(1, accepted)
      pool.default:close()
      srv:close(true)
      os.remove(path)
    end)

    it("runs 100 concurrent requests from 100 tasks", function()
      local st = server(function(req, s)
        co.sleep(5)
        respond(s, 200, "r:" .. req.target)
      end)
      local t0 = uv.hrtime()
      go(function()
        local tasks = {}
        for i = 1, 100 do
          tasks[i] = co.spawn(function()
            local status, _, body = http.request({ url = st.url .. "/" .. i })
            return status, body
          end)
        end
        local res = co.wait_all(tasks, 8000)
        assert.is_table(res)
        for i = 1, 100 do
          assert.same({ true, 200, "r:/" .. i, n = 3 }, res[i])
        end
      end, 10000)
      assert.equal(100, st.requests)
      assert.equal(100, st.accepted) -- all at once: no connection was free to reuse
      assert.equal(16, pool.default:count()) -- the pool keeps `size` of them
      assert.is_true((uv.hrtime() - t0) / 1e6 < 5000)
    end)

    it("raises for wrong arguments and outside a coroutine", function()
      assert.has_error(function() http.request({ url = "http://127.0.0.1/" }) end,
        "luvrs.co.http.request: must be called from a coroutine (use co.run, co.spawn or a server request)")
      go(function()
        assert.has_error(function() http.request("http://x/") end,
          "luvrs.co.http.request: argument 'opts' must be a table (got string)")
        assert.has_error(function() http.request({}) end,
          "luvrs.co.http.request: argument 'opts.url' must be a string (got nil)")
        assert.has_error(function() http.request({ url = "https://x/" }) end,
          "luvrs.co.http.request: argument 'opts.url' is not usable: unsupported scheme 'https'")
        assert.has_error(function() http.request({ url = "http://x/", method = "get" }) end)
        assert.has_error(function() http.request({ url = "http://x/", body = 5 }) end)
        assert.has_error(function() http.request({ url = "http://x/", redirects = -1 }) end)
        assert.has_error(function() http.request({ url = "http://x/", timeout = "1s" }) end)
        assert.has_error(function() http.request({ url = "http://x/", pool = {} }) end)
      end)
    end)
  end)

  describe("redirects", function()
    local function redirect_route(req, s)
      local t = req.target
      if t == "/r1" then
        respond(s, 302, "moved", { "Location: /r2" })
      elseif t == "/r2" then
        respond(s, 301, "", { "Location: r3?q=1" })
      elseif t == "/see-other" then
        respond(s, 303, "", { "Location: /final" })
      elseif t == "/temp" then
        respond(s, 307, "", { "Location: /final" })
      elseif t == "/loop" then
        respond(s, 302, "", { "Location: /loop" })
      else
        respond(s, 200, req.method .. " " .. t .. " [" .. req.body .. "] auth=" .. tostring(req.headers.authorization))
      end
    end

    it("are not followed unless asked", function()
      local st = server(redirect_route)
      go(function()
        local status, headers, body = http.request({ url = st.url .. "/r1" })
        assert.equal(302, status)
        assert.equal("/r2", headers.location)
        assert.equal("moved", body)
      end)
    end)

    it("are followed up to opts.redirects, resolving relative locations", function()
      local st = server(redirect_route)
      go(function()
        local status, _, body = http.request({ url = st.url .. "/r1", redirects = 2 })
        assert.equal(200, status)
        assert.equal("GET /r3?q=1 [] auth=nil", body)
        assert.same({ nil, "too many redirects" }, { http.request({ url = st.url .. "/r1", redirects = 1 }) })
        assert.same({ nil, "too many redirects" }, { http.request({ url = st.url .. "/loop", redirects = 5 }) })
      end)
      assert.equal(1, st.accepted)
    end)

    it("303 turns POST into GET; 307 keeps the method and body", function()
      local st = server(redirect_route)
      go(function()
        local _, _, body = http.request({ url = st.url .. "/see-other", method = "POST", body = "data", redirects = 1 })
        assert.equal("GET /final [] auth=nil", body)
        assert.is_nil(st.log[2].headers["content-length"])
        _, _, body = http.request({ url = st.url .. "/temp", method = "POST", body = "data", redirects = 1 })
        assert.equal("POST /final [data] auth=nil", body)
      end)
    end)

    it("drop credentials when the redirect goes to another origin", function()
      local other = server(redirect_route)
      local st = server(function(req, s)
        if req.target == "/away" then
          respond(s, 302, "", { "Location: " .. other.url .. "/landed" })
        else
          redirect_route(req, s)
        end
      end)
      go(function()
        local _, _, body = http.request({ url = st.url .. "/r1", redirects = 3, headers = { Authorization = "t" } })
        assert.equal("GET /r3?q=1 [] auth=t", body)
        _, _, body = http.request({ url = st.url .. "/away", redirects = 1, headers = { Authorization = "t" } })
        assert.equal("GET /landed [] auth=nil", body)
      end)
    end)
  end)
end)
