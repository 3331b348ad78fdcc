#!/usr/bin/env python3
"""From the outside: a site whose MX is a Proxmox Mail Gateway (or MailScanner on a Postfix
hold queue) in front of its Exchange/Postfix moves to mxgate. The policy is written from docs/
alone (docs/plugins.md "Coming from Proxmox Mail Gateway or MailScanner", docs/rules.md,
docs/filters-limits.md "bypass", docs/operations.md), against a real clamd (EICAR-only
signatures, a .cdb of blocked file names and an .ndb of blocked file types), Debian's stock
SpamAssassin rules with the site's local.cf, and a recording backend for the mail server.

Two domains: corp.example (the company, strict) and shop.example (a shop that wants its
orders whatever they look like: PMG's rule "Who: shop.example -> Accept", MailScanner's
`Spam Checks = %rules-dir%/spam.checks.rules` with `To: *@shop.example no`).

What the operator expects, each a check:
- spam tagging below the refusal: X-Spam-Flag/X-Spam-Status and the Subject prefix
  (MailScanner's `Spam Subject Text = {Spam?}`) from `rules.actions.add_header`, the
  quarantine from `actions.quarantine` (PMG's "Quarantine/Mark Spam (Level 5)"), a refusal
  from `actions.reject` (MailScanner's High Scoring Spam with `delete`: here 550, no backscatter);
- a virus (EICAR) refused 554 with its name;
- blocked attachments (PMG's "Block Dangerous Files", MailScanner's filename.rules.conf and
  filetype.rules.conf): a .exe attached, a .scr in a zip, an executable named .jpg (its type,
  from its first bytes), each refused `554 5.7.1 Attachment blocked: NAME` (clamd's
  `blocked_prefix`: before, `Virus found: NAME`, counted as a virus; a gap fixed in this
  session), not counted in mxgate_viruses_found_total; a rule on the
  attachment name (mimeheader + `action reject`) refuses with the rule's name, also for a
  name written as an RFC 2047 encoded word;
- per-domain policy: shop.example's mail is not spam-scored (`bypass`), corp.example's is;
  one message to both is split (`bypass_mixed: split`: 452 4.5.3 for corp.example's
  recipient, which the sender sends alone), as PMG gives each recipient its own rules;
- per-domain thresholds (MailScanner's `High SpamAssassin Score` as a ruleset `To:
  *@lenient.example 30`): lenient.example quarantines at 30 (`rules.recipient_actions`), so
  the 10.5 corp.example quarantines is delivered to it, tagged; to both domains the message
  gets the milder action, delivered to both (no split; the key did not exist before);
- white- and blacklists: local.cf's welcomelist_from / blocklist_from for everyone; a
  per-domain sender blacklist as envelope rules and a meta with `action reject`; a
  per-domain sender whitelist (PMG "Whitelist" rule with a To object; MailScanner
  spam.whitelist.rules `From: *@partner.example and To: *@corp.example yes`): the sender
  from partner.example to corp.example is not spam-scored, the same sender to another
  domain and another sender to corp.example are (bypass `senders`; the key did not exist
  before: `-t` refused it, a gap fixed in this session);
- statistics: `mxgatectl top clients|reasons|rules` and the /metrics counters of spam,
  viruses, quarantined and refused messages.
The gaps (top senders, release from the quarantine, the daily spam report) are in the docs'
table, not asserted; per-domain thresholds (rules.recipient_actions, session 28) are
test_rules_recipient_actions'.
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

EICAR = mt.EICAR.encode()
GTUBE = mt.GTUBE
EXE = b'MZ\x90\x00\x03\x00\x00\x00' + b'\x00' * 200 + b'This program cannot be run in DOS mode.\r\n'

# PMG's "Dangerous Files" filename objects / MailScanner's filename.rules.conf, as ClamAV
# container metadata signatures (.cdb): the names of a mail's attachments (CL_TYPE_MAIL)
# and of the members of a zip (CL_TYPE_ZIP)
BLOCKED_CDB = ''.join(
    'Blocked.Filename.%s:%s:*:.*\\.([eE][xX][eE]|[sS][cC][rR]|[pP][iI][fF]|[bB][aA][tT])$:*:*:*:*:*:*\n'
    % (n, t) for n, t in (('InMail', 'CL_TYPE_MAIL'), ('InZip', 'CL_TYPE_ZIP')))
# MailScanner's filetype.rules.conf "deny executable": a file whose content starts "MZ\x90\0"
# (a DOS/Windows executable) whatever its name, attached or in an archive (.ndb, target any)
BLOCKED_NDB = 'Blocked.Filetype.Executable:0:0:4d5a9000\n'

# the site's local.cf (MailScanner's spam.assassin.prefs.conf), as it is
LOCAL_CF = r'''# local.cf
rewrite_header Subject {Spam?}
report_safe 0
use_bayes 0
skip_rbl_checks 1
score GTUBE 50
body LOCAL_WIRE_NOW /\bwire transfer now\b/i
describe LOCAL_WIRE_NOW Urgent wire transfer request
score LOCAL_WIRE_NOW 4.0
body LOCAL_PRIZE /\byou have won a prize\b/i
describe LOCAL_PRIZE Prize notification
score LOCAL_PRIZE 6.5
welcomelist_from *@friend.example
blocklist_from *@spammer.example
'''

# PMG's "Block Dangerous Files" as a rule of one's own: the name of an attachment
RULES = r'''mimeheader BLOCKED_ATTACHMENT_JS Content-Disposition =~ /filename="?[^";]*\.(?:js|vbs|hta)"?/i
describe BLOCKED_ATTACHMENT_JS Script attachment (.js, .vbs, .hta)
score BLOCKED_ATTACHMENT_JS 0.1
action BLOCKED_ATTACHMENT_JS reject
envelope __BL_FROM from =~ /@rival\.example$/i
envelope __TO_CORP rcpt =~ /@corp\.example$/i
meta CORP_BL __BL_FROM && __TO_CORP
describe CORP_BL corp.example does not take mail from rival.example
action CORP_BL reject
'''


def text_msg(tag, subject, body, frm='sender@example.org', to='user@corp.example'):
    return ('From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@mxtest.example>\r\n'
            'Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n%s' % (frm, to, subject, tag, body)).encode()


zipped = mt.zipped
header = mt.header_values


def attach_msg(tag, fname, payload, ctype='application/octet-stream', disp_name=None):
    b64 = base64.encodebytes(payload).decode().replace('\n', '\r\n')
    disp = disp_name or '"%s"' % fname
    return ('From: <sender@example.org>\r\nTo: <user@corp.example>\r\nSubject: files %s\r\n'
            'Message-ID: <%s@mxtest.example>\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n'
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            '--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
            '--b1\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename=%s\r\n\r\n%s--b1--\r\n'
            % (tag, tag, ctype, disp, b64)).encode()


def send(port, data, frm='sender@example.org', to=('user@corp.example',), src='198.18.5.5'):
    """One message from client src (PROXY v2: mxgate is the MX, its clients the internet's)."""
    return mt.send_mail(port, frm, list(to), data, proxy_src=src, timeout=60)


cl = mt.clamd(extra_db={'mxgate-blocked.cdb': BLOCKED_CDB, 'mxgate-blocked.ndb': BLOCKED_NDB})
be = mt.Backend()
local_cf = os.path.join(mt.TMP, 'local.cf')
with open(local_cf, 'w') as f:
    f.write(LOCAL_CF)
site_rules = os.path.join(mt.TMP, 'pmg.rules')
with open(site_rules, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'pmg-control.sock')
cfg = mt.proxied_config(
    [be.url], quarantine='maildir:' + qdir,
    accept_domains=['corp.example', 'shop.example', 'other.example', 'lenient.example'],
    control={'socket': sock},
    metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
    plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'timeout': '30s',
              'options': {'blocked_prefix': 'Blocked.'}}],
    rules={'files': [STOCK + '/*.cf', local_cf, site_rules],
           'actions': {'add_header': 5, 'quarantine': 10, 'reject': 20},
           'recipient_actions': [{'recipients': ['lenient.example'], 'quarantine': 30, 'reject': 60}]},
    bypass=[{'recipients': ['shop.example'], 'checks': ['rules']},
            {'recipients': ['corp.example'], 'senders': ['@partner.example', 'boss@home.example'],
             'checks': ['rules']}])
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]), 'pmg')
mt.check(rc == 0, 'mxgate -t takes the policy (bypass with senders included): %s %s' % (rc, out.strip()[:400]))
if rc != 0:
    mt.stop_proc(cl)
    mt.finish()
