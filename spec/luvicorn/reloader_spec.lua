-- luvicorn.reloader: globs, and change detection over real temporary directories (scan() is called
-- directly; only the start/stop spec drives the loop).
local H = require "helper"
local uv = H.uv
local reloader = require "luvicorn.reloader"

local fixtures = require "fixtures"

local tmpdir, write, rm_tree = fixtures.tmpdir, fixtures.write, fixtures.rm_tree

local function mkdir(path) assert(uv.fs_mkdir(path, tonumber("755", 8))) end

local function sh(fmt, ...)
  local cmd = fmt:format(...)
  assert(os.execute(cmd), cmd)
end

-- A logger that keeps its warnings.
local function recorder()
  local log = { lines = {} }
  function log.warning(_, msg) log.lines[#log.lines + 1] = msg end
  return log
end

describe("luvicorn.reloader.glob", function()
  local cases = {
    -- glob, relative path, matches?
    { "*.lua", "app.lua", true },
    { "*.lua", "lib/deep/app.lua", true },
    { "*.lua", "app.lua~", false },
    { "*.lua", "app.luac", false },
    { "*.lua", "applua", false },
    { "?.lua", "a.lua", true },
    { "?.lua", "ab.lua", false },
    { "[abc].lua", "b.lua", true },
    { "[abc].lua", "d.lua", false },
    { "[a-c]x", "bx", true },
    { "[a-c]x", "dx", false },
    { "[!a-c]x", "dx", true },
    { "[!a-c]x", "ax", false },
    { "[^a-c]x", "dx", true },
    { "x[]]", "x]", true },
    { "x[a-]", "x-", true },
    { ".*", ".git", true },
    { ".*", "a.git", false },
    { "*~", "app.lua~", true },
    { "*", "anything.at.all", true },
    { "a%b(c).lua", "a%b(c).lua", true },
    { "a%b(c).lua", "a%b(cc).lua", false },
    { "\\*.lua", "*.lua", true },
    { "\\*.lua", "x.lua", false },
    -- with "/": the whole path relative to the watched directory
    { "templates/*.html", "templates/index.html", true },
    { "templates/*.html", "x/templates/index.html", false },
    { "templates/*.html", "templates/sub/index.html", false },
    { "./templates/*.html", "templates/index.html", true },
    { "**/templates/*.html", "templates/index.html", true },
    { "**/templates/*.html", "x/y/templates/index.html", true },
    { "**/templates/*.html", "xtemplates/index.html", false },
    { "**/*.lua", "app.lua", true },
    { "**/*.lua", "a/b/c/app.lua", true },
    { "**/*.lua", "a/b/c/app.txt", false },
    { "a/**/b.lua", "a/b.lua", true },
    { "a/**/b.lua", "a/x/b.lua", true },
    { "a/**/b.lua", "a/x/y/b.lua", true },
    { "a/**/b.lua", "ab/b.lua", false },
    { "a/**/b.lua", "a/xb.lua", false },
    { "a/**/b.lua", "x/a/b.lua", false },
    { "a/**", "a/b", true },
    { "a/**", "a/b/c.lua", true },
    { "a/**", "b/a/c", false },
    { "a/*/c", "a/b/c", true },
    { "a/*/c", "a/b/d/c", false },
    { "a/?/c", "a/b/c", true },
    { "a/[!x]/c", "a/b/c", true },
  }
  for _, case in ipairs(cases) do
    local glob, path, want = case[1], case[2], case[3]
    it(("%q %s %q"):format(glob, want and "matches" or "does not match", path), function()
      assert.equal(want, reloader.glob(glob):match(path))
    end)
  end

  it("never lets a wildcard or a negated set cross a /", function()
    assert.is_false(reloader.glob("a*b"):match("x/a/b"))
    assert.is_false(reloader.glob("a/*b"):match("a/x/b"))
    assert.is_false(reloader.glob("a?b/c"):match("a/b/c"))
    assert.is_false(reloader.glob("a[!x]b/c"):match("a/b/c"))
  end)

  it("compiles once to one anchored Lua pattern", function()
    assert.equal("^[^/]*%.lua$", reloader.glob("*.lua").pattern)
    assert.is_false(reloader.glob("*.lua").on_path)
    assert.is_true(reloader.glob("a/*.lua").on_path)
    assert.equal("^/a/[^/]*%.lua$", reloader.glob("a/*.lua").pattern)
  end)

  it("a trailing / makes the pattern match directories only", function()
    local g = reloader.glob("build/")
    assert.is_true(g.dir_only)
    assert.is_true(g:match("x/build", true))
    assert.is_false(g:match("x/build", false))
  end)

  it("knows literal patterns from wildcard ones", function()
    assert.is_true(reloader.glob(".env").literal)
    assert.is_true(reloader.glob("conf/app.toml").literal)
    assert.is_false(reloader.glob("*.env").literal)
    assert.is_false(reloader.glob("a[bc]").literal)
  end)

  it("rejects malformed globs with a clear error", function()
    assert.has_error(function() reloader.glob("[abc") end,
      'luvicorn.reloader.glob: argument \'pattern\': glob "[abc" has an unclosed [')
    assert.has_error(function() reloader.glob("/abs/*.lua") end,
      'luvicorn.reloader.glob: argument \'pattern\': glob "/abs/*.lua" must be relative to the watched directory')
    assert.has_error(function() reloader.glob("") end,
      'luvicorn.reloader.glob: argument \'pattern\' must be a non-empty string, got ""')
  end)
end)

describe("luvicorn.reloader", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function()
    rm_tree(dir)
    H.after_each()
  end)

  local function new(opts)
    opts = opts or {}
    opts.dirs = opts.dirs or { dir }
    return reloader.new(uv, opts)
  end

  it("the first scan records the baseline; later scans report created, modified and deleted files", function()
    write(dir .. "/app.lua", "return 1")
    write(dir .. "/keep.lua", "x")
    local r = new()
    assert.same({}, r:scan())
    assert.same({}, r:scan())
    write(dir .. "/new.lua", "")
    assert.same({ dir .. "/new.lua" }, r:scan())
    assert.same({}, r:scan())
    write(dir .. "/app.lua", "return 22")
    assert.same({ dir .. "/app.lua" }, r:scan())
    os.remove(dir .. "/new.lua")
    assert.same({ dir .. "/new.lua" }, r:scan())
    assert.same({}, r:scan())
  end)

  it("a new mtime with the same size is a change, and so is a file replaced by rename", function()
    write(dir .. "/app.lua", "abc")
    local r = new()
    r:scan()
    sh("touch -d '2001-02-03 04:05:06' %q", dir .. "/app.lua")
    assert.equal(3, uv.fs_stat(dir .. "/app.lua").size)
    assert.same({ dir .. "/app.lua" }, r:scan())
    -- An editor's atomic save: same size, and the old mtime carried over.
    write(dir .. "/tmp.txt", "xyz")
    sh("touch -d '2001-02-03 04:05:06' %q", dir .. "/tmp.txt")
    assert(uv.fs_rename(dir .. "/tmp.txt", dir .. "/app.lua"))
    assert.same({ dir .. "/app.lua" }, r:scan())
  end)

  it("watches *.lua at any depth and skips hidden files, hidden directories and other files", function()
    mkdir(dir .. "/lib")
    mkdir(dir .. "/lib/deep")
    mkdir(dir .. "/.git")
    local r = new()
    r:scan()
    for _, name in ipairs({ "a.lua", "lib/b.lua", "lib/deep/c.lua", ".hidden.lua", ".git/d.lua", "notes.txt",
      "a.lua~", "lib/e.lua.swp" }) do
      write(dir .. "/" .. name, "x")
    end
    assert.same({ dir .. "/a.lua", dir .. "/lib/b.lua", dir .. "/lib/deep/c.lua" }, r:scan())
  end)

  it("the default excludes apply to what an include lets in", function()
    mkdir(dir .. "/.cache")
    local r = new({ include = { "*" } })
    r:scan()
    for _, name in ipairs({ "a.txt", "b.lua", "c~", "d.swp", ".env", ".cache/e.txt" }) do
      write(dir .. "/" .. name, "x")
    end
    assert.same({ dir .. "/a.txt", dir .. "/b.lua" }, r:scan())
  end)

  it("include and exclude add to the defaults; naming a default on the other side drops it", function()
    local r = new({ include = { "*.html" }, exclude = { "*.lua" } })
    r:scan()
    write(dir .. "/a.html", "")
    write(dir .. "/b.lua", "")
    assert.same({ dir .. "/a.html" }, r:scan())
    r = new({ include = { ".*" } })
    r:scan()
    write(dir .. "/.env", "")
    write(dir .. "/.x.swp", "") -- "*.swp" still applies
    write(dir .. "/c.lua", "")
    assert.same({ dir .. "/.env", dir .. "/c.lua" }, r:scan())
  end)

  it("a literal include wins over the excludes that match the file", function()
    local r = new({ include = { ".env" } })
    r:scan()
    write(dir .. "/.env", "A=1")
    write(dir .. "/.other", "")
    assert.same({ dir .. "/.env" }, r:scan())
  end)

  it("patterns with / match the path relative to the watched directory", function()
    mkdir(dir .. "/templates")
    mkdir(dir .. "/x")
    mkdir(dir .. "/x/templates")
    local r = new({ include = { "templates/*.html" } })
    local r2 = new({ include = { "**/templates/*.html" } })
    r:scan()
    r2:scan()
    write(dir .. "/templates/a.html", "")
    write(dir .. "/x/templates/b.html", "")
    write(dir .. "/c.html", "")
    assert.same({ dir .. "/templates/a.html" }, r:scan())
    assert.same({ dir .. "/templates/a.html", dir .. "/x/templates/b.html" }, r2:scan())
  end)

  it("an excluded directory is not descended", function()
    for _, d in ipairs({ "node_modules", "node_modules/pkg", "src", "src/build", "build" }) do
      mkdir(dir .. "/" .. d)
    end
    for _, f in ipairs({ "node_modules/pkg/x.lua", "src/a.lua", "src/build/b.lua", "build/c.lua" }) do
      write(dir .. "/" .. f, "")
    end
    local listed = {}
    local spy = setmetatable({
      fs_scandir = function(path, ...)
        listed[#listed + 1] = path:sub(#dir + 1)
        return uv.fs_scandir(path, ...)
      end,
    }, { __index = uv })
    local r = reloader.new(spy, { dirs = { dir }, exclude = { "node_modules", "src/build/" } })
    r:scan()
    assert.same({ "", "/build", "/src" }, listed)
    write(dir .. "/src/build/b.lua", "changed")
    write(dir .. "/build/c.lua", "changed")
    assert.same({ dir .. "/build/c.lua" }, r:scan())
  end)

  it("follows symbolic links, and a link loop neither hangs nor reports a file twice", function()
    local outside = tmpdir()
    write(outside .. "/ext.lua", "")
    mkdir(dir .. "/sub")
    write(dir .. "/sub/a.lua", "")
    write(dir .. "/target.lua", "")
    sh("ln -s %q %q", dir, dir .. "/sub/loop")          -- back to the root
    sh("ln -s .. %q", dir .. "/sub/up")                 -- relative loop
    sh("ln -s %q %q", outside, dir .. "/ext")           -- a directory elsewhere
    sh("ln -s target.lua %q", dir .. "/alias.lua")      -- a file
    sh("ln -s nowhere.lua %q", dir .. "/dangling.lua")  -- a dangling link
    local r = new()
    r:scan()
    local files = {}
    for path in pairs(r.snapshot) do files[#files + 1] = path:sub(#dir + 2) end
    table.sort(files)
    assert.same({ "alias.lua", "ext/ext.lua", "sub/a.lua", "target.lua" }, files)
    write(outside .. "/ext.lua", "changed")
    assert.same({ dir .. "/ext/ext.lua" }, r:scan())
    rm_tree(outside)
  end)

  it("bounds the walk and warns once", function()
    for i = 1, 9 do write(("%s/f%d.lua"):format(dir, i), "") end
    local log = recorder()
    local r = new({ max_entries = 5, log = log })
    r:scan()
    assert.equal(5, #(function()
      local t = {}
      for p in pairs(r.snapshot) do t[#t + 1] = p end
      return t
    end)())
    write(dir .. "/f1.lua", "changed")
    write(dir .. "/f9.lua", "changed") -- past the bound
    assert.same({ dir .. "/f1.lua" }, r:scan())
    assert.equal(1, #log.lines)
    assert.matches("More than 5 files and directories to watch", log.lines[1], 1, true)
  end)

  it("a tree exactly at the bound does not warn", function()
    for i = 1, 5 do write(("%s/f%d.lua"):format(dir, i), "") end
    local log = recorder()
    new({ max_entries = 5, log = log }):scan()
    assert.same({}, log.lines)
  end)

  it("watches several directories; a missing one warns once and is picked up when it appears", function()
    local other = dir .. "/later"
    mkdir(dir .. "/one")
    local log = recorder()
    local r = new({ dirs = { dir .. "/one/", other }, log = log })
    r:scan()
    r:scan()
    assert.same({ "Cannot watch " .. other .. " for changes: no such directory" }, log.lines)
    mkdir(other)
    write(other .. "/x.lua", "")
    write(dir .. "/one/y.lua", "")
    assert.same({ dir .. "/later/x.lua", dir .. "/one/y.lua" }, r:scan())
  end)

  it("reports paths relative to the current directory when watching .", function()
    -- The working directory cannot change under busted: a spy maps "." to the temporary directory.
    local function real(path)
      if path == "." then return dir end
      return path:sub(1, 1) == "/" and path or dir .. "/" .. path
    end
    local spy = setmetatable({
      fs_scandir = function(path, ...) return uv.fs_scandir(real(path), ...) end,
      fs_stat = function(path, ...) return uv.fs_stat(real(path), ...) end,
    }, { __index = uv })
    mkdir(dir .. "/lib")
    local r = reloader.new(spy, {})
    r:scan()
    write(dir .. "/app.lua", "")
    write(dir .. "/lib/m.lua", "")
    assert.same({ "app.lua", "lib/m.lua" }, r:scan())
  end)

  it("start scans every delay seconds and calls on_change with the changed paths; stop closes the timer",
    function()
      local r = new({ delay = 0.01 })
      local got
      r:start(function(paths) got = paths end)
      write(dir .. "/app.lua", "")
      H.run_until(function() return got end, 5000)
      assert.same({ dir .. "/app.lua" }, got)
      assert.has_error(function() r:start(function() end) end, "luvicorn.Reloader:start: already started")
      r:stop()
      r:stop()
      H.run(1000)
      got = nil
      r:start(function(paths) got = paths end)
      os.remove(dir .. "/app.lua")
      H.run_until(function() return got end, 5000)
      assert.same({ dir .. "/app.lua" }, got)
      r:stop()
      H.run(1000)
    end)

  it("bad arguments raise errors naming luvicorn.reloader.new and the argument", function()
    local function err_of(...)
      local ok, e = pcall(reloader.new, ...)
      assert.is_false(ok)
      return e
    end
    assert.matches("luvicorn.reloader.new: argument 'uv'", err_of(nil), 1, true)
    assert.matches("luvicorn.reloader.new: argument 'uv' lacks fs_scandir", err_of({}), 1, true)
    assert.matches("luvicorn.reloader.new: argument 'opts' must be a table", err_of(uv, "x"), 1, true)
    assert.matches("luvicorn.reloader.new: unknown option \"dir\"", err_of(uv, { dir = "." }), 1, true)
    assert.matches("argument 'opts.dirs' must be a list of strings, got string", err_of(uv, { dirs = "." }), 1, true)
    assert.matches("argument 'opts.dirs' must name at least one directory", err_of(uv, { dirs = {} }), 1, true)
    assert.matches("argument 'opts.include' must be a list of non-empty strings, item 2 is number",
      err_of(uv, { include = { "*.x", 5 } }), 1, true)
    assert.matches("luvicorn.reloader.new: argument 'opts.exclude': glob \"[ab\" has an unclosed [",
      err_of(uv, { exclude = { "[ab" } }), 1, true)
    assert.matches("argument 'opts.delay' must be a positive number of seconds, got 0", err_of(uv, { delay = 0 }), 1,
      true)
    assert.matches("argument 'opts.delay'", err_of(uv, { delay = "1" }), 1, true)
    assert.matches("argument 'opts.delay'", err_of(uv, { delay = 0 / 0 }), 1, true)
    assert.matches("argument 'opts.log' must be a logger", err_of(uv, { log = 5 }), 1, true)
    assert.matches("argument 'opts.log' must be a logger with a warning method", err_of(uv, { log = {} }), 1, true)
    assert.matches("argument 'opts.max_entries' must be a positive integer", err_of(uv, { max_entries = 1.5 }), 1,
      true)
    local r = new()
    assert.has_error(function() r:start("x") end,
      "luvicorn.Reloader:start: argument 'on_change' must be a function, got string")
  end)
end)
