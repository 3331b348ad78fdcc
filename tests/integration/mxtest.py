"""mxtest — the one harness of mxgate's integration tests (real binary, real peers, 127.0.0.1).

    import mxtest as mt
    mt.need('smtp-sink', 'swaks')            # missing: SKIP (exit 77); under CI=true a failure
    sink = mt.Sink()                         # smtp-sink -c -u nobody -d DUMPDIR/msg. on a held port
    be = mt.Backend(mode='drop_after_data')  # scripted Python SMTP/LMTP backend that can misbehave
    mx = mt.Mxgate(mt.config([sink.url, be.url], limits={'max_recipients': 5}))
    code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('id1'))
    mt.check(code == 250, 'delivered')       # records one assertion, prints ok/FAIL
    mt.check(len(sink.messages()) == 1, 'at the sink')
    mx.stop()                                # SIGTERM; checks exit 0 and no sanitizer report
    mt.finish()                              # exit 1 if any check failed (keeps TMP for a look)

Outcome: check() is the one assertion idiom (fail() ends the test at once). Every daemon
still running at finish() is stopped with SIGTERM and must exit 0 with no sanitizer report
in its stderr, so no test can forget it. skip() exits 77 (ctest SKIP_RETURN_CODE: shown as
skipped, never as passed); under CI=true a skip is a failure. A peer that is installed but
does not start fails the test with its log (never a skip).

Ports are race-free: a listen address '127.0.0.1:0' in config() and every peer starter take a
port held by a bound, never-listening socket (PortHold) for the whole test; the daemon binds
it next to the hold (SO_REUSEPORT / SO_REUSEADDR), and a restart on the same port is safe.

Environment (set by ctest): MXGATE_BIN (the daemon), MX_SOURCE_DIR, MX_BUILD_DIR;
MX_SANITIZED=1 under the ASan/UBSan build (timeouts get slack(), stderr is scanned for
sanitizer reports); MX_KEEP_TMP=1 keeps the temporary directory; CI=true: no skips.

API (everything else is internal):
  TMP, BIN, SRC, BUILD, SANITIZED, CI    paths and flags (TMP is removed at exit unless a check failed)
  need(*tools) (a name on PATH or an absolute path), need_python_milter(), skip(msg), fail(msg),
  check(cond, what), finish(), say(text)
  at_finish(fn): fn() runs when the test ends however it ends, processes stopped, before TMP
      goes (an umount, say: atexit handlers never run, the test leaves by os._exit)
  tool(name) -> path or None;  run_mxgate(*args) -> CompletedProcess (e.g. '-t', '-c', FILE)
  config_check(cfg, name) -> (exit status, output) of `mxgate -t` on a config dict or text
  slack(seconds) -> seconds scaled for sanitizer builds (upper bounds only); wait_for(pred, timeout)
  hold_port(udp) -> PortHold (.port, .release());  dead_port() -> a port where connects are refused
  blackhole(ip, port) -> .close(): a listener on ip:port whose SYNs go unanswered (a dead host)
  knocks(port) -> .count .wait(n, timeout) .close(): a listener on a down peer's held port that
      accepts and closes each connection, counting them (a client's reconnect attempts)
  free_port() (racy, avoid), wait_port(port, timeout, proc), spawn(argv, name) -> Popen (stopped at
      exit, output in TMP/name.log), stop_proc(p, sig), log_of(name), wait_log_of(name, regex, ...)
  config(servers, listen, hostname, workers, backends, limits, **top) -> dict;  to_yaml(obj) -> str
      (listen defaults to one 127.0.0.1:0 listener; port 0 becomes a held port; health checks
      every second that load cannot trip, a dead backend out in 2 s; short backend timeouts)
  proxied_config(servers, **kw): config() with a PROXY-protocol listener and high connection
      limits, for clients posing as 198.18.x.y (send_mail(proxy_src=...), Client(proxy_src=...))
  Mxgate(cfg, name) .port .ports .metrics_port .pid .log() .tail() .log_size() .wait_log(regex,
         timeout, start) .count_log(regex) .malformed_log_lines() .reload(cfg) .send_signal(sig)
         .alive() .kill() .stop(sig=SIGTERM, timeout, expect_rc=0, settle=0.3)
         (sig=None: wait for an exit under way)
  own_ca(name) -> (crt, key) a CA of the test's own;
      ca_leaf(name, ca, san) -> (crt, key) signed by it ('DNS:a.test,IP:127.0.0.1')
  Sink(lmtp, args, name) .port .url .messages() .files() .count() .kill() .start() .restart()
         (smtp-sink; messages() -> [{'attrs': X-* dump headers, 'rcpts', 'data' (LF endings)}])
  Backend(mode, lmtp, reject_rcpt, tempfail_rcpt, lmtp_codes, delay, xclient, expect_proxy,
          starttls, smtputf8, host, extensions, mail_reply, rcpt_replies) .port .url .messages
          .attempts .commands .connections .conn_commands .proxy_headers .tls_handshakes .sni
          .find(needle) .by_tag(tag) .open_connections() .stop()  (a message's 'conn': the
          number of the connection it came on, 1 for the first accepted; conn_commands:
          number -> that connection's command lines)
  peers (each on a held port, stopped at exit; an installed peer that does not start fails):
      redis(port) -> .port;  redis_cmd(port, *args) -> reply;  clamd() -> .port .sock;
      spamd(local_cf) -> .port (once it answers PING);  milter(stall, unix) -> .port .sock (tests/peers/mx_milter.py);
      bad_peer(mode) -> .port (tests/peers/bad_peer.py);  fake_rspamd() -> .port .requests;
      opendkim(domain, selector) -> .port .pubkey;  clamav_milter(clamd_port) -> .port;
      rbldnsd(zones) -> .port (UDP)
      nginx(modules, body, ports) -> nginx in the foreground with TMP/nginx/nginx.conf (the
          modules loaded, `body` after the events block), once every port in `ports` listens;
          .dir (its error.log is .dir/error.log)
  tls_client_hello() -> a ClientHello's bytes (made in memory)
  Client(port, tls, source, greet, proxy_src) .greeting .reply() .cmd(line) .send(bytes)
         .starttls() .ehlo() .pending(wait) .is_closed(wait) .close()
  send_mail(port, mail_from, rcpts, data, ehlo, client, source, proxy_src, timeout) -> Result
  teased(port, proxy_src) -> (first line, final 220 line, seconds between, open Client): the
      greeting read through the pregreet teaser;  patient_mail(port, proxy_src, tag) ->
      (first line, seconds waited, Result): waits it out, then one message
         ((code, text) with .stage connect|helo|mail|rcpt|data|eom|io and .rcpt_codes)
  message(tag, body, size, headers) -> bytes;  eicar_message(tag);  EICAR, GTUBE
  trickle(sock, pieces, every, limit) -> (closed, seconds, bytes read): a client (or peer) that
         sends a piece every `every` s and never finishes;  drip(sock, data, every, limit): a
         reply sent an octet at a time (slow peers, test_trickle*)
  stuff(data) -> dot-stuffed bytes + terminator;  proxy_v2(src, dst_port, sport, dst) -> bytes;
  proxy_hears(port, src, timeout) -> what a PROXY v2 client from src hears until the close
  message_ids(iterable of message bytes) -> set of tags put there by message()
  session_codes(port, proxy_src, lines, data, ehlo) -> the codes of one session's commands
  connect_answer(port, timeout) -> (socket, '220' | '421' | 'none'): what a new connection hears first
  swaks(port, *args) / smtp_source(port, *args) / s_client(port, data, starttls) -> CompletedProcess
  cert() -> (certfile, keyfile), a self-signed pair made once per run
  lmdb_meta(dir) -> (txnid, main root page) of dir/data.mdb;  lmdb_damage(dir) -> damages the
      map under a running daemon so every read fails (MDB_CORRUPTED), nothing out of bounds;
      Mxgate.metric(series) -> a /metrics value or None;  lmdb_lock_held(dir, fn, bound) ->
      whether fn() (on a thread) ended while lock.mdb's lock was held as a stuck opener holds it
  backend_timeouts(mx, url) -> {session id: backend timeouts it met} from mx's log
      (event=backend_error reason="...timeout"), of backend url only if given: a wait bounded
      by the relay's timers, seen as events (read after mx.stop(): the log is complete)
  mxgatectl() -> its path;  ctl(sock, *args, timeout) -> (rc, stdout, stderr);
      ctl_text(sock, *args, timeout) -> (rc, stdout + stderr) or (None, 'no answer') past timeout

Notes: smtp-sink's dump does not record XCLIENT ADDR/PORT (it announces only XCLIENT NAME
HELO and dumps the real peer address), so client identity is checked with Backend, which
announces XCLIENT NAME ADDR PORT PROTO HELO LOGIN and records what it gets.
"""
import atexit
import base64
import ctypes
import fcntl
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get('MX_SOURCE_DIR', os.path.abspath(os.path.join(HERE, '..', '..')))
BUILD = os.environ.get('MX_BUILD_DIR', os.path.join(SRC, 'build'))
BIN = os.environ.get('MXGATE_BIN', os.path.join(BUILD, 'mxgate'))
SANITIZED = os.environ.get('MX_SANITIZED', '') not in ('', '0')
CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
SKIP_CODE = 77     # ctest SKIP_RETURN_CODE
TMP = tempfile.mkdtemp(prefix='mxtest-%s-' % os.path.splitext(os.path.basename(sys.argv[0]))[0])
os.chmod(TMP, 0o755)

SANITIZER_PATTERNS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                      'ERROR: ThreadSanitizer', 'WARNING: ThreadSanitizer')

_procs = []          # Popen objects, stopped at exit
_daemons = []        # Mxgate objects, stopped (and checked) at exit
_servers = []        # Backend objects
_failures = []
_at_finish = []      # functions of the test's, run by _cleanup (at_finish)
_lock = threading.Lock()


# ----------------------------------------------------------------------------- outcome

def say(text):
    """print() that never raises (a closed stdout must not stop the cleanup)."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        pass


def check(cond, what):
    """Records one assertion and prints it as `ok   what` or `FAIL what`. Returns cond."""
    say(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        with _lock:
            _failures.append(what)
    return bool(cond)


def fail(msg):
    """Stops the test now as failed (logs stay in TMP)."""
    say('FAIL ' + msg)
    _failures.append(msg)
    finish()


def skip(msg):
    """Stops the test as skipped: exit 77 (ctest's SKIP_RETURN_CODE shows it as skipped, not
    passed). Under CI=true nothing may be skipped: a missing or broken peer is a failure."""
    if CI:
        fail('cannot skip under CI=true: ' + msg)
    say('SKIP: ' + msg)
    _cleanup()
    os._exit(SKIP_CODE)


def finish():
    """Stops every process; exits 0 when all checks held, else 1 (and keeps TMP)."""
    _stop_all()
    if _failures:
        say('%d check(s) failed; logs kept in %s' % (len(_failures), TMP))
        for f in _failures:
            say('  - ' + f)
        os.environ['MX_KEEP_TMP'] = '1'
        _cleanup()
        os._exit(1)
    say('all checks passed')
    _cleanup()
    os._exit(0)


def tool(name):
    """Path of a peer binary (PATH, /usr/sbin, /usr/bin) or None."""
    return shutil.which(name) or next((p for p in ('/usr/sbin/' + name, '/usr/bin/' + name)
                                       if os.access(p, os.X_OK)), None)


def need(*tools):
    """Skips the whole test (exit 77; a failure under CI=true) when the daemon or a peer
    binary is missing. A name with a slash is a path that must exist."""
    if not os.access(BIN, os.X_OK):
        skip('mxgate not built: ' + BIN)
    for t in tools:
        if ('/' in t and not os.access(t, os.X_OK)) or ('/' not in t and tool(t) is None):
            skip(t + ' not installed')


def build_plugin(name, src, defines=(), out=None):
    """Builds the C source src (a plugin including "plugin.h") as a shared object, the way
    docs/plugins.md tells a plugin author: TMP/plugins/NAME.so, or `out`, written as
    out + '.new' and renamed over it (a new file, as a package upgrade installs one).
    defines: '-DX=Y' arguments. Skips the test without a C compiler; a build that fails
    fails the check. Returns the path."""
    cc = shutil.which('cc') or shutil.which('gcc')
    if cc is None:
        skip('no C compiler to build the plugin')
    d = os.path.join(TMP, 'plugins')
    os.makedirs(d, exist_ok=True)
    c_file = os.path.join(d, name + '.c')
    with open(c_file, 'w') as f:
        f.write(src)
    so = out or os.path.join(d, name + '.so')
    uv = subprocess.run(['pkg-config', '--cflags', 'libuv'], capture_output=True, text=True).stdout.split()
    r = subprocess.run([cc, '-shared', '-fPIC'] + list(defines) + ['-I', os.path.join(SRC, 'plugins')] + uv +
                       [c_file, '-o', so + '.new'], capture_output=True, text=True)
    check(r.returncode == 0, 'built %s.so: %s' % (name, r.stderr.strip()))
    if r.returncode == 0:
        os.rename(so + '.new', so)
    return so


POSTFIX_MASTER = '/usr/lib/postfix/sbin/master'
POSTFIX_SERVICES = (
    ('cleanup', 'unix', 'n', '0', 'cleanup'), ('qmgr', 'unix', 'n', '1', 'qmgr'),
    ('rewrite', 'unix', '-', '-', 'trivial-rewrite'), ('bounce', 'unix', '-', '0', 'bounce'),
    ('defer', 'unix', '-', '0', 'bounce'), ('trace', 'unix', '-', '0', 'bounce'),
    ('verify', 'unix', '-', '1', 'verify'), ('proxymap', 'unix', '-', '-', 'proxymap'),
    ('error', 'unix', '-', '-', 'error'), ('retry', 'unix', '-', '-', 'error'),
    ('discard', 'unix', '-', '-', 'discard'), ('anvil', 'unix', '-', '1', 'anvil'),
    ('scache', 'unix', '-', '1', 'scache'), ('tlsmgr', 'unix', '-', '1', 'tlsmgr'),
    ('smtp', 'unix', '-', '-', 'smtp'), ('relay', 'unix', '-', '-', 'smtp'),
    ('postlog', 'unix-dgram', 'n', '1', 'postlogd'))


def need_postfix():
    """Postfix's master and its user, for postfix_instance (a skip, or under CI a failure)."""
    if not os.access(POSTFIX_MASTER, os.X_OK):
        skip('postfix master not found at ' + POSTFIX_MASTER)
    try:
        pwd.getpwnam('postfix')
    except KeyError:
        skip('no postfix user')


