#!/usr/bin/env python3
"""What a milter's option negotiation promises, held both ways, against hand-written
wire-protocol filters (tests/peers/neg_milter.py) that log every command they are sent.

- Actions: a filter that asked only for SMFIF_ADDHDRS may add and insert headers; a header
  change, a body, a recipient added (with or without arguments) or deleted, a new sender
  or a quarantine from it is its error (libmilter itself never sends one not negotiated):
  on_error, none of its edits applied, the next message on a fresh connection. mxgate
  applied them all.
- Steps skipped (SMFIP_NO*): neither the command nor its macros are sent.
- Replies not expected (SMFIP_NR_*): mxgate does not wait for them (a wait would run into
  the entry's timeout), and a filter answering every step is waited for at each.
- Older filters: a version 4 filter's SMFIP_NR_HDR (Sendmail 8.13's SMFIP_NOHREPL) is
  honoured (mxgate dropped every bit past version 2's and waited for each header's reply
  until the timeout), and a version 2 filter is not sent DATA, a command it does not know
  (as Postfix leaves out events of a later protocol).
- Macro lists (SMFIR_SETSYMLIST): each sent with its own stage's command only, an empty
  list sends none, stages without a list keep the defaults.
- SMFIR_SKIP ("skip further events of this type") answering a header or a recipient: the
  rest of the headers, the transaction's later recipients are not sent, as Postfix's
  milter8 skips them (mxgate took it as continue and sent every one); answering end of
  header it skips nothing (mxgate stopped the body)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

ADDHDRS, CHGBODY, ADDRCPT, DELRCPT, CHGHDRS, QUARANTINE, CHGFROM, ADDRCPT_PAR, SETSYMLIST = \
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
NO_ALL = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x200
NR_ALL = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000


def neg_milter(name, actions, proto, *lists):
    return t.neg_milter('neg-' + name, actions, proto, *lists)


def conns(log):
    """The commands each connection was sent, in order: [['O', 'D C name,...', 'C', ...], ...]
    (start_peer's probe, which sends nothing, is not one)."""
    out = {}
    with open(log) as f:
        for line in f:
            n, rest = line.rstrip('\n').split(' ', 1)
            out.setdefault(int(n), []).append(rest)
    return [out[n] for n in sorted(out)]


def entry(port, on_error='tempfail', timeout='10s'):
    return {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': on_error, 'timeout': timeout}


be = t.Backend()


def send(port, tag, mods, rcpts=('b@example.test',), size=0, client=None):
    return t.send_mail(port, 'a@example.org', list(rcpts), t.message(tag, 'MODS=%s\r\n' % mods, size=size),
                       ehlo='client.example.org', timeout=30, client=client)


def one(tag):
    got = be.find('Message-ID: <%s@' % tag)
    t.check(len(got) == 1, '%s delivered once (%d)' % (tag, len(got)))
    return got[0] if got else {'data': b'', 'rcpts': [], 'mail': ''}


# --- actions: only SMFIF_ADDHDRS asked for
hport, hlog = neg_milter('hdrs', ADDHDRS, 0)
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(hport)]))

code, text = send(mx.port, 'neg-h', 'h,i')
m = one('neg-h')
t.check(code == 250 and b'X-Neg: added' in m['data'] and b'X-Neg-Ins: inserted' in m['data'],
        'ADDHDRS negotiated: add and insert header applied (%s %s)' % (code, text))

for mod, tag, act in (('m', 'neg-m', 'SMFIF_CHGHDRS'), ('b', 'neg-b', 'SMFIF_CHGBODY'),
                      ('+', 'neg-plus', 'SMFIF_ADDRCPT'), ('2', 'neg-par', 'SMFIF_ADDRCPT_PAR'),
                      ('-', 'neg-del', 'SMFIF_DELRCPT'), ('e', 'neg-e', 'SMFIF_CHGFROM'),
                      ('q', 'neg-q', 'SMFIF_QUARANTINE')):
    code, text = send(mx.port, tag, 'h,' + mod)
    t.check(code == 451 and not be.find('Message-ID: <%s@' % tag),
            "'%s' without %s negotiated: on_error tempfail, not delivered (%s %s)" % (mod, act, code, text))
    t.check(mx.count_log(r"event=milter_error .*error=\"modification '%s' without %s negotiated\"" %
                         ('\\+' if mod == '+' else mod, act)) == 1,
            "  and logged: modification '%s' without %s" % (mod, act))
t.check(mx.count_log(r'event=plugin_error .*milter-unnegotiated') >= 7, 'plugin_error says milter-unnegotiated')

# the same session goes on: the next message on a fresh connection, judged again
c = t.Client(mx.port, timeout=30)
c.ehlo('client.example.org')
r1 = send(mx.port, 'neg-s1', 'e', client=c)
r2 = send(mx.port, 'neg-s2', 'h', client=c)
c.close()
t.check(r1[0] == 451 and r2[0] == 250 and b'X-Neg: added' in one('neg-s2')['data'],
        'after an unnegotiated action the next message of the session is filtered again (%s %s)' % (r1, r2))

# on_error accept: delivered as the client sent it, the negotiated header edit dropped too
mxa = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(hport, on_error='accept')]),
               name='mx-accept')
code, text = send(mxa.port, 'neg-acc', 'h,m,e')
m = one('neg-acc')
t.check(code == 250 and b'X-Neg:' not in m['data'] and b'Subject: test neg-acc' in m['data'] and
        m['mail'] == '<a@example.org>',
        'on_error accept: delivered unmodified, none of the edits applied (%s, from %s)' % (code, m['mail']))
mxa.stop()

