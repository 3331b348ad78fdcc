#!/usr/bin/env python3
"""A second mxgate started on an address another one already listens on fails, as Postfix's
master does ("bind 0.0.0.0 port 25: Address already in use"), instead of sharing the port.

The workers' listeners use SO_REUSEPORT (the kernel spreads connections over them). Before
the fix a second process of the same user (a `make run` or a hand-started copy beside the
service, an old config) bound the same address beside the first one without a word and
the kernel handed it a share of the connections: part of the mail went through another
configuration. Now each address is first bound without SO_REUSEPORT (SO_REUSEADDR only:
a socket in TIME_WAIT or merely bound does not count, a listening one does); when that
fails the start stops with `mxgate: cannot listen on ADDR: Address already in use`, exit 1,
and the running daemon keeps every connection."""
import os
import re
import socket
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
port = mt.hold_port().port
first = mt.Mxgate(mt.config([sink.url], listen=[{'address': '127.0.0.1:%d' % port}], hostname='mx.first', workers=2),
                  name='first')

cfg2 = os.path.join(mt.TMP, 'second.yaml')
with open(cfg2, 'w') as f:
    f.write(mt.to_yaml(mt.config([sink.url], listen=[{'address': '127.0.0.1:%d' % port}], hostname='mx.second',
                                 workers=1)))
second = subprocess.Popen([mt.BIN, '-c', cfg2], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    out, _ = second.communicate(timeout=mt.slack(5))
    rc = second.returncode
except subprocess.TimeoutExpired:
    rc, out = 'still running', ''
mt.check(rc == 1 and 'cannot listen on 127.0.0.1:%d: Address already in use' % port in out,
         'a second mxgate on the same address stops at once (rc %s): %r' % (rc, out.strip()[-300:]))
# at the address in the file, as the loader's errors (before session 34: "mxgate: cannot ...")
line = [i + 1 for i, text in enumerate(open(cfg2).read().split('\n')) if '127.0.0.1:%d' % port in text]
mt.check(re.search(r'second\.yaml:%d:\d+: listen\[0\]: cannot listen on' % line[0], out) is not None,
         'the refusal names listen[0] at second.yaml:%d (%r)' % (line[0], out.strip()[-300:]))

greetings = set()
for i in range(16):
    s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(10))
    greetings.add(s.recv(200).split(b' ')[1])
    s.close()
mt.check(greetings == {b'mx.first'}, 'every connection is the running daemon\'s (%r)' % greetings)
if second.poll() is None:
    second.kill()
    second.wait()
first.stop()
mt.finish()
