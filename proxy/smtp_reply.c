/* smtp_reply.c — an SMTP/LMTP server's replies, read (RFC 5321 4.2), and the EHLO reply's
 * keywords. No I/O: relay.c and health.c feed what their sockets deliver. */
#include "smtp_reply.h"
#include "ascii8.h"
#include "domain.h"
#include "growbuf.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void smtp_reply_init(struct smtp_reply_reader *rd, unsigned flags)
{
	memset(rd, 0, sizeof(*rd));
	rd->flags = flags;
}

void smtp_reply_free(struct smtp_reply_reader *rd)
{
	free(rd->text);
	rd->text = NULL;
	rd->textlen = rd->textcap = 0;
}

void smtp_reply_reset(struct smtp_reply_reader *rd)
{
	rd->linelen = rd->textlen = 0;
	rd->nlines = 0;
	rd->bare_lf = rd->done = false;
	rd->err = SMTP_REPLY_OK;
}

size_t smtp_reply_pending(const struct smtp_reply_reader *rd)
{
	return rd->done ? rd->linelen : rd->linelen + rd->textlen;
}

const char *smtp_reply_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case SMTP_REPLY_OK: return "no error";
	case SMTP_REPLY_LINE_TOO_LONG: return "reply line too long";
	case SMTP_REPLY_MALFORMED: return "malformed reply";
	case SMTP_REPLY_CODE_CHANGED: return "reply code changes within a reply";
	case SMTP_REPLY_TOO_LONG: return "reply too long";
	case SMTP_REPLY_TOO_MANY_LINES: return "reply has too many lines";
	case SMTP_REPLY_BARE_LF: return "bare LF in a reply";
	default: return "reply error";
	}
}

static int smtp_reply_fail(struct smtp_reply_reader *rd, enum smtp_reply_err err, size_t at, size_t *used)
{
	rd->err = err;
	rd->linelen = 0;
	*used = at;
	return -(int)err;
}

static inline bool smtp_reply_digit(char c)
{
	return (unsigned)(c - '0') < 10;	/* isdigit without the locale */
}

/* See smtp_reply.h. A NUL first of all: every caller reads the text as a C string, which
 * would end there and give the client the reply cut short. And every other octet that is no printable text
 * (RFC 5321 4.2: printable US-ASCII; RFC 6531: UTF-8): an ESC sequence, BEL, a lone CR,
 * DEL, TAB, a C1 octet or bytes that are no UTF-8 would reach the client's terminal or log
 * viewer as the backend wrote them. As Postfix's smtp client censors a reply (smtp_chat.c:
 * printable(..., '?'), ASCII isprint or well-formed UTF-8, the first octet of a malformed
 * sequence replaced and the next one read afresh), with one step further: a C1 control
 * written in UTF-8 (U+0080-U+009F, U+009B being a terminal's CSI) is no text either. The
 * reply stays an answer, not a fault. */
void smtp_reply_printable(char *l, size_t ll)
{
	unsigned char *p = (unsigned char *)l;

	for (size_t i = 0; i < ll;) {
		/* the common line, all printable ASCII, eight octets at a time; its last
		 * (fewer than eight) as the line's last eight */
		while (ll - i >= 8 && ascii8_printable(p + i))
			i += 8;
		if (ll - i < 8 && ll >= 8 && ascii8_printable(p + ll - 8))
			break;
		/* i < ll still: the loop's condition held, and the words only take i to ll when
		 * the last of them was p[ll - 8 .. ll), printable, which the test above ends on */
		if (p[i] >= 0x20 && p[i] < 0x7f) {
			i++;
			continue;
		}
		size_t k = p[i] >= 0x80 ? domain_utf8_seq(p + i, ll - i) : 0;
		if (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) {
			p[i] = p[i + 1] = '?';	/* U+0080-U+009F */
		} else if (k == 0) {
			p[i] = '?';
			k = 1;
		}
		i += k;
	}
}

/* One line complete in rd->line[0..ll): 1 and *out when it ends a reply, 0 when it
 * continues one, or -err. */
