#!/usr/bin/env python3
"""The quarantine at scale (w-quarstore), against a real recording backend:

- a held file's name carries its ID (",QID=ID" after the maildir unique name, as Dovecot's
  ",S=size"): after a restart, `quarantine show ID` reads the one file it names, not the
  head of every held file to find it (counted by mxgate_quarantine_files_read_total, not
  timed); a file a maildir reader moved into cur/ with ":2,S" is found the same way;
- files held by an older mxgate (no ID in their name) are still found, by their heads,
  once: a second lookup reads none of them again;
- quarantine.expire (the section form `quarantine: { store:, expire: }`): at start the
  sweep removes a held file older than it and keeps a younger one, logs
  event=quarantine_expired count=1 and counts it in mxgate_quarantine_expired_total;
  released/ is swept by the same expire, a released file dated by its release (w-quarsweep);
  tmp/ loses what a crash between a write and its rename left, older than 36 hours (the
  Maildir convention), a fresh write stays: stale_tmp=1 (w-quarser; before, tmp/ was never
  swept and the log line had no stale_tmp); without quarantine.expire the sweep runs for tmp/
  alone, expire=none, a held file of any age stays (before session 35 it did not run at all).
"""
import glob
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QS_SUBJ Subject =~ /\\bqstore/\nscore QS_SUBJ 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}
OLD = 40   # files held by an older mxgate

be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'qstore.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')


def cfg(quarantine):
    return mt.config([be.url], hostname='mx.example.test', rules={'files': [rules_file], 'actions': ACTIONS},
                     quarantine=quarantine, control={'socket': sock}, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})


def held_block(qid, rcpt='old@example.test'):
    return ('Return-Path: <s@ext.example>\r\nX-Envelope-From: <s@ext.example>\r\n'
            'X-Envelope-To: <%s>\r\nX-Envelope-To-Blocked: <%s>\r\nX-Quarantine-ID: <%s>\r\n'
            'Subject: held %s\r\n\r\nbody\r\n' % (rcpt, rcpt, qid, qid)).encode()


def reads(mx):
    return mx.metric('quarantine_files_read_total')


mx = mt.Mxgate(cfg('maildir:' + qdir), 'mx-qstore')
ids = []
for i in range(3):
    code, text = mt.send_mail(mx.port, 'a@ext.example', ['b@example.test'], mt.message('qstore%d' % i), timeout=30)
    m = re.search(r'queued as (\S+)', text or '')
    mt.check(code == 250 and m is not None, 'qstore%d: held, 250 (%s %s)' % (i, code, text))
    ids.append(m.group(1) if m else 'NONE')
names = [os.path.basename(p) for p in glob.glob(os.path.join(qdir, 'new', '*'))]
for qid in ids:
    mt.check(any(n.endswith(',QID=' + qid) for n in names), 'the held file of %s names it (%r)' % (qid, names))
mx.stop()

# files an older mxgate held: no ID in the name (the maildir unique name only)
for i in range(OLD):
    with open(os.path.join(qdir, 'new', '1700000000.M%dP1Q%d.oldhost' % (i, i)), 'wb') as f:
        f.write(held_block('OLD%d' % i))
# a maildir reader took one of ours into cur/ and flagged it seen
moved = [n for n in names if n.endswith(',QID=' + ids[1])]
if moved:
    os.rename(os.path.join(qdir, 'new', moved[0]), os.path.join(qdir, 'cur', moved[0] + ':2,S'))

# ---- the restart: a new process, an empty index
mx = mt.Mxgate(cfg('maildir:' + qdir), 'mx-qstore2')
r0 = reads(mx)
mt.check(r0 == 0, 'a fresh process has read no held file (%r)' % r0)
for qid in (ids[2], ids[1]):
    before = reads(mx)
    rc, out, err = mt.ctl(sock, 'quarantine', 'show', qid)
    after = reads(mx)
    mt.check(rc == 0 and out.startswith(qid + ' '), 'show %s after the restart: found (%s %r %r)' % (qid, rc, out, err))
    mt.check(before is not None and after is not None and after - before == 1,
             'show %s read the one file its name names, not %d old heads (%r -> %r)' % (qid, OLD, before, after))
