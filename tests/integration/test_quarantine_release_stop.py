#!/usr/bin/env python3
"""A quarantine release under way when mxgate is told to stop (SIGTERM): the release waits on
a backend that took the message and never answers the dot (backends.data_timeout 1h), and
the drain is limits.drain_timeout (1s). mxgate exits within its drain (a hang guard, not a
timing: without a bound it would wait the hour), the release fails and says so, the held
file stays; released after the restart to a backend that answers, the message arrives
exactly once there. A SIGHUP (reload) during a release: the reload completes, the release
goes on under the generation it started with and ends as its backend says.
"""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QS_MID Subject =~ /\\bqstop/\nscore QS_MID 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}

be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'qstop.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')


def cfg(url):
    return mt.config([url], hostname='mx.example.test', rules={'files': [rules_file], 'actions': ACTIONS},
                     quarantine='maildir:' + qdir, control={'socket': sock},
                     backends={'data_timeout': '1h'}, limits={'drain_timeout': '1s'})


def files(sub='new'):
    return sorted(glob.glob(os.path.join(qdir, sub, '*')))


def hold(mx, tag):
    code, text = mt.send_mail(mx.port, 's@example.org', ['b@example.test'], mt.message(tag), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, '%s: held, 250 (%s %s)' % (tag, code, text))
    return m.group(1) if m else 'NONE'


def release_bg(qid):
    return subprocess.Popen([mt.mxgatectl(), '-s', sock, '-t', '600', 'quarantine', 'release', qid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer(p):
    try:
        out, err = p.communicate(timeout=mt.slack(120))
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out, err


# ---- SIGTERM while the backend holds the dot unanswered
mx = mt.Mxgate(cfg(be.url), 'mx-qstop')
q1 = hold(mx, 'qstop1')
be.delay = 3600   # the reply to the dot never comes while the test runs
slow = release_bg(q1)
mt.check(mx.wait_log(r'event=quarantine_release_started id=%s' % q1, timeout=30) is not None,
         'the release started')
mt.check(mt.wait_for(lambda: len(be.attempts) == 1, timeout=30), 'the backend has the message, the dot unanswered')
rc = mx.stop(timeout=mt.slack(60))
mt.check(rc == 0, 'SIGTERM during the release: mxgate exits (drain 1s, data_timeout 1h): %s' % rc)
rc, out, err = answer(slow)
mt.check(rc != 0, 'the release did not answer success (%s %r %r)' % (rc, out, err))
mt.check(mx.wait_log(r'event=quarantine_release_failed id=%s reason=.*shut' % q1, timeout=5) is not None,
         'logged event=quarantine_release_failed (shutting down)')
mt.check(len(files()) == 1 and not files('released'), 'the held file stays (%s)' % files())
mt.check(not be.messages, 'the backend never said 250: nothing delivered')

# ---- restarted: released to a backend that answers, once
be2 = mt.Backend()
mx = mt.Mxgate(cfg(be2.url), 'mx-qstop2')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1)
mt.check(rc == 0 and len(be2.by_tag('qstop1')) == 1 and not be.messages and not files(),
         'after the restart: released once (%s %r %r)' % (rc, out, err))

# ---- SIGHUP during a release: the reload completes, the release goes on under the
# generation it started with and ends as its backend says (here: gone: it fails, the file stays)
q2 = hold(mx, 'qstop2')
be3 = mt.Backend(delay=3600)
mx.reload(cfg(be3.url))
mt.check(mx.wait_log(r'event=reloaded generation=2', timeout=30) is not None, 'reloaded to be3')
slow = release_bg(q2)
mt.check(mt.wait_for(lambda: len(be3.attempts) == 1, timeout=30), 'the release reached be3, the dot unanswered')
mark = mx.log_size()
mx.reload(cfg(be2.url))
mt.check(mx.wait_log(r'event=reloaded generation=3', timeout=30, start=mark) is not None,
         'a reload during the release completes')
mt.check(slow.poll() is None, 'the release still waits on be3')
be3.stop()
rc, out, err = answer(slow)
mt.check(rc == 1 and 'quarantine release %s:' % q2 in err and len(files()) == 1 and not be2.by_tag('qstop2'),
         'be3 gone: the release fails, the file stays, nothing went to the new generation\'s backend '
         '(%s %r %r)' % (rc, out, err))

mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
for b in (be, be2, be3):
    b.stop()
mt.finish()