static int smtp_reply_line(struct smtp_reply_reader *rd, size_t ll, struct smtp_reply *out)
{
	const char *l = rd->line;

	smtp_reply_printable(rd->line, ll);

	/* RFC 5321 4.2: three digits, the first 1-5 (4.2.1), then SP, "-" or the line's end */
	if (ll < 3 || (unsigned)(l[0] - '1') > 4 || !smtp_reply_digit(l[1]) || !smtp_reply_digit(l[2]) ||
	    (ll > 3 && l[3] != ' ' && l[3] != '-'))
		return -SMTP_REPLY_MALFORMED;
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	/* RFC 5321 4.2.1: a multi-line reply repeats its code on every line; a line with
	 * another code is not the same reply (which one would be the server's answer?) */
	if (rd->nlines > 0 && code != rd->code)
		return -SMTP_REPLY_CODE_CHANGED;
	if (rd->nlines + 1 > SMTP_REPLY_LINES_MAX)
		return -SMTP_REPLY_TOO_MANY_LINES;
	bool more = ll > 3 && l[3] == '-';
	rd->code = code;
	rd->nlines++;
	if (rd->nlines > 1 || more) {
		size_t sep = rd->textlen ? 2 : 0;
		if (rd->textlen + sep + ll + 1 > SMTP_REPLY_TEXT_MAX)
			return -SMTP_REPLY_TOO_LONG;
		if (sep)
			growbuf_append(&rd->text, &rd->textlen, &rd->textcap, 256, "\r\n", 2);
		growbuf_append(&rd->text, &rd->textlen, &rd->textcap, 256, l, ll);
		if (more)
			return 0;
		out->text = rd->text;
		out->len = rd->textlen;
	} else {
		/* a one-line reply (the most of them): the line itself, no copy */
		out->text = l;
		out->len = ll;
	}
	out->code = code;
	out->nlines = rd->nlines;
	out->bare_lf = rd->bare_lf;
	rd->done = true;
	return 1;
}

int smtp_reply_feed(struct smtp_reply_reader *rd, const char *in, size_t len, size_t *used,
    struct smtp_reply *out)
{
	if (rd->err != SMTP_REPLY_OK) {
		*used = 0;
		return -(int)rd->err;
	}
	if (rd->done) {
		/* the reply returned last is the caller's no more: a new one begins */
		rd->done = false;
		rd->textlen = 0;
		rd->nlines = 0;
		rd->bare_lf = false;
	}
	for (size_t i = 0; i < len;) {
		/* the octets up to the next LF join the line */
		const char *nl = memchr(in + i, '\n', len - i);
		size_t run = (nl != NULL ? (size_t)(nl - in) : len) - i;
		size_t ll = rd->linelen + run;
		/* A line longer than SMTP_REPLY_LINE_MAX fails now, not at a newline that may never
		 * come; one CR past it may still be the line's end (its LF in a later read). */
		if (ll > SMTP_REPLY_LINE_MAX + 1)
			return smtp_reply_fail(rd, SMTP_REPLY_LINE_TOO_LONG, i, used);
		memcpy(rd->line + rd->linelen, in + i, run);
		rd->linelen = ll;
		if (ll == SMTP_REPLY_LINE_MAX + 1 && rd->line[ll - 1] != '\r')
			return smtp_reply_fail(rd, SMTP_REPLY_LINE_TOO_LONG, i, used);
		if (nl == NULL)
			break;
		i += run + 1;	/* past the LF */
		if (ll > 0 && rd->line[ll - 1] == '\r') {
			ll--;
		} else {
			if (rd->flags & SMTP_REPLY_STRICT_LF)
				return smtp_reply_fail(rd, SMTP_REPLY_BARE_LF, i - 1, used);
			rd->bare_lf = true;
		}
		rd->line[ll] = '\0';
		rd->linelen = 0;
		int rc = smtp_reply_line(rd, ll, out);
		if (rc < 0)
			return smtp_reply_fail(rd, (enum smtp_reply_err)-rc, i, used);
		if (rc == 1) {
			*used = i;
			return 1;
		}
	}
	*used = len;
	return 0;
}

/* RFC 3463 (RFC 2034 4: after the code and its separator) "class.subject.detail", class
 * the reply code's first digit and 2, 4 or 5, subject and detail 1-3 digits each, then the
 * end of the line or a space. */
