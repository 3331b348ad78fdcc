/* fuzz_metrics_post.c — the metrics listener's POST head (metrics_post_head_parse: the
 * request target, Content-Length, Transfer-Encoding, Expect), as a client's bytes reach it.
 * Invariants: nothing is read past the input (an exact-size copy, ASan); a head found ends
 * with its empty line inside the input; the answer depends on the head alone (the same for
 * the input cut right after the head, and "incomplete" for every shorter cut); the path is
 * the request line's first word after "POST ", visible ASCII only; a length taken
 * is the digits of a Content-Length line of the head, between optional blanks, and every
 * Content-Length line of the head says the same. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metrics.h"

static bool same(const struct metrics_post_head *a, const struct metrics_post_head *b)
{
	return a->head_len == b->head_len && strcmp(a->path, b->path) == 0 && a->status == b->status &&
	    a->want == b->want && a->expect_continue == b->expect_continue;
}

/* The Content-Length lines of head[0..len): each value's digits (trimmed of SP/HT) must
 * read as want; returns how many there are, -1 when one does not. */
static int check_lengths(const char *head, size_t len, unsigned long long want)
{
	int n = 0;
	const char *p = memchr(head, '\n', len);

	while (p && (size_t)(p + 1 - head) < len) {
		const char *line = p + 1, *nl = memchr(line, '\n', len - (size_t)(line - head));
		size_t ll = nl ? (size_t)(nl - line) : len - (size_t)(line - head);

		if (ll >= 15 && strncasecmp(line, "content-length:", 15) == 0) {
			size_t i = 15, e = ll;
			unsigned long long v = 0;

			if (e && line[e - 1] == '\r')
				e--;
			while (i < e && (line[i] == ' ' || line[i] == '\t'))
				i++;
			while (e > i && (line[e - 1] == ' ' || line[e - 1] == '\t'))
				e--;
			if (i == e || e - i > 18)
				return -1;
			for (size_t k = i; k < e; k++) {
				if (line[k] < '0' || line[k] > '9')
					return -1;
				v = v * 10 + (unsigned long long)(line[k] - '0');
			}
			if (v != want)
				return -1;
			n++;
		}
		p = nl;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);   /* exact size so ASan sees over-reads */
	struct metrics_post_head h, h2;
	int rc;

	memcpy(buf, data, size);
	rc = metrics_post_head_parse(buf, size, &h);
	if (rc != 0 && rc != 1)
		abort();
	if (rc == 1) {
		size_t pl = strlen(h.path);

		if (h.head_len < 7 || h.head_len > size || buf[h.head_len - 1] != '\n' || memcmp(buf, "POST ", 5) != 0)
			abort();
		if (pl == 0 || pl >= sizeof(h.path) || memmem(buf, h.head_len, h.path, pl) == NULL)
			abort();
		for (size_t i = 0; i < pl; i++)
			if ((unsigned char)h.path[i] <= ' ' || (unsigned char)h.path[i] >= 0x7f)
				abort();
		if (h.status != 0 && h.status != 400 && h.status != 411 && h.status != 501)
			abort();
		if (h.status == 0 && (h.want == ~0ULL ? false : check_lengths(buf, h.head_len, h.want) < 1))
			abort();
		/* the head alone decides */
		char *cut = malloc(h.head_len);

		memcpy(cut, buf, h.head_len);
		if (metrics_post_head_parse(cut, h.head_len, &h2) != 1 || !same(&h, &h2))
			abort();
		for (size_t n = 0; n < h.head_len; n += 1 + n / 4)
			if (metrics_post_head_parse(cut, n, &h2) != 0)
				abort();
		free(cut);
	}
	free(buf);
	return 0;
}
