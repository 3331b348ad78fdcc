#!/usr/bin/env python3
"""From the outside: a site puts mxgate in front of Microsoft Exchange Server (on premises) or
Exchange Online (Microsoft 365), as many sites do with an appliance in front. The config is
written from docs/ alone (docs/operations.md "Coming from Exchange / Microsoft 365",
docs/senderauth.md "Sealing", docs/config.md backends.tls_verify, docs/rules.md).

Exchange is not installable here: the backend is a scripted peer (mxtest.Backend) that speaks
as Exchange does, written from Microsoft's public docs and what admins quote from them:
- EHLO keywords of an Exchange receive connector: SIZE, PIPELINING, 8BITMIME, BINARYMIME,
  CHUNKING, STARTTLS, X-ANONYMOUSTLS, ENHANCEDSTATUSCODES (and XEXCH50 on Exchange 2003/2007);
  no XCLIENT (Exchange has none);
- Exchange Online's host names, <tenant>.mail.protection.outlook.com, several addresses per
  name, a wildcard certificate *.mail.protection.outlook.com (here *.mail.protection.outlook.test,
  a CA of the test's own, the name served by tests/integration/dns_peer.py);
- Directory-Based Edge Blocking (learn.microsoft.com, "Use Directory Based Edge Blocking to
  reject messages sent to invalid recipients"): an unknown recipient refused at RCPT with
  `550 5.4.1 Recipient address rejected: Access denied. AS(201806281)`;
- back pressure (learn.microsoft.com "Understanding back pressure"; the reply quoted by
  mxtoolbox.com and cloudingenium.com "How to fix error: 452 4.3.1 Insufficient system
  resources"): MAIL answered `452 4.3.1 Insufficient system resources` while a transport server
  is under resource pressure;
- Exchange Online's throttling at RCPT, `451 4.7.500 Server busy. Please try again later`
  (learn.microsoft.com "Email non-delivery reports and SMTP errors in Exchange Online").
- Enhanced Filtering for Connectors (learn.microsoft.com "Enhanced Filtering for Connectors in
  Exchange Online"; ORCA check 233_1): Exchange Online skips the listed gateway's addresses and
  takes the client address from the Received fields below it, so mxgate's Received field must
  name the real client; and the trusted ARC sealer (learn.microsoft.com "Configure trusted ARC
  sealers"): ARC-Seal i=1 cv=none on a message that came without a chain, its
  ARC-Authentication-Results the Authentication-Results mxgate wrote.

What the admin expects, each a check:
- `-t` takes the docs' config; the message reaches the tenant's name over verified TLS with
  SNI (the name in the ClientHello), at either of its addresses; one address down, the other
  takes the mail; a certificate for another name: 4xx, nothing in clear; a server given by
  IP address with tls_verify_name gets that name as SNI (before: no SNI; fixed in tls.c);
- mxgate's Received field names the client's address [198.18.x.y] (Enhanced Filtering);
- ARC-Seal i=1 cv=none, ARC-Authentication-Results = mxgate's Authentication-Results;
- the spam verdict as X-Spam-Flag: YES / X-Spam-Status: Yes for a transport rule that sets
  the SCL (a header of Exchange's own name cannot come from rules' add_header: X-Spam-NAME);
- Directory-Based Edge Blocking: the client gets the same 550 5.4.1 at its RCPT, the good
  recipient of the same message is delivered; 451 4.7.500 at RCPT reaches the client as 451;
- Exchange's BDAT habit: the message goes in BDAT to a backend offering CHUNKING, 8-bit
  content intact with BODY=8BITMIME; mxgate does not announce BINARYMIME nor pass on
  X-ANONYMOUSTLS/XEXCH50, and BODY=BINARYMIME from a client is 555 5.5.4;
- back pressure: 452 4.3.1 at MAIL from one transport server sends the message to the other;
  both under pressure: the client gets 4xx, never 250, nothing lost.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('openssl')
header = mt.header_values

EXCHANGE_EXT = ['BINARYMIME', 'X-ANONYMOUSTLS', 'XEXCH50']
DBEB = '550 5.4.1 Recipient address rejected: Access denied. AS(201806281)'
BUSY = '451 4.7.500 Server busy. Please try again later from [127.0.0.1]. (AS77719)'
PRESSURE = '452 4.3.1 Insufficient system resources'
TENANT = 'contoso-test.mail.protection.outlook.test'
# Exchange's 250 after the data (its message id, then the transport server's InternalId)
EXO_250 = ('250 2.6.0 <%(qid)s@contoso.test> [InternalId=%(qid)s, Hostname=BN8P221MB0001.namprd22.prod.outlook.test] '
           '1234 bytes in 0.012, 97.413 KB/sec Queued mail for delivery')


ca = mt.own_ca('outlook')
wild = mt.ca_leaf('eop-wild', ca, 'DNS:*.mail.protection.outlook.test')
other = mt.ca_leaf('eop-other', ca, 'DNS:mx.fabrikam.test')


def exchange(host, port=None, **kw):
    """An Exchange receive connector as the internet sees it (no XCLIENT, CHUNKING, BINARYMIME)."""
    kw.setdefault('starttls', wild)
    kw.setdefault('data_reply', EXO_250)
    return mt.Backend(host=host, port=port, xclient=False, chunking=True, extensions=EXCHANGE_EXT,
                      name='EXO-%s' % host, **kw)


ex1 = exchange('127.0.0.1', rcpt_replies={'nobody@contoso.test': DBEB, 'busy@contoso.test': BUSY})
ex2 = exchange('127.0.0.2', port=ex1.port, rcpt_replies={'nobody@contoso.test': DBEB, 'busy@contoso.test': BUSY})
dns = mt.dns_peer({TENANT: [{'a': '127.0.0.1'}, {'a': '127.0.0.2'}],
                   'fabrikam-test.mail.protection.outlook.test': [{'a': '127.0.0.3'}],
                   'example.org': [{'txt': ['v=spf1 ip4:198.18.0.0/15 -all']}],
                   '_dmarc.example.org': [{'txt': ['v=DMARC1; p=reject']}]}, name='dns-exo')
seal_key, _ = mt.dkim_rsa_key('arc-contoso')
rules_file = os.path.join(mt.TMP, 'exchange.rules')
with open(rules_file, 'w') as f:
    f.write('body CONTOSO_PRIZE /you have won a prize/i\ndescribe CONTOSO_PRIZE Prize notification\n'
            'score CONTOSO_PRIZE 6.0\n')

cfg = mt.proxied_config(
    ['smtp://%s:%d' % (TENANT, ex1.port)], hostname='mx.contoso.test', accept_domains=['contoso.test'],
    backends={'client_identity': 'none', 'tls_verify': True, 'tls_ca_file': ca[0]},
    dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '%ds' % mt.slack(5)},
    spf={'enabled': True}, dkim={'enabled': True}, dmarc={'enabled': True},
    arc={'enabled': True, 'seal': {'enabled': True, 'domain': 'contoso.test', 'selector': 'arc2026',
                                   'private_key': seal_key}},
    rules={'files': [rules_file], 'actions': {'add_header': 5, 'reject': 20}})
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]), 'exo')
mt.check(rc == 0, 'mxgate -t takes the Exchange Online config: %s %s' % (rc, out.strip()[:400]))
if rc != 0:
    mt.finish()
mx = mt.Mxgate(cfg, 'mx-exo')


def send(tag, to=('alice@contoso.test',), body='Hello.\r\n', src='198.18.7.7'):
    return mt.send_mail(mx.port, 'sender@example.org', list(to), mt.message(tag, body), proxy_src=src,
                        ehlo='mail.example.org', timeout=30)


def delivered(tag):
    return ex1.by_tag(tag) + ex2.by_tag(tag)


# ------------------------------------------------------------------ verified TLS, SNI, Received, ARC
r = send('exo1')
got = delivered('exo1')
mt.check(r.code == 250 and len(got) == 1, 'to the tenant by name: 250, delivered once (%s %s)' % (r.code, r.text))
if got:
    m = got[0]
    mt.check(m['tls'] is not None and m['bdat'], 'over TLS (%s), in BDAT chunks (Exchange offers CHUNKING: %s)'
             % (m['tls'], m['bdat']))
    sni = ex1.sni + ex2.sni
    mt.check(sni and all(n == TENANT for n in sni), 'SNI: the tenant name in each ClientHello: %s' % sni)
    d = m['data']
    rcv = header(d, 'Received')
    mt.check(rcv and re.match(r'from mail\.example\.org \(.*\[198\.18\.7\.7\]\)', rcv[0]) and 'mx.contoso.test' in rcv[0],
             'Enhanced Filtering: the top Received names the client [198.18.7.7] and mxgate: %s' % rcv[:1])
    seal, aar, ar = header(d, 'ARC-Seal'), header(d, 'ARC-Authentication-Results'), header(d, 'Authentication-Results')
    mt.check(len(seal) == 1 and re.match(r'i=1; a=rsa-sha256; t=\d+; cv=none; d=contoso\.test; s=arc2026; b=', seal[0]),
             'ARC-Seal: i=1 cv=none d=contoso.test s=arc2026: %s' % seal)
    mt.check(len(ar) == 1 and ar[0].startswith('mx.contoso.test;') and aar == ['i=1; ' + ar[0]],
             'ARC-Authentication-Results: i=1; then mxgate\'s Authentication-Results as written: %s | %s' % (aar, ar))
    mt.check(aar and re.search(r'\bspf=pass smtp\.mailfrom=example\.org\b', aar[0]) and re.search(r'\bdmarc=pass\b', aar[0])
             and re.search(r'\bdkim=none\b', aar[0]),
             'the seal carries what Exchange Online would have lost behind a gateway: spf=pass for the '
             'client\'s address, dkim=none, dmarc=pass (spf, dkim, dmarc on, as the docs\' recipe has them): %s' % aar)
    mt.check(mx.wait_log(r'event=delivered queue_id=\S+ backend=smtp://%s:%d backend_queue_id=%s '
                         % (re.escape(TENANT), ex1.port, m['qid']), 5) is not None,
             'event=delivered names the tenant and Exchange\'s InternalId %s\n%s' % (m['qid'], mx.tail(5)))
    mt.check(header(d, 'X-Spam-Status')[0].startswith('No,') and not header(d, 'X-Spam-Flag'),
             'ham: X-Spam-Status: No, no X-Spam-Flag: %s' % header(d, 'X-Spam-Status'))

# one of the tenant's addresses down: the other takes the mail
ex1.stop()
r = send('exo2')
mt.check(r.code == 250 and len(ex2.by_tag('exo2')) == 1,
         'the first address of the name down: delivered at the second (%s %s)' % (r.code, r.text))
ex1 = exchange('127.0.0.1', port=ex2.port, rcpt_replies=ex2.rcpt_replies)

# ------------------------------------------------------------------ the spam verdict for a transport rule
r = send('spam1', body='Dear customer, you have won a prize.\r\n')
got = delivered('spam1')
mt.check(r.code == 250 and len(got) == 1, 'spam above add_header: delivered (%s %s)' % (r.code, r.text))
if got:
    d = got[0]['data']
    mt.check(header(d, 'X-Spam-Flag') == ['YES'] and header(d, 'X-Spam-Status')[0].startswith('Yes, score=6.0'),
             'X-Spam-Flag: YES, X-Spam-Status: Yes, score=6.0 (a transport rule "header X-Spam-Flag '
             'contains YES -> set SCL" acts on it): %s %s' % (header(d, 'X-Spam-Flag'), header(d, 'X-Spam-Status')))
    mt.check(not [ln for ln in d.split(b'\r\n\r\n')[0].split(b'\r\n') if ln.lower().startswith(b'x-ms-exchange-')],
             'no X-MS-Exchange-* field from mxgate (Exchange\'s header firewall drops them from a gateway)')

# ------------------------------------------------------------------ Directory-Based Edge Blocking, throttling
r = send('dbeb1', to=('nobody@contoso.test',))
mt.check(r.code == 550 and r.stage == 'rcpt' and '5.4.1' in r.text and 'AS(201806281)' in r.text,
         'DBEB: an unknown recipient gets Exchange\'s 550 5.4.1 at its RCPT (%s %s at %s)' % (r.code, r.text, r.stage))
r = send('dbeb2', to=('nobody@contoso.test', 'alice@contoso.test'))
got = delivered('dbeb2')
mt.check(r.code == 250 and list(r.rcpt_codes) == [550, 250] and len(got) == 1 and got[0]['accepted_rcpts'] == ['alice@contoso.test'],
         'DBEB: 550 for the unknown one, 250 for alice, delivered to alice only (%s %s %s)' % (r.code, r.rcpt_codes, got and got[0]['rcpts']))
r = send('busy1', to=('busy@contoso.test',))
mt.check(r.code == 451 and r.stage == 'rcpt' and '4.7.500' in r.text,
         'Exchange Online throttling at RCPT: 451 4.7.500 to the client (%s %s at %s)' % (r.code, r.text, r.stage))

# ------------------------------------------------------------------ 8-bit, BINARYMIME, Exchange's keywords
c = mt.Client(mx.port, proxy_src='198.18.7.8', timeout=30)
code, text = c.ehlo('mail.example.org')
mt.check(code == 250 and '8BITMIME' in text and 'CHUNKING' in text
         and not re.search(r'BINARYMIME|XEXCH50|X-ANONYMOUSTLS', text),
         'mxgate\'s EHLO: 8BITMIME and CHUNKING, not BINARYMIME, XEXCH50 nor X-ANONYMOUSTLS: %r' % text)
code, text = c.cmd('MAIL FROM:<sender@example.org> BODY=BINARYMIME')
mt.check(code == 555 and '5.5.4' in text, 'BODY=BINARYMIME (not announced): 555 5.5.4 (%s %s)' % (code, text))
c.cmd('RSET')
data = mt.message('8bit1', 'Gr\u00fc\u00dfe aus K\u00f6ln, 10 \u20ac.\r\n'.encode().decode('latin-1'),
                  headers=('MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8',
                           'Content-Transfer-Encoding: 8bit'))
data = data.decode().encode('latin-1')
r = mt.send_mail(mx.port, 'sender@example.org', ['alice@contoso.test'], data, client=c)
c.cmd('QUIT')
c.close()
got = delivered('8bit1')
mt.check(r.code == 250 and len(got) == 1 and 'Gr\u00fc\u00dfe aus K\u00f6ln, 10 \u20ac.'.encode() in got[0]['data']
         and got[0]['bdat'], '8-bit content reaches Exchange intact in BDAT (%s %s)' % (r.code, r.text))
mx.stop()

# ------------------------------------------------------------------ verified TLS: by IP address, tls_verify_name
# a server given by its address (a fixed route, or the name's addresses pinned), verified
# against the tenant name: that name is the SNI too (before: none, the address is the host)
byip = exchange('127.0.0.1')
cfg_ip = dict(cfg, backends=dict(cfg['backends'], servers=[{'address': 'smtp://127.0.0.1:%d' % byip.port,
                                                            'tls_verify_name': TENANT}]))
mxi = mt.Mxgate(cfg_ip, 'mx-exo-byip')
r = mt.send_mail(mxi.port, 'sender@example.org', ['alice@contoso.test'], mt.message('ip1'), proxy_src='198.18.7.9')
mt.check(r.code == 250 and len(byip.by_tag('ip1')) == 1 and byip.sni and all(n == TENANT for n in byip.sni),
         'by IP address with tls_verify_name: delivered, the name sent as SNI in each handshake '
         '(probes too): %s %s %s' % (r.code, r.text, byip.sni))
mxi.stop()

# ------------------------------------------------------------------ verified TLS: the wrong certificate
bad = exchange('127.0.0.3', starttls=other)
cfg_bad = dict(cfg, backends=dict(cfg['backends'], servers=['smtp://fabrikam-test.mail.protection.outlook.test:%d'
                                                            % bad.port]))
mxb = mt.Mxgate(cfg_bad, 'mx-exo-badcert')
r = mt.send_mail(mxb.port, 'sender@example.org', ['alice@contoso.test'], mt.message('cert1'), proxy_src='198.18.7.9')
mt.check(r.code is not None and 400 <= r.code < 500 and not bad.messages,
         'a certificate for another name: 4xx to the client, nothing sent in clear (%s %s)' % (r.code, r.text))
mxb.stop()

# ------------------------------------------------------------------ back pressure: 452 4.3.1 at MAIL
hub1 = exchange('127.0.0.1', starttls=False, mail_reply=PRESSURE)
hub2 = exchange('127.0.0.1', starttls=False)
cfg_bp = mt.proxied_config([hub1.url, hub2.url], hostname='mx.contoso.test', accept_domains=['contoso.test'],
                           backends={'client_identity': 'none', 'balance': 'round_robin'})
mxp = mt.Mxgate(cfg_bp, 'mx-exo-pressure')
codes = [mt.send_mail(mxp.port, 'sender@example.org', ['alice@contoso.test'], mt.message('bp%d' % i),
                      proxy_src='198.18.7.10').code for i in range(4)]
mt.check(codes == [250] * 4 and len(hub2.messages) == 4 and not hub1.messages,
         'one transport server under back pressure (452 4.3.1 at MAIL): every message at the other '
         '(%s; %d at the other)' % (codes, len(hub2.messages)))
hub2.mail_reply = PRESSURE
r = mt.send_mail(mxp.port, 'sender@example.org', ['alice@contoso.test'], mt.message('bp9'), proxy_src='198.18.7.10')
mt.check(r.code is not None and 400 <= r.code < 500 and not hub1.by_tag('bp9') and not hub2.by_tag('bp9'),
         'both under back pressure: 4xx to the client, never 250 (%s %s at %s)' % (r.code, r.text, r.stage))
mxp.stop()
mt.finish()
