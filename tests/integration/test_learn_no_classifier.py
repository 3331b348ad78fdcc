#!/usr/bin/env python3
"""`mxgate -c FILE learn` with a config that has no classifier: an error naming the key.

A config with neither rules.bayes.enabled: true nor rules.bayes.store has no classifier (the
daemon classifies nothing, POST /learn answers 503); learning with it filled the default store
/var/lib/mxgate/bayes, which no daemon of that config reads. It is now
`FILE:LINE:COL: rules.bayes.store: not set ...` (the position of the nearest enclosing key
written: the file's top, `rules:`, `bayes:`), exit 2, and no store is opened. A store named
with enabled false is still learned into (learn first, then enable), with its note. On the
code before the first three cases opened (made) the default store: exit 0, or 1 when it could
not make /var/lib/mxgate."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

msg = os.path.join(mt.TMP, 'spam.eml')
with open(msg, 'wb') as f:
    f.write(b'From: a@example.org\r\nSubject: cheap pills\r\nMessage-ID: <1@x>\r\n\r\nbuy now\r\n')

base = mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}]))
for name, extra, line in (
        ('none', '', 1),                                          # no rules: the file's top
        ('rules', 'rules:\n  files: []\n', None),                 # rules: the rules key
        ('bayes', 'rules:\n  bayes:\n    min_spam: 5\n', None),   # bayes written, no store
        ('off', 'rules:\n  bayes:\n    enabled: false\n', None)):
    path = os.path.join(mt.TMP, name + '.yaml')
    text = base + extra
    with open(path, 'w') as f:
        f.write(text)
    if line is None:        # the line of the deepest key written: rules: or bayes:
        key = 'bayes:' if 'bayes:' in extra else 'rules:'
        line = text.splitlines().index(next(x for x in text.splitlines() if x.strip() == key)) + 1
    r = mt.run_mxgate('-c', path, 'learn', 'spam', msg)
    want = r'^%s:%d:\d+: rules\.bayes\.store: not set' % (re.escape(path), line)
    mt.check(r.returncode == 2 and re.search(want, r.stderr, re.M) and r.stdout == '',
             '%s: learn without a classifier: exit 2, %s:%d: rules.bayes.store: not set ... '
             '(rc %d, %r %r)' % (name, name, line, r.returncode, r.stdout.strip()[:200], r.stderr.strip()[:300]))

# a store named, the classifier not enabled yet: learned, with the note
store = os.path.join(mt.TMP, 'bayes')
path = os.path.join(mt.TMP, 'named.yaml')
with open(path, 'w') as f:
    f.write(base + 'rules:\n  bayes:\n    store: "lmdb:%s"\n' % store)
r = mt.run_mxgate('-c', path, 'learn', 'spam', msg)
mt.check(r.returncode == 0 and 'learned 1 spam' in r.stdout and 'rules.bayes.enabled' in r.stderr,
         'a named store with enabled false: learned, the note names rules.bayes.enabled (rc %d, %r %r)'
         % (r.returncode, r.stdout.strip(), r.stderr.strip()))
mt.finish()
