#!/usr/bin/env python3
"""Proxy core, relaying: real clients (swaks, smtp-source, raw) through mxgate to real
backends (smtp-sink, a scripted SMTP/LMTP server, maildir).

- swaks and smtp-source deliver; every message lands at a backend, with our Received:
  header on top (queue id = the id in the 250 reply = queue_id in the log line).
- round_robin splits between two smtp-sinks, weights are honoured, least_conn avoids a busy
  server, source_hash keeps a client IP on one server; routes send a domain to its servers.
- dot-stuffing both ways: lines starting with '.' arrive intact (backend unstuffs).
- XCLIENT: NAME ADDR PORT PROTO HELO at a backend that announces them; only the announced
  ones at smtp-sink; none with client_identity: none.
- the backend's per-recipient RCPT verdict reaches the client (live relay).
- LMTP (smtp-sink -L and a scripted one): per-recipient final replies.
- maildir: a file in new/, nothing left in tmp/, content = Received + the message.
- a message past memory_threshold is spooled to a file and delivered byte-exact; backend
  connections are reused (RSET) across sessions; STARTTLS is used when a backend offers it.
- one key=value log line per delivered message names the backend and its queue id."""
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'smtp-source', 'swaks')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'


def received_ok(data, rcpt=None):
    """data starts with our Received: header; returns its id or None."""
    m = re.match(rb'Received: from (\S+) \(([^)]*)\)\r?\n\tby mx\.test \(mxgate\) with E?SMTPS?A? id (\w+)', data)
    if not m:
        return None
    if rcpt and (b'for <%s>' % rcpt.encode()) not in data.split(b'\n\r\n')[0].split(b'\n\n')[0]:
        return None
    return m.group(3).decode()


def queued_id(text):
    m = re.search(r'queued as (\w+)', text)
    return m.group(1) if m else None


# ---------------------------------------------------------------- swaks + smtp-source, round robin
s1, s2 = mt.Sink(name='rr1'), mt.Sink(name='rr2')
mx = mt.Mxgate(mt.config([s1.url, s2.url], workers=1), name='mx-rr')
r = mt.swaks(mx.port, '--from', FROM, '--to', 'rcpt@example.test', '--header', 'Subject: via swaks')
mt.check(r.returncode == 0 and '250 2.0.0' in r.stdout, 'swaks delivers through mxgate (rc=%d)' % r.returncode)
msgs = s1.messages() + s2.messages()
sw = [m for m in msgs if b'Subject: via swaks' in m['data']]
mt.check(len(sw) == 1, 'the swaks message is at exactly one sink (%d)' % len(sw))
if sw:
    mt.check(received_ok(sw[0]['data'], 'rcpt@example.test') is not None,
             'a Received: header by mx.test (mxgate) tops the relayed message')
    mt.check(sw[0]['attrs'].get('X-Mail-Args') == '<%s>' % FROM, 'MAIL FROM relayed as given')
    mt.check(sw[0]['rcpts'] == ['<rcpt@example.test>'], 'RCPT TO relayed as given')

base1, base2 = s1.count(), s2.count()
N = 200
r = mt.smtp_source(mx.port, '-s', '10', '-m', str(N), '-l', '2048', '-f', FROM, '-t', 'rcpt@example.test')
mt.check(r.returncode == 0, 'smtp-source -s 10 -m %d finishes without error (rc=%d %s)' % (N, r.returncode, r.stderr[-200:]))
mt.wait_for(lambda: s1.count() + s2.count() >= base1 + base2 + N, 10)
n1, n2 = s1.count() - base1, s2.count() - base2
mt.check(n1 + n2 == N, 'all %d smtp-source messages at the sinks, none twice (%d + %d)' % (N, n1, n2))
mt.check(min(n1, n2) >= N * 0.35, 'round_robin splits them between both sinks (%d / %d)' % (n1, n2))
base1, base2 = s1.count(), s2.count()
r = mt.smtp_source(mx.port, '-d', '-s', '5', '-m', '100', '-l', '1024', '-f', FROM, '-t', 'rcpt@example.test')
mt.wait_for(lambda: s1.count() + s2.count() >= base1 + base2 + 100, 10)
mt.check(r.returncode == 0 and s1.count() + s2.count() - base1 - base2 == 100,
         'smtp-source -d (several messages per connection): 100 delivered (%d)' % (s1.count() + s2.count() - base1 - base2))
mx.stop()

# ---------------------------------------------------------------- weights
w1, w2 = mt.Sink(name='w1'), mt.Sink(name='w2')
mx = mt.Mxgate(mt.config([{'address': w1.url, 'weight': 3}, {'address': w2.url, 'weight': 1}], workers=1),
               name='mx-weight')
