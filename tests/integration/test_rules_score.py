#!/usr/bin/env python3
"""test_rules_score — X-Spam-Score (mxgate's own field) says the score X-Spam-Status shows,
SpamAssassin's: rounded to 3 decimals, then printed with one (Perl's "%2.1f", -2.25 is -2.2),
and below required on a message X-Spam-Status calls No (4.958 is 4.9, not 5.0), so that a
mailbox filter on `X-Spam-Score >= 5` files as one on `X-Spam-Status: Yes` does. Peers: the
recording Backend."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
path = os.path.join(mt.TMP, 'score.cf')
with open(path, 'w') as f:
    f.write('header LOC_NEAR X-Test =~ /near/\nscore LOC_NEAR 4.96\n'
            'header LOC_TINY X-Test =~ /near/\nscore LOC_TINY -0.002\n'
            'header LOC_HALF X-Test =~ /half/\nscore LOC_HALF -2.25\n'
            'header LOC_OVER X-Test =~ /over/\nscore LOC_OVER 4.9996\nreport_safe 0\n')
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], rules={'files': [path], 'actions': {'add_header': 5}}))
mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, 'rules loaded')
for word, status, score in (('near', 'No, score=4.9', '4.9'), ('half', 'No, score=-2.2', '-2.2'),
                            ('over', 'Yes, score=5.0', '5.0')):
    n = len(be.messages)
    data = ('From: a@example.org\r\nTo: b@example.test\r\nSubject: s\r\nX-Test: %s\r\n\r\n'
            'hello\r\n' % word).encode()
    code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data)
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(10))
    mt.check(ok, '%s: delivered (%s %s)' % (word, code, text))
    if not ok:
        continue
    head = be.messages[-1]['data'].split(b'\r\n\r\n', 1)[0].decode()
    st = re.search(r'^X-Spam-Status: (\w+, score=\S+)', head, re.M)
    sc = re.search(r'^X-Spam-Score: (\S+)', head, re.M)
    mt.check(st is not None and st.group(1) == status, '%s: X-Spam-Status %s (%s)' % (
        word, status, st and st.group(1)))
    mt.check(sc is not None and sc.group(1) == score, '%s: X-Spam-Score %s, as X-Spam-Status '
             'shows it (%s)' % (word, score, sc and sc.group(1)))
mx.stop()
mt.finish()
