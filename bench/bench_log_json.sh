#!/usr/bin/env bash
# Log lines per second, text and log.format: json (bench_log_json.c), one thread and two,
# written to /dev/null. Standalone: bench/bench_log_json.sh [build-dir] [lines per thread].
# Links against libmxcore.a of the build directory (default build/).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${MX_BUILD_DIR:-$ROOT/build}}
LIB=$BUILD/libmxcore.a
[ -f "$LIB" ] || { echo "bench_log_json: $LIB missing (run make first)"; exit 1; }
OUT=$(mktemp -d /tmp/mxbench-logjson-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2"  # = CMakeLists.txt DEPS
pkg-config --exists libhs && PKGS="$PKGS libhs"
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT" -I"$ROOT/proxy" -o "$OUT/bench_log_json" \
  "$ROOT/bench/bench_log_json.c" "$LIB" $(pkg-config --cflags --libs $PKGS) -lspf2 -lresolv -ldl -lm -lpthread
"$OUT/bench_log_json" "${2:-200000}"
