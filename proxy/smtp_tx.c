/* smtp_tx.c — the backend side of one SMTP transaction: establish with failover, MAIL and
 * RCPT relayed live, replay, delivery (SMTP, LMTP per-recipient results, maildir), the
 * quarantine. See smtp_tx.h. */
#include "smtp_tx.h"
#include "backend.h"
#include "bdat.h"
#include "config.h"
#include "counters.h"
#include "filters/passcache.h"
#include "gwrefuse.h"
#include "hook.h"
#include "ledger.h"
#include "ledger_redis.h"
#include "ledger_store.h"
#include "log.h"
#include "maildir.h"
#include "msgbuf.h"
#include "opstats.h"
#include "ownfields.h"
#include "relay.h"
#include "worker.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define SMTP_TX_UNAVAILABLE "4.4.1 Service temporarily unavailable, try again later"
/* A message buffer of at most this many bytes stays allocated for the session's next message. */
#define SMTP_TX_MSG_KEEP 16384
/* The outgoing header block's buffer (Received + headers) is kept up to this size. */
#define SMTP_TX_PREFIX_KEEP 4096
/* Recipient slots (with their blocks) kept from one transaction to the next. */
#define SMTP_TX_RCPTS_KEEP 4

void smtp_tx_init(struct smtp_tx *tx, struct worker *w, struct pool *pool, struct hook_env *env,
    void (*drained)(void *arg), void *arg)
{
	memset(tx, 0, sizeof(*tx));
	tx->w = w;
	tx->gen = w->gen;
	tx->pool = pool;
	tx->env = env;
	tx->drained = drained;
	tx->drained_arg = arg;
}

/* ---- results ------------------------------------------------------------------------ */

static void smtp_tx_ledger_end(struct smtp_tx *tx, int code);

/* Ends the step in flight with the client's reply. */
/* line_len: smtp_tx_result's (0 when not known). */
static void smtp_tx_finish_n(struct smtp_tx *tx, int code, const char *text, size_t line_len,
    const char *reason, bool client_error, bool reusable)
{
	struct smtp_tx_result r = { code, text, reason, client_error, reusable, line_len };
	smtp_tx_done_fn cb = tx->done;

	if (tx->ledger_nkeys > 0)
		smtp_tx_ledger_end(tx, code);
	tx->done = NULL;
	cb(tx->done_arg, &r);
}

static void smtp_tx_finish(struct smtp_tx *tx, int code, const char *text, const char *reason,
    bool client_error, bool reusable)
{
	smtp_tx_finish_n(tx, code, text, 0, reason, client_error, reusable);
}

/* MAIL's 250 as mxgate gives it, its length known. */
#define SMTP_TX_MAIL_OK "2.1.0 Ok"
static void smtp_tx_finish_mail_ok(struct smtp_tx *tx)
{
	smtp_tx_finish_n(tx, 250, SMTP_TX_MAIL_OK, sizeof(SMTP_TX_MAIL_OK) - 1, NULL, false, true);
}

/* Establishing failed at MAIL or RCPT: the backend's own reply, or 451 when none answered. */
static void smtp_tx_finish_unestablished(struct smtp_tx *tx, const char *stage, int code, const char *text)
{
	/* At RCPT (routes: the backend is chosen there) an outage or the backend's 4xx is met
	 * once per recipient: not the client's errors, or a long recipient list would be cut
	 * off with 421 (limits.max_errors). A MAIL repeated into an outage still counts. */
	bool client_error = strcmp(stage, "rcpt") != 0 || code / 100 == 5;
	const char *url = tx->est_url ? tx->est_url : "?";

	if (code == 0) {
		opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = tx->env->session_id,
		    .client_ip = tx->env->client_ip, .stage = stage, .reason = "no_backend", .tempfail = true, .code = 451,
		    .level = LOG_LVL_WARNING }, "detail=\"%s\" client=%s", text, tx->env->client_ip);
		smtp_tx_finish(tx, 451, SMTP_TX_UNAVAILABLE, "backend", client_error, false);
		return;
	}
	/* The backend's own refusal (of the sender, a recipient replayed, the connection) goes
	 * to the client as it is: its line as the DATA stage's backend line */
	char rv[256];   /* the backend's text: quoted and escaped as any value from outside */
	opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = tx->env->session_id,
	    .client_ip = tx->env->client_ip, .stage = stage, .reason = "backend", .tempfail = code / 100 == 4,
	    .code = code }, "backend=%s code=%d reply=%s client=%s", url, code, log_val(rv, sizeof(rv), text ? text : ""),
	    tx->env->client_ip);
	smtp_tx_finish(tx, code, text, "backend", client_error, false);
}

/* One pending piece of work (an open, a maildir write) ended. True when the owner is gone:
 * the caller stops there and touches tx no more (drained may have freed it). */
static bool smtp_tx_pending_done(struct smtp_tx *tx)
{
	tx->pending--;
	if (!tx->closed)
		return false;
	if (tx->pending == 0 && tx->drained)
		tx->drained(tx->drained_arg);
	return true;
}

/* ---- the envelope ------------------------------------------------------------------- */

static const char *smtp_tx_domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

/* Twelve characters of a 31-letter alphabet (no vowels but digits): x's base-31 digits from
 * the lowest, two at a time (one 64-bit division by 961 per pair, the pair's digits by
 * 32-bit arithmetic: r / 31 == (r * 2115) >> 16 for every r < 961); when x runs out, rand()
 * fills the rest. Unique per worker, second and message count. */
void smtp_tx_queue_id(char q[13], uint64_t now, unsigned worker, uint64_t seq, uint64_t salt)
{
	static const char alphabet[] = "0123456789BCDFGHJKLMNPQRSTVWXYZ";
	/* The salt in the low 59 bits only: x stays below 961^6 there, so the six digit pairs
	 * below encode it without loss (worker's bits above are the one exception, as before) */
	uint64_t x = ((now << 20) ^ (seq * 2654435761ULL) ^ (salt & ((1ULL << 59) - 1))) ^
	    ((uint64_t)worker << 60);

	for (int i = 0; i < 12; i += 2) {
		uint64_t next = x / 961;
		uint32_t r = (uint32_t)(x - next * 961), hi = (r * 2115) >> 16;

		q[i] = alphabet[r - hi * 31];
		q[i + 1] = alphabet[hi];
		x = next != 0 ? next : (uint64_t)rand() + 7;
	}
	q[12] = '\0';
}

/* This process's queue-id salt: random, drawn once (any thread; a lost race draws twice and
 * one value wins for good). */
static uint64_t smtp_tx_queue_salt(void)
{
	static _Atomic uint64_t salt;
	uint64_t v = atomic_load_explicit(&salt, memory_order_relaxed), r = 0, zero = 0;

	if (v != 0)
		return v;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
	r |= 1;	/* never 0: 0 means not drawn yet */
	if (!atomic_compare_exchange_strong(&salt, &zero, r))
		return zero;
	return r;
}

static void smtp_tx_make_queue_id(struct smtp_tx *tx)
{
	smtp_tx_queue_id(tx->env->queue_id, (uint64_t)time(NULL), (unsigned)tx->w->index,
	    ++tx->w->session_seq, smtp_tx_queue_salt());
}

/* Writes a and b into the block *blk of *cap octets (grown as needed; its owner keeps it for
 * the next use) as "a\0b\0"; returns where b starts. Neither may point into *blk. */
static char *smtp_tx_put2(char **blk, size_t *cap, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), need = la + lb + 2;

	if (need > *cap) {
		size_t n = need < 64 ? 64 : need;
		char *p = realloc(*blk, n);

		if (p == NULL)
			abort();
		*blk = p;
		*cap = n;
	}
	memcpy(*blk, a, la + 1);
	memcpy(*blk + la + 1, b, lb + 1);
	return *blk + la + 1;
}

void smtp_tx_begin(struct smtp_tx *tx, const char *from, const char *params)
{
	/* "params\0from\0" in the block the transaction keeps: a new sender (smtp_tx_prepare)
	 * then rewrites only the tail */
	tx->env->mail_from = smtp_tx_put2(&tx->from_blk, &tx->from_cap, params, from);
	tx->env->mail_params = tx->from_blk;
	smtp_tx_make_queue_id(tx);
	if (tx->next_relay && tx->relay == NULL) {
		/* The previous message's connection has this transaction's commands on the way
		 * (smtp_tx_set_next): MAIL, RCPT and DATA take them over if they match. */
		tx->relay = tx->next_relay;
		tx->next_relay = NULL;
		relay_set_owner(tx->relay, &tx->relay);
		tx->mail_sent = false;	/* backend and attempt: once MAIL takes it (est_send_mail) */
	}
}

/* Appends a recipient to the envelope (copied); added: by a filter at end of data, not by
 * the client (see smtp_tx_est_added_refused). env->rcpts has tx->rcpts_cap slots; each
 * holds one block "addr\0params\0" (addr is the block, params points into it, cap its size)
 * that stays with the slot past nrcpts for the next recipient (smtp_tx_env_clear). */
static void smtp_tx_add_rcpt(struct smtp_tx *tx, const char *addr, const char *params, bool added)
{
	struct hook_env *env = tx->env;
	struct rcpt *r;

	if (env->nrcpts == tx->rcpts_cap) {
		size_t ncap = tx->rcpts_cap ? 2 * tx->rcpts_cap : SMTP_TX_RCPTS_KEEP;
		struct rcpt *n = realloc(env->rcpts, ncap * sizeof(*n));

		if (n == NULL)
			abort();
		memset(n + tx->rcpts_cap, 0, (ncap - tx->rcpts_cap) * sizeof(*n));
		env->rcpts = n;
		tx->rcpts_cap = ncap;
	}
	r = &env->rcpts[env->nrcpts];
	r->params = smtp_tx_put2(&r->addr, &r->cap, addr, params);
	r->status = 250;
	r->added = added;
	env->nrcpts++;
}

/* Takes recipient i out of the envelope; its slot (and block) moves past the last one. */
static void smtp_tx_remove_rcpt(struct hook_env *env, size_t i)
{
	struct rcpt gone = env->rcpts[i];

	memmove(&env->rcpts[i], &env->rcpts[i + 1], (env->nrcpts - i - 1) * sizeof(struct rcpt));
	env->nrcpts--;
	env->rcpts[env->nrcpts] = gone;
}

void smtp_tx_set_rcpt(struct smtp_tx *tx, const char *addr, const char *params)
{
	/* in the candidate's block, kept by the transaction */
	tx->rcpt_params = smtp_tx_put2(&tx->rcpt_blk, &tx->rcpt_cap, addr, params);
	tx->rcpt = tx->rcpt_blk;
	tx->env->cur_rcpt = tx->rcpt;
	tx->env->cur_rcpt_params = tx->rcpt_params;
}

void smtp_tx_drop_rcpt(struct smtp_tx *tx)
{
	tx->rcpt = tx->rcpt_params = NULL;	/* the block is kept for the next one */
	tx->env->cur_rcpt = tx->env->cur_rcpt_params = NULL;
}

/* Empties the envelope. keep: the sender's block and the first SMTP_TX_RCPTS_KEEP
 * recipient slots stay for the next transaction; otherwise everything is freed. */
static void smtp_tx_env_clear(struct smtp_tx *tx, bool keep)
{
	struct hook_env *env = tx->env;
	size_t n = keep ? SMTP_TX_RCPTS_KEEP : 0;

	env->mail_from = NULL;
	env->mail_params = NULL;
	env->nrcpts = 0;
	if (tx->rcpts_cap > n) {
		for (size_t i = n; i < tx->rcpts_cap; i++)
			free(env->rcpts[i].addr);
		if (n == 0) {
			free(env->rcpts);
			env->rcpts = NULL;
		} else {
			struct rcpt *r = realloc(env->rcpts, n * sizeof(*r));

			if (r != NULL)
				env->rcpts = r;
		}
		tx->rcpts_cap = n;
	}
	if (!keep) {
		free(tx->from_blk);
		tx->from_blk = NULL;
		tx->from_cap = 0;
		free(tx->rcpt_blk);
		tx->rcpt_blk = NULL;
		tx->rcpt_cap = 0;
	}
}

/* The MAIL command for r's backend, built in b (emptied first; its memory is kept from one
 * message to the next): from, and of params what we advertised (SIZE, BODY, SMTPUTF8,
 * DSN's RET and ENVID) when the backend has it. Returns b->v. */
static char *smtp_tx_mail_line_for(struct strbuf *b, const struct relay *r, const char *from, const char *params)
{
	b->len = 0;
	strbuf_append(b, "MAIL FROM:<", 11);
	if (from)
		strbuf_append(b, from, strlen(from));
	strbuf_append(b, ">", 1);
	if (params && *params) {
		char *copy = strdup(params), *save = NULL;
		for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
			if ((strncasecmp(t, "SIZE=", 5) == 0 && relay_offers(r, RELAY_EXT_SIZE)) ||
			    (strncasecmp(t, "BODY=", 5) == 0 && relay_offers(r, RELAY_EXT_8BITMIME)) ||
			    (strcasecmp(t, "SMTPUTF8") == 0 && relay_offers(r, RELAY_EXT_SMTPUTF8)) ||
			    ((strncasecmp(t, "RET=", 4) == 0 || strncasecmp(t, "ENVID=", 6) == 0) &&
			     relay_offers(r, RELAY_EXT_DSN)))
			{
				strbuf_append(b, " ", 1);
				strbuf_append(b, t, strlen(t));
			}
		}
		free(copy);
	}
	return b->v;
}

/* Builds the MAIL command for the backend from the envelope and what it supports. */
static void smtp_tx_build_mail_line(struct smtp_tx *tx)
{
	const struct hook_env *env = tx->env;

	tx->mail_line = smtp_tx_mail_line_for(&tx->mail_buf, tx->relay,
	    env->new_mail_from ? env->new_mail_from : env->mail_from, env->mail_params);
}

