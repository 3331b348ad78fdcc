#!/usr/bin/env python3
"""A backend that will not take mxgate's XCLIENT, and the other refusals of the gateway itself
before and after the message (session 31):
- a real Postfix without mxgate in smtpd_authorized_xclient_hosts (it offers no XCLIENT) and
  mxgate in its mynetworks: with client_identity xclient and backends.require_xclient: true
  (opted in: the default is false) nothing goes to it as from mxgate's address, which permit_mynetworks would relay
  unchecked: its probe fails (down, not ready), a message tried there anyway (none is up)
  gets 451 4.4.1, event=gateway_refused stage=xclient; the next server takes the messages
  (main: 250, relayed by Postfix as from mxgate);
- a server offering XCLIENT and refusing it (Postfix's 550 5.7.0 Error: insufficient
  authorization): the same, stage=xclient code=550 (main: the message went on as mxgate,
  event=xclient_refused);
- backends.require_xclient: false keeps the old way (the message goes on as from mxgate);
- a 5xx to mxgate's own EHLO: stage=ehlo; a 5xx to STARTTLS under backends.require_tls:
  stage=starttls; 530 5.7.0 Must issue a STARTTLS command first at MAIL (built in), a
  gateway_refusals pattern in the reply after the dot (stage=data): the next server, never a
  5xx to the sender (main: no gateway_refused line for the first two, the 530 and the 5xx
  after the dot passed to the client).
No timing decides a check."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

REQ = {'require_xclient': True}     # opted in: the default is false (docs/operations.md)

mt.need('postfix')
mt.need_postfix()


def send(mx, tag, src='198.18.31.9', rcpt='bob@elsewhere.test'):
    return mt.send_mail(mx.port, 'alice@example.org', [rcpt], mt.message(tag), proxy_src=src)


# ---------------------------------------------- a real Postfix that offers mxgate no XCLIENT
pf_port = mt.free_port()
mt.postfix_instance('pf-noxclient', pf_port, '''mynetworks = 127.0.0.0/8
relay_domains =
default_transport = discard
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
''', hostname='backend.test')
PF = 'smtp://127.0.0.1:%d' % pf_port
mx = mt.Mxgate(mt.proxied_config([PF], workers=1, backends=REQ), 'mx-xclient-required')
mt.check(mx.wait_log(r'warning - event=backend_down backend=%s reason="health check: XCLIENT not offered '
                     r'\(backends\.require_xclient\) during ehlo"' % re.escape(PF)) is not None and
         mx.wait_log(r'event=ready generation=1 backends_up=no') is not None,
         'the probe fails it (no XCLIENT offered): down from the start, /readyz not ready')
r = send(mx, 'pf-alone')
mt.check(r.code == 451 and ' 4.4.1 ' in r.text,
         'a Postfix offering no XCLIENT (mxgate in its mynetworks, not in smtpd_authorized_xclient_hosts): '
         '451 4.4.1 to the client, nothing relayed as from mxgate (%s %s at %s)' % (r.code, r.text, r.stage))
mt.check(mx.wait_log(r'error \S+ event=gateway_refused backend=%s stage=xclient code=0 '
                     r'reply="\(no XCLIENT in the EHLO reply\)" action=next_backend' % re.escape(PF)) is not None,
         'event=gateway_refused stage=xclient names the server')
mt.check('to=<bob@elsewhere.test>' not in mt.log_of('pf-noxclient'),
         'Postfix relayed nothing (its log names no delivery to bob@elsewhere.test)')
mt.check(mx.count_log(r'event=xclient_refused') == 0, 'no xclient_refused warning: the message did not go on')
mx.stop()

ok = mt.Backend(name='xr-ok')
mx = mt.Mxgate(mt.proxied_config([PF, ok.url], workers=1, backends=dict(REQ, balance='round_robin')), 'mx-xclient-required2')
codes = [send(mx, 'pf%d' % i).code for i in range(3)]
mt.check(codes == [250] * 3 and len(ok.messages) == 3 and all(m['xclient'].get('ADDR') == '198.18.31.9' for m in ok.messages),
         'with a second server offering XCLIENT: every message there, announced as the client (%s, %d)'
         % (codes, len(ok.messages)))
mt.check(mx.count_log(r'event=gateway_refused backend=%s ' % re.escape(PF)) <= 1,
         'the Postfix is out of the rotation: down by its probe, or held after its first refusal')
mx.stop()

mx = mt.Mxgate(mt.proxied_config([PF], workers=1, backends={'require_xclient': False}), 'mx-xclient-optional')
r = send(mx, 'pf-optional')
mt.check(r.code == 250 and mx.count_log(r'event=gateway_refused') == 0,
         'backends.require_xclient: false: the message goes on as from mxgate, as before (%s %s)' % (r.code, r.text))
mt.check(mt.wait_for(lambda: 'to=<bob@elsewhere.test>' in mt.log_of('pf-noxclient')),
         'Postfix relayed it (permit_mynetworks: what require_xclient keeps from happening)')
mx.stop()


# ------------------------- an attribute Postfix would refuse: the client's, never the gateway's
# Postfix 3.7 takes an XCLIENT value of up to 255 octets as sent (xtext-encoded): a HELO of 90
# '+' is 270 (+2B each), "501 5.5.4 Error: attribute value too long". mxgate sends such a
# value as [UNAVAILABLE]: the XCLIENT is taken and Postfix judges the client's own address
# (198.18.31.20, outside its mynetworks: relay refused). Main: the 501 made mxgate go on as
# from its own address, which permit_mynetworks relayed.
pa_port = mt.free_port()
mt.postfix_instance('pf-xclient-ok', pa_port, '''mynetworks = 127.0.0.0/8
relay_domains =
default_transport = discard
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
''', hostname='backend-ok.test')
PA = 'smtp://127.0.0.1:%d' % pa_port
mx = mt.Mxgate(mt.proxied_config([PA], workers=1, backends=REQ), 'mx-xclient-long')
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@elsewhere.test'], mt.message('longhelo'), ehlo='+' * 90,
                 proxy_src='198.18.31.20')
mt.check(r.code == 554 and r.stage == 'rcpt' and mx.count_log(r'event=gateway_refused') == 0,
         'a HELO whose XCLIENT value Postfix would refuse (90 "+", 270 octets as xtext): sent as [UNAVAILABLE], '
         'Postfix judges the client, not mxgate: relay refused (%s %s at %s)' % (r.code, r.text, r.stage))
mt.check(mt.wait_for(lambda: re.search(r'NOQUEUE: reject: RCPT from unknown\[198\.18\.31\.20\]', mt.log_of('pf-xclient-ok'))),
         'Postfix\'s log names the client 198.18.31.20, not mxgate')
mx.stop()

# a 501 to XCLIENT (an attribute's syntax: the client's data) fails that message, never holds
# the server out for everyone (a client with an odd PTR or HELO would stop all mail)
x5 = mt.Backend(name='xclient-501')
x5.xclient_reply = '501 5.5.4 Error: bad NAME syntax'
mx = mt.Mxgate(mt.proxied_config([x5.url], workers=1, backends=REQ), 'mx-xclient-501')
r = send(mx, 'x501')
mt.check(r.code == 451 and not x5.messages and mx.count_log(r'event=gateway_refused') == 0 and
         mx.count_log(r'event=backend_down') == 0 and
         mx.wait_log(r'warning \S+ event=xclient_refused backend=%s reply="501 5\.5\.4 Error: bad NAME syntax" '
                     r'action=tempfail' % re.escape(x5.url)) is not None,
         'a 501 to XCLIENT: 451 for that message, xclient_refused action=tempfail, the server stays up (%s %s)'
         % (r.code, r.text))
x5.xclient_reply = None
r = send(mx, 'x501-next')
mt.check(r.code == 250 and x5.by_tag('x501-next'), 'the next client\'s message goes there (%s)' % r.code)
mx.stop()


# ------------------------------------------------------- scripted refusals: each against an ok one
def pair(name, refuser, backends=None, messages=2, rcpt='bob@elsewhere.test', after_dot=False, turn=None):
    """mxgate in front of refuser and an ok server (round robin): every message at the ok one,
    250 (after_dot: the refuser read one, then refused it); returns mxgate (running) and the
    ok server. turn: called once the start's probes are done (probes once an hour after
    them): a refusal the probe would see (EHLO, STARTTLS) is set then, for the messages to
    find, as test_gateway_refusal's greeting."""
    good = mt.Backend(name=name + '-ok', starttls=refuser.starttls)
    b = dict(REQ, balance='round_robin', health_check={'interval': '1h', 'timeout': '10s'})
    b.update(backends or {})
    m = mt.Mxgate(mt.proxied_config([refuser.url, good.url], workers=1, backends=b), 'mx-' + name)
    mt.check(m.wait_log(r'event=ready generation=1 backends_up=yes') is not None, '%s: the start\'s probes done' % name)
    if turn:
        turn()
    codes = [send(m, '%s%d' % (name, i), rcpt=rcpt).code for i in range(messages)]
    mt.check(codes == [250] * messages and len(good.messages) == messages and (after_dot or not refuser.messages),
             '%s: every message at the other server, 250 (%s; %d there)' % (name, codes, len(good.messages)))
    return m, good


