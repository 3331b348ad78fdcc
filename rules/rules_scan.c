/* rules_scan.c — running a compiled rule set over one message: header and envelope rules,
 * the body views through the prefilter and PCRE2, metas in dependency order, the hits.
 * Bounded: a time budget per message, match limits per regex. See rules.h. */
#include "rules_int.h"

#include "actions.h"
#include "bayes.h"
#include "eval_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- scanning */

static void rules_budget_start(struct rules_scratch *sc)
{
	clock_gettime(CLOCK_MONOTONIC_COARSE, &sc->deadline);
	sc->deadline.tv_sec += RULES_BUDGET_MS / 1000;
	sc->deadline.tv_nsec += (RULES_BUDGET_MS % 1000) * 1000000L;
	if (sc->deadline.tv_nsec >= 1000000000L) {
		sc->deadline.tv_sec++;
		sc->deadline.tv_nsec -= 1000000000L;
	}
	sc->over_budget = false;
}

/* True once the message's time budget is spent (checked between rules). */
static bool rules_over_budget(struct rules_scratch *sc)
{
	struct timespec now;

	if (sc->over_budget)
		return true;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	if (now.tv_sec > sc->deadline.tv_sec || (now.tv_sec == sc->deadline.tv_sec &&
	    now.tv_nsec >= sc->deadline.tv_nsec))
		sc->over_budget = true;
	return sc->over_budget;
}

static int rules_max_hits(const struct rules_rule *x)
{
	if (x->tflags & RULE_TF_MULTIPLE)
		return x->maxhits > 0 && x->maxhits < RULES_MAX_MULTI ? x->maxhits : RULES_MAX_MULTI;
	return 1;
}

/* ---------------------------------------------------------------- capture rules */