def postfix_instance(name, port, main, hostname=None, listener=None):
    """A private Postfix instance in TMP/name: smtpd on 127.0.0.1:port, the main.cf lines
    `main` after the instance's own (queue and data directories, loopback only, mail logged
    to its log, TMP/name.log); master in the foreground (-d), stopped at exit. listener:
    master.cf lines in place of the smtpd one ('{port}' for port), e.g. postscreen's."""
    pf = os.path.join(TMP, name)
    for d in ('conf', 'queue', 'data'):
        os.makedirs(os.path.join(pf, d), exist_ok=True)
    with open(os.path.join(pf, 'conf', 'main.cf'), 'w') as f:
        f.write('''compatibility_level = 3.6
queue_directory = {pf}/queue
data_directory = {pf}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {host}
mydestination =
maillog_file = /dev/stdout
smtputf8_enable = no
biff = no
'''.format(pf=pf, host=hostname or name + '.test') + main)
    with open(os.path.join(pf, 'conf', 'master.cf'), 'w') as f:
        f.write(listener.replace('{port}', str(port)) if listener else '127.0.0.1:%d inet n - n - - smtpd\n' % port)
        for svc, typ, priv, proc, cmd in POSTFIX_SERVICES:
            f.write('%s %s %s - n - %s %s\n' % (svc, typ, priv, proc, cmd))
    # `postfix check` creates the queue directories with their owners
    chk = subprocess.run(['postfix', '-c', os.path.join(pf, 'conf'), 'check'], capture_output=True, text=True)
    if chk.returncode != 0:
        fail('postfix check (%s): %s' % (name, chk.stdout + chk.stderr))
    os.chown(os.path.join(pf, 'data'), pwd.getpwnam('postfix').pw_uid, -1)
    master = spawn([POSTFIX_MASTER, '-c', os.path.join(pf, 'conf'), '-d'], name)
    if not wait_port(port, 15, master):
        fail('postfix %s did not listen on %d:\n%s' % (name, port, log_of(name)[-2000:]))


def need_python_milter():
    """python3-milter is importable by /usr/bin/python3 (the filters run under it)."""
    if not os.path.exists('/usr/bin/python3') or subprocess.run(
            ['/usr/bin/python3', '-c', 'import Milter'], capture_output=True).returncode != 0:
        skip('python3-milter not installed')


def slack(seconds):
    """Scales a timing allowance for the (much slower) sanitizer build."""
    return seconds * 4 if SANITIZED else seconds


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + slack(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.time() > end:
            return v
        time.sleep(step)


# ----------------------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG: a peer must not outlive a test killed by ctest's timeout.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def spawn(args, name, **kw):
    """Starts a process with stdout+stderr to TMP/name.log; it is stopped at exit."""
    log = open(os.path.join(TMP, name + '.log'), 'ab')
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         preexec_fn=_die_with_parent, **kw)
    log.close()
    _procs.append(p)
    return p


def _stop_proc(p, sig=signal.SIGTERM):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(5)
        except Exception:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass


def _stop_all():
    for d in list(_daemons):
        try:
            d.stop()     # a daemon still running at the end must exit 0, sanitizer-clean
        except Exception:
            _stop_proc(d.proc, signal.SIGKILL)
    for s in list(_servers):
        s.stop()
    for p in reversed(_procs):
        _stop_proc(p)


def at_finish(fn):
    """Registers fn() to run when the test ends, however it ends (finish, fail, skip, a
    signal, an uncaught exception, a plain exit): after every process was stopped, before TMP
    is removed, the last registered first, each once; one that raises is reported and the
    others still run. What atexit cannot do here: the test leaves by os._exit, which runs
    no atexit handler (an umount registered there never ran)."""
    _at_finish.append(fn)


def _run_at_finish():
    while _at_finish:
        fn = _at_finish.pop()
        try:
            fn()
        except Exception as e:     # the rest of the cleanup still runs
            say('note: cleanup %s failed: %s: %s' % (getattr(fn, '__name__', fn), type(e).__name__, e))


def _cleanup():
    _stop_all()
    for h in list(_holds):
        h.release()
    _run_at_finish()
    if not os.environ.get('MX_KEEP_TMP'):
        shutil.rmtree(TMP, ignore_errors=True)


def _on_signal(signum, frame):
    say('interrupted by signal %d' % signum)
    os.environ['MX_KEEP_TMP'] = '1'
    _cleanup()
    os._exit(2)


def _excepthook(etype, value, tb):
    import traceback
    try:
        traceback.print_exception(etype, value, tb)
    except (OSError, ValueError):
        pass
    for d in list(_daemons):
        if not d.alive():
            say('note: %s is not running (exit status %s); log tail:\n%s' % (d.name, d.proc.returncode, d.tail()))
    _failures.append('uncaught %s: %s' % (etype.__name__, value))
    finish()


atexit.register(_cleanup)
sys.excepthook = _excepthook
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


