#!/usr/bin/env python3
"""The control socket and mxgatectl, end to end: the real daemon with two smtp-sink backends.

- status / backends (text and --json): version, uptime, generation, sessions, msg/s,
  backends with state and latency; the socket gets the configured mode.
- drain really moves traffic (messages counted per backend): a drained backend takes no new
  message, a transaction open on it when it is drained still finishes there, the drain
  survives a reload, enable brings it back.
- reload: the new generation, or the FILE:LINE:COL errors with the old generation kept.
- flush dns / passcache; flush reputation without a reputation store says so (the verb
  itself: test_control_reputation.py); learn answers "not available" without a classifier.
- top clients / reasons: sessions and refusals by client and reason.
- bad input: unknown verbs and wrong arity (exit 1), garbage on the raw socket (ERR, the
  connection closes, the daemon carries on), too many connections (idle ones taken over), no
  daemon (exit 2)."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()

SOCK = os.path.join(mt.TMP, 'control.sock')


def ctl(*args, sock=SOCK, input=None):
    """Runs mxgatectl; returns (exit status, stdout, stderr)."""
    argv = [CTL] + (['-s', sock] if sock else []) + list(args)
    r = subprocess.run(argv, capture_output=True, text=input is None or isinstance(input, str),
                       input=input, timeout=mt.slack(30))
    return r.returncode, r.stdout, r.stderr


def ctl_json(*args):
    rc, out, err = ctl('--json', *args)
    mt.check(rc == 0, 'mxgatectl --json %s exits 0 (%s)' % (' '.join(args), err.strip()[:200]))
    return json.loads(out)


def backend(status, url):
    return next((b for b in status['backends'] if b['url'] == url), None)


a, b = mt.Sink(name='sinkA'), mt.Sink(name='sinkB')
tiny = os.path.join(mt.TMP, 'tiny.yaml')
cfg = mt.config([a.url, b.url], limits={'max_message_size': '4K'},
                control={'socket': SOCK, 'mode': '0640'})
mx = mt.Mxgate(cfg)


def send(n, tag, source=None):
    ok = 0
    for i in range(n):
        code, _ = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], mt.message('%s-%d' % (tag, i)),
                               source=source)
        ok += code == 250
    return ok


# ---------------------------------------------------------------- status and backends
mt.wait_for(lambda: ctl_json('status')['ready'], 15)
st = os.stat(SOCK)
mt.check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640,
         'the control socket has the configured mode 0640 (%o)' % stat.S_IMODE(st.st_mode))
rc, out, err = ctl('status')
mt.check(rc == 0 and re.search(r'mxgate \d+\.\d+\.\d+, up \d+h\d\dm\d\ds, config generation 1', out),
         'status: version, uptime and generation (%r)' % out[:120])
mt.check('sessions:' in out and re.search(r'messages: [\d.]+/s', out), 'status: sessions and msg/s')
mt.check(a.url in out and b.url in out and re.search(r'\bup\b', out), 'status: the backends with their state')
js = ctl_json('status')
mt.check(js['generation'] == 1 and js['ready'] is True and js['version'] and js['uptime_seconds'] >= 0,
         'status --json: generation, readiness, version, uptime')
mt.check(all(backend(js, u) and backend(js, u)['state'] == 'up' and backend(js, u)['latency_ms'] > 0
             for u in (a.url, b.url)), 'status --json: both backends up with a latency')
# the options may follow the command too, as with most tools (mxgatectl status --json)
for argv in (('status', '--json'), ('backends', '-j'), ('status', '--json', '-t', '10')):
    rc, out, err = ctl(*argv)
    try:
        ok = rc == 0 and isinstance(json.loads(out), dict)
    except ValueError:
        ok = False
    mt.check(ok, 'mxgatectl %s: JSON, exit 0 (%s %s)' % (' '.join(argv), rc, err.strip()[:120]))
rc, out, _ = ctl('backends')
mt.check(rc == 0 and out.splitlines()[0].split()[:3] == ['BACKEND', 'STATE', 'LATENCY'] and len(out.splitlines()) == 3,
         'backends: a header and one row per backend')
rc, out, _ = ctl('-c', mx.conf, 'backends', sock=None)
mt.check(rc == 0 and a.url in out, 'mxgatectl -c FILE finds the socket in the config')

# ---------------------------------------------------------------- drain moves traffic
mt.check(send(10, 'before') == 10, 'ten messages delivered before the drain')
mt.wait_for(lambda: a.count() + b.count() == 10, 10)
ca, cb = a.count(), b.count()
mt.check(ca > 0 and cb > 0, 'round robin uses both backends (%d/%d)' % (ca, cb))
rc, out, _ = ctl('drain', '127.0.0.1:%d' % a.port)
mt.check(rc == 0 and 'drained' in out, 'drain by host:port (%r)' % out.strip())
mt.check(backend(ctl_json('backends'), a.url)['state'] == 'drained', 'the drained backend shows as drained')
mt.check(send(10, 'drained') == 10, 'ten messages delivered while A is drained')
mt.wait_for(lambda: b.count() == cb + 10, 10)
mt.check(a.count() == ca and b.count() == cb + 10, 'all of them went to B (A %d->%d, B %d->%d)' % (ca, a.count(), cb, b.count()))

# survives a reload (SIGHUP and the control verb)
mx.send_signal(signal.SIGHUP)
mt.wait_for(lambda: ctl_json('status')['generation'] == 2, 10)
rc, out, _ = ctl('reload')
mt.check(rc == 0 and re.search(r'reloaded: generation 3', out), 'reload reports the new generation (%r)' % out.strip())
mt.check(backend(ctl_json('backends'), a.url)['drained'] is True, 'the drain survives two reloads')
ca, cb = a.count(), b.count()
mt.check(send(6, 'reloaded') == 6, 'six messages after the reloads')
mt.wait_for(lambda: b.count() == cb + 6, 10)
mt.check(a.count() == ca, 'none of them went to the drained backend')

# a transaction open on a backend when it is drained finishes there
rc, _, _ = ctl('enable', a.url)
mt.check(rc == 0, 'enable A')
c = mt.Client(mx.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<open@example.org>')[0] == 250 and c.cmd('RCPT TO:<rcpt@example.test>')[0] == 250,
         'a transaction is open')
busy = mt.wait_for(lambda: [x for x in ctl_json('backends')['backends'] if x['active'] > 0], 10)
mt.check(len(busy) == 1, 'one backend has the open transaction')
if busy:
    url = busy[0]['url']
    sink = a if url == a.url else b
    mt.check(ctl('drain', url)[0] == 0, 'drain the backend in use')
    mt.check(backend(ctl_json('backends'), url)['state'] == 'draining', 'it shows as draining while the transaction runs')
    code, _ = c.cmd('DATA')
    c.send(mt.stuff(mt.message('open-txn')))
    code, text = c.reply()
    mt.check(code == 250, 'the open transaction finishes with 250 (%s %s)' % (code, text))
    # (smtp-sink creates its dump file at MAIL: look for the message's tag, not a count)
    mt.check(mt.wait_for(lambda: 'open-txn' in mt.message_ids(m['data'] for m in sink.messages()), 10),
             'on the backend that was drained mid-transaction')
    mt.wait_for(lambda: backend(ctl_json('backends'), url)['state'] == 'drained', 10)
    mt.check(backend(ctl_json('backends'), url)['state'] == 'drained', 'then it is drained')
    ctl('enable', url)
c.close()
ca, cb = a.count(), b.count()
mt.check(send(8, 'enabled') == 8, 'eight messages after enable')
mt.wait_for(lambda: a.count() + b.count() == ca + cb + 8, 10)
mt.check(a.count() > ca and b.count() > cb, 'both backends take traffic again')
rc, out, err = ctl('enable', a.url)
mt.check(rc == 0 and 'was not drained' in out, 'enable twice is harmless')
rc, _, err = ctl('drain', 'smtp://127.0.0.1:1')
mt.check(rc == 1 and 'no such backend' in err, 'drain of an unknown backend: exit 1 and a reason')


def ctl_json_fails(want_rc, want, *args, sock=SOCK):
    """--json: a failure is one JSON object {"ok": false, ...} on stdout, stderr empty."""
    rc, out, err = ctl('--json', *args, sock=sock)
    try:
        js = json.loads(out)
    except ValueError:
        js = None
    mt.check(rc == want_rc and isinstance(js, dict) and js.get('ok') is False and err == '' and
             want in json.dumps(js),
             'mxgatectl --json %s: exit %d, {"ok": false, ...} with "%s" on stdout, nothing on stderr '
             '(rc %d, out %r, err %r)' % (' '.join(args), want_rc, want, rc, out.strip()[:200], err.strip()[:200]))
    return js


ctl_json_fails(1, 'no such backend', 'drain', 'smtp://127.0.0.1:1')

# ---------------------------------------------------------------- reload errors
good = open(mx.conf).read()
with open(mx.conf, 'w') as f:
    f.write(good.replace('"4K"', '"lots"'))
rc, out, err = ctl('reload')
mt.check(rc == 1 and re.search(re.escape(mx.conf) + r':\d+:\d+: limits\.max_message_size: ', err),
         'a bad reload: exit 1 with FILE:LINE:COL: key: reason (%r)' % err.strip()[:300])
mt.check('generation 3 stays' in err, 'and the running generation stays')
js = ctl_json_fails(1, 'limits.max_message_size', 'reload') or {}
mt.check(js.get('reloaded') is False and ':' in js.get('errors', ''), 'reload --json reports the errors (%r)' % js)
with open(mx.conf, 'w') as f:
    f.write(good)
rc, out, _ = ctl('--json', 'reload')
mt.check(rc == 0 and json.loads(out) == {'reloaded': True, 'generation': 4}, 'a good reload: generation 4 (%r)' % out)

# ---------------------------------------------------------------- flush, learn
rc, out, _ = ctl('flush', 'dns')
mt.check(rc == 0 and 'flushed' in out, 'flush dns')
rc, _, err = ctl('flush', 'dns', 'bl.test')
mt.check(rc == 1 and 'usage: flush dns' in err, 'flush dns takes no argument: usage, not a silent flush of everything (%r)' % err.strip())
rc, _, err = ctl('flush', 'passcache', '192.0.2.1')
mt.check(rc == 1 and 'usage: flush passcache' in err, 'flush passcache takes no argument (%r)' % err.strip())
rc, out, _ = ctl('--json', 'flush', 'passcache')
mt.check(rc == 0 and json.loads(out)['flushed'] == 'passcache', 'flush passcache --json')
rc, out, _ = ctl('passcache')
mt.check(rc == 0 and re.search(r'(?m)^dnsbl +(on|off) entries=\d+ store=local hits=\d+ misses=\d+ errors=\d+', out)
         and re.search(r'(?m)^pregreet +(on|off) entries=\d+ store=local ', out) and 'flushed_ms=' in out,
         'passcache lists both pass caches, local, with the flush just made: %r' % out)
rc, _, err = ctl('passcache', 'x')
mt.check(rc == 1 and 'usage: passcache' in err, 'passcache takes no argument (%r)' % err.strip())
rc, _, err = ctl('flush', 'reputation', '192.0.2.1')
mt.check(rc == 1 and 'no history is kept' in err, 'flush reputation without a store: no history (%r)' % err.strip())
msgfile = os.path.join(mt.TMP, 'spam.eml')
with open(msgfile, 'wb') as f:
    f.write(mt.message('learn'))
rc, _, err = ctl('learn', 'spam', msgfile)
mt.check(rc == 1 and 'not available' in err, 'learn without a classifier: not available (%r)' % err.strip())
rc, _, err = ctl('learn', 'spam', os.path.join(mt.TMP, 'missing.eml'))
mt.check(rc == 1 and 'missing.eml' in err, 'learn with a missing file: exit 1 naming it')
rc, _, err = ctl('flush', 'everything')
mt.check(rc == 1 and 'usage: flush' in err, 'flush of something unknown: usage')

# ---------------------------------------------------------------- top
big = mt.message('big', size=8000)
for src in ('127.0.0.3', '127.0.0.3', '127.0.0.3', '127.0.0.4'):
    code, _ = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], big, source=src)
    mt.check(code == 552, 'an over-size message from %s is refused (%s)' % (src, code))
js = ctl_json('top', 'clients')
by_ref = {r['client']: r['count'] for r in js['by_refusals']}
by_ses = {r['client']: r['count'] for r in js['by_sessions']}
mt.check(by_ref.get('127.0.0.3') == 3 and by_ref.get('127.0.0.4') == 1, 'top clients: refusals by client (%r)' % by_ref)
mt.check(js['by_refusals'][0]['client'] == '127.0.0.3', 'the worst client first')
mt.check(by_ses.get('127.0.0.1', 0) >= 35 and by_ses.get('127.0.0.3') == 3, 'top clients: sessions by client (%r)' % by_ses)
rc, out, _ = ctl('top', 'reasons')
mt.check(rc == 0 and re.search(r'data/size\s+4\b', out), 'top reasons: data/size 4 (%r)' % out)
rc, out, _ = ctl('top', 'clients', '1')
mt.check(rc == 0 and '127.0.0.3' in out and '127.0.0.4' not in out, 'top clients 1: one row per table')
rc, _, err = ctl('top', 'clients', '0')
mt.check(rc == 1 and 'N must be' in err, 'top with a bad N: exit 1')
rc, _, err = ctl('top', 'nothing')
mt.check(rc == 1, 'top of something unknown: exit 1')

# ---------------------------------------------------------------- bad input
for args, want in ((['frobnicate'], 'unknown command'), (['drain'], 'usage: drain'),
                   (['status', 'extra'], 'usage: status'), (['--bogus-option'], 'usage')):
    rc, _, err = ctl(*args)
    mt.check(rc == 1 and want in err, 'mxgatectl %s: exit 1, "%s" (%r)' % (' '.join(args), want, err.strip()[:80]))
rc, _, err = ctl('status', sock=os.path.join(mt.TMP, 'nothing.sock'))
mt.check(rc == 2 and 'cannot connect' in err, 'no daemon at the socket: exit 2')
# --json: every failure is JSON on stdout too (scripts parse stdout): the daemon's refusal, a
# missing socket, a socket nobody listens on, a wrong command line, a config without a socket
ctl_json_fails(1, 'unknown command', 'frobnicate')
ctl_json_fails(1, 'usage: drain', 'drain')
ctl_json_fails(1, 'option', '--bogus-option')
ctl_json_fails(1, 'usage: mxgatectl learn', 'learn', 'spam')
for group in ('-xj', '-jx'):       # -j in a group of short options is --json too (review)
    rc, out, err = ctl(group, 'status')
    try:
        js = json.loads(out)
    except ValueError:
        js = None
    mt.check(rc == 1 and isinstance(js, dict) and js.get('ok') is False and '-x' in js.get('error', '') and err == '',
             'mxgatectl %s status: one JSON failure naming -x on stdout, nothing on stderr (rc %d, out %r, err %r)'
             % (group, rc, out.strip()[:200], err.strip()[:200]))
ctl_json_fails(2, 'cannot connect', 'status', sock=os.path.join(mt.TMP, 'nothing.sock'))
dead = os.path.join(mt.TMP, 'dead.sock')
ds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ds.bind(dead)
ds.close()                     # the file stays, nobody listens: connection refused
ctl_json_fails(2, 'Connection refused', 'status', sock=dead)
nosock = os.path.join(mt.TMP, 'nosock.yaml')
with open(nosock, 'w') as f:
    f.write('control:\n  mode: "0600"\n')
ctl_json_fails(2, 'no control.socket', '-c', nosock, 'status', sock=None)


def read_all(s):
    out = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def raw(data, half_close=False):
    """Sends data on a fresh connection and reads until the daemon closes it."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(mt.slack(10))
    s.connect(SOCK)
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    return read_all(s)


