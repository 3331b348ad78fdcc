#!/usr/bin/env python3
"""test_bypass_checks — `bypass:` skips content checks for some recipients (amavis's
bypass_virus_checks_maps / bypass_spam_checks_maps): a message whose every recipient is
covered is not scanned, a mixed message is checked fully (a check is skipped only when
every accepted recipient bypasses it), greylisting (a RCPT check) is skipped per recipient,
-t refuses what cannot be bypassed and warns of a virus check, SIGHUP re-reads the list.

Peers: smtp-sink as the backend, a real clamd (EICAR signatures), the rules engine with a
header rule worth 20 (reject at 15), greylisting on its default store."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'clamd')

RULES = 'header LOC_SPAM X-Test-Spam =~ /yes/\nscore LOC_SPAM 20\n'
rules_path = os.path.join(mt.TMP, 'bypass.cf')
with open(rules_path, 'w') as f:
    f.write(RULES)
nofilter_path = os.path.join(mt.TMP, 'nofilter.list')
with open(nofilter_path, 'w') as f:
    f.write('# customers who want no filtering\nfiled.example\n')

DOMAINS = ['example.test', 'nofilter.example', '*.hosted.example', 'filed.example']
BYPASS = [{'recipients': ['nofilter.example', '*.hosted.example', 'file:' + nofilter_path],
           'checks': ['clamd', 'rules']},
          {'recipients': ['abuse'], 'checks': ['rules']}]

cl = mt.clamd()
sink = mt.Sink()


def cfg_with(bypass, **extra):
    top = dict(listen=extra.pop('listen', None), accept_domains=DOMAINS, hostname='mx.example.test',
               plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port,
                         'on_error': 'tempfail', 'timeout': '20s'}],
               rules={'files': [rules_path], 'actions': {'add_header': 5, 'reject': 15}})
    top.update(extra)
    if bypass is not None:
        top['bypass'] = bypass
    return mt.config([sink.url], **top)


def send(port, rcpts, data):
    return mt.send_mail(port, 'a@example.org', rcpts, data, timeout=60)


def at_sink(tag):
    """The sink's copies of message tag: [(rcpts, data)]."""
    return [(m['rcpts'], m['data']) for m in sink.messages() if tag in mt.message_ids([m['data']])]


def spam(tag):
    return mt.message(tag, headers=('X-Test-Spam: yes',))


m = mt.Mxgate(cfg_with(BYPASS), 'mx-bypass')

# the controls: an ordinary recipient is scanned and scored
code, text = send(m.port, ['b@example.test'], mt.eicar_message('v-plain'))
mt.check(code == 554 and 'EICAR' in text and not at_sink('v-plain'),
         'EICAR to an ordinary recipient refused (%s %s)' % (code, text))
code, text = send(m.port, ['b@example.test'], spam('s-plain'))
mt.check(code == 550 or code == 554, 'spam to an ordinary recipient refused by the rules (%s %s)' % (code, text))
mt.check(not at_sink('s-plain'), 'that spam not delivered')

# every recipient bypasses clamd and rules: the virus reaches the sink
code, text = send(m.port, ['u@nofilter.example', 'v@a.hosted.example', 'w@filed.example'],
                  mt.eicar_message('v-bypass'))
got = at_sink('v-bypass')
mt.check(code == 250 and len(got) == 1 and len(got[0][0]) == 3,
         'EICAR to three bypassed recipients (a name, a wildcard, a file) delivered unscanned (%s %s, %d copies)'
         % (code, text, len(got)))
mt.check(m.wait_log(r'event=bypass stage=eom checks=clamd,rules rcpts=3') is not None,
         'logged event=bypass stage=eom checks=clamd,rules rcpts=3')

# a mixed message is checked fully: one ordinary recipient and the virus is refused
code, text = send(m.port, ['u@nofilter.example', 'b@example.test'], mt.eicar_message('v-mixed'))
mt.check(code == 554 and not at_sink('v-mixed'),
         'EICAR to a bypassed and an ordinary recipient refused, not delivered (%s %s)' % (code, text))

# abuse@ takes spam samples past the rules engine, but is still scanned for viruses
code, text = send(m.port, ['abuse@example.test'], spam('s-abuse'))
got = at_sink('s-abuse')
mt.check(code == 250 and len(got) == 1, 'spam to abuse@ delivered (%s %s)' % (code, text))
mt.check(got and not re.search(rb'^X-Spam-', got[0][1], re.M | re.I),
         'no X-Spam-* header claims a score that was not computed')
mt.check(m.wait_log(r'event=bypass stage=eom checks=rules rcpts=1') is not None,
         'logged event=bypass stage=eom checks=rules rcpts=1')
