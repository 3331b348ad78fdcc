#!/usr/bin/env python3
"""ARC sealing (arc.seal, RFC 8617 5.1) through the real daemon to Postfix's smtp-sink, each
delivered message verified by an independent implementation: dkimpy's arc_verify (Debian's
python3-dkim, through tests/integration/dkim_signer.py verify) with the sealing key served
from the same records mxgate's own verifier got from dnsmasq.

- `mxgate -t` names a sealing key that is unreadable, not RSA (Ed25519), too short (512 bits),
  and sealing without arc.enabled, each with FILE:LINE:COL;
- a DKIM-signed message, no chain: sealed i=1 cv=none, dkimpy: pass;
- a message with a passing chain made by dkimpy's arc_sign (i=1): sealed i=2 cv=pass, dkimpy:
  pass; mxgate's own AAR carries its Authentication-Results (dkim=pass, arc=pass);
- a milter (tests/peers/mx_milter_ops.py) changing the signed Subject, inserting a field at
  the top and replacing the body before the seal: the seal covers the final message, dkimpy:
  pass;
- a broken chain (its AAR changed on the way): sealed i=2 cv=fail over its own set only;
  dkimpy sees the chain end there (cv=fail);
- a chain that already ended with cv=fail: no set added (logged as skipped);
- a 4 MiB message (sealed in the thread pool over a body held on disk), and a message the
  milter sends to the quarantine: both sealed, dkimpy: pass;
- a client hanging up after the final dot of a 10 MiB message: the next one is sealed;
- the relaxed body hash the verifier computed for a c=*/relaxed signature without l= is the
  seal's bh= (body_hash=shared in the log, once per message instead of twice); a simple/simple
  or l= signature, an unsigned message and a body a milter replaced are hashed by the sealer
  (body_hash=computed), and every one of them verifies with dkimpy.
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PY = '/usr/bin/python3'
SIGNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dkim_signer.py')

mt.need('dnsmasq', 'openssl', 'smtp-sink')
if subprocess.run([PY, '-c', 'import dkim, authres'], capture_output=True).returncode != 0:
    mt.skip('python3-dkim / python3-authres not installed')
mt.need_python_milter()

T = mt.TMP


def run(args, data=None):
    r = subprocess.run(args, input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        mt.fail('%s failed: %s' % (args[0], r.stderr.decode(errors='replace')[:300]))
    return r.stdout


records = {}
seal_path, records['arc1._domainkey.seal.example'] = mt.dkim_rsa_key('seal')
dkim_path, records['py._domainkey.example.org'] = mt.dkim_rsa_key('py')
fwd_path, records['fwd._domainkey.fwd.example.net'] = mt.dkim_rsa_key('fwd')
rec_file = os.path.join(T, 'records.json')
json.dump(records, open(rec_file, 'w'))
dns_port = mt.dnsmasq(records, local=['example.org', 'seal.example', 'fwd.example.net']).port

# ---------------------------------------------------------------- config errors (-t)
ed_pem = os.path.join(T, 'ed.pem')
run(['openssl', 'genpkey', '-algorithm', 'ED25519', '-out', ed_pem])
short_pem = os.path.join(T, 'short.pem')
run(['openssl', 'genrsa', '-out', short_pem, '512'])
for what, arc, want in [
        ('unreadable', {'enabled': True, 'seal': {'enabled': True, 'domain': 'seal.example', 'selector': 'arc1',
                                                   'private_key': os.path.join(T, 'missing.pem')}},
         r'arc\.seal\.private_key: cannot read .*missing\.pem: No such file or directory'),
        ('ed25519', {'enabled': True, 'seal': {'enabled': True, 'domain': 'seal.example', 'selector': 'arc1',
                                                'private_key': ed_pem}},
         r'arc\.seal\.private_key: not an RSA key'),
        ('short', {'enabled': True, 'seal': {'enabled': True, 'domain': 'seal.example', 'selector': 'arc1',
                                              'private_key': short_pem}},
         r'arc\.seal\.private_key: RSA key of 512 bits: at least 1024'),
        ('noarc', {'enabled': False, 'seal': {'enabled': True, 'domain': 'seal.example', 'selector': 'arc1',
                                              'private_key': seal_path}},
         r'arc\.enabled: must be true when arc\.seal is enabled'),
        ('nodomain', {'enabled': True, 'seal': {'enabled': True, 'selector': 'arc1', 'private_key': seal_path}},
         r'arc\.seal\.domain: required when sealing is enabled')]:
    path = os.path.join(T, 'bad-%s.yaml' % what)
    open(path, 'w').write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:2525'}], arc=arc)))
    r = mt.run_mxgate('-t', '-c', path)
    out = r.stdout + r.stderr
    mt.check(r.returncode == 1 and re.search(r'bad-%s\.yaml:\d+:\d+: %s' % (what, want), out),
             'mxgate -t: %s key: FILE:LINE:COL and the reason (%s)' % (what, out.strip()[:200]))

# ---------------------------------------------------------------- mxgate -> smtp-sink
ops = mt.milter_ops('seal')
sink = mt.Sink()
qdir = os.path.join(T, 'quarantine')
for sub in ('tmp', 'new', 'cur'):
    os.makedirs(os.path.join(qdir, sub))
cfg = mt.config([sink.url], hostname='mx.seal.example', quarantine='maildir:' + qdir,
                limits={'max_message_size': '20M'},
                dns={'resolvers': ['127.0.0.1:%d' % dns_port], 'timeout': '1s', 'tries': 1},
                dkim={'enabled': True, 'timeout': '3s'},
                arc={'enabled': True, 'seal': {'enabled': True, 'domain': 'seal.example', 'selector': 'arc1',
                                               'private_key': seal_path}},
                plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % ops.port, 'on_error': 'tempfail',
                          'timeout': '10s'}])
rc, out = mt.config_check(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:2525'}],
                                    arc=cfg['arc']), name='seal-ok')
mt.check(rc == 0, 'mxgate -t accepts the sealing config (%s)' % out.strip()[:200])
mx = mt.Mxgate(cfg, name='mx-arcseal')


def base(tag, extra=''):
    return ('From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: arcseal %s\r\n'
            'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n%s'
            '\r\nHello Bob,\r\n\r\nthis is case %s.   With  spaces.\r\n' % (tag, tag, extra, tag)).encode()


def signed(tag, extra='', canon='relaxed/relaxed'):
    return run([PY, SIGNER, 'sign', dkim_path, 'py', 'example.org', '--canon', canon], base(tag, extra))


def upstream_chain(tag, extra=''):
    """A forwarder's ARC set i=1 (dkimpy arc_sign) over a DKIM-signed message."""
    m = b'Authentication-Results: fwd.example.net; dkim=pass header.d=example.org\r\n' + signed(tag, extra)
    return run([PY, SIGNER, 'arc', fwd_path, 'fwd', 'fwd.example.net', 'fwd.example.net'], m)


