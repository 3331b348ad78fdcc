/* clamd.c — virus scanning through clamd's zINSTREAM, as a built-in plugin. */
#include "clamd.h"
#include "config.h"
#include "log.h"
#include "plugins.h"
#include "scanner.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAMD_CHUNK (256u * 1024u)
#define CLAMD_REPLY_MAX 1024

enum clamd_found_action { CLAMD_REJECT = 0, CLAMD_QUARANTINE, CLAMD_TEMPFAIL };

/* `options:` of a clamd entry (the entry's own `action:` and `max_size:` fill the same). */
struct clamd_options {
	int action;                 /* enum clamd_found_action */
	uint64_t max_size;
	char *x_virus_scanned;      /* "" = none */
	char *blocked_prefix;       /* "" = none */
};

static const char *const clamd_action_names[] = { "reject", "quarantine", "tempfail", NULL };

static const struct cfg_field clamd_option_fields[] = {
	{ "action", CFG_ENUM, offsetof(struct clamd_options, action), "reject",
	  .choices = clamd_action_names,
	  .doc = "what a virus does: reject (554 5.7.1 Virus found: NAME), quarantine or tempfail (451)" },
	{ "max_size", CFG_SIZE, offsetof(struct clamd_options, max_size), "25M", 1, 4294967296.0,
	  .doc = "bytes streamed to clamd (clamd's StreamMaxLength); a longer message is scanned up to that size" },
	{ "x_virus_scanned", CFG_STRING, offsetof(struct clamd_options, x_virus_scanned), NULL,
	  .doc = "value of an X-Virus-Scanned field on mail clamd found clean, e.g. \"amavisd-new at "
	  "example.com\" for filters that test amavis's (the sender's X-Virus-Scanned fields are then "
	  "removed); default: none" },
	{ "blocked_prefix", CFG_STRING, offsetof(struct clamd_options, blocked_prefix), NULL,
	  .doc = "a signature name that starts with this (e.g. \"Blocked.\", the names of your own .cdb/.ndb "
	  "signatures for file names and types) is a blocked attachment, not a virus: 554 5.7.1 Attachment "
	  "blocked: NAME (4.7.1 with action tempfail), logged event=blocked_attachment, symbol CLAM_BLOCKED, "
	  "not counted as a virus; `action` applies as to a virus. Default: none (every name is a virus)" },
	{ .key = NULL }
};

const struct cfg_table clamd_options_table = {
	.name = "plugins[].options (clamd)",
	.size = sizeof(struct clamd_options),
	.fields = clamd_option_fields,
};

bool clamd_options_quarantine(const struct plugin_options *o)
{
	return o->table == &clamd_options_table && o->typed != NULL &&
	    ((const struct clamd_options *)o->typed)->action == CLAMD_QUARANTINE;
}

struct clamd_inst {
	const struct mxgate_host *host;
	struct pconn_addr addr;
	uint64_t max_size;
	enum clamd_found_action action;
	char x_virus_scanned[256];  /* "" = none */
	char blocked_prefix[64];    /* "" = none */
};

/* One scan in flight; lives in the session slot while it runs. */
struct clamd_scan {
	struct clamd_inst *ci;
	struct mxgate_call *call;
	struct scanner *scan;
	const char *msg;
	size_t len;
	char *reply;                 /* the scanner's, while the verdict is made */
	size_t rlen;
};

int clamd_reply_parse(const char *reply, size_t len, char *name, size_t namelen)
{
	char buf[CLAMD_REPLY_MAX + 1];
	char *p, *end;

	if (len > CLAMD_REPLY_MAX)
		len = CLAMD_REPLY_MAX;
	memcpy(buf, reply, len);
	buf[len] = '\0';
	/* Trim NUL / newline terminators. */
	buf[strcspn(buf, "\r\n")] = '\0';
	end = buf + strlen(buf);
	while (end > buf && end[-1] == ' ')
		*--end = '\0';
	/* "stream: ..." (or "1: stream: ..." in session mode): the status after the last ": " */
	p = strstr(buf, "stream: ");
	p = p ? p + 8 : buf;
	if (strcmp(p, "OK") == 0)
		return 0;
	if (end - p > 6 && strcmp(end - 6, " FOUND") == 0) {
		size_t nl = (size_t)(end - 6 - p);

		if (nl == 0)
			return -1;
		if (nl >= namelen)
			nl = namelen - 1;
		memcpy(name, p, nl);
		name[nl] = '\0';
		for (size_t i = 0; i < nl; i++)   /* keep it safe for a reply line and a log */
			if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
				name[i] = '_';
		return 1;
	}
	return -1;
}

static void clamd_scan_free(struct clamd_scan *sc)
{
	if (sc == NULL)
		return;
	scanner_free(sc->scan);
	free(sc);
}

