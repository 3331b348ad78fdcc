#!/usr/bin/env python3
"""test_rules_localcf — a site's local.cf as SpamAssassin runs it: the same local.cf (with the
stock rules and Debian's .pre files) scored by SpamAssassin 4.0.1 itself (Mail::SpamAssassin
in-process, local tests only, no Bayes: what spamd does with that site dir) and by the mxgate
daemon on the same messages; every test hit (with its count for tflags multiple, as
X-Spam-Status lists it) and the score must agree.

The local.cf holds what an administrator carries over: a 4-score `score` override, `header
... exists:`, `[if-unset: ...]`, `/i` `/m` `/s` and `(?i)`, `rawbody`, `full`, `uri`, an
escaped `\\#`, metas with arithmetic (+ - * /, comparisons, precedence) and `!`, `priority`, `tflags multiple maxhits=`, `nice`,
`noautolearn learn`, `if (version >= ...)` and `ifplugin` blocks, `include`, `replace_tag` /
`replace_rules`, `uri_detail` (raw, type, cleaned, text, host, domain; =~ and !~), `lang`, `report_safe`, `add_header`, `trusted_networks`, and the sender
lists: `whitelist_from`, `blocklist_from`, `whitelist_from_rcvd` (by rDNS and by [CIDR]),
`def_whitelist_from_rcvd` (matched against a trusted relay only when no untrusted relay
brought the message), `unwhitelist_from`, `whitelist-from` spelled with dashes.
Peers: the recording Backend, perl Mail::SpamAssassin (skipped without; a failure in CI)."""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
STOCK = '/usr/share/spamassassin'



if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    mt.skip('stock SpamAssassin rules not installed')
if subprocess.run(['perl', '-MMail::SpamAssassin', '-e', '1'], capture_output=True).returncode:
    mt.skip('perl Mail::SpamAssassin not installed (apt-get install spamassassin)')

SITE = os.path.join(mt.TMP, 'site')
os.makedirs(os.path.join(SITE, 'extra'))
for f in glob.glob('/etc/spamassassin/*.pre'):
    shutil.copy(f, SITE)
