/* rspamd.c — rspamd /checkv2 over HTTP/1.1 as a built-in plugin, with a small bounded JSON
 * reader for the fields we use (no JSON library among the dependencies). */
#include "rspamd.h"
#include "config.h"
#include "growbuf.h"
#include "headers.h"
#include "log.h"
#include "msgbuf.h"
#include "plugins.h"
#include "scanner.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The most of a reply's head and JSON kept */
#define RSPAMD_REPLY_MAX (1024u * 1024u)
/* The most a Content-Length or Message-Offset is read as: past any reply read (the JSON's
 * RSPAMD_REPLY_MAX plus a body block of limits.max_message_size and as much again). */
#define RSPAMD_HTTP_BODY_MAX (1L << 40)
#define RSPAMD_JSON_DEPTH 32

/* ------------------------------------------------------------------- JSON */

struct json_reader { const char *p, *end; int depth; };

static void json_ws(struct json_reader *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool json_eat(struct json_reader *j, char c)
{
	json_ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return true;
	}
	return false;
}

/* Four hex digits at j->p (consumed) into *u; false when they are not there. */
static bool json_hex4(struct json_reader *j, unsigned *u)
{
	*u = 0;
	for (int i = 0; i < 4; i++, j->p++) {
		char h = j->p < j->end ? *j->p : '\0';

		if (h >= '0' && h <= '9')
			*u = *u << 4 | (unsigned)(h - '0');
		else if (h >= 'a' && h <= 'f')
			*u = *u << 4 | (unsigned)(h - 'a' + 10);
		else if (h >= 'A' && h <= 'F')
			*u = *u << 4 | (unsigned)(h - 'A' + 10);
		else
			return false;
	}
	return true;
}

/* The code point of a \u escape whose "\u" was read (RFC 8259 7: a character outside the
 * BMP is a surrogate pair, \uD83D\uDE00); -1 for bad hex or a surrogate without its other
 * half (RFC 8259 8.2 leaves such strings to the reader: refused, as UTF-8 cannot hold
 * one). U+0000, which a C string cannot hold, reads as '?'. */
static long json_unicode(struct json_reader *j)
{
	unsigned hi, lo;

	if (!json_hex4(j, &hi) || (hi >= 0xdc00 && hi <= 0xdfff))
		return -1;
	if (hi == 0)
		return '?';
	if (hi < 0xd800 || hi > 0xdbff)
		return hi;
	if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
		return -1;
	j->p += 2;
	if (!json_hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff)
		return -1;
	return 0x10000 + ((long)(hi - 0xd800) << 10) + (lo - 0xdc00);
}

/* Reads a string into out (NUL-terminated, at most outlen - 1 octets; outlen 0: only
 * checked), \uXXXX escapes decoded to UTF-8. A value that does not fit is cut between
 * characters (an escaped one is never split; raw octets pass as they are) and *cut (may be
 * NULL) says so. 0 or -1 (malformed: a control character, a bad escape, no closing
 * quote). Bounded by the input: each octet read once. */
static int json_string_cut(struct json_reader *j, char *out, size_t outlen, bool *cut)
{
	size_t k = 0;
	bool full = false;

	if (cut)
		*cut = false;
	json_ws(j);
	if (j->p >= j->end || *j->p != '"')
		return -1;
	j->p++;
	while (j->p < j->end) {
		char c = *j->p++, u8[4];
		size_t n = 1;

		if (c == '"') {
			if (outlen)
				out[k] = '\0';
			if (cut)
				*cut = full;
			return 0;
		}
		if ((unsigned char)c < 0x20)
			return -1;
		u8[0] = c;
		if (c == '\\') {
			long cp;

			if (j->p >= j->end)
				return -1;
			c = *j->p++;
			switch (c) {
			case '"': case '\\': case '/': u8[0] = c; break;
			case 'b': u8[0] = '\b'; break;
			case 'f': u8[0] = '\f'; break;
			case 'n': u8[0] = '\n'; break;
			case 'r': u8[0] = '\r'; break;
			case 't': u8[0] = '\t'; break;
			case 'u':
				if ((cp = json_unicode(j)) < 0)
					return -1;
				if (cp < 0x80) {
					u8[0] = (char)cp;
				} else if (cp < 0x800) {
					u8[0] = (char)(0xc0 | cp >> 6);
					u8[1] = (char)(0x80 | (cp & 0x3f));
					n = 2;
				} else if (cp < 0x10000) {
					u8[0] = (char)(0xe0 | cp >> 12);
					u8[1] = (char)(0x80 | (cp >> 6 & 0x3f));
					u8[2] = (char)(0x80 | (cp & 0x3f));
					n = 3;
				} else {
					u8[0] = (char)(0xf0 | cp >> 18);
					u8[1] = (char)(0x80 | (cp >> 12 & 0x3f));
					u8[2] = (char)(0x80 | (cp >> 6 & 0x3f));
					u8[3] = (char)(0x80 | (cp & 0x3f));
					n = 4;
				}
				break;
			default:
				return -1;
			}
		}
		if (outlen == 0 || full)
			continue;
		if (k + n < outlen) {
			memcpy(out + k, u8, n);
			k += n;
		} else {
			full = true;    /* nothing after it either: the cut is at a character's start */
		}
	}
	return -1;
}

/* json_string_cut without the cut flag. */
static int json_string(struct json_reader *j, char *out, size_t outlen)
{
	return json_string_cut(j, out, outlen, NULL);
}

static int json_number(struct json_reader *j, double *out)
{
	char buf[64];
	size_t n = 0;
	char *e;

	json_ws(j);
	while (j->p + n < j->end && n < sizeof(buf) - 1 && j->p[n] != '\0' &&
	    strchr("+-0123456789.eE", j->p[n]))
		n++;
	if (n == 0 || n >= sizeof(buf) - 1)
		return -1;
	memcpy(buf, j->p, n);
	buf[n] = '\0';
	*out = strtod(buf, &e);
	if (*e != '\0')
		return -1;
	j->p += n;
	return 0;
}

static int json_skip(struct json_reader *j);

/* The members of an object or the elements of an array whose opening bracket was read
 * (close: '}' or ']'), each handled by fn: called with the member's key (NULL in an array),
 * positioned at the value. Bounded: nesting depth RSPAMD_JSON_DEPTH. */
static int json_container(struct json_reader *j, char close,
    int (*fn)(struct json_reader *, const char *, void *), void *ctx)
{
	char key[128];

	if (++j->depth > RSPAMD_JSON_DEPTH)
		return -1;
	if (json_eat(j, close)) {
		j->depth--;
		return 0;
	}
	for (;;) {
		if (close == '}' && (json_string(j, key, sizeof(key)) < 0 || !json_eat(j, ':')))
			return -1;
		if (fn(j, close == '}' ? key : NULL, ctx) < 0)
			return -1;
		if (json_eat(j, ','))
			continue;
		if (json_eat(j, close))
			break;
		return -1;
	}
	j->depth--;
	return 0;
}

static int json_skip_member(struct json_reader *j, const char *key, void *ctx)
{
	(void)key;
	(void)ctx;
	return json_skip(j);
}

/* Skips any value. 0 or -1. */
static int json_skip(struct json_reader *j)
{
	double d;

	json_ws(j);
	if (j->p >= j->end)
		return -1;
	switch (*j->p) {
	case '{': j->p++; return json_container(j, '}', json_skip_member, NULL);
	case '[': j->p++; return json_container(j, ']', json_skip_member, NULL);
	case '"': return json_string(j, NULL, 0);
	case 't':
		if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) { j->p += 4; return 0; }
		return -1;
	case 'f':
		if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) { j->p += 5; return 0; }
		return -1;
	case 'n':
		if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) { j->p += 4; return 0; }
		return -1;
	default:
		return json_number(j, &d);
	}
}

