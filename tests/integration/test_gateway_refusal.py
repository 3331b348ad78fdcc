#!/usr/bin/env python3
"""A backend that refuses the gateway itself must not refuse the sender's mail.

Replies that are about mxgate (its address, its credentials, the endpoint it was pointed at),
not about the message (learn.microsoft.com "Email non-delivery reports and SMTP errors in
Exchange Online"; Postfix's smtpd):
- Exchange Online's `550 5.7.606`..`5.7.649 Access denied, banned sending IP [IP]` at MAIL (the
  gateway's address on its block list), `530 5.7.57 Client not authenticated to send anonymous
  mail during MAIL FROM` (a server set to the submission endpoint): built in;
- Postfix judging the gateway's own address when the client is not announced (client_identity
  none): `554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied` at RCPT, an
  operator's pattern in backends.gateway_refusals.

What the operator expects, each a check:
- the refused message goes to the next server, the client gets 250 (round_robin: before, the
  sender got 250 and 550 in turn);
- event=gateway_refused at error level names the server and its reply; the server leaves the
  rotation (event=backend_down), so the messages after go to the other one;
- the refusal of a recipient (`550 5.1.1 ... User unknown`) still reaches the client as it is;
- every server refusing the gateway: 451 to the client (it retries, nothing lost), never 5xx;
  one error line per server per hold period, not one per message, each refusal counted in
  the server's failed total (a greeting refusal once, not twice);
- a pattern the config cannot take: `-t` says FILE:LINE:COL: key: reason.
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

BANNED = '550 5.7.606 Access denied, banned sending IP [127.0.0.1]'
SUBMISSION = '530 5.7.57 Client not authenticated to send anonymous mail during MAIL FROM'
UNKNOWN = '550 5.1.1 <nobody@contoso.test>: Recipient address rejected: User unknown in virtual mailbox table'
HOSTREJ = '554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied'


def exchange(**kw):
    return mt.Backend(xclient=False, **kw)


# ------------------------------------------------------------- 550 5.7.606 at MAIL (built in)
ex1 = exchange(mail_reply=BANNED, name='EXO-banned')
ex2 = exchange(rcpt_replies={'nobody@contoso.test': UNKNOWN}, name='EXO-ok')
cfg = mt.proxied_config([ex1.url, ex2.url], hostname='mx.contoso.test', accept_domains=['contoso.test'],
                        backends={'client_identity': 'none', 'balance': 'round_robin'})
mx = mt.Mxgate(cfg, 'mx-gwrefuse')
codes = [mt.send_mail(mx.port, 'sender@example.org', ['alice@contoso.test'], mt.message('gw%d' % i),
                      proxy_src='198.18.7.10').code for i in range(4)]
mt.check(codes == [250] * 4 and len(ex2.messages) == 4 and not ex1.messages,
         'one server refuses the gateway (550 5.7.606 banned sending IP at MAIL): every message at the '
         'other, 250 to the client (%s; %d at the other)' % (codes, len(ex2.messages)))
m = mx.wait_log(r'error \S+ event=gateway_refused backend=%s stage=mail code=550 reply="550 5\.7\.606 Access denied, '
                r'banned sending IP \[127\.0\.0\.1\]" pattern=5\.7\.606-5\.7\.649' % re.escape(ex1.url))
mt.check(m is not None, 'event=gateway_refused at error level names the server, the reply and the pattern')
mt.check(mx.count_log(r'event=gateway_refused backend=%s' % re.escape(ex1.url)) == 1 and
         mx.wait_log(r'event=backend_down backend=%s reason="refused the gateway"' % re.escape(ex1.url)) is not None,
         'the server leaves the rotation at the first refusal: refused once, the other messages never '
         'sent to it (%d refusals)' % mx.count_log(r'event=gateway_refused'))
mt.check(mx.count_log(r'event=reject stage=mail') == 0,
         'no refusal at MAIL reached a client (%d)' % mx.count_log(r'event=reject stage=mail'))

r = mt.send_mail(mx.port, 'sender@example.org', ['nobody@contoso.test'], mt.message('gw-unknown'),
                 proxy_src='198.18.7.10')
mt.check(r.code == 550 and '5.1.1' in r.text and r.stage == 'rcpt',
         'a recipient refused (550 5.1.1 user unknown) still reaches the client as 550 (%s %s at %s)'
         % (r.code, r.text, r.stage))
mt.check(mx.count_log(r'event=gateway_refused backend=%s' % re.escape(ex2.url)) == 0,
         'a refusal of the message is not one of the gateway')

ex2.mail_reply = SUBMISSION
r = mt.send_mail(mx.port, 'sender@example.org', ['alice@contoso.test'], mt.message('gw-none'),
                 proxy_src='198.18.7.10')
mt.check(r.code == 451 and ' 4.4.1 ' in r.text and not ex1.by_tag('gw-none') and not ex2.by_tag('gw-none'),
         'every server refuses the gateway (5.7.606, 530 5.7.57): 451 4.4.1 to the client, never 5xx, '
         'nothing delivered (%s %s at %s)' % (r.code, r.text, r.stage))
mt.check(mx.wait_log(r'error \S+ event=gateway_refused backend=%s stage=mail code=530 reply="530 5\.7\.57 ' %
                     re.escape(ex2.url)) is not None, '530 5.7.57 (a submission endpoint) is one too')
mt.check(not mx.malformed_log_lines(), 'log lines well formed')
mx.stop()

# ------------------------------------------------- Client host rejected at RCPT (an operator's)
pf1 = mt.Backend(xclient=False, rcpt_replies={'alice@contoso.test': HOSTREJ}, name='pf-norelay')
pf2 = mt.Backend(xclient=False, name='pf-ok')
cfg2 = mt.proxied_config([pf1.url, pf2.url], hostname='mx.contoso.test', accept_domains=['contoso.test'],
                         backends={'client_identity': 'none', 'balance': 'round_robin',
                                   'gateway_refusals': ['Client host rejected']})
mx2 = mt.Mxgate(cfg2, 'mx-gwrefuse-rcpt')
codes = [mt.send_mail(mx2.port, 'sender@example.org', ['alice@contoso.test'], mt.message('pf%d' % i),
                      proxy_src='198.18.7.11').code for i in range(3)]
mt.check(codes == [250] * 3 and len(pf2.messages) == 3 and not pf1.messages,
         'a refusal of the gateway\'s own address at RCPT (backends.gateway_refusals: Client host '
         'rejected): the message at the other server, 250 (%s)' % codes)
mt.check(mx2.wait_log(r'error \S+ event=gateway_refused backend=%s stage=rcpt code=554 .*pattern="Client host '
                      r'rejected"' % re.escape(pf1.url)) is not None,
         'event=gateway_refused stage=rcpt names the operator\'s pattern')
mx2.stop()

# ------------------------------------------- every server refusing: the log does not grow
# Both servers refuse the gateway at MAIL; each message still tries both (none is up: they
# are picked anyway) and gets 451. One error line per server per hold period (5 minutes),
# the rest counted: the backends' failed totals count every refusal (main: one
# gateway_refused line per message and server, 6 here).
SOCK = os.path.join(mt.TMP, 'gw-control.sock')
CTL = mt.mxgatectl()
a1 = exchange(mail_reply=BANNED, name='all-banned')
a2 = exchange(mail_reply=SUBMISSION, name='all-submission')
cfg4 = mt.proxied_config([a1.url, a2.url], workers=1, control={'socket': SOCK},
                         backends={'client_identity': 'none', 'balance': 'round_robin'})
mx4 = mt.Mxgate(cfg4, 'mx-gwrefuse-all')
codes = [mt.send_mail(mx4.port, 'sender@example.org', ['alice@contoso.test'], mt.message('all%d' % i),
                      proxy_src='198.18.7.13').code for i in range(3)]
mt.check(codes == [451] * 3, 'every server refuses the gateway: 451 to each message (%s)' % codes)
lines = [mx4.count_log(r'event=gateway_refused backend=%s ' % re.escape(b.url)) for b in (a1, a2)]
mt.check(lines == [1, 1], 'one gateway_refused line per server for three messages (%s)' % lines)
mt.check(len(re.findall(r'(?m)event=gateway_refused .* unlogged=0$', mx4.log())) == 2,
         'the lines say none went unlogged before them (unlogged=0)')
rows = mt.backends_rows(CTL, SOCK)
failed = [rows.get(b.url, {}).get('failed') for b in (a1, a2)]
mt.check(failed == [3, 3], 'each server\'s failed total counts its three refusals, logged or not (%s)' % failed)
mx4.stop()

# ------------------------------------------------------------------ a 5xx greeting
# Probes once an hour: the start's probe sees the server greet, then it refuses; the messages
# find it out (the next probe would too, and take it out without a message: not what is tested).
g1 = mt.Backend(xclient=False, name='greet-refuses')
g2 = mt.Backend(xclient=False, name='greet-ok')
cfg3 = mt.proxied_config([g1.url, g2.url], backends={'client_identity': 'none', 'balance': 'round_robin',
                                                     'health_check': {'interval': '1h', 'timeout': '10s'}})
cfg3['control'] = {'socket': SOCK}
mx3 = mt.Mxgate(cfg3, 'mx-gwrefuse-greeting')
# the start's probe round is over (event=ready comes after it) before the server turns: else
# that probe sees the refusal first (it did under ASan at load 12)
mt.check(mx3.wait_log(r'event=ready generation=1 backends_up=yes') is not None, 'the start\'s probes done')
g1.mode = 'refuse_connect'
codes = [mt.send_mail(mx3.port, 'sender@example.org', ['alice@example.test'], mt.message('gr%d' % i),
                      proxy_src='198.18.7.12').code for i in range(2)]
mt.check(codes == [250, 250] and len(g2.messages) == 2,
         'a server refusing mxgate at the greeting (554 5.7.1): the messages at the other (%s)' % codes)
mt.check(mx3.wait_log(r'error \S+ event=gateway_refused backend=%s stage=greeting code=554 reply="554 5\.7\.1 '
                      r'<unknown\[127\.0\.0\.1\]>: Client host rejected: Access denied" action=next_backend'
                      % re.escape(g1.url)) is not None,
         'event=gateway_refused stage=greeting names the server and its greeting')
refusals = mx3.count_log(r'event=gateway_refused backend=%s ' % re.escape(g1.url))
failed = mt.backends_rows(CTL, SOCK).get(g1.url, {}).get('failed')
mt.check(refusals == 1 and failed == 1,
         'a greeting refusal counts once in the server\'s failed total (%s for %d refusals; main: 2)' % (failed, refusals))
mx3.stop()

# ------------------------------------------------------------------ -t on a bad pattern
FIXED = [{'address': '127.0.0.1:2525'}]
rc, out = mt.config_check(mt.config([pf2.url], listen=FIXED, backends={'gateway_refusals': ['5.7.1', '5.7.606-5.8.1']}),
                          'gwbad')
mt.check(rc == 1 and re.search(r'gwbad\.yaml:\d+:\d+: backends\.gateway_refusals\[1\]: "5\.7\.606-5\.8\.1": ', out),
         '-t refuses a range across subjects at its place (%d: %s)' % (rc, out.strip()))
rc, out = mt.config_check(mt.config([pf2.url], listen=FIXED, backends={'gateway_refusals': ['5.7.0', 'Client host rejected']}),
                          'gwgood')
mt.check(rc == 0, '-t takes a code and a text (%d: %s)' % (rc, out.strip()))
mt.finish()
