#!/usr/bin/env python3
"""Submission with SMTP AUTH (RFC 4954) against a real Dovecot (dovecot-core, passwd-file
users, its auth service on a private unix socket) with swaks --auth and a raw client.

- where AUTH is offered: never on a listener without `submission`/`auth` (port 25), on a
  submission listener only after STARTTLS (538 5.7.11 before), at once on implicit TLS (465);
  MAIL before AUTH on submission: 530 5.7.0;
- swaks --auth PLAIN over STARTTLS and --auth LOGIN over implicit TLS deliver; the backend
  learns the user by XCLIENT LOGIN=, a milter gets {auth_authen} and {auth_type};
- the exchange: initial response, 334 challenges, `*` cancels (501 5.0.0), bad base64
  (501 5.5.2), unknown mechanism (504 5.5.4), a second AUTH (503), a wrong password 535 5.7.8;
- brute force: failures counted per client address (421 4.7.0 and disconnect past
  auth.max_failures, and refused again on the next connection) and per user name across
  addresses; `event=auth_failed client=IP user=U mech=M` lines a fail2ban filter matches;
- AUTH lifts a refusal at connect (a DNS list naming a dynamic range);
- the counts in Redis (auth.store) are shared by two nodes;
- ratelimit `key: auth_user`: a per-user message rate;
- the auth service stopped: 454 4.7.0, the session goes on."""
import base64
import os
import re
import socket
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'dovecot', 'rbldnsd', 'fail2ban-regex')
mt.need_python_milter()

USERS = {'alice': 'secret', 'bob': 'hunter2', 'carol': 'pw-carol'}
dv = mt.dovecot(USERS)
# 127.0.0.10/31: a "dynamic" range a policy list names (users submit from such addresses)
rbl = mt.rbldnsd({'pbl.test': ('ip4set', ':127.0.0.10:dynamic range\n127.0.0.10/31\n')})
crt, key = mt.cert()
be = mt.Backend(name='auth')
milter = mt.milter()
MAX_FAILURES = 2
cfg = mt.config([be.url], listen=[
    {'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},    # "587"
    {'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True},    # "465"
    {'address': '127.0.0.1:0', 'tls': 'starttls'}],                       # "25"
    tls={'certificate': crt, 'key': key},
    auth={'dovecot': dv.sock, 'timeout': '10s', 'max_failures': MAX_FAILURES,
          'failure_delay': '50ms', 'max_delay': '200ms'},
    ratelimit={'rules': [{'key': 'auth_user', 'count': 'messages', 'limit': '2/1h', 'action': 'reject'}]},
    plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port, 'on_error': 'tempfail',
              'timeout': '10s'}])
mx = mt.Mxgate(cfg, name='mx-auth')
SUB, SMTPS, MX = mx.ports
FROM, RCPT = 'alice@example.org', 'rcpt@example.test'


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(user, password):
    return b64('\0%s\0%s' % (user, password))


def swaks(port, *args, source=None):
    argv = ['swaks', '--server', '127.0.0.1', '--port', str(port), '--from', FROM, '--to', RCPT,
            '--timeout', str(int(mt.slack(20)))] + list(args)
    if source:
        argv += ['--local-interface', source]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=mt.slack(60))
    return p.returncode, p.stdout + p.stderr


def tls_client(source=None):
    c = mt.Client(SUB, source=source)
    c.ehlo()
    code, _ = c.starttls()
    mt.check(code == 220, 'STARTTLS 220')
    c.ehlo()
    return c


# ---------------------------------------------------------------- where AUTH is offered
c = mt.Client(MX)
code, text = c.ehlo()
mt.check(code == 250 and 'AUTH' not in text, 'a listener without submission/auth offers no AUTH')
c.starttls()
code, text = c.ehlo()
mt.check('AUTH' not in text, '... not after STARTTLS either')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 503, 'AUTH there: 503 (%s)' % text)
code, text = mt.send_mail(MX, FROM, [RCPT], mt.message('port25'), client=c)
mt.check(code == 250, 'port 25 still takes mail without AUTH (%s)' % text)
c.close()

