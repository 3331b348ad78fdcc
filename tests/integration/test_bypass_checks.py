#!/usr/bin/env python3
"""test_bypass_checks — `bypass:` skips content checks for some recipients (amavis's
bypass_virus_checks_maps / bypass_spam_checks_maps): a message whose every recipient is
covered is not scanned, a mixed message is split (bypass_mixed: split, the default: a
recipient covered otherwise than the first gets 452 4.5.3 and comes alone, so a covered
recipient's copy is never refused by the check it bypasses) or, with bypass_mixed: check,
checked fully (a check is skipped only when every accepted recipient bypasses it),
greylisting (a RCPT check) is skipped per recipient,
-t refuses what cannot be bypassed (sender authentication, the client's screens, a name
no plugin has) and warns of a virus check, SIGHUP re-reads the list; a milter bypassed by
every recipient is sent ABORT instead of the message, a shared-object plugin is bypassed by
its name and hears on_abort.

Peers: smtp-sink as the backend, a real clamd (EICAR signatures), the rules engine with a
header rule worth 20 (reject at 15), greylisting on its default store, a python3-milter
filter (tests/peers/mx_milter.py), opendkim (signing), plugins/examples/example_plugin.so."""
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


def only_to(got, addr):
    """got (at_sink's) is one copy, for addr alone."""
    return len(got) == 1 and len(got[0][0]) == 1 and addr in got[0][0][0]


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

# a mixed message is split (bypass_mixed: split): the ordinary recipient gets 452 4.5.3, the
# bypassed customer its virus; sent alone, the ordinary recipient's copy is refused
r = send(m.port, ['u@nofilter.example', 'b@example.test'], mt.eicar_message('v-mixed'))
got = at_sink('v-mixed')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and only_to(got, 'u@nofilter.example'),
         'EICAR to a bypassed and an ordinary recipient: RCPT %s, the bypassed copy delivered (%s %s, to %s)'
         % (list(r.rcpt_codes), r.code, r.text, [g[0] for g in got]))
mt.check(m.wait_log(r'event=tempfail stage=rcpt reason=bypass_split rcpt=<?b@example\.test>? .*code=452 '
                    r'reply="4\.5\.3 Recipients with other content checks go in a separate transaction"') is not None,
         'logged event=tempfail stage=rcpt reason=bypass_split with the 452')
code, text = send(m.port, ['b@example.test'], mt.eicar_message('v-mixed2'))
mt.check(code == 554 and not at_sink('v-mixed2'), 'the ordinary recipient, sent alone, refused (%s %s)' % (code, text))

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
# abuse@ and a nofilter customer differ on clamd (a check of the message): split too
r = send(m.port, ['abuse@example.test', 'u@nofilter.example'], spam('s-both'))
got = at_sink('s-both')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and only_to(got, 'abuse@example.test'),
         'spam to abuse@ and a nofilter customer: RCPT %s, abuse@\'s copy delivered (%s)' % (list(r.rcpt_codes), r.code))
# abuse@ and an ordinary recipient: abuse@ gets its spam sample, the other is split off
r = send(m.port, ['abuse@example.test', 'b@example.test'], spam('s-mixed'))
got = at_sink('s-mixed')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and only_to(got, 'abuse@example.test'),
         'spam to abuse@ and an ordinary recipient: RCPT %s, abuse@\'s copy delivered (%s %s)'
         % (list(r.rcpt_codes), r.code, r.text))
