#!/usr/bin/env python3
"""mxgatectl's errors say what is wrong, as docs/operations.md lists them ("Errors (exit 1):
a key no rule counts by, a word that is not an IP, greylisting not enabled, Redis
unreachable"): an operator who types a correct command on a daemon without greylisting
must read that greylisting is off, not a usage line that makes them doubt the syntax.

Before the fix `greylist list` (and `greylist list N`) on a daemon without greylisting
answered "usage: greylist list [N] | ..." while `greylist show IP S R` said
"greylist: not enabled"."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()
sink = mt.Sink()
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.config([sink.url], control={'socket': sock}))


def ctl(*args):
    rc, out, err = mt.ctl(sock, *args, timeout=10)
    return rc, (out + err).strip()


for args in (('greylist', 'list'), ('greylist', 'list', '5'), ('greylist', 'show', '198.18.1.1', 'a@b.example', 'c@d.example')):
    rc, out = ctl(*args)
    mt.check(rc == 1 and out == 'greylist: not enabled', '%s without greylisting: not enabled (%s %r)'
             % (' '.join(args), rc, out))
rc, out = ctl('greylist', 'frobnicate')
mt.check(rc == 1 and out.startswith('usage: greylist'), 'a wrong greylist verb still gets the usage (%r)' % out)
mx.stop()
mt.finish()
