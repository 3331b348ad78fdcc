#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs: every benchmark under bench/, then a summary.
#
#   bash bench/run.sh [path/to/mxgate]     (default: $MXGATE_BIN, else build/mxgate)
#
# Order: bench_core first, then those of bench_dnsbl.sh, bench_ratelimit.*, bench_plugins.sh,
# bench_rules.sh, bench_senderauth.sh that exist and are executable. Each is called with the
# daemon's path as $1 and in the environment (MXGATE_BIN, MX_SOURCE_DIR, MX_BUILD_DIR, BENCH_QUICK, BENCH_SUMMARY)
# and prints its own figures, each next to a baseline measured in the same run. A missing or
# failing sub-benchmark prints a note and the run goes on. Nothing here asserts timings.
#
# BENCH_QUICK=1 asks every benchmark for a reduced run; BENCH_PROFILE=1 adds a perf profile
# of mxgate to bench_core; BENCH_TIMEOUT (seconds, default 900) bounds each sub-benchmark;
# BENCH_SCRIPTS="core dnsbl" runs only those (names after bench_).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${MXGATE_BIN:-$ROOT/build/mxgate}}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
BUILD=${MX_BUILD_DIR:-$(dirname "$BIN")}
export MXGATE_BIN=$BIN MX_SOURCE_DIR=$ROOT MX_BUILD_DIR=$BUILD
export BENCH_QUICK=${BENCH_QUICK:-0}

if [ ! -x "$BIN" ]; then
  echo "bench: $BIN not found or not executable (run make first)"
  exit 1
fi

# 10,000 idle sessions need as many descriptors in the daemon (which inherits this) and in
# the client; take what the hard limit allows when 65536 is refused.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

OUT=$(mktemp -d /tmp/mxbench-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
export BENCH_SUMMARY=$OUT/summary
: >"$BENCH_SUMMARY"

echo "bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "RLIMIT_NOFILE $(ulimit -n), daemon $BIN$( [ "$BENCH_QUICK" != 0 ] && echo ', QUICK')"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "bench: note: the machine is busy (load $load1): absolute figures are noisy, compare ratios"
fi

# Sub-benchmarks in order; a glob that matches nothing stays literal and reads as missing.
candidates=()
for c in "$ROOT"/bench/bench_core.py "$ROOT"/bench/bench_core.sh; do
  [ -e "$c" ] && { candidates+=("$c"); break; }
done
[ ${#candidates[@]} -eq 0 ] && candidates+=("$ROOT/bench/bench_core.py")
candidates+=("$ROOT/bench/bench_dnsbl.sh")
rl=0
for c in "$ROOT"/bench/bench_ratelimit.*; do
  case $c in *.c | *.h | *.md | *.txt) continue ;; esac
  [ -e "$c" ] && { candidates+=("$c"); rl=1; }
done
[ $rl -eq 0 ] && candidates+=("$ROOT/bench/bench_ratelimit.sh")
candidates+=("$ROOT/bench/bench_plugins.sh" "$ROOT/bench/bench_rules.sh" "$ROOT/bench/bench_senderauth.sh")

status=()
core_failed=0
for b in "${candidates[@]}"; do
  name=$(basename "$b")
  echo
  echo "======== $name"
  if [ -n "${BENCH_SCRIPTS:-}" ]; then
    pick=0
    for w in $BENCH_SCRIPTS; do case $name in bench_"$w"*) pick=1 ;; esac; done
    if [ $pick -eq 0 ]; then
      echo "bench: $name not in BENCH_SCRIPTS: skipped"
      status+=("$(printf '%-22s skipped (BENCH_SCRIPTS)' "$name")")
      continue
    fi
  fi
  if [ ! -e "$b" ]; then
    echo "bench: $name is not there yet: skipped"
    status+=("$(printf '%-22s missing' "$name")")
    continue
  fi
  if [ ! -x "$b" ]; then
    echo "bench: $name is not executable: skipped"
    status+=("$(printf '%-22s not executable' "$name")")
    continue
  fi
  before=$(wc -l <"$BENCH_SUMMARY")
  t0=$(date +%s)
  timeout --kill-after=10 "${BENCH_TIMEOUT:-900}" "$b" "$BIN" 2>&1 | tee "$OUT/$name.out"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - t0 ))
  if [ "$rc" -eq 0 ]; then
    status+=("$(printf '%-22s ok (%d s)' "$name" "$secs")")
  else
    why="exit $rc"; [ "$rc" -eq 124 ] && why="timed out"
    echo "bench: $name failed ($why); going on"
    status+=("$(printf '%-22s FAILED: %s (%d s)' "$name" "$why" "$secs")")
    case $name in bench_core*) core_failed=1 ;; esac
  fi
  # A benchmark that wrote no summary lines is represented by the tail of its output.
  if [ "$(wc -l <"$BENCH_SUMMARY")" -eq "$before" ]; then
    grep -v '^[[:space:]]*$' "$OUT/$name.out" | tail -n 4 | sed "s|^|$name: |" >>"$BENCH_SUMMARY"
  fi
done

echo
echo "======== summary"
printf '%s\n' "${status[@]}"
echo
cat "$BENCH_SUMMARY"
# Only bench_core's own failure (lost messages, a peer that did not start) fails the run.
exit $core_failed
