#!/bin/bash
# bayes_cv.sh — cross-validation of the classifier inside each split's training half (and,
# with --test, the test half for the report): builds bench/bayes_cv.c against libmxcore.a
# and runs bench/bayes_cv.py. About 15 s a split (the first run: 30 s more for mxgate's rule
# hits when spamd's cache is absent). See docs/classifier.md.
#
#   bench/bayes_cv.sh [--split time|interleaved|both] [--folds 5] [--seed N] [--test]
#       [--tool-args '-c chi' | '-p' | '-M 1' ...] [--misses FILE] [--grid | --sel-grid]
#       [--hits auto|spamd|mxgate] [--dump FILE] [--explain]  (MX_BUILD_DIR: libmxcore.a's)
# --dump FILE: per message p and rule hits, for bench/bayes_cv_learn.py (learned weights).
# --test --stream N --learn-on error|tone|all: a site that learns its misses (or near misses,
# or everything) after each batch of N (docs/classifier.md, "Issue 9 §2, second pass").
# --explain (with --test --misses FILE): then bench/bayes_misses.py on FILE: each error's
# token evidence, shape and cause, and the table of causes.
# --help: bench/bayes_cv.py's options; the tool's (--tool-args): bench/bayes_cv.c's header.
set -euo pipefail
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${MX_BUILD_DIR:-$SRC/build}
TMP=$(mktemp -d /tmp/bayes-cv.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
[ -f "$BUILD/libmxcore.a" ] || { echo "bayes_cv: build first ($BUILD/libmxcore.a missing)"; exit 1; }
PKGS="libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2 libhs"  # = CMakeLists.txt DEPS
cc -O2 -D_GNU_SOURCE -DPCRE2_CODE_UNIT_WIDTH=8 -I"$SRC" -I"$SRC/proxy" \
	$(pkg-config --cflags $PKGS) "$SRC/bench/bayes_cv.c" "$BUILD/libmxcore.a" \
	$(pkg-config --libs $PKGS) -lspf2 -ldl -lm -lpthread -o "$TMP/bayes_cv"
# --explain: after --misses FILE, each error's token evidence, shape and cause
# (bench/bayes_misses.py, docs/classifier.md "The errors at the operating point")
ARGS=() EXPLAIN=0 MISSES=
while [ $# -gt 0 ]; do
	case $1 in
	--explain) EXPLAIN=1 ;;
	--misses) MISSES=$2; ARGS+=("$1" "$2"); shift ;;
	*) ARGS+=("$1") ;;
	esac
	shift
done
python3 "$SRC/bench/bayes_cv.py" "$TMP/bayes_cv" ${ARGS[@]+"${ARGS[@]}"}
if [ "$EXPLAIN" = 1 ]; then
	[ -n "$MISSES" ] || { echo "bayes_cv: --explain needs --misses FILE"; exit 1; }
	python3 "$SRC/bench/bayes_misses.py" "$TMP/bayes_cv" "$MISSES"
fi
