#!/usr/bin/env python3
"""SMTP smuggling, the scanner's whole family, against the running daemon under each
policy pair (limits.bare_lf normalize|reject x limits.nul reject|strip), by DATA and by
BDAT, to a backend with CHUNKING and to one without (dot-stuffing on the way out):

- only <CRLF>.<CRLF> ends DATA: <LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF>, <CR>.<LF>,
  <CRLF>.<CR><CRLF>, <CRLF>NUL.<CRLF>, <CRLF>.NUL<CRLF> are content; a chunk is counted,
  never parsed, whatever it holds;
- the client gets exactly one reply for the message, and the commands hidden behind the
  fake end never reach a backend as commands (no second MAIL there, ever);
- the policies: a bare CR/LF under bare_lf: reject is 550 5.6.0, a NUL under nul: reject is
  554 5.6.0 (nothing delivered); under normalize/strip the message is delivered once, with
  no NUL, no bare CR or LF, and the smuggled lines inside it as text.
Peers: two scripted backends (with and without CHUNKING)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
plain = mt.Backend(name='plain')
chunky = mt.Backend(name='chunky', chunking=True)
SMUGGLED = b'MAIL FROM:<evil@smuggler.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nsmuggled\r\n'
VARIANTS = [  # (label, the fake end, bare CR/LF in it, NUL in it)
    ('<LF>.<LF>', b'\n.\n', True, False),
    ('<CR>.<CR>', b'\r.\r', True, False),
    ('<LF>.<CRLF>', b'\n.\r\n', True, False),
    ('<CRLF>.<LF>', b'\r\n.\n', True, False),
    ('<CR>.<LF>', b'\r.\n', True, False),
    ('<CRLF>.<CR><CRLF>', b'\r\n.\r\r\n', True, False),
    ('<CRLF>NUL.<CRLF>', b'\r\n\x00.\r\n', False, True),
    ('<CRLF>.NUL<CRLF>', b'\r\n.\x00\r\n', False, True),
    ('NUL in a header', b'\r\nX-Nul: a\x00b\r\n', False, True),
]


def body(tag, fake_end):
    return (b'Subject: ' + tag.encode() + b'\r\nMessage-ID: <' + tag.encode() + b'@smuggling.test>\r\n\r\nbody'
            + fake_end + SMUGGLED + b'tail\r\n')


def send(port, tag, fake_end, bdat):
    """One transaction, the content in one DATA or one BDAT LAST chunk; the replies after
    RCPT (all of them that come within a short wait) and whether the session is in step."""
    c = mt.Client(port)
    c.ehlo()
    c.cmd('MAIL FROM:<sender@example.org>')
    c.cmd('RCPT TO:<user@example.test>')
    data = body(tag, fake_end)
    if bdat:
        c.send(b'BDAT %d LAST\r\n' % len(data) + data)
    else:
        c.cmd('DATA')
        c.send(data + b'.\r\n')
    first = c.reply()
    extra = c.pending(0.5)
    noop = c.cmd('NOOP')[0]
    c.close()
    return first, extra, noop


count = 0
for bare_lf in ('normalize', 'reject'):
    for nul in ('reject', 'strip'):
        for be in (plain, chunky):
            mx = mt.Mxgate(mt.config([be.url], limits={'bare_lf': bare_lf, 'nul': nul, 'max_errors': 1000}),
                           name='mx-%s-%s-%s' % (bare_lf, nul, be.name))
            for label, fake_end, has_bare, has_nul in VARIANTS:
                for bdat in (False, True):
                    how = '%s, bare_lf %s, nul %s, %s to %s' % (label, bare_lf, nul, 'BDAT' if bdat else 'DATA',
                                                                 be.name)
                    count += 1
                    tag = 'smuggling-%d' % count
                    before = len(be.messages)
                    (code, text), extra, noop = send(mx.port, tag, fake_end, bdat)
                    if has_nul and nul == 'reject':
                        want = 554
                    elif has_bare and bare_lf == 'reject':
                        want = 550
                    else:
                        want = 250
                    mt.check(code == want and (want == 250 or '5.6.0' in text), '%s: %d (%s %s)' % (how, want, code, text))
                    mt.check(not extra.strip() and noop == 250, '%s: one reply, in step (%r, NOOP %s)'
                             % (how, extra[:60], noop))
                    got = be.messages[before:]
                    mt.check(len(got) == (1 if want == 250 else 0), '%s: %d message(s) delivered (%d)'
                             % (how, 1 if want == 250 else 0, len(got)))
                    if got:
                        data = got[0]['data']
                        mt.check(b'\x00' not in data, '%s: no NUL reached the backend' % how)
                        mt.check(data.replace(b'\r\n', b'').find(b'\r') < 0 and data.replace(b'\r\n', b'').find(b'\n') < 0,
                                 '%s: no bare CR or LF reached the backend' % how)
                        mt.check(b'MAIL FROM:<evil@smuggler.test>\r\n' in data and data.endswith(b'tail\r\n'),
                                 '%s: the smuggled lines stayed inside the one message' % how)
            mx.stop()
for be in (plain, chunky):
    mt.check(not any('evil@' in cmd for cmd in be.commands),
             'no smuggled command ever reached %s (%r)' % (be.name, [x for x in be.commands if 'evil@' in x][:2]))
mt.finish()
