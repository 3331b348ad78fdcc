#!/usr/bin/env python3
"""Pipelining to the backend (RFC 2920), against the running daemon: a client that pipelines
MAIL/RCPT/DATA gets MAIL relayed together with its first RCPT in one write when the backend
offers PIPELINING, and each reply mapped back in order (several recipients, one refused);
a sender the backend refuses answers that RCPT; a replay after a lost backend sends MAIL and
the accepted recipients again in one write; a client that does not pipeline, and a backend
without PIPELINING (smtp-sink -p), get MAIL relayed on its own as before. Several pipelined
transactions on one connection: the next MAIL/RCPT/DATA goes to the backend in the same
write as the message's final dot, a refusal of the next RCPT, a backend that closes after
the dot, smtp-sink behind. 250 at end of data only after the backend's 250 throughout. In steady
state a pipelined message costs the daemon two reads and two writes (the four replies to the
client in one), counted by the kernel (/proc/PID/io), not timed.
Peers: smtp-sink, scripted backends, and a small recording backend here that notes what
each read() brought."""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402


def config_noxc(servers, **kw):
    """mt.config with client_identity none: the recording servers here offer no XCLIENT
    (backends.require_xclient would refuse them: test_xclient_required)."""
    b = {'client_identity': 'none'}
    b.update(kw.pop('backends', None) or {})
    return mt.config(servers, backends=b, **kw)

mt.need('smtp-sink')


class Recorder:
    """A minimal SMTP server with PIPELINING: every recv() is recorded as one read (a write
    of mxgate's arrives whole on loopback), every line in `lines`; commands are answered as
    lines complete. RCPTs to no@... are refused; DATA gets 354 even then (as RFC 2920 3.1
    allows a server), and the dot 554 when no recipient was accepted."""

    def __init__(self, close_after_dot=None, garbage_after_dot=None):
        self.close_after_dot = close_after_dot   # close the connection after that many dots
        self.garbage_after_dot = garbage_after_dot   # after that many dots, garbage to MAIL
        self.dots = 0
        self.reads, self.lines, self.lock = [], [], threading.Lock()
        self.contents = []     # the lines of every message (between DATA and the dot)
        self.conns = []        # the lines of each connection (`lines` interleaves them)
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def sessions(self):
        """Connections that did more than EHLO and QUIT (mxgate's health probes do just that),
        each connection's own lines (`lines` interleaves them: a probe's EHLO followed there
        by another connection's MAIL is still a probe)."""
        with self.lock:
            conns = [list(c) for c in self.conns]
        return sum(1 for c in conns if any(not x.startswith(b'EHLO') and x != b'QUIT' for x in c))

    @property
    def url(self):
        return 'smtp://127.0.0.1:%d' % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf, data, rcpts = b'', None, 0
        garble = False
        mine = []
        with self.lock:
            self.conns.append(mine)
        c.sendall(b'220 recorder ESMTP\r\n')
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    return
                with self.lock:
                    self.reads.append(chunk)
                buf += chunk
                out = b''
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    line = line.rstrip(b'\r')
                    with self.lock:
                        self.lines.append(line)
                        mine.append(line)
                    if data is not None:
                        if line == b'.':
                            with self.lock:
                                self.contents.append(data)
                            data = None
                            out += b'250 2.0.0 Ok: queued as REC1\r\n' if rcpts else b'554 5.5.1 no valid recipients\r\n'
                            self.dots += 1
                            garble = self.dots == self.garbage_after_dot
                            if self.dots == self.close_after_dot:
                                c.sendall(out)   # the reply to the dot, then gone
                                c.close()
                                return
                        else:
                            data.append(line)
                        continue
                    verb = line.split(b' ', 1)[0].upper()
                    if verb == b'EHLO':
                        out += b'250-recorder\r\n250-PIPELINING\r\n250 8BITMIME\r\n'
                    elif verb == b'DATA':
                        data = []
                        out += b'354 go ahead\r\n'
                    elif verb == b'RCPT' and b'<no@' in line:
                        out += b'550 5.1.1 no such user\r\n'
                    elif verb == b'RCPT':
                        rcpts += 1
                        out += b'250 2.1.5 Ok\r\n'
                    elif verb == b'MAIL' and garble:
                        out += b'hello, garbage\r\n'
                        garble = False
                    elif verb in (b'MAIL', b'RSET'):
                        rcpts = 0
                        out += b'250 2.0.0 Ok\r\n'
                    elif verb == b'QUIT':
                        c.sendall(out + b'221 Bye\r\n')
                        return
                    else:
                        out += b'250 2.0.0 Ok\r\n'
                if out:
                    c.sendall(out)
        except OSError:
            return


