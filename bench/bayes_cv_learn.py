#!/usr/bin/env python3
"""bayes_cv_learn.py — learned rule weights (rspamd's "neural" idea, the simplest form: an
L2-regularised logistic regression over the rule hits and the classifier's p), judged as
docs/classifier.md's "Combining" asks: settings chosen by cross-validation inside each
split's training half, the test half shown for the chosen setting only.

    bench/bayes_cv.sh --dump CV.jsonl [--seed N]        # the training half, CV p per message
    bench/bayes_cv.sh --test --dump TEST.jsonl          # the test half, p of the whole half
    bench/bayes_cv_learn.py CV.jsonl[,CV2.jsonl,...] TEST.jsonl [--ham-rate 0.3]
        [--split time|interleaved|both] [--models NAME,...] [--stream FILE [--window W]]

Features (general, never tokens of the corpus): R = the stock rules' points (SpamAssassin's
set-2 scores, no BAYES_xx), L = logit(p) of the classifier (p clipped to [1e-6, 1 - 1e-6];
0 when it abstains), the BAYES_xx bucket, one 0/1 feature per rule hit by at least M
messages of the data fitted on. Models (z is the log-odds of spam):

  stock@5     R + the stock BAYES_xx points >= 5 (today's verdict)
  stock@t     the same total, the threshold chosen on the training half's CV
  RL          z = a R + c L + b  (what the rules and the classifier are worth here)
  RB          z = a R + sum_k w_k [bucket k] + b
  RL+corr M l z = a R + c L + b + sum_i d_i x_i, L2 l on the per-rule corrections d
  LR M l      z = c L + b + sum_i w_i x_i, L2 l on w (no stock scores)
  S+corr M l  z = a (R + the stock BAYES_xx points) + b + sum_i d_i x_i: the classifier's
              stock weight relative to the rules kept, corrections per rule only

Each model is fitted on 4 of the 5 folds of the training half (their CV p) and scores the
fifth; over the pooled out-of-fold scores the threshold is the lowest that misfiles at most
HAM_RATE % of the training ham ("@0.3") or no more ham than stock@5 does there ("@stock").
The test half is scored by the model fitted on the whole training half at that threshold.
--stream FILE (bayes_cv.sh --test --stream N --dump FILE: the test half in arrival order,
in batches, each batch's p from a classifier that learned the training half and the batches
before it) scores that stream prequentially instead: before each batch the model is refitted
on the training half and the earlier batches (--window W: the last W messages only), its
threshold chosen by 5-fold CV over those; RL, RL+corr and S+corr only (--models).
"rank": the test half's spam caught at as many test ham as stock@5 misfiles there (a
threshold chosen on the test half: the ranking only, for information).
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_classifier as bc  # noqa: E402
from bayes_cv import buckets  # noqa: E402

BUCKET_NAMES = ['BAYES_00', 'BAYES_05', 'BAYES_20', 'BAYES_40', 'BAYES_50', 'BAYES_60',
                'BAYES_80', 'BAYES_95', 'BAYES_99', 'BAYES_999']
EPS = 1e-6


def logit(p):
    if p is None or p < 0:
        return 0.0
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def load(path):
    return [json.loads(line) for line in open(path)]


def rule_points(hits, scores, nice):
    return sum(scores.get(t, 0.01 if t.startswith('T_') else -1.0 if t in nice else 1.0)
               for t in hits)


def prepare(rows, scores, nice):
    for r in rows:
        r['y'] = 1 if r['group'].startswith('spam') else 0
        r['R'] = rule_points(r['hits'] or [], scores, nice)
        r['L'] = logit(r['p'])
        r['B'] = buckets(r['p'])
        r['stock'] = r['R'] + sum(bc.BAYES_SET2.get(t, 0.0) for t in r['B'])
    return rows


def lbfgs(f_grad, x0, iters=300, m=10, tol=1e-7):
    """Minimises f (f_grad(x) -> (f, g)) from x0: L-BFGS with a backtracking line search."""
    x = list(x0)
    f, g = f_grad(x)
    hist = []
    for _ in range(iters):
        q = list(g)
        al = []
        for s, y, rho in reversed(hist):
            a = rho * sum(si * qi for si, qi in zip(s, q))
            al.append(a)
            q = [qi - a * yi for qi, yi in zip(q, y)]
        if hist:
            s, y, _ = hist[-1]
            gam = sum(si * yi for si, yi in zip(s, y)) / max(1e-12, sum(yi * yi for yi in y))
            q = [gam * qi for qi in q]
        for (s, y, rho), a in zip(hist, reversed(al)):
            b = rho * sum(yi * qi for yi, qi in zip(y, q))
            q = [qi + si * (a - b) for qi, si in zip(q, s)]
        d = [-qi for qi in q]
        gd = sum(gi * di for gi, di in zip(g, d))
        if gd >= 0:
            d = [-gi for gi in g]
            gd = -sum(gi * gi for gi in g)
            hist = []
        t = 1.0
        while True:
            xn = [xi + t * di for xi, di in zip(x, d)]
            fn, gn = f_grad(xn)
            if fn <= f + 1e-4 * t * gd or t < 1e-10:
                break
            t *= 0.5
        s = [a - b for a, b in zip(xn, x)]
        y = [a - b for a, b in zip(gn, g)]
        sy = sum(a * b for a, b in zip(s, y))
        if sy > 1e-12:
            hist.append((s, y, 1.0 / sy))
            hist = hist[-m:]
        done = abs(f - fn) < tol * max(1.0, abs(f))
        x, f, g = xn, fn, gn
        if done:
            break
    return x


class Model:
    """kind: 'RL', 'RB', 'RL+corr', 'LR'; M: minimum hits for a rule feature; lam: L2."""

    def __init__(self, kind, M=10, lam=1.0):
        self.kind, self.M, self.lam = kind, M, lam

    def name(self):
        if self.kind in ('RL', 'RB'):
            return self.kind
        return '%s M=%d l=%g' % (self.kind, self.M, self.lam)

    def dense(self, r):
        if self.kind == 'RL':
            return [r['R'] / 5.0, r['L'] / 5.0, 1.0]
        if self.kind == 'RB':
            return [r['R'] / 5.0, 1.0] + [1.0 if b in r['B'] else 0.0 for b in BUCKET_NAMES]
        if self.kind == 'RL+corr':
            return [r['R'] / 5.0, r['L'] / 5.0, 1.0]
        if self.kind == 'S+corr':
            return [r['stock'] / 5.0, 1.0]
        return [r['L'] / 5.0, 1.0]

    def sparse(self, r):
        if self.kind in ('RL', 'RB'):
            return []
        return [self.idx[h] for h in (r['hits'] or []) if h in self.idx]

    def fit(self, rows):
        count = {}
        for r in rows:
            for h in r['hits'] or []:
                count[h] = count.get(h, 0) + 1
        self.rules = sorted(h for h, c in count.items() if c >= self.M) \
            if self.kind in ('RL+corr', 'LR', 'S+corr') else []
        nd = len(self.dense(rows[0]))
        self.idx = {h: nd + i for i, h in enumerate(self.rules)}
        X = [(self.dense(r), self.sparse(r), r['y']) for r in rows]
        n = float(len(X))
        lam = self.lam

        def fg(w):
            f, g = 0.0, [0.0] * len(w)
            for d, s, y in X:
                z = sum(a * b for a, b in zip(d, w)) + sum(w[i] for i in s)
                if z >= 0:
                    e = math.exp(-z)
                    p = 1.0 / (1.0 + e)
                    f += (1 - y) * z + math.log1p(e)
                else:
                    e = math.exp(z)
                    p = e / (1.0 + e)
                    f += -y * z + math.log1p(e)
                r = p - y
                for k, a in enumerate(d):
                    g[k] += r * a
                for i in s:
                    g[i] += r
            f /= n
            g = [x / n for x in g]
            for i in range(nd, len(w)):
                f += 0.5 * lam / n * w[i] * w[i]
                g[i] += lam / n * w[i]
            # a whisper of L2 on the dense weights too (separable data stays finite)
            for i in range(nd):
                f += 0.5 * 1e-3 / n * w[i] * w[i]
                g[i] += 1e-3 / n * w[i]
            return f, g

        self.w = lbfgs(fg, [0.0] * (nd + len(self.rules)))
        return self

    def score(self, r):
        if self.kind == 'stock':
            return r['stock']
        d, s = self.dense(r), self.sparse(r)
        return sum(a * b for a, b in zip(d, self.w)) + sum(self.w[i] for i in s)


class Stock(Model):
    def __init__(self):
        self.kind = 'stock'

    def name(self):
        return 'stock'

    def fit(self, rows):
        return self


def threshold(scored, max_ham):
    """The lowest t with at most max_ham ham scored >= t (scored: [(y, z)])."""
    ham = sorted((z for y, z in scored if not y), reverse=True)
    if max_ham >= len(ham):
        return -1e9
    return ham[max_ham] + 1e-9


def rates(scored, t):
    spam = [z for y, z in scored if y]
    ham = [z for y, z in scored if not y]
    return (100.0 * sum(1 for z in spam if z >= t) / max(1, len(spam)),
            100.0 * sum(1 for z in ham if z >= t) / max(1, len(ham)),
            sum(1 for z in spam if z < t), sum(1 for z in ham if z >= t))


def cv_scores(model_fn, rows):
    folds = sorted({r['fold'] for r in rows})
    out = []
    for k in folds:
        fit = [r for r in rows if r['fold'] != k]
        m = model_fn().fit(fit)
        out += [(r['y'], m.score(r)) for r in rows if r['fold'] == k]
    return out


def stream_run(mk, train, stream, ham_rate, window):
    """Prequential: the stream (rows with fold = batch, arrival order) scored batch by batch
    by the model fitted on the training half and the batches before (the last WINDOW of them
    when set, the training half counted as older), its threshold chosen on the fitted rows'
    5-fold out-of-fold scores. Returns {rule: [(y, z, t)]}."""
    out = {'@%.1f' % ham_rate: [], '@stock': []}
    if window:
        train = sorted(train, key=lambda r: (bc.arrival_key(r['path']), r['path']))
    for k in sorted({r['fold'] for r in stream}):
        fit = train + [r for r in stream if r['fold'] < k]
        if window:
            fit = fit[-window:]
        for i, r in enumerate(fit):
            r['cvf'] = i % 5
        oof = []
        for f in range(5):
            m = mk().fit([r for r in fit if r['cvf'] != f])
            oof += [(r['y'], m.score(r)) for r in fit if r['cvf'] == f]
        nham = sum(1 for r in fit if not r['y'])
        stock_ham = rates([(r['y'], r['stock']) for r in fit], 5.0)[3]
        m = mk().fit(fit)
        for lab, mh in (('@%.1f' % ham_rate, int(ham_rate / 100.0 * nham)),
                        ('@stock', stock_ham)):
            t = threshold(oof, mh)
            out[lab] += [(r['y'], m.score(r), t) for r in stream if r['fold'] == k]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cv', help='bayes_cv.sh --dump of the training half (several: comma)')
    ap.add_argument('test', help='bayes_cv.sh --test --dump of the test half')
    ap.add_argument('--ham-rate', type=float, default=0.3)
    ap.add_argument('--split', default='both', choices=['time', 'interleaved', 'both'])
    ap.add_argument('--models', default='all', help='comma list of model names to run')
    ap.add_argument('--stream', default='',
                    help='bayes_cv.sh --test --stream N --dump FILE: score that stream '
                    'prequentially (each batch by weights fitted on the training half and the '
                    'batches before it) instead of the test half')
    ap.add_argument('--window', type=int, default=0,
                    help='with --stream: fit on the last N messages only')
    a = ap.parse_args()
    scores, nice = bc.sa_set2_scores()
    if a.stream:
        grid = {'RL': lambda: Model('RL'),
                'RL+corr M=30 l=10': lambda: Model('RL+corr', 30, 10.0),
                'S+corr M=30 l=10': lambda: Model('S+corr', 30, 10.0)}
        want = list(grid) if a.models == 'all' else [n for n in a.models.split(',') if n in grid]
        for name in (['time', 'interleaved'] if a.split == 'both' else [a.split]):
            stream = prepare([r for r in load(a.stream) if r['split'] == name], scores, nice)
            train = prepare([r for r in load(a.cv.split(',')[0]) if r['split'] == name],
                            scores, nice)
            c, m, _, _ = rates([(r['y'], r['stock']) for r in stream], 5.0)
            print('%s stream: stock@5 %.1f / %.2f %%' % (name, c, m), flush=True)
            for mn in want:
                res = stream_run(grid[mn], train, stream, a.ham_rate, a.window)
                print('%s stream: %-18s %s' % (name, mn, ' | '.join(
                    '%s %.1f / %.2f' % (lab, rates([(y, z - t) for y, z, t in v], 0.0)[0],
                                        rates([(y, z - t) for y, z, t in v], 0.0)[1])
                    for lab, v in res.items())), flush=True)
        return 0
    test_all = prepare(load(a.test), scores, nice)
    grid = [lambda: Stock(), lambda: Model('RL'), lambda: Model('RB')]
    for M in (10, 30):
        for lam in (1.0, 10.0, 100.0):
            grid.append(lambda M=M, lam=lam: Model('RL+corr', M, lam))
    for M in (10, 30):
        for lam in (1.0, 10.0):
            grid.append(lambda M=M, lam=lam: Model('LR', M, lam))
    for M in (10, 30):
        for lam in (1.0, 10.0, 100.0):
            grid.append(lambda M=M, lam=lam: Model('S+corr', M, lam))
    if a.models != 'all':
        want = a.models.split(',')
        grid = [g for g in grid if g().name() in want]
    for name in (['time', 'interleaved'] if a.split == 'both' else [a.split]):
        test = [r for r in test_all if r['split'] == name]
        for cvf in a.cv.split(','):
            rows = prepare([r for r in load(cvf) if r['split'] == name], scores, nice)
            nham = sum(1 for r in rows if not r['y'])
            st = [(r['y'], r['stock']) for r in rows]
            stock_ham = rates(st, 5.0)[3]
            c, m, _, _ = rates(st, 5.0)
            tc, tm, _, test_ham = rates([(r['y'], r['stock']) for r in test], 5.0)
            print('%s %s stock@5: CV %.1f / %.2f %% | test %.1f / %.2f %%' % (
                name, os.path.basename(cvf), c, m, tc, tm), flush=True)
            for mk in grid:
                oof = cv_scores(mk, rows)
                full = mk().fit(rows)
                ts = [(r['y'], full.score(r)) for r in test]
                out = []
                for lab, mh in (('@%.1f' % a.ham_rate, int(a.ham_rate / 100.0 * nham)),
                                ('@stock', stock_ham)):
                    t = threshold(oof, mh)
                    c, m, _, _ = rates(oof, t)
                    tc, tm, _, _ = rates(ts, t)
                    out.append('%s CV %.1f / %.2f test %.1f / %.2f' % (lab, c, m, tc, tm))
                # the ranking on the test half, for information: spam caught at as many
                # test ham as stock@5 misfiles there (a threshold no site could choose)
                out.append('rank %.1f' % rates(ts, threshold(ts, test_ham))[0])
                print('%s %s %-22s %s' % (name, os.path.basename(cvf), mk().name(),
                                          ' | '.join(out)), flush=True)
                if mk().kind in ('RL', 'RB'):
                    print('    weights (R/5, ...): %s' % ' '.join('%.2f' % w for w in full.w))


if __name__ == '__main__':
    sys.exit(main())
