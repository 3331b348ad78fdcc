/* test_config.c — the daemon's configuration (config.c): defaults, the core tables, error
 * lines on whole files, the module registry (modules.def), the examples and the generated
 * reference. The engine is tested by test_cfg.c, the value parsers by test_cfg_value.c.
 *
 * Table-driven: each row has a label printed when it fails. Run with `--dump-docs` to print
 * the generated reference (docs/config.md) instead of testing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_fixture.h"
#include "config.h"
#include "hook.h"
#include "log.h"
#include "modules.h"

/* ---------------------------------------------------------------- helpers */

/* Loads text as "t.yaml"; returns rc and the error output (malloc'd) in *errs. */
static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A socket address from "ip:port" / "[ip6]:port". */
static struct sockaddr_storage addr(const char *hostport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(cfg_parse_listen_address(hostport, &ss, &len, NULL), 0);
	return ss;
}

#define MINIMAL "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"

/* ---------------------------------------------------------------- core config */

static void test_defaults(void **state)
{
	struct mx_config *c;
	char *errs;
	assert_int_equal(config_fixture_load(MINIMAL, &c, &errs), 0);
	assert_string_equal(errs, "");
	free(errs);
	assert_string_equal(c->path, "t.yaml");
	assert_non_null(c->hostname);
	assert_true(c->hostname[0] != '\0');
	assert_int_equal(c->workers, 0);
	assert_null(c->user);
	assert_int_equal(c->listen.n, 1);
	const struct listen_config *l = c->listen.v;
	assert_string_equal(l[0].address, "127.0.0.1:2525");
	assert_int_equal(l[0].tls, LISTEN_TLS_NONE);
	assert_false(l[0].proxy_protocol);
	assert_int_equal(l[0].sa.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&l[0].sa)->sin_port), 2525);
	assert_int_equal(c->trusted_proxies.n, 2);
	struct sockaddr_storage lo = addr("127.0.0.5:25"), lo6 = addr("[::1]:25"), pub = addr("192.0.2.1:25");
	assert_true(cfg_cidrlist_match(&c->trusted_proxies, (struct sockaddr *)&lo));
	assert_true(cfg_cidrlist_match(&c->trusted_proxies, (struct sockaddr *)&lo6));
	assert_false(cfg_cidrlist_match(&c->trusted_proxies, (struct sockaddr *)&pub));
	assert_null(c->tls.certificate);
	assert_int_equal(c->tls.min_version, 0);
	assert_int_equal(c->limits.max_connections, 16000);
	assert_int_equal(c->limits.max_connections_per_ip, 50);
	assert_int_equal(c->limits.max_message_size, 50ull << 20);
	assert_int_equal(c->limits.max_recipients, 100);
	assert_int_equal(c->limits.command_timeout, 300000);
	assert_int_equal(c->limits.data_timeout, 600000);
	assert_int_equal(c->limits.drain_timeout, 25000);
	assert_int_equal(c->limits.bare_lf, BARE_LF_NORMALIZE);
	assert_int_equal(c->limits.nul, NUL_REJECT);
	assert_int_equal(c->limits.max_line_length, 1000);
	assert_int_equal(c->limits.max_errors, 10);
	assert_int_equal(c->limits.memory_threshold, 256 * 1024);
	assert_string_equal(c->limits.spool_dir, "/tmp");
	assert_int_equal(c->backends.balance, BALANCE_ROUND_ROBIN);
	assert_int_equal(c->backends.client_identity, IDENTITY_XCLIENT);
	assert_int_equal(c->backends.health_check.interval, 5000);
	assert_int_equal(c->backends.health_check.timeout, 3000);
	assert_int_equal(c->backends.health_check.fall, 2);
	assert_int_equal(c->backends.health_check.rise, 2);
	assert_int_equal(c->backends.servers.n, 1);
	const struct backend_server_config *s = c->backends.servers.v;
	assert_string_equal(s[0].address, "smtp://127.0.0.1:2526");
	assert_int_equal(s[0].weight, 1);
	assert_int_equal(c->backends.routes.n, 0);
	assert_int_equal(c->backends.connect_timeout, 10000);
	assert_int_equal(c->backends.reply_timeout, 60000);
	assert_int_equal(c->backends.data_timeout, 300000);
	assert_int_equal(c->backends.max_attempts, 3);
	assert_int_equal(c->backends.pool_size, 8);
	assert_true(c->backends.starttls);
	assert_int_equal(c->log.level, LOG_LVL_INFO);
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_false(c->log.syslog);
	assert_null(c->metrics.listen);
	assert_null(c->quarantine);
	assert_null(c->quarantine_dir);
	config_free(c);
	config_free(NULL);
}

