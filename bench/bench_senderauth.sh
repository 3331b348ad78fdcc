#!/usr/bin/env bash
# bench_senderauth.sh — throughput with DKIM + ARC + DMARC on vs off, side by side in one run:
#
#   bench/bench_senderauth.sh [path/to/mxgate]
#
# The same dkimpy-signed message (RSA-2048 DKIM signature of example.org, From example.org,
# DMARC p=reject at dnsmasq; about 4 KiB) is sent N times (N = 2000, 500 with
# BENCH_QUICK=1) over 20 connections that each send messages back to back, into smtp-sink:
#   off      no sender authentication
#   on       dkim + arc + dmarc enabled, keys and DMARC records from the DNS cache (the
#            steady state: a handful of signers send most mail)
#   cold     the same with the DNS cache off (cache_size 0): two queries to dnsmasq per message
#   sealed   `on` plus ARC sealing (arc.seal, RSA-2048): an ARC set added to every message
# Each configuration runs twice, alternating, and the better run counts. Prints msg/s and the
# ratio to `off`, and appends a summary line to $BENCH_SUMMARY when bench/run.sh set it.
# Needs dnsmasq (dnsmasq-base), smtp-sink (postfix), /usr/bin/python3 with python3-dkim.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${MXGATE_BIN:-$ROOT/build/mxgate}}
N=2000
[ "${BENCH_QUICK:-0}" != 0 ] && N=500
CONC=20

tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }
for t in smtp-sink dnsmasq openssl python3; do
  if [ -z "$(tool $t)" ]; then echo "bench_senderauth: $t not installed: skipped"; exit 0; fi
done
if ! /usr/bin/python3 -c 'import dkim' 2>/dev/null; then
  echo "bench_senderauth: python3-dkim not installed: skipped"; exit 0
fi
[ -x "$BIN" ] || { echo "bench_senderauth: $BIN not executable"; exit 1; }

OUT=$(mktemp -d /tmp/mxbench-senderauth-XXXXXX)
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