bad = dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}],
           plugins=[{'name': 'clamd', 'address': '127.0.0.1:3310', 'options': {'blocked_prefix': 'B' * 64}}],
           bypass=[{'senders': ['<ap@partner.example>'], 'checks': ['rules']},
                   {'recipients': [], 'checks': ['rules']}])
rc, out = mt.config_check(bad, 'pmg-bad')
mt.check(rc == 1 and 'options.blocked_prefix: longer than 63 octets' in out
         and re.search(r'pmg-bad\.yaml:\d+:\d+: bypass\[0\]\.senders\[0\]: "<ap@partner\.example>"', out)
         and 'bypass[1].recipients: an entry needs recipients, senders or both' in out,
         '-t: a too long blocked_prefix, a sender in <>, an entry with neither list, each at its place: %s' % out.strip())
mx = mt.Mxgate(cfg, 'mx-pmg')

# ------------------------------------------------------------------ ham, tag, quarantine, reject
code, text = send(mx.port, text_msg('ham1', 'lunch on friday', 'See you at noon.\r\n'))
got = be.by_tag('ham1')
mt.check(code == 250 and len(got) == 1, 'ham: 250, relayed once (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    mt.check(header(d, 'Subject') == ['lunch on friday'] and not header(d, 'X-Spam-Flag')
             and header(d, 'X-Spam-Status')[0].startswith('No,'),
             'ham: Subject untouched, X-Spam-Status: No, no X-Spam-Flag: %s %s'
             % (header(d, 'Subject'), header(d, 'X-Spam-Status')))

