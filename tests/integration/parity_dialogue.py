"""The dialogue runner the Postfix parity tests share (test_postfix_parity.py,
test_postfix_parity_dns.py): one raw-socket session per dialogue, its replies in the form
docs/postfix-parity.md's table writes them, the comparison of two outcomes, and the table's
rows.

A dialogue is a list of steps: a command line (str or bytes; CRLF added to a str, bytes sent
as they are) answered by one reply, or ('raw', bytes, n): bytes in one write, n replies."""
import os
import re
import socket
import time

import mxtest as mt

DOC = os.path.join(mt.SRC, 'docs', 'postfix-parity.md')
MSG = b'From: a@example.org\r\nTo: u@example.test\r\nSubject: parity\r\n\r\nbody\r\n'


WAIT = mt.slack(5)


class Conn:
    def __init__(self, port, source=None):
        self.sock = socket.create_connection(('127.0.0.1', port), WAIT,
                                             source_address=(source, 0) if source else None)
        self.buf = b''
        self.closed = False

    def reply(self, timeout=WAIT):
        """One reply: (code, enhanced code or '', text); None at EOF or past timeout."""
        lines = []
        end = time.time() + timeout
        while True:
            while b'\n' in self.buf:
                line, self.buf = self.buf.split(b'\n', 1)
                line = line.rstrip(b'\r').decode('utf-8', 'replace')
                lines.append(line)
                if len(line) < 4 or line[3] != '-':
                    m = re.match(r'(\d{3})[ -]?(.*)', lines[0])
                    if not m:
                        return ('???', '', line)
                    text = ' '.join(re.sub(r'^\d{3}[ -]?', '', l) for l in lines)
                    e = re.match(r'([245]\.\d{1,3}\.\d{1,3})\b', text)
                    return (m.group(1), e.group(1) if e else '', text)
            left = end - time.time()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                got = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                got = b''
            if not got:
                self.closed = True
                if not self.buf:
                    return None
                self.buf += b'\n'
            self.buf += got

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def close(self):
        self.sock.close()


def show(r):
    """A reply as the table writes it: the code, and a refusal's enhanced code."""
    if r is None:
        return '-'
    code, enh, _ = r
    return code + (' ' + enh if enh and code[0] in '45' else '')


def run(port, ehlo, steps, source=None):
    """Runs one dialogue; returns (outcome text for the table, replies, alive, texts)."""
    c = Conn(port, source)
    out = []
    texts = []
    g = c.reply()
    if g is None or g[0] != '220':
        # refused at connect: the greeting is the one reply (RFC 5321 3.1: 554, or 421)
        c.close()
        return 'greeting %s, closed' % show(g), [g], False, [g and g[2]]
    if ehlo:
        c.send(b'EHLO client.example.test\r\n')
        r = c.reply()
        if r is None or r[0] != '250':
            return 'EHLO refused %r' % (r,), [], False, []
    for st in steps:
        if isinstance(st, tuple):
            _, data, n = st
        else:
            data, n = (st if isinstance(st, bytes) else st.encode() + b'\r\n'), 1
        c.send(data)
        for _ in range(n):
            r = c.reply()
            out.append(r)
            texts.append(r and r[2])
    if out and out[-1] is not None and out[-1][0] == '354':
        # a DATA the dialogue did not expect to be taken: the message, so the session can
        # be judged (its reply is the last one shown)
        c.send(mt.stuff(MSG))
        r = c.reply()
        out.append(r)
        texts.append(r and r[2])
    # Then a NOOP: the replies up to its 250 (or the end of the connection) that no command
    # asked for come first, in the server's order, so no pause is needed to see them.
    extra = []
    alive = False
    c.send(b'NOOP\r\n')
    while True:
        r = c.reply()
        if r is None:
            break
        if r[0] == '250':
            alive = True
            break
        extra.append(r)
    c.close()
    text = ', '.join(show(r) for r in out)
    if extra:
        text += ' (then unasked: %s)' % ', '.join(show(r) for r in extra)
    if not alive:
        text += ', closed'
    return text, out + extra, alive, texts


