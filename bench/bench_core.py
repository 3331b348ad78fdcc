#!/usr/bin/env python3
"""bench_core: mxgate's core figures, each side by side with baselines measured in the same run:
straight into smtp-sink ("direct") and through HAProxy in TCP mode (an L4 relay: what a
proxy that does not speak SMTP costs; "haproxy", when haproxy is installed).

  1. throughput  smtp-source -s 20 -m N -l 4096 through mxgate into smtp-sink vs HAProxy vs
                 straight into smtp-sink, taking turns, median of 3; a new connection per
                 message and with -d (connection reuse); the sink's message count is checked
                 (nothing lost).
  2. sessions    10,000 idle client sessions held open: RSS growth and file descriptors per
                 session of mxgate, next to smtp-sink holding as many.
  3. latency     median / p99 of one whole one-message session (connect -> QUIT reply),
                 sequential, through mxgate vs direct, interleaved.
  4. extra       a 100 KiB message (-d) and PIPELINING clients (own asyncio client: smtp-source
                 does not pipeline), again mxgate vs HAProxy vs direct; for PIPELINING also
                 the median round trip of a message (content and dot written -> the dot's
                 250) and the share of waiting spent in waits >= 30 ms (stalls of the loaded
                 machine, which decide msg/s there).

Usage: bench/bench_core.py [path/to/mxgate]     (default: $MXGATE_BIN, else build/mxgate)
Env:   BENCH_QUICK=1      reduced run (fewer messages and sessions), about 30 s
       BENCH_PROFILE=1    also record one -d throughput run with `perf record -g` and print
                          mxgate's top functions (needs perf)
       BENCH_ONLY=a,b     run only the named parts: throughput,sessions,latency,extra
       BENCH_ROUNDS=N     alternating direct/mxgate pairs per throughput figure (default 3)
       BENCH_PIPE_ROUNDS=N  rounds of the PIPELINING figure (default 7, QUICK 3)
       BENCH_SUMMARY=F    append the headline lines to F (bench/run.sh prints them at the end)
       BENCH_PIN=P:L      CPUs for the proxy (mxgate, HAProxy) : CPUs for the load (this script's
                          clients, smtp-source, smtp-sink), taskset's list syntax (default on a
                          machine of 2+ CPUs: the last CPU for the proxy, the others for the
                          load, e.g. 1:0); BENCH_PIN=off runs everything unpinned, as before
       BENCH_THREADS=N    mxgate's `workers:` and HAProxy's `nbthread`, the same for both
                          (default: the CPUs the proxy may use: 1 when pinned to one CPU)
Prints figures only: no timing assertions. Exit status is non-zero only when a part could not
run (a peer did not start, a client failed, messages were lost)."""
import asyncio, glob, os, re, resource, selectors, shutil, signal, socket, statistics, subprocess
import sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get('MXGATE_BIN') \
    or os.path.join(ROOT, 'build', 'mxgate')
QUICK = os.environ.get('BENCH_QUICK', '') not in ('', '0')
ONLY = set(p for p in os.environ.get('BENCH_ONLY', '').split(',') if p)
PROFILE = os.environ.get('BENCH_PROFILE', '') not in ('', '0')
SUMMARY = os.environ.get('BENCH_SUMMARY')

MSGS = 500 if QUICK else 2000           # smtp-source -m per run
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))  # alternating pairs; the median is reported
SESSIONS = 2000 if QUICK else 10000     # idle sessions held
REF_SESSIONS = 1000 if QUICK else 2000  # idle sessions held by the smtp-sink reference
LAT_N = 100 if QUICK else 500           # sequential sessions per target for latency
BIG_MSGS = 50 if QUICK else 200         # 100 KiB messages per run
PIPE_MSGS = 500 if QUICK else 2000      # pipelined messages per run
PIPE_ROUNDS = int(os.environ.get('BENCH_PIPE_ROUNDS', '3' if QUICK else '7'))  # cheap: a run is 0.1-0.3 s
PIPE_STALL_S = 0.030                    # a pipelined message's wait counted as a stall (15x the usual)


def cpu_list(text):
    """taskset's list syntax ("0", "1-3", "0,2") as a set of CPU numbers."""
    got = set()
    for part in text.split(','):
        a, _, b = part.strip().partition('-')
        got.update(range(int(a), int(b or a) + 1))
    return got


