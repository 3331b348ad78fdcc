/* test_bypass.c — `bypass:` (proxy/bypass.c): the recipient items as the config loads them
 * (domains, wildcards, local parts, addresses, file:PATH; refused items and checks), one
 * recipient's cover, and the all-recipients decision a message's checks are skipped by
 * (amavis: a check is bypassed only when every recipient bypasses it); a list file's names
 * made to collide under a public hash spread over the index's slots anyway. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "collide_fixture.h"
#include "config_fixture.h"
#include "bypass.h"
#include "config.h"
#include "hook.h"

#define MINIMAL "listen: [\"127.0.0.1:2525\"]\nbackends: { servers: [\"smtp://127.0.0.1:2526\"] }\n"

static char nofilter_path[64];

/* Writes a new temporary file of text; its name into path (64 octets). */
static void write_list(char *path, const char *text)
{
	int fd;
	FILE *f;

	snprintf(path, 64, "/tmp/test_bypass.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The config of text, which must load (its errors printed otherwise). */
static struct mx_config *load_ok(const char *text)
{
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	int rc = config_fixture_load(text, &cfg, &errs);

	if (rc != 0)
		fprintf(stderr, "%s", errs ? errs : "");
	free(errs);
	assert_int_equal(rc, 0);
	return cfg;
}

/* The config every decision row runs under: a hosting customer's domains with nothing
 * filtered, abuse@ without the rules engine, one address without greylisting, a file. */
static int setup(void **state)
{
	static char text[2048];
	struct mx_config *cfg;

	write_list(nofilter_path, "# customers who asked for no spam filtering\n\n  filed.example  \n"
	    "trap@list.example # one address\nspamsamples\n");
	snprintf(text, sizeof(text), MINIMAL
	    "bypass:\n"
	    "  - { recipients: [nofilter.example, \"*.hosted.example\", \"@at.example\"], checks: [rules, spamd, clamd, greylist] }\n"
	    "  - { recipients: [abuse, \"Postmaster\"], checks: [rules] }\n"
	    "  - { recipients: [\"sales@Shop.Example.\"], checks: [greylist] }\n"
	    "  - { recipients: [\"file:%s\"], checks: [rules, spamd] }\n", nofilter_path);
	cfg = load_ok(text);
	assert_int_equal(cfg->bypass.n, 4);
	*state = cfg;
	return 0;
}

static int teardown(void **state)
{
	config_free(*state);
	unlink(nofilter_path);
	return 0;
}

/* The checks the rows look at, a bit each. */
enum { RULES, GREYLIST, CLAMD, SPAMD, RSPAMD, MILTER, NCHECKS };
static const char *const check_names[NCHECKS] = { "rules", "greylist", "clamd", "spamd", "rspamd", "milter" };
#define R(x) (1u << (x))

/* The checks (bits) a message from sender to r[0..n) skips. */
static unsigned message_mask(const struct mx_config *cfg, const char *sender, const struct rcpt *r, size_t n)
{
	unsigned got = 0;

	for (int k = 0; k < NCHECKS; k++)
		if (bypass_message_covered(cfg->bypass.v, cfg->bypass.n, sender, r, n, check_names[k]))
			got |= 1u << k;
	return got;
}

struct cover_row {
	const char *label;
	const char *addr;
	unsigned want;       /* the checks it is covered for */
};

static const struct cover_row cover_rows[] = {
	{ "a listed domain", "u@nofilter.example", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "domain: any case, a trailing root dot", "U@NoFilter.Example.", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "not a subdomain of a plain name", "u@sub.nofilter.example", 0 },
	{ "a wildcard: a subdomain", "u@a.hosted.example", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "a wildcard: any depth", "u@a.b.hosted.example", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "a wildcard: not the name itself", "u@hosted.example", 0 },
	{ "@domain is a domain", "x@at.example", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "a local part: every domain", "abuse@customer.example", R(RULES) },
	{ "a local part: any case", "ABUSE@customer.example", R(RULES) },
	{ "a local part: <Postmaster> alone", "postmaster", R(RULES) },
	{ "a local part is the whole local part", "abuse-x@customer.example", 0 },
	{ "an address: domain as accept_domains compares", "SALES@shop.example", R(GREYLIST) },
	{ "an address: other domain", "sales@other.example", 0 },
	{ "two entries add up", "abuse@nofilter.example", R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "file: a domain", "u@filed.example", R(RULES) | R(SPAMD) },
	{ "file: an address after which a comment", "trap@list.example", R(RULES) | R(SPAMD) },
	{ "file: a local part", "spamsamples@x.example", R(RULES) | R(SPAMD) },
	{ "file: a comment line is nothing", "customers@x.example", 0 },
	{ "unlisted", "user@example.org", 0 },
};

static void test_cover(void **state)
{
	const struct mx_config *cfg = *state;

	for (size_t i = 0; i < sizeof(cover_rows) / sizeof(cover_rows[0]); i++) {
		unsigned got = 0;

		for (int k = 0; k < NCHECKS; k++)
			if (bypass_rcpt_covered(cfg->bypass.v, cfg->bypass.n, "someone@example.org", cover_rows[i].addr,
			    check_names[k]))
				got |= 1u << k;
		if (got != cover_rows[i].want)
			fail_msg("%s (%s): covered for %#x, want %#x", cover_rows[i].label,
			    cover_rows[i].addr, got, cover_rows[i].want);
	}
}

struct message_row {
	const char *label;
	const char *rcpts[4];   /* NULL-terminated */
	unsigned want;
};

static const struct message_row message_rows[] = {
	{ "no recipient: nothing skipped", { NULL }, 0 },
	{ "one bypassed recipient", { "u@nofilter.example" }, R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "two bypassed domains", { "u@nofilter.example", "v@x.hosted.example" },
	  R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "mixed: one filtered recipient checks all", { "u@nofilter.example", "user@example.org" }, 0 },
	{ "mixed: the filtered one first", { "user@example.org", "u@nofilter.example" }, 0 },
	{ "the checks all of them skip: the intersection", { "u@nofilter.example", "abuse@example.org" }, R(RULES) },
	{ "abuse@ and a file's domain: rules only", { "abuse@example.org", "u@filed.example" }, R(RULES) },
	{ "file and nofilter: rules and spamd", { "u@filed.example", "u@nofilter.example", "spamsamples@y.example" },
	  R(RULES) | R(SPAMD) },
	{ "a recipient covered by two entries counts for both", { "abuse@nofilter.example", "u@nofilter.example" },
	  R(RULES) | R(SPAMD) | R(CLAMD) | R(GREYLIST) },
	{ "greylist only: no rules skip", { "sales@shop.example", "abuse@shop.example" }, 0 },
};

static void test_message(void **state)
{
	const struct mx_config *cfg = *state;

	for (size_t i = 0; i < sizeof(message_rows) / sizeof(message_rows[0]); i++) {
		struct rcpt r[4];
		size_t n = 0;

		memset(r, 0, sizeof(r));
		while (n < 4 && message_rows[i].rcpts[n]) {
			r[n].addr = (char *)message_rows[i].rcpts[n];
			n++;
		}
		unsigned got = message_mask(cfg, "someone@example.org", r, n);
		if (got != message_rows[i].want)
			fail_msg("%s: skips %#x, want %#x", message_rows[i].label, got, message_rows[i].want);
	}
}

struct bad_row {
	const char *label;
	const char *yaml;      /* the bypass: value */
	const char *want;      /* in the error output */
};

static const struct bad_row bad_rows[] = {
	{ "dnsbl judges the client", "[{ recipients: [a.example], checks: [dnsbl] }]", "exempt_recipients" },
	{ "rdns judges the client", "[{ recipients: [a.example], checks: [rules, rdns] }]", "bypass[0].checks[1]" },
	{ "an unknown check", "[{ recipients: [a.example], checks: [rulez] }]", "bypass[0].checks[0]: \"rulez\": no check nor plugins: entry" },
	{ "a name no plugins: entry has", "[{ recipients: [a.example], checks: [milter] }, { recipients: [b.example], checks: [rules, mine] }]",
	  "t.yaml:3:100: bypass[1].checks[1]: \"mine\"" },
	{ "dkim: sender authentication", "[{ recipients: [a.example], checks: [dkim] }]", "sender authentication is not bypassed" },
	{ "spf too", "[{ recipients: [a.example], checks: [spf] }]", "sender authentication" },
	{ "arc too", "[{ recipients: [a.example], checks: [arc] }]", "sender authentication" },
	{ "dmarc too", "[{ recipients: [a.example], checks: [dmarc] }]", "bypass[0].checks[0]: \"dmarc\": sender authentication" },
	{ "a bad wildcard", "[{ recipients: [\"*\"], checks: [rules] }]", "bypass[0].recipients[0]" },
	{ "a wildcard not at a label", "[{ recipients: [\"*x.example\"], checks: [rules] }]", "bypass[0].recipients[0]" },
	{ "an address without a domain", "[{ recipients: [\"a@\"], checks: [rules] }]", "not an address" },
	{ "angle brackets", "[{ recipients: [\"<a@b.example>\"], checks: [rules] }]", "recipients[0]" },
	{ "a missing file", "[{ recipients: [\"file:/nonexistent/mxgate-bypass\"], checks: [rules] }]", "cannot read" },
	{ "no checks", "[{ recipients: [a.example] }]", "checks" },
	{ "no recipients", "[{ checks: [rules] }]", "recipients" },
	{ "no recipients and no senders", "[{ recipients: [], senders: [], checks: [rules] }]",
	  "needs recipients, senders or both" },
	{ "a bad sender item", "[{ senders: [\"<a@b.example>\"], checks: [rules] }]", "bypass[0].senders[0]" },
	{ "a sender without a domain", "[{ senders: [\"a@\"], checks: [rules] }]", "not an address" },
	{ "a missing senders file", "[{ senders: [\"file:/nonexistent/mxgate-senders\"], checks: [rules] }]",
	  "cannot read" },
	/* a device that never ends: refused, not read (fuzz_config grew one line of /dev/full's
	 * zeros past 2 GiB; cfg_read_list_file reads as cidr_file_read does) */
	{ "an endless device", "[{ recipients: [\"file:/dev/zero\"], checks: [rules] }]",
	  "cannot read /dev/zero: not a regular file" },
	{ "a directory", "[{ recipients: [\"file:/\"], checks: [rules] }]", "cannot read /: not a regular file" },
};

static void test_config_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		char text[1024];
		struct mx_config *cfg = NULL;
		char *errs = NULL;

		snprintf(text, sizeof(text), MINIMAL "bypass: %s\n", bad_rows[i].yaml);
		int rc = config_fixture_load(text, &cfg, &errs);
		if (rc == 0 || errs == NULL || strstr(errs, bad_rows[i].want) == NULL)
			fail_msg("%s: rc %d, errors \"%s\", want \"%s\"", bad_rows[i].label, rc,
			    errs ? errs : "", bad_rows[i].want);
		free(errs);
		config_free(cfg);
	}
}

