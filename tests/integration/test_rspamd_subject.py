#!/usr/bin/env python3
"""rspamd's "rewrite subject" action (its /checkv2 reply: "action": "rewrite subject" and the
new Subject in "subject"), applied with use_action: true as rspamd's own milter applies it —
the first Subject field replaced (CHGHEADER Subject 1), one added when the message has none,
no X-Spam-Prev-Subject (SpamAssassin's). Without use_action only the score counts. Against
tests/peers/fake_rspamd.py, which answers with rspamd 3.x's JSON (rspamd itself is not
installed here)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()


def send(port, data):
    return mt.send_mail(port, 'a@example.org', ['b@example.test'], data, ehlo='client.example.org', timeout=30)


def head(be, tag):
    got = be.by_tag(tag)
    return got[0]['data'].split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace') if got else ''


def subjects(h):
    return [re.sub(r'\r\n[ \t]+', ' ', v) for v in re.findall(r'(?im)^Subject:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', h)]


rs = mt.fake_rspamd()
be = mt.Backend()
plugin = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '10s'}
m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test',
                        plugins=[dict(plugin, options={'use_action': True})]))

code, text = send(m.port, mt.message('s1', 'REWRITEME\r\n'))
h = head(be, 's1')
mt.check(code == 250 and subjects(h) == ['*** SPAM *** test s1'],
         'rewrite subject: the Subject is rspamd\'s (%s %s): %s' % (code, text, subjects(h)))
mt.check('X-Spam-Prev-Subject' not in h, 'no X-Spam-Prev-Subject (rspamd\'s milter adds none)')
mt.check(re.search(r'(?m)^Subject:.*\r\nMessage-ID:', h) is not None,
         'the Subject changed in its place (before Message-ID): %r' % h)

# No Subject at all: rspamd's template over an empty one, and the field is added.
data = mt.message('s2', 'REWRITEME\r\n').replace(b'Subject: test s2\r\n', b'')
code, text = send(m.port, data)
h = head(be, 's2')
mt.check(code == 250 and [v.rstrip() for v in subjects(h)] == ['*** SPAM ***'],
         'no Subject: one added (%s): %s' % (code, subjects(h)))

# Two Subject fields: the first is replaced, the second left (CHGHEADER index 1).
data = mt.message('s3', 'REWRITEME\r\n', headers=('Subject: second',))
code, text = send(m.port, data)
h = head(be, 's3')
mt.check(code == 250 and subjects(h) == ['*** SPAM *** test s3', 'second'],
         'two Subjects: the first replaced (%s): %s' % (code, subjects(h)))

# A folded, non-ASCII Subject: rspamd MIME-encodes the new value; it arrives as sent.
data = mt.message('s4', 'REWRITEME\r\n').replace(b'Subject: test s4', 'Subject: caf\u00e9\r\n s4'.encode())
code, text = send(m.port, data)
h = head(be, 's4')
mt.check(code == 250 and subjects(h) == ['=?utf-8?q?***_SPAM_***_caf=C3=A9_s4?='],
         'an encoded word kept as rspamd sent it (%s): %s' % (code, subjects(h)))

# A line break in "subject" is no header of its own.
code, text = send(m.port, mt.message('s5', 'REWRITEEVIL\r\n'))
h = head(be, 's5')
mt.check(code == 250 and not re.search(r'(?im)^Bcc:', h) and len(subjects(h)) == 1,
         'a line break in rspamd\'s subject adds no header (%s): %r' % (code, h))

# Too long to hold: not applied (never half an encoded word), said in the log.
code, text = send(m.port, mt.message('s6', 'REWRITELONG\r\n'))
h = head(be, 's6')
mt.check(code == 250 and subjects(h) == ['test s6'], 'a 3,000-octet subject is not applied (%s): %s' % (code, subjects(h)))
mt.check('error="subject too long"' in m.log(), 'and logged')

# Without use_action: rspamd's score only, the Subject as it came.
plain = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plugin]), name='mx-plain')
code, text = send(plain.port, mt.message('s7', 'REWRITEME\r\n'))
h = head(be, 's7')
mt.check(code == 250 and subjects(h) == ['test s7'], 'without use_action the Subject stays (%s): %s' % (code, subjects(h)))
plain.stop()

m.stop()
mt.stop_proc(rs)
mt.finish()