def pin_plan():
    """(proxy CPUs, load CPUs) from BENCH_PIN, or None (unpinned). The default keeps the
    bench's own processes off the proxy's CPU: without it the client, the sink and the
    proxy's threads move between the two CPUs as the scheduler likes, and who shares a CPU
    with whom changes from round to round (session 24: 0.62, 1.60, 0.94 of HAProxy for the
    same code within 15 minutes)."""
    spec = os.environ.get('BENCH_PIN', '').strip().lower()
    if spec in ('0', 'off', 'no', 'none'):
        return None
    mine = sorted(os.sched_getaffinity(0))
    if spec in ('', '1', 'on', 'yes'):
        if len(mine) < 2:
            return None
        return {mine[-1]}, set(mine[:-1])
    proxy, _, load = spec.partition(':')
    if not proxy or not load:
        raise SystemExit('BENCH_PIN=%s: want PROXY_CPUS:LOAD_CPUS (e.g. 1:0) or off' % spec)
    return cpu_list(proxy), cpu_list(load)


PIN = pin_plan()
PINNED = False          # set by pin_self(): the processes started from here are pinned too
THREADS = int((os.environ.get('BENCH_THREADS') or '0').split()[0])    # 0: threads() decides


def threads():
    """mxgate's workers and HAProxy's nbthread: BENCH_THREADS, else the proxy's CPUs when
    pinned (1 on the default plan), else the machine's CPUs (the unpinned bench as before)."""
    return THREADS or (len(PIN[0]) if PINNED else (os.cpu_count() or 1))


def pin_self():
    """Pins this process (the clients; smtp-source and smtp-sink inherit it) to the load
    CPUs; from here on the proxies start on the proxy CPUs. No-op when unpinned."""
    global PINNED
    if PIN:
        os.sched_setaffinity(0, PIN[1])
        PINNED = True


def pin_text():
    if not PINNED:
        return 'unpinned'
    return 'pinned: proxy on CPU %s, clients and sink on CPU %s' % (
        ','.join(map(str, sorted(PIN[0]))), ','.join(map(str, sorted(PIN[1]))))


TMP = tempfile.mkdtemp(prefix='mxbench-core-')
procs = []
failures = []


def say(line=''):
    print(line, flush=True)


