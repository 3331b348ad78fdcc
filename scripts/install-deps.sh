#!/usr/bin/env bash
# Installs the build dependencies and the real test peers (Debian 12). Idempotent: quiet and
# fast when everything is already there. Run as root (or with sudo available).
set -eu
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
libuv1-dev libssl-dev libc-ares-dev libspf2-dev libmilter-dev libhiredis-dev liblmdb-dev
libpcre2-dev libvectorscan-dev libfyaml-dev libcmocka-dev libgmime-3.0-dev
postfix swaks rbldnsd redis-server clamav-daemon clamdscan spamassassin spamd spamc
python3-milter openssl netcat-openbsd
opendkim opendkim-tools clamav-milter"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
echo "postfix postfix/mailname string mxgate.test" | $SUDO debconf-set-selections
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