def pipelined(port, rcpts, tag, mail='a@example.org'):
    """EHLO, then MAIL, the RCPTs and DATA in one write; the body only after 354. Returns
    the replies (MAIL, each RCPT, DATA, end of data or None when DATA was refused)."""
    c = mt.Client(port)
    c.ehlo()
    c.send(b'MAIL FROM:<%s>\r\n' % mail.encode() + b''.join(b'RCPT TO:<%s>\r\n' % r.encode() for r in rcpts)
           + b'DATA\r\n')
    replies = [c.reply() for _ in range(2 + len(rcpts))]
    if replies[-1][0] == 354:
        c.send(mt.stuff(mt.message(tag)))
        replies.append(c.reply())
    else:
        replies.append(None)
    c.cmd('QUIT')
    c.close()
    return replies


def codes(replies):
    return [r[0] if r else None for r in replies]


def session_of(port, groups):
    """One connection, transactions pipelined as a client like Postfix's smtp does them
    across messages: MAIL, RCPT(s), DATA in one write, then each message's content with its
    final dot and the next group in one write. groups: [(tag, [rcpts])]. Returns per
    transaction the codes (MAIL, RCPTs, DATA, end of data or None)."""
    c = mt.Client(port)
    c.ehlo()
    def group(rcpts):
        return b'MAIL FROM:<a@example.org>\r\n' + b''.join(b'RCPT TO:<%s>\r\n' % r.encode() for r in rcpts) + b'DATA\r\n'
    out, pending = [], group(groups[0][1])
    for i, (tag, rcpts) in enumerate(groups):
        c.send(pending)
        got = [c.reply()[0] for _ in range(2 + len(rcpts))]
        nxt = group(groups[i + 1][1]) if i + 1 < len(groups) else b'QUIT\r\n'
        if got[-1] == 354:
            c.send(mt.stuff(mt.message(tag)) + nxt)
            got.append(c.reply()[0])
            pending = b''
        else:
            got.append(None)
            c.send(b'RSET\r\n')
            c.reply()
            pending = nxt
        out.append(got)
    c.close()
    return out


# ------------------------------------------------------------------ MAIL with the first RCPT, one write
rec = Recorder()
mx = mt.Mxgate(config_noxc([rec.url]), name='mxgate-recorder')
r = pipelined(mx.port, ['b@example.test'], 'pipe-one')
mt.check(codes(r) == [250, 250, 354, 250], 'pipelined transaction delivered (%r)' % (r,))
with rec.lock:
    reads = list(rec.reads)
grouped = [x for x in reads if x.startswith(b'MAIL FROM:') and b'\r\nRCPT TO:<b@example.test>\r\nDATA\r\n' in x]
mt.check(len(grouped) == 1, 'MAIL, the first RCPT and DATA reached the backend in one write (%r)' % reads)
# every RCPT refused but DATA got 354: a lone "." ends it, the connection stays in step
n = len(rec.lines)
c = mt.Client(mx.port)
c.ehlo()
c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<no@example.test>\r\nDATA\r\n')
r = [c.reply() for _ in range(3)]
mt.check([x[0] for x in r] == [250, 550, 554], 'all RCPTs refused: DATA refused by mxgate (%r)' % (r,))
mt.check(mt.wait_for(lambda: rec.lines[n:].count(b'.') == 1, 5) is True,
         'the backend\'s 354 got a lone "." (%r)' % rec.lines[n:])