def summary(line):
    say(line)
    if SUMMARY:
        with open(SUMMARY, 'a') as f:
            f.write('bench_core: ' + line.strip() + '\n')


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(TMP, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def spawn(args, name, cpus=None):
    """Starts args, its output to TMP/name.log; with cpus (a set), on those CPUs only (every
    thread it makes inherits the mask)."""
    log = open(os.path.join(TMP, name + '.log'), 'ab')
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pre)
    p.logname = os.path.join(TMP, name + '.log')
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def raise_nofile(n=65536):
    """Children (mxgate, smtp-sink) inherit this; 10,000 sessions need about 10,000 each."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------------ peers
def start_sink(max_sessions=1024):
    port = free_port()
    args = ['smtp-sink', '-c', '-m', str(max_sessions)]
    if os.geteuid() == 0:
        args += ['-u', 'nobody']
    p = spawn(args + ['127.0.0.1:%d' % port, '1024'], 'sink-%d' % port)
    if not wait_port(port):
        raise RuntimeError('smtp-sink did not start')
    p.port = port
    return p


def sink_count(p):
    """smtp-sink -c rewrites 'sess=N quit=N mesg=N' after every '.', QUIT and session end."""
    with open(p.logname, 'rb') as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 400))
        m = re.findall(rb'mesg=(\d+)', f.read())
    return int(m[-1]) if m else 0


def sink_settle(p, expect, timeout=3.0):
    """The count once it reaches expect or stops moving."""
    end, last = time.time() + timeout, -1
    while time.time() < end:
        n = sink_count(p)
        if n >= expect:
            return n
        if n == last:
            time.sleep(0.2)
            if sink_count(p) == n:
                return n
        last = n
        time.sleep(0.05)
    return sink_count(p)


def start_haproxy(backend_port, name='haproxy'):
    """HAProxy in TCP mode (L4) in front of the sink: the baseline of a relay that does not
    parse SMTP. The same thread count as mxgate's (threads()) and, pinned, the same CPUs.
    None when not installed."""
    if not shutil.which('haproxy'):
        return None
    port = free_port()
    conf = os.path.join(TMP, name + '.cfg')
    with open(conf, 'w') as f:
        f.write('global\n'
                '  maxconn 4096\n'
                '  nbthread %d\n'
                'defaults\n'
                '  mode tcp\n'
                '  timeout connect 5s\n'
                '  timeout client 300s\n'
                '  timeout server 300s\n'
                'frontend smtp\n'
                '  bind 127.0.0.1:%d\n'
                '  default_backend sink\n'
                'backend sink\n'
                '  server sink 127.0.0.1:%d\n' % (threads(), port, backend_port))
    return wait_listening(spawn([shutil.which('haproxy'), '-db', '-f', conf], name, proxy_cpus()),
                          port, 'haproxy')


def proxy_cpus():
    return PIN[0] if PINNED else None


def wait_listening(p, port, what):
    """p once it listens on port (p.port set); else raises with the tail of its log."""
    if not wait_port(port):
        tail = open(p.logname, 'rb').read().decode('utf-8', 'replace').strip().splitlines()[-3:]
        raise RuntimeError('%s did not listen: %s' % (what, ' | '.join(tail)))
    p.port = port
    return p


def start_mxgate(backend_port, name='mxgate'):
    port = free_port()
    conf = os.path.join(TMP, name + '.yaml')
    with open(conf, 'w') as f:
        f.write('hostname: mx.bench.test\n'
                'workers: %d\n'
                'log_level: %s\n'
                'listen:\n'
                '  - address: "127.0.0.1:%d"\n'
                'limits:\n'
                '  max_connections: 20000\n'
                '  max_connections_per_ip: 20000\n'
                'backends:\n'
                '  servers:\n'
                '    - { address: "smtp://127.0.0.1:%d" }\n'
                % (threads(), os.environ.get('BENCH_LOG_LEVEL', 'warning'), port, backend_port))
    return wait_listening(spawn([BIN, '-c', conf], name, proxy_cpus()), port, 'mxgate')


def proc_status(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return 0


def proc_fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def io_calls(pid):
    """(read, write) system calls of all of pid's threads so far: /proc/PID/io's syscr and
    syscw, which count read/readv and write/writev (libuv's, mxgate's) but not
    recvfrom/sendto (HAProxy's, Python's); (0, 0) when unreadable."""
    try:
        with open('/proc/%d/io' % pid) as f:
            got = dict(line.split(':', 1) for line in f if ':' in line)
        return int(got['syscr']), int(got['syscw'])
    except (OSError, KeyError, ValueError):
        return 0, 0


def wait_ns(pid):
    """Time all of pid's threads have spent runnable but waiting for a CPU so far, in ns
    (per-task schedstat's second field: the run queue's delay)."""
    total = 0
    for f in glob.glob('/proc/%d/task/*/schedstat' % pid):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_ns(pid):
    """CPU time (user + system) of all of pid's threads so far, in ns (per-task schedstat)."""
    total = 0
    for f in glob.glob('/proc/%d/task/*/schedstat' % pid):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def children_cpu_ns():
    """CPU time of the children waited for so far (the smtp-source runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((r.ru_utime + r.ru_stime) * 1e9)


class CpuMeter:
    """CPU microseconds per message of the client, mxgate and the sink over one run. CPU time
    moves far less with the machine's load than msg/s does."""

    def __init__(self, sink, mx):
        self.sink, self.mx = sink, mx
        self.t = (children_cpu_ns(), cpu_ns(mx.pid) if mx else 0, cpu_ns(sink.pid))

    def per_msg(self, msgs):
        now = (children_cpu_ns(), cpu_ns(self.mx.pid) if self.mx else 0, cpu_ns(self.sink.pid))
        return tuple((b - a) / 1000.0 / msgs for a, b in zip(self.t, now))


# ------------------------------------------------------------------ 1. throughput
def smtp_source(port, msgs, size, extra=()):
    args = ['smtp-source', '-s', '20', '-m', str(msgs), '-l', str(size),
            '-f', 'a@example.test', '-t', 'b@example.test'] + list(extra) + ['127.0.0.1:%d' % port]
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, timeout=600)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError('smtp-source %s failed (rc %d): %s' % (' '.join(args[1:]), r.returncode,
                           r.stderr.decode('utf-8', 'replace').strip()[-200:]))
    return msgs / dt