c = mt.Client(SUB)
code, text = c.ehlo()
mt.check('STARTTLS' in text and 'AUTH' not in text, 'submission before TLS: STARTTLS, no AUTH')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 538 and '5.7.11' in text, 'AUTH before TLS: 538 5.7.11 (%s)' % text)
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 530 and '5.7.0' in text, 'MAIL before AUTH on submission: 530 5.7.0 (%s)' % text)
c.starttls()
code, text = c.ehlo()
mt.check('250-AUTH PLAIN LOGIN' in text or '250 AUTH PLAIN LOGIN' in text, 'after STARTTLS: AUTH PLAIN LOGIN (%s)' % text)
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 530, 'MAIL before AUTH inside TLS: 530 (%s)' % text)
c.close()

c = mt.Client(SMTPS, tls=True)
code, text = c.ehlo()
mt.check('AUTH PLAIN LOGIN' in text, 'implicit TLS (465): AUTH offered at once')
c.close()

# ---------------------------------------------------------------- swaks --auth
rc, out = swaks(SUB, '--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'secret',
                '--header', 'Subject: sub-plain')
mt.check(rc == 0 and '235 2.7.0' in out, 'swaks --tls --auth PLAIN delivers (rc %d)\n%s' % (rc, out[-600:]))
rc, out = swaks(SMTPS, '--tlsc', '--auth', 'LOGIN', '--auth-user', 'bob', '--auth-password', 'hunter2',
                '--header', 'Subject: smtps-login')
mt.check(rc == 0 and '235 2.7.0' in out, 'swaks --tlsc --auth LOGIN delivers (rc %d)\n%s' % (rc, out[-600:]))
msgs = {m['data'].split(b'Subject: ')[1].split(b'\r\n')[0].decode(): m for m in be.messages if b'Subject: ' in m['data']}
got = msgs.get('sub-plain')
mt.check(got is not None and got['xclient'].get('LOGIN') == 'alice',
         'the backend learns the user: XCLIENT LOGIN=alice (%s)' % (got and got['xclient']))
got = msgs.get('smtps-login')
mt.check(got is not None and got['xclient'].get('LOGIN') == 'bob', 'XCLIENT LOGIN=bob after AUTH LOGIN')
mt.check(got is not None and b'{auth_authen}=bob' in got['data'] and b'{auth_type}=LOGIN' in got['data'],
         'the milter got {auth_authen}=bob and {auth_type}=LOGIN')
got = next((m for m in be.messages if b'<port25@' in m['data']), None)
mt.check(got is not None and got['xclient'].get('LOGIN', '[UNAVAILABLE]') == '[UNAVAILABLE]',
         'no user for a session without AUTH (%s)' % (got and got['xclient']))
mt.check(mx.wait_log(r'event=auth client=127\.0\.0\.1 user=alice mech=PLAIN', 3) is not None, 'event=auth logged')

# ---------------------------------------------------------------- the exchange, by hand
c = tls_client()
code, text = c.cmd('AUTH CRAM-MD5')
mt.check(code == 504, 'an unknown mechanism: 504 (%s)' % text)
code, text = c.cmd('AUTH PLAIN')
mt.check(code == 334, 'AUTH PLAIN without initial response: 334 (%s)' % text)
code, text = c.cmd('*')
mt.check(code == 501 and '5.0.0' in text, '"*" cancels: 501 5.0.0 (%s)' % text)
code, text = c.cmd('AUTH LOGIN')
mt.check(code == 334 and base64.b64decode(text[4:]).startswith(b'Username'), 'LOGIN asks for the user name (%s)' % text)
code, text = c.cmd('not base64!')
mt.check(code == 501 and '5.5.2' in text, 'bad base64: 501 5.5.2 (%s)' % text)
code, text = c.cmd('NOOP')
mt.check(code == 250, 'the session goes on after a cancelled exchange')
code, text = c.cmd('AUTH LOGIN ' + b64('carol'))
mt.check(code == 334 and base64.b64decode(text[4:]).startswith(b'Password'), 'LOGIN with the user as initial response (%s)' % text)
code, text = c.cmd(b64('pw-carol'))
mt.check(code == 235, 'LOGIN: 235 (%s)' % text)
code, text = c.cmd('AUTH PLAIN ' + plain('carol', 'pw-carol'))
mt.check(code == 503, 'a second AUTH: 503 (%s)' % text)
code, text = mt.send_mail(SUB, FROM, [RCPT], mt.message('carol'), client=c)
mt.check(code == 250, 'mail after AUTH (%s)' % text)
c.close()