/* set_captures' check on a group name: [A-Z][A-Z0-9]*(?:_[A-Z0-9]+)* */
static bool rules_tag_name_ok(const char *s)
{
	if (!(*s >= 'A' && *s <= 'Z'))
		return false;
	for (s++; *s; s++) {
		bool an = (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9');

		if (!an && !(*s == '_' && s[1] && s[1] != '_'))
			return false;
	}
	return s[-1] != '_';
}

/* capture_plugin_code: a match's named groups, kept until the rule has run */
static void rules_capture_cb(const char *name, const char *v, size_t vlen, void *arg)
{
	struct rules_scratch *sc = arg;

	if (!rules_tag_name_ok(name) || memchr(v, '\0', vlen))
		return;
	rules_buf_put(&sc->capbuf, name, strlen(name) + 1);
	rules_buf_put(&sc->capbuf, v, vlen);
	rules_buf_put(&sc->capbuf, "", 1);
	sc->ncap++;
}

static struct rules_tag *rules_tag_find(struct rules_scratch *sc, const char *name, size_t nl,
    bool add)
{
	for (size_t i = 0; i < sc->ntags; i++)
		if (strlen(sc->tags[i].name) == nl && strncmp(sc->tags[i].name, name, nl) == 0)
			return &sc->tags[i];
	if (!add)
		return NULL;
	if (sc->ntags == sc->tagcap) {
		size_t nc = sc->tagcap ? sc->tagcap * 2 : 8;

		sc->tags = realloc(sc->tags, nc * sizeof(*sc->tags));
		if (sc->tags == NULL)
			abort();
		memset(sc->tags + sc->tagcap, 0, (nc - sc->tagcap) * sizeof(*sc->tags));
		sc->tagcap = nc;
	}
	free(sc->tags[sc->ntags].name);
	sc->tags[sc->ntags].name = malloc(nl + 1);
	if (sc->tags[sc->ntags].name == NULL)
		abort();
	memcpy(sc->tags[sc->ntags].name, name, nl);
	sc->tags[sc->ntags].name[nl] = '\0';
	sc->tags[sc->ntags].v.n = 0;
	sc->tags[sc->ntags].n = 0;
	return &sc->tags[sc->ntags++];
}

/* ran_rule_plugin_code, set_captures: each name the rule captured now has the rule's
 * distinct values, in order (a later rule capturing the same name replaces them). */
static void rules_capture_commit(struct rules_scratch *sc)
{
	const char *p = sc->capbuf.p, *end = p + sc->capbuf.n;

	for (const char *q = p; q < end;) {
		const char *name = q, *val = name + strlen(name) + 1;
		struct rules_tag *t = rules_tag_find(sc, name, strlen(name), true);
		bool first = true;

		q = val + strlen(val) + 1;
		/* the first entry of this name in capbuf starts the tag afresh */
		for (const char *r = p; r < name; r += strlen(r) + 1, r += strlen(r) + 1)
			if (strcmp(r, name) == 0)
				first = false;
		if (first) {
			t->v.n = 0;
			t->n = 0;
		}
		{
			bool dup = false;

			for (size_t o = 0; o < t->v.n && !dup; o += strlen(t->v.p + o) + 1)
				dup = strcmp(t->v.p + o, val) == 0;
			if (!dup) {
				rules_buf_put(&t->v, val, strlen(val) + 1);
				t->n++;
			}
		}
	}
	sc->capbuf.n = 0;
	sc->ncap = 0;
}

/* One regex run of rule x (re: x's, or a template's instance) over s[0..len): the match
 * count, with the captures of a capture rule kept. */
static int rules_re_run(struct rules_scratch *sc, const struct rules_rule *x,
    const struct match_re *re, const char *s, size_t len, int max)
{
	if (!x->capture)
		return match_re_exec(re, s, len, sc->ms, max);
	return match_re_exec_named(re, s, len, sc->ms, max, rules_capture_cb, sc);
}

static int rules_match_lines(struct rules_scratch *sc, const struct rules_rule *x,
    const struct match_re *re, const struct rules_lines *l)
{
	int max = rules_max_hits(x), n = 0;

	/* tflags nosubject: the first body line is the Subject */
	for (size_t i = x->kind == RULE_BODY && (x->tflags & RULE_TF_NOSUBJECT) ? 1 : 0;
	    i < l->nlines && n < max; i++) {
		const char *s;
		size_t len;
		int r;

		rules_line_at(l, i, &s, &len);
		r = rules_re_run(sc, x, re, s, len, max - n);
		if (r > 0)
			n += r;
	}
	if (sc->ncap)
		rules_capture_commit(sc);
	return n;
}

static void rules_scan_lines(const struct rules_set *rs, struct rules_scratch *sc,
    enum rule_kind k, const struct rules_lines *l)
{
	size_t nk = rs->nkind[k];
	struct match_multi *pre;

	if (nk == 0)
		return;
	pre = sc->prefilter ? atomic_load_explicit(&((struct rules_set *)rs)->pre[k],
	    memory_order_acquire) : NULL;
	if (pre && sc->prepared[k] != pre) {
		/* first use of a freshly published prefilter on this thread */
		if (match_scratch_prepare(sc->ms, pre) == 0)
			sc->prepared[k] = pre;
		else
			pre = NULL;
	}
	if (pre) {
		memset(sc->cand, 0, nk);
		match_multi_scan(pre, l->b.p ? l->b.p : "", l->b.n, sc->ms, sc->cand);
	} else {
		memset(sc->cand, 1, nk);
	}
	for (size_t j = 0; j < nk; j++) {
		size_t i = rs->kind_idx[k][j];

		if (sc->cand[j] && rules_over_budget(sc))
			sc->skipped[i] = 1;
		else if (sc->cand[j])
			sc->values[i] = rules_match_lines(sc, &rs->r[i], rs->r[i].re, l);
	}
}

/* MIMEHeader's eval: each part's last field so named (get_header, or raw_header for :raw),
 * a part without one tested as if_unset or the empty string; the first match decides. */
static bool rules_mimeheader_one(struct rules_scratch *sc, const struct rules_rule *x,
    const struct match_re *re)
{
	const char *p = sc->allhdr.p, *end = p + sc->allhdr.n;
	bool hit = false;

	{
		while (p && p < end && !hit) {
			const char *val = NULL;

			/* one part: its entries up to the next empty one */
			p += 3;
			while (p < end && *p) {
				/* name, get_header() value, raw_header() value; each bounded by the
				 * table's end, whatever it holds */
				const char *name = p, *dv = name + strnlen(name, (size_t)(end - name)) + 1;
				const char *raw;

				if (dv >= end)
					break;
				raw = dv + strnlen(dv, (size_t)(end - dv)) + 1;
				if (raw >= end)
					break;
				p = raw + strnlen(raw, (size_t)(end - raw)) + 1;
				if (strcasecmp(name, x->hdr) == 0)
					val = x->sel == HDR_SEL_RAW ? raw : dv;
			}
			if (x->sel == HDR_SEL_EXISTS) {
				hit = val != NULL;
				continue;
			}
			if (val == NULL)
				val = x->if_unset ? x->if_unset : "";
			hit = (rules_re_run(sc, x, re, val, strlen(val), 1) > 0) != x->negate;
		}
	}
	if (sc->ncap)
		rules_capture_commit(sc);
	return hit;
}

static void rules_scan_mimeheaders(const struct rules_set *rs, struct rules_scratch *sc)
{
	for (size_t j = 0; j < rs->nkind[RULE_MIMEHEADER]; j++) {
		size_t i = rs->kind_idx[RULE_MIMEHEADER][j];

		if (rules_over_budget(sc)) {
			sc->skipped[i] = 1;
			continue;
		}
		sc->values[i] = rules_mimeheader_one(sc, &rs->r[i], rs->r[i].re);
	}
}

/* A header rule's value (the header's value, if-unset text, or "" when unset). */
static double rules_header_one(struct rules_scratch *sc, const struct rules_rule *x,
    const struct match_re *re)
{
	const char *v;
	size_t vl;
	bool set = rules_header_value(sc, x->hdr_req, &v, &vl);
	double r;

	if (!set && x->unset_known)
		return x->unset_hit;   /* computed once when the set was built */
	if (!set) {
		v = x->if_unset ? x->if_unset : "";
		vl = strlen(v);
	}
	r = (rules_re_run(sc, x, re, v, vl, 1) > 0) != x->negate;
	if (sc->ncap)
		rules_capture_commit(sc);
	return r;
}

/* Whether the tag a template rule names (get_tag_raw: "(args)" dropped) has a value. */
static bool rules_template_tag_set(struct rules_scratch *sc, const struct rules_rule *x)
{
	const struct rules_tag *t = rules_tag_find(sc, x->tmpl_tag, strcspn(x->tmpl_tag, "("),
	    false);

	return t != NULL && t->n > 0;
}

static bool rules_env_match(const struct rules_rule *x, struct rules_scratch *sc,
    const struct rules_envelope *e)
{
	const char *v = NULL;

	if (e == NULL)
		return false;
	switch (x->env_field) {
	case ENV_HELO: v = e->helo; break;
	case ENV_FROM: v = e->mail_from; break;
	case ENV_RDNS: v = e->rdns; break;
	case ENV_IP: v = e->client_ip; break;
	case ENV_IP_CIDR:
		return e->client && cfg_cidr_match(&x->cidr, e->client);
	case ENV_RCPT:
		for (size_t i = 0; i < e->nrcpts; i++) {
			const char *r = e->rcpts[i] ? e->rcpts[i] : "";

			if (match_re_exec(x->re, r, strlen(r), sc->ms, 1) > 0)
				return !x->negate;
		}
		return x->negate;
	}
	if (v == NULL)
		v = "";
	return (match_re_exec(x->re, v, strlen(v), sc->ms, 1) > 0) != x->negate;
}

/* Upper bounds: a known value is its own bound; a rule SA runs but mxgate cannot (an eval
 * not implemented, a regex PCRE2 refuses, body rules of a message over max_size) may be
 * anything from 0 to its largest value. */
static void rules_set_ranges(const struct rules_set *rs, struct rules_scratch *sc, bool body)
{
	for (size_t i = 0; i < rs->n; i++) {
		const struct rules_rule *x = &rs->r[i];
		bool unknown = x->unknown || sc->skipped[i];   /* SA would have run it */

		/* an eval ran unless it needs the body's views (check_bayes, a "body" rule by SA's
		 * syntax, reads only the classifier's verdict); other body rules did not run */
		if (!body && x->active && (x->ev ? x->ev->def->needs != 0 :
		    x->kind == RULE_BODY || x->kind == RULE_RAWBODY || x->kind == RULE_URI ||
		    x->kind == RULE_FULL || x->kind == RULE_MIMEHEADER))
			unknown = true;
		sc->hi[i] = unknown ? (x->tflags & RULE_TF_MULTIPLE ? rules_max_hits(x) : 1) :
		    sc->values[i];
		if (unknown)
			sc->values[i] = 0;
	}
}

/* The rule's score in the set in use: SA's set 2 when the classifier is available. */
static double rules_rule_score(const struct rules_rule *x, const struct rules_scratch *sc)
{
	return sc->bayes && sc->bayes->available ? x->score_bayes : x->score;
}

/* Whether x is off in the score set in use: a scoring rule whose score there is 0. */
static bool rules_rule_off(const struct rules_rule *x, const struct rules_scratch *sc)
{
	return x->scoring && x->kind != RULE_SYMBOL && x->action == RULE_ACT_NONE &&
	    rules_rule_score(x, sc) == 0;
}

static int rules_hit_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rules_hit *)a)->name, ((const struct rules_hit *)b)->name);
}

