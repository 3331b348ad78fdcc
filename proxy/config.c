/* config.c — the daemon's configuration: `struct mx_config`, its core tables (listen, tls,
 * limits, backends, log, metrics) and the top table, which also lists every module's
 * section (modules.def); config_load/config_free. The engine is cfg.c. */
#include "config.h"
#include "bypass.h"
#include "domain.h"
#include "gwrefuse.h"
#include "hostres.h"
#include "plugins/pconn.h"
#include "rules/recipient_actions.h"
#include "store/store.h"
#include "log.h"
#include "listfile.h"
#include "tls.h"

#include <libfyaml.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <unistd.h>

#define CFG_MAX_LISTENERS   16                   /* = WORKER_MAX_LISTENERS (proxy/worker.h) */

const char *config_key_where(const struct mx_config *cfg, const char *key, char *buf, size_t cap)
{
	return cfg_marks_where(cfg ? cfg->marks : NULL, cfg && cfg->path ? cfg->path : "config", key, buf, cap);
}

static int config_load_any(const char *name, const char *text, size_t len,
			   struct mx_config **out, void *err_fp)
{
	*out = NULL;
	struct mx_config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		if (err_fp)
			fprintf(err_fp, "%s: out of memory\n", name);
		return -1;
	}
	/* the `file:` lists this load does not ask for are forgotten at its end (listfile.h) */
	listfile_load_begin();
	int rc = cfg_table_load_marked(name, text, len, &config_table, cfg, err_fp, &cfg->marks);
	size_t nread = 0, nkept = 0;
	listfile_load_end(&nread, &nkept);
	if (nread + nkept > 0)
		log_event(LOG_LVL_DEBUG, NULL, "event=list_files read=%zu kept=%zu", nread, nkept);
	if (rc < 0)
		goto fail;
	cfg->path = strdup(name);
	if (!cfg->path)
		goto fail;
	*out = cfg;
	return 0;
fail:
	config_free(cfg);
	return -1;
}

int config_load(const char *path, struct mx_config **out, void *err_fp)
{
	if (!path) {
		*out = NULL;
		return -1;
	}
	return config_load_any(path, NULL, 0, out, err_fp);
}

int config_load_string(const char *name, const char *text, size_t len, struct mx_config **out,
		       void *err_fp)
{
	if (!text) {
		*out = NULL;
		return -1;
	}
	return config_load_any(name ? name : "<string>", text, len, out, err_fp);
}

void config_free(struct mx_config *cfg)
{
	if (!cfg)
		return;
	for (size_t r = 0; r < cfg->backends.routes.n; r++)
		domain_set_free(((struct backend_route_config *)cfg->backends.routes.v)[r].match);
	bypass_entries_free(cfg->bypass.v, cfg->bypass.n);
	bypass_entries_free(cfg->deny_senders.v, cfg->deny_senders.n);
	recipient_actions_entries_free(cfg->rules.recipient_actions.v, cfg->rules.recipient_actions.n);
	cfg_table_free(&config_table, cfg);
	domain_set_free(cfg->accept_set);
	hostres_set_free(cfg->resolved);
	free(cfg->quarantine_dir);
	free(cfg->path);
	cfg_marks_free(cfg->marks);
	free(cfg);
}

/* `workers: auto`: the CPUs this process may run on (taskset, a cpuset cgroup, systemd's
 * CPUAffinity=), as HAProxy's nbthread and libuv's uv_available_parallelism() count them,
 * not the machine's: more loops than CPUs only take turns on them. */
static long config_cpus_usable(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

int config_worker_count(const struct mx_config *cfg)
{
	long n = cfg ? cfg->workers : 0;
	if (n <= 0) {
		n = config_cpus_usable();
		if (n < 1)
			n = 1;
	}
	return n > 64 ? 64 : (int)n;
}
/* ---------------------------------------------------------------- the core tables */

static const char *const listen_tls_choices[] = { "none", "starttls", "implicit", NULL };
static const char *const tls_version_choices[] = { "1.2", "1.3", NULL };
static const char *const tls_ccert_choices[] = { "none", "ask", "require", NULL };	/* enum tls_ccert */
static const char *const bare_lf_choices[] = { "reject", "normalize", NULL };
static const char *const nul_choices[] = { "reject", "strip", NULL };
static const char *const filter_deadline_choices[] = { "tempfail", "accept", "tag", NULL };
static const char *const balance_choices[] = { "round_robin", "least_conn", "source_hash", NULL };
static const char *const identity_choices[] = { "none", "xclient", "proxy_v2", NULL };
static const char *const log_level_choices[] = { "debug", "info", "warning", "error", NULL };
static const char *const bypass_mixed_choices[] = { "split", "check", NULL };   /* enum bypass_mixed */

#define S(x) ((double)(x) * 1000.0)   /* seconds -> ms for duration bounds */

static int listen_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct listen_config *l = obj;
	const char *err;
	if (!l->address)
		return 0;
	if (cfg_parse_listen_address(l->address, &l->sa, &l->salen, &err) < 0) {
		if (n && fy_node_is_scalar(n))
			return cfg_error(p, n, "%s", err);
		return cfg_error_key(p, n, "address", -1, "%s", err);
	}
	return 0;
}

static const struct cfg_field listen_fields[] = {
	{ "address", CFG_STRING, offsetof(struct listen_config, address), .flags = CFG_REQUIRED,
	  .doc = "address:port to listen on: 127.0.0.1:2525, \"[::1]:25\", :25 (all IPv4), \"[::]:25\" (all IPv6); quote [...] and *" },
	{ "tls", CFG_ENUM, offsetof(struct listen_config, tls), "none", .choices = listen_tls_choices,
	  .doc = "none, starttls (offer STARTTLS) or implicit (TLS from the first byte, port 465)" },
	{ "proxy_protocol", CFG_BOOL, offsetof(struct listen_config, proxy_protocol), "false",
	  .doc = "expect a PROXY v1/v2 header, accepted only from trusted_proxies: a peer not listed, a header missing or malformed, or none within limits.proxy_timeout closes the connection without a reply" },
	{ "submission", CFG_BOOL, offsetof(struct listen_config, submission), "false",
	  .doc = "a submission port (587, or 465 with tls: implicit): AUTH offered after TLS and required before MAIL (530 5.7.0); needs auth.dovecot" },
	{ "auth", CFG_BOOL, offsetof(struct listen_config, auth), "false",
	  .doc = "offer AUTH after TLS without requiring it (never offered on a listener without submission or auth)" },
	{ "require_tls", CFG_BOOL, offsetof(struct listen_config, require_tls), "false",
	  .doc = "with tls: starttls, MAIL only after STARTTLS (530 5.7.0 before; Postfix's encrypt level). "
		"Not for a public MX: RFC 3207 4 says such a server must not require TLS" },
	{ NULL }
};
static const struct cfg_table listen_table = {
	"listen", sizeof(struct listen_config), listen_fields, listen_validate
};

/* Files of a certificate pair (tls, tls.sni[]): readable, and the second pair whole. */
static int tls_check_files(struct cfg_parse *p, struct fy_node *n, const char *cert, const char *key,
    const char *cert2, const char *key2)
{
	int rc = 0;

	if (cert && access(cert, R_OK) != 0)
		rc = cfg_error_key(p, n, "certificate", -1, "cannot read %s: %s", cert, strerror(errno));
	if (key && access(key, R_OK) != 0)
		rc = cfg_error_key(p, n, "key", -1, "cannot read %s: %s", key, strerror(errno));
	if (cert2 && access(cert2, R_OK) != 0)
		rc = cfg_error_key(p, n, "second_certificate", -1, "cannot read %s: %s", cert2, strerror(errno));
	if (key2 && access(key2, R_OK) != 0)
		rc = cfg_error_key(p, n, "second_key", -1, "cannot read %s: %s", key2, strerror(errno));
	if (!cert2 != !key2)
		rc = cfg_error_key(p, n, key2 ? "second_key" : "second_certificate", -1,
				   "second_certificate and second_key go together");
	return rc;
}

/* Which key an OpenSSL error of tls_ctx_new_server/tls_ctx_add_sni concerns. */
static const char *tls_error_key(const char *err)
{
	return strncmp(err, "ciphers", 7) == 0 ? "ciphers" :
	    strncmp(err, "client_ca_file", 14) == 0 ? "client_ca_file" :
	    strncmp(err, "min version", 11) == 0 ? "min_version" :
	    strncmp(err, "second certificate", 18) == 0 ? "second_certificate" :
	    strncmp(err, "second key", 10) == 0 ? "second_key" :
	    strncmp(err, "certificate", 11) == 0 ? "certificate" : "key";
}

static int tls_sni_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct tls_sni_config *s = obj;

	return tls_check_files(p, n, s->certificate, s->key, s->second_certificate, s->second_key);
}

static const struct cfg_field tls_sni_fields[] = {
	{ "certificate", CFG_STRING, offsetof(struct tls_sni_config, certificate), .flags = CFG_REQUIRED,
	  .doc = "PEM certificate chain; a client whose SNI matches one of its names (subjectAltName DNS, wildcards too) gets it" },
	{ "key", CFG_STRING, offsetof(struct tls_sni_config, key), .flags = CFG_REQUIRED, .doc = "its PEM private key" },
	{ "second_certificate", CFG_STRING, offsetof(struct tls_sni_config, second_certificate),
	  .doc = "optional: one with a key of another type, for the same names" },
	{ "second_key", CFG_STRING, offsetof(struct tls_sni_config, second_key), .doc = "its PEM private key" },
	{ NULL }
};
static const struct cfg_table tls_sni_table = {
	"tls.sni[]", sizeof(struct tls_sni_config), tls_sni_fields, tls_sni_validate
};

static int tls_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct tls_config *t = obj;
	int rc = tls_check_files(p, n, t->certificate, t->key, t->second_certificate, t->second_key);

	if (t->certificate && !t->key)
		rc = cfg_error_key(p, n, "key", -1, "tls.certificate is set but tls.key is not");
	if (t->key && !t->certificate)
		rc = cfg_error_key(p, n, "certificate", -1, "tls.key is set but tls.certificate is not");
	if (t->second_certificate && !t->certificate)
		rc = cfg_error_key(p, n, "second_certificate", -1, "a second certificate needs tls.certificate");
	if (t->client_ca_file && access(t->client_ca_file, R_OK) != 0)
		rc = cfg_error_key(p, n, "client_ca_file", -1, "cannot read %s: %s", t->client_ca_file, strerror(errno));
	if (t->client_certificate == TLS_CCERT_REQUIRE && !t->client_ca_file)
		rc = cfg_error_key(p, n, "client_ca_file", -1,
		    "client_certificate: require needs the CAs the certificates are to verify against");
	if (t->sni.n > 0 && !t->certificate)
		rc = cfg_error_key(p, n, "sni", -1, "SNI certificates need tls.certificate (for clients matching none)");
	if (rc == 0 && t->certificate && t->key) {
		/* What OpenSSL makes of them (not PEM, a key for another certificate, a cipher list
		 * it does not know), at the key it concerns: -t, the start and a reload alike. */
		char err[512];
		struct tls_ctx *ctx = tls_ctx_new_server(t->certificate, t->key, t->second_certificate,
		    t->second_key, t->min_version, t->ciphers, err, sizeof(err));
		if (ctx == NULL)
			rc = cfg_error_key(p, n, tls_error_key(err), -1, "%s", err);
		for (size_t i = 0; ctx && i < t->sni.n; i++) {
			const struct tls_sni_config *e = &((const struct tls_sni_config *)t->sni.v)[i];

			if (tls_ctx_add_sni(ctx, e->certificate, e->key, e->second_certificate, e->second_key,
			    t->min_version, t->ciphers, err, sizeof(err)) != 0) {
				struct fy_node *item = cfg_seq_item(fy_node_pair_value(cfg_map_pair(n, "sni")), i);
				size_t old = cfg_path_push_key(p, "sni", 3);

				cfg_path_push_index(p, i);
				rc = cfg_error_key(p, item && fy_node_is_mapping(item) ? item : NULL,
				    tls_error_key(err), -1, "%s", err);
				cfg_path_pop(p, old);
			}
		}
		if (ctx && tls_ctx_set_client_verify(ctx, t->client_certificate, t->client_ca_file, err, sizeof(err)) != 0)
			rc = cfg_error_key(p, n, "client_ca_file", -1, "%s", err);
		if (ctx && tls_ctx_set_ciphersuites(ctx, t->ciphersuites, err, sizeof(err)) != 0)
			rc = cfg_error_key(p, n, "ciphersuites", -1, "%s", err);
		tls_ctx_unref(ctx);
	}
	return rc;
}

