/* milter.c — milter client (MTA side, protocol version 6) as a built-in plugin.
 *
 * Lock-step: every command that expects a reply is sent alone and the reply awaited;
 * commands the filter asked not to answer (SMFIP_NR_*) are batched with the next one.
 * Stages the filter asked to skip (SMFIP_NO*) are not sent. The session's plugin chain
 * owns the timer: each reply (and SMFIR_PROGRESS) restarts it through host->progress. */
#include "milter.h"
#include "config.h"
#include "log.h"
#include "milter_proto.h"
#include "msgbuf.h"
#include "pconn.h"
#include "plugins.h"

#include <libmilter/mfdef.h>
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* `options:` of a milter entry. */
struct milter_options {
	uint64_t max_frame;
	char *daemon_name;
};

static const struct cfg_field milter_option_fields[] = {
	{ "max_frame", CFG_SIZE, offsetof(struct milter_options, max_frame), "1025K", 65536, 67108864.0,
	  .doc = "largest reply frame accepted from the filter; a larger one is an error (on_error)" },
	{ "daemon_name", CFG_STRING, offsetof(struct milter_options, daemon_name), "mxgate",
	  .doc = "the {daemon_name} macro sent at connect" },
	{ .key = NULL }
};

const struct cfg_table milter_options_table = {
	.name = "plugins[].options (milter)",
	.size = sizeof(struct milter_options),
	.fields = milter_option_fields,
};

struct milter_inst {
	const struct mxgate_host *host;
	struct pconn_addr addr;
	uint32_t max_frame;
	char daemon_name[64];
	uv_loop_t *loop;
};

enum milter_state {
	MS_CONNECTING = 0, MS_NEGOTIATING, MS_READY,
	MS_ACCEPTED,     /* the filter accepted the connection: no more calls this session */
	MS_FAILED,
};

enum milter_wait { W_NONE = 0, W_OPTNEG, W_STAGE, W_EOM_STEP, W_EOB };

enum milter_eom_phase { EP_HEADERS = 0, EP_EOH, EP_BODY, EP_EOB, EP_SENT };

struct milter_mod { char cmd; uint32_t index; char *a, *b; };

/* A filter's own macro list for a stage (SMFIR_SETSYMLIST): names (NULL-terminated) point
 * into block; names NULL = the defaults. */
struct milter_symlist { char *block; const char **names; };

/* Replaying the session's connect (and helo) on a fresh connection before a MAIL, after
 * the filter failed earlier in the session. */
enum milter_replay { RP_NONE = 0, RP_CONNECT, RP_HELO };

struct milter_sess {
	struct milter_inst *mi;
	struct pconn *conn;
	struct milter_parser parser;
	struct milter_buf out;
	enum milter_state state;
	char failed[48];                /* MS_FAILED: the failure's reason, answered until a reconnect */
	char unlogged[80];              /* a failure's detail seen with no call to log it on (logged
	                                 * with the next one) */
	enum milter_wait wait;
	bool nr_sent;                   /* commands sent without a reply expected (SMFIP_NR_*) since
	                                 * the last reply that ended a wait */
	bool out_of_step;               /* more followed the verdict at end of message: drop the
	                                 * connection once it is applied */
	uint32_t fprot, facts;
	struct mxgate_call *call;
	char stage_cmd;                 /* the stage being answered */
	bool in_txn;                    /* MAIL sent, end of message not reached */
	bool txn_done;                  /* the filter accepted/discarded the message already */
	bool skip_rcpt;                 /* SMFIR_SKIP at RCPT: no more recipients this transaction */
	bool helo_seen;                 /* the session sent HELO/EHLO (replayed on reconnect) */
	enum milter_replay replay;
	/* end of message */
	enum milter_eom_phase phase;
	char step_cmd;                  /* W_EOM_STEP: the command answered (header, EOH, body) */
	const char *msg;
	size_t mlen, hlen, off;
	bool skip_body;
	struct milter_mod *mods;
	size_t nmods;
	struct msgbuf *newbody;         /* the SMFIR_REPLBODY chunks, within limits.memory_budget or
	                                 * spooled (NULL: none yet, or too big); handed to the host */
	bool has_newbody;
	bool body_too_big;              /* the replaced body passed limits.max_message_size */
	size_t rcpts_added;             /* recipients the filter added (SMFIR_ADDRCPT*) */
	size_t rcpts_deleted;           /* ... and deleted (SMFIR_DELRCPT) */
	size_t hdr_added;               /* bytes the filter's header edits would add */
	bool headers_too_big;           /* ... and they passed limits.max_message_size */
	char *quarantine;
	struct milter_symlist symlist[7];   /* per macro stage (enum milter_mstage) */
};

static void milter_symlists_free(struct milter_sess *ms);

/* ------------------------------------------------------------------- helpers */

static void milter_mods_clear(struct milter_sess *ms)
{
	for (size_t i = 0; i < ms->nmods; i++) {
		free(ms->mods[i].a);
		free(ms->mods[i].b);
	}
	free(ms->mods);
	ms->mods = NULL;
	ms->nmods = 0;
	msgbuf_free(ms->newbody);
	ms->newbody = NULL;
	ms->has_newbody = false;
	ms->body_too_big = false;
	ms->hdr_added = 0;
	ms->headers_too_big = false;
	ms->rcpts_added = 0;
	ms->rcpts_deleted = 0;
	free(ms->quarantine);
	ms->quarantine = NULL;
}

static void milter_sess_free(struct milter_sess *ms)
{
	if (ms == NULL)
		return;
	pconn_close(ms->conn);
	milter_parser_free(&ms->parser);
	milter_buf_free(&ms->out);
	milter_mods_clear(ms);
	milter_symlists_free(ms);
	free(ms);
}

static void milter_replay_next(struct milter_sess *ms);

/* Completes the pending call. Must be the last thing the caller does with ms. */
static void milter_finish(struct milter_sess *ms, enum mxgate_action a, int code,
    const char *reply, const char *reason)
{
	struct mxgate_call *c = ms->call;

	if (ms->replay != RP_NONE && c) {
		/* A replayed stage: go on to the next one, or its verdict answers the MAIL call. */
		if (a == MXGATE_CONTINUE)
			return milter_replay_next(ms);
		ms->replay = RP_NONE;
	}
	if (ms->out_of_step) {
		/* The filter sent more after its verdict at end of message (no command sent
		 * without a reply before it, so the verdict was the awaited one): the verdict
		 * stands, the connection is dropped so that the rest never answers a later
		 * command; the next transaction reconnects. */
		ms->out_of_step = false;
		if (ms->state != MS_FAILED && c) {
			ms->mi->host->log(c, 2, "event=milter_error error=\"reply while none was expected\"");
			ms->state = MS_FAILED;
			snprintf(ms->failed, sizeof(ms->failed), "milter-protocol");
			pconn_close(ms->conn);
			ms->conn = NULL;
		}
	}
	ms->call = NULL;
	ms->wait = W_NONE;
	if (c)
		ms->mi->host->done(c, a, code, reply, reason);
}

/* The filter is gone or broke the protocol: drop the connection for this session. reason
 * is the short word the chain logs and on_error: tag writes into X-Mxgate-Filter-Error
 * (milter-unreachable, milter-closed, milter-protocol, ...; no blanks); why the detail for
 * the milter_error line. */
static void milter_fail(struct milter_sess *ms, const char *reason, const char *why)
{
	if (ms->call)
		ms->mi->host->log(ms->call, 2, "event=milter_error error=\"%s\"", why);
	else   /* between calls (a reply nobody waited for): logged with the next call */
		snprintf(ms->unlogged, sizeof(ms->unlogged), "%s", why);
	ms->state = MS_FAILED;
	snprintf(ms->failed, sizeof(ms->failed), "%s", reason);
	pconn_close(ms->conn);
	ms->conn = NULL;
	milter_finish(ms, MXGATE_ERROR, 0, NULL, reason);
}

/* The connection failed (err, a libuv error): unreachable while connecting, closed when
 * the filter reset it (it closed with our command unread), else an I/O error; the reason
 * carries the error's name (milter-unreachable:ECONNREFUSED, milter-closed:ECONNRESET). */
