#!/usr/bin/env python3
"""From the outside: the mail admin of a 2,000-person company whose MX is Postfix with
amavisd-new as an after-queue content filter (SpamAssassin in amavis, ClamAV's clamd, a
local.cf of their own) puts mxgate in front and retires amavis. The config is written from
docs/ alone (docs/plugins.md "Coming from amavisd-new", docs/rules.md), against a real clamd
(EICAR-only signatures plus a .cdb of banned file names) and Debian's stock SpamAssassin
rules with the admin's local.cf as it is; a recording backend stands for Postfix on 10025.

What the admin writes:
    quarantine: maildir:/var/spool/mxgate/quarantine     # $QUARANTINEDIR
    plugins: [{ name: clamd, address: 127.0.0.1:3310 }]  # @av_scanners, $final_virus_destiny
    rules: { files: [/usr/share/spamassassin/*.cf, /etc/spamassassin/local.cf],
             actions: { add_header: 6.31, reject: 10 } } # $sa_tag2_level_deflt, $sa_kill_level_deflt

Checked here (what must hold; the gaps are in the docs' table, not asserted):
- `mxgate -t` takes the config and the local.cf as it is, and says which of its lines it does
  not apply (required_score: the thresholds are rules.actions);
- ham is delivered with X-Spam-Status: No and no X-Spam-Flag, its Subject untouched;
- spam between tag2 (add_header) and kill (reject) is delivered tagged: X-Spam-Flag: YES,
  X-Spam-Status: Yes with the local rule named, X-Spam-Score, the Subject `***SPAM*** ...`
  (local.cf's rewrite_header, amavis's $sa_spam_subject_tag) and X-Spam-Prev-Subject;
- the sender's own X-Spam-Flag: NO / X-Spam-Status: No are removed, never passed on;
- local.cf's score override of a stock rule (score GTUBE 50) is what counts, and above kill
  the message is refused 550 5.7.1 and never relayed (amavis: D_REJECT, 554 5.7.0);
- EICAR: 554 5.7.1 with the virus name, never relayed (amavis: $final_virus_destiny D_REJECT);
- banned names (amavis's $banned_filename_re): a .exe attachment and a .scr inside a zip are
  refused by clamd's .cdb container signatures, the clean zip relayed;
- a raw 8-bit Subject (amavis's bad-header check) is delivered and scored by the local rule;
- local.cf's trusted_networks is read: a message through the company's own relay hits
  ALL_TRUSTED, one through an outside relay does not; a local handover on 127.0.0.1 of a
  message from an internet relay leaves that relay untrusted, as SpamAssassin does (before,
  loopback counted as an msa_networks entry and the relay before it was trusted: ALL_TRUSTED
  on outside mail; this check failed on main's binary);
- with clamd's action quarantine (amavis's D_DISCARD + virus_quarantine_to): 250, the
  message in the quarantine maildir only, with X-Mxgate-Quarantine naming the virus.
"""
import base64
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

STOCK = '/usr/share/spamassassin'
mt.need('clamd')
if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    mt.skip('stock SpamAssassin rules not installed')

EICAR = b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
EXE = b'MZ\x90\x00' + b'\x00' * 200 + b'This program cannot be run in DOS mode.\r\n'

# amavis's $banned_filename_re for executables, as ClamAV container metadata signatures
# (sigtool's .cdb: VirusName:ContainerType:ContainerSize:FileNameREGEX:...): the names of
# a mail's attachments (CL_TYPE_MAIL) and of the members of a zip (CL_TYPE_ZIP)
BANNED_CDB = ''.join(
    'Banned.Executable.%s:%s:*:.*\\.([eE][xX][eE]|[sS][cC][rR]|[pP][iI][fF])$:*:*:*:*:*:*\n' % (n, t)
    for n, t in (('InMail', 'CL_TYPE_MAIL'), ('InZip', 'CL_TYPE_ZIP')))

# the admin's /etc/spamassassin/local.cf of the amavis years, as it is
LOCAL_CF = r'''# local.cf (amavisd-new + SpamAssassin)
required_score 6.31
rewrite_header Subject ***SPAM***
report_safe 0
trusted_networks 10.1.0.0/16
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
score GTUBE 50
body LOCAL_WIRE_NOW /\bwire transfer now\b/i
describe LOCAL_WIRE_NOW Urgent wire transfer request
score LOCAL_WIRE_NOW 7.0
header LOCAL_8BIT_SUBJ Subject:raw =~ /[\x80-\xff]/
describe LOCAL_8BIT_SUBJ Raw 8-bit octets in Subject
score LOCAL_8BIT_SUBJ 0.5
'''