codes = [mt.send_mail(mx.port, FROM, ['rcpt@example.test'], mt.message('w%d' % i))[0] for i in range(40)]
mt.check(codes.count(250) == 40, 'weighted pool: 40 of 40 delivered')
mt.check(26 <= w1.count() <= 34 and w1.count() + w2.count() == 40,
         'weight 3:1 gives about 30:10 (%d:%d)' % (w1.count(), w2.count()))
mx.stop()

# ---------------------------------------------------------------- least_conn
la, lb = mt.Backend(name='lcA'), mt.Backend(name='lcB')
mx = mt.Mxgate(mt.config([la.url, lb.url], workers=1, backends={'balance': 'least_conn'}), name='mx-lc')
hold = mt.Client(mx.port)
hold.ehlo()
mt.check(hold.cmd('MAIL FROM:<%s>' % FROM)[0] == 250 and hold.cmd('RCPT TO:<hold@example.test>')[0] == 250,
         'least_conn: a held-open transaction has MAIL and RCPT accepted')
for i in range(6):
    mt.send_mail(mx.port, FROM, ['rcpt@example.test'], mt.message('lc%d' % i))
hold.cmd('DATA')
hold.send(mt.stuff(mt.message('lchold')))
code, _ = hold.reply()
hold.close()
mt.check(code == 250, 'least_conn: the held transaction completes')
busy = la if 'lchold' in mt.message_ids(m['data'] for m in la.messages) else lb
idle = lb if busy is la else la
got_idle = mt.message_ids(m['data'] for m in idle.messages)
mt.check(all('lc%d' % i in got_idle for i in range(6)),
         'least_conn: the 6 messages sent meanwhile all went to the other server (%d there)' % len(got_idle))
mx.stop()

# ---------------------------------------------------------------- source_hash
sh = [mt.Sink(name='sh%d' % i) for i in range(2)]
mx = mt.Mxgate(mt.config([b.url for b in sh], backends={'balance': 'source_hash'}), name='mx-sh')
sources = ['127.0.0.%d' % i for i in range(1, 9)]
for rnd in range(3):
    for src in sources:
        mt.send_mail(mx.port, FROM, [RCPT], mt.message('sh-%s-%d' % (src, rnd)), source=src)
where = {}
for i, b in enumerate(sh):
    for tag in mt.message_ids(m['data'] for m in b.messages()):
        where.setdefault(tag.split('-')[1], set()).add(i)
mt.check(sorted(where) == sorted(sources), 'source_hash: every source delivered (%s)' % sorted(where))
mt.check(all(len(v) == 1 for v in where.values()),
         'source_hash: each client IP always lands on the same smtp-sink (%s)' % where)
mt.check(len({min(v) for v in where.values()}) == 2, 'source_hash: 8 client IPs use both sinks')
mx.stop()

# ---------------------------------------------------------------- routes, XCLIENT, live RCPT, stuffing
dflt = mt.Backend(name='default', reject_rcpt={'nobody@example.test'})
routed = mt.Backend(name='routed')
sink = mt.Sink(name='xcl')
mx = mt.Mxgate(mt.config([dflt.url], backends={'routes': [{'domains': ['example.net'], 'servers': [routed.url]}]}),
               name='mx-route')
code, text = mt.send_mail(mx.port, FROM, ['user@example.net'], mt.message('route1'))
mt.check(code == 250, 'routes: mail for example.net accepted (%s)' % text)
mt.check('route1' in mt.message_ids(m['data'] for m in routed.messages)
         and 'route1' not in mt.message_ids(m['data'] for m in dflt.messages),
         'routes: example.net went to its own server only')
code, text = mt.send_mail(mx.port, FROM, ['user@example.test'], mt.message('route2'))
mt.check(code == 250 and 'route2' in mt.message_ids(m['data'] for m in dflt.messages),
         'routes: other domains use the default servers')

