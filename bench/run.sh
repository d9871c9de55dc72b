#!/bin/bash
# bench/run.sh — `make bench`. Every figure is a ratio against a peer run on
# this machine in this run:
#  1. the loop: luasip vs luv/libuv doing the same work (timers; coroutine
#     sleepers), on Lua 5.4 and LuaJIT, median CPU seconds of RUNS runs;
#  2. SIP OPTIONS: SIPp offers RATE/s for DUR s to luasip
#     (bench/options_server.lua) and to Kamailio 5.6 with the reference KEMI
#     Lua routing in ../shared/peers/kamailio; server CPU per request;
#  3. servers (bench/server.sh): SIPp vs examples/registrar.lua and
#     examples/proxy.lua and vs Kamailio + KEMI Lua: highest REGISTER/s (no
#     auth, digest auth; memory and sqlite stores) and calls/s, CPU per
#     operation, peak RSS; and presence (PUBLISH cycles fanned out as
#     NOTIFYs to SIPp watchers) vs Kamailio's presence modules.
#     BENCH_QUICK=1 for short runs; BENCH_SERVER=0 skips
#     it, BENCH_SERVER=only runs only it;
#  4. media (bench/media.sh): G.711 calls between two luasip processes,
#     each side playing a file and recording: calls per core and packets/s
#     against the raw loopback limit; then Opus (bench/opus.sh): live
#     encoding against libopus alone (bench/opusref.c), and calls per core
#     through the encoded-prompt cache (BENCH_MEDIA=0 skips both, =only runs
#     only them).
#  5. the PBX (bench/pbx.sh): examples/pbx.lua's start-up, call setup
#     through it, voicemail hangup -> MWI latency and memory (BENCH_PBX=0
#     skips it).
# Bounded: every load has a fixed count and a timeout; loopback only.
set -u
KPID=""; UPID=""; LPID=""
# Whatever happens, no Kamailio, luasip or SIPp of ours outlives the run.
cleanup() {
  local p
  for p in $KPID $UPID $LPID; do kill "$p" 2>/dev/null; done
  for p in $KPID $UPID $LPID; do wait "$p" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$root/../shared/peers/kamailio}
RUNS=${RUNS:-5}
N=${N:-100000}
RATES=${RATES:-"2000 5000"}
DUR=${DUR:-10}
cd "$root"
sh tools/deps.sh bench || exit 1
if [ "${BENCH_SERVER:-1}" = only ]; then bash "$root/bench/server.sh"; exit $?; fi
if [ "${BENCH_MEDIA:-1}" = only ]; then bash "$root/bench/media.sh"; r=$?; bash "$root/bench/opus.sh" || r=$?; exit $r; fi

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lua_env() { echo "LUA_PATH=$root/lua/?.lua;$root/lua/?/init.lua;; LUA_PATH_5_4=$root/lua/?.lua;$root/lua/?/init.lua;; LUA_CPATH=$root/build/$1/?.so;; LUA_CPATH_5_4=$root/build/$1/?.so;;"; }

echo "== loop: luasip vs luv (CPU seconds, median of $RUNS, N=$N)"
for rt in lua5.4 luajit; do
  for test in timers sleepers; do
    for impl in luasip luv; do
      m=$(for i in $(seq "$RUNS"); do env $(lua_env $rt) $rt bench/loop.lua $impl $test "$N"; done | median)
      eval "r_$impl=$m"
    done
    printf "%-7s %-9s luasip %7.3f s  luv %7.3f s  luasip/luv %.2f\n" "$rt" "$test" "$r_luasip" "$r_luv" \
      "$(echo "$r_luasip / $r_luv" | bc -l)"
  done
done

echo "== SIP OPTIONS: luasip vs Kamailio 5.6 + KEMI Lua (SIPp, ${DUR}s per rate)"
if [ ! -f "$peers/lib.sh" ]; then echo "no peer configuration at $peers; skipped"; exit 0; fi   # (server.sh too)
export PERF_WORK=$(mktemp -d /tmp/luasip-bench.XXXXXX)
# shellcheck source=/dev/null
set +u
. "$peers/lib.sh"
export DUR
cpu_us() { # CPU% at RATE -> microseconds of server CPU per request
  echo "$1 $2" | awk '{printf "%.1f", $1 / 100 * 1e6 / $2}'; }