code, text = send(mx.port, text_msg('tag1', 'payment', 'Dear customer, you have won a prize.\r\n'))
got = be.by_tag('tag1')
mt.check(code == 250 and len(got) == 1, 'spam between add_header and quarantine: delivered (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    sc = header(d, 'X-Spam-Score')
    mt.check(header(d, 'Subject') == ['{Spam?} payment'] and header(d, 'X-Spam-Prev-Subject') == ['payment'],
             'tagged: Subject "{Spam?} payment" (MailScanner\'s Spam Subject Text by local.cf\'s '
             'rewrite_header): %s %s' % (header(d, 'Subject'), header(d, 'X-Spam-Prev-Subject')))
    mt.check(header(d, 'X-Spam-Flag') == ['YES'] and len(sc) == 1 and 5 <= float(sc[0]) < 10,
             'tagged: X-Spam-Flag: YES, X-Spam-Score between 5 and 10: %s %s' % (header(d, 'X-Spam-Flag'), sc))

code, text = send(mx.port, text_msg('quar1', 'prize', 'You have won a prize. Wire transfer now.\r\n'
                                    'Regards.\r\n'))
held = [open(f, 'rb').read() for f in glob.glob(qdir + '/new/*')]
held = [h for h in held if b'<quar1@' in h]
# 4.0 + 6.5 = 10.5 is quarantined when the stock rules add nothing negative
mt.check(code == 250 and not be.by_tag('quar1') and len(held) == 1,
         'spam at the quarantine level: 250, into the quarantine only (%s %s, %d held)' % (code, text, len(held)))
if held:
    mt.check(header(held[0], 'X-Envelope-To') == ['<user@corp.example>']
             and any(v.startswith('rules: score=') for v in header(held[0], 'X-Mxgate-Quarantine')),
             'the quarantined file: its envelope and X-Mxgate-Quarantine: rules: score=...: %s %s'
             % (header(held[0], 'X-Envelope-To'), header(held[0], 'X-Mxgate-Quarantine')))

# per-domain thresholds: the same 10.5 to lenient.example (quarantine 30) is delivered, tagged
body = 'You have won a prize. Wire transfer now.\r\nRegards.\r\n'
code, text = send(mx.port, text_msg('len1', 'prize', body, to='sales@lenient.example'), to=('sales@lenient.example',))
got = be.by_tag('len1')
mt.check(code == 250 and len(got) == 1 and header(got[0]['data'], 'X-Spam-Flag') == ['YES'],
         'lenient.example (recipient_actions quarantine 30): the 10.5 delivered, X-Spam-Flag: YES (%s %s)'
         % (code, text))
code, text = send(mx.port, text_msg('len2', 'prize', body), to=('user@corp.example', 'sales@lenient.example'))
got = be.by_tag('len2')
held = [f for f in glob.glob(qdir + '/new/*') if b'<len2@' in open(f, 'rb').read()]
mt.check(code == 250 and len(got) == 1 and sorted(got[0]['rcpts']) == ['sales@lenient.example', 'user@corp.example']
         and not held, 'to corp.example and lenient.example: the milder action, delivered to both, not held '
         '(%s %s %s)' % (code, text, got and got[0]['rcpts']))

code, text = send(mx.port, text_msg('rej1', 'offer', GTUBE + '\r\n'))
mt.check(code == 550 and '5.7.1' in text and not be.by_tag('rej1'),
         'high scoring spam: 550 5.7.1, never relayed (%s %s)' % (code, text))

# ------------------------------------------------------------------ viruses, blocked files and types
code, text = send(mx.port, attach_msg('vir1', 'eicar.com', EICAR))
mt.check(code == 554 and 'MxGate.Test.EICAR' in text and not be.by_tag('vir1'),
         'EICAR: 554 naming the virus, never relayed (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban1', 'invoice.exe', EXE[:2] + b'not really an exe'))
