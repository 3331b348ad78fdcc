#!/usr/bin/env python3
"""The plugin docs/plugins.md shows under "Writing a plugin" is what an author copies first:
taken from the page as it stands, built with the command line the page gives (with -Wall
-Werror, as a careful author builds), and run: a body with the word is refused with the
page's 550, any other message is relayed with its header."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
with open(os.path.join(t.SRC, 'docs', 'plugins.md')) as f:
    page = f.read()
m = re.search(r'## Writing a plugin\n.*?```c\n(.*?)```', page, re.S)
t.check(m is not None, 'docs/plugins.md has the C example under "Writing a plugin"')
so = t.build_plugin('mine', m.group(1) if m else '', ['-Wall', '-Werror'])
m2 = re.search(r'Build it with `(cc [^`]*)`', page)
t.check(m2 is not None and '-shared -fPIC' in m2.group(1) and 'pkg-config --cflags libuv' in m2.group(1),
        'the page gives the build line used here: %s' % (m2.group(1) if m2 else None))

be = t.Backend()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', workers=1,
                       plugins=[{'name': 'mine', 'path': so}]))
code, text = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('d1', 'buy viagra now\r\n'),
                         timeout=30)
t.check((code, text) == (550, '550 5.7.1 No thanks'), 'the word: the page\'s 550: %s %s' % (code, text))
code, text = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('d2', 'body of d2\r\n'),
                         timeout=30)
got = be.find('body of d2')
t.check(code == 250 and len(got) == 1 and b'X-Mine: checked' in got[0]['data'],
        'any other message: relayed with X-Mine: checked: %s %s' % (code, text))
mx.stop()
t.finish()
