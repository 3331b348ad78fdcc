/* test_bayes.c — the classifier: Robinson's f(w), chi-square combining (SA's and the odds)
 * against hand-computed values, SA's BAYES_xx ranges, abstaining below min_spam/min_ham, learning
 * with the seen-db (twice = no-op, other class = move), message identity, autolearn
 * (SpamAssassin's points and thresholds). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/config.h"
#include "rules/bayes.h"
#include "rules/rules.h"

#define EPS 1e-6

static void test_token_prob(void **state)
{
	/* p = s*nn / (n*ns + s*nn); f = (0.030*0.538 + (s+n)*p) / (0.030 + s+n) */
	assert_float_equal(bayes_token_prob(1, 0, 10, 10), 0.98654369, EPS);
	assert_float_equal(bayes_token_prob(0, 1, 10, 10), 0.01566990, EPS);
	assert_float_equal(bayes_token_prob(2, 2, 10, 10), 0.50028288, EPS);
	/* 3 of 10 spam, 1 of 20 ham: p = 60/70, f = (0.01614 + 4 * 60/70) / 4.03 */
	assert_float_equal(bayes_token_prob(3, 1, 10, 20), 0.85476710, EPS);
	assert_true(bayes_token_prob(0, 0, 10, 10) < 0);     /* unknown */
	assert_true(bayes_token_prob(1, 1, 0, 10) < 0);      /* nothing learned on one side */
}

static void test_chi2q(void **state)
{
	assert_float_equal(bayes_chi2q(0, 1), 1.0, EPS);
	assert_float_equal(bayes_chi2q(2, 1), 0.36787944, EPS);           /* e^-1 */
	assert_float_equal(bayes_chi2q(4, 2), 0.40600585, EPS);           /* e^-2 (1 + 2) */
}

static void test_combine(void **state)
{
	const double one[] = { 0.99 }, two[] = { 0.99, 0.99 }, mixed[] = { 0.99, 0.01, 0.9 };
	const double tiny[] = { 1e-300, 1e-300, 1e-300 };

	/* one token, equal priors: ((1 - 0.005) - (1 - 0.495) + 1) / 2 */
	assert_float_equal(bayes_combine_chi(one, 1, 1, 1), 0.745, EPS);
	assert_float_equal(bayes_combine_chi(two, 2, 1, 1), 0.91951597, EPS);
	assert_float_equal(bayes_combine_chi(mixed, 3, 3, 1), 0.51599958, EPS);
	assert_float_equal(bayes_combine_chi(NULL, 0, 5, 5), 0.5, EPS);
	/* products far below DBL_MIN stay finite (frexp renormalisation) */
	{
		double p = bayes_combine_chi(tiny, 3, 1, 1);

		assert_true(p >= 0 && p <= 1);
	}
}

static void test_log_chi2q(void **state)
{
	/* the logarithm of chi2q where chi2q is representable ... */
	assert_float_equal(bayes_log_chi2q(2, 1), -1.0, EPS);
	assert_float_equal(bayes_log_chi2q(4, 2), log(0.40600585), EPS);
	assert_float_equal(bayes_log_chi2q(0, 3), 0.0, EPS);
	/* ... and finite where it is not: e^-1000 (1 + 1000 + 1000^2 / 2) */
	assert_true(bayes_chi2q(2000, 3) == 0.0);
	assert_float_equal(bayes_log_chi2q(2000, 3), -986.87563662, 1e-6);
}

static void test_combine_odds(void **state)
{
	const double one[] = { 0.99 }, two[] = { 0.99, 0.99 }, two_ham[] = { 0.01, 0.01 };
	double spam[150], ham[150], mixed[150];

	/* one token, equal priors: tails 0.005 (spam side) and 0.495; odds 1 / (1 + (0.005 /
	 * 0.495)^0.2), pulled towards 0.5 by the weaker side's 0.703 nats: 1 - e^(-0.703/160) */
	assert_float_equal(bayes_combine_odds(one, 1, 1, 1), 0.71390103, EPS);
	assert_float_equal(bayes_combine_odds(two, 2, 1, 1), 0.81239785, EPS);
	/* symmetric with equal priors */
	assert_float_equal(bayes_combine_odds(two_ham, 2, 1, 1), 1.0 - 0.81239785, EPS);
	assert_float_equal(bayes_combine_odds(NULL, 0, 5, 5), 0.5, EPS);
	for (size_t i = 0; i < 150; i++) {
		spam[i] = 0.999;
		ham[i] = 0.001;
		mixed[i] = i % 2 ? 0.999 : 0.001;
	}
	/* one-sided evidence far past where SA's output is exact: decisive, not 0.5 */
	assert_true(bayes_combine_odds(spam, 150, 1, 1) > 0.999);
	assert_true(bayes_combine_odds(ham, 150, 1, 1) < 0.001);
	/* strong evidence both ways: unsure, as SA's */
	assert_float_equal(bayes_combine_odds(mixed, 150, 1, 1), 0.5, 1e-3);
	assert_float_equal(bayes_combine_chi(mixed, 150, 1, 1), 0.5, 1e-3);
}

