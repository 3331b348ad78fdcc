#!/usr/bin/env python3
"""No client can hold mxgate by trickling: each phase a client drives ends within its bound
however the bytes are paced (docs/operations.md, "Timeouts: what bounds each peer").

Every case sends a piece every TICK seconds, well inside the idle timeouts, and never
finishes: a timer reset on every read would let it run for ever (the case's LIMIT ends the
test then, and the check fails). What must end it is a bound counted from the phase's start:
- a command line (limits.command_timeout from the line's first octet: 421 4.4.2);
- DATA (limits.data_deadline from the 354: 421 4.4.2, no message relayed);
- BDAT, one chunk trickled or many one-octet chunks each sent whole (limits.data_deadline
  from the first chunk to the LAST one: 421 4.4.2, no message relayed);
- the TLS handshake, implicit and after STARTTLS (limits.command_timeout: closed);
- the PROXY header (limits.proxy_timeout: closed without a reply);
- a client that pipelines 2000 commands and reads the replies at a trickle (64 octets every
  TICK): the session is not held by its unread output (limits.command_timeout from the last
  command read; event=disconnect's ms, what is left in the kernel's buffers is no session);
- a whole session of complete commands, each well inside command_timeout and none a junk
  command nor an error (EHLO after EHLO): limits.session_deadline from the connect, at a
  transaction's end, never in one (421 4.4.2; a message under way is finished first).
Each case prints how long it took (the figure in the docs' table); what is checked is the
daemon's event=timeout for the session, in the phase's state, naming the bound that fired
(limit=command_timeout, data_deadline, proxy_timeout, session_deadline: the config key; before,
only session_deadline was named, and a log could not tell a command line's bound from the
DATA deadline's), the client told 421 4.4.2 (or closed without a reply) and the close — a timer
reset on every read would never fire, and the case's limit (3 x the bound + 4 s) would end it
with the connection open. Not before the bound: each case counts from before the step that
starts its timer (the connect, or the command whose reply arms it), so a loaded machine can
only make the figure larger; how much larger is not checked.
"""
import itertools
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')

CMD_TIMEOUT, DATA_DEADLINE, PROXY_TIMEOUT, SESSION_DEADLINE = 2.0, 3.0, 1.0, 4.0
TICK = 0.5          # the trickle's pace: a quarter of the idle timeouts
EARLY = 0.05        # the daemon's loop clock (CLOCK_MONOTONIC_COARSE, whole ms) lags this much at most

sink = mt.Sink()
crt, key = mt.cert()
cfg = mt.config([sink.url],
                listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'},
                        {'address': '127.0.0.1:0', 'tls': 'implicit'},
                        {'address': '127.0.0.1:0', 'proxy_protocol': True}],
                trusted_proxies=['127.0.0.1/32'],
                tls={'certificate': crt, 'key': key},
                limits={'command_timeout': '%gs' % CMD_TIMEOUT, 'data_timeout': '%gs' % CMD_TIMEOUT,
                        'data_deadline': '%gs' % DATA_DEADLINE, 'session_deadline': '%gs' % SESSION_DEADLINE,
                        'proxy_timeout': '%dms' % (PROXY_TIMEOUT * 1000),
                        # the slow reader pipelines 2000 EHLO: not junk to end it by max_errors
                        'max_junk_commands': 100000})
mx = mt.Mxgate(cfg, name='mx-trickle')
PLAIN, IMPLICIT, PROXIED = mx.ports
figures = {}


def raw(port):
    s = socket.create_connection(('127.0.0.1', port), mt.slack(10))
    return s


def dialogue(s, lines, until):
    """Sends lines (each at once) and reads until the last reply starts with `until`."""
    s.sendall(b''.join(x + b'\r\n' for x in lines))
    got = b''
    s.settimeout(mt.slack(10))
    while not got.rstrip(b'\r\n').split(b'\n')[-1].startswith(until):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def begin():
    """Taken before the step that starts a case's timer: (the clock, the daemon's log size)."""
    return time.monotonic(), mx.log_size()


