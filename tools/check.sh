#!/bin/sh
# check.sh BUILD RUNTIME... — run the busted specs on each Lua runtime
# against the modules in BUILD/<runtime>, print busted's summary for each
# and a total "N passed, N failed" line. Exits non-zero on any failure.
# LUASIP_ASAN=1: the modules are sanitizer builds; preload the runtime.
# SPECS="spec/x_spec.lua ...": run only those.
set -u
build=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
status=0
asan_env=""
if [ "${LUASIP_ASAN:-}" = 1 ]; then
  asan_env="LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
fi
for rt in "$@"; do
  echo "== busted on $rt ($build/$rt)"
  log=$(mktemp)
  lpath="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
  cpath="$root/$build/$rt/?.so;;"
  # shellcheck disable=SC2086
  (cd "$root" && env LUA_PATH="$lpath" LUA_PATH_5_4="$lpath" LUA_CPATH="$cpath" \
    LUA_CPATH_5_4="$cpath" LUASIP_BIN="$root/$build/$rt/bin/luasip" LUASIP_RUNTIME="$rt" \
    LUASIP_BUILD="$root/$build" LUASIP_HISTORY="" $asan_env \
    "$rt" /usr/bin/busted -o plainTerminal ${SPECS:-spec}) 2>&1 | tee "$log"
  summary=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  if [ -z "$summary" ]; then
    echo "luasip: busted on $rt produced no summary (crashed?)"
    failed=$((failed + 1))
    status=1
  else
    s=$(echo "$summary" | sed -E 's#^([0-9]+) .*#\1#')
    f=$(echo "$summary" | sed -E 's#^[0-9]+ success(es)? / ([0-9]+) .*#\2#')
    e=$(echo "$summary" | sed -E 's#.* / ([0-9]+) errors? / .*#\1#')
    passed=$((passed + s))
    failed=$((failed + f + e))
    [ $((f + e)) -eq 0 ] || status=1
    [ "$s" -gt 0 ] || status=1
  fi
  rm -f "$log"
done
echo "$passed passed, $failed failed"
exit $status
