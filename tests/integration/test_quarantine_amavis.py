#!/usr/bin/env python3
"""The quarantine an amavisd-new site expects (docs/plugins.md "Coming from amavisd-new"),
against the rules engine, a real clamd and a recording backend; the quarantine maildir's
files are read back.

- rules.actions.quarantine (amavis's kill_level with $spam_quarantine_to): a message scoring
  from it (below reject) gets 250 only once it is in the quarantine maildir, and never
  reaches the backend; below it the tempfail threshold acts (451), above reject 550; ham and
  tagged spam are delivered. With the quarantine maildir unwritable such a message gets 451
  (nothing is lost); without a quarantine backend `-t` and the start-up log warn of the
  threshold and such a message gets 451.
- every quarantined file starts with its envelope under amavis's names (what review and
  release tools read): Return-Path, X-Envelope-From, X-Envelope-To and X-Envelope-To-Blocked
  with every recipient, X-Quarantine-ID with the queue id the client was told; for the
  rules' quarantine and clamd's `action: quarantine` alike, the null sender as <>.
- clamd's options.x_virus_scanned: amavis's `X-Virus-Scanned: amavisd-new at DOMAIN` on
  mail clamd found clean (the sender's own removed); none by default.
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('clamd')

RULES = r'''header QT_GREY Subject =~ /\bqgrey/
score QT_GREY 5.5
header QT_TAG Subject =~ /\bqtag/
score QT_TAG 4.5
header QT_MID Subject =~ /\bqmid/
score QT_MID 7
header QT_HIGH Subject =~ /\bqhigh/
score QT_HIGH 12
'''
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}
RCPTS = ['b@example.test', 'c@example.test']


header = mt.header_values


def held(qdir, tag):
    out = []
    for f in glob.glob(qdir + '/new/*'):
        with open(f, 'rb') as fh:
            d = fh.read()
        if ('<%s@' % tag).encode() in d:
            out.append(d)
    return out


def queue_id(text):
    m = re.search(r'queued as (\S+)', text or '')
    return m.group(1) if m else None


def check_envelope(data, sender, rcpts, qid, what):
    first = data.split(b'\r\n', 1)[0]
    mt.check(first == ('Return-Path: <%s>' % sender).encode(),
             '%s: the file starts with Return-Path: <%s> (%r)' % (what, sender, first))
    mt.check(header(data, 'X-Envelope-From') == ['<%s>' % sender],
             '%s: X-Envelope-From (%s)' % (what, header(data, 'X-Envelope-From')))
    want = ', '.join('<%s>' % r for r in rcpts)
    for name in ('X-Envelope-To', 'X-Envelope-To-Blocked'):
        mt.check(header(data, name) == [want], '%s: %s lists every recipient: %s' % (
            what, name, header(data, name)))
    mt.check(qid is not None and header(data, 'X-Quarantine-ID') == ['<%s>' % qid],
             '%s: X-Quarantine-ID is the queue id of the 250 (%s, %s)' % (
                 what, qid, header(data, 'X-Quarantine-ID')))


cl = mt.clamd()
be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'quarantine.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
rules = {'files': [rules_file], 'actions': ACTIONS}


def case_rules():
    # ---- -t: the threshold without a quarantine backend would be 451 forever
    st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=rules))
    mt.check(st == 0 and 'warning: rules.actions.quarantine 6.00 without a quarantine backend' in out,
             '-t warns of actions.quarantine without a quarantine backend: %s' % out.strip()[-300:])
    st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=rules,
                                        quarantine='maildir:' + qdir))
    mt.check(st == 0 and 'actions.quarantine' not in out,
             'and not with one: %s' % out.strip()[-300:])

    # ---- the thresholds, in order
    mx = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', rules=rules,
                             quarantine='maildir:' + qdir), 'mx-quar')
    res = {}
    for tag in ('qham1', 'qgrey1', 'qtag1', 'qmid1', 'qhigh1'):
        res[tag] = mt.send_mail(mx.port, 's@example.org', RCPTS, mt.message(tag), timeout=30)
    code, text = res['qham1']
    mt.check(code == 250 and len(be.by_tag('qham1')) == 1 and not held(qdir, 'qham1'),
             'ham delivered (%s %s)' % (code, text))
    code, text = res['qtag1']
    m = be.by_tag('qtag1')
    mt.check(code == 250 and len(m) == 1 and header(m[0]['data'], 'X-Spam-Flag') == ['YES']
             and not held(qdir, 'qtag1'),
             'above add_header, below tempfail: delivered tagged (%s %s)' % (code, text))
    code, text = res['qgrey1']
    mt.check(code == 451 and not be.by_tag('qgrey1') and not held(qdir, 'qgrey1'),
             'above tempfail, below quarantine: 451 (%s %s)' % (code, text))
    code, text = res['qhigh1']
    mt.check(code == 550 and not be.by_tag('qhigh1') and not held(qdir, 'qhigh1'),
             'above reject: 550, neither relayed nor held (%s %s)' % (code, text))
    code, text = res['qmid1']
    h = held(qdir, 'qmid1')
    mt.check(code == 250 and not be.by_tag('qmid1') and len(h) == 1,
             'above quarantine, below reject: 250, in the quarantine maildir only (%s %s, %d held)'
             % (code, text, len(h)))
    if h:
        q = header(h[0], 'X-Mxgate-Quarantine')
        mt.check(len(q) == 1 and 'score=7' in q[0], 'X-Mxgate-Quarantine gives the score: %s' % q)
        check_envelope(h[0], 's@example.org', RCPTS, queue_id(text), 'rules quarantine')
    mt.check(mx.wait_log(r'event=rules score=7\.0 required=4\.0 action=quarantine ', timeout=10)
             is not None, 'the rules line says action=quarantine')
    code, text = mt.send_mail(mx.port, '', RCPTS[:1], mt.message('qmid2'), timeout=30)
    h = held(qdir, 'qmid2')
    mt.check(code == 250 and len(h) == 1, 'the null sender\'s spam held too (%s %s)' % (code, text))
    if h:
        check_envelope(h[0], '', RCPTS[:1], queue_id(text), 'null sender')
    mx.stop()

    # ---- nothing is lost: a quarantine that cannot be written is a 451, never a 250
    blocker = os.path.join(mt.TMP, 'not-a-dir')
    with open(blocker, 'w') as f:
        f.write('a file where the maildir would be\n')
    mb = mt.Mxgate(mt.config([be.url], rules=rules, quarantine='maildir:' + blocker + '/q'),
                   'mx-quar-broken')
    code, text = mt.send_mail(mb.port, 's@example.org', RCPTS, mt.message('qmid3'), timeout=30)
    mt.check(code == 451 and not be.by_tag('qmid3'),
             'quarantine write failed: 451, not relayed (%s %s)' % (code, text))
    mb.stop()

    # ---- no quarantine backend at all: the start-up log warns, such a message gets 451
    mn = mt.Mxgate(mt.config([be.url], rules=rules), 'mx-quar-none')
    mt.check(mn.wait_log(r'event=rules_quarantine_unavailable rules=none '
                         r'reason="actions\.quarantine without a quarantine backend: 451"',
                         timeout=30) is not None, 'the start-up log warns of the threshold')
    code, text = mt.send_mail(mn.port, 's@example.org', RCPTS, mt.message('qmid4'), timeout=30)
    mt.check(code == 451 and not be.by_tag('qmid4'),
             'no quarantine backend: 451, not relayed (%s %s)' % (code, text))
    mn.stop()


def case_clamd():
    # ---- clamd's action quarantine: the same envelope
    mc = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', quarantine='maildir:' + qdir,
                             plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port,
                                       'timeout': '30s', 'options': {'action': 'quarantine'}}]),
                   'mx-quar-clamd')
    code, text = mt.send_mail(mc.port, 'v@example.org', RCPTS, mt.eicar_message('qvir1'), timeout=30)
    h = held(qdir, 'qvir1')
    mt.check(code == 250 and not be.by_tag('qvir1') and len(h) == 1,
             'clamd quarantine: 250, held only (%s %s)' % (code, text))
    if h:
        check_envelope(h[0], 'v@example.org', RCPTS, queue_id(text), 'clamd quarantine')
        mt.check(b'MxGate.Test.EICAR' in h[0], 'the virus named in the held file')
    code, text = mt.send_mail(mc.port, 'v@example.org', RCPTS[:1], mt.message('qclean0'), timeout=30)
    m = be.by_tag('qclean0')
    mt.check(code == 250 and len(m) == 1 and not header(m[0]['data'], 'X-Virus-Scanned'),
             'no X-Virus-Scanned by default (%s %s)' % (code, text))
    mc.stop()


def case_scanned():
    # ---- clamd's x_virus_scanned: amavis's X-Virus-Scanned on clean mail, the sender's removed
    mv = mt.Mxgate(mt.config([be.url], plugins=[{
        'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'timeout': '30s',
        'options': {'x_virus_scanned': 'amavisd-new at example.test'}}]), 'mx-quar-scanned')
    code, text = mt.send_mail(mv.port, 'v@example.org', RCPTS[:1], mt.message(
        'qclean1', headers=('X-Virus-Scanned: forged by the sender',)), timeout=30)
    m = be.by_tag('qclean1')
    mt.check(code == 250 and len(m) == 1 and header(m[0]['data'], 'X-Virus-Scanned') ==
             ['amavisd-new at example.test'],
             'clean mail: X-Virus-Scanned: amavisd-new at example.test, the sender\'s gone (%s %s %s)'
             % (code, text, m and header(m[0]['data'], 'X-Virus-Scanned')))
    code, text = mt.send_mail(mv.port, 'v@example.org', RCPTS[:1], mt.eicar_message('qvir2'), timeout=30)
    mt.check(code == 554 and not be.by_tag('qvir2'), 'a virus still refused (%s %s)' % (code, text))
    mv.stop()


# MX_POOL_ONLY=rules,clamd,scanned runs only those
for name, fn in (('rules', case_rules), ('clamd', case_clamd), ('scanned', case_scanned)):
    if mt.case_wanted(name):
        fn()
mt.stop_proc(cl)
mt.finish()
