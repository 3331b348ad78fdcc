#!/usr/bin/env python3
"""EHLO offers the AUTH mechanisms Dovecot offers, as Postfix's `smtpd_sasl_type = dovecot`
does (it lists the MECH lines of Dovecot's handshake).

Dovecot's default is `auth_mechanisms = plain`. Before the fix mxgate always announced
"AUTH PLAIN LOGIN": a client that picks LOGIN from that list (Outlook, many devices) got
454 4.7.0 "Temporary authentication failure" for ever (Dovecot never offered LOGIN), where
behind Postfix the same client sees only PLAIN and uses it. Now:
- mxgate opens its connection to Dovecot when the worker starts, and EHLO lists what the
  handshake offered (both while that is not known yet);
- AUTH with a mechanism Dovecot does not offer is 504 5.5.4 (unrecognized, RFC 4954 4), not a
  temporary failure, and counts as no failed login;
- the offered one (and swaks --auth choosing from the list) authenticates;
- Dovecot going away while nothing is asked of it is logged once (event=auth_service_error
  ... requests=0; before, nothing until a client's AUTH failed, and then only the session's
  auth_error): not again when the next EHLO finds it still gone."""
import base64
import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('dovecot', 'swaks')

# Dovecot as an operator may already run it: the default mechanism list (plain only)
# (mt.dovecot's own instance with plain and login runs beside it, unused: its config, with
# its own base_dir, socket and port, is the starting point)
dv = mt.dovecot({'alice': 'secret'})
conf = os.path.join(mt.TMP, 'dovecot', 'dovecot.conf')
base = os.path.join(mt.TMP, 'dovecot-plain')
os.makedirs(os.path.join(base, 'run'), exist_ok=True)
os.makedirs(os.path.join(base, 'state'), exist_ok=True)
sock = os.path.join(base, 'auth-client')
text = open(conf).read()
text = text.replace('auth_mechanisms = plain login', 'auth_mechanisms = plain')
text = text.replace(os.path.join(mt.TMP, 'dovecot', 'run'), os.path.join(base, 'run'))
text = text.replace(os.path.join(mt.TMP, 'dovecot', 'state'), os.path.join(base, 'state'))
text = text.replace(dv.sock[len('unix:'):], sock)
# its inet listener off (port 0): only the socket is used, and a free_port() there could
# be another test's by the time Dovecot binds it (it then exits: no socket, a 15 s failure)
text = text.replace('port = %d' % dv.port, 'port = 0')
conf2 = os.path.join(base, 'dovecot.conf')
with open(conf2, 'w') as f:
    f.write(text)
plain = mt.spawn([mt.tool('dovecot'), '-F', '-c', conf2], 'dovecot-plain')
if not mt.wait_for(lambda: os.path.exists(sock), 15):
    mt.fail('dovecot (plain only) did not start:\n' + mt.log_of('dovecot-plain')[-1000:])

crt, key = mt.cert()
be = mt.Backend(name='mech')
mx = mt.Mxgate(mt.config([be.url], workers=1,
                         listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                         tls={'certificate': crt, 'key': key},
                         auth={'dovecot': 'unix:' + sock, 'timeout': '10s'}), name='mx-mech')


def ehlo_auth():
    c = mt.Client(mx.port, tls=True)
    code, text = c.ehlo()
    c.close()
    return [ln[9:] for ln in text.splitlines() if ln[4:].startswith('AUTH ')]


mt.check(mt.wait_for(lambda: ehlo_auth() == ['PLAIN'], mt.slack(10)),
         'EHLO offers what Dovecot offers: AUTH PLAIN (%s)' % ehlo_auth())

c = mt.Client(mx.port, tls=True)
c.ehlo()
code, text = c.cmd('AUTH LOGIN')
mt.check(code == 504 and '5.5.4' in text, 'AUTH LOGIN, which Dovecot does not offer: 504 5.5.4 (%s)' % text)
code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())
mt.check(code == 235, '... the session goes on, AUTH PLAIN: 235 (%s)' % text)
c.close()
mt.check(mx.count_log(r'event=auth_failed') == 0 and mx.count_log(r'event=auth_error') == 0,
         'the unoffered mechanism is neither a failed login nor a service error')

r = subprocess.run(['swaks', '--server', '127.0.0.1', '--port', str(mx.port), '--tlsc', '--auth',
                    '--auth-user', 'alice', '--auth-password', 'secret', '--from', 'alice@example.org',
                    '--to', 'rcpt@example.test', '--header', 'Message-ID: <mech@mxtest.example>'],
                   capture_output=True, text=True, timeout=mt.slack(60))
mt.check(r.returncode == 0 and '235 ' in r.stdout and len(be.by_tag('mech')) == 1,
         'swaks --auth (any mechanism from the list) authenticates and delivers (rc %d)\n%s' % (r.returncode, r.stdout[-500:]))

# Dovecot goes away while the worker's connection to it is idle: one service-level line. Its
# auth process outlives a master stopped alone (it serves the connections it has until they
# close): the test's own Dovecot's processes, by pid, are killed (as a crash, or an OOM kill).
n0 = mx.log_size()
kids = [int(k) for k in open('/proc/%d/task/%d/children' % (plain.pid, plain.pid)).read().split()]
mt.check(kids != [], 'dovecot-plain runs its services (%s)' % kids)
for k in kids:
    try:
        os.kill(k, signal.SIGKILL)
    except ProcessLookupError:
        pass
plain.terminate()
plain.wait(mt.slack(10))
m = mx.wait_log(r'(?m)warning - event=auth_service_error service=unix:\S+ reason="connection closed by Dovecot" '
                r'requests=0$', 10, n0)
mt.check(m is not None, 'Dovecot gone with nothing in flight: logged event=auth_service_error ... requests=0 (%s)'
         % mx.tail(5))
# the next EHLO tries again (nothing listens) and AUTH is refused: the outage is not logged again
c = mt.Client(mx.port, tls=True)
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())
c.close()
mt.check(code == 454, 'Dovecot gone: AUTH 454 (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=auth_error ', 5, n0) is not None and
         mx.count_log(r'event=auth_service_error ', n0) == 1,
         'the outage is one service line, not one per attempt (%s)' % re.findall(r'event=auth_\S+ .*', mx.log()[n0:]))

mx.stop()
mt.finish()