xr = mt.Backend(name='xr-refuses')
xr.xclient_reply = '550 5.7.0 Error: insufficient authorization'
m, _ = pair('xclient550', xr)
mt.check(m.wait_log(r'error \S+ event=gateway_refused backend=%s stage=xclient code=550 reply="550 5\.7\.0 Error: '
                    r'insufficient authorization"' % re.escape(xr.url)) is not None and m.count_log('event=xclient_refused') == 0,
         'an XCLIENT refused (550 5.7.0 insufficient authorization): gateway_refused stage=xclient code=550')
m.stop()

eh = mt.Backend(name='ehlo-refuses', xclient=False)
m, _ = pair('ehlo554', eh, {'client_identity': 'none'}, turn=lambda: setattr(eh, 'ehlo_reply', '554 5.7.1 Access denied'))
mt.check(m.wait_log(r'error \S+ event=gateway_refused backend=%s stage=ehlo code=554 reply="554 5\.7\.1 Access denied"'
                    % re.escape(eh.url)) is not None,
         'a 5xx to mxgate\'s own EHLO: gateway_refused stage=ehlo')
m.stop()

st = mt.Backend(name='starttls-refuses', xclient=False, starttls=True)
m, _ = pair('starttls554', st, {'client_identity': 'none', 'require_tls': True},
            turn=lambda: setattr(st, 'starttls_reply', '554 5.7.3 Unable to initialize security subsystem'))