/* ---- establishing: pick, open, MAIL, replay the accepted RCPTs, with failover --------- */

/* The current backend is given up for this message: its connection dropped, never picked
 * again for it. */
static void smtp_tx_leave_backend(struct smtp_tx *tx)
{
	if (tx->relay) {
		relay_abort(tx->relay);
		tx->relay = NULL;
	}
	if (tx->backend && tx->backend->index < 64)
		tx->tried |= 1ULL << tx->backend->index;
	tx->backend = NULL;
}

/* Calls est_done with 250 when tx->relay is ready for more, or the failure (code 0 =
 * nothing answered). */
static void smtp_tx_est_next(struct smtp_tx *tx);

static void smtp_tx_est_fail(struct smtp_tx *tx, int code, const char *text, bool backend_fault)
{
	tx->est_url = tx->backend ? tx->backend->url : NULL;
	smtp_tx_leave_backend(tx);
	if (backend_fault && tx->attempts < tx->env->cfg->backends.max_attempts) {
		smtp_tx_est_next(tx);
		return;
	}
	tx->est_done(tx, code, text);
}

/* Whether a reply from the current backend refuses the gateway itself, not the message
 * (gwrefuse.h: a 5xx of Exchange Online's banned sending IP, a submission endpoint, or one
 * of backends.gateway_refusals): then logged (event=gateway_refused) and the backend taken
 * out of the rotation; the caller fails over as for a backend that went away. */
static bool smtp_tx_gateway_refused(struct smtp_tx *tx, const char *stage, int code, const char *text)
{
	struct backend *b = tx->relay ? relay_backend(tx->relay) : tx->backend;
	const char *pat;

	if (code / 100 != 5 || b == NULL ||
	    (pat = gwrefuse_match(code, text, &tx->env->cfg->backends.gateway_refusals)) == NULL)
		return false;
	gwrefuse_report(tx->pool, b, tx->env->session_id, stage, code, text, pat);
	return true;
}

/* The text est_done gets with code 0 (nothing taken: 451 to the client) when the last
 * server tried refused the gateway. */
#define SMTP_TX_GATEWAY_REFUSED "the backends refused the gateway (event=gateway_refused)"

/* A pooled connection the backend had dropped: not the backend's fault, and not an
 * attempt. Open another: a new one. The others parked to that backend may be as dead (a
 * restart whose closes were not read yet, a host gone without a word): a transaction
 * that took each in turn used up the pool before it connected. As Postfix's smtp client
 * takes a cached connection once per destination and then connects, one stale connection
 * per backend per message, then a fresh one (the message's next transaction to it too). */
static void smtp_tx_est_stale(struct smtp_tx *tx)
{
	if (tx->backend && tx->backend->index < 64)
		tx->stale |= 1ULL << tx->backend->index;
	tx->attempts--;
	tx->backend = NULL;
	smtp_tx_est_next(tx);
}

static void smtp_tx_est_drop_rcpt(struct smtp_tx *tx, int code, const char *text);

/* A recipient a filter added at end of data (env->rcpts[est_rcpt], added) is refused on
 * the way to DATA. Postfix's queue bounces such a recipient to the sender after a 5xx and
 * retries it after a 4xx; without a queue: a 5xx drops it alone with a warning naming it
 * and the rest go on (true: the caller goes on with the next recipient). A 4xx is false:
 * the message tempfails as for the client's recipients, so nothing is lost (the client
 * retries, the filter adds it again); a warning names it too. */
static bool smtp_tx_est_added_refused(struct smtp_tx *tx, int code, const char *text)
{
	struct hook_env *env = tx->env;
	const struct backend *b = relay_backend(tx->relay);
	char rv[600], tv[256];

	log_addr(rv, sizeof(rv), env->rcpts[tx->est_rcpt].addr);
	log_val(tv, sizeof(tv), text ? text : "");
	if (code / 100 != 5) {
		log_event(LOG_LVL_WARNING, env->session_id, "event=added_rcpt_tempfail backend=%s rcpt=%s code=%d reply=%s queue_id=%s",
		    b ? b->url : "?", rv, code, tv, env->queue_id);
		return false;
	}
	log_event(LOG_LVL_WARNING, env->session_id, "event=added_rcpt_refused backend=%s rcpt=%s code=%d reply=%s queue_id=%s action=dropped",
	    b ? b->url : "?", rv, code, tv, env->queue_id);
	smtp_tx_est_drop_rcpt(tx, code, text);
	return true;
}

/* Recipient env->rcpts[est_rcpt], refused with 5xx on the way to DATA, leaves the envelope
 * (a release is told: rcpt_result, as for a refusal after the dot); the rest go on. */
static void smtp_tx_est_drop_rcpt(struct smtp_tx *tx, int code, const char *text)
{
	struct hook_env *env = tx->env;

	if (tx->rcpt_result)
		tx->rcpt_result(tx->rcpt_result_arg, &env->rcpts[tx->est_rcpt], code, text);
	smtp_tx_remove_rcpt(env, tx->est_rcpt);
	/* a reply still on the way (sent with MAIL) is now the next recipient's */
	if (tx->est_rcpt < tx->est_queued)
		tx->est_queued--;
}

/* A replay after an LMTP server delivered to some recipients (rcpts_done) and failed: a
 * recipient the next backend refuses with 5xx at RCPT is refused for good, and the message
 * is no longer one verdict for all (the others have their copy, or are owed one): that
 * recipient alone is dropped, logged by name (as an LMTP server's own 5xx after the dot,
 * event=lmtp_rcpt_refused), and the replay goes on with the rest. The client hears 250:
 * the message was delivered (as partial_reject). */
static void smtp_tx_est_replay_refused(struct smtp_tx *tx, int code, const char *text)
{
	struct hook_env *env = tx->env;
	const struct backend *b = relay_backend(tx->relay);
	char rv[600], tv[256];

	log_event(LOG_LVL_WARNING, env->session_id, "event=replay_rcpt_refused backend=%s rcpt=%s code=%d reply=%s added=%s delivered=%d queue_id=%s action=dropped",
	    b ? b->url : "?", log_addr(rv, sizeof(rv), env->rcpts[tx->est_rcpt].addr), code,
	    log_val(tv, sizeof(tv), text ? text : ""), env->rcpts[tx->est_rcpt].added ? "yes" : "no",
	    tx->rcpts_done, env->queue_id);
	smtp_tx_est_drop_rcpt(tx, code, text);
}

static void smtp_tx_est_rcpt_cb(void *arg, int code, const char *text)
{
	struct smtp_tx *tx = arg;

	if (tx->closed)
		return;
	if (smtp_tx_gateway_refused(tx, "rcpt", code, text)) {
		smtp_tx_est_fail(tx, 0, SMTP_TX_GATEWAY_REFUSED, true);
		return;
	}
	/* (code 0: no reply, the connection failed: the backend's fault, as for any recipient) */
	if (code / 100 != 2 && code != 0 && tx->env->rcpts[tx->est_rcpt].added && smtp_tx_est_added_refused(tx, code, text)) {
		smtp_tx_est_next(tx);
		return;
	}
	if (code / 100 == 5 && tx->rcpts_done > 0) {
		smtp_tx_est_replay_refused(tx, code, text);
		smtp_tx_est_next(tx);
		return;
	}
	if (code / 100 != 2) {
		/* A recipient accepted before is refused on replay: this backend is no good
		 * for the transaction; another may be. */
		char rv[600];
		log_event(LOG_LVL_INFO, tx->env->session_id, "event=replay_refused backend=%s rcpt=%s code=%d",
		    relay_backend(tx->relay) ? relay_backend(tx->relay)->url : "?",
		    log_addr(rv, sizeof(rv), tx->env->rcpts[tx->est_rcpt].addr), code);
		smtp_tx_est_fail(tx, code ? code : 451, text, true);
		return;
	}
	tx->est_rcpt++;
	smtp_tx_est_next(tx);
}

static void smtp_tx_est_mail_cb(void *arg, int code, const char *text)
{
	struct smtp_tx *tx = arg;

	if (tx->closed)
		return;
	if (smtp_tx_gateway_refused(tx, "mail", code, text)) {
		/* The gateway is refused, not the sender: the next server, as for one that went
		 * away (the RCPTs sent behind go with the connection). */
		smtp_tx_est_fail(tx, 0, SMTP_TX_GATEWAY_REFUSED, true);
		return;
	}
	if (code / 100 == 5) {
		/* The sender is refused: a verdict, not a fault. The RCPTs sent behind it are
		 * answered in vain (their replies are dropped); the connection goes back, a
		 * later RCPT opens one with MAIL again. */
		tx->est_url = tx->backend ? tx->backend->url : NULL;
		relay_cancel(tx->relay);
		relay_release(tx->relay, true);
		tx->relay = NULL;
		tx->backend = NULL;
		tx->est_done(tx, code, text);
		return;
	}
	if (code == 0 && relay_text_is_stale(text)) {
		smtp_tx_est_stale(tx);
		return;
	}
	if (code / 100 != 2) {
		smtp_tx_est_fail(tx, code, text, true);
		return;
	}
	tx->est_rcpt = 0;
	smtp_tx_est_next(tx);
}

static void smtp_tx_est_open_cb(void *arg, struct relay *r, int code, const char *text)
{
	struct smtp_tx *tx = arg;
	const struct hook_env *env = tx->env;

	if (tx->closed && r)
		relay_release(r, true);
	if (smtp_tx_pending_done(tx))
		return;
	if (r == NULL) {
		if (relay_text_is_stale(text)) {
			smtp_tx_est_stale(tx);
			return;
		}
		smtp_tx_est_fail(tx, code, text, true);
		return;
	}
	tx->relay = r;
	relay_set_owner(r, &tx->relay);
	tx->mail_sent = tx->rcpt_queued = false;
	tx->est_rcpt = tx->est_queued = 0;
	if (!relay_offers(r, RELAY_EXT_SMTPUTF8) && env->mail_params && env->mail_params[0] &&
	    strcasestr(env->mail_params, "SMTPUTF8")) {
		/* RFC 6531 3.4: an internationalised transaction needs a server that takes it. */
		relay_release(r, true);
		tx->relay = NULL;
		tx->est_url = tx->backend ? tx->backend->url : NULL;
		tx->est_done(tx, 553, "5.6.7 SMTPUTF8 is not supported by the destination");
		return;
	}
	smtp_tx_est_next(tx);
}

static void smtp_tx_rcpt_est_cb(struct smtp_tx *tx, int code, const char *text);
static void smtp_tx_rcpt_reply_cb(void *arg, int code, const char *text);

/* Appends s to the string line[0..*n) of capacity cap, cut short as snprintf would (these
 * lines are built per message: no stdio). */
static void smtp_tx_cat(char *line, size_t cap, size_t *n, const char *s)
{
	size_t l = strlen(s);

	if (*n + 1 >= cap)
		return;
	if (l > cap - 1 - *n)
		l = cap - 1 - *n;
	memcpy(line + *n, s, l);
	*n += l;
	line[*n] = '\0';
}

/* The RCPT command for a recipient to r's backend (line: 1100 octets): "RCPT TO:<addr>[
 * params]"; returns its length. The only RCPT parameters taken from clients are DSN's NOTIFY and ORCPT
 * (session_check_rcpt_in): a backend that does not announce DSN gets none (RFC 3461 4.1: it
 * would refuse them as unknown, 555). */
static size_t smtp_tx_rcpt_line(const struct relay *r, char *line, size_t cap, const char *addr, const char *params)
{
	size_t n = 0;
	bool dsn = params && *params && relay_offers(r, RELAY_EXT_DSN);
	size_t la = strlen(addr);

	if (!dsn && la + 11 < cap) {
		/* as a rule: all of it fits, three copies of known lengths (what the smtp_tx_cat
		 * below would give) */
		memcpy(line, "RCPT TO:<", 9);
		memcpy(line + 9, addr, la);
		memcpy(line + 9 + la, ">", 2);
		return la + 10;
	}
	line[0] = '\0';
	smtp_tx_cat(line, cap, &n, "RCPT TO:<");
	smtp_tx_cat(line, cap, &n, addr);
	smtp_tx_cat(line, cap, &n, ">");
	if (dsn) {
		smtp_tx_cat(line, cap, &n, " ");
		smtp_tx_cat(line, cap, &n, params);
	}
	return n;
}

/* The backend's reply to a DATA sent ahead with the last RCPT: a 354 while no recipient
 * was accepted is ended at once with a lone "." (RFC 2920 3.1); otherwise the relay keeps
 * the open DATA for the message (relay_send_message) or drops it on release. */
static void smtp_tx_early_data_cb(void *arg, int code, const char *text)
{
	struct smtp_tx *tx = arg;

	(void)text;
	if (tx->closed || tx->relay == NULL)
		return;
	if (code == 354 && tx->env->nrcpts == 0)
		relay_data_abandon(tx->relay);
}

/* DATA behind the recipient just queued, when the client sent it right behind (see
 * data_follows) and the backend takes it pipelined. With CHUNKING the message needs no 354
 * anyway (BDAT). */
static void smtp_tx_queue_data(struct smtp_tx *tx)
{
	if (tx->data_follows && relay_offers(tx->relay, RELAY_EXT_PIPELINING) && !relay_offers(tx->relay, RELAY_EXT_CHUNKING))
		relay_queue_data(tx->relay, smtp_tx_early_data_cb, tx);
}

void smtp_tx_data_early(struct smtp_tx *tx)
{
	struct relay *r = tx->relay;

	if (r == NULL || tx->env->nrcpts == 0 || !tx->mail_sent || !relay_can_data(r))
		return;
	relay_queue_data(r, smtp_tx_early_data_cb, tx);
	if (tx->relay == r)
		relay_flush(r);
}

