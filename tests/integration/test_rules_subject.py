#!/usr/bin/env python3
"""test_rules_subject — a rule file's `rewrite_header Subject TAG` applied as spamd applies the
same local.cf line (report_safe 0): on spam the delivered Subject is the tag, a space and the
Subject as received (encoded words and folds kept, the tag not doubled), the old value kept
in X-Spam-Prev-Subject; a message without a Subject gets one; ham keeps its Subject; _SCORE_
and _REQD_ are what X-Spam-Status says. Both sides score one rule file (a header rule worth
20 on X-Test-Spam); spamd also runs its stock rules, which score none of these messages
near 5 without that header. Peers: the recording Backend, spamd/spamc."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.need('spamd', 'spamc')

RULES = ('header LOC_SPAM X-Test-Spam =~ /yes/\nscore LOC_SPAM 20\n'
         'rewrite_header Subject *****SPAM*****\n')
rules_path = os.path.join(mt.TMP, 'subject.cf')
with open(rules_path, 'w') as f:
    f.write(RULES)


def head(data):
    """The header block (str, LF line ends)."""
    return re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1').replace('\r\n', '\n')


def fields(h, name):
    return re.findall(r'^%s: ?(.*(?:\n[ \t].*)*)' % re.escape(name), h, re.M | re.I)


def msg(subject_lines, spam=True):
    h = ['From: a@example.org', 'To: b@example.test', 'Date: Fri, 04 Dec 2026 12:00:00 +0000',
         'Message-ID: <%d@example.org>' % abs(hash(tuple(subject_lines))), 'MIME-Version: 1.0',
         'Content-Type: text/plain; charset=us-ascii'] + subject_lines
    if spam:
        h.append('X-Test-Spam: yes')
    return ('\r\n'.join(h) + '\r\n\r\nHello Bob,\r\n\r\nthe minutes of the meeting are attached '
            'below.\r\n\r\nRegards,\r\nAlice\r\n').encode()


CASES = [
    ('plain', msg(['Subject: meeting notes'])),
    ('encoded', msg(['Subject: =?UTF-8?B?w6TDtsO8IG1lZXRpbmc=?= notes'])),
    ('folded', msg(['Subject: a rather long subject line that its author folded',
                    '\tonto a second line'])),
    ('tagged', msg(['Subject: *****SPAM***** already tagged'])),
    ('blank', msg(['Subject:    '])),
    ('none', msg([])),
    ('ham', msg(['Subject: meeting notes'], spam=False)),
    ('ham-none', msg([], spam=False)),
]

sd = mt.spamd('report_safe 0\n' + RULES)
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], rules={'files': [rules_path], 'client_relay': False}))
mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, 'rules loaded')
ready = mt.wait_for(lambda: subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port), '-K'],
                                           capture_output=True).returncode == 0,
                    timeout=60, step=0.5)
mt.check(bool(ready), 'spamd answers')
for name, data in CASES:
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], data)
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
    mt.check(ok, '%s: delivered (%s %s)' % (name, code, text))
    if not ok:
        continue
    mine = head(be.messages[-1]['data'])
    r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port)], input=data,
                       capture_output=True, timeout=120)
    theirs = head(r.stdout)
    for f in ('Subject', 'X-Spam-Prev-Subject'):
        # SA keeps the first line of a folded Subject in X-Spam-Prev-Subject, mxgate the value
        a = [v.rstrip() for v in fields(mine, f)]
        b = [v.rstrip() for v in fields(theirs, f)]
        if name == 'folded' and f == 'X-Spam-Prev-Subject':
            a = [v.split('\n')[0] for v in a]
        mt.check(a == b, '%s: %s as spamd writes it (mxgate %r, spamd %r)' % (name, f, a, b))

# _SCORE_ and _REQD_: what X-Spam-Status says
mx.stop()
with open(rules_path, 'w') as f:
    f.write(RULES.replace('*****SPAM*****', '[SPAM _SCORE_/_REQD_ _FOO_]'))
mx = mt.Mxgate(mt.config([be.url], rules={'files': [rules_path], 'client_relay': False}),
               name='mxgate-tags')
mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, 'tags: rules loaded')
n = len(be.messages)
code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], CASES[0][1])
ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
mt.check(ok, 'tags: delivered (%s %s)' % (code, text))
if ok:
    h = head(be.messages[-1]['data'])
    mt.check(fields(h, 'Subject') == ['[SPAM 20.0/5.0 _FOO_] meeting notes'],
             'tags: _SCORE_ and _REQD_ expanded, an unknown tag as written: %r' % fields(h, 'Subject'))
mx.stop()
sd.terminate()
sd.wait()

# The order (docs/rules.md): the filters before the rules engine change the Subject first
# (rspamd's "rewrite subject", a milter's chgheader), the rules engine tags the Subject they
# left, once, and X-Spam-Prev-Subject keeps that one: the backend gets both tags, in the
# order a Postfix chain of rspamd's milter then spamc would give them
ORDER = ('body LOC_BODY /REWRITEME|CHANGEME/\nscore LOC_BODY 20\n'
         'rewrite_header Subject [RULES]\n')
with open(rules_path, 'w') as f:
    f.write(ORDER)
rs = mt.fake_rspamd()
ml = mt.milter()
mx = mt.Mxgate(mt.config([be.url], rules={'files': [rules_path], 'client_relay': False},
                         plugins=[{'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port,
                                   'on_error': 'tempfail', 'timeout': '10s',
                                   'options': {'use_action': True}},
                                  {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % ml.port,
                                   'on_error': 'tempfail', 'timeout': '10s'}]),
               name='mxgate-order')
mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, 'order: rules loaded')
for tag, body, want_subj, want_prev in [
        ('rspamd', 'REWRITEME\r\n', '[RULES] *** SPAM *** test o-rspamd', '*** SPAM *** test o-rspamd'),
        ('milter', 'CHANGEME\r\n', '[RULES] changed by milter', 'changed by milter')]:
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'],
                              mt.message('o-' + tag, body))
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
    mt.check(ok, 'order %s: delivered (%s %s)' % (tag, code, text))
    if ok:
        h = head(be.messages[-1]['data'])
        mt.check([v.rstrip() for v in fields(h, 'Subject')] == [want_subj],
                 'order %s: the rules engine tags the Subject %s left: %r' % (tag, tag, fields(h, 'Subject')))
        mt.check([v.rstrip() for v in fields(h, 'X-Spam-Prev-Subject')] == [want_prev],
                 'order %s: X-Spam-Prev-Subject is that Subject: %r' % (tag, fields(h, 'X-Spam-Prev-Subject')))
mx.stop()
mt.finish()
