/* rules_compile.c — loading rule files and compiling them into a rule set: regexes,
 * meta expressions in dependency order, per-kind lists and the vectorscan prefilters.
 * See rules.h and docs/rules.md. */
#include "rules_int.h"

#include "eval_int.h"
#include "filters/greylist.h"

#include <errno.h>
#include <limits.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RULES_MAX_FILE   (32u << 20)

/* ---------------------------------------------------------------- compiling */

char *rules_xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		abort();
	return d;
}

static size_t rules_add_rule(struct rules_set *rs, const char *name, size_t nl)
{
	struct rules_rule *x;

	if (rs->n == rs->cap) {
		size_t nc = rs->cap ? rs->cap * 2 : 256;

		x = realloc(rs->r, nc * sizeof(*x));
		if (x == NULL)
			abort();
		rs->r = x;
		rs->cap = nc;
	}
	x = &rs->r[rs->n];
	memset(x, 0, sizeof(*x));
	x->name = malloc(nl + 1);
	if (x->name == NULL)
		abort();
	memcpy(x->name, name, nl);
	x->name[nl] = '\0';
	x->kind = RULE_SYMBOL;
	return rs->n++;
}

/* Meta names: a rule of the set, else a symbol another module may set. */
static int rules_resolve_cb(const char *name, size_t len, void *arg)
{
	struct rules_set *rs = arg;
	char tmp[128];
	long k;

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, name, len);
	tmp[len] = '\0';
	k = rule_src_find(rs->src, tmp);
	if (k >= 0)
		return (int)k;
	for (size_t i = rule_src_count(rs->src); i < rs->n; i++)
		if (strcmp(rs->r[i].name, tmp) == 0)
			return (int)i;
	return (int)rules_add_rule(rs, name, len);
}

static void rules_kind_push(struct rules_set *rs, enum rule_kind k, size_t i)
{
	size_t *v = realloc(rs->kind_idx[k], (rs->nkind[k] + 1) * sizeof(size_t));

	if (v == NULL)
		abort();
	rs->kind_idx[k] = v;
	v[rs->nkind[k]++] = i;
}

/* Topological order of metas (dependencies first); cycles are dropped. Depth-first with
 * an explicit stack (stk: room for every rule): a chain of metas as long as the rule
 * limit must not overflow the thread's stack. */
struct rules_meta_frame { size_t i, next; };

static void rules_meta_visit(struct rules_set *rs, size_t root, uint8_t *state,
    struct rules_meta_frame *stk)
{
	size_t top = 0;

	if (state[root] != 0)
		return;
	state[root] = 1;
	stk[top++] = (struct rules_meta_frame){ root, 0 };
	while (top > 0) {
		struct rules_meta_frame *f = &stk[top - 1];
		const int *deps;
		size_t nd = meta_deps(rs->r[f->i].meta, &deps), j;

		if (f->next == nd) {
			state[f->i] = 2;
			if (rs->r[f->i].active)
				rs->meta_order[rs->nmeta++] = f->i;
			top--;
			continue;
		}
		j = (size_t)deps[f->next++];
		if (!(rs->r[j].kind == RULE_META && rs->r[j].meta && rs->r[j].active) ||
		    state[j] == 2)
			continue;
		if (state[j] == 1) {            /* cycle */
			rs->r[j].active = false;
			if (rs->nmeta_loops++ == 0)
				rs->meta_loop = rs->r[j].name;
			continue;
		}
		state[j] = 1;
		stk[top++] = (struct rules_meta_frame){ j, 0 };
	}
}

/* Builds the pending prefilters and publishes them. */
static void rules_build_prefilters(struct rules_set *rs)
{
	for (int k = 0; k < RULE_NKINDS; k++) {
		struct match_multi *m = rs->pending[k];

		if (m == NULL)
			continue;
		rs->pending[k] = NULL;
		if (match_multi_build(m) < 0) {
			match_multi_free(m);
			continue;
		}
		atomic_fetch_add(&rs->prefiltered, match_multi_covered(m));
		atomic_store_explicit(&rs->pre[k], m, memory_order_release);
	}
}

static void *rules_prefilter_thread(void *arg)
{
	struct rules_set *rs = arg;

	rules_build_prefilters(rs);
	rules_set_free(rs);      /* the thread's reference */
	return NULL;
}

/* Counts an eval function that is not implemented. */
static void rules_note_missing(struct rules_set *rs, const char *fn)
{
	for (size_t i = 0; i < rs->nmissing; i++)
		if (strcmp(rs->missing[i].fn, fn) == 0) {
			rs->missing[i].rules++;
			return;
		}
	rs->missing = realloc(rs->missing, (rs->nmissing + 1) * sizeof(*rs->missing));
	if (rs->missing == NULL)
		abort();
	rs->missing[rs->nmissing].fn = rules_xstrdup(fn);
	rs->missing[rs->nmissing].rules = 1;
	rs->missing[rs->nmissing].metas = 0;
	rs->nmissing++;
}

