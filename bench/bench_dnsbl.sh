#!/usr/bin/env bash
# bench_dnsbl.sh — throughput with five DNS lists against a real rbldnsd, as a ratio of the
# no-filter run in the same script:
#
#   bench/bench_dnsbl.sh [path/to/mxgate]
#
# Four runs of `smtp-source -s 20 -m N -l 4096` (N = 2000, 500 with BENCH_QUICK=1) through
# mxgate to smtp-sink: no filter; five lists with the pass cache (a client that passed is not
# queried again: the steady state for a returning client); five lists with the DNS cache only
# (pass_ttl 0: five cache lookups per connection); five lists cold (cache_size 0, pass_ttl 0:
# five queries to rbldnsd per connection). The client is 127.0.0.1, not listed anywhere, so
# every message is delivered and every lookup is an NXDOMAIN. Prints msg/s and the ratios, and
# appends one summary line to $BENCH_SUMMARY when bench/run.sh set it.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${MXGATE_BIN:-$ROOT/build/mxgate}}
N=2000
[ "${BENCH_QUICK:-0}" != 0 ] && N=500

tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }
for t in smtp-sink smtp-source rbldnsd python3; do
  if [ -z "$(tool $t)" ]; then echo "bench_dnsbl: $t not installed: skipped"; exit 0; fi
done
[ -x "$BIN" ] || { echo "bench_dnsbl: $BIN not executable"; exit 1; }

OUT=$(mktemp -d /tmp/mxbench-dnsbl-XXXXXX)
chmod 755 "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$OUT"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() {
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# ---- peers
SINK=$(freeport)
u=(); [ "$(id -u)" = 0 ] && u=(-u nobody)
"$(tool smtp-sink)" -c "${u[@]}" -m 256 127.0.0.1:"$SINK" 1024 >"$OUT/sink.log" 2>&1 &
PIDS+=($!)
waitport "$SINK" || { echo "bench_dnsbl: smtp-sink did not start"; exit 1; }

RBL=$(freeport)
mkdir -p "$OUT/rbl" && chmod 755 "$OUT/rbl"
specs=()
for i in 1 2 3 4 5; do
  printf ':127.0.0.2:Listed in z%d.test\n198.18.%d.0/24\n192.0.2.%d\n' "$i" "$i" "$i" >"$OUT/rbl/z$i.test"
  chmod 644 "$OUT/rbl/z$i.test"
  specs+=("z$i.test:ip4set:z$i.test")
done
"$(tool rbldnsd)" -n -a -b 127.0.0.1/"$RBL" -w "$OUT/rbl" "${specs[@]}" >"$OUT/rbl.log" 2>&1 &
PIDS+=($!)
sleep 0.3

lists() {
  echo "  lists:"
  for i in 1 2 3 4 5; do
    echo "    - { zone: z$i.test, weight: 1, codes: [\"127.0.0.2-127.0.0.11\"] }"
  done
}

# run NAME EXTRA_YAML -> prints msg/s
run() {
  local name=$1 extra=$2 port cfg pid t0 t1 rate
  port=$(freeport)
  cfg=$OUT/$name.yaml
  cat >"$cfg" <<EOF
hostname: mx.bench.test
workers: 2
listen:
  - address: "127.0.0.1:$port"
backends:
  servers:
    - { address: "smtp://127.0.0.1:$SINK" }
log: { level: warning }
$extra
EOF
  "$BIN" -c "$cfg" >"$OUT/$name.log" 2>&1 &
  pid=$!
  if ! waitport "$port"; then
    echo "bench_dnsbl: mxgate did not start for $name: $(tail -n 2 "$OUT/$name.log")" >&2
    kill "$pid" 2>/dev/null
    echo 0
    return
  fi
  t0=$(date +%s.%N)
  "$(tool smtp-source)" -s 20 -m "$N" -l 4096 -f a@example.test -t b@example.test \
    127.0.0.1:"$port" >"$OUT/$name.src" 2>&1
  t1=$(date +%s.%N)
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  echo "$rate"
}

DNS="dns: { resolvers: [\"127.0.0.1:$RBL\"], timeout: 2s }"
base=$(run base "")
pass=$(run passcache "$DNS
dnsbl:
  threshold: 3
  action: reject
$(lists)")
dcache=$(run dnscache "$DNS
dnsbl:
  threshold: 3
  action: reject
  pass_ttl: 0
$(lists)")
cold=$(run cold "dns: { resolvers: [\"127.0.0.1:$RBL\"], timeout: 2s, cache_size: 0 }
dnsbl:
  threshold: 3
  action: reject
  pass_ttl: 0
$(lists)")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf 'bench_dnsbl: smtp-source -s 20 -m %d -l 4096, 5 DNS lists on rbldnsd, client 127.0.0.1\n' "$N"
printf '  %-34s %7s msg/s\n' "no filter" "$base"
printf '  %-34s %7s msg/s  ratio %s\n' "5 lists, pass cache (hits)" "$pass" "$(ratio "$pass" "$base")"
printf '  %-34s %7s msg/s  ratio %s\n' "5 lists, DNS cache only (hits)" "$dcache" "$(ratio "$dcache" "$base")"
printf '  %-34s %7s msg/s  ratio %s\n' "5 lists, cold (5 queries/conn)" "$cold" "$(ratio "$cold" "$base")"
if [ -n "${BENCH_SUMMARY:-}" ]; then
  printf 'dnsbl: 5 lists vs no filter: pass-cache %s, dns-cache %s, cold %s (base %s msg/s)\n' \
    "$(ratio "$pass" "$base")" "$(ratio "$dcache" "$base")" "$(ratio "$cold" "$base")" "$base" >>"$BENCH_SUMMARY"
fi
