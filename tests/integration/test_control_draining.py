#!/usr/bin/env python3
"""`mxgatectl` against a daemon that drains after SIGTERM: an operator watching a stop (how
many sessions are left, is it still stopping) asks the control socket, as HAProxy's stats
socket answers during a soft stop. Before the fix the socket closed at the signal: every
`mxgatectl status` during the drain (up to limits.drain_timeout) said "cannot connect".

- during the drain: `mxgatectl status` answers (ready: no, shutting down; one session
  active), `--json status` has "stopping": true, `backends` answers;
- `reload` is refused (exit 1, "shutting down"), and so is `learn` (a long mbox would hold
  the exit past the drain);
- the modules' state verbs answer, as an operator clearing a key during a long drain
  expects: `greylist show|pass|delete|list` (LMDB: through the workers still draining),
  `ratelimit show|reset`, `flush reputation` (LMDB), `flush dns`, `flush passcache` — and
  what they change is changed. Before, every one of them was refused ("mxgate is shutting
  down") for the whole drain, up to limits.drain_timeout;
- once the drain ends the socket file is gone and the daemon exits 0 (under ASan: nothing
  leaked by a verb answered during the drain).
"""
import json
import os
import re
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


STORE = 'lmdb:' + os.path.join(mt.TMP, 'state')
mx = mt.Mxgate(mt.config([be.url], workers=1, control={'socket': SOCK}, limits={'drain_timeout': '120s'},
                         greylist={'enabled': True, 'store': STORE, 'delay': '1h', 'retry_window': '2h'},
                         reputation={'store': STORE},
                         ratelimit={'store': 'local', 'rules': [
                             {'key': 'ip', 'count': 'connections', 'limit': '100/1h', 'action': 'tempfail'}]}),
               name='mx-ctl-draining')
mt.check(mx.wait_log(r'event=ready generation=1', 10) is not None, 'started\n%s' % mx.tail())
# state for the verbs to clear: a greylisted triplet (in the map: LMDB batches every 500 ms)
# and the connections bucket of 127.0.0.1
g = mt.Client(mx.port)
g.ehlo()
mt.check(g.cmd('MAIL FROM:<a@example.org>')[0] == 250 and g.cmd('RCPT TO:<b@example.test>')[0] == 451,
         'a first attempt is greylisted')
g.cmd('QUIT')
g.close()
mt.check(mt.wait_for(lambda: ': waiting' in ctl('greylist', 'show', '127.0.0.1', 'a@example.org',
                                                 'b@example.test').stdout, timeout=10), 'its triplet is stored')
c = mt.Client(mx.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250, 'a transaction is open')
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
learn = os.path.join(mt.TMP, 'spam.eml')
with open(learn, 'wb') as f:
    f.write(mt.message('learn'))
r = ctl('learn', 'spam', learn)
mt.check(r.returncode == 1 and 'shutting down' in r.stdout + r.stderr,
         'learn is refused (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))

r = ctl('greylist', 'list')
mt.check(r.returncode == 0 and '127.0.0.0/24|a@example.org|b@example.test waiting' in r.stdout,
         'greylist list answers during the drain (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
r = ctl('greylist', 'pass', '127.0.0.1', 'a@example.org', 'b@example.test')
mt.check(r.returncode == 0 and ': waiting' in r.stdout,
         'greylist pass answers (LMDB: through the draining worker) (rc %s)\n%s%s' % (r.returncode, r.stdout, r.stderr))
r = ctl('greylist', 'show', '127.0.0.1', 'a@example.org', 'b@example.test')
mt.check(r.returncode == 0 and ': passed' in r.stdout, 'and the triplet is passed: %s%s' % (r.stdout, r.stderr))
r = ctl('greylist', 'delete', '127.0.0.1', 'a@example.org', 'b@example.test')
mt.check(r.returncode == 0 and 'deleted' in r.stdout, 'greylist delete answers (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
r = ctl('greylist', 'show', '127.0.0.1', 'a@example.org', 'b@example.test')
mt.check(r.returncode == 0 and ': unknown' in r.stdout, 'and the triplet is gone: %s%s' % (r.stdout, r.stderr))
r = ctl('ratelimit', 'show', 'ip', '127.0.0.1')
mt.check(r.returncode == 0 and re.search(r'connections 100/1h: [1-9]\d* used', r.stdout),
         'ratelimit show answers: %s%s' % (r.stdout, r.stderr))
r = ctl('ratelimit', 'reset', 'ip', '127.0.0.1')
mt.check(r.returncode == 0 and 'reset' in r.stdout, 'ratelimit reset answers (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
r = ctl('ratelimit', 'show', 'ip', '127.0.0.1')
mt.check(r.returncode == 0 and 'unused' in r.stdout, 'and the bucket is empty: %s%s' % (r.stdout, r.stderr))
r = ctl('flush', 'reputation', '192.0.2.1')
mt.check(r.returncode == 0 and 'reputation of 192.0.2.1 flushed' in r.stdout,
         'flush reputation answers (LMDB: through the draining worker) (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
for what in ('dns', 'passcache'):
    r = ctl('flush', what)
    mt.check(r.returncode == 0 and 'flushed' in r.stdout, 'flush %s answers (rc %s)\n%s%s'
             % (what, r.returncode, r.stdout, r.stderr))
r = ctl('status')
mt.check(r.returncode == 0 and 'sessions: 1 active' in r.stdout, 'still draining, the session still open')
mt.check(mx.alive() and os.path.exists(SOCK), 'still draining, the socket there')

c.cmd('QUIT')
c.close()
rc = mx.stop(sig=None, timeout=mt.slack(30))
mt.check(not os.path.exists(SOCK), 'the socket file is gone after the drain')
mt.finish()
