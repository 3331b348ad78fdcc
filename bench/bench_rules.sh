#!/bin/bash
# bench_rules.sh — messages/s scored with Debian's stock SpamAssassin rules, by mxgate's
# rules engine (bench/rules_score.c linked against libmxcore.a, one thread) and by spamd
# (spamc, 2 children, 2 concurrent clients) on the same messages in the same run.
# Prints both rates and the ratio. Then end-to-end proxy throughput (smtp-source -s 20 -m N
# -l 4096 through mxgate into smtp-sink) with no rules, the default rules and the stock SA
# rules, as ratios of the no-rules run. Standalone; about 60 s (SECS, SPAMD_SECS, N bound it).
#
#   bench/bench_rules.sh [path/to/mxgate]      (MX_BUILD_DIR: where libmxcore.a is)
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${1:-${MXGATE_BIN:-}}
BUILD=${MX_BUILD_DIR:-$( [ -n "$BIN" ] && dirname "$BIN" || echo "$SRC/build")}
BIN=${BIN:-$BUILD/mxgate}
QUICK=${BENCH_QUICK:-0}
N=${N:-$( [ "$QUICK" != 0 ] && echo 500 || echo 2000)}
RULES=${RULES:-/usr/share/spamassassin/*.cf}
SECS=${SECS:-6}
TMP=$(mktemp -d /tmp/bench-rules.XXXXXX)
chmod 755 "$TMP"   # spamd reads its site config as nobody
SPAMD_PID=
PIDS=()
cleanup() {
	[ -n "$SPAMD_PID" ] && kill "$SPAMD_PID" 2>/dev/null && wait "$SPAMD_PID" 2>/dev/null || true
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

[ -f "$BUILD/libmxcore.a" ] || { echo "bench_rules: build first ($BUILD/libmxcore.a missing)"; exit 1; }
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libhs"
cc -O2 -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 -I"$SRC" -I"$SRC/proxy" \
	$(pkg-config --cflags $PKGS) "$SRC/bench/rules_score.c" "$BUILD/libmxcore.a" \
	$(pkg-config --libs $PKGS) -lspf2 -ldl -lm -lpthread -o "$TMP/rules_score"

MSGS=("$SRC"/tests/data/sa/*.eml "$SRC"/tests/data/rules/*.eml)
NMSG=${#MSGS[@]}

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
# warm up both children (each compiles the rules on its first message)
WP=()
for w in 1 2 3 4; do spamc -d 127.0.0.1 -p $PORT -c < "${MSGS[0]}" >/dev/null 2>&1 & WP+=($!); done
wait "${WP[@]}" 2>/dev/null || true
printf '%s\n' "${MSGS[@]}" > "$TMP/list"
# one pass over the set, 2 clients in parallel, bounded by SPAMD_SECS
START=$(date +%s.%N)
timeout "${SPAMD_SECS:-20}" xargs -P 2 -I{} sh -c \
	"spamc -d 127.0.0.1 -p $PORT -c < {} >/dev/null 2>&1; echo done >> $TMP/done" < "$TMP/list" || true
NOW=$(date +%s.%N)
DONE=$(wc -l < "$TMP/done" 2>/dev/null || echo 0)
SA_RATE=$(awk -v n=$DONE -v a="$START" -v b="$NOW" 'BEGIN{printf "%.1f", n / (b - a)}')

echo "bench_rules: $NMSG messages (tests/data/sa, tests/data/rules); stock rules: $RULES"
echo "bench_rules: $LOAD"
echo "bench_rules: mxgate engine  $MX_RATE msg/s (1 thread)"
echo "bench_rules: spamd          $SA_RATE msg/s (2 children, 2 clients)"
awk -v a="$MX_RATE" -v b="$SA_RATE" 'BEGIN{printf "bench_rules: ratio          %.1fx (target >= 20x)\n", a / b}'

# ---- end to end: proxy throughput with rules, as a ratio of the no-rules run
tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; }; }
if [ -x "$BIN" ] && [ -n "$(tool smtp-sink)" ] && [ -n "$(tool smtp-source)" ]; then
	freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
	waitport() {
		for _ in $(seq 400); do
			(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
			sleep 0.05
		done
		return 1
	}
	chmod 755 "$TMP"
	SINK=$(freeport)
	u=(); [ "$(id -u)" = 0 ] && u=(-u nobody)
	"$(tool smtp-sink)" -c "${u[@]}" -m 256 127.0.0.1:"$SINK" 1024 >"$TMP/sink.log" 2>&1 &
	PIDS+=($!)
	waitport "$SINK"
	e2e() {   # NAME RULES_YAML -> msg/s
		local name=$1 extra=$2 port cfg pid t0 t1
		port=$(freeport)
		cfg=$TMP/$name.yaml
		printf 'hostname: mx.bench.test\nworkers: 2\nlisten:\n  - address: "127.0.0.1:%s"\nbackends:\n  servers:\n    - { address: "smtp://127.0.0.1:%s" }\nlog: { level: warning }\n%s\n' \
			"$port" "$SINK" "$extra" >"$cfg"
		"$BIN" -c "$cfg" >"$TMP/$name.log" 2>&1 &
		pid=$!
		if ! waitport "$port"; then echo 0; kill "$pid" 2>/dev/null; return; fi
		sleep 0.5
		t0=$(date +%s.%N)
		"$(tool smtp-source)" -s 20 -m "$N" -l 4096 -f a@example.test -t b@example.test \
			127.0.0.1:"$port" >"$TMP/$name.src" 2>&1
		t1=$(date +%s.%N)
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
	}
	base=$(e2e base "")
	dflt=$(e2e default "rules: { files: [\"$SRC/rules/default.rules\"], actions: { add_header: 5, reject: 15 } }")
	stock=$(e2e stock "rules: { files: [\"$RULES\"], actions: { add_header: 5, reject: 15 } }")
	r() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
	echo "bench_rules: e2e smtp-source -s 20 -m $N -l 4096: no rules $base msg/s, default rules $dflt msg/s ($(r "$dflt" "$base")x), stock SA rules $stock msg/s ($(r "$stock" "$base")x)"
	if [ -n "${BENCH_SUMMARY:-}" ]; then
		echo "bench_rules: stock SA rules: mxgate engine $MX_RATE msg/s vs spamd $SA_RATE msg/s; e2e default rules $(r "$dflt" "$base")x, stock $(r "$stock" "$base")x of no-rules ($base msg/s)" >>"$BENCH_SUMMARY"
	fi
else
	echo "bench_rules: e2e skipped (mxgate at $BIN or smtp-sink/smtp-source missing)"
fi
