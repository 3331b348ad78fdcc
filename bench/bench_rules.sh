#!/bin/bash
# bench_rules.sh — messages/s scored with Debian's stock SpamAssassin rules, by mxgate's
# rules engine (bench/rules_score.c linked against libmxcore.a, one thread) and by spamd
# (spamc, 2 children, 2 concurrent clients) on the same messages in the same run.
# Prints both rates and the ratio. Standalone; about 30-50 s (SECS, SPAMD_SECS bound it).
#
#   MX_BUILD_DIR=build bench/bench_rules.sh
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${MX_BUILD_DIR:-$SRC/build}
RULES=${RULES:-/usr/share/spamassassin/*.cf}
SECS=${SECS:-6}
TMP=$(mktemp -d /tmp/bench-rules.XXXXXX)
SPAMD_PID=
cleanup() {
	[ -n "$SPAMD_PID" ] && kill "$SPAMD_PID" 2>/dev/null && wait "$SPAMD_PID" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

[ -f "$BUILD/libmxcore.a" ] || { echo "bench_rules: build first ($BUILD/libmxcore.a missing)"; exit 1; }
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libhs"
cc -O2 -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 -I"$SRC" -I"$SRC/proxy" \
	$(pkg-config --cflags $PKGS) "$SRC/bench/rules_score.c" "$BUILD/libmxcore.a" \
	$(pkg-config --libs $PKGS) -lspf2 -ldl -lm -lpthread -o "$TMP/rules_score"

MSGS=("$SRC"/tests/data/sa/*.eml "$SRC"/tests/data/rules/*.eml)
N=${#MSGS[@]}

# ---- mxgate's engine: load once, then score the set repeatedly for about SECS/2 s
OUT=$("$TMP/rules_score" -t "$SECS" -r "$RULES" "${MSGS[@]}" 2>&1 >/dev/null)
LOAD=$(echo "$OUT" | grep '^rules:' || true)
OUT=$(echo "$OUT" | tail -1)
MX_RATE=$(echo "$OUT" | sed -n 's/.*: \([0-9.]*\) msg\/s/\1/p')

# ---- spamd with the same rules (site config: no network, no Bayes)
mkdir -p "$TMP/sa"
cp /etc/spamassassin/*.pre "$TMP/sa/" 2>/dev/null || true
cat > "$TMP/sa/local.cf" <<'CF'
required_score 5.0
dns_available no
skip_rbl_checks 1
use_bayes 0
bayes_auto_learn 0
use_razor2 0
use_pyzor 0
report_safe 0
CF
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
spamd --listen=127.0.0.1:$PORT --allowed-ips=127.0.0.1 --siteconfigpath="$TMP/sa" --local \
	--nouser-config --username=nobody -m 2 --min-children=2 >"$TMP/spamd.log" 2>&1 &
SPAMD_PID=$!
for i in $(seq 1 300); do
	grep -q 'server started' "$TMP/spamd.log" 2>/dev/null && break
	sleep 0.1
done
spamc -d 127.0.0.1 -p $PORT -c < "${MSGS[0]}" >/dev/null 2>&1 || true   # warm up
printf '%s\n' "${MSGS[@]}" > "$TMP/list"
# one pass over the set, 2 clients in parallel, bounded by SPAMD_SECS
START=$(date +%s.%N)
timeout "${SPAMD_SECS:-20}" xargs -P 2 -I{} sh -c \
	"spamc -d 127.0.0.1 -p $PORT -c < {} >/dev/null 2>&1; echo done >> $TMP/done" < "$TMP/list" || true
NOW=$(date +%s.%N)
DONE=$(wc -l < "$TMP/done" 2>/dev/null || echo 0)
SA_RATE=$(awk -v n=$DONE -v a="$START" -v b="$NOW" 'BEGIN{printf "%.1f", n / (b - a)}')

echo "bench_rules: $N messages (tests/data/sa, tests/data/rules); stock rules: $RULES"
echo "bench_rules: $LOAD"
echo "bench_rules: mxgate engine  $MX_RATE msg/s (1 thread)"
echo "bench_rules: spamd          $SA_RATE msg/s (2 children, 2 clients)"
awk -v a="$MX_RATE" -v b="$SA_RATE" 'BEGIN{printf "bench_rules: ratio          %.1fx (target >= 20x)\n", a / b}'
