#!/usr/bin/env python3
"""docs/config.md, "Value syntax": every example it gives, written into a config as shown
(the backticked text pasted after the key, as an operator copies it), passes mxgate -t:
sizes, durations, rates, CIDRs, bools, backend URLs and listen addresses. Was: `*:25`,
given as a listen address, is a YAML alias when pasted as shown (-t: "invalid alias"); the
text now shows it quoted, as it does the bracketed IPv6 forms."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

doc = open(os.path.join(mt.SRC, 'docs', 'config.md')).read()
syntax = doc.split('## Value syntax', 1)[1].split('## Keys', 1)[0]


def bullet(name):
    m = re.search(r'^- \*\*%s\*\*: (.*)$' % re.escape(name), syntax, re.M)
    mt.check(m is not None, 'docs/config.md gives the %s syntax' % name)
    return m.group(1) if m else ''


def examples(name, skip=()):
    return [e for e in re.findall(r'`([^`]+)`', bullet(name)) if e not in skip]


# where each kind of value goes (a key of that type whose bounds take every example), the
# example replacing VALUE
PLACES = {
    'bool': 'listen: [127.0.0.1:2525]\nbackends: { servers: ["smtp://127.0.0.1:2526"], starttls: VALUE }\n',
    'size': 'listen: [127.0.0.1:2525]\nbackends: { servers: ["smtp://127.0.0.1:2526"] }\nlimits: { memory_threshold: VALUE }\n',
    'duration': 'listen: [127.0.0.1:2525]\nbackends: { servers: ["smtp://127.0.0.1:2526"] }\ndns: { max_ttl: VALUE }\n',
    'rate': 'listen: [127.0.0.1:2525]\nbackends: { servers: ["smtp://127.0.0.1:2526"] }\n'
            'ratelimit: { rules: [{ key: ip, count: messages, limit: VALUE }] }\n',
    'CIDR': 'listen: [127.0.0.1:2525]\nbackends: { servers: ["smtp://127.0.0.1:2526"] }\ntrusted_proxies: [VALUE]\n',
    'backend URL': 'listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - VALUE\n',
    'listen address': 'listen:\n  - address: VALUE\nbackends: { servers: ["smtp://127.0.0.1:2526"] }\n',
}
# not values by themselves: the placeholders and words around the examples
NOT_VALUES = {'K', 'M', 'G', 'T', 'KB', 'KiB', 'COUNT/DURATION', 'smtp://host[:port]',
              'lmtp://host[:port]', '-t', '[', 'lmtp:unix:/path', 'maildir:/path', '::ffff:192.0.2.1', '*:25', '*',
              '#', 'PATH:LINE:COL'}
# a CIDR list's file:PATH item names a file: one the test writes stands in for PATH
cidr_file = os.path.join(mt.TMP, 'cidrs')
open(cidr_file, 'w').write('# comment\n192.0.2.0/24\n\n2001:db8::/32\n')
n = 0
for kind, text in PLACES.items():
    for e in examples(kind, NOT_VALUES):
        for value in e.split('/') if kind == 'bool' else [e]:
            path = os.path.join(mt.TMP, 'v%d.yaml' % n)
            n += 1
            if value == 'file:PATH':
                value = 'file:' + cidr_file
            open(path, 'w').write(text.replace('VALUE', value))
            r = mt.run_mxgate('-t', '-c', path)
            errs = [x for x in (r.stdout + r.stderr).splitlines() if ': warning: ' not in x and not x.endswith(': ok')]
            mt.check(r.returncode == 0, '%s %s, as docs/config.md writes it, passes -t (%s)'
                     % (kind, value, ' | '.join(errs)[:200]))
mt.check(n >= 25, 'the examples of the value syntax were found (%d)' % n)
mt.finish()
