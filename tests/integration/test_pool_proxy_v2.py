#!/usr/bin/env python3
"""Behind `client_identity: proxy_v2` a session reuses its own backend connection (issue 10 §5).

The PROXY v2 header that opens a backend connection names one client connection for the
backend connection's life, so no other session may ever take it; the session whose client it
names may, for each of its messages, as long as its client stays (one header, as HAProxy's
`send-proxy-v2` server connection is private to its client connection). The backend (a
scripted server that parses the header) counts connections and records each message's header.
- three messages on one client connection: one backend connection (main: one a message);
  a transaction the client abandons (RSET) keeps its connection: the RSET goes when the
  session's next transaction comes, on it (main: QUIT, a new connection); a callout's MAIL,
  RCPT, QUIT ends with QUIT, no RSET (the session's end decides: relay_session_end);
- a second client meanwhile: its own connection, its own header, never the first's;
- a client that leaves: its connection is sent QUIT, not pooled; a later client (whose session
  may reuse the ended one's memory) gets a new connection naming it;
- all clients gone: no connection left open.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()


def mail_conns(b):
    """The backend's connections that carried mail (not the health probe's): number -> commands."""
    with b.lock:
        return {n: list(v) for n, v in b.conn_commands.items() if any(x.upper().startswith('MAIL') for x in v)}


def client(mx, src):
    c = mt.Client(mx.port, source=src)
    mt.check(c.ehlo('%s.client.test' % src.replace('.', '-'))[0] == 250, 'EHLO from %s' % src)
    return c, c.sock.getsockname()[1]


def sent(b, tag):
    """(connection number, PROXY source address, source port) of the message tagged tag."""
    m = b.by_tag(tag)
    if len(m) != 1:
        return None
    p = m[0]['proxy'] or {}
    return m[0]['conn'], p.get('src'), p.get('sport')


b = mt.Backend(name='pv2', expect_proxy=True, xclient=False)
mx = mt.Mxgate(mt.config([b.url], workers=1, backends={
    'client_identity': 'proxy_v2', 'pool_size': 2,
    'health_check': {'interval': '1h', 'timeout': '10s', 'fall': 2, 'rise': 1}}), name='mx-pool-pv2')
mt.check(mt.wait_for(lambda: b.connections >= 1 and b.open_connections() == 0, 10), 'the start\'s health probe done')

a, a_port = client(mx, '127.0.0.3')
o, o_port = client(mx, '127.0.0.4')
codes = a.transaction('pv-a-0')
codes += o.transaction('pv-o-0')
codes += a.transaction('pv-a-1')
codes += o.transaction('pv-o-1')
codes += a.transaction('pv-a-2')
mt.check(codes == [250, 250, 354, 250] * 5,
         'every command and message 250 (%s)' % codes)
ga = [sent(b, 'pv-a-%d' % i) for i in range(3)]
go = [sent(b, 'pv-o-%d' % i) for i in range(2)]
mt.check(all(ga) and all(go), 'the backend has every message (%s %s)' % (ga, go))
if all(ga) and all(go):
    mt.check(all(x[1:] == ('127.0.0.3', a_port) for x in ga) and all(x[1:] == ('127.0.0.4', o_port) for x in go),
             'each message under its own client\'s PROXY header (%s %s)' % (ga, go))
    mt.check(len({x[0] for x in ga}) == 1, 'one backend connection for the three messages of one client '
             'connection (connections %s)' % [x[0] for x in ga])
    mt.check(len({x[0] for x in go}) == 1 and go[0][0] != ga[0][0],
             'the second client has its own connection, never the first\'s (%s, %s)' % ([x[0] for x in go], ga[0][0]))
mt.check(len(mail_conns(b)) == 2, 'two connections for two clients (%d)' % len(mail_conns(b)))
with b.lock:
    headers = [h for h in b.proxy_headers if h and h.get('command') == 1]
mt.check(len(headers) == 2, 'two PROXY headers naming clients sent (%d)' % len(headers))

# The first client leaves: its connection is ended (QUIT), not pooled for anyone.
a.cmd('QUIT')
a.close()
a_conn = ga[0][0] if ga[0] else None
mt.check(mt.wait_for(lambda: 'QUIT' in mail_conns(b).get(a_conn, []) and b.open_connections() == 1, 10),
         'the first client gone, its backend connection got QUIT (%d open)' % b.open_connections())
n, n_port = client(mx, '127.0.0.5')
codes = n.transaction('pv-n-0') + o.transaction('pv-o-2')
gn, go2 = sent(b, 'pv-n-0'), sent(b, 'pv-o-2')
mt.check(codes == [250, 250, 354, 250] * 2 and gn and go2, 'a later client\'s message and the second\'s (%s)' % codes)
if gn and go2 and go[0]:
    mt.check(gn[1:] == ('127.0.0.5', n_port) and gn[0] not in (a_conn, go[0][0]),
             'a later client gets a new connection naming it (%s)' % (gn,))
    mt.check(go2[0] == go[0][0], 'the second client still on its own (%s, %s)' % (go2[0], go[0][0]))
for c in (n, o):
    c.cmd('QUIT')
    c.close()
mt.check(mt.wait_for(lambda: b.open_connections() == 0, 10),
         'every client gone: no connection kept (%d open, pool_size 2)' % b.open_connections())

# A transaction the client abandons (RSET): its connection is kept for the session, the RSET
# sent when the next transaction comes, which it carries (main: QUIT, a new connection).
r, r_port = client(mx, '127.0.0.6')
old = set(mail_conns(b))
codes = [r.cmd('MAIL FROM:<s@example.org>')[0], r.cmd('RCPT TO:<r@example.test>')[0], r.cmd('RSET')[0]]
codes += r.transaction('pv-r-1')
gr = sent(b, 'pv-r-1')
mt.check(codes == [250] * 3 + [250, 250, 354, 250] and gr and gr[1:] == ('127.0.0.6', r_port),
         'abandoned, then a message delivered under its client\'s header (%s, %s)' % (codes, gr))
new = {n: v for n, v in mail_conns(b).items() if n not in old}
cmds = [x.split()[0].upper() for x in new.get(gr[0] if gr else None, []) if not x.upper().startswith('EHLO')]
mt.check(len(new) == 1 and cmds[:4] == ['MAIL', 'RCPT', 'RSET', 'MAIL'],
         'the abandoned transaction\'s connection got RSET and carries the next message (%s)' % new)
r.cmd('QUIT')
r.close()
mt.check(mt.wait_for(lambda: gr and 'QUIT' in mail_conns(b)[gr[0]], 10), 'the client gone: QUIT')

# A callout (MAIL, RCPT, QUIT): the backend hears QUIT with the transaction open, no RSET (Exim
# logs "incomplete transaction (QUIT)"; test_exim).
q, q_port = client(mx, '127.0.0.7')
old = set(mail_conns(b))
codes = [q.cmd('MAIL FROM:<s@example.org>')[0], q.cmd('RCPT TO:<r@example.test>')[0], q.cmd('QUIT')[0]]
q.close()
new = lambda: {n: v for n, v in mail_conns(b).items() if n not in old}  # noqa: E731
mt.check(codes == [250, 250, 221] and mt.wait_for(lambda: len(new()) == 1 and 'QUIT' in list(new().values())[0], 10),
         'a callout\'s connection got QUIT (%s %s)' % (codes, new()))
mt.check(all('RSET' not in v for v in new().values()), 'and no RSET before it (%s)' % new())
mx.stop()
b.stop()

mt.finish()