# an older file: found by the heads, each read once
before = reads(mx)
rc, out, err = mt.ctl(sock, 'quarantine', 'show', 'OLD7')
mid = reads(mx)
mt.check(rc == 0 and out.startswith('OLD7 '), 'an older file (no ID in its name) is found (%s %r %r)' % (rc, out, err))
mt.check(mid is not None and before is not None and 1 <= mid - before <= OLD,
         'its lookup read at most the %d older heads (%r -> %r)' % (OLD, before, mid))
rc, out, err = mt.ctl(sock, 'quarantine', 'show', 'OLD7')
after = reads(mx)
mt.check(rc == 0 and after is not None and mid is not None and after - mid == 1,
         'a second lookup reads only the file found (%r -> %r)' % (mid, after))
rc, out, err = mt.ctl(sock, 'quarantine', 'show', 'NOSUCH1')
mt.check(rc != 0 and 'no held message' in out + err, 'an unknown ID: none (%s %r)' % (rc, out))
rc, out, err = mt.ctl(sock, 'quarantine', 'delete', ids[0])
mt.check(rc == 0 and not any(n.endswith(',QID=' + ids[0]) for n in os.listdir(os.path.join(qdir, 'new'))),
         'delete by ID through the name (%s %r)' % (rc, out))
mx.stop()

# ---- expiry: one older than quarantine.expire, one younger
edir = os.path.join(mt.TMP, 'expiring')
for sub in ('tmp', 'new', 'cur'):
    os.makedirs(os.path.join(edir, sub), exist_ok=True)
now = time.time()
old_f = os.path.join(edir, 'new', '1700000001.M1P1Q1.h,QID=EXPOLD')
young_f = os.path.join(edir, 'cur', '1700000002.M1P1Q2.h,QID=EXPYOUNG:2,S')
# an older mxgate's name (no ,QID=: its envelope block tells), and mail that is not a held
# message (a client moved it there, a mailbox shared by mistake): only the held ones go
legacy_f = os.path.join(edir, 'new', '1700000003.M1P1Q3.h')
foreign_f = os.path.join(edir, 'cur', '1700000004.M1P1Q4.h:2,S')
for path, age_days in ((old_f, 3), (young_f, 1), (legacy_f, 3)):
    with open(path, 'wb') as f:
        f.write(held_block(os.path.basename(path).split('=')[1].split(':')[0] if '=' in path else 'EXPLEGACY'))
    os.utime(path, (now - age_days * 86400, now - age_days * 86400))
with open(foreign_f, 'wb') as f:
    f.write(b'From: someone@example.test\r\nSubject: not held by mxgate\r\n\r\nbody\r\n')
os.utime(foreign_f, (now - 90 * 86400, now - 90 * 86400))
# released/: copies for the record, dated by their release; swept by the same expire
os.makedirs(os.path.join(edir, 'released'), exist_ok=True)
rel_old = os.path.join(edir, 'released', '1700000005.M1P1Q5.h,QID=RELOLD')
rel_young = os.path.join(edir, 'released', '1700000006.M1P1Q6.h,QID=RELYOUNG:2,S')
for path, age_days in ((rel_old, 3), (rel_young, 1)):
    with open(path, 'wb') as f:
        f.write(held_block(os.path.basename(path).split('=')[1].split(':')[0]))
    os.utime(path, (now - age_days * 86400, now - age_days * 86400))
# tmp/: what a crash between a write and its rename left (the Maildir convention's 36 hours,
# whatever expire says: 40 hours is younger than expire=2d and still goes); a fresh one is a
# write under way and stays
tmp_stale = os.path.join(edir, 'tmp', '1700000007.M1P1Q7.h')
tmp_fresh = os.path.join(edir, 'tmp', '1700000008.M1P1Q8.h')
for path in (tmp_stale, tmp_fresh):
    with open(path, 'wb') as f:
        f.write(held_block('TMPCUT')[:40])
os.utime(tmp_stale, (now - 40 * 3600, now - 40 * 3600))
mx = mt.Mxgate(cfg({'store': 'maildir:' + edir, 'expire': '2d'}), 'mx-qexpire')
m = mx.wait_log(r'event=quarantine_expired count=(\d+) released=(\d+) stale_tmp=(\d+) expire=2d', timeout=30)
mt.check(m is not None and m.group(1) == '2' and m.group(2) == '1' and m.group(3) == '1',
         'the sweep logged count=2 released=1 stale_tmp=1 (%r)' % (m and m.group(0)))