# two bypassed customers covered alike (clamd and rules): one transaction
r = send(m.port, ['u@nofilter.example', 'w@filed.example'], spam('s-alike'))
mt.check(list(r.rcpt_codes) == [250, 250] and r.code == 250 and len(at_sink('s-alike')) == 1,
         'two recipients covered alike stay one transaction (RCPT %s, %s)' % (list(r.rcpt_codes), r.code))

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
mt.check(rc == 0, '-t takes checks: [milter] (%s)' % out.strip()[:300])
for auth in ('dkim', 'dmarc', 'spf', 'arc'):
    rc, out = mt.config_check(checked([{'recipients': ['a.example'], 'checks': ['rules', auth]}]), 'auth-' + auth)
    mt.check(rc == 1 and re.search(r'auth-%s\.yaml:\d+:\d+: bypass\[0\]\.checks\[1\]: "%s": sender authentication '
                                   r'is not bypassed' % (auth, auth), out),
             '-t refuses checks: [%s]: sender authentication, at its FILE:LINE:COL (%s)' % (auth, out.strip()[:300]))
rc, out = mt.config_check(checked([{'recipients': ['a.example'], 'checks': ['mine']}]), 'noplugin')
mt.check(rc == 1 and re.search(r'noplugin\.yaml:\d+:\d+: bypass\[0\]\.checks\[0\]: "mine": no check nor plugins: entry', out),
         '-t refuses a check no plugins: entry is named (%s)' % out.strip()[:300])
rc, out = mt.config_check(checked([{'recipients': ['a.example'], 'checks': ['dnsbl']}]), 'dnsbl')
mt.check(rc == 1 and 'exempt_recipients' in out, '-t refuses dnsbl and points at exempt_recipients')
rc, out = mt.config_check(checked([{'recipients': ['<a@b.example>'], 'checks': ['rules']}]), 'badrcpt')
mt.check(rc == 1 and 'bypass[0].recipients[0]' in out, '-t refuses a recipient in angle brackets')
rc, out = mt.config_check(checked(BYPASS), 'warn')
mt.check(rc == 0 and 'bypass[0] skips clamd' in out, '-t warns of a clamd bypass (%s)' % out.strip()[:300])
rc, out = mt.config_check(checked(BYPASS[1:]), 'nowarn')
mt.check(rc == 0 and 'warning' not in out, '-t quiet for a rules-only bypass (%s)' % out.strip()[:300])

# A milter (tests/peers/mx_milter.py on python3-milter: 550 at RCPT for reject@, 550 at end
# of data for REJECTME, else an X-Test-Milter header). A message whose every recipient
# bypasses it gets SMFIC_ABORT in place of the message (the milter's abort callback, no eom);
# a mixed one is checked fully; at RCPT a covered recipient is not shown to it.
mil = mt.milter()
mil_log = os.path.join(mt.TMP, mil.name + '.log')


def milter_saw(what, sender):
    with open(mil_log) as f:
        return ('%s <%s>' % (what, sender)) in f.read().splitlines()


def milter_cfg(bypass=({'recipients': ['nofilter.example'], 'checks': ['milter']},), **extra):
    """A config with the test milter as its one plugin and bypass (a list of entries)."""
    return mt.config([sink.url], accept_domains=DOMAINS, hostname='mx.example.test',
                     plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % mil.port,
                               'on_error': 'tempfail', 'timeout': '20s'}],
                     bypass=list(bypass), **extra)


mm = mt.Mxgate(milter_cfg(), 'mx-bypass-milter')
c = mt.Client(mm.port, timeout=60)
c.ehlo('client.test')
r = mt.send_mail(mm.port, 'm-abort@example.org', ['u@nofilter.example', 'reject@nofilter.example'],
                 mt.message('m-abort', body='REJECTME\r\n'), client=c, timeout=60)
got = at_sink('m-abort')
mt.check(list(r.rcpt_codes) == [250, 250] and r.code == 250 and len(got) == 1,
         'REJECTME to two recipients that bypass the milter (one it would refuse at RCPT) delivered: '
         'RCPT %s, end of data %s %s' % (list(r.rcpt_codes), r.code, r.text))
mt.check(got and b'X-Test-Milter' not in got[0][1], 'nothing of the milter in that message')
mt.check(mt.wait_for(lambda: milter_saw('abort', 'm-abort@example.org'), mt.slack(20)) and
         not milter_saw('eom', 'm-abort@example.org'), 'the milter was sent ABORT, not the message')
