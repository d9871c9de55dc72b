#!/bin/bash
# bench/server.sh — the server part of `make bench` (run.sh calls it; it also
# runs alone: `bash bench/server.sh`).
#
# SIPp against luasip's examples/registrar.lua and examples/proxy.lua and
# against Kamailio 5.6 with the equivalent KEMI Lua routing from
# ../shared/peers/kamailio, one server at a time on 127.0.0.1:5060, on this
# machine in this run. Rows:
#   reg      REGISTER/s, no auth          luasip memory store | Kamailio usrloc (memory)
#   reg-sql  REGISTER/s, no auth          luasip sqlite store | (the Kamailio reg row)
#   auth     REGISTER/s, MD5 digest auth  luasip memory store | Kamailio usrloc
#   call     calls/s (INVITE/ACK/BYE) through the proxy, no auth
#   pres     presence cycles/s: PRES_P presentities with PRES_K watchers
#            each (SIPp, bench/pres_watch.xml, subscribed before the load);
#            one cycle (bench/pres_publish.xml) publishes "open", modifies it
#            to "closed" (SIP-If-Match) and removes it: 3 PUBLISHes, 3 state
#            changes NOTIFYed to the presentity's watchers.
#            luasip examples/presence_server.lua --no-auth --policy allow |
#            Kamailio presence + presence_xml in memory (bench/kamailio-presence.*)
# For each: the highest rate with 0 failed calls, retransmissions <= 0.1% of
# calls and >= 97% of the offered rate achieved, over CONF_DUR seconds (a
# bounded search: doubling ramp, bisection, confirm); server CPU us per
# operation over the confirm run; peak RSS (VmHWM) of the confirm run.
#
# Every step starts a fresh server (and for calls a fresh SIPp UAS, which
# registers first), so one overloaded step does not leak into the next and
# VmHWM belongs to the step's rate. A step already past its failure or
# retransmission budget is stopped early. The CPUs and loopback are shared
# with other jobs: before each step the script waits (bounded) for a quiet
# machine, a failed ramp step is run once more, a step that could not start
# (port 5060 held by someone else) is not a result, and the step log shows the
# CPU used by others (otherCPU). A failed confirm retries 15% lower, at most
# CONF_TRIES times. Every wait and loop is bounded.
#
# Environment:
#   BENCH_QUICK=1   5 s confirm, 3 s ramp steps, one bisection (a smoke run)
#   BENCH_LUA       lua5.4 (default) or luajit: the runtime luasip runs on
#   BENCH_PERF=1    after each luasip confirm, one more run at that rate under
#                   `perf record -g`; top symbols go to the log and results
#   ROWS            rows to run (default "reg reg-sql auth call pres")
#   PRES_P, PRES_K  the pres row's presentities (100) and watchers of each (10)
#   IMPLS           servers to run (default "luasip kamailio")
#   START_reg, START_auth, START_call, START_pres   ramp start rates (1000, 500, 200, 100)
#   KAM_SHM         Kamailio shared memory MB (default 256, as lib.sh)
#   KAM_SHM_PRES    the same for the pres row (default 2048: its tm keeps
#                   every NOTIFY transaction 5 s after its answer, ~8 KB
#                   each, and 256 MB runs out at ~100 cycles/s with 500s)
#   PEERS           the Kamailio peer folder
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peers=${PEERS:-$root/../shared/peers/kamailio}
B=$peers
LUA=${BENCH_LUA:-lua5.4}
KAM_SHM=${KAM_SHM:-256}
KAM_SHM_PRES=${KAM_SHM_PRES:-2048}
ROWS=${ROWS:-"reg reg-sql auth call pres"}
PRES_P=${PRES_P:-100}; PRES_K=${PRES_K:-10}
IMPLS=${IMPLS:-"luasip kamailio"}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  RAMP_DUR=3; CONF_DUR=5; NBIS=1; MAXRAMP=6; CONF_TRIES=2
else
  RAMP_DUR=5; CONF_DUR=20; NBIS=3; MAXRAMP=7; CONF_TRIES=5
fi
HZ=$(getconf CLK_TCK)
# SIPp's sockets get 4 MiB buffers like the servers' (its default, 64 KiB,
# holds ~50 responses: a server answering a backlog in a burst then shows
# as "retransmissions" that are SIPp's own drops).
SIPP_BUF="-buff_size 4194304"

if [ ! -f "$peers/route.lua" ] || ! command -v kamailio > /dev/null || ! command -v sipp > /dev/null; then
  echo "== server benchmark: no Kamailio peer at $peers (or no kamailio/sipp); skipped"
  exit 0
