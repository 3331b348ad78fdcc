#!/usr/bin/env python3
"""Greylisting a sender whose address changes from message to message or from day to day:
a BATV-signed sender (prvs=TAG=user@domain, a new tag every day), a mailing list's VERP or
Google Groups address (list+bncXYZ@..., bounce-1234-5@..., new for every message), an SRS
address of a forwarder (SRS0=, SRS0+ as libsrs2 and postsrsd may write it, SRS1 when forwarded
twice: new hashes and time stamp every day), Barracuda's BATV (btv1==TAG==user). Once such
a sender has passed, its next message passes at once, as with postgrey (which drops the
BATV tag, the +extension and numbers standing alone). Before, each new tag or number was a
new triplet, greylisted again. A different sender, and the null sender, are still
greylisted."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

DELAY = 1.0
mt.need()
be = mt.Backend()
n = mt.Mxgate(mt.proxied_config([be.url], greylist={'enabled': True, 'store': 'local', 'delay': '1s',
                                                     'retry_window': '1h'}), 'node')


def send(sender, tag, src='198.18.65.1'):
    return mt.send_mail(n.port, sender, ['u@example.test'], mt.message(tag), ehlo='mail.example.org',
                        proxy_src=src)


FIRST = ('prvs=1234abcdef=news@example.org', 'list+bncBDK4HJ7XQ@googlegroups.example',
         'bounce-1234-5@lists.example.org', 'SRS0=HhHh=TT=orig.example=alice@fwd.example',
         'SRS0+HhHh=TT=orig.example=carol@fwd.example',
         'SRS1=XxXx=fwd1.example==HhHh=TT=orig.example=dave@fwd2.example',
         'btv1==1234abcdef==erin@example.org')
NEXT = ('prvs=1235fedcba=news@example.org', 'list+bncZZZ99QQ@googlegroups.example',
        'bounce-9876-1@lists.example.org', 'SRS0=XyXy=UU=orig.example=alice@fwd.example',
        'SRS0+XyXy=UU=orig.example=carol@fwd.example',
        'SRS1=YyYy=fwd1.example==XyXy=UU=orig.example=dave@fwd2.example',
        'btv1==5678fedcba==erin@example.org')
N = len(FIRST)
first = [send(s, 'first%d' % i) for i, s in enumerate(FIRST)]
# each triplet is recorded before its 451 is sent: the delay from the last 451 back is over
# for all of them (from before the first send it was not, when the sends took longer)
first_done = time.time()
mt.check(all(r[0] == 451 and r.stage == 'rcpt' for r in first), 'first attempts greylisted: %s' % [r[0] for r in first])
time.sleep(max(0, first_done + DELAY + 0.2 - time.time()))
retry = [send(s, 'retry%d' % i) for i, s in enumerate(FIRST)]
mt.check([r[0] for r in retry] == [250] * N, 'retries after the delay pass: %s' % [tuple(r) for r in retry])
nxt = [send(s, 'next%d' % i) for i, s in enumerate(NEXT)]
mt.check([r[0] for r in nxt] == [250] * N,
         'the next message of each sender, with a new tag / number, passes at once: %s' % [tuple(r) for r in nxt])
mt.check(all(be.by_tag('next%d' % i) for i in range(N)), 'and is delivered')

# another original sender through the same forwarder is another sender (before, an SRS0+
# address lost everything after its '+' as an extension: every sender of the forwarder was one)
OTHER = ('news2@example.org', 'other+x@googlegroups.example', '', 'SRS0+ZzZz=VV=other.example=bob@fwd.example')
other = [send(s, 'other%d' % i) for i, s in enumerate(OTHER)]
mt.check([r[0] for r in other] == [451] * len(OTHER),
         'another sender (also through the same forwarder), and the null sender, are greylisted: %s' % [r[0] for r in other])
mt.check('event=greylist client=198.18.65.1 from=<prvs=1234abcdef=news@example.org>' in n.log(),
         'the log names the sender as it was sent')
n.stop()
mt.finish()
