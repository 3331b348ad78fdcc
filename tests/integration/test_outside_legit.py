#!/usr/bin/env python3
"""From the outside: a legitimate big sender's view. Does real mail survive a site that puts
mxgate, configured as README.md says for an MX (client_identity: xclient, accept_domains,
max_connections_per_ip 50, max_message_size 50M; pregreet 2s, spf and sender_domain from
examples/mxgate.yaml, a DNS server that knows the senders' domains), in front of its Postfix?

Two paths, the same bytes sent down each, compared at the end:

    client -> sender's Postfix -> site's Postfix ----------> final-d   (direct)
    client -> sender's Postfix -> mxgate -> site's Postfix -> final-m   (through mxgate)

The sender is a real MTA (a private Postfix 3.7 relaying everything it gets, one smtpd per
path, each with its own content_filter next hop); the site is one private Postfix (one
smtpd per path, each with its own next hop: smtputf8_enable = yes, message_size_limit 60M);
the final hops are scripted servers that record the envelope (MAIL and RCPT with their
parameters) and the data. What must hold for each shape of legitimate mail: both arrive,
the data is identical octet for octet below the Received fields (the site's own and
mxgate's), the MAIL parameters (BODY, SMTPUTF8, RET, ENVID, SIZE aside) and the RCPTs (with
NOTIFY, ORCPT) are identical. Then raw clients (broken senders, BDAT, pipelining, slow,
1,000 recipients) talk to the site's Postfix directly and to mxgate: the replies that differ
are checked as docs/smtp-edge.md documents them."""
import os
import re
import base64
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix', 'dnsmasq')
mt.need_postfix()

SENDER_DOMAINS = ('sender.example', 'lists.example.org', 'fwd.example.net', 'xn--bcher-kva.example')
dns = mt.dnsmasq({d: 'v=spf1 ip4:127.0.0.0/8 -all' for d in SENDER_DOMAINS},
                 local=SENDER_DOMAINS + ('127.in-addr.arpa',),
                 args=['--mx-host=%s,mx.sender.example,10' % d for d in SENDER_DOMAINS] +
                      ['--host-record=mx.sender.example,192.0.2.25',
                       '--ptr-record=1.0.0.127.in-addr.arpa,localhost'])

final_d = mt.Backend(name='final-d', dsn=True)
final_m = mt.Backend(name='final-m', dsn=True)

# ---------------------------------------------------------------- the site: Postfix, mxgate in front
site_d = mt.hold_port().port
site_m = mt.hold_port().port
mt.postfix_instance('site', site_d, '''smtputf8_enable = yes
relay_domains = local.test, xn--bcher-kva.test, bücher.test
mynetworks = 192.0.2.0/24
smtpd_recipient_restrictions = permit_auth_destination, reject
smtpd_authorized_xclient_hosts = 127.0.0.0/8
# an IPv6 client's XCLIENT ADDR=IPV6:... needs it (ipv4 alone: 501 Bad ADDR syntax, and mxgate
# retries with ADDR=[UNAVAILABLE]: the client unknown to Postfix, test_xclient_501_retry);
# Postfix still listens on 127.0.0.1 only
inet_protocols = all
local_header_rewrite_clients =
message_size_limit = 62914560
''', hostname='site.test', listener='''127.0.0.1:{port} inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:%d
127.0.0.1:%d inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:%d
''' % (final_d.port, site_m, final_m.port))
if not mt.wait_port(site_m, 15):
    mt.fail('the site Postfix did not listen on %d' % site_m)

# the README's backends section with the defaults of the timeouts (mt.config's are short for
# tests of failures: a 2 s connect and greeting timeout turned a loaded site Postfix's slow
# greeting into 451 4.4.1 for 50 recipients); its health checks stay mt.config's, which load
# cannot trip
BACKENDS = {'client_identity': 'xclient', 'connect_timeout': '10s', 'reply_timeout': '60s', 'data_timeout': '300s'}
CERT, KEY = mt.cert()
mx = mt.Mxgate(mt.config(
    ['smtp://127.0.0.1:%d' % site_m], hostname='mx.site.test', workers=1,
    listen=[{'address': '127.0.0.1:0', 'tls': 'starttls'}, {'address': '[::1]:0', 'tls': 'starttls'}],
    tls={'certificate': CERT, 'key': KEY},
    limits={'max_connections_per_ip': 50, 'max_message_size': '50M'},
    backends=BACKENDS,
    accept_domains=['local.test', 'xn--bcher-kva.test'],
    dns={'resolvers': ['127.0.0.1:%d' % dns.port]},
    pregreet={'delay': '2s', 'action': 'reject'},
    spf={'enabled': True}, sender_domain={'enabled': True}), 'mx-legit')

