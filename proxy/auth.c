/* auth.c — the SMTP AUTH verb, see auth.h: its config table, the per-worker Dovecot client
 * and guard, and the exchange (AUTH line -> [334 challenge -> client answer]... -> verdict).
 *
 * The exchange, for a session:
 *   AUTH mech [initial]   check (offered, not yet authenticated, no transaction, syntax)
 *     -> guard read (the address over auth.max_failures: 421, close)
 *     -> Dovecot AUTH (busy) -> CONT: 334 <challenge>, state auth -> a client line:
 *        "*" 501 5.0.0 | bad base64 501 5.5.2 | Dovecot CONT (busy) -> ...
 *     -> OK: 235 2.7.0, env.auth_user / auth_mech set (XCLIENT LOGIN=, milter macros,
 *        ratelimit key auth_user)
 *     -> FAIL: guard +1 for address and user -> 535 5.7.8 held delay_ms, or past the
 *        limit 421 4.7.0 and close
 *     -> TEMPFAIL: 454 4.7.0 (or 421 and close: on_error disconnect)
 * Every async step is cancelled by auth_session_reset() (STARTTLS, close): no callback
 * runs on a session that has gone. */
#include "auth.h"
#include "auth_guard.h"
#include "cfg.h"
#include "config.h"
#include "counters.h"
#include "log.h"
#include "netaddr.h"
#include "sasl.h"
#include "sasl_dovecot.h"
#include "session_int.h"
#include "worker.h"
#include "store/store.h"

#include <ctype.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <strings.h>

/* ---- configuration ------------------------------------------------------------------- */

static const char *const auth_on_error_choices[] = { "tempfail", "disconnect", NULL };

static int auth_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct auth_config *a = obj;
	struct sasl_dovecot_addr addr;
	const char *why;
	int rc = 0;

	if (a->dovecot && sasl_dovecot_parse_addr(a->dovecot, &addr, &why) != 0)
		rc = cfg_error_key(p, n, "dovecot", -1, "%s: \"%s\"", why, a->dovecot);
	if (a->store && strcmp(a->store, "local") != 0 && !store_spec_is_redis(a->store))
		rc = cfg_error_key(p, n, "store", -1, "expected local, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	if (a->max_delay < a->failure_delay)
		rc = cfg_error_key(p, n, "max_delay", -1, "shorter than failure_delay");
	return rc;
}

static const struct cfg_field auth_fields[] = {
	{ "dovecot", CFG_STRING, offsetof(struct auth_config, dovecot),
	  .doc = "Dovecot's auth-client socket checking the credentials: unix:/run/dovecot/auth-client or inet:127.0.0.1:12345 (no AUTH when unset)" },
	{ "timeout", CFG_DURATION, offsetof(struct auth_config, timeout), "20s", 100, 300000,
	  .doc = "wait for each answer of the authentication service (connect included); then on_error. Above Dovecot's own delay of a failing address (up to 15s)" },
	{ "allow_plaintext", CFG_BOOL, offsetof(struct auth_config, allow_plaintext), "false",
	  .doc = "offer AUTH without TLS too (passwords in clear text: only on a trusted network)" },
	{ "on_error", CFG_ENUM, offsetof(struct auth_config, on_error), "tempfail", .choices = auth_on_error_choices,
	  .doc = "the service cannot answer: tempfail (454 4.7.0, the session goes on) or disconnect (421 4.7.0)" },
	{ "store", CFG_STRING, offsetof(struct auth_config, store), "local",
	  .doc = "failed-AUTH counts: local (this process), redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db] (shared by all nodes)" },
	{ "max_failures", CFG_INT, offsetof(struct auth_config, max_failures), "5", 1, 100000,
	  .doc = "failed AUTH per client address and per user name within failure_window; past it 421 4.7.0 and disconnect" },
	{ "failure_window", CFG_DURATION, offsetof(struct auth_config, failure_window), "15m", 1000, 86400000,
	  .doc = "how long a failure counts (from the last one)" },
	{ "failure_delay", CFG_DURATION, offsetof(struct auth_config, failure_delay), "1s", 0, 600000,
	  .doc = "the 535 after a first failure is held this long; it doubles with each further failure" },
	{ "max_delay", CFG_DURATION, offsetof(struct auth_config, max_delay), "30s", 0, 600000,
	  .doc = "the longest a 535 is held" },
	{ "allow", CFG_CIDRLIST, offsetof(struct auth_config, allow), NULL,
	  .doc = "client addresses whose failures block no one by address (a campus NAT, a webmail server): counted and logged, but only the per-user count delays and refuses there" },
	{ NULL }
};

