#!/usr/bin/env python3
"""greylist.allow_names / allow_names_file: big senders allowed by their host name, as
postgrey's whitelist_clients (a domain, a /regex/, an address), matched against the
client's forward-confirmed name (filters/rdns.c, looked up from a real DNS peer). A PTR
that does not resolve back to the client (a name the sender chose) never matches; the
file is read again at SIGHUP. Before these keys, mxgate -t refused them ("unknown key")
and every such sender was greylisted."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402


def rev(ip):
    return '.'.join(reversed(ip.split('.'))) + '.in-addr.arpa'


ZONE = {
    # confirmed: PTR and A agree
    rev('198.18.60.1'): [{'ptr': 'mail-yw1-f170.google.com'}],
    'mail-yw1-f170.google.com': [{'a': '198.18.60.1'}],
    rev('198.18.61.1'): [{'ptr': 'mail12.example.com'}],
    'mail12.example.com': [{'a': '198.18.61.1'}],
    rev('198.18.65.1'): [{'ptr': 'a.amazonses.com'}],
    'a.amazonses.com': [{'a': '198.18.65.1'}],
    # a PTR the sender chose: the name's A record is not the client
    rev('198.18.62.1'): [{'ptr': 'forged.google.com'}],
    'forged.google.com': [{'a': '192.0.2.1'}],
    # no PTR at all
    'in-addr.arpa': [{'txt': ['zone']}],
}
dns = mt.dns_peer(ZONE)
be = mt.Backend()
names = os.path.join(mt.TMP, 'whitelist_clients')
with open(names, 'w') as f:
    f.write('# as postgrey reads it\n/^mail\\d+\\.example\\.com$/\n\n198.18.63   # a /24\n')


def cfg(files):
    return mt.proxied_config([be.url], dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '2s'},
                             greylist={'enabled': True, 'delay': '1h', 'retry_window': '2h',
                                       'allow_names': ['google.com'], 'allow_names_file': files})


gw = mt.Mxgate(cfg([names]))


def code(src, rcpt='u@example.test'):
    return mt.rcpt_code(gw.port, src, 'news@sender.test', rcpt)


mt.check(code('198.18.60.1') == 250, 'a host under allow_names google.com (confirmed name) is not greylisted')
mt.check(code('198.18.61.1') == 250, 'a name matching the regex in the file is not greylisted')
mt.check(code('198.18.63.9') == 250, 'an address in the file\'s a.b.c network is not greylisted')
mt.check(code('198.18.62.1') == 451, 'a PTR under google.com that does not resolve back is greylisted')
mt.check(code('198.18.64.1') == 451, 'a client without a PTR is greylisted')
mt.check(code('198.18.65.1') == 451, 'amazonses.com is not on the list yet: greylisted')
# each recipient let through says so, as postgrey's "action=pass, reason=client whitelist"
# (before: no line at all); the greylisted ones get none
allowed = re.findall(r'event=greylist_allow reason=(\S+) client=(\S+) client_name=(\S+) '
                     r'from=<news@sender.test> rcpt=<u@example.test>', gw.log())
mt.check(allowed == [('allow_names', '198.18.60.1', 'mail-yw1-f170.google.com'),
                     ('allow_names_file', '198.18.61.1', 'mail12.example.com'),
                     ('allow_names_file', '198.18.63.9', 'unknown')],
         'an allowed RCPT is logged with the list, the client and its confirmed name: %s' % allowed)

# SIGHUP reads the file again
start = gw.log_size()
with open(names, 'a') as f:
    f.write('amazonses.com\n')
gw.reload(cfg([names]))
mt.check(gw.wait_log(r'event=reloaded', start=start, timeout=10), 'reloaded')
mt.check(mt.wait_for(lambda: code('198.18.65.1', 'v@example.test') == 250, timeout=mt.slack(5)),
         'after SIGHUP the file\'s new line allows amazonses.com')

# a bad line: -t names the file and line; a reload keeps the old lists
bad = os.path.join(mt.TMP, 'bad_clients')
with open(bad, 'w') as f:
    f.write('ok.test\n/(unclosed/\n')
check = cfg([bad])
check['listen'] = [{'address': '127.0.0.1:%d' % mt.free_port(), 'proxy_protocol': True}]
rc, err = mt.config_check(check, 'badnames')
mt.check(rc == 1 and len(err.strip().split('\n')) == 1 and
         re.search(r'badnames\.yaml:\d+:\d+: greylist\.allow_names_file\[0\]: \S*bad_clients:2: regex', err),
         '-t: the config line, the file and its line: %r' % err)
never = cfg([names])
never['listen'] = check['listen']
never['rdns'] = {'lookup': 'never'}
rc, out = mt.config_check(never, 'never')
mt.check(rc == 0 and 'warning: greylist.allow_names names hosts but rdns.lookup is never' in out,
         '-t warns when rdns.lookup: never leaves the name rules nothing to match: %r' % out)
start = gw.log_size()
gw.reload(cfg([bad]))
mt.check(gw.wait_log(r'event=reload_failed', start=start, timeout=10), 'a bad file: the reload fails')
mt.check(code('198.18.65.1', 'w@example.test') == 250, 'the old lists stay')
gw.stop()
mt.finish()