# --- steps skipped: every SMFIP_NO* asked for, every action granted
sport, slog = neg_milter('skip', 0x1ff, NO_ALL, 'mods=m,b,e,+,-')
mxs = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(sport)]), name='mx-skip')
code, text = send(mxs.port, 'neg-skip', '', size=100000)
m = one('neg-skip')
t.check(code == 250 and b'Subject: changed' in m['data'] and m['data'].endswith(b'replaced body\r\n') and
        m['mail'] == '<new@example.org>' and m['rcpts'] == ['added@example.test'],
        'every action negotiated: all applied (%s %s, %s %s)' % (code, text, m['mail'], m['rcpts']))
mxs.stop()
cs = conns(slog)
sent = [x for seq in cs for x in seq]
t.check(sent and all(x.split(' ')[0] in ('O', 'E', 'A', 'Q') or x.startswith('D E') for x in sent),
        'SMFIP_NO* for every step: only negotiation, end of message and its macros sent: %s' % sent)

# --- replies not expected: SMFIP_NR_* for every step; the entry's timeout is 3 s, waiting
# for one reply would run into it
nport, nlog = neg_milter('noreply', ADDHDRS, NR_ALL)
mxn = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(nport, timeout='3s')]), name='mx-nr')
code, text = send(mxn.port, 'neg-nr', 'h', rcpts=('b@example.test', 'c@example.test'), size=200000)
t.check(code == 250 and b'X-Neg: added' in one('neg-nr')['data'],
        'SMFIP_NR_* for every step: nothing awaited but the end of message (%s %s)' % (code, text))
cn = conns(nlog)
cmds = [x for x in (cn[0] if cn else []) if not x.startswith('D ')]
t.check(cmds[:7] == ['O', 'C', 'H', 'M', 'R', 'R', 'T'] and cmds.count('B') >= 4 and 'N' in cmds and 'E' in cmds,
        '  and every step was still sent: %s' % cmds)
t.check(mxn.count_log('event=milter_error') == 0, '  no milter error')
mxn.stop()

# --- older filters: version 4 with SMFIP_NOHREPL (no reply per header), version 2
v4port, v4log = neg_milter('v4', ADDHDRS, 0x80, 'version=4')
v2port, v2log = neg_milter('v2', ADDHDRS, 0, 'version=2')
mxo = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(v4port, timeout='3s'),
                                                                    entry(v2port, timeout='3s')]), name='mx-old')
code, text = send(mxo.port, 'neg-old', 'h')
t.check(code == 250 and one('neg-old')['data'].count(b'X-Neg: added') == 2,
        'a version 4 filter\'s SMFIP_NOHREPL honoured: its headers not waited for (%s %s)' % (code, text))
c4 = [x for x in (conns(v4log) or [[]])[0] if not x.startswith('D ')]
c2 = [x for x in (conns(v2log) or [[]])[0] if not x.startswith('D ')]
t.check('T' in c4 and 'L' in c4, '  it is sent DATA and the headers: %s' % c4)
t.check('T' not in c2 and 'E' in c2, 'a version 2 filter is not sent DATA (not in its protocol): %s' % c2)
mxo.stop()

# --- macro lists: connect {client_addr} only, RCPT two names (one of MAIL's), DATA none,
# EOH two; HELO, MAIL and end of message keep the defaults
lport, llog = neg_milter('lists', ADDHDRS | SETSYMLIST, 0, '0={client_addr}', '3={rcpt_addr} {mail_addr}', '4=',
                         '6=i {client_addr}')
mxl = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(lport)]), name='mx-lists')
code, text = send(mxl.port, 'neg-lists', 'h')
one('neg-lists')
mxl.stop()
cl = (conns(llog) or [[]])[0]
macros = {x[2]: x[4:].split(',') for x in cl if x.startswith('D ')}
t.check(code == 250 and macros.get('C') == ['{client_addr}'] and macros.get('R') == ['{rcpt_addr}', '{mail_addr}'] and
        'T' not in macros and macros.get('N') == ['i', '{client_addr}'] and '{mail_addr}' in macros.get('M', []) and
        macros.get('E') == ['i'],
        'a filter\'s macro lists replace the defaults of their stage only: %s' % macros)
# --- SMFIR_SKIP at the first header and the first recipient (SMFIP_SKIP offered)
kport, klog = neg_milter('skipreply', ADDHDRS, 0x400, 'skip=LRN')
mxk = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[entry(kport)]), name='mx-skipreply')
code, text = send(mxk.port, 'neg-skipr', 'h', rcpts=('b@example.test', 'c@example.test', 'd@example.test'))
m = one('neg-skipr')
mxk.stop()
ck = [x for x in (conns(klog) or [[]])[0] if not x.startswith('D ')]
t.check(code == 250 and b'X-Neg: added' in m['data'] and len(m['rcpts']) == 3,
        'SMFIR_SKIP at a header and a recipient: the message passes, all recipients (%s %s %s)' % (code, text, m['rcpts']))
t.check(ck.count('L') == 1 and ck.count('R') == 1 and 'N' in ck and 'E' in ck,
        '  and the rest of the headers and recipients were not sent, as Postfix: %s' % ck)
t.check('B' in ck, '  SMFIR_SKIP answering end of header is no skip of the body (mxgate skipped it): %s' % ck)

for log in (hlog, slog, nlog, v4log, v2log, llog, klog):
    for n, seq in enumerate(conns(log)):
        bad = [seq[i] for i in range(len(seq)) if seq[i].startswith('D ') and
               (i + 1 >= len(seq) or seq[i + 1] != seq[i][2])]
        t.check(not bad, '%s conn %d: every macro frame right before its own stage\'s command (%s)' %
                (os.path.basename(log), n, bad))

t.check(mx.alive(), 'daemon alive')
mx.stop()
t.finish()
