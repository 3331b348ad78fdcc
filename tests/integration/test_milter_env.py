#!/usr/bin/env python3
"""Every verdict of the stages before the message, from a real libmilter filter
(tests/peers/mx_milter_env.py, scripted by the HELO name, the sender and the recipients),
compared with what Postfix with the same milter answers (milter8.c, MILTER_README):
  MAIL reject / tempfail / setreply / setmlreply: the client's MAIL is refused with it;
  a '%%' in a setreply text is one '%' for the client (libmilter asks for '%%' because
    Sendmail formats the text; Postfix undoes it the same way);
  MAIL or RCPT discard: 250 at end of data and delivered nowhere (reason=milter-discard);
  MAIL or RCPT accept: the message goes on without that filter (no end-of-message edits,
    later recipients not shown to it);
  RCPT reject / tempfail / multi-line: that recipient only, the message reaches the others
    and the filter's end of message sees only those;
  DATA reject: the DATA command is refused;
  a reject or tempfail without text reads as Postfix's ("550 5.7.1 Command rejected",
    "451 4.7.1 Service unavailable - try again later"), at every stage;
  HELO reject / tempfail: the HELO is refused;
  HELO discard: there is no message yet; Postfix calls it an error ("DISCARD action is not
    allowed for connect or helo") and applies milter_default_action, here on_error (it was
    ignored, and the session's mail went through as if the filter had said continue).
A missing python3-milter skips (a failure under CI=true)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need_python_milter()
port = t.hold_port().port
log = os.path.join(t.TMP, 'env-milter.log')
peer = t.start_peer(['/usr/bin/python3', os.path.join(t.PEERS, 'mx_milter_env.py'), 'inet:%d@127.0.0.1' % port, log],
                    'env-milter-%d' % port, port)
be = t.Backend()


def gate(on_error, name):
    return t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
        {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': on_error, 'timeout': '10s'}]), name=name)


def dialog(m, helo, frm, rcpts, tag):
    """One session; returns {step: (code, text)} and the deliveries of tag."""
    c = t.Client(m.port, timeout=15)
    out = {'EHLO': c.ehlo(helo)}
    out['MAIL'] = c.cmd('MAIL FROM:<%s>' % frm)
    for x in rcpts:
        out['RCPT ' + x] = c.cmd('RCPT TO:<%s>' % x)
    out['DATA'] = c.cmd('DATA')
    if out['DATA'][0] == 354:
        c.send(t.stuff(t.message(tag)))
        out['EOD'] = c.reply()
    c.cmd('QUIT')
    c.close()
    return out, be.find('Message-ID: <%s@' % tag)


def env_header(d):
    for ln in d.split(b'\r\n'):
        if ln.startswith(b'X-Env-Rcpts:'):
            return ln.split(b':', 1)[1].strip().decode()
    return None


m = gate('tempfail', 'mxgate')
H, A, B = 'client.example.org', 'a@example.org', 'b@example.test'

out, got = dialog(m, H, 'reject-s@example.org', [B], 'mailrej')
t.check(out['MAIL'] == (550, '550 5.7.1 Command rejected') and not got,
        'MAIL reject: 550 to MAIL in Postfix\'s words, nothing relayed: %s' % (out['MAIL'],))
out, got = dialog(m, H, 'tempfail-s@example.org', [B], 'mailtmp')
t.check(out['MAIL'] == (451, '451 4.7.1 Service unavailable - try again later') and not got,
        'MAIL tempfail: 451 to MAIL in Postfix\'s words: %s' % (out['MAIL'],))
out, got = dialog(m, H, 'code-s@example.org', [B], 'mailcode')
t.check(out['MAIL'] == (550, '550 5.7.9 refused by env milter'), 'MAIL setreply reaches the client: %s' % (out['MAIL'],))
out, got = dialog(m, H, 'ml-s@example.org', [B], 'mailml')
t.check(out['MAIL'][0] == 450 and '450-4.7.8 first line' in out['MAIL'][1] and '450 4.7.8 second line' in out['MAIL'][1],
        'MAIL setmlreply: both lines with their codes: %s' % (out['MAIL'],))
out, got = dialog(m, H, 'pct-s@example.org', [B], 'mailpct')
t.check(out['MAIL'] == (550, '550 5.7.9 100% sure'), 'setreply with %%%%: one %% to the client: %s' % (out['MAIL'],))
out, got = dialog(m, H, A, ['pctml-r@example.test', B], 'rcptpct')
t.check(out['RCPT pctml-r@example.test'] == (550, '550-5.7.9 line 100%\n550 5.7.9 and 50%'),
        'setmlreply with %%%%: one %% on each line: %s' % (out['RCPT pctml-r@example.test'],))
n0 = m.count_log(r'reason=milter-discard')
out, got = dialog(m, H, 'discard-s@example.org', [B], 'maildisc')
t.check(out.get('EOD', (0,))[0] == 250 and not got and m.count_log(r'reason=milter-discard') > n0,
        'MAIL discard: 250 at end of data, relayed nowhere, logged: %s' % (out.get('EOD'),))
out, got = dialog(m, H, 'accept-s@example.org', [B], 'mailacc')
t.check(out.get('EOD', (0,))[0] == 250 and len(got) == 1 and env_header(got[0]['data']) is None,
        'MAIL accept: relayed without the filter at end of message: %s' % (out.get('EOD'),))

out, got = dialog(m, H, A, ['reject-r@example.test', B], 'rcptrej')
t.check(out['RCPT reject-r@example.test'][0] == 550 and out['RCPT ' + B][0] == 250 and len(got) == 1 and
        got[0]['rcpts'] == [B] and env_header(got[0]['data']) == 'b',
        'RCPT reject: that recipient refused, the message relayed to the other, the filter saw it only: %s %s'
        % (out['RCPT reject-r@example.test'], got[0]['rcpts'] if got else None))
out, got = dialog(m, H, A, ['tempfail-r@example.test', B], 'rcpttmp')
t.check(out['RCPT tempfail-r@example.test'][0] == 451 and len(got) == 1 and got[0]['rcpts'] == [B],
        'RCPT tempfail: 451 to that recipient, relayed to the other: %s' % (out['RCPT tempfail-r@example.test'],))
out, got = dialog(m, H, A, ['ml-r@example.test', B], 'rcptml')
t.check(out['RCPT ml-r@example.test'][0] == 450 and '450-4.7.8 first line' in out['RCPT ml-r@example.test'][1]
        and len(got) == 1, 'RCPT setmlreply: multi-line 450 to that recipient: %s' % (out['RCPT ml-r@example.test'],))
n0 = m.count_log(r'reason=milter-discard')
out, got = dialog(m, H, A, [B, 'discard-r@example.test', 'c@example.test'], 'rcptdisc')
t.check(out['RCPT c@example.test'][0] == 250 and out.get('EOD', (0,))[0] == 250 and not got and
        m.count_log(r'reason=milter-discard') > n0,
        'RCPT discard: the whole message, 250 at end of data, relayed nowhere: %s' % (out.get('EOD'),))
out, got = dialog(m, H, A, [B, 'accept-r@example.test', 'c@example.test'], 'rcptacc')
t.check(out.get('EOD', (0,))[0] == 250 and len(got) == 1 and len(got[0]['rcpts']) == 3 and
        env_header(got[0]['data']) is None,
        'RCPT accept: the message relayed to all three without the filter at end of message: %s'
        % (got[0]['rcpts'] if got else None,))
out, got = dialog(m, H, A, ['atdata-r@example.test', B], 'datarej')
t.check(out['DATA'] == (550, '550 5.7.1 Command rejected') and not got, 'DATA reject: 550 to DATA: %s' % (out['DATA'],))
out, got = dialog(m, H, A, ['eomrej-r@example.test'], 'eomrej')
t.check(out.get('EOD') == (550, '550 5.7.1 Command rejected') and not got,
        'end-of-message reject: 550 to the final dot, as Postfix words it: %s' % (out.get('EOD'),))

out, got = dialog(m, 'reject-h.example.org', A, [B], 'helorej')
t.check(out['EHLO'][0] == 550 and not got, 'HELO reject: 550 to EHLO: %s' % (out['EHLO'],))
out, got = dialog(m, 'tempfail-h.example.org', A, [B], 'helotmp')
t.check(out['EHLO'][0] == 451 and not got, 'HELO tempfail: 451 to EHLO: %s' % (out['EHLO'],))
out, got = dialog(m, 'accept-h.example.org', A, [B], 'heloacc')
t.check(len(got) == 1 and env_header(got[0]['data']) is None, 'HELO accept: the session goes on without the filter')

n0 = m.count_log(r'event=plugin_error .*on_error=tempfail')
out, got = dialog(m, 'discard-h.example.org', A, [B], 'helodisc')
t.check(out['EHLO'][0] == 451 and not got, 'HELO discard is an error: on_error tempfail answers 451: %s (%d relayed)'
        % (out['EHLO'], len(got)))
t.check(m.count_log(r'event=milter_error .*error="discard at connect or helo') >= 1 and
        m.count_log(r'event=plugin_error .*on_error=tempfail') > n0, 'and it is logged as the filter\'s error')

# Postfix's default milter_mail_macros and milter_rcpt_macros include {mail_host} and
# {rcpt_host} (the domain the address resolves to; none for the null sender).
notes = open(log).read()
t.check('mail <a@example.org> mail_host=example.org' in notes and
        'rcpt <b@example.test> rcpt_host=example.test' in notes,
        'MAIL and RCPT carry {mail_host} and {rcpt_host}: %s' % [ln for ln in notes.splitlines()
                                                                if ln.startswith(('mail <a@', 'rcpt <b@'))][:2])
c = t.Client(m.port, timeout=15)
c.ehlo(H)
c.cmd('MAIL FROM:<>')
c.cmd('QUIT')
c.close()
t.check(t.wait_for(lambda: 'mail <> mail_host=None' in open(log).read(), 10),
        'and the null sender no {mail_host}')
m.stop()

# A filter slower than the entry's timeout at RCPT: that recipient gets on_error, the filter
# answers on_error for the rest of the transaction, and the next one reconnects to it.
ms = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': 'tempfail', 'timeout': '1s'}]),
    name='mx-stall')
c = t.Client(ms.port, timeout=15)
c.ehlo(H)
c.cmd('MAIL FROM:<a@example.org>')
r1 = c.cmd('RCPT TO:<stall-r@example.test>')
r2 = c.cmd('RCPT TO:<b@example.test>')
c.cmd('RSET')
t.check(r1[0] == 451 and r2[0] == 451 and ms.count_log(r'event=plugin_error plugin=milter stage=rcpt error=timeout') == 1,
        'a filter past its timeout at RCPT: 451, and 451 for the rest of the transaction: %s %s' % (r1, r2))
code, text = t.send_mail(ms.port, A, [B], t.message('stall-next'), client=c)
c.close()
t.check(code == 250 and len(be.find('Message-ID: <stall-next@')) == 1 and ms.count_log(r'event=milter_reconnect') == 1,
        'the next transaction reconnects to the filter and is relayed: %s %s' % (code, text))
ms.stop()

# on_error accept (milter_default_action = accept): the mail goes through without the filter.
ma = gate('accept', 'mx-accept')
out, got = dialog(ma, 'discard-h.example.org', A, [B], 'helodisc-acc')
t.check(out['EHLO'][0] == 250 and out.get('EOD', (0,))[0] == 250 and len(got) == 1,
        'HELO discard with on_error accept: relayed without the filter: %s %s' % (out['EHLO'], out.get('EOD')))
ma.stop()
t.stop_proc(peer)
t.finish()