static const struct cfg_field tls_fields[] = {
	{ "certificate", CFG_STRING, offsetof(struct tls_config, certificate),
	  .doc = "PEM certificate chain for STARTTLS/implicit TLS listeners" },
	{ "key", CFG_STRING, offsetof(struct tls_config, key), .doc = "PEM private key" },
	{ "second_certificate", CFG_STRING, offsetof(struct tls_config, second_certificate),
	  .doc = "optional: a second PEM certificate chain with a key of another type (ECDSA beside RSA, "
		 "as Postfix's smtpd_tls_eccert_file); each client gets the one its signature algorithms allow" },
	{ "second_key", CFG_STRING, offsetof(struct tls_config, second_key),
	  .doc = "the second certificate's PEM private key" },
	{ "sni", CFG_STRUCT_LIST, offsetof(struct tls_config, sni), .sub = &tls_sni_table,
	  .doc = "optional: more certificates, each sent to clients whose SNI matches its names "
		 "(HAProxy's crt list, Postfix's tls_server_sni_maps); others get tls.certificate" },
	{ "ciphers", CFG_STRING, offsetof(struct tls_config, ciphers),
	  .doc = "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's); TLS 1.3 suites are tls.ciphersuites" },
	{ "ciphersuites", CFG_STRING, offsetof(struct tls_config, ciphersuites),
	  .doc = "TLS 1.3 cipher suites, ':'-separated in the server's order of preference, e.g. "
		 "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256 (OpenSSL's SSL_CTX_set_ciphersuites; "
		 "default: OpenSSL's); a name OpenSSL does not offer is refused" },
	{ "min_version", CFG_ENUM, offsetof(struct tls_config, min_version), "1.2",
	  .choices = tls_version_choices, .doc = "lowest TLS version offered: 1.2 or 1.3" },
	{ "client_certificate", CFG_ENUM, offsetof(struct tls_config, client_certificate), "none",
	  .choices = tls_ccert_choices,
	  .doc = "ask TLS clients for a certificate: none; ask (any client goes on; a certificate that verifies "
		 "against client_ca_file is \"verified\", as Postfix's smtpd_tls_ask_ccert); require (the handshake fails "
		 "without one that verifies, as smtpd_tls_req_ccert; a STARTTLS listener then needs require_tls)" },
	{ "client_ca_file", CFG_STRING, offsetof(struct tls_config, client_ca_file),
	  .doc = "PEM file of the CAs client certificates verify against (Postfix's smtpd_tls_CAfile); their "
		 "names go in the certificate request" },
	{ NULL }
};
static const struct cfg_table tls_table = {
	"tls", sizeof(struct tls_config), tls_fields, tls_validate
};

static int limits_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct limits_config *l = obj;
	struct stat st;
	if (l->spool_dir && (stat(l->spool_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
		return cfg_error_key(p, n, "spool_dir", -1, "%s is not a directory", l->spool_dir);
	return 0;
}

static const struct cfg_field limits_fields[] = {
	{ "max_connections", CFG_INT, offsetof(struct limits_config, max_connections), "16000",
	  1, 10000000, .doc = "concurrent client connections, all workers together (each may hold 4 file descriptors: 16000 fits the unit's LimitNOFILE=65536)" },
	{ "max_connections_per_ip", CFG_INT, offsetof(struct limits_config, max_connections_per_ip),
	  "50", 1, 10000000, .doc = "concurrent connections from one client (an IPv6 client: its client_ipv6_prefix network)" },
	{ "connection_limit_exceptions", CFG_CIDRLIST, offsetof(struct limits_config, connection_limit_exceptions),
	  .doc = "clients max_connections_per_ip does not cap (Postfix's smtpd_client_connection_limit_exceptions): a campus or carrier NAT, a trusted relay; addresses, prefixes or file:PATH (re-read on reload). Still counted by max_connections" },
	{ "client_ipv6_prefix", CFG_INT, offsetof(struct limits_config, client_ipv6_prefix), "64",
	  32, 128, .doc = "an IPv6 client is its network of this length wherever a client is a key: max_connections_per_ip, ratelimit key ip, reputation's client record (128: each address)" },
	{ "max_message_size", CFG_SIZE, offsetof(struct limits_config, max_message_size), "50M",
	  1024, (double)(1ull << 40), .doc = "largest message accepted (announced in EHLO SIZE)" },
	{ "max_recipients", CFG_INT, offsetof(struct limits_config, max_recipients), "100",
	  1, 100000, .doc = "RCPT TO per transaction; more get 452 4.5.3" },
	{ "command_timeout", CFG_DURATION, offsetof(struct limits_config, command_timeout), "300s",
	  S(1), S(86400), .doc = "idle time allowed between client commands" },
	{ "data_timeout", CFG_DURATION, offsetof(struct limits_config, data_timeout), "600s",
	  S(1), S(86400), .doc = "time allowed between DATA chunks from the client" },
	{ "proxy_timeout", CFG_DURATION, offsetof(struct limits_config, proxy_timeout), "10s",
	  100, S(300), .doc = "on a listener with proxy_protocol, time allowed for the PROXY header after the connect: none complete by then closes the connection without a reply (Postfix's smtpd_upstream_proxy_timeout, 5s there)" },
	{ "data_deadline", CFG_DURATION, offsetof(struct limits_config, data_deadline), "1h",
	  S(1), S(86400), .doc = "the whole DATA phase, 354 to the final dot (BDAT: the first chunk to the LAST one, the commands between them included): a client trickling bytes or chunks is cut off (421 4.4.2); 1h passes a 50M message at 15 KB/s" },
	{ "session_deadline", CFG_DURATION, offsetof(struct limits_config, session_deadline), "1h",
	  S(1), S(7 * 86400), .doc = "a whole client session from its connect: once past it, the session ends at its next command outside a transaction (421 4.4.2; a message under way is finished first, the client reconnects for the next), so a client sending commands forever, each well inside command_timeout and none an error or junk command (EHLO after EHLO), cannot hold a connection for ever; Postfix's client reuses a connection for 300s at most (smtp_connection_reuse_time_limit)" },
	{ "filter_deadline", CFG_DURATION, offsetof(struct limits_config, filter_deadline), "5m",
	  S(1), S(3600), .doc = "the whole end-of-data chain after the final dot, every content filter together (each plugin's `timeout` bounds one call, a milter's SMFIR_PROGRESS restarts that but never this): past it the filter running is given up and the message gets `filter_deadline_action`, logged event=filter_deadline. The client waits 10 minutes after its final dot at most (RFC 5321 4.5.3.2.6), many give up sooner" },
	{ "filter_deadline_action", CFG_ENUM, offsetof(struct limits_config, filter_deadline_action), "tempfail",
	  .choices = filter_deadline_choices, .doc = "past limits.filter_deadline: tempfail (451 4.3.0, the client retries), accept (the filters not yet run are skipped, the rules engine still runs, the message is relayed) or tag (accept, and the message carries X-Mxgate-Filter-Error: NAME; stage=eom; error=deadline naming the filter given up)" },
	{ "drain_timeout", CFG_DURATION, offsetof(struct limits_config, drain_timeout), "25s",
	  0, S(86400), .doc = "on SIGTERM, how long sessions may finish before exit (those left then get 421 and mxgate exits within 5 s more): the default 25s + 5s fits Kubernetes' default 30 s terminationGracePeriodSeconds" },
	{ "bare_lf", CFG_ENUM, offsetof(struct limits_config, bare_lf), "normalize",
	  .choices = bare_lf_choices, .doc = "a bare LF or CR in DATA: normalize it to CRLF (safe: only `<CRLF>.<CRLF>` ends DATA and the message is re-stuffed on the way out) or reject the message (550 5.6.0)" },
	{ "nul", CFG_ENUM, offsetof(struct limits_config, nul), "reject",
	  .choices = nul_choices, .doc = "NUL bytes in DATA: reject the message (554 5.6.0) or strip them; never relayed either way" },
	{ "max_line_length", CFG_INT, offsetof(struct limits_config, max_line_length), "1000",
	  512, 1000, .doc = "longest command line incl. CRLF (RFC 5321 4.5.3.1.4: at least 512; 1000, its own limit, is what the command parser takes)" },
	{ "max_errors", CFG_INT, offsetof(struct limits_config, max_errors), "10", 1, 1000,
	  .doc = "client errors (bad commands, refused recipients and senders) before 421 and disconnect; a delivered (or filter-discarded) message starts the count over (Postfix's smtpd_hard_error_limit, \"errors without delivering mail\")" },
	{ "max_junk_commands", CFG_INT, offsetof(struct limits_config, max_junk_commands), "100", 0, 100000,
	  .doc = "NOOP, RSET, VRFY, EXPN and HELP commands, and EHLO or HELO again after one was answered (since the connect, STARTTLS or XCLIENT), a client may send (Postfix's smtpd_junk_command_limit, where HELP is an unknown command and an error at once); each one more is answered and counts as an error toward max_errors, so a flood of them cannot hold a session for ever; a delivered (or filter-discarded) message starts the count over" },
	{ "max_mail_commands", CFG_INT, offsetof(struct limits_config, max_mail_commands), "20", 1, 100000,
	  .doc = "MAIL commands (transactions begun) a client may send without a delivered message; one more is answered 421 4.7.0 and the connection closes (event=tempfail stage=mail reason=too_many_transactions). Each transaction runs the sender's checks (SPF, sender_domain: DNS lookups for a domain the client chose), and max_junk_commands (RSET) with max_errors alone let one connection begin about 110 of them (Exim bounds messages per connection, smtp_accept_max_per_connection); a sender verification callout begins 2 or 3 on one connection; a delivered (or filter-discarded) message starts the count over" },
	{ "max_recipient_overshoot", CFG_INT, offsetof(struct limits_config, max_recipient_overshoot), "1000", 0, 1000000,
	  .doc = "RCPT TO past max_recipients in one transaction, each answered 452 4.5.3, before each one more also counts as an error toward max_errors (Postfix's smtpd_recipient_overshoot_limit), so endless recipients cannot hold a session" },
	{ "memory_budget", CFG_SIZE, offsetof(struct limits_config, memory_budget), "256M",
	  0, (double)(1ull << 40), .doc = "message bytes held in memory by all sessions together; past it a "
	  "message spills to spool_dir below memory_threshold (0 = no bound but memory_threshold per message)" },
	{ "memory_threshold", CFG_SIZE, offsetof(struct limits_config, memory_threshold), "256K",
	  0, (double)(1ull << 30), .doc = "message bytes held in memory before spilling to spool_dir" },
	{ "spool_dir", CFG_STRING, offsetof(struct limits_config, spool_dir), "/tmp",
	  .doc = "directory for messages larger than memory_threshold (must exist)" },
	{ NULL }
};
static const struct cfg_table limits_table = {
	"limits", sizeof(struct limits_config), limits_fields, limits_validate
};

static const struct cfg_field health_fields[] = {
	{ "interval", CFG_DURATION, offsetof(struct health_check_config, interval), "5s",
	  100, S(3600), .doc = "time between probes of each backend" },
	{ "timeout", CFG_DURATION, offsetof(struct health_check_config, timeout), "3s",
	  100, S(3600), .doc = "the whole probe: connect, 220 greeting and the EHLO (LHLO) reply within this, or it fails" },
	{ "fall", CFG_INT, offsetof(struct health_check_config, fall), "2", 1, 100,
	  .doc = "failures in a row before a backend is marked down: probes, and deliveries that met "
		 "trouble with the session (no connection, timeout, lost connection, 421); a 4xx to DATA "
		 "or after the dot is the message's and does not count" },
	{ "rise", CFG_INT, offsetof(struct health_check_config, rise), "2", 1, 100,
	  .doc = "good probes in a row before a down backend is used again" },
	{ NULL }
};
static const struct cfg_table health_table = {
	"backends.health_check", sizeof(struct health_check_config), health_fields, NULL
};

static const struct cfg_field retry_ledger_fields[] = {
	{ "ttl", CFG_DURATION, offsetof(struct retry_ledger_config, ttl), "5d", S(1), S(30 * 86400),
	  .doc = "how long the recipients a backend took are remembered after the client heard 4xx "
		 "(Postfix's maximal_queue_lifetime: a client retries at most that long)" },
	{ "max_entries", CFG_INT, offsetof(struct retry_ledger_config, max_entries), "100000", 0, 10000000,
	  .doc = "recipients remembered, all workers together (about 100 octets each); past it the "
		 "oldest go (event=ledger_evict): their next retry repeats them. 0 turns the ledger off" },
	{ "store", CFG_STRING, offsetof(struct retry_ledger_config, store), "memory",
	  .doc = "memory (this process: a restart forgets), lmdb:/dir (this host: survives a restart, "
		 "shared by the processes that name the directory; may be the reputation or greylist "
		 "directory) or redis://[:password@]host[:port][/db] | "
		 "redis-sentinel://[:password@]host[:port][,...]/master[/db] (every node that names the server: "
		 "a retry that reaches another node behind a load balancer finds what the first "
		 "delivered; keys mxledger:*)" },
	{ "timeout", CFG_DURATION, offsetof(struct retry_ledger_config, timeout), "200ms", 1, 60000,
	  .doc = "a Redis store: how long a message waits for the ledger's answer before it is "
		 "delivered as without a ledger (event=ledger_store_error action=deliver: a possible "
		 "duplicate, never a loss)" },
	{ NULL }
};

/* The store: memory, an LMDB directory or a Redis server (store_kind_of's forms). */
static int retry_ledger_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct retry_ledger_config *c = obj;
	int kind = store_kind_of(c->store);

	if (c->store == NULL || strcmp(c->store, "memory") == 0 || kind == STORE_LMDB || kind == STORE_REDIS)
		return 0;
	return cfg_error_key(p, n, "store", -1, "expected memory, lmdb:/dir or redis://host:port/db (or redis-sentinel://host:port[,...]/master[/db])");
}

static const struct cfg_table retry_ledger_table = {
	"backends.retry_ledger", sizeof(struct retry_ledger_config), retry_ledger_fields,
	retry_ledger_validate
};

/* See config.h. Off by default: the unit tests and the config fuzzer load configs without
 * asking the system resolver. */
static bool config_resolving;
static const struct hostres_set *config_seed;

void config_resolve_hosts(bool on)
{
	config_resolving = on;
}

void config_resolve_seed(const struct hostres_set *seed)
{
	config_seed = seed;
}

/* cfg_parse_backend_url. The host names are resolved after the whole file is read
 * (config_resolve_backends: dns.resolvers and dns.timeout are known then). 0, or -1 with
 * *err (static). */
static int config_check_backend_url(const char *url, struct cfg_backend_url *u, const char **err)
{
	return cfg_parse_backend_url(url, u, err);
}

/* The host name of url for the set (smtp:// and lmtp:// with a name or an address), or NULL. */
static const char *config_url_host(const char *url, struct cfg_backend_url *u)
{
	const char *err;

	if (url == NULL || cfg_parse_backend_url(url, u, &err) < 0 ||
	    (u->kind != CFG_BACKEND_SMTP && u->kind != CFG_BACKEND_LMTP))
		return NULL;
	return u->host;
}

/* An unresolved URL's error, at its place: key (with index i, or -1) of section. */
static int config_resolve_error(struct cfg_parse *p, struct fy_node *section, const char *key, long i,
    const struct hostres_set *set, const char *url)
{
	struct cfg_backend_url u;
	const char *host = config_url_host(url, &u);
	const struct hostres_entry *e = host ? hostres_set_find(set, host) : NULL;

	if (e == NULL || e->err == NULL)
		return 0;
	return cfg_error_key(p, section, key, i, "%s: \"%s\"", e->err, url);
}

/* See config.h. */
struct hostres_set *config_host_names(const struct mx_config *c, char *servers, size_t cap)
{
	const struct backends_config *bc = &c->backends;
	const struct backend_server_config *sv = bc->servers.v;
	const struct backend_route_config *rv = bc->routes.v;
	struct cfg_backend_url u;
	const char *h;
	struct hostres_set *s = hostres_set_new();

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < bc->servers.n; i++)
		if ((h = config_url_host(sv[i].address, &u)) != NULL && hostres_set_add(s, h) < 0)
			goto fail;
	for (size_t r = 0; r < bc->routes.n; r++)
		for (size_t j = 0; j < rv[r].servers.n; j++)
			if ((h = config_url_host(rv[r].servers.v[j], &u)) != NULL && hostres_set_add(s, h) < 0)
				goto fail;
	/* the filter peers' (plugins[].address) too: their instances on the workers must not
	 * look a name up (plugins/pconn.c) */
	const struct plugin_config *pcs = c->plugins.v;
	char ph[256];
	for (size_t i = 0; i < c->plugins.n; i++)
		if (pconn_addr_host(pcs[i].address, ph, sizeof(ph)) == 1 && hostres_set_add(s, ph) < 0)
			goto fail;
	config_dns_servers(c, servers, cap);
	return s;
fail:
	hostres_set_free(s);
	return NULL;
}

