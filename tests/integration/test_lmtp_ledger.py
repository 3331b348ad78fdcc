#!/usr/bin/env python3
"""The delivery ledger (docs/operations.md "LMTP backends: one reply per recipient", the
retry ledger): a single LMTP server (Dovecot) answers 250, 250, 452 (r3 over quota) after the
dot; the client hears 451 (no backend said 250 for r3) and sends the same message again, as
its queue does. Before the ledger each retry gave r1 and r2 another copy; now the retry's r1
and r2 are answered from the ledger and only r3 goes to the server.

- quota: the same message twice while r3 is over quota: r1 and r2 one copy each, the second
  transaction to the server names r3 only (event=ledger_add, event=ledger_hit by name); then
  a message differing in one octet (same Message-ID): no hit, r1 and r2 get that one; then the
  quota frees: the third try delivers to r3 alone, the client's 250; a different message to
  the same three: delivered to all; the message again to r1 and r2 only: every recipient in
  the ledger, the client's 250, nothing sent.
- replayfail: the LMTP server takes r1 and defers r2 and r3, the replay to the backup fails
  too (451 after the dot): the client hears 451; its retry skips r1 (every attempt failed
  after some recipients got theirs: the other way to a copy per retry before the ledger).
- swaks: the same with a real client that pipelines (swaks --pipeline): the hit lets a
  connection with DATA open go (closed, never the dot).
- reset: the client resets the connection while the replay after r1's delivery is under
  way: it heard nothing and will send the message again: r1 goes into the ledger.
- evict: max_entries 1: the oldest of the two goes at once (event=ledger_evict), its
  recipient gets a second copy on the retry, the other none.
- off: backends.retry_ledger.max_entries: 0: the retry repeats r1 and r2 (the old way, as an
  operator who turns it off gets).
- restart: backends.retry_ledger.store lmdb:/dir: the first try's r1 and r2 go to the
  directory (event=ledger_stored), mxgate is stopped and started again (a deploy, a crash):
  the retry still skips them (in memory, the default, they get a second copy).
- reload: a reload from memory to lmdb:/dir; the try after it is in the directory: the
  retry after a restart skips r1 and r2.
- twoproc: two mxgate processes on one host name the same directory (two nodes behind one
  MX on one machine, or an old and a new process during a deploy): the retry reaching the
  other one skips r1 and r2.
- storefail: the directory fails under them (its map damaged: every read fails): the retry
  at the other process is delivered as without the ledger (a second copy for r1 and r2, never
  a loss), event=ledger_store_error reason=read_failed action=deliver once.
The ledger's expiry is a unit test with an injected clock (tests/unit/test_ledger.c).
"""
import os
import re
import socket
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from hostile_peer import scripted, hang  # noqa: E402

FROM = 's@example.org'
R = ['r1@example.test', 'r2@example.test', 'r3@example.test']
A = mt.message('ledgerA', body='Hello ledger.\r\n')
A1 = mt.message('ledgerA', body='Hello ledger!\r\n')     # one octet changed
B = mt.message('ledgerB', body='Another one.\r\n')

mt.need()


copies = mt.copies


def tried(be, body):
    """The recipients of each transaction of the message holding body that reached the dot."""
    with be.lock:
        return [m['rcpts'] for m in be.attempts if body in m.get('data', b'')]


def send(mx, data, rcpts=R):
    return mt.send_mail(mx.port, FROM, rcpts, data, timeout=30)


