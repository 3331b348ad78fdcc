#!/usr/bin/env python3
"""An operator coming from Amavis configures spamd and the thresholds (rules.actions) and no
rule files of mxgate's own. The rules engine, which sums SPAMD_SCORE / RSPAMD_SCORE against
those thresholds and adds the X-Spam-* headers, was off without rules.files: GTUBE, scored
1000 by spamd, was relayed with 250 and no X-Spam-* (-t only warned). A scoring plugin now
turns the engine on with an empty rule set: GTUBE through real spamd is refused at
rules.actions.reject, a message over add_header only gets X-Spam-Status / X-Spam-Score, and
-t no longer warns (rspamd, whose reply's action and headers decide, leaves it off)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need('spamd')
be = t.Backend()
plug = [{'name': 'spamd', 'address': '127.0.0.1:783', 'on_error': 'accept'},
        {'name': 'rspamd', 'address': '127.0.0.1:11333', 'on_error': 'accept'}]
code, out = t.config_check(t.config([be.url], listen=[{'address': '127.0.0.1:2525'}], plugins=plug,
                                    rules={'actions': {'add_header': 5, 'reject': 15, 'quarantine': 10}}),
                           name='norules')
t.check(code == 0 and 'decides nothing' not in out and 'rules.files' not in out and
        'rules: 0 files, 0 rules compiled' in out,
        '-t without rules.files: the spamd score is judged, no warning (rc %s):\n%s' % (code, out))
t.check('warning: rules.actions.quarantine 10.00 without a quarantine backend' in out,
        '-t checks the thresholds that now judge their scores:\n%s' % out)
code, out = t.config_check(t.config([be.url], listen=[{'address': '127.0.0.1:2525'}], plugins=plug[1:],
                                    rules={'actions': {'add_header': 5, 'reject': 15}}),
                           name='rspamdonly')
t.check(code == 0 and 'plugins[0] (rspamd): rules.actions do not judge its score' in out,
        '-t: rspamd alone leaves the engine off and says so (rc %s):\n%s' % (code, out))

sa = t.spamd()
spamd_plug = [{'name': 'spamd', 'address': '127.0.0.1:%d' % sa.port, 'on_error': 'tempfail',
               'timeout': '%ds' % t.slack(90)}]

# reject at 15: GTUBE (1000 at spamd) is refused on spamd's score alone
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=spamd_plug,
                       rules={'actions': {'add_header': 5, 'reject': 15}}), name='reject')
t.check(mx.wait_log(r'event=rules_loaded files=0 compiled=0 .*errors=0') is not None,
        'the empty rule set loads and says so:\n%s' % mx.log()[-2000:])
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('gt', t.GTUBE + '\r\n'),
                timeout=t.slack(120))
t.check(r.code == 550, 'no rules.files: GTUBE is refused on spamd\'s score: %s %s' % (r.code, r.text))
t.check(not be.by_tag('gt'), 'the refused GTUBE reached no backend')
mx.stop()

# add_header only: GTUBE is relayed with X-Spam-* (INTERFACE.md: on every scored message)
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=spamd_plug,
                       rules={'actions': {'add_header': 5}}), name='tag')
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('gt2', t.GTUBE + '\r\n'),
                timeout=t.slack(120))
t.check(r.code == 250, 'add_header only: GTUBE is relayed: %s %s' % (r.code, r.text))
got = be.by_tag('gt2')
data = got[0]['data'] if got else b''
t.check(re.search(rb'^X-Spam-Status: Yes, score=10\d\d', data, re.M) is not None and
        re.search(rb'^X-Spam-Score: 10\d\d', data, re.M) is not None and
        b'SPAMD_SCORE' in data,
        'the relayed GTUBE carries X-Spam-Status: Yes and its score:\n%s' % data[:1500].decode(errors='replace'))
mx.stop()
t.finish()
