#!/usr/bin/env python3
"""mxgate with a real Exim 4.96 (Debian 12's exim4-daemon-heavy, unpacked by
scripts/install-deps.sh into /opt/mxgate-peers/exim4: it cannot be installed beside Postfix)
on both sides, as docs/exim.md describes it:

- behind mxgate: `client_identity: proxy_v2` and Exim's `hosts_proxy` naming mxgate. Exim's
  ACLs see the real client ($sender_host_address, `hosts =`: a host Exim bans gets Exim's
  550 through mxgate), its Received: line names it, mxgate's health probes (PROXY v2 LOCAL)
  keep the backend up, and Exim's queue id is mxgate's backend_queue_id;
- a callout through mxgate (MAIL FROM:<>, RCPT, QUIT) ends at Exim as a callout made
  directly does, `incomplete transaction (QUIT)`; until session 16 it was `incomplete
  transaction (connection lost)` and `unexpected disconnection` (mxgate closed the backend
  connection, in the middle of its TLS session);
- in front of mxgate: a second Exim whose ACL verifies recipients and senders by callout
  (`verify = recipient/callout`, `verify = sender/callout`) to mxgate gets the backend
  Exim's verdicts through mxgate, and delivers through mxgate (CHUNKING, PIPELINING) what it
  accepted."""
import glob
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

EXIM = os.environ.get('MX_EXIM', '/opt/mxgate-peers/exim4/usr/sbin/exim4')
mt.need('swaks', EXIM)
try:
    import pwd
    EXIM_UID = pwd.getpwnam('Debian-exim').pw_uid
except KeyError:
    mt.skip('no Debian-exim user (scripts/install-deps.sh makes it)')
if os.geteuid() != 0:
    mt.skip('Exim runs from a private config only as root here')

COMMON = '''exim_path = {exim}
exim_user = Debian-exim
exim_group = Debian-exim
keep_environment =
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
log_selector = +all -arguments
daemon_smtp_ports = {port}
local_interfaces = <; 127.0.0.1
rfc1413_hosts =
'''

BACK = COMMON + '''primary_hostname = exim-back.test
host_lookup =
hosts_proxy = 127.0.0.1
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  warn logwrite = ACL-RCPT host_address=$sender_host_address proxy=$proxy_session proxy_external=$proxy_external_address
  deny hosts = 198.18.66.66
       message = host $sender_host_address is banned here
  accept domains = local.test
         verify = recipient
  deny message = relay not permitted
begin routers
local:
  driver = accept
  domains = local.test
  local_parts = a : b : known
  transport = null
begin transports
null:
  driver = appendfile
  file = /dev/null
  user = Debian-exim
'''

FRONT = COMMON + '''primary_hostname = exim-front.test
host_lookup =
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  deny   domains = local.test
         !verify = recipient/callout=10s
  deny   senders = *@local.test
         !verify = sender/callout=10s
  accept domains = local.test
  deny   message = relay not permitted
begin routers
to_mxgate:
  driver = manualroute
  domains = local.test
  route_list = * 127.0.0.1
  self = send
  transport = to_mxgate
begin transports
to_mxgate:
  driver = smtp
  port = {mxport}
  allow_localhost
  hosts_avoid_tls = *
begin retry
*  *  F,1m,1m
'''


def exim(name, template, **kw):
    d = os.path.join(mt.TMP, name)
    for sub in ('spool', 'log'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    port = mt.free_port()
    conf = os.path.join(d, 'exim.conf')
    with open(conf, 'w') as f:
        f.write(template.format(exim=EXIM, d=d, port=port, **kw))
    for root, dirs, files in os.walk(d):
        for x in dirs + files:
            os.chown(os.path.join(root, x), EXIM_UID, -1)
    os.chown(d, EXIM_UID, -1)
    os.chown(conf, 0, 0)     # Exim reads a config owned by root only
    p = mt.spawn([EXIM, '-C', conf, '-bdf', '-odq' if name == 'back' else '-odi'], name)
    if not mt.wait_port(port, 15, p):   # its port taken meanwhile: it exits, a clear failure
        mt.fail('exim %s did not listen on %d (exit status %s):\n%s' % (name, port, p.poll(), mt.log_of(name)[-2000:]))
    return d, port


def mainlog(d):
    try:
        with open(os.path.join(d, 'log', 'mainlog'), errors='replace') as f:
            return f.read()
    except OSError:
        return ''


back_dir, back_port = exim('back', BACK)
mx = mt.Mxgate(mt.config(['smtp://127.0.0.1:%d' % back_port],
                         listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}, {'address': '127.0.0.1:0'}],
                         trusted_proxies=['127.0.0.1/32'], hostname='mx.example.test',
                         accept_domains=['local.test'], backends={'client_identity': 'proxy_v2'},
                         workers=1), name='mx-exim')
proxied, plain = mx.ports[0], mx.ports[1]
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 10),
         'the Exim backend is up: mxgate\'s probes (PROXY v2 LOCAL) are taken by hosts_proxy')

