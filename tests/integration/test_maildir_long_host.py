#!/usr/bin/env python3
"""Maildir names on a host whose name is long once escaped (w-quarsweep): mxgate runs in a UTS
namespace of its own (unshare -u) with a 64-octet host name of '/' and ',' (each escaped into 4
octets: 256 once escaped; a container's generated name does the same with fewer). Before, the
escaped host part (up to 199 octets) made the unique name too long for its buffer and every
`maildir:` delivery and quarantine hold failed ("path too long"); now the host part is cut to
MAILDIR_HOST_MAX octets with a hash, and:

- a `maildir:` backend delivery is a file in new/ (250 to the client), its name under 180
  octets, without '/', ':' and with no ',' before a field of mxgate's;
- a quarantine hold is a file whose name carries ",QID=ID", shown by `quarantine show ID`.
"""
import glob
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HOST = '/' * 40 + ',' * 24
unshare = shutil.which('unshare')
probe = mt.subprocess.run([unshare or 'unshare', '-u', sys.executable, '-c',
                           'import socket; socket.sethostname(%r)' % HOST], capture_output=True) \
    if unshare else None
if probe is None or probe.returncode != 0:
    mt.skip('no UTS namespace here (unshare -u as root): %s' % (probe.stderr if probe else 'no unshare'))

# mxgate through a wrapper: a UTS namespace of its own, the host name set, then exec (same pid)
wrapper = os.path.join(mt.TMP, 'mxgate-longhost')
with open(wrapper, 'w') as f:
    f.write('#!/bin/sh\nexec %s -u %s -c "import os, socket, sys; socket.sethostname(%r); '
            'os.execv(sys.argv[1], sys.argv[1:])" %s "$@"\n' % (unshare, sys.executable, HOST, mt.BIN))
os.chmod(wrapper, 0o755)

RULES = 'header LH_SUBJ Subject =~ /\\blonghost-held/\nscore LH_SUBJ 7\n'
ACTIONS = {'add_header': 4, 'tempfail': 5, 'quarantine': 6, 'reject': 10}
rules_file = os.path.join(mt.TMP, 'longhost.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
md = os.path.join(mt.TMP, 'inbox')
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')
real_bin, mt.BIN = mt.BIN, wrapper   # the daemon only: mxgatectl is found beside the real one
mx = mt.Mxgate(mt.config(['maildir:' + md], rules={'files': [rules_file], 'actions': ACTIONS},
                         quarantine='maildir:' + qdir, control={'socket': sock}), 'mx-longhost')
mt.BIN = real_bin
mt.check('event=started' in mx.log(), 'mxgate started in its UTS namespace')


def check_name(path, what):
    base = os.path.basename(path)
    mt.check(len(base) < 180, '%s: the name is %d octets (%r)' % (what, len(base), base))
    mt.check(':' not in base and '\\057' in base, '%s: the host part escaped (%r)' % (what, base))
    mt.check(re.search(r'-[0-9a-f]{8}(,QID=\w+)?$', base) is not None,
             '%s: the long host part cut with its hash (%r)' % (what, base))


code, text = mt.send_mail(mx.port, 'a@ext.example', ['b@example.test'], mt.message('longhost-plain'), timeout=30)
mt.check(code == 250, 'maildir: delivered, 250 (%s %s)' % (code, text))
files = glob.glob(os.path.join(md, 'new', '*'))
mt.check(len(files) == 1, 'maildir: one file in new/ (%r)' % files)
if files:
    check_name(files[0], 'maildir delivery')

code, text = mt.send_mail(mx.port, 'a@ext.example', ['b@example.test'], mt.message('longhost-held'), timeout=30)
m = re.search(r'queued as (\S+)', text or '')
mt.check(code == 250 and m is not None, 'quarantine: held, 250 (%s %s)' % (code, text))
qid = m.group(1) if m else 'NONE'
held = glob.glob(os.path.join(qdir, 'new', '*'))
mt.check(len(held) == 1 and held[0].endswith(',QID=' + qid), 'the held file names its ID (%r)' % held)
if held:
    check_name(held[0], 'quarantine hold')
rc, out, err = mt.ctl(sock, 'quarantine', 'show', qid)
mt.check(rc == 0 and out.startswith(qid + ' '), 'show %s: found by its name (%s %r %r)' % (qid, rc, out, err))
mx.stop()
mt.finish()
