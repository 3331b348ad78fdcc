#!/usr/bin/env python3
"""test_rules_reportsafe — `report_safe 1` (Debian's stock value) and `report_safe 2`: spam is
wrapped into a new message as spamd wraps it (PerMsgStatus::rewrite_report_safe): its
header fields in SpamAssassin's order, the report as text/plain (report template, tags,
_PREVIEW_, _SUMMARY_, unsafe_report for a message that is not text/plain), the original as
message/rfc822 (1) or text/plain (2), intact. Ham goes on unchanged but for the fields, at
the top of its header as spamd puts them (rewrite_no_report_safe), as does spam with
report_safe 0.

Both sides score Debian's stock rules plus the same local.cf; the whole message mxgate
delivers (its own SMTP Received field above left out) is compared with spamc's output on
the same bytes, after what cannot be the same is made so: the MIME boundary (time and
random), SpamAssassin's Received field (its version and clock), X-Spam-Checker-Version
(mxgate writes none), mxgate's own X-Spam-Score and X-Spam-Symbols, version= in
X-Spam-Status, and the order of the report's hits (spamd's is its rules' run order, mxgate's
by name). When the two score a message differently, only the structure and the original
inside are compared. Peers: the recording Backend, spamd/spamc."""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from sa_pair import STOCK, as_mxgate_version, need_spamd, report_hits  # noqa: E402

VERSION = need_spamd()

LOCAL = r'''
header LOC_SPAM X-Test-Spam =~ /yes/
describe LOC_SPAM A local test rule whose description is long enough to be wrapped by SpamAssassin's report at 75 columns
score LOC_SPAM 20
report_hostname mx.test
'''


def msg(subject='meeting notes', ctype='text/plain', body=None, extra='', mid='rs1'):
    h = 'From: Alice <a@example.org>\r\nTo: b@example.test\r\n'
    if subject is not None:
        h += 'Subject: %s\r\n' % subject
    h += ('Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n'
          'X-Test-Spam: yes\r\n%sMIME-Version: 1.0\r\n' % (mid, extra))
    if ctype:
        h += 'Content-Type: %s\r\n' % ctype
    body = body or ('Hello Bob,\r\n\r\nthe minutes of the meeting are attached below, with the '
                    'figures we spoke of on Tuesday.\r\n\r\n-----Original Message-----\r\n'
                    'From: Carol\r\n\r\n______________________________\r\nRegards\r\n')
    return (h + '\r\n' + body).encode()


HTML = msg(ctype='text/html; charset=utf-8', mid='rs2',
           body='<html><body><p>Cheap offer</p><p>Click <a href="http://example.com/x">here'
                '</a> now</p></body></html>\r\n')
FORGED = msg(mid='rs3', extra='X-Spam-Status: No, score=-5.0\r\nX-Spam-Flag: NO\r\n'
                            'Cc: c@example.test,\r\n\td@example.test\r\n')
NOSUBJ = msg(subject=None, ctype=None, mid='rs4', extra='X-Copy-Me: one\r\nX-Copy-Me: two\r\n')
LONGLINE = msg(mid='rs5', body=('word ' * 80).strip() + '\r\nsecond line\r\nthird\r\nfourth\r\n')
HAM = (b'From: a@example.org\r\nTo: b@example.test\r\nSubject: lunch\r\n'
       b'Date: Fri, 04 Dec 2026 12:00:00 +0000\r\nMessage-ID: <rs6@example.org>\r\n\r\n'
       b'See you at noon.\r\n')
# a line of the header that is no field (SpamAssassin skips up to three) and a Subject with
# a blank before its colon (get_pristine_header's /^Subject[ \t]*:/ reads it, the last one)
MALFORMED = msg(mid='rs8', extra='Bogus line without a colon\r\nSubject : spaced\r\n')
CASES = [('plain', msg()), ('html', HTML), ('forged', FORGED), ('nosubject', NOSUBJ),
         ('longline', LONGLINE), ('ham', HAM), ('malformed', MALFORMED)]
CASES += [(os.path.basename(p), open(p, 'rb').read())
          for p in sorted(glob.glob(os.path.join(mt.SRC, 'tests', 'data', 'sa', 'spam-*.eml')))]