/* A connection taken over from the previous message whose commands sent ahead are not
 * what this transaction sends: dropped (nothing was delivered through it, and it is no
 * attempt of this transaction), a fresh one is opened instead. */
static void smtp_tx_drop_ahead(struct smtp_tx *tx)
{
	log_event(LOG_LVL_DEBUG, tx->env->session_id, "event=ahead_mismatch");
	relay_release(tx->relay, false);
	tx->relay = NULL;
	tx->backend = NULL;
	tx->attempts = 0;
	tx->mail_sent = false;
}

/* MAIL on a fresh connection. To a backend that offers PIPELINING the recipients to replay
 * and the recipient in flight (when establishing for a RCPT) go in the same write (RFC
 * 2920 3.1: MAIL and RCPT may be pipelined); their replies come back in that order to
 * est_mail_cb, est_rcpt_cb, rcpt_reply_cb. */
static void smtp_tx_est_send_mail(struct smtp_tx *tx)
{
	const struct hook_env *env = tx->env;
	char line[1100];
	bool rcpt_built = false;	/* line holds tx->rcpt's RCPT already */

	smtp_tx_build_mail_line(tx);
	if (relay_ahead_next(tx->relay)) {
		/* The commands sent ahead with the last message's dot must be this group's. */
		const char *lines[3] = { tx->mail_line, line, "DATA" };
		size_t n = 1;
		if (tx->est_done == smtp_tx_rcpt_est_cb && tx->rcpt && relay_offers(tx->relay, RELAY_EXT_PIPELINING)) {
			smtp_tx_rcpt_line(tx->relay, line, sizeof(line), tx->rcpt, tx->rcpt_params);
			rcpt_built = true;
			n = 2;
			if (tx->data_follows && !relay_offers(tx->relay, RELAY_EXT_CHUNKING))
				n = 3;
		}
		if (env->nrcpts || !relay_ahead_match(tx->relay, lines, n)) {
			smtp_tx_drop_ahead(tx);
			smtp_tx_est_next(tx);
			return;
		}
		if (tx->backend == NULL) {
			tx->backend = relay_backend(tx->relay);
			tx->attempts++;
		}
	}
	tx->mail_sent = true;
	relay_queue(tx->relay, tx->mail_line, smtp_tx_est_mail_cb, tx);
	if (relay_offers(tx->relay, RELAY_EXT_PIPELINING)) {
		for (size_t i = 0; i < env->nrcpts; i++) {
			smtp_tx_rcpt_line(tx->relay, line, sizeof(line), env->rcpts[i].addr, env->rcpts[i].params);
			relay_queue(tx->relay, line, smtp_tx_est_rcpt_cb, tx);
			rcpt_built = false;
		}
		tx->est_queued = env->nrcpts;
		if (tx->est_done == smtp_tx_rcpt_est_cb && tx->rcpt) {
			if (!rcpt_built)
				smtp_tx_rcpt_line(tx->relay, line, sizeof(line), tx->rcpt, tx->rcpt_params);
			relay_queue(tx->relay, line, smtp_tx_rcpt_reply_cb, tx);
			tx->rcpt_queued = true;
			smtp_tx_queue_data(tx);
		}
	}
	relay_flush(tx->relay);
}

static void smtp_tx_est_next(struct smtp_tx *tx)
{
	const struct hook_env *env = tx->env;

	if (tx->relay == NULL) {
		struct backend *b;
		const char *dom = env->nrcpts ? smtp_tx_domain_of(env->rcpts[0].addr) :
		    tx->rcpt ? smtp_tx_domain_of(tx->rcpt) : NULL;

		b = pool_pick_backend(tx->pool, tx->route ? dom : NULL, env->client_ip, tx->tried);
		if (b == NULL) {
			tx->est_done(tx, 0, "no backend available");
			return;
		}
		tx->attempts++;
		tx->backend = b;
		if (b->kind == BACKEND_MAILDIR) {
			/* Written at end of data; nothing to open. */
			tx->est_done(tx, 250, "2.0.0 Ok");
			return;
		}
		tx->pending++;
		if (b->index < 64 && (tx->stale & (1ULL << b->index)))
			relay_open_fresh(tx->w, b, env, smtp_tx_est_open_cb, tx);
		else
			relay_open(tx->w, b, env, smtp_tx_est_open_cb, tx);
		return;
	}
	if (!tx->mail_sent) {
		smtp_tx_est_send_mail(tx);
		return;
	}
	if (tx->est_rcpt < env->nrcpts) {
		const struct rcpt *rc = &env->rcpts[tx->est_rcpt];
		char line[1100];

		if (tx->est_rcpt < tx->est_queued)
			return;		/* sent with MAIL: its reply is on the way */
		smtp_tx_rcpt_line(tx->relay, line, sizeof(line), rc->addr, rc->params);
		relay_command(tx->relay, line, smtp_tx_est_rcpt_cb, tx);
		return;
	}
	tx->est_done(tx, 250, "2.1.0 Ok");
}

static void smtp_tx_establish(struct smtp_tx *tx, void (*done)(struct smtp_tx *, int, const char *))
{
	tx->est_done = done;
	tx->est_url = NULL;
	tx->est_rcpt = 0;
	tx->rcpt_queued = false;
	smtp_tx_est_next(tx);
}

/* ---- MAIL --------------------------------------------------------------------------- */

static void smtp_tx_mail_est_cb(struct smtp_tx *tx, int code, const char *text)
{
	if (code / 100 == 2)
		smtp_tx_finish_mail_ok(tx);
	else
		smtp_tx_finish_unestablished(tx, "mail", code, text);
}

void smtp_tx_mail(struct smtp_tx *tx, smtp_tx_done_fn cb, void *arg)
{
	tx->done = cb;
	tx->done_arg = arg;
	if (tx->pool->nroutes > 0 || tx->mail_deferrable) {
		/* Routing depends on the recipient: the backend is chosen at the first RCPT. A
		 * pipelining client does not wait for this reply: MAIL goes with the first RCPT. */
		smtp_tx_finish_mail_ok(tx);
		return;
	}
	smtp_tx_establish(tx, smtp_tx_mail_est_cb);
}

/* ---- RCPT --------------------------------------------------------------------------- */

/* The recipient in flight was answered code: counted by sender domain, recipient and its
 * domain (opstats_note_rcpt: `mxgatectl top senders|recipients|domains`). */
static void smtp_tx_note_rcpt(struct smtp_tx *tx, int code)
{
	opstats_note_rcpt(tx->w->index, tx->env->mail_from, tx->rcpt, code / 100 == 2);
}

/* The recipient in flight is answered: a 2xx joins the envelope, anything else is
 * forgotten; then the step ends. */
static void smtp_tx_rcpt_done(struct smtp_tx *tx, int code, const char *text, bool client_error)
{
	smtp_tx_note_rcpt(tx, code);
	if (code / 100 == 2)
		smtp_tx_add_rcpt(tx, tx->rcpt, tx->rcpt_params, false);
	smtp_tx_drop_rcpt(tx);
	smtp_tx_finish(tx, code, text, NULL, client_error, true);
}

static void smtp_tx_rcpt_reply_cb(void *arg, int code, const char *text)
{
	struct smtp_tx *tx = arg;

	if (tx->closed)
		return;
	if (code == 0 || code == 421 || smtp_tx_gateway_refused(tx, "rcpt", code, text)) {
		/* The backend went away mid-transaction, or refused the gateway itself: fail
		 * over, replaying what it had. */
		smtp_tx_leave_backend(tx);
		if (tx->attempts < tx->env->cfg->backends.max_attempts) {
			smtp_tx_establish(tx, smtp_tx_rcpt_est_cb);
			return;
		}
		smtp_tx_rcpt_done(tx, 451, SMTP_TX_UNAVAILABLE, false);
		return;
	}
	if (code / 100 == 2) {
		counter_inc(COUNTER_RECIPIENTS_ACCEPTED);
	} else {
		counter_inc(COUNTER_RECIPIENTS_REJECTED);
		char av[600], rv[256];   /* the backend's text: quoted and escaped as any value from outside */
		/* event=tempfail for its 4xx, as every refusal's line; reply= as the DATA stage's */
		opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = tx->env->session_id,
		    .client_ip = tx->env->client_ip, .stage = "rcpt", .reason = "backend", .tempfail = code / 100 == 4,
		    .code = code }, "rcpt=%s code=%d reply=%s client=%s", log_addr(av, sizeof(av), tx->rcpt), code,
		    log_val(rv, sizeof(rv), text ? text : ""), tx->env->client_ip);
	}
	/* A 4xx is the backend's state, not the client's error: 452 its recipient limit (RFC
	 * 5321 4.5.3.1.10) or its storage, 450/451 its greylisting or a passing trouble; the
	 * client retries those recipients later, as it must, and counting them would cut a
	 * long recipient list off with 421 (as mxgate's own greylisting is not counted). A
	 * 5xx (unknown users: a harvest) counts against limits.max_errors. */
	smtp_tx_rcpt_done(tx, code, text, code / 100 == 5);
}

static void smtp_tx_rcpt_send(struct smtp_tx *tx)
{
	char line[1100];

	if (tx->backend && tx->backend->kind == BACKEND_MAILDIR) {
		smtp_tx_rcpt_done(tx, 250, "2.1.5 Ok", false);
		return;
	}
	struct relay *r = tx->relay;

	smtp_tx_rcpt_line(tx->relay, line, sizeof(line), tx->rcpt, tx->rcpt_params);
	relay_queue(r, line, smtp_tx_rcpt_reply_cb, tx);
	if (tx->relay != r)
		return;		/* it failed at once: the reply callback has run */
	smtp_tx_queue_data(tx);
	relay_flush(r);
}

static void smtp_tx_rcpt_est_cb(struct smtp_tx *tx, int code, const char *text)
{
	if (code / 100 == 2) {
		if (tx->rcpt_queued)
			return;		/* it went with MAIL: smtp_tx_rcpt_reply_cb has its reply next */
		smtp_tx_rcpt_send(tx);
		return;
	}
	smtp_tx_note_rcpt(tx, code ? code : 451);
	smtp_tx_drop_rcpt(tx);
	smtp_tx_finish_unestablished(tx, "rcpt", code, text);
}

/* The transaction has backends.lmtp_recipient_limit recipients and goes to an LMTP server; with
 * no limit set, RELAY_LMTP_MAX_RCPT (the replies relay.c keeps after the dot: past it one
 * reply would stand for recipients it does not answer, limits.max_recipients may be more). */
static bool smtp_tx_lmtp_full(const struct smtp_tx *tx)
{
	long lim = tx->env->cfg->backends.lmtp_recipient_limit;

	if (lim <= 0 || lim > RELAY_LMTP_MAX_RCPT)
		lim = RELAY_LMTP_MAX_RCPT;
	return tx->env->nrcpts >= (size_t)lim && tx->backend != NULL && tx->backend->kind == BACKEND_LMTP;
}

void smtp_tx_rcpt(struct smtp_tx *tx, smtp_tx_done_fn cb, void *arg)
{
	tx->done = cb;
	tx->done_arg = arg;
	if (tx->relay && !tx->mail_sent) {
		/* The connection taken over from the last message (smtp_tx_begin), MAIL deferred:
		 * MAIL and this RCPT now, matched against what went ahead. */
		smtp_tx_establish(tx, smtp_tx_rcpt_est_cb);
		return;
	}
	if (smtp_tx_lmtp_full(tx)) {
		/* An LMTP server answers each recipient after the dot, the client gets one reply:
		 * one recipient (or a few) per transaction keeps a refusal there exact. */
		smtp_tx_rcpt_done(tx, 452, "4.5.3 Too many recipients for this transaction", false);
		return;
	}
	if (tx->relay && relay_ahead_next(tx->relay)) {
		char line[1100];
		const char *lines[2] = { line, "DATA" };

		smtp_tx_rcpt_line(tx->relay, line, sizeof(line), tx->rcpt, tx->rcpt_params);
		if (!relay_ahead_match(tx->relay, lines, tx->data_follows ? 2 : 1))
			smtp_tx_drop_ahead(tx);	/* a recipient was refused here on the way: a fresh
						 * connection, replaying the transaction */
	}
	if (tx->relay && relay_data_pending(tx->relay)) {
		/* A DATA sent ahead is open or not answered yet (the client's DATA was refused
		 * here and it goes on with RCPT): the backend could read this RCPT as message
		 * content. Start over on a fresh connection, replaying the transaction. */
		relay_release(tx->relay, false);
		tx->relay = NULL;
		tx->backend = NULL;
	}
	if (tx->relay == NULL && (tx->backend == NULL || tx->backend->kind != BACKEND_MAILDIR)) {
		/* First recipient with routes, or the backend was lost: establish now. */
		smtp_tx_leave_backend(tx);
		if (tx->env->nrcpts == 0)
			tx->route = pool_route_for(tx->pool, smtp_tx_domain_of(tx->rcpt));
		smtp_tx_establish(tx, smtp_tx_rcpt_est_cb);
		return;
	}
	if (tx->pool->nroutes > 0 && pool_route_for(tx->pool, smtp_tx_domain_of(tx->rcpt)) != tx->route) {
		smtp_tx_rcpt_done(tx, 452, "4.5.3 Recipients for this destination go in a separate transaction", false);
		return;
	}
	smtp_tx_rcpt_send(tx);
}

/* ---- the message -------------------------------------------------------------------- */

