/* test_maildir.c — maildir delivery into a temp dir through a real libuv loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/headers.h"
#include "proxy/maildir.h"
#include "proxy/msgbuf.h"

struct result {
	int calls;
	int status;
	char qid[256];
	char err[512];
};

static void done_cb(void *arg, int status, const char *qid, const char *err)
{
	struct result *r = arg;
	r->calls++;
	r->status = status;
	snprintf(r->qid, sizeof r->qid, "%s", qid ? qid : "(null)");
	snprintf(r->err, sizeof r->err, "%s", err ? err : "(null)");
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void rm_rf(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

static void deliver_and_check(const char *root, const char *prefix, size_t prefix_len,
    const char *body, size_t body_len, size_t off, const char *expect, size_t expect_len)
{
	uv_loop_t loop;
	struct result r = { 0 };
	struct msgbuf *mb = msgbuf_new(1 << 20, NULL);
	char path[1024];
	size_t len = 0;

	assert_non_null(mb);
	assert_int_equal(msgbuf_append(mb, body, body_len), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(maildir_deliver(&loop, root, prefix, prefix_len, mb, off, done_cb, &r), 0);
	assert_int_equal(r.calls, 0);   /* never synchronously */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 1);
	if (r.status != 0)
		fail_msg("delivery failed: %s", r.err);
	assert_string_equal(r.err, "");
	assert_true(strlen(r.qid) > 10);
	assert_non_null(strstr(r.qid, ".M"));
	assert_null(strchr(r.qid, '/'));
	snprintf(path, sizeof path, "%s/new/%s", root, r.qid);
	char *got = read_file(path, &len);
	assert_non_null(got);
	assert_int_equal(len, expect_len);
	assert_memory_equal(got, expect, expect_len);
	free(got);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof path, "%s/tmp", root);
	assert_int_equal(count_entries(path), 0);   /* nothing left behind in tmp/ */
	snprintf(path, sizeof path, "%s/cur", root);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(uv_loop_close(&loop), 0);
	msgbuf_free(mb);
}

static void test_deliver_rows(void **state)
{
	static const char body[] = "Subject: hi\r\n\r\nline 1\r\n.dot line\r\n";
	static const char prefix[] = "Received: from x by y; now\r\n";
	static const struct {
		const char *label;
		const char *prefix;
		size_t off;
	} rows[] = {
		{ "prefix + whole message", prefix, 0 },
		{ "no prefix", NULL, 0 },
		{ "prefix + message from an offset", prefix, 13 },
		{ "offset at the end", prefix, sizeof body - 1 },
	};
	char root[] = "/tmp/mx_test_maildir_XXXXXX";
	assert_non_null(mkdtemp(root));
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char sub[600], expect[512];
		size_t plen = rows[i].prefix ? strlen(rows[i].prefix) : 0;
		/* a root that does not exist yet, two levels deep */
		snprintf(sub, sizeof sub, "%s/row%zu/Maildir", root, i);
		memcpy(expect, rows[i].prefix ? rows[i].prefix : "", plen);
		memcpy(expect + plen, body + rows[i].off, sizeof body - 1 - rows[i].off);
		print_message("row: %s\n", rows[i].label);
		deliver_and_check(sub, rows[i].prefix, plen, body, sizeof body - 1, rows[i].off,
		    expect, plen + sizeof body - 1 - rows[i].off);
	}
	rm_rf(root);
}

static void test_many_unique(void **state)
{
	char root[] = "/tmp/mx_test_maildir_XXXXXX";
	uv_loop_t loop;
	struct result r[50];
	struct msgbuf *mb = msgbuf_new(1 << 20, NULL);
	char dir[600];

	memset(r, 0, sizeof r);
	assert_non_null(mkdtemp(root));
	assert_int_equal(msgbuf_append(mb, "x\r\n", 3), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	for (int i = 0; i < 50; i++)
		assert_int_equal(maildir_deliver(&loop, root, NULL, 0, mb, 0, done_cb, &r[i]), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].status, 0);
		for (int k = 0; k < i; k++)
			assert_string_not_equal(r[i].qid, r[k].qid);
	}
	snprintf(dir, sizeof dir, "%s/new", root);
	assert_int_equal(count_entries(dir), 50);
	assert_int_equal(uv_loop_close(&loop), 0);
	msgbuf_free(mb);
	rm_rf(root);
}

