#!/usr/bin/env python3
"""What other MTAs send that is not a message — recipient and sender callouts (Exim's
`verify = recipient/callout`, Postfix's reject_unverified_recipient: MAIL FROM:<>, RCPT,
then RSET or QUIT, no DATA), monitoring sessions of EHLO+QUIT, HELO from old MTAs, NOOP and
RSET after every RCPT, bounces with DSN parameters — sent to a real Postfix 3.7 directly and
through mxgate in front of that same Postfix: the replies must be Postfix's own (codes and
texts; the greeting's and HELO reply's host name and the queue id aside), the backend must
hear of the callout (its RCPT verdict is the answer), and the backend's log must read as a
client that said goodbye, not as a lost connection.

Until session 16 a client's QUIT with a transaction open (every callout: MAIL, RCPT, QUIT)
closed the backend connection without a word: Postfix logged `lost connection after RCPT`
for each callout, Exim `incomplete transaction (connection lost)` and `unexpected
disconnection` (and, over STARTTLS, a TLS error), and the connection was not pooled. QUIT
now ends the transaction as RSET does: the backend gets RSET and the connection is pooled
(QUIT where it cannot be: PROXY v2).

The differences docs/smtp-edge.md lists for VRFY, EXPN, ETRN, SIZE syntax and DATA before
MAIL are checked beside this Postfix's own answers.

Screening: a callout never reaches DATA, so a `count: messages` rate limit does not charge
it (docs/filters-limits.md) — three callouts and a message under `limit: 1/1h` deliver the
message; the message after it is refused (the rule is live).
Peers: a private Postfix instance (smtpd, relay_recipient_maps), as the backend and as the
reference."""
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix')
mt.need_postfix()

pf_port = mt.free_port()
mt.postfix_instance('postfix', pf_port, '''relay_domains = local.test
default_transport = discard
relay_transport = discard
relay_recipient_maps = inline:{a@local.test=ok, b@local.test=ok, postmaster@local.test=ok}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_recipient_restrictions = permit_auth_destination, reject
''', hostname='backend.test')
PF_LOG = os.path.join(mt.TMP, 'postfix.log')

mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % pf_port], accept_domains=['local.test'],
                         backends={'client_identity': 'xclient', 'pool_size': 4},
                         ratelimit={'rules': [{'key': 'ip', 'count': 'messages', 'limit': '1/1h',
                                               'action': 'tempfail'}]},
                         workers=1), name='mx-callouts')

BODY = 'Subject: callout test\r\n\r\nbody\r\n.'

# (name, commands): every reply through mxgate is Postfix's
SEQS = [
    ('monitoring EHLO+QUIT', ['EHLO mon.test', 'QUIT']),
    ('old MTA HELO+QUIT', ['HELO old.test', 'QUIT']),
    ('recipient callout, known, QUIT', ['EHLO v.test', 'MAIL FROM:<>', 'RCPT TO:<a@local.test>', 'QUIT']),
    ('recipient callout, unknown, RSET', ['EHLO v.test', 'MAIL FROM:<>', 'RCPT TO:<nosuch@local.test>', 'RSET', 'QUIT']),
    ('callout after HELO, postmaster', ['HELO v.test', 'MAIL FROM:<>', 'RCPT TO:<postmaster@local.test>',
                                        'RCPT TO:<Postmaster>', 'QUIT']),
    ('Exim random + real callout', ['EHLO v.test', 'MAIL FROM:<>', 'RCPT TO:<qq1234random@local.test>', 'RSET',
                                    'MAIL FROM:<>', 'RCPT TO:<a@local.test>', 'QUIT']),
    ('callout with a sender, RSET', ['EHLO v.test', 'MAIL FROM:<callout@verifier.test>', 'RCPT TO:<a@local.test>',
                                     'RSET', 'QUIT']),
    ('NOOP before and after EHLO', ['NOOP', 'EHLO v.test', 'NOOP', 'NOOP hello', 'QUIT']),
    ('RSET after every RCPT', ['EHLO v.test', 'MAIL FROM:<x@y.test>', 'RCPT TO:<a@local.test>', 'RSET',
                               'RCPT TO:<b@local.test>', 'MAIL FROM:<x@y.test>', 'RCPT TO:<b@local.test>', 'RSET',
                               'QUIT']),
    ('HELO then ESMTP parameters', ['HELO old.test', 'MAIL FROM:<> SIZE=100', 'RSET', 'MAIL FROM:<> BODY=8BITMIME',
                                    'RCPT TO:<a@local.test> NOTIFY=NEVER', 'QUIT']),
    ('bounce with DSN parameters', ['EHLO v.test', 'MAIL FROM:<> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=abc+2Bx',
                                    'RCPT TO:<a@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@local.test',
                                    'RCPT TO:<b@local.test> NOTIFY=NEVER', 'DATA', BODY, 'QUIT']),
    ('bad DSN parameters', ['EHLO v.test', 'MAIL FROM:<> RET=BOGUS', 'MAIL FROM:<> RET=FULL RET=HDRS',
                            'MAIL FROM:<> BODY=7BIT', 'RCPT TO:<a@local.test> NOTIFY=NEVER,SUCCESS',
                            'RCPT TO:<a@local.test> ORCPT=bogus', 'RCPT TO:<a@local.test> ORCPT=rfc822;a@local.test NOTIFY=DELAY',
                            'QUIT']),
]


