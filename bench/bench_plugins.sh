#!/usr/bin/env bash
# Content-filter cost, in one run (~30 s): smtp-source through mxgate into smtp-sink with
#   1. no plugin, 2. an empty dlopen plugin, 3. clamd (EICAR-only DB), 4. clamd + a
#   python3-milter filter; prints msg/s and the ratio to the no-plugin run, and the
#   per-message overhead of the empty plugin.
# Standalone: bench/bench_plugins.sh [path/to/mxgate] (plugins .so next to it).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${MXGATE_BIN:-$ROOT/build/mxgate}}
BUILD=$(cd "$(dirname "$BIN")" && pwd)
N=${BENCH_MESSAGES:-1000}      # messages per run
NM=${BENCH_MILTER_MESSAGES:-400}  # the python milter is slow: fewer messages
CONC=${BENCH_CONCURRENCY:-20}
[ -x "$BIN" ] || { echo "bench_plugins: $BIN missing (run make first)"; exit 1; }
command -v smtp-source >/dev/null || { echo "bench_plugins: smtp-source (postfix) missing"; exit 1; }
OUT=$(mktemp -d /tmp/mxbench-plugins-XXXXXX)
chmod 755 "$OUT"
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

SINK=$(port)
U=""; [ "$(id -u)" -eq 0 ] && U="-u nobody"
smtp-sink $U -c 127.0.0.1:$SINK 1024 >"$OUT/sink.log" 2>&1 & PIDS="$PIDS $!"
waitport $SINK

CLAMD=""
if command -v clamd >/dev/null; then
  CLAMD=$(port); D=$OUT/clamav; mkdir -p $D/db $D/tmp
  cp "$ROOT"/tests/peers/clamav/mxgate-eicar.* $D/db/
  sed -e "s|@DIR@|$D|g" -e "s|@PORT@|$CLAMD|g" "$ROOT/tests/peers/clamav/clamd.conf.in" >$D/clamd.conf
  clamd --config-file=$D/clamd.conf >"$OUT/clamd.log" 2>&1 & PIDS="$PIDS $!"
fi
MILTER=""
if /usr/bin/python3 -c 'import Milter' 2>/dev/null; then
  MILTER=$(port)
  /usr/bin/python3 "$ROOT/tests/peers/mx_milter.py" "inet:$MILTER@127.0.0.1" >"$OUT/milter.log" 2>&1 & PIDS="$PIDS $!"
fi

# run NAME MESSAGES PLUGINS_YAML -> prints msg/s, sets RATE
run() {
  local name=$1 n=$2 plugins=$3 p pid t0 t1
  p=$(port)
  cat >"$OUT/$name.yaml" <<EOF
hostname: mx.example.test
workers: 1
log_level: warning
listen:
  - address: "127.0.0.1:$p"
limits: { max_connections_per_ip: 100000 }
backends:
  client_identity: none
  servers:
    - { address: "smtp://127.0.0.1:$SINK" }
$plugins
EOF
  "$BIN" -c "$OUT/$name.yaml" >"$OUT/$name.log" 2>&1 & pid=$!
  waitport $p || { echo "$name: mxgate did not start"; tail -3 "$OUT/$name.log"; RATE=0; return; }
  t0=$(date +%s.%N)
  smtp-source -s $CONC -m $n -l 4096 -f a@example.test -t b@example.test 127.0.0.1:$p >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  kill $pid; wait $pid 2>/dev/null || true
  RATE=$(python3 -c "print(round($n/($t1-$t0),1))")
  ERRS=$(grep -c "event=plugin_error" "$OUT/$name.log" || true)
  printf '%-26s %6d msgs  %8.1f msg/s  plugin errors %s\n' "$name" "$n" "$RATE" "$ERRS"
}

echo "mxgate plugin benchmark: smtp-source -s $CONC, 4 KiB messages, 1 worker, smtp-sink backend"
# none and empty alternate twice, best of each: the machine is shared and noisy.
BASE=0; EMPTY=0
for i in 1 2; do
  run none $N ""; BASE=$(python3 -c "print(max($BASE,$RATE))")
  run empty_plugin $N "plugins:
  - { name: empty, path: \"$BUILD/empty_plugin.so\" }"; EMPTY=$(python3 -c "print(max($EMPTY,$RATE))")
done
python3 -c "b=$BASE;e=$EMPTY
print('empty dlopen plugin: %.1f%% of no-plugin throughput, %+.1f us per message' % (100*e/b, (1e6/e-1e6/b)) if b and e else '')"
# The same overhead in process, without the network noise: the hook chain at end of data.
LIB=$BUILD/libmxcore.a
if [ -f "$LIB" ] && [ -f "$BUILD/empty_plugin.so" ]; then
  PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2"  # = CMakeLists.txt DEPS
  pkg-config --exists libhs && PKGS="$PKGS libhs"
  if cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT" -I"$ROOT/proxy" -o "$OUT/bench_plugins" "$ROOT/bench/bench_plugins.c" \
      "$LIB" $(pkg-config --cflags --libs $PKGS) -lspf2 -lresolv -ldl -lm -lpthread 2>"$OUT/cc.log"; then
    for c in none empty; do
      { echo "hostname: mx.example.test"; echo "listen: [ { address: \"127.0.0.1:1\" } ]";
        echo "backends: { servers: [ { address: \"smtp://127.0.0.1:2\" } ] }"; } >"$OUT/chain-$c.yaml"
    done
    printf 'plugins:\n  - { name: empty, path: "%s" }\n' "$BUILD/empty_plugin.so" >>"$OUT/chain-empty.yaml"
    "$OUT/bench_plugins" "$OUT/chain-none.yaml" "$OUT/chain-empty.yaml" || true
  else
    echo "in-process chain bench did not build: $(tail -1 "$OUT/cc.log")"
  fi
fi
if [ -n "$CLAMD" ] && waitport $CLAMD; then
  run clamd $N "plugins:
  - { name: clamd, address: \"127.0.0.1:$CLAMD\", timeout: 30s }"; CL=$RATE
  python3 -c "print('clamd: %.1f%% of no-plugin throughput' % (100*$CL/$BASE) if $BASE else '')"
  if [ -n "$MILTER" ] && waitport $MILTER; then
    run none_short $NM ""; B2=$RATE
    run clamd_milter $NM "plugins:
  - { name: clamd, address: \"127.0.0.1:$CLAMD\", timeout: 30s }
  - { name: milter, address: \"inet:127.0.0.1:$MILTER\", timeout: 30s }"; CM=$RATE
    python3 -c "print('clamd + python3-milter: %.1f%% of no-plugin throughput (the python milter dominates)' % (100*$CM/$B2) if $B2 else '')"
  fi
else
  echo "clamd not available: clamd figures skipped"
fi