with rec.lock:
    seen = rec.lines[n:]
mt.check(seen[-2:] == [b'DATA', b'.'], 'right after the DATA sent ahead (%r)' % seen)
c.send(b'RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n')
r = [c.reply() for _ in range(4)]
mt.check([x[0] for x in r] == [250, 250, 250, 354], 'the next transaction in the same session (%r)' % (r,))
c.send(mt.stuff(mt.message('pipe-after-dot')))
code, text = c.reply()
mt.check(code == 250, 'delivered after the lone dot (%s %s)' % (code, text))
with rec.lock:
    seen = rec.lines[n:]
mt.check(b'Subject: test pipe-after-dot' in seen, 'the message reached the backend as content (%r)' % seen[-12:])
# the client goes on with RCPT after mxgate refused its DATA, while the DATA sent ahead is
# still open at the backend: that RCPT must never reach it as message content
c.send(b'RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<no@example.test>\r\nDATA\r\n'
       b'RCPT TO:<b@example.test>\r\nDATA\r\n')
r = [c.reply() for _ in range(6)]
mt.check([x[0] for x in r] == [250, 250, 550, 554, 250, 354], 'RCPT after a refused DATA (%r)' % (r,))
c.send(mt.stuff(mt.message('pipe-rcpt-after-data')))
code, text = c.reply()
mt.check(code == 250, 'delivered (%s %s)' % (code, text))
with rec.lock:
    contents = list(rec.contents)
mt.check(not any(x.startswith(b'RCPT') or x.startswith(b'MAIL') for m in contents for x in m),
         'no command ever reached the backend as content')
mt.check(sum(1 for m in contents if b'Subject: test pipe-rcpt-after-data' in m) == 1, 'the message arrived once')
c.cmd('QUIT')
c.close()
# a client that waits for each reply: MAIL relayed on its own, as before
n = len(reads)
res = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('pipe-lockstep'))
mt.check(res[0] == 250, 'lock-step client delivered (%r)' % (res,))
with rec.lock:
    later = rec.reads[n:]
mt.check(any(x.startswith(b'MAIL FROM:') and b'RCPT' not in x for x in later),
         'a lock-step client: MAIL relayed before its RCPT is known (%r)' % later)
mx.stop()

# ------------------------------------------------------------------ transactions one behind the other
# the next group goes with the final dot: one backend round trip per message
rec = Recorder()
mx = mt.Mxgate(config_noxc([rec.url]), name='mxgate-ahead')
r = session_of(mx.port, [('ahead-%d' % i, ['b@example.test']) for i in range(4)])
mt.check(r == [[250, 250, 354, 250]] * 4, 'four pipelined transactions on one connection (%r)' % (r,))
with rec.lock:
    reads, contents = list(rec.reads), list(rec.contents)
ahead = [x for x in reads if b'\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n' in x]
mt.check(len(ahead) == 3, 'the next MAIL, RCPT and DATA reached the backend in the write of the dot (%d of 3)'
         % len(ahead))
mt.check(rec.sessions() == 1, 'one backend session (%r)' % rec.lines[:8])
for i in range(4):
    mt.check(sum(1 for m in contents if b'Subject: test ahead-%d' % i in m) == 1, 'ahead-%d arrived once' % i)
mt.check(not any(x.startswith(b'RCPT') or x.startswith(b'MAIL') for m in contents for x in m),
         'no command ever reached the backend as content')
# the backend refuses the second message's recipient: that RCPT gets the refusal, the
# DATA behind it (354 at the backend) is ended by a lone dot, the third goes on
n = len(rec.lines)
with rec.lock:
    offs = [len(x) for x in rec.conns]   # what each connection had said before this part
