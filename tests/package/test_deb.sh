#!/usr/bin/env bash
# The Debian package on this machine: install it (dpkg -i), check what it put where, start
# the daemon with the unit's ExecStart as the unit's user and capability (no systemd runs
# here: setpriv does what User= and AmbientCapabilities= would), send a message through it
# with swaks to an smtp-sink behind it, stop it, purge the package and check nothing is left.
#
#   tests/package/test_deb.sh [DIR with mxgate_*.deb]      (make test-deb builds it first)
#
# Needs root (it installs a package, binds port 25): exits 77 (skip) when not root, except
# in CI (CI=true), where that is a failure. Serialised by a lock; refuses to run when an
# mxgate package is already installed or port 25/10025/9125 is taken.
set -uo pipefail
DIR=${1:-build-deb}
fails=0
ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
die()  { echo "FAIL $*"; exit 1; }
has()  { printf '%s\n' "$1" | grep -q -- "$2"; }

if [ "$(id -u)" -ne 0 ]; then
	[ "${CI:-}" = true ] && die "the package test needs root"
	echo "SKIP: the package test needs root"
	exit 77
fi
deb=$(ls "$DIR"/mxgate_*_"$(dpkg --print-architecture)".deb 2>/dev/null | tail -1)
[ -n "$deb" ] || die "no package in $DIR (make deb)"
for t in swaks setpriv; do command -v $t >/dev/null || die "$t missing"; done
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || die "smtp-sink missing"

exec 9>/var/lock/mxgate-test-deb.lock
flock -w 600 9 || die "another package test holds the lock"
dpkg-query -W -f='${Status}' mxgate 2>/dev/null | grep -q installed && die "an mxgate package is already installed here"
for port in 25 10025 9125; do
	ss -Hltn "sport = :$port" | grep -q . && die "port $port is taken"
done

TMP=$(mktemp -d /tmp/mxgate-deb-test.XXXXXX)
chmod 755 "$TMP"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if dpkg-query -W -f='${Status}' mxgate 2>/dev/null | grep -q installed; then
		dpkg --purge mxgate >/dev/null 2>&1
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- install
echo "installing $deb"
if ! dpkg -i "$deb" >"$TMP/dpkg.log" 2>&1; then
	# A fresh machine may lack a runtime library: let apt bring it, as it would for a user.
	apt-get install -y -f -qq >>"$TMP/dpkg.log" 2>&1 || { cat "$TMP/dpkg.log"; die "dpkg -i failed"; }
fi
check "the system user mxgate exists" sh -c "getent passwd mxgate >/dev/null"
check "binaries in /usr/sbin" test -x /usr/sbin/mxgate -a -x /usr/sbin/mxgatectl
check "the plugin header in /usr/include/mxgate" test -f /usr/include/mxgate/plugin.h
check "the unit in /lib/systemd/system" test -f /lib/systemd/system/mxgate.service
check "the manuals" test -f /usr/share/man/man8/mxgate.8.gz -a -f /usr/share/man/man8/mxgatectl.8.gz -a -f /usr/share/man/man5/mxgate.yaml.5.gz
check "the default rules" test -f /usr/share/mxgate/rules/default.rules
check "/var/lib/mxgate belongs to mxgate" test "$(stat -c %U:%G /var/lib/mxgate)" = mxgate:mxgate
check "/etc/mxgate/mxgate.yaml is a conffile readable by group mxgate" \
	test "$(stat -c %a:%G /etc/mxgate/mxgate.yaml)" = 640:mxgate
check "the default config is valid (mxgate -t)" /usr/sbin/mxgate -t -c /etc/mxgate/mxgate.yaml
check "mxgate -t as the unit's user too" setpriv --reuid=mxgate --regid=mxgate --init-groups \
	/usr/sbin/mxgate -t -c /etc/mxgate/mxgate.yaml
if command -v systemd-analyze >/dev/null; then
	check "systemd-analyze verify accepts the unit" sh -c \
		'systemd-analyze verify /lib/systemd/system/mxgate.service 2>&1 | grep -v -e "Failed to .*bus" -e "^$" | { ! grep -qi -e error -e invalid -e unknown; }'
