#!/usr/bin/env python3
"""test_rules_operator — a SpamAssassin operator's first week with the rules engine, through
the real daemon: Debian's layout (/usr/share/spamassassin/*.cf, then /etc/spamassassin's
local.cf and 65_debian.cf, copied here with the operator's additions at the end of local.cf).

- local.cf's `include my/extra.cf` (relative to local.cf) loads the operator's rules, and a
  `score` line after the stock files overrides the stock score (MISSING_DATE 7.0); an edit
  of the included file is picked up by SIGHUP.
- -t warns of local.cf's rewrite_header From and required_score 6.0 (read, not applied: mxgate's
  thresholds are rules.actions), and of nothing in the stock files; the daemon logs the
  same (event=rules_problem), and an error in a file edited before a SIGHUP by its line.
- local.cf's whitelist_from / blacklist_from drive the stock USER_IN_WELCOMELIST (-100) and
  USER_IN_BLOCKLIST (100: here a 550), and nothing else: with Debian's init.pre
  (`enable_compat welcomelist_blocklist`) spamd defines no USER_IN_WHITELIST /
  USER_IN_BLACKLIST metas.
- A message's own X-Spam-* fields — a forged "X-Spam-Status: No" in any spelling, folded,
  and names SpamAssassin or rspamd or a sender make up (X-Spam-Virus, X-Spam-Bar,
  x-spam-whatever) — are all removed before mxgate's are added, as SpamAssassin removes
  X-Spam-* (it keeps X-Spam-Prev-*, so does mxgate): the backend sees mxgate's verdict alone.
- -t lists the directives it reads and does not apply, by name and count.
- `action RULE quarantine` without a quarantine backend (those messages get 451 4.3.0):
  -t and the start-up log warn.
Peers: the recording Backend. Needs /usr/share/spamassassin (skipped without; a failure
in CI)."""
import glob
import os
import re
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
STOCK = '/usr/share/spamassassin'
if not glob.glob(os.path.join(STOCK, '*.cf')):
    if mt.CI:
        mt.fail('no SpamAssassin rules in %s' % STOCK)
    mt.skip('no SpamAssassin rules in %s' % STOCK)

ETC = os.path.join(mt.TMP, 'etc-spamassassin')
os.makedirs(os.path.join(ETC, 'my'))
for name in ('local.cf', '65_debian.cf'):
    src = os.path.join('/etc/spamassassin', name)
    if os.path.exists(src):
        shutil.copy(src, os.path.join(ETC, name))
with open(os.path.join(ETC, 'local.cf'), 'a') as f:
    f.write('\n# the operator\'s additions\nrequired_score 5.0\ninclude my/extra.cf\n'
            'score MISSING_DATE 7.0\nwhitelist_from *@friend.example\n'
            'blacklist_from spammer@bad.example\nrewrite_header From *****SPAM*****\n'
            'required_score 6.0\n')
EXTRA = os.path.join(ETC, 'my', 'extra.cf')
with open(EXTRA, 'w') as f:
    f.write('header OP_INCLUDED Subject =~ /\\boperator-included\\b/\nscore OP_INCLUDED 3.5\n'
            'body OP_MULTI /\\bwin\\b/i\ntflags OP_MULTI multiple maxhits=3\n'
            'score OP_MULTI 0.2\n')

be = mt.Backend()
rules = {'files': [os.path.join(STOCK, '*.cf'), os.path.join(ETC, '*.cf')],
         'actions': {'add_header': 5, 'reject': 90}, 'client_relay': False}
st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}],
                                     rules=rules))
mt.check(st == 0 and ' 0 errors' in out, '-t accepts the layout (%d): %s' % (
    st, out.strip()[-300:]))
# what a SpamAssassin local.cf uses to act on spam and mxgate does not apply is a warning at
# its line (the stock files' own settings are not). The report_safe in effect (Debian's
# local.cf leaves `# report_safe 1` commented, so the stock 10_default_prefs.cf's 1 holds)
# is applied as spamd applies it, spam wrapped in a report message: no warning
warns = [l for l in out.splitlines() if ': warning: ' in l and 'accept_domains' not in l
         and 'the prefilter is off' not in l]   # the library's self-test (vectorscan 5.4.9), not a file
mt.check(not [w for w in warns if 'report_safe' in w], '-t: report_safe 1 is applied, no '
         'warning: %s' % warns)
mt.check(len(warns) == 2 and all(w.startswith(os.path.join(ETC, 'local.cf') + ':') for w in warns)
         and 'rewrite_header From is not applied' in warns[0] and
         'required_score 6.0 is not applied' in warns[1],
         '-t warns of rewrite_header From and required_score 6.0 in local.cf, nothing else: %s' % warns)
# what mxgate reads and does not apply is listed by name (the stock files' reuse ... and
# local.cf's rewrite_header), the settings it applies (whitelist_from ...) are not, nor the
# stock files' lang lines: SpamAssassin in the C.UTF-8 locale skips them too
na = [l for l in out.splitlines() if l.startswith('rules: directives not applied')]
mt.check(len(na) == 1 and 'lang ' not in na[0] and 'rewrite_header 1' in na[0] and
         'whitelist_from' not in na[0] and 'blacklist_from' not in na[0],
         '-t lists the directives not applied: %s' % na)
