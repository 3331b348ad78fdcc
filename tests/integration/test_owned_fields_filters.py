#!/usr/bin/env python3
"""test_owned_fields_filters — a sender's copies of the fields mxgate owns (proxy/ownfields.h:
X-Mxgate-Filter-Error, X-Mxgate-Quarantine, X-Mxgate-Greylist) are not shown to the filters
either, only the delivery left them out before (session 34): a milter keying on
X-Mxgate-Greylist, or a rule reading X-Mxgate-Quarantine, was fooled by a forged one.

- a real milter (tests/peers/mx_milter_ops.py, python3-milter), header by header: its
  X-Seen report lists the fields it was shown; the forged ones (any case, a blank before the
  colon, folded) are not among them, X-Mxgate-Other (no field of ours) is;
- the same milter second in the chain, after one that added a header (the plugins' edited
  view of the message): the forged fields are not in it either;
- the rules engine: a header rule on each owned field does not hit (X-Spam-Status's tests=),
  a rule on X-Mxgate-Other does;
- the milter's indexes count the fields it was shown: `chg,X-Multi,2,...` changes the second
  X-Multi of the message as delivered, whatever forged fields sit between; `ins,9,...` goes
  after the 8th field it was shown (Postfix's index: 1 is just below mxgate's Received),
  not among the forged fields it never saw.

Peers: the scripted backend (mxtest.Backend), python3-milter, the rules engine."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.need_python_milter()
FORGED = ('X-Mxgate-Filter-Error: clamd; stage=eom; error=forged',
          'x-mxgate-quarantine: forged reason',
          'X-MXGATE-GREYLIST : passed digest=0000000000000000 store=forged',
          'X-Mxgate-Filter-Error: milter;\r\n\tstage=mail;\r\n error=folded-forgery',
          'X-Mxgate-Other: kept')

rules_file = os.path.join(mt.TMP, 'own.cf')
with open(rules_file, 'w') as f:
    f.write('header OWN_FE X-Mxgate-Filter-Error =~ /./\nscore OWN_FE 0.1\n'
            'header OWN_Q X-Mxgate-Quarantine =~ /./\nscore OWN_Q 0.1\n'
            'header OWN_GL X-Mxgate-Greylist =~ /./\nscore OWN_GL 0.1\n'
            'header OWN_OTHER X-Mxgate-Other =~ /kept/\nscore OWN_OTHER 0.1\n')

be = mt.Backend()
m1, m2 = mt.milter_ops('one'), mt.milter_ops('two')
cfg = mt.config([be.url], hostname='mx.example.test', workers=1, plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '20s'},
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m2.port, 'on_error': 'tempfail', 'timeout': '20s'}],
    rules={'files': [rules_file], 'headers': True, 'actions': {'add_header': 50, 'reject': 100}})
mx = mt.Mxgate(cfg, 'mx-filters')


def send(tag, ops, extra=()):
    hdrs = ['X-Ops-%s: %s' % (k, v) for k, v in ops.items()] + list(FORGED) + list(extra)
    return mt.send_mail(mx.port, 'a@example.org', ['u@example.test'], mt.message(tag, headers=hdrs), timeout=60)


def header(data, name):
    head = re.sub(r'\r\n[ \t]', ' ', data.split(b'\r\n\r\n', 1)[0].decode('latin-1'))
    return [ln.split(':', 1)[1].strip() for ln in head.split('\r\n') if ln.lower().startswith(name.lower() + ':')]


code, text = send('seen', {'one': 'add,X-Added,by-one', 'two': ''})
got = be.by_tag('seen')
mt.check(code == 250 and len(got) == 1, 'delivered (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    for who in ('one', 'two'):
        seen = header(d, 'X-Seen-' + who)
        hdrs = seen[0].split('hdrs=', 1)[1].split(',') if seen and 'hdrs=' in seen[0] else []
        owned = [h for h in hdrs if h.strip().lower() in ('x-mxgate-filter-error', 'x-mxgate-quarantine',
                                                          'x-mxgate-greylist')]
        mt.check(hdrs and owned == [], 'milter %s is not shown the forged X-Mxgate-* fields (it saw %s)' % (who, hdrs))
        mt.check('X-Mxgate-Other' in hdrs, 'milter %s is shown X-Mxgate-Other, no field of ours (%s)' % (who, hdrs))
    mt.check('X-Added' in (header(d, 'X-Seen-two')[0] if header(d, 'X-Seen-two') else ''),
             'the second milter sees the first one\'s header (the plugins\' edited view)')
    status = ' '.join(header(d, 'X-Spam-Status'))
    mt.check('OWN_OTHER' in status, 'rules: the rule on X-Mxgate-Other hits (%s)' % status)
    mt.check(not re.search(r'OWN_(FE|Q|GL)\b', status),
             'rules: no rule on a forged X-Mxgate-* field hits (%s)' % status)

# a chgheader index counts the fields the milter was shown: the forged ones sit between the two
# X-Multi and are no field of the message for it
code, text = send('chg', {'one': 'chg,X-Multi,2,changed ; ins,9,X-Here,h ; noseen', 'two': 'noseen'},
                  extra=('X-Multi: first', 'X-Mxgate-Quarantine: between', 'X-Multi: second'))
got = be.by_tag('chg')
mt.check(code == 250 and len(got) == 1, 'chg: delivered (%s %s)' % (code, text))
if got:
    mt.check(header(got[0]['data'], 'X-Multi') == ['first', 'changed'],
             'chg: the second X-Multi changed (%s)' % header(got[0]['data'], 'X-Multi'))
    mt.check(header(got[0]['data'], 'X-Mxgate-Quarantine') == [], 'chg: the forged field not delivered')
    names = [ln.split(':', 1)[0] for ln in got[0]['data'].split(b'\r\n\r\n', 1)[0].decode('latin-1').split('\r\n')
             if ln and ln[0] not in ' \t']
    i = names.index('X-Here') if 'X-Here' in names else -1
    mt.check(i > 0 and names[i - 1:i + 2] == ['X-Mxgate-Other', 'X-Here', 'X-Multi'],
             'insheader 9: after the 8 fields the milter was shown (the forged ones not counted): %s' % names)
mx.stop()
mt.finish()
