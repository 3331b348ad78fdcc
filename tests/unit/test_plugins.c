/* test_plugins.c — the pieces between the chain and the plugins' peers: clamd and spamd reply
 * parsers, peer address parsing; the typed option tables of the built-ins (units, bounds,
 * unknown keys, the entry's own action/max_size, FILE:LINE:COL errors, the generated
 * reference); the adapter from the plugin ABI to chain entries, driven through the real
 * chain (chain.c) with a scripted in-memory plugin (every MXGATE_* verdict, on_error,
 * discard before EOM, flags, cancel and late answers, a plugin whose init failed,
 * on_close once, header/body calls); and the example plugin loaded by dlopen (header and
 * body hooks, end-of-message verdicts, an async hook, its timeout and on_error). */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "proxy/chain.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/msgbuf.h"
#include "plugins/clamd.h"
#include "plugins/pconn.h"
#include "plugins/plugins.h"
#include "plugins/spamd.h"
#include "plugins/rspamd.h"

/* ------------------------------------------------------------------- clamd replies */

struct clamd_row { const char *label, *reply; int rc; const char *name; };

static const struct clamd_row clamd_rows[] = {
	{ "clean", "stream: OK", 0, NULL },
	{ "clean with NUL and newline", "stream: OK\n", 0, NULL },
	{ "found", "stream: Eicar-Test-Signature FOUND", 1, "Eicar-Test-Signature" },
	{ "found, session id prefix", "1: stream: Win.Test.EICAR_HDB-1 FOUND", 1, "Win.Test.EICAR_HDB-1" },
	{ "size limit", "INSTREAM size limit exceeded. ERROR", -1, NULL },
	{ "error", "stream: Can't allocate memory ERROR", -1, NULL },
	{ "found without a name", "stream:  FOUND", -1, NULL },
	{ "empty", "", -1, NULL },
	{ "garbage", "HTTP/1.0 400 Bad Request", -1, NULL },
	{ "name with control bytes", "stream: a\tb FOUND", 1, "a_b" },
};

static void test_clamd_replies(void **state)
{
	for (size_t i = 0; i < sizeof(clamd_rows) / sizeof(clamd_rows[0]); i++) {
		const struct clamd_row *r = &clamd_rows[i];
		char name[64] = "";
		int rc = clamd_reply_parse(r->reply, strlen(r->reply), name, sizeof(name));

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (r->name && strcmp(name, r->name) != 0)
			fail_msg("row \"%s\": name \"%s\", want \"%s\"", r->label, name, r->name);
	}
}

/* ------------------------------------------------------------------- spamd replies */

static void test_spamd_replies(void **state)
{
	struct spamd_result r;
	const char *ok = "SPAMD/1.1 0 EX_OK\r\nContent-length: 24\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,MISSING_DATE\r\n";
	const char *ham = "SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.1 / 5.0\r\n\r\n";
	const char *bad_status = "SPAMD/1.0 76 Bad header line: x\r\n\r\n";
	const char *no_spam = "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n";
	const char *garbage = "hello";
	const char *bad_score = "SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n";

	assert_int_equal(spamd_reply_parse(ok, strlen(ok), &r), 0);
	assert_true(r.spam);
	assert_true(r.score > 999.9 && r.threshold == 5.0);
	assert_int_equal(r.symbols_len, strlen("GTUBE,MISSING_DATE"));
	assert_memory_equal(r.symbols, "GTUBE,MISSING_DATE", r.symbols_len);
	assert_int_equal(spamd_reply_parse(ham, strlen(ham), &r), 0);
	assert_false(r.spam);
	assert_true(r.score < 0);
	assert_int_equal(r.symbols_len, 0);
	assert_int_equal(spamd_reply_parse(bad_status, strlen(bad_status), &r), -1);
	assert_int_equal(spamd_reply_parse(no_spam, strlen(no_spam), &r), -1);
	assert_int_equal(spamd_reply_parse(garbage, strlen(garbage), &r), -1);
	assert_int_equal(spamd_reply_parse(bad_score, strlen(bad_score), &r), -1);
}

/* ------------------------------------------------------------------- rspamd replies */

struct sym_acc { char names[256]; double sum; int n; };

static void sym_cb(void *arg, const char *name, double score)
{
	struct sym_acc *a = arg;

	strncat(a->names, name, sizeof(a->names) - strlen(a->names) - 2);
	strcat(a->names, ",");
	a->sum += score;
	a->n++;
}

/* The reply read once (rspamd_reply_parse), its result into res and its symbols to cb. */
static int json_parse(const char *json, struct rspamd_result *res, rspamd_symbol_cb cb, void *arg)
{
	struct rspamd_reply rp;
	int rc = rspamd_reply_parse(json, strlen(json), &rp);

	*res = rp.r;
	if (rc == 0 && cb)
		rspamd_reply_symbols(&rp, cb, arg);
	rspamd_reply_free(&rp);
	return rc;
}

struct json_row { const char *label, *json; int rc; double score; const char *action; int nsyms; };

static const struct json_row json_rows[] = {
	{ "ham", "{\"score\": 1.2, \"required_score\": 15, \"action\": \"no action\", \"symbols\": "
	  "{\"A\": {\"name\": \"A\", \"score\": 0.5, \"options\": [\"x\", 1, null]}, \"B\": {\"score\": 0.7}}}",
	  0, 1.2, "no action", 2 },
	{ "reject with message", "{\"is_skipped\":false,\"score\":15e0,\"action\":\"reject\",\"symbols\":{},"
	  "\"messages\":{\"smtp_message\":\"Gtube \\\"x\\\" \\u00e9\"}}", 0, 15, "reject", 0 },
	{ "nested unknowns skipped", "{\"milter\":{\"add_headers\":{\"X\":{\"value\":\"v\",\"order\":[0,[1,{}]]}}},"
	  "\"score\":-2,\"flag\":true,\"n\":null}", 0, -2, "", 0 },
	{ "no score", "{\"action\": \"reject\"}", -1, 0, NULL, 0 },
	{ "truncated", "{\"score\": 1.2, \"symbols\": {\"A\": {", -1, 0, NULL, 0 },
	{ "trailing garbage", "{\"score\": 1}x", -1, 0, NULL, 0 },
	{ "not an object", "[1,2]", -1, 0, NULL, 0 },
	{ "control char in string", "{\"score\": 1, \"action\": \"a\nb\"}", -1, 0, NULL, 0 },
	{ "deep nesting", "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"score\":1}",
	  -1, 0, NULL, 0 },
	{ "empty", "", -1, 0, NULL, 0 },
};

static void test_rspamd_json(void **state)
{
	for (size_t i = 0; i < sizeof(json_rows) / sizeof(json_rows[0]); i++) {
		const struct json_row *r = &json_rows[i];
		struct rspamd_result res;
		struct sym_acc acc = { "", 0, 0 };
		int rc = json_parse(r->json, &res, sym_cb, &acc);

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (rc == 0 && (res.score != r->score || strcmp(res.action, r->action) != 0 || acc.n != r->nsyms))
			fail_msg("row \"%s\": score %g action \"%s\" symbols %d", r->label, res.score, res.action, acc.n);
	}
}

/* The reply's "milter" block: the operations reported in the reply's order, removes and
 * adds apart (rspamd's milter applies the removes first), each value form rspamd 3.x sends. */
struct hop_acc { char s[512]; };

static void hop_cb(void *arg, const struct rspamd_header_op *op)
{
	struct hop_acc *a = arg;
	size_t n = strlen(a->s);

	if (op->remove)
		snprintf(a->s + n, sizeof(a->s) - n, "R:%s:%ld;", op->name, op->index);
	else if (op->kind != RSPAMD_OP_HEADER)
		snprintf(a->s + n, sizeof(a->s) - n, "%d:%s=%s%s;", (int)op->kind, op->name ? op->name : "-", op->value,
		    op->cut ? "!" : "");
	else
		snprintf(a->s + n, sizeof(a->s) - n, op->insert ? "A:%s=%s@%ld%s;" : "A:%s=%s%.0ld%s;", op->name, op->value,
		    op->insert ? op->index : 0, op->cut ? "!" : "");
}

struct milter_row { const char *label, *json; enum rspamd_milter_part removes; int rc; const char *ops; };