/* A config in every contract name (INTERFACE.md's core keys), values away from defaults. */
static void test_full_core(void **state)
{
	const char *text =
		"hostname: mx.example.test\n"
		"workers: auto\n"
		"user: nobody\n"
		"listen:\n"
		"  - address: 127.0.0.1:2525\n"
		"    proxy_protocol: true\n"
		"  - { address: \"[::1]:2526\", tls: none }\n"
		"  - \":2527\"\n"
		"trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]\n"
		"limits:\n"
		"  max_connections: 100\n"
		"  max_connections_per_ip: 5\n"
		"  max_message_size: 10M\n"
		"  max_recipients: 50\n"
		"  command_timeout: 5m\n"
		"  data_timeout: 10m\n"
		"  drain_timeout: 1s\n"
		"  bare_lf: normalize\n"
		"  max_line_length: 800\n"
		"  max_errors: 3\n"
		"  memory_threshold: 1M\n"
		"  spool_dir: /tmp\n"
		"backends:\n"
		"  balance: least_conn\n"
		"  client_identity: proxy_v2\n"
		"  health_check: { interval: 1s, timeout: 500ms, fall: 3, rise: 4 }\n"
		"  servers:\n"
		"    - { address: \"smtp://127.0.0.1:2526\", weight: 5 }\n"
		"    - { address: \"lmtp://127.0.0.1:2424\" }\n"
		"    - maildir:/var/spool/mxgate/Maildir\n"
		"  routes:\n"
		"    - { domains: [example.org], servers: [\"smtp://127.0.0.1:2530\"] }\n"
		"    - { domains: example.net, servers: \"lmtp:unix:/run/lmtp\" }\n"
		"  connect_timeout: 2s\n"
		"  reply_timeout: 20s\n"
		"  data_timeout: 1m\n"
		"  max_attempts: 2\n"
		"  pool_size: 0\n"
		"  starttls: no\n"
		"log: { level: debug, syslog: on }\n"
		"metrics: { listen: \"127.0.0.1:9125\" }\n"
		"quarantine: maildir:/var/spool/mxgate/quarantine\n";
	struct mx_config *c;
	char *errs;
	int rc = config_fixture_load(text, &c, &errs);
	if (rc)
		fail_msg("full config refused: %s", errs);
	free(errs);
	assert_string_equal(c->hostname, "mx.example.test");
	assert_string_equal(c->user, "nobody");
	assert_int_equal(c->listen.n, 3);
	const struct listen_config *l = c->listen.v;
	assert_true(l[0].proxy_protocol);
	assert_int_equal(l[1].sa.ss_family, AF_INET6);
	assert_string_equal(l[2].address, ":2527");
	assert_int_equal(c->trusted_proxies.n, 2);
	assert_int_equal(c->limits.max_message_size, 10 << 20);
	assert_int_equal(c->limits.command_timeout, 300000);
	assert_int_equal(c->limits.bare_lf, BARE_LF_NORMALIZE);
	assert_int_equal(c->limits.max_line_length, 800);
	assert_int_equal(c->backends.balance, BALANCE_LEAST_CONN);
	assert_int_equal(c->backends.client_identity, IDENTITY_PROXY_V2);
	assert_int_equal(c->backends.health_check.timeout, 500);
	assert_int_equal(c->backends.health_check.rise, 4);
	const struct backend_server_config *s = c->backends.servers.v;
	assert_int_equal(c->backends.servers.n, 3);
	assert_int_equal(s[0].weight, 5);
	assert_int_equal(s[1].weight, 1);
	assert_string_equal(s[2].address, "maildir:/var/spool/mxgate/Maildir");
	const struct backend_route_config *r = c->backends.routes.v;
	assert_int_equal(c->backends.routes.n, 2);
	assert_string_equal(r[0].domains.v[0], "example.org");
	assert_int_equal(r[1].domains.n, 1);
	assert_string_equal(r[1].servers.v[0], "lmtp:unix:/run/lmtp");
	assert_int_equal(c->backends.pool_size, 0);
	assert_false(c->backends.starttls);
	assert_int_equal(c->log.level, LOG_LVL_DEBUG);
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_true(c->log.syslog);
	assert_string_equal(c->metrics.listen, "127.0.0.1:9125");
	assert_string_equal(c->quarantine, "maildir:/var/spool/mxgate/quarantine");
	/* parsed once when loaded: the quarantine's writes and verbs take the path */
	assert_string_equal(c->quarantine_dir, "/var/spool/mxgate/quarantine");
	config_free(c);
}

