#!/usr/bin/python3
"""A milter scripted by the envelope (python3-milter; run it with /usr/bin/python3), for the
verdicts of the stages before the message.

usage: /usr/bin/python3 mx_milter_env.py inet:PORT@127.0.0.1 LOGFILE

The local part of the HELO name, the sender or a recipient picks the answer at that stage:
  reject-*    SMFIS_REJECT             tempfail-*  SMFIS_TEMPFAIL
  discard-*   SMFIS_DISCARD            accept-*    SMFIS_ACCEPT
  code-*      smfi_setreply("550", "5.7.9", "refused by env milter") + REJECT
  ml-*        smfi_setmlreply("450", "4.7.8", "first line", "second line") + TEMPFAIL
  pct-*       smfi_setreply("550", "5.7.9", "100%% sure") + REJECT (libmilter's docs: a
              '%' in the text is written '%%'; it refuses a single one)
  pctml-*     smfi_setmlreply("550", "5.7.9", "line 100%%", "and 50%%") + REJECT
  stall-*     sleeps 4 s, then continues (a filter slower than the entry's timeout)
  atdata-*    (a recipient) REJECT at DATA      eomrej-* (a recipient) REJECT at end of message
anything else continues; at end of message it adds "X-Env-Rcpts: <the recipients it saw>"
and accepts. Each callback appends "STAGE ARG" to LOGFILE (one line), so a test can read
which stages the filter was shown; MAIL and RCPT add "mail_host=" / "rcpt_host=" with the
macro's value (None when not sent).
"""
import sys
import time

import Milter

LOG = '/dev/null'


def note(*words):
    with open(LOG, 'a') as f:
        f.write(' '.join(str(w) for w in words) + '\n')


def local(a):
    return a.strip('<>').split('@')[0].lower()


class EnvMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.rcpts = []

    def verdict(self, word):
        w = word.lower()
        if w.startswith('reject-'):
            return Milter.REJECT
        if w.startswith('tempfail-'):
            return Milter.TEMPFAIL
        if w.startswith('discard-'):
            return Milter.DISCARD
        if w.startswith('accept-'):
            return Milter.ACCEPT
        if w.startswith('code-'):
            self.setreply('550', '5.7.9', 'refused by env milter')
            return Milter.REJECT
        if w.startswith('stall-'):
            time.sleep(4)
            return Milter.CONTINUE
        if w.startswith('pct-'):
            self.setreply('550', '5.7.9', '100%% sure')
            return Milter.REJECT
        if w.startswith('pctml-'):
            self.setreply('550', '5.7.9', 'line 100%%', 'and 50%%')
            return Milter.REJECT
        if w.startswith('ml-'):
            self.setreply('450', '4.7.8', 'first line', 'second line')
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def connect(self, hostname, family, hostaddr):
        note('connect', hostname)
        return Milter.CONTINUE

    def hello(self, name):
        note('helo', name)
        return self.verdict(name.split('.')[0])

    def envfrom(self, mailfrom, *params):
        note('mail', mailfrom, 'mail_host=%s' % self.getsymval('{mail_host}'))
        self.rcpts = []
        return self.verdict(local(mailfrom))

    def envrcpt(self, rcpt, *params):
        note('rcpt', rcpt, 'rcpt_host=%s' % self.getsymval('{rcpt_host}'))
        v = self.verdict(local(rcpt))
        if v == Milter.CONTINUE:
            self.rcpts.append(local(rcpt))
        return v

    def data(self):
        note('data', ','.join(self.rcpts))
        if any(r.startswith('atdata-') for r in self.rcpts):
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self):
        note('eom', ','.join(self.rcpts))
        if any(r.startswith('eomrej-') for r in self.rcpts):
            return Milter.REJECT
        self.addheader('X-Env-Rcpts', ','.join(self.rcpts))
        return Milter.ACCEPT

    def abort(self):
        note('abort')
        return Milter.CONTINUE

    def close(self):
        note('close')
        return Milter.CONTINUE


def main():
    global LOG
    LOG = sys.argv[2]
    Milter.factory = EnvMilter
    Milter.set_flags(Milter.ADDHDRS)
    print('env milter on', sys.argv[1], flush=True)
    Milter.runmilter('mxenv', sys.argv[1], 60)


if __name__ == '__main__':
    main()
