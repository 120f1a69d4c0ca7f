-- Temporary files, directories and child scripts for specs: `local fixtures = require "fixtures"`.
-- Apart from spec/helper.lua because it loads no loop module: lasgi uses the loop module already
-- loaded, so a lasgi spec requiring the helper would run on a different loop.
local M = {}

---`s` quoted for the shell.
---@param s string
function M.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

---Writes `content` (default "") to `path`, created or truncated; returns the path.
---@param path string
---@param content? string
function M.write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content or "")
  f:close()
  return path
end

---A new temporary file holding `content` (default ""); returns its path.
---@param content? string
function M.tmpfile(content)
  return M.write(os.tmpname(), content)
end

---Contents of the file at `path`.
---@param path string
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

---A new empty temporary directory; returns its path.
function M.tmpdir()
  local path = os.tmpname()
  assert(os.remove(path))
  assert(os.execute("mkdir " .. M.quote(path)))
  return path
end

---Removes `path` and everything below it.
---@param path string
function M.rm_tree(path)
  assert(os.execute("rm -rf " .. M.quote(path)))
end

---Runs the Lua source `script` in a child lua5.4 (from the repository root) with one argument;
---returns what it wrote to stdout and stderr.
---@param script string
---@param arg1 string
function M.run_lua(script, arg1)
  local file = M.tmpfile(script)
  local h = assert(io.popen(("lua5.4 %s %s 2>&1"):format(file, M.quote(arg1))))
  local out = h:read("a")
  h:close()
  os.remove(file)
  return out
end

return M
