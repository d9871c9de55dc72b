#!/bin/sh
# deps.sh — install the Debian packages luasip needs to build and test.
# Checks each package; installs only the missing ones (after apt-get update
# when the package lists are older than a day). Without root it prints the
# exact command to run and fails.
set -eu

PACKAGES="build-essential pkg-config lua5.4 liblua5.4-dev luajit libluajit-5.1-dev
lua-busted libsofia-sip-ua-dev sofia-sip-bin libedit-dev luarocks sip-tester
lua-luv lua-socket clang libclang-rt-14-dev libssl-dev openssl
libsqlite3-dev sqlite3 libspandsp-dev libsndfile1-dev libspeexdsp-dev
libespeak-ng-dev espeak-ng-data libopus-dev libsrtp2-dev libexpat1-dev baresip-core git lua-ldoc lua-markdown"
# `deps.sh bench`: also the peers that `make bench` compares against.
if [ "${1:-}" = bench ]; then
  PACKAGES="$PACKAGES kamailio kamailio-lua-modules kamailio-presence-modules kamailio-sqlite-modules bc python3 iproute2"
fi

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "luasip: installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "luasip: root is needed to install them. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
  fi
else
  SUDO=""
fi

fresh=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)
if [ -z "$fresh" ]; then
  $SUDO apt-get update -q
fi
# shellcheck disable=SC2086
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing; then
  # stale lists can name versions the mirror no longer has
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing
fi
