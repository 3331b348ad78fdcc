#!/usr/bin/env python3
"""CHUNKING (RFC 3030) through mxgate, against the running daemon: BDAT from clients (chunks,
LAST, sizes against SIZE, a refused chunk still read and thrown away, BDAT and DATA never
mixed, a chunk's content never taken for commands), the end of a BDAT message answered 250
only after the backend's 250, and the way out: BDAT to a backend that offers CHUNKING (the
scripted Backend), DATA with dot-stuffing to one that does not (smtp-sink and the Backend
without it). Peers: smtp-sink, two scripted backends."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
chunky = mt.Backend(name='chunky', chunking=True)
plain = mt.Backend(name='plain')
refusing = mt.Backend(name='refusing', chunking=True, mode='reject_data')
LIMIT = 20000


def gate(server, name):
    return mt.Mxgate(mt.config([server], limits={'max_message_size': LIMIT, 'max_errors': 100}), name=name)


# A body whose chunk boundaries fall inside a CRLF and right before a "." line; the dot
# lines and an end-of-data look-alike are content (a chunk is counted, never parsed).
PART1 = (b'From: a@example.org\r\nTo: b@example.test\r\nSubject: chunked\r\n'
         b'Message-ID: <%s@mxtest.example>\r\n\r\nline one\r')
PART2 = b'\n.\r\n..two dots\r\n.\r\nMAIL FROM:<smuggled@evil.test>\r\n'
PART3 = b'last line\r\n'


def chunked(c, tag, parts=None, rcpt='b@example.test'):
    """MAIL, RCPT, then parts as BDAT chunks (the last one LAST), all pipelined in one write.
    Returns the replies: MAIL, RCPT, one per chunk."""
    parts = parts or [PART1 % tag.encode(), PART2, PART3]
    wire = b'MAIL FROM:<a@example.org>\r\nRCPT TO:<%s>\r\n' % rcpt.encode()
    for i, p in enumerate(parts):
        wire += b'BDAT %d%s\r\n' % (len(p), b' LAST' if i == len(parts) - 1 else b'') + p
    c.send(wire)
    return [c.reply() for _ in range(2 + len(parts))]


def body_of(tag):
    return PART1 % tag.encode() + PART2 + PART3


# ------------------------------------------------------------------ to each kind of backend
for name, be, want_bdat in (('smtp-sink', sink, False), ('a backend with CHUNKING', chunky, True),
                            ('a backend without CHUNKING', plain, False)):
    mx = gate(be.url, 'mxgate-' + be.name if be is not sink else 'mxgate-sink')
    c = mt.Client(mx.port)
    code, text = c.ehlo()
    mt.check(code == 250 and 'CHUNKING' in text, 'EHLO announces CHUNKING (%s)' % name)
    tag = 'bdat-' + name.replace(' ', '-')
    replies = chunked(c, tag)
    codes = [r[0] for r in replies]
    mt.check(codes[:4] == [250, 250, 250, 250], '%s: MAIL, RCPT and two chunks 250 (%r)' % (name, replies))
    mt.check(codes[4] == 250 and 'queued as' in replies[4][1], '%s: BDAT LAST 250 queued (%r)' % (name, replies[4]))
    mt.check(c.cmd('NOOP')[0] == 250, '%s: in step after the chunks' % name)
    if be is sink:
        msgs = [m for m in sink.messages() if tag.encode() in m['data']]
        mt.check(len(msgs) == 1 and sink.count() == 1, '%s: one message, nothing smuggled (%d)' % (name, sink.count()))
        if msgs:
            # smtp-sink's dump has LF endings
            want = body_of(tag).replace(b'\r\n', b'\n')
            mt.check(want in msgs[0]['data'], '%s: content exact through DATA and stuffing' % name)
    else:
        msgs = be.by_tag(tag)
        mt.check(len(msgs) == 1 and len(be.messages) == 1, '%s: one message, nothing smuggled' % name)
        if msgs:
            mt.check(msgs[0]['data'].endswith(body_of(tag)), '%s: content exact' % name)
            mt.check(msgs[0]['bdat'] == want_bdat, '%s: sent with %s' % (name, 'BDAT' if want_bdat else 'DATA'))
        mt.check(not any('smuggled' in x for x in be.commands), '%s: no command from chunk content' % name)
    # DATA from a client to the same backend: BDAT out when it offers CHUNKING, dots intact
    tag2 = tag + '-data'
    body = mt.message(tag2, body='.\r\n..\r\n.x\r\nend\r\n')
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], body)
    mt.check(r[0] == 250, '%s: a DATA client delivered (%r)' % (name, r))
    if be is not sink:
        got = be.by_tag(tag2)
        mt.check(len(got) == 1 and got[0]['data'].endswith(b'.\r\n..\r\n.x\r\nend\r\n'),
                 '%s: a DATA message with dot lines arrives exact' % name)
        if got:
            mt.check(got[0]['bdat'] == want_bdat, '%s: the DATA message went as %s' % (name, 'BDAT' if want_bdat else 'DATA'))
    c.cmd('QUIT')
    c.close()
    mx.stop()

# ------------------------------------------------------------------ refusals keep the stream in step
mx = gate(chunky.url, 'mxgate-refusals')
n0 = len(chunky.messages)
c = mt.Client(mx.port)
c.ehlo()
# no MAIL: 503, the chunk (a QUIT inside) is read and thrown away
c.send(b'BDAT 6 LAST\r\nQUIT\r\n')
code, text = c.reply()
mt.check(code == 503, 'BDAT before MAIL: 503 (%s %s)' % (code, text))
mt.check(c.cmd('NOOP')[0] == 250, 'the chunk before MAIL was discarded, not run')
# no recipient: 554
c.cmd('MAIL FROM:<a@example.org>')
c.send(b'BDAT 6\r\nNOOP\r\n')
code, text = c.reply()
mt.check(code == 554, 'BDAT without a recipient: 554 (%s %s)' % (code, text))
mt.check(c.cmd('RSET')[0] == 250, 'RSET after a refused chunk')
# over the size limit: 552, the chunk still read; later chunks refused until RSET
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
big = b'x' * (LIMIT + 10)
c.send(b'BDAT %d\r\n' % len(big) + big)
code, text = c.reply()
mt.check(code == 552 and '5.3.4' in text, 'a chunk over SIZE: 552 5.3.4 (%s %s)' % (code, text))
c.send(b'BDAT 4 LAST\r\nab\r\n')
code, text = c.reply()
mt.check(code == 554, 'the chunk after a refused one: 554 (%s %s)' % (code, text))
mt.check(c.cmd('NOOP')[0] == 250, 'in step after the refused chunks')
mt.check(len(chunky.messages) == n0, 'nothing delivered from a refused transaction')
mt.check(c.cmd('RSET')[0] == 250, 'RSET ends the failed transaction')
# BDAT then DATA in one transaction: DATA refused
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
c.send(b'BDAT 4\r\nab\r\n')
mt.check(c.reply()[0] == 250, 'a first chunk')
code, text = c.cmd('DATA')
mt.check(code == 503, 'DATA after BDAT: 503 (%s %s)' % (code, text))
# BDAT 0 LAST ends the message
code, text = c.cmd('BDAT 0 LAST')
mt.check(code == 250 and 'queued as' in text, 'BDAT 0 LAST ends the message (%s %s)' % (code, text))
mt.check(len(chunky.messages) == n0 + 1 and chunky.messages[-1]['data'].endswith(b'\r\nab\r\n'),
         'the two-chunk message arrived')
# a chunk far over the limit (ten times it) is read and thrown away as Postfix does: 552 and
# the session goes on. The chunk comes in two writes, the second after the 552 was read, so
# the discard outlives the reply (before the fix: 552, then the connection was closed)
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
huge = b'y' * (LIMIT * 10)
c.send(b'BDAT %d\r\n' % len(huge) + huge[:LIMIT])
code, text = c.reply()
mt.check(code == 552 and '5.3.4' in text, 'a chunk ten times the limit: 552 5.3.4 (%s %s)' % (code, text))
c.send(huge[LIMIT:])
code, text = c.cmd('RSET')
mt.check(code == 250, '... the chunk is read and discarded, the session goes on: RSET 250 (%s %s)' % (code, text))
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
c.send(b'BDAT 4 LAST\r\nok\r\n')
code, text = c.reply()
mt.check(code == 250 and 'queued as' in text, '... and a message after it goes through (%s %s)' % (code, text))
mt.check(chunky.messages[-1]['data'].endswith(b'\r\nok\r\n'), '... with its own content')
c.close()
# a refused chunk (no MAIL, first thing in the session) whose octets come after the 503:
# read under the data timers, not timed out at once (before the fix, with no message before
# it in the session, the chunk had a deadline of 0: 421 timeout a millisecond after the 503)
c = mt.Client(mx.port)
c.ehlo()
c.send(b'BDAT 6 LAST\r\n')
code, text = c.reply()
mt.check(code == 503, 'BDAT before MAIL as the first command: 503 (%s %s)' % (code, text))
mt.check(c.pending(0.5) == b'', 'nothing more while the chunk is awaited (%r)' % c.buf[:60])
c.send(b'QUIT\r\n')
mt.check(c.cmd('NOOP')[0] == 250, 'a refused chunk sent after its reply is read, not run and not timed out')
c.close()
# a BDAT without a valid size, or with a word other than LAST: the session ends (the chunk
# end is unknown), with one reply that says so (RFC 5321 3.8: 421). Until session 22 a 501
# and then an unasked 421: two replies to one command, which a pipelining client pairs with
# the command after it.
for line in ('BDAT x LAST', 'BDAT 10 FOO', 'BDAT'):
    c = mt.Client(mx.port)
    c.ehlo()
    c.cmd('MAIL FROM:<a@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    code, text = c.cmd(line)
    mt.check(code == 421 and text.startswith('421 4.5.4 '), '%s: 421 4.5.4 (%s %s)' % (line, code, text))
    mt.check(c.is_closed(), '%s: ... and the session closes' % line)
    mt.check(c.buf == b'', '%s: ... after that one reply (%r)' % (line, c.buf[:80]))
    c.close()
# BODY=BINARYMIME is not announced (EHLO has CHUNKING, not BINARYMIME): MAIL refuses it
# (RFC 5321 4.1.1.11), so no DATA runs in a BINARYMIME transaction and no backend is sent a
# BODY value it never offered. Before the fix MAIL got 250, DATA 354, and the backend (which
# offers 8BITMIME only) got "MAIL FROM:<...> BODY=BINARYMIME".
c = mt.Client(mx.port)
code, text = c.ehlo()
mt.check('BINARYMIME' not in text, 'EHLO does not announce BINARYMIME')
code, text = c.cmd('MAIL FROM:<a@example.org> BODY=BINARYMIME')
mt.check(code == 555 and '5.5.4' in text, 'MAIL BODY=BINARYMIME: 555 5.5.4 (%s %s)' % (code, text))
code, text = c.cmd('RCPT TO:<b@example.test>')
mt.check(code == 503, 'no transaction after the refused MAIL: RCPT 503 (%s %s)' % (code, text))
# pipelined, with a chunk behind it: the chunk is refused and read, the session stays in step
body = b'Subject: bin\r\n\r\nab\r\n'
c.send(b'MAIL FROM:<a@example.org> body=binarymime\r\nRCPT TO:<b@example.test>\r\nBDAT %d LAST\r\n'
       % len(body) + body)
codes = [c.reply()[0] for _ in range(3)]
mt.check(codes == [555, 503, 503], 'pipelined BINARYMIME transaction: 555, 503, 503 (%r)' % codes)
mt.check(c.cmd('NOOP')[0] == 250, 'in step after the refused BINARYMIME transaction')
code, text = c.cmd('MAIL FROM:<a@example.org> BODY=8BITMIME')
mt.check(code == 250, 'BODY=8BITMIME still taken (%s %s)' % (code, text))
c.close()
mt.check(not any('BINARYMIME' in x.upper() for x in chunky.commands),
         'no backend was sent BODY=BINARYMIME (%r)' % [x for x in chunky.commands if 'BINARY' in x.upper()][:2])
mx.stop()

# ------------------------------------------------------------------ 250 only after the backend's 250
mx = gate(refusing.url, 'mxgate-refusing')
c = mt.Client(mx.port)
c.ehlo()
replies = chunked(c, 'bdat-refused')
mt.check(replies[4][0] == 554, 'the backend refuses the message: BDAT LAST gets its 554 (%r)' % (replies[4],))
mt.check(c.cmd('NOOP')[0] == 250, 'in step after the refusal')
c.close()
mx.stop()
mt.finish()
