/* spamd.c — SpamAssassin scoring through spamd's SPAMC/1.5 SYMBOLS command. */
#include "spamd.h"
#include "config.h"
#include "plugins.h"
#include "scanner.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPAMD_REPLY_MAX (64u * 1024u)

struct spamd_inst {
	const struct mxgate_host *host;
	struct pconn_addr addr;
	uint64_t max_size;
	char user[64];
};

/* `options:` of a spamd entry (the entry's own `max_size:` fills the same). */
struct spamd_options {
	uint64_t max_size;
	char *user;
};

static const struct cfg_field spamd_option_fields[] = {
	{ "max_size", CFG_SIZE, offsetof(struct spamd_options, max_size), "512K", 1, 1073741824.0,
	  .doc = "larger messages are not scanned (like spamc)" },
	{ "user", CFG_STRING, offsetof(struct spamd_options, user),
	  .doc = "spamd user whose preferences apply (the `User:` header); unset = spamd's default" },
	{ .key = NULL }
};

const struct cfg_table spamd_options_table = {
	.name = "plugins[].options (spamd)",
	.size = sizeof(struct spamd_options),
	.fields = spamd_option_fields,
};

struct spamd_scan {
	struct spamd_inst *si;
	struct mxgate_call *call;
	struct scanner *scan;
	const char *msg;
	size_t len;
	char *received;              /* our Received field, sent before msg (NULL once queued) */
	size_t rlen_hdr;
	char *reply;                 /* the scanner's, while the verdict is made */
	size_t rlen;
	bool overflow;
};

int spamd_reply_parse(const char *reply, size_t len, struct spamd_result *out)
{
	const char *p = reply, *end = reply + len, *eol;
	bool ok = false, have_spam = false;

	memset(out, 0, sizeof(*out));
	out->symbols = "";
	/* "SPAMD/1.1 0 EX_OK" */
	eol = memchr(p, '\n', (size_t)(end - p));
	if (eol == NULL || (size_t)(eol - p) < 10 || strncmp(p, "SPAMD/", 6) != 0)
		return -1;
	{
		const char *sp = memchr(p, ' ', (size_t)(eol - p));

		ok = sp && sp + 2 < eol && sp[1] == '0' && sp[2] == ' ';
	}
	if (!ok)
		return -1;
	p = eol + 1;
	/* headers until the blank line */
	while (p < end) {
		size_t l;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		l = (size_t)(eol - p);
		if (l && p[l - 1] == '\r')
			l--;
		if (l == 0) {
			p = eol < end ? eol + 1 : end;
			break;
		}
		if (l > 5 && strncasecmp(p, "Spam:", 5) == 0) {
			char buf[128], tf[8];
			double sc, th;

			if (l >= sizeof(buf))
				return -1;
			memcpy(buf, p, l);
			buf[l] = '\0';
			/* "Spam: True ; 7.5 / 5.0" */
			if (sscanf(buf + 5, " %7s ; %lf / %lf", tf, &sc, &th) != 3)
				return -1;
			out->spam = strcasecmp(tf, "True") == 0 || strcasecmp(tf, "Yes") == 0;
			out->score = sc;
			out->threshold = th;
			have_spam = true;
		}
		p = eol < end ? eol + 1 : end;
	}
	if (!have_spam)
		return -1;
	/* the body: rule names separated by commas, maybe a trailing CRLF */
	out->symbols = p;
	out->symbols_len = (size_t)(end - p);
	while (out->symbols_len && (p[out->symbols_len - 1] == '\n' || p[out->symbols_len - 1] == '\r' ||
	    p[out->symbols_len - 1] == ' '))
		out->symbols_len--;
	return 0;
}

static void spamd_scan_free(struct spamd_scan *sc)
{
	if (sc == NULL)
		return;
	scanner_free(sc->scan);
	free(sc->received);
	free(sc);
}

static void spamd_scan_end(struct spamd_scan *sc, enum mxgate_action a, const char *reason)
{
	struct mxgate_call *c = sc->call;
	const struct mxgate_host *h = sc->si->host;

	*h->session_slot(c) = NULL;
	spamd_scan_free(sc);
	h->done(c, a, 0, NULL, reason);
}

static void spamd_verdict(struct spamd_scan *sc)
{
	const struct mxgate_host *h = sc->si->host;
	struct spamd_result r;
	char desc[64], name[64];

	if (sc->overflow || spamd_reply_parse(sc->reply, sc->rlen, &r) < 0) {
		h->log(sc->call, 2, "event=spamd_error error=\"bad reply\"");
		return spamd_scan_end(sc, MXGATE_ERROR, "spamd-reply");
	}
	snprintf(desc, sizeof(desc), "%s %.1f / %.1f", r.spam ? "spam" : "ham", r.score, r.threshold);
	h->add_symbol(sc->call, "SPAMD_SCORE", r.score, desc);
	for (size_t i = 0; i < r.symbols_len; ) {
		size_t l = 0;

		while (i + l < r.symbols_len && r.symbols[i + l] != ',')
			l++;
		if (l > 0 && l < sizeof(name)) {
			size_t k = 0;

			for (size_t j = 0; j < l; j++) {
				char ch = r.symbols[i + j];

				if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
				    ch == '_' || ch == '-' || ch == '.')
					name[k++] = ch;
			}
			name[k] = '\0';
			if (k)
				h->add_symbol(sc->call, name, 0, NULL);
		}
		i += l + 1;
	}
	h->log(sc->call, 1, "event=spamd_result score=%.1f threshold=%.1f spam=%d", r.score,
	    r.threshold, r.spam);
	if (r.spam)
		h->set_flags(sc->call, MXGATE_FLAG_SPAM);
	spamd_scan_end(sc, MXGATE_CONTINUE, NULL);
}

