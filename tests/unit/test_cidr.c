/* test_cidr.c — CIDR list files (cidr.c): the text of a `file:PATH` item, parsed into a
 * cfg_cidrlist and matched by cfg_cidrlist_match; bad lines reported at LINE:COL; the file
 * reader's limits. Table-driven: each row has a label printed when it fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cidr.h"
#include "addr_fixture.h"

struct bad_seen { size_t n; size_t line[8], col[8]; char text[8][80]; };

static void bad_cb(void *arg, size_t line, size_t col, const char *reason, const char *text)
{
	struct bad_seen *b = arg;

	assert_non_null(reason);
	if (b->n < 8) {
		b->line[b->n] = line;
		b->col[b->n] = col;
		snprintf(b->text[b->n], sizeof(b->text[b->n]), "%s", text);
	}
	b->n++;
}

struct text_row {
	const char *label, *text;
	int bad;            /* lines reported */
	size_t n;           /* entries kept */
	size_t line, col;   /* the first bad line's position */
};
static const struct text_row text_rows[] = {
	{ "empty file", "", 0, 0, 0, 0 },
	{ "comments and blank lines only", "# none\n\n   \n\t# indented\n", 0, 0, 0, 0 },
	{ "one per line", "10.0.0.0/8\n192.0.2.1\n2001:db8::/32\n", 0, 3, 0, 0 },
	{ "no newline at the end", "10.0.0.0/8", 0, 1, 0, 0 },
	{ "CRLF line ends", "10.0.0.0/8\r\n192.0.2.1\r\n", 0, 2, 0, 0 },
	{ "blanks and a trailing comment", "  10.0.0.0/8\t# office  \n", 0, 1, 0, 0 },
	{ "a comment right after the prefix", "10.0.0.0/8#office\n", 0, 1, 0, 0 },
	{ "v4-mapped stored as IPv4", "::ffff:10.0.0.0/104\n", 0, 1, 0, 0 },
	{ "a bad prefix, its column", "10.0.0.0/8\n  10.0.0.0/33\n192.0.2.1\n", 1, 2, 2, 3 },
	{ "a hostname", "mail.example.org\n", 1, 0, 1, 1 },
	{ "a Postfix cidr: table's result", "10.0.0.0/8 OK\n", 1, 0, 1, 12 },
	{ "two on a line", "10.0.0.0/8 192.0.2.1\n", 1, 0, 1, 12 },
	{ "a comma list (Postfix mynetworks) is not split", "10.0.0.0/8, 192.0.2.1\n", 1, 0, 1, 1 },
	{ "a NUL byte", "10.0.0.0/8\n10.0\0.0.0/8\n", 1, 1, 2, 5 },
	{ "a very long token", "1111111111111111111111111111111111111111111111111111111111111111111\n", 1, 0, 1, 1 },
	{ "every bad line reported", "x\ny\n10.0.0.0/8\nz\n", 3, 1, 1, 1 },
	{ "a lone CR", "\r", 0, 0, 0, 0 },
	{ "bracketed IPv6 is not an address", "[::1]\n", 1, 0, 1, 1 },
};

static void test_text_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(text_rows) / sizeof(text_rows[0]); i++) {
		const struct text_row *r = &text_rows[i];
		size_t len = strlen(r->text);
		struct cfg_cidrlist l = { NULL, 0 };
		struct bad_seen b = { 0 };
		int rc;

		if (strcmp(r->label, "a NUL byte") == 0)
			len = 23;
		rc = cidr_text_parse(r->text, len, &l, bad_cb, &b);
		if (rc != r->bad || (size_t)rc != b.n || l.n != r->n ||
		    (r->bad && (b.line[0] != r->line || b.col[0] != r->col)))
			fail_msg("row \"%s\": rc %d, %zu bad, %zu kept, first at %zu:%zu", r->label, rc, b.n,
				 l.n, b.n ? b.line[0] : 0, b.n ? b.col[0] : 0);
		free(l.v);
	}
}

struct match_row { const char *label, *addr; bool hit; };
static const struct match_row match_rows[] = {
	{ "inside the /24", "198.18.50.9", true },
	{ "outside it", "198.18.51.9", false },
	{ "the single address", "192.0.2.1", true },
	{ "its neighbour", "192.0.2.2", false },
	{ "IPv6 inside the /48", "2001:db8:50:1::1", true },
	{ "IPv6 outside", "2001:db8:51::1", false },
	{ "a v4-mapped client matches the IPv4 entry", "::ffff:198.18.50.7", true },
	{ "a v4-mapped entry matches the IPv4 client", "10.1.2.3", true },
	{ "entries appended to an inline one", "203.0.113.5", true },
};

static void test_match_rows(void **state)
{
	static const char text[] = "# ours\n198.18.50.0/24\n192.0.2.1 # one host\n2001:db8:50::/48\n"
				   "::ffff:10.0.0.0/104\n";
	struct cfg_cidr inline_one;
	struct cfg_cidrlist l;

	(void)state;
	assert_int_equal(cfg_parse_cidr("203.0.113.0/24", &inline_one), 0);
	l.v = malloc(sizeof(inline_one));
	assert_non_null(l.v);
	l.v[0] = inline_one;
	l.n = 1;
	assert_int_equal(cidr_text_parse(text, sizeof(text) - 1, &l, NULL, NULL), 0);
	assert_int_equal(l.n, 5);
	for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
		struct sockaddr_storage ss = sockaddr_of(match_rows[i].addr);

		if (cfg_cidrlist_match(&l, (struct sockaddr *)&ss) != match_rows[i].hit)
			fail_msg("match row \"%s\"", match_rows[i].label);
	}
	free(l.v);
}

