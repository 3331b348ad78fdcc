#!/usr/bin/env python3
"""A milter speaking the wire protocol by hand whose option negotiation is set on the
command line, and which writes down every command it is sent: for what the negotiation
promises both ways (the actions it asked for, the steps it skips, the replies it will not
send, the macros it asked for).

usage: neg_milter.py PORT LOG ACTIONS PROTOCOL [STAGE=NAMES ...] [mods=x,y,...] [version=N]
                    [stray=CMDS] [stray_now=CMDS] [skip=CMDS]

ACTIONS and PROTOCOL (numbers, 0x... taken) are the SMFIF_* and SMFIP_* masks of its
SMFIC_OPTNEG reply (version 6, or N); each STAGE=NAMES (STAGE a number, SMFIM_*; NAMES space
separated) is a macro list appended to it (SMFIR_SETSYMLIST, as smfi_setsymlist asks).

Every command received is a line of LOG: "N CMD" (N the connection's number from 1, CMD
the command letter), for SMFIC_MACRO "N D STAGE name,name,...". It answers each command
SMFIR_CONTINUE, but not those its PROTOCOL says it will not answer (SMFIP_NR_*); at end of
message the body's "MODS=x,y,..." (one letter each, SMFIR_*) decides the modifications
sent before SMFIR_ACCEPT (mods=... on the command line when the body has none: a filter
that skips the body):
  h add header X-Neg: added        i insert header X-Neg-Ins: inserted at 0
  m change the Subject             b replace the body ("replaced body")
  + add recipient <added@example.test>, 2 the same with ESMTP arguments ""
  - delete recipient <b@example.test>, e change the sender to <new@example.org>
  q quarantine "neg test"
  M change the second X-Dup to "second changed"   I insert X-Neg-End: appended at index 1000
A filter that lies about SMFIP_NR_*: for each command letter in stray=CMDS it answers
SMFIR_REJECT although its PROTOCOL says it will not, held back and written in one write
with its next reply (so the stray reply and the one awaited reach the MTA together); for
stray_now=CMDS it writes that SMFIR_REJECT at once and logs "N stray-sent"; when the MTA
then closes that connection (without SMFIC_QUIT) it logs "N closed". For each command
letter in skip=CMDS it answers SMFIR_SKIP instead of SMFIR_CONTINUE ("skip further events
of this type"; libmilter's SMFIS_SKIP, negotiated with SMFIP_SKIP).
"""
import socket
import struct
import sys
import threading

from bad_peer import frame, read_frame  # the same framing (tests/peers/bad_peer.py)

NR = {b'C': 0x1000, b'H': 0x2000, b'M': 0x4000, b'R': 0x8000, b'T': 0x10000, b'L': 0x80, b'N': 0x40000,
      b'B': 0x80000}

LOCK = threading.Lock()
COUNT = [0]


def mods(body, want=b''):
    if b'MODS=' in body:
        want = body.split(b'MODS=', 1)[1].split(b'\r', 1)[0].split(b'\n', 1)[0]
    out = b''
    for m in want.split(b','):
        out += {
            b'h': frame(b'h', b'X-Neg\0added\0'),
            b'i': frame(b'i', struct.pack('>I', 0) + b'X-Neg-Ins\0inserted\0'),
            b'm': frame(b'm', struct.pack('>I', 1) + b'Subject\0changed\0'),
            b'b': frame(b'b', b'replaced body\r\n'),
            b'+': frame(b'+', b'<added@example.test>\0'),
            b'2': frame(b'2', b'<added@example.test>\0\0'),
            b'-': frame(b'-', b'<b@example.test>\0'),
            b'e': frame(b'e', b'<new@example.org>\0\0'),
            b'q': frame(b'q', b'neg test\0'),
            b'M': frame(b'm', struct.pack('>I', 2) + b'X-Dup\0second changed\0'),
            b'I': frame(b'i', struct.pack('>I', 1000) + b'X-Neg-End\0appended\0'),
        }.get(m, b'')
    return out + frame(b'a')


def serve(c, log, optneg, proto, default, stray=b'', stray_now=b'', skip=b''):
    with LOCK:
        COUNT[0] += 1
        n = COUNT[0]

    def note(line):
        with LOCK, open(log, 'a') as f:
            f.write('%d %s\n' % (n, line))

    body, held, stray_sent = b'', b'', False

    def send(data):
        nonlocal held
        c.sendall(held + data)
        held = b''

    try:
        while True:
            cmd, data = read_frame(c)
            if cmd == b'D':
                names = [x.decode('latin-1') for x in data[1:].split(b'\0')[0::2] if x]
                note('D %s %s' % (data[:1].decode('latin-1'), ','.join(names)))
                continue
            note(cmd.decode('latin-1'))
            if cmd in NR and proto & NR[cmd] and cmd in stray:
                held += frame(b'r')
            if cmd in NR and proto & NR[cmd] and cmd in stray_now:
                c.sendall(frame(b'r'))
                note('stray-sent')
                stray_sent = True
            if cmd == b'O':
                send(optneg)
            elif cmd == b'M':
                body = b''
            elif cmd == b'B':
                body += data
            elif cmd == b'E':
                body += data
                send(mods(body, default))
                continue
            elif cmd == b'Q':
                return
            if cmd in NR and not proto & NR[cmd]:
                send(frame(b's' if cmd in skip else b'c'))
    except (EOFError, OSError):
        if stray_sent:
            note('closed')
    finally:
        c.close()


def main():
    port, log = int(sys.argv[1]), sys.argv[2]
    actions, proto = int(sys.argv[3], 0), int(sys.argv[4], 0)
    lists, default, version, stray, stray_now, skip = b'', b'', 6, b'', b'', b''
    for a in sys.argv[5:]:
        st, names = a.split('=', 1)
        if st == 'mods':
            default = names.encode()
            continue
        if st == 'version':
            version = int(names)
            continue
        if st in ('stray', 'stray_now', 'skip'):
            if st == 'stray':
                stray = names.encode()
            elif st == 'skip':
                skip = names.encode()
            else:
                stray_now = names.encode()
            continue
        lists += struct.pack('>I', int(st)) + names.encode() + b'\0'
    optneg = frame(b'O', struct.pack('>III', version, actions, proto) + lists)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(64)
    print('neg milter on', port, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, log, optneg, proto, default, stray, stray_now, skip), daemon=True).start()


if __name__ == '__main__':
    main()
