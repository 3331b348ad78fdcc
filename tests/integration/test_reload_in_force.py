#!/usr/bin/env python3
"""event=reloaded means the new generation is in force: logged once every worker has taken it.

A reload is made on the main loop and handed to each worker through its mailbox; a worker
takes it at its next loop pass. The line was logged by the main loop right after the hand-over,
so a test (or an operator's script) that waited for it and then opened a session could still
meet the old generation on a busy worker. Here the one worker is held inside a plugin's RCPT
hook (it waits for a file the test makes) across a SIGHUP that changes the hostname: the main
loop's generation is 2 (`mxgatectl status`) while the worker still runs 1. On main the line was
already there; now it comes after the hook let go (the order of the two lines in the log), and
the first client after it is greeted with the new hostname. No clock: every wait is for an event.
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


mx = mt.Mxgate(cfg('one.example.test'))
c = mt.Client(mx.port, timeout=mt.slack(60))
mt.check('one.example.test' in str(c.greeting), 'greeted under generation 1: %r' % (c.greeting,))
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<a@example.org>')
box = {}
th = threading.Thread(target=lambda: box.setdefault('rcpt', c.cmd('RCPT TO:<hold@example.test>')))
th.start()
mt.check(mx.wait_log(r'event=holding', timeout=30) is not None, 'the worker is held in the hook')
mx.reload(cfg('two.example.test'))
mt.check(mt.wait_for(lambda: generation() == 2, 30), 'the main loop runs generation 2 (mxgatectl status)')
open(GO, 'w').close()                                   # the worker goes on
th.join(mt.slack(60))
mt.check(box.get('rcpt', (None,))[0] == 250, 'the held RCPT answered: %r' % (box.get('rcpt'),))
c.cmd('QUIT')
c.close()
mt.check(mx.wait_log(r'event=reloaded generation=2', timeout=30) is not None, 'event=reloaded generation=2')
log = mx.log()
let_go, reloaded = log.find('event=let_go'), log.find('event=reloaded generation=2')
mt.check(0 <= let_go < reloaded,
         'event=reloaded logged after the worker let go of the hook, not while it ran generation 1 '
         '(let_go at %d, reloaded at %d)' % (let_go, reloaded))
c = mt.Client(mx.port, timeout=mt.slack(60))
mt.check('two.example.test' in str(c.greeting), 'the first client after event=reloaded: generation 2: %r' % (c.greeting,))
c.close()
mx.stop()
mt.finish()