fi

W=$(mktemp -d /tmp/luasip-server.XXXXXX)
L=$W/logs; mkdir -p "$L"
LOG=$L/steps.log
SPID=""; UPID=""; CPID=""; PPID_PERF=""

# ---------------------------------------------------------------- cleanup
stop_pid() { # pid: TERM, up to 5 s, then KILL; reaps it
  local p=$1 i
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
KIDS=""   # Kamailio's children, remembered while it runs
cleanup() {
  stop_pid "$PPID_PERF"; PPID_PERF=""
  stop_pid "$CPID"; CPID=""
  stop_pid "$UPID"; UPID=""
  stop_pid "$SPID"; SPID=""
  local k; for k in $KIDS; do kill -KILL "$k" 2>/dev/null; done; KIDS=""
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------- configs and user lists
# From ../shared/peers/kamailio/lib.sh (prepare): the configs with
# @PEERDIR@ replaced, the users as SIPp CSV, and the same users for luasip.
for f in common.inc.cfg kamailio-lua.cfg route.lua; do sed "s#@PEERDIR@#$W#g" "$B/$f" > "$W/$f"; done
# Like with like: Kamailio probes its UDP receive buffer up to maxbuffer
# (256 KiB by default); luasip asks for 4 MiB. Both get 4 MiB here.
sed -i 's#^children=#maxbuffer=4194304\nchildren=#' "$W/common.inc.cfg"
{ echo SEQUENTIAL; for i in $(seq -w 1 10000); do echo "user0$i;secret"; done; } > "$W/users.csv"
{ echo SEQUENTIAL; for i in $(seq -w 1 10000); do echo "user0$i;[authentication username=user0$i password=secret]"; done; } > "$W/users_auth.csv"
for i in $(seq -w 1 10000); do echo "user0$i secret"; done > "$W/users.txt"
printf "SEQUENTIAL\nuas;secret\n" > "$W/uas_user.csv"
# The pres row: presentities for SIPp; Kamailio's twin config, its sqlite
# file holding only the presence tables' versions (all state is in memory).
{ echo SEQUENTIAL; for i in $(seq -w 1 "$PRES_P"); do echo "pres$i"; done; } > "$W/pres.csv"
for f in kamailio-presence.cfg kamailio-presence.lua; do sed "s#@WORK@#$W#g" "$root/bench/$f" > "$W/$f"; done
if command -v sqlite3 > /dev/null; then
  cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/presence-create.sql 2>/dev/null \
    | sqlite3 "$W/kamailio-presence.db" 2>/dev/null
fi

# ----------------------------------------------------------- measurement
ticks_of() { # utime+stime (clock ticks) summed over pids (all threads)
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + ${v:-0}))
  done; echo $t; }
status_kb() { # field pids: sum of a /proc/PID/status field, kB
  local f=$1 s=0 p v; shift
  for p in "$@"; do v=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
pss_kb() { # sum of Pss over pids, kB (current, not peak)
  local s=0 p v
  for p in "$@"; do v=$(awk '$1 == "Pss:" {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null); s=$((s + ${v:-0})); done; echo $s; }
server_pids() { # the server's processes: luasip is one; Kamailio's main + children
  [ -n "$SPID" ] || return 0
  if [ "$IMPL" = kamailio ]; then echo "$SPID" $(ps -o pid= --ppid "$SPID"); else echo "$SPID"; fi; }
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 }' /proc/stat; }   # user+nice+system, all CPUs
# Other engineers' jobs share these CPUs: before a step, wait (at most ~15 s)
# until the machine is quiet (< 25% of one CPU busy over half a second).
# Bounded: 20 tries, ~30 s.
wait_quiet() {
  local i a b
  for i in $(seq 20); do
    a=$(busy_ticks); sleep 0.5; b=$(busy_ticks)
    [ $(( (b - a) * 100 / HZ * 2 )) -lt 25 ] && return 0
    sleep 1
  done; return 0; }
rcvbuf_errors() { awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) n[i] = $i; h = 1 }
  else for (i = 1; i <= NF; i++) if (n[i] == "RcvbufErrors") print $i }' /proc/net/snmp; }