int smtp_tx_data_open(struct smtp_tx *tx)
{
	size_t threshold = (size_t)tx->env->cfg->limits.memory_threshold;
	const char *dir = tx->env->cfg->limits.spool_dir;

	if (tx->msg_spare != NULL && msgbuf_configure(tx->msg_spare, threshold, dir) == 0) {
		tx->msg = tx->msg_spare;	/* the last message's buffer, emptied (smtp_tx_reset) */
		tx->msg_spare = NULL;
	} else {
		tx->msg = msgbuf_new(threshold, dir);
	}
	tx->hdr_match = 2;	/* the message starts a line: a first CRLF is an empty header block */
	tx->hdr_told = false;
	return tx->msg ? 0 : -1;
}

/* Follows the CRLF CRLF that ends the header block across appends (content lines always
 * end in CRLF, dataparse.c) and notes the block's length: the content so far (msg_size,
 * this chunk included) less what follows the end in this chunk. While nothing matches,
 * only a CR can start the end: memchr skips to it. */
static void smtp_tx_scan_headers(struct smtp_tx *tx, const char *data, size_t len)
{
	static const char end[4] = { '\r', '\n', '\r', '\n' };
	size_t i = 0;

	while (i < len && tx->hdr_match < 4) {
		if (tx->hdr_match == 0) {
			const char *cr = memchr(data + i, '\r', len - i);
			if (cr == NULL)
				return;
			i = (size_t)(cr - data);
			if (len - i >= 4) {
				/* the whole end or not, in one compare (a header line's CRLF: on
				 * to the next CR) */
				if (memcmp(data + i, end, 4) == 0) {
					tx->hdr_match = 4;
					i += 4;
					break;
				}
				i++;
				continue;
			}
		}
		if (data[i] == end[tx->hdr_match])
			tx->hdr_match++;
		else
			tx->hdr_match = data[i] == '\r' ? 1 : 0;
		i++;
	}
	if (tx->hdr_match == 4)
		tx->hdr_len = (size_t)tx->msg_size - (len - i);
}

/* The header block's length: as the scan found it, or from the buffer (no end seen). */
static size_t smtp_tx_header_len(struct smtp_tx *tx)
{
	return tx->hdr_match == 4 ? tx->hdr_len : msgbuf_header_len(tx->msg);
}

bool smtp_tx_headers_take(struct smtp_tx *tx, const char **hdr, size_t *len)
{
	if (tx->hdr_told || tx->hdr_match < 4 || tx->msg_state != SMTP_TX_MSG_OK || tx->msg == NULL)
		return false;
	tx->hdr_told = true;
	*len = smtp_tx_header_len(tx);
	*hdr = msgbuf_data(tx->msg, &(size_t){ 0 });
	return *hdr != NULL && *len > 0;
}

int smtp_tx_data_append(void *arg, const char *data, size_t len)
{
	struct smtp_tx *tx = arg;

	tx->msg_size += len;
	if (tx->msg_state != SMTP_TX_MSG_OK)
		return 0;
	if (tx->msg_size > tx->env->cfg->limits.max_message_size) {
		tx->msg_state = SMTP_TX_MSG_TOO_BIG;
		return 0;
	}
	if (msgbuf_append(tx->msg, data, len) != 0)
		tx->msg_state = SMTP_TX_MSG_WRITE_ERROR;
	else if (tx->hdr_match < 4)
		smtp_tx_scan_headers(tx, data, len);
	return 0;
}

uint64_t smtp_tx_msg_size(const struct smtp_tx *tx) { return tx->msg_size; }
enum smtp_tx_msg_state smtp_tx_msg_state(const struct smtp_tx *tx) { return tx->msg_state; }
int smtp_tx_msg_error(const struct smtp_tx *tx)
{
	if (tx->filter_view && msgbuf_error(tx->filter_view))
		return msgbuf_error(tx->filter_view);
	return tx->msg ? msgbuf_error(tx->msg) : 0;
}

/* The filters' view of a message whose header block holds a sender's owned field (tx->
 * drop_owned): the block without them, then the body, in a buffer of the message's threshold
 * and spool. 0, or -1 when it cannot be made. */
static int smtp_tx_filter_view_build(struct smtp_tx *tx, const char *data, size_t len, size_t hlen)
{
	struct strbuf hb = { 0 };
	int rc = 0;

	tx->filter_view = msgbuf_new((size_t)tx->env->cfg->limits.memory_threshold, tx->env->cfg->limits.spool_dir);
	headers_apply_edits_owned(data, hlen, NULL, 0, &hb, 0);
	if (tx->filter_view == NULL || msgbuf_append(tx->filter_view, hb.v ? hb.v : "", hb.len) < 0 ||
	    msgbuf_append(tx->filter_view, data + hlen, len - hlen) < 0)
		rc = -1;
	strbuf_free(&hb);
	return rc;
}

void smtp_tx_data_end(struct smtp_tx *tx)
{
	const char *data;
	size_t len = 0, hlen;

	tx->env->msg = tx->env->msg_sent = tx->msg;
	tx->drop_owned = false;
	if (tx->own_fields_kept || tx->msg == NULL || tx->msg_state != SMTP_TX_MSG_OK)
		return;
	if ((data = msgbuf_data(tx->msg, &len)) == NULL) {
		/* unreadable now (a spilled message's mmap failed): the spool's 451, not a delivery
		 * that a later successful read would make without the owned fields looked for */
		if (msgbuf_len(tx->msg) > 0)
			tx->msg_state = SMTP_TX_MSG_WRITE_ERROR;
		return;
	}
	hlen = smtp_tx_header_len(tx);
	if (hlen > len)
		hlen = len;
	/* one scan of the header block per message; the copy only for a message that holds one */
	tx->drop_owned = ownfields_block_has(data, hlen);
	if (!tx->drop_owned)
		return;
	if (smtp_tx_filter_view_build(tx, data, len, hlen) < 0) {
		tx->msg_state = SMTP_TX_MSG_WRITE_ERROR;
		return;
	}
	tx->env->msg = tx->filter_view;
}

/* ---- the delivery ledger (ledger.h) ------------------------------------------------- */

/* Whether this transaction keeps to the ledger: a client's (a quarantine release keeps each
 * recipient's result in its held file: rcpt_result) with backends.retry_ledger on. */
static bool smtp_tx_ledger_on(const struct smtp_tx *tx)
{
	return tx->rcpt_result == NULL && tx->env->cfg->backends.retry_ledger.max_entries > 0;
}

/* The message's digest (the client's octets as held, before mxgate's header block), made
 * once per message and only when the ledger is asked; NULL when the message is unreadable. */
static const uint8_t *smtp_tx_ledger_digest(struct smtp_tx *tx)
{
	const char *data;
	size_t len = 0;

	if (!tx->ledger_digested) {
		if (tx->msg == NULL || (data = msgbuf_data(tx->msg, &len)) == NULL)
			return NULL;
		ledger_digest(tx->ledger_digest, data, len);
		tx->ledger_digested = true;
	}
	return tx->ledger_digest;
}

/* The worker's LMDB writer of the ledger when the transaction's config keeps it in LMDB
 * (ledger_store.h), else NULL (memory only). The worker's current generation has it; a
 * session of an older generation whose directory differs (a reload moved it) keeps to
 * memory until it ends. */
static struct lmdb_writer *smtp_tx_ledger_store(const struct smtp_tx *tx, const char **dir)
{
	const struct worker_gen *wg = tx->w->gen;
	const char *d = ledger_store_dir(tx->env->cfg), *gd;

	if (d == NULL)
		return NULL;
	*dir = d;
	if (wg == NULL || (gd = ledger_store_dir(wg->shared->cfg)) == NULL || strcmp(gd, d) != 0)
		return NULL;
	if (wg->ledger_wr == NULL)
		ledger_store_note(tx->env->cfg->backends.retry_ledger.store, false, "not_open");
	return wg->ledger_wr;
}

/* The Redis store of the ledger when the transaction's config keeps it in Redis
 * (ledger_redis.h), else NULL; as smtp_tx_ledger_store: for the same server as the worker's
 * current generation (a reload that moved the ledger: memory until the session ends). The
 * store is the transaction's own generation's, not the current one's: a lookup out on the
 * current one when a second reload came found that generation (no session of its own)
 * freed, and its answer was a false event=ledger_store_error reason=timeout (the
 * delivery went on without the ledger: a second copy to a retry's recipients). The own
 * generation lives until the session ends, after its last request. */
static struct ledger_redis *smtp_tx_ledger_redis(const struct smtp_tx *tx)
{
	const struct worker_gen *wg = tx->w->gen, *own = tx->gen ? tx->gen : wg;
	const char *u = ledger_redis_url(tx->env->cfg), *gu;

	if (u == NULL || wg == NULL || (gu = ledger_redis_url(wg->shared->cfg)) == NULL || strcmp(gu, u) != 0)
		return NULL;
	if (own->ledger_rd == NULL)
		ledger_store_note("redis", false, "not_open");
	return own->ledger_rd;
}

/* Appends "<addr>" to a log list of addresses, a comma between (quoted as one value when
 * logged: log_val_quoted). */
static void smtp_tx_ledger_list(struct strbuf *b, const char *addr)
{
	if (b->len > 0)
		strbuf_append(b, ",", 1);
	strbuf_append(b, "<", 1);
	strbuf_append(b, addr, strlen(addr));
	strbuf_append(b, ">", 1);
}

/* Recipient r has the message (a backend's 250 for it) while others of the envelope are
 * still owed: its key is kept, for the ledger if the client hears 4xx in the end
 * (smtp_tx_ledger_end). */
static void smtp_tx_ledger_note(struct smtp_tx *tx, const struct rcpt *r)
{
	const uint8_t *d;

	if (!smtp_tx_ledger_on(tx) || (d = smtp_tx_ledger_digest(tx)) == NULL)
		return;
	if (tx->ledger_nkeys == tx->ledger_cap) {
		size_t n = tx->ledger_cap ? 2 * tx->ledger_cap : 4;
		void *p = realloc(tx->ledger_keys, n * sizeof(*tx->ledger_keys));

		if (p == NULL)
			abort();
		tx->ledger_keys = p;
		tx->ledger_cap = n;
	}
	struct smtp_tx_ledger_key *k = &tx->ledger_keys[tx->ledger_nkeys++];

	ledger_key(k->key, d, tx->env->mail_from, r->addr);
	k->pair = ledger_pair(tx->env->mail_from, r->addr);
	smtp_tx_ledger_list(&tx->ledger_rcpts, r->addr);
}

/* The delivery ends with code for the client while some recipients have the message
 * (smtp_tx_ledger_note), or the client is gone (smtp_tx_close: 451, it heard nothing). A
 * 4xx: the client will send it again, so they go into the ledger
 * (event=ledger_add; event=ledger_evict when that pushed older ones out). A 2xx or a 5xx
 * ends it for good: nothing to remember. */
static void smtp_tx_ledger_end(struct smtp_tx *tx, int code)
{
	const struct retry_ledger_config *c = &tx->env->cfg->backends.retry_ledger;
	struct ledger *l = ledger_process();
	size_t evicted = 0;

	if (code / 100 == 4) {
		uint64_t now = uv_now(&tx->w->loop), wall = passcache_wall_ms();
		const char *dir = NULL;
		struct lmdb_writer *wr = smtp_tx_ledger_store(tx, &dir);
		struct ledger_redis *rd = smtp_tx_ledger_redis(tx);
		uint8_t (*rk)[LEDGER_KEY_LEN] = NULL;
		bool stored = true;
		char rv[2048];

		/* Redis: each key and its pair's mark, in one write */
		if (rd != NULL && (rk = malloc(2 * tx->ledger_nkeys * sizeof(*rk))) == NULL)
			ledger_store_note(ledger_redis_name(rd), false, "out_of_memory");
		for (size_t i = 0; rk != NULL && i < tx->ledger_nkeys; i++) {
			memcpy(rk[2 * i], tx->ledger_keys[i].key, LEDGER_KEY_LEN);
			ledger_pair_key(rk[2 * i + 1], tx->ledger_keys[i].pair);
		}
		if (rk != NULL)
			ledger_redis_add(rd, (const uint8_t (*)[LEDGER_KEY_LEN])rk, 2 * tx->ledger_nkeys, wall, c->ttl,
			    tx->env->queue_id, tx->ledger_nkeys);
		free(rk);

		for (size_t i = 0; i < tx->ledger_nkeys; i++) {
			evicted += ledger_add(l, tx->ledger_keys[i].key, tx->ledger_keys[i].pair, now, c->ttl,
			    (size_t)c->max_entries);
			if (wr == NULL)
				continue;
			/* the key, and its pair's mark: what another process reads first */
			uint8_t pk[LEDGER_KEY_LEN];
			ledger_pair_key(pk, tx->ledger_keys[i].pair);
			if (ledger_store_add(wr, tx->ledger_keys[i].key, wall, c->ttl) != 0 ||
			    ledger_store_add(wr, pk, wall, c->ttl) != 0)
				stored = false;
		}
		if (wr != NULL) {
			ledger_store_note(c->store, stored, "write_dropped");
			ledger_store_commit(wr, dir, tx->env->queue_id, tx->ledger_nkeys);
		}
		counter_add(COUNTER_LEDGER_ADDS, (long)tx->ledger_nkeys);
		strbuf_append(&tx->ledger_rcpts, "", 1);
		log_event(LOG_LVL_INFO, tx->env->session_id, "event=ledger_add queue_id=%s rcpts=%s entries=%zu",
		    tx->env->queue_id, log_val_quoted(rv, sizeof(rv), tx->ledger_rcpts.v, false), ledger_count(l));
		if (evicted > 0) {
			counter_add(COUNTER_LEDGER_EVICTIONS, (long)evicted);
			log_event(LOG_LVL_WARNING, tx->env->session_id, "event=ledger_evict evicted=%zu max_entries=%ld",
			    evicted, c->max_entries);
		}
	}
	tx->ledger_nkeys = 0;
	tx->ledger_rcpts.len = 0;
}