struct range_case { double prob; const char *first, *second; };

static void test_symbols(void **state)
{
	static const struct range_case cases[] = {
		{ 0.0, "BAYES_00", NULL }, { 0.01, "BAYES_00", NULL }, { 0.0100001, "BAYES_05", NULL },
		{ 0.5, "BAYES_50", NULL }, { 0.97, "BAYES_95", NULL }, { 0.995, "BAYES_99", NULL },
		{ 0.9995, "BAYES_99", "BAYES_999" }, { 1.0, "BAYES_99", "BAYES_999" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bayes_result r = { .available = true, .scanned = true, .prob = cases[i].prob };
		const char *n[2], *d[2];
		double s[2];
		size_t k = bayes_symbols(&r, n, s, d);

		assert_true(k >= 1);
		assert_string_equal(n[0], cases[i].first);
		if (cases[i].second) {
			assert_int_equal(k, 2);
			assert_string_equal(n[1], cases[i].second);
		} else {
			assert_int_equal(k, 1);
		}
	}
	{
		struct bayes_result r = { .scanned = false, .prob = 0.999 };
		const char *n[2], *d[2];
		double s[2];

		assert_int_equal(bayes_symbols(&r, n, s, d), 0);   /* abstained: no symbol */
	}
	assert_true(bayes_is_symbol("BAYES_99"));
	assert_false(bayes_is_symbol("BAYES_98"));
}

static char *make_msg(const char *mid, const char *body)
{
	char *m;

	if (asprintf(&m, "From: a@example.test\nMessage-ID: <%s>\nSubject: test\n\n%s\n", mid, body) < 0)
		abort();
	return m;
}

static const char *const spam_words = "cheap pills viagra discount offer winner casino";
static const char *const ham_words = "meeting agenda project review schedule minutes budget";

static struct bayes *open_memory_combine(long min, int combine)
{
	struct bayes_config c = { .enabled = true, .store = "memory", .min_spam = min,
		.min_ham = min, .max_tokens = 0, .combine = combine };
	char err[128];
	struct bayes *b = bayes_open(&c, err, sizeof(err));

	assert_non_null(b);
	return b;
}

static struct bayes *open_memory(long min)
{
	return open_memory_combine(min, BAYES_COMBINE_ODDS);
}

static void learn_n(struct bayes *b, enum bayes_class cls, int from, int n, const char *words)
{
	for (int i = from; i < from + n; i++) {
		char id[64], body[256];
		char *m;
		enum bayes_learn_result res;

		snprintf(id, sizeof(id), "%s%d@example.test", cls == BAYES_SPAM ? "s" : "h", i);
		snprintf(body, sizeof(body), "%s unique%c%d", words, cls == BAYES_SPAM ? 's' : 'h', i);
		m = make_msg(id, body);
		assert_int_equal(bayes_learn(b, m, strlen(m), cls, &res), 0);
		assert_int_equal(res, BAYES_LEARNED);
		free(m);
	}
}

static void test_abstain_below_min(void **state)
{
	struct bayes *b = open_memory(3);
	struct bayes_result r;
	char *m = make_msg("x@example.test", spam_words);

	learn_n(b, BAYES_SPAM, 0, 3, spam_words);
	learn_n(b, BAYES_HAM, 0, 2, ham_words);
	assert_int_equal(bayes_classify(b, m, strlen(m), &r), 0);
	assert_false(r.available);
	assert_false(r.scanned);
	assert_string_equal(r.why, "untrained");
	learn_n(b, BAYES_HAM, 2, 1, ham_words);
	assert_int_equal(bayes_classify(b, m, strlen(m), &r), 0);
	assert_true(r.available);
	assert_true(r.scanned);
	assert_true(r.prob > 0.9);        /* 7 tokens from 3 messages: spammy, not yet sure */
	free(m);
	m = make_msg("y@example.test", ham_words);
	assert_int_equal(bayes_classify(b, m, strlen(m), &r), 0);
	assert_true(r.scanned);
	assert_true(r.prob < 0.1);
	free(m);
	bayes_free(b);
}

/* combine: chi gives SpamAssassin's own output, odds (the default) its tempered odds */
static void test_combine_config(void **state)
{
	struct bayes *odds = open_memory_combine(3, BAYES_COMBINE_ODDS);
	struct bayes *chi = open_memory_combine(3, BAYES_COMBINE_CHI);
	struct bayes_result ro, rc;
	char *m = make_msg("x@example.test", spam_words);

	learn_n(odds, BAYES_SPAM, 0, 10, spam_words);
	learn_n(odds, BAYES_HAM, 0, 10, ham_words);
	learn_n(chi, BAYES_SPAM, 0, 10, spam_words);
	learn_n(chi, BAYES_HAM, 0, 10, ham_words);
	assert_int_equal(bayes_classify(odds, m, strlen(m), &ro), 0);
	assert_int_equal(bayes_classify(chi, m, strlen(m), &rc), 0);
	assert_true(ro.scanned && rc.scanned);
	assert_int_equal(ro.nused, rc.nused);
	assert_true(ro.prob > 0.99 && rc.prob > 0.99);
	assert_true(ro.prob != rc.prob);
	free(m);
	bayes_free(odds);
	bayes_free(chi);
}

static void test_learn_seen(void **state)
{
	struct bayes *b = open_memory(1);
	struct bayes_totals t;
	enum bayes_learn_result res;
	char *m = make_msg("same@example.test", spam_words);

	assert_int_equal(bayes_learn(b, m, strlen(m), BAYES_SPAM, &res), 0);
	assert_int_equal(res, BAYES_LEARNED);
	assert_int_equal(bayes_learn(b, m, strlen(m), BAYES_SPAM, &res), 0);
	assert_int_equal(res, BAYES_ALREADY);
	assert_int_equal(bayes_totals(b, &t), 0);
	assert_int_equal(t.nspam, 1);
	assert_int_equal(t.nham, 0);
	assert_int_equal(bayes_learn(b, m, strlen(m), BAYES_HAM, &res), 0);
	assert_int_equal(res, BAYES_MOVED);
	assert_int_equal(bayes_totals(b, &t), 0);
	assert_int_equal(t.nspam, 0);
	assert_int_equal(t.nham, 1);
	free(m);
	bayes_free(b);
}

static void test_message_id(void **state)
{
	uint8_t a[BAYES_ID_LEN], b[BAYES_ID_LEN], c[BAYES_ID_LEN], d[BAYES_ID_LEN];
	const char *m1 = "Message-ID: <one@x>\nSubject: a\n\nbody one\n";
	const char *m2 = "message-id:   <one@x>  \nSubject: b\n\nbody two\n";
	const char *m3 = "Subject: a\n\nbody one\n";
	const char *m4 = "Subject: b\n\nbody one\n";

	bayes_message_id(m1, strlen(m1), a);
	bayes_message_id(m2, strlen(m2), b);
	bayes_message_id(m3, strlen(m3), c);
	bayes_message_id(m4, strlen(m4), d);
	assert_memory_equal(a, b, BAYES_ID_LEN);     /* the Message-ID decides */
	assert_memory_not_equal(a, c, BAYES_ID_LEN);
	assert_memory_equal(c, d, BAYES_ID_LEN);     /* without one: the body */
}

static void test_autolearn(void **state)
{
	struct bayes_config c = { .enabled = true, .autolearn = true, .autolearn_spam = 12,
		.autolearn_ham = 0.1 };
	struct bayes_autolearn_points p = { .total = 15, .head = 4, .body = 8 };

	assert_int_equal(bayes_autolearn_decide(&c, &p, true), 1);
	p.total = 12;
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), 1);
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);   /* verdict ham */
	p.head = 2.9;                                                   /* SA: 3 header points */
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), -1);
	p.force = true;                                                 /* autolearn_force */
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), 1);
	p = (struct bayes_autolearn_points){ .total = 20, .head = 10, .body = 2 };
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), -1);    /* 3 body points */
	p.body = 10;
	p.learned = -1.5;                                               /* the classifier: ham */
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), -1);
	p = (struct bayes_autolearn_points){ .total = 0 };
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), 0);
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), -1);    /* verdict spam */
	p.learned = 3.8;                                                /* the classifier: spam */
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);
	p = (struct bayes_autolearn_points){ .total = 0.1 };           /* SA: strictly below */
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);
	p.total = 5;
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);
	/* on error only: what the classifier already filed is not learned again */
	c.autolearn_on_error = true;
	p = (struct bayes_autolearn_points){ .total = 0, .learned = -1.5, .said_ham = true };
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);
	p.said_ham = false;
	p.learned = -0.3;                                               /* BAYES_05 */
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), 0);
	p = (struct bayes_autolearn_points){ .total = 15, .head = 4, .body = 8, .learned = 4,
		.said_spam = true };
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), -1);
	p.said_spam = false;
	assert_int_equal(bayes_autolearn_decide(&c, &p, true), 1);
	c.autolearn_on_error = false;
	c.autolearn = false;
	p = (struct bayes_autolearn_points){ .total = 0 };
	assert_int_equal(bayes_autolearn_decide(&c, &p, false), -1);
}