const struct cfg_table auth_config_table = {
	"auth", sizeof(struct auth_config), auth_fields, auth_validate
};

/* ---- per worker ------------------------------------------------------------------------ */

struct auth_worker {
	const struct auth_config *cfg;
	struct sasl_dovecot *dovecot;
	struct auth_guard *guard;
};

struct auth_worker *auth_worker_new(const struct mx_config *cfg, uv_loop_t *loop, int worker)
{
	struct auth_worker *aw;

	if (cfg->auth.dovecot == NULL)
		return NULL;
	aw = calloc(1, sizeof(*aw));
	if (aw == NULL)
		goto fail;
	aw->cfg = &cfg->auth;
	aw->dovecot = sasl_dovecot_new(loop, cfg->auth.dovecot, cfg->auth.timeout);
	aw->guard = auth_guard_new(loop, &cfg->auth, (int)cfg->limits.client_ipv6_prefix, worker);
	if (aw->dovecot == NULL || aw->guard == NULL)
		goto fail;
	sasl_dovecot_prepare(aw->dovecot);   /* the mechanisms, before the first EHLO */
	return aw;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=auth worker=%d reason=init", worker);
	auth_worker_free(aw);
	return NULL;
}

void auth_worker_free(struct auth_worker *aw)
{
	if (aw == NULL)
		return;
	sasl_dovecot_free(aw->dovecot);
	auth_guard_free(aw->guard);
	free(aw);
}

/* ---- the session's state ---------------------------------------------------------------- */

struct auth_session {
	enum sasl_mech mech;
	char initial[SASL_MAX_B64 + 1];   /* the initial response as sent ("=": empty) */
	bool has_initial;
	char user[SASL_MAX_FIELD + 1];    /* as the client named it, for counts and logs */
	bool named;                       /* the piece naming the user has been seen */
	struct sasl_dovecot_req *req;
	struct auth_guard_req *greq;
	char reason[128];                 /* Dovecot's, for the log */
	char authed_user[SASL_MAX_FIELD + 1];  /* after 235: env.auth_user points here */
	char authed_mech[16];             /* and env.auth_mech here */
	struct verdict lifted;            /* the connect refusal AUTH lifted (back on reset) */
	int lifted_code;                  /* and the session outcome it had set (refused_code) */
	char lifted_reason[sizeof(((struct session *)0)->refused_reason)];
	bool has_lifted;
};

static struct auth_worker *auth_worker_of(const struct session *s)
{
	return s->wg->auth;
}

static bool auth_listener_has(const struct session *s)
{
	return s->lc->submission || s->lc->auth;
}

/* See auth_config.h. */
int auth_config_warnings(const struct mx_config *cfg, void *err_fp)
{
	char why[PATH_MAX + 100], at[PATH_MAX + 32];

	if (cfg->auth.dovecot == NULL || strncmp(cfg->auth.dovecot, "unix:", 5) != 0 || cfg->user == NULL)
		return 0;
	/* connect(2) needs search permission on every directory of the path and write
	 * permission on the socket; one not there yet says nothing (Dovecot makes it) */
	const char *path = cfg->auth.dovecot + 5;
	if (path[0] != '/' || config_user_may(cfg->user, path, S_IWOTH, "the socket", why, sizeof(why)) != 0)
		return 0;
	if (err_fp)
		fprintf((FILE *)err_fp, "%s: warning: auth.dovecot: user %s cannot open %s: %s, so every AUTH "
		    "would get 454 4.7.0 (mxgate opens the socket after dropping to user)\n",
		    config_key_where(cfg, "auth.dovecot", at, sizeof(at)),
		    cfg->user, path, why);
	return 1;
}