cfg = mt.config([be.url], rules=rules)

mx = mt.Mxgate(cfg)
m = mx.wait_log(r'event=rules_loaded files=(\d+)', timeout=30)
mt.check(mx.count_log(r'info .*event=rules_problem detail=.*local\.cf:\d+:1: warning: '
                      r'(rewrite_header From|required_score 6\.0) is not applied') == 2,
         'the start-up log has -t\'s two warnings: %s' % [
             l for l in mx.log().splitlines() if 'rules_problem' in l])
nstock = len(glob.glob(os.path.join(STOCK, '*.cf')))
mt.check(m is not None and int(m.group(1)) == nstock + len(glob.glob(ETC + '/*.cf')) + 1,
         'the included file is counted: %s (stock %d)' % (m.group(0) if m else mx.tail(5),
                                                          nstock))

H = ('From: op@example.org\r\nTo: b@example.test\r\nSubject: %s\r\n'
     'Message-ID: <%s@op.test>\r\n')
DATE = 'Date: Thu, 03 Dec 2026 07:00:00 +0000\r\n'


def deliver(name, data):
    """(X-Spam-Symbols {name: score}, header block) of the delivered copy."""
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'op@example.org', ['b@example.test'], data)
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
    mt.check(ok, '%s: delivered (%s %s)' % (name, code, text))
    if not ok:
        return {}, b''
    head = re.split(rb'\r?\n\r?\n', be.messages[-1]['data'], 1)[0]
    unfolded = re.sub(rb'\r?\n[ \t]+', b' ', head)
    sy = re.search(rb'^X-Spam-Symbols: (.*)$', unfolded, re.M)
    syms = {}
    for item in (sy.group(1).decode().split(', ') if sy else []):
        k, v = item.rsplit('=', 1)
        syms[k.strip()] = float(v)
    return syms, head


syms, _ = deliver('included rule', (H % ('operator-included', 'inc') + DATE +
                                    '\r\nbody\r\n').encode())
mt.check(syms.get('OP_INCLUDED') == 3.5,
         'local.cf\'s include: OP_INCLUDED=3.5 hits (%s)' % syms)
# tflags multiple maxhits=3: scored per hit, and named once per hit in X-Spam-Status as
# spamd writes it ("tests=...,OP_MULTI,OP_MULTI,OP_MULTI,...")
syms, head = deliver('multiple', (H % ('win', 'multi') + DATE +
                                  '\r\nwin win\r\nwin and win\r\n').encode())
status = re.search(rb'^X-Spam-Status: (.*?)\r?$', re.sub(     # SA's folds: after "," or " "
    rb'\r?\n[ \t]+', b' ', re.sub(rb',\r?\n[ \t]+', b',', head)), re.M)
tests = status.group(1).decode().split('tests=')[1].split(' ')[0].split(',') if status else []
mt.check(abs(syms.get('OP_MULTI', 0) - 0.6) < 1e-9 and tests.count('OP_MULTI') == 3,
         'tflags multiple maxhits=3: OP_MULTI=0.600 and named 3 times in tests= (%s; %s)' % (
             syms, status.group(0) if status else head))
syms, _ = deliver('no Date', (H % ('no date here', 'nodate') + '\r\nbody\r\n').encode())
mt.check(syms.get('MISSING_DATE') == 7.0,
         'local.cf\'s score after the stock files wins: MISSING_DATE=7.0 (%s)' % syms)

# SpamAssassin's welcomelist_from / blocklist_from (their old whitelist_/blacklist_ names)
syms, _ = deliver('whitelist_from', (H.replace('op@example.org', 'pal@friend.example') % (
    'operator-included', 'wl') + DATE + '\r\nbody\r\n').encode())
mt.check(syms.get('USER_IN_WELCOMELIST') == -100 and 'USER_IN_WHITELIST' not in syms,
         'whitelist_from in local.cf: USER_IN_WELCOMELIST=-100 and no USER_IN_WHITELIST, '
         'as spamd with Debian\'s init.pre scores it (%s)' % syms)
n = len(be.messages)
code, text = mt.send_mail(mx.port, 'spammer@bad.example', ['b@example.test'],
                          (H.replace('op@example.org', 'spammer@bad.example') % ('hi', 'bl') +
                           DATE + '\r\nbody\r\n').encode())
mt.check(code == 550 and len(be.messages) == n,
         'blacklist_from in local.cf: USER_IN_BLOCKLIST (100) reaches actions.reject: %s %s' % (
             code, text))

