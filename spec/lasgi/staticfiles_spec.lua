local lasgi = require "lasgi"
local loop = require "lasgi.loop"
local staticfiles = require "lasgi.staticfiles"
local fixtures = require "fixtures"

-- The loop's fs_realpath when it has one; else (test only) the realpath command.
local function resolver()
  local uv = loop.get()
  if uv and uv.fs_realpath then return nil end
  return function(p)
    local h = io.popen("realpath -e -- '" .. p:gsub("'", "'\\''") .. "' 2>/dev/null")
    local out = h:read("l")
    h:close()
    return out
  end
end

describe("lasgi.staticfiles", function()
  local root, client, html_client
  setup(function()
    root = os.tmpname()
    os.remove(root)
    assert(os.execute(("mkdir -p %s/public/sub %s/public/docs"):format(root, root)))
    fixtures.write(root .. "/secret.txt", "top secret")
    fixtures.write(root .. "/public/hello.txt", "hello")
    fixtures.write(root .. "/public/style.css", "body{}")
    fixtures.write(root .. "/public/sub/deep.js", "x=1")
    fixtures.write(root .. "/public/docs/index.html", "<p>docs</p>")
    fixtures.write(root .. "/public/404.html", "<p>missing</p>")
    assert(os.execute(("ln -s %s/secret.txt %s/public/escape.txt"):format(root, root)))
    assert(os.execute(("ln -s %s %s/public/updir"):format(root, root)))
    assert(os.execute(("ln -s %s/public/hello.txt %s/public/alias.txt"):format(root, root)))
    local rp = resolver()
    local files = staticfiles.new({ directory = root .. "/public", realpath = rp })
    local app = lasgi.Router{ lasgi.Mount("/static", files) }
    client = lasgi.TestClient(app, { follow_redirects = false })
    local html = lasgi.Router{ lasgi.Mount("", staticfiles.new({ directory = root .. "/public", html = true,
      realpath = rp })) }
    html_client = lasgi.TestClient(html, { follow_redirects = false })
  end)
  teardown(function() fixtures.rm_tree(root) end)

  it("serves files with their media type", function()
    local r = client:get("/static/hello.txt")
    assert.equal(200, r.status)
    assert.equal("hello", r.text)
    assert.equal("text/plain; charset=utf-8", r.headers:get("content-type"))
    assert.equal("text/css; charset=utf-8", client:get("/static/style.css").headers:get("content-type"))
    assert.equal("x=1", client:get("/static/sub/deep.js").text)
    assert.equal("", client:head("/static/hello.txt").body)
    assert.equal(206, client:get("/static/hello.txt", { headers = { range = "bytes=0-1" } }).status)
  end)

  it("answers 404 for missing files and directories, 405 for other methods", function()
    assert.equal(404, client:get("/static/nope.txt").status)
    assert.equal(404, client:get("/static/sub").status)
    local r = client:post("/static/hello.txt")
    assert.equal(405, r.status)
    assert.equal("GET, HEAD", r.headers:get("allow"))
  end)

  it("refuses traversal: .., %2e%2e, encoded slashes and backslashes", function()
    for _, url in ipairs({
      "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E/secret.txt",
      "/static/sub/../../secret.txt", "/static/..%2fsecret.txt", "/static/..%2Fsecret.txt",
      "/static/..%5csecret.txt", "/static/..\\secret.txt", "/static/./hello.txt", "/static/hello.txt%00",
    }) do
      local r = client:get(url)
      assert.equal(404, r.status, url)
      assert.is_nil(r.text:find("secret", 1, true), url)
    end
  end)

  it("refuses symlinks that resolve outside the directory, follows those inside", function()
    assert.equal(404, client:get("/static/escape.txt").status)
    assert.equal(404, client:get("/static/updir/secret.txt").status)
    assert.equal("hello", client:get("/static/alias.txt").text)
  end)

  it("with the real luv loaded, resolves symlinks with fs_realpath (child process)", function()
    -- A child process, so that this busted process never holds two loop modules.
    local script = table.concat({
      "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path",
      "local ok = pcall(require, 'luv') if not ok then print('no luv') return end",
      "local lasgi = require 'lasgi'",
      "local c = lasgi.TestClient(lasgi.StaticFiles({ directory = arg[1] }))",
      "print(c:get('/escape.txt').status, c:get('/updir/secret.txt').status, c:get('/alias.txt').text)",
    }, "\n")
    local out = fixtures.run_lua(script, root .. "/public")
    if out:match("^no luv") then return pending("luv is not installed") end
    assert.equal("404\t404\thello\n", out)
  end)

  it("follows every symlink when follow_symlink is set", function()
    local c = lasgi.TestClient(staticfiles.new({ directory = root .. "/public", follow_symlink = true }))
    assert.equal("top secret", c:get("/escape.txt").text)
  end)

  it("in html mode serves index.html, redirects to the slash, and uses 404.html", function()
    assert.equal("<p>docs</p>", html_client:get("/docs/").text)
    local r = html_client:get("/docs")
    assert.equal(307, r.status)
    assert.equal("http://testserver/docs/", r.headers:get("location"))
    r = html_client:get("/nothing")
    assert.equal(404, r.status)
    assert.equal("<p>missing</p>", r.text)
  end)

  it("checks its arguments and the directory", function()
    assert.has_error(function() staticfiles.new({}) end, "StaticFiles: argument 'opts.directory' must be a string")
    assert.has_error(function() staticfiles.new({ directory = "/nonexistent/dir" }) end,
      "StaticFiles: directory does not exist: /nonexistent/dir")
  end)

  it("without any way to resolve symlinks, refuses to serve unless told to follow them", function()
    local uv = loop.get()
    if uv and uv.fs_realpath then return pending("the loop module has fs_realpath") end
    local c = lasgi.TestClient(staticfiles.new({ directory = root .. "/public" }))
    assert.has_error(function() c:get("/hello.txt") end,
      "StaticFiles: the loop module has no fs_realpath to resolve symlinks; pass follow_symlink = true "
        .. "(or a realpath function) to serve without that check")
  end)

  it("splits paths into safe segments", function()
    assert.same({ "a", "b" }, staticfiles._safe_segments({ path = "/a//b/", raw_path = "/a//b/" }))
    assert.is_nil(staticfiles._safe_segments({ path = "/a/../b", raw_path = "/a/../b" }))
  end)
end)