/* See config.h. */
void config_dns_servers(const struct mx_config *c, char *servers, size_t cap)
{
	size_t used = 0;
	if (cap > 0)
		servers[0] = '\0';
	for (size_t i = 0; i < c->dns.resolvers.n && cap > 0; i++) {
		int k = snprintf(servers + used, cap - used, "%s%s", i ? "," : "", c->dns.resolvers.v[i]);
		if (k < 0 || (size_t)k >= cap - used) {
			servers[used] = '\0';
			break;
		}
		used += (size_t)k;
	}
}

/* See config.h. */
int config_take_resolved(struct mx_config *c, struct hostres_set *set)
{
	const struct plugin_config *pcs = c->plugins.v;
	char ph[256];

	hostres_set_free(c->resolved);
	c->resolved = set;
	for (size_t i = 0; set != NULL && i < set->n; i++)
		if (!set->v[i].done || set->v[i].err != NULL)
			return -1;
	for (size_t i = 0; set != NULL && i < c->plugins.n; i++) {
		const struct hostres_entry *e;
		if (pconn_addr_host(pcs[i].address, ph, sizeof(ph)) == 1 &&
		    (e = hostres_set_find(set, ph)) != NULL && e->n > 0)
			pconn_names_publish_all(ph, e->sa, e->n);
	}
	return set != NULL ? 0 : -1;
}

/* With config_resolve_hosts on: every backend host name (servers, routes)
 * resolved once, all at once, through dns.resolvers within dns.timeout (hostres.h), kept in
 * c->resolved for the pool (backend.c), so `-t`, the start and a reload refuse a name that
 * does not resolve in time, and never wait longer (a DNS server that does not answer made
 * getaddrinfo wait for ever, `-t` and a reload with it). */
static int config_resolve_backends(struct cfg_parse *p, struct fy_node *n, struct mx_config *c)
{
	const struct backends_config *bc = &c->backends;
	const struct backend_server_config *sv = bc->servers.v;
	const struct backend_route_config *rv = bc->routes.v;
	int rc = 0;

	const struct plugin_config *pcs = c->plugins.v;
	char ph[256];
	char servers[1024];

	if (!config_resolving)
		return 0;
	if ((c->resolved = config_host_names(c, servers, sizeof(servers))) == NULL)
		return cfg_error(p, n, "out of memory");
	hostres_set_adopt(c->resolved, config_seed);
	/* A reload's second reading (main.c: a name did not resolve, read again for the
	 * FILE:LINE:COL lines) runs on the main loop: a name the seed lacks (the file was edited
	 * while the first reading's names resolved) fails here, never asked on that loop. */
	if (config_seed != NULL)
		hostres_set_fail_pending(c->resolved, "cannot resolve host: the file changed while its names were resolved; reload again");
	hostres_set_resolve(c->resolved, servers, c->dns.timeout ? c->dns.timeout : 2000,
	    c->dns.tries ? (int)c->dns.tries : 2);

	struct fy_node *bn = fy_node_pair_value(cfg_map_pair(n, "backends"));
	struct fy_node *sn = bn && fy_node_is_mapping(bn) ? fy_node_pair_value(cfg_map_pair(bn, "servers")) : NULL;
	struct fy_node *rn = bn && fy_node_is_mapping(bn) ? fy_node_pair_value(cfg_map_pair(bn, "routes")) : NULL;
	for (size_t i = 0; i < bc->servers.n; i++) {
		struct fy_node *item = sn && fy_node_is_sequence(sn) ? cfg_seq_item(sn, i) : sn;
		size_t old = cfg_path_push_key(p, "backends", 8);
		cfg_path_push_key(p, "servers", 7);
		cfg_path_push_index(p, i);
		if (item && fy_node_is_mapping(item)) {
			if (config_resolve_error(p, item, "address", -1, c->resolved, sv[i].address) < 0)
				rc = -1;
		} else {
			struct cfg_backend_url u2;
			const char *host = config_url_host(sv[i].address, &u2);
			const struct hostres_entry *e = host ? hostres_set_find(c->resolved, host) : NULL;
			if (e && e->err)
				rc = cfg_error(p, item ? item : n, "%s: \"%s\"", e->err, sv[i].address);
		}
		cfg_path_pop(p, old);
	}
	for (size_t r = 0; r < bc->routes.n; r++) {
		struct fy_node *item = rn && fy_node_is_sequence(rn) ? cfg_seq_item(rn, r) : rn;
		size_t old = cfg_path_push_key(p, "backends", 8);
		cfg_path_push_key(p, "routes", 6);
		cfg_path_push_index(p, r);
		for (size_t j = 0; j < rv[r].servers.n; j++)
			if (config_resolve_error(p, item ? item : n, "servers", (long)j, c->resolved, rv[r].servers.v[j]) < 0)
				rc = -1;
		cfg_path_pop(p, old);
	}
	struct fy_node *pn = fy_node_pair_value(cfg_map_pair(n, "plugins"));
	for (size_t i = 0; i < c->plugins.n; i++) {
		if (pconn_addr_host(pcs[i].address, ph, sizeof(ph)) != 1)
			continue;
		const struct hostres_entry *e = hostres_set_find(c->resolved, ph);
		if (e && e->err == NULL && e->n > 0) {
			pconn_names_publish_all(ph, e->sa, e->n);
			continue;
		}
		struct fy_node *item = pn && fy_node_is_sequence(pn) ? cfg_seq_item(pn, i) : pn;
		size_t old = cfg_path_push_key(p, "plugins", 7);
		cfg_path_push_index(p, i);
		rc = cfg_error_key(p, item ? item : n, "address", -1, "%s: \"%s\"",
		    e && e->err ? e->err : "cannot resolve host", pcs[i].address);
		cfg_path_pop(p, old);
	}
	return rc;
}

static int server_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct backend_server_config *s = obj;
	struct cfg_backend_url u;
	const char *err;
	if (s->address && config_check_backend_url(s->address, &u, &err) < 0) {
		if (n && fy_node_is_scalar(n))
			return cfg_error(p, n, "%s: \"%s\"", err, s->address);
		return cfg_error_key(p, n, "address", -1, "%s: \"%s\"", err, s->address);
	}
	/* 0 is "the backends.* one"; any other value has the same floor as those */
	const struct { const char *key; uint64_t v; } t[] = {
		{ "connect_timeout", s->connect_timeout }, { "reply_timeout", s->reply_timeout },
		{ "data_timeout", s->data_timeout },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].v > 0 && t[i].v < 100)
			return cfg_error_key(p, n, t[i].key, -1, "at least 100ms (or 0: backends.%s)", t[i].key);
	/* backends.data_deadline's floor: a whole message, not one read */
	if (s->data_deadline > 0 && s->data_deadline < 1000)
		return cfg_error_key(p, n, "data_deadline", -1, "at least 1s (or 0: backends.data_deadline)");
	return 0;
}

static const struct cfg_field server_fields[] = {
	{ "address", CFG_STRING, offsetof(struct backend_server_config, address), .flags = CFG_REQUIRED,
	  .doc = "smtp://host:port, lmtp://host:port, lmtp:unix:/path or maildir:/path" },
	{ "weight", CFG_INT, offsetof(struct backend_server_config, weight), "1", 1, 1000,
	  .doc = "share of messages relative to the other servers" },
	{ "backup", CFG_BOOL, offsetof(struct backend_server_config, backup), "false",
	  .doc = "a backup server (HAProxy's backup, Postfix's smtp_fallback_relay): it gets a message only "
		 "when no other server of its set can take it, every one down or drained, or for that "
		 "message already tried; the others up again take the mail back" },
	{ "max_connections", CFG_INT, offsetof(struct backend_server_config, max_connections), "0", 0, 100000,
	  .doc = "connections in use to this server at most, from every worker (HAProxy's maxconn; 0 = no "
		 "limit): a transaction that would pass it goes to another server; with every server full "
		 "the client gets `451 4.4.1` at once, logged as event=backends_full. A pick takes its place "
		 "at once: workers picking at the same moment never pass it" },
	{ "connect_timeout", CFG_DURATION, offsetof(struct backend_server_config, connect_timeout), "0",
	  0, S(3600), .doc = "backends.connect_timeout for this server only (0: that one)" },
	{ "reply_timeout", CFG_DURATION, offsetof(struct backend_server_config, reply_timeout), "0",
	  0, S(3600), .doc = "backends.reply_timeout for this server only (0: that one)" },
	{ "data_timeout", CFG_DURATION, offsetof(struct backend_server_config, data_timeout), "0",
	  0, S(86400), .doc = "backends.data_timeout for this server only (0: that one), e.g. a slow "
		 "LMTP store or a remote site" },
	{ "data_deadline", CFG_DURATION, offsetof(struct backend_server_config, data_deadline), "0",
	  0, S(7 * 86400), .doc = "backends.data_deadline for this server only (0: that one): a whole "
		 "message to it, from its first octet to the last reply, e.g. longer for a remote site "
		 "behind a slow link, shorter for a local store that should never take long" },
	{ "tls_verify_name", CFG_STRING, offsetof(struct backend_server_config, tls_verify_name),
	  .doc = "with backends.tls_verify: the name this server's certificate must carry (HAProxy's "
		 "verifyhost; default: the host of its address, a name or an IP address); a server "
		 "given by IP address gets this name as SNI too" },
	{ NULL }
};
static const struct cfg_table server_table = {
	"backends.servers[]", sizeof(struct backend_server_config), server_fields, server_validate
};

static const char *domains_file_add(void *set, const char *item);

static int route_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct backend_route_config *r = obj;
	struct cfg_backend_url u;
	const char *err;
	int rc = 0;
	for (size_t i = 0; i < r->servers.n; i++)
		if (config_check_backend_url(r->servers.v[i], &u, &err) < 0)
			rc = cfg_error_key(p, n, "servers", (long)i, "%s: \"%s\"", err, r->servers.v[i]);
	/* the set the pool matches with: patterns and "file:PATH" items, read now (so SIGHUP,
	 * which loads a new config, re-reads the files), as accept_domains */
	domain_set_free(r->match);
	if ((r->match = domain_set_new()) == NULL)
		return cfg_error_key(p, n, "domains", -1, "out of memory");
	for (size_t i = 0; i < r->domains.n; i++) {
		const char *why;

		if (strncmp(r->domains.v[i], "file:", 5) == 0) {
			if (cfg_read_list_file(p, n, "domains", i, r->domains.v[i] + 5, domains_file_add, r->match) < 0)
				rc = -1;
		} else if (domain_set_add(r->match, r->domains.v[i], &why) != 0) {
			rc = cfg_error_key(p, n, "domains", (long)i, "\"%s\": %s", r->domains.v[i], why);
		}
	}
	return rc;
}