mt.check(code == 554 and 'Attachment blocked: Blocked.Filename.InMail' in text and not be.by_tag('ban1'),
         'blocked name: invoice.exe attached: 554 "Attachment blocked: NAME", not "Virus found" '
         '(clamd blocked_prefix) (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban2', 'invoice.zip', zipped('INVOICE.SCR', b'text'), 'application/zip'))
mt.check(code == 554 and 'Attachment blocked: Blocked.Filename.InZip' in text and not be.by_tag('ban2'),
         'blocked name inside a zip: INVOICE.SCR: 554 (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban3', 'holiday.jpg', EXE, 'image/jpeg'))
mt.check(code == 554 and 'Attachment blocked: Blocked.Filetype.Executable' in text and not be.by_tag('ban3'),
         'blocked type: an executable named holiday.jpg: 554 (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban4', 'photos.zip', zipped('photo1.jpg', EXE), 'application/zip'))
mt.check(code == 554 and 'Attachment blocked: Blocked.Filetype.Executable' in text and not be.by_tag('ban4'),
         'blocked type inside a zip: an executable named photo1.jpg: 554 (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban5', 'order.js', b'WScript.Echo(1);\r\n', 'text/plain'))
mt.check(code == 550 and 'BLOCKED_ATTACHMENT_JS' in text and not be.by_tag('ban5'),
         'a rule on the attachment name: 550 naming the rule (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('ban6', 'x', b'WScript.Echo(1);\r\n', 'text/plain',
                                      disp_name='"=?UTF-8?B?%s?="' % base64.b64encode(b'order.js').decode()))
mt.check(code == 550 and 'BLOCKED_ATTACHMENT_JS' in text and not be.by_tag('ban6'),
         'the rule sees a name written as an RFC 2047 encoded word (%s %s)' % (code, text))
code, text = send(mx.port, attach_msg('zip1', 'report.zip', zipped('report.txt', b'figures\n'), 'application/zip'))
mt.check(code == 250 and len(be.by_tag('zip1')) == 1, 'a zip of a text file: relayed (%s %s)' % (code, text))

# ------------------------------------------------------------------ per-domain policy
code, text = send(mx.port, text_msg('shop1', 'order', GTUBE + '\r\n', to='orders@shop.example'),
                  to=('orders@shop.example',))
got = be.by_tag('shop1')
mt.check(code == 250 and len(got) == 1 and not header(got[0]['data'], 'X-Spam-Status'),
         'shop.example (bypass rules): GTUBE delivered unscored, no X-Spam-*: %s %s %s'
         % (code, text, got and header(got[0]['data'], 'X-Spam-Status')))
code, text = send(mx.port, attach_msg('shop2', 'eicar.com', EICAR), to=('orders@shop.example',))
mt.check(code == 554 and not be.by_tag('shop2'), 'shop.example: a virus is still refused (%s %s)' % (code, text))
r = send(mx.port, text_msg('mix1', 'order', GTUBE + '\r\n'), to=('orders@shop.example', 'user@corp.example'))
got = be.by_tag('mix1')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and len(got) == 1 and
         got[0]['rcpts'] == ['orders@shop.example'] and not header(got[0]['data'], 'X-Spam-Status'),
         'one message to both domains: split (bypass_mixed: split), corp.example\'s recipient 452, '
         'shop.example\'s copy delivered unscored (RCPT %s, %s %s)' % (list(r.rcpt_codes), r.code, r.text))
code, text = send(mx.port, text_msg('mix2', 'order', GTUBE + '\r\n'), to=('user@corp.example',))
mt.check(code == 550 and not be.by_tag('mix2'), 'corp.example\'s recipient sent alone: refused (%s %s)' % (code, text))

