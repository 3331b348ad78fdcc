#!/bin/sh
# test_config_check.sh — `mxgate -t -c FILE` against good and bad configs: exit status and
# FILE:LINE:COL: key.path: reason lines (issue 2). Needs MXGATE_BIN and MX_SOURCE_DIR.
set -u
BIN=${MXGATE_BIN:?MXGATE_BIN not set}
SRC=${MX_SOURCE_DIR:?MX_SOURCE_DIR not set}
T=$(mktemp -d /tmp/mxgate-cfgcheck.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0

# expect LABEL STATUS FILE [PATTERN]: runs -t on FILE, wants exit STATUS and PATTERN in output
expect() {
	label=$1 want=$2 file=$3 pattern=${4:-}
	out=$("$BIN" -t -c "$file" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL $label: exit $rc, wanted $want: $out"
		fails=$((fails + 1))
	elif [ -n "$pattern" ] && ! printf '%s\n' "$out" | grep -qF -- "$pattern"; then
		echo "FAIL $label: no \"$pattern\" in: $out"
		fails=$((fails + 1))
	else
		echo "ok   $label"
	fi
}

expect "demo config" 0 "$SRC/examples/demo.yaml"
expect "reference config" 0 "$SRC/examples/mxgate.yaml"

cat > "$T/good.yaml" <<'YAML'
hostname: mx.example.test
workers: 2
listen:
  - address: "127.0.0.1:2599"
trusted_proxies: ["127.0.0.1/32"]
limits:
  max_connections: 20000
  max_connections_per_ip: 20000
backends:
  balance: round_robin
  client_identity: xclient
  health_check: { interval: 1s, timeout: 1s }
  servers:
    - { address: "smtp://127.0.0.1:2526" }
YAML
expect "acceptance-style config" 0 "$T/good.yaml"

sed 's/max_connections_per_ip: 20000/max_connections_per_ip: lots/' "$T/good.yaml" > "$T/bad.yaml"
expect "wrong type" 1 "$T/bad.yaml" \
	"$T/bad.yaml:8:27: limits.max_connections_per_ip: expected an integer, got \"lots\""

cat > "$T/many.yaml" <<'YAML'
workers: lots
listen: [127.0.0.1:2525]
limits: { max_line_length: 100 }
backends:
  servers:
    - smtp://127.0.0.1:2526
    - { address: "ftp://x" }
log_levle: info
YAML
out=$("$BIN" -t -c "$T/many.yaml" 2>&1)
n=$(printf '%s\n' "$out" | grep -c "^$T/many.yaml:[0-9]*:[0-9]*: ")
if [ "$n" -ne 4 ]; then
	echo "FAIL all errors reported: wanted 4 FILE:LINE:COL lines, got $n: $out"
	fails=$((fails + 1))
else
	echo "ok   all errors reported"
fi
expect "list index in path" 1 "$T/many.yaml" "$T/many.yaml:7:18: backends.servers[1].address: unknown scheme"
expect "unknown key with hint" 1 "$T/many.yaml" "$T/many.yaml:8:1: log_levle: unknown key (did you mean \"log_level\"?)"

printf 'listen: [127.0.0.1:2525\n' > "$T/syntax.yaml"
expect "YAML syntax error" 1 "$T/syntax.yaml" "$T/syntax.yaml:2:1: YAML syntax:"

expect "missing file" 1 "$T/missing.yaml" "$T/missing.yaml: cannot read"

# The same server twice: its series came out twice with one label set in /metrics (a
# scrape Prometheus reports as duplicate samples) and drain/enable matched both; weight
# is the way to give it more. The metrics listener on a port of listen: -t said ok and the
# start failed with "Address already in use".
printf 'listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - smtp://127.0.0.1:2526\n    - smtp://127.0.0.1:2527\n    - SMTP://127.0.0.1:2526\n' > "$T/dupserver.yaml"
expect "the same server twice" 1 "$T/dupserver.yaml" \
	"$T/dupserver.yaml:6:7: backends.servers[2]: the same server as backends.servers[0] (give it a weight instead)"
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526], routes: [{ domains: [a.test], servers: [smtp://127.0.0.1:2526] }] }\n' > "$T/routeshare.yaml"
expect "a route may name a default server" 0 "$T/routeshare.yaml"
printf 'listen: [127.0.0.1:2525, "127.0.0.1:2587"]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nmetrics: { listen: "127.0.0.1:2587" }\n' > "$T/metricsport.yaml"
expect "metrics.listen on a listen address" 1 "$T/metricsport.yaml" \
	"$T/metricsport.yaml:3:20: metrics.listen: the same address as listen[1]"

# log.file in a directory that does not exist: -t says so (was: ok, then the start died)
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nlog: { file: /nonexistent-dir/mxgate.log }\n' > "$T/logdir.yaml"
expect "log.file in a missing directory" 1 "$T/logdir.yaml" \
	"$T/logdir.yaml:3:14: log.file: directory /nonexistent-dir: No such file or directory"
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nlog: { file: %s/mxgate.log }\n' "$T" > "$T/logok.yaml"
expect "log.file in a directory that exists" 0 "$T/logok.yaml"

# A second YAML document ("---" again, as when two files are concatenated or a snippet is
# pasted below the first) was read no further: its keys were silently ignored.
cat > "$T/twodocs.yaml" <<'YAML'
listen: [127.0.0.1:2525]
backends: { servers: [smtp://127.0.0.1:2526] }
---
limits: { max_recipients: 5 }
YAML
expect "a second YAML document" 1 "$T/twodocs.yaml" \
	"$T/twodocs.yaml:3:1: a second YAML document: mxgate reads one mapping per file, put these keys in the first"
printf -- '---\nlisten: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\n...\n' > "$T/onedoc.yaml"
expect "one document with its markers" 0 "$T/onedoc.yaml"

# Merge keys: of an alias (documented) works; of a mapping written in place (which
# libfyaml does not merge) and an alias that names no anchor (a typo) are errors at their
# place with a hint (were: "FILE:1:1: cannot resolve anchors/aliases").
cat > "$T/merge.yaml" <<'YAML'
listen: [127.0.0.1:2525]
backends:
  servers:
    - &s { address: smtp://127.0.0.1:2526, weight: 3 }
    - { <<: *s, address: smtp://127.0.0.1:2527 }
limits: &l { max_recipients: 5 }
YAML
expect "merge key of an alias" 0 "$T/merge.yaml"
printf 'limits:\n  <<: { max_recipients: 5 }\n' >> "$T/merge.yaml"
sed -i 's/^limits: &l .*$//' "$T/merge.yaml"
expect "merge key of a mapping in place" 1 "$T/merge.yaml" \
	"$T/merge.yaml:8:7: YAML: invalid merge key value (an alias *NAME needs an anchor &NAME earlier in the file; a merge key takes aliases only"
cat > "$T/badalias.yaml" <<'YAML'
listen: [127.0.0.1:2525]
backends:
  servers:
    - &s { address: smtp://127.0.0.1:2526 }
    - { <<: *nope, address: smtp://127.0.0.1:2527 }
YAML
expect "an alias without its anchor" 1 "$T/badalias.yaml" "$T/badalias.yaml:5:14: YAML: invalid merge key value"
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nlimits: *nope\n' > "$T/badalias2.yaml"
expect "an alias without its anchor, not merged" 1 "$T/badalias2.yaml" "$T/badalias2.yaml:3:10: YAML: invalid alias"

# metas in a dependency loop never run: said, as SpamAssassin's lint says it (was silent)
printf 'meta I1 I2\nmeta I2 I1\nbody B1 /x/\n' > "$T/loop.cf"
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nrules: { files: ["%s"] }\n' "$T/loop.cf" > "$T/loop.yaml"
expect "a meta dependency loop is a warning" 0 "$T/loop.yaml" "rules: warning: 1 meta rule in a dependency loop, never run (I1)"

# clamd's action quarantine with nowhere to quarantine: every virus tempfails (was silent)
printf 'listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://127.0.0.1:2526] }\nplugins:\n  - { name: clamd, address: "127.0.0.1:3310", action: quarantine }\n' > "$T/cq.yaml"
expect "clamd quarantine without a quarantine backend is a warning" 0 "$T/cq.yaml" "warning: plugins[0] (clamd): action quarantine without a quarantine backend"

"$BIN" --dump-config-docs > "$T/config.md" 2>&1
if grep -q '^| `max_connections_per_ip` | integer | `50` |' "$T/config.md"; then
	echo "ok   --dump-config-docs"
else
	echo "FAIL --dump-config-docs: $(head -3 "$T/config.md")"
	fails=$((fails + 1))
fi

[ "$fails" -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
