-- HTML pages of the notes app.
local M = {}

local esc = require("lasgi.middleware.errors").escape_html
M.escape = esc

local function page(title, body)
  return ([[<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<header><a href="/">Notes</a> <span id="live" class="live">offline</span></header>
<main>
%s
</main>
<script src="/static/app.js"></script>
</body>
</html>
]]):format(esc(title), body)
end

---The home page: the form and the list.
---@param notes table
---@param err? string
---@param form? table values to put back into the form after an error
function M.index(notes, err, form)
  form = form or {}
  local items = {}
  for _, n in ipairs(notes) do
    items[#items + 1] = ('<li data-id="%d"><a href="/notes/%d">%s</a></li>'):format(n.id, n.id, esc(n.title))
  end
  local list = #items > 0 and table.concat(items, "\n") or '<li class="empty">No notes yet.</li>'
  local body = ([[
<h1>Notes</h1>
%s
<form method="post" action="/notes" class="new-note">
  <label>Title <input name="title" maxlength="200" required value="%s"></label>
  <label>Text <textarea name="body" rows="4">%s</textarea></label>
  <button type="submit">Add note</button>
</form>
<ul id="notes">
%s
</ul>
]]):format(err and ('<p class="error">' .. esc(err) .. "</p>") or "", esc(form.title or ""),
    esc(form.body or ""), list)
  return page("Notes", body)
end

---One note.
function M.note(n)
  local body = ([[
<article>
<h1>%s</h1>
<pre>%s</pre>
<p class="meta">Note %d, created %s UTC</p>
<form method="post" action="/notes/%d/delete"><button type="submit">Delete</button></form>
</article>
]]):format(esc(n.title), esc(n.body), n.id, os.date("!%Y-%m-%d %H:%M", n.created), n.id)
  return page(n.title, body)
end

---The 404 page.
function M.not_found(path)
  return page("Not found", ("<h1>Not found</h1><p>Nothing at <code>%s</code>.</p>"):format(esc(path)))
end

return M
