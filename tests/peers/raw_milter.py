#!/usr/bin/env python3
"""A milter speaking the wire protocol by hand, for replies libmilter will not send.

usage: raw_milter.py PORT

Negotiates version 6 with every action, SMFIP_SKIP, and no replies wanted before end of
message except for body chunks. Each body chunk is answered SMFIR_CONTINUE, or
SMFIR_SKIP once the body seen so far holds SKIPBODY. At end of message the body decides:
  REPLY_MISMATCH  SMFIR_REPLYCODE "550 4.7.1 class mismatch" (enhanced code of another class)
  REPLY_250       SMFIR_REPLYCODE "250 2.0.0 fine"           (not a refusal)
  REPLY_421       SMFIR_REPLYCODE "421 4.7.0 closing"        (Postfix ends the session)
  REPLY_QUOTE     SMFIR_REPLYCODE with '"' and key=value text (the log line must keep it inside reply=)
  INS_HUGE        SMFIR_INSHEADER index 0xffffffff "X-Huge-Index: bottom" (past the end)
  CHG_HUGE        SMFIR_CHGHEADER index 0x80000000 "Subject: huge index" (past the last)
  EXTRA_REPLY     accepts twice (a reply nobody asked for follows the verdict)
  SHOW_HEADERS    adds "X-Raw-Seen: NAME=VALUE|..." for the headers named X-Show*, each
                  space, tab and LF of the value as [20], [09], [0a] (what the filter got)
  otherwise       adds "X-Raw-Chunks: N" (body chunks received) and accepts.
A body chunk holding DIE_IN_BODY makes it hang up at once (a filter dying mid-message).
"""
import socket
import struct
import sys
import threading

from bad_peer import frame, read_frame  # the same framing (tests/peers/bad_peer.py)

NR_BEFORE_BODY = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x80 | 0x40000
SMFIP_SKIP = 0x400


def eom_reply(body, chunks, headers=()):
    if b'SHOW_HEADERS' in body:
        seen = b'|'.join(n + b'=' + v.replace(b' ', b'[20]').replace(b'\t', b'[09]').replace(b'\n', b'[0a]')
                         for n, v in headers if n.lower().startswith(b'x-show'))
        return frame(b'h', b'X-Raw-Seen\0' + seen + b'\0') + frame(b'a')
    if b'REPLY_MISMATCH' in body:
        return frame(b'y', b'550 4.7.1 class mismatch\0')
    if b'REPLY_250' in body:
        return frame(b'y', b'250 2.0.0 fine\0')
    if b'REPLY_QUOTE' in body:
        return frame(b'y', b'550 5.7.1 refused "spam" event=delivered x=y\0')
    if b'REPLY_421' in body:
        return frame(b'y', b'421 4.7.0 closing\0')
    if b'INS_HUGE' in body:
        return frame(b'i', struct.pack('>I', 0xffffffff) + b'X-Huge-Index\0bottom\0') + frame(b'a')
    if b'EXTRA_REPLY' in body:
        return frame(b'a') + frame(b'a')
    if b'CHG_HUGE' in body:
        return frame(b'm', struct.pack('>I', 0x80000000) + b'Subject\0huge index\0') + frame(b'a')
    return frame(b'h', b'X-Raw-Chunks\0%d\0' % chunks) + frame(b'a')


def serve(c):
    body, chunks, skipped, headers = b'', 0, False, []
    try:
        while True:
            cmd, data = read_frame(c)
            if cmd == b'O':
                c.sendall(frame(b'O', struct.pack('>III', 6, 0x1ff, NR_BEFORE_BODY | SMFIP_SKIP)))
            elif cmd == b'M':
                body, chunks, skipped, headers = b'', 0, False, []
            elif cmd == b'L':
                name, value = data.split(b'\0')[:2]
                headers.append((name, value))
            elif cmd == b'B':
                chunks += 1
                body += data
                if b'DIE_IN_BODY' in body:
                    return
                if b'SKIPBODY' in body and not skipped:
                    skipped = True
                    c.sendall(frame(b's'))
                else:
                    c.sendall(frame(b'c'))
            elif cmd == b'E':
                body += data
                c.sendall(eom_reply(body, chunks, headers))
            elif cmd == b'Q':
                return
    except (EOFError, OSError):
        pass
    finally:
        c.close()


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', int(sys.argv[1])))
    s.listen(64)
    print('raw milter on', sys.argv[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == '__main__':
    main()
