#!/usr/bin/env python3
"""What SpamAssassin is shown: the message as the backend will get it, with mxgate's own
Received header on top. Behind Postfix, spamd is handed the queued message (amavisd,
content_filter) or a synthesized Received (spamass-milter), so its relay rules know the
client: its address, HELO and reverse name (RDNS_NONE, trusted/untrusted relays, SPF and
DNSBL checks of the last external relay). Without it spamd saw no Received at all
(NO_RECEIVED, NO_RELAYS). Checked with a real spamd and rules of our own over what it
parsed: the client address and HELO from the PROXY protocol reach its relay list. A
missing spamd skips (a failure under CI=true)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need('spamd')
sp = t.spamd(local_cf='\n'.join([
    r'header MX_SAW_RECEIVED ALL =~ /^Received: from client\.example\.org \(unknown \[203\.0\.113\.5\]\)/m',
    'score MX_SAW_RECEIVED 0.01',
    r'header MX_RELAY_PARSED X-Spam-Relays-Untrusted =~ /ip=203\.0\.113\.5 .*helo=client\.example\.org /',
    'score MX_RELAY_PARSED 0.01', '']))
be = t.Backend()
rules = os.path.join(t.TMP, 'none.rules')   # the rules engine with no rules of its own
with open(rules, 'w') as f:
    f.write('# only the plugins score\n')
m = t.Mxgate(t.config([be.url], listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True}],
                      hostname='mx.example.test',
                      plugins=[{'name': 'spamd', 'address': '127.0.0.1:%d' % sp.port, 'on_error': 'tempfail',
                                'timeout': '30s'}],
                      rules={'files': [rules], 'actions': {'add_header': 5, 'tempfail': 2000, 'reject': 3000}}))
code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'], t.message('rcvd1', 'Lunch at noon?\r\n'),
                         ehlo='client.example.org', proxy_src='203.0.113.5', timeout=60)
got = be.find('Message-ID: <rcvd1@')
t.check(code == 250 and len(got) == 1, 'delivered: %s %s' % (code, text))
st = re.search(rb'X-Spam-Status:(.*?)\r\n(?![ \t])', got[0]['data'], re.S) if got else None
tests = re.sub(rb'\s+', b'', st.group(1)).decode() if st else ''
t.check('MX_SAW_RECEIVED' in tests, 'spamd was shown mxgate\'s Received header with the client: %s' % tests)
t.check('MX_RELAY_PARSED' in tests, 'and parsed the client (203.0.113.5, HELO client.example.org) as a relay: %s'
        % tests)
t.check('NO_RECEIVED' not in tests and 'NO_RELAYS' not in tests, 'no NO_RECEIVED / NO_RELAYS any more: %s' % tests)
d = got[0]['data'] if got else b''
t.check(d.count(b'Received: from client.example.org') == 1, 'one Received header of ours at the backend')
m.stop()
t.finish()