class PortHold:
    """A port reserved race-free: a socket bound to 127.0.0.1:0 (the kernel's choice) with
    SO_REUSEADDR and SO_REUSEPORT, never listening. While it is held no other bind(0) or
    outgoing connect gets the port, a connect to it is refused, and a daemon that sets
    SO_REUSEADDR or SO_REUSEPORT (mxgate, smtp-sink, redis, clamd, spamd, libmilter, our
    scripted peers) can still bind and listen on it. A TCP hold is kept for the whole test
    (a peer restarted on the same port is race-free too) and released at exit; a UDP hold
    must be released as soon as the peer is bound (datagrams could reach either socket)."""

    def __init__(self, udp=False):
        self.udp = udp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        _holds.append(self)

    def release(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self in _holds:
            _holds.remove(self)


_holds = []


def hold_port(udp=False):
    """A PortHold (.port, .release()); see PortHold."""
    return PortHold(udp)


def dead_port():
    """A port where nothing listens for the rest of the test (connects are refused): held,
    never released, so no other process can start listening there meanwhile."""
    return PortHold().port


class Knocks:
    """A listener on a held port (a peer's, while the peer is down) that accepts each connection
    and closes it at once, counting them: a client's reconnect attempts, seen as events (each
    fails as a refused connect would, at its handshake). .count, .wait(n, timeout), .close()
    (connects are refused again; the peer can be started on the port)."""

    def __init__(self, port):
        self.count = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind(('127.0.0.1', port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.close()
            self.count += 1

    def wait(self, n, timeout=10.0):
        return wait_for(lambda: self.count >= n, timeout)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=10)


def knocks(port):
    """Knocks(port): counts the connections made to a held port while its peer is down."""
    return Knocks(port)


class Blackhole:
    """A dead host's address on this machine: a listener on ip:port with backlog 0 whose
    accept queue is filled and never drained; Linux drops the SYNs that find it full (no RST,
    no answer), so a connect there waits until its own timeout. Skips the test on a kernel
    that answers them. .close() releases it."""

    def __init__(self, ip, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((ip, port))
        self.sock.listen(0)
        self.fill = []
        for _ in range(3):             # the queue holds backlog + 1; the rest wait unanswered
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((ip, port))
            self.fill.append(c)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect((ip, port))
            skip('blackhole: a SYN to a full accept queue was answered on this kernel')
        except socket.timeout:
            pass                        # dropped, as a dead host's
        except OSError as e:
            skip('blackhole: connect to the full listener failed at once (%s)' % e)
        finally:
            probe.close()

    def close(self):
        for c in self.fill:
            c.close()
        self.sock.close()


def blackhole(ip, port):
    """A Blackhole on ip:port (see there)."""
    return Blackhole(ip, port)


def free_port():
    """A port that was free a moment ago. Racy (another process may take it before you bind
    it): prefer listen address ':0' in config(), hold_port() or the peer starters below.
    Worse than a refused bind: another test's hold_port() (a bind(0)) may get the port in
    between, and mxgate or a peer binding it with SO_REUSEADDR then shares it with that
    test's daemon. Only for a port nothing binds (a config that `mxgate -t` reads)."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _listening_inodes(port):
    """The inodes of the TCP sockets listening on port (any address, IPv4 and IPv6)."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if len(col) > 9 and col[3] == '0A' and int(col[1].rsplit(':', 1)[1], 16) == port:
                inodes.add(col[9])
    return inodes


def _process_tree(pid):
    """pid and every process under it."""
    kids = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/stat' % d) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += kids.get(p, [])
    return tree


def port_listeners(port, pid):
    """(ours, others): whether a socket listening on port belongs to pid's process tree, and
    the inodes of those listening there that do not (another test's process on a port that
    was only free a moment ago, or one sharing it by SO_REUSEPORT)."""
    inodes = _listening_inodes(port)
    mine = set()
    blind = False
    for p in _process_tree(pid):
        try:
            fds = os.listdir('/proc/%d/fd' % p)
        except PermissionError:
            blind = True
            continue
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink('/proc/%d/fd/%s' % (p, fd))
            except PermissionError:
                blind = True
                continue
            except OSError:
                continue
            if link.startswith('socket:[') and link[8:-1] in inodes:
                mine.add(link[8:-1])
    if blind:
        # A peer that dropped privileges (smtp-sink -u nobody, postgrey) is not dumpable: root
        # without CAP_SYS_PTRACE (a default container) may not read its fds. Its sockets are
        # then unknown, not another's: wait_port falls back to the connect check.
        return True, set()
    return bool(mine), inodes - mine


def wait_port(port, timeout=10, proc=None, host='127.0.0.1'):
    """Waits until something accepts on host:port (this connects once). With proc (a peer
    that binds a free_port() itself), that something must be proc or a process under it,
    and nothing else may listen there: it gives up (False, said on stderr) as soon as proc
    exited (its bind lost the port) or another process listens on the port."""
    why = []

    def up():
        if proc is not None and proc.poll() is not None:
            why.append('exited (status %s)' % proc.returncode)
            return 'exited'
        if proc is not None:
            ours, others = port_listeners(port, proc.pid)
            if others:
                why.append('another process listens on it (socket inodes %s)' % sorted(others))
                return 'taken'
            if not ours:
                return False
        try:
            socket.create_connection((host, port), 0.5).close()
            return True
        except OSError:
            return False
    ok = wait_for(up, timeout) is True
    if not ok and why:
        sys.stderr.write('wait_port %d: the peer (pid %d) %s\n' % (port, proc.pid, why[-1]))
    return ok


# ----------------------------------------------------------------------------- config

def _yaml_scalar(v):
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def yaml_position(path, key, value):
    """'LINE:COL' of `key: "value"` in the config file path as mxgate's messages name it (the
    value's opening quote, 1-based), for asserting FILE:LINE:COL; None when not there."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            i = line.find('%s: %s' % (key, _yaml_scalar(value)))
            if i >= 0:
                return '%d:%d' % (n, i + len(key) + 3)
    return None


def to_yaml(obj, indent=0):
    """A tiny block-style YAML emitter (dicts, lists, scalars; strings always quoted)."""
    pad = '  ' * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append('%s%s:\n%s' % (pad, k, to_yaml(v, indent + 1)))
            elif isinstance(v, (dict, list)):
                out.append('%s%s: %s\n' % (pad, k, '{}' if isinstance(v, dict) else '[]'))
            else:
                out.append('%s%s: %s\n' % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 1)
                out.append('%s- %s' % (pad, inner.lstrip(' ')))
            else:
                out.append('%s- %s\n' % (pad, _yaml_scalar(v)))
    else:
        out.append(pad + _yaml_scalar(obj) + '\n')
    return ''.join(out)


def config(servers, listen=None, hostname='mx.test', workers=2, backends=None, limits=None,
           **top):
    """A config dict: servers (URLs or {'address':..} dicts), optional listen list, backends
    and limits sections merged over the defaults, any other top-level key as is. A listen
    address with port 0 ('127.0.0.1:0') gets a free port."""
    cfg = {'hostname': hostname, 'workers': workers}
    cfg['listen'] = listen if listen is not None else [{'address': '127.0.0.1:0'}]
    b = {'servers': list(servers),
         # Probes every second that load cannot trip: a loaded machine answers a probe late,
         # not never (timeout 10 s, scaled for sanitizers), and one failed probe is not a
         # fall (2 in a row). A dead backend still goes fast: a refused connect fails a
         # probe at once, 2 s to down. Tests of the health checks set theirs exactly.
         'health_check': {'interval': '1s', 'timeout': '%gs' % slack(10), 'fall': 2, 'rise': 1},
         'connect_timeout': '2s', 'reply_timeout': '10s', 'data_timeout': '10s'}
    b.update(backends or {})
    cfg['backends'] = b
    if limits:
        cfg['limits'] = dict(limits)
    cfg['log'] = {'level': 'info'}
    cfg.update(top)
    return cfg


def proxied_config(servers, **kw):
    """config() with one PROXY-protocol listener trusted from 127.0.0.1 and connection limits
    high enough for many clients: for tests whose clients pose as public addresses
    (198.18.0.0/15) through send_mail(proxy_src=...) or Client(proxy_src=...)."""
    kw.setdefault('listen', [{'address': '127.0.0.1:0', 'proxy_protocol': True}])
    kw.setdefault('trusted_proxies', ['127.0.0.1/32'])
    kw.setdefault('hostname', 'mx.example.test')
    limits = {'max_connections': 2000, 'max_connections_per_ip': 2000}
    limits.update(kw.pop('limits', None) or {})
    return config(servers, limits=limits, **kw)


def _fill_ports(cfg, holds):
    """Listen addresses ending in ':0' get a held port (see PortHold; appended to holds, to
    be released once the daemon listens). Returns the listen ports in order."""
    ports, listen = [], []
    for item in cfg.get('listen') or []:
        item = dict(item) if isinstance(item, dict) else {'address': item}
        if item['address'].endswith(':0'):
            h = hold_port()
            holds.append(h)
            item['address'] = item['address'][:-2] + ':%d' % h.port
        ports.append(int(item['address'].rsplit(':', 1)[1]))
        listen.append(item)
    cfg['listen'] = listen
    return ports


_LISTEN_ZERO = re.compile(r'(address:\s*"?(?:\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\])):0\b')


def _fill_ports_text(text, holds):
    """The same for a YAML text config: each `address: IP:0` gets a held port."""
    def sub(m):
        h = hold_port()
        holds.append(h)
        return '%s:%d' % (m.group(1), h.port)
    text = _LISTEN_ZERO.sub(sub, text)
    return text, [int(m) for m in re.findall(r'address:\s*"?[0-9.\[\]:a-f]*:(\d+)"?', text)]


_cert = None
_cert_lock = threading.Lock()


def cert():
    """A self-signed certificate and key for mx.test (made once per run, in TMP). Thread-safe:
    the first use is often two Backends' STARTTLS at once (the health probes of a pair), and
    two openssl runs writing the same files let one thread load the other's half-written key
    (a failed handshake, a backend down at its first probe: CI's flake of session 31)."""
    global _cert
    with _cert_lock:
        if _cert is None:
            crt, key = os.path.join(TMP, 'cert.pem'), os.path.join(TMP, 'key.pem')
            r = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
                                '-subj', '/CN=mx.test', '-keyout', key + '.new', '-out', crt + '.new'],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                fail('openssl req failed: ' + r.stderr.decode(errors='replace')[-200:])
            os.chmod(key + '.new', 0o644)
            os.rename(key + '.new', key)
            os.rename(crt + '.new', crt)
            _cert = (crt, key)
        return _cert


def _openssl(*args):
    r = subprocess.run(['openssl'] + list(args), capture_output=True, text=True, timeout=slack(60))
    if r.returncode != 0:
        fail('openssl %s: %s' % (args[0], r.stderr[-300:]))


def own_ca(name):
    """A CA of the test's own (openssl, RSA 2048, 2 days): (certificate path, key path) in TMP."""
    crt, key = os.path.join(TMP, name + '-ca.pem'), os.path.join(TMP, name + '-ca.key')
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=%s test CA' % name,
             '-keyout', key, '-out', crt)
    return crt, key


def ca_leaf(name, ca, san):
    """A certificate CN=name with subjectAltName san ('DNS:a.test,IP:127.0.0.1') signed by ca
    (own_ca()'s pair): (certificate path, key path) in TMP, the key readable by all."""
    crt, key, csr, ext = (os.path.join(TMP, name + x) for x in ('.pem', '.key', '.csr', '.ext'))
    with open(ext, 'w') as f:
        f.write('subjectAltName=%s\n' % san)
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=%s' % name, '-keyout', key, '-out', csr)
    _openssl('x509', '-req', '-in', csr, '-CA', ca[0], '-CAkey', ca[1], '-CAcreateserial', '-days', '2',
             '-extfile', ext, '-out', crt)
    os.chmod(key, 0o644)
    return crt, key


# ----------------------------------------------------------------------------- the daemon

class Mxgate:
    """mxgate -c TMP/name.yaml in the foreground, stderr to TMP/name.log."""

    def __init__(self, cfg, name='mxgate', args=(), wait=True):
        self.name = name
        self.conf = os.path.join(TMP, name + '.yaml')
        self.logpath = os.path.join(TMP, name + '.log')
        self.ports = []
        self._holds = []     # the ':0' listen ports, held for the whole test (restarts too)
        self._write(cfg)
        self.proc = spawn([BIN, '-c', self.conf] + list(args), name)
        self.pid = self.proc.pid
        self.rc = None
        _daemons.append(self)
        # The wait ends at event=started or the daemon's exit; the bound only decides when a
        # daemon alive but silent is declared stuck (a start took 15.3 s at load 17).
        if wait and not wait_for(lambda: self.wait_log(r'event=started', 0) or not self.alive(), 60) \
                or not self.alive():
            fail('%s did not start (rc=%s):\n%s' % (name, self.proc.poll(), self.tail()))

    def _write(self, cfg):
        if isinstance(cfg, dict):
            self.ports = _fill_ports(cfg, self._holds)
            cfg = to_yaml(cfg)
        else:
            cfg, self.ports = _fill_ports_text(cfg, self._holds)
        with open(self.conf + '.tmp', 'w') as f:
            f.write(cfg)
        os.replace(self.conf + '.tmp', self.conf)
        self.cfg_text = cfg

    @property
    def port(self):
        return self.ports[0]

    @property
    def metrics_port(self):
        """The port the metrics listener bound (its config may say 127.0.0.1:0)."""
        m = self.wait_log(r'event=metrics_listen listen=\S+ port=(\d+)', timeout=10)
        return int(m.group(1)) if m else None

    def metric(self, series):
        """The value of one /metrics series ('greylist_errors_total{reason="store_read"}',
        without the mxgate_ prefix) as a float, or None (no such series, no answer)."""
        status, text = http_get(self.metrics_port, '/metrics')
        m = re.search(r'^mxgate_%s (\S+)$' % re.escape(series), text, re.M) if status == 200 else None
        return float(m.group(1)) if m else None

    def log(self):
        try:
            with open(self.logpath, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def tail(self, n=30):
        return '\n'.join(self.log().splitlines()[-n:])

    def log_size(self):
        return len(self.log())

    def wait_log(self, regex, timeout=10, start=0):
        """Waits for regex in the log (from character offset start); returns the match or None."""
        rx = re.compile(regex)

        def look():
            return rx.search(self.log(), start)
        return wait_for(look, timeout)

    def count_log(self, regex, start=0):
        return len(re.findall(regex, self.log()[start:]))

    LOG_LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (debug|info|warning|error) (-|[0-9A-Za-z]+) '
                          r'event=[a-z_]+( [a-z_]+=("(?:[^"\\]|\\.)*"|\S*))*$')

    def malformed_log_lines(self):
        """Log lines not in the contract's form `TIME LEVEL SESSION event=NAME key=value...`.
        Complete lines only: a line the daemon is writing while the log is read has no end yet."""
        text = self.log()
        lines = text.split('\n')[:-1]   # the piece after the last newline is not a line yet
        return [l for l in lines if l and not self.LOG_LINE.match(l)]

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def reload(self, cfg):
        """Rewrites the config and sends SIGHUP. In a dict config, listen addresses with port 0
        (or no listen list) keep the ports the daemon already listens on."""
        if isinstance(cfg, dict):
            if 'listen' not in cfg:
                cfg['listen'] = [{'address': '127.0.0.1:%d' % p} for p in self.ports]
            for i, item in enumerate(cfg['listen']):
                if isinstance(item, str):
                    item = cfg['listen'][i] = {'address': item}
                if item['address'].endswith(':0') and i < len(self.ports):
                    item['address'] = item['address'][:-2] + ':%d' % self.ports[i]
        self._write(cfg)
        self.send_signal(signal.SIGHUP)

    def sanitizer_report(self):
        text = self.log()
        for pat in SANITIZER_PATTERNS:
            i = text.find(pat)
            if i >= 0:
                return text[max(0, i - 200):i + 1500]
        return None

    def stop(self, sig=signal.SIGTERM, timeout=None, expect_rc=0, settle=0.3):
        """Waits `settle` seconds (pooled backend connections go idle: see the known
        drain-overrun bug in test_core_ops.py), sends sig, waits up to timeout, checks the exit
        status (expect_rc, None = any) and the log for sanitizer reports. Returns the status.
        sig=None sends nothing: waits for an exit already under way (after send_signal)."""
        if timeout is None:
            timeout = slack(15)
        if settle and self.alive():
            time.sleep(settle)
        if self.alive():
            try:
                if sig is not None:
                    os.kill(self.pid, sig)
                self.rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.rc = 'timeout'
        else:
            self.rc = self.proc.returncode
        if self in _daemons:
            _daemons.remove(self)
        rep = self.sanitizer_report()
        check(rep is None, '%s: no sanitizer report in its stderr%s' % (self.name, '' if rep is None else ':\n' + rep))
        if expect_rc is not None:
            check(self.rc == expect_rc, '%s exits %s on signal %s (got %s)%s' % (
                self.name, expect_rc, sig, self.rc, '' if self.rc == expect_rc else '\n' + self.tail(15)))
        elif isinstance(self.rc, int) and self.rc < 0 and self.rc != -signal.SIGKILL:
            check(False, '%s died from signal %d\n%s' % (self.name, -self.rc, self.tail(15)))
        return self.rc

    def kill(self):
        self.stop(signal.SIGKILL, expect_rc=None, settle=0)


def mxgatectl():
    """The mxgatectl built beside mxgate (the test is skipped when it is not built)."""
    path = os.path.join(os.path.dirname(BIN), 'mxgatectl')
    if not os.access(path, os.X_OK):
        skip('mxgatectl not built: ' + path)
    return path


def ctl(sock, *args, timeout=30):
    """mxgatectl -s sock ARGS...: (exit status, stdout, stderr)."""
    r = subprocess.run([mxgatectl(), '-s', sock] + list(args), capture_output=True, text=True,
                       timeout=slack(timeout))
    return r.returncode, r.stdout, r.stderr


def ctl_text(sock, *args, timeout=20):
    """mxgatectl -s sock ARGS...: (exit status, stdout + stderr stripped), or (None, 'no
    answer') when it does not answer within timeout (a verb that may wait: the wait is a
    finding, not an exception)."""
    try:
        r = subprocess.run([mxgatectl(), '-s', sock] + list(args), capture_output=True, text=True,
                           timeout=slack(timeout))
    except subprocess.TimeoutExpired:
        return None, 'no answer'
    return r.returncode, (r.stdout + r.stderr).strip()


_BACKEND_TIMEOUT = re.compile(r'^\S+ \S+ ([0-9A-Za-z]+) event=backend_error backend=(\S+) .*?reason="[^"]*timeout',
                             re.M)


def backend_timeouts(mx, url=None):
    """{session id: backend timeouts it met} from mx's log (of backend url only, if given).
    Each ends at a configured timeout: a client's wait is at most that many of them, counted
    rather than clocked (a loaded machine answers late)."""
    per = {}
    for sid, backend in _BACKEND_TIMEOUT.findall(mx.log()):
        if url is None or backend == url:
            per[sid] = per.get(sid, 0) + 1
    return per


def rcpt_code(port, proxy_src, mail_from, rcpt, ehlo='mail.example.org'):
    """One session from proxy_src (PROXY header): EHLO, MAIL, one RCPT, QUIT; the RCPT's code
    (greylisting and the RCPT checks without sending a message)."""
    c = Client(port, proxy_src=proxy_src)
    c.ehlo(ehlo)
    c.cmd('MAIL FROM:<%s>' % mail_from)
    code = c.cmd('RCPT TO:<%s>' % rcpt)[0]
    c.cmd('QUIT')
    c.close()
    return code


LMDB_PAGE = 4096
LMDB_P_INVALID = 0xffffffffffffffff


def lmdb_meta(path):
    """(txnid, main root page) of the newer of the two meta pages of path/data.mdb, or None."""
    with open(os.path.join(path, 'data.mdb'), 'rb') as f:
        head = f.read(2 * LMDB_PAGE)
    best = None
    for m in (0, LMDB_PAGE):
        # page header 16 bytes; MDB_meta: magic, version (u32), address, mapsize (u64),
        # two MDB_db of 48 bytes (FREE, MAIN; md_root at +40), last_pg, txnid (u64)
        magic, = struct.unpack_from('<I', head, m + 16)
        if magic != 0xBEEFC0DE:
            continue
        root, = struct.unpack_from('<Q', head, m + 16 + 24 + 48 + 40)
        txnid, = struct.unpack_from('<Q', head, m + 16 + 24 + 96 + 8)
        if best is None or txnid > best[0]:
            best = (txnid, root)
    return best


def lmdb_damage(path, what='the map'):
    """Once a record is in path's map (waited for), gives its main B-tree's root page flags
    that are neither branch nor leaf: every read of the map fails (MDB_CORRUPTED) without
    LMDB touching anything out of bounds. Checks and returns the root page."""
    check(wait_for(lambda: (lmdb_meta(path) or (0, LMDB_P_INVALID))[1] != LMDB_P_INVALID,
                   timeout=slack(10)), 'a record of %s is written to the map' % what)
    txnid, root = lmdb_meta(path)
    with open(os.path.join(path, 'data.mdb'), 'r+b') as f:
        f.seek(root * LMDB_PAGE + 10)            # mp_flags
        f.write(struct.pack('<H', 0))
    check(lmdb_meta(path) == (txnid, root), 'the map of %s is damaged under the running daemon (root page %d)'
          % (what, root))
    return root


def lmdb_lock_held(path, fn, bound):
    """Holds LMDB's lock on directory path (made if missing) as another process stopped
    inside its own mdb_env_open would: fcntl's exclusive lock on byte 0 of lock.mdb, under
    which every mdb_env_open of path waits. Runs fn() on a thread meanwhile, waits at most
    bound seconds for it, then lets go and waits for fn to end. Returns whether fn ended
    while the lock was held."""
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, 'lock.mdb'), os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
    th = threading.Thread(target=fn)
    th.start()
    th.join(bound)
    ended = not th.is_alive()
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)        # lets go: a blocked main loop goes on
    os.close(fd)
    th.join()
    return ended