/* Accepted shapes: each must load; check() looks at the result. */
struct shape_row { const char *label, *text; void (*check)(const struct mx_config *c); };

static void chk_listen_string(const struct mx_config *c)
{
	assert_int_equal(c->listen.n, 1);
	assert_string_equal(((struct listen_config *)c->listen.v)[0].address, "127.0.0.1:2525");
}
static void chk_two_servers(const struct mx_config *c)
{
	assert_int_equal(c->backends.servers.n, 2);
}
static void chk_log_warning(const struct mx_config *c)
{
	assert_int_equal(c->log.level, LOG_LVL_WARNING);
	assert_int_equal(c->log_level, LOG_LVL_WARNING);
}
static void chk_workers4(const struct mx_config *c)
{
	assert_int_equal(c->workers, 4);
}
static void chk_merge(const struct mx_config *c)
{
	const struct backend_server_config *s = c->backends.servers.v;
	assert_int_equal(c->backends.servers.n, 2);
	assert_int_equal(s[0].weight, 7);
	assert_int_equal(s[1].weight, 7);
	assert_string_equal(s[1].address, "smtp://127.0.0.1:2527");
}
static void chk_null_values(const struct mx_config *c)
{
	assert_int_equal(c->limits.max_recipients, 100);
	assert_null(c->quarantine);
}
static void chk_hostname(const struct mx_config *c)
{
	assert_string_equal(c->hostname, "mx.demo.test");
}

static const struct shape_row shape_rows[] = {
	{ "listen as a plain string",
	  "listen: 127.0.0.1:2525\nbackends: { servers: smtp://127.0.0.1:2526 }\n", chk_listen_string },
	{ "listen as a single mapping",
	  "listen: { address: 127.0.0.1:2525 }\nbackends: { servers: [smtp://h:1] }\n", chk_listen_string },
	{ "servers as plain strings",
	  "listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - smtp://127.0.0.1:2526\n    - \"lmtp://127.0.0.1:2424\"\n",
	  chk_two_servers },
	{ "top-level log_level alias",
	  MINIMAL "log_level: warning\n", chk_log_warning },
	{ "log_level wins over log.level",
	  MINIMAL "log: { level: debug }\nlog_level: warning\n", chk_log_warning },
	{ "log.level alone", MINIMAL "log: { level: warning }\n", chk_log_warning },
	{ "workers integer", MINIMAL "workers: 4\n", chk_workers4 },
	{ "anchors and merge keys",
	  "listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - &s { address: smtp://127.0.0.1:2526, weight: 7 }\n"
	  "    - { <<: *s, address: smtp://127.0.0.1:2527 }\n", chk_merge },
	{ "null values take defaults", MINIMAL "limits: { max_recipients: ~ }\nquarantine:\ntls:\n", chk_null_values },
	{ "comments and document marker", "---\n# c\nhostname: mx.demo.test # x\n" MINIMAL "...\n", chk_hostname },
};

static void test_shapes(void **state)
{
	for (size_t i = 0; i < sizeof(shape_rows) / sizeof(shape_rows[0]); i++) {
		struct mx_config *c;
		char *errs;
		if (config_fixture_load(shape_rows[i].text, &c, &errs) != 0)
			fail_msg("shape row \"%s\" refused: %s", shape_rows[i].label, errs);
		free(errs);
		shape_rows[i].check(c);
		config_free(c);
	}
}

