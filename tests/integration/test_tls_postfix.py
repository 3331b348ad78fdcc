#!/usr/bin/env python3
"""mxgate between two real Postfix 3.x instances, TLS on both legs, SMTP AUTH on the way.

    Postfix "office" (smtp client: smtp_tls_security_level = encrypt, smtp_sasl_auth_enable,
      relayhost = mxgate's submission port: a smarthost setup)
      -> mxgate 587 (STARTTLS, AUTH checked by a real Dovecot)
      -> Postfix "backend" (smtpd with a certificate: mxgate's opportunistic STARTTLS;
         XCLIENT from 127.0.0.0/8; permit_sasl_authenticated, then relay only local.test)

- Postfix's smtp client at security level `encrypt` negotiates TLS with mxgate, authenticates
  (Cyrus SASL PLAIN/LOGIN against Dovecot through mxgate) and delivers;
- the backend sees the message arrive over TLS, learns the user from `XCLIENT LOGIN=` (its
  log: sasl_method=XCLIENT, sasl_username=alice) and so relays to a domain it does not serve
  (permit_sasl_authenticated, as in front of it);
- the same message without AUTH (port 25 listener) is refused there (relay access denied),
  so the LOGIN= is what made the difference (LOGIN=[UNAVAILABLE] is taken)."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'postfix', 'dovecot')
mt.need_postfix()

crt, key = mt.cert()
dv = mt.dovecot({'alice': 'secret'})
# ---------------------------------------------------------------- the backend
be_port = mt.free_port()
mt.postfix_instance('backend', be_port, '''relay_domains = local.test
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_tls_security_level = may
smtpd_tls_cert_file = {crt}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_recipient_restrictions = permit_sasl_authenticated, permit_auth_destination, reject
'''.format(crt=crt, key=key, sasl=dv.sock[len('unix:'):]))

# ---------------------------------------------------------------- mxgate
mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % be_port], workers=1,
                         listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},
                                 {'address': '127.0.0.1:0', 'tls': 'starttls'}],
                         tls={'certificate': crt, 'key': key},
                         auth={'dovecot': dv.sock, 'timeout': '10s'},
                         backends={'client_identity': 'xclient', 'pool_size': 0}), name='mx-pf')
SUB, MX = mx.ports

# ---------------------------------------------------------------- the office's Postfix, a smarthost client
office_port = mt.free_port()
mt.postfix_instance('office', office_port, '''mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sub}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:alice:secret
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtpd_recipient_restrictions = permit_mynetworks, reject
'''.format(sub=SUB))

r = mt.swaks(office_port, '--from', 'alice@office.test', '--to', 'someone@elsewhere.test',
             '--header', 'Message-ID: <pf-smarthost@mxtest.example>')
mt.check(r.returncode == 0, 'the office Postfix takes the message (%s)' % r.stdout[-200:])

office = re.compile(r'to=<someone@elsewhere\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d.*status=sent' % SUB)
mt.check(mt.wait_for(lambda: office.search(mt.log_of('office')), mt.slack(30)),
         'Postfix (smtp_tls_security_level = encrypt, SASL) delivered through mxgate:\n%s' % mt.log_of('office')[-1500:])
olog = mt.log_of('office')
mt.check(re.search(r'TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]' % SUB, olog) is not None,
         'the office Postfix logs TLS to mxgate')
mt.check(mx.wait_log(r'event=auth client=127\.0\.0\.1 user=alice mech=(PLAIN|LOGIN)', 5) is not None,
         'mxgate: event=auth user=alice (Cyrus SASL through mxgate to Dovecot)')

backend = re.compile(r'client=localhost\[127\.0\.0\.1\].*sasl_method=XCLIENT, sasl_username=alice')
mt.check(mt.wait_for(lambda: backend.search(mt.log_of('backend')), mt.slack(15)),
         'the backend Postfix learned the user by XCLIENT LOGIN=alice:\n%s' % mt.log_of('backend')[-1500:])
blog = mt.log_of('backend')
mt.check(re.search(r'TLS connection established from [^\n]*127\.0\.0\.1\]', blog) is not None,
         'the backend Postfix logs TLS from mxgate (opportunistic STARTTLS)')
relayed = re.compile(r'to=<someone@elsewhere\.test>.*status=sent')
mt.check(mt.wait_for(lambda: relayed.search(mt.log_of('backend')), mt.slack(15)),
         'the backend relayed to a domain it does not serve: permit_sasl_authenticated behind mxgate')

# ---------------------------------------------------------------- without AUTH: refused behind mxgate
r = mt.swaks(MX, '--tls', '--from', 'x@example.org', '--to', 'someone@elsewhere.test')
mt.check(r.returncode != 0 and re.search(r'<~\*?\s+554 5\.7\.1 .*(Relay access|Access) denied', r.stdout) is not None,
         'without AUTH the backend refuses the relay (LOGIN=[UNAVAILABLE]): %s' % r.stdout[-300:])

mx.stop()
mt.finish()
