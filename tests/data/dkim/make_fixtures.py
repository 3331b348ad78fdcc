#!/usr/bin/python3
"""Makes the DKIM / ARC fixtures of tests/unit/test_dkim.c and test_arc.c with dkimpy (a real,
independent signer). Run from this folder with Debian's python3 (python3-dkim, python3-nacl, python3-authres):

    /usr/bin/python3 make_fixtures.py

Keys are test-only. Every message is written with CRLF line ends, as mxgate holds it."""
import base64, subprocess, time
import dkim
import nacl.signing, nacl.encoding
from dkim import CanonicalizationPolicy, HASH_ALGORITHMS
from dkim.crypto import parse_pem_private_key

D = b'example.org'

def rsa_key(name, bits=2048):
    subprocess.run(['openssl', 'genrsa', '-traditional', '-out', name + '.private', str(bits)],
                   check=True, capture_output=True)
    der = subprocess.run(['openssl', 'rsa', '-in', name + '.private', '-pubout', '-outform', 'DER'],
                         check=True, capture_output=True).stdout
    open(name + '.txt', 'w').write('v=DKIM1; k=rsa; p=' + base64.b64encode(der).decode() + '\n')
    return open(name + '.private', 'rb').read()

def ed_key(name):
    sk = nacl.signing.SigningKey.generate()
    priv = sk.encode(encoder=nacl.encoding.Base64Encoder)
    pub = sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    open(name + '.private', 'wb').write(priv + b'\n')
    open(name + '.txt', 'w').write('v=DKIM1; k=ed25519; p=' + pub.decode() + '\n')
    return priv

BASE = (b'Received: from client.example (client.example [198.18.0.2])\r\n'
        b'\tby relay.example.net with ESMTP; Mon, 1 Jan 2024 10:00:00 +0000\r\n'
        b'From: Alice Example <alice@example.org>\r\n'
        b'To: bob@example.net\r\n'
        b'Subject:  A  test\t message with   spaces \r\n'
        b'  and a folded line\r\n'
        b'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n'
        b'Message-ID: <fixture-1@example.org>\r\n'
        b'MIME-Version: 1.0\r\n'
        b'Content-Type: text/plain; charset=us-ascii\r\n'
        b'\r\n'
        b'Hello Bob,  \r\n'
        b'\r\n'
        b'this body has   runs of spaces, a tab\there, and trailing blank lines.\r\n'
        b'.a line that started with a dot\r\n'
        b'\r\n'
        b'\r\n')

HEADERS = [b'from', b'to', b'subject', b'date', b'message-id', b'mime-version', b'content-type']

def write(name, msg):
    open(name, 'wb').write(msg)

def sign_with_expiry(msg, selector, priv, t, x):
    """dkimpy's sign() has no x=: the same steps with t= and x= fixed."""
    d = dkim.DKIM(msg)
    pk = parse_pem_private_key(priv)
    canon = CanonicalizationPolicy.from_c_value(b'relaxed/relaxed')
    body = canon.canonicalize_body(d.body)
    d.hasher = HASH_ALGORITHMS[b'rsa-sha256']
    h = d.hasher(); h.update(body)
    d.include_headers = tuple(HEADERS)
    fields = [(b'v', b'1'), (b'a', b'rsa-sha256'), (b'c', canon.to_c_value()), (b'd', D),
              (b's', selector), (b't', str(t).encode()), (b'x', str(x).encode()),
              (b'h', b':'.join(HEADERS)), (b'bh', base64.b64encode(h.digest())), (b'b', b'0' * 60)]
    return b'DKIM-Signature: ' + d.gen_header(fields, tuple(HEADERS), canon, b'DKIM-Signature', pk)

rsa = rsa_key('rsa')
rsa2 = rsa_key('rsa2')
rsa_key('small', 512)
ed = ed_key('ed')

write('base.eml', BASE)
write('rsa-relaxed.eml', dkim.sign(BASE, b'rsa', D, rsa, canonicalize=(b'relaxed', b'relaxed'),
                                   include_headers=HEADERS) + BASE)
write('rsa-simple.eml', dkim.sign(BASE, b'rsa', D, rsa, canonicalize=(b'simple', b'simple'),
                                  include_headers=HEADERS) + BASE)
write('ed25519.eml', dkim.sign(BASE, b'ed', D, ed, signature_algorithm=b'ed25519-sha256',
                               canonicalize=(b'relaxed', b'relaxed'), include_headers=HEADERS) + BASE)
write('length.eml', dkim.sign(BASE, b'rsa', D, rsa, canonicalize=(b'relaxed', b'simple'),
                              include_headers=HEADERS, length=True) + BASE)
# two signatures: a good one, and one whose selector "bad" publishes rsa2's key (fails)
good = dkim.sign(BASE, b'rsa', D, rsa, include_headers=HEADERS)
bad = dkim.sign(BASE, b'bad', D, rsa, include_headers=HEADERS)
write('two.eml', bad + good + BASE)
write('expiring.eml', sign_with_expiry(BASE, b'rsa', rsa, 1700000000, 1700003600) + BASE)

# ARC: instance 1 at a list server, instance 2 at a forwarder
m = dkim.sign(BASE, b'rsa', D, rsa, include_headers=HEADERS) + BASE
m = b'Authentication-Results: lists.example.com; dkim=pass header.d=example.org\r\n' + m
s = dkim.arc_sign(m, b'rsa', b'example.com', rsa, b'lists.example.com', timestamp=1700000000)
m = b''.join(s) + m
m = b'Authentication-Results: fwd.example.net; arc=pass\r\n' + m
s = dkim.arc_sign(m, b'rsa2', b'example.net', rsa2, b'fwd.example.net', timestamp=1700000100)
m = b''.join(s) + m
write('arc2.eml', m)
print('ok', int(time.time()))
