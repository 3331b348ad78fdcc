#!/usr/bin/env python3
"""The rate limits' local table is theirs alone. It used to be one process-wide table for
the rate limits, the greylist's triplets and the AUTH guard, bounded by ratelimit.max_keys
(or by whichever module asked first): triplets waiting hours for their retry (retry_window)
outlive a rate-limit bucket, so a flood of greylisted RCPTs (451, cheap to send) evicted
the buckets and a client over its limit sent again. Here max_keys is 16 and one client
makes 500 greylisted triplets: the client over its message limit stays over it. A
max_keys changed by SIGHUP is logged as waiting for the next start (the table is made
once)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()


def cfg(max_keys):
    return mt.proxied_config(
        [be.url], limits={'max_errors': 1000, 'max_recipients': 1000},
        greylist={'enabled': True, 'store': 'local', 'delay': '1h', 'retry_window': '4h',
                  'allow': ['198.18.70.0/24']},
        ratelimit={'store': 'local', 'max_keys': max_keys, 'rules': [
            {'key': 'ip', 'count': 'messages', 'limit': '2/1h'}]})


n = mt.Mxgate(cfg(16), 'node')


def send(tag):
    return mt.send_mail(n.port, 'a@example.org', ['b@example.test'], mt.message(tag), proxy_src='198.18.70.1')


codes = [send('before%d' % i)[0] for i in range(3)]
mt.check(codes == [250, 250, 451], 'messages 2/1h (the /24 is not greylisted): %s' % codes)

# another client: 500 RCPTs, each a new triplet, each greylisted (pipelined)
N = 500
c = mt.Client(n.port, proxy_src='198.18.71.1')
c.ehlo('flood.example.org')
c.cmd('MAIL FROM:<s@example.org>')
c.send(''.join('RCPT TO:<r%d@example.test>\r\n' % i for i in range(N)))
codes = [c.reply()[0] for _ in range(N)]
c.close()
mt.check(codes == [451] * N, '%d new triplets greylisted: %s' % (N, sorted(set(codes))))

codes = [send('after%d' % i)[0] for i in range(2)]
mt.check(codes == [451, 451], 'the client over its limit is still over it after the flood of triplets: %s' % codes)
mt.check(be.by_tag('after0') == [] and be.by_tag('after1') == [], 'nothing more delivered for it')

start = n.log_size()
n.reload(cfg(1000))
mt.check(n.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
mt.check(n.wait_log(r'event=config_unchanged key=ratelimit\.max_keys reason="takes effect at the next start"', 10, start)
         is not None, 'a changed ratelimit.max_keys is logged as waiting for the next start')
n.stop()
mt.finish()