# ------------------------------------------------------------------ white- and blacklists
code, text = send(mx.port, text_msg('wl1', 'hi', GTUBE + '\r\n', frm='pal@friend.example'), frm='pal@friend.example')
mt.check(code == 250 and len(be.by_tag('wl1')) == 1,
         'local.cf welcomelist_from *@friend.example: GTUBE delivered (%s %s)' % (code, text))
code, text = send(mx.port, text_msg('bl1', 'hi', 'Hello.\r\n', frm='x@spammer.example'), frm='x@spammer.example')
mt.check(code == 550 and not be.by_tag('bl1'),
         'local.cf blocklist_from *@spammer.example: a clean message refused (%s %s)' % (code, text))
# a per-domain sender blacklist as the docs write it (envelope rules and a meta)
code, text = send(mx.port, text_msg('pbl1', 'hi', 'Hello.\r\n', frm='x@rival.example'), frm='x@rival.example')
code2, text2 = send(mx.port, text_msg('pbl2', 'hi', 'Hello.\r\n', frm='x@rival.example'), frm='x@rival.example',
                    to=('info@other.example',))
mt.check(code == 550 and 'CORP_BL' in text and not be.by_tag('pbl1') and code2 == 250 and be.by_tag('pbl2'),
         'per-domain blacklist rule: rival.example to corp.example 550 (CORP_BL), to other.example 250 '
         '(%s %s | %s %s)' % (code, text, code2, text2))
# the per-domain sender whitelist (bypass senders): only for corp.example
code, text = send(mx.port, text_msg('pwl1', 'invoice', GTUBE + '\r\n', frm='ap@partner.example'),
                  frm='ap@partner.example')
got = be.by_tag('pwl1')
mt.check(code == 250 and len(got) == 1 and not header(got[0]['data'], 'X-Spam-Status'),
         'partner.example to corp.example (bypass senders): delivered unscored (%s %s)' % (code, text))
code, text = send(mx.port, text_msg('pwl2', 'invoice', GTUBE + '\r\n', frm='ap@partner.example'),
                  frm='ap@partner.example', to=('info@other.example',))
mt.check(code == 550 and not be.by_tag('pwl2'),
         'partner.example to other.example: scored and refused (%s %s)' % (code, text))
code, text = send(mx.port, text_msg('pwl3', 'invoice', GTUBE + '\r\n', frm='ap@notpartner.example'),
                  frm='ap@notpartner.example')
mt.check(code == 550 and not be.by_tag('pwl3'),
         'another sender to corp.example: scored and refused (%s %s)' % (code, text))
code, text = send(mx.port, text_msg('pwl4', 'invoice', GTUBE + '\r\n', frm='boss@home.example'),
                  frm='boss@home.example')
code2, text2 = send(mx.port, text_msg('pwl5', 'invoice', GTUBE + '\r\n', frm='clerk@home.example'),
                    frm='clerk@home.example')
mt.check(code == 250 and be.by_tag('pwl4') and code2 == 550 and not be.by_tag('pwl5'),
         'a whitelisted address: boss@home.example delivered, clerk@home.example refused (%s %s | %s %s)'
         % (code, text, code2, text2))
code, text = send(mx.port, attach_msg('pwl6', 'eicar.com', EICAR), frm='ap@partner.example')
mt.check(code == 554 and not be.by_tag('pwl6'), 'a whitelisted sender\'s virus: still 554 (%s %s)' % (code, text))

# ------------------------------------------------------------------ statistics
rc, out = mt.ctl_text(sock, 'top', 'clients')
mt.check(rc == 0 and '198.18.5.5' in out, 'mxgatectl top clients names the client: %s %s' % (rc, out[:300]))
rc, out = mt.ctl_text(sock, 'top', 'reasons')
mt.check(rc == 0 and re.search(r'data/blocked +4\b', out) and re.search(r'data/virus +3\b', out),
         'mxgatectl top reasons: 4 blocked attachments apart from 3 viruses: %s %s' % (rc, out[:300]))
rc, out = mt.ctl_text(sock, 'top', 'rules')
mt.check(rc == 0 and 'GTUBE' in out, 'mxgatectl top rules lists GTUBE: %s %s' % (rc, out[:300]))
spam, vir, quar = (mx.metric(s) for s in ('spam_found_total', 'viruses_found_total', 'messages_quarantined_total'))
mt.check(spam is not None and spam >= 4 and vir == 3 and quar == 1,
         'metrics: spam %s (>= 4), viruses %s (3: the blocked files are not), quarantined %s (1)' % (spam, vir, quar))
mx.stop()
mt.stop_proc(cl)
mt.finish()
