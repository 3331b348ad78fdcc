#!/usr/bin/env python3
"""A client session keeps its backend connection between its messages (issue 10 §5).

More lock-step clients on one worker than `backends.pool_size` holds, each sending several
messages on its one connection: each client's messages go over one backend connection
(one connect, one XCLIENT naming that client), not a new connection every few messages
because the pool was full when the session gave its connection back. The bound holds: while
the clients are connected the backend sees one connection per client, no more; once they
leave, the idle connections come back to pool_size (the rest are sent QUIT); pool_size 0
keeps none. A transaction the client abandons (RSET) keeps it too. A backend that closes the
kept connections loses no message.
MX_POOL_ONLY=name,name runs only those cases (affine, rset, zero, cut).
"""
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted

mt.need()

CLIENTS, ROUNDS, POOL = 5, 3, 2


def opened(c):
    """MAIL and RCPT on client c (its transaction holds a backend connection): the codes."""
    return c.cmd('MAIL FROM:<s@example.org>')[0], c.cmd('RCPT TO:<r@example.test>')[0]


def finish(c, tag):
    """DATA and the message: the final reply's code."""
    code, _ = c.cmd('DATA')
    if code != 354:
        return code
    c.send(mt.stuff(mt.message(tag)))
    return c.reply()[0]


def mail_conns(b):
    """The backend's connections that carried mail (not the health probe's): number -> commands."""
    with b.lock:
        return {n: list(v) for n, v in b.conn_commands.items() if any(x.upper().startswith('MAIL') for x in v)}


def count(b, verb):
    return sum(1 for v in mail_conns(b).values() for x in v if x.upper().split(' ')[0] == verb)


def start(b, pool, name):
    """mxgate on one worker (the clients' sessions share its pool) with the given pool_size,
    once the start's health probe has come and gone (no other comes: interval 1h)."""
    mx = mt.Mxgate(mt.config([b.url], workers=1, backends={
        'pool_size': pool, 'health_check': {'interval': '1h', 'timeout': '10s', 'fall': 2, 'rise': 1}}), name=name)
    mt.check(mt.wait_for(lambda: b.connections >= 1 and b.open_connections() == 0, 10),
             '%s: the start\'s health probe done' % name)
    return mx


def connect(mx, n, names=None):
    """n clients of mx, each after its EHLO (names: their EHLO names)."""
    clients = [mt.Client(mx.port) for _ in range(n)]
    for i, c in enumerate(clients):
        code = c.ehlo(names[i] if names else 'client.test')[0]
        mt.check(code == 250, '%s: client %d EHLO (%s)' % (mx.name, i, code))
    return clients


def leave(clients):
    for c in clients:
        c.cmd('QUIT')
        c.close()


def rounds(b, tag, clients, n):
    """n rounds; in each every client opens a transaction (all of them hold a backend
    connection at once, as lock-step clients running side by side do), then each sends its
    message. The codes, and the most backend connections open at any step."""
    codes, most = [], 0
    for r in range(n):
        for c in clients:
            codes.extend(opened(c))
            most = max(most, b.open_connections())
        for i, c in enumerate(clients):
            codes.append(finish(c, '%s-%d-%d' % (tag, i, r)))
            most = max(most, b.open_connections())
    return codes, most


if want('affine'):
    b = mt.Backend(name='A')
    mx = start(b, POOL, 'mx-affine')
    clients = connect(mx, CLIENTS, ['c%d.client.test' % i for i in range(CLIENTS)])
    codes, most = rounds(b, 'af', clients, ROUNDS)
    mt.check(codes == [250] * (3 * CLIENTS * ROUNDS), 'affine: every command and message 250 (%s)' % codes)
    with b.lock:
        msgs = list(b.messages)
    mt.check(len(msgs) == CLIENTS * ROUNDS, 'affine: the backend has every message (%d)' % len(msgs))
    by_client = {}
    wrong = []
    for m in msgs:
        tag = next((t for t in mt.message_ids([m['data']]) if t.startswith('af-')), '')
        i = int(tag.split('-')[1]) if tag else -1
        by_client.setdefault(i, set()).add(m['conn'])
        if m['xclient'].get('HELO') != 'c%d.client.test' % i:
            wrong.append((tag, m['xclient'].get('HELO')))
    mt.check(not wrong, 'affine: every message went under its own client\'s name (%s)' % wrong)
    mt.check(len(mail_conns(b)) == CLIENTS,
             'affine: one backend connection per client, %d clients > pool_size %d (%d connections)'
             % (CLIENTS, POOL, len(mail_conns(b))))
    mt.check(all(len(v) == 1 for v in by_client.values()) and len(by_client) == CLIENTS,
             'affine: each client\'s messages on one backend connection (%s)' % by_client)
    mt.check(count(b, 'XCLIENT') == CLIENTS, 'affine: one XCLIENT per client (%d)' % count(b, 'XCLIENT'))
    mt.check(count(b, 'QUIT') == 0 and most <= CLIENTS,
             'affine: no QUIT while the clients stay, never more open than clients (%d QUIT, %d open)'
             % (count(b, 'QUIT'), most))
    mt.check(b.open_connections() == CLIENTS, 'affine: the connections wait for their clients (%d open)'
             % b.open_connections())
    # The bound: the clients go, the idle connections come back to pool_size.
    q0, open0, conns0 = count(b, 'QUIT'), b.open_connections(), len(mail_conns(b))
    leave(clients)
    mt.check(mt.wait_for(lambda: b.open_connections() == POOL and count(b, 'QUIT') - q0 == open0 - POOL, 10),
             'affine: the clients gone, pool_size %d idle connections kept, the other %d sent QUIT (%d open, %d QUIT)'
             % (POOL, open0 - POOL, b.open_connections(), count(b, 'QUIT') - q0))
    # A new client reuses a pooled connection (announced as itself).
    c, = connect(mx, 1, ['late.client.test'])
    code = opened(c) + (finish(c, 'af-late'),)
    late = b.by_tag('af-late')
    mt.check(code == (250,) * 3 and len(late) == 1 and late[0]['xclient'].get('HELO') == 'late.client.test' and
             len(mail_conns(b)) == conns0,
             'affine: a later client takes a pooled connection under its own name (%s, %d new connections)'
             % (code, len(mail_conns(b)) - conns0))
    leave([c])
    mx.stop()
    b.stop()

