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
# rspamd's smtp_message with control characters: each one '?' as in every other filter's
# reply (plugins.c plugin_reply_clean), UTF-8 text kept; rspamd.c made them blanks before
code, text = send(m.port, mt.message('r2c', 'CTLMSG\r\n'))
mt.check(code == 550 and text == '550 5.7.1 bad ?[31mred?[0m bell? csi?? caf\u00e9 end',
         "rspamd's smtp_message with controls: '?' for each, UTF-8 kept (%s %r)" % (code, text))
code, text = send(m.port, mt.message('r3', 'SOFTME\r\n'))
mt.check(code == 451 and not be.by_tag('r3'), 'rspamd soft reject applied: %s %s' % (code, text))
code, text = send(m.port, mt.message('r4', 'GARBAGEME\r\n'))
mt.check(code == 451 and 'Content filter unavailable' in text, 'invalid JSON -> on_error tempfail: %s %s' % (code, text))
# More than 100 recipients, with long addresses (over the 8 KiB the request's head had): all
# of them reach rspamd (its rules count them, and rcpt-based settings need each one). Before:
# the first 100 only, and past 8 KiB of head the rest of the headers silently dropped.
big = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', limits={'max_recipients': 300},
                          plugins=[{'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail',
                                    'timeout': '10s', 'options': {'settings_id': 'mxgate-in'}}]), name='mx-many')
many = ['r%03d-%s@example.test' % (i, 'x' * 55) for i in range(150)]
n0 = len(requests())
code, text = send(big.port, mt.message('r6'), rcpts=many)
reqs = requests()[n0:]
h = reqs[0]['headers'] if reqs else {}
mt.check(code == 250 and h.get('rcpt') == many,
         '150 recipients (12 KiB of Rcpt headers): every one sent to rspamd (%s, %d sent)' % (code, len(h.get('rcpt', []))))
mt.check(h.get('mta-name') == ['mx.example.test'], 'and the headers after them too: %s' % h.get('mta-name'))
# options.settings_id goes as rspamd's Settings-ID (its settings rule of that id); none without it
mt.check(h.get('settings-id') == ['mxgate-in'] and 'settings-id' not in requests()[0]['headers'],
         'options.settings_id: Settings-ID sent (%s), none from an entry without it' % h.get('settings-id'))
# The null sender: rspamd's own milter gateway sends "From: <>" (rspamd reads it as the
# empty envelope sender: a bounce, SPF on the HELO). Before: no From at all, and rspamd
# took the sender from the message's From: field.
n0 = len(requests())
code, text = mt.send_mail(big.port, '', ['b@example.test'], mt.message('r7'), ehlo='client.example.org', timeout=30)
reqs = requests()[n0:]
h = reqs[0]['headers'] if reqs else {}
mt.check(code == 250 and h.get('from') == ['<>'], 'the null sender goes as From: <> (%s %s)' % (code, h.get('from')))
big.stop()
# The session's TLS: rspamd's milter gateway passes Postfix's {tls_version} and {cipher} as
# TLS-Version and TLS-Cipher (rspamd flags the task 'ssl' by the cipher); a plain session
# sends neither. Before: never sent, a STARTTLS client looked like a plain one to rspamd.
mt.check('tls-cipher' not in reqs[0]['headers'] and 'tls-version' not in reqs[0]['headers'],
         'a plain session: no TLS-Cipher, no TLS-Version (%s)' % sorted(reqs[0]['headers']))
crt, key = mt.cert()
tm = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key},
                         plugins=[{'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail',
                                   'timeout': '10s'}]), name='mx-tls')
c = mt.Client(tm.port)
c.ehlo('client.example.org')
tls_code = c.starttls()[0]
c.ehlo('client.example.org')
n0 = len(requests())
code, text = mt.send_mail(tm.port, 'a@example.org', ['b@example.test'], mt.message('r8'), client=c)
c.cmd('QUIT')
reqs = requests()[n0:]
h = reqs[0]['headers'] if reqs else {}
logged = re.search(r'event=tls version=(\S+) cipher=(\S+)', tm.log())
mt.check(tls_code == 220 and code == 250 and logged is not None
         and h.get('tls-version') == [logged.group(1)] and h.get('tls-cipher') == [logged.group(2)],
         'after STARTTLS: TLS-Version and TLS-Cipher sent, as event=tls logged them (%s %s; %s %s; %s)' % (
             tls_code, code, h.get('tls-version'), h.get('tls-cipher'), logged and logged.groups()))
tm.stop()

mt.stop_proc(rs)
code, text = send(m.port, mt.message('r5'))
mt.check(code == 451 and not be.by_tag('r5'), 'rspamd down -> on_error tempfail: %s' % code)
m.stop()
mt.finish()
