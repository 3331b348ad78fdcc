#!/usr/bin/env python3
"""test_rules_sa — the rules engine in the real daemon with Debian's stock SpamAssassin rules,
compared with spamd on the same messages (tests/data/sa/*.eml: GTUBE, ham, spam).

Checks: GTUBE is rejected (550) and never reaches the backend; ham and spam are delivered
with X-Spam-Score / X-Spam-Status in SpamAssassin's form; every rule mxgate hits is one
spamd hits too (mxgate runs SpamAssassin's eval tests natively; network tests are off in
both); mxgate's Yes/No equals spamd's;
`mode: log` only adds headers and logs action=reject(dry-run); a SIGHUP reload picks up
an edited rule file. Peers: the recording Backend, spamd/spamc."""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

STOCK = '/usr/share/spamassassin'
if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    mt.skip('stock SpamAssassin rules not installed')
mt.need()

DATA = os.path.join(mt.SRC, 'tests', 'data', 'sa')
MSGS = sorted(glob.glob(os.path.join(DATA, '*.eml')))
# mxgate runs SpamAssassin's eval tests natively now: the verdicts agree.
VERDICT_MAY_DIFFER = set()
# score >= 15 (actions.reject): 550, never delivered
REJECTED = {'sa-sample-spam.eml', 'spam-advance-fee.eml', 'spam-pharmacy.eml'}


def status_of(raw):
    """(yes, score, [tests]) from the X-Spam-Status header of a message (bytes)."""
    text = raw.decode('latin-1')
    head = re.split(r'\r?\n\r?\n', text, 1)[0]
    # SA folds after a comma (",\n\t" was ",") or a space (dropped: "\n\t" was " ")
    head = re.sub(r'[ \t]*\r?\n[ \t]+', ' ', re.sub(r',\r?\n[ \t]+', ',', head))
    m = re.search(r'^X-Spam-Status: (Yes|No), score=(-?[0-9.]+) required=([0-9.]+) '
                  r'tests=(\S+)', head, re.M)
    if not m:
        return None
    tests = [] if m.group(4) == 'none' else m.group(4).split(',')
    return m.group(1) == 'Yes', float(m.group(2)), tests


def header(raw, name):
    text = raw.decode('latin-1')
    head = re.split(r'\r?\n\r?\n', text, 1)[0]
    m = re.search(r'^%s: (.*)$' % re.escape(name), head, re.M | re.I)
    return m.group(1).strip() if m else None


# ---- spamd with the same rules, network tests and Bayes off
mt.need('spamd', 'spamc')
spamd_port = mt.spamd('bayes_auto_learn 0\nreport_safe 0\n'
                      'add_header all Status _YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_\n').port

# ---- mxgate with the stock rules
be = mt.Backend()
# spamd gets the messages as they are (no mxgate Received header): the engine must not
# count this test's loopback client as a relay either (rules.client_relay)
rules = {'files': [STOCK + '/*.cf'], 'actions': {'add_header': 5, 'reject': 15},
         'client_relay': False}
mx = mt.Mxgate(mt.config([be.url], rules=rules))
m = mx.wait_log(r'event=rules_loaded files=(\d+) compiled=(\d+) skipped=(\d+)', timeout=60)
mt.check(m is not None and int(m.group(2)) > 1000,
         'stock rules loaded: %s' % (m.group(0) if m else mx.tail(5)))

ours = {}
fields = {}     # name -> (X-Spam-Flag, X-Spam-Level) as mxgate wrote them
for path in MSGS:
    name = os.path.basename(path)
    data = open(path, 'rb').read()
    start = len(mx.log())
    before = len(be.messages)
    code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], data)
    line = mx.wait_log(r'event=rules score=(-?[0-9.]+) required=[0-9.]+ action=(\S+) '
                       r'tests=(\S+)', timeout=10, start=start)
    logged = line.group(3).split(',') if line and line.group(3) != 'none' else []
    if name in REJECTED:
        mt.check(code == 550, '%s: rejected with 550, got %s %s' % (name, code, text))
        mt.check(len(be.messages) == before, '%s: not delivered' % name)
        ours[name] = (True, float(line.group(1)) if line else 0, logged)
        continue
    mt.check(code == 250, '%s: delivered (%s %s)' % (name, code, text))
    if len(be.messages) <= before:
        continue
    got = be.messages[-1]['data']
    st = status_of(got)
    mt.check(st is not None, '%s: X-Spam-Status in SpamAssassin form' % name)
    if st is None:
        continue
    score = header(got, 'X-Spam-Score')
    mt.check(score is not None and abs(float(score) - st[1]) < 1e-9,
             '%s: X-Spam-Score %s matches the status score %.1f' % (name, score, st[1]))
    mt.check(sorted(st[2]) == st[2], '%s: tests sorted as SA does' % name)
    mt.check(set(st[2]) == set(logged), '%s: header tests equal the logged ones' % name)
    flag, level = header(got, 'X-Spam-Flag'), header(got, 'X-Spam-Level')
    mt.check(flag == ('YES' if st[0] else None) and level == '*' * max(0, min(50, int(st[1]))),
             '%s: X-Spam-Flag %r and X-Spam-Level %r as SpamAssassin writes them for %s, %.1f' % (
                 name, flag, level, 'Yes' if st[0] else 'No', st[1]))
    fields[name] = (flag, level)
    ours[name] = st

