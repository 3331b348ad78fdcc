#!/usr/bin/env python3
"""test_rules_status — X-Spam-Status as spamd writes it with SpamAssassin's default template
(10_default_prefs.cf: `_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_
autolearn=_AUTOLEARN_ version=_VERSION_`), on the same messages (tests/data/sa/*.eml).

Two pairs: spamd without Bayes (`use_bayes 0`) and mxgate without a classifier both write
`autolearn=disabled`; spamd with Bayes and autolearn on (a fresh database) and mxgate with
`rules.bayes.autolearn` (a fresh store) both write `autolearn=ham|spam|no
autolearn_force=no`. The rest of the field (Yes/No, score, required, the tests when both hit
the same ones) must be equal, `version=` is mxgate's own (`mxgate-X.Y.Z`), and mxgate folds
the field where SpamAssassin's Util::wrap (79 columns, after white space or a comma) folds
the same text. Peers: the recording Backend, spamd/spamc, perl Mail::SpamAssassin."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

STOCK = '/usr/share/spamassassin'
mt.need()



if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
    mt.skip('stock SpamAssassin rules not installed')
if subprocess.run(['perl', '-MMail::SpamAssassin::Util', '-e', '1'],
                  capture_output=True).returncode:
    mt.skip('perl Mail::SpamAssassin not installed (apt-get install spamassassin)')
mt.need('spamd', 'spamc')

MSGS = sorted(glob.glob(os.path.join(mt.SRC, 'tests', 'data', 'sa', '*.eml')))
VERSION = subprocess.run([mt.BIN, '-V'], capture_output=True, text=True).stdout.split()[-1]


def status_raw(data):
    """The X-Spam-Status field of a message (bytes) as written: folded, LF line ends."""
    head = re.split(rb'\r?\n\r?\n', data, 1)[0].decode('latin-1').replace('\r\n', '\n')
    m = re.search(r'^X-Spam-Status: (.*(?:\n[ \t].*)*)', head, re.M)
    return m.group(1) if m else None


def unfold(v):
    """SA folds after a comma or a space and drops the space: ",\n\t" was ",", "\n\t" " "."""
    return re.sub(r'\n\t', ' ', v.replace(',\n\t', ','))


def sa_wrap(value):
    """SpamAssassin's folding of an X-Spam-Status value (PerMsgStatus::_process_header)."""
    r = subprocess.run(['perl', '-MMail::SpamAssassin::Util', '-e',
                        'my $h = "X-Spam-Status!!" . $ARGV[0];'
                        '$h = Mail::SpamAssassin::Util::wrap($h, "\\t", "", 79, 0, "(?<=[\\\\s,])");'
                        '$h =~ s/^\\s*\\n//gm; print((split(/!!/, $h, 2))[1]);', value],
                       capture_output=True, text=True)
    return r.stdout


def parts(v):
    """(head before tests=, the tests, the tail after them) of an unfolded value."""
    m = re.match(r'(.*? tests=)(\S*)( .*)$', unfold(v))
    return m.groups() if m else (v, '', '')


def run_pair(label, spamd_cf, rules):
    sd = mt.spamd(spamd_cf)
    be = mt.Backend()
    mx = mt.Mxgate(mt.config([be.url], rules=rules), name='mxgate-' + label)
    mt.check(mx.wait_log(r'event=rules_loaded', timeout=60) is not None, '%s: rules loaded' % label)
    ready = mt.wait_for(lambda: subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port), '-K'],
                                               capture_output=True).returncode == 0,
                        timeout=60, step=0.5)
    mt.check(bool(ready), '%s: spamd answers' % label)
    tails = {}
    for path in MSGS:
        name = os.path.basename(path)
        data = open(path, 'rb').read()
        n = len(be.messages)
        code, text = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], data)
        ok = code == 250 and mt.wait_for(lambda: len(be.messages) > n, timeout=mt.slack(20))
        mt.check(ok, '%s %s: delivered (%s %s)' % (label, name, code, text))
        mine = status_raw(be.messages[-1]['data']) if ok else None
        r = subprocess.run(['spamc', '-d', '127.0.0.1', '-p', str(sd.port)], stdin=open(path, 'rb'),
                           capture_output=True, timeout=120)
        theirs = status_raw(r.stdout)
        mt.check(mine is not None and theirs is not None,
                 '%s %s: both write X-Spam-Status (%r, %r)' % (label, name, mine, theirs))
        if mine is None or theirs is None:
            continue
        mh, mtests, mtail = parts(mine)
        th, ttests, ttail = parts(theirs)
        mt.check(mtail == ttail.replace('version=4.0.1', 'version=mxgate-' + VERSION),
                 '%s %s: after tests= as spamd writes it (mxgate %r, spamd %r)' % (
                     label, name, mtail, ttail))
        if mtests == ttests:
            mt.check(mh == th, '%s %s: the same verdict, score and required (%r, %r)' % (
                label, name, mh, th))
        mt.check(mine == sa_wrap(unfold(mine)), '%s %s: folded as SpamAssassin folds it:\n%s\n'
                 'SpamAssassin:\n%s' % (label, name, mine, sa_wrap(unfold(mine))))
        tails[name] = mtail
    mx.stop()
    sd.terminate()
    sd.wait()
    return tails


ACTIONS = {'add_header': 5, 'reject': 1000}
# Without a classifier: SpamAssassin with use_bayes 0 writes autolearn=disabled
run_pair('nobayes', 'report_safe 0\n',
         {'files': [STOCK + '/*.cf'], 'actions': ACTIONS, 'client_relay': False})

# With the classifier and autolearn on, fresh stores on both sides
bdir = os.path.join(mt.TMP, 'sa-bayes')
os.makedirs(bdir)
os.chmod(bdir, 0o777)
tails = run_pair('autolearn', 'report_safe 0\nuse_bayes 1\nbayes_auto_learn 1\n'
                 'bayes_path %s/bayes\nbayes_file_mode 0777\nlock_method flock\n' % bdir,
                 {'files': [STOCK + '/*.cf'], 'actions': ACTIONS, 'client_relay': False,
                  'bayes': {'enabled': True, 'store': 'lmdb:' + os.path.join(mt.TMP, 'mx-bayes'),
                            'autolearn': True}})
seen = {re.search(r'autolearn=(\S+)', t).group(1) for t in tails.values() if 'autolearn=' in t}
mt.say('autolearn values seen: %s' % sorted(seen))
mt.check({'ham', 'spam', 'no'} <= seen, 'ham, spam and no all met (%s)' % sorted(seen))
mt.finish()