# ---- forged X-Spam-* fields, SpamAssassin's and rspamd's names and made-up ones
forged = ('X-Spam-Status: No, score=-9.9 required=5.0\r\n tests=NONE\r\n'
          'x-spam-status: no\r\nX-SPAM-FLAG: NO\r\nX-Spam-Score : -9.9\r\n'
          'X-Spam-Virus: No\r\nX-Spam-Bar: /\r\nX-Spam-Level: \r\n'
          'X-Spam-Report: clean\r\n\tvery clean\r\nx-spam-whatever-filter: pass\r\n'
          'X-Spam-Prev-Subject: kept\r\nX-Spamd-Result: kept (not X-Spam-)\r\n' +
          H % ('forged', 'forged') + DATE + '\r\nbody\r\n').encode()
_, head = deliver('forged X-Spam-*', forged)
names = [h.split(b':', 1)[0].strip().lower() for h in re.split(rb'\r?\n(?![ \t])', head)]
spam = sorted(x.decode() for x in names if x.startswith(b'x-spam-'))
mt.check(spam == ['x-spam-level', 'x-spam-prev-subject', 'x-spam-score', 'x-spam-status', 'x-spam-symbols'],
         'only mxgate\'s X-Spam-* (and X-Spam-Prev-*) reach the backend: %s' % spam)
mt.check(b'-9.9' not in head and b'very clean' not in head and b'X-Spamd-Result' in head,
         'no forged value or continuation line is left')

# the same with rules.headers: false: no verdict of ours, and none of the sender's either
mxh = mt.Mxgate(mt.config([be.url], rules=dict(rules, headers=False)), name='mxgate-noheaders')
n = len(be.messages)
code, text = mt.send_mail(mxh.port, 'op@example.org', ['b@example.test'], forged)
mt.check(code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20)),
         'headers: false: delivered (%s %s)' % (code, text))
head = re.split(rb'\r?\n\r?\n', be.messages[-1]['data'], 1)[0] if len(be.messages) > n else b''
names = [h.split(b':', 1)[0].strip().lower() for h in re.split(rb'\r?\n(?![ \t])', head)]
spam = sorted(x.decode() for x in names if x.startswith(b'x-spam-'))
mt.check(spam == ['x-spam-prev-subject'], 'headers: false: no X-Spam-* reaches the backend, forged or ours: %s' % spam)
mxh.stop()

# ---- an edit of the included file, then SIGHUP
with open(EXTRA, 'w') as f:
    f.write('header OP_INCLUDED Subject =~ /\\boperator-included\\b/\nscore OP_INCLUDED 1.25\n'
            'body OP_BROKEN /unterminated\n')
start = mx.log_size()
mx.send_signal(signal.SIGHUP)
mt.check(mx.wait_log(r'event=rules_loaded .*errors=1', timeout=30, start=start) is not None,
         'reloaded after SIGHUP, one error')
mt.check(mx.wait_log(r'warning .*event=rules_problem detail="?%s:3:\d+: OP_BROKEN: ' %
                     re.escape(EXTRA), timeout=5, start=start) is not None,
         'the log names the broken line, as -t does: %s' % [
             l for l in mx.log()[start:].splitlines() if 'rules_problem' in l])
syms, _ = deliver('included rule after the edit', (H % ('operator-included', 'inc2') + DATE +
                                                   '\r\nbody\r\n').encode())
mt.check(syms.get('OP_INCLUDED') == 1.25,
         'the included file\'s edit is live after SIGHUP: OP_INCLUDED=1.25 (%s)' % syms)
mx.stop()

# ---- `action RULE quarantine` without a quarantine backend: every such message would get
# 451 4.3.0 forever; -t and the start-up log say so (nothing when the backend is set)
QR = os.path.join(mt.TMP, 'quarantine.cf')
with open(QR, 'w') as f:
    f.write('header OP_HOLD Subject =~ /hold me/\nscore OP_HOLD 0.1\naction OP_HOLD quarantine\n')
qrules = {'files': [QR], 'actions': {'add_header': 5}}
st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}],
                                    rules=qrules))
mt.check(st == 0 and re.search(r'warning: action quarantine \(OP_HOLD\) without a quarantine '
                               r'backend.*451', out) is not None,
         '-t warns of action quarantine without a quarantine backend: %s' % out.strip()[-300:])
cfgq = mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=qrules)
cfgq['quarantine'] = 'maildir:' + os.path.join(mt.TMP, 'q')
st, out = mt.config_check(cfgq)
mt.check(st == 0 and 'action quarantine' not in out,
         'no warning with a quarantine backend: %s' % out.strip()[-300:])
st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}],
                                    rules=dict(qrules, mode='log')))
mt.check(st == 0 and 'action quarantine' not in out,
         'nor in mode: log (the action is a dry run there): %s' % out.strip()[-300:])
mxq = mt.Mxgate(mt.config([be.url], rules=qrules), name='mxgate-q')
mt.check(mxq.wait_log(r'event=rules_quarantine_unavailable rules=OP_HOLD', timeout=30)
         is not None, 'the start-up log warns too')
code, text = mt.send_mail(mxq.port, 'op@example.org', ['b@example.test'],
                          (H % ('hold me', 'hold') + DATE + '\r\nbody\r\n').encode())
mt.check(code == 451, 'and such a message is tempfailed, as documented (%s %s)' % (code, text))
mxq.stop()
mt.finish()
