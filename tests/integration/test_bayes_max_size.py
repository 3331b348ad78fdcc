#!/usr/bin/env python3
"""test_bayes_max_size — a message over rules.max_size is neither classified nor learned.

Its body rules do not run (the log's body=skipped), and SpamAssassin's BAYES_xx are body rules
(23_bayes.cf; spamc does not even send a message over its -s size), but the classifier used to
tokenize it all the same: the whole message parsed (GMime: a copy of it, its parts, their
decoded text) in the thread pool, outside limits.memory_budget, at any size up to
limits.max_message_size, and its tokens read from the store; autolearn learned it too. Now
the classifier does not read it: bayes=too_big in the log, no BAYES_ symbol, not counted as
scanned, not autolearned (autolearn=no), while a small message still is.

Counted, not timed: mxgate_bayes_scanned_total, mxgate_bayes_learned_ham_total and the
X-Spam-Status of what the recording Backend got. On main the big message was classified
(BAYES_00, bayes=0.0...) and autolearned as ham. Peers: the recording Backend."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
N = 24
MAX = 16 * 1024
HAM_WORDS = ('meeting agenda project review schedule minutes budget release notes patch '
             'build kernel thanks regards')
SPAM_WORDS = ('cheap replica watches casino bonus winner pills pharmacy discount unsubscribe '
              'limited offer click guaranteed')


def msg(kind, i, words, pad=0):
    body = '%s %s word%s%d\r\n' % (words, kind, kind, i)
    body += ('%s %d\r\n' % (words, i)) * (pad // (len(words) + 6) + 1) if pad else ''
    return ('From: %s%d@example.org\r\nTo: user@example.test\r\nSubject: %s %d\r\n'
            'Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <%s-%d@max.test>\r\n\r\n%s'
            % (kind, i, words.split()[i % len(words.split())], i, kind, i, body)).encode()


def x_spam_status(data):
    head = re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1')
    head = re.sub(r'\r?\n[ \t]+', ' ', head)
    m = re.search(r'^X-Spam-Status: (.*)$', head, re.M)
    return m.group(1) if m else ''


store = 'lmdb:' + os.path.join(mt.TMP, 'bayes')
rules = {'files': [os.path.join(mt.SRC, 'rules', 'default.rules')], 'max_size': str(MAX),
         'bayes': {'enabled': True, 'store': store, 'min_spam': 20, 'min_ham': 20,
                   'autolearn': True}}
cli_cfg = os.path.join(mt.TMP, 'learn.yaml')
with open(cli_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules)))
for cls, words in (('spam', SPAM_WORDS), ('ham', HAM_WORDS)):
    mbox = os.path.join(mt.TMP, cls + '.mbox')
    with open(mbox, 'wb') as f:
        for i in range(N):
            f.write(b'From %s%d@example.org Mon Jan  1 00:00:00 2024\n' % (cls.encode(), i))
            f.write(msg(cls, i, words).replace(b'\r\n', b'\n') + b'\n')
    r = mt.run_mxgate('-c', cli_cfg, 'learn', cls, mbox)
    mt.check(r.returncode == 0, 'learn %s: %s %s' % (cls, r.stdout.strip(), r.stderr.strip()))

be = mt.Backend()
mport = mt.hold_port().port
mx = mt.Mxgate(mt.config([be.url], rules=rules, metrics={'listen': '127.0.0.1:%d' % mport}),
               name='mxgate')


def counter(name):
    v = mx.metric(name)
    return int(v) if v is not None else -1


def deliver(data):
    n = len(be.messages)
    code, text = mt.send_mail(mx.port, 'a@example.org', ['user@example.test'], data)
    mt.check(code == 250, 'delivered: %s %s' % (code, text))
    mt.check(mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(10)), 'at the backend')
    return x_spam_status(be.messages[-1]['data']) if len(be.messages) > n else ''


small = msg('ham', 100, HAM_WORDS)
big = msg('ham', 101, HAM_WORDS, pad=4 * MAX)
mt.check(len(small) < MAX < len(big), 'sizes: %d < %d < %d' % (len(small), MAX, len(big)))

scanned0, learned0 = counter('bayes_scanned_total'), counter('bayes_learned_ham_total')
st = deliver(small)
mt.check('BAYES_00' in st and 'autolearn=ham' in st,
         'a message under rules.max_size: classified and autolearned: %s' % st)
scanned1, learned1 = counter('bayes_scanned_total'), counter('bayes_learned_ham_total')
mt.check((scanned1 - scanned0, learned1 - learned0) == (1, 1),
         'counted: scanned +%d, learned +%d' % (scanned1 - scanned0, learned1 - learned0))

st = deliver(big)
mt.check('BAYES_' not in st, 'a message over rules.max_size: no BAYES_ symbol: %s' % st)
mt.check('autolearn=no' in st, 'and not autolearned: %s' % st)
mt.check(mx.wait_log(r'event=rules .*body=skipped.* bayes=too_big', timeout=5) is not None,
         'logged body=skipped bayes=too_big')
scanned2, learned2 = counter('bayes_scanned_total'), counter('bayes_learned_ham_total')
mt.check((scanned2 - scanned1, learned2 - learned1) == (0, 0),
         'not tokenized: scanned +%d, learned +%d' % (scanned2 - scanned1, learned2 - learned1))

# the score set stays the trained classifier's (SA's set 2): a small message after it too
st = deliver(msg('spam', 102, SPAM_WORDS))
mt.check('BAYES_99' in st, 'a small spam after it: BAYES_99: %s' % st)
mx.stop()
mt.finish()