r = session_of(mx.port, [('refnext-1', ['b@example.test']), ('refnext-2', ['no@example.test']),
                         ('refnext-3', ['b@example.test'])])
mt.check(r == [[250, 250, 354, 250], [250, 550, 554, None], [250, 250, 354, 250]],
         'the next RCPT refused by the backend (%r)' % (r,))
with rec.lock:
    contents, seen = list(rec.contents), rec.lines[n:]
mt.check(sum(1 for m in contents if b'Subject: test refnext-' in b'\n'.join(m)) == 2, 'two messages delivered')
mt.check(not any(b'Subject: test refnext-2' in x for m in contents for x in m), 'the refused one not')


def lone_dot():
    """A connection on which the refused RCPT's DATA was followed by a lone dot (the third
    transaction may take another connection meanwhile, and the dot may come after the
    client's replies: the lines of each connection, waited for)."""
    with rec.lock:
        conns = [list(x[offs[k]:] if k < len(offs) else x) for k, x in enumerate(rec.conns)]
    return any(x[i + 1:i + 3] == [b'DATA', b'.'] for x in conns for i, l in enumerate(x)
               if l == b'RCPT TO:<no@example.test>')


mt.check(mt.wait_for(lone_dot, 5) is True, 'the backend\'s 354 got a lone dot (%r)' % seen)
mx.stop()
# a backend that closes right after its reply to the dot: the message stands, the next
# transaction (sent ahead on the dead connection) goes over a new one
rec = Recorder(close_after_dot=1)
mx = mt.Mxgate(config_noxc([rec.url]), name='mxgate-ahead-lost')
r = session_of(mx.port, [('lost-1', ['b@example.test']), ('lost-2', ['b@example.test'])])
mt.check(r == [[250, 250, 354, 250]] * 2, 'backend gone between the dot and the next MAIL (%r)' % (r,))
with rec.lock:
    contents = list(rec.contents)
mt.check([sum(1 for m in contents if b'Subject: test lost-%d' % i in m) for i in (1, 2)] == [1, 1],
         'both delivered once (%r)' % len(contents))
mt.check(rec.sessions() == 2, 'the second over a new connection (%d)' % rec.sessions())
mx.stop()
# a backend that answers the dot, then garbage to the MAIL sent ahead with it: the message
# stands, the next transaction goes over a new connection without counting as an attempt,
# and the garbage is the backend's fault (logged with its reason, counted), not a "stale
# pooled connection" as a connection the backend closed would be
rec = Recorder(garbage_after_dot=1)
mx = mt.Mxgate(config_noxc([rec.url], backends={'max_attempts': 1}), name='mxgate-ahead-garbage')
r = session_of(mx.port, [('garbled-1', ['b@example.test']), ('garbled-2', ['b@example.test'])])
mt.check(r == [[250, 250, 354, 250]] * 2, 'garbage to the MAIL sent ahead: both transactions go on (%r)' % (r,))
with rec.lock:
    contents = list(rec.contents)
mt.check([sum(1 for m in contents if b'Subject: test garbled-%d' % i in m) for i in (1, 2)] == [1, 1],
         'garbage to the MAIL sent ahead: both delivered once (%r)' % len(contents))
mt.check(mx.count_log(r'event=backend_error .*reason="malformed reply" sent_ahead=unanswered retry=fresh') == 1 and
         mx.count_log(r'reason="stale pooled connection"') == 0,
         'garbage to the MAIL sent ahead: event=backend_error reason="malformed reply" sent_ahead=unanswered')