/* senders: a per-domain sender whitelist (PMG's Whitelist rule with a To object,
 * MailScanner's spam.whitelist.rules), and a senders-only entry for every recipient. */
struct sender_row {
	const char *label;
	const char *sender;     /* NULL: before MAIL */
	const char *rcpts[3];   /* NULL-terminated */
	unsigned want;          /* the message's mask */
};

static const struct sender_row sender_rows[] = {
	{ "a listed sender domain to the domain", "ap@partner.example", { "u@corp.example" }, R(RULES) | R(SPAMD) },
	{ "sender domain: any case, a root dot", "AP@Partner.Example.", { "u@corp.example" }, R(RULES) | R(SPAMD) },
	{ "a listed sender to another domain", "ap@partner.example", { "u@other.example" }, 0 },
	{ "an unlisted sender to the domain", "ap@notpartner.example", { "u@corp.example" }, 0 },
	{ "a subdomain of the sender's is not it", "ap@x.partner.example", { "u@corp.example" }, 0 },
	{ "a listed address", "Boss@home.example", { "u@corp.example" }, R(RULES) | R(SPAMD) },
	{ "another address of its domain", "clerk@home.example", { "u@corp.example" }, 0 },
	{ "the null sender matches no item", "", { "u@corp.example" }, 0 },
	{ "before MAIL: nothing", NULL, { "u@corp.example" }, 0 },
	{ "mixed recipients: checked", "ap@partner.example", { "u@corp.example", "u@other.example" }, 0 },
	{ "senders alone: every recipient", "news@list.example", { "u@other.example", "v@corp.example" }, R(GREYLIST) },
	{ "senders alone: another sender", "x@example.org", { "u@other.example" }, 0 },
};

