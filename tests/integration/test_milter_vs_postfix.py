#!/usr/bin/env python3
"""The same milters behind mxgate and behind a private Postfix instance (Debian's 3.7), the
same messages through both, the results compared: what the client is answered, what the
filter is sent, what reaches the backend.

- SMFIR_SKIP answering the first header, the first recipient and end of header: both skip
  the other headers and recipients, and both still send the body.
- Header edits: SMFIR_INSHEADER at index 0 (above the MTA's own Received) and at 1000 (past
  the end: appended), SMFIR_CHGHEADER index 2 of a header present twice (the second): the
  same header block through both.
- A filter's macro lists in its option negotiation without SMFIF_SETSYMLIST among its
  actions: Postfix (milter8.c reads the lists whatever the actions) and Sendmail
  (milter_getsymlist) honour them, and so does mxgate.
- A filter that answers MAIL although it negotiated SMFIP_NR_MAIL, its stray SMFIR_REJECT
  sent with RCPT's continue: Postfix takes the reject as RCPT's verdict (550); mxgate calls
  it the filter's error (451, on_error tempfail), as docs/plugins.md says.
- opendmarc 1.4.2 (RejectFailures true) with the From domain's DMARC record p=reject, and
  p=none, through a DNS server of the test's own: both MTAs refuse the first with the
  filter's words and deliver the second with opendmarc's Authentication-Results at the top
  of the header block.
- opendkim 2.11 verifying (Mode v) a message signed for a key in that DNS: both deliver it
  with opendkim's Authentication-Results dkim=pass at the top.

opendmarc asks the system resolver: it runs in a mount namespace of its own (unshare -m,
root) whose /etc/resolv.conf names the test's DNS server on port 53 of a loopback address
of its own; Debian's opendkim resolves with libunbound, told that server by Nameservers."""
import json
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need('unshare', 'mount')
t.need_postfix()
if os.geteuid() != 0:
    t.skip('needs root (a private /etc/resolv.conf for the filters, unshare -m)')

ADDHDRS, CHGHDRS = 0x1, 0x10
NR_MAIL = 0x4000

be = t.Backend()


def postfix(name, milter_port):
    port = t.free_port()
    t.postfix_instance(name, port, '''relay_domains = example.test
relay_transport = smtp:[127.0.0.1]:%d
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_milters = inet:127.0.0.1:%d
milter_default_action = tempfail
smtp_tls_security_level = none
''' % (be.port, milter_port), hostname='%s.example.test' % name)
    return port


def mxgate(name, milter_port):
    return t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
        {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % milter_port, 'on_error': 'tempfail',
         'timeout': '10s'}]), name=name)


def send(port, tag, body='x\r\n', headers=(), data=None):
    return t.send_mail(port, 'a@example.org', ['b@example.test'], data or t.message(tag, body, headers=headers),
                       ehlo='client.example.org', timeout=30)


def delivered(tag):
    """The header block of the message tag as the backend got it (Postfix queues: waited for)."""
    t.wait_for(lambda: be.find('Message-ID: <%s@' % tag), 30)
    got = be.find('Message-ID: <%s@' % tag)
    return got[0]['data'].split(b'\r\n\r\n', 1)[0].split(b'\r\n') if got else []


def neg_milter(name, proto, *args, actions=ADDHDRS):
    return t.neg_milter('vs-' + name, actions, proto, *args)


def commands_sent(log):
    """The commands of the connection in a neg_milter log that was sent a MAIL."""
    conns = {}
    with open(log) as f:
        for line in f:
            n, rest = line.rstrip('\n').split(' ', 1)
            conns.setdefault(n, []).append(rest)
    return next((c for c in conns.values() if 'M' in c), [])


def macros_sent(log):
    """{stage letter: [names]} of the connection in a neg_milter log that was sent a MAIL
    (start_peer's probe sends nothing; Postfix's smtpd opened one more that got only the
    connect)."""
    return {x[2]: x[4:].split(',') for x in commands_sent(log) if x.startswith('D ')}


# --- macro lists without SMFIF_SETSYMLIST
lists = ('0={client_addr}', '3={rcpt_addr} {mail_addr}', 'mods=h')
got = {}
for mta in ('postfix', 'mxgate'):
    mport, mlog = neg_milter('lists-' + mta, 0, *lists)
    if mta == 'postfix':
        code, text = send(postfix('pf-lists', mport), 'vs-lists-pf')
    else:
        mx = mxgate('mx-lists', mport)
        code, text = send(mx.port, 'vs-lists-mx')
        mx.stop()
    got[mta] = (code, macros_sent(mlog))
t.say('macros sent, lists without SMFIF_SETSYMLIST: %s' % got)
for mta, (code, m) in got.items():
    t.check(code == 250 and m.get('C') == ['{client_addr}'] and m.get('R') == ['{rcpt_addr}', '{mail_addr}'],
            '%s: a filter\'s lists honoured without SMFIF_SETSYMLIST (%s %s)' % (mta, code, m))

