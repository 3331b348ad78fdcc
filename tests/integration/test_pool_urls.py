#!/usr/bin/env python3
"""One server, one URL, whatever the case it is written in — and two servers stay two.

The scheme and the host of a backend URL are case-insensitive (RFC 3986 3.1, 3.2.2), a
path is not (maildir:/srv/Mail and maildir:/srv/mail are two directories; the config check
already counts them as two servers). The per-URL records (up/down, counters, drains) and the
operator's drain must agree with that:

- paths: draining maildir:DIR/Box leaves maildir:DIR/box in rotation (`mxgatectl drain`
  compared URLs without case: it drained both, and mail to neither was possible);
- hosts: a reload that rewrites smtp://localhost:P as smtp://LOCALHOST:P is the same server:
  its known state (down) stays, no second backend_down, no moment where `mxgatectl
  backends` calls it up (the records compared URLs with case: a new record, up until its
  first probe), and a drain made before the reload still holds.
MX_POOL_ONLY=name,name runs only those cases.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

want = mt.case_wanted


mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'urls-control.sock')


def rows():
    return mt.backends_rows(CTL, SOCK)


def ctl(*args):
    rc, out, err = mt.ctl(SOCK, *args)
    return rc, out + err


if want('paths'):
    d = os.path.join(mt.TMP, 'urls-md')
    big, small = 'maildir:%s/Box' % d, 'maildir:%s/box' % d
    mx = mt.Mxgate(mt.config([big, small], workers=1, control={'socket': SOCK}), name='mx-urls-paths')
    mt.check(mx.wait_log(r'event=ready ', 10) is not None, 'paths: started')
    rc, out = ctl('drain', big)
    mt.check(rc == 0, 'paths: drain %s (%s)' % (big, out.strip()))
    r = rows()
    mt.check(r.get(big, {}).get('state') in ('drained', 'draining') and r.get(small, {}).get('state') == 'up',
             'paths: only the drained directory is drained (%s: %s, %s: %s)'
             % (big, r.get(big, {}).get('state'), small, r.get(small, {}).get('state')))
    code = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('paths1')).code
    mt.check(code == 250, 'paths: mail goes to the other directory (%s)' % code)
    mx.stop()

if want('hosts'):
    port = mt.dead_port()
    lower, upper = 'smtp://localhost:%d' % port, 'smtp://LOCALHOST:%d' % port
    other = mt.Backend(name='U-other')
    cfg = mt.config([lower, other.url], workers=1, control={'socket': SOCK}, log={'level': 'debug'},
                    backends={'health_check': {'interval': '300ms', 'timeout': '2s', 'fall': 1, 'rise': 1}})
    mx = mt.Mxgate(cfg, name='mx-urls-hosts')
    mt.check(mx.wait_log(r'event=backend_down backend=%s ' % lower, 10) is not None, 'hosts: the dead one is down')
    rc, out = ctl('drain', lower)
    mt.check(rc == 0, 'hosts: drained (%s)' % out.strip())
    start = mx.log_size()
    cfg2 = mt.config([upper, other.url], workers=1, control={'socket': SOCK}, log={'level': 'debug'},
                     backends={'health_check': {'interval': '300ms', 'timeout': '2s', 'fall': 1, 'rise': 1}})
    mx.reload(cfg2)
    mt.check(mx.wait_log(r'event=reloaded', mt.slack(10), start) is not None, 'hosts: reloaded')
    r = rows()
    mt.check(r.get(upper, {}).get('state') in ('drained', 'draining'),
             'hosts: the drain holds for the same server written in capitals (%s)' % r.get(upper))
    # a probe of the new generation ran (debug line), and the state was known: no new down
    mt.check(mx.wait_log(r'event=health_check backend=%s result=fail' % upper, 10, start) is not None,
             'hosts: the new generation probes it\n%s' % mx.tail())
    mt.check(mx.count_log(r'event=backend_down', start) == 0 and mx.count_log(r'event=backend_up', start) == 0,
             'hosts: no second backend_down (nor up) for the same server\n%s' % mx.tail())
    rc, out = ctl('enable', upper)
    r = rows()
    mt.check(r.get(upper, {}).get('state') == 'down', 'hosts: enabled, it is down as known (%s)' % r.get(upper))
    mx.stop()

mt.finish()