/* An object whose members are handled by fn (called with the key, positioned at the value). */
static int json_object(struct json_reader *j, int (*fn)(struct json_reader *, const char *, void *),
    void *ctx)
{
	return json_eat(j, '{') ? json_container(j, '}', fn, ctx) : -1;
}

/* Whether a number (not a string, container or literal) comes next. */
static bool json_at_number(struct json_reader *j)
{
	json_ws(j);
	return j->p < j->end && !strchr("\"{[ntf", *j->p);
}

/* Whether c (after blanks) comes next. */
static bool json_at(struct json_reader *j, char c)
{
	json_ws(j);
	return j->p < j->end && *j->p == c;
}

/* An array whose elements are handled by fn (called with key NULL, positioned at each). */
static int json_array(struct json_reader *j, int (*fn)(struct json_reader *, const char *, void *), void *ctx)
{
	return json_eat(j, '[') ? json_container(j, ']', fn, ctx) : -1;
}

/* ------------------------------------------------------------- the reply */

/* The reply is read once (rspamd_reply_parse) into its result, its symbols and its
 * operations, these two as records in the reply's order whose names and values are offsets
 * in one buffer of strings. Each string there is a key or a string value of the JSON,
 * decoded once and never longer than it is there with its quotes: the strings take at most
 * the JSON's length (and a value's bound more of room while one is read), a symbol 16
 * octets, an operation 20. */
struct reply_sym { uint32_t name; double score; };

struct reply_op {
	uint32_t name, value;        /* offsets in the strings; REPLY_NONE: NULL */
	int32_t index;
	uint8_t kind, part;          /* enum rspamd_op_kind, enum rspamd_milter_part */
	bool remove, cut, insert;
};

#define REPLY_NONE UINT32_MAX
#define RSPAMD_HEADER_VALUE_MAX 8192

/* s (a key) appended to the strings with its NUL; its offset. */
static uint32_t reply_key(struct rspamd_reply *rp, const char *s)
{
	size_t at = rp->str_len;

	growbuf_append(&rp->str, &rp->str_len, &rp->str_cap, 1024, s, strlen(s) + 1);
	return (uint32_t)at;
}

/* A string value decoded onto the end of the strings (at most RSPAMD_HEADER_VALUE_MAX - 1
 * octets: *cut says a longer one was cut); its offset, or -1 (malformed). */
static long reply_value(struct json_reader *j, struct rspamd_reply *rp, bool *cut)
{
	size_t at = rp->str_len;

	if (rp->str_cap < at + RSPAMD_HEADER_VALUE_MAX)
		growbuf_grow(&rp->str, &rp->str_cap, 1024, at + RSPAMD_HEADER_VALUE_MAX);
	if (json_string_cut(j, rp->str + at, RSPAMD_HEADER_VALUE_MAX, cut) < 0)
		return -1;
	rp->str_len = at + strlen(rp->str + at) + 1;
	return (long)at;
}

/* op kept; -1 when the reply holds RSPAMD_REPLY_ENTRIES_MAX already (the parse ends there). */
static int reply_op_add(struct rspamd_reply *rp, const struct reply_op *op)
{
	if (rp->ops_len / sizeof(*op) >= RSPAMD_REPLY_ENTRIES_MAX) {
		rp->over = true;
		return -1;
	}
	growbuf_append(&rp->ops, &rp->ops_len, &rp->ops_cap, 32 * sizeof(*op), (const char *)op, sizeof(*op));
	return 0;
}

/* The "score" member of one symbol's object (the others skipped). */
static int json_symbol_member(struct json_reader *j, const char *key, void *ctx)
{
	if (strcmp(key, "score") == 0)
		return json_number(j, ctx);
	return json_skip(j);
}

/* One entry of "symbols", {"name": ..., "score": N, ...}: kept as (key, score); a value
 * that is no object is skipped. */
static int json_symbols_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	struct reply_sym s = { 0, 0 };

	if (!json_at(j, '{'))
		return json_skip(j);
	if (json_object(j, json_symbol_member, &s.score) < 0)
		return -1;
	if (rp->syms_len / sizeof(s) >= RSPAMD_REPLY_ENTRIES_MAX) {
		rp->over = true;
		return -1;
	}
	s.name = reply_key(rp, key);
	growbuf_append(&rp->syms, &rp->syms_len, &rp->syms_cap, 64 * sizeof(s), (const char *)&s, sizeof(s));
	return 0;
}

/* One operation whose value is a string, of o->op's part, kind and name; anything but a
 * string is skipped (rspamd's milter takes strings only). */
struct json_op { struct rspamd_reply *rp; struct reply_op op; };

static int json_op_string(struct json_reader *j, const char *key, void *ctx)
{
	struct json_op *o = ctx;
	struct reply_op op = o->op;
	long at;

	(void)key;
	if (!json_at(j, '"'))
		return json_skip(j);
	if ((at = reply_value(j, o->rp, &op.cut)) < 0)
		return -1;
	op.value = (uint32_t)at;
	if (reply_op_add(o->rp, &op) < 0)
		return -1;
	o->op.index += o->op.index > 0;    /* the DKIM-Signatures of an array go at 1, 2 ... */
	return 0;
}

/* A string, or an array of strings, each one operation. */
static int json_op_strings(struct json_reader *j, struct json_op *o)
{
	return json_at(j, '[') ? json_array(j, json_op_string, o) : json_op_string(j, NULL, o);
}

/* A member of {"value": V, "order": N} ("index" is rspamd's other name for order). An
 * order that is no number (a string, a boolean, null) is skipped: the field is appended as
 * with none, as rspamd 3.4's milter does (test_rspamd_real.py's FORCE-OTYPE); a float is
 * cut toward 0, as there. */
static int json_milter_add_field(struct json_reader *j, const char *key, void *ctx)
{
	struct json_op *a = ctx;
	double d;
	long at;

	if (strcmp(key, "value") == 0 && json_at(j, '"')) {
		if ((at = reply_value(j, a->rp, &a->op.cut)) < 0)
			return -1;
		a->op.value = (uint32_t)at;
		return 0;
	}
	if ((strcmp(key, "order") == 0 || strcmp(key, "index") == 0) && json_at_number(j)) {
		if (json_number(j, &d) < 0)
			return -1;
		/* rspamd's milter: N >= 0 INSHEADER N, -1 appended, another N < 0 counted from
		 * the end (rspamd_add_field); past the bounds as far as it goes either way */
		a->op.insert = true;
		a->op.index = d >= 10000 ? 10000 : d <= -10000 ? -10000 : (int32_t)d;
		return 0;
	}
	return json_skip(j);
}

/* One value of add_headers: "value" or {"value": V, "order": N}; ctx: the json_op. */
static int json_milter_add_one(struct json_reader *j, const char *key, void *ctx)
{
	struct json_op *o = ctx;
	struct json_op a = *o;

	if (json_at(j, '"'))
		return json_op_string(j, key, o);
	if (!json_at(j, '{'))
		return json_skip(j);
	if (json_object(j, json_milter_add_field, &a) < 0)
		return -1;
	return a.op.value != REPLY_NONE ? reply_op_add(o->rp, &a.op) : 0;
}

static int json_milter_add_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	struct json_op o = { rp, { reply_key(rp, key), REPLY_NONE, -1, RSPAMD_OP_HEADER, RSPAMD_MILTER_ADDS } };

	return json_at(j, '[') ? json_array(j, json_milter_add_one, &o) : json_milter_add_one(j, NULL, &o);
}