def throughput_pair(sink, mx, label, msgs, size, extra=(), rounds=ROUNDS, hp=None):
    """Take turns direct / HAProxy / mxgate `rounds` times (the order rotates); print medians,
    ratios and the sink's count."""
    direct, through, viahp, ratios, hratios, cpu_d, cpu_x, cpu_h = [], [], [], [], [], [], [], []
    before = sink_count(sink)
    expect = before
    for i in range(rounds):
        turns = [('direct', sink.port, None), ('mxgate', mx.port, mx)] + ([('haproxy', hp.port, hp)] if hp else [])
        turns = turns[i % len(turns):] + turns[:i % len(turns)]
        got = {}
        for name, port, proc in turns:
            m = CpuMeter(sink, proc)
            got[name] = smtp_source(port, msgs, size, extra)
            expect += msgs
            sink_settle(sink, expect)
            {'direct': cpu_d, 'mxgate': cpu_x, 'haproxy': cpu_h}[name].append(m.per_msg(msgs))
        direct.append(got['direct'])
        through.append(got['mxgate'])
        ratios.append(got['mxgate'] / got['direct'])
        if hp:
            viahp.append(got['haproxy'])
            hratios.append(got['mxgate'] / got['haproxy'])
    got = sink_settle(sink, expect) - before
    sent = (3 if hp else 2) * rounds * msgs
    md, mx_ = statistics.median(direct), statistics.median(through)
    summary('%-28s mxgate %7.0f msg/s   direct %7.0f msg/s   ratio %.2f (median of %d; runs: %s)'
            % (label, mx_, md, statistics.median(ratios), rounds,
               ' '.join('%.0f/%.0f' % (a, b) for a, b in zip(through, direct))))
    if hp:
        summary('%-28s mxgate %7.0f msg/s   haproxy %6.0f msg/s   ratio %.2f vs HAProxy L4 (runs: %s)'
                % ('', mx_, statistics.median(viahp), statistics.median(hratios),
                   ' '.join('%.0f/%.0f' % (a, b) for a, b in zip(through, viahp))))
    cd = [statistics.median(v[i] for v in cpu_d) for i in range(3)]
    cx = [statistics.median(v[i] for v in cpu_x) for i in range(3)]
    # With every core busy, msg/s is inversely proportional to the CPU all processes spend
    # per message: this ratio is what the msg/s ratio tends to on a saturated machine, and
    # it moves much less with other load than the msg/s ratio does.
    summary('%-28s CPU us/msg: mxgate %.1f (+ client %.1f + sink %.1f)   direct: client %.1f + sink %.1f'
            '   CPU ratio %.2f' % ('', cx[1], cx[0], cx[2], cd[0], cd[2], (cd[0] + cd[2]) / sum(cx)))
    if hp:
        ch = [statistics.median(v[i] for v in cpu_h) for i in range(3)]
        summary('%-28s CPU us/msg: haproxy %.1f (+ client %.1f + sink %.1f)' % ('', ch[1], ch[0], ch[2]))
    say('%-28s sink received %d of %d messages sent%s'
        % ('', got, sent, '' if got == sent else '   <-- LOST %d' % (sent - got)))
    if got != sent:
        failures.append('%s: sink received %d of %d' % (label, got, sent))


def bench_throughput(sink, mx, hp):
    say('== 1. throughput: smtp-source -s 20 -m %d -l 4096, mxgate vs %sdirect into smtp-sink'
        % (MSGS, 'HAProxy (mode tcp) vs ' if hp else ''))
    throughput_pair(sink, mx, 'new connection per message', MSGS, 4096, hp=hp)
    throughput_pair(sink, mx, 'connection reuse (-d)', MSGS, 4096, ['-d'], hp=hp)


# ------------------------------------------------------------------ 2. idle sessions
def hold_sessions(port, n, pid):
    """Open n sessions, read each greeting; returns (greeted, sockets). Sockets stay open."""
    socks, greeted = [], 0
    sel = selectors.DefaultSelector()
    pending = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(('127.0.0.1', port))
        except BlockingIOError:
            pass
        except OSError as e:
            say('  connection %d failed: %s' % (i, e))
            s.close()
            break
        socks.append(s)
        pending[s.fileno()] = s
        sel.register(s, selectors.EVENT_READ)
        # Drain greetings as we go so neither side's backlog fills up.
        if i % 256 == 255:
            greeted += drain_greetings(sel, pending, 0)
    greeted += drain_greetings(sel, pending, 30)
    sel.close()
    return greeted, socks


def drain_greetings(sel, pending, timeout):
    got, end = 0, time.time() + timeout
    while pending:
        ev = sel.select(max(0.0, end - time.time()) if timeout else 0)
        if not ev:
            break
        for key, _ in ev:
            s = key.fileobj
            try:
                data = s.recv(512)
            except BlockingIOError:
                continue
            except OSError:
                data = b''
            sel.unregister(s)
            del pending[key.fd]
            if data.startswith(b'220'):
                got += 1
        if time.time() >= end and timeout:
            break
    return got


def measure_sessions(label, port, pid, n):
    time.sleep(0.5)
    r0, f0 = proc_status(pid, 'VmRSS'), proc_fds(pid)
    t = time.perf_counter()
    greeted, socks = hold_sessions(port, n, pid)
    dt = time.perf_counter() - t
    time.sleep(1.0)
    r1, f1 = proc_status(pid, 'VmRSS'), proc_fds(pid)
    for s in socks:
        s.close()
    time.sleep(1.5)
    r2, f2 = proc_status(pid, 'VmRSS'), proc_fds(pid)
    per = (r1 - r0) / max(1, greeted)
    return dict(label=label, greeted=greeted, n=n, r0=r0, r1=r1, r2=r2, f0=f0, f1=f1, f2=f2,
                per=per, fper=(f1 - f0) / max(1, greeted), secs=dt)


