-- The file-system calls a server needs: fs_stat, fs_lstat, fs_realpath, fs_chmod, fs_unlink.
local H = require "helper"
local uv = H.uv

describe("fs", function()
  after_each(H.after_each)

  local function tmpfile(content)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    return path
  end

  it("fs_stat describes a file: type, size, mode and times", function()
    local path = tmpfile("hello")
    local st = assert(uv.fs_stat(path))
    assert.equal("file", st.type)
    assert.equal(5, st.size)
    assert.equal("number", type(st.mode))
    assert.equal("number", type(st.mtime.sec))
    assert.equal("number", type(st.mtime.nsec))
    assert.is_true(math.abs(st.mtime.sec - os.time()) < 60)
    assert.equal("directory", uv.fs_stat("/").type)
    os.remove(path)
  end)

  it("fs_stat of a missing path returns the ENOENT triple with the path", function()
    assert.same({ nil, "ENOENT: no such file or directory: /nonexistent-luvrs", "ENOENT" },
      { uv.fs_stat("/nonexistent-luvrs") })
  end)

  it("fs_stat with a callback reports on a later tick", function()
    local path = tmpfile("abc")
    local got
    uv.fs_stat(path, H.expect(function(err, st) got = { err = err, size = st and st.size } end))
    assert.is_nil(got)
    H.run()
    assert.same({ size = 3 }, got)
    uv.fs_stat("/nonexistent-luvrs", H.expect(function(err, st)
      assert.matches("^ENOENT", err)
      assert.is_nil(st)
    end))
    H.run()
    os.remove(path)
  end)

  it("fs_lstat sees a symlink, fs_stat and fs_realpath follow it", function()
    local target = tmpfile("x")
    local link = target .. ".link"
    os.execute(("ln -s %q %q"):format(target, link))
    assert.equal("link", uv.fs_lstat(link).type)
    assert.equal("file", uv.fs_stat(link).type)
    assert.equal(uv.fs_realpath(target), uv.fs_realpath(link))
    assert.equal("/usr/lib", uv.fs_realpath("/usr/bin/../lib"))
    os.remove(link)
    os.remove(target)
  end)

  it("fs_chmod sets the mode and fs_unlink removes the file", function()
    local path = tmpfile("x")
    assert.is_truthy(uv.fs_chmod(path, tonumber("640", 8)))
    assert.equal(tonumber("640", 8), uv.fs_stat(path).mode & tonumber("777", 8))
    assert.is_truthy(uv.fs_unlink(path))
    assert.is_nil(uv.fs_stat(path))
    assert.matches("^ENOENT", select(2, uv.fs_unlink(path)))
  end)

  it("bad arguments raise errors naming the function", function()
    local ok, err = pcall(uv.fs_stat, {})
    assert.is_false(ok)
    assert.matches("fs_stat", err, 1, true)
    ok, err = pcall(uv.fs_chmod, "/tmp", "rw")
    assert.is_false(ok)
    assert.matches("fs_chmod", err, 1, true)
  end)
end)
