#!/usr/bin/env python3
"""XCLIENT from a trusted front end (xclient_hosts), as Postfix's smtpd_authorized_xclient_hosts.

- Not listed (the default, nobody): EHLO does not offer XCLIENT, XCLIENT gets 550 5.7.0.
- Listed: EHLO offers XCLIENT and its attributes; XCLIENT ADDR=... gets the 220 greeting
  again and the session is the named client's: the connect stage runs again for it (a DNS
  list names it: its MAIL is refused, as a direct connection from there is), the
  connection log, the backend's XCLIENT (ADDR, PORT, HELO, LOGIN), a milter's connect and
  mxgate's Received field name it. IPv6 as IPV6:addr and bare (nginx's form).
- HELO= is judged by the HELO checks before the 220 (refused: forgotten, EHLO needed).
- Corners: bad syntax 501, inside a transaction 503, a peer not listed 550 even when
  another is, the HELO forgotten (503 for MAIL without a new EHLO).
- nginx's mail module with its default `xclient on` in front: the client behind nginx
  (127.0.0.3) is the client mxgate and the backend see, and the message is delivered.
"""
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks', 'rbldnsd')
mt.need_python_milter()

FROM, RCPT = 'sender@example.org', 'rcpt@example.test'
LISTED = '198.18.0.66'      # in the DNS list: a connection from it is refused at MAIL
rbl = mt.rbldnsd({'bl.test': ('ip4set', ':127.0.0.2:listed\n%s\n' % LISTED)})
be = mt.Backend(name='be')
milter = mt.milter()


def mxcfg(**kw):
    return mt.config([be.url], workers=1,
                     dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
                     dnsbl={'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'bl.test', 'weight': 1}]},
                     **kw)


def send(c, tag, ehlo='client.example.net'):
    """EHLO, one message; returns the final code."""
    c.ehlo(ehlo)
    for line in ('MAIL FROM:<%s>' % FROM, 'RCPT TO:<%s>' % RCPT):
        code, text = c.cmd(line)
        if code != 250:
            return code
    code, _ = c.cmd('DATA')
    if code != 354:
        return code
    c.send('Message-ID: <%s@mxtest.example>\r\nSubject: x\r\n\r\nHello.\r\n.\r\n' % tag)
    return c.reply()[0]


def delivered(tag):
    return [m for m in be.messages if ('<%s@' % tag).encode() in m['data']]


# ---------------------------------------------------------------- nobody allowed (default)
mx0 = mt.Mxgate(mxcfg(), name='mx-default')
c = mt.Client(mx0.port)
code, text = c.ehlo()
mt.check(code == 250 and 'XCLIENT' not in text, 'default: EHLO does not offer XCLIENT')
code, text = c.cmd('XCLIENT ADDR=198.18.0.7')
mt.check(code == 550 and '5.7.0' in text, 'default: XCLIENT is refused 550 5.7.0 (%s %s)' % (code, text))
mt.check(mx0.wait_log(r'event=reject stage=xclient reason=unauthorized client=127\.0\.0\.1', 3) is not None,
         'default: the refusal is logged')
c.close()
mx0.stop()

# ---------------------------------------------------------------- 127.0.0.1 allowed
mx = mt.Mxgate(mxcfg(xclient_hosts=['127.0.0.1/32'],
                     helo_checks={'enabled': True, 'not_fqdn': {'action': 'reject'}},
                     plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter.port,
                               'on_error': 'tempfail', 'timeout': '10s'}],
                     # the front end's own connections are not judged (no allow list needed:
                     # test_xclient_front_end), the clients it names are
                     pregreet={'delay': '1s'},
                     ratelimit={'rules': [{'key': 'ip', 'count': 'connections', 'limit': '3/60s',
                                           'action': 'tempfail'}]}), name='mx-xclient')