int rules_set_scan(const struct rules_set *rs, struct rules_scratch *sc, const char *msg,
    size_t len, const struct rules_envelope *envl, const struct hook_env *env,
    size_t max_body, struct rules_result *res)
{
	size_t body_off;
	bool body = max_body == 0 || len <= max_body, mutated = false;

	memset(res, 0, sizeof(*res));
	memset(sc->values, 0, rs->n * sizeof(double));
	memset(sc->skipped, 0, rs->n);
	rules_budget_start(sc);
	sc->ntags = 0;
	sc->capbuf.n = 0;
	sc->ncap = 0;
	eval_msg_reset(sc->em);
	sc->ctx = (struct eval_ctx){ .msg = msg, .len = len, .envl = envl, .sc = sc,
		.conf = rs->conf, .m = sc->em, .ms = sc->ms, .now = time(NULL), .bayes = sc->bayes };
	body_off = rules_parse_headers(sc, msg, len);
	(void)body_off;
	/* header rules */
	for (size_t j = 0; j < rs->nkind[RULE_HEADER]; j++) {
		size_t i = rs->kind_idx[RULE_HEADER][j];
		const struct rules_rule *x = &rs->r[i];

		if (x->sel == HDR_SEL_EXISTS) {
			const char *v;
			size_t vl;

			sc->values[i] = rules_header_value(sc, x->hdr, &v, &vl);
			continue;
		}
		if (rules_over_budget(sc)) {
			sc->skipped[i] = 1;
			continue;
		}
		sc->values[i] = rules_header_one(sc, x, x->re);
	}
	/* envelope rules */
	for (size_t j = 0; j < rs->nkind[RULE_ENVELOPE]; j++) {
		size_t i = rs->kind_idx[RULE_ENVELOPE][j];

		sc->values[i] = rules_env_match(&rs->r[i], sc, envl);
	}
	if (body) {
		rules_build_body(sc, msg, len,
		    rs->nkind[RULE_URI] > 0 || (rs->eval_needs & EVAL_NEED_URI));
		rules_scan_lines(rs, sc, RULE_BODY, &sc->body);
		rules_scan_lines(rs, sc, RULE_RAWBODY, &sc->rawbody);
		rules_scan_lines(rs, sc, RULE_URI, &sc->uris);
		rules_scan_mimeheaders(rs, sc);
		for (size_t j = 0; j < rs->nkind[RULE_FULL]; j++) {
			size_t i = rs->kind_idx[RULE_FULL][j];
			const struct rules_rule *x = &rs->r[i];
			int r;

			if (rules_over_budget(sc)) {
				sc->skipped[i] = 1;
				continue;
			}
			r = rules_re_run(sc, x, x->re, msg, len, rules_max_hits(x));
			if (sc->ncap)
				rules_capture_commit(sc);
			sc->values[i] = r > 0 ? r : 0;
		}
	} else {
		res->body_skipped = true;
	}
	/* template rules (%{TAG} in the regex), once every capture rule ran (SA runs those
	 * first, at priority -10000). SA 4.0.1 puts the tag's values in the pattern and matches
	 * with /o (Check.pm): Perl compiles it once per process, so spamd's child matches every
	 * message with the values of the first one it ran the rule for (__GB_CUSTOM_HTM_URI0
	 * looks for that message's To address in all later ones). What SA hits depends on
	 * what its process scanned before: unknown (a meta over it fires only when it would
	 * either way). With the tag unset SA does not run the rule: 0. */
	for (size_t j = 0; j < rs->ntmpl; j++) {
		size_t i = rs->tmpl[j];

		if (body || rs->r[i].kind == RULE_HEADER)
			sc->skipped[i] = rules_template_tag_set(sc, &rs->r[i]);
	}
	/* evals: functions over the views built above; header evals first, as SA runs them
	 * before the body rules and body evals of their priority */
	for (int pass = 0; pass < 2; pass++)
		for (size_t j = 0; j < rs->nevals; j++) {
			size_t i = rs->evals[j];
			const struct eval_call *ev = rs->r[i].ev;

			if ((rs->r[i].kind == RULE_HEADER) != (pass == 0))
				continue;
			if (!body && ev->def->needs)
				continue;             /* left unknown below */
			if (rules_over_budget(sc)) {
				sc->skipped[i] = 1;
				continue;
			}
			sc->ctx.rule_kind = rs->r[i].kind;
			sc->values[i] = ev->def->fn(&sc->ctx, ev);
			if (pass == 0 && body && sc->em->fm_mutated && !mutated) {
				/* FreeMail changed the body array: body rules from this priority on saw
				 * the changed text in SA */
				mutated = true;
				for (size_t k = 0; k < rs->nkind[RULE_BODY]; k++) {
					size_t b = rs->kind_idx[RULE_BODY][k];

					if (rs->r[b].priority >= rs->r[i].priority)
						sc->values[b] = rules_match_lines(sc, &rs->r[b], rs->r[b].re,
						    &sc->body);
				}
			}
		}
	res->over_budget = sc->over_budget;
	rules_set_ranges(rs, sc, body);
	/* SA: a rule scoring 0 in the score set in use does not run (BAYES_xx in set 0) */
	for (size_t i = 0; i < rs->n; i++)
		if (rules_rule_off(&rs->r[i], sc))
			sc->values[i] = sc->hi[i] = 0;
	/* symbols from other modules */
	if (env) {
		for (size_t i = 0; i < rs->n; i++)
			if (rs->r[i].kind == RULE_SYMBOL && hook_env_find_symbol(env, rs->r[i].name))
				sc->values[i] = sc->hi[i] = 1;
	}
	/* metas, dependencies first; over ranges, so a rule mxgate cannot run (SA may hit
	 * it or not) never decides a meta: it fires only when it would either way */
	for (size_t m = 0; m < rs->nmeta; m++) {
		size_t i = rs->meta_order[m];

		meta_eval_range(rs->r[i].meta, sc->values, sc->hi, &sc->values[i], &sc->hi[i]);
		if (rules_rule_off(&rs->r[i], sc))
			sc->values[i] = sc->hi[i] = 0;
	}
	/* collect hits */
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = (struct rules_rule *)&rs->r[i];
		struct rules_hit *h;

		if (!(sc->values[i] > 0 || sc->hi[i] < 0) || !x->active || x->kind == RULE_SYMBOL)
			continue;
		atomic_fetch_add_explicit(&x->hits, 1, memory_order_relaxed);
		if (!x->scoring)
			continue;
		if (res->n == res->cap) {
			size_t nc = res->cap ? res->cap * 2 : 16;

			h = realloc(res->v, nc * sizeof(*h));
			if (h == NULL)
				abort();
			res->v = h;
			res->cap = nc;
		}
		h = &res->v[res->n++];
		h->name = x->name;
		h->desc = x->desc;
		h->action = x->action;
		h->count = (x->tflags & RULE_TF_MULTIPLE) ? (int)sc->values[i] : 1;
		h->score = rules_rule_score(x, sc) * h->count;
		h->classifier = x->ev != NULL && x->ev->def->fn == eval_check_bayes;
		h->rule = x;
		res->score += h->score;
		if (actions_rank(x->action) > actions_rank(res->action)) {
			res->action = x->action;
			res->action_rule = x->name;
		}
	}
	if (res->n > 1)
		qsort(res->v, res->n, sizeof(*res->v), rules_hit_cmp);
	return 0;
}