LOCAL_CF = r'''# the site's local.cf \# (an escaped hash in a comment)
required_score 5.0
report_safe 0
use_bayes 0
add_header all Checker site-test
lang fr describe LOC_BODY_M Texte
trusted_networks 10.1.0.0/16
score MISSING_DATE 1.5 1.6 1.7 1.8
header LOC_HDR_EXISTS exists:X-Loc-Flag
score LOC_HDR_EXISTS 0.5
describe LOC_HDR_EXISTS X-Loc-Flag present
header LOC_UNSET X-Loc-None =~ /^absent$/ [if-unset: absent]
score LOC_UNSET 0.3
header LOC_SUBJ_I Subject =~ /cheap\s+pills/i
score LOC_SUBJ_I 1.1
body LOC_BODY_M /^second line$/m
score LOC_BODY_M 0.7
body LOC_BODY_INL /(?i)viagra/
score LOC_BODY_INL 0.9
body LOC_BODY_S /start.+finish/s
score LOC_BODY_S 0.4
body LOC_MULTI /\bwin\b/i
tflags LOC_MULTI multiple maxhits=3
score LOC_MULTI 0.2
body LOC_NICE /unsubscribe/i
tflags LOC_NICE nice noautolearn learn
score LOC_NICE -0.6
rawbody LOC_RAW /<b>bold<\/b>/i
score LOC_RAW 0.45
full LOC_FULL /^X-Loc-Flag: yes/m
score LOC_FULL 0.35
uri LOC_URI /example\.bad\b/
score LOC_URI 1.25
body LOC_HASH /price \#1/
score LOC_HASH 0.15
meta LOC_META (LOC_SUBJ_I + LOC_BODY_INL + LOC_URI) >= 2
score LOC_META 2.5
meta LOC_META2 LOC_MULTI > 1 && !LOC_NICE
score LOC_META2 0.11
priority LOC_META2 500
meta LOC_META_DIV (LOC_SUBJ_I * 2 + LOC_BODY_INL) / 3 > 0.5
score LOC_META_DIV 0.12
meta LOC_META_EQ LOC_SUBJ_I - LOC_BODY_INL == 0 && LOC_URI
score LOC_META_EQ 0.13
meta LOC_META_NOR !(LOC_RAW || LOC_FULL)
score LOC_META_NOR 0.14
meta LOC_META_COUNT LOC_MULTI >= 3
score LOC_META_COUNT 0.16
meta LOC_META_PREC LOC_MULTI + 1 * 2 > 4 || !LOC_NICE && LOC_URI
score LOC_META_PREC 0.17
if (version >= 3.004000)
body LOC_VER /versioned/
score LOC_VER 0.6
endif
if (version < 3.000000)
body LOC_OLD /versioned/
score LOC_OLD 5
endif
ifplugin Mail::SpamAssassin::Plugin::NoSuchPlugin
body LOC_NOPLUGIN /versioned/
endif
replace_tag PILL (?:pill|tablet)
body LOC_REPL /cheap <PILL>s/
replace_rules LOC_REPL
score LOC_REPL 0.25
whitelist_from friend@good.example
blocklist_from evil@bad.example
whitelist_from_rcvd rcvd@good.example good.example
welcomelist_from_rcvd net@good.example [198.51.100.0/24]
def_whitelist_from_rcvd *@corp.example corp.example
whitelist_from *@gone.example
unwhitelist_from *@gone.example
whitelist-from dash@good.example
util_rb_tld bad example
uri_detail LOC_UD_RAW raw =~ /example\.bad/
score LOC_UD_RAW 0.05
uri_detail LOC_UD_HOST host =~ /^www\.example\.bad$/ raw !~ /nomatch/
score LOC_UD_HOST 0.06
uri_detail LOC_UD_DOMAIN domain =~ /^example\.bad$/i
score LOC_UD_DOMAIN 0.07
uri_detail LOC_UD_CLEANED cleaned =~ m!^http://www\.example\.bad/x$!
score LOC_UD_CLEANED 0.08
uri_detail LOC_UD_BOTH raw =~ /example\.bad/ host =~ /^198\./
score LOC_UD_BOTH 0.09
uri_detail LOC_UD_IP domain =~ /^198\.51\.100\.9$/
score LOC_UD_IP 0.031
uri_detail LOC_UD_NEG raw !~ /example\.bad/
score LOC_UD_NEG 0.032
uri_detail LOC_UD_MAILTO raw =~ /^mailto:/ domain =~ /^shop\.example$/
score LOC_UD_MAILTO 0.033
uri_detail LOC_UD_TYPE_A type =~ /^a$/ raw =~ /example\.bad/
score LOC_UD_TYPE_A 0.034
uri_detail LOC_UD_PARSED type =~ /^parsed$/ domain =~ /^shop\.example$/
score LOC_UD_PARSED 0.035
uri_detail LOC_UD_SCHEMELESS type =~ /^schemeless$/ raw =~ /www\.example\.bad\/y/
score LOC_UD_SCHEMELESS 0.036
uri_detail LOC_UD_TEXT text =~ /^x$/
score LOC_UD_TEXT 0.037
uri_detail LOC_UD_TEXT_NEG text !~ /^x$/ raw =~ /example\.bad/
score LOC_UD_TEXT_NEG 0.038
uri_detail LOC_UD_IMG type =~ /^img$/ host =~ /^img\./
score LOC_UD_IMG 0.039
uri_detail LOC_UD_FORM type =~ /^form$/ domain =~ /example\.bad/
score LOC_UD_FORM 0.041
uri_detail LOC_UD_CLICK text =~ /^Click here$/ host =~ /^click\./
score LOC_UD_CLICK 0.042
uri_detail LOC_UD_IMGTEXT text =~ /<img>/ type =~ /^a$/
score LOC_UD_IMGTEXT 0.043
include extra/more.cf
'''
with open(os.path.join(SITE, 'local.cf'), 'w') as f:
    f.write(LOCAL_CF)
with open(os.path.join(SITE, 'extra', 'more.cf'), 'w') as f:
    f.write('header LOC_INCL Subject =~ /included/\nscore LOC_INCL 0.8\n')

EXT = ('Received: from mail.good.example (mail.good.example [198.51.100.7])\r\n'
       '\tby mx.local.example (Postfix) with ESMTP id ABC; Thu, 03 Dec 2026 07:00:00 +0000\r\n')