c = mt.Client(mx.port, source='127.0.0.3')
mt.check(c.greeting[1].startswith('220-'), 'a peer not listed gets the pregreet teaser (%r)' % (c.greeting,))
code, text = c.ehlo()
mt.check(code == 250 and 'XCLIENT' not in text, 'a peer not listed: EHLO does not offer XCLIENT')
code, text = c.cmd('XCLIENT ADDR=198.18.0.7')
mt.check(code == 550, 'a peer not listed: 550 (%s)' % code)
c.close()

c = mt.Client(mx.port)
mt.check(c.greeting == (220, '220 mx.test ESMTP mxgate'),
         'a listed front end is not given the pregreet teaser (%r)' % (c.greeting,))
code, text = c.ehlo('front.example.test')
mt.check(code == 250 and re.search(r'^250-XCLIENT ADDR PORT NAME REVERSE_NAME HELO PROTO LOGIN DESTADDR DESTPORT$',
                                   text, re.M) is not None, 'listed: EHLO offers XCLIENT and its attributes')
for bad, what in (('XCLIENT ADDR', 'no value'), ('XCLIENT FOO=bar', 'unknown attribute'),
                  ('XCLIENT ADDR=300.1.2.3', 'bad address'), ('XCLIENT PORT=70000', 'bad port'),
                  ('XCLIENT ADDR=198.18.0.7 PROTO=HTTP', 'bad PROTO'), ('XCLIENT NAME=a+zz', 'bad xtext'),
                  ('XCLIENT ADDR=[UNAVAILABLE]', 'no address')):
    code, text = c.cmd(bad)
    mt.check(code == 501 and '5.5.4' in text, 'syntax, %s: 501 5.5.4 (%s %s)' % (what, code, text))
c.cmd('MAIL FROM:<%s>' % FROM)
code, text = c.cmd('XCLIENT ADDR=198.18.0.7')
mt.check(code == 503 and 'transaction' in text, 'inside a transaction: 503 (%s %s)' % (code, text))
c.cmd('RSET')
code, text = c.cmd('XCLIENT ADDR=198.18.0.7 PORT=40001 NAME=[UNAVAILABLE] LOGIN=alice+40example.org')
mt.check(code == 220 and 'mx.test' in text, 'XCLIENT: the greeting again, 220 (%s %s)' % (code, text))
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 503, 'after XCLIENT the HELO is forgotten: MAIL without EHLO is 503 (%s)' % code)
code = send(c, 'xc-v4')
got = delivered('xc-v4')
mt.check(code == 250 and len(got) == 1, 'XCLIENT then a message: delivered (%s)' % code)
x = got[0]['xclient'] if got else {}
mt.check(x.get('ADDR') == '198.18.0.7' and x.get('PORT') == '40001',
         "the backend's XCLIENT names the new client and port (%s)" % x)
mt.check(x.get('HELO') == 'client.example.net', "the backend hears the HELO given after XCLIENT (%s)" % x.get('HELO'))
mt.check(x.get('LOGIN') == 'alice@example.org', 'LOGIN= (xtext) reaches the backend (%s)' % x.get('LOGIN'))
rcvd = got[0]['data'].split(b'\r\n\r\n')[0].decode('utf-8', 'replace') if got else ''
mt.check(re.search(r'^Received: from client\.example\.net \([^)]*198\.18\.0\.7\]', rcvd, re.M) is not None,
         "mxgate's Received field names the new client (%s)" % rcvd.splitlines()[:2])
macros = re.search(r'^X-Milter-Macros: (.*)$', rcvd, re.M)
macros = macros.group(1) if macros else ''
mt.check(re.search(r'(^| )_=\S+ \[198\.18\.0\.7\]', macros) is not None,
         "the milter's connect (a new milter session) names the new client (%s)" % macros)
mt.check(mx.wait_log(r'event=xclient client=198\.18\.0\.7 port=40001 previous=127\.0\.0\.1 ', 3) is not None,
         'event=xclient names the new client and the front end')
mt.check(mx.wait_log(r'event=connect client=198\.18\.0\.7 port=40001', 3) is not None,
         'the connect is logged again for the new client')