/* Ends the scan and completes the call. Last thing the caller does. */
static void clamd_scan_end(struct clamd_scan *sc, enum mxgate_action a, int code, const char *reply,
    const char *reason)
{
	struct mxgate_call *c = sc->call;
	const struct mxgate_host *h = sc->ci->host;

	*h->session_slot(c) = NULL;
	clamd_scan_free(sc);
	h->done(c, a, code, reply, reason);
}

static void clamd_verdict(struct clamd_scan *sc)
{
	const struct mxgate_host *h = sc->ci->host;
	char name[200], text[300];
	int rc = clamd_reply_parse(sc->reply, sc->rlen, name, sizeof(name));

	if (rc == 0) {
		if (sc->ci->x_virus_scanned[0]) {
			/* amavis's X-Virus-Scanned: ours alone (a sender's would claim a scan) */
			h->delete_header(sc->call, "X-Virus-Scanned");
			h->add_header(sc->call, "X-Virus-Scanned", sc->ci->x_virus_scanned);
		}
		return clamd_scan_end(sc, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	if (rc < 0) {
		sc->reply[strcspn(sc->reply, "\r\n")] = '\0';
		char rv[240];

		h->log(sc->call, 2, "event=clamd_error reply=%s", log_val(rv, sizeof(rv), sc->reply));
		return clamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "clamd-error");
	}
	/* a signature of the site's own for a file name or type: PMG's "Block Dangerous Files",
	 * MailScanner's filename/filetype rules; told apart from malware in the reply and counts */
	size_t bl = strlen(sc->ci->blocked_prefix);
	bool blocked = bl > 0 && strncmp(name, sc->ci->blocked_prefix, bl) == 0;
	const char *what = blocked ? "Attachment blocked" : "Virus found";
	char nv[240];   /* clamd's text: escaped as any value from a peer */

	h->add_symbol(sc->call, blocked ? "CLAM_BLOCKED" : "CLAM_VIRUS", 0, name);
	if (!blocked)
		h->set_flags(sc->call, MXGATE_FLAG_VIRUS);
	if (blocked)
		h->log(sc->call, 1, "event=blocked_attachment name=%s", log_val(nv, sizeof(nv), name));
	else
		h->log(sc->call, 1, "event=virus name=%s", log_val(nv, sizeof(nv), name));
	switch (sc->ci->action) {
	case CLAMD_QUARANTINE:
		snprintf(text, sizeof(text), "%s %s", blocked ? "blocked" : "virus", name);
		h->set_quarantine_reason(sc->call, text);
		return clamd_scan_end(sc, MXGATE_QUARANTINE, 0, NULL, blocked ? "blocked" : "virus");
	case CLAMD_TEMPFAIL:
		snprintf(text, sizeof(text), "4.7.1 %s: %s", what, name);
		return clamd_scan_end(sc, MXGATE_TEMPFAIL, 451, text, blocked ? "blocked" : "virus");
	default:
		snprintf(text, sizeof(text), "5.7.1 %s: %s", what, name);
		return clamd_scan_end(sc, MXGATE_REJECT, 554, text, blocked ? "blocked" : "virus");
	}
}

/* Connected: queues zINSTREAM, the chunks and the terminator. 0 or -1. */
static int clamd_send(struct scanner *scan, void *arg)
{
	struct clamd_scan *sc = arg;
	size_t off = 0;

	if (scanner_write(scan, "zINSTREAM", 10, NULL) < 0)
		return -1;
	while (off < sc->len) {
		size_t n = sc->len - off > CLAMD_CHUNK ? CLAMD_CHUNK : sc->len - off;
		unsigned char *hdr = malloc(4);

		if (hdr == NULL)
			return -1;
		hdr[0] = (unsigned char)(n >> 24);
		hdr[1] = (unsigned char)(n >> 16);
		hdr[2] = (unsigned char)(n >> 8);
		hdr[3] = (unsigned char)n;
		/* The chunk is borrowed from the message, stable until the call completes; closing
		 * the connection drops unsent writes. */
		if (scanner_write(scan, hdr, 4, hdr) < 0 || scanner_write(scan, sc->msg + off, n, NULL) < 0)
			return -1;
		off += n;
	}
	return scanner_write(scan, "\0\0\0\0", 4, NULL);
}

/* clamd ends its reply with a NUL (z commands); a reply at the bound, or one the peer
 * closed or reset after (e.g. "INSTREAM size limit exceeded. ERROR"), is read as it is. */
static int clamd_complete(const char *reply, size_t len, bool eof, void *arg)
{
	return eof || len >= CLAMD_REPLY_MAX || memchr(reply, '\0', len) ? 0 : 1;
}

static void clamd_done(void *arg, enum scanner_status st, char *reply, size_t len, int err)
{
	struct clamd_scan *sc = arg;
	const char *nul;

	if (err)
		sc->ci->host->log(sc->call, 2, "event=clamd_error error=\"%s\"", uv_strerror(err));
	switch (st) {
	case SCANNER_OK:
		nul = memchr(reply, '\0', len);
		sc->reply = reply;
		sc->rlen = nul ? (size_t)(nul - reply) : len;
		return clamd_verdict(sc);
	case SCANNER_CLOSED:
		return clamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "clamd-closed");
	case SCANNER_SEND_FAILED:
		return clamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "clamd-write");
	case SCANNER_UNREACHABLE:
	case SCANNER_IO_ERROR:
		return clamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "clamd-unreachable");
	default:
		return clamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "clamd-error");
	}
}

