#!/usr/bin/env python3
"""test_rules_edge — what an operator is promised about scoring, on the messages that break
parsers, through the real daemon with Debian's stock SpamAssassin rules, the learning
classifier (LMDB, trained) and a rule file calling an eval function nobody implements.

- `-t` and the start-up log name the unimplemented eval with the rules and metas it blocks;
  a meta negating the unimplemented rule never hits, `UNKNOWN || TRUE` does.
- Every message is delivered with X-Spam-Status / X-Spam-Score in SpamAssassin's form, or
  its log says why it was not scored (event=rules_unscored reason=...); none stalls the
  daemon: a headerless message (first line not a header; first line blank), no body, no
  header/body separator, a 3 MiB single-line body (over rules.max_size) and a 1.5 MiB one
  (under it), 8-bit bytes in headers, broken MIME (bad base64, empty boundary, an
  unterminated multipart), 500 nested multiparts, 10,000 header lines, 10,000 Received
  lines, a 49 MiB message. The daemon still scores an ordinary message afterwards. Where the
  classifier gave a verdict (bayes=P in the log), a BAYES_xx rule hit — over max_size too.
- A sender's own X-Spam-* headers (a forged "X-Spam-Status: No") are removed, as SpamAssassin
  removes them: the backend sees mxgate's alone.
Peers: the recording Backend. Needs /usr/share/spamassassin (skipped without; a failure in
CI)."""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
STOCK = '/usr/share/spamassassin'
if not glob.glob(os.path.join(STOCK, '*.cf')):
    if mt.CI:
        mt.fail('no SpamAssassin rules in %s' % STOCK)
    mt.skip('no SpamAssassin rules in %s' % STOCK)

LONG = 'EDGE_LONG_' + 'N' * 90
fake = os.path.join(mt.TMP, 'fake.cf')
with open(fake, 'w') as f:
    f.write('body EDGE_FAKE eval:check_made_up_thing(\'x\')\nscore EDGE_FAKE 2.0\n'
            'header EDGE_FAKE2 eval:check_made_up_thing()\n'
            'header __EDGE_HAS_SUBJ exists:Subject\n'
            'meta EDGE_NOT_FAKE !EDGE_FAKE && __EDGE_HAS_SUBJ\nscore EDGE_NOT_FAKE 3.0\n'
            'meta EDGE_FAKE_OR EDGE_FAKE || __EDGE_HAS_SUBJ\nscore EDGE_FAKE_OR 0.5\n'
            'meta EDGE_NOT_NOT !EDGE_NOT_FAKE\nscore EDGE_NOT_NOT 0.5\n'
            # a rule name of 100 characters, SpamAssassin's limit, hits under its whole name
            'header %s exists:Subject\nscore %s 0.01\n' % (LONG, LONG))

# ---- the classifier: trained offline (enough to be on: score set 2, BAYES_xx)
store = 'lmdb:' + os.path.join(mt.TMP, 'bayes')
rules = {'files': [os.path.join(STOCK, '*.cf'), os.path.join(mt.SRC, 'rules', 'default.rules'),
                   fake],
         'actions': {'add_header': 5, 'reject': 1000}, 'max_size': '2M', 'client_relay': False,
         'bayes': {'enabled': True, 'store': store, 'min_spam': 5, 'min_ham': 5}}
cfg_path = os.path.join(mt.TMP, 'learn.yaml')
with open(cfg_path, 'w') as f:
    f.write(mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}],
                                 rules=rules)))

r = mt.run_mxgate('-t', '-c', cfg_path, timeout=120)
out = r.stdout + r.stderr
mt.check(r.returncode == 0, '-t with an unimplemented eval exits 0 (%d): %s' % (
    r.returncode, out.strip()[-300:]))
mt.check(re.search(r'eval functions? not implemented.*check_made_up_thing \(2 rules, 3 metas\)',
                   out) is not None, '-t names the eval, its 2 rules and 3 metas: %s' % (
    [l for l in out.splitlines() if 'not implemented' in l] or out.strip()[-300:]))