/* The points of a scan's hits: score set 0 whatever the set in use, header and body rules
 * apart, a meta split by the types it names, noautolearn left out, the classifier's own
 * rules apart (learned). */
static void test_autolearn_points(void **state)
{
	static const char text[] =
	    "header H1 Subject =~ /cheap/\nscore H1 2.0 2.0 1.0 1.0\n"
	    "header H2 From =~ /spammer/\nscore H2 1.5\n"
	    "body B1 /viagra/\nscore B1 3.5\n"
	    "meta M1 (H1 && B1 && H2)\nscore M1 3.0\n"
	    "body NOAL /viagra/\ntflags NOAL noautolearn\nscore NOAL 5\n"
	    "full F1 /viagra/\nscore F1 0.5\n"
	    "body FORCED /pills/\ntflags FORCED autolearn_force autolearn_header\nscore FORCED 1\n"
	    "body BAYES_99 eval:check_bayes('0.99', '1.00')\nscore BAYES_99 0 0 3.5 3.5\n";
	static const char msg[] = "From: spammer@example.com\r\nSubject: cheap\r\n\r\n"
	    "viagra and pills\r\n";
	struct rules_set *rs = NULL;
	struct rules_scratch *sc;
	struct rules_result res = { 0 };
	struct bayes_result br = { .available = true, .scanned = true, .prob = 0.995 };
	struct bayes_autolearn_points p = { 0 };

	assert_int_equal(rules_set_load_text("al.cf", text, strlen(text), &rs, stderr), 0);
	sc = rules_scratch_new(rs);
	rules_scratch_set_bayes(sc, &br);        /* set 2 in use: H1 scores 1.0 there */
	rules_set_scan(rs, sc, msg, strlen(msg), NULL, NULL, 0, &res);
	bayes_autolearn_points(rs, res.v, res.n, &p);
	/* head: H1 2 + H2 1.5 + FORCED 1 + M1 2/3 of 3; body: B1 3.5 + M1 1/3 of 3; F1 neither */
	assert_float_equal(p.head, 6.5, EPS);
	assert_float_equal(p.body, 4.5, EPS);
	assert_float_equal(p.total, 11.5, EPS);
	assert_float_equal(p.learned, 3.5, EPS);
	assert_true(p.force);
	assert_true(p.said_spam);
	assert_false(p.said_ham);
	rules_result_free(&res);
	rules_scratch_free(sc);
	rules_set_free(rs);
}

