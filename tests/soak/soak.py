#!/usr/bin/env python3
"""soak.py — mxgate under fire: steady SMTP load through the real daemon into three real
backends (Postfix's smtp-sink) while a fault schedule runs, then the accounting.

    make soak                       # SOAK_S=600 (seconds of load), build/mxgate
    make soak SOAK_S=60             # a short run (development)
    make soak-asan SOAK_S=600       # build-asan/mxgate at a quarter of the rate

Environment: SOAK_S (600), SOAK_RATE (sessions started per second: 20, ASan 5), SOAK_IDLE
(idle connections per burst: 5000), SOAK_MAX_CONN (mxgate's limits.max_connections: 2000),
SOAK_ASAN=1 (the ASan build), SOAK_SEED (the clients' random seed), SOAK_BURST_EVERY (fault
slots, ~15 s each, between bursts after the first: 15), MX_KEEP_TMP=1 (keep the
logs even when everything held; they are kept on a failure anyway).

The peers (tests/integration/mxtest.py starts and stops them): three smtp-sink backends,
redis-server with an append-only file (reputation and rate limits: its restart keeps the
history), clamd (on_error tempfail), the python3-milter test filter (on_error accept),
rbldnsd (a DNS block list), all on 127.0.0.1. Clients arrive through PROXY v2 with addresses
of their own: a pool of 20 regular senders (they earn a good reputation), fresh unknown
addresses, and a block-listed range.

Clients (asyncio, one event loop): plain sessions, STARTTLS, PIPELINING, a few large (2 MiB)
and 8-bit (BODY=8BITMIME) messages, one to three transactions a session, one or two
recipients, and clients that vanish mid-DATA (RST or FIN after half the message). Every
message carries a unique tag in its Message-ID.

The fault schedule (spread over the run; faults may overlap): a backend SIGKILLed and
restarted, one SIGSTOPped past the backend timeouts, one answering 450 after the final dot,
one stalling at the final dot past the timeouts; Redis, clamd, the milter and the DNS server
SIGKILLed and started again; SIGHUP every 15 s, valid and invalid configs alternating; bursts
of SOAK_IDLE idle connections from unknown addresses (more than max_connections), during
which regular and unknown clients are probed.

At the end it prints the figures and fails on any miss (docs/soak.md has the rules):
  - every tag a client saw 250 for is at a backend (none lost); every tag at most once,
    except the copies SMTP's at-least-once allows: a backend that took the whole message but
    whose reply never reached mxgate (its log: event=backend_tempfail code=0 for that backend
    in that session), after which mxgate replayed the transaction elsewhere; the same rule
    for a tag whose client got 4xx; no tag of a client that vanished mid-DATA or was refused
    is delivered; no client ever waits for a reply that never comes;
  - mxgate alive all along, exits 0 on SIGTERM, no sanitizer report;
  - RSS under load at the end within 1.3 x + 16 MiB of the RSS under load after the first
    burst (the allocator's high-water mark is reached by then);
  - open descriptors back to the baseline once the load stopped and idle backend
    connections timed out;
  - regular clients served during the overload bursts (>= 90 %), more often than unknown ones;
  - no store write dropped (mxgate_store_writes_dropped_total).
"""
import asyncio
import collections
import concurrent.futures
import os
import random
import re
import resource
import signal
import socket
import ssl
import struct
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
ASAN = os.environ.get('SOAK_ASAN', '') not in ('', '0')
if ASAN:
    os.environ.setdefault('MXGATE_BIN', os.path.join(SRC, 'build-asan', 'mxgate'))
    os.environ['MX_SANITIZED'] = '1'
    # a small quarantine keeps ASan's RSS about the daemon's own (a leak still shows)
    os.environ.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=1:quarantine_size_mb=16')
    os.environ.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
sys.path.insert(0, os.path.join(SRC, 'tests', 'integration'))
import mxtest as mt  # noqa: E402

SOAK_S = int(os.environ.get('SOAK_S', '600'))
RATE = float(os.environ.get('SOAK_RATE', '5' if ASAN else '20'))
IDLE = int(os.environ.get('SOAK_IDLE', '5000'))
MAX_CONN = int(os.environ.get('SOAK_MAX_CONN', '2000'))
SEED = int(os.environ.get('SOAK_SEED', str(int(time.time()))))
CLIENT_TIMEOUT = 240.0         # > max_attempts x (connect + data timeouts) + filter timeouts
HUP_EVERY = 15.0
BURST_EVERY = int(os.environ.get('SOAK_BURST_EVERY', '15'))   # fault slots between bursts
GOOD = ['198.18.1.%d' % i for i in range(1, 21)]
LISTED = '198.18.66.'
BACKEND_TIMEOUT = '4s'
rnd = random.Random(SEED)
PEER_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix='peers')


def say(s):
    mt.say(s)


# ----------------------------------------------------------------------------- the peers

class SinkPeer:
    """smtp-sink on a held port, dumping each transaction into DIR/ok (or DIR/rejected while it
    is told to refuse with 450 after the dot: smtp-sink dumps those too)."""

    def __init__(self, name):
        self.name = name
        self.port = mt.hold_port().port
        self.dir = os.path.join(mt.TMP, name)
        for sub in ('ok', 'rejected'):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            os.chmod(os.path.join(self.dir, sub), 0o1777)
        self.proc = None
        self.mode = 'ok'
        self.start()

    @property
    def url(self):
        return 'smtp://127.0.0.1:%d' % self.port

    def start(self, mode='ok'):
        self.mode = mode
        extra, sub = [], 'ok'
        if mode == 'reject_dot':
            extra, sub = ['-r', '.'], 'rejected'
        elif mode == 'stall_dot':
            extra = ['-W', '.:%d' % 8]
        argv = [mt.tool('smtp-sink'), '-u', 'nobody', '-d', os.path.join(self.dir, sub, 'msg.')] + extra + \
            ['127.0.0.1:%d' % self.port, '512']
        self.proc = mt.start_peer(argv, self.name, self.port)

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def restart(self, mode='ok'):
        self.kill()
        self.start(mode)