static int json_milter_remove_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	double d;

	if (!json_at_number(j))
		return json_skip(j);   /* rspamd's milter takes integers only */
	if (json_number(j, &d) < 0)
		return -1;
	if (d > -10000 && d < 10000) {
		struct reply_op op = { reply_key(rp, key), REPLY_NONE, (int32_t)d, RSPAMD_OP_HEADER,
		    RSPAMD_MILTER_REMOVES, .remove = true };

		return reply_op_add(rp, &op);
	}
	return 0;
}

/* spam_header's object form: {"Name": "value", ...}. */
static int json_milter_spam_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	struct json_op o = { rp, { REPLY_NONE, REPLY_NONE, -1, RSPAMD_OP_SPAM_HEADER, RSPAMD_MILTER_SPAM_HEADER } };

	if (!json_at(j, '"'))
		return json_skip(j);
	o.op.name = reply_key(rp, key);
	return json_op_string(j, NULL, &o);
}

/* A member of the "milter" block: its switches into the result, its operations kept. */
static int json_milter_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	struct rspamd_result *r = &rp->r;
	struct json_op o = { rp, { REPLY_NONE, REPLY_NONE, -1, RSPAMD_OP_HEADER, RSPAMD_MILTER_ENVELOPE } };
	char v[16];

	if (strcmp(key, "reject") == 0 && json_at(j, '"')) {
		if (json_string(j, v, sizeof(v)) < 0)
			return -1;
		r->milter_discard = strcmp(v, "discard") == 0;
		r->milter_quarantine = strcmp(v, "quarantine") == 0;
		return 0;
	}
	if (strcmp(key, "no_action") == 0 && (json_at(j, 't') || json_at(j, 'f'))) {
		r->milter_no_action = *j->p == 't';
		return json_skip(j);
	}
	if (json_at(j, '{')) {
		if (strcmp(key, "add_headers") == 0)
			return json_object(j, json_milter_add_member, rp);
		if (strcmp(key, "remove_headers") == 0)
			return json_object(j, json_milter_remove_member, rp);
		if (strcmp(key, "spam_header") == 0) {
			r->has_spam_header = true;
			return json_object(j, json_milter_spam_member, rp);
		}
	}
	if (strcmp(key, "change_from") == 0 && json_at(j, '"')) {
		o.op.kind = RSPAMD_OP_CHANGE_FROM;
		o.op.name = reply_key(rp, key);
		return json_op_string(j, NULL, &o);
	}
	if ((strcmp(key, "add_rcpt") == 0 || strcmp(key, "del_rcpt") == 0) && json_at(j, '[')) {
		o.op.kind = key[0] == 'a' ? RSPAMD_OP_ADD_RCPT : RSPAMD_OP_DEL_RCPT;
		o.op.name = reply_key(rp, key);
		return json_array(j, json_op_string, &o);
	}
	if (strcmp(key, "spam_header") == 0 && json_at(j, '"')) {
		r->has_spam_header = true;
		o.op.kind = RSPAMD_OP_SPAM_HEADER;
		o.op.part = RSPAMD_MILTER_SPAM_HEADER;
		return json_op_string(j, NULL, &o);
	}
	return json_skip(j);
}

static int json_messages_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_result *r = ctx;

	if (strcmp(key, "smtp_message") == 0)
		return json_string(j, r->smtp_message, sizeof(r->smtp_message));
	return json_skip(j);
}

static int json_top_member(struct json_reader *j, const char *key, void *ctx)
{
	struct rspamd_reply *rp = ctx;
	struct rspamd_result *r = &rp->r;

	if (strcmp(key, "milter") == 0 && json_at(j, '{'))
		return json_object(j, json_milter_member, rp);
	if (strcmp(key, "dkim-signature") == 0) {
		struct json_op o = { rp, { REPLY_NONE, REPLY_NONE, 1, RSPAMD_OP_HEADER, RSPAMD_MILTER_DKIM,
		    .insert = true } };

		if (!json_at(j, '"') && !json_at(j, '['))
			return json_skip(j);
		o.op.name = reply_key(rp, "DKIM-Signature");
		return json_op_strings(j, &o);
	}
	if (strcmp(key, "score") == 0) {
		r->has_score = true;
		return json_number(j, &r->score);
	}
	if (strcmp(key, "required_score") == 0)
		return json_number(j, &r->required);
	if (strcmp(key, "action") == 0)
		return json_string(j, r->action, sizeof(r->action));
	if (strcmp(key, "subject") == 0 && json_at(j, '"'))
		return json_string_cut(j, r->subject, sizeof(r->subject), &r->subject_cut);
	if (strcmp(key, "symbols") == 0)
		return json_object(j, json_symbols_member, rp);
	if (strcmp(key, "messages") == 0 && json_at(j, '{'))
		return json_object(j, json_messages_member, r);
	return json_skip(j);
}

int rspamd_reply_parse(const char *json, size_t len, struct rspamd_reply *out)
{
	struct json_reader j = { json, json + len, 0 };
	bool over;

	memset(out, 0, sizeof(*out));
	/* the offsets of the strings hold any reply read (RSPAMD_REPLY_MAX) */
	if (len > UINT32_MAX / 2 || json_object(&j, json_top_member, out) < 0)
		goto bad;
	json_ws(&j);
	if (j.p != j.end || !out->r.has_score)
		goto bad;
	/* smtp_message as rspamd gave it: the reply it goes into is cleaned as every filter's
	 * (plugins.c plugin_reply_clean: '?' for what is no text, UTF-8 kept) */
	return 0;
bad:
	over = out->over;
	rspamd_reply_free(out);
	return over ? -2 : -1;
}

void rspamd_reply_symbols(const struct rspamd_reply *rp, rspamd_symbol_cb cb, void *arg)
{
	for (size_t i = 0; i < rp->syms_len / sizeof(struct reply_sym); i++) {
		struct reply_sym s;

		memcpy(&s, rp->syms + i * sizeof(s), sizeof(s));
		cb(arg, rp->str + s.name, s.score);
	}
}

void rspamd_reply_ops(const struct rspamd_reply *rp, enum rspamd_milter_part part, rspamd_header_cb cb,
    void *arg)
{
	for (size_t i = 0; i < rp->ops_len / sizeof(struct reply_op); i++) {
		struct reply_op o;
		struct rspamd_header_op op;

		memcpy(&o, rp->ops + i * sizeof(o), sizeof(o));
		if (o.part != part)
			continue;
		op = (struct rspamd_header_op){ (enum rspamd_op_kind)o.kind, o.remove, o.cut, o.insert,
		    o.name == REPLY_NONE ? NULL : rp->str + o.name, o.value == REPLY_NONE ? NULL : rp->str + o.value,
		    o.index };
		cb(arg, &op);
	}
}

void rspamd_reply_free(struct rspamd_reply *rp)
{
	free(rp->str);
	free(rp->syms);
	free(rp->ops);
	rp->str = rp->syms = rp->ops = NULL;
	rp->str_len = rp->str_cap = rp->syms_len = rp->syms_cap = rp->ops_len = rp->ops_cap = 0;
	rp->over = false;
}

/* ------------------------------------------------------------------- HTTP */

/* The decimal number of a header line's value (q after the colon, eol at the line's LF):
 * blanks around it, digits on this line only (strtol would skip the line end into the next
 * header or the body, and read past an unterminated buffer), at most max. 0 or -1. */
