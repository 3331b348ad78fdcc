#!/usr/bin/env python3
"""greylist.auto_allow_clients (postgrey's --auto-whitelist-clients=N): a client network that
has passed greylisting N times (N triplets whose retry came after the delay) is not greylisted
again for greylist.auto_allow_expire (renewed by its mail). Before, every new triplet of a
well-behaved MTA that had retried on time for months still waited its delay.

With the local table, LMDB and Redis: client 198.18.70.1 passes two triplets (delay 0s: the
retry in the same session passes); with auto_allow_clients: 2 a third, new triplet passes at
its first attempt (LMDB applies the count with its next batch: polled with new recipients)
and is logged once (event=greylist_auto_allow: at the pass that made it, with LMDB at the
first RCPT let through). A client of another /24 is still greylisted,
and one that passed once (of two needed) too. With auto_allow_clients: 0 (the default)
nothing changes. `greylist list` lists triplets, not the counts (the local table holds
both). mxgate -t refuses a negative count."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
be = mt.Backend()

rc, out = mt.config_check(mt.proxied_config([be.url], greylist={'enabled': True, 'auto_allow_clients': -1}), 'neg')
mt.check(rc != 0 and 'greylist.auto_allow_clients' in out, 'mxgate -t refuses auto_allow_clients -1: %s %s'
         % (rc, out.strip()[-200:]))


def rcpts(mx, src, sender, names):
    """One session from src: MAIL, then each RCPT (pipelined); the RCPT codes."""
    c = mt.Client(mx.port, proxy_src=src)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<%s>' % sender)
    c.send(''.join('RCPT TO:<%s>\r\n' % r for r in names))
    codes = [c.reply()[0] for _ in names]
    c.cmd('QUIT')
    c.close()
    return codes


def run(name, store, allow=2):
    gl = {'enabled': True, 'store': store, 'delay': '0s', 'retry_window': '1h'}
    if allow is not None:
        gl['auto_allow_clients'] = allow
        gl['auto_allow_expire'] = '1d'
    sock = os.path.join(mt.TMP, name + '.sock')
    mx = mt.Mxgate(mt.proxied_config([be.url], greylist=gl, control={'socket': sock}), name)
    for i in (1, 2):
        codes = rcpts(mx, '198.18.70.1', 'a@example.org', ['t%d@example.test' % i] * 2)
        mt.check(codes == [451, 250], '%s: triplet %d greylisted, its retry passes: %s' % (name, i, codes))
    codes = rcpts(mx, '198.18.72.1', 'a@example.org', ['t1@example.test'] * 2)
    mt.check(codes == [451, 250], '%s: another /24 passes one triplet: %s' % (name, codes))
    seq = [0]

    def new_triplet_passes():
        seq[0] += 1
        return rcpts(mx, '198.18.70.9', 'b@example.org', ['new%d@example.test' % seq[0]]) == [250]

    if allow:
        mt.check(mt.wait_for(new_triplet_passes, timeout=10),
                 '%s: after 2 passes the client network (198.18.70.0/24) is not greylisted: a new triplet passes at '
                 'once (%d tried)' % (name, seq[0]))
        m = mx.wait_log(r'event=greylist_auto_allow client=198\.18\.70\.[19] net=198\.18\.70\.0/24 passes=2', 5)
        mt.check(m is not None, '%s: logged when the client becomes allowed' % name)
        mt.check(mx.count_log(r'event=greylist_auto_allow') == 1, '%s: once' % name)
    else:
        mt.check(not new_triplet_passes(), '%s: auto_allow_clients 0: a new triplet is greylisted' % name)
    codes = rcpts(mx, '198.18.71.1', 'a@example.org', ['t1@example.test'])
    mt.check(codes == [451], '%s: a client of another /24 is greylisted: %s' % (name, codes))
    codes = rcpts(mx, '198.18.72.1', 'a@example.org', ['t9@example.test'])
    mt.check(codes == [451], '%s: a client that passed once (2 needed) is greylisted: %s' % (name, codes))
    # the counts are no triplets: `greylist list` shows the triplets only
    r = subprocess.run([CTL, '-s', sock, 'greylist', 'list'], capture_output=True, text=True, timeout=mt.slack(30))
    lines = [x for x in r.stdout.splitlines() if 'first_seen=' in x]
    mt.check(r.returncode == 0 and lines and all('|' in x for x in lines) and
             '198.18.70.0/24|a@example.org|t1@example.test' in r.stdout,
             '%s: greylist list: triplets only: %r %r' % (name, r.stdout[-300:], r.stderr))
    mx.stop()


run('local', 'local')
run('lmdb', 'lmdb:' + os.path.join(mt.TMP, 'gl-lmdb'))
run('redis', 'redis://127.0.0.1:%d' % red.port)
run('off', 'local', allow=None)
mt.finish()