/* See auth.h. */
bool auth_may_lift(const struct session *s)
{
	return s->cfg->auth.dovecot && auth_listener_has(s);
}

bool auth_is_offered(const struct session *s)
{
	return s->cfg->auth.dovecot && auth_listener_has(s) && (s->tls || s->cfg->auth.allow_plaintext) &&
	    s->env.auth_user == NULL;
}

/* See auth.h. */
const char *auth_mechanisms(const struct session *s)
{
	struct auth_worker *aw = s->wg->auth;
	unsigned m = aw ? sasl_dovecot_mechs(aw->dovecot) : 0;
	bool plain = m & (1u << SASL_MECH_PLAIN), login = m & (1u << SASL_MECH_LOGIN);

	if (aw)
		sasl_dovecot_prepare(aw->dovecot);   /* lost since: find out again */
	if (plain && !login)
		return "PLAIN";
	if (login && !plain)
		return "LOGIN";
	return "PLAIN LOGIN";
}

/* See auth.h. */
size_t auth_line_cap(const struct session *s)
{
	size_t cap = (size_t)s->cfg->limits.max_line_length;

	return auth_may_lift(s) && cap < SASL_MAX_LINE ? SASL_MAX_LINE : cap;
}

/* See auth.h. */
bool auth_long_line(const struct session *s, const char *line, size_t len)
{
	if (len + 2 > SASL_MAX_LINE || len < 5 || strncasecmp(line, "AUTH ", 5) != 0 || !auth_may_lift(s))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] == 0x7f)
			return false;   /* the parser's 500 for controls: too long, then */
	return true;
}

/* See auth.h. */
void auth_long_cmd(struct smtp_cmd *cmd, char *line)
{
	memset(cmd, 0, sizeof(*cmd));   /* rare (long AUTH lines only): the whole of it */
	cmd->verb = SMTP_AUTH;
	cmd->arg = line + 5;
}

/* True when Dovecot's handshake said it does not offer mech (unknown: it may). */
static bool auth_mech_refused(const struct session *s, enum sasl_mech mech)
{
	struct auth_worker *aw = s->wg->auth;
	unsigned m = aw ? sasl_dovecot_mechs(aw->dovecot) : 0;

	return (m & ((1u << SASL_MECH_PLAIN) | (1u << SASL_MECH_LOGIN))) != 0 && !(m & (1u << mech));
}

bool auth_is_required(const struct session *s)
{
	return s->lc->submission && s->env.auth_user == NULL;
}

/* The user name for a log line: printable ASCII only, so no field can be forged. */
static void auth_safe_copy(const char *in, char *out, size_t cap)
{
	size_t i = 0;

	for (; in && in[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)in[i];
		out[i] = c > ' ' && c < 0x7f && c != '"' && c != '=' ? (char)c : '?';
	}
	out[i] = '\0';
	if (i == 0 && cap > 1)
		snprintf(out, cap, "-");
}

/* ---- the command row ---------------------------------------------------------------------- */

int auth_cmd_check(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap)
{
	enum sasl_mech mech;
	const char *initial, *err;

	if (!s->cfg->auth.dovecot || !auth_listener_has(s)) {
		snprintf(reply, cap, "503 5.5.1 Error: authentication not enabled");
		return SESSION_CHECK_ERROR;
	}
	if (s->env.auth_user) {
		snprintf(reply, cap, "503 5.5.1 Error: already authenticated");
		return SESSION_CHECK_ERROR;
	}
	if (s->env.mail_from) {
		snprintf(reply, cap, "503 5.5.1 Error: MAIL transaction in progress");
		return SESSION_CHECK_ERROR;
	}
	if (!s->tls && !s->cfg->auth.allow_plaintext) {
		/* RFC 4954 6 */
		snprintf(reply, cap, "538 5.7.11 Encryption required for requested authentication mechanism");
		return SESSION_CHECK_ERROR;
	}
	if (sasl_parse_auth_arg(cmd->arg, &mech, &initial, &err) != 0) {
		snprintf(reply, cap, "%s", err);
		return SESSION_CHECK_ERROR;
	}
	if (auth_mech_refused(s, mech)) {
		/* not in the EHLO list (RFC 4954 4): the client may try another */
		snprintf(reply, cap, "504 5.5.4 Unrecognized authentication type");
		return SESSION_CHECK_ERROR;
	}
	return SESSION_CHECK_OK;
}

