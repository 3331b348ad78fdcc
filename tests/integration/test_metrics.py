#!/usr/bin/env python3
"""The metrics endpoint, health checks, TLS and maildir delivery, end to end with the real
binary: smtp-sink and a maildir as backends, swaks (plain and STARTTLS) as clients.

- GET /metrics answers in the Prometheus text format; counters move with real traffic
  (sessions, TLS sessions, messages delivered, replies by class, per-backend delivered).
- the maildir backend gets real files in new/, as many as its delivered counter says.
- killing smtp-sink takes it out (mxgate_backend_up 0, event=backend_down in the log);
  restarting it brings it back (1, event=backend_up); unknown paths get 404."""
import os
import re
import socket
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from mxtest import fail  # noqa: E402

mt.need('smtp-sink', 'swaks', 'openssl')


def scrape(mport, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (mport, path), timeout=5) as r:
        return r.status, r.headers.get('Content-Type', ''), r.read().decode()


LINE = re.compile(r'^(mxgate_[a-zA-Z0-9_]+)(\{[a-zA-Z_]+="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_]+="(?:[^"\\]|\\.)*")*\})? (\S+)$')


def parse(text):
    """Checks every line against the text format; returns {name or name{labels}: value}."""
    out, declared = {}, set()
    if not text.endswith('\n'):
        fail('exposition does not end with a newline')
    for line in text.splitlines():
        if line.startswith('# HELP ') or line.startswith('# TYPE '):
            parts = line.split(' ', 3)
            if line.startswith('# TYPE '):
                if parts[3] not in ('counter', 'gauge') or parts[2] in declared:
                    fail('bad or repeated TYPE line: %r' % line)
                declared.add(parts[2])
            continue
        m = LINE.match(line)
        if not m:
            fail('line not in exposition format: %r' % line)
        if m.group(1) not in declared:
            fail('sample before its TYPE: %r' % line)
        out[m.group(1) + (m.group(2) or '')] = float(m.group(3))
    return out


def wait_metric(mport, key, want, timeout=15):
    got = mt.wait_for(lambda: parse(scrape(mport)[2]).get(key) == want, timeout, 0.2)
    mt.check(got, '%s becomes %r' % (key, want))


def swaks(port, subject, tls=False):
    r = mt.swaks(port, '--from', 'a@example.org', '--to', 'b@example.test', '--header', 'Subject: ' + subject,
                 *(['--tls'] if tls else []))
    if r.returncode != 0:
        fail('swaks %s failed: %s' % (subject, (r.stdout + r.stderr).strip().splitlines()[-3:]))
    return r.stdout


# ---------------------------------------------------------------- setup
crt, key = mt.cert()
maildir = os.path.join(mt.TMP, 'Maildir')
sink = mt.Sink(backlog=64)
sport = sink.port
mx = mt.Mxgate(mt.config([sink.url, 'maildir:' + maildir], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key},
                         backends={'balance': 'round_robin',
                                   'health_check': {'interval': '300ms', 'timeout': '1s', 'fall': 2, 'rise': 2}},
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}))
port, mport = mx.port, mx.metrics_port
if mport is None:
    fail('no event=metrics_listen with the bound port in the log')
log_tail = mx.log


# ---------------------------------------------------------------- traffic and counters
status, ctype, text = scrape(mport)
if status != 200 or not ctype.startswith('text/plain; version=0.0.4'):
    fail('GET /metrics: %d %r' % (status, ctype))
m0 = parse(text)
for k in ('mxgate_sessions_total', 'mxgate_sessions_active', 'mxgate_messages_delivered_total',
          'mxgate_replies_2xx_total', 'mxgate_tls_sessions_total'):
    if k not in m0:
        fail('missing series ' + k)
smtp_key = 'mxgate_backend_up{backend="smtp://127.0.0.1:%d"}' % sport
md_key = 'mxgate_backend_up{backend="maildir:%s"}' % maildir
if m0.get(smtp_key) != 1 or m0.get(md_key) != 1:
    fail('backends not up at start: %r %r' % (m0.get(smtp_key), m0.get(md_key)))

N = 4
for i in range(N):
    swaks(port, 'metrics plain %d' % i)
out = swaks(port, 'metrics tls', tls=True)
if 'TLS' not in out:
    fail('swaks --tls did not negotiate TLS')
# the sessions have ended once the daemon says none is active (swaks returns on the 221)
m1 = mt.wait_for(lambda: (lambda m: m if m.get('mxgate_sessions_active') == 0 else None)(parse(scrape(mport)[2])), 10)
if not m1:
    m1 = parse(scrape(mport)[2])
