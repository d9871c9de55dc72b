# bench/media_lib.sh — shared by bench/media.sh and bench/opus.sh (sourced):
# the environment, a temporary folder, and media_step, which runs one step
# of calls between two luasip processes (bench/media_peer.lua).
root=$(cd "$(dirname "$0")/.." && pwd)
LUA=${LUA:-lua5.4}
W=$(mktemp -d /tmp/luasip-media-bench.XXXXXX)
APID=""
cleanup() { [ -n "$APID" ] && kill "$APID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_PATH_5_4="$root/lua/?.lua;$root/lua/?/init.lua;;"
export LUA_CPATH="$root/build/$LUA/?.so;;" LUA_CPATH_5_4="$root/build/$LUA/?.so;;"

# write_prompt PATH RATE: 10 s of two tones (440 and 1200 Hz)
write_prompt() {
  "$LUA" -e "package.path='$root/spec/?.lua;'..package.path
    local a = require 'audio'
    a.write_wav('$1', $2, 1, 10, function(t) return 0.3 * math.sin(2*math.pi*440*t) + 0.2 * math.sin(2*math.pi*1200*t) end)"
}

# media_step N SECONDS FILE: the answering side starts, the calling side
# places N calls and measures; prints the calling side's RESULT line (empty
# on failure, with the reason on stderr). MEDIA_CODEC, MEDIA_RECORD and
# MEDIA_SOURCE pass through to media_peer.lua.
media_step() {
  local N=$1 SECS=$2 FILE=$3 port="" line
  rm -rf "$W/a" "$W/c"; mkdir -p "$W/a" "$W/c"
  "$LUA" "$root/bin/luasip" "$root/bench/media_peer.lua" answer 0 "$FILE" "$W/a" > "$W/answer.out" 2> "$W/answer.err" &
  APID=$!
  for _ in $(seq 100); do
    port=$(awk '/^ready/ {print $2}' "$W/answer.out"); [ -n "$port" ] && break; sleep 0.1
  done
  if [ -z "$port" ]; then echo "answer side did not start: $(tail -1 "$W/answer.err")" >&2; return 1; fi
  line=$(timeout $((SECS + 120)) "$LUA" "$root/bin/luasip" "$root/bench/media_peer.lua" call \
    "sip:bench@127.0.0.1:$port" "$N" "$SECS" "$FILE" "$W/c" 2> "$W/call.err" | grep '^RESULT')
  kill "$APID" 2>/dev/null; wait "$APID" 2>/dev/null; APID=""
  [ -n "$line" ] || { echo "$N calls: no result ($(tail -1 "$W/call.err"))" >&2; return 1; }
  echo "$line"
}

# field LINE KEY: KEY's value in a RESULT line
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
