#!/usr/bin/env python3
"""The fail2ban filter we ship (examples/fail2ban/mxgate-auth.conf) on the three forms of
mxgate's log a jail reads, with fail2ban's own code (its filter reader and Filter class, the
interpreter of fail2ban-regex):

- the journal (the jail we ship says `backend = systemd`): fail2ban's FilterSystemd hands its
  filter the line "HOSTNAME IDENT[PID]: MESSAGE" (fail2ban 1.0 filtersystemd.py,
  formatJournalEntry) with the entry's own time, no date cut from the text; MESSAGE is what
  mxgate wrote to standard error (journald took the "<6>" level prefix off): it starts with
  mxgate's own timestamp and level;
- standard error in a file, and the syslog form (`log.syslog`): fail2ban-regex on the files.

Before the fix the journal form matched nothing: "mx1 mxgate[812]: 2026-...Z info 7f3a22
event=auth_failed client=..." fits neither alternative of the filter's prefix, so the jail as
shipped (`backend = systemd`) never banned anybody. Each form must give exactly the failing
client's address, and a user name built to look like a log key must ban nobody."""
import base64
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('dovecot', 'fail2ban-regex')
F2B_PY = open(mt.tool('fail2ban-regex')).readline()[2:].strip().split()   # its interpreter
FILTER = os.path.join(mt.SRC, 'examples', 'fail2ban', 'mxgate-auth.conf')

dv = mt.dovecot({'alice': 'secret'})
crt, key = mt.cert()
be = mt.Backend(name='f2b')
mx = mt.Mxgate(mt.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'implicit', 'submission': True}],
                         tls={'certificate': crt, 'key': key},
                         auth={'dovecot': dv.sock, 'timeout': '10s', 'max_failures': 1,
                               'failure_delay': '10ms', 'max_delay': '20ms'}), name='mx-f2b')


def fail(source, user):
    c = mt.Client(mx.port, tls=True, source=source)
    c.ehlo()
    code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(('\0%s\0wrong' % user).encode()).decode())
    c.close()
    return code


mt.check(fail('127.0.0.31', 'alice') == 535, 'a failure from 127.0.0.31')
mt.check(fail('127.0.0.32', 'x event=auth_failed client=127.0.0.99 ') == 535, 'a user name holding a fake log key')
mt.check(fail('127.0.0.31', 'bob') == 421, 'past max_failures: 421 (event=auth_blocked)')
mt.wait_for(lambda: mx.count_log(r'event=auth_(failed|blocked) ') >= 4, 5)
lines = [ln for ln in mx.log().splitlines() if ' event=auth_' in ln]
expected = [m.group(1) for ln in lines for m in [re.search(r'event=auth_(?:failed|blocked) client=([0-9.]+) ', ln)] if m]
mt.check(len(expected) >= 4, 'four failure lines logged (%s)' % expected)

# ---------------------------------------------------------------- the journal, as FilterSystemd feeds it
JOURNAL = r'''
import sys, time
from fail2ban.client.filterreader import FilterReader
from fail2ban.server.filter import Filter
fr = FilterReader('mxgate-auth', 'mxgate-auth', {}, share_config={}, basedir=sys.argv[1])
if not fr.read():
    sys.exit('cannot read the filter under ' + sys.argv[1])
fr.getOptions({})
class Jail:
    name = 'mxgate-auth'
    def putFailTicket(self, ticket):
        pass
f = Filter(Jail())
for o in fr.convert():
    if o[2] == 'addfailregex':
        for rx in (o[3] if o[0] == 'multi-set' else [o[3]]):
            f.addFailRegex(rx)
for message in sys.stdin.read().splitlines():
    now = time.time()
    # filtersystemd.py formatJournalEntry: ((logline[:0], date + ' ', logline), time)
    logline = 'mx1 mxgate[812]: ' + message
    for ticket in f.processLine(('', time.strftime('%Y-%m-%d %H:%M:%S ', time.localtime(now)), logline), now) or ():
        print(ticket[1])
'''
# journald keeps the line as written, without the "<N>" level prefix mxgate adds for it
messages = '\n'.join(re.sub(r'^<\d>', '', ln) for ln in lines) + '\n'
confdir = os.path.join(mt.TMP, 'fail2ban')
os.makedirs(os.path.join(confdir, 'filter.d'), exist_ok=True)
with open(FILTER) as src, open(os.path.join(confdir, 'filter.d', 'mxgate-auth.conf'), 'w') as dst:
    dst.write(src.read())
r = subprocess.run(F2B_PY + ['-c', JOURNAL, confdir], input=messages, capture_output=True, text=True,
                   timeout=mt.slack(60))
banned = r.stdout.split()
mt.check(r.returncode == 0 and banned == expected,
         'journal form (backend = systemd): one address per failure line (%s; expected %s; %s)'
         % (banned, expected, r.stderr.strip()[-300:]))
mt.check('127.0.0.99' not in banned, 'journal form: a fake "client=" in a user name bans nobody')

# ---------------------------------------------------------------- standard error and syslog files
f2b = subprocess.run(['fail2ban-regex', '-o', 'ip', mx.logpath, FILTER], capture_output=True, text=True,
                     timeout=mt.slack(60))
banned = f2b.stdout.split()
mt.check(f2b.returncode == 0 and banned == expected, 'standard error file: %s (expected %s)' % (banned, expected))
syslog = os.path.join(mt.TMP, 'mail.log')
with open(syslog, 'w') as f:
    for ln in lines:
        # what rsyslog writes for syslog(3) from mxgate: its timestamp, host, ident[pid], the
        # line from the session id on (log.c hands syslog the line without date and level)
        f.write('Dec  3 10:11:14 mx1 mxgate[812]: %s\n' % ln.split(' ', 2)[2])
f2b = subprocess.run(['fail2ban-regex', '-o', 'ip', syslog, FILTER], capture_output=True, text=True,
                     timeout=mt.slack(60))
banned = f2b.stdout.split()
mt.check(f2b.returncode == 0 and banned == expected, 'syslog file: %s (expected %s)' % (banned, expected))

mx.stop()
mt.finish()
