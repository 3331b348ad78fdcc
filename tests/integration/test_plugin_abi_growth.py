#!/usr/bin/env python3
"""The plugin descriptor's growth rule and per-transaction data, as a plugin author meets
them (plugins/plugin.h, "Growing ABI 1"; docs/plugins.md).

- A plugin built against the first release's plugin.h (its descriptor ends at cancel,
  built here with the test-only MXGATE_PLUGIN_DESC_FIRST_RELEASE) loads and runs in this
  host, which never reads past the exported object (under ASan the plugin is built with
  -fsanitize=address too, so a read past its descriptor is a global-buffer-overflow).
- A hook added after desc_size (on_abort, called when `bypass:` takes the plugin out of a
  transaction) is called on a new descriptor and never read on the first release's.
- A descriptor claiming more bytes than the object it exports (desc_size 4096) is refused
  by mxgate -t, naming the sizes.
- host->txn_set / txn_get (Haraka's transaction.notes): data a plugin hangs on the
  transaction at MAIL is seen at RCPT and end of data, is gone at the next transaction
  (after the end of data, after RSET), is released exactly once each (after QUIT too),
  and cannot be set outside a transaction (HELO)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plugin.h"

#ifndef DESC_SIZE
#define DESC_SIZE MXGATE_DESC_SIZE
#endif

static const struct mxgate_host *H;
static char logpath[512];
static int live;

struct note { char from[256]; int rcpts; };

static void note_release(void *d)
{
	struct note *n = d;
	FILE *f = fopen(logpath, "a");

	if (f) {
		fprintf(f, "released %s %d\n", n->from, n->rcpts);
		fclose(f);
	}
	__atomic_sub_fetch(&live, 1, __ATOMIC_SEQ_CST);
	free(n);
}

static int tx_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **inst,
    char *err, size_t errlen)
{
	if (!MXGATE_HOST_HAS(h, txn_get)) {
		snprintf(err, errlen, "host without txn_get");
		return -1;
	}
	H = h;
	for (size_t i = 0; i < a->noptions; i++)
		if (strcmp(a->options[i].key, "log") == 0)
			snprintf(logpath, sizeof(logpath), "%s", a->options[i].value);
	*inst = NULL;
	return 0;
}

static void tx_helo(void *inst, struct mxgate_call *c)
{
	(void)inst;
	if (H->txn_set(c, &live, NULL) == 0 || H->txn_get(c) != NULL)
		H->log(c, 2, "event=txn_outside_taken");
	H->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void tx_mail(void *inst, struct mxgate_call *c)
{
	struct note *n;

	(void)inst;
	if (H->txn_get(c) != NULL)
		H->log(c, 2, "event=txn_stale");
	n = calloc(1, sizeof(*n));
	snprintf(n->from, sizeof(n->from), "%s", H->get(c, MXGATE_MAIL_FROM));
	__atomic_add_fetch(&live, 1, __ATOMIC_SEQ_CST);
	if (H->txn_set(c, n, note_release) != 0) {
		H->log(c, 2, "event=txn_refused");
		note_release(n);
	}
	H->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void tx_rcpt(void *inst, struct mxgate_call *c)
{
	struct note *n = H->txn_get(c);

	(void)inst;
	if (n)
		n->rcpts++;
	H->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void tx_eom(void *inst, struct mxgate_call *c)
{
	struct note *n = H->txn_get(c);
	char v[320];

	(void)inst;
	snprintf(v, sizeof(v), "from=%s rcpts=%d live=%d", n ? n->from : "-", n ? n->rcpts : -1,
	    __atomic_load_n(&live, __ATOMIC_SEQ_CST));
	H->add_header(c, "X-Txn", v);
	H->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void tx_close(void *inst, struct mxgate_call *c)
{
	(void)inst;
	if (H->txn_get(c) != NULL)
		H->log(c, 2, "event=txn_at_close");
}

#ifndef MXGATE_PLUGIN_DESC_FIRST_RELEASE
static void tx_abort(void *inst, struct mxgate_call *c)
{
	(void)inst;
	H->log(c, 1, "event=on_abort_heard rcpts=%zu", H->rcpt_count(c));
}
#endif

const struct mxgate_plugin mxgate_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.name = "txn",
	.init = tx_init,
	.on_helo = tx_helo,
	.on_mail = tx_mail,
	.on_rcpt = tx_rcpt,
	.on_eom = tx_eom,
	.on_close = tx_close,
#ifndef MXGATE_PLUGIN_DESC_FIRST_RELEASE
	.desc_size = DESC_SIZE,
	.on_abort = tx_abort,
#endif
};
'''

asan = ['-fsanitize=address'] if t.SANITIZED else []
new_so = t.build_plugin('txn_new', SRC, asan)
old_so = t.build_plugin('txn_old', SRC, asan + ['-DMXGATE_PLUGIN_DESC_FIRST_RELEASE'])
big_so = t.build_plugin('txn_big', SRC, asan + ['-DDESC_SIZE=4096'])

be = t.Backend()


def cfg(so, log, listen=None):
    return t.config([be.url], hostname='mx.example.test', listen=listen,
                    plugins=[{'name': 'txn', 'path': so, 'options': {'log': log}}],
                    bypass=[{'recipients': ['skip.example'], 'checks': ['txn']}])


rc, out = t.config_check(cfg(big_so, '/dev/null', ['127.0.0.1:2525']), 'check-big')
t.check(rc == 1 and 'descriptor size 4096' in out and 'check-big.yaml:' in out,
        'a descriptor claiming 4096 bytes is refused by mxgate -t: %s' % out.strip())
rc, out = t.config_check(cfg(old_so, '/dev/null', ['127.0.0.1:2525']), 'check-old')
t.check(rc == 0, 'a first-release descriptor passes mxgate -t: %s' % out.strip())


def session(port, tag):
    """Two messages, then MAIL + RCPT abandoned by RSET, then a third message, then QUIT."""
    c = t.Client(port, timeout=30)
    c.ehlo('client.example.org')
    r1 = t.send_mail(port, 'a1@example.org', ['b@example.test', 'c@example.test'], t.message(tag + '1'),
                     client=c, timeout=30)
    r2 = t.send_mail(port, 'a2@example.org', ['b@example.test'], t.message(tag + '2'), client=c, timeout=30)
    c.cmd('MAIL FROM:<a3@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('RCPT TO:<c@example.test>')
    c.cmd('RSET')
    r4 = t.send_mail(port, 'a4@example.org', ['b@example.test'], t.message(tag + '4'), client=c, timeout=30)
    c.cmd('QUIT')
    c.close()
    return r1, r2, r4


for kind, so in (('new', new_so), ('old', old_so)):
    log = os.path.join(t.TMP, 'released-%s.txt' % kind)
    mx = t.Mxgate(cfg(so, log), name='mx-' + kind)
    r1, r2, r4 = session(mx.port, 'txn-%s-' % kind)
    t.check(r1[0] == 250 and r2[0] == 250 and r4[0] == 250, '%s descriptor: three messages relayed (%s %s %s)' %
            (kind, r1, r2, r4))

    def xtxn(tag):
        got = be.find('Message-ID: <%s@' % tag)
        d = got[0]['data'] if got else b''
        return d.split(b'X-Txn: ', 1)[1].split(b'\r\n', 1)[0].decode() if b'X-Txn: ' in d else None

    h1, h2, h4 = xtxn('txn-%s-1' % kind), xtxn('txn-%s-2' % kind), xtxn('txn-%s-4' % kind)
    t.check(h1 == 'from=a1@example.org rcpts=2 live=1' and h2 == 'from=a2@example.org rcpts=1 live=1' and
            h4 == 'from=a4@example.org rcpts=1 live=1',
            '%s descriptor: each transaction sees its own data, the last one released (%s | %s | %s)' %
            (kind, h1, h2, h4))
    t.check(t.wait_for(lambda: os.path.exists(log) and len(open(log).read().splitlines()) == 4, 10),
            '%s descriptor: four transactions, four releases (after QUIT too)' % kind)
    rel = open(log).read().splitlines() if os.path.exists(log) else []
    t.check(rel == ['released a1@example.org 2', 'released a2@example.org 1', 'released a3@example.org 2',
                    'released a4@example.org 1'], '  in order, the RSET one with its two recipients: %s' % rel)
    t.check(mx.count_log('event=txn_') == 0, '%s descriptor: nothing set outside a transaction, nothing stale, '
            'nothing at close: %s' % (kind, [x for x in mx.log().splitlines() if 'event=txn_' in x][:3]))
    # on_abort, added after desc_size: a message whose every recipient bypasses the plugin
    # calls it on the new descriptor; the first release's is never read that far (under
    # ASan, a read past its object would be a global-buffer-overflow)
    r5 = t.send_mail(mx.port, 'a5@example.org', ['u@skip.example'], t.message('txn-%s-5' % kind), timeout=30)
    t.check(r5[0] == 250, '%s descriptor: a message bypassing the plugin relayed (%s)' % (kind, r5))
    if kind == 'new':
        t.check(mx.wait_log(r'event=on_abort_heard plugin=txn rcpts=1') is not None,
                'new descriptor: on_abort called for the bypassed message')
    else:
        t.check(mx.wait_log(r'event=bypass stage=eom checks=txn rcpts=1') is not None and
                mx.count_log('event=on_abort_heard') == 0, 'old descriptor: bypassed, on_abort not read')
    mx.stop()

t.finish()