for cls in ('spam', 'ham'):
    d = os.path.join(mt.TMP, cls)
    os.makedirs(os.path.join(d, 'cur'))
    for i in range(6):
        words = ('cheap pills casino winner bonus' if cls == 'spam' else
                 'meeting agenda kernel patch review')
        with open(os.path.join(d, 'cur', '%d:2,S' % i), 'w') as f:
            f.write('From: %s%d@example.org\nTo: u@example.test\nSubject: %s %d\n'
                    'Message-ID: <%s%d@edge.test>\n\n%s %d\n' % (cls, i, words, i, cls, i,
                                                                  words, i))
    r = mt.run_mxgate('-c', cfg_path, 'learn', cls, d, timeout=120)
    mt.check(r.returncode == 0 and 'learned 6 %s' % cls in r.stdout,
             'learn %s: %s %s' % (cls, r.stdout.strip(), r.stderr.strip()))

be = mt.Backend()
# a 49 MiB message into the Python backend on a loaded machine: the harness's 10 s data
# timeout is for ordinary messages (a 451 here once, under load, was that timeout)
mx = mt.Mxgate(mt.config([be.url], rules=rules, limits={'max_message_size': '60M'},
                         backends={'data_timeout': '%gs' % mt.slack(120)}),
               name='mxgate')
mt.check(mx.wait_log(r'event=rules_evals_missing .*check_made_up_thing:2\+3', timeout=30)
         is not None, 'the start-up log names the missing eval with what it blocks')

H = ('From: a@example.org\r\nTo: b@example.test\r\nSubject: edge %s\r\n'
     'Message-ID: <%s@edge.test>\r\nDate: Thu, 03 Dec 2026 07:00:00 +0000\r\n')
