-- Oracle scenario: handle types, tostring prefixes, metatable names, walk, ref/active state.
-- Usage: lua5.4 spec/oracle/handles.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local show = require("spec.oracle.lib.show").printer(" ")

local made = {
  uv.new_timer(), uv.new_idle(), uv.new_check(), uv.new_prepare(),
  uv.new_tcp(), uv.new_tcp("inet"), uv.new_tcp("inet6"),
}
for i, h in ipairs(made) do
  local mt = getmetatable(h)
  show(i, tostring(h):match("^(%S+): 0x%x+$"), mt and mt.__name, h:get_type())
  show(" ", "handle_get_type", uv.handle_get_type(h))
  show(" ", "active", h:is_active(), "closing", h:is_closing(), "has_ref", h:has_ref())
end

show("walk:")
uv.walk(function(h) show(" ", h:get_type(), h:is_closing()) end)

local t = made[1]
t:start(1000, 0, function() end)
show("timer active", t:is_active(), "alive", uv.loop_alive())
t:unref()
show("unref has_ref", t:has_ref(), "active", t:is_active(), "alive", uv.loop_alive())
t:ref()
t:stop()
show("stopped", t:is_active(), "alive", uv.loop_alive())

made[2]:close()
made[5]:close(function() show("tcp close cb") end)
show("walk after two closes:")
uv.walk(function(h) show(" ", h:get_type(), "closing", h:is_closing()) end)
show("alive with closes pending", uv.loop_alive())
show("run", uv.run())
show("walk after run:")
uv.walk(function(h) show(" ", h:get_type()) end)
show("after close", made[2]:get_type(), made[2]:is_closing(), made[2]:is_active())

-- methods exist on every handle type
local methods = { "close", "is_active", "is_closing", "ref", "unref", "has_ref", "get_type", "fileno",
  "send_buffer_size", "recv_buffer_size" }
for _, i in ipairs({ 1, 3, 4, 6 }) do
  local h = made[i]
  local missing = {}
  for _, m in ipairs(methods) do
    if type(h[m]) ~= "function" then missing[#missing + 1] = m end
  end
  show(h:get_type(), "missing", #missing == 0 and "none" or table.concat(missing, ","))
end

-- file descriptors: sockets made with a family have one, others report errors
show("fileno inet is number", type(made[6]:fileno()))
show("fileno inet6 is number", type(made[7]:fileno()))
show("fileno timer", made[1]:fileno())

for _, i in ipairs({ 1, 3, 4, 6, 7 }) do made[i]:close() end
show("final run", uv.run())
local left = 0
uv.walk(function() left = left + 1 end)
show("handles left", left)