c = mt.Client(mx.port)
c.ehlo('helo.client.test')
c.cmd('MAIL FROM:<%s>' % FROM)
r1 = c.cmd('RCPT TO:<nobody@example.test>')
r2 = c.cmd('RCPT TO:<someone@example.test>')
mt.check(r1[0] == 550 and '5.1.1' in r1[1], "live RCPT: the backend's 550 5.1.1 reaches the client (%s)" % (r1,))
mt.check(r2[0] == 250, 'live RCPT: the next recipient is still accepted')
body = ('first line\r\n.leading dot\r\n..two dots\r\n.\r\n...\r\n. space\r\nlast .\r\n')
data = mt.message('stuff', body=body)
c.cmd('DATA')
c.send(mt.stuff(data))
code, text = c.reply()
mt.check(code == 250, 'dot-stuffed message accepted (%s)' % text)
qid = queued_id(text)
got = [m for m in dflt.messages if b'Message-ID: <stuff@' in m['data']]
mt.check(len(got) == 1, 'dot-stuffed message at the backend once')
if got:
    m = got[0]
    mt.check(m['data'].endswith(data), 'body with leading dots arrives byte-exact after unstuffing at the backend')
    rid = received_ok(m['data'], 'someone@example.test')
    mt.check(rid is not None, 'Received: header added (from helo.client.test, by mx.test (mxgate))')
    mt.check(rid == qid, 'Received id (%s) = queue id in the 250 reply (%s)' % (rid, qid))
    mt.check(m['data'][:m['data'].find(data)].count(b'Received:') == 1, 'exactly one header added before the message')
    mt.check(m['accepted_rcpts'] == ['someone@example.test'], 'only the accepted recipient was given to the backend')
    x = m['xclient']
    mt.check(x.get('ADDR') == '127.0.0.1' and x.get('PROTO') in ('ESMTP', 'SMTP') and x.get('HELO') == 'helo.client.test'
             and x.get('PORT', '').isdigit() and 'NAME' in x,
             'XCLIENT NAME ADDR PORT PROTO HELO at the backend (%s)' % x)
    line = mx.wait_log(r'event=delivered queue_id=%s [^\n]*' % qid, 5)
    mt.check(line is not None and ('backend=%s' % dflt.url) in line.group(0) and
             ('backend_queue_id=%s' % m['qid']) in line.group(0),
             'one delivered log line with backend=%s and backend_queue_id=%s (%s)' % (
                 dflt.url, m['qid'], line.group(0) if line else mx.tail(5)))
    if line:
        mt.check(mx.count_log('event=delivered queue_id=%s ' % qid) == 1, 'exactly one delivered line for it')
        full = re.search(r'^.*event=delivered queue_id=%s .*$' % qid, mx.log(), re.M).group(0)
        mt.check(re.match(r'^\S+ \w+ \S+ event=delivered( [a-z_]+=("[^"]*"|\S*))+$', full) is not None,
                 'the delivered line is key=value throughout: ' + full)
c.cmd('QUIT')
c.close()

# A HELO name of 255 octets: XCLIENT carries it whole, or not at all. Postfix refuses an
# attribute value longer than 255 octets as sent (xtext-encoded: each '+' is "+2B") with 501, so
# one that encodes longer goes as [UNAVAILABLE]; it was once cut to about 300 characters, and a
# LOGIN cut so would name another user.
plain_helo = '.'.join(['a' * 63] * 4)
for tag, helo, want in (('longhelo', plain_helo, plain_helo), ('plushelo', '+' * 255, '[UNAVAILABLE]')):
    code, _ = mt.send_mail(mx.port, FROM, ['someone@example.test'], mt.message(tag), ehlo=helo)
    got = [m for m in dflt.messages if b'Message-ID: <%s@' % tag.encode() in m['data']]
    seen = got[0]['xclient'].get('HELO', '') if got else ''
    mt.check(code == 250 and len(got) == 1 and seen == want,
             'a %d-octet HELO (%s) reaches the backend in XCLIENT as %d characters, never cut (%d seen)' % (
                 len(helo), tag, len(want), len(seen)))
mx.stop()

# XCLIENT to smtp-sink (announces only NAME HELO) and client_identity: none
mx = mt.Mxgate(mt.config([sink.url]), name='mx-xsink')
code, _ = mt.send_mail(mx.port, FROM, ['rcpt@example.test'], mt.message('xs'), ehlo='xs.client.test')
mt.check(code == 250, 'delivered to smtp-sink, which announces only XCLIENT NAME HELO')
got = [m for m in sink.messages() if b'Message-ID: <xs@' in m['data']]
mt.check(len(got) == 1 and got[0]['attrs'].get('X-Helo-Args') == 'xs.client.test',
         'smtp-sink -d shows the client HELO (%s)' % (got[0]['attrs'] if got else None))
mx.stop()
plain = mt.Backend(name='noident')
mx = mt.Mxgate(mt.config([plain.url], backends={'client_identity': 'none'}), name='mx-noid')
code, _ = mt.send_mail(mx.port, FROM, ['rcpt@example.test'], mt.message('noid'))
mt.check(code == 250 and plain.messages and plain.messages[0]['xclient'] == {},
         'client_identity none: no XCLIENT sent (%s)' % (plain.messages[0]['xclient'] if plain.messages else None))
