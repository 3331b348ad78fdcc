#!/usr/bin/env python3
"""A header value a peer supplies (a milter's smfi_addheader, a plugin's add_header) can
never start a header line, nor fold onto a line of white space alone.

A milter copying text it took from the message (a decoded Subject, a filename) may hand
mxgate a value with line breaks in it. mxgate turned a break followed by white space into a
fold and any other into a space, so no field could be started; but `a<LF> <LF> b` became
`a<CRLF> <CRLF> b`: a header line of white space alone, which RFC 5322 3.2.2 says must not
be generated (obs-FWS) and which readers disagree on: Postfix's cleanup, Python's email and
SpamAssassin read it as part of the field; a reader that takes a blank-looking line for
the end of the header block moves every field below it into the body. Now a peer's line
break folds only onto visible text on the same continuation line; every other one is a
space. An author's fold is still kept octet for octet (OpenDKIM's default canonicalization,
simple, signs its DKIM-Signature as folded: test_milter_real checks a signature verifies).
Peers: python3-milter (tests/peers/mx_milter_ops.py), Postfix's smtp-sink and its dump of
what it received."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.need_python_milter()

ms = mt.milter_ops('one')
sink = mt.Sink()
mx = mt.Mxgate(mt.config([sink.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % ms.port, 'on_error': 'tempfail', 'timeout': '10s'}]))

FIELD = re.compile(rb'^[!-9;-~]+:')


def delivered(tag, ops):
    """Sends a message whose milter runs ops; the header block smtp-sink received, as lines."""
    data = mt.message(tag, 'body of %s\r\n' % tag, headers=['X-Ops-one: %s ; noseen' % ops])
    r = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data, ehlo='client.example.org', timeout=30)
    mt.check(r.code == 250, '%s: delivered (%s %s)' % (tag, r.code, r.text))
    got = [m['data'] for m in sink.messages() if b'Message-ID: <%s@' % tag.encode() in m['data']]
    if len(got) != 1:
        mt.fail('%s: %d copies in the sink' % (tag, len(got)))
    # smtp-sink's dump ends its lines with LF alone
    head, sep, body = got[0].replace(b'\r\n', b'\n').partition(b'\n\n')
    mt.check(sep and body.startswith(b'body of ' + tag.encode()), '%s: the body starts where it did' % tag)
    return head.split(b'\n')


def bad_lines(lines):
    """Header lines that neither start a field nor continue one with visible text."""
    return [x for x in lines if not FIELD.match(x) and not (x[:1] in (b' ', b'\t') and x.strip())]


def field(lines, name):
    """The named field as received (its lines joined by LF), or None."""
    for i, x in enumerate(lines):
        if x.lower().startswith(name.lower().encode() + b':'):
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b' ', b'\t'):
                j += 1
            return b'\n'.join(lines[i:j])
    return None


# A line break onto blanks alone, then text: before the fix `X-Peer: a` + CRLF + ` ` + CRLF
# + ` b`, a line of one space in the header block.
lines = delivered('blank1', r'addesc,X-Peer,a\n \n b')
mt.check(not bad_lines(lines), 'a value with a line of blanks: every header line starts a field or continues '
         'one with visible text (%r)' % bad_lines(lines))
mt.check(field(lines, 'X-Peer') == b'X-Peer: a  \n b', '... the break onto blanks is a space, the fold onto '
         'text stays (%r)' % field(lines, 'X-Peer'))

# Tabs alone, then what poses as a field: still within X-Peer, and no tab-only line.
lines = delivered('blank2', r'addesc,X-Peer,x\r\n\t\r\n\tBcc: victim@example.net')
mt.check(not bad_lines(lines), 'a line of tabs before "Bcc:": no such line reaches the backend (%r)' % bad_lines(lines))
mt.check(field(lines, 'Bcc') is None and b'Bcc: victim' in (field(lines, 'X-Peer') or b''),
         '... and Bcc stays inside X-Peer (%r)' % field(lines, 'X-Peer'))

# CRLF straight into a name never starts a field (as before).
lines = delivered('inject1', r'addesc,X-Peer,y\r\nBcc: victim@example.net')
mt.check(field(lines, 'Bcc') is None and not bad_lines(lines),
         'CRLF before "Bcc:" starts no field (%r)' % field(lines, 'X-Peer'))

# A fold onto visible text is the author's and is kept exactly (a signature covers it).
lines = delivered('fold1', r'addesc,X-Signed,v=1; a=rsa-sha256;\r\n\tb=abc\r\n\t def')
mt.check(field(lines, 'X-Signed') == b'X-Signed: v=1; a=rsa-sha256;\n\tb=abc\n\t def',
         'an author\'s folds are kept octet for octet (%r)' % field(lines, 'X-Signed'))

mt.check(not mx.malformed_log_lines(), 'log lines keep the contract form')
mx.stop()
mt.finish()
