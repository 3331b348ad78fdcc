#!/usr/bin/env python3
"""bench_bypass_entries.py — what one `bypass` and one `deny_senders` entry per hosting
customer cost (docs/operations.md "Hosting many domains"): for N customers (100, 1,000, 3,000,
10,000), each with a `bypass` entry (recipients [custI.example], senders: its own 20-line
allow file, checks [rules]) and a `deny_senders` entry (its own 20-line deny file), and
accept_domains from a file of the N names:

  - `mxgate -t`: wall seconds and peak RSS (the median of BENCH_T_ROUNDS, 3), and the running
    daemon's VmRSS after the transactions below;
  - per recipient: the daemon's CPU (all threads, schedstat ns) over one transaction of 500
    RCPTs, each to another customer, from a sender on no list (every entry looked at by the
    old scan), minus the same transaction without bypass/deny_senders (N = 0), per RCPT.

  python3 bench/bench_bypass_entries.py BINARY [BINARY...]
      each binary in turn at each N (e.g. /work/main/build/mxgate build/mxgate: before and
      after, same run). BENCH_NS="100 1000" picks the N; BENCH_RCPT_ROUNDS (3) the
      transactions per figure (median).

Needs smtp-sink. Figures only, no assertions; not run by ctest (no timing in tests)."""
import os, resource, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402

NS = [int(x) for x in os.environ.get('BENCH_NS', '100 1000 3000 10000').split()]
T_ROUNDS = int(os.environ.get('BENCH_T_ROUNDS', '3'))
RCPT_ROUNDS = int(os.environ.get('BENCH_RCPT_ROUNDS', '3'))
NRCPT = 500
LINES = int(os.environ.get('BENCH_LINES', '20'))
shutil.rmtree(bc.TMP, ignore_errors=True)   # bench_core's own, made at import
TMP = tempfile.mkdtemp(prefix='bench-bypass-')
bc.TMP = TMP


