/* test_bayes_learn.c — `mxgate learn`'s input side (rules/bayes_learn.c) into a memory
 * store: mbox files split where SpamAssassin's ArchiveIterator splits them (a From_ line
 * with a date, with or without a blank line before it; a body paragraph starting "From "
 * is not a separator), CRLF mbox files, a last message without a newline, empty files;
 * maildirs (only cur/ and new/: a Dovecot or Courier maildir's own files are not mail);
 * a FIFO among the paths is reported, never read (it would block the command); a store that
 * fails stops the run at its first error; an mbox learned where it lies, only a message
 * with quoted ">From " lines copied. */
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rules/bayes.h"
#include "rules/bayes_learn.h"

static struct bayes *open_memory(void)
{
	struct bayes_config c = { .enabled = true, .store = "memory", .min_spam = 1,
		.min_ham = 1 };
	char err[128];
	struct bayes *b = bayes_open(&c, err, sizeof(err));

	assert_non_null(b);
	return b;
}

/* Learns buf as spam into a fresh store; the counts. */
static struct bayes_learn_counts learn_buf(const char *buf)
{
	struct bayes *b = open_memory();
	struct bayes_learn_counts n = { 0 };

	bayes_learn_buffer(b, BAYES_SPAM, buf, strlen(buf), 0, "test", NULL, &n);
	bayes_free(b);
	return n;
}

#define FROM1 "From sender@example.org  Mon Jan  1 00:00:01 2024\n"
#define FROM2 "From other@example.org Tue Jan  2 10:00:00 2024\n"
#define MSG(id, body) "From: a@example.org\nSubject: s\nMessage-ID: <" id "@t>\n\n" body

static void test_mbox_split(void **state)
{
	struct bayes_learn_counts n;

	/* the plain case: blank line, From_ line */
	n = learn_buf(FROM1 MSG("a", "one\n\n") FROM2 MSG("b", "two\n"));
	assert_int_equal(n.learned, 2);
	/* a paragraph starting "From " (an mbox writer that did not quote it) is body text */
	n = learn_buf(FROM1 MSG("c", "Hello\n\nFrom the desk of Dr. Smith\nmoney\n\n")
	    FROM2 MSG("d", "two\n"));
	assert_int_equal(n.learned, 2);
	assert_int_equal(n.errors, 0);
	/* no blank line before the next From_ line: SpamAssassin splits there too */
	n = learn_buf(FROM1 MSG("e", "five\n") FROM2 MSG("f", "six\n"));
	assert_int_equal(n.learned, 2);
	/* the last message without a final newline */
	n = learn_buf(FROM1 MSG("g", "seven\n\n") FROM2 MSG("h", "eight, no newline"));
	assert_int_equal(n.learned, 2);
	/* CRLF line ends */
	n = learn_buf("From x@example.org  Mon Jan  1 00:00:01 2024\r\nFrom: a@example.org\r\n"
	    "Message-ID: <i@t>\r\n\r\nnine\r\n\r\nFrom y@example.org  Mon Jan  1 00:00:02 2024\r\n"
	    "From: a@example.org\r\nMessage-ID: <j@t>\r\n\r\nten");
	assert_int_equal(n.learned, 2);
	/* one message with a From_ line, and one without */
	n = learn_buf(FROM1 MSG("k", "eleven\n"));
	assert_int_equal(n.learned, 1);
	n = learn_buf(MSG("l", "twelve\nFrom me to you\n"));
	assert_int_equal(n.learned, 1);
	/* nothing */
	n = learn_buf("");
	assert_int_equal(n.learned + n.already + n.errors, 0);
	n = learn_buf("\r\n\r\n");
	assert_int_equal(n.learned + n.already + n.errors, 0);
}

static char dir[64];

static void put(const char *rel, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void sub(const char *rel)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	assert_int_equal(mkdir(p, 0700), 0);
}

/* Runs `learn spam PATH` (PATH under dir) on a memory store; its exit code, its output. */
static int learn_main(const char *rel, char *out, size_t outlen, char *err, size_t errlen)
{
	struct bayes_config c = { .enabled = true, .store = "memory", .min_spam = 1,
		.min_ham = 1 };
	char p[256];
	char *argv[] = { "learn", "spam", p, NULL };
	FILE *o = fmemopen(out, outlen, "w"), *e = fmemopen(err, errlen, "w");
	int rc;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	memset(out, 0, outlen);
	memset(err, 0, errlen);
	rc = bayes_learn_main(&c, NULL, 3, argv, o, e);
	fclose(o);
	fclose(e);
	return rc;
}