/* The tokens of a message, joined by newlines. */
struct toks { char buf[8192]; size_t n; };

static void toks_cb(const char *tok, size_t len, void *arg)
{
	struct toks *t = arg;

	if (t->n + len + 2 < sizeof(t->buf)) {
		memcpy(t->buf + t->n, tok, len);
		t->n += len;
		t->buf[t->n++] = '\n';
		t->buf[t->n] = '\0';
	}
}

static bool toks_has(const struct toks *t, const char *word)
{
	return strstr(t->buf, word) != NULL;
}

/* The classifier takes the rule parser's bayes_ignore_header names (test_rule_parse.c: which
 * lines count) from the rule files through rules_set_load: a named field is not tokenized,
 * in any case, and the set keeps the names for the classifier. */
static void test_ignore_headers(void **state)
{
	char dir[] = "/tmp/test_bayes_ignXXXXXX", path[64], glob[64];
	const char *globs[] = { glob };
	const char *msg = "Subject: hello\r\nX-Foo: secretword\r\nlist-id: listword\r\n"
	    "X-Kept: keptword\r\n\r\nbody text\r\n";
	struct bayes_token_opts o = { 0 };
	struct rules_set *rs = NULL;
	const char *const *names;
	struct toks t = { 0 };
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/20_a.cf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("bayes_ignore_header X-Foo\nifplugin Mail::SpamAssassin::Plugin::NotLoaded\n"
	    "bayes_ignore_header X-Kept\nendif\nbayes_ignore_header List-Id\n", f);
	fclose(f);
	snprintf(glob, sizeof(glob), "%s/*.cf", dir);
	assert_int_equal(rules_set_load(globs, 1, &rs, stderr), 0);
	assert_int_equal(rules_set_ignore_headers(rs, &names), 2);
	assert_string_equal(names[0], "x-foo");
	assert_string_equal(names[1], "list-id");
	bayes_ignore_headers_set(&o, names, 2);
	rules_set_free(rs);                 /* o has its own copy */
	bayes_tokenize_cb(msg, strlen(msg), &o, toks_cb, &t);
	assert_true(toks_has(&t, "keptword"));
	assert_false(toks_has(&t, "secretword"));
	assert_false(toks_has(&t, "listword"));
	bayes_ignore_headers_free(&o);
	assert_int_equal(o.nignore, 0);
	unlink(path);
	rmdir(dir);
}