# ---------------------------------------------------------------- brute force per address
F2B = re.compile(r'event=auth_failed client=(?P<host>[0-9.]+) ')   # fail2ban: failregex = event=auth_failed client=<HOST>
c = tls_client(source='127.0.0.2')
for i in range(MAX_FAILURES):
    code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'guess%d' % i))
    mt.check(code == 535 and '5.7.8' in text, 'wrong password %d: 535 5.7.8 (%s)' % (i + 1, text))
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'guess-last'))
mt.check(code == 421 and '4.7.0' in text, 'past auth.max_failures: 421 4.7.0 (%s)' % text)
mt.check(c.reply()[0] is None, '... and the connection is closed')
c = tls_client(source='127.0.0.2')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 421, 'the address stays refused on its next connection, right password or not (%s)' % text)
c.close()
hits = [m.group('host') for m in F2B.finditer(mx.log())]
mt.check(hits.count('127.0.0.2') == MAX_FAILURES + 1, 'one fail2ban-matchable line per failure: %s' % hits)
mt.check(re.search(r'event=auth_failed client=127\.0\.0\.2 user=alice mech=PLAIN failures=1 ', mx.log()) is not None,
         'the line names client, user, mechanism and count')
mt.check('guess' not in mx.log() and 'hunter2' not in mx.log() and 'secret' not in mx.log(), 'no password in the log')

# ---------------------------------------------------------------- per user, across addresses
for i, src in enumerate(('127.0.0.3', '127.0.0.4')):
    c = tls_client(source=src)
    code, text = c.cmd('AUTH PLAIN ' + plain('bob', 'nope'))
    mt.check(code == 535, 'bob from %s: 535 (%s)' % (src, text))
    c.close()
c = tls_client(source='127.0.0.5')
code, text = c.cmd('AUTH PLAIN ' + plain('bob', 'nope'))
mt.check(code == 421, 'the third failure for bob, from a third address: 421 (%s)' % text)

# ---------------------------------------------------------------- fail2ban, for real
# The filter we ship (examples/fail2ban/mxgate-auth.conf), read by fail2ban's own tester on
# this daemon's log: every failure line gives its client's address, and a user name built to
# look like a log key names nobody else (log injection: fail2ban would ban the victim).
c = tls_client(source='127.0.0.8')
code, text = c.cmd('AUTH PLAIN ' + plain('x event=auth_failed client=127.0.0.9 ', 'nope'))
mt.check(code == 535, 'a user name with a fake log key: 535 (%s)' % text)
c.close()
mt.wait_for(lambda: 'client=127.0.0.8 ' in mx.log(), 5)
expected = [m.group('host') for m in re.finditer(r'event=auth_(?:failed|blocked) client=(?P<host>[0-9.]+) ', mx.log())]
f2b = subprocess.run(['fail2ban-regex', '-o', 'ip', mx.logpath,
                      os.path.join(mt.SRC, 'examples', 'fail2ban', 'mxgate-auth.conf')],
                     capture_output=True, text=True, timeout=mt.slack(60))
banned = f2b.stdout.split()
mt.check(f2b.returncode == 0 and banned == expected and '127.0.0.8' in banned,
         'fail2ban-regex with examples/fail2ban/mxgate-auth.conf: one address per failure line (%s; expected %s; %s)'
         % (banned, expected, f2b.stderr.strip()[-200:]))
mt.check('127.0.0.9' not in banned, 'a fake "event=auth_failed client=" inside a user name bans nobody (%s)' % banned)

