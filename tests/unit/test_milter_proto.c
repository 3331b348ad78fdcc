/* test_milter_proto.c — the milter frame codec: encoders byte for byte, the resumable
 * decoder over every split, each reply type, oversized/zero/truncated frames, the
 * negotiation masks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/milter_proto.h"

/* Builds a frame by hand: len(4) cmd data. */
static size_t frame(unsigned char *out, char cmd, const void *data, size_t len)
{
	uint32_t l = (uint32_t)len + 1;

	out[0] = l >> 24; out[1] = l >> 16; out[2] = l >> 8; out[3] = l;
	out[4] = (unsigned char)cmd;
	memcpy(out + 5, data, len);
	return len + 5;
}

static void test_encode_optneg(void **state)
{
	struct milter_buf b;
	const unsigned char want[] = { 0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0xff, 0, 0x1f, 0xff, 0xff };

	milter_buf_init(&b);
	assert_int_equal(milter_put_optneg(&b, 6, 0x1ff, 0x1fffff), 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	milter_buf_free(&b);
}

static void test_encode_macros(void **state)
{
	struct milter_buf b;
	const char *kv[] = { "j", "mx.test", "{skip}", NULL, "{client_addr}", "1.2.3.4" };
	const char want[] = "\0\0\0\x22" "DC" "j\0mx.test\0" "{client_addr}\0" "1.2.3.4";

	milter_buf_init(&b);
	assert_int_equal(milter_put_macros(&b, 'C', kv, 3), 0);
	/* command + stage + "j\0mx.test\0" + "{client_addr}\0" + "1.2.3.4\0" = 34 */
	assert_int_equal(b.len, 4 + 1 + 1 + 2 + 8 + 14 + 8);
	assert_int_equal(b.data[3], 1 + 1 + 2 + 8 + 14 + 8);
	assert_memory_equal(b.data + 4, want + 4, b.len - 4);
	milter_buf_free(&b);
}

static void test_encode_connect_and_env(void **state)
{
	struct milter_buf b;
	const char conn[] = "C" "[1.2.3.4]\0" "4" "\x01\xbb" "1.2.3.4";
	const char mail[] = "M" "<a@b.test>\0" "SIZE=10\0" "BODY=8BITMIME";
	const char nullsender[] = "M" "<>";

	milter_buf_init(&b);
	assert_int_equal(milter_put_connect(&b, "[1.2.3.4]", '4', 443, "1.2.3.4"), 0);
	assert_int_equal(b.len, 4 + sizeof(conn));
	assert_memory_equal(b.data + 4, conn, sizeof(conn));
	milter_buf_clear(&b);
	assert_int_equal(milter_put_envaddr(&b, 'M', "a@b.test", " SIZE=10  BODY=8BITMIME"), 0);
	assert_int_equal(b.len, 4 + sizeof(mail));
	assert_memory_equal(b.data + 4, mail, sizeof(mail));
	milter_buf_clear(&b);
	assert_int_equal(milter_put_envaddr(&b, 'M', "", ""), 0);
	assert_int_equal(b.len, 4 + sizeof(nullsender));
	assert_memory_equal(b.data + 4, nullsender, sizeof(nullsender));
	milter_buf_clear(&b);
	assert_int_equal(milter_put_connect(&b, "unknown", 'U', 0, NULL), 0);
	assert_int_equal(b.len, 4 + 1 + 8 + 1);
	milter_buf_clear(&b);
	assert_int_equal(milter_put_header(&b, "Subject", "hi"), 0);
	assert_memory_equal(b.data, "\0\0\0\x0cLSubject\0hi\0", 16);
	milter_buf_clear(&b);
	assert_int_equal(milter_put_simple(&b, SMFIC_BODYEOB), 0);
	assert_memory_equal(b.data, "\0\0\0\x01" "E", 5);
	milter_buf_clear(&b);
	{
		static char big[MILTER_BODY_CHUNK + 1];

		assert_int_equal(milter_put_body(&b, big, MILTER_BODY_CHUNK), 0);
		assert_int_equal(milter_put_body(&b, big, MILTER_BODY_CHUNK + 1), -1);
	}
	milter_buf_free(&b);
}

/* A stream of several replies, fed in every possible two-way split and byte by byte. */
static void test_decode_splits(void **state)
{
	unsigned char s[256];
	size_t n = 0;
	const char want[] = { 'p', 'h', 'c' };

	n += frame(s + n, SMFIR_PROGRESS, "", 0);
	n += frame(s + n, SMFIR_ADDHEADER, "X-A\0v\0", 6);
	n += frame(s + n, SMFIR_CONTINUE, "", 0);
	for (size_t step = 1; step <= n; step++) {
		struct milter_parser p;
		size_t off = 0, got = 0;

		milter_parser_init(&p, 1024);
		while (off < n) {
			size_t chunk = n - off < step ? n - off : step, used = 0, pos = 0;

			while (pos < chunk) {
				char cmd;
				const unsigned char *pl;
				size_t plen;
				int rc = milter_parser_feed(&p, s + off + pos, chunk - pos, &used, &cmd, &pl, &plen);

				assert_true(rc >= 0);
				pos += used;
				if (rc == 1) {
					assert_true(got < 3);
					assert_int_equal(cmd, want[got]);
					if (cmd == 'h') {
						struct milter_reply r;

						assert_int_equal(milter_reply_parse(cmd, pl, plen, &r), 0);
						assert_string_equal(r.name, "X-A");
						assert_string_equal(r.value, "v");
					}
					got++;
				} else {
					assert_int_equal(pos, chunk);   /* need more: all input taken */
					break;
				}
			}
			off += chunk;
		}
		assert_int_equal(got, 3);
		milter_parser_free(&p);
	}
}

static void test_decode_oversized_zero_truncated(void **state)
{
	struct milter_parser p;
	const unsigned char big[] = { 0, 0x10, 0, 1, 'b' };
	const unsigned char zero[] = { 0, 0, 0, 0 };
	const unsigned char trunc[] = { 0, 0, 0, 9, 'h', 'X' };
	char cmd;
	const unsigned char *pl;
	size_t plen, used;

	milter_parser_init(&p, 65536);
	assert_int_equal(milter_parser_feed(&p, big, sizeof(big), &used, &cmd, &pl, &plen), -1);
	assert_string_equal(p.err, "oversized frame");
	/* stays in error */
	assert_int_equal(milter_parser_feed(&p, "\0\0\0\1c", 5, &used, &cmd, &pl, &plen), -1);
	milter_parser_free(&p);

	milter_parser_init(&p, 65536);
	assert_int_equal(milter_parser_feed(&p, zero, sizeof(zero), &used, &cmd, &pl, &plen), -1);
	milter_parser_free(&p);

	milter_parser_init(&p, 65536);
	assert_int_equal(milter_parser_feed(&p, trunc, sizeof(trunc), &used, &cmd, &pl, &plen), 0);
	assert_int_equal(used, sizeof(trunc));
	milter_parser_free(&p);
}

struct reply_row {
	const char *label;
	char cmd;
	const char *data;
	size_t len;
	int rc;
};

static const struct reply_row reply_rows[] = {
	{ "accept", SMFIR_ACCEPT, "", 0, 0 },
	{ "continue", SMFIR_CONTINUE, "", 0, 0 },
	{ "discard", SMFIR_DISCARD, "", 0, 0 },
	{ "reject", SMFIR_REJECT, "", 0, 0 },
	{ "tempfail", SMFIR_TEMPFAIL, "", 0, 0 },
	{ "progress", SMFIR_PROGRESS, "", 0, 0 },
	{ "skip", SMFIR_SKIP, "", 0, 0 },
	{ "conn_fail", SMFIR_CONN_FAIL, "", 0, 0 },
	{ "shutdown", SMFIR_SHUTDOWN, "", 0, 0 },
	/* a reply without data followed by some is malformed, as Postfix's milter8 judges it
	 * ("reply ... was followed by N data bytes"): it was taken as the bare reply */
	{ "accept with data", SMFIR_ACCEPT, "x", 1, -1 },
	{ "continue with data", SMFIR_CONTINUE, "\0", 1, -1 },
	{ "reject with data", SMFIR_REJECT, "550 5.7.1 no\0", 13, -1 },
	{ "progress with data", SMFIR_PROGRESS, "ab", 2, -1 },
	{ "skip with data", SMFIR_SKIP, "x", 1, -1 },
	{ "replycode ok", SMFIR_REPLYCODE, "550 5.7.1 no\0", 13, 0 },
	{ "replycode multiline", SMFIR_REPLYCODE, "451-4.7.1 a\r\n451 4.7.1 b\0", 25, 0 },
	{ "replycode 2xx refused", SMFIR_REPLYCODE, "250 ok\0", 7, -1 },
	{ "replycode no NUL", SMFIR_REPLYCODE, "550 5.7.1", 9, -1 },
	{ "replycode letters", SMFIR_REPLYCODE, "5x0 no\0", 7, -1 },
	{ "replycode class mismatch", SMFIR_REPLYCODE, "550 4.7.1 no\0", 13, -1 },
	{ "replycode no enhanced code", SMFIR_REPLYCODE, "550 go away\0", 12, 0 },
	{ "addheader", SMFIR_ADDHEADER, "X-A\0b c\0", 8, 0 },
	{ "addheader no value", SMFIR_ADDHEADER, "X-A\0", 4, -1 },
	{ "addheader empty name", SMFIR_ADDHEADER, "\0v\0", 3, -1 },
	{ "insheader", SMFIR_INSHEADER, "\0\0\0\1X-A\0v\0", 10, 0 },
	{ "insheader short", SMFIR_INSHEADER, "\0\0", 2, -1 },
	{ "chgheader delete", SMFIR_CHGHEADER, "\0\0\0\1Subject\0\0", 13, 0 },
	{ "addrcpt", SMFIR_ADDRCPT, "<x@y>\0", 6, 0 },
	{ "addrcpt_par", SMFIR_ADDRCPT_PAR, "<x@y>\0NOTIFY=NEVER\0", 19, 0 },
	{ "delrcpt", SMFIR_DELRCPT, "<x@y>\0", 6, 0 },
	{ "delrcpt unterminated", SMFIR_DELRCPT, "<x@y>", 5, -1 },
	{ "chgfrom", SMFIR_CHGFROM, "<f@y>\0", 6, 0 },
	{ "quarantine", SMFIR_QUARANTINE, "held\0", 5, 0 },
	{ "replbody", SMFIR_REPLBODY, "new body\r\n", 10, 0 },
	{ "optneg", SMFIC_OPTNEG, "\0\0\0\6\0\0\0\1\0\0\0\2", 12, 0 },
	{ "optneg with macro lists", SMFIC_OPTNEG, "\0\0\0\6\0\0\0\1\0\0\0\2\0\0\0\0j\0", 18, 0 },
	{ "optneg short", SMFIC_OPTNEG, "\0\0\0\6", 4, -1 },
	{ "unknown command", 'Z', "", 0, -1 },
};

static void test_reply_table(void **state)
{
	for (size_t i = 0; i < sizeof(reply_rows) / sizeof(reply_rows[0]); i++) {
		const struct reply_row *row = &reply_rows[i];
		struct milter_reply r;
		int rc = milter_reply_parse(row->cmd, (const unsigned char *)row->data, row->len, &r);

		if (rc != row->rc)
			fail_msg("row \"%s\": rc %d, want %d", row->label, rc, row->rc);
	}
}

static void test_reply_fields(void **state)
{
	struct milter_reply r;

	assert_int_equal(milter_reply_parse(SMFIR_REPLYCODE, (const unsigned char *)"550 5.7.1 go away\0", 18, &r), 0);
	assert_int_equal(r.code, 550);
	assert_string_equal(r.text, "5.7.1 go away");
	assert_int_equal(milter_reply_parse(SMFIR_CHGHEADER, (const unsigned char *)"\0\0\0\2Subject\0new\0", 16, &r), 0);
	assert_int_equal(r.index, 2);
	assert_string_equal(r.name, "Subject");
	assert_string_equal(r.value, "new");
	assert_int_equal(milter_reply_parse(SMFIC_OPTNEG, (const unsigned char *)"\0\0\0\6\0\0\0\x11\0\0\x30\x00", 12, &r), 0);
	assert_int_equal(r.version, 6);
	assert_int_equal(r.actions, 0x11);
	assert_int_equal(r.protocol, SMFIP_NR_CONN | SMFIP_NR_HELO);
}

/* The macro lists after OPTNEG's three words: stage + NUL-terminated names, in turn. */
static void test_symlists(void **state)
{
	const unsigned char two[] = "\0\0\0\0{client_addr}\0\0\0\0\2i {client_ptr}\0";
	const unsigned char cut_stage[] = "\0\0\0";
	const unsigned char no_nul[] = "\0\0\0\3{rcpt_addr}";
	struct milter_reply r;
	size_t off = 0;
	uint32_t stage = 99;
	const char *names = NULL;

	(void)state;
	assert_int_equal(milter_symlist_next(two, sizeof(two) - 1, &off, &stage, &names), 1);
	assert_int_equal(stage, 0);
	assert_string_equal(names, "{client_addr}");
	assert_int_equal(milter_symlist_next(two, sizeof(two) - 1, &off, &stage, &names), 1);
	assert_int_equal(stage, 2);
	assert_string_equal(names, "i {client_ptr}");
	assert_int_equal(milter_symlist_next(two, sizeof(two) - 1, &off, &stage, &names), 0);
	off = 0;
	assert_int_equal(milter_symlist_next(cut_stage, 3, &off, &stage, &names), -1);
	off = 0;
	assert_int_equal(milter_symlist_next(no_nul, sizeof(no_nul) - 1, &off, &stage, &names), -1);
	off = 0;
	assert_int_equal(milter_symlist_next(two, 0, &off, &stage, &names), 0);
	/* the OPTNEG reply hands the bytes after its three words over */
	assert_int_equal(milter_reply_parse(SMFIC_OPTNEG, (const unsigned char *)"\0\0\0\6\0\0\1\0\0\0\0\0\0\0\0\4i\0",
	    18, &r), 0);
	assert_int_equal(r.len, 6);
	off = 0;
	assert_int_equal(milter_symlist_next(r.data, r.len, &off, &stage, &names), 1);
	assert_int_equal(stage, 4);
	assert_string_equal(names, "i");
}

static void test_negotiation_masks(void **state)
{
	uint32_t offer = milter_proto_offer();
	struct milter_reply r = { .cmd = SMFIC_OPTNEG, .version = 6 };
	const char *why;

	/* we can skip and go without replies for every stage ... */
	assert_true(offer & SMFIP_NR_HDR);
	assert_true(offer & SMFIP_NR_BODY);
	assert_true(offer & SMFIP_NOBODY);
	assert_true(offer & SMFIP_SKIP);
	/* ... and keep a header's leading white space for a filter that asks (as Postfix
	 * does: opendkim signs the field as written), but never send rejected recipients */
	assert_false(offer & SMFIP_RCPT_REJ);
	assert_true(offer & SMFIP_HDR_LEADSPC);
	assert_true((offer & ~SMFI_CURR_PROT) == 0);
	assert_int_equal(milter_actions_offer() & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
	    SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE),
	    SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |
	    SMFIF_CHGFROM | SMFIF_QUARANTINE);
	assert_int_equal(milter_optneg_check(&r, &why), 0);
	r.version = 1;
	assert_int_equal(milter_optneg_check(&r, &why), -1);
	r.version = 6;
	r.cmd = SMFIR_CONTINUE;
	assert_int_equal(milter_optneg_check(&r, &why), -1);
	/* an action we did not offer is Postfix's "request mask conflict" */
	r.cmd = SMFIC_OPTNEG;
	r.actions = SMFI_CURR_ACTS;
	assert_int_equal(milter_optneg_check(&r, &why), 0);
	r.actions = SMFI_CURR_ACTS | 0x200;
	assert_int_equal(milter_optneg_check(&r, &why), -1);
}