def deliver(tag, data):
    global last_pos
    last_pos = len(mx.log())
    r = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], data, timeout=30)
    mt.check(r.code == 250, '%s: 250 (%s %s)' % (tag, r.code, r.text))
    got = [m for m in sink.messages() if ('<%s@example.org>' % tag).encode() in m['data']]
    mt.check(len(got) == 1, '%s: delivered once to smtp-sink (%d)' % (tag, len(got)))
    # smtp-sink writes LF line ends: back to the CRLF form the message travelled in
    return got[0]['data'].replace(b'\r\n', b'\n').replace(b'\n', b'\r\n') if got else b''


def fields(msg, name):
    head = msg.split(b'\r\n\r\n', 1)[0].replace(b'\r\n ', b' ').replace(b'\r\n\t', b' ')
    return [f.decode('latin-1') for f in head.split(b'\r\n') if f.lower().startswith(name.lower().encode() + b':')]


def dkimpy(msg):
    return run([PY, SIGNER, 'verify', rec_file, '-', '-'], msg).decode().strip()


# 1. no chain: i=1 cv=none
m = deliver('first', signed('first'))
seals = fields(m, 'ARC-Seal')
mt.check(m.startswith(b'ARC-Seal: i=1; a=rsa-sha256;') and len(seals) == 1 and 'cv=none' in seals[0]
         and 'd=seal.example; s=arc1;' in seals[0], 'i=1: the ARC set is on top, cv=none (%s)' % seals)
aar = fields(m, 'ARC-Authentication-Results')
mt.check(len(aar) == 1 and re.match(r'ARC-Authentication-Results: i=1; mx\.seal\.example; dkim=pass .*arc=none', aar[0]),
         'i=1: the AAR carries mxgate\'s results (%s)' % aar)