/* For each missing eval, the metas whose result may depend on it. */
static void rules_count_blocked_metas(struct rules_set *rs)
{
	uint8_t *taint = calloc(rs->n + 1, 1);

	if (taint == NULL)
		abort();
	for (size_t k = 0; k < rs->nmissing; k++) {
		memset(taint, 0, rs->n);
		for (size_t i = 0; i < rs->n; i++)
			if (rs->r[i].eval_fn && strcmp(rs->r[i].eval_fn, rs->missing[k].fn) == 0)
				taint[i] = 1;
		for (size_t m = 0; m < rs->nmeta; m++) {
			size_t i = rs->meta_order[m];
			const int *deps;
			size_t nd = meta_deps(rs->r[i].meta, &deps);

			for (size_t d = 0; d < nd; d++)
				if (taint[deps[d]]) {
					taint[i] = 1;
					rs->missing[k].metas++;
					break;
				}
		}
	}
	free(taint);
}

/* Sets up an eval rule: its function and arguments, or unknown when not implemented. */
static void rules_compile_eval(struct rules_set *rs, struct rule_src *src, struct rule_def *d,
    struct rules_rule *x)
{
	const struct eval_def *def = eval_find(d->eval_fn);
	const char *why = NULL;

	if (def == NULL) {
		d->skip = SKIP_EVAL;
		x->unknown = true;
		x->eval_fn = rules_xstrdup(d->eval_fn);
		rules_note_missing(rs, d->eval_fn);
		return;
	}
	if (eval_call_new(def, d->eval_args, &x->ev, &why) < 0) {
		rule_src_add_error(src, d->file, d->line, d->col, "%s: %s(%s): %s", d->name,
		    d->eval_fn, d->eval_args, why);
		return;
	}
	rs->evals = realloc(rs->evals, (rs->nevals + 1) * sizeof(size_t));
	if (rs->evals == NULL)
		abort();
	rs->evals[rs->nevals++] = (size_t)(x - rs->r);
	rs->eval_needs |= def->needs;
	if (def->fn == eval_check_bayes)
		rs->uses_bayes = true;
	x->active = true;
}

/* ---------------------------------------------------------------- capture rules */