/* The LMDB lookup of key: 1 held, 0 not; a failure is noted (logged once per outage) and
 * delivers as if it were not held (-1: a possible duplicate, never a loss). store: the
 * config's spec, for the log. */
static int smtp_tx_ledger_store_has(struct lmdb_writer *wr, const char *store, const uint8_t *key,
    uint64_t wall)
{
	int rc = ledger_store_has(wr, key, wall);

	ledger_store_note(store, rc >= 0, "read_failed");
	return rc;
}

/* Whether the Redis lookup before this (smtp_tx_ledger_remote) found key. */
static bool smtp_tx_ledger_held(const struct smtp_tx *tx, const uint8_t key[LEDGER_KEY_LEN])
{
	for (size_t i = 0; i < tx->ledger_nheld; i++)
		if (memcmp(tx->ledger_held[i], key, LEDGER_KEY_LEN) == 0)
			return true;
	return false;
}

/* At the end of data, before the message goes out: the recipients the ledger holds for
 * this message (an earlier try gave them their copy and the client heard 4xx) leave the
 * envelope and count as delivered (rcpts_done, as after an LMTP server's partial delivery:
 * the client's 250 is owed to a backend's 250 for them). The connection that has them
 * (MAIL and RCPT were relayed live, maybe DATA) is let go, never ended with the dot; the
 * rest go on a new one (smtp_tx_send establishes; this was no attempt, nor is the backend
 * given up). event=ledger_hit names them. True when none is left to send. */
static bool smtp_tx_ledger_skip(struct smtp_tx *tx)
{
	struct hook_env *env = tx->env;
	struct ledger *l;
	const uint8_t *d;
	struct strbuf skipped = { 0 };
	struct lmdb_writer *wr;
	const char *dir = NULL;
	uint8_t k[LEDGER_KEY_LEN];
	uint64_t now, wall;
	size_t i = 0, n = 0;
	char rv[2048];

	if (!smtp_tx_ledger_on(tx) || env->nrcpts == 0)
		return false;
	l = ledger_process();
	wr = smtp_tx_ledger_store(tx, &dir);
	dir = env->cfg->backends.retry_ledger.store;	/* as logged */
	if (wr == NULL && ledger_count(l) == 0 && tx->ledger_nheld == 0)
		return false;
	wall = passcache_wall_ms();
	/* The digest (SHA-256 of the whole message, on this worker's loop) only when a (sender,
	 * recipient) pair may be held: never for the ordinary message. In memory the pair
	 * table; in LMDB (what another process or an earlier run added is not in that table)
	 * the pair's mark, one read from the map a recipient; in Redis the lookup before this
	 * found a digest's key already (ledger_held). */
	while (i < env->nrcpts && tx->ledger_nheld == 0) {
		uint64_t pair = ledger_pair(env->mail_from, env->rcpts[i].addr);
		uint8_t pk[LEDGER_KEY_LEN];

		if (ledger_may_hold(l, pair))
			break;
		if (wr != NULL) {
			ledger_pair_key(pk, pair);
			if (smtp_tx_ledger_store_has(wr, dir, pk, wall) == 1)
				break;
		}
		i++;
	}
	if (i == env->nrcpts || (d = smtp_tx_ledger_digest(tx)) == NULL)
		return false;
	now = uv_now(&tx->w->loop);
	while (i < env->nrcpts) {
		ledger_key(k, d, env->mail_from, env->rcpts[i].addr);
		if (!ledger_has(l, k, now) && !smtp_tx_ledger_held(tx, k) &&
		    (wr == NULL || smtp_tx_ledger_store_has(wr, dir, k, wall) != 1)) {
			i++;
			continue;
		}
		smtp_tx_ledger_list(&skipped, env->rcpts[i].addr);
		smtp_tx_remove_rcpt(env, i);
		tx->rcpts_done++;
		n++;
	}
	if (n == 0)
		return false;
	counter_add(COUNTER_LEDGER_HITS, (long)n);
	strbuf_append(&skipped, "", 1);
	log_event(LOG_LVL_INFO, env->session_id, "event=ledger_hit queue_id=%s left=%zu skipped=%s",
	    env->queue_id, env->nrcpts, log_val_quoted(rv, sizeof(rv), skipped.v, false));
	strbuf_free(&skipped);
	if (tx->relay) {
		relay_release(tx->relay, true);   /* RSET, or closed with DATA open: no dot */
		tx->relay = NULL;
	}
	if (tx->backend) {
		tx->backend = NULL;
		if (tx->attempts > 0)
			tx->attempts--;
	}
	return env->nrcpts == 0;
}

/* ---- delivery ----------------------------------------------------------------------- */

static void smtp_tx_send(struct smtp_tx *tx);

#define SMTP_TX_QID_MAX 64

static const char *const smtp_tx_qid_after[] = {
	"queued as ",            /* Postfix: "2.0.0 Ok: queued as 4FXyz" */
	"OK id=",                /* Exim: "OK id=1tIxyz-000abc-De" */
	"InternalId=",           /* Exchange: "2.6.0 <m@h> [InternalId=123, Hostname=X] Queued ..." */
	"Queued (",              /* Haraka: "Message Queued (8A1E...)" */
	" qp ",                  /* qmail: "ok 1700000000 qp 12345" */
};
static const char *const smtp_tx_qid_before[] = {
	" Message accepted for delivery",   /* Sendmail, OpenSMTPD: "2.0.0 wB3Abc Message ..." */
	" Saved",                           /* Dovecot LMTP: "2.0.0 <rcpt> Nx8mK0 Saved" */
};

/* The octets the markers above end with (each one's last that is no blank: 's', '=', '(',
 * 'p', 'y', 'd'), made from the markers themselves at load time, so a marker added there is
 * in it. A text without any of them holds no marker: smtp_tx_backend_qid then leaves out
 * its seven strstr calls (about 320 instructions a message for the short "2.0.0 Ok" of a
 * backend that names no id). */
static bool smtp_tx_qid_last[256];

__attribute__((constructor)) static void smtp_tx_qid_last_init(void)
{
	const size_t na = sizeof(smtp_tx_qid_after) / sizeof(smtp_tx_qid_after[0]);
	const size_t nb = sizeof(smtp_tx_qid_before) / sizeof(smtp_tx_qid_before[0]);

	for (size_t i = 0; i < na + nb; i++) {
		const char *m = i < na ? smtp_tx_qid_after[i] : smtp_tx_qid_before[i - na];
		size_t l = strlen(m);
		while (l > 1 && m[l - 1] == ' ')
			l--;
		smtp_tx_qid_last[(unsigned char)m[l - 1]] = true;
	}
}

bool smtp_tx_qid_force_search;

static bool smtp_tx_qid_may_hold(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (smtp_tx_qid_last[*p])
			return true;
	return false;
}

/* The backend's queue id in its 250 into qid (SMTP_TX_QID_MAX); "" when it names none. The
 * MTAs' wordings: the id follows a marker, or precedes a closing phrase. */
void smtp_tx_backend_qid(const char *text, char *qid)
{
	const char *const *after = smtp_tx_qid_after, *const *before = smtp_tx_qid_before;
	const size_t nafter = sizeof(smtp_tx_qid_after) / sizeof(smtp_tx_qid_after[0]);
	const size_t nbefore = sizeof(smtp_tx_qid_before) / sizeof(smtp_tx_qid_before[0]);
	const char *q = NULL, *e;
	size_t n = 0;

	qid[0] = '\0';
	if (text == NULL || (!smtp_tx_qid_force_search && !smtp_tx_qid_may_hold(text)))
		return;
	for (size_t i = 0; q == NULL && i < nafter; i++)
		if ((q = strstr(text, after[i])) != NULL)
			q += strlen(after[i]);
	for (size_t i = 0; q == NULL && i < nbefore; i++) {
		if ((e = strstr(text, before[i])) == NULL || e == text)
			continue;
		for (q = e; q > text && q[-1] != ' '; q--)
			;
		/* no id: the word before is the enhanced code or a <address> */
		if (*q == '<' || (q[0] >= '2' && q[0] <= '5' && q[1] == '.'))
			q = NULL;
	}
	if (q == NULL)
		return;
	while (q[n] && q[n] != ' ' && q[n] != '\r' && q[n] != ',' && q[n] != ')' && q[n] != ']' &&
	    n < SMTP_TX_QID_MAX - 1)
		n++;
	memcpy(qid, q, n);
	qid[n] = '\0';
}

/* See smtp_tx.h. */
const char smtp_tx_delivered_form[] = "event=delivered queue_id=%s backend=%s backend_queue_id=%s from=%s rcpts=%zu size=%llu client=%s score=%.1f";

/* Appends s[0..n) to out (cap octets) at *k, as far as it fits below cap - 1. */
static inline void smtp_tx_lput(char *out, size_t cap, size_t *k, const char *s, size_t n)
{
	if (__builtin_expect(n < cap - *k, 1)) {
		memcpy(out + *k, s, n);   /* a literal's n is a constant here: a few stores */
		*k += n;
		return;
	}
	memcpy(out + *k, s, cap - 1 - *k);
	*k = cap - 1;
}

/* See smtp_tx.h. The pieces in the form's order; a literal's length is known when this is
 * compiled, so its copy is a few stores. */
size_t smtp_tx_delivered_text(char *out, size_t cap, const char *queue_id, const char *backend,
    const char *backend_qid, const char *from, size_t nrcpts, unsigned long long size,
    const char *client, double score)
{
	char b[24], f[400];
	const char *q;
	size_t k = 0, n;
	int r;

#define SMTP_TX_LIT(l) smtp_tx_lput(out, cap, &k, l, sizeof(l) - 1)
#define SMTP_TX_STR(v) do { const char *v_ = (v) ? (v) : "(null)"; smtp_tx_lput(out, cap, &k, v_, strlen(v_)); } while (0)
	SMTP_TX_LIT("event=delivered queue_id=");
	SMTP_TX_STR(queue_id);
	SMTP_TX_LIT(" backend=");
	SMTP_TX_STR(backend);
	SMTP_TX_LIT(" backend_queue_id=");
	SMTP_TX_STR(backend_qid);
	SMTP_TX_LIT(" from=");
	SMTP_TX_STR(from);
	SMTP_TX_LIT(" rcpts=");
	n = log_fmt_u64(b, nrcpts, &q);
	smtp_tx_lput(out, cap, &k, q, n);
	SMTP_TX_LIT(" size=");
	n = log_fmt_u64(b, size, &q);
	smtp_tx_lput(out, cap, &k, q, n);
	SMTP_TX_LIT(" client=");
	SMTP_TX_STR(client);
	SMTP_TX_LIT(" score=");
	r = log_fmt_1f(f, sizeof(f), score);
	if (r > 0)
		smtp_tx_lput(out, cap, &k, f, (size_t)r);
#undef SMTP_TX_LIT
#undef SMTP_TX_STR
	out[k] = '\0';
	return k;
}

/* The backend took the message (its queue id: qid, or else the one in its reply text; ""
 * when neither has one). The "delivered" line is built only when it is logged (it is per message: the
 * queue id search and the escaped sender cost more than the rest of the reply). */
static const char smtp_tx_ledger_url[] = "ledger";	/* backend= of a retry the ledger answered */

static void smtp_tx_delivered(struct smtp_tx *tx, const char *backend_url, const char *reply,
    const char *qid)
{
	const struct hook_env *env = tx->env;
	char text[64], fv[600], qv[SMTP_TX_QID_MAX * 4 + 8], backend_qid[SMTP_TX_QID_MAX];

	if (backend_url != smtp_tx_ledger_url)	/* nothing sent: every recipient had it */
		counter_add(COUNTER_BYTES_DELIVERED, (long)tx->msg_size);
	if (log_get_level() <= LOG_LVL_INFO) {
		if (qid)
			snprintf(backend_qid, sizeof(backend_qid), "%s", qid);
		else
			smtp_tx_backend_qid(reply, backend_qid);
		/* smtp_tx_delivered_form, built without reading a format (about 1,000 instructions
		 * less a message at the default level); rcpts: the ones this backend took (an
		 * LMTP server may have refused some: event=lmtp_rcpt_refused) */
		char line[2048];
		size_t took = 0;
		for (size_t i = 0; i < env->nrcpts; i++)
			took += env->rcpts[i].status / 100 == 2;
		size_t n = smtp_tx_delivered_text(line, sizeof(line), env->queue_id, backend_url,
		    backend_qid[0] ? log_val(qv, sizeof(qv), backend_qid) : "-",
		    log_addr(fv, sizeof(fv), env->mail_from), took, (unsigned long long)tx->msg_size,
		    env->client_ip, env->score);
		log_event_text(LOG_LVL_INFO, env->session_id, line, n);
	}
	size_t n = 0;
	text[0] = '\0';
	smtp_tx_cat(text, sizeof(text), &n, "2.0.0 Ok: queued as ");
	smtp_tx_cat(text, sizeof(text), &n, env->queue_id);
	smtp_tx_finish_n(tx, 250, text, n, NULL, false, true);   /* one line: the queue id is ours */
}

/* The message could not be handed to any backend: a 4xx, the client retries. */
static void smtp_tx_deliver_tempfail(struct smtp_tx *tx, const char *why)
{
	opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = tx->env->session_id,
	    .client_ip = tx->env->client_ip, .stage = "data", .reason = "no_backend", .tempfail = true, .code = 451,
	    .level = LOG_LVL_WARNING }, "queue_id=%s detail=\"%s\" client=%s", tx->env->queue_id, why ? why : "",
	    tx->env->client_ip);
	smtp_tx_finish(tx, 451, "4.4.1 Message not accepted by any backend, try again later", "no_backend", false, false);
}

/* SMTP_TX_HELD_TEMPFAIL: the quarantine's 451 (none configured, or its file not written):
 * the message is not lost, and the client is told it was not held, not that no backend
 * took it (a backend was never asked). */
