#!/usr/bin/env python3
"""Signals that arrive while the daemon drains after SIGTERM. Config management or a
logrotate postrotate may send SIGHUP (or SIGUSR1/SIGUSR2) at any time, also while a stop
is under way; none of them may end the drain: a session in a transaction still finishes
its message, and the process exits 0 with its event=stopped line. (SIGTERM/SIGINT a
second time do end it at once: documented.)

Before: the SIGHUP handler was closed at the shutdown, so libuv put back SIGHUP's default
action and a SIGHUP during the drain killed the daemon on the spot (no exit line, the
message in flight cut off, systemd would have recorded a failure by signal)."""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

be = mt.Backend(name='drain-signals')


def draining(name, metrics, data):
    """A daemon (with or without metrics.listen) draining after SIGTERM while a client has
    a transaction open (and in DATA when data): (mxgate, client)."""
    cfg = mt.config([be.url], limits={'drain_timeout': '20s'})
    if metrics:
        cfg['metrics'] = {'listen': '127.0.0.1:%d' % mt.hold_port().port}
    mx = mt.Mxgate(cfg, name=name)
    c = mt.Client(mx.port)
    c.ehlo()
    mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250 and c.cmd('RCPT TO:<b@example.test>')[0] == 250 and
             (not data or c.cmd('DATA')[0] == 354), '%s: a transaction is open' % name)
    mx.send_signal(signal.SIGTERM)
    mt.check(mx.wait_log(r'event=shutdown signal=15', mt.slack(5)) is not None, '%s: SIGTERM starts the drain' % name)
    return mx, c


def drain_with_signals(name, metrics):
    """SIGTERM with a transaction open, then SIGHUP, SIGUSR1, SIGUSR2: the main loop runs
    for the whole drain (with metrics.listen the probes answer too) and logs each signal."""
    mx, c = draining(name, metrics, False)
    for sig, sname in ((signal.SIGHUP, 'HUP'), (signal.SIGUSR1, 'USR1'), (signal.SIGUSR2, 'USR2')):
        start = mx.log_size()
        mx.send_signal(sig)
        mt.check(mx.wait_log(r'event=(reload_ignored|log_reopen|signal_ignored)\b', mt.slack(5), start) is not None,
                 '%s: SIG%s during the drain is handled and logged (%s)' % (name, sname, mx.tail(2)))
        mt.check(mx.alive(), '%s: SIG%s during the drain does not end the daemon' % (name, sname))
    mt.check(mx.wait_log(r'warning - event=reload_ignored reason=stopping', 0) is not None,
             '%s: SIGHUP during the drain: event=reload_ignored reason=stopping' % name)
    mt.check(c.cmd('DATA')[0] == 354, '%s: the open transaction goes on: DATA' % name)
    c.send(mt.stuff(mt.message(name)))
    code, text = c.reply()
    mt.check(code == 250, '%s: its message is delivered (%s %s)' % (name, code, text))
    c.close()
    mt.check(len(be.by_tag(name)) == 1, '%s: the backend has it once (%d)' % (name, len(be.by_tag(name))))
    mx.stop(sig=None, timeout=mt.slack(25))
    mt.check('event=stopped' in mx.log(), '%s: the drain ends with event=stopped' % name)


def second_term(name, metrics):
    """mxgate(8): "A second signal during the drain exits at once". Without metrics.listen
    the main loop used to end at the first SIGTERM, so the second was never seen and the
    drain ran on to its end (drain_timeout)."""
    mx, c = draining(name, metrics, True)
    mt.check(mx.alive(), '%s: the drain waits for the message' % name)
    mx.send_signal(signal.SIGTERM)
    mt.check(mt.wait_for(lambda: not mx.alive(), mt.slack(5)),
             '%s: a second SIGTERM ends the drain at once' % name)
    mt.check('event=exit reason=second_signal' in mx.log(), '%s: and says so (event=exit reason=second_signal)' % name)
    c.close()
    mx.stop(sig=None, timeout=mt.slack(5))


drain_with_signals('mx-drain-probes', metrics=True)
drain_with_signals('mx-drain-plain', metrics=False)
second_term('mx-second-probes', metrics=True)
second_term('mx-second-plain', metrics=False)
mt.finish()