def bounded(name, closed, took, begun, bound, got=None, reply=b'421 4.4.2', state='command',
            limit='command_timeout'):
    """The case ended by itself: the daemon's event=timeout in `state` for it naming `limit`
    (the config key of the bound, a regex), not before its bound (counted from begun: the
    trickle is inside every idle timeout), closed, with the reply expected (None: closed
    without one)."""
    since = time.monotonic() - begun[0]
    figures[name] = took
    mt.say('%s: closed=%s after %.2fs, %.2fs from before its timer started (bound %.1fs)'
           % (name, closed, took, since, bound))
    m = mx.wait_log(r'(?m)event=timeout state=%s client=127\.0\.0\.1 limit=(?:%s)$' % (state, limit), 5, begun[1])
    mt.check(closed and m is not None and since >= bound - EARLY,
             '%s: ended by its bound %.1fs, not before (%.2fs, closed=%s, %s)'
             % (name, bound, since, closed, m.group(0) if m else 'no event=timeout state=%s limit=%s: %s'
                % (state, limit, re.findall(r'event=timeout .*', mx.log()[begun[1]:]))))
    if reply is not None:
        mt.check(reply in (got or b''), '%s: the client is told %s (%r)' % (name, reply.decode(), (got or b'')[-120:]))
    elif got is not None:
        mt.check(got == b'', '%s: closed without a reply (%r)' % (name, got[:120]))


def limit(bound):
    return mt.slack(3 * bound + 4)


# ------------------------------------------------------------------- a command line
s = raw(PLAIN)
begun = begin()
dialogue(s, [b'EHLO trickle.test'], b'250 ')
closed, took, got = mt.trickle(s, itertools.chain([b'MAIL FROM:<'], itertools.repeat(b'a')), TICK,
                               limit(CMD_TIMEOUT))
# command_timeout, armed by EHLO's reply; session_deadline only on a machine so loaded that
# the reply came later than the bounds' difference after the connect (the timer is cut to it)
bounded('command_line', closed, took, begun, CMD_TIMEOUT, got, limit='command_timeout|session_deadline')
s.close()

# ------------------------------------------------------------------- DATA
n0 = sink.count()
s = raw(PLAIN)
begun = begin()
got = dialogue(s, [b'EHLO trickle.test', b'MAIL FROM:<a@example.org>', b'RCPT TO:<b@example.test>', b'DATA'],
               b'354')
mt.check(b'354' in got, 'DATA: 354 (%r)' % got[-80:])
closed, took, got = mt.trickle(s, itertools.chain([b'Subject: slow\r\n\r\n'], itertools.repeat(b'x')), TICK,
                               limit(DATA_DEADLINE))
bounded('data', closed, took, begun, DATA_DEADLINE, got, state='data', limit='data_deadline')
s.close()

# ------------------------------------------------------------------- BDAT: one chunk trickled
def bdat_case(name, first, then, state):
    """After MAIL and RCPT: `first`, then `then` again and again, one every TICK."""
    s = raw(PLAIN)
    begun = begin()
    dialogue(s, [b'EHLO trickle.test', b'MAIL FROM:<a@example.org>', b'RCPT TO:<b@example.test>'], b'250 ')
    closed, took, got = mt.trickle(s, itertools.chain([first], itertools.repeat(then)), TICK, limit(DATA_DEADLINE))
    bounded(name, closed, took, begun, DATA_DEADLINE, got, state=state, limit='data_deadline')
    s.close()


bdat_case('bdat_chunk', b'BDAT 100000 LAST\r\nSubject: slow\r\n\r\n', b'x', 'data')

# ------------------------------------------------------------------- BDAT: chunks of one octet
# Each chunk comes whole (command and octet in one segment) and is answered 250 at once: the
# session is between chunks, reading commands, nearly all the time. The message's deadline
# runs from its first chunk to the LAST one, whatever the client does between them.
bdat_case('bdat_chunks', b'BDAT 16\r\nSubject: slow\r\n\r\n', b'BDAT 1\r\nx', '(command|data)')
# smtp-sink makes its dump file at MAIL and removes an aborted one: wait for the relay's close
mt.check(mt.wait_for(lambda: sink.count() == n0, 5), 'no trickled message was relayed (%d at the sink)' % (sink.count() - n0))

# ------------------------------------------------------------------- TLS handshakes
hello = mt.tls_client_hello()
begun = begin()
s = raw(IMPLICIT)
closed, took, got = mt.trickle(s, (hello[i:i + 1] for i in range(len(hello))), TICK, limit(CMD_TIMEOUT))
bounded('tls_implicit', closed, took, begun, CMD_TIMEOUT, got, reply=None, state='tls')
s.close()

