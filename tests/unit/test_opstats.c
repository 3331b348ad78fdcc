/* test_opstats.c — the Space-Saving top-K table, per-worker notes merged on read, and the
 * minute history fed from counters. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proxy/counters.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/opstats.h"
#include "proxy/topk.h"

static uint64_t topk_count_of(const struct topk *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].key, key) == 0)
			return t->e[i].count;
	return 0;
}

static void test_topk_exact_below_capacity(void **state)
{
	struct topk t;
	struct topk_entry out[TOPK_CAP];

	topk_init(&t);
	topk_add(&t, "b", 2);
	topk_add(&t, "a", 2);
	topk_add(&t, "c", 5);
	topk_add(&t, "", 9);	/* ignored */
	topk_add(&t, NULL, 9);
	assert_int_equal(t.total, 9);
	size_t n = topk_sorted(&t, out, 2);
	assert_int_equal(n, 2);
	assert_string_equal(out[0].key, "c");
	assert_int_equal(out[0].count, 5);
	assert_string_equal(out[1].key, "a");	/* ties by key */
	assert_int_equal(out[1].error, 0);
}

/* Heavy hitters survive a stream of many distinct light keys. */
static void test_topk_heavy_hitters_kept(void **state)
{
	struct topk t;
	char key[32];

	topk_init(&t);
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "198.18.%d.%d", (i / 250) % 250, i % 250);
		topk_add(&t, key, 1);
		if (i % 10 == 0)
			topk_add(&t, "203.0.113.7", 1);
		if (i % 20 == 0)
			topk_add(&t, "203.0.113.8", 1);
	}
	assert_int_equal(t.n, TOPK_CAP);
	struct topk_entry out[3];
	assert_int_equal(topk_sorted(&t, out, 3), 3);
	assert_string_equal(out[0].key, "203.0.113.7");
	assert_string_equal(out[1].key, "203.0.113.8");
	/* count is an upper bound, count - error a lower bound of the true 1000 / 500 */
	assert_true(out[0].count >= 1000 && out[0].count - out[0].error <= 1000);
	assert_true(out[1].count >= 500 && out[1].count - out[1].error <= 500);
}

