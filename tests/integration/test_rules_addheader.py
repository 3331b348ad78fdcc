#!/usr/bin/env python3
"""test_rules_addheader — a SpamAssassin operator's local.cf header lines (`add_header`,
`remove_header`, `clear_headers`) applied as spamd applies them (report_safe 0), on the same
messages (tests/data/sa/*.eml plus a message a local rule makes spam).

Both sides score Debian's stock rules and the same local.cf; every X-Spam-* field spamd
writes is compared with mxgate's byte for byte (folds included), but X-Spam-Checker-Version
(SpamAssassin's own, mxgate does not write it) and mxgate's own X-Spam-Score and
X-Spam-Symbols. When the two score a message differently (the tests differ), only the
fields that do not depend on the tests are compared. -t warns of a tag mxgate does not
expand. Peers: the recording Backend, spamd/spamc."""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from sa_pair import STOCK, as_mxgate_version, need_spamd, report_hits  # noqa: E402

VERSION = need_spamd()
MSGS = sorted(glob.glob(os.path.join(mt.SRC, 'tests', 'data', 'sa', '*.eml')))

LOCAL = r'''
header LOC_SPAM X-Test-Spam =~ /yes/
describe LOC_SPAM A local test rule whose description is long enough to be wrapped by SpamAssassin's report at 75 columns
score LOC_SPAM 20
add_header all Report _REPORT_
add_header spam Custom _YESNO(spammy,hammy)_ score=_SCORE(0)_/_REQD_ hits=_HITS_ tests=_TESTSSCORES(,)_
add_header ham Custom _YESNOCAPS_ _SCORE(00)_ tests=_TESTS(+)_
add_header all Stars _STARS(+)_|
add_header all Esc a\\b\tc\qd _UNKNOWNTAG_
add_header all Multi first\nsecond _YESNO_\n
remove_header ham Level
add_header spam Flag _YESNOCAPS_ really
add_header all Bayes _BAYES_
add_header all Hdr _HEADER(Subject)_|_HEADER(From:addr)_|_HEADER(X-Nope)_|_HEADER(Received)_|
add_header all RelT _RELAYSTRUSTED_
add_header all RelU _RELAYSUNTRUSTED_
add_header all RelI _RELAYSINTERNAL_
add_header all RelE _RELAYSEXTERNAL_
add_header all Last _LASTEXTERNALIP_|_LASTEXTERNALRDNS_|_LASTEXTERNALHELO_|
'''
# the fields of tags that do not depend on the tests hit (compared whatever the two scored)
TESTLESS = ('X-Spam-Esc', 'X-Spam-Multi', 'X-Spam-Bayes', 'X-Spam-Hdr', 'X-Spam-RelT',
            'X-Spam-RelU', 'X-Spam-RelI', 'X-Spam-RelE', 'X-Spam-Last')
MORE = 'add_header all Remote _REMOTEHOSTNAME_\nadd_header all Sub _SUBVERSION_ _HEADER(To)_ _RELAYSTRUSTED_\n'
CLEAR = 'clear_headers\nadd_header all Status _YESNO_ _SCORE_\n'


def head(data):
    return re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1').replace('\r\n', '\n')


def spam_fields(h):
    """{name: [values]} of the X-Spam-* fields of a header block, as written (folded)."""
    out = {}
    for m in re.finditer(r'^(X-Spam-[^:]+): ?(.*(?:\n[ \t].*)*)', h, re.M):
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def unfold(v):
    return re.sub(r'\n\t', ' ', v.replace(',\n\t', ','))


def report_entries(v):
    """X-Spam-Report's hits, each '* SCORE RULE ...' with its continuation lines, sorted;
    the value must start on the line below the name, as SpamAssassin writes it."""
    if not v.startswith('\n\t'):
        return ['(does not start with a fold: %r)' % v[:20]]
    return report_hits(v)


