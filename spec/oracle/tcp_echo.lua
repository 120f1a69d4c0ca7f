-- Oracle scenario: a TCP echo exchange with write callbacks, arrays, 0-byte writes, shutdown, EOF
-- and close callbacks. Usage: lua5.4 spec/oracle/tcp_echo.lua luvrs|luv
-- Events are logged per side (client, server) and printed at the end: the order within one side
-- is part of the contract, the interleaving of the two sides is not.
local uv = require(arg[1] or "luvrs")

local logs = { client = {}, server = {}, main = {} }

local fmt = require("spec.oracle.lib.show").formatter(" ")

local function log(side, ...) table.insert(logs[side], fmt(...)) end

local server = uv.new_tcp()
log("main", "bind", server:bind("127.0.0.1", 0))
local name = server:getsockname()
log("main", "sockname", name.ip, name.family, math.type(name.port))
log("main", "server readable", server:is_readable(), "writable", server:is_writable())

local expected = "hello" .. "" .. "alpha" .. "beta" .. "gamma" .. string.rep("z", 100000)
local received = {}
log("main", "listen", server:listen(16, function(...)
  log("server", "connection nargs", select("#", ...), ...)
  local conn = uv.new_tcp()
  log("server", "accept", server:accept(conn))
  log("server", "readable", conn:is_readable(), "writable", conn:is_writable())
  local peer = conn:getpeername()
  log("server", "peer", peer.ip, peer.family)
  log("server", "read_start", conn:read_start(function(...)
    local n, err, data = select("#", ...), ...
    if n == 0 then
      local all = table.concat(received)
      log("server", "eof", "received", #all, all:sub(1, 20), all == expected)
      log("server", "shutdown", conn:shutdown(function(...)
        log("server", "shutdown cb nargs", select("#", ...), ...)
        conn:close(function(...) log("server", "conn closed nargs", select("#", ...)) end)
        server:close(function() log("server", "server closed") end)
      end))
      return
    end
    if err then log("server", "read error", err) return end
    received[#received + 1] = data
    conn:write(data)
  end))
end))

local client = uv.new_tcp()
local echoed = {}
local req = client:connect("127.0.0.1", name.port, function(...)
  log("client", "connect nargs", select("#", ...), ...)
  local peer = client:getpeername()
  log("client", "peer", peer.ip, peer.family, peer.port == name.port)
  log("client", "read_start", client:read_start(function(...)
    local n, err, data = select("#", ...), ...
    if n == 0 then
      log("client", "eof", "echoed equals sent", table.concat(echoed) == expected, #table.concat(echoed))
      client:close(function(...) log("client", "closed nargs", select("#", ...)) end)
      return
    end
    if err then log("client", "read error", err) return end
    echoed[#echoed + 1] = data
    if #table.concat(echoed) == #expected then
      log("client", "all echoed; shutdown", client:shutdown(function(...)
        log("client", "shutdown cb nargs", select("#", ...), ...)
      end))
    end
  end))
  log("client", "write", client:write("hello", function(...) log("client", "write 1 cb", select("#", ...), ...) end))
  log("client", "write 0 bytes", client:write("", function(...) log("client", "write 2 cb", select("#", ...), ...) end))
  log("client", "write array", client:write({ "alpha", "beta", "gamma" }, function(...)
    log("client", "write 3 cb", select("#", ...), ...)
  end))
  log("client", "write big", client:write(string.rep("z", 100000), function(...)
    log("client", "write 4 cb", select("#", ...), ...)
  end))
  log("client", "write no cb", client:write(""))
end)
log("main", "connect", req)
log("main", "run", uv.run())
log("main", "alive", uv.loop_alive())

for _, side in ipairs({ "main", "client", "server" }) do
  for _, line in ipairs(logs[side]) do print(side .. ": " .. line) end
end