static struct mx_config *load_bayes(int min_spam)
{
	char text[512];
	struct mx_config *cfg = NULL;

	snprintf(text, sizeof(text),
	    "hostname: mx.test\n"
	    "listen: [\"127.0.0.1:2525\"]\n"
	    "backends: { servers: [{address: \"smtp://127.0.0.1:2526\"}] }\n"
	    "rules: { bayes: { enabled: true, store: memory, min_spam: %d } }\n", min_spam);
	assert_int_equal(config_load_string("t.yaml", text, strlen(text), &cfg, stderr), 0);
	return cfg;
}

/* bayes_acquire gives every worker of a generation one classifier, found by its config
 * section. A classifier outlives its config (a check still waiting for a silent store, a
 * learn holding bayes_current): when the retired config is freed and the next reload's is
 * allocated at the same address, that generation must get a classifier of its own, on its
 * own options. On the code before (keyed by the section's address) it got the old one
 * (min_spam 5, not 7). The address reuse is made here: both loads' sections are copied in
 * turn into one slot. */
static void test_acquire_address_reused(void **state)
{
	struct mx_config *c1 = load_bayes(5), *c2 = load_bayes(7);
	struct bayes_config slot;
	struct bayes *b1, *b1w, *late, *b2;
	char err[256];

	(void)state;
	slot = c1->rules.bayes;
	b1 = bayes_acquire(&slot, NULL, 0, err, sizeof(err));
	assert_non_null(b1);
	b1w = bayes_acquire(&slot, NULL, 0, err, sizeof(err));    /* a second worker: the same */
	assert_ptr_equal(b1w, b1);
	late = bayes_ref(b1);                 /* the check thread's reference */
	bayes_free(b1w);
	bayes_free(b1);                       /* the generation's workers are gone */
	slot = c2->rules.bayes;               /* the next config, at the freed one's address */
	b2 = bayes_acquire(&slot, NULL, 0, err, sizeof(err));
	assert_non_null(b2);
	assert_ptr_not_equal(b2, late);
	assert_int_equal(bayes_get_config(b2)->min_spam, 7);
	bayes_free(b2);
	bayes_free(late);
	bayes_set_current(NULL);
	config_free(c1);
	config_free(c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_prob),
		cmocka_unit_test(test_chi2q),
		cmocka_unit_test(test_combine),
		cmocka_unit_test(test_log_chi2q),
		cmocka_unit_test(test_combine_odds),
		cmocka_unit_test(test_combine_config),
		cmocka_unit_test(test_symbols),
		cmocka_unit_test(test_abstain_below_min),
		cmocka_unit_test(test_learn_seen),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_autolearn),
		cmocka_unit_test(test_autolearn_points),
		cmocka_unit_test(test_ignore_headers),
		cmocka_unit_test(test_acquire_address_reused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
