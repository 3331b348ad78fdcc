#!/usr/bin/env python3
"""test_rules_modern — the pinned set of today's mail (tests/data/modern/) is what its
generator makes and what SpamAssassin hits on it.

tests/unit/test_rules_modern.c checks mxgate's rules engine against the SpamAssassin hits
pinned in tests/data/modern/sa-hits.tsv; this test keeps those pins honest:
  - gen_modern.py --pinned makes the same messages twice in a row (deterministic), and the
    committed ones byte for byte when run by the Python the set was made with (README);
  - SpamAssassin itself (bench/sa_oracle.pl: Mail::SpamAssassin in-process, Debian's stock
    rules, offline, one process over the sorted list as when pinned) hits exactly the pinned
    rules, __ sub-rules included, on every message.
Peers: perl with Mail::SpamAssassin (the spamassassin package) and its stock rules."""
import filecmp
import glob
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

STOCK = '/usr/share/spamassassin'
DATA = os.path.join(mt.SRC, 'tests', 'data', 'modern')
GEN = os.path.join(DATA, 'gen_modern.py')
MADE_WITH = (3, 11)          # the Python that made msg/ (README.md)

# ---- the generator
a, b = os.path.join(mt.TMP, 'gen-a'), os.path.join(mt.TMP, 'gen-b')
for d in (a, b):
    r = subprocess.run([sys.executable, GEN, '--pinned', d], capture_output=True, text=True,
                       timeout=120)
    mt.check(r.returncode == 0, 'gen_modern.py --pinned runs (%s)' % r.stderr[-300:])
names = sorted(os.listdir(a)) if os.path.isdir(a) else []
same = filecmp.cmpfiles(a, b, names, shallow=False)[0] if names else []
mt.check(names and len(same) == len(names) and sorted(os.listdir(b)) == names,
         'the generator is deterministic (%d of %d messages the same twice)' % (len(same), len(names)))
committed = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, 'msg', '*.eml')))
mt.check(names == committed, 'the generator names the committed messages (%d made, %d committed)' % (
    len(names), len(committed)))
if sys.version_info[:2] == MADE_WITH:
    eq = filecmp.cmpfiles(a, os.path.join(DATA, 'msg'), committed, shallow=False)[0]
    mt.check(len(eq) == len(committed), 'the committed messages are the generator\'s, byte for '
             'byte (%d of %d; differ: %s)' % (len(eq), len(committed),
                                              ', '.join(sorted(set(committed) - set(eq)))[:300]))
else:
    mt.say('Python %d.%d (the set was made with %d.%d): the email package may fold headers '
           'otherwise, committed bytes not compared' % (sys.version_info[:2] + MADE_WITH))

# ---- SpamAssassin itself
if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    mt.skip('stock SpamAssassin rules not installed')
if subprocess.run(['perl', '-MMail::SpamAssassin', '-e', '1'], capture_output=True).returncode:
    mt.skip('perl Mail::SpamAssassin not installed (apt-get install spamassassin)')
site = os.path.join(mt.TMP, 'site')
os.makedirs(site)
for f in glob.glob('/etc/spamassassin/*.pre'):
    shutil.copy(f, site)
with open(os.path.join(site, 'local.cf'), 'w') as f:      # bench_detection.py's SPAMD_CF
    f.write('required_score 5.0\ndns_available no\nskip_rbl_checks 1\nuse_bayes 0\n'
            'bayes_auto_learn 0\nuse_razor2 0\nuse_pyzor 0\nreport_safe 0\n')
lst = os.path.join(mt.TMP, 'list')
with open(lst, 'w') as f:
    # relative paths, sorted, as when pinned: SA's template rules keep the first message's
    # values for the rest of the process (docs/rules.md), so the order matters to them
    f.write('\n'.join('tests/data/modern/msg/' + n for n in committed) + '\n')
r = subprocess.run(['perl', os.path.join(mt.SRC, 'bench', 'sa_oracle.pl'), site, lst],
                   cwd=mt.SRC, capture_output=True, text=True, timeout=600)
mt.check(r.returncode == 0, 'sa_oracle.pl runs (%s)' % r.stderr[-300:])
got = {}
for line in r.stdout.splitlines():
    try:
        o = json.loads(line)
    except ValueError:
        continue
    got[os.path.basename(o['path'])] = (o['score'], sorted(o['hits']))
pinned = {}
for line in open(os.path.join(DATA, 'sa-hits.tsv')):
    if line.startswith('#') or not line.strip():
        continue
    name, score, tests = (line.rstrip('\n').split('\t') + [''])[:3]
    pinned[name] = (float(score), sorted(t for t in tests.split(',') if t))
mt.check(sorted(pinned) == committed, 'sa-hits.tsv pins every committed message')
differ = 0
for name in committed:
    if name not in got or name not in pinned:
        mt.check(False, '%s: SpamAssassin scored it' % name)
        continue
    s, hits = got[name]
    ps, phits = pinned[name]
    if hits != phits or abs(s - ps) > 0.051:
        differ += 1
        mt.say('%s: SA now %.1f %s, pinned %.1f; new: %s; gone: %s' % (
            name, s, '', ps, ','.join(sorted(set(hits) - set(phits))) or '-',
            ','.join(sorted(set(phits) - set(hits))) or '-'))
mt.check(differ == 0, 'SpamAssassin hits the pinned rules on all %d messages (%d differ: '
         'regenerate sa-hits.tsv as tests/data/modern/README.md says if the rules changed)' % (
             len(committed), differ))
mt.finish()