static void test_senders(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	const char *text = MINIMAL "bypass:\n"
	    "  - { recipients: [corp.example], senders: [\"@partner.example\", \"boss@home.example\"], "
	    "checks: [rules, spamd] }\n"
	    "  - { senders: [list.example], checks: [greylist] }\n";

	int rc = config_fixture_load(text, &cfg, &errs);
	if (rc != 0)
		fprintf(stderr, "%s", errs ? errs : "");
	free(errs);
	assert_int_equal(rc, 0);
	for (size_t i = 0; i < sizeof(sender_rows) / sizeof(sender_rows[0]); i++) {
		const struct sender_row *row = &sender_rows[i];
		struct rcpt r[3];
		size_t n = 0;

		memset(r, 0, sizeof(r));
		while (n < 3 && row->rcpts[n]) {
			r[n].addr = (char *)row->rcpts[n];
			n++;
		}
		unsigned got = message_mask(cfg, row->sender, r, n);
		if (got != row->want)
			fail_msg("%s: skips %#x, want %#x", row->label, got, row->want);
		/* at RCPT, the first recipient alone */
		unsigned one = 0;
		for (int k = 0; k < NCHECKS; k++)
			if (bypass_rcpt_covered(cfg->bypass.v, cfg->bypass.n, row->sender, row->rcpts[0], check_names[k]))
				one |= 1u << k;
		unsigned want1 = message_mask(cfg, row->sender, r, 1);
		if (one != want1)
			fail_msg("%s: RCPT covers %#x, the message of it alone %#x", row->label, one, want1);
	}
	config_free(cfg);
}

