#!/usr/bin/env python3
"""A lock-step client's DATA (no pipelining: each command waits for its reply), against the
running daemon. With no module judging the end of data, mxgate sends DATA to the backend
when it answers the client's DATA 354 (smtp_tx_data_early), so the backend's 354 comes while
the client sends the content and the end of data costs one backend round trip. The
guarantees on that path:
- the backend has DATA before the client sends a line of content (it did not, before);
- a message refused after it (size limit, NUL, bare LF, the client leaving) closes that
  backend connection without a dot: nothing is delivered, the client gets the refusal, and
  its next transaction on the same connection is delivered (a fresh backend connection);
- a backend refusing DATA (554, 451): the client gets 5xx/4xx at its dot, never 250;
- a backend dying with DATA open: replayed on another server (delivered), or 4xx when every
  attempt dies so;
- every RCPT refused: the client's DATA is refused by mxgate, no DATA reaches the backend;
- a backend offering CHUNKING gets BDAT as before (no DATA ahead).
Peers: a scripted backend here (records each connection's lines in order, with where the
content started and whether it closed), mt.Backend for CHUNKING, smtp-sink behind smtp-source
-d (lock-step, one connection, many messages)."""
import os
import socket
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402


def config_noxc(servers, **kw):
    """mt.config with client_identity none: the recording servers here offer no XCLIENT
    (backends.require_xclient would refuse them: test_xclient_required)."""
    b = {'client_identity': 'none'}
    b.update(kw.pop('backends', None) or {})
    return mt.config(servers, backends=b, **kw)

mt.need('smtp-sink', 'smtp-source')

FROM, RCPT = 'a@example.org', 'b@example.test'


class Script:
    """A minimal SMTP server. Each connection's events in order: ('cmd', line), ('content',
    first line) when a message starts, ('dot',) at its end, ('closed',) when the peer closed.
    data_replies: the replies to DATA, one per DATA received overall (the last repeats;
    '354' goes on to read a message). close_after_354: connections (counted from 1 over the
    ones that reached DATA) that close right after their 354. reject: RCPTs answered 550.
    Delivered messages (answered 250) in `delivered` (their lines)."""

    def __init__(self, data_replies=('354 go ahead',), close_after_354=(), reject=(), pipelining=True):
        self.data_replies = list(data_replies)
        self.close_after_354 = set(close_after_354)
        self.reject = set(reject)
        self.pipelining = pipelining
        self.conns, self.delivered = [], []
        self.ndata = self.ndata_conns = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return 'smtp://127.0.0.1:%d' % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            ev = []
            with self.lock:
                self.conns.append(ev)
            threading.Thread(target=self._serve, args=(c, ev), daemon=True).start()

    def events(self):
        with self.lock:
            return [list(e) for e in self.conns]

    def sessions(self):
        """Connections that did more than EHLO and QUIT (the health probes)."""
        return [e for e in self.events() if any(x[0] == 'cmd' and not x[1].startswith('EHLO') and x[1] != 'QUIT'
                                                for x in e)]

    def _serve(self, c, ev):
        f = c.makefile('rb')
        c.sendall(b'220 script ESMTP\r\n')
        in_data, lines, ndata_here = False, [], 0
        try:
            while True:
                raw = f.readline()
                if not raw:
                    break
                line = raw.rstrip(b'\r\n').decode('latin-1')
                if in_data:
                    if line == '.':
                        in_data = False
                        with self.lock:
                            ev.append(('dot',))
                            self.delivered.append(lines)
                        c.sendall(b'250 2.0.0 Ok: queued as SCRIPT\r\n')
                        continue
                    if not lines:
                        with self.lock:
                            ev.append(('content', line))
                    lines.append(line)
                    continue
                with self.lock:
                    ev.append(('cmd', line))
                verb = line[:4].upper()
                if verb in ('EHLO', 'LHLO'):
                    c.sendall(b'250-script\r\n' + (b'250-PIPELINING\r\n' if self.pipelining else b'') +
                              b'250 8BITMIME\r\n')
                elif verb == 'RCPT':
                    addr = line.split('<', 1)[1].split('>', 1)[0] if '<' in line else ''
                    c.sendall(b'550 5.1.1 no such user\r\n' if addr in self.reject else b'250 2.1.5 Ok\r\n')
                elif verb == 'DATA':
                    with self.lock:
                        reply = self.data_replies[min(self.ndata, len(self.data_replies) - 1)]
                        self.ndata += 1
                        if ndata_here == 0:
                            self.ndata_conns += 1
                        ndata_here += 1
                        close = reply.startswith('354') and self.ndata_conns in self.close_after_354
                    c.sendall(reply.encode() + b'\r\n')
                    if close:
                        break
                    if reply.startswith('354'):
                        in_data, lines = True, []
                elif verb == 'QUIT':
                    c.sendall(b'221 bye\r\n')
                    break
                else:
                    c.sendall(b'250 2.0.0 Ok\r\n')
        except OSError:
            pass
        with self.lock:
            ev.append(('closed',))
        try:
            c.close()
        except OSError:
            pass


