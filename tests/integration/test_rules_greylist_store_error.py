#!/usr/bin/env python3
"""test_rules_greylist_store_error — `rules.actions.greylist` when the greylist store cannot
decide: rules.greylist_on_error says what the message gets, deliver by default (tagged
`X-Mxgate-Greylist: error ...`, as greylisting at RCPT lets a recipient through on its own
failure) or tempfail (451 4.7.1); logged event=rules_greylist result=error, counted in
mxgate_greylist_messages_total{result="error"}.

The LMDB map is damaged under the running daemon once a first sight is stored (every read
then fails, mxtest.lmdb_damage); another message (another digest: not in the worker's queue)
must then be read from the map.

Peers: the scripted backend (mxtest.Backend), the rules engine with a header rule worth 6."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
rules_path = os.path.join(mt.TMP, 'grey.cf')
with open(rules_path, 'w') as f:
    f.write('header LOC_GREY X-Test-Spam =~ /^grey/\nscore LOC_GREY 6\n')
be = mt.Backend()
GL = os.path.join(mt.TMP, 'gl')
METRICS = mt.hold_port().port


def cfg(on_error):
    return mt.config([be.url], workers=1, metrics={'listen': '127.0.0.1:%d' % METRICS},
                     greylist={'store': 'lmdb:' + GL, 'delay': '1h', 'retry_window': '2h'},
                     rules={'files': [rules_path], 'greylist_on_error': on_error,
                            'actions': {'add_header': 5, 'greylist': 4, 'tempfail': 10}})


def send(mx, tag, body):
    return mt.send_mail(mx.port, 'a@example.org', ['u@example.test'],
                        mt.message(tag, body=body, headers=('X-Test-Spam: grey',)), timeout=60)


mx = mt.Mxgate(cfg('deliver'), 'node')
code, text = send(mx, 'first', 'First.\r\n')
mt.check(code == 451 and 'greylisted' in text, 'a first sight is greylisted (%s %s)' % (code, text))
mt.lmdb_damage(GL, 'a first sight')

code, text = send(mx, 'second', 'Second.\r\n')
got = be.by_tag('second')
mt.check(code == 250 and len(got) == 1,
         'the map unreadable: greylist_on_error deliver (the default) delivers (%s %s)' % (code, text))
hdr = mt.header_values(got[0]['data'], 'X-Mxgate-Greylist') if got else []
mt.check(len(hdr) == 1 and hdr[0].startswith('error digest=') and hdr[0].endswith(' store=lmdb'),
         'tagged X-Mxgate-Greylist: error digest=... store=lmdb (%s)' % hdr)
mt.check(mx.wait_log(r'event=rules_greylist result=error digest=[0-9a-f]{16} store=lmdb action=deliver')
         is not None, 'logged event=rules_greylist result=error ... action=deliver\n%s' % mx.tail())
mt.check(mx.metric('greylist_messages_total{result="error"}') == 1,
         'counted: mxgate_greylist_messages_total{result="error"} 1 (%s)'
         % mx.metric('greylist_messages_total{result="error"}'))

n = mx.count_log(r'event=reloaded')
mx.reload(cfg('tempfail'))
mt.check(mt.wait_for(lambda: mx.count_log(r'event=reloaded') > n, mt.slack(20)), 'reloaded')
code, text = send(mx, 'third', 'Third.\r\n')
mt.check(code == 451 and '4.7.1 greylisted' in text and not be.by_tag('third'),
         'greylist_on_error tempfail: 451 4.7.1, nothing delivered (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=rules_greylist result=error digest=[0-9a-f]{16} store=\w+ action=tempfail')
         is not None, 'logged ... action=tempfail')
mx.stop()
mt.finish()
