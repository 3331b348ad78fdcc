#!/usr/bin/env python3
"""`mxgatectl --help` names every command the daemon takes, as `postfix`'s and `haproxy`'s
command lists do: an operator reads the tool's help before the manual. The daemon's own
list (`mxgatectl help`, over the socket) is the reference; each of its commands (the first
word, and for flush/top/learn/ratelimit/greylist the sub-words) must be in the tool's
--help, in docs/operations.md's command table and in man/mxgatectl.8.

Before the fix `ratelimit show|reset` and `greylist list|show|pass|delete` were missing
from --help (the daemon and the manual had them)."""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()
sink = mt.Sink()
sock = os.path.join(mt.TMP, 'ctl.sock')
mx = mt.Mxgate(mt.config([sink.url], control={'socket': sock}))

daemon = subprocess.run([CTL, '-s', sock, 'help'], capture_output=True, text=True, timeout=mt.slack(10))
mt.check(daemon.returncode == 0 and daemon.stdout.startswith('commands:'), "the daemon's help: %r" % daemon.stdout[:80])
tool = subprocess.run([CTL, '--help'], capture_output=True, text=True, timeout=mt.slack(10))
helptext = tool.stdout + tool.stderr
with open(os.path.join(mt.SRC, 'docs', 'operations.md')) as f:
    ops = f.read()
with open(os.path.join(mt.SRC, 'man', 'mxgatectl.8')) as f:
    man = f.read().replace('\\fR', '').replace('\\fP', '').replace('\\fB', '').replace('\\fI', '')

words = []
for line in daemon.stdout.splitlines()[1:]:
    if not line.startswith('  '):
        continue
    for alt in line.strip().split(' | '):
        parts = alt.split()
        first = parts[0]
        sub = parts[1].split('|') if len(parts) > 1 and parts[1].islower() else []
        words.append((first, sub))
mt.check(len(words) >= 10, 'the daemon lists its commands (%d)' % len(words))

for first, sub in words:
    for where, text in (('mxgatectl --help', helptext), ('docs/operations.md', ops), ('man/mxgatectl.8', man)):
        if not re.search(r'(^|[\s`"|])%s\b' % re.escape(first), text, re.M):
            mt.check(False, '%s names the command %s' % (where, first))
            continue
        for s in sub:
            mt.check(re.search(r'\b%s\b[^\n]*\b%s\b' % (re.escape(first), re.escape(s)), text) is not None,
                     '%s names %s %s' % (where, first, s))
mx.stop()
mt.finish()
