#!/usr/bin/env python3
"""test_rules_recipient_actions — `rules.recipient_actions`: other score thresholds for some
recipients (MailScanner's `Required SpamAssassin Score` / `High SpamAssassin Score` rulesets,
amavis's spam_tag2_level_maps / spam_kill_level_maps, PMG's rules at other spam levels per
domain; before, `rules.actions` was every domain's and -t refused the key).

One message score, different recipients: strict.example refuses at 5, lenient.example at 20,
everyone else (rules.actions) at 15. mxgate does not split a message: a mixed one gets the
mildest of its recipients' actions (refused only where every policy refuses it), is tagged at
the lowest add_header, and X-Spam-Status shows that lowest required=. A `file:` list is
re-read on SIGHUP; -t reports a bad item at FILE:LINE:COL.

Peers: smtp-sink as the backend, the rules engine with header rules worth 4, 10 and 25."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')

RULES = ('header LOC_FOUR X-Test-Spam =~ /^four/\nscore LOC_FOUR 4\n'
         'header LOC_TEN X-Test-Spam =~ /^ten/\nscore LOC_TEN 10\n'
         'header LOC_HIGH X-Test-Spam =~ /^high/\nscore LOC_HIGH 25\n')
rules_path = os.path.join(mt.TMP, 'rcpt-actions.cf')
with open(rules_path, 'w') as f:
    f.write(RULES)
strict_path = os.path.join(mt.TMP, 'strict.list')
with open(strict_path, 'w') as f:
    f.write('# domains that want spam refused early\nfiled.example\n')

DOMAINS = ['strict.example', 'lenient.example', 'slow.example', 'filed.example', 'other.example']
ENTRIES = [{'recipients': ['strict.example', 'file:' + strict_path], 'add_header': 3, 'reject': 5},
           {'recipients': ['lenient.example'], 'add_header': 8, 'reject': 20},
           {'recipients': ['slow.example'], 'tempfail': 8}]
sink = mt.Sink()


def cfg_with(entries, listen=None, **rules):
    r = {'files': [rules_path], 'actions': {'add_header': 5, 'reject': 15}, 'recipient_actions': entries}
    r.update(rules)
    return mt.config([sink.url], listen=listen, accept_domains=DOMAINS, hostname='mx.example.test', rules=r)


def at_sink(tag):
    """The sink's copies of message tag: [(rcpts, data)]."""
    return [(m['rcpts'], m['data']) for m in sink.messages() if tag in mt.message_ids([m['data']])]


