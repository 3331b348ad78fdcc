/* test_session_cmd.c — the session's command table (proxy/session.c) without a daemon: the
 * checks over labelled rows (state x situation x command line -> decision and reply), the
 * table's shape, and the replies of the verbs answered at once (EHLO, HELO, HELP, ...). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/session_int.h"
#include "proxy/worker.h"

/* What the session has been through, for a row. */
enum {
	S_HELO = 1 << 0,        /* HELO/EHLO done */
	S_MAIL = 1 << 1,        /* in a transaction */
	S_RCPT = 1 << 2,        /* one accepted recipient */
	S_FULL = 1 << 3,        /* limits.max_recipients accepted */
	S_DRAIN = 1 << 4,       /* the worker drains */
	S_STARTTLS = 1 << 5,    /* a STARTTLS listener with a certificate */
	S_TLS_ON = 1 << 6,      /* TLS is on */
	S_UTF8 = 1 << 7,        /* the transaction is SMTPUTF8 */
	S_BDAT = 1 << 8,        /* a BDAT chunk was sent in the transaction */
	S_XCLIENT = 1 << 9,     /* the peer is in xclient_hosts */
};

struct check_row {
	const char *label;
	enum session_state state;
	unsigned set;
	const char *line;
	enum session_check want;
	const char *reply;      /* the full reply line; "" for OK and REFUSED */
};

#define HELO_FIRST "503 5.5.1 Error: send HELO/EHLO first"
#define NEED_MAIL "503 5.5.1 Error: need MAIL command"
#define NOT_IMPL "502 5.5.1 Error: command not implemented"

