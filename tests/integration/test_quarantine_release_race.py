#!/usr/bin/env python3
"""A quarantine release racing what removes or rewrites its file, pinned, not timed:
MXGATE_TEST_QUARANTINE_RELEASE_HOLD=FIFO (tests only) holds a release right after it has
found and locked its held file, MXGATE_TEST_QUARANTINE_DELETE_HOLD=FIFO a delete, until the
test opens the FIFO (the open returns once the operation is there) and closes it. Against a
real recording backend, with a message of 200 KB (read in several 64 KB chunks).

One operation at a time per held message (w-quarser): release, delete and the expiry sweep
lock the file (flock), here and in another mxgate sharing the folder:
- the expiry sweep meets the file a release holds (aged past quarantine.expire, a reload
  turned expiry on): it leaves it (event=quarantine_expired count=0 ... busy=1); the release
  delivers the whole message, once, and the file goes into released/;
- `quarantine delete ID RCPT` through a second mxgate process sharing the folder, while the
  release holds the file: busy, the file as it was; the release delivers the whole message
  as held and a delete afterwards finds nothing;
- `quarantine delete ID` while a release to one of its two recipients holds it: busy; the
  release delivers to that one, the file stays held for the other, which a delete then
  removes: a message the operator was told is deleted is never delivered afterwards;
- a release while a delete holds the file: the release waits (event=quarantine_release_waiting),
  the delete wins, the release answers "no held message with this ID" and sends nothing.
Before (session 33) the sweep removed the file under the release (count=1, file=gone), the
deletes succeeded under it and the release delivered a message deleted meanwhile.
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
sock2 = os.path.join(mt.TMP, 'control2.sock')
fifo = os.path.join(mt.TMP, 'release-hold')
dfifo = os.path.join(mt.TMP, 'delete-hold')
os.mkfifo(fifo, 0o600)
os.mkfifo(dfifo, 0o600)


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


def delete_bg(qid):
    return subprocess.Popen([mt.mxgatectl(), '-s', sock, '-t', '600', 'quarantine', 'delete', qid],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def reach_hold(fifo):
    """The FIFO's writing end, open once the operation holds at it (its reading end open)."""
    fd = []

    def try_open():
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError as e:
            if e.errno != errno.ENXIO:   # ENXIO: no reader yet
                raise
            return False
    mt.check(mt.wait_for(try_open, timeout=60), 'the operation holds after finding its file')
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
os.environ['MXGATE_TEST_QUARANTINE_DELETE_HOLD'] = dfifo
# a release waits an hour (not 10 s) for a delete's lock: the last case lets the delete go
# when the release waits, whatever the time the machine takes to get there
os.environ['MXGATE_TEST_QUARANTINE_LOCK_WAIT_MS'] = '3600000'
mx = mt.Mxgate(cfg('maildir:' + qdir), 'mx-qrace')
del os.environ['MXGATE_TEST_QUARANTINE_RELEASE_HOLD']
del os.environ['MXGATE_TEST_QUARANTINE_DELETE_HOLD']
del os.environ['MXGATE_TEST_QUARANTINE_LOCK_WAIT_MS']
# another node on the same folder: a process of its own, no hold
mx2 = mt.Mxgate(mt.config([be.url], hostname='mx2.example.test', quarantine='maildir:' + qdir,
                          control={'socket': sock2}), 'mx-qrace2')


def held_files(qid):
    return glob.glob(os.path.join(qdir, 'new', '*QID=' + qid + '*')) + \
        glob.glob(os.path.join(qdir, 'cur', '*QID=' + qid + '*'))


# ---- the sweep meets the file a release holds: it leaves it
qid, path, held = hold(mx, 'qrace1', ['b@example.test'])
p = release_bg(qid)
fd = reach_hold(fifo)
old = time.time() - 3 * 86400
os.utime(path, (old, old))
mark = mx.log_size()
mx.reload(cfg({'store': 'maildir:' + qdir, 'expire': '2d'}))
m = mx.wait_log(r'event=quarantine_expired count=(\d+) released=\d+ stale_tmp=\d+(?: busy=(\d+))?', timeout=60,
                start=mark)
mt.check(m is not None and m.group(1) == '0' and m.group(2) == '1',
         'the sweep left the file the release holds: count=0 busy=1 (%r)' % (m and m.group(0)))
mt.check(os.path.exists(path), 'the held file is still there while the release holds it')
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
mt.check(rc == 0 and out.startswith('%s: released as ' % qid), 'the release succeeds (%s %r %r)' % (rc, out, err))
ok, what = delivered_whole('qrace1', held)
mt.check(ok, 'the whole held message arrived, once (%s)' % what)
mt.check(glob.glob(os.path.join(qdir, 'released', '*QID=' + qid)) and not held_files(qid),
         'the file went into released/')

