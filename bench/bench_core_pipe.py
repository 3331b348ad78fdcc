#!/usr/bin/env python3
"""bench_core_pipe.py — PIPELINING clients only: one or more mxgate binaries and HAProxy (L4)
in front of the same smtp-sink, taking turns round by round (the order rotates), so two
builds compare in one run on a shared machine. Uses bench_core.py's peers and client (20
connections, ~4 KiB messages, MAIL+RCPT+DATA in one write, the content with the next group).

  python3 bench/bench_core_pipe.py ROUNDS BINARY [BINARY...]
  BENCH_CLIENT=d python3 bench/bench_core_pipe.py ROUNDS BINARY [BINARY...]

BENCH_CLIENT=d: the lock-step client instead (smtp-source -d -s 20 -l 4096, bench_core's
"connection reuse (-d)" line: no pipelining, a connection's messages one after another),
the same turns and figures (no "first done" share: smtp-source does not tell);
BENCH_D_SESSIONS=N: N connections instead of 20 (1: one message at a time, so msg/s is one
over a message's chain of round trips and counts them where 20 connections share the CPU).

Prints per round the msg/s of each with, in brackets, the share of the daemon's CPU time its
busiest thread took that round (about 50 % with two threads when the connections were split
evenly and neither thread was starved by other processes: HAProxy hands each accepted
connection to its less loaded thread, 10/10; so does mxgate since session 14 (a worker hands
a connection to the least loaded one when keeping it would leave it more than one above;
before, each took what the kernel's SO_REUSEPORT hash gave it, 13/7 or 16/4 of the 20
connections in many rounds; docs/architecture.md) and the
share of the round's time after which its first connection was done (near 100 %: all ended
together; 35 %: the connections of one thread were done early and the round's end waited for
the other's), then per binary the median msg/s, the median of the per-round ratios to HAProxy and
the CPU microseconds per message (mxgate's and HAProxy's own; CPU moves far less with the
machine's load than msg/s). Pinned as bench_core.py (BENCH_PIN: by default the proxies on the
last CPU, this client and the sink on the others; BENCH_PIN=off for none) with the same
thread count for mxgate and HAProxy (BENCH_THREADS). Figures only, no assertions."""
import glob, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402


def thread_cpu(pid):
    """{tid: CPU ns so far} of pid's threads (per-task schedstat)."""
    got = {}
    for f in glob.glob('/proc/%d/task/*/schedstat' % pid):
        try:
            with open(f) as fh:
                got[f.split('/')[4]] = int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return got


def busiest(a, b):
    """The busiest thread's share (%) of the CPU time between the snapshots a and b."""
    d = [b[t] - a.get(t, 0) for t in b]
    return 100.0 * max(d) / sum(d) if sum(d) else 0.0


CLIENT = os.environ.get('BENCH_CLIENT', 'pipe')


def run_client(port, msgs, tail):
    """msg/s of one run of the chosen client (BENCH_CLIENT) through port."""
    if CLIENT == 'd':
        tail.append(1.0)
        return bc.smtp_source(port, msgs, 4096, ['-d', '-s', os.environ.get('BENCH_D_SESSIONS', '20')])
    return bc.pipelined(port, msgs, tail)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    rounds, bins = int(sys.argv[1]), sys.argv[2:]
    msgs = bc.PIPE_MSGS
    bc.pin_self()
    print('%s; mxgate workers %d, HAProxy nbthread %d; client %s' % (bc.pin_text(), bc.threads(), bc.threads(),
          'smtp-source -d' if CLIENT == 'd' else 'pipelining'))
    try:
        sink = bc.start_sink()
        targets = []
        for i, b in enumerate(bins):
            bc.BIN = b
            targets.append(('mx%d' % i, bc.start_mxgate(sink.port, 'mxgate%d' % i)))
        hp = bc.start_haproxy(sink.port)
        targets.append(('hp', hp))
        rate = {n: [] for n, _ in targets}
        cpu = {n: [] for n, _ in targets}
        split = {n: [] for n, _ in targets}
        tail = {n: [] for n, _ in targets}
        print('load before %s' % open('/proc/loadavg').read().strip())
        for r in range(rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for n, p in order:
                c0, t0 = bc.cpu_ns(p.pid), thread_cpu(p.pid)
                rate[n].append(run_client(p.port, msgs, tail[n]))
                cpu[n].append((bc.cpu_ns(p.pid) - c0) / 1000.0 / msgs)
                split[n].append(busiest(t0, thread_cpu(p.pid)))
            print('round %d: %s' % (r, '  '.join('%s %.0f (%.0f%%, %.0f%%)' % (n, rate[n][-1], split[n][-1],
                                                                                100 * tail[n][-1])
                                                  for n, _ in targets)), flush=True)
        for i, b in enumerate(bins):
            n = 'mx%d' % i
            ratios = [a / h for a, h in zip(rate[n], rate['hp'])]
            print('%s  median %6.0f msg/s  haproxy %6.0f  ratio (median of per-round) %.2f (%s)  CPU us/msg %.1f '
                  '(%s; haproxy %.1f, %s)  busiest thread %.0f%% (haproxy %.0f%%)  first done %.0f%% (haproxy %.0f%%)'
                  % (b, statistics.median(rate[n]), statistics.median(rate['hp']), statistics.median(ratios),
                     bc.spread(ratios), statistics.median(cpu[n]), bc.spread(cpu[n], '%.1f'),
                     statistics.median(cpu['hp']), bc.spread(cpu['hp'], '%.1f'),
                     statistics.median(split[n]), statistics.median(split['hp']),
                     100 * statistics.median(tail[n]), 100 * statistics.median(tail['hp'])))
        if len(bins) == 2:
            # The two builds paired by round (they ran in the same minute): what the second
            # changes, with how many rounds agree on its sign.
            dc = [b - a for a, b in zip(cpu['mx0'], cpu['mx1'])]
            dr = [(b / h) - (a / h) for a, b, h in zip(rate['mx0'], rate['mx1'], rate['hp'])]
            print('second - first, paired by round: CPU us/msg %+.1f (median; lower in %d of %d rounds), '
                  'ratio to haproxy %+.2f (median; higher in %d of %d)'
                  % (statistics.median(dc), sum(1 for d in dc if d < 0), len(dc),
                     statistics.median(dr), sum(1 for d in dr if d > 0), len(dr)))
        print('load after %s' % open('/proc/loadavg').read().strip())
    finally:
        bc.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
