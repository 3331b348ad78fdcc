#!/usr/bin/env python3
"""An operator coming from Amavis configures spamd and the thresholds (rules.actions) and no
rule files of mxgate's own: the rules engine, which alone sums SPAMD_SCORE against those
thresholds and adds the X-Spam-* headers, is off without rules.files, so GTUBE (1000 points
at spamd) was relayed silently and `mxgate -t` said nothing. -t now warns, naming the entry;
with a rules file (an empty one will do) spamd's score refuses GTUBE."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
be = t.Backend()
plug = [{'name': 'spamd', 'address': '127.0.0.1:783', 'on_error': 'accept'},
        {'name': 'rspamd', 'address': '127.0.0.1:11333', 'on_error': 'accept'}]
code, out = t.config_check(t.config([be.url], listen=[{'address': '127.0.0.1:2525'}], plugins=plug, rules={'actions': {'add_header': 5, 'reject': 15}}),
                           name='norules')
t.check(code == 0 and 'warning: plugins[0] (spamd): its score decides nothing' in out and
        'warning: plugins[1] (rspamd): its score decides nothing' in out,
        '-t without rules.files warns for spamd and rspamd (rc %s):\n%s' % (code, out))
empty = os.path.join(t.TMP, 'empty.rules')
open(empty, 'w').close()
code, out = t.config_check(t.config([be.url], listen=[{'address': '127.0.0.1:2525'}], plugins=plug, rules={'files': [empty],
                                                                   'actions': {'add_header': 5, 'reject': 15}}),
                           name='withrules')
t.check(code == 0 and 'decides nothing' not in out, '-t with a rules file (empty): no warning (rc %s):\n%s' % (code, out))

if t.tool('spamd') is not None:
    sa = t.spamd()
    cfg = t.config([be.url], hostname='mx.example.test',
                   plugins=[{'name': 'spamd', 'address': '127.0.0.1:%d' % sa.port, 'on_error': 'accept',
                             'timeout': '%ds' % t.slack(90)}],
                   rules={'files': [empty], 'actions': {'add_header': 5, 'reject': 15}})
    mx = t.Mxgate(cfg)
    r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('gt', t.GTUBE + '\r\n'), timeout=t.slack(120))
    t.check(r.code == 550, 'with an empty rules file GTUBE is refused on spamd\'s score: %s %s' % (r.code, r.text))
    mx.stop()
t.finish()
