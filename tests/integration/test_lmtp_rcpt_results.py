#!/usr/bin/env python3
"""An LMTP backend's per-recipient replies after the dot (docs/operations.md "LMTP backends:
one reply per recipient"), as the operator sees them: counts, log lines and a quarantine
release (docs/plugins.md "Releasing held mail"). Real daemon, scripted LMTP and SMTP
backends (mt.Backend), mxgatectl on the control socket.

- Some recipients 250, one 550 after the dot: the client gets 250 (the others have it); the
  refused one is logged by name (event=lmtp_rcpt_refused), event=delivered says rcpts=1, and
  `top recipients` / `top domains` count only the delivered one as delivered.
- Some 250, one 451: the message is replayed to the one still owed on the next backend; the
  ones the LMTP server took are counted delivered as well (they left the envelope before the
  outcome was counted).
- A quarantine release to such an LMTP server: delivered to 1 of 2, the refused one named in
  the answer (ERR: the file stays), logged refused=1, and the held file now names only it:
  releasing it again sends nothing more to the one that has it.
- A release whose replay fails after the LMTP server took one of two: the file names only the
  one not delivered.
"""
import glob
import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

FROM = 's@example.org'
SOCK = os.path.join(mt.TMP, 'control.sock')


def top(what, table, field):
    rc, out, err = mt.ctl(SOCK, '--json', 'top', what)
    try:
        js = json.loads(out)
    except ValueError:
        js = {}
    mt.check(rc == 0, 'mxgatectl --json top %s (%s %r)' % (what, rc, err[:200]))
    return {r[field]: r['count'] for r in js.get(table, [])}


# ---- 250 and 550 after the dot
lm = mt.Backend(lmtp=True, name='lmtp', lmtp_codes={'full@example.test': 550})
mx = mt.Mxgate(mt.config([lm.url], workers=1, control={'socket': SOCK}), name='mx-lmtp-perm')
code, text = mt.send_mail(mx.port, FROM, ['a@example.test', 'full@example.test'], mt.message('perm1'))
mt.check(code == 250, 'one 250 and one 550 after the dot: the client gets 250 (%s %s)' % (code, text))
line = mx.wait_log(r'event=lmtp_rcpt_refused [^\n]*', 10)
mt.check(line is not None and 'rcpt=<full@example.test>' in line.group(0) and 'code=550' in line.group(0)
         and 'mailbox full' in line.group(0),
         'the refused recipient is logged by name, code and reply (%s)' % (line and line.group(0)))
line = mx.wait_log(r'event=delivered [^\n]*', 10)
mt.check(line is not None and ' rcpts=1 ' in line.group(0),
         'event=delivered counts the one delivered (%s)' % (line and line.group(0)))
dlv = top('recipients', 'delivered', 'recipient')
mt.check(dlv == {'a@example.test': 1}, 'top recipients: only the delivered one counts delivered (%s)' % dlv)
mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()

# ---- 250 and 451 after the dot, replayed on the next backend for the one still owed
lm2 = mt.Backend(lmtp=True, name='lmtp2', lmtp_codes={'later@example.test': 451})
spare = mt.Backend(name='spare')
mx = mt.Mxgate(mt.config([lm2.url, spare.url], workers=1, control={'socket': SOCK}), name='mx-lmtp-temp')
for i in range(2):   # whichever server round robin starts with: one message goes to the LMTP one first
    code, text = mt.send_mail(mx.port, FROM, ['a%d@example.test' % i, 'later@example.test'], mt.message('temp%d' % i))
    mt.check(code == 250, 'temp%d: delivered (%s %s)' % (i, code, text))
mt.check(len(lm2.messages) >= 1, 'a message went to the LMTP server first (%d)' % len(lm2.messages))
dlv = top('recipients', 'delivered', 'recipient')
mt.check(dlv == {'a0@example.test': 1, 'a1@example.test': 1, 'later@example.test': 2},
         'top recipients: the ones the LMTP server took before the replay count delivered too (%s)' % dlv)
dom = top('domains', 'delivered', 'domain')
mt.check(dom == {'example.test': 4}, 'top domains: four recipients delivered (%s)' % dom)
snd = top('senders', 'delivered', 'domain')
mt.check(snd == {'example.org': 2}, 'top senders: two messages delivered (%s)' % snd)
mx.stop()
spare.stop()

