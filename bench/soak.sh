#!/bin/bash
# bench/soak.sh — `make soak`: SOAK_SECONDS (default 120) of OPTIONS from
# SIPp at SOAK_RATE/s (default 3000) against bench/options_server.lua, with
# timers and tasks churning in the server. Samples the server's RSS, fds
# and live luasip objects every 10 s; fails if they keep growing after the
# first sample (warm-up) or any request goes unanswered. Loopback only,
# bounded by count and time.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
SOAK_SECONDS=${SOAK_SECONDS:-120}
SOAK_RATE=${SOAK_RATE:-3000}
work=$(mktemp -d /tmp/luasip-soak.XXXXXX)
port=5064
lenv="LUA_PATH=$root/lua/?.lua;$root/lua/?/init.lua;; LUA_PATH_5_4=$root/lua/?.lua;$root/lua/?/init.lua;; LUA_CPATH_5_4=$root/build/lua5.4/?.so;;"

env $lenv SOAK_STATS="$work/stats" lua5.4 bin/luasip bench/options_server.lua $port > "$work/server.out" 2>&1 &
spid=$!
for i in $(seq 50); do grep -q ready "$work/server.out" && break; sleep 0.1; done
grep -q ready "$work/server.out" || { echo "soak: server did not start"; cat "$work/server.out"; exit 1; }

total=$((SOAK_RATE * SOAK_SECONDS))
sipp 127.0.0.1:$port -sf bench/options.xml -i 127.0.0.1 -p 5097 -cp 5098 -mp 5099 -r "$SOAK_RATE" \
  -m "$total" -nostdin -t u1 -recv_timeout 5000 -timeout $((SOAK_SECONDS + 60)) \
  -trace_stat -stf "$work/sipp.csv" -fd 5 > /dev/null 2> "$work/sipp.err" &
gpid=$!

echo "== soak: ${SOAK_SECONDS}s of OPTIONS at ${SOAK_RATE}/s (pid $spid)"
printf "%6s %9s %5s %s\n" "t(s)" "RSS(KiB)" "fds" "luasip.stats()"
first_rss=""; last_rss=0; t=0
while kill -0 $gpid 2>/dev/null && [ $t -le $((SOAK_SECONDS + 30)) ]; do
  sleep 10; t=$((t + 10))
  rss=$(awk '/VmRSS/ {print $2}' /proc/$spid/status)
  fds=$(ls /proc/$spid/fd | wc -l)
  stats=$(tail -n 1 "$work/stats" 2>/dev/null)
  printf "%6d %9d %5d %s\n" $t "$rss" "$fds" "$stats"
  [ -z "$first_rss" ] && first_rss=$rss
  last_rss=$rss
done
wait $gpid
kill -TERM $spid; wait $spid
col() { # the value of column $1 (by header name) on the last line of the stats
  awk -F';' -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
    NF > 1 { last = $c } END { print last }' "$work/sipp.csv"; }
ok=$(col "SuccessfulCall(C)")
failed=$(col "FailedCall(C)")
growth=$((last_rss - first_rss))
echo "answered: $ok of $total; failed: $failed; RSS after warm-up grew by $growth KiB"
status=0
[ "$ok" = "$total" ] || { echo "soak: not every request was answered"; status=1; }
[ "$growth" -lt 4096 ] || { echo "soak: RSS kept growing"; status=1; }
rm -rf "$work"
exit $status
