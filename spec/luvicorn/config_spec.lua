local config = require("luvicorn.config")
local fixtures = require("fixtures")

local function env(t) return function(name) return t[name] end end

describe("luvicorn.config", function()
  it("has Uvicorn's defaults and Luvicorn's limits", function()
    local c = config.parse({ "app:app" }, env({}))
    assert.are.equal("app:app", c.app)
    assert.are.equal("127.0.0.1", c.host)
    assert.are.equal(8000, c.port)
    assert.are.equal(2048, c.backlog)
    assert.are.equal("luvrs", c.loop)
    assert.are.equal("native", c.http)
    assert.are.equal("auto", c.lifespan)
    assert.are.equal(5, c.timeout_keep_alive)
    assert.are.equal(10, c.timeout_request_head)
    assert.are.equal(16384, c.max_request_head)
    assert.are.equal(100, c.max_headers)
    assert.is_nil(c.max_body_size)
    assert.is_nil(c.timeout_graceful_shutdown)
    assert.is_true(c.proxy_headers)
    assert.are.same({ "127.0.0.1", "::1" }, c.forwarded_allow_ips)
    assert.are.same({ "127.0.0.1" }, c.hosts)
    assert.are.same({}, c.bind)
    assert.is_nil(c.workers)
    assert.are.equal(30, c.timeout_worker_healthcheck)
    assert.are.equal(0, c.limit_max_requests_jitter)
    assert.is_false(c.reload)
    assert.is_true(c.server_header)
    assert.is_true(c.date_header)
    assert.is_true(c.access_log)
    assert.are.equal("info", c.log_level)
    assert.are.same({}, c.header)
  end)

  it("collects repeated --host and --bind, and splits list variables on commas", function()
    local c = config.parse({ "--host", "127.0.0.1", "--host=::1", "--bind", "unix:/tmp/a.sock", "--bind",
      "[::1]:9000", "app" }, env({ LUVICORN_RELOAD_DIR = "lua, examples" }))
    assert.are.same({ "127.0.0.1", "::1" }, c.hosts)
    assert.are.same({ "unix:/tmp/a.sock", "[::1]:9000" }, c.bind)
    -- what was given, from the command line or the environment; defaults are not
    assert.is_true(c.given.host and c.given.bind and c.given.reload_dir)
    assert.is_nil(c.given.port)
    assert.are.same({ "lua", "examples" }, c.reload_dir)
    assert.has_error(function() config.parse({ "--bind=", "app" }, env({})) end,
      { usage = "--bind: an empty value" })
  end)

  it("reads WEB_CONCURRENCY and FORWARDED_ALLOW_IPS below the LUVICORN_ names", function()
    local c = config.parse({ "app" }, env({ WEB_CONCURRENCY = "3", FORWARDED_ALLOW_IPS = "10.0.0.0/8,unix:" }))
    assert.are.equal(3, c.workers)
    assert.are.same({ "10.0.0.0/8", "unix:" }, c.forwarded_allow_ips)
    c = config.parse({ "--workers", "2", "app" }, env({ WEB_CONCURRENCY = "3", LUVICORN_FORWARDED_ALLOW_IPS = "*",
      FORWARDED_ALLOW_IPS = "10.0.0.1" }))
    assert.are.equal(2, c.workers)
    assert.are.same({ "*" }, c.forwarded_allow_ips)
    assert.has_error(function() config.parse({ "app" }, env({ WEB_CONCURRENCY = "many" })) end,
      { usage = "WEB_CONCURRENCY: 'many' is not a valid non-negative integer" })
  end)

  it("parses --name value, --name=value, --no-flag and repeated --header", function()
    local c = config.parse({ "--port", "0", "--host=::1", "--no-access-log", "--header", "X-A: 1",
      "--header=x-b:2", "--loop", "luv", "app" }, env({}))
    assert.are.equal(0, c.port)
    assert.are.equal("::1", c.host)
    assert.is_false(c.access_log)
    assert.are.same({ { "x-a", "1" }, { "x-b", "2" } }, c.header)
    assert.are.equal("luv", c.loop)
    assert.are.equal("app", c.app)
  end)

  it("reads LUVICORN_* variables, and the command line wins over them", function()
    local c = config.parse({ "--port", "9001" }, env({ LUVICORN_PORT = "9000", LUVICORN_HOST = "0.0.0.0",
      LUVICORN_ACCESS_LOG = "false", LUVICORN_APP = "m:app", LUVICORN_FORWARDED_ALLOW_IPS = "10.0.0.1, *" }))
    assert.are.equal(9001, c.port)
    assert.are.equal("0.0.0.0", c.host)
    assert.is_false(c.access_log)
    assert.are.equal("m:app", c.app)
    assert.are.same({ "10.0.0.1", "*" }, c.forwarded_allow_ips)
  end)

  it("reads an env file, the real environment winning", function()
    local path = fixtures.tmpfile(
      "# comment\nexport LUVICORN_PORT=7000\nLUVICORN_HOST = '0.0.0.0'\nOTHER=\"a b\" \nLUVICORN_LOOP=luv # x\n")
    local c = config.parse({ "--env-file", path }, env({ LUVICORN_HOST = "127.0.0.2" }))
    os.remove(path)
    assert.are.equal(7000, c.port)
    assert.are.equal("127.0.0.2", c.host)
    assert.are.equal("luv", c.loop)
    assert.are.equal("a b", c.env_file_vars.OTHER)
  end)

  it("raises usage errors for bad values and unknown options", function()
    local bad = {
      { "--port", "x" }, { "--port", "-1" }, { "--loop", "uvloop" }, { "--nope" }, { "--port" },
      { "--header", "no-colon" }, { "--access-log=yes" }, { "a", "b" }, { "--timeout-keep-alive", "soon" },
    }
    for _, argv in ipairs(bad) do
      local ok, err = pcall(config.parse, argv, env({}))
      assert.is_false(ok, table.concat(argv, " "))
      assert.is_string(err.usage, table.concat(argv, " "))
    end
    local ok, err = pcall(config.parse, {}, env({ LUVICORN_PORT = "many" }))
    assert.is_false(ok)
    assert.matches("LUVICORN_PORT", err.usage)
  end)

  it("normalizes library options and rejects unknown ones", function()
    local c = config.normalize({ port = 0, timeout_keep_alive = "2", loop = "luv" })
    assert.are.equal(0, c.port)
    assert.are.equal(2, c.timeout_keep_alive)
    assert.has_error(function() config.normalize({ prot = 1 }) end)
    assert.has_error(function() config.normalize({ loop = "other" }) end)
    assert.has_error(function() config.normalize("x") end)
  end)

  it("documents every option in --help", function()
    local help = config.help()
    for _, o in ipairs(config.OPTIONS) do assert.matches("%-%-" .. o[1]:gsub("%-", "%%-"), help) end
  end)
end)