out = raw(b'\x00\xff\xfe binary junk\n')
mt.check(out.startswith(b'ERR ') and b'bad request' in out, 'garbage on the raw socket: an ERR reply, then the connection closes')
out = raw(b'x' * 5000)
mt.check(out.startswith(b'ERR ') and b'line too long' in out, 'an over-long line: ERR line too long')
out = raw(b'status\nbackends\nhelp\n', half_close=True)
mt.check(out.count(b'OK ') >= 3 and out.startswith(b'OK '), 'three pipelined requests, three OK replies')
held = []
for i in range(20):
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    held.append(s)
# Past the 16 slots a connection takes over the one idle the longest (test_control_idle.py:
# and a refusal when every slot is owed replies): the first four are closed, the last is
# answered.
held[0].settimeout(mt.slack(5))
try:
    first = held[0].recv(200)
except OSError:
    first = b'?'
held[-1].settimeout(mt.slack(5))
held[-1].sendall(b'status\n')
try:
    last = held[-1].recv(200)
except OSError:
    last = b''
mt.check(first == b'' and last.startswith(b'OK '),
         'connections past the limit take over idle ones: the oldest closed (%r), the newest answered (%r)'
         % (first[:60], last[:60]))
for s in held:
    s.close()
rc, out, _ = ctl('status')
mt.check(rc == 0 and mx.alive(), 'the daemon still answers after all that')
mt.check(not mx.malformed_log_lines(), 'every log line is well formed (%r)' % mx.malformed_log_lines()[:3])
mx.stop()
mt.check(not os.path.exists(SOCK), 'the socket file is removed at exit')