void rules_scratch_foreach_hit(const struct rules_set *rs, const struct rules_scratch *sc,
    void (*cb)(const char *name, double value, void *arg), void *arg)
{
	for (size_t i = 0; i < rs->n; i++) {
		const struct rules_rule *x = &rs->r[i];

		if ((sc->values[i] > 0 || sc->hi[i] < 0) && x->active && x->kind != RULE_SYMBOL)
			cb(x->name, sc->values[i], arg);
		else if (sc->values[i] <= 0 && sc->hi[i] > 0 && x->kind != RULE_SYMBOL)
			cb(x->name, NAN, arg);         /* may hit in SA: it depends on unknowns */
	}
}

void rules_scratch_foreach_line(const struct rules_scratch *sc, enum rule_kind kind,
    void (*cb)(const char *line, size_t len, void *arg), void *arg)
{
	const struct rules_lines *l = kind == RULE_BODY ? &sc->body : kind == RULE_RAWBODY ?
	    &sc->rawbody : kind == RULE_URI ? &sc->uris : NULL;

	for (size_t i = 0; l && i < l->nlines; i++) {
		const char *s;
		size_t n;

		rules_line_at(l, i, &s, &n);
		cb(s, n, arg);
	}
}

void rules_result_free(struct rules_result *res)
{
	free(res->v);
	memset(res, 0, sizeof(*res));
}