static const struct milter_row milter_rows[] = {
	{ "no milter block", "{\"score\": 1}", false, 0, "" },
	{ "string, object with order, array", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-A\": \"a\", "
	  "\"X-B\": {\"value\": \"b\", \"order\": 1}, \"X-C\": [{\"value\": \"c1\"}, \"c2\"]}, "
	  "\"remove_headers\": {\"X-D\": 0}}}", false, 0, "A:X-A=a;A:X-B=b@1;A:X-C=c1;A:X-C=c2;" },
	{ "the removes of the same", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-A\": \"a\"}, "
	  "\"remove_headers\": {\"X-D\": 0, \"X-E\": -1, \"X-F\": 2, \"X-G\": \"1\", \"X-H\": null}}}", true, 0,
	  "R:X-D:0;R:X-E:-1;R:X-F:2;" },
	{ "order null: appended", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-A\": {\"value\": \"a\", "
	  "\"order\": null}}}}", false, 0, "A:X-A=a;" },
	/* rspamd_milter.c counts a negative order from the end (the plugin resolves it against
	 * the header block rspamd was shown); beyond the bounds as far as it goes */
	{ "negative orders kept, out of bounds clamped", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-B\": {\"value\": \"b\", "
	  "\"order\": -3}, \"X-C\": {\"index\": -1, \"value\": \"c\"}, \"X-D\": {\"value\": \"d\", \"order\": -1e9}, "
	  "\"X-E\": {\"value\": \"e\", \"order\": 123456}, \"X-F\": {\"value\": \"f\", \"order\": 2.7}}}}", false, 0,
	  "A:X-B=b@-3;A:X-C=c@-1;A:X-D=d@-10000;A:X-E=e@10000;A:X-F=f@2;" },
	{ "an object without value: nothing", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-A\": {\"order\": 0}}}}", false, 0, "" },
	{ "not an object: skipped", "{\"score\": 1, \"milter\": {\"add_headers\": [1, 2], \"remove_headers\": \"x\"}}", false, 0, "" },
	{ "malformed", "{\"score\": 1, \"milter\": {\"add_headers\": {\"X-A\": }}}", false, -1, "" },
	/* what rspamd 3.4 sends (task:set_milter_reply; dkim_signing's default) */
	{ "envelope: change_from, add_rcpt, del_rcpt", "{\"score\": 1, \"milter\": {\"add_rcpt\": [\"a@x.test\", 1, \"<b@x.test>\"], "
	  "\"change_from\": \"f@x.test\", \"del_rcpt\": [\"c@x.test\"], \"add_headers\": {\"X-A\": \"a\"}}}",
	  RSPAMD_MILTER_ENVELOPE, 0, "2:add_rcpt=a@x.test;2:add_rcpt=<b@x.test>;1:change_from=f@x.test;3:del_rcpt=c@x.test;" },
	{ "envelope: not a string or an array: skipped", "{\"score\": 1, \"milter\": {\"change_from\": 1, \"add_rcpt\": \"a@x.test\"}}",
	  RSPAMD_MILTER_ENVELOPE, 0, "" },
	{ "spam_header, string form", "{\"score\": 1, \"milter\": {\"spam_header\": \"spammy\", \"add_rcpt\": [\"a@x.test\"]}}",
	  RSPAMD_MILTER_SPAM_HEADER, 0, "4:-=spammy;" },
	{ "spam_header, object form", "{\"score\": 1, \"milter\": {\"spam_header\": {\"X-S\": \"y\", \"X-T\": 2}}}",
	  RSPAMD_MILTER_SPAM_HEADER, 0, "4:X-S=y;" },
	{ "top-level dkim-signature, one", "{\"score\": 1, \"dkim-signature\": \"v=1; d=x\", \"milter\": {\"add_headers\": {\"X-A\": \"a\"}}}",
	  RSPAMD_MILTER_DKIM, 0, "A:DKIM-Signature=v=1; d=x@1;" },
	{ "top-level dkim-signature, an array: at 1, 2", "{\"score\": 1, \"dkim-signature\": [\"s1\", \"s2\"]}",
	  RSPAMD_MILTER_DKIM, 0, "A:DKIM-Signature=s1@1;A:DKIM-Signature=s2@2;" },
	{ "the dkim-signature is no add of the milter block", "{\"score\": 1, \"dkim-signature\": \"s1\"}", RSPAMD_MILTER_ADDS, 0, "" },
};

/* The "milter" block's switches, read with the result. */
static void test_rspamd_json_milter_flags(void **state)
{
	struct rspamd_result res;
	static const char *j1 = "{\"score\": 1, \"action\": \"reject\", \"milter\": {\"reject\": \"discard\", "
	    "\"no_action\": true, \"spam_header\": \"x\"}}";
	static const char *j2 = "{\"score\": 1, \"milter\": {\"reject\": \"quarantine\", \"no_action\": false}}";
	static const char *j3 = "{\"score\": 1, \"milter\": {\"reject\": \"other\", \"no_action\": \"yes\"}}";

	(void)state;
	assert_int_equal(json_parse(j1, &res, NULL, NULL), 0);
	assert_true(res.milter_discard && !res.milter_quarantine && res.milter_no_action && res.has_spam_header);
	assert_int_equal(json_parse(j2, &res, NULL, NULL), 0);
	assert_true(!res.milter_discard && res.milter_quarantine && !res.milter_no_action && !res.has_spam_header);
	assert_int_equal(json_parse(j3, &res, NULL, NULL), 0);
	assert_true(!res.milter_discard && !res.milter_quarantine && !res.milter_no_action);
}

static void test_rspamd_json_milter(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(milter_rows) / sizeof(milter_rows[0]); i++) {
		const struct milter_row *r = &milter_rows[i];
		struct hop_acc a = { "" };
		struct rspamd_reply rp;
		int rc = rspamd_reply_parse(r->json, strlen(r->json), &rp);

		if (rc == 0)
			rspamd_reply_ops(&rp, r->removes, hop_cb, &a);
		rspamd_reply_free(&rp);

		if (rc != r->rc || (rc == 0 && strcmp(a.s, r->ops) != 0))
			fail_msg("row \"%s\": rc %d ops \"%s\", want %d \"%s\"", r->label, rc, a.s, r->rc, r->ops);
	}
}

/* \uXXXX escapes in rspamd's strings (its JSON emitter may escape what is not ASCII, and so
 * may a proxy in front of it): decoded to UTF-8, surrogate pairs joined, a lone surrogate
 * refused; the value cut only between characters, and said cut exactly. Before, every
 * \uXXXX became '?', so a rewritten subject "Caf\u00e9" reached the message as "Caf?". */
struct uni_row { const char *label, *value; int rc; const char *subject; bool cut; };

static const struct uni_row uni_rows[] = {
	{ "two-octet character", "Caf\\u00e9", 0, "Caf\xc3\xa9", false },
	{ "three-octet character, upper-case hex", "\\u20AC 5", 0, "\xe2\x82\xac 5", false },
	{ "surrogate pair: four octets", "x\\ud83d\\ude00y", 0, "x\xf0\x9f\x98\x80y", false },
	{ "ASCII by escape", "\\u0041\\u002f", 0, "A/", false },
	{ "NUL, which a C string cannot hold", "a\\u0000b", 0, "a?b", false },
	{ "raw UTF-8 kept", "Caf\xc3\xa9", 0, "Caf\xc3\xa9", false },
	{ "lone high surrogate at the end", "x\\ud83d", -1, NULL, false },
	{ "high surrogate then a character", "x\\ud83dy", -1, NULL, false },
	{ "high surrogate then another escape", "x\\ud83d\\u0041", -1, NULL, false },
	{ "two high surrogates", "\\ud83d\\ud83d", -1, NULL, false },
	{ "lone low surrogate", "\\ude00", -1, NULL, false },
	{ "three hex digits", "\\u00e", -1, NULL, false },
	{ "not hex", "\\u00g9", -1, NULL, false },
};

/* A reply of many tiny entries (a 1 MiB {"add_rcpt": ["", "", ...]}: 3 octets of JSON, 20
 * kept each) held seven times its size while it was read: at most RSPAMD_REPLY_ENTRIES_MAX
 * symbols and as many operations are kept, a reply with more is refused (-2, nothing kept;
 * the plugin's on_error). */
static char *json_many(const char *head, const char *entry, size_t n, const char *tail)
{
	size_t el = strlen(entry), len = strlen(head) + n * (el + 1) + strlen(tail) + 1;
	char *j = malloc(len), *p = j;

	assert_non_null(j);
	p += sprintf(p, "%s", head);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, i ? ",%s" : "%s", entry);
	sprintf(p, "%s", tail);
	return j;
}

