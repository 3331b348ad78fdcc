#!/usr/bin/python3
"""A scriptable milter for mxgate's tests (python3-milter; run it with /usr/bin/python3).

usage: /usr/bin/python3 mx_milter.py inet:PORT@127.0.0.1 [stall_seconds]

What the message asks for decides the answer, so one filter drives every verdict:
  body REJECTME      -> 550 5.7.1 rejected by mx test milter
  body TEMPFAILME    -> 451 4.7.1 tempfail by mx test milter
  body DISCARDME     -> discard
  body SLOWME        -> sleeps stall_seconds (default 10) at end of message, then accepts
  body PROGRESSME    -> sends SMFIR_PROGRESS every second for 4 s, then accepts
  body QUARANTINEME  -> quarantine("held by mx test milter"), accept
  body CHANGEME      -> Subject changed, X-Drop deleted, header inserted at the top,
                        sender changed to <changed@example.test>, <added@example.test> added,
                        <b@example.test> removed, body replaced by "replaced body\r\n"
  body INJECTME      -> tries to smuggle a header and an SMTP command through its changes
                        (a value with a bare CRLF, a recipient with CRLF, a sender with a space)
  rcpt <reject@...>  -> 550 5.1.1 at RCPT
  otherwise          -> adds X-Test-Milter: passed; qid=<i> and X-Milter-Macros with the
                        macros it saw (j, _, {client_addr}, {mail_addr}, {rcpt_addr}, ...)
Connect, MAIL and body callbacks are marked no-reply, so the client must honour SMFIP_NR_*.
It prints "eom <sender>" at each end of message and "abort <sender>" at each SMFIC_ABORT.
"""
import sys
import time

import Milter

STALL = 10.0


class MxTestMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.buf = b''
        self.macros = {}
        self.rcpts = []

    def _grab(self, *names):
        for n in names:
            v = self.getsymval(n)
            if v is not None:
                self.macros[n] = v

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        self.hostname = hostname
        self._grab('j', '_', '{daemon_name}', '{client_addr}', '{client_port}', '{client_name}')
        return Milter.CONTINUE

    def hello(self, helo):
        self.helo = helo
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, mailfrom, *params):
        self.buf = b''
        self.rcpts = []
        self._grab('i', '{mail_addr}', '{auth_authen}', '{auth_type}')
        self.mailfrom = mailfrom
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        self._grab('{rcpt_addr}')
        if to.strip('<>').lower().startswith('reject@'):
            self.setreply('550', '5.1.1', 'recipient rejected by mx test milter')
            return Milter.REJECT
        self.rcpts.append(to)
        return Milter.CONTINUE

    @Milter.noreply
    def eoh(self):
        # Postfix sends the queue id at end of headers too (milter_end_of_header_macros = i)
        v = self.getsymval('i')
        self.macros['eoh:i'] = v if v is not None else 'none'
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):
        self.buf += chunk
        return Milter.CONTINUE

    def eom(self):
        print('eom', getattr(self, 'mailfrom', '-'), flush=True)
        b = self.buf
        if b'REJECTME' in b:
            self.setreply('550', '5.7.1', 'rejected by mx test milter')
            return Milter.REJECT
        if b'TEMPFAILME' in b:
            self.setreply('451', '4.7.1', 'tempfail by mx test milter')
            return Milter.TEMPFAIL
        if b'DISCARDME' in b:
            return Milter.DISCARD
        if b'SLOWME' in b:
            time.sleep(STALL)
        if b'PROGRESSME' in b:
            for _ in range(4):
                time.sleep(1)
                self.progress()
        if b'QUARANTINEME' in b:
            self.quarantine('held by mx test milter')
        if b'INJECTME' in b:
            self.addheader('X-Evil', 'a\r\nX-Injected: yes')
            self.addheader('X-Folded', 'first\n\tsecond')
            self.addrcpt('<evil@example.test>\r\nRSET')
            self.chgfrom('<x y@example.test>')
            return Milter.ACCEPT
        if b'CHANGEME' in b:
            self.chgheader('Subject', 1, 'changed by milter')
            self.chgheader('X-Drop', 1, '')
            self.addheader('X-Inserted', 'at the top', 0)
            self.chgfrom('<changed@example.test>')
            self.addrcpt('<added@example.test>')
            self.delrcpt('<b@example.test>')
            self.replacebody(b'replaced body\r\n')
            return Milter.ACCEPT
        self.addheader('X-Test-Milter', 'passed; qid=%s' % self.macros.get('i'))
        self.addheader('X-Milter-Macros', ' '.join('%s=%s' % kv for kv in sorted(self.macros.items())))
        return Milter.ACCEPT

    def abort(self):
        # SMFIC_ABORT: the MTA dropped the transaction (RSET, a refusal, mxgate's bypass:)
        print('abort', getattr(self, 'mailfrom', '-'), flush=True)
        return Milter.CONTINUE


def main():
    global STALL
    sock = sys.argv[1] if len(sys.argv) > 1 else 'inet:9900@127.0.0.1'
    if len(sys.argv) > 2:
        STALL = float(sys.argv[2])
    Milter.factory = MxTestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT |
                     Milter.DELRCPT | Milter.QUARANTINE | Milter.CHGFROM)
    print('mx test milter on', sock, flush=True)
    Milter.runmilter('mxtestmilter', sock, 60)


if __name__ == '__main__':
    main()
