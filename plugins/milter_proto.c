/* milter_proto.c — milter frame encoding and a resumable, bounded reply decoder. No I/O. */
#include "milter_proto.h"

#include <libmilter/mfdef.h>
#include <libmilter/mfapi.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------- encoding */

void milter_buf_init(struct milter_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void milter_buf_free(struct milter_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void milter_buf_clear(struct milter_buf *b)
{
	b->len = 0;
}

/* Makes room for n more bytes. 0 or -1. */
static int milter_buf_reserve(struct milter_buf *b, size_t n)
{
	size_t cap;
	unsigned char *p;

	if (b->len + n <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

static void milter_buf_add(struct milter_buf *b, const void *d, size_t n)
{
	if (n) {
		memcpy(b->data + b->len, d, n);
		b->len += n;
	}
}

int milter_buf_append(struct milter_buf *b, const void *data, size_t len)
{
	if (milter_buf_reserve(b, len) < 0)
		return -1;
	milter_buf_add(b, data, len);
	return 0;
}

static void milter_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t milter_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Starts a frame of data length dlen; returns 0 or -1. The caller appends exactly dlen. */
static int milter_frame_begin(struct milter_buf *b, char cmd, size_t dlen)
{
	unsigned char hdr[5];

	if (dlen > UINT32_MAX - 1 || milter_buf_reserve(b, 5 + dlen) < 0)
		return -1;
	milter_put_u32(hdr, (uint32_t)dlen + 1);
	hdr[4] = (unsigned char)cmd;
	milter_buf_add(b, hdr, 5);
	return 0;
}

int milter_put_frame(struct milter_buf *b, char cmd, const void *data, size_t len)
{
	if (milter_frame_begin(b, cmd, len) < 0)
		return -1;
	milter_buf_add(b, data, len);
	return 0;
}

int milter_put_optneg(struct milter_buf *b, uint32_t version, uint32_t actions, uint32_t protocol)
{
	unsigned char d[12];

	milter_put_u32(d, version);
	milter_put_u32(d + 4, actions);
	milter_put_u32(d + 8, protocol);
	return milter_put_frame(b, SMFIC_OPTNEG, d, sizeof(d));
}

/* Appends s with its NUL (s NULL = ""). */
static void milter_buf_addz(struct milter_buf *b, const char *s)
{
	milter_buf_add(b, s ? s : "", strlen(s ? s : "") + 1);
}

int milter_put_macros(struct milter_buf *b, char stage, const char *const *kv, size_t n)
{
	size_t dlen = 1;

	for (size_t i = 0; i < n; i++)
		if (kv[2 * i] && kv[2 * i + 1])
			dlen += strlen(kv[2 * i]) + 1 + strlen(kv[2 * i + 1]) + 1;
	if (milter_frame_begin(b, SMFIC_MACRO, dlen) < 0)
		return -1;
	milter_buf_add(b, &stage, 1);
	for (size_t i = 0; i < n; i++)
		if (kv[2 * i] && kv[2 * i + 1]) {
			milter_buf_addz(b, kv[2 * i]);
			milter_buf_addz(b, kv[2 * i + 1]);
		}
	return 0;
}

int milter_put_connect(struct milter_buf *b, const char *hostname, char family, uint16_t port,
    const char *addr)
{
	size_t dlen = strlen(hostname) + 1 + 1;
	unsigned char pb[2] = { port >> 8, port & 0xff };

	if (family != SMFIA_UNKNOWN)
		dlen += 2 + strlen(addr) + 1;
	if (milter_frame_begin(b, SMFIC_CONNECT, dlen) < 0)
		return -1;
	milter_buf_addz(b, hostname);
	milter_buf_add(b, &family, 1);
	if (family != SMFIA_UNKNOWN) {
		milter_buf_add(b, pb, 2);
		milter_buf_addz(b, addr);
	}
	return 0;
}

int milter_put_helo(struct milter_buf *b, const char *helo)
{
	return milter_put_frame(b, SMFIC_HELO, helo, strlen(helo) + 1);
}

int milter_put_envaddr(struct milter_buf *b, char cmd, const char *addr, const char *params)
{
	/* "<addr>\0" then each ESMTP argument NUL-terminated, as sendmail sends them. */
	size_t dlen = strlen(addr) + 3;
	const char *p;

	for (p = params ? params : ""; *p; ) {
		size_t l;

		while (*p == ' ')
			p++;
		l = strcspn(p, " ");
		if (l)
			dlen += l + 1;
		p += l;
	}
	if (milter_frame_begin(b, cmd, dlen) < 0)
		return -1;
	milter_buf_add(b, "<", 1);
	milter_buf_add(b, addr, strlen(addr));
	milter_buf_add(b, ">", 2);  /* with the NUL */
	for (p = params ? params : ""; *p; ) {
		size_t l;

		while (*p == ' ')
			p++;
		l = strcspn(p, " ");
		if (l) {
			milter_buf_add(b, p, l);
			milter_buf_add(b, "", 1);
		}
		p += l;
	}
	return 0;
}

int milter_put_header(struct milter_buf *b, const char *name, const char *value)
{
	size_t nl = strlen(name) + 1, vl = strlen(value) + 1;

	if (milter_frame_begin(b, SMFIC_HEADER, nl + vl) < 0)
		return -1;
	milter_buf_add(b, name, nl);
	milter_buf_add(b, value, vl);
	return 0;
}

int milter_put_body(struct milter_buf *b, const void *data, size_t len)
{
	if (len > MILTER_BODY_CHUNK)
		return -1;
	return milter_put_frame(b, SMFIC_BODY, data, len);
}

int milter_put_simple(struct milter_buf *b, char cmd)
{
	return milter_put_frame(b, cmd, NULL, 0);
}

/* ------------------------------------------------------------------- decoding */

void milter_parser_init(struct milter_parser *p, uint32_t max_frame)
{
	memset(p, 0, sizeof(*p));
	p->max_frame = max_frame ? max_frame : MILTER_FRAME_MAX_DEFAULT;
}

void milter_parser_free(struct milter_parser *p)
{
	free(p->frame);
	p->frame = NULL;
}

static int milter_parser_fail(struct milter_parser *p, const char *why)
{
	p->state = MILTER_PS_ERROR;
	p->err = why;
	return -1;
}

int milter_parser_feed(struct milter_parser *p, const void *data, size_t len, size_t *used,
    char *cmd, const unsigned char **payload, size_t *plen)
{
	const unsigned char *d = data;
	size_t off = 0;

	*used = 0;
	if (p->state == MILTER_PS_ERROR)
		return -1;
	while (off < len || (p->state == MILTER_PS_BODY && p->have == p->framelen)) {
		if (p->state == MILTER_PS_LEN) {
			size_t take = 4 - p->lenhave;

			if (take > len - off)
				take = len - off;
			memcpy(p->lenbuf + p->lenhave, d + off, take);
			p->lenhave += take;
			off += take;
			if (p->lenhave < 4)
				break;
			p->framelen = milter_get_u32(p->lenbuf);
			if (p->framelen == 0)
				return *used = off, milter_parser_fail(p, "zero-length frame");
			if (p->framelen > p->max_frame)
				return *used = off, milter_parser_fail(p, "oversized frame");
			free(p->frame);
			p->frame = malloc(p->framelen);
			if (p->frame == NULL)
				return *used = off, milter_parser_fail(p, "out of memory");
			p->have = 0;
			p->state = MILTER_PS_BODY;
			continue;
		}
		/* MILTER_PS_BODY */
		{
			size_t take = p->framelen - p->have;

			if (take > len - off)
				take = len - off;
			memcpy(p->frame + p->have, d + off, take);
			p->have += take;
			off += take;
			if (p->have < p->framelen)
				break;
			p->state = MILTER_PS_LEN;
			p->lenhave = 0;
			*cmd = (char)p->frame[0];
			*payload = p->frame + 1;
			*plen = p->framelen - 1;
			*used = off;
			return 1;
		}
	}
	*used = off;
	return 0;
}

/* Finds a NUL-terminated string at *off within [p, p+len); advances *off. NULL if none. */
static const char *milter_take_str(const unsigned char *p, size_t len, size_t *off)
{
	const unsigned char *z;
	const char *s;

	if (*off >= len)
		return NULL;
	z = memchr(p + *off, '\0', len - *off);
	if (z == NULL)
		return NULL;
	s = (const char *)p + *off;
	*off = (size_t)(z - p) + 1;
	return s;
}

int milter_symlist_next(const unsigned char *data, size_t len, size_t *off, uint32_t *stage, const char **names)
{
	size_t o = *off;

	if (o >= len)
		return 0;
	if (len - o < 4)
		return -1;
	*stage = milter_get_u32(data + o);
	o += 4;
	if ((*names = milter_take_str(data, len, &o)) == NULL)
		return -1;
	*off = o;
	return 1;
}

int milter_reply_parse(char cmd, const unsigned char *payload, size_t len, struct milter_reply *r)
{
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->cmd = cmd;
	switch (cmd) {
	case SMFIC_OPTNEG:
		/* v2+: version, actions, protocol; v6 may append macro lists (milter_symlist_next). */
		if (len < 12)
			return -1;
		r->version = milter_get_u32(payload);
		r->actions = milter_get_u32(payload + 4);
		r->protocol = milter_get_u32(payload + 8);
		r->data = payload + 12;
		r->len = len - 12;
		return 0;
	case SMFIR_ACCEPT: case SMFIR_CONTINUE: case SMFIR_DISCARD: case SMFIR_REJECT:
	case SMFIR_TEMPFAIL: case SMFIR_PROGRESS: case SMFIR_SKIP: case SMFIR_CONN_FAIL:
	case SMFIR_SHUTDOWN:
		/* These carry no data: bytes after one are malformed (Postfix's milter8: "reply
		 * was followed by N data bytes", milter_default_action), not the bare reply. */
		return len == 0 ? 0 : -1;
	case SMFIR_REPLYCODE: {
		const char *s = milter_take_str(payload, len, &off);

		/* "550 5.7.1 text" (or multi-line "550-...\r\n550 ..."): 3 digits, 4xx/5xx. */
		if (s == NULL || strlen(s) < 3 || s[0] < '4' || s[0] > '5' || s[1] < '0' ||
		    s[1] > '9' || s[2] < '0' || s[2] > '9' || (s[3] != '\0' && s[3] != ' ' && s[3] != '-'))
			return -1;
		/* An enhanced status code must be of the reply's class (RFC 3463): "550 4.7.1"
		 * is malformed, as Postfix's milter client judges it. */
		if (s[3] != '\0' && s[4] >= '0' && s[4] <= '9' && s[4] != s[0])
			return -1;
		r->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		r->text = s[3] ? s + 4 : s + 3;
		return 0;
	}
	case SMFIR_ADDHEADER:
		r->name = milter_take_str(payload, len, &off);
		r->value = milter_take_str(payload, len, &off);
		return r->name && r->value && *r->name ? 0 : -1;
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		if (len < 4)
			return -1;
		r->index = milter_get_u32(payload);
		off = 4;
		r->name = milter_take_str(payload, len, &off);
		r->value = milter_take_str(payload, len, &off);
		return r->name && r->value && *r->name ? 0 : -1;
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
		r->name = milter_take_str(payload, len, &off);
		return r->name && *r->name ? 0 : -1;
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_CHGFROM:
		r->name = milter_take_str(payload, len, &off);
		r->value = milter_take_str(payload, len, &off);   /* optional ESMTP args */
		return r->name && *r->name ? 0 : -1;
	case SMFIR_QUARANTINE:
		r->name = milter_take_str(payload, len, &off);
		return r->name ? 0 : -1;
	case SMFIR_REPLBODY:
		r->data = payload;
		r->len = len;
		return 0;
	case SMFIR_SETSYMLIST:
		return 0;
	default:
		return -1;
	}
}

uint32_t milter_proto_offer(void)
{
	/* Everything we can skip or run without replies, and HDR_LEADSPC (header values with
	 * their leading white space, as written); not RCPT_REJ (we never send rejected
	 * recipients). */
	return SMFIP_HDR_LEADSPC | SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
	    SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA |
	    SMFIP_SKIP | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
	    SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_BODY;
}

uint32_t milter_proto_negotiated(uint32_t version, uint32_t protocol)
{
	uint32_t p = protocol & milter_proto_offer();

	if (version < 4)   /* SMFIC_DATA came with protocol 4 (Sendmail 8.13) */
		p |= SMFIP_NODATA;
	return p;
}

uint32_t milter_actions_offer(void)
{
	/* SMFIF_ADDHDRS|CHGBODY|ADDRCPT|DELRCPT|CHGHDRS|QUARANTINE|CHGFROM|ADDRCPT_PAR|SETSYMLIST */
	return SMFI_CURR_ACTS;
}

int milter_optneg_check(const struct milter_reply *r, const char **why)
{
	if (r->cmd != SMFIC_OPTNEG) {
		*why = "expected an option negotiation reply";
		return -1;
	}
	if (r->version < 2 || r->version > 6) {
		*why = "unsupported milter protocol version";
		return -1;
	}
	if ((r->actions & milter_actions_offer()) != r->actions) {
		*why = "actions asked for that were not offered";
		return -1;
	}
	return 0;
}

uint32_t milter_action_needed(char cmd, const char **name)
{
	static const struct { char cmd; uint32_t bit; const char *name; } need[] = {
		{ SMFIR_ADDHEADER, SMFIF_ADDHDRS, "SMFIF_ADDHDRS" },
		{ SMFIR_INSHEADER, SMFIF_ADDHDRS, "SMFIF_ADDHDRS" },
		{ SMFIR_CHGHEADER, SMFIF_CHGHDRS, "SMFIF_CHGHDRS" },
		{ SMFIR_REPLBODY, SMFIF_CHGBODY, "SMFIF_CHGBODY" },
		{ SMFIR_ADDRCPT, SMFIF_ADDRCPT, "SMFIF_ADDRCPT" },
		{ SMFIR_ADDRCPT_PAR, SMFIF_ADDRCPT_PAR, "SMFIF_ADDRCPT_PAR" },
		{ SMFIR_DELRCPT, SMFIF_DELRCPT, "SMFIF_DELRCPT" },
		{ SMFIR_CHGFROM, SMFIF_CHGFROM, "SMFIF_CHGFROM" },
		{ SMFIR_QUARANTINE, SMFIF_QUARANTINE, "SMFIF_QUARANTINE" },
	};

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (need[i].cmd == cmd) {
			if (name)
				*name = need[i].name;
			return need[i].bit;
		}
	if (name)
		*name = "";
	return 0;
}