# ---------------------------------------------------------------- the socket's directory
# README's "Operating it" names /run/mxgate/control.sock; outside systemd (no
# RuntimeDirectory=) that directory does not exist: mxgate makes it, as it does a maildir's
newdir = os.path.join(mt.TMP, 'run-mxgate')
sock2 = os.path.join(newdir, 'control.sock')
mx2 = mt.Mxgate(mt.config([a.url], control={'socket': sock2}), name='mx-ctl-newdir', wait=False)
mt.check(mt.wait_for(lambda: mx2.wait_log(r'event=started', 0) or not mx2.alive(), 15) and mx2.alive(),
         'a control socket in a directory that does not exist yet: mxgate starts (%s)' % mx2.tail(3).strip()[-200:])
rc, out, _ = ctl('status', sock=sock2)
mt.check(rc == 0 and out.startswith('mxgate '), 'and answers there (%s)' % rc)
mx2.stop()

# ---------------------------------------------------------------- a backend never seen up
# Its latency is unknown, not 0 ms: null in JSON (as the text view's "-"), so a dashboard that
# averages latency_ms is not pulled down by a dead server.
# The dead one is down at its first refused probe, which can come before the live one's first
# answer: the test read the live latency then, and on a busy machine got None (None > 0: the
# test died). Here the live sink is stopped until the dead one shows down, so it always comes
# first; the first round of probes is in when status says ready, and the state is read then.
dead = 'smtp://127.0.0.1:%d' % mt.dead_port()
sock3 = os.path.join(mt.TMP, 'control3.sock')