/* Connected: the SYMBOLS request header, then the message. 0 or -1. */
static int spamd_send(struct scanner *scan, void *arg)
{
	struct spamd_scan *sc = arg;
	char hdr[256], *h;
	int n;

	n = snprintf(hdr, sizeof(hdr), "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\n%s%s%s\r\n",
	    sc->rlen_hdr + sc->len, sc->si->user[0] ? "User: " : "", sc->si->user, sc->si->user[0] ? "\r\n" : "");
	char *rcvd = sc->received;

	sc->received = NULL;   /* the write owns it from here (freed by it on failure too) */
	h = strndup(hdr, (size_t)n);
	if (h == NULL || scanner_write(scan, h, (size_t)n, h) < 0) {
		free(rcvd);
		return -1;
	}
	if ((rcvd && scanner_write(scan, rcvd, sc->rlen_hdr, rcvd) < 0) ||
	    scanner_write(scan, sc->msg, sc->len, NULL) < 0)
		return -1;
	return 0;
}

/* spamd answers and closes: the reply is read to the end (codec complete NULL). */
static void spamd_done(void *arg, enum scanner_status st, char *reply, size_t len, int err)
{
	struct spamd_scan *sc = arg;

	switch (st) {
	case SCANNER_OK:
	case SCANNER_TOO_BIG:
		sc->reply = reply;
		sc->rlen = len;
		sc->overflow = st == SCANNER_TOO_BIG;
		return spamd_verdict(sc);
	case SCANNER_CLOSED:
		return spamd_scan_end(sc, MXGATE_ERROR, "spamd-closed");
	case SCANNER_SEND_FAILED:
		return spamd_scan_end(sc, MXGATE_ERROR, "spamd-write");
	default:
		sc->si->host->log(sc->call, 2, "event=spamd_error error=\"%s\"",
		    err ? uv_strerror(err) : scanner_status_name(st));
		return spamd_scan_end(sc, MXGATE_ERROR, "spamd-unreachable");
	}
}

static const struct scanner_codec spamd_codec = { spamd_send, NULL, spamd_done };

/* options: a struct spamd_options (the typed `options:`). */
static int spamd_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    const void *options, void **instance, char *err, size_t errlen)
{
	const struct spamd_options *o = options;
	struct spamd_inst *si = calloc(1, sizeof(*si));
	const char *why;

	if (si == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	si->host = host;
	si->max_size = o->max_size;
	if (args->address == NULL) {
		snprintf(err, errlen, "address: required (HOST:PORT or unix:/path)");
		goto fail;
	}
	if (pconn_addr_parse(args->address, &si->addr, &why) < 0) {
		snprintf(err, errlen, "address: %s", why);
		goto fail;
	}
	si->addr.connect_ms = args->connect_timeout_ms;
	if (o->user) {
		if (strlen(o->user) >= sizeof(si->user) || strpbrk(o->user, "\r\n")) {
			snprintf(err, errlen, "options.user: bad user name");
			goto fail;
		}
		snprintf(si->user, sizeof(si->user), "%s", o->user);
	}
	*instance = si;
	return 0;
fail:
	free(si);
	return -1;
}

static void spamd_fini(void *instance)
{
	free(instance);
}

static void spamd_on_eom(void *instance, struct mxgate_call *c)
{
	struct spamd_inst *si = instance;
	const struct mxgate_host *h = si->host;
	struct spamd_scan *sc;
	size_t len;
	const char *msg = h->message(c, &len);

	if (msg == NULL)
		return h->done(c, MXGATE_ERROR, 0, NULL, "no message");
	if (len > si->max_size) {
		h->log(c, 0, "event=spamd_skip size=%zu max_size=%llu", len, (unsigned long long)si->max_size);
		return h->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		return h->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
	sc->si = si;
	sc->call = c;
	sc->msg = msg;
	sc->len = len;
	/* Our Received on top, as spamd behind Postfix sees the queued message (amavisd) or
	 * spamass-milter's synthesized one: SpamAssassin reads the client from it. */
	{
		const char *rcvd = h->get(c, MXGATE_RECEIVED);

		if (rcvd && *rcvd && (sc->received = strdup(rcvd)) != NULL)
			sc->rlen_hdr = strlen(rcvd);
	}
	sc->scan = scanner_start(h->loop(c), &si->addr, &spamd_codec, SPAMD_REPLY_MAX, 0, sc);
	if (sc->scan == NULL) {
		free(sc);
		return h->done(c, MXGATE_ERROR, 0, NULL, "spamd-unreachable");
	}
	*h->session_slot(c) = sc;
}

static void spamd_cancel(void *instance, struct mxgate_call *c)
{
	struct spamd_inst *si = instance;
	void **slot = si->host->session_slot(c);

	spamd_scan_free(*slot);
	*slot = NULL;
}

static const struct mxgate_plugin spamd_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.name = "spamd",
	.fini = spamd_fini,
	.on_eom = spamd_on_eom,
	.on_close = spamd_cancel,
	.cancel = spamd_cancel,
};

const struct plugin_builtin spamd_builtin = {
	.desc = &spamd_plugin,
	.options = &spamd_options_table,
	.init = spamd_init,
};