static const struct cfg_field route_fields[] = {
	{ "domains", CFG_STRLIST, offsetof(struct backend_route_config, domains), .flags = CFG_REQUIRED,
	  .doc = "recipient domains sent to these servers instead of backends.servers: names, \"*.example.org\", "
		 "\"file:/etc/mxgate/cluster-b\" (one per line, re-read on SIGHUP); the first route "
		 "whose domains match a recipient wins, so a name goes before a wildcard that covers it "
		 "(-t warns of a domain an earlier route takes)" },
	{ "servers", CFG_STRLIST, offsetof(struct backend_route_config, servers), .flags = CFG_REQUIRED,
	  .doc = "backend URLs for those domains" },
	{ NULL }
};
static const struct cfg_table route_table = {
	"backends.routes[]", sizeof(struct backend_route_config), route_fields, route_validate
};

static const struct cfg_field backends_fields[] = {
	{ "balance", CFG_ENUM, offsetof(struct backends_config, balance), "round_robin",
	  .choices = balance_choices, .doc = "how a server is picked: round_robin (smooth weighted), least_conn (fewest connections "
	  "in use per unit of weight, those of sessions begun before a reload included; ties, as at light load, follow the weights as round_robin does) "
	  "or source_hash (client address, weighted rendezvous)" },
	{ "client_identity", CFG_ENUM, offsetof(struct backends_config, client_identity), "xclient",
	  .choices = identity_choices, .doc = "how the client's address reaches the backend: none, xclient or proxy_v2" },
	{ "health_check", CFG_STRUCT, offsetof(struct backends_config, health_check), .sub = &health_table,
	  .doc = "active probes of each server" },
	{ "servers", CFG_STRUCT_LIST, offsetof(struct backends_config, servers), .sub = &server_table,
	  .flags = CFG_REQUIRED, .doc = "the backend MTAs (a plain string item is its address)" },
	{ "routes", CFG_STRUCT_LIST, offsetof(struct backends_config, routes), .sub = &route_table,
	  .doc = "optional: recipient domain -> its own servers" },
	{ "connect_timeout", CFG_DURATION, offsetof(struct backends_config, connect_timeout), "10s",
	  100, S(3600), .doc = "TCP connect (and greeting) timeout" },
	{ "reply_timeout", CFG_DURATION, offsetof(struct backends_config, reply_timeout), "60s",
	  100, S(3600), .doc = "wait for each backend reply" },
	{ "data_timeout", CFG_DURATION, offsetof(struct backends_config, data_timeout), "300s",
	  100, S(86400), .doc = "wait for the reply after the final dot; while the message is sent, for the backend to take the next part of it" },
	{ "data_deadline", CFG_DURATION, offsetof(struct backends_config, data_deadline), "1h",
	  S(1), S(7 * 86400), .doc = "a whole message to a backend, from its first octet (after the 354, or the BDAT) to the last reply to it: a backend that takes the message at a trickle, each part within data_timeout, or an LMTP server answering one recipient per data_timeout, is cut off (the attempt fails, 451 4.4.1 to the client); 1h passes a 50M message at 15 KB/s, as limits.data_deadline on the client's side" },
	{ "resolve_interval", CFG_DURATION, offsetof(struct backends_config, resolve_interval), "30s",
	  0, S(86400), .doc = "a server named by a host name (a Kubernetes Service, a container's name) is "
		 "resolved again while running, through dns.resolvers, after its answer's TTL, at least 1s and "
		 "at most this long (0: only at a load, as before): a changed set of addresses takes the new "
		 "connections (event=backend_addrs_changed), idle pooled connections to an address no longer "
		 "in it are closed at once by every worker; a plugins[].address host name (milter, clamd, "
		 "spamd, rspamd) the same (plugin=NAME in the events); a failed or empty answer keeps the last addresses "
		 "(event=backend_resolve_failed, once until it resolves again)" },
	{ "max_attempts", CFG_INT, offsetof(struct backends_config, max_attempts), "3", 1, 100,
	  .doc = "servers tried for one message before the client gets 4xx" },
	{ "pool_size", CFG_INT, offsetof(struct backends_config, pool_size), "8", 0, 1000,
	  .doc = "idle connections kept per server per worker (0 = none); beyond them, a connection a "
		 "session gave back after its message waits for that session's next one while its client "
		 "stays connected (lock-step clients side by side each keep theirs), then back to the pool "
		 "or QUIT; 256 idle connections per worker in all" },
	{ "starttls", CFG_BOOL, offsetof(struct backends_config, starttls), "true",
	  .doc = "use STARTTLS when a backend offers it; a handshake that fails sends the message in clear "
		 "(and no STARTTLS to that server for 10 minutes), as Postfix's level may" },
	{ "require_tls", CFG_BOOL, offsetof(struct backends_config, require_tls), "false",
	  .doc = "send to smtp:// and lmtp:// servers only over STARTTLS (Postfix's level encrypt; the "
		 "certificate is not verified): a server that does not offer it or whose handshake fails "
		 "gets nothing, the attempt fails (next server, then 4xx to the client); a health probe "
		 "fails when STARTTLS is not offered" },
	{ "tls_verify", CFG_BOOL, offsetof(struct backends_config, tls_verify), "false",
	  .doc = "verify the certificate of smtp:// and lmtp:// servers (Postfix's level verify, "
		 "HAProxy's verify required): its chain must lead to a CA of tls_ca_file and it must name "
		 "the server (tls_verify_name, default the host of its address). Implies require_tls: a "
		 "certificate refused is a failed attempt (event=backend_error, next server, then 4xx "
		 "to the client), never clear text" },
	{ "require_xclient", CFG_BOOL, offsetof(struct backends_config, require_xclient), "false",
	  .doc = "with client_identity xclient: true: an smtp:// server that offers mxgate no XCLIENT in "
		 "its EHLO reply (Postfix without mxgate in smtpd_authorized_xclient_hosts), or refuses "
		 "it, refused the gateway: the message never goes to it as from mxgate's address (which "
		 "Postfix's permit_mynetworks relays unchecked), its probe fails, event=gateway_refused "
		 "stage=xclient, the server out of the rotation for 5 minutes, the next server, 451 4.4.1 "
		 "to the client when none is left (as nginx mail's xclient on). false (the default, as "
		 "Postfix's own proxy and Haraka): the message goes on as from mxgate, with warnings "
		 "(event=backend_no_xclient from the probe, event=xclient_refused)" },
	{ "tls_ca_file", CFG_STRING, offsetof(struct backends_config, tls_ca_file),
	  .doc = "PEM file of the CAs trusted for tls_verify (Postfix's smtp_tls_CAfile, HAProxy's "
		 "ca-file; default: the system's CAs)" },
	{ "lmtp_recipient_limit", CFG_INT, offsetof(struct backends_config, lmtp_recipient_limit), "0",
	  0, 1000, .doc = "recipients per transaction to an LMTP server; past it the client gets `452 4.5.3` "
		"and sends the rest in a new transaction. 1: an LMTP refusal after the dot then reaches "
		"the sender exactly (0 = 1000, the most recipients whose replies one LMTP transaction keeps)" },
	{ "retry_ledger", CFG_STRUCT, offsetof(struct backends_config, retry_ledger), .sub = &retry_ledger_table,
	  .doc = "the delivery ledger: when the client hears 4xx for a message some recipients already "
		 "have (an LMTP server's 250 for them, a 452 or a failed replay for the others), those "
		 "recipients are remembered by the message's SHA-256, the sender and the address; the "
		 "client's retry of the same octets skips them (event=ledger_hit), so they get no second "
		 "copy. In memory by default (a restart, or a retry that reaches another process, repeats "
		 "them); store: lmdb:/dir keeps it across restarts for every process on the host" },
	{ "gateway_refusals", CFG_STRLIST, offsetof(struct backends_config, gateway_refusals),
	  .doc = "5xx replies to MAIL, RCPT or the final dot that refuse the gateway itself (its address, the endpoint), "
		 "not the message, beyond Exchange Online's 5.7.606-5.7.649 and 5.7.57 and \"Must issue a STARTTLS "
		 "command first\", which are built in: "
		 "an enhanced status code (\"5.7.57\"), a range of one class and subject (\"5.7.606-5.7.649\"), "
		 "or a text the reply contains, case ignored (\"Client host rejected\": only with client_identity "
		 "none, where the backend judges mxgate's address); up to 32, each 1 to 200 octets. Such a reply "
		 "is the server's failure: event=gateway_refused, the server out of the rotation for 5 minutes, "
		 "the next server, 451 4.4.1 to the client when none is left" },
	{ NULL }
};
/* tls_verify: the CA file loads (-t, the start and a reload alike), and it implies
 * require_tls; the keys that only mean something with it are refused without it. */
static int backends_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct backends_config *bc = obj;
	int rc = 0;

	if (bc->tls_ca_file && !bc->tls_verify)
		rc = cfg_error_key(p, n, "tls_ca_file", -1, "has no effect without backends.tls_verify: true");
	for (size_t i = 0; i < bc->servers.n; i++) {
		const struct backend_server_config *sv = &((const struct backend_server_config *)bc->servers.v)[i];
		if (sv->tls_verify_name && !bc->tls_verify) {
			struct fy_node *sn = fy_node_pair_value(cfg_map_pair(n, "servers"));
			size_t old = cfg_path_push_key(p, "servers", 7);
			cfg_path_push_index(p, i);
			struct fy_node *item = sn && fy_node_is_sequence(sn) ? cfg_seq_item(sn, i) : sn;
			rc = item && fy_node_is_mapping(item) ?
			    cfg_error_key(p, item, "tls_verify_name", -1, "has no effect without backends.tls_verify: true") :
			    cfg_error(p, item ? item : n, "tls_verify_name has no effect without backends.tls_verify: true");
			cfg_path_pop(p, old);
		}
	}
	if (bc->gateway_refusals.n > GWREFUSE_PATTERNS_MAX)
		rc = cfg_error_key(p, n, "gateway_refusals", -1, "at most %d patterns", GWREFUSE_PATTERNS_MAX);
	for (size_t i = 0; i < bc->gateway_refusals.n; i++) {
		const char *why;
		if (gwrefuse_check_pattern(bc->gateway_refusals.v[i], &why) != 0)
			rc = cfg_error_key(p, n, "gateway_refusals", (long)i, "\"%s\": %s", bc->gateway_refusals.v[i], why);
	}
	if (bc->tls_verify) {
		char err[512];
		struct tls_ctx *ctx = tls_ctx_new_client_verify(bc->tls_ca_file, err, sizeof(err));
		if (ctx == NULL)
			rc = cfg_error_key(p, n, bc->tls_ca_file ? "tls_ca_file" : "tls_verify", -1, "%s", err);
		tls_ctx_unref(ctx);
		bc->require_tls = true;
	}
	return rc;
}

static const struct cfg_table backends_table = {
	"backends", sizeof(struct backends_config), backends_fields, backends_validate
};

static const struct cfg_field log_fields[] = {
	{ "level", CFG_ENUM, offsetof(struct log_config, level), "info", .choices = log_level_choices,
	  .doc = "debug, info, warning or error" },
	{ "syslog", CFG_BOOL, offsetof(struct log_config, syslog), "false",
	  .doc = "also log to syslog (facility mail)" },
	{ "facility", CFG_ENUM, offsetof(struct log_config, facility), "mail", .choices = log_facility_names,
	  .doc = "syslog facility: mail, daemon or local0..local7" },
	{ "format", CFG_ENUM, offsetof(struct log_config, format), "text", .choices = log_format_names,
	  .doc = "text (`TIME LEVEL ID event=... key=value`) or json: one JSON object a line with "
		 "`ts`, `level`, `session` and every field as a member (numbers as numbers, a repeated key "
		 "as an array), for a container platform's log shipper; syslog stays text" },
	{ "file", CFG_STRING, offsetof(struct log_config, file),
	  .doc = "append the lines to this file instead of standard error (made 0640, owned by `user`); "
		 "SIGUSR1 reopens it after logrotate moved it; opened at start, a change waits for a restart" },
	{ NULL }
};
/* log.file's directory must be there: the file is made at start (-t would say ok, then
 * the start die on ENOENT). Whether it can be written is for the start to find out (as
 * root before dropping privileges). */
static int log_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct log_config *l = obj;
	char dir[4096];
	struct stat st;
	const char *slash;

	if (!l->file)
		return 0;
	if (!l->file[0])
		return cfg_error_key(p, n, "file", -1, "must not be empty");
	slash = strrchr(l->file, '/');
	if (slash == NULL)
		return 0;                                 /* the working directory */
	snprintf(dir, sizeof(dir), "%.*s", slash == l->file ? 1 : (int)(slash - l->file), l->file);
	if (stat(dir, &st) != 0 && (errno == ENOENT || errno == ENOTDIR))
		return cfg_error_key(p, n, "file", -1, "directory %s: %s", dir, strerror(errno));
	return 0;
}
static const struct cfg_table log_table = { "log", sizeof(struct log_config), log_fields, log_validate };

static int metrics_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct metrics_config *m = obj;
	struct sockaddr_storage ss;
	socklen_t len;
	const char *err;
	if (m->listen && cfg_parse_listen_address(m->listen, &ss, &len, &err) < 0)
		return cfg_error_key(p, n, "listen", -1, "%s", err);
	return 0;
}

static const struct cfg_field metrics_fields[] = {
	{ "listen", CFG_STRING, offsetof(struct metrics_config, listen),
	  .doc = "address:port of the Prometheus /metrics endpoint (off when unset)" },
	{ NULL }
};
static const struct cfg_table metrics_table = {
	"metrics", sizeof(struct metrics_config), metrics_fields, metrics_validate
};

