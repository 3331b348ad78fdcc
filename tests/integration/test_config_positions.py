#!/usr/bin/env python3
"""`mxgate -t`'s warnings, made on the loaded config after the load, name their key at its
FILE:LINE:COL as the loader's own errors do. Before session 34 the load kept the positions
of a list of keys chosen in advance (config_marked_keys) and any other key read FILE:1:1,
and a warning about a list item took the list's position: plugins[2]'s warning pointed at
plugins[0], bypass[1]'s at bypass[0], rules.recipient_actions[1].add_header's at
rules.required_score; the rules module's warnings about rules.actions had no position at all
("rules: warning: actions.greylist ..."). Now every key and list item of the file is kept
(proxy/cfg_marks.c).

Each warning's position is checked against where its key is in the text written here, and
no warning of this config says 1:1."""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

# the `# <- NAME` markers say which value (or, with `key:`, which key) a warning points at
TEXT = """\
hostname: mx.example.test
listen:
  - address: "127.0.0.1:2525"
accept_domains: [example.test, wild.example]
backends:
  servers: ["smtp://127.0.0.1:2526"]
  routes:
    - domains: ["*.wild.example"]
      servers: ["smtp://127.0.0.1:2527"]
    - domains:
        - ok.wild2.example
        - vip.wild.example          # <- route1.domain1
      servers: ["smtp://127.0.0.1:2528"]
plugins:
  - name: clamd
    address: "127.0.0.1:3310"
    on_error: tempfail
  - name: milter
    address: "127.0.0.1:11332"
    on_error: accept
    timeout: 10m                    # <- milter.timeout
    max_size: 10M                   # <- milter.max_size
  - name: spamd                     # <- spamd
    address: "127.0.0.1:783"
    on_error: accept
  - name: clamd
    address: "127.0.0.1:3311"
    on_error: tempfail
    options:
      action: quarantine            # <- clamd.action
bypass:
  - recipients: [a.example.test]
    checks: [rules]
  - recipients: [b.example.test]    # <- bypass1
    checks: [clamd]
rules:
  required_score: 6
  bayes:
    enabled: true                   # <- bayes.enabled
  recipient_actions:
    - recipients: [x.example.test]
      reject: 10
    - recipients: [y.example.test]
      add_header: 5                 # <- ra1.add_header
"""
EMPTY = os.path.join(mt.TMP, 'empty.rules')
open(EMPTY, 'w').close()
# rules_check_files' warnings (before session 34 "rules: warning: ...", no position)
RULES = """\
listen:
  - address: "127.0.0.1:2525"
accept_domains: [example.test]
backends:
  servers: ["smtp://127.0.0.1:2526"]
rules:
  files: ["%s"]
  actions:
    add_header: 5
    greylist: 8                     # <- greylist
    tempfail: 7
    quarantine: 9                   # <- quarantine
""" % EMPTY


def at(text, name):
    """(line, col) of the value on the line of text marked `# <- name` (markers spamd and
    bypass1 stand for an item: its first key, where the loader places a message about it)."""
    for i, line in enumerate(text.split('\n')):
        if line.rstrip().endswith('# <- ' + name):
            body = line.split('#')[0].rstrip()
            if name in ('spamd', 'bypass1'):
                return i + 1, body.index('- ') + 3
            return i + 1, body.index(': ') + 3 if ': ' in body else body.index('- ') + 3
    raise KeyError(name)


def expect(name, text, warnings):
    """-t on text (TMP/name.yaml): exit 0, each of warnings [(marker, the text after
    "warning: ")] at its marker's FILE:LINE:COL, and nothing at name.yaml:1:1 (where only a
    top-level key not written, as an absent accept_domains, is)."""
    rc, out = mt.config_check(text, name)
    mt.check(rc == 0, '-t takes %s.yaml (rc %s):\n%s' % (name, rc, out))
    for marker, what in warnings:
        line, col = at(text, marker)
        m = re.search(r'%s\.yaml:(\d+):(\d+): warning: ' % name + re.escape(what), out)
        got = (int(m.group(1)), int(m.group(2))) if m else None
        mt.check(got == (line, col), '-t: "%s" at %s.yaml:%d:%d (%s)' % (
            what[:60], name, line, col, 'at %d:%d' % got if got else 'not found in:\n' + out))
    mt.check(not re.search(r'%s\.yaml:1:1:' % name, out),
             'no message of -t on %s.yaml says 1:1 (%s)' % (name, out.strip()[:2000]))


expect('pos', TEXT, [
    ('route1.domain1', 'backends.routes[1].domains[1]: "vip.wild.example" is matched by routes[0] first'),
    ('milter.timeout', 'plugins[1] (milter): timeout 600000ms is not below limits.filter_deadline'),
    ('milter.max_size', 'plugins[1] (milter): max_size has no effect'),
    ('clamd.action', 'plugins[3] (clamd): action quarantine without a quarantine backend'),
    ('bypass1', 'bypass[1] skips clamd'),
    ('ra1.add_header', 'rules.recipient_actions[1].add_header does not change X-Spam-Status'),
])
# the classifier without rule files and without a spamd plugin (which turns the rules
# engine on with an empty rule set since session 37) runs nowhere
BAYES = """\
listen:
  - address: "127.0.0.1:2525"
accept_domains: [example.test]
backends:
  servers: ["smtp://127.0.0.1:2526"]
rules:
  bayes:
    enabled: true                   # <- bayes.enabled
"""
expect('bayes', BAYES, [
    ('bayes.enabled', 'rules.bayes.enabled but rules.files is empty'),
])
expect('rules', RULES, [
    ('greylist', 'rules.actions.greylist 8.00 keeps its records in greylist.store local'),
    ('greylist', 'rules.actions.greylist 8.00 is at or above actions.tempfail 7.00'),
    ('quarantine', 'rules.actions.quarantine 9.00 without a quarantine backend'),
])

# the start: a control socket it cannot make (a directory where the socket should be, which the
# load does not refuse) stops it with the key's position on standard error (before session 34:
# only the log's event=control_error)
blocker = os.path.join(mt.TMP, 'a-dir')
os.mkdir(blocker)
port = mt.hold_port().port
START = '''\
listen:
  - address: "127.0.0.1:%d"
accept_domains: [example.test]
backends:
  servers: ["smtp://127.0.0.1:2526"]
control:
  socket: "%s"                      # <- socket
''' % (port, blocker)
path = os.path.join(mt.TMP, 'start.yaml')
with open(path, 'w') as f:
    f.write(START)
p = subprocess.run([mt.BIN, '-c', path], capture_output=True, text=True, timeout=mt.slack(30))
line, col = at(START, 'socket')
mt.check(p.returncode == 1 and re.search(r'^%s:%d:%d: control\.socket: cannot make the control socket'
                                         % (re.escape(path), line, col), p.stderr, re.M) is not None,
         'the start refuses a control socket it cannot make, at start.yaml:%d:%d (rc %s): %s'
         % (line, col, p.returncode, p.stderr.strip()[-600:]))
mt.finish()