# ---------------------------------------------------------------- ratelimit key auth_user
c = tls_client(source='127.0.0.6')
code, text = c.cmd('AUTH PLAIN ' + plain('carol', 'pw-carol'))
mt.check(code == 235, 'carol again (%s)' % text)
code, text = mt.send_mail(SUB, FROM, [RCPT], mt.message('carol2'), client=c)
mt.check(code == 250, "carol's second message within 2/1h (%s)" % text)
code, text = mt.send_mail(SUB, FROM, [RCPT], mt.message('carol3'), client=c)
mt.check(code == 550 and 'auth_user' in text, "carol's third: over the per-user rate (%s)" % text)
c.close()
rc, out = swaks(SUB, '--tls', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'secret')
mt.check(rc == 0, 'another user is not held by carol\'s limit (rc %d)' % rc)

# ---------------------------------------------------------------- ratelimit key ip after AUTH
# A `key: ip` rule counts an authenticated session as any other (docs/filters-limits.md "Keys
# and AUTH"): an office behind one NAT address shares one bucket, as with Postfix's anvil
# rates (its only exemption, smtpd_client_event_limit_exceptions, is a list of networks);
# the office goes into ratelimit.allow and its users get `auth_user` rules.
rcfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True}],
                 tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock},
                 ratelimit={'rules': [{'key': 'ip', 'count': 'messages', 'limit': '1/1h'}]})
rmx = mt.Mxgate(rcfg, name='mx-auth-ip-rate')
for user, pw, want in (('alice', 'secret', 250), ('carol', 'pw-carol', 451)):
    c = mt.Client(rmx.ports[0], source='127.0.0.14')
    c.ehlo()
    c.starttls()
    c.ehlo()
    code, text = c.cmd('AUTH PLAIN ' + plain(user, pw))
    mt.check(code == 235, '%s authenticated behind the shared address (%s)' % (user, text))
    code, text = mt.send_mail(rmx.ports[0], FROM, [RCPT], mt.message('iprate-' + user), client=c)
    mt.check(code == want and (want == 250 or 'for ip 127.0.0.14' in text),
             '%s: the address\'s one message an hour is shared by its users: %d (%s)' % (user, code, text))
    c.close()
rmx.stop()

# ---------------------------------------------------------------- a listed address
# The refusal at connect cuts the milter off (it never sees that connection); AUTH lifting
# the refusal runs the milter's connect stage then, so it filters (signs, with opendkim)
# the user's mail.
lcfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},
                                   {'address': '127.0.0.1:0'}],
                 tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock},
                 dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                 dnsbl={'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'pbl.test', 'weight': 1}]},
                 plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port,
                           'on_error': 'tempfail', 'timeout': '10s'}])
lmx = mt.Mxgate(lcfg, name='mx-auth-listed')
c = mt.Client(lmx.ports[1], source='127.0.0.11')
c.ehlo()
code, text = mt.send_mail(lmx.ports[1], FROM, [RCPT], mt.message('listed25'), client=c)
mt.check(code == 550, 'a listed address without AUTH: refused at MAIL (%s)' % text)
c.close()
c = mt.Client(lmx.ports[0], source='127.0.0.10')
c.ehlo()
c.starttls()
c.ehlo()
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 530, 'listed, on submission, before AUTH: 530 (%s)' % text)
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 235, 'listed, AUTH: 235 (%s)' % text)
code, text = mt.send_mail(lmx.ports[0], FROM, [RCPT], mt.message('listed-auth'), client=c)
mt.check(code == 250, 'AUTH lifts the refusal at connect, as permit_sasl_authenticated before reject_rbl_client (%s)' % text)
c.close()
mt.check(lmx.wait_log(r'event=auth_lifts_refusal client=127\.0\.0\.10 user=alice reason=dnsbl', 3) is not None,
         'event=auth_lifts_refusal logged')
got = next((m for m in be.messages if b'<listed-auth@' in m['data']), None)
mt.check(got is not None and b'X-Test-Milter: passed' in got['data'],
         'after the lift the milter filters the user\'s mail: its header is added')
mt.check(got is not None and b'{client_addr}=127.0.0.10' in got['data'] and b'{auth_authen}=alice' in got['data'],
         'the milter saw the connect (its {client_addr}) and the user')
lmx.stop()