/* Refused configs: the exact first error line, and how many lines in all. */
struct err_row { const char *label, *text, *first; size_t lines; };
static const struct err_row err_rows[] = {
	{ "unknown key at its line:col",
	  MINIMAL "limits:\n  max_conections: 5\n",
	  "t.yaml:4:3: limits.max_conections: unknown key (did you mean \"max_connections\"?)\n", 1 },
	{ "unknown key without a near match",
	  MINIMAL "frobnicate: 1\n", "t.yaml:3:1: frobnicate: unknown key\n", 1 },
	{ "wrong type: integer",
	  MINIMAL "limits:\n  max_connections_per_ip: lots\n",
	  "t.yaml:4:27: limits.max_connections_per_ip: expected an integer, got \"lots\"\n", 1 },
	{ "out of bounds",
	  MINIMAL "limits: { max_line_length: 100 }\n",
	  "t.yaml:3:28: limits.max_line_length: must be between 512 and 1000, got 100\n", 1 },
	{ "a command line longer than the command parser takes (998 + CRLF): refused, not ignored",
	  MINIMAL "limits: { max_line_length: 2048 }\n",
	  "t.yaml:3:28: limits.max_line_length: must be between 512 and 1000, got 2048\n", 1 },
	{ "duration bounds shown as durations",
	  MINIMAL "limits: { command_timeout: 0s }\n",
	  "t.yaml:3:28: limits.command_timeout: must be between 1s and 1d, got 0s\n", 1 },
	{ "bad size", MINIMAL "limits: { max_message_size: big }\n",
	  "t.yaml:3:29: limits.max_message_size: expected a size like 512, 64K, 50M or 1G, got \"big\"\n", 1 },
	{ "bad enum", "listen: [127.0.0.1:2525]\nbackends: { servers: [smtp://h:1], balance: random }\n",
	  "t.yaml:2:45: backends.balance: expected one of round_robin, least_conn, source_hash, got \"random\"\n", 1 },
	{ "bad bool", MINIMAL "log: { syslog: maybe }\n",
	  "t.yaml:3:16: log.syslog: expected true or false, got \"maybe\"\n", 1 },
	{ "list of structs: index in the path",
	  "listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - address: smtp://127.0.0.1:2526\n    - address: smtp://127.0.0.1:99999\n",
	  "t.yaml:5:16: backends.servers[1].address: port must be a number 1..65535: \"smtp://127.0.0.1:99999\"\n", 1 },
	{ "required key inside an item",
	  "listen: [127.0.0.1:2525]\nbackends:\n  servers:\n    - { weight: 3 }\n",
	  "t.yaml:4:9: backends.servers[0].address: missing required key\n", 1 },
	{ "missing listen and servers in an empty file", "",
	  "t.yaml:1:1: listen: missing required key\n", 2 },
	{ "missing key reported at the section's key",
	  "listen: [127.0.0.1:2525]\nbackends:\n  balance: least_conn\n",
	  "t.yaml:2:1: backends.servers: missing required key\n", 1 },
	{ "empty servers list", "listen: [127.0.0.1:2525]\nbackends: { servers: [] }\n",
	  "t.yaml:2:13: backends.servers: must not be empty\n", 1 },
	{ "section given a scalar", MINIMAL "limits: 5\n",
	  "t.yaml:3:9: limits: expected a mapping, got a scalar\n", 1 },
	{ "string given a list", MINIMAL "user: [a, b]\n",
	  "t.yaml:3:8: user: expected a string, got a list\n", 1 },
	{ "all errors collected, in file order",
	  "workers: lots\nlisten: [nowhere]\nlimits: { max_errors: 0, bare_lf: maybe }\nbackends: { servers: [ftp://x] }\nbogus: 1\n",
	  "t.yaml:1:10: workers: expected auto or an integer, got \"lots\"\n", 6 },
	{ "workers out of range", MINIMAL "workers: 65\n",
	  "t.yaml:3:10: workers: must be auto or between 1 and 64, got 65\n", 1 },
	{ "YAML syntax error position", "listen: [127.0.0.1:2525\nbackends: {}\n",
	  "t.yaml:3:1: YAML syntax: flow sequence without a closing bracket\n", 1 },
	{ "unquoted IPv6 listen address gets a hint", "listen:\n  - address: [::1]:25\n",
	  "t.yaml:2:19: YAML syntax: invalid value after mapping (quote bracketed IPv6 addresses: "
	  "\"[::1]:25\")\n", 1 },
	{ "duplicate key", MINIMAL "workers: 1\nworkers: 2\n",
	  "t.yaml:4:1: YAML syntax: duplicate key\n", 1 },
	{ "root is a list", "- a\n- b\n",
	  "t.yaml:1:3: the file must be a YAML mapping (key: value lines), got a list\n", 1 },
	{ "tls listener without certificate",
	  "listen:\n  - { address: 127.0.0.1:2525, tls: starttls }\nbackends: { servers: [smtp://h:1] }\n",
	  "t.yaml:2:37: listen[0].tls: a TLS listener needs tls.certificate and tls.key\n", 1 },
	{ "unreadable certificate",
	  MINIMAL "tls: { certificate: /nonexistent/cert.pem, key: /nonexistent/key.pem }\n",
	  "t.yaml:3:21: tls.certificate: cannot read /nonexistent/cert.pem: No such file or directory\n", 2 },
	{ "bad route server",
	  "listen: [127.0.0.1:2525]\nbackends:\n  servers: [smtp://h:1]\n  routes:\n    - { domains: [a.test], servers: [smtp://h:1, \"http://x\"] }\n",
	  "t.yaml:5:50: backends.routes[0].servers[1]: unknown scheme (expected smtp://host:port, "
	  "lmtp://host:port, lmtp:unix:/path or maildir:/path): \"http://x\"\n", 1 },
	{ "bad quarantine", MINIMAL "quarantine: /var/spool/q\n",
	  "t.yaml:3:13: quarantine: expected maildir:/path (messages are held in a Maildir; smtp:// and "
	  "lmtp:// are not supported): \"/var/spool/q\"\n", 1 },
	/* accepted before, then every message it should hold got 451 */
	{ "smtp quarantine", MINIMAL "quarantine: smtp://127.0.0.1:2526\n",
	  "t.yaml:3:13: quarantine: expected maildir:/path (messages are held in a Maildir; smtp:// and "
	  "lmtp:// are not supported): \"smtp://127.0.0.1:2526\"\n", 1 },
	{ "lmtp quarantine", MINIMAL "quarantine: lmtp:unix:/run/q.sock\n",
	  "t.yaml:3:13: quarantine: expected maildir:/path (messages are held in a Maildir; smtp:// and "
	  "lmtp:// are not supported): \"lmtp:unix:/run/q.sock\"\n", 1 },
	{ "quarantine maildir without path", MINIMAL "quarantine: \"maildir:\"\n",
	  "t.yaml:3:13: quarantine: missing path: \"maildir:\"\n", 1 },
	{ "bad listen address", "listen: [\"127.0.0.1\"]\nbackends: { servers: [smtp://h:1] }\n",
	  "t.yaml:1:10: listen[0]: expected address:port, e.g. 127.0.0.1:2525, [::1]:25 or :25\n", 1 },
	{ "bad trusted proxy", MINIMAL "trusted_proxies: [10.0.0.0/8, 300.1.1.1]\n",
	  "t.yaml:3:31: trusted_proxies[1]: expected an address or prefix like 192.0.2.0/24, "
	  "2001:db8::/32 or file:PATH, got \"300.1.1.1\"\n", 1 },
	{ "spool_dir missing", MINIMAL "limits: { spool_dir: /nonexistent/spool }\n",
	  "t.yaml:3:22: limits.spool_dir: /nonexistent/spool is not a directory\n", 1 },
	{ "bad metrics listen", MINIMAL "metrics: { listen: nowhere }\n",
	  "t.yaml:3:20: metrics.listen: expected address:port, e.g. 127.0.0.1:2525, [::1]:25 or :25\n", 1 },
	{ "non-string key", MINIMAL "[a]: 1\n", "t.yaml:3:2: keys must be plain strings\n", 1 },
	{ "hostname with CRLF", MINIMAL "hostname: \"mx\\r\\n250 x\"\n",
	  "t.yaml:3:11: hostname: not a host name: \"mx\\r\\n250 x\"\n", 1 },
	{ "unknown user", MINIMAL "user: no-such-user-here\n",
	  "t.yaml:3:7: user: no such user: \"no-such-user-here\"\n", 1 },
	{ "duplicate listener",
	  "listen: [\"127.0.0.1:2525\", { address: \"127.0.0.1:2525\" }]\nbackends: { servers: [smtp://h:1] }\n",
	  "t.yaml:1:30: listen[1]: same address as listen[0]\n", 1 },
	{ "invalid UTF-8 (libfyaml 0.7.12 loops on it in a directive)", "%ff::ff:1\xc0",
	  "t.yaml:1:10: invalid UTF-8\n", 1 },
	{ "control character", MINIMAL "user: a\x01b\n",
	  "t.yaml:3:8: control character not allowed in YAML\n", 1 },
};