static const struct scanner_codec clamd_codec = { clamd_send, clamd_complete, clamd_done };

/* options: a struct clamd_options (the typed `options:`). */
static int clamd_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    const void *options, void **instance, char *err, size_t errlen)
{
	const struct clamd_options *o = options;
	struct clamd_inst *ci = calloc(1, sizeof(*ci));
	const char *why;

	if (ci == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ci->host = host;
	ci->max_size = o->max_size;
	ci->action = (enum clamd_found_action)o->action;
	if (o->x_virus_scanned && strlen(o->x_virus_scanned) >= sizeof(ci->x_virus_scanned)) {
		snprintf(err, errlen, "options.x_virus_scanned: longer than %zu octets",
		    sizeof(ci->x_virus_scanned) - 1);
		goto fail;
	}
	snprintf(ci->x_virus_scanned, sizeof(ci->x_virus_scanned), "%s",
	    o->x_virus_scanned ? o->x_virus_scanned : "");
	if (strpbrk(ci->x_virus_scanned, "\r\n") != NULL) {
		snprintf(err, errlen, "options.x_virus_scanned: one line (no CR or LF)");
		goto fail;
	}
	if (o->blocked_prefix && strlen(o->blocked_prefix) >= sizeof(ci->blocked_prefix)) {
		snprintf(err, errlen, "options.blocked_prefix: longer than %zu octets", sizeof(ci->blocked_prefix) - 1);
		goto fail;
	}
	snprintf(ci->blocked_prefix, sizeof(ci->blocked_prefix), "%s", o->blocked_prefix ? o->blocked_prefix : "");
	if (args->address == NULL) {
		snprintf(err, errlen, "address: required (HOST:PORT or unix:/path)");
		goto fail;
	}
	if (pconn_addr_parse(args->address, &ci->addr, &why) < 0) {
		snprintf(err, errlen, "address: %s", why);
		goto fail;
	}
	ci->addr.connect_ms = args->connect_timeout_ms;
	*instance = ci;
	return 0;
fail:
	free(ci);
	return -1;
}

static void clamd_fini(void *instance)
{
	free(instance);
}

static void clamd_on_eom(void *instance, struct mxgate_call *c)
{
	struct clamd_inst *ci = instance;
	const struct mxgate_host *h = ci->host;
	struct clamd_scan *sc = calloc(1, sizeof(*sc));

	if (sc == NULL)
		return h->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
	sc->ci = ci;
	sc->call = c;
	sc->msg = h->message(c, &sc->len);
	if (sc->msg == NULL) {
		free(sc);
		return h->done(c, MXGATE_ERROR, 0, NULL, "no message");
	}
	if (sc->len > ci->max_size) {
		h->log(c, 0, "event=clamd_truncate size=%zu max_size=%llu", sc->len,
		    (unsigned long long)ci->max_size);
		sc->len = ci->max_size;
	}
	sc->scan = scanner_start(h->loop(c), &ci->addr, &clamd_codec, CLAMD_REPLY_MAX, 0, sc);
	if (sc->scan == NULL) {
		free(sc);
		return h->done(c, MXGATE_ERROR, 0, NULL, "clamd-unreachable");
	}
	*h->session_slot(c) = sc;
}

static void clamd_cancel(void *instance, struct mxgate_call *c)
{
	struct clamd_inst *ci = instance;
	void **slot = ci->host->session_slot(c);

	clamd_scan_free(*slot);
	*slot = NULL;
}

static void clamd_on_close(void *instance, struct mxgate_call *c)
{
	clamd_cancel(instance, c);
}

static const struct mxgate_plugin clamd_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.name = "clamd",
	.fini = clamd_fini,
	.on_eom = clamd_on_eom,
	.on_close = clamd_on_close,
	.cancel = clamd_cancel,
};

const struct plugin_builtin clamd_builtin = {
	.desc = &clamd_plugin,
	.options = &clamd_options_table,
	.init = clamd_init,
};
