#!/usr/bin/env python3
"""The configurations the documentation shows pass `mxgate -t`, as an operator copying them
would run them (README "In front of real mail servers": "Check it, then run it").

- README.md's full example (and it with the "Operating it" block added), every example in
  examples/, and the package's default /etc/mxgate/mxgate.yaml;
- every ```yaml block of README.md and docs/*.md that is an mxgate config (not Prometheus
  rules), completed with a listen address and a backend when it is a fragment.

Only the files a block names are supplied: a test certificate for /etc/mxgate/cert.pem and
key.pem, an RSA key for the ARC sealing key /etc/mxgate/arc2026.pem, the built example plugin for /usr/lib/mxgate/plugins/*.so, an empty domains file, a relay_networks CIDR file, a
connection_limit_exceptions CIDR file,
the repository's rules for /usr/share/mxgate/rules, 127.0.0.1 for the Exchange Online MX name
(a backend's name is resolved by `-t`), and the user running the test for the
user and group "mxgate" when the package has not created them; relative paths resolve from the
repository root. A key renamed in the code but not in the docs fails here."""
import glob
import grp
import os
import pwd
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

SRC = mt.SRC
crt, key = mt.cert()
plugin = os.path.join(os.path.dirname(mt.BIN), 'example_plugin.so')
domains = os.path.join(mt.TMP, 'domains')
open(domains, 'w').write('example.org\n')
arc_key, _ = mt.dkim_rsa_key('arc2026')   # docs/senderauth.md's ARC sealing key
local_rules = os.path.join(mt.TMP, 'local.rules')   # docs/plugins.md: an empty rules file
open(local_rules, 'w').close()
pg_clients = os.path.join(mt.TMP, 'whitelist_clients')   # docs/filters-limits.md, postgrey's file
open(pg_clients, 'w').write('# postgrey\ngoogle.com\n/^mail\\d+\\.example\\.com$/\n195.235.39\n')
relay_nets = os.path.join(mt.TMP, 'relay_networks')   # docs/smtp-edge.md: a CIDR list file
open(relay_nets, 'w').write('# the office\n192.0.2.0/24\n2001:db8::/32\n')
nat_nets = os.path.join(mt.TMP, 'campus-nat.cidr')   # docs/filters-limits.md: connection_limit_exceptions
open(nat_nets, 'w').write('# the campus NAT\n192.0.2.0/28\n')
SUBST = [
    ('/etc/mxgate/cert.pem', crt), ('/etc/mxgate/key.pem', key),
    ('/etc/mxgate/domains', domains), ('/etc/mxgate/arc2026.pem', arc_key),
    ('/etc/mxgate/internal-ca.pem', crt),     # docs/operations.md's backends.tls_ca_file
    ('/etc/mxgate/local.rules', local_rules),
    ('/etc/postgrey/whitelist_clients', pg_clients),
    ('/etc/mxgate/relay_networks', relay_nets),
    ('/etc/mxgate/campus-nat.cidr', nat_nets),
    ('/usr/share/mxgate/rules/', os.path.join(SRC, 'rules') + '/'),
    # docs/operations.md's Exchange Online MX name: -t resolves a backend's name, offline here
    ('contoso-com.mail.protection.outlook.com', '127.0.0.1'),
    # docs/operations.md's containers example: a Kubernetes Service's name
    ('postfix.mail.svc.cluster.local', '127.0.0.1'),
]
BASE = {'listen': 'listen: [127.0.0.1:2525]\n',
        'backends': 'backends: { servers: ["smtp://127.0.0.1:2526"] }\n'}
NOT_MXGATE = {'scrape_configs'}        # Prometheus' own config


def prepare(text):
    for a, b in SUBST:
        text = text.replace(a, b)
    # the package creates the system user "mxgate"; a machine without the package has none
    # (`-t` rightly refuses an unknown user): the user running the test stands in for it
    try:
        pwd.getpwnam('mxgate')
    except KeyError:
        me, mygroup = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
        text = re.sub(r'^(\s*(?:user|owner):\s*)mxgate\b', r'\g<1>' + me, text, flags=re.M)
        text = re.sub(r'^(\s*group:\s*)mxgate\b', r'\g<1>' + mygroup, text, flags=re.M)
    return re.sub(r'"/usr/lib/mxgate/plugins/[\w.-]+\.so"', '"%s"' % plugin, text)


def check(label, text):
    path = os.path.join(mt.TMP, re.sub(r'\W+', '_', label) + '.yaml')
    open(path, 'w').write(text)
    r = mt.run_mxgate('-t', '-c', path)
    errs = [line for line in (r.stdout + r.stderr).splitlines() if ': warning: ' not in line and not line.endswith(': ok')]
    mt.check(r.returncode == 0, '%s passes mxgate -t (%s)' % (label, ' | '.join(errs)[:300]))


os.chdir(SRC)
readme = open(os.path.join(SRC, 'README.md')).read()
blocks = re.findall(r'```yaml\n(.*?)```', readme, re.S)
full = [b for b in blocks if re.search(r'^listen:', b, re.M) and re.search(r'^backends:', b, re.M)]
mt.check(len(full) == 1, 'README.md shows one full configuration (%d)' % len(full))
if full:
    check('README full example', prepare(full[0]))
    ops = [b for b in blocks if re.search(r'^control:', b, re.M)]
    if ops:
        check('README full example with "Operating it"', prepare(full[0] + ops[0]))
for f in sorted(glob.glob(os.path.join(SRC, 'examples', '*.yaml'))) + [os.path.join(SRC, 'debian', 'mxgate.yaml')]:
    check(os.path.relpath(f, SRC), prepare(open(f).read()))

n = 0
for f in [os.path.join(SRC, 'README.md')] + sorted(glob.glob(os.path.join(SRC, 'docs', '*.md'))):
    for i, b in enumerate(re.findall(r'```yaml\n(.*?)```', open(f).read(), re.S)):
        top = set(re.findall(r'^([A-Za-z_]\w*):', b, re.M))
        if not top or top & NOT_MXGATE or re.match(r'\s*- ', b):
            continue
        text = prepare(b) + ''.join(v for k, v in BASE.items() if k not in top)
        check('%s yaml block %d' % (os.path.relpath(f, SRC), i + 1), text)
        n += 1
mt.check(n >= 15, 'the yaml blocks of the docs were found (%d)' % n)
mt.finish()