static void test_topk_long_key_truncated(void **state)
{
	struct topk t;
	char longkey[200];

	topk_init(&t);
	memset(longkey, 'x', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	topk_add(&t, longkey, 1);
	topk_add(&t, longkey, 1);
	assert_int_equal(t.n, 1);
	assert_int_equal(strlen(t.e[0].key), TOPK_KEY_MAX - 1);
	assert_int_equal(t.e[0].count, 2);
}

static void test_topk_merge(void **state)
{
	struct topk a, b;

	topk_init(&a);
	topk_init(&b);
	topk_add(&a, "x", 3);
	topk_add(&b, "x", 4);
	topk_add(&b, "y", 1);
	topk_merge(&a, &b);
	assert_int_equal(a.total, 8);
	assert_int_equal(topk_count_of(&a, "x"), 7);
	assert_int_equal(topk_count_of(&a, "y"), 1);
}

static void test_notes_merged_across_workers(void **state)
{
	struct opstats_top top;

	opstats_reset();
	counter_reset_all();
	opstats_note_session(0, "192.0.2.1");
	opstats_note_session(1, "192.0.2.1");
	opstats_note_session(1, "192.0.2.2");
	opstats_note_refusal(0, "192.0.2.1", "rcpt", "dnsbl", false);
	opstats_note_refusal(3, "192.0.2.1", "rcpt", "dnsbl", false);
	opstats_note_refusal(3, "192.0.2.9", "connect", NULL, true);
	opstats_note_refusal(70, "192.0.2.9", NULL, "ratelimit", true);	/* index wraps, no crash */
	opstats_collect(&top);
	assert_int_equal(topk_count_of(&top.sessions, "192.0.2.1"), 2);
	assert_int_equal(topk_count_of(&top.sessions, "192.0.2.2"), 1);
	assert_int_equal(topk_count_of(&top.refusals, "192.0.2.1"), 2);
	assert_int_equal(topk_count_of(&top.refusals, "192.0.2.9"), 2);
	assert_int_equal(topk_count_of(&top.reasons, "rcpt/dnsbl"), 2);
	assert_int_equal(topk_count_of(&top.reasons, "connect/filter"), 1);
	assert_int_equal(topk_count_of(&top.reasons, "-/ratelimit"), 1);
	assert_int_equal(counter_get(COUNTER_REFUSALS), 2);
	assert_int_equal(counter_get(COUNTER_TEMPFAILS), 2);
}

/* The mail tables: a RCPT's answer by sender domain, recipient and recipient domain, a
 * message's outcome once for the sender's domain and once per recipient; keys lower case,
 * "<>" the null sender, "-" an address without a domain; no sender, no count. */
static void test_mail_notes_keyed(void **state)
{
	static struct opstats_top top;
	struct rcpt rcpts[3] = { { .addr = "Bob@Example.TEST", .status = 250 },
		{ .addr = "carol@example.test", .status = 250 }, { .addr = "postmaster", .status = 250 } };
	/* an LMTP server took dave and refused erin after the dot; frank it took before a
	 * replay for the others (left the envelope: counted alone) */
	struct rcpt lmtp[2] = { { .addr = "dave@example.test", .status = 250 },
		{ .addr = "erin@example.test", .status = 550 } };
	struct rcpt frank = { .addr = "frank@example.test", .status = 250 };

	opstats_reset();
	opstats_note_rcpt(0, "alice@Sender.EXAMPLE", "Bob@Example.TEST", true);
	opstats_note_rcpt(1, "alice@sender.example", "carol@example.test", true);
	opstats_note_rcpt(1, "", "nobody@example.test", false);
	opstats_note_rcpt(1, "MAILER-DAEMON", "nobody@example.test", false);
	opstats_note_rcpt(1, NULL, "x@example.test", false);	/* no transaction: not counted */
	opstats_note_rcpt(1, "a@b.example", NULL, false);
	opstats_note_message(2, "alice@sender.example", rcpts, 3, OPS_MSG_DELIVERED);
	opstats_note_message(2, "alice@sender.example", rcpts, 1, OPS_MSG_SPAM);
	opstats_note_message(3, "alice@sender.example", lmtp, 2, OPS_MSG_DELIVERED);
	opstats_note_rcpts(3, &frank, 1, OPS_MSG_DELIVERED);
	opstats_collect(&top);

	const struct topk (*m)[OPS__NCOUNTS] = top.mail;
	assert_int_equal(topk_count_of(&m[OPS_BY_SENDER_DOMAIN][OPS_RCPT_ACCEPTED], "sender.example"), 2);
	assert_int_equal(topk_count_of(&m[OPS_BY_SENDER_DOMAIN][OPS_RCPT_REFUSED], "<>"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_SENDER_DOMAIN][OPS_RCPT_REFUSED], "-"), 1);
	assert_int_equal(m[OPS_BY_SENDER_DOMAIN][OPS_RCPT_REFUSED].total, 2);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_RCPT_ACCEPTED], "bob@example.test"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_RCPT_REFUSED], "nobody@example.test"), 2);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT_DOMAIN][OPS_RCPT_ACCEPTED], "example.test"), 2);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT_DOMAIN][OPS_RCPT_REFUSED], "example.test"), 2);
	/* a message: once for the sender, once for each recipient delivered */
	assert_int_equal(topk_count_of(&m[OPS_BY_SENDER_DOMAIN][OPS_MSG_DELIVERED], "sender.example"), 2);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT_DOMAIN][OPS_MSG_DELIVERED], "example.test"), 4);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_MSG_DELIVERED], "dave@example.test"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_MSG_DELIVERED], "erin@example.test"), 0);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_MSG_DELIVERED], "frank@example.test"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT_DOMAIN][OPS_MSG_DELIVERED], "-"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_MSG_DELIVERED], "postmaster"), 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_RCPT][OPS_MSG_SPAM], "bob@example.test"), 1);
	assert_int_equal(m[OPS_BY_RCPT][OPS_MSG_SPAM].total, 1);
	assert_int_equal(topk_count_of(&m[OPS_BY_SENDER_DOMAIN][OPS_MSG_SPAM], "sender.example"), 1);
	/* the client tables are not touched by these */
	assert_int_equal(top.sessions.total + top.refusals.total + top.reasons.total, 0);
}