static void test_errors(void **state)
{
	for (size_t i = 0; i < sizeof(err_rows) / sizeof(err_rows[0]); i++) {
		const struct err_row *r = &err_rows[i];
		struct mx_config *c = (struct mx_config *)1;
		char *errs;
		int rc = config_fixture_load(r->text, &c, &errs);
		if (rc != -1 || c != NULL)
			fail_msg("error row \"%s\": accepted", r->label);
		const char *nl = strchr(errs, '\n');
		size_t flen = nl ? (size_t)(nl - errs) + 1 : strlen(errs);
		if (flen != strlen(r->first) || strncmp(errs, r->first, flen) != 0 ||
		    count_lines(errs) != r->lines)
			fail_msg("error row \"%s\": got (%zu lines)\n%s\nwanted first line\n%s",
				 r->label, count_lines(errs), errs, r->first);
		free(errs);
	}
}

/* file:PATH items in a list of CIDRs (proxy/cidr.h): read at load, inline and file entries
 * together; every bad line is an error at the file's own PATH:LINE:COL with the key path,
 * sorted at the item; a missing file an error at the item. */
static void test_cidr_file_items(void **state)
{
	char path[] = "/tmp/test_config_cidr_XXXXXX", text[512], want[512];
	struct mx_config *c = NULL;
	struct sockaddr_in a = { .sin_family = AF_INET };
	char *errs = NULL;
	int fd = mkstemp(path);
	static const char good[] = "# ours\n198.18.50.0/24\r\n\n2001:db8::/32 # v6\n";
	static const char bad[] = "198.18.50.0/24\n  198.18.999.0/24\nx 1\n";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good, sizeof(good) - 1), (ssize_t)(sizeof(good) - 1));
	close(fd);
	snprintf(text, sizeof(text), MINIMAL "relay_networks: [10.0.0.0/8, \"file:%s\"]\n", path);
	assert_int_equal(config_fixture_load(text, &c, &errs), 0);
	assert_int_equal(c->relay_networks.n, 3);
	inet_pton(AF_INET, "198.18.50.7", &a.sin_addr);
	assert_true(cfg_cidrlist_match(&c->relay_networks, (struct sockaddr *)&a));
	inet_pton(AF_INET, "10.9.9.9", &a.sin_addr);
	assert_true(cfg_cidrlist_match(&c->relay_networks, (struct sockaddr *)&a));
	config_free(c);
	free(errs);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
	close(fd);
	assert_int_equal(config_fixture_load(text, &c, &errs), -1);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:2:3: relay_networks[1]: expected an address or prefix like "
		 "192.0.2.0/24 or 2001:db8::/32, got \"198.18.999.0/24\"\n%s:3:1: relay_networks[1]: "
		 "expected an address or prefix like 192.0.2.0/24 or 2001:db8::/32, got \"x\"\n",
		 path, path);
	if (strcmp(errs, want) != 0)
		fail_msg("bad file: got\n%swanted\n%s", errs, want);
	free(errs);

	unlink(path);
	assert_int_equal(config_fixture_load(text, &c, &errs), -1);
	snprintf(want, sizeof(want), "t.yaml:3:30: relay_networks[1]: cannot read %s: No such file or "
		 "directory\n", path);
	if (strcmp(errs, want) != 0)
		fail_msg("missing file: got\n%swanted\n%s", errs, want);
	free(errs);
}

