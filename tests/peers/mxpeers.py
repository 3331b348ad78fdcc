"""Helpers for mxgate's plugin integration tests: start real peers on 127.0.0.1 (clamd,
python3-milter filters, spamd, misbehaving peers), a recording SMTP backend, and mxgate
itself; talk SMTP. Everything started is stopped by PID at exit.

Environment: MXGATE_BIN (the daemon), MX_SOURCE_DIR, MX_BUILD_DIR (set by ctest)."""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('MX_SOURCE_DIR', os.path.abspath(os.path.join(HERE, '..', '..')))
BUILD = os.environ.get('MX_BUILD_DIR', os.path.join(SRC, 'build'))
BIN = os.environ.get('MXGATE_BIN', os.path.join(BUILD, 'mxgate'))
TMP = tempfile.mkdtemp(prefix='mxgate-plugins-')
os.chmod(TMP, 0o755)
_procs = []

EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'


def _cleanup():
    for p in reversed(_procs):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(5)
            except Exception:
                try:
                    p.kill()
                except Exception:
                    pass
    if not os.environ.get('MX_KEEP_TMP'):
        shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_cleanup)

_failures = []


def check(cond, what):
    """Records one assertion; prints it."""
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        _failures.append(what)


def finish():
    if _failures:
        print('%d check(s) failed; logs in %s' % (len(_failures), TMP))
        os.environ['MX_KEEP_TMP'] = '1'
        sys.exit(1)
    print('all checks passed')
    sys.exit(0)


def skip(why):
    print('SKIP: ' + why)
    sys.exit(0)


def need(path, what=None):
    if not (shutil.which(path) or os.path.exists(path)):
        skip('%s not installed' % (what or path))


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


def spawn(args, name, **kw):
    log = open(os.path.join(TMP, name + '.log'), 'ab')
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
    p.logname = name
    _procs.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def logtext(name):
    try:
        return open(os.path.join(TMP, name + '.log'), 'rb').read().decode('utf-8', 'replace')
    except OSError:
        return ''