/* workers: auto (= 0, one per CPU) or 1..64 */
/* quarantine: a plain string (the store, expire at its default) or the section below. */
struct quarantine_section {
	char *store;
	uint64_t expire;
};

#define QUARANTINE_EXPIRE_DEFAULT "0"

static const struct cfg_field quarantine_fields[] = {
	{ "store", CFG_STRING, offsetof(struct quarantine_section, store), .flags = CFG_REQUIRED,
	  .doc = "the Maildir messages are held in: maildir:/path (as the plain quarantine: maildir:/path)" },
	{ "expire", CFG_DURATION, offsetof(struct quarantine_section, expire), QUARANTINE_EXPIRE_DEFAULT, 0,
	  S(36500.0 * 86400), .doc = "a held message older than this (its file's time: when it was held) is removed by a sweep in the thread pool at start, after a reload that changes it and hourly, logged event=quarantine_expired count=N and counted in mxgate_quarantine_expired_total; a released copy (released/) this long after its release (released=N): the operator's retention, not a loss (release before it). The same sweep removes tmp/ files older than 36 hours whatever expire is, 0 too (stale_tmp=N, expire=none when 0: what a crash between a write and its rename left). A file the sweep cannot lock (flock failing otherwise than busy: ENOLCK on a file system without locks) stays, logged once a sweep: event=quarantine_expire_lock_failed files=N reason=... Only files mxgate held (the ID in the name, or an envelope block at the head) are removed; other mail in the folder stays. 0 (the default) keeps every held message for ever, as before expiry existed: an upgrade never removes what an operator kept. 30d is what we suggest (MailScanner's quarantine clean-up keeps 30 days, Amavis sites' cron jobs 14-30, Proxmox Mail Gateway 7): a month covers an absence before a user asks for a message" },
	{ .key = NULL },
};

static const struct cfg_table quarantine_table = {
	"quarantine", sizeof(struct quarantine_section), quarantine_fields, NULL, 0,
};

/* the section form, for the docs and the table self-check (quarantine_parse reads it) */
static const struct cfg_field quarantine_alt_fields[] = {
	{ "section", CFG_STRUCT, 0, .sub = &quarantine_table,
	  .doc = "quarantine: { store: maildir:/path, expire: 30d }" },
	{ .key = NULL },
};

static const struct cfg_table quarantine_alts = {
	"quarantine", sizeof(struct quarantine_section), quarantine_alt_fields, NULL, 0,
};

/* CFG_CUSTOM for `quarantine:`: dst is mx_config.quarantine; quarantine_expire beside it. */
static int quarantine_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct mx_config *c = (struct mx_config *)(void *)((char *)dst - offsetof(struct mx_config, quarantine));
	struct quarantine_section q = { 0 };
	char buf[4096];

	c->quarantine = NULL;
	(void)cfg_parse_duration(QUARANTINE_EXPIRE_DEFAULT, &c->quarantine_expire);
	if (cfg_node_is_null(n))
		return 0;
	if (fy_node_is_mapping(n)) {
		if (cfg_parse_section(p, &quarantine_table, n, &q) < 0) {
			cfg_table_free(&quarantine_table, &q);
			return -1;
		}
		c->quarantine = q.store;
		c->quarantine_expire = q.expire;
		return 0;
	}
	if (cfg_node_cstr(p, n, "maildir:/path or { store: maildir:/path, expire: 30d }", buf, sizeof(buf)) < 0)
		return -1;
	if ((c->quarantine = strdup(buf)) == NULL)
		return cfg_error(p, n, "out of memory");
	return 0;
}

static void quarantine_free(void *dst)
{
	char **s = dst;

	free(*s);
	*s = NULL;
}

static int workers_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	long *w = dst;
	char buf[CFG_SCALAR_MAX];
	long v;
	if (!n) {
		*w = 0;
		return 0;
	}
	if (cfg_node_cstr(p, n, "auto or an integer", buf, sizeof(buf)) < 0)
		return -1;
	if (strcasecmp(buf, "auto") == 0) {
		*w = 0;
		return 0;
	}
	if (cfg_parse_long(buf, &v) < 0)
		return cfg_error(p, n, "expected auto or an integer, got \"%s\"", buf);
	if (v < 1 || v > 64)
		return cfg_error(p, n, "must be auto or between 1 and 64, got %s", buf);
	*w = v;
	return 0;
}

/* nat64_prefixes: a list of IPv6 prefixes (a lone one is a list of one; absent: the
 * well-known prefix; [] none), each checked by netaddr_nat64_add. */
static int nat64_prefixes_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct netaddr_nat64 *t = dst;
	struct fy_node *it;
	int rc = 0;

	if (cfg_node_is_null(n)) {
		netaddr_nat64_default(t);
		return 0;
	}
	t->n = 0;
	for (size_t i = 0; (it = cfg_seq_item(n, i)) != NULL; i++) {
		char buf[CFG_SCALAR_MAX], why[128];
		struct netaddr net;
		int len;
		size_t old = cfg_path_push_index(p, i);

		if (cfg_node_cstr(p, it, "an IPv6 prefix", buf, sizeof(buf)) < 0)
			rc = -1;
		else if (netaddr_parse_cidr(buf, &net, &len) < 0)
			rc = cfg_error(p, it, "not an IPv6 prefix: \"%s\"", buf);
		else if (netaddr_nat64_add(t, &net, len, why, sizeof(why)) < 0)
			rc = cfg_error(p, it, "%s: \"%s\"", why, buf);
		cfg_path_pop(p, old);
	}
	return rc;
}

/* domain_set_add as a cfg_read_list_file callback. */
static const char *domains_file_add(void *set, const char *item)
{
	const char *why;

	return domain_set_add(set, item, &why) != 0 ? why : NULL;
}

/* accept_domains: patterns (domain.h) and "file:PATH" items, read now (so SIGHUP, which
 * loads a new config, re-reads the files) into cfg->accept_set. An empty list leaves it NULL:
 * every domain is accepted. 0 or -1 after reporting. */
static int accept_domains_build(struct cfg_parse *p, struct fy_node *n, struct mx_config *c)
{
	int rc = 0;

	if (c->accept_domains.n == 0)
		return 0;
	c->accept_set = domain_set_new();
	if (c->accept_set == NULL)
		return cfg_error_key(p, n, "accept_domains", -1, "out of memory");
	for (size_t i = 0; i < c->accept_domains.n; i++) {
		const char *item = c->accept_domains.v[i], *why;

		if (strncmp(item, "file:", 5) == 0) {
			if (cfg_read_list_file(p, n, "accept_domains", i, item + 5, domains_file_add, c->accept_set) < 0)
				rc = -1;
		} else if (domain_set_add(c->accept_set, item, &why) != 0) {
			rc = cfg_error_key(p, n, "accept_domains", (long)i, "\"%s\": %s", item, why);
		}
	}
	if (rc == 0 && domain_set_count(c->accept_set) == 0)
		rc = cfg_error_key(p, n, "accept_domains", -1,
				   "the files name no domain: that would refuse every recipient");
	return rc;
}

/* exempt_recipients: a local part ("postmaster") or one address ("abuse@example.org"), as a
 * recipient's path holds it (no angle brackets, no spaces, one @ at most, something on each
 * side of it). 0 or -1 after reporting. */
static int exempt_recipients_check(struct cfg_parse *p, struct fy_node *n, const struct mx_config *c)
{
	int rc = 0;

	for (size_t i = 0; i < c->exempt_recipients.n; i++) {
		const char *item = c->exempt_recipients.v[i], *at = strchr(item, '@');
		bool bad = item[0] == '\0' || item[0] == '@' || strpbrk(item, " \t<>\"") != NULL ||
		    (at != NULL && (at[1] == '\0' || strchr(at + 1, '@') != NULL));

		if (bad)
			rc = cfg_error_key(p, n, "exempt_recipients", (long)i,
			    "\"%s\": not a local part (postmaster) nor an address (abuse@example.org)", item);
	}
	return rc;
}

/* Whether uid (with its groups) has the permission bits want (S_IROTH, S_IWOTH, S_IXOTH,
 * shifted for owner and group) on st, as the kernel decides: the owner's bits for the owner,
 * else a group's, else the others'. Root has them all. */
static bool config_mode_allows(const struct stat *st, uid_t uid, const gid_t *groups, int ngroups, mode_t want)
{
	if (uid == 0)
		return true;
	if (st->st_uid == uid)
		return (st->st_mode & (want << 6)) != 0;
	for (int i = 0; i < ngroups; i++)
		if (st->st_gid == groups[i])
			return (st->st_mode & (want << 3)) != 0;
	return (st->st_mode & want) != 0;
}

/* One absolute path: search on each directory, want on the last. 1, 0 (why set) or -1. */
static int config_path_allows(const char *path, uid_t uid, const gid_t *groups, int ngroups, mode_t want,
    const char *noun, char *why, size_t cap)
{
	char dir[PATH_MAX];
	size_t len = strlen(path);
	struct stat st;

	if (path[0] != '/' || len >= sizeof(dir))
		return -1;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		memcpy(dir, path, i);
		dir[i] = '\0';
		if (stat(dir, &st) != 0)
			return -1;
		bool last = i == len;
		if (config_mode_allows(&st, uid, groups, ngroups, last ? want : S_IXOTH))
			continue;
		snprintf(why, cap, "%s %s is not %s by it (mode %04o, uid %u, gid %u)", last ? noun : "the directory",
		    dir, !last ? "searchable" : want == S_IWOTH ? "writable" : "readable",
		    (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid);
		return 0;
	}
	return 1;
}

/* See config.h. */
int config_user_may(const char *user, const char *path, mode_t want, const char *noun, char *why, size_t cap)
{
	const struct passwd *pw;
	gid_t groups[256];
	int ngroups = (int)(sizeof(groups) / sizeof(groups[0]));
	char real[PATH_MAX];
	int rc = -1;

	if (user == NULL || path == NULL || (pw = getpwnam(user)) == NULL)
		return -1;
	uid_t uid = pw->pw_uid;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ngroups) < 0)
		ngroups = (int)(sizeof(groups) / sizeof(groups[0]));   /* the first ones fit */
	/* the path as named (a symbolic link's directories are searched too), then where it
	 * leads (Let's Encrypt's live/ links into archive/) */
	if (path[0] == '/' && (rc = config_path_allows(path, uid, groups, ngroups, want, noun, why, cap)) == 0)
		return 0;
	if (realpath(path, real) != NULL && strcmp(real, path) != 0) {
		int r2 = config_path_allows(real, uid, groups, ngroups, want, noun, why, cap);
		if (r2 == 0)
			return 0;
		if (rc < 0)
			rc = r2;
	}
	return rc;
}

/* The TLS files mxgate loads as `user:` (the start's first generation and every reload):
 * warns for each that user cannot read (the config's check reads them as root, so it
 * passes, and the start failed with OpenSSL's "system lib"). */
static int config_tls_file_warning(const struct mx_config *cfg, const char *key, const char *path, void *err_fp)
{
	char why[PATH_MAX + 100], at[PATH_MAX + 32];

	if (path == NULL || config_user_may(cfg->user, path, S_IROTH, "the file", why, sizeof(why)) != 0)
		return 0;
	if (err_fp)
		fprintf((FILE *)err_fp, "%s: warning: %s: user %s cannot read %s: %s; mxgate reads it after "
		    "dropping to %s, so the start and every reload (SIGHUP, mxgatectl reload) would fail "
		    "(\"Permission denied\"): make it readable by %s (e.g. chgrp %s on it and chmod g+r, and "
		    "g+x on its directories)\n", config_key_where(cfg, key, at, sizeof(at)), key, cfg->user, path, why, cfg->user, cfg->user,
		    cfg->user);
	return 1;
}

/* See config.h. */
int config_tls_access_warnings(const struct mx_config *cfg, void *err_fp)
{
	const struct tls_config *t = &cfg->tls;
	int n = 0;

	if (cfg->user == NULL || *cfg->user == '\0' || geteuid() != 0)
		return 0;
	n += config_tls_file_warning(cfg, "tls.certificate", t->certificate, err_fp);
	n += config_tls_file_warning(cfg, "tls.key", t->key, err_fp);
	n += config_tls_file_warning(cfg, "tls.second_certificate", t->second_certificate, err_fp);
	n += config_tls_file_warning(cfg, "tls.second_key", t->second_key, err_fp);
	n += config_tls_file_warning(cfg, "tls.client_ca_file", t->client_ca_file, err_fp);
	for (size_t i = 0; i < t->sni.n; i++) {
		const struct tls_sni_config *e = &((const struct tls_sni_config *)t->sni.v)[i];
		char k[64];

		snprintf(k, sizeof(k), "tls.sni[%zu].certificate", i);
		n += config_tls_file_warning(cfg, k, e->certificate, err_fp);
		snprintf(k, sizeof(k), "tls.sni[%zu].key", i);
		n += config_tls_file_warning(cfg, k, e->key, err_fp);
		snprintf(k, sizeof(k), "tls.sni[%zu].second_certificate", i);
		n += config_tls_file_warning(cfg, k, e->second_certificate, err_fp);
		snprintf(k, sizeof(k), "tls.sni[%zu].second_key", i);
		n += config_tls_file_warning(cfg, k, e->second_key, err_fp);
	}
	n += config_tls_file_warning(cfg, "backends.tls_ca_file", cfg->backends.tls_ca_file, err_fp);
	return n;
}

/* The directory a path mxgate writes must let it write: the path when it is there, else
 * its nearest existing parent (a quarantine or LMDB directory is made at start). Into dir
 * (PATH_MAX); returns 0, or -1 when none is found (a relative path). */