def status3():
    rc, out, _ = ctl('--json', 'status', sock=sock3)
    return json.loads(out) if rc == 0 else None


def dead_state(js):
    b = backend(js, dead) if js else None
    return b and b['state']


os.kill(a.proc.pid, signal.SIGSTOP)
try:
    mx3 = mt.Mxgate(mt.config([a.url, dead], control={'socket': sock3}), name='mx-ctl-dead', wait=False)
    mt.wait_for(lambda: dead_state(status3()) == 'down', 20)
    js = status3() or {}
    live = backend(js, a.url) if js else None
    mt.check(js.get('ready') is False and live and live['latency_ms'] is None,
             'the dead one down, the live one not answered yet: not ready, its latency unknown (%r)' % live)
finally:
    os.kill(a.proc.pid, signal.SIGCONT)
js = mt.wait_for(lambda: (lambda j: j if j and j['ready'] and dead_state(j) == 'down' else None)(status3()), 20)
mt.check(backend(js, dead)['state'] == 'down' and backend(js, dead)['latency_ms'] is None,
         'a backend never seen up: latency_ms null, not 0 (%r)' % backend(js, dead))
mt.check(backend(js, a.url)['latency_ms'] > 0, '... while the live one has its latency')
rc, out, _ = ctl('backends', sock=sock3)
row = next((ln for ln in out.splitlines() if ln.startswith(dead)), '')
mt.check(row.split()[1:3] == ['down', '-'], 'backends: the dead one shows "-" for its latency (%r)' % row)
mx3.stop()
# two levels missing: a mistake mxgate -t reports at the key, not a "permission denied" at start
deep = os.path.join(mt.TMP, 'deep.yaml')
open(deep, 'w').write('listen: [127.0.0.1:2525]\nbackends: { servers: ["%s"] }\ncontrol: { socket: %s }\n' %
                      (a.url, os.path.join(mt.TMP, 'no', 'such', 'control.sock')))
r = mt.run_mxgate('-t', '-c', deep)
mt.check(r.returncode == 1 and re.search(r'^%s:3:\d+: control\.socket: .*no such directory' % re.escape(deep),
                                         r.stdout + r.stderr, re.M),
         'mxgate -t: a socket whose directory and parent are missing is a control.socket error (%s)' %
         (r.stdout + r.stderr).strip()[:200])
mt.finish()