/* RFC 3461 4: xtext = *( xchar / hexchar ), xchar = "!".."~" but "+" and "=", hexchar =
 * "+" HEXDIG HEXDIG. Not empty here (RFC 4954 5: a mailbox or "<>"). */
static bool auth_is_xtext(const char *v)
{
	if (v == NULL || *v == '\0')
		return false;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '+') {
			if (!isxdigit((unsigned char)v[1]) || !isxdigit((unsigned char)v[2]))
				return false;
			v += 2;
		} else if (c < '!' || c > '~' || c == '=') {
			return false;
		}
	}
	return true;
}

/* See auth.h. */
int auth_check_mail_param(const struct session *s, const struct smtp_cmd *cmd, bool *offered, char *reply,
    size_t cap)
{
	*offered = s->cfg->auth.dovecot && auth_listener_has(s);
	if (!*offered)
		return SESSION_CHECK_OK;
	for (size_t i = 0; i < cmd->nparams; i++) {
		if (strcasecmp(cmd->params[i].key, "AUTH") == 0 && !auth_is_xtext(cmd->params[i].value)) {
			snprintf(reply, cap, "501 5.5.4 Syntax: AUTH=<mailbox> or AUTH=<> (xtext)");
			return SESSION_CHECK_ERROR;
		}
	}
	return SESSION_CHECK_OK;
}

/* Remembers the user a client answer names (PLAIN's authcid, LOGIN's first answer). */
static void auth_note_user(struct auth_session *a, const char *b64)
{
	unsigned char buf[SASL_MAX_B64];
	ssize_t n;

	if (a->user[0])
		return;
	if (a->mech == SASL_MECH_LOGIN) {
		if (sasl_login_decode(b64, strlen(b64), a->user, sizeof(a->user)) != 0)
			a->user[0] = '\0';
		return;
	}
	n = sasl_base64_decode(b64, strlen(b64), buf, sizeof(buf));
	if (n > 0) {
		struct sasl_plain pl;
		const char *why;
		if (sasl_plain_split(buf, (size_t)n, &pl, &why) == 0)
			snprintf(a->user, sizeof(a->user), "%s", pl.authcid);
		sasl_wipe(&pl, sizeof(pl));
	}
	sasl_wipe(buf, sizeof(buf));
}

void auth_cmd_start(struct session *s, const struct smtp_cmd *cmd)
{
	struct auth_session *a = s->auth;
	const char *initial = NULL, *err;

	if (a == NULL && (a = s->auth = calloc(1, sizeof(*a))) == NULL)
		return;
	sasl_wipe(a, sizeof(*a));
	sasl_parse_auth_arg(cmd->arg, &a->mech, &initial, &err);
	if (initial != NULL) {
		size_t n = strcspn(initial, " ");
		if (n < sizeof(a->initial)) {
			memcpy(a->initial, initial, n);
			a->initial[n] = '\0';
			a->has_initial = true;
			if (strcmp(a->initial, "=") != 0) {
				auth_note_user(a, a->initial);
				a->named = true;
			}
		}
	}
}

/* The exchange is over (answered): wipe what the client sent, carry on. */
static void auth_done(struct session *s)
{
	struct auth_session *a = s->auth;

	a->req = NULL;
	sasl_wipe(a->initial, sizeof(a->initial));
	a->has_initial = false;
	session_cmd_done(s);
}

/* The service could not answer: on_error. */
static void auth_tempfail(struct session *s, const char *reason)
{
	struct auth_session *a = s->auth;

	log_event(LOG_LVL_WARNING, s->id, "event=auth_error client=%s mech=%s reason=\"%.100s\"", s->env.client_ip,
	    sasl_mech_name(a->mech), reason ? reason : "");
	if (s->cfg->auth.on_error == AUTH_ON_ERROR_DISCONNECT) {
		session_reply(s, "421 4.7.0 %s Error: authentication service unavailable", s->cfg->hostname);
		s->quit_after_flush = true;
	} else {
		session_reply(s, "454 4.7.0 Temporary authentication failure");
	}
	auth_done(s);
}

