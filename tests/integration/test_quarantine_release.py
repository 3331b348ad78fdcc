#!/usr/bin/env python3
"""The quarantine an operator works with (docs/operations.md "Releasing held mail"): messages
held by the rules' actions.quarantine into the quarantine maildir, then through the control
socket (mxgatectl, a real recording backend):

- `quarantine list` shows each held message (id = the queue id the client was told, date,
  sender, recipients, reason, size), newest first, in text and --json;
- `quarantine show ID` prints the envelope and the header block;
- `quarantine release ID` to a backend that answers 451 at the dot fails, says why, and the
  file stays; released to one that takes it, the backend receives it exactly once, with the
  original content and without the envelope block, and the file moves to released/ (a second
  release: no such ID); `release ID RCPT` goes to RCPT only;
- a reload between hold and release (a new backend): the release uses the generation in
  force;
- `quarantine delete ID` removes it; an unknown ID and a path as ID are refused;
- a release delivered whose file cannot move into released/ answers ERR and says so;
- a release waiting on a backend that never greets: `status` is answered meanwhile, a second
  release is refused, and with the backend gone the release fails and the file stays;
- the log lines event=quarantine_released / quarantine_deleted.
"""
import glob
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QR_MID Subject =~ /\\bqrel/\nscore QR_MID 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}
RCPTS = ['b@example.test', 'c@example.test']

be = mt.Backend()
be2 = mt.Backend()
rules_file = os.path.join(mt.TMP, 'qrel.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')


def cfg(url):
    # connect_timeout (the greeting's too) long: a release to a backend that never greets
    # waits until the test stops that backend, not for a clock
    return mt.config([url], hostname='mx.example.test', rules={'files': [rules_file], 'actions': ACTIONS},
                     quarantine='maildir:' + qdir, control={'socket': sock},
                     backends={'connect_timeout': '1h'})


def files(sub='new'):
    return sorted(glob.glob(os.path.join(qdir, sub, '*')))


def hold(tag, rcpts=RCPTS):
    code, text = mt.send_mail(mx.port, 's@example.org', rcpts, mt.message(tag), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, '%s: held, 250 (%s %s)' % (tag, code, text))
    return m.group(1) if m else 'NONE'


mx = mt.Mxgate(cfg(be.url), 'mx-qrel')

# ---- held, listed, shown
q1 = hold('qrel1')
mt.check(len(files()) == 1 and not be.by_tag('qrel1'), 'qrel1 is in the quarantine only')
rc, out, err = mt.ctl(sock, 'quarantine', 'list')
line = [ln for ln in out.splitlines() if ln.startswith(q1 + ' ')]
mt.check(rc == 0 and len(line) == 1 and '<s@example.org> <b@example.test>,<c@example.test>' in line[0]
         and 'score=7' in line[0], 'list: id, sender, recipients, reason (%s %r %r)' % (rc, out, err))
rc, out, err = mt.ctl(sock, '--json', 'quarantine', 'list', '5')
try:
    held = json.loads(out)['held']
except (ValueError, KeyError):
    held = []
mt.check(rc == 0 and len(held) == 1 and held[0]['id'] == q1 and held[0]['from'] == 's@example.org'
         and held[0]['rcpts'] == RCPTS and held[0]['size'] > 0 and 'score=7' in held[0]['reason'],
         'list --json (%s %r)' % (rc, out))
rc, out, err = mt.ctl(sock, 'quarantine', 'show', q1)
mt.check(rc == 0 and 'Subject: test qrel1' in out and 'file: ' in out and q1 in out,
         'show: envelope and header block (%s %r %r)' % (rc, out, err))

# ---- release to a backend that answers 451 at the dot: fails, says why, the file stays
be.mode = 'tempfail_data'
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1)
mt.check(rc == 1 and 'the backend did not take it' in err and '451' in err,
         'release to a 451: ERR, and why (%s %r %r)' % (rc, out, err))
mt.check(len(files()) == 1 and not be.by_tag('qrel1'), 'after the 451 the file stays, nothing delivered')

# ---- released: the backend has it once, as it was held, without the envelope block
with open(files()[0], 'rb') as f:
    held_file = f.read()