# the same with greylisting on (greylist.delay scaled down from 5m to 3s, as the sender's
# retry from 5m to 2-4s): does a real MTA's retry get through?
mx_grey = mt.Mxgate(mt.config(
    ['smtp://127.0.0.1:%d' % site_m], hostname='mx.site.test', workers=1,
    limits={'max_connections_per_ip': 50, 'max_message_size': '50M'},
    backends=BACKENDS,
    accept_domains=['local.test', 'xn--bcher-kva.test'],
    dns={'resolvers': ['127.0.0.1:%d' % dns.port]},
    greylist={'enabled': True, 'delay': '3s'}), 'mx-grey')

# ---------------------------------------------------------------- the sender: a real MTA
snd_d = mt.hold_port().port
snd_m = mt.hold_port().port
snd_g = mt.hold_port().port
mt.postfix_instance('sender', snd_d, '''smtputf8_enable = yes
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
local_header_rewrite_clients =
always_add_missing_headers = no
message_size_limit = 62914560
smtp_tls_security_level = may
smtp_tls_cert_file = %s
smtp_tls_key_file = %s
smtp_tls_loglevel = 1
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
''' % (CERT, KEY), hostname='out.sender.example', listener='''127.0.0.1:{port} inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:%d
127.0.0.1:%d inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:%d
127.0.0.1:%d inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:%d
''' % (site_d, snd_m, mx.port, snd_g, mx_grey.port))
if not mt.wait_port(snd_m, 15):
    mt.fail('the sender Postfix did not listen on %d' % snd_m)


def strip_received(data):
    """The data below the leading trace fields: Received: (the site's, mxgate's) and mxgate's
    Authentication-Results: (its SPF verdict, authserv-id mx.site.test), with their folds."""
    pos = 0
    while data.startswith(b'Received:', pos) or data.startswith(b'Authentication-Results: mx.site.test;', pos):
        pos = data.find(b'\n', pos) + 1
        while data[pos:pos + 1] in (b' ', b'\t'):
            pos = data.find(b'\n', pos) + 1
    return data[pos:]


def mail_params(mail):
    """MAIL's parameters, SIZE (the sender's own count, which mxgate's Received changes) aside."""
    return sorted(p for p in (mail or '').split()[1:] if not p.upper().startswith('SIZE='))


def arrived(be, tag):
    with be.lock:
        return [m for m in be.messages if tag.encode() in m['data']]


def submit(port, mail_from, rcpts, data, mail_opts=(), rcpt_opts=()):
    """Hands one message to the sender's Postfix (smtplib); raises on a refusal."""
    s = smtplib.SMTP('127.0.0.1', port, timeout=mt.slack(60))
    try:
        s.ehlo('client.sender.example')
        refused = s.sendmail(mail_from, rcpts, data, mail_options=list(mail_opts), rcpt_options=list(rcpt_opts))
        if refused:
            raise RuntimeError('refused %r' % refused)
    finally:
        s.quit()


def headers(tag, extra=(), subject=None):
    h = ['From: Sender <news@sender.example>', 'To: <user@local.test>',
         'Subject: %s' % (subject or 'legit ' + tag), 'Message-ID: <%s@sender.example>' % tag,
         'Date: Sat, 05 Dec 2026 12:00:00 +0000', 'MIME-Version: 1.0'] + list(extra)
    return '\r\n'.join(h).encode('utf-8') + b'\r\n'


CRLF = b'\r\n'
cases = []   # (name, mail_from, rcpts, data, mail_opts, rcpt_opts)


def case(name, data, mail_from='news@sender.example', rcpts=('user@local.test',), mail_opts=(), rcpt_opts=()):
    cases.append((name, mail_from, list(rcpts), data, list(mail_opts), list(rcpt_opts)))


case('plain', headers('plain') + CRLF + b'Hello.\r\n')
case('8bitmime', headers('8bitmime', ['Content-Type: text/plain; charset=utf-8',
                                      'Content-Transfer-Encoding: 8bit']) + CRLF +
     'Grüße aus Köln, 東京, Ελλάδα.\r\n'.encode() * 20, mail_opts=['BODY=8BITMIME'])