# ---------------------------------------------------------------- a listed address, dnsbl.action tempfail
# The same lift when the list's action is tempfail: on a listener that offers AUTH the 4xx
# waits for MAIL (as a reject waits), so the user can still authenticate. Before the fix the
# connection got its 4xx at connect and was closed: the user could never log in from a listed address.
tcfg = dict(lcfg)
tcfg['dnsbl'] = {'threshold': 1, 'action': 'tempfail', 'lists': [{'zone': 'pbl.test', 'weight': 1}]}
tcfg['listen'] = [{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},
                  {'address': '127.0.0.1:0', 'tls': 'starttls', 'auth': True},
                  {'address': '127.0.0.1:0'}]
tcfg.pop('plugins', None)
tmx = mt.Mxgate(tcfg, name='mx-auth-listed-tempfail')
T587, TAUTH, T25 = tmx.ports
c = mt.Client(T25, source='127.0.0.11')
mt.check(c.greeting[0] // 100 == 4 and c.is_closed(), 'tempfail list, no AUTH on the port: 4xx at connect, closed (%r)' % (c.greeting,))
c.close()
c = mt.Client(TAUTH, source='127.0.0.11')
mt.check(c.greeting[0] == 220, 'tempfail list, a listener offering AUTH: greeted (%r)' % (c.greeting,))
c.ehlo()
c.starttls()
c.ehlo()
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code // 100 == 4, '... without AUTH, MAIL gets the 4xx (%s)' % text)
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 235, '... AUTH (%s)' % text)
code, text = mt.send_mail(TAUTH, FROM, [RCPT], mt.message('listed-tempfail-auth'), client=c)
mt.check(code == 250, '... and AUTH lifts it (%s)' % text)
c.close()
c = mt.Client(T587, source='127.0.0.10')
mt.check(c.greeting[0] == 220, 'tempfail list, submission: greeted (%r)' % (c.greeting,))
c.ehlo()
c.starttls()
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 235, 'tempfail list, submission: AUTH (%s)' % text)
code, text = mt.send_mail(T587, FROM, [RCPT], mt.message('listed-tempfail-sub'), client=c)
mt.check(code == 250, 'tempfail list, submission: delivered (%s)' % text)
c.close()
tmx.stop()

# ---------------------------------------------------------------- accept_domains and AUTH
# accept_domains keeps port 25 from relaying; an authenticated user sends to any domain (as
# Postfix's permit_sasl_authenticated before reject_unauth_destination). Before the fix the
# user's outbound mail got "550 5.7.1 relaying denied" from mxgate as soon as accept_domains
# was set, so submission and accepted domains could not be configured together.
acfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True},
                                   {'address': '127.0.0.1:0', 'tls': 'starttls', 'auth': True}],
                 tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock, 'timeout': '10s'},
                 accept_domains=['example.test'])
amx = mt.Mxgate(acfg, name='mx-auth-domains')
A465, A25 = amx.ports
c = mt.Client(A25, source='127.0.0.12')
c.ehlo()
c.cmd('MAIL FROM:<someone@example.org>')
code, text = c.cmd('RCPT TO:<friend@elsewhere.test>')
mt.check(code == 550 and '5.7.1' in text, 'no AUTH: a recipient outside accept_domains is refused (%s)' % text)
code, text = c.cmd('RCPT TO:<%s>' % RCPT)
mt.check(code == 250, 'no AUTH: an accepted domain is taken (%s)' % text)
c.close()
rc, out = swaks(A465, '--tlsc', '--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'secret',
                '--to', 'friend@elsewhere.test', '--header', 'Subject: outbound-auth', source='127.0.0.12')
mt.check(rc == 0 and '235 2.7.0' in out and '550 5.7.1' not in out,
         'swaks --auth on submission: mail to another domain is relayed (rc %d)\n%s' % (rc, out[-500:]))
got = next((m for m in be.messages if b'Subject: outbound-auth' in m['data']), None)
mt.check(got is not None and got['rcpts'] == ['friend@elsewhere.test'] and got['xclient'].get('LOGIN') == 'alice',
         'the backend got it for friend@elsewhere.test with XCLIENT LOGIN=alice (%r)' % ((got and (got['rcpts'], got['xclient'])),))