BOUNDARY = re.compile(rb'----------=_[0-9A-F]{8}\.[0-9A-F]{8}(?:/[0-9A-F]{8})*')


def split_head(data):
    m = re.search(rb'\r?\n\r?\n', data)
    return (data[:m.start() + 2], data[m.end():]) if m else (data, b'')


def fields(head):
    return re.findall(rb'^[^ \t\r\n][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n', head, re.M)


def tests_of(head):
    m = re.search(rb'^X-Spam-Status:.*?tests=([^ ]*?)\s+autolearn', unfold(head), re.M | re.S)
    return m.group(1) if m else None


def unfold(b):
    return re.sub(rb'\r?\n[ \t]+', b' ', b)


def normal(data, mine):
    """The message with what cannot be the same made so (see the module's doc)."""
    data = BOUNDARY.sub(b'BOUNDARY', data)
    head, body = split_head(data)
    # rewrite_header From/To's "\t(TAG)": SpamAssassin puts it between a CRLF message's CR
    # and LF (a bare CR, which mxgate never writes), and the tab of a field that is not
    # folded is a blank in mxgate's (docs/rules.md)
    head = re.sub(rb'(?m)^((?:From|To):[^\r\n]*?)\r?\t\(', rb'\1 (', head)
    fs = fields(head)
    if mine:
        fs = fs[1:]     # mxgate's own SMTP Received field
    out = []
    for f in fs:
        name = f.split(b':', 1)[0].lower()
        if name in (b'x-spam-score', b'x-spam-symbols', b'x-spam-checker-version'):
            continue
        if re.match(rb'Received: from localhost by ', f):
            f = b'Received: from localhost (SpamAssassin or mxgate)\r\n'
        # a field's trailing blanks (SpamAssassin's "Subject: TAG " made for a message
        # without one) are not written by mxgate (docs/rules.md)
        f = re.sub(rb'[ \t]+(\r?\n)$', rb'\1', f)
        if name == b'x-spam-status':
            f = as_mxgate_version(unfold(f), VERSION)
        if name == b'x-spam-report':
            # spamd lists the hits in the order its rules ran, mxgate by name
            f = b'\r\n\t'.join(report_hits(f.rstrip(b'\r\n'))) + b'\r\n'
        out.append(f)
    # the summary's hits (an entry and its continuation lines), each run of them sorted
    lines, runs = body.split(b'\r\n'), []
    for ln in lines:
        if re.match(rb'^[ -]?[ \d]{0,3}\d(?:\.\d)? [A-Z][A-Z0-9_]* ', ln):
            if runs and isinstance(runs[-1], list):
                runs[-1].append(ln)
            else:
                runs.append([ln])
        elif ln.startswith(b' ' * 28) and runs and isinstance(runs[-1], list):
            runs[-1][-1] += b'\r\n' + ln
        else:
            runs.append(ln)
    body = b'\r\n'.join(b'\r\n'.join(sorted(r)) if isinstance(r, list) else r for r in runs)
    return b''.join(out), body


def original_inside(data, sent):
    """The original, between the second part's header and the closing boundary."""
    m = re.search(rb'x-spam-type=original\r\n(?:[^\r\n]+\r\n)*\r\n(.*)\r\n--(----------=_\S+)--\r\n\r\n$',
                  data, re.S)
    return m is not None and m.group(1) == sent


def run(label, local, cases):
    for name, data, mine, theirs in mt.spamd_pairs(label, local, cases, STOCK + '/*.cf'):
        wrapped = b'x-spam-type=original' in theirs
        mt.check(wrapped == (b'x-spam-type=original' in mine),
                 '%s %s: wrapped by both or neither (spamd %s)' % (label, name, wrapped))
        if wrapped:
            mt.check(original_inside(mine, data), '%s %s: the original inside, intact' % (label, name))
        mh, mb = normal(mine, True)
        th, tb = normal(theirs, False)
        if tests_of(mh) != tests_of(th):
            mt.check([f.split(b':')[0] for f in fields(mh) if not f.startswith(b'X-Spam')] ==
                     [f.split(b':')[0] for f in fields(th) if not f.startswith(b'X-Spam')],
                     '%s %s: the same fields in the same order (tests differ: %s / %s)' % (
                         label, name, tests_of(mh), tests_of(th)))
            yield name, mine, theirs
            continue
        mt.check(mh == th, '%s %s: the header as spamd writes it:\nmxgate %r\nspamd  %r' % (
            label, name, mh, th))
        mt.check(mb == tb, '%s %s: the body as spamd writes it:\nmxgate %r\nspamd  %r' % (
            label, name, mb[:3000], tb[:3000]))
        yield name, mine, theirs


