#!/usr/bin/env python3
"""mxgate -t: a Public Suffix List that cannot be loaded is an error at its place in the file.

`dmarc: { psl_file: PATH }` naming a missing file or a directory: `FILE:LINE:COL:
dmarc.psl_file: cannot load the Public Suffix List` at the value, exit 1. `dmarc:` written
alone (no psl_file) loads libpsl's list, or its built-in one, so it cannot fail here; its
position (the `dmarc:` key) is shown by unit test_cfg test_error_key_section_alone, through
the same cfg_error_key call; here it loads."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

base = mt.to_yaml(mt.config(['smtp://127.0.0.1:2'], listen=[{'address': '127.0.0.1:1'}]))
nlines = len(base.splitlines())
for label, psl in (('a missing file', os.path.join(mt.TMP, 'missing.dat')), ('a directory', mt.TMP)):
    text = base + 'dmarc:\n  action: log\n  psl_file: "%s"\n' % psl
    rc, out = mt.config_check(text, name='psl')
    want = r'^%s:%d:13: dmarc\.psl_file: cannot load the Public Suffix List' % (
        re.escape(os.path.join(mt.TMP, 'psl.yaml')), nlines + 3)
    mt.check(rc != 0 and re.search(want, out, re.M),
             '%s as dmarc.psl_file: the error at its value, line %d col 13 (rc %d, %r)'
             % (label, nlines + 3, rc, out.strip()[:300]))
rc, out = mt.config_check(base + 'dmarc:\n', name='alone')
mt.check(rc == 0 and 'Public Suffix' not in out, '`dmarc:` alone: the list of libpsl loads (rc %d, %r)' % (rc, out.strip()[:300]))
mt.finish()
