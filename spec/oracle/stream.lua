-- Oracle scenario: stream edge cases: a read callback that closes its stream, read_stop/read_start,
-- try_write until EAGAIN, queued writes cancelled by close, writes after shutdown, EOF arguments.
-- Usage: lua5.4 spec/oracle/stream.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local show = require("spec.oracle.lib.show").printer(" | ")

-- Runs the loop until cond() holds (each scenario below is a chain of single events); gives up
-- after 5 s, printing where, so a difference shows as output rather than as a hang.
local function run_until(cond)
  local deadline = uv.hrtime() + 5e9
  local guard = uv.new_timer()
  guard:start(100, 100, function() end) -- keeps run("once") from returning at once or blocking forever
  guard:unref()
  while not cond() do
    if uv.hrtime() > deadline then
      print("timed out at line " .. debug.getinfo(2, "l").currentline)
      os.exit(1)
    end
    guard:ref()
    uv.run("once")
    guard:unref()
  end
  guard:close()
end

local function pair()
  local server = uv.new_tcp()
  server:bind("127.0.0.1", 0)
  local accepted, connected
  server:listen(8, function()
    accepted = uv.new_tcp()
    server:accept(accepted)
  end)
  local client = uv.new_tcp()
  client:connect("127.0.0.1", server:getsockname().port, function(err) connected = err or true end)
  run_until(function() return accepted and connected end)
  server:close()
  return client, accepted
end

local function close_all(...)
  for _, h in ipairs({ ... }) do
    if not h:is_closing() then h:close() end
  end
  uv.run()
end

-- 1. a read callback closes its stream; nothing is delivered after
do
  local a, b = pair()
  local calls = 0
  b:read_start(function(...)
    calls = calls + 1
    show("read", calls, select("#", ...), ...)
    show("close in read cb", select("#", b:close(function() show("closed in read cb") end)))
  end)
  a:write("first")
  run_until(function() return calls > 0 end)
  local shut
  a:write("second")
  a:shutdown(function(...) shut = { ... } end)
  run_until(function() return shut end)
  show("reads after close", calls)
  close_all(a)
end

-- 2. read_stop holds data back; read_start delivers it; double read_start
do
  local a, b = pair()
  local got = {}
  show("read_start", b:read_start(function(_, d) got[#got + 1] = d end))
  show("read_start again", b:read_start(function(_, d) got[#got + 1] = d end))
  show("read_stop", b:read_stop(), "again", b:read_stop())
  local written
  a:write("held back", function() written = true end)
  run_until(function() return written end)
  uv.run("nowait")
  show("while stopped", #got)
  b:read_start(function(_, d) got[#got + 1] = d end)
  run_until(function() return #got > 0 end)
  show("after restart", got[1])
  close_all(a, b)
end

-- 3. fill the socket with try_write while the peer does not read
do
  local a, b = pair()
  local chunk = string.rep("x", 65536)
  local total, res = 0, nil
  for _ = 1, 100000 do
    local n, msg, code = a:try_write(chunk)
    if not n then
      res = { n, msg, code }
      break
    end
    total = total + n
  end
  show("filled", total > 0, res[1], res[2], res[3])
  show("try_write empty when full", a:try_write(""))
  local cbs = {}
  a:write("queued one", function(...) cbs[#cbs + 1] = { "one", select("#", ...), ... } end)
  a:write({ "queued", "two" }, function(...) cbs[#cbs + 1] = { "two", select("#", ...), ... } end)
  show("queue size", a:write_queue_size(), uv.stream_get_write_queue_size(a))
  show("try_write while queued", a:try_write("x"))
  a:close(function() show("writer closed") end)
  uv.run()
  for _, c in ipairs(cbs) do show("write cb", table.unpack(c)) end
  close_all(b)
end

-- 4. shutdown, then write; EOF on the other side; shutdown twice
do
  local a, b = pair()
  local eof
  b:read_start(function(...)
    if select("#", ...) == 0 then eof = true end
  end)
  local shut
  show("shutdown", a:shutdown(function(...) shut = { select("#", ...), ... } end))
  show("writable after shutdown", a:is_writable(), "readable", a:is_readable())
  show("write after shutdown", a:write("late"))
  show("try_write after shutdown", a:try_write("late"))
  run_until(function() return shut and eof end)
  show("shutdown cb", table.unpack(shut))
  show("peer eof", eof)
  close_all(a, b)
end

-- 5. close_reset while the peer is reading: state inside and after the callback
do
  local a, b = pair()
  local got
  b:read_start(function(...)
    got = { select("#", ...), ... }
    show("in reset cb: readable", b:is_readable(), "writable", b:is_writable(), "active", b:is_active())
  end)
  a:close_reset()
  run_until(function() return got end)
  show("after reset", table.unpack(got))
  show("after reset: readable", b:is_readable(), "writable", b:is_writable(), "active", b:is_active())
  show("read_start after reset", b:read_start(function() end))
  show("write after reset", b:write("x", function(...) show("write after reset cb", ...) end))
  show("try_write after reset", b:try_write("x"))
  close_all(b)
end

-- 6. EOF: state inside and after the callback; read_start after EOF
do
  local a, b = pair()
  local eofs = 0
  local function on_read(...)
    if select("#", ...) == 0 then
      eofs = eofs + 1
      show("in eof cb", eofs, "readable", b:is_readable(), "writable", b:is_writable(), "active", b:is_active())
    end
  end
  b:read_start(on_read)
  a:shutdown()
  run_until(function() return eofs == 1 end)
  show("after eof: readable", b:is_readable(), "writable", b:is_writable(), "active", b:is_active())
  show("read_start after eof", b:read_start(on_read))
  run_until(function() return eofs == 2 end)
  show("write after eof", b:write("still writable", function(...) show("write after eof cb", select("#", ...)) end))
  local done = false
  a:read_start(function(_, d)
    if d then
      show("peer got", d)
      done = true
    end
  end)
  run_until(function() return done end)
  close_all(a, b)
end

show("alive at end", uv.loop_alive())