def connect_answer(port, timeout=10):
    """Connects to 127.0.0.1:port and reads what the server says first: (socket, '220', '421'
    or 'none' for a connection closed or reset unheard, or silent past timeout)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    try:
        line = s.recv(512)
    except (ConnectionResetError, socket.timeout):
        line = b''
    return s, line[:3].decode() if line[:3] in (b'220', b'421') else 'none'


def session_codes(port, proxy_src, lines, data=None, ehlo='mta.sender.example'):
    """One session from proxy_src (PROXY header): EHLO, each command line, the message data
    (dot-stuffed) when the last line got 354, QUIT; the codes after EHLO's, in order."""
    c = Client(port, proxy_src=proxy_src)
    out = [c.ehlo(ehlo)[0]]
    for line in lines:
        out.append(c.cmd(line)[0])
    if data is not None and out[-1] == 354:
        c.send(stuff(data))
        out.append(c.reply()[0])
    c.cmd('QUIT')
    c.close()
    return out[1:]


def case_wanted(name):
    """True unless MX_POOL_ONLY=name,name (run only those cases of a test) leaves name out."""
    only = os.environ.get('MX_POOL_ONLY')
    return not only or name in only.split(',')


def backends_rows(ctl, sock):
    """`mxgatectl backends --json` over the control socket sock: {url: row}, {} when the
    daemon does not answer with JSON."""
    p = subprocess.run([ctl, '-s', sock, '--json', 'backends'], capture_output=True, text=True, timeout=30)
    try:
        r = json.loads(p.stdout)
    except ValueError:
        return {}
    r = r.get('backends', r) if isinstance(r, dict) else r
    return {x.get('url'): x for x in r}


def run_mxgate(*args, timeout=30):
    """Runs the binary once (e.g. -V, -t -c FILE); returns CompletedProcess (text)."""
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=slack(timeout))


def config_check(cfg, name='check'):
    """`mxgate -t -c TMP/name.yaml` on cfg (a dict from config() or YAML text); returns
    (exit status, stdout + stderr). Errors read `TMP/name.yaml:LINE:COL: key: reason`."""
    path = os.path.join(TMP, name + '.yaml')
    with open(path, 'w') as f:
        f.write(to_yaml(cfg) if isinstance(cfg, dict) else cfg)
    r = run_mxgate('-t', '-c', path)
    return r.returncode, r.stdout + r.stderr


# ----------------------------------------------------------------------------- smtp-sink

_sinkdir_made = False


class Sink:
    """Postfix smtp-sink on a free port, one dump file per message (-d DIR/msg.)."""

    def __init__(self, lmtp=False, args=(), name=None, port=None, backlog=256):
        self.port = port or hold_port().port
        self.name = name or 'sink%d' % self.port
        self.dir = os.path.join(TMP, self.name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o1777)   # smtp-sink writes its dumps as user nobody
        self.lmtp = lmtp
        self.args = list(args)
        self.backlog = backlog
        self.proc = None
        self.start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('lmtp' if self.lmtp else 'smtp', self.port)

    def start(self):
        argv = [tool('smtp-sink'), '-c', '-u', 'nobody', '-d', os.path.join(self.dir, 'msg.')]
        if self.lmtp:
            argv.append('-L')
        argv += self.args + ['127.0.0.1:%d' % self.port, str(self.backlog)]
        self.proc = spawn(argv, self.name)
        if not wait_port(self.port, proc=self.proc):
            peer_failed(self.name, 'smtp-sink on %d did not start' % self.port)

    def restart(self):
        self.kill()
        self.start()

    def kill(self):
        _stop_proc(self.proc, signal.SIGKILL)

    def stop(self):
        _stop_proc(self.proc)

    def files(self):
        """The dumps of whole messages. smtp-sink makes a message's file at MAIL, empty, writes it
        at the end of DATA and removes it at RSET: an empty file is a transaction under way or one
        that will be reset (mxgate's pooled backend connection is reset after a client's session
        with MAIL/RCPT and no DATA, maybe after the test looked), not a message."""
        out = []
        for f in os.listdir(self.dir):
            path = os.path.join(self.dir, f)
            try:
                if f.startswith('msg.') and os.stat(path).st_size > 0:
                    out.append(path)
            except FileNotFoundError:
                pass
        return sorted(out)

    def count(self):
        return len(self.files())

    def messages(self):
        """Each dumped message as {'attrs': {X-Client-Addr..: value}, 'rcpts': [..], 'data': bytes}
        where data is what followed smtp-sink's own Received header."""
        out = []
        for path in self.files():
            with open(path, 'rb') as f:
                raw = f.read()
            attrs, rcpts, pos = {}, [], 0
            while True:
                end = raw.find(b'\n', pos)
                if end < 0:
                    break
                line = raw[pos:end].rstrip(b'\r').decode(errors='replace')
                m = re.match(r'(X-[A-Za-z-]+): (.*)$', line)
                if not m:
                    break
                if m.group(1) == 'X-Rcpt-Args':
                    rcpts.append(m.group(2))
                attrs[m.group(1)] = m.group(2)
                pos = end + 1
            # skip smtp-sink's own Received: header (first line + continuation lines)
            if raw.startswith(b'Received:', pos):
                end = raw.find(b'\n', pos)
                pos = end + 1
                while raw[pos:pos + 1] in (b'\t', b' '):
                    pos = raw.find(b'\n', pos) + 1
            out.append({'attrs': attrs, 'rcpts': rcpts, 'data': raw[pos:], 'path': path})
        return out


# ----------------------------------------------------------------------------- real peers

PEERS = os.path.join(SRC, 'tests', 'peers')
EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'


def peer_failed(name, what):
    """An installed peer that does not come up fails the test (never a skip): its log tail
    goes with the message."""
    fail('%s\n--- %s.log (tail)\n%s' % (what, name, log_of(name)[-1500:]))


def log_of(name):
    """Text of TMP/name.log (a process started by spawn(), a daemon, a peer)."""
    try:
        with open(os.path.join(TMP, name + '.log'), 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def stop_proc(p, sig=signal.SIGTERM):
    """Stops a process started by spawn() (signal, wait up to 5 s, then SIGKILL)."""
    _stop_proc(p, sig)


def start_peer(argv, name, port, timeout=20, host='127.0.0.1'):
    """Spawns a TCP peer that listens on the held `port` (of host); waits until it accepts;
    an exit or a timeout fails the test with its log. Returns the Popen with .port and .name."""
    p = spawn(argv, name)
    if not wait_port(port, timeout, proc=p, host=host):
        peer_failed(name, '%s did not listen on %s:%d (exit status %s)' % (name, host, port, p.poll()))
    p.port = port
    p.name = name
    return p


def neg_milter(name, actions, proto, *args):
    """tests/peers/neg_milter.py on a held port, announcing `actions` and `proto` in its option
    negotiation (the rest of its arguments: `args`), logging the commands it is sent to
    TMP/NAME.log (empty at start; the peer's own output goes to spawn's milter-NAME log).
    Returns (port, log)."""
    port = hold_port().port
    log = os.path.join(TMP, '%s.log' % name)
    open(log, 'w').close()
    start_peer([sys.executable, os.path.join(PEERS, 'neg_milter.py'), str(port), log, hex(actions), hex(proto)] +
               list(args), 'milter-%s' % name, port)
    return port, log


def redis(port=None, args=()):
    """redis-server on a held port (or `port`: a restart where it ran before), no persistence;
    its directory (a replica's full sync writes an RDB file there) in TMP; args: more options."""
    need('redis-server')
    port = port or hold_port().port
    return start_peer([tool('redis-server'), '--bind', '127.0.0.1', '--port', str(port), '--save', '',
                       '--appendonly', 'no', '--dir', TMP, '--dbfilename', 'dump-%d.rdb' % port] + list(args), 'redis-%d' % port, port)


def redis_sentinel(master_port, master='mymaster', extra=''):
    """`redis-server --sentinel` on a held port monitoring 127.0.0.1:master_port as `master`
    (quorum 1; down after 60 s: on a loaded machine a slow PING reply must not start a failover
    of its own, a test asks for one); its config file (Sentinel rewrites it) in TMP; extra:
    more lines of it (`requirepass PW`, `sentinel auth-pass mymaster PW`)."""
    need('redis-server')
    port = hold_port().port
    conf = os.path.join(TMP, 'sentinel-%d.conf' % port)
    with open(conf, 'w') as f:
        f.write('port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 1\n'
                'sentinel down-after-milliseconds %s 60000\nsentinel failover-timeout %s 5000\n'
                % (port, master, master_port, master, master) + extra)
    return start_peer([tool('redis-server'), conf, '--sentinel'], 'sentinel-%d' % port, port)


def dovecot(users, name='dovecot'):
    """A private Dovecot (dovecot-core) running only its auth service: own base_dir under TMP,
    passwd-file `users` ({name: password}, {PLAIN} scheme), listening on a unix socket
    (mode 0666) and on 127.0.0.1:<free port>; no auth_failure_delay (mxgate's guard delays).
    Returns the Popen with .sock ("unix:PATH"), .inet ("inet:127.0.0.1:PORT"), .port, .log.
    Dovecot 2.3 still delays a client address after failures (its anvil penalty: 2 s doubling
    to 15 s per rip): tests that fail twice from one address wait for that."""
    need('dovecot')
    dv = os.path.join(TMP, name)
    for d in ('run', 'state'):
        os.makedirs(os.path.join(dv, d), exist_ok=True)
    path = os.path.join(dv, 'users')
    with open(path, 'w') as f:
        for user, password in users.items():
            f.write('%s:{PLAIN}%s\n' % (user, password))
    os.chmod(path, 0o644)
    sock = os.path.join(dv, 'auth-client')
    port = free_port()
    conf = os.path.join(dv, 'dovecot.conf')
    with open(conf, 'w') as f:
        f.write('''base_dir = {dv}/run
state_dir = {dv}/state
log_path = /dev/stderr
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {sock} {{
    mode = 0666
  }}
  inet_listener {{
    address = 127.0.0.1
    port = {port}
  }}
}}
'''.format(dv=dv, users=path, sock=sock, port=port))
    proc = spawn([tool('dovecot'), '-F', '-c', conf], name)
    if not wait_for(lambda: os.path.exists(sock), 15) or not wait_port(port, 10, proc=proc):
        peer_failed(name, 'dovecot did not start (exit status %s)' % proc.poll())
    proc.sock, proc.inet, proc.port = 'unix:' + sock, 'inet:127.0.0.1:%d' % port, port
    proc.log = lambda: log_of(name)
    return proc


class TcpForwarder:
    """A TCP forwarder on 127.0.0.1:<free port> (or :port, a hold_port's) to
    target_host:target (threads; .accepted counts the connections made to it): a daemon's path
    to a real peer that a test can cut — cut() closes every connection and refuses new ones
    (a network partition of one node); set .open = True to let connections through again.
    reply_delay: seconds each read from the target waits before it is passed on (a slow peer).
    read_rate: octets a second the daemon's side is read at (a backend taking a message
    slowly but steadily; the receive buffer is then 64 KB, so the kernel holds little of it);
    stall_after: octets read from the daemon's side after which it is read no more (a peer
    that stops taking what it is sent); .stalled_at is then the time of the last read.
    on_chunk(direction, data): called on the pump's thread with each chunk read, 'up' (the
    daemon's side to target) or 'down', just before it is passed on; it may block (a pause at
    a chosen point of the stream) or act (write to the peer itself first); it returns the
    bytes to pass on instead, or None to pass the chunk as read."""

    def __init__(self, target, reply_delay=0, read_rate=0, stall_after=None, on_chunk=None,
                 target_host='127.0.0.1', port=0):
        self.target, self.reply_delay, self.on_chunk = target, reply_delay, on_chunk
        self.target_host, self.accepted = target_host, 0
        self.read_rate, self.stall_after, self.stalled_at = read_rate, stall_after, None
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if read_rate or stall_after is not None:
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        if port:
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)   # beside its hold_port
        self.lsock.bind(('127.0.0.1', port))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.open, self.conns = True, []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            if not self.open:
                c.close()
                continue
            try:
                u = socket.create_connection((self.target_host, self.target), 5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)	# the 5 s was for the connect: a quiet peer is no error
            self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, 0, self, 'up'), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, self.reply_delay, self, 'down'),
                             daemon=True).start()

    @staticmethod
    def _pipe(a, b, delay, fwd, direction):
        """a to b; fwd: the forwarder, whose read_rate / stall_after pace the reads up and
        whose on_chunk sees each chunk."""
        slow = fwd if direction == 'up' else None
        rate = slow.read_rate if slow else 0
        left = slow.stall_after if slow else None
        try:
            while True:
                if left is not None and left <= 0:
                    slow.stalled_at = time.time()
                    time.sleep(3600)	# reads no more; the connection stays open
                want = 65536 if not rate else max(1, rate // 20)
                d = a.recv(want if left is None else min(want, left))
                if not d:
                    break
                if left is not None:
                    left -= len(d)
                if delay:
                    time.sleep(delay)
                if rate:
                    time.sleep(len(d) / rate)
                if fwd.on_chunk is not None:
                    got = fwd.on_chunk(direction, d)
                    d = d if got is None else got
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.open = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []


def copies(be, body):
    """Recipient -> copies of the message holding body that Backend be took (its 250s: an LMTP
    server's per recipient)."""
    n = {}
    with be.lock:
        msgs = list(be.messages)
    for m in msgs:
        if body in m['data']:
            for a in m['accepted_rcpts']:
                n[a] = n.get(a, 0) + 1
    return n


def redis_cmd(port, *args, timeout=5):
    """One command to the Redis on 127.0.0.1:port; the reply as int, bytes, list or None
    (an error reply raises RuntimeError). For waiting on what the daemon stored."""
    argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    s = socket.create_connection(('127.0.0.1', port), slack(timeout))
    f = s.makefile('rb')
    try:
        s.sendall(b'*%d\r\n' % len(argv) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in argv))
        return _resp(f)
    finally:
        f.close()
        s.close()


