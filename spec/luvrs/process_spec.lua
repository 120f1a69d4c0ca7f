-- Processes: spawn with stdio pipes, exit codes and term signals, process_kill, kill, get_pid,
-- env/cwd/args, failures, several children exiting at once, disable_stdio_inheritance.
local H = require "helper"
local uv = H.uv

local close_all = H.close_all

-- Reads a stream to EOF into a table; calls done(text) at the end.
local function collect(stream, done)
  local got = {}
  stream:read_start(function(err, data)
    assert.is_nil(err)
    if data then got[#got + 1] = data else done(table.concat(got)) end
  end)
end

describe("process", function()
  after_each(H.after_each)

  it("spawns a child whose stdin/stdout are pipes and echoes data back", function()
    local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
    local code, sig, out
    local proc, pid = uv.spawn("cat", { stdio = { stdin, stdout, 2 } }, H.expect(function(c, s)
      code, sig = c, s
    end))
    assert.is_userdata(proc)
    assert.is_number(pid)
    assert.are.equal(pid, proc:get_pid())
    assert.are.equal(pid, uv.process_get_pid(proc))
    assert.are.same({ "process", 10 }, { uv.handle_get_type(proc) })
    collect(stdout, function(text) out = text; stdout:close() end)
    stdin:write({ "echo ", "me" })
    stdin:shutdown(function() stdin:close() end)
    H.run_until(function() return code and out end)
    assert.are.equal("echo me", out)
    assert.are.equal(0, code)
    assert.are.equal(0, sig)
    close_all(proc)
  end)

  it("reports the exit code", function()
    local code, sig
    local proc = uv.spawn("sh", { args = { "-c", "exit 7" } }, H.expect(function(c, s) code, sig = c, s end))
    H.run_until(function() return code end)
    assert.are.equal(7, code)
    assert.are.equal(0, sig)
    close_all(proc)
  end)

  it("reports the term signal of a child killed with process_kill", function()
    local code, sig
    local proc = uv.spawn("sleep", { args = { "10" } }, H.expect(function(c, s) code, sig = c, s end))
    assert.are.equal(0, proc:kill("sigterm"))
    H.run_until(function() return sig end)
    assert.are.equal(0, code)
    assert.are.equal(15, sig)
    close_all(proc)
  end)

  it("kill(pid, sig) ends a sleeping child with that signal", function()
    local sig
    local proc, pid = uv.spawn("sleep", { args = { "10" } }, H.expect(function(_, s) sig = s end))
    assert.are.equal(0, uv.kill(pid, "sigterm"))
    H.run_until(function() return sig end)
    assert.are.equal(15, sig)
    close_all(proc)
    local sig2
    local proc2 = uv.spawn("sleep", { args = { "10" } }, H.expect(function(_, s) sig2 = s end))
    assert.are.equal(0, uv.process_kill(proc2, 9))
    H.run_until(function() return sig2 end)
    assert.are.equal(9, sig2)
    close_all(proc2)
  end)

  it("process_kill after exit fails with ESRCH", function()
    local done
    local proc = uv.spawn("true", {}, function() done = true end)
    H.run_until(function() return done end)
    local ok, _, code = proc:kill()
    assert.is_nil(ok)
    assert.are.equal("ESRCH", code)
    close_all(proc)
  end)

  it("passes args, env and cwd", function()
    local stdout = uv.new_pipe()
    local out, code
    local proc = uv.spawn("sh", {
      args = { "-c", 'printf "%s|%s|%s" "$1" "$FOO" "$(pwd)"', "sh", "arg one" },
      env = { "FOO=bar" },
      cwd = "/",
      stdio = { nil, stdout, nil },
    }, function(c) code = c end)
    collect(stdout, function(text) out = text; stdout:close() end)
    H.run_until(function() return out and code end)
    assert.are.equal("arg one|bar|/", out)
    close_all(proc)
  end)

  it("inherits an fd given as a number", function()
    local fds = uv.pipe()
    local r = uv.new_pipe()
    r:open(fds.read)
    local out, code
    local proc = uv.spawn("sh", { args = { "-c", "echo inherited" }, stdio = { nil, fds.write } },
      function(c) code = c end)
    -- the parent's copy of the write end must go for EOF to arrive
    local w = uv.new_pipe()
    w:open(fds.write)
    w:close()
    collect(r, function(text) out = text; r:close() end)
    H.run_until(function() return out and code end)
    assert.are.equal("inherited\n", out)
    close_all(proc)
  end)

  it("fails on a missing executable with ENOENT", function()
    local proc, msg, code = uv.spawn("/nonexistent/luvrs-no-such-program", {}, function() end)
    assert.is_nil(proc)
    assert.are.equal("ENOENT", code)
    assert.matches("^ENOENT: ", msg)
  end)

  it("delivers every exit when several children end at once", function()
    local n, exits, procs = 8, {}, {}
    for i = 1, n do
      procs[i] = uv.spawn("sh", { args = { "-c", "exit " .. i } }, function(c) exits[#exits + 1] = c end)
    end
    H.run_until(function() return #exits == n end)
    table.sort(exits)
    for i = 1, n do assert.are.equal(i, exits[i]) end
    close_all(table.unpack(procs))
  end)

  it("children get default signal dispositions", function()
    -- SIGPIPE is ignored in this process; the child must see the default again.
    local stdout = uv.new_pipe()
    local out
    local proc = uv.spawn("sh", { args = { "-c", "grep SigIgn /proc/self/status" }, stdio = { nil, stdout } },
      function() end)
    collect(stdout, function(text) out = text; stdout:close() end)
    H.run_until(function() return out end)
    local mask = tonumber(out:match("SigIgn:%s*(%x+)"), 16)
    assert.are.equal(0, mask & (1 << 12)) -- bit for SIGPIPE (13)
    H.run()
    close_all(proc)
  end)

  it("disable_stdio_inheritance returns nothing and keeps spawn working", function()
    assert.are.equal(0, select("#", uv.disable_stdio_inheritance()))
    local code
    local proc = uv.spawn("true", {}, function(c) code = c end)
    H.run_until(function() return code end)
    assert.are.equal(0, code)
    close_all(proc)
  end)

  it("rejects bad arguments naming the function", function()
    local ok, err = pcall(uv.spawn, "true", 5)
    assert.is_false(ok)
    assert.matches("spawn", err)
  end)
end)