mt.check(mm.wait_log(r'event=bypass stage=data checks=milter rcpts=2') is not None,
         'logged event=bypass stage=data checks=milter rcpts=2')
# the same session, the same milter connection: the next message is filtered as ever
r = mt.send_mail(mm.port, 'm-next@example.org', ['b@example.test'], mt.message('m-next'), client=c, timeout=60)
got = at_sink('m-next')
mt.check(r.code == 250 and got and b'X-Test-Milter: passed' in got[0][1],
         'after the ABORT the next message of the session is filtered (%s %s)' % (r.code, r.text))
mt.check(milter_saw('eom', 'm-next@example.org'), 'the milter saw that message to its end')
# A mixed message (session 28's finding): split, the covered recipient's copy is not refused
# by the milter it bypasses (session 28's code: RCPT 250 250, then 550 for the whole message)
r = mt.send_mail(mm.port, 'm-mixed@example.org', ['u@nofilter.example', 'b@example.test'],
                 mt.message('m-mixed', body='REJECTME\r\n'), client=c, timeout=60)
got = at_sink('m-mixed')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and only_to(got, 'u@nofilter.example') and b'X-Test-Milter' not in got[0][1],
         'REJECTME to a bypassing and an ordinary recipient: RCPT %s, end of data %s %s, the bypassing '
         'copy delivered untouched (to %s)' % (list(r.rcpt_codes), r.code, r.text, [g[0] for g in got]))
mt.check(mt.wait_for(lambda: milter_saw('abort', 'm-mixed@example.org'), mt.slack(20)) and
         not milter_saw('eom', 'm-mixed@example.org'), 'the milter was sent ABORT for that transaction')
r = mt.send_mail(mm.port, 'm-mixed@example.org', ['b@example.test'],
                 mt.message('m-mixed2', body='REJECTME\r\n'), client=c, timeout=60)
mt.check(r.code == 550 and not at_sink('m-mixed2'),
         'the ordinary recipient sent alone: refused by the milter (%s %s)' % (r.code, r.text))
r = mt.send_mail(mm.port, 'm-rcpt@example.org', ['reject@example.test', 'reject@nofilter.example'],
                 mt.message('m-rcpt'), client=c, timeout=60)
mt.check(list(r.rcpt_codes) == [550, 250] and r.code == 250,
         'at RCPT the milter judges the candidate alone: reject@ of an ordinary domain refused, of a '
         'bypassing one accepted (RCPT %s)' % list(r.rcpt_codes))
# the group is the first recipient taken: one the milter refused at RCPT decides nothing
r = mt.send_mail(mm.port, 'm-group@example.org', ['reject@example.test', 'u@nofilter.example', 'b@example.test'],
                 mt.message('m-group'), client=c, timeout=60)
mt.check(list(r.rcpt_codes) == [550, 250, 452] and r.code == 250 and only_to(at_sink('m-group'), 'u@nofilter.example'),
         'a refused first recipient decides no group: RCPT %s, the covered one taken, the ordinary one split '
         '(%s %s)' % (list(r.rcpt_codes), r.code, r.text))
c.cmd('QUIT')
mm.stop()

# bypass_mixed: check keeps one transaction: the mixed message goes to the milter (without
# the covered recipient) and its verdict is the whole message's
mc = mt.Mxgate(milter_cfg(bypass_mixed='check'), 'mx-bypass-check')
r = mt.send_mail(mc.port, 'm-check@example.org', ['u@nofilter.example', 'b@example.test'],
                 mt.message('m-check', body='REJECTME\r\n'), timeout=60)
mt.check(list(r.rcpt_codes) == [250, 250] and r.code == 550 and not at_sink('m-check'),
         'bypass_mixed: check: RCPT %s, the mixed message refused by the milter (%s %s)'
         % (list(r.rcpt_codes), r.code, r.text))
