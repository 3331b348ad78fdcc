#!/usr/bin/env python3
"""test_rules_lint — a broken rule in a site's local.cf, as SpamAssassin 4.0.1 treats it.

A regex Perl rejects (an unmatched parenthesis, a range out of order, nested quantifiers, a
`(?{ })` code block) fails `spamassassin --lint` and spamd drops that rule, scoring the rest
(a meta over it sees 0). mxgate: `-t` exits 1 naming each at FILE:LINE:COL; the daemon logs
each as event=rules_problem and scores the rest, the metas over the dropped rules as
SpamAssassin does; after SIGHUP with one more broken rule and one new good rule, the same.
`lang` lines (the stock files' de/fr/nl/pl/pt_BR texts, local.cf's own) never apply and `-t`
does not list them. Peers: the recording Backend, perl Mail::SpamAssassin (`spamassassin`)."""
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()



if shutil.which('spamassassin') is None:
    mt.skip('spamassassin not installed')

SITE = os.path.join(mt.TMP, 'site')
os.makedirs(SITE)
for f in os.listdir('/etc/spamassassin'):
    if f.endswith('.pre'):
        shutil.copy(os.path.join('/etc/spamassassin', f), SITE)
BROKEN = {'LOC_BAD_PAREN': '/foo(bar/', 'LOC_BAD_RANGE': '/[z-a]/', 'LOC_BAD_QUANT': '/a**/',
          'LOC_BAD_CODE': '/a(?{ 1 })b/'}
LOCAL = ''.join('body %s %s\nscore %s 3\n' % (n, r, n) for n, r in BROKEN.items()) + '''\
body LOC_OK /this is fine/
score LOC_OK 0.5
meta LOC_META_NOT LOC_OK && !LOC_BAD_PAREN
score LOC_META_NOT 0.25
meta LOC_META_OR LOC_BAD_CODE || LOC_BAD_RANGE
score LOC_META_OR 4
lang fr score LOC_OK 9
lang de describe LOC_OK Das ist gut
'''
local_cf = os.path.join(SITE, 'local.cf')
with open(local_cf, 'w') as f:
    f.write(LOCAL)
MSG = ('From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n'
       'Date: Thu, 03 Dec 2026 07:00:00 +0000\r\nMessage-ID: <lint1@b.example>\r\n\r\n'
       'this is fine and new-good-marker foobar\r\n')
msg_path = os.path.join(mt.TMP, 'm.eml')
with open(msg_path, 'w') as f:
    f.write(MSG)


def sa_lint():
    return subprocess.run(['spamassassin', '--siteconfigpath=' + SITE, '--lint'],
                          capture_output=True, text=True, timeout=300)


def sa_local_tests():
    """The LOC_* tests SpamAssassin hits on MSG, local tests only."""
    r = subprocess.run(['spamassassin', '--siteconfigpath=' + SITE, '-L', '-t'],
                       stdin=open(msg_path, 'rb'), capture_output=True, timeout=300)
    head = re.split(rb'\r?\n\r?\n', r.stdout, 1)[0].decode('latin-1')
    head = re.sub(r'[ \t]*\r?\n[ \t]+', ' ', re.sub(r',\r?\n[ \t]+', ',', head))
    m = re.search(r'^X-Spam-Status: .*? tests=(\S+)', head, re.M)
    return sorted(t for t in (m.group(1).split(',') if m else []) if t.startswith('LOC_'))


def mx_local_tests(data):
    head = re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1')
    head = re.sub(r'[ \t]*\r?\n[ \t]+', ' ', re.sub(r',\r?\n[ \t]+', ',', head))
    m = re.search(r'^X-Spam-Status: .*? tests=(\S+)', head, re.M)
    return sorted(t for t in (m.group(1).split(',') if m else []) if t.startswith('LOC_'))


# ---- SpamAssassin: lint fails naming each broken rule; the rest scores
r = sa_lint()
mt.check(r.returncode != 0, 'spamassassin --lint fails (%d)' % r.returncode)
for name in BROKEN:
    mt.check(re.search(r'invalid regexp for %s\b' % name, r.stderr) is not None,
             'SpamAssassin\'s lint names %s' % name)
sa_tests = sa_local_tests()
mt.say('SpamAssassin hits %s' % sa_tests)

# ---- mxgate -t: exit 1, FILE:LINE:COL for each, nothing about lang
be = mt.Backend()
rules = {'files': [os.path.join(SITE, '*.cf')], 'actions': {'add_header': 5, 'reject': 1000},
         'client_relay': False}
st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=rules))
mt.check(st == 1, '-t exits 1 on the broken rules (%d)' % st)
for i, name in enumerate(BROKEN):
    mt.check(re.search(r'^%s:%d:\d+: %s: invalid regex' % (re.escape(local_cf), 2 * i + 1, name),
                       out, re.M) is not None, '-t names %s at its FILE:LINE:COL' % name)
mt.check('lang' not in out, '-t says nothing of the lang lines: %s' % out.strip()[-400:])

# ---- the daemon: logs them, scores the rest as spamd does
mx = mt.Mxgate(mt.config([be.url], rules=rules))
mt.check(mx.wait_log(r'event=rules_loaded', timeout=30) is not None, 'rules loaded')
for name in BROKEN:
    mt.check(mx.count_log(r'event=rules_problem detail=.*local\.cf:\d+:\d+: %s: invalid regex'
                          % name) == 1, 'the start-up log names %s' % name)


def send_and_compare(label):
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'op@example.org', ['c@d.example'], MSG.encode())
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
    mt.check(ok, '%s: delivered (%s %s)' % (label, code, text))
    mine = mx_local_tests(be.messages[-1]['data']) if ok else []
    theirs = sa_local_tests()
    mt.check(mine == theirs, '%s: the local tests SpamAssassin hits (mxgate %s, SA %s)' % (
        label, mine, theirs))


send_and_compare('start')

# ---- reload with one more broken rule and a new good one
with open(local_cf, 'a') as f:
    f.write('body LOC_BAD_NEW /x{2,1}/\nbody LOC_NEW_GOOD /new-good-marker/\n'
            'score LOC_NEW_GOOD 0.75\n')
start = len(mx.log())
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=rules_loaded', timeout=30, start=start) is not None, 'reloaded')
mt.check(mx.wait_log(r'event=rules_problem detail=.*LOC_BAD_NEW: invalid regex', timeout=5,
                     start=start) is not None, 'the reload log names the new broken rule')
r = sa_lint()
mt.check(r.returncode != 0 and 'LOC_BAD_NEW' in r.stderr,
         'SpamAssassin\'s lint names the new broken rule too')
send_and_compare('after reload')
mx.stop()
mt.finish()