class Peer:
    """A peer process that can be SIGKILLed and started again on the same port."""

    def __init__(self, name, argv, port, udp_probe=None, start_timeout=60, proc=None):
        self.name, self.argv, self.port = name, argv, port
        self.udp_probe = udp_probe
        self.start_timeout = start_timeout
        self.proc = proc
        if proc is None:
            self.start()

    def start(self):
        if self.udp_probe:
            self.proc = mt.spawn(self.argv, self.name)
            if not mt.wait_for(lambda: self.udp_probe(self.port) or self.proc.poll() is not None, 20) \
                    or self.proc.poll() is not None:
                mt.peer_failed(self.name, '%s did not answer on udp %d' % (self.name, self.port))
        else:
            self.proc = mt.start_peer(self.argv, self.name, self.port, timeout=self.start_timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def dns_probe(port):
    q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x02bl\x04test\x00\x00\x01\x00\x01'
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        s.sendto(q, ('127.0.0.1', port))
        return s.recvfrom(512)[0][:2] == b'\x12\x34'
    except OSError:
        return False
    finally:
        s.close()


def start_peers():
    mt.need('smtp-sink', 'redis-server', 'clamd', 'rbldnsd')
    mt.need_python_milter()
    sinks = [SinkPeer('sink%d' % i) for i in range(3)]
    rport = mt.hold_port().port
    rdir = os.path.join(mt.TMP, 'redis')
    os.makedirs(rdir, exist_ok=True)
    redis = Peer('redis', [mt.tool('redis-server'), '--bind', '127.0.0.1', '--port', str(rport), '--save', '',
                           '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', rdir], rport)
    cl = mt.clamd()          # its config stays; restarted with the same argv and port
    clamd = Peer(cl.name, list(cl.args), cl.port, proc=cl)
    ml = mt.milter()
    milter = Peer(ml.name, list(ml.args), ml.port, proc=ml)
    # rbldnsd: UDP, no SO_REUSEADDR; the port stays free between its runs
    h = mt.hold_port(udp=True)
    dport = h.port
    ddir = os.path.join(mt.TMP, 'rbldnsd')
    os.makedirs(ddir, exist_ok=True)
    os.chmod(ddir, 0o755)
    with open(os.path.join(ddir, 'bl.test'), 'w') as f:
        f.write(':127.0.0.2:listed by the soak\n198.18.66.0/24\n')
    os.chmod(os.path.join(ddir, 'bl.test'), 0o644)
    h.release()
    dns = Peer('rbldnsd', [mt.tool('rbldnsd'), '-n', '-a', '-b', '127.0.0.1/%d' % dport, '-w', ddir,
                           'bl.test:ip4set:bl.test'], dport, udp_probe=dns_probe)
    return sinks, redis, clamd, milter, dns


# ----------------------------------------------------------------------------- the daemon

def daemon_config(sinks, redis, clamd, milter, dns, mport, variant=0):
    crt, key = mt.cert()
    url = 'redis://127.0.0.1:%d' % redis.port
    cfg = mt.config(
        [s.url for s in sinks],
        listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'proxy_protocol': True}],
        hostname='mx.soak.test', workers=2,
        backends={'connect_timeout': '2s', 'reply_timeout': BACKEND_TIMEOUT,
                  'data_timeout': BACKEND_TIMEOUT, 'max_attempts': 3,
                  'health_check': {'interval': '1s', 'timeout': '1s', 'fall': 1, 'rise': 1}},
        limits={'max_connections': MAX_CONN, 'max_connections_per_ip': 200,
                'max_message_size': '20M', 'command_timeout': '120s', 'data_timeout': '60s'},
        trusted_proxies=['127.0.0.1/32'],
        tls={'certificate': crt, 'key': key},
        dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'cache_size': 0},
        dnsbl={'lists': [{'zone': 'bl.test', 'weight': 3}], 'threshold': 3, 'action': 'reject', 'pass_ttl': '0s'},
        reputation={'store': url},
        ratelimit={'store': url, 'rules': [
            {'key': 'ip', 'count': 'concurrency', 'limit': 100},
            {'key': 'ip', 'count': 'messages', 'limit': '100000/1m', 'action': 'tempfail'}]},
        plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % clamd.port, 'on_error': 'tempfail', 'timeout': '10s'},
                 {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port, 'on_error': 'accept', 'timeout': '10s'}],
        rules={'files': [os.path.join(SRC, 'rules', 'default.rules')],
               'actions': {'add_header': 5 + variant}},
        metrics={'listen': '127.0.0.1:%d' % mport})
    cfg['log'] = {'level': 'info'}
    return cfg


def metrics_text(mport):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mport, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ''


def metric(text, name, label=None):
    """Sum of the samples of mxgate_<name> (with label="value" when given)."""
    total, seen = 0.0, False
    for m in re.finditer(r'^mxgate_%s(\{[^}]*\})? (\S+)$' % re.escape(name), text, re.M):
        if label and (m.group(1) is None or label not in m.group(1)):
            continue
        total += float(m.group(2))
        seen = True
    return total if seen else None


