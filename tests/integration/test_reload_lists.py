#!/usr/bin/env python3
"""test_reload_lists — a SIGHUP and the `file:` lists of a hosting MX (docs/operations.md
"Hosting many domains"): accept_domains, a backends.routes entry, bypass, deny_senders and
rules.recipient_actions, each from a file of its own. Every answer the lists give is taken
before and after:

  - a reload with nothing changed keeps every answer (generation 2);
  - editing one file (accept_domains': a customer added) changes that answer alone;
  - a file replaced by rename (deny_senders': another sender, the same size, a new inode, as a
    provisioning script writes it) is seen;
  - a file edited in place (recipient_actions': a domain added) is seen;
  - a file gone (renamed away) fails the reload (event=reload_failed) and the old lists stay.

The files are read at every load (session 31 measured a reload: reading them is a third of the
daemon's CPU for it, docs/operations.md): this test holds any later skipping of unchanged
files to the same answers. Peers: two smtp-sinks (the default servers and the route's)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink(name='sink-lists-a')
sink_b = mt.Sink(name='sink-lists-b')


def write(name, text):
    path = os.path.join(mt.TMP, name)
    with open(path, 'w') as f:
        f.write(text)
    return path


rules_path = write('lists.cf', 'header LOC_TEN X-Test-Spam =~ /^ten/\nscore LOC_TEN 10\n')
accept = write('accept', 'cust1.example\nstrict.example\nnofilter.example\nrouted.example\n')
routed = write('routed', 'routed.example\n')
nofilter = write('nofilter', 'nofilter.example\n')
deny = write('deny', 'rival@spam1.example\n')
strict = write('strict', 'strict.example\n')


def cfg():
    return mt.config([sink.url], accept_domains=['file:' + accept],
                     backends={'routes': [{'domains': ['file:' + routed], 'servers': [sink_b.url]}]},
                     bypass=[{'recipients': ['file:' + nofilter], 'checks': ['rules']}],
                     deny_senders=[{'recipients': ['cust1.example'], 'senders': ['file:' + deny]}],
                     rules={'files': [rules_path], 'actions': {'add_header': 5, 'reject': 15},
                            'recipient_actions': [{'recipients': ['file:' + strict], 'reject': 8}]})


def answers(port):
    """What each list decides, as end-of-data (or the failing step's) codes."""
    ten = mt.message('ten', headers=('X-Test-Spam: ten',))
    got = {}
    for name, sender, rcpt, msg in (
            ('accept cust1', 'a@example.org', 'u@cust1.example', mt.message('a1')),
            ('accept cust2', 'a@example.org', 'u@cust2.example', mt.message('a2')),
            ('deny spam1', 'rival@spam1.example', 'u@cust1.example', mt.message('d1')),
            ('deny spam2', 'rival@spam2.example', 'u@cust1.example', mt.message('d2')),
            ('score 10 strict', 'a@example.org', 'u@strict.example', ten),
            ('score 10 cust1', 'a@example.org', 'u@cust1.example', ten),
            ('score 10 nofilter', 'a@example.org', 'u@nofilter.example', ten)):
        got[name] = mt.send_mail(port, sender, [rcpt], msg, timeout=30)[0]
    before = sink_b.count()
    got['route'] = mt.send_mail(port, 'a@example.org', ['u@routed.example'], mt.message('r1'), timeout=30)[0]
    got['route at b'] = mt.wait_for(lambda: sink_b.count() == before + 1)
    return got


def reload_to(mx, gen):
    start = mx.log_size()
    mx.reload(cfg())
    return mx.wait_log(r'event=reloaded generation=%d' % gen, timeout=mt.slack(30), start=start) is not None


mx = mt.Mxgate(cfg(), 'mx-lists')
first = answers(mx.port)
want = {'accept cust1': 250, 'accept cust2': 550, 'deny spam1': 550, 'deny spam2': 250,
        'score 10 strict': 550, 'score 10 cust1': 250, 'score 10 nofilter': 250,
        'route': 250, 'route at b': True}
mt.check(first == want, 'the lists\' answers at start: %s' % first)

mt.check(reload_to(mx, 2), 'a reload with no file changed: event=reloaded generation=2')
got = answers(mx.port)
mt.check(got == first, 'an unchanged reload keeps every answer (%s)' % got)

with open(accept, 'a') as f:
    f.write('cust2.example\n')
mt.check(reload_to(mx, 3), 'accept_domains\' file edited: reloaded')
got = answers(mx.port)
mt.check(got == dict(first, **{'accept cust2': 250}),
         'one file edited: its answer alone changes (cust2 accepted) (%s)' % got)

tmp = write('deny.new', 'rival@spam2.example\n')
os.rename(tmp, deny)
mt.check(reload_to(mx, 4), 'deny_senders\' file replaced by rename: reloaded')
got = answers(mx.port)
mt.check(got == dict(first, **{'accept cust2': 250, 'deny spam1': 250, 'deny spam2': 550}),
         'a file replaced by rename, the same size: the new sender refused, the old one not (%s)' % got)

with open(strict, 'a') as f:
    f.write('cust1.example\n')
mt.check(reload_to(mx, 5), 'recipient_actions\' file edited in place: reloaded')
got = answers(mx.port)
mt.check(got['score 10 cust1'] == 550 and got['score 10 strict'] == 550,
         'recipient_actions\' file: cust1 now refuses at 8 (%s)' % got)

start = mx.log_size()
os.rename(strict, strict + '.gone')
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reload_failed', timeout=mt.slack(30), start=start) is not None,
         'a list file gone: event=reload_failed (%s)' % mx.tail(3))
got = answers(mx.port)
mt.check(got['score 10 cust1'] == 550 and got['deny spam2'] == 550 and got['accept cust2'] == 250,
         'the failed reload keeps the lists in force (%s)' % got)
mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
sink.stop()
sink_b.stop()
mt.finish()