static void test_maildir_and_fifo(void **state)
{
	char out[1024], err[1024];
	int rc;

	strcpy(dir, "/tmp/test_bayes_learn.XXXXXX");
	assert_non_null(mkdtemp(dir));
	/* a Dovecot maildir: two messages, the server's own files beside cur/ new/ tmp/ */
	sub("md");
	sub("md/cur");
	sub("md/new");
	sub("md/tmp");
	put("md/cur/1.host:2,S", MSG("m1", "first\n"));
	put("md/new/2.host", MSG("m2", "second\n"));
	put("md/tmp/3.host", MSG("m3", "being delivered\n"));
	put("md/dovecot-uidlist", "3 V1234 N3 G0\n1 :1.host\n");
	put("md/dovecot.index.log", "binary index\n");
	put("md/subscriptions", "Sent\nTrash\n");
	put("md/maildirfolder", "");
	rc = learn_main("md", out, sizeof(out), err, sizeof(err));
	assert_int_equal(rc, 0);
	if (strstr(out, "learned 2 spam (0 already known") == NULL)
		fail_msg("a maildir: %s / %s", out, err);

	/* a FIFO: reported, not opened (opening it would wait for a writer) */
	sub("mixed");
	put("mixed/a.eml", MSG("x1", "one\n"));
	put("mixed/b.mbox", FROM1 MSG("x2", "two\n\n") FROM2 MSG("x3", "three\n"));
	{
		char p[256];

		snprintf(p, sizeof(p), "%s/mixed/pipe", dir);
		assert_int_equal(mkfifo(p, 0600), 0);
	}
	alarm(20);              /* a blocked open fails the test instead of hanging it */
	rc = learn_main("mixed", out, sizeof(out), err, sizeof(err));
	alarm(0);
	if (strstr(out, "learned 3 spam (0 already known") == NULL || strstr(err, "pipe") == NULL)
		fail_msg("a directory with a FIFO: %s / %s", out, err);
	assert_int_equal(rc, 1);
	alarm(20);
	rc = learn_main("mixed/pipe", out, sizeof(out), err, sizeof(err));
	alarm(0);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(err, "not a regular file"));

	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* A store that stops answering: a "Redis" that is a listening socket never accepted from
 * (the kernel completes the connects, nothing ever replies), timeout 100 ms. An mbox of 5
 * messages: one learn is tried, it fails, and the run stops there (store_failed); the
 * connections made are counted at the socket: one (the first learn's, dropped after its
 * error; the open connects nothing). Before, each message was tried after the other (5 errors, a
 * reconnect for each after the first: 5 connections), each waiting the timeout. */
static void test_store_error_stops(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), conns = 0, fd;
	char store[64], sum[256];
	struct bayes_config c = { .enabled = true, .store = store, .min_spam = 1, .min_ham = 1,
		.timeout = 100 };
	struct bayes_learn_counts n = { 0 };
	struct bayes *b;
	const char *mbox = FROM1 MSG("s1", "one\n\n") FROM2 MSG("s2", "two\n\n") FROM1
	    MSG("s3", "three\n\n") FROM2 MSG("s4", "four\n\n") FROM1 MSG("s5", "five\n");

	(void)state;
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(store, sizeof(store), "redis://127.0.0.1:%d", ntohs(sin.sin_port));
	{
		char err[128];

		b = bayes_open(&c, err, sizeof(err));
		if (b == NULL)
			fail_msg("open %s: %s", store, err);
	}
	bayes_learn_buffer(b, BAYES_SPAM, mbox, strlen(mbox), 0, "test", NULL, &n);
	bayes_learn_summary(sum, sizeof(sum), BAYES_SPAM, &n);
	bayes_free(b);
	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		conns++;
		close(fd);
	}
	close(lfd);
	if (n.errors != 1 || !n.store_failed || n.learned != 0 || conns != 1)
		fail_msg("a silent store: %lu errors, store_failed %d, %d connections: %s", n.errors,
		    n.store_failed, conns, sum);
	assert_non_null(strstr(sum, "1 errors; stopped at a store error, the rest not tried"));
	/* a run already stopped tries nothing more (the next file of `mxgate learn`) */
	bayes_learn_buffer(NULL, BAYES_SPAM, mbox, strlen(mbox), 0, "test", NULL, &n);
	assert_int_equal(n.errors, 1);
}

#define TUNABLES "glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432"
#define NMBOX 2000          /* messages of about 2 kB: a 4 MB mbox */
#define QUOTED 7            /* the message with quoted lines */
#define BIG_BODY "Our quarterly newsletter with the schedule of the meetings and the notes " \
	"of the last one, the agenda and the minutes.\n"

/* Message i of the mbox: as the mbox holds it (quoted), or as learned (unquoted). */
static size_t mbox_message(char *out, size_t cap, int i, bool quoted)
{
	size_t n = (size_t)snprintf(out, cap, "From: a@example.org\nSubject: news %d\n", i);

	/* the quoted one without a Message-ID: its identity is its body's digest, which
	 * tells whether it was learned unquoted (tokens do not: '>' is no token's) */
	if (i != QUOTED)
		n += (size_t)snprintf(out + n, cap - n, "Message-ID: <m%d@t>\n", i);
	n += (size_t)snprintf(out + n, cap - n, "\n");

	for (int k = 0; k < 16; k++)
		n += (size_t)snprintf(out + n, cap - n, "%s", BIG_BODY);
	if (i == QUOTED)
		n += (size_t)snprintf(out + n, cap - n, "%sFrom the desk of Dr. Smith\n"
		    "%sFrom here on, quoted twice\nword%d\n", quoted ? ">" : "", quoted ? ">>" : ">", i);
	n += (size_t)snprintf(out + n, cap - n, "\n");
	return n;
}

