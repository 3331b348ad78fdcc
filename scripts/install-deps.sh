#!/usr/bin/env bash
# Installs the build dependencies and every real peer the tests start (Debian 12), so a fresh
# machine runs the whole suite with nothing skipped (under CI=true a missing peer fails its
# test). Idempotent: quiet and fast when everything is already there. Run as root (or with
# sudo available). apt starts no daemon here; the tests start their own peers.
set -eu
# build: compiler, CMake, the fuzzers' clang + libFuzzer runtime, the libraries
BUILD_PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
libuv1-dev libssl-dev libc-ares-dev libspf2-dev libmilter-dev libhiredis-dev liblmdb-dev
libpcre2-dev libfyaml-dev libcmocka-dev libgmime-3.0-dev libpsl-dev libidn2-dev publicsuffix"
# libhs (the rules prefilter): Intel's Hyperscan on amd64. Debian 12's vectorscan 5.4.9 misses
# matches on AVX-512 CPUs (V.?i.?a.?g.?r.?a after 63+ octets: docs/rules.md), so it is only the
# choice where Hyperscan does not exist (arm64); the two conflict, apt swaps one for the other
# (apt does not remove the other by itself: HS_SWAP names it for removal, "pkg-")
HS_SWAP=""
case "$(dpkg --print-architecture 2>/dev/null)" in
  amd64) BUILD_PKGS="$BUILD_PKGS libhyperscan-dev"; HS_SWAP="libvectorscan-dev- libvectorscan5-" ;;
  *)     BUILD_PKGS="$BUILD_PKGS libvectorscan-dev" ;;   # no Hyperscan there to swap out