# ---- quarantine release to an LMTP server that refuses one recipient after the dot
RULES = 'header QR_MID Subject =~ /\\bqlm/\nscore QR_MID 7\n'
rules_file = os.path.join(mt.TMP, 'qlm.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
lq = mt.Backend(lmtp=True, name='lmtpq', lmtp_codes={'c@example.test': 550})


def qcfg(urls):
    return mt.config(urls, workers=1, rules={'files': [rules_file], 'actions': {'quarantine': 6, 'reject': 10}},
                     quarantine='maildir:' + qdir, control={'socket': SOCK},
                     backends={'max_attempts': 2})


def files(sub='new'):
    return sorted(glob.glob(os.path.join(qdir, sub, '*')))


def hold(tag, rcpts):
    code, text = mt.send_mail(mx.port, FROM, rcpts, mt.message(tag), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, '%s: held (%s %s)' % (tag, code, text))
    return m.group(1) if m else 'NONE'


def envelope_to(path):
    with open(path, 'rb') as f:
        head = f.read().split(b'X-Quarantine-ID:', 1)[0]
    m = re.search(rb'^X-Envelope-To: (.*?)\r\n(?=\S)', head, re.M | re.S)
    return re.findall(rb'<([^>]*)>', m.group(1)) if m else None


mx = mt.Mxgate(qcfg([lq.url]), name='mx-lmtp-qrel')
q1 = hold('qlm1', ['b@example.test', 'c@example.test'])
mt.check(len(files()) == 1, 'qlm1 held')
held_before = open(files()[0], 'rb').read() if files() else b''
rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', q1)
mt.check(rc == 1 and re.search(r'released as A\S+ to 1 of 2 recipients via lmtp://\S+; refused <c@example.test> '
                               r'"?550 5\.2\.2 <c@example.test> mailbox full"?; the file stays for them', err) is not None,
         'release: delivered to 1 of 2, the refused one named, the file stays (%s %r %r)' % (rc, out, err))
got = lq.by_tag('qlm1')
mt.check(len(got) == 1 and got[0]['accepted_rcpts'] == ['b@example.test'], 'the LMTP server delivered it to b only')
mt.check(len(files()) == 1 and not files('released'), 'the file stays in new/')
if files():
    mt.check(envelope_to(files()[0]) == [b'c@example.test'],
             'the held file now names only the refused recipient (%s)' % envelope_to(files()[0]))
    after = open(files()[0], 'rb').read()
    mt.check(after.split(b'X-Quarantine-ID: <%s>\r\n' % q1.encode(), 1)[-1] ==
             held_before.split(b'X-Quarantine-ID: <%s>\r\n' % q1.encode(), 1)[-1] and b'X-Quarantine-Reason: ' in after,
             'the rewritten file keeps the message and the reason')
mt.check(mx.wait_log(r'warning - event=quarantine_released id=%s queue_id=\S+ rcpts=2 backend=\S+ refused=1' % q1,
                     timeout=10) is not None, 'logged event=quarantine_released ... refused=1 as a warning')
rc, out, err = mt.ctl(SOCK, '--json', 'quarantine', 'list')
try:
    held = json.loads(out)['held']
except (ValueError, KeyError):
    held = []
mt.check(len(held) == 1 and held[0]['id'] == q1 and held[0]['rcpts'] == ['c@example.test'],
         'list: the held message for c only (%r)' % out)
# released again (c still refused): nothing more for b
rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', q1)
mt.check(rc == 1 and 'the backend did not take it: 550' in err, 'released again: c refused again (%s %r)' % (rc, err))
mt.check(len(lq.by_tag('qlm1')) == 1, 'released again: b got no second copy (%d)' % len(lq.by_tag('qlm1')))
lq.lmtp_codes = {}
rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', q1)
got = lq.by_tag('qlm1')
mt.check(rc == 0 and 'to 1 recipient via' in out and len(got) == 2 and got[1]['accepted_rcpts'] == ['c@example.test']
         and not files() and len(files('released')) == 1,
         'c takes it later: released to c alone, the file moves to released/ (%s %r %r)' % (rc, out, err))

# ---- a release whose replay fails after the LMTP server took one of two (max_attempts 2;
# whichever server round robin starts with: the LMTP one takes b and defers c, the other
# answers 451 at the dot)
lq.lmtp_codes = {'c@example.test': 451}
dead = mt.Backend(mode='tempfail_data', name='dead')
mx.reload(qcfg([lq.url, dead.url]))
mt.check(mx.wait_log(r'event=reloaded generation=2', timeout=30) is not None, 'reloaded: LMTP and a 451 server')
q2 = hold('qlm2', ['b@example.test', 'c@example.test'])
rc, out, err = mt.ctl(SOCK, 'quarantine', 'release', q2)
mt.check(rc == 1 and 'the backend did not take it: 451' in err, 'the replay fails: ERR (%s %r)' % (rc, err))
got = lq.by_tag('qlm2')
mt.check(len(got) == 1 and got[0]['accepted_rcpts'] == ['b@example.test'], 'the LMTP server took it for b')
mt.check(len(files()) == 1 and envelope_to(files()[0]) == [b'c@example.test'],
         'after the failed replay the held file names only c (%s)' % (files() and envelope_to(files()[0])))
mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
for b in (lm, lm2, lq, dead):
    b.stop()
mt.finish()
