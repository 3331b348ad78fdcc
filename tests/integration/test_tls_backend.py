#!/usr/bin/env python3
"""STARTTLS towards a backend, and TLS towards clients, with real peers.

A scripted ESMTP backend (Python's ssl module, i.e. OpenSSL on the other side) offers
STARTTLS; mxgate must upgrade before MAIL FROM and the message must arrive intact over TLS.
A second backend offers no STARTTLS: mail still flows in clear (opportunistic). The health
checks (EHLO, QUIT without STARTTLS) must not disturb either. On the client side,
openssl s_client negotiates STARTTLS (TLS 1.3 and forced 1.2) and implicit TLS, and a TLS 1.1
client is refused with a protocol_version alert."""
import atexit, os, shutil, socket, ssl, subprocess, sys, tempfile, threading, time

BIN = os.environ.get('MXGATE_BIN') or os.path.join(
    os.environ.get('MX_BUILD_DIR', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build')),
    'mxgate')
TMP = tempfile.mkdtemp(prefix='mxgate-tlsbe-')
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


def fail(msg):
    print('FAIL: ' + msg)
    log = os.path.join(TMP, 'mxgate.log')
    if os.path.exists(log):
        print('--- mxgate log (last 30 lines)')
        print('\n'.join(open(log, errors='replace').read().splitlines()[-30:]))
    sys.exit(1)


if not os.path.exists(BIN):
    print('SKIP: mxgate not built: ' + BIN)
    sys.exit(0)
for tool in ('openssl', 'swaks'):
    if shutil.which(tool) is None:
        print('SKIP: %s not installed' % tool)
        sys.exit(0)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


crt, key = os.path.join(TMP, 'cert.pem'), os.path.join(TMP, 'key.pem')
subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=backend.test'],
               check=True, capture_output=True, timeout=30)


class Backend:
    """A minimal ESMTP server: one thread per connection, STARTTLS optional. Records each
    message with the TLS version it came over (None = clear)."""

    def __init__(self, starttls):
        self.starttls = starttls
        self.messages = []
        self.sessions = 0
        self.lock = threading.Lock()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        buf = b''
        tls = None

        def line():
            nonlocal buf
            while b'\n' not in buf:
                d = c.recv(65536)
                if not d:
                    raise EOFError
                buf += d
            ln, buf = buf.split(b'\n', 1)
            return ln.rstrip(b'\r')

        def send(s):
            c.sendall(s.encode() + b'\r\n')

        with self.lock:
            self.sessions += 1
        try:
            send('220 backend.test ESMTP')
            mail = None
            while True:
                cmd = line()
                verb = cmd[:4].upper()
                if verb in (b'EHLO', b'HELO'):
                    ext = ['250-backend.test', '250-8BITMIME', '250-SIZE 10485760']
                    if self.starttls and tls is None:
                        ext.append('250-STARTTLS')
                    ext.append('250 ENHANCEDSTATUSCODES')
                    c.sendall(('\r\n'.join(ext) + '\r\n').encode())
                elif cmd.upper() == b'STARTTLS' and self.starttls and tls is None:
                    send('220 2.0.0 ready')
                    buf = b''                       # RFC 3207: nothing before the handshake counts
                    c = self.ctx.wrap_socket(c, server_side=True)
                    tls = c.version()
                elif verb == b'MAIL':
                    mail = {'from': cmd, 'rcpt': [], 'tls': tls}
                    send('250 2.1.0 ok')
                elif verb == b'RCPT':
                    mail['rcpt'].append(cmd)
                    send('250 2.1.5 ok')
                elif verb == b'DATA':
                    send('354 go ahead')
                    data = []
                    while True:
                        ln = line()
                        if ln == b'.':
                            break
                        data.append(ln[1:] if ln.startswith(b'.') else ln)
                    mail['data'] = b'\r\n'.join(data)
                    with self.lock:
                        self.messages.append(mail)
                    send('250 2.0.0 Ok: queued as TLS%d' % len(self.messages))
                elif verb == b'RSET':
                    mail = None
                    send('250 2.0.0 ok')
                elif verb == b'NOOP':
                    send('250 2.0.0 ok')
                elif verb == b'QUIT':
                    send('221 2.0.0 bye')
                    return
                else:
                    send('502 5.5.2 not implemented')
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