fi
for m in mxgate.8 mxgatectl.8 mxgate.yaml.5; do
	sec=${m##*.}
	check "man -l renders $m without warnings" sh -c \
		"MANWIDTH=80 man --warnings -l /usr/share/man/man$sec/$m.gz 2>&1 >/dev/null | { ! grep -q .; }"
done

# ---------------------------------------------------------------- run it as the unit does
mkdir -p "$TMP/sink" && chmod 1777 "$TMP/sink"
"$SINK" -c -u nobody -d "$TMP/sink/msg." 127.0.0.1:10025 64 >"$TMP/sink.log" 2>&1 &
pids+=($!)
# RuntimeDirectory=mxgate: systemd would create it.
install -d -o mxgate -g mxgate -m 0750 /run/mxgate
unit=/lib/systemd/system/mxgate.service
execstart=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit" | tr 'A-Z' 'a-z' | sed 's/cap_//g')
nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
# The unit's file limit too (below it mxgate rightly warns, event=fd_limit, that
# max_connections cannot be held). A container without CAP_SYS_RESOURCE may not raise its
# hard limit to it: then that one warning is expected, said so, and not held against the log.
hard=$(ulimit -Hn)
fdwarn_ok=""
if [ -n "$nofile" ] && [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ]; then
	echo "note: this machine's hard file limit ($hard) is below the unit's LimitNOFILE ($nofile): event=fd_limit expected"
	nofile=""
	fdwarn_ok=1
fi
echo "starting as $user with +$caps, LimitNOFILE=${nofile:-as is}: $execstart"
(cd /var/lib/mxgate && { [ -z "$nofile" ] || ulimit -n "$nofile"; } && exec setpriv --reuid="$user" --regid="$user" --init-groups \
	--inh-caps=+"$caps" --ambient-caps=+"$caps" $execstart) >"$TMP/mxgate.log" 2>&1 &
mxpid=$!
pids+=($mxpid)
ready=""
for i in $(seq 1 100); do
	if curl -sf -o /dev/null http://127.0.0.1:9125/readyz 2>/dev/null; then ready=1; break; fi
	kill -0 $mxpid 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	cat "$TMP/mxgate.log"
	die "mxgate did not become ready"
fi
ok "mxgate runs as $user and is ready (/readyz)"
check "it listens on port 25 as a user without root" sh -c "ss -Hltnp 'sport = :25' | grep -q mxgate"
check "the process runs as $user" test "$(ps -o user= -p $mxpid)" = "$user"
swaks --server 127.0.0.1 --port 25 --from a@example.org --to b@example.test \
	--header "Subject: package test" --timeout 30 >"$TMP/swaks.log" 2>&1
rc=$?
check "swaks sends a message through port 25 (exit $rc)" test $rc -eq 0
for i in $(seq 1 50); do
	ls "$TMP/sink"/msg.* >/dev/null 2>&1 && grep -q "package test" "$TMP"/sink/msg.* && break
	sleep 0.1
done
check "the message reached the backend" grep -q "Subject: package test" "$TMP"/sink/msg.*
check "mxgatectl status over /run/mxgate/control.sock" sh -c '/usr/sbin/mxgatectl status | grep -q "ready: yes"'
check "mxgatectl -c /etc/mxgate/mxgate.yaml backends" sh -c \
	'/usr/sbin/mxgatectl -c /etc/mxgate/mxgate.yaml backends | grep -q "smtp://127.0.0.1:10025 *up"'
# `systemctl reload mxgate` runs ExecReload: it must return once the reload is done, with
# its result (Type=notify-reload would do that, but needs systemd >= 253; Debian 12 has 252).
execreload=$(sed -n 's/^ExecReload=//p' "$unit" | sed 's/\$MAINPID/'"$mxpid"'/g')
mark=$(wc -c <"$TMP/mxgate.log")
out=$(cd /var/lib/mxgate && setpriv --reuid="$user" --regid="$user" --init-groups $execreload 2>&1)
rc=$?
check "ExecReload exits 0 on a good config (got $rc: $out)" test $rc -eq 0
check "ExecReload returns once the reload is done (event=reloaded logged before it returned)" sh -c \
	"tail -c +$((mark + 1)) '$TMP/mxgate.log' | grep -q 'event=reloaded generation=2'"
check "ExecReload says the new generation ($out)" has "$out" 'reloaded: generation 2'
cp /etc/mxgate/mxgate.yaml "$TMP/mxgate.yaml.good"
sed -i 's/^  max_message_size: .*/  max_message_size: lots/' /etc/mxgate/mxgate.yaml
out=$(cd /var/lib/mxgate && setpriv --reuid="$user" --regid="$user" --init-groups $execreload 2>&1)
rc=$?
cp "$TMP/mxgate.yaml.good" /etc/mxgate/mxgate.yaml
check "ExecReload exits 1 on a refused config (got $rc)" test $rc -eq 1
check "ExecReload prints the FILE:LINE:COL error ($out)" has "$out" \
	'/etc/mxgate/mxgate.yaml:[0-9]*:[0-9]*: limits.max_message_size'
kill -TERM $mxpid
rc=0
wait $mxpid || rc=$?
check "SIGTERM: exits 0 (got $rc)" test $rc -eq 0
# the bad config's reload above logs its refusal (event=reload_failed, event=config_error)
expected=' event=(reload_failed|config_error) '
if [ -n "$fdwarn_ok" ]; then
	check "no error or warning in the daemon's log (but the expected event=fd_limit and the bad reload's)" sh -c \
		"! grep -E ' (error|warning) ' '$TMP/mxgate.log' | grep -v ' event=fd_limit ' | grep -vE '$expected'"
else
	check "no error or warning in the daemon's log (but the bad reload's)" sh -c \
		"! grep -E ' (error|warning) ' '$TMP/mxgate.log' | grep -vE '$expected'"
fi
check "the control socket is gone" test ! -e /run/mxgate/control.sock

# ---------------------------------------------------------------- purge
dpkg --purge mxgate >"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log"; bad "dpkg --purge"; }
left=""
for p in /etc/mxgate /var/lib/mxgate /run/mxgate /usr/sbin/mxgate /usr/sbin/mxgatectl /usr/include/mxgate \
	/lib/systemd/system/mxgate.service /usr/share/mxgate /usr/share/doc/mxgate /usr/share/man/man8/mxgate.8.gz; do
	[ -e "$p" ] && left="$left $p"
done
check "purge leaves nothing behind (${left:-nothing})" test -z "$left"
check "dpkg no longer knows the package" sh -c '! dpkg-query -W -f="\${Status}" mxgate 2>/dev/null | grep -q installed'
echo "note: the system user mxgate stays after purge, as Debian packages keep theirs"

if [ $fails -gt 0 ]; then
	echo "$fails check(s) failed; daemon log:"
	cat "$TMP/mxgate.log"
	exit 1
fi
echo "all checks passed"
