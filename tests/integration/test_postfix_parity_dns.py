#!/usr/bin/env python3
"""Reply-by-reply parity with a real Postfix smtpd for the checks that need DNS: Postfix's
reject_unknown_sender_domain against mxgate's sender_domain, and reject_unknown_client_hostname
against helo_checks.fcrdns (action: tempfail, as Postfix's unknown_client_reject_code 450;
on_error: tempfail, as Postfix defers a client whose name lookup failed).

Postfix's smtpd asks the system resolver (/etc/resolv.conf, port 53) and judges the address
the client connected from, so the test runs in network and mount namespaces of its own
(`unshare -n -m`, as root): loopback up with the clients' addresses 198.18.0.7-10 on it, a
resolv.conf naming 127.0.0.1 bind-mounted on /etc/resolv.conf, tests/integration/dns_peer.py
on 127.0.0.1:53. The clients connect from those addresses to both servers, so each judges
the real client, no PROXY header or XCLIENT in between.

The table is docs/postfix-parity.md's "DNS" section (the rows named dns-*), checked as
test_postfix_parity.py checks its own; MX_PARITY_PRINT=1 prints the rows."""
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))

if os.environ.get('MX_PARITY_NETNS') != '1':
    # into namespaces of our own before anything starts (mxtest's temporary directory too)
    if os.geteuid() == 0 and shutil.which('unshare') and shutil.which('ip'):
        os.environ['MX_PARITY_NETNS'] = '1'
        os.execvp('unshare', ['unshare', '-n', '-m', '--', sys.executable, os.path.abspath(__file__)])

sys.path.insert(0, HERE)
import subprocess  # noqa: E402

import mxtest as mt  # noqa: E402
from parity_dialogue import dialogue, judge, judge_rows, load_table, run  # noqa: E402

if os.environ.get('MX_PARITY_NETNS') != '1':
    mt.skip('needs root, unshare and ip (network and mount namespaces of its own)')
mt.need('postfix', 'smtp-sink')
mt.need_postfix()
if subprocess.run(['/usr/bin/python3', '-c', 'import dns.message'], capture_output=True).returncode != 0:
    mt.skip('python3-dnspython not installed')

CLIENTS = ['198.18.0.7', '198.18.0.8', '198.18.0.9', '198.18.0.10']
for argv in [['ip', 'link', 'set', 'lo', 'up']] + [['ip', 'addr', 'add', ip + '/32', 'dev', 'lo'] for ip in CLIENTS]:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        mt.fail('%s: %s' % (' '.join(argv), r.stderr))
resolv = os.path.join(mt.TMP, 'resolv.conf')
with open(resolv, 'w') as f:
    f.write('nameserver 127.0.0.1\noptions timeout:1 attempts:1\n')
r = subprocess.run(['mount', '--bind', resolv, '/etc/resolv.conf'], capture_output=True, text=True)
if r.returncode != 0:
    mt.fail('mount --bind %s /etc/resolv.conf: %s' % (resolv, r.stderr))

ZONE = {
    'mx.example.org': [{'mx': 'mail.example.org'}], 'mail.example.org': [{'a': '198.51.100.1'}],
    'a-only.example.org': [{'a': '198.51.100.2'}],
    'nodata.example.org': [{'txt': ['no mail here']}],
    'null-mx.example.org': [{'mx': '0 .'}],
    'servfail.example.org': 'servfail',
    'silent.example.org': 'drop',
    # clients: .7 forward-confirmed, .8 no PTR, .9 a PTR whose name points elsewhere, .10 SERVFAIL
    '7.0.18.198.in-addr.arpa': [{'ptr': 'mail.client.test'}], 'mail.client.test': [{'a': '198.18.0.7'}],
    '9.0.18.198.in-addr.arpa': [{'ptr': 'liar.client.test'}], 'liar.client.test': [{'a': '192.0.2.1'}],
    '10.0.18.198.in-addr.arpa': 'servfail',
}
zfile = os.path.join(mt.TMP, 'zone.json')
with open(zfile, 'w') as f:
    import json
    json.dump(ZONE, f)
dns = mt.spawn(['/usr/bin/python3', os.path.join(HERE, 'dns_peer.py'), zfile, '53'], 'dns')
if not mt.wait_log_of('dns', r'(?m)^ready$', 15, dns):
    mt.fail('dns_peer.py did not start on 127.0.0.1:53:\n' + mt.log_of('dns')[-1000:])

pf_port = mt.hold_port().port
mt.postfix_instance('postfix', pf_port, '''relay_domains = example.test
mynetworks = 192.0.2.255/32
default_transport = discard
relay_transport = discard
smtpd_client_restrictions = reject_unknown_client_hostname
smtpd_sender_restrictions = reject_unknown_sender_domain
smtpd_relay_restrictions = reject_unauth_destination
smtpd_error_sleep_time = 0
in_flow_delay = 0
''', hostname='pf.example.test')
# mxtest binds to 127.0.0.1; the clients connect there from their own addresses

sink = mt.Sink()
mx = mt.Mxgate(mt.config([sink.url], hostname='mx.example.test', workers=1,
                         accept_domains=['example.test'],
                         dns={'resolvers': ['127.0.0.1:53'], 'timeout': '1s', 'tries': 1},
                         sender_domain={'enabled': True},
                         helo_checks={'enabled': True, 'fcrdns': {'action': 'tempfail', 'on_error': 'tempfail'},
                                      'syntax': {'enabled': False}, 'not_fqdn': {'enabled': False},
                                      'claims_us': {'enabled': False}, 'literal_mismatch': {'enabled': False}}),
               name='mx-parity-dns')

R = 'RCPT TO:<u@example.test>'
CASES = [   # id, client address, steps (after EHLO)
    ('dns-sender-mx', '198.18.0.7', ['MAIL FROM:<a@mx.example.org>', R]),
    ('dns-sender-a-only', '198.18.0.7', ['MAIL FROM:<a@a-only.example.org>', R]),
    ('dns-sender-nxdomain', '198.18.0.7', ['MAIL FROM:<a@nx.example.org>', R]),
    ('dns-sender-nodata', '198.18.0.7', ['MAIL FROM:<a@nodata.example.org>', R]),
    ('dns-sender-null-mx', '198.18.0.7', ['MAIL FROM:<a@null-mx.example.org>', R]),
    ('dns-sender-servfail', '198.18.0.7', ['MAIL FROM:<a@servfail.example.org>', R]),
    ('dns-sender-timeout', '198.18.0.7', ['MAIL FROM:<a@silent.example.org>', R]),
    ('dns-null-sender', '198.18.0.7', ['MAIL FROM:<>', R]),
    ('dns-client-no-ptr', '198.18.0.8', ['MAIL FROM:<a@mx.example.org>', R]),
    ('dns-client-ptr-mismatch', '198.18.0.9', ['MAIL FROM:<a@mx.example.org>', R]),
    ('dns-client-ptr-servfail', '198.18.0.10', ['MAIL FROM:<a@mx.example.org>', R]),
    ('dns-client-no-ptr-null-sender', '198.18.0.8', ['MAIL FROM:<>', R]),
]

table = {k: v for k, v in load_table().items() if k.startswith('dns-')}
differ = 0
for cid, src, steps in CASES:
    pf = run(pf_port, True, steps, source=src)
    mxr = run(mx.port, True, steps, source=src)
    differ += not judge(cid, 'from %s: %s' % (src, dialogue(True, steps)), pf, mxr, table)
judge_rows(table, [c[0] for c in CASES])
mt.say('%d cases, %d differ in class, enhanced code or the session going on' % (len(CASES), differ))
mx.stop()
mt.finish()
