#!/usr/bin/python3
"""A milter that reports the macros it is sent (python3-milter; run it with /usr/bin/python3).

usage: /usr/bin/python3 mx_milter_macros.py inet:PORT@127.0.0.1 LOGFILE [symlist|certfp]

At each stage it appends "STAGE name=value ..." to LOGFILE for every macro of NAMES that
smfi_getsymval returns (libmilter keeps the macros of the stages before too). With
`symlist` it asks for its own lists in the option negotiation (SMFIR_SETSYMLIST, protocol
6): at connect {client_addr} only, at MAIL i and {client_ptr} (a connect macro, asked at
MAIL), at RCPT {rcpt_addr}, at end of message nothing but {mail_host}. With `certfp`: at
HELO {cert_subject} and {cert_fingerprint} (no default macro: sent when asked for).
"""
import sys

import Milter

LOG = '/dev/null'
NAMES = ('j', '_', 'v', '{daemon_name}', '{daemon_addr}', '{client_addr}', '{client_port}', '{client_name}',
         '{client_ptr}', '{tls_version}', '{cipher}', '{cipher_bits}', '{cert_subject}', '{cert_issuer}',
         '{cert_fingerprint}',
         'i', '{auth_type}', '{auth_authen}', '{auth_author}', '{mail_addr}', '{mail_host}', '{mail_mailer}',
         '{rcpt_addr}', '{rcpt_host}', '{rcpt_mailer}')


class Reporter(Milter.Base):
    def report(self, stage):
        got = []
        for n in NAMES:
            v = self.getsymval(n)
            if v is not None:
                got.append('%s=%s' % (n, v))
        with open(LOG, 'a') as f:
            f.write('%s %s\n' % (stage, ' '.join(got)))

    def connect(self, hostname, family, hostaddr):
        self.report('connect')
        return Milter.CONTINUE

    def hello(self, helo):
        self.report('helo')
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *params):
        self.report('mail')
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        self.report('rcpt')
        return Milter.CONTINUE

    def eom(self):
        self.report('eom')
        return Milter.ACCEPT


class Symlist(Reporter):
    LISTS = ((Milter.M_CONNECT, '{client_addr}'), (Milter.M_ENVFROM, 'i {client_ptr}'),
             (Milter.M_ENVRCPT, '{rcpt_addr}'), (Milter.M_EOM, '{mail_host}'))

    def negotiate(self, opts):
        # Milter.Base.negotiate with the lists set here: this python3-milter's setsymlist
        # (and so @Milter.symlist) passes bytes where its C part wants str (TypeError).
        self._actions, p, f1, f2 = opts
        for stage, names in self.LISTS:
            self._ctx.setsymlist(stage, names)
        opts[1] = self._protocol = p & ~self.protocol_mask()
        opts[2] = 0
        opts[3] = 0
        return Milter.CONTINUE


class CertFp(Symlist):
    LISTS = ((Milter.M_HELO, '{cert_subject} {cert_fingerprint}'),)


def main():
    global LOG
    sock, LOG = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else ''
    sym = mode in ('symlist', 'certfp')
    Milter.factory = CertFp if mode == 'certfp' else Symlist if sym else Reporter
    Milter.set_flags(Milter.SETSYMLIST if sym else 0)
    print('macro milter on %s' % sock, flush=True)
    Milter.runmilter('macromilter', sock, 60)


if __name__ == '__main__':
    main()
