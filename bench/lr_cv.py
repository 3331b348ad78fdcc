#!/usr/bin/env python3
"""lr_cv.py — the TREC spam track's discriminative filter, measured before it is built:
online logistic regression on binary hashed byte 4-grams (Goodman & Yih 2006; Cormack &
Lynam 2007; Sculley & Wachman, SIGIR 2007), on exactly the splits and cross-validation
partitions of bench/bayes_cv.sh, alone, as a replacement for the Bayes p and combined
with it (docs/classifier.md, "A discriminative classifier, measured first").

    bench/bayes_cv.sh --split both --hits mxgate --seed N --dump CV-N.jsonl   # N = 0..3
    bench/bayes_cv.sh --split both --hits mxgate --test --dump TEST.jsonl
    bench/lr_cv.py CV-0.jsonl[,CV-1.jsonl,...] [TEST.jsonl] [--split time|interleaved|both]
        [--grid] [--setting NAME] [--stream N]

The dumps give, per message of a training half, its cross-validation fold and the Bayes p
from the other folds (and for the test half the p from the whole training half) with the
stock rules' hits (mxgate's, score set 2): the same folds, the same Bayes, the same rules.

Features (the TREC recipe): the message's first BYTES bytes as received (headers and body,
no decoding), every overlapping 4-byte string in it, hashed (multiplicative hash) into 2^20
buckets, present or not (binary); a message's vector is normalised by sqrt(number of
features) ("sqrt") or left binary ("bin"). Learning: p = 1 / (1 + e^-z), z = w . x; per
training message, in arrival order (the date of its newest Received line), w += RATE
(y - p) x; PASSES passes; TONE M: only when the message is wrong or within M of the boundary
(y = spam and z < M, or ham and z > -M), else every message. The scale K maps z to the p
that goes into SpamAssassin's BAYES_xx buckets: p = 1 / (1 + e^(-K z)) (the LR's z is not
calibrated as the Bayes p is; K is chosen with the rest). The learning loop is
bench/lr_cv.c (built into a temporary folder on each run). Two variants for the diagnosis:
",body" (the BYTES start after the header) and ",anon" (the corpus's anonymised recipient,
"zzzz@" in spam-1 and "yyyy@" elsewhere, masked to "xxxx").

Figures per setting (CV: pooled over the five folds; test: the model of the whole training
half on the test half):
  1-AUC   ranking alone, % (lower is better);
  @B99    the spam share above the threshold that lets through as many ham as BAYES_99
          holds for the Bayes p on the same messages (the Bayes figure: its spam in BAYES_99);
  rules + LR     the stock rules' set-2 points + the BAYES_xx of the LR p (replacing the
                 Bayes p): spam caught / ham misfiled at 5;
  rules + both   the same with p = sigmoid((logit(Bayes p) + K z) / 2) (mean of logits;
                 --combine sum: sigmoid(logit(Bayes p) + K z), the Bayes log-odds kept whole).
The adoption rule is the doc's: a setting chosen on partition 0's CV must catch more spam
than rules + Bayes (today) at no more ham misfiled on the CV of all four partitions of both
splits, beyond the noise (3 spam of 500 time, 5 of 950 interleaved); test halves shown for
information. --grid prints every setting on partition 0 (the choice); --setting NAME the
named one on every dump given (the check); --stream N: the test half in arrival order in
batches of N, each scored by a model that learned the training half and every earlier
batch (online, one pass, as TREC's immediate feedback but batched like bayes_cv --stream);
give it bayes_cv.sh --test --stream N --dump's file as TEST, so the Bayes p is streamed too.
NAME as the lines print it: e.g. sqrt,r=8,p=5,tone=1 or bin,r=0.002,p=1,all,b=2500,body.
"""
import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_classifier as bc  # noqa: E402
from bayes_cv import auc, buckets  # noqa: E402

EPS = 1e-6
HERE = os.path.dirname(os.path.abspath(__file__))


def tool_build(tmp):
    """bench/lr_cv.c, built once per run (the learning loop: microseconds a message)."""
    out = os.path.join(tmp, 'lr_cv')
    subprocess.run(['cc', '-O2', '-o', out, os.path.join(HERE, 'lr_cv.c'), '-lm'], check=True)
    return out


def logit(p):
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def sig(z):
    if z < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


