#!/usr/bin/env python3
"""bayes_cv.py — cross-validation of the classifier inside a split's training half (what
docs/classifier.md's choices rest on), and the same figures on the test half for the report.

    bench/bayes_cv.py BAYES_CV [--split time|interleaved|both] [--folds 5] [--seed N] [--test]
        [--tool-args '-c chi'] [--misses FILE] [--grid | --sel-grid] [--hits auto|spamd|mxgate]
        [--dump FILE] [--stream N [--learn-on error|tone|all]]

BAYES_CV is bench/bayes_cv.c built against libmxcore.a (bench/bayes_cv.sh builds it). The
training half of each split (bench_classifier's splits) is cut into FOLDS folds (every
FOLDS-th message of each class; --seed N: by a hash of the file name and N instead, another
partition of the same messages — a figure that moves between partitions by as much as
between two variants is noise); each fold is scored by a classifier that learned the
others. --test scores the test half after learning the whole training half instead (for
the report only: choices are made on the cross-validation). Prints, per split:
  1 - AUC (%), the classifier's buckets (spam in BAYES_99, ham in it, spam in BAYES_00),
  and rules + classifier: the stock rules' hits on each message scored with SpamAssassin's
  set-2 scores plus the BAYES_xx the classifier's probability falls in — spam caught % and
  ham misfiled % at 5. The rule hits (--hits): spamd's (bench_detection's cache, hours to
  fill) or mxgate's own (bayes_cv -H, the stock rules in set 2, about 30 s, cached in
  CACHE/mxgate-hits/); auto: spamd's when its cache is there. Since the evals were merged
  both give the same figures (docs/classifier.md).
--tool-args: options of bayes_cv (its header: the variants measured).
--misses FILE writes, for the scored messages that rules + classifier get wrong, one line
each: group, path, total, probability and the rule hits. --grid: the figures for each
power and nats of the odds combining over a grid (0 nats: no pull towards 0.5). --sel-grid:
for each strength cut (0.2 .. 0.45) and count of strongest tokens (75 .. 500).
--dump FILE writes one JSON line per scored message (split, half, fold, group, path, p, rule
hits): what bench/bayes_cv_learn.py fits learned rule weights on.
--stream N --learn-on error|tone|all (with --test): the test half in arrival order in
batches of N; after each batch the site learns, with the true label, what rules + classifier
got wrong at 5 (error: an operator who runs `mxgate learn` on the misses reported to them),
that and what the classifier was unsure of (tone: train on or near error, 0.05 < p < 0.95),
or everything (all: the same as the plain --stream).
"""
import argparse
import glob
import math
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_classifier as bc  # noqa: E402

# SpamAssassin's 23_bayes.cf ranges: lo < p <= hi (BAYES_00: 0 <= p)
BUCKETS = [('BAYES_00', 0, 0.01), ('BAYES_05', 0.01, 0.05), ('BAYES_20', 0.05, 0.2),
           ('BAYES_40', 0.2, 0.4), ('BAYES_50', 0.4, 0.6), ('BAYES_60', 0.6, 0.8),
           ('BAYES_80', 0.8, 0.95), ('BAYES_95', 0.95, 0.99), ('BAYES_99', 0.99, 1.0)]


def buckets(p):
    if p is None or p < 0:
        return set()
    out = {n for n, lo, hi in BUCKETS if (lo == 0 or p > lo) and p <= hi}
    if p > 0.999:
        out.add('BAYES_999')
    return out


def auc(scored):
    """1 - AUC in % over [(is_spam, p)] (ties count half)."""
    s = sorted(scored, key=lambda x: x[1])
    nspam = sum(1 for x in s if x[0])
    nham = len(s) - nspam
    if not nspam or not nham:
        return float('nan')
    rank, i, sum_r = 1, 0, 0.0
    while i < len(s):
        j = i
        while j < len(s) and s[j][1] == s[i][1]:
            j += 1
        avg = (rank + rank + (j - i) - 1) / 2.0
        sum_r += avg * sum(1 for k in range(i, j) if s[k][0])
        rank += j - i
        i = j
    a = (sum_r - nspam * (nspam + 1) / 2.0) / (nspam * nham)
    return 100.0 * (1 - a)


def odds(lsq, lhq, power, nats):
    """bayes_combine_odds with other constants (nats 0: no pull towards 0.5)."""
    e = min(700.0, power * (lsq - lhq))
    p = 1.0 / (1.0 + math.exp(e))
    if not nats:
        return p
    u = 1.0 - math.exp(-min(-lsq, -lhq) / nats)
    return 0.5 * u + (1.0 - u) * p