def redis_cmd_auth(port, password, *args, timeout=5):
    """redis_cmd on a Redis with requirepass: AUTH password first, on the same connection."""
    argvs = [[b'AUTH', password.encode()], [a if isinstance(a, bytes) else str(a).encode() for a in args]]
    s = socket.create_connection(('127.0.0.1', port), slack(timeout))
    f = s.makefile('rb')
    try:
        for argv in argvs:
            s.sendall(b'*%d\r\n' % len(argv) + b''.join(b'$%d\r\n%s\r\n' % (len(a), a) for a in argv))
            reply = _resp(f)
        return reply
    finally:
        f.close()
        s.close()


def _resp(f):
    line = f.readline()
    kind, rest = line[:1], line[1:].rstrip(b'\r\n')
    if kind == b'+':
        return rest
    if kind == b'-':
        raise RuntimeError(rest.decode(errors='replace'))
    if kind == b':':
        return int(rest)
    if kind == b'$':
        return None if int(rest) < 0 else f.read(int(rest) + 2)[:-2]
    if kind == b'*':
        return None if int(rest) < 0 else [_resp(f) for _ in range(int(rest))]
    raise RuntimeError('not a RESP reply: %r' % line)


def clamd(extra_db=None, host='127.0.0.1'):
    """A private clamd (TCP on host, and a unix socket .sock) with our EICAR-only signatures;
    extra_db: more signature files, {file name: text} (e.g. a .cdb of banned names)."""
    need('clamd')
    port = hold_port().port
    d = os.path.join(TMP, 'clamav-%d' % port)
    for sub in ('db', 'tmp'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for f in ('mxgate-eicar.ndb', 'mxgate-eicar.hdb'):
        shutil.copy(os.path.join(PEERS, 'clamav', f), os.path.join(d, 'db', f))
    for f, text in (extra_db or {}).items():
        with open(os.path.join(d, 'db', f), 'w') as out:
            out.write(text)
    with open(os.path.join(PEERS, 'clamav', 'clamd.conf.in')) as f:
        conf = f.read().replace('@DIR@', d).replace('@PORT@', str(port))
    conf = conf.replace('TCPAddr 127.0.0.1', 'TCPAddr ' + host)
    with open(os.path.join(d, 'clamd.conf'), 'w') as f:
        f.write(conf)
    p = start_peer([tool('clamd'), '--config-file=' + os.path.join(d, 'clamd.conf')], 'clamd-%d' % port,
                   port, timeout=60, host=host)
    p.sock = os.path.join(d, 'clamd.sock')
    return p


def spamd(local_cf='', host='127.0.0.1'):
    """spamd with Debian's shipped rules, offline (no DNS, no network tests, no Bayes), on
    host; local_cf: more lines for its local.cf."""
    need('spamd')
    port = hold_port().port
    d = os.path.join(TMP, 'spamd-%d' % port)
    os.makedirs(d, exist_ok=True)
    # Debian's .pre files load the plugins (Check at least); our local.cf keeps it offline.
    for f in os.listdir('/etc/spamassassin') if os.path.isdir('/etc/spamassassin') else ():
        if f.endswith('.pre'):
            shutil.copy(os.path.join('/etc/spamassassin', f), os.path.join(d, f))
    with open(os.path.join(d, 'local.cf'), 'w') as f:
        f.write('required_score 5.0\nuse_bayes 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\n'
                'dns_available no\n' + local_cf)
    os.chmod(d, 0o755)
    p = start_peer([tool('spamd'), '--listen=%s:%d' % (host, port), '--allowed-ips=127.0.0.0/8',
                    '--siteconfigpath=' + d, '--local', '--nouser-config', '--username=nobody',
                    '--max-children=2', '--pidfile=' + os.path.join(d, 'spamd.pid')],
                   'spamd-%d' % port, port, timeout=60, host=host)
    # spamd listens before it has read its rules and started its children: a connection is
    # queued, not answered, until then (over a minute at load 24, past a 30 s scan timeout).
    # One PING waits for the PONG.
    try:
        with socket.create_connection((host, port), timeout=slack(180)) as s:
            s.sendall(b'PING SPAMC/1.5\r\n\r\n')
            pong = s.recv(64)
    except OSError as e:
        pong = repr(e).encode()
    if not pong.startswith(b'SPAMD/1.5 0 PONG'):
        peer_failed('spamd-%d' % port, 'spamd did not answer PING: %r' % pong)
    return p


def spamd_pairs(label, local, cases, stock, spamd_local=None):
    """Each case (name, bytes) through mxgate (the rule files in stock, a glob, then local as
    a rule file; a recording Backend; add_header 5, reject 1000) and through spamd with
    local (or spamd_local) in its local.cf: yields (name, data, what the backend got, spamc's
    output) for each case delivered (a failed delivery is a failed check); stops both after
    the last."""
    path = os.path.join(TMP, label + '.cf')
    with open(path, 'w') as f:
        f.write(local)
    sd = spamd(local if spamd_local is None else spamd_local)
    be = Backend()
    mx = Mxgate(config([be.url], rules={'files': [stock, path],
                                        'actions': {'add_header': 5, 'reject': 1000},
                                        'client_relay': False}),
                name='mxgate-' + label)
    check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, '%s: rules loaded' % label)
    ready = wait_for(lambda: subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port), '-K'],
                                            capture_output=True).returncode == 0,
                     timeout=60, step=0.5)
    check(bool(ready), '%s: spamd answers' % label)
    for name, data in cases:
        n = len(be.messages)
        code, text = send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], data)
        ok = code == 250 and wait_for(lambda: len(be.messages) > n, timeout=slack(20))
        check(ok, '%s %s: delivered (%s %s)' % (label, name, code, text))
        if not ok:
            continue
        r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port)], input=data,
                           capture_output=True, timeout=120)
        yield name, data, be.messages[-1]['data'], r.stdout
    mx.stop()
    sd.terminate()
    sd.wait()


def milter(stall=10, unix=False):
    """tests/peers/mx_milter.py (python3-milter) on a held port, or a unix socket (.sock)."""
    need_python_milter()
    port = hold_port().port
    sock = os.path.join(TMP, 'milter-%d.sock' % port)
    name = 'milter-%d' % port
    argv = ['/usr/bin/python3', os.path.join(PEERS, 'mx_milter.py'),
            ('unix:' + sock) if unix else 'inet:%d@127.0.0.1' % port, str(stall)]
    if unix:
        p = spawn(argv, name)
        if not wait_for(lambda: os.path.exists(sock) or p.poll() is not None, 20) or not os.path.exists(sock):
            peer_failed(name, 'the test milter did not create %s' % sock)
        p.port, p.name = port, name
    else:
        p = start_peer(argv, name, port)
    p.sock = sock
    return p


def milter_ops(name):
    """tests/peers/mx_milter_ops.py NAME (python3-milter): a milter scripted by the message's
    X-Ops-NAME header, reporting what it saw in X-Seen-NAME."""
    need_python_milter()
    port = hold_port().port
    return start_peer(['/usr/bin/python3', os.path.join(PEERS, 'mx_milter_ops.py'), 'inet:%d@127.0.0.1' % port, name],
                      'ops-milter-%s-%d' % (name, port), port)


def bad_peer(mode):
    """tests/peers/bad_peer.py MODE: a misbehaving milter or clamd (see its usage)."""
    port = hold_port().port
    return start_peer([sys.executable, os.path.join(PEERS, 'bad_peer.py'), str(port), mode],
                      'bad-%s-%d' % (mode, port), port)


def fake_rspamd():
    """tests/peers/fake_rspamd.py: rspamd's /checkv2 protocol; requests logged as JSON lines
    in .requests (the real rspamd: test_rspamd_real.py, docs/testing.md)."""
    port = hold_port().port
    log = os.path.join(TMP, 'rspamd-requests-%d.log' % port)
    p = start_peer([sys.executable, os.path.join(PEERS, 'fake_rspamd.py'), str(port), log],
                   'fake-rspamd-%d' % port, port)
    p.requests = log
    return p


def opendkim(domain='example.org', selector='mxtest'):
    """opendkim signing for domain with a fresh key; .pubkey is the p= value."""
    need('/usr/sbin/opendkim', '/usr/sbin/opendkim-genkey')
    port = hold_port().port
    d = os.path.join(TMP, 'opendkim-%d' % port)
    os.makedirs(d, exist_ok=True)
    r = subprocess.run(['/usr/sbin/opendkim-genkey', '-b', '1024', '-D', d, '-d', domain, '-s', selector],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail('opendkim-genkey failed: ' + r.stderr[-300:])
    conf = os.path.join(d, 'opendkim.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join([
            'Syslog no', 'Background no', 'Mode s', 'Domain %s' % domain, 'Selector %s' % selector,
            'KeyFile %s/%s.private' % (d, selector), 'Socket inet:%d@127.0.0.1' % port,
            'Canonicalization relaxed/simple', 'InternalHosts 127.0.0.1', 'PidFile %s/opendkim.pid' % d,
            'RequireSafeKeys no', 'UMask 002', '']))
    p = start_peer(['/usr/sbin/opendkim', '-f', '-x', conf], 'opendkim-%d' % port, port)
    with open(os.path.join(d, selector + '.txt')) as f:
        txt = f.read()
    p.pubkey = ''.join(re.findall(r'"([^"]*)"', txt)).split('p=')[-1]
    return p


def clamav_milter(clamd_port):
    """clamav-milter in front of the clamd on clamd_port: rejects viruses, adds X-Virus-Scanned."""
    need('/usr/sbin/clamav-milter')
    port = hold_port().port
    d = os.path.join(TMP, 'clamav-milter-%d' % port)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'clamav-milter.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join([
            'MilterSocket inet:%d@127.0.0.1' % port, 'ClamdSocket tcp:127.0.0.1:%d' % clamd_port,
            'Foreground yes', 'OnInfected Reject', 'OnFail Defer', 'AddHeader Replace',
            'LogFile %s/clamav-milter.log' % d, 'PidFile %s/clamav-milter.pid' % d,
            'RejectMsg Virus %v found by clamav-milter', 'User root', '']))
    return start_peer(['/usr/sbin/clamav-milter', '-c', conf], 'clamav-milter-%d' % port, port)