# A SIPp statistics file's last line -> "sent ok failed retrans elapsed_s"
parse_stat() { awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { last = $0 }
  END { if (!last) { print "0 0 0 0 0"; exit } n = split(last, v, ";")
    split(v[c["StartTime"]], a, "\t"); split(v[c["CurrentTime"]], b, "\t")
    printf "%d %d %d %d %.3f\n", v[c["OutgoingCall(C)"]], v[c["SuccessfulCall(C)"]],
      v[c["FailedCall(C)"]], v[c["Retransmissions(C)"]], b[length(b)] - a[length(a)] }' "$1" 2>/dev/null \
  || echo "0 0 0 0 0"; }

# ------------------------------------------------------------------ ports
# Busy for us: bound (UDP or TCP) on 127.0.0.1 or a wildcard address. Other
# jobs bind other loopback addresses (127.0.0.4:5060...), which do not clash.
port_busy() { ss -Hlutn "sport = :$1" 2>/dev/null | awk -v p="$1" '
  $5 == "127.0.0.1:" p || $5 == "0.0.0.0:" p || $5 == "*:" p || $5 == "[::]:" p || $5 == "[::ffff:127.0.0.1]:" p { f = 1 }
  END { exit !f }'; }
wait_ports_free() { # ports...: up to 30 tries 2 s apart (others may use 5060)
  local i p busy
  for i in $(seq 30); do
    busy=""; for p in "$@"; do port_busy "$p" && busy="$busy $p"; done
    [ -z "$busy" ] && return 0
    p=${busy# }; p=${p%% *}
    [ "$i" = 1 ] && echo "   (port(s)$busy busy: $(ss -Hlutnp "sport = :$p" | awk '{print $5, $7}' | head -2 | tr '\n' ' '); waiting)" >&2
    sleep 2
  done
  echo "!! port(s)$busy still busy after 60 s" >&2; return 1; }

# --------------------------------------------------------------- servers
# IMPL kamailio|luasip, ROW reg|reg-sql|auth|call
srv_start() {
  local ports="5060"; [ "$ROW" = call ] && ports="5060 5070 5071 5072 5076 5077 5078"
  [ "$ROW" = pres ] && ports="5060 5070 5071 5072"
  wait_ports_free $ports || return 1
  KIDS=""
  if [ "$IMPL" = kamailio ]; then
    local auth=0 cfg=kamailio-lua.cfg; [ "$ROW" = auth ] && auth=1; [ "$ROW" = pres ] && cfg=kamailio-presence.cfg
    local shm=$KAM_SHM; [ "$ROW" = pres ] && shm=$KAM_SHM_PRES
    PERF_AUTH=$auth kamailio -f "$W/$cfg" -DD -E -m "$shm" -M 8 >> "$L/kamailio_$ROW.log" 2>&1 &
    SPID=$!
  else
    local script=registrar.lua extra=""
    case $ROW in
      reg)     extra="--no-auth";;
      reg-sql) rm -f "$W/loc.db" "$W/loc.db-wal" "$W/loc.db-shm"; extra="--no-auth --db sqlite:$W/loc.db";;
      auth)    extra="--algorithms MD5";;
      call)    script=proxy.lua; extra="--no-auth";;
      pres)    script=presence_server.lua; extra="--no-auth --policy allow";;
    esac
    echo "=== $(date +%T) step rate=$RATE dur=$DUR" >> "$L/luasip_$ROW.err"
    env LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_PATH_5_4="$root/lua/?.lua;$root/lua/?/init.lua;;" \
        LUA_CPATH="$root/build/$LUA/?.so;;" LUA_CPATH_5_4="$root/build/$LUA/?.so;;" \
      "$LUA" "$root/bin/luasip" "$root/examples/$script" --listen 127.0.0.1:5060 \
        --users "$W/users.txt" $extra > "$L/luasip_$ROW.out" 2>> "$L/luasip_$ROW.err" &
    SPID=$!
  fi
  local i up=0
  for i in $(seq 100); do
    kill -0 "$SPID" 2>/dev/null || break
    if [ "$IMPL" = luasip ]; then grep -q "listening on" "$L/luasip_$ROW.out" && { up=1; break; }
    else ss -Hlunp "sport = :5060" | grep -q "pid=$SPID," && { up=1; break; }; fi
    sleep 0.1
  done
  if [ $up = 0 ]; then echo "!! $IMPL did not start (see $L)" >&2; stop_pid "$SPID"; SPID=""; return 1; fi
  [ "$IMPL" = kamailio ] && { sleep 0.5; KIDS=$(ps -o pid= --ppid "$SPID" | tr '\n' ' '); }
  if [ "$ROW" = call ]; then
    sipp -sf "$B/uas_call.xml" -i 127.0.0.1 -p 5070 -cp 5071 -mp 5072 -nostdin -t u1 $SIPP_BUF \
      -trace_stat -stf "$W/uas_stat.csv" -fd 1 -trace_err -error_file "$L/uas_err.log" > /dev/null 2>&1 &
    UPID=$!
    sleep 0.3
    timeout 10 sipp 127.0.0.1:5060 -sf "$B/reg_uas.xml" -inf "$W/uas_user.csv" -i 127.0.0.1 -p 5076 -cp 5077 -mp 5078 \
      -m 1 -nostdin -timeout 5 -timeout_error > "$L/reg_uas.out" 2>&1 \
      || { echo "!! the UAS registration at $IMPL failed" >&2; return 1; }
  fi
  if [ "$ROW" = pres ]; then
    # the watchers subscribe (PRES_P * PRES_K of them), each gets its first
    # NOTIFY; they then answer NOTIFYs until stopped
    local n=$((PRES_P * PRES_K))
    rm -f "$W"/pres_watch_*_counts.csv
    (cd "$W" && exec sipp 127.0.0.1:5060 -sf "$root/bench/pres_watch.xml" -inf "$W/pres.csv" -i 127.0.0.1 \
      -p 5070 -cp 5071 -mp 5072 -r 500 -m "$n" -nostdin -t u1 $SIPP_BUF -trace_counts -fd 1 \
      -trace_stat -stf "$W/uas_stat.csv" -trace_err -error_file "$L/watch_err.log" > /dev/null 2>&1) &
    UPID=$!
    for i in $(seq 60); do
      [ "$(notifies)" -ge "$n" ] && break
      kill -0 "$UPID" 2>/dev/null || break
      sleep 0.5
    done
    [ "$(notifies)" -ge "$n" ] || { echo "!! the $n watchers did not all get a first NOTIFY from $IMPL ($(notifies))" >&2; return 1; }
  fi
  return 0
}
# The pres row's watchers: "NOTIFYs received, retransmitted NOTIFYs, watcher
# calls failed" from the SIPp counts and statistics files (0 0 0 if none).
watch_counts() {
  local f; f=$(ls "$W"/pres_watch_*_counts.csv 2>/dev/null | head -1)
  local failed; failed=$(parse_stat "$W/uas_stat.csv" | cut -d' ' -f3)
  [ -n "$f" ] || { echo "0 0 ${failed:-0}"; return; }
  awk -F';' -v failed="${failed:-0}" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i ~ /_NOTIFY_Recv$/) r = i; if ($i ~ /_NOTIFY_Retrans$/) t = i } next }
    { last = $0 } END { n = split(last, v, ";"); printf "%d %d %d\n", v[r], v[t], failed }' "$f" 2>/dev/null || echo "0 0 0"; }