static bool rules_tag_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Length of a tag name at s ([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*), 0 when there is none. */
static size_t rules_tag_name_len(const char *s)
{
	size_t n = 1;

	if (!(s[0] >= 'A' && s[0] <= 'Z'))
		return 0;
	for (;;) {
		if (rules_tag_alnum(s[n]))
			n++;
		else if (s[n] == '_' && rules_tag_alnum(s[n + 1]))
			n += 2;
		else
			return n;
	}
}

/* Conf::Parser::parse_captures on a pattern: the NAME of the last %{NAME} or
 * %{NAME(args)} not after a backslash (SA's loop keeps $1 of one s///g: only that one is a
 * template, the others stay literal text), malloc'd; NULL when there is none. */
static char *rules_template_tag(const char *re)
{
	const char *last = NULL;
	size_t lastn = 0, i = 0, n = strlen(re);
	char *tag;

	while (i < n) {
		size_t k, e;

		if (re[i] != '%' || re[i + 1] != '{' || (i > 0 && re[i - 1] == '\\') ||
		    (k = rules_tag_name_len(re + i + 2)) == 0) {
			i++;
			continue;
		}
		e = i + 2 + k;
		if (re[e] == '(') {
			size_t j = e + 1;

			while (re[j] && re[j] != ')' && re[j] != '}')
				j++;
			if (re[j] == ')')
				e = j + 1;
		}
		if (re[e] != '}') {
			i++;
			continue;
		}
		last = re + i + 2;
		lastn = e - (i + 2);
		i = e + 1;
	}
	if (last == NULL)
		return NULL;
	tag = malloc(lastn + 1);
	if (tag == NULL)
		abort();
	memcpy(tag, last, lastn);
	tag[lastn] = '\0';
	return tag;
}

/* The names of re's named groups that SA takes as tags (set_captures' check), appended to
 * names (a "\0"-separated list); whether re is a capture rule (/\(\?P?[<'][A-Z]/). */
static bool rules_capture_names(const char *re, struct rules_buf *names)
{
	bool capture = false;

	for (const char *p = strstr(re, "(?"); p; p = strstr(p + 1, "(?")) {
		const char *q = p + 2;
		size_t k;

		if (*q == 'P')
			q++;
		if (*q != '<' && *q != '\'')
			continue;
		if (!(q[1] >= 'A' && q[1] <= 'Z'))
			continue;
		capture = true;
		k = rules_tag_name_len(q + 1);
		if (q[1 + k] == (*q == '<' ? '>' : '\'')) {
			rules_buf_put(names, q + 1, k);
			rules_buf_put(names, "", 1);
		}
	}
	return capture;
}

/* Whether name (a template's tag, "(args)" dropped as get_tag_raw does) is in names. */
static bool rules_tag_captured(const struct rules_buf *names, const char *tag)
{
	size_t tl = strcspn(tag, "(");

	for (size_t o = 0; names->p && o < names->n; o += strlen(names->p + o) + 1)
		if (strlen(names->p + o) == tl && strncmp(names->p + o, tag, tl) == 0)
			return true;
	return false;
}

static struct rules_set *rules_compile(struct rule_src *src, FILE *err,
    const struct rules_opts *opts)
{
	struct rules_buf capnames = { 0 };
	struct rules_set *rs = calloc(1, sizeof(*rs));
	struct match_scratch *ms = NULL;
	size_t nsrc;
	uint8_t *state;
	struct rules_meta_frame *stk;

	if (rs == NULL)
		abort();
	atomic_init(&rs->refs, 1);
	rs->src = src;
	rule_src_finish(src);
	rs->conf = eval_conf_new(src, opts);
	nsrc = rule_src_count(src);
	for (size_t i = 0; i < nsrc; i++) {
		struct rule_def *d = rule_src_get(src, i);
		size_t xi = rules_add_rule(rs, d->name, strlen(d->name));
		struct rules_rule *x = &rs->r[xi];
		char ebuf[256];

		x->kind = d->kind;
		x->score = d->score;
		x->score_bayes = d->score_bayes;
		x->has_score = d->has_score;
		x->desc = rules_xstrdup(d->desc);
		x->tflags = d->tflags;
		x->maxhits = d->maxhits;
		x->priority = d->priority;
		x->action = d->action;
		x->negate = d->negate;
		x->hdr = rules_xstrdup(d->hdr);
		x->hdr_req = rules_xstrdup(d->hdr_req ? d->hdr_req : d->hdr);
		x->sel = d->sel;
		x->if_unset = rules_xstrdup(d->if_unset);
		x->env_field = d->env_field;
		if (d->kind == RULE_SYMBOL) {
			x->active = true;           /* set by other modules, if at all */
			continue;
		}
		rs->st.rules++;
		/* SA: a score of 0 disables a rule (in both score sets mxgate uses) */
		if (d->skip == SKIP_NONE && x->score == 0 && x->score_bayes == 0 &&
		    (strncmp(x->name, "__", 2) != 0 || d->has_score) &&
		    x->action == RULE_ACT_NONE && !(x->tflags & RULE_TF_NOSCORE))
			d->skip = SKIP_ZERO;
		if (d->skip == SKIP_NONE && d->eval_fn != NULL) {
			rules_compile_eval(rs, src, d, x);
			if (d->skip != SKIP_NONE)
				rs->st.skipped[d->skip]++;
			continue;
		}
		if (d->skip != SKIP_NONE) {
			rs->st.skipped[d->skip]++;
			continue;
		}
		if (d->re) {
			int rc = match_re_compile(d->re, d->re_flags | MATCH_PERL_CHECK, &x->re, ebuf,
			    sizeof(ebuf));

			/* a ReplaceTags pattern too large for PCRE2 fits as subroutine calls */
			if (rc < 0 && d->re_compact &&
			    match_re_compile(d->re_compact, d->re_flags, &x->re, ebuf, sizeof(ebuf)) == 0)
				rc = 0;
			if (rc == MATCH_ERR_SYNTAX) {
				/* SpamAssassin: "invalid regexp" fails its lint, and spamd drops
				 * the rule (a meta over it sees 0); an error here, the rule left out */
				rule_src_add_error(src, d->file, d->line, d->col,
				    "%s: invalid regex, rule left out: %s", d->name, ebuf);
				d->skip = SKIP_REGEX;
				continue;
			}
			if (rc < 0) {
				if (err)
					fprintf(err, "%s:%d:%d: warning: %s: skipped, %s\n", d->file,
					    d->line, d->col, d->name, ebuf);
				d->skip = SKIP_REGEX;
				x->unknown = true;     /* SA runs it: its value is unknown here */
				rs->st.skipped[SKIP_REGEX]++;
				continue;
			}
		}
		if (d->kind == RULE_ENVELOPE && d->env_field == ENV_IP_CIDR &&
		    cfg_parse_cidr(d->cidr, &x->cidr) < 0) {
			rule_src_add_error(src, d->file, d->line, d->col, "%s: bad CIDR \"%s\"",
			    d->name, d->cidr);
			continue;
		}
		x->active = true;
		if (d->re && x->kind != RULE_ENVELOPE) {
			x->capture = rules_capture_names(d->re, &capnames);
			x->tmpl_tag = rules_template_tag(d->re);
		}
		if (x->kind == RULE_HEADER && x->re && x->sel != HDR_SEL_EXISTS && !x->capture) {
			/* the value for an unset header is the same for every message */
			const char *v = x->if_unset ? x->if_unset : "";
			int r;

			if (ms == NULL)
				ms = match_scratch_new();
			r = ms ? match_re_exec(x->re, v, strlen(v), ms, 1) : -1;
			x->unset_known = r >= 0;
			x->unset_hit = (r > 0) != x->negate;
		}
	}
	match_scratch_free(ms);
	/* a template over a tag no rule captures (one of SA's own tags, a plugin's): SA runs
	 * it, mxgate cannot */
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = &rs->r[i];
		struct rule_def *d = i < nsrc ? rule_src_get(src, i) : NULL;

		if (!x->tmpl_tag || !x->active || rules_tag_captured(&capnames, x->tmpl_tag))
			continue;
		if (err && d)
			fprintf(err, "%s:%d:%d: warning: %s: skipped, tag %%{%s} is not one a rule "
			    "captures\n", d->file, d->line, d->col, x->name, x->tmpl_tag);
		x->active = false;
		x->unknown = true;
		rs->st.skipped[SKIP_REGEX]++;
	}
	free(capnames.p);
	/* metas (may append symbol entries, so index, never hold pointers) */
	for (size_t i = 0; i < nsrc; i++) {
		struct rule_def *d = rule_src_get(src, i);
		struct meta_expr *m = NULL;
		const char *why = NULL;
		int col = 0;

		if (d->kind != RULE_META || d->skip != SKIP_NONE || d->expr == NULL)
			continue;
		if (meta_compile(d->expr, rules_resolve_cb, rs, &m, &col, &why) < 0) {
			rule_src_add_error(src, d->file, d->line, d->col + col - 1, "%s: %s", d->name,
			    why);
			rs->r[i].active = false;
			continue;
		}
		rs->r[i].meta = m;
		rs->r[i].active = true;
	}
	rs->meta_order = calloc(rs->n + 1, sizeof(size_t));
	state = calloc(rs->n + 1, 1);
	stk = calloc(rs->n + 1, sizeof(*stk));
	if (rs->meta_order == NULL || state == NULL || stk == NULL)
		abort();
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].kind == RULE_META && rs->r[i].meta && rs->r[i].active)
			rules_meta_visit(rs, i, state, stk);
	free(stk);
	free(state);
	rules_count_blocked_metas(rs);
	/* per-kind lists and prefilters */
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = &rs->r[i];

		x->scoring = strncmp(x->name, "__", 2) != 0 && !(x->tflags & RULE_TF_NOSCORE) &&
		    (x->score != 0 || x->score_bayes != 0 || x->action != RULE_ACT_NONE);
		if (!x->active || x->kind == RULE_SYMBOL)
			continue;
		rs->st.compiled++;
		if (x->tmpl_tag) {
			rs->tmpl = realloc(rs->tmpl, (rs->ntmpl + 1) * sizeof(size_t));
			if (rs->tmpl == NULL)
				abort();
			rs->tmpl[rs->ntmpl++] = i;
		} else if (x->kind != RULE_META && x->ev == NULL) {
			rules_kind_push(rs, x->kind, i);
		}
	}
	for (int k = 0; k < RULE_NKINDS; k++) {
		if (k != RULE_BODY && k != RULE_RAWBODY && k != RULE_URI)
			continue;
		if (rs->nkind[k] == 0)
			continue;
		rs->pending[k] = match_multi_new();
		for (size_t j = 0; j < rs->nkind[k]; j++) {
			struct rule_def *d = rule_src_get(src, rs->kind_idx[k][j]);

			match_multi_add(rs->pending[k], d->re, d->re_flags |
			    (d->replace_tags ? MATCH_NO_PREFILTER : 0), (unsigned)j);
		}
	}
	for (int s = 1; s < SKIP_NREASONS; s++)
		rs->st.skipped_total += rs->st.skipped[s];
	rs->st.ignored = rule_src_ignored(src);
	rs->ignored_list = rule_src_ignored_list(src);
	rs->src = NULL;
	return rs;
}

