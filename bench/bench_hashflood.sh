#!/usr/bin/env bash
# The DNS cache under FNV-colliding names beside ordinary ones, and a key's hash, FNV-1a
# beside SipHash-1-3 (bench_hashflood.c). Standalone: bench/bench_hashflood.sh [build-dir]
# [names]; links against that build's libmxcore.a (main's too: its cache then shows the
# flood, and no SipHash line is printed). BENCH_QUICK=1: 1,000 names.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${MX_BUILD_DIR:-$ROOT/build}}
[ -f "$BUILD" ] && BUILD=$(dirname "$BUILD")
LIB=$BUILD/libmxcore.a
[ -f "$LIB" ] || { echo "bench_hashflood: $LIB missing (run make first)"; exit 1; }
N=${2:-4000}
[ "${BENCH_QUICK:-0}" != 0 ] && N=1000
OUT=$(mktemp -d /tmp/mxbench-hash-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
DEF=""
nm "$LIB" 2>/dev/null | grep -q ' T siphash13$' && DEF=-DHAVE_SIPHASH
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2"  # = CMakeLists.txt DEPS
pkg-config --exists libhs && PKGS="$PKGS libhs"
cc -O2 -std=c11 -D_GNU_SOURCE $DEF -I"$ROOT" -I"$ROOT/proxy" -o "$OUT/bench_hashflood" \
  "$ROOT/bench/bench_hashflood.c" "$LIB" $(pkg-config --cflags --libs $PKGS) -lspf2 -lresolv -ldl -lm -lpthread
"$OUT/bench_hashflood" "$N"
