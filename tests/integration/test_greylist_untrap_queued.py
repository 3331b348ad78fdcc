#!/usr/bin/env python3
"""greylist untrap on LMDB with a trap still queued (filters/limits_control.c lc_ip_verb): the
client has an allow record in the map, a trap for it waits in the workers' write queues (here
the verb's own trap, queued behind another process's write lock: answered ERR at 5 s, written
when the lock goes), and `greylist untrap` is asked. On main it read the map alone (allowed),
answered "allowed ...: not changed" at once and changed nothing: once the lock went the trap
was written and the client refused. Now untrap goes through the writers as the trap did, deletes
the queued trap there (only a trap: an allow record is never untrap's), and answers so — here
ERR at the bound too, the delete queued behind the trap; once the lock goes the client is
greylisted, not refused.

Peers: tests/peers/lmdb_hold.py under python3-lmdb, the recording Backend.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
py = mt.need_sys_python('lmdb')
CTL = mt.mxgatectl()
HOLD = os.path.join(mt.PEERS, 'lmdb_hold.py')
store_dir = os.path.join(mt.TMP, 'gl')
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')
IP = '198.18.9.1'
mx = mt.Mxgate(mt.proxied_config([be.url], workers=1, control={'socket': sock},
                                 greylist={'enabled': True, 'store': 'lmdb:' + store_dir, 'delay': '1h',
                                           'trap_ttl': '1h'}))


def ctl(*args):
    t = time.time()
    r = subprocess.run([CTL, '-s', sock] + list(args), capture_output=True, text=True, timeout=mt.slack(60))
    return time.time() - t, r.returncode, (r.stdout + r.stderr).strip()


def rcpt_code():
    c = mt.Client(mx.port, proxy_src=IP)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    code, _ = c.cmd('RCPT TO:<b@example.test>')
    c.cmd('QUIT')
    c.close()
    return code


dt, rc, text = ctl('greylist', 'allow', IP, '2h')
mt.check(rc == 0 and 'allowed for 7200s' in text, 'allow: %s' % text)
mt.check(rcpt_code() == 250, 'the allowed client passes')
h = subprocess.Popen([py, HOLD, 'write', store_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
if h.stdout.readline().strip() != b'held':
    mt.fail('the LMDB holder did not start: %r' % h.stderr.read())
dt, rc, text = ctl('greylist', 'trap', IP)
mt.say('trap behind the lock: %.2fs rc=%d %s' % (dt, rc, text))
mt.check(rc != 0 and 'queued' in text, 'the trap waits in the queue, said so: %s' % text)
dt, rc, text = ctl('greylist', 'untrap', IP)
mt.say('untrap behind the lock: %.2fs rc=%d %s' % (dt, rc, text))
mt.check('not changed' not in text, 'untrap does not answer "not changed" with a trap queued: %s' % text)
h.stdin.close()
h.wait(timeout=mt.slack(10))


def no_record():
    dt, rc, text = ctl('greylist', 'list')
    return rc == 0 and 'client %s' % IP not in text


# the queued batches written: the allow record is replaced by the trap, which the untrap's delete
# removes; no record is that last state alone (a trap kept would stay listed: the wait runs out)
mt.check(mt.wait_for(no_record, timeout=30), 'once the lock went: no client record left: %s'
         % ctl('greylist', 'list')[2])
code = rcpt_code()
mt.check(code == 451, 'the trap is gone, the client greylisted (its allow went with the '
         'trap that replaced it), not refused: %s' % code)
# nothing queued: untrap of an allowed client deletes nothing (each worker deletes only a trap)
dt, rc, text = ctl('greylist', 'allow', IP, '2h')
mt.check(rc == 0 and 'allowed for 7200s' in text, 'allow again: %s' % text)
dt, rc, text = ctl('greylist', 'untrap', IP)
mt.check(rc == 0 and 'allowed for' in text and 'not changed' in text, 'untrap of an allowed client: not changed: %s'
         % text)
# no wait: untrap is answered once every worker's batch with its delete is applied
mt.check(rcpt_code() == 250, 'and its allow record is kept: it passes')
mx.stop()
mt.finish()