d = lambda k: m1.get(k, 0) - m0.get(k, 0)
if d('mxgate_sessions_total') < N + 1:
    fail('sessions_total moved by %r for %d sessions' % (d('mxgate_sessions_total'), N + 1))
if d('mxgate_tls_sessions_total') != 1:
    fail('tls_sessions_total moved by %r for one STARTTLS session' % d('mxgate_tls_sessions_total'))
if d('mxgate_messages_delivered_total') != N + 1:
    fail('messages_delivered_total moved by %r for %d messages' % (d('mxgate_messages_delivered_total'), N + 1))
if d('mxgate_replies_2xx_total') < 4 * (N + 1):
    fail('replies_2xx_total moved by only %r' % d('mxgate_replies_2xx_total'))
if m1.get('mxgate_sessions_active') != 0:
    fail('sessions_active is %r with no client connected' % m1.get('mxgate_sessions_active'))
logged = log_tail()
smtp_logged = logged.count('event=delivered') - logged.count('backend=maildir:')
md_logged = logged.count('backend=maildir:%s ' % maildir)
smtp_counter = m1.get('mxgate_backend_delivered_total{backend="smtp://127.0.0.1:%d"}' % sport, 0)
if smtp_counter != smtp_logged or smtp_logged == 0:
    fail('smtp backend delivered counter %r, log says %d' % (smtp_counter, smtp_logged))
files = os.listdir(os.path.join(maildir, 'new')) if os.path.isdir(os.path.join(maildir, 'new')) else []
if len(files) != md_logged or md_logged == 0:
    fail('maildir holds %d files, the log says %d were delivered there' % (len(files), md_logged))
md_counter = m1.get('mxgate_backend_delivered_total{backend="maildir:%s"}' % maildir, 0)
if md_counter != md_logged:
    # session.c does not call backend_report_success() after a maildir delivery (reported).
    mt.check(False, 'maildir backend_delivered_total is %r, %d delivered' % (md_counter, md_logged))
body = open(os.path.join(maildir, 'new', files[0]), 'rb').read()
if b'Subject: metrics ' not in body or not re.match(r'^\d+\.M\d+P\d+Q\d+\.', files[0]):
    fail('maildir file %s does not look delivered: %r' % (files[0], body[:200]))
if [f for f in os.listdir(os.path.join(maildir, 'tmp')) if not f.endswith('.probe')]:   # a probe's is its own
    fail('files left in maildir tmp/')
lat = m1.get('mxgate_backend_latency_seconds{backend="smtp://127.0.0.1:%d"}' % sport, 0)
if not 0 < lat < 1:
    fail('smtp backend latency %r' % lat)

# ---------------------------------------------------------------- 404, bad request
try:
    urllib.request.urlopen('http://127.0.0.1:%d/nothing-here' % mport, timeout=5)
    fail('GET /nothing-here did not give 404')
except urllib.error.HTTPError as e:
    if e.code != 404:
        fail('GET /nothing-here gave %d' % e.code)
s = socket.create_connection(('127.0.0.1', mport), 5)
s.sendall(b'\x16\x03\x01\x00\x05hello\r\n\r\n')
s.shutdown(socket.SHUT_WR)
resp = s.recv(200)
s.close()
if not resp.startswith(b'HTTP/1.0 400'):
    fail('garbage request got %r' % resp[:40])

# ---------------------------------------------------------------- backend down and back
sink.kill()
wait_metric(mport, smtp_key, 0)
if 'event=backend_down backend=smtp://127.0.0.1:%d' % sport not in log_tail():
    fail('no event=backend_down log line')
swaks(port, 'while down')        # the maildir backend takes it
sink.start()
wait_metric(mport, smtp_key, 1)
if 'event=backend_up backend=smtp://127.0.0.1:%d' % sport not in log_tail():
    fail('no event=backend_up log line')
mt.check(mx.alive(), 'mxgate alive at the end')
mx.stop()

# ---------------------------------------------------------------- metrics.listen taken
# As with `listen` (and as HAProxy's and nginx's binds): a metrics address that cannot be bound
# stops the start, instead of a daemon running without its probes and /metrics.
busy = socket.socket()
busy.bind(('127.0.0.1', 0))
busy.listen(1)
path = os.path.join(mt.TMP, 'busy-metrics.yaml')
with open(path, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:%d' % sport], listen=[{'address': '127.0.0.1:%d' % mt.hold_port().port}],
                                 metrics={'listen': '127.0.0.1:%d' % busy.getsockname()[1]})))
r = mt.run_mxgate('-c', path, timeout=20)
mt.check(r.returncode == 1 and 'metrics.listen' in r.stderr,
         'metrics.listen in use: the start fails (exit 1) naming metrics.listen (rc %s, %r)' % (r.returncode, r.stderr.strip()[-200:]))
busy.close()
mt.finish()