# --- a stray reply to MAIL (SMFIP_NR_MAIL) sent with RCPT's
got = {}
for mta in ('postfix', 'mxgate'):
    mport, mlog = neg_milter('stray-' + mta, NR_MAIL, 'stray=M', 'mods=h')
    if mta == 'postfix':
        r = send(postfix('pf-stray', mport), 'vs-stray-pf')
    else:
        mx = mxgate('mx-stray', mport)
        r = send(mx.port, 'vs-stray-mx')
        mx.stop()
    got[mta] = (r[0], r.stage, r[1])
t.say('stray reply to MAIL: %s' % got)
t.check(got['postfix'][:2] == (550, 'rcpt'), 'Postfix takes the stray reject as RCPT\'s verdict: %s' % (got['postfix'],))
t.check(got['mxgate'][:2] == (451, 'rcpt'), 'mxgate: the filter\'s error, on_error tempfail: %s' % (got['mxgate'],))

# --- SMFIR_SKIP answering the first header, the first recipient and end of header
got = {}
for mta in ('postfix', 'mxgate'):
    mport, mlog = neg_milter('skip-' + mta, 0x400, 'skip=LRN', 'mods=h')
    rcpts = ['b@example.test', 'c@example.test', 'd@example.test']
    if mta == 'postfix':
        port = postfix('pf-skip', mport)
    else:
        mx = mxgate('mx-skip', mport)
        port = mx.port
    r = t.send_mail(port, 'a@example.org', rcpts, t.message('vs-skip-' + mta), ehlo='client.example.org', timeout=30)
    if mta == 'mxgate':
        mx.stop()
    seq = [x for x in commands_sent(mlog) if not x.startswith('D ')]
    got[mta] = (r[0], seq.count('L'), seq.count('R'), seq.count('B'))
t.say('SMFIR_SKIP at a header, a recipient, end of header (code, headers, recipients, body chunks sent): %s' % got)
t.check(got['postfix'] == got['mxgate'] == (250, 1, 1, 1), 'the same steps skipped: %s' % got)

# --- header edits: insert at index 0 and past the end, change the second of two X-Dup
got = {}
for mta in ('postfix', 'mxgate'):
    mport, mlog = neg_milter('hdr-' + mta, 0, 'mods=i,I,M', actions=ADDHDRS | CHGHDRS)
    tag = 'vs-hdr-' + mta
    msg = t.message(tag, headers=('X-Dup: one', 'X-Dup: two'))
    if mta == 'postfix':
        r = send(postfix('pf-hdr', mport), tag, data=msg)
    else:
        mx = mxgate('mx-hdr', mport)
        r = send(mx.port, tag, data=msg)
        mx.stop()
    h = [x.decode('latin-1') for x in delivered(tag)]
    got[mta] = (r[0], h[0] if h else None, h[1].split(':')[0] if len(h) > 1 else None, h[-1] if h else None,
                [x for x in h if x.startswith('X-Dup')])
t.say('header edits (code, first, second, last, X-Dup): %s' % got)
t.check(got['postfix'] == got['mxgate'] == (250, 'X-Neg-Ins: inserted', 'Received', 'X-Neg-End: appended',
                                            ['X-Dup: one', 'X-Dup: second changed']),
        'insheader 0 above the MTA\'s Received, past the end appended, chgheader 2 the second: the same')

# --- real filters: opendmarc and opendkim (verifying), with the test's DNS on port 53
key_path, key_record = t.dkim_rsa_key('vs', 1024)
dns_addr = '127.%d.%d.%d' % (random.randint(64, 250), random.randint(1, 250), random.randint(2, 250))
zone = {'_dmarc.example.org': [{'txt': ['v=DMARC1; p=reject']}],
        '_dmarc.example.net': [{'txt': ['v=DMARC1; p=none']}],
        'vs._domainkey.example.com': [{'txt': t.txt_strings(key_record)}]}
zfile = os.path.join(t.TMP, 'vs-zone.json')
with open(zfile, 'w') as f:
    json.dump(zone, f)
dns = t.spawn(['/usr/bin/python3', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dns_peer.py'),
               zfile, '53', dns_addr], 'vs-dns')
if not t.wait_log_of('vs-dns', r'(?m)^ready$', 15, dns):
    t.peer_failed('vs-dns', 'dns_peer.py on %s:53 did not start' % dns_addr)
resolv = os.path.join(t.TMP, 'vs-resolv.conf')
with open(resolv, 'w') as f:
    f.write('nameserver %s\noptions timeout:2 attempts:2\n' % dns_addr)


def with_resolv(argv):
    return ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv] + argv