def run_mxgate(backend_port, port, iport):
    cfg = os.path.join(TMP, 'mxgate-%d.yaml' % backend_port)
    open(cfg, 'w').write('''hostname: mx.test
workers: 1
listen:
  - { address: "127.0.0.1:%d", tls: starttls }
  - { address: "127.0.0.1:%d", tls: implicit }
tls: { certificate: "%s", key: "%s" }
backends:
  client_identity: none
  health_check: { interval: 500ms, timeout: 2s }
  servers: [ "smtp://127.0.0.1:%d" ]
''' % (port, iport, crt, key, backend_port))
    logf = open(os.path.join(TMP, 'mxgate.log'), 'a')
    p = subprocess.Popen([BIN, '-c', cfg], stdout=logf, stderr=subprocess.STDOUT)
    procs.append(p)
    if not wait_port(port) or not wait_port(iport):
        fail('mxgate did not start')
    return p


def swaks(port, subject, tls=False):
    cmd = ['swaks', '--server', '127.0.0.1', '--port', str(port), '--from', 'a@example.org',
           '--to', 'b@example.test', '--header', 'Subject: ' + subject, '--body', 'line one\n.leading dot\nend',
           '--timeout', '20']
    if tls:
        cmd.append('--tls')
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail('swaks %r: %s' % (subject, (r.stdout + r.stderr).strip().splitlines()[-3:]))


def s_client(port, *args):
    r = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % port, '-brief'] + list(args),
                       input='QUIT\n', capture_output=True, text=True, timeout=20)
    return r.stdout + r.stderr


# ---------------------------------------------------------------- backend offers STARTTLS
be = Backend(starttls=True)
port, iport = free_port(), free_port()
mx = run_mxgate(be.port, port, iport)
swaks(port, 'to a TLS backend')
swaks(port, 'TLS on both legs', tls=True)
got = [m for m in be.messages if b'Subject: ' in m.get('data', b'')]
if len(got) != 2:
    fail('backend got %d messages, expected 2' % len(got))
for m in got:
    if m['tls'] not in ('TLSv1.3', 'TLSv1.2'):
        fail('message reached the STARTTLS backend in clear (tls=%r)' % m['tls'])
    if b'\r\n.leading dot\r\n' not in m['data']:
        fail('dot-stuffing across the TLS leg broke the body: %r' % m['data'][-80:])
time.sleep(1.2)   # a couple of health probes (EHLO + QUIT, no STARTTLS) went by
if mx.poll() is not None:
    fail('mxgate died')

# ---------------------------------------------------------------- client side TLS
out = s_client(port, '-starttls', 'smtp')
if 'Protocol version: TLSv1.3' not in out:
    fail('s_client -starttls smtp: %r' % out[-300:])
out = s_client(iport, '-tls1_2')
if 'Protocol version: TLSv1.2' not in out:
    fail('s_client implicit TLS 1.2: %r' % out[-300:])
out = s_client(iport, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0')
if 'alert protocol version' not in out and 'no protocols available' not in out:
    fail('a TLS 1.1 client was not refused: %r' % out[-300:])
if mx.poll() is not None:
    fail('mxgate died')
mx.kill()
mx.wait()

# ---------------------------------------------------------------- backend without STARTTLS
plain = Backend(starttls=False)
port, iport = free_port(), free_port()
mx = run_mxgate(plain.port, port, iport)
swaks(port, 'to a clear backend', tls=True)
got = [m for m in plain.messages if b'Subject: to a clear backend' in m.get('data', b'')]
if len(got) != 1 or got[0]['tls'] is not None:
    fail('opportunistic: clear backend got %r' % got)
print('OK: STARTTLS to a TLS backend (both legs encrypted, body intact), clear backend still served; '
      's_client STARTTLS/implicit/TLS1.2 work, TLS 1.1 refused')