def lockstep_to_data(port):
    """A client through EHLO, MAIL, RCPT (each waiting for its reply) and DATA; (client, DATA's code)."""
    c = mt.Client(port)
    c.ehlo()
    mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 250, 'MAIL 250')
    mt.check(c.cmd('RCPT TO:<%s>' % RCPT)[0] == 250, 'RCPT 250')
    return c, c.cmd('DATA')[0]


def data_open(sc):
    """The index (in sc.events()) of the connection that has DATA and no content yet, or None."""
    for k, e in enumerate(sc.events()):
        cmds = [x for x in e if x[0] in ('cmd', 'content', 'closed')]
        if cmds and cmds[-1] == ('cmd', 'DATA'):
            return k
    return None


def wait_data_open(sc):
    """Waits (a hang guard) for a connection with DATA open; its index or None."""
    got = []
    mt.wait_for(lambda: got.append(data_open(sc)) or got[-1] is not None, mt.slack(5))
    return got[-1] if got else None


def ended_without_dot(sc, k):
    """Connection k closed with its last DATA open (no dot, no QUIT after it)."""
    e = sc.events()
    if k is None or len(e) <= k or e[k][-1] != ('closed',) or ('cmd', 'DATA') not in e[k]:
        return False
    last = max(i for i, x in enumerate(e[k]) if x == ('cmd', 'DATA'))
    return all(x[0] in ('content', 'closed') for x in e[k][last + 1:])


def message(tag, body=b'hello\r\n'):
    return b'Subject: ' + tag.encode() + b'\r\n\r\n' + body


def send_content(c, data):
    c.send(data + b'.\r\n')
    return c.reply()


# --------------------------------------------------- DATA reaches the backend before content
sc = Script()
mx = mt.Mxgate(config_noxc([sc.url], limits={'max_message_size': 4096, 'bare_lf': 'reject'}), name='mx-early')
c, code = lockstep_to_data(mx.port)
mt.check(code == 354, 'DATA 354 (%s)' % code)
first = wait_data_open(sc)
mt.check(first is not None, 'the backend has DATA before the client sent any content (%r)' % sc.sessions())
r = send_content(c, message('early-1'))
mt.check(r[0] == 250, 'delivered: 250 at the dot (%r)' % (r,))
mt.check(any('Subject: early-1' in x for m in sc.delivered for x in m), 'the message is at the backend')
# the same connection goes on lock-step: its next message too
mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 250 and c.cmd('RCPT TO:<%s>' % RCPT)[0] == 250, 'second MAIL, RCPT')
mt.check(c.cmd('DATA')[0] == 354, 'second DATA 354')
mt.check(first is not None and wait_data_open(sc) == first and sc.events()[first].count(('cmd', 'DATA')) == 2,
         'the second DATA reached the backend before its content, same connection')
mt.check(send_content(c, message('early-2'))[0] == 250, 'the second message: 250')

# ------------------------------- refused after the early DATA: the backend connection closes
for case, body, want in (('size', b'x' * 70 + b'\r\n', 552), ('nul', b'a\0b\r\n', 554),
                         ('bare_lf', b'one\ntwo\r\n', 550)):
    delivered = len(sc.delivered)
    c2, code = lockstep_to_data(mx.port)
    mt.check(code == 354, '%s: DATA 354' % case)
    k = wait_data_open(sc)
    mt.check(k is not None, '%s: DATA open at the backend' % case)
    r = send_content(c2, message('refused-' + case, body * (100 if case == 'size' else 1)))
    mt.check(r[0] == want, '%s: the client gets %d at its dot (%r)' % (case, want, r))
    mt.check(mt.wait_for(lambda: ended_without_dot(sc, k), mt.slack(5)),
             '%s: that backend connection closed without a dot (%r)' % (case, sc.events()[k] if k is not None else None))
    mt.check(len(sc.delivered) == delivered, '%s: nothing delivered' % case)
    # the next transaction on the same client connection works (a fresh backend connection)
    mt.check(c2.cmd('MAIL FROM:<%s>' % FROM)[0] == 250 and c2.cmd('RCPT TO:<%s>' % RCPT)[0] == 250,
             '%s: next MAIL, RCPT' % case)
    mt.check(c2.cmd('DATA')[0] == 354, '%s: next DATA' % case)
    r = send_content(c2, message('after-' + case))
    mt.check(r[0] == 250, '%s: the next message on the same client connection: 250 (%r)' % (case, r))
    mt.check(any('Subject: after-' + case in x for m in sc.delivered for x in m), '%s: next message delivered' % case)
    c2.cmd('QUIT')

# ------------------------------------------- the client leaves with the backend's DATA open
delivered = len(sc.delivered)
c3, code = lockstep_to_data(mx.port)
k = wait_data_open(sc)
mt.check(k is not None, 'gone: DATA open at the backend')
c3.send(b'Subject: half\r\n\r\npart of it\r\n')
c3.sock.close()
mt.check(mt.wait_for(lambda: ended_without_dot(sc, k), mt.slack(10)),
         'the client gone: the backend connection closed without a dot (%r)' % (sc.events()[k] if k is not None else None))