def field(data, name):
    """The values of field name in data's header, unfolded (smtp-sink stores LF line ends)."""
    return mt.header_values(data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n'), name)


def status(data):
    v = field(data, 'X-Spam-Status')
    return v[0] if v else ''


def send(port, tag, score, rcpts):
    return mt.send_mail(port, 'a@example.org', list(rcpts),
                        mt.message(tag, headers=('X-Test-Spam: %s' % score,)), timeout=60)


m = mt.Mxgate(cfg_with(ENTRIES), 'mx-rcpt-actions')

# one score (10), three policies
code, text = send(m.port, 'strict10', 'ten', ['u@strict.example'])
mt.check(code == 550 and '5.7.1' in text and not at_sink('strict10'),
         'score 10 to strict.example (reject 5): 550 5.7.1 (%s %s)' % (code, text))
code, text = send(m.port, 'lenient10', 'ten', ['u@lenient.example'])
got = at_sink('lenient10')
mt.check(code == 250 and len(got) == 1 and status(got[0][1]).startswith('Yes, score=10.0 required=8.0'),
         'score 10 to lenient.example (reject 20, add_header 8): delivered, "Yes ... required=8.0" (%s %s %s)'
         % (code, text, got and status(got[0][1])))
code, text = send(m.port, 'other10', 'ten', ['u@other.example'])
got = at_sink('other10')
mt.check(code == 250 and len(got) == 1 and status(got[0][1]).startswith('Yes, score=10.0 required=5.0'),
         'score 10 to other.example (rules.actions: reject 15): delivered, required=5.0 (%s %s %s)'
         % (code, text, got and status(got[0][1])))
code, text = send(m.port, 'other25', 'high', ['u@other.example'])
mt.check(code == 550 and not at_sink('other25'), 'score 25 to other.example: 550 (%s %s)' % (code, text))

# mixed messages: the mildest action, the lowest required=
code, text = send(m.port, 'mixed10', 'ten', ['u@strict.example', 'v@lenient.example'])
got = at_sink('mixed10')
mt.check(code == 250 and len(got) == 1 and len(got[0][0]) == 2,
         'score 10 to strict.example and lenient.example: 250, delivered once to both (%s %s %s)'
         % (code, text, [g[0] for g in got]))
mt.check(got and status(got[0][1]).startswith('Yes, score=10.0 required=3.0'),
         'that message is tagged at the lowest add_header: required=3.0 (%s)' % (got and status(got[0][1])))
mt.check(m.wait_log(r'event=rules score=10\.0 required=3\.0 action=add_header tests=LOC_TEN '
                    r'thresholds=recipient_actions\[0\],recipient_actions\[1\]') is not None,
         'logged event=rules ... required=3.0 action=add_header thresholds=recipient_actions[0],recipient_actions[1]')
code, text = send(m.port, 'mixed25', 'high', ['u@strict.example', 'v@lenient.example'])
mt.check(code == 550 and not at_sink('mixed25'),
         'score 25 to both: every policy refuses: 550 (%s %s)' % (code, text))
code, text = send(m.port, 'mixedoth', 'ten', ['u@strict.example', 'w@other.example'])
got = at_sink('mixedoth')
mt.check(code == 250 and len(got) == 1 and len(got[0][0]) == 2,
         'score 10 to strict.example and an ordinary recipient (reject 15): delivered to both (%s %s)'
         % (code, text))
mt.check(m.wait_log(r'event=rules score=10\.0 required=3\.0 action=add_header tests=LOC_TEN '
                    r'thresholds=recipient_actions\[0\],actions') is not None,
         'logged thresholds=recipient_actions[0],actions')
code, text = send(m.port, 'mixedslow', 'ten', ['u@strict.example', 'w@slow.example'])
mt.check(code == 451 and '4.7.1' in text and not at_sink('mixedslow'),
         'score 10 to strict.example (reject) and slow.example (tempfail 8): the milder, 451 (%s %s)'
         % (code, text))
code, text = send(m.port, 'mixed4', 'four', ['u@strict.example', 'v@lenient.example'])
got = at_sink('mixed4')
mt.check(code == 250 and got and status(got[0][1]).startswith('Yes, score=4.0 required=3.0')
         and field(got[0][1], 'X-Spam-Flag') == ['YES'],
         'score 4 to both: tagged for both (X-Spam-Flag: YES, required=3.0) (%s %s)'
         % (code, got and status(got[0][1])))
code, text = send(m.port, 'lenient4', 'four', ['v@lenient.example'])
got = at_sink('lenient4')
mt.check(code == 250 and got and status(got[0][1]).startswith('No, score=4.0 required=8.0')
         and not field(got[0][1], 'X-Spam-Flag'),
         'score 4 to lenient.example alone: No, required=8.0, no X-Spam-Flag (%s %s)'
         % (code, got and status(got[0][1])))

# the file: list, re-read on SIGHUP
code, text = send(m.port, 'filed10', 'ten', ['u@filed.example'])
mt.check(code == 550 and not at_sink('filed10'), 'filed.example (from the file): 550 at 10 (%s %s)' % (code, text))
with open(strict_path, 'w') as f:
    f.write('# emptied\n')
n = m.count_log(r'event=reloaded')
m.reload(cfg_with(ENTRIES))
mt.check(mt.wait_for(lambda: m.count_log(r'event=reloaded') > n, mt.slack(20)), 'reloaded')
code, text = send(m.port, 'filed10b', 'ten', ['u@filed.example'])
mt.check(code == 250 and at_sink('filed10b'),
         'after SIGHUP with filed.example gone from the file: rules.actions, delivered (%s %s)' % (code, text))
code, text = send(m.port, 'strict10b', 'ten', ['u@strict.example'])
mt.check(code == 550, 'strict.example, written inline, still 550 after the reload (%s %s)' % (code, text))
m.stop()

# -t: errors at their place, the required_score warning
listen = ['127.0.0.1:2525']
rc, out = mt.config_check(cfg_with(ENTRIES, listen=listen), 'good')
mt.check(rc == 0 and 'warning' not in out, '-t takes recipient_actions (%s)' % out.strip()[:300])
rc, out = mt.config_check(cfg_with([{'recipients': ['<u@strict.example>'], 'reject': 5},
                                    {'recipients': ['lenient.example']}], listen=listen), 'bad')
mt.check(rc == 1 and re.search(r'bad\.yaml:\d+:\d+: rules\.recipient_actions\[0\]\.recipients\[0\]: '
                               r'"<u@strict\.example>"', out)
         and re.search(r'bad\.yaml:\d+:\d+: rules\.recipient_actions\[1\]: an entry needs a threshold', out),
         '-t: a recipient in <> and an entry without a threshold, each at FILE:LINE:COL (%s)' % out.strip()[:500])
bad_list = os.path.join(mt.TMP, 'bad.list')
with open(bad_list, 'w') as f:
    f.write('ok.example\n*bad\n')
rc, out = mt.config_check(cfg_with([{'recipients': ['file:' + bad_list], 'reject': 5}], listen=listen), 'badfile')
mt.check(rc == 1 and 'rules.recipient_actions[0].recipients[0]' in out and 'bad.list:2' in out,
         '-t: a bad line of a file: list names the file and line (%s)' % out.strip()[:300])
rc, out = mt.config_check(cfg_with(ENTRIES, listen=listen, required_score=6), 'warn')
mt.check(rc == 0 and 'rules.recipient_actions[0].add_header does not change X-Spam-Status' in out,
         '-t warns that required_score overrides an entry\'s add_header (%s)' % out.strip()[:300])
mt.finish()