/* deny_senders: a recipient's own deny list, judged per recipient; <> and "before MAIL"
 * match no senders list; an entry without recipients is every recipient's. */
static void test_deny(void **state)
{
	(void)state;
	struct mx_config *cfg = NULL;
	char *errs = NULL;
	const char *text = MINIMAL "deny_senders:\n"
	    "  - { recipients: [corp.example, \"*.corp.example\"], senders: [rival.example, \"ex@old.example\"] }\n"
	    "  - { senders: [\"*.spam.example\"] }\n";

	int rc = config_fixture_load(text, &cfg, &errs);
	if (rc != 0)
		fprintf(stderr, "%s", errs ? errs : "");
	free(errs);
	assert_int_equal(rc, 0);
	const struct bypass_entry *v = cfg->deny_senders.v;
	size_t n = cfg->deny_senders.n;
	assert_true(bypass_denies(v, n, "boss@rival.example", "u@corp.example"));
	assert_true(bypass_denies(v, n, "Boss@Rival.Example.", "U@Sub.Corp.Example"));
	assert_true(bypass_denies(v, n, "ex@old.example", "u@corp.example"));
	assert_false(bypass_denies(v, n, "other@old.example", "u@corp.example"));
	assert_false(bypass_denies(v, n, "boss@rival.example", "u@other.example"));
	assert_false(bypass_denies(v, n, "", "u@corp.example"));
	assert_false(bypass_denies(v, n, NULL, "u@corp.example"));
	assert_true(bypass_denies(v, n, "a@x.spam.example", "u@other.example"));
	assert_false(bypass_denies(v, n, "a@spam.example", "u@other.example"));
	config_free(cfg);
	cfg = NULL;
	errs = NULL;
	assert_int_not_equal(config_fixture_load(MINIMAL "deny_senders:\n  - { recipients: [corp.example] }\n",
	    &cfg, &errs), 0);
	assert_non_null(errs);
	assert_non_null(strstr(errs, "deny_senders[0].senders: missing required key"));
	free(errs);
	config_free(cfg);
}