def filter_conf(kind, port, lines):
    """TMP/KIND-PORT/KIND.conf holding lines, each formatted with port, d (the directory)
    and hosts: a host list of 192.0.2.1 only (the filters' default, 127.0.0.1, is where our
    clients connect from: opendmarc ignores it, opendkim signs its mail instead of verifying)."""
    d = os.path.join(t.TMP, '%s-%d' % (kind, port))
    os.makedirs(d, exist_ok=True)
    hosts = os.path.join(d, 'hosts')
    with open(hosts, 'w') as f:
        f.write('192.0.2.1\n')
    conf = os.path.join(d, kind + '.conf')
    with open(conf, 'w') as f:
        f.write('\n'.join(x.format(port=port, d=d, hosts=hosts) for x in lines) + '\n')
    return conf


def opendmarc():
    t.need('/usr/sbin/opendmarc')
    port = t.hold_port().port
    conf = filter_conf('opendmarc', port, [
        'Socket inet:{port}@127.0.0.1', 'AuthservID dmarc.compare.test', 'RejectFailures true',
        'IgnoreHosts {hosts}', 'PidFile {d}/pid', 'Syslog false', 'SPFIgnoreResults true', 'SPFSelfValidate false'])
    return t.start_peer(with_resolv(['/usr/sbin/opendmarc', '-f', '-c', conf]), 'opendmarc-%d' % port, port), port


def opendkim_verify():
    t.need('/usr/sbin/opendkim')
    port = t.hold_port().port
    conf = filter_conf('opendkim', port, [
        'Syslog no', 'Background no', 'Mode v', 'Socket inet:{port}@127.0.0.1', 'InternalHosts {hosts}',
        'Nameservers ' + dns_addr, 'AuthservID dkim.compare.test', 'PidFile {d}/pid', 'UMask 002'])
    return t.start_peer(['/usr/sbin/opendkim', '-f', '-x', conf], 'opendkim-v-%d' % port, port), port


def top_authres(hdrs):
    """The first header line and the Authentication-Results value (unfolded) of a block."""
    block = b'\r\n'.join(hdrs).replace(b'\r\n\t', b' ').replace(b'\r\n ', b' ').split(b'\r\n')
    ar = [h.decode('latin-1') for h in block if h.lower().startswith(b'authentication-results:')]
    return (block[0].split(b':', 1)[0].decode('latin-1') if block else None), ar


_, dmarc_port = opendmarc()
pf_dmarc = postfix('pf-dmarc', dmarc_port)
mx_dmarc = mxgate('mx-dmarc', dmarc_port)
res = {}
for mta, port in (('postfix', pf_dmarc), ('mxgate', mx_dmarc.port)):
    rej = send(port, 'vs-dmarc-rej-' + mta)
    ok = send(port, 'vs-dmarc-none-' + mta, data=t.message('vs-dmarc-none-' + mta).replace(
        b'From: ', b'From: x@example.net\r\nX-Old-From: ', 1))
    res[mta] = (tuple(rej[:2]), rej.stage, ok[0], top_authres(delivered('vs-dmarc-none-' + mta)))
t.say('opendmarc: %s' % res)
for mta, (rej, stage, okc, (first, ar)) in res.items():
    t.check(rej[0] == 550 and stage == 'eom' and 'DMARC policy' in rej[1],
            '%s + opendmarc, p=reject: refused at end of data with its words (%s)' % (mta, rej))
    t.check(okc == 250 and first == 'Authentication-Results' and any('dmarc=fail (p=none' in a for a in ar),
            '%s + opendmarc, p=none: delivered, its Authentication-Results at the top (%s %s %s)' % (mta, okc, first, ar))
t.check(res['postfix'][0][1] == res['mxgate'][0][1], 'the same reply text: %s / %s' % (res['postfix'][0][1],
                                                                                         res['mxgate'][0][1]))

_, dkim_port = opendkim_verify()
pf_dkim = postfix('pf-dkim', dkim_port)
mx_dkim = mxgate('mx-dkim', dkim_port)
res = {}
for mta, port in (('postfix', pf_dkim), ('mxgate', mx_dkim.port)):
    tag = 'vs-dkim-' + mta
    raw = t.message(tag, 'signed body\r\n').replace(b'From: ', b'From: s@example.com\r\nX-Old-From: ', 1)
    signed = subprocess.run(['/usr/bin/python3', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              'dkim_signer.py'), 'sign', key_path, 'vs', 'example.com'],
                            input=raw, capture_output=True, timeout=30)
    if signed.returncode != 0:
        t.fail('dkim_signer.py: %s' % signed.stderr[-300:])
    r = send(port, tag, data=signed.stdout.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'))
    res[mta] = (r[0], top_authres(delivered(tag)))
t.say('opendkim verifying: %s' % res)
for mta, (code, (first, ar)) in res.items():
    t.check(code == 250 and first == 'Authentication-Results' and any(re.search(r'dkim=pass', a) for a in ar),
            '%s + opendkim Mode v: dkim=pass at the top (%s %s %s)' % (mta, code, first, ar))

for m in (mx_dmarc, mx_dkim):
    t.check(m.alive(), '%s alive' % m.name)
    m.stop()
t.finish()
