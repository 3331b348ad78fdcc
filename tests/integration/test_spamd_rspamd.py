#!/usr/bin/env python3
"""rspamd plugin (HTTP POST /checkv2) against tests/peers/fake_rspamd.py: the envelope goes
as request headers, score and symbols come back (RSPAMD_SCORE), use_action applies rspamd's
reject / soft reject with its SMTP message, invalid JSON costs one verdict (on_error)."""
import json, os, re, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers'))
import mxpeers as t

rs = t.rspamd()
be = t.Backend()
m = t.mxgate('  - { name: rspamd, address: "127.0.0.1:%d", on_error: tempfail, timeout: 10s, '
             'options: { use_action: true } }' % rs.port, be.port)
code, text, _ = t.send(m.port, t.message('r1'), rcpts=('b@example.test', 'c@example.test'))
t.check(code == 250 and be.find('body of r1'), 'ham delivered: %d %s' % (code, text))
time.sleep(0.2)
reqs = [r for r in (json.loads(l) for l in open(os.path.join(t.TMP, 'rspamd-requests.log'))) if r['request']]
h = reqs[0]['headers'] if reqs else {}
t.check(reqs and reqs[0]['request'].startswith('POST /checkv2 '), 'POST /checkv2 sent')
t.check(h.get('ip') == ['127.0.0.1'] and h.get('from') == ['a@example.org'] and h.get('rcpt') == ['b@example.test', 'c@example.test']
        and h.get('helo') == ['client.example.org'] and 'queue-id' in h, 'envelope sent as headers: %s' % h)
t.check(reqs and reqs[0]['size'] > 100, 'message sent')
scores = re.findall(r'event=rspamd_result score=([-0-9.]+)', t.logtext('mxgate'))
t.check(scores == ['1.20'], 'score came back: %s' % scores)

code, text, _ = t.send(m.port, t.message('r2', t.GTUBE))
t.check(code == 550 and 'Gtube pattern' in text and not be.find('body of r2'), 'rspamd reject applied: %d %s' % (code, text))
code, text, _ = t.send(m.port, t.message('r3', 'SOFTME'))
t.check(code == 451 and not be.find('body of r3'), 'rspamd soft reject applied: %d %s' % (code, text))
code, text, _ = t.send(m.port, t.message('r4', 'GARBAGEME'))
t.check(code == 451 and 'Content filter unavailable' in text, 'invalid JSON -> on_error tempfail: %d %s' % (code, text))
t.stop(rs)
code, text, _ = t.send(m.port, t.message('r5'))
t.check(code == 451 and not be.find('body of r5'), 'rspamd down -> on_error tempfail: %d' % code)
t.finish()