s = raw(PLAIN)
begun = begin()
got = dialogue(s, [b'EHLO trickle.test', b'STARTTLS'], b'220 2.0.0')
closed, took, got = mt.trickle(s, (hello[i:i + 1] for i in range(len(hello))), TICK, limit(CMD_TIMEOUT))
bounded('starttls', closed, took, begun, CMD_TIMEOUT, got, reply=None, state='starttls')
s.close()

# ------------------------------------------------------------------- the PROXY header
begun = begin()
s = raw(PROXIED)
header = b'PROXY TCP4 198.18.0.9 127.0.0.1 40000 25\r\n'
closed, took, got = mt.trickle(s, (header[i:i + 1] for i in range(len(header))), TICK / 2,
                               limit(PROXY_TIMEOUT))
bounded('proxy_header', closed, took, begun, PROXY_TIMEOUT, got, reply=None, state='proxy', limit='proxy_timeout')
s.close()

# ------------------------------------------------------------------- a session of whole commands
begun = begin()
s = raw(PLAIN)
dialogue(s, [], b'220 ')
closed, took, got = mt.trickle(s, itertools.repeat(b'EHLO trickle.test\r\n'), TICK, limit(SESSION_DEADLINE))
bounded('session', closed, took, begun, SESSION_DEADLINE, got, limit='session_deadline')
s.close()

# ... and a message under way when the deadline passes is finished first: its 250, then 421
n0 = sink.count()
s = raw(PLAIN)
dialogue(s, [b'EHLO trickle.test'], b'250 ')
time.sleep(1.2)         # each pause inside command_timeout
dialogue(s, [b'NOOP'], b'250 ')
time.sleep(1.2)
got = dialogue(s, [b'MAIL FROM:<a@example.org>', b'RCPT TO:<b@example.test>', b'DATA'], b'354')
time.sleep(1.0)
s.sendall(b'Subject: across the deadline\r\n')
time.sleep(1.0)         # the deadline passes inside DATA
s.sendall(b'\r\nbody\r\n.\r\n')
closed, took, got = mt.trickle(s, itertools.repeat(b'NOOP\r\n'), TICK, limit(CMD_TIMEOUT))
mt.check(re.search(rb'^250 2\.0\.0 ', got, re.M) is not None and b'421 4.4.2' in got and closed,
         'session_deadline inside a message: its 250 first, then 421 4.4.2 (%r)' % got[-200:])
mt.check(mt.wait_for(lambda: sink.count() == n0 + 1, 5), 'the message across the deadline was relayed')
s.close()

# ------------------------------------------------------------------- replies read at a trickle
n0 = mx.log_size()
s = raw(PLAIN)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
dialogue(s, [], b'220 ')
s.sendall(b'EHLO trickle.test\r\n' * 2000)
port = s.getsockname()[1]
t0 = time.time()
m = None
while m is None and time.time() - t0 < limit(CMD_TIMEOUT):
    try:
        s.settimeout(TICK)
        s.recv(64)
    except OSError:
        pass
    time.sleep(TICK)
    m = re.search(r'event=disconnect client=127\.0\.0\.1 .*ms=(\d+).*', mx.log()[n0:])
s.close()
took = int(m.group(1)) / 1000.0 if m else time.time() - t0
figures['slow_reader'] = took
mt.say('slow_reader: session ended after %.2fs (%s)' % (took, m.group(0) if m else None))
# The daemon's own figures: its timeout in the session (no other end, e.g. too_many_errors),
# and ms since the connect, a timer armed after it, so never below the bound.
tm = re.search(r'(?m)event=timeout state=(\w+) client=127\.0\.0\.1 limit=(command_timeout|session_deadline)$',
               mx.log()[n0:])
mt.check(m is not None and tm is not None and 'reason=' not in m.group(0).replace('reason=timeout', '') and
         took >= CMD_TIMEOUT,
         'a client reading its replies at a trickle: the session ends by command_timeout, not before (%.2fs, %s; %s)'
         % (took, m.group(0) if m else None, tm.group(0) if tm else 'no event=timeout'))

mt.check(mx.alive(), 'mxgate is alive after every trickle')
mt.say('figures: ' + ' '.join('%s=%.2fs' % kv for kv in figures.items()))
mt.finish()