static void rules_set_release(struct rules_set *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = &rs->r[i];

		free(x->name); free(x->desc); free(x->hdr); free(x->hdr_req); free(x->if_unset);
		free(x->tmpl_tag);
		match_re_free(x->re);
		meta_free(x->meta);
		eval_call_free(x->ev);
		free(x->eval_fn);
	}
	free(rs->r);
	for (int k = 0; k < RULE_NKINDS; k++) {
		free(rs->kind_idx[k]);
		match_multi_free(atomic_load(&rs->pre[k]));
		match_multi_free(rs->pending[k]);
	}
	free(rs->meta_order);
	free(rs->tmpl);
	free(rs->evals);
	eval_conf_free(rs->conf);
	for (size_t i = 0; i < rs->nmissing; i++)
		free(rs->missing[i].fn);
	free(rs->missing);
	free(rs->ignored_list);
	for (size_t i = 0; i < rs->nignore_hdrs; i++)
		free(rs->ignore_hdrs[i]);
	free(rs->ignore_hdrs);
	free(rs->rewrite_subject);
	addhdr_safe_clear(&rs->safe);
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < rs->nhdrs[k]; i++) {
			free(rs->hdrs[k][i].name);
			free(rs->hdrs[k][i].tmpl);
		}
		free(rs->hdrs[k]);
	}
	free(rs);
}

void rules_set_free(struct rules_set *rs)
{
	if (rs == NULL)
		return;
	if (atomic_fetch_sub(&rs->refs, 1) == 1)
		rules_set_release(rs);
}

struct rules_set *rules_set_ref(struct rules_set *rs)
{
	atomic_fetch_add(&rs->refs, 1);
	return rs;
}

struct rules_feed;
static void rules_print_problem(FILE *err, const char *line, const struct rules_feed *f,
    const struct rules_opts *o);

