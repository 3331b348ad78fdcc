#!/usr/bin/env python3
"""nginx in front of mxgate, as docs/balancing.md tells an nginx operator to set it up.

- the stream module with `proxy_protocol on` (PROXY v1): the client behind nginx (127.0.0.3)
  is the client mxgate logs and the backend hears (XCLIENT ADDR).
- the mail module with `xclient off; proxy_protocol on;` toward a proxy_protocol listener:
  delivered, the client is 127.0.0.3 too.
- the mail module with its default `xclient on` (to a plain listener): nginx sends XCLIENT,
  which mxgate takes from no client not in xclient_hosts (550 5.7.0; none here), and nginx
  answers the client 451: nothing is delivered, and nothing is lost (a 4xx, the client
  retries). With nginx in xclient_hosts it works: test_xclient_inbound.py.
- the mail module answers EHLO itself and says its own server_name to mxgate: the client's
  HELO never reaches mxgate (the docs say so).
"""
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('nginx', 'swaks')

FROM = 'sender@example.org'
RCPT = 'rcpt@example.test'
CLIENT = '127.0.0.3'

be = mt.Backend(name='be')
mx = mt.Mxgate(mt.config([be.url], workers=1, listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True},
                                                      {'address': '127.0.0.1:0'}],
                         trusted_proxies=['127.0.0.1/32']), name='mx-nginx')
pp_port, plain_port = mx.ports


class Auth(BaseHTTPRequestHandler):
    """nginx mail's auth_http: a session goes to mxgate's PROXY listener, or to its plain one
    when the server block says X-Plain (the one that sends XCLIENT, not a PROXY header)."""

    def do_GET(self):
        self.send_response(200)
        self.send_header('Auth-Status', 'OK')
        self.send_header('Auth-Server', '127.0.0.1')
        self.send_header('Auth-Port', str(plain_port if self.headers.get('X-Plain') else pp_port))
        self.end_headers()

    def log_message(self, *a):
        pass


auth = HTTPServer(('127.0.0.1', 0), Auth)
threading.Thread(target=auth.serve_forever, daemon=True).start()

ports = {k: mt.hold_port().port for k in ('stream', 'mail', 'mail_xclient')}
ng = mt.nginx(('stream', 'mail'), '''stream {{
  server {{ listen 127.0.0.1:{stream}; proxy_pass 127.0.0.1:{mx}; proxy_protocol on; }}
}}
mail {{
  server_name front.example.test;
  auth_http 127.0.0.1:{auth}/auth;
  server {{ listen 127.0.0.1:{mail}; protocol smtp; smtp_auth none; xclient off; proxy_protocol on; }}
  server {{ listen 127.0.0.1:{mail_xclient}; protocol smtp; smtp_auth none; auth_http_header X-Plain yes; }}
}}
'''.format(mx=pp_port, auth=auth.server_address[1], **ports), ports.values())
d = ng.dir


def delivered(tag):
    return [m for m in be.messages if ('<%s@' % tag).encode() in m['data']]


def through(port, tag):
    return mt.swaks(port, '--local-interface', CLIENT, '--from', FROM, '--to', RCPT,
                    '--header', 'Message-ID: <%s@mxtest.example>' % tag)


for name, port in (('stream, proxy_protocol on', ports['stream']),
                   ('mail, xclient off + proxy_protocol on', ports['mail'])):
    tag = 'ng-' + re.sub(r'\W+', '-', name)
    r = through(port, tag)
    got = delivered(tag)
    mt.check(r.returncode == 0 and len(got) == 1, 'nginx %s: delivered (rc=%d %s)'
             % (name, r.returncode, r.stdout.strip().splitlines()[-3:] if r.returncode else ''))
    mt.check(bool(got) and got[0]['xclient'].get('ADDR') == CLIENT,
             'nginx %s: the backend hears the client behind nginx, %s (%s)' % (name, CLIENT, got[0]['xclient'] if got else None))

got = delivered('ng-mail-xclient-off-proxy_protocol-on')
mt.check(bool(got) and got[0]['xclient'].get('HELO') == 'front.example.test',
         "nginx mail: mxgate hears nginx's server_name as the HELO, not the client's (%s)"
         % (got[0]['xclient'].get('HELO') if got else None))
n = len(be.messages)
r = through(ports['mail_xclient'], 'ng-xclient')
mt.check(r.returncode != 0 and re.search(r'<\*\* 451 ', r.stdout) is not None and len(be.messages) == n,
         'nginx mail with its default xclient on: the client gets 451, nothing delivered (%s)'
         % (re.findall(r'<\*\* [^\n]*', r.stdout)[:1],))
mt.check(mt.wait_for(lambda: 'upstream sent invalid response: "550 5.7.0' in open(os.path.join(d, 'error.log')).read(), 3),
         "nginx's XCLIENT was refused by mxgate (550 5.7.0), as nginx's error log says")

mt.stop_proc(ng)
auth.shutdown()
mx.stop()
mt.finish()
