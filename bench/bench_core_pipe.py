#!/usr/bin/env python3
"""bench_core_pipe.py — PIPELINING clients only: one or more mxgate binaries and HAProxy (L4)
in front of the same smtp-sink, taking turns round by round (the order rotates), so two
builds compare in one run on a shared machine. Uses bench_core.py's peers and client (20
connections, ~4 KiB messages, MAIL+RCPT+DATA in one write, the content with the next group).

  python3 bench/bench_core_pipe.py ROUNDS BINARY [BINARY...]

Prints per round the msg/s of each, then per binary the median msg/s, the median of the
per-round ratios to HAProxy and the CPU microseconds per message (mxgate's and HAProxy's own;
CPU moves far less with the machine's load than msg/s). Figures only, no assertions."""
import os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    rounds, bins = int(sys.argv[1]), sys.argv[2:]
    msgs = bc.PIPE_MSGS
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
        print('load before %s' % open('/proc/loadavg').read().strip())
        for r in range(rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for n, p in order:
                c0 = bc.cpu_ns(p.pid)
                rate[n].append(bc.pipelined(p.port, msgs))
                cpu[n].append((bc.cpu_ns(p.pid) - c0) / 1000.0 / msgs)
            print('round %d: %s' % (r, '  '.join('%s %.0f' % (n, rate[n][-1]) for n, _ in targets)), flush=True)
        for i, b in enumerate(bins):
            n = 'mx%d' % i
            ratio = statistics.median(a / h for a, h in zip(rate[n], rate['hp']))
            print('%s  median %6.0f msg/s  haproxy %6.0f  ratio (median of per-round) %.2f  CPU us/msg %.1f '
                  '(haproxy %.1f)' % (b, statistics.median(rate[n]), statistics.median(rate['hp']), ratio,
                                      statistics.median(cpu[n]), statistics.median(cpu['hp'])))
        print('load after %s' % open('/proc/loadavg').read().strip())
    finally:
        bc.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
