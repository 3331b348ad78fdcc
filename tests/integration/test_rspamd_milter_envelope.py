#!/usr/bin/env python3
"""What else rspamd 3.4's /checkv2 reply tells its milter gateway, applied with use_action:
true as the gateway (rspamd_milter.c) applies it; each reply is shaped as the real rspamd 3.4
sent it (tests/integration/test_rspamd_real.py):
  - the top-level "dkim-signature" (dkim_signing's default, use_milter_headers = false):
    inserted at 1, 2 ... (INSHEADER), just below mxgate's Received;
  - the milter block's change_from, add_rcpt, del_rcpt (a local rule's task:set_milter_reply):
    the envelope the backend gets;
  - reject "discard" / "quarantine": a rejected message discarded (250, delivered nowhere) or
    quarantined instead;
  - no_action: the action is not applied, X-Rspamd-Action names it;
  - spam_header with "add header": the value set (string form: X-Spam; object form: each
    field), nothing else added.
Before, mxgate read only add_headers/remove_headers: the DKIM signature of a default
dkim_signing never reached the backend, the envelope was never changed, and a message rspamd
said to discard or only to mark was refused with 550. Against tests/peers/fake_rspamd.py."""
import glob
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

rs = mt.fake_rspamd()
be = mt.Backend()
qd = os.path.join(mt.TMP, 'quarantine')
plugin = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '10s',
          'options': {'use_action': True}}
m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plugin], quarantine='maildir:' + qd),
              name='mx-env')


def send(tag, word, rcpts=('b@example.test',), headers=()):
    return mt.send_mail(m.port, 'a@example.org', list(rcpts), mt.message(tag, '%s\r\n' % word, headers=headers),
                        timeout=30)


def fields(tag):
    got = be.by_tag(tag)
    h = got[0]['data'].split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace') if got else ''
    return [(g.group(1), re.sub(r'\r\n[ \t]+', ' ', g.group(2)))
            for g in re.finditer(r'(?m)^([^\s:]+):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', h)]


# dkim-signature: one, then an array of two, below mxgate's Received as rspamd's milter
# inserts them (INSHEADER 1, 2)
code, text = send('dk1', 'DKIMME')
f = fields('dk1')
mt.check(code == 250 and [n for n, _ in f][:2] == ['Received', 'DKIM-Signature'],
         "the top-level dkim-signature inserted at 1, below mxgate's Received: %s %s" % (code, f[:3]))
raw = be.by_tag('dk1')[0]['data'] if be.by_tag('dk1') else b''
mt.check(b'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mxtest;\r\n\tt=1796429068;\r\n\tb=AAAA\r\n'
         in raw, 'its folding kept as rspamd wrote it')
code, text = send('dk2', 'DKIMTWO')
f = fields('dk2')
mt.check(code == 250 and [n for n, _ in f][:3] == ['Received', 'DKIM-Signature', 'DKIM-Signature'] and
         's=mxtest' in f[1][1] and 's=two' in f[2][1], 'an array of two: at 1 and 2, in order: %s' % f[:3])

# the envelope: change_from, add_rcpt, del_rcpt
code, text = send('env1', 'ENVELOPEME', rcpts=('b@example.test', 'gone@example.test'))
got = be.by_tag('env1')
mt.check(code == 250 and len(got) == 1, 'envelope changes: relayed once: %s %s' % (code, text))
if got:
    mt.check(got[0]['mail'].strip('<>') == 'bounces@example.org', 'change_from: the new sender: %s' % got[0]['mail'])
    rc = sorted(r.strip('<>') for r in got[0]['rcpts'])
    mt.check(rc == ['added@example.test', 'b@example.test'], 'add_rcpt added, del_rcpt removed: %s' % rc)

# reject "discard": 250, delivered nowhere; "quarantine": 250, into the quarantine only
code, text = send('disc1', 'DISCARDME')
mt.check(code == 250 and not be.by_tag('disc1'), 'reject with discard: 250, not delivered: %s %s' % (code, text))
code, text = send('quar1', 'QUARME')


def held():
    out = []
    for p in glob.glob(qd + '/new/*'):
        with open(p, 'rb') as fh:
            out.append(fh.read())
    return out


mt.check(code == 250 and not be.by_tag('quar1'), 'reject with quarantine: 250, not at the backend: %s %s' % (code, text))
mt.check(mt.wait_for(lambda: any(b'quar1' in q for q in held()), timeout=mt.slack(10)),
         'reject with quarantine: in the quarantine')

# no_action: the reject is not applied, X-Rspamd-Action names it
code, text = send('noact1', 'NOACTME', headers=('X-Rspamd-Action: no action', 'x-rspamd-action: forged'))
f = fields('noact1')
mt.check(code == 250 and [v for n, v in f if n.lower() == 'x-rspamd-action'] == ['reject'],
         'no_action: delivered with X-Rspamd-Action: reject, once, the sender\'s two gone: %s %s %s'
         % (code, text, f[-3:]))

# spam_header with add header: its value instead of Yes; the object form sets each field
code, text = send('sh1', 'SPAMHDRME', headers=('X-Spam: forged',))
f = fields('sh1')
mt.check(code == 250 and [v for n, v in f if n == 'X-Spam'] == ['spammy'],
         'spam_header "spammy": X-Spam: spammy only: %s' % [v for n, v in f if n == 'X-Spam'])
code, text = send('sh2', 'SPAMHDROBJ', headers=('X-Spam-Flag: forged',))
f = fields('sh2')
mt.check(code == 250 and [v for n, v in f if n == 'X-Spam-Flag'] == ['YES'] and 'X-Spam' not in [n for n, _ in f],
         'spam_header {"X-Spam-Flag": "YES"}: that field set, no X-Spam: Yes: %s' % f[-3:])
m.stop()
mt.finish()
