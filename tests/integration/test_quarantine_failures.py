#!/usr/bin/env python3
"""The quarantine's two honest failures (docs/config.md `quarantine`, docs/operations.md
"Log events"), against the rules engine's quarantine threshold and a recording backend.

- a quarantine that is not a maildir:/path (smtp://, lmtp://) is refused by `-t` at its
  place, FILE:LINE:COL: quarantine: expected maildir:/path ..., and the daemon does not
  start with it (was: accepted, then every message it should hold got 451 for ever, nothing
  said why);
- a quarantine file that cannot be written (the maildir's tmp/ a regular file: root writes
  anywhere else) is `451 4.3.0 Message held for review could not be stored` and
  `event=quarantine_failed` with the path and what failed (was: `451 4.4.1 Message not
  accepted by any backend` and `reason=no_backend`, though no backend was asked); the
  message is neither held nor relayed.
"""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

RULES = 'header QF_MID Subject =~ /\\bqfmid/\nscore QF_MID 7\n'
ACTIONS = {'quarantine': 6, 'reject': 10}

be = mt.Backend()
rules_file = os.path.join(mt.TMP, 'quarantine.cf')
with open(rules_file, 'w') as f:
    f.write(RULES)
rules = {'files': [rules_file], 'actions': ACTIONS}


def case_scheme():
    for url in ('smtp://127.0.0.1:%d' % be.port, 'lmtp://127.0.0.1:24', 'lmtp:unix:/run/q.sock'):
        text = mt.to_yaml(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=rules))
        text += 'quarantine: "%s"\n' % url
        path = os.path.join(mt.TMP, 'scheme.yaml')
        st, out = mt.config_check(text, 'scheme')
        line = text.splitlines().index('quarantine: "%s"' % url) + 1
        want = (r'%s:%d:13: quarantine: expected maildir:/path \(messages are held in a Maildir; '
                r'smtp:// and lmtp:// are not supported\): "%s"' % (re.escape(path), line, re.escape(url)))
        mt.check(st == 1 and re.search(want, out) is not None,
                 '-t refuses quarantine %s at its place (rc=%d): %s' % (url, st, out.strip()[-300:]))
    # the start refuses it as -t does (a daemon up with it would 451 every held message)
    try:
        r = mt.run_mxgate('-c', path, timeout=10)
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        rc, out = 'running after 10 s', ''
    mt.check(rc != 0 and 'quarantine: expected maildir:/path' in out,
             'the daemon does not start with it (rc=%s): %s' % (rc, out[-300:]))
    st, out = mt.config_check(mt.config([be.url], listen=[{'address': '127.0.0.1:1'}], rules=rules,
                                        quarantine='maildir:' + os.path.join(mt.TMP, 'q-ok')), 'scheme-ok')
    mt.check(st == 0, 'a maildir:/path quarantine passes -t: %s' % out.strip()[-300:])


def case_write():
    qdir = os.path.join(mt.TMP, 'quarantine')
    os.makedirs(os.path.join(qdir, 'new'))
    os.makedirs(os.path.join(qdir, 'cur'))
    with open(os.path.join(qdir, 'tmp'), 'w') as f:
        f.write('a file where the maildir tmp/ would be\n')
    mx = mt.Mxgate(mt.config([be.url], rules=rules, quarantine='maildir:' + qdir), 'mx-qfail')
    code, text = mt.send_mail(mx.port, 's@example.org', ['b@example.test'], mt.message('qfmid1'),
                              timeout=30)
    mt.check(code == 451 and '4.3.0 Message held for review could not be stored' in text,
             'quarantine write failed: 451 4.3.0, the message was not held (%s %s)' % (code, text))
    mt.check(not be.by_tag('qfmid1') and not os.listdir(os.path.join(qdir, 'new')),
             'neither relayed nor held')
    m = mx.wait_log(r'event=quarantine_failed [^\n]*', timeout=10)
    line = m.group(0) if m else None
    mt.check(line is not None and
             re.search(r'event=quarantine_failed queue_id=\S+ path=%s reason="open %s/tmp/\S+: '
                       r'Not a directory"' % (re.escape(qdir), re.escape(qdir)), line) is not None,
             'event=quarantine_failed names the path and what failed: %s' % line)
    mt.check(mx.count_log(r'reason=no_backend') == 0, 'no reason=no_backend line (no backend was asked)')
    # the same server, the quarantine fixed: held, 250
    os.unlink(os.path.join(qdir, 'tmp'))
    code, text = mt.send_mail(mx.port, 's@example.org', ['b@example.test'], mt.message('qfmid2'),
                              timeout=30)
    mt.check(code == 250 and len(os.listdir(os.path.join(qdir, 'new'))) == 1 and not be.by_tag('qfmid2'),
             'the maildir fixed: held (%s %s)' % (code, text))
    mx.stop()


# MX_POOL_ONLY=scheme,write runs only those
for name, fn in (('scheme', case_scheme), ('write', case_write)):
    if mt.case_wanted(name):
        fn()
mt.finish()