static void milter_fail_io(struct milter_sess *ms, int err)
{
	char reason[48];
	const char *what = ms->state == MS_CONNECTING ? "milter-unreachable" :
	    err == UV_ECONNRESET || err == UV_EPIPE ? "milter-closed" : "milter-io";

	snprintf(reason, sizeof(reason), "%s:%s", what, uv_err_name(err));
	milter_fail(ms, reason, uv_strerror(err));
}

/* Sends what was queued in ms->out. 0 or -1. */
static int milter_flush(struct milter_sess *ms)
{
	void *data;

	if (ms->out.len == 0)
		return 0;
	if (ms->conn == NULL)
		return -1;
	data = ms->out.data;
	if (pconn_write(ms->conn, data, ms->out.len, data) < 0) {
		milter_buf_init(&ms->out);
		return -1;
	}
	milter_buf_init(&ms->out);   /* the write owns the old buffer now */
	return 0;
}

static const char *milter_get(struct milter_sess *ms, enum mxgate_item it)
{
	const char *s = ms->mi->host->get(ms->call, it);

	return s ? s : "";
}

/* The domain of an address ({mail_host}, {rcpt_host}: Postfix sends the next hop the
 * address resolves to, which for mail passing through is its domain); NULL when none. */
static const char *milter_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at && at[1] ? at + 1 : NULL;
}

/* The macro stages of a filter's SMFIR_SETSYMLIST lists (libmilter's SMFIM_*). */
enum milter_mstage { MM_CONNECT = 0, MM_HELO, MM_ENVFROM, MM_ENVRCPT, MM_DATA, MM_EOM, MM_EOH, MM_N };

/* The macros sent at each stage unless the filter asked for its own list: Postfix's
 * defaults (milter_connect_macros, milter_helo_macros, milter_mail_macros,
 * milter_rcpt_macros, milter_data_macros, milter_end_of_header_macros,
 * milter_end_of_data_macros), and at connect the client's address, port and names too. */
static const char *const milter_default_macros[MM_N][12] = {
	[MM_CONNECT] = { "j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}", "{client_port}",
	    "{client_name}", "{client_ptr}", NULL },
	[MM_HELO] = { "{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}", NULL },
	[MM_ENVFROM] = { "i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
	    "{mail_mailer}", NULL },
	[MM_ENVRCPT] = { "i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", NULL },
	[MM_DATA] = { "i", NULL }, [MM_EOM] = { "i", NULL }, [MM_EOH] = { "i", NULL },
};

/* Formatted macro values, one buffer each (valid while the stage's frame is built). */
struct milter_macro_bufs { char under[600], author[520]; };

/* RFC 4954 5: the AUTH= parameter of MAIL in xtext ("+XX" for a byte) decoded into out
 * (cap octets); NULL when there is none, it is "<>" or it is malformed. */
