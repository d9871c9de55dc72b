#!/bin/bash
# bench/media.sh — media capacity (`make bench`, or alone): N bidirectional
# G.711 calls between two luasip processes on loopback, each side playing a
# file and recording every call. For each N the calling side reports its
# CPU, the packets it sent and received, loss, and the engine's tick
# timing; the table gives calls per core of luasip CPU and the packet rate
# next to the raw loopback limit measured in the same run (bench/rawudp.c:
# a tight sendmmsg/recvmmsg loop on one socket pair), and next to the
# kernel's floor for the engine's own I/O pattern at that N: the same
# datagrams over N socket pairs, one send and one read per pair every
# 20 ms, with no media work (rawudp SECONDS N paced). A step passes with no loss and a p99
# send-interval error (each packet's interval from its session's previous
# one, against 20 ms) of at most 1 ms. MEDIA_STEPS, MEDIA_SECONDS and LUA choose the run.
# Bounded: fixed counts, timeouts, loopback only.
set -u
. "$(dirname "$0")/media_lib.sh"
STEPS=${MEDIA_STEPS:-"100 200 400 800 1200 1600 2000"}
SECS=${MEDIA_SECONDS:-10}

cc -O2 -o "$W/rawudp" "$root/bench/rawudp.c" || exit 1
write_prompt "$W/prompt.wav" 8000
raw=$("$W/rawudp" 3)
echo "== media: G.711 calls between two luasip processes on 127.0.0.1 ($LUA, ${SECS}s per step); raw loopback limit $raw packets/s per core"
printf "%6s %7s %10s %12s %7s %12s %7s %6s %9s %9s %5s\n" calls "cpu%" calls/core "pkts/s/core" "%raw" \
  "floor_pps" "%floor" lost "send_p99" "busy_p99" ok
best=0; bestrow=""
for N in $STEPS; do
  line=$(media_step "$N" "$SECS" "$W/prompt.wav") || break
  get() { field "$line" "$1"; }
  wall=$(get wall); cpu=$(get cpu); sent=$(get sent); recv=$(get received); lost=$(get lost)
  b99=$(get busy_p99)
  frac=$(echo "$cpu / $wall" | bc -l)
  percore=$(echo "$N / $frac" | bc -l)
  pps=$(echo "($sent + $recv) / 2 / $cpu" | bc -l)
  pct=$(echo "100 * $pps / $raw" | bc -l)
  floor=$("$W/rawudp" 3 "$N" paced)
  fpct=$(echo "100 * $pps / $floor" | bc -l)
  # measured per packet: |interval from the session's previous packet - 20 ms|
  senderr=$(get send_p99)
  ok=no
  if [ "$lost" = 0 ] && [ "$(echo "$senderr <= 1.0" | bc)" = 1 ] && [ "$(echo "$frac < 0.95" | bc)" = 1 ]; then
    ok=yes; best=$N
    bestrow=$(printf "%.0f calls per core, %.0f packets/s per core = %.0f%% of the raw limit, %.0f%% of the per-call socket floor" \
      "$percore" "$pps" "$pct" "$fpct")
  fi
  [ -n "${MEDIA_VERBOSE:-}" ] && echo "$line"
  printf "%6d %7.1f %10.0f %12.0f %7.1f %12.0f %7.1f %6d %8.1fms %8.1fms %5s\n" "$N" "$(echo "100 * $frac" | bc -l)" \
    "$percore" "$pps" "$pct" "$floor" "$fpct" "$lost" "$senderr" "$b99" "$ok"
  # go on past a timing miss (this machine's scheduling is noisy); stop at
  # loss or a saturated core
  if [ "$lost" != 0 ] || [ "$(echo "$frac >= 0.95" | bc)" = 1 ]; then break; fi
done
echo "media capacity: largest passing step $best calls: ${bestrow:-none passed}"