static const struct check_row check_rows[] = {
	{ "NOOP before HELO", SESSION_COMMAND, 0, "NOOP", SESSION_CHECK_OK, "" },
	{ "EHLO", SESSION_COMMAND, 0, "EHLO client.example", SESSION_CHECK_OK, "" },
	{ "HELO again inside a transaction", SESSION_COMMAND, S_HELO | S_MAIL, "HELO client.example", SESSION_CHECK_OK, "" },
	{ "MAIL before HELO", SESSION_COMMAND, 0, "MAIL FROM:<a@b.example>", SESSION_CHECK_ERROR, HELO_FIRST },
	{ "MAIL", SESSION_COMMAND, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_OK, "" },
	{ "MAIL null sender", SESSION_COMMAND, S_HELO, "MAIL FROM:<>", SESSION_CHECK_OK, "" },
	{ "MAIL nested", SESSION_COMMAND, S_HELO | S_MAIL, "MAIL FROM:<a@b.example>", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: nested MAIL command" },
	{ "MAIL while the worker drains", SESSION_COMMAND, S_HELO | S_DRAIN, "MAIL FROM:<a@b.example>",
	  SESSION_CHECK_CLOSE, "421 4.3.2 mx.test Service shutting down, try again later" },
	{ "MAIL after a refusal at connect", SESSION_REJECTED, S_HELO, "MAIL FROM:<a@b.example>",
	  SESSION_CHECK_REFUSED, "" },
	{ "MAIL after a refusal at connect, before HELO", SESSION_REJECTED, 0, "MAIL FROM:<a@b.example>",
	  SESSION_CHECK_ERROR, HELO_FIRST },
	{ "MAIL after a refusal at connect while draining", SESSION_REJECTED, S_HELO | S_DRAIN,
	  "MAIL FROM:<a@b.example>", SESSION_CHECK_CLOSE, "421 4.3.2 mx.test Service shutting down, try again later" },
	{ "MAIL SIZE over the limit", SESSION_COMMAND, S_HELO, "MAIL FROM:<a@b.example> SIZE=2000000",
	  SESSION_CHECK_ERROR, "552 5.3.4 Message size exceeds fixed limit" },
	{ "MAIL SIZE at the limit", SESSION_COMMAND, S_HELO, "MAIL FROM:<a@b.example> SIZE=1048576",
	  SESSION_CHECK_OK, "" },
	{ "MAIL with every announced parameter", SESSION_COMMAND, S_HELO,
	  "MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x1", SESSION_CHECK_OK, "" },
	{ "MAIL parameter not announced", SESSION_COMMAND, S_HELO, "MAIL FROM:<a@b.example> AUTH=<>",
	  SESSION_CHECK_ERROR, "555 5.5.4 Unsupported option: AUTH" },
	{ "RCPT outside a transaction", SESSION_COMMAND, S_HELO, "RCPT TO:<c@d.example>", SESSION_CHECK_ERROR, NEED_MAIL },
	{ "RCPT", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<c@d.example>", SESSION_CHECK_OK, "" },
	{ "RCPT Postmaster", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<Postmaster>", SESSION_CHECK_OK, "" },
	{ "RCPT with DSN parameters", SESSION_COMMAND, S_HELO | S_MAIL,
	  "RCPT TO:<c@d.example> NOTIFY=NEVER ORCPT=rfc822;c@d.example", SESSION_CHECK_OK, "" },
	{ "RCPT parameter not announced", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<c@d.example> SIZE=1",
	  SESSION_CHECK_ERROR, "555 5.5.4 Unsupported option: SIZE" },
	{ "RCPT to a domain not accepted", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<c@elsewhere.example>",
	  SESSION_CHECK_ERROR, "550 5.7.1 relaying denied" },
	{ "RCPT to an accepted subdomain", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<c@mx.example.test>",
	  SESSION_CHECK_OK, "" },
	{ "RCPT UTF-8 address outside SMTPUTF8", SESSION_COMMAND, S_HELO | S_MAIL, "RCPT TO:<j\xc3\xb6rg@d.example>",
	  SESSION_CHECK_ERROR, "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8" },
	{ "RCPT UTF-8 address in an SMTPUTF8 transaction", SESSION_COMMAND, S_HELO | S_MAIL | S_UTF8,
	  "RCPT TO:<j\xc3\xb6rg@d.example>", SESSION_CHECK_OK, "" },
	{ "RCPT past max_recipients: no error", SESSION_COMMAND, S_HELO | S_MAIL | S_FULL, "RCPT TO:<c@d.example>",
	  SESSION_CHECK_REPLY, "452 4.5.3 Error: too many recipients" },
	{ "DATA outside a transaction", SESSION_COMMAND, S_HELO, "DATA", SESSION_CHECK_ERROR, NEED_MAIL },
	{ "DATA before a recipient", SESSION_COMMAND, S_HELO | S_MAIL, "DATA", SESSION_CHECK_ERROR,
	  "554 5.5.1 Error: no valid recipients" },
	{ "DATA", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT, "DATA", SESSION_CHECK_OK, "" },
	{ "RSET outside a transaction", SESSION_COMMAND, 0, "RSET", SESSION_CHECK_OK, "" },
	{ "RSET inside a transaction", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT, "RSET", SESSION_CHECK_OK, "" },
	{ "QUIT", SESSION_COMMAND, S_HELO | S_MAIL, "QUIT", SESSION_CHECK_OK, "" },
	{ "QUIT after a refusal at connect", SESSION_REJECTED, 0, "QUIT", SESSION_CHECK_OK, "" },
	{ "VRFY", SESSION_COMMAND, 0, "VRFY user", SESSION_CHECK_OK, "" },
	{ "EXPN: answered, not an error", SESSION_COMMAND, 0, "EXPN list", SESSION_CHECK_OK, "" },
	{ "HELP", SESSION_COMMAND, 0, "HELP", SESSION_CHECK_OK, "" },
	{ "STARTTLS offered", SESSION_COMMAND, S_STARTTLS, "STARTTLS", SESSION_CHECK_OK, "" },
	{ "STARTTLS after a refusal at connect", SESSION_REJECTED, S_STARTTLS, "STARTTLS", SESSION_CHECK_OK, "" },
	{ "STARTTLS on a plain listener", SESSION_COMMAND, 0, "STARTTLS", SESSION_CHECK_ERROR, NOT_IMPL },
	{ "STARTTLS under TLS", SESSION_COMMAND, S_STARTTLS | S_TLS_ON, "STARTTLS", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: TLS already active" },
	{ "AUTH: not enabled", SESSION_COMMAND, S_HELO, "AUTH PLAIN AGFAAGI=", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: authentication not enabled" },
	{ "BDAT", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT, "BDAT 10 LAST", SESSION_CHECK_OK, "" },
	/* a TAB after the verb (session 23: until then an unknown command, its chunk read as
	 * commands) */
	{ "BDAT<TAB>", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT, "BDAT\t10 LAST", SESSION_CHECK_OK, "" },
	{ "MAIL<TAB>", SESSION_COMMAND, S_HELO, "MAIL\tFROM:<a@b.example>", SESSION_CHECK_OK, "" },
	{ "DATA<TAB>", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT, "DATA\t", SESSION_CHECK_OK, "" },
	/* RFC 3030 2: the chunk follows the command at once, so a BDAT refused for the state is
	 * taken all the same (its chunk read and thrown away, the refusal after it: bdat.c) */
	{ "BDAT before MAIL: its chunk is read", SESSION_COMMAND, S_HELO, "BDAT 10", SESSION_CHECK_OK, "" },
	{ "BDAT before HELO: its chunk is read", SESSION_COMMAND, 0, "BDAT 10", SESSION_CHECK_OK, "" },
	{ "DATA after BDAT", SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT | S_BDAT, "DATA", SESSION_CHECK_ERROR,
	  "503 5.5.1 Error: BDAT and DATA cannot be mixed" },
	{ "XCLIENT from a client", SESSION_COMMAND, S_HELO, "XCLIENT ADDR=192.0.2.1", SESSION_CHECK_ERROR,
	  "550 5.7.0 Error: insufficient authorization" },
	{ "XCLIENT from xclient_hosts", SESSION_COMMAND, S_HELO | S_XCLIENT, "XCLIENT ADDR=192.0.2.1", SESSION_CHECK_OK, "" },
	{ "XCLIENT before HELO", SESSION_COMMAND, S_XCLIENT, "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25", SESSION_CHECK_OK, "" },
	{ "XCLIENT after a refusal at connect", SESSION_REJECTED, S_XCLIENT, "XCLIENT ADDR=192.0.2.1", SESSION_CHECK_OK, "" },
	{ "XCLIENT inside a transaction", SESSION_COMMAND, S_HELO | S_MAIL | S_XCLIENT, "XCLIENT ADDR=192.0.2.1",
	  SESSION_CHECK_ERROR, "503 5.5.1 Error: MAIL transaction in progress" },
	{ "XCLIENT from a client inside a transaction", SESSION_COMMAND, S_HELO | S_MAIL, "XCLIENT ADDR=192.0.2.1",
	  SESSION_CHECK_ERROR, "503 5.5.1 Error: MAIL transaction in progress" },
	{ "XCLIENT bad attribute", SESSION_COMMAND, S_XCLIENT, "XCLIENT ADDRESS=192.0.2.1", SESSION_CHECK_ERROR,
	  "501 5.5.4 Bad XCLIENT attribute name: ADDRESS" },
	{ "XCLIENT bad address", SESSION_COMMAND, S_XCLIENT, "XCLIENT ADDR=192.0.2", SESSION_CHECK_ERROR,
	  "501 5.5.4 Bad ADDR syntax: 192.0.2" },
};

/* ------------------------------------------------------------ a session at rest */

struct fixture {
	struct mx_config *cfg;
	struct listen_config lc;
	struct shared_gen sg;
	struct worker_gen wg;
	struct worker *w;
	struct session s;
	int tls_ctx_stand_in, tls_stand_in;   /* never dereferenced by the checks */
};

static int fixture_setup(void **state)
{
	static const char text[] =
	    "hostname: mx.test\n"
	    "listen: [\"127.0.0.1:2525\"]\n"
	    "backends: { servers: [{address: \"smtp://127.0.0.1:2526\"}] }\n"
	    "limits: { max_recipients: 3, max_message_size: 1M }\n"
	    "accept_domains: [d.example, \"*.example.test\"]\n";
	struct fixture *fx = calloc(1, sizeof *fx);

	assert_non_null(fx);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &fx->cfg, stderr), 0);
	fx->w = calloc(1, sizeof *fx->w);
	assert_non_null(fx->w);
	*state = fx;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *fx = *state;

	strbuf_free(&fx->s.out);
	config_free(fx->cfg);
	free(fx->w);
	free(fx);
	return 0;
}

/* The session as a row describes it. */
static struct session *fixture_session(struct fixture *fx, enum session_state st, unsigned set)
{
	struct session *s = &fx->s;
	static char from[] = "a@b.example", no_params[] = "", utf8[] = "SMTPUTF8";

	strbuf_free(&s->out);
	memset(s, 0, sizeof *s);
	memset(&fx->lc, 0, sizeof fx->lc);
	memset(&fx->sg, 0, sizeof fx->sg);
	fx->sg.cfg = fx->cfg;
	fx->wg.shared = &fx->sg;
	s->w = fx->w;
	s->cfg = fx->cfg;
	s->lc = &fx->lc;
	s->wg = &fx->wg;
	s->state = st;
	snprintf(s->id, sizeof s->id, "t00001");
	s->env.session_id = s->id;
	s->env.cfg = fx->cfg;
	if (set & S_HELO)
		snprintf(s->env.helo, sizeof s->env.helo, "client.example");
	if (set & S_MAIL) {
		s->env.mail_from = from;
		s->env.mail_params = set & S_UTF8 ? utf8 : no_params;
	}
	if (set & S_RCPT)
		s->env.nrcpts = 1;
	s->bdat.used = (set & S_BDAT) != 0;
	s->xclient_allowed = (set & S_XCLIENT) != 0;
	if (set & S_FULL)
		s->env.nrcpts = (size_t)fx->cfg->limits.max_recipients;
	s->drain = (set & S_DRAIN) != 0;
	if (set & S_STARTTLS) {
		fx->lc.tls = LISTEN_TLS_STARTTLS;
		fx->sg.tls_server = (struct tls_ctx *)(void *)&fx->tls_ctx_stand_in;
	}
	if (set & S_TLS_ON)
		s->tls = (struct tlsconn *)(void *)&fx->tls_stand_in;
	return s;
}

static const char *check_name(enum session_check c)
{
	static const char *const names[] = { "OK", "REPLY", "ERROR", "CLOSE", "REFUSED" };
	return (unsigned)c < sizeof names / sizeof names[0] ? names[c] : "?";
}

/* ------------------------------------------------------------ tests */

static void test_check_rows(void **state)
{
	struct fixture *fx = *state;

	for (size_t i = 0; i < sizeof check_rows / sizeof check_rows[0]; i++) {
		const struct check_row *r = &check_rows[i];
		struct session *s = fixture_session(fx, r->state, r->set);
		struct smtp_cmd cmd;
		const char *err = NULL;
		char reply[1024];

		print_message("row: %s\n", r->label);
		if (smtp_cmd_parse(r->line, strlen(r->line), &cmd, &err) != 0)
			fail_msg("row \"%s\": the line does not parse: %s", r->label, err);
		enum session_check got = session_cmd_check(s, &cmd, reply, sizeof reply);
		if (got != r->want)
			fail_msg("row \"%s\": %s, want %s (reply \"%s\")", r->label, check_name(got), check_name(r->want), reply);
		assert_string_equal(reply, r->reply);
		assert_int_equal(s->out.len, 0);   /* a check only decides */
	}
}

/* reject_non_fqdn_sender / reject_non_fqdn_recipient (session 22; Postfix's, with its 504
 * 5.5.2): off by default; on, a dotless domain is refused, the null sender, <Postmaster>
 * and address literals are not, nor a client that may relay (AUTH here: it relays, nothing
 * more); the recipient's check comes before accept_domains. Until session 22 there was no such check (a@localname was
 * taken at MAIL). */
static void test_check_non_fqdn(void **state)
{
	static const struct {
		const char *label;
		bool on, auth;
		unsigned set;
		const char *line;
		enum session_check want;
		const char *reply;
	} rows[] = {
		{ "sender, off", false, false, S_HELO, "MAIL FROM:<a@localname>", SESSION_CHECK_OK, "" },
		{ "sender", true, false, S_HELO, "MAIL FROM:<a@localname>", SESSION_CHECK_ERROR,
		  "504 5.5.2 Sender address rejected: need fully-qualified address" },
		{ "sender with a root dot", true, false, S_HELO, "MAIL FROM:<a@localname.>", SESSION_CHECK_ERROR,
		  "504 5.5.2 Sender address rejected: need fully-qualified address" },
		{ "sender qualified", true, false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_OK, "" },
		{ "sender literal", true, false, S_HELO, "MAIL FROM:<a@[192.0.2.1]>", SESSION_CHECK_OK, "" },
		{ "null sender", true, false, S_HELO, "MAIL FROM:<>", SESSION_CHECK_OK, "" },
		{ "sender of an authenticated client", true, true, S_HELO, "MAIL FROM:<a@localname>", SESSION_CHECK_ERROR,
		  "504 5.5.2 Sender address rejected: need fully-qualified address" },
		{ "recipient, off: accept_domains", false, false, S_HELO | S_MAIL, "RCPT TO:<c@localname>",
		  SESSION_CHECK_ERROR, "550 5.7.1 relaying denied" },
		{ "recipient", true, false, S_HELO | S_MAIL, "RCPT TO:<c@localname>", SESSION_CHECK_ERROR,
		  "504 5.5.2 Recipient address rejected: need fully-qualified address" },
		{ "recipient qualified", true, false, S_HELO | S_MAIL, "RCPT TO:<c@d.example>", SESSION_CHECK_OK, "" },
		{ "Postmaster", true, false, S_HELO | S_MAIL, "RCPT TO:<Postmaster>", SESSION_CHECK_OK, "" },
		{ "recipient of an authenticated client", true, true, S_HELO | S_MAIL, "RCPT TO:<c@localname>",
		  SESSION_CHECK_ERROR, "504 5.5.2 Recipient address rejected: need fully-qualified address" },
		{ "recipient of an authenticated client, off: relayed", false, true, S_HELO | S_MAIL,
		  "RCPT TO:<c@localname>", SESSION_CHECK_OK, "" },
	};
	struct fixture *fx = *state;

	assert_false(fx->cfg->reject_non_fqdn_sender);      /* the defaults */
	assert_false(fx->cfg->reject_non_fqdn_recipient);
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct session *s = fixture_session(fx, SESSION_COMMAND, rows[i].set);
		struct smtp_cmd cmd;
		const char *err = NULL;
		char reply[1024] = "";

		fx->cfg->reject_non_fqdn_sender = fx->cfg->reject_non_fqdn_recipient = rows[i].on;
		s->env.auth_user = rows[i].auth ? "user" : NULL;
		if (smtp_cmd_parse(rows[i].line, strlen(rows[i].line), &cmd, &err) != 0)
			fail_msg("row \"%s\": the line does not parse: %s", rows[i].label, err);
		enum session_check got = session_cmd_check(s, &cmd, reply, sizeof reply);
		if (got != rows[i].want || strcmp(reply, rows[i].reply) != 0)
			fail_msg("row \"%s\": %s \"%s\", want %s \"%s\"", rows[i].label, check_name(got), reply,
			    check_name(rows[i].want), rows[i].reply);
	}
}

/* exempt_recipients (session 26, RFC 5321 4.5.1, RFC 2142): a connect refusal that judged the
 * client (dnsbl, reputation, ratelimit) is held from MAIL to RCPT, where only the exempt
 * recipients pass: a local part of any domain (and <Postmaster>), or a whole address, any
 * case, its domain compared as accept_domains compares (one trailing root dot, U-labels;
 * until late in session 26 "abuse@d.example." missed "abuse@d.example"); accept_domains first. Not a refusal of another kind, nor one of a client that failed
 * pregreet. Until session 26 every MAIL of a refused client was refused. */
static void test_check_exempt(void **state)
{
	static const struct {
		const char *label;
		bool list;
		const char *reason;     /* the connect refusal's; NULL: none */
		bool pregreet;          /* talked before the greeting, pregreet.action reject */
		unsigned set;
		const char *line;
		enum session_check want;
	} rows[] = {
		{ "MAIL, refused, no list", false, "dnsbl", false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_REFUSED },
		{ "MAIL, dnsbl held", true, "dnsbl", false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_OK },
		{ "MAIL, reputation held", true, "reputation", false, S_HELO, "MAIL FROM:<>", SESSION_CHECK_OK },
		{ "MAIL, ratelimit held", true, "ratelimit", false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_OK },
		{ "MAIL, a milter's refusal", true, "milter", false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_REFUSED },
		{ "MAIL, pregreet's refusal", true, "pregreet", false, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_REFUSED },
		{ "MAIL, dnsbl, talked first", true, "dnsbl", true, S_HELO, "MAIL FROM:<a@b.example>", SESSION_CHECK_REFUSED },
		{ "RCPT user@", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<user@d.example>", SESSION_CHECK_REFUSED },
		{ "RCPT postmaster@", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<postmaster@d.example>", SESSION_CHECK_OK },
		{ "RCPT Postmaster alone", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<Postmaster>", SESSION_CHECK_OK },
		{ "RCPT POSTMASTER@ a subdomain", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<POSTMASTER@x.example.test>",
		  SESSION_CHECK_OK },
		{ "RCPT postmasters@", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<postmasters@d.example>", SESSION_CHECK_REFUSED },
		{ "RCPT postmaste@", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<postmaste@d.example>", SESSION_CHECK_REFUSED },
		{ "RCPT the listed address", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<Abuse@D.example>", SESSION_CHECK_OK },
		{ "RCPT the listed address, root dot", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<abuse@d.example.>",
		  SESSION_CHECK_OK },
		{ "RCPT an item with a root dot, mixed case", true, "dnsbl", false, S_HELO | S_MAIL,
		  "RCPT TO:<hostmaster@x.example.test>", SESSION_CHECK_OK },
		{ "RCPT an item's local part, another domain", true, "dnsbl", false, S_HELO | S_MAIL,
		  "RCPT TO:<hostmaster@y.example.test>", SESSION_CHECK_REFUSED },
		{ "RCPT the listed address, a longer domain", true, "dnsbl", false, S_HELO | S_MAIL,
		  "RCPT TO:<abuse@d.example.test>", SESSION_CHECK_REFUSED },
		{ "RCPT abuse@ of another domain", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<abuse@x.example.test>",
		  SESSION_CHECK_REFUSED },
		{ "RCPT postmaster@ not accepted", true, "dnsbl", false, S_HELO | S_MAIL, "RCPT TO:<postmaster@other.example>",
		  SESSION_CHECK_ERROR },
		{ "RCPT postmaster@, talked first", true, "dnsbl", true, S_HELO | S_MAIL, "RCPT TO:<postmaster@d.example>",
		  SESSION_CHECK_REFUSED },
		{ "RCPT user@, not refused", true, NULL, false, S_HELO | S_MAIL, "RCPT TO:<user@d.example>", SESSION_CHECK_OK },
	};
	static char item0[] = "postmaster", item1[] = "abuse@d.example", item2[] = "HostMaster@X.Example.TEST.";
	static char *items[] = { item0, item1, item2 };
	struct fixture *fx = *state;
	struct cfg_strlist saved = fx->cfg->exempt_recipients;
	int saved_action = fx->cfg->pregreet.action;

	assert_int_equal(saved.n, 0);   /* the default: empty */
	fx->cfg->pregreet.action = PREGREET_REJECT;
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct session *s = fixture_session(fx, rows[i].reason ? SESSION_REJECTED : SESSION_COMMAND, rows[i].set);
		struct smtp_cmd cmd;
		const char *err = NULL;
		char reply[1024] = "";

		fx->cfg->exempt_recipients = rows[i].list ? (struct cfg_strlist){ items, 3 } : saved;
		if (rows[i].reason)
			verdict_set(&s->conn_verdict, VERDICT_REJECT, 550, rows[i].reason, "5.7.1 refused");
		s->pregreet_hit = rows[i].pregreet;
		if (smtp_cmd_parse(rows[i].line, strlen(rows[i].line), &cmd, &err) != 0)
			fail_msg("row \"%s\": the line does not parse: %s", rows[i].label, err);
		enum session_check got = session_cmd_check(s, &cmd, reply, sizeof reply);
		if (got != rows[i].want)
			fail_msg("row \"%s\": %s \"%s\", want %s", rows[i].label, check_name(got), reply,
			    check_name(rows[i].want));
		assert_int_equal(s->out.len, 0);
	}
	fx->cfg->exempt_recipients = saved;
	fx->cfg->pregreet.action = saved_action;
}

/* Checks the parser leaves to the session: arguments it cannot tell are missing. */
static void test_check_arguments(void **state)
{
	struct fixture *fx = *state;
	struct session *s = fixture_session(fx, SESSION_COMMAND, S_HELO | S_MAIL | S_RCPT);
	struct smtp_cmd cmd;
	const char *err = NULL;
	char reply[1024];

	assert_int_equal(smtp_cmd_parse("EHLO x", 6, &cmd, &err), 0);
	cmd.arg[0] = '\0';
	assert_int_equal(session_cmd_check(s, &cmd, reply, sizeof reply), SESSION_CHECK_ERROR);
	assert_string_equal(reply, "501 5.5.4 Syntax: EHLO hostname");

	assert_int_equal(smtp_cmd_parse("DATA", 4, &cmd, &err), 0);
	snprintf(cmd.buf, sizeof cmd.buf, "x");
	cmd.arg = cmd.buf;
	assert_int_equal(session_cmd_check(s, &cmd, reply, sizeof reply), SESSION_CHECK_ERROR);
	assert_string_equal(reply, "501 5.5.4 Syntax: DATA");

	assert_int_equal(smtp_cmd_parse("RCPT TO:<c@d.example>", 21, &cmd, &err), 0);
	cmd.addr[0] = '\0';
	assert_int_equal(session_cmd_check(s, &cmd, reply, sizeof reply), SESSION_CHECK_ERROR);
	assert_string_equal(reply, "501 5.1.3 Bad recipient address syntax");

	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS);
	assert_int_equal(smtp_cmd_parse("STARTTLS", 8, &cmd, &err), 0);
	snprintf(cmd.buf, sizeof cmd.buf, "now");
	cmd.arg = cmd.buf;
	assert_int_equal(session_cmd_check(s, &cmd, reply, sizeof reply), SESSION_CHECK_REPLY);
	assert_string_equal(reply, "501 5.5.4 Syntax: STARTTLS");
}

/* The table's shape: every verb finds its row (or the fallback that refuses it), a row
 * with a stage has an apply, every row answers one way. */
static void test_table_shape(void **state)
{
	(void)state;
	for (int v = SMTP_UNKNOWN; v <= SMTP_HTTP; v++) {
		const struct session_cmd *c = session_cmd_find((enum smtp_verb)v);
		int ways = (c->apply != NULL) + (c->reply != NULL) + (c->refuse != NULL);

		print_message("verb: %s\n", smtp_verb_name((enum smtp_verb)v));
		assert_non_null(c);
		if ((int)c->verb != v) {
			assert_int_equal(c->verb, SMTP_UNKNOWN);
			assert_string_equal(c->refuse, "500 5.5.2 Error: command not recognized");
		}
		assert_int_equal(ways, 1);
		if (c->stage != SESSION_NO_STAGE)
			assert_non_null(c->apply);
		if (c->flags & CMD_BUSY)
			assert_true(c->stage != SESSION_NO_STAGE);
	}
	assert_int_equal(session_cmd_find(SMTP_HTTP)->verb, SMTP_UNKNOWN);
}

/* Runs the row of line in s as a command answered at once, and returns what it replied. */
static const char *answer_now(struct session *s, const char *line)
{
	static const struct verdict go_on = { .action = VERDICT_CONTINUE };
	struct smtp_cmd cmd;
	const char *err = NULL;
	const struct session_cmd *c;

	assert_int_equal(smtp_cmd_parse(line, strlen(line), &cmd, &err), 0);
	c = session_cmd_find(cmd.verb);
	s->cmd = c;
	s->out.len = 0;
	if (c->apply) {
		c->apply(s, &go_on);
	} else {
		assert_non_null(c->reply);
		session_reply(s, "%s", c->reply);
	}
	assert_int_equal(s->state, SESSION_COMMAND);   /* answered: nothing in flight */
	return s->out.v ? s->out.v : "";
}

static void test_answers(void **state)
{
	struct fixture *fx = *state;
	struct session *s = fixture_session(fx, SESSION_COMMAND, 0);

	assert_string_equal(answer_now(s, "EHLO client.example"),
	    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
	    "250-SMTPUTF8\r\n250 DSN\r\n");
	assert_string_equal(answer_now(s, "HELO client.example"), "250 mx.test\r\n");
	assert_string_equal(answer_now(s, "HELP"),
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP BDAT\r\n");
	assert_string_equal(answer_now(s, "NOOP"), "250 2.0.0 Ok\r\n");
	assert_string_equal(answer_now(s, "VRFY user"),
	    "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n");
	assert_string_equal(answer_now(s, "EXPN list"), "502 5.5.1 Error: command not implemented\r\n");
	assert_string_equal(answer_now(s, "QUIT"), "221 2.0.0 Bye\r\n");
	assert_true(session_cmd_find(SMTP_QUIT)->flags & CMD_QUIT);
	assert_true(session_cmd_find(SMTP_QUIT)->flags & CMD_RESETS_TXN);   /* a callout's backend gets RSET */

	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS);
	assert_string_equal(answer_now(s, "EHLO client.example"),
	    "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 DSN\r\n");
	assert_string_equal(answer_now(s, "HELP"),
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS BDAT\r\n");
	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS | S_TLS_ON);
	assert_null(strstr(answer_now(s, "EHLO client.example"), "STARTTLS"));
}

/* HELP names what EHLO announces on that listener, no more: BDAT always (CHUNKING), AUTH
 * where EHLO offers it (a submission listener, after TLS, not yet authenticated). */
static void test_help_follows_ehlo(void **state)
{
	struct fixture *fx = *state;
	static char dovecot[] = "unix:/nonexistent/auth-client";
	static char alice[] = "alice";
	struct session *s;
	char *saved = fx->cfg->auth.dovecot;

	fx->cfg->auth.dovecot = dovecot;
	/* port 25: no AUTH, whatever TLS */
	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS | S_TLS_ON);
	assert_null(strstr(answer_now(s, "EHLO client.example"), "AUTH"));
	assert_string_equal(answer_now(s, "HELP"),
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP BDAT\r\n");
	/* submission before STARTTLS: EHLO offers STARTTLS, not AUTH; so does HELP */
	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS);
	fx->lc.submission = true;
	assert_null(strstr(answer_now(s, "EHLO client.example"), "AUTH"));
	assert_string_equal(answer_now(s, "HELP"),
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS BDAT\r\n");
	/* submission after STARTTLS: AUTH in both */
	s = fixture_session(fx, SESSION_COMMAND, S_STARTTLS | S_TLS_ON);
	fx->lc.submission = true;
	assert_non_null(strstr(answer_now(s, "EHLO client.example"), "250-AUTH PLAIN LOGIN\r\n"));
	assert_string_equal(answer_now(s, "HELP"),
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP AUTH BDAT\r\n");
	/* authenticated: EHLO no longer lists AUTH (a second one is 503), nor does HELP */
	s->env.auth_user = alice;
	assert_null(strstr(answer_now(s, "EHLO client.example"), "AUTH"));
	assert_null(strstr(answer_now(s, "HELP"), "AUTH"));
	s->env.auth_user = NULL;
	fx->cfg->auth.dovecot = saved;
}

/* A refusal at HELO: the verdict's reply, the name forgotten, a client error. */
static void test_helo_refused(void **state)
{
	struct fixture *fx = *state;
	struct session *s = fixture_session(fx, SESSION_COMMAND, S_HELO);
	struct verdict v;

	verdict_set(&v, VERDICT_REJECT, 550, "helo", "5.7.1 bad HELO");
	s->cmd = session_cmd_find(SMTP_EHLO);
	s->cmd->apply(s, &v);
	assert_string_equal(s->out.v, "550 5.7.1 bad HELO\r\n");
	assert_string_equal(s->env.helo, "");
	assert_int_equal(s->errors, 1);
	assert_int_equal(s->state, SESSION_COMMAND);
}

/* The refusal a connect verdict held to MAIL (or, under exempt_recipients, to RCPT) records
 * for the session's outcome (s->refused_code, what every module hears at its end through
 * chain_session_end) is the code the client is answered with there (session_verdict_code
 * of conn_verdict). Until session 32 a tempfail without a code was recorded 450 while the
 * client heard 451, and a 421 held to RCPT recorded 421 while the client heard 450. */
static void test_connect_refusal_code(void **state)
{
	static const struct {
		const char *label;
		enum verdict_action action;
		int code;
		const char *reason;
		bool exempt_list;       /* exempt_recipients set: dnsbl/reputation/ratelimit held to RCPT */
		int want;               /* recorded: what the client hears (at MAIL/RCPT, or at once) */
	} rows[] = {
		{ "tempfail without a code, held to RCPT", VERDICT_TEMPFAIL, 0, "dnsbl", true, 451 },
		{ "tempfail 421 held to RCPT", VERDICT_TEMPFAIL, 421, "dnsbl", true, 450 },
		{ "tempfail 450 held to RCPT", VERDICT_TEMPFAIL, 450, "reputation", true, 450 },
		{ "tempfail with a 5xx code, held to RCPT", VERDICT_TEMPFAIL, 554, "reputation", true, 451 },
		{ "tempfail shedding load: 421 in place of the greeting", VERDICT_TEMPFAIL, 450, "ratelimit", true, 421 },
		{ "tempfail not held: 421 in place of the greeting", VERDICT_TEMPFAIL, 0, "dnsbl", false, 421 },
		{ "reject without a code", VERDICT_REJECT, 0, "dnsbl", false, 550 },
		{ "reject 554", VERDICT_REJECT, 554, "dnsbl", false, 554 },
		{ "reject with a 4xx code", VERDICT_REJECT, 451, "milter", false, 550 },
		{ "drop where AUTH cannot lift it: 521 in place of the greeting", VERDICT_REJECT, 521, "dnsbl", false, 521 },
		{ "drop, exempt_recipients set: still 521 in place of the greeting", VERDICT_REJECT, 521, "dnsbl", true, 521 },
	};
	static char item0[] = "postmaster";
	static char *items[] = { item0 };
	struct fixture *fx = *state;
	struct cfg_strlist saved = fx->cfg->exempt_recipients;
	int bad = 0;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct session *s = fixture_session(fx, SESSION_CONNECT, 0);
		struct verdict v;

		fx->cfg->exempt_recipients = rows[i].exempt_list ? (struct cfg_strlist){ items, 1 } : saved;
		verdict_set(&v, rows[i].action, rows[i].code, rows[i].reason, "%s", "");
		session_connect_refusal(s, &v);
		if (s->refused_code != rows[i].want || strcmp(s->refused_reason, rows[i].reason) != 0) {
			print_error("row \"%s\": recorded %d %s, want %d %s\n", rows[i].label, s->refused_code,
			    s->refused_reason, rows[i].want, rows[i].reason);
			bad++;
		}
	}
	fx->cfg->exempt_recipients = saved;     /* before a failure: the config frees its lists */
	assert_int_equal(bad, 0);
}

static void test_state_names(void **state)
{
	(void)state;
	for (int st = SESSION_NEW; st < SESSION_NSTATES; st++) {
		assert_non_null(session_state_name((enum session_state)st));
		assert_string_not_equal(session_state_name((enum session_state)st), "?");
	}
	assert_string_equal(session_state_name(SESSION_DATA), "data");
	assert_string_equal(session_state_name(SESSION_NSTATES), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_check_rows, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_arguments, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_non_fqdn, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_exempt, fixture_setup, fixture_teardown),
		cmocka_unit_test(test_table_shape),
		cmocka_unit_test_setup_teardown(test_answers, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_help_follows_ehlo, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_helo_refused, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_connect_refusal_code, fixture_setup, fixture_teardown),
		cmocka_unit_test(test_state_names),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