seen = dict((n, m) for n, m, t in run('safe1', LOCAL, CASES))
mt.check(b'Content-Type: message/rfc822; x-spam-type=original' in seen.get('plain', b''),
         'report_safe 1: the original as message/rfc822')
mt.check(b'x-spam-type=original' not in seen.get('ham', b'x-spam-type=original'),
         'ham is not wrapped')

LOCAL2 = LOCAL + ('report_safe 2\nrewrite_header Subject [SPAM _SCORE_]\nreport_contact postmaster@mx.test\n'
                  'rewrite_header From SPAM(_SCORE_)\nrewrite_header To *** SPAM ***\n'
                  'report_safe_copy_headers X-Copy-Me Received\nreport_charset iso-8859-1\n'
                  'clear_report_template\nreport Contact _CONTACTADDRESS_ on _HOSTNAME_: '
                  '_YESNO_ _SCORE_/_REQD_\nreport "  quoted  "\nreport _PREVIEW_\nreport\n'
                  'report _SUMMARY_\nreport From _HEADER(From:addr)_ via [_LASTEXTERNALIP_]\n')
seen = dict((n, m) for n, m, t in run('safe2', LOCAL2, CASES[:5]))
mt.check(b'Content-Type: text/plain; x-spam-type=original' in seen.get('plain', b''),
         'report_safe 2: the original as text/plain')
mt.check(re.search(rb'\r\nFrom: Alice <a@example\.org> \(SPAM\[\d+\.\d\]\)\r\nTo: b@example\.test '
                   rb'\(\*\*\* SPAM \*\*\*\)\r\n', seen.get('plain', b'')) is not None and
         b'From a@example.org via []' in seen.get('plain', b''),
         'report_safe 2: rewrite_header From and To tag the wrapper, _HEADER(From:addr)_ in the report')

# report_safe 0 in a later file: spam is marked by its fields alone, and the spam list gets
# SpamAssassin's Report field
LOCAL0 = LOCAL + 'report_safe 0\n'
RPATH = b'Return-Path: <a@example.org>\r\nX-Spam-Flag: NO\r\n' + msg(mid='rs7')
for name, mine, theirs in run('safe0', LOCAL0, CASES[:1] + [('return-path', RPATH)]):
    mt.check(b'x-spam-type=original' not in mine and b'\r\nX-Spam-Report: ' in mine,
             'report_safe 0: not wrapped, X-Spam-Report written')

# rules.mode log (a dry run, the fields alone): spam is not wrapped
path = os.path.join(mt.TMP, 'log.cf')
with open(path, 'w') as f:
    f.write(LOCAL + 'report_safe 1\n')
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], rules={'files': [path], 'mode': 'log',
                                          'actions': {'add_header': 5}}), name='mxgate-log')
mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, 'log: rules loaded')
code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], msg())
mt.check(code == 250 and mt.wait_for(lambda: be.messages, timeout=mt.slack(10)), 'log: delivered')
got = be.messages[-1]['data'] if be.messages else b''
mt.check(b'X-Spam-Flag: YES' in got and b'x-spam-type=original' not in got and
         got.endswith(msg().split(b'\r\n\r\n', 1)[1]), 'log: spam marked, not wrapped')
mx.stop()

# -t: an invalid report_safe is an error at its line
path = os.path.join(mt.TMP, 'bad.cf')
with open(path, 'w') as f:
    f.write('report_safe 3\n')
rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:1'], listen=[{'address': '127.0.0.1:1'}],
                                     rules={'files': [path]}))
mt.check(rc != 0 and re.search(r'bad\.cf:1:13: report_safe: invalid value', out) is not None,
         '-t: report_safe 3 is an error at its value:\n%s' % out)
mt.finish()
