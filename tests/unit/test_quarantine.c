/* test_quarantine.c — the quarantine file's envelope block (quarantine_envelope_parse: rows,
 * then fed in pieces), the IDs a request may name, and the file side (find, list, released/,
 * the expiry sweep) in a temp maildir. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/headers.h"
#include "proxy/hook.h"
#include "proxy/maildir.h"
#include "proxy/quarantine.h"
#include "proxy/quarantine_index.h"
#include "proxy/smtp_tx.h"

static struct quarantine_envelope env;

static char *span(const char *buf, struct quarantine_span s)
{
	static char out[4][512];
	static int k;
	char *o = out[k++ % 4];

	snprintf(o, sizeof(out[0]), "%.*s", (int)s.len, buf + s.off);
	return o;
}

struct row {
	const char *label;
	const char *in;
	int rc;                  /* with eof */
	const char *sender, *rcpt0, *id, *reason;
	size_t nrcpts;
};

static const struct row rows[] = {
	{ "the writer's block", "Return-Path: <s@x.test>\r\nX-Envelope-From: <s@x.test>\r\n"
	  "X-Envelope-To: <a@x.test>,\r\n <b@x.test>\r\nX-Envelope-To-Blocked: <a@x.test>,\r\n <b@x.test>\r\n"
	  "X-Quarantine-Reason: rules score=7.0\r\nX-Quarantine-ID: <4XYZ0BCDF12>\r\nReceived: x\r\n\r\nbody\r\n",
	  1, "s@x.test", "a@x.test", "4XYZ0BCDF12", "rules score=7.0", 2 },
	{ "null sender, no reason (session 27's files)", "Return-Path: <>\r\nX-Envelope-From: <>\r\n"
	  "X-Envelope-To: <a@x.test>\r\nX-Envelope-To-Blocked: <a@x.test>\r\nX-Quarantine-ID: <Q1>\r\n",
	  1, "", "a@x.test", "Q1", "", 1 },
	{ "field names in any case, bare LF", "return-path: <s@x>\nx-envelope-to: <a@x>\nx-quarantine-id: <Q2>\n\n",
	  1, "s@x", "a@x", "Q2", "", 1 },
	{ "a '>' inside an address stays in it", "Return-Path: <\"a>b\"@x>\r\nX-Envelope-To: <c@x>\r\nX-Quarantine-ID: <Q3>\r\n",
	  1, "\"a>b\"@x", "c@x", "Q3", "", 1 },
	{ "an ordinary message is not a held one", "Received: from x\r\nSubject: hi\r\n\r\n", -1, 0 },
	{ "an empty file", "", -1, 0 },
	{ "no recipients", "Return-Path: <s@x>\r\nX-Quarantine-ID: <Q4>\r\n", -1, 0 },
	{ "no sender", "X-Envelope-To: <a@x>\r\nX-Quarantine-ID: <Q4>\r\n", -1, 0 },
	{ "an ID too long", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <012345678901234567890123>\r\n", -1, 0 },
	{ "an address without brackets", "Return-Path: s@x\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <Q5>\r\n", -1, 0 },
	{ "a CR inside an address (it would reach RCPT)", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x\r\n b>\r\nX-Quarantine-ID: <Q5>\r\n", -1, 0 },
	{ "an unknown field before the ID", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nSubject: x\r\nX-Quarantine-ID: <Q6>\r\n", -1, 0 },
	{ "cut inside the ID field", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <Q6", -1, 0 },
	{ "no colon", "Return-Path <s@x>\r\n", -1, 0 },
};

static void test_parse_rows(void **state)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		size_t n = strlen(r->in);
		int rc = quarantine_envelope_parse(r->in, n, true, &env);
		if (rc != r->rc)
			fail_msg("%s: rc %d, want %d (%s)", r->label, rc, r->rc, env.err ? env.err : "");
		if (rc < 0) {
			assert_non_null(env.err);
			continue;
		}
		assert_string_equal(span(r->in, env.sender), r->sender);
		assert_string_equal(span(r->in, env.rcpts[0]), r->rcpt0);
		assert_string_equal(span(r->in, env.id), r->id);
		assert_string_equal(span(r->in, env.reason), r->reason);
		assert_int_equal(env.nrcpts, r->nrcpts);
		/* fed in pieces: every prefix short of the block asks for more */
		for (size_t cut = 0; cut <= env.end; cut++) {
			struct quarantine_envelope p;
			if (quarantine_envelope_parse(r->in, cut, false, &p) != 0)
				fail_msg("%s: prefix %zu: not 0", r->label, cut);
		}
		/* one octet more than the block settles it without eof */
		if (env.end < n) {
			struct quarantine_envelope p;
			assert_int_equal(quarantine_envelope_parse(r->in, env.end + 1, false, &p), 1);
			assert_int_equal(p.end, env.end);
		}
	}
}

/* the writer's block (maildir.c) parses back to its envelope */
static void test_round_trip(void **state)
{
	struct rcpt r[3] = { { .addr = "a@example.test" }, { .addr = "b@example.test" }, { .addr = "c@example.test" } };
	struct strbuf b = { 0 };

	maildir_quarantine_fields(&b, "s@example.org", r, 3, "4XYZ0BCDF12", "clamd Eicar-Test-Signature");
	assert_int_equal(quarantine_envelope_parse(b.v, b.len, true, &env), 1);
	assert_int_equal(env.end, b.len);
	assert_int_equal(env.nrcpts, 3);
	assert_string_equal(span(b.v, env.rcpts[2]), "c@example.test");
	assert_string_equal(span(b.v, env.reason), "clamd Eicar-Test-Signature");
	strbuf_free(&b);
}

/* a block past QUARANTINE_ENV_MAX is refused, not read on for ever; so are more recipients
 * than QUARANTINE_RCPTS_MAX */
static void test_bounds(void **state)
{
	struct strbuf b = { 0 };

	strbuf_printf(&b, "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>");
	while (b.len < QUARANTINE_ENV_MAX + 10)
		strbuf_printf(&b, ",\r\n <a@x>");
	assert_int_equal(quarantine_envelope_parse(b.v, b.len, false, &env), -1);
	strbuf_free(&b);
	strbuf_printf(&b, "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>");
	for (int i = 0; i < QUARANTINE_RCPTS_MAX; i++)
		strbuf_printf(&b, ",<a%d@x>", i);
	strbuf_printf(&b, "\r\nX-Quarantine-ID: <Q>\r\n");
	assert_int_equal(quarantine_envelope_parse(b.v, b.len, true, &env), -1);
	strbuf_free(&b);
}

static void test_ids(void **state)
{
	static const char *const good[] = { "4XYZ0BCDF12", "a", "01234567890123456789012" };
	static const char *const bad[] = { "", "../new/x", "/etc/passwd", "a/b", "a.b", "Q1 ", "012345678901234567890123",
		"..", "a\\b", "%2e%2e" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(quarantine_id_is_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (quarantine_id_is_valid(bad[i]))
			fail_msg("\"%s\" taken as an ID", bad[i]);
}

/* The ID a held file's name carries (",QID=ID"), labelled rows: what a lookup by ID takes
 * from a name without opening the file, and the names it must read instead. */
static void test_name_id(void **state)
{
	static const struct { const char *label, *name, *id; } rows[] = {
		{ "as written into new/", "new/1796611975.M400412P9183Q1.mx,QID=4XYZ0BCDF12", "4XYZ0BCDF12" },
		{ "moved into cur/ and flagged by a reader", "cur/1796611975.M4P9Q1.mx,QID=4XYZ0BCDF12:2,S", "4XYZ0BCDF12" },
		{ "with Dovecot's size field after it", "cur/1796611975.M4P9Q1.mx,QID=AB12,S=1830:2,", "AB12" },
		{ "a full path", "/var/spool/q/new/1.M1P1Q1.h,QID=Z9", "Z9" },
		{ "an older mxgate's name: none", "new/1796611975.M400412P9183Q1.mx", NULL },
		{ "an empty ID", "new/1.M1P1Q1.h,QID=", NULL },
		{ "an ID too long", "new/1.M1P1Q1.h,QID=012345678901234567890123", NULL },
		{ "not letters and digits", "new/1.M1P1Q1.h,QID=a.b", NULL },
		{ "the field in the folder, not the name", "new,QID=AB/1.M1P1Q1.h", NULL },
		{ "the last field counts", "new/1.M1P1Q1.h,QID=AA,QID=BB", "BB" },
	};
	char id[QUARANTINE_ID_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool got = quarantine_name_id(rows[i].name, id);
		if (got != (rows[i].id != NULL) || (got && strcmp(id, rows[i].id) != 0))
			fail_msg("%s: \"%s\" gave %s \"%s\"", rows[i].label, rows[i].name, got ? "yes" : "no", got ? id : "");
	}
}

/* A release's queue id is never a session's: the release loop's stand-in worker index 63
 * shares the id's 4 worker bits with worker 15, so the two differed only by the sequence
 * (2^40 apart). Session ids, over every worker index a session or the release loop uses,
 * sequences near 0 and near 2^40, and salts, are 12 characters without an 'A'; a release's
 * is "A" + one of them. */
static void test_release_queue_id(void **state)
{
	static const uint64_t salts[] = { 1, 0x1234567890abcdefULL, ~0ULL };
	char s[13], r[24];

	(void)state;
	for (unsigned w = 0; w < 64; w++)
		for (size_t k = 0; k < 3; k++)
			for (uint64_t seq = 1; seq < 200; seq++) {
				smtp_tx_queue_id(s, 1796380000 + seq, w, (seq & 1) ? seq : (1ULL << 40) + seq, salts[k]);
				assert_int_equal(strlen(s), 12);
				assert_null(strchr(s, 'A'));
				quarantine_release_queue_id(r, sizeof(r), s);
				assert_int_equal(strlen(r), 13);
				assert_int_equal(r[0], 'A');
				assert_string_equal(r + 1, s);
				assert_string_not_equal(r, s);
				assert_true(quarantine_id_is_valid(r));
			}
}

/* The name -> ID index: known and unknown names, a sweep drops the names a walk did not see,
 * growing past many rehashes and shrinking back keeps every entry. */
static void test_index(void **state)
{
	struct quarantine_index *x = quarantine_index_new();
	char id[QUARANTINE_ID_MAX + 1], name[64], want[32];

	(void)state;
	assert_non_null(x);
	quarantine_index_begin(x);
	assert_false(quarantine_index_get(x, "new/1.a", 7, id));
	assert_int_equal(quarantine_index_put(x, "new/1.a", 7, "QA"), 0);
	assert_int_equal(quarantine_index_put(x, "new/2.plain", 7, ""), 0);   /* not a held message */
	assert_true(quarantine_index_get(x, "new/1.a", 7, id));
	assert_string_equal(id, "QA");
	assert_true(quarantine_index_get(x, "new/2.plain", 7, id));
	assert_string_equal(id, "");
	assert_int_equal(quarantine_index_put(x, "new/1.a", 7, "QB"), 0);     /* re-read: replaced */
	assert_true(quarantine_index_get(x, "new/1.a", 7, id));
	assert_string_equal(id, "QB");
	assert_int_equal(quarantine_index_count(x), 2);
	assert_false(quarantine_index_get(x, "new/1.a", 8, id));   /* renamed over: another inode */
	/* a walk that sees only 1.a: 2.plain goes */
	quarantine_index_begin(x);
	assert_true(quarantine_index_get(x, "new/1.a", 7, id));
	quarantine_index_sweep(x);
	assert_int_equal(quarantine_index_count(x), 1);
	assert_false(quarantine_index_get(x, "new/2.plain", 7, id));
	/* 20000 names (rehashes on the way), then a walk that keeps the odd ones */
	quarantine_index_begin(x);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "cur/%d.M%dP1:2,S", i, i);
		snprintf(want, sizeof(want), "ID%d", i);
		assert_int_equal(quarantine_index_put(x, name, 7, want), 0);
	}
	assert_int_equal(quarantine_index_count(x), 20001);   /* and 1.a, not seen: no sweep yet */
	quarantine_index_begin(x);
	for (int i = 1; i < 20000; i += 2) {
		snprintf(name, sizeof(name), "cur/%d.M%dP1:2,S", i, i);
		assert_true(quarantine_index_get(x, name, 7, id));
	}
	quarantine_index_sweep(x);
	assert_int_equal(quarantine_index_count(x), 10000);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "cur/%d.M%dP1:2,S", i, i);
		snprintf(want, sizeof(want), "ID%d", i);
		if (i % 2 == 0) {
			assert_false(quarantine_index_get(x, name, 7, id));
			continue;
		}
		assert_true(quarantine_index_get(x, name, 7, id));
		assert_string_equal(id, want);
	}
	/* everything gone: shrinks, stays usable */
	quarantine_index_begin(x);
	quarantine_index_sweep(x);
	assert_int_equal(quarantine_index_count(x), 0);
	assert_int_equal(quarantine_index_put(x, "new/3.b", 7, "QC"), 0);
	assert_true(quarantine_index_get(x, "new/3.b", 7, id));
	quarantine_index_free(x);
	quarantine_index_free(NULL);
}

