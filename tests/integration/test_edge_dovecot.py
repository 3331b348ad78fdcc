#!/usr/bin/env python3
"""mxgate's Dovecot auth client against a real Dovecot (dovecot-core): a private instance
(`dovecot -F -c CONF`, own base_dir, passwd-file users, the auth service on a unix socket
and on 127.0.0.1), driven through the client module by `test_sasl_dovecot --probe` (the SMTP
AUTH verb that uses it arrives with the session's command table; swaks --auth then joins).

Checks: PLAIN and LOGIN over unix: and inet:, a wrong password and an unknown user are FAIL
(535 to come), Dovecot sees the client's address (rip=), and a stopped service is TEMPFAIL
(454 4.7.0), never a success or a hang.

Found here: Dovecot 2.3's auth service accepts PLAIN from a client flagged neither `secured`
nor local even with disable_plaintext_auth = yes (its login processes enforce that, not the
auth service): mxgate itself must offer AUTH only after TLS (listen[].submission, phase B)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

PROBE = os.path.join(mt.BUILD, 'test_sasl_dovecot')
mt.need('dovecot')
if not os.access(PROBE, os.X_OK):
    mt.skip('test_sasl_dovecot not built: ' + PROBE)

proc = mt.dovecot({'alice': 'secret', 'bob@example.org': 'hunter2 with spaces'})

UNIX, INET = proc.sock, proc.inet


def probe(addr, mech, user, password, secured=True, rip='198.51.100.7'):
    p = subprocess.run([PROBE, '--probe', addr, mech, user, password, 'rip=' + rip] + (['secured'] if secured else []),
                       capture_output=True, text=True, timeout=mt.slack(30))
    return p.returncode, p.stdout.strip() + p.stderr.strip()[-300:]


# Each failure comes from its own client address: Dovecot delays a client after failures
# (its anvil penalty, kept on purpose: mxgate passes rip= so Dovecot can tell clients apart).
rows = [
    ('PLAIN over unix:', UNIX, 'PLAIN', 'alice', 'secret', True, 0, 'OK user=alice', '198.51.100.7'),
    ('LOGIN over unix:', UNIX, 'LOGIN', 'alice', 'secret', True, 0, 'OK user=alice', '198.51.100.7'),
    ('PLAIN over inet:', INET, 'PLAIN', 'bob@example.org', 'hunter2 with spaces', True, 0, 'OK user=bob@example.org', '198.51.100.7'),
    ('LOGIN over inet:', INET, 'LOGIN', 'bob@example.org', 'hunter2 with spaces', True, 0, 'OK user=bob@example.org', '198.51.100.7'),
    ('wrong password', UNIX, 'PLAIN', 'alice', 'guess', True, 1, 'FAIL', '198.51.100.11'),
    ('wrong password, LOGIN', INET, 'LOGIN', 'alice', 'guess', True, 1, 'FAIL', '198.51.100.12'),
    ('unknown user', UNIX, 'PLAIN', 'mallory', 'secret', True, 1, 'FAIL', '198.51.100.13'),
]
for label, addr, mech, user, password, secured, want_rc, want, rip in rows:
    rc, out = probe(addr, mech, user, password, secured, rip)
    mt.check(rc == want_rc and out.startswith(want), '%s: %s (rc %d: %s)' % (label, want, rc, out))

log = proc.log
mt.check('passwd-file(alice,198.51.100.11)' in log(),
         'Dovecot saw the client address we passed (rip=), for its own logs and penalties')

# the service goes away: TEMPFAIL, promptly
proc.terminate()
proc.wait(10)
rc, out = probe(UNIX, 'PLAIN', 'alice', 'secret')
mt.check(rc == 2 and out.startswith('TEMPFAIL'), 'Dovecot stopped, unix: TEMPFAIL (454 4.7.0 to come) (rc %d: %s)' % (rc, out))
rc, out = probe(INET, 'PLAIN', 'alice', 'secret')
mt.check(rc == 2 and out.startswith('TEMPFAIL'), 'Dovecot stopped, inet: TEMPFAIL (rc %d: %s)' % (rc, out))
mt.finish()
