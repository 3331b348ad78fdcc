#!/usr/bin/env python3
"""Reputation tied to the real sender: the authenticated domain's history offsets a shared
IP's bad history and DNS-list listing, with the LMDB store and with Redis.

Real peers: dnsmasq serves the DKIM keys (example.org, bad.example) and the DNS-list entry
of the shared IP (5.5.18.198.bl.test -> 127.0.0.2); messages are signed by dkimpy
(tests/integration/dkim_signer.py); the rules engine sums the symbols (reject at 5, one
body rule for spam). The shared IP 198.18.5.5 gets a bad history from other senders' spam
and is listed (REP_BAD 3 + DNSBL_BL_TEST 3 = 6: rejected at end of data). Then:

- example.org, signed, with a good history from other IPs: delivered from the shared IP
  with REP_DOMAIN_GOOD and REP_DOMAIN_LIFT (the IP's 6 points lifted); that delivery is
  the domain's, the shared IP is not credited with it (it stays bad);
- the same From, unsigned (nothing aligned): rejected, and these refusals are never
  counted against example.org (it is still good afterwards);
- the same From with a broken signature: rejected;
- bad.example, whose signed mail kept being rejected for its content: REP_DOMAIN_BAD.

Timing: LMDB writes are batched (flush_interval) and Redis updates are sent without waiting
for a reply; one worker keeps them in order. The test waits for what it can observe (a
symbol in X-Spam-Status, a log line), sending more of the same kind of mail while it waits,
never for a fixed time."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
SIGNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dkim_signer.py')
SHARED = '198.18.5.5'
SPAM = 'xyzzy-spam-marker'

mt.need('dnsmasq', 'openssl', 'redis-server')
if subprocess.run([PY, '-c', 'import dkim'], capture_output=True).returncode != 0:
    mt.skip('python3-dkim not installed')
T = mt.TMP


# ---- config errors name FILE:LINE:COL and the key
bad_cfg = os.path.join(T, 'bad.yaml')
with open(bad_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], reputation={
        'store': 'lmdb:' + os.path.join(T, 'badrep'), 'domain_good_threshold': -0.6, 'domain_lift_max': -1,
        'auth_domain': 'maybe'})))
r = mt.run_mxgate('-t', '-c', bad_cfg)
out = r.stdout + r.stderr
mt.check(r.returncode == 1 and re.search(r'bad\.yaml:\d+:\d+: reputation\.domain_lift_max: ', out)
         and re.search(r'bad\.yaml:\d+:\d+: reputation\.auth_domain: ', out),
         'mxgate -t names a bad domain_lift_max and auth_domain with FILE:LINE:COL (%s)' % out.strip()[:300])
with open(bad_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], reputation={
        'store': 'lmdb:' + os.path.join(T, 'badrep'), 'domain_good_threshold': -0.6})))
r = mt.run_mxgate('-t', '-c', bad_cfg)
out = r.stdout + r.stderr
mt.check(r.returncode == 1 and re.search(r'bad\.yaml:\d+:\d+: reputation: domain_good_threshold must be above '
                                         r'domain_bad_threshold', out),
         'mxgate -t refuses domain thresholds out of order (%s)' % out.strip()[:300])

good_key, good_txt = mt.dkim_rsa_key('good')
bad_key, bad_txt = mt.dkim_rsa_key('bad')
dns_port = mt.dnsmasq({'py._domainkey.example.org': good_txt, 'py._domainkey.bad.example': bad_txt},
                      local=['example.org', 'bad.example', 'other.example', 'bl.test'],
                      args=['--address=/5.5.18.198.bl.test/127.0.0.2']).port

rdir = os.path.join(T, 'rules')
os.makedirs(rdir)
with open(os.path.join(rdir, 'test.rules'), 'w') as f:
    f.write('body MXT_SPAMWORD /%s/\nscore MXT_SPAMWORD 10\ndescribe MXT_SPAMWORD spam for the test\n' % SPAM)

n = [0]


def msg(frm, spam=False):
    n[0] += 1
    tag = 'rd%d' % n[0]
    body = 'Hello Bob,\r\n\r\n%s message %s.\r\n' % (SPAM if spam else 'an ordinary', tag)
    data = ('From: %s\r\nTo: bob@example.test\r\nSubject: domain %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@mxtest.example>\r\n\r\n%s'
            % (frm, tag, tag, body)).encode()
    return tag, data


def signed(frm, key, dom, spam=False, tamper=False):
    tag, data = msg(frm, spam)
    r = subprocess.run([PY, SIGNER, 'sign', key, 'py', dom], input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        mt.fail('dkim_signer.py failed: %s' % r.stderr.decode(errors='replace')[:300])
    out = r.stdout
    if tamper:
        out = out.replace(b'an ordinary message', b'an altered message')
    return tag, out


def status(be, tag):
    """The delivered message's X-Spam-Status, unfolded, or None."""
    got = be.by_tag(tag)
    if not got:
        return None
    head = got[-1]['data'].split(b'\r\n\r\n', 1)[0].decode('latin-1').replace('\r\n\t', ' ').replace('\r\n ', ' ')
    for line in head.split('\r\n'):
        if line.lower().startswith('x-spam-status:'):
            return line
    return None