static size_t heap_size(void)
{
	return mallinfo2().arena;
}

/* An mbox of NMBOX messages, one of them with mboxrd-quoted lines: learned into a store, it
 * leaves what learning each message (unquoted) by itself leaves: every message, probed
 * against both stores, reads the same tokens, the same known ones, the same probability;
 * the same totals; each message, unquoted, is known to the mbox's store (the quoted one by
 * its body). The heap (glibc told to keep what it frees and to take everything from it, as
 * in test_rules_view) grows by the store's growth (about 0.6 MB) and one message's copy:
 * it grew by 1.19x the mbox when the whole mbox was copied to be unquoted, now 0.19x. */
static void test_mbox_in_place(void **state)
{
	size_t cap = NMBOX * 4096, len = 0, before, grew;
	char *mbox = malloc(cap), one[4096];
	struct bayes *a = open_memory(), *b = open_memory();
	struct bayes_learn_counts n = { 0 };
	enum bayes_learn_result res;
	const char *ham = MSG("h", "the minutes of the board meeting\n");

	(void)state;
	assert_non_null(mbox);
	for (int i = 0; i < NMBOX; i++) {
		len += (size_t)snprintf(mbox + len, cap - len, "From x@example.org  Mon Jan  1 "
		    "00:00:01 2024\n");
		len += mbox_message(mbox + len, cap - len, i, true);
	}
	assert_int_equal(bayes_learn(a, ham, strlen(ham), BAYES_HAM, &res), 0);
	assert_int_equal(bayes_learn(b, ham, strlen(ham), BAYES_HAM, &res), 0);
	before = heap_size();
	bayes_learn_buffer(a, BAYES_SPAM, mbox, len, 0, "test", NULL, &n);
	grew = heap_size() - before;
	assert_int_equal(n.learned, NMBOX);
	assert_int_equal(n.errors, 0);
	for (int i = 0; i < NMBOX; i++) {
		size_t ol = mbox_message(one, sizeof(one), i, false);

		assert_int_equal(bayes_learn(b, one, ol, BAYES_SPAM, &res), 0);
		assert_int_equal(res, BAYES_LEARNED);
	}
	print_message("mbox %zu octets, %d messages: learning it grew the heap by %zu octets "
	    "(%.2fx)\n", len, NMBOX, grew, (double)grew / (double)len);
	for (int i = 0; i < NMBOX; i++) {
		size_t ol = mbox_message(one, sizeof(one), i, false);
		struct bayes_result ra, rb;

		assert_int_equal(bayes_classify(a, one, ol, &ra), 0);
		assert_int_equal(bayes_classify(b, one, ol, &rb), 0);
		if (!ra.scanned || !rb.scanned || ra.ntokens != rb.ntokens || ra.nknown != rb.nknown ||
		    ra.nused != rb.nused || ra.prob != rb.prob)
			fail_msg("message %d: mbox store %u tokens, %u known, %u used, %.17g; one by "
			    "one %u, %u, %u, %.17g", i, ra.ntokens, ra.nknown, ra.nused, ra.prob,
			    rb.ntokens, rb.nknown, rb.nused, rb.prob);
	}
	for (int i = 0; i < NMBOX; i++) {
		size_t ol = mbox_message(one, sizeof(one), i, false);

		assert_int_equal(bayes_learn(a, one, ol, BAYES_SPAM, &res), 0);
		if (res != BAYES_ALREADY)
			fail_msg("message %d, unquoted, is new to the mbox's store", i);
	}
	{
		struct bayes_totals ta, tb;

		assert_int_equal(bayes_totals(a, &ta), 0);
		assert_int_equal(bayes_totals(b, &tb), 0);
		assert_memory_equal(&ta, &tb, sizeof(ta));
	}
	if (before == 0)
		print_message("malloc does not say (sanitizers): not checked\n");
	assert_true(grew <= len / 4);
	bayes_free(a);
	bayes_free(b);
	free(mbox);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mbox_in_place),
		cmocka_unit_test(test_mbox_split),
		cmocka_unit_test(test_maildir_and_fifo),
		cmocka_unit_test(test_store_error_stops),
	};

	const char *t = getenv("GLIBC_TUNABLES");

	(void)argc;
	if (t == NULL || strcmp(t, TUNABLES) != 0) {
		/* malloc reads its tunables at start: run again with them */
		setenv("GLIBC_TUNABLES", TUNABLES, 1);
		execv("/proc/self/exe", argv);
		perror("execv /proc/self/exe");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
