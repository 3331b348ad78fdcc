#!/usr/bin/env python3
"""Every recipient greylisting lets through without a triplet says why, and /metrics counts
greylisting's decisions, as postgrey logs `action=pass, reason=client whitelist` (or
`client AWL`) and its operators graph greylisted / passed / whitelisted mail (Munin's
postgrey plugin, mailgraph's greylist view).

Before: only allow_names logged `event=greylist_allow`; a client on `greylist.allow`, one the
reputation filter allow-listed (skip_good), an auto-allowed network and an authenticated
client passed without a word, and /metrics had no greylist series at all (the 451s only
hid in mxgate_tempfails_total).

Now each bypass logs `event=greylist_allow reason=allow|allow_names|allow_names_file|
skip_good|auto_allow|auth`, and three series count, scraped here from a real
/metrics: mxgate_greylist_greylisted_total (451s), mxgate_greylist_passed_total (a retry
after the delay, or a triplet that passed before), mxgate_greylist_allowed_total{reason}
(every reason exposed from the start). The auth reason through a submission listener with
SMTP AUTH checked by a real Dovecot."""
import base64
import os
import re
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('dovecot')
dv = mt.dovecot({'alice': 'secret'})
crt, key = mt.cert()
be = mt.Backend()
cfg = mt.proxied_config([be.url],
                        listen=[{'address': '127.0.0.1:0', 'proxy_protocol': True},
                                {'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True}],
                        tls={'certificate': crt, 'key': key}, auth={'dovecot': dv.sock, 'timeout': '10s'},
                        greylist={'enabled': True, 'delay': '0s', 'retry_window': '1h',
                                  'allow': ['198.18.91.0/24'], 'auto_allow_clients': 1,
                                  'auto_allow_expire': '1d'},
                        reputation={'allow': ['198.18.92.0/24']},
                        metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
mx = mt.Mxgate(cfg, 'mx-gl-bypass')


def rcpts(src, sender, names):
    """One session from src: MAIL, then each RCPT in turn; the RCPT codes."""
    c = mt.Client(mx.port, proxy_src=src)
    c.ehlo('mail.example.org')
    c.cmd('MAIL FROM:<%s>' % sender)
    codes = [c.cmd('RCPT TO:<%s>' % r)[0] for r in names]
    c.cmd('QUIT')
    c.close()
    return codes


def scrape():
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % mx.metrics_port, timeout=mt.slack(5)) as r:
        return r.read().decode()


def value(text, series):
    m = re.search(r'^mxgate_%s (\S+)$' % re.escape(series), text, re.M)
    return float(m.group(1)) if m else None


text = scrape()
mt.check(value(text, 'greylist_greylisted_total') == 0 and value(text, 'greylist_passed_total') == 0,
         'the greylist series are there from the start, at 0')
mt.check(all(value(text, 'greylist_allowed_total{reason="%s"}' % r) == 0
             for r in ('allow', 'allow_names', 'allow_names_file', 'skip_good', 'auto_allow', 'auth')),
         'every reason of mxgate_greylist_allowed_total is exposed at 0:\n%s'
         % '\n'.join(ln for ln in text.split('\n') if 'greylist' in ln))

# a new triplet: 451, its retry (delay 0s) passes; with auto_allow_clients 1 the pass
# allows the client's /24, so its next new triplet passes at once
codes = rcpts('198.18.90.1', 'a@example.org', ['t1@example.test', 't1@example.test'])
mt.check(codes == [451, 250], 'a new triplet is greylisted, its retry passes: %s' % codes)
codes = rcpts('198.18.90.1', 'a@example.org', ['t2@example.test'])
mt.check(codes == [250], 'the auto-allowed network\'s new triplet passes: %s' % codes)
mt.check(rcpts('198.18.91.1', 'a@example.org', ['t3@example.test']) == [250], 'a client on greylist.allow passes')
mt.check(rcpts('198.18.92.1', 'a@example.org', ['t4@example.test']) == [250],
         'a client the reputation filter allow-listed (REP_ALLOW, skip_good) passes')
# an authenticated client (submission, SMTP AUTH checked by a real Dovecot)
c = mt.Client(mx.ports[1])
c.ehlo()
mt.check(c.starttls()[0] == 220, 'STARTTLS on the submission listener')
c.ehlo()
mt.check(c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())[0] == 235, 'AUTH PLAIN 235')
mt.check(c.cmd('MAIL FROM:<alice@example.org>')[0] == 250 and c.cmd('RCPT TO:<t6@example.test>')[0] == 250,
         'an authenticated client\'s recipient is not greylisted')
c.cmd('QUIT')
c.close()

lines = re.findall(r'event=greylist_allow reason=(\S+) client=(\S+) client_name=\S+ from=<[^>]*> rcpt=<([^>]+)>(.*)',
                   mx.log())
got = [(r, c, rc) for r, c, rc, _ in lines]
mt.check(got == [('auto_allow', '198.18.90.1', 't2@example.test'), ('allow', '198.18.91.1', 't3@example.test'),
                 ('skip_good', '198.18.92.1', 't4@example.test'), ('auth', '127.0.0.1', 't6@example.test')],
         'each bypass is logged once with its reason, the greylisted and passed RCPTs are not: %s' % got)
extra = dict((r, e.strip()) for r, _, _, e in lines)
mt.check(extra.get('auto_allow') == 'net=198.18.90.0/24' and extra.get('skip_good') == 'symbol=REP_ALLOW',
         'auto_allow names the network, skip_good the symbol: %s' % extra)

text = scrape()
want = {'greylist_greylisted_total': 1, 'greylist_passed_total': 1,
        'greylist_allowed_total{reason="allow"}': 1, 'greylist_allowed_total{reason="skip_good"}': 1,
        'greylist_allowed_total{reason="auto_allow"}': 1,
        'greylist_allowed_total{reason="auth"}': 1, 'greylist_allowed_total{reason="allow_names"}': 0}
got = dict((k, value(text, k)) for k in want)
mt.check(got == want, 'the scrape counts each decision once: %s' % got)
mt.check('# TYPE mxgate_greylist_allowed_total counter' in text and '# HELP mxgate_greylist_passed_total' in text,
         'HELP and TYPE lines for the families')
mx.stop()
mt.finish()
