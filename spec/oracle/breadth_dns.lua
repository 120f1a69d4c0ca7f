-- Oracle scenario: getaddrinfo/getnameinfo, sync and async, misc additions.
-- Usage: lua5.4 spec/oracle/breadth_dns.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local S = require "spec.oracle.lib.show"
-- a getaddrinfo result: a list of records, each with its keys sorted
local show = S.printer(" | ", function(v)
  if type(v) ~= "table" then return S.text(v) end
  local items = {}
  for _, e in ipairs(v) do
    local keys = {}
    for k, x in pairs(e) do keys[#keys + 1] = k .. "=" .. tostring(x) end
    table.sort(keys)
    items[#items + 1] = "{" .. table.concat(keys, ",") .. "}"
  end
  return "[" .. table.concat(items, ",") .. "]"
end)

show("sync", uv.getaddrinfo("localhost", "http", { family = "inet", socktype = "stream" }))
show("sync udp", uv.getaddrinfo("127.0.0.1", nil, { family = "inet", socktype = "dgram", protocol = "udp" }))
show("sync missing", uv.getaddrinfo("no-such-host.invalid"))
-- Two lookups in flight may finish in either order on any thread pool: the second starts from the
-- first one's callback so the output is deterministic.
show("async", uv.getaddrinfo("localhost", nil, { family = "inet", socktype = "stream" }, function(err, res)
  show("async cb", err, res)
  show("async missing", uv.getaddrinfo("no-such-host.invalid", nil, nil, function(err2, res2)
    show("async missing cb", err2, res2)
  end))
end))
uv.run()
show("nameinfo", uv.getnameinfo({ ip = "127.0.0.1", port = 80 }))
uv.getnameinfo({ ip = "127.0.0.1", port = 22 }, function(err, h, s) show("nameinfo cb", err, h, s) end)
uv.run()
show("random", #uv.random(8), uv.random(0), uv.random(-1))
show("random cb", uv.random(4, nil, function(err, b) show("random bytes", err, #b) end))
uv.run()
show("guess", uv.guess_handle(uv.pipe().read))
show("done", uv.loop_alive())