/* root/sub/name with data, as a maildir writer puts it there: written aside, renamed in. */
static void put(const char *root, const char *sub, const char *name, const char *data, time_t mtime)
{
	char p[512], t[520];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s/%s", root, sub, name);
	snprintf(t, sizeof(t), "%s.tmp", p);
	f = fopen(t, "wb");
	assert_non_null(f);
	fputs(data, f);
	fclose(f);
	struct timeval tv[2] = { { mtime, 0 }, { mtime, 0 } };
	utimes(t, tv);
	assert_int_equal(rename(t, p), 0);
}

/* A fresh quarantine root (root: "/tmp/test_quarantine.XXXXXX", filled in) with the listed
 * subdirectories (NULL-terminated). */
static void qroot_make(char *root, const char *const *subs)
{
	char p[512];

	assert_non_null(mkdtemp(root));
	for (; *subs; subs++) {
		snprintf(p, sizeof(p), "%s/%s", root, *subs);
		assert_int_equal(mkdir(p, 0700), 0);
	}
}

static void qroot_remove(const char *root)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

/* A held message of sender s@x.test and recipient b@x.test whose ID is id, put in root/sub. */
static void put_held(const char *root, const char *sub, const char *name, const char *id, time_t mtime)
{
	char data[300];

	snprintf(data, sizeof(data), "Return-Path: <s@x.test>\r\nX-Envelope-From: <s@x.test>\r\n"
	    "X-Envelope-To: <b@x.test>\r\nX-Quarantine-ID: <%s>\r\n\r\nbody\r\n", id);
	put(root, sub, name, data, mtime);
}

