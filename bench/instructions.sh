#!/usr/bin/env bash
# instructions.sh LOOP HTTP [N]: user-space instructions per request of the Luvicorn hello server, counted
# by callgrind over exactly N keep-alive requests (after 200 uncounted ones). Unlike CPU time, the count
# does not move with what else the machine does; the kernel's share is left out.
# Environment: LUA_BIN (interpreter, default lua5.4), APP (default examples/hello.lua), LUVICORN (launcher
# script, default bin/luvicorn), KEEP (a path to keep the callgrind output at).
set -eu
cd "$(dirname "$0")/.."
loop=$1 http=$2 n=${3:-10000}
export LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;'
out=$(mktemp /tmp/luvicorn-callgrind.XXXXXX)
log=$(mktemp /tmp/luvicorn-callgrind-log.XXXXXX)
port=$((20000 + RANDOM % 20000))
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" ${LUA_BIN:-lua5.4} ${LUVICORN:-bin/luvicorn} ${APP:-examples/hello.lua} \
  --port "$port" --loop "$loop" --http "$http" --no-access-log --log-level warning >"$log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$log"; [ -n "${KEEP:-}" ] && cp "$out" "$KEEP"; rm -f "$out"' EXIT
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
python3 bench/keepalive_client.py "$port" 200 8 >/dev/null
callgrind_control -i on "$pid" >/dev/null 2>&1
python3 bench/keepalive_client.py "$port" "$n" 8 >/dev/null
callgrind_control -i off "$pid" >/dev/null 2>&1
kill -TERM "$pid"
wait "$pid" || true
ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo $((ir / n))
