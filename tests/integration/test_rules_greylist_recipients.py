#!/usr/bin/env python3
"""test_rules_greylist_recipients — `rules.recipient_actions` entries take `greylist` as the
other thresholds (before: refused as an unknown key, and an entry could only inherit
rules.actions.greylist). A recipient's greylist threshold is its entry's, else rules.actions';
a message to several recipients takes the mildest of their decisions (a delivery before a
greylisting), and the greylist store is opened for an entry's greylist alone (rules.actions
without one).

Peers: the scripted backend (mxtest.Backend), the rules engine with a header rule worth 6;
greylist.store local with delay 0s: a first sight is deferred, its retry passes (no wait)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
rules_path = os.path.join(mt.TMP, 'grey-rcpt.cf')
with open(rules_path, 'w') as f:
    f.write('header LOC_SIX X-Test-Spam =~ /^six/\nscore LOC_SIX 6\n')
be = mt.Backend()


def cfg(actions, entries, listen=None):
    return mt.config([be.url], listen=listen, workers=1, hostname='mx.example.test',
                     greylist={'store': 'local', 'delay': '0s', 'retry_window': '1h'},
                     rules={'files': [rules_path], 'actions': actions, 'recipient_actions': entries})


def send(mx, tag, rcpts):
    return mt.send_mail(mx.port, 'a@example.org', rcpts,
                        mt.message(tag, body='Body of %s.\r\n' % tag, headers=('X-Test-Spam: six',)), timeout=60)


def greylist_field(tag):
    got = be.by_tag(tag)
    return mt.header_values(got[0]['data'], 'X-Mxgate-Greylist') if got else None


# rules.actions greylists nobody; grey.example's entry does
mx = mt.Mxgate(cfg({'add_header': 5}, [{'recipients': ['grey.example'], 'greylist': 4}]), 'mx-entry')
code, text = send(mx, 'g1', ['u@grey.example'])
mt.check(code == 451 and 'greylisted' in text and not be.by_tag('g1'),
         'grey.example (its entry greylist: 4), score 6: first sight 451 greylisted (%s %s)' % (code, text))
code, text = send(mx, 'g1', ['u@grey.example'])
gf = greylist_field('g1')
mt.check(code == 250 and gf is not None and len(gf) == 1 and gf[0].startswith('passed digest='),
         'its retry passes, tagged X-Mxgate-Greylist: passed (%s %s %s)' % (code, text, gf))
code, text = send(mx, 'o1', ['u@other.example'])
mt.check(code == 250 and greylist_field('o1') == [],
         'other.example (rules.actions: no greylist): delivered at once, untagged (%s %s)' % (code, text))
code, text = send(mx, 'm1', ['u@grey.example', 'u@other.example'])
mt.check(code == 250 and len(be.by_tag('m1')) == 1 and greylist_field('m1') == [],
         'to both: the mildest decision, delivered at once (%s %s)' % (code, text))
mt.check(mx.count_log(r'event=rules_greylist result=deferred') == 1 and
         mx.count_log(r'event=rules_greylist result=passed') == 1,
         'the store asked for grey.example\'s message alone: one deferred, one passed')
mx.stop()

# rules.actions greylists at 4; nogrey.example's entry turns it off (0)
mx = mt.Mxgate(cfg({'add_header': 5, 'greylist': 4}, [{'recipients': ['nogrey.example'], 'greylist': 0}]),
               'mx-off')
code, text = send(mx, 'n1', ['u@nogrey.example'])
mt.check(code == 250 and be.by_tag('n1'), 'nogrey.example (greylist: 0): delivered at once (%s %s)' % (code, text))
code, text = send(mx, 'p1', ['u@plain.example'])
mt.check(code == 451 and 'greylisted' in text, 'plain.example (rules.actions\' 4): greylisted (%s %s)' % (code, text))
mx.stop()

# -t: an entry's greylist alone is greylisting by score: the local store warning names it
rc, out = mt.config_check(cfg({'add_header': 5}, [{'recipients': ['grey.example'], 'greylist': 4}],
                              listen=[{'address': '127.0.0.1:2525'}]), 'entry-local')
mt.check(rc == 0 and "a recipient_actions entry's greylist keeps its records in greylist.store local" in out,
         '-t warns of the local store for an entry\'s greylist (%s %s)' % (rc, out.strip()[:300]))
mt.finish()
