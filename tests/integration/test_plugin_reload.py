#!/usr/bin/env python3
"""SIGHUP after a shared-object plugin was rebuilt at the same path (`install` or
`cp new.so tmp && mv tmp mine.so`, the way a package upgrade replaces it): the new
generation runs the new code. dlopen() returns the object already loaded under the same
path name, so without care the old code kept running silently after a reload that logged
success. An unchanged file is the same object (no second copy)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include "plugin.h"
static const struct mxgate_host *host;
static int v_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static void v_eom(void *i, struct mxgate_call *c)
{
	host->add_header(c, "X-Plugin-Version", VERSION);
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "ver", .init = v_init, .on_eom = v_eom };
'''

so = os.path.join(t.TMP, 'ver.so')


def build(version):
    """Builds version into ver.so.new and renames it over ver.so (a new inode)."""
    t.build_plugin('ver', SRC, ['-DVERSION="%s"' % version], out=so)


be = t.Backend()


def cfg():
    return t.config([be.url], hostname='mx.example.test', plugins=[{'name': 'ver', 'path': so}])


def version_of(tag):
    code, text = t.send_mail(m.port, 'a@example.org', ['b@example.test'], t.message(tag, 'body of %s\r\n' % tag),
                             timeout=30)
    got = be.find('body of ' + tag)
    t.check(code == 250 and len(got) == 1, '%s delivered: %s %s' % (tag, code, text))
    hs = [ln for ln in got[0]['data'].split(b'\r\n') if ln.startswith(b'X-Plugin-Version:')] if got else []
    return b' | '.join(hs).decode()


build('one')
m = t.Mxgate(cfg())
t.check(version_of('v1') == 'X-Plugin-Version: one', 'the first build runs')

build('two')
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 1, 10), 'SIGHUP reloaded')
got = version_of('v2')
t.check(got == 'X-Plugin-Version: two', 'after the plugin was rebuilt and SIGHUP, the new build runs: %s' % got)

# Unchanged: a reload keeps the same object and still works; then a third build.
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 2, 10), 'second SIGHUP reloaded')
got = version_of('v2b')
t.check(got == 'X-Plugin-Version: two', 'a reload with the plugin unchanged runs it as before: %s' % got)
# Unchanged reloads hold no more descriptors (the file is opened by the name it was
# loaded by, not under a new one each time). /dev/null is not counted: libuv opens it once
# per loop, at the loop's first TCP handle (its own EMFILE reserve), so a worker's first
# session adds one — in CI the message after the reloads was the other worker's first.
def proc_fd_names():
    out = []
    for f in os.listdir('/proc/%d/fd' % m.pid):
        try:
            n = os.readlink('/proc/%d/fd/%s' % (m.pid, f))
        except OSError:
            continue
        if n.startswith('/') and n != '/dev/null':
            out.append(n)
    return sorted(out)


names_before = proc_fd_names()
fds = len(names_before)
for i in range(3):
    m.reload(cfg())
    t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 3 + i, 10), 'unchanged reload %d' % i)
got = version_of('v2c')
t.check(got == 'X-Plugin-Version: two', 'after three more unchanged reloads, as before: %s' % got)
names_after = proc_fd_names()
t.check(len(names_after) <= fds, 'no file descriptor more after them (%d, then %d: %s -> %s)'
        % (fds, len(names_after), names_before, names_after))
build('three')
m.reload(cfg())
t.check(t.wait_for(lambda: m.log().count('event=reloaded') >= 6, 10), 'third build: SIGHUP reloaded')
got = version_of('v3')
t.check(got == 'X-Plugin-Version: three', 'and a third build after that: %s' % got)
m.stop()
t.finish()