/* The acceptance check's config (lib.py config()) and its `lots` variant. */
static const char *acceptance_good =
	"hostname: mx.example.test\n"
	"workers: 2\n"
	"listen:\n"
	"  - address: \"127.0.0.1:2599\"\n"
	"trusted_proxies: [\"127.0.0.1/32\"]\n"
	"limits:\n"
	"  max_connections: 20000\n"
	"  max_connections_per_ip: 20000\n"
	"backends:\n"
	"  balance: round_robin\n"
	"  client_identity: xclient\n"
	"  health_check: { interval: 1s, timeout: 1s }\n"
	"  servers:\n"
	"    - { address: \"smtp://127.0.0.1:2526\" }\n"
	"\n";

static void test_acceptance_config(void **state)
{
	char dir[] = "/tmp/test_config_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char good[128], bad[128];
	snprintf(good, sizeof(good), "%s/good.yaml", dir);
	snprintf(bad, sizeof(bad), "%s/bad.yaml", dir);
	FILE *f = fopen(good, "w");
	fputs(acceptance_good, f);
	fclose(f);
	struct mx_config *c;
	assert_int_equal(config_load(good, &c, stderr), 0);
	assert_string_equal(c->path, good);
	assert_int_equal(c->workers, 2);
	assert_int_equal(c->limits.max_connections_per_ip, 20000);
	assert_int_equal(c->backends.health_check.interval, 1000);
	config_free(c);

	char *text = strdup(acceptance_good);
	char *at = strstr(text, "  max_connections_per_ip: 20000");
	memcpy(at, "  max_connections_per_ip: lots \n", 32); /* same length, line 8 */
	f = fopen(bad, "w");
	fputs(text, f);
	fclose(f);
	free(text);
	char *errs = NULL;
	size_t len = 0;
	FILE *ef = open_memstream(&errs, &len);
	assert_int_equal(config_load(bad, &c, ef), -1);
	fclose(ef);
	assert_null(c);
	char want[256];
	snprintf(want, sizeof(want), "%s:8:27: limits.max_connections_per_ip: expected an integer, "
		 "got \"lots\"\n", bad);
	assert_string_equal(errs, want);
	free(errs);

	/* a missing file is refused with its name */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/missing.yaml", dir);
	ef = open_memstream(&errs, &len);
	assert_int_equal(config_load(missing, &c, ef), -1);
	fclose(ef);
	assert_non_null(strstr(errs, "missing.yaml: cannot read: No such file"));
	free(errs);
	/* so is a directory */
	ef = open_memstream(&errs, &len);
	assert_int_equal(config_load(dir, &c, ef), -1);
	fclose(ef);
	assert_non_null(strstr(errs, ": cannot read: Is a directory"));
	free(errs);
	unlink(good);
	unlink(bad);
	rmdir(dir);
}