static int config_write_dir(const char *path, bool is_dir, char *dir, size_t cap)
{
	struct stat st;
	size_t n;

	if (path == NULL || path[0] != '/' || strlen(path) >= cap)
		return -1;
	strcpy(dir, path);
	if (!is_dir) {
		char *slash = strrchr(dir, '/');

		slash[slash == dir ? 1 : 0] = '\0';
	}
	while (stat(dir, &st) != 0) {
		char *slash = strrchr(dir, '/');

		if (slash == NULL)
			return -1;
		slash[slash == dir ? 1 : 0] = '\0';
		if ((n = strlen(dir)) == 1 && dir[0] == '/')
			break;
	}
	return 0;
}

/* One path mxgate writes at run time (key: its config key, what: what goes there): a
 * message when the directory it needs is on a read-only file system or not writable by
 * the user running -t, or, run as root with `user:`, by that user when as_user (made after
 * the drop). The container case: a non-root user and a read-only root file system. fatal:
 * the start refuses such a path (an error, -t exits 1), else it goes on (a warning). */
static int config_write_warning(const struct mx_config *cfg, const char *key, const char *path, bool is_dir,
    bool as_user, const char *what, bool fatal, void *err_fp)
{
	char dir[PATH_MAX], why[PATH_MAX + 100], at[PATH_MAX + 32];
	const char *who = NULL;

	if (config_write_dir(path, is_dir, dir, sizeof(dir)) != 0)
		return 0;
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		who = geteuid() == 0 ? "root" : "the user running -t";
	} else if (as_user && geteuid() == 0 && cfg->user && *cfg->user &&
	    config_user_may(cfg->user, dir, S_IWOTH, "the directory", why, sizeof(why)) == 0) {
		who = cfg->user;
	}
	if (who == NULL)
		return 0;
	if (err_fp)
		fprintf((FILE *)err_fp, "%s: %s%s: %s: %s cannot write in %s (%s), where mxgate keeps %s; "
		    "with a read-only root file system mount a writable volume there\n",
		    config_key_where(cfg, key, at, sizeof(at)), fatal ? "" : "warning: ", key, path, who, dir,
		    why, what);
	return 1;
}

/* The LMDB directory of a store spec ("lmdb:/dir"), or NULL. */
static const char *config_lmdb_dir(const char *spec)
{
	return spec && strncmp(spec, "lmdb:", 5) == 0 ? spec + 5 : NULL;
}

/* See config.h. The conditions are the modules' own (their worker_init): a store a module
 * does not open is not named. */
size_t config_lmdb_stores(const struct mx_config *cfg, struct config_lmdb_store *out)
{
	const struct {
		const char *key, *spec, *what;
		bool used, required;
		uint64_t map_size;
	} v[] = {
		{ "pregreet.pass_store", cfg->pregreet.pass_store, "the pregreet passes",
		  cfg->pregreet.delay > 0 && cfg->pregreet.pass_ttl >= 1000, false, 0 },
		{ "reputation.store", cfg->reputation.store, "the reputation records", true, true,
		  cfg->reputation.map_size },
		{ "dnsbl.pass_store", cfg->dnsbl.pass_store, "the DNS lists' passes",
		  cfg->dnsbl.lists.n > 0 && cfg->dnsbl.pass_ttl >= 1000, false, 0 },
		{ "greylist.store", cfg->greylist.store, "the greylist triplets", cfg->greylist.enabled,
		  true, 0 },
		{ "backends.retry_ledger.store", cfg->backends.retry_ledger.store, "the delivery ledger",
		  cfg->backends.retry_ledger.max_entries > 0, true, 0 },
	};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) && n < CONFIG_LMDB_STORES_MAX; i++) {
		const char *dir = v[i].used ? config_lmdb_dir(v[i].spec) : NULL;

		if (dir == NULL || *dir == '\0')
			continue;
		out[n].key = v[i].key;
		out[n].dir = dir;
		out[n].map_size = v[i].map_size;
		out[n].what = v[i].what;
		out[n].required = v[i].required;
		n++;
	}
	return n;
}

/* Whether the directory of path (a file's) is there now. */
static bool config_parent_exists(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = path ? strrchr(path, '/') : NULL;
	struct stat st;

	if (slash == NULL || (size_t)(slash - path) >= sizeof(dir))
		return false;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash == path ? 1 : slash - path] = '\0';
	if (slash == path)
		dir[0] = '/';
	return stat(dir, &st) == 0;
}

/* The paths of config_write_access_warnings (fatal: config_start_refusals'), with fatal
 * ones alone when fatal, else the others. The control socket's directory when it is not
 * there yet (/run/mxgate: systemd's RuntimeDirectory= makes it as the unit starts, after
 * an ExecStartPre -t) is judged by its parent only as a warning. */
static int config_write_access(const struct mx_config *cfg, bool fatal, void *err_fp)
{
	struct config_lmdb_store sv[CONFIG_LMDB_STORES_MAX];
	size_t ns = config_lmdb_stores(cfg, sv);
	char what[160];
	int n = 0;

	if (!fatal) {
		n += config_write_warning(cfg, "limits.spool_dir", cfg->limits.spool_dir, true, true,
		    "the messages larger than limits.memory_threshold (else each such message gets 451)",
		    false, err_fp);
		n += config_write_warning(cfg, "quarantine", cfg->quarantine_dir, true, true,
		    "the quarantined messages (else each gets 451)", false, err_fp);
		if (cfg->control.socket && !config_parent_exists(cfg->control.socket))
			n += config_write_warning(cfg, "control.socket", cfg->control.socket, false, false,
			    "its control socket (the directory is not there yet: a service manager may make "
			    "it, as systemd's RuntimeDirectory=; else the start fails)", false, err_fp);
	} else {
		if (cfg->control.socket && config_parent_exists(cfg->control.socket))
			n += config_write_warning(cfg, "control.socket", cfg->control.socket, false, false,
			    "its control socket; the start fails", true, err_fp);
		/* the classifier's store: the start opens it as the generation is made (main.c) */
		const struct bayes_config *bc = &cfg->rules.bayes;
		if (bc->enabled && bc->store && strncmp(bc->store, "lmdb:", 5) == 0)
			n += config_write_warning(cfg, "rules.bayes.store", bc->store + 5, true, true,
			    "the classifier's tokens; the start fails, and a reload keeps the running config",
			    true, err_fp);
	}
	for (size_t i = 0; i < ns; i++) {
		if (sv[i].required != fatal)
			continue;
		snprintf(what, sizeof(what), "%s%s", sv[i].what, sv[i].required ?
		    "; the start fails, and a reload keeps the running config" : "");
		n += config_write_warning(cfg, sv[i].key, sv[i].dir, true, true, what, fatal, err_fp);
	}
	return n;
}

/* See config.h. */
void config_log_file_error(const struct mx_config *cfg, int err, void *err_fp)
{
	char at[PATH_MAX + 32];

	if (err_fp)
		fprintf((FILE *)err_fp, "%s: log.file: cannot open %s: %s (mxgate opens it at start, before "
		    "dropping to user:, and appends its lines there); the start fails\n",
		    config_key_where(cfg, "log.file", at, sizeof(at)), cfg->log.file, strerror(err));
}

/* log.file as the start opens it (main_open_log: appending, made when absent, as the user
 * starting mxgate): 1 after config_log_file_error when the user running -t could not, the
 * file not writable, or absent in a directory it cannot write; else 0. A directory that is
 * not there is the config's own error (log_validate). */
static int config_log_file_refusal(const struct mx_config *cfg, void *err_fp)
{
	const char *path = cfg->log.file, *slash;
	char dir[PATH_MAX];
	int err;

	if (path == NULL || *path == '\0' || access(path, W_OK) == 0)
		return 0;
	err = errno;
	if (err == ENOENT && strlen(path) < sizeof(dir)) {
		slash = strrchr(path, '/');
		if (slash == NULL)
			snprintf(dir, sizeof(dir), ".");
		else
			snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
		if (access(dir, W_OK | X_OK) == 0)
			return 0;
		err = errno;
	}
	config_log_file_error(cfg, err, err_fp);
	return 1;
}

/* See config.h. */
int config_write_access_warnings(const struct mx_config *cfg, void *err_fp)
{
	return config_write_access(cfg, false, err_fp);
}

/* See config.h. */
int config_start_refusals(const struct mx_config *cfg, void *err_fp)
{
	return config_log_file_refusal(cfg, err_fp) + config_write_access(cfg, true, err_fp);
}

/* The earlier route (index < r) that matches every name of pattern, or -1. */
static long config_route_shadowing(const struct backend_route_config *rv, size_t r, const char *pattern)
{
	for (size_t k = 0; k < r; k++)
		if (domain_set_covers(rv[k].match, pattern))
			return (long)k;
	return -1;
}

/* Names of a file read into a route's set are named one at a time (FILE:LINE) up to this
 * many per item, then counted in one line: a file of 5,000 customers under a wildcard of an
 * earlier route says so in 11 lines, not 5,000. */
#define CONFIG_SHADOW_NAMED 10

/* The names of routes[r].domains[j], "file:PATH", that an earlier route takes: the file is
 * read again (the load read it a moment ago; one that went since is not this warning's
 * business). Returns how many. */
static int config_route_file_shadows(const struct mx_config *cfg, size_t r, size_t j, void *err_fp)
{
	const struct backend_route_config *rv = cfg->backends.routes.v;
	const char *path = rv[r].domains.v[j] + 5;
	FILE *f = fopen(path, "r");
	char *line = NULL, *pat, key[96], at[PATH_MAX + 32];
	size_t cap = 0, lineno = 0;
	ssize_t len;
	long k;
	int n = 0;

	if (f == NULL)
		return 0;
	snprintf(key, sizeof(key), "backends.routes[%zu].domains[%zu]", r, j);
	config_key_where(cfg, key, at, sizeof(at));
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if ((pat = cfg_file_line_item(line, len)) == NULL ||
		    (k = config_route_shadowing(rv, r, pat)) < 0)
			continue;
		if (err_fp && n < CONFIG_SHADOW_NAMED)
			fprintf(err_fp, "%s: warning: %s: %s:%zu: \"%.100s\" is matched by routes[%ld] "
				"first: the first matching route wins, so its mail goes there, never to "
				"this route\n", at, key, path, lineno, pat, k);
		n++;
	}
	if (err_fp && n > CONFIG_SHADOW_NAMED)
		fprintf(err_fp, "%s: warning: %s: %s: %d more names are matched by an earlier route "
			"(the first %d are named above)\n", at, key, path, n - CONFIG_SHADOW_NAMED,
			CONFIG_SHADOW_NAMED);
	free(line);
	fclose(f);
	return n;
}

/* A route's domain that an earlier route already matches wholly never reaches that route's
 * servers (pool_route_for: the first matching route wins; Postfix's transport_maps would
 * take the most specific entry): "*.hosting.example" in routes[0] takes
 * special.hosting.example of routes[1], silently. One warning per such domain, inline or
 * in a file: item (the file's names bounded, config_route_file_shadows). */
static int config_route_shadow_warnings(const struct mx_config *cfg, void *err_fp)
{
	const struct backend_route_config *rv = cfg->backends.routes.v;
	int n = 0;

	for (size_t r = 1; r < cfg->backends.routes.n; r++)
		for (size_t j = 0; j < rv[r].domains.n; j++) {
			long k;
			char key[96], at[PATH_MAX + 32];

			if (strncmp(rv[r].domains.v[j], "file:", 5) == 0) {
				n += config_route_file_shadows(cfg, r, j, err_fp);
				continue;
			}
			if ((k = config_route_shadowing(rv, r, rv[r].domains.v[j])) < 0)
				continue;
			snprintf(key, sizeof(key), "backends.routes[%zu].domains[%zu]", r, j);
			if (err_fp)
				fprintf(err_fp, "%s: warning: %s: \"%s\" is matched by routes[%ld] first: "
					"the first matching route wins, so its mail goes there, never to "
					"this route\n", config_key_where(cfg, key, at, sizeof(at)), key,
					rv[r].domains.v[j], k);
			n++;
		}
	return n;
}

/* config_key_where of list[i]sub ("bypass", 2, "": bypass[2]). */
static const char *config_item_where(const struct mx_config *cfg, const char *list, size_t i, const char *sub,
    char *at, size_t cap)
{
	char key[128];

	snprintf(key, sizeof(key), "%s[%zu]%s", list, i, sub);
	return config_key_where(cfg, key, at, cap);
}

/* See config.h. */
bool config_rules_engine_wanted(const struct mx_config *cfg)
{
	const struct plugin_config *pcs = cfg->plugins.v;

	if (cfg->rules.files.n > 0)
		return true;
	for (size_t i = 0; i < cfg->plugins.n; i++)
		if (pcs[i].so.desc == NULL && pcs[i].so.path == NULL && pcs[i].name &&
		    strcmp(pcs[i].name, "spamd") == 0)
			return true;
	return false;
}