MIME = 'MIME-Version: 1.0\r\n'
CASES = [
    ('headerless', b'This is not a header line\r\nSubject: late\r\n\r\nbody here\r\n'),
    ('blank first line', b'\r\njust a body after a blank first line\r\n'),
    ('no body', (H % ('nb', 'nb')).encode()),
    ('empty body', (H % ('eb', 'eb') + '\r\n').encode()),
    ('3 MiB single line', (H % ('hl', 'hl') + '\r\n').encode() + b'x' * (3 << 20) + b'\r\n'),
    ('1.5 MiB single line of words', (H % ('hw', 'hw') + '\r\n').encode() +
     b'cheap pills ' * (1536 * 1024 // 12) + b'\r\n'),
    ('8-bit headers', (H % ('\xe9t\xe9 \xff\xfe caf\xc3\xa9', '8b') +
                       'X-Junk: \x80\x81\x82\r\n\r\nbody\r\n').encode('latin-1')),
    ('broken MIME', (H % ('bm', 'bm') + MIME +
                     'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\n'
                     'Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n'
                     '!!!notbase64@@@=\r\n--zz\r\n'
                     'Content-Type: multipart/alternative; boundary=\r\n\r\n--\r\n'
                     '--zz\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n'
                     'Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n').encode()),
    ('500 nested multiparts', (H % ('dm', 'dm') + MIME +
                               'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n' +
                               ''.join('--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"'
                                       '\r\n\r\n' % (i, i + 1) for i in range(500)) +
                               'text\r\n').encode()),
    ('10,000 header lines', (H % ('h10k', 'h10k') +
                             ''.join('X-H%d: value %d\r\n' % (i, i) for i in range(10000)) +
                             '\r\nbody\r\n').encode()),
    ('10,000 Received lines', (H % ('r10k', 'r10k') +
                               ''.join('Received: from h%d.example.net ([10.0.%d.%d]) by '
                                       'mx.example.net with SMTP id %d; Thu, 03 Dec 2026 '
                                       '07:00:00 +0000\r\n' % (i, i // 250 % 250, i % 250, i)
                                       for i in range(10000)) + '\r\nbody\r\n').encode()),
    ('49 MiB', (H % ('big', 'big') + 'Content-Type: text/plain\r\n\r\n').encode() +
     b'lorem ipsum dolor sit amet cheap pills\r\n' * ((49 << 20) // 40)),
    ('ordinary, afterwards', (H % ('after', 'after') + '\r\nhello there\r\n').encode()),
]
STATUS = re.compile(rb'^X-Spam-Status: (Yes|No), score=-?\d+\.\d required=\d+\.\d tests=\S',
                    re.M)
for name, data in CASES:
    n, start = len(be.messages), mx.log_size()
    code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], data,
                              timeout=mt.slack(120))
    mt.check(code == 250, '%s: delivered (%s %s)' % (name, code, text))
    if code != 250:
        continue
    mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(30))
    got = be.messages[-1]['data'] if len(be.messages) > n else b''
    head = re.split(rb'\r?\n\r?\n', got, 1)[0]
    head = re.sub(rb'\r?\n[ \t]+', b' ', head)
    st = STATUS.search(head)
    sc = re.search(rb'^X-Spam-Score: -?\d+\.\d+\r?$', head, re.M)
    log = mx.log()[start:]
    unscored = re.search(r'event=rules_unscored reason=\S+', log)
    mt.check((st is not None and sc is not None) or unscored is not None,
             '%s: X-Spam-Status and X-Spam-Score in SpamAssassin\'s form, or a logged reason '
             '(%s)' % (name, (st.group(0)[:100] if st else head[:80])))
    line = re.search(r'event=rules .*tests=(\S*)', log)
    hits = set(line.group(1).split(',')) if line else set()
    mt.check('EDGE_NOT_FAKE' not in hits and 'EDGE_FAKE' not in hits,
             '%s: no hit that depends on the unimplemented eval (%s)' % (name, sorted(hits)))
    prob = re.search(r'event=rules .* bayes=(\d\.\d+)', log)
    if prob:
        mt.check(any(t.startswith('BAYES_') for t in hits),
                 '%s: the classifier\'s verdict (%s) is a BAYES_xx symbol (%s)' % (
                     name, prob.group(1), sorted(hits)))
    if line and b'Subject:' in data.split(b'\r\n\r\n', 1)[0]:
        mt.check('EDGE_FAKE_OR' in hits, '%s: UNKNOWN || TRUE hits (%s)' % (name, sorted(hits)))
    if name == 'ordinary, afterwards':
        mt.check(LONG in hits and st is not None and LONG.encode() in head,
                 'a 100-character rule name hits, whole in the log and in X-Spam-Status (%s)' % sorted(hits))
# a sender's own X-Spam-* headers (a forged "No") do not reach the backend beside ours, as
# SpamAssassin deletes them before adding its own; X-Spam-Prev-* stay
# (300 made-up names too, and one of 250 characters: none may slip through a bound)
forged = ('X-Spam-Status: No, score=-9.9 required=5.0 tests=NONE\r\nX-Spam-Score: -9.9\r\n'
          'X-Spam-Flag: NO\r\nX-Spam-Level: \r\nX-Spam-Prev-Subject: kept\r\n' +
          ''.join('X-Spam-Made-Up-%d: No\r\n' % i for i in range(300)) +
          'X-Spam-' + 'L' * 243 + ': No\r\n' +
          H % ('forged', 'forged') + '\r\nbody\r\n').encode()
n = len(be.messages)
code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], forged)
mt.check(code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(30)),
         'forged X-Spam headers: delivered (%s %s)' % (code, text))
head = re.split(rb'\r?\n\r?\n', be.messages[-1]['data'], 1)[0] if len(be.messages) > n else b''
names = [h.split(b':', 1)[0].lower() for h in re.split(rb'\r?\n(?![ \t])', head)]
mt.check(names.count(b'x-spam-status') == 1 and names.count(b'x-spam-score') == 1 and
         b'x-spam-flag' not in names and names.count(b'x-spam-level') == 1 and
         b'score=-9.9' not in head and b'x-spam-prev-subject' in names and
         not any(x.startswith(b'x-spam-made-up') or x.startswith(b'x-spam-lll') for x in names),
         'only mxgate\'s X-Spam-* headers reach the backend (%s)' % [
             x.decode() for x in names if x.startswith(b'x-spam')])
mt.check(mx.alive(), 'the daemon is still running')
mt.check(mx.wait_log(r'event=rules .*bayes=\d', timeout=5) is not None,
         'the classifier scored (a bayes= probability in the log)')
mx.stop()
mt.finish()