def text_msg(tag, subject, body, headers=(), relay=None):
    h = ['Received: from relay.example.org (relay.example.org [%s]) by mail.example.org' % relay,
         '\twith ESMTP id 4AB; Mon, 01 Jan 2024 00:00:00 +0000'] if relay else []
    h += ['From: <sender@example.org>', 'To: <user@example.test>', 'Subject: ' + subject,
         'Message-ID: <%s@mxtest.example>' % tag, 'Date: Mon, 01 Jan 2024 00:00:00 +0000']
    return ('\r\n'.join(list(headers) + h) + '\r\n\r\n' + body).encode()


zipped = mt.zipped


def attach_msg(tag, fname, payload, ctype='application/octet-stream'):
    b64 = base64.encodebytes(payload).decode().replace('\n', '\r\n')
    return ('From: <sender@example.org>\r\nTo: <user@example.test>\r\nSubject: files %s\r\n'
            'Message-ID: <%s@mxtest.example>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n'
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            '--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
            '--b1\r\nContent-Type: %s; name="%s"\r\nContent-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="%s"\r\n\r\n%s--b1--\r\n'
            % (tag, tag, ctype, fname, fname, b64)).encode()


header = mt.header_values


def send(port, data, src='198.18.5.5'):
    """One message from client src (a PROXY v2 header: mxgate is the MX, its clients the
    internet's, or the company's own relays)."""
    return mt.send_mail(port, 'sender@example.org', ['user@example.test'], data, proxy_src=src, timeout=60)


cl = mt.clamd(extra_db={'mxgate-banned.cdb': BANNED_CDB})
be = mt.Backend()
local_cf = os.path.join(mt.TMP, 'local.cf')
with open(local_cf, 'w') as f:
    f.write(LOCAL_CF)
qdir = os.path.join(mt.TMP, 'quarantine')
cfg = mt.proxied_config([be.url], quarantine='maildir:' + qdir,
                accept_domains=['example.test'],
                plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'timeout': '30s'}],
                rules={'files': [STOCK + '/*.cf', local_cf],
                       'actions': {'add_header': 6.31, 'reject': 10}})
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]), 'amavis')
mt.check(rc == 0, 'mxgate -t takes the config and local.cf as they are: %s %s' % (rc, out.strip()[:300]))
mt.check('local.cf:2:1: warning: required_score 6.31 is not applied' in out,
         '-t says local.cf\'s required_score is not applied (the thresholds are rules.actions): %s'
         % [ln for ln in out.splitlines() if 'required_score' in ln])
mx = mt.Mxgate(cfg, 'mx-amavis')

# ------------------------------------------------------------------ ham and tagged spam
code, text = send(mx.port, text_msg('ham1', 'lunch on friday', 'See you at noon.\r\n'))
got = be.by_tag('ham1')
mt.check(code == 250 and len(got) == 1, 'ham: 250, relayed once (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    st = header(d, 'X-Spam-Status')
    mt.check(len(st) == 1 and st[0].startswith('No, score=') and 'required=6.3' in st[0],
             'ham: X-Spam-Status: No ... required=6.3 (tag2_level): %s' % st)
    mt.check(not header(d, 'X-Spam-Flag') and header(d, 'Subject') == ['lunch on friday'],
             'ham: no X-Spam-Flag, Subject untouched: %s %s' % (header(d, 'X-Spam-Flag'), header(d, 'Subject')))

code, text = send(mx.port, text_msg(
    'tag1', 'payment', 'Please make the wire transfer now, the CEO asked.\r\n',
    headers=('X-Spam-Flag: NO', 'X-Spam-Status: No, score=-5.0 required=5.0')))
got = be.by_tag('tag1')
mt.check(code == 250 and len(got) == 1, 'spam above tag2, below kill: delivered (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    st = header(d, 'X-Spam-Status')
    mt.check(header(d, 'X-Spam-Flag') == ['YES'], 'tagged: X-Spam-Flag: YES, the sender\'s NO gone: %s'
             % header(d, 'X-Spam-Flag'))
    mt.check(len(st) == 1 and st[0].startswith('Yes, score=') and 'LOCAL_WIRE_NOW' in st[0],
             'tagged: one X-Spam-Status, Yes, naming the local.cf rule: %s' % st)
    sc = header(d, 'X-Spam-Score')
    mt.check(len(sc) == 1 and 6.31 <= float(sc[0]) < 10, 'tagged: X-Spam-Score between tag2 and kill: %s' % sc)
    mt.check(header(d, 'Subject') == ['***SPAM*** payment'] and header(d, 'X-Spam-Prev-Subject') == ['payment'],
             'tagged: Subject ***SPAM*** (local.cf rewrite_header), the old one in X-Spam-Prev-Subject: %s %s'
             % (header(d, 'Subject'), header(d, 'X-Spam-Prev-Subject')))

# ------------------------------------------------------------------ kill level, local.cf's score override
start = mx.log_size()
code, text = send(mx.port, text_msg('kill1', 'offer', GTUBE + '\r\n'))
mt.check(code == 550 and '5.7.1' in text and not be.by_tag('kill1'),
         'above kill_level: 550 5.7.1, never relayed (%s %s)' % (code, text))
mx.wait_log(r'event=rules .*GTUBE', start=start)
line = [ln for ln in mx.log()[start:].splitlines() if 'event=rules ' in ln and 'GTUBE' in ln]
score = float(re.search(r' score=(-?[\d.]+)', line[0]).group(1)) if line else None
mt.check(score is not None and 45 <= score < 100,
         'local.cf\'s "score GTUBE 50" overrides the stock 1000: %s' % line)

# ------------------------------------------------------------------ viruses and banned files
code, text = send(mx.port, attach_msg('vir1', 'eicar.com', EICAR))
mt.check(code == 554 and '5.7.1' in text and 'MxGate.Test.EICAR' in text and not be.by_tag('vir1'),
         'EICAR: 554 5.7.1 with the virus name, never relayed (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban1', 'invoice.exe', EXE))
mt.check(code == 554 and 'Banned.Executable.InMail' in text and not be.by_tag('ban1'),
         'banned: invoice.exe attached: 554, never relayed (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban2', 'invoice.zip', zipped('INVOICE.SCR', EXE), 'application/zip'))
