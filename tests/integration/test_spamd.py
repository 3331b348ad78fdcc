#!/usr/bin/env python3
"""spamd plugin against a real spamd with Debian's shipped rules: GTUBE scores ~1000 and
its rule names come back as symbols (SPAMD_SCORE carries the total; X-Spam-Status lists
GTUBE), a clean message scores low, spamd down with on_error accept lets mail through
unscored, with no X-Spam-* verdict claiming it was scanned."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('spamd')


def send(port, data):
    return mt.send_mail(port, 'a@example.org', ['b@example.test'], data, timeout=60)


def scores():
    return [float(x) for x in re.findall(r'event=spamd_result plugin=\S+ score=([-0-9.]+)', m.log())]


sp = mt.spamd()
be = mt.Backend()
rules = os.path.join(mt.TMP, 'none.rules')   # the rules engine with no rules of its own
with open(rules, 'w') as f:
    f.write('# only the plugins score\n')
m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test',
                        plugins=[{'name': 'spamd', 'address': '127.0.0.1:%d' % sp.port,
                                  'on_error': 'accept', 'timeout': '20s'}],
                        rules={'files': [rules], 'actions': {'add_header': 5, 'tempfail': 2000, 'reject': 3000}}))
code, text = send(m.port, mt.message('gtube1', mt.GTUBE + '\r\n'))
mt.check(code == 250, 'GTUBE message (score 1000 < tempfail 2000) delivered with headers: %s %s' % (code, text))
sc = scores()
mt.check(bool(sc) and sc[0] >= 500, 'spamd scored GTUBE: %s' % sc)
got = be.by_tag('gtube1')
st = re.search(rb'X-Spam-Status:(.*?)\r\n(?!\s)', got[0]['data'], re.S) if got else None
# GTUBE's 1000 and the rules on what our Received header shows (its date against the
# message's Date, ALL_TRUSTED for a loopback client)
mt.check(st is not None and b'GTUBE' in st.group(1) and b'SPAMD_SCORE' in st.group(1)
         and re.search(rb'score=10\d\d\.\d', st.group(1)) is not None,
         'X-Spam-Status carries the score and lists GTUBE, SPAMD_SCORE: %s' % (st.group(1) if st else None))
code, text = send(m.port, mt.message('clean1', 'Hello, lunch tomorrow at noon?\r\n'))
sc = scores()
mt.check(code == 250 and len(sc) == 2 and sc[1] < 5, 'clean message scored low and delivered: %s %s' % (code, sc))
mt.stop_proc(sp)
code, text = send(m.port, mt.message('down1'))
mt.check(code == 250 and be.by_tag('down1'), 'spamd down, on_error accept -> delivered: %s' % code)
# unscanned mail must not look like clean ham to a mail client or a sieve rule: no X-Spam-*
# verdict (as spamc passes the message unchanged when spamd is down), and a sender's forged
# "X-Spam-Status: No" or "X-Spam-Flag: NO" is still removed
code, text = send(m.port, mt.message('down2', headers=('X-Spam-Status: No, score=-9.0',
                                                       'X-Spam-Flag: NO')))
got = be.by_tag('down1') + be.by_tag('down2')
heads = [re.split(rb'\r\n\r\n', g['data'], 1)[0] for g in got]
mt.check(code == 250 and len(heads) == 2 and
         not any(re.search(rb'^X-Spam-(Status|Score|Flag|Level|Symbols):', h, re.M | re.I)
                 for h in heads),
         'spamd down: no X-Spam-* verdict on the unscanned messages: %s' % heads)
mt.check(m.count_log(r'event=rules .*scan=incomplete missing=spamd') == 2,
         'the rules line says the score lacks spamd\'s: %s' % [
             l for l in m.log().splitlines() if 'event=rules ' in l][-2:])
m.stop()
mt.finish()
