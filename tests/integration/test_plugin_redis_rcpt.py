#!/usr/bin/env python3
"""plugins/examples/redis_rcpt_plugin.so — a Haraka hook_rcpt plugin ported from the docs:
each recipient asked of a real redis-server asynchronously (one pipelined connection per
worker), a known one let through, an unknown one 550 5.1.1, and a Redis that does not answer
deferred with the plugin's own 451 4.4.3 before the entry's timeout, as Haraka's
next(DENYSOFT, msg) from a plugin's own timer. Redis stopped (SIGSTOP), killed, restarted on
its port; a client gone while its recipient is being asked (cancel); SIGHUP with the
connection open (fini closes it). Every answer goes to its own recipient."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
so = os.path.join(t.BUILD, 'redis_rcpt_plugin.so')
if not os.path.exists(so):
    t.fail('redis_rcpt_plugin.so not built (it is part of the build): ' + so)

rd = t.redis()
for addr in ('good@example.test', 'other@example.test'):
    t.redis_cmd(rd.port, 'SET', 'rcpt:' + addr, 'ok')
be = t.Backend()


def cfg():
    return t.config([be.url], hostname='mx.example.test', workers=1, plugins=[
        {'name': 'redis_rcpt', 'path': so, 'timeout': '10s', 'on_error': 'tempfail',
         'options': {'redis': '127.0.0.1:%d' % rd.port, 'timeout_ms': '1000'}}])


# Options are checked at -t: a timeout_ms not below the entry's timeout is refused.
bad = cfg()
bad['plugins'][0]['options']['timeout_ms'] = '10000'
bad['listen'] = [{'address': '127.0.0.1:2525'}]   # not bound by -t
rc, out = t.config_check(bad)
t.check(rc == 1 and 'timeout_ms: want milliseconds, above 0 and below the entry' in out,
        '-t refuses timeout_ms not below timeout: %s %s' % (rc, out.strip()[-200:]))

m = t.Mxgate(cfg())


def session():
    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    return c


def rcpts(*addrs):
    """The RCPT replies, sent in one write (pipelined)."""
    c = session()
    c.send(''.join('RCPT TO:<%s>\r\n' % a for a in addrs))
    reps = [c.reply() for _ in addrs]
    c.cmd('QUIT')
    c.close()
    return reps


reps = rcpts('good@example.test', 'nobody@example.test', 'GOOD@Example.TEST', 'other@example.test')
t.check([r[0] for r in reps] == [250, 550, 250, 250] and reps[1][1] == '550 5.1.1 No such user here',
        'pipelined: each answer to its own recipient (known, unknown 550 5.1.1, case, known): %r' % (reps,))
code, text = t.send_mail(m.port, 'a@example.org', ['good@example.test'], t.message('r1', 'body of r1\r\n'), timeout=30)
t.check(code == 250 and len(be.find('body of r1')) == 1, 'a message to a known recipient is relayed: %s %s' % (code, text))

# Redis stopped: the plugin's own timeout (1 s) answers, with its own text, well before the
# entry's (10 s); the late answers are never taken for later recipients.
os.kill(rd.pid, signal.SIGSTOP)
# The text is the plugin's own timer's; the entry's timeout would give 4.3.0 and log error=timeout.
mark = m.log_size()
reps = rcpts('good@example.test', 'nobody@example.test')
t.check([r[1] for r in reps] == ['451 4.4.3 Recipient check timed out, try again later'] * 2 and
        m.count_log(r'event=plugin_error .*error=timeout', mark) == 0,
        'Redis stopped: 451 4.4.3 from the plugin\'s own timer for both, not the entry\'s timeout: %r' % (reps,))
# A client that leaves while its recipient is being asked: the host cancels the call.
c = session()
c.send('RCPT TO:<good@example.test>\r\n')
time.sleep(0.2)
c.close()
time.sleep(0.2)
os.kill(rd.pid, signal.SIGCONT)
time.sleep(1.5)
reps = rcpts('nobody@example.test', 'good@example.test')
t.check([r[0] for r in reps] == [550, 250], 'Redis back: each answer to its own recipient again: %r' % (reps,))

# Redis killed: the plugin's error is the entry's on_error (tempfail), logged with why.
rd.kill()
rd.wait(10)
start = m.log_size()
reps = rcpts('good@example.test')
t.check(reps[0] == (451, '451 4.3.0 Recipient check unavailable, please try again later'),
        'Redis down: on_error tempfail, worded for a recipient check: %r' % (reps,))
t.check(m.wait_log(r'event=plugin_error plugin=redis_rcpt stage=rcpt error=redis-(unreachable|closed) '
                   r'on_error=tempfail', 5, start), 'logged as the plugin\'s error with its reason')
rd = t.redis(rd.port)
t.redis_cmd(rd.port, 'SET', 'rcpt:good@example.test', 'ok')
reps = rcpts('good@example.test', 'nobody@example.test')
t.check([r[0] for r in reps] == [250, 550], 'Redis restarted on its port: the next call connects again: %r' % (reps,))

# SIGHUP with the connection open: the old instance's fini closes it (its close callback
# runs after fini, in the plugin's code).
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 1, 10), 'SIGHUP reloaded')
time.sleep(0.3)
reps = rcpts('good@example.test', 'nobody@example.test')
t.check(m.alive() and [r[0] for r in reps] == [250, 550], 'after the reload the new instance answers: %r' % (reps,))
t.check(not m.malformed_log_lines(), 'every log line in the contract form: %s' % m.malformed_log_lines()[:3])
m.stop()
t.finish()
