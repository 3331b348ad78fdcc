/* eval_html.c — SpamAssassin's HTMLEval tests over the analysis of every HTML part
 * (html.c): tags present and unbalanced, ranges of lengths and ratios, image-only
 * messages, low-contrast and invalid colours, comments and titles that match.
 * Semantics of Mail::SpamAssassin::Plugin::HTMLEval 4.0.1. */
#include "eval_int.h"

#include "charset.h"
#include "html.h"
#include "samsg.h"
#include "uri.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct eval_html {
	struct html_result *v; size_t n;     /* one per text/html part, in order */
	int *part_res;                       /* samsg part -> index into v, or -1 */
	size_t next;                         /* the parts before it are analysed */
	struct uri_list uris;                /* link targets from the HTML */
};

static void html_uri_cb(const char *uri, size_t len, void *arg)
{
	uri_list_push(arg, uri, len);
}

/* SA's effective_type: text/html, or a part named *.htm(l) / *.shtml */
static bool html_part_is_html(const struct samsg_part *p)
{
	size_t l;

	if (strcmp(p->type, "text/html") == 0)
		return true;
	if (p->name == NULL)
		return false;
	l = strlen(p->name);
	return (l > 4 && strcasecmp(p->name + l - 4, ".htm") == 0) ||
	    (l > 5 && (strcasecmp(p->name + l - 5, ".html") == 0 ||
	    strcasecmp(p->name + l - 5, ".shtm") == 0)) ||
	    (l > 6 && strcasecmp(p->name + l - 6, ".shtml") == 0);
}

/* The message's HTML state, its array for every HTML part's analysis sized once: grown
 * by one for each part, each growth a new copy in the arena (kept to the message's end),
 * 999 parts of a few octets cost 116 MB of copies. */
static struct eval_html *html_state(struct eval_ctx *c)
{
	struct eval_html *eh = c->m->html;
	const struct samsg *sm;
	size_t nhtml = 0;

	if (eh)
		return eh;
	eh = eval_alloc(c, sizeof(*eh));
	memset(eh, 0, sizeof(*eh));
	eh->uris.max = 1000;
	c->m->html = eh;
	sm = eval_samsg(c);
	eh->part_res = eval_alloc(c, (sm->nparts + 1) * sizeof(int));
	for (size_t i = 0; i < sm->nparts; i++) {
		eh->part_res[i] = -1;
		nhtml += sm->parts[i].nkids == 0 && html_part_is_html(&sm->parts[i]);
	}
	eh->v = eval_alloc(c, (nhtml + 1) * sizeof(*eh->v));
	return eh;
}

/* Analyses the HTML parts up to part end (not included), in the parts' order (the link
 * targets are collected in it); part given's body is body (len octets, as samsg_body
 * gives it), the others' are read here. */
static struct eval_html *html_upto(struct eval_ctx *c, size_t end, size_t given, const char *body,
    size_t blen)
{
	struct eval_html *eh = html_state(c);
	const struct samsg *sm = eval_samsg(c);

	if (end > sm->nparts)
		end = sm->nparts;
	for (; eh->next < end; eh->next++) {
		size_t i = eh->next;
		const struct samsg_part *p = &sm->parts[i];
		size_t len;
		const char *t;
		char *own = NULL, *uown = NULL;
		bool decoded = false;

		if (p->nkids || !html_part_is_html(p))
			continue;
		/* where the parse has the part when there is nothing to decode, and the part
		 * itself when it is ASCII or valid UTF-8: a part of 7bit or 8bit HTML was
		 * copied twice (decoded, normalized) beside the body views' reading of it; the
		 * body views' decoded copy of an encoded part when they have one */
		if (i == given) {
			t = body;
			len = blen;
		} else {
			t = samsg_body(p, &len, &own);
		}
		if (len) {
			/* normalize_charset: the parser reads the part as UTF-8 characters */
			size_t ul;

			t = charset_normalize_view(t, len, p->charset, false, &ul, &decoded, &uown);
			len = ul;
		}
		if (len) {
			eh->part_res[i] = (int)eh->n;
			html_analyze(t, len, &eh->v[eh->n], html_uri_cb, &eh->uris);
			eh->v[eh->n].wide = decoded || charset_has_wide(eh->v[eh->n].rendered,
			    eh->v[eh->n].rendered_len);
			eh->n++;
		}
		free(uown);
		free(own);
	}
	return eh;
}

static struct eval_html *html_get(struct eval_ctx *c)
{
	return html_upto(c, SIZE_MAX, SIZE_MAX, NULL, 0);
}

void eval_html_free(struct eval_html *eh)
{
	if (eh == NULL)
		return;
	for (size_t i = 0; i < eh->n; i++)
		html_result_free(&eh->v[i]);
	uri_list_free(&eh->uris);
}

