#!/usr/bin/env bash
# Rate-limit checks per second, local table and Redis (one at a time and pipelined 256 deep
# on one connection, with the real GCRA script), in one run of about 10 s (4 s with
# BENCH_QUICK=1). Standalone: bench/bench_ratelimit.sh [path/to/mxgate | build-dir].
# Links bench_ratelimit.c against libmxcore.a next to the daemon; redis-server is started on
# a free port for the Redis figures (skipped when not installed). Each Redis figure is
# printed beside the local one measured in the same run.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARG=${1:-}
if [ -n "$ARG" ] && [ -d "$ARG" ]; then BUILD=$ARG
elif [ -n "$ARG" ] && [ -f "$ARG" ]; then BUILD=$(dirname "$ARG")
else BUILD=${MX_BUILD_DIR:-$ROOT/build}; fi
LIB=$BUILD/libmxcore.a
[ -f "$LIB" ] || { echo "bench_ratelimit: $LIB missing (run make first)"; exit 1; }
[ "${BENCH_QUICK:-0}" != 0 ] && export BENCH_SECONDS=${BENCH_SECONDS:-1}
OUT=$(mktemp -d /tmp/mxbench-rl-XXXXXX)
RPID=""
trap '[ -n "$RPID" ] && kill $RPID 2>/dev/null; rm -rf "$OUT"' EXIT
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2"  # = CMakeLists.txt DEPS
pkg-config --exists libhs && PKGS="$PKGS libhs"
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT" -I"$ROOT/proxy" -o "$OUT/bench_ratelimit" \
  "$ROOT/bench/bench_ratelimit.c" "$LIB" $(pkg-config --cflags --libs $PKGS) -lspf2 -lresolv -ldl -lm -lpthread
PORT=0
if command -v redis-server >/dev/null; then
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
  RPID=$!
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$OUT/bench_ratelimit" "$PORT" | tee "$OUT/figures"
if [ -n "${BENCH_SUMMARY:-}" ]; then
  grep -E "local  1 thread|pipelined|sequential" "$OUT/figures" | sed 's/^/bench_ratelimit: /' >>"$BENCH_SUMMARY"
fi