v = dkimpy(m)
mt.check(v.startswith('dkim=pass arc=pass'), 'i=1: dkimpy verifies the seal and the DKIM signature (%s)' % v)
mt.check(mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none body_hash=shared', start=last_pos),
         'i=1: logged; the relaxed body hash the verifier computed for the signature went into bh= '
         '(not computed again)')

# 1b. a simple/simple signature: the verifier hashed the body in simple form only, the
# sealer computes the relaxed hash itself
m = deliver('simple', signed('simple', canon='simple/simple'))
v = dkimpy(m)
mt.check(v.startswith('dkim=pass arc=pass') and
         mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none body_hash=computed', start=last_pos),
         'simple/simple: the sealer hashes the body itself (body_hash=computed), dkimpy: pass (%s)' % v)
# 1c. unsigned: nothing hashed by the verifier
m = deliver('unsigned', base('unsigned'))
v = dkimpy(m)
mt.check('arc=pass' in v and
         mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none body_hash=computed', start=last_pos),
         'unsigned: body_hash=computed, dkimpy: arc=pass (%s)' % v)
# 1d. a signature with l= (the verifier hashed a prefix): not shared
m = deliver('length', run([PY, SIGNER, 'sign', dkim_path, 'py', 'example.org', '--length'], base('length')))
v = dkimpy(m)
mt.check(v.startswith('dkim=pass arc=pass') and
         mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none body_hash=computed', start=last_pos),
         'l=: body_hash=computed, dkimpy: pass (%s)' % v)

# 2. a passing chain: i=2 cv=pass
m = deliver('second', upstream_chain('second'))
seals = fields(m, 'ARC-Seal')
mt.check(len(seals) == 2 and 'i=2' in seals[0] and 'cv=pass' in seals[0], 'i=2: cv=pass on top (%s)' % seals[:1])
aar = fields(m, 'ARC-Authentication-Results')
mt.check(any(re.match(r'ARC-Authentication-Results: i=2; mx\.seal\.example; .*arc=pass \(i=1, sealed by fwd\.example\.net\)', a)
             for a in aar), 'i=2: the AAR records the chain mxgate validated (%s)' % aar[:1])
v = dkimpy(m)
mt.check(v.startswith('dkim=pass arc=pass'), 'i=2: dkimpy verifies the whole chain (%s)' % v)

# 3. a milter edits the message before the seal (signed Subject changed, a field on top, a
# new body): the seal is over what is sent
m = deliver('milter', upstream_chain('milter', 'X-Ops-seal: chg,Subject,1,changed by the milter ; '
                                               'ins,0,X-Top,from the milter ; body,a new body ; noseen\r\n'))
mt.check(b'Subject: changed by the milter' in m and b'X-Top: from the milter' in m and b'\r\n\r\na new body\r\n' in m,
         'milter: its edits are in the delivered message')
seals = fields(m, 'ARC-Seal')
mt.check(len(seals) == 2 and 'i=2' in seals[0] and 'cv=pass' in seals[0], 'milter: i=2 cv=pass (%s)' % seals[:1])
v = dkimpy(m)
mt.check(v.startswith('dkim=fail arc=pass'),
         'milter: dkimpy verifies the seal over the edited message; the DKIM signature it broke fails (%s)' % v)
mt.check(mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=2 cv=pass body_hash=computed', start=last_pos),
         'milter: the body it replaced is hashed again for the seal (body_hash=computed)')

# 4. a broken chain: i=2 cv=fail over its own set; dkimpy: the chain ended there
bad = upstream_chain('broken').replace(b'i=1; fwd.example.net; dkim=pass', b'i=1; fwd.example.net; dkim=fail')
m = deliver('broken', bad)
seals = fields(m, 'ARC-Seal')
mt.check(len(seals) == 2 and 'i=2' in seals[0] and 'cv=fail' in seals[0], 'broken: i=2 cv=fail (%s)' % seals[:1])
v = dkimpy(m)
mt.check('arc=None' in v and 'ARC-Seal[2] reported failure' in v,
         'broken: dkimpy sees the chain ended by the cv=fail seal, whose AMS verifies (%s)' % v)