mx.stop()

# ---------------------------------------------------------------- LMTP
lsink = mt.Sink(lmtp=True, name='lmtpsink')
mx = mt.Mxgate(mt.config([lsink.url]), name='mx-lsink')
code, text = mt.send_mail(mx.port, FROM, ['a@example.test', 'b@example.test'], mt.message('lmtp1'))
mt.check(code == 250, 'smtp-sink -L (LMTP) backend: 2-recipient message accepted (%s)' % text)
mt.check(mt.wait_for(lambda: lsink.count() == 1, 5), 'smtp-sink -L got it once (%d)' % lsink.count())
mx.stop()

lm = mt.Backend(lmtp=True, name='lmtp', lmtp_codes={'full@example.test': 552, 'later@example.test': 451})
spare = mt.Backend(name='spare')
mx = mt.Mxgate(mt.config([lm.url]), name='mx-lmtp')
code, text = mt.send_mail(mx.port, FROM, ['a@example.test', 'b@example.test', 'c@example.test'], mt.message('l3'))
mt.check(code == 250 and len(lm.messages) == 1 and lm.messages[0]['accepted_rcpts'] == ['a@example.test', 'b@example.test', 'c@example.test'],
         'LMTP: three recipients, three 250s -> 250 to the client')
line = mx.wait_log(r'event=delivered [^\n]*backend=lmtp://[^\n]*', 5)
mt.check(line is not None and 'backend_queue_id=SB' in line.group(0), 'LMTP delivery logged with backend queue id')
code, text = mt.send_mail(mx.port, FROM, ['full@example.test'], mt.message('lfull'))
mt.check(code is not None and 500 <= code < 600, "LMTP: the only recipient's permanent failure reaches the client as 5xx (%s)" % text)
code, text = mt.send_mail(mx.port, FROM, ['a@example.test', 'later@example.test'], mt.message('llater'))
mt.check(code is not None and 400 <= code < 500, 'LMTP: a recipient tempfailed at end of data, no other server -> 4xx (%s)' % text)
mx.stop()
# backends.lmtp_recipient_limit: 1: one recipient per transaction, so that a refusal after the
# dot (a mailbox over quota) reaches the sender for that recipient alone instead of a 250 for
# all; the client gets 452 4.5.3 for the second and sends it in a new transaction (RFC 5321
# 4.5.3.1.10), also when it pipelines the whole group.
mx = mt.Mxgate(mt.config([lm.url], workers=1, backends={'lmtp_recipient_limit': 1}), name='mx-lmtp1')
nbefore = len(lm.messages)
c = mt.Client(mx.port)
c.ehlo()
c.send(b'MAIL FROM:<%s>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<full@example.test>\r\nDATA\r\n' % FROM.encode())
replies = [c.reply() for _ in range(4)]
mt.check([r[0] for r in replies] == [250, 250, 452, 354] and '4.5.3' in replies[2][1],
         'lmtp_recipient_limit 1: a pipelined second RCPT gets 452 4.5.3, DATA 354 (%s)' % replies)
c.send(mt.message('lone') + b'.\r\n')
code, text = c.reply()
mt.check(code == 250, 'lmtp_recipient_limit 1: the message to the first recipient is delivered (%s)' % text)
code, text = mt.send_mail(mx.port, FROM, ['full@example.test'], mt.message('lone2'), client=c)
mt.check(code is not None and 500 <= code < 600,
         'lmtp_recipient_limit 1: the over-quota recipient sent alone gets its own 5xx (%s)' % text)
c.close()
got = lm.messages[nbefore:]
mt.check(len(got) == 1 and got[0]['accepted_rcpts'] == ['a@example.test'],
         'lmtp_recipient_limit 1: the backend took one message, for one recipient (%s)' % [m['accepted_rcpts'] for m in got])
mx.stop()
mx = mt.Mxgate(mt.config([lm.url, spare.url], workers=1), name='mx-lmtp2')
for i in range(2):   # whichever server round robin starts with
    mt.send_mail(mx.port, FROM, ['a@example.test', 'later@example.test'], mt.message('lre%d' % i))
ids = mt.message_ids(m['data'] for m in spare.messages)
mt.check(ids == {'lre0', 'lre1'}, 'LMTP tempfail for one recipient: the message is replayed on the healthy server (%s)' % ids)
mx.stop()

