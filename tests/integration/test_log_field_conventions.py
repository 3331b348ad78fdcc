#!/usr/bin/env python3
"""docs/operations.md "Log events": the fields follow one set of conventions in every module —
a value from a peer (or an operator) is written as it is only when it holds no blank, quote,
backslash or control octet, else quoted and escaped; there are no bare words outside
key=value; `client=` is on every refusal of a client. Lines that did not, each parsed here
strictly (TIMESTAMP LEVEL ID, then key=value pairs only):

- event=spf_helo wrote the client's HELO raw: `EHLO evil.example event=forged "q` made a line
  with a second event= key and an open quote;
- event=greylist_pass put the operator's triplet in quotes without escaping: a quoted local
  part (`"ab"@example.org`) ended the value early;
- event=rspamd_result put rspamd's action in quotes unescaped (a scripted rspamd answers
  one with a '"');
- event=virus wrote clamd's virus name raw (its blanks become `_`, but a scripted clamd's
  `"x"` made an open quote in an unquoted value);
- event=rules_problem, rules_evals_missing and rules_quarantine_unavailable ended in a
  bare parenthesis, `(mxgate -t lists all)`: now `reason="..."`;
- event=reject stage=data reason=backend and event=tempfail reason=no_backend had no
  `client=`, unlike every other refusal;
- event=listening wrote a listener's `tls` and `proxy_protocol` as enum numbers (`tls=0`),
  not in the words its config takes (`tls=none proxy_protocol=false`);
- event=auth_failed put Dovecot's reason in quotes with its '"' and controls replaced but
  its '\\' kept: a reason ending in '\\' escaped the closing quote (a scripted Dovecot);
- event=redis_error put Redis's error text in quotes unescaped (a scripted Redis answers
  with a '"' and a '\\')."""
import base64
import os
import re
import socket
import struct
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HEAD = re.compile(r'^\S+ (debug|info|warning|error) (-|[0-9A-Za-z]+) (.*)$')
PAIR = re.compile(r'([a-z][a-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')


