-- Oracle scenario: UDP round trip, connect, send queue, error triples.
-- Usage: lua5.4 spec/oracle/breadth_udp.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local S = require "spec.oracle.lib.show"
-- an address record, keys sorted, the port left out (it differs from run to run)
local show = S.printer(" | ", function(v)
  if type(v) ~= "table" then return S.text(v) end
  local keys = {}
  for k, x in pairs(v) do
    if k ~= "port" then keys[#keys + 1] = tostring(k) .. "=" .. tostring(x) end
  end
  table.sort(keys)
  return "{" .. table.concat(keys, ",") .. "}"
end)

local r, s = uv.new_udp(), uv.new_udp()
show("type", uv.handle_get_type(r))
show("getpeername unbound", s:getpeername())
show("bind", r:bind("127.0.0.1", 0))
local port = r:getsockname().port
show("getsockname", r:getsockname())
show("recv_start", r:recv_start(function(err, data, addr, flags)
  if data then
    show("recv", err, data, addr, flags)
    if data == "two" then
      r:close(function() show("r closed") end)
      s:close(function() show("s closed") end)
    end
  end
end))
show("send queue empty", r:get_send_queue_count())
show("send", s:send("one", "127.0.0.1", port, function(err) show("send cb", err) end))
show("queue after send", s:get_send_queue_size(), s:get_send_queue_count())
show("try_send while queued", s:try_send("x", "127.0.0.1", port))
uv.run("once")
uv.run("nowait")
show("queue drained", s:get_send_queue_size(), s:get_send_queue_count())
show("try_send no addr", s:try_send("x", nil, nil))
show("connect", s:connect("127.0.0.1", port))
show("connect again", s:connect("127.0.0.1", port))
show("getpeername", s:getpeername())
show("try_send addr when connected", s:try_send("x", "127.0.0.1", port))
show("set_ttl 0", s:set_ttl(0))
show("set_ttl", s:set_ttl(9))
show("set_broadcast", s:set_broadcast(true))
show("try_send", s:try_send("two", nil, nil))
uv.run()
show("done", uv.loop_alive())
