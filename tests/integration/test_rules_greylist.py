#!/usr/bin/env python3
"""test_rules_greylist — `rules.actions.greylist` (rspamd's greylist action): a message whose
score is in the band [greylist, tempfail) gets 451 4.7.1 the first time it is seen; a retry
of the same message (body, sender, recipients) after greylist.delay is delivered with the
X-Spam-* fields add_header gives and `X-Mxgate-Greylist: passed digest=...`; a retry before
the delay gets 451 again. `tempfail` alone re-scores every retry (a message scored 6 was
deferred for ever): that was all there was.

Stores: greylist.store local (memory) and redis:// (a real redis-server), opened for the
rules engine with greylist.enabled false (nothing is greylisted at RCPT). The clock: delay
1h for the first sight and the early retry, then a reload to delay 0s, after which the same
retry passes (the records outlive the reload): no sleep, no timing. A passed message's record
lives rules.greylist_expire (1d by default; Redis: its PTTL), not greylist.expire's 36 days.

Also: a message below the band is delivered at once, one above tempfail gets tempfail's
451 (tempfail wins), another body is a new first sight, a passed message whose backend
answers 451 gets 451 (250 only after the backend's 250), /metrics counts the results, and
`mxgate -t` warns about a local store and a threshold that leaves the band empty.

Peers: the scripted backend (mxtest.Backend), redis-server, the rules engine with header
rules worth 6 and 12."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')

RULES = ('header LOC_GREY X-Test-Spam =~ /^grey/\nscore LOC_GREY 6\n'
         'header LOC_HIGH X-Test-Spam =~ /^high/\nscore LOC_HIGH 12\n')
rules_path = os.path.join(mt.TMP, 'grey.cf')
with open(rules_path, 'w') as f:
    f.write(RULES)
be = mt.Backend()
be_fail = mt.Backend(mode='tempfail_data')
redis = mt.redis()
DIGEST = r'[0-9a-f]{16}'


def cfg(store, delay, listen=None, **rules):
    r = {'files': [rules_path], 'actions': {'add_header': 5, 'greylist': 4, 'tempfail': 10}}
    r.update(rules)
    return mt.config([be.url], listen=listen, workers=1, hostname='mx.example.test',
                     control={'socket': os.path.join(mt.TMP, 'ctl-%s.sock' % store.split(':')[0])},
                     backends={'routes': [{'domains': ['fail.example'], 'servers': [be_fail.url]}]},
                     metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                     greylist={'store': store, 'delay': delay, 'retry_window': '2h'}, rules=r)


def send(mx, tag, score, rcpts=('u@example.test',), body='Hello.\r\n', sender='a@example.org', extra=()):
    return mt.send_mail(mx.port, sender, list(rcpts),
                        mt.message(tag, body=body, headers=('X-Test-Spam: %s' % score,) + tuple(extra)),
                        timeout=60)


def field(data, name):
    return mt.header_values(data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'), name)


for store in ('local', 'redis://127.0.0.1:%d' % redis.port, 'lmdb:' + os.path.join(mt.TMP, 'grey-lmdb')):
    kind = store.split(':')[0]
    mx = mt.Mxgate(cfg(store, '1h'), 'mx-' + kind)

    code, text = send(mx, 'ham-' + kind, 'none')
    mt.check(code == 250 and len(be.by_tag('ham-' + kind)) == 1,
             '%s: a message below the band is delivered at once (%s %s)' % (kind, code, text))
    mt.check(not field(be.by_tag('ham-' + kind)[0]['data'], 'X-Mxgate-Greylist'),
             '%s: and says nothing of greylisting' % kind)

    code, text = send(mx, 'high-' + kind, 'high')
    mt.check(code == 451 and 'looks like spam' in text,
             '%s: a message above tempfail gets tempfail\'s 451 (%s %s)' % (kind, code, text))

    tag = 'grey-' + kind
    code, text = send(mx, tag, 'grey')
    mt.check(code == 451 and '4.7.1 greylisted, try again later' in text and not be.by_tag(tag),
             '%s: score 6 in the band [4, 10): first sight 451 4.7.1 greylisted (%s %s)' % (kind, code, text))
    line = mx.wait_log(r'event=rules_greylist result=deferred digest=(%s) store=%s action=tempfail wait=3600'
                       % (DIGEST, kind))
    mt.check(line is not None, '%s: logged event=rules_greylist result=deferred digest=... wait=3600\n%s'
             % (kind, mx.tail()))
    digest = line.group(1) if line else '?'
    # `greylist list` shows the message record, marked, with its expiry (retry_window 2h); LMDB's
    # writes are the workers' batches: listed once written
    sock = os.path.join(mt.TMP, 'ctl-%s.sock' % kind)

    def listed(state):
        rc, out, err = mt.ctl(sock, 'greylist', 'list')
        m = re.search(r'^message (%s[0-9a-f]{48}) %s first_seen=\d+s expires=(\d+)s$' % (digest, state), out, re.M)
        return (rc, out, err, m) if rc == 0 and m else None

    got = mt.wait_for(lambda: listed('waiting'), 10, step=0.2)
    mt.check(got and 0 < int(got[3].group(2)) <= 7200 and
             re.search(r'^0 triplets \(%s\), 1 message record$' % kind, got[1], re.M) is not None,
             '%s: greylist list shows the waiting message record with its expiry (%r)'
             % (kind, got or mt.ctl(sock, 'greylist', 'list')))
    rc, out, err = mt.ctl(sock, '--json', 'greylist', 'list')
    j = json.loads(out) if rc == 0 else {}
    mt.check(j.get('message_count') == 1 and j.get('triplets') == [] and len(j.get('messages', [])) == 1 and
             j['messages'][0]['digest'].startswith(digest) and j['messages'][0]['state'] == 'waiting',
             '%s: and in --json, under messages (%s %r)' % (kind, rc, out))
    mt.check(mx.wait_log(r'event=rules score=6\.0 required=5\.0 action=greylist tests=LOC_GREY') is not None,
             '%s: event=rules says action=greylist' % kind)

    code, text = send(mx, tag, 'grey')
    mt.check(code == 451 and 'greylisted' in text and not be.by_tag(tag),
             '%s: a retry before the delay: 451 again (%s %s)' % (kind, code, text))
    code, text = send(mx, tag, 'grey', body='Another body.\r\n')
    mt.check(code == 451 and mx.count_log(r'result=deferred digest=(?!%s)' % digest) == 1,
             '%s: another body is another message: its own first sight (%s %s)' % (kind, code, text))

    n = mx.count_log(r'event=reloaded')
    mx.reload(cfg(store, '0s'))
    mt.check(mt.wait_for(lambda: mx.count_log(r'event=reloaded') > n, mt.slack(20)), '%s: reloaded' % kind)
    code, text = send(mx, tag, 'grey')
    got = be.by_tag(tag)
    mt.check(code == 250 and len(got) == 1,
             '%s: the retry after the delay is delivered (%s %s, %d at the backend)' % (kind, code, text, len(got)))
    if got:
        data = got[0]['data']
        st = field(data, 'X-Spam-Status')
        mt.check(st and st[0].startswith('Yes, score=6.0 required=5.0 tests=LOC_GREY'),
                 '%s: with X-Spam-Status as add_header gives (%s)' % (kind, st))
        mt.check(field(data, 'X-Mxgate-Greylist') == ['passed digest=%s store=%s' % (digest, kind)],
                 '%s: and X-Mxgate-Greylist: passed digest=%s store=%s (%s)'
                 % (kind, digest, kind, field(data, 'X-Mxgate-Greylist')))
    mt.check(mx.wait_log(r'event=rules_greylist result=passed digest=%s store=%s action=deliver' % (digest, kind))
             is not None, '%s: logged event=rules_greylist result=passed' % kind)
    got = mt.wait_for(lambda: listed('passed'), 10, step=0.2)
    mt.check(got and 7200 < int(got[3].group(2)) <= 86400,
             '%s: greylist list shows it passed, kept rules.greylist_expire (1d) (%r)'
             % (kind, got or mt.ctl(sock, 'greylist', 'list')))
    if kind == 'redis':
        # the passed record lives rules.greylist_expire (1d by default, rspamd's), not a
        # triplet's greylist.expire (36d): its TTL in Redis, the store's own expiry
        keys = mt.redis_cmd(redis.port, 'KEYS', 'mxgate:glm:%s*' % digest) or []
        ttl = mt.redis_cmd(redis.port, 'PTTL', keys[0]) if len(keys) == 1 else None
        mt.check(ttl is not None and 0 < ttl <= 86400000,
                 'redis: the passed message\'s record expires within rules.greylist_expire, 1d (PTTL %s ms)' % ttl)
    code, text = send(mx, 'fresh-' + kind, 'grey', body='Fresh.\r\n')
    mt.check(code == 451 and not be.by_tag('fresh-' + kind),
             '%s: with delay 0 a first sight is still deferred (%s %s)' % (kind, code, text))
    code, text = send(mx, 'fresh2-' + kind, 'grey', body='Fresh.\r\n')
    got = be.by_tag('fresh2-' + kind)
    mt.check(code == 250 and len(got) == 1,
             '%s: the digest leaves the header out: the same body, sender and recipients with '
             'other header fields is the retry (%s %s)' % (kind, code, text))

    # nothing lost: greylisting passes, the backend says 451, the client hears 451
    ftag = 'fail-' + kind
    mt.check(send(mx, ftag, 'grey', rcpts=('v@fail.example',))[0] == 451, '%s: first sight to fail.example' % kind)
    code, text = send(mx, ftag, 'grey', rcpts=('v@fail.example',))
    mt.check(code == 451 and mx.count_log(r'event=rules_greylist result=passed') == 3,
             '%s: the retry passes greylisting, the backend answers 451: the client gets 451, never 250 (%s %s)'
             % (kind, code, text))

    mt.check(mx.metric('greylist_messages_total{result="deferred"}') == 5 and
             mx.metric('greylist_messages_total{result="passed"}') == 3 and
             mx.metric('greylist_messages_total{result="error"}') == 0,
             '%s: mxgate_greylist_messages_total counts deferred 5, passed 3, error 0 (%s %s %s)'
             % (kind, mx.metric('greylist_messages_total{result="deferred"}'),
                mx.metric('greylist_messages_total{result="passed"}'),
                mx.metric('greylist_messages_total{result="error"}')))
    mt.check(mx.count_log(r'event=greylist ') == 0, '%s: nothing greylisted at RCPT (greylist.enabled false)' % kind)

    # a sender's own X-Mxgate-Greylist goes: a forged "passed" never reaches the mailbox
    FORGED = ('X-Mxgate-Greylist: passed digest=0000000000000000 store=forged',)
    code, text = send(mx, 'forged-ham-' + kind, 'none', extra=FORGED)
    got = be.by_tag('forged-ham-' + kind)
    mt.check(code == 250 and len(got) == 1 and not field(got[0]['data'], 'X-Mxgate-Greylist'),
             '%s: a message below the band carrying a forged X-Mxgate-Greylist arrives without it (%s %s %s)'
             % (kind, code, text, got and field(got[0]['data'], 'X-Mxgate-Greylist')))
    mt.check(send(mx, 'forged-grey-' + kind, 'grey', body='Forged.\r\n', extra=FORGED)[0] == 451,
             '%s: a greylisted message with a forged field: first sight 451' % kind)
    code, text = send(mx, 'forged-grey-' + kind, 'grey', body='Forged.\r\n', extra=FORGED)
    got = be.by_tag('forged-grey-' + kind)
    hdr = got and field(got[0]['data'], 'X-Mxgate-Greylist')
    mt.check(code == 250 and len(got) == 1 and len(hdr) == 1 and
             re.fullmatch('passed digest=%s store=%s' % (DIGEST, kind), hdr[0]) is not None,
             '%s: its retry arrives with mxgate\'s X-Mxgate-Greylist alone (%s %s %s)' % (kind, code, text, hdr))

    if kind == 'redis':
        # the RCPT greylisting's trap of the client (its record in Redis) is no part of
        # greylisting by score, as with the local and LMDB stores: the retry passes
        ipkey = 'mxgate:glip:127.0.0.1'
        mt.redis_cmd(redis.port, 'HSET', ipkey, 's', '1', 't', '0')
        mt.redis_cmd(redis.port, 'PEXPIRE', ipkey, 3600000)
        mt.check(send(mx, 'trapped-' + kind, 'grey', body='Trapped.\r\n')[0] == 451,
                 'redis: a trapped client\'s greylisted message: first sight 451')
        code, text = send(mx, 'trapped-' + kind, 'grey', body='Trapped.\r\n')
        mt.check(code == 250 and len(be.by_tag('trapped-' + kind)) == 1,
                 'redis: its retry after the delay is delivered: the client\'s trap record is not read '
                 '(%s %s)' % (code, text))
        mt.redis_cmd(redis.port, 'DEL', ipkey)
    mx.stop()

# -t: where the records go, and a band a refusal leaves empty
LISTEN = [{'address': '127.0.0.1:2525'}]     # -t binds nothing
rc, out = mt.config_check(cfg('local', '5m', LISTEN), 'local')
mt.check(rc == 0 and 'warning: rules.actions.greylist 4.00 keeps its records in greylist.store local' in out,
         '-t warns that the local store is this process\'s alone (%s %s)' % (rc, out))
rc, out = mt.config_check(cfg('redis://127.0.0.1:%d' % redis.port, '5m', LISTEN), 'redis')
mt.check(rc == 0 and 'actions.greylist' not in out, '-t says nothing with a shared store (%s)' % out)
rc, out = mt.config_check(cfg('redis://127.0.0.1:%d' % redis.port, '5m', LISTEN,
                              actions={'add_header': 5, 'greylist': 8, 'tempfail': 7}), 'empty')
mt.check(rc == 0 and 'rules.actions.greylist 8.00 is at or above actions.tempfail 7.00' in out,
         '-t warns when tempfail leaves the band empty (%s)' % out)
mt.finish()