/* The address's failure count as the guard enforces it: 0 for a client in auth.allow (many
 * users behind one address, whose typos must not lock out the others), else as counted. */
static uint64_t auth_enforced_ip_failures(const struct session *s, uint64_t ip_failures)
{
	const struct cfg_cidrlist *allow = &s->cfg->auth.allow;

	if (allow->n && cfg_cidrlist_match(allow, (const struct sockaddr *)&s->env.client))
		return 0;
	return ip_failures;
}

/* The guard's counts after a failure: 535 held by the doubling delay, or 421 and close. */
static void auth_failed_cb(void *arg, uint64_t ip_failures, uint64_t user_failures)
{
	struct session *s = arg;
	struct auth_session *a = s->auth;
	const struct auth_config *c = &s->cfg->auth;
	uint64_t ip_enforced = auth_enforced_ip_failures(s, ip_failures);
	uint64_t worst = ip_enforced > user_failures ? ip_enforced : user_failures;
	uint64_t delay = auth_guard_delay_ms(c, worst);
	char user[SASL_MAX_FIELD + 1];
	char reason[4 * sizeof(a->reason) + 8];

	a->greq = NULL;
	auth_safe_copy(a->user, user, sizeof(user));
	log_event(LOG_LVL_INFO, s->id,
	    "event=auth_failed client=%s user=%s mech=%s failures=%llu user_failures=%llu delay_ms=%llu reason=%s",
	    s->env.client_ip, user, sasl_mech_name(a->mech), (unsigned long long)ip_failures,
	    (unsigned long long)user_failures, (unsigned long long)delay, log_val(reason, sizeof(reason), a->reason));
	counter_inc(COUNTER_AUTH_FAILED);
	if (ip_enforced > (uint64_t)c->max_failures || user_failures > (uint64_t)c->max_failures) {
		log_event(LOG_LVL_INFO, s->id, "event=auth_blocked client=%s user=%s failures=%llu user_failures=%llu",
		    s->env.client_ip, user, (unsigned long long)ip_failures, (unsigned long long)user_failures);
		session_reply(s, "421 4.7.0 %s Error: too many failed authentications", s->cfg->hostname);
		s->quit_after_flush = true;
	} else {
		session_reply(s, "535 5.7.8 Error: authentication failed");
		s->tarpit_ms = (uint32_t)delay;
	}
	auth_done(s);
}

void auth_session_lift_refusal(struct session *s)
{
	struct auth_session *a = s->auth;

	if (a == NULL && (a = s->auth = calloc(1, sizeof(*a))) == NULL)
		return;
	a->lifted = s->conn_verdict;
	a->lifted_code = s->refused_code;
	snprintf(a->lifted_reason, sizeof(a->lifted_reason), "%s", s->refused_reason);
	a->has_lifted = true;
	s->conn_verdict.action = VERDICT_CONTINUE;
	/* the session's outcome too: the modules hear at close that it was not refused
	 * (a refusal by a module the lift lets run, session_connect_refusal, is noted anew) */
	s->refused_code = 0;
	s->refused_reason[0] = '\0';
}

/* See auth.h. Refused at connect (a DNS list, say: users submit from dynamic addresses that
 * policy lists name): that refusal was for unauthenticated mail, as Postfix's
 * permit_sasl_authenticated before reject_rbl_client. */
bool auth_lift_connect_refusal(struct session *s)
{
	char user[SASL_MAX_FIELD + 1];

	if (s->env.auth_user == NULL || s->conn_verdict.action == VERDICT_CONTINUE || !auth_may_lift(s))
		return false;
	auth_safe_copy(s->env.auth_user, user, sizeof(user));
	log_event(LOG_LVL_INFO, s->id, "event=auth_lifts_refusal client=%s user=%s reason=%s", s->env.client_ip,
	    user, s->conn_verdict.reason[0] ? s->conn_verdict.reason : "filter");
	auth_session_lift_refusal(s);
	return true;
}

/* After a lifted refusal, the connect stage of the modules it had cut off: a refusal of
 * theirs is a connect refusal as any (TEMPFAIL: 421 and close, instead of the 235). */
