#!/usr/bin/env python3
"""test_rules_greylist_redis_stall — `rules.actions.greylist` with a Redis store that does not
answer (CLIENT PAUSE WRITE: the connection is up, every script waits): after greylist.timeout the
process's local table decides (as greylisting at RCPT does), the message gets its 451, and
the first sight is merged into Redis once it answers again, so a retry any node receives
finds it. Nothing waits on Redis for ever, nothing is lost. And with limits.filter_deadline
shorter than greylist.timeout, the request given up with the rules engine's job.

Peers: redis-server, the scripted backend (mxtest.Backend), the rules engine with a header
rule worth 6."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
rules_path = os.path.join(mt.TMP, 'grey.cf')
with open(rules_path, 'w') as f:
    f.write('header LOC_GREY X-Test-Spam =~ /^grey/\nscore LOC_GREY 6\n')
be = mt.Backend()
redis = mt.redis()
mx = mt.Mxgate(mt.config([be.url], workers=1,
                         greylist={'store': 'redis://127.0.0.1:%d' % redis.port, 'delay': '1h',
                                   'retry_window': '2h', 'timeout': '300ms'},
                         rules={'files': [rules_path],
                                'actions': {'add_header': 5, 'greylist': 4, 'tempfail': 10}}), 'node')


def send(tag, body):
    return mt.send_mail(mx.port, 'a@example.org', ['u@example.test'],
                        mt.message(tag, body=body, headers=('X-Test-Spam: grey',)), timeout=60)


code, text = send('before', 'Before.\r\n')
mt.check(code == 451 and mx.wait_log(r'event=rules_greylist result=deferred digest=[0-9a-f]{16} '
                                     r'store=redis ') is not None,
         'Redis answering: the first sight is Redis\'s (%s %s)' % (code, text))
mt.check(len(mt.redis_cmd(redis.port, 'KEYS', 'mxgate:glm:*')) == 1, 'one message record in Redis')

mt.redis_cmd(redis.port, 'CLIENT', 'PAUSE', '600000', 'WRITE')   # EVALSHA waits; UNPAUSE works
try:
    code, text = send('stalled', 'Stalled.\r\n')
    mt.check(code == 451 and '4.7.1 greylisted' in text,
             'Redis not answering: 451 4.7.1 all the same, not a hang (%s %s)' % (code, text))
    mt.check(mx.wait_log(r'event=rules_greylist result=deferred digest=[0-9a-f]{16} store=local ')
             is not None, 'the local table decided (store=local)\n%s' % mx.tail())
finally:
    mt.redis_cmd(redis.port, 'CLIENT', 'UNPAUSE')
mt.check(mt.wait_for(lambda: len(mt.redis_cmd(redis.port, 'KEYS', 'mxgate:glm:*')) == 2, mt.slack(20)),
         'the first sight decided during the stall is merged into Redis once it answers')
mx.stop()

# limits.filter_deadline shorter than greylist.timeout: the chain gives the rules engine up
# while its Redis request waits; the request is cancelled with the job (no answer lands on a
# freed job when Redis is back: the sanitizer build checks), the message gets the deadline's
# 451, and the process goes on serving
mx = mt.Mxgate(mt.config([be.url], workers=1, limits={'filter_deadline': '1s'},
                         greylist={'store': 'redis://127.0.0.1:%d' % redis.port, 'delay': '1h',
                                   'retry_window': '2h', 'timeout': '60s'},
                         rules={'files': [rules_path],
                                'actions': {'add_header': 5, 'greylist': 4, 'tempfail': 10}}), 'deadline')
mt.redis_cmd(redis.port, 'CLIENT', 'PAUSE', '600000', 'WRITE')
try:
    code, text = send('deadline', 'Deadline.\r\n')
    mt.check(code == 451 and mx.wait_log(r'event=filter_deadline') is not None and not be.by_tag('deadline'),
             'the deadline passes while Redis waits: 451, nothing delivered (%s %s)' % (code, text))
finally:
    mt.redis_cmd(redis.port, 'CLIENT', 'UNPAUSE')
code, text = send('after', 'After.\r\n')
mt.check(code == 451 and mx.wait_log(r'event=rules_greylist result=deferred digest=[0-9a-f]{16} '
                                     r'store=redis ') is not None,
         'Redis back: the next message is Redis\'s first sight (%s %s)' % (code, text))
mx.stop()
mt.finish()
