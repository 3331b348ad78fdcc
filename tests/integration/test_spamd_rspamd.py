#!/usr/bin/env python3
"""rspamd plugin (HTTP POST /checkv2) against tests/peers/fake_rspamd.py: the envelope goes
as request headers, score and symbols come back (RSPAMD_SCORE), use_action applies rspamd's
reject / soft reject with its SMTP message, invalid JSON costs one verdict (on_error)."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()


def send(port, data, rcpts=('b@example.test',)):
    return mt.send_mail(port, 'a@example.org', list(rcpts), data, ehlo='client.example.org', timeout=30)


def requests():
    with open(rs.requests) as f:
        return [r for r in (json.loads(line) for line in f) if r['request']]


rs = mt.fake_rspamd()
be = mt.Backend()
m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test',
                        plugins=[{'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail',
                                  'timeout': '10s', 'options': {'use_action': True}}]))
code, text = send(m.port, mt.message('r1'), rcpts=('b@example.test', 'c@example.test'))
mt.check(code == 250 and be.by_tag('r1'), 'ham delivered: %s %s' % (code, text))
reqs = requests()     # the peer logs a request before it answers it
h = reqs[0]['headers'] if reqs else {}
mt.check(reqs and reqs[0]['request'].startswith('POST /checkv2 '), 'POST /checkv2 sent')
mt.check(h.get('ip') == ['127.0.0.1'] and h.get('from') == ['a@example.org']
         and h.get('rcpt') == ['b@example.test', 'c@example.test']
         and h.get('helo') == ['client.example.org'] and 'queue-id' in h, 'envelope sent as headers: %s' % h)
mt.check(reqs and reqs[0]['size'] > 100, 'message sent')
scores = re.findall(r'event=rspamd_result plugin=\S+ score=([-0-9.]+)', m.log())
mt.check(scores == ['1.20'], 'score came back: %s' % scores)

code, text = send(m.port, mt.message('r2', mt.GTUBE + '\r\n'))
mt.check(code == 550 and 'Gtube pattern' in text and not be.by_tag('r2'), 'rspamd reject applied: %s %s' % (code, text))
code, text = send(m.port, mt.message('r3', 'SOFTME\r\n'))
mt.check(code == 451 and not be.by_tag('r3'), 'rspamd soft reject applied: %s %s' % (code, text))
code, text = send(m.port, mt.message('r4', 'GARBAGEME\r\n'))
mt.check(code == 451 and 'Content filter unavailable' in text, 'invalid JSON -> on_error tempfail: %s %s' % (code, text))
mt.stop_proc(rs)
code, text = send(m.port, mt.message('r5'))
mt.check(code == 451 and not be.by_tag('r5'), 'rspamd down -> on_error tempfail: %s' % code)
m.stop()
mt.finish()