mt.check(m.wait_log(r'error \S+ event=gateway_refused backend=%s stage=starttls code=554 ' % re.escape(st.url)) is not None,
         'a 5xx to STARTTLS under backends.require_tls: gateway_refused stage=starttls')
m.stop()

tl = mt.Backend(name='tls-required', xclient=False, mail_reply='530 5.7.0 Must issue a STARTTLS command first')
m, _ = pair('mustissue', tl, {'client_identity': 'none'})
mt.check(m.wait_log(r'error \S+ event=gateway_refused backend=%s stage=mail code=530 .*pattern="Must issue a STARTTLS '
                    r'command first"' % re.escape(tl.url)) is not None,
         '530 5.7.0 Must issue a STARTTLS command first at MAIL (built in): gateway_refused stage=mail')
m.stop()

dd = mt.Backend(name='dot-refuses', xclient=False, data_reply='550 5.7.606 Access denied, banned sending IP [127.0.0.1]')
m, good = pair('afterdot', dd, {'client_identity': 'none'}, after_dot=True)
mt.check(m.wait_log(r'error \S+ event=gateway_refused backend=%s stage=data code=550 .*pattern=5\.7\.606-5\.7\.649'
                    % re.escape(dd.url)) is not None and m.count_log(r'event=reject stage=data') == 0,
         'a gateway refusal after the dot (550 5.7.606): gateway_refused stage=data, the message at the other '
         'server, no refusal reached the client')
m.stop()

mt.finish()
