#!/usr/bin/env python3
"""bench_core_cost.py — the yardsticks that do not move with the machine's load, for the
PIPELINING client of bench_core (20 connections, ~4 KiB messages, MAIL+RCPT+DATA in one
write, the content with the next group), in front of one smtp-sink.

  python3 bench/bench_core_cost.py instr BINARY [BINARY...]
      user-space instructions per pipelined message of each mxgate (BINARY 'haproxy': HAProxy
      L4 as bench_core starts it) (valgrind callgrind on
      the daemon, all threads: counters zeroed after 300 warm-up messages, then 2,000
      messages; total Ir / 2,000). Keeps the profile in bench-callgrind.<i>.out in the
      current directory for callgrind_annotate. BENCH_CG_SIZE=102400: smtp-source -d -s 20
      -l SIZE instead of the pipelining client (no pipelining: the large-message path), 20
      warm-up messages then BENCH_CG_MSGS (200); per message the same way.
  python3 bench/bench_core_cost.py self PROFILE [N [EVENT]]
      the N (30) functions with the most EVENT (Ir; with BENCH_CG_SIM also D1mr, D1mw, Bcm,
      Bim, ...) of their own per message, or by default with the most instructions of their own per message in a profile
      kept by instr (callgrind_annotate 3.19 puts every function's own cost on worker_run
      for these profiles; this reads the file itself).
  python3 bench/bench_core_cost.py calls PROFILE [N [REGEX [EVENT]]]
      the N (40) heaviest caller -> callee edges per message (the callee's inclusive
      instructions on that edge), of those with a caller or callee matching REGEX: who
      calls memcpy or strlen (REGEX 'memcpy|strlen'), what a relay step costs ('^relay_').
      EVENT (a profile of BENCH_CG_SIM=1): D1mw, D1mr ... instead of instructions, e.g.
      whose memcpy calls miss: calls PROFILE 15 memcpy D1mw.
  python3 bench/bench_core_cost.py lines PROFILE FILE [MIN [EVENT]]
      own instructions per message of each source line of FILE (a path suffix, e.g.
      proxy/relay.c) with at least MIN (5), next to the line's text; EVENT as for calls
      (which lines of a struct's users write cold cache lines: lines PROFILE
      proxy/smtp_cmd.c 0.2 D1mw).
  python3 bench/bench_core_cost.py count PROFILE REGEX [N]
      calls per message of each function matching REGEX ('^(malloc|free|calloc|realloc)$',
      '^uv_timer'), with its N (5) most frequent callers.
  BENCH_CG_SIM=1 python3 bench/bench_core_cost.py instr ...
      with callgrind's cache and branch simulation (--cache-sim=yes --branch-sim=yes): the
      per-message D1/LL misses and mispredicted branches next to the instructions (a model
      of the cache, not this VM's, which has no hardware counters for perf stat).
  python3 bench/bench_core_cost.py cpu ROUNDS BINARY [BINARY...]
      per message the CPU time (all threads, ns from schedstat: perf's task-clock) of each
      mxgate and HAProxy L4 taking turns round by round, with the paired difference of each
      build against the first; BENCH_CG_SIZE=102400 uses smtp-source -d of that size
      (BENCH_KMSGS a round, default 2,000), else the pipelining client.
  python3 bench/bench_core_cost.py kernel ROUNDS BINARY [BINARY...]
      per message, each mxgate and HAProxy L4 taking turns (20,000 messages a round):
      system calls (strace -c -f over one extra round of 2,000; by name), sleeps (voluntary
      context switches of all threads, /proc/PID/task/*/status), involuntary switches, user
      and system microseconds (/proc/PID/task/*/stat; clock ticks: at 20,000 messages a tick
      is 0.5 us a message, BENCH_KMSGS=100000 makes it 0.1 us).
  python3 bench/bench_core_cost.py sys ROUNDS BINARY [BINARY...]
      per message, each mxgate and HAProxy L4 taking turns (KMSGS messages a round): every
      system call by name, context switches, migrations, and the wake-ups the daemon's
      threads cause (sched:sched_wakeup raised in their context, the client's, the sink's
      and each other's), counted by the kernel's tracepoints (`perf stat -p PID`), so the
      daemon runs at full speed (strace -c stops it at every call and changes how much each
      wake-up finds to do). Per thread with BENCH_PER_THREAD=1. Needs perf and tracefs.

  python3 bench/bench_core_cost.py turns ROUNDS BINARY [BINARY...]
      per message and per loop turn, each mxgate and HAProxy L4 taking turns (KMSGS messages
      a round): CPU, time runnable but waiting for a CPU, the turns (schedstat's time slices:
      each wake-up or preemption that let a thread run), sleeps and preemptions, summed over
      the daemon's threads (/proc/PID/task/*/schedstat and status); so "1.1 ms a turn" reads
      as messages a turn x CPU a message. With BENCH_THREADS="1 2" each mxgate and HAProxy
      run once per thread count (mx0@1, hp@1, mx0@2, ...).
  python3 bench/bench_core_cost.py perf ROUNDS BINARY [BINARY...]
      where each daemon's CPU goes, kernel included: `perf record -g` (cpu-clock, 2 kHz) on
      each mxgate and on HAProxy L4 over ROUNDS pipelined runs of KMSGS messages each, taking
      turns; prints per daemon its samples per message split by DSO (kernel, libc, libuv,
      mxgate, haproxy), the top symbols by own samples, and the kernel's top call chains
      seen from the system call (read, write, epoll_wait, ...). BENCH_PERF_KEEP=DIR keeps
      the perf.data files. Needs perf.
  sys and perf take BENCH_CLIENT=d: smtp-source -d (lock-step, 4 KiB, BENCH_D_SESSIONS
      connections, 20 by default) instead of the pipelining client.

Figures only, no assertions."""
import glob, os, re, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_core as bc  # noqa: E402