class Setting:
    def __init__(self, norm, rate, passes, tone, nbytes=2500, body=False, anon=False):
        self.norm, self.rate, self.passes, self.tone, self.nbytes = norm, rate, passes, tone, nbytes
        self.body, self.anon = body, anon

    def name(self):
        return '%s,r=%g,p=%d,%s,b=%d%s' % (self.norm, self.rate, self.passes,
                                           'tone=%g' % self.tone if self.tone else 'all',
                                           self.nbytes, ',body' if self.body else '') + (
                                               ',anon' if self.anon else '')

    def args(self):
        return ['-n', self.norm, '-r', repr(self.rate), '-p', str(self.passes),
                '-t', repr(self.tone), '-b', str(self.nbytes)] + (['-H'] if self.body else []) + (
            ['-Z'] if self.anon else [])

    @staticmethod
    def parse(s):
        """'sqrt,r=8,p=5,tone=1,b=2500[,body]' (as name() prints it; 'all': no TONE)."""
        words = s.split(',')
        d = dict(w.split('=', 1) for w in words if '=' in w)
        norm = 'bin' if 'bin' in words else 'sqrt'
        return Setting(norm, float(d['r']), int(d['p']), float(d.get('tone', 0)),
                       int(d.get('b', 2500)), 'body' in words, 'anon' in words)


def run_tool(tool, st, lines, tmp, stream=False):
    """lines [(fold, y, path)] in learning order -> {path: z}."""
    lst = os.path.join(tmp, 'list')
    with open(lst, 'w') as f:
        for fold, y, p in lines:
            f.write('%d %d %s\n' % (fold, y, p))
    out = subprocess.run([tool] + st.args() + (['-S'] if stream else []) + [lst],
                         capture_output=True, text=True, check=True).stdout
    return {p: float(z) for p, z in (ln.rsplit(' ', 1) for ln in out.splitlines())}


def rule_points(hits, scores, nice):
    return sum(scores.get(t, 0.01 if t.startswith('T_') else -1.0 if t in nice else 1.0)
               for t in hits or [])


def total(r, p):
    return r['R'] + sum(bc.BAYES_SET2.get(t, 0.0) for t in buckets(p))


def at_rate(rows, key, nham_allowed):
    """Spam share (%) above the threshold that lets through nham_allowed ham."""
    ham = sorted((key(r) for r in rows if not r['y']), reverse=True)
    t = ham[nham_allowed] if nham_allowed < len(ham) else -math.inf
    spam = [key(r) for r in rows if r['y']]
    return bc.pct(sum(1 for s in spam if s > t), len(spam))


COMBINE = {'mean': 0.5, 'sum': 1.0}
combine_w = COMBINE['mean']


def figures(rows, zkey, K):
    """The figures of rows, each with 'z' (the LR's raw score) and 'p' (Bayes)."""
    spam = [r for r in rows if r['y']]
    ham = [r for r in rows if not r['y']]
    h99 = sum(1 for r in ham if r['p'] > 0.99)
    out = {'n': (len(spam), len(ham)), 'h99': h99,
           'auc_lr': auc([(r['y'], r[zkey]) for r in rows]),
           'auc_b': auc([(r['y'], r['p']) for r in rows]),
           'auc_both': auc([(r['y'], logit(r['p']) + K * r[zkey]) for r in rows]),
           'b99_b': bc.pct(sum(1 for r in spam if r['p'] > 0.99), len(spam)),
           'b99_lr': at_rate(rows, lambda r: r[zkey], h99),
           'b99_both': at_rate(rows, lambda r: logit(r['p']) + K * r[zkey], h99)}
    for name, pf in (('bayes', lambda r: r['p']),
                     ('lr', lambda r: sig(K * r[zkey])),
                     ('both', lambda r: sig((logit(r['p']) + K * r[zkey]) * combine_w))):
        t = [(r['y'], total(r, pf(r))) for r in rows]
        out[name] = (bc.pct(sum(1 for y, v in t if y and v >= 5), len(spam)),
                     sum(1 for y, v in t if not y and v >= 5),
                     bc.pct(sum(1 for y, v in t if not y and v >= 5), len(ham)))
    return out


