#!/usr/bin/env python3
"""Misbehaving content-filter peers for mxgate's fault tests.

usage: bad_peer.py PORT MODE
  milter-garbage     answers option negotiation with bytes that are no milter frame
  milter-oversized   answers with a frame header announcing 2 GB
  milter-disconnect  reads the negotiation and hangs up
  milter-stall       reads and never answers
  milter-eom-garbage negotiates properly (no replies wanted before end of message), then
                     answers end of message with an unknown reply command
  milter-eom-close   negotiates properly, then hangs up at end of message
  clamd-close        reads part of the stream, then hangs up (clamd killed mid-scan)
  clamd-garbage      reads the whole stream, answers nonsense
  clamd-stall        reads the stream, never answers
"""
import socket
import struct
import sys
import threading
import time

# SMFIP_NR_CONN|NR_HELO|NR_MAIL|NR_RCPT|NR_DATA|NR_HDR|NR_EOH|NR_BODY
NR_ALL = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x80 | 0x40000 | 0x80000


def read_exact(c, n):
    b = b''
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b


def read_frame(c):
    (n,) = struct.unpack('>I', read_exact(c, 4))
    d = read_exact(c, n)
    return d[:1], d[1:]


def frame(cmd, data=b''):
    return struct.pack('>I', len(data) + 1) + cmd + data


def serve(c, mode):
    try:
        if mode.startswith('milter'):
            cmd, _ = read_frame(c)
            if mode == 'milter-garbage':
                c.sendall(b'HTTP/1.0 200 OK\r\n\r\nhello')
                time.sleep(5)
                return
            if mode == 'milter-oversized':
                c.sendall(struct.pack('>I', 0x7fffffff) + b'h')
                time.sleep(5)
                return
            if mode == 'milter-disconnect':
                return
            if mode == 'milter-stall':
                time.sleep(60)
                return
            c.sendall(frame(b'O', struct.pack('>III', 6, 0x1ff, NR_ALL)))
            while True:
                cmd, _ = read_frame(c)
                if cmd == b'E':
                    if mode == 'milter-eom-close':
                        return
                    c.sendall(frame(b'Z', b'what'))
                    time.sleep(5)
                    return
                if cmd == b'Q':
                    return
        if mode.startswith('clamd'):
            got = read_exact(c, 10)  # zINSTREAM\0
            if mode == 'clamd-close':
                read_exact(c, 4)
                return
            while True:
                (n,) = struct.unpack('>I', read_exact(c, 4))
                if n == 0:
                    break
                read_exact(c, n)
            if mode == 'clamd-stall':
                time.sleep(60)
                return
            c.sendall(b'this is not clamd\0')
    except (EOFError, OSError):
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, mode), daemon=True).start()


if __name__ == '__main__':
    main()
