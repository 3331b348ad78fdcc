#!/usr/bin/env python3
"""An outsider's review: a university's submission service (587 STARTTLS, 465 implicit TLS,
Dovecot SASL, 30,000 students and staff) and its inbound MX, both on one mxgate in front of
the existing Postfix. docs/smtp-edge.md, "A university's submission service", has the table
(scenario, mxgate, Postfix, verdict); this test checks what must hold in it:

- a student's Thunderbird-like session: EHLO, STARTTLS, EHLO, AUTH PLAIN, three recipients,
  a 10 MB attachment: 250 only once the backend took it, every recipient and the user there
  (XCLIENT LOGIN=);
- AUTH before STARTTLS is not offered and refused (538 5.7.11); 465 offers it at once;
- a UTF-8 password, a user name with @domain (and the backend learns that name);
- wrong passwords: 535 5.7.8, the log lines fail2ban reads (examples/fail2ban/mxgate-auth.conf
  through fail2ban-regex), 421 4.7.0 past auth.max_failures, never a password in the log;
- the campus NAT: many users' typos from one address lock it out of AUTH past
  auth.max_failures (everyone's right password refused); an address in auth.allow is counted
  but not locked, and one user guessing there is still stopped by the per-user count;
- a compromised account sending to 2,000 recipients: `ratelimit` `key: auth_user`
  `count: recipients` stops it at its budget, the next session too, other users not;
- the envelope sender is not checked against the login (no smtpd_sender_login_maps in
  mxgate): a real Postfix backend with reject_sender_login_mismatch refuses it behind mxgate,
  and logs sasl_username= for the user mxgate passed;
- port 25 on the same daemon: no AUTH offered, AUTH 503, relaying denied outside
  accept_domains, mail to the university taken;
- Dovecot stopped mid-day: 454 4.7.0, the session goes on, event=auth_error; started again:
  AUTH works again without touching mxgate."""
import base64
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'dovecot', 'postfix', 'fail2ban-regex')
mt.need_postfix()

UTF8_PW = 'Pässwörd-€-ünï'
USERS = {'alice': 'secret', 'joerg': UTF8_PW, 'student@uni.example': 'pw-student', 'mallory': 'pw-mallory',
         'bob': 'hunter2', 'carol': 'pw-carol', 'dave': 'pw-dave', 'erin': 'pw-erin'}
dv = mt.dovecot(USERS)
crt, key = mt.cert()
be = mt.Backend(name='uni')
MAX_FAILURES = 2
BUDGET = 40            # recipients a day per user (the compromised account's ceiling)
cfg = mt.config([be.url], listen=[
    {'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True},    # 587
    {'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True},    # 465
    {'address': '127.0.0.1:0', 'tls': 'starttls'}],                       # 25, the MX
    tls={'certificate': crt, 'key': key},
    accept_domains=['uni.example'],
    limits={'max_message_size': '25M', 'max_recipients': 1000},
    auth={'dovecot': dv.sock, 'max_failures': MAX_FAILURES, 'failure_delay': '50ms', 'max_delay': '200ms'},
    ratelimit={'rules': [{'key': 'auth_user', 'count': 'recipients', 'limit': '%d/1d' % BUDGET,
                          'action': 'reject'}]})
mx = mt.Mxgate(cfg, name='mx-uni')
SUB, SMTPS, MX = mx.ports


def plain(user, password):
    return base64.b64encode(('\0%s\0%s' % (user, password)).encode()).decode()


def tls_client(source=None):
    c = mt.Client(SUB, source=source)
    c.ehlo('[192.168.1.23]')            # Thunderbird behind a home router names itself so
    code, _ = c.starttls()
    mt.check(code == 220, 'STARTTLS 220')
    c.ehlo('[192.168.1.23]')
    return c


def by_tag(tag):
    return next((m for m in be.messages if ('<%s@' % tag).encode() in m['data']), None)


# ---------------------------------------------------------------- where AUTH is offered
c = mt.Client(SUB, source='127.0.0.21')
code, text = c.ehlo()
mt.check(code == 250 and 'STARTTLS' in text and 'AUTH' not in text, '587 before TLS: STARTTLS, no AUTH (%s)'
         % text.replace('\n', ' '))
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 538 and '5.7.11' in text, 'AUTH before STARTTLS: 538 5.7.11, no password checked (%s)' % text)
c.close()
mt.check('user=alice' not in mx.log(), '... and Dovecot was not asked (no event=auth line for it)')
c = mt.Client(SMTPS, tls=True, source='127.0.0.21')
code, text = c.ehlo()
mt.check('AUTH PLAIN LOGIN' in text, '465: AUTH offered at once (%s)' % text.replace('\n', ' '))
c.close()

# ---------------------------------------------------------------- Thunderbird: 3 recipients, 10 MB
c = tls_client(source='127.0.0.22')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 235, 'AUTH PLAIN after STARTTLS: 235 (%s)' % text)
big = mt.message('thunderbird', size=10 * 1024 * 1024)
rcpts = ['friend@gmail.example', 'prof@uni.example', 'parent@web.example']
r = mt.send_mail(SUB, 'alice@uni.example', rcpts, big, client=c, timeout=mt.slack(60))
mt.check(r[0] == 250 and r.rcpt_codes == [250, 250, 250], '10 MB to three recipients, two outside: 250 (%s %r)'
         % (r, r.rcpt_codes))