static int rules_finish_load(struct rule_src *src, struct rules_set **out, FILE *err,
    size_t files, enum rules_prefilter_mode pm, const struct rules_opts *o,
    const struct rules_feed *f)
{
	size_t ne;
	int nerr;

	*out = rules_compile(src, err, o);
	if (pm == RULES_PREFILTER_SYNC) {
		rules_build_prefilters(*out);
	} else if (pm == RULES_PREFILTER_ASYNC) {
		pthread_t th;
		pthread_attr_t at;

		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		rules_set_ref(*out);
		if (pthread_create(&th, &at, rules_prefilter_thread, *out) != 0) {
			rules_set_free(*out);
			rules_build_prefilters(*out);
		}
		pthread_attr_destroy(&at);
	}
	{
		/* the classifier's bayes_ignore_header names outlive src: the set keeps a copy */
		size_t n;
		const char *const *v = rule_src_ignore_headers(src, &n);

		if (n && ((*out)->ignore_hdrs = calloc(n, sizeof(char *))) == NULL)
			abort();
		for (size_t i = 0; i < n; i++)
			if (((*out)->ignore_hdrs[i] = strdup(v[i])) == NULL)
				abort();
		(*out)->nignore_hdrs = n;
		if (rule_src_rewrite_subject(src) &&
		    ((*out)->rewrite_subject = strdup(rule_src_rewrite_subject(src))) == NULL)
			abort();
		rule_src_safe(src, &(*out)->safe);
		for (int k = 0; k < 2; k++) {
			const struct addhdr_spec *h;
			size_t nh = rule_src_headers(src, k == 1, &h);

			if (nh && ((*out)->hdrs[k] = calloc(nh, sizeof(*h))) == NULL)
				abort();
			for (size_t i = 0; i < nh; i++)
				if (((*out)->hdrs[k][i].name = strdup(h[i].name)) == NULL ||
				    ((*out)->hdrs[k][i].tmpl = strdup(h[i].tmpl)) == NULL)
					abort();
			(*out)->nhdrs[k] = nh;
		}
	}
	for (size_t i = 0; i < rule_src_nwarnings(src) && err; i++)
		rules_print_problem(err, rule_src_warning(src, i), f, o);
	ne = rule_src_nerrors(src);
	for (size_t i = 0; i < ne && err; i++)
		rules_print_problem(err, rule_src_error(src, i), f, o);
	(*out)->st.errors = ne;
	(*out)->st.files = files;
	nerr = (int)ne;
	rule_src_free(src);
	return nerr;
}

int rules_set_load_text(const char *name, const char *text, size_t len,
    struct rules_set **out, FILE *err)
{
	struct rule_src *src = rule_src_new();

	*out = NULL;
	if (src == NULL)
		return -1;
	rule_src_feed(src, name, text, len);
	return rules_finish_load(src, out, err, 1, RULES_PREFILTER_SYNC, NULL, NULL);
}

static int rules_read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 65536, n = 0;
	char *b;

	*buf = NULL;
	if (f == NULL)
		return -1;
	b = malloc(cap);
	if (b == NULL)
		abort();
	for (;;) {
		size_t r;

		if (n == cap) {
			if (cap >= RULES_MAX_FILE) {
				free(b);
				fclose(f);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			b = realloc(b, cap);
			if (b == NULL)
				abort();
		}
		r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
}

int rules_set_load(const char *const *globs, size_t nglobs, struct rules_set **out, FILE *err)
{
	return rules_set_load_mode(globs, nglobs, out, err, RULES_PREFILTER_SYNC);
}

int rules_set_load_mode(const char *const *globs, size_t nglobs, struct rules_set **out,
    FILE *err, enum rules_prefilter_mode pm)
{
	return rules_set_load_opts(globs, nglobs, out, err, pm, NULL);
}

/* What a load has read: the files (by real path, SpamAssassin reads each once: a file
 * included again, or included and matched by a later glob, is skipped; this also ends
 * include loops) and how many. */
struct rules_feed {
	char **seen; size_t nseen, cap;
	size_t files;
	size_t glob;                    /* the index in rules.files of the glob being fed */
	struct rules_origin { char *path; size_t glob; } *orig; /* each file by the name its
	                                 * messages use, the glob that brought it (its includer's) */
	size_t norig, origcap;
};

/* Notes that path's messages come from glob f->glob. */
static void rules_feed_note(struct rules_feed *f, const char *path)
{
	if (f->norig == f->origcap) {
		f->origcap = f->origcap ? f->origcap * 2 : 64;
		f->orig = realloc(f->orig, f->origcap * sizeof(*f->orig));
		if (f->orig == NULL)
			abort();
	}
	if ((f->orig[f->norig].path = strdup(path)) == NULL)
		abort();
	f->orig[f->norig++].glob = f->glob;
}

static void rules_feed_free(struct rules_feed *f)
{
	for (size_t i = 0; i < f->nseen; i++)
		free(f->seen[i]);
	free(f->seen);
	for (size_t i = 0; i < f->norig; i++)
		free(f->orig[i].path);
	free(f->orig);
}

/* Prints one warning or error line of the rule files, "FILE:LINE:COL: ...": with a config
 * (o->cfg) and FILE one a glob of rules.files brought, followed by the key and where it is
 * in the config, "(rules.files[1] at /etc/mxgate.yaml:12:7)": an operator with many rule
 * files, or one included by another, sees which entry of the config to look at. */
static void rules_print_problem(FILE *err, const char *line, const struct rules_feed *f,
    const struct rules_opts *o)
{
	const struct rules_origin *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; f != NULL && o != NULL && o->cfg != NULL && i < f->norig; i++) {
		size_t n = strlen(f->orig[i].path);

		if (n > best_len && strncmp(line, f->orig[i].path, n) == 0 && line[n] == ':' &&
		    line[n + 1] >= '0' && line[n + 1] <= '9') {
			best = &f->orig[i];
			best_len = n;
		}
	}
	if (best == NULL) {
		fprintf(err, "%s\n", line);
		return;
	}
	{
		char key[48], at[PATH_MAX + 32];

		snprintf(key, sizeof(key), "rules.files[%zu]", best->glob);
		fprintf(err, "%s (%s at %s)\n", line, key, config_key_where(o->cfg, key, at, sizeof(at)));
	}
}