static const char *milter_auth_author(const char *params, char *out, size_t cap)
{
	const char *p = params;
	size_t o = 0;

	while (p && *p) {
		p += strspn(p, " ");
		if (strncasecmp(p, "AUTH=", 5) == 0)
			break;
		p += strcspn(p, " ");
	}
	if (p == NULL || *p == '\0')
		return NULL;
	for (p += 5; *p && *p != ' '; p++) {
		unsigned v;

		if (o + 1 >= cap)
			return NULL;
		if (*p == '+') {
			if (sscanf(p + 1, "%2x", &v) != 1 || !p[1] || !p[2] || v < 0x21 || v > 0x7e)
				return NULL;
			out[o++] = (char)v;
			p += 2;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return o > 0 && strcmp(out, "<>") != 0 ? out : NULL;
}

/* The value of the macro name (as a filter asks for it: "{mail_addr}", "mail_addr" or a
 * letter) now; NULL when it is unknown or has no value at this point (it is not sent, as
 * Postfix leaves out what is undefined). */
static const char *milter_macro_value(struct milter_sess *ms, const char *name, struct milter_macro_bufs *b)
{
	const struct mxgate_host *h = ms->mi->host;
	char n[40];
	size_t l = strlen(name);
	const char *v;

	if (l >= 2 && name[0] == '{' && name[l - 1] == '}') {
		name++;
		l -= 2;
	}
	if (l == 0 || l >= sizeof(n))
		return NULL;
	memcpy(n, name, l);
	n[l] = '\0';
	if (strcmp(n, "j") == 0)
		return milter_get(ms, MXGATE_HOSTNAME);
	if (strcmp(n, "daemon_name") == 0)
		return ms->mi->daemon_name;
	if (strcmp(n, "daemon_addr") == 0)
		return h->get(ms->call, MXGATE_LOCAL_IP);
	if (strcmp(n, "daemon_port") == 0)
		return h->get(ms->call, MXGATE_LOCAL_PORT);
	if (strcmp(n, "v") == 0)
		return "mxgate";
	if (strcmp(n, "_") == 0) {
		const char *name_ok = milter_get(ms, MXGATE_CLIENT_NAME), *ptr = milter_get(ms, MXGATE_CLIENT_PTR);

		/* As Postfix: the PTR name and address, flagged when not confirmed. */
		snprintf(b->under, sizeof(b->under), "%s [%s]%s", *ptr ? ptr : "unknown", milter_get(ms, MXGATE_CLIENT_IP),
		    strcmp(ptr, name_ok) != 0 ? " (may be forged)" : "");
		return b->under;
	}
	if (strcmp(n, "client_addr") == 0)
		return milter_get(ms, MXGATE_CLIENT_IP);
	if (strcmp(n, "client_port") == 0)
		return milter_get(ms, MXGATE_CLIENT_PORT);
	if (strcmp(n, "client_name") == 0)	/* the confirmed name */
		return *(v = milter_get(ms, MXGATE_CLIENT_NAME)) ? v : "unknown";
	if (strcmp(n, "client_ptr") == 0)	/* the PTR name */
		return *(v = milter_get(ms, MXGATE_CLIENT_PTR)) ? v : "unknown";
	if (strcmp(n, "tls_version") == 0 || strcmp(n, "cipher") == 0 || strcmp(n, "cipher_bits") == 0) {
		if (!*milter_get(ms, MXGATE_TLS_VERSION))
			return NULL;
		v = milter_get(ms, n[0] == 't' ? MXGATE_TLS_VERSION : n[6] ? MXGATE_TLS_CIPHER_BITS : MXGATE_TLS_CIPHER);
		return *v ? v : NULL;
	}
	/* {cert_subject}, {cert_issuer}: the CNs of a client certificate that verified
	 * (tls.client_certificate ask or require), as Postfix sends them only for a trusted one;
	 * {cert_fingerprint} (asked for by a filter's list; no Postfix macro): the SHA-256 of
	 * any certificate sent. Undefined otherwise. */
	if (strcmp(n, "cert_subject") == 0 || strcmp(n, "cert_issuer") == 0 || strcmp(n, "cert_fingerprint") == 0) {
		v = h->get(ms->call, n[5] == 's' ? MXGATE_TLS_CERT_SUBJECT : n[5] == 'i' ? MXGATE_TLS_CERT_ISSUER :
		    MXGATE_TLS_CERT_FINGERPRINT);
		return v && *v ? v : NULL;
	}
	if (strcmp(n, "i") == 0)
		return h->get(ms->call, MXGATE_QUEUE_ID);
	if (strcmp(n, "auth_authen") == 0 || strcmp(n, "auth_type") == 0 || strcmp(n, "auth_author") == 0) {
		if (!*milter_get(ms, MXGATE_AUTH_USER))
			return NULL;
		if (n[5] == 't')
			return milter_get(ms, MXGATE_AUTH_TYPE);
		if (strcmp(n, "auth_authen") == 0)
			return milter_get(ms, MXGATE_AUTH_USER);
		return milter_auth_author(milter_get(ms, MXGATE_MAIL_PARAMS), b->author, sizeof(b->author));
	}
	if (strcmp(n, "mail_mailer") == 0 || strcmp(n, "mail_addr") == 0 || strcmp(n, "mail_host") == 0) {
		if ((v = h->get(ms->call, MXGATE_MAIL_FROM)) == NULL)
			return NULL;	/* before MAIL */
		return n[5] == 'm' ? "smtp" : n[5] == 'a' ? v : milter_addr_domain(v);
	}
	if (strcmp(n, "rcpt_mailer") == 0 || strcmp(n, "rcpt_addr") == 0 || strcmp(n, "rcpt_host") == 0) {
		if ((v = h->get(ms->call, MXGATE_RCPT)) == NULL)
			return NULL;	/* not at RCPT */
		return n[5] == 'm' ? "smtp" : n[5] == 'a' ? v : milter_addr_domain(v);
	}
	return NULL;
}

/* The macro stage of a command, or -1 (none). */
static int milter_mstage(char cmd)
{
	switch (cmd) {
	case SMFIC_CONNECT: return MM_CONNECT;
	case SMFIC_HELO: return MM_HELO;
	case SMFIC_MAIL: return MM_ENVFROM;
	case SMFIC_RCPT: return MM_ENVRCPT;
	case SMFIC_DATA: return MM_DATA;
	case SMFIC_EOH: return MM_EOH;
	case SMFIC_BODYEOB: return MM_EOM;
	default: return -1;
	}
}

#define MILTER_MACROS_MAX 32	/* per stage; more names in a filter's list are ignored */

/* Appends the macros for a stage command: the filter's own list for that stage when it
 * sent one (SMFIR_SETSYMLIST in its option negotiation), else the defaults; a macro
 * without a value now is left out. */
static int milter_put_stage_macros(struct milter_sess *ms, char cmd)
{
	const char *kv[2 * MILTER_MACROS_MAX];
	const char *const *names;
	struct milter_macro_bufs b;
	int st = milter_mstage(cmd);
	size_t n = 0;

	if (st < 0)
		return 0;
	names = ms->symlist[st].names ? ms->symlist[st].names : milter_default_macros[st];
	for (size_t i = 0; names[i] && n < MILTER_MACROS_MAX; i++) {
		const char *v = milter_macro_value(ms, names[i], &b);

		if (v == NULL)
			continue;
		kv[2 * n] = names[i];
		kv[2 * n + 1] = v;
		n++;
	}
	if (n == 0)
		return 0;
	return milter_put_macros(&ms->out, cmd, kv, n);
}

/* Frees the filter's macro lists (the defaults apply again). */
static void milter_symlists_free(struct milter_sess *ms)
{
	for (int i = 0; i < MM_N; i++) {
		free(ms->symlist[i].block);
		free(ms->symlist[i].names);
		ms->symlist[i].block = NULL;
		ms->symlist[i].names = NULL;
	}
}

/* Takes the macro lists of the filter's OPTNEG reply (data, len): for each stage listed,
 * the names it wants instead of the defaults (an empty list: none), at most
 * MILTER_MACROS_MAX. 0, or -1 when the lists are malformed (or no memory). A stage we do
 * not know is ignored. */
static int milter_symlists_take(struct milter_sess *ms, const unsigned char *data, size_t len)
{
	size_t off = 0;
	uint32_t stage;
	const char *list;
	int rc;

	milter_symlists_free(ms);
	while ((rc = milter_symlist_next(data, len, &off, &stage, &list)) == 1) {
		struct milter_symlist *sl;
		size_t k = 0;
		char *save = NULL;

		if (stage >= MM_N)
			continue;
		sl = &ms->symlist[stage];
		free(sl->block);
		free(sl->names);
		sl->block = strdup(list);
		sl->names = calloc(MILTER_MACROS_MAX + 1, sizeof(*sl->names));
		if (sl->block == NULL || sl->names == NULL)
			return -1;
		for (char *t = strtok_r(sl->block, " ", &save); t && k < MILTER_MACROS_MAX; t = strtok_r(NULL, " ", &save))
			sl->names[k++] = t;
	}
	return rc;
}

/* See milter.h (fuzz_milter_symlists). */
int milter_symlists_take_fuzz(const unsigned char *data, size_t len,
    void (*each)(int stage, const char *name, void *arg), void *arg)
{
	struct milter_sess *ms = calloc(1, sizeof(*ms));
	int rc;

	if (ms == NULL)
		return -1;
	rc = milter_symlists_take(ms, data, len);
	for (int i = 0; i < MM_N; i++)
		for (size_t k = 0; ms->symlist[i].names && ms->symlist[i].names[k]; k++)
			each(i, ms->symlist[i].names[k], arg);
	milter_symlists_free(ms);
	free(ms);
	return rc;
}

/* The SMFIP_NO* bit for a stage command, and its SMFIP_NR_* bit (0 = always replies). */
static uint32_t milter_no_bit(char cmd)
{
	switch (cmd) {
	case SMFIC_CONNECT: return SMFIP_NOCONNECT;
	case SMFIC_HELO: return SMFIP_NOHELO;
	case SMFIC_MAIL: return SMFIP_NOMAIL;
	case SMFIC_RCPT: return SMFIP_NORCPT;
	case SMFIC_DATA: return SMFIP_NODATA;
	case SMFIC_HEADER: return SMFIP_NOHDRS;
	case SMFIC_EOH: return SMFIP_NOEOH;
	case SMFIC_BODY: return SMFIP_NOBODY;
	default: return 0;
	}
}

static uint32_t milter_nr_bit(char cmd)
{
	switch (cmd) {
	case SMFIC_CONNECT: return SMFIP_NR_CONN;
	case SMFIC_HELO: return SMFIP_NR_HELO;
	case SMFIC_MAIL: return SMFIP_NR_MAIL;
	case SMFIC_RCPT: return SMFIP_NR_RCPT;
	case SMFIC_DATA: return SMFIP_NR_DATA;
	case SMFIC_HEADER: return SMFIP_NR_HDR;
	case SMFIC_EOH: return SMFIP_NR_EOH;
	case SMFIC_BODY: return SMFIP_NR_BODY;
	default: return 0;
	}
}

/* Whether the filter answers cmd (filters older than v6 answer everything). */
static bool milter_wants_reply(const struct milter_sess *ms, char cmd)
{
	uint32_t nr = milter_nr_bit(cmd);

	return nr == 0 || !(ms->fprot & nr);
}

/* Sends one envelope stage (connect, helo, mail, rcpt, data) and completes the call at
 * once when the filter skips it or does not answer it. */
static void milter_send_stage(struct milter_sess *ms, char cmd)
{
	int rc = 0;

	ms->stage_cmd = cmd;
	if (ms->fprot & milter_no_bit(cmd))
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	rc |= milter_put_stage_macros(ms, cmd);
	switch (cmd) {
	case SMFIC_CONNECT: {
		const char *ip = milter_get(ms, MXGATE_CLIENT_IP), *name = milter_get(ms, MXGATE_CLIENT_NAME);
		char host[300];
		char fam = strchr(ip, ':') ? SMFIA_INET6 : *ip ? SMFIA_INET : SMFIA_UNKNOWN;

		if (*name)
			snprintf(host, sizeof(host), "%s", name);
		else
			snprintf(host, sizeof(host), "[%s]", ip);
		rc |= milter_put_connect(&ms->out, host, fam, (uint16_t)atoi(milter_get(ms, MXGATE_CLIENT_PORT)), ip);
		break;
	}
	case SMFIC_HELO:
		rc |= milter_put_helo(&ms->out, milter_get(ms, MXGATE_HELO));
		break;
	case SMFIC_MAIL:
		rc |= milter_put_envaddr(&ms->out, SMFIC_MAIL, milter_get(ms, MXGATE_MAIL_FROM),
		    milter_get(ms, MXGATE_MAIL_PARAMS));
		break;
	case SMFIC_RCPT:
		rc |= milter_put_envaddr(&ms->out, SMFIC_RCPT, milter_get(ms, MXGATE_RCPT),
		    milter_get(ms, MXGATE_RCPT_PARAMS));
		break;
	default:
		rc |= milter_put_simple(&ms->out, cmd);
		break;
	}
	if (rc != 0 || milter_flush(ms) < 0)
		return milter_fail(ms, "milter-write", "write failed");
	if (!milter_wants_reply(ms, cmd)) {
		ms->nr_sent = true;
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	ms->wait = W_STAGE;
}

/* Next header of the message at ms->off: name and value (inner CRLF as LF like sendmail
 * and Postfix pass them). The value is everything after the colon for a filter that took
 * SMFIP_HDR_LEADSPC; for others one space after the colon is eaten (not a tab, not a
 * second space), as Sendmail and Postfix do. false at the end of the headers. */
static bool milter_next_header(struct milter_sess *ms, char **name, char **value)
{
	const char *m = ms->msg;
	size_t i = ms->off, start = ms->off, colon = 0, v, k;
	char *val;

	while (i < ms->hlen) {
		if (m[i] == '\n' && (i + 1 >= ms->hlen || (m[i + 1] != ' ' && m[i + 1] != '\t')))
			break;
		i++;
	}
	if (i >= ms->hlen || i - start <= 1)
		return false;
	ms->off = i + 1;
	for (k = start; k < i; k++)
		if (m[k] == ':') {
			colon = k;
			break;
		}
	if (colon == 0)   /* not a header line: skip it */
		return milter_next_header(ms, name, value);
	*name = strndup(m + start, colon - start);
	v = colon + 1;
	if (v < i && m[v] == ' ' && !(ms->fprot & SMFIP_HDR_LEADSPC))
		v++;
	val = malloc(i - v + 1);
	if (*name == NULL || val == NULL)
		abort();
	k = 0;
	for (size_t j = v; j < i; j++)
		if (m[j] != '\r')
			val[k++] = m[j];
	val[k] = '\0';
	*value = val;
	return true;
}

/* Drives the end-of-message sequence until a reply is awaited. */
static void milter_eom_pump(struct milter_sess *ms)
{
	for (;;) {
		switch (ms->phase) {
		case EP_HEADERS: {
			char *name, *value;
			int rc;

			if ((ms->fprot & SMFIP_NOHDRS) || !milter_next_header(ms, &name, &value)) {
				ms->phase = EP_EOH;
				continue;
			}
			rc = milter_put_header(&ms->out, name, value);
			free(name);
			free(value);
			if (rc < 0)
				return milter_fail(ms, "milter-nomem", "out of memory");
			ms->step_cmd = SMFIC_HEADER;
			if (milter_wants_reply(ms, SMFIC_HEADER))
				goto await;
			ms->nr_sent = true;
			continue;
		}
		case EP_EOH:
			ms->phase = EP_BODY;
			ms->off = ms->hlen;
			if (ms->fprot & SMFIP_NOEOH)
				continue;
			if (milter_put_stage_macros(ms, SMFIC_EOH) < 0 || milter_put_simple(&ms->out, SMFIC_EOH) < 0)
				return milter_fail(ms, "milter-nomem", "out of memory");
			ms->step_cmd = SMFIC_EOH;
			if (milter_wants_reply(ms, SMFIC_EOH))
				goto await;
			ms->nr_sent = true;
			continue;
		case EP_BODY: {
			size_t n;
			unsigned char *hdr;

			if ((ms->fprot & SMFIP_NOBODY) || ms->skip_body || ms->off >= ms->mlen) {
				ms->phase = EP_EOB;
				continue;
			}
			n = ms->mlen - ms->off;
			if (n > MILTER_BODY_CHUNK)
				n = MILTER_BODY_CHUNK;
			/* The frame header is ours; the chunk is borrowed from the message, which stays
			 * put until this call completes (closing the connection drops the write). */
			if (milter_flush(ms) < 0 || (hdr = malloc(5)) == NULL)
				return milter_fail(ms, "milter-write", "write failed");
			hdr[0] = (unsigned char)((n + 1) >> 24);
			hdr[1] = (unsigned char)((n + 1) >> 16);
			hdr[2] = (unsigned char)((n + 1) >> 8);
			hdr[3] = (unsigned char)(n + 1);
			hdr[4] = SMFIC_BODY;
			if (pconn_write(ms->conn, hdr, 5, hdr) < 0 ||
			    pconn_write(ms->conn, ms->msg + ms->off, n, NULL) < 0)
				return milter_fail(ms, "milter-write", "write failed");
			ms->off += n;
			ms->step_cmd = SMFIC_BODY;
			if (milter_wants_reply(ms, SMFIC_BODY))
				goto await_flushed;
			ms->nr_sent = true;
			continue;
		}
		case EP_EOB:
			ms->phase = EP_SENT;
			if (milter_put_stage_macros(ms, SMFIC_BODYEOB) < 0 ||
			    milter_put_simple(&ms->out, SMFIC_BODYEOB) < 0 || milter_flush(ms) < 0)
				return milter_fail(ms, "milter-write", "write failed");
			ms->wait = W_EOB;
			return;
		default:
			return;
		}
	}
await:
	if (milter_flush(ms) < 0)
		return milter_fail(ms, "milter-write", "write failed");
await_flushed:
	ms->wait = W_EOM_STEP;
}

static char *milter_strip_brackets(const char *a)
{
	size_t l = strlen(a);

	if (l >= 2 && a[0] == '<' && a[l - 1] == '>')
		return strndup(a + 1, l - 2);
	return strdup(a);
}

/* The largest message the host takes (limits.max_message_size); no bound from an older host. */
static uint64_t milter_max_size(struct milter_sess *ms)
{
	const char *v = ms->call ? ms->mi->host->get(ms->call, MXGATE_MAX_SIZE) : NULL;

	return v && *v ? strtoull(v, NULL, 10) : UINT64_MAX;
}

/* The most recipients a filter may add (limits.max_recipients); no bound from an older host. */
static uint64_t milter_max_rcpts(struct milter_sess *ms)
{
	const char *v = ms->call ? ms->mi->host->get(ms->call, MXGATE_MAX_RCPTS) : NULL;

	return v && *v ? strtoull(v, NULL, 10) : UINT64_MAX / 2;
}

/* The octets of the new body held so far. */
static size_t milter_newbody_len(const struct milter_sess *ms)
{
	return ms->newbody ? msgbuf_len(ms->newbody) : 0;
}

/* The size of the message as the filter's edits so far leave it (headers as shown, the
 * bytes its header edits add, the replaced or the original body). */
static uint64_t milter_grown_size(const struct milter_sess *ms)
{
	return (uint64_t)ms->hlen + ms->hdr_added + (ms->has_newbody ? milter_newbody_len(ms) : ms->mlen - ms->hlen);
}

/* Forgets the header edits collected (they would pass the size limit). */
static void milter_mods_drop_headers(struct milter_sess *ms)
{
	size_t k = 0;

	for (size_t i = 0; i < ms->nmods; i++) {
		struct milter_mod *m = &ms->mods[i];

		if (m->cmd == SMFIR_ADDHEADER || m->cmd == SMFIR_INSHEADER || m->cmd == SMFIR_CHGHEADER) {
			free(m->a);
			free(m->b);
		} else {
			ms->mods[k++] = *m;
		}
	}
	ms->nmods = k;
	ms->hdr_added = 0;
}

/* A header index from the wire (32 bits, unsigned) as the host's int: one past INT_MAX
 * still means "past the end", never a negative index (the top, the first occurrence). */
static int milter_index(uint32_t index)
{
	return index > INT_MAX ? INT_MAX : (int)index;
}

/* Applies the collected modifications through the host. */
static int milter_apply_mods(struct milter_sess *ms)
{
	const struct mxgate_host *h = ms->mi->host;
	struct mxgate_call *c = ms->call;

	for (size_t i = 0; i < ms->nmods; i++) {
		struct milter_mod *m = &ms->mods[i];
		char *addr;

		switch (m->cmd) {
		case SMFIR_ADDHEADER:
			h->add_header(c, m->a, m->b);
			break;
		case SMFIR_INSHEADER:
			/* Sendmail's index, as Postfix's milter client and cleanup take it: it counts
			 * the header block as delivered, our own Received (never shown to the milter)
			 * included: 0 goes above that Received (a DKIM-Signature from Debian's opendkim
			 * heads the message), 1 just below it. */
			h->insert_header_delivered(c, milter_index(m->index), m->a, m->b);
			break;
		case SMFIR_CHGHEADER:
			h->change_header(c, m->a, milter_index(m->index), m->b && *m->b ? m->b : NULL);
			break;
		case SMFIR_ADDRCPT:
		case SMFIR_ADDRCPT_PAR:
			addr = milter_strip_brackets(m->a);
			/* ESMTP arguments of an added recipient are not passed on either (a backend
			 * refusing one it does not know, 555, would tempfail the whole message every
			 * time): Postfix's cleanup ignores them with a warning too. */
			if (m->b && *m->b) {
				char av[140];

				h->log(c, 2, "event=milter_addrcpt_args_ignored rcpt=%s args=%s", addr,
				    log_val(av, sizeof(av), m->b));
			}
			h->add_rcpt(c, addr, NULL);
			free(addr);
			break;
		case SMFIR_DELRCPT:
			addr = milter_strip_brackets(m->a);
			h->del_rcpt(c, addr);
			free(addr);
			break;
		case SMFIR_CHGFROM:
			addr = milter_strip_brackets(m->a);
			/* ESMTP arguments of a new sender are not applied (the client's SIZE, BODY,
			 * RET, ENVID stay): Postfix's cleanup ignores them with a warning too. */
			if (m->b && *m->b) {
				char av[140];

				h->log(c, 2, "event=milter_chgfrom_args_ignored args=%s", log_val(av, sizeof(av), m->b));
			}
			h->set_sender(c, addr);
			free(addr);
			break;
		default:
			break;
		}
	}
	if (ms->has_newbody) {
		/* handed over, not copied (an empty new body: a buffer of nothing) */
		struct msgbuf *nb = ms->newbody ? ms->newbody : plugins_body_new(c);

		ms->newbody = NULL;
		if (plugins_replace_body_buf(c, nb) < 0)
			return -1;
	}
	if (ms->quarantine)
		h->set_quarantine_reason(c, ms->quarantine);
	return 0;
}

static int milter_add_mod(struct milter_sess *ms, const struct milter_reply *r)
{
	struct milter_mod *nm;

	if (r->cmd == SMFIR_CHGFROM) {
		/* Only the last new sender counts: one kept, however many the filter sends. */
		for (size_t i = 0; i < ms->nmods; i++) {
			char *a, *b;

			if (ms->mods[i].cmd != SMFIR_CHGFROM)
				continue;
			a = r->name ? strdup(r->name) : NULL;
			b = r->value ? strdup(r->value) : NULL;
			if ((r->name && a == NULL) || (r->value && b == NULL)) {
				free(a);
				free(b);
				return -1;
			}
			free(ms->mods[i].a);
			free(ms->mods[i].b);
			ms->mods[i].a = a;
			ms->mods[i].b = b;
			return 0;
		}
	}
	nm = realloc(ms->mods, (ms->nmods + 1) * sizeof(*ms->mods));

	if (nm == NULL)
		return -1;
	ms->mods = nm;
	nm = &ms->mods[ms->nmods++];
	nm->cmd = r->cmd;
	nm->index = r->index;
	nm->a = r->name ? strdup(r->name) : NULL;
	nm->b = r->value ? strdup(r->value) : NULL;
	return 0;
}

/* The transaction is over for the filter (end of message or a final verdict). */
static void milter_txn_end(struct milter_sess *ms)
{
	ms->in_txn = false;
	ms->txn_done = false;
	ms->skip_rcpt = false;
	ms->msg = NULL;
	milter_mods_clear(ms);
}

/* True when text mentions a virus (case-insensitive "virus" or "infected"). */
static bool milter_text_says_virus(const char *text)
{
	return text && (strcasestr(text, "virus") || strcasestr(text, "infected"));
}

/* Milters have no verdict for "virus": clamav-milter and others say it in their reply
 * text (RejectMsg), the quarantine reason, or an X-Virus-Status: Infected header. */
static void milter_note_virus(struct milter_sess *ms, const char *text)
{
	bool virus = milter_text_says_virus(text) || milter_text_says_virus(ms->quarantine);

	for (size_t i = 0; i < ms->nmods && !virus; i++) {
		const struct milter_mod *m = &ms->mods[i];

		if ((m->cmd == SMFIR_ADDHEADER || m->cmd == SMFIR_INSHEADER || m->cmd == SMFIR_CHGHEADER) &&
		    m->a && strcasecmp(m->a, "X-Virus-Status") == 0 && m->b &&
		    strncasecmp(m->b + strspn(m->b, " \t"), "Infected", 8) == 0)
			virus = true;
	}
	if (virus && ms->call)
		ms->mi->host->set_flags(ms->call, MXGATE_FLAG_VIRUS);
}

/* The text of an SMFIR_REPLYCODE (after the first "NNN " or "NNN-") into out, '%%' as
 * '%': its lines joined by CRLF without their own "NNN " or "NNN-" (the session puts the
 * reply's code before each, as Postfix passes a multi-line smfi_setmlreply on, and an
 * enhanced code opening a line then gets the reply's class: a later "450 4.7.1" line of a
 * 550 reply goes out as "550 5.7.1", as the first line of another class would be
 * malformed), cut at a line boundary when it does not fit (the first line alone is cut at
 * the size). A bare CR or LF, and every other octet that is no text, is left to the host's
 * censor (plugins.c: '?', as in a backend's reply). */
static void milter_reply_lines(const char *t, char *out, size_t size)
{
	size_t o = 0, keep = 0;

	for (; *t; t++) {
		/* libmilter has '%' written '%%' (Sendmail formats the text): one '%' for the
		 * client, and a single one dropped, as Postfix's milter client does. */
		if (t[0] == '%' && *++t == '\0')
			break;
		if (t[0] == '\r' && t[1] == '\n') {
			keep = o;           /* a complete line ends here */
			if (t[2] == '\0' || o + 2 >= size)
				break;
			out[o++] = '\r';
			out[o++] = '\n';
			t++;
			if (t[1] >= '1' && t[1] <= '5' && isdigit((unsigned char)t[2]) && isdigit((unsigned char)t[3]) &&
			    (t[4] == ' ' || t[4] == '-'))
				t += 4;	/* the line's own code */
			continue;
		}
		if (o + 1 >= size) {
			o = keep ? keep : o;   /* drop the partial line */
			break;
		}
		out[o++] = *t;
	}
	out[o] = '\0';
}

/* Handles a final verdict reply (accept/continue/reject/tempfail/discard/replycode) for
 * the current stage. */
static void milter_verdict(struct milter_sess *ms, const struct milter_reply *r)
{
	bool eom = ms->wait == W_EOB || ms->wait == W_EOM_STEP;
	char text[400];
	int code = 0;

	switch (r->cmd) {
	case SMFIR_CONTINUE:
	case SMFIR_ACCEPT:
		if (r->cmd == SMFIR_ACCEPT) {
			if (ms->stage_cmd == SMFIC_CONNECT || ms->stage_cmd == SMFIC_HELO)
				ms->state = MS_ACCEPTED;
			else if (!eom)
				ms->txn_done = true;
		}
		if (eom) {
			enum mxgate_action a = MXGATE_CONTINUE;

			if (ms->wait == W_EOB)
				milter_note_virus(ms, NULL);
			if (ms->wait == W_EOB && (ms->body_too_big || ms->headers_too_big)) {
				const char *why = ms->body_too_big ? "milter-body-too-big" : "milter-headers-too-big";

				/* As Postfix's cleanup refuses a queue file past message_size_limit. */
				ms->mi->host->log(ms->call, 2, "event=milter_%s_too_big max=%llu",
				    ms->body_too_big ? "body" : "headers", (unsigned long long)milter_max_size(ms));
				milter_txn_end(ms);
				return milter_finish(ms, MXGATE_REJECT, 552, "5.3.4 Error: message file too big", why);
			}
			if (ms->wait == W_EOB && milter_apply_mods(ms) < 0) {
				milter_txn_end(ms);
				return milter_finish(ms, MXGATE_ERROR, 0, NULL, "body replacement failed");
			}
			if (ms->quarantine)
				a = MXGATE_QUARANTINE;
			milter_txn_end(ms);
			return milter_finish(ms, a, 0, NULL, a == MXGATE_QUARANTINE ? "milter-quarantine" : NULL);
		}
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	case SMFIR_DISCARD:
		/* There is no message to discard yet: Postfix's milter client calls it an error
		 * ("DISCARD action is not allowed for connect or helo") and applies
		 * milter_default_action; so does on_error here. */
		if (ms->stage_cmd == SMFIC_CONNECT || ms->stage_cmd == SMFIC_HELO)
			return milter_fail(ms, "milter-protocol", "discard at connect or helo (not allowed)");
		if (eom)
			milter_txn_end(ms);
		else
			ms->txn_done = true;
		return milter_finish(ms, MXGATE_DISCARD, 0, NULL, "milter-discard");
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_REPLYCODE: {
		enum mxgate_action a;

		text[0] = '\0';
		if (r->cmd == SMFIR_REPLYCODE) {
			code = r->code;
			milter_reply_lines(r->text, text, sizeof(text));
			a = code >= 500 ? MXGATE_REJECT : MXGATE_TEMPFAIL;
		} else {
			/* Postfix's milter client's words for a verdict without text, at every stage */
			a = r->cmd == SMFIR_REJECT ? MXGATE_REJECT : MXGATE_TEMPFAIL;
			snprintf(text, sizeof(text), "%s", a == MXGATE_REJECT ? "5.7.1 Command rejected" :
			    "4.7.1 Service unavailable - try again later");
		}
		milter_note_virus(ms, text);
		if (eom)
			milter_txn_end(ms);
		return milter_finish(ms, a, code, text[0] ? text : NULL, "milter");
	}
	default:
		return milter_fail(ms, "milter-protocol", "unexpected reply");
	}
}

static bool milter_reply_ends_wait(char cmd);

/* One decoded frame. Returns false when processing must stop (ms may be gone). */
static bool milter_on_frame(struct milter_sess *ms, char cmd, const unsigned char *p, size_t len)
{
	struct milter_reply r;
	const char *why, *act;
	uint32_t need;

	if (ms->wait == W_NONE || ms->call == NULL) {
		milter_fail(ms, "milter-protocol", "reply while none was expected");
		return false;
	}
	if (milter_reply_parse(cmd, p, len, &r) < 0) {
		milter_fail(ms, "milter-protocol", "malformed reply");
		return false;
	}
	/* A frame restarts the call's timeout when it ends the wait, or at end of message
	 * (its steps, SMFIR_PROGRESS, the modifications: limits.filter_deadline bounds them
	 * together). Before end of message a frame that ends nothing (SMFIR_PROGRESS, which
	 * libmilter sends only from xxfi_eom) restarts nothing: a filter sending one every
	 * (timeout - 1) s held the session at its connect, HELO, MAIL or RCPT for ever. */
	if (milter_reply_ends_wait(cmd) || ms->wait == W_EOM_STEP || ms->wait == W_EOB)
		ms->mi->host->progress(ms->call);
	if (ms->wait == W_OPTNEG) {
		if (milter_optneg_check(&r, &why) < 0) {
			milter_fail(ms, "milter-protocol", why);
			return false;
		}
		/* Honour what the filter asked for, within what we offered, at any version:
		 * a version 4 filter's SMFIP_NR_HDR was dropped and its headers waited for
		 * until the timeout, and a version 2 filter was sent DATA, which it does not
		 * know. */
		ms->fprot = milter_proto_negotiated(r.version, r.protocol);
		ms->facts = r.actions;
		if (r.version >= 6 && milter_symlists_take(ms, r.data, r.len) < 0) {
			milter_fail(ms, "milter-protocol", "malformed macro list");
			return false;
		}
		ms->state = MS_READY;
		ms->wait = W_NONE;
		milter_send_stage(ms, SMFIC_CONNECT);
		return false;
	}
	need = milter_action_needed(cmd, &act);
	if (need != 0 && !(ms->facts & need)) {
		/* A modification the filter did not ask for in its option negotiation: libmilter
		 * refuses to send one (smfi_* return MI_FAILURE), so only a broken filter does.
		 * Sendmail applies most with a warning and tempfails a body replacement; mxgate
		 * applies none of its edits: the filter's error (on_error), the connection
		 * dropped as for any other protocol violation. */
		char w[80];

		snprintf(w, sizeof(w), "modification '%c' without %s negotiated", cmd, act);
		milter_fail(ms, "milter-unnegotiated", w);
		return false;
	}
	switch (cmd) {
	case SMFIR_PROGRESS:
		return true;
	case SMFIR_SKIP:
		if (ms->wait == W_EOM_STEP && ms->step_cmd == SMFIC_BODY) {
			ms->skip_body = true;
			ms->wait = W_NONE;
			milter_eom_pump(ms);
			return false;
		}
		/* The reply to the end of message is a verdict: a SKIP there would finish the
		 * message with the modifications and the quarantine collected dropped; Sendmail
		 * calls it a bogus response (the filter's error), and so does this. */
		if (ms->wait == W_EOB) {
			milter_fail(ms, "milter-protocol", "skip at end of message");
			return false;
		}
		/* "Skip further events of this type", as Postfix's milter8 takes it anywhere: at
		 * a header the rest of the headers are not sent (end of header is next), at a
		 * recipient the transaction's later recipients are not; elsewhere (one event of
		 * its type per transaction, end of header too: the body is still sent) it is a
		 * continue. */
		if (ms->wait == W_EOM_STEP && ms->step_cmd == SMFIC_HEADER)
			ms->phase = EP_EOH;
		if (ms->wait == W_STAGE && ms->stage_cmd == SMFIC_RCPT)
			ms->skip_rcpt = true;
		if (ms->wait == W_EOM_STEP) {
			ms->wait = W_NONE;
			milter_eom_pump(ms);
			return false;
		}
		milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
		return false;
	case SMFIR_CONTINUE:
		if (ms->wait == W_EOM_STEP) {
			ms->wait = W_NONE;
			milter_eom_pump(ms);
			return false;
		}
		milter_verdict(ms, &r);
		return false;
	case SMFIR_ADDHEADER: case SMFIR_INSHEADER: case SMFIR_CHGHEADER: case SMFIR_ADDRCPT:
	case SMFIR_ADDRCPT_PAR: case SMFIR_DELRCPT: case SMFIR_CHGFROM:
		if (ms->wait != W_EOB) {
			milter_fail(ms, "milter-protocol", "modification before end of message");
			return false;
		}
		if (r.cmd == SMFIR_ADDHEADER || r.cmd == SMFIR_INSHEADER || r.cmd == SMFIR_CHGHEADER) {
			/* Header edits grow the message too: past limits.max_message_size they are not
			 * kept (a filter could send any amount) and the message is refused at the
			 * verdict, as for a replaced body. */
			size_t add = (r.name ? strlen(r.name) : 0) + (r.value ? strlen(r.value) : 0) + 4;

			if (ms->headers_too_big)
				return true;
			if (milter_grown_size(ms) + add > milter_max_size(ms)) {
				ms->headers_too_big = true;
				milter_mods_drop_headers(ms);
				return true;
			}
			ms->hdr_added += add;
		}
		if (r.cmd == SMFIR_DELRCPT && ++ms->rcpts_deleted > 2 * milter_max_rcpts(ms)) {
			/* More than the client's and the filter's own recipients together can be:
			 * a broken filter, not one more list to hold until the verdict. */
			milter_fail(ms, "milter-limit", "too many recipient deletions");
			return false;
		}
		if (r.cmd == SMFIR_ADDRCPT || r.cmd == SMFIR_ADDRCPT_PAR) {
			/* Added recipients are bounded as the client's are (limits.max_recipients),
			 * by the host for every plugin (hook_env_add_rcpt; past it the message is
			 * tempfailed at the verdict). Held here until the verdict: one past the
			 * bound is kept for the host to see, the rest not (a filter could send any
			 * number). */
			if (++ms->rcpts_added - 1 > milter_max_rcpts(ms))
				return true;
		}
		if (milter_add_mod(ms, &r) < 0) {
			milter_fail(ms, "milter-nomem", "out of memory");
			return false;
		}
		return true;
	case SMFIR_REPLBODY:
		if (ms->wait != W_EOB) {
			milter_fail(ms, "milter-protocol", "body replacement before end of message");
			return false;
		}
		ms->has_newbody = true;
		if (ms->body_too_big)
			return true;   /* refused already: read and drop the rest */
		if (ms->hlen + ms->hdr_added + milter_newbody_len(ms) + r.len > milter_max_size(ms)) {
			/* Not kept (a filter could send any amount): refused at the verdict. */
			ms->body_too_big = true;
			msgbuf_free(ms->newbody);
			ms->newbody = NULL;
			return true;
		}
		/* straight into a message buffer: counted in limits.memory_budget, spooled past
		 * it or past limits.memory_threshold, and handed to the host as it is */
		if (ms->newbody == NULL && (ms->newbody = plugins_body_new(ms->call)) == NULL) {
			milter_fail(ms, "milter-nomem", "out of memory");
			return false;
		}
		if (msgbuf_append(ms->newbody, r.data, r.len) < 0) {
			milter_fail(ms, "milter-nomem", msgbuf_error(ms->newbody) ?
			    "the new body could not be spooled" : "out of memory");
			return false;
		}
		return true;
	case SMFIR_QUARANTINE:
		if (ms->wait != W_EOB) {
			milter_fail(ms, "milter-protocol", "quarantine before end of message");
			return false;
		}
		free(ms->quarantine);
		ms->quarantine = strdup(r.name);
		return true;
	case SMFIR_SETSYMLIST:
		return true;
	case SMFIR_CONN_FAIL:
	case SMFIR_SHUTDOWN: {
		/* The reason says which, as every other milter failure says why (it was a bare
		 * "milter", the word of a verdict the filter gave). */
		const char *why = cmd == SMFIR_SHUTDOWN ? "milter-shutdown" : "milter-conn-fail";

		ms->state = MS_FAILED;
		snprintf(ms->failed, sizeof(ms->failed), "%s", why);
		pconn_close(ms->conn);
		ms->conn = NULL;
		milter_finish(ms, MXGATE_TEMPFAIL, 421, "4.7.0 Content filter closing connection", why);
		return false;
	}
	default:
		milter_verdict(ms, &r);
		return false;
	}
}

/* Whether a reply ends the wait for the command it answers (the others, progress and
 * the modifications, come before that reply). */
static bool milter_reply_ends_wait(char cmd)
{
	switch (cmd) {
	case SMFIR_PROGRESS: case SMFIR_ADDHEADER: case SMFIR_INSHEADER: case SMFIR_CHGHEADER:
	case SMFIR_ADDRCPT: case SMFIR_ADDRCPT_PAR: case SMFIR_DELRCPT: case SMFIR_CHGFROM:
	case SMFIR_REPLBODY: case SMFIR_QUARANTINE: case SMFIR_SETSYMLIST:
		return false;
	default:
		return true;
	}
}

/* The filter's bytes data[0..len), frame by frame, until a reply ends the wait (a verdict
 * was given or the connection dropped: ms may be gone then) or the bytes end.
 *
 * A filter that answers a command it negotiated no reply for (SMFIP_NR_*) sends that
 * reply before the awaited one; taken in order it would be the verdict of the awaited
 * command and every later reply one step off (Postfix and Sendmail read it so; libmilter
 * never sends one). What can be told apart is not taken as a verdict: bytes after the
 * reply that ends the wait, in the same read, were sent before our next command, so
 * either that reply or they answer nothing. After commands sent without a reply that is
 * the filter's error (on_error); after a verdict at end of message awaited alone, the
 * verdict stands and the connection is dropped once it is applied (the rest never answers
 * a later command). A reply arriving while none is awaited fails in milter_on_frame.
 * A stray reply that arrives alone after our next command was sent cannot be told from
 * that command's (docs/plugins.md). */
static void milter_read_frames(struct milter_sess *ms, const char *data, size_t len)
{
	while (len > 0) {
		size_t used = 0;
		char cmd;
		const unsigned char *payload;
		size_t plen;
		int rc = milter_parser_feed(&ms->parser, data, len, &used, &cmd, &payload, &plen);

		data += used;
		len -= used;
		if (rc < 0)
			return milter_fail(ms, "milter-protocol", ms->parser.err ? ms->parser.err : "bad frame");
		if (rc == 0)
			return;
		if (ms->wait != W_NONE && ms->call && milter_reply_ends_wait(cmd)) {
			if (len > 0 && (ms->nr_sent || ms->wait != W_EOB))
				return milter_fail(ms, "milter-protocol", ms->nr_sent ?
				    "reply to a command sent without one expected (SMFIP_NR_*)" :
				    "reply while none was expected");
			if (len > 0)
				ms->out_of_step = true;
			ms->nr_sent = false;
		}
		if (!milter_on_frame(ms, cmd, payload, plen))
			return;
	}
}

static void milter_event_cb(struct pconn *conn, enum pconn_event ev, const char *data, size_t len,
    int err, void *arg)
{
	struct milter_sess *ms = arg;

	switch (ev) {
	case PCONN_CONNECTED:
		ms->state = MS_NEGOTIATING;
		if (milter_put_optneg(&ms->out, SMFI_PROT_VERSION, milter_actions_offer(),
		    milter_proto_offer()) < 0 || milter_flush(ms) < 0)
			return milter_fail(ms, "milter-write", "write failed");
		ms->wait = W_OPTNEG;
		return;
	case PCONN_DATA:
		return milter_read_frames(ms, data, len);
	case PCONN_EOF:
		return milter_fail(ms, "milter-closed", "filter closed the connection");
	case PCONN_ERROR:
	default:
		return milter_fail_io(ms, err);
	}
}

/* See milter.h (fuzz_milter_mods). */
void milter_eob_fuzz(const struct mxgate_host *host, struct mxgate_call *call, const void *frames,
    size_t len, uint32_t max_frame, uint32_t actions)
{
	struct milter_inst mi = { .host = host, .max_frame = max_frame };
	struct milter_sess *ms = calloc(1, sizeof(*ms));

	if (ms == NULL)
		return;
	ms->mi = &mi;
	ms->call = call;
	ms->state = MS_READY;
	ms->facts = actions;
	ms->stage_cmd = SMFIC_BODYEOB;
	ms->in_txn = true;
	ms->phase = EP_SENT;
	ms->wait = W_EOB;
	milter_parser_init(&ms->parser, max_frame);
	milter_read_frames(ms, frames, len);   /* host->done frees nothing: ms stays */
	if (ms->call)   /* the stream ended without a verdict: the filter's continue */
		(void)milter_on_frame(ms, SMFIR_CONTINUE, NULL, 0);
	milter_sess_free(ms);
}

/* ------------------------------------------------------------------- hooks */

/* options: a struct milter_options (the typed `options:`). */
static int milter_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    const void *options, void **instance, char *err, size_t errlen)
{
	const struct milter_options *o = options;
	struct milter_inst *mi;
	const char *why;

	mi = calloc(1, sizeof(*mi));
	if (mi == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	mi->host = host;
	mi->loop = args->loop;
	mi->max_frame = (uint32_t)o->max_frame;
	snprintf(mi->daemon_name, sizeof(mi->daemon_name), "%s", o->daemon_name ? o->daemon_name : "mxgate");
	if (args->address == NULL) {
		snprintf(err, errlen, "address: required (inet:HOST:PORT or unix:/path)");
		goto fail;
	}
	if (pconn_addr_parse(args->address, &mi->addr, &why) < 0) {
		snprintf(err, errlen, "address: %s", why);
		goto fail;
	}
	mi->addr.connect_ms = args->connect_timeout_ms;
	*instance = mi;
	return 0;
fail:
	free(mi);
	return -1;
}

static void milter_fini(void *instance)
{
	free(instance);
}

static struct milter_sess *milter_sess_of(struct milter_inst *mi, struct mxgate_call *c)
{
	return *mi->host->session_slot(c);
}

static void milter_on_connect(void *instance, struct mxgate_call *c)
{
	struct milter_inst *mi = instance;
	void **slot = mi->host->session_slot(c);
	struct milter_sess *ms = *slot;

	if (ms == NULL) {
		ms = calloc(1, sizeof(*ms));
		if (ms == NULL)
			return mi->host->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
		ms->mi = mi;
		milter_parser_init(&ms->parser, mi->max_frame);
		*slot = ms;
	}
	ms->call = c;
	ms->stage_cmd = SMFIC_CONNECT;
	ms->state = MS_CONNECTING;
	ms->conn = pconn_new(mi->host->loop(c), &mi->addr, milter_event_cb, ms);
	if (ms->conn == NULL)
		return milter_fail(ms, "milter-unreachable", "cannot connect");
}

/* Logs the detail of a failure seen between calls (milter_fail with no call) on c. */
static void milter_log_unlogged(struct milter_sess *ms, struct mxgate_call *c)
{
	if (ms == NULL || ms->unlogged[0] == '\0')
		return;
	ms->mi->host->log(c, 2, "event=milter_error error=\"%s\"", ms->unlogged);
	ms->unlogged[0] = '\0';
}

/* Common entry of the envelope stages. Returns the session when the stage must be sent,
 * NULL when the call was already completed. */
static struct milter_sess *milter_stage_begin(struct milter_inst *mi, struct mxgate_call *c)
{
	struct milter_sess *ms = milter_sess_of(mi, c);

	milter_log_unlogged(ms, c);
	if (ms == NULL || ms->state == MS_FAILED || ms->conn == NULL) {
		/* the reason it failed, or one word when it was given up (a timeout) */
		mi->host->done(c, MXGATE_ERROR, 0, NULL, ms && ms->state == MS_FAILED && ms->failed[0] ?
		    ms->failed : "milter-unavailable");
		return NULL;
	}
	ms->call = c;
	if (ms->state == MS_ACCEPTED) {
		milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
		return NULL;
	}
	return ms;
}

static void milter_on_helo(void *instance, struct mxgate_call *c)
{
	struct milter_sess *ms = milter_sess_of(instance, c);

	if (ms)
		ms->helo_seen = true;
	ms = milter_stage_begin(instance, c);
	if (ms)
		milter_send_stage(ms, SMFIC_HELO);
}

static void milter_start_mail(struct milter_sess *ms)
{
	if (ms->in_txn) {   /* the last transaction ended without end of data (RSET, rejects) */
		if (milter_put_simple(&ms->out, SMFIC_ABORT) < 0)
			return milter_fail(ms, "milter-nomem", "out of memory");
	}
	milter_txn_end(ms);
	ms->in_txn = true;
	milter_send_stage(ms, SMFIC_MAIL);
}

static void milter_replay_next(struct milter_sess *ms)
{
	if (ms->state == MS_ACCEPTED) {   /* the filter accepted the whole connection */
		ms->replay = RP_NONE;
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	if (ms->replay == RP_CONNECT && ms->helo_seen) {
		ms->replay = RP_HELO;
		return milter_send_stage(ms, SMFIC_HELO);
	}
	ms->replay = RP_NONE;
	milter_start_mail(ms);
}

/* A new connection for the transaction c begins, with the session's connect and helo
 * replayed first (the MAIL call is answered after them). why: milter_reconnect's reason. */
static void milter_reconnect(struct milter_inst *mi, struct milter_sess *ms, struct mxgate_call *c,
    const char *why)
{
	milter_log_unlogged(ms, c);
	mi->host->log(c, 1, "event=milter_reconnect reason=%s", why);
	milter_parser_free(&ms->parser);
	milter_parser_init(&ms->parser, mi->max_frame);
	milter_buf_clear(&ms->out);
	milter_txn_end(ms);
	ms->nr_sent = false;
	ms->call = c;
	ms->replay = RP_CONNECT;
	ms->stage_cmd = SMFIC_CONNECT;
	ms->state = MS_CONNECTING;
	ms->conn = pconn_new(mi->host->loop(c), &mi->addr, milter_event_cb, ms);
	if (ms->conn == NULL)
		return milter_fail(ms, "milter-unreachable", "cannot connect");
}

static void milter_on_mail(void *instance, struct mxgate_call *c)
{
	struct milter_inst *mi = instance;
	struct milter_sess *ms = milter_sess_of(mi, c);

	if (ms && ms->state == MS_FAILED && ms->conn == NULL && ms->call == NULL) {
		/* The filter failed earlier in this session: a new transaction gets a new
		 * connection (to the name's addresses as now resolved). */
		return milter_reconnect(mi, ms, c, "failed");
	}
	if (ms && ms->state == MS_READY && ms->conn && ms->call == NULL && ms->wait == W_NONE &&
	    pconn_address_left(ms->conn) && pconn_write_queue(ms->conn) == 0) {
		/* The milter's name moved (backendres.h) while this session kept its connection:
		 * the old address may be going away (a pod rescheduled) and would fail this
		 * transaction then (on_error). A polite end there (ABORT an open transaction,
		 * QUIT), and this transaction starts on a connection to the new address. */
		if (ms->in_txn)
			milter_put_simple(&ms->out, SMFIC_ABORT);
		milter_put_simple(&ms->out, SMFIC_QUIT);
		milter_flush(ms);
		pconn_finish(ms->conn);
		ms->conn = NULL;
		return milter_reconnect(mi, ms, c, "address_left");
	}
	ms = milter_stage_begin(mi, c);
	if (ms == NULL)
		return;
	milter_start_mail(ms);
}

static void milter_on_rcpt(void *instance, struct mxgate_call *c)
{
	struct milter_sess *ms = milter_stage_begin(instance, c);

	if (ms == NULL)
		return;
	if (ms->txn_done || ms->skip_rcpt)
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	milter_send_stage(ms, SMFIC_RCPT);
}

static void milter_on_data(void *instance, struct mxgate_call *c)
{
	struct milter_sess *ms = milter_stage_begin(instance, c);

	if (ms == NULL)
		return;
	if (ms->txn_done)
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	milter_send_stage(ms, SMFIC_DATA);
}

static void milter_on_eom(void *instance, struct mxgate_call *c)
{
	struct milter_inst *mi = instance;
	struct milter_sess *ms = milter_stage_begin(mi, c);

	if (ms == NULL)
		return;
	if (ms->txn_done) {
		milter_txn_end(ms);
		return milter_finish(ms, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	milter_mods_clear(ms);
	ms->msg = mi->host->message(c, &ms->mlen);
	if (ms->msg == NULL)
		return milter_fail(ms, "milter-internal", "no message");
	ms->hlen = mi->host->header_len(c);
	if (ms->hlen > ms->mlen)
		ms->hlen = ms->mlen;
	ms->off = 0;
	ms->skip_body = false;
	ms->phase = EP_HEADERS;
	ms->stage_cmd = SMFIC_BODYEOB;
	milter_eom_pump(ms);
}

static void milter_on_close(void *instance, struct mxgate_call *c)
{
	struct milter_inst *mi = instance;
	void **slot = mi->host->session_slot(c);
	struct milter_sess *ms = *slot;

	if (ms == NULL)
		return;
	milter_log_unlogged(ms, c);
	*slot = NULL;
	if (ms->conn && ms->state != MS_FAILED && ms->call == NULL &&
	    pconn_write_queue(ms->conn) == 0) {
		/* Polite end: ABORT an open transaction, QUIT, let the bytes drain. */
		if (ms->in_txn)
			milter_put_simple(&ms->out, SMFIC_ABORT);
		milter_put_simple(&ms->out, SMFIC_QUIT);
		milter_flush(ms);
		pconn_finish(ms->conn);
		ms->conn = NULL;
	}
	ms->call = NULL;
	milter_sess_free(ms);
}

/* bypass: every recipient of the transaction is exempt from this milter (at DATA or end
 * of data): it is told SMFIC_ABORT (back to before MAIL) instead of the rest of the
 * message, and nothing it asked is applied. Again at end of data after DATA: nothing. */
static void milter_on_abort(void *instance, struct mxgate_call *c)
{
	struct milter_sess *ms = milter_sess_of(instance, c);

	if (ms == NULL || !ms->in_txn)
		return;
	if (ms->conn && ms->call == NULL && ms->wait == W_NONE && ms->state == MS_READY) {
		if (milter_put_simple(&ms->out, SMFIC_ABORT) < 0)
			return milter_fail(ms, "milter-nomem", "out of memory");
		milter_flush(ms);
	}
	milter_txn_end(ms);
}

static void milter_cancel(void *instance, struct mxgate_call *c)
{
	struct milter_inst *mi = instance;
	struct milter_sess *ms = milter_sess_of(mi, c);

	/* A timeout: the connection is in an unknown state; give it up for this session. */
	if (ms == NULL || ms->call != c)
		return;
	ms->call = NULL;
	ms->wait = W_NONE;
	ms->replay = RP_NONE;
	ms->state = MS_FAILED;
	snprintf(ms->failed, sizeof(ms->failed), "milter-timeout");
	pconn_close(ms->conn);
	ms->conn = NULL;
}

static const struct mxgate_plugin milter_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.name = "milter",
	.fini = milter_fini,
	.on_connect = milter_on_connect,
	.on_helo = milter_on_helo,
	.on_mail = milter_on_mail,
	.on_rcpt = milter_on_rcpt,
	.on_data = milter_on_data,
	.on_eom = milter_on_eom,
	.on_close = milter_on_close,
	.cancel = milter_cancel,
	.desc_size = MXGATE_DESC_SIZE,
	.on_abort = milter_on_abort,
};

const struct plugin_builtin milter_builtin = {
	.desc = &milter_plugin,
	.options = &milter_options_table,
	.init = milter_init,
};
