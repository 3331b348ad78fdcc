#!/usr/bin/env python3
"""Shared-object plugins that cannot be used, as an operator meets them: built here with cc
against plugins/plugin.h, each refused by `mxgate -t` with FILE:LINE:COL and a reason that
names the fault (no `mxgate_plugin` symbol, an undefined symbol the loader cannot
resolve, a descriptor without init, a symbol of the right name that is no descriptor, a
file that is no shared object, init() failing with its own reason), and on SIGHUP the
daemon keeps its running config (with the working example plugin) and goes on serving."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SOURCES = {
    'nosym': ('int something(void) { return 1; }\n', 'no `mxgate_plugin` descriptor'),
    'undef': ('#include "plugin.h"\nextern int mxgate_no_such_function(void);\n'
              'static int u_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,\n'
              '    char *e, size_t el) { *i = 0; return mxgate_no_such_function(); }\n'
              'const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,\n'
              '    .name = "undef", .init = u_init };\n', 'undefined symbol: mxgate_no_such_function'),
    'noinit': ('#include "plugin.h"\nconst struct mxgate_plugin mxgate_plugin = {\n'
               '    .abi_version = MXGATE_PLUGIN_ABI_VERSION, .name = "noinit" };\n', 'lacks name or init'),
    'notdesc': ('int mxgate_plugin(void) { return 0; }\n', 'is not a descriptor'),
    'initfail': ('#include <stdio.h>\n#include "plugin.h"\n'
                 'static int f_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,\n'
                 '    char *e, size_t el) { snprintf(e, el, "license key missing"); return -1; }\n'
                 'const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,\n'
                 '    .name = "initfail", .init = f_init };\n', 'license key missing'),
}

built = {name: t.build_plugin(name, src) for name, (src, _) in SOURCES.items()}
d = os.path.dirname(next(iter(built.values())))
with open(os.path.join(d, 'text.so'), 'w') as f:
    f.write('this is not an ELF file\n')
built['text'] = os.path.join(d, 'text.so')
SOURCES['text'] = ('', 'cannot load plugin')

be = t.Backend()
example = os.path.join(t.BUILD, 'example_plugin.so')


def cfg(plugin, listen=None):
    return t.config([be.url], hostname='mx.example.test', plugins=[plugin], listen=listen)


for name, so in sorted(built.items()):
    rc, out = t.config_check(cfg({'name': 'p' + name, 'path': so}, ['127.0.0.1:2525']), 'check-' + name)
    want = SOURCES[name][1]
    t.check(rc == 1 and want in out and ('check-%s.yaml:' % name) in out and len(out.strip().splitlines()) == 1,
            '%s: refused by mxgate -t with "%s" and FILE:LINE:COL: %s' % (name, want, out.strip()))

m = t.Mxgate(cfg({'name': 'ex', 'path': example, 'options': {'word': 'SECRETWORD'}}))
code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'], t.message('before', 'x\r\n'), timeout=30)
t.check(code == 250, 'running with the example plugin: %s' % code)
for name in ('undef', 'initfail', 'text'):
    m.reload(cfg({'name': 'p' + name, 'path': built[name]}))
    t.check(t.wait_for(lambda: m.log().count('event=reload_failed') >= 1 + ['undef', 'initfail', 'text'].index(name), 10),
            'SIGHUP to a config with the %s plugin: reload refused, old config kept' % name)
    code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'],
                             t.message('after-' + name, 'the SECRETWORD\r\n'), timeout=30)
    t.check(m.alive() and code == 550 and 'SECRETWORD' in text,
            'after the refused reload (%s) the example plugin still runs: %s %s' % (name, code, text))
m.stop()
t.finish()
