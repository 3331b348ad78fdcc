#!/usr/bin/env python3
"""DSN parameters (RFC 3461) through mxgate: mxgate announces DSN to clients; a backend that
announces DSN gets MAIL's RET=/ENVID= and RCPT's NOTIFY=/ORCPT= as the client sent them, one
that does not gets none of them (it would refuse them, 555 5.5.4, and the client's mail with
them). Pipelined and lock-step. Peers: two scripted backends (one announcing DSN, one not,
strict about the parameters).

Malformed DSN parameters are refused by mxgate itself with Postfix smtpd's replies (501 5.5.4
Bad RET / ENVID parameter syntax at MAIL, 501 5.5.4 Error: Bad NOTIFY / ORCPT parameter
syntax at RCPT): a repeated RET, RET=BOGUS, ENVID that is not xtext, NOTIFY=NEVER,SUCCESS,
NOTIFY=BOGUS, ORCPT without its type. Before the fix they were taken (250) and relayed as
sent to a DSN backend (a real Postfix there answers 501 to MAIL, which a pipelining client then
got at each RCPT after a 250 for its MAIL) and silently dropped for one without DSN."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
plain = mt.Backend(name='nodsn')
dsn = mt.Backend(name='dsn', dsn=True)

MAIL = 'MAIL FROM:<s@example.org> RET=HDRS ENVID=QQ314159'
RCPT = 'RCPT TO:<%s@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s@local.test'


def transaction(port, tag, pipelined):
    c = mt.Client(port)
    code, text = c.ehlo()
    mt.check('DSN' in text, 'mxgate announces DSN to clients')
    rcpt = RCPT % (tag, tag)
    if pipelined:
        c.send((MAIL + '\r\n' + rcpt + '\r\nDATA\r\n').encode())
        replies = [c.reply() for _ in range(3)]
    else:
        replies = [c.cmd(MAIL), c.cmd(rcpt), c.cmd('DATA')]
    mt.check([r[0] for r in replies] == [250, 250, 354], '%s: MAIL, RCPT with DSN parameters, DATA: %r'
             % (tag, replies))
    if replies[-1][0] == 354:
        c.send(mt.stuff(mt.message(tag)))
        code, text = c.reply()
        mt.check(code == 250, '%s: the message is taken (%d %s)' % (tag, code, text))
    c.cmd('QUIT')
    c.close()


BAD_MAIL = ('RET=HDRS RET=FULL', 'RET=BOGUS', 'RET', 'ENVID=a+0Ab', 'ENVID=a+G1', 'ENVID=x ENVID=y')
BAD_RCPT = (('NOTIFY=NEVER,SUCCESS', 'NOTIFY'), ('NOTIFY=BOGUS', 'NOTIFY'), ('NOTIFY=DELAY,DELAY', 'NOTIFY'),
            ('ORCPT=bogus', 'ORCPT'), ('ORCPT=rfc822;', 'ORCPT'), ('ORCPT=rfc822;a+0Db@local.test', 'ORCPT'))


def malformed(port, be, pipelined):
    """Each malformed parameter is refused, 501 5.5.4, and nothing of it reaches be."""
    tag = 'bad-%s-%s' % (be.name, 'pipe' if pipelined else 'step')
    before = len(be.commands)
    c = mt.Client(port)
    c.ehlo()
    for param in BAD_MAIL:
        line = 'MAIL FROM:<%s@example.org> %s' % (tag, param)
        if pipelined:
            c.send((line + '\r\nRCPT TO:<%s@local.test>\r\nRSET\r\n' % tag).encode())
            replies = [c.reply() for _ in range(3)]
        else:
            replies = [c.cmd(line), c.cmd('RSET')]
        want = 'ENVID' if param.startswith('ENVID') else 'RET'
        mt.check(replies[0][0] == 501 and replies[0][1] == '501 5.5.4 Bad %s parameter syntax' % want,
                 '%s: MAIL ... %s: 501 5.5.4 Bad %s parameter syntax (%r)' % (tag, param, want, replies))
    code, text = c.cmd('MAIL FROM:<%s@example.org>' % tag)
    mt.check(code == 250, '%s: then a plain MAIL 250 (%s)' % (tag, text))
    for param, want in BAD_RCPT:
        code, text = c.cmd('RCPT TO:<%s@local.test> %s' % (tag, param))
        mt.check(code == 501 and text == '501 5.5.4 Error: Bad %s parameter syntax' % want,
                 '%s: RCPT ... %s: 501 5.5.4 Error: Bad %s parameter syntax (%d %s)' % (tag, param, want, code, text))
    c.cmd('QUIT')
    c.close()
    sent = [x for x in be.commands[before:] if tag in x and x != 'MAIL FROM:<%s@example.org>' % tag]
    mt.check(sent == [], '%s: no malformed parameter reached the backend, only the plain MAIL (%r)' % (tag, sent))


for be, has in ((plain, False), (dsn, True)):
    mx = mt.Mxgate(mt.config([be.url], limits={'max_errors': 50}), name='mx-' + be.name)
    for pipelined in (False, True):
        tag = '%s-%s' % (be.name, 'pipe' if pipelined else 'step')
        transaction(mx.port, tag, pipelined)
        mt.check(len(be.by_tag(tag)) == 1, '%s: the message reached the backend once' % tag)
        mails = [c for c in be.commands if c.upper().startswith('MAIL')]
        rcpts = [c for c in be.commands if c.upper().startswith('RCPT') and tag in c]
        mt.check(rcpts, '%s: the RCPT reached the backend' % tag)
        if has:
            mt.check(rcpts and rcpts[-1].endswith('NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s@local.test' % tag),
                     '%s: a DSN backend gets NOTIFY and ORCPT as sent (%r)' % (tag, rcpts[-1:]))
            mt.check(mails and 'RET=HDRS' in mails[-1] and 'ENVID=QQ314159' in mails[-1],
                     '%s: a DSN backend gets RET and ENVID (%r)' % (tag, mails[-1:]))
        else:
            mt.check(rcpts and 'NOTIFY' not in rcpts[-1] and 'ORCPT' not in rcpts[-1],
                     '%s: a backend without DSN gets neither NOTIFY nor ORCPT (%r)' % (tag, rcpts[-1:]))
            mt.check(mails and 'RET=' not in mails[-1] and 'ENVID=' not in mails[-1],
                     '%s: a backend without DSN gets neither RET nor ENVID (%r)' % (tag, mails[-1:]))
    for pipelined in (False, True):
        malformed(mx.port, be, pipelined)
    mt.check(not mx.malformed_log_lines(), 'log lines keep the contract form')
    mx.stop()
mt.finish()