#define SMTP_TX_HELD_TEMPFAIL "4.3.0 Message held for review could not be stored, try again later"

/* The quarantine's file was not written (why: maildir's error, which names the call, the
 * file and the errno; or why the write did not start): a 451, the write's failure logged as
 * itself (not as no_backend: no backend is involved). */
static void smtp_tx_quarantine_failed(struct smtp_tx *tx, const char *why)
{
	char pv[600], rv[600];

	log_event(LOG_LVL_WARNING, tx->env->session_id, "event=quarantine_failed queue_id=%s path=%s reason=%s",
	    tx->env->queue_id, log_val(pv, sizeof(pv), tx->env->cfg->quarantine_dir),
	    log_val(rv, sizeof(rv), why && why[0] ? why : "unknown"));
	smtp_tx_finish(tx, 451, SMTP_TX_HELD_TEMPFAIL, "quarantine", false, false);
}

static void smtp_tx_maildir_cb(void *arg, int status, const char *qid, const char *err)
{
	struct smtp_tx *tx = arg;
	char q[SMTP_TX_QID_MAX];

	/* The write ran in the thread pool; the owner waited for it (pending). */
	if (smtp_tx_pending_done(tx))
		return;
	if (status != 0) {
		if (tx->backend == NULL) {	/* the quarantine store */
			smtp_tx_quarantine_failed(tx, err);
			return;
		}
		backend_report_failure(tx->pool, tx->backend, err);
		smtp_tx_leave_backend(tx);
		if (tx->attempts >= tx->env->cfg->backends.max_attempts) {
			smtp_tx_deliver_tempfail(tx, err);
			return;
		}
		counter_inc(COUNTER_BACKEND_FAILOVERS);
		smtp_tx_send(tx);
		return;
	}
	if (tx->backend)
		backend_report_success(tx->pool, tx->backend);
	/* one file for all: each recipient has it (an LMTP server's 4xx before this replay
	 * is no longer its result) */
	for (size_t i = 0; i < tx->env->nrcpts; i++)
		tx->env->rcpts[i].status = 250;
	snprintf(q, sizeof(q), "%s", qid ? qid : "");
	smtp_tx_delivered(tx, tx->backend ? tx->backend->url : "maildir", NULL, q);
}

/* Writes the message into the maildir at root (a backend's, or the quarantine: id, the held
 * message's X-Quarantine-ID, goes into the file's name too; NULL for a backend's). */
static void smtp_tx_write_maildir(struct smtp_tx *tx, const char *root, const char *id, const char *what)
{
	struct msgbuf *body = tx->env->new_body ? tx->env->new_body : tx->msg;
	size_t off = tx->env->new_body ? 0 : tx->body_off;

	if (maildir_deliver_tagged(&tx->w->loop, root, id, tx->prefix.v, tx->prefix.len, body, off, smtp_tx_maildir_cb,
	    tx) != 0) {
		if (tx->backend == NULL)
			smtp_tx_quarantine_failed(tx, what);
		else
			smtp_tx_deliver_tempfail(tx, what);
	} else
		tx->pending++;
}

/* The final reply (SMTP) or replies (LMTP: one per recipient) to the message. */
static void smtp_tx_data_reply_cb(void *arg, int n, const int *codes, const char *const *texts)
{
	struct smtp_tx *tx = arg;
	struct hook_env *env = tx->env;
	int ok = tx->rcpts_done, perm = 0, temp = 0;
	bool per_rcpt = (size_t)n == env->nrcpts;

	if (tx->closed)
		return;
	for (int i = 0; i < n; i++) {
		if (codes[i] / 100 == 2)
			ok++;
		else if (codes[i] / 100 == 5)
			perm++;
		else
			temp++;
	}
	/* A refusal of the gateway itself after the dot (gwrefuse.h; Exchange may refuse there
	 * too): no verdict on the message, which goes to the next server as after a 4xx (451
	 * 4.4.1 to the client when none is left), never a 5xx to the sender */
	bool gw = ok == 0 && temp == 0 && perm > 0 && smtp_tx_gateway_refused(tx, "data", codes[0], texts[0]);
	if (gw) {
		temp = perm;
		perm = 0;
	}
	/* Each recipient's own result: an LMTP server's reply for it (RFC 2033 4.2: one per
	 * recipient, in order), else the one reply for all. The session counts as delivered
	 * only the 2xx ones (opstats_note_message); a release keeps its file for the others. */
	for (size_t i = 0; i < env->nrcpts; i++) {
		/* (a gateway refusal: owed, as after a 4xx, not refused) */
		int c = gw ? 451 : codes[per_rcpt ? i : 0];
		env->rcpts[i].status = c;
		if (tx->rcpt_result)
			tx->rcpt_result(tx->rcpt_result_arg, &env->rcpts[i], c, gw ? SMTP_TX_GATEWAY_REFUSED : texts[per_rcpt ? i : 0]);
	}
	const char *url = tx->backend ? tx->backend->url : "?";
	if (temp == 0 && ok > 0) {
		if (perm) {
			log_event(LOG_LVL_WARNING, env->session_id, "event=partial_reject backend=%s rejected=%d accepted=%d",
			    url, perm, ok);
			/* the client gets 250 (the others have it) and no bounce comes from here:
			 * each one refused by name, for the operator to tell the sender */
			for (size_t i = 0; i < env->nrcpts; i++) {
				char av[600], rv[256];
				const char *t = texts[per_rcpt ? i : 0];

				if (env->rcpts[i].status / 100 != 5)
					continue;
				log_event(LOG_LVL_WARNING, env->session_id, "event=lmtp_rcpt_refused backend=%s rcpt=%s code=%d reply=%s added=%s queue_id=%s",
				    url, log_addr(av, sizeof(av), env->rcpts[i].addr), env->rcpts[i].status,
				    log_val(rv, sizeof(rv), t ? t : ""), env->rcpts[i].added ? "yes" : "no", env->queue_id);
			}
		}
		smtp_tx_delivered(tx, url, texts[0], NULL);
		return;
	}
	if (temp == 0 && perm > 0) {
		/* The backend refused the message for good: its verdict goes to the client. */
		char rv[256];   /* the backend's text: quoted and escaped as any value from outside */
		opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = tx->env->session_id,
		    .client_ip = tx->env->client_ip, .stage = "data", .reason = "backend", .code = codes[0] },
		    "backend=%s code=%d reply=%s client=%s", url, codes[0], log_val(rv, sizeof(rv), texts[0] ? texts[0] : ""),
		    tx->env->client_ip);
		/* mxgate sent BDAT where the client sent DATA: the backend's words for chunks
		 * ("Chunk exceeds message size limit") become DATA's, its codes kept */
		char worded[64];
		const char *text = texts[0];
		if (!tx->client_bdat && relay_sent_bdat(tx->relay))
			text = bdat_reply_for_data(codes[0], text, worded, sizeof(worded));
		smtp_tx_finish(tx, codes[0], text, "backend", false, true);
		return;
	}
	/* A temporary failure or a lost connection before the final 250: replay elsewhere.
	 * Logged with the first reply that is no 2xx (an LMTP server's first recipient may
	 * have its 250, the failure came after it). */
	char rv[256];
	int f = 0;
	while (f + 1 < n && codes[f] / 100 == 2)
		f++;
	log_event(LOG_LVL_INFO, tx->env->session_id, "event=backend_tempfail backend=%s code=%d reply=%s attempt=%d",
	    url, codes[f], log_val(rv, sizeof(rv), texts[f] ? texts[f] : ""), tx->attempts);
	if (ok > 0) {
		/* LMTP: some recipients already have it; the client's retry may duplicate for
		 * them, which is better than losing the others. */
		if (ok > tx->rcpts_done)	/* this server's own 250s; not a replay or a
					 * ledger-skipped retry that it deferred again */
			log_event(LOG_LVL_WARNING, tx->env->session_id,
			    "event=lmtp_partial backend=%s delivered=%d tempfailed=%d",
			    url, ok - tx->rcpts_done, temp);
		/* The replay carries only the recipients still owed (one reply per envelope
		 * recipient, in order): the others have their copy. */
		size_t i = per_rcpt ? env->nrcpts : 0;

		for (size_t k = 0; k < i; k++) {
			/* each one still owed by name, a filter's (added) told apart: the client's
			 * retry, should it come to that, repeats the message for the others */
			char av[600];

			if (codes[k] / 100 == 4 || codes[k] == 0)
				log_event(LOG_LVL_WARNING, env->session_id, "event=lmtp_rcpt_tempfail backend=%s rcpt=%s code=%d added=%s queue_id=%s",
				    url, log_addr(av, sizeof(av), env->rcpts[k].addr), codes[k],
				    env->rcpts[k].added ? "yes" : "no", env->queue_id);
		}

		for (size_t k = 0; k < i; k++)
			if (codes[k] / 100 == 2)
				smtp_tx_ledger_note(tx, &env->rcpts[k]);   /* for the ledger, in order */
		while (i-- > 0) {
			if (codes[i] / 100 != 2)
				continue;
			/* delivered: counted now, the envelope the outcome counts no longer has it */
			opstats_note_rcpts(tx->w->index, &env->rcpts[i], 1, OPS_MSG_DELIVERED);
			smtp_tx_remove_rcpt(env, i);
			tx->rcpts_done++;	/* still delivered: the outcome counts them */
		}
	}
	smtp_tx_leave_backend(tx);
	if (tx->attempts >= tx->env->cfg->backends.max_attempts) {
		smtp_tx_deliver_tempfail(tx, "all attempts failed");
		return;
	}
	counter_inc(COUNTER_BACKEND_FAILOVERS);
	smtp_tx_send(tx);
}

static void smtp_tx_send_est_cb(struct smtp_tx *tx, int code, const char *text)
{
	if (code / 100 == 2 && tx->env->nrcpts == 0 && tx->rcpts_done > 0) {
		/* every recipient still owed refused on replay (est_replay_refused): the others
		 * have their copy, the message was delivered */
		smtp_tx_delivered(tx, tx->backend ? tx->backend->url : "?", NULL, NULL);
		return;
	}
	if (code / 100 == 2 && tx->env->nrcpts == 0) {
		/* the only recipients left were added by filters and refused (est_added_refused) */
		smtp_tx_finish(tx, 550, "5.1.0 No recipients left after content filtering", "no_recipients", false, false);
		return;
	}
	if (code / 100 == 2) {
		smtp_tx_send(tx);
		return;
	}
	if (code / 100 == 5) {
		smtp_tx_finish(tx, code, text, "backend", false, false);
		return;
	}
	smtp_tx_deliver_tempfail(tx, text);
}

#define SMTP_TX_NEXT_KEEP 4096      /* a group's block up to this size is kept for the next */

static void smtp_tx_next_free(struct smtp_tx *tx)
{
	/* one block: both pointer arrays, then the strings; a small one stays for the next
	 * group (one per pipelined message) */
	if (tx->next_cap > SMTP_TX_NEXT_KEEP) {
		free(tx->next_block);
		tx->next_block = NULL;
		tx->next_cap = 0;
	}
	tx->next_from = tx->next_params = NULL;
	tx->next_rcpts = tx->next_rcpt_params = NULL;
	tx->next_nrcpts = 0;
	tx->next_data = false;
}

/* Copies s (with its NUL) to *at and returns the copy: one pass (stpcpy), the length was
 * measured already for the block's size. */
static char *smtp_tx_next_put(char **at, const char *s)
{
	char *d = *at;

	*at = stpcpy(d, s) + 1;
	return d;
}

void smtp_tx_set_next(struct smtp_tx *tx, const char *from, const char *params, const char *const *rcpts,
    const char *const *rcpt_params, size_t nrcpts, bool data)
{
	size_t total, lf, lp;

	smtp_tx_next_free(tx);
	if (nrcpts == 0)
		return;
	/* one allocation per group, not two per string */
	lf = strlen(from);
	lp = strlen(params);
	total = 2 * nrcpts * sizeof(char *) + lf + 1 + lp + 1;
	for (size_t i = 0; i < nrcpts; i++)
		total += strlen(rcpts[i]) + 1 + strlen(rcpt_params[i]) + 1;
	if (total > tx->next_cap) {
		free(tx->next_block);
		tx->next_block = malloc(total);
		if (tx->next_block == NULL)
			abort();
		tx->next_cap = total;
	}
	char **block = tx->next_block;
	char *at = (char *)(block + 2 * nrcpts);
	tx->next_rcpts = block;
	tx->next_rcpt_params = block + nrcpts;
	tx->next_from = memcpy(at, from, lf + 1);
	tx->next_params = memcpy(at + lf + 1, params, lp + 1);
	at += lf + 1 + lp + 1;
	for (size_t i = 0; i < nrcpts; i++) {
		tx->next_rcpts[i] = smtp_tx_next_put(&at, rcpts[i]);
		tx->next_rcpt_params[i] = smtp_tx_next_put(&at, rcpt_params[i]);
	}
	tx->next_nrcpts = nrcpts;
	tx->next_data = data;
}

/* The next transaction's commands (smtp_tx_set_next) go ahead with this message's dot when
 * the relay can take them (relay_can_ahead), as smtp_tx_est_send_mail would send them. */
