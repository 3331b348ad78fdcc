#!/usr/bin/env python3
"""test_rules_charsets — header and body rules on encoded and 8-bit Subjects, From names and
bodies, through the real daemon, against spamd with the same rule file on the same messages.

A rule file with UTF-8 and Latin-1 bytes in its regexes (as an operator writes `café` in
local.cf): `header Subject` (decoded: RFC 2047 Q/B, raw UTF-8, raw Latin-1 all reach UTF-8),
`Subject:raw` (undecoded bytes), `From:name`, a folded Subject, no Subject and an empty one
(`[if-unset: ...]`), a broken RFC 2047 word and an unknown charset; body (rendered, UTF-8)
and rawbody (decoded, the part's own bytes). For every message mxgate's hits of these rules
equal spamd's and the pinned ones. Peers: the recording Backend, spamd/spamc (skipped
without; a failure in CI)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

STOCK = '/usr/share/spamassassin'
if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    if mt.CI:
        mt.fail('stock SpamAssassin rules not installed')
    mt.skip('stock SpamAssassin rules not installed')
mt.need('spamd', 'spamc')

RULES = (b'header T_CAFE Subject =~ /caf\xc3\xa9/\nscore T_CAFE 0.5\n'
         b'header T_CAFE_RAW Subject:raw =~ /caf\xe9/\nscore T_CAFE_RAW 0.5\n'
         b'header T_SUBJ_ENC Subject:raw =~ /=\\?/\nscore T_SUBJ_ENC 0.5\n'
         b'header T_FOLD Subject =~ /one two/\nscore T_FOLD 0.5\n'
         b'header T_NOSUBJ Subject =~ /^$/ [if-unset: EMPTY]\nscore T_NOSUBJ 0.5\n'
         b'header T_UNSET Subject =~ /EMPTY/ [if-unset: EMPTY]\nscore T_UNSET 0.5\n'
         b'body T_BODY_CAFE /caf\xc3\xa9/\nscore T_BODY_CAFE 0.5\n'
         b'rawbody T_RAW_CAFE /caf\xe9/\nscore T_RAW_CAFE 0.5\n'
         b'header T_FROMNAME From:name =~ /J\xc3\xb6rg/\nscore T_FROMNAME 0.5\n')
RDIR = os.path.join(mt.TMP, 'rules')
os.makedirs(RDIR)
os.chmod(mt.TMP, 0o755)
os.chmod(RDIR, 0o755)
RFILE = os.path.join(RDIR, 'charsets.cf')
with open(RFILE, 'wb') as f:
    f.write(RULES)
os.chmod(RFILE, 0o644)

# spamd reads the same bytes through its own `include` (the file is not re-encoded)
spamd_port = mt.spamd('include %s\nreport_safe 0\n'
                      'add_header all Status _YESNO_, score=_SCORE_ required=_REQD_ '
                      'tests=_TESTS_\n' % RFILE).port
be = mt.Backend()
rules = {'files': [STOCK + '/*.cf', RFILE], 'actions': {'add_header': 5, 'reject': 1000},
         'client_relay': False}
mx = mt.Mxgate(mt.config([be.url], rules=rules))
mt.check(mx.wait_log(r'event=rules_loaded', timeout=30) is not None, 'rules loaded')
mt.check(mt.wait_for(lambda: subprocess.run(
    ['spamc', '-d', '127.0.0.1', '-p', str(spamd_port), '-c'], input=b'x\n',
    capture_output=True).returncode in (0, 1), timeout=mt.slack(60)), 'spamd answers')

H = ('From: %s\r\nTo: b@example.test\r\nMessage-ID: <charset%s@example.org>\r\n'
     'Date: Thu, 03 Dec 2026 07:00:00 +0000\r\nReceived: from a.example.org (a.example.org '
     '[192.0.2.1]) by mx.example.test with ESMTP id x; Thu, 03 Dec 2026 07:00:00 +0000\r\n')
# name, Subject field, From, Content-Type, CTE, body, the T_ rules that hit (spamd's too)
CASES = [
    ('Q latin-1', 'Subject: =?ISO-8859-1?Q?caf=E9?=\r\n', 'x@example.org',
     'text/plain; charset=iso-8859-1', 'quoted-printable', 'caf=E9 ok',
     {'T_BODY_CAFE', 'T_CAFE', 'T_RAW_CAFE', 'T_SUBJ_ENC'}),
    ('B utf-8', 'Subject: =?UTF-8?B?Y2Fmw6k=?=\r\n', '=?UTF-8?Q?J=C3=B6rg?= <x@example.org>',
     'text/plain; charset=utf-8', '8bit', 'caf\xc3\xa9',
     {'T_BODY_CAFE', 'T_CAFE', 'T_FROMNAME', 'T_SUBJ_ENC'}),
    ('raw latin-1', 'Subject: caf\xe9\r\n', 'J\xf6rg <x@example.org>',
     'text/plain; charset=iso-8859-1', '8bit', 'caf\xe9',
     {'T_BODY_CAFE', 'T_CAFE', 'T_CAFE_RAW', 'T_FROMNAME', 'T_RAW_CAFE'}),
    ('raw utf-8', 'Subject: caf\xc3\xa9\r\n', 'J\xc3\xb6rg <x@example.org>', 'text/plain',
     '8bit', 'caf\xc3\xa9', {'T_BODY_CAFE', 'T_CAFE', 'T_FROMNAME'}),
    ('folded', 'Subject: one\r\n two\r\n', 'x@example.org', 'text/plain', '7bit', 'x',
     {'T_FOLD'}),
    ('no Subject', '', 'x@example.org', 'text/plain', '7bit', 'x', {'T_UNSET'}),
    ('empty Subject', 'Subject: \r\n', 'x@example.org', 'text/plain', '7bit', 'x',
     {'T_NOSUBJ'}),
    ('broken RFC 2047', 'Subject: =?UTF-8?B?!!!?= =?x-unknown?Q?caf=E9?=\r\n', 'x@example.org',
     'text/plain', '7bit', 'x', {'T_BODY_CAFE', 'T_CAFE', 'T_SUBJ_ENC'}),
]
for i, (name, subj, frm, ct, cte, body, want) in enumerate(CASES):
    data = (H % (frm, i) + subj + 'MIME-Version: 1.0\r\nContent-Type: %s\r\n'
            'Content-Transfer-Encoding: %s\r\n\r\n%s\r\n' % (ct, cte, body)).encode('latin-1')
    start = mx.log_size()
    code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data)
    line = mx.wait_log(r'event=rules score=\S+ required=\S+ action=\S+ tests=(\S+)',
                       timeout=mt.slack(10), start=start)
    ours = {t for t in (line.group(1).split(',') if line else []) if t.startswith('T_')}
    r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(spamd_port)], input=data,
                       capture_output=True, timeout=mt.slack(60))
    head = re.sub(rb'\r?\n[ \t]+', b'', re.split(rb'\r?\n\r?\n', r.stdout, 1)[0])
    m = re.search(rb'^X-Spam-Status: .*tests=(\S+)', head, re.M)
    theirs = {t for t in (m.group(1).decode().split(',') if m else []) if t.startswith('T_')}
    mt.check(code == 250 and ours == want and theirs == want,
             '%s: mxgate %s, spamd %s, pinned %s (%s)' % (name, sorted(ours), sorted(theirs),
                                                          sorted(want), code))
mx.stop()
mt.finish()
