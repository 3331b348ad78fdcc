#!/usr/bin/env python3
"""A reload that turns on a listener's require_tls (Postfix's `smtpd_tls_security_level =
encrypt`, which `postfix reload` applies) applies to the sessions that begin after it.

Before the fix the listeners kept the listen entries of the start, and require_tls was not
among the keys the reload compares (address, tls, proxy_protocol, submission, auth): the
reload said "reloaded: generation 2" with nothing taking effect at the next start, and MAIL
in clear text went on being accepted on a port the operator had just closed to it.
Turning it off again applies too; a session begun before a reload keeps its own rule."""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'openssl')
CTL = mt.mxgatectl()
crt, key = mt.cert()
sink = mt.Sink()
sock = os.path.join(mt.TMP, 'ctl.sock')
port = mt.hold_port().port


def cfg(require):
    return mt.config([sink.url], listen=[{'address': '127.0.0.1:%d' % port, 'tls': 'starttls',
                                          'require_tls': require}],
                     tls={'certificate': crt, 'key': key}, control={'socket': sock})


def mail_in_clear():
    c = mt.Client(port)
    c.ehlo()
    code = c.cmd('MAIL FROM:<a@example.org>')[0]
    c.close()
    return code


def reload(require):
    mx._write(cfg(require))
    r = subprocess.run([CTL, '-s', sock, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
    return r.stdout + r.stderr


mx = mt.Mxgate(cfg(False), name='mx-require-tls')
mt.check(mail_in_clear() == 250, 'require_tls false: MAIL in clear text is accepted')
held = mt.Client(port)
held.ehlo()
out = reload(True)
mt.check('reloaded: generation 2' in out and 'next start' not in out, 'the reload succeeds (%r)' % out.strip())
code = mail_in_clear()
mt.check(code == 530, 'after the reload to require_tls true, MAIL in clear text gets 530 (%s)' % code)
mt.check(held.cmd('MAIL FROM:<a@example.org>')[0] == 250,
         'a session begun before the reload keeps the rule it began with')
held.close()
out = reload(False)
mt.check(mail_in_clear() == 250, 'reloaded back to false: accepted again (%r)' % out.strip())
mx.stop()
mt.finish()