case('smtputf8', headers('smtputf8', ['Content-Type: text/plain; charset=utf-8'],
                         subject='Grüße') + CRLF + 'Ünïcödé body\r\n'.encode(),
     mail_from='jürgen@sender.example', rcpts=['δοκιμή@local.test', 'user@local.test'],
     mail_opts=['SMTPUTF8', 'BODY=8BITMIME'])
case('dsn', headers('dsn') + CRLF + b'Please tell me.\r\n', mail_opts=['RET=HDRS', 'ENVID=QQ314159+2Bx'],
     rcpt_opts=['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;user+2Bext@local.test'])
case('verp', headers('verp') + CRLF + b'list mail\r\n',
     mail_from='list-bounces+user=local.test@lists.example.org')
case('srs', headers('srs') + CRLF + b'forwarded\r\n',
     mail_from='SRS0=HHH=TT=sender.example=news@fwd.example.net')
case('long-local', headers('long-local') + CRLF + b'long local part\r\n',
     mail_from='bounce-' + 'a1b2c3d4' * 12 + '@sender.example',
     rcpts=['u' * 80 + '@local.test'])
case('quoted-local', headers('quoted-local') + CRLF + b'quoted\r\n',
     mail_from='"john smith"@sender.example', rcpts=['"jane doe"@local.test'])
case('idn-alabel', headers('idn-alabel') + CRLF + b'A-labels\r\n',
     mail_from='buch@xn--bcher-kva.example', rcpts=['leser@xn--bcher-kva.test'])
# U-labels (SMTPUTF8): the site's Postfix 3.7 needs the U-label in relay_domains too (with the
# A-label alone it answers 454 4.7.1 Relay access denied, directly and through mxgate alike);
# mxgate's accept_domains matches either form (docs/smtp-edge.md)
case('idn-ulabel', headers('idn-ulabel', ['Content-Type: text/plain; charset=utf-8']) + CRLF + 'U-labels\r\n'.encode(),
     mail_from='buch@bücher.example', rcpts=['leser@bücher.test'], mail_opts=['SMTPUTF8'])
case('line-998', headers('line-998') + CRLF + b'x' * 998 + CRLF + b'y' * 997 + CRLF)
case('qp-dot', headers('qp-dot', ['Content-Type: text/plain; charset=utf-8',
                                  'Content-Transfer-Encoding: quoted-printable']) + CRLF +
     b'first line=\r\n.\r\n..\r\n.=2E\r\nlast=\r\n')
att = bytes(b for b in range(1, 256)) * 400
case('binary-attachment', headers('binary-attachment', [
    'Content-Type: multipart/mixed; boundary="b1"']) + CRLF +
    b'--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\n'
    b'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
    b'\r\n'.join(base64.encodebytes(att).split(b'\n')) + b'--b1--\r\n')
case('folded-200', headers('folded-200', ['X-Folded: start' + ''.join('\r\n\tfold%d' % i for i in range(200))]) +
     CRLF + b'body\r\n')
case('header-100k', headers('header-100k', ['X-Big-%d: %s' % (i, 'v' * 90) for i in range(1100)]) + CRLF + b'body\r\n')
case('only-headers', headers('only-headers'))
case('empty-body', headers('empty-body') + CRLF)
case('many-rcpts', headers('many-rcpts') + CRLF + b'to many\r\n',
     rcpts=['r%04d@local.test' % i for i in range(1000)])
case('big-20m', headers('big-20m') + CRLF + (b'0123456789' * 7 + CRLF) * 290000)

submit(snd_g, 'news@sender.example', ['user@local.test', 'other@local.test'],
       headers('greylisted') + CRLF + b'greylisted first\r\n')
for name, frm, rcpts, data, mo, ro in cases:
    for port in (snd_d, snd_m):
        try:
            submit(port, frm, rcpts, data, mo, ro)
        except Exception as e:   # noqa: BLE001 (the sender refusing is the test's failure)
            mt.check(False, '%s: the sender\'s Postfix took it (%r)' % (name, e))


def tag_of(name):
    return '<%s@sender.example>' % name


def both_arrived(name, n):
    return len(arrived(final_d, tag_of(name))) >= n and len(arrived(final_m, tag_of(name))) >= n