static int http_header_number(const char *q, const char *eol, long max, long *out)
{
	while (q < eol && (*q == ' ' || *q == '\t'))
		q++;
	if (q == eol || *q < '0' || *q > '9')
		return -1;
	for (*out = 0; q < eol && *q >= '0' && *q <= '9'; q++) {
		*out = *out * 10 + (*q - '0');
		if (*out > max)
			return -1;
	}
	while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r'))
		q++;
	return q == eol ? 0 : -1;
}

/* The head (the status line and fields, hlen octets with the blank line that ends it): the
 * status and the Content-Length and Message-Offset fields into r. 0 or -1. Once per reply. */
static int http_head_parse(struct rspamd_reader *r, const char *resp, size_t hlen)
{
	const char *hend = resp + hlen, *p;

	if (hlen < 12 || strncmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ')
		return -1;
	if (resp[9] < '1' || resp[9] > '5' || resp[10] < '0' || resp[10] > '9' || resp[11] < '0' || resp[11] > '9')
		return -1;
	r->status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
	for (p = resp; p < hend; ) {
		const char *eol = memchr(p, '\n', (size_t)(hend - p));

		if (eol == NULL)
			break;
		if (eol - p > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
			if (http_header_number(p + 15, eol, RSPAMD_HTTP_BODY_MAX, &r->clen) < 0)
				return -1;
		} else if (eol - p > 15 && strncasecmp(p, "Message-Offset:", 15) == 0) {
			if (http_header_number(p + 15, eol, RSPAMD_HTTP_BODY_MAX, &r->offset) < 0)
				return -1;
		} else if (eol - p > 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0)
			return -1;   /* chunked: we send Connection: close and HTTP/1.0-style reads */
		p = eol + 1;
	}
	/* rspamd's body block (protocol.c: the JSON, then the rewritten body from the offset
	 * on); one past the body is a reply with none to read */
	if (r->clen >= 0 && r->offset > r->clen)
		return -1;
	return 0;
}

/* Appends n octets to the kept head or JSON, within head_max. 0, or -2 past it (-2 also
 * when out of memory: the reply cannot be held). */
static int reader_keep(struct rspamd_reader *r, const char *data, size_t n)
{
	if (n > r->head_max - r->len)
		return -2;
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *nb;

		while (cap < r->len + n + 1)
			cap *= 2;
		if (cap > r->head_max + 1)
			cap = r->head_max + 1;
		if ((nb = realloc(r->buf, cap)) == NULL)
			return -2;
		r->buf = nb;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return 0;
}

/* The most a head is read without its blank line (a reply that is no HTTP). */
#define RSPAMD_HTTP_HEAD_MAX 65536

/* The head's octets in data (up to and with its blank line, or all of them): kept, the end
 * searched from where the last read left it (r->crlf). Returns the octets taken, or a
 * negative outcome. */
static long reader_head(struct rspamd_reader *r, const char *data, size_t len)
{
	static const char end[] = "\r\n\r\n";
	size_t i = 0;
	int rc;

	while (i < len && r->crlf < 4) {
		char c = data[i++];

		/* CRLF CRLF's only overlap with itself is a CR: a mismatch restarts at it */
		r->crlf = c == end[r->crlf] ? r->crlf + 1 : c == '\r';
		/* checked at each octet: the outcome does not depend on how the reply was cut */
		if (r->len + i > r->head_max)
			return -2;
		if (r->len + i > RSPAMD_HTTP_HEAD_MAX && r->crlf < 4)
			return -1;
	}
	if ((rc = reader_keep(r, data, i)) < 0)
		return rc;
	if (r->crlf == 4) {
		r->hlen = r->len;
		if (http_head_parse(r, r->buf, r->hlen) < 0)
			return -1;
	}
	return (long)i;
}

/* Body octets: the JSON's kept, the block's to the sink. Returns the octets taken (none
 * past Content-Length), or a negative outcome. */
static long reader_body(struct rspamd_reader *r, const char *data, size_t len)
{
	uint64_t json_end = r->offset >= 0 ? (uint64_t)r->offset : UINT64_MAX;
	size_t n = len, k;
	int rc;

	if (r->clen >= 0 && n > (uint64_t)r->clen - r->body_seen)
		n = (size_t)((uint64_t)r->clen - r->body_seen);
	k = r->body_seen < json_end ? (json_end - r->body_seen < n ? (size_t)(json_end - r->body_seen) : n) : 0;
	if (k > 0 && (rc = reader_keep(r, data, k)) < 0)
		return rc;
	r->body_seen += k;
	if (n > k) {
		if (n - k > r->body_max - r->block_len)
			return -2;
		r->block_len += n - k;
		r->body_seen += n - k;
		if (r->sink && r->sink(r->arg, data + k, n - k) < 0)
			return -3;
	}
	return (long)n;
}

void rspamd_reader_init(struct rspamd_reader *r, size_t head_max, uint64_t body_max,
    int (*sink)(void *arg, const char *data, size_t len), void *arg)
{
	memset(r, 0, sizeof(*r));
	r->head_max = head_max ? head_max : 1;
	r->body_max = body_max;
	r->sink = sink;
	r->arg = arg;
	r->offset = -1;
	r->clen = -1;
	r->rc = 1;
}

int rspamd_reader_feed(struct rspamd_reader *r, const char *data, size_t len, bool eof)
{
	while (r->rc == 1 && len > 0) {
		long n = r->hlen == 0 ? reader_head(r, data, len) : reader_body(r, data, len);

		if (n < 0)
			r->rc = (int)n;
		else if (n == 0)
			break;          /* past Content-Length: ignored */
		else {
			data += n;
			len -= (size_t)n;
		}
	}
	if (r->rc != 1)
		return r->rc;
	if (r->hlen > 0 && r->clen >= 0 && r->body_seen == (uint64_t)r->clen)
		r->rc = 0;
	else if (eof)
		/* without Content-Length the close ends the body (an offset past it: none to read) */
		r->rc = r->hlen > 0 && r->clen < 0 && (r->offset < 0 || (uint64_t)r->offset <= r->body_seen) ? 0 : -1;
	return r->rc;
}

const char *rspamd_reader_json(const struct rspamd_reader *r, size_t *len)
{
	*len = r->len - r->hlen;
	return r->buf ? r->buf + r->hlen : "";
}

void rspamd_reader_free(struct rspamd_reader *r)
{
	if (r == NULL)
		return;
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
}

int rspamd_http_parse(const char *resp, size_t len, bool eof, int *status, const char **body,
    size_t *blen, long *offset)
{
	struct rspamd_reader r;
	int rc;

	rspamd_reader_init(&r, len + 1, UINT64_MAX, NULL, NULL);
	rc = rspamd_reader_feed(&r, resp, len, eof);
	if (rc == 0) {
		*status = r.status;
		*body = resp + r.hlen;
		*blen = (size_t)r.body_seen;
		if (offset)
			*offset = r.offset;
	}
	rspamd_reader_free(&r);
	return rc < 0 ? -1 : rc;
}

/* ------------------------------------------------------------------- the plugin */

struct rspamd_inst {
	const struct mxgate_host *host;
	struct pconn_addr addr;
	char hostport[128];
	uint64_t max_size;
	bool use_action;
	char password[128];
	char settings_id[128];   /* rspamd's Settings-ID: a settings profile of its settings module */
	char spam_header[128];   /* rspamd's proxy worker's spam_header: "add header" sets it */
};

/* `options:` of an rspamd entry (the entry's own `max_size:` fills the same). */
struct rspamd_options {
	uint64_t max_size;
	bool use_action;
	char *password;
	char *settings_id;
	char *spam_header;
};

static const struct cfg_field rspamd_option_fields[] = {
	{ "max_size", CFG_SIZE, offsetof(struct rspamd_options, max_size), "20M", 1, 1073741824.0,
	  .doc = "larger messages are not scanned" },
	{ "use_action", CFG_BOOL, offsetof(struct rspamd_options, use_action), "false",
	  .doc = "apply rspamd's reply as its milter gateway does: the action (reject -> 550 5.7.1, soft reject -> 451 4.7.1, rewrite subject -> its new Subject, add header -> X-Spam: Yes, discard, quarantine), the milter block (add_headers/remove_headers, change_from/add_rcpt/del_rcpt, reject discard/quarantine, no_action, spam_header), the DKIM-Signature and a body a Lua rule rewrote (asked for with Flags: milter,body_block) (else only its score counts)" },
	{ "password", CFG_STRING, offsetof(struct rspamd_options, password),
	  .doc = "rspamd controller password (the `Password:` header), for an address that is rspamd's controller only: rspamd takes a request with one for rspamc's, and its greylist, ratelimit and reputation modules skip the message" },
	{ "settings_id", CFG_STRING, offsetof(struct rspamd_options, settings_id),
	  .doc = "sent as rspamd's `Settings-ID:` request header: the settings rule of that `id` (local.d/settings.conf) applies to every message of this entry, before its rules run (e.g. greylist and ratelimit off for mail mxgate already greylists and limits); rspamd logs an unknown id and scans with its defaults. Default: none (rspamd's milter sends none either)" },
	{ "spam_header", CFG_STRING, offsetof(struct rspamd_options, spam_header), "X-Spam",
	  .doc = "with use_action: the field `add header` sets to Yes (and the reply's milter.spam_header string to its value), every earlier one removed first; rspamd's proxy worker's `spam_header` option, to be set alike when it names another field" },
	{ .key = NULL }
};

const struct cfg_table rspamd_options_table = {
	.name = "plugins[].options (rspamd)",
	.size = sizeof(struct rspamd_options),
	.fields = rspamd_option_fields,
};

struct rspamd_scan {
	struct rspamd_inst *ri;
	struct mxgate_call *call;
	struct scanner *scan;
	const char *msg;
	size_t len;
	struct rspamd_reader rd;     /* the reply: its head and JSON; the body block to newbody */
	struct msgbuf *newbody;      /* the body block as it comes, within limits.memory_budget or
	                              * spooled (NULL: none yet, or dropped); handed to the host */
	bool body_too_big;           /* the body block passed limits.max_message_size: dropped */
	const char *body_error;      /* why the body block could not be kept */
	long cur_hdr;                /* rspamd milter's count for a negative order (rspamd_add_field);
	                              * -1 until the reply's first add */
	long removed_hdr;            /* fields the reply's remove_headers removed (off cur_hdr) */
	const char *send_error;      /* why the request was not sent */
	struct rspamd_reply reply;   /* the reply's JSON, read once */
};

static void rspamd_scan_free(struct rspamd_scan *sc)
{
	if (sc == NULL)
		return;
	scanner_free(sc->scan);
	rspamd_reader_free(&sc->rd);
	rspamd_reply_free(&sc->reply);
	msgbuf_free(sc->newbody);
	free(sc);
}

static void rspamd_scan_end(struct rspamd_scan *sc, enum mxgate_action a, int code, const char *reply,
    const char *reason)
{
	struct mxgate_call *c = sc->call;
	const struct mxgate_host *h = sc->ri->host;

	*h->session_slot(c) = NULL;
	rspamd_scan_free(sc);
	h->done(c, a, code, reply, reason);
}

static void rspamd_symbol_add_cb(void *arg, const char *name, double score)
{
	struct rspamd_scan *sc = arg;
	char clean[64];
	size_t k = 0;

	for (const char *p = name; *p && k < sizeof(clean) - 1; p++)
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-' || *p == '.')
			clean[k++] = *p;
	clean[k] = '\0';
	if (k)
		sc->ri->host->add_symbol(sc->call, clean, 0, NULL);
}

/* rspamd's "rewrite subject", as its milter mode applies it (CHGHEADER "Subject" index 1:
 * the first Subject field replaced, one added when there is none; no X-Spam-Prev-Subject,
 * which is SpamAssassin's). rspamd sends the value MIME-encoded; the host turns any line
 * break that is not a fold into a blank. A reply without "subject" changes nothing; one
 * longer than 1,023 octets (cut) is not applied and logged. */
static void rspamd_rewrite_subject(struct rspamd_scan *sc, const struct rspamd_result *r)
{
	const struct mxgate_host *h = sc->ri->host;

	if (r->subject_cut) {
		h->log(sc->call, 2, "event=rspamd_error error=\"subject too long\" action=\"rewrite subject\"");
		return;
	}
	if (r->subject[0] == '\0')
		return;
	h->change_header(sc->call, "Subject", 1, r->subject);
}

/* How many fields called name (NULL: fields of any name, rspamd milter's cur_hdr) the
 * message's header block holds (as received, as rspamd counted them; "X-Last : b" is one
 * named X-Last, as the header edits that resolve the index count it). */
static long rspamd_count_fields(struct rspamd_scan *sc, const char *name)
{
	const struct mxgate_host *h = sc->ri->host;
	size_t len = 0, hlen = h->header_len(sc->call), nlen = name ? strlen(name) : 0;
	const char *m = h->message(sc->call, &len);
	long n = 0;

	if (m == NULL || hlen > len)
		return 0;
	for (size_t i = 0; i + nlen < hlen; ) {
		const char *nl = memchr(m + i, '\n', hlen - i);
		size_t fl = headers_field_name_len(m + i, hlen - i);

		if (name == NULL ? fl > 0 : nlen > 0 && fl == nlen && strncasecmp(m + i, name, nlen) == 0)
			n++;
		if (nl == NULL)
			break;
		i = (size_t)(nl - m) + 1;
	}
	return n;
}

/* A field name rspamd may set: 1..127 printable octets, no ':' (others are not applied). */
static bool rspamd_field_name_ok(const char *name)
{
	size_t n = 0;

	for (; name[n]; n++)
		if ((unsigned char)name[n] <= ' ' || (unsigned char)name[n] > '~' || name[n] == ':')
			return false;
	return n > 0 && n < 128;
}

/* An address from rspamd (change_from, add_rcpt, del_rcpt) without its angle brackets, as
 * a milter's CHGFROM/ADDRCPT/DELRCPT reaches the MTA; into out (false: too long). */
static bool rspamd_addr(const char *v, char *out, size_t outlen)
{
	size_t l = strlen(v);

	if (l >= 2 && v[0] == '<' && v[l - 1] == '>') {
		v++;
		l -= 2;
	}
	if (l >= outlen)
		return false;
	memcpy(out, v, l);
	out[l] = '\0';
	return true;
}

/* An add of the reply, as rspamd 3.4's milter sends it (seen against it: a milter client
 * reading its replies, tests/integration/test_rspamd_real.py's FORCE-ORDER): no order (or
 * one that is no number) or order -1 -> ADDHEADER (appended); N >= 0 -> INSHEADER N;
 * N < -1 -> INSHEADER cur + N + 1, or 0 when -N passes cur, where cur starts at the count
 * of fields it was shown plus one, less the fields remove_headers removed, and grows by one
 * with each add before (sc->cur_hdr, counted up by the caller). */
static void rspamd_add_field(struct rspamd_scan *sc, const struct rspamd_header_op *op)
{
	const struct mxgate_host *h = sc->ri->host;
	long cur = sc->cur_hdr - 1, n = op->index;   /* as it was before this add */

	if (!op->insert || n == -1)
		return h->add_header(sc->call, op->name, op->value);
	if (n < 0)
		n = -n <= cur ? cur + n + 1 : 0;
	h->insert_header_delivered(sc->call, (int)n, op->name, op->value);
}

/* One operation of the reply, as rspamd's milter gateway turns it into milter actions
 * (rspamd_milter.c): remove N -> CHGHEADER name N with no value, 0 -> every field of that
 * name, -N -> counted from the last; an add as rspamd_add_field says (INSHEADER: the
 * delivered header block, mxgate's own Received counted as Postfix counts its own);
 * change_from -> CHGFROM, add_rcpt -> ADDRCPT, del_rcpt -> DELRCPT (the host checks each
 * address and logs event=plugin_bad_output for a bad one); spam_header -> every field of
 * that name removed, then the value set (its string form names no field: rspamd's proxy
 * worker's spam_header, options.spam_header here). */
static void rspamd_header_op_cb(void *arg, const struct rspamd_header_op *op)
{
	struct rspamd_scan *sc = arg;
	const struct mxgate_host *h = sc->ri->host;
	const char *name = op->kind == RSPAMD_OP_SPAM_HEADER && op->name == NULL ? sc->ri->spam_header : op->name;
	char nv[300], addr[512];

	if (op->kind == RSPAMD_OP_CHANGE_FROM || op->kind == RSPAMD_OP_ADD_RCPT || op->kind == RSPAMD_OP_DEL_RCPT) {
		if (op->cut || !rspamd_addr(op->value, addr, sizeof(addr))) {
			h->log(sc->call, 2, "event=rspamd_error error=\"address too long\" key=%s", op->name);
			return;
		}
		if (op->kind == RSPAMD_OP_CHANGE_FROM)
			h->set_sender(sc->call, addr);
		else if (op->kind == RSPAMD_OP_ADD_RCPT)
			h->add_rcpt(sc->call, addr, NULL);
		else
			h->del_rcpt(sc->call, addr);
		return;
	}
	if (!op->remove && op->kind == RSPAMD_OP_HEADER)
		sc->cur_hdr = (sc->cur_hdr < 0 ? rspamd_count_fields(sc, NULL) + 1 - sc->removed_hdr :
		    sc->cur_hdr) + 1;
	if (!rspamd_field_name_ok(name) || op->cut) {
		h->log(sc->call, 2, "event=rspamd_error error=\"%s\" header=%s",
		    op->cut ? "header value too long" : "bad header name", log_val(nv, sizeof(nv), name));
		return;
	}
	if (op->kind == RSPAMD_OP_SPAM_HEADER) {
		h->delete_header(sc->call, name);
		h->add_header(sc->call, name, op->value);
		return;
	}
	if (op->remove) {
		long n = op->index, have = rspamd_count_fields(sc, name);

		/* rspamd 3.4's milter counts a negative order from the fields left after its
		 * removes (test_rspamd_real.py's FORCE-RMORDER, FORCE-RMALL) */
		if (n == 0) {
			sc->removed_hdr += have;
			h->delete_header(sc->call, name);
			return;
		}
		if (n < 0)
			n = have + n + 1;
		if (n > 0) {
			sc->removed_hdr += n <= have;
			h->change_header(sc->call, name, (int)n, NULL);
		}
		return;
	}
	rspamd_add_field(sc, op);
}

/* The reply's operations in rspamd's milter's order: the "milter" block's removes, adds
 * and envelope changes; its spam_header when the action is "add header" (then the action
 * adds nothing more: returns true); the top-level DKIM-Signature. */
static bool rspamd_apply_milter(struct rspamd_scan *sc, const struct rspamd_reply *rp)
{
	bool spam_header = rp->r.has_spam_header && strcmp(rp->r.action, "add header") == 0;

	rspamd_reply_ops(rp, RSPAMD_MILTER_REMOVES, rspamd_header_op_cb, sc);
	rspamd_reply_ops(rp, RSPAMD_MILTER_ADDS, rspamd_header_op_cb, sc);
	rspamd_reply_ops(rp, RSPAMD_MILTER_ENVELOPE, rspamd_header_op_cb, sc);
	if (spam_header)
		rspamd_reply_ops(rp, RSPAMD_MILTER_SPAM_HEADER, rspamd_header_op_cb, sc);
	rspamd_reply_ops(rp, RSPAMD_MILTER_DKIM, rspamd_header_op_cb, sc);
	return spam_header;
}

/* Whether the message with a body of len octets passes limits.max_message_size. */
static bool rspamd_body_too_big(struct rspamd_scan *sc, size_t len)
{
	const struct mxgate_host *h = sc->ri->host;
	const char *v = h->get(sc->call, MXGATE_MAX_SIZE);

	return v && h->header_len(sc->call) + len > strtoull(v, NULL, 10);
}

/* The limit on a body block as it comes: its octets pass limits.max_message_size whatever
 * the header (the verdict checks it with the header's length, after the reply's edits). */
static uint64_t rspamd_max_size(struct rspamd_scan *sc)
{
	const char *v = sc->ri->host->get(sc->call, MXGATE_MAX_SIZE);

	return v ? strtoull(v, NULL, 10) : UINT64_MAX;
}

/* The reader's sink with use_action: the body block's octets straight into a message
 * buffer made as the host makes its own (plugins_body_new: counted in limits.memory_budget,
 * spooled past it or past limits.memory_threshold), never grown beside it. Past
 * limits.max_message_size it is dropped, the rest read and not kept (refused at the
 * verdict, unless the reply's spam_header leaves the body as it is). 0 or -1 (out of
 * memory, the spool failed: body_error). */
static int rspamd_body_sink(void *arg, const char *data, size_t len)
{
	struct rspamd_scan *sc = arg;

	if (sc->body_too_big)
		return 0;
	if (sc->rd.block_len > rspamd_max_size(sc)) {
		sc->body_too_big = true;
		msgbuf_free(sc->newbody);
		sc->newbody = NULL;
		return 0;
	}
	if (sc->newbody == NULL && (sc->newbody = plugins_body_new(sc->call)) == NULL) {
		sc->body_error = "out of memory";
		return -1;
	}
	if (msgbuf_append(sc->newbody, data, len) < 0) {
		sc->body_error = msgbuf_error(sc->newbody) ? "the new body could not be spooled" : "out of memory";
		return -1;
	}
	return 0;
}

/* The reply is over (read whole, closed, or refused by the reader): the verdict. */
static void rspamd_try_verdict(struct rspamd_scan *sc)
{
	const struct mxgate_host *h = sc->ri->host;
	const struct rspamd_result *r = &sc->reply.r;
	const char *body;
	size_t blen;
	int rc = rspamd_reader_feed(&sc->rd, NULL, 0, true);    /* settled: nothing more comes */
	/* the body block (we ask for it with use_action): the JSON ends at Message-Offset,
	 * the rewritten body follows; at the end, none (rspamd's proxy reads it so) */
	bool newbody = sc->ri->use_action && sc->rd.offset >= 0 && sc->rd.block_len > 0;
	char desc[64], text[300];

	if (sc->body_error) {
		h->log(sc->call, 2, "event=rspamd_error error=\"%s\"", sc->body_error);
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-body");
	}
	if (rc < 0 || sc->rd.status != 200) {
		h->log(sc->call, 2, "event=rspamd_error error=\"bad HTTP reply\" status=%d", sc->rd.status);
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-reply");
	}
	body = rspamd_reader_json(&sc->rd, &blen);
	if ((rc = rspamd_reply_parse(body, blen, &sc->reply)) < 0) {
		if (rc == -2)
			h->log(sc->call, 2, "event=rspamd_error error=\"too many symbols or operations\" "
			    "max=%d", RSPAMD_REPLY_ENTRIES_MAX);
		else
			h->log(sc->call, 2, "event=rspamd_error error=\"bad JSON\"");
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-reply");
	}
	snprintf(desc, sizeof(desc), "%s %.2f / %.2f", r->action, r->score, r->required);
	h->add_symbol(sc->call, "RSPAMD_SCORE", r->score, desc);
	rspamd_reply_symbols(&sc->reply, rspamd_symbol_add_cb, sc);
	char av[160];   /* rspamd's text (a custom action may hold anything): escaped */

	h->log(sc->call, 1, "event=rspamd_result score=%.2f required=%.2f action=%s", r->score,
	    r->required, log_val(av, sizeof(av), r->action));
	/* rspamd's own classes: these are its "spam" actions (greylist and soft reject are
	 * about rates, not content). */
	if (strcmp(r->action, "reject") == 0 || strcmp(r->action, "add header") == 0 ||
	    strcmp(r->action, "rewrite subject") == 0 || strcmp(r->action, "discard") == 0 ||
	    strcmp(r->action, "quarantine") == 0)
		h->set_flags(sc->call, MXGATE_FLAG_SPAM);
	if (!sc->ri->use_action)
		return rspamd_scan_end(sc, MXGATE_CONTINUE, 0, NULL, NULL);
	/* as rspamd's milter gateway: the reply's edits first, whatever the action (they are
	 * moot when the message is refused), then the action */
	if (rspamd_apply_milter(sc, &sc->reply))
		return rspamd_scan_end(sc, MXGATE_CONTINUE, 0, NULL, NULL);
	/* the rewritten body, as rspamd's milter sends REPLBODY: after the header edits, before
	 * the action (with spam_header above it is dropped, as there) */
	if (newbody && (sc->body_too_big || rspamd_body_too_big(sc, (size_t)sc->rd.block_len))) {
		/* as a milter's body past it (Postfix's cleanup: message file too big) */
		h->log(sc->call, 2, "event=rspamd_body_too_big size=%llu max=%s", (unsigned long long)sc->rd.block_len,
		    h->get(sc->call, MXGATE_MAX_SIZE));
		return rspamd_scan_end(sc, MXGATE_REJECT, 552, "5.3.4 Error: message file too big", "rspamd-body-too-big");
	}
	if (newbody) {
		/* handed over, not copied */
		struct msgbuf *nb = sc->newbody;

		sc->newbody = NULL;
		if (plugins_replace_body_buf(sc->call, nb) < 0) {
			h->log(sc->call, 2, "event=rspamd_error error=\"body not replaced\"");
			return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-body");
		}
	}
	if (r->milter_no_action) {    /* the action is only named */
		/* a field mxgate writes arrives once and never forged: a sender's copies go first
		 * (docs/operations.md, "Header fields mxgate writes") */
		h->delete_header(sc->call, "X-Rspamd-Action");
		h->add_header(sc->call, "X-Rspamd-Action", r->action);
		return rspamd_scan_end(sc, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	/* rspamd's own discard and quarantine actions, and a reject the block turns into one */
	if (strcmp(r->action, "discard") == 0 || (strcmp(r->action, "reject") == 0 && r->milter_discard))
		return rspamd_scan_end(sc, MXGATE_DISCARD, 0, NULL, "rspamd");
	if (strcmp(r->action, "quarantine") == 0 || (strcmp(r->action, "reject") == 0 && r->milter_quarantine)) {
		h->set_quarantine_reason(sc->call, "Spam message quarantined");
		return rspamd_scan_end(sc, MXGATE_QUARANTINE, 0, NULL, "rspamd");
	}
	if (strcmp(r->action, "reject") == 0) {
		snprintf(text, sizeof(text), "5.7.1 %s", r->smtp_message[0] ? r->smtp_message : "Spam message rejected");
		return rspamd_scan_end(sc, MXGATE_REJECT, 550, text, "rspamd");
	}
	if (strcmp(r->action, "soft reject") == 0) {
		snprintf(text, sizeof(text), "4.7.1 %s", r->smtp_message[0] ? r->smtp_message : "Try again later");
		return rspamd_scan_end(sc, MXGATE_TEMPFAIL, 451, text, "rspamd");
	}
	/* "add header", as rspamd's milter marks it: its spam_header (options.spam_header,
	 * X-Spam) set to Yes, once (a field of that name from outside removed first) */
	if (strcmp(r->action, "add header") == 0) {
		h->delete_header(sc->call, sc->ri->spam_header);
		h->add_header(sc->call, sc->ri->spam_header, "Yes");
	}
	if (strcmp(r->action, "rewrite subject") == 0)
		rspamd_rewrite_subject(sc, r);
	rspamd_scan_end(sc, MXGATE_CONTINUE, 0, NULL, NULL);
}

/* The request's head, growing (it holds one Rcpt line per recipient: no bound but the
 * transaction's, limits.max_recipients). */
struct rspamd_req { char *v; size_t len, cap; };

static void rspamd_put(struct rspamd_req *r, const char *s)
{
	growbuf_append(&r->v, &r->len, &r->cap, 1024, s, strlen(s));
}

/* Appends "Name: value\r\n" when value is non-empty and single-line. */
static void rspamd_hdr(struct rspamd_req *r, const char *name, const char *value)
{
	if (value == NULL || !*value || strpbrk(value, "\r\n"))
		return;
	rspamd_put(r, name);
	rspamd_put(r, ": ");
	rspamd_put(r, value);
	rspamd_put(r, "\r\n");
}

/* Connected: the /checkv2 request with the envelope as headers, then the message. 0 or -1
 * (sc->send_error says why). */
static int rspamd_send(struct scanner *scan, void *arg)
{
	struct rspamd_scan *sc = arg;
	const struct mxgate_host *h = sc->ri->host;
	struct mxgate_call *c = sc->call;
	struct rspamd_req r = { 0 };
	const char *from = h->get(c, MXGATE_MAIL_FROM);
	char lenbuf[32];

	rspamd_put(&r, "POST /checkv2 HTTP/1.1\r\nHost: ");
	rspamd_put(&r, sc->ri->hostport);
	rspamd_put(&r, "\r\nConnection: close\r\n");
	snprintf(lenbuf, sizeof(lenbuf), "%zu", sc->len);
	rspamd_hdr(&r, "Content-Length", lenbuf);
	rspamd_hdr(&r, "Password", sc->ri->password);
	rspamd_hdr(&r, "Settings-ID", sc->ri->settings_id);
	rspamd_hdr(&r, "IP", h->get(c, MXGATE_CLIENT_IP));
	rspamd_hdr(&r, "Helo", h->get(c, MXGATE_HELO));
	rspamd_hdr(&r, "Hostname", h->get(c, MXGATE_CLIENT_NAME));
	/* The null sender as rspamd's own milter gateway passes it on ("<>": rspamd's empty
	 * envelope sender, a bounce); without a From rspamd would take the message's From:. */
	rspamd_hdr(&r, "From", from && !*from ? "<>" : from);
	rspamd_hdr(&r, "Queue-Id", h->get(c, MXGATE_QUEUE_ID));
	rspamd_hdr(&r, "User", h->get(c, MXGATE_AUTH_USER));
	rspamd_hdr(&r, "MTA-Name", h->get(c, MXGATE_HOSTNAME));
	/* The session's TLS as rspamd's milter gateway passes Postfix's {tls_version} and
	 * {cipher} on: a TLS-Cipher flags rspamd's task as TLS (task:has_flag('ssl'), the
	 * Received rspamd makes up when the message's first one is not the client's), both are
	 * request headers a settings rule or Lua can read. */
	rspamd_hdr(&r, "TLS-Version", h->get(c, MXGATE_TLS_VERSION));
	rspamd_hdr(&r, "TLS-Cipher", h->get(c, MXGATE_TLS_CIPHER));
	for (size_t i = 0; i < h->rcpt_count(c); i++)
		rspamd_hdr(&r, "Rcpt", h->rcpt_at(c, i));
	/* With use_action what rspamd's milter gateway asks for (rspamd_milter_to_http): a body
	 * a Lua rule rewrote (task:set_message) comes after the JSON (body_block), the body only
	 * and folds of LF as a milter takes them (milter) */
	if (sc->ri->use_action)
		rspamd_hdr(&r, "Flags", "milter,body_block");
	rspamd_put(&r, "\r\n");
	sc->send_error = "rspamd-write";
	if (scanner_write(scan, r.v, r.len, r.v) < 0 || scanner_write(scan, sc->msg, sc->len, NULL) < 0)
		return -1;
	return 0;
}

/* Each read of the reply into the reader (the scanner keeps none): complete by
 * Content-Length or at the close; a malformed one is read by the verdict as such. */
static int rspamd_feed(const char *data, size_t len, bool eof, void *arg)
{
	struct rspamd_scan *sc = arg;
	int rc = rspamd_reader_feed(&sc->rd, data, len, eof);

	return rc == -2 ? -2 : rc == 1 ? 1 : 0;
}

static void rspamd_done(void *arg, enum scanner_status st, char *reply, size_t len, int err)
{
	struct rspamd_scan *sc = arg;

	if (err && st == SCANNER_OK)      /* a whole reply, then a reset: the reply stands */
		sc->ri->host->log(sc->call, 2, "event=rspamd_error error=\"%s\"", uv_strerror(err));
	switch (st) {
	case SCANNER_OK:
	case SCANNER_CLOSED:
	case SCANNER_BAD_REPLY:
		return rspamd_try_verdict(sc);
	case SCANNER_TOO_BIG:
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-reply-too-big");
	case SCANNER_SEND_FAILED:
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, sc->send_error);
	default:
		sc->ri->host->log(sc->call, 2, "event=rspamd_error error=\"%s\"",
		    err ? uv_strerror(err) : scanner_status_name(st));
		return rspamd_scan_end(sc, MXGATE_ERROR, 0, NULL, "rspamd-unreachable");
	}
}

static const struct scanner_codec rspamd_codec = { rspamd_send, NULL, rspamd_done, rspamd_feed };

/* An option sent as a request header's value (password, settings_id) into out: 0, or -1 and
 * err for one that is too long for out or would break the request's head. Unset: "". */
static int rspamd_option_value(const char *v, char *out, size_t cap, const char *key, char *err,
    size_t errlen)
{
	if (v == NULL)
		return 0;
	if (strlen(v) >= cap || strpbrk(v, "\r\n")) {
		snprintf(err, errlen, "options.%s: bad value (at most %zu octets, one line)", key, cap - 1);
		return -1;
	}
	snprintf(out, cap, "%s", v);
	return 0;
}

/* options: a struct rspamd_options (the typed `options:`). */
static int rspamd_init(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
    const void *options, void **instance, char *err, size_t errlen)
{
	const struct rspamd_options *o = options;
	struct rspamd_inst *ri = calloc(1, sizeof(*ri));
	const char *why;

	if (ri == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ri->host = host;
	ri->max_size = o->max_size;
	ri->use_action = o->use_action;
	if (args->address == NULL) {
		snprintf(err, errlen, "address: required (HOST:PORT of rspamd's normal worker, e.g. 127.0.0.1:11333)");
		goto fail;
	}
	if (pconn_addr_parse(args->address, &ri->addr, &why) < 0) {
		snprintf(err, errlen, "address: %s", why);
		goto fail;
	}
	ri->addr.connect_ms = args->connect_timeout_ms;
	snprintf(ri->hostport, sizeof(ri->hostport), "%s", ri->addr.is_unix ? "localhost" : args->address);
	if (rspamd_option_value(o->password, ri->password, sizeof(ri->password), "password", err, errlen) < 0 ||
	    rspamd_option_value(o->settings_id, ri->settings_id, sizeof(ri->settings_id), "settings_id", err,
	    errlen) < 0)
		goto fail;
	snprintf(ri->spam_header, sizeof(ri->spam_header), "%s", o->spam_header ? o->spam_header : "X-Spam");
	if (!rspamd_field_name_ok(ri->spam_header)) {
		snprintf(err, errlen, "options.spam_header: not a header field name (1-127 printable octets, no ':')");
		goto fail;
	}
	*instance = ri;
	return 0;
fail:
	free(ri);
	return -1;
}

static void rspamd_fini(void *instance)
{
	free(instance);
}

/* The most of a body block read: with use_action limits.max_message_size and as much again
 * as the JSON may hold (more is the entry's on_error; past max_message_size alone it is read
 * and refused, 552), else as much as the JSON (we asked for none: not kept). */
static uint64_t rspamd_block_max(const struct rspamd_inst *ri, struct mxgate_call *c)
{
	const char *v = ri->host->get(c, MXGATE_MAX_SIZE);
	unsigned long long max = v ? strtoull(v, NULL, 10) : ri->max_size;

	if (!ri->use_action)
		return RSPAMD_REPLY_MAX;
	if (max > (unsigned long long)RSPAMD_HTTP_BODY_MAX - RSPAMD_REPLY_MAX)
		max = (unsigned long long)RSPAMD_HTTP_BODY_MAX - RSPAMD_REPLY_MAX;
	return RSPAMD_REPLY_MAX + (uint64_t)max;
}

static void rspamd_on_eom(void *instance, struct mxgate_call *c)
{
	struct rspamd_inst *ri = instance;
	const struct mxgate_host *h = ri->host;
	struct rspamd_scan *sc;
	size_t len;
	const char *msg = h->message(c, &len);

	if (msg == NULL)
		return h->done(c, MXGATE_ERROR, 0, NULL, "no message");
	if (len > ri->max_size) {
		h->log(c, 0, "event=rspamd_skip size=%zu max_size=%llu", len, (unsigned long long)ri->max_size);
		return h->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		return h->done(c, MXGATE_ERROR, 0, NULL, "out of memory");
	sc->ri = ri;
	sc->call = c;
	sc->cur_hdr = -1;
	sc->msg = msg;
	sc->len = len;
	rspamd_reader_init(&sc->rd, RSPAMD_REPLY_MAX, rspamd_block_max(ri, c), ri->use_action ? rspamd_body_sink : NULL, sc);
	sc->scan = scanner_start(h->loop(c), &ri->addr, &rspamd_codec, RSPAMD_REPLY_MAX, 0, sc);
	if (sc->scan == NULL) {
		free(sc);
		return h->done(c, MXGATE_ERROR, 0, NULL, "rspamd-unreachable");
	}
	*h->session_slot(c) = sc;
}

static void rspamd_cancel(void *instance, struct mxgate_call *c)
{
	struct rspamd_inst *ri = instance;
	void **slot = ri->host->session_slot(c);

	rspamd_scan_free(*slot);
	*slot = NULL;
}

static const struct mxgate_plugin rspamd_plugin = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.name = "rspamd",
	.fini = rspamd_fini,
	.on_eom = rspamd_on_eom,
	.on_close = rspamd_cancel,
	.cancel = rspamd_cancel,
};

const struct plugin_builtin rspamd_builtin = {
	.desc = &rspamd_plugin,
	.options = &rspamd_options_table,
	.init = rspamd_init,
};