/* A dictionary attack: 10,000 distinct recipients, refused, over two workers. Every table
 * stays at TOPK_CAP entries (fixed memory), counts all of them in its total, and the one
 * real recipient hit every 10th RCPT is still listed first, its count exact enough to act on. */
static void test_mail_dictionary_attack_bounded(void **state)
{
	static struct opstats_top top;
	char rcpt[64];

	opstats_reset();
	for (int i = 0; i < 10000; i++) {
		snprintf(rcpt, sizeof(rcpt), "guess%05d@victim.example", i);
		opstats_note_rcpt(i % 2, "spammer@bulk.example", rcpt, false);
		if (i % 10 == 0)
			opstats_note_rcpt(i % 2, "spammer@bulk.example", "info@victim.example", false);
	}
	opstats_collect(&top);

	const struct topk *t = &top.mail[OPS_BY_RCPT][OPS_RCPT_REFUSED];
	struct topk_entry out[TOPK_CAP];
	assert_true(t->n <= TOPK_CAP);
	assert_int_equal(t->total, 11000);
	assert_int_equal(topk_sorted(t, out, 1), 1);
	assert_string_equal(out[0].key, "info@victim.example");
	assert_true(out[0].count - out[0].error <= 1000 && out[0].count >= 1000);
	assert_int_equal(topk_count_of(&top.mail[OPS_BY_RCPT_DOMAIN][OPS_RCPT_REFUSED], "victim.example"), 11000);
	assert_int_equal(topk_count_of(&top.mail[OPS_BY_SENDER_DOMAIN][OPS_RCPT_REFUSED], "bulk.example"), 11000);
	/* the struct is the bound: fixed-size tables, nothing allocated per key */
	assert_true(sizeof(top.mail) == OPS__NKEYS * OPS__NCOUNTS * sizeof(struct topk));
}

static long event_count(const char *event, const char *stage, const char *reason)
{
	static struct opstats_event_row rows[OPSTATS_EVENT_ROWS];
	size_t n = opstats_refusal_events(rows, OPSTATS_EVENT_ROWS);

	for (size_t i = 0; i < n; i++)
		if (rows[i].tempfail == (strcmp(event, "tempfail") == 0) && strcmp(rows[i].stage, stage) == 0 &&
		    strcmp(rows[i].reason, reason) == 0)
			return rows[i].count;
	return 0;
}

/* Each opstats_refusal line counts by event, stage and reason, whatever the log level; a
 * repeat counts as a line, not again as a decision; the code's class, when there is a code,
 * picks the event word and refusals_total or tempfails_total alike (until session 24 a
 * connect 421 given without .tempfail was logged event=reject and counted a tempfail). */