notifies() { watch_counts | cut -d' ' -f1; }
srv_stop() {
  stop_pid "$UPID"; UPID=""; rm -f "$W/uas_stat.csv"
  stop_pid "$SPID"; SPID=""
  local k; for k in $KIDS; do kill -KILL "$k" 2>/dev/null; done; KIDS=""
}

# ------------------------------------------------------------------ steps
scenario_args() {
  case $ROW in
    reg|reg-sql) echo "-sf $B/reg_noauth.xml -inf $W/users.csv -p 5090 -cp 5091 -mp 5092";;
    auth)        echo "-sf $B/reg_auth.xml -inf $W/users_auth.csv -p 5090 -cp 5091 -mp 5092";;
    call)        echo "-sf $B/uac_call.xml -s uas -p 5080 -cp 5081 -mp 5082";;
    pres)        echo "-sf $root/bench/pres_publish.xml -inf $W/pres.csv -p 5090 -cp 5091 -mp 5092";;
  esac; }

# step RATE DUR [perf]: one fresh server, one SIPp load. Sets S_* and S_PASS.
step() {
  RATE=$1; DUR=$2
  local perf=${3:-0} m=$(($1 * $2)) stf i early=""
  S_PASS=0; S_SENT=0; S_OK=0; S_FAIL=0; S_RT=0; S_UASRT=0; S_NOTIFY=0; S_WFAIL=0; S_ACH=0; S_US=0; S_HWM=0; S_PSS=0; S_RCVBUF=0; S_GENCPU=0; S_OTHER=0; S_SKIP=0
  wait_quiet
  if ! srv_start; then srv_stop; S_SKIP=1; S_NOTE=" (skipped: the server did not start)"; log_step; return; fi
  local sargs; sargs=$(scenario_args)
  local ports="5090 5091 5092"; [ "$ROW" = call ] && ports="5080 5081 5082"
  wait_ports_free $ports || { srv_stop; S_SKIP=1; S_NOTE=" (skipped: client ports busy)"; log_step; return; }
  stf=$W/stat_${IMPL}_${ROW}_${RATE}_$(date +%s%N).csv
  local pids; pids=$(server_pids)
  local t0 t1 rb0 rb1 w0 w1 gt=0 v b0 b1 u0=0 u1=0
  rb0=$(rcvbuf_errors); t0=$(ticks_of $pids); w0=$(date +%s.%N); b0=$(busy_ticks)
  [ -n "$UPID" ] && u0=$(ticks_of "$UPID")
  local n0=0; [ "$ROW" = pres ] && n0=$(notifies)
  # shellcheck disable=SC2086
  sipp 127.0.0.1:5060 $sargs -i 127.0.0.1 -r "$RATE" -m "$m" -nostdin -t u1 $SIPP_BUF \
    -trace_stat -stf "$stf" -fd 1 -trace_err -error_file "$L/uac_${IMPL}_${ROW}_err.log" \
    -recv_timeout 5000 -timeout $((DUR + 30)) > /dev/null 2>> "$L/uac_${IMPL}_${ROW}.stderr" &
  CPID=$!
  if [ "$perf" = 1 ]; then
    perf record -g -F 999 -o "$W/perf_$ROW.data" -p "$SPID" > "$L/perf_$ROW.log" 2>&1 &
    PPID_PERF=$!
  fi
  # Watch the load: a step already past its failure/retransmission budget is
  # stopped early (it fails anyway). Bounded: DUR + 45 s at most.
  for i in $(seq $(( (DUR + 45) * 4 ))); do
    sleep 0.25
    kill -0 "$CPID" 2>/dev/null || break
    v=$(awk '{print $14+$15}' "/proc/$CPID/stat" 2>/dev/null) && gt=$v
    if [ -s "$stf" ]; then
      read -r _ _ S_FAIL S_RT _ < <(parse_stat "$stf")
      if [ "$S_FAIL" -gt 0 ] || [ "$S_RT" -gt $((m / 1000)) ]; then early=" (stopped early)"; break; fi
    fi
  done
  kill -0 "$CPID" 2>/dev/null && { kill -TERM "$CPID" 2>/dev/null; [ -z "$early" ] && early=" (timed out)"; }
  stop_pid "$CPID"; CPID=""
  w1=$(date +%s.%N); t1=$(ticks_of $pids); rb1=$(rcvbuf_errors); b1=$(busy_ticks)
  [ -n "$UPID" ] && u1=$(ticks_of "$UPID")
  if [ -n "$PPID_PERF" ]; then kill -INT "$PPID_PERF" 2>/dev/null; wait "$PPID_PERF" 2>/dev/null; PPID_PERF=""; fi
  S_HWM=$(status_kb VmHWM $pids); S_PSS=$(pss_kb $pids)
  if [ "$ROW" = call ] && [ -n "$UPID" ]; then     # the callee's retransmissions of its 200
    sleep 1.2
    S_UASRT=$(parse_stat "$W/uas_stat.csv" | cut -d' ' -f4)
  fi
  if [ "$ROW" = pres ] && [ -n "$UPID" ]; then      # NOTIFYs still on their way
    sleep 1.5
    read -r S_NOTIFY S_UASRT S_WFAIL < <(watch_counts)
    S_NOTIFY=$((S_NOTIFY - n0))
  fi
  srv_stop
  read -r S_SENT S_OK S_FAIL S_RT S_EL < <(parse_stat "$stf")
  S_RCVBUF=$((rb1 - rb0))
  S_ACH=$(awk -v o="$S_OK" -v e="$S_EL" 'BEGIN { printf "%.0f", (e > 0 ? o / e : 0) }')
  S_US=$(awk -v t=$((t1 - t0)) -v o="$S_OK" -v hz="$HZ" 'BEGIN { printf "%.1f", (o > 0 ? t * 1e6 / hz / o : 0) }')
  S_SRVCPU=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v a="$w0" -v b="$w1" 'BEGIN { printf "%.0f", t / hz / (b - a) * 100 }')
  S_GENCPU=$(awk -v t="$gt" -v hz="$HZ" -v a="$w0" -v b="$w1" 'BEGIN { printf "%.0f", t / hz / (b - a) * 100 }')
  # CPU used by neither the server nor our SIPps (other jobs; approximate)
  S_OTHER=$(awk -v t=$(( (b1 - b0) - (t1 - t0) - gt - (u1 - u0) )) -v hz="$HZ" -v a="$w0" -v b="$w1" \
    'BEGIN { v = t / hz / (b - a) * 100; printf "%.0f", (v < 0 ? 0 : v) }')
  local rt=$((S_RT + S_UASRT))
  if [ "$S_FAIL" = 0 ] && [ "$S_OK" = "$m" ] && [ $((rt * 1000)) -le "$m" ] && \
     awk -v a="$S_ACH" -v r="$RATE" 'BEGIN { exit !(a >= 0.97 * r) }'; then S_PASS=1; fi
  # pres: no watcher failed, and every watcher heard of every cycle (at
  # least one NOTIFY each; a server may merge changes made while a NOTIFY
  # is in flight, RFC 6665 §4.2.2 rate limiting)
  if [ "$ROW" = pres ] && { [ "$S_WFAIL" != 0 ] || [ "$S_NOTIFY" -lt $((S_OK * PRES_K)) ]; }; then S_PASS=0; fi
  S_NOTE=$early
  log_step
}
extra_of_step() {
  case $ROW in
    call) echo " (+uas $S_UASRT)";;
    pres) echo " (+notify $S_UASRT) NOTIFYs $S_NOTIFY ($(awk -v n="$S_NOTIFY" -v o="$S_OK" -v k="$PRES_K" \
            'BEGIN { printf "%.2f", (o > 0 ? n / o / k : 0) }')/cycle/watcher) watchers failed $S_WFAIL";;
  esac; }