code, text = send(m.port, ['abuse@example.test'], mt.eicar_message('v-abuse'))
mt.check(code == 554 and not at_sink('v-abuse'), 'EICAR to abuse@ still refused by clamd (%s)' % code)
# abuse@ and a nofilter customer share only `rules`: the spam passes, still scanned
code, text = send(m.port, ['abuse@example.test', 'u@nofilter.example'], spam('s-both'))
mt.check(code == 250 and at_sink('s-both'), 'spam to abuse@ and a nofilter customer delivered (%s)' % code)
mt.check(m.count_log(r'event=bypass stage=eom checks=rules rcpts=2') == 1,
         'only the check both bypass is skipped: checks=rules rcpts=2')
# abuse@ and an ordinary recipient: the rules run
code, text = send(m.port, ['abuse@example.test', 'b@example.test'], spam('s-mixed'))
mt.check((code == 550 or code == 554) and not at_sink('s-mixed'),
         'spam to abuse@ and an ordinary recipient refused (%s %s)' % (code, text))

# SIGHUP re-reads the list (and its file): without the bypass the virus is refused again
n = m.count_log(r'event=reloaded')
m.reload(cfg_with(BYPASS[1:]))
mt.check(mt.wait_for(lambda: m.count_log(r'event=reloaded') > n, mt.slack(20)), 'reloaded')
code, text = send(m.port, ['u@nofilter.example'], mt.eicar_message('v-reload'))
mt.check(code == 554 and not at_sink('v-reload'), 'after a reload without it, EICAR refused (%s)' % code)
with open(nofilter_path, 'a') as f:
    f.write('example.test\n')
n = m.count_log(r'event=reloaded')
m.reload(cfg_with(BYPASS))
mt.check(mt.wait_for(lambda: m.count_log(r'event=reloaded') > n, mt.slack(20)), 'reloaded again')
code, text = send(m.port, ['b@example.test'], mt.eicar_message('v-file'))
mt.check(code == 250 and at_sink('v-file'), 'a domain added to the file counts after SIGHUP (%s)' % code)
m.stop()

# greylisting judges each recipient: the bypassed one passes at once, the other gets 451
g = mt.Mxgate(mt.proxied_config([sink.url], accept_domains=DOMAINS,
                                greylist={'enabled': True, 'delay': '1h', 'retry_window': '2h'},
                                bypass=[{'recipients': ['nofilter.example'], 'checks': ['greylist']}]),
              'mx-bypass-gl')
r = mt.send_mail(g.port, 'a@example.org', ['u@nofilter.example', 'b@example.test'], mt.message('g-mixed'),
                 proxy_src='198.18.7.1', timeout=60)
got = at_sink('g-mixed')
mt.check(list(r.rcpt_codes) == [250, 451] and r.code == 250 and len(got) == 1 and len(got[0][0]) == 1
         and 'u@nofilter.example' in got[0][0][0],
         'greylisting skips the bypassed recipient only: RCPT codes %s, message %s, delivered to %s'
         % (list(r.rcpt_codes), r.code, [g[0] for g in got]))
mt.check(g.count_log(r'event=bypass stage=rcpt checks=greylist rcpts=1') == 1, 'logged event=bypass stage=rcpt')
g.stop()

# -t: a check that cannot be bypassed is an error at its place; a virus check a warning
def checked(bypass):
    return cfg_with(bypass, listen=['127.0.0.1:2525'])


rc, out = mt.config_check(checked([{'recipients': ['a.example'], 'checks': ['milter']}]), 'milter')
mt.check(rc == 1 and 'bypass[0].checks[0]' in out and 'not a check' in out, '-t refuses checks: [milter] (%s)' % out.strip()[:300])
rc, out = mt.config_check(checked([{'recipients': ['a.example'], 'checks': ['dnsbl']}]), 'dnsbl')
mt.check(rc == 1 and 'exempt_recipients' in out, '-t refuses dnsbl and points at exempt_recipients')
rc, out = mt.config_check(checked([{'recipients': ['<a@b.example>'], 'checks': ['rules']}]), 'badrcpt')
mt.check(rc == 1 and 'bypass[0].recipients[0]' in out, '-t refuses a recipient in angle brackets')
rc, out = mt.config_check(checked(BYPASS), 'warn')
mt.check(rc == 0 and 'bypass[0] skips clamd' in out, '-t warns of a clamd bypass (%s)' % out.strip()[:300])
rc, out = mt.config_check(checked(BYPASS[1:]), 'nowarn')
mt.check(rc == 0 and 'warning' not in out, '-t quiet for a rules-only bypass (%s)' % out.strip()[:300])
mt.finish()