static void smtp_tx_send_ahead(struct smtp_tx *tx)
{
	struct relay *r = tx->relay;
	char line[1100];

	long lmtp_lim = tx->env->cfg->backends.lmtp_recipient_limit;

	if (tx->next_nrcpts == 0 || tx->pool->nroutes > 0 || !relay_can_ahead(r) ||
	    (lmtp_lim > 0 && tx->next_nrcpts > (size_t)lmtp_lim && relay_is_lmtp(r)) ||
	    (!relay_offers(r, RELAY_EXT_SMTPUTF8) && tx->next_params[0] && strcasestr(tx->next_params, "SMTPUTF8")))
		goto out;
	smtp_tx_mail_line_for(&tx->ahead_buf, r, tx->next_from, tx->next_params);
	relay_queue_ahead(r, tx->ahead_buf.v, tx->ahead_buf.len);
	for (size_t i = 0; i < tx->next_nrcpts; i++) {
		size_t n = smtp_tx_rcpt_line(r, line, sizeof(line), tx->next_rcpts[i], tx->next_rcpt_params[i]);

		relay_queue_ahead(r, line, n);
	}
	if (tx->next_data)
		relay_queue_ahead(r, "DATA", 4);
	tx->ahead_sent = true;
out:
	smtp_tx_next_free(tx);
}

/* The message goes to an LMTP server with more recipients than the replies relay.c keeps
 * after the dot (RELAY_LMTP_MAX_RCPT): a filter added them at end of data (smfi_addrcpt),
 * past the RCPT-time cap (smtp_tx_lmtp_full), or a failover reached an LMTP server. One
 * reply would then stand for recipients it does not answer (a refusal counted delivered).
 * Postfix's queue splits such a list into transactions; without a queue the message fails
 * with 451 before its DATA: a retry meets the same filter, but the client's queue keeps the
 * message and in the end tells the sender, where dropping the extra recipients would lose
 * their copies without a word to anyone. Logged (warning) for the operator, whose fix is
 * the filter's or an SMTP backend. True when it failed the message. */
static bool smtp_tx_lmtp_overflow(struct smtp_tx *tx)
{
	struct hook_env *env = tx->env;
	size_t added = 0;

	if (env->nrcpts <= RELAY_LMTP_MAX_RCPT || !relay_is_lmtp(tx->relay))
		return false;
	for (size_t i = 0; i < env->nrcpts; i++)
		added += env->rcpts[i].added;
	opstats_refusal(&(struct opstats_refusal){ .worker = tx->w->index, .id = env->session_id,
	    .client_ip = env->client_ip, .stage = "data", .reason = "lmtp_too_many_recipients", .code = 451,
	    .level = LOG_LVL_WARNING }, "backend=%s rcpts=%zu added=%zu limit=%d queue_id=%s client=%s",
	    tx->backend->url, env->nrcpts, added, RELAY_LMTP_MAX_RCPT, env->queue_id, env->client_ip);
	relay_release(tx->relay, false);	/* the recipients are on it, DATA is not */
	tx->relay = NULL;
	tx->backend = NULL;
	/* reason "backend": a failure on our side, nothing said of the client (reputation) */
	smtp_tx_finish(tx, 451, "4.5.3 Too many recipients for one delivery, try again later", "backend",
	    false, false);
	return true;
}

/* Sends the held message to the current backend, establishing one first if needed. */
static void smtp_tx_send(struct smtp_tx *tx)
{
	struct msgbuf *body = tx->env->new_body ? tx->env->new_body : tx->msg;
	size_t off = tx->env->new_body ? 0 : tx->body_off;
	const char *data;
	size_t len;

	if (tx->backend == NULL || (tx->relay == NULL && tx->backend->kind != BACKEND_MAILDIR)) {
		/* No connection (or it died between commands): replay on another backend. */
		smtp_tx_leave_backend(tx);
		smtp_tx_establish(tx, smtp_tx_send_est_cb);
		return;
	}
	if (tx->backend->kind == BACKEND_MAILDIR) {
		smtp_tx_write_maildir(tx, tx->backend->path, NULL, "maildir write could not start");
		return;
	}
	const char *next = relay_ahead_next(tx->relay);
	if (next && strcasecmp(next, "DATA") != 0) {
		/* Commands sent ahead that this transaction never took (a recipient refused here
		 * on the way): that connection has a different envelope. Start over. */
		smtp_tx_drop_ahead(tx);
		smtp_tx_send(tx);
		return;
	}
	data = msgbuf_data(body, &len);
	if (data == NULL) {
		smtp_tx_deliver_tempfail(tx, "message unreadable");
		return;
	}
	if (smtp_tx_lmtp_overflow(tx))
		return;
	relay_take_data_ahead(tx->relay);
	smtp_tx_send_ahead(tx);
	relay_send_message(tx->relay, tx->prefix.v, tx->prefix.len, data + off, len - off,
	    tx->body_wire && tx->env->new_body == NULL, (int)tx->env->nrcpts,
	    smtp_tx_data_reply_cb, tx);
}

/* Empties the header block on the way out; a small one keeps its memory for the next
 * message (it is built per message). */
static void smtp_tx_prefix_clear(struct smtp_tx *tx)
{
	if (tx->prefix.cap > SMTP_TX_PREFIX_KEEP) {
		strbuf_free(&tx->prefix);
	} else if (tx->prefix.v != NULL) {
		tx->prefix.len = 0;
		tx->prefix.v[0] = '\0';
	}
}

_Thread_local unsigned long smtp_tx_rcpt_cmps;

/* qsort/bsearch order of recipient addresses: case-insensitive, as the envelope compares
 * them (strcasecmp); counted for the unit test that bounds the cost. */
static int smtp_tx_addr_cmp(const char *a, const char *b)
{
	smtp_tx_rcpt_cmps++;
	return strcasecmp(a, b);
}

