#!/bin/bash
# bench_classifier.sh — the learning classifier on the SpamAssassin public corpus: learn the
# training split (spam-1 + easy-ham-1) offline with `mxgate learn`, score the test split
# (spam-2 + easy-ham-2 + hard-ham-1) through the daemon; spam caught %, ham misfiled %, msg/s,
# alone and with the stock SpamAssassin rules on top. See bench/bench_classifier.py.
#
#   bench/bench_classifier.sh [path/to/mxgate] [--quick N] [--tokens sa|osb] [--spamd-rate N]
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${1:-${MXGATE_BIN:-$SRC/build/mxgate}}
[ $# -gt 0 ] && shift
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
exec python3 "$SRC/bench/bench_classifier.py" "$BIN" "$@"
