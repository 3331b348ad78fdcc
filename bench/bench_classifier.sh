#!/bin/bash
# bench_classifier.sh — the learning classifier on the SpamAssassin public corpus, on two
# splits (the issue's time split: spam-1 + easy-ham-1 -> spam-2 + easy-ham-2 + hard-ham-1;
# interleaved: even-numbered messages -> odd ones): learn the training half offline with
# `mxgate learn`, score the test half through the daemon; spam caught %, ham misfiled %, msg/s,
# alone and with the stock SpamAssassin rules on top, the target next to each.
# See bench/bench_classifier.py.
#
#   bench/bench_classifier.sh [path/to/mxgate] [--split time|interleaved|both] [--quick N]
#       [--tokens sa|osb] [--combine odds|chi] [--spamd-rate N] [--sa-bayes]
#       [--no-autolearn] [--autolearn-on-error]
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${1:-${MXGATE_BIN:-$SRC/build/mxgate}}
[ $# -gt 0 ] && shift
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
exec python3 "$SRC/bench/bench_classifier.py" "$BIN" "$@"