const struct html_result *eval_html_part(struct eval_ctx *c, size_t part)
{
	struct eval_html *eh = html_upto(c, part + 1, SIZE_MAX, NULL, 0);

	return eh->part_res[part] >= 0 ? &eh->v[eh->part_res[part]] : NULL;
}

const struct html_result *eval_html_part_body(struct eval_ctx *c, size_t part, const char *body,
    size_t len)
{
	struct eval_html *eh = html_upto(c, part + 1, part, body, len);

	return eh->part_res[part] >= 0 ? &eh->v[eh->part_res[part]] : NULL;
}

const struct uri_list *eval_html_uris(struct eval_ctx *c)
{
	return &html_get(c)->uris;
}

void eval_html_uri_info(struct eval_ctx *c, struct uri_details *d)
{
	const struct eval_html *eh = html_get(c);

	for (size_t k = 0; k < eh->n; k++) {
		const struct html_result *r = &eh->v[k];
		struct uri_detail *u;

		for (size_t i = 0; i < r->nlink; i++)
			if ((u = uri_details_find(d, r->link_uri[i])) != NULL)
				uri_list_push(&u->types, r->link_type[i], strlen(r->link_type[i]));
		for (size_t i = 0; i < r->nanchor; i++)
			if ((u = uri_details_find(d, r->anchor_href[i])) != NULL)
				uri_list_push(&u->anchor_text, r->anchor[i], strlen(r->anchor[i]));
	}
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].html && d->v[i].types.n == 0)
			uri_list_push(&d->v[i].types, "parsed", 6);
}

bool eval_html_is_anchor(struct eval_ctx *c, const char *uri)
{
	const struct eval_html *eh = html_get(c);

	for (size_t k = 0; k < eh->n; k++)
		for (size_t i = 0; i < eh->v[k].nanchor; i++)
			if (strcmp(eh->v[k].anchor_href[i], uri) == 0)
				return true;
	return false;
}

/* $val EXPR for EXPR like "!= 0", "< 512", ">= 3" (SA evaluates it as Perl). */
static bool html_expr(double val, const char *expr)
{
	const char *p = expr;
	char op[3] = { 0 };
	double rhs;
	char *e;

	while (isspace((unsigned char)*p))
		p++;
	if (strspn(p, "<>=!") == 2) {
		op[0] = p[0];
		op[1] = p[1];
		p += 2;
	} else if (strspn(p, "<>") == 1) {
		op[0] = p[0];
		p++;
	} else {
		return false;
	}
	rhs = strtod(p, &e);
	if (e == p)
		return false;
	if (strcmp(op, "<") == 0) return val < rhs;
	if (strcmp(op, ">") == 0) return val > rhs;
	if (strcmp(op, "<=") == 0) return val <= rhs;
	if (strcmp(op, ">=") == 0) return val >= rhs;
	if (strcmp(op, "==") == 0) return val == rhs;
	if (strcmp(op, "!=") == 0) return val != rhs;
	return false;
}

EVAL_FN(eval_html_tag_balance)
{
	struct eval_html *eh = html_get(c);

	for (size_t i = 0; i < eh->n; i++) {
		const struct html_count *k = html_inside(&eh->v[i], call->arg[0]);

		if (k && html_expr(k->n, call->arg[1]))
			return 1;
	}
	return 0;
}

EVAL_FN(eval_html_image_only)
{
	struct eval_html *eh = html_get(c);

	for (size_t i = 0; i < eh->n; i++)
		if (html_inside(&eh->v[i], "img") && eh->v[i].length > call->num[0] &&
		    eh->v[i].length <= call->num[1])
			return 1;
	return 0;
}

EVAL_FN(eval_html_image_ratio)
{
	struct eval_html *eh = html_get(c);

	for (size_t i = 0; i < eh->n; i++) {
		double r;

		if (eh->v[i].image_area <= 0)
			continue;
		r = eh->v[i].non_space_len / eh->v[i].image_area;
		if (r > call->num[0] && r <= call->num[1])
			return 1;
	}
	return 0;
}

EVAL_FN(eval_html_charset_faraway)
{
	(void)c;
	(void)call;
	return 0;                /* ok_locales all */
}

EVAL_FN(eval_html_tag_exists)
{
	struct eval_html *eh = html_get(c);

	for (size_t i = 0; i < eh->n; i++)
		if (html_inside(&eh->v[i], call->arg[0]))
			return 1;
	return 0;
}