for name, frm, rcpts, data, mo, ro in cases:
    # Postfix's smtp client sends at most 50 recipients a transaction (smtp_destination_recipient_limit)
    n = (len(rcpts) + 49) // 50
    got = mt.wait_for(lambda: both_arrived(name, n), 120)
    d, m = arrived(final_d, tag_of(name)), arrived(final_m, tag_of(name))
    if not mt.check(got, '%s: arrived both ways (%d transactions direct, %d through mxgate)' % (name, len(d), len(m))):
        continue
    dd, md = strip_received(d[0]['data']), strip_received(m[0]['data'])
    same = dd == md
    if not same:
        i = next((i for i in range(min(len(dd), len(md))) if dd[i] != md[i]), min(len(dd), len(md)))
        mt.say('%s: first difference at octet %d: direct %r / mxgate %r' % (name, i, dd[i - 40:i + 40], md[i - 40:i + 40]))
    mt.check(same, '%s: identical below the Received fields (%d octets)' % (name, len(dd)))
    mt.check(mail_params(d[0]['mail']) == mail_params(m[0]['mail']) and
             d[0]['from'] == m[0]['from'],
             '%s: MAIL alike: direct %r, mxgate %r' % (name, d[0]['mail'][:120], m[0]['mail'][:120]))
    rd = sorted(r for x in d for r in x['rcpts'])
    rm = sorted(r for x in m for r in x['rcpts'])
    mt.check(rd == rm and len(rd) == len(rcpts), '%s: the same %d recipients%s' % (
        name, len(rd), '' if rd == rm else ': direct %r, mxgate %r' % (rd[:4], rm[:4])))

# greylisted: deferred once (451 at RCPT), then the sender's own retry gets through
mt.check(mt.wait_for(lambda: arrived(final_m, tag_of('greylisted')), 60),
         'greylisted: the sender\'s Postfix retried after the 451 and the message arrived')
slog = mt.log_of('sender')
mt.check(re.search(r'status=deferred .*greylist', slog, re.I) is not None,
         'greylisted: the sender\'s Postfix logged the first attempt as deferred')
mt.check(mx_grey.count_log(r'event=greylist') >= 1, 'mxgate logged the greylisting')

# the sender's Postfix had nothing but `status=sent` from mxgate: no deferral (4xx) and no
# bounce (5xx) where the site's Postfix took the same mail directly
toward = lambda port: [ln for ln in slog.splitlines() if 'relay=127.0.0.1[127.0.0.1]:%d,' % port in ln]  # noqa: E731
not_sent = [ln for ln in toward(mx.port) if 'status=sent' not in ln]
mt.check(toward(mx.port) and not not_sent, 'the sender\'s Postfix: every delivery to mxgate status=sent (%d); '
         'otherwise %r' % (len(toward(mx.port)), not_sent[:3]))
mt.check(len(toward(mx.port)) == len(toward(site_d)),
         'as many deliveries to mxgate as to the site directly (%d / %d)' % (len(toward(mx.port)), len(toward(site_d))))

# RCPT parameters as the final hops got them (NOTIFY, ORCPT)
rc = lambda be: sorted(c for c in be.commands if c.upper().startswith('RCPT') and 'NOTIFY' in c.upper())  # noqa: E731
mt.check(rc(final_d) == rc(final_m) and rc(final_d), 'dsn: RCPT NOTIFY/ORCPT alike: %r / %r' % (rc(final_d), rc(final_m)))


# ---------------------------------------------------------------- raw clients: direct vs mxgate
def session(port, script, every=None, host='127.0.0.1'):
    """One connection: reads the greeting, then for each (bytes, replies[, slow]) sends the
    bytes (an octet every `every` seconds when the step is marked slow) and reads that many
    replies. Returns the codes."""
    c = mt.Client(port, host=host, timeout=30)
    codes = [c.greeting[0]]
    try:
        for step in script:
            data, n = step[:2]
            if every and len(step) > 2 and step[2]:
                for i in range(len(data)):
                    c.send(data[i:i + 1])
                    time.sleep(every)
            else:
                c.send(data)
            for _ in range(n):
                codes.append(c.reply()[0])
        c.send(b'QUIT\r\n')
    except OSError:
        codes.append('closed')
    c.close()
    return codes


