-- Oracle scenario: error triples, callback error names, bad-argument errors.
-- Usage: lua5.4 spec/oracle/errors.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local function show(...)
  local out = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "userdata" then v = tostring(v):match("^(%S+):") or "userdata" end
    out[i] = tostring(v)
  end
  print(table.concat(out, " | "))
end

local function triple(label, ...) show(label, select("#", ...), ...) end

local t, tcp = uv.new_timer(), uv.new_tcp()
triple("timer_again unstarted", t:again())
triple("fileno tcp", tcp:fileno())
triple("fileno timer", t:fileno())
triple("getsockname", tcp:getsockname())
triple("getpeername", tcp:getpeername())
triple("shutdown", tcp:shutdown())
triple("write", tcp:write("x"))
triple("try_write", tcp:try_write("x"))
triple("read_start", tcp:read_start(function() end))
triple("send_buffer_size", tcp:send_buffer_size())
triple("getenv unset", uv.os_getenv("LUVRS_ORACLE_UNSET"))
triple("getenv small", uv.os_getenv("PATH", 2))
triple("chdir missing", uv.chdir("/nonexistent-luvrs-oracle"))
triple("setenv bad", uv.os_setenv("A=B", "x"))
triple("new_tcp unix", uv.new_tcp("unix"))
triple("bind", tcp:bind("127.0.0.1", 0))
triple("bind again", tcp:bind("127.0.0.1", 0))
local port = tcp:getsockname().port
triple("listen", tcp:listen(8, function() end))
local accepted = uv.new_tcp()
triple("accept none", tcp:accept(accepted))
local second = uv.new_tcp()
triple("bind used port", second:bind("127.0.0.1", port))
triple("listen used port", second:listen(8, function() end))
triple("read_start listener", tcp:read_start(function() end))
for _, h in ipairs({ tcp, accepted, second }) do h:close() end
t:close()
triple("start closed timer", t:start(1, 0, function() end))
show("close twice raises", (pcall(t.close, t)))

-- callback errors are bare names
local probe = uv.new_tcp()
probe:bind("127.0.0.1", 0)
local free_port = probe:getsockname().port
probe:close()
local refused = uv.new_tcp()
refused:connect("127.0.0.1", free_port, function(...)
  show("connect refused cb", select("#", ...), ...)
  refused:close()
end)
uv.run()

-- peer reset
local server = uv.new_tcp()
server:bind("127.0.0.1", 0)
local conn
server:listen(8, function()
  conn = uv.new_tcp()
  server:accept(conn)
  conn:read_start(function(...)
    show("server read", select("#", ...), ...)
    conn:close()
    server:close()
  end)
end)
local client = uv.new_tcp()
client:connect("127.0.0.1", server:getsockname().port, function(...)
  show("client connect", select("#", ...), ...)
  show("close_reset", client:close_reset(function(...) show("reset close cb", select("#", ...)) end))
end)
uv.run()

-- closing a connecting handle cancels the request; queued writes are cancelled on close
local server2 = uv.new_tcp()
server2:bind("127.0.0.1", 0)
server2:listen(8, function() end)
local c2 = uv.new_tcp()
c2:connect("127.0.0.1", server2:getsockname().port, function(...)
  show("cancelled connect cb", select("#", ...), ...)
end)
c2:close()
server2:close()
uv.run()

-- bad arguments: the position and whether the message names the function
local function bad(name, ...)
  local ok, err = pcall(uv[name], ...)
  show("bad " .. name, ok, err:match("bad argument #%d+") or err, err:find(name, 1, true) ~= nil)
end
local t2 = uv.new_timer()
bad("timer_start", 1, 1, 0, function() end)
bad("timer_start", t2, "soon", 0, function() end)
bad("timer_start", t2, 1, 0, 5)
bad("tcp_bind", t2, "127.0.0.1", 0)
local fresh = uv.new_tcp()
bad("tcp_bind", fresh, "127.0.0.1", "x")
bad("listen", t2, 1, function() end)
bad("write", fresh, nil)
bad("write", fresh, true)
bad("close", "x")
bad("run", "sideways")
bad("walk", 1)
bad("new_tcp", "foo")
show("bad ip raises", (pcall(uv.tcp_bind, fresh, "1.2.3", 0)))
for _, h in ipairs({ fresh, t2 }) do h:close() end
show("run", uv.run())
