-- TCP echo server on 127.0.0.1.
--   LUA_CPATH='./build/?.so;;' lua5.4 examples/echo_server.lua [port]
-- Port 0 picks a free port; the line "listening on 127.0.0.1:PORT" tells which.
-- LUVRS_IMPL=luv runs the same program on the real luv.
local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")

local port = tonumber(arg[1] or "7000")
-- Above this many unsent bytes a client is not reading its echo: stop reading from it until it does.
local HIGH_WATER = 1024 * 1024

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))

local function serve(client)
  local paused = false
  local on_read

  local function on_drained()
    if paused and not client:is_closing() and client:write_queue_size() == 0 then
      paused = false
      client:read_start(on_read)
    end
  end

  function on_read(err, data)
    if err then
      io.stderr:write("read error: ", err, "\n")
      client:close()
    elseif data then
      client:write(data, on_drained)
      if client:write_queue_size() > HIGH_WATER then
        paused = true
        client:read_stop()
      end
    else -- end of stream: finish sending, then close
      client:shutdown(function() client:close() end)
    end
  end

  client:read_start(on_read)
end

-- libuv reports a port already in use from listen(), not bind()
assert(server:listen(128, function(err)
  if err then
    io.stderr:write("connection error: ", err, "\n")
    return
  end
  local client = uv.new_tcp()
  server:accept(client)
  serve(client)
end))
print(("listening on 127.0.0.1:%d"):format(server:getsockname().port))
io.stdout:flush()

uv.run()
