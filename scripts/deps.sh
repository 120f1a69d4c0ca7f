#!/usr/bin/env bash
# Installs what `make run` / `make test` need and is missing. As root it uses apt-get (and pip for
# the Python test clients); otherwise it says plainly what to install and fails.
set -eu
want="${1:-test}"   # run | test | bench

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_lua() { lua5.4 -e "require '$1'" >/dev/null 2>&1 || missing+=("$2"); }
need_file() { [ -e "$1" ] || missing+=("$2"); }

need_cmd lua5.4 lua5.4
need_file /usr/include/lua5.4/lua.h liblua5.4-dev
need_cmd pkg-config pkg-config
need_cmd cc gcc
need_cmd curl curl
if command -v lua5.4 >/dev/null 2>&1; then need_lua cjson lua-cjson; need_lua luv lua-luv; fi
if [ "$want" != run ]; then
  need_cmd luarocks luarocks
  need_cmd busted lua-busted
  need_cmd luacheck lua-check
  if command -v lua5.4 >/dev/null 2>&1; then need_lua busted.runner lua-busted; fi
  need_cmd python3 python3
  need_cmd wrk wrk
  need_cmd nginx nginx-light
  need_cmd chromium chromium
  need_cmd chromedriver chromium-driver
fi
# the allocator spec (a state closing under memcheck) and the instruction counts of `make bench`
if [ "$want" != run ]; then need_cmd valgrind valgrind; fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    echo "deps: missing: ${pkgs[*]}" >&2
    echo "deps: install them with: sudo apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo (Rust) is missing: install it from https://rustup.rs and run again" >&2
  exit 1
fi

if [ "$want" != run ]; then
  if ! python3 -c 'import websockets' >/dev/null 2>&1; then
    echo "deps: installing Python package websockets"
    python3 -m pip install -q websockets >/dev/null 2>&1 ||
      python3 -m pip install -q --break-system-packages websockets >/dev/null ||
      { echo "deps: install the Python package 'websockets' (pip install websockets)" >&2; exit 1; }
  fi
fi
exit 0