c.close()
got = by_tag('thunderbird')
mt.check(got is not None and sorted(got['rcpts']) == sorted(rcpts) and len(got['data']) >= 10 * 1024 * 1024,
         'the backend got all of it for the three (%r)' % ((got and (got['rcpts'], len(got['data']))),))
mt.check(got is not None and got['xclient'].get('LOGIN') == 'alice', 'XCLIENT LOGIN=alice (%r)' % (got and got['xclient']))
mt.check(got is not None and re.search(rb'with ESMTPSA', got['data']) is not None, 'Received: ... with ESMTPSA')

# ---------------------------------------------------------------- a UTF-8 password, a user@domain login
c = mt.Client(SMTPS, tls=True, source='127.0.0.23')
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('joerg', UTF8_PW))
mt.check(code == 235, 'a UTF-8 password (PLAIN, as Thunderbird sends it: UTF-8): 235 (%s)' % text)
c.close()
c = mt.Client(SMTPS, tls=True, source='127.0.0.23')
c.ehlo()
code, text = c.cmd('AUTH LOGIN')
code, text = c.cmd(base64.b64encode(b'joerg').decode())
code, text = c.cmd(base64.b64encode(UTF8_PW.encode()).decode())
mt.check(code == 235, 'the same by AUTH LOGIN: 235 (%s)' % text)
c.close()
r = mt.swaks(SUB, '--tls', '--auth', 'PLAIN', '--auth-user', 'student@uni.example', '--auth-password', 'pw-student',
             '--from', 'student@uni.example', '--to', 'someone@web.example', '--header', 'Message-ID: <atdomain@mxtest.example>',
             '--local-interface', '127.0.0.23')
mt.check(r.returncode == 0, 'swaks --auth-user student@uni.example delivers (rc %d)\n%s' % (r.returncode, r.stdout[-400:]))
got = by_tag('atdomain')
mt.check(got is not None and got['xclient'].get('LOGIN') == 'student@uni.example',
         'XCLIENT LOGIN=student@uni.example (%r)' % (got and got['xclient']))
mt.check(re.search(r'event=auth client=127\.0\.0\.23 user=student@uni\.example mech=PLAIN', mx.log()) is not None,
         'event=auth user=student@uni.example')

# ---------------------------------------------------------------- wrong passwords
c = tls_client(source='127.0.0.24')
for i in range(MAX_FAILURES):
    code, text = c.cmd('AUTH PLAIN ' + plain('carol', 'wrong-%d' % i))
    mt.check(code == 535 and '5.7.8' in text, 'wrong password %d: 535 5.7.8 (%s)' % (i + 1, text))
code, text = c.cmd('AUTH PLAIN ' + plain('carol', 'wrong-last'))
mt.check(code == 421 and '4.7.0' in text, 'past auth.max_failures: 421 4.7.0 (%s)' % text)
mt.check(c.reply()[0] is None, '... and the connection is closed')
log = mx.log()
mt.check(re.search(r'event=auth_failed client=127\.0\.0\.24 user=carol mech=PLAIN failures=1 user_failures=1 '
                   r'delay_ms=50 ', log) is not None, 'event=auth_failed with client, user, counts and the delay')
mt.check(re.search(r'event=auth_blocked client=127\.0\.0\.24 user=carol ', log) is not None, 'event=auth_blocked')
mt.check('wrong-' not in log and UTF8_PW not in log and 'pw-student' not in log, 'no password in the log')
f2b = subprocess.run(['fail2ban-regex', '-o', 'ip', mx.logpath,
                      os.path.join(mt.SRC, 'examples', 'fail2ban', 'mxgate-auth.conf')],
                     capture_output=True, text=True, timeout=mt.slack(60))
mt.check(f2b.returncode == 0 and f2b.stdout.split().count('127.0.0.24') == MAX_FAILURES + 2,
         'fail2ban-regex with the shipped filter: each failure and the block name 127.0.0.24 (%r)' % f2b.stdout.split())