EVAL_FN(eval_html_test)
{
	struct eval_html *eh = html_get(c);
	const char *t = call->arg[0];

	for (size_t i = 0; i < eh->n; i++) {
		const struct html_result *r = &eh->v[i];

		if (strcmp(t, "html") == 0 ||
		    (strcmp(t, "font_low_contrast") == 0 && r->font_low_contrast) ||
		    (strcmp(t, "font_invalid_color") == 0 && r->font_invalid_color) ||
		    (strcmp(t, "font_face_bad") == 0 && r->font_face_bad) ||
		    (strcmp(t, "form_action_mailto") == 0 && r->form_action_mailto) ||
		    (strcmp(t, "embeds") == 0 && r->embeds) ||
		    (strcmp(t, "uri_truncated") == 0 && r->uri_truncated))
			return 1;
	}
	return 0;
}

/* A numeric result by name; false when it is not defined for this part. */
static bool html_value(const struct html_result *r, const char *name, double *v)
{
	if (strcmp(name, "length") == 0) { *v = r->length; return true; }
	if (strcmp(name, "max_size") == 0) { *v = r->max_size; return true; }
	if (strcmp(name, "min_size") == 0) { *v = r->min_size; return true; }
	if (strcmp(name, "image_area") == 0) { *v = r->image_area; return true; }
	if (strcmp(name, "non_space_len") == 0) { *v = r->non_space_len; return true; }
	if (strcmp(name, "html_length") == 0) { *v = r->html_length; return true; }
	if (strcmp(name, "closed_extra_ratio") == 0 && r->has_tags) {
		*v = r->closed_extra_ratio;
		return true;
	}
	if (strcmp(name, "bad_tag_ratio") == 0 && r->has_elements) {
		*v = r->bad_tag_ratio;
		return true;
	}
	if (strcmp(name, "non_element_ratio") == 0 && r->has_seen) {
		*v = r->non_element_ratio;
		return true;
	}
	if (strcmp(name, "obfuscation_ratio") == 0 && r->has_obfuscation) {
		*v = r->obfuscation_ratio;
		return true;
	}
	if (strcmp(name, "backhair_count") == 0 && r->has_backhair) {
		*v = (double)r->backhair_count;
		return true;
	}
	return false;
}

EVAL_FN(eval_html_eval)
{
	struct eval_html *eh = html_get(c);

	for (size_t i = 0; i < eh->n; i++) {
		double v;

		if (html_value(&eh->v[i], call->arg[0], &v) && html_expr(v, call->arg[1]))
			return 1;
	}
	return 0;
}

EVAL_FN(eval_html_range)
{
	struct eval_html *eh = html_get(c);
	bool inf = call->nargs < 3 || strcmp(call->arg[2], "inf") == 0;

	for (size_t i = 0; i < eh->n; i++) {
		double v;

		if (!html_value(&eh->v[i], call->arg[0], &v))
			continue;
		if (inf ? v > call->num[1] : (v > call->num[1] && v <= call->num[2]))
			return 1;
	}
	return 0;
}

EVAL_FN(eval_html_text_match)
{
	struct eval_html *eh = html_get(c);
	const char *what = call->arg[0];

	if (call->data == NULL)
		return 0;
	for (size_t i = 0; i < eh->n; i++) {
		char **v = NULL;
		size_t n = 0;

		if (strcmp(what, "comment") == 0) {
			v = eh->v[i].comment;
			n = eh->v[i].ncomment;
		} else if (strcmp(what, "title") == 0) {
			v = eh->v[i].title;
			n = eh->v[i].ntitle;
		} else if (strcmp(what, "anchor") == 0) {
			v = eh->v[i].anchor;
			n = eh->v[i].nanchor;
		}
		for (size_t k = 0; k < n; k++)
			if (match_re_exec(call->data, v[k], strlen(v[k]), c->ms, 1) > 0)
				return 1;
	}
	return 0;
}

EVAL_FN(eval_html_title_subject_ratio)
{
	struct eval_html *eh = html_get(c);
	const char *subj = eval_get(c, "Subject");
	size_t sl = strlen(subj);

	if (sl == 0)
		return 0;
	for (size_t i = 0; i < eh->n; i++) {
		double max = 0;

		for (size_t k = 0; k < eh->v[i].ntitle; k++) {
			double r = (double)strlen(eh->v[i].title[k]) / (double)sl;

			if (eh->v[i].title[k][0] && r > max)
				max = r;
		}
		if (max > call->num[0])
			return 1;
	}
	return 0;
}

EVAL_FN(eval_check_iframe_src)
{
	struct eval_html *eh = html_get(c);

	(void)call;
	for (size_t i = 0; i < eh->n; i++)
		if (eh->v[i].iframe)
			return 1;
	return 0;
}

int eval_prepare_html_text_match(struct eval_call *call, const char **err)
{
	struct match_re *re = NULL;
	char ebuf[160];

	if (match_re_compile(call->arg[1], 0, &re, ebuf, sizeof(ebuf)) < 0) {
		*err = "bad regex argument";
		return -1;
	}
	call->data = re;
	return 0;
}