def raw_case(name, script, every=None, want_same_data=True):
    """The same dialogue with the site's Postfix and with mxgate; returns (codes direct, codes
    mxgate) and checks the data of what both accepted is alike."""
    cd = session(site_d, script, every)
    cm = session(mx.port, script, every)
    mt.say('%-18s direct %s' % (name, cd[:12]))
    mt.say('%-18s mxgate %s' % (name, cm[:12]))
    if want_same_data and cd[-1] == 250 and cm[-1] == 250:
        got = mt.wait_for(lambda: both_arrived(name, 1), 30)
        if mt.check(got, '%s: arrived both ways' % name):
            dd = strip_received(arrived(final_d, tag_of(name))[0]['data'])
            md = strip_received(arrived(final_m, tag_of(name))[0]['data'])
            if dd != md:
                mt.say('%s: direct %r\n%s: mxgate %r' % (name, dd[-300:], name, md[-300:]))
            mt.check(dd == md, '%s: identical below the Received fields' % name)
    return cd, cm


EHLO = b'EHLO client.sender.example\r\n'
ENV = b'MAIL FROM:<news@sender.example>\r\nRCPT TO:<user@local.test>\r\n'


def env(extra=b''):
    return b'MAIL FROM:<news@sender.example>' + extra + b'\r\n'


# a client that pipelines everything (RFC 2920), the message with the commands
body = headers('raw-pipelined') + CRLF + b'pipelined\r\n.\r\n'
cd, cm = raw_case('raw-pipelined', [(EHLO, 1), (ENV + b'DATA\r\n' + body, 4)])
mt.check(cd == cm == [220, 250, 250, 250, 354, 250], 'pipelined sender: the same replies (%r / %r)' % (cd, cm))

# one that does not pipeline, and is slow: an octet every 100 ms for its first lines
cd, cm = raw_case('raw-slow', [(EHLO, 1, True), (env(), 1, True), (b'RCPT TO:<user@local.test>\r\n', 1),
                               (b'DATA\r\n', 1), (headers('raw-slow') + CRLF + b'slow\r\n.\r\n', 1)], every=0.1)
mt.check(cd == cm == [220, 250, 250, 250, 354, 250], 'slow sender: the same replies (%r / %r)' % (cd, cm))

# BDAT (Exchange style): chunks, BODY=8BITMIME, a CRLF split across chunks
parts = [headers('raw-bdat', ['Content-Type: text/plain; charset=utf-8']) + CRLF + 'ä line\r'.encode(),
         b'\n.\r\nend\r\n']
cd, cm = raw_case('raw-bdat', [(EHLO, 1), (env(b' BODY=8BITMIME') + b'RCPT TO:<user@local.test>\r\n' +
                                           b'BDAT %d\r\n' % len(parts[0]) + parts[0] +
                                           b'BDAT %d LAST\r\n' % len(parts[1]) + parts[1], 4)])
mt.check(cd == cm == [220, 250, 250, 250, 250, 250], 'BDAT: the same replies (%r / %r)' % (cd, cm))

# BDAT whose last chunk has no final CRLF
last = headers('raw-bdat-nocrlf') + CRLF + b'no final line break'
cd, cm = raw_case('raw-bdat-nocrlf', [(EHLO, 1), (ENV + b'BDAT %d LAST\r\n' % len(last) + last, 3)])
mt.check(cd == cm == [220, 250, 250, 250, 250], 'BDAT without a final CRLF: the same replies (%r / %r)' % (cd, cm))

# BODY=BINARYMIME: neither announces it, both refuse it at MAIL (555)
cd, cm = raw_case('raw-binarymime', [(EHLO, 1), (env(b' BODY=BINARYMIME'), 1)], want_same_data=False)
mt.check(cd == cm == [220, 250, 555], 'BODY=BINARYMIME: 555 both ways (%r / %r)' % (cd, cm))

# a broken sender: a body line of 1,500 octets (RFC 5321 4.5.3.1.6 says 1000 at most)
cd, cm = raw_case('raw-long-line', [(EHLO, 1), (ENV + b'DATA\r\n', 3),
                                    (headers('raw-long-line') + CRLF + b'z' * 1500 + b'\r\nend\r\n.\r\n', 1)])
mt.check(cd[-1] == 250 and cm[-1] == 250, 'a 1,500-octet line: taken both ways (%r / %r)' % (cd, cm))

