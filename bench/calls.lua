-- The cost of one call into the loop module, 2,000,000 calls each: a call on the C fast path
-- (`t:is_active()`, `uv.now()`) and one through mlua (`t:get_repeat()`). Prints "call|ns" rows.
-- Usage: lua5.4 bench/calls.lua MODULE
local uv = require(arg[1] or "luvrs")
local t = uv.new_timer()
local n = 2000000
local calls = {
  { "uv.now()", function() for _ = 1, n do uv.now() end end },
  { "t:is_active()", function() for _ = 1, n do t:is_active() end end },
  { "t:get_repeat()", function() for _ = 1, n do t:get_repeat() end end },
}
for _, c in ipairs(calls) do
  local t0 = os.clock()
  c[2]()
  print(("%s|%.0f"):format(c[1], (os.clock() - t0) / n * 1e9))
end
t:close()
uv.run()
