-- Server errors: an error raised by the app before its response started becomes a 500 page (with the
-- traceback when debug is on). The error is raised again afterwards so that the server logs it.
local responses = require "lasgi.responses"
local request_mod = require "lasgi.request"
local datastructures = require "lasgi.datastructures"
local exceptions = require "lasgi.exceptions"

local M = {}

---Escapes text for HTML.
---@param s string
---@return string
function M.escape_html(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                          ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function debug_response(scope, err)
  local accept = datastructures.header(scope.headers, "accept") or ""
  local text = tostring(err)
  if accept:find("text/html", 1, true) then
    local html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>500 Internal Server Error</title>"
      .. "<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;overflow:auto}"
      .. "</style></head><body><h1>500 Internal Server Error</h1><h2>"
      .. M.escape_html(text:match("^[^\n]*")) .. "</h2><pre>" .. M.escape_html(text) .. "</pre></body></html>"
    return responses.html(html, 500)
  end
  return responses.text(text, 500)
end

---Wraps `app`. opts: debug (traceback page), handler (function(request, err) -> response for the 500),
---reraise (default true: raise the error again after answering).
---@param app function|table
---@param opts? table
---@return function
function M.new(app, opts)
  opts = opts or {}
  return function(scope, receive, send)
    if scope.type ~= "http" then return app(scope, receive, send) end
    local started = false
    local function tracked(ev)
      if ev.type == "http.response.start" then started = true end
      return send(ev)
    end
    local ok, err = xpcall(app, exceptions.traceback, scope, receive, tracked)
    if ok then return end
    if not started then
      local resp
      if opts.debug then
        resp = debug_response(scope, err)
      elseif opts.handler then
        resp = opts.handler(request_mod.new(scope, receive, send), err)
      else
        resp = responses.text("Internal Server Error", 500)
      end
      resp(scope, receive, send)
    end
    if opts.reraise ~= false then error(err, 0) end
  end
end

return setmetatable(M, { __call = function(_, app, opts) return M.new(app, opts) end })
