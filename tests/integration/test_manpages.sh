#!/usr/bin/env bash
# The manuals: mxgate(8), mxgatectl(8) and mxgate.yaml(5) render without a warning (groff
# -ww and man --warnings, 80 columns), and the committed mxgate.yaml.5 is exactly what
# `mxgate --dump-config-man` generates from the config tables (so it cannot drift from
# them or from docs/config.md, which comes from the same walk).
set -u
SRC=${MX_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${MXGATE_BIN:-$SRC/build/mxgate}
fails=0
for t in groff man; do
	if ! command -v $t >/dev/null; then
		[ "${CI:-}" = true ] && { echo "FAIL $t not installed"; exit 1; }
		echo "SKIP: $t not installed"
		exit 0
	fi
done
[ -x "$BIN" ] || { echo "SKIP: mxgate not built: $BIN"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if "$BIN" --dump-config-man >"$tmp/gen.5" && cmp -s "$tmp/gen.5" "$SRC/man/mxgate.yaml.5"; then
	echo "ok   man/mxgate.yaml.5 is what mxgate --dump-config-man generates"
else
	echo "FAIL man/mxgate.yaml.5 differs from the tables; regenerate with"
	echo "     build/mxgate --dump-config-man > man/mxgate.yaml.5"
	diff "$SRC/man/mxgate.yaml.5" "$tmp/gen.5" | head -20
	fails=$((fails + 1))
fi
for page in mxgate.8 mxgatectl.8 mxgate.yaml.5; do
	f=$SRC/man/$page
	out=$(groff -ww -z -man "$f" 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then echo "ok   groff -ww: $page clean"; else
		echo "FAIL groff -ww: $page: $out"; fails=$((fails + 1)); fi
	out=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >"$tmp/page.txt")
	if [ $? -eq 0 ] && [ -z "$out" ] && [ -s "$tmp/page.txt" ]; then echo "ok   man --warnings -l: $page clean"; else
		echo "FAIL man --warnings -l: $page: $out"; fails=$((fails + 1)); fi
done
# Every form of the command line `mxgate -h` shows is in mxgate(8): its words (learn,
# --dump-config-man ...) appear in the page as rendered.
MANWIDTH=200 man -l "$SRC/man/mxgate.8" 2>/dev/null | tr -s ' ' >"$tmp/mxgate8.txt"
"$BIN" -h 2>&1 | sed -n 's/^ *\(usage: \)\{0,1\}\(mxgate [^ ].*[^ ]\)   .*/\2/p' | sed 's/  .*//' >"$tmp/usage.txt"
[ -s "$tmp/usage.txt" ] || { echo "FAIL mxgate -h shows no usage lines"; fails=$((fails + 1)); }
while read -r form; do
	missing=""
	for w in $form; do
		case $w in FILE|PATH...|mxgate) continue ;; esac
		for alt in $(echo "$w" | tr '|' ' '); do
			grep -qF -- "$alt" "$tmp/mxgate8.txt" || missing="$missing $alt"
		done
	done
	[ -z "$missing" ] && echo "ok   mxgate(8) documents: $form" ||
		{ echo "FAIL mxgate(8) lacks$missing of: $form"; fails=$((fails + 1)); }
done <"$tmp/usage.txt"
# The keys a reload cannot change (proxy/main.c's table) are the ones mxgatectl(8) names.
code=$(sed -n '/keys\[\] = {/,/};/p' "$SRC/proxy/main.c" | sed -n 's/^[[:space:]]*{ "\([a-z._]*\)",.*/\1/p' | sort | tr '\n' ' ')
page=$(tr '\n' ' ' <"$SRC/man/mxgatectl.8" | sed -n 's/.*Keys made once at start (\([^)]*\)).*/\1/p' | tr -d ' ' | tr ',' '\n' | sort | tr '\n' ' ')
[ -n "$code" ] && [ "$code" = "$page" ] && echo "ok   mxgatectl(8) names the start-only keys: $code" ||
	{ echo "FAIL mxgatectl(8) names the start-only keys [$page], the code has [$code]"; fails=$((fails + 1)); }
# Every key of the tables is in the manual (spot checks across sections).
for key in max_connections_per_ip health_check socket pass_ttl add_header; do
	grep -q "^\.B $key\$" "$SRC/man/mxgate.yaml.5" && echo "ok   mxgate.yaml.5 describes $key" ||
		{ echo "FAIL mxgate.yaml.5 lacks $key"; fails=$((fails + 1)); }
done
[ $fails -eq 0 ] && { echo "all checks passed"; exit 0; }
echo "$fails check(s) failed"
exit 1