int config_warnings(const struct mx_config *cfg, void *err_fp)
{
	char at[PATH_MAX + 32];
	int n = 0;

	if (cfg->accept_set == NULL) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: accept_domains is empty: every recipient domain is "
				"accepted and the backends alone decide what is relayed\n", config_key_where(cfg, "accept_domains", at, sizeof(at)));
		n++;
	}
	/* tls settings taken but without effect */
	if (cfg->tls.ciphers && cfg->tls.min_version == 1) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: tls.ciphers is the cipher list of TLS 1.2, which "
				"min_version 1.3 does not offer: it has no effect (TLS 1.3's are tls.ciphersuites)\n", config_key_where(cfg, "tls.ciphers", at, sizeof(at)));
		n++;
	}
	if (cfg->tls.client_ca_file && cfg->tls.client_certificate == TLS_CCERT_NONE) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: tls.client_ca_file is set but no certificate is asked "
				"for (tls.client_certificate: none)\n", config_key_where(cfg, "tls.client_ca_file", at, sizeof(at)));
		n++;
	}
	n += auth_config_warnings(cfg, err_fp);
	n += config_tls_access_warnings(cfg, err_fp);
	n += config_write_access_warnings(cfg, err_fp);
	n += config_route_shadow_warnings(cfg, err_fp);
	if (cfg->greylist.enabled && cfg->rdns.lookup == RDNS_LOOKUP_NEVER &&
	    greylist_wants_client_name(&cfg->greylist)) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: greylist.allow_names names hosts but rdns.lookup is "
				"never: no client has a confirmed name, only the address rules match\n", config_key_where(cfg, "greylist.allow_names", at, sizeof(at)));
		n++;
	}
	if (cfg->rdns.lookup == RDNS_LOOKUP_NEVER && reputation_wants_client_name(&cfg->reputation)) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: reputation.forwarders names hosts but rdns.lookup is "
				"never: no client has a confirmed name, only the address rules match\n", config_key_where(cfg, "reputation.forwarders", at, sizeof(at)));
		n++;
	}
	if (cfg->greylist.enabled && cfg->greylist.spf_key && !cfg->spf.enabled) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: greylist.spf_key without spf.enabled: no sender has "
				"an SPF pass, every triplet stays keyed by its network\n", config_key_where(cfg, "greylist.spf_key", at, sizeof(at)));
		n++;
	}
	if (cfg->rules.bayes.enabled && !config_rules_engine_wanted(cfg)) {
		if (err_fp)
			fprintf(err_fp, "%s: warning: rules.bayes.enabled but rules.files is empty (and no "
				"spamd plugin): the classifier runs inside the rules module, which "
				"is off (`learn` offline still works)\n", config_key_where(cfg, "rules.bayes.enabled", at, sizeof(at)));
		n++;
	}
	/* required_score is every message's required=: an entry's add_header then only moves
	 * the log's action word, not X-Spam-Status */
	for (size_t i = 0; cfg->rules.required_score > 0 && i < cfg->rules.recipient_actions.n; i++)
		if (((const struct recipient_actions_entry *)cfg->rules.recipient_actions.v)[i].given &
		    RECIPIENT_ACTIONS_ADD_HEADER) {
			if (err_fp)
				fprintf(err_fp, "%s: warning: rules.recipient_actions[%zu].add_header does not "
					"change X-Spam-Status while rules.required_score is set (every message's "
					"required=); leave required_score 0 to tag per recipient\n", config_item_where(cfg, "rules.recipient_actions", i, ".add_header", at, sizeof(at)), i);
			n++;
		}
	/* amavis lets a virus check be bypassed too; it is rarely meant */
	for (size_t i = 0; i < cfg->bypass.n; i++)
		if (bypass_names((const struct bypass_entry *)cfg->bypass.v + i, 1, "clamd")) {
			if (err_fp)
				fprintf(err_fp, "%s: warning: bypass[%zu] skips clamd: viruses reach its "
					"recipients unscanned\n", config_item_where(cfg, "bypass", i, "", at, sizeof(at)), i);
			n++;
		}
	return n;
}

/* An error at listen[i].key (FILE:LINE:COL of the item); returns -1. */
static int config_listen_error(struct cfg_parse *p, struct fy_node *n, size_t i, const char *key, const char *msg)
{
	struct fy_node *item = cfg_seq_item(fy_node_pair_value(cfg_map_pair(n, "listen")), i);
	size_t old = cfg_path_push_key(p, "listen", 6);
	int rc;

	cfg_path_push_index(p, i);
	rc = cfg_error_key(p, item && fy_node_is_mapping(item) ? item : NULL, key, -1, "%s", msg);
	cfg_path_pop(p, old);
	return rc;
}

/* Whether two backend URLs name one server: the same kind, host (any case), port, path. */
static bool config_same_server(const char *a, const char *b)
{
	static struct cfg_backend_url ua, ub;     /* 4 KiB each: config loads on one thread */
	const char *err;

	if (!a || !b || cfg_parse_backend_url(a, &ua, &err) < 0 || cfg_parse_backend_url(b, &ub, &err) < 0)
		return false;
	return ua.kind == ub.kind && strcasecmp(ua.host, ub.host) == 0 && ua.port == ub.port &&
	    strcmp(ua.path, ub.path) == 0;
}

/* The same server twice in backends.servers: its per-backend series came out twice with
 * one label set (a scrape Prometheus reports as duplicate samples), drain/enable matched
 * both, and weight already says how much traffic a server takes. */
static int config_check_servers(struct cfg_parse *p, struct fy_node *n, const struct mx_config *c)
{
	const struct backend_server_config *sv = c->backends.servers.v;
	struct fy_node *bn = fy_node_pair_value(cfg_map_pair(n, "backends"));
	struct fy_node *sn = bn && fy_node_is_mapping(bn) ? fy_node_pair_value(cfg_map_pair(bn, "servers")) : NULL;
	int rc = 0;

	for (size_t i = 0; i < c->backends.servers.n; i++)
		for (size_t k = 0; k < i; k++) {
			if (!config_same_server(sv[i].address, sv[k].address))
				continue;
			size_t old = cfg_path_push_key(p, "backends", 8);
			cfg_path_push_key(p, "servers", 7);
			cfg_path_push_index(p, i);
			rc = cfg_error(p, sn && fy_node_is_sequence(sn) ? cfg_seq_item(sn, i) : bn,
			    "the same server as backends.servers[%zu] (give it a weight instead)", k);
			cfg_path_pop(p, old);
			break;
		}
	return rc;
}

/* metrics.listen on the port of a listener (the same address, or either one every
 * address of the family): the start would fail with "Address already in use". */
static int config_check_metrics_port(struct cfg_parse *p, struct fy_node *n, const struct mx_config *c)
{
	struct sockaddr_storage ms;
	socklen_t mlen;
	const char *err;
	const struct listen_config *ls = c->listen.v;

	if (!c->metrics.listen || cfg_parse_listen_address(c->metrics.listen, &ms, &mlen, &err) < 0)
		return 0;
	for (size_t i = 0; i < c->listen.n; i++) {
		const struct sockaddr_storage *ss = &ls[i].sa;
		bool clash = false;

		if (!ls[i].salen || ss->ss_family != ms.ss_family)
			continue;
		if (ms.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)&ms, *b = (const void *)ss;
			clash = a->sin_port == b->sin_port &&
			    (a->sin_addr.s_addr == b->sin_addr.s_addr || a->sin_addr.s_addr == htonl(INADDR_ANY) ||
			     b->sin_addr.s_addr == htonl(INADDR_ANY));
		} else if (ms.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)&ms, *b = (const void *)ss;
			clash = a->sin6_port == b->sin6_port &&
			    (IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &b->sin6_addr) ||
			     IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&b->sin6_addr));
		}
		if (clash) {
			struct fy_node *mn = fy_node_pair_value(cfg_map_pair(n, "metrics"));
			size_t old = cfg_path_push_key(p, "metrics", 7);
			int rc = cfg_error_key(p, mn && fy_node_is_mapping(mn) ? mn : NULL, "listen", -1,
			    "the same address as listen[%zu]", i);
			cfg_path_pop(p, old);
			return rc;
		}
	}
	return 0;
}

/* The classifier's LMDB store (rules/bayes_db.c) wants a directory of its own. Not for
 * LMDB's rule (one environment per directory and process: store/lmdb_env.c's one list gives
 * both the same one) but for the map they would share: its size is the first opener's
 * (rules.bayes.map_size, 512M, or the store/lmdb_store.c users' 256M — which one depends on
 * the order of opening), and the classifier's tokens, which are never evicted, would fill
 * it: reputation, greylist and the pass caches of dnsbl and pregreet evict their own
 * records when the map's pages run out, so they would lose theirs to make room for the
 * tokens, and learning would then fail with a full map. */
static int config_check_lmdb_dirs(struct cfg_parse *p, struct fy_node *n, const struct mx_config *c)
{
	const char *bdir = c->rules.bayes.enabled ? store_lmdb_dir(c->rules.bayes.store) : NULL;
	const char *other = NULL;
	struct fy_node *rn, *bn;
	size_t old;
	int rc;

	if (bdir == NULL)
		return 0;
	if (store_lmdb_same_dir(bdir, store_lmdb_dir(c->reputation.store)))
		other = "reputation.store";
	else if (c->greylist.enabled && store_lmdb_same_dir(bdir, store_lmdb_dir(c->greylist.store)))
		other = "greylist.store";
	else if (store_lmdb_same_dir(bdir, store_lmdb_dir(c->dnsbl.pass_store)))
		other = "dnsbl.pass_store";
	else if (store_lmdb_same_dir(bdir, store_lmdb_dir(c->pregreet.pass_store)))
		other = "pregreet.pass_store";
	if (other == NULL)
		return 0;
	rn = fy_node_pair_value(cfg_map_pair(n, "rules"));
	bn = rn && fy_node_is_mapping(rn) ? fy_node_pair_value(cfg_map_pair(rn, "bayes")) : NULL;
	old = cfg_path_push_key(p, "rules", 5);
	cfg_path_push_key(p, "bayes", 5);
	rc = cfg_error_key(p, bn && fy_node_is_mapping(bn) ? bn : NULL, "store", -1,
	    "the same LMDB directory as %s: the classifier needs a directory of its own", other);
	cfg_path_pop(p, old);
	return rc;
}

/* bypass: a check by a plugin's name names a `plugins:` entry (bypass.c); bypass and
 * deny_senders indexed by recipient (bypass_index_build: a recipient is compared with the
 * entries that name it, not with thousands of customers' entries). */
static int config_check_bypass(struct cfg_parse *p, struct fy_node *n, struct mx_config *c)
{
	const struct plugin_config *pcs = c->plugins.v;
	const char **names;
	int rc;

	if (bypass_index_build(c->bypass.v, c->bypass.n) < 0 ||
	    bypass_index_build(c->deny_senders.v, c->deny_senders.n) < 0)
		return cfg_error(p, n, "out of memory");
	if (c->bypass.n == 0)
		return 0;
	if ((names = calloc(c->plugins.n + 1, sizeof(*names))) == NULL)
		return cfg_error(p, n, "out of memory");
	for (size_t i = 0; i < c->plugins.n; i++)
		names[i] = pcs[i].name ? pcs[i].name : "";
	rc = bypass_check_plugin_names(p, n, c->bypass.v, c->bypass.n, names, c->plugins.n);
	free(names);
	return rc;
}

static int config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct mx_config *c = obj;
	int rc = 0;
	if (!c->hostname) {
		char h[256];
		if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
			snprintf(h, sizeof(h), "localhost");
		h[sizeof(h) - 1] = '\0';
		c->hostname = strdup(h);
		if (!c->hostname)
			return cfg_error(p, n, "out of memory");
	}
	/* it goes into the greeting and headers verbatim: no CR/LF or blanks (RFC 5321 4.1.2) */
	for (const char *h = c->hostname; *h; h++)
		if (!isalnum((unsigned char)*h) && !strchr("-._[]:", *h)) {
			rc = cfg_error_key(p, n, "hostname", -1, "not a host name: \"%s\"", c->hostname);
			break;
		}
	if (!c->hostname[0])
		rc = cfg_error_key(p, n, "hostname", -1, "must not be empty");
	if (c->user && !getpwnam(c->user))
		rc = cfg_error_key(p, n, "user", -1, "no such user: \"%s\"", c->user);
	/* the top-level `log_level:` wins over log.level; both end up equal */
	if (cfg_map_pair(n, "log_level") && !cfg_node_is_null(fy_node_pair_value(cfg_map_pair(n, "log_level"))))
		c->log.level = c->log_level;
	else
		c->log_level = c->log.level;
	/* the workers hold a fixed array of listeners (WORKER_MAX_LISTENERS in worker.h) */
	if (c->listen.n > CFG_MAX_LISTENERS)
		rc = cfg_error_key(p, n, "listen", CFG_MAX_LISTENERS, "at most %d listeners",
				   CFG_MAX_LISTENERS);
	const struct listen_config *ls = c->listen.v;
	for (size_t i = 0; i < c->listen.n; i++) {
		for (size_t k = 0; k < i; k++)
			if (ls[i].salen && ls[i].salen == ls[k].salen &&
			    memcmp(&ls[i].sa, &ls[k].sa, ls[i].salen) == 0) {
				rc = cfg_error_key(p, n, "listen", (long)i, "same address as listen[%zu]", k);
				break;
			}
		if ((ls[i].submission || ls[i].auth) && !c->auth.dovecot)
			rc = config_listen_error(p, n, i, ls[i].submission ? "submission" : "auth",
			    "AUTH needs auth.dovecot (the authentication service)");
		/* AUTH only over TLS and MAIL only after AUTH: such a port would refuse every user */
		if (ls[i].submission && ls[i].tls == LISTEN_TLS_NONE && c->auth.dovecot && !c->auth.allow_plaintext)
			rc = config_listen_error(p, n, i, "submission",
			    "AUTH is offered only over TLS: set tls: starttls or implicit (or auth.allow_plaintext)");
		if (ls[i].require_tls && ls[i].tls != LISTEN_TLS_STARTTLS)
			rc = config_listen_error(p, n, i, "require_tls", ls[i].tls == LISTEN_TLS_NONE ?
			    "needs tls: starttls (the listener offers no TLS)" :
			    "applies to tls: starttls only (an implicit TLS listener is always inside TLS)");
		/* a client refused at the handshake would retry in plaintext (Postfix's
		 * smtpd_tls_req_ccert likewise needs the encrypt level) */
		if (c->tls.client_certificate == TLS_CCERT_REQUIRE && ls[i].tls == LISTEN_TLS_STARTTLS &&
		    !ls[i].require_tls)
			rc = config_listen_error(p, n, i, "require_tls",
			    "tls.client_certificate: require needs require_tls on a STARTTLS listener");
		if (ls[i].tls != LISTEN_TLS_NONE && (!c->tls.certificate || !c->tls.key))
			rc = config_listen_error(p, n, i, "tls", "a TLS listener needs tls.certificate and tls.key");
	}
	if (config_check_servers(p, n, c) < 0)
		rc = -1;
	if (config_check_metrics_port(p, n, c) < 0)
		rc = -1;
	if (config_check_lmdb_dirs(p, n, c) < 0)
		rc = -1;
	if (c->quarantine) {
		struct cfg_backend_url u;
		const char *err;
		/* smtp_tx_quarantine writes into a Maildir only: any other backend passed here
		 * would 451 every message it should hold, for ever */
		if (strncasecmp(c->quarantine, "maildir:", 8) != 0)
			rc = cfg_error_key(p, n, "quarantine", -1, "expected maildir:/path (messages are "
			    "held in a Maildir; smtp:// and lmtp:// are not supported): \"%s\"", c->quarantine);
		else if (config_check_backend_url(c->quarantine, &u, &err) < 0)
			rc = cfg_error_key(p, n, "quarantine", -1, "%s: \"%s\"", err, c->quarantine);
		else {
			/* parsed here once: smtp_tx_quarantine and the quarantine verbs take the path */
			free(c->quarantine_dir);
			c->quarantine_dir = strdup(u.path);
			if (c->quarantine_dir == NULL)
				rc = cfg_error_key(p, n, "quarantine", -1, "out of memory");
		}
	}
	if (accept_domains_build(p, n, c) < 0)
		rc = -1;
	if (exempt_recipients_check(p, n, c) < 0)
		rc = -1;
	if (config_check_bypass(p, n, c) < 0)
		rc = -1;
	if (config_resolve_backends(p, n, c) < 0)
		rc = -1;
	return rc;
}