mx.stop()
# a recipient of the next group that mxgate refuses itself (accept_domains) is never sent
# ahead, nor anything behind it: the backend sees only what the client was granted
rec = Recorder()
mx = mt.Mxgate(config_noxc([rec.url], accept_domains=['example.test']), name='mxgate-ahead-denied')
r = session_of(mx.port, [('denied-1', ['b@example.test']), ('denied-2', ['b@example.test', 'x@other.test'])])
mt.check(r == [[250, 250, 354, 250], [250, 250, 550, 354, 250]], 'the next group with a denied recipient (%r)' % (r,))
with rec.lock:
    lines, contents = list(rec.lines), list(rec.contents)
mt.check(not any(b'other.test' in x for x in lines if not x.startswith(b'To:')),
         'the denied recipient never reached the backend (%r)' % [x for x in lines if b'other.test' in x])
mt.check(sum(1 for m in contents if b'Subject: test denied-2' in m) == 1, 'the second message delivered once')
mx.stop()
# the same against smtp-sink, and its count
sink = mt.Sink()
mx = mt.Mxgate(config_noxc([sink.url]), name='mxgate-ahead-sink')
r = session_of(mx.port, [('sink-%d' % i, ['b@example.test', 'c@example.test']) for i in range(5)])
mt.check(r == [[250, 250, 250, 354, 250]] * 5, 'five two-recipient transactions through smtp-sink (%r)' % (r,))
mt.check(mt.wait_for(lambda: sink.count() == 5, 5) is True, 'five at the sink (%r)' % sink.count())
mx.stop()

# ------------------------------------------------------------------ replies mapped back in order
be = mt.Backend(name='order', reject_rcpt={'no@example.test'}, tempfail_rcpt={'later@example.test'})
mx = mt.Mxgate(config_noxc([be.url], limits={'max_errors': 100}), name='mxgate-order')
r = pipelined(mx.port, ['one@example.test', 'no@example.test', 'later@example.test', 'two@example.test'], 'pipe-order')
mt.check(codes(r) == [250, 250, 550, 450, 250, 354, 250], 'each RCPT gets its own reply, in order (%r)' % (codes(r),))
got = be.by_tag('pipe-order')
mt.check(len(got) == 1 and got[0]['accepted_rcpts'] == ['one@example.test', 'two@example.test'],
         'delivered to the accepted recipients only (%r)' % ([g['accepted_rcpts'] for g in got],))
# every recipient refused: DATA is ours to refuse, nothing reaches the backend's DATA
n = len(be.attempts)
r = pipelined(mx.port, ['no@example.test'], 'pipe-none')
mt.check(codes(r)[:3] == [250, 550, 554] and r[3] is None, 'all RCPTs refused: DATA refused (%r)' % (codes(r),))
mt.check(len(be.attempts) == n, 'nothing sent to the backend as a message')
mx.stop()

# ------------------------------------------------------------------ the sender refused by the backend
bad = mt.Backend(name='nomail', mode='tempfail_mail')
mx = mt.Mxgate(config_noxc([bad.url], limits={'max_errors': 100}), name='mxgate-nomail')
r = pipelined(mx.port, ['b@example.test'], 'pipe-nomail')
mt.check(codes(r)[:2] == [250, 451], 'pipelined: the backend refuses MAIL, the RCPT gets it (%r)' % (r,))
mt.check(r[3] is None, 'no DATA without a recipient')
res = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('lockstep-nomail'))
mt.check(res.stage == 'mail' and res[0] == 451, 'lock-step: MAIL gets the refusal itself (%r)' % (res,))
mx.stop()

# ------------------------------------------------------------------ replay after a lost backend
lost = mt.Backend(name='lost', mode='drop_after_data')
good = mt.Backend(name='good')
mx = mt.Mxgate(config_noxc([lost.url, good.url], backends={'max_attempts': 2}), name='mxgate-replay')
# round robin: of four messages some go to the lost backend first
for i in range(4):
    tag = 'pipe-replay-%d' % i
    r = pipelined(mx.port, ['x@example.test', 'y@example.test'], tag)
    mt.check(codes(r) == [250, 250, 250, 354, 250], '%s: delivered (%r)' % (tag, codes(r)))
    got = good.by_tag(tag)
    mt.check(len(got) == 1 and got[0]['accepted_rcpts'] == ['x@example.test', 'y@example.test'],
             '%s: at the good backend with both recipients' % tag)
