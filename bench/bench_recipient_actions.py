#!/usr/bin/env python3
"""bench_recipient_actions.py — what hosting customers' `rules.recipient_actions` entries and
their `file:` lists cost (docs/operations.md "Hosting many domains"), for N customers (100,
1,000, 3,000; BENCH_NS):

  - per recipient: the daemon's CPU (all threads, schedstat ns) over one message to 500
    recipients, each of another domain that no entry lists (each customer one entry: its domain, "*." its
    domain, an address; every 10th customer's entry a file: list of 20 lines), minus the same
    message without entries (N = 0), per recipient: the entries' lookup at the end of data;
  - a SIGHUP reload with every list a file (accept_domains of N names, a route of N/2, a
    `bypass` and a `deny_senders` entry per customer with a 20-line file each, the
    recipient_actions above): wall seconds from the signal to `event=reloaded`, the daemon's
    CPU for it and its children's (the YAML probe), its VmRSS after 5 reloads; then the same reloads while smtp-source sends
    (BENCH_LOAD_MSGS messages, 4 sessions), each malloc_trim(0) of the reloads timed by an
    LD_PRELOAD shim (the longest call: how long a worker could wait on its arena's lock).

  python3 bench/bench_recipient_actions.py BINARY [BINARY...]
      each binary in turn (e.g. /work/main/build/mxgate build/mxgate: before and after).

Needs smtp-sink, smtp-source, cc. Figures only, no assertions; not run by ctest."""
import os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402

NS = [int(x) for x in os.environ.get('BENCH_NS', '100 1000 3000').split()]
ROUNDS = int(os.environ.get('BENCH_RCPT_ROUNDS', '5'))
RELOADS = int(os.environ.get('BENCH_RELOADS', '5'))
LOAD_MSGS = int(os.environ.get('BENCH_LOAD_MSGS', '3000'))
NRCPT = 500
LINES = 20
shutil.rmtree(bc.TMP, ignore_errors=True)   # bench_core's own, made at import
TMP = tempfile.mkdtemp(prefix='bench-recipact-')
bc.TMP = TMP

SHIM = r'''
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
int malloc_trim(size_t pad)
{
	static int (*real)(size_t);
	struct timespec a, b, ca, cb;
	int rc;
	if (!real)
		real = (int (*)(size_t))dlsym(RTLD_NEXT, "malloc_trim");
	clock_gettime(CLOCK_MONOTONIC, &a);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
	rc = real(pad);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
	clock_gettime(CLOCK_MONOTONIC, &b);
	fprintf(stderr, "bench_trim_us=%ld cpu_us=%ld\n",
	    (long)((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000),
	    (long)((cb.tv_sec - ca.tv_sec) * 1000000 + (cb.tv_nsec - ca.tv_nsec) / 1000));
	return rc;
}
'''


def shim():
    src, so = os.path.join(TMP, 'trim.c'), os.path.join(TMP, 'trim.so')
    with open(src, 'w') as f:
        f.write(SHIM)
    subprocess.check_call(['cc', '-shared', '-fPIC', '-O2', '-o', so, src, '-ldl'])
    return so


def write_lists(d, n):
    """Every customer's files under d (n customers); returns the paths the config names."""
    os.makedirs(os.path.join(d, 'allow'), exist_ok=True)
    os.makedirs(os.path.join(d, 'deny'), exist_ok=True)
    os.makedirs(os.path.join(d, 'ra'), exist_ok=True)
    with open(os.path.join(d, 'domains'), 'w') as f:
        for i in range(max(n, NRCPT)):
            f.write('cust%d.example\n' % i)
        for i in range(NRCPT):
            f.write('other%d.example\n' % i)
    with open(os.path.join(d, 'routed'), 'w') as f:
        for i in range(0, max(n, NRCPT), 2):
            f.write('cust%d.example\n' % i)
    for i in range(n):
        with open(os.path.join(d, 'allow', 'cust%d' % i), 'w') as f:
            for k in range(LINES):
                f.write(('friend%d@partner%d.example\n' if k % 2 else 'partner%d-%d.example\n') % (i, k))
        with open(os.path.join(d, 'deny', 'cust%d' % i), 'w') as f:
            for k in range(LINES):
                f.write(('rival%d@spam%d.example\n' if k % 2 else '*.rival%d-%d.example\n') % (i, k))
        if i % 10 == 0:
            with open(os.path.join(d, 'ra', 'cust%d' % i), 'w') as f:
                for k in range(LINES):
                    f.write('box%d@cust%d.example\n' % (k, i) if k else 'cust%d.example\n' % i)