def show(tag, name, st, K, f):
    print('%s %-11s %-34s K=%-4g 1-AUC LR %.3f Bayes %.3f both %.3f; @B99 (%d ham) LR %.1f '
          'Bayes %.1f both %.1f; rules+Bayes %.1f/%d, rules+LR %.1f/%d, rules+both %.1f/%d' % (
              tag, name, st.name(), K, f['auc_lr'], f['auc_b'], f['auc_both'], f['h99'],
              f['b99_lr'], f['b99_b'], f['b99_both'], f['bayes'][0], f['bayes'][1],
              f['lr'][0], f['lr'][1], f['both'][0], f['both'][1]), flush=True)


def cv_scores(tool, tmp, rows, st):
    """Each row's z from a model that learned the other folds (in the order of rows)."""
    z = run_tool(tool, st, [(r['fold'], r['y'], r['path']) for r in rows], tmp)
    for r in rows:
        r['z'] = z[r['path']]


def test_scores(tool, tmp, train, test, st, stream=0):
    """The test rows' z from a model of the whole training half (stream N: in batches of N,
    each learned, one pass, after it was scored)."""
    lines = [(-1, r['y'], r['path']) for r in train]
    lines += [(i // stream if stream else 0, r['y'], r['path']) for i, r in enumerate(test)]
    z = run_tool(tool, st, lines, tmp, stream=bool(stream))
    for r in test:
        r['z'] = z[r['path']]


GRID = ([Setting('sqrt', r, p, 0.0) for r in (0.5, 2.0, 8.0) for p in (1, 5)] +
        [Setting('sqrt', 2.0, 5, 1.0), Setting('sqrt', 8.0, 5, 1.0),
         Setting('bin', 0.002, 1, 0.0), Setting('bin', 0.002, 5, 0.0),
         Setting('bin', 0.01, 5, 0.0),
         Setting('sqrt', 2.0, 5, 0.0, 1000), Setting('sqrt', 2.0, 5, 0.0, 5000),
         Setting('sqrt', 2.0, 5, 0.0, 2500, True), Setting('sqrt', 8.0, 5, 1.0, 2500, True)])
SCALES = (0.5, 1, 2, 4, 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('cv', help='bayes_cv.sh --dump files of the training halves, comma-separated')
    ap.add_argument('test', nargs='?', default='', help='bayes_cv.sh --test --dump file')
    ap.add_argument('--split', default='both', choices=['time', 'interleaved', 'both'])
    ap.add_argument('--grid', action='store_true')
    ap.add_argument('--setting', default='', help='default sqrt,r=8,p=5,tone=1')
    ap.add_argument('--scale', type=float, default=0.0, help='K (0: every one of %s)' % (SCALES,))
    ap.add_argument('--stream', type=int, default=0)
    ap.add_argument('--combine', default='mean', choices=sorted(COMBINE))
    a = ap.parse_args()
    global combine_w
    combine_w = COMBINE[a.combine]
    scores, nice = bc.sa_set2_scores()
    cvs = [[json.loads(x) for x in open(f)] for f in a.cv.split(',')]
    tests = [json.loads(x) for x in open(a.test)] if a.test else []
    for r in [r for d in cvs for r in d] + tests:
        r['y'] = 1 if r['group'].startswith('spam') else 0
        r['R'] = rule_points(r['hits'], scores, nice)
    tmp = tempfile.mkdtemp(prefix='lr-cv-')
    try:
        run(a, tmp, cvs, tests)
    finally:
        shutil.rmtree(tmp)
    return 0


def run(a, tmp, cvs, tests):
    settings = GRID if a.grid else [Setting.parse(a.setting or 'sqrt,r=8,p=5,tone=1')]
    scales = [a.scale] if a.scale else list(SCALES)
    tool = tool_build(tmp)
    arrival = functools.lru_cache(maxsize=None)(bc.arrival_key)
    order = lambda r: (arrival(r['path']), r['path'])  # noqa: E731
    for name in (['time', 'interleaved'] if a.split == 'both' else [a.split]):
        for st in settings:
            for i, d in enumerate(cvs):
                rows = sorted((r for r in d if r['split'] == name), key=order)
                cv_scores(tool, tmp, rows, st)
                for K in scales:
                    show('CV%d ' % i, name, st, K, figures(rows, 'z', K))
            if tests:
                train = sorted((r for r in cvs[0] if r['split'] == name), key=order)
                test = sorted((r for r in tests if r['split'] == name), key=order)
                test_scores(tool, tmp, train, test, st, a.stream)
                for K in scales:
                    show('test' if not a.stream else 'strm', name, st, K, figures(test, 'z', K))


if __name__ == '__main__':
    sys.exit(main())
