#!/usr/bin/env python3
"""bench_reload_files.py — what a SIGHUP reload costs with large `file:` lists that did not
change (docs/operations.md "A reload"): accept_domains from a file of N domains and
relay_networks from a file of N CIDRs (N = 100,000; BENCH_N), one worker, no traffic.

For each binary: the median over BENCH_RELOADS reloads (default 7) of the wall seconds from
the signal to `event=reloaded` and the daemon's CPU for it (all threads, schedstat), its VmRSS
after them; then the same with the domains file rewritten (another name in it) before each
reload, the re-read's cost.

  python3 bench/bench_reload_files.py BINARY [BINARY...]
      each binary in turn (e.g. /work/main/build/mxgate build/mxgate: before and after).

Needs smtp-sink. Figures only, no assertions; not run by ctest."""
import os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402

N = int(os.environ.get('BENCH_N', '100000'))
RELOADS = int(os.environ.get('BENCH_RELOADS', '7'))
shutil.rmtree(bc.TMP, ignore_errors=True)   # bench_core's own, made at import
TMP = tempfile.mkdtemp(prefix='bench-reloadfiles-')
bc.TMP = TMP


def write_domains(path, extra):
    with open(path + '.new', 'w') as f:
        for i in range(N):
            f.write('cust%d.example\n' % i)
        f.write('extra%d.example\n' % extra)
    os.rename(path + '.new', path)


def write_files():
    doms, nets = os.path.join(TMP, 'domains'), os.path.join(TMP, 'networks')
    write_domains(doms, 0)
    with open(nets, 'w') as f:
        for i in range(N):
            f.write('10.%d.%d.0/24\n' % (i >> 8 & 255, i & 255) if i < 65536 else
                    '2001:db8:%x:%x::/64\n' % (i >> 16, i & 0xffff))
    return doms, nets


def wait_log(logname, pattern, start, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        with open(logname, 'rb') as f:
            f.seek(start)
            m = re.search(pattern, f.read().decode('utf-8', 'replace'))
        if m:
            return m
        time.sleep(0.002)
    raise RuntimeError('%s not logged' % pattern)


def run(binary, sink, doms, nets):
    port = bc.free_port()
    conf = os.path.join(TMP, 'mx-%d.yaml' % port)
    with open(conf, 'w') as f:
        f.write('hostname: mx.bench.test\nworkers: 1\nlog_level: info\nlisten:\n'
                '  - address: "127.0.0.1:%d"\nbackends:\n  servers:\n'
                '    - { address: "smtp://127.0.0.1:%d" }\n'
                'accept_domains: ["file:%s"]\nrelay_networks: ["file:%s"]\n' % (port, sink.port, doms, nets))
    logname = os.path.join(TMP, 'mx-%d.log' % port)
    log = open(logname, 'ab')
    p = subprocess.Popen([binary, '-c', conf], stdout=log, stderr=subprocess.STDOUT)
    p.logname = logname
    bc.procs.append(p)
    out = []
    try:
        if not bc.wait_port(port, 300):
            raise RuntimeError('mxgate did not listen: %s' % open(logname).read()[-500:])
        for changed in (False, True):
            walls, cpus = [], []
            for g in range(RELOADS):
                if changed:
                    write_domains(doms, g + 1)
                start = os.path.getsize(logname)
                c0, t0 = bc.cpu_ns(p.pid), time.perf_counter()
                p.send_signal(signal.SIGHUP)
                wait_log(logname, r'event=reloaded generation=', start)
                walls.append(time.perf_counter() - t0)
                cpus.append((bc.cpu_ns(p.pid) - c0) / 1e9)
            out.append((statistics.median(walls), statistics.median(cpus),
                        bc.proc_status(p.pid, 'VmRSS') / 1024.0))
        write_domains(doms, 0)
        return out
    finally:
        bc.stop(p)


def main():
    bins = [os.path.abspath(b) for b in sys.argv[1:]] or [os.path.join(os.path.dirname(__file__), '..', 'build', 'mxgate')]
    if shutil.which('smtp-sink') is None:
        print('smtp-sink missing')
        return 77
    sink = bc.start_sink()
    doms, nets = write_files()
    print('load %.1f; %d domains + %d CIDRs in two files; median of %d reloads'
          % (os.getloadavg()[0], N, N, RELOADS))
    print('%-28s | %9s %8s %8s | %9s %8s %8s' % ('binary', 'reload s', 'CPU s', 'RSS MB',
                                                 'edited s', 'CPU s', 'RSS MB'))
    for b in bins:
        (w, c, r), (cw, cc, cr) = run(b, sink, doms, nets)
        print('%-28s | %9.3f %8.3f %8.1f | %9.3f %8.3f %8.1f' % (b[-28:], w, c, r, cw, cc, cr))
        sys.stdout.flush()
    print('reload: SIGHUP to event=reloaded with no file changed; edited: the domains file '
          'rewritten (renamed over) before each reload; CPU s the daemon\'s, RSS after the reloads; '
          'load: the 1-minute load average at the start')
    return 0


if __name__ == '__main__':
    try:
        rc = main()
    finally:
        bc.cleanup()
    sys.exit(rc)
