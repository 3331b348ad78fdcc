#!/usr/bin/env python3
"""A hostile or broken milter (tests/peers/hostile_milter.py) at end of message, judged as
Postfix's milter client and cleanup judge it: a thousand added headers are relayed, added
headers that would make the message larger than limits.max_message_size refuse it with
552 5.3.4 as a replaced body does (never relayed past the limit, never held in memory
without bound), added recipients past limits.max_recipients refuse it with 550 5.5.3, SMFIR_QUARANTINE without a quarantine backend tempfails, SMFIR_CHGFROM
with ESMTP arguments changes the sender without them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

port = t.hold_port().port
hm = t.start_peer([sys.executable, os.path.join(t.PEERS, 'hostile_milter.py'), str(port)], 'hostile-milter-%d' % port,
                  port)
be = t.Backend()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', limits={'max_message_size': '2M', 'max_recipients': 200}, plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % port, 'on_error': 'tempfail', 'timeout': '10s'}]))


def send(tag, body, size=0):
    return t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message(tag, body, size=size),
                       ehlo='client.example.org', timeout=30)


def eom_reply(tag, body):
    """The end of data's whole reply, every line of a multi-line one (code, text)."""
    c = t.Client(mx.port, timeout=30)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('DATA')
    c.send(t.message(tag, body) + b'\r\n.\r\n')
    rep = c.reply()
    c.close()
    return rep


def headers_of(d):
    return d.split(b'\r\n\r\n', 1)[0].split(b'\r\n')


code, text = send('many1', 'HDR_MANY\r\n')
got = be.find('Message-ID: <many1@')
h = headers_of(got[0]['data']) if got else []
t.check(code == 250 and len(got) == 1 and len([x for x in h if x.startswith(b'X-Many-')]) == 1000,
        'a milter adding 1000 headers: relayed once with all of them (%s %s, %d)' %
        (code, text, len([x for x in h if x.startswith(b'X-Many-')])))

code, text = send('flood1', 'HDR_FLOOD\r\n')
t.check(code == 552 and '5.3.4 Error: message file too big' in text and not be.find('Message-ID: <flood1@'),
        'added headers past limits.max_message_size (2M): 552 5.3.4, not relayed (%s %s)' % (code, text))
t.check(mx.count_log(r'event=milter_headers_too_big') == 1 and
        mx.count_log(r'event=reject stage=data reason=milter-headers-too-big') == 1, 'logged as added headers too big')

code, text = send('after1', 'fine\r\n')
t.check(code == 250 and len(be.find('Message-ID: <after1@')) == 1, 'the next message passes (%s %s)' % (code, text))

code, text = send('q1', 'QUARANTINE\r\n')
t.check(code == 451 and '4.3.0' in text and not be.find('Message-ID: <q1@'),
        'SMFIR_QUARANTINE without a quarantine backend: 451 4.3.0, not relayed (%s %s)' % (code, text))

# Added recipients count against limits.max_recipients (here 200) as the client's do: a
# filter adding 150 is relayed to all of them; one adding 5000 (40000 used to hold the
# worker's loop for seconds, every session of it stalled) tempfails it (the operator's limit
# or filter to fix; the sender retries).
code, text = send('r1', 'RCPT_MANY 150\r\n')
got = be.find('Message-ID: <r1@')
t.check(code == 250 and len(got) == 1 and len(set(got[0]['rcpts'])) == 151,
        'a milter adding 150 recipients: relayed once to all of them (%s %s %s)' %
        (code, text, [len(m['rcpts']) for m in got]))
code, text = send('r2', 'RCPT_MANY 5000\r\n')
t.check(code == 451 and '4.5.3' in text and not be.find('Message-ID: <r2@'),
        'a milter adding 5000 recipients (limits.max_recipients 200): 451 4.5.3, not relayed (%s %s)' % (code, text))
t.check(mx.count_log(r'event=plugin_too_many_rcpts plugin=milter max=200') == 1, 'logged as too many recipients added')

# Deleted recipients are bounded too (a filter deleting more than an envelope can hold
# is broken, and each one was kept until the verdict): 300 deletions of absent ones pass,
# 100000 are the filter's error (on_error tempfail), never held in memory.
code, text = send('d1', 'DEL_MANY 300\r\n')
got = be.find('Message-ID: <d1@')
t.check(code == 250 and len(got) == 1 and got[0]['rcpts'] == ['kept@example.test'],
        'a milter deleting 300 absent recipients and the real one: relayed to the one it added (%s %s %s)' %
        (code, text, [m['rcpts'] for m in got]))
code, text = send('d2', 'DEL_MANY 100000\r\n')
t.check(code == 451 and not be.find('Message-ID: <d2@'),
        'a milter deleting 100000 recipients: on_error tempfail, not relayed (%s %s)' % (code, text))