def rbldnsd(zones):
    """rbldnsd serving zones {zone: (type, text)} over UDP; returns the Popen with .port once
    it answers a query. rbldnsd binds without SO_REUSEADDR, so its port cannot stay held: the
    hold is released just before the spawn, and in the rare case that another process took
    the port in that instant (rbldnsd exits with "Address already in use") it starts again
    on another one."""
    need('rbldnsd')
    for attempt in range(3):
        h = hold_port(udp=True)
        port = h.port
        d = os.path.join(TMP, 'rbldnsd-%d' % port)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)    # it drops to user rbldns
        specs = []
        for zone, (typ, text) in zones.items():
            with open(os.path.join(d, zone), 'w') as f:
                f.write(text)
            os.chmod(os.path.join(d, zone), 0o644)
            specs.append('%s:%s:%s' % (zone, typ, zone))
        name = 'rbldnsd-%d' % port
        h.release()
        p = spawn([tool('rbldnsd'), '-n', '-a', '-b', '127.0.0.1/%d' % port, '-w', d] + specs, name)
        q = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x02bl\x04test\x00\x00\x01\x00\x01'
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)

        def answers():
            if p.poll() is not None:
                return 'exited'
            try:
                s.sendto(q, ('127.0.0.1', port))
                return s.recvfrom(512)[0][:2] == b'\x12\x34'
            except OSError:
                return False
        ok = wait_for(answers, 10, 0.1) is True
        s.close()
        if ok:
            p.port, p.name = port, name
            return p
        if 'Address already in use' not in log_of(name):
            break
    peer_failed(name, 'rbldnsd on udp %d does not answer (exit status %s)' % (port, p.poll()))


NGINX_MODULES = '/usr/lib/nginx/modules'


def nginx(modules, body, ports, name='nginx'):
    """nginx (Debian's nginx-light and its dynamic modules) in the foreground, single process,
    with TMP/NAME/nginx.conf: load_module for each of `modules` ('stream', 'mail'), then
    `body` (stream/mail blocks; write literal braces as they are). Skips when nginx or a
    module is missing (a failure under CI). Returns the Popen once every port listens, with
    .dir; stopped at exit."""
    need('nginx')
    for m in modules:
        if not os.path.exists(os.path.join(NGINX_MODULES, 'ngx_%s_module.so' % m)):
            skip('nginx module %s missing (libnginx-mod-%s)' % (m, m))
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, 'nginx.conf')
    with open(conf, 'w') as f:
        for m in modules:
            f.write('load_module %s/ngx_%s_module.so;\n' % (NGINX_MODULES, m))
        f.write('daemon off;\nmaster_process off;\npid %s/nginx.pid;\nerror_log %s/error.log info;\n'
                'events { worker_connections 64; }\n' % (d, d))
        f.write(body)
    p = spawn([tool('nginx'), '-c', conf, '-p', d], name)
    for port in ports:
        if not wait_port(port, 10, p):
            fail('nginx did not listen on %d: %s' % (port, log_of(name)[-500:]))
    p.dir = d
    return p


def dnsmasq(records, local=(), args=()):
    """dnsmasq on 127.0.0.1 serving the TXT records {name: text}, authoritative for the
    `local` zones (other names there: NXDOMAIN, never forwarded), with extra dnsmasq args
    (--address=/name/A, --server=/zone/IP#PORT ...). Returns the Popen with .port and .name
    once it answers a query for the first record; a dnsmasq that does not fails the test."""
    need('dnsmasq')
    port = free_port()
    name = 'dnsmasq-%d' % port
    argv = [tool('dnsmasq'), '-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--no-negcache',
            '--port=%d' % port, '--listen-address=127.0.0.1', '--bind-interfaces']
    if local:
        argv.append('--local=/%s/' % '/'.join(local))
    argv += ['--txt-record=%s,%s' % (n, t) for n, t in records.items()]   # argv, no shell: no quotes
    argv += list(args)
    p = spawn(argv, name)
    q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
    for label in next(iter(records)).encode().split(b'.'):
        q += bytes([len(label)]) + label
    q += b'\x00\x00\x10\x00\x01'

    def up():
        if p.poll() is not None:
            return 'exited'
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.3)
        try:
            s.sendto(q, ('127.0.0.1', port))
            return len(s.recv(512)) > 12
        except OSError:
            return False
        finally:
            s.close()
    if wait_for(up, 10) is not True:
        peer_failed(name, 'dnsmasq on udp %d does not answer (exit status %s)' % (port, p.poll()))
    p.port, p.name = port, name
    return p


def dns_peer(zone, name='dns_peer'):
    """tests/integration/dns_peer.py (dnspython under /usr/bin/python3) on 127.0.0.1, UDP and
    TCP, serving zone {name: [{"txt": [strings]}, {"a": ip}, ...] | "servfail" | "refused" |
    "drop"}; other names NXDOMAIN. Returns the Popen with .port and .name once it is ready
    (its log, TMP/name.log, has one "query NAME TYPE[ tcp][ edns=N]" line per query;
    .queries(NAME) counts those of type A, over UDP or TCP, with EDNS0 or without;
    .set_zone(ZONE) serves another zone, see dns_set_zone); fails the test if not, skips it
    without python3-dnspython."""
    if subprocess.run(['/usr/bin/python3', '-c', 'import dns.message'], capture_output=True).returncode != 0:
        skip('python3-dnspython not installed')
    zfile = os.path.join(TMP, name + '.json')
    with open(zfile, 'w') as f:
        json.dump(zone, f)
    # port 0: it binds a port of its own and says which (no free_port() race)
    p = spawn(['/usr/bin/python3', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dns_peer.py'),
               zfile, '0'], name)
    m = wait_log_of(name, r'(?m)^port (\d+)\n(?:.*\n)*?ready$', 15, p)
    port = int(m.group(1)) if m else 0
    if not m or not wait_port(port, 5, p):
        peer_failed(name, 'dns_peer.py did not start (exit status %s)' % p.poll())
    p.port, p.name = port, name
    p.queries = lambda qname, qtype='A': len(re.findall(r'(?m)^query %s %s( tcp)?( edns=\d+)?$' % (re.escape(qname), qtype),
                                                        log_of(name)))
    p.set_zone = lambda z: dns_set_zone(p, zfile, z)
    return p


def dns_set_zone(p, zfile, zone):
    """Writes dns_peer p's zone file zfile and has it read it (SIGHUP); returns once it answers
    from it (its log's "reloaded" line)."""
    before = log_of(p.name).count('reloaded')
    with open(zfile + '.tmp', 'w') as f:
        json.dump(zone, f)
    os.replace(zfile + '.tmp', zfile)
    os.kill(p.pid, signal.SIGHUP)
    check(wait_for(lambda: log_of(p.name).count('reloaded') > before, 10) is True, 'the DNS server read its new zone')


def http_get(port, path, timeout=30):
    """GET http://127.0.0.1:port/path: (status, body text); (None, the error) when it cannot
    be had."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=slack(timeout)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def dkim_rsa_key(name, bits=2048):
    """An RSA key made by openssl: (path of the PEM private key in TMP, its DKIM key record
    text 'v=DKIM1; k=rsa; p=...')."""
    path = os.path.join(TMP, name + '.private')
    der = None
    for args in (['genrsa', '-traditional', '-out', path, str(bits)],
                 ['rsa', '-in', path, '-pubout', '-outform', 'DER']):
        r = subprocess.run([tool('openssl') or 'openssl'] + args, capture_output=True, timeout=60)
        if r.returncode != 0:
            fail('openssl %s failed: %s' % (args[0], r.stderr.decode(errors='replace')[:300]))
        der = r.stdout
    return path, 'v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode()


def need_sys_python(*modules):
    """Skips the test unless Debian's /usr/bin/python3 imports every module (python3-dkim,
    python3-dnspython...: the pyenv python3 lacks them); returns that interpreter's path."""
    py = '/usr/bin/python3'
    if subprocess.run([py, '-c', 'import ' + ', '.join(modules)], capture_output=True).returncode != 0:
        skip('not importable under %s: %s' % (py, ', '.join(modules)))
    return py


def txt_strings(text, n=255):
    """A TXT record's text as the character-strings of at most n octets a zone holds."""
    return [text[i:i + n] for i in range(0, len(text), n)]


def our_authres(messages, marker, authserv='mx.test'):
    """The unfolded Authentication-Results field of authserv in the last of messages (a
    Backend's .messages) whose data holds marker (bytes), or '' when there is none."""
    got = [x for x in messages if marker in x['data']]
    if not got:
        return ''
    head = got[-1]['data'].decode('latin-1').split('\r\n\r\n', 1)[0].replace('\r\n ', ' ').replace('\r\n\t', ' ')
    return ([h for h in head.split('\r\n') if h.startswith('Authentication-Results: %s;' % authserv)] or [''])[0]


def wait_log_of(name, regex, timeout=10, proc=None):
    """Waits for regex in TMP/name.log (stops early when proc has exited); the match or None."""
    rx = re.compile(regex)

    def look():
        if proc is not None and proc.poll() is not None:
            return rx.search(log_of(name)) or 'exited'
        return rx.search(log_of(name))
    m = wait_for(look, timeout)
    return m if m and m != 'exited' else None


# ----------------------------------------------------------------------------- scripted backend