def proc_rss(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def proc_fds(pid):
    try:
        return sorted(os.listdir('/proc/%d/fd' % pid), key=int)
    except OSError:
        return []


def fd_kinds(pid):
    kinds = collections.Counter()
    for fd in proc_fds(pid):
        try:
            t = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        kinds[re.sub(r'\[\d+\]', '', re.sub(r'^/.*', 'file', t))] += 1
    return dict(kinds)


# ----------------------------------------------------------------------------- messages

LINE = b'The quick brown fox jumps over the lazy dog 0123456789 soak soak soak soak soak.\r\n'
DOTLINE = b'.a line that starts with a dot (stuffed on the wire)\r\n'
BIG_BODY = (LINE * 40 + DOTLINE) * ((2 << 20) // (len(LINE) * 40 + len(DOTLINE)))
UTF8_BODY = ('Grüße aus Köln, Ærø og Þórsmörk — ☃ ✉ 日本語のテキスト\r\n' * 30).encode()
TAG_RX = re.compile(rb'X-Soak-Tag: (\S+)')
QID_RX = re.compile(rb'\(mxgate\) with \S+ id ([A-Za-z0-9]+)')


def make_message(tag, variant):
    h = ['From: <sender@soak.example>', 'To: <rcpt@soak.test>', 'Subject: soak %s' % tag,
         'Message-ID: <%s@soak.example>' % tag, 'X-Soak-Tag: %s' % tag,
         'Date: Mon, 01 Jan 2024 00:00:00 +0000', 'MIME-Version: 1.0']
    if variant == 'utf8':
        h += ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit']
        body = UTF8_BODY
    elif variant == 'large':
        h += ['Content-Type: text/plain; charset=us-ascii']
        body = BIG_BODY
    else:
        h += ['Content-Type: text/plain; charset=us-ascii']
        body = LINE * rnd.randint(5, 40) + (DOTLINE if rnd.random() < 0.3 else b'')
    return ('\r\n'.join(h) + '\r\n\r\n').encode() + body


# ----------------------------------------------------------------------------- clients

class Stats:
    def __init__(self):
        self.tags = {}                      # tag -> dict(kind, src, stage, code, qid)
        self.greet = collections.Counter()  # greeting codes (421: shed / too many connections)
        self.codes4 = collections.Counter() # 4xx seen, by stage
        self.why4 = collections.Counter()   # 4xx seen, by reply text (numbers and names cut)
        self.codes5 = collections.Counter()
        self.sessions = 0
        self.errors = collections.Counter() # client-side: connect refused, silent (timeout), reset
        self.probes = {'good': [0, 0], 'unknown': [0, 0]}   # [served, tried]
        self.probe_fail = collections.Counter()             # (group, why) of probes not served
        self.n = 0

    def new_tag(self, kind, src):
        self.n += 1
        tag = 's%d-%06d' % (SEED % 100000, self.n)
        self.tags[tag] = {'kind': kind, 'src': src, 'stage': 'none', 'code': None, 'qid': None}
        return tag

    def end(self, tag, stage, code, text=''):
        t = self.tags[tag]
        t['stage'], t['code'] = stage, code
        if code != 250:
            t['why'] = reason_of(text)
        if code is not None and 400 <= code < 500:
            self.codes4[stage] += 1
            self.why4[reason_of(text)] += 1
        elif code is not None and code >= 500:
            self.codes5[stage] += 1
        if code == 250 and stage == 'eom':
            m = re.search(r'queued as (\S+)', text)
            t['qid'] = m.group(1) if m else None


def reason_of(text):
    """A reply's text without its numbers and names: '451 4.7.1 rate limit exceeded for ...'."""
    t = re.sub(r'\S*\d\S*', '#', (text or '').splitlines()[-1] if text else '')
    return ' '.join(t.split()[:8])


ST = Stats()


class Silent(Exception):
    """No reply within CLIENT_TIMEOUT: a promise broken (every failure is a reply)."""


class SMTP:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    async def reply(self):
        lines = []
        while True:
            try:
                line = await asyncio.wait_for(self.r.readline(), CLIENT_TIMEOUT)
            except asyncio.TimeoutError:
                raise Silent()
            if not line:
                return None, '\n'.join(lines)
            line = line.decode('utf-8', 'replace').rstrip('\r\n')
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                break
        try:
            return int(lines[-1][:3]), '\n'.join(lines)
        except ValueError:
            return None, '\n'.join(lines)

    async def cmd(self, line):
        self.w.write(line.encode() + b'\r\n')
        await self.w.drain()
        return await self.reply()


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


TLS = tls_context()


async def open_session(port, src, timeout=30):
    r, w = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', port, limit=1 << 20), timeout)
    w.write(mt.proxy_v2(src, port, sport=rnd.randint(1024, 65000)))
    return SMTP(r, w)


def rst_close(w):
    sock = w.get_extra_info('socket')
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    w.transport.abort()


async def transaction(s, kind, src, ext, variant):
    """One MAIL..DATA..dot on an open session. Returns (the session goes on, tag)."""
    tag = ST.new_tag(kind if variant == 'plain' else variant, src)
    rcpts = ['u%d@soak.test' % rnd.randint(1, 50)] + (['v@soak.test'] if rnd.random() < 0.3 else [])
    mail = 'MAIL FROM:<s%d@soak.example>' % rnd.randint(1, 99)
    if variant == 'utf8' and '8BITMIME' in ext:
        mail += ' BODY=8BITMIME'
    data = mt.stuff(make_message(tag, variant))
    got = []                              # every reply read, in order
    if kind == 'pipelining' and 'PIPELINING' in ext:
        s.w.write(''.join(x + '\r\n' for x in [mail] + ['RCPT TO:<%s>' % r for r in rcpts] + ['DATA']).encode())
        await s.w.drain()
        for _ in range(len(rcpts) + 2):
            got.append(await s.reply())
        mreply, rc, dreply = got[0], got[1:-1], got[-1]
    else:
        mreply = await s.cmd(mail)
        got.append(mreply)
        rc, dreply = [], (0, '')
        if mreply[0] == 250:
            for r in rcpts:
                rc.append(await s.cmd('RCPT TO:<%s>' % r))
                got.append(rc[-1])
            if any(c in (250, 251) for c, _ in rc):
                dreply = await s.cmd('DATA')
                got.append(dreply)
    if mreply[0] != 250:
        ST.end(tag, 'mail', *mreply)
    elif not any(c in (250, 251) for c, _ in rc):
        ST.end(tag, 'rcpt', *rc[-1])
    elif dreply[0] != 354:
        ST.end(tag, 'data', *dreply)
    if ST.tags[tag]['stage'] != 'none':
        if any(c is None for c, _ in got):
            return False, tag             # the connection went
        if dreply[0] != 354 or kind != 'pipelining':
            await s.cmd('RSET')
        return True, tag
    if variant in ('vanish_rst', 'vanish_fin'):
        s.w.write(data[:len(data) // 2])
        await s.w.drain()
        await asyncio.sleep(rnd.random() * 0.2)
        ST.end(tag, 'vanished', None)
        if variant == 'vanish_rst':
            rst_close(s.w)
        else:
            s.w.close()
        return False, tag
    s.w.write(data)
    await s.w.drain()
    code, text = await s.reply()
    ST.end(tag, 'eom', code, text)
    if code is None:
        ST.errors['eom_no_reply'] += 1     # the connection closed instead of an answer
    return code is not None, tag


async def client_session(port, kind, src, ntx, probe=None):
    """One client: greeting, EHLO, STARTTLS (kind tls), ntx transactions, QUIT. probe: the
    overload probe group this session counts in (served = its message got 250)."""
    ST.sessions += 1
    served = False
    why = 'no transaction'
    s = None
    try:
        try:
            s = await open_session(port, src)
        except (OSError, asyncio.TimeoutError):
            ST.errors['connect'] += 1
            return
        code, text = await s.reply()
        ST.greet[code] += 1
        if code != 220:
            why = 'greeting %s %s' % (code, reason_of(text))
            if code and 400 <= code < 500:
                ST.why4[why] += 1
            return
        code, text = await s.cmd('EHLO client%d.soak.example' % rnd.randint(1, 999))
        if code != 250:
            return
        if kind == 'tls':
            code, _ = await s.cmd('STARTTLS')
            if code != 220:
                ST.errors['starttls_refused'] += 1
                return
            await asyncio.wait_for(s.w.start_tls(TLS, server_hostname='mx.soak.test'), 30)
            code, text = await s.cmd('EHLO client.soak.example')
            if code != 250:
                return
        ext = text.upper()
        for i in range(ntx):
            variant = 'plain'
            x = rnd.random()
            if probe is None:
                if x < 0.01:
                    variant = 'large'
                elif x < 0.09:
                    variant = 'utf8'
                elif x < 0.12:
                    variant = rnd.choice(('vanish_rst', 'vanish_fin'))
            alive, tag = await transaction(s, kind, src, ext, variant)
            if probe is not None:
                t = ST.tags[tag]
                served = t['code'] == 250 and t['stage'] == 'eom'
                why = None if served else '%s %s %s' % (t['stage'], t['code'], t.get('why', ''))
            if not alive:
                break
        else:
            try:
                await asyncio.wait_for(s.cmd('QUIT'), 10)
            except (asyncio.TimeoutError, Silent):
                pass
    except Silent:
        ST.errors['silent'] += 1
    except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as e:
        ST.errors[type(e).__name__] += 1
    except asyncio.TimeoutError:
        ST.errors['tls_timeout'] += 1
    finally:
        if probe is not None:
            ST.probes[probe][1] += 1
            ST.probes[probe][0] += served
            if not served:
                ST.probe_fail[(probe, why)] += 1
        if s is not None:
            try:
                s.w.close()
            except Exception:
                pass


class Load:
    """Starts client sessions at RATE per second until stopped."""

    def __init__(self, port):
        self.port = port
        self.running = True
        self.tasks = set()
        self.unknown = 0

    def next_unknown(self):
        self.unknown += 1
        return '198.18.%d.%d' % (100 + (self.unknown // 250) % 100, 1 + self.unknown % 250)

    def launch(self, coro):
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def run(self):
        t0 = time.monotonic()
        n = 0
        while self.running:
            n += 1
            x = rnd.random()
            src = rnd.choice(GOOD) if x < 0.7 else (LISTED + str(rnd.randint(1, 254)) if x < 0.73
                                                    else self.next_unknown())
            y = rnd.random()
            kind = 'tls' if y < 0.25 else 'pipelining' if y < 0.5 else 'plain'
            if len(self.tasks) < 400:
                self.launch(client_session(self.port, kind, src, rnd.randint(1, 3)))
            else:
                ST.errors['client_backlog'] += 1
            await asyncio.sleep(max(0, t0 + n / RATE - time.monotonic()))

    async def drain(self, timeout):
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


# ----------------------------------------------------------------------------- faults

class Faults:
    def __init__(self, mx, sinks, redis, clamd, milter, dns, load, cfgs):
        self.mx, self.sinks, self.redis, self.clamd, self.milter, self.dns = mx, sinks, redis, clamd, milter, dns
        self.load = load
        self.cfgs = cfgs
        self.log = []
        self.bursts = []
        self.hups = [0, 0]

    def note(self, what):
        t = time.monotonic() - self.t0
        self.log.append((t, what))
        say('  [%6.1fs] %s' % (t, what))

    async def off_loop(self, fn, *a):
        # Not the loop's default executor: asyncio.run() ends its threads, and a peer started
        # from a thread dies with it (mxtest's spawn sets PR_SET_PDEATHSIG, which follows the
        # forking thread). PEER_THREADS lives as long as the process.
        return await asyncio.get_running_loop().run_in_executor(PEER_THREADS, fn, *a)

    async def backend_kill(self, i, down):
        self.note('sink%d SIGKILL, back in %.0fs' % (i, down))
        await self.off_loop(self.sinks[i].kill)
        await asyncio.sleep(down)
        await self.off_loop(self.sinks[i].start)
        self.note('sink%d restarted' % i)

    async def backend_stop(self, i, down):
        self.note('sink%d SIGSTOP for %.0fs (past the %s backend timeouts)' % (i, down, BACKEND_TIMEOUT))
        self.sinks[i].signal(signal.SIGSTOP)
        await asyncio.sleep(down)
        self.sinks[i].signal(signal.SIGCONT)
        self.note('sink%d SIGCONT' % i)

    async def backend_mode(self, i, mode, down):
        self.note('sink%d %s for %.0fs' % (i, {'reject_dot': 'answers 450 after the dot',
                                                'stall_dot': 'stalls 8s at the final dot'}[mode], down))
        await self.off_loop(self.sinks[i].restart, mode)
        await asyncio.sleep(down)
        await self.off_loop(self.sinks[i].restart, 'ok')
        self.note('sink%d normal again' % i)

    async def peer_kill(self, peer, down):
        self.note('%s SIGKILL, back in %.0fs' % (peer.name, down))
        await self.off_loop(peer.kill)
        await asyncio.sleep(down)
        await self.off_loop(peer.start)
        self.note('%s restarted' % peer.name)

    async def burst(self, n, hold):
        """n idle connections from unknown addresses (PROXY v2); once they are all open (the
        ones over 90 % of max_connections shed), regular and unknown clients are probed for
        `hold` seconds while 200 more unknown ones a second keep arriving; then the idle ones
        close."""
        self.note('burst: %d idle connections (max_connections %d), %.0fs' % (n, MAX_CONN, hold))
        conns, greet = [], collections.Counter()
        sem = asyncio.Semaphore(300)

        async def one(k):
            async with sem:
                try:
                    s = await open_session(self.mx.port, '198.19.%d.%d' % ((k // 250) % 250, 1 + k % 250),
                                           timeout=20)
                    code, _ = await asyncio.wait_for(s.reply(), 30)
                    greet[code] += 1
                    if code == 220:
                        conns.append(s)
                    else:
                        s.w.close()
                except (OSError, asyncio.TimeoutError, Silent) as e:
                    greet[type(e).__name__] += 1
        b0 = (list(ST.probes['good']), list(ST.probes['unknown']))
        t_open = time.monotonic()
        await asyncio.gather(*(one(k) for k in range(n)))
        self.note('burst in place after %.1fs: greetings %s; probing for %.0fs' % (
            time.monotonic() - t_open, dict(greet), hold))
        end = time.monotonic() + hold
        probes, pressure = set(), set()
        k, nxt = 0, n
        while time.monotonic() < end:
            k += 1
            # the overload goes on: 50 more unknown clients every 0.25 s keep the count at
            # the shedding threshold (those below it take a slot and stay idle)
            pressure.add(asyncio.ensure_future(asyncio.gather(*(one(j) for j in range(nxt, nxt + 50)))))
            nxt += 50
            for group, src in (('good', rnd.choice(GOOD)), ('unknown', '198.18.250.%d' % (1 + k % 250))):
                t = asyncio.ensure_future(client_session(self.mx.port, 'plain', src, 1, probe=group))
                probes.add(t)
            await asyncio.sleep(0.25)
        await asyncio.wait(list(probes) + list(pressure), timeout=120)
        for s in conns:
            try:
                s.w.close()
            except Exception:
                pass
        g = [ST.probes['good'][i] - b0[0][i] for i in range(2)]
        u = [ST.probes['unknown'][i] - b0[1][i] for i in range(2)]
        self.bursts.append({'greet': dict(greet), 'good': g, 'unknown': u})
        self.note('burst over: greetings %s; regular clients served %d/%d, unknown %d/%d' % (
            dict(greet), g[0], g[1], u[0], u[1]))

    async def hup_loop(self):
        valid = True
        while True:
            await asyncio.sleep(HUP_EVERY)
            if valid:
                self.hups[0] += 1
                await self.off_loop(self.mx.reload, self.cfgs(self.hups[0] % 3))
            else:
                self.hups[1] += 1
                await self.off_loop(self.write_bad)
            valid = not valid

    def write_bad(self):
        bad = [
            'listen: [\n  broken yaml',
            mt.to_yaml(self.cfgs(0)).replace('max_connections: %d' % MAX_CONN, 'max_connections: -5'),
            mt.to_yaml(self.cfgs(0)) + 'no_such_section: { a: 1 }\n',
        ][self.hups[1] % 3]
        with open(self.mx.conf + '.tmp', 'w') as f:
            f.write(bad)
        os.replace(self.mx.conf + '.tmp', self.mx.conf)
        self.mx.send_signal(signal.SIGHUP)

    async def run(self, t0, seconds):
        self.t0 = t0
        faults = [
            lambda d: self.backend_kill(0, 4),
            lambda d: self.peer_kill(self.redis, 6),
            lambda d: self.backend_stop(1, 8),
            lambda d: self.peer_kill(self.clamd, 4),
            lambda d: self.backend_mode(2, 'reject_dot', 8),
            lambda d: self.peer_kill(self.milter, 4),
            lambda d: self.backend_mode(0, 'stall_dot', 10),
            lambda d: self.peer_kill(self.dns, 6),
            lambda d: self.backend_kill(1, 4),
            lambda d: self.backend_stop(2, 8),
        ]
        hold = min(20.0, max(8.0, seconds * 0.15))
        # the first burst early (after a warm-up), then the faults, further bursts in between
        warm = min(8.0, seconds * 0.1)
        await asyncio.sleep(warm)
        await self.burst(IDLE, hold)
        self.after_first_burst = time.monotonic() - t0
        span = seconds - (time.monotonic() - t0) - 10
        nslots = max(len(faults), int(span / 15))
        spacing = span / nslots
        running = set()
        end = t0 + seconds - 10
        for i in range(nslots):
            if time.monotonic() >= end:
                break
            if i > 0 and i % BURST_EVERY == 0 and span > 13 * BURST_EVERY:
                # a burst on its own: a probe refused for a peer's outage is no overload figure
                if running:
                    await asyncio.wait(list(running), timeout=120)
                    running.clear()
                await self.burst(IDLE, hold)
            t_slot = time.monotonic()
            running.add(asyncio.ensure_future(faults[i % len(faults)](spacing)))
            running = {t for t in running if not t.done()}
            await asyncio.sleep(max(0, min(t_slot + spacing, end) - time.monotonic()))
        if running:
            await asyncio.wait(list(running), timeout=120)


# ----------------------------------------------------------------------------- accounting

def read_dumps(sinks):
    """tag -> [(backend url, qid)] from every dump of an accepting backend."""
    out = collections.defaultdict(list)
    unreadable = 0
    for s in sinks:
        d = os.path.join(s.dir, 'ok')
        for f in os.listdir(d):
            with open(os.path.join(d, f), 'rb') as fh:
                head = fh.read(16384)
            m, q = TAG_RX.search(head), QID_RX.search(head)
            if not m:
                unreadable += 1      # a dump cut short by SIGKILL before its headers
                continue
            out[m.group(1).decode()].append((s.url, q.group(1).decode() if q else None))
    return out, unreadable


LOG_RX = re.compile(r'^\S+ \S+ (\S+) event=(backend_tempfail|delivered|tempfail) (.*)$')


def read_log(text):
    """From mxgate's log: qid -> session id, qid -> the backend whose 250 was passed on, and
    (session id, backend) -> how often that backend's reply to the final dot was lost
    (event=backend_tempfail code=0: connection lost or timed out)."""
    qid_sid, qid_backend, lost = {}, {}, collections.Counter()
    for line in text.splitlines():
        m = LOG_RX.match(line)
        if not m:
            continue
        sid, ev, rest = m.groups()
        kv = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', rest))
        if ev == 'backend_tempfail':
            if kv.get('code') == '0':
                lost[(sid, kv.get('backend'))] += 1
        elif 'queue_id' in kv:
            qid_sid[kv['queue_id']] = sid
            if ev == 'delivered':
                qid_backend[kv['queue_id']] = kv.get('backend')
    return qid_sid, qid_backend, lost


def account(sinks, log_text):
    """The exactly-once rule (docs/soak.md): r counts, bad lists the misses by kind."""
    dumps, unreadable = read_dumps(sinks)
    qid_sid, qid_backend, lost = read_log(log_text)
    r = collections.Counter()
    bad = collections.defaultdict(list)
    for tag, t in ST.tags.items():
        copies = dumps.get(tag, [])
        ok250 = t['stage'] == 'eom' and t['code'] == 250
        r['client_250'] += ok250
        if not copies:
            if ok250:
                bad['lost (250 seen, at no backend)'].append(tag)
            continue
        if t['stage'] == 'vanished':
            bad['phantom (client vanished mid-DATA, delivered)'].append(tag)
            continue
        if t['stage'] != 'eom' or t['code'] is None:
            bad['delivered after %s at %s' % (t['code'], t['stage'])].append(tag)
            continue
        if ok250 and len(copies) == 1:
            r['exactly_once'] += 1
            continue
        # Every copy but the one behind the 250 (if any) must be a backend that took the whole
        # message while its reply never reached mxgate, in this very transaction (one qid).
        qids = {q for _, q in copies}
        qid = next(iter(qids))
        sid = qid_sid.get(qid)
        extra = collections.Counter(u for u, _ in copies)
        if ok250:
            extra[qid_backend.get(qid)] -= 1
        explained = len(qids) == 1 and sid is not None and all(
            n <= 0 or lost[(sid, u)] >= n for u, n in extra.items())
        if explained:
            r['dup_allowed' if ok250 else 'delivered_despite_4xx'] += 1
        else:
            bad['duplicate not explained by a lost backend reply' if ok250 else
                'delivered although the client got %s' % t['code']].append(tag)
    r['unreadable_dumps'] = unreadable
    r['tags'] = len(ST.tags)
    r['vanished'] = sum(1 for t in ST.tags.values() if t['stage'] == 'vanished')
    r['at_backends'] = sum(len(v) for v in dumps.values())
    unknown = set(dumps) - set(ST.tags)
    if unknown:
        bad['at a backend but never sent by a client'] = sorted(unknown)
    return r, bad


# ----------------------------------------------------------------------------- the run

async def warm_reputation(port, redis_port):
    """The regular senders earn their good name first: 6 accepted messages each (a score of
    6 / (6 + prior 3) = 0.67 >= good_threshold 0.5), then their records are in Redis."""
    def rec_a(ip):
        try:
            rec = mt.redis_cmd(redis_port, 'HGETALL', 'mxgate:rep:ip:' + ip) or []
        except (OSError, RuntimeError):
            return 0.0
        d = dict(zip(rec[::2], rec[1::2]))
        return float(d.get(b'a', 0))
    for _ in range(3):
        await asyncio.gather(*(client_session(port, 'plain', ip, 3) for ip in GOOD for _ in range(2)))
        end = time.monotonic() + mt.slack(15)
        while time.monotonic() < end and min(rec_a(ip) for ip in GOOD) < 5.5:
            await asyncio.sleep(0.2)
        if min(rec_a(ip) for ip in GOOD) >= 5.5:
            return
    mt.fail('the regular senders did not earn a good reputation: %s' % {ip: rec_a(ip) for ip in GOOD})


async def main_async(mx, sinks, redis, clamd, milter, dns, mport, cfgs):
    await warm_reputation(mx.port, redis.port)
    say('regular senders warmed up (6 accepted messages each)')
    t0 = time.monotonic()
    load = Load(mx.port)
    faults = Faults(mx, sinks, redis, clamd, milter, dns, load, cfgs)
    samples = []

    async def sampler():
        while True:
            samples.append((time.monotonic() - t0, proc_rss(mx.pid), len(proc_fds(mx.pid))))
            await asyncio.sleep(2)
    samp = asyncio.ensure_future(sampler())
    hup = asyncio.ensure_future(faults.hup_loop())
    lt = asyncio.ensure_future(load.run())
    await faults.run(t0, SOAK_S)
    rest = SOAK_S - (time.monotonic() - t0)
    if rest > 0:
        await asyncio.sleep(rest)
    rss_end_load = proc_rss(mx.pid)
    hup.cancel()
    load.running = False
    await lt
    say('load stopped after %.0fs; waiting for %d client sessions' % (time.monotonic() - t0, len(load.tasks)))
    await load.drain(CLIENT_TIMEOUT + 30)
    stuck = len(load.tasks)
    for t in list(load.tasks):
        t.cancel()
    samp.cancel()
    return faults, samples, rss_end_load, stuck


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE + MAX_CONN + 2000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(want, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        mt.fail('RLIMIT_NOFILE %d is below the %d descriptors the idle burst needs' % (
            resource.getrlimit(resource.RLIMIT_NOFILE)[0], want))
    say('soak: %ds, %.1f sessions/s, bursts of %d idle connections, max_connections %d, seed %d%s, logs in %s' % (
        SOAK_S, RATE, IDLE, MAX_CONN, SEED, ', ASan' if ASAN else '', mt.TMP))
    sinks, redis, clamd, milter, dns = start_peers()
    mport = mt.hold_port().port
    cfgs = lambda v: daemon_config(sinks, redis, clamd, milter, dns, mport, v)  # noqa: E731
    mx = mt.Mxgate(cfgs(0), 'mxgate')
    if not mt.wait_for(lambda: metrics_text(mport), 10):
        mt.fail('the metrics endpoint does not answer')
    time.sleep(mt.slack(1.0))      # the workers' store connections are up
    fd_base = proc_fds(mx.pid)
    fd_base_kinds = fd_kinds(mx.pid)
    faults, samples, rss_end_load, stuck = asyncio.run(
        main_async(mx, sinks, redis, clamd, milter, dns, mport, cfgs))

    # quiet: every peer back to normal, idle backend connections time out (30 s)
    for s in sinks:
        s.signal(signal.SIGCONT)
        if s.proc.poll() is not None or s.mode != 'ok':
            s.restart('ok')
    for p in (redis, clamd, milter, dns):
        if p.proc.poll() is not None:
            p.start()
    say('quiet: waiting for the sessions to end and idle backend connections to time out')
    mt.wait_for(lambda: metric(metrics_text(mport), 'sessions_active') == 0, 60)
    time.sleep(35)
    fds = [len(proc_fds(mx.pid))]
    for _ in range(5):
        time.sleep(1)
        fds.append(len(proc_fds(mx.pid)))
    fd_end = min(fds)
    fd_end_kinds = fd_kinds(mx.pid)
    rss_idle = proc_rss(mx.pid)
    text = metrics_text(mport)
    alive = mx.alive()
    log_text = mx.log()
    r, bad = account(sinks, log_text)

    # ---- figures
    t_first = getattr(faults, 'after_first_burst', 0)
    load_samples = [s for s in samples if s[1] and t_first + 5 <= s[0]]
    rss_start = load_samples[0][1] if load_samples else (samples[0][1] if samples else 0)
    rss_peak = max((s[1] for s in samples if s[1]), default=0)
    mib = lambda b: (b or 0) / 1048576.0  # noqa: E731
    good = [sum(b['good'][i] for b in faults.bursts) for i in range(2)]
    unk = [sum(b['unknown'][i] for b in faults.bursts) for i in range(2)]
    pct = lambda a: 100.0 * a[0] / a[1] if a[1] else 0.0  # noqa: E731
    dropped = {m: metric(text, 'store_writes_dropped_total', 'redis:' + m) for m in ('reputation', 'ratelimit')}
    sanitizer = mx.sanitizer_report()
    say('')
    say('==== soak figures (%s, %ds, seed %d) ====' % ('ASan build' if ASAN else 'normal build', SOAK_S, SEED))
    say('client sessions           %d (%.1f/s); greetings %s' % (ST.sessions, ST.sessions / max(1, SOAK_S), dict(ST.greet)))
    say('messages tagged           %d (vanished mid-DATA on purpose: %d)' % (r['tags'], r['vanished']))
    say('250 seen by clients       %d' % r['client_250'])
    say('at the backends           %d copies of %d tags; exactly once: %d' % (
        r['at_backends'], r['client_250'] + r['delivered_despite_4xx'], r['exactly_once']))
    say('at-least-once copies      %d after a lost backend reply (allowed), %d delivered although 4xx (allowed)' % (
        r['dup_allowed'], r['delivered_despite_4xx']))
    for k, v in sorted(bad.items()):
        say('MISS %-40s %d: %s' % (k, len(v), ' '.join(v[:8])))
    say('4xx given to clients      %d: %s; at greeting (421 shed / too many): %d' % (
        sum(ST.codes4.values()), dict(ST.codes4), sum(v for k, v in ST.greet.items() if k and 400 <= k < 500)))
    for why, n in ST.why4.most_common():
        say('    %6d  %s' % (n, why))
    say('5xx given to clients      %d: %s' % (sum(ST.codes5.values()), dict(ST.codes5)))
    say('client-side errors        %s' % dict(ST.errors))
    say('crashes                   %d (mxgate %s)' % (0 if alive else 1, 'alive' if alive else 'DEAD'))
    say('RSS                       start %.1f MiB (under load after the first burst), end %.1f MiB (under load), '
        'peak %.1f MiB, idle after %.1f MiB' % (mib(rss_start), mib(rss_end_load), mib(rss_peak), mib(rss_idle)))
    say('descriptors               baseline %d, end %d (%s vs %s)' % (len(fd_base), fd_end, fd_base_kinds, fd_end_kinds))
    say('overload (bursts)         regular clients served %d/%d (%.1f%%), unknown %d/%d (%.1f%%); %s' % (
        good[0], good[1], pct(good), unk[0], unk[1], pct(unk), [b['greet'] for b in faults.bursts]))
    for (group, why), n in sorted(ST.probe_fail.items()):
        say('    probe %-8s not served %3d: %s' % (group, n, why))
    say('reloads                   %d valid, %d invalid; mxgate: %d reloaded, %d refused' % (
        faults.hups[0], faults.hups[1], log_text.count('event=reloaded'), log_text.count('event=reload_failed')))
    say('store writes dropped      %s; queued now %s' % (dropped, metric(text, 'store_writes_queued')))
    say('mxgate counters           delivered %s, tempfailed %s, failovers %s, backend failures %s' % (
        metric(text, 'messages_delivered_total'), metric(text, 'messages_tempfailed_total'),
        metric(text, 'backend_failovers_total'), metric(text, 'backend_failures_total')))
    say('sanitizer reports         %d' % (0 if sanitizer is None else 1))
    say('faults                    %d' % len(faults.log))
    say('')

    # ---- verdicts
    mt.check(alive, 'mxgate alive after the soak (no crash)')
    mt.check(metric(text, 'messages_delivered_total') == r['client_250'],
             'mxgate counted as delivered what clients saw 250 for: %s vs %d' % (
                 metric(text, 'messages_delivered_total'), r['client_250']))
    mt.check(metric(text, 'sessions_active') == 0, 'no session left open (%s)' % metric(text, 'sessions_active'))
    mt.check(not bad, 'exactly-once accounting: no lost, phantom or unexplained duplicate message%s' % (
        '' if not bad else ': ' + '; '.join('%s %d' % (k, len(v)) for k, v in bad.items())))
    mt.check(r['client_250'] > 0, 'clients got 250s')
    mt.check(ST.errors['silent'] == 0, 'no client waited %ds for a reply that never came (%d)' % (
        CLIENT_TIMEOUT, ST.errors['silent']))
    mt.check(ST.errors['eom_no_reply'] == 0, 'no connection closed instead of an answer to the final dot (%d)' %
             ST.errors['eom_no_reply'])
    mt.check(stuck == 0, 'every client session ended (%d stuck)' % stuck)
    mt.check(rss_end_load <= rss_start * 1.3 + 16 * 1048576,
             'RSS growth bounded: %.1f MiB at the end vs %.1f MiB at the start (limit 1.3x + 16 MiB)' % (
                 mib(rss_end_load), mib(rss_start)))
    mt.check(fd_end <= len(fd_base), 'descriptors back to the baseline: %d vs %d' % (fd_end, len(fd_base)))
    mt.check(good[1] > 0 and pct(good) >= 90.0 and pct(good) > pct(unk),
             'under overload regular clients are served (%.1f%% of %d) more than unknown ones (%.1f%% of %d)' % (
                 pct(good), good[1], pct(unk), unk[1]))
    mt.check(all(v == 0 for v in dropped.values()), 'no store write dropped: %s' % dropped)
    mt.check(log_text.count('event=reload_failed') >= faults.hups[1] and log_text.count('event=reloaded') >= faults.hups[0],
             'every valid reload applied, every invalid one refused')
    mx.stop()
    mt.finish()


if __name__ == '__main__':
    main()