log_step() {
  local line
  line=$(printf "  %-8s %-7s %6d/s %2ds  %s  ok %d/%d failed %d retrans %d%s achieved %s/s  srvCPU %s%% sippCPU %s%% otherCPU %s%%  %s us/op  VmHWM %d kB PSS %d kB  RcvbufErrors +%d%s" \
    "$IMPL" "$ROW" "$RATE" "$DUR" "$([ "$S_PASS" = 1 ] && echo PASS || echo FAIL)" "$S_OK" $((RATE * DUR)) "$S_FAIL" \
    "$S_RT" "$(extra_of_step)" "$S_ACH" "${S_SRVCPU:-0}" "$S_GENCPU" "$S_OTHER" "$S_US" "$S_HWM" "$S_PSS" \
    "$S_RCVBUF" "$S_NOTE")
  echo "$line" | tee -a "$LOG" >&2
}

# step2 RATE DUR: a short step that fails gets one more chance (the CPUs are
# shared with other jobs, and UDP drops come in bursts); the 20 s confirm
# decides.
# A skipped step (port held by someone else, server did not start) is not a
# result: it is run again, at most 3 extra times.
step2() {
  local runs=0 skips=0
  while [ $runs -lt 2 ] && [ $skips -le 3 ]; do
    step "$1" "$2"
    if [ "$S_SKIP" = 1 ]; then skips=$((skips + 1)); continue; fi
    runs=$((runs + 1)); [ "$S_PASS" = 1 ] && return
  done; }

