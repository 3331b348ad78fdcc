#!/bin/sh
# `mxgate -t` on the dns / dnsbl / helo_checks / spf sections: a valid config passes, and
# each bad value is reported as FILE:LINE:COL: key: reason.
BIN=${MXGATE_BIN:-build/mxgate}
[ -x "$BIN" ] || { echo "FAIL: mxgate not built: $BIN"; exit 1; }
T=$(mktemp -d /tmp/mxtest-dnsblcfg-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; fails=$((fails + 1)); fi; }

cat >"$T/good.yaml" <<'Y'
hostname: mx.test
listen:
  - address: "127.0.0.1:2599"
backends:
  servers:
    - { address: "smtp://127.0.0.1:2526" }
dns: { resolvers: ["127.0.0.1:5353"], timeout: 2s, cache_size: 500 }
dnsbl:
  threshold: 3
  action: score
  pass_ttl: 10m
  lists:
    - { zone: bl.test, weight: 3, codes: ["127.0.0.2-127.0.0.11", "127.0.0.20", "0x04/bitmask"] }
    - { zone: wl.test, weight: -5.5 }
    - { zone: dbl.test, type: domain, weight: 2, reason: "{zone}: {txt}", symbol: DBL_HIT }
helo_checks: { enabled: true, claims_us: { action: reject }, fcrdns: { score: 0.7 } }
spf: { enabled: true, reject_fail: true, timeout: 3s, scores: { fail: 4 }, records: ["a.test TXT v=spf1 -all"] }
Y
"$BIN" -t -c "$T/good.yaml" >"$T/good.out" 2>&1
check $? "a valid config with all four sections passes -t ($(head -c 200 "$T/good.out"))"

cat >"$T/bad.yaml" <<'Y'
hostname: mx.test
listen:
  - address: "127.0.0.1:2599"
backends:
  servers:
    - { address: "smtp://127.0.0.1:2526" }
dns:
  resolvers: ["127.0.0.1:5353", "bad,one"]
dnsbl:
  threshold: 3
  action: bogus
  lists:
    - { zone: "bl.test", codes: ["127.0.0.2-127.0.0.1"] }
    - { zone: "bad zone!" }
    - { weight: 2 }
spf:
  records: ["example.org NOPE x"]
helo_checks:
  syntax: { action: drop }
Y
"$BIN" -t -c "$T/bad.yaml" >"$T/bad.out" 2>&1
rc=$?
[ $rc = 1 ]; check $? "an invalid config exits 1 (got $rc)"
for pat in 'bad.yaml:8:[0-9]*: dns.resolvers\[1\]: "bad,one"' \
           'bad.yaml:11:[0-9]*: dnsbl.action: ' \
           'bad.yaml:13:[0-9]*: dnsbl.lists\[0\].codes\[0\]: "127.0.0.2-127.0.0.1"' \
           'bad.yaml:14:[0-9]*: dnsbl.lists\[1\].zone: "bad zone!"' \
           'bad.yaml:15:[0-9]*: dnsbl.lists\[2\].zone: ' \
           'bad.yaml:17:[0-9]*: spf.records\[0\]: ' \
           'bad.yaml:19:[0-9]*: helo_checks.syntax.action: '; do
  grep -q "$pat" "$T/bad.out"; check $? "reported: $pat"
done
[ $fails = 0 ] && { echo "all checks passed"; exit 0; }
cat "$T/bad.out"
exit 1