static int smtp_tx_pstr_cmp_cb(const void *a, const void *b)
{
	return smtp_tx_addr_cmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted by address, then by index (a stable order: the first of equal ones comes first). */
struct smtp_tx_key {
	const char *addr;
	size_t i;      /* index in the caller's list */
	size_t n;      /* deletions: how many ask for this address (on the run's first) */
};

static int smtp_tx_key_cmp_cb(const void *a, const void *b)
{
	const struct smtp_tx_key *x = a, *y = b;
	int c = smtp_tx_addr_cmp(x->addr, y->addr);

	return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int smtp_tx_key_find_cb(const void *k, const void *e)
{
	return smtp_tx_addr_cmp(k, ((const struct smtp_tx_key *)e)->addr);
}

static void *smtp_tx_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (p == NULL)
		abort();
	return p;
}

/* Applies the filters' recipient deletions and additions to the envelope; true when it
 * changed. Each deletion takes out the first envelope recipient of that address (compared
 * case-insensitively) still there; an added recipient the envelope already has, or one
 * added twice, is sent once (Postfix's cleanup too). Sorted and searched, not compared
 * pairwise: O((n + d + a) log(n + d + a)) for n recipients, d deletions and a additions, each
 * up to limits.max_recipients (and twice that deleted), on the event loop. */
static bool smtp_tx_apply_rcpt_changes(struct smtp_tx *tx)
{
	struct hook_env *env = tx->env;
	bool changed = false;

	if (env->ndel_rcpts > 0 && env->nrcpts > 0) {
		struct smtp_tx_key *del = smtp_tx_xcalloc(env->ndel_rcpts, sizeof(*del));
		size_t nu = 0, w = 0;

		for (size_t i = 0; i < env->ndel_rcpts; i++)
			del[i] = (struct smtp_tx_key){ env->del_rcpts[i], i, 0 };
		qsort(del, env->ndel_rcpts, sizeof(*del), smtp_tx_key_cmp_cb);
		/* one key per address, with how many deletions name it */
		for (size_t i = 0; i < env->ndel_rcpts; i++) {
			if (nu > 0 && smtp_tx_addr_cmp(del[nu - 1].addr, del[i].addr) == 0) {
				del[nu - 1].n++;
				continue;
			}
			del[nu] = del[i];
			del[nu++].n = 1;
		}
		/* Keeps the envelope's order; a removed slot (and its block) goes past the kept
		 * ones: the slots between w and r are all removed ones. */
		for (size_t r = 0; r < env->nrcpts; r++) {
			struct smtp_tx_key *k = bsearch(env->rcpts[r].addr, del, nu, sizeof(*del), smtp_tx_key_find_cb);

			if (k && k->n > 0) {
				k->n--;
				changed = true;
				continue;
			}
			if (w != r) {
				struct rcpt t = env->rcpts[w];

				env->rcpts[w] = env->rcpts[r];
				env->rcpts[r] = t;
			}
			w++;
		}
		env->nrcpts = w;
		free(del);
	}
	if (env->nadd_rcpts > 0) {
		size_t n = env->nrcpts, na = env->nadd_rcpts;
		const char **have = smtp_tx_xcalloc(n, sizeof(*have));
		struct smtp_tx_key *add = smtp_tx_xcalloc(na, sizeof(*add));
		bool *send = smtp_tx_xcalloc(na, sizeof(*send));

		for (size_t j = 0; j < n; j++)
			have[j] = env->rcpts[j].addr;
		qsort(have, n, sizeof(*have), smtp_tx_pstr_cmp_cb);
		for (size_t i = 0; i < na; i++)
			add[i] = (struct smtp_tx_key){ env->add_rcpts[i].addr, i, 0 };
		qsort(add, na, sizeof(*add), smtp_tx_key_cmp_cb);
		/* the first of each address's run, unless the envelope has it already */
		for (size_t i = 0; i < na; i++) {
			if (i > 0 && smtp_tx_addr_cmp(add[i - 1].addr, add[i].addr) == 0)
				continue;
			send[add[i].i] = bsearch(&add[i].addr, have, n, sizeof(*have), smtp_tx_pstr_cmp_cb) == NULL;
		}
		free(add);
		free(have);
		for (size_t i = 0; i < na; i++) {
			if (!send[i])
				continue;
			smtp_tx_add_rcpt(tx, env->add_rcpts[i].addr,
			    env->add_rcpts[i].params ? env->add_rcpts[i].params : "", true);
			changed = true;
		}
		free(send);
	}
	return changed;
}

/* Applies the end-of-data verdict's envelope and header changes and builds the outgoing
 * header block. False when the message cannot be read. */
static bool smtp_tx_prepare(struct smtp_tx *tx)
{
	struct hook_env *env = tx->env;
	size_t len, hlen;
	const char *data = msgbuf_data(tx->msg, &len);
	/* RFC 3848: S for STARTTLS/implicit TLS, A for SMTP AUTH (the backend's filters read it) */
	const char *with = !env->esmtp ? (env->tls ? "SMTPS" : "SMTP") : env->auth_user ?
	    (env->tls ? "ESMTPSA" : "ESMTPA") : (env->tls ? "ESMTPS" : "ESMTP");
	bool envelope_changed = false, drop_owned;

	if (data == NULL)
		return false;
	smtp_tx_prefix_clear(tx);
	headers_build_received_cached(&tx->prefix, &tx->received, env, tx->env->cfg->hostname, with);
	hlen = smtp_tx_header_len(tx);
	/* a sender's copy of a field mxgate owns never goes out (ownfields.h); a released
	 * message's are mxgate's own, written when it was held (smtp_tx_data_end looked) */
	drop_owned = tx->drop_owned;
	if (env->nhdr_edits == 0 && env->new_body == NULL && !drop_owned) {
		/* The header block as it came: it goes with the body from the message buffer
		 * (the same octets as a copy behind the Received field; no copy, and in wire form
		 * when the content is, body_wire). */
		tx->body_off = 0;
	} else {
		/* fields a milter inserted at its index 0 go above our Received (at 0) */
		if (drop_owned)
			headers_apply_edits_owned(data, hlen, env->hdr_edits, env->nhdr_edits, &tx->prefix, 0);
		else
			headers_apply_edits_at(data, hlen, env->hdr_edits, env->nhdr_edits, &tx->prefix, 0);
		if (env->new_body)
			headers_end_block(&tx->prefix);
		tx->body_off = hlen;
	}
	/* Envelope changes from filters: apply to the envelope and start a fresh backend
	 * transaction with it. */
	if (smtp_tx_apply_rcpt_changes(tx))
		envelope_changed = true;
	if (env->new_mail_from) {
		/* the block holds "params\0from\0": the new sender replaces the tail */
		size_t lp = strlen(env->mail_params), lf = strlen(env->new_mail_from);

		if (lp + lf + 2 > tx->from_cap) {
			char *p = realloc(tx->from_blk, lp + lf + 2);

			if (p == NULL)
				abort();
			tx->from_blk = p;
			tx->from_cap = lp + lf + 2;
		}
		memcpy(tx->from_blk + lp + 1, env->new_mail_from, lf + 1);
		env->mail_params = tx->from_blk;
		env->mail_from = tx->from_blk + lp + 1;
		envelope_changed = true;
	}
	if (envelope_changed && tx->relay) {
		relay_release(tx->relay, false);
		tx->relay = NULL;
		tx->backend = NULL;
	}
	return true;
}

/* Held for review: into the quarantine maildir instead of a backend. */
static void smtp_tx_quarantine(struct smtp_tx *tx)
{
	/* the path config_check parsed when the config was loaded */
	if (tx->env->cfg->quarantine_dir == NULL) {
		log_event(LOG_LVL_WARNING, tx->env->session_id, "event=quarantine_unavailable queue_id=%s", tx->env->queue_id);
		smtp_tx_finish(tx, 451, SMTP_TX_HELD_TEMPFAIL, "quarantine", false, false);
		return;
	}
	if (tx->relay) {
		relay_release(tx->relay, true);
		tx->relay = NULL;
	}
	tx->backend = NULL;
	counter_inc(COUNTER_MESSAGES_QUARANTINED);
	char rv[512];
	log_event(LOG_LVL_INFO, tx->env->session_id, "event=quarantine queue_id=%s reason=%s", tx->env->queue_id,
	    log_val(rv, sizeof(rv), tx->env->quarantine_reason));
	/* the envelope on top (amavis's fields): a release needs the sender and every recipient */
	struct strbuf q = { 0 };
	maildir_quarantine_fields(&q, tx->env->mail_from, tx->env->rcpts, tx->env->nrcpts, tx->env->queue_id,
	    tx->env->quarantine_reason);
	strbuf_append(&q, tx->prefix.v ? tx->prefix.v : "", tx->prefix.len);
	strbuf_free(&tx->prefix);
	tx->prefix = q;
	smtp_tx_write_maildir(tx, tx->env->cfg->quarantine_dir, tx->env->queue_id, "quarantine write could not start");
}

static void smtp_tx_deliver_prepared(struct smtp_tx *tx, bool quarantine)
{
	if (quarantine)
		smtp_tx_quarantine(tx);
	else if (tx->env->nrcpts == 0)   /* filters deleted every recipient: nothing to send */
		smtp_tx_finish(tx, 550, "5.1.0 No recipients left after content filtering", "no_recipients", false, true);
	else
		smtp_tx_send(tx);
}

/* ARC sealing (filters/arc_seal.c) ran in the thread pool; the owner waited for it (pending). */
static void smtp_tx_sealed_cb(void *arg)
{
	struct smtp_tx *tx = arg;

	if (!smtp_tx_pending_done(tx))
		smtp_tx_deliver_prepared(tx, false);
}

static void smtp_tx_sealed_quarantine_cb(void *arg)
{
	struct smtp_tx *tx = arg;

	if (!smtp_tx_pending_done(tx))
		smtp_tx_deliver_prepared(tx, true);
}

/* Starts sealing the outgoing message (arc.seal): true when it went to the thread pool and
 * the delivery goes on in its callback. */
static bool smtp_tx_seal(struct smtp_tx *tx, bool quarantine)
{
	struct hook_env *env = tx->env;
	size_t len = 0;
	const char *b = msgbuf_data(env->new_body ? env->new_body : tx->msg, &len);
	size_t off = env->new_body ? 0 : tx->body_off;

	if (b == NULL || off > len)
		return false;
	tx->pending++;
	if (arc_seal_start(&tx->w->loop, env, &tx->prefix, b + off, len - off,
	    quarantine ? smtp_tx_sealed_quarantine_cb : smtp_tx_sealed_cb, tx) == 0)
		return true;
	tx->pending--;
	return false;
}

/* The delivery once the ledger can be asked inline (memory, LMDB, Redis's answer held). */
static void smtp_tx_deliver_looked(struct smtp_tx *tx, bool quarantine)
{
	if (smtp_tx_ledger_skip(tx)) {
		/* every recipient has the message from an earlier try: nothing to send */
		smtp_tx_delivered(tx, smtp_tx_ledger_url, NULL, NULL);
		return;
	}
	if (tx->env->cfg->arc.seal.enabled && (quarantine || tx->env->nrcpts > 0) && smtp_tx_seal(tx, quarantine))
		return;
	smtp_tx_deliver_prepared(tx, quarantine);
}

/* Room for n keys in ledger_held. False when out of memory. */
static bool smtp_tx_ledger_held_room(struct smtp_tx *tx, size_t n)
{
	if (n <= tx->ledger_held_cap)
		return true;
	void *p = realloc(tx->ledger_held, n * sizeof(*tx->ledger_held));

	if (p == NULL)
		return false;
	tx->ledger_held = p;
	tx->ledger_held_cap = n;
	return true;
}

static void smtp_tx_ledger_keys_cb(void *arg, int status, const char *reason, const bool *held);

/* A Redis lookup's answer noted (ledger_store_note: the store's error or its return). A
 * store freed with the lookup out ("retired": not expected while the session holds its
 * generation) is no fault of Redis's: a debug line, no event=ledger_store_error; the
 * delivery goes on as without the ledger (at most a second copy, never a loss). */
static void smtp_tx_ledger_answered(const struct smtp_tx *tx, const struct ledger_redis *rd, int status,
    const char *reason)
{
	if (status != 0 && reason != NULL && strcmp(reason, "retired") == 0) {
		log_event(LOG_LVL_DEBUG, tx->env->session_id, "event=ledger_lookup_dropped reason=retired "
		    "action=deliver");
		return;
	}
	ledger_store_note(rd ? ledger_redis_name(rd) : "redis", status == 0, reason);   /* no password */
}

/* Asks the Redis ledger about the n keys in ledger_held (cb: the answer). True when the
 * question is out (pending); false when it could not go (noted: the store is down). */
static bool smtp_tx_ledger_ask(struct smtp_tx *tx, size_t n, ledger_redis_cb cb)
{
	struct ledger_redis *rd = smtp_tx_ledger_redis(tx);
	const char *reason = NULL;

	if (rd == NULL)
		return false;
	if (ledger_redis_lookup(rd, (const uint8_t (*)[LEDGER_KEY_LEN])tx->ledger_held, n, cb, tx, &reason) < 0) {
		ledger_store_note(ledger_redis_name(rd), false, reason);
		return false;
	}
	tx->pending++;
	return true;
}

/* The pair marks' answer (smtp_tx_ledger_remote): where one is held, the message's digest
 * keys of those recipients are asked next; none held (the ordinary message): the delivery
 * goes on with no digest made. A failure (timeout, Redis down): delivered as without the
 * Redis ledger (ledger_store_error action=deliver: a possible duplicate, never a loss). */
static void smtp_tx_ledger_pairs_cb(void *arg, int status, const char *reason, const bool *held)
{
	struct smtp_tx *tx = arg;
	struct ledger_redis *rd;
	const uint8_t *d;
	size_t n = 0;

	if (smtp_tx_pending_done(tx))
		return;
	rd = smtp_tx_ledger_redis(tx);
	smtp_tx_ledger_answered(tx, rd, status, reason);
	/* the recipients as asked: nothing changes the envelope while the lookup is out */
	size_t asked = tx->ledger_asked < tx->env->nrcpts ? tx->ledger_asked : tx->env->nrcpts;

	if (status == 0) {
		for (size_t i = 0; i < asked; i++)
			if (held[i])
				n++;
	}
	if (n == 0 || (d = smtp_tx_ledger_digest(tx)) == NULL) {
		smtp_tx_deliver_looked(tx, tx->ledger_quarantine);
		return;
	}
	for (size_t i = 0, j = 0; i < asked; i++)
		if (held[i])
			ledger_key(tx->ledger_held[j++], d, tx->env->mail_from, tx->env->rcpts[i].addr);
	tx->ledger_asked = n;   /* asked, not held: ledger_nheld stays 0 until the answer */
	if (!smtp_tx_ledger_ask(tx, n, smtp_tx_ledger_keys_cb))
		smtp_tx_deliver_looked(tx, tx->ledger_quarantine);
}

/* The digest keys' answer: those held stay in ledger_held for smtp_tx_ledger_skip. */
static void smtp_tx_ledger_keys_cb(void *arg, int status, const char *reason, const bool *held)
{
	struct smtp_tx *tx = arg;
	struct ledger_redis *rd;
	size_t n = 0;

	if (smtp_tx_pending_done(tx))
		return;
	rd = smtp_tx_ledger_redis(tx);
	smtp_tx_ledger_answered(tx, rd, status, reason);
	if (status == 0) {
		for (size_t i = 0; i < tx->ledger_asked; i++)
			if (held[i])
				memmove(tx->ledger_held[n++], tx->ledger_held[i], LEDGER_KEY_LEN);
	}
	tx->ledger_nheld = n;
	smtp_tx_deliver_looked(tx, tx->ledger_quarantine);
}

/* With the ledger in Redis: asks for the pair marks of the message's recipients (one MGET),
 * and the delivery goes on in smtp_tx_ledger_pairs_cb. True when it went out. */
static bool smtp_tx_ledger_remote(struct smtp_tx *tx, bool quarantine)
{
	const struct hook_env *env = tx->env;
	struct ledger_redis *rd;

	tx->ledger_nheld = 0;
	if (!smtp_tx_ledger_on(tx) || env->nrcpts == 0 || (rd = smtp_tx_ledger_redis(tx)) == NULL)
		return false;
	if (!smtp_tx_ledger_held_room(tx, env->nrcpts)) {
		ledger_store_note(ledger_redis_name(rd), false, "out_of_memory");
		return false;
	}
	for (size_t i = 0; i < env->nrcpts; i++)
		ledger_pair_key(tx->ledger_held[i], ledger_pair(env->mail_from, env->rcpts[i].addr));
	tx->ledger_quarantine = quarantine;
	tx->ledger_asked = env->nrcpts;
	return smtp_tx_ledger_ask(tx, env->nrcpts, smtp_tx_ledger_pairs_cb);
}

void smtp_tx_deliver(struct smtp_tx *tx, bool quarantine, smtp_tx_done_fn cb, void *arg)
{
	tx->done = cb;
	tx->done_arg = arg;
	if (!smtp_tx_prepare(tx)) {
		smtp_tx_finish(tx, 451, "4.3.0 Error: message unreadable, try again later", "unreadable", false, false);
		return;
	}
	if (smtp_tx_ledger_remote(tx, quarantine))
		return;		/* goes on in smtp_tx_ledger_pairs_cb */
	smtp_tx_deliver_looked(tx, quarantine);
}

/* ---- life --------------------------------------------------------------------------- */

void smtp_tx_reset(struct smtp_tx *tx, bool reusable)
{
	struct hook_env *env = tx->env;

	if (tx->next_relay && tx->next_resets++ >= 1) {
		/* Kept for a transaction that did not come next (smtp_tx_set_next): the reset
		 * of the MAIL that takes it over is the only one it outlives. */
		relay_release(tx->next_relay, false);
		tx->next_relay = NULL;
	}
	if (tx->relay && reusable && tx->ahead_sent && tx->next_relay == NULL && relay_ahead_next(tx->relay)) {
		/* The next transaction's commands went ahead on it: kept for smtp_tx_begin. */
		tx->next_relay = tx->relay;
		tx->next_resets = 0;
		relay_set_owner(tx->next_relay, &tx->next_relay);
		tx->relay = NULL;
	}
	if (tx->relay) {
		relay_release(tx->relay, reusable);
		tx->relay = NULL;
	}
	tx->ahead_sent = false;
	smtp_tx_next_free(tx);
	tx->backend = NULL;
	tx->route = 0;
	tx->tried = 0;
	tx->stale = 0;
	tx->attempts = 0;
	tx->rcpts_done = 0;
	tx->ledger_digested = false;
	tx->ledger_nkeys = 0;
	tx->ledger_rcpts.len = 0;
	tx->ledger_nheld = 0;
	tx->mail_deferrable = false;
	tx->data_follows = false;
	tx->mail_line = NULL;	/* its buffer (mail_buf) is kept for the next message */
	if (tx->msg != NULL && tx->msg_spare == NULL) {
		/* kept, emptied, for the session's next message (a small one keeps its memory, a
		 * large one's goes warm to the worker's next large message: msgbuf_clear_warm) */
		msgbuf_clear_warm(tx->msg, SMTP_TX_MSG_KEEP);
		tx->msg_spare = tx->msg;
	} else {
		msgbuf_free(tx->msg);
	}
	tx->msg = NULL;
	msgbuf_free(tx->filter_view);
	tx->filter_view = NULL;
	tx->drop_owned = false;
	smtp_tx_prefix_clear(tx);
	tx->msg_state = SMTP_TX_MSG_OK;
	tx->body_wire = false;
	tx->msg_size = 0;
	tx->hdr_match = 0;
	tx->hdr_told = false;
	tx->hdr_len = 0;
	smtp_tx_env_clear(tx, true);
	env->cur_rcpt = NULL;
	env->msg = env->msg_sent = NULL;
	env->queue_id[0] = '\0';
	hook_env_reset_txn(env);
	env->txn_symbols_start = env->nsymbols;
}

void smtp_tx_close(struct smtp_tx *tx)
{
	/* Some recipients have the message and the client went away before its reply (a reset
	 * mid-replay): it heard no 250, so its queue sends it again, as after a 4xx. */
	if (tx->ledger_nkeys > 0)
		smtp_tx_ledger_end(tx, 451);
	tx->closed = true;
	/* The session ends (mxgate's idle timeout, max_errors, a drop, the client gone): a
	 * connection with nothing in flight is ended as the protocol asks, RSET and back to the
	 * pool or QUIT (bounded by reply_timeout), not cut (the backend logs "lost connection"
	 * after a command); one with replies outstanding or a message open is closed. No
	 * callback comes either way (relay_release). */
	if (tx->relay) {
		relay_release(tx->relay, true);
		tx->relay = NULL;
	}
	if (tx->next_relay) {
		relay_release(tx->next_relay, true);
		tx->next_relay = NULL;
	}
	relay_session_end(tx->w, tx->env);	/* the connections kept for the session: back or QUIT */
}

int smtp_tx_pending(const struct smtp_tx *tx)
{
	return tx->pending;
}

void smtp_tx_free(struct smtp_tx *tx)
{
	smtp_tx_next_free(tx);
	free(tx->next_block);
	tx->next_block = NULL;
	tx->next_cap = 0;
	smtp_tx_env_clear(tx, false);
	msgbuf_free(tx->msg);
	tx->msg = NULL;
	msgbuf_free(tx->msg_spare);
	tx->msg_spare = NULL;
	msgbuf_free(tx->filter_view);
	tx->filter_view = NULL;
	strbuf_free(&tx->prefix);
	headers_received_cache_free(&tx->received);
	strbuf_free(&tx->mail_buf);
	strbuf_free(&tx->ahead_buf);
	strbuf_free(&tx->ledger_rcpts);
	free(tx->ledger_keys);
	tx->ledger_keys = NULL;
	free(tx->ledger_held);
	tx->ledger_held = NULL;
	tx->ledger_nheld = tx->ledger_held_cap = 0;
	tx->ledger_nkeys = tx->ledger_cap = 0;
	tx->mail_line = NULL;
	tx->rcpt = tx->rcpt_params = NULL;
}
