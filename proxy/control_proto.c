/* control_proto.c — control socket request and reply-head parsers (see control_proto.h). */
#include "control_proto.h"

#include <stdlib.h>
#include <string.h>

enum { ST_LINE = 0, ST_BODY, ST_DONE, ST_BAD };

void ctl_parser_init(struct ctl_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void ctl_parser_reset(struct ctl_parser *p)
{
	free(p->req.body);
	ctl_parser_init(p);
}

static enum ctl_parse_status ctl_bad(struct ctl_parser *p, const char *why)
{
	p->state = ST_BAD;
	p->err = why;
	return CTL_BAD;
}

/* Parses "--length=N": N decimal, no sign, at most CTL_MAX_BODY. */
static int ctl_parse_length(const char *s, size_t *out)
{
	size_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (size_t)(*s - '0');
		if (v > CTL_MAX_BODY)
			return -1;
	}
	*out = v;
	return 0;
}

/* The line (without CR LF, NUL-terminated in req.line) is complete: split it into words. */
static enum ctl_parse_status ctl_split_line(struct ctl_parser *p)
{
	struct ctl_request *r = &p->req;
	char *s = r->line;
	bool has_length = false;

	r->argc = 0;
	if (strchr(s, '\r') != NULL)
		return ctl_bad(p, "stray CR");
	for (;;) {
		while (*s == ' ' || *s == '\t')
			*s++ = '\0';
		if (*s == '\0')
			break;
		char *w = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
		if (strncmp(w, "--", 2) == 0) {
			if (strcmp(w, "--json") == 0) {
				r->json = true;
			} else if (strncmp(w, "--length=", 9) == 0) {
				if (has_length || ctl_parse_length(w + 9, &r->body_len) != 0)
					return ctl_bad(p, "bad --length");
				has_length = true;
			} else {
				return ctl_bad(p, "unknown option");
			}
			continue;
		}
		if (r->argc == CTL_MAX_ARGS)
			return ctl_bad(p, "too many words");
		r->argv[r->argc++] = w;
	}
	if (r->argc == 0)
		return ctl_bad(p, "no command");
	if (has_length) {
		r->body = malloc(r->body_len + 1);
		if (r->body == NULL)
			return ctl_bad(p, "out of memory");
		r->body[r->body_len] = '\0';
		p->got = 0;
		p->state = ST_BODY;
		return CTL_NEED_MORE;
	}
	p->state = ST_DONE;
	return CTL_REQUEST;
}

enum ctl_parse_status ctl_parser_feed(struct ctl_parser *p, const char *buf, size_t len, size_t *used)
{
	size_t i = 0;

	*used = 0;
	if (p->state == ST_BAD)
		return CTL_BAD;
	if (p->state == ST_DONE)
		return CTL_REQUEST;
	while (i < len) {
		if (p->state == ST_BODY) {
			size_t n = p->req.body_len - p->got;
			if (n > len - i)
				n = len - i;
			memcpy(p->req.body + p->got, buf + i, n);
			p->got += n;
			i += n;
			if (p->got == p->req.body_len) {
				p->state = ST_DONE;
				*used = i;
				return CTL_REQUEST;
			}
			continue;
		}
		char c = buf[i++];
		if (c == '\n') {
			if (p->llen > 0 && p->req.line[p->llen - 1] == '\r')
				p->llen--;
			p->req.line[p->llen] = '\0';
			if (p->llen == 0)
				continue;	/* empty line: skipped */
			p->llen = 0;
			enum ctl_parse_status st = ctl_split_line(p);
			if (st == CTL_BAD) {
				*used = i;
				return st;
			}
			if (st == CTL_REQUEST) {
				*used = i;
				return st;
			}
			/* the body follows, possibly empty (--length=0) */
			if (p->req.body_len == 0) {
				p->state = ST_DONE;
				*used = i;
				return CTL_REQUEST;
			}
			continue;
		}
		/* CTL_MAX_LINE counts the LF: the line proper is at most CTL_MAX_LINE - 1 octets
		 * (a CR among them). */
		if (p->llen >= CTL_MAX_LINE - 1) {
			*used = i;
			return ctl_bad(p, "line too long");
		}
		if ((c < 0x20 || c > 0x7e) && c != '\t' && c != '\r') {
			*used = i;
			return ctl_bad(p, "not printable text");
		}
		p->req.line[p->llen++] = c;
	}
	/* A CR is only allowed right before the LF: checked when the line is split. */
	*used = i;
	return CTL_NEED_MORE;
}

int ctl_reply_parse_head(const char *buf, size_t len, bool *ok, size_t *payload_len, size_t *head_len)
{
	const char *nl = memchr(buf, '\n', len < 32 ? len : 32);
	size_t v = 0, i;

	if (nl == NULL)
		return len < 32 ? 0 : -1;
	if (len >= 3 && memcmp(buf, "OK ", 3) == 0) {
		*ok = true;
		i = 3;
	} else if (len >= 4 && memcmp(buf, "ERR ", 4) == 0) {
		*ok = false;
		i = 4;
	} else {
		return -1;
	}
	if (buf + i == nl)
		return -1;
	for (; buf + i < nl; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
		v = v * 10 + (size_t)(buf[i] - '0');
		if (v > CTL_MAX_BODY * 4u)
			return -1;
	}
	*payload_len = v;
	*head_len = (size_t)(nl - buf) + 1;
	return 1;
}