c = mt.Client(A25, source='127.0.0.12')
c.ehlo()
c.starttls()
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 235, 'AUTH on the optional-AUTH listener (%s)' % text)
c.cmd('MAIL FROM:<%s>' % FROM)
code, text = c.cmd('RCPT TO:<friend@elsewhere.test>')
mt.check(code == 250, 'listen[].auth, after AUTH: another domain is taken (%s)' % text)
# the relay check still applies to what AUTH does not cover: the address syntax
code, text = c.cmd('RCPT TO:<friend@other.test@elsewhere.test>')
mt.check(code == 501, 'after AUTH the address syntax still holds (%s)' % text)
c.close()
amx.stop()

# ---------------------------------------------------------------- 465 behind a PROXY-protocol load balancer
# HAProxy's `send-proxy-v2` in front of port 465: the PROXY header comes in clear, then the
# TLS handshake (often in the same segment as the header). Before the fix mxgate answered the
# header with a plaintext greeting and never started TLS on such a listener.
pcfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True,
                                    'proxy_protocol': True},
                                   {'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True,
                                    'proxy_protocol': True}],
                 trusted_proxies=['127.0.0.0/8'], tls={'certificate': crt, 'key': key},
                 auth={'dovecot': dv.sock, 'timeout': '10s'})
pmx = mt.Mxgate(pcfg, name='mx-auth-proxy')
P465, P587 = pmx.ports
for src, together in (('198.18.7.1', False), ('198.18.7.2', True)):
    raw = socket.create_connection(('127.0.0.1', P465), mt.slack(10))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if together:
        # the header and the ClientHello in one write, as a proxy relaying at once sends them
        bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(bio_in, bio_out, server_hostname='mx.test')
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        raw.sendall(mt.proxy_v2(src, P465) + bio_out.read())
        greeting = None
        try:
            while True:
                data = raw.recv(65536)
                if not data:
                    break
                bio_in.write(data)
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    out = bio_out.read()
                    if out:
                        raw.sendall(out)
            raw.sendall(bio_out.read())
            while greeting is None:
                try:
                    greeting = obj.read(4096)
                except ssl.SSLWantReadError:
                    out = bio_out.read()
                    if out:
                        raw.sendall(out)
                    data = raw.recv(65536)
                    if not data:
                        break
                    bio_in.write(data)
        except (OSError, ssl.SSLError) as e:
            greeting = repr(e).encode()
        mt.check(greeting is not None and greeting.startswith(b'220 '),
                 '465 behind PROXY v2, header and ClientHello in one write: TLS, then 220 (%r)' % greeting)
        raw.close()
        continue
    raw.sendall(mt.proxy_v2(src, P465))
    try:
        tls = ctx.wrap_socket(raw, server_hostname='mx.test')
        greeting = tls.recv(4096)
    except (OSError, ssl.SSLError) as e:
        tls, greeting = None, repr(e).encode()
    mt.check(greeting.startswith(b'220 '), '465 behind PROXY v2: TLS, then the 220 greeting (%r)' % greeting[:80])
    if tls is not None:
        c = mt.Client.__new__(mt.Client)
        c.sock, c.buf, c.timeout = tls, b'', mt.slack(10)
        code, text = c.ehlo()
        mt.check('AUTH PLAIN LOGIN' in text, '465 behind PROXY: AUTH offered at once (%s)' % text.replace('\n', ' '))
        code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
        mt.check(code == 235, '465 behind PROXY: AUTH (%s)' % text)
        code, text = mt.send_mail(P465, FROM, [RCPT], mt.message('proxied-465'), client=c)
        mt.check(code == 250, '465 behind PROXY: delivered (%s)' % text)
        c.close()
got = next((m for m in be.messages if b'<proxied-465@' in m['data']), None)
mt.check(got is not None and got['xclient'].get('ADDR') == '198.18.7.1' and got['xclient'].get('LOGIN') == 'alice',
         'the backend learns the proxied client and the user (%r)' % (got and got['xclient'],))