mt.check(len(sc.delivered) == delivered, 'the client gone: nothing delivered')
c.cmd('QUIT')
mx.stop()

# --------------------------------------------------------- the backend refuses DATA: 5xx, 4xx
for reply, cls in (('554 5.7.1 no data for you', 5), ('451 4.3.0 try later', 4)):
    sc = Script(data_replies=(reply,))
    mx = mt.Mxgate(config_noxc([sc.url], backends={'max_attempts': 2}), name='mx-refuse%d' % cls)
    c, code = lockstep_to_data(mx.port)
    mt.check(code == 354, 'refusing backend: the client still gets our 354')
    mt.check(mt.wait_for(lambda: any(('cmd', 'DATA') in s for s in sc.sessions()), mt.slack(5)),
             'refusing backend: DATA went before the content')
    r = send_content(c, message('refused-data'))
    mt.check(r[0] is not None and r[0] // 100 == cls, 'backend %r to DATA: the client gets %dxx at its dot (%r)'
             % (reply, cls, r))
    mt.check(not sc.delivered, 'backend refusing DATA: nothing delivered')
    # the client's connection is still usable
    mt.check(c.cmd('RSET')[0] == 250, 'RSET after the refusal')
    c.cmd('QUIT')
    mx.stop()

# ------------------------------------------------------------ the backend dies with DATA open
sc, sb = Script(close_after_354={1}), Script()
mx = mt.Mxgate(config_noxc([sc.url, {'address': sb.url, 'backup': True}], backends={'max_attempts': 3}),
               name='mx-die-once')
c, code = lockstep_to_data(mx.port)
mt.check(mt.wait_for(lambda: any(ended_without_dot(sc, i) for i in range(len(sc.events()))), mt.slack(5)),
         'the backend closed after its 354')
r = send_content(c, message('replayed'))
mt.check(r[0] == 250, 'the backend died with DATA open: replayed on the other server, 250 (%r)' % (r,))
mt.check(not sc.delivered and len(sb.delivered) == 1 and any('Subject: replayed' in x for x in sb.delivered[0]),
         'delivered once, by the replay')
c.cmd('QUIT')
mx.stop()

sc = Script(close_after_354=set(range(1, 20)))
mx = mt.Mxgate(config_noxc([sc.url], backends={'max_attempts': 2}), name='mx-die-always')
c, code = lockstep_to_data(mx.port)
r = send_content(c, message('lost'))
mt.check(r[0] is not None and r[0] // 100 == 4, 'every attempt dies with DATA open: 4xx (%r)' % (r,))
mt.check(not sc.delivered, 'nothing delivered')
c.cmd('QUIT')
mx.stop()

# ----------------------------------------------------- every RCPT refused: no DATA anywhere
sc = Script(reject={RCPT})
mx = mt.Mxgate(config_noxc([sc.url]), name='mx-norcpt')
c = mt.Client(mx.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<%s>' % FROM)[0] == 250, 'MAIL')
mt.check(c.cmd('RCPT TO:<%s>' % RCPT)[0] == 550, 'the only RCPT refused by the backend')
code = c.cmd('DATA')[0]
mt.check(code is not None and code // 100 == 5, 'DATA refused by mxgate (%s)' % code)
mt.check(c.cmd('RSET')[0] == 250, 'RSET')
mt.check(not any(('cmd', 'DATA') in s for s in sc.sessions()), 'no DATA reached the backend')
c.cmd('QUIT')
mx.stop()

# ----------------------------------------------------------- CHUNKING: BDAT, no DATA ahead
b = mt.Backend(chunking=True)
mx = mt.Mxgate(config_noxc([b.url]), name='mx-chunking')
c, code = lockstep_to_data(mx.port)
r = send_content(c, message('chunked'))
mt.check(r[0] == 250, 'CHUNKING backend: 250 (%r)' % (r,))
mt.check(len(b.messages) == 1 and b.messages[0].get('bdat'), 'the message went as BDAT')
mt.check(not any(x.upper() == 'DATA' for x in b.commands), 'no DATA to a CHUNKING backend (%r)' % b.commands)
c.cmd('QUIT')
mx.stop()

# ------------------------------------------- smtp-source -d: lock-step, many on one connection
sink = mt.Sink(name='sink-d')
mx = mt.Mxgate(config_noxc([sink.url]), name='mx-d')
r = mt.smtp_source(mx.port, '-d', '-s', '2', '-m', '40', '-l', '1024', '-f', FROM, '-t', RCPT, timeout=60)
mt.check(r.returncode == 0, 'smtp-source -d ran (%r)' % (r.stderr[-300:] if r.stderr else ''))
mt.check(mt.wait_for(lambda: sink.count() == 40, mt.slack(10)), 'all 40 delivered (%d)' % sink.count())
mx.stop()

mt.finish()