def unq(v):
    if not v.startswith('"'):
        return v
    out, i, s = [], 0, v[1:-1]
    while i < len(s):
        if s[i] == '\\':
            c = s[i + 1]
            if c == 'x':
                out.append(chr(int(s[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append({'n': '\n', 'r': '\r', 't': '\t'}.get(c, c))
            i += 2
            continue
        out.append(s[i])
        i += 1
    return ''.join(out)


def parse(line):
    """[(key, unquoted value)] of a log line, or None when it is not only key=value pairs."""
    m = HEAD.match(line)
    if not m:
        return None
    rest, pos, out = m.group(3), 0, []
    while pos < len(rest):
        p = PAIR.match(rest, pos)
        if not p:
            return None
        out.append((p.group(1), unq(p.group(2))))
        pos = p.end()
    return out


def lines_of(mx, event):
    return [ln for ln in mx.log().splitlines() if re.search(r' event=%s( |$)' % event, ln)]


def check_line(mx, event, what, want=None, timeout=10):
    """The first line of event parses as key=value pairs only, with one event key; want:
    {key: value} it must hold."""
    mt.wait_for(lambda: lines_of(mx, event), timeout)
    got = lines_of(mx, event)
    if not mt.check(got, '%s: event=%s is logged' % (what, event)):
        return None
    kv = parse(got[0])
    ok = kv is not None and [k for k, _ in kv].count('event') == 1
    d = dict(kv or [])
    for k, v in (want or {}).items():
        ok = ok and d.get(k) == v
    mt.check(ok, '%s: %s' % (what, got[0]))
    return d


mt.need('swaks')
be = mt.Backend()
sock = os.path.join(mt.TMP, 'ctl.sock')

# ---- one daemon: SPF (static records), greylisting, rules with problems, a control socket
rules = os.path.join(mt.TMP, 'conv.cf')
with open(rules, 'w') as f:
    f.write('header CONV_HOLD Subject =~ /hold me/\nscore CONV_HOLD 0.1\naction CONV_HOLD quarantine\n')
    f.write('body CONV_EVAL eval:check_made_up_thing()\nscore CONV_EVAL 1\n')
    for i in range(25):   # more problems (warnings: not applied) than the log lists (20)
        f.write('required_score 6.%d\n' % i)
cfg = mt.config([be.url], workers=1, control={'socket': sock},
                spf={'enabled': True, 'helo_always': True,
                     'records': ['example.org TXT v=spf1 ip4:127.0.0.1 -all']},
                greylist={'enabled': True},
                rules={'files': [rules], 'actions': {'add_header': 5}})
mx = mt.Mxgate(cfg, name='mx-conv')

check_line(mx, 'listening', 'a listener, in the words of its config', {'tls': 'none', 'proxy_protocol': 'false'})
check_line(mx, r'rules_problem more=\d+', 'more rule problems than listed', timeout=30)
check_line(mx, 'rules_evals_missing', 'a missing eval', {'reason': 'each eval as function:rules+metas it blocks'})
check_line(mx, 'rules_quarantine_unavailable', 'action quarantine without a quarantine backend',
           {'rules': 'CONV_HOLD', 'reason': 'action quarantine without a quarantine backend: 451'})

helo = 'evil.example event=forged "q'
c = mt.Client(mx.port)
c.cmd('EHLO ' + helo)
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
c.cmd('QUIT')
d = check_line(mx, 'spf_helo', "the client's HELO in event=spf_helo")
if d is not None:
    mt.check(d.get('helo') == helo, 'spf_helo: the HELO as sent: %r' % d.get('helo'))

sender = '"ab"@example.org'
rc, out, err = mt.ctl(sock, 'greylist', 'pass', '198.18.7.7', sender, 'c@example.test')
mt.check(rc == 0, 'greylist pass with a quoted local part: %r %r' % (out, err))
d = check_line(mx, 'greylist_pass', 'the triplet of greylist pass')
if d is not None:
    mt.check(d.get('triplet') == '198.18.7.0/24|%s|c@example.test' % sender, 'greylist_pass: the triplet: %r' % d.get('triplet'))
    mt.check(re.search(r' triplet="', lines_of(mx, 'greylist_pass')[0]) is not None, 'greylist_pass: still in quotes')
mx.stop()

# ---- refusals at data: the backend's 5xx, and no backend at all, name the client
rej = mt.Backend(mode='reject_data')
mx2 = mt.Mxgate(mt.config([rej.url], workers=1), name='mx-rej')
code, _ = mt.send_mail(mx2.port, 'a@example.org', ['b@example.test'], mt.message('conv-rej', 'x\r\n'))
mt.check(code == 554, "the backend's 554 reaches the client: %s" % code)
check_line(mx2, 'reject stage=data reason=backend', 'a backend refusal at data',
           {'stage': 'data', 'reason': 'backend', 'client': '127.0.0.1'})
mx2.stop()
mx3 = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % mt.dead_port()], workers=1), name='mx-dead')
code, _ = mt.send_mail(mx3.port, 'a@example.org', ['b@example.test'], mt.message('conv-dead', 'x\r\n'))
mt.check(code is not None and code // 100 == 4, 'no backend: 4xx: %s' % code)
check_line(mx3, 'tempfail', 'no backend', {'reason': 'no_backend', 'client': '127.0.0.1'})
mx3.stop()


def scripted_scanner(plugin, answer, tag, want_code, event, key, want, what, options=None, **cfg):
    """A scripted peer for plugin (one connection at a time, each answered by answer(conn)),
    a daemon using it (the plugin's options, cfg's keys), one message (want_code), and the
    value of key in its event line."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                try:
                    answer(conn)
                except OSError:
                    pass
    threading.Thread(target=serve, daemon=True).start()
    pl = {'name': plugin, 'address': '127.0.0.1:%d' % srv.getsockname()[1]}
    if options:
        pl['options'] = options
    mxs = mt.Mxgate(mt.config([be.url], workers=1, plugins=[pl], **cfg), name='mx-' + plugin + '-' + tag)
    code, _ = mt.send_mail(mxs.port, 'a@example.org', ['b@example.test'], mt.message(tag, 'x\r\n'))
    mt.check(code == want_code, '%s: the message gets %s: %s' % (plugin, want_code, code))
    d = check_line(mxs, event, what)
    if d is not None:
        mt.check(d.get(key) == want, '%s: %s as the peer gave it: %r' % (event, key, d.get(key)))
    mxs.stop()
    srv.close()


def clamd_answer(conn):
    """clamd's INSTREAM, answered with a virus name holding blanks and quotes (clamd's own
    names are plain: real ones name EICAR alike)."""
    buf = b''
    while b'\0\0\0\0' not in buf[10:] and len(buf) < 1 << 22:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    conn.sendall(b'PONG\0' if buf.startswith(b'zPING') else b'stream: Odd Name "x" FOUND\0')


def rspamd_answer(conn):
    """rspamd's /checkv2, answered with an action holding a quote (rspamd's own are words)."""
    f = conn.makefile('rb')
    f.readline()
    n = 0
    while True:
        ln = f.readline().decode('latin-1').strip()
        if not ln:
            break
        k, _, v = ln.partition(':')
        if k.strip().lower() == 'content-length':
            n = int(v)
    f.read(n)
    out = b'{"score": 1.5, "required_score": 15.0, "action": "odd \\"x\\" action", "symbols": {}}'
    conn.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n'
                 b'Content-Length: %d\r\n\r\n' % len(out) + out)


# clamd turns the name's blanks into '_'; the quotes stay and must be escaped
scripted_scanner('clamd', clamd_answer, 'conv-virus', 554, 'virus', 'name', 'Odd_Name_"x"', "clamd's virus name")
# the same name as a quarantine's reason: the quarantine line keeps its fields (it wrote
# reason="virus Odd_Name_"x"" unescaped, and the line did not parse)
scripted_scanner('clamd', clamd_answer, 'conv-qvirus', 250, 'quarantine', 'reason', 'virus Odd_Name_"x"',
                 "clamd's quarantine reason", options={'action': 'quarantine'},
                 quarantine='maildir:' + os.path.join(mt.TMP, 'conv-quarantine'))
scripted_scanner('rspamd', rspamd_answer, 'conv-rspamd', 250, 'rspamd_result', 'action', 'odd "x" action',
                 "rspamd's action")
def serve_forever(srv, answer):
    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


# ---- a scripted Dovecot auth service whose FAIL reason ends in a backslash
DOVECOT_REASON = 'bad "pw" \\'


def dovecot_answer(conn):
    with conn:
        try:
            conn.sendall(b'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t' + b'0' * 32 + b'\nDONE\n')
            f = conn.makefile('rb')
            for ln in f:
                fields = ln.decode('latin-1').rstrip('\n').split('\t')
                if fields[0] == 'AUTH':
                    conn.sendall(('FAIL\t%s\tuser=alice\treason=%s\n' % (fields[1], DOVECOT_REASON)).encode())
        except OSError:
            pass


dsrv = socket.socket()
dsrv.bind(('127.0.0.1', 0))
dsrv.listen(8)
serve_forever(dsrv, dovecot_answer)
crt, key = mt.cert()
mxa = mt.Mxgate(mt.config([be.url], workers=1,
                          listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                          tls={'certificate': crt, 'key': key},
                          auth={'dovecot': 'inet:127.0.0.1:%d' % dsrv.getsockname()[1], 'timeout': '10s',
                                'failure_delay': '10ms', 'max_delay': '20ms'}), name='mx-auth')
c = mt.Client(mxa.port, tls=True)
c.ehlo()
code, _ = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0wrong').decode())
c.close()
mt.check(code == 535, "a scripted Dovecot's FAIL: 535: %s" % code)
d = check_line(mxa, 'auth_failed', "Dovecot's reason ending in a backslash")
if d is not None:
    mt.check(d.get('reason', '').endswith('\\'), "auth_failed: the reason's backslash kept: %r" % d.get('reason'))
mxa.stop()
dsrv.close()

# ---- a scripted Redis answering every command with an error holding a quote and a backslash
REDIS_ERR = 'ERR odd "x" \\'


def redis_answer(conn):
    with conn:
        try:
            f = conn.makefile('rb')
            while True:
                head = f.readline()
                if not head:
                    return
                if head[:1] != b'*':
                    continue
                for _ in range(int(head[1:])):
                    n = int(f.readline()[1:])
                    f.read(n + 2)
                conn.sendall(('-%s\r\n' % REDIS_ERR).encode())
        except (OSError, ValueError):
            pass


rsrv = socket.socket()
rsrv.bind(('127.0.0.1', 0))
rsrv.listen(8)
serve_forever(rsrv, redis_answer)
mxr = mt.Mxgate(mt.config([be.url], workers=1,
                          greylist={'enabled': True, 'store': 'redis://127.0.0.1:%d' % rsrv.getsockname()[1]}),
                name='mx-redis')
d = check_line(mxr, 'redis_error', "Redis's error text")
if d is not None:
    mt.check(d.get('reply') == REDIS_ERR, 'redis_error: the reply as Redis gave it: %r' % d.get('reply'))
mxr.stop()
rsrv.close()
mt.finish()