class Backend:
    """A scripted SMTP/LMTP server on a free port, one thread per connection.

    mode: 'ok' | 'drop_after_data' (close without a reply after the final dot) |
          'tempfail_data' (451 after the dot) | 'reject_data' (554) | 'tempfail_mail' (451 at MAIL) |
          'reject_mail' (550 at MAIL) | 'closing_mail' (421 at MAIL, then close) |
          'drop_at_connect' (close before the greeting) | 'tempfail_connect' (421 greeting) |
          'refuse_connect' (554 5.7.1 greeting refusing the connecting host, then close) |
          'garbage' (binary noise instead of a greeting) | 'stall' (never greets) |
          'huge_reply' (a 200 KB greeting line and 20000 continuation lines, then normal) |
          'close_notify_after_data' (with starttls: TLS close_notify after the final dot, no
          reply, the TCP connection held open until the client closes it) |
          'close_after_250' (250 after the final dot, then close: Postfix's smtpd at its
          smtpd_hard_error_limit, a sink that takes one message per connection)
    reject_rcpt / tempfail_rcpt: sets of addresses answered 550 / 450 at RCPT.
    lmtp=True: LHLO and one reply per accepted recipient after the dot; lmtp_codes maps
          a recipient to its final code there (default 250).
    delay: seconds before the reply to the final dot (a slow backend).
    xclient: announce 'XCLIENT NAME ADDR PORT PROTO HELO LOGIN' and record attributes; a string:
          the attributes to announce instead (Postfix 3.7's: 'NAME ADDR PROTO HELO
          REVERSE_NAME PORT LOGIN DESTADDR DESTPORT').
    expect_proxy: every connection must start with a PROXY v1/v2 header (parsed, recorded in
          proxy_headers; a connection without one is dropped).
    starttls: announce STARTTLS (certificate from cert(), or starttls=(certfile, keyfile));
          messages record 'tls' (version or None); tls_handshakes one bool per handshake,
          True when it resumed a session (one context, one set of ticket keys, while
          starttls stays the same).
    smtputf8: announce SMTPUTF8 (default True).
    chunking: announce CHUNKING and take BDAT (RFC 3030); messages record 'bdat' (True when
          the message came in BDAT chunks, with the BDAT lines in commands).
    dsn: announce DSN (RFC 3461); without it MAIL's RET=/ENVID= and RCPT's NOTIFY=/ORCPT= are
          refused 555 5.5.4, as a server that does not know them answers.
    extensions: more EHLO keywords, announced as they are (another MTA's: Exchange's BINARYMIME,
          X-ANONYMOUSTLS, XEXCH50); announcing is all: their commands are not taken.
    mail_reply: a reply line given to every MAIL instead of 250 (Exchange's back pressure:
          '452 4.3.1 Insufficient system resources').
    rcpt_replies: recipient address -> the reply line given to its RCPT instead of 250 (another
          server's wording of a refusal: '550 5.4.1 Recipient address rejected: ...').
    sni: the server names clients sent in their TLS ClientHello (None: none sent), one per handshake.
    rset_gate: a threading.Event the reply to RSET waits for (set by the test: a backend slow to
          answer RSET, without timing); rset_reply: the reply line to RSET instead of 250.
    ehlo_reply, starttls_reply, xclient_reply (attributes, None: the usual reply): the reply
          line to EHLO/LHLO, to STARTTLS (announced), to XCLIENT (announced) instead (a server
          refusing the gateway: '554 5.7.1 Access denied', Postfix's '550 5.7.0 Error:
          insufficient authorization').
    Records: messages (accepted: dicts mail, rcpts, data (unstuffed bytes), xclient, proxy,
    helo, qid, accepted_rcpts), attempts (every transaction that reached the dot),
    commands (every command line received, all connections), connections (count; a message's
    'conn' is its connection's number, 1 for the first), conn_commands (number -> that
    connection's command lines), open_connections() (those not closed yet). Attributes may be changed while it runs."""

    def _tls_context(self):
        """One server context while `starttls` stays the same, as one server process keeps
        its certificate and its ticket keys: a client may resume a session (TLS 1.3 ticket).
        A new `starttls` (another certificate) is a new context, new keys: no resumption."""
        with self.lock:
            if self._tls_ctx is None or self._tls_ctx[0] != self.starttls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*(self.starttls if isinstance(self.starttls, tuple) else cert()))

                def record_sni(_sock, name, _ctx):
                    with self.lock:
                        self.sni.append(name)
                ctx.sni_callback = record_sni
                self._tls_ctx = (self.starttls, ctx)
            return self._tls_ctx[1]

    def __init__(self, mode='ok', lmtp=False, reject_rcpt=(), tempfail_rcpt=(), lmtp_codes=None,
                 delay=0, xclient=True, expect_proxy=False, starttls=False, smtputf8=True, name=None, port=None,
                 chunking=False, dsn=False, data_reply=None, host='127.0.0.1', extensions=(), mail_reply=None,
                 rcpt_replies=None):
        # host: the address listened on (127.0.0.2: a second address of a backend name)
        # data_reply: the SMTP 250 line after the final dot, '%(qid)s' for the queue id
        # (another MTA's wording: Exim's '250 OK id=%(qid)s'); default Postfix's
        self.data_reply = data_reply
        self.extensions, self.mail_reply, self.rcpt_replies = list(extensions), mail_reply, dict(rcpt_replies or {})
        self.sni = []
        self.rset_gate, self.rset_reply = None, None
        self.ehlo_reply = self.starttls_reply = self.xclient_reply = None
        self.xclient_again_reply = None   # the reply to every XCLIENT after a connection's first
        self.mode, self.lmtp, self.delay, self.xclient = mode, lmtp, delay, xclient
        self.starttls, self.smtputf8, self.chunking, self.dsn = starttls, smtputf8, chunking, dsn
        self.reject_rcpt, self.tempfail_rcpt = set(reject_rcpt), set(tempfail_rcpt)
        self.lmtp_codes = dict(lmtp_codes or {})
        self.expect_proxy = expect_proxy
        self.messages, self.attempts, self.proxy_headers, self.commands = [], [], [], []
        self.conn_commands = {}      # connection number -> its command lines
        self.connections = 0
        self.tls_handshakes = []     # one per STARTTLS: True when it resumed a session
        self._tls_ctx = None
        self.qid = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or 0))
        self.port = self.sock.getsockname()[1]
        self.name = name or 'backend%d' % self.port
        self.sock.listen(128)
        self.running = True
        self.conns = set()
        self._conn_no = {}           # socket -> its connection's number (1 for the first)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        _servers.append(self)

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('lmtp' if self.lmtp else 'smtp', self.port)

    def find(self, needle):
        """Accepted messages whose data contains needle (str or bytes)."""
        if isinstance(needle, str):
            needle = needle.encode()
        with self.lock:
            return [m for m in self.messages if needle in m['data']]

    def by_tag(self, tag):
        """Accepted messages made by message(tag, ...) (matched by their Message-ID)."""
        with self.lock:
            return [m for m in self.messages if tag in message_ids([m['data']])]

    def stop(self):
        """Closes the listener and every open connection (like a killed server)."""
        self.running = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.add(c)
                self._conn_no[c] = self.connections
            threading.Thread(target=self._serve_safe, args=(c,), daemon=True).start()

    def open_connections(self):
        """Connections accepted and not closed yet (by either side); a connection that took
        STARTTLS stays counted (its TLS socket replaced the one _serve_safe discards)."""
        with self.lock:
            return len(self.conns)

    def _serve_safe(self, c):
        try:
            c.settimeout(60)
            self._serve(c)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.conns.discard(c)
                self._conn_no.pop(c, None)
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def _read_proxy(f):
        head = f.peek(16)[:16]
        if head.startswith(b'\r\n\r\n\x00\r\nQUIT\n'):
            hdr = f.read(16)
            n = int.from_bytes(hdr[14:16], 'big')
            body = f.read(n)
            info = {'version': 2, 'command': hdr[12] & 0x0f, 'family': hdr[13], 'raw': hdr + body}
            if hdr[13] == 0x11 and n >= 12:
                info['src'] = socket.inet_ntoa(body[0:4])
                info['dst'] = socket.inet_ntoa(body[4:8])
                info['sport'] = int.from_bytes(body[8:10], 'big')
                info['dport'] = int.from_bytes(body[10:12], 'big')
            elif hdr[13] == 0x21 and n >= 36:
                info['src'] = socket.inet_ntop(socket.AF_INET6, body[0:16])
                info['dst'] = socket.inet_ntop(socket.AF_INET6, body[16:32])
                info['sport'] = int.from_bytes(body[32:34], 'big')
                info['dport'] = int.from_bytes(body[34:36], 'big')
            return info
        if head.startswith(b'PROXY '):
            line = f.readline(120).decode(errors='replace').split()
            info = {'version': 1, 'raw': ' '.join(line)}
            if len(line) == 6:
                info.update(src=line[2], dst=line[3], sport=int(line[4]), dport=int(line[5]))
            return info
        return None

    def _serve(self, c):
        with self.lock:
            conn_no = self._conn_no.get(c)
        f = c.makefile('rb')
        proxy = None
        if self.expect_proxy:
            proxy = self._read_proxy(f)
            with self.lock:
                self.proxy_headers.append(proxy)
            if proxy is None:
                return
        w = c.sendall
        if self.mode == 'drop_at_connect':
            return
        if self.mode == 'tempfail_connect':
            w(b'421 4.3.2 backend busy\r\n')
            return
        if self.mode == 'refuse_connect':
            w(b'554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied\r\n')
            return
        if self.mode == 'garbage':
            w(bytes(range(256)) * 4 + b'\r\n\x00\x00 not smtp\r\n')
            time.sleep(2)
            return
        if self.mode == 'stall':
            time.sleep(30)
            return
        if self.mode == 'huge_reply':
            w(b'220-' + b'x' * 200000 + b'\r\n' + b'220-more\r\n' * 20000 + b'220 ok\r\n')
            f.readline(100000)
        w(b'220 %s %s\r\n' % (self.name.encode(), b'LMTP' if self.lmtp else b'ESMTP'))
        xclient, helo, tls = {}, None, None
        mail, rcpts, accepted, chunks = None, [], [], []
        while True:
            line = f.readline(100000)
            if not line:
                return
            cmd = line.rstrip(b'\r\n').decode('utf-8', 'replace')
            with self.lock:
                self.commands.append(cmd)
                self.conn_commands.setdefault(conn_no, []).append(cmd)
            verb = cmd.split(' ', 1)[0].upper()
            arg = cmd[len(verb):].strip()
            if verb in ('EHLO', 'LHLO', 'HELO'):
                helo = arg
                if verb == 'HELO':
                    w(b'250 %s\r\n' % self.name.encode())
                    continue
                if self.ehlo_reply:
                    w(self.ehlo_reply.encode() + b'\r\n')
                    continue
                ext = ['PIPELINING', 'SIZE 100000000', '8BITMIME', 'ENHANCEDSTATUSCODES'] + (['SMTPUTF8'] if self.smtputf8 else [])
                if self.chunking:
                    ext.append('CHUNKING')
                if self.dsn:
                    ext.append('DSN')
                ext += self.extensions
                if self.starttls and tls is None:
                    ext.append('STARTTLS')
                if self.xclient:
                    ext.append('XCLIENT ' + (self.xclient if isinstance(self.xclient, str) else
                                             'NAME ADDR PORT PROTO HELO LOGIN'))
                lines = [self.name] + ext
                w(b''.join(b'250%s%s\r\n' % (b' ' if i == len(lines) - 1 else b'-', x.encode())
                           for i, x in enumerate(lines)))
            elif verb == 'STARTTLS' and self.starttls and tls is None and self.starttls_reply:
                w(self.starttls_reply.encode() + b'\r\n')
            elif verb == 'STARTTLS' and self.starttls and tls is None:
                w(b'220 2.0.0 Ready to start TLS\r\n')
                plain = c
                try:
                    c = self._tls_context().wrap_socket(c, server_side=True)
                except OSError:              # ssl.SSLError too: a handshake the client refused
                    with self.lock:
                        self.tls_handshakes.append(False)
                    raise
                with self.lock:              # wrap_socket detached plain: stop() shuts c down
                    self.conns.discard(plain)
                    self.conns.add(c)
                f = c.makefile('rb')
                w = c.sendall
                tls = c.version()
                with self.lock:
                    self.tls_handshakes.append(c.session_reused)
                xclient, helo, mail, rcpts, accepted = {}, None, None, [], []
            elif verb == 'XCLIENT' and self.xclient and self.xclient_reply:
                w(self.xclient_reply.encode() + b'\r\n')
            elif verb == 'XCLIENT' and self.xclient and self.xclient_again_reply and \
                    sum(1 for x in self.conn_commands.get(conn_no, []) if x.upper().startswith('XCLIENT')) > 1:
                w(self.xclient_again_reply.encode() + b'\r\n')
            elif verb == 'XCLIENT' and self.xclient:
                for kv in arg.split():
                    k, _, v = kv.partition('=')
                    xclient[k.upper()] = v
                # Postfix answers XCLIENT with a fresh greeting; the client must EHLO again.
                w(b'220 %s ESMTP\r\n' % self.name.encode())
                helo = None
            elif verb == 'MAIL':
                if self.mode == 'tempfail_mail':
                    w(b'451 4.3.0 try later\r\n')
                    continue
                if self.mode == 'reject_mail':
                    w(b'550 5.7.1 sender refused\r\n')
                    continue
                if self.mode == 'closing_mail':
                    w(b'421 4.3.2 Service shutting down, closing transmission channel\r\n')
                    c.shutdown(socket.SHUT_RDWR)
                    return
                if self.mail_reply:
                    w(self.mail_reply.encode() + b'\r\n')
                    continue
                if not self.dsn and re.search(r'\s(RET|ENVID)=', arg, re.I):
                    w(b'555 5.5.4 Unsupported option\r\n')
                    continue
                mail = arg.split(':', 1)[1].strip() if ':' in arg else arg
                rcpts, accepted = [], []
                w(b'250 2.1.0 Ok\r\n')
            elif verb == 'RCPT':
                addr = re.sub(r'^TO:\s*<?([^>\s]*)>?.*$', r'\1', arg, flags=re.I)
                if not self.dsn and re.search(r'\s(NOTIFY|ORCPT)=', arg, re.I):
                    w(b'555 5.5.4 Unsupported option\r\n')
                    continue
                rcpts.append(addr)
                if addr in self.rcpt_replies:
                    w(self.rcpt_replies[addr].encode() + b'\r\n')
                    if self.rcpt_replies[addr].startswith('2'):
                        accepted.append(addr)
                elif addr in self.reject_rcpt:
                    w(b'550 5.1.1 <%s>: no such user\r\n' % addr.encode())
                elif addr in self.tempfail_rcpt:
                    w(b'450 4.2.0 <%s>: try later\r\n' % addr.encode())
                else:
                    accepted.append(addr)
                    w(b'250 2.1.5 Ok\r\n')
            elif verb == 'BDAT' or verb == 'DATA':
                if verb == 'BDAT':
                    m = re.match(r'(\d+)( +LAST)?$', arg, re.I)
                    if m is None:
                        w(b'501 5.5.4 BDAT syntax\r\n')
                        return
                    chunk = f.read(int(m.group(1)))
                    if len(chunk) < int(m.group(1)):
                        return
                    if not self.chunking or mail is None or not accepted:
                        w(b'503 5.5.1 need MAIL and RCPT\r\n')
                        continue
                    chunks.append(chunk)
                    if not m.group(2):
                        w(b'250 2.0.0 %d octets received\r\n' % len(chunk))
                        continue
                    body, chunks = b''.join(chunks), []
                else:
                    if mail is None or not accepted:
                        w(b'503 5.5.1 need MAIL and RCPT\r\n')
                        continue
                    w(b'354 go ahead\r\n')
                    data = []
                    while True:
                        dl = f.readline(1000000)
                        if not dl:
                            return
                        if dl == b'.\r\n':
                            break
                        if dl.startswith(b'.'):
                            dl = dl[1:]
                        data.append(dl)
                    body = b''.join(data)
                with self.lock:
                    self.qid += 1
                    qid = 'SB%s%d' % (self.port, self.qid)
                rec = {'mail': mail, 'rcpts': list(rcpts), 'accepted_rcpts': list(accepted), 'data': body,
                       'from': re.sub(r'^<?([^>\s]*)>?.*$', r'\1', mail or ''), 'rcpt': list(accepted),
                       'xclient': dict(xclient), 'proxy': proxy, 'helo': helo, 'qid': qid, 'tls': tls,
                       'bdat': verb == 'BDAT', 'conn': conn_no}
                with self.lock:
                    self.attempts.append(rec)
                if self.delay:
                    time.sleep(self.delay)
                if self.mode == 'drop_after_data':
                    c.shutdown(socket.SHUT_RDWR)
                    return
                if self.mode == 'close_notify_after_data' and tls:
                    # TLS close_notify instead of a reply, the TCP connection left open
                    # until the client closes it.
                    c.settimeout(60)
                    try:
                        c = c.unwrap()
                        while c.recv(4096):
                            pass
                    except OSError:
                        pass
                    return
                if self.mode == 'tempfail_data':
                    w(b'451 4.3.0 backend trouble\r\n')
                elif self.mode == 'reject_data':
                    w(b'554 5.7.1 content refused\r\n')
                elif self.lmtp:
                    ok = [r for r in accepted if self.lmtp_codes.get(r, 250) == 250]
                    out = b''
                    for r in accepted:
                        code = self.lmtp_codes.get(r, 250)
                        if code == 250:
                            out += b'250 2.0.0 <%s> Ok: queued as %s\r\n' % (r.encode(), qid.encode())
                        elif code >= 500:
                            out += b'%d 5.2.2 <%s> mailbox full\r\n' % (code, r.encode())
                        else:
                            out += b'%d 4.2.1 <%s> try later\r\n' % (code, r.encode())
                    if ok:
                        rec = dict(rec, accepted_rcpts=ok, rcpt=ok)
                        with self.lock:
                            self.messages.append(rec)
                    w(out)
                else:
                    with self.lock:
                        self.messages.append(rec)
                    w((self.data_reply % {'qid': qid}).encode() + b'\r\n' if self.data_reply else
                      b'250 2.0.0 Ok: queued as %s\r\n' % qid.encode())
                    if self.mode == 'close_after_250':
                        c.shutdown(socket.SHUT_RDWR)
                        return
                mail, rcpts, accepted = None, [], []
            elif verb == 'RSET':
                mail, rcpts, accepted, chunks = None, [], [], []
                gate = self.rset_gate
                if gate is not None:
                    gate.wait(60)
                w((self.rset_reply or '250 2.0.0 Ok').encode() + b'\r\n')
            elif verb == 'NOOP':
                w(b'250 2.0.0 Ok\r\n')
            elif verb == 'QUIT':
                w(b'221 2.0.0 Bye\r\n')
                return
            else:
                w(b'502 5.5.2 command not recognized\r\n')


