"""Small harness for the ratelimit / reputation integration tests: free ports, real peers
(redis-server), a recording SMTP backend in a thread, mxgate processes with a YAML config,
and a raw SMTP client that can send a PROXY v2 header (client addresses in 198.18.0.0/15).
Everything started is stopped by PID at exit. Not a test itself (no test_ prefix)."""
import atexit, os, shutil, signal, socket, struct, subprocess, sys, tempfile, threading, time

BIN = os.environ.get('MXGATE_BIN') or os.path.join(
    os.environ.get('MX_BUILD_DIR', os.path.join(os.path.dirname(__file__), '..', '..', 'build')), 'mxgate')
TMP = tempfile.mkdtemp(prefix='mxgate-rl-')
os.chmod(TMP, 0o755)
_procs = []


def _cleanup():
    for p in reversed(_procs):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
    if not os.environ.get('MX_KEEP_TMP'):
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_cleanup)


def skip(msg):
    print('SKIP: ' + msg)
    sys.exit(0)


def fail(msg):
    print('FAIL: ' + msg)
    for f in sorted(os.listdir(TMP)):
        if f.endswith('.log'):
            lines = open(os.path.join(TMP, f), errors='replace').read().splitlines()
            print('--- %s (last 25 lines)' % f)
            print('\n'.join(lines[-25:]))
    sys.exit(1)


def ok(msg):
    print('OK: ' + msg)
    sys.exit(0)


def need(*binaries):
    if not os.path.exists(BIN):
        skip('mxgate binary not built: ' + BIN)
    for b in binaries:
        if shutil.which(b) is None:
            skip(b + ' not installed')


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def spawn(args, name):
    log = open(os.path.join(TMP, name + '.log'), 'ab')
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    _procs.append(p)
    p.name = name
    return p


def logtext(name):
    try:
        return open(os.path.join(TMP, name + '.log'), errors='replace').read()
    except OSError:
        return ''


def stop(p, sig=signal.SIGTERM, timeout=15):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def redis(port=None):
    port = port or free_port()
    p = spawn(['redis-server', '--bind', '127.0.0.1', '--port', str(port), '--save', '',
               '--appendonly', 'no'], 'redis-%d' % port)
    if not wait_port(port):
        fail('redis-server did not start')
    p.port = port
    return p


class Backend:
    """Accepts every message (or rejects at end of data with reject=True) and records it."""

    def __init__(self, reject=False):
        self.reject = reject
        self.messages = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(256)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile('rb')
        w = lambda s: c.sendall(s.encode() + b'\r\n')
        try:
            w('220 backend.test ESMTP')
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].decode('latin-1').upper()
                if verb in ('EHLO', 'HELO', 'LHLO'):
                    w('250-backend.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n'
                      '250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n250 SIZE 104857600')
                elif verb == 'XCLI':
                    w('220 backend.test ESMTP')
                elif verb == 'DATA':
                    w('354 go ahead')
                    data = []
                    while True:
                        l = f.readline()
                        if not l or l == b'.\r\n':
                            break
                        data.append(l)
                    if self.reject:
                        w('550 5.7.1 rejected by backend')
                        continue
                    with self.lock:
                        self.messages.append(b''.join(data))
                        n = len(self.messages)
                    w('250 2.0.0 Ok: queued as B%d' % n)
                elif verb == 'QUIT':
                    w('221 2.0.0 Bye')
                    return
                else:
                    w('250 2.0.0 Ok')
        except OSError:
            return
        finally:
            c.close()

    def has(self, tag):
        needle = ('Subject: %s\r\n' % tag).encode()
        with self.lock:
            return any(needle in m for m in self.messages)


def config(port, backend_port, extra, proxy=True, workers=2):
    return ('hostname: mx.example.test\n'
            'workers: %d\n'
            'listen:\n'
            '  - address: "127.0.0.1:%d"\n'
            '    proxy_protocol: %s\n'
            'trusted_proxies: ["127.0.0.1/32"]\n'
            'limits:\n'
            '  max_connections: 2000\n'
            '  max_connections_per_ip: 2000\n'
            'backends:\n'
            '  client_identity: xclient\n'
            '  health_check: { interval: 1s, timeout: 1s }\n'
            '  servers:\n'
            '    - { address: "smtp://127.0.0.1:%d" }\n%s') % (
                workers, port, 'true' if proxy else 'false', backend_port, extra)


def mxgate(cfg_text, name, port):
    path = os.path.join(TMP, name + '.yaml')
    open(path, 'w').write(cfg_text)
    p = spawn([BIN, '-c', path], name)
    if not wait_port(port, 20):
        fail('%s did not listen on %d' % (name, port))
    p.port = port
    return p


def proxy_v2(src, dst_port):
    """A PROXY protocol v2 header for TCP over IPv4 from src:40000 to 127.0.0.1:dst_port."""
    sig = b'\r\n\r\n\x00\r\nQUIT\n'
    addrs = socket.inet_aton(src) + socket.inet_aton('127.0.0.1') + struct.pack('!HH', 40000, dst_port)
    return sig + bytes([0x21, 0x11]) + struct.pack('!H', len(addrs)) + addrs


class Client:
    def __init__(self, port, src=None, timeout=15):
        self.s = socket.create_connection(('127.0.0.1', port), timeout)
        self.buf = b''
        if src:
            self.s.sendall(proxy_v2(src, port))

    def reply(self):
        lines = []
        while True:
            while b'\n' not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError('closed after %r' % lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b'\n', 1)
            line = line.decode('latin-1').rstrip('\r')
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                return int(line[:3]), '\n'.join(lines)

    def cmd(self, line):
        self.s.sendall((line + '\r\n').encode())
        return self.reply()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def send(port, src, tag, mail_from='a@example.org', rcpts=('b@example.test',), helo='client.example.org'):
    """One message on a fresh connection; returns (final code, text, stage)."""
    try:
        c = Client(port, src)
    except OSError as e:
        return 0, str(e), 'connect'
    try:
        code, text = c.reply()
        if code != 220:
            return code, text, 'connect'
        code, text = c.cmd('EHLO ' + helo)
        if code != 250:
            return code, text, 'helo'
        code, text = c.cmd('MAIL FROM:<%s>' % mail_from)
        if code != 250:
            return code, text, 'mail'
        good = 0
        for r in rcpts:
            code, text = c.cmd('RCPT TO:<%s>' % r)
            good += code == 250
        if not good:
            return code, text, 'rcpt'
        code, text = c.cmd('DATA')
        if code != 354:
            return code, text, 'data'
        c.s.sendall(('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nbody %s\r\n.\r\n'
                     % (mail_from, rcpts[0], tag, tag)).encode())
        code, text = c.reply()
        try:
            c.cmd('QUIT')
        except Exception:
            pass
        return code, text, 'eom'
    except (OSError, ConnectionError) as e:
        return 0, str(e), 'io'
    finally:
        c.close()