/* bypass_first without the index (the scan every answer is held to): v[0]'s index moved
 * aside for the call. */
static long first_scan(struct bypass_entry *v, size_t n, const char *sender, const char *addr, const char *check)
{
	struct bypass_index *x = v[0].index;
	long got;

	v[0].index = NULL;
	got = bypass_first(v, n, sender, addr, check);
	v[0].index = x;
	return got;
}

struct first_row {
	const char *label;
	const char *sender;
	const char *addr;
	const char *check;     /* NULL: any entry (deny_senders' question) */
	long want;             /* the lowest entry that applies, -1 none */
};

static const struct first_row first_rows[] = {
	{ "the first entry wins: its sender listed", "friend@friend.example", "u@late.example", "rules", 0 },
	{ "the first entry wins: the next that applies", "other@x.example", "u@late.example", "rules", 3 },
	{ "a file's domain, another check", "other@x.example", "u@late.example", "greylist", 3 },
	{ "no entry names the check", "other@x.example", "u@late.example", "spamd", -1 },
	{ "any check: the lowest entry", "other@x.example", "u@late.example", NULL, 3 },
	{ "the null sender: no senders list", "", "U@LATE.EXAMPLE.", "rules", 3 },
	{ "before MAIL: no senders list", NULL, "u@late.example", "rules", 3 },
	{ "a wildcard written in capitals with a dot", "s@x.example", "u@a.hosted.example", "rules", 1 },
	{ "a name the wildcard covers, listed too", "s@x.example", "u@a.hosted.example", "spamd", 2 },
	{ "a wildcard at depth, any case", "s@x.example", "u@b.c.Hosted.Example", "rules", 1 },
	{ "a wildcard is not its own name", "s@x.example", "u@hosted.example", "rules", -1 },
	{ "a local part below a wildcard: the wildcard first", "s@x.example", "Abuse@a.hosted.example", "rules", 1 },
	{ "a local part: the entry that names it", "s@x.example", "abuse@z.example", "rules", 5 },
	{ "a local part: the lower entry", "s@x.example", "ABUSE@z.example", "spamd", 2 },
	{ "a local part alone (<Abuse>)", "s@x.example", "ABUSE", "rules", 5 },
	{ "a file's wildcard", "s@x.example", "u@x.deep.example", "greylist", 3 },
	{ "every recipient, for some senders", "a@b.news.example", "u@deep.example", "greylist", 4 },
	{ "every recipient: not before a lower one", "a@b.news.example", "u@x.deep.example", "greylist", 3 },
	{ "every recipient: not for other senders", "s@x.example", "u@deep.example", "greylist", -1 },
	{ "a file's address, as accept_domains compares", "s@x.example", "TRAP@list.example.", "rules", 3 },
	{ "a file's address: not another domain", "s@x.example", "trap@other.example", "rules", -1 },
	{ "a file's local part", "s@x.example", "Samples@q.example", "rules", 3 },
	{ "a file's local part alone", "s@x.example", "samples", "rules", 3 },
	{ "an address at a literal", "s@x.example", "x@[192.0.2.1]", "rules", 5 },
	{ "an address at a literal: not another local part", "s@x.example", "y@[192.0.2.1]", "rules", -1 },
	{ "a literal", "s@x.example", "y@[192.0.2.2]", "rules", 5 },
	{ "a listed name inside another", "s@x.example", "u@late.example.x", "rules", -1 },
	{ "an empty domain", "s@x.example", "u@", "rules", -1 },
	{ "an empty local part", "s@x.example", "@late.example", "rules", 3 },
	{ "the domain after the last @", "s@x.example", "\"a@b\"@late.example", "rules", 3 },
	{ "a domain too long to normalise", "s@x.example",
	  "u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	  "hosted.example", "rules", -1 },
};

/* The index (bypass_index_build, at load): each row's lowest entry, with the index and by
 * the scan alike; order, wildcards, case, trailing dots, file: lists, senders. */
static void test_first(void **state)
{
	(void)state;
	static char text[2048];
	char path[64];
	struct mx_config *cfg;

	write_list(path, "late.example\n*.deep.example\nTrap@List.Example.\nsamples\n");
	snprintf(text, sizeof(text), MINIMAL
	    "bypass:\n"
	    "  - { recipients: [late.example], senders: [friend.example], checks: [rules] }\n"
	    "  - { recipients: [\"*.Hosted.Example.\"], checks: [rules] }\n"
	    "  - { recipients: [a.hosted.example, abuse], checks: [spamd] }\n"
	    "  - { recipients: [\"file:%s\"], checks: [rules, greylist] }\n"
	    "  - { senders: [\"*.news.example\"], checks: [greylist] }\n"
	    "  - { recipients: [Late.Example., ABUSE, \"x@[192.0.2.1]\", \"[192.0.2.2]\"], checks: [rules] }\n"
	    "  - { recipients: [late.example], checks: [rules] }\n", path);
	cfg = load_ok(text);
	unlink(path);
	struct bypass_entry *v = cfg->bypass.v;
	size_t n = cfg->bypass.n;
	assert_int_equal(n, 7);
	assert_non_null(v[0].index);
	for (size_t i = 0; i < sizeof(first_rows) / sizeof(first_rows[0]); i++) {
		const struct first_row *r = &first_rows[i];
		long got = bypass_first(v, n, r->sender, r->addr, r->check), scan = first_scan(v, n, r->sender, r->addr, r->check);

		if (got != r->want || scan != r->want)
			fail_msg("%s (%s to %s, %s): entry %ld, by the scan %ld, want %ld", r->label,
			    r->sender ? r->sender : "(null)", r->addr, r->check ? r->check : "any", got, scan, r->want);
	}
	assert_int_equal(bypass_first(v, n, "s@x.example", NULL, "rules"), -1);
	assert_true(bypass_names(v, n, "greylist"));
	assert_false(bypass_names(v, n, "clamd"));
	assert_true(bypass_names(&v[2], 1, "spamd"));
	assert_false(bypass_names(&v[3], 1, "spamd"));
	config_free(cfg);
}

/* Thousands of customers' entries (docs/operations.md "Hosting many domains"), names
 * repeated across entries with other checks: the index and the scan agree on every
 * recipient, check and sender; deny_senders too. */
static void test_first_many(void **state)
{
	(void)state;
	enum { N = 3000, NAMES = 700, WILD = 7 };
	size_t cap = 64 + (size_t)N * 200, len;
	char *text = malloc(cap);
	struct mx_config *cfg;
	static const char *const checks[] = { "rules", "spamd", "greylist", NULL };
	static const char *const senders[] = { "a@p1.example", "a@x.p2.example", "", NULL };

	assert_non_null(text);
	len = (size_t)snprintf(text, cap, MINIMAL "bypass:\n");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(text + len, cap - len, "  - { recipients: [c%d.example, \"*.w%d.example\", u%d]%s, checks: [%s] }\n",
		    i % NAMES, i % WILD, i % 50, i % 11 == 0 ? ", senders: [p1.example]" : "", checks[i % 3]);
	len += (size_t)snprintf(text + len, cap - len, "deny_senders:\n");
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(text + len, cap - len, "  - { recipients: [\"c%d.example\"], senders: [\"*.p%d.example\"] }\n",
		    i % NAMES, i % 3);
	cfg = load_ok(text);
	free(text);
	struct bypass_entry *v = cfg->bypass.v, *d = cfg->deny_senders.v;
	assert_int_equal(cfg->bypass.n, N);
	assert_non_null(v[0].index);
	assert_non_null(d[0].index);
	for (int k = 0; k < NAMES + 20; k += 3) {
		char addr[4][64];

		snprintf(addr[0], sizeof(addr[0]), "x@C%d.example.", k);
		snprintf(addr[1], sizeof(addr[1]), "x@s.w%d.example", k % (WILD + 2));
		snprintf(addr[2], sizeof(addr[2]), "U%d@c%d.example", k % 60, k);
		snprintf(addr[3], sizeof(addr[3]), "u%d", k % 60);
		for (int a = 0; a < 4; a++)
			for (int s = 0; senders[s]; s++) {
				for (int c = 0; checks[c]; c++)
					assert_int_equal(bypass_first(v, N, senders[s], addr[a], checks[c]),
					    first_scan(v, N, senders[s], addr[a], checks[c]));
				assert_int_equal(bypass_first(d, N, senders[s], addr[a], NULL),
				    first_scan(d, N, senders[s], addr[a], NULL));
			}
	}
	/* spot values: the lowest entry, not any */
	/* c5.example: entries 5 (greylist), 705 (rules), 1405 (spamd), ... */
	assert_int_equal(bypass_first(v, N, "a@q.example", "x@c5.example", "rules"), 705);
	assert_int_equal(bypass_first(v, N, "a@q.example", "x@c5.example", "greylist"), 5);
	config_free(cfg);
}

/* 1,000 domains in a list file (one others feed) that all had one home slot of the index's
 * 2,048 under its old public hash (FNV-1a of the name): every recipient domain looked up
 * there walked them all. Keyed, the longest probe stays short; the answers are the same. */
static void test_index_forged(void **state)
{
	enum { N = 1000 };
	static char names[N][COLLIDE_NAME_MAX];
	char path[64], text[256], addr[COLLIDE_NAME_MAX + 8];
	size_t cap = (size_t)N * COLLIDE_NAME_MAX, len = 0;
	char *list = malloc(cap);
	struct mx_config *cfg;

	(void)state;
	assert_non_null(list);
	assert_int_equal(collide_find(names, N, "n%u.flood.example", fnv1a64_str, 2047), N);
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(list + len, cap - len, "%s\n", names[i]);
	write_list(path, list);
	free(list);
	snprintf(text, sizeof(text), MINIMAL "bypass:\n  - { recipients: [\"file:%s\"], checks: [rules] }\n", path);
	cfg = load_ok(text);
	unlink(path);
	struct bypass_entry *v = cfg->bypass.v;
	assert_non_null(v[0].index);
	assert_in_range(bypass_index_longest_probe(v[0].index), 1, 100);   /* linear probing: 40 in 1 of 3,000 */
	snprintf(addr, sizeof(addr), "x@%s", names[N - 1]);
	assert_int_equal(bypass_first(v, 1, "", addr, "rules"), 0);
	assert_int_equal(bypass_first(v, 1, "", "x@absent.flood.example", "rules"), -1);
	config_free(cfg);
}

/* -t: a virus check bypassed is a warning, rules alone is none. */
static void test_warning(void **state)
{
	(void)state;
	static const char *const texts[2] = {
		MINIMAL "accept_domains: [a.example]\nbypass: [{ recipients: [a.example], checks: [rules] }]\n",
		MINIMAL "accept_domains: [a.example]\nbypass: [{ recipients: [a.example], checks: [rules, clamd] }]\n",
	};
	for (int i = 0; i < 2; i++) {
		struct mx_config *cfg = NULL;
		char *errs = NULL, *buf = NULL;
		size_t len = 0;

		assert_int_equal(config_fixture_load(texts[i], &cfg, &errs), 0);
		free(errs);
		FILE *f = open_memstream(&buf, &len);
		int n = config_warnings(cfg, f);
		fclose(f);
		if (i == 0)
			assert_null(strstr(buf, "bypass"));
		else
			assert_non_null(strstr(buf, "bypass[0] skips clamd"));
		assert_true(i == 0 || n >= 1);
		free(buf);
		config_free(cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message, setup, teardown),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_senders),
		cmocka_unit_test(test_deny),
		cmocka_unit_test(test_first),
		cmocka_unit_test(test_first_many),
		cmocka_unit_test(test_index_forged),
		cmocka_unit_test(test_warning),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
