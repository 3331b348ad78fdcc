#!/usr/bin/env python3
"""A quarantine release racing what removes or rewrites its file (w-quarsweep), pinned, not
timed: MXGATE_TEST_QUARANTINE_RELEASE_HOLD=FIFO (tests only) holds a release right after it
has found its held file, until the test opens the FIFO (the open returns once the release is
there) and closes it. Against a real recording backend, with a message of 200 KB (read in
several 64 KB chunks):

- the expiry sweep removes the file meanwhile (it was aged past quarantine.expire and a
  reload turned expiry on: event=quarantine_expired count=1): the release still delivers the
  whole message, once, answers success and logs event=quarantine_released ... file=gone;
- `quarantine delete ID RCPT` rewrites the file meanwhile (a shorter envelope block, renamed
  over it): the release delivers the whole message as held, never a message read from the
  new file at the old block's end (cut by the difference), and the file goes into released/.
Before, the release opened the file's name again to read the message: gone, it failed after
MAIL and RCPT ("the held file could not be read"); rewritten, a cut message was delivered.
- `quarantine delete ID` removes the file while a release to one of its two recipients holds
  it: the release delivers to that one and does not rename its rewritten copy (naming the
  other) back into new/: the deleted message stays deleted (the rewrite checks that the name
  is still the file it read).
"""
import errno
import glob
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QR_SUBJ Subject =~ /\\bqrace/\nscore QR_SUBJ 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}

be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'qrace.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')
fifo = os.path.join(mt.TMP, 'release-hold')
os.mkfifo(fifo, 0o600)


def cfg(quarantine):
    return mt.config([be.url], hostname='mx.example.test', rules={'files': [rules_file], 'actions': ACTIONS},
                     quarantine=quarantine, control={'socket': sock})


def hold(mx, tag, rcpts):
    code, text = mt.send_mail(mx.port, 's@example.org', rcpts, mt.message(tag, size=200 * 1024), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, '%s: held, 250 (%s %s)' % (tag, code, text))
    qid = m.group(1) if m else 'NONE'
    path = (glob.glob(os.path.join(qdir, 'new', '*,QID=' + qid)) or ['NONE'])[0]
    with open(path, 'rb') as f:
        raw = f.read()
    return qid, path, raw[raw.index(b'X-Quarantine-ID:'):].split(b'\r\n', 1)[1]   # the held message


def release_bg(qid, *rcpts):
    return subprocess.Popen([mt.mxgatectl(), '-s', sock, '-t', '600', 'quarantine', 'release', qid] + list(rcpts),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def reach_hold():
    """The FIFO's writing end, open once the release holds at it (its reading end open)."""
    fd = []

    def try_open():
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError as e:
            if e.errno != errno.ENXIO:   # ENXIO: no reader yet
                raise
            return False
    mt.check(mt.wait_for(try_open, timeout=60), 'the release holds after finding its file')
    return fd[0] if fd else None


def answer(p):
    try:
        out, err = p.communicate(timeout=mt.slack(120))
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out, err


def delivered_whole(tag, held):
    got = be.by_tag(tag)
    data = got[0]['data'] if got else b''
    if isinstance(data, str):
        data = data.encode()
    return len(got) == 1 and data.replace(b'\r\n', b'\n').endswith(held.replace(b'\r\n', b'\n')), \
        '%d message(s), %d octets, the held message %d octets' % (len(got), len(data), len(held))


os.environ['MXGATE_TEST_QUARANTINE_RELEASE_HOLD'] = fifo
mx = mt.Mxgate(cfg('maildir:' + qdir), 'mx-qrace')
del os.environ['MXGATE_TEST_QUARANTINE_RELEASE_HOLD']

# ---- the sweep removes the file while the release holds it
qid, path, held = hold(mx, 'qrace1', ['b@example.test'])
p = release_bg(qid)
fd = reach_hold()
old = time.time() - 3 * 86400
os.utime(path, (old, old))
mark = mx.log_size()
mx.reload(cfg({'store': 'maildir:' + qdir, 'expire': '2d'}))
mt.check(mx.wait_log(r'event=quarantine_expired count=1 ', timeout=60, start=mark) is not None,
         'the sweep removed the held file meanwhile')
mt.check(not os.path.exists(path), 'the file is gone before the release reads the message')
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
mt.check(rc == 0 and out.startswith('%s: released as ' % qid), 'the release succeeds (%s %r %r)' % (rc, out, err))
ok, what = delivered_whole('qrace1', held)
mt.check(ok, 'the whole held message arrived, once (%s)' % what)
mt.check(mx.wait_log(r'event=quarantine_released id=%s .*file=gone' % qid, timeout=10) is not None,
         'logged event=quarantine_released ... file=gone')
mt.check(not glob.glob(os.path.join(qdir, '*', '*QID=' + qid + '*')), 'nothing of it is left')

# ---- a delete of one recipient rewrites the file while the release holds it
mx.reload(cfg('maildir:' + qdir))   # no expiry: only the delete acts
qid, path, held = hold(mx, 'qrace2', ['b@example.test', 'a-much-longer-recipient-address@example.test'])
p = release_bg(qid)
fd = reach_hold()
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', qid, 'a-much-longer-recipient-address@example.test')
mt.check(rc == 0 and 'still held for 1' in out, 'the delete rewrote the file meanwhile (%s %r %r)' % (rc, out, err))
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
mt.check(rc == 0 and out.startswith('%s: released as ' % qid), 'the release succeeds (%s %r %r)' % (rc, out, err))
ok, what = delivered_whole('qrace2', held)
mt.check(ok, 'the whole message as held arrived, once, not one cut at the old block\'s end (%s)' % what)
mt.check(glob.glob(os.path.join(qdir, 'released', '*QID=' + qid)) and not os.path.exists(path),
         'the file went into released/')

# ---- a release to one of two recipients while the whole message is deleted (reviewer's case)
qid, path, held = hold(mx, 'qrace3', ['b@example.test', 'c@example.test'])
p = release_bg(qid, 'b@example.test')
fd = reach_hold()
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', qid)
mt.check(rc == 0 and 'deleted' in out, 'the delete removed the file meanwhile (%s %r %r)' % (rc, out, err))
mt.check(not os.path.exists(path), 'the file is gone before the release rewrites it')
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
ok, what = delivered_whole('qrace3', held)
mt.check(ok, 'the release delivered to b, once (%s)' % what)
left = glob.glob(os.path.join(qdir, 'new', '*QID=' + qid + '*')) + glob.glob(os.path.join(qdir, 'cur', '*QID=' + qid + '*'))
mt.check(not left, 'the deleted message is not held again for c by the release\'s rewrite (%s; %r %r)' % (left, out, err))

mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
be.stop()
mt.finish()
