#!/usr/bin/env python3
"""DKIM key, DMARC and SPF records larger than 512 octets, and truncated answers.

mxgate asked without EDNS0, so every answer over 512 octets came back truncated (TC) and
c-ares asked again over TCP: a 4096-bit DKIM key (about 830 octets), a long DMARC record,
an SPF record with many mechanisms cost a second query and a TCP handshake each, and a
resolver path that blocks TCP/53 turned them into temperrors. Queries now carry EDNS0 with
a UDP payload size of 1232 (DNS flag day 2020): answers up to that size come in one UDP
datagram; larger ones are still truncated and asked again over TCP.

A truncated answer must never become a permerror ("no key", "no record"): when the TCP
retry fails (the server closes the connection, or never answers) the result is temperror,
and under dmarc on_temperror: policy a p=reject domain's message is deferred, not refused
and not delivered as unsigned.

Peers: dns_peer.py (dnspython) serves the records on UDP and TCP and logs each query with
its transport and EDNS payload size; dkimpy (dkim_signer.py) signs.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = mt.need_sys_python('dkim', 'dns.message')
mt.need('openssl')


k4096, rec4096 = mt.dkim_rsa_key('k4096', 4096)
k2048, rec2048 = mt.dkim_rsa_key('k2048', 2048)
rua = ','.join('mailto:dmarc-%02d@reports.example.net' % i for i in range(40))
zone = {
    # about 830 octets: over 512, under 1232
    'big._domainkey.mid.example': [{'txt': mt.txt_strings(rec4096)}],
    '_dmarc.mid.example': [{'txt': ['v=DMARC1; p=reject']}],
    # the key beside a 1000-octet record at the same name: over 1232, TCP
    'huge._domainkey.huge.example': [{'txt': mt.txt_strings(rec2048)}, {'txt': ['x' * 250] * 4}],
    '_dmarc.huge.example': [{'txt': mt.txt_strings('v=DMARC1; p=reject; rua=' + rua)}],
    # truncated, then a TCP connection closed without an answer
    'closed._domainkey.rej.example': 'tcp_close',
    'stall._domainkey.rej.example': 'tcp_stall',
    '_dmarc.rej.example': [{'txt': ['v=DMARC1; p=reject']}],
    '_dmarc.trunc.example': 'tcp_close',
    'spftrunc.example': 'tcp_close',
    # a server that answers FORMERR to EDNS0 (RFC 6891 7): asked again without it
    'old._domainkey.old.example': [{'no_edns': True}, {'txt': mt.txt_strings(rec2048)}],
    '_dmarc.old.example': [{'no_edns': True}, {'txt': ['v=DMARC1; p=reject']}],
    'spfold.example': [{'no_edns': True}, {'txt': ['v=spf1 ip4:198.18.1.9 -all']}],
    'spfbig.example': [{'txt': mt.txt_strings('v=spf1 ' + ' '.join('ip4:192.0.2.%d' % i for i in range(60)) + ' -all')}],
}
dnsp = mt.dns_peer(zone)
be = mt.Backend()
cfg = mt.proxied_config([be.url], hostname='mx.test',
                        dns={'resolvers': ['127.0.0.1:%d' % dnsp.port], 'timeout': '2s', 'tries': 1},
                        spf={'enabled': True, 'timeout': '4s'}, dkim={'enabled': True, 'timeout': '4s'},
                        dmarc={'enabled': True})
mx = mt.Mxgate(cfg, name='mx-dnssize')


def send(tag, from_dom, key=None, selector=None, sender='bounce@other.example'):
    m = ('From: a@%s\r\nTo: bob@example.test\r\nSubject: dnssize %s\r\nDate: Fri, 04 Dec 2026 05:00:00 +0000\r\n'
         'Message-ID: <%s@x>\r\n\r\nbody %s.\r\n' % (from_dom, tag, tag, tag))
    data = m.encode()
    if key:
        r = subprocess.run([PY, os.path.join(HERE, 'dkim_signer.py'), 'sign', key, selector, from_dom],
                           input=data, capture_output=True, timeout=60)
        if r.returncode != 0:
            mt.fail('dkim_signer.py: %s' % r.stderr.decode(errors='replace')[-300:])
        data = r.stdout
    res = mt.send_mail(mx.port, sender, ['bob@example.test'], data, proxy_src='198.18.1.9')
    return res.code, res.text, mt.our_authres(be.messages, ('Subject: dnssize %s\r\n' % tag).encode())


def queries(name):
    return re.findall(r'(?m)^query %s TXT(.*)$' % re.escape(name), mt.log_of(dnsp.name))


# --- over 512, under 1232: one UDP answer
code, text, ar = send('mid', 'mid.example', k4096, 'big')
mt.check(code == 250 and 'dkim=pass (4096-bit rsa key) header.d=mid.example' in ar and 'dmarc=pass' in ar,
         'a 4096-bit key (about 830 octets): dkim=pass, dmarc=pass (%s %s)' % (code, ar or text))
q = queries('big._domainkey.mid.example')
mt.check(q and all('tcp' not in x for x in q) and all('edns=1232' in x for x in q),
         'the 4096-bit key came in one UDP answer to an EDNS0 query of 1232 octets, no TCP retry (%s)' % q)

# --- over 1232: truncated, asked again over TCP, still passes
code, text, ar = send('huge', 'huge.example', k2048, 'huge')
mt.check(code == 250 and 'dkim=pass' in ar and 'dmarc=pass (p=reject' in ar,
         'a key beside a 1000-octet record, a 1.8 KB DMARC record: over TCP, dkim=pass dmarc=pass (%s %s)'
         % (code, ar or text))
mt.check(any('tcp' in x for x in queries('huge._domainkey.huge.example')) and
         any('tcp' in x for x in queries('_dmarc.huge.example')),
         'answers over 1232 octets were asked again over TCP')

# --- an SPF record over 512 octets: one UDP answer
code, text, ar = send('spfbig', 'spfbig.example', sender='x@spfbig.example')
mt.check(code == 250 and 'spf=fail smtp.mailfrom=spfbig.example' in ar,
         'an SPF record of 60 mechanisms (about 900 octets) is read: spf=fail for 198.18.1.9 (%s %s)' % (code, ar or text))
q = queries('spfbig.example')
mt.check(q and all('tcp' not in x for x in q), 'the SPF record came over UDP (%s)' % q)

# --- a server that does not know EDNS0
code, text, ar = send('old', 'old.example', k2048, 'old')
mt.check(code == 250 and 'dkim=pass' in ar and 'dmarc=pass' in ar,
         'a server answering FORMERR to EDNS0: the key and DMARC record are asked again without (%s %s)'
         % (code, ar or text))
code, text, ar = send('spfold', 'other.example', sender='x@spfold.example')
mt.check(code == 250 and 'spf=pass smtp.mailfrom=spfold.example' in ar,
         'the same for SPF: spf=pass (%s %s)' % (code, ar or text))
q = queries('spfold.example')
mt.check(any('edns' in x for x in q) and any('edns' not in x for x in q),
         'SPF asked with EDNS0, then without (%s)' % q)

# --- truncated, then TCP fails: temperror, never permerror. The DMARC record is asked first
# and cached: c-ares 1.18 resets every socket to a server whose TCP connection closes, and
# the queries out to it (a DMARC lookup sent at the same moment) fail with it
code, text, ar = send('prime', 'rej.example')
mt.check(code == 550 and 'rej.example' in text, 'unsigned mail from the p=reject domain: 550 (%s %s)' % (code, text))
code, text, ar = send('closed', 'rej.example', k2048, 'closed')
mt.check(code == 451 and text.startswith('451 4.4.3'),
         'the key truncated, TCP closed without an answer, p=reject: 451 4.4.3, not delivered unsigned (%s %s)'
         % (code, text))
mt.check(mx.wait_log(r'event=senderauth .*from_domain=rej\.example .*dkim=temperror:rej\.example .*dmarc=temperror', 5),
         'logged as dkim=temperror, dmarc=temperror (not permerror / fail)')
code, text, ar = send('stall', 'rej.example', k2048, 'stall')
mt.check(code == 451 and text.startswith('451 4.4.3'),
         'the key truncated, TCP never answers: 451 4.4.3 (%s %s)' % (code, text))
code, text, ar = send('dmtrunc', 'trunc.example')
mt.check(code == 250 and 'dmarc=temperror' in ar,
         'the DMARC record truncated, TCP closed: dmarc=temperror, not none (%s %s)' % (code, ar or text))
code, text, ar = send('spftrunc', 'other.example', sender='x@spftrunc.example')
mt.check(code == 250 and 'spf=temperror smtp.mailfrom=spftrunc.example' in ar,
         'the SPF record truncated, TCP closed: spf=temperror, not none (%s %s)' % (code, ar or text))
mt.finish()