def write_config(n, listen_port, backend_port):
    """The config for n customers (0: no bypass, no deny_senders); its path."""
    d = os.path.join(TMP, 'n%d' % n)
    if os.path.exists(os.path.join(d, 'mxgate.yaml')):
        os.unlink(os.path.join(d, 'mxgate.yaml'))
    os.makedirs(os.path.join(d, 'allow'), exist_ok=True)
    os.makedirs(os.path.join(d, 'deny'), exist_ok=True)
    with open(os.path.join(d, 'domains'), 'w') as f:
        for i in range(max(n, NRCPT)):
            f.write('cust%d.example\n' % i)
    rules = os.path.join(TMP, 'bench.cf')
    with open(rules, 'w') as f:
        f.write('header LOC_SPAM X-Test-Spam =~ /yes/\nscore LOC_SPAM 20\n')
    lines = ['hostname: mx.bench.test', 'workers: 1', 'log_level: warning',
             'listen:', '  - address: "127.0.0.1:%d"' % listen_port,
             'limits: { max_recipients: 1000 }',
             'backends:', '  servers:', '    - { address: "smtp://127.0.0.1:%d" }' % backend_port,
             'accept_domains: ["file:%s"]' % os.path.join(d, 'domains'),
             'rules: { files: ["%s"], actions: { add_header: 5, reject: 15 } }' % rules]
    if n:
        lines.append('bypass:')
        for i in range(n):
            p = os.path.join(d, 'allow', 'cust%d' % i)
            with open(p, 'w') as f:
                f.write('# allow list of cust%d.example\n' % i)
                for k in range(LINES):
                    f.write(('friend%d@partner%d.example\n' if k % 2 else 'partner%d-%d.example\n') % (i, k))
            lines.append('  - { recipients: [cust%d.example], senders: ["file:%s"], checks: [rules] }' % (i, p))
        lines.append('deny_senders:')
        for i in range(n):
            p = os.path.join(d, 'deny', 'cust%d' % i)
            with open(p, 'w') as f:
                for k in range(LINES):
                    f.write(('rival%d@spam%d.example\n' if k % 2 else '*.rival%d-%d.example\n') % (i, k))
            lines.append('  - { recipients: [cust%d.example], senders: ["file:%s"] }' % (i, p))
    conf = os.path.join(d, 'mxgate.yaml')
    with open(conf, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return conf


def config_test(binary, conf):
    """(wall seconds, peak RSS in MB) of one `binary -t -c conf`."""
    t = time.perf_counter()
    p = subprocess.Popen([binary, '-t', '-c', conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError('%s -t failed: %s' % (binary, p.stderr.read().decode()[:300]))
    return wall, ru.ru_maxrss / 1024.0


def rcpt_cpu(pid, port):
    """The daemon's CPU ns over MAIL + NRCPT RCPTs (each to another customer) + RSET."""
    s, buf = bc.smtp_ehlo(port, 10)
    before = bc.cpu_ns(pid)
    s.sendall(b'MAIL FROM:<someone@sender.example>\r\n')
    code, buf = bc.read_reply(s, buf)
    if code != 250:
        raise RuntimeError('MAIL: %d' % code)
    ok = 0
    for i in range(NRCPT):
        s.sendall(b'RCPT TO:<user@cust%d.example>\r\n' % i)
        code, buf = bc.read_reply(s, buf)
        ok += code == 250
    s.sendall(b'RSET\r\n')
    code, buf = bc.read_reply(s, buf)
    after = bc.cpu_ns(pid)
    s.sendall(b'QUIT\r\n')
    s.close()
    if ok != NRCPT:
        raise RuntimeError('%d of %d RCPT got 250' % (ok, NRCPT))
    return after - before


def per_rcpt(binary, n, sink):
    """Median daemon CPU ns of RCPT_ROUNDS transactions with n customers' entries."""
    port = bc.free_port()
    conf = write_config(n, port, sink.port)
    p = bc.spawn([binary, '-c', conf], 'mx-%d-%d' % (n, port))
    try:
        bc.wait_listening(p, port, 'mxgate')
        rcpt_cpu(p.pid, port)   # warm-up
        cpu = statistics.median(rcpt_cpu(p.pid, port) for _ in range(RCPT_ROUNDS))
        return cpu, bc.proc_status(p.pid, 'VmRSS') / 1024.0
    finally:
        bc.stop(p)


def main():
    bins = [os.path.abspath(b) for b in sys.argv[1:]] or [os.path.join(os.path.dirname(__file__), '..', 'build', 'mxgate')]
    if shutil.which('smtp-sink') is None:
        print('smtp-sink missing')
        return 77
    sink = bc.start_sink()
    print('load %.1f; %d RCPTs per transaction, %d-line files, median of %d (-t) / %d (RCPT)'
          % (os.getloadavg()[0], NRCPT, LINES, T_ROUNDS, RCPT_ROUNDS))
    print('%-8s %-28s %8s %8s %12s %10s' % ('N', 'binary', '-t s', 'RSS MB', 'us/RCPT', 'daemon MB'))
    base = {b: per_rcpt(b, 0, sink)[0] for b in bins}
    for b in bins:
        w, r = config_test(b, write_config(0, 1, 1))
        print('%-8d %-28s %8.2f %8.1f %12s' % (0, b[-28:], w, r, '(%.1f)' % (base[b] / NRCPT / 1000.0)))
    for n in NS:
        for b in bins:
            conf = write_config(n, 1, 1)
            t = [config_test(b, conf) for _ in range(T_ROUNDS)]
            cpu, rss = per_rcpt(b, n, sink)
            print('%-8d %-28s %8.2f %8.1f %12.1f %10.1f' % (n, b[-28:], statistics.median(x[0] for x in t),
                                                           statistics.median(x[1] for x in t),
                                                           (cpu - base[b]) / NRCPT / 1000.0, rss))
            sys.stdout.flush()
    print('RSS MB: -t\'s peak; us/RCPT: the daemon CPU per RCPT over the same transaction without the '
          'entries (in parentheses at N=0: the whole RCPT); daemon MB: its VmRSS after the transactions')
    return 0


if __name__ == '__main__':
    try:
        rc = main()
    finally:
        bc.cleanup()
    sys.exit(rc)