def same(a, b):
    """The two outcomes agree: the same number of replies, each of the same class and, where
    both carry one, the same enhanced code; the session goes on in both or in neither."""
    ra, rb = a[1], b[1]
    if a[2] != b[2] or len(ra) != len(rb):
        return False
    for x, y in zip(ra, rb):
        if (x is None) != (y is None):
            return False
        if x is None:
            continue
        if x[0][0] != y[0][0]:
            return False
        if x[1] and y[1] and x[0][0] in '45' and x[1] != y[1]:
            return False
    return True


def load_table():
    """The rows of docs/postfix-parity.md's tables: id -> (postfix, mxgate, why)."""
    rows = {}
    if not os.path.exists(DOC):
        return rows
    for line in open(DOC, encoding='utf-8'):
        m = re.match(r'\| `([a-z0-9-]+)` \|[^|]*\| ([^|]*?) \| ([^|]*?) \| ([^|]*?) \|\s*$', line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip(), m.group(4).strip())
    return rows


def dialogue(ehlo, steps):
    """The dialogue as the table's second column shows it."""
    parts = ['EHLO'] if ehlo else []
    for st in steps:
        if isinstance(st, tuple):
            data = st[1]
            if data.startswith(b'BDAT'):
                head = data.split(b'\r\n', 1)[0].decode()
                parts.append('%s +%d octets' % (head.replace('\t', '\\t'), len(data) - len(head) - 2))
            elif data.endswith(b'.\r\n') and not data.startswith(b'MAIL'):
                parts.append('message (%d octets)' % len(data))
            else:
                parts.append(' \u2016 '.join(l for l in data.decode().split('\r\n') if l) + ' (one write)')
        else:
            s = st if isinstance(st, str) else st.decode('utf-8', 'backslashreplace')
            s = s.rstrip('\r\n').replace('\x00', '\\0').replace('\r', '\\r').replace('\n', '\\n')
            s = s.replace('\t', '\\t')
            if s.startswith(' '):
                s = '(space)' + s[1:]
            if isinstance(st, bytes) and not st.endswith(b'\r\n'):
                s += ' (bare LF)' if st.endswith(b'\n') else ''
            if len(s) > 60:
                s = s[:40] + '...(%d octets)' % len(s)
            parts.append(s or '(empty line)')
    return ' / '.join(parts).replace('|', '/')




PRINTING = bool(os.environ.get('MX_PARITY_PRINT'))


def judge(cid, shown, pf, mxr, table):
    """Checks one case's outcomes (run()'s results for Postfix and mxgate) against its row of
    the table (load_table()): both as written, and a reason where the two differ (a row
    where they agree may carry a note). With MX_PARITY_PRINT=1 prints the row instead
    (`shown`: the dialogue column). Returns whether the two agree."""
    agree = same(pf, mxr)
    if PRINTING:
        mt.say('| `%s` | %s | %s | %s | %s |' % (cid, shown, pf[0], mxr[0], '' if agree else 'TODO'))
        mt.say('   postfix: %r' % (pf[3],))
        mt.say('   mxgate:  %r' % (mxr[3],))
        return agree
    row = table.get(cid)
    if row is None:
        mt.check(False, '%s: a row in docs/postfix-parity.md (Postfix: %s; mxgate: %s)' % (cid, pf[0], mxr[0]))
        return agree
    mt.check(pf[0] == row[0], '%s: Postfix answers as the table says: %s (got %s; %r)' % (cid, row[0], pf[0], pf[3]))
    mt.check(mxr[0] == row[1], '%s: mxgate answers as the table says: %s (got %s; %r)' % (cid, row[1], mxr[0], mxr[3]))
    if not agree:
        mt.check(row[2] not in ('', '-', 'same'), '%s: the two differ, and the table says why' % cid)
    return agree


def judge_rows(table, ids):
    """Every row of `table` is one of the cases `ids` (not checked when printing)."""
    if not PRINTING:
        rest = set(table) - set(ids)
        mt.check(not rest, 'every row of the table is a case here (%s)' % sorted(rest))