if want('rset'):
    # Transactions the clients abandon (RSET after RCPT: mxgate sends RSET to the backend,
    # the connection is kept once its reply is in) keep their connections too.
    b = mt.Backend(name='R')
    mx = start(b, 1, 'mx-affine-rset')
    clients = connect(mx, 4, ['r%d.client.test' % i for i in range(4)])
    codes = []
    for r in range(3):
        for c in clients:
            codes.extend(opened(c))
        for c in clients:
            codes.append(c.cmd('RSET')[0])
    more, _ = rounds(b, 'rset', clients, 1)
    mt.check(codes + more == [250] * (36 + 12), 'rset: every command and message 250 (%s)' % (codes + more))
    # No QUIT while the clients stay: each abandoned transaction's connection is kept (main's
    # pool of 1 QUIT the others at every round), one per client: a client whose next MAIL
    # arrives before its own connection's RSET is answered waits for that reply
    # (test_pool_rset_wait), it neither takes another client's nor opens one.
    with b.lock:
        msgs = list(b.messages)
    wrong = [(m['xclient'].get('HELO'), t) for m in msgs
             for t in mt.message_ids([m['data']]) if t.startswith('rset-')
             and m['xclient'].get('HELO') != 'r%s.client.test' % t.split('-')[1]]
    mt.check(count(b, 'QUIT') == 0 and not wrong and len(mail_conns(b)) == 4 and count(b, 'XCLIENT') == 4,
             'rset: abandoned transactions\' connections kept, one per client, no QUIT, every message under '
             'its own client\'s name (%d QUIT, %s; %d connections, %d XCLIENT)'
             % (count(b, 'QUIT'), wrong, len(mail_conns(b)), count(b, 'XCLIENT')))
    q0, open0 = count(b, 'QUIT'), b.open_connections()
    leave(clients)
    mt.check(mt.wait_for(lambda: b.open_connections() == 1 and count(b, 'QUIT') - q0 == open0 - 1, 10),
             'rset: the clients gone, pool_size 1 kept, the other %d QUIT (%d open, %d QUIT)'
             % (open0 - 1, b.open_connections(), count(b, 'QUIT') - q0))
    mx.stop()
    b.stop()

if want('zero'):
    # pool_size 0: no connection is kept, not even for a client that stays.
    b = mt.Backend(name='Z')
    mx = start(b, 0, 'mx-affine-zero')
    clients = connect(mx, 2)
    codes, _ = rounds(b, 'zero', clients, 2)
    mt.check(codes == [250] * 12, 'zero: every command and message 250 (%s)' % codes)
    gone = mt.wait_for(lambda: b.open_connections() == 0, 10)
    mt.check(len(mail_conns(b)) == 4 and gone,
             'zero: pool_size 0 keeps nothing, a connection a message (%d connections, %d open)'
             % (len(mail_conns(b)), b.open_connections()))
    leave(clients)
    mx.stop()
    b.stop()

if want('cut'):
    # The backend closes the connections kept for the clients (its idle timeout): the
    # clients' next messages go through on new ones, nothing lost.
    b = mt.Backend(name='C')
    mx = start(b, 1, 'mx-affine-cut')
    clients = connect(mx, 3)
    codes, _ = rounds(b, 'cut1', clients, 1)
    mt.check(codes == [250] * 9 and b.open_connections() == 3, 'cut: three messages, three connections kept (%s, %d)'
             % (codes, b.open_connections()))
    with b.lock:
        conns = list(b.conns)
    for s in conns:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    mt.check(mt.wait_for(lambda: b.open_connections() == 0, 10), 'cut: the backend closed them')
    codes, _ = rounds(b, 'cut2', clients, 2)
    mt.check(codes == [250] * 18, 'cut: every later message 250 (%s)' % codes)
    mt.check(len(b.messages) == 9, 'cut: the backend has all nine (%d)' % len(b.messages))
    leave(clients)
    mx.stop()
    b.stop()

mt.finish()
