#!/bin/sh
# docs.sh DIR — write the API reference (LDoc over lua/luasip, config.ld)
# into DIR, without LDoc's "Last updated" time, so the same sources always
# give the same files (spec/docs_spec.lua compares them with docs/).
set -eu
out=${1:-docs}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
ldoc -c config.ld -d "$tmp" . >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
# a warning is a doc comment LDoc could not read: fail on it
if grep -v '^reading configuration\|^output written' "$tmp.log" | grep -q .; then
  cat "$tmp.log" >&2; rm -f "$tmp.log"; exit 1
fi
rm -f "$tmp.log"
find "$tmp" -name '*.html' -exec sed -i '/Last updated/d' {} +
rm -rf "$out"
mkdir -p "$out"
cp -R "$tmp"/. "$out"/
