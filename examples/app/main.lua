-- A notes service built with lasgi: HTML pages, a form, a JSON API, static assets and a live-update
-- WebSocket. Serve it with:  luvicorn examples.app.main:app
local lasgi = require "lasgi"
local json = require "lasgi.json"
local loop = require "lasgi.loop"
local store_mod = require "examples.app.store"
local views = require "examples.app.views"

local Route, Mount, WebSocketRoute = lasgi.Route, lasgi.Mount, lasgi.WebSocketRoute

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local M = {}

-- Live updates ----------------------------------------------------------------------------------

-- Every open WebSocket subscribes to the store. A change made by a request is pushed from that request's
-- coroutine straight into each socket's send(): LASGI servers park whichever coroutine calls send when the
-- peer is slow, so one slow reader only delays the request that made the change.
local function live(store)
  return function(ws)
    ws:accept()
    -- A socket that went away raises WebSocketDisconnect in send_json: ignore it, its handler unsubscribes.
    local unsubscribe = store:subscribe(function(event) pcall(ws.send_json, ws, event) end)
    ws:send_json({ event = "hello", count = store:count() })
    local ok, err = pcall(function()
      for text in ws:iter_text() do
        if text == "ping" then ws:send_json({ event = "pong" }) end
      end
    end)
    unsubscribe()
    if not ok then error(err, 0) end
  end
end

-- Static files -------------------------------------------------------------------------------------

-- StaticFiles resolves symlinks with the loop's fs_realpath. This directory holds only our own files, so on
-- a loop without fs_realpath the example serves them without the symlink check (and says so once).
local function static_app(directory)
  local inner
  return function(scope, receive, send)
    if not inner then
      local uv = loop.get()
      local follow = not (uv and uv.fs_realpath)
      if follow then
        io.stderr:write("notes: the loop module has no fs_realpath; static files served without symlink checks\n")
      end
      inner = lasgi.StaticFiles({ directory = directory, follow_symlink = follow })
    end
    return inner(scope, receive, send)
  end
end

-- The app --------------------------------------------------------------------------------------------

---Builds a fresh app with its own store (specs and tests use new ones).
---@param opts? table { store = store, debug = boolean }
---@return table app
function M.create(opts)
  opts = opts or {}
  local store = opts.store or store_mod.new()

  local function note_or_404(req)
    local note = store:get(req.path_params.id)
    if not note then error(lasgi.HTTPException(404, "no note " .. req.path_params.id)) end
    return note
  end

  local function index(_) return lasgi.HTMLResponse(views.index(store:list())) end

  local function create_from_form(req)
    local form = req:form()
    local note, err = store:add(form:get("title"), form:get("body"))
    if not note then
      return lasgi.HTMLResponse(views.index(store:list(), err, { title = form:get("title"), body = form:get("body") }),
        400)
    end
    local resp = lasgi.RedirectResponse(req:url_for("note_page", { id = note.id }), 303)
    resp:set_cookie("last_note", tostring(note.id), { httponly = true, max_age = 86400 })
    return resp
  end

  local function show(req) return lasgi.HTMLResponse(views.note(note_or_404(req))) end

  local function delete_from_form(req)
    store:delete(note_or_404(req).id)
    return lasgi.RedirectResponse("/", 303)
  end

  local function api_list(req)
    local notes = store:list()
    local q = req.query_params:get("q")
    local out = json.array()
    for _, n in ipairs(notes) do
      if not q or n.title:lower():find(q:lower(), 1, true) then out[#out + 1] = n end
    end
    return lasgi.JSONResponse({ notes = out, count = #out })
  end

  local function api_create(req)
    local data = req:json()
    if type(data) ~= "table" then error(lasgi.HTTPException(422, "expected a JSON object")) end
    local note, err = store:add(data.title ~= json.null and data.title or nil,
      data.body ~= json.null and data.body or nil)
    if not note then return lasgi.JSONResponse({ error = err }, 422) end
    return lasgi.JSONResponse(note, 201, { location = req:url_for("api_note", { id = note.id }).path })
  end

  local function api_get(req) return lasgi.JSONResponse(note_or_404(req)) end

  local function api_delete(req)
    store:delete(note_or_404(req).id)
    return lasgi.Response(nil, 204)
  end

  local function json_errors(req, err)
    if req.url.path:sub(1, 5) == "/api/" then
      return lasgi.JSONResponse({ error = err.detail }, err.status, err.headers)
    end
    if err.status == 404 then return lasgi.HTMLResponse(views.not_found(req.url.path), 404) end
    return lasgi.PlainTextResponse(err.detail, err.status, err.headers)
  end

  local app = lasgi.App{
    debug = opts.debug,
    max_body_size = 64 * 1024,
    routes = {
      Route("/", index, { name = "index" }),
      Route("/notes", create_from_form, { methods = { "POST" } }),
      Route("/notes/{id:int}", show, { name = "note_page" }),
      Route("/notes/{id:int}/delete", delete_from_form, { methods = { "POST" } }),
      Route("/api/notes", api_list, { methods = { "GET" } }),
      Route("/api/notes", api_create, { methods = { "POST" } }),
      Route("/api/notes/{id:int}", api_get, { name = "api_note" }),
      Route("/api/notes/{id:int}", api_delete, { methods = { "DELETE" } }),
      Route("/healthz", function() return lasgi.PlainTextResponse("ok") end),
      WebSocketRoute("/ws", live(store)),
      Mount("/static", static_app(here .. "/static"), { name = "static" }),
    },
    middleware = {
      { lasgi.middleware.GZip, { minimum_size = 500 } },
    },
    exception_handlers = { [lasgi.exceptions.HTTPException] = json_errors },
    lifespan = function(_, state, yield)
      state.started = os.time()
      yield()
    end,
  }
  app.store = store
  return app
end

M.app = M.create()

return M