# ----------------------------------------------------------------------------- raw client

def tls_client_hello(server_hostname='mx.test'):
    """The first flight of a Python TLS client (a ClientHello), as bytes: what a client
    speaking implicit TLS sends first (made in memory, no socket)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Client:
    """A raw SMTP client over one TCP (optionally implicit-TLS) connection."""

    def __init__(self, port, host='127.0.0.1', timeout=10, tls=False, source=None, greet=True,
                 proxy_src=None):
        self.timeout = slack(timeout)
        self.sock = socket.create_connection((host, port), self.timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b''
        if proxy_src:
            self.sock.sendall(proxy_v2(proxy_src, port))
        if tls:
            self._wrap()
        self.greeting = self.reply() if greet else None

    def _wrap(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname='mx.test')

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b'\n' not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError, OSError):
                chunk = b''
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.rstrip(b'\r').decode('utf-8', 'replace')

    def reply(self):
        """One (multi-line) reply as (code, text with lines joined by \\n); (None, '') on EOF/timeout."""
        lines = []
        while True:
            line = self._line()
            if line is None:
                return (None, '\n'.join(lines))
            lines.append(line)
            if len(line) < 4 or line[3] != '-':
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            code = None
        return (code, '\n'.join(lines))

    def cmd(self, line):
        self.send(line + '\r\n')
        return self.reply()

    def ehlo(self, name='client.test'):
        return self.cmd('EHLO ' + name)

    def starttls(self):
        code, text = self.cmd('STARTTLS')
        if code == 220:
            self._wrap()
        return code, text

    def transaction(self, tag, mail='s@example.org', rcpt='r@example.test'):
        """MAIL, RCPT, DATA and the message (mt.message(tag)) in lock-step: the codes."""
        codes = [self.cmd('MAIL FROM:<%s>' % mail)[0], self.cmd('RCPT TO:<%s>' % rcpt)[0]]
        code, _ = self.cmd('DATA')
        codes.append(code)
        if code == 354:
            self.send(stuff(message(tag)))
            codes.append(self.reply()[0])
        return codes

    def pending(self, wait=0.3):
        """Bytes the server sent beyond what was read (waits up to `wait` seconds)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            self.buf += chunk
        except (socket.timeout, ssl.SSLError, OSError):
            pass
        self.sock.settimeout(self.timeout)
        return self.buf

    def is_closed(self, wait=2.0):
        """True when the server closes the connection within `wait` seconds."""
        self.sock.settimeout(slack(wait))
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
            return False  # BlockingIOError: wait=0 makes the socket non-blocking, nothing to read
        except (ConnectionResetError, OSError):
            return True
        finally:
            try:
                self.sock.settimeout(self.timeout)
            except OSError:
                pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def message(tag, body='Hello.\r\n', size=0, headers=()):
    """An RFC 5322 message (CRLF) whose Message-ID carries tag; padded with body lines to ~size."""
    h = ['From: <sender@example.org>', 'To: <rcpt@example.test>', 'Subject: test %s' % tag,
         'Message-ID: <%s@mxtest.example>' % tag, 'Date: Mon, 01 Jan 2024 00:00:00 +0000']
    h += list(headers)
    data = ('\r\n'.join(h) + '\r\n\r\n' + body).encode()
    line = b'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789\r\n'
    if len(data) < size:
        data += line * ((size - len(data) + len(line) - 1) // len(line))
    return data


def header_values(data, name):
    """The values of field name (unfolded, stripped) in the header of message bytes data."""
    head = data.split(b'\r\n\r\n', 1)[0].decode('latin-1')
    head = re.sub(r'\r\n[ \t]', ' ', head)
    return [ln.split(':', 1)[1].strip() for ln in head.split('\r\n')
            if ln.lower().startswith(name.lower() + ':')]


def zipped(name, data):
    """A zip archive (bytes) holding one member, name, of content data."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return b.getvalue()


_MID = re.compile(rb'Message-ID: <([^@>]+)@mxtest\.example>', re.I)


def message_ids(datas):
    """Tags (from message()) found in an iterable of message bytes."""
    out = set()
    for d in datas:
        m = _MID.search(d)
        if m:
            out.add(m.group(1).decode())
    return out


def stuff(data):
    """Dot-stuffs CRLF data and appends the terminator."""
    if not data.endswith(b'\r\n'):
        data += b'\r\n'
    out = re.sub(rb'(^|\r\n)\.', rb'\1..', data)
    return out + b'.\r\n'


def trickle(sock, pieces, every, limit):
    """A slow peer's side of a connection: sends pieces (an iterable of bytes, e.g.
    itertools.repeat(b'x')) one every `every` seconds, reading what the other side says in
    between, until it closes the connection, the pieces run out or `limit` seconds pass.
    Returns (closed, seconds from the first piece to the close or the end, the bytes read).
    For the tests of what bounds a peer that never stops but never finishes (test_trickle*):
    with `every` under an idle timeout, only a total bound ends it."""
    t0 = time.time()
    got = b''
    closed = False
    it = iter(pieces)
    nxt = time.time()
    while not closed and time.time() - t0 < limit:
        if time.time() >= nxt:
            piece = next(it, None)
            if piece is None:
                break
            try:
                sock.sendall(piece)
            except OSError:
                closed = True
                break
            nxt = time.time() + every
        sock.settimeout(max(0.01, min(nxt, t0 + limit) - time.time()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        except OSError:
            chunk = b''
        if not chunk:
            closed = True
        got += chunk
    return closed, time.time() - t0, got


def drip(sock, data, every, limit=None):
    """Sends data one octet every `every` seconds (a peer answering at a trickle), for at
    most `limit` seconds; False when the other side closed the connection first."""
    t0 = time.time()
    for i in range(len(data)):
        if limit is not None and time.time() - t0 > limit:
            return True
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return False
        time.sleep(every)
    return True


def proxy_v2(src, dst_port, sport=40000, dst='127.0.0.1'):
    """A PROXY protocol v2 header: TCP over IPv4 from src:sport to dst:dst_port, or over IPv6
    when src is an IPv6 address (dst then ::1 unless given as IPv6)."""
    if ':' in src:
        if ':' not in dst:
            dst = '::1'
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack('!HH', sport, dst_port))
        return b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, 0x21]) + struct.pack('!H', len(body)) + body
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!HH', sport, dst_port)
    return b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, 0x11]) + struct.pack('!H', len(body)) + body



def proxy_hears(port, src, timeout=10):
    """Everything a client from src (PROXY v2 header first) is told until the server closes
    it, or until timeout (scaled by slack) passes without a byte; as text."""
    s = socket.create_connection(('127.0.0.1', port), timeout=slack(timeout))
    s.sendall(proxy_v2(src, port))
    got = b''
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got.decode(errors='replace')

class Result(tuple):
    """send_mail's (code, text), with .stage (connect|helo|mail|rcpt|data|eom|io: where it
    ended) and .rcpt_codes (the code of each RCPT)."""

    def __new__(cls, code, text, stage, rcpt_codes=()):
        r = tuple.__new__(cls, (code, text))
        r.stage, r.rcpt_codes = stage, list(rcpt_codes)
        return r

    code = property(lambda self: self[0])
    text = property(lambda self: self[1])


def teased(port, proxy_src, timeout=15):
    """Connects from proxy_src (PROXY header) and reads the greeting through the pregreet
    teaser: (first line, final 220 line, seconds from the first to the final one, the
    Client, still open for a transaction)."""
    c = Client(port, proxy_src=proxy_src, greet=False, timeout=slack(timeout))
    first = c._line()
    t0 = time.monotonic()
    last = first
    while last is not None and last.startswith('220-'):
        last = c._line()
    return first, last, time.monotonic() - t0, c


def patient_mail(port, proxy_src, tag):
    """A patient client: waits for the whole greeting (teased), then sends one message.
    (first line, seconds waited, the Result)."""
    first, last, waited, c = teased(port, proxy_src)
    c.ehlo('client.example.org')
    r = send_mail(port, 'a@example.org', ['u@example.test'], message(tag), client=c)
    c.close()
    return first, waited, r


def send_mail(port, mail_from, rcpts, data, ehlo='client.test', client=None, source=None,
              proxy_src=None, timeout=10):
    """One transaction; returns a Result (code, text) of the first failing step, or of
    end-of-data. With client= an open Client is used (and left open); else one is opened
    (with a PROXY v2 header from proxy_src when given) and closed."""
    rc = []
    try:
        c = client or Client(port, source=source, proxy_src=proxy_src, timeout=timeout)
    except OSError as e:
        return Result(None, 'socket error: %s' % e, 'connect')
    try:
        if client is None:
            code, text = c.greeting
            if code != 220:
                return Result(code, text, 'connect')
            code, text = c.ehlo(ehlo)
            if code != 250:
                return Result(code, text, 'helo')
        code, text = c.cmd('MAIL FROM:<%s>' % mail_from)
        if code != 250:
            return Result(code, text, 'mail')
        last = (None, '')
        for r in rcpts:
            last = c.cmd('RCPT TO:<%s>' % r)
            rc.append(last[0])
        if not any(x in (250, 251) for x in rc):
            c.cmd('RSET')
            return Result(last[0], last[1], 'rcpt', rc)
        code, text = c.cmd('DATA')
        if code != 354:
            return Result(code, text, 'data', rc)
        c.send(stuff(data))
        code, text = c.reply()
        if client is None:
            try:
                c.cmd('QUIT')
            except OSError:
                pass
        return Result(code, text, 'eom' if code is not None else 'io', rc)
    except OSError as e:
        return Result(None, 'socket error: %s' % e, 'io', rc)
    finally:
        if client is None:
            c.close()


def eicar_message(tag):
    """message(tag) with the EICAR test file as a base64 attachment."""
    import base64
    att = base64.b64encode(EICAR.encode()).decode()
    return message(tag, '--XX\r\nContent-Type: text/plain\r\n\r\nbody of %s\r\n--XX\r\n'
                   'Content-Type: application/octet-stream; name="a.com"\r\n'
                   'Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--XX--\r\n' % (tag, att),
                   headers=('MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="XX"'))


# ----------------------------------------------------------------------------- peer tools

def swaks(port, *args, timeout=60):
    """swaks against 127.0.0.1:port (add --from/--to/...); CompletedProcess with text output."""
    argv = [tool('swaks'), '--server', '127.0.0.1', '--port', str(port), '--timeout', '20'] + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=slack(timeout))


def smtp_source(port, *args, timeout=120):
    """smtp-source ARGS 127.0.0.1:port; CompletedProcess."""
    argv = [tool('smtp-source')] + list(args) + ['127.0.0.1:%d' % port]
    return subprocess.run(argv, capture_output=True, text=True, timeout=slack(timeout))


def s_client(port, data, starttls=True, timeout=30, extra=()):
    """openssl s_client [-starttls smtp] to 127.0.0.1:port fed with data (then EOF);
    CompletedProcess with text output."""
    argv = ['openssl', 's_client', '-connect', '127.0.0.1:%d' % port, '-servername', 'mx.test', '-crlf', '-ign_eof']
    if starttls:
        argv += ['-starttls', 'smtp']
    argv += list(extra)
    return subprocess.run(argv, input=data, capture_output=True, text=True, timeout=slack(timeout))