mt.check(code == 554 and 'Banned.Executable.InZip' in text and not be.by_tag('ban2'),
         'banned: INVOICE.SCR inside a zip: 554, never relayed (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('zip1', 'report.zip', zipped('report.txt', b'figures\n'), 'application/zip'))
mt.check(code == 250 and len(be.by_tag('zip1')) == 1, 'a zip of a text file: relayed (%s %s)' % (code, text))

# ------------------------------------------------------------------ bad header (8-bit Subject)
code, text = send(mx.port, text_msg('bad8', 'X', 'Agenda attached.\r\n').replace(
    b'Subject: X', b'Subject: r\xe9union'))
got = be.by_tag('bad8')
mt.check(code == 250 and len(got) == 1, '8-bit Subject: delivered (%s %s)' % (code, text))
if got:
    st = header(got[0]['data'], 'X-Spam-Status')
    mt.check(len(st) == 1 and 'LOCAL_8BIT_SUBJ' in st[0] and b'Subject: r\xe9union' in got[0]['data'],
             '8-bit Subject: scored by the local rule, the octets passed as sent: %s' % st)

# ------------------------------------------------------------------ trusted_networks from local.cf
# the company's own outbound relay (10.1.2.3) hands in a message from a workstation
# (10.1.9.9): all trusted; an internet client is not
code, _ = send(mx.port, text_msg('tr1', 'internal', 'hello\r\n', relay='10.1.9.9'), src='10.1.2.3')
code2, _ = send(mx.port, text_msg('tr2', 'external', 'hello\r\n'), src='198.18.7.8')
# a local handover (a Postfix on this host relaying to mxgate on 127.0.0.1, as amavis's
# reinjection) of a message from an internet relay: loopback is trusted, not an MSA, so the
# relay before it stays untrusted, as SpamAssassin has it. Before, mxgate took 127.0.0.1 for
# an msa_networks entry and trusted the next relay: ALL_TRUSTED (-1) on outside mail.
code3, _ = send(mx.port, text_msg('tr3', 'handover', 'hello\r\n', relay='198.18.7.7'), src='127.0.0.1')
a, b, c = be.by_tag('tr1'), be.by_tag('tr2'), be.by_tag('tr3')
mt.check(code == 250 and code2 == 250 and code3 == 250 and a and b and c,
         'all three relayed (%s %s %s)' % (code, code2, code3))
if a and b and c:
    sa, sb, sc = (''.join(header(m[0]['data'], 'X-Spam-Status')) for m in (a, b, c))
    mt.check('ALL_TRUSTED' in sa and 'ALL_TRUSTED' not in sb,
             'local.cf trusted_networks: the own relay ALL_TRUSTED, an internet client not: %s | %s' % (sa, sb))
    mt.check('ALL_TRUSTED' not in sc,
             'a handover on 127.0.0.1 does not trust the internet relay before it: %s' % sc)
mx.stop()

# ------------------------------------------------------------------ virus to the quarantine
qcfg = dict(cfg, plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'timeout': '30s',
                           'options': {'action': 'quarantine'}}])
mq = mt.Mxgate(qcfg, 'mx-amavis-q')
code, text = send(mq.port, attach_msg('vir2', 'eicar.com', EICAR))
held = [open(f, 'rb').read() for f in glob.glob(qdir + '/new/*')]
held = [h for h in held if b'<vir2@' in h]
mt.check(code == 250 and not be.by_tag('vir2') and len(held) == 1,
         'clamd action quarantine: 250, in the quarantine maildir only (%s %s, %d held)' % (code, text, len(held)))
if held:
    q = header(held[0], 'X-Mxgate-Quarantine')
    mt.check(len(q) == 1 and 'MxGate.Test.EICAR' in q[0], 'X-Mxgate-Quarantine names the virus: %s' % q)
mq.stop()
mt.stop_proc(cl)
mt.finish()
