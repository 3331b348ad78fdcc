#!/usr/bin/env python3
"""bayes_cv.py — cross-validation of the classifier inside a split's training half (what
docs/classifier.md's choices rest on), and the same figures on the test half for the report.

    bench/bayes_cv.py BAYES_CV [--split time|interleaved|both] [--folds 5] [--test]
        [--tool-args '-c chi'] [--misses FILE] [--grid]

BAYES_CV is bench/bayes_cv.c built against libmxcore.a (bench/bayes_cv.sh builds it). The
training half of each split (bench_classifier's splits) is cut into FOLDS folds (every
FOLDS-th message of each class); each fold is scored by a classifier that learned the
others. --test scores the test half after learning the whole training half instead (for
the report only: choices are made on the cross-validation). Prints, per split:
  1 - AUC (%), the classifier's buckets (spam in BAYES_99, ham in it, spam in BAYES_00),
  and rules + classifier: spamd's own rule hits on each message (bench_detection's cache;
  mxgate's hits are the same) scored with SpamAssassin's set-2 scores plus the BAYES_xx
  the classifier's probability falls in — spam caught % and ham misfiled % at 5.
--misses FILE writes, for the scored messages that rules + classifier get wrong, one line
each: group, path, total, probability and the rule hits. --grid: the figures for each
power and nats of the odds combining over a grid (0 nats: no pull towards 0.5).
"""
import argparse
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


def run_tool(tool, args, rows, tmp):
    """rows [(fold, cls, path)] -> {path: prob} (with -r: {path: (lsq, lhq) or None})."""
    lst = os.path.join(tmp, 'list')
    with open(lst, 'w') as f:
        for fold, cls, p in rows:
            f.write('%d %s %s\n' % (fold, cls, p))
    # the stock rules' bayes_ignore_header lines, as the daemon with them (bench_classifier)
    out = subprocess.run([tool, '-i', '/usr/share/spamassassin/*.cf'] + args + [lst],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        if '-r' in args:
            p, a, b = line.rsplit(' ', 2)
            res[p] = None if a == 'none' else (float(a), float(b))
        else:
            p, v = line.rsplit(' ', 1)
            res[p] = float(v)
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
    a = ap.parse_args()
    cache = bc.cache_dir()
    groups = bc.messages_prepare(cache)
    hits = bc.spamd_hits(cache)
    scores, nice = bc.sa_set2_scores()
    tmp = tempfile.mkdtemp(prefix='bayes-cv-')
    miss_out = open(a.misses, 'w') if a.misses else None
    for name in (['time', 'interleaved'] if a.split == 'both' else [a.split]):
        train, test = bc.split_make(groups, name, 0)
        grp = {p: g for g in bc.GROUPS for p in groups[g]}
        if a.test:
            rows = [(-1, c, p) for c in ('spam', 'ham') for p in train[c]]
            rows += [(0, 'spam' if g.startswith('spam') else 'ham', p) for g, p in test]
            labelled = test
        else:
            rows = [(i % a.folds, c, p) for c in ('spam', 'ham') for i, p in enumerate(train[c])]
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
        probs = run_tool(a.tool, a.tool_args.split(), rows, tmp)
        f = evaluate(probs, labelled, hits, scores, nice)
        print('%s %-11s 1-AUC %.3f%%; BAYES_99: %.1f%% of spam, %d ham; spam in BAYES_00 %d; '
              'rules + classifier: %.1f%% / %.2f%%' % (
                  'test' if a.test else 'CV  ', name, f['auc'], f['s99'], f['h99'], f['s00'],
                  f['caught'], f['misfiled']), flush=True)
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


if __name__ == '__main__':
    sys.exit(main())