mc.stop()

# nor does one the backend refused (smtp-sink -f rcpt: 5xx for every RCPT): each recipient
# gets the backend's answer, none the 452 of a group it never joined
refusing = mt.Sink(name='bypass-rcpt-refused', args=['-f', 'rcpt'])
mr = mt.Mxgate(mt.config([refusing.url], accept_domains=DOMAINS, hostname='mx.example.test',
                         plugins=[{'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port,
                                   'on_error': 'tempfail', 'timeout': '20s'}],
                         bypass=[{'recipients': ['nofilter.example'], 'checks': ['clamd']}]), 'mx-bypass-refused')
c = mt.Client(mr.port, timeout=60)
c.ehlo('client.test')
codes = [c.cmd('MAIL FROM:<b-refused@example.org>')[0]]
codes += [c.cmd('RCPT TO:<%s>' % a)[0] for a in ('u@nofilter.example', 'b@example.test', 'v@nofilter.example')]
c.cmd('QUIT')
mr.stop()
mt.check(codes[0] == 250 and codes[1] // 100 == 5 and codes[2] // 100 == 5 and codes[3] // 100 == 5,
         'a first recipient the backend refused decides no group: MAIL, RCPT %s' % codes)
mt.check(not re.search(r'reason=bypass_split', mr.log()), 'no bypass_split with nothing taken')

# A recipient a filter adds at end of data (the milter's CHANGEME: <added@example.test> added,
# <b@example.test> removed) has no RCPT to split it off with: it gets the message as the
# filters left it, and when bypass: covers it otherwise than the message was checked that is
# logged (event=added_rcpt_bypass): here the milter ran, though added@ bypasses it, and the
# rules were skipped (the customer's bypass), though added@ has them. Session 29's code
# delivered it so without a word.
ma = mt.Mxgate(milter_cfg([{'recipients': ['added@example.test'], 'checks': ['milter']},
                           {'recipients': ['nofilter.example'], 'checks': ['rules']}],
                          rules={'files': [rules_path], 'actions': {'add_header': 5, 'reject': 15}}), 'mx-bypass-added')
r = mt.send_mail(ma.port, 'm-added@example.org', ['u@nofilter.example'],
                 mt.message('m-added', body='CHANGEME\r\n'), timeout=60)
got = at_sink('m-added')
mt.check(r.code == 250 and len(got) == 1 and sorted(a.strip('<>') for a in got[0][0]) ==
         ['added@example.test', 'u@nofilter.example'],
         'a recipient the milter added gets the message with the others (%s %s, to %s)'
         % (r.code, r.text, [g[0] for g in got]))
mt.check(ma.wait_log(r'event=added_rcpt_bypass rcpt=<added@example\.test> ran=milter skipped=rules rcpts=1') is not None,
         'logged event=added_rcpt_bypass rcpt=<added@example.test> ran=milter skipped=rules rcpts=1')
# an ordinary recipient's message: the milter and the rules ran; added@ bypasses the milter only
r = mt.send_mail(ma.port, 'm-added2@example.org', ['c@example.test'],
                 mt.message('m-added2', body='CHANGEME\r\n'), timeout=60)
mt.check(r.code == 250 and len(at_sink('m-added2')) == 1, 'a second CHANGEME message delivered (%s)' % r.code)
mt.check(ma.wait_log(r'event=added_rcpt_bypass rcpt=<added@example\.test> ran=milter skipped=- rcpts=1') is not None,
         'logged event=added_rcpt_bypass ... ran=milter skipped=- for it')
ma.stop()
mt.check(len(re.findall(r'event=added_rcpt_bypass', ma.log())) == 2,
         'one event=added_rcpt_bypass line a message, none for the recipients the client gave')