# 5. a chain that already ended (cv=fail at its newest seal): no set added
ended = upstream_chain('ended').replace(b'ARC-Seal: i=1; cv=none;', b'ARC-Seal: i=1; cv=fail;')
mt.check(b'cv=fail' in ended, 'ended: the fixture carries cv=fail')
m = deliver('ended', ended)
mt.check(len(fields(m, 'ARC-Seal')) == 1, 'ended: no ARC set added to a chain that ended')
mt.check(mx.wait_log(r'event=arc_seal queue_id=\S+ action=skip reason="the chain already ended with cv=fail"'),
         'ended: the skip is logged')

# 6. a big message (4 MiB body, held on disk): sealed in the thread pool, dkimpy: pass
big = ''.join('line %06d of a big message body, sealed in the thread pool ....\r\n' % i for i in range(60000))
m = deliver('big', signed('big').replace(b'this is case big.', big.encode() + b'this is case big.'))
mt.check(len(m) > 4000000 and m.startswith(b'ARC-Seal: i=1;'), 'big: sealed (%d octets)' % len(m))
v = dkimpy(m)
mt.check('arc=pass' in v, 'big: dkimpy verifies the seal over the 4 MiB body (the DKIM signature predates the added lines) (%s)' % v)
mt.check(mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none body_hash=shared', start=last_pos),
         'big: the verifier\'s hash of the 4 MiB body (held on disk, hashed in slices) is the seal\'s')

# 7. the quarantine gets the sealed message too
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'],
                 signed('quar', 'X-Ops-seal: quarantine,held for review ; noseen\r\n'), timeout=30)
mt.check(r.code == 250, 'quarantine: 250 (%s %s)' % (r.code, r.text))
held = [open(os.path.join(qdir, 'new', f), 'rb').read() for f in os.listdir(os.path.join(qdir, 'new'))]
# the file starts with its envelope (Return-Path, X-Envelope-*, X-Quarantine-Reason (session
# 28), X-Quarantine-ID: session 27,
# amavis's field names, test_quarantine_amavis.py), added above the message as a delivery
# agent's Return-Path is; the message itself starts with the seal
ENVELOPE = (b'return-path:', b'x-envelope-from:', b'x-envelope-to:', b'x-envelope-to-blocked:',
            b'x-quarantine-reason:', b'x-quarantine-id:')
msg = held[0] if len(held) == 1 else b''
while msg.lower().startswith(ENVELOPE):
    end = msg.find(b'\n')
    while end >= 0 and msg[end + 1:end + 2] in (b' ', b'\t'):
        end = msg.find(b'\n', end + 1)
    msg = msg[end + 1:] if end >= 0 else b''
mt.check(len(held) == 1 and held[0].startswith(b'Return-Path: <alice@example.org>')
         and msg.startswith(b'ARC-Seal: i=1;'), 'quarantine: the held message is sealed, below its envelope')
if held:
    v = dkimpy(held[0])
    mt.check('arc=pass' in v, 'quarantine: dkimpy verifies it (%s)' % v)

# 8. the client hangs up right after the final dot of a 10 MiB message: the seal made in the
# thread pool and the session's end meet (the session reads the close once the message is
# dealt with, so the seal completes first here; the pending count keeps the session for the
# work either way), nothing is reported under ASan, and the next message is sealed as usual
huge = ''.join('line %07d of a huge message body, the client hangs up after its final dot ..\r\n' % i
               for i in range(130000))
pos = len(mx.log())
c = mt.Client(mx.port)
c.ehlo('client.test')
mt.check(c.cmd('MAIL FROM:<alice@example.org>')[0] == 250 and c.cmd('RCPT TO:<bob@example.test>')[0] == 250
         and c.cmd('DATA')[0] == 354, 'hangup: the transaction is open')
c.send(mt.stuff(signed('hangup').replace(b'this is case hangup.', huge.encode() + b'this is case hangup.')))
c.close()
mt.check(mx.wait_log(r'event=arc_seal queue_id=\S+ action=sealed i=1 cv=none', timeout=60, start=pos),
         'hangup: the seal was made')
m = deliver('afterhangup', signed('afterhangup'))
mt.check(m.startswith(b'ARC-Seal: i=1;') and dkimpy(m).startswith('dkim=pass arc=pass'),
         'hangup: the next message is sealed and verifies')

mx.stop()
mt.finish()
