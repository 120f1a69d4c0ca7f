-- TTY: new_tty, tty_get_winsize, tty_set_mode, tty_reset_mode, guess_handle. A real terminal comes
-- from script(1), which runs a child on a pseudo-terminal.
local H = require "helper"
local uv = H.uv
local fixtures = require "fixtures"

-- Runs `src` under a pseudo-terminal and returns what it printed.
local function on_pty(src)
  local path = fixtures.tmpfile(src)
  local cmd = ("LUVRS_IMPL=%s LUA_CPATH='./build/?.so;;' timeout 10 script -qec 'lua5.4 %s' /dev/null </dev/null")
    :format(H.impl, path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

describe("tty", function()
  after_each(H.after_each)

  it("on a terminal: guess_handle, winsize, modes and writes", function()
    local out = on_pty([[
      local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")
      local t = uv.new_tty(1, false)
      local w, h = t:get_winsize()
      local w2 = uv.tty_get_winsize(t)
      local raw = t:set_mode(1)
      local io_mode = uv.tty_set_mode(t, 2)
      local normal = t:set_mode(0)
      local reset = uv.tty_reset_mode()
      t:write(("RESULT %s %s %s %s %s %s %s %s %s %s\n"):format(uv.guess_handle(1), math.type(w), math.type(h),
        w == w2, raw, io_mode, normal, reset, t:is_writable(), t:is_readable()))
      local r = uv.new_tty(0, true)
      t:write(("READABLE %s %s %s\n"):format(r:is_readable(), r:is_writable(), uv.handle_get_type(r)))
      r:close()
      t:close()
      uv.run()
    ]])
    assert.matches("RESULT tty integer integer true 0 0 0 0 true true", out, 1, true)
    assert.matches("READABLE true true tty", out, 1, true)
  end)

  it("new_tty works on a pipe, readable or writable as the descriptor allows", function()
    local fds = uv.pipe()
    local t = uv.new_tty(fds.write, false)
    assert.are.same({ "tty", 14 }, { uv.handle_get_type(t) })
    assert.is_true(t:is_writable())
    assert.is_false(t:is_readable())
    assert.matches("^uv_tty_t: ", tostring(t))
    local ok, _, code = t:set_mode(1)
    assert.is_nil(ok)
    assert.are.equal("ENOTTY", code)
    local r = uv.new_pipe()
    r:open(fds.read)
    r:read_start(H.expect(function(err, data)
      assert.is_nil(err)
      assert.are.equal("via tty", data)
      r:close()
    end))
    t:write("via tty")
    H.run_until(function() return r:is_closing() end)
    t:close()
    H.run()
  end)

  it("guess_handle names pipes, sockets and unknown descriptors", function()
    local fds = uv.pipe()
    assert.are.equal("pipe", uv.guess_handle(fds.read))
    local pair = uv.socketpair()
    assert.are.equal("pipe", uv.guess_handle(pair[1]))
    local tcp = uv.new_tcp("inet")
    assert.are.equal("tcp", uv.guess_handle(tcp:fileno()))
    local udp = uv.new_udp("inet")
    assert.are.equal("udp", uv.guess_handle(udp:fileno()))
    assert.is_nil(uv.guess_handle(1000))
    for _, fd in ipairs({ fds.read, fds.write, pair[1], pair[2] }) do
      local p = uv.new_pipe()
      p:open(fd)
      p:close()
    end
    tcp:close()
    udp:close()
    H.run()
  end)

  it("tty_reset_mode with nothing to reset returns 0", function()
    assert.are.equal(0, uv.tty_reset_mode())
  end)

  it("rejects bad arguments naming the function", function()
    local ok, err = pcall(uv.new_tty, "x", false)
    assert.is_false(ok)
    assert.matches("new_tty", err)
    ok, err = pcall(uv.guess_handle, {})
    assert.is_false(ok)
    assert.matches("guess_handle", err)
  end)
end)