mt.check(len(lost.attempts) >= 1, 'some went to the lost backend first and were replayed (%d)' % len(lost.attempts))
mx.stop()

# ------------------------------------------------------------------ a pipelined message's system calls
# In steady state a pipelined message costs the daemon what an L4 relay pays, one round trip on
# each leg: a read from the client (content, dot, next group), one write to the backend (the
# same, after the Received field), a read of the backend's replies (the dot's 250 and the next
# group's 250 250 354 in one write of smtp-sink's) and ONE write of the four replies to the
# client. Counted by the kernel (/proc/PID/io: syscr/syscw count read/readv and write/writev,
# every thread), not timed; the log's own writes (one a line, its lines counted once the
# delivered lines are all there) are taken off, and a probe comes once an hour.
def io_snapshot(mx, delivered):
    mt.check(mt.wait_for(lambda: mx.count_log(r'event=delivered ') == delivered, 10) is True,
             '%d delivered lines logged (%d)' % (delivered, mx.count_log(r'event=delivered ')))
    with open('/proc/%d/io' % mx.pid) as f:
        got = dict(line.split(':', 1) for line in f if ':' in line)
    with open(mx.logpath, 'rb') as f:
        lines = f.read().count(b'\n')
    return int(got['syscr']), int(got['syscw']), lines


sink = mt.Sink()
mx = mt.Mxgate(config_noxc([sink.url], backends={'health_check': {'interval': '1h'}}), name='mxgate-calls')
c = mt.Client(mx.port)
c.ehlo()
group = b'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n'
c.send(group)
first = [c.reply()[0] for _ in range(3)]
WARM, COUNT = 3, 40
seen, before = [], None
for i in range(WARM + COUNT):
    if i == WARM:
        before = io_snapshot(mx, WARM)
    c.send(mt.stuff(mt.message('calls-%d' % i, size=4096)) + group)
    seen.append([c.reply()[0] for _ in range(4)])
after = io_snapshot(mx, WARM + COUNT)
c.send(mt.stuff(mt.message('calls-last', size=4096)) + b'QUIT\r\n')
last = [c.reply()[0] for _ in range(2)]
c.close()
mt.check(first == [250, 250, 354] and seen == [[250, 250, 250, 354]] * (WARM + COUNT) and last == [250, 221],
         '%d pipelined messages delivered (%r %r %r)' % (WARM + COUNT + 1, first, seen[:2], last))
reads, writes, logged = after[0] - before[0], after[1] - before[1], after[2] - before[2]
mt.check(writes - logged == 2 * COUNT, 'two writes a pipelined message, to the backend and the four replies to the '
         'client (%d writes, %d of them log lines, for %d messages)' % (writes, logged, COUNT))
mt.check(reads == 2 * COUNT, 'two reads a pipelined message (%d for %d)' % (reads, COUNT))
mt.check(mt.wait_for(lambda: sink.count() == WARM + COUNT + 1, 5) is True, 'all at the sink (%r)' % sink.count())
mx.stop()

# ------------------------------------------------------------------ a backend without PIPELINING
sink = mt.Sink(args=['-p'])
mx = mt.Mxgate(config_noxc([sink.url]), name='mxgate-nopipe')
r = pipelined(mx.port, ['b@example.test', 'c@example.test'], 'pipe-nopipe')
mt.check(codes(r) == [250, 250, 250, 354, 250], 'smtp-sink -p: delivered one command at a time (%r)' % (codes(r),))
mt.check(mt.wait_for(lambda: sink.count() == 1, 5) is True, 'at the sink')
mx.stop()
mt.finish()
