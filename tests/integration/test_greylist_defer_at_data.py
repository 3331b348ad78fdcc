#!/usr/bin/env python3
"""greylist.defer_at: data — greylisting answers after the backend has judged the recipients.

Greylisting at RCPT answers 451 before the backend is asked, so a recipient that does not
exist gets 451 on a first attempt and its sender retries for days instead of bouncing at
once with the backend's 550 (postgrey behind Postfix's reject_unlisted_recipient never sees
such a recipient). With defer_at: data (the path null_sender: data already takes for <>):

- a recipient the backend does not know gets its 550 at RCPT on the first attempt (with
  defer_at: rcpt, the default, 451 — checked too);
- a new triplet defers the message at DATA (451 4.7.1, logged stage=data, by its first
  accepted recipient) and nothing reaches the backend; the retry after the delay passes and
  the message is delivered once, to every accepted recipient;
- a transaction whose every recipient is refused never reaches DATA: no triplet is made.
Peers: a scripted backend refusing one address; clients over PROXY v2.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend(name='gl-data', reject_rcpt={'nobody@example.test'})


def cfg(**gl):
    g = {'enabled': True, 'store': 'local', 'delay': '0s', 'retry_window': '1h'}
    g.update(gl)
    return mt.proxied_config([be.url], accept_domains=['example.test'], greylist=g)


FROM = 'MAIL FROM:<someone@sender.example>'
UNKNOWN = [FROM, 'RCPT TO:<nobody@example.test>']
TWO = [FROM, 'RCPT TO:<nobody@example.test>', 'RCPT TO:<user@example.test>', 'RCPT TO:<other@example.test>',
       'DATA']

mx = mt.Mxgate(cfg(), name='mx-gl-rcpt')
got = mt.session_codes(mx.port, '198.18.61.1', UNKNOWN)
mt.check(got == [250, 451], 'defer_at: rcpt (the default): an unknown recipient gets 451 first (got %s)' % got)
mx.stop()

mx = mt.Mxgate(cfg(defer_at='data'), name='mx-gl-data')
got = mt.session_codes(mx.port, '198.18.62.1', UNKNOWN)
mt.check(got == [250, 550], "defer_at: data: an unknown recipient gets the backend's 550 at once (got %s)" % got)
mt.check(mx.count_log(r'event=greylist ') == 0, 'and no triplet is made for it')

n0 = len(be.messages)
got = mt.session_codes(mx.port, '198.18.63.1', TWO, mt.message('gl-data-1'))
mt.check(got == [250, 550, 250, 250, 451], 'a new triplet: the unknown recipient 550, the others 250, '
         'then 451 at DATA (got %s)' % got)
mt.check(mx.wait_log(r'event=greylist client=198\.18\.63\.1 from=<someone@sender\.example> '
                     r'rcpt=<user@example\.test> wait=\d+ store=local stage=data', 5) is not None,
         'logged at DATA by the first accepted recipient')
mt.check(len(be.messages) == n0, 'nothing reached the backend')
got = mt.session_codes(mx.port, '198.18.63.1', TWO, mt.message('gl-data-2'))
mt.check(got == [250, 550, 250, 250, 354, 250], 'the retry passes and is delivered (got %s)' % got)
mt.check(mt.wait_for(lambda: len(be.by_tag('gl-data-2')) == 1, 5), 'the backend has the message once')
msg = be.by_tag('gl-data-2')
mt.check(msg and {'other@example.test', 'user@example.test'} <= set(msg[0]['rcpts']),
         'to both accepted recipients (the backend saw %s; it refused nobody@)' % (msg[0]['rcpts'] if msg else None))
mt.check(not be.by_tag('gl-data-1'), 'and the deferred attempt never reached it')

mx.stop()
mt.finish()