mt.check(not os.path.exists(tmp_stale), 'a tmp/ file 40 hours old (a write a crash cut) is gone')
mt.check(os.path.exists(tmp_fresh), 'a fresh tmp/ file (a write under way) stays')
mt.check(not os.path.exists(rel_old), 'a released file older than expire is gone')
mt.check(os.path.exists(rel_young), 'a younger released file stays')
mt.check(not os.path.exists(old_f), 'the held file older than expire is gone')
mt.check(not os.path.exists(legacy_f), 'an older mxgate\'s held file (no ID in its name) older than expire is gone')
mt.check(os.path.exists(foreign_f), 'a 90-day-old file that is not a held message stays')
mt.check(os.path.exists(young_f), 'the younger one stays')
mt.check(mx.metric('quarantine_expired_total') == 2, 'mxgate_quarantine_expired_total 2 (%r)'
         % mx.metric('quarantine_expired_total'))
rc, out, err = mt.ctl(sock, 'quarantine', 'show', 'EXPYOUNG')
mt.check(rc == 0, 'the younger one is still shown (%s %r)' % (rc, out))
# released, it is dated by the release (held a day ago): expire counts from there
rc, out, err = mt.ctl(sock, 'quarantine', 'release', 'EXPYOUNG', timeout=60)
mt.check(rc == 0, 'the younger one is released (%s %r %r)' % (rc, out, err))
moved = glob.glob(os.path.join(edir, 'released', '*QID=EXPYOUNG*'))
mt.check(len(moved) == 1 and os.stat(moved[0]).st_mtime > now - 3600,
         'in released/, dated by the release, not the hold (%r)' % [(p, os.stat(p).st_mtime) for p in moved])
mx.stop()

# ---- no quarantine.expire: held files stay for ever, but tmp/ still loses what a crash cut
ndir = os.path.join(mt.TMP, 'never-expiring')
for sub in ('tmp', 'new', 'cur'):
    os.makedirs(os.path.join(ndir, sub), exist_ok=True)
now = time.time()
kept_f = os.path.join(ndir, 'new', '1700000011.M1P1Q11.h,QID=KEPTOLD')
with open(kept_f, 'wb') as f:
    f.write(held_block('KEPTOLD'))
os.utime(kept_f, (now - 900 * 86400, now - 900 * 86400))
ntmp_stale = os.path.join(ndir, 'tmp', '1700000012.M1P1Q12.h')
ntmp_fresh = os.path.join(ndir, 'tmp', '1700000013.M1P1Q13.h')
for path in (ntmp_stale, ntmp_fresh):
    with open(path, 'wb') as f:
        f.write(held_block('TMPNOEXP')[:40])
os.utime(ntmp_stale, (now - 40 * 3600, now - 40 * 3600))
mx = mt.Mxgate(cfg('maildir:' + ndir), 'mx-qnoexpire')
m = mx.wait_log(r'event=quarantine_expired count=(\d+) released=(\d+) stale_tmp=(\d+) expire=none', timeout=30)
mt.check(m is not None and m.groups() == ('0', '0', '1'),
         'without quarantine.expire the sweep runs for tmp/ alone: count=0 released=0 stale_tmp=1 expire=none '
         '(before session 35 it never ran: %r)' % (m and m.group(0)))
mt.check(not os.path.exists(ntmp_stale), 'without expire, a tmp/ file 40 hours old is gone')
mt.check(os.path.exists(ntmp_fresh), 'without expire, a fresh tmp/ file stays')
mt.check(os.path.exists(kept_f), 'without expire, a held file 900 days old stays')
mx.stop()

# ---- -t: the section form is checked like the plain one
bad = os.path.join(mt.TMP, 'bad.yaml')
with open(bad, 'w') as f:
    f.write(mt.to_yaml(cfg({'store': 'smtp://127.0.0.1:25', 'expire': 'soon'})))
rc = subprocess.run([mt.BIN, '-t', '-c', bad], capture_output=True, text=True, timeout=60)
mt.check(rc.returncode == 1 and 'quarantine.expire' in rc.stdout + rc.stderr,
         '-t: a bad expire is refused with its key (%r)' % (rc.stdout + rc.stderr))
mt.finish()