# ---- the signed message and its records
openssl genrsa -traditional -out "$OUT/key.pem" 2048 2>/dev/null
openssl genrsa -out "$OUT/seal.pem" 2048 2>/dev/null
P=$(openssl rsa -in "$OUT/key.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
{
  printf 'From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: bench\r\n'
  printf 'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n\r\n'
  for i in $(seq 50); do printf 'line %02d of a benchmark message body with some words in it ....\r\n' "$i"; done
} >"$OUT/plain.eml"
/usr/bin/python3 "$ROOT/tests/integration/dkim_signer.py" sign "$OUT/key.pem" bench example.org \
  <"$OUT/plain.eml" >"$OUT/signed.eml" || { echo "bench_senderauth: signing failed"; exit 1; }

# ---- peers
SINK=$(freeport)
u=(); [ "$(id -u)" = 0 ] && u=(-u nobody)
"$(tool smtp-sink)" -c "${u[@]}" -m 256 127.0.0.1:"$SINK" 1024 >"$OUT/sink.log" 2>&1 &
PIDS+=($!)
waitport "$SINK" || { echo "bench_senderauth: smtp-sink did not start"; exit 1; }

DNSP=$(freeport)
"$(tool dnsmasq)" -k --conf-file=/dev/null --no-resolv --no-hosts --port="$DNSP" \
  --listen-address=127.0.0.1 --bind-interfaces --local=/example.org/example.test/ --local-ttl=300 \
  --txt-record="bench._domainkey.example.org,v=DKIM1; k=rsa; p=$P" \
  --txt-record="_dmarc.example.org,v=DMARC1; p=reject" >"$OUT/dnsmasq.log" 2>&1 &
PIDS+=($!)
sleep 0.3

# ---- the client: CONC connections, each sending its share back to back; prints msg/s
cat >"$OUT/blast.py" <<'EOF'
import asyncio, sys, time
port, n, conc, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = open(path, 'rb').read().replace(b'\r\n.', b'\r\n..') + b'.\r\n'
ok = 0
async def reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError('closed')
        if line[3:4] != b'-':
            return int(line[:3])
async def worker(count):
    global ok
    r, w = await asyncio.open_connection('127.0.0.1', port)
    await reply(r)
    w.write(b'EHLO bench.example\r\n'); await reply(r)
    for _ in range(count):
        w.write(b'MAIL FROM:<bounce@bench.example>\r\n'); await reply(r)
        w.write(b'RCPT TO:<bob@example.test>\r\n'); await reply(r)
        w.write(b'DATA\r\n'); await reply(r)
        w.write(data)
        c = await reply(r); ok += c == 250
        if c != 250: print("code", c, file=sys.stderr)
    w.write(b'QUIT\r\n'); await reply(r); w.close()
async def main():
    t0 = time.time()
    await asyncio.gather(*[worker(n // conc + (i < n % conc)) for i in range(conc)])
    return time.time() - t0
secs = asyncio.run(main())
print('%.0f %d' % (n / secs, ok))
EOF

# run NAME EXTRA_YAML -> prints msg/s (0 when it could not run or lost messages)
run() {
  local name=$1 extra=$2 port cfg pid res rate ok
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
    echo "bench_senderauth: mxgate did not start for $name: $(tail -n 2 "$OUT/$name.log")" >&2
    kill "$pid" 2>/dev/null
    echo 0
    return
  fi
  res=$(python3 "$OUT/blast.py" "$port" "$N" "$CONC" "$OUT/signed.eml" 2>"$OUT/$name.err")
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rate=${res% *}
  ok=${res#* }
  if [ -z "$res" ] || [ "$ok" != "$N" ]; then
    echo "bench_senderauth: $name: $ok of $N delivered: $(tail -n 2 "$OUT/$name.err")" >&2
    echo 0
    return
  fi
  echo "$rate"
}

best() { [ "$1" -ge "$2" ] && echo "$1" || echo "$2"; }

DNS="dns: { resolvers: [\"127.0.0.1:$DNSP\"], timeout: 2s }"
ON="dkim: { enabled: true }
arc: { enabled: true }
dmarc: { enabled: true, action: honor }"
SEALED="dkim: { enabled: true }
arc: { enabled: true, seal: { enabled: true, domain: example.net, selector: seal, private_key: \"$OUT/seal.pem\" } }
dmarc: { enabled: true, action: honor }"
off=0; on=0; cold=0; sealed=0
for round in 1 2; do
  off=$(best "$off" "$(run off$round "")")
  on=$(best "$on" "$(run on$round "$DNS
$ON")")
  cold=$(best "$cold" "$(run cold$round "dns: { resolvers: [\"127.0.0.1:$DNSP\"], timeout: 2s, cache_size: 0 }
$ON")")
  sealed=$(best "$sealed" "$(run sealed$round "$DNS
$SEALED")")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf 'bench_senderauth: %d signed messages (RSA-2048 DKIM, DMARC p=reject), %d connections, best of 2\n' "$N" "$CONC"
printf '  %-34s %6s msg/s\n' "off (no sender authentication)" "$off"
printf '  %-34s %6s msg/s  (%s of off)\n' "DKIM+ARC+DMARC, keys cached" "$on" "$(ratio "$on" "$off")"
printf '  %-34s %6s msg/s  (%s of off)\n' "DKIM+ARC+DMARC, DNS cache off" "$cold" "$(ratio "$cold" "$off")"
printf '  %-34s %6s msg/s  (%s of on)\n' "DKIM+ARC+DMARC + ARC sealing" "$sealed" "$(ratio "$sealed" "$on")"
if [ -n "${BENCH_SUMMARY:-}" ]; then
  printf 'senderauth: off %s msg/s, DKIM+DMARC cached %s msg/s (%s), uncached %s msg/s (%s), sealed %s msg/s (%s of cached)\n' \
    "$off" "$on" "$(ratio "$on" "$off")" "$cold" "$(ratio "$cold" "$off")" "$sealed" "$(ratio "$sealed" "$on")" >>"$BENCH_SUMMARY"
fi