def send(mx, src, tagdata, sender='bounce@other.example'):
    tag, data = tagdata
    r = mt.send_mail(mx.port, sender, ['bob@example.test'], data, ehlo='client.example', proxy_src=src,
                     timeout=15)
    return tag, r[0], r[1]


def scenario(store, name, record=None):
    """record(key): the Redis hash of a store key, or None (LMDB)."""
    be = mt.Backend()
    cfg = mt.proxied_config(
        [be.url], workers=1,
        dns={'resolvers': ['127.0.0.1:%d' % dns_port], 'timeout': '1s', 'tries': 1},
        dkim={'enabled': True, 'timeout': '3s'},
        dnsbl={'action': 'score', 'lists': [{'zone': 'bl.test', 'weight': 3}]},
        reputation={'store': store, 'bad_action': 'score', 'flush_interval': '100ms', 'timeout': '3s'},
        rules={'files': [rdir + '/*.rules'], 'actions': {'add_header': 4, 'reject': 5}})
    mx = mt.Mxgate(cfg, name='mx-repdom-' + name)
    alice = 'Alice <alice@example.org>'

    # 1. example.org's good history: signed, ordinary mail from clean IPs (distinct /24s).
    # Each probe is one more such message, until the domain is known good.
    ip = iter('198.18.%d.9' % i for i in range(100, 200))
    for _ in range(12):
        tag, code, text = send(mx, next(ip), signed(alice, good_key, 'example.org'))
        mt.check(code == 250, '%s: signed example.org mail from a clean IP is delivered: %s %s' % (name, code, text))

    def good_probe():
        tag, code, _ = send(mx, next(ip), signed(alice, good_key, 'example.org'))
        st = status(be, tag) if code == 250 else None
        return st if st and 'REP_DOMAIN_GOOD' in st else None
    st = mt.wait_for(good_probe, timeout=20, step=0.1)
    mt.check(st is not None and 'REP_DOMAIN_LIFT' not in st,
             '%s: example.org turns good; from a clean IP nothing is lifted: %s' % (name, st))

    # 2. the shared IP's bad history: other senders' spam, refused at end of data.
    def ip_bad():
        send(mx, SHARED, msg('Spammer <s@other.example>', spam=True))
        return mx.count_log(r'event=reputation client=%s score=\S+ class=bad action=score' % SHARED.replace('.', r'\.')) > 0
    mt.check(mt.wait_for(ip_bad, timeout=20, step=0.05),
             '%s: the shared IP turns bad from other senders\' spam' % name)
    for _ in range(4):      # a margin: well below bad_threshold, not just on it
        send(mx, SHARED, msg('Spammer <s@other.example>', spam=True))

    # 3a. example.org, signed, from the bad and listed shared IP: the domain offsets it.
    start = mx.log_size()
    tag, code, text = send(mx, SHARED, signed(alice, good_key, 'example.org'))
    st = status(be, tag)
    mt.check(code == 250 and st is not None and all(s in st for s in (
        'REP_DOMAIN_GOOD', 'REP_DOMAIN_LIFT', 'REP_BAD', 'DNSBL_BL_TEST', 'DKIM_VALID_AU')),
        '%s: authenticated example.org with a good history is delivered from the bad, listed IP: %s %s | %s'
        % (name, code, text, st))
    mt.check(mx.wait_log(r'event=reputation_domain .*auth_domain=example\.org score=\S+ class=good lift=6 '
                         r'lifted=REP_BAD,DNSBL_BL_TEST client=%s' % SHARED.replace('.', r'\.'), start=start),
             '%s: the lift is logged with what it lifted' % name)

    # 3b. the same From, unsigned: nothing aligned, no offset; refused. 15 of them: were they
    # counted against example.org, it would no longer be good.
    codes = []
    start = mx.log_size()
    for _ in range(15):
        codes.append(send(mx, SHARED, msg(alice))[1])
    mt.check(codes == [550] * 15, '%s: unsigned mail claiming example.org from the shared IP is refused: %s'
             % (name, codes))
    mt.check(mx.count_log(r'event=reputation_domain', start=start) == 0,
             '%s: and gets no domain verdict at all' % name)
    # 3c. a broken signature is no authentication either
    tag, code, text = send(mx, SHARED, signed(alice, good_key, 'example.org', tamper=True))
    mt.check(code == 550 and mx.wait_log(r'event=senderauth .*dkim=fail:example\.org .*auth_domain=- ') is not None,
             '%s: a tampered signed message from the shared IP is refused: %s %s' % (name, code, text))

    # A witness written after those refusals (one worker: one writer / one connection, in
    # order): a fresh IP turned bad by the same kind of refusals. Once it shows, every
    # earlier update has been applied.
    witness = '198.18.77.7'

    def witness_bad():
        send(mx, witness, msg('Spammer <s@other.example>', spam=True))
        return mx.count_log(r'event=reputation client=198\.18\.77\.7 score=\S+ class=bad') > 0
    mt.check(mt.wait_for(witness_bad, timeout=20, step=0.05), '%s: the witness IP turns bad' % name)
    tag, code, text = send(mx, next(ip), signed(alice, good_key, 'example.org'))
    st = status(be, tag)
    mt.check(code == 250 and st is not None and 'REP_DOMAIN_GOOD' in st,
             '%s: example.org is still good: unauthenticated refusals were not held against it: %s' % (name, st))
    if record:
        rec = record('authdom:example.org')
        mt.check(rec and float(rec.get('a', 0)) >= 13 and float(rec.get('r', 0)) == 0,
                 '%s: its record (mxgate:rep:authdom:example.org) has the deliveries and no refusal: %s'
                 % (name, rec))
        mt.check(not record('authdom:other.example'), '%s: no record for an unauthenticated From' % name)

    # 4. bad.example: its signed mail keeps being refused for its content (each from a fresh
    # IP, so no IP penalty could be blamed), until the domain is known bad.
    bad = 'Mallory <m@bad.example>'

    def dom_bad():
        send(mx, next(ip), signed(bad, bad_key, 'bad.example', spam=True))
        return mx.count_log(r'event=reputation_domain .*auth_domain=bad\.example score=\S+ class=bad') > 0
    mt.check(mt.wait_for(dom_bad, timeout=20, step=0.05), '%s: bad.example turns bad' % name)
    tag, code, text = send(mx, next(ip), signed(bad, bad_key, 'bad.example'))
    st = status(be, tag)
    mt.check(code == 250 and st is not None and 'REP_DOMAIN_BAD' in st and 'REP_DOMAIN_GOOD' not in st,
             '%s: an ordinary signed bad.example message carries REP_DOMAIN_BAD: %s %s | %s' % (name, code, text, st))
    mt.check(mx.alive(), '%s: mxgate alive' % name)
    mx.stop()


scenario('lmdb:' + os.path.join(T, 'rep'), 'lmdb')
red = mt.redis()


def redis_record(key):
    flat = [v.decode() for v in mt.redis_cmd(red.port, 'HGETALL', 'mxgate:rep:' + key) or []]
    return dict(zip(flat[0::2], flat[1::2]))


scenario('redis://127.0.0.1:%d' % red.port, 'redis', redis_record)
mt.finish()
