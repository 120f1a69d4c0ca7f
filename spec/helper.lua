-- Loop-driving helpers for specs: `local H = require "helper"`.
--
-- The loop under test is luvrs unless LUVRS_IMPL names another module (LUVRS_IMPL=luv runs the same
-- specs on the real luv, which is how a spec's expectations are checked against the reference).
local H = {}

H.impl = os.getenv("LUVRS_IMPL") or "luvrs"
H.uv = require(H.impl)
local uv = H.uv

-- One guard timer for the whole run: unreferenced, so it never keeps the loop alive by itself, and
-- never closed, so the unclosed-handle check leaves it out. busted loads this file afresh for each
-- spec file, so the timer lives in the registry to be shared by every copy.
local registry = debug.getregistry()
local guard_key = "spec.helper.guard." .. H.impl
local guard = registry[guard_key]
if not guard then
  guard = uv.new_timer()
  guard:unref()
  registry[guard_key] = guard
end
H.guard = guard

local timed_out = false
local function arm(ms)
  timed_out = false
  guard:start(ms, 0, function()
    timed_out = true
    uv.stop()
  end)
end

---Runs the loop until nothing is left to do; fails if that takes longer than `ms` (default 5000).
---An error raised in a callback comes out unchanged, as uv.run raised it.
---@param ms? integer
---@param mode? string run mode, default "default"
function H.run(ms, mode)
  arm(ms or 5000)
  local ok, err = pcall(uv.run, mode or "default")
  guard:stop()
  if not ok then error(err, 0) end
  if timed_out then error(("loop still busy after %d ms"):format(ms or 5000), 2) end
end

---Runs the loop one iteration at a time until `cond()` is true; fails after `ms` (default 5000).
---@param cond fun(): any
---@param ms? integer
function H.run_until(cond, ms)
  ms = ms or 5000
  local deadline = uv.hrtime() + ms * 1e6
  arm(ms)
  while not cond() do
    if uv.hrtime() > deadline or timed_out then
      guard:stop()
      error(("condition not met within %d ms"):format(ms), 2)
    end
    local ok, err = pcall(uv.run, "once")
    if not ok then guard:stop(); error(err, 0) end
  end
  guard:stop()
end

local expectations = {}

---Wraps `fn` (may be nil) so that H.verify() checks it was called exactly `n` times (default 1).
---@param fn? function
---@param n? integer
---@return function
function H.expect(fn, n, name)
  local info = debug.getinfo(2, "Sl")
  local e = { want = n or 1, calls = 0, name = name or (info.short_src .. ":" .. info.currentline) }
  expectations[#expectations + 1] = e
  return function(...)
    e.calls = e.calls + 1
    if fn then return fn(...) end
  end
end

---Checks every expectation made since the last call, then forgets them.
function H.verify()
  local pending = expectations
  expectations = {}
  for _, e in ipairs(pending) do
    if e.calls ~= e.want then
      error(("%s: expected %d call(s), got %d"):format(e.name, e.want, e.calls), 2)
    end
  end
end

---Handles still open (not closing), the guard left out.
---@return table
function H.unclosed()
  local open = {}
  uv.walk(function(h)
    if h ~= guard and not h:is_closing() then open[#open + 1] = h end
  end)
  return open
end

---Fails if a handle is left open; closes the leftovers first so one failure does not cascade.
function H.assert_no_unclosed()
  local open = H.unclosed()
  if #open == 0 then return end
  local names = {}
  for i, h in ipairs(open) do
    names[i] = tostring(h)
    h:close()
  end
  H.run(1000)
  error("unclosed handles: " .. table.concat(names, ", "), 2)
end

---For `after_each`: expectations met, no handle left open.
function H.after_each()
  H.verify()
  H.assert_no_unclosed()
end

---Binds a TCP server on 127.0.0.1 (or `host`) port 0 and returns it with its port.
---@param on_connection fun(server, err)
---@param host? string
function H.tcp_server(on_connection, host)
  local server = uv.new_tcp()
  assert(server:bind(host or "127.0.0.1", 0))
  assert(server:listen(128, function(err) on_connection(server, err) end))
  return server, server:getsockname().port
end

---Closes every handle given (those not already closing) and runs the loop until their close
---callbacks have run.
function H.close_all(...)
  for _, h in ipairs({ ... }) do
    if not h:is_closing() then h:close() end
  end
  H.run()
end

---A connected TCP pair over `host` (default 127.0.0.1): returns the client, the accepted stream
---and the port. The listening socket is closed again.
---@param host? string
function H.tcp_pair(host)
  local accepted, connected
  local server, port = H.tcp_server(function(srv)
    accepted = uv.new_tcp()
    srv:accept(accepted)
  end, host)
  local client = uv.new_tcp()
  client:connect(host or "127.0.0.1", port, function(err) connected = err or true end)
  H.run_until(function() return accepted and connected end)
  assert(connected == true, "connect failed: " .. tostring(connected))
  server:close()
  return client, accepted, port
end

---Runs `fn` as a luvrs.co task and drives the loop until it finishes (deadline `ms`, default
---5000); returns its results or raises its error.
---@param fn function
---@param ms? integer
function H.go(fn, ms)
  local t = require("luvrs.co").spawn(fn)
  H.run_until(function() return t.state ~= "running" end, ms or 5000)
  local r = table.pack(t:result())
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

---Number of open file descriptors of this process, pipes left out: io.popen's own pipe shows up
---once or twice depending on when `ls` runs, and the descriptors specs watch are sockets and files.
function H.fd_count()
  local pid = math.tointeger(uv.os_getpid())
  local p = io.popen("ls -l /proc/" .. pid .. "/fd | grep -- '->' | grep -vc 'pipe:'")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

---Resident set size of this process in bytes.
function H.rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = f:read("*n") and f:read("*n")
  f:close()
  return pages * 4096
end

return H
