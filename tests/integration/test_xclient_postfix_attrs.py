#!/usr/bin/env python3
"""Every XCLIENT attribute mxgate sends to a backend, in every form, taken by a real Postfix
smtpd (3.7 here): mxgate in front of Postfix (smtpd_authorized_xclient_hosts), one session
per form, each delivered (a refused XCLIENT would be a 4xx to the client: relay.c fails the
connection) and Postfix's own log naming the client as mxgate announced it:
- NAME=<name> (a confirmed PTR), PROTO=ESMTP, HELO=<name>;
- NAME=[UNAVAILABLE] (no PTR), PROTO=SMTP (the client said HELO);
- LOGIN=<user> (a front end in xclient_hosts names the client authenticated: LOGIN=alice)
  and LOGIN=[UNAVAILABLE] for the next, unauthenticated session on the same pooled
  connection (one worker, one backend connection);
- REVERSE_NAME, ADDR (IPv4), PORT on every line;
- DESTADDR and DESTPORT (Postfix 3.7 offers them): the address and port the client reached,
  so the backend tells submission from 25: a front end's DESTADDR=198.51.100.25 DESTPORT=587
  passed on, the plain listener's own 127.0.0.1:port, the PROXY header's destination. Postfix
  gives them to its policy service as server_address and server_port (a policy listener
  here records each request; main sent neither: Postfix saw its own 127.0.0.1:port).
NAME=[TEMPUNAVAIL] is test_edge_postfix.py's (DNS down: Postfix answers 450 4.7.25).
No timing decides a check."""
import os
import re
import socketserver
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('postfix')
mt.need_postfix()

dns = mt.dns_peer({
    '7.0.18.198.in-addr.arpa': [{'ptr': 'mail.client.test'}],
    'mail.client.test': [{'a': '198.18.0.7'}],
}, name='dns-xclient-attrs')
requests = []   # each policy request Postfix's smtpd made: {attribute: value}


class Policy(socketserver.StreamRequestHandler):
    """Postfix's policy delegation protocol (SMTPD_POLICY_README): name=value lines, an
    empty line ends a request; each is recorded and answered DUNNO."""
    def handle(self):
        req = {}
        for raw in self.rfile:
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            if line:
                k, _, v = line.partition('=')
                req[k] = v
                continue
            requests.append(req)
            req = {}
            self.wfile.write(b'action=DUNNO\n\n')
            self.wfile.flush()


socketserver.ThreadingTCPServer.allow_reuse_address = True
policy = socketserver.ThreadingTCPServer(('127.0.0.1', 0), Policy)
policy.daemon_threads = True
threading.Thread(target=policy.serve_forever, daemon=True).start()

pf_port = mt.free_port()
mt.postfix_instance('pf-attrs', pf_port, '''relay_domains = local.test
default_transport = discard
relay_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:%d, permit_auth_destination, reject
''' % policy.server_address[1], hostname='backend.test')
mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % pf_port],
                         listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True},
                                 {'address': '127.0.0.1:0'}],
                         trusted_proxies=['127.0.0.0/8'], xclient_hosts=['127.0.0.1/32'],
                         accept_domains=['local.test'],
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s', 'tries': 1},
                         backends={'client_identity': 'xclient', 'pool_size': 1},
                         log={'level': 'debug'}, workers=1), name='mx-xclient-attrs')

def session(port, greet_cmd, tag, proxy_src=None, xclient=None):
    c = mt.Client(port, proxy_src=proxy_src, timeout=20)
    if xclient:
        c.ehlo('front.example.test')
        r = c.cmd('XCLIENT ' + xclient)
        mt.check(r[0] == 220, '%s: mxgate takes the front end\'s XCLIENT (%r)' % (tag, r))
    r = c.cmd(greet_cmd)
    codes = [r[0]]
    for line in ('MAIL FROM:<a@client.test>', 'RCPT TO:<bob@local.test>', 'DATA'):
        codes.append(c.cmd(line)[0])
    r = c.cmd('Subject: %s\r\n\r\nbody\r\n.' % tag)
    codes.append(r[0])
    c.cmd('QUIT')
    c.close()
    mt.check(codes == [250, 250, 250, 354, 250], '%s: delivered through Postfix (%r %r)' % (tag, codes, r))


session(mx.port, 'EHLO mail.client.test', 'named', proxy_src='198.18.0.7')
session(mx.port, 'HELO nameless.client.test', 'nameless', proxy_src='198.18.0.8')
session(mx.ports[1], 'EHLO user.client.test', 'login', xclient='ADDR=198.18.0.9 LOGIN=alice')
session(mx.port, 'EHLO mail.client.test', 'after-login', proxy_src='198.18.0.7')
session(mx.ports[1], 'EHLO dest.client.test', 'dest', xclient='ADDR=198.18.0.10 DESTADDR=198.51.100.25 DESTPORT=587')
session(mx.ports[1], 'EHLO plain.client.test', 'plain')

def reached(helo):
    """(server_address, server_port) of the policy requests for the session with that HELO."""
    return {(q.get('server_address'), q.get('server_port')) for q in requests if q.get('helo_name') == helo}

mt.check(reached('dest.client.test') == {('198.51.100.25', '587')},
         'a front end\'s DESTADDR/DESTPORT reach Postfix: server_address=198.51.100.25 server_port=587 (%s)'
         % reached('dest.client.test'))
mt.check(reached('plain.client.test') == {('127.0.0.1', str(mx.ports[1]))},
         'the plain listener\'s own address and port reach Postfix (%s, want 127.0.0.1 %d)'
         % (reached('plain.client.test'), mx.ports[1]))
mt.check(reached('mail.client.test') == {('127.0.0.1', str(mx.port))},
         'the PROXY header\'s destination reaches Postfix (%s, want 127.0.0.1 %d)'
         % (reached('mail.client.test'), mx.port))

sent = re.findall(r'(?m)^.*(XCLIENT .*)$', mt.log_of(mx.name))
pflog = mt.log_of('pf-attrs')
mt.check(any('LOGIN=alice' in x for x in sent) and any('LOGIN=[UNAVAILABLE]' in x for x in sent) and
         any('NAME=[UNAVAILABLE]' in x for x in sent) and any('PROTO=SMTP' in x for x in sent) and
         any('NAME=mail.client.test' in x and 'PROTO=ESMTP' in x for x in sent),
         'mxgate sent every form (its debug log): %s' % sent)
mt.check(re.search(r'client=mail\.client\.test\[198\.18\.0\.7\]', pflog) is not None,
         'Postfix logs the named client: client=mail.client.test[198.18.0.7]')
mt.check(re.search(r'client=unknown\[198\.18\.0\.8\]', pflog) is not None,
         'Postfix logs NAME=[UNAVAILABLE] as unknown: client=unknown[198.18.0.8]')
mt.check(re.search(r'client=\S+\[198\.18\.0\.9\].*sasl_username=alice', pflog) is not None,
         'Postfix takes LOGIN=alice: sasl_username=alice on the client line')
mt.check(not re.search(r'XCLIENT.*(syntax|error|501|503)|bad XCLIENT', pflog, re.I),
         'Postfix logged no XCLIENT error')
mt.check(any('DESTADDR=198.51.100.25 DESTPORT=587' in x for x in sent), 'mxgate sent DESTADDR and DESTPORT: %s' % sent)
mx.stop()
policy.shutdown()
mt.finish()
