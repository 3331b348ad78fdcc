#!/usr/bin/env bash
# Rate-limit checks per second, local table and Redis (sequential and pipelined), in one run
# (~10 s). Standalone: bench/bench_ratelimit.sh [build-dir]. Needs libmxcore.a in the build
# dir (make) and redis-server for the Redis figures.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${MX_BUILD_DIR:-$ROOT/build}}
LIB=$BUILD/libmxcore.a
[ -f "$LIB" ] || { echo "bench_ratelimit: $LIB missing (run make first)"; exit 1; }
OUT=$(mktemp -d /tmp/mxbench-rl-XXXXXX)
trap '[ -n "${RPID:-}" ] && kill $RPID 2>/dev/null; rm -rf "$OUT"' EXIT
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0"
pkg-config --exists libhs && PKGS="$PKGS libhs"
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT" -I"$ROOT/proxy" -o "$OUT/bench_ratelimit" \
  "$ROOT/bench/bench_ratelimit.c" "$LIB" $(pkg-config --cflags --libs $PKGS) -lspf2 -ldl -lm -lpthread
PORT=0
if command -v redis-server >/dev/null; then
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
  RPID=$!
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$OUT/bench_ratelimit" "$PORT"