def tests_of(f):
    v = ''.join(f.get('X-Spam-Status', [''])).replace('\n\t', ' ')
    m = re.search(r'tests=(\S*)', v.replace(', ', ','))
    return m.group(1) if m else None


def spammy():
    return ('From: a@example.org\r\nTo: b@example.test\r\nSubject: meeting notes\r\n'
            'Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <addhdr1@example.org>\r\n'
            'X-Test-Spam: yes\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n'
            'Hello Bob,\r\n\r\nthe minutes of the meeting are attached below.\r\n').encode()


def run_pair(label, local, msgs, skip=('X-Spam-Checker-Version',)):
    # report_safe 0 on both sides: spam keeps its own header, the fields added to it
    for name, data, got, out in mt.spamd_pairs(label, 'report_safe 0\n' + local, msgs,
                                               STOCK + '/*.cf'):
        mine = spam_fields(head(got))
        theirs = spam_fields(head(out))
        same_tests = tests_of(mine) == tests_of(theirs)
        names = sorted(set(theirs) | set(mine))
        for f in names:
            if f in skip or f in ('X-Spam-Score', 'X-Spam-Symbols'):
                continue
            a, b = mine.get(f), theirs.get(f)
            if f == 'X-Spam-Status' and a and b:
                # version= is mxgate's own, longer than SpamAssassin's: folded elsewhere
                a, b = [unfold(v) for v in a], [unfold(v) for v in b]
                b = [as_mxgate_version(v, VERSION) for v in b]
            if f == 'X-Spam-Report' and a and b:
                # spamd lists the hits in the order its rules ran, mxgate by name
                a, b = [report_entries(v) for v in a], [report_entries(v) for v in b]
            if f == 'X-Spam-Esc' and b:
                # a tab in a field that is not folded is a space in mxgate's (docs/rules.md)
                b = [v.replace('\t', ' ') for v in b]
            if not same_tests and f not in TESTLESS:
                mt.check((a is None) == (b is None), '%s %s: %s written by both or neither '
                         '(tests differ: %s / %s)' % (label, name, f, tests_of(mine), tests_of(theirs)))
                continue
            mt.check(a == b, '%s %s: %s as spamd writes it:\nmxgate %r\nspamd  %r' % (
                label, name, f, a, b))
        yield name, mine, theirs


CASES = [(os.path.basename(p), open(p, 'rb').read()) for p in MSGS] + [('local-spam', spammy())]
seen = {}
for name, mine, theirs in run_pair('local', LOCAL, CASES):
    seen[name] = mine
mt.check(any('X-Spam-Flag' in f and 'X-Spam-Custom' in f for f in seen.values()), 'a spam seen')
mt.check(any('X-Spam-Level' not in f and 'X-Spam-Custom' in f for f in seen.values()),
         'a ham seen (no X-Spam-Level: remove_header ham Level)')
mt.check(any(f.get('X-Spam-Last', ['||'])[0] != '||' for f in seen.values()),
         'a message with an external relay seen (_LASTEXTERNALIP_ set)')

for name, mine, theirs in run_pair('clear', CLEAR, CASES[-2:]):
    mt.check(not ({'X-Spam-Level', 'X-Spam-Flag'} & set(mine)),
             'clear %s: clear_headers leaves no X-Spam-Level or -Flag (%s)' % (name, sorted(mine)))

# -t names the add_header tags mxgate does not expand
path = os.path.join(mt.TMP, 'more.cf')
with open(path, 'w') as f:
    f.write(MORE)
rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:1'], listen=[{'address': '127.0.0.1:1'}],
                                     rules={'files': [path]}))
mt.check(rc == 0 and re.search(r'more\.cf:1:1: warning: add_header all Remote: _REMOTEHOSTNAME_ '
                               r'is not expanded', out) is not None,
         '-t warns of a tag mxgate does not expand:\n%s' % out)
mt.check('more.cf:2:' not in out, '-t: _SUBVERSION_, _HEADER(x)_ and _RELAYSTRUSTED_ are expanded:\n%s' % out)
mt.finish()
