#!/usr/bin/env bash
# Installs the rock into a temporary tree (no root needed) and loads it from there, away from the
# source tree, so a missing file in the rockspec shows up here and not on a user's machine.
set -eu
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
# --deps-mode none: lua-cjson comes from the system (Debian lua-cjson); no rocks server is needed.
luarocks --lua-version 5.4 make --deps-mode none --tree "$tree" luvrs-scm-1.rockspec >"$tree/make.log" 2>&1 ||
  { cat "$tree/make.log"; exit 1; }
eval "$(luarocks --lua-version 5.4 --tree "$tree" path)"
cd "$tree"
lua5.4 - luvrs.co luvrs.co.http luvicorn lasgi <<'LUA'
local uv = require "luvrs"
assert(package.searchpath("luvrs", package.cpath):find(os.getenv("PWD"), 1, true), "luvrs not from the tree")
local t = uv.new_timer()
local fired = false
t:start(1, 0, function() fired = true; t:close() end)
uv.run()
assert(fired, "timer did not fire")
for _, m in ipairs(arg) do
  assert(package.searchpath(m, package.path):find(os.getenv("PWD"), 1, true), m .. " not from the tree")
  require(m)
end
print("rock: luvrs " .. uv.luvrs_version .. " and its Lua modules load from the installed tree")
LUA
if [ -x "$tree/bin/luvicorn" ]; then "$tree/bin/luvicorn" --version; fi