def write_config(n, listen_port, backend_port, files, log_level='warning'):
    """The config for n customers' recipient_actions (files: every list a file too); its path."""
    d = os.path.join(TMP, 'n%d%s' % (n, 'f' if files else ''))
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, 'domains')):
        write_lists(d, n if files else 0)
    rules = os.path.join(TMP, 'bench.cf')
    with open(rules, 'w') as f:
        f.write('header LOC_SPAM X-Test-Spam =~ /yes/\nscore LOC_SPAM 20\n')
    lines = ['hostname: mx.bench.test', 'workers: 1', 'log_level: %s' % log_level,
             'listen:', '  - address: "127.0.0.1:%d"' % listen_port,
             'limits: { max_recipients: 1000, max_connections_per_ip: 100 }',
             'backends:', '  servers:', '    - { address: "smtp://127.0.0.1:%d" }' % backend_port,
             'accept_domains: ["file:%s"]' % os.path.join(d, 'domains'),
             'rules:', '  files: ["%s"]' % rules, '  actions: { add_header: 5, reject: 15 }']
    if files:
        lines[lines.index('backends:') + 3:lines.index('backends:') + 3] = [
            '  routes:', '    - { domains: ["file:%s"], servers: ["smtp://127.0.0.1:%d"] }'
            % (os.path.join(d, 'routed'), backend_port)]
    if n:
        lines.append('  recipient_actions:')
        for i in range(n):
            if files and i % 10 == 0:
                lines.append('    - { recipients: ["file:%s"], add_header: 3, reject: 9 }'
                             % os.path.join(d, 'ra', 'cust%d' % i))
            else:
                lines.append('    - { recipients: [cust%d.example, "*.cust%d.example", boss@cust%d.example], '
                             'add_header: %d, reject: %d }' % (i, i, i, 3 + i % 3, 10 + i % 5))
    if n and files:
        lines.append('bypass:')
        for i in range(n):
            lines.append('  - { recipients: [cust%d.example], senders: ["file:%s"], checks: [rules] }'
                         % (i, os.path.join(d, 'allow', 'cust%d' % i)))
        lines.append('deny_senders:')
        for i in range(n):
            lines.append('  - { recipients: [cust%d.example], senders: ["file:%s"] }'
                         % (i, os.path.join(d, 'deny', 'cust%d' % i)))
    conf = os.path.join(d, 'mxgate-%d.yaml' % listen_port)
    with open(conf, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return conf


def message_cpu(pid, port):
    """The daemon's CPU ns over MAIL, NRCPT RCPTs (each of another domain no entry lists: the
    scan's worst case, and the usual one, a customer without a policy of its own), DATA and
    its reply."""
    s, buf = bc.smtp_ehlo(port, 30)
    before = bc.cpu_ns(pid)
    s.sendall(b'MAIL FROM:<someone@sender.example>\r\n')
    code, buf = bc.read_reply(s, buf)
    ok = 0
    for i in range(NRCPT):
        s.sendall(b'RCPT TO:<user@other%d.example>\r\n' % i)
        code, buf = bc.read_reply(s, buf)
        ok += code == 250
    s.sendall(b'DATA\r\n')
    code, buf = bc.read_reply(s, buf)
    s.sendall(b'Subject: bench\r\nX-Test-Spam: no\r\n\r\nhello\r\n.\r\n')
    code, buf = bc.read_reply(s, buf)
    after = bc.cpu_ns(pid)
    s.sendall(b'QUIT\r\n')
    s.close()
    if ok != NRCPT or code != 250:
        raise RuntimeError('%d of %d RCPT got 250, end of data %d' % (ok, NRCPT, code))
    return after - before


def per_rcpt(binary, n, sink):
    port = bc.free_port()
    p = bc.spawn([binary, '-c', write_config(n, port, sink.port, False)], 'mx-%d-%d' % (n, port))
    try:
        bc.wait_listening(p, port, 'mxgate')
        message_cpu(p.pid, port)   # warm-up
        return statistics.median(message_cpu(p.pid, port) for _ in range(ROUNDS))
    finally:
        bc.stop(p)


def children_s(pid):
    """CPU seconds of pid's children it waited for (the YAML probes): /proc/PID/stat's cutime
    and cstime."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf('SC_CLK_TCK')


def wait_log(p, pattern, start, timeout=120):
    """The first match of pattern in p's log after offset start."""
    end = time.time() + timeout
    while time.time() < end:
        with open(p.logname, 'rb') as f:
            f.seek(start)
            m = re.search(pattern, f.read().decode('utf-8', 'replace'))
        if m:
            return m
        time.sleep(0.002)
    raise RuntimeError('%s not logged' % pattern)


def reloads(binary, n, sink, so, load):
    """(median wall s, median CPU s, VmRSS MB after, longest malloc_trim us) over RELOADS."""
    port = bc.free_port()
    conf = write_config(n, port, sink.port, True, 'info')
    env = dict(os.environ, LD_PRELOAD=so)
    log = open(os.path.join(TMP, 'rl-%d.log' % port), 'ab')
    p = subprocess.Popen([binary, '-c', conf], stdout=log, stderr=subprocess.STDOUT, env=env)
    p.logname = log.name
    bc.procs.append(p)
    src = None
    try:
        bc.wait_listening(p, port, 'mxgate')
        if load:
            src = subprocess.Popen(['smtp-source', '-s', '4', '-m', str(LOAD_MSGS), '-l', '2048',
                                    '-f', 'a@sender.example', '-t', 'user@cust1.example',
                                    '127.0.0.1:%d' % port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls, cpus, kids = [], [], []
        for g in range(RELOADS):
            start = os.path.getsize(p.logname)
            c0, k0, t0 = bc.cpu_ns(p.pid), children_s(p.pid), time.perf_counter()
            p.send_signal(signal.SIGHUP)
            wait_log(p, r'event=reloaded generation=', start)
            walls.append(time.perf_counter() - t0)
            cpus.append((bc.cpu_ns(p.pid) - c0) / 1e9)
            kids.append(children_s(p.pid) - k0)
        rss = bc.proc_status(p.pid, 'VmRSS') / 1024.0
        if src:
            src.wait(600)
        trims = [(int(w), int(c)) for w, c in re.findall(rb'bench_trim_us=(\d+) cpu_us=(\d+)',
                                                         open(p.logname, 'rb').read())]
        return (statistics.median(walls), statistics.median(cpus), statistics.median(kids), rss,
                max([t[0] for t in trims] or [0]), max([t[1] for t in trims] or [0]))
    finally:
        if src and src.poll() is None:
            src.kill()
            src.wait()
        bc.stop(p)


def main():
    bins = [os.path.abspath(b) for b in sys.argv[1:]] or [os.path.join(os.path.dirname(__file__), '..', 'build', 'mxgate')]
    for tool in ('smtp-sink', 'smtp-source', 'cc'):
        if shutil.which(tool) is None:
            print('%s missing' % tool)
            return 77
    so = shim()
    sink = bc.start_sink()
    print('load %.1f; %d recipients per message, median of %d; %d reloads, %d-line files'
          % (os.getloadavg()[0], NRCPT, ROUNDS, RELOADS, LINES))
    print('%-6s %-28s %10s | %9s %8s %8s %9s %13s | %9s %8s %13s' % (
        'N', 'binary', 'us/rcpt', 'reload s', 'CPU s', 'probe s', 'RSS MB', 'trim ms (CPU)', '+load s', 'CPU s',
        'trim ms (CPU)'))
    base = {b: per_rcpt(b, 0, sink) for b in bins}
    for n in NS:
        for b in bins:
            cpu = per_rcpt(b, n, sink)
            w, c, k, rss, trim, trimc = reloads(b, n, sink, so, False)
            lw, lc, _, _, ltrim, ltrimc = reloads(b, n, sink, so, True)
            print('%-6d %-28s %10.2f | %9.3f %8.3f %8.3f %9.1f %6.1f (%4.1f) | %9.3f %8.3f %6.1f (%4.1f)' % (
                n, b[-28:], (cpu - base[b]) / NRCPT / 1000.0, w, c, k, rss, trim / 1000.0, trimc / 1000.0,
                lw, lc, ltrim / 1000.0, ltrimc / 1000.0))
            sys.stdout.flush()
    print('us/rcpt: daemon CPU per recipient over the same message without entries; reload: SIGHUP to '
          'event=reloaded, median, CPU s the daemon\'s, probe s its children\'s (the YAML probe); '
          'RSS after the reloads; trim: the longest malloc_trim(0) of the run (wall, '
          'its thread\'s CPU); '
          '+load: the same while smtp-source sends')
    return 0


if __name__ == '__main__':
    try:
        rc = main()
    finally:
        bc.cleanup()
    sys.exit(rc)