static void auth_connect_done_cb(void *arg, const struct verdict *v)
{
	struct session *s = arg;

	if (s->state == SESSION_CLOSING)
		return;
	if (!session_connect_refusal(s, v))
		session_reply(s, "235 2.7.0 Authentication successful");
	auth_done(s);
}

/* Dovecot's answer to a request or a CONT. */
static void auth_dovecot_cb(void *arg, const struct sasl_dovecot_result *res)
{
	struct session *s = arg;
	struct auth_session *a = s->auth;
	char user[SASL_MAX_FIELD + 1];

	switch (res->status) {
	case SASL_DOVECOT_CONTINUE:
		session_reply(s, "334 %s", res->challenge ? res->challenge : "");
		session_enter_state(s, SESSION_AUTH);
		session_process(s);
		return;
	case SASL_DOVECOT_OK:
		a->req = NULL;
		snprintf(a->authed_user, sizeof(a->authed_user), "%s", res->user && res->user[0] ? res->user : a->user);
		snprintf(a->authed_mech, sizeof(a->authed_mech), "%s", sasl_mech_name(a->mech));
		s->env.auth_user = a->authed_user;
		s->env.auth_mech = a->authed_mech;
		auth_safe_copy(s->env.auth_user, user, sizeof(user));
		log_event(LOG_LVL_INFO, s->id, "event=auth client=%s user=%s mech=%s", s->env.client_ip, user,
		    s->env.auth_mech);
		counter_inc(COUNTER_AUTH_OK);
		if (auth_lift_connect_refusal(s)) {
			/* the modules the refusal cut off (a milter) see the connect now */
			chain_run_cut(&s->chain, auth_connect_done_cb, s);
			return;
		}
		session_reply(s, "235 2.7.0 Authentication successful");
		auth_done(s);
		return;
	case SASL_DOVECOT_FAIL:
		a->req = NULL;
		if (!a->user[0] && res->user)
			snprintf(a->user, sizeof(a->user), "%s", res->user);
		/* escaped when it is logged (log_val: a '\\' or '"' of Dovecot's kept, quoted) */
		snprintf(a->reason, sizeof(a->reason), "%s", res->reason ? res->reason : "");
		a->greq = auth_guard_count(auth_worker_of(s)->guard, s->env.client_ip, a->user, 1, auth_failed_cb, s);
		return;
	case SASL_DOVECOT_TEMPFAIL:
	default:
		a->req = NULL;
		auth_tempfail(s, res->reason);
		return;
	}
}

/* The guard's read before an exchange: a blocked address goes, the others ask Dovecot. */
static void auth_precheck_cb(void *arg, uint64_t ip_failures, uint64_t user_failures)
{
	struct session *s = arg;
	struct auth_session *a = s->auth;
	struct auth_worker *aw = auth_worker_of(s);
	struct sasl_dovecot_info info = { .service = "smtp", .remote_ip = s->env.client_ip };
	char lip[NETADDR_STRLEN], user[SASL_MAX_FIELD + 1];

	(void)user_failures;
	a->greq = NULL;
	if (auth_enforced_ip_failures(s, ip_failures) > (uint64_t)s->cfg->auth.max_failures) {
		auth_safe_copy(a->user, user, sizeof(user));
		log_event(LOG_LVL_INFO, s->id, "event=auth_blocked client=%s user=%s failures=%llu", s->env.client_ip,
		    user, (unsigned long long)ip_failures);
		session_reply(s, "421 4.7.0 %s Error: too many failed authentications", s->cfg->hostname);
		s->quit_after_flush = true;
		auth_done(s);
		return;
	}
	if (netaddr_sockaddr_string((const struct sockaddr *)&s->env.local, lip, sizeof(lip)) >= 0)
		info.local_ip = lip;
	info.remote_port = (unsigned)s->env.client_port;
	info.secured = s->tls != NULL;
	/* a dead service answers TEMPFAIL before this returns (q NULL); challenges and
	 * verdicts come later, from the loop */
	a->req = sasl_dovecot_auth(aw->dovecot, a->mech, &info, a->has_initial ? a->initial : NULL,
	    auth_dovecot_cb, s);
}

