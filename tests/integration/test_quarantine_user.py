#!/usr/bin/env python3
"""The quarantine per user, as an admin coming from Proxmox Mail Gateway works with it
(docs/plugins.md "Releasing held mail"): messages held by the rules' actions.quarantine for
several recipients, then through the control socket (mxgatectl, a real recording backend):

- `quarantine list rcpt=ADDR` (and `rcpt=@DOMAIN`, `from=TEXT`, `subject=TEXT`, `older=DAYS`,
  combined) shows only what is held for that user, from that sender, with that subject;
  an unknown filter is refused;
- `quarantine release ID RCPT` releases the message to that one recipient only, and the file
  stays held for the others, rewritten to name only them (before: the file moved into
  released/ and the other recipients lost their copy); a release of the rest then moves it;
- a release to an address the file is not held for (a copy to the admin) leaves the file
  as it was for its recipients;
- `quarantine delete ID RCPT` removes one recipient from the file, the last one removes the
  file; a recipient the file is not held for is refused and nothing changes;
- the log lines event=quarantine_released ... kept=N and event=quarantine_deleted ... kept=N.
"""
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QU_SUBJ Subject =~ /\\bquser/\nscore QU_SUBJ 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}

be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'quser.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')
mx = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', rules={'files': [rules_file], 'actions': ACTIONS},
                         quarantine='maildir:' + qdir, control={'socket': sock}), 'mx-quser')


def files(sub='new'):
    return sorted(glob.glob(os.path.join(qdir, sub, '*')))


def hold(tag, sender, rcpts):
    code, text = mt.send_mail(mx.port, sender, rcpts, mt.message(tag), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, '%s: held, 250 (%s %s)' % (tag, code, text))
    return m.group(1) if m else 'NONE'


def listed(*filters):
    """The held messages `quarantine --json list 200 FILTERS` shows: {id: rcpts}, or None."""
    rc, out, err = mt.ctl(sock, '--json', 'quarantine', 'list', '200', *filters)
    try:
        return {h['id']: h['rcpts'] for h in json.loads(out)['held']} if rc == 0 else None
    except (ValueError, KeyError):
        return None


q1 = hold('quser1', 'alice@ext.example', ['b@example.test', 'c@example.test'])
q2 = hold('quser2', 'bob@other.example', ['c@example.test', 'd@example.org'])
q3 = hold('quser3', 'alice@ext.example', ['d@example.org'])
mt.check(len(files()) == 3 and not be.messages, 'three held, none delivered')

# ---- what is held for one user, from one sender, with one subject
for filters, want in ((('rcpt=b@example.test',), {q1}),
                      (('rcpt=B@Example.TEST',), {q1}),
                      (('rcpt=c@example.test',), {q1, q2}),
                      (('rcpt=@example.org',), {q2, q3}),
                      (('from=alice',), {q1, q3}),
                      (('subject=quser2',), {q2}),
                      (('rcpt=c@example.test', 'from=bob@'), {q2}),
                      (('older=0',), {q1, q2, q3}),
                      (('older=1',), set())):
    got = listed(*filters)
    mt.check(got is not None and set(got) == want, 'list %s: %s (%r)' % (' '.join(filters), sorted(want), got))
rc, out, err = mt.ctl(sock, 'quarantine', 'list', '5', 'rcpt=nobody@example.test')
mt.check(rc == 0 and 'none matches' in out, 'list with a filter nothing matches: said so (%s %r)' % (rc, out))
rc, out, err = mt.ctl(sock, 'quarantine', 'list', 'rcpt=b@example.test')
mt.check(rc == 0 and out.startswith(q1 + ' ') and len(out.splitlines()) == 1,
         'list FILTER without N: text, one line (%s %r %r)' % (rc, out, err))
for bad in ('colour=red', 'older=x', 'rcpt='):
    rc, out, err = mt.ctl(sock, 'quarantine', 'list', bad)
    mt.check(rc == 1 and 'quarantine list' in err, 'list %s: refused (%s %r)' % (bad, rc, err))

# ---- release to one recipient: the others keep it held
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1, 'b@example.test')
got = be.by_tag('quser1')
mt.check(rc == 0 and 'still held for 1 recipient not named' in out and len(got) == 1
         and got[0]['rcpts'] == ['b@example.test'],
         'release ID RCPT: to RCPT only, said the file stays (%s %r %r %s)' % (rc, out, err, got and got[0]['rcpts']))
mt.check(len(files()) == 3 and not files('released'), 'the file stays in the quarantine')
mt.check(listed('rcpt=c@example.test') == {q1: ['c@example.test'], q2: ['c@example.test', 'd@example.org']},
         'the file now names c@example.test only (%r)' % listed('rcpt=c@example.test'))
mt.check(listed('rcpt=b@example.test') == {}, 'nothing more held for b@example.test')
mt.check(mx.wait_log(r'event=quarantine_released id=%s queue_id=\S+ rcpts=1 backend=\S+ kept=1' % q1, timeout=10)
         is not None, 'logged event=quarantine_released ... kept=1')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1)
got = be.by_tag('quser1')
mt.check(rc == 0 and 'still held' not in out and len(got) == 2 and got[1]['rcpts'] == ['c@example.test'],
         'the rest released: to c@example.test alone, b@example.test not again (%s %r %s)'
         % (rc, out, [g['rcpts'] for g in got]))
mt.check(len(files()) == 2 and len(files('released')) == 1, 'then the file moved to released/')

# ---- a copy to an address the file is not held for: the file stays as it was
with open([f for f in files() if q3.encode() in open(f, 'rb').read()][0], 'rb') as f:
    before = f.read()
rc, out, err = mt.ctl(sock, '--json', 'quarantine', 'release', q3, 'admin@example.test')
try:
    rel = json.loads(out)
except ValueError:
    rel = {}
got = be.by_tag('quser3')
mt.check(rc == 0 and rel.get('kept') == 1 and len(got) == 1 and got[0]['rcpts'] == ['admin@example.test'],
         'release to another address: delivered to it, kept=1 (%s %r %r)' % (rc, out, err))
still = [f for f in files() if q3.encode() in open(f, 'rb').read()]
mt.check(len(still) == 1 and open(still[0], 'rb').read() == before, 'the held file is as it was')

# ---- delete for one recipient, then the last
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', q2, 'zz@example.test')
mt.check(rc == 1 and 'not a recipient' in err and listed()[q2] == ['c@example.test', 'd@example.org'],
         'delete ID RCPT not held for: refused, nothing changed (%s %r)' % (rc, err))
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', q2, 'C@example.test')
mt.check(rc == 0 and 'still held for 1' in out and listed().get(q2) == ['d@example.org'],
         'delete ID RCPT: that recipient only (%s %r %r)' % (rc, out, err))
mt.check(mx.wait_log(r'event=quarantine_deleted id=%s rcpts=1 via=control kept=1' % q2, timeout=10) is not None,
         'logged event=quarantine_deleted ... kept=1')
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', q2, 'd@example.org')
mt.check(rc == 0 and 'deleted' in out and q2 not in (listed() or {q2: 1}) and len(files()) == 1,
         'delete ID RCPT of the last one: the file is gone (%s %r %r)' % (rc, out, err))
mt.check(not be.by_tag('quser2'), 'nothing of quser2 was delivered')

mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
be.stop()
mt.finish()
