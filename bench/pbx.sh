#!/bin/sh
# pbx.sh — figures for examples/pbx.lua on this machine: start-up time,
# call setup through the PBX, voicemail durability latency (hangup -> MWI)
# and memory. Bounded (CALLS, MESSAGES). No peer has this mix of roles in
# one process; the proxy and registrar paths are compared with Kamailio in
# bench/server.sh.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
RT=${RT:-lua5.4}
bin="$root/build/$RT/bin/luasip"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out="$data/pbx.out"
start=$(date +%s.%N)
"$bin" "$root/examples/pbx.lua" --listen "127.0.0.1:$port" --data "$data/d" >"$out" 2>"$data/pbx.err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
i=0
until grep -q "listening on" "$out" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 500 ] && { echo "pbx did not start" >&2; cat "$data/pbx.err" >&2; exit 1; }
  sleep 0.01
done
ready=$(date +%s.%N)
echo "pbx ($RT): listening $(echo "($ready - $start) * 1000" | bc -l | cut -d. -f1) ms after start"
"$bin" "$root/bench/pbx_load.lua" "$port" "$pid"
kill -TERM $pid
wait $pid || true
