/* fuzz_mime.c — MIME decoding (GMime and SpamAssassin's parse), HTML analysis and URI
 * finding/cleaning on arbitrary messages; SpamAssassin's parse against its copying form
 * (samsg_parse_copying: every nested message decoded and split into copies). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/html.h"
#include "rules/match.h"
#include "rules/mime.h"
#include "rules/samsg.h"
#include "rules/uri.h"

/* Aborts unless a and b are the same tree, every octet a reader sees. */
static void fuzz_same_tree(const struct samsg *a, const struct samsg *b)
{
	if (a->nparts != b->nparts || a->head_lines != b->head_lines ||
	    a->missing_head_body_separator != b->missing_head_body_separator ||
	    a->missing_mime_head_body_separator != b->missing_mime_head_body_separator ||
	    a->missing_mime_headers != b->missing_mime_headers ||
	    a->mime_epilogue_exists != b->mime_epilogue_exists ||
	    a->truncated_header != b->truncated_header ||
	    a->mimepart_limit_exceeded != b->mimepart_limit_exceeded ||
	    a->mime_missing_boundary != b->mime_missing_boundary ||
	    a->nested_limit_exceeded != b->nested_limit_exceeded)
		abort();
	for (size_t i = 0; i < a->nparts; i++) {
		const struct samsg_part *p = &a->parts[i], *q = &b->parts[i];

		if (p->parent != q->parent || p->depth != q->depth || p->ct_missing != q->ct_missing ||
		    strcmp(p->type, q->type) != 0 || !p->boundary != !q->boundary ||
		    (p->boundary && strcmp(p->boundary, q->boundary) != 0) ||
		    !p->charset != !q->charset || (p->charset && strcmp(p->charset, q->charset) != 0) ||
		    !p->name != !q->name || (p->name && strcmp(p->name, q->name) != 0) ||
		    p->nhdrs != q->nhdrs || p->nraw != q->nraw || p->nkids != q->nkids ||
		    (p->nkids && memcmp(p->kids, q->kids, p->nkids * sizeof(*p->kids)) != 0))
			abort();
		for (size_t k = 0; k < p->nhdrs; k++)
			if (strcmp(p->hdrs[k].name, q->hdrs[k].name) != 0 ||
			    strcmp(p->hdrs[k].value, q->hdrs[k].value) != 0 ||
			    strcmp(p->hdrs[k].raw, q->hdrs[k].raw) != 0)
				abort();
		for (size_t k = 0; k < p->nraw; k++)
			if (p->raw[k].n != q->raw[k].n || memcmp(p->raw[k].p, q->raw[k].p, p->raw[k].n) != 0)
				abort();
	}
}

static void fuzz_uri_cb(const char *uri, size_t len, void *arg)
{
	uri_list_push(arg, uri, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct uri_conf *uc;
	static struct match_scratch *ms;
	static const char *const tlds[] = { "com net org info biz de uk click top" };
	static const char *const redir[] = { "m'/(?:index.php)?\\?.*(?<=[?&])URL=(.*?)(?:$|[&\\#])'i" };
	struct mime_limits lim = { .max_parts = 64, .max_depth = 8, .max_text = 1 << 20 };
	struct mime_result r;
	struct samsg m, ref;
	struct uri_list ul = { .max = 100 };
	struct uri_details d = { 0 };

	if (uc == NULL) {
		uc = uri_conf_new(tlds, 1, redir, 1);
		ms = match_scratch_new();
	}
	mime_parse((const char *)data, size, &lim, &r);
	for (size_t i = 0; i < r.nparts; i++) {
		size_t n;
		char *t = mime_html_to_text(r.parts[i].text, r.parts[i].len, &n, NULL, NULL);

		free(t);
	}
	mime_result_free(&r);
	samsg_parse(&m, (const char *)data, size);
	/* nested messages parsed where their octets are: the tree of the copying parse */
	samsg_parse_copying(&ref, (const char *)data, size);
	fuzz_same_tree(&m, &ref);
	samsg_free(&ref);
	for (size_t i = 0; i < m.nparts; i++) {
		struct html_result hr;
		size_t n;
		char *t;

		if (m.parts[i].nkids)
			continue;
		t = samsg_decode(&m.parts[i], &n);
		if (strcmp(m.parts[i].type, "text/html") == 0) {
			/* not NUL-terminated, as the parse's octets of a part html_analyze reads
			 * where they are: an overread of the part's end shows */
			char *x = malloc(n ? n : 1);

			if (x == NULL)
				abort();
			memcpy(x, t, n);
			html_analyze(x, n, &hr, fuzz_uri_cb, &ul);
			free(x);
			uri_details_text(uc, ms, &d, hr.rendered, hr.rendered_len);
			html_result_free(&hr);
		} else {
			uri_details_text(uc, ms, &d, t, n);
		}
		free(t);
	}
	for (size_t i = 0; i < ul.n; i++)
		uri_details_html(uc, ms, &d, ul.v[i]);
	samsg_free(&m);
	uri_list_free(&ul);
	uri_details_free(&d);
	return 0;
}
