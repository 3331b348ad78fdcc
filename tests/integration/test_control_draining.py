#!/usr/bin/env python3
"""`mxgatectl` against a daemon that drains after SIGTERM: an operator watching a stop (how
many sessions are left, is it still stopping) asks the control socket, as HAProxy's stats
socket answers during a soft stop. Before the fix the socket closed at the signal: every
`mxgatectl status` during the drain (up to limits.drain_timeout) said "cannot connect".

- during the drain: `mxgatectl status` answers (ready: no, shutting down; one session
  active), `--json status` has "stopping": true, `backends` answers;
- `reload` is refused (exit 1, "shutting down"), and so are the verbs that reach the
  workers (`flush reputation`): nothing waits on a worker that is ending;
- once the drain ends the socket file is gone and the daemon exits 0.
"""
import json
import os
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'draining-control.sock')
be = mt.Backend(name='DR')


def ctl(*args):
    return subprocess.run([CTL, '-s', SOCK] + list(args), capture_output=True, text=True, timeout=mt.slack(30))


mx = mt.Mxgate(mt.config([be.url], workers=1, control={'socket': SOCK}, limits={'drain_timeout': '20s'}),
               name='mx-ctl-draining')
mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())
c = mt.Client(mx.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250 and c.cmd('RCPT TO:<b@example.test>')[0] == 250,
         'a transaction is open')
mx.send_signal(signal.SIGTERM)
mt.check(mx.wait_log(r'event=shutdown signal=15', mt.slack(5)) is not None, 'SIGTERM starts the drain')

r = ctl('status')
mt.check(r.returncode == 0 and 'shutting down' in r.stdout and 'sessions: 1 active' in r.stdout,
         'status answers during the drain (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
r = ctl('--json', 'status')
st = json.loads(r.stdout) if r.returncode == 0 else {}
mt.check(st.get('stopping') is True and st.get('sessions', {}).get('active') == 1,
         '--json status: "stopping": true, 1 session active (rc %s)\n%s%s' % (r.returncode, r.stdout[:300], r.stderr))
r = ctl('backends')
mt.check(r.returncode == 0 and be.url in r.stdout, 'backends answers (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
r = ctl('reload')
mt.check(r.returncode == 1 and 'shutting down' in r.stdout + r.stderr,
         'reload is refused (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
r = ctl('flush', 'reputation', '192.0.2.1')
mt.check(r.returncode == 1 and 'shutting down' in r.stdout + r.stderr,
         'flush reputation (the workers) is refused (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
mt.check(mx.alive() and os.path.exists(SOCK), 'still draining, the socket there')

c.cmd('QUIT')
c.close()
rc = mx.stop(sig=None, timeout=mt.slack(30))
mt.check(not os.path.exists(SOCK), 'the socket file is gone after the drain')
mt.finish()