INT = ('Received: from mx.corp.example (mx.corp.example [10.1.2.3])\r\n'
       '\tby final.corp.example (Postfix) with ESMTP id D1; Thu, 03 Dec 2026 07:00:01 +0000\r\n')
FORGED = INT + ('Received: from spam.bad.example (spam.bad.example [203.0.113.5])\r\n'
                '\tby mx.corp.example (Postfix) with ESMTP id D0; '
                'Thu, 03 Dec 2026 07:00:00 +0000\r\n')


def msg(rcvd, frm, subj, body, extra='', ctype='text/plain', date=True):
    return (rcvd + 'From: %s\r\nTo: b@example.test\r\nSubject: %s\r\n'
            'Message-ID: <lc%d@x.test>\r\n%s%sMIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n%s'
            % (frm, subj, abs(hash(subj + frm)) % 100000, extra,
               'Date: Thu, 03 Dec 2026 07:00:00 +0000\r\n' if date else '', ctype, body))


MSGS = {
    'rules': msg(EXT, 'a@x.example', 'Cheap  Pills here',
                 'first line\r\nsecond line\r\n\r\nBuy VIAGRA now, start here and\r\n'
                 'finish there. win win win win win\r\nprice #1\r\nhttp://www.example.bad/x\r\n'
                 'versioned cheap tablets\r\n', extra='X-Loc-Flag: yes\r\n'),
    'links': msg(EXT, 'a@x.example', 'links', 'see http://198.51.100.9/login and '
                 'write to sales@shop.example or www.example.bad/y\r\n'),
    'html': msg(EXT, 'friend@good.example', 'included hello',
                '<html><body><b>bold</b> text unsubscribe win win '
                '<a href="http://example.bad/">x</a></body></html>\r\n', ctype='text/html'),
    'uri_types': msg(EXT, 'a@x.example', 'types', '<html><body><a href="http://click.example.bad/go">'
                     'Click <b>here</b></a> <a href="http://pic.example.bad/"><img src="http://img.'
                     'example.bad/p.png" width=10 height=10></a> <form action="http://form.example.bad/'
                     'post"><input name=q></form> <a href="rel/page">relative</a> see www.shop.example'
                     '</body></html>\r\n', ctype='text/html'),
    'blocklist': msg(EXT, 'evil@bad.example', 'hi', 'hello\r\n', date=False),
    'rcvd_rdns': msg(EXT, 'rcvd@good.example', 'hi', 'hello\r\n'),
    'rcvd_cidr': msg(EXT, 'net@good.example', 'hi', 'hello\r\n'),
    'rcvd_other_relay': msg(FORGED, 'rcvd@good.example', 'hi', 'hello\r\n'),
    'def_trusted': msg(INT, 'boss@corp.example', 'hi', 'hello\r\n'),
    'def_forged': msg(FORGED, 'boss@corp.example', 'hi', 'hello\r\n'),
    'unwhitelisted': msg(EXT, 'x@gone.example', 'hi', 'hello\r\n'),
    'dashes': msg(EXT, 'dash@good.example', 'hi', 'hello\r\n'),
}
MSGDIR = os.path.join(mt.TMP, 'msgs')
os.makedirs(MSGDIR)
for name, text in MSGS.items():
    with open(os.path.join(MSGDIR, name + '.eml'), 'wb') as f:
        f.write(text.encode())

# ---- SpamAssassin itself
ORACLE = r'''
use strict; use warnings; use Mail::SpamAssassin;
my $site = shift;
my $sa = Mail::SpamAssassin->new({ site_rules_filename => $site,
  userprefs_filename => "$site/user_prefs", local_tests_only => 1, dont_copy_prefs => 1,
  home_dir_for_helpers => $site });
$sa->compile_now(0, 1);
for my $p (@ARGV) {
  open(my $fh, '<', $p) or die "$p: $!"; binmode $fh;
  my $t = do { local $/; <$fh> };
  my $m = $sa->parse($t); my $s = $sa->check($m);
  printf "%s score=%s tests=%s\n", $p, $s->get_score(), $s->get_names_of_tests_hit();
  $s->finish; $m->finish;
}
'''
with open(os.path.join(SITE, 'user_prefs'), 'w') as f:
    f.write('use_bayes 0\n')
paths = [os.path.join(MSGDIR, n + '.eml') for n in MSGS]
r = subprocess.run(['perl', '-e', ORACLE, SITE] + paths, capture_output=True, text=True,
                   timeout=600)
