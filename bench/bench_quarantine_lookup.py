#!/usr/bin/env python3
"""bench_quarantine_lookup.py — the first `quarantine show ID` after a restart on a big
quarantine (docs/plugins.md "Releasing held mail"): N held files (100,000 by default) are
written into a maildir, a fresh mxgate is started on it, and `mxgatectl quarantine show ID`
is timed for the file a walk would read last (the last name readdir returns), then a
second time; mxgate_quarantine_files_read_total (when the binary has it) says how many
heads each read.

  python3 bench/bench_quarantine_lookup.py BINARY names|plain [N]
      names: files named as mxgate names them since session 32 (",QID=ID" in the name);
      plain: as an older mxgate named them (the ID only inside the file). Before/after:
      /work/main/build/mxgate plain, then build/mxgate names (and build/mxgate plain: the
      compatibility path). mxgatectl is taken from beside BINARY.

Figures only, no assertions; not run by ctest (no timing in tests)."""
import os, re, shutil, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402
from bench_core import free_port  # noqa: E402

shutil.rmtree(bc.TMP, ignore_errors=True)   # bench_core's own, made at import

BIN = os.path.abspath(sys.argv[1])
MODE = sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
CTL = os.path.join(os.path.dirname(BIN), 'mxgatectl')
TMP = tempfile.mkdtemp(prefix='bench-quarstore-')
QDIR = os.path.join(TMP, 'q')


def block(qid):
    return ('Return-Path: <s@ext.example>\r\nX-Envelope-From: <s@ext.example>\r\n'
            'X-Envelope-To: <u@example.test>\r\nX-Envelope-To-Blocked: <u@example.test>\r\n'
            'X-Quarantine-Reason: bench\r\nX-Quarantine-ID: <%s>\r\n'
            'Received: from x by mx\r\nSubject: held %s\r\n\r\nbody\r\n' % (qid, qid)).encode()


def metric(port):
    try:
        text = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=30).read().decode()
    except OSError:
        return None
    m = re.search(r'^mxgate_quarantine_files_read_total (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else None


for sub in ('tmp', 'new', 'cur'):
    os.makedirs(os.path.join(QDIR, sub))
t0 = time.time()
for i in range(N):
    qid = 'B%011d' % i
    name = '1790000000.M%dP1Q%d.bench' % (i, i) + (',QID=' + qid if MODE == 'names' else '')
    with open(os.path.join(QDIR, 'new', name), 'wb') as f:
        f.write(block(qid))
made = time.time() - t0
last = os.listdir(os.path.join(QDIR, 'new'))[-1]
with open(os.path.join(QDIR, 'new', last), 'rb') as f:
    target = re.search(rb'X-Quarantine-ID: <(\w+)>', f.read()).group(1).decode()
mport, lport = free_port(), free_port()
sock = os.path.join(TMP, 'control.sock')
conf = os.path.join(TMP, 'mx.yaml')
with open(conf, 'w') as f:
    f.write('hostname: mx.bench\nworkers: 1\nlisten: ["127.0.0.1:%d"]\nbackends: { servers: ["smtp://127.0.0.1:9"] }\n'
            'quarantine: "maildir:%s"\ncontrol: { socket: "%s" }\nmetrics: { listen: "127.0.0.1:%d" }\n'
            % (lport, QDIR, sock, mport))
log = open(os.path.join(TMP, 'mx.log'), 'w')
mx = subprocess.Popen([BIN, '-c', conf], stderr=log, stdout=log)
try:
    for _ in range(600):
        if os.path.exists(sock) and metric(mport) is not None or os.path.exists(sock) and _ > 50:
            break
        time.sleep(0.1)
    print('binary %s, %d files (%s), written in %.1f s; load %s' % (BIN, N, MODE, made, os.getloadavg()))
    for what in ('first show after start', 'second show'):
        r0 = metric(mport)
        t = time.time()
        p = subprocess.run([CTL, '-s', sock, '-t', '120', 'quarantine', 'show', target], capture_output=True,
                           text=True)
        dt = time.time() - t
        r1 = metric(mport)
        ok = p.returncode == 0 and p.stdout.startswith(target)
        print('  %-24s %6.2f s  found=%s  heads read=%s  load %.2f' % (
            what, dt, ok, (r1 - r0) if r0 is not None and r1 is not None else 'n/a', os.getloadavg()[0]))
finally:
    mx.terminate()
    mx.wait(30)
    shutil.rmtree(TMP, ignore_errors=True)
