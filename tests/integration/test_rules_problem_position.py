#!/usr/bin/env python3
"""A warning or error about a rule file names the config key that loaded it.

`mxgate -t` on a config whose rules.files[1] is a file with a bad line (and rules.files[2] a
file including another with one): the line reads `RULEFILE:LINE:COL: reason (rules.files[1]
at CONFIG:LINE:COL)`, the position that of the list item in the config; an included file's
line names the entry of its includer. (The daemon logs the same lines as event=rules_problem,
the same printing; not run here.) On the code before the line stopped after the reason: with many rule
files, or one pulled in by an include, nothing said which entry of the config to look at."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

rdir = os.path.join(mt.TMP, 'rules')
os.makedirs(rdir)
for name, text in (('good.cf', 'header OK1 Subject =~ /x/\nscore OK1 1\n'),
                   ('bad.cf', 'header FOO Subject =~ /foo/\nscore FOO 1\nnotadirective 5\n'),
                   ('inc.cf', 'include %s\n' % os.path.join(rdir, 'inner.cf')),
                   ('inner.cf', '\nalsonotadirective 7\n')):
    with open(os.path.join(rdir, name), 'w') as f:
        f.write(text)
files = [os.path.join(rdir, n) for n in ('good.cf', 'bad.cf', 'inc.cf')]
cfg = mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}], rules={'files': files})
text = mt.to_yaml(cfg)
lines = text.splitlines()
rc, out = mt.config_check(text, name='cfg')
conf = os.path.join(mt.TMP, 'cfg.yaml')


def item_line(path):
    """1-based line of the list item naming path in the config text."""
    return next(i + 1 for i, x in enumerate(lines) if path in x)


for rule_file, lineno, idx, owner in ((os.path.join(rdir, 'bad.cf'), 3, 1, files[1]),
                                      (os.path.join(rdir, 'inner.cf'), 2, 2, files[2])):
    want = r'^%s:%d:1: unknown directive .* \(rules\.files\[%d\] at %s:%d:\d+\)$' % (
        re.escape(rule_file), lineno, idx, re.escape(conf), item_line(owner))
    mt.check(re.search(want, out, re.M),
             '%s:%d: the line names rules.files[%d] at its place in the config (%r)'
             % (os.path.basename(rule_file), lineno, idx,
                [x for x in out.splitlines() if 'directive' in x]))
mt.check(rc != 0, 'and -t fails on them (rc %d)' % rc)
mt.finish()