held_msg = held_file.split(b'X-Quarantine-ID: <%s>\r\n' % q1.encode(), 1)[-1]
be.mode = 'ok'
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1)
mt.check(rc == 0 and ('%s: released as' % q1) in out, 'release: OK (%s %r %r)' % (rc, out, err))
# the release's queue id is of its own form ("A" and a session's 12 characters: a session's
# alphabet has no vowel), never one a session has or gets (its stand-in worker index 63 shared
# worker 15's bits)
m = re.search(r'released as (\S+) ', out)
mt.check(m is not None and re.fullmatch(r'A[0-9B-DF-HJ-NP-TV-Z]{12}', m.group(1)) is not None,
         'a release\'s queue id: A + 12 (%r)' % out)
got = be.by_tag('qrel1')
mt.check(len(got) == 1, 'the backend received it exactly once (%d)' % len(got))
if got:
    d = got[0]['data']
    head = d.split(b'\r\n\r\n', 1)[0].lower()
    added = d[:-len(held_msg)] if d.endswith(held_msg) else b''
    # what the backend gets: the held message as it was (mxgate's first Received, the rules'
    # fields, the client's header and body) under one more Received field, the release's
    mt.check(held_msg.endswith(b'Subject: test qrel1\r\nMessage-ID: <qrel1@mxtest.example>\r\n'
                               b'Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n'
                               b'X-Mxgate-Quarantine: rules: score=7.0\r\n\r\nHello.\r\n')
             and added.startswith(b'Received: from quarantine-release ') and added.count(b'\r\n') == 2,
             'released: the held content under one Received field (%r)' % d[:400])
    mt.check(b'x-envelope-to' not in head and b'x-quarantine-id' not in head and b'return-path' not in head,
             'released: no envelope block')
    mt.check('<s@example.org>' in got[0]['mail'] and sorted(got[0]['rcpts']) == RCPTS,
             'released with the held envelope (%s %s)' % (got[0]['mail'], got[0]['rcpts']))
mt.check(not files() and len(files('released')) == 1, 'the file moved to released/')
mt.check(mx.wait_log(r'event=quarantine_released id=%s queue_id=\S+ rcpts=2 backend=\S+' % q1, timeout=10)
         is not None, 'logged event=quarantine_released')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q1)
mt.check(rc == 1 and 'no held message' in err and len(be.by_tag('qrel1')) == 1,
         'a second release: no such ID, nothing sent (%s %r)' % (rc, err))

# ---- release to named recipients only
q2 = hold('qrel2')
rc, out, err = mt.ctl(sock, '--json', 'quarantine', 'show', q2)
try:
    shown = json.loads(out)
except ValueError:
    shown = {}
mt.check(rc == 0 and shown.get('id') == q2 and shown.get('rcpts') == RCPTS and
         'Subject: test qrel2' in shown.get('headers', '') and shown.get('file', '').startswith(qdir),
         'show --json (%s %r)' % (rc, out[:300]))
rc, out, err = mt.ctl(sock, '--json', 'quarantine', 'release', q2, 'x@example.test')
got = be.by_tag('qrel2')
try:
    rel = json.loads(out)
except ValueError:
    rel = {}
mt.check(rc == 0 and len(got) == 1 and got[0]['rcpts'] == ['x@example.test'],
         'release ID RCPT: to RCPT only (%s %r %s)' % (rc, err, got and got[0]['rcpts']))
mt.check(rel.get('released') == q2 and rel.get('rcpts') == 1 and rel.get('backend') == be.url
         and rel.get('queue_id') and rel.get('kept') == 2, 'release --json (%r)' % out)
# x@example.test is not one it is held for: the file stays for b and c (test_quarantine_user)
mt.check(len(files()) == 1 and len(files('released')) == 1, 'released to another address: the file stays')
mt.ctl(sock, 'quarantine', 'delete', q2)

# ---- delete; unknown IDs; paths as IDs
q3 = hold('qrel3')
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', q3)
mt.check(rc == 0 and 'deleted' in out and not files(), 'delete: the file is gone (%s %r %r)' % (rc, out, err))
mt.check(mx.wait_log(r'event=quarantine_deleted id=%s rcpts=2' % q3, timeout=10) is not None,
         'logged event=quarantine_deleted')