/* Reads and feeds one file once. An error names where it was asked for (the glob's file
 * itself, or the include line). */
static void rules_feed_file(struct rules_feed *f, struct rule_src *src, const char *path,
    const char *from, int line, int col)
{
	char *real = realpath(path, NULL), *buf;
	size_t len;

	rules_feed_note(f, path);
	if (real == NULL) {
		rule_src_add_error(src, from ? from : path, line, col, "cannot read %s: %s", path,
		    strerror(errno));
		return;
	}
	for (size_t i = 0; i < f->nseen; i++)
		if (strcmp(f->seen[i], real) == 0) {
			free(real);
			return;
		}
	if (f->nseen == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 64;
		f->seen = realloc(f->seen, f->cap * sizeof(char *));
		if (f->seen == NULL)
			abort();
	}
	f->seen[f->nseen++] = real;
	if (rules_read_file(path, &buf, &len) < 0) {
		rule_src_add_error(src, from ? from : path, line, col, "cannot read %s: %s", path,
		    strerror(errno));
		return;
	}
	rule_src_feed(src, path, buf, len);
	free(buf);
	f->files++;
}

/* `include PATH` (rule_src_set_include): a file, or a directory's *.cf files sorted, as
 * SpamAssassin's read_cf does. */
static void rules_include_cb(struct rule_src *src, const char *path, const char *file,
    int line, int col, void *arg)
{
	struct rules_feed *f = arg;
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		size_t n = strlen(path);
		char *pat = malloc(n + 6);
		glob_t gl;

		if (pat == NULL)
			abort();
		snprintf(pat, n + 6, "%s/*.cf", path);
		if (glob(pat, 0, NULL, &gl) == 0) {
			for (size_t i = 0; i < gl.gl_pathc; i++)
				rules_feed_file(f, src, gl.gl_pathv[i], file, line, col);
			globfree(&gl);
		}
		free(pat);
		return;
	}
	rules_feed_file(f, src, path, file, line, col);
}

/* Feeds src the files the globs name, each glob's matches in order (a glob that matches no
 * readable file and a file that cannot be read are errors in src), with their includes,
 * noting in *f (zeroed; rules_feed_free) which glob brought each file. Returns the files
 * fed. */
static size_t rules_feed_globs(struct rule_src *src, const char *const *globs, size_t nglobs,
    struct rules_feed *f)
{
	rule_src_set_include(src, rules_include_cb, f);
	for (size_t g = 0; g < nglobs; g++) {
		glob_t gl;
		int rc = glob(globs[g], GLOB_ERR, NULL, &gl);   /* glob() sorts its matches */

		f->glob = g;
		rules_feed_note(f, globs[g]);
		if (rc != 0) {
			rule_src_add_error(src, globs[g], 0, 0, "matches no readable file");
			if (rc != GLOB_NOMATCH)
				globfree(&gl);
			continue;
		}
		for (size_t i = 0; i < gl.gl_pathc; i++)
			rules_feed_file(f, src, gl.gl_pathv[i], NULL, 0, 0);
		globfree(&gl);
	}
	rule_src_set_include(src, NULL, NULL);
	return f->files;
}

int rules_set_load_opts(const char *const *globs, size_t nglobs, struct rules_set **out,
    FILE *err, enum rules_prefilter_mode pm, const struct rules_opts *o)
{
	struct rule_src *src = rule_src_new();
	struct rules_feed f = { 0 };
	size_t files;
	int rc;

	*out = NULL;
	if (src == NULL)
		return -1;
	files = rules_feed_globs(src, globs, nglobs, &f);
	rc = rules_finish_load(src, out, err, files, pm, o, &f);
	rules_feed_free(&f);
	return rc;
}

struct rule_src *rules_src_read(const char *const *globs, size_t nglobs, FILE *err)
{
	struct rule_src *src = rule_src_new();

	struct rules_feed f = { 0 };

	if (src == NULL)
		return NULL;
	rules_feed_globs(src, globs, nglobs, &f);
	rules_feed_free(&f);
	for (size_t i = 0; i < rule_src_nerrors(src) && err; i++)
		fprintf(err, "%s\n", rule_src_error(src, i));
	return src;
}

size_t rules_set_ignore_headers(const struct rules_set *rs, const char *const **names)
{
	*names = (const char *const *)rs->ignore_hdrs;
	return rs->nignore_hdrs;
}