static void test_rspamd_json_bounds(void **state)
{
	struct rspamd_reply rp;
	size_t n1mib = (1024u * 1024u) / 3;
	char *j, sym[32];

	(void)state;
	j = json_many("{\"score\":1,\"milter\":{\"add_rcpt\":[", "\"\"", RSPAMD_REPLY_ENTRIES_MAX, "]}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), 0);
	assert_int_equal(rp.ops_len / 20, RSPAMD_REPLY_ENTRIES_MAX);
	rspamd_reply_free(&rp);
	free(j);
	j = json_many("{\"score\":1,\"milter\":{\"add_rcpt\":[", "\"\"", RSPAMD_REPLY_ENTRIES_MAX + 1, "]}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), -2);
	assert_null(rp.ops);
	assert_null(rp.str);
	rspamd_reply_free(&rp);
	free(j);
	/* the reply of the report: 1 MiB of empty recipients, refused with little kept */
	j = json_many("{\"score\":1,\"milter\":{\"add_rcpt\":[", "\"\"", n1mib, "]}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), -2);
	rspamd_reply_free(&rp);
	free(j);
	/* header removes and adds count as operations too */
	j = json_many("{\"score\":1,\"milter\":{\"remove_headers\":{", "\"X\":1", RSPAMD_REPLY_ENTRIES_MAX + 1, "}}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), -2);
	rspamd_reply_free(&rp);
	free(j);
	/* symbols: 4096 kept, one more refused */
	j = json_many("{\"score\":1,\"symbols\":{", "\"S\":{}", RSPAMD_REPLY_ENTRIES_MAX, "}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), 0);
	rspamd_reply_free(&rp);
	free(j);
	j = json_many("{\"score\":1,\"symbols\":{", "\"S\":{}", RSPAMD_REPLY_ENTRIES_MAX + 1, "}}");
	assert_int_equal(rspamd_reply_parse(j, strlen(j), &rp), -2);
	assert_null(rp.syms);
	rspamd_reply_free(&rp);
	free(j);
	/* malformed stays -1 */
	snprintf(sym, sizeof(sym), "{\"score\":1,");
	assert_int_equal(rspamd_reply_parse(sym, strlen(sym), &rp), -1);
	rspamd_reply_free(&rp);
}

static void test_rspamd_json_unicode(void **state)
{
	static struct rspamd_result res;
	static char json[4096], want[1100];

	for (size_t i = 0; i < sizeof(uni_rows) / sizeof(uni_rows[0]); i++) {
		const struct uni_row *r = &uni_rows[i];
		int rc;

		snprintf(json, sizeof(json), "{\"score\": 1, \"action\": \"rewrite subject\", \"subject\": \"%s\"}",
		    r->value);
		rc = json_parse(json, &res, NULL, NULL);
		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (rc == 0 && (strcmp(res.subject, r->subject) != 0 || res.subject_cut != r->cut))
			fail_msg("row \"%s\": subject \"%s\" cut %d", r->label, res.subject, res.subject_cut);
	}
	/* "soft reject" spelt with an escape is still the action */
	snprintf(json, sizeof(json), "{\"score\": 1, \"action\": \"soft\\u0020reject\"}");
	assert_int_equal(json_parse(json, &res, NULL, NULL), 0);
	assert_string_equal(res.action, "soft reject");
	/* a subject of 1,021 octets and a two-octet character fills the 1,024 of the buffer
	 * exactly (1,023 and the NUL): kept whole, not said cut */
	memset(want, 'a', 1021);
	snprintf(json, sizeof(json), "{\"score\": 1, \"subject\": \"%.1021s\\u00e9\"}", want);
	assert_int_equal(json_parse(json, &res, NULL, NULL), 0);
	assert_int_equal(strlen(res.subject), 1023);
	assert_false(res.subject_cut);
	/* one octet more: the character does not fit and is not cut in half; said cut */
	snprintf(json, sizeof(json), "{\"score\": 1, \"subject\": \"%.1021sb\\u00e9\"}", want);
	assert_int_equal(json_parse(json, &res, NULL, NULL), 0);
	assert_int_equal(strlen(res.subject), 1022);
	assert_int_equal(res.subject[1021], 'b');
	assert_true(res.subject_cut);
	/* a four-octet character two octets from the end: not cut in half either */
	snprintf(json, sizeof(json), "{\"score\": 1, \"subject\": \"%.1021s\\ud83d\\ude00\"}", want);
	assert_int_equal(json_parse(json, &res, NULL, NULL), 0);
	assert_int_equal(strlen(res.subject), 1021);
	assert_true(res.subject_cut);
	/* smtp_message as rspamd gave it, controls too: the reply it goes into is cleaned as
	 * every filter's (plugins.c plugin_reply_clean; test_spamd_rspamd's CTLMSG) */
	snprintf(json, sizeof(json), "{\"score\": 1, \"messages\": {\"smtp_message\": \"Caf\\u00e9!\\u001b\"}}");
	assert_int_equal(json_parse(json, &res, NULL, NULL), 0);
	assert_string_equal(res.smtp_message, "Caf\xc3\xa9!\x1b");
}

static void test_rspamd_http(void **state)
{
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
	const char *partial = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd";
	const char *noclen = "HTTP/1.0 200 OK\r\n\r\nxyz";
	const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd";
	const char *bad = "SMTP 220 hello\r\n\r\n";
	const char *body;
	size_t blen;
	int status;

	assert_int_equal(rspamd_http_parse(ok, strlen(ok), false, &status, &body, &blen, NULL), 0);
	assert_int_equal(status, 200);
	assert_int_equal(blen, 4);
	assert_memory_equal(body, "abcd", 4);
	assert_int_equal(rspamd_http_parse(partial, strlen(partial), false, &status, &body, &blen, NULL), 1);
	assert_int_equal(rspamd_http_parse(partial, strlen(partial), true, &status, &body, &blen, NULL), -1);
	assert_int_equal(rspamd_http_parse(noclen, strlen(noclen), false, &status, &body, &blen, NULL), 1);
	assert_int_equal(rspamd_http_parse(noclen, strlen(noclen), true, &status, &body, &blen, NULL), 0);
	assert_int_equal(blen, 3);
	assert_int_equal(rspamd_http_parse(chunked, strlen(chunked), true, &status, &body, &blen, NULL), -1);
	assert_int_equal(rspamd_http_parse(bad, strlen(bad), true, &status, &body, &blen, NULL), -1);
	assert_int_equal(rspamd_http_parse("HTTP/1.1 2", 10, false, &status, &body, &blen, NULL), 1);
	/* Content-Length's digits are read on its line only (found by fuzz_rspamd_reply:
	 * strtol skipped the empty value's line end, read the body's digits and, the buffer
	 * being unterminated, past its end) */
	const char *emptycl = "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n12";
	const char *junkcl = "HTTP/1.1 200 OK\r\nContent-Length: 4x\r\n\r\nabcd";
	const char *spacecl = "HTTP/1.1 200 OK\r\nContent-Length:\t 4 \r\n\r\nabcd";
	const char *fuzzed = "HTTP/1.1 200 O\nContent-Length:\r\n\r\n";
	char *exact = malloc(strlen(fuzzed));

	assert_non_null(exact);
	memcpy(exact, fuzzed, strlen(fuzzed));          /* no NUL after it */
	assert_int_equal(rspamd_http_parse(exact, strlen(fuzzed), true, &status, &body, &blen, NULL), -1);
	free(exact);
	assert_int_equal(rspamd_http_parse(emptycl, strlen(emptycl), true, &status, &body, &blen, NULL), -1);
	assert_int_equal(rspamd_http_parse(junkcl, strlen(junkcl), true, &status, &body, &blen, NULL), -1);
	assert_int_equal(rspamd_http_parse(spacecl, strlen(spacecl), true, &status, &body, &blen, NULL), 0);
	assert_int_equal(blen, 4);
	/* rspamd's body block (Flags: body_block): Message-Offset splits the JSON from the
	 * rewritten body; one past the body or not a number is malformed (the entry's on_error) */
	const char *block = "HTTP/1.1 200 OK\r\nMessage-Offset: 4\r\nContent-Length: 6\r\n\r\n{}{}xy";
	const char *atend = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nmessage-offset:4\r\n\r\n{}{}";
	const char *past = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nMessage-Offset: 5\r\n\r\n{}{}";
	const char *junk = "HTTP/1.1 200 OK\r\nMessage-Offset: -1\r\n\r\n{}{}";
	long off = 7;

	assert_int_equal(rspamd_http_parse(ok, strlen(ok), false, &status, &body, &blen, &off), 0);
	assert_int_equal(off, -1);
	assert_int_equal(rspamd_http_parse(block, strlen(block), false, &status, &body, &blen, &off), 0);
	assert_int_equal(off, 4);
	assert_int_equal(blen, 6);
	assert_memory_equal(body + off, "xy", 2);
	assert_int_equal(rspamd_http_parse(atend, strlen(atend), false, &status, &body, &blen, &off), 0);
	assert_int_equal(off, 4);
	assert_int_equal(rspamd_http_parse(past, strlen(past), false, &status, &body, &blen, &off), -1);
	assert_int_equal(rspamd_http_parse(junk, strlen(junk), true, &status, &body, &blen, &off), -1);
}

/* rspamd's reply read as it comes (rspamd_reader): each row fed whole, one octet a read, and
 * split in two at every octet; the outcome, the JSON kept and the body block given to the
 * sink must not depend on how the reply was cut. */
struct reader_row {
	const char *label, *reply;
	bool eof;
	size_t head_max;
	uint64_t body_max;
	int rc;
	const char *json, *block;   /* with rc 0 */
	long offset;
};

static const struct reader_row reader_rows[] = {
	{ "body block after the JSON", "HTTP/1.1 200 OK\r\nMessage-Offset: 4\r\nContent-Length: 10\r\n\r\n{}{}abcdef",
	  false, 1024, 100, 0, "{}{}", "abcdef", 4 },
	{ "no Message-Offset: all of it JSON", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd", false, 1024, 100, 0,
	  "abcd", "", -1 },
	{ "octets past Content-Length ignored", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA", false, 1024, 100,
	  0, "abcd", "", -1 },
	{ "offset at the end: no block", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nmessage-offset:4\r\n\r\n{}{}", false,
	  1024, 100, 0, "{}{}", "", 4 },
	{ "Content-Length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 1024, 100, 0, "", "", -1 },
	{ "without Content-Length: to the close", "HTTP/1.0 200 OK\r\nMessage-Offset: 2\r\n\r\n{}xyz", true, 1024, 100,
	  0, "{}", "xyz", 2 },
	{ "without Content-Length, open: more to read", "HTTP/1.0 200 OK\r\n\r\nxyz", false, 1024, 100, 1 },
	{ "cut short of Content-Length at the close", "HTTP/1.1 200 OK\r\nMessage-Offset: 2\r\nContent-Length: 9\r\n\r\n{}ab",
	  true, 1024, 100, -1 },
	{ "short of Content-Length, open: more to read", "HTTP/1.1 200 OK\r\nMessage-Offset: 2\r\nContent-Length: 9\r\n\r\n{}ab",
	  false, 1024, 100, 1 },
	{ "offset past Content-Length: malformed at once", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nMessage-Offset: 5\r\n\r\n",
	  false, 1024, 100, -1 },
	{ "offset past the body at the close", "HTTP/1.1 200 OK\r\nMessage-Offset: 9\r\n\r\n{}{}", true, 1024, 100, -1 },
	{ "head without its blank line at the close", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n", true, 1024, 100, -1 },
	{ "head unfinished, open: more to read", "HTTP/1.1 2", false, 1024, 100, 1 },
	{ "CR CR LF CR LF ends the head", "HTTP/1.1 200 OK\r\r\n\r\nab", true, 1024, 100, 0, "ab", "", -1 },
	{ "CR LF CR CR LF does not", "HTTP/1.1 200 OK\r\n\r\r\nab", true, 1024, 100, -1 },
	{ "chunked refused", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd", true, 1024, 100, -1 },
	{ "no HTTP", "SMTP 220 hello\r\n\r\n", true, 1024, 100, -1 },
	{ "Message-Offset no number", "HTTP/1.1 200 OK\r\nMessage-Offset: x1\r\n\r\n{}", true, 1024, 100, -1 },
	{ "JSON past head_max", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{}{}{}{}", false, 40, 100, -2 },
	{ "JSON exactly at head_max", "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{}{}{}{}", false, 46, 100, 0,
	  "{}{}{}{}", "", -1 },
	{ "block past body_max", "HTTP/1.1 200 OK\r\nMessage-Offset: 2\r\nContent-Length: 8\r\n\r\n{}abcdef", false, 1024, 5,
	  -2 },
	{ "block exactly at body_max", "HTTP/1.1 200 OK\r\nMessage-Offset: 2\r\nContent-Length: 8\r\n\r\n{}abcdef", false,
	  1024, 6, 0, "{}", "abcdef", 2 },
	{ "the sink fails", "HTTP/1.1 200 OK\r\nMessage-Offset: 2\r\nContent-Length: 8\r\n\r\n{}FAILab", false, 1024, 100,
	  -3 },
};

struct reader_sink { char got[256]; size_t len; };

static int reader_sink_cb(void *arg, const char *data, size_t len)
{
	struct reader_sink *k = arg;

	if (len > sizeof(k->got) - k->len)
		return -1;
	memcpy(k->got + k->len, data, len);
	k->len += len;
	return memmem(k->got, k->len, "FAIL", 4) ? -1 : 0;
}

/* Feeds row's reply in reads of at most step octets (the first read first octets when
 * first > 0), then the close when the row says; checks the outcome. */
static void reader_check(const struct reader_row *rw, size_t first, size_t step)
{
	struct rspamd_reader r;
	struct reader_sink k = { .len = 0 };
	size_t len = strlen(rw->reply), at = 0, jl;
	int rc = 1;

	rspamd_reader_init(&r, rw->head_max, rw->body_max, reader_sink_cb, &k);
	while (at < len && rc == 1) {
		size_t n = first && at == 0 ? first : step;

		if (n > len - at)
			n = len - at;
		rc = rspamd_reader_feed(&r, rw->reply + at, n, false);
		at += n;
	}
	rc = rspamd_reader_feed(&r, NULL, 0, rw->eof);
	if (rc != rw->rc)
		fail_msg("%s (first %zu, step %zu): %d, want %d", rw->label, first, step, rc, rw->rc);
	if (rc != 1)
		assert_int_equal(rspamd_reader_feed(&r, "x", 1, true), rc);   /* settled */
	if (rc == 0) {
		const char *json = rspamd_reader_json(&r, &jl);

		if (jl != strlen(rw->json) || memcmp(json, rw->json, jl) != 0 || json[jl] != '\0' ||
		    k.len != strlen(rw->block) || memcmp(k.got, rw->block, k.len) != 0 || r.block_len != k.len ||
		    r.offset != rw->offset || r.status != 200)
			fail_msg("%s (first %zu, step %zu): json '%.*s' block '%.*s' offset %ld", rw->label, first, step,
			    (int)jl, json, (int)k.len, k.got, r.offset);
	}
	assert_true(r.len <= rw->head_max);
	rspamd_reader_free(&r);
	rspamd_reader_free(NULL);
}

static void test_rspamd_reader(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reader_rows) / sizeof(reader_rows[0]); i++) {
		const struct reader_row *rw = &reader_rows[i];
		size_t len = strlen(rw->reply);

		reader_check(rw, 0, len ? len : 1);          /* whole */
		reader_check(rw, 0, 1);                      /* an octet a read */
		for (size_t cut = 1; cut < len; cut++)       /* two reads */
			reader_check(rw, cut, len);
	}
}

/* A head that does not end within 64 KiB is no HTTP reply (bounded: it is not kept
 * growing); one that ends at 64 KiB is read. */
static void test_rspamd_reader_head_max(void **state)
{
	size_t n = 65536;
	char *big = malloc(n + 16);
	struct rspamd_reader r;

	(void)state;
	assert_non_null(big);
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(big + 20, 'a', n - 20);
	rspamd_reader_init(&r, 1 << 20, 0, NULL, NULL);
	assert_int_equal(rspamd_reader_feed(&r, big, n, false), 1);
	assert_int_equal(rspamd_reader_feed(&r, "a", 1, false), -1);
	assert_true(r.len <= n);
	rspamd_reader_free(&r);
	memcpy(big + n - 4, "\r\n\r\n", 4);
	rspamd_reader_init(&r, 1 << 20, 0, NULL, NULL);
	assert_int_equal(rspamd_reader_feed(&r, big, n, true), 0);
	assert_int_equal(r.hlen, n);
	rspamd_reader_free(&r);
	free(big);
}

/* ------------------------------------------------------------------- addresses */

struct addr_row { const char *label, *text; int rc; bool is_unix; int port; };

static const struct addr_row addr_rows[] = {
	{ "host:port", "127.0.0.1:3310", 0, false, 3310 },
	{ "inet:host:port", "inet:127.0.0.1:8891", 0, false, 8891 },
	{ "sendmail port@host", "inet:8891@127.0.0.1", 0, false, 8891 },
	{ "ipv6 brackets", "[::1]:783", 0, false, 783 },
	{ "inet6 sendmail", "inet6:783@::1", 0, false, 783 },
	{ "unix", "unix:/run/clamd.sock", 0, true, 0 },
	{ "local", "local:/run/milter.sock", 0, true, 0 },
	{ "bare path", "/run/x.sock", 0, true, 0 },
	{ "localhost", "localhost:25", 0, false, 25 },
	{ "no port", "127.0.0.1", -1, false, 0 },
	{ "port zero", "127.0.0.1:0", -1, false, 0 },
	{ "port too big", "127.0.0.1:70000", -1, false, 0 },
	{ "hostname", "clamd.example:3310", -1, false, 0 },
	{ "empty unix", "unix:", -1, false, 0 },
	{ "relative local (Postfix: from its queue directory)", "local:relative.sock", -1, false, 0 },
	{ "relative unix", "unix:run/milter.sock", -1, false, 0 },
	{ "dot-relative unix", "unix:./milter.sock", -1, false, 0 },
	{ "empty", "", -1, false, 0 },
};

static void test_addresses(void **state)
{
	for (size_t i = 0; i < sizeof(addr_rows) / sizeof(addr_rows[0]); i++) {
		const struct addr_row *r = &addr_rows[i];
		struct pconn_addr a;
		const char *why = NULL;
		int rc = pconn_addr_parse(r->text, &a, &why);

		if (rc != r->rc)
			fail_msg("row \"%s\": rc %d, want %d", r->label, rc, r->rc);
		if (rc == 0 && a.is_unix != r->is_unix)
			fail_msg("row \"%s\": unix %d", r->label, a.is_unix);
		if (rc == 0 && !a.is_unix) {
			int port = ntohs(((struct sockaddr_in *)&a.sa)->sin_port);

			if (port != r->port)
				fail_msg("row \"%s\": port %d, want %d", r->label, port, r->port);
		}
	}
}

/* ------------------------------------------------------------------- the chain */

struct harness {
	uv_loop_t loop;
	uv_timer_t timer;
	struct mx_config *cfg;
	struct chain_modules mods;
	struct chain chain;
	struct hook_env env;
	bool done;
	struct verdict v;
	char path[256];
};

static int harness_setup(struct harness *h, const char *plugins_yaml)
{
	const char *build = getenv("MX_BUILD_DIR");
	char so[512];
	FILE *f;

	if (build == NULL)
		build = "build";
	snprintf(so, sizeof(so), "%s/example_plugin.so", build);
	if (access(so, R_OK) != 0)
		return -1;
	snprintf(h->path, sizeof(h->path), "/tmp/test_plugins_%d.yaml", (int)getpid());
	f = fopen(h->path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\nlisten:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\nplugins:\n");
	fprintf(f, plugins_yaml, so, so);
	fclose(f);
	assert_int_equal(config_load(h->path, &h->cfg, stderr), 0);
	uv_loop_init(&h->loop);
	uv_timer_init(&h->loop, &h->timer);
	chain_modules_init(&h->mods, h->cfg, &h->loop, 0);
	memset(&h->env, 0, sizeof(h->env));
	h->env.session_id = "t0001";
	h->env.loop = &h->loop;
	h->env.cfg = h->cfg;
	snprintf(h->env.client_ip, sizeof(h->env.client_ip), "192.0.2.1");
	h->env.mail_from = "a@example.org";
	h->env.mail_params = "";
	h->env.cur_rcpt = "b@example.test";
	h->env.cur_rcpt_params = "";
	chain_init(&h->chain, &h->mods, &h->env, &h->timer);
	h->timer.data = &h->chain;
	return 0;
}

static void harness_done_cb(void *arg, const struct verdict *v)
{
	struct harness *h = arg;

	h->done = true;
	h->v = *v;
}

static void harness_timer_cb(uv_timer_t *t)
{
	chain_on_timeout(t->data);
}

/* Runs one stage to completion on the loop. */
static void harness_run(struct harness *h, enum hook_stage st)
{
	h->done = false;
	memset(&h->v, 0, sizeof(h->v));
	(void)harness_timer_cb;
	chain_run(&h->chain, st, harness_done_cb, h);
	while (!h->done)
		uv_run(&h->loop, UV_RUN_ONCE);
}

static void harness_close_cb(uv_handle_t *hd)
{
}

static void harness_teardown(struct harness *h)
{
	harness_run(h, HOOK_CLOSE);
	chain_release(&h->chain);
	hook_env_free_outputs(&h->env);
	msgbuf_free(h->env.msg);
	chain_modules_free(&h->mods);
	uv_close((uv_handle_t *)&h->timer, harness_close_cb);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_loop_close(&h->loop);
	config_free(h->cfg);
	unlink(h->path);
}

static void harness_message(struct harness *h, const char *text)
{
	msgbuf_free(h->env.msg);
	h->env.msg = msgbuf_new(1 << 20, NULL);
	assert_int_equal(msgbuf_append(h->env.msg, text, strlen(text)), 0);
}

/* A re-resolution publishes a peer name's new addresses (proxy/backendres.h): a change is
 * reported (the order alone is none), and an address parsed before takes them at its next
 * connection (pconn_new reads them by the name the parser kept). */
static void test_names_republished(void **state)
{
	(void)state;
	struct sockaddr_storage v[2];
	struct sockaddr_in *a0 = (struct sockaddr_in *)&v[0], *a1 = (struct sockaddr_in *)&v[1];
	struct pconn_addr pa;
	const char *why;

	memset(v, 0, sizeof(v));
	a0->sin_family = a1->sin_family = AF_INET;
	inet_pton(AF_INET, "10.0.0.1", &a0->sin_addr);
	inet_pton(AF_INET, "10.0.0.2", &a1->sin_addr);
	assert_int_equal(pconn_names_publish_all("peer.republished.test", v, 2), 1);	/* new */
	assert_int_equal(pconn_addr_parse("inet:peer.republished.test:3310", &pa, &why), 0);
	assert_string_equal(pa.name, "peer.republished.test");
	assert_int_equal(pa.nmore, 1);
	struct sockaddr_storage sw[2] = { v[1], v[0] };
	assert_int_equal(pconn_names_publish_all("PEER.republished.test", sw, 2), 0);	/* order only */
	assert_int_equal(pconn_names_publish_all("peer.republished.test", &v[1], 1), 1);	/* moved */
	struct sockaddr_storage got[4];
	assert_int_equal(pconn_names_get("peer.republished.test", got, 4), 1);
	assert_memory_equal(&((struct sockaddr_in *)&got[0])->sin_addr, &a1->sin_addr, sizeof(a1->sin_addr));
	assert_int_equal(pconn_names_get("other.republished.test", got, 4), 0);
	assert_int_equal(pconn_addr_parse("127.0.0.1:3310", &pa, &why), 0);
	assert_string_equal(pa.name, "");	/* an IP address: nothing to look up again */
}

static void left_event_cb(struct pconn *c, enum pconn_event ev, const char *data, size_t len, int err,
    void *arg)
{
	(void)c; (void)data; (void)len; (void)err;
	if (ev == PCONN_CONNECTED)
		*(int *)arg = 1;
}

/* A connection kept across messages (a session's milter) learns that its host name left
 * the address it went to (pconn_address_left): false while the name still has it (another
 * address added is no move), true once republished without it; never for an IP address. */
static void test_address_left(void **state)
{
	(void)state;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t slen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), up = 0, upip = 0;
	struct sockaddr_storage v[2];
	struct pconn_addr pa, ip;
	const char *why;
	char text[64];
	uv_loop_t loop;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
	memset(v, 0, sizeof(v));
	v[0].ss_family = v[1].ss_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &((struct sockaddr_in *)&v[0])->sin_addr);
	inet_pton(AF_INET, "127.0.0.2", &((struct sockaddr_in *)&v[1])->sin_addr);
	pconn_names_publish_all("milter.left.test", v, 1);
	snprintf(text, sizeof(text), "inet:milter.left.test:%u", (unsigned)ntohs(sa.sin_port));
	assert_int_equal(pconn_addr_parse(text, &pa, &why), 0);
	snprintf(text, sizeof(text), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
	assert_int_equal(pconn_addr_parse(text, &ip, &why), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	struct pconn *c = pconn_new(&loop, &pa, left_event_cb, &up), *cip = pconn_new(&loop, &ip, left_event_cb, &upip);
	assert_non_null(c);
	assert_non_null(cip);
	assert_false(pconn_address_left(c));            /* not connected yet */
	while (!up || !upip)
		uv_run(&loop, UV_RUN_ONCE);
	assert_false(pconn_address_left(c));
	pconn_names_publish_all("milter.left.test", v, 2);      /* one more address: still there */
	assert_false(pconn_address_left(c));
	pconn_names_publish_all("milter.left.test", &v[1], 1);  /* moved */
	assert_true(pconn_address_left(c));
	assert_false(pconn_address_left(cip));
	assert_false(pconn_address_left(NULL));
	pconn_close(c);
	pconn_close(cip);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	close(fd);
}

static void test_chain_example(void **state)
{
	struct harness h;
	const char *hdr;

	if (harness_setup(&h, "  - { name: ex, path: \"%s\", options: { word: MAGIC, rcpt_delay_ms: 20 } }\n") < 0)
		skip();
	harness_run(&h, HOOK_CONNECT);
	harness_run(&h, HOOK_MAIL);
	harness_run(&h, HOOK_RCPT);           /* completes from a uv timer */
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	harness_message(&h, "Subject: a\r\nX-B: folded\r\n continued\r\n\r\nhello\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	assert_int_equal(h.env.nhdr_edits, 1);
	hdr = h.env.hdr_edits[0].value;
	assert_string_equal(h.env.hdr_edits[0].name, "X-Example-Plugin");
	assert_non_null(strstr(hdr, "headers 2; body 7"));
	hook_env_reset_txn(&h.env);

	harness_run(&h, HOOK_MAIL);
	harness_message(&h, "Subject: b\r\n\r\nthe MAGIC word\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_REJECT);
	assert_int_equal(h.v.code, 550);
	assert_non_null(strstr(h.v.reply, "MAGIC"));
	assert_non_null(hook_env_find_symbol(&h.env, "EXAMPLE_MAGIC"));
	assert_int_equal(h.env.flags, HOOK_FLAG_SPAM);   /* set_flags, after its size check */
	harness_teardown(&h);
}

static void test_chain_timeout(void **state)
{
	struct harness h;
	uint64_t start;

	if (harness_setup(&h, "  - { name: slow, path: \"%s\", timeout: 100ms, on_error: reject, "
	    "options: { rcpt_delay_ms: 5000 } }\n"
	    "  - { name: fast, path: \"%s\", on_error: tempfail }\n") < 0)
		skip();
	harness_run(&h, HOOK_CONNECT);
	start = uv_now(&h.loop);
	harness_run(&h, HOOK_RCPT);
	assert_int_equal(h.v.action, VERDICT_REJECT);
	assert_true(uv_now(&h.loop) - start < 2000);
	/* The cancelled call left nothing behind: the next stage runs normally. */
	harness_message(&h, "Subject: c\r\n\r\nbody\r\n");
	harness_run(&h, HOOK_EOM);
	assert_int_equal(h.v.action, VERDICT_CONTINUE);
	assert_int_equal(h.env.nhdr_edits, 2);   /* both instances added their header */
	harness_teardown(&h);
}

/* ------------------------------------------------------------------- option tables */

/* Writes yaml (the `plugins:` items) into a config file and loads it; returns the load's
 * result, *cfg (NULL on failure) and the error lines in errs. */
static int load_plugins(const char *items, struct mx_config **cfg, char *errs, size_t errlen,
    char *path, size_t pathlen)
{
	FILE *f, *ef;
	char *buf = NULL;
	size_t blen = 0;
	int rc;

	snprintf(path, pathlen, "/tmp/test_plugins_opt_%d.yaml", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\nlisten:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\nplugins:\n%s", items);
	fclose(f);
	ef = open_memstream(&buf, &blen);
	assert_non_null(ef);
	*cfg = NULL;
	rc = config_load(path, cfg, ef);
	fclose(ef);
	snprintf(errs, errlen, "%s", buf ? buf : "");
	free(buf);
	unlink(path);
	return rc;
}

/* The typed option `key` of entry i (a built-in) as a uint64 / int. */
static const void *typed_option(const struct mx_config *cfg, size_t i, const char *key,
    enum cfg_type *type)
{
	const struct plugin_config *pc = (const struct plugin_config *)cfg->plugins.v + i;
	const struct cfg_field *f;

	assert_non_null(pc->options.table);
	assert_non_null(pc->options.typed);
	for (f = pc->options.table->fields; f->key; f++)
		if (strcmp(f->key, key) == 0) {
			*type = f->type;
			return (const char *)pc->options.typed + f->offset;
		}
	fail_msg("no option %s", key);
	return NULL;
}

struct orow {
	const char *label, *items;
	const char *key;        /* typed option of entry 0 to check (NULL: an error is wanted) */
	uint64_t want;          /* its value (size: bytes; enum: index; bool: 0/1) */
	const char *error;      /* a substring of the error output */
};

static const struct orow orows[] = {
	{ "clamd max_size with a unit is MiB, not bytes",
	  "  - { name: clamd, address: \"127.0.0.1:3310\", options: { max_size: 50M } }\n", "max_size", 50ull << 20, NULL },
	{ "clamd max_size default",
	  "  - { name: clamd, address: \"127.0.0.1:3310\" }\n", "max_size", 25ull << 20, NULL },
	{ "the entry's own max_size fills the option",
	  "  - { name: clamd, address: \"127.0.0.1:3310\", max_size: 2M }\n", "max_size", 2ull << 20, NULL },
	{ "the entry's own action fills the option",
	  "  - { name: clamd, address: \"127.0.0.1:3310\", action: quarantine }\n", "action", 1, NULL },
	{ "clamd options.action",
	  "  - { name: clamd, address: \"127.0.0.1:3310\", options: { action: tempfail } }\n", "action", 2, NULL },
	{ "spamd max_size in K", "  - { name: spamd, address: \"127.0.0.1:783\", options: { max_size: 64K, user: bob } }\n",
	  "max_size", 64 << 10, NULL },
	{ "rspamd use_action yes", "  - { name: rspamd, address: \"127.0.0.1:11333\", options: { use_action: yes } }\n",
	  "use_action", 1, NULL },
	{ "milter max_frame 2M", "  - { name: milter, address: \"inet:127.0.0.1:8891\", options: { max_frame: 2M } }\n",
	  "max_frame", 2ull << 20, NULL },
	{ "milter ignores the entry's max_size (as always)",
	  "  - { name: milter, address: \"inet:127.0.0.1:8891\", max_size: 1M }\n", "max_frame", 1025 << 10, NULL },
	{ "below the bound", "  - { name: milter, address: \"inet:127.0.0.1:8891\", options: { max_frame: 5 } }\n",
	  NULL, 0, ":8:75: plugins[0].options.max_frame: must be between 64K and 64M, got 5" },
	{ "above the bound", "  - { name: milter, address: \"inet:127.0.0.1:8891\", options: { max_frame: 1G } }\n",
	  NULL, 0, "plugins[0].options.max_frame:" },
	{ "zero is below spamd's bound", "  - { name: spamd, address: \"127.0.0.1:783\", options: { max_size: 0 } }\n",
	  NULL, 0, "plugins[0].options.max_size:" },
	{ "not a size", "  - { name: clamd, address: \"127.0.0.1:3310\", options: { max_size: lots } }\n",
	  NULL, 0, "plugins[0].options.max_size:" },
	{ "unknown option, with a hint", "  - { name: clamd, address: \"127.0.0.1:3310\", options: { max_sise: 1M } }\n",
	  NULL, 0, "plugins[0].options.max_sise: unknown key (did you mean \"max_size\"?)" },
	{ "bad enum", "  - { name: clamd, address: \"127.0.0.1:3310\", options: { action: explode } }\n",
	  NULL, 0, "plugins[0].options.action:" },
	{ "bad entry action", "  - { name: clamd, address: \"127.0.0.1:3310\", action: explode }\n",
	  NULL, 0, "plugins[0].action: clamd: unknown value \"explode\"" },
	{ "action for a plugin without one", "  - { name: spamd, address: \"127.0.0.1:783\", action: reject }\n",
	  NULL, 0, "plugins[0].action: spamd has no option action" },
	{ "given twice", "  - { name: clamd, address: \"127.0.0.1:3310\", max_size: 1M, options: { max_size: 2M } }\n",
	  NULL, 0, "plugins[0].max_size: also given under options" },
	{ "bool that is not one", "  - { name: rspamd, address: \"127.0.0.1:11333\", options: { use_action: maybe } }\n",
	  NULL, 0, "plugins[0].options.use_action:" },
	{ "options not a mapping", "  - { name: spamd, address: \"127.0.0.1:783\", options: 5 }\n",
	  NULL, 0, "plugins[0].options:" },
	{ "the built-in's own check still runs (bad user)",
	  "  - { name: spamd, address: \"127.0.0.1:783\", options: { user: \"a\\nb\" } }\n",
	  NULL, 0, "options.user: bad user name" },
};

static void test_option_tables(void **state)
{
	char errs[4096], path[128];

	for (size_t i = 0; i < sizeof(orows) / sizeof(orows[0]); i++) {
		const struct orow *r = &orows[i];
		struct mx_config *cfg;
		int rc = load_plugins(r->items, &cfg, errs, sizeof(errs), path, sizeof(path));

		if (r->key == NULL) {
			if (rc != -1 || cfg != NULL || strstr(errs, r->error) == NULL)
				fail_msg("row \"%s\": rc %d, errors:\n%s", r->label, rc, errs);
			/* FILE:LINE:COL: key: reason */
			if (strncmp(errs, path, strlen(path)) != 0 || errs[strlen(path)] != ':')
				fail_msg("row \"%s\": error without FILE:LINE:COL: %s", r->label, errs);
			continue;
		}
		if (rc != 0)
			fail_msg("row \"%s\": rc %d, errors:\n%s", r->label, rc, errs);
		enum cfg_type t = CFG_STRING;
		const void *v = typed_option(cfg, 0, r->key, &t);
		uint64_t got = t == CFG_SIZE ? *(const uint64_t *)v : t == CFG_ENUM ? (uint64_t)*(const int *)v :
		    t == CFG_BOOL ? (uint64_t)*(const bool *)v : 0;
		if (got != r->want)
			fail_msg("row \"%s\": %s = %llu, want %llu", r->label, r->key, (unsigned long long)got,
			    (unsigned long long)r->want);
		config_free(cfg);
	}
}

/* A shared object keeps getting its options as strings, whatever they look like. */
static void test_option_strings(void **state)
{
	const char *build = getenv("MX_BUILD_DIR");
	char items[1024], errs[2048], path[128], so[512];
	struct mx_config *cfg;
	const struct plugin_config *pc;

	snprintf(so, sizeof(so), "%s/example_plugin.so", build ? build : "build");
	if (access(so, R_OK) != 0)
		skip();
	snprintf(items, sizeof(items), "  - { name: ex, path: \"%s\", options: { word: 50M, rcpt_delay_ms: 5 } }\n", so);
	assert_int_equal(load_plugins(items, &cfg, errs, sizeof(errs), path, sizeof(path)), 0);
	pc = (const struct plugin_config *)cfg->plugins.v;
	assert_null(pc->options.table);
	assert_int_equal(pc->options.n, 2);
	assert_string_equal(pc->options.v[0].key, "word");
	assert_string_equal(pc->options.v[0].value, "50M");
	config_free(cfg);
	/* its own init judges unknown options */
	snprintf(items, sizeof(items), "  - { name: ex, path: \"%s\", options: { nope: 1 } }\n", so);
	assert_int_equal(load_plugins(items, &cfg, errs, sizeof(errs), path, sizeof(path)), -1);
	assert_non_null(strstr(errs, "unknown option `nope`"));
}

/* The reference lists each built-in's options with type, default and bounds, and the tables
 * pass the engine's self-check (every default parses within its bounds). */
static void test_option_docs(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_write_docs(f);
	fclose(f);
	assert_non_null(strstr(buf, "### `plugins[].options (clamd)`"));
	assert_non_null(strstr(buf, "### `plugins[].options (milter)`"));
	assert_non_null(strstr(buf, "### `plugins[].options (spamd)`"));
	assert_non_null(strstr(buf, "### `plugins[].options (rspamd)`"));
	assert_non_null(strstr(buf, "| `max_size` | size | `25M` |"));
	assert_non_null(strstr(buf, "| `max_frame` | size | `1025K` | 64K .. 64M |"));
	free(buf);
	assert_int_equal(cfg_table_selfcheck(&plugin_config_table, stderr), 0);
	assert_int_equal(cfg_table_selfcheck(&clamd_options_table, stderr), 0);
}

/* ------------------------------------------------------------------- the adapter */

/* A scripted plugin (an in-memory descriptor, as if loaded): instance i answers each stage
 * with at[stage], or never (timeouts). */
struct script {
	enum mxgate_action at[HOOK_NSTAGES];
	enum mxgate_action header_at;   /* answer to each on_header */
	int code;
	const char *reply, *reason;
	unsigned flags;                 /* set_flags at end of message */
	const char *symbol, *symbol_desc; /* add_symbol at end of message */
	bool never, fail_init;
	/* observed */
	int calls[HOOK_NSTAGES], headers, bodies, closes, cancels, inits, finis;
	char names[256];                /* each on_header's name and value, "name=value|" */
	struct mxgate_call *pending;
};

#define NSCRIPT 3
static struct script scripts[NSCRIPT];
static const struct mxgate_host *script_host;

static int script_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    void **instance, char *err, size_t errlen)
{
	struct script *sc = &scripts[args->name[1] - '0'];

	script_host = host;
	if (args->loop)
		sc->inits++;
	if (sc->fail_init) {
		snprintf(err, errlen, "scripted failure");
		return -1;
	}
	*instance = sc;
	return 0;
}

static void script_fini(void *instance)
{
	((struct script *)instance)->finis++;
}

static void script_answer(struct script *sc, struct mxgate_call *c, enum hook_stage st)
{
	sc->calls[st]++;
	if (st == HOOK_EOM && sc->flags)
		script_host->set_flags(c, sc->flags);
	if (st == HOOK_EOM && sc->symbol)
		script_host->add_symbol(c, sc->symbol, 1, sc->symbol_desc);
	if (sc->never) {
		sc->pending = c;
		return;
	}
	script_host->done(c, sc->at[st], sc->code, sc->reply, sc->reason);
}

static void script_connect(void *i, struct mxgate_call *c) { script_answer(i, c, HOOK_CONNECT); }
static void script_mail(void *i, struct mxgate_call *c) { script_answer(i, c, HOOK_MAIL); }
static void script_rcpt(void *i, struct mxgate_call *c) { script_answer(i, c, HOOK_RCPT); }
static void script_eom(void *i, struct mxgate_call *c) { script_answer(i, c, HOOK_EOM); }

static void script_header(void *i, struct mxgate_call *c, const char *name, const char *value)
{
	struct script *sc = i;

	sc->headers++;
	snprintf(sc->names + strlen(sc->names), sizeof(sc->names) - strlen(sc->names), "%s=%s|",
	    name, value);
	script_host->done(c, sc->header_at, 0, NULL, "header");
}

static void script_body(void *i, struct mxgate_call *c, const char *chunk, size_t len)
{
	((struct script *)i)->bodies++;
	script_host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}

static void script_close(void *i, struct mxgate_call *c)
{
	((struct script *)i)->closes++;
	script_host->done(c, MXGATE_REJECT, 0, NULL, NULL);   /* ignored */
}

static void script_cancel(void *i, struct mxgate_call *c)
{
	struct script *sc = i;

	sc->cancels++;
	assert_ptr_equal(c, sc->pending);
	sc->pending = NULL;
	script_host->done(c, MXGATE_REJECT, 0, NULL, NULL);   /* from inside cancel: ignored */
}

static const struct mxgate_plugin script_desc = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION, .name = "script",
	.init = script_init, .fini = script_fini,
	.on_connect = script_connect, .on_mail = script_mail, .on_rcpt = script_rcpt,
	.on_header = script_header, .on_body = script_body, .on_eom = script_eom,
	.on_close = script_close, .cancel = script_cancel,
};

/* The same without cancel: a late done() is accepted and ignored. */
static const struct mxgate_plugin script_desc_nocancel = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION, .name = "script",
	.init = script_init, .fini = script_fini,
	.on_mail = script_mail, .on_rcpt = script_rcpt, .on_eom = script_eom, .on_close = script_close,
};

struct adapter {
	struct harness h;
	struct plugin_config pcs[NSCRIPT];
	char errs[1024], path[128];
};

/* A config without plugins, then n scripted entries put in by hand (on_error per entry). */
static void adapter_setup(struct adapter *a, size_t n, const int *on_error, bool nocancel)
{
	static const char *const names[NSCRIPT] = { "s0", "s1", "s2" };

	memset(a, 0, sizeof(*a));
	assert_int_equal(load_plugins("", &a->h.cfg, a->errs, sizeof(a->errs), a->path, sizeof(a->path)), 0);
	for (size_t i = 0; i < n; i++) {
		a->pcs[i].name = (char *)names[i];
		a->pcs[i].so.desc = nocancel ? &script_desc_nocancel : &script_desc;
		a->pcs[i].so.path = (char *)"scripted";
		a->pcs[i].on_error = on_error ? on_error[i] : PLUGIN_ON_ERROR_TEMPFAIL;
		a->pcs[i].timeout = 5000;
	}
	a->h.cfg->plugins.v = a->pcs;
	a->h.cfg->plugins.n = n;
	a->h.cfg->rdns.lookup = RDNS_LOOKUP_NEVER;   /* only the plugin entries in this chain */
	uv_loop_init(&a->h.loop);
	uv_timer_init(&a->h.loop, &a->h.timer);
	assert_int_equal(chain_modules_init(&a->h.mods, a->h.cfg, &a->h.loop, 0), 0);
	assert_int_equal(a->h.mods.n, n);
	a->h.env.session_id = "t0002";
	a->h.env.loop = &a->h.loop;
	a->h.env.cfg = a->h.cfg;
	a->h.env.mail_from = "a@example.org";
	a->h.env.mail_params = "";
	a->h.env.cur_rcpt = "b@example.test";
	a->h.env.cur_rcpt_params = "";
	chain_init(&a->h.chain, &a->h.mods, &a->h.env, &a->h.timer);
}

static void adapter_teardown(struct adapter *a)
{
	chain_release(&a->h.chain);
	hook_env_free_outputs(&a->h.env);
	msgbuf_free(a->h.env.msg);
	chain_modules_free(&a->h.mods);
	uv_close((uv_handle_t *)&a->h.timer, harness_close_cb);
	uv_run(&a->h.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&a->h.loop), 0);
	a->h.cfg->plugins.v = NULL;     /* ours, not the config's */
	a->h.cfg->plugins.n = 0;
	config_free(a->h.cfg);
}

#define E_ACUTE3 "\xc3\xa9\xc3\xa9\xc3\xa9"
#define E_ACUTE6 E_ACUTE3 E_ACUTE3
#define E_ACUTE9 E_ACUTE6 E_ACUTE3
#define E_ACUTE10 E_ACUTE9 "\xc3\xa9"
#define E_ACUTE30 E_ACUTE10 E_ACUTE10 E_ACUTE10
#define E_ACUTE90 E_ACUTE30 E_ACUTE30 E_ACUTE30
#define E_ACUTE100 E_ACUTE90 E_ACUTE10

struct mrow {
	const char *label;
	enum mxgate_action a;
	int code;
	const char *reply, *reason;
	int on_error;                  /* entry 0's */
	enum verdict_action want;
	int want_code;
	const char *want_reply, *want_reason;
	bool next_runs;
};

static const struct mrow mrows[] = {
	{ "continue: the next plugin runs", MXGATE_CONTINUE, 0, NULL, NULL, 0, VERDICT_CONTINUE, 0, "", "", true },
	{ "accept: the later plugin skipped", MXGATE_ACCEPT, 0, NULL, NULL, 0, VERDICT_ACCEPT, 0, "", "s0", false },
	{ "tempfail with the defaults", MXGATE_TEMPFAIL, 0, NULL, NULL, 0, VERDICT_TEMPFAIL, 451,
	  "4.7.1 Try again later", "s0", false },
	{ "tempfail with code, reply, reason", MXGATE_TEMPFAIL, 421, "4.7.0 busy", "busy", 0, VERDICT_TEMPFAIL,
	  421, "4.7.0 busy", "busy", false },
	{ "reject with the defaults", MXGATE_REJECT, 0, NULL, NULL, 0, VERDICT_REJECT, 550,
	  "5.7.1 Message rejected", "s0", false },
	{ "reject with its own", MXGATE_REJECT, 554, "5.7.1 Virus found: X", "virus", 0, VERDICT_REJECT, 554,
	  "5.7.1 Virus found: X", "virus", false },
	{ "a reply with bare line breaks cannot split the SMTP reply", MXGATE_REJECT, 550, "5.7.1 a\nRCPT b\rc", "x", 0,
	  VERDICT_REJECT, 550, "5.7.1 a?RCPT b?c", "x", false },
	/* a filter's text is censored as a backend's (smtp_reply_printable) */
	{ "control octets in the reply and the reason are '?'", MXGATE_REJECT, 550,
	  "5.7.1 \x1b[2Jesc\tbel\x07 c1\xc2\x9b" "x raw\x9b utf8 \xc3\xa9", "vi\x1bru\x9bs", 0, VERDICT_REJECT, 550,
	  "5.7.1 ?[2Jesc?bel? c1??x raw? utf8 \xc3\xa9", "vi?ru?s", false },
	/* 199 e-acutes and an 'a' (399 octets): with "5.0.0 " in front the line is cut to 393
	 * octets of text, which would end inside the 197th */
	{ "a first line cut to fit is not cut inside a UTF-8 sequence", MXGATE_REJECT, 550,
	  E_ACUTE100 E_ACUTE90 E_ACUTE9 "a", "x", 0, VERDICT_REJECT, 550, "5.0.0 " E_ACUTE100 E_ACUTE90 E_ACUTE6, "x", false },
	{ "a multi-line reply keeps its CRLFs", MXGATE_REJECT, 550, "5.7.1 a\r\n5.7.1 b", "x", 0, VERDICT_REJECT, 550,
	  "5.7.1 a\r\n5.7.1 b", "x", false },
	{ "discard", MXGATE_DISCARD, 0, NULL, "milter-discard", 0, VERDICT_DISCARD, 0, "", "milter-discard", false },
	{ "quarantine", MXGATE_QUARANTINE, 0, NULL, NULL, 0, VERDICT_QUARANTINE, 0, "", "s0", false },
	{ "error, on_error tempfail", MXGATE_ERROR, 0, NULL, "peer-gone", PLUGIN_ON_ERROR_TEMPFAIL,
	  VERDICT_TEMPFAIL, 451, "4.7.1 Content filter unavailable, please try again later", "plugin", false },
	{ "error, on_error reject", MXGATE_ERROR, 0, NULL, NULL, PLUGIN_ON_ERROR_REJECT, VERDICT_REJECT, 550,
	  "5.7.1 Message content rejected", "plugin", false },
	{ "error, on_error accept: the next plugin decides", MXGATE_ERROR, 0, NULL, NULL, PLUGIN_ON_ERROR_ACCEPT,
	  VERDICT_CONTINUE, 0, "", "", true },
	{ "an action outside the set is an error", (enum mxgate_action)77, 0, NULL, NULL, PLUGIN_ON_ERROR_TEMPFAIL,
	  VERDICT_TEMPFAIL, 451, "4.7.1 Content filter unavailable, please try again later", "plugin", false },
};

static void test_adapter_verdicts(void **state)
{
	for (size_t i = 0; i < sizeof(mrows) / sizeof(mrows[0]); i++) {
		const struct mrow *r = &mrows[i];
		struct adapter a;
		int on_error[2] = { r->on_error, PLUGIN_ON_ERROR_TEMPFAIL };

		memset(scripts, 0, sizeof(scripts));
		scripts[0].at[HOOK_EOM] = r->a;
		scripts[0].code = r->code;
		scripts[0].reply = r->reply;
		scripts[0].reason = r->reason;
		adapter_setup(&a, 2, on_error, false);
		harness_message(&a.h, "Subject: x\r\n\r\nbody\r\n");
		harness_run(&a.h, HOOK_EOM);
		if (a.h.v.action != r->want || a.h.v.code != r->want_code || strcmp(a.h.v.reply, r->want_reply) != 0 ||
		    strcmp(a.h.v.reason, r->want_reason) != 0)
			fail_msg("row \"%s\": action %d code %d reply \"%s\" reason \"%s\"", r->label, a.h.v.action,
			    a.h.v.code, a.h.v.reply, a.h.v.reason);
		if ((scripts[1].calls[HOOK_EOM] == 1) != r->next_runs)
			fail_msg("row \"%s\": the next plugin ran %d times", r->label, scripts[1].calls[HOOK_EOM]);
		if (r->a == MXGATE_QUARANTINE)
			assert_string_equal(a.h.env.quarantine_reason, "s0: quarantine");
		adapter_teardown(&a);
		assert_int_equal(scripts[0].finis, 1);
	}
}

/* A refusal before end of data without a reply of the plugin's own names no message: a
 * refused recipient reads "5.7.1 Command rejected", as Postfix words a milter's bare reject. */
static void test_adapter_reject_rcpt_default(void **state)
{
	struct adapter a;

	memset(scripts, 0, sizeof(scripts));
	scripts[0].at[HOOK_RCPT] = MXGATE_REJECT;
	adapter_setup(&a, 1, NULL, false);
	harness_run(&a.h, HOOK_MAIL);
	harness_run(&a.h, HOOK_RCPT);
	assert_int_equal(a.h.v.action, VERDICT_REJECT);
	assert_int_equal(a.h.v.code, 550);
	assert_string_equal(a.h.v.reply, "5.7.1 Command rejected");
	adapter_teardown(&a);
}

/* A milter-style discard at RCPT: that stage ends as an accept, and end of data answers
 * with the discard without calling any plugin. */
static void test_adapter_discard_before_eom(void **state)
{
	struct adapter a;

	memset(scripts, 0, sizeof(scripts));
	scripts[0].at[HOOK_RCPT] = MXGATE_DISCARD;
	scripts[0].reason = "milter-discard";
	adapter_setup(&a, 2, NULL, false);
	harness_run(&a.h, HOOK_MAIL);
	harness_run(&a.h, HOOK_RCPT);
	assert_int_equal(a.h.v.action, VERDICT_ACCEPT);
	assert_int_equal(scripts[1].calls[HOOK_RCPT], 0);
	harness_message(&a.h, "Subject: x\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_int_equal(a.h.v.action, VERDICT_DISCARD);
	assert_string_equal(a.h.v.reason, "milter-discard");
	assert_int_equal(scripts[0].calls[HOOK_EOM], 0);
	assert_int_equal(scripts[1].calls[HOOK_EOM], 0);
	adapter_teardown(&a);
}

/* set_flags: what the plugins know reaches the transaction (unknown bits ignored). */
static void test_adapter_flags(void **state)
{
	struct adapter a;

	memset(scripts, 0, sizeof(scripts));
	scripts[0].flags = MXGATE_FLAG_VIRUS | 0x100;
	scripts[1].flags = MXGATE_FLAG_SPAM;
	adapter_setup(&a, 2, NULL, false);
	harness_message(&a.h, "Subject: x\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_int_equal(a.h.env.flags, HOOK_FLAG_VIRUS | HOOK_FLAG_SPAM);
	hook_env_reset_txn(&a.h.env);
	assert_int_equal(a.h.env.flags, 0);
	assert_true(script_host->size >= offsetof(struct mxgate_host, set_flags) + sizeof(void *));
	adapter_teardown(&a);
}

/* add_symbol: a plugin's symbols reach the rules, except AUTH_DOMAIN (senderauth's
 * hand-over of the authenticated sender domain, which ratelimit and reputation key on). */
static void test_adapter_reserved_symbol(void **state)
{
	struct adapter a;

	memset(scripts, 0, sizeof(scripts));
	scripts[0].symbol = "AUTH_DOMAIN";
	scripts[0].symbol_desc = "victim.example";
	scripts[1].symbol = "PLUGIN_SAYS";
	adapter_setup(&a, 2, NULL, false);
	harness_message(&a.h, "Subject: x\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_null(hook_env_find_symbol(&a.h.env, "AUTH_DOMAIN"));
	assert_non_null(hook_env_find_symbol(&a.h.env, "PLUGIN_SAYS"));
	adapter_teardown(&a);
}

/* Timeouts: the chain's timer, the entry's on_error, cancel once (a done from inside it is
 * ignored); a plugin without cancel answers late: ignored, its handle freed (ASan). */
static void test_adapter_timeouts(void **state)
{
	int on_error[2] = { PLUGIN_ON_ERROR_REJECT, PLUGIN_ON_ERROR_TEMPFAIL };

	for (int nocancel = 0; nocancel < 2; nocancel++) {
		struct adapter a;
		struct mxgate_call *late;

		memset(scripts, 0, sizeof(scripts));
		scripts[0].never = true;
		adapter_setup(&a, 2, on_error, nocancel);
		a.pcs[0].timeout = 30;
		harness_run(&a.h, HOOK_MAIL);
		assert_int_equal(a.h.v.action, VERDICT_REJECT);
		assert_string_equal(a.h.v.reply, "5.7.1 Command rejected");
		assert_int_equal(scripts[0].cancels, nocancel ? 0 : 1);
		assert_int_equal(scripts[1].calls[HOOK_MAIL], 0);
		late = scripts[0].pending;
		if (nocancel) {
			/* the late answer: ignored, the handle freed */
			script_host->done(late, MXGATE_REJECT, 0, NULL, NULL);
		}
		/* the next stage runs normally */
		scripts[0].never = false;
		harness_run(&a.h, HOOK_RCPT);
		assert_int_equal(a.h.v.action, VERDICT_CONTINUE);
		assert_int_equal(scripts[1].calls[HOOK_RCPT], 1);
		harness_run(&a.h, HOOK_CLOSE);
		adapter_teardown(&a);
		assert_int_equal(scripts[0].closes, 1);
	}
}

/* A plugin whose init failed on the worker: its calls take on_error (at MAIL and EOM), it is
 * never called, and not finished. */
static void test_adapter_broken(void **state)
{
	struct adapter a;
	int on_error[2] = { PLUGIN_ON_ERROR_TEMPFAIL, PLUGIN_ON_ERROR_TEMPFAIL };

	memset(scripts, 0, sizeof(scripts));
	scripts[0].fail_init = true;
	adapter_setup(&a, 2, on_error, false);
	harness_run(&a.h, HOOK_CONNECT);
	assert_int_equal(a.h.v.action, VERDICT_CONTINUE);
	harness_run(&a.h, HOOK_MAIL);
	assert_int_equal(a.h.v.action, VERDICT_TEMPFAIL);
	assert_int_equal(a.h.v.code, 451);
	harness_message(&a.h, "Subject: x\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_int_equal(a.h.v.action, VERDICT_TEMPFAIL);
	harness_run(&a.h, HOOK_CLOSE);
	adapter_teardown(&a);
	assert_int_equal(scripts[0].finis, 0);
	assert_int_equal(scripts[0].closes, 0);
	assert_int_equal(scripts[1].closes, 1);
}

/* End of data: each header, the body, then on_eom; an error on a header with on_error
 * accept skips the rest of that plugin's calls, the next plugin still runs. on_close once,
 * whether the session ran the close stage or not. */
static void test_adapter_eom_calls(void **state)
{
	struct adapter a;
	int on_error[2] = { PLUGIN_ON_ERROR_ACCEPT, PLUGIN_ON_ERROR_TEMPFAIL };

	memset(scripts, 0, sizeof(scripts));
	scripts[0].header_at = MXGATE_ERROR;
	adapter_setup(&a, 2, on_error, false);
	harness_message(&a.h, "Subject: x\r\nX-A: 1\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_int_equal(a.h.v.action, VERDICT_CONTINUE);
	assert_int_equal(scripts[0].headers, 1);
	assert_int_equal(scripts[0].bodies, 0);
	assert_int_equal(scripts[0].calls[HOOK_EOM], 0);
	assert_int_equal(scripts[1].headers, 2);
	assert_int_equal(scripts[1].bodies, 1);
	assert_int_equal(scripts[1].calls[HOOK_EOM], 1);
	adapter_teardown(&a);          /* no close stage: on_close from session_free */
	assert_int_equal(scripts[0].closes, 1);
	assert_int_equal(scripts[1].closes, 1);
}

/* A field name with blanks before its colon ("Subject : x", RFC 5322 4.5.8's obsolete
 * syntax) reaches on_header as "Subject", as Postfix's milter client passes it and as the
 * header edits and SpamAssassin name it; a line without a colon stays a name-less line. */
static void test_adapter_header_names(void **state)
{
	struct adapter a;
	int on_error[1] = { PLUGIN_ON_ERROR_TEMPFAIL };

	memset(scripts, 0, sizeof(scripts));
	adapter_setup(&a, 1, on_error, false);
	harness_message(&a.h, "Subject : x\r\nX-A\t:1\r\nno colon\r\nX-B: 2\r\n\r\nbody\r\n");
	harness_run(&a.h, HOOK_EOM);
	assert_string_equal(scripts[0].names, "Subject=x|X-A=1|=no colon|X-B=2|");
	adapter_teardown(&a);
}

static void test_config_errors(void **state)
{
	struct mx_config *cfg = NULL;
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/test_plugins_bad_%d.yaml", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "hostname: mx.example.test\nlisten:\n  - address: \"127.0.0.1:2525\"\n"
	    "backends:\n  servers:\n    - { address: \"smtp://127.0.0.1:2526\" }\nplugins:\n"
	    "  - { name: nosuch, address: \"127.0.0.1:1\" }\n"
	    "  - { name: clamd, address: \"nowhere\" }\n"
	    "  - { name: clamd, address: \"127.0.0.1:3310\", action: explode }\n"
	    "  - { name: milter, address: \"inet:127.0.0.1:8891\", options: { max_frame: 5 } }\n"
	    "  - { name: x, path: \"/nonexistent.so\" }\n");
	fclose(f);
	assert_int_equal(config_load(path, &cfg, stderr), -1);
	assert_null(cfg);
	unlink(path);
}

/* Growing ABI 1 safely: the host says how large the args it passes are (host->args_size),
 * so a plugin built against a newer plugin.h reads a field an older host lacks only after
 * MXGATE_ARGS_HAS, never past the older struct. */
extern const struct mxgate_host plugins_host;

static void test_abi_growth(void **state)
{
	struct mxgate_host old_host = plugins_host, pre_args = plugins_host;

	(void)state;
	assert_int_equal(plugins_host.size, sizeof(struct mxgate_host));
	assert_int_equal(plugins_host.args_size, sizeof(struct mxgate_plugin_args));
	assert_true(MXGATE_HOST_HAS(&plugins_host, args_size));
	assert_true(MXGATE_ARGS_HAS(&plugins_host, connect_timeout_ms));
	assert_true(MXGATE_ARGS_HAS(&plugins_host, worker));
	/* a host whose args end before connect_timeout_ms */
	old_host.args_size = offsetof(struct mxgate_plugin_args, connect_timeout_ms);
	assert_false(MXGATE_ARGS_HAS(&old_host, connect_timeout_ms));
	assert_true(MXGATE_ARGS_HAS(&old_host, worker));
	/* a host from before args_size (its table ends at insert_header_delivered): nothing
	 * added to args is assumed, not even what that host may have had */
	pre_args.size = offsetof(struct mxgate_host, args_size);
	assert_false(MXGATE_HOST_HAS(&pre_args, args_size));
	assert_false(MXGATE_ARGS_HAS(&pre_args, connect_timeout_ms));
	assert_true(MXGATE_HOST_HAS(&pre_args, insert_header_delivered));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);	/* as the daemon does (main.c): a closed peer is EPIPE, not death */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_growth),
		cmocka_unit_test(test_clamd_replies),
		cmocka_unit_test(test_spamd_replies),
		cmocka_unit_test(test_rspamd_json),
		cmocka_unit_test(test_rspamd_json_unicode),
		cmocka_unit_test(test_rspamd_json_bounds),
		cmocka_unit_test(test_rspamd_json_milter),
		cmocka_unit_test(test_rspamd_json_milter_flags),
		cmocka_unit_test(test_rspamd_http),
		cmocka_unit_test(test_rspamd_reader),
		cmocka_unit_test(test_rspamd_reader_head_max),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_names_republished),
		cmocka_unit_test(test_address_left),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_option_tables),
		cmocka_unit_test(test_option_strings),
		cmocka_unit_test(test_option_docs),
		cmocka_unit_test(test_adapter_verdicts),
		cmocka_unit_test(test_adapter_reject_rcpt_default),
		cmocka_unit_test(test_adapter_discard_before_eom),
		cmocka_unit_test(test_adapter_flags),
		cmocka_unit_test(test_adapter_reserved_symbol),
		cmocka_unit_test(test_adapter_timeouts),
		cmocka_unit_test(test_adapter_broken),
		cmocka_unit_test(test_adapter_eom_calls),
		cmocka_unit_test(test_adapter_header_names),
		cmocka_unit_test(test_chain_example),
		cmocka_unit_test(test_chain_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