def norm(line, reply):
    code, text = reply
    if line.upper().startswith(('EHLO', 'HELO')):
        return code, ''            # the host name and (EHLO) the keywords: docs/smtp-edge.md
    return code, re.sub(r'queued as \S+', 'queued as ID', text)


def run(port, seq):
    c = mt.Client(port)
    out = []
    for line in seq:
        out.append(norm(line, c.cmd(line)))
    c.close()
    return out


for name, seq in SEQS:
    direct = run(pf_port, seq)
    via = run(mx.port, seq)
    diff = ['%s: %s / %s' % (l, d, v) for l, d, v in zip(seq, direct, via) if d != v]
    mt.check(not diff, '%s: replies through mxgate are Postfix\'s own%s' % (name, (': ' + '; '.join(diff)) if diff else ''))

# The differences docs/smtp-edge.md lists ("Where the replies differ"), each beside what
# this Postfix answers, so the table stays true: (command after EHLO, Postfix's, mxgate's)
DOCUMENTED = [
    ('VRFY a@local.test', '252 2.0.0 a@local.test',
     '252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery'),
    ('VRFY <nosuch@local.test>', '550 5.1.1 <nosuch@local.test>: Recipient address rejected: User unknown in relay recipient table',
     '252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery'),
    ('EXPN a@local.test', '500 5.5.2 Error: command not recognized', '502 5.5.1 Error: command not implemented'),
    ('EXPN', '500 5.5.2 Error: command not recognized', '501 5.5.4 Syntax: EXPN list'),
    ('ETRN local.test', None, '500 5.5.2 Syntax error, command unrecognized'),
    ('MAIL FROM:<> SIZE=12k', '501 5.5.4 Bad message size syntax', '501 5.5.4 Bad SIZE parameter syntax'),
    ('MAIL FROM:<> SIZE', '555 5.5.4 Unsupported option: SIZE', '501 5.5.4 Bad SIZE parameter syntax'),
    ('DATA', '503 5.5.1 Error: need RCPT command', '503 5.5.1 Error: need MAIL command'),
]
for line, pf_reply, mx_reply in DOCUMENTED:
    got = []
    for port in (pf_port, mx.port):
        c = mt.Client(port)
        c.ehlo('v.test')
        got.append(c.cmd(line)[1])
        c.cmd('QUIT')
        c.close()
    mt.check((pf_reply is None or got[0] == pf_reply) and got[1] == mx_reply,
             '%s: Postfix %r, mxgate %r, as docs/smtp-edge.md says (got %r)' % (line, pf_reply, mx_reply, got))

# The callouts reached the backend: its RCPT verdicts were the answers (above), and it
# logged the refusals of the unknown recipients as its own.
mt.check(mt.wait_for(lambda: len(re.findall(r'reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.1\.1 <nosuch@local\.test>',
                                            open(PF_LOG, errors='replace').read())) >= 2, 10),
         'the backend judged the callout to an unknown recipient through mxgate (its own 550 5.1.1, logged)')

# the messages ratelimit counted only the one message above (the bounce): callouts are free
c = mt.Client(mx.port)
c.ehlo('v.test')
codes = [c.cmd(l)[0] for l in ('MAIL FROM:<x@y.test>', 'RCPT TO:<a@local.test>', 'DATA')]
mt.check(codes == [250, 250, 451], 'a second message from the address is over the messages limit (1/1h): '
         'the rule is live and the callouts before were not charged (got %s)' % codes)
c.close()
mt.check(mx.count_log(r'event=ratelimit .*count=messages') == 1,
         'the messages limit refused once (the second message), no callout counted')

# the backend's log: every client session through mxgate ended with RSET/QUIT, none lost
mx.stop()
pf = open(PF_LOG, errors='replace').read()
lost = re.findall(r'lost connection after (\w+) from localhost', pf)
mt.check(not [x for x in lost if x != 'CONNECT'],
         'Postfix logs no "lost connection after RCPT" for a callout ended by QUIT through mxgate '
         '(got %s)' % lost)
mt.check(re.search(r'disconnect from localhost\[127\.0\.0\.1\] ehlo=\d+ xclient=\S+ [^\n]*\brset=\d+', pf),
         'the pooled backend connection got RSET after the callout (Postfix\'s disconnect line counts it)')

mt.finish()
