"""A plugin that holds a worker's loop inside its RCPT hook, for reload tests.

An RCPT to `hold@...` logs event=holding, then waits (in the worker's loop, on purpose) until
the file `go` exists under the test's TMP, then logs event=let_go. One worker, a control
socket, the plugin: a reload made while it holds finds the main loop at the new generation and
the worker still at the old one. Used by test_reload_in_force (SIGHUP, event=reloaded) and
test_ctl_reload_in_force (mxgatectl reload's answer)."""
import json
import os

SRC = r'''#include <string.h>
#include <unistd.h>
#include "plugin.h"
static const struct mxgate_host *host;
static int h_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static void h_rcpt(void *i, struct mxgate_call *c)
{
	const char *r = host->get(c, MXGATE_RCPT);
	if (r && strncmp(r, "hold", 4) == 0) {   /* holds the worker's loop until GO exists */
		host->log(c, 1, "event=holding");
		for (int n = 0; n < 6000 && access(GO, F_OK) != 0; n++)
			usleep(20000);
		host->log(c, 1, "event=let_go");
	}
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "hold", .init = h_init, .on_rcpt = h_rcpt };
'''


class HoldHook:
    """Builds the plugin and a recording Backend; cfg(hostname) is a one-worker config."""

    def __init__(self, mt):
        self.mt = mt
        mt.mxgatectl()              # skipped when not built
        self.go = os.path.join(mt.TMP, 'go')
        self.so = mt.build_plugin('hold', SRC, defines=['-DGO="%s"' % self.go])
        self.be = mt.Backend()
        self.sock = os.path.join(mt.TMP, 'ctl.sock')

    def cfg(self, hostname):
        return self.mt.config([self.be.url], hostname=hostname, workers=1,
                              control={'socket': self.sock}, plugins=[
                                  {'name': 'hold', 'path': self.so, 'on_error': 'tempfail',
                                   'timeout': '120s'}])

    def generation(self):
        """The main loop's generation (mxgatectl status), None when it does not answer."""
        rc, out, _ = self.mt.ctl(self.sock, '--json', 'status')
        return json.loads(out).get('generation') if rc == 0 else None

    def let_go(self):
        open(self.go, 'w').close()
