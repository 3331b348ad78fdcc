#!/usr/bin/env python3
"""A hosting customer's own sender deny list (`deny_senders`; docs/operations.md "Hosting many
domains"): Postfix's check_recipient_access to a restriction class with check_sender_access,
Proxmox Mail Gateway's Blacklist rule with a To object. One customer lists a domain and, in a
file, an address: mail from them gets 550 5.7.1 at RCPT for that customer's recipients alone,
logged event=reject stage=rcpt reason=sender_denied; the same message to another customer is
delivered to it (the backend sees only that recipient); other senders and the null sender pass;
a SIGHUP re-reads the file. `mxgate -t` wants senders. Until session 30 there was no
per-recipient deny list (the key did not exist). Peers: smtp-sink behind."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink(name='sink-deny')
listf = os.path.join(mt.TMP, 'cust1-deny')
with open(listf, 'w') as f:
    f.write('# cust1.example refuses these\nex@old-partner.example\n')


def cfg():
    return mt.config([sink.url], accept_domains=['cust1.example', 'cust2.example'],
                     deny_senders=[{'recipients': ['cust1.example'], 'senders': ['rival.example', 'file:' + listf]}])


mx = mt.Mxgate(cfg(), 'mx-deny')
r = mt.send_mail(mx.port, 'boss@rival.example', ['a@cust1.example', 'b@cust2.example'], mt.message('deny1'))
mt.check(r[0] == 250 and r.rcpt_codes == [550, 250],
         'rival.example to both customers: 550 for cust1, 250 for cust2, delivered (%s %s %s)' % (r[0], r[1], r.rcpt_codes))
line = mx.wait_log(r'event=reject stage=rcpt reason=sender_denied [^\n]*')
mt.check(line is not None and 'rcpt=<a@cust1.example>' in line.group(0) and
         'refused by the recipient\'s policy' in line.group(0), 'logged reason=sender_denied (%s)' % (line and line.group(0)))
mt.check(mt.wait_for(lambda: sink.count() >= 1), 'the sink got the message')
got = b''.join(open(p, 'rb').read() for p in sink.files())
mt.check(b'b@cust2.example' in got and b'a@cust1.example' not in got,
         'the backend saw cust2\'s recipient only')
r = mt.send_mail(mx.port, 'ex@Old-Partner.example', ['a@cust1.example'], mt.message('deny2'))
mt.check(r[0] == 550, 'an address from the file, capitals: 550 (%s %s)' % tuple(r))
r = mt.send_mail(mx.port, 'friend@partner.example', ['a@cust1.example'], mt.message('deny3'))
mt.check(r[0] == 250, 'another sender: delivered (%s %s)' % tuple(r))
r = mt.send_mail(mx.port, '', ['a@cust1.example'], mt.message('deny4'))
mt.check(r[0] == 250, 'the null sender matches no deny list: delivered (%s %s)' % tuple(r))
with open(listf, 'w') as f:
    f.write('friend@partner.example\n')
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reloaded generation=2', timeout=30) is not None, 'reloaded')
r = mt.send_mail(mx.port, 'friend@partner.example', ['a@cust1.example'], mt.message('deny5'))
mt.check(r[0] == 550, 'after the SIGHUP the file\'s new line is refused (%s %s)' % tuple(r))
r = mt.send_mail(mx.port, 'ex@old-partner.example', ['a@cust1.example'], mt.message('deny6'))
mt.check(r[0] == 250, '... and the removed one delivered (%s %s)' % tuple(r))
mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()

rc, out = mt.config_check(dict(cfg(), listen=[{'address': '127.0.0.1:2525'}],
                               deny_senders=[{'recipients': ['cust1.example']}]), 'deny-nosenders')
mt.check(rc == 1 and 'deny_senders[0].senders: missing required key' in out, 'mxgate -t: an entry wants senders (%s)' % out[:300])
sink.stop()
mt.finish()
