#!/usr/bin/env python3
"""event=greylist_error at DATA names the recipient the triplet was made of.

With greylist.defer_at: data greylisting judges a transaction at DATA by its first recipient
(gl_call_rcpt: the first the backend accepted). When that judgement fails open (here: the
LMDB map damaged under the running daemon, every read MDB_CORRUPTED) the log line's rcpt=
was the session's current RCPT candidate — at DATA there is none, so it read rcpt=<>, and an
operator could not tell which triplet greylisting failed on. Now it names the first
recipient, as the defer/allow lines at DATA do (failed first on main: rcpt=<>).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
GL = os.path.join(mt.TMP, 'gl')
mx = mt.Mxgate(mt.proxied_config(
    [be.url], workers=1,
    greylist={'enabled': True, 'store': 'lmdb:' + GL, 'delay': '1h', 'retry_window': '2h',
              'defer_at': 'data'}), 'node')

# a triplet in the map (greylisted at DATA), so the map has a root page to damage
r = mt.send_mail(mx.port, 'a@example.org', ['first@example.test'], mt.message('seed'),
                 proxy_src='198.18.80.1')
mt.check(r[0] == 451 and r.stage == 'data', 'defer_at: data: a new triplet is deferred at DATA: %s %s'
         % (r.stage, r[0]))
mt.lmdb_damage(GL, 'a triplet')

r = mt.send_mail(mx.port, 'b@example.org', ['one@example.test', 'two@example.test'], mt.message('err'),
                 proxy_src='198.18.81.1')
mt.check(r[0] == 250, 'the map unreadable at DATA: the message passes (fail open): %s %s' % (r.stage, r[0]))
m = mx.wait_log(r'event=greylist_error reason=store_read store=lmdb client=198\.18\.81\.1 .*', timeout=mt.slack(10))
line = m.group(0) if m else None
mt.check(line is not None, 'logged: event=greylist_error reason=store_read\n%s' % mx.tail())
mt.check(line is not None and 'from=<b@example.org> rcpt=<one@example.test> ' in line,
         "it names the transaction's first recipient, the triplet's (was rcpt=<>): %s" % line)
mx.stop()
mt.finish()