size_t rules_set_headers(const struct rules_set *rs, bool spam, const struct addhdr_spec **v)
{
	*v = rs->hdrs[spam ? 1 : 0];
	return rs->nhdrs[spam ? 1 : 0];
}

const struct addhdr_safe *rules_set_safe(const struct rules_set *rs)
{
	return &rs->safe;
}

const char *rules_set_rewrite_subject(const struct rules_set *rs)
{
	return rs->rewrite_subject;
}

void rules_set_get_stats(const struct rules_set *rs, struct rules_stats *st)
{
	*st = rs->st;
	st->prefiltered = atomic_load(&rs->prefiltered);
}

void rules_print_stats(const struct rules_stats *st, FILE *fp)
{
	fprintf(fp, "rules: %zu files, %zu rules compiled, %zu skipped (eval %zu, net %zu, "
	    "regex %zu, zero-score %zu), %zu prefiltered, %zu directives ignored, %zu errors\n",
	    st->files, st->compiled, st->skipped_total, st->skipped[SKIP_EVAL],
	    st->skipped[SKIP_NET], st->skipped[SKIP_REGEX], st->skipped[SKIP_ZERO],
	    st->prefiltered, st->ignored, st->errors);
}

void rules_opts_from_config(const struct mx_config *cfg, struct rules_opts *o)
{
	o->trusted = &cfg->rules.trusted_networks;
	o->internal = &cfg->rules.internal_networks;
	o->client_relay = cfg->rules.client_relay;
	o->hostname = cfg->hostname;
	o->cfg = cfg;
}

size_t rules_set_missing_evals(const struct rules_set *rs, size_t i, const char **fn,
    size_t *rules, size_t *metas)
{
	if (i < rs->nmissing) {
		*fn = rs->missing[i].fn;
		*rules = rs->missing[i].rules;
		*metas = rs->missing[i].metas;
	}
	return rs->nmissing;
}

static int rules_missing_cmp(const void *a, const void *b)
{
	const struct rules_missing *x = a, *y = b;
	size_t wx = x->rules + x->metas, wy = y->rules + y->metas;

	if (wx != wy)
		return wx > wy ? -1 : 1;
	return strcmp(x->fn, y->fn);
}

void rules_print_missing_evals(const struct rules_set *rs, FILE *fp)
{
	struct rules_missing *v;

	if (rs->nmissing == 0)
		return;
	v = malloc(rs->nmissing * sizeof(*v));
	if (v == NULL)
		abort();
	memcpy(v, rs->missing, rs->nmissing * sizeof(*v));
	qsort(v, rs->nmissing, sizeof(*v), rules_missing_cmp);
	fprintf(fp, "rules: %zu eval functions not implemented (their rules are skipped; metas "
	    "over them fire only when the result does not depend on them):", rs->nmissing);
	for (size_t i = 0; i < rs->nmissing; i++)
		fprintf(fp, "%s %s (%zu rule%s, %zu meta%s)", i ? "," : "", v[i].fn, v[i].rules,
		    v[i].rules == 1 ? "" : "s", v[i].metas, v[i].metas == 1 ? "" : "s");
	fprintf(fp, "\n");
	free(v);
}

size_t rules_set_quarantine_rules(const struct rules_set *rs, char *buf, size_t len)
{
	size_t n = 0, o = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < rs->n; i++) {
		int w;

		if (!rs->r[i].active || rs->r[i].action != RULE_ACT_QUARANTINE)
			continue;
		if (n < 8 && o < len) {
			w = snprintf(buf + o, len - o, "%s%s", n ? "," : "", rs->r[i].name);
			o = w < 0 || (size_t)w >= len - o ? len : o + (size_t)w;
		} else if (n == 8 && o < len) {
			w = snprintf(buf + o, len - o, ",...");
			o = w < 0 || (size_t)w >= len - o ? len : o + (size_t)w;
		}
		n++;
	}
	return n;
}

/* rules.actions.greylist: its records are greylist.store's; say when that store is this
 * process's alone (greylist.store local: a restart forgets every first sight, and a retry
 * another node receives is greylisted there again), and when a refusal's threshold at or
 * below it leaves it nothing to do. */
static void rules_check_greylist(const struct mx_config *cfg, FILE *err)
{
	char at[PATH_MAX + 32];
	const struct rules_actions_config *a = &cfg->rules.actions;
	const char *store = cfg->greylist.store ? cfg->greylist.store : "local";
	const double above[] = { a->tempfail, a->quarantine, a->reject };
	const char *const names[] = { "tempfail", "quarantine", "reject" };

	char what[64];

	if (!greylist_message_wanted(cfg) || cfg->rules.mode != RULES_MODE_ENFORCE)
		return;
	if (a->greylist > 0)
		snprintf(what, sizeof(what), "rules.actions.greylist %.2f", a->greylist);
	else
		snprintf(what, sizeof(what), "a recipient_actions entry's greylist");
	if (strcmp(store, "local") == 0)
		fprintf(err, "%s: warning: %s keeps its records in greylist.store "
		    "local: this process's memory alone (a restart forgets every first sight, and a "
		    "retry another node receives is greylisted there again); set greylist.store to "
		    "lmdb:/dir or redis://host:port\n", config_key_where(cfg, a->greylist > 0 ?
		    "rules.actions.greylist" : "rules.recipient_actions", at, sizeof(at)), what);
	if (a->greylist <= 0)
		return;
	for (size_t i = 0; i < 3; i++)
		if (above[i] > 0 && above[i] <= a->greylist)
			fprintf(err, "%s: warning: rules.actions.greylist %.2f is at or above actions.%s "
			    "%.2f, which wins: no message is greylisted by score\n",
			    config_key_where(cfg, "rules.actions.greylist", at, sizeof(at)), a->greylist,
			    names[i], above[i]);
}

