#!/usr/bin/env python3
"""mxgate -t names mxgate's key for a name an operator brings from postgrey, Postfix
(postscreen_*), OpenBSD spamd, Haraka or rspamd: `greylist.whitelist:` used to get a bare
"unknown key" (no mxgate key is a few letters from it). A foreign name whose mxgate key the
section does not have stays a bare error; a typo still gets "did you mean"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

CFG = '''listen: [127.0.0.1:%d]
backends: { servers: ["smtp://127.0.0.1:2526"] }
greylist:
  enabled: true
  whitelist: [10.0.0.0/8]
  whitelist_clients: [google.com]
  max-age: 35d
  --auto-whitelist-clients: 5
  passtime: 25m
dnsbl:
  postscreen_dnsbl_sites: [zen.spamhaus.org]
  postscreen_dnsbl_whitelist_threshold: -1
reputation:
  blacklist: [192.0.2.0/24]
pregreet:
  postscreen_greet_wait: 6s
  whitelist: x
  dellay: 2s
''' % mt.free_port()
rc, out = mt.config_check(CFG, 'foreign')
lines = {}
for line in out.strip().split('\n'):
    parts = line.split(': ', 2)
    if len(parts) == 3:
        lines[parts[1]] = (parts[0].rsplit(':', 2)[-2:], parts[2])
mt.check(rc == 1, '-t fails: %r' % out)
WANT = {
    'greylist.whitelist': ('5', 'allow'),
    'greylist.whitelist_clients': ('6', 'allow_names'),
    'greylist.max-age': ('7', 'expire'),
    'greylist.--auto-whitelist-clients': ('8', 'auto_allow_clients'),
    'greylist.passtime': ('9', 'delay'),
    'dnsbl.postscreen_dnsbl_sites': ('11', 'lists'),
    'dnsbl.postscreen_dnsbl_whitelist_threshold': ('12', 'allow_threshold'),
    'reputation.blacklist': ('14', 'deny'),
    'pregreet.postscreen_greet_wait': ('16', 'delay'),
}
for key, (line, ours) in WANT.items():
    got = lines.get(key)
    mt.check(got is not None and got[0][0] == line and 'mxgate calls it "%s"' % ours in got[1],
             '%s at line %s: mxgate calls it %s: %r' % (key, line, ours, got))
mt.check(lines.get('pregreet.whitelist', (None, ''))[1] == 'unknown key',
         'pregreet has no allow key: a bare error: %r' % (lines.get('pregreet.whitelist'),))
mt.check('did you mean "delay"' in lines.get('pregreet.dellay', (None, ''))[1], 'a typo still gets did you mean')
mt.finish()