c = mt.Client(P587, proxy_src='198.18.7.3')
code, text = c.ehlo()
mt.check(c.greeting[0] == 220 and 'STARTTLS' in text, '587 behind PROXY: plaintext greeting, STARTTLS offered')
c.close()
# the header with more than a header's worth of commands behind it in one segment (the
# check for an over-long header counted those bytes too and closed the connection)
c = mt.Client(P587, greet=False)
c.send(mt.proxy_v2('198.18.7.4', P587) + b'EHLO client.test\r\n' + b'HELO client.test\r\n' * 60)
codes = [c.reply()[0] for _ in range(62)]
mt.check(codes == [220, 250] + [250] * 60, 'PROXY header and 1 KB of pipelined commands in one write: all answered (%r)'
         % sorted(set(map(str, codes))))
c.close()
pmx.stop()

# ---------------------------------------------------------------- the checks for unauthenticated mail
# A user submits from home, from a hotel, from a mobile network: SPF of the user's own domain
# does not list those addresses, DNS lists name them, and a MUA does not retry a greylisting
# 451. As with Postfix's permit_sasl_authenticated placed first, AUTH passes the user's mail
# by SPF, the DNS lists (IP and sender domain), greylisting, a DMARC policy (the mail is
# not signed yet: that happens after mxgate, or in a milter) and the HELO checks; the same
# checks still refuse
# the same mail without AUTH. Before the fix the user got 550 5.7.23 (SPF), 550 5.7.1 (DNS
# list) or 451 4.7.1 (greylisted) after a successful AUTH.
dbl = mt.rbldnsd({'dbl.test': ('dnset', 'example.org :127.0.0.2:listed domain\n'),
                  'bl.test': ('ip4set', ':127.0.0.2:listed address\n198.18.9.0/24\n'),
                  'example.org': ('generic', '_dmarc TXT "v=DMARC1; p=reject"\n')})
for label, extra in (
        ('SPF fail', {'spf': {'enabled': True, 'reject_fail': True, 'records': ['example.org TXT v=spf1 -all']}}),
        ('a DNS list of sender domains', {'dnsbl': {'threshold': 1, 'action': 'reject',
                                                    'lists': [{'zone': 'dbl.test', 'type': 'domain', 'weight': 1}]}}),
        ('a DNS list of addresses, with a domain list beside it',
         {'dnsbl': {'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'bl.test', 'weight': 1},
                                                                  {'zone': 'dbl.test', 'type': 'domain', 'weight': 0}]}}),
        ('greylisting', {'greylist': {'enabled': True, 'delay': '1h'}}),
        # the user's mail is signed after mxgate (or by a milter at end of data): unsigned here
        ('DMARC p=reject', {'dmarc': {'enabled': True, 'action': 'honor'}}),
        # a MUA behind NAT names itself by its private address (Thunderbird does): on a
        # listener offering AUTH the HELO refusal waits for MAIL, where AUTH lifts it
        ('HELO literal mismatch', {'helo_checks': {'enabled': True, 'literal_mismatch': {'action': 'reject'},
                                                   'fcrdns': {'enabled': False}}})):
    fcfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True,
                                        'proxy_protocol': True},
                                       {'address': '127.0.0.1:0', 'tls': 'starttls', 'auth': True,
                                        'proxy_protocol': True}],
                     trusted_proxies=['127.0.0.0/8'], tls={'certificate': crt, 'key': key},
                     auth={'dovecot': dv.sock, 'timeout': '10s'},
                     dns={'resolvers': ['127.0.0.1:%d' % dbl.port], 'timeout': '2s'}, **extra)
    fmx = mt.Mxgate(fcfg, name='mx-auth-checks-%d' % len(label))
    F465, F25 = fmx.ports
    tag = 'checks-' + label.split()[0].lower()
    code, text = mt.send_mail(F25, 'alice@example.org', ['friend@elsewhere.test'], mt.message(tag + '-anon'),
                              proxy_src='198.18.9.20', ehlo='[192.168.1.10]')
    mt.check(code // 100 in (4, 5), '%s: without AUTH the mail is refused (%s %s)' % (label, code, text))
    c = mt.Client(F465, tls=True, proxy_src='198.18.9.21')
    code, text = c.ehlo('[192.168.1.10]')
    mt.check(code == 250, '%s: EHLO (%s)' % (label, text.split('\n')[0]))
    code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
    mt.check(code == 235, '%s: AUTH (%s)' % (label, text))
    code, text = mt.send_mail(F465, 'alice@example.org', ['friend@elsewhere.test'], mt.message(tag), client=c)
    mt.check(code == 250, '%s: after AUTH the user\'s mail goes (%s %s)' % (label, code, text))
    c.close()
    fmx.stop()

# ---------------------------------------------------------------- counts shared in Redis
# Two nodes on one Redis: a failure on one counts on the other.
rd = mt.redis()
nodes = []
for n in ('a', 'b'):
    ncfg = mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                     tls={'certificate': crt, 'key': key},
                     auth={'dovecot': dv.inet, 'max_failures': 1, 'failure_delay': '10ms', 'max_delay': '10ms',
                           'store': 'redis://127.0.0.1:%d' % rd.port})
    nodes.append(mt.Mxgate(ncfg, name='mx-auth-' + n))