if mt.case_wanted('quota'):
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-quota')
    mx = mt.Mxgate(mt.config([be.url], workers=2, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name='mx-quota')
    code, text = send(mx, A)
    mt.check(code == 451, 'first try: 451, r3 over quota (%s %s)' % (code, text))
    mt.check(copies(be, b'Hello ledger.') == {R[0]: 1, R[1]: 1}, 'first try: r1 and r2 have it (%s)' % copies(be, b'Hello ledger.'))
    line = mx.wait_log(r'event=ledger_add [^\n]*', 10)
    mt.check(line is not None and 'rcpts=<%s>,<%s>' % (R[0], R[1]) in line.group(0),
             'ledger_add names r1 and r2 (%s)' % (line and line.group(0)))

    code, text = send(mx, A)
    mt.check(code == 451, 'the retry: 451 again, r3 still over quota (%s %s)' % (code, text))
    got = copies(be, b'Hello ledger.')
    mt.check(got == {R[0]: 1, R[1]: 1}, 'the retry: no second copy for r1 and r2 (%s)' % got)
    line = mx.wait_log(r'event=ledger_hit [^\n]*', 10)
    mt.check(line is not None and 'skipped=<%s>,<%s>' % (R[0], R[1]) in line.group(0) and ' left=1 ' in line.group(0),
             'ledger_hit names r1 and r2 (%s)' % (line and line.group(0)))
    mt.check(tried(be, b'Hello ledger.')[-1:] == [[R[2]]],
             'the retry went to the server for r3 alone (%s)' % tried(be, b'Hello ledger.'))
    n = len(re.findall(r'event=lmtp_partial ', mx.log()))
    mt.check(n == 1, 'lmtp_partial once, for the first try only: the retry the server deferred '
             'again delivered to nobody (%d lines)' % n)

    # one octet changed: another message, no hit
    hits = len(re.findall(r'event=ledger_hit ', mx.log()))
    code, text = send(mx, A1)
    mt.check(code == 451, 'a changed octet: 451 (r3) (%s %s)' % (code, text))
    got = copies(be, b'Hello ledger!')
    mt.check(got == {R[0]: 1, R[1]: 1}, 'a changed octet: r1 and r2 get that message (%s)' % got)
    mt.check(len(re.findall(r'event=ledger_hit ', mx.log())) == hits, 'a changed octet: no ledger_hit')

    # the quota frees: the next retry delivers to r3 alone
    be.lmtp_codes = {}
    code, text = send(mx, A)
    mt.check(code == 250, 'the quota freed: the retry gets 250 (%s %s)' % (code, text))
    got = copies(be, b'Hello ledger.')
    mt.check(got == {a: 1 for a in R}, 'each of r1, r2, r3 has one copy (%s)' % got)
    mt.check(tried(be, b'Hello ledger.')[-1:] == [[R[2]]], 'that retry named r3 alone (%s)' % tried(be, b'Hello ledger.'))

    # a different message to the same recipients: delivered to all
    code, text = send(mx, B)
    mt.check(code == 250, 'another message: 250 (%s %s)' % (code, text))
    got = copies(be, b'Another one.')
    mt.check(got == {a: 1 for a in R}, 'another message reaches all three (%s)' % got)

    # every recipient in the ledger: 250, nothing sent
    n = len(tried(be, b'Hello ledger.'))
    octets = mx.metric('bytes_delivered_total')
    code, text = send(mx, A, R[:2])
    mt.check(code == 250, 'every recipient in the ledger: 250 (%s %s)' % (code, text))
    mt.check(len(tried(be, b'Hello ledger.')) == n and copies(be, b'Hello ledger.') == {a: 1 for a in R},
             'every recipient in the ledger: nothing sent (%s)' % tried(be, b'Hello ledger.'))
    mt.check(mx.wait_log(r'event=delivered [^\n]*backend=ledger [^\n]*rcpts=0 ', 10) is not None,
             'event=delivered backend=ledger rcpts=0')
    mt.check(mx.metric('bytes_delivered_total') == octets,
             'bytes_delivered_total unchanged: nothing sent (%s -> %s)' % (octets, mx.metric('bytes_delivered_total')))
    counts = [mx.metric(s) for s in ('ledger_adds_total', 'ledger_hits_total', 'ledger_evictions_total')]
    mt.check(counts == [4, 6, 0], 'counters: 4 recipients added (r1, r2 of A and of A\'), 6 skipped (r1, r2 on three '
             'retries of A), none evicted (%s)' % counts)
    mt.check(mx.alive(), 'daemon alive')
    mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    be.stop()

if mt.case_wanted('replayfail'):
    # the LMTP server takes r1, defers r2 and r3; the replay to the backup fails too (451
    # after the dot): the client hears 451 with r1 delivered; its retry skips r1
    be = mt.Backend(lmtp=True, lmtp_codes={R[1]: 452, R[2]: 452}, name='lmtp-some')
    backup = mt.Backend(mode='tempfail_data', name='backup-451')
    mx = mt.Mxgate(mt.config([be.url, {'address': backup.url, 'backup': True}], workers=1,
                             backends={'max_attempts': 2}), name='mx-replayfail')
    for i in range(2):
        code, text = send(mx, A)
        mt.check(code == 451, 'replayfail try %d: 451 (%s %s)' % (i + 1, code, text))
    got = copies(be, b'Hello ledger.')
    mt.check(got == {R[0]: 1}, 'replayfail: r1 one copy, none from the retry (%s)' % got)
    mt.check(tried(be, b'Hello ledger.') == [R, R[1:]], 'replayfail: the retry named r2 and r3 only (%s)'
             % tried(be, b'Hello ledger.'))
    mt.check(tried(backup, b'Hello ledger.') == [R[1:], R[1:]], 'replayfail: each replay named r2 and r3 (%s)'
             % tried(backup, b'Hello ledger.'))
    line = mx.wait_log(r'event=ledger_hit [^\n]*', 10)
    mt.check(line is not None and 'skipped=<%s> ' % R[0] in line.group(0) + ' ', 'replayfail: ledger_hit names r1 (%s)'
             % (line and line.group(0)))
    mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    be.stop()
    backup.stop()

if mt.case_wanted('swaks'):
    # a real client that pipelines (swaks --pipeline, RFC 2920): DATA goes to the server with
    # the last RCPT, so the hit lets a connection go with DATA open (closed, no dot)
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-swaks')
    mx = mt.Mxgate(mt.config([be.url], workers=1), name='mx-swaks')
    path = os.path.join(mt.TMP, 'ledger-swaks.eml')
    with open(path, 'wb') as f:
        f.write(mt.message('ledgerS', body='Hello pipelined.\r\n'))
    outs = [mt.swaks(mx.port, '--from', FROM, '--to', ','.join(R), '--data', path, '--pipeline') for _ in range(2)]
    mt.check(all(' 451 ' in '\n'.join(o.stdout.splitlines()[-4:]) or '<** 451' in o.stdout for o in outs),
             'swaks: 451 both times (%s)' % [o.stdout[-300:] for o in outs])
    got = copies(be, b'Hello pipelined.')
    mt.check(got == {R[0]: 1, R[1]: 1}, 'swaks: r1 and r2 one copy each after the retry (%s)' % got)
    mt.check(tried(be, b'Hello pipelined.')[-1:] == [[R[2]]], 'swaks: the retry named r3 alone (%s)'
             % tried(be, b'Hello pipelined.'))
    mt.check(mx.alive(), 'swaks: daemon alive')
    mx.stop()
    be.stop()

if mt.case_wanted('reset'):
    # r1 taken, r2 and r3 deferred; the replay's server is silent after the dot; the client
    # resets the connection meanwhile: it heard no reply, its queue sends the message again,
    # so r1 goes into the ledger as after a 451
    be = mt.Backend(lmtp=True, lmtp_codes={R[1]: 452, R[2]: 452}, name='lmtp-reset')
    backup = scripted('silent-backup', {'dot': hang})
    mx = mt.Mxgate(mt.config([be.url, {'address': backup.url, 'backup': True}], workers=1,
                             backends={'max_attempts': 2}), name='mx-reset')
    c = mt.Client(mx.port)
    c.ehlo('client.test')
    codes = [c.cmd('MAIL FROM:<%s>' % FROM)[0]] + [c.cmd('RCPT TO:<%s>' % a)[0] for a in R] + [c.cmd('DATA')[0]]
    mt.check(codes == [250, 250, 250, 250, 354], 'reset: the envelope taken (%s)' % codes)
    c.send(mt.stuff(A))
    mt.check(mx.wait_log(r'event=lmtp_partial ', 30) is not None, 'reset: r1 delivered, the replay under way')
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.sock.close()
    line = mx.wait_log(r'event=ledger_add [^\n]*', 30)
    mt.check(line is not None and 'rcpts=<%s> ' % R[0] in line.group(0), 'reset: r1 in the ledger (%s)'
             % (line and line.group(0)))
    mt.check(mx.alive(), 'reset: daemon alive')
    mx.stop()
    be.stop()
    backup.stop()

def two_tries(name, retry_ledger):
    """r3 over quota at a single LMTP server, backends.retry_ledger as given, the message sent
    twice: (server, daemon, the two codes, the copies each recipient got)."""
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-' + name)
    mx = mt.Mxgate(mt.config([be.url], workers=1, backends={'retry_ledger': retry_ledger}), name='mx-' + name)
    codes = [send(mx, A)[0] for _ in range(2)]
    return be, mx, codes, copies(be, b'Hello ledger.')


if mt.case_wanted('evict'):
    # max_entries 1: r1 and r2 go in, r1 (the oldest) out at once (event=ledger_evict); the
    # retry skips r2 only, r1 gets a second copy as before the ledger
    be, mx, codes, got = two_tries('evict', {'max_entries': 1})
    line = mx.wait_log(r'warning \S+ event=ledger_evict [^\n]*', 10)
    mt.check(line is not None and 'evicted=1 max_entries=1' in line.group(0),
             'evict: event=ledger_evict evicted=1, a warning (%s)' % (line and line.group(0)))
    mt.check(codes == [451, 451], 'evict: 451 twice (%s)' % codes)
    mt.check(got == {R[0]: 2, R[1]: 1}, 'evict: r1 (evicted) a second copy, r2 none (%s)' % got)
    mx.stop()
    be.stop()

if mt.case_wanted('off'):
    be, mx, codes, got = two_tries('off', {'max_entries': 0})
    mt.check(codes == [451, 451], 'off: 451 twice (%s)' % codes)
    mt.check(got == {R[0]: 2, R[1]: 2}, 'off: the retry repeats r1 and r2, as before the ledger (%s)' % got)
    mt.check('event=ledger_' not in mx.log(), 'off: no ledger line')
    mx.stop()
    be.stop()

def ledger_dir(name):
    return {'store': 'lmdb:' + os.path.join(mt.TMP, 'ledger-' + name)}


def stored(mx):
    """Waits for the first try's r1 and r2 to be committed to the directory."""
    line = mx.wait_log(r'event=ledger_stored store=lmdb:\S+ queue_id=\S+ keys=2', 30)
    mt.check(line is not None, '%s: event=ledger_stored keys=2' % mx.name)


def retried(mx, be, case):
    """The retry at mx (after a restart, at the other process): 451 (r3 still over quota),
    r1 and r2 skipped by the ledger, no second copy."""
    code, text = send(mx, A)
    mt.check(code == 451, '%s: the retry: 451, r3 still over quota (%s %s)' % (case, code, text))
    got = copies(be, b'Hello ledger.')
    mt.check(got == {R[0]: 1, R[1]: 1}, '%s: the retry: no second copy for r1 and r2 (%s)' % (case, got))
    line = mx.wait_log(r'event=ledger_hit [^\n]*', 10)
    mt.check(line is not None and 'skipped=<%s>,<%s>' % (R[0], R[1]) in line.group(0),
             '%s: ledger_hit names r1 and r2 (%s)' % (case, line and line.group(0)))


if mt.case_wanted('restart'):
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-restart')
    cfg = mt.config([be.url], workers=1, backends={'retry_ledger': ledger_dir('restart')})
    mx = mt.Mxgate(cfg, name='mx-restart')
    code, text = send(mx, A)
    mt.check(code == 451, 'restart: first try 451, r3 over quota (%s %s)' % (code, text))
    stored(mx)
    mx.stop()
    mx = mt.Mxgate(cfg, name='mx-restart-2')
    retried(mx, be, 'restart')
    mt.check(tried(be, b'Hello ledger.')[-1:] == [[R[2]]], 'restart: the retry named r3 alone (%s)'
             % tried(be, b'Hello ledger.'))
    # the quota frees: r3 alone gets it, the client's 250
    be.lmtp_codes = {}
    code, text = send(mx, A)
    mt.check(code == 250 and copies(be, b'Hello ledger.') == {a: 1 for a in R},
             'restart: the quota freed: 250, one copy each (%s %s %s)' % (code, text, copies(be, b'Hello ledger.')))
    mt.check('event=ledger_store_error' not in mx.log(), 'restart: no ledger_store_error')
    mt.check(not mx.malformed_log_lines(), 'restart: log lines in form: %s' % mx.malformed_log_lines()[:3])
    mx.stop()
    be.stop()

if mt.case_wanted('reload'):
    # a reload from memory to lmdb:/dir: the new generation's workers write the ledger there
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-reload')
    mx = mt.Mxgate(mt.config([be.url], workers=2), name='mx-reload')
    cfg = mt.config([be.url], workers=2, backends={'retry_ledger': ledger_dir('reload')})
    at = mx.log_size()
    mx.reload(cfg)
    mt.check(mx.wait_log(r'event=reloaded', timeout=30, start=at) is not None, 'reload: event=reloaded')
    code, text = send(mx, A)
    mt.check(code == 451, 'reload: first try 451 (%s %s)' % (code, text))
    stored(mx)
    mx.stop()
    mx = mt.Mxgate(cfg, name='mx-reload-2')
    retried(mx, be, 'reload')
    mx.stop()
    be.stop()

if mt.case_wanted('twoproc'):
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-twoproc')
    mxa = mt.Mxgate(mt.config([be.url], workers=1, backends={'retry_ledger': ledger_dir('two')}), name='mx-two-a')
    mxb = mt.Mxgate(mt.config([be.url], workers=2, backends={'retry_ledger': ledger_dir('two')}), name='mx-two-b')
    code, text = send(mxa, A)
    mt.check(code == 451, 'twoproc: first try at a: 451 (%s %s)' % (code, text))
    stored(mxa)
    retried(mxb, be, 'twoproc')
    mxa.stop()
    mxb.stop()
    be.stop()

if mt.case_wanted('storefail'):
    # the directory fails under two running processes (its map damaged: every read fails,
    # mt.lmdb_damage): the retry at the other process cannot learn r1 and r2 are held; it is
    # delivered as without the ledger (r1 and r2 a second copy: never a loss, never a 250
    # the ledger cannot back), one event=ledger_store_error action=deliver for the outage
    be = mt.Backend(lmtp=True, lmtp_codes={R[2]: 452}, name='dovecot-storefail')
    d = ledger_dir('fail')
    mxa = mt.Mxgate(mt.config([be.url], workers=1, backends={'retry_ledger': d}), name='mx-fail-a')
    mxb = mt.Mxgate(mt.config([be.url], workers=1, backends={'retry_ledger': d}), name='mx-fail-b')
    code, text = send(mxa, A)
    mt.check(code == 451, 'storefail: first try at a: 451 (%s %s)' % (code, text))
    stored(mxa)
    mt.lmdb_damage(d['store'][5:], 'the ledger')
    be.lmtp_codes = {}
    code, text = send(mxb, A)
    got = copies(be, b'Hello ledger.')
    mt.check(code == 250 and got == {R[0]: 2, R[1]: 2, R[2]: 1},
             'storefail: the retry at b delivered to all three, r1 and r2 a second copy (%s %s %s)' % (code, text, got))
    code, text = send(mxb, B)
    mt.check(code == 250, 'storefail: another message at b: 250 (%s %s)' % (code, text))
    errs = re.findall(r'event=ledger_store_error [^\n]*', mxb.log())
    mt.check(len(errs) == 1 and 'store=lmdb:%s' % d['store'][5:] in errs[0] and 'reason=read_failed' in errs[0]
             and 'action=deliver' in errs[0], 'storefail: b: one ledger_store_error reason=read_failed action=deliver (%s)' % errs)
    mt.check('event=ledger_hit' not in mxb.log(), 'storefail: b: no ledger_hit')
    mxa.stop()
    mxb.stop()
    be.stop()

if mt.case_wanted('config'):
    # its bounds, each error at its FILE:LINE:COL
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}], backends={'retry_ledger': {'ttl': '0s', 'max_entries': -1}}))
    mt.check(rc == 1 and re.search(r':\d+:\d+: backends\.retry_ledger\.ttl: must be between 1s and 30d', out) is not None
             and re.search(r':\d+:\d+: backends\.retry_ledger\.max_entries: must be between 0 and 10000000', out) is not None,
             'config: ttl and max_entries out of bounds refused (%s %s)' % (rc, out))
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}], backends={'retry_ledger': {'ttl': '2d', 'max_entries': 0}}))
    mt.check(rc == 0, 'config: ttl 2d, max_entries 0 taken (%s %s)' % (rc, out))
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}], backends={'retry_ledger': {'store': 'sqlite:/x'}}))
    mt.check(rc == 1 and re.search(r':\d+:\d+: backends\.retry_ledger\.store: expected memory, lmdb:/dir or redis://', out) is not None,
             'config: an unknown ledger store refused (%s %s)' % (rc, out))
    rc, out = mt.config_check(mt.config(['lmtp://127.0.0.1:24'], listen=[{'address': '127.0.0.1:2525'}], backends={'retry_ledger': ledger_dir('check')}))
    mt.check(rc == 0, 'config: an lmdb: ledger store taken (%s %s)' % (rc, out))

mt.finish()