# search IMPL ROW START: ramp (x2), bisect, confirm. Sets the result R_*.
search() {
  IMPL=$1; ROW=$2
  local rate=$3 lastpass=0 firstfail=0 i mid best
  echo "-- $IMPL $ROW (start $rate/s)" | tee -a "$LOG" >&2
  for i in $(seq "$MAXRAMP"); do
    step2 "$rate" "$RAMP_DUR"
    if [ "$S_PASS" = 1 ]; then lastpass=$rate; rate=$((rate * 2)); else firstfail=$rate; break; fi
  done
  if [ $lastpass = 0 ]; then
    for i in 1 2 3; do
      rate=$((rate / 2)); [ $rate -lt 10 ] && break
      step "$rate" "$RAMP_DUR"
      if [ "$S_PASS" = 1 ]; then lastpass=$rate; break; else firstfail=$rate; fi
    done
  fi
  if [ $lastpass = 0 ]; then R_RATE="<$rate"; R_US="-"; R_HWM=0; R_PSS=0; R_LINE="no passing rate"; return; fi
  for i in $(seq "$NBIS"); do
    [ $firstfail = 0 ] && break
    mid=$(( (lastpass + firstfail) / 2 / 10 * 10 ))
    [ $((mid - lastpass)) -lt $((lastpass / 20 + 10)) ] && break
    step2 "$mid" "$RAMP_DUR"
    if [ "$S_PASS" = 1 ]; then lastpass=$mid; else firstfail=$mid; fi
  done
  best=$lastpass
  local try=0 skips=0 retried=0
  while [ $try -lt "$CONF_TRIES" ] && [ $skips -le 3 ]; do
    step "$best" "$CONF_DUR"
    if [ "$S_SKIP" = 1 ]; then skips=$((skips + 1)); continue; fi
    [ "$S_PASS" = 1 ] && break
    # a failed confirm: the same rate once more if other jobs were busy
    # (that rerun is not counted in CONF_TRIES), else 15% lower
    if [ "$S_OTHER" -ge 15 ] && [ $retried = 0 ]; then retried=1; continue; fi
    try=$((try + 1))
    best=$((best * 85 / 100 / 10 * 10))
  done
  if [ "$S_PASS" = 1 ]; then R_RATE=$best; else R_RATE="<$RATE"; fi
  R_US=$S_US; R_HWM=$S_HWM; R_PSS=$S_PSS
  R_LINE="confirm ${CONF_DUR}s: ok $S_OK failed $S_FAIL retrans $S_RT$([ "$ROW" = call ] && echo "+$S_UASRT")$([ "$ROW" = pres ] && echo "+$S_UASRT, $S_NOTIFY NOTIFYs ($(awk -v n="$S_NOTIFY" -v e="$S_EL" 'BEGIN { printf "%.0f", (e > 0 ? n / e : 0) }')/s)") RcvbufErrors +$S_RCVBUF srvCPU $S_SRVCPU% sippCPU $S_GENCPU% otherCPU $S_OTHER%"
  echo "   => $IMPL $ROW: $R_RATE/s, $R_US us/op, VmHWM $R_HWM kB, PSS $R_PSS kB" | tee -a "$LOG" >&2
  if [ "${BENCH_PERF:-0}" = 1 ] && [ "$IMPL" = luasip ] && [ "$S_PASS" = 1 ] && command -v perf > /dev/null; then
    step "$best" "$RAMP_DUR" 1
    { echo "   by DSO:"
      perf report -i "$W/perf_$ROW.data" --no-children --stdio --sort dso -g none 2> /dev/null \
        | grep -E '^ +[0-9.]+%' | head -8
      echo "   top symbols (lua5.4 is stripped: its VM/GC show as addresses):"
      perf report -i "$W/perf_$ROW.data" --no-children --stdio --sort dso,sym -g none --percent-limit 1.5 2> /dev/null \
        | grep -E '^ +[0-9.]+%' | head -15; } > "$L/perf_$ROW.top"
    echo "   perf top symbols, luasip $ROW at $best/s (self %):" >&2; sed 's/^/     /' "$L/perf_$ROW.top" >&2
  fi
}

