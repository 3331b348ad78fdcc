#!/usr/bin/env python3
"""A hostile or broken milter speaking the wire protocol by hand.

usage: hostile_milter.py PORT [PROTOCOL_HEX]

Negotiates version 6 with every action and no replies wanted before end of message
(or the protocol mask PROTOCOL_HEX when given, e.g. to ask for steps mxgate does not
send). At end of message the body decides:
  HDR_MANY       adds 1000 headers "X-Many-N: N" and accepts
  HDR_FLOOD      adds headers of 60000 bytes each until 4 MB were sent, then accepts
  HDR_INJECT     header values with CRLF CRLF, bare LF and CR, a name with a space, a
                 changed Subject with CRLF CRLF (what must not open a new header or the body)
  SHUTDOWN       SMFIR_SHUTDOWN          CONNFAIL  SMFIR_CONN_FAIL
  CHGFROM_MANY   1001 SMFIR_CHGFROM with ESMTP arguments, the last <last@example.net>
  QUARANTINE     SMFIR_QUARANTINE "held by raw" and accepts
  REPLY_MIX      SMFIR_REPLYCODE "550-5.7.1 first\r\n450 4.7.1 second" (a later line of
                 another code and class)
  REPLY_CTL      SMFIR_REPLYCODE of two lines with an ESC sequence, BEL, a lone CR and LF,
                 DEL, a C1 control (raw and in UTF-8), a latin-1 byte and UTF-8 text
  RCPT_MANY N    adds N recipients <mN@example.test> and accepts
  DEL_MANY N     deletes N recipients <dN@example.test> that are not there, then
                 <b@example.test>, adds <kept@example.test> and accepts
  CHGFROM_ARGS   SMFIR_CHGFROM "<new@example.net>" "SIZE=1 BODY=8BITMIME" and accepts
  SKIP_EOM       SMFIR_QUARANTINE "skip test", a header, then SMFIR_SKIP (no verdict of
                 end of message: Sendmail calls it a bogus response)
  otherwise      accepts.
Every connection is logged to stderr with the protocol steps it was sent.
"""
import socket
import struct
import sys
import threading

from bad_peer import frame, read_frame  # the same framing (tests/peers/bad_peer.py)

NR_BEFORE_BODY = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000


def eom_reply(body):
    if b'HDR_MANY' in body:
        return b''.join(frame(b'h', b'X-Many-%d\0%d\0' % (i, i)) for i in range(1000)) + frame(b'a')
    if b'HDR_FLOOD' in body:
        v = b'x' * 60000
        return b''.join(frame(b'h', b'X-Flood-%d\0%s\0' % (i, v)) for i in range(70)) + frame(b'a')
    if b'RCPT_MANY' in body:
        n = int(body.split(b'RCPT_MANY ', 1)[1].split()[0])
        return b''.join(frame(b'+', b'<m%d@example.test>\0' % i) for i in range(n)) + frame(b'a')
    if b'REPLY_MIX' in body:
        return frame(b'y', b'550-5.7.1 first\r\n450 4.7.1 second\0')
    if b'REPLY_CTL' in body:
        return frame(b'y', b'550-5.7.1 red \x1b[31mtext\x07\r\n550 5.7.1 lone\rcr lone\nlf del\x7f '
                     b'c1\xc2\x9b raw\x9b latin\xe9 utf8 \xc3\xa9\0')
    if b'BODY_LF' in body:
        return frame(b'b', b'line one\nline two\n.\nlast\n') + frame(b'a')
    if b'BODY_NOEOL' in body:
        return frame(b'b', b'no end of line') + frame(b'a')
    if b'BODY_DOT' in body:
        return frame(b'b', b'line\r\n.\r\nRSET\r\n..two dots\r\n') + frame(b'a')
    if b'BODY_CR' in body:
        return frame(b'b', b'bare\rcr\r\n') + frame(b'a')
    if b'DEL_MANY' in body:
        n = int(body.split(b'DEL_MANY ', 1)[1].split()[0])
        return b''.join(frame(b'-', b'<d%d@example.test>\0' % i) for i in range(n)) + \
            frame(b'-', b'<b@example.test>\0') + frame(b'+', b'<kept@example.test>\0') + frame(b'a')
    if b'HDR_INJECT' in body:
        return frame(b'h', b'X-Inject\0v\r\nBcc: evil@example.net\r\n\r\nnew body\0') + \
            frame(b'h', b'X-Lf\0a\nb\rc\0') + frame(b'h', b'Bad Name\0x\0') + \
            frame(b'm', b'\0\0\0\x01Subject\0s\r\n\r\ninjected\0') + frame(b'a')
    if b'SHUTDOWN' in body:
        return frame(b'4')
    if b'CONNFAIL' in body:
        return frame(b'f')
    if b'SKIP_EOM' in body:
        return frame(b'q', b'skip test\0') + frame(b'h', b'X-Skipped\0yes\0') + frame(b's')
    if b'QUARANTINE' in body:
        return frame(b'q', b'held by raw\0') + frame(b'a')
    if b'CHGFROM_MANY' in body:
        return b''.join(frame(b'e', b'<s%d@example.net>\0SIZE=%d\0' % (i, i)) for i in range(1000)) + \
            frame(b'e', b'<last@example.net>\0SIZE=1\0') + frame(b'a')
    if b'CHGFROM_ARGS' in body:
        return frame(b'e', b'<new@example.net>\0SIZE=1 BODY=8BITMIME\0') + frame(b'a')
    return frame(b'a')


def serve(c, proto):
    body, seen = b'', []
    try:
        while True:
            cmd, data = read_frame(c)
            seen.append(cmd.decode('latin-1'))
            if cmd == b'O':
                c.sendall(frame(b'O', struct.pack('>III', 6, 0x1ff, proto)))
            elif cmd == b'M':
                body = b''
            elif cmd == b'B':
                body += data
                if not proto & 0x80000:
                    c.sendall(frame(b'c'))
            elif cmd in (b'C', b'H', b'R', b'T', b'L', b'N', b'U') and \
                    not proto & {b'C': 0x1000, b'H': 0x2000, b'R': 0x8000, b'T': 0x10000,
                                 b'L': 0x80, b'N': 0x40000, b'U': 0x20000}[cmd]:
                c.sendall(frame(b'c'))
            elif cmd == b'S' and not proto & 0x4000:
                c.sendall(frame(b'c'))
            elif cmd == b'E':
                body += data
                c.sendall(eom_reply(body))
            elif cmd == b'Q':
                return
    except (EOFError, OSError):
        return
    finally:
        sys.stderr.write('steps %s\n' % ''.join(seen))
        sys.stderr.flush()
        c.close()


def main():
    port = int(sys.argv[1])
    proto = int(sys.argv[2], 16) if len(sys.argv) > 2 else NR_BEFORE_BODY
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, proto), daemon=True).start()


if __name__ == '__main__':
    main()
