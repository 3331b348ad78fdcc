#!/usr/bin/env python3
"""Greytrapping and a client's own record (spamd(8) GREYTRAPPING, spamdb -T/-t/-a), with the
local table, LMDB and Redis (a real redis-server).

greylist.traps lists spam trap addresses (inline, and "file:PATH" items read at load and at
each reload). A greylisted client that sends RCPT to one is trapped for trap_ttl: the trap's
RCPT gets greylisting's 451 (nothing tells the sender), every later RCPT of that client, in
this session and the next ones, 550 5.7.1 held trap_delay (spamd blacklists a trapped host:
tarpitted, then 550). A client that passed (auto-allowed here, as spamd's per-IP WHITE entry)
is not trapped. A neighbour of a trapped client is not trapped (per IP).

mxgatectl greylist allow IP [TTL] lets a client through greylisting at once (spamdb -a IP:
before, no verb did, an operator had to edit greylist.allow and reload); trap IP [TTL] traps
it, untrap IP forgets the trap; greylist list shows the client records.

Before, greylist.traps was an unknown key (mxgate -t refused the config) and the verbs were
usage errors: this test failed on main's binary at its first check."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
be = mt.Backend()
TRAP_DELAY = 1.0

traps_file = os.path.join(mt.TMP, 'traps.txt')
with open(traps_file, 'w') as f:
    f.write('# spamdb -T -a, one a line\nFileTrap@Example.TEST\n\n')

rc, out = mt.config_check(mt.proxied_config([be.url], greylist={'enabled': True, 'traps': ['not an address']}),
                          'badtrap')
mt.check(rc != 0 and 'greylist.traps[0]' in out, 'mxgate -t refuses a trap that is no address: %s %s'
         % (rc, out.strip()[-200:]))
bad = os.path.join(mt.TMP, 'badtraps.txt')
with open(bad, 'w') as f:
    f.write('ok@example.test\nnope\n')
rc, out = mt.config_check(mt.proxied_config([be.url], greylist={'enabled': True, 'traps': ['file:' + bad]}),
                          'badfile')
mt.check(rc != 0 and '%s:2:' % bad in out, 'mxgate -t names the trap file\'s bad line: %s %s'
         % (rc, out.strip()[-200:]))


def rcpts(mx, src, names, sender='spam@example.org'):
    """One session from src: MAIL, then each RCPT in turn; [(code, text, seconds)]."""
    c = mt.Client(mx.port, proxy_src=src)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<%s>' % sender)
    res = []
    for r in names:
        t0 = time.time()
        code, text = c.cmd('RCPT TO:<%s>' % r)
        res.append((code, text, time.time() - t0))
    c.cmd('QUIT')
    c.close()
    return res


def codes(res):
    return [r[0] for r in res]


def ctl(sock, *args):
    r = subprocess.run([CTL, '-s', sock] + list(args), capture_output=True, text=True, timeout=mt.slack(30))
    return r.returncode, r.stdout + r.stderr


def run(name, store):
    gl = {'enabled': True, 'store': store, 'delay': '0s', 'retry_window': '1h', 'prefix_v4': 32,
          'auto_allow_clients': 1, 'auto_allow_expire': '1d',
          'traps': ['trap@example.test', 'file:' + traps_file], 'trap_ttl': '1h', 'trap_delay': '%gs' % TRAP_DELAY}
    sock = os.path.join(mt.TMP, name + '.sock')
    cfg = mt.proxied_config([be.url], greylist=gl, control={'socket': sock}, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
    mx = mt.Mxgate(cfg, name)

    # a greylisted client mails a trap: trapped; its next RCPT in the session is refused
    res = rcpts(mx, '198.18.80.1', ['trap@example.test', 'u1@example.test'])
    mt.check(codes(res) == [451, 550], '%s: the trap\'s RCPT 451, the next one 550: %s' % (name, res))
    mt.check('5.7.1' in res[1][1] and 'spam trap' in res[1][1], '%s: the refusal says why: %r' % (name, res[1][1]))
    mt.check(mx.wait_log(r'event=greylist_trap client=198\.18\.80\.1 from=<spam@example\.org> '
                         r'rcpt=<trap@example\.test> ttl=3600 store=%s' % name, 5) is not None,
             '%s: event=greylist_trap logged' % name)
    # a later session: every RCPT refused, held trap_delay (the tarpit)
    res = rcpts(mx, '198.18.80.1', ['u2@example.test'], sender='other@example.net')
    mt.check(codes(res) == [550] and res[0][2] >= TRAP_DELAY - 0.1,
             '%s: a later session\'s RCPT 550, held %.1fs (trap_delay %gs): %s' % (name, res[0][2], TRAP_DELAY, res))
    mt.check(mx.wait_log(r'event=greylist_trapped client=198\.18\.80\.1 from=<other@example\.net> '
                         r'rcpt=<u2@example\.test> left=\d+ store=%s' % name, 5) is not None,
             '%s: event=greylist_trapped logged' % name)
    # per IP: the neighbour is greylisted as before
    res = rcpts(mx, '198.18.80.2', ['u2@example.test'])
    mt.check(codes(res) == [451], '%s: a neighbour (198.18.80.2) is greylisted, not refused: %s' % (name, res))

    # a passed client (auto-allowed after one pass: spamd's WHITE) mails a trap: not trapped
    res = rcpts(mx, '198.18.81.1', ['v1@example.test', 'v1@example.test'], sender='news@example.org')
    mt.check(codes(res) == [451, 250], '%s: 198.18.81.1 passes a triplet: %s' % (name, res))
    seq = [0]

    def allowed():
        seq[0] += 1
        return codes(rcpts(mx, '198.18.81.1', ['w%d@example.test' % seq[0]], sender='news@example.org')) == [250]
    mt.check(mt.wait_for(allowed, timeout=10), '%s: and is auto-allowed' % name)
    res = rcpts(mx, '198.18.81.1', ['filetrap@example.test', 'x1@example.test'], sender='news@example.org')
    mt.check(codes(res) == [250, 250], '%s: a passed client mailing a trap (from the file) is not trapped: %s'
             % (name, res))
    # the file's trap traps a greylisted client (any case)
    res = rcpts(mx, '198.18.84.1', ['FILETRAP@example.test', 'x1@example.test'])
    mt.check(codes(res) == [451, 550], '%s: the trap file\'s address traps: %s' % (name, res))

    # the verbs: list, untrap, allow, trap
    rc, out = ctl(sock, 'greylist', 'list')
    mt.check(rc == 0 and 'client 198.18.80.1 trapped expires=' in out and 'client 198.18.84.1 trapped' in out
             and '2 client records' in out, '%s: greylist list shows the trap records: %r' % (name, out[-400:]))
    rc, out = ctl(sock, '--json', 'greylist', 'list')
    j = json.loads(out) if rc == 0 else {}
    mt.check({c['client']: c['state'] for c in j.get('clients', [])} ==
             {'198.18.80.1': 'trapped', '198.18.84.1': 'trapped'} and j.get('client_count') == 2,
             '%s: --json greylist list: clients %r' % (name, j.get('clients')))
    rc, out = ctl(sock, 'greylist', 'untrap', '198.18.80.1')
    mt.check(rc == 0 and 'record deleted (was trapped)' in out, '%s: greylist untrap: %r' % (name, out))
    res = rcpts(mx, '198.18.80.1', ['u3@example.test'])
    mt.check(codes(res) == [451], '%s: untrapped: greylisted again, not refused: %s' % (name, res))
    # untrap right after the trap: with LMDB the worker's record is still in its write queue
    # (batched every 500 ms), not in the map; the untrap goes through the writers all the same,
    # and answers what it deleted — the queued trap (it answered "no record (was none)")
    res = rcpts(mx, '198.18.87.1', ['trap@example.test'])
    rc, out = ctl(sock, 'greylist', 'untrap', '198.18.87.1')
    mt.check(rc == 0 and 'record deleted (was trapped)' in out,
             '%s: untrap at once after the trap answers the trap it deleted: %r' % (name, out))
    res = rcpts(mx, '198.18.87.1', ['u4@example.test'])
    mt.check(rc == 0 and codes(res) == [451], '%s: untrap at once after the trap: greylisted, not refused: %s %r'
             % (name, res, out))
    rc, out = ctl(sock, 'greylist', 'allow', '198.18.82.1', '2h')
    mt.check(rc == 0 and '198.18.82.1: allowed for 7200s (was none)' in out, '%s: greylist allow: %r' % (name, out))
    res = rcpts(mx, '198.18.82.1', ['y1@example.test', 'trap@example.test'])
    mt.check(codes(res) == [250, 250], '%s: an allowed client passes at once, and is not trapped: %s' % (name, res))
    mt.check(mx.wait_log(r'event=greylist_allow reason=runtime client=198\.18\.82\.1 ', 5) is not None,
             '%s: logged greylist_allow reason=runtime' % name)
    rc, out = ctl(sock, '--json', 'greylist', 'trap', '198.18.82.1')
    j = json.loads(out) if rc == 0 else {}
    mt.check(j.get('was') == 'allowed' and j.get('state') == 'trapped' and j.get('expires_in_ms') == 3600000,
             '%s: greylist trap replaces the allow record (trap_ttl): %r' % (name, out))
    res = rcpts(mx, '198.18.82.1', ['y2@example.test'])
    mt.check(codes(res) == [550], '%s: trapped by the verb: refused: %s' % (name, res))
    rc, out = ctl(sock, 'greylist', 'disallow', '198.18.82.1')
    mt.check(rc == 0 and 'trapped' in out and 'not changed' in out,
             '%s: disallow leaves a trap record: %r' % (name, out))
    rc, out = ctl(sock, 'greylist', 'allow', 'nope')
    mt.check(rc != 0 and 'not an IP address' in out, '%s: allow nope: %r' % (name, out))
    rc, out = ctl(sock, 'greylist', 'trap', '198.18.82.1', '0s')
    mt.check(rc != 0 and 'TTL' in out, '%s: trap with TTL 0s refused: %r' % (name, out))
    # trapped: 198.18.80.1, .84.1, .87.1 by their RCPTs, .82.1 by the verb; refused: 80.1 twice,
    # 84.1, 82.1; allowed by the verb: 82.1's two RCPTs
    got = [mx.metric('greylist_trapped_total'), mx.metric('greylist_trap_refused_total'),
           mx.metric('greylist_allowed_total{reason="runtime"}')]
    mt.check(got == [4, 4, 2], '%s: /metrics trapped_total, trap_refused_total, allowed_total{runtime}: %s'
             % (name, got))
    if name == 'local':
        # the trap file is read again at a reload
        with open(traps_file, 'a') as f:
            f.write('newtrap@example.test\n')
        n = mx.count_log(r'event=reloaded ')
        mx.reload(cfg)
        mt.check(mt.wait_for(lambda: mx.count_log(r'event=reloaded ') > n, timeout=10), 'local: reloaded')
        res = rcpts(mx, '198.18.85.1', ['newtrap@example.test', 'z@example.test'])
        mt.check(codes(res) == [451, 550], 'local: a trap added to the file traps after a reload: %s' % res)
    mx.stop()


def run_defer_at_data():
    """defer_at: data: the trap's RCPT is looked at when it comes (451, trapped); the client's
    other RCPTs go to the backend, and its DATA is refused."""
    gl = {'enabled': True, 'store': 'local', 'delay': '0s', 'retry_window': '1h', 'defer_at': 'data',
          'traps': ['trap@example.test'], 'trap_delay': '0s'}
    mx = mt.Mxgate(mt.proxied_config([be.url], greylist=gl), 'defer-data')
    c = mt.Client(mx.port, proxy_src='198.18.86.1')
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<spam@example.org>')
    r = [c.cmd('RCPT TO:<trap@example.test>')[0], c.cmd('RCPT TO:<u@example.test>')[0]]
    d = c.cmd('DATA')
    c.close()
    mt.check(r == [451, 250] and d[0] == 550 and 'spam trap' in d[1],
             'defer_at: data: the trap RCPT 451, the next to the backend, DATA refused: %s %s' % (r, d))
    mt.check(mx.wait_log(r'event=greylist_trapped client=198\.18\.86\.1 .*stage=data', 5) is not None,
             'defer_at: data: greylist_trapped stage=data logged')
    mx.stop()


run_defer_at_data()
run('local', 'local')
run('lmdb', 'lmdb:' + os.path.join(mt.TMP, 'gl-lmdb'))
run('redis', 'redis://127.0.0.1:%d' % red.port)
mt.finish()
