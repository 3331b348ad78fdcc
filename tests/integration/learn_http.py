"""learn_http — the raw HTTP client the tests of POST /learn share (test_metrics_learn_*.py):
sockets to the metrics listener, an answer read to the daemon's close, one POST, and the
spam-like message they teach. Raw sockets, not urllib: the tests hold bodies back, send
heads alone and read what the daemon says before the body.

    import learn_http as lh
    sk = lh.connect(port, src=None, timeout=30)   # to 127.0.0.1:port, from src when given;
                                                  # timeout scaled (mt.slack), None: none set
    lh.read_all(sk, got=b'')    # got + what arrives until EOF, a reset or the socket timeout
    lh.post(port, path, body, src=None, timeout=30) -> the answer's bytes (Content-Length body)
    lh.spam_message(kind, i, size) -> a message of size octets, Subject "KIND I",
                                      Message-ID <KIND-I@learnbuf.test>
"""
import socket

import mxtest as mt


def connect(port, src=None, timeout=30):
    """A TCP connection to the metrics listener on 127.0.0.1:port (bound to src first when
    given: a client address that learn_from takes or refuses)."""
    sk = socket.socket()
    if src is not None:
        sk.bind((src, 0))
    sk.connect(('127.0.0.1', port))
    if timeout is not None:
        sk.settimeout(mt.slack(timeout))
    return sk


def read_all(sk, got=b''):
    """got and what sk receives until the daemon closes it (or resets it, or the socket's
    timeout passes)."""
    try:
        while True:
            d = sk.recv(65536)
            if not d:
                return got
            got += d
    except (ConnectionResetError, socket.timeout):
        return got


def post(port, path, body, src=None, timeout=30):
    """POST path with body (Content-Length) on a connection of its own: the answer."""
    sk = connect(port, src, timeout)
    sk.sendall(b'POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % (path, len(body)) + body)
    r = read_all(sk)
    sk.close()
    return r


def spam_message(kind, i, size):
    """A spam-like message of exactly size octets (one line of spam words repeated)."""
    head = (b'From: a@example.org\nTo: u@example.test\nSubject: %s %d\n'
            b'Message-ID: <%s-%d@learnbuf.test>\n\n' % (kind.encode(), i, kind.encode(), i))
    line = b'cheap pills casino winner lottery prize offer here now\n'
    return (head + line * (size // len(line) + 1))[:size]