c = mt.Client(nodes[0].port, tls=True, source='127.0.0.9')
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'wrong'))
mt.check(code == 535, 'node a: 535 (%s)' % text)
c.close()
mt.check(mt.redis_cmd(rd.port, 'GET', 'mxgate:authfail:ip:127.0.0.9') == b'1', 'the failure is counted in Redis')
mt.check(0 < mt.redis_cmd(rd.port, 'PTTL', 'mxgate:authfail:user:alice') <= 15 * 60 * 1000,
         'per user too, expiring with failure_window')
c = mt.Client(nodes[1].port, tls=True, source='127.0.0.9')
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'wrong'))
mt.check(code == 421, 'node b sees node a\'s failure: the second one is past max_failures 1 (%s)' % text)
c.close()
for node in nodes:
    node.stop()

# ---------------------------------------------------------------- the service goes away
# Dovecot's auth process serves the connections it has after its master is gone: stop both.
with open('/proc/%d/task/%d/children' % (dv.pid, dv.pid)) as f:
    children = [int(x) for x in f.read().split()]
mt.stop_proc(dv)
for pid in children:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
c = tls_client(source='127.0.0.7')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 454 and '4.7.0' in text, 'Dovecot stopped: 454 4.7.0 (%s)' % text)
code, text = c.cmd('NOOP')
mt.check(code == 250, 'the session goes on')
c.close()
mt.check(mx.wait_log(r'event=auth_error client=127\.0\.0\.7 mech=PLAIN', 3) is not None, 'event=auth_error logged')
mt.check(mx.alive(), 'mxgate alive')

# ---------------------------------------------------------------- -t: a submission port that can never take mail
# AUTH is offered only over TLS (unless auth.allow_plaintext), and MAIL before AUTH is 530 on
# a submission listener: one without TLS refuses every user. Before the fix `-t` said "ok"
# and the daemon ran such a port.
for extra, want_rc, what in (
        ({}, 1, 'submission without TLS and without auth.allow_plaintext is an error'),
        ({'allow_plaintext': True}, 0, 'with auth.allow_plaintext it is taken'),):
    bad = mt.config([be.url], listen=[{'address': '127.0.0.1:%d' % mt.free_port(), 'submission': True}],
                    auth=dict({'dovecot': 'unix:/nonexistent/auth-client'}, **extra))
    rc, out = mt.config_check(bad, name='plain-submission')
    mt.check(rc == want_rc and (want_rc == 0 or re.search(r'plain-submission\.yaml:\d+:\d+: listen\[0\]\.submission: ', out)),
             '-t: %s (rc %d: %s)' % (what, rc, out.strip()[-200:]))
ok_auth = mt.config([be.url], listen=[{'address': '127.0.0.1:%d' % mt.free_port(), 'auth': True}],
                    auth={'dovecot': 'unix:/nonexistent/auth-client'})
rc, out = mt.config_check(ok_auth, name='plain-auth')
mt.check(rc == 0, '-t: listen[].auth without TLS stays valid (AUTH optional there; MX mail still flows) (rc %d: %s)'
         % (rc, out.strip()[-200:]))
mt.finish()
