/* fuzz_mime.c — MIME decoding (GMime and SpamAssassin's parse), HTML analysis and URI
 * finding/cleaning on arbitrary messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/html.h"
#include "rules/match.h"
#include "rules/mime.h"
#include "rules/samsg.h"
#include "rules/uri.h"

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
	struct samsg m;
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
	for (size_t i = 0; i < m.nparts; i++) {
		struct html_result hr;
		size_t n;
		char *t;

		if (m.parts[i].nkids)
			continue;
		t = samsg_decode(&m.parts[i], &n);
		if (strcmp(m.parts[i].type, "text/html") == 0) {
			html_analyze(t, n, &hr, fuzz_uri_cb, &ul);
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