start_of() { case $1 in reg|reg-sql) echo "${START_reg:-1000}";; auth) echo "${START_auth:-500}";; call) echo "${START_call:-200}";;
  pres) echo "${START_pres:-100}";; esac; }
label_of() {
  case $1 in
    reg)     echo "REGISTER/s no auth, memory";;
    reg-sql) echo "REGISTER/s no auth, luasip sqlite";;
    auth)    echo "REGISTER/s digest MD5, memory";;
    call)    echo "calls/s via proxy, memory";;
    pres)    echo "presence cycles/s, $PRES_K watchers";;
  esac; }
mb() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.1f MB", k / 1024; else printf "-" }'; }

echo "== server: SIPp vs luasip examples and Kamailio $(kamailio -v 2>&1 | awk 'NR == 1 {print $3}') + KEMI Lua on 127.0.0.1:5060 ($([ "${BENCH_QUICK:-0}" = 1 ] && echo "QUICK: ${CONF_DUR}s confirm" || echo "${CONF_DUR}s confirm"), luasip on $LUA)"
echo "   logs in $W/logs"
T0=$(date +%s)
declare -A LR LU LH LP LL KR KU KH KP KL
for row in $ROWS; do
  if [[ " $IMPLS " == *" luasip "* ]]; then
    search luasip "$row" "$(start_of "$row")"
    LR[$row]=$R_RATE; LU[$row]=$R_US; LH[$row]=$R_HWM; LP[$row]=$R_PSS; LL[$row]=$R_LINE
  fi
  if [ "$row" != reg-sql ] && [[ " $IMPLS " == *" kamailio "* ]]; then
    search kamailio "$row" "$(start_of "$row")"
    KR[$row]=$R_RATE; KU[$row]=$R_US; KH[$row]=$R_HWM; KP[$row]=$R_PSS; KL[$row]=$R_LINE
  fi
done
T1=$(date +%s)

