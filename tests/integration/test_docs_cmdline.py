#!/usr/bin/env python3
"""mxgate(8), EXIT STATUS: "2 for a bad command line". A word after the options that is not
the `learn` command (a typo such as `lern`, a stray argument) is a bad command line: usage
on standard error, exit 2, nothing started. Was: the word was ignored and the daemon started
(`mxgate -c FILE lern spam msg.eml` ran a second mxgate in the foreground, bound to the
listeners if they were free)."""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

path = os.path.join(mt.TMP, 'cmdline.yaml')
open(path, 'w').write('listen: [127.0.0.1:%d]\nbackends: { servers: ["smtp://127.0.0.1:%d"] }\n'
                      % (mt.free_port(), mt.dead_port()))
for args in (['-c', path, 'lern', 'spam', path], ['-c', path, 'extra'], ['-t', '-c', path, 'extra'],
             ['-c', path, 'learn']):
    try:
        r = subprocess.run([mt.BIN] + args, capture_output=True, text=True, timeout=mt.slack(10))
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = 'still running after %gs' % mt.slack(10), (e.stderr or b'').decode(errors='replace')
    mt.check(rc == 2 and 'usage:' in err and 'event=started' not in err,
             'mxgate %s: usage, exit 2, no daemon (%s: %s)' % (' '.join(args).replace(path, 'FILE'), rc, err.strip()[-160:]))
mt.finish()
