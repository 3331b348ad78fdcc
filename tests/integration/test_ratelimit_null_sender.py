#!/usr/bin/env python3
"""A null-sender rate (Haraka's limit rate_rcpt_null): a rule with `sender: null` counts only
mail from <> (bounces), here { key: recipient, count: recipients, limit: 2/1h, sender: null }
as Haraka keys it, in the local table and in Redis. swaks sends the bounces (--from '<>'):
the third to one recipient is 451; a real sender to that recipient is not counted by it;
another recipient has its own bucket; a rule with the same key, count and limit for every
sender keeps a bucket of its own; the log line says sender=null. `mxgate -t` refuses
sender: null where the sender is not known yet (connections, concurrency). The sender and
sender_domain keys of an every-sender rule do not count <> (all the world's bounces are no one
sender); with sender: null they count it as the one value <>.
Peers: smtp-sink behind, swaks in front, redis-server."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'swaks', 'redis-server')
sink = mt.Sink(name='sink-nullrate')
red = mt.redis()
RULES = [{'key': 'recipient', 'count': 'recipients', 'limit': '2/1h', 'sender': 'null'},
         # the same key, count and limit for every sender: counts the bounces too, in its
         # own bucket (so it is not used up by the null-sender rule's charges, nor it by these)
         {'key': 'recipient', 'count': 'recipients', 'limit': '5/1h'}]


def swaks(port, sender, rcpt):
    p = mt.swaks(port, '--from', sender, '--to', rcpt, '--helo', 'mta.example.org')
    for line in p.stdout.splitlines():
        if line.startswith('<** ') and 'RCPT' not in line and line[4:5] in '45':
            return int(line[4:7])
        if line.startswith('<') and ' 250 ' in line and 'queued' in line:
            return 250
    return p.returncode


for store in ('local', 'redis://127.0.0.1:%d' % red.port):
    name = 'local' if store == 'local' else 'redis'
    cfg = mt.config([sink.url], accept_domains=['example.test'], limits={'max_errors': 1000},
                    ratelimit={'store': store, 'rules': RULES})
    mx = mt.Mxgate(cfg, 'mx-nullrate-' + name)
    pm = 'pm-%s@example.test' % name
    got = [swaks(mx.port, '<>', pm) for _ in range(3)]
    mt.check(got == [250, 250, 451], '%s: bounces to one recipient at 2/1h: %s' % (name, got))
    mt.check(mx.wait_log(r'event=ratelimit key=recipient sender=null value=%s count=recipients '
                         r'limit=2/1h action=tempfail store=%s' % (pm.replace('.', r'\.'), name)),
             '%s: the refusal is logged with sender=null' % name)
    mt.check(swaks(mx.port, 'a@example.org', pm) == 250,
             '%s: a real sender to that recipient is not counted by the null-sender rule' % name)
    mt.check(swaks(mx.port, '<>', 'other-%s@example.test' % name) == 250,
             '%s: another recipient\'s bounces have their own bucket' % name)
    # the every-sender rule saw 2 bounces + 1 real message to pm: 3 of 5, not used up
    mt.check(swaks(mx.port, 'b@example.org', pm) == 250 and swaks(mx.port, 'c@example.org', pm) == 250,
             '%s: the every-sender rule keeps its own count (4th and 5th to pm accepted)' % name)
    mt.check(swaks(mx.port, 'd@example.org', pm) == 451, '%s: ... and its 6th is over 5/1h' % name)
    if name == 'redis':
        keys = sorted(k.decode() for k in mt.redis_cmd(red.port, 'KEYS', 'mxgate:rl:recipients:*'))
        mt.check('mxgate:rl:recipients:recipient+null:2/1h:%s' % pm in keys and
                 'mxgate:rl:recipients:recipient:5/1h:%s' % pm in keys,
                 'redis: the null-sender bucket is a key of its own (%s)' % keys)
    mx.stop()

# ---- the sender keys of an every-sender rule do not count <>: it is every bounce, DSN and
# auto-reply in the world, from any server, and as one sender (or one "domain") a rule such as
# docs' { key: sender_domain, count: messages, limit: 1000/1h } was one bucket for all of them:
# past it, every customer's DSNs were 451 (until session 30). A sender: null rule of those
# keys still counts <> as the one value it asked for.
for key in ('sender_domain', 'sender'):
    cfg = mt.config([sink.url], accept_domains=['example.test'], limits={'max_errors': 1000},
                    ratelimit={'rules': [{'key': key, 'count': 'messages', 'limit': '2/1h'}]})
    mx = mt.Mxgate(cfg, 'mx-nullrate-' + key)
    got = [swaks(mx.port, '<>', 'cust%d@example.test' % i) for i in range(4)]
    mt.check(got == [250] * 4, '%s at 2/1h: four bounces to four customers all delivered (%s)' % (key, got))
    got = [swaks(mx.port, 'news@example.org', 'cust%d@example.test' % i) for i in range(3)]
    mt.check(got == [250, 250, 451], '%s at 2/1h: a real sender is still limited (%s)' % (key, got))
    mx.stop()
cfg = mt.config([sink.url], accept_domains=['example.test'], limits={'max_errors': 1000},
                ratelimit={'rules': [{'key': 'sender', 'count': 'messages', 'limit': '2/1h', 'sender': 'null'}]})
mx = mt.Mxgate(cfg, 'mx-nullrate-all')
got = [swaks(mx.port, '<>', 'cust%d@example.test' % i) for i in range(3)]
mt.check(got == [250, 250, 451], 'key: sender with sender: null: every bounce one bucket, as asked (%s)' % got)
mt.check(mx.wait_log(r'event=ratelimit key=sender sender=null value=<> count=messages') is not None,
         'logged value=<>')
mx.stop()

rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525'}],
                               ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '5/1m',
                                                     'sender': 'null'}]}), 'nullrate-bad')
mt.check(rc == 1 and 'ratelimit.rules[0]: sender: null is known at MAIL FROM' in out,
         'mxgate -t: sender: null on a connection count is refused (%s)' % out[:300])
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525'}],
                               ratelimit={'rules': [{'key': 'ip', 'count': 'messages', 'limit': '5/1m',
                                                     'sender': 'bounce'}]}), 'nullrate-enum')
mt.check(rc == 1 and 'ratelimit.rules[0].sender' in out, 'mxgate -t: sender takes any or null (%s)' % out[:300])
mt.finish()
