#!/usr/bin/env python3
"""mxgatectl verbs for rate-limit buckets and greylist triplets (an operator could see and
clear neither: postgrey has postgreyreport, spamd spamdb, Haraka's karma its Redis keys):
`ratelimit show|reset KEY VALUE`, `greylist list [N]` and `greylist show|pass|delete IP SENDER
RCPT`, text and
--json, with the local store, LMDB (greylist) and Redis. A client at its message limit is
shown with 0 left; after `ratelimit reset` it sends again. A greylisted triplet is shown
waiting; `greylist pass` lets its retry through at once; `greylist delete` makes the next
attempt a first one again. Bad input: an unknown verb word, a key no rule uses, a word that
is not an IP."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
CTL = mt.mxgatectl()
red = mt.redis()
be = mt.Backend()
SRC = '198.18.88.1'


def ctl(sock, *args):
    r = subprocess.run([CTL, '-s', sock] + list(args), capture_output=True, text=True, timeout=mt.slack(30))
    return r.returncode, r.stdout, r.stderr


def run(name, rl_store, gl_store):
    sock = os.path.join(mt.TMP, name + '.sock')
    mx = mt.Mxgate(mt.proxied_config(
        [be.url], control={'socket': sock},
        greylist={'enabled': True, 'store': gl_store, 'delay': '1h', 'retry_window': '4h'},
        ratelimit={'store': rl_store, 'rules': [
            {'key': 'ip', 'count': 'messages', 'limit': '2/1h'},
            {'key': 'ip', 'count': 'concurrency', 'limit': 5},
            {'key': 'sender', 'count': 'messages', 'limit': '100/1h'}]}), name)

    def send(tag, rcpt='b@example.test'):
        return mt.send_mail(mx.port, 'a@example.org', [rcpt], mt.message(tag), ehlo='client.example.org',
                            proxy_src=SRC, timeout=15)

    # greylist: the first attempt waits; show, pass, the retry goes through
    r = send(name + '-g1')
    mt.check(r[0] == 451 and 'greylisted' in r[1], '%s: first attempt greylisted: %r' % (name, r))
    # LMDB: the worker writes its triplets every 500 ms; the verb reads the map
    got = mt.wait_for(lambda: (lambda x: x if ': waiting' in x[1] else None)(
        ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'b@example.test')), timeout=10)
    rc, out, err = got or ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'b@example.test')
    mt.check(rc == 0 and '198.18.88.0/24|a@example.org|b@example.test: waiting' in out and 'passes in' in out,
             '%s: greylist show: waiting: %r %r' % (name, out, err))
    rc, out, err = ctl(sock, 'greylist', 'list')
    mt.check(rc == 0 and '198.18.88.0/24|a@example.org|b@example.test waiting first_seen=' in out
             and '1 triplet (%s)' % gl_store.split(':')[0] in out, '%s: greylist list: %r %r' % (name, out, err))
    rc, out, err = ctl(sock, '--json', 'greylist', 'list', '5')
    j = json.loads(out) if rc == 0 else {}
    mt.check(rc == 0 and j.get('count') == 1 and j.get('truncated') is False and
             j['triplets'][0]['triplet'] == '198.18.88.0/24|a@example.org|b@example.test',
             '%s: greylist list --json: %r %r' % (name, out, err))
    rc, out, err = ctl(sock, '--json', 'greylist', 'pass', SRC, '<a@example.org>', '<b@example.test>')
    j = json.loads(out) if rc == 0 else {}
    mt.check(rc == 0 and j.get('state') == 'waiting' and j.get('done') == 'pass' and j.get('store') == gl_store.split(':')[0],
             '%s: greylist pass (--json, bracketed addresses): %r %r' % (name, out, err))
    rc, out, err = ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'b@example.test')
    mt.check(rc == 0 and ': passed' in out, '%s: now passed: %r' % (name, out))
    r = send(name + '-g2')
    mt.check(r[0] == 250, '%s: the retry goes through at once: %r' % (name, r))
    # ratelimit: that was 1 of 2
    rc, out, err = ctl(sock, 'ratelimit', 'show', 'ip', SRC)
    mt.check(rc == 0 and 'ip %s messages 2/1h: 1 used, 1 left' % SRC in out and 'concurrency 5: 0 session(s) open' in out,
             '%s: ratelimit show: %r %r' % (name, out, err))
    mt.check(send(name + '-g3')[0] == 250 and send(name + '-g4')[0] == 451, '%s: the limit is reached' % name)
    rc, out, err = ctl(sock, '--json', 'ratelimit', 'show', 'ip', SRC)
    j = json.loads(out) if rc == 0 else {}
    msgs = [x for x in j.get('rules', []) if x.get('count') == 'messages']
    mt.check(rc == 0 and msgs and msgs[0]['used'] == 2 and msgs[0]['left'] == 0 and msgs[0]['full_in_ms'] > 0,
             '%s: --json: 2 used, 0 left: %r' % (name, out))
    rc, out, err = ctl(sock, 'ratelimit', 'reset', 'ip', SRC)
    mt.check(rc == 0 and 'messages 2/1h: reset' in out and 'not reset' in out, '%s: ratelimit reset: %r %r' % (name, out, err))
    mt.check(mx.wait_log(r'event=ratelimit_reset key=ip value=%s buckets=1' % SRC, 5) is not None, '%s: the reset is logged' % name)
    mt.check(send(name + '-g5')[0] == 250, '%s: after the reset the client sends again' % name)
    # a sender written as in SMTP, <A@Example.ORG>, names the bucket the session keys on
    # (a@example.org), as greylist's verbs take it; it named "<a@example.org>", never used
    rc, out, err = ctl(sock, 'ratelimit', 'show', 'sender', '<A@Example.ORG>')
    mt.check(rc == 0 and 'sender a@example.org messages 100/1h: ' in out and ' used, ' in out,
             '%s: ratelimit show sender <A@Example.ORG>: %r %r' % (name, out, err))
    # greylist delete: the next attempt is a first one (another triplet, written once and
    # seen in the store before it is deleted: with LMDB a worker's batch could still hold it)
    r = send(name + '-d1', 'c@example.test')
    mt.check(r[0] == 451, '%s: a new triplet is greylisted: %r' % (name, r))
    mt.check(mt.wait_for(lambda: ': waiting' in ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'c@example.test')[1],
                         timeout=10), '%s: and stored' % name)
    rc, out, err = ctl(sock, 'greylist', 'delete', SRC, 'a@example.org', 'c@example.test')
    mt.check(rc == 0 and ': waiting' in out and 'deleted' in out, '%s: greylist delete: %r %r' % (name, out, err))
    rc, out, err = ctl(sock, 'greylist', 'show', SRC, 'a@example.org', 'c@example.test')
    mt.check(rc == 0 and ': unknown' in out, '%s: unknown after the delete: %r' % (name, out))
    mt.check(mx.wait_log(r'event=greylist_delete triplet="198.18.88.0/24\|a@example.org\|c@example.test" was=waiting', 5)
             is not None, '%s: the delete is logged' % name)
    # bad input
    for args, want in ((('ratelimit', 'show', 'helo', 'x'), 'no rule counts by helo'),
                       (('ratelimit', 'show', 'ip', 'nope'), 'not an IP address'),
                       (('ratelimit', 'flush', 'ip', SRC), 'usage: ratelimit show|reset'),
                       (('greylist', 'show', 'nope', 'a@b', 'c@d'), 'not an IP address'),
                       (('greylist', 'list', '0'), 'usage: greylist list [N]'),
                       (('greylist', 'show', SRC), 'usage: greylist list [N] | greylist show|pass|delete')):
        rc, out, err = ctl(sock, *args)
        mt.check(rc == 1 and want in err + out, '%s: %s: refused (%s): %r' % (name, ' '.join(args), want, err + out))
    mx.stop()


run('local', 'local', 'local')
run('lmdb', 'local', 'lmdb:' + os.path.join(mt.TMP, 'gl'))
url = 'redis://127.0.0.1:%d' % red.port
run('redis', url, url)
mt.finish()