static void test_too_many_listeners(void **state)
{
	char text[2048];
	size_t off = (size_t)snprintf(text, sizeof(text), "backends: { servers: [smtp://h:1] }\nlisten:\n");
	for (int i = 0; i < 17; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "  - 127.0.0.1:%d\n", 2000 + i);
	struct mx_config *c;
	char *errs;
	assert_int_equal(config_fixture_load(text, &c, &errs), -1);
	assert_string_equal(errs, "t.yaml:19:5: listen[16]: at most 16 listeners\n");
	free(errs);
}

static void test_alias_bomb(void **state)
{
	char text[4096];
	size_t off = (size_t)snprintf(text, sizeof(text), "a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 12; i++) {
		off += (size_t)snprintf(text + off, sizeof(text) - off, "a%d: &a%d [", i, i);
		for (int k = 0; k < 9; k++)
			off += (size_t)snprintf(text + off, sizeof(text) - off, "%s*a%d", k ? "," : "", i - 1);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "]\n");
	}
	struct mx_config *c;
	char *errs;
	assert_int_equal(config_fixture_load(text, &c, &errs), -1);
	assert_non_null(strstr(errs, "too many nodes after expanding aliases"));
	free(errs);
}

static void test_tables_selfcheck(void **state)
{
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);
	int rc = cfg_table_selfcheck(&config_table, f);
	fclose(f);
	if (rc)
		fail_msg("table problems:\n%s", errs);
	free(errs);
}

/* modules.def generates the chain, the members of struct mx_config and the top table's
 * sections: all three must agree with the list. */
static void test_module_registry(void **state)
{
	size_t nfields = 0, nhooks = 0, ncore;
	bool seen_order[MODULES_COUNT] = { false };

	while (config_table.fields[nfields].key)
		nfields++;
	assert_true(nfields > MODULES_COUNT);
	ncore = nfields - MODULES_COUNT;
	for (size_t i = 0; i < MODULES_COUNT; i++) {
		const struct module_info *m = &module_list[i];
		assert_true(m->order >= 0 && m->order < MODULES_COUNT);
		if (seen_order[m->order])
			fail_msg("%s: order %d used twice", m->name, m->order);
		seen_order[m->order] = true;
		/* its section sits in the top table at its order, after the core keys */
		const struct cfg_field *f = &config_table.fields[ncore + (size_t)m->order];
		if (strcmp(f->key, m->name) != 0)
			fail_msg("%s: top table has %s at its place", m->name, f->key);
		assert_ptr_equal(f->sub, m->table);
		assert_string_equal(f->doc, m->doc);
		assert_int_equal(f->type, m->kind == MODULE_LIST ? CFG_STRUCT_LIST : CFG_STRUCT);
		if (m->table->size != m->size)
			fail_msg("%s: table size %zu, struct size %zu", m->name, m->table->size, m->size);
		/* the chain is the list's hook modules, in list order */
		if (m->hook) {
			assert_true(nhooks < hook_nmodules);
			assert_ptr_equal(hook_modules[nhooks], m->hook);
			assert_string_equal(hook_modules[nhooks]->name, m->name);
			nhooks++;
		}
	}
	assert_int_equal(nhooks, hook_nmodules);
	assert_null(hook_modules[hook_nmodules]);
	assert_string_equal(hook_modules[hook_nmodules - 1]->name, "rules");
}

static void test_worker_count(void **state)
{
	struct mx_config c;
	memset(&c, 0, sizeof(c));
	c.workers = 3;
	assert_int_equal(config_worker_count(&c), 3);
	c.workers = 0;
	int n = config_worker_count(&c);
	assert_true(n >= 1 && n <= 64);
	assert_int_equal(config_worker_count(NULL), n);

	/* auto counts the CPUs this thread may run on (taskset, cpusets), not the machine's */
	cpu_set_t all, one;
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	assert_int_equal(n, CPU_COUNT(&all) > 64 ? 64 : CPU_COUNT(&all));
	CPU_ZERO(&one);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &all)) {
			CPU_SET(cpu, &one);
			break;
		}
	}
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	assert_int_equal(config_worker_count(&c), 1);
	c.workers = 2;
	assert_int_equal(config_worker_count(&c), 2);	/* a number is the operator's */
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
}