# ---- the same messages through spamd
if spamd_port:
    ready = mt.wait_for(lambda: subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(spamd_port),
                                               '-K'], capture_output=True).returncode == 0,
                        timeout=60, step=0.5)
    mt.check(bool(ready), 'spamd answers')
    for path in MSGS:
        name = os.path.basename(path)
        if not ready or name not in ours:
            continue
        r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(spamd_port)],
                           stdin=open(path, 'rb'), capture_output=True, timeout=120)
        sa = status_of(r.stdout)
        if sa is None:
            mt.check(False, '%s: spamd gave no X-Spam-Status' % name)
            continue
        mine = ours[name]
        if name in fields:   # spamd writes both fields the same way for its own verdict and score
            mt.check(header(r.stdout, 'X-Spam-Flag') == ('YES' if sa[0] else None) and
                     header(r.stdout, 'X-Spam-Level') == '*' * max(0, min(50, int(sa[1]))),
                     '%s: spamd\'s X-Spam-Flag %r / X-Spam-Level %r follow the same rule as ours' % (
                         name, header(r.stdout, 'X-Spam-Flag'), header(r.stdout, 'X-Spam-Level')))
        common = sorted(set(mine[2]) & set(sa[2]))
        extra = sorted(set(mine[2]) - set(sa[2]))
        mt.say('%-22s mxgate %s %6.1f | spamd %s %6.1f | common %d: %s | spamd only: %s' % (
            name, 'Yes' if mine[0] else 'No ', mine[1], 'Yes' if sa[0] else 'No ', sa[1],
            len(common), ','.join(common) or '-', ','.join(sorted(set(sa[2]) - set(mine[2]))) or '-'))
        mt.check(not extra, '%s: every rule mxgate hits spamd hits too (extra: %s)' % (
            name, ','.join(extra) or 'none'))
        if name not in VERDICT_MAY_DIFFER:
            mt.check(mine[0] == sa[0], '%s: same verdict as spamd (%s)' % (
                name, 'Yes' if sa[0] else 'No'))
        if sa[0] and name not in VERDICT_MAY_DIFFER:
            mt.check(len(common) >= 2 or 'GTUBE' in common,
                     '%s: spam hits rules in common with spamd' % name)
mx.stop()

# ---- dry run: mode log with the default rules and an edited rule file reloaded
rdir = os.path.join(mt.TMP, 'rules')
os.makedirs(rdir)
shutil.copy(os.path.join(mt.SRC, 'rules', 'default.rules'), rdir)
rules = {'files': [rdir + '/*.rules'], 'actions': {'add_header': 5, 'tempfail': 10, 'reject': 15},
         'mode': 'log'}
be2 = mt.Backend()
mx = mt.Mxgate(mt.config([be2.url], rules=rules), name='mxgate-log')
gtube = open(os.path.join(mt.SRC, 'tests', 'data', 'rules', 'MX_GTUBE.hit.eml'), 'rb').read()
start = len(mx.log())
code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], gtube)
mt.check(code == 250, 'mode log: GTUBE delivered (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=rules score=1000\.0 .*action=reject\(dry-run\) tests=MX_GTUBE',
                     start=start) is not None, 'mode log: logs action=reject(dry-run)')
if be2.messages:
    st = status_of(be2.messages[-1]['data'])
    mt.check(st is not None and st[0] and 'MX_GTUBE' in st[2], 'mode log: X-Spam-Status Yes')
    mt.check(header(be2.messages[-1]['data'], 'X-Spam-Symbols') is not None,
             'mode log: X-Spam-Symbols present')

# reload: a new rule file with an enforcing config
with open(os.path.join(rdir, 'zz-local.rules'), 'w') as f:
    f.write('body LOCAL_RELOADED /reloaded-rule-marker/\nscore LOCAL_RELOADED 20\n')
rules['mode'] = 'enforce'
start = len(mx.log())
mx.reload(mt.config([be2.url], rules=rules))
loaded = mx.wait_log(r'event=rules_loaded files=2 ', timeout=60, start=start)  # polled; ASan under load is slow
mt.check(loaded is not None, 'reload: the new rule file is loaded')
if loaded:
    msg = b'From: a@example.org\r\nTo: b@example.test\r\nSubject: x\r\nDate: Wed, 25 Nov 2026 ' \
          b'01:00:00 +0000\r\nMessage-ID: <r1@example.org>\r\n\r\nreloaded-rule-marker\r\n'
    code = None
    for _ in range(20):     # sessions of the old generation may still be draining
        code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], msg)
        if code == 550:
            break
        mt.wait_for(lambda: False, timeout=0.2)
    mt.check(code == 550, 'reload: the new rule rejects (%s)' % code)
mx.stop()
mt.finish()
