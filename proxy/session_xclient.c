/* session_xclient.c — the inbound XCLIENT verb (Postfix's XCLIENT_README): a front end
 * listed in xclient_hosts (nginx's mail module with `xclient on`, its default) names the
 * client it relays, and the session becomes that client's as if it had connected from
 * there: the modules' session so far ends, the connect stage runs again for the new
 * address (DNS lists, reputation, rate limits, rDNS, milters' connect), the connection
 * limits count it, and the greeting (220) is sent again. Everything after — HELO checks,
 * greylisting, SPF, the Received field, milter macros, mxgate's own XCLIENT or PROXY
 * header to the backends — sees the new identity, because all of it reads env.
 *
 * The row's check refuses (550 5.7.0 to anyone not in xclient_hosts, 503 inside a
 * transaction, 501 for bad syntax), its start changes the identity, its apply runs the
 * connect stage (session_start_connect), whose end greets. */
#include "session_int.h"
#include "auth.h"
#include "config.h"
#include "conncount.h"
#include "log.h"
#include "netaddr.h"
#include "worker.h"
#include "xclient.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

bool session_xclient_offered(const struct session *s)
{
	return s->xclient_allowed;
}

void session_xclient_note_peer(struct session *s)
{
	if (s->xclient_seen)
		return;
	s->xclient_allowed = s->cfg->xclient_hosts.n > 0 &&
	    cfg_cidrlist_match(&s->cfg->xclient_hosts, (const struct sockaddr *)&s->env.client);
}

enum session_check session_xclient_check(const struct session *s, const struct smtp_cmd *cmd, char *reply,
    size_t cap)
{
	struct xclient_attrs x;

	/* the order of Postfix's smtpd: the transaction, then the authorization, then syntax */
	if (s->env.mail_from != NULL) {
		snprintf(reply, cap, "503 5.5.1 Error: MAIL transaction in progress");
		return SESSION_CHECK_ERROR;
	}
	if (!s->xclient_allowed) {
		session_refusal_log(s, &(struct opstats_refusal){ .stage = "xclient", .reason = "unauthorized",
		    .code = 550 }, "client=%s", s->env.client_ip);
		snprintf(reply, cap, "550 5.7.0 Error: insufficient authorization");
		return SESSION_CHECK_ERROR;
	}
	if (xclient_parse(cmd->arg, &x, reply, cap) != 0)
		return SESSION_CHECK_ERROR;
	if ((x.has & XCLIENT_ADDR) && x.addr_unavailable) {
		/* Postfix then judges a client "unknown"; every check and limit here is keyed on
		 * an address, and keeping the front end's would judge the front end */
		snprintf(reply, cap, "501 5.5.4 Bad ADDR syntax: [UNAVAILABLE] is not taken, name the client's address");
		return SESSION_CHECK_ERROR;
	}
	return SESSION_CHECK_OK;
}

