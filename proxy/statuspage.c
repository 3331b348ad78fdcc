/* statuspage.c — routes of the status page and the probes (see statuspage.h). */
#include "statuspage.h"

#include <string.h>

#include "headers.h"
#include "ops.h"
#include "status.h"

/* Takes b's buffer as the body. */
static int statuspage_body(struct strbuf *b, int code, const char *ctype, int *code_out,
    const char **ctype_out, char **body, size_t *len)
{
	*code_out = code;
	*ctype_out = ctype;
	*len = b->len;
	*body = b->v;
	return 0;
}

int statuspage_route(const char *path, int *code, const char **ctype, char **body, size_t *len)
{
	struct strbuf b = { 0 };

	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) {	/* /livez: Kubernetes' name */
		strbuf_printf(&b, "ok\n");
		return statuspage_body(&b, 200, "text/plain; charset=utf-8", code, ctype, body, len);
	}
	if (strcmp(path, "/readyz") == 0) {
		const char *why = ops_not_ready_reason();
		if (why)
			strbuf_printf(&b, "not ready: %s\n", why);
		else
			strbuf_printf(&b, "ready\n");
		return statuspage_body(&b, why ? 503 : 200, "text/plain; charset=utf-8", code, ctype, body, len);
	}
	if (strcmp(path, "/status.json") == 0) {
		status_render_json(&b, true);
		return statuspage_body(&b, 200, "application/json", code, ctype, body, len);
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
		struct strbuf json = { 0 };
		status_render_json(&json, true);
		strbuf_append(&b, statuspage_html_head, strlen(statuspage_html_head));
		strbuf_append(&b, "<script id=\"initial\" type=\"application/json\">", 45);
		/* Inside <script>, "</" would end the element: JSON has '<' only in strings,
		 * where \u003c means the same. */
		for (size_t i = 0; i < json.len; i++) {
			if (json.v[i] == '<')
				strbuf_append(&b, "\\u003c", 6);
			else
				strbuf_append(&b, &json.v[i], 1);
		}
		strbuf_free(&json);
		strbuf_append(&b, "</script>\n", 10);
		strbuf_append(&b, statuspage_html_tail, strlen(statuspage_html_tail));
		return statuspage_body(&b, 200, "text/html; charset=utf-8", code, ctype, body, len);
	}
	return -1;
}