# A C libmilter filter, opendkim signing for example.org: a message whose every recipient
# bypasses it is ABORTed there and relayed unsigned; the session's next message is signed
# (the filter's state after the ABORT is the protocol's "before MAIL").
dk = mt.opendkim()
dm = mt.Mxgate(mt.config([sink.url], accept_domains=DOMAINS, hostname='mx.example.test',
                         plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % dk.port,
                                   'on_error': 'tempfail', 'timeout': '20s'}],
                         bypass=[{'recipients': ['nofilter.example'], 'checks': ['milter']}]), 'mx-bypass-dkim')
c = mt.Client(dm.port, timeout=60)
c.ehlo('client.test')
r1 = mt.send_mail(dm.port, 'a@example.org', ['u@nofilter.example'], mt.message('k-bypass'), client=c, timeout=60)
r2 = mt.send_mail(dm.port, 'a@example.org', ['b@example.test'], mt.message('k-signed'), client=c, timeout=60)
c.cmd('QUIT')
g1, g2 = at_sink('k-bypass'), at_sink('k-signed')
mt.check(r1.code == 250 and g1 and b'DKIM-Signature:' not in g1[0][1],
         'opendkim bypassed: the message relayed unsigned (%s %s)' % (r1.code, r1.text))
mt.check(r2.code == 250 and g2 and g2[0][1].count(b'DKIM-Signature:') == 1,
         'the next message of the session signed once by opendkim (%s %s)' % (r2.code, r2.text))
dm.stop()

# A shared object by its plugins: name (plugins/examples/example_plugin.c: 550 for MAGICWORD)
so = os.path.join(mt.BUILD, 'example_plugin.so')
if not os.path.exists(so):
    mt.fail('example_plugin.so not built (it is part of the build): ' + so)
def so_cfg(**extra):
    return mt.config([sink.url], accept_domains=DOMAINS, hostname='mx.example.test',
                     plugins=[{'name': 'ex', 'path': so}],
                     bypass=[{'recipients': ['nofilter.example'], 'checks': ['ex']}], **extra)


pcfg = so_cfg()
rc, out = mt.config_check(so_cfg(listen=['127.0.0.1:2525']), 'so-name')
mt.check(rc == 0, '-t takes a plugins: entry\'s name as a check (%s)' % out.strip()[:300])
pm = mt.Mxgate(pcfg, 'mx-bypass-so')
code, text = send(pm.port, ['u@nofilter.example'], mt.message('p-bypass', body='MAGICWORD\r\n'))
got = at_sink('p-bypass')
mt.check(code == 250 and got and b'X-Example-Plugin' not in got[0][1],
         'MAGICWORD to a recipient bypassing `ex` delivered, the plugin not run (%s %s)' % (code, text))
mt.check(pm.wait_log(r'event=bypass stage=eom checks=ex rcpts=1') is not None, 'logged checks=ex')
# the plugin hears on_abort (a hook added after desc_size): its log line
mt.check(pm.wait_log(r'event=example_abort plugin=ex rcpts=1') is not None,
         'the shared object was told by on_abort (event=example_abort plugin=ex rcpts=1)')
r = send(pm.port, ['u@nofilter.example', 'b@example.test'], mt.message('p-mixed', body='MAGICWORD\r\n'))
got = at_sink('p-mixed')
mt.check(list(r.rcpt_codes) == [250, 452] and r.code == 250 and len(got) == 1 and b'X-Example-Plugin' not in got[0][1],
         'MAGICWORD to a mixed message: RCPT %s, the bypassing copy delivered (%s %s)' % (list(r.rcpt_codes), r.code, r.text))
code, text = send(pm.port, ['b@example.test'], mt.message('p-alone', body='MAGICWORD\r\n'))
mt.check(code == 550 and not at_sink('p-alone'), 'MAGICWORD to the ordinary recipient refused by `ex` (%s %s)' % (code, text))
pm.stop()
mt.finish()
