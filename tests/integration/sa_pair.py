"""sa_pair — what the tests comparing mxgate's SpamAssassin fields and messages with spamd's
(test_rules_addheader, test_rules_reportsafe) share: the skip when the stock rules or
spamd/spamc are missing, mxgate's version, and the normalizations of what cannot be the
same on both sides (version= in X-Spam-Status, the order of the report's hits)."""
import os
import re
import subprocess

import mxtest as mt

STOCK = '/usr/share/spamassassin'


def need_spamd():
    """Skips the test (77; a failure under CI) without Debian's stock rules, spamd or spamc;
    returns mxgate's version (the last word of `mxgate -V`)."""
    mt.need()
    if not os.path.exists(os.path.join(STOCK, '50_scores.cf')):
        mt.skip('stock SpamAssassin rules not installed')
    mt.need('spamd', 'spamc')
    return subprocess.run([mt.BIN, '-V'], capture_output=True, text=True).stdout.split()[-1]


def as_mxgate_version(v, version):
    """spamd's X-Spam-Status value (str or bytes) with its version= as mxgate writes it."""
    if isinstance(v, bytes):
        return v.replace(b'version=4.0.1', b'version=mxgate-' + version.encode())
    return v.replace('version=4.0.1', 'version=mxgate-' + version)


def report_hits(v):
    """X-Spam-Report's value (str or bytes) split into its text before the first hit and
    the hits ('* SCORE RULE ...' with their continuation lines), sorted: spamd lists them in
    the order its rules ran, mxgate by name."""
    rx = rb'\r?\n\t(?=\* +-?\d)' if isinstance(v, bytes) else r'\r?\n\t(?=\* +-?\d)'
    hits = re.split(rx, v)
    return hits[:1] + sorted(hits[1:])