int rules_check_files(const struct mx_config *cfg, FILE *err)
{
	const struct rules_config *rc = &cfg->rules;
	struct rules_set *rs = NULL;
	char at[PATH_MAX + 32];
	int n;

	if (!config_rules_engine_wanted(cfg))
		return 0;       /* the engine is off: nothing of it to check */
	/* no rule file with a spamd plugin: an empty set, whose actions are checked */
	/* -t checks syntax and regexes; the prefilter is an optimisation, not built here */
	{
		struct rules_opts o;

		rules_opts_from_config(cfg, &o);
		n = rules_set_load_opts((const char *const *)rc->files.v, rc->files.n, &rs, err,
		    RULES_PREFILTER_NONE, &o);
	}
	if (rs) {
		struct rules_stats st;

		rules_set_get_stats(rs, &st);
		rules_print_stats(&st, err);
		{
			/* the daemon would load the same library: say now that it runs without the
			 * prefilter (match.h's self-test; logged as event=rules_prefilter_off) */
			const struct match_selftest *t = match_prefilter_selftest();

			if (!t->ok)
				fprintf(err, "rules: warning: the prefilter is off: libhs %s missed /%s/i "
				    "in %s (%zu octets), a match PCRE2 finds; every body, rawbody and uri "
				    "rule runs in PCRE2 (the same results, slower)\n", t->version,
				    t->pattern, t->probe, t->probe_len);
		}
		rules_print_missing_evals(rs, err);
		if (rs->ignored_list)
			fprintf(err, "rules: directives not applied (SpamAssassin features mxgate does "
			    "not run, docs/rules.md): %s\n", rs->ignored_list);
		if (rs->nmeta_loops)
			/* as SpamAssassin's lint: such a meta never hits */
			fprintf(err, "rules: warning: %zu meta rule%s in a dependency loop, never run (%s)\n",
			    rs->nmeta_loops, rs->nmeta_loops == 1 ? "" : "s", rs->meta_loop);
		{
			char names[512];

			if (rc->mode == RULES_MODE_ENFORCE &&
			    rules_set_quarantine_rules(rs, names, sizeof(names)) &&
			    (cfg->quarantine == NULL || cfg->quarantine[0] == '\0'))
				fprintf(err, "rules: warning: action quarantine (%s) without a quarantine "
				    "backend (top-level `quarantine`): those messages get 451 4.3.0\n",
				    names);
			if (rc->mode == RULES_MODE_ENFORCE && rc->actions.quarantine > 0 &&
			    (cfg->quarantine == NULL || cfg->quarantine[0] == '\0'))
				fprintf(err, "%s: warning: rules.actions.quarantine %.2f without a quarantine "
				    "backend (top-level `quarantine`): messages scoring that much get 451 "
				    "4.3.0\n", config_key_where(cfg, "rules.actions.quarantine", at, sizeof(at)),
				    rc->actions.quarantine);
			rules_check_greylist(cfg, err);
		}
		rules_set_free(rs);
	}
	return n == 0 ? 0 : -1;
}


static const struct rules_set *rules_carry_from;

static int rules_carry_cmp(const void *a, const void *b)
{
	return strcmp(rules_carry_from->r[*(const size_t *)a].name, rules_carry_from->r[*(const size_t *)b].name);
}

void rules_set_carry_hits(struct rules_set *to, const struct rules_set *from)
{
	size_t *ix, n = 0;

	if (to == NULL || from == NULL || from->n == 0 || (ix = malloc(from->n * sizeof(*ix))) == NULL)
		return;
	for (size_t i = 0; i < from->n; i++)
		if (atomic_load_explicit(&from->r[i].hits, memory_order_relaxed) > 0)
			ix[n++] = i;
	/* under the caller's lock: the comparison's set is a file-scope pointer */
	rules_carry_from = from;
	qsort(ix, n, sizeof(*ix), rules_carry_cmp);
	for (size_t i = 0; i < to->n; i++) {
		size_t lo = 0, hi = n;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = strcmp(to->r[i].name, from->r[ix[mid]].name);

			if (c == 0) {
				atomic_fetch_add_explicit(&to->r[i].hits,
				    atomic_load_explicit(&from->r[ix[mid]].hits, memory_order_relaxed), memory_order_relaxed);
				break;
			}
			if (c < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	rules_carry_from = NULL;
	free(ix);
}

void rules_set_foreach_counter(const struct rules_set *rs, rules_counter_cb cb, void *arg)
{
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].active && rs->r[i].scoring && rs->r[i].kind != RULE_SYMBOL)
			cb(rs->r[i].name, atomic_load_explicit(&rs->r[i].hits, memory_order_relaxed),
			    arg);
}