static void test_refusal_lines_counted(void **state)
{
	struct opstats_top top;

	opstats_reset();
	counter_reset_all();
	log_set_level(LOG_LVL_ERROR);	/* the lines are not written: still counted */
	opstats_refusal(&(struct opstats_refusal){ .worker = 0, .client_ip = "192.0.2.1", .stage = "rcpt",
	    .reason = "relay_denied", .code = 550 }, "client=%s", "192.0.2.1");
	opstats_refusal(&(struct opstats_refusal){ .worker = 1, .client_ip = "192.0.2.1", .stage = "rcpt",
	    .reason = "relay_denied", .code = 550 }, NULL);
	opstats_refusal(&(struct opstats_refusal){ .client_ip = "192.0.2.2", .stage = "mail", .reason = "dnsbl",
	    .code = 550, .repeat = true }, "client=192.0.2.2");
	opstats_refusal(&(struct opstats_refusal){ .client_ip = "192.0.2.3", .stage = "connect", .reason = "fd_limit",
	    .code = 421 }, "client=192.0.2.3");
	opstats_refusal(&(struct opstats_refusal){ .client_ip = "192.0.2.3", .stage = "mail", .tempfail = true },
	    "%s", "");
	log_set_level(LOG_LVL_INFO);
	assert_int_equal(event_count("reject", "rcpt", "relay_denied"), 2);
	assert_int_equal(event_count("reject", "mail", "dnsbl"), 1);
	assert_int_equal(event_count("tempfail", "connect", "fd_limit"), 1);
	assert_int_equal(event_count("reject", "connect", "fd_limit"), 0);
	assert_int_equal(event_count("tempfail", "mail", "filter"), 1);
	assert_int_equal(event_count("tempfail", "rcpt", "relay_denied"), 0);
	assert_int_equal(counter_get(COUNTER_REFUSALS), 2);     /* the repeat is not a decision */
	assert_int_equal(counter_get(COUNTER_TEMPFAILS), 2);    /* 421 and the tempfail */
	opstats_collect(&top);
	assert_int_equal(topk_count_of(&top.reasons, "rcpt/relay_denied"), 2);
	assert_int_equal(topk_count_of(&top.reasons, "mail/dnsbl"), 0);
}

/* Reasons come from plugins too: the table is bounded, the rest counts as other/other (one
 * row per event), and nothing is lost from the sum. */
static void test_refusal_rows_bounded(void **state)
{
	char reason[32];
	long sum = 0;
	static struct opstats_event_row rows[OPSTATS_EVENT_ROWS];

	opstats_reset();
	log_set_level(LOG_LVL_ERROR);
	for (int i = 0; i < 3 * OPSTATS_EVENT_ROWS; i++) {
		snprintf(reason, sizeof(reason), "r%d", i);
		opstats_refusal(&(struct opstats_refusal){ .client_ip = "192.0.2.1", .stage = "eom", .reason = reason,
		    .tempfail = i % 2 }, NULL);
	}
	log_set_level(LOG_LVL_INFO);
	size_t n = opstats_refusal_events(rows, OPSTATS_EVENT_ROWS);
	assert_int_equal(n, OPSTATS_EVENT_ROWS);
	for (size_t i = 0; i < n; i++)
		sum += rows[i].count;
	assert_int_equal(sum, 3 * OPSTATS_EVENT_ROWS);
	assert_int_equal(event_count("reject", "eom", "r0"), 1);
	assert_int_equal(event_count("reject", "other", "other") + event_count("tempfail", "other", "other"),
	    3 * OPSTATS_EVENT_ROWS - (OPSTATS_EVENT_ROWS - 2));
}

static void vals(long v[OPS__NSERIES], long a, long r, long t, long d)
{
	v[OPS_ACCEPTED] = a;
	v[OPS_REFUSED] = r;
	v[OPS_TEMPFAILED] = t;
	v[OPS_DNSBL_ERRORS] = d;
}