/* sa's port set to port (network order in place) */
static void session_xclient_set_port(struct sockaddr_storage *sa, int port)
{
	if (sa->ss_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

void session_xclient_start(struct session *s, const struct smtp_cmd *cmd)
{
	static const char *const name_st[] = { "ok", "unavailable", "tempunavail" };
	struct xclient_attrs x;
	char reply[256], prev[sizeof(s->env.client_ip)];
	char hv[300], nv[300], lv[300];

	if (xclient_parse(cmd->arg, &x, reply, sizeof(reply)) != 0)
		return;         /* the check parsed it */
	snprintf(prev, sizeof(prev), "%s", s->env.client_ip);

	/* The session so far (the front end's) ends for the modules: its outcome, then their
	 * session state goes (a milter's connection closes); the new client's starts afresh
	 * with the connect stage. The front end carried no transaction (the check). */
	chain_session_end(&s->chain, s->refused_code, s->refused_code ? HOOK_CONNECT : HOOK_CLOSE, s->refused_reason);
	chain_release(&s->chain);
	hook_env_truncate_symbols(&s->env, 0);
	chain_init(&s->chain, &s->wg->mods, &s->env, &s->chain_timer);

	/* max_connections_per_ip counts the new address (session_start_connect acquires) */
	if (s->counted_ip)
		conncount_release((const struct sockaddr *)&s->env.client, s->cfg->limits.client_ipv6_prefix);
	s->counted_ip = false;

	if (x.has & XCLIENT_ADDR) {
		s->env.client = x.addr;
		/* a new address without PORT: the front end's port means nothing for it */
		session_xclient_set_port(&s->env.client, (x.has & XCLIENT_PORT) ? x.port : 0);
	} else if (x.has & XCLIENT_PORT) {
		session_xclient_set_port(&s->env.client, x.port);
	}
	if ((x.has & XCLIENT_DESTADDR) && !x.destaddr_unavailable) {
		int port = netaddr_sockaddr_port((const struct sockaddr *)&s->env.local);

		s->env.local = x.destaddr;
		session_xclient_set_port(&s->env.local, port);
	}
	if (x.has & XCLIENT_DESTPORT)
		session_xclient_set_port(&s->env.local, x.destport);

	/* Names are mxgate's own lookups (rdns.c, forward-confirmed), made again for the new
	 * address by the connect stage: NAME and REVERSE_NAME are logged, not believed. */
	s->env.client_name[0] = s->env.client_ptr[0] = '\0';
	s->env.client_name_status = s->env.client_ptr_status = HOOK_NAME_UNKNOWN;

	/* Back to the greeting stage (XCLIENT_README): HELO forgotten unless sent with it. */
	snprintf(s->env.helo, sizeof(s->env.helo), "%s", (x.has & XCLIENT_HELO) ? x.helo : "");
	s->helo_given = false;          /* the named client's EHLO is its first */
	s->env.esmtp = (x.has & XCLIENT_PROTO) ? x.esmtp : s->env.helo[0] != '\0';
	s->xclient_helo_pending = s->env.helo[0] != '\0';
	if (x.has & XCLIENT_LOGIN) {
		/* the front end authenticated the user (nginx's smtp_auth), or logs it out */
		auth_session_reset(s);
		if (x.login[0]) {
			snprintf(s->xclient_login, sizeof(s->xclient_login), "%s", x.login);
			s->env.auth_user = s->xclient_login;
			s->env.auth_mech = "XCLIENT";
		}
	}
	/* What was decided about the front end's connection is not the client's. */
	memset(&s->conn_verdict, 0, sizeof(s->conn_verdict));
	s->conn_verdict.action = VERDICT_CONTINUE;
	s->refused_code = 0;
	s->refused_reason[0] = '\0';
	s->protocol_failed = 0;
	/* a new client starts with no errors or junk commands of its own (limits.max_errors,
	 * max_junk_commands), as on a new connection: a front end that keeps its connection
	 * for client after client must not have one client's errors end the next one's session */
	s->errors = 0;
	s->junk = 0;
	s->mails = 0;
	s->deferrals = 0;
	s->pregreet_hit = s->pregreet_waited = s->teaser_sent = false;
	s->lb_check = false;
	s->xclient_seen = true;
	s->connect_deferred = false;    /* the chain begun afresh: the client's connect runs */

	char now[NETADDR_STRLEN];

	if (netaddr_sockaddr_string((const struct sockaddr *)&s->env.client, now, sizeof(now)) < 0)
		snprintf(now, sizeof(now), "?");
	log_event(LOG_LVL_INFO, s->id,
	    "event=xclient client=%s port=%d previous=%s name=%s name_status=%s helo=%s login=%s", now,
	    netaddr_sockaddr_port((const struct sockaddr *)&s->env.client), prev, log_val(nv, sizeof(nv), (x.has & XCLIENT_NAME) ? x.name : ""),
	    (x.has & XCLIENT_NAME) ? name_st[x.name_status] : "-", log_val(hv, sizeof(hv), s->env.helo),
	    log_val(lv, sizeof(lv), s->env.auth_user ? s->env.auth_user : ""));
}

void session_xclient_apply(struct session *s, const struct verdict *v)
{
	(void)v;
	/* as a new connection from there: limits, the connect stage, then the 220 (no
	 * pregreet teaser: the front end speaks for the client) */
	session_start_connect(s);
}
