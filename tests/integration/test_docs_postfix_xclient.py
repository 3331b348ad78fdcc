#!/usr/bin/env python3
"""README "In front of real mail servers": "On the backends, allow mxgate's address to send
XCLIENT (Postfix: `smtpd_authorized_xclient_hosts = ...`) ... so they log and judge the real
client". An operator who misses that line gets a Postfix that offers no XCLIENT to mxgate:
every message then comes from mxgate's own address, which Postfix's mynetworks usually
holds (permit_mynetworks: it relays anywhere), and its client checks judge mxgate.

- in front of such a Postfix, with client_identity: xclient (the default), mxgate says so
  once per backend, at the health probe that reads its EHLO reply:
  event=backend_no_xclient backend=smtp://... (warning) (was: nothing anywhere; the only
  trace was Postfix's log naming mxgate as every client); with backends.require_xclient:
  true (session 31; opted in here, the default is false) the probe fails it and a message
  gets 451 4.4.1, never relayed as from mxgate; with require_xclient: false the message goes
  as from mxgate;
- with smtpd_authorized_xclient_hosts set, no such line, and Postfix logs the real client."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'postfix')
mt.need_postfix()

MAIN = '''relay_domains = example.org
relayhost = [127.0.0.1]:9
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
'''
bare, authorized = mt.free_port(), mt.free_port()
mt.postfix_instance('pf-noxclient', bare, MAIN)
mt.postfix_instance('pf-xclient', authorized, MAIN + 'smtpd_authorized_xclient_hosts = 127.0.0.0/8\n')


def daemon(name, port, **backends):
    backends.setdefault('require_xclient', True)        # opted in: the default is false
    cfg = mt.config(['smtp://127.0.0.1:%d' % port], workers=1,
                    listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                    trusted_proxies=['127.0.0.1/32'], backends=backends)
    cfg['backends']['health_check'] = {'interval': '200ms', 'timeout': '%gs' % mt.slack(10), 'fall': 2, 'rise': 1}
    cfg['log'] = {'level': 'debug'}
    return mt.Mxgate(cfg, name=name)


def probes(mx):
    return mx.count_log(r'event=health_check backend=\S+ result=ok')


def send(mx):
    return mt.swaks(mx.port, '--proxy-version', '2', '--proxy-family', 'AF_INET', '--proxy-source', '198.18.0.9',
                    '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1', '--proxy-dest-port', str(mx.port),
                    '--from', 'a@example.net', '--to', 'b@example.org')


def failed_probes(mx):
    return mx.count_log(r'event=health_check backend=\S+ result=fail')


mx = daemon('mx-required', bare)
mt.check(mt.wait_for(lambda: failed_probes(mx) >= 3, mt.slack(30)),
         'backends.require_xclient: true: three probes of the Postfix without XCLIENT failed')
lines = re.findall(r'[^\n]*event=backend_no_xclient[^\n]*', mx.log())
mt.check(len(lines) == 1 and 'backend=smtp://127.0.0.1:%d' % bare in lines[0] and ' warning ' in lines[0],
         'a backend that offers no XCLIENT is named once, as a warning (%s)' % lines)
r = send(mx)
mt.check(r.returncode != 0 and '451 4.4.1' in r.stdout + r.stderr and
         not re.search(r': client=localhost\[127\.0\.0\.1\]', mt.log_of('pf-noxclient')),
         'the message gets 451 4.4.1, nothing goes to that Postfix as from mxgate (rc=%d)' % r.returncode)
mx.stop()

mx = daemon('mx-noxclient', bare, require_xclient=False)
mt.check(mt.wait_for(lambda: probes(mx) >= 3, mt.slack(30)), 'require_xclient: false: three probes of the Postfix without XCLIENT passed')
lines = re.findall(r'[^\n]*event=backend_no_xclient[^\n]*', mx.log())
mt.check(len(lines) == 1 and 'backend=smtp://127.0.0.1:%d' % bare in lines[0] and ' warning ' in lines[0],
         'a backend that offers no XCLIENT is named once, as a warning (%s)' % lines)
r = send(mx)
mt.check(r.returncode == 0, 'the message is still delivered (rc=%d)' % r.returncode)
mt.check(mt.wait_for(lambda: re.search(r': client=localhost\[127\.0\.0\.1\]', mt.log_of('pf-noxclient')), 10),
         'as the warning says, that Postfix sees mxgate (127.0.0.1) as the client')
mx.stop()

mx = daemon('mx-xclient', authorized)
mt.check(mt.wait_for(lambda: probes(mx) >= 3, mt.slack(30)), 'three probes of the Postfix with XCLIENT passed')
mt.check(mx.count_log(r'event=backend_no_xclient') == 0, 'no backend_no_xclient line for a Postfix that offers XCLIENT')
r = send(mx)
mt.check(r.returncode == 0 and mt.wait_for(lambda: re.search(r': client=\S*\[198\.18\.0\.9\]', mt.log_of('pf-xclient')), 10),
         'that Postfix logs the real client, 198.18.0.9 (rc=%d)' % r.returncode)
mt.finish()