# ------------------------------------------------------------------ table
mkdir -p "$root/bench/results"
out=$root/bench/results/server-$(date +%Y%m%d-%H%M%S).txt
{
  echo "luasip server benchmark, $(date '+%Y-%m-%d %H:%M'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet 2>/dev/null || echo '+dirty')"
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); $(uname -r)"
  echo "kamailio $(kamailio -v 2>&1 | awk 'NR == 1 {print $3}'), $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1), luasip on $($LUA -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "mode: $([ "${BENCH_QUICK:-0}" = 1 ] && echo QUICK || echo full), confirm ${CONF_DUR}s, ramp steps ${RAMP_DUR}s; total $(( (T1 - T0) / 60 )) min $(( (T1 - T0) % 60 )) s"
  echo
  printf "%-34s | %11s | %13s | %6s | %12s | %14s | %15s | %-28s\n" row "luasip rate" "kamailio rate" ratio "luasip us/op" "kamailio us/op" "luasip peak RSS" "kamailio peak RSS (PSS)"
  printf -- "-%.0s" $(seq 155); echo
  for row in $ROWS; do
    kr=${KR[$row]:-}; ku=${KU[$row]:-}; kh=${KH[$row]:-0}; kp=${KP[$row]:-0}; ref=""
    if [ "$row" = reg-sql ]; then kr=${KR[reg]:--}; ku=${KU[reg]:--}; kh=${KH[reg]:-0}; kp=${KP[reg]:-0}; ref="*"; fi
    ratio=$(awk -v a="${LR[$row]:--}" -v b="$kr" 'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && b > 0) printf "%.2f", a / b; else printf "-" }')
    printf "%-34s | %11s | %13s | %6s | %12s | %14s | %15s | %-28s\n" "$(label_of "$row")" "${LR[$row]:--}" "$kr$ref" "$ratio" \
      "${LU[$row]:--}" "$ku$ref" "$(mb "${LH[$row]:-0}")" "$(mb "$kh") ($(mb "$kp"))$ref"
  done
  echo
  echo "Rate: highest offered rate (calls/s or REGISTER/s) with 0 failed, retransmissions <= 0.1%, >= 97% achieved, over ${CONF_DUR}s; ratio = luasip/Kamailio."
  echo "Auth row: one op = one registration (REGISTER, 401, REGISTER with MD5 credentials, 200). Call row: one op = INVITE/200/ACK/BYE/200 through the proxy."
  echo "Presence row: one op = one cycle of 3 PUBLISHes (open; closed with SIP-If-Match; removal) on one of $PRES_P presentities, each watched by $PRES_K"
  echo "  SIPp watchers subscribed before the load; it passes only if no watcher failed and every watcher got >= 1 NOTIFY per cycle"
  echo "  (Kamailio sends one per change; luasip merges changes made while a watcher's NOTIFY is in flight). NOTIFY/s in the confirm lines."
  echo "us/op: server CPU (utime+stime from /proc/PID/stat; for Kamailio summed over main + all children) over the confirm run / successful ops."
  echo "Peak RSS: VmHWM of the confirm run's fresh server process(es). Kamailio: VmHWM summed over its processes, so its ${KAM_SHM} MB"
  echo "  shared memory (-m ${KAM_SHM} -M 8; ${KAM_SHM_PRES} MB for the presence row) counts once per process that touched it; PSS (in brackets) shares it out, read at the end of the run."
  echo "Kamailio runs children=2 UDP workers (+ timer/helper processes); luasip runs as one process (one thread for SIP; the sqlite store adds a writer thread)."
  echo "Kamailio's KEMI route.lua checks one fixed password (no lookup); luasip looks the user up in a 10,000-entry table (--users), MD5 only (--algorithms MD5)."
  echo "(*) the sqlite row has no Kamailio twin: its Kamailio columns repeat the in-memory usrloc REGISTER row. luasip sqlite file: $W/loc.db ($(df -T "$W" | awk 'NR == 2 {print $2}'))."
  echo "SIPp (one process) runs on the same $(nproc) CPUs as the server, and so may other jobs (otherCPU in the step log)."
  echo "A rate '<N' means no confirm run passed (the last tried was N/s); its us/op and RSS then come from that failed run."
  echo
  echo "Confirm runs:"
  for row in $ROWS; do
    [ -n "${LL[$row]:-}" ] && echo "  luasip   $row: ${LL[$row]}"
    [ -n "${KL[$row]:-}" ] && echo "  kamailio $row: ${KL[$row]}"
  done
  for row in $ROWS; do
    [ -s "$L/perf_$row.top" ] && { echo; echo "perf, luasip $row (self %, top symbols):"; cat "$L/perf_$row.top"; }
  done
  lerr=$(cat "$L"/luasip_*.err 2>/dev/null | grep -v '^===' | grep -ciE 'error|traceback|warn')
  echo
  echo "luasip stderr: $lerr error/warning line(s) over all steps (logs: $L/luasip_*.err)"
  echo "all steps:"; cat "$LOG"
} > "$out"
sed -n '1,/^all steps:/p' "$out" | sed '$d'
echo "(saved to $out; step log $LOG)"