static void test_unwritable_root(void **state)
{
	/* Tests may run as root, which ignores permission bits: put the maildir below a
	 * regular file instead, which fails for everyone (ENOTDIR). */
	char root[] = "/tmp/mx_test_maildir_XXXXXX";
	char file[600], bad[700];
	uv_loop_t loop;
	struct result r = { 0 };
	struct msgbuf *mb = msgbuf_new(1 << 20, NULL);

	assert_non_null(mkdtemp(root));
	snprintf(file, sizeof file, "%s/plainfile", root);
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(bad, sizeof bad, "%s/Maildir", file);
	assert_int_equal(msgbuf_append(mb, "x\r\n", 3), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(maildir_deliver(&loop, bad, "p", 1, mb, 0, done_cb, &r), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, -1);
	assert_true(strlen(r.err) > 0);
	assert_string_equal(r.qid, "");

	char err[256] = "";
	assert_int_equal(maildir_check_writable(bad, err, sizeof err), -1);
	assert_true(strlen(err) > 0);
	snprintf(bad, sizeof bad, "%s/ok", root);
	assert_int_equal(maildir_check_writable(bad, err, sizeof err), 0);

	/* Refused up front: no callback. */
	assert_int_equal(maildir_deliver(&loop, "", NULL, 0, mb, 0, done_cb, &r), -1);
	assert_int_equal(maildir_deliver(&loop, root, NULL, 0, mb, 0, NULL, &r), -1);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(r.calls, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	msgbuf_free(mb);
	rm_rf(root);
}

static void test_make_name(void **state)
{
	char a[256], b[256], tiny[8];
	assert_int_equal(maildir_make_name(a, sizeof a), 0);
	assert_int_equal(maildir_make_name(b, sizeof b), 0);
	assert_string_not_equal(a, b);
	assert_non_null(strstr(a, ".M"));
	assert_non_null(strchr(a, 'P'));
	assert_non_null(strchr(a, 'Q'));
	assert_null(strchr(a, '/'));
	assert_null(strchr(a, ':'));
	assert_int_equal(maildir_make_name(tiny, sizeof tiny), -1);
}

/* The host part of unique names, labelled rows: escaped as the spec asks, and cut (with a
 * hash) when long, so that a name with its ",QID=" field always fits NAME_MAX. */
static void test_host_part(void **state)
{
	char slashes[65], colons[200], longname[256], other[256], out[MAILDIR_HOST_MAX + 1];
	memset(slashes, '/', 64);
	slashes[64] = '\0';
	memset(colons, ':', sizeof colons - 1);
	colons[sizeof colons - 1] = '\0';
	memset(longname, 'a', 255);
	longname[255] = '\0';
	memcpy(other, longname, 256);
	other[254] = 'b';
	static const struct {
		const char *label, *raw, *want;
	} rows[] = {
		{ "a plain name as it is", "mx1.example.test", "mx1.example.test" },
		{ "'/' ':' ',' escaped", "a/b:c,d", "a\\057b\\072c\\054d" },
		{ "no name: localhost", "", "localhost" },
		{ "exactly at the bound", "0123456789012345678901234567890123456789012345678901234567890123",
		  "0123456789012345678901234567890123456789012345678901234567890123" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		size_t n = maildir_host_part(rows[i].raw, out);
		if (strcmp(out, rows[i].want) != 0 || n != strlen(out))
			fail_msg("%s: %s (%zu)", rows[i].label, out, n);
	}
	/* over the bound: a cut start (never inside an escape), '-' and 8 hex digits */
	const char *longs[] = { slashes, colons, longname, other };
	char seen[4][MAILDIR_HOST_MAX + 1];
	for (size_t i = 0; i < 4; i++) {
		size_t n = maildir_host_part(longs[i], out);
		assert_true(n <= MAILDIR_HOST_MAX);
		assert_int_equal(n, strlen(out));
		assert_int_equal(out[n - 9], '-');
		assert_int_equal(strspn(out + n - 8, "0123456789abcdef"), 8);
		assert_null(strchr(out, '/'));
		assert_null(strchr(out, ':'));
		if (longs[i] != longname && longs[i] != other)
			assert_int_equal((n - 9) % 4, 0);   /* whole escapes only */
		memcpy(seen[i], out, sizeof out);
	}
	assert_string_not_equal(seen[2], seen[3]);   /* alike at the start, apart by the hash */
	/* and a whole name with the ID field stays well under NAME_MAX */
	char name[256];
	assert_int_equal(maildir_make_name(name, sizeof name - 64), 0);
	assert_true(strlen(name) <= 135);
}

/* A quarantined file's envelope, amavis's fields: every recipient, the null sender as <>,
 * an octet that would end the field (CR, LF) as '?'. */
static void test_quarantine_fields(void **state)
{
	struct rcpt r[3] = { { .addr = "a@example.test" }, { .addr = "b@example.test" },
		{ .addr = "x\r\nBcc: y@evil.example" } };
	struct strbuf b = { 0 };

	maildir_quarantine_fields(&b, "s@example.org", r, 2, "4XyZ0", NULL);
	assert_string_equal(b.v, "Return-Path: <s@example.org>\r\n"
	    "X-Envelope-From: <s@example.org>\r\n"
	    "X-Envelope-To: <a@example.test>,\r\n <b@example.test>\r\n"
	    "X-Envelope-To-Blocked: <a@example.test>,\r\n <b@example.test>\r\n"
	    "X-Quarantine-ID: <4XyZ0>\r\n");
	strbuf_free(&b);
	maildir_quarantine_fields(&b, "", r + 2, 1, "Q1", "");
	assert_string_equal(b.v, "Return-Path: <>\r\nX-Envelope-From: <>\r\n"
	    "X-Envelope-To: <x??Bcc: y@evil.example>\r\n"
	    "X-Envelope-To-Blocked: <x??Bcc: y@evil.example>\r\nX-Quarantine-ID: <Q1>\r\n");
	strbuf_free(&b);
	/* the reason (what `quarantine list` shows) before the ID, which ends the block */
	maildir_quarantine_fields(&b, "s@example.org", r, 1, "Q2", "rules score=7\r\nX: y");
	assert_string_equal(b.v, "Return-Path: <s@example.org>\r\nX-Envelope-From: <s@example.org>\r\n"
	    "X-Envelope-To: <a@example.test>\r\nX-Envelope-To-Blocked: <a@example.test>\r\n"
	    "X-Quarantine-Reason: rules score=7??X: y\r\nX-Quarantine-ID: <Q2>\r\n");
	strbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deliver_rows),
		cmocka_unit_test(test_many_unique),
		cmocka_unit_test(test_unwritable_root),
		cmocka_unit_test(test_make_name),
		cmocka_unit_test(test_host_part),
		cmocka_unit_test(test_quarantine_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