# ---------------------------------------------------------------- a compromised account, 2,000 recipients
c = tls_client(source='127.0.0.25')
code, text = c.cmd('AUTH PLAIN ' + plain('mallory', 'pw-mallory'))
mt.check(code == 235, 'the stolen password works (%s)' % text)
code, text = c.cmd('MAIL FROM:<mallory@uni.example>')
codes = []
for i in range(2000):
    code, text = c.cmd('RCPT TO:<victim%d@web.example>' % i)
    codes.append(code)
    if code is None or code == 421:
        break
mt.check(codes.count(250) == BUDGET and codes[BUDGET] == 550 and codes[-1] == 421,
         'a burst to 2,000 recipients: %d taken, then 550 each, 421 at limits.max_errors (%d sent, last %r)'
         % (BUDGET, len(codes), codes[-1]))
c.close()
mt.check(re.search(r'event=ratelimit key=auth_user value=mallory count=recipients limit=%d/1d action=reject'
                   % BUDGET, mx.log()) is not None, 'event=ratelimit key=auth_user value=mallory')
c = mt.Client(SMTPS, tls=True, source='127.0.0.26')
c.ehlo()
c.cmd('AUTH PLAIN ' + plain('mallory', 'pw-mallory'))
c.cmd('MAIL FROM:<mallory@uni.example>')
code, text = c.cmd('RCPT TO:<victim-again@web.example>')
mt.check(code == 550 and 'auth_user' in text, 'the account\'s next session, another address: still refused (%s)' % text)
c.close()
r = mt.swaks(SMTPS, '--tlsc', '--auth', 'PLAIN', '--auth-user', 'bob', '--auth-password', 'hunter2',
             '--from', 'bob@uni.example', '--to', 'someone@web.example', '--local-interface', '127.0.0.25')
mt.check(r.returncode == 0, 'another user from the same address is not held by it (rc %d)' % r.returncode)

# ---------------------------------------------------------------- port 25: the MX, no AUTH
c = mt.Client(MX, source='127.0.0.27')
code, text = c.ehlo('mail.web.example')
mt.check('AUTH' not in text, 'port 25: no AUTH before STARTTLS')
c.starttls()
code, text = c.ehlo('mail.web.example')
mt.check('AUTH' not in text, 'port 25: no AUTH after STARTTLS either')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 503, 'port 25: AUTH 503 (%s)' % text)
c.cmd('MAIL FROM:<someone@web.example>')
code, text = c.cmd('RCPT TO:<friend@gmail.example>')
mt.check(code == 550 and 'relaying denied' in text, 'port 25: relaying denied outside accept_domains (%s)' % text)
code, text = c.cmd('RCPT TO:<prof@uni.example>')
mt.check(code == 250, 'port 25: mail to the university taken (%s)' % text)
c.close()

# ---------------------------------------------------------------- the sender is the backend's check
# mxgate takes any MAIL FROM from an authenticated user (no smtpd_sender_login_maps); a real
# Postfix behind it, told the user by XCLIENT LOGIN=, refuses a sender the user does not own.
pf_port = mt.free_port()
mt.postfix_instance('pf-uni', pf_port, '''relay_domains = uni.example
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_sender_login_maps = inline:{{ student@uni.example=student@uni.example }}
smtpd_sender_restrictions = reject_sender_login_mismatch
smtpd_recipient_restrictions = permit_sasl_authenticated, permit_auth_destination, reject
'''.format(sasl=dv.sock[len('unix:'):]))
pmx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % pf_port], workers=1,
                          listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                          tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock},
                          backends={'client_identity': 'xclient', 'pool_size': 0}), name='mx-uni-pf')
c = mt.Client(pmx.port, tls=True, source='127.0.0.28')
c.ehlo()
code, text = c.cmd('AUTH PLAIN ' + plain('student@uni.example', 'pw-student'))
mt.check(code == 235, 'through to Postfix: AUTH (%s)' % text)
r = mt.send_mail(pmx.port, 'student@uni.example', ['someone@web.example'], mt.message('own-sender'), client=c)
mt.check(r[0] == 250, 'the user\'s own sender, to another domain: 250 from Postfix (%s)' % (r,))
r = mt.send_mail(pmx.port, 'rector@uni.example', ['someone@web.example'], mt.message('forged-sender'), client=c)
mt.check(r[0] == 553 and 'not owned by user student@uni.example' in r[1],
         'another sender: Postfix\'s reject_sender_login_mismatch refuses it behind mxgate (%s %s)' % (r[0], r[1]))
