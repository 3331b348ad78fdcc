/* example_plugin.c — a minimal mxgate plugin, built as example_plugin.so.
 *
 * It adds `X-Example-Plugin: seen by <instance name>; message N; headers H; body B` to every
 * message (H and B counted by the header and body-chunk hooks) and rejects one whose
 * body contains a magic word (option `word`, default MAGICWORD) with 550 5.7.1, marking it
 * spam (set_flags, when the host table has it). It shows the whole contract: the
 * descriptor, init/fini with options, a synchronous hook, an asynchronous one (on_rcpt
 * completes from a libuv timer when option `rcpt_delay_ms` is set), cancel for the
 * asynchronous one, a session slot released in on_close, and on_abort (a hook added after
 * desc_size) for a transaction `bypass:` takes it out of.
 * It links against nothing of mxgate: only plugin.h and libuv. */
#include "plugin.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct example {
	const struct mxgate_host *host;
	char name[64];
	char word[128];
	uint64_t rcpt_delay_ms;
};

/* Per session: counts messages and holds the delayed rcpt call. */
struct example_sess {
	struct example *ex;
	unsigned messages;
	unsigned headers;             /* counted by on_header for the current message */
	size_t body_bytes;            /* counted by on_body */
	uv_timer_t *timer;            /* allocated on demand, freed in its close callback */
	struct mxgate_call *pending;
};

static int example_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    void **instance, char *err, size_t errlen)
{
	struct example *ex = calloc(1, sizeof(*ex));

	if (ex == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ex->host = host;
	snprintf(ex->name, sizeof(ex->name), "%s", args->name);
	snprintf(ex->word, sizeof(ex->word), "MAGICWORD");
	for (size_t i = 0; i < args->noptions; i++) {
		const char *k = args->options[i].key, *v = args->options[i].value;

		if (strcmp(k, "word") == 0 && *v)
			snprintf(ex->word, sizeof(ex->word), "%s", v);
		else if (strcmp(k, "rcpt_delay_ms") == 0)
			ex->rcpt_delay_ms = strtoull(v, NULL, 10);
		else {
			snprintf(err, errlen, "unknown option `%s` (example knows word, rcpt_delay_ms)", k);
			free(ex);
			return -1;
		}
	}
	*instance = ex;
	return 0;
}

static void example_fini(void *instance)
{
	free(instance);
}

static struct example_sess *example_sess(struct example *ex, struct mxgate_call *c)
{
	void **slot = ex->host->session_slot(c);

	if (*slot == NULL) {
		struct example_sess *es = calloc(1, sizeof(*es));

		if (es == NULL)
			return NULL;
		es->ex = ex;
		*slot = es;
	}
	return *slot;
}

static void example_timer_cb(uv_timer_t *t)
{
	struct example_sess *es = t->data;
	struct mxgate_call *c = es->pending;

	es->pending = NULL;
	if (c)
		es->ex->host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void example_on_rcpt(void *instance, struct mxgate_call *c)
{
	struct example *ex = instance;
	struct example_sess *es = example_sess(ex, c);

	if (es == NULL)
		return ex->host->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
	if (ex->rcpt_delay_ms == 0)
		return ex->host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	if (es->timer == NULL) {
		es->timer = malloc(sizeof(*es->timer));
		if (es->timer == NULL)
			return ex->host->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
		uv_timer_init(ex->host->loop(c), es->timer);
		es->timer->data = es;
	}
	es->pending = c;
	uv_timer_start(es->timer, example_timer_cb, ex->rcpt_delay_ms, 0);
}

static void example_on_header(void *instance, struct mxgate_call *c, const char *name,
    const char *value)
{
	struct example *ex = instance;
	struct example_sess *es = example_sess(ex, c);

	if (es)
		es->headers++;
	ex->host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void example_on_body(void *instance, struct mxgate_call *c, const char *chunk, size_t len)
{
	struct example *ex = instance;
	struct example_sess *es = example_sess(ex, c);

	if (es)
		es->body_bytes += len;
	ex->host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void example_on_eom(void *instance, struct mxgate_call *c)
{
	struct example *ex = instance;
	struct example_sess *es = example_sess(ex, c);
	size_t len = 0, hlen = ex->host->header_len(c);
	const char *msg = ex->host->message(c, &len);
	char value[200], reply[200];
	unsigned headers = 0;
	size_t body = 0;

	if (es) {
		es->messages++;
		headers = es->headers;
		body = es->body_bytes;
		es->headers = 0;
		es->body_bytes = 0;
	}
	if (msg && hlen <= len && memmem(msg + hlen, len - hlen, ex->word, strlen(ex->word))) {
		ex->host->add_symbol(c, "EXAMPLE_MAGIC", 10.0, ex->word);
		/* set_flags came after the first host table of ABI 1: check the table has it */
		if (ex->host->size >= offsetof(struct mxgate_host, set_flags) + sizeof(ex->host->set_flags))
			ex->host->set_flags(c, MXGATE_FLAG_SPAM);
		snprintf(reply, sizeof(reply), "5.7.1 Message contains the word %s", ex->word);
		return ex->host->done(c, MXGATE_REJECT, 550, reply, "example");
	}
	snprintf(value, sizeof(value), "seen by %s; message %u; headers %u; body %zu", ex->name,
	    es ? es->messages : 0, headers, body);
	ex->host->add_header(c, "X-Example-Plugin", value);
	ex->host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

/* The transaction goes on without this plugin (`bypass:` covers every recipient for it):
 * what the header and body hooks would have counted is dropped, nothing is added. A hook
 * added after desc_size: an older host never calls it. */
static void example_on_abort(void *instance, struct mxgate_call *c)
{
	struct example *ex = instance;
	struct example_sess *es = *ex->host->session_slot(c);

	if (es) {
		es->headers = 0;
		es->body_bytes = 0;
	}
	ex->host->log(c, 1, "event=example_abort rcpts=%zu", ex->host->rcpt_count(c));
}

static void example_close_cb(uv_handle_t *h)
{
	free(h);
}

static void example_cancel(void *instance, struct mxgate_call *c)
{
	struct example *ex = instance;
	struct example_sess *es = *ex->host->session_slot(c);

	if (es && es->pending == c) {
		es->pending = NULL;
		uv_timer_stop(es->timer);
	}
}

static void example_on_close(void *instance, struct mxgate_call *c)
{
	struct example *ex = instance;
	void **slot = ex->host->session_slot(c);
	struct example_sess *es = *slot;

	if (es == NULL)
		return;
	if (es->timer)
		uv_close((uv_handle_t *)es->timer, example_close_cb);
	free(es);
	*slot = NULL;
}

const struct mxgate_plugin mxgate_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.desc_size = MXGATE_DESC_SIZE,
	.name = "example",
	.init = example_init,
	.fini = example_fini,
	.on_rcpt = example_on_rcpt,
	.on_header = example_on_header,
	.on_body = example_on_body,
	.on_eom = example_on_eom,
	.on_close = example_on_close,
	.cancel = example_cancel,
	.on_abort = example_on_abort,
};