/* Many entries: the list grows past its first allocations and keeps every one. */
static void test_many(void **state)
{
	size_t cap = 70000 * 20, len = 0;
	char *text = malloc(cap);
	struct cfg_cidrlist l = { NULL, 0 };
	struct sockaddr_storage ss = sockaddr_of("10.1.17.4");

	(void)state;
	assert_non_null(text);
	for (unsigned i = 0; i < 65536; i++)
		len += (size_t)snprintf(text + len, cap - len, "10.%u.%u.0/24\n", i >> 8, i & 255);
	assert_int_equal(cidr_text_parse(text, len, &l, NULL, NULL), 0);
	assert_int_equal(l.n, 65536);
	assert_true(cfg_cidrlist_match(&l, (struct sockaddr *)&ss));
	free(l.v);
	free(text);
}

/* The sorted matcher (cfg_cidrlist_sort: a binary search per prefix length) answers as the
 * walk of every entry does: random IPv4 and IPv6 prefixes of every length, duplicates and
 * nested ones, asked for addresses inside, beside and far from them. */
static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void test_sorted_agrees(void **state)
{
	uint32_t seed = 7;
	struct cfg_cidrlist lin = { NULL, 0, false }, srt;
	size_t n = 3000;

	(void)state;
	lin.v = calloc(n, sizeof(*lin.v));
	assert_non_null(lin.v);
	for (size_t i = 0; i < n; i++) {
		char text[80];
		uint32_t r = lcg(&seed);

		if (r % 3) {
			/* few distinct first octets: many nested and neighbouring prefixes */
			snprintf(text, sizeof(text), "10.%u.%u.%u/%u", lcg(&seed) % 4, lcg(&seed) % 256,
				 lcg(&seed) % 256, lcg(&seed) % 33);
		} else {
			snprintf(text, sizeof(text), "2001:db8:%x:%x::%x/%u", lcg(&seed) % 4, lcg(&seed) % 65536,
				 lcg(&seed) % 65536, lcg(&seed) % 129);
		}
		assert_int_equal(cfg_parse_cidr(text, &lin.v[i]), 0);
	}
	lin.n = n;
	srt.v = malloc(n * sizeof(*srt.v));
	assert_non_null(srt.v);
	memcpy(srt.v, lin.v, n * sizeof(*srt.v));
	srt.n = n;
	cfg_cidrlist_sort(&srt);
	assert_true(srt.sorted);
	for (size_t k = 0; k < 40000; k++) {
		struct sockaddr_storage ss;
		char a[64];

		if (k % 2) {
			snprintf(a, sizeof(a), "10.%u.%u.%u", lcg(&seed) % 5, lcg(&seed) % 256, lcg(&seed) % 256);
		} else if (k % 4 == 0) {
			snprintf(a, sizeof(a), "2001:db8:%x:%x::%x", lcg(&seed) % 5, lcg(&seed) % 65536, lcg(&seed) % 65536);
		} else {
			snprintf(a, sizeof(a), "::ffff:10.%u.%u.%u", lcg(&seed) % 5, lcg(&seed) % 256, lcg(&seed) % 256);
		}
		ss = sockaddr_of(a);
		if (cfg_cidrlist_match(&lin, (struct sockaddr *)&ss) != cfg_cidrlist_match(&srt, (struct sockaddr *)&ss))
			fail_msg("sorted and walked lists disagree on %s", a);
	}
	free(lin.v);
	free(srt.v);
}

static void test_file_read(void **state)
{
	char path[] = "/tmp/test_cidr_XXXXXX";
	const char *err = NULL;
	size_t len = 0;
	char *text;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "10.0.0.0/8\n", 11), 11);
	close(fd);
	text = cidr_file_read(path, &len, &err);
	assert_non_null(text);
	assert_int_equal(len, 11);
	assert_string_equal(text, "10.0.0.0/8\n");
	free(text);
	unlink(path);
	assert_null(cidr_file_read(path, &len, &err));
	assert_non_null(strstr(err, "No such file"));
	assert_null(cidr_file_read("/tmp", &len, &err));
	assert_string_equal(err, "not a regular file");
}

/* An operator empties a list with file:/dev/null (its entry stays in the config); no other
 * device is read, and a FIFO is refused at once rather than waited on for a writer (the open
 * itself blocked there: the config load stalled; the alarm turns that into a failure). */
static void test_file_devices(void **state)
{
	char dir[] = "/tmp/test_cidr_fifo_XXXXXX", fifo[64];
	const char *err = NULL;
	size_t len = 99;
	char *text;

	(void)state;
	text = cidr_file_read("/dev/null", &len, &err);
	assert_non_null(text);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);
	struct cfg_cidrlist l = { 0 };
	assert_int_equal(cidr_text_parse("", 0, &l, NULL, NULL), 0);
	assert_int_equal(l.n, 0);

	err = NULL;
	assert_null(cidr_file_read("/dev/zero", &len, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "only /dev/null"));

	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/list", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(10);
	err = NULL;
	assert_null(cidr_file_read(fifo, &len, &err));
	alarm(0);
	assert_string_equal(err, "not a regular file");
	unlink(fifo);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_rows),
		cmocka_unit_test(test_match_rows),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_sorted_agrees),
		cmocka_unit_test(test_file_read),
		cmocka_unit_test(test_file_devices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