void auth_cmd_apply(struct session *s, const struct verdict *v)
{
	struct auth_session *a = s->auth;
	struct auth_worker *aw = auth_worker_of(s);

	(void)v;
	session_enter_state(s, SESSION_BUSY);
	uv_timer_stop(&s->timer);
	if (a == NULL || aw == NULL) {
		if (a == NULL) {
			session_reply(s, "454 4.7.0 Temporary authentication failure");
			session_cmd_done(s);
			return;
		}
		auth_tempfail(s, "authentication client not available");
		return;
	}
	a->greq = auth_guard_count(aw->guard, s->env.client_ip, NULL, 0, auth_precheck_cb, s);
}

/* ---- the client's answers ------------------------------------------------------------------ */

/* Ends the exchange at the client's word (cancel, bad data): Dovecot forgets it too. */
static void auth_abort(struct session *s, const char *reply, bool client_error)
{
	struct auth_session *a = s->auth;

	sasl_dovecot_cancel(a->req);
	a->req = NULL;
	session_reply(s, "%s", reply);
	session_enter_idle(s);
	if (client_error)
		session_error(s);
}

void auth_session_line(struct session *s, const char *line, size_t len, bool too_long)
{
	struct auth_session *a = s->auth;
	unsigned char buf[SASL_MAX_B64];
	char answer[SASL_MAX_B64 + 1];
	ssize_t n;

	if (too_long || len > SASL_MAX_B64) {
		auth_abort(s, "500 5.5.6 Authentication Exchange line is too long", true);
		return;
	}
	if (sasl_is_cancel(line, len)) {
		/* RFC 4954 4 */
		auth_abort(s, "501 5.0.0 Authentication cancelled", false);
		return;
	}
	memcpy(answer, line, len);
	answer[len] = '\0';
	/* RFC 4954 8: auth-command = ... *(CRLF [base64]): an empty line is an empty response
	 * (the "=" of an initial response is not used here). It goes to the mechanism, which
	 * judges it, as Postfix and Dovecot's own submission server pass it on; 501 5.5.2 is
	 * for a response that cannot be decoded (RFC 4954 4). */
	n = len == 0 ? 0 : sasl_base64_decode(answer, len, buf, sizeof(buf));
	sasl_wipe(buf, sizeof(buf));
	if (n < 0) {
		sasl_wipe(answer, sizeof(answer));
		auth_abort(s, "501 5.5.2 Error: invalid base64 data", true);
		return;
	}
	if (!a->named) {
		/* PLAIN's message or LOGIN's first answer; LOGIN's second is the password */
		auth_note_user(a, answer);
		a->named = true;
	}
	session_enter_state(s, SESSION_BUSY);
	uv_timer_stop(&s->timer);
	if (sasl_dovecot_continue(a->req, answer) != 0) {
		sasl_wipe(answer, sizeof(answer));
		sasl_dovecot_cancel(a->req);
		a->req = NULL;
		auth_tempfail(s, "no challenge pending");
		return;
	}
	sasl_wipe(answer, sizeof(answer));
}

/* ---- the session's end ----------------------------------------------------------------------- */

void auth_session_reset(struct session *s)
{
	struct auth_session *a = s->auth;

	s->env.auth_user = NULL;
	s->env.auth_mech = NULL;
	if (a == NULL)
		return;
	sasl_dovecot_cancel(a->req);
	auth_guard_cancel(a->greq);
	if (a->has_lifted) {
		s->conn_verdict = a->lifted;    /* the user is forgotten: so is what AUTH allowed */
		/* STARTTLS: the refusal stands again (answered at MAIL), and is the session's
		 * outcome unless lifted anew; at close the outcome stays what the client got */
		if (s->state != SESSION_CLOSING && s->refused_code == 0) {
			s->refused_code = a->lifted_code;
			snprintf(s->refused_reason, sizeof(s->refused_reason), "%s", a->lifted_reason);
		}
	}
	sasl_wipe(a, sizeof(*a));
}

void auth_session_free(struct session *s)
{
	if (s->auth == NULL)
		return;
	auth_session_reset(s);
	free(s->auth);
	s->auth = NULL;
}
