#!/usr/bin/env bash
# `make bench`: luvrs against the real luv on the same workloads, in one run. Server and load
# generator are pinned to different cores. Prints a Markdown table (also kept in bench/results.md).
set -eu
cd "$(dirname "$0")/.."
export LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' LUA_CPATH='./build/?.so;;'
DURATION=${BENCH_SECONDS:-5}
TICK=$(getconf CLK_TCK)
out=bench/results.md
: >"$out"
row() { echo "$*" | tee -a "$out"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# tree_ticks PID: CPU ticks of PID and its live children (a supervisor and its workers).
tree_ticks() {
  local total=0 f
  total=$(cpu_ticks "$1")
  for f in /proc/[0-9]*/stat; do
    awk -v p="$1" '{ sub(/^.*\) /, ""); if ($2 == p) print $12 + $13 }' "$f" 2>/dev/null
  done | { while read -r t; do total=$((total + t)); done; echo "$total"; }
}

# wait_http PORT: until the server answers, 10 s at most.
wait_http() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "bench: server on port $1 did not come up" >&2
  return 1
}

# http_bench NAME PORT CMD...: starts CMD on core 0, wrk on core 1; prints req/s and server CPU µs/req.
# SERVER_CORES and WRK_CORES change the pinning.
http_bench() {
  local name=$1 port=$2
  shift 2
  taskset -c "${SERVER_CORES:-0}" "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_http "$port"
  local t0 r
  t0=$(tree_ticks "$pid")
  r=$(taskset -c "${WRK_CORES:-1}" wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/" | awk '/^Requests\/sec/ {print $2} /requests in/ {print $1}')
  local t1 reqs rps
  t1=$(tree_ticks "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  reqs=$(echo "$r" | head -1)
  rps=$(echo "$r" | tail -1)
  local us
  us=$(awk -v t="$((t1 - t0))" -v hz="$TICK" -v n="$reqs" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
  echo "$name|$rps|$us"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

row "### luvrs vs luv (issue 2 workloads)"
row ""
row "| workload | luvrs | luv | luvrs / luv |"
row "|---|---:|---:|---:|"
for conns in 1 64; do
  a=$(taskset -c 0 lua5.4 bench/echo.lua luvrs "$conns" 3)
  b=$(taskset -c 0 lua5.4 bench/echo.lua luv "$conns" 3)
  row "| TCP echo ping-pong, $conns connection(s), round trips/s | $a | $b | $(ratio "$a" "$b") |"
done
a=$(taskset -c 0 lua5.4 bench/timers.lua luvrs 2)
b=$(taskset -c 0 lua5.4 bench/timers.lua luv 2)
row "| timer start+stop pairs/s (1,000 pending) | $a | $b | $(ratio "$a" "$b") |"
IFS='|' read -r _ a_rps a_us <<<"$(http_bench raw-luvrs 18081 lua5.4 bench/hello_raw.lua luvrs 18081)"
IFS='|' read -r _ b_rps b_us <<<"$(http_bench raw-luv 18082 lua5.4 bench/hello_raw.lua luv 18082)"
row "| minimal Lua HTTP responder, wrk -t1 -c64 -d${DURATION}s, req/s | $a_rps | $b_rps | $(ratio "$a_rps" "$b_rps") |"
row "| same, server CPU µs per request (lower is better) | $a_us | $b_us | $(ratio "$a_us" "$b_us") |"

row ""
row "### One call into the loop module, ns (lower is better)"
row ""
row "| call | luvrs | luv |"
row "|---|---:|---:|"
paste -d'|' <(taskset -c 0 lua5.4 bench/calls.lua luvrs) <(taskset -c 0 lua5.4 bench/calls.lua luv) |
  while IFS='|' read -r name a _ b; do row "| \`$name\` | $a | $b |"; done

row ""
row "### Request-head parsing, µs per head (lower is better)"
row ""
row "| head | Lua parser | native parser |"
row "|---|---:|---:|"
taskset -c 0 lua5.4 bench/parser.lua | while IFS='|' read -r name l n; do row "| $name | $l | $n |"; done

if [ -f lua/luvicorn/cli.lua ] && [ -f examples/hello.lua ]; then
  row ""
  row "### Luvicorn hello world (issue 4), wrk -t1 -c64 -d${DURATION}s"
  row ""
  row "| server | req/s | server CPU µs/request |"
  row "|---|---:|---:|"
  port=18090
  for cfg in "luvrs native" "luvrs lua" "luv lua"; do
    set -- $cfg
    port=$((port + 1))
    IFS='|' read -r _ rps us <<<"$(http_bench "l-$1-$2" "$port" lua5.4 bin/luvicorn examples/hello.lua \
      --port "$port" --loop "$1" --http "$2" --no-access-log --log-level warning)"
    row "| Luvicorn --loop $1 --http $2 | $rps | $us |"
  done
fi

if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
  row ""
  row "### Luvicorn hello world, user-space instructions per request (callgrind, 10,000 keep-alive requests)"
  row ""
  row "| server | instructions/request | luv / this |"
  row "|---|---:|---:|"
  luv_ir=$(bash bench/instructions.sh luv lua)
  for cfg in "luvrs native" "luvrs lua" "luv lua"; do
    set -- $cfg
    if [ "$1" = luv ]; then ir=$luv_ir; else ir=$(bash bench/instructions.sh "$1" "$2"); fi
    row "| Luvicorn --loop $1 --http $2 | $ir | $(ratio "$luv_ir" "$ir") |"
  done
fi

if [ -f lua/luvicorn/supervisor.lua ]; then
  row ""
  row "### Luvicorn --workers (issue 8), wrk -t1 -c64 -d${DURATION}s, nothing pinned (2 cores for all)"
  row ""
  row "| server | req/s | server CPU µs/request (all processes) |"
  row "|---|---:|---:|"
  for n in 1 2; do
    port=$((18100 + n))
    IFS='|' read -r _ rps us <<<"$(SERVER_CORES=0,1 WRK_CORES=0,1 http_bench "w-$n" "$port" lua5.4 bin/luvicorn \
      examples/hello.lua --port "$port" --workers "$n" --no-access-log --log-level warning)"
    row "| Luvicorn --loop luvrs --workers $n | $rps | $us |"
  done
fi

# ws_bench LOOP PORT: Luvicorn WebSocket echo, 64 connections, 64-byte text messages; prints
# "messages/s|server CPU µs per message". The Lua client runs on the other core.
ws_bench() {
  taskset -c 0 lua5.4 bin/luvicorn bench/ws_echo_app.lua --port "$2" --loop "$1" --no-access-log \
    --lifespan off --log-level warning >/dev/null 2>&1 &
  local pid=$! t0 t1 r
  wait_http "$2" || true
  t0=$(cpu_ticks "$pid")
  r=$(taskset -c 1 lua5.4 bench/ws_echo.lua luv "$2" 64 "$DURATION")
  t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v n="${r%%	*}" -v rate="${r##*	}" -v t="$((t1 - t0))" -v hz="$TICK" \
    'BEGIN { printf "%s|%.2f\n", rate, t * 1e6 / hz / n }'
}

if [ -f lua/luvicorn/protocols/websocket.lua ]; then
  row ""
  row "### Luvicorn WebSocket echo (issue 5), 64 connections, 64-byte messages, ${DURATION}s"
  row ""
  row "| server | messages/s | server CPU µs/message |"
  row "|---|---:|---:|"
  for loop in luvrs luv; do
    IFS='|' read -r rate us <<<"$(ws_bench "$loop" $((18110 + ${#loop})))"
    row "| Luvicorn --loop $loop | $rate | $us |"
  done
fi