# ---------------------------------------------------------------- spill to disk, connection reuse, STARTTLS to the backend
tb = mt.Backend(name='tlsbe', starttls=True)
spool = os.path.join(mt.TMP, 'spool')
os.makedirs(spool)
mx = mt.Mxgate(mt.config([tb.url], workers=1, limits={'memory_threshold': '16K', 'spool_dir': spool}), name='mx-spill')
big = mt.message('spill', size=300000)
seen_spool = []
c = mt.Client(mx.port)
c.ehlo()
c.cmd('MAIL FROM:<%s>' % FROM)
c.cmd('RCPT TO:<%s>' % RCPT)
c.cmd('DATA')
payload = mt.stuff(big)
c.send(payload[:200000])


def spool_fds():
    """Files of mxgate's open in spool_dir (msgbuf keeps an unlinked temporary file)."""
    out = []
    fdd = '/proc/%d/fd' % mx.pid
    for fd in os.listdir(fdd):
        try:
            t = os.readlink(os.path.join(fdd, fd))
        except OSError:
            continue
        if t.startswith(spool + '/'):
            out.append(t)
    return out


seen_spool = mt.wait_for(spool_fds, 3)
c.send(payload[200000:])
code, text = c.reply()
c.close()
got = [m for m in tb.messages if b'<spill@' in m['data']]
mt.check(code == 250 and len(got) == 1 and got[0]['data'].endswith(big),
         'a 300K message past memory_threshold 16K is delivered byte-exact (%s)' % text)
mt.check(bool(seen_spool), 'it was held in a file in spool_dir while it arrived (%s)' % seen_spool)
mt.check(mt.wait_for(lambda: not os.listdir(spool) and not spool_fds(), 3),
         'no spool file left or open after delivery (%s %s)' % (os.listdir(spool), spool_fds()))
mt.check(bool(got) and got[0]['tls'] in ('TLSv1.2', 'TLSv1.3'), 'STARTTLS to a backend that offers it (%s)' % (got[0]['tls'] if got else None))
conn0 = tb.connections
for i in range(12):
    mt.send_mail(mx.port, FROM, [RCPT], mt.message('reuse%d' % i))
mt.check(len([m for m in tb.messages if b'<reuse' in m['data']]) == 12, '12 sequential sessions delivered')
mt.check(tb.connections - conn0 <= 4, 'backend connections are reused across sessions (%d new connections for 12 messages)' % (
    tb.connections - conn0))
# RFC 5321 4.1.1.4: the reply to the final dot ends the transaction, so a reused connection
# goes on with the next MAIL directly (RSET only after an aborted transaction).
mt.check(tb.commands.count('RSET') == 0, 'no RSET needed after completed transactions (%d)' % tb.commands.count('RSET'))
mx.stop()

# ---------------------------------------------------------------- maildir
md = os.path.join(mt.TMP, 'Maildir')
mx = mt.Mxgate(mt.config(['maildir:' + md]), name='mx-maildir')
data = mt.message('md1', body='line one\r\n.dot line\r\n\r\nend\r\n')
code, text = mt.send_mail(mx.port, FROM, ['rcpt@example.test'], data)
mt.check(code == 250, 'maildir backend: 250 (%s)' % text)
newd = os.path.join(md, 'new')
files = os.listdir(newd) if os.path.isdir(newd) else []
mt.check(len(files) == 1, 'maildir: one file in new/ (%s)' % files)
# (a health probe's NAME.probe file lives in tmp/ for the microseconds of its check: not a delivery's)
mt.check(os.path.isdir(os.path.join(md, 'tmp')) and
         not [f for f in os.listdir(os.path.join(md, 'tmp')) if not f.endswith('.probe')], 'maildir: tmp/ empty')
if files:
    content = open(os.path.join(newd, files[0]), 'rb').read()
    lf = content.replace(b'\r\n', b'\n')
    mt.check(lf.endswith(data.replace(b'\r\n', b'\n')), 'maildir: the message content is exact after the header')
    mt.check(b'\r\n' not in content or content.count(b'\n') == content.count(b'\r\n'),
             'maildir: consistent line endings')
    mt.check(received_ok(content.replace(b'\r\n', b'\n'), 'rcpt@example.test') == queued_id(text),
             'maildir: our Received: header on top, id = the queue id')
line = mx.wait_log(r'event=delivered [^\n]*backend=maildir[^\n]*', 5)
bad_lines = mx.malformed_log_lines()
mt.check(not bad_lines, 'every log line is TIME LEVEL SESSION event=... key=value (%s)' % bad_lines[:3])
mt.check(line is not None, 'maildir delivery logged (%s)' % (line.group(0) if line else mx.tail(3)))
mx.stop()

mt.finish()