c.cmd('QUIT')
c.close()

# the connect stage runs again: a listed client is refused at MAIL, as if it had connected
c = mt.Client(mx.port)
c.ehlo('front.example.test')
code, text = c.cmd('XCLIENT ADDR=%s' % LISTED)
mt.check(code == 220, 'XCLIENT naming a listed client: 220 (%s)' % code)
code = send(c, 'xc-listed')
mt.check(code == 550 and not delivered('xc-listed'), 'a client a DNS list names: refused at MAIL, 550 (%s)' % code)
mt.check(mx.wait_log(r'event=reject stage=connect reason=dnsbl.* client=%s' % re.escape(LISTED), 3) is not None,
         'the DNS list judged the new address at connect')
# a second XCLIENT to an unlisted one lifts it (the front end's next client)
code, text = c.cmd('XCLIENT ADDR=198.18.0.8 HELO=again.example.net')
mt.check(code == 220, 'a second XCLIENT: 220 (%s)' % code)
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 250, 'HELO= given with XCLIENT: MAIL needs no new EHLO (%s)' % code)
c.cmd('RSET')
# HELO= is judged by the HELO stage as an EHLO's name: refused, it is forgotten
code, text = c.cmd('XCLIENT ADDR=198.18.0.10 HELO=localhost')
mt.check(code == 220, 'XCLIENT with a HELO the HELO checks refuse: 220 all the same (%s)' % code)
code, text = c.cmd('MAIL FROM:<%s>' % FROM)
mt.check(code == 503, 'the refused HELO= is forgotten: MAIL needs EHLO (%s %s)' % (code, text))
mt.check(mx.wait_log(r'event=xclient_helo_refused helo=localhost reason=\S+ client=198\.18\.0\.10', 3) is not None,
         'event=xclient_helo_refused is logged')
code, text = c.cmd('XCLIENT ADDR=198.18.0.8')
code = send(c, 'xc-second')
got = delivered('xc-second')
mt.check(code == 250 and got and got[0]['xclient'].get('ADDR') == '198.18.0.8',
         'the second client is judged afresh and delivered (%s %s)' % (code, got[0]['xclient'] if got else None))
c.close()

# a front end that keeps its connection: one client's message, then the next client's;
# the first one's errors (9 of limits.max_errors' 10) are not the second one's
c = mt.Client(mx.port)
c.cmd('XCLIENT ADDR=198.18.0.20')
for i in range(9):
    c.cmd('BOGUS')
c.cmd('XCLIENT ADDR=198.18.0.21')
c.cmd('BOGUS')
code1 = send(c, 'xc-keep1')
c.cmd('XCLIENT ADDR=198.18.0.22')
code2 = send(c, 'xc-keep2')
g1, g2 = delivered('xc-keep1'), delivered('xc-keep2')
mt.check(code1 == 250 and code2 == 250 and g1 and g2 and g1[0]['xclient'].get('ADDR') == '198.18.0.21' and
         g2[0]['xclient'].get('ADDR') == '198.18.0.22',
         'two clients on one front-end connection: each message under its own client, errors counted per client (%s, %s)'
         % (g1[0]['xclient'].get('ADDR') if g1 else None, g2[0]['xclient'].get('ADDR') if g2 else None))
c.close()

# the connection rate limit counts the named clients: a fourth connection named 198.18.0.30
for i in range(4):
    c = mt.Client(mx.port)
    code, text = c.cmd('XCLIENT ADDR=198.18.0.30')
    c.close()
mt.check(code == 421, 'ratelimit counts the client XCLIENT names: its 4th connection in 60 s gets 421 (%s %s)'
         % (code, text))