static void test_history_minutes(void **state)
{
	struct ophist h;
	long cur[OPS__NSERIES], out[OPS_MINUTES][OPS__NSERIES];
	const uint64_t t0 = 1000ULL * 60000;	/* start of a minute */

	memset(&h, 0, sizeof(h));
	assert_int_equal(ophist_minutes(&h, out), 0);
	vals(cur, 100, 10, 1, 0);
	ophist_tick(&h, t0, cur, 500);
	vals(cur, 130, 12, 1, 2);
	ophist_tick(&h, t0 + 30000, cur, 530);
	assert_int_equal(ophist_minutes(&h, out), OPS_MINUTES);
	/* current partial minute */
	assert_int_equal(out[OPS_MINUTES - 1][OPS_ACCEPTED], 30);
	assert_int_equal(out[OPS_MINUTES - 1][OPS_REFUSED], 2);
	assert_int_equal(out[OPS_MINUTES - 1][OPS_DNSBL_ERRORS], 2);
	/* next minute: the first one is closed */
	vals(cur, 140, 12, 3, 2);
	ophist_tick(&h, t0 + 60000 + 500, cur, 540);
	ophist_minutes(&h, out);
	assert_int_equal(out[OPS_MINUTES - 2][OPS_ACCEPTED], 40);
	assert_int_equal(out[OPS_MINUTES - 2][OPS_TEMPFAILED], 2);
	assert_int_equal(out[OPS_MINUTES - 1][OPS_ACCEPTED], 0);
	/* a gap of three silent minutes, then traffic */
	vals(cur, 150, 12, 3, 2);
	ophist_tick(&h, t0 + 4 * 60000 + 1, cur, 550);
	ophist_minutes(&h, out);
	assert_int_equal(out[OPS_MINUTES - 5][OPS_ACCEPTED], 40);
	assert_int_equal(out[OPS_MINUTES - 4][OPS_ACCEPTED], 10);	/* closed at the late tick */
	assert_int_equal(out[OPS_MINUTES - 3][OPS_ACCEPTED], 0);
	assert_int_equal(out[OPS_MINUTES - 2][OPS_ACCEPTED], 0);
	assert_int_equal(out[OPS_MINUTES - 1][OPS_ACCEPTED], 0);
	/* more than an hour later, everything old reads as zero */
	vals(cur, 160, 12, 3, 2);
	ophist_tick(&h, t0 + 200 * 60000, cur, 560);
	ophist_minutes(&h, out);
	long sum = 0;
	for (int r = 0; r < OPS_MINUTES - 1; r++)
		sum += out[r][OPS_ACCEPTED];
	assert_int_equal(sum, 0);	/* the minute this tick closed is hours old */
	assert_int_equal(out[OPS_MINUTES - 1][OPS_ACCEPTED], 0);
}

static void test_history_small_clock(void **state)
{
	struct ophist h;
	long cur[OPS__NSERIES] = { 0 }, out[OPS_MINUTES][OPS__NSERIES];

	memset(&h, 0, sizeof(h));
	ophist_tick(&h, 5, cur, 0);	/* a monotonic clock near zero: no underflow */
	assert_int_equal(ophist_minutes(&h, out), OPS_MINUTES);
	assert_int_equal(out[0][OPS_ACCEPTED], 0);
}

static void test_rate(void **state)
{
	struct ophist h;
	long cur[OPS__NSERIES] = { 0 };

	memset(&h, 0, sizeof(h));
	assert_true(ophist_rate(&h) == 0);
	for (int i = 0; i <= 20; i++)
		ophist_tick(&h, 1000000 + (uint64_t)i * 1000, cur, 50L * i);
	assert_true(ophist_rate(&h) > 49.9 && ophist_rate(&h) < 50.1);
	/* ticks closer than a second apart add no sample */
	unsigned n = h.nrate;
	ophist_tick(&h, 1000000 + 20 * 1000 + 10, cur, 5000);
	assert_int_equal(h.nrate, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topk_exact_below_capacity),
		cmocka_unit_test(test_topk_heavy_hitters_kept),
		cmocka_unit_test(test_topk_long_key_truncated),
		cmocka_unit_test(test_topk_merge),
		cmocka_unit_test(test_notes_merged_across_workers),
		cmocka_unit_test(test_mail_notes_keyed),
		cmocka_unit_test(test_mail_dictionary_attack_bounded),
		cmocka_unit_test(test_refusal_lines_counted),
		cmocka_unit_test(test_refusal_rows_bounded),
		cmocka_unit_test(test_history_minutes),
		cmocka_unit_test(test_history_small_clock),
		cmocka_unit_test(test_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
