#!/usr/bin/env python3
"""`log.syslog: true` (docs/config.md, `log`): every line mxgate writes to standard error also
goes to syslog, facility `log.facility` (mail by default), with the line's level as the
priority, tagged `mxgate[PID]`, the session id first (syslog adds its own time stamp, so the
message is the line without mxgate's time stamp and level). A reload changes the facility or
turns it off; `log.level` holds for syslog too.

The real syslog(3) of the C library writes to /dev/log. The daemon runs in a mount namespace
of its own (unshare -m, root) whose /dev is a fresh tmpfs holding the usual device nodes and,
as /dev/log, a datagram socket this test reads: what a syslog daemon (rsyslog, journald's
/dev/log) receives, without touching the machine's own /dev."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('unshare', 'mount')
if os.geteuid() != 0:
    mt.skip('needs root for a private /dev/log (unshare -m)')

LOG_MAIL, LOG_LOCAL3 = 2, 19
SEV = {'debug': 7, 'info': 6, 'warning': 4, 'error': 3}

sock_path = os.path.join(mt.TMP, 'devlog.sock')
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind(sock_path)
srv.settimeout(0.2)
got = []          # (priority, message text)
stop = False


def reader():
    while not stop:
        try:
            data = srv.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return
        m = re.match(rb'<(\d+)>(.*)', data, re.S)
        if m:
            got.append((int(m.group(1)), m.group(2).decode('utf-8', 'replace')))


threading.Thread(target=reader, daemon=True).start()

# the daemon, started through a wrapper that gives it a /dev of its own (one pid throughout:
# sh execs unshare, which execs the inner script, which execs mxgate)
olddev = os.path.join(mt.TMP, 'olddev')
os.mkdir(olddev)
inner = os.path.join(mt.TMP, 'mxgate-ns-inner.sh')
with open(inner, 'w') as f:
    f.write('''#!/bin/sh
set -e
mount --bind /dev %(old)s
mount -t tmpfs -o mode=755 tmpfs /dev
for d in null zero full random urandom; do touch /dev/$d; mount --bind %(old)s/$d /dev/$d; done
touch /dev/log
mount --bind %(sock)s /dev/log
exec %(bin)s "$@"
''' % {'old': olddev, 'sock': sock_path, 'bin': mt.BIN})
wrapper = os.path.join(mt.TMP, 'mxgate-ns.sh')
with open(wrapper, 'w') as f:
    f.write('#!/bin/sh\nexec unshare -m %s "$@"\n' % inner)
os.chmod(inner, 0o755)
os.chmod(wrapper, 0o755)
r = subprocess.run(['unshare', '-m', 'true'], capture_output=True, text=True)
if r.returncode != 0:
    mt.skip('unshare -m does not work here: %s' % r.stderr.strip())
real_bin = mt.BIN
mt.BIN = wrapper
be = mt.Backend(name='syslog')
cfg = mt.config([be.url], log={'syslog': True})
mx = mt.Mxgate(cfg, name='mx-syslog')
mt.BIN = real_bin


def lines(regex, since=0):
    return [(p, t) for p, t in got[since:] if re.search(regex, t)]


def wait_lines(regex, since=0, timeout=10):
    mt.wait_for(lambda: lines(regex, since), timeout)
    return lines(regex, since)


started = wait_lines(r'event=started ')
mt.check(len(started) == 1, 'event=started reached /dev/log (%d lines in all)' % len(got))
if started:
    pri, text = started[0]
    mt.check(pri == LOG_MAIL * 8 + SEV['info'], 'facility mail, priority info: <%d> (%d)' % (LOG_MAIL * 8 + 6, pri))
    m = re.match(r'^\w{3} [ \d]\d \d\d:\d\d:\d\d mxgate\[(\d+)\]: (\S+) event=started ', text)
    mt.check(m is not None and int(m.group(1)) == mx.pid,
             'RFC 3164 form: TIMESTAMP mxgate[PID]: ID event=... with the daemon\'s pid (%r)' % text[:100])
    mt.check(not re.search(r'\d{4}-\d\d-\d\dT', text) and ' info ' not in text,
             'the message is the line without mxgate\'s own time stamp and level (%r)' % text[:100])

code, _ = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('via-syslog'))
mt.check(code == 250, 'a message delivered')
dl = wait_lines(r'event=delivered ')
err_dl = re.search(r'^\S+ info (\S+) event=delivered ', mx.log(), re.M)
mt.check(len(dl) == 1 and err_dl is not None and (': %s event=delivered ' % err_dl.group(1)) in dl[0][1],
         'event=delivered in syslog with the session id of the stderr line (%r)' % (dl[0][1][:120] if dl else None))
mt.check(all(t.count('event=') >= 1 and '\n' not in t for _, t in got), 'one event per datagram, no newline inside')

# a reload: facility local3
n = len(got)
cfg2 = dict(cfg, log={'syslog': True, 'facility': 'local3'})
mx.reload(cfg2)
mt.check(mx.wait_log(r'event=reloaded generation=2', 10) is not None, 'reloaded')
code, _ = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('local3'))
dl = wait_lines(r'event=delivered ', n)
mt.check(dl and dl[0][0] == LOG_LOCAL3 * 8 + SEV['info'], 'after the reload: facility local3 (%s)' % (dl[0][0] if dl else None))
# and level warning: a dead server's backend_down (a warning) arrives, a delivery (info) does not
n = len(got)
dead = 'smtp://127.0.0.1:%d' % mt.dead_port()
cfg3 = dict(cfg2, log={'syslog': True, 'facility': 'local3', 'level': 'warning'},
            backends=dict(cfg['backends'], servers=[be.url, dead]))
mx.reload(cfg3)
warn = wait_lines(r'event=backend_down ', n, timeout=20)
mt.check(warn and warn[0][0] == LOG_LOCAL3 * 8 + SEV['warning'],
         'a warning at local3 (%s)' % (warn[0][0] if warn else None))
code, _ = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('quiet'))
mt.check(code == 250, 'delivered')
time.sleep(0.5)
mt.check(not lines(r'event=delivered ', n), 'log.level warning holds for syslog: no info line')

# a reload that turns it off
mx.reload(dict(cfg3, log={'syslog': False, 'level': 'info'}))
mt.check(mx.wait_log(r'event=reloaded generation=4', 10) is not None, 'reloaded with syslog off')
n = len(got)
code, _ = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('off'))
mt.check(mx.wait_log(r'event=delivered .*off', 10) is not None or code == 250, 'delivered')
time.sleep(0.5)
mt.check(not lines(r'event=delivered ', n), 'log.syslog false: nothing more reaches syslog (%r)' % [t[:60] for _, t in got[n:]])
mx.stop()
stop = True
mt.finish()
