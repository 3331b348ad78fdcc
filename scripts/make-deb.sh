#!/usr/bin/env bash
# make deb: builds mxgate_VERSION_ARCH.deb from the working tree with debhelper (debian/),
# in a copy under $BUILD_DEB (default build-deb/) so the tree stays clean, then runs
# lintian on it (errors fail the build). Installs debhelper and lintian first when missing
# (Debian 12; root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BUILD_DEB:-build-deb}
need="debhelper dpkg-dev lintian cmake pkgconf"
missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
	echo "installing:$missing"
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
rm -rf "$OUT"
mkdir -p "$OUT/src"
# The tracked and new (not ignored) files, as they are in the working tree.
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
	tar --null -T - -cf - | tar -xf - -C "$OUT/src"
(cd "$OUT/src" && dpkg-buildpackage -b -us -uc -j"${JOBS:-2}" >../build.log 2>&1) || {
	tail -40 "$OUT/build.log"
	exit 1
}
deb="$OUT/mxgate_${version}_${arch}.deb"
test -f "$deb"
echo "built $deb"
lintian --fail-on error --tag-display-limit 0 "$deb" | tee "$OUT/lintian.txt"
echo "lintian: no errors ($(grep -c '^W:' "$OUT/lintian.txt" || true) warnings, $(grep -c '^I:' "$OUT/lintian.txt" || true) info)"
