#!/usr/bin/env python3
"""`mxgatectl reload` answers once every worker runs the new generation, bounded.

The control socket's `reload` answered "reloaded: generation N" as soon as the main loop had
handed the new config to the workers' mailboxes; a worker takes it at its next loop pass, so a
script that acted on the answer (test_ops_reload_require_tls.py) could meet the old config on a
busy worker. Here the one worker is held inside a plugin's RCPT hook (it waits for a file the
test makes) across `mxgatectl reload`: on main the answer came while the hook still held the
worker (event=let_go not yet in the log when it arrived); now it comes after. A worker held
longer than the bound (5 s) does not hang the client: the answer is an error naming worker 0
and the generation it still runs; a mxgatectl whose -t is shorter gives up with a hint that
names event=reload_not_in_force, the line the daemon then logs. No clock decides a check: every wait is for an event.
Peers: the recording Backend; a plugin built here (cc)."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from hold_hook import HoldHook  # noqa: E402

mt.need()
hh = HoldHook(mt)              # the plugin holding the one worker in its RCPT hook
GO, so, be, sock = hh.go, hh.so, hh.be, hh.sock
cfg, generation = hh.cfg, hh.generation


def ctl_reload(box):
    box['answer'] = mt.ctl(sock, 'reload', timeout=60)
    box['log'] = mx.log()               # what had happened when the answer came


def rewrite(c):
    """The config file only (as Mxgate.reload, without its SIGHUP): mxgatectl reloads."""
    c['listen'] = [{'address': '127.0.0.1:%d' % p} for p in mx.ports]
    mx._write(c)


def hold(rcpt):
    c = mt.Client(mx.port, timeout=mt.slack(60))
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    box = {}
    th = threading.Thread(target=lambda: box.setdefault('rcpt', c.cmd('RCPT TO:<%s>' % rcpt)))
    th.start()
    return c, th, box


mx = mt.Mxgate(cfg('one.example.test'))
c, th, box = hold('hold@example.test')
mt.check(mx.wait_log(r'event=holding', timeout=30) is not None, 'the worker is held in the hook')
rewrite(cfg('two.example.test'))
ans = {}
ct = threading.Thread(target=ctl_reload, args=(ans,))
ct.start()
mt.check(mt.wait_for(lambda: generation() == 2, 30), 'the main loop runs generation 2 (mxgatectl status)')
ct.join(1.5)                  # on main the answer is already there; now it waits for the worker
open(GO, 'w').close()         # the worker goes on
ct.join(mt.slack(60))
th.join(mt.slack(60))
rc, out, err = ans.get('answer', (None, '', 'no answer'))
mt.check(rc == 0 and 'reloaded: generation 2' in out, 'reload answers generation 2 (rc %s)\n%s%s' % (rc, out, err))
mt.check('event=let_go' in ans.get('log', ''),
         'the answer came after the worker let go of the hook and took generation 2, not while '
         'it still ran generation 1')
mt.check(box.get('rcpt', (None,))[0] == 250, 'the held RCPT answered: %r' % (box.get('rcpt'),))
c.cmd('QUIT')
c.close()
c = mt.Client(mx.port, timeout=mt.slack(60))
mt.check('two.example.test' in str(c.greeting), 'the first client after the answer: generation 2: %r' % (c.greeting,))
c.close()

# held past the bound: an error naming the worker, not a hung client
os.unlink(GO)
c, th, box = hold('hold2@example.test')
mt.check(mt.wait_for(lambda: mx.count_log(r'event=holding') >= 2, 30), 'held again')
rewrite(cfg('three.example.test'))
rc, out, err = mt.ctl(sock, 'reload', timeout=60)
mt.check(rc == 1 and 'worker 0 still runs generation 2' in out + err,
         'a worker held past the bound: reload answers an error naming it (rc %s)\n%s%s' % (rc, out, err))
mt.check(mx.wait_log(r'event=reload_not_in_force generation=3 worker=0 runs=2', timeout=30) is not None,
         'event=reload_not_in_force logged')
open(GO, 'w').close()
th.join(mt.slack(60))
mt.check(box.get('rcpt', (None,))[0] == 250, 'the second held RCPT answered: %r' % (box.get('rcpt'),))
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=reloaded generation=3', timeout=30) is not None, 'generation 3 in force after all')

# mxgatectl's own -t shorter than the daemon's bound: its hint names the line that will say
# why (until session 26 only event=reloaded and event=reload_failed, neither of which comes
# while the worker is held)
os.unlink(GO)
c, th, box = hold('hold3@example.test')
mt.check(mt.wait_for(lambda: mx.count_log(r'event=holding') >= 3, 30), 'held a third time')
rewrite(cfg('four.example.test'))
rc, out, err = mt.ctl(sock, '-t', '1', 'reload', timeout=60)
mt.check(rc == 2 and 'no answer within 1 s' in err and 'event=reload_not_in_force' in err and 'after loading' in err,
         'mxgatectl -t 1 reload: its hint names event=reload_not_in_force (rc %s)\n%s%s' % (rc, out, err))
mt.check(mx.wait_log(r'event=reload_not_in_force generation=4 worker=0 runs=3', timeout=30) is not None,
         'and that is the line the daemon logs, its client gone')
open(GO, 'w').close()
th.join(mt.slack(60))
mt.check(box.get('rcpt', (None,))[0] == 250, 'the third held RCPT answered: %r' % (box.get('rcpt'),))
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=reloaded generation=4', timeout=30) is not None, 'generation 4 in force after all')
rc, out, err = mt.ctl(sock, 'status')
mt.check(rc == 0, 'the control socket answers on (rc %s)\n%s%s' % (rc, out, err))
mx.stop()
mt.finish()