def bench_sessions(sink_port):
    say('== 2. %d idle sessions held open (greeting read), RSS and fds of the server process; '
        'reference: smtp-sink holding %d' % (SESSIONS, REF_SESSIONS))
    # Fresh processes: the growth is the sessions', not left-over throughput buffers.
    mx = start_mxgate(sink_port, 'mxgate-idle')
    ref = start_sink(REF_SESSIONS + 100)
    rows = []
    # The reference: smtp-sink (one process, poll loop, a big buffer per session) holding
    # fewer sessions -- it stalls at about 3,400 here -- so only its per-session cost compares.
    # The daemon sizes its sessions to the file limit (one descriptor each over 3/4 of it, proxy/main.c
    # main_fd_budget) and answers 421 past that, saying so once: event=fd_limit sessions=N.
    held = SESSIONS
    m = re.search(r'event=fd_limit .*?sessions=(\d+)', open(mx.logname, errors='replace').read())
    if m and int(m.group(1)) < held:
        held = int(m.group(1))
        say('%-10s the file limit holds %d sessions (event=fd_limit): holding %d, not %d'
            % ('', held, held, SESSIONS))
    for label, port, pid, n in (('mxgate', mx.port, mx.pid, held),
                                ('smtp-sink', ref.port, ref.pid, REF_SESSIONS)):
        r = measure_sessions(label, port, pid, n)
        rows.append(r)
        if r['greeted'] < r['n'] and label == 'mxgate':
            failures.append('%s: only %d of %d sessions greeted' % (label, r['greeted'], r['n']))
    for r in rows:
        summary('%-10s %5.1f KiB RSS/session   %.2f fds/session   (%d of %d greeted in %.1f s; '
                'RSS %d -> %d KiB, after close %d; fds %d -> %d, after close %d)'
                % (r['label'], r['per'], r['fper'], r['greeted'], r['n'], r['secs'], r['r0'], r['r1'],
                   r['r2'], r['f0'], r['f1'], r['f2']))
    say('%-10s RLIMIT_NOFILE of mxgate: %s' % ('', open('/proc/%d/limits' % mx.pid).read()
        .split('Max open files')[1].split()[0]))
    if mx.poll() is not None:
        failures.append('mxgate died holding sessions')
    stop(mx)
    stop(ref)


# ------------------------------------------------------------------ 3. latency
BODY = (b'From: a@example.test\r\nTo: b@example.test\r\nSubject: latency\r\n'
        b'Message-ID: <%d@bench.test>\r\n\r\n' + b'x' * 70 + b'\r\n') * 1