bool smtp_reply_enhanced(const struct smtp_reply *rep, char out[12])
{
	const char *l = rep->text, *e = rep->text + rep->len;

	out[0] = '\0';
	for (const char *c = e; c > rep->text; c--)	/* the last line */
		if (c[-1] == '\n') {
			l = c;
			break;
		}
	const char *p = l + 4;
	if (e - l < 9 || (l[0] != '2' && l[0] != '4' && l[0] != '5') || p[0] != l[0] || p[1] != '.')
		return false;
	const char *q = p + 2;
	for (int part = 0; part < 2; part++) {
		size_t n;
		for (n = 0; q < e && n < 4 && smtp_reply_digit(*q); n++)
			q++;
		if (n == 0 || n > 3)
			return false;
		if (part == 0) {
			if (q >= e || *q != '.')
				return false;
			q++;
		}
	}
	if (q < e && *q != ' ')
		return false;
	memcpy(out, p, (size_t)(q - p));	/* at most 1 + 1 + 3 + 1 + 3 = 9 octets */
	out[q - p] = '\0';
	return true;
}

/* ---- the EHLO reply ------------------------------------------------------------------ */

void smtp_caps_parse(const char *text, struct smtp_caps *out)
{
	/* RFC 5321 4.1.1.1: the reply's first line is "250 Domain [ SP greet ]", the keywords
	 * are the lines after it: a server named PIPELINING.example, or greeting "mx STARTTLS
	 * ready", offers neither (a one-line reply offers nothing) */
	const char *p = strstr(text, "\r\n");

	out->bits = 0;
	out->xclient_attrs[0] = '\0';
	if (p)
		p += 2;
	while (p && *p) {
		const char *e = strstr(p, "\r\n");
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n > 4) {
			char kw[64];
			size_t k = 0;
			const char *q = p + 4;
			while (k < sizeof(kw) - 1 && q < p + n && *q != ' ')
				kw[k++] = (char)toupper((unsigned char)*q++);
			kw[k] = '\0';
			if (strcmp(kw, "PIPELINING") == 0) out->bits |= SMTP_CAP_PIPELINING;
			else if (strcmp(kw, "SIZE") == 0) out->bits |= SMTP_CAP_SIZE;
			else if (strcmp(kw, "8BITMIME") == 0) out->bits |= SMTP_CAP_8BITMIME;
			else if (strcmp(kw, "SMTPUTF8") == 0) out->bits |= SMTP_CAP_SMTPUTF8;
			else if (strcmp(kw, "STARTTLS") == 0) out->bits |= SMTP_CAP_STARTTLS;
			else if (strcmp(kw, "ENHANCEDSTATUSCODES") == 0) out->bits |= SMTP_CAP_ENHANCED;
			else if (strcmp(kw, "DSN") == 0) out->bits |= SMTP_CAP_DSN;
			else if (strcmp(kw, "CHUNKING") == 0) out->bits |= SMTP_CAP_CHUNKING;
			else if (strcmp(kw, "XCLIENT") == 0) {
				out->bits |= SMTP_CAP_XCLIENT;
				size_t al = (size_t)(p + n - q);
				if (al >= sizeof(out->xclient_attrs)) {
					/* cut at a word's end: a word across the cut is left out
					 * whole (a part of it may be another attribute's name) */
					al = sizeof(out->xclient_attrs) - 1;
					if (q[al] != ' ')
						while (al > 0 && q[al] != ' ')
							al--;
				}
				memcpy(out->xclient_attrs, q, al);
				out->xclient_attrs[al] = '\0';
				for (char *c = out->xclient_attrs; *c; c++)
					*c = (char)toupper((unsigned char)*c);
			}
		}
		p = e ? e + 2 : NULL;
	}
}

bool smtp_caps_xclient_has(const struct smtp_caps *c, const char *attr)
{
	size_t n = strlen(attr);

	/* an attribute is a word: "" or one with a blank is none (both were found at the
	 * list's start: "" in every list, " NAME" in " NAME ADDR") */
	if (n == 0 || strchr(attr, ' ') != NULL)
		return false;
	/* smtp_caps_parse keeps the blank after XCLIENT: the list is "" or " A B ...", so a
	 * word matched never starts it and p[-1] is the list's */
	for (const char *p = c->xclient_attrs; (p = strstr(p, attr)) != NULL; p += n)
		if (p[-1] == ' ' && (p[n] == '\0' || p[n] == ' '))
			return true;
	return false;
}