# ---- a delete of one recipient from another mxgate process while the release holds it
mx.reload(cfg('maildir:' + qdir))   # no expiry: only the delete acts
qid, path, held = hold(mx, 'qrace2', ['b@example.test', 'a-much-longer-recipient-address@example.test'])
with open(path, 'rb') as f:
    before = f.read()
p = release_bg(qid)
fd = reach_hold(fifo)
rc, out, err = mt.ctl(sock2, 'quarantine', 'delete', qid, 'a-much-longer-recipient-address@example.test')
mt.check(rc != 0 and 'busy' in out + err, 'the other node\'s delete is refused: busy (%s %r %r)' % (rc, out, err))
with open(path, 'rb') as f:
    mt.check(f.read() == before, 'the held file is as it was')
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
mt.check(rc == 0 and out.startswith('%s: released as ' % qid), 'the release succeeds (%s %r %r)' % (rc, out, err))
ok, what = delivered_whole('qrace2', held)
mt.check(ok, 'the whole message as held arrived, once (%s)' % what)
got = be.by_tag('qrace2')
mt.check(got and len(got[0]['rcpts']) == 2, 'to both recipients (%r)' % (got and got[0]['rcpts']))
mt.check(glob.glob(os.path.join(qdir, 'released', '*QID=' + qid)) and not held_files(qid),
         'the file went into released/')
rc, out, err = mt.ctl(sock2, 'quarantine', 'delete', qid, 'a-much-longer-recipient-address@example.test')
mt.check(rc != 0 and 'no held message' in out + err, 'the delete afterwards finds nothing (%s %r %r)' % (rc, out, err))

# ---- a release to one of two recipients while the whole message is deleted (reviewer's case)
qid, path, held = hold(mx, 'qrace3', ['b@example.test', 'c@example.test'])
p = release_bg(qid, 'b@example.test')
fd = reach_hold(fifo)
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', qid)
mt.check(rc != 0 and 'busy' in out + err, 'the delete is refused while the release holds it (%s %r %r)'
         % (rc, out, err))
if fd is not None:
    os.close(fd)
rc, out, err = answer(p)
mt.check(rc == 0 and 'still held for 1' in out, 'the release to b succeeds, c\'s copy stays (%s %r %r)'
         % (rc, out, err))
ok, what = delivered_whole('qrace3', held)
got = be.by_tag('qrace3')
mt.check(ok and got[0]['rcpts'] == ['b@example.test'], 'delivered to b, once (%s %r)' % (what, got and got[0]['rcpts']))
left = held_files(qid)
mt.check(len(left) == 1 and b'<c@example.test>' in open(left[0], 'rb').read().split(b'X-Quarantine-ID')[0]
         and b'<b@example.test>' not in open(left[0], 'rb').read().split(b'X-Quarantine-ID')[0],
         'held for c alone (%r)' % left)
d = delete_bg(qid)
dfd = reach_hold(dfifo)
if dfd is not None:
    os.close(dfd)
rc, out, err = answer(d)
mt.check(rc == 0 and 'deleted' in out, 'the delete then removes c\'s copy (%s %r %r)' % (rc, out, err))
mt.check(not held_files(qid), 'nothing of it is held')
mt.check(len(be.by_tag('qrace3')) == 1, 'and nothing more was delivered')

# ---- a release while a delete holds the file: the delete wins, the release finds nothing
qid, path, held = hold(mx, 'qrace4', ['b@example.test'])
mark = mx.log_size()
d = delete_bg(qid)
dfd = reach_hold(dfifo)
p = release_bg(qid)
mt.check(mx.wait_log(r'event=quarantine_release_waiting id=%s\b' % qid, timeout=60, start=mark) is not None,
         'the release waits for the delete')
if dfd is not None:
    os.close(dfd)
rc, out, err = answer(d)
mt.check(rc == 0 and 'deleted' in out, 'the delete wins (%s %r %r)' % (rc, out, err))
rc, out, err = answer(p)
mt.check(rc != 0 and 'no held message with this ID' in out + err, 'the release answers: not found (%s %r %r)'
         % (rc, out, err))
mt.check(not be.by_tag('qrace4'), 'nothing was delivered')
mt.check(not glob.glob(os.path.join(qdir, '*', '*QID=' + qid + '*')), 'nothing of it is left')

mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx2.stop()
mx.stop()
be.stop()
mt.finish()