/* rel inside the source tree; a static buffer. */
static char *source_path(const char *rel)
{
	const char *src = getenv("MX_SOURCE_DIR");
#ifdef MX_SOURCE_DIR
	if (!src)
		src = MX_SOURCE_DIR;
#endif
	static char path[1024];
	snprintf(path, sizeof(path), "%s/%s", src ? src : ".", rel);
	return path;
}

/* examples/demo.yaml is what `make run` starts: it must load as is. */
static void test_example_demo(void **state)
{
	struct mx_config *c;
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);
	int rc = config_load(source_path("examples/demo.yaml"), &c, f);
	fclose(f);
	if (rc)
		fail_msg("examples/demo.yaml refused:\n%s", errs);
	free(errs);
	assert_string_equal(c->hostname, "mx.demo.test");
	assert_int_equal(c->workers, 0);
	assert_int_equal(c->listen.n, 1);
	assert_string_equal(((struct listen_config *)c->listen.v)[0].address, "127.0.0.1:2525");
	assert_int_equal(c->backends.servers.n, 1);
	assert_string_equal(((struct backend_server_config *)c->backends.servers.v)[0].address,
			    "maildir:./demo-maildir");
	assert_int_equal(c->log.level, LOG_LVL_INFO);
	config_free(c);
}

/* examples/mxgate.yaml: the core keys must all be right; a module section whose table is
 * not registered yet may show up as a top-level "unknown key" (reported, not failed). */
static void test_example_reference(void **state)
{
	struct mx_config *c = NULL;
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);
	int rc = config_load(source_path("examples/mxgate.yaml"), &c, f);
	fclose(f);
	if (rc == 0) {
		assert_int_equal(c->backends.servers.n, 3);
		assert_int_equal(c->backends.routes.n, 1);
		config_free(c);
	}
	for (char *line = errs; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		/* FILE:LINE:COL: key: unknown key... with a top-level key only */
		char *key = strstr(line, ".yaml:");
		key = key ? strchr(key + 6, ' ') : NULL;
		bool module_missing = key && strstr(line, ": unknown key") &&
				      strcspn(key + 1, ".[:") == strcspn(key + 1, ":");
		if (!module_missing)
			fail_msg("examples/mxgate.yaml: %s", line);
		print_message("note (module not registered yet?): %s\n", line);
		line = nl ? nl + 1 : NULL;
	}
	free(errs);
}

static void test_docs(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_write_docs(f);
	fclose(f);
	for (const struct cfg_field *fl = config_table.fields; fl->key; fl++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "| `%s` |", fl->key);
		if (!strstr(buf, needle))
			fail_msg("docs lack key %s", fl->key);
	}
	assert_non_null(strstr(buf, "### `backends.servers[]`"));
	assert_non_null(strstr(buf, "| `max_line_length` | integer | `1000` | 512 .. 1000 |"));
	free(buf);
}

/* docs/config.md is generated: it must be what the tables say now. */
static void test_docs_up_to_date(void **state)
{
	char *buf = NULL, *file = NULL;
	size_t len = 0, flen = 0, line = 1, i;
	FILE *f = open_memstream(&buf, &len);
	config_write_docs(f);
	fclose(f);
	f = fopen(source_path("docs/config.md"), "rb");
	if (!f)
		fail_msg("cannot read %s", source_path("docs/config.md"));
	FILE *m = open_memstream(&file, &flen);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	for (i = 0; i < len && i < flen && buf[i] == file[i]; i++)
		line += buf[i] == '\n';
	if (i < len || i < flen)
		fail_msg("docs/config.md differs from the tables at line %zu: regenerate it with "
			 "`build/mxgate --dump-config-docs > docs/config.md`", line);
	free(buf);
	free(file);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--dump-docs") == 0) {
		config_write_docs(stdout);
		return 0;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_core),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_cidr_file_items),
		cmocka_unit_test(test_acceptance_config),
		cmocka_unit_test(test_too_many_listeners),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_tables_selfcheck),
		cmocka_unit_test(test_module_registry),
		cmocka_unit_test(test_worker_count),
		cmocka_unit_test(test_example_demo),
		cmocka_unit_test(test_example_reference),
		cmocka_unit_test(test_docs),
		cmocka_unit_test(test_docs_up_to_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
