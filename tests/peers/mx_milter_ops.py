#!/usr/bin/python3
"""A milter scripted by the message itself (python3-milter; run it with /usr/bin/python3).

usage: /usr/bin/python3 mx_milter_ops.py inet:PORT@127.0.0.1 NAME

At end of message it reports what it saw, then runs the operations the message asks of it.
  X-Seen-NAME: body=<sha1 of the body, 12 hex> len=<body bytes> subject=<Subject seen>
               hdrs=<names of the headers seen, in order, comma separated>
is added (as the last modification) unless the ops say `noseen`.
The header `X-Ops-NAME:` holds the operations, separated by " ; ", fields by ",":
  add,NAME,VALUE         smfi_addheader            ins,IDX,NAME,VALUE  smfi_insheader
  addesc,NAME,VALUE      smfi_addheader with \r, \n and \t in VALUE as CR, LF and TAB
  chg,NAME,IDX,VALUE     smfi_chgheader (VALUE "" deletes)
  body,TEXT              smfi_replacebody(TEXT + CRLF)
  bodyempty              smfi_replacebody(b'') once: an empty body
  bodybig,N              replace the body by N bytes of lines
  addrcpt,ADDR[,ARGS]    smfi_addrcpt(_par)        delrcpt,ADDR
  addrcpts,N,DOMAIN      smfi_addrcpt N times: <add0001@DOMAIN> .. <addNNNN@DOMAIN>
  chgfrom,ADDR[,ARGS]    smfi_chgfrom with ESMTP arguments
  quarantine,REASON
  reply,CODE,XCODE,LINE[,LINE...]  smfi_setmlreply / setreply, then the verdict for CODE
  reject / tempfail / discard      the verdict (default: accept)
  noseen                 do not add X-Seen-NAME
  hold,DIR               after the operations before it: creates DIR/sent-<id>, then waits
                         (at most 300 s) for DIR/go before the verdict. Hold one message
                         at a time: libmilter's worker pool (_FFR_WORKERS_POOL, Debian's build)
                         gives a session's command to a worker it counts idle, which another
                         session may take first; with every worker held, that command waits
                         unread until one is free (4 held at once: 3 held, 1 command unread)
"""
import hashlib
import os
import sys
import time

import Milter

NAME = 'one'


class OpsMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()

    def envfrom(self, mailfrom, *params):
        self.hdrs = []
        self.ops = ''
        self.subject = ''
        self.body_buf = b''
        return Milter.CONTINUE

    def header(self, name, value):
        self.hdrs.append(name)
        if name.lower() == 'x-ops-' + NAME.lower():
            self.ops = value
        if name.lower() == 'subject':
            self.subject = value
        return Milter.CONTINUE

    def body(self, chunk):
        self.body_buf += chunk
        return Milter.CONTINUE

    def eom(self):
        b = self.body_buf
        seen = 'body=%s len=%d subject=%s hdrs=%s' % (hashlib.sha1(b).hexdigest()[:12], len(b),
                                                     self.subject.replace('\n', ' '), ','.join(self.hdrs))
        verdict = Milter.ACCEPT
        add_seen = True
        for op in [o.strip() for o in self.ops.replace('\n', ' ').split(' ; ') if o.strip()]:
            f = op.split(',')
            k = f[0]
            if k == 'add':
                self.addheader(f[1], f[2])
            elif k == 'addesc':
                self.addheader(f[1], f[2].replace('\\r', '\r').replace('\\n', '\n').replace('\\t', '\t'))
            elif k == 'ins':
                self.addheader(f[2], f[3], int(f[1]))
            elif k == 'chg':
                self.chgheader(f[1], int(f[2]), f[3])
            elif k == 'body':
                self.replacebody((f[1] + '\r\n').encode())
            elif k == 'bodyempty':
                self.replacebody(b'')
            elif k == 'bodybig':
                n = int(f[1])
                line = b'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n'
                data = (line * (n // len(line) + 1))[:n]
                for i in range(0, len(data), 65535):
                    self.replacebody(data[i:i + 65535])
            elif k == 'addrcpt':
                self.addrcpt(f[1], f[2] if len(f) > 2 else None)
            elif k == 'addrcpts':
                for i in range(1, int(f[1]) + 1):
                    self.addrcpt('<add%04d@%s>' % (i, f[2]))
            elif k == 'delrcpt':
                self.delrcpt(f[1])
            elif k == 'chgfrom':
                self.chgfrom(f[1], f[2] if len(f) > 2 else None)
            elif k == 'quarantine':
                self.quarantine(f[1])
            elif k == 'reply':
                self.setreply(f[1], f[2], *f[3:])
                verdict = Milter.REJECT if f[1].startswith('5') else Milter.TEMPFAIL
            elif k == 'reject':
                verdict = Milter.REJECT
            elif k == 'tempfail':
                verdict = Milter.TEMPFAIL
            elif k == 'discard':
                verdict = Milter.DISCARD
            elif k == 'noseen':
                add_seen = False
            elif k == 'hold':
                open(os.path.join(f[1], 'sent-%d' % self.id), 'w').close()
                end = time.monotonic() + 300
                while not os.path.exists(os.path.join(f[1], 'go')) and time.monotonic() < end:
                    time.sleep(0.05)
        if add_seen:
            self.addheader('X-Seen-' + NAME, seen)
        return verdict


def main():
    global NAME
    sock = sys.argv[1]
    NAME = sys.argv[2] if len(sys.argv) > 2 else 'one'
    Milter.factory = OpsMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT |
                     Milter.ADDRCPT_PAR | Milter.DELRCPT | Milter.QUARANTINE | Milter.CHGFROM)
    print('ops milter %s on %s' % (NAME, sock), flush=True)
    Milter.runmilter('opsmilter-' + NAME, sock, 60)


if __name__ == '__main__':
    main()
