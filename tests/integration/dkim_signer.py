#!/usr/bin/python3
"""Signs or seals a message on stdin with dkimpy (Debian's python3-dkim), for
test_senderauth.py. Runs under /usr/bin/python3 (the module is not in other interpreters).

    dkim_signer.py sign KEY SELECTOR DOMAIN [--alg ed25519-sha256] [--canon relaxed/simple]
                   [--length] [--expire T X] [--headers from,to,subject]
    dkim_signer.py arc KEY SELECTOR DOMAIN SRV_ID [--timestamp N]
    dkim_signer.py verify RECORDS.json - -       (a downstream verifier: prints dkim=pass|fail
                                                  and arc=pass|fail|none, keys from the file)
    dkim_signer.py authres - - -                 (parses each Authentication-Results line on
                                                  stdin with the authres module: one JSON
                                                  line per field, or "error: ...")

sign prints the DKIM-Signature field followed by the message; arc prints the new ARC set
followed by the message (the message must carry an Authentication-Results field of SRV_ID,
which is what a sealer records)."""
import argparse
import base64
import sys

import dkim
from dkim import CanonicalizationPolicy, HASH_ALGORITHMS
from dkim.crypto import parse_pem_private_key

ap = argparse.ArgumentParser()
ap.add_argument('mode', choices=['sign', 'arc', 'verify', 'authres'])
ap.add_argument('key')
ap.add_argument('selector')
ap.add_argument('domain')
ap.add_argument('srv_id', nargs='?')
ap.add_argument('--alg', default='rsa-sha256')
ap.add_argument('--canon', default='relaxed/relaxed')
ap.add_argument('--length', action='store_true')
ap.add_argument('--expire', nargs=2, type=int)
ap.add_argument('--headers', default='from,to,subject,date,message-id')
ap.add_argument('--timestamp', type=int)
a = ap.parse_args()

msg = sys.stdin.buffer.read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
if a.mode == 'verify':
    import json
    records = json.load(open(a.key))

    def dns(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return records.get(n.rstrip('.'), '').encode()
    d = 'pass' if dkim.verify(msg, dnsfunc=dns) else 'fail'
    cv, _, why = dkim.arc_verify(msg, dnsfunc=dns)
    print('dkim=%s arc=%s (%s)' % (d, cv.decode() if isinstance(cv, bytes) else cv, why))
    sys.exit(0)
if a.mode == 'authres':
    import json
    import authres
    for line in msg.decode('utf-8', 'replace').split('\r\n'):
        if not line:
            continue
        try:
            h = authres.AuthenticationResultsHeader.parse('Authentication-Results: ' + line)
            print(json.dumps({'id': str(h.authserv_id),
                              'results': [[str(r.method), str(r.result),
                                           sorted('%s.%s=%s' % (p.type, p.name, p.value) for p in r.properties)]
                                          for r in h.results]}))
        except Exception as e:  # noqa: BLE001 (any parse failure is the answer)
            print('error: %s: %s' % (type(e).__name__, e))
    sys.exit(0)
key = open(a.key, 'rb').read()
sel, dom = a.selector.encode(), a.domain.encode()
headers = [h.encode() for h in a.headers.split(',')]

if a.mode == 'arc':
    out = b''.join(dkim.arc_sign(msg, sel, dom, key, a.srv_id.encode(), timestamp=a.timestamp)) + msg
elif a.expire:
    # dkimpy's sign() has no x=: the same steps with t= and x= given
    d = dkim.DKIM(msg)
    pk = parse_pem_private_key(key)
    canon = CanonicalizationPolicy.from_c_value(a.canon.encode())
    h = HASH_ALGORITHMS[b'rsa-sha256']()
    h.update(canon.canonicalize_body(d.body))
    d.hasher = HASH_ALGORITHMS[b'rsa-sha256']
    d.include_headers = tuple(headers)
    fields = [(b'v', b'1'), (b'a', b'rsa-sha256'), (b'c', canon.to_c_value()), (b'd', dom),
              (b's', sel), (b't', str(a.expire[0]).encode()), (b'x', str(a.expire[1]).encode()),
              (b'h', b':'.join(headers)), (b'bh', base64.b64encode(h.digest())), (b'b', b'0' * 60)]
    out = b'DKIM-Signature: ' + d.gen_header(fields, tuple(headers), canon, b'DKIM-Signature', pk) + msg
else:
    hc, bc = a.canon.split('/')
    out = dkim.sign(msg, sel, dom, key, canonicalize=(hc.encode(), bc.encode()),
                    signature_algorithm=a.alg.encode(), include_headers=headers,
                    length=a.length) + msg
sys.stdout.buffer.write(out)
