-- The cache of small freed blocks luvrs puts in front of the Lua state's allocator (src/alloc.rs).
-- Each case runs in a fresh lua5.4 process: what matters is a whole state's life, its close included.
local H = require "helper"

-- Runs `code` in a new lua5.4 (under `wrapper`, if any); returns its output and exit status.
local function run_lua(code, wrapper)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local p = assert(io.popen(("LUA_CPATH=%q %s lua5.4 %s 2>&1"):format(package.cpath, wrapper or "", path)))
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(path)
  return out, status
end

-- Makes and drops objects of many sizes, keeps some, and checks the kept ones and new ones made from
-- recycled blocks.
local CHURN = [[
  local uv = require "luvrs"
  local keep = {}
  for i = 1, 100000 do
    local t = { i, tostring(i), function() return i end }
    if i % 100 == 0 then keep[#keep + 1] = t end
  end
  collectgarbage()
  local s = {}
  for i = 1, 300 do s[i] = string.rep("x", i) .. i end
  collectgarbage()
  for i = 1, 300 do assert(s[i] == string.rep("x", i) .. i) end
  assert(#keep == 1000 and keep[1000][1] == 100000 and keep[1000][2] == "100000" and keep[1000][3]() == 100000)
  local t = uv.new_timer()
  t:start(1, 0, function() t:close() end)
  uv.run()
  print("done " .. uv.luvrs_version)
]]

describe("the allocator cache (luvrs)", function()
  if H.impl ~= "luvrs" then
    pending("a luvrs feature: luv leaves the state's allocator alone")
    return
  end

  it("objects made from recycled blocks are intact, and the state closes cleanly", function()
    local out, status = run_lua(CHURN)
    assert.matches("^done %d+%.%d+%.%d+\n$", out)
    assert.equal(0, status)
  end)

  -- The state frees its last objects after the finalizers have run: the cache must have handed its
  -- blocks back by then (kept, they would show as thousands of blocks in use at exit; luvrs's own
  -- loop core, kept on purpose, is about ten).
  it("under memcheck: no invalid read, write or free, and no cached block left at exit", function()
    if not os.execute("command -v valgrind >/dev/null 2>&1") then
      pending("valgrind is not installed")
      return
    end
    local out, status = run_lua(CHURN, "valgrind --error-exitcode=9")
    assert.equal(0, status, out)
    assert.matches("\ndone %d+%.%d+%.%d+\n", out)
    local blocks = tonumber(out:match("in use at exit: [%d,]+ bytes in ([%d,]+) blocks"):gsub(",", ""), 10)
    assert.is_true(blocks < 100, out)
  end)
end)