/* The top table: the daemon's own keys (CONFIG_CORE_KEYS of them, each in its place), then
 * the modules' sections, each at CONFIG_CORE_KEYS + its `order`. A wrong CONFIG_CORE_KEYS
 * either overwrites an entry (an error, below) or leaves a hole that ends the table early
 * (test_config's registry test fails). */
#define CONFIG_CORE_KEYS 22

/* The orders in modules.def are 0..MODULES_COUNT-1, each once: the sum of 2^order over the
 * entries has every bit up to MODULES_COUNT set only then. */
_Static_assert(0
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, docline) + (1ull << (order))
#include "modules.def"
#undef MX_MODULE
	== (1ull << MODULES_COUNT) - 1, "modules.def: each order 0..MODULES_COUNT-1 exactly once");

#pragma GCC diagnostic push
#pragma GCC diagnostic error "-Woverride-init"
static const struct cfg_field config_fields[CONFIG_CORE_KEYS + MODULES_COUNT + 1] = {
	{ "hostname", CFG_STRING, offsetof(struct mx_config, hostname),
	  .doc = "name in the greeting, EHLO reply and Received/Authentication-Results headers (default: the system host name)" },
	{ "workers", CFG_CUSTOM, offsetof(struct mx_config, workers), "auto", .custom = workers_parse,
	  .doc = "event-loop threads: auto (one per CPU the daemon may run on: its affinity mask, as taskset, a cpuset or systemd's CPUAffinity= set it) or 1..64" },
	{ "user", CFG_STRING, offsetof(struct mx_config, user),
	  .doc = "drop privileges to this user after binding (when started as root)" },
	{ "listen", CFG_STRUCT_LIST, offsetof(struct mx_config, listen), .sub = &listen_table,
	  .flags = CFG_REQUIRED, .doc = "listeners; a plain string item is its address" },
	{ "trusted_proxies", CFG_CIDRLIST, offsetof(struct mx_config, trusted_proxies),
	  "[127.0.0.0/8, \"::1\"]", .doc = "peers allowed to send PROXY headers (on listeners with proxy_protocol)" },
	{ "xclient_hosts", CFG_CIDRLIST, offsetof(struct mx_config, xclient_hosts),
	  .doc = "front ends allowed to name the client they relay with XCLIENT (nginx's mail module, Postfix's smtpd_authorized_xclient_hosts): EHLO offers XCLIENT to them, and after it the session is the named client's for every check, limit, log line and the backends; anyone else gets 550 5.7.0. Empty (the default): nobody, as an XCLIENT open to all lets any client forge its address" },
	{ "nat64_prefixes", CFG_CUSTOM, offsetof(struct mx_config, nat64_prefixes), "[\"64:ff9b::/96\"]",
	  .custom = nat64_prefixes_parse,
	  .doc = "NAT64 prefixes (RFC 6052: the well-known 64:ff9b::/96, RFC 8215's local-use 64:ff9b:1::/48, a network-specific one; /32, /40, /48, /56, /64 or /96, none overlapping another, at most 16): an IPv6 client under one is the IPv4 address it embeds (RFC 6052 2.2, bits 64-71 skipped) for the DNS lists, limits, rate limits, reputation and greylisting, as the translator in front of an IPv6-only mxgate sees an IPv4 client; logs, XCLIENT/PROXY and address lists keep the IPv6 address. [] = none. Read at start: a change waits for a restart" },
	{ "tls", CFG_STRUCT, offsetof(struct mx_config, tls), .sub = &tls_table,
	  .doc = "certificate for STARTTLS/implicit TLS listeners" },
	{ "limits", CFG_STRUCT, offsetof(struct mx_config, limits), .sub = &limits_table,
	  .doc = "connection, size and time limits" },
	{ "backends", CFG_STRUCT, offsetof(struct mx_config, backends), .sub = &backends_table,
	  .doc = "the MTAs accepted mail is relayed to" },
	{ "log", CFG_STRUCT, offsetof(struct mx_config, log), .sub = &log_table, .doc = "logging" },
	{ "log_level", CFG_ENUM, offsetof(struct mx_config, log_level), .choices = log_level_choices,
	  .doc = "alias of log.level (wins when both are set)" },
	{ "metrics", CFG_STRUCT, offsetof(struct mx_config, metrics), .sub = &metrics_table,
	  .doc = "Prometheus metrics endpoint" },
	{ "quarantine", CFG_CUSTOM, offsetof(struct mx_config, quarantine), .custom = quarantine_parse,
	  .free_custom = quarantine_free, .sub = &quarantine_alts,
	  .doc = "the Maildir quarantined messages are held in: maildir:/path, e.g. maildir:/var/spool/mxgate/quarantine, or a section { store: maildir:/path, expire: 30d } (quarantine (section) below); -t refuses any other backend (smtp://, lmtp://); a message that cannot be written there gets 451 4.3.0 (default: none). Held messages are removed after quarantine.expire (kept for ever unless set; 30d suggested)" },
	{ "accept_domains", CFG_STRLIST, offsetof(struct mx_config, accept_domains),
	  .doc = "recipient domains mxgate accepts mail for: example.org, \"*.example.org\" (every subdomain), [192.0.2.1], \"file:/etc/mxgate/domains\" (one per line, re-read on SIGHUP); others get 550 5.7.1 unless the client authenticated (SMTP AUTH) or is in relay_networks; empty = every domain (-t warns)" },
	{ "relay_networks", CFG_CIDRLIST, offsetof(struct mx_config, relay_networks),
	  .doc = "clients that may send to recipients outside accept_domains (Postfix's permit_mynetworks, Haraka's relay_acl_allow): CIDRs and file:PATH items; judged on the client's real address (PROXY, XCLIENT); relaying only, every other check still applies; each such recipient is logged event=relay relay=network. Empty (the default): nobody" },
	{ "reject_non_fqdn_sender", CFG_BOOL, offsetof(struct mx_config, reject_non_fqdn_sender), "false",
	  .doc = "refuse MAIL FROM whose domain has no dot (a@localname; a trailing root dot does not count, an address literal passes) with 504 5.5.2, as Postfix's reject_non_fqdn_sender: such a sender cannot be replied to. Not the null sender; every client, relay_networks and authenticated ones too (they relay, nothing more). Off by default, as Postfix; an MX that takes mail from the Internet should turn it on" },
	{ "reject_non_fqdn_recipient", CFG_BOOL, offsetof(struct mx_config, reject_non_fqdn_recipient), "false",
	  .doc = "refuse RCPT TO whose domain has no dot with 504 5.5.2, before accept_domains is asked (Postfix's reject_non_fqdn_recipient); not <Postmaster>; every client. Off by default, as Postfix; an MX that takes mail from the Internet should turn it on" },
	{ "exempt_recipients", CFG_STRLIST, offsetof(struct mx_config, exempt_recipients),
	  .doc = "recipients a client refused for what it is (a DNS list, its reputation, a rate limit's reject) may still write to, as RFC 5321 4.5.1 and RFC 2142 ask (Postfix's check_recipient_access before reject_rbl_client): local parts (postmaster: postmaster@ of every accepted domain, and <Postmaster>) or full addresses (abuse@example.org). The refusal is then given at each other RCPT instead of at MAIL, logged as before; an exempt recipient is logged event=exempt_recipient and its message is relayed and scanned like any other. Not a drop (521), a load shed (421), nor a client that failed pregreet or a protocol test. Empty (the default): refused at MAIL" },
	{ "bypass", CFG_STRUCT_LIST, offsetof(struct mx_config, bypass), .sub = &bypass_entry_table,
	  .doc = "content checks not run for some recipients (amavis's bypass_spam_checks_maps, a customer who wants no filtering, abuse@ taking spam samples; with senders, a per-domain sender whitelist): a list of { recipients, senders, checks }. At RCPT a check judges the candidate alone (greylist: that recipient is not greylisted); at DATA and end of data a check is skipped only when every accepted recipient of the message is covered for it: bypass_mixed says what becomes of a message whose recipients are not covered alike (by default they are split, so a covered recipient's copy is never refused nor changed by the check it bypasses). A skipped check adds no header (no X-Spam-* score that was not computed); each message with one is logged event=bypass. A milter is not shown a covered recipient at RCPT and is sent ABORT instead of a message all of whose recipients bypass it; a shared-object plugin is named by its name:. Connect, HELO and MAIL checks (DNS lists, reputation, rate limits) are not bypassed: see exempt_recipients; nor is sender authentication (spf, dkim, arc, dmarc: Authentication-Results is the message's). Empty (the default): every check for everyone" },
	{ "deny_senders", CFG_STRUCT_LIST, offsetof(struct mx_config, deny_senders), .sub = &bypass_deny_table,
	  .doc = "envelope senders refused for some recipients: a customer's own deny list (Postfix's check_recipient_access to a restriction class with check_sender_access, Proxmox Mail Gateway's Blacklist rule with a To object, MailScanner's spam.blacklist.rules): a list of { recipients, senders }, the items as bypass's. A listed sender gets 550 5.7.1 at RCPT for those recipients alone (event=reject stage=rcpt reason=sender_denied), the message delivered to the others; the null sender matches none. MAIL FROM is the client's word: a deny list stops what a sender admits to, not a forger. Empty (the default): none" },
	{ "bypass_mixed", CFG_ENUM, offsetof(struct mx_config, bypass_mixed), "split", .choices = bypass_mixed_choices,
	  .doc = "recipients of one transaction that bypass covers differently for a check of the message (clamd, spamd, rspamd, rules, a milter, a shared object; not greylisting: at RCPT it judges each recipient alone, and at DATA its deferral is a delay, no verdict): split (the default) answers a recipient covered otherwise than the transaction's first 452 4.5.3 (logged event=tempfail stage=rcpt reason=bypass_split), so its sender sends it in a transaction of its own, as amavis and PMG give each recipient its own policy: the covered recipient's copy is not refused nor changed by the check it bypasses, and a milter's verdict is on what it saw; the cost is the later copy's delay (a Postfix sender resends it at its next queue run, minutes later) | check: one transaction, the check runs and its verdict (a refusal, a milter's header changes) is the whole message's, the covered recipients' too (a milter is not shown them at RCPT)" },
	/* then every module's section, at its `order` (modules.def) */
#define MX_SECTION CFG_STRUCT
#define MX_LIST CFG_STRUCT_LIST
#define MX_MODULE(name, kind, type, table, hook, check, metrics, order, docline) \
	[CONFIG_CORE_KEYS + (order)] = { #name, kind, offsetof(struct mx_config, name), \
					 .sub = &table, .doc = docline },
#include "modules.def"
#undef MX_MODULE
#undef MX_LIST
#undef MX_SECTION
	[CONFIG_CORE_KEYS + MODULES_COUNT] = { NULL }
};
#pragma GCC diagnostic pop

const struct cfg_table config_table = {
	"mxgate", sizeof(struct mx_config), config_fields, config_validate, CFG_TABLE_VALIDATE_ALWAYS
};