def fold_of(i, path, folds, seed):
    """The fold of the i-th training message of its class (seed 0: i % folds)."""
    if not seed:
        return i % folds
    h = hashlib.sha1(('%d %s' % (seed, os.path.basename(path))).encode()).digest()
    return int.from_bytes(h[:4], 'big') % folds


def run_tool(tool, args, rows, tmp, sel=False):
    """rows [(fold, cls, path)] -> {path: prob} (with -r: {path: (lsq, lhq) or None}; with
    sel (several -s cuts or -n counts): {(cut, count): {path: ...}})."""
    lst = os.path.join(tmp, 'list')
    with open(lst, 'w') as f:
        for fold, cls, p in rows:
            f.write('%d %s %s\n' % (fold, cls, p))
    # the stock rules' bayes_ignore_header lines, as the daemon with them (bench_classifier)
    out = subprocess.run([tool, '-i', STOCK + '/*.cf'] + args + [lst],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        key = None
        if sel:
            parts = line.rsplit(' ', 4 if '-r' in args else 3)
            p, key, vals = parts[0], (float(parts[1]), int(parts[2])), parts[3:]
        else:
            parts = line.rsplit(' ', 2 if '-r' in args else 1)
            p, vals = parts[0], parts[1:]
        if '-r' in args:
            v = None if vals[0] == 'none' else (float(vals[0]), float(vals[1]))
        else:
            v = float(vals[0])
        res.setdefault(key, {})[p] = v
    return res if sel else res.get(None, {})


STOCK = '/usr/share/spamassassin'


def mxgate_hits(tool, cache, groups, tmp):
    """{sha1: [tests]}: mxgate's own rule hits (the stock rules, score set 2, no BAYES_xx) on
    every corpus message, cached in CACHE/mxgate-hits/<fingerprint of the rule files and the
    build>.json. Stands in for spamd's cache (which takes hours to fill): since the evals
    were merged mxgate's hits give spamd's projected figure (docs/classifier.md)."""
    import json
    fp = hashlib.sha1()
    for path in sorted(glob.glob(STOCK + '/*.cf')):
        fp.update(open(path, 'rb').read())
    fp.update(open(tool, 'rb').read())
    d = os.path.join(cache, 'mxgate-hits')
    out = os.path.join(d, fp.hexdigest()[:16] + '.json')
    if os.path.exists(out):
        return json.load(open(out))
    paths = [p for g in bc.GROUPS for p in groups[g]]
    lst = os.path.join(tmp, 'hits-list')
    with open(lst, 'w') as f:
        for p in paths:
            f.write('0 spam %s\n' % p)
    bc.say('bayes_cv: scoring %d messages with mxgate\'s rules for the rule hits (once)' %
           len(paths))
    r = subprocess.run([tool, '-H', STOCK + '/*.cf', lst], capture_output=True, text=True,
                       errors='replace', check=True).stdout
    res = {}
    for line in r.splitlines():
        p, t = line.rsplit(' ', 1)
        res[hashlib.sha1(open(p, 'rb').read()).hexdigest()] = [] if t == '-' else t.split(',')
    os.makedirs(d, exist_ok=True)
    with open(out + '.tmp', 'w') as f:
        json.dump(res, f)
    os.replace(out + '.tmp', out)
    return res


def evaluate(probs, labelled, hits, scores, nice):
    """Figures over labelled [(group, path)] with probs {path: p}."""
    spam = [p for g, p in labelled if g.startswith('spam')]
    ham = [p for g, p in labelled if not g.startswith('spam')]
    pr = lambda p: probs.get(p, -1)  # noqa: E731
    f = {'auc': auc([(g.startswith('spam'), pr(p)) for g, p in labelled]),
         's99': bc.pct(sum(1 for p in spam if 'BAYES_99' in buckets(pr(p))), len(spam)),
         'h99': sum(1 for p in ham if 'BAYES_99' in buckets(pr(p))),
         's00': sum(1 for p in spam if 'BAYES_00' in buckets(pr(p)))}
    tot = {}
    for g, p in labelled:
        v = bc.projected(hits, scores, nice, p, buckets(pr(p))) if hits else None
        if v is not None:
            tot[p] = v
    f['caught'] = bc.pct(sum(1 for p in spam if tot.get(p, 0) >= 5), len(spam))
    f['misfiled'] = bc.pct(sum(1 for p in ham if tot.get(p, 0) >= 5), len(ham))
    f['tot'] = tot
    return f


def learn_on_stream(a, rows, labelled, hits, scores, nice, tmp, name):
    """The test stream in batches (rows: fold -1 the training half, fold k batch k), each
    scored by a classifier that learned the training half and what the site chose to learn
    of the batches before (a.learn_on: error, tone or all; the true label); returns
    {path: p}. One bayes_cv run per batch (it tokenizes again: a minute or two a split)."""
    learned = [r for r in rows if r[0] < 0]
    nb = max(r[0] for r in rows) + 1
    probs, n = {}, {'spam': 0, 'ham': 0, 'wrong': 0}
    for k in range(nb):
        batch = [(0, c, p) for f, c, p in rows if f == k]
        got = run_tool(a.tool, a.tool_args.split(), learned + batch, tmp)
        probs.update(got)
        for _, c, p in batch:
            pr = got.get(p, -1)
            t = bc.projected(hits, scores, nice, p, buckets(pr)) if hits else None
            wrong = t is not None and (t >= 5) != (c == 'spam')
            unsure = 0.05 < pr < 0.95
            if a.learn_on == 'all' or wrong or (a.learn_on == 'tone' and unsure):
                learned.append((-1, c, p))
                n[c] += 1
                n['wrong'] += wrong
    bc.say('learn on %s, %s stream of %d batches: learned %d spam and %d ham (%d of them '
           'errors at 5)' % (a.learn_on, name, nb, n['spam'], n['ham'], n['wrong']))
    return probs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('tool')
    ap.add_argument('--split', default='both', choices=['time', 'interleaved', 'both'])
    ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--test', action='store_true')
    ap.add_argument('--tool-args', default='')
    ap.add_argument('--misses', default='')
    ap.add_argument('--grid', action='store_true',
                    help="the odds combining's power and nats over a grid (bayes.c: 0.2, 160)")
    ap.add_argument('--sel-grid', action='store_true',
                    help='the token selection over a grid: the strength cut (0.2 .. 0.45) '
                    'and the count of strongest tokens (75 .. 500) (bayes.c: 0.346, 150)')
    ap.add_argument('--seed', type=int, default=0,
                    help='0: every FOLDS-th message of each class a fold; N: folds by a hash '
                    'of the path and N (another partition, to see the noise of a figure)')
    ap.add_argument('--dump', default='',
                    help='write FILE (JSON lines): per message of the training half (CV p) '
                    'and, with --test, of the test half: split, half, fold, group, path, p, '
                    'rule hits (what bayes_cv_learn.py fits rule weights on)')
    ap.add_argument('--stream', type=int, default=0,
                    help='with --test: the test half in arrival order, in batches of N, each '
                    'scored by a classifier that learned the training half and the batches '
                    'before it (a site that learns every message; the fold in --dump: the '
                    'batch)')
    ap.add_argument('--learn-on', default='', choices=['', 'error', 'tone', 'all'],
                    help='with --test --stream N: after each batch the site learns, with the '
                    'true label, only what rules + classifier got wrong (error: an operator '
                    'running `mxgate learn` on the misses reported to them), also what the '
                    'classifier was unsure of (tone: train on or near error, p in 0.05..0.95), '
                    'or every message (all); each batch is scored by what was learned before it')
    ap.add_argument('--hits', default='auto', choices=['auto', 'spamd', 'mxgate'],
                    help="rule hits for rules + classifier: spamd's cache (bench_detection) "
                    "or mxgate's own (cached); auto: spamd's when there")
    a = ap.parse_args()
    cache = bc.cache_dir()
    groups = bc.messages_prepare(cache)
    tmp = tempfile.mkdtemp(prefix='bayes-cv-')
    hits = bc.spamd_hits(cache) if a.hits != 'mxgate' else None
    if hits is None and a.hits != 'spamd':
        hits = mxgate_hits(a.tool, cache, groups, tmp)
        bc.say('bayes_cv: rule hits: mxgate\'s (stock rules, set 2)')
    elif hits is not None:
        bc.say('bayes_cv: rule hits: spamd\'s cache')
    scores, nice = bc.sa_set2_scores()
    miss_out = open(a.misses, 'w') if a.misses else None
    dump_out = open(a.dump, 'w') if a.dump else None
    for name in (['time', 'interleaved'] if a.split == 'both' else [a.split]):
        train, test = bc.split_make(groups, name, 0)
        grp = {p: g for g in bc.GROUPS for p in groups[g]}
        if a.test and a.stream:
            # the test half in arrival order, in batches of STREAM: batch k scored by what
            # the training half and batches 0..k-1 taught (bayes_cv -P)
            test = sorted(test, key=lambda gp: (bc.arrival_key(gp[1]), gp[1]))
            rows = [(-1, c, p) for c in ('spam', 'ham') for p in train[c]]
            rows += [(i // a.stream, 'spam' if g.startswith('spam') else 'ham', p)
                     for i, (g, p) in enumerate(test)]
            labelled = test
        elif a.test:
            rows = [(-1, c, p) for c in ('spam', 'ham') for p in train[c]]
            rows += [(0, 'spam' if g.startswith('spam') else 'ham', p) for g, p in test]
            labelled = test
        else:
            rows = [(fold_of(i, p, a.folds, a.seed), c, p) for c in ('spam', 'ham')
                    for i, p in enumerate(train[c])]
            labelled = [(grp[p], p) for c in ('spam', 'ham') for p in train[c]]
        if a.grid:
            raw = run_tool(a.tool, ['-r'] + a.tool_args.split(), rows, tmp)
            for power in (0.1, 0.15, 0.2, 0.3, 0.5, 1.0):
                for nats in (40, 80, 160, 320, 640, 0):
                    probs = {p: odds(v[0], v[1], power, nats) if v else -1 for p, v in raw.items()}
                    f = evaluate(probs, labelled, hits, scores, nice)
                    print('%s %-11s power %.2f nats %4d: 1-AUC %.3f%%; BAYES_99 %.1f%% of spam, '
                          '%d ham; spam in BAYES_00 %d; rules + classifier %.1f%% / %.2f%%' % (
                              'test' if a.test else 'CV  ', name, power, nats, f['auc'], f['s99'],
                              f['h99'], f['s00'], f['caught'], f['misfiled']), flush=True)
            continue
        if a.sel_grid:
            cuts = (0.2, 0.25, 0.3, 0.346, 0.4, 0.45)
            counts = (75, 100, 150, 200, 300, 500)
            res = run_tool(a.tool, a.tool_args.split() + [
                '-s', ','.join(str(c) for c in cuts), '-n', ','.join(str(n) for n in counts)],
                rows, tmp, sel=True)
            for c in cuts:
                for n in counts:
                    f = evaluate(res[(c, n)], labelled, hits, scores, nice)
                    print('%s %-11s cut %.3f count %3d: 1-AUC %.3f%%; BAYES_99 %.1f%% of spam, '
                          '%d ham; spam in BAYES_00 %d; rules + classifier %.1f%% / %.2f%%' % (
                              'test' if a.test else 'CV  ', name, c, n, f['auc'], f['s99'],
                              f['h99'], f['s00'], f['caught'], f['misfiled']), flush=True)
            continue
        if a.test and a.stream and a.learn_on:
            probs = learn_on_stream(a, rows, labelled, hits, scores, nice, tmp, name)
        else:
            probs = run_tool(a.tool, a.tool_args.split() + (['-P'] if a.test and a.stream else []),
                             rows, tmp)
        f = evaluate(probs, labelled, hits, scores, nice)
        print('%s %-11s 1-AUC %.3f%%; BAYES_99: %.1f%% of spam, %d ham; spam in BAYES_00 %d; '
              'rules + classifier: %.1f%% / %.2f%%' % (
                  'test' if a.test else 'CV  ', name, f['auc'], f['s99'], f['h99'], f['s00'],
                  f['caught'], f['misfiled']), flush=True)
        if dump_out:
            import json
            fold = {p: k for k, _, p in rows}
            for g, p in labelled:
                h = hits.get(hashlib.sha1(open(p, 'rb').read()).hexdigest())
                dump_out.write(json.dumps({
                    'split': name, 'half': 'test' if a.test else 'train', 'fold': fold[p],
                    'group': g, 'path': p, 'p': probs.get(p, -1), 'hits': h}) + '\n')
        if miss_out:
            for g, p in labelled:
                t = f['tot'].get(p)
                if t is None or (t >= 5) == g.startswith('spam'):
                    continue
                h = hits.get(hashlib.sha1(open(p, 'rb').read()).hexdigest(), [])
                miss_out.write('%s %s %s %.2f %.4f %s\n' % (name, g, p, t, probs.get(p, -1),
                                                          ','.join(sorted(h))))
    if miss_out:
        miss_out.close()
    if dump_out:
        dump_out.close()


if __name__ == '__main__':
    sys.exit(main())