ok_of() { echo "$1" | cut -f6; }                                          # completed, from a run_load line
cpu_of() { echo "$1" | grep -o "$2CPU%=[0-9]*" | cut -d= -f2; }           # kam|uas CPU% from it
start_luasip() { # script port: start a luasip script, wait for "ready"; pid in LPID
  local out="$W/$(basename "$1").out"
  env $(lua_env lua5.4) lua5.4 "$root/bin/luasip" "$1" "$2" > "$out" 2>&1 &
  LPID=$!
  for i in $(seq 50); do grep -q ready "$out" && break; sleep 0.1; done
}
for RATE in $RATES; do
  export RATE
  start_kam lua 0
  kline=$(TARGET=127.0.0.1:5060 run_load kam_options -sf "$root/bench/options.xml" -p 5091 -cp 5092 -mp 5093)
  stop_kam
  start_luasip "$root/bench/options_server.lua" 5062; KPID=$LPID
  lline=$(TARGET=127.0.0.1:5062 run_load luasip_options -sf "$root/bench/options.xml" -p 5094 -cp 5095 -mp 5096)
  kill -TERM $KPID; wait $KPID 2>/dev/null; KPID=""
  kok=$(ok_of "$kline"); ku=$(cpu_us "$(cpu_of "$kline" kam)" "$RATE")
  lok=$(ok_of "$lline"); lu=$(cpu_us "$(cpu_of "$lline" kam)" "$RATE")
  printf "rate %5d/s  answered: luasip %s/%s  kamailio %s/%s  server CPU/request: luasip %s us  kamailio %s us  luasip/kamailio %.2f\n" \
    "$RATE" "$lok" "$((RATE * DUR))" "$kok" "$((RATE * DUR))" "$lu" "$ku" "$(echo "$lu / $ku" | bc -l)"
done

echo "== UA calls answered: luasip.ua vs SIPp's built-in uas (SIPp uac, ${DUR}s at CALL_RATES)"
for RATE in ${CALL_RATES:-200 500}; do
  export RATE
  sipp -sn uas -i 127.0.0.1 -p 5074 -nostdin -bg > /dev/null 2>&1
  sleep 0.5
  UPID=$(pgrep -f "sipp -sn uas -i 127.0.0.1 -p 5074" | head -1)
  sline=$(TARGET=127.0.0.1:5074 run_load sipp_uas -sn uac -d 100 -p 5097 -cp 5098 -mp 5099)
  kill $UPID 2>/dev/null; UPID=""
  start_luasip "$root/bench/ua_answer.lua" 5072; UPID=$LPID
  lline=$(TARGET=127.0.0.1:5072 run_load luasip_ua -sn uac -d 100 -p 5100 -cp 5101 -mp 5102)
  kill -TERM $UPID; wait $UPID 2>/dev/null; UPID=""
  sok=$(ok_of "$sline"); su=$(cpu_us "$(cpu_of "$sline" uas)" "$RATE")
  lok=$(ok_of "$lline"); lu=$(cpu_us "$(cpu_of "$lline" uas)" "$RATE")
  printf "rate %4d calls/s  completed: luasip %s/%s  sipp %s/%s  answering CPU/call: luasip %s us  sipp uas %s us  luasip/sipp %.2f\n" \
    "$RATE" "$lok" "$((RATE * DUR))" "$sok" "$((RATE * DUR))" "$lu" "$su" "$(echo "$lu / $su" | bc -l)"
done
echo "(raw SIPp lines in $PERF_WORK/results/all.tsv)"
[ "${BENCH_SERVER:-1}" = 0 ] || bash "$root/bench/server.sh"
[ "${BENCH_MEDIA:-1}" = 0 ] || { bash "$root/bench/media.sh"; bash "$root/bench/opus.sh"; }
[ "${BENCH_PBX:-1}" = 0 ] || bash "$root/bench/pbx.sh"