static void test_files(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", p[512], err[600] = "";
	struct quarantine_item *items = calloc(QUARANTINE_LIST_MAX, sizeof(*items));
	struct quarantine_item it;
	size_t n;

	qroot_make(root, (const char *const[]){ "new", "cur", NULL });
	put(root, "new", "1.old", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <OLD1>\r\n"
	    "Subject: old\r\n\r\nbody\r\n", 1000);
	put(root, "cur", "2.new:2,S", "Return-Path: <t@x>\r\nX-Envelope-To: <b@x>,\r\n <c@x>\r\n"
	    "X-Quarantine-Reason: virus\r\nX-Quarantine-ID: <NEW2>\r\nSubject: new\r\n\r\nbody2\r\n", 2000);
	put(root, "new", "3.plain", "Subject: not held\r\n\r\nx\r\n", 3000);
	put(root, "new", ".hidden", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <HID>\r\n", 4000);

	assert_int_equal(quarantine_list(root, 10, NULL, items, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);   /* newest first; the plain file and the dot file are not held mail */
	assert_string_equal(span(items[0].head, items[0].env.id), "NEW2");
	assert_string_equal(span(items[0].head, items[0].env.reason), "virus");
	assert_int_equal(items[0].env.nrcpts, 2);
	assert_int_equal(items[0].size, strlen("Subject: new\r\n\r\nbody2\r\n"));
	assert_string_equal(span(items[1].head, items[1].env.id), "OLD1");
	size_t hl;
	const char *h = quarantine_item_headers(&items[0], &hl);
	assert_int_equal(hl, strlen("Subject: new\r\n"));
	assert_memory_equal(h, "Subject: new\r\n", hl);
	for (size_t i = 0; i < n; i++)
		quarantine_item_free(&items[i]);
	assert_int_equal(quarantine_list(root, 1, NULL, items, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	quarantine_item_free(&items[0]);

	/* filters: what is held for one user, from one sender, with one subject, before a time */
	static const struct {
		const char *label;
		struct quarantine_filter f;
		const char *ids;         /* the IDs listed, newest first */
	} rows[] = {
		{ "a recipient", { .rcpt = "c@x" }, "NEW2" },
		{ "a recipient, case folded", { .rcpt = "A@X" }, "OLD1" },
		{ "a recipient is whole, not a part", { .rcpt = "c" }, "" },
		{ "a domain", { .rcpt = "@x" }, "NEW2 OLD1" },
		{ "a domain is the end of an address", { .rcpt = "@y" }, "" },
		{ "a sender's text", { .from = "T@" }, "NEW2" },
		{ "a subject's text", { .subject = "OL" }, "OLD1" },
		{ "no subject field matches nothing", { .subject = "body" }, "" },
		{ "before a time", { .older_than = 1500 }, "OLD1" },
		{ "all of them", { .rcpt = "@x", .from = "s@", .subject = "old" }, "OLD1" },
		{ "one of them fails", { .rcpt = "b@x", .from = "s@" }, "" },
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		char got[64] = "";
		assert_int_equal(quarantine_list(root, 10, &rows[r].f, items, &n, err, sizeof(err)), 0);
		for (size_t i = 0; i < n; i++) {
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "",
			    span(items[i].head, items[i].env.id));
			quarantine_item_free(&items[i]);
		}
		if (strcmp(got, rows[r].ids) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rows[r].label, got, rows[r].ids);
	}
	assert_int_equal(quarantine_list(root, 1, &rows[3].f, items, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);   /* the newest that matches */
	assert_string_equal(span(items[0].head, items[0].env.id), "NEW2");
	assert_int_equal(quarantine_item_rcpt_index(&items[0], "C@x"), 1);
	assert_int_equal(quarantine_item_rcpt_index(&items[0], "d@x"), -1);
	quarantine_item_free(&items[0]);

	/* an envelope block longer than the first read (900 recipients, ~20 KiB) */
	struct strbuf big = { 0 };
	strbuf_printf(&big, "Return-Path: <s@x>\r\nX-Envelope-To: <r0@example.test>");
	for (int i = 1; i < 900; i++)
		strbuf_printf(&big, ",\r\n <r%d@example.test>", i);
	strbuf_printf(&big, "\r\nX-Quarantine-ID: <BIG3>\r\nSubject: big\r\n\r\nbody\r\n");
	put(root, "new", "4.big", big.v, 500);
	assert_int_equal(quarantine_find(root, "BIG3", &it, err, sizeof(err)), 1);
	assert_int_equal(it.env.nrcpts, 900);
	assert_string_equal(span(it.head, it.env.rcpts[899]), "r899@example.test");
	h = quarantine_item_headers(&it, &hl);
	assert_memory_equal(h, "Subject: big\r\n", hl);
	assert_int_equal(it.size, strlen("Subject: big\r\n\r\nbody\r\n"));
	quarantine_item_free(&it);
	strbuf_free(&big);

	assert_int_equal(quarantine_find(root, "OLD1", &it, err, sizeof(err)), 1);
	assert_int_equal(quarantine_move_released(root, &it, err, sizeof(err)), 0);
	quarantine_item_free(&it);
	assert_int_equal(quarantine_find(root, "OLD1", &it, err, sizeof(err)), 0);  /* released: gone */
	snprintf(p, sizeof(p), "%s/released/1.old", root);
	assert_int_equal(access(p, R_OK), 0);
	assert_int_equal(quarantine_find(root, "HID", &it, err, sizeof(err)), 0);
	assert_int_equal(quarantine_find(root, "../new/1.old", &it, err, sizeof(err)), 0);
	assert_int_equal(quarantine_find(root, "NOPE", &it, err, sizeof(err)), 0);
	/* the index knows every name now; a file replaced under its name (renamed over it:
	 * another inode, another ID), one added, one removed: lookups see the files as they
	 * are, not as indexed */
	put(root, "new", "3.plain", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <NOWHELD>\r\n"
	    "Subject: x\r\n\r\nx\r\n", 3000);
	assert_int_equal(quarantine_find(root, "NOWHELD", &it, err, sizeof(err)), 1);
	quarantine_item_free(&it);
	put(root, "new", "3.plain", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <OTHER>\r\n"
	    "Subject: x\r\n\r\nx\r\n", 3000);
	assert_int_equal(quarantine_find(root, "NOWHELD", &it, err, sizeof(err)), 0);
	assert_int_equal(quarantine_find(root, "OTHER", &it, err, sizeof(err)), 1);
	quarantine_item_free(&it);
	put(root, "cur", "5.late:2,", "Return-Path: <s@x>\r\nX-Envelope-To: <a@x>\r\nX-Quarantine-ID: <LATE5>\r\n"
	    "Subject: x\r\n\r\nx\r\n", 5000);
	assert_int_equal(quarantine_find(root, "LATE5", &it, err, sizeof(err)), 1);
	quarantine_item_free(&it);
	snprintf(p, sizeof(p), "%s/cur/5.late:2,", root);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(quarantine_find(root, "LATE5", &it, err, sizeof(err)), 0);
	assert_int_equal(quarantine_find(root, "BIG3", &it, err, sizeof(err)), 1);
	quarantine_item_free(&it);
	/* a quarantine never written to yet: empty, not an error */
	assert_int_equal(quarantine_list("/tmp/test_quarantine-none/x", 10, NULL, items, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	free(items);
	qroot_remove(root);
}

/* A release delivered to some recipients: the file is rewritten to name only the others
 * (quarantine_rewrite_rcpts): the same ID, sender and reason, the message after the block
 * octet for octet, the file's time kept, nothing left in tmp/; without tmp/ it fails and
 * the file is as it was. */
static void test_rewrite_rcpts(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", p[512], err[600] = "";
	static const char msg[] = "Received: x\r\nSubject: held\r\n\r\nbody\r\n.dot\r\n";
	struct quarantine_item it;
	struct rcpt c = { .addr = "c@x.test" };
	struct stat st;

	(void)state;
	qroot_make(root, (const char *const[]){ "new", NULL });
	char held[1024];
	snprintf(held, sizeof(held), "Return-Path: <s@x.test>\r\nX-Envelope-From: <s@x.test>\r\n"
	    "X-Envelope-To: <b@x.test>,\r\n <c@x.test>\r\nX-Envelope-To-Blocked: <b@x.test>,\r\n <c@x.test>\r\n"
	    "X-Quarantine-Reason: rules: score=7.0\r\nX-Quarantine-ID: <RW1>\r\n%s", msg);
	put(root, "new", "1.rw", held, 1234);

	/* no tmp/ to write aside in: an error, the file untouched */
	assert_int_equal(quarantine_find(root, "RW1", &it, err, sizeof(err)), 1);
	assert_int_equal(quarantine_rewrite_rcpts(root, &it, &c, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/tmp/"));
	quarantine_item_free(&it);
	assert_int_equal(quarantine_find(root, "RW1", &it, err, sizeof(err)), 1);
	assert_int_equal(it.env.nrcpts, 2);

	snprintf(p, sizeof(p), "%s/tmp", root);
	mkdir(p, 0700);
	assert_int_equal(quarantine_rewrite_rcpts(root, &it, &c, 1, err, sizeof(err)), 0);
	quarantine_item_free(&it);
	assert_int_equal(quarantine_find(root, "RW1", &it, err, sizeof(err)), 1);
	assert_int_equal(it.env.nrcpts, 1);
	assert_string_equal(span(it.head, it.env.rcpts[0]), "c@x.test");
	assert_string_equal(span(it.head, it.env.sender), "s@x.test");
	assert_string_equal(span(it.head, it.env.reason), "rules: score=7.0");
	assert_int_equal(it.size, sizeof(msg) - 1);
	assert_memory_equal(it.head + it.env.end, msg, sizeof(msg) - 1);
	assert_non_null(strstr(it.head, "X-Envelope-To-Blocked: <c@x.test>\r\n"));
	assert_null(strstr(it.head, "b@x.test"));
	assert_int_equal(stat(it.path, &st), 0);
	assert_int_equal(st.st_mtime, 1234);
	quarantine_item_free(&it);
	/* tmp/ is empty again: the file written there was renamed over the held one */
	snprintf(p, sizeof(p), "rmdir %s/tmp", root);
	assert_int_equal(system(p), 0);
	qroot_remove(root);
}

/* One operation at a time (quarantine_find_locked): a second lock on the same held file is
 * refused (busy), in one process too (flock: per open file description); the sweep leaves a
 * locked file (busy) and removes it once free; tmp/ loses only a file older than its bound. */
static void test_locks(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", p[512], err[600] = "";
	struct quarantine_item a, b;
	struct quarantine_expired n;
	time_t now = time(NULL);

	(void)state;
	qroot_make(root, (const char *const[]){ "new", "tmp", NULL });
	put_held(root, "new", "1.lk,QID=LK1", "LK1", 1000);
	put(root, "tmp", "2.cut", "Return-Path: <s@x", now - QUARANTINE_TMP_STALE_S - 60);
	put(root, "tmp", "3.writing", "Return-Path: <s@x", now);

	assert_int_equal(quarantine_find_locked(root, "LK1", &a, 0, NULL, NULL, err, sizeof(err)), 1);
	assert_int_equal(quarantine_find_locked(root, "LK1", &b, 0, NULL, NULL, err, sizeof(err)), QUARANTINE_BUSY);
	assert_false(b.has_fd);
	assert_int_equal(quarantine_find_locked(root, "NOPE", &b, 0, NULL, NULL, err, sizeof(err)), 0);
	/* show and list read without the lock */
	assert_int_equal(quarantine_find(root, "LK1", &b, err, sizeof(err)), 1);
	quarantine_item_free(&b);

	assert_int_equal(quarantine_expire(root, now, now - QUARANTINE_TMP_STALE_S, &n, err, sizeof(err)), 0);
	assert_int_equal(n.held, 0);
	assert_int_equal(n.busy, 1);
	assert_int_equal(n.stale_tmp, 1);
	snprintf(p, sizeof(p), "%s/new/1.lk,QID=LK1", root);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/tmp/2.cut", root);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp/3.writing", root);
	assert_int_equal(access(p, F_OK), 0);

	quarantine_item_free(&a);   /* the lock goes with the fd */
	assert_int_equal(quarantine_find_locked(root, "LK1", &b, 0, NULL, NULL, err, sizeof(err)), 1);
	quarantine_item_free(&b);
	assert_int_equal(quarantine_expire(root, now, now - QUARANTINE_TMP_STALE_S, &n, err, sizeof(err)), 0);
	assert_int_equal(n.held, 1);
	assert_int_equal(n.busy, 0);
	assert_int_equal(n.stale_tmp, 0);
	qroot_remove(root);
}

/* The executable's flock is wrapped: flock_errno set, it fails so (a file system without
 * locks: ENOLCK). */
static int flock_errno;

int __real_flock(int fd, int op);
int __wrap_flock(int fd, int op)
{
	if (flock_errno) {
		errno = flock_errno;
		return -1;
	}
	return __real_flock(fd, op);
}

/* A sweep that cannot lock a file for another reason than an operation holding it (ENOLCK)
 * leaves it and says why: lock_failed and its errno, not busy (before session 35 it was
 * counted busy, the errno lost). */
static void test_sweep_lock_failed(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", p[512], err[600] = "";
	struct quarantine_expired n;
	time_t now = time(NULL);

	(void)state;
	qroot_make(root, (const char *const[]){ "new", "released", NULL });
	put_held(root, "new", "1.nl,QID=NL1", "NL1", 1000);
	put_held(root, "released", "2.nl,QID=NL2", "NL2", 1000);
	flock_errno = ENOLCK;
	assert_int_equal(quarantine_expire(root, now, now - QUARANTINE_TMP_STALE_S, &n, err, sizeof(err)), 0);
	flock_errno = 0;
	assert_int_equal(n.held, 0);
	assert_int_equal(n.released, 0);
	assert_int_equal(n.busy, 0);
	assert_int_equal(n.lock_failed, 2);
	assert_int_equal(n.lock_errno, ENOLCK);
	snprintf(p, sizeof(p), "%s/new/1.nl,QID=NL1", root);
	assert_int_equal(access(p, F_OK), 0);
	/* locks again: both go */
	assert_int_equal(quarantine_expire(root, now, now - QUARANTINE_TMP_STALE_S, &n, err, sizeof(err)), 0);
	assert_int_equal(n.held, 1);
	assert_int_equal(n.released, 1);
	assert_int_equal(n.lock_failed, 0);
	qroot_remove(root);
}

/* Without quarantine.expire (before 0) the sweep empties tmp/ of what a crash left and
 * leaves every held or released file, however old. */
static void test_sweep_tmp_only(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", p[512], err[600] = "";
	struct quarantine_expired n;
	time_t now = time(NULL);

	(void)state;
	qroot_make(root, (const char *const[]){ "new", "released", "tmp", NULL });
	put_held(root, "new", "1.to,QID=TO1", "TO1", 1000);
	put_held(root, "released", "2.to,QID=TO2", "TO2", 1000);
	put(root, "tmp", "3.cut", "Return-Path: <s@x", now - QUARANTINE_TMP_STALE_S - 60);
	put(root, "tmp", "4.writing", "Return-Path: <s@x", now);
	assert_int_equal(quarantine_expire(root, 0, now - QUARANTINE_TMP_STALE_S, &n, err, sizeof(err)), 0);
	assert_int_equal(n.held, 0);
	assert_int_equal(n.released, 0);
	assert_int_equal(n.stale_tmp, 1);
	snprintf(p, sizeof(p), "%s/new/1.to,QID=TO1", root);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/released/2.to,QID=TO2", root);
	assert_int_equal(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s/tmp/3.cut", root);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp/4.writing", root);
	assert_int_equal(access(p, F_OK), 0);
	qroot_remove(root);
}

/* A directory in new/ (an operator's, a mail reader's) is not a held message: a lookup by ID
 * skips it as before the locks came (opened for writing it failed with EISDIR, and every
 * lookup of an ID not in a file's name failed with "Is a directory"). */
static void test_dir_in_new(void **state)
{
	char root[] = "/tmp/test_quarantine.XXXXXX", err[600] = "";
	struct quarantine_item a;

	(void)state;
	qroot_make(root, (const char *const[]){ "new", "new/0.somedir", NULL });
	put_held(root, "new", "2.legacy", "LG1", 1000);

	assert_int_equal(quarantine_find_locked(root, "NOPE1", &a, 0, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(quarantine_find_locked(root, "LG1", &a, 0, NULL, NULL, err, sizeof(err)), 1);
	quarantine_item_free(&a);
	assert_int_equal(quarantine_find(root, "LG1", &a, err, sizeof(err)), 1);
	quarantine_item_free(&a);
	qroot_remove(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_rows),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_name_id),
		cmocka_unit_test(test_release_queue_id),
		cmocka_unit_test(test_index),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_rewrite_rcpts),
		cmocka_unit_test(test_locks),
		cmocka_unit_test(test_sweep_lock_failed),
		cmocka_unit_test(test_sweep_tmp_only),
		cmocka_unit_test(test_dir_in_new),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
