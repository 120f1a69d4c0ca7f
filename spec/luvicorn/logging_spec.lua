local logging = require("luvicorn.logging")
local config = require("luvicorn.config")
local fixtures = require("fixtures")

-- A stream that records each write call separately (one entry = one write(2) on a real file).
local function sink()
  local s = { text = "", writes = {} }
  function s.write(_, ...)
    local piece = table.concat({ ... })
    s.writes[#s.writes + 1] = piece
    s.text = s.text .. piece
  end
  function s.flush() end
  return s
end

local tmpdir, write, rmdir = fixtures.tmpdir, fixtures.write, fixtures.rm_tree

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- A request as the HTTP protocol passes it to Logger:access.
local SCOPE = {
  type = "http", method = "GET", path = "/p", raw_path = "/p", query_string = "q=1",
  client = { "10.1.2.3", 4567 },
  headers = {
    { "host", "example.org" }, { "referer", "http://example.org/start" }, { "user-agent", "curl/8.0" },
    { "x-request-id", "abc-123" }, { "x-multi", "a" }, { "x-multi", "b" },
  },
}

local function fmt(format_string, overrides)
  local f = assert(logging.compile_access_format(format_string))
  local a = overrides or {}
  local scope = a.scope
  if scope == nil then scope = SCOPE elseif scope == false then scope = nil end
  return f(a.client or "10.1.2.3:4567", a.method or "GET", a.target or "/p?q=1", a.version or "1.1",
    a.status or 200, a.reason or "OK", a.ms or 1.5, scope, a.bytes == nil and 13 or a.bytes or nil)
end

describe("luvicorn.logging", function()
  it("writes Uvicorn-shaped lines at or above the level", function()
    local err = sink()
    local log = logging.new({ level = "warning", err = err })
    log:info("hidden")
    log:warning("shown")
    log:error("also")
    assert.are.equal("WARNING:  shown\nERROR:    also\n", err.text)
    assert.is_true(log:enabled("error"))
    assert.is_false(log:enabled("debug"))
  end)

  it("writes each error line in one write, and cuts a long message only between lines", function()
    local err = sink()
    local log = logging.new({ err = err })
    log:error("one line")
    assert.are.same({ "ERROR:    one line\n" }, err.writes)
    err.writes = {}
    local lines = {}
    for i = 1, 200 do lines[i] = ("frame %03d "):format(i) .. ("x"):rep(40) end
    log:error(table.concat(lines, "\n"))
    assert.is_true(#err.writes > 1)
    for _, w in ipairs(err.writes) do
      assert.is_true(#w <= logging.PIPE_BUF, "a write of " .. #w .. " bytes")
      assert.are.equal("\n", w:sub(-1))
    end
    assert.are.equal("ERROR:    " .. table.concat(lines, "\n") .. "\n", table.concat(err.writes))
  end)

  it("formats the default access line exactly as before", function()
    assert.are.equal('127.0.0.1:5 - "GET /a?b HTTP/1.1" 200 OK 1.50ms',
      logging.access_line({ "127.0.0.1", 5 }, "GET", "/a?b", "1.1", 200, "OK", 1.5))
    assert.are.equal('- - "GET / HTTP/1.0" 404 Not Found 0.00ms',
      logging.access_line(nil, "GET", "/", "1.0", 404, "Not Found", 0))
    local out = sink()
    local log = logging.new({ out = out, access_log = true })
    log:access({ "::1", 80 }, "POST", "/", "1.1", 201, "Created", 0.25, SCOPE, 7)
    assert.are.equal("", out.text) -- buffered until the server's flush
    log:flush()
    assert.are.equal('INFO:     ::1:80 - "POST / HTTP/1.1" 201 Created 0.25ms\n', out.text)
  end)

  it("writes buffered access lines in one write per flush, batches of whole lines within PIPE_BUF", function()
    local out = sink()
    local log = logging.new({ out = out })
    for i = 1, 3 do log:access("1.2.3.4:5", "GET", "/" .. i, "1.1", 200, "OK", 0) end
    log:flush()
    assert.are.equal(1, #out.writes)
    assert.are.equal(3, select(2, out.writes[1]:gsub("\n", "")))
    out.writes = {}
    log:flush()
    assert.are.equal(0, #out.writes) -- nothing buffered: no write
    for i = 1, 500 do log:access("1.2.3.4:5", "GET", "/" .. ("p"):rep(i % 50) .. i, "1.1", 200, "OK", 0) end
    log:flush()
    assert.is_true(#out.writes > 5)
    local n = 0
    for _, w in ipairs(out.writes) do
      assert.is_true(#w <= logging.PIPE_BUF, "a write of " .. #w .. " bytes")
      assert.are.equal("\n", w:sub(-1))
      for line in w:gmatch("[^\n]+") do
        n = n + 1
        assert.matches('^INFO:     1%.2%.3%.4:5 %- "GET /p* ?' .. n .. ' HTTP/1%.1" 200 OK 0%.00ms$', line)
      end
    end
    assert.are.equal(500, n)
  end)

  it("turns the access log off with access_log = false or a level above info", function()
    assert.is_false(logging.new({ access_log = false }).access_enabled)
    assert.is_false(logging.new({ level = "warning" }).access_enabled)
    assert.is_true(logging.new({}).access_enabled)
    local out = sink()
    local log = logging.new({ out = out, access_log = false, access_log_format = "$status" })
    log:access("-", "GET", "/", "1.1", 200, "OK", 0)
    log:flush()
    assert.are.equal("", out.text)
  end)

  it("rejects unknown levels naming the argument", function()
    assert.has_error(function() logging.new({ level = "loud" }) end)
    local ok, err = pcall(logging.new, { level = "loud" })
    assert.is_false(ok)
    assert.matches("level", err)
  end)

  describe("access-log formats", function()
    it("gives every field", function()
      local cases = {
        client = "10.1.2.3:4567", client_addr = "10.1.2.3", request_line = "GET /p?q=1 HTTP/1.1",
        method = "GET", target = "/p?q=1", path = "/p", query = "q=1", protocol = "HTTP/1.1", status = "200",
        reason = "OK", bytes = "13", duration_ms = "1.50", duration_s = "0.001500",
        referer = "http://example.org/start", user_agent = "curl/8.0",
      }
      for name, want in pairs(cases) do
        assert.are.equal(want, fmt("$" .. name), name)
      end
      assert.are.equal("abc-123", fmt("$http_x_request_id"))
      assert.are.equal("example.org", fmt("$http_host"))
      assert.are.equal("a, b", fmt("$http_x_multi")) -- repeated fields joined, as HTTP combines them
      assert.are.equal("abc-123", fmt("$http_X_Request_Id")) -- header names are case-insensitive
      assert.are.equal("0.123457", fmt("$duration_s", { ms = 123.4567 }))
      assert.are.equal("123.46", fmt("$duration_ms", { ms = 123.4567 }))
      assert.are.equal("HTTP/1.0", fmt("$protocol", { version = "1.0" }))
      -- every field the module knows is covered above
      local known = {}
      for name in pairs(cases) do known[#known + 1] = name end
      for _, name in ipairs({ "time_local", "time_iso8601", "pid" }) do known[#known + 1] = name end
      table.sort(known)
      assert.are.same(known, logging.FIELDS)
    end)

    it("gives the times in Common Log Format and ISO 8601, and the process id", function()
      local before = os.time()
      local tl = fmt("$time_local")
      local after = os.time()
      assert.matches("^%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d [+-]%d%d%d%d$", tl)
      assert.is_true(tl == os.date("%d/%b/%Y:%H:%M:%S %z", before) or tl == os.date("%d/%b/%Y:%H:%M:%S %z", after))
      local iso = fmt("$time_iso8601")
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[+-]%d%d:%d%d$", iso)
      local pid = require("luvrs").os_getpid()
      assert.are.equal(tostring(math.tointeger(pid)), fmt("$pid"))
    end)

    it("ends a name with braces, and writes $$ as a dollar sign", function()
      assert.are.equal("200x13", fmt("${status}x${bytes}"))
      assert.are.equal("[200] 13B", fmt("[$status] ${bytes}B"))
      assert.are.equal("cost $1.50", fmt("cost $$$duration_ms"))
      assert.are.equal("abc-123!", fmt("${http_x_request_id}!"))
      assert.are.equal("no fields at all", fmt("no fields at all"))
      assert.are.equal("", fmt(""))
      assert.are.equal('q="\n"', fmt('q="\n"'))
    end)

    it("prints - for a missing value", function()
      assert.are.equal("- - - - -", fmt("$referer $http_x_none $bytes $query $client_addr",
        { scope = false, bytes = false, target = "/p", client = "-" }))
      assert.are.equal("-", fmt("$query", { target = "/p?" }))
      assert.are.equal("-", fmt("$reason", { status = 299, reason = "" }))
      -- a Unix socket: no client in the scope
      local unix = { headers = {}, client = nil }
      assert.are.equal("- -", fmt("$client $client_addr", { client = "-", scope = unix }))
      assert.are.equal("10.0.0.9", fmt("$client_addr", { client = "10.0.0.9:80", scope = false }))
      assert.are.equal("::1", fmt("$client_addr", { client = "::1:80", scope = false }))
    end)

    it("escapes quotes, backslashes, control and non-ASCII bytes in values from the request", function()
      local scope = { headers = { { "user-agent", 'a "b" \\ \1 é' } }, client = { "1.1.1.1", 1 } }
      assert.are.equal('a \\x22b\\x22 \\x5C \\x01 \\xC3\\xA9', fmt("$user_agent", { scope = scope }))
      assert.are.equal('/a\\x22b', fmt("$path", { target = '/a"b' }))
    end)

    it("compiles once into a function; the default logger keeps the default line's method", function()
      local f = logging.compile_access_format("$status $bytes")
      assert.is_function(f)
      assert.are.equal("404 0", f("-", "GET", "/", "1.1", 404, "Not Found", 0, nil, 0))
      local plain = logging.new({})
      assert.is_nil(rawget(plain, "access")) -- the metatable's Logger.access: the benchmarked path
      local custom = logging.new({ access_log_format = "$status" })
      assert.is_function(rawget(custom, "access"))
      local out = sink()
      local log = logging.new({ out = out, access_log_format = '$client "$request_line" $status $bytes' })
      log:access({ "127.0.0.1", 9 }, "GET", "/x", "1.1", 200, "OK", 0.5, SCOPE, 42)
      log:flush()
      assert.are.equal('127.0.0.1:9 "GET /x HTTP/1.1" 200 42\n', out.text)
    end)

    it("rejects an unknown field, a lone $ and an unclosed brace, naming them", function()
      local cases = {
        { "$status $nope", "unknown field %$nope" }, { "$statusx", "unknown field %$statusx" },
        { "$http_", "unknown field %$http_" }, { "cost $ 5", "without a field name at position 6" },
        { "${status", "unclosed" }, { "${sta-tus}", "invalid field name" },
      }
      for _, c in ipairs(cases) do
        local f, err = logging.compile_access_format(c[1])
        assert.is_nil(f, c[1])
        assert.matches(c[2], err)
      end
      local ok, perr = pcall(logging.new, { access_log_format = "$nope" })
      assert.is_false(ok)
      assert.matches("access_log_format.*%$nope", perr)
    end)

    it("handles a format with many fields", function()
      local parts = {}
      for i = 1, 300 do parts[i] = "$status" end
      assert.are.equal(("200 "):rep(299) .. "200", fmt(table.concat(parts, " ")))
    end)
  end)

  describe("log-config files", function()
    local dir
    before_each(function() dir = tmpdir() end)
    after_each(function() rmdir(dir) end)

    local function parse(...)
      return config.parse({ ... }, function() return nil end)
    end

    it("reads a Lua file returning a table", function()
      local path = write(dir .. "/log.lua", [[
        return { level = "debug", error_log = "stderr", access_log = "stdout", access_log_format = "$status" }]])
      local t = assert(logging.read_config(path))
      assert.are.same({ level = "debug", error_log = "stderr", access_log = "stdout", access_log_format = "$status" },
        t)
      t = assert(logging.read_config(write(dir .. "/off.lua", "return { access_log = false }")))
      assert.is_false(t.access_log)
    end)

    it("reads a JSON file through lua-cjson", function()
      local path = write(dir .. "/log.json", '{"level": "warning", "access_log": false, "error_log": "stdout"}')
      assert.are.same({ level = "warning", access_log = false, error_log = "stdout" },
        assert(logging.read_config(path)))
      local _, err = logging.read_config(write(dir .. "/bad.json", '{"level": '))
      assert.matches("bad%.json: invalid JSON", err)
    end)

    it("says so when lua-cjson is not available for a JSON file", function()
      local saved, saved_preload = package.loaded.cjson, package.preload.cjson
      package.loaded.cjson = nil
      package.preload.cjson = function() error("module 'cjson' not found") end
      local t, err = logging.read_config(write(dir .. "/log.json", "{}"))
      package.loaded.cjson, package.preload.cjson = saved, saved_preload
      assert.is_nil(t)
      assert.matches("log%.json: a JSON file needs lua%-cjson", err)
    end)

    it("rejects unknown keys, wrong types and broken files, naming the file and the key", function()
      local cases = {
        { "return { colour = 'red' }", "unknown key \"colour\"" },
        { "return { level = 'loud' }", "key 'level' must be one of" },
        { "return { level = 3 }", "key 'level' must be one of" },
        { "return { access_log = 1 }", "key 'access_log' must be" },
        { "return { error_log = false }", "key 'error_log' must be" },
        { "return { error_log = '' }", "key 'error_log' must be" },
        { "return { access_log_format = '$nope' }", "key 'access_log_format' unknown field %$nope" },
        { "return { [1] = 'x' }", "unknown key 1" },
        { "return 'level'", "must return a table, got string" },
        { "return {", "cannot load" },
        { "error('boom')", "error while running it:.*boom" },
      }
      for i, c in ipairs(cases) do
        local path = write(dir .. "/c" .. i .. ".lua", c[1])
        local t, err = logging.read_config(path)
        assert.is_nil(t, c[1])
        assert.matches("%-%-log%-config " .. path:gsub("%p", "%%%0") .. ": ", err)
        assert.matches(c[2], err)
        local log, ferr = logging.from_config(parse("--log-config", path))
        assert.is_nil(log)
        assert.are.equal(err, ferr)
      end
      local _, err = logging.read_config(dir .. "/missing.lua")
      assert.matches("missing%.lua: cannot load", err)
    end)

    it("writes to the files it names, in append mode", function()
      local err_path, acc_path = dir .. "/error.log", dir .. "/access.log"
      write(acc_path, "earlier\n")
      local path = write(dir .. "/log.lua",
        ('return { error_log = %q, access_log = %q, access_log_format = "$status" }'):format(err_path, acc_path))
      local log = assert(logging.from_config(parse("--log-config", path)))
      log:warning("careful")
      log:access("-", "GET", "/", "1.1", 204, "No Content", 0)
      log:flush()
      assert.are.equal("WARNING:  careful\n", read(err_path))
      assert.are.equal("earlier\n204\n", read(acc_path))
      log:close()
    end)

    it("lets options given on the command line win over the file, even at their default values", function()
      local file = write(dir .. "/log.lua",
        ('return { level = "warning", access_log = %q, access_log_format = "F $status" }'):format(dir .. "/a.log"))
      -- nothing given: the file
      local log = assert(logging.from_config(parse("--log-config", file)))
      assert.is_false(log:enabled("info"))
      assert.is_false(log.access_enabled) -- warning silences the access log
      -- --log-level given: it wins, and the file's format and path apply
      log = assert(logging.from_config(parse("--log-config", file, "--log-level", "debug")))
      assert.is_true(log:enabled("debug"))
      log:access("-", "GET", "/", "1.1", 200, "OK", 0)
      log:flush()
      assert.are.equal("F 200\n", read(dir .. "/a.log"))
      log:close()
      -- --access-log-format given: it wins
      log = assert(logging.from_config(parse("--log-config", file, "--log-level", "info",
        "--access-log-format", "C $status")))
      assert.is_true(log:enabled("info")) -- given, though it is the default: it wins over the file's warning
      assert.is_false(log:enabled("debug"))
      log = assert(logging.from_config(parse("--log-config", file, "--log-level", "trace",
        "--access-log-format", "C $status")))
      log:access("-", "GET", "/", "1.1", 200, "OK", 0)
      log:flush()
      assert.are.equal("F 200\nC 200\n", read(dir .. "/a.log"))
      log:close()
      -- --no-access-log given: it wins
      log = assert(logging.from_config(parse("--log-config", file, "--log-level", "debug", "--no-access-log")))
      assert.is_false(log.access_enabled)
      -- the file turns the access log off; --access-log given turns it back on
      local off = write(dir .. "/off.lua", "return { access_log = false }")
      assert.is_false(assert(logging.from_config(parse("--log-config", off))).access_enabled)
      assert.is_true(assert(logging.from_config(parse("--log-config", off, "--access-log"))).access_enabled)
    end)

    it("checks --access-log-format without a file, and builds the default logger from no options", function()
      local log, err = logging.from_config(parse("--access-log-format", "$status $wat"))
      assert.is_nil(log)
      assert.matches("^%-%-access%-log%-format: unknown field %$wat", err)
      log = assert(logging.from_config(config.defaults()))
      assert.is_nil(rawget(log, "access"))
      assert.are.equal(io.stdout, log.out)
      assert.are.equal(io.stderr, log.err)
      assert.is_true(log.access_enabled)
      local _, oerr = logging.from_config(parse("--log-config",
        write(dir .. "/x.lua", ("return { access_log = %q }"):format(dir .. "/no/such/dir/a.log"))))
      assert.matches("cannot open the access log .*no/such/dir/a%.log", oerr)
    end)

    it("reopens its files: after a rename, later lines go to a new file at the path", function()
      local err_path, acc_path = dir .. "/error.log", dir .. "/access.log"
      local log = assert(logging.from_config({ log_config = write(dir .. "/log.lua",
        ("return { error_log = %q, access_log = %q }"):format(err_path, acc_path)) }))
      log:access("1.1.1.1:1", "GET", "/before", "1.1", 200, "OK", 0)
      log:error("before")
      assert(os.rename(acc_path, acc_path .. ".1"))
      assert(os.rename(err_path, err_path .. ".1"))
      -- a line buffered before the rename still belongs to the old file
      log:access("1.1.1.1:1", "GET", "/buffered", "1.1", 200, "OK", 0)
      assert.is_true(log:reopen())
      log:access("1.1.1.1:1", "GET", "/after", "1.1", 200, "OK", 0)
      log:error("after")
      log:flush()
      local old, new = read(acc_path .. ".1"), read(acc_path)
      assert.matches("/before", old)
      assert.matches("/buffered", old)
      assert.is_nil(old:find("/after", 1, true))
      assert.matches('^INFO:     1%.1%.1%.1:1 %- "GET /after HTTP/1%.1" 200 OK 0%.00ms\n$', new)
      assert.are.equal("ERROR:    before\n", read(err_path .. ".1"))
      assert.are.equal("ERROR:    after\n", read(err_path))
      log:close()
    end)

    it("keeps the old file and reports the error when the path cannot be reopened", function()
      local sub = dir .. "/sub"
      assert(os.execute("mkdir '" .. sub .. "'"))
      local acc_path = sub .. "/access.log"
      local err = sink()
      local log = logging.new({ err = err, out = assert(io.open(acc_path, "a")), access_path = acc_path })
      assert(os.rename(sub, dir .. "/moved"))
      local ok, rerr = log:reopen()
      assert.is_nil(ok)
      assert.matches("cannot reopen the access log", rerr)
      assert.matches("ERROR:    cannot reopen the access log", err.text)
      log:access("-", "GET", "/still", "1.1", 200, "OK", 0)
      log:flush()
      assert.matches("/still", read(dir .. "/moved/access.log"))
      log:close()
    end)

    it("leaves stdout and stderr alone on reopen", function()
      local log = logging.new({})
      assert.is_true(log:reopen())
      assert.are.equal(io.stdout, log.out)
      assert.are.equal(io.stderr, log.err)
    end)
  end)
end)