code, text = send('cf1', 'CHGFROM_ARGS\r\n')
got = be.find('Message-ID: <cf1@')
t.check(code == 250 and len(got) == 1 and got[0]['from'] == 'new@example.net' and 'SIZE=1' not in got[0]['mail'] and
        mx.count_log(r'event=milter_chgfrom_args_ignored .*SIZE=1 BODY=8BITMIME') == 1,
        'SMFIR_CHGFROM with ESMTP arguments: the new sender without them, logged (%s %s %s)' %
        (code, text, [m.get('mail') for m in got]))

# A multi-line SMFIR_REPLYCODE whose later line carries a code and enhanced code of the
# other class: one reply, every line 550 and 5.x.x (RFC 5321 4.2.1, RFC 3463), as the
# first line alone would be judged (a "550 4.7.1" there is malformed).
code, text = eom_reply('mix1', 'REPLY_MIX\r\n')
t.check(code == 550 and text.split('\n') == ['550-5.7.1 first', '550 5.7.1 second'],
        'a later line of another class: 550 5.7.1 on every line (%s %r)' % (code, text))

# A reply text with control octets: each shown as '?' (as a backend's reply text, smtp_reply.c;
# Postfix's printable()), the two lines kept, UTF-8 text kept; nothing raw reaches the client.
code, text = eom_reply('ctl1', 'REPLY_CTL\r\n')
t.check(code == 550 and text.split('\n') == ['550-5.7.1 red ?[31mtext?',
                                             '550 5.7.1 lone?cr lone?lf del? c1?? raw? latin? utf8 \u00e9'],
        'control octets in a milter\'s reply: \'?\' each, both lines kept (%s %r)' % (code, text))

# A sender changed 1001 times: the last one counts, and only it is kept (each one used to be
# held until the verdict and logged).
code, text = send('cf2', 'CHGFROM_MANY\r\n')
got = be.find('Message-ID: <cf2@')
t.check(code == 250 and len(got) == 1 and got[0]['from'] == 'last@example.net' and
        mx.count_log(r'event=milter_chgfrom_args_ignored') == 2,
        'SMFIR_CHGFROM 1001 times: the last sender, one warning for the message (%s %s %s, %d)' %
        (code, text, [m.get('from') for m in got], mx.count_log(r'event=milter_chgfrom_args_ignored')))

# Header values that try to open a header or the body: one header line each, the bad name
# refused (what Postfix's cleanup would not take either).
code, text = send('inj1', 'HDR_INJECT\r\n')
got = be.find('Message-ID: <inj1@')
h = headers_of(got[0]['data']) if got else []
body = got[0]['data'].split(b'\r\n\r\n', 1)[1] if got else b''
t.check(code == 250 and not [x for x in h if x.startswith((b'Bcc:', b'Bad Name', b'injected', b'new body'))] and
        b'X-Inject: v Bcc: evil@example.net new body' in h and body == b'HDR_INJECT\r\n' and
        mx.count_log(r'event=plugin_bad_output plugin=milter what=header_name') == 1,
        'injected CRLFs stay inside their header, a bad name is refused (%s %s %r)' % (code, text, h[-4:]))

# SMFIR_SKIP answering the end of message is no verdict (Sendmail's milter_data calls it a
# bogus response, the filter's failure): the filter's error (on_error tempfail here), never
# a delivery with its quarantine and header silently dropped, as it was.
code, text = send('skip1', 'SKIP_EOM\r\n')
got = be.find('Message-ID: <skip1@')
t.check(code == 451 and not got and
        mx.count_log(r'event=milter_error plugin=milter error="skip at end of message"') == 1,
        'SMFIR_SKIP at end of message: the filter failed, 451, not relayed (%s %s, relayed %d)' %
        (code, text, len(got)))

# SMFIR_SHUTDOWN / SMFIR_CONN_FAIL: 421 and the session ends, as behind Postfix; the log
# says why, as for every other milter failure (it said a bare reason=milter).
for tag, word, why in (('sd1', 'SHUTDOWN', 'milter-shutdown'), ('cfail1', 'CONNFAIL', 'milter-conn-fail')):
    c = t.Client(mx.port, timeout=30)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('DATA')
    c.send(t.message(tag, word + '\r\n') + b'\r\n.\r\n')
    code, text = c.reply()
    closed = c.is_closed(5)
    c.close()
    t.check(code == 421 and closed and not be.find('Message-ID: <%s@' % tag),
            '%s: 421 and the session closes, not relayed (%s %s, closed %s)' % (word, code, text, closed))
    t.check(mx.count_log(r'event=tempfail stage=data reason=%s\b' % why) == 1,
            '%s logged as reason=%s: %s' % (word, why, [ln for ln in mx.log().splitlines() if 'stage=data' in ln][-2:]))

t.check(mx.alive(), 'daemon alive')
mx.stop()
t.stop_proc(hm)
t.finish()