WARM, MSGS = 300, 2000
KMSGS = int(os.environ.get('BENCH_KMSGS', '20000'))   # a kernel round's messages
# messages in a kept profile, for self, calls, lines and count (BENCH_CG_SIZE's are fewer)
PMSGS = int(os.environ.get('BENCH_CG_MSGS', '200')) if os.environ.get('BENCH_CG_SIZE') else MSGS


def wrapper(binary, out):
    path = os.path.join(bc.TMP, 'cg-%d.sh' % len(os.listdir(bc.TMP)))
    with open(path, 'w') as f:
        f.write('#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s '
                '--dump-instr=no %s%s "$@"\n'
                % (out, '--cache-sim=yes --branch-sim=yes ' if os.environ.get('BENCH_CG_SIM') else '',
                   os.path.abspath(binary)))
    os.chmod(path, 0o755)
    return path


def totals(path):
    """{event: total} of a profile (Ir alone, or with BENCH_CG_SIM the simulated cache
    and branch events too: D1mr, DLmr, Bcm, Bim, ...)."""
    events = ['Ir']
    with open(path) as f:
        for line in f:
            if line.startswith('events:'):
                events = line.split()[1:]
            if line.startswith('totals:') or line.startswith('summary:'):
                return dict(zip(events, (int(x) for x in line.split()[1:])))
    raise RuntimeError('%s: no totals' % path)


def total_ir(path):
    return totals(path)['Ir']


def cg_client():
    """(warm-up, measured, run(port, msgs)) of instr's client: the pipelining one, or with
    BENCH_CG_SIZE smtp-source -d of messages of that size."""
    size = int(os.environ.get('BENCH_CG_SIZE', '0'))
    if not size:
        return WARM, MSGS, bc.pipelined
    return 20, int(os.environ.get('BENCH_CG_MSGS', '200')), \
        lambda port, n: bc.smtp_source(port, n, size, ['-d'])


