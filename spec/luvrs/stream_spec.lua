-- Stream functions over TCP: listen, accept, read_start/read_stop, write (string, array, callback),
-- try_write, shutdown, is_readable/is_writable, stream_get_write_queue_size; EOF, reset, big writes.
local H = require "helper"
local uv = H.uv
local fixtures = require "fixtures"

local connected_pair = H.tcp_pair

local close_all = H.close_all

-- Fills the client's socket with try_write while the peer does not read; returns bytes taken and
-- try_write's results for the write that did not fit.
local function fill(client)
  local chunk = string.rep("f", 65536)
  local total = 0
  for _ = 1, 100000 do
    local n, err, name = client:try_write(chunk)
    if not n then return total, { n, err, name } end
    total = total + n
  end
  error("the socket never filled up")
end

describe("stream", function()
  after_each(H.after_each)

  describe("listen / accept", function()
    it("listen returns 0; the connection callback gets one nil argument; accept returns 0", function()
      local server = uv.new_tcp()
      assert.equal(0, server:bind("127.0.0.1", 0))
      local got = {}
      local accepted = uv.new_tcp()
      assert.equal(0, uv.listen(server, 16, H.expect(function(...)
        got.nargs = select("#", ...)
        got.err = (...)
        got.accept = { server:accept(accepted) }
      end)))
      local client = uv.new_tcp()
      client:connect("127.0.0.1", server:getsockname().port, H.expect())
      H.run_until(function() return got.accept end)
      assert.equal(1, got.nargs)
      assert.is_nil(got.err)
      assert.same({ 0 }, got.accept)
      close_all(server, client, accepted)
    end)

    it("accept with no pending connection returns the EAGAIN triple", function()
      local server = H.tcp_server(function() end)
      local c = uv.new_tcp()
      assert.same({ nil, "EAGAIN: resource temporarily unavailable", "EAGAIN" }, { uv.accept(server, c) })
      close_all(server, c)
    end)

    it("accepts many connections in arrival order of callbacks", function()
      local n, accepted = 0, {}
      local server, port = H.tcp_server(function(srv)
        local c = uv.new_tcp()
        srv:accept(c)
        accepted[#accepted + 1] = c
      end)
      local clients = {}
      for i = 1, 20 do
        clients[i] = uv.new_tcp()
        clients[i]:connect("127.0.0.1", port, function(err) if not err then n = n + 1 end end)
      end
      H.run_until(function() return n == 20 and #accepted == 20 end)
      close_all(server, table.unpack(clients))
      close_all(table.unpack(accepted))
    end)
  end)

  describe("is_readable / is_writable", function()
    it("are false on an unconnected tcp and true on both ends of a connection", function()
      local fresh = uv.new_tcp()
      assert.is_false(fresh:is_readable())
      assert.is_false(uv.is_writable(fresh))
      local a, b = connected_pair()
      assert.is_true(a:is_readable())
      assert.is_true(a:is_writable())
      assert.is_true(uv.is_readable(b))
      assert.is_true(b:is_writable())
      close_all(fresh, a, b)
    end)

    it("shutdown makes the stream not writable", function()
      local a, b = connected_pair()
      a:shutdown()
      assert.is_false(a:is_writable())
      assert.is_true(a:is_readable())
      H.run_until(function() return true end)
      close_all(a, b)
    end)
  end)

  describe("read", function()
    it("read_start returns 0 and delivers (nil, data)", function()
      local a, b = connected_pair()
      local got = {}
      assert.equal(0, b:read_start(function(...)
        got[#got + 1] = { n = select("#", ...), ... }
      end))
      a:write("hello")
      H.run_until(function() return #got > 0 end)
      assert.same({ n = 2, nil, "hello" }, got[1])
      close_all(a, b)
    end)

    it("EOF calls the read callback with no arguments", function()
      local a, b = connected_pair()
      local calls = {}
      b:read_start(function(...)
        calls[#calls + 1] = { n = select("#", ...), ... }
      end)
      a:write("last words")
      a:shutdown()
      H.run_until(function() return #calls > 0 and calls[#calls].n == 0 end)
      local data = {}
      for i = 1, #calls - 1 do
        assert.equal(2, calls[i].n)
        assert.is_nil(calls[i][1])
        data[#data + 1] = calls[i][2]
      end
      assert.equal("last words", table.concat(data))
      assert.same({ n = 0 }, calls[#calls])
      close_all(a, b)
    end)

    it("closing the peer gives EOF too", function()
      local a, b = connected_pair()
      local nargs
      b:read_start(function(...) nargs = select("#", ...) end)
      a:close()
      H.run_until(function() return nargs end)
      assert.equal(0, nargs)
      close_all(b)
    end)

    it("peer reset gives the read callback 'ECONNRESET' as its only argument", function()
      local a, b = connected_pair()
      local got
      b:read_start(function(...) got = { n = select("#", ...), ... } end)
      assert.equal(0, a:close_reset())
      H.run_until(function() return got end)
      assert.same({ n = 1, "ECONNRESET" }, got)
      close_all(b)
    end)

    it("after EOF the stream stays readable; read_start again returns 0 and reports EOF again", function()
      local a, b = connected_pair()
      local eofs = 0
      local function on_read(...)
        if select("#", ...) == 0 then eofs = eofs + 1 end
      end
      b:read_start(on_read)
      a:shutdown()
      H.run_until(function() return eofs == 1 end)
      assert.is_false(b:is_active())
      assert.is_true(b:is_readable())
      assert.is_true(b:is_writable())
      assert.equal(0, b:read_start(on_read))
      H.run_until(function() return eofs == 2 end)
      close_all(a, b)
    end)

    it("after ECONNRESET the stream is neither readable nor writable", function()
      local a, b = connected_pair()
      local got
      b:read_start(function(...) got = { n = select("#", ...), ... } end)
      a:close_reset()
      H.run_until(function() return got end)
      assert.same({ n = 1, "ECONNRESET" }, got)
      assert.is_false(b:is_active())
      assert.is_false(b:is_readable())
      assert.is_false(b:is_writable())
      assert.same({ nil, "ENOTCONN: socket is not connected", "ENOTCONN" }, { b:read_start(function() end) })
      assert.same({ nil, "EPIPE: broken pipe", "EPIPE" }, { b:write("x", function() end) })
      assert.same({ nil, "EPIPE: broken pipe", "EPIPE" }, { b:try_write("x") })
      close_all(b)
    end)

    it("a read callback may close its stream; no callback comes after", function()
      local a, b = connected_pair()
      local log = {}
      b:read_start(function(err, data)
        log[#log + 1] = data or err or "eof"
        b:close(function() log[#log + 1] = "closed" end)
      end)
      a:write("one")
      H.run_until(function() return log[#log] == "closed" end)
      local shut = false
      a:write("two")
      a:shutdown(function() shut = true end)
      H.run_until(function() return shut end)
      uv.run("nowait")
      assert.same({ "one", "closed" }, log)
      close_all(a)
    end)

    it("read_stop returns 0 and holds data back until read_start", function()
      local a, b = connected_pair()
      local got = {}
      b:read_start(function(_, data) if data then got[#got + 1] = data end end)
      assert.equal(0, b:read_stop())
      assert.equal(0, uv.read_stop(b))
      local written = false
      a:write("held", function() written = true end)
      H.run_until(function() return written end)
      local t = uv.new_timer()
      local waited = false
      t:start(30, 0, function() waited = true end)
      H.run_until(function() return waited end)
      assert.same({}, got)
      b:read_start(function(_, data) if data then got[#got + 1] = data end end)
      H.run_until(function() return #got > 0 end)
      assert.same({ "held" }, got)
      close_all(a, b, t)
    end)

    it("read_start on an unconnected tcp returns ENOTCONN; twice returns EALREADY", function()
      local fresh = uv.new_tcp()
      assert.same({ nil, "ENOTCONN: socket is not connected", "ENOTCONN" },
        { fresh:read_start(function() end) })
      local a, b = connected_pair()
      assert.equal(0, b:read_start(function() end))
      assert.same({ nil, "EALREADY: connection already in progress", "EALREADY" },
        { b:read_start(function() end) })
      close_all(fresh, a, b)
    end)
  end)

  describe("write", function()
    it("returns a request; the callback gets one nil argument", function()
      local a, b = connected_pair()
      local got
      local req = a:write("x", function(...) got = { n = select("#", ...), ... } end)
      assert.equal("userdata", type(req))
      H.run_until(function() return got end)
      assert.same({ n = 1 }, got)
      close_all(a, b)
    end)

    it("a write of 0 bytes succeeds and calls back", function()
      local a, b = connected_pair()
      local got
      assert.is_truthy(a:write("", function(...) got = { n = select("#", ...), ... } end))
      H.run_until(function() return got end)
      assert.same({ n = 1 }, got)
      assert.is_truthy(a:write({ "", "" }, H.expect()))
      H.run_until(function() return true end)
      uv.run("nowait")
      close_all(a, b)
    end)

    it("a write of 0 bytes behind queued writes calls back after them", function()
      local a, b = connected_pair()
      fill(a)
      local log = {}
      a:write("queued", function(err) log[#log + 1] = "queued:" .. tostring(err) end)
      a:write("", function(err) log[#log + 1] = "empty:" .. tostring(err) end)
      local n = 0
      b:read_start(function(_, d) n = n + #(d or "") end)
      H.run_until(function() return #log == 2 end)
      assert.same({ "queued:nil", "empty:nil" }, log)
      close_all(a, b)
    end)

    it("an array of strings is written in order as one write", function()
      local a, b = connected_pair()
      local got = {}
      local eof = false
      b:read_start(function(_, data)
        if data then got[#got + 1] = data else eof = true end
      end)
      local cb_args
      assert.is_truthy(uv.write(a, { "alpha", "", "beta", "gamma" }, function(...) cb_args = select("#", ...) end))
      a:shutdown()
      H.run_until(function() return eof end)
      assert.equal("alphabetagamma", table.concat(got))
      assert.equal(1, cb_args)
      close_all(a, b)
    end)

    it("works without a callback", function()
      local a, b = connected_pair()
      local got = {}
      b:read_start(function(_, data) got[#got + 1] = data or "<eof>" end)
      assert.is_truthy(a:write("no callback"))
      a:shutdown()
      H.run_until(function() return got[#got] == "<eof>" end)
      assert.equal("no callback<eof>", table.concat(got))
      close_all(a, b)
    end)

    it("write callbacks run in write order, and data arrives in write order", function()
      local a, b = connected_pair()
      local order, data, eof = {}, {}, false
      b:read_start(function(_, d)
        if d then data[#data + 1] = d else eof = true end
      end)
      local expected = {}
      for i = 1, 50 do
        local chunk = string.rep(string.char(64 + i % 26), i * 1000)
        expected[#expected + 1] = chunk
        a:write(i % 3 == 0 and { chunk } or chunk, function() order[#order + 1] = i end)
      end
      a:shutdown(function() order[#order + 1] = "shutdown" end)
      H.run_until(function() return eof and order[#order] == "shutdown" end)
      local want = {}
      for i = 1, 50 do want[i] = i end
      want[51] = "shutdown"
      assert.same(want, order)
      assert.equal(table.concat(expected), table.concat(data))
      close_all(a, b)
    end)

    it("64 MiB in one write arrives complete and intact", function()
      local a, b = connected_pair()
      local block = {}
      for i = 0, 250 do block[#block + 1] = string.char(i) end
      local unit = table.concat(block) -- 251 bytes: a prime period catches shifted or lost chunks
      local size = 64 * 1024 * 1024
      local payload = string.rep(unit, size // #unit + 1):sub(1, size)
      local received, bad, eof, done = 0, nil, false, nil
      b:read_start(function(_, d)
        if not d then eof = true return end
        if not bad and payload:sub(received + 1, received + #d) ~= d then bad = received end
        received = received + #d
      end)
      a:write(payload, function(...) done = { n = select("#", ...), ... } end)
      assert.is_true(a:write_queue_size() > 0, "64 MiB cannot all fit the kernel buffer")
      a:shutdown()
      H.run_until(function() return eof end, 30000)
      assert.same({ n = 1 }, done)
      assert.equal(size, received)
      assert.is_nil(bad, "data differs at offset " .. tostring(bad))
      assert.equal(0, a:write_queue_size())
      close_all(a, b)
    end)

    it("numbers are written as their string form, as Lua's string functions do", function()
      local a, b = connected_pair()
      local got = {}
      b:read_start(function(_, d) got[#got + 1] = d or "<eof>" end)
      assert.is_truthy(a:write(42))
      assert.is_truthy(a:write({ "-", 7, "-" }))
      assert.equal(1, a:try_write(9))
      a:shutdown()
      H.run_until(function() return got[#got] == "<eof>" end)
      assert.equal("42-7-9<eof>", table.concat(got))
      close_all(a, b)
    end)

    it("writing on an unconnected or closed stream returns the EBADF triple", function()
      local fresh = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { fresh:write("x") })
      local a, b = connected_pair()
      a:close()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { a:write("x") })
      close_all(fresh, b)
    end)
  end)

  describe("under load", function()
    it("50 concurrent clients each get their 256 KiB back intact from an echo server", function()
      local server, port = H.tcp_server(function(srv)
        local c = uv.new_tcp()
        srv:accept(c)
        c:read_start(function(err, d)
          if d then
            c:write(d)
          elseif not err then
            c:shutdown(function() c:close() end)
          else
            c:close()
          end
        end)
      end)
      local done, results = 0, {}
      for i = 1, 50 do
        local payload = string.rep(string.char(65 + i % 26) .. tostring(i), 262144 // (1 + #tostring(i)) + 1)
        payload = payload:sub(1, 262144)
        local c = uv.new_tcp()
        local got = {}
        c:connect("127.0.0.1", port, function(err)
          if err then
            results[i] = err
            done = done + 1
            return
          end
          c:read_start(function(rerr, d)
            if d then
              got[#got + 1] = d
            else
              results[i] = rerr or (table.concat(got) == payload)
              done = done + 1
              c:close()
            end
          end)
          -- written in pieces, each with a callback, to mix queued writes with reads
          for off = 1, #payload, 65536 do c:write(payload:sub(off, off + 65535), function() end) end
          c:shutdown()
        end)
      end
      H.run_until(function() return done == 50 end, 30000)
      for i = 1, 50 do assert.is_true(results[i], "client " .. i .. ": " .. tostring(results[i])) end
      server:close()
      H.run()
    end)

    it("writes chained from write callbacks keep their order", function()
      local a, b = connected_pair()
      local got, eof = {}, false
      b:read_start(function(_, d) if d then got[#got + 1] = d else eof = true end end)
      local n = 0
      local function next_write()
        n = n + 1
        if n > 200 then
          a:shutdown()
          return
        end
        a:write(("%03d,"):format(n), next_write)
      end
      next_write()
      H.run_until(function() return eof end)
      local want = {}
      for i = 1, 200 do want[i] = ("%03d,"):format(i) end
      assert.equal(table.concat(want), table.concat(got))
      close_all(a, b)
    end)

    it("read_stop inside the read callback stops delivery until read_start", function()
      local a, b = connected_pair()
      local chunks = {}
      local function on_read(_, d)
        if d then
          chunks[#chunks + 1] = d
          b:read_stop()
        end
      end
      b:read_start(on_read)
      a:write("one")
      H.run_until(function() return #chunks == 1 end)
      local sent = false
      a:write("two", function() sent = true end)
      H.run_until(function() return sent end)
      local t = uv.new_timer()
      local waited = false
      t:start(20, 0, function() waited = true end)
      H.run_until(function() return waited end)
      assert.equal(1, #chunks)
      b:read_start(on_read)
      H.run_until(function() return #chunks == 2 end)
      assert.same({ "one", "two" }, chunks)
      close_all(a, b, t)
    end)
  end)

  describe("try_write", function()
    it("returns the number of bytes written", function()
      local a, b = connected_pair()
      local got = {}
      b:read_start(function(_, d) got[#got + 1] = d end)
      assert.equal(5, a:try_write("hello"))
      assert.equal(0, a:try_write(""))
      assert.equal(6, uv.try_write(a, { "wor", "ld!" }))
      H.run_until(function() return #table.concat(got) == 11 end)
      assert.equal("helloworld!", table.concat(got))
      close_all(a, b)
    end)

    it("on a full socket returns nil, 'EAGAIN: ...', 'EAGAIN'", function()
      local a, b = connected_pair()
      local total, res = fill(a)
      assert.is_true(total > 0)
      assert.same({ nil, "EAGAIN: resource temporarily unavailable", "EAGAIN" }, res)
      assert.equal(3, select("#", a:try_write("more")))
      close_all(a, b)
    end)

    it("returns EAGAIN while writes are queued, to keep the byte order", function()
      local a, b = connected_pair()
      fill(a)
      a:write("queued")
      assert.is_true(a:write_queue_size() > 0)
      assert.same({ nil, "EAGAIN: resource temporarily unavailable", "EAGAIN" }, { a:try_write("x") })
      close_all(a, b)
    end)

    it("on an unconnected tcp returns the EBADF triple", function()
      local fresh = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { fresh:try_write("x") })
      close_all(fresh)
    end)
  end)

  describe("write queue", function()
    it("stream_get_write_queue_size counts queued bytes and drains to 0", function()
      local a, b = connected_pair()
      assert.equal(0, uv.stream_get_write_queue_size(a))
      fill(a)
      local chunk = string.rep("q", 100000)
      local done = 0
      a:write(chunk, function() done = done + 1 end)
      a:write({ chunk, chunk }, function() done = done + 1 end)
      assert.equal(300000, uv.stream_get_write_queue_size(a))
      assert.equal(300000, a:get_write_queue_size())
      assert.equal(300000, a:write_queue_size())
      b:read_start(function() end)
      H.run_until(function() return done == 2 end)
      assert.equal(0, uv.stream_get_write_queue_size(a))
      close_all(a, b)
    end)

    it("closing a stream with queued writes calls their callbacks with ECANCELED", function()
      local a, b = connected_pair()
      fill(a)
      local got = {}
      a:write("never sent", function(...) got[#got + 1] = { n = select("#", ...), ... } end)
      a:write({ "nor", "this" }, function(...) got[#got + 1] = { n = select("#", ...), ... } end)
      a:close()
      H.run_until(function() return #got == 2 end)
      assert.same({ { n = 1, "ECANCELED" }, { n = 1, "ECANCELED" } }, got)
      close_all(b)
    end)
  end)

  describe("close with requests pending", function()
    it("queued writes, then the shutdown, get ECANCELED before the close callback runs", function()
      local a, b = connected_pair()
      fill(a)
      local log = {}
      a:write("q1", function(err) log[#log + 1] = "write " .. tostring(err) end)
      a:shutdown(function(err) log[#log + 1] = "shutdown " .. tostring(err) end)
      a:close(function() log[#log + 1] = "close" end)
      H.run_until(function() return log[#log] == "close" end)
      assert.same({ "write ECANCELED", "shutdown ECANCELED", "close" }, log)
      close_all(b)
    end)
  end)

  describe("close inside a write callback", function()
    it("the later queued writes are cancelled; the earlier ones completed", function()
      local a, b = connected_pair()
      fill(a)
      local log = {}
      b:read_start(function() end) -- drain so the first queued write can complete
      a:write("first", function(err)
        log[#log + 1] = "first " .. tostring(err)
        a:close(function() log[#log + 1] = "closed" end)
      end)
      for i = 2, 4 do
        a:write("later", function(err) log[#log + 1] = i .. " " .. tostring(err) end)
      end
      H.run_until(function() return log[#log] == "closed" end, 10000)
      -- writes complete in order: the first one cannot finish before the fill data; whatever
      -- finished after it was queued behind it, so only cancellations can follow the close
      assert.equal("first nil", log[1])
      for i = 2, #log - 1 do
        assert.matches("^%d (%S+)$", log[i])
        local status = log[i]:match("^%d (%S+)$")
        assert.is_true(status == "nil" or status == "ECANCELED", log[i])
      end
      assert.equal(5, #log)
      close_all(b)
    end)
  end)

  describe("shutdown", function()
    it("returns a request; the callback gets one nil argument after queued writes are flushed", function()
      local a, b = connected_pair()
      local log = {}
      b:read_start(function(_, d) if d then log[#log + 1] = "read" end end)
      a:write(string.rep("w", 1000000), function() log[#log + 1] = "write cb" end)
      local req = uv.shutdown(a, function(...) log[#log + 1] = "shutdown cb:" .. select("#", ...) end)
      assert.equal("userdata", type(req))
      local wi, si
      H.run_until(function()
        for i, v in ipairs(log) do
          if v == "write cb" then wi = i elseif v:match("^shutdown") then si = i end
        end
        return si
      end)
      assert.equal("shutdown cb:1", log[si])
      assert.is_not_nil(wi)
      assert.is_true(wi < si)
      close_all(a, b)
    end)

    it("on an unconnected tcp returns the ENOTCONN triple", function()
      local fresh = uv.new_tcp()
      assert.same({ nil, "ENOTCONN: socket is not connected", "ENOTCONN" }, { fresh:shutdown() })
      close_all(fresh)
    end)
  end)

  describe("SIGPIPE (luvrs)", function()
    if H.impl ~= "luvrs" then
      pending("under plain lua5.4, luv lets SIGPIPE kill the process")
      return
    end

    it("writing to a connection the peer closed fails with an error, not SIGPIPE", function()
      local a, b = connected_pair()
      b:close()
      H.run()
      local errs = {}
      local chunk = string.rep("p", 65536)
      for _ = 1, 50 do
        local n, _, code = a:try_write(chunk)
        if not n and code ~= "EAGAIN" then
          errs[#errs + 1] = code
          break
        end
        H.run(1000, "nowait")
      end
      local cb_err
      a:write(chunk, function(err) cb_err = err or "ok" end)
      H.run_until(function() return cb_err end)
      assert.is_true(#errs == 1, "try_write never failed")
      assert.matches("^E", errs[1])
      assert.matches("^E", cb_err)
      close_all(a)
    end)
  end)

  describe("luvrs extension: write_batched", function()
    if H.impl ~= "luvrs" then
      pending("uv.write_batched is a luvrs extension")
      return
    end

    -- Reads from `b` until `n` bytes came; returns them and the number of read callbacks.
    local function receive(b, n)
      local got = {}
      b:read_start(function(err, d)
        assert.is_nil(err)
        if d then got[#got + 1] = d end
      end)
      H.run_until(function() return #table.concat(got) >= n end)
      b:read_stop()
      return table.concat(got), #got
    end

    -- Runs `fn` in a read callback of a poll that woke for two connections, where batches are held;
    -- returns what `fn` returned. An error of `fn` comes out of the loop as usual.
    local function in_busy_poll(fn)
      local a1, b1 = connected_pair()
      local a2, b2 = connected_pair()
      local result
      local function on_read()
        if result == nil then result = { fn() } end
      end
      b1:read_start(on_read)
      b2:read_start(on_read)
      a1:write("x")
      a2:write("y")
      local ok, err = pcall(H.run_until, function() return result end)
      -- closed without running the loop: the caller's streams may still have writes queued
      for _, h in ipairs({ a1, b1, a2, b2 }) do h:close() end
      if not ok then error(err, 0) end
      return table.unpack(result)
    end

    it("outside run() writes at once, its string arguments in order", function()
      local a, b = connected_pair()
      assert.equal(0, a:write_batched("hel", "lo", " ", "", "world"))
      assert.equal(0, uv.write_batched(a, "!", 42)) -- a number counts as its string form
      assert.equal(0, uv.stream_get_write_queue_size(a))
      assert.equal("hello world!42", (receive(b, 14)))
      close_all(a, b)
    end)

    it("in a timer callback, or a poll that woke for one handle, writes at once", function()
      local a, b = connected_pair()
      local seen = {}
      local t = uv.new_timer()
      t:start(0, 0, function() seen[1] = a:write_batched("ping") end)
      H.run_until(function() return seen[1] end)
      b:read_start(function(_, d)
        if d and not seen[2] then seen[2] = b:write_batched("echo ", d) end
      end)
      H.run_until(function() return seen[2] end)
      b:read_stop()
      assert.same({ 0, 0 }, seen)
      assert.equal("echo ping", (receive(a, 9)))
      close_all(a, b, t)
    end)

    it("in a busy poll holds the strings until the I/O callbacks have run, then sends them in one write", function()
      local a, b = connected_pair()
      local seen = in_busy_poll(function()
        local r = { a:write_batched("GET ", "/a") }
        r[#r + 1] = uv.stream_get_write_queue_size(a)
        r[#r + 1] = a:write_batched(" HTTP/1.1\r\n")
        r[#r + 1] = { a:try_write("x") } -- the held bytes are queued: try_write would pass them
        return r
      end)
      assert.same({ 6, 6, 17, { nil, "EAGAIN: resource temporarily unavailable", "EAGAIN" } }, seen)
      local data, reads = receive(b, 17)
      assert.equal("GET /a HTTP/1.1\r\n", data)
      assert.equal(1, reads)
      assert.equal(0, uv.stream_get_write_queue_size(a))
      close_all(a, b)
    end)

    it("keeps its place among queued writes, whose callbacks run in order", function()
      local a, b = connected_pair()
      local log = {}
      in_busy_poll(function()
        a:write_batched("1")
        a:write("2", function(err) log[#log + 1] = "w2:" .. tostring(err) end)
        a:write_batched("3", "4")
        a:write("", function(err) log[#log + 1] = "empty:" .. tostring(err) end)
        a:write_batched(string.rep("5", 100000)) -- past the copy limit: kept as a Lua string
        a:write_batched("6")
      end)
      local data = receive(b, 100005)
      assert.equal("1234" .. string.rep("5", 100000) .. "6", data)
      H.run_until(function() return #log == 2 end)
      assert.same({ "w2:nil", "empty:nil" }, log)
      close_all(a, b)
    end)

    it("a batch bigger than the socket takes goes out as the peer reads; an empty write marks the end", function()
      local a, b = connected_pair()
      local chunk = string.rep("z", 60000)
      local drained
      local q = in_busy_poll(function()
        local n
        for _ = 1, 100 do n = a:write_batched(chunk, "+") end
        a:write("", function(err) drained = err or true end)
        return n
      end)
      assert.equal(100 * 60001, q)
      local data = receive(b, 100 * 60001)
      assert.equal(string.rep(chunk .. "+", 100), data)
      H.run_until(function() return drained end)
      assert.is_true(drained)
      assert.equal(0, uv.stream_get_write_queue_size(a))
      close_all(a, b)
    end)

    it("written at once, a rest the socket did not take is queued and follows", function()
      local a, b = connected_pair()
      local chunk = string.rep("q", 60000)
      local q
      for _ = 1, 100 do q = a:write_batched(chunk, "-") end
      assert.is_true(q > 0, "the socket took 6 MB at once")
      assert.equal(q, uv.stream_get_write_queue_size(a))
      assert.equal(string.rep(chunk .. "-", 100), (receive(b, 100 * 60001)))
      close_all(a, b)
    end)

    it("close() right after sends what the batch holds; shutdown() sends it before the FIN", function()
      local a, b = connected_pair()
      local c, d = connected_pair()
      local held = in_busy_poll(function()
        local r = { a:write_batched("bye"), c:write_batched("last") }
        a:close()
        c:shutdown()
        return r
      end)
      assert.same({ 3, 4 }, held)
      local got, eof = {}, {}
      b:read_start(function(_, data) if data then got.b = (got.b or "") .. data else eof.b = true end end)
      d:read_start(function(_, data) if data then got.d = (got.d or "") .. data else eof.d = true end end)
      H.run_until(function() return eof.b and eof.d end)
      assert.same({ b = "bye", d = "last" }, got)
      close_all(b, c, d)
    end)

    it("sends the batch of a callback that raised", function()
      local a, b = connected_pair()
      local ok, err = pcall(in_busy_poll, function()
        a:write_batched("before the error")
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.equal(0, uv.stream_get_write_queue_size(a))
      assert.equal("before the error", (receive(b, 16)))
      close_all(a, b)
    end)

    it("rejects what is not a stream or a string, naming the argument; fails like write", function()
      local a, b = connected_pair()
      assert.has_error(function() uv.write_batched(1, "x") end,
        "bad argument #1 to 'write_batched' (uv_stream_t expected, got number)")
      assert.has_error(function() a:write_batched("x", {}) end,
        "bad argument #3 to 'write_batched' (string expected, got table)")
      assert.has_error(function() a:write_batched() end,
        "bad argument #2 to 'write_batched' (string expected, got nil)")
      local fresh = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { fresh:write_batched("x") })
      a:shutdown()
      assert.same({ nil, "EPIPE: broken pipe", "EPIPE" }, { a:write_batched("x") })
      close_all(a, b, fresh)
    end)
  end)

  describe("the function that delivers read data (luvrs)", function()
    if H.impl ~= "luvrs" then
      pending("luvrs's read callbacks are called through a function of its own; luv's are not")
      return
    end

    -- Lua reaches it through the debug library while a read callback runs (its caller); it copies
    -- from the loop's read buffer, so a length it did not choose must not read past the buffer,
    -- and refusing one must not leave the loop unusable.
    it("called from Lua, refuses lengths outside the read buffer and the loop goes on", function()
      local a, b = connected_pair()
      local results, got = {}, {}
      b:read_start(function(_, data)
        got[#got + 1] = data
        if #got > 1 then return end
        local deliver = debug.getinfo(2, "f").func
        local function record(...) results.args = { ... } end
        local function probe(...) return { pcall(deliver, record, ...) } end
        results.huge = probe(2 ^ 40)
        results.negative = probe(-1)
        results.within = probe(3, "x")
      end)
      a:write("hello")
      H.run_until(function() return #got > 0 end)
      a:write("again")
      H.run_until(function() return #got > 1 end)
      assert.same({ "hello", "again" }, got)
      assert.is_false(results.huge[1])
      assert.matches("read length out of range", results.huge[2], 1, true)
      assert.is_false(results.negative[1])
      assert.matches("read length out of range", results.negative[2], 1, true)
      assert.same({ true }, results.within)
      assert.same({ nil, "hel", "x" }, results.args)
      close_all(a, b)
    end)
  end)

  describe("luvrs extension: sendfile", function()
    if H.impl ~= "luvrs" then
      pending("uv.sendfile is a luvrs extension")
      return
    end

    it("sends a file range in order with other writes", function()
      local content = {}
      for i = 1, 20000 do content[i] = ("%05d\n"):format(i) end
      content = table.concat(content)
      local path = fixtures.tmpfile(content)
      local a, b = connected_pair()
      local got, eof = {}, false
      b:read_start(function(_, d) if d then got[#got + 1] = d else eof = true end end)
      local sent
      a:write("<")
      assert.is_truthy(uv.sendfile(a, path, 6, 60000, function(...) sent = { n = select("#", ...), ... } end))
      a:write(">")
      a:shutdown()
      H.run_until(function() return eof end)
      os.remove(path)
      assert.same({ n = 2, nil, 60000 }, sent)
      assert.equal("<" .. content:sub(7, 60006) .. ">", table.concat(got))
      close_all(a, b)
    end)

    it("returns nil and an error for a missing file", function()
      local a, b = connected_pair()
      local cb_err
      local r, err = uv.sendfile(a, "/nonexistent/luvrs-sendfile", 0, 10, function(e) cb_err = e or "none" end)
      if r then
        -- reported through the callback instead of the return values
        H.run_until(function() return cb_err end)
        assert.equal("ENOENT", cb_err)
      else
        assert.matches("^ENOENT", err)
      end
      close_all(a, b)
    end)
  end)
end)
