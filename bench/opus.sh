#!/bin/bash
# bench/opus.sh — Opus (`make bench`, or alone): calls between two luasip
# processes on loopback, the calling side measured.
#  - live: each call sends a tone encoded live by its own Opus encoder
#    (48 kHz mono, 32 kb/s, complexity 5, in-band FEC, as negotiated).
#    bench/opusref.c runs libopus alone on the same audio with the same
#    settings and as many encoders; the engine's overhead is how much more
#    CPU a call costs in luasip than its encoding costs alone (target 10%).
#  - cache: each call plays a 48 kHz prompt through the encoded-prompt
#    cache (encoded once, then only packetised per call); the table gives
#    calls per core of luasip CPU (target 1,000) with loss and timing.
# Neither side records: nothing listens to the received audio, so it is
# jitter-buffered and counted but not decoded (as in an IVR prompt).
# OPUS_LIVE_CALLS, OPUS_CACHE_STEPS, MEDIA_SECONDS and LUA choose the run.
# Bounded: fixed counts, timeouts, loopback only.
set -u
. "$(dirname "$0")/media_lib.sh"
LIVE=${OPUS_LIVE_CALLS:-100}
STEPS=${OPUS_CACHE_STEPS:-"500 1000 2000"}
SECS=${MEDIA_SECONDS:-10}
export MEDIA_CODEC=opus MEDIA_RECORD=0

cc -O2 $(pkg-config --cflags opus) -o "$W/opusref" "$root/bench/opusref.c" $(pkg-config --libs opus) -lm || exit 1
write_prompt "$W/prompt48.wav" 48000

echo "== opus: live encoding, $LIVE calls ($LUA, ${SECS}s), against libopus alone"
ref=$("$W/opusref" "$LIVE" "$SECS") || exit 1
ref_us=$(field "$ref" us_per_frame)
line=$(MEDIA_SOURCE=tone media_step "$LIVE" "$SECS" "$W/prompt48.wav") || exit 1
cpu=$(field "$line" cpu); wall=$(field "$line" wall); sent=$(field "$line" sent)
eng_us=$(echo "$cpu * 1000000 / $sent" | bc -l)
printf "%-28s %12s %10s\n" "" "us/packet" calls/core
printf "%-28s %12.1f %10.0f\n" "libopus alone (opusref)" "$ref_us" "$(echo "1000000 / ($ref_us * 50)" | bc -l)"
printf "%-28s %12.1f %10.0f   (lost %s, send_p99 %sms)\n" "luasip, live Opus" "$eng_us" \
  "$(echo "$LIVE / ($cpu / $wall)" | bc -l)" "$(field "$line" lost)" "$(field "$line" send_p99)"
overhead=$(echo "100 * ($eng_us - $ref_us) / $ref_us" | bc -l)
printf "opus live: engine overhead over libopus %.1f%% per call (target <= 10%%)\n" "$overhead"

echo "== opus: prompt through the encoded-prompt cache ($LUA, ${SECS}s per step)"
printf "%6s %7s %10s %6s %9s %9s %10s %5s\n" calls "cpu%" calls/core lost send_p99 busy_p99 "reused%" ok
best=0; bestrow=""
for N in $STEPS; do
  line=$(media_step "$N" "$SECS" "$W/prompt48.wav") || break
  cpu=$(field "$line" cpu); wall=$(field "$line" wall); lost=$(field "$line" lost)
  frac=$(echo "$cpu / $wall" | bc -l)
  percore=$(echo "$N / $frac" | bc -l)
  enc=$(field "$line" encoded); reu=$(field "$line" reused)
  reused=$(echo "100 * $reu / ($enc + $reu)" | bc -l)
  ok=no
  if [ "$lost" = 0 ] && [ "$(echo "$frac < 0.95" | bc)" = 1 ]; then
    ok=yes; best=$N; bestrow=$(printf "%.0f calls per core" "$percore")
  fi
  [ -n "${MEDIA_VERBOSE:-}" ] && echo "$line"
  printf "%6d %7.1f %10.0f %6d %8.1fms %8.1fms %9.2f%% %5s\n" "$N" "$(echo "100 * $frac" | bc -l)" \
    "$percore" "$lost" "$(field "$line" send_p99)" "$(field "$line" busy_p99)" "$reused" "$ok"
  if [ "$lost" != 0 ] || [ "$(echo "$frac >= 0.95" | bc)" = 1 ]; then break; fi
done
echo "opus prompt cache: largest step without loss $best calls: ${bestrow:-none passed} (target 1000)"