def smtp_ehlo(port, timeout=10):
    """A connection to port past the greeting and EHLO: (socket, unread buffer)."""
    s = socket.create_connection(('127.0.0.1', port), timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    code, buf = read_reply(s, b'')
    s.sendall(b'EHLO client.bench.test\r\n')
    code, buf = read_reply(s, buf)
    return s, buf


def read_reply(s, buf):
    while True:
        while b'\n' not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError('closed')
            buf += chunk
        line, buf = buf.split(b'\n', 1)
        if len(line) < 4 or line[3:4] != b'-':
            return int(line[:3]), buf


def one_session(port, i):
    """connect -> greeting, EHLO, MAIL, RCPT, DATA, body, QUIT reply; seconds, final code."""
    t = time.perf_counter()
    s = socket.create_connection(('127.0.0.1', port), 10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b''
    try:
        code, buf = read_reply(s, buf)
        for cmd in (b'EHLO client.bench.test', b'MAIL FROM:<a@example.test>',
                    b'RCPT TO:<b@example.test>', b'DATA'):
            s.sendall(cmd + b'\r\n')
            code, buf = read_reply(s, buf)
        s.sendall(BODY % i + b'.\r\n')
        final, buf = read_reply(s, buf)
        s.sendall(b'QUIT\r\n')
        code, buf = read_reply(s, buf)
    finally:
        s.close()
    return time.perf_counter() - t, final


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def bench_latency(sink, mx, hp):
    say('== 3. one-message session time (connect -> QUIT reply), %d sequential sessions each, '
        'interleaved' % LAT_N)
    targets = [('mxgate', mx.port), ('direct', sink.port)] + ([('haproxy', hp.port)] if hp else [])
    for i in range(20):     # warm every path (backend connections, caches)
        for _, port in targets:
            one_session(port, i)
    times = {label: [] for label, _ in targets}
    bad = 0
    for i in range(LAT_N):
        for label, port in targets:
            dt, code = one_session(port, i)
            bad += code != 250
            times[label].append(dt * 1000.0)
    mm, dm = statistics.median(times['mxgate']), statistics.median(times['direct'])
    m99, d99 = pct(times['mxgate'], 99), pct(times['direct'], 99)
    hpm = ('   haproxy %.3f ms' % statistics.median(times['haproxy'])) if hp else ''
    hp99 = ('   haproxy %.3f ms' % pct(times['haproxy'], 99)) if hp else ''
    summary('latency median  mxgate %.3f ms   direct %.3f ms   added %.3f ms%s' % (mm, dm, mm - dm, hpm))
    summary('latency p99     mxgate %.3f ms   direct %.3f ms   added %.3f ms%s' % (m99, d99, m99 - d99, hp99))
    say('latency p90 / max  mxgate %.3f / %.3f ms   direct %.3f / %.3f ms'
        % (pct(times['mxgate'], 90), max(times['mxgate']), pct(times['direct'], 90), max(times['direct'])))
    if bad:
        failures.append('latency: %d sessions did not end in 250' % bad)
        say('  %d sessions did not get 250 at end of data' % bad)


# ------------------------------------------------------------------ 4. extras
async def pipe_conn(port, count, body, counter, cycles=None):
    """One PIPELINING client connection: every transaction is one write
    (MAIL, RCPT, DATA), then the body with '.', whose reply is read together with the next
    group's (RFC 2920: the message content may start a group, DATA ends one). With cycles
    (a list), appends each message's round trip in seconds: from the write of its content
    and dot (with the next group) to the reply to its dot."""
    r, w = await asyncio.open_connection('127.0.0.1', port)

    async def reply():
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError('closed')
            if len(line) < 4 or line[3:4] != b'-':
                return int(line[:3])
    await reply()
    w.write(b'EHLO pipe.bench.test\r\n')
    await w.drain()
    await reply()
    env = b'MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n'
    w.write(env)
    for i in range(count):
        await w.drain()
        codes = [await reply() for _ in range(3)]
        if codes[2] != 354:
            raise RuntimeError('pipelined transaction got %r' % codes)
        t0 = time.perf_counter()
        w.write(body + b'.\r\n' + (env if i + 1 < count else b'QUIT\r\n'))
        await w.drain()
        code = await reply()
        if cycles is not None:
            cycles.append(time.perf_counter() - t0)
        if code == 250:
            counter[0] += 1
    await reply()
    w.close()


async def pipe_run(port, total, conns, body, ends=None, cycles=None):
    """Runs conns connections of total messages; appends to ends (a list, if given) the
    perf_counter() at which each connection finished, to cycles (a list, if given) every
    message's round trip (pipe_conn)."""
    counter = [0]
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]

    async def one(n):
        await pipe_conn(port, n, body, counter, cycles)
        if ends is not None:
            ends.append(time.perf_counter())
    await asyncio.gather(*(one(n) for n in per if n))
    return counter[0]


def pipelined(port, msgs, tail=None, cycles=None):
    """msg/s of the PIPELINING client; with tail (a list) appends the share of the run's time
    at which the first of its 20 connections was done (1.0: all ended together; 0.3: some
    connections were done after 30 % of the run and the rest took the other 70 %); with
    cycles (a list) appends every message's round trip in seconds (pipe_conn)."""
    body = (b'From: a@example.test\r\nTo: b@example.test\r\nSubject: pipelined\r\n\r\n'
            + (b'y' * 76 + b'\r\n') * 52)         # about 4 KiB, like smtp-source -l 4096
    ends = []
    t = time.perf_counter()
    ok = asyncio.run(asyncio.wait_for(pipe_run(port, msgs, 20, body, ends, cycles), 300))
    dt = time.perf_counter() - t
    if ok != msgs:
        raise RuntimeError('pipelined client: %d of %d accepted' % (ok, msgs))
    if tail is not None and ends:
        tail.append((min(ends) - t) / dt)
    return msgs / dt


def bench_extra(sink, mx, hp):
    say('== 4. 100 KiB messages (smtp-source -d -l 102400 -m %d) and PIPELINING clients' % BIG_MSGS)
    throughput_pair(sink, mx, '100 KiB messages (-d)', BIG_MSGS, 102400, ['-d'], hp=hp)
    # Each round: direct, then mxgate and HAProxy back to back, who goes first alternating
    # (mxgate haproxy, haproxy mxgate, ...: A B B A A B ...), so that each pair is measured
    # under the same load and neither always runs second; the ratio is the median of the
    # per-round ratios, printed with its spread (lowest-highest): one pair of runs on this
    # shared machine can be off by 30 % either way.
    # Each message's round trip (pipe_conn) too: per round its median (rtt) and the share of
    # the connections' waiting spent in waits of PIPE_STALL_S or more (stall). On a loaded
    # machine a round's msg/s is decided by a few such waits, in which most of the 20
    # connections wait together for tens to hundreds of ms (a process of the bench not run:
    # the client, the sink or the daemon), whichever daemon is measured; the median round
    # trip is what the daemon's own path costs, and it hardly moves with them.
    rate = {'direct': [], 'mxgate': [], 'haproxy': []}
    cpu = {'direct': [], 'mxgate': [], 'haproxy': []}
    rtt = {'direct': [], 'mxgate': [], 'haproxy': []}
    stall = {'direct': [], 'mxgate': [], 'haproxy': []}
    rq = {'direct': [], 'mxgate': [], 'haproxy': []}     # waiting for a CPU, us a message
    calls = []      # mxgate's (reads, writes) a message per round: 2 and 2 for a relay
    before = sink_count(sink)
    for i in range(PIPE_ROUNDS):
        pair = [('mxgate', mx.port, mx)] + ([('haproxy', hp.port, hp)] if hp else [])
        for name, port, proc in [('direct', sink.port, sink)] + (pair if i % 2 == 0 else pair[::-1]):
            c0, io0, w0 = cpu_ns(proc.pid), io_calls(proc.pid), wait_ns(proc.pid)
            cycles = []
            rate[name].append(pipelined(port, PIPE_MSGS, cycles=cycles))
            cpu[name].append((cpu_ns(proc.pid) - c0) / 1000.0 / PIPE_MSGS)
            rq[name].append((wait_ns(proc.pid) - w0) / 1000.0 / PIPE_MSGS)
            if name == 'mxgate':
                io1 = io_calls(proc.pid)
                calls.append(((io1[0] - io0[0]) / PIPE_MSGS, (io1[1] - io0[1]) / PIPE_MSGS))
            rtt[name].append(statistics.median(cycles) * 1000.0)
            stall[name].append(100.0 * sum(c for c in cycles if c >= PIPE_STALL_S) / sum(cycles))
    sent = (3 if hp else 2) * PIPE_ROUNDS * PIPE_MSGS
    got = sink_settle(sink, before + sent) - before
    direct, through, viahp = rate['direct'], rate['mxgate'], rate['haproxy']
    dratios = [a / b for a, b in zip(through, direct)]
    summary('%-28s mxgate %7.0f msg/s   direct %7.0f msg/s   ratio %.2f (median of %d, %s; own '
            'asyncio client, 20 conns)' % ('PIPELINING, ~4 KiB', statistics.median(through),
                                           statistics.median(direct), statistics.median(dratios),
                                           PIPE_ROUNDS, spread(dratios)))
    if hp:
        hratios = [a / b for a, b in zip(through, viahp)]
        summary('%-28s mxgate %7.0f msg/s   haproxy %6.0f msg/s   ratio %.2f vs HAProxy L4 (median of %d, '
                '%s; runs: %s)' % ('', statistics.median(through), statistics.median(viahp),
                                   statistics.median(hratios), PIPE_ROUNDS, spread(hratios),
                                   ' '.join('%.0f/%.0f' % (a, b) for a, b in zip(through, viahp))))
    summary('%-28s round trip a message (median): mxgate %.2f ms   direct %.2f ms%s' % (
        '', statistics.median(rtt['mxgate']), statistics.median(rtt['direct']),
        ('   haproxy %.2f ms   ratio %.2f vs HAProxy L4 (its round trip / mxgate\'s, median of %d, %s)' % (
            statistics.median(rtt['haproxy']), statistics.median([b / a for a, b in zip(rtt['mxgate'], rtt['haproxy'])]),
            PIPE_ROUNDS, spread([b / a for a, b in zip(rtt['mxgate'], rtt['haproxy'])])) if hp else '')))
    summary('%-28s waiting in waits >= %.0f ms: mxgate %s%s   direct %s' % (
        '', PIPE_STALL_S * 1000, ' '.join('%.0f%%' % x for x in stall['mxgate']),
        ('   haproxy ' + ' '.join('%.0f%%' % x for x in stall['haproxy'])) if hp else '',
        ' '.join('%.0f%%' % x for x in stall['direct'])))
    # The server's own CPU per message (all its threads): the sink's for direct, so that the
    # three read alike; mxgate and HAProxy each also pay the sink's share, not counted here.
    summary('%-28s CPU us/msg: mxgate %.1f (%s)%s   sink alone %.1f' % (
        '', statistics.median(cpu['mxgate']), spread(cpu['mxgate'], '%.1f'),
        ('   haproxy %.1f (%s)' % (statistics.median(cpu['haproxy']), spread(cpu['haproxy'], '%.1f'))
         if hp else ''), statistics.median(cpu['direct'])))
    summary('%-28s waiting for a CPU (run queue), us/msg: mxgate %.1f (%s)%s   sink alone %.1f' % (
        '', statistics.median(rq['mxgate']), spread(rq['mxgate'], '%.1f'),
        ('   haproxy %.1f (%s)' % (statistics.median(rq['haproxy']), spread(rq['haproxy'], '%.1f'))
         if hp else ''), statistics.median(rq['direct'])))
    summary('%-28s mxgate system calls a message: read %.2f, write/writev %.2f (client in, backend in; '
            'backend out, client out; the sessions\' greetings, EHLO and QUIT included: /proc/PID/io, per round %s)' % (
                '', statistics.median(c[0] for c in calls), statistics.median(c[1] for c in calls),
                ' '.join('%.2f/%.2f' % c for c in calls)))
    say('%-28s sink received %d of %d messages sent' % ('', got, sent))
    if got != sent:
        failures.append('pipelined: sink received %d of %d' % (got, sent))


def spread(vals, fmt='%.2f'):
    """'spread LO-HI' of a list of figures (one value: 'one run')."""
    if len(vals) < 2:
        return 'one run'
    return ('spread ' + fmt + '-' + fmt) % (min(vals), max(vals))


# ------------------------------------------------------------------ profile
def profile(sink, mx):
    """perf record -g on mxgate over a -d throughput run; prints the top self-time symbols."""
    if not shutil.which('perf'):
        say('== profile: perf not installed, skipped')
        return
    data = os.path.join(TMP, 'perf.data')
    say('== profile: perf record -g -p %d during smtp-source -d -m %d' % (mx.pid, MSGS * 5))
    rec = subprocess.Popen(['perf', 'record', '-g', '-F', '4000', '-o', data, '-p', str(mx.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    smtp_source(mx.port, MSGS * 5, 4096, ['-d'])
    rec.send_signal(signal.SIGINT)
    rec.wait(30)
    r = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--stdio', '-g', 'none',
                        '--percent-limit', '1', '--sort', 'dso,symbol'],
                       capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith('#')]
    say('\n'.join(lines[:25]))
    r = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--stdio', '-g', 'none',
                        '--sort', 'dso'],
                       capture_output=True, text=True, timeout=120)
    say('by DSO: ' + ', '.join(' '.join(l.split()[:2]) for l in r.stdout.splitlines()
                              if l.strip() and not l.startswith('#'))[:300])