# 8-bit text that is not text: every octet but NUL, CR and LF, in lines of 76 (BODY=8BITMIME)
octets = bytes(b for b in range(1, 256) if b not in (10, 13)) * 8
binary = b'\r\n'.join(octets[i:i + 76] for i in range(0, len(octets), 76)).replace(b'\r\n.', b'\r\n..')
cd, cm = raw_case('raw-8bit-octets', [(EHLO, 1), (env(b' BODY=8BITMIME') + b'RCPT TO:<user@local.test>\r\nDATA\r\n', 3),
                                      (headers('raw-8bit-octets') + CRLF + binary + b'\r\n.\r\n', 1)])
mt.check(cd[-1] == 250 and cm[-1] == 250, '8-bit octets: taken both ways (%r / %r)' % (cd, cm))

# bare LF line endings (old appliances)
cd, cm = raw_case('raw-bare-lf', [(EHLO, 1), (ENV + b'DATA\r\n', 3),
                                  (headers('raw-bare-lf') + CRLF + b'one\ntwo\nthree\r\n.\r\n', 1)])
mt.check(cd[-1] == 250 and cm[-1] == 250, 'bare LF: taken both ways (%r / %r)' % (cd, cm))

# IPv6: the same client over ::1 to mxgate's second listener (the site's Postfix listens on
# IPv4 only here: the direct reference is the IPv4 session above)
c6 = session(mx.ports[1], [(EHLO, 1), (ENV + b'DATA\r\n', 3), (headers('raw-ipv6') + CRLF + b'over ::1\r\n.\r\n', 1)],
             host='::1')
mt.check(c6 == [220, 250, 250, 250, 354, 250] and mt.wait_for(lambda: arrived(final_m, tag_of('raw-ipv6')), 30),
         'IPv6 client (::1): taken and delivered (%r)' % (c6,))

# the sender's Postfix used STARTTLS with its client certificate (mxgate asks for none: the
# certificate is not sent, the session goes on as any TLS session)
mt.check(re.search(r'Trusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d|'
                   r'(Anonymous|Untrusted) TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d'
                   % (mx.port, mx.port), mt.log_of('sender')) is not None,
         'the sender\'s Postfix delivered to mxgate over STARTTLS (smtp_tls_security_level = may, a client certificate)')
mt.check(mx.count_log(r'event=tls ') >= 1, 'mxgate logged the TLS sessions')

# a bare CR inside a line: the one content difference. Both take it; Postfix 3.7 delivers the
# line as `one two`, mxgate (limits.bare_lf: normalize, docs/smtp-edge.md "DATA: bare line
# feeds") as two lines `one`, `two`
cd, cm = raw_case('raw-bare-cr', [(EHLO, 1), (ENV + b'DATA\r\n', 3),
                                  (headers('raw-bare-cr') + CRLF + b'one\rtwo\r\n.\r\n', 1)], want_same_data=False)
mt.check(cd[-1] == 250 and cm[-1] == 250 and mt.wait_for(lambda: both_arrived('raw-bare-cr', 1), 30),
         'bare CR: taken and delivered both ways (%r / %r)' % (cd, cm))
bd = [strip_received(x['data']) for x in arrived(final_d, tag_of('raw-bare-cr'))]
bm = [strip_received(x['data']) for x in arrived(final_m, tag_of('raw-bare-cr'))]
mt.say('bare CR: direct %r, mxgate %r' % ([x[-10:] for x in bd], [x[-10:] for x in bm]))
mt.check(bm and bm[0].endswith(b'\r\n\r\none\r\ntwo\r\n'),
         'bare CR: mxgate delivers it as a line break, as documented (bare_lf: normalize)')

# 1,000 recipients in one transaction: Postfix takes 1,000, mxgate 100 then 452 4.5.3
# (limits.max_recipients, docs/smtp-edge.md): the sender sends the rest in another transaction
rcpts = b''.join(b'RCPT TO:<r%04d@local.test>\r\n' % i for i in range(1000))
cd, cm = raw_case('raw-1000', [(EHLO, 1), (env() + rcpts, 1001)], want_same_data=False)
mt.check(cd.count(250) == 1002, 'direct: 1,000 recipients taken (%d 250s)' % cd.count(250))
mt.check(cm.count(250) == 102 and cm.count(452) == 900,
         'mxgate: 100 taken, 900 get 452 (a retry, not a bounce): %d 250s, %d 452s' % (cm.count(250), cm.count(452)))
mt.finish()
