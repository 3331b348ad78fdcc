#!/usr/bin/env python3
"""Backup servers, as an operator coming from HAProxy (`server ... backup`) or Postfix
(`smtp_fallback_relay`) sets them up: `backends.servers[].backup: true` marks a server that
gets mail only when no other server of the set can take it: every non-backup server down
or drained, or, for one message, every one that is up already tried (a 4xx after the dot,
a dropped connection: the message goes to the backup rather than back to the client).
Up again, the non-backup servers take the mail back. /readyz, `mxgatectl backends` and
the logs agree at each step.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'backup-control.sock')


def rows():
    return mt.backends_rows(CTL, SOCK)


def ctl(*args):
    rc, out, err = mt.ctl(SOCK, *args)
    return rc, out + err


def readyz(port):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d/readyz' % port, timeout=mt.slack(5)) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def tags(b, prefix):
    return [t for m in b.messages for t in mt.message_ids([m['data']]) if t.startswith(prefix)]


def send_all(mx, prefix, n):
    return [mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('%s%d' % (prefix, i))).code
            for i in range(n)]


if want('backup'):
    p1, p2, k = mt.Backend(name='P1'), mt.Backend(name='P2'), mt.Backend(name='K')
    cfg = mt.config([p1.url, p2.url, {'address': k.url, 'backup': True}], workers=1,
                    control={'socket': SOCK}, metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                    backends={'health_check': {'interval': '200ms', 'timeout': '1s', 'fall': 1, 'rise': 1}})
    mx = mt.Mxgate(cfg, name='mx-backup')
    mp = mx.metrics_port
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'backup: started')
    r = rows()
    mt.check(r.get(k.url, {}).get('backup') is True and r.get(p1.url, {}).get('backup') is False,
             'backup: mxgatectl backends marks the backup server (%s)' % r.get(k.url))
    rc, text = ctl('backends')
    mt.check('(backup)' in text, 'backup: ... in the text view too:\n%s' % text)

    codes = send_all(mx, 'all-up-', 4)
    mt.check(codes == [250] * 4 and len(tags(p1, 'all-up-')) == 2 and len(tags(p2, 'all-up-')) == 2
             and not tags(k, 'all-up-'),
             'backup: all up: the two servers share the mail, the backup gets none (%s)' % codes)

    port1 = p1.port
    mark = mx.log_size()
    p1.stop()
    mt.check(mx.wait_log(r'event=backend_down backend=%s ' % p1.url, 10, start=mark) is not None, 'backup: P1 down')
    codes = send_all(mx, 'one-down-', 4)
    mt.check(codes == [250] * 4 and len(tags(p2, 'one-down-')) == 4 and not tags(k, 'one-down-'),
             'backup: one of two down: the other takes it all, not the backup (%s)' % codes)

    # one server up, the message deferred there: the backup takes it (Postfix's fallback relay)
    p2.mode = 'tempfail_data'
    codes = send_all(mx, 'deferred-', 2)
    mt.check(codes == [250] * 2 and len(tags(k, 'deferred-')) == 2,
             'backup: a message every up server deferred goes to the backup (%s)' % codes)
    p2.mode = 'ok'

    # a drained server counts as unavailable, as HAProxy's maintenance
    rc, out = ctl('drain', p2.url)
    codes = send_all(mx, 'drained-', 2)
    mt.check(rc == 0 and codes == [250] * 2 and len(tags(k, 'drained-')) == 2,
             'backup: the only server up drained: the backup takes the mail (%s; %s)' % (codes, out))
    mt.check(readyz(mp) == 200, 'backup: /readyz ready while the backup can take mail')
    ctl('enable', p2.url)

    mark = mx.log_size()
    p2.stop()
    mt.check(mx.wait_log(r'event=backend_down backend=%s ' % p2.url, 10, start=mark) is not None, 'backup: P2 down')
    codes = send_all(mx, 'all-down-', 4)
    mt.check(codes == [250] * 4 and len(tags(k, 'all-down-')) == 4,
             'backup: every non-backup server down: the backup takes it all (%s)' % codes)
    mt.check(readyz(mp) == 200, 'backup: /readyz still ready (the backup is up)')

    p1b = mt.Backend(name='P1b', port=port1)
    mt.check(mx.wait_log(r'event=backend_up backend=%s ' % p1.url, 10, start=mark) is not None, 'backup: P1 up again')
    codes = send_all(mx, 'back-', 4)
    mt.check(codes == [250] * 4 and len(tags(p1b, 'back-')) == 4 and not tags(k, 'back-'),
             'backup: P1 back: it takes the mail back from the backup (%s)' % codes)
    mx.stop()
    for s in (p1b, k):
        s.stop()

if want('check'):
    rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:25', {'address': 'smtp://127.0.0.1:26', 'backup': 'maybe'}],
                                        listen=[{'address': '127.0.0.1:2525'}]), name='backup-bad')
    mt.check(rc == 1 and 'servers[1].backup' in out, 'check: backup takes true or false (%d %s)' % (rc, out.strip()))

mt.finish()