# ------------------------------------------------------------------ main
def want(part):
    return not ONLY or part in ONLY


def main():
    if not os.access(BIN, os.X_OK):
        say('bench_core: %s is not an executable (build it: make)' % BIN)
        return 2
    for tool in ('smtp-source', 'smtp-sink'):
        if not shutil.which(tool):
            say('bench_core: %s not installed (postfix package)' % tool)
            return 2
    nofile = raise_nofile()
    pin_self()
    load = open('/proc/loadavg').read().split()[:3]
    say('bench_core: %s, %d CPUs, load %s, RLIMIT_NOFILE %d%s' % (BIN, os.cpu_count(), ' '.join(load),
        nofile, ', QUICK' if QUICK else ''))
    summary('setup: %s; mxgate workers %d, HAProxy nbthread %d (BENCH_PIN, BENCH_THREADS)'
            % (pin_text(), threads(), threads()))
    sink = start_sink()
    mx = start_mxgate(sink.port)
    hp = None
    if not shutil.which('haproxy'):
        say('bench_core: haproxy not installed (apt-get install haproxy): no HAProxy baseline')
    else:
        try:
            hp = start_haproxy(sink.port)
        except RuntimeError as e:
            say('bench_core: %s: the HAProxy baseline is left out' % e)
    parts = [('throughput', lambda: bench_throughput(sink, mx, hp)),
             ('sessions', lambda: bench_sessions(sink.port)),
             ('latency', lambda: bench_latency(sink, mx, hp)),
             ('extra', lambda: bench_extra(sink, mx, hp))]
    for name, fn in parts:
        if not want(name):
            continue
        t = time.time()
        try:
            fn()
        except Exception as e:      # one part failing does not stop the others
            failures.append('%s: %s' % (name, e))
            say('  %s failed: %s' % (name, e))
        say('   (%s took %.1f s; load average now %s)'
            % (name, time.time() - t, open('/proc/loadavg').read().split()[0]))
        if mx.poll() is not None:
            failures.append('mxgate exited (rc %s) during %s' % (mx.returncode, name))
            say('  mxgate exited; log tail: %s' % open(mx.logname, 'rb').read()[-500:])
            break
    if PROFILE and mx.poll() is None:
        profile(sink, mx)
    if failures:
        summary('PROBLEMS: ' + '; '.join(failures))
    return 1 if failures else 0


def on_term(signum, frame):
    # bench/run.sh's timeout sends SIGTERM: unwind so the peers we started are stopped.
    raise SystemExit(128 + signum)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, on_term)
    rc = 1
    try:
        rc = main()
    finally:
        cleanup()
    sys.exit(rc)
