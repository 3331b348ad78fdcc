"""hostile_peer — scripted SMTP/LMTP backends that misbehave on request, for the tests of the
relay's backend side (test_hostile_backends, test_relay_faults). Not a test itself.

    bad = scripted('name', {'mail': send_then(b'hello, garbage\r\n', True)})
    mx = mt.Mxgate(mt.config([bad.url]))
    ... bad.n (connections), bad.messages ((rcpts, body) accepted), bad.events (note())

smtp(srv, p, hooks) is the dialogue; a hook (srv, p, arg) handles a stage itself (True: the
dialogue goes on, False: the connection ends) or returns None for the normal reply.
"""
import re
import socket
import threading
import time


class Peer:
    """One accepted backend connection, seen from the scripted server."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b''

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def line(self, limit=1 << 20):
        """One line without CRLF (str), or None on EOF/error."""
        while b'\n' not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > limit:
                return None
        ln, self.buf = self.buf.split(b'\n', 1)
        return ln.rstrip(b'\r').decode('utf-8', 'replace')

    def body(self):
        """Reads a DATA body up to the final dot; returns bytes (unstuffed) or None on EOF."""
        out = []
        while True:
            ln = self.line()
            if ln is None:
                return None
            if ln == '.':
                return '\r\n'.join(out).encode() + b'\r\n'
            out.append(ln[1:] if ln.startswith('.') else ln)

    def close(self, how=socket.SHUT_RDWR):
        try:
            self.sock.shutdown(how)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class Script:
    """A TCP server on 127.0.0.1 that hands each connection to handler(peer, n) in a thread
    (n counts connections from 0). Records what the handlers put in .messages (accepted
    message bodies) and .log (free-form events)."""

    def __init__(self, handler, name='script', lmtp=False):
        self.handler = handler
        self.lmtp = lmtp
        self.name = name
        self.messages = []
        self.events = []
        self.lock = threading.Lock()
        self.n = 0
        self.peers = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.running = True
        self.done = threading.Event()    # set by stop(): ends every hang()
        threading.Thread(target=self._accept, daemon=True).start()
        _scripts.append(self)

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('lmtp' if self.lmtp else 'smtp', self.port)

    def note(self, what):
        with self.lock:
            self.events.append(what)

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                n = self.n
                self.n += 1
            p = Peer(c)
            self.peers.append(p)
            threading.Thread(target=self._run, args=(p, n), daemon=True).start()

    def _run(self, p, n):
        try:
            p.sock.settimeout(60)
            self.handler(self, p, n)
        except (OSError, ValueError):
            pass
        finally:
            p.close()

    def stop(self):
        self.running = False
        self.done.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for p in list(self.peers):
            p.close()


_scripts = []


def smtp(srv, p, hooks=None, lmtp=False, greet=True):
    """A plain SMTP (or LMTP) server dialogue on peer p. hooks maps a stage name to a function
    (srv, p, arg) -> True when it handled the stage itself (then the dialogue goes on),
    False to end the connection now. Stages: 'greet', 'ehlo', 'mail', 'rcpt', 'data' (before
    354), 'dot' (after the body was read; arg = body), 'rset', 'idle' (after RSET's 250),
    'quit'. An accepted message is appended to srv.messages as (rcpts, body)."""
    hooks = hooks or {}

    def hook(stage, arg=None):
        f = hooks.get(stage)
        if f is None:
            return None
        return f(srv, p, arg)

    if greet:
        r = hook('greet')
        if r is False:
            return
        if r is None:
            p.send('220 %s %s\r\n' % (srv.name, 'LMTP' if lmtp else 'ESMTP'))
    rcpts = []
    while True:
        ln = p.line()
        if ln is None:
            return
        verb = ln.split(' ', 1)[0].upper()
        if verb in ('EHLO', 'LHLO', 'HELO'):
            r = hook('ehlo', ln)
            if r is False:
                return
            if r is None:
                p.send('250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n' % srv.name)
        elif verb == 'MAIL':
            rcpts = []
            r = hook('mail', ln)
            if r is False:
                return
            if r is None:
                p.send('250 2.1.0 Ok\r\n')
        elif verb == 'RCPT':
            m = re.search(r'<([^>]*)>', ln)
            addr = m.group(1) if m else ''
            r = hook('rcpt', addr)
            if r is False:
                return
            if r is None:
                rcpts.append(addr)
                p.send('250 2.1.5 Ok\r\n')
        elif verb == 'DATA':
            r = hook('data', ln)
            if r is False:
                return
            if r is None:
                p.send('354 go ahead\r\n')
            body = p.body()
            if body is None:
                return
            r = hook('dot', (rcpts, body))
            if r is False:
                return
            if r is None:
                with srv.lock:
                    srv.messages.append((list(rcpts), body))
                    q = len(srv.messages)
                if lmtp:
                    p.send(''.join('250 2.0.0 <%s> Ok: queued as L%d\r\n' % (a, q) for a in rcpts))
                else:
                    p.send('250 2.0.0 Ok: queued as Q%d\r\n' % q)
        elif verb == 'RSET':
            rcpts = []
            r = hook('rset', ln)
            if r is False:
                return
            if r is None:
                p.send('250 2.0.0 Ok\r\n')
                if hook('idle') is False:
                    return
        elif verb == 'NOOP':
            p.send('250 2.0.0 Ok\r\n')
        elif verb == 'QUIT':
            hook('quit')
            p.send('221 2.0.0 Bye\r\n')
            return
        elif verb == 'XCLIENT':
            p.send('220 %s ESMTP\r\n' % srv.name)
        else:
            p.send('502 5.5.2 unknown\r\n')


def scripted(name, hooks=None, lmtp=False, per_conn=None):
    """A Script running smtp() with hooks; per_conn(n) -> hooks lets connection n differ."""
    def handler(srv, p, n):
        smtp(srv, p, per_conn(n) if per_conn else hooks, lmtp=lmtp)
    return Script(handler, name, lmtp=lmtp)


def hang(srv, p, arg):
    """A hook that never answers: it holds the connection, silent, until srv.stop() (or 120 s,
    longer than any test's client waits), so what ends the stage is mxgate's own timeout,
    never this server giving up first (it slept 30 s and closed: a relay without a timeout
    would have seen EOF and failed over too)."""
    srv.done.wait(120)
    return False


def stall_after(data):
    """A hook that sends data (a 354, say), then neither reads nor answers: hang()."""
    def f(srv, p, arg):
        p.send(data)
        return hang(srv, p, arg)
    return f


def slow_reader(tick, limit):
    """A 'data' hook: 354, then the message taken 64 KB every tick seconds (a backend with a
    failing disk, a slow content scan in line) for up to limit seconds; the connection ends
    then, or when mxgate closes it."""
    def f(srv, p, arg):
        p.send('354 go ahead\r\n')
        t0 = time.time()
        while time.time() - t0 < limit:
            try:
                d = p.sock.recv(65536)
            except OSError:
                return False
            if not d:
                return False
            time.sleep(tick)
        return False
    return f


def send_then(data, then=None, delay=0.0):
    """A hook that sends data, waits delay, then ends the connection (then=False) or goes on
    (then=True: the dialogue continues as if the stage was handled)."""
    def f(srv, p, arg):
        p.send(data)
        if delay:
            time.sleep(delay)
        return then
    return f




def garbage_at_reuse(n):
    """per_conn hooks: the backend answers garbage to MAIL on the second transaction of each
    connection: it is there and breaks the protocol (not a connection it dropped while idle)."""
    st = {'txns': 0}

    def mail(srv, p, arg):
        st['txns'] += 1
        if st['txns'] > 1:
            p.send(b'hello, garbage\r\n')
            return True
        return None
    return {'mail': mail}


def resp_command(p):
    """One RESP command (an array of bulk strings) as a list of str, or None at EOF."""
    ln = p.line()
    if ln is None or not ln.startswith('*'):
        return None
    args = []
    for _ in range(int(ln[1:])):
        n = int(p.line()[1:])           # $len, then len octets (a script has line ends) and CRLF
        while len(p.buf) < n + 2:
            d = p.sock.recv(65536)
            if not d:
                return None
            p.buf += d
        args.append(p.buf[:n].decode('utf-8', 'replace'))
        p.buf = p.buf[n + 2:]
    return args