# ------------------------------------------------------------------ peers
def clamd():
    need('clamd')
    port = free_port()
    d = os.path.join(TMP, 'clamav')
    for sub in ('db', 'tmp'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for f in ('mxgate-eicar.ndb', 'mxgate-eicar.hdb'):
        shutil.copy(os.path.join(HERE, 'clamav', f), os.path.join(d, 'db', f))
    conf = open(os.path.join(HERE, 'clamav', 'clamd.conf.in')).read()
    conf = conf.replace('@DIR@', d).replace('@PORT@', str(port))
    open(os.path.join(d, 'clamd.conf'), 'w').write(conf)
    p = spawn(['clamd', '--config-file=' + os.path.join(d, 'clamd.conf')], 'clamd')
    if not wait_port(port, 60):
        skip('clamd did not start: ' + logtext('clamd')[-300:])
    p.port = port
    p.sock = os.path.join(d, 'clamd.sock')
    return p


def milter(stall=10, unix=False):
    """tests/peers/mx_milter.py on a free port (or a unix socket: .sock)."""
    if not os.path.exists('/usr/bin/python3') or subprocess.run(
            ['/usr/bin/python3', '-c', 'import Milter'], capture_output=True).returncode != 0:
        skip('python3-milter not installed')
    port = free_port()
    sock = os.path.join(TMP, 'milter-%d.sock' % port)
    p = spawn(['/usr/bin/python3', os.path.join(HERE, 'mx_milter.py'),
               ('unix:' + sock) if unix else 'inet:%d@127.0.0.1' % port, str(stall)], 'milter-%d' % port)
    end = time.time() + 20
    while unix and not os.path.exists(sock) and time.time() < end:
        time.sleep(0.05)
    if (unix and not os.path.exists(sock)) or (not unix and not wait_port(port, 20)):
        skip('test milter did not start')
    p.port = port
    p.sock = sock
    return p


def bad_peer(mode):
    port = free_port()
    p = spawn([sys.executable, os.path.join(HERE, 'bad_peer.py'), str(port), mode], 'bad-' + mode)
    if not wait_port(port, 10):
        raise RuntimeError('bad peer did not start')
    p.port = port
    return p


def spamd():
    need('spamd')
    port = free_port()
    d = os.path.join(TMP, 'spamd')
    os.makedirs(d, exist_ok=True)
    # Debian's .pre files load the plugins (Check at least); our local.cf keeps it offline.
    for f in os.listdir('/etc/spamassassin') if os.path.isdir('/etc/spamassassin') else ():
        if f.endswith('.pre'):
            shutil.copy(os.path.join('/etc/spamassassin', f), os.path.join(d, f))
    open(os.path.join(d, 'local.cf'), 'w').write('required_score 5.0\nuse_bayes 0\nskip_rbl_checks 1\n'
                                                  'use_razor2 0\nuse_pyzor 0\ndns_available no\n')
    os.chmod(d, 0o755)
    p = spawn(['spamd', '--listen=127.0.0.1:%d' % port, '--allowed-ips=127.0.0.1', '--siteconfigpath=' + d,
               '--local', '--nouser-config', '--username=nobody', '--max-children=2',
               '--pidfile=' + os.path.join(d, 'spamd.pid')], 'spamd')
    if not wait_port(port, 60):
        skip('spamd did not start: ' + logtext('spamd')[-300:])
    p.port = port
    return p


# ------------------------------------------------------------------ a recording backend
class Backend:
    """An SMTP server in a thread: records envelope and data of every accepted message."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(128)
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
            mail, rcpts = None, []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode('latin-1').rstrip('\r\n')
                verb = cmd.split(' ', 1)[0].upper()
                if verb in ('EHLO', 'HELO'):
                    w('250-backend.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES')
                elif verb == 'XCLIENT':
                    w('220 backend.test ESMTP')
                elif verb == 'MAIL':
                    mail, rcpts = cmd[10:].split(' ')[0].strip('<>'), []
                    w('250 2.1.0 Ok')
                elif verb == 'RCPT':
                    rcpts.append(cmd[8:].split(' ')[0].strip('<>'))
                    w('250 2.1.5 Ok')
                elif verb == 'DATA':
                    w('354 go ahead')
                    data = []
                    while True:
                        l = f.readline()
                        if not l:
                            return
                        if l == b'.\r\n':
                            break
                        data.append(l[1:] if l.startswith(b'.') else l)
                    with self.lock:
                        self.messages.append({'from': mail, 'rcpt': list(rcpts), 'data': b''.join(data)})
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

    def find(self, needle):
        with self.lock:
            return [m for m in self.messages if needle.encode() in m['data']]


# ------------------------------------------------------------------ mxgate
def mxgate(plugins_yaml, backend_port, name='mxgate', extra=''):
    if not os.path.exists(BIN):
        skip('mxgate binary not built: ' + BIN)
    port = free_port()
    cfg = ('hostname: mx.example.test\nworkers: 1\nlisten:\n  - address: "127.0.0.1:%d"\n'
           'limits:\n  max_connections_per_ip: 1000\n'
           'backends:\n  client_identity: none\n  servers:\n    - { address: "smtp://127.0.0.1:%d" }\n'
           '%s\nplugins:\n%s\n') % (port, backend_port, extra, plugins_yaml)
    path = os.path.join(TMP, name + '.yaml')
    open(path, 'w').write(cfg)
    p = spawn([BIN, '-c', path], name)
    if not wait_port(port, 20):
        raise RuntimeError('mxgate did not start: ' + logtext(name)[-500:])
    p.port = port
    p.config = path
    return p


def config_check(plugins_yaml, name='check'):
    path = os.path.join(TMP, name + '.yaml')
    open(path, 'w').write('hostname: mx.example.test\nlisten:\n  - address: "127.0.0.1:2525"\n'
                          'backends:\n  servers:\n    - { address: "smtp://127.0.0.1:2526" }\n'
                          'plugins:\n%s\n' % plugins_yaml)
    r = subprocess.run([BIN, '-t', '-c', path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


# ------------------------------------------------------------------ SMTP client
class Client:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(('127.0.0.1', port), timeout)
        self.buf = b''

    def reply(self):
        lines = []
        while True:
            while b'\n' not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise ConnectionError('closed after %r' % lines)
                self.buf += d
            line, self.buf = self.buf.split(b'\n', 1)
            line = line.decode('latin-1').rstrip('\r')
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                return int(line[:3]), '\n'.join(lines)

    def cmd(self, line):
        self.s.sendall(line.encode() + b'\r\n')
        return self.reply()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def send(port, body, mail_from='a@example.org', rcpts=('b@example.test',), timeout=30):
    """One transaction on a fresh connection. Returns (final code, text, rcpt codes)."""
    c = Client(port, timeout)
    rc = []
    try:
        code, text = c.reply()
        if code != 220:
            return code, text, rc
        code, text = c.cmd('EHLO client.example.org')
        if code != 250:
            return code, text, rc
        code, text = c.cmd('MAIL FROM:<%s>' % mail_from)
        if code != 250:
            return code, text, rc
        for r in rcpts:
            rc.append(c.cmd('RCPT TO:<%s>' % r)[0])
        if 250 not in rc:
            return rc[-1], 'no recipient', rc
        code, text = c.cmd('DATA')
        if code != 354:
            return code, text, rc
        data = body.replace('\r\n', '\n').replace('\n', '\r\n')
        data = '\r\n'.join(('.' + l) if l.startswith('.') else l for l in data.split('\r\n'))
        c.s.sendall((data + ('' if data.endswith('\r\n') else '\r\n') + '.\r\n').encode('latin-1'))
        code, text = c.reply()
        try:
            c.cmd('QUIT')
        except Exception:
            pass
        return code, text, rc
    except (OSError, ConnectionError) as e:
        return 0, str(e), rc
    finally:
        c.close()


def send_many(port, bodies, mail_from='a@example.org', rcpt='b@example.test'):
    """Several transactions on one connection. Returns the final code of each."""
    c = Client(port)
    codes = []
    try:
        c.reply()
        c.cmd('EHLO client.example.org')
        for body in bodies:
            c.cmd('MAIL FROM:<%s>' % mail_from)
            c.cmd('RCPT TO:<%s>' % rcpt)
            c.cmd('DATA')
            data = body.replace('\r\n', '\n').replace('\n', '\r\n')
            c.s.sendall((data + '.\r\n').encode('latin-1'))
            codes.append(c.reply()[0])
        c.cmd('QUIT')
    except (OSError, ConnectionError):
        pass
    finally:
        c.close()
    return codes


def message(mid, body='', extra_headers=''):
    return ('From: a@example.org\r\nTo: b@example.test\r\nSubject: test %s\r\nMessage-ID: <%s@test>\r\n'
            'Date: Wed, 25 Nov 2026 01:00:00 +0000\r\n%s\r\nbody of %s\r\n%s\r\n' % (mid, mid, extra_headers, mid, body))


def eicar_message(mid):
    import base64
    att = base64.b64encode(EICAR.encode()).decode()
    return ('From: a@example.org\r\nTo: b@example.test\r\nSubject: invoice %s\r\nMessage-ID: <%s@test>\r\n'
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
            'Content-Type: text/plain\r\n\r\nbody of %s\r\n--XX\r\nContent-Type: application/octet-stream; name="a.com"\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--XX--\r\n' % (mid, mid, mid, att))


def opendkim(domain='example.org', selector='mxtest'):
    """opendkim in signing mode on a free port, with a fresh key. Returns the process with
    .port and .pubkey (the p= value)."""
    need('/usr/sbin/opendkim', 'opendkim')
    need('/usr/sbin/opendkim-genkey', 'opendkim-tools')
    port = free_port()
    d = os.path.join(TMP, 'opendkim')
    os.makedirs(d, exist_ok=True)
    subprocess.run(['/usr/sbin/opendkim-genkey', '-b', '1024', '-D', d, '-d', domain, '-s', selector],
                   check=True, capture_output=True)
    conf = os.path.join(d, 'opendkim.conf')
    open(conf, 'w').write('\n'.join([
        'Syslog no', 'Background no', 'Mode s', 'Domain %s' % domain, 'Selector %s' % selector,
        'KeyFile %s/%s.private' % (d, selector), 'Socket inet:%d@127.0.0.1' % port,
        'Canonicalization relaxed/simple', 'InternalHosts 127.0.0.1', 'PidFile %s/opendkim.pid' % d,
        'RequireSafeKeys no', 'UMask 002', '']))
    p = spawn(['/usr/sbin/opendkim', '-f', '-x', conf], 'opendkim')
    if not wait_port(port, 20):
        skip('opendkim did not start: ' + logtext('opendkim')[-300:])
    txt = open(os.path.join(d, selector + '.txt')).read()
    p.port = port
    p.pubkey = ''.join(__import__('re').findall(r'"([^"]*)"', txt)).split('p=')[-1]
    return p


def clamav_milter(clamd_port):
    need('/usr/sbin/clamav-milter', 'clamav-milter')
    port = free_port()
    d = os.path.join(TMP, 'clamav-milter')
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'clamav-milter.conf')
    open(conf, 'w').write('\n'.join([
        'MilterSocket inet:%d@127.0.0.1' % port, 'ClamdSocket tcp:127.0.0.1:%d' % clamd_port,
        'Foreground yes', 'OnInfected Reject', 'OnFail Defer', 'AddHeader Replace',
        'LogFile %s/clamav-milter.log' % d, 'PidFile %s/clamav-milter.pid' % d,
        'RejectMsg Virus %v found by clamav-milter', 'User root', '']))
    p = spawn(['/usr/sbin/clamav-milter', '-c', conf], 'clamav-milter')
    if not wait_port(port, 20):
        skip('clamav-milter did not start: ' + logtext('clamav-milter')[-300:])
    p.port = port
    return p


def rspamd():
    """rspamd's /checkv2 protocol: a real rspamd when MX_RSPAMD_ADDRESS names one, otherwise
    tests/peers/fake_rspamd.py (rspamd itself is ~1 GB and 18 s to start cold)."""
    port = free_port()
    p = spawn([sys.executable, os.path.join(HERE, 'fake_rspamd.py'), str(port),
               os.path.join(TMP, 'rspamd-requests.log')], 'fake-rspamd')
    if not wait_port(port, 10):
        raise RuntimeError('fake rspamd did not start')
    p.port = port
    return p
