#!/usr/bin/env python3
"""rspamd's body block with use_action: true. rspamd sends a body a Lua rule rewrote
(task:set_message) only to a client that asks with `Flags: body_block` (libserver/protocol.c:
the JSON, then the body from the offset in the `Message-Offset` header; with `milter` too, the
body only, as rspamd's own milter gateway asks and applies it as SMFIR_REPLBODY). Before,
mxgate sent no Flags and the rewritten body was lost. Checks, against
tests/peers/fake_rspamd.py (test_rspamd_real.py: the same against rspamd 3.4):
  - the request says `Flags: milter,body_block` with use_action, no Flags without;
  - the body after the offset replaces the message's, the JSON before it is read as ever;
  - "add header" with spam_header: the body is not replaced, as rspamd's milter returns
    before its REPLBODY;
  - a Message-Offset that is no number or past the reply: the entry's on_error (tempfail);
  - a body past limits.max_message_size: 552 5.3.4, as a milter's (Postfix's cleanup);
  - without use_action: nothing asked, nothing replaced;
  - options.spam_header that is no field name: a FILE:LINE:COL config error."""
import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

rs = mt.fake_rspamd()
be = mt.Backend()
plugin = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '10s',
          'options': {'use_action': True}}
m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plugin], limits={'max_message_size': '200K'}),
              name='mx-body')
plain = dict(plugin, options={'use_action': False})
mp = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plain]), name='mx-body-plain')


def send(mx, tag, word, headers=()):
    return mt.send_mail(mx.port, 'a@example.org', ['b@example.test'],
                        mt.message(tag, '%s\r\n' % word, headers=headers), timeout=30)


def body(tag):
    got = be.by_tag(tag)
    return got[0]['data'].split(b'\r\n\r\n', 1)[1] if got else None


def flags():
    """The Flags header of each request rspamd got, in order (the peer logs a request
    before it answers it)."""
    with open(rs.requests) as f:
        return [json.loads(line)['headers'].get('flags') for line in f]


n0 = len(flags())
code, text = send(m, 'bb1', 'BODYME')
mt.check(code == 250 and body('bb1') == b'Rewritten by fake rspamd.\r\n',
         'the body after Message-Offset replaces the message\'s: %s %s %r' % (code, text, body('bb1')))
mt.check(flags()[n0:] == [['milter,body_block']], 'asked with Flags: milter,body_block: %s' % flags()[n0:])
got = be.by_tag('bb1')
mt.check(got and b'\r\nX-Spam:' not in got[0]['data'].split(b'\r\n\r\n', 1)[0],
         'the JSON before the offset applied as ever (its remove_headers)')

code, text = send(m, 'bb2', 'BODYSPAMHDR')
f = be.by_tag('bb2')
mt.check(code == 250 and body('bb2') == b'BODYSPAMHDR\r\n' and f and b'X-Spam: spammy' in f[0]['data'],
         'add header with spam_header: the header set, the body kept, as rspamd\'s milter does: %s %r'
         % (code, body('bb2')))

for tag, word in (('bb3', 'BODYBADOFF'), ('bb4', 'BODYPASTOFF')):
    start = m.log_size()
    code, text = send(m, tag, word)
    mt.check(code == 451 and not be.by_tag(tag), '%s: the entry\'s on_error (tempfail): %s %s' % (word, code, text))
    mt.check(m.wait_log(r'event=rspamd_error [^\n]*error="bad HTTP reply"', start=start),
             '%s: logged as a bad reply' % word)

start = m.log_size()
code, text = send(m, 'bb5', 'BODYBIG')
mt.check(code == 552 and '5.3.4' in text and not be.by_tag('bb5'),
         'a body past limits.max_message_size: 552 5.3.4: %s %s' % (code, text))
mt.check(m.wait_log(r'event=rspamd_body_too_big [^\n]*size=297000 max=204800', start=start),
         'event=rspamd_body_too_big logged: %s' % m.tail(3))

n0 = len(flags())
code, text = send(mp, 'bb6', 'BODYME')
mt.check(code == 250 and body('bb6') == b'BODYME\r\n', 'without use_action: the body as sent: %s %r' % (code, body('bb6')))
mt.check(flags()[n0:] == [None], 'without use_action: no Flags asked: %s' % flags()[n0:])

# options.spam_header (the renamed spam_header, test_rspamd_real.py): a field name or the
# config is refused where the entry is
rc, out = mt.config_check(mt.config([be.url], plugins=[dict(plugin, options={'spam_header': 'X Spam'})]))
mt.check(rc == 1 and re.search(r':\d+:\d+: plugins\[0\]: .*options\.spam_header: not a header field name', out),
         'options.spam_header with a blank: FILE:LINE:COL error: %s' % out.strip()[-200:])
m.stop()
mp.stop()
mt.finish()