def instr(bins):
    warm, msgs, client = cg_client()
    wait = bc.wait_port
    bc.wait_port = lambda port, timeout=120: wait(port, timeout)   # valgrind starts slowly
    sink = bc.start_sink()
    for i, b in enumerate(bins):
        out = os.path.join(bc.TMP, 'cg%d.out' % i)
        if b == 'haproxy':
            # HAProxy L4 under the same yardstick: the relay's part without SMTP
            real, w = shutil.which, wrapper(shutil.which('haproxy'), out)
            bc.shutil.which = lambda n: w if n == 'haproxy' else real(n)
            mx = bc.start_haproxy(sink.port, 'cghp%d' % i)
            bc.shutil.which = real
        else:
            bc.BIN = wrapper(b, out)
            mx = bc.start_mxgate(sink.port, 'cg%d' % i)
        client(mx.port, warm)
        subprocess.run(['callgrind_control', '-z', str(mx.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        client(mx.port, msgs)
        subprocess.run(['callgrind_control', '-d', str(mx.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        dumps = sorted(glob.glob(out + '.*'), key=os.path.getmtime)
        ir = total_ir(dumps[-1])
        keep = 'bench-callgrind.%d.out' % i
        shutil.copy(dumps[-1], keep)
        print('%s  %d instructions/msg  (%d Ir over %d %s messages; profile %s)'
              % (b, round(ir / msgs), ir, msgs, os.environ.get('BENCH_CG_SIZE', 'pipelined'),
                 keep), flush=True)
        ev = totals(dumps[-1])
        if len(ev) > 1:
            print('    per msg: ' + '  '.join('%s %.1f' % (k, v / msgs) for k, v in ev.items()),
                  flush=True)
        bc.stop(mx)


def task_sum(pid, fname, fields):
    tot = [0] * len(fields)
    for d in glob.glob('/proc/%d/task/*' % pid):
        try:
            with open(os.path.join(d, fname)) as f:
                txt = f.read()
        except OSError:
            continue
        if fname == 'stat':
            v = txt[txt.rindex(')') + 2:].split()
            for i, k in enumerate(fields):   # utime, stime: fields 14, 15 (index 11, 12 here)
                tot[i] += int(v[k])
        else:
            for i, k in enumerate(fields):
                m = re.search(r'^%s:\s+(\d+)' % k, txt, re.M)
                tot[i] += int(m.group(1)) if m else 0
    return tot


def snap(pid):
    ut, st = task_sum(pid, 'stat', [11, 12])
    vol, inv = task_sum(pid, 'status', ['voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches'])
    return ut, st, vol, inv


def strace_count(pid, port):
    out = os.path.join(bc.TMP, 'strace-%d.txt' % pid)
    st = subprocess.Popen(['strace', '-c', '-f', '-p', str(pid), '-o', out],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    bc.pipelined(port, MSGS)
    st.send_signal(2)
    st.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            v = line.split()
            if len(v) >= 5 and v[-1] not in ('syscall', 'total') and v[3].isdigit():
                calls[v[-1]] = int(v[3])
    return calls


def start_targets(bins):
    """One sink; an mxgate per binary ('mx0', 'mx1', ...) and HAProxy L4 ('hp') in front of it."""
    sink = bc.start_sink()
    targets = []
    for i, b in enumerate(bins):
        bc.BIN = b
        targets.append(('mx%d' % i, bc.start_mxgate(sink.port, 'mxgate%d' % i)))
    targets.append(('hp', bc.start_haproxy(sink.port)))
    return targets


def kernel(rounds, bins):
    tick = os.sysconf('SC_CLK_TCK')
    targets = start_targets(bins)
    rows = {n: [] for n, _ in targets}
    print('load before %s' % open('/proc/loadavg').read().strip())
    for n, p in targets:
        bc.pipelined(p.port, WARM)
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for n, p in order:
            a = snap(p.pid)
            rate = bc.pipelined(p.port, KMSGS)
            b = snap(p.pid)
            d = [(y - x) for x, y in zip(a, b)]
            rows[n].append((rate, d[0] * 1e6 / tick / KMSGS, d[1] * 1e6 / tick / KMSGS,
                            d[2] / KMSGS, d[3] / KMSGS))
        print('round %d: %s' % (r, '  '.join(
            '%s %.0f msg/s user %.1f sys %.1f us sleeps %.2f invol %.2f' % ((n,) + rows[n][-1])
            for n, _ in targets)), flush=True)
    for n, p in targets:
        med = [statistics.median(x[i] for x in rows[n]) for i in range(5)]
        print('%-4s median: %.0f msg/s  user %.2f us  sys %.2f us  sleeps %.2f  invol %.2f per msg'
              % ((n,) + tuple(med)))
    for i in range(1, len(bins)):
        d = [b[1] - a[1] for a, b in zip(rows['mx0'], rows['mx%d' % i])]
        print('mx%d - mx0 user, paired by round: median %+.2f us/msg, lower in %d, higher in %d, '
              'same in %d of %d' % (i, statistics.median(d), sum(x < 0 for x in d),
                                     sum(x > 0 for x in d), sum(x == 0 for x in d), len(d)))
    if shutil.which('strace'):
        for n, p in targets:
            c = strace_count(p.pid, p.port)
            tot = sum(c.values())
            top = sorted(c.items(), key=lambda kv: -kv[1])[:6]
            print('%-4s syscalls/msg %.2f: %s' % (n, tot / MSGS, '  '.join(
                '%s %.2f' % (k, v / MSGS) for k, v in top)))
    print('load after %s' % open('/proc/loadavg').read().strip())


def sched_snap(pid):
    """(run ns, wait ns, time slices, voluntary, involuntary switches) summed over pid's threads."""
    tot = [0, 0, 0, 0, 0]
    for d in glob.glob('/proc/%d/task/*' % pid):
        try:
            with open(d + '/schedstat') as f:
                v = [int(x) for x in f.read().split()[:3]]
            with open(d + '/status') as f:
                st = dict(l.split(':', 1) for l in f if ':' in l)
            v += [int(st['voluntary_ctxt_switches']), int(st['nonvoluntary_ctxt_switches'])]
        except (OSError, ValueError, KeyError):
            continue
        tot = [a + b for a, b in zip(tot, v)]
    return tot


def turns(rounds, bins):
    """Per message and per turn (see the doc), each target taking turns round by round."""
    counts = [int(x) for x in os.environ.get('BENCH_THREADS', '').split()] or [bc.threads()]
    targets = []
    for t in counts:
        bc.THREADS = t
        for n, p in start_targets(bins):
            targets.append(('%s@%d' % (n, t), p))
    rows = {n: [] for n, _ in targets}
    print('%s; threads %s' % (bc.pin_text(), ' '.join(map(str, counts))))
    print('load before %s' % open('/proc/loadavg').read().strip(), flush=True)
    for n, p in targets:
        bc.pipelined(p.port, WARM)
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for n, p in order:
            a = sched_snap(p.pid)
            rate = bc.pipelined(p.port, KMSGS)
            d = [y - x for x, y in zip(a, sched_snap(p.pid))]
            sl = max(1, d[2])
            rows[n].append((rate, d[0] / 1e3 / KMSGS, d[1] / 1e3 / KMSGS, d[2] / KMSGS,
                            d[3] / KMSGS, d[4] / KMSGS, d[0] / 1e3 / sl, d[1] / 1e3 / sl, KMSGS / sl))
        print('round %d: %s' % (r, '  '.join('%s %.0f msg/s cpu %.1f wait %.1f us' % ((n,) + rows[n][-1][:3])
                                             for n, _ in targets)), flush=True)
    print('%-7s %8s %8s %8s %7s %7s %7s %9s %9s %7s' % ('median', 'msg/s', 'cpu us', 'wait us', 'turns',
                                                       'sleeps', 'preempt', 'us/turn', 'wait/turn', 'msg/turn'))
    for n, _ in targets:
        med = [statistics.median(x[i] for x in rows[n]) for i in range(9)]
        print('%-7s %8.0f %8.1f %8.1f %7.3f %7.3f %7.3f %9.1f %9.1f %7.1f' % ((n,) + tuple(med)))
    for n, _ in targets:
        h = 'hp@' + n.split('@')[1]
        if n.startswith('mx') and h in rows:
            rr = [a[0] / b[0] for a, b in zip(rows[n], rows[h])]
            print('%s / %s msg/s, per round: median %.2f (%s)' % (n, h, statistics.median(rr), bc.spread(rr)))
    print('load after %s' % open('/proc/loadavg').read().strip())


def minflt(pid):
    """Minor page faults of all of pid's threads so far (/proc/PID/stat field 10)."""
    with open('/proc/%d/stat' % pid) as f:
        return int(f.read().rsplit(')', 1)[1].split()[7])


def cpu_ab(rounds, bins):
    """Per message the CPU time of each mxgate and HAProxy L4 (all threads, schedstat: ns,
    the task-clock perf stat counts), taking turns round by round; with BENCH_CG_SIZE the
    smtp-source -d client of that size (BENCH_KMSGS messages a round, default 2,000), else
    the pipelining one (KMSGS)."""
    size = int(os.environ.get('BENCH_CG_SIZE', '0'))
    n_msgs = int(os.environ.get('BENCH_KMSGS', '2000')) if size else KMSGS
    run = (lambda port, n: bc.smtp_source(port, n, size, ['-d'])) if size else bc.pipelined
    targets = start_targets(bins)
    rows = {n: [] for n, _ in targets}
    print('load before %s' % open('/proc/loadavg').read().strip(), flush=True)
    for n, p in targets:
        run(p.port, 20 if size else WARM)
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for n, p in order:
            c0, f0 = bc.cpu_ns(p.pid), minflt(p.pid)
            rate = run(p.port, n_msgs)
            rows[n].append(((bc.cpu_ns(p.pid) - c0) / 1000.0 / n_msgs, rate,
                            (minflt(p.pid) - f0) / n_msgs))
        print('round %d: %s' % (r, '  '.join('%s %.1f us (%.0f msg/s, %.2f minflt)' % ((n,) + rows[n][-1])
                                             for n, _ in targets)), flush=True)
    for n, _ in targets:
        v = [x[0] for x in rows[n]]
        f = [x[2] for x in rows[n]]
        print('%-4s CPU us/msg median %.1f (spread %.1f-%.1f), minor faults/msg median %.2f '
              '(spread %.2f-%.2f), %d rounds of %d %s messages'
              % (n, statistics.median(v), min(v), max(v), statistics.median(f), min(f), max(f),
                 rounds, n_msgs, size or 'pipelined'))
    for i in range(1, len(bins)):
        d = [b[0] - a[0] for a, b in zip(rows['mx0'], rows['mx%d' % i])]
        print('mx%d - mx0, paired by round: median %+.1f us/msg, lower in %d of %d'
              % (i, statistics.median(d), sum(x < 0 for x in d), len(d)))
    print('load after %s' % open('/proc/loadavg').read().strip())


def client(port, msgs):
    """One run of msgs messages through port by the chosen client: bench_core's PIPELINING
    client, or with BENCH_CLIENT=d smtp-source -d (lock-step, BENCH_D_SESSIONS connections,
    20 by default; bench_core_pipe.py's -d line). msg/s."""
    if os.environ.get('BENCH_CLIENT') == 'd':
        return bc.smtp_source(port, msgs, 4096, ['-d', '-s', os.environ.get('BENCH_D_SESSIONS', '20')])
    return bc.pipelined(port, msgs)


SYS_EVENTS = ['syscalls:sys_enter_*', 'context-switches', 'cpu-migrations', 'sched:sched_wakeup']


def machine():
    """The whole machine's TCP segments sent (/proc/net/snmp; the loopback carries the
    client's, the proxy's and the sink's, and whatever else runs: a floor, not exact)."""
    with open('/proc/net/snmp') as f:
        tcp = [l.split() for l in f if l.startswith('Tcp:')]
    return {'~tcp-segments': int(tcp[1][tcp[0].index('OutSegs')])}


def perf_count(pid, port, msgs):
    """{event: count} over one pipelined run of msgs messages against port (perf stat -p pid;
    with BENCH_PER_THREAD the keys are 'thread-tid event')."""
    out = os.path.join(bc.TMP, 'perfstat-%d.txt' % pid)
    per = bool(os.environ.get('BENCH_PER_THREAD'))
    cmd = ['perf', 'stat', '-x', ',', '-p', str(pid), '-o', out] + (['--per-thread'] if per else [])
    for e in SYS_EVENTS:
        cmd += ['-e', e]
    st = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)        # attaching ~350 tracepoints takes a moment; idle loops make no calls
    m0 = machine()
    got = {'msg/s': client(port, msgs) * msgs}
    m1 = machine()
    st.send_signal(2)
    st.wait(30)
    for k in m0:
        got[k] = m1[k] - m0[k]
    with open(out) as f:
        for line in f:
            v = line.strip().split(',')
            if per:
                if len(v) < 4 or not v[1].isdigit():
                    continue
                key, n = v[0] + ' ' + v[3], int(v[1])
            else:
                if len(v) < 3 or not v[0].isdigit():
                    continue
                key, n = v[2], int(v[0])
            if n:
                got[key.replace('syscalls:sys_enter_', '')] = n
    return got


def sys_count(rounds, bins):
    targets = start_targets(bins)
    rows = {n: [] for n, _ in targets}
    print('load before %s' % open('/proc/loadavg').read().strip())
    for n, p in targets:
        print('%-4s threads: %d' % (n, len(os.listdir('/proc/%d/task' % p.pid))))
        client(p.port, WARM)
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for n, p in order:
            rows[n].append(perf_count(p.pid, p.port, KMSGS))
    for n, p in targets:
        keys = sorted(set(k for row in rows[n] for k in row),
                      key=lambda k: -statistics.median(row.get(k, 0) for row in rows[n]))
        med = [(k, statistics.median(row.get(k, 0) for row in rows[n]) / KMSGS) for k in keys]
        calls = sum(v for k, v in med if not re.search(r'[-:/~]', k.split(' ')[-1]))
        print('%-4s per msg (median of %d rounds of %d): syscalls %.2f  msg/s %.0f' % (
            n, rounds, KMSGS, calls, dict(med)['msg/s']))
        print('       ' + '  '.join('%s %.3f' % kv for kv in med if kv[1] >= 0.001 and kv[0] != 'msg/s'))
    print('load after %s' % open('/proc/loadavg').read().strip())


def perf_profile(rounds, bins):
    """perf record -g on each target over its rounds; the summary per target (see the doc)."""
    targets = start_targets(bins)
    keep = os.environ.get('BENCH_PERF_KEEP')
    print('load before %s' % open('/proc/loadavg').read().strip())
    for n, p in targets:
        client(p.port, WARM)
    data = {n: [] for n, _ in targets}
    msgs = {n: 0 for n, _ in targets}
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for n, p in order:
            out = os.path.join(keep or bc.TMP, 'perf-%s-%d.data' % (n, r))
            rec = subprocess.Popen(['perf', 'record', '-e', 'cpu-clock', '-F', '2000', '-g', '-o', out,
                                    '-p', str(p.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            client(p.port, KMSGS)
            rec.send_signal(2)
            rec.wait(60)
            data[n].append(out)
            msgs[n] += KMSGS
    for n, _ in targets:
        # one report over the target's rounds: perf report takes one file, so sum the reports
        dso, sym = {}, {}
        for f in data[n]:
            for key, into in (('dso', dso), ('dso,symbol', sym)):
                r = subprocess.run(['perf', 'report', '-i', f, '--no-children', '--stdio', '-g', 'none',
                                    '-F', 'sample,' + key, '--sort', key], capture_output=True, text=True,
                                   timeout=300)
                for line in r.stdout.splitlines():
                    v = line.split()
                    if not v or line.startswith('#') or not v[0].isdigit():
                        continue
                    k = ' '.join(v[1:])
                    into[k] = into.get(k, 0) + int(v[0])
        total = sum(dso.values()) or 1
        us = 1e6 / 2000 / msgs[n]        # one sample is 500 us of CPU
        print('%-4s %.1f us/msg sampled (%d samples over %d messages): %s' % (
            n, total * us, total, msgs[n], ', '.join('%s %.0f %%' % (k, 100.0 * v / total) for k, v in
                                                    sorted(dso.items(), key=lambda kv: -kv[1])[:6])))
        for k, v in sorted(sym.items(), key=lambda kv: -kv[1])[:25]:
            print('     %5.1f %%  %5.2f us/msg  %s' % (100.0 * v / total, v * us, k))
        # the kernel by entry point: each system call's samples with all it calls (children),
        # and within them the loopback delivery to the peer (net_rx_action, run in the
        # writer's context) and the sleeps (schedule, mostly under epoll_wait)
        inc = {}
        for f in data[n]:
            r = subprocess.run(['perf', 'report', '-i', f, '--children', '--stdio', '-g', 'none',
                                '--sort', 'symbol'], capture_output=True, text=True, timeout=300)
            # '# Samples: 1K of event' is rounded; the event count is cpu-clock's ns (500 us a sample)
            m = re.search(r'^# Event count \(approx.\): (\d+)', r.stdout, re.M)
            nsamp = int(m.group(1)) / 500000.0 if m else 0
            for line in r.stdout.splitlines():
                m = re.match(r'\s*([\d.]+)%\s+[\d.]+%\s+\[[k.]\]\s+(\S+)', line)
                if m and re.match(r'(__x64_sys_\w+|__sys_sendmsg|__sys_recvmsg|ksys_read|ksys_write|do_writev|do_syscall_64|net_rx_action|schedule)$', m.group(2)):
                    inc[m.group(2)] = inc.get(m.group(2), 0) + float(m.group(1)) * nsamp / 100.0
        print('     kernel, inclusive: ' + '  '.join(
            '%s %.2f' % (re.sub(r'^(__x64_sys_|__sys_|ksys_|do_(?!sys))', '', k), v * us)
            for k, v in sorted(inc.items(), key=lambda kv: -kv[1]) if v * us >= 0.05) + ' us/msg')
    print('load after %s' % open('/proc/loadavg').read().strip())


def self_cost(path, top, event='Ir'):
    """Own instructions per function (callgrind's compressed names, cost lines of positions
    'line'; the line after calls= is the call's inclusive cost, not the caller's own)."""
    names, own, fn, in_call = {}, {}, None, False
    col = 1

    def name(v):
        m = re.match(r'\((\d+)\)(?: (.*))?', v)
        if not m:
            return v
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), '?')
    with open(path) as f:
        for line in f:
            if line.startswith('events:'):
                col = line.split()[1:].index(event) + 1
            elif line.startswith('fn='):
                fn = name(line[3:].strip())
            elif line.startswith('cfn='):
                name(line[4:].strip())
            elif line.startswith('calls='):
                in_call = True
            elif line[:1].isdigit() or line[:1] in '+-*':
                if in_call:
                    in_call = False
                    continue
                v = line.split()
                if len(v) > col:
                    own[fn] = own.get(fn, 0) + int(v[col])
    total = sum(own.values()) or 1
    print('%s: %.1f %s/msg' % (path, total / PMSGS, event))
    for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print('%7.1f  %5.1f %%  %s' % (c / PMSGS, 100.0 * c / total, f))


def parse_profile(path, event='Ir'):
    """(edges, lines, files) of a kept profile: edges[(caller, callee)] inclusive EVENT (Ir,
    or with BENCH_CG_SIM D1mw, D1mr, ...) of the calls, lines[(file, line)] own EVENT;
    callgrind's compressed names and relative positions ('+N', '-N', '*') resolved."""
    names, edges, lines, counts = {}, {}, {}, {}
    fn = cfn = fl = fi = None
    line, in_call, col = 0, False, 1

    def name(kind, v):
        m = re.match(r'\((\d+)\)(?: (.*))?', v)
        if not m:
            return v
        if m.group(2):
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), '?')
    with open(path) as f:
        for raw in f:
            s = raw.rstrip('\n')
            if s.startswith('events:'):
                col = s.split()[1:].index(event) + 1
            elif s.startswith('fn='):
                fn, fi = name('fn', s[3:]), fl
            elif s.startswith('cfn='):
                cfn = name('fn', s[4:])
            elif s.startswith('fl='):
                fl = fi = name('fl', s[3:])
            elif s.startswith(('fi=', 'fe=')):
                fi = name('fl', s[3:])
            elif s.startswith(('cfi=', 'cfl=')):
                name('fl', s[4:])
            elif s.startswith(('ob=', 'cob=')):
                continue
            elif s.startswith('calls='):
                in_call = True
                counts[(fn, cfn)] = counts.get((fn, cfn), 0) + int(s[6:].split()[0])
            elif s and (s[0].isdigit() or s[0] in '+-*'):
                v = s.split()
                t = v[0]
                if t[0] == '+':
                    line += int(t[1:])
                elif t[0] == '-':
                    line -= int(t[1:])
                elif t[0] != '*':
                    line = int(t)
                if len(v) <= col:
                    in_call = False
                    continue
                if in_call:
                    in_call = False
                    edges[(fn, cfn)] = edges.get((fn, cfn), 0) + int(v[col])
                else:
                    lines[(fi, line)] = lines.get((fi, line), 0) + int(v[col])
    parse_profile.counts = counts
    return edges, lines


def count(path, pattern, top):
    """Calls per message of each function matching pattern (malloc|free|uv_timer), with
    its heaviest callers."""
    parse_profile(path)
    per = {}
    for (a, b), n in parse_profile.counts.items():
        if b and re.search(pattern, b):
            per.setdefault(b, []).append((n, a))
    for b, v in sorted(per.items(), key=lambda kv: -sum(n for n, _ in kv[1])):
        print('%8.2f  %s' % (sum(n for n, _ in v) / PMSGS, b))
        for n, a in sorted(v, reverse=True)[:top]:
            print('%8.2f      <- %s' % (n / PMSGS, a))


def calls(path, top, pattern, event='Ir'):
    edges, _ = parse_profile(path, event)
    pick = [(k, c) for k, c in edges.items()
            if not pattern or re.search(pattern, k[0] or '') or re.search(pattern, k[1] or '')]
    for (a, b), c in sorted(pick, key=lambda kv: -kv[1])[:top]:
        print('%7.1f  %s -> %s' % (c / PMSGS, a, b))


def lines_of(path, suffix, least, event='Ir'):
    _, lines = parse_profile(path, event)
    mine = {ln: c for (f, ln), c in lines.items() if f and f.endswith(suffix)}
    files = {f for (f, _) in lines if f and f.endswith(suffix)}
    text = []
    if files:
        try:
            with open(sorted(files)[0]) as f:
                text = f.read().split('\n')
        except OSError:
            pass
    print('%s: %.1f %s/msg of its own' % (suffix, sum(mine.values()) / PMSGS, event))
    for ln in sorted(mine):
        if mine[ln] / PMSGS >= least:
            print('%7.1f %5d  %s' % (mine[ln] / PMSGS, ln, text[ln - 1][:100] if 0 < ln <= len(text) else ''))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    if sys.argv[1] in ('cpu', 'kernel', 'sys', 'turns', 'perf'):
        bc.pin_self()       # BENCH_PIN as bench_core (BENCH_PIN=off: unpinned)
    try:
        if sys.argv[1] == 'instr':
            instr(sys.argv[2:])
        elif sys.argv[1] == 'cpu':
            cpu_ab(int(sys.argv[2]), sys.argv[3:])
        elif sys.argv[1] == 'kernel':
            kernel(int(sys.argv[2]), sys.argv[3:])
        elif sys.argv[1] == 'sys':
            sys_count(int(sys.argv[2]), sys.argv[3:])
        elif sys.argv[1] == 'turns':
            turns(int(sys.argv[2]), sys.argv[3:])
        elif sys.argv[1] == 'perf':
            perf_profile(int(sys.argv[2]), sys.argv[3:])
        elif sys.argv[1] == 'calls':
            calls(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40,
                  sys.argv[4] if len(sys.argv) > 4 else None, sys.argv[5] if len(sys.argv) > 5 else 'Ir')
        elif sys.argv[1] == 'lines' and len(sys.argv) > 3:
            lines_of(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 5,
                     sys.argv[5] if len(sys.argv) > 5 else 'Ir')
        elif sys.argv[1] == 'count' and len(sys.argv) > 3:
            count(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5)
        elif sys.argv[1] == 'self':
            self_cost(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 30,
                      sys.argv[4] if len(sys.argv) > 4 else 'Ir')
        else:
            print(__doc__)
            return 2
    finally:
        bc.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
