#!/usr/bin/env python3
"""reputation.bad_action: reject: the refusal decided at connect and given at each MAIL is
logged with the code and reply the client is given. The connect line said
`event=reject stage=connect reason=reputation client=... reply=` (no code, and the reply
empty when the verdict had none: a deny list's and a bad client's have one) while each
MAIL's line said `code=550`: two lines that did not agree on what the client was told.

A client is made bad without timing: a first daemon relays to a backend that refuses every
message after the dot (554: rejected outcomes), and is stopped (the LMDB writer writes its
last batch then); a second one on the same store judges it at connect.
Peers: the recording Backend (reject_data, then ok), LMDB store."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

BAD = '198.18.29.1'
STORE = 'lmdb:' + os.path.join(mt.TMP, 'rep')
REP = {'store': STORE, 'prior': 0.5, 'bad_threshold': -0.45, 'flush_interval': '100ms'}

refusing = mt.Backend(mode='reject_data')
mx = mt.Mxgate(mt.proxied_config([refusing.url], reputation=REP), 'learn')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('x'), ehlo='mail.example.org',
                 proxy_src=BAD)
mt.check(r[0] == 554, 'the backend refuses the message after the dot: %r' % (r,))
mx.stop()

be = mt.Backend()
mx = mt.Mxgate(mt.proxied_config([be.url], reputation=dict(REP, bad_action='reject')), 'judge')
r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('y'), ehlo='mail.example.org',
                 proxy_src=BAD)
mt.check(r[0] == 550 and r.stage == 'mail' and '5.7.1 poor reputation of %s' % BAD in r[1],
         'the bad client is refused at MAIL: %r' % (r,))
mx.stop()
log = mx.log()
lines = [ln for ln in log.splitlines() if re.search(r'event=(reject|tempfail) ', ln)]
conn = [ln for ln in lines if 'stage=connect' in ln]
mail = [ln for ln in lines if 'stage=mail' in ln]
mt.check(len(conn) == 1 and len(mail) == 1, 'one connect line and one MAIL line: %s' % lines)
want = 'reason=reputation client=%s code=550 reply="5.7.1 poor reputation of %s"' % (BAD, BAD)
mt.check(conn and conn[0].endswith('event=reject stage=connect ' + want),
         'the connect line has the code and reply the client is given: %s' % conn)
mt.check(mail and re.search(r'event=reject stage=mail .*code=550 ', mail[0]), 'the MAIL line too: %s' % mail)
mt.finish()
