#!/usr/bin/env python3
"""Learning an mbox into a Redis classifier store that has gone silent (a real redis-server,
SIGSTOPped) stops at the first store error (docs/classifier.md "Teaching it"): the messages
after it are not tried, the count says so, the exit or status says it failed.

Behind a silent Redis every learn waits rules.bayes.timeout (1 s here): on main each of the
mbox's messages was tried in turn — `mxgatectl learn spam MBOX` answered "learned 0 spam
(...), 20 errors" after 20 timeouts, `mxgate learn` the same offline, and POST /learn took
the mbox for one message (500 store error). An mbox of 5,000 took 5,000 timeouts. Now each
path makes one attempt: "1 errors; stopped at a store error, the rest not tried", exit 1;
POST /learn answers 503 with the counts. The assertions are on the counts and the exits,
never on a duration."""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
N = 20
WORDS = 'cheap pills viagra casino winner lottery prize'


def msg(i):
    return (b'From: spam%d@example.org\nTo: user@example.test\nSubject: offer %d\n'
            b'Message-ID: <stop-%d@learn.test>\n\n%s word%d\n' % (i, i, i, WORDS.encode(), i))


def post(data):
    req = urllib.request.Request('http://127.0.0.1:%d/learn/spam' % mport, data=data, method='POST')
    try:
        with urllib.request.urlopen(req, timeout=mt.slack(120)) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()
    except OSError as e:        # closed unanswered
        return 0, str(e)


mbox = os.path.join(mt.TMP, 'spam.mbox')
with open(mbox, 'wb') as f:
    for i in range(N):
        f.write(b'From spam%d@example.org Mon Jan  1 00:00:00 2024\n' % i + msg(i) + b'\n')
one = os.path.join(mt.TMP, 'one.eml')
with open(one, 'wb') as f:
    f.write(msg(1000))

red = mt.redis()
store = 'redis://127.0.0.1:%d' % red.port
rules = {'files': [os.path.join(mt.SRC, 'rules', 'default.rules')],
         'bayes': {'enabled': True, 'store': store, 'timeout': '1s'}}
sock = os.path.join(mt.TMP, 'control.sock')
mport = mt.hold_port().port
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], rules=rules, control={'socket': sock},
                         metrics={'listen': '127.0.0.1:%d' % mport}))
cfgfile = os.path.join(mt.TMP, 'learn.yaml')
with open(cfgfile, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules)))

# the store answers: a message is learned through the daemon and offline
rc, out, err = mt.ctl(sock, 'learn', 'spam', one)
mt.check(rc == 0 and out.startswith('learned 1 spam'), 'Redis up: mxgatectl learn: %s %s'
         % (out.strip(), err.strip()))

red.send_signal(signal.SIGSTOP)
try:
    # the control socket (mxgatectl learn): one attempt, the count, exit non-zero
    rc, out, err = mt.ctl(sock, '-t', str(mt.slack(120)), 'learn', 'spam', mbox, timeout=150)
    mt.say('mxgatectl learn spam MBOX: rc %d: %s %s' % (rc, out.strip(), err.strip()))
    mt.check(rc != 0 and 'learned 0 spam' in out + err and ' 1 errors; stopped at a store error' in out + err,
             'mxgatectl learn behind a silent Redis: one attempt, stopped, exit %d (%s)'
             % (rc, (out + err).strip()))
    rc, out, err = mt.ctl(sock, '--json', '-t', str(mt.slack(120)), 'learn', 'spam', mbox, timeout=150)
    try:        # a failed verb's answer is on stderr (mxgatectl's exit status 1)
        j = json.loads(out + err)
    except ValueError:
        j = None
    mt.check(rc != 0 and j is not None and j.get('errors') == 1 and j.get('stopped') is True,
             'the same with --json: errors 1, stopped true (%s %s)' % (out.strip(), err.strip()))
    mt.check(mx.wait_log(r'event=bayes_learn via=control class=spam learned=0 .*errors=1 '
                         r'stopped=store_error', timeout=10) is not None, 'logged: stopped=store_error')

    # POST /learn: an mbox and a message, each 503 after one attempt
    with open(mbox, 'rb') as f:
        status, text = post(f.read())
    mt.check(status == 503 and text.startswith('store error: learned 0 spam')
             and ' 1 errors; stopped at a store error' in text,
             'POST /learn/spam of the mbox: 503 with the count (%s %s)' % (status, text))
    status, text = post(msg(2000))
    mt.check(status == 503 and text == 'store error',
             'POST /learn/spam of one message: 503 store error (%s %s)' % (status, text))

    # offline: `mxgate learn` checks the store before it reads a file: the connect is taken
    # by the kernel's backlog, the check's PING is not answered (since 8 Dec 2026: before,
    # the connect alone passed and the run stopped at its first learn's timeout, '1 errors;
    # stopped at a store error'); it stops there with the reason, nothing tried, exit 1
    r = mt.run_mxgate('-c', cfgfile, 'learn', 'spam', mbox, one, timeout=150)
    mt.say('mxgate learn spam MBOX FILE: rc %d: %s %s' % (r.returncode, r.stdout.strip(), r.stderr.strip()))
    mt.check(r.returncode == 1 and 'learned' not in r.stdout
             and re.search(r'learn: store redis://127\.0\.0\.1:\d+: redis 127\.0\.0\.1:\d+: PING: '
                           r'no reply within 1000 ms', r.stderr),
             'mxgate learn behind a silent Redis: the store\'s check fails, nothing tried, exit 1 '
             '(%s %s)' % (r.stdout.strip(), r.stderr.strip()))
finally:
    red.send_signal(signal.SIGCONT)

# Redis back: learning goes on (no state left behind by the stop). The EVALs sent before
# each timeout were still in Redis's socket buffer and ran when it woke: the mbox's first
# message may be known already
rc, out, err = mt.ctl(sock, 'learn', 'spam', mbox)
m = re.match(r'learned (\d+) spam \((\d+) already known', out)
mt.check(rc == 0 and m is not None and int(m.group(1)) + int(m.group(2)) == N
         and int(m.group(2)) <= 1, 'Redis back: the mbox is learned: %s %s' % (out.strip(), err.strip()))
mx.stop()
mt.finish()