esac
# peers, by the test that starts them (tests/integration/mxtest.py):
#   postfix: smtp-sink, smtp-source    swaks: SMTP client    openssl: s_client, certificates
#   rbldnsd: DNSBL                     redis-server: shared ratelimit / greylist / reputation
#   clamav-daemon, clamdscan: clamd    spamassassin, spamd, spamc: spamd + the stock rules
#   python3, python3-milter: tests/peers/mx_milter.py    opendkim, opendkim-tools, clamav-milter
#   python3-dkim, python3-nacl, python3-authres (dkimpy: DKIM/Ed25519/ARC signing), dnsmasq-base:
#   test_senderauth.py and bench_senderauth.sh, test_edge_postfix.py (client PTR records)
#   python3-dnspython: tests/integration/dns_peer.py (test_spf_dns.py, test_senderauth_outsider.py)
PEER_PKGS="postfix swaks openssl rbldnsd redis-server clamav-daemon clamdscan
spamassassin spamd spamc python3 python3-milter opendkim opendkim-tools clamav-milter
netcat-openbsd procps iproute2 python3-dkim python3-nacl python3-authres python3-dnspython dnsmasq-base"
# chromium: the status page test (tests/integration/test_statuspage.py); man-db, groff-base: the
# manuals test (tests/integration/test_manpages.sh)
PEER_PKGS="$PEER_PKGS chromium man-db groff-base"
# dovecot-core: test_edge_dovecot.py, test_auth_submission.py (SMTP AUTH)    haproxy: bench_core's L4 baseline
# fail2ban: test_auth_submission.py checks examples/fail2ban/ with fail2ban-regex
PEER_PKGS="$PEER_PKGS dovecot-core haproxy fail2ban"
# python3-prometheus-client: the reference parser of the metrics exposition (test_ops_*.py)
PEER_PKGS="$PEER_PKGS python3-prometheus-client"
# python3-lmdb: test_bayes_lock.py (a second process holds the classifier store's write lock)
PEER_PKGS="$PEER_PKGS python3-lmdb"
# postgrey: test_greylist_allow_names_postgrey.py asks it (policy server) and mxgate the same
# clients against its /etc/postgrey/whitelist_clients
PEER_PKGS="$PEER_PKGS postgrey"
# nginx-light and its stream and mail modules: test_lb_nginx.py (nginx in front of mxgate)
PEER_PKGS="$PEER_PKGS nginx-light libnginx-mod-stream libnginx-mod-mail"
# libidn12, libmariadb3: the Exim binary below links them (a fresh machine had no libmariadb3:
# test_exim failed, "libmariadb.so.3: cannot open shared object file")
PEER_PKGS="$PEER_PKGS libidn12 libmariadb3"
# opendmarc: test_milter_vs_postfix.py (a real DMARC milter behind Postfix and mxgate)
PEER_PKGS="$PEER_PKGS opendmarc"
# libluajit-5.1-2 libsodium23 libunwind8 libicu72 libglib2.0-0 libsqlite3-0: the rspamd binary
# below links them (with the libhs.so.5 the build's libhyperscan-dev brings)
PEER_PKGS="$PEER_PKGS libluajit-5.1-2 libsodium23 libunwind8 libicu72 libglib2.0-0 libsqlite3-0"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# unpack_deb PKG ROOT: Debian's package PKG unpacked into ROOT, not installed (no maintainer
# scripts, no dependencies resolved: the PEER_PKGS above carry what its binaries link)
unpack_deb() {
  local tmp; tmp=$(mktemp -d)
  chmod 0755 "$tmp"
  (cd "$tmp" && apt-get download -q "$1" >/dev/null 2>&1) ||
    { $SUDO apt-get update -qq >/dev/null; (cd "$tmp" && apt-get download -q "$1" >/dev/null); }
  $SUDO mkdir -p "$2"
  $SUDO dpkg-deb -x "$tmp"/"$1"_*.deb "$2"
  rm -rf "$tmp"
}
# exim4-daemon-heavy: test_exim.py (Exim behind mxgate with PROXY v2, Exim's callouts to
# mxgate). It conflicts with postfix (each is the system's MTA), so it is unpacked into
# $EXIM_ROOT, not installed; the binary wants the user it was built for (Debian-exim).
EXIM_ROOT=/opt/mxgate-peers/exim4
install_exim() {
  [ -x "$EXIM_ROOT/usr/sbin/exim4" ] || unpack_deb exim4-daemon-heavy "$EXIM_ROOT"
  getent passwd Debian-exim >/dev/null ||
    $SUDO adduser --system --group --no-create-home --allow-bad-names --home /var/spool/exim4 Debian-exim >/dev/null
}
# rspamd (3.4, 3.6 MB download, 14 MB unpacked): test_rspamd_real.py. Unpacked into
# $RSPAMD_ROOT (its package's scripts would start a system rspamd) and run with
# LD_LIBRARY_PATH=$RSPAMD_ROOT/usr/lib/rspamd against the system's libhs.so.5 (Hyperscan on
# amd64; on arm64 vectorscan's, whose unversioned Provides would not satisfy its dependency).
RSPAMD_ROOT=/opt/mxgate-peers/rspamd
install_rspamd() {
  [ -x "$RSPAMD_ROOT/usr/bin/rspamd" ] || unpack_deb rspamd "$RSPAMD_ROOT"
}
# Haraka 3.3.4 (npm; node >= 20): test_outside_haraka.py runs it side by side with mxgate. Into
# $HARAKA_ROOT with its plugins (105 packages, 15 s from a warm npm cache), not global. Node 20
# comes from NodeSource on the CI image (Debian 12's nodejs is 18, which Haraka 3.3 refuses)
HARAKA_ROOT=/opt/mxgate-peers/haraka
install_haraka() {
  [ -x "$HARAKA_ROOT/node_modules/.bin/haraka" ] && return 0
  command -v npm >/dev/null || { echo "install-deps: npm missing (node >= 20 with npm): Haraka not installed" >&2; return 0; }
  $SUDO mkdir -p "$HARAKA_ROOT"
  $SUDO npm install --prefix "$HARAKA_ROOT" --no-audit --no-fund --loglevel=error Haraka@3.3.4 >/dev/null ||
    echo "install-deps: npm install Haraka@3.3.4 failed: test_outside_haraka will fail under CI=true" >&2
}
missing=""
for p in $BUILD_PKGS $PEER_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { install_exim; install_rspamd; install_haraka; exit 0; }
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "postfix postfix/mailname string mxgate.test" | $SUDO debconf-set-selections
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends $missing $HS_SWAP >/dev/null
install_exim
install_rspamd
install_haraka