/* A filter's protocol bits at any version, as Postfix's milter8 honours them; DATA
 * skipped below version 4. */
static void test_proto_negotiated(void **state)
{
	(void)state;
	assert_int_equal(milter_proto_negotiated(6, SMFIP_NR_HDR | SMFIP_NODATA), SMFIP_NR_HDR | SMFIP_NODATA);
	assert_int_equal(milter_proto_negotiated(4, SMFIP_NOHREPL), SMFIP_NR_HDR);
	assert_int_equal(milter_proto_negotiated(4, 0), 0);
	assert_int_equal(milter_proto_negotiated(3, SMFIP_NOUNKNOWN), SMFIP_NOUNKNOWN | SMFIP_NODATA);
	assert_int_equal(milter_proto_negotiated(2, SMFIP_NOHELO), SMFIP_NOHELO | SMFIP_NODATA);
	/* never what we did not offer */
	assert_int_equal(milter_proto_negotiated(6, SMFIP_RCPT_REJ | 0x80000000u), 0);
}

/* The action each modification needs negotiated, as libmilter's smfi_* check it. */
static void test_action_needed(void **state)
{
	const char *name;

	(void)state;
	assert_int_equal(milter_action_needed(SMFIR_ADDHEADER, &name), SMFIF_ADDHDRS);
	assert_string_equal(name, "SMFIF_ADDHDRS");
	assert_int_equal(milter_action_needed(SMFIR_INSHEADER, NULL), SMFIF_ADDHDRS);
	assert_int_equal(milter_action_needed(SMFIR_CHGHEADER, NULL), SMFIF_CHGHDRS);
	assert_int_equal(milter_action_needed(SMFIR_REPLBODY, NULL), SMFIF_CHGBODY);
	assert_int_equal(milter_action_needed(SMFIR_ADDRCPT, NULL), SMFIF_ADDRCPT);
	assert_int_equal(milter_action_needed(SMFIR_ADDRCPT_PAR, NULL), SMFIF_ADDRCPT_PAR);
	assert_int_equal(milter_action_needed(SMFIR_DELRCPT, NULL), SMFIF_DELRCPT);
	assert_int_equal(milter_action_needed(SMFIR_CHGFROM, &name), SMFIF_CHGFROM);
	assert_string_equal(name, "SMFIF_CHGFROM");
	assert_int_equal(milter_action_needed(SMFIR_QUARANTINE, NULL), SMFIF_QUARANTINE);
	assert_int_equal(milter_action_needed(SMFIR_ACCEPT, &name), 0);
	assert_string_equal(name, "");
	assert_int_equal(milter_action_needed(SMFIR_REPLYCODE, NULL), 0);
	assert_int_equal(milter_action_needed(SMFIR_SETSYMLIST, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_optneg),
		cmocka_unit_test(test_encode_macros),
		cmocka_unit_test(test_encode_connect_and_env),
		cmocka_unit_test(test_decode_splits),
		cmocka_unit_test(test_decode_oversized_zero_truncated),
		cmocka_unit_test(test_reply_table),
		cmocka_unit_test(test_reply_fields),
		cmocka_unit_test(test_negotiation_masks),
		cmocka_unit_test(test_action_needed),
		cmocka_unit_test(test_proto_negotiated),
		cmocka_unit_test(test_symlists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
