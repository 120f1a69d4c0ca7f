-- Oracle: every scenario in spec/oracle/*.lua prints the same lines on luvrs as on Debian's luv.
-- Each script takes the module name as arg[1] and prints one line per callback or result.
local LIB = "build/luvrs.so"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Runs one scenario under lua5.4 with `module`; returns its output and whether it exited with 0.
-- The scenarios require spec.oracle.lib.show from the repository root, the current directory.
local function run(script, module)
  local cmd = ("LUA_PATH='./?.lua;;' LUA_CPATH='./build/?.so;;' timeout 30 lua5.4 %s %s 2>&1"):format(script, module)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok and code == 0
end

local function scripts()
  local list = {}
  local p = assert(io.popen("ls spec/oracle/*.lua"))
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

-- First differing line, for a readable failure message.
local function first_difference(a, b)
  local la, lb = {}, {}
  for l in (a .. "\n"):gmatch("(.-)\n") do la[#la + 1] = l end
  for l in (b .. "\n"):gmatch("(.-)\n") do lb[#lb + 1] = l end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      return ("line %d:\n  luv:   %s\n  luvrs: %s"):format(i, tostring(la[i]), tostring(lb[i]))
    end
  end
end

describe("oracle", function()
  local list = scripts()

  it("has scenarios", function()
    assert.is_true(#list >= 5, "scenarios found: " .. #list)
  end)

  for _, script in ipairs(list) do
    it(script .. " is deterministic on luv", function()
      local a, ok = run(script, "luv")
      assert.is_true(ok, a)
      local b = run(script, "luv")
      assert.is_true(#a > 0)
      assert.equal(a, b)
    end)
  end

  if not exists(LIB) then
    pending(LIB .. " is not built yet (make build)")
    return
  end

  for _, script in ipairs(list) do
    it(script .. " prints the same on luvrs as on luv", function()
      local want, ok_luv = run(script, "luv")
      assert.is_true(ok_luv, want)
      local got, ok_luvrs = run(script, "luvrs")
      if got ~= want then
        error(("%s differs from luv at %s\n--- luvrs output ---\n%s"):format(
          script, first_difference(want, got) or "?", got), 0)
      end
      assert.is_true(ok_luvrs, "luvrs run failed")
    end)
  end
end)