# IPv6: IPV6:addr (Postfix's form) and bare (nginx's)
for arg, want, tag in (('IPV6:2001:db8::7', 'IPV6:2001:db8::7', 'xc-v6'), ('2001:db8::8', 'IPV6:2001:db8::8', 'xc-v6bare'),
                       ('IPV6:::ffff:198.18.0.9', '198.18.0.9', 'xc-mapped')):
    c = mt.Client(mx.port)
    code, text = c.cmd('XCLIENT ADDR=%s' % arg)
    mt.check(code == 220, 'XCLIENT ADDR=%s: 220 (%s %s)' % (arg, code, text))
    code = send(c, tag)
    got = delivered(tag)
    mt.check(code == 250 and got and got[0]['xclient'].get('ADDR') == want,
             'ADDR=%s: the backend hears ADDR=%s (%s)' % (arg, want, got[0]['xclient'] if got else None))
    c.close()

# client_identity: proxy_v2 toward the backends: the header names the client XCLIENT named
pb = mt.Backend(name='be-proxy', expect_proxy=True, xclient=False)
pmx = mt.Mxgate(mt.config([pb.url], workers=1, xclient_hosts=['127.0.0.1/32'],
                          backends={'client_identity': 'proxy_v2'}), name='mx-xclient-proxy')
c = mt.Client(pmx.port)
c.cmd('XCLIENT ADDR=198.18.0.50 PORT=41000')
code = send(c, 'xc-proxy')
c.close()
got = [m for m in pb.messages if b'<xc-proxy@' in m['data']]
p = (got[0]['proxy'] or {}) if got else {}
mt.check(code == 250 and p.get('src') == '198.18.0.50' and p.get('sport') == 41000,
         "client_identity proxy_v2: the backend's PROXY header names the client XCLIENT named (%s)"
         % {k: v for k, v in p.items() if k != 'raw'})
pmx.stop()

# ---------------------------------------------------------------- nginx's mail module, xclient on
if mt.tool('nginx') and os.path.exists(os.path.join(mt.NGINX_MODULES, 'ngx_mail_module.so')):
    class Auth(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header('Auth-Status', 'OK')
            self.send_header('Auth-Server', '127.0.0.1')
            self.send_header('Auth-Port', str(mx.port))
            self.end_headers()

        def log_message(self, *a):
            pass

    auth = HTTPServer(('127.0.0.1', 0), Auth)
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    mport = mt.hold_port().port
    ng = mt.nginx(('mail',), '''mail {{
  server_name front.example.test;
  auth_http 127.0.0.1:{auth}/auth;
  server {{ listen 127.0.0.1:{port}; protocol smtp; smtp_auth none; }}
}}
'''.format(auth=auth.server_address[1], port=mport), (mport,))
    r = mt.swaks(mport, '--local-interface', '127.0.0.3', '--ehlo', 'laptop.example.net', '--from', FROM,
                 '--to', RCPT, '--header', 'Message-ID: <xc-nginx@mxtest.example>')
    got = delivered('xc-nginx')
    mt.check(r.returncode == 0 and len(got) == 1, 'nginx mail, xclient on (its default): delivered (rc=%d %s)'
             % (r.returncode, r.stdout.strip().splitlines()[-4:] if r.returncode else ''))
    mt.check(bool(got) and got[0]['xclient'].get('ADDR') == '127.0.0.3',
             'nginx mail, xclient on: the backend hears the client behind nginx (%s)' % (got[0]['xclient'] if got else None))
    mt.check(bool(got) and got[0]['xclient'].get('HELO') == 'laptop.example.net',
             "nginx mail, xclient on: mxgate hears the client's own HELO (%s)" % (got[0]['xclient'].get('HELO') if got else None))
    mt.check(mx.wait_log(r'event=xclient client=127\.0\.0\.3 ', 3) is not None,
             "mxgate took nginx's XCLIENT (event=xclient client=127.0.0.3)")
    mt.stop_proc(ng)
    auth.shutdown()
elif os.environ.get('CI') == 'true':
    mt.fail('nginx or its mail module missing (scripts/install-deps.sh installs them)')
else:
    mt.say('skip nginx: not installed')

mx.stop()
mt.finish()