for args, what in ((('delete', q3), 'deleted already'), (('show', 'NOSUCHID'), 'unknown id'),
                   (('release', 'NOSUCHID'), 'unknown id')):
    rc, out, err = mt.ctl(sock, 'quarantine', *args)
    mt.check(rc == 1 and 'no held message with this ID' in err, '%s: ERR (%s %r)' % (what, rc, err))
os.makedirs(os.path.join(mt.TMP, 'victim', 'new'), exist_ok=True)
for bad in ('../victim', '../../etc/passwd', '/etc/passwd', 'a.b'):
    rc, out, err = mt.ctl(sock, 'quarantine', 'delete', bad)
    mt.check(rc == 1 and 'is not an ID' in err, 'a path as ID is refused: %s (%s %r)' % (bad, rc, err))
mt.check(os.path.exists('/etc/passwd'), 'nothing outside the quarantine was touched')

# ---- a reload between hold and release: the generation in force delivers it
q4 = hold('qrel4')
mx.reload(cfg(be2.url))
mt.check(mx.wait_log(r'event=reloaded generation=2', timeout=30) is not None, 'reloaded')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q4)
mt.check(rc == 0 and len(be2.by_tag('qrel4')) == 1 and not be.by_tag('qrel4'),
         'after a reload: released through the new backend (%s %r)' % (rc, err))

# ---- delivered, but the file cannot move into released/ (a file in its place): the answer
# says so (ERR: a second release would send it again), the file stays where it was
os.rename(os.path.join(qdir, 'released'), os.path.join(mt.TMP, 'released.before'))
with open(os.path.join(qdir, 'released'), 'w') as f:
    f.write('not a folder\n')
q5 = hold('qrel5')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q5)
mt.check(rc == 1 and 'delivered' in err and 'the held file stays' in err and len(be2.by_tag('qrel5')) == 1
         and len(files()) == 1, 'delivered but not moved: ERR, said so, the file stays (%s %r)' % (rc, err))
mt.check(mx.wait_log(r'warning - event=quarantine_released id=%s .* file=kept' % q5, timeout=10) is not None,
         'logged event=quarantine_released ... file=kept as a warning')

# ---- a release waiting on its backend (one that never greets): the main loop answers
# meanwhile, a second release is refused, and when the backend goes away the release fails
# and the file stays
os.remove(os.path.join(qdir, 'released'))
os.rename(os.path.join(mt.TMP, 'released.before'), os.path.join(qdir, 'released'))
mt.ctl(sock, 'quarantine', 'delete', q5)
q6 = hold('qrel6')
be2.mode = 'stall'
mark = mx.log_size()
slow = subprocess.Popen([mt.mxgatectl(), '-s', sock, '-t', '600', 'quarantine', 'release', q6],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
mt.check(mx.wait_log(r'event=quarantine_release_started id=%s rcpts=2' % q6, timeout=30, start=mark)
         is not None, 'the release started (logged event=quarantine_release_started)')
rc, out, err = mt.ctl(sock, 'quarantine', 'release', q6)
mt.check(rc == 1 and 'a release is under way' in err, 'a second release meanwhile: refused (%s %r)' % (rc, err))
rc, out, err = mt.ctl(sock, 'status')
mt.check(rc == 0 and slow.poll() is None, 'the main loop answers while the release waits on its backend (%s)' % rc)
be2.stop()
try:
    out, err = slow.communicate(timeout=mt.slack(120))
except subprocess.TimeoutExpired:
    slow.kill()
    out, err = slow.communicate()
mt.check(slow.returncode == 1 and 'quarantine release %s: the transaction could not begin (MAIL): 451' % q6 in err
         and len(files()) == 1,
         'the backend gone: the release fails, the file stays (%s %r)' % (slow.returncode, err))
mt.check(mx.wait_log(r'event=quarantine_release_failed id=%s reason=' % q6, timeout=10) is not None,
         'logged event=quarantine_release_failed')

mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
be.stop()
mt.finish()