# -- behind mxgate: the real client
r = mt.send_mail(proxied, 'x@sender.example', ['a@local.test'], mt.message('proxied'), ehlo='client.example',
                 proxy_src='198.18.0.7')
mt.check(r.stage == 'eom' and r.code == 250, 'a message from 198.18.0.7 through mxgate is taken by Exim (%s)' % (r,))
log = mainlog(back_dir)
mt.check(re.search(r'ACL-RCPT host_address=198\.18\.0\.7 proxy=(yes|true|1) proxy_external=127\.0\.0\.1', log),
         'Exim\'s ACL sees the client\'s address ($sender_host_address), mxgate as the proxy')
ids = re.findall(r'(\S+) <= x@sender\.example H=\(client\.example\) \[198\.18\.0\.7\]:40000', log)
mt.check(len(ids) == 1, 'Exim logs the message from the client\'s address and HELO name (%s)' % ids)
mt.check(ids and mx.wait_log(r'event=delivered .*backend_queue_id=%s ' % re.escape(ids[0]), 5),
         'mxgate logs Exim\'s queue id (250 OK id=...) as backend_queue_id')
heads = ''
for f in glob.glob(os.path.join(back_dir, 'spool', 'input', '*-H')):
    with open(f, errors='replace') as fh:
        heads += fh.read()
mt.check(re.search(r'Received: from \[198\.18\.0\.7\] \(port=40000 helo=client\.example\)\s+by exim-back\.test', heads),
         'Exim\'s Received: line names the client, not mxgate')
mt.check(re.search(r'Received: from client\.example \(unknown \[198\.18\.0\.7\]\)\s+by mx\.example\.test \(mxgate\)', heads),
         'mxgate\'s own Received: line is below it')

c = mt.Client(proxied, proxy_src='198.18.66.66')
c.ehlo('bad.example')
c.cmd('MAIL FROM:<x@sender.example>')
code, text = c.cmd('RCPT TO:<a@local.test>')
mt.check(code == 550 and 'banned' in text, 'Exim\'s `hosts =` ban reaches the client through mxgate (%s %s)' % (code, text))
c.cmd('QUIT')
c.close()

# -- a callout through mxgate ends at Exim as one made to it directly
n0 = len(mainlog(back_dir))
c = mt.Client(proxied, proxy_src='198.18.0.8')
c.ehlo('verifier.example')
codes = [c.cmd(l)[0] for l in ('MAIL FROM:<>', 'RCPT TO:<b@local.test>', 'QUIT')]
c.close()
mt.check(codes == [250, 250, 221], 'the callout is answered by Exim\'s verdict (%s)' % codes)
mt.check(mt.wait_for(lambda: 'incomplete transaction (QUIT) from <> for b@local.test' in mainlog(back_dir)[n0:], 10),
         'Exim logs the callout through mxgate as a callout: incomplete transaction (QUIT)')
tail = mainlog(back_dir)[n0:]
mt.check('connection lost' not in tail and 'unexpected disconnection' not in tail,
         'no "connection lost" or "unexpected disconnection" at Exim for a callout ended by QUIT')

# -- Exim in front of mxgate: its callouts and its deliveries
front_dir, front_port = exim('front', FRONT, mxport=plain)


def swaks(frm, to):
    r = subprocess.run(['swaks', '--server', '127.0.0.1', '--port', str(front_port), '--from', frm, '--to', to,
                        '--helo', 'client.example', '--h-Subject', 'via exim'], capture_output=True, text=True,
                       timeout=mt.slack(60))
    return r.stdout


out = swaks('x@other.test', 'nosuch@local.test')
mt.check('550-Callout verification failed' in out and 'relay not permitted' in out,
         'Exim\'s recipient callout through mxgate gets the backend Exim\'s refusal')
out = swaks('fake@local.test', 'a@local.test')
mt.check('Sender verify failed' in out, 'Exim\'s sender callout through mxgate refuses an unknown sender')
n0 = len(mainlog(back_dir))
out = swaks('known@local.test', 'b@local.test')
mt.check(re.search(r'<-\s+250 OK id=', out), 'Exim accepts a message whose sender and recipient its callouts verified')
flog = mt.wait_for(lambda: re.search(r'=> b@local\.test .* L K C="250 2\.0\.0 Ok: queued as (\w+)"', mainlog(front_dir)), 20)
mt.check(flog, 'the front Exim delivers it through mxgate, pipelining and with BDAT (L K), mxgate\'s queue id in its log')
mt.check(mt.wait_for(lambda: re.search(r'<= known@local\.test H=\(exim-front\.test\) \[127\.0\.0\.1\]',
                                       mainlog(back_dir)[n0:]), 10),
         'the backend Exim has it, from the front Exim (its address by PROXY v2, its HELO name)')
mt.check(mx.count_log(r'event=reject stage=rcpt reason=backend') >= 3,
         'mxgate logs each refused callout as the backend\'s refusal at RCPT')

mt.finish()