mt.check(r.returncode == 0, 'SpamAssassin scores the messages (%s)' % r.stderr[-300:])
sa = {}
for line in r.stdout.splitlines():
    m = re.match(r'(\S+) score=(\S+) tests=(.*)$', line)
    if m:
        sa[os.path.basename(m.group(1))[:-4]] = (float(m.group(2)),
                                                 sorted(t for t in m.group(3).split(',') if t))
mt.check(len(sa) == len(MSGS), 'SpamAssassin answered for every message (%d)' % len(sa))

# ---- mxgate, the same files (Debian's layout: the stock rules, then the site's *.cf)
be = mt.Backend()
rules = {'files': [os.path.join(STOCK, '*.cf'), os.path.join(SITE, '*.cf')],
         'actions': {'add_header': 5, 'reject': 1000}, 'client_relay': False}
st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}],
                                     rules=rules))
mt.check(st == 0 and ' 0 errors' in out, '-t accepts the local.cf (%d): %s' % (
    st, out.strip()[-300:]))
mx = mt.Mxgate(mt.config([be.url], rules=rules))
mt.check(mx.wait_log(r'event=rules_loaded', timeout=30) is not None, 'rules loaded')

for name, text in MSGS.items():
    n = len(be.messages)
    code, reply = mt.send_mail(mx.port, 'op@example.org', ['b@example.test'], text.encode())
    ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
    mt.check(ok, '%s: delivered (%s %s)' % (name, code, reply))
    if not ok or name not in sa:
        continue
    head = re.split(rb'\r?\n\r?\n', be.messages[-1]['data'], 1)[0]
    # unfolded as SA folds: after a comma (",\n\t" was ","), or a space ("\n\t" was " ")
    status = re.search(rb'^X-Spam-Status: (.*?)\r?$', re.sub(
        rb'\r?\n[ \t]+', b' ', re.sub(rb',\r?\n[ \t]+', b',', head)), re.M)
    m = re.match(r'(?:Yes|No), score=(\S+) required=\S+ tests=(\S*)',
                 status.group(1).decode() if status else '')
    tests = sorted(t for t in m.group(2).split(',') if t and t != 'none') if m else []
    sy = re.search(rb'^X-Spam-Symbols: (.*?)\r?$', re.sub(rb'\r?\n[ \t]+', b' ', head), re.M)
    score = sum(float(i.rsplit('=', 1)[1]) for i in sy.group(1).decode().split(', ')) \
        if sy else None
    sa_score, sa_tests = sa[name]
    mt.check(tests == sa_tests, '%s: the tests SpamAssassin hits (mxgate only %s, SA only %s)' % (
        name, sorted(set(tests) - set(sa_tests)) or '-',
        sorted(set(sa_tests) - set(tests)) or '-') + ('' if tests == sa_tests or
                                                      set(tests) != set(sa_tests) else
                                                      ': counts %s vs %s' % (tests, sa_tests)))
    mt.check(score is not None and abs(score - sa_score) < 0.0005 * (len(tests) + 1),
             '%s: score %s (X-Spam-Symbols), SpamAssassin %s' % (name, score, sa_score))
    mt.check(m is not None and m.group(1) == '%.1f' % sa_score,
             '%s: X-Spam-Status score=%s, SpamAssassin %.1f' % (
                 name, m.group(1) if m else None, sa_score))
# every uri_detail key met on some message (type and text too), and the arithmetic metas,
# as SpamAssassin met them
hit_any = set(t for _, tests_ in sa.values() for t in tests_)
for rule in ('LOC_UD_TYPE_A', 'LOC_UD_PARSED', 'LOC_UD_SCHEMELESS', 'LOC_UD_TEXT', 'LOC_UD_IMG',
             'LOC_UD_FORM', 'LOC_UD_CLICK', 'LOC_UD_IMGTEXT', 'LOC_META_DIV', 'LOC_META_EQ',
             'LOC_META_NOR', 'LOC_META_COUNT', 'LOC_META_PREC'):
    mt.check(rule in hit_any, '%s hits a message (SpamAssassin: %s)' % (
        rule, sorted(t for t in hit_any if t.startswith('LOC_UD') or t.startswith('LOC_META'))))
mx.stop()
mt.finish()