c.close()
pat = re.compile(r'sasl_method=XCLIENT, sasl_username=student@uni\.example')
mt.check(mt.wait_for(lambda: pat.search(mt.log_of('pf-uni')), mt.slack(15)),
         'Postfix logs sasl_username=student@uni.example:\n%s' % mt.log_of('pf-uni')[-800:])
pmx.stop()

# ---------------------------------------------------------------- the campus NAT
# Thousands of students behind one address (eduroam's NAT): their typos add up per address,
# and past auth.max_failures the address is refused AUTH for failure_window, everyone's right
# password included. auth.allow lists such addresses: their failures block no one by address
# (the per-user count still holds), as Postfix exempts $mynetworks from its anvil limits
# (smtpd_client_event_limit_exceptions). Before the fix there was no way out: one student's
# wrong password five times locked the whole campus out of sending for 15 minutes.
nmx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                          tls={'certificate': crt, 'key': key},
                          auth={'dovecot': dv.sock, 'max_failures': MAX_FAILURES, 'failure_delay': '50ms',
                                'max_delay': '200ms', 'allow': ['127.0.0.30']}), name='mx-uni-nat')


def nat_auth(src, user, password):
    c = mt.Client(nmx.port, tls=True, source=src)
    c.ehlo()
    code, text = c.cmd('AUTH PLAIN ' + plain(user, password))
    c.close()
    return code, text


codes = [nat_auth('127.0.0.31', 'typo%d' % i, 'nope')[0] for i in range(MAX_FAILURES + 1)]
mt.check(codes == [535] * MAX_FAILURES + [421], 'an address not in auth.allow: typos of different users, 421 '
         'past max_failures (%r)' % codes)
code, text = nat_auth('127.0.0.31', 'erin', 'pw-erin')
mt.check(code == 421, '... and then another user\'s right password is refused there too (%s)' % text)
codes = [nat_auth('127.0.0.30', 'natuser', 'nope')[0] for i in range(MAX_FAILURES + 1)]
mt.check(codes == [535] * MAX_FAILURES + [421], 'the NAT in auth.allow: one user guessing is still stopped by the '
         'per-user count (%r)' % codes)
code, text = nat_auth('127.0.0.30', 'typo-other', 'nope')
mt.check(code == 535, 'the NAT: another user\'s typo, the address past max_failures: 535, not 421 (%s)' % text)
code, text = nat_auth('127.0.0.30', 'erin', 'pw-erin')
mt.check(code == 235, 'the NAT: a student\'s right password still works (%s)' % text)
mt.check(re.search(r'event=auth_failed client=127\.0\.0\.30 user=typo-other mech=PLAIN failures=%d '
                   % (MAX_FAILURES + 2), nmx.log()) is not None, 'the address\'s failures are still counted and logged')
nmx.stop()

# ---------------------------------------------------------------- Dovecot stopped mid-day, then back
conf = os.path.join(mt.TMP, 'dovecot', 'dovecot.conf')
with open('/proc/%d/task/%d/children' % (dv.pid, dv.pid)) as f:
    children = [int(x) for x in f.read().split()]
mt.stop_proc(dv)
for pid in children:      # its auth process serves the connections it has after the master went
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
c = tls_client(source='127.0.0.29')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
mt.check(code == 454 and '4.7.0' in text, 'Dovecot stopped: 454 4.7.0 (%s)' % text)
code, text = c.cmd('NOOP')
mt.check(code == 250, '... the session goes on')
code, text = c.cmd('MAIL FROM:<alice@uni.example>')
mt.check(code == 530, '... and MAIL still needs AUTH: 530 (%s)' % text)
c.close()
mt.check(mx.wait_log(r'event=auth_error client=127\.0\.0\.29 mech=PLAIN reason=', 3) is not None, 'event=auth_error')
dv2 = mt.spawn([mt.tool('dovecot'), '-F', '-c', conf], 'dovecot-again')
mt.check(mt.wait_for(lambda: os.path.exists(dv.sock[len('unix:'):]), 15), 'Dovecot back')
# each worker's Dovecot client, having lost its connection, fails requests at once for 1 s
# (proxy/sasl_dovecot.c SD_RETRY_MS) and connects again on the first request after that; the
# connections were lost when Dovecot stopped, above: past that second, whatever the load
time.sleep(1.2)
c = tls_client(source='127.0.0.29')
code, text = c.cmd('AUTH PLAIN ' + plain('alice', 'secret'))
c.close()
mt.check(code == 235, 'Dovecot started again: AUTH works at once, without a restart of mxgate (%s)' % text)
mt.check(mx.alive(), 'mxgate alive')
mx.stop()
mt.finish()
