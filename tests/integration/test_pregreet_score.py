#!/usr/bin/env python3
"""The symbols the session itself adds about a client's behaviour before any transaction
reach the rules engine, for every message of the session: PREGREET (pregreet.action score:
"score of the PREGREET symbol handed to the rules engine"), BARE_LF_COMMAND (a HELO ended
by a bare LF), PIPELINING_UNANNOUNCED (commands pipelined behind HELO).

Before, they were added outside any filter stage and the next transaction reset (the
HELO/EHLO itself, which starts a new transaction state) threw them away: with action score
an early talker was served without PREGREET in its score, so the test did nothing. Here the
rules engine's add_header threshold is 0.1 and the X-Spam-Status of each delivered message
is read.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CF = os.path.join(mt.TMP, 'one.cf')
with open(CF, 'w') as f:
    f.write('header NEVER_MATCHES Subject =~ /never-ever-matches/\nscore NEVER_MATCHES 1\n')
be = mt.Backend()
cfg = mt.proxied_config([be.url], pregreet={'delay': '300ms', 'action': 'score', 'score': 4},
                        rules={'files': [CF], 'actions': {'add_header': 0.1, 'reject': 100}})
mx = mt.Mxgate(cfg, 'mx-pregreet-score')


def status(tag):
    got = be.by_tag(tag)
    if not got:
        return ''
    text = got[0]['data'].decode('utf-8', 'replace').replace('\r\n\t', ' ').replace('\r\n ', ' ')
    for line in text.split('\r\n'):
        if line.startswith('X-Spam-Status:'):
            return line
    return ''


# A bot: HELO before the greeting, ended by a bare LF, with its transaction pipelined behind.
c = mt.Client(mx.port, proxy_src='198.18.88.1', greet=False)
c.send(b'HELO bot.example\nMAIL FROM:<a@example.org>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n')
replies = [c.reply() for _ in range(5)]
mt.check([r[0] for r in replies] == [220, 250, 250, 250, 354], 'the early talker is served (score): %s' % replies)
c.send(mt.stuff(mt.message('first')))
r1 = c.reply()
r2 = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('second'), client=c)
c.close()
mt.check(r1[0] == 250 and r2[0] == 250, 'both messages accepted: %r %r' % (r1, r2))
for tag in ('first', 'second'):
    st = mt.wait_for(lambda t=tag: status(t), 5)
    for sym in ('PREGREET', 'BARE_LF_COMMAND', 'PIPELINING_UNANNOUNCED'):
        mt.check(sym in st, '%s message: %s is in the score: %s' % (tag, sym, st))
    mt.check('score=6.0' in st, '%s message: 4 + 1 + 1 = 6: %s' % (tag, st))

# A polite client has none of them.
r = mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message('polite'), ehlo='mail.example.org',
                 proxy_src='198.18.88.2')
st = mt.wait_for(lambda: status('polite'), 5)
mt.check(r[0] == 250 and 'PREGREET' not in st and 'BARE_LF' not in st, 'a polite client has none: %s' % st)
mx.stop()
mt.finish()
