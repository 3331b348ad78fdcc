/* rules.c — compiling rule sets, scanning messages, and the `rules` hook module.
 * See rules.h and docs/rules.md. */
#include "rules.h"

#include "actions.h"
#include "config.h"
#include "log.h"
#include "match.h"
#include "meta.h"
#include "mime.h"
#include "msgbuf.h"
#include "uri.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RULES_MAX_FILE   (32u << 20)
#define RULES_MAX_LINES  20000        /* body/rawbody lines examined per message */
#define RULES_LINE_SPLIT 2048         /* SA splits long paragraphs near this size */
#define RULES_MAX_MULTI  1000         /* hit count cap for tflags multiple */
#define RULES_BUDGET_MS  5000         /* per message: rules left after this do not run */

struct rules_rule {
	char *name;
	enum rule_kind kind;
	double score;
	double score_bayes;          /* score set 2, when the classifier is available */
	char *desc;
	unsigned tflags;
	int maxhits;
	enum rule_action action;
	bool active;                 /* runnable (or a symbol) */
	bool scoring;                /* reported as a hit: not __, score or action set */
	bool has_score;
	/* regex kinds */
	struct match_re *re;
	bool negate;
	char *hdr;
	enum rule_hdr_sel sel;
	char *if_unset;
	/* meta */
	struct meta_expr *meta;
	/* envelope */
	enum rule_env_field env_field;
	struct cfg_cidr cidr;
	_Atomic uint64_t hits;
};

struct rules_set {
	struct rules_rule *r; size_t n, cap;
	size_t *kind_idx[RULE_NKINDS]; size_t nkind[RULE_NKINDS];
	size_t *meta_order; size_t nmeta;
	/* body, rawbody, uri prefilters: published once built (maybe by a background thread,
	 * as vectorscan needs seconds for the stock SA rules); NULL = PCRE2 only for now */
	_Atomic(struct match_multi *) pre[RULE_NKINDS];
	struct match_multi *pending[RULE_NKINDS];
	atomic_size_t prefiltered;
	struct rules_stats st;
	struct rule_src *src;                    /* for name lookup during compile */
	atomic_int refs;
};

/* ---------------------------------------------------------------- compiling */

static char *rules_xstrdup(const char *s)
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

/* Topological order of metas (dependencies first); cycles are dropped. */
static void rules_meta_visit(struct rules_set *rs, size_t i, uint8_t *state)
{
	const int *deps;
	size_t nd;

	if (state[i] == 2)
		return;
	if (state[i] == 1) {            /* cycle */
		rs->r[i].active = false;
		return;
	}
	state[i] = 1;
	nd = meta_deps(rs->r[i].meta, &deps);
	for (size_t d = 0; d < nd; d++) {
		size_t j = (size_t)deps[d];

		if (rs->r[j].kind == RULE_META && rs->r[j].meta && rs->r[j].active)
			rules_meta_visit(rs, j, state);
	}
	state[i] = 2;
	if (rs->r[i].active)
		rs->meta_order[rs->nmeta++] = i;
}

static struct rules_set *rules_set_ref(struct rules_set *rs);
void rules_set_free(struct rules_set *rs);

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

static struct rules_set *rules_compile(struct rule_src *src, FILE *err)
{
	struct rules_set *rs = calloc(1, sizeof(*rs));
	size_t nsrc;
	uint8_t *state;

	if (rs == NULL)
		abort();
	atomic_init(&rs->refs, 1);
	rs->src = src;
	rule_src_finish(src);
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
		x->action = d->action;
		x->negate = d->negate;
		x->hdr = rules_xstrdup(d->hdr);
		x->sel = d->sel;
		x->if_unset = rules_xstrdup(d->if_unset);
		x->env_field = d->env_field;
		if (d->kind == RULE_SYMBOL) {
			x->active = true;           /* set by other modules, if at all */
			continue;
		}
		rs->st.rules++;
		if (d->skip == SKIP_NONE && x->score == 0 && x->score_bayes == 0 &&
		    strncmp(x->name, "__", 2) != 0 &&
		    x->action == RULE_ACT_NONE && !(x->tflags & RULE_TF_NOSCORE))
			d->skip = SKIP_ZERO;         /* SA: a score of 0 disables a rule */
		if (d->skip != SKIP_NONE) {
			rs->st.skipped[d->skip]++;
			continue;
		}
		if (d->re) {
			if (match_re_compile(d->re, d->re_flags, &x->re, ebuf, sizeof(ebuf)) < 0) {
				if (err)
					fprintf(err, "%s:%d:%d: warning: %s: skipped, %s\n", d->file,
					    d->line, d->col, d->name, ebuf);
				d->skip = SKIP_REGEX;
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
	}
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
	if (rs->meta_order == NULL || state == NULL)
		abort();
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].kind == RULE_META && rs->r[i].meta && rs->r[i].active)
			rules_meta_visit(rs, i, state);
	free(state);
	/* per-kind lists and prefilters */
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = &rs->r[i];

		x->scoring = strncmp(x->name, "__", 2) != 0 && !(x->tflags & RULE_TF_NOSCORE) &&
		    (x->score != 0 || x->score_bayes != 0 || x->action != RULE_ACT_NONE);
		if (!x->active || x->kind == RULE_SYMBOL)
			continue;
		rs->st.compiled++;
		if (x->kind != RULE_META)
			rules_kind_push(rs, x->kind, i);
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
	rs->src = NULL;
	return rs;
}

static void rules_set_release(struct rules_set *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = &rs->r[i];

		free(x->name); free(x->desc); free(x->hdr); free(x->if_unset);
		match_re_free(x->re);
		meta_free(x->meta);
	}
	free(rs->r);
	for (int k = 0; k < RULE_NKINDS; k++) {
		free(rs->kind_idx[k]);
		match_multi_free(atomic_load(&rs->pre[k]));
		match_multi_free(rs->pending[k]);
	}
	free(rs->meta_order);
	free(rs);
}

void rules_set_free(struct rules_set *rs)
{
	if (rs == NULL)
		return;
	if (atomic_fetch_sub(&rs->refs, 1) == 1)
		rules_set_release(rs);
}

static struct rules_set *rules_set_ref(struct rules_set *rs)
{
	atomic_fetch_add(&rs->refs, 1);
	return rs;
}

static int rules_finish_load(struct rule_src *src, struct rules_set **out, FILE *err,
    size_t files, enum rules_prefilter_mode pm)
{
	size_t ne;
	int nerr;

	*out = rules_compile(src, err);
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
	ne = rule_src_nerrors(src);
	for (size_t i = 0; i < ne && err; i++)
		fprintf(err, "%s\n", rule_src_error(src, i));
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
	return rules_finish_load(src, out, err, 1, RULES_PREFILTER_SYNC);
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
	struct rule_src *src = rule_src_new();
	size_t files = 0;

	*out = NULL;
	if (src == NULL)
		return -1;
	for (size_t g = 0; g < nglobs; g++) {
		glob_t gl;
		int rc = glob(globs[g], GLOB_ERR, NULL, &gl);   /* glob() sorts its matches */

		if (rc != 0) {
			rule_src_add_error(src, globs[g], 0, 0, "matches no readable file");
			if (rc != GLOB_NOMATCH)
				globfree(&gl);
			continue;
		}
		for (size_t i = 0; i < gl.gl_pathc; i++) {
			char *buf;
			size_t len;

			if (rules_read_file(gl.gl_pathv[i], &buf, &len) < 0) {
				rule_src_add_error(src, gl.gl_pathv[i], 0, 0, "cannot read: %s",
				    strerror(errno));
				continue;
			}
			rule_src_feed(src, gl.gl_pathv[i], buf, len);
			free(buf);
			files++;
		}
		globfree(&gl);
	}
	return rules_finish_load(src, out, err, files, pm);
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

int rules_check_files(const struct mx_config *cfg, FILE *err)
{
	const struct rules_config *rc = &cfg->rules;
	struct rules_set *rs = NULL;
	int n;

	if (rc->files.n == 0)
		return 0;
	/* -t checks syntax and regexes; the prefilter is an optimisation, not built here */
	n = rules_set_load_mode((const char *const *)rc->files.v, rc->files.n, &rs, err,
	    RULES_PREFILTER_NONE);
	if (rs) {
		struct rules_stats st;

		rules_set_get_stats(rs, &st);
		rules_print_stats(&st, err);
		rules_set_free(rs);
	}
	return n == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- scratch */

struct rules_buf { char *p; size_t n, cap; };

static void rules_buf_put(struct rules_buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 1024;

		while (b->n + n + 1 > nc)
			nc *= 2;
		b->p = realloc(b->p, nc);
		if (b->p == NULL)
			abort();
		b->cap = nc;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

/* A text of lines joined by '\n'; lines[i] = start offset, line i ends before the next
 * start - 1 (or at n). */
struct rules_lines { struct rules_buf b; size_t *off; size_t nlines, cap; };

static void rules_lines_add(struct rules_lines *l, const char *s, size_t n)
{
	if (l->nlines >= RULES_MAX_LINES)
		return;
	if (l->nlines == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;

		l->off = realloc(l->off, nc * sizeof(size_t));
		if (l->off == NULL)
			abort();
		l->cap = nc;
	}
	if (l->nlines)
		rules_buf_put(&l->b, "\n", 1);
	l->off[l->nlines++] = l->b.n;
	rules_buf_put(&l->b, s, n);
}

static void rules_lines_reset(struct rules_lines *l)
{
	l->b.n = 0;
	if (l->b.p)
		l->b.p[0] = '\0';
	l->nlines = 0;
}

static void rules_lines_free(struct rules_lines *l)
{
	free(l->b.p);
	free(l->off);
}

static inline void rules_line_at(const struct rules_lines *l, size_t i, const char **s,
    size_t *n)
{
	size_t e = i + 1 < l->nlines ? l->off[i + 1] - 1 : l->b.n;

	*s = l->b.p + l->off[i];
	*n = e - l->off[i];
}

struct rules_hfield {
	const char *name; size_t nlen;
	const char *raw; size_t rlen;   /* value as received (folded), no final line break */
	char *unfolded;                 /* lazily */
	char *decoded;                  /* lazily (RFC 2047) */
};

struct rules_scratch {
	struct match_scratch *ms;
	struct timespec deadline;
	bool over_budget;
	bool prefilter;
	bool bayes;                     /* score set 2 */
	const struct match_multi *prepared[RULE_NKINDS];
	double *values;  size_t nvalues;
	uint8_t *cand;   size_t ncand;
	struct rules_hfield *h; size_t nh, hcap;
	struct rules_lines body, rawbody, uris;
	struct rules_buf tmp, allhdr;
	bool allhdr_done;
};

struct rules_scratch *rules_scratch_new(const struct rules_set *rs)
{
	struct rules_scratch *sc = calloc(1, sizeof(*sc));
	size_t maxk = 1;

	if (sc == NULL)
		return NULL;
	sc->prefilter = true;
	sc->ms = match_scratch_new();
	if (sc->ms == NULL)
		goto fail;
	for (int k = 0; k < RULE_NKINDS; k++) {
		if (rs->nkind[k] > maxk)
			maxk = rs->nkind[k];
	}
	sc->values = calloc(rs->n + 1, sizeof(double));
	sc->nvalues = rs->n;
	sc->cand = calloc(maxk, 1);
	sc->ncand = maxk;
	if (sc->values == NULL || sc->cand == NULL)
		goto fail;
	return sc;
fail:
	rules_scratch_free(sc);
	return NULL;
}

static void rules_scratch_clear_headers(struct rules_scratch *sc)
{
	for (size_t i = 0; i < sc->nh; i++) {
		free(sc->h[i].unfolded);
		free(sc->h[i].decoded);
	}
	sc->nh = 0;
}

void rules_scratch_free(struct rules_scratch *sc)
{
	if (sc == NULL)
		return;
	match_scratch_free(sc->ms);
	free(sc->values);
	free(sc->cand);
	rules_scratch_clear_headers(sc);
	free(sc->h);
	rules_lines_free(&sc->body);
	rules_lines_free(&sc->rawbody);
	rules_lines_free(&sc->uris);
	free(sc->tmp.p);
	free(sc->allhdr.p);
	free(sc);
}

void rules_scratch_set_prefilter(struct rules_scratch *sc, bool on) { sc->prefilter = on; }
void rules_scratch_set_bayes(struct rules_scratch *sc, bool on) { sc->bayes = on; }

/* ---------------------------------------------------------------- message views */

/* Splits the header block into fields. Returns the offset where the body starts. */
static size_t rules_parse_headers(struct rules_scratch *sc, const char *m, size_t len)
{
	size_t i = 0;

	rules_scratch_clear_headers(sc);
	while (i < len) {
		size_t ls = i, colon, ve;

		if (m[i] == '\n')
			return i + 1;
		if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')
			return i + 2;
		/* one logical field: this line plus continuation lines */
		colon = i;
		while (colon < len && m[colon] != ':' && m[colon] != '\n')
			colon++;
		ve = colon;
		for (;;) {
			while (ve < len && m[ve] != '\n')
				ve++;
			if (ve + 1 < len && (m[ve + 1] == ' ' || m[ve + 1] == '\t')) {
				ve++;
				continue;
			}
			break;
		}
		i = ve < len ? ve + 1 : len;
		if (colon >= len || m[colon] != ':' || colon == ls) {
			if (ls == 0 && len >= 5 && strncmp(m, "From ", 5) == 0)
				continue;     /* mbox separator */
			continue;         /* not a header line: SA would end headers; keep going */
		}
		if (sc->nh == sc->hcap) {
			size_t nc = sc->hcap ? sc->hcap * 2 : 32;
			struct rules_hfield *h = realloc(sc->h, nc * sizeof(*h));

			if (h == NULL)
				abort();
			sc->h = h;
			sc->hcap = nc;
		}
		{
			struct rules_hfield *f = &sc->h[sc->nh++];
			size_t vs = colon + 1, e = ve;

			f->name = m + ls;
			f->nlen = colon - ls;
			while (f->nlen && (f->name[f->nlen - 1] == ' ' || f->name[f->nlen - 1] == '\t'))
				f->nlen--;
			while (vs < e && (m[vs] == ' ' || m[vs] == '\t'))
				vs++;
			while (e > vs && (m[e - 1] == '\r' || m[e - 1] == '\n'))
				e--;
			f->raw = m + vs;
			f->rlen = e > vs ? e - vs : 0;
			f->unfolded = NULL;
			f->decoded = NULL;
		}
		if (sc->nh >= 1000)
			break;
	}
	return len;
}

static const char *rules_hfield_unfolded(struct rules_hfield *f)
{
	if (f->unfolded == NULL) {
		char *d = malloc(f->rlen + 1);
		size_t o = 0;

		if (d == NULL)
			abort();
		for (size_t i = 0; i < f->rlen; i++)
			if (f->raw[i] != '\r' && f->raw[i] != '\n')
				d[o++] = f->raw[i];
		d[o] = '\0';
		f->unfolded = d;
	}
	return f->unfolded;
}

static const char *rules_hfield_decoded(struct rules_hfield *f)
{
	if (f->decoded == NULL) {
		const char *u = rules_hfield_unfolded(f);

		f->decoded = strstr(u, "=?") ? mime_decode_header(u) : rules_xstrdup(u);
	}
	return f->decoded;
}

static bool rules_name_is(const struct rules_hfield *f, const char *name)
{
	size_t n = strlen(name);

	return f->nlen == n && strncasecmp(f->name, name, n) == 0;
}

/* :addr — the first address of a value: inside <>, else the first word with '@'. */
static void rules_sel_addr(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *gt;

	if (lt && (gt = strchr(lt, '>')) != NULL) {
		rules_buf_put(out, lt + 1, (size_t)(gt - lt - 1));
		return;
	}
	while (*v) {
		const char *b;

		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		b = v;
		while (*v && *v != ' ' && *v != '\t' && *v != ',')
			v++;
		if (memchr(b, '@', (size_t)(v - b)) || *v == '\0') {
			while (b < v && (*b == '(' || *b == '"'))
				b++;
			rules_buf_put(out, b, (size_t)(v - b));
			return;
		}
	}
}

/* :name — the display name: before <> (unquoted), else a (comment). */
static void rules_sel_name(const char *v, struct rules_buf *out)
{
	const char *lt = strchr(v, '<'), *b, *e;

	if (lt) {
		b = v;
		e = lt;
	} else if ((b = strchr(v, '(')) != NULL && (e = strchr(b, ')')) != NULL) {
		b++;
	} else {
		return;
	}
	while (b < e && (*b == ' ' || *b == '\t' || *b == '"'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '"'))
		e--;
	rules_buf_put(out, b, (size_t)(e - b));
}

/* Builds the value a header rule sees in sc->tmp; returns false when the header is unset. */
static bool rules_header_value(struct rules_scratch *sc, const char *hdr,
    enum rule_hdr_sel sel, const struct rules_envelope *envl)
{
	const char *names[4] = { hdr, NULL, NULL, NULL };
	bool found = false;

	sc->tmp.n = 0;
	rules_buf_put(&sc->tmp, "", 0);
	if (strcmp(hdr, "ALL") == 0) {
		for (size_t i = 0; i < sc->nh; i++) {
			rules_buf_put(&sc->tmp, sc->h[i].name, sc->h[i].nlen);
			rules_buf_put(&sc->tmp, ": ", 2);
			if (sel == HDR_SEL_RAW)
				rules_buf_put(&sc->tmp, sc->h[i].raw, sc->h[i].rlen);
			else {
				const char *v = rules_hfield_decoded(&sc->h[i]);

				rules_buf_put(&sc->tmp, v, strlen(v));
			}
			rules_buf_put(&sc->tmp, "\n", 1);
		}
		return sc->nh > 0;
	}
	if (strcasecmp(hdr, "EnvelopeFrom") == 0) {
		if (envl == NULL || envl->mail_from == NULL)
			return false;
		rules_buf_put(&sc->tmp, envl->mail_from, strlen(envl->mail_from));
		return true;
	}
	if (strcmp(hdr, "ToCc") == 0) {
		names[0] = "To";
		names[1] = "Cc";
	} else if (strcmp(hdr, "MESSAGEID") == 0) {
		names[0] = "Message-Id";
		names[1] = "Resent-Message-Id";
		names[2] = "X-Message-Id";
	}
	for (size_t i = 0; i < sc->nh; i++) {
		const char *v;
		bool match = false;

		for (int k = 0; names[k]; k++)
			if (rules_name_is(&sc->h[i], names[k]))
				match = true;
		if (!match)
			continue;
		v = sel == HDR_SEL_RAW ? rules_hfield_unfolded(&sc->h[i]) :
		    rules_hfield_decoded(&sc->h[i]);
		if (sel == HDR_SEL_ADDR || sel == HDR_SEL_NAME) {
			/* SA: the first header's first address / name */
			if (found)
				continue;
			if (sel == HDR_SEL_ADDR)
				rules_sel_addr(v, &sc->tmp);
			else
				rules_sel_name(v, &sc->tmp);
			found = true;
			continue;
		}
		/* SA joins repeated headers; each value keeps its trailing newline */
		rules_buf_put(&sc->tmp, v, strlen(v));
		rules_buf_put(&sc->tmp, "\n", 1);
		found = true;
	}
	return found;
}

/* Adds text as SA's rendered body: paragraphs (split at blank lines) with whitespace runs
 * collapsed to one space, long paragraphs split near RULES_LINE_SPLIT at a space. */
static void rules_body_add_text(struct rules_lines *l, struct rules_buf *tmp, const char *t,
    size_t n)
{
	size_t i = 0;

	while (i < n) {
		bool sp = false;
		int nl = 0;

		tmp->n = 0;
		rules_buf_put(tmp, "", 0);
		for (; i < n; i++) {
			char c = t[i];

			if (c == '\n') {
				nl++;
				sp = true;
				continue;
			}
			if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
				sp = true;
				continue;
			}
			if (nl >= 2 && tmp->n > 0)
				break;      /* blank line: paragraph ends */
			nl = 0;
			if (sp && tmp->n > 0)
				rules_buf_put(tmp, " ", 1);
			sp = false;
			rules_buf_put(tmp, &c, 1);
			if (tmp->n >= RULES_LINE_SPLIT && (i + 1 >= n || isspace((unsigned char)t[i + 1]))) {
				i++;
				break;
			}
		}
		if (tmp->n)
			rules_lines_add(l, tmp->p, tmp->n);
	}
}

static void rules_rawbody_add(struct rules_lines *l, const char *t, size_t n)
{
	size_t i = 0;

	while (i < n) {
		const char *nl = memchr(t + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - t) : n, le = e;

		if (le > i && t[le - 1] == '\r')
			le--;
		rules_lines_add(l, t + i, le - i);
		i = e + 1;
	}
}

static void rules_uri_cb(const char *uri, size_t len, void *arg)
{
	uri_add(arg, uri, len);
}

/* Decodes the body once per message into body/rawbody/uri lines. */
static void rules_build_body(struct rules_scratch *sc, const char *msg, size_t len,
    bool want_uri)
{
	struct mime_result mr;
	struct uri_list ul = { .max = 1000 };

	rules_lines_reset(&sc->body);
	rules_lines_reset(&sc->rawbody);
	rules_lines_reset(&sc->uris);
	/* SA puts the Subject first in the body text */
	for (size_t i = 0; i < sc->nh; i++)
		if (rules_name_is(&sc->h[i], "Subject")) {
			const char *s = rules_hfield_decoded(&sc->h[i]);

			rules_body_add_text(&sc->body, &sc->tmp, s, strlen(s));
			break;
		}
	mime_parse(msg, len, NULL, &mr);
	for (size_t p = 0; p < mr.nparts; p++) {
		struct mime_text *t = &mr.parts[p];

		rules_rawbody_add(&sc->rawbody, t->text, t->len);
		if (t->html) {
			size_t rl;
			char *r = mime_html_to_text(t->text, t->len, &rl, want_uri ? rules_uri_cb :
			    NULL, &ul);

			rules_body_add_text(&sc->body, &sc->tmp, r, rl);
			if (want_uri)
				uri_extract_text(&ul, r, rl);
			free(r);
		} else {
			rules_body_add_text(&sc->body, &sc->tmp, t->text, t->len);
			if (want_uri)
				uri_extract_text(&ul, t->text, t->len);
		}
	}
	for (size_t i = 0; i < ul.n; i++)
		rules_lines_add(&sc->uris, ul.v[i], strlen(ul.v[i]));
	uri_list_free(&ul);
	/* mimeheader rules see part headers; keep them in the result's lifetime */
	sc->allhdr.n = 0;
	rules_buf_put(&sc->allhdr, "", 0);
	for (size_t i = 0; i < mr.nhdrs; i++) {
		rules_buf_put(&sc->allhdr, mr.hdrs[i].name, strlen(mr.hdrs[i].name));
		rules_buf_put(&sc->allhdr, "\0", 1);
		rules_buf_put(&sc->allhdr, mr.hdrs[i].value, strlen(mr.hdrs[i].value));
		rules_buf_put(&sc->allhdr, "\0", 1);
	}
	mime_result_free(&mr);
}

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

static int rules_match_lines(const struct rules_rule *x, const struct rules_lines *l,
    struct match_scratch *ms)
{
	int max = rules_max_hits(x), n = 0;

	for (size_t i = 0; i < l->nlines && n < max; i++) {
		const char *s;
		size_t len;
		int r;

		rules_line_at(l, i, &s, &len);
		r = match_re_exec(x->re, s, len, ms, max - n);
		if (r > 0)
			n += r;
	}
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

		if (sc->cand[j] && !rules_over_budget(sc))
			sc->values[i] = rules_match_lines(&rs->r[i], l, sc->ms);
	}
}

static void rules_scan_mimeheaders(const struct rules_set *rs, struct rules_scratch *sc)
{
	for (size_t j = 0; j < rs->nkind[RULE_MIMEHEADER]; j++) {
		size_t i = rs->kind_idx[RULE_MIMEHEADER][j];
		const struct rules_rule *x = &rs->r[i];
		const char *p = sc->allhdr.p, *end = p + sc->allhdr.n;
		bool hit = false, seen = false;

		while (p && p < end) {
			const char *name = p, *val = name + strlen(name) + 1;

			p = val + strlen(val) + 1;
			if (strcasecmp(name, x->hdr) != 0)
				continue;
			seen = true;
			if (x->sel == HDR_SEL_EXISTS) {
				hit = true;
				break;
			}
			if ((match_re_exec(x->re, val, strlen(val), sc->ms, 1) > 0) != x->negate) {
				hit = true;
				break;
			}
		}
		if (!seen && x->negate)
			hit = true;
		sc->values[i] = hit;
	}
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

static int rules_hit_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rules_hit *)a)->name, ((const struct rules_hit *)b)->name);
}

int rules_set_scan(const struct rules_set *rs, struct rules_scratch *sc, const char *msg,
    size_t len, const struct rules_envelope *envl, const struct hook_env *env,
    size_t max_body, struct rules_result *res)
{
	size_t body_off;
	bool body = max_body == 0 || len <= max_body;

	memset(res, 0, sizeof(*res));
	memset(sc->values, 0, rs->n * sizeof(double));
	rules_budget_start(sc);
	body_off = rules_parse_headers(sc, msg, len);
	(void)body_off;
	/* header rules */
	for (size_t j = 0; j < rs->nkind[RULE_HEADER]; j++) {
		size_t i = rs->kind_idx[RULE_HEADER][j];
		const struct rules_rule *x = &rs->r[i];
		bool set = rules_header_value(sc, x->hdr, x->sel == HDR_SEL_EXISTS ? HDR_SEL_VALUE :
		    x->sel, envl);
		const char *v = sc->tmp.p;
		size_t vl = sc->tmp.n;

		if (x->sel == HDR_SEL_EXISTS) {
			sc->values[i] = set;
			continue;
		}
		if (rules_over_budget(sc))
			break;
		if (!set) {
			if (x->if_unset) {
				v = x->if_unset;
				vl = strlen(v);
			} else {
				v = "";
				vl = 0;
			}
		}
		sc->values[i] = (match_re_exec(x->re, v, vl, sc->ms, 1) > 0) != x->negate;
	}
	/* envelope rules */
	for (size_t j = 0; j < rs->nkind[RULE_ENVELOPE]; j++) {
		size_t i = rs->kind_idx[RULE_ENVELOPE][j];

		sc->values[i] = rules_env_match(&rs->r[i], sc, envl);
	}
	if (body) {
		rules_build_body(sc, msg, len, rs->nkind[RULE_URI] > 0);
		rules_scan_lines(rs, sc, RULE_BODY, &sc->body);
		rules_scan_lines(rs, sc, RULE_RAWBODY, &sc->rawbody);
		rules_scan_lines(rs, sc, RULE_URI, &sc->uris);
		rules_scan_mimeheaders(rs, sc);
		for (size_t j = 0; j < rs->nkind[RULE_FULL]; j++) {
			size_t i = rs->kind_idx[RULE_FULL][j];
			const struct rules_rule *x = &rs->r[i];
			int r = match_re_exec(x->re, msg, len, sc->ms, rules_max_hits(x));

			sc->values[i] = r > 0 ? r : 0;
		}
	} else {
		res->body_skipped = true;
	}
	res->over_budget = sc->over_budget;
	/* symbols from other modules (and the classifier's BAYES_xx, defined as eval rules) */
	if (env) {
		for (size_t i = 0; i < rs->n; i++)
			if ((rs->r[i].kind == RULE_SYMBOL || !rs->r[i].active) &&
			    hook_env_find_symbol(env, rs->r[i].name))
				sc->values[i] = 1;
	}
	/* SA: a rule scoring 0 in the score set in use does not run */
	for (size_t i = 0; i < rs->n; i++) {
		const struct rules_rule *x = &rs->r[i];

		if (x->scoring && x->kind != RULE_SYMBOL && x->action == RULE_ACT_NONE &&
		    (sc->bayes ? x->score_bayes : x->score) == 0)
			sc->values[i] = 0;
	}
	/* metas, dependencies first */
	for (size_t m = 0; m < rs->nmeta; m++) {
		size_t i = rs->meta_order[m];
		double v = meta_eval(rs->r[i].meta, sc->values);

		sc->values[i] = v != 0 ? (v > 0 ? v : 1) : 0;
	}
	/* collect hits */
	for (size_t i = 0; i < rs->n; i++) {
		struct rules_rule *x = (struct rules_rule *)&rs->r[i];
		struct rules_hit *h;

		if (sc->values[i] == 0 || !x->active || x->kind == RULE_SYMBOL)
			continue;
		atomic_fetch_add_explicit(&x->hits, 1, memory_order_relaxed);
		if (!x->scoring || (x->action == RULE_ACT_NONE &&
		    (sc->bayes ? x->score_bayes : x->score) == 0))
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
		h->score = (sc->bayes ? x->score_bayes : x->score) * h->count;
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

void rules_result_free(struct rules_result *res)
{
	free(res->v);
	memset(res, 0, sizeof(*res));
}

/* ---------------------------------------------------------------- generations */

/* One compiled set per config generation, shared by its workers. */
struct rules_gen { const struct mx_config *cfg; struct rules_set *rs; int users; };

static pthread_mutex_t rules_gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rules_gen rules_gens[8];
static struct rules_set *rules_current;   /* newest, for counters */

static struct rules_set *rules_gen_acquire(const struct mx_config *cfg)
{
	struct rules_set *rs = NULL;
	struct rules_gen *free_slot = NULL;

	pthread_mutex_lock(&rules_gen_lock);
	for (size_t i = 0; i < sizeof(rules_gens) / sizeof(rules_gens[0]); i++) {
		if (rules_gens[i].cfg == cfg && rules_gens[i].rs) {
			rules_gens[i].users++;
			rs = rules_set_ref(rules_gens[i].rs);
			goto out;
		}
		if (rules_gens[i].rs == NULL && free_slot == NULL)
			free_slot = &rules_gens[i];
	}
	{
		const struct rules_config *rc = &cfg->rules;
		struct rules_stats st;
		int nerr;

		nerr = rules_set_load_mode((const char *const *)rc->files.v, rc->files.n, &rs, NULL,
		    RULES_PREFILTER_ASYNC);
		if (rs == NULL)
			goto out;
		rules_set_get_stats(rs, &st);
		log_event(nerr ? LOG_LVL_WARNING : LOG_LVL_INFO, NULL,
		    "event=rules_loaded files=%zu compiled=%zu skipped=%zu skipped_eval=%zu "
		    "skipped_net=%zu skipped_regex=%zu skipped_zero=%zu prefiltered=%zu errors=%zu",
		    st.files, st.compiled, st.skipped_total, st.skipped[SKIP_EVAL],
		    st.skipped[SKIP_NET], st.skipped[SKIP_REGEX], st.skipped[SKIP_ZERO],
		    st.prefiltered, st.errors);
		if (free_slot) {
			free_slot->cfg = cfg;
			free_slot->rs = rules_set_ref(rs);
			free_slot->users = 1;
		}
		if (rules_current)
			rules_set_free(rules_current);
		rules_current = rules_set_ref(rs);
	}
out:
	pthread_mutex_unlock(&rules_gen_lock);
	return rs;
}

static void rules_gen_release(const struct mx_config *cfg, struct rules_set *rs)
{
	pthread_mutex_lock(&rules_gen_lock);
	for (size_t i = 0; i < sizeof(rules_gens) / sizeof(rules_gens[0]); i++)
		if (rules_gens[i].cfg == cfg && rules_gens[i].rs == rs) {
			if (--rules_gens[i].users == 0) {
				rules_set_free(rules_gens[i].rs);
				rules_gens[i].rs = NULL;
				rules_gens[i].cfg = NULL;
			}
			break;
		}
	pthread_mutex_unlock(&rules_gen_lock);
	rules_set_free(rs);
}

void rules_set_foreach_counter(const struct rules_set *rs, rules_counter_cb cb, void *arg)
{
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].active && rs->r[i].scoring && rs->r[i].kind != RULE_SYMBOL)
			cb(rs->r[i].name, atomic_load_explicit(&rs->r[i].hits, memory_order_relaxed),
			    arg);
}

void rules_foreach_counter(rules_counter_cb cb, void *arg)
{
	struct rules_set *rs;

	pthread_mutex_lock(&rules_gen_lock);
	rs = rules_current ? rules_set_ref(rules_current) : NULL;
	pthread_mutex_unlock(&rules_gen_lock);
	if (rs == NULL)
		return;
	rules_set_foreach_counter(rs, cb, arg);
	rules_set_free(rs);
}

/* ---------------------------------------------------------------- the hook module */

/* Per worker and generation. Scans run in libuv's thread pool (a big or hostile message
 * must not stall the worker's event loop), each with a scratch from a small pool. A job in
 * flight holds a reference, so the worker state outlives a retired generation's
 * worker_free until its last job completes. refs is touched on the loop thread only. */
struct rules_worker {
	const struct mx_config *cfg;
	struct rules_set *rs;
	struct actions_thresholds th;
	struct bayes *bayes;            /* the classifier, when rules.bayes.enabled */
	int refs;
	pthread_mutex_t lock;           /* the scratch pool, taken from pool threads */
	struct rules_scratch *pool[16];
	int npool;
};

static void rules_worker_unref(struct rules_worker *w)
{
	if (--w->refs > 0)
		return;
	for (int i = 0; i < w->npool; i++)
		rules_scratch_free(w->pool[i]);
	pthread_mutex_destroy(&w->lock);
	rules_gen_release(w->cfg, w->rs);
	bayes_free(w->bayes);
	free(w);
}

static struct rules_scratch *rules_worker_take_scratch(struct rules_worker *w)
{
	struct rules_scratch *sc = NULL;

	pthread_mutex_lock(&w->lock);
	if (w->npool > 0)
		sc = w->pool[--w->npool];
	pthread_mutex_unlock(&w->lock);
	return sc ? sc : rules_scratch_new(w->rs);
}

static void rules_worker_give_scratch(struct rules_worker *w, struct rules_scratch *sc)
{
	pthread_mutex_lock(&w->lock);
	if (w->npool < (int)(sizeof(w->pool) / sizeof(w->pool[0]))) {
		w->pool[w->npool++] = sc;
		sc = NULL;
	}
	pthread_mutex_unlock(&w->lock);
	rules_scratch_free(sc);
}

static int rules_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker,
    void **wstate)
{
	const struct rules_config *rc = &cfg->rules;
	struct rules_worker *w;

	*wstate = NULL;
	if (rc->files.n == 0 || !rc->bayes.enabled)
		bayes_set_current(NULL);     /* POST /learn: the newest generation has none */
	if (rc->files.n == 0)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->refs = 1;
	pthread_mutex_init(&w->lock, NULL);
	w->rs = rules_gen_acquire(cfg);
	if (w->rs == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=rules_init_failed worker=%d", worker);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return -1;
	}
	w->th.add_header = rc->actions.add_header;
	w->th.tempfail = rc->actions.tempfail;
	w->th.reject = rc->actions.reject;
	w->th.required = rc->required_score > 0 ? rc->required_score :
	    rc->actions.add_header > 0 ? rc->actions.add_header : 5.0;
	if (rc->bayes.enabled) {
		char err[256];

		/* a store that cannot be opened leaves the classifier out, logged */
		w->bayes = bayes_acquire(&rc->bayes, err, sizeof(err));
		if (w->bayes == NULL)
			log_event(LOG_LVL_ERROR, NULL, "event=bayes_error worker=%d reason=\"%s\"",
			    worker, err);
	}
	*wstate = w;
	return 0;
}

static void rules_worker_free(void *wstate)
{
	if (wstate)
		rules_worker_unref(wstate);
}

static unsigned rules_stages(void *wstate)
{
	return 1u << HOOK_EOM;
}

static int rules_sym_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Re-scores symbols of other modules that a rule file gives a `score` line. */
static void rules_rescore_symbols(const struct rules_set *rs, struct hook_env *env,
    size_t ours_from)
{
	for (size_t i = 0; i < ours_from; i++) {
		struct hook_symbol *s = &env->symbols[i];

		for (size_t k = 0; k < rs->n; k++)
			if (rs->r[k].kind == RULE_SYMBOL && rs->r[k].has_score &&
			    strcmp(rs->r[k].name, s->name) == 0) {
				env->score += rs->r[k].score - s->score;
				s->score = rs->r[k].score;
				break;
			}
	}
}

static void rules_add_headers(struct hook_env *env, double total, double required)
{
	size_t n = env->nsymbols, k = 0;
	const char **names = calloc(n + 1, sizeof(char *));
	const char **snames = calloc(n + 1, sizeof(char *));
	double *scores = calloc(n + 1, sizeof(double));
	char sbuf[32];
	size_t cap = 64 * (n + 4) + 256;
	char *buf = malloc(cap);

	if (!names || !snames || !scores || !buf)
		abort();
	for (size_t i = 0; i < n; i++)
		names[k++] = env->symbols[i].name;
	qsort(names, k, sizeof(char *), rules_sym_cmp);
	/* drop duplicates (a symbol set twice is listed once, as SA does) */
	{
		size_t o = 0;

		for (size_t i = 0; i < k; i++)
			if (o == 0 || strcmp(names[o - 1], names[i]) != 0)
				names[o++] = names[i];
		k = o;
	}
	for (size_t i = 0; i < k; i++) {
		snames[i] = names[i];
		scores[i] = 0;
		for (size_t j = 0; j < n; j++)
			if (strcmp(env->symbols[j].name, names[i]) == 0)
				scores[i] += env->symbols[j].score;
	}
	actions_format_score(sbuf, sizeof(sbuf), total);
	hook_env_add_header(env, "X-Spam-Score", sbuf);
	actions_format_status(buf, cap, total, required, names, k);
	hook_env_add_header(env, "X-Spam-Status", buf);
	if (k) {
		actions_format_symbols(buf, cap, snames, scores, k);
		hook_env_add_header(env, "X-Spam-Symbols", buf);
	}
	free(names);
	free(snames);
	free(scores);
	free(buf);
}

/* One scan in the thread pool: copies of everything it reads, so the session may go away
 * (session_free marks the job cancelled) while the scan runs. */
struct rules_job {
	uv_work_t req;
	struct rules_worker *w;
	struct hook_call *call;
	struct hook_env *env;          /* NULL once cancelled */
	int slot;
	char *msg; size_t len; size_t max_size;
	char *helo, *mail_from, *rdns, *client_ip;
	char **rcpts; size_t nrcpts;
	struct sockaddr_storage client;
	struct hook_env ext;           /* other modules' symbols (names only) */
	struct rules_result res;
	struct bayes_result bayes;
	bool failed;
};

static char *rules_dup_or_null(const char *s)
{
	return s ? rules_xstrdup(s) : NULL;
}

static void rules_job_free(struct rules_job *j)
{
	free(j->msg);
	free(j->helo); free(j->mail_from); free(j->rdns); free(j->client_ip);
	for (size_t i = 0; i < j->nrcpts; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j->ext.symbols);
	rules_result_free(&j->res);
	free(j);
}

/* The classifier's verdict for the job (pool thread); its BAYES_xx names join the other
 * modules' symbols so metas see them. A store error costs the symbol, not the message. */
static void rules_classify(struct rules_job *j)
{
	const char *names[2], *descs[2];
	double scores[2];
	size_t k;
	struct hook_symbol *v;

	bayes_classify(j->w->bayes, j->msg, j->len, &j->bayes);
	k = bayes_symbols(&j->bayes, names, scores, descs);
	if (k == 0)
		return;
	v = realloc(j->ext.symbols, (j->ext.nsymbols + k) * sizeof(*v));
	if (v == NULL)
		return;
	j->ext.symbols = v;
	for (size_t i = 0; i < k; i++) {
		memset(&v[j->ext.nsymbols], 0, sizeof(*v));
		snprintf(v[j->ext.nsymbols].name, sizeof(v->name), "%s", names[i]);
		j->ext.nsymbols++;
	}
}

static void rules_work_cb(uv_work_t *req)
{
	struct rules_job *j = req->data;
	struct rules_envelope envl = { .helo = j->helo, .mail_from = j->mail_from,
		.rdns = j->rdns, .client_ip = j->client_ip,
		.rcpts = (const char *const *)j->rcpts, .nrcpts = j->nrcpts,
		.client = (const struct sockaddr *)&j->client };
	struct rules_scratch *sc = rules_worker_take_scratch(j->w);

	if (sc == NULL) {
		j->failed = true;
		return;
	}
	if (j->w->bayes)
		rules_classify(j);
	rules_scratch_set_bayes(sc, j->bayes.available);
	rules_set_scan(j->w->rs, sc, j->msg, j->len, &envl, &j->ext, j->max_size, &j->res);
	rules_worker_give_scratch(j->w, sc);
}

/* The classifier's symbols with their score in the set (a rule file's score set 2 value,
 * else SpamAssassin's stock one). Returns their sum. */
static double rules_add_bayes(const struct rules_set *rs, struct hook_env *env,
    const struct bayes_result *br)
{
	const char *names[2], *descs[2];
	double scores[2], sum = 0;
	size_t k = bayes_symbols(br, names, scores, descs);

	for (size_t i = 0; i < k; i++) {
		for (size_t r = 0; r < rs->n; r++)
			if (rs->r[r].has_score && strcmp(rs->r[r].name, names[i]) == 0) {
				scores[i] = rs->r[r].score_bayes;
				break;
			}
		hook_env_add_symbol(env, names[i], scores[i], descs[i]);
		sum += scores[i];
	}
	return sum;
}

/* Back on the loop thread: symbols, total, verdict, headers, log line. *learn: the
 * autolearn decision (bayes_autolearn_decide). */
static void rules_apply(struct rules_worker *w, struct hook_env *env, struct hook_call *call,
    struct rules_result *res, const struct bayes_result *br, int *learn)
{
	const struct rules_config *rc = &env->cfg->rules;
	struct verdict v;
	const char *act;
	double total = 0, bayes_score = 0;
	char tests[512], sbuf[32], bbuf[64] = "";
	size_t to = 0;

	rules_rescore_symbols(w->rs, env, env->nsymbols);
	if (br->scanned) {
		bayes_score = rules_add_bayes(w->rs, env, br);
		snprintf(bbuf, sizeof(bbuf), " bayes=%.4f", br->prob);
	} else if (w->bayes) {
		snprintf(bbuf, sizeof(bbuf), " bayes=%s", br->why ? br->why : "none");
	}
	for (size_t i = 0; i < res->n; i++)
		hook_env_add_symbol(env, res->v[i].name, res->v[i].score, res->v[i].desc);
	for (size_t i = 0; i < env->nsymbols; i++)
		total += env->symbols[i].score;
	/* never learn from the classifier's own verdict: its score is left out */
	*learn = w->bayes ? bayes_autolearn_decide(&rc->bayes, total - bayes_score) : -1;
	act = actions_decide(&w->th, total, res->action, res->action_rule, &v);
	tests[0] = '\0';
	for (size_t i = 0; i < env->nsymbols && to + 1 < sizeof(tests); i++) {
		int n = snprintf(tests + to, sizeof(tests) - to, "%s%s", i ? "," : "",
		    env->symbols[i].name);

		if (n < 0 || (size_t)n >= sizeof(tests) - to)
			break;
		to += (size_t)n;
	}
	actions_format_score(sbuf, sizeof(sbuf), total);
	if (total >= w->th.required)   /* spam as X-Spam-Status says it: for reputation */
		env->flags |= HOOK_FLAG_SPAM;
	if (rc->mode == RULES_MODE_LOG) {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=rules score=%s required=%.1f action=%s%s tests=%s%s%s%s", sbuf,
		    w->th.required, act, v.action != VERDICT_CONTINUE ? "(dry-run)" : "",
		    tests[0] ? tests : "none", res->body_skipped ? " body=skipped" : "", bbuf,
		    *learn < 0 ? "" : *learn ? " autolearn=spam" : " autolearn=ham");
		verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	} else {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=rules score=%s required=%.1f action=%s tests=%s%s%s%s%s", sbuf,
		    w->th.required, act, tests[0] ? tests : "none",
		    res->body_skipped ? " body=skipped" : "",
		    res->over_budget ? " scan=over_budget" : "", bbuf,
		    *learn < 0 ? "" : *learn ? " autolearn=spam" : " autolearn=ham");
	}
	if (rc->headers && (v.action == VERDICT_CONTINUE || v.action == VERDICT_ACCEPT ||
	    v.action == VERDICT_QUARANTINE))
		rules_add_headers(env, total, w->th.required);
	if (v.action == VERDICT_QUARANTINE)
		snprintf(env->quarantine_reason, sizeof(env->quarantine_reason),
		    "rules: %s score=%s", res->action_rule ? res->action_rule : "", sbuf);
	hook_call_done(call, v.action == VERDICT_CONTINUE ? NULL : &v);
}

/* Autolearn in the pool: the message (owned) is learned as cls, the job holds a reference
 * to the classifier. */
struct rules_learn_job { uv_work_t req; struct bayes *b; char *msg; size_t len; int cls; };

static void rules_learn_work_cb(uv_work_t *req)
{
	struct rules_learn_job *l = req->data;

	if (bayes_learn(l->b, l->msg, l->len, l->cls ? BAYES_SPAM : BAYES_HAM, NULL) < 0)
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error op=autolearn");
}

static void rules_learn_after_cb(uv_work_t *req, int status)
{
	struct rules_learn_job *l = req->data;

	bayes_free(l->b);
	free(l->msg);
	free(l);
}

/* Takes j's message for an autolearn job on loop. */
static void rules_autolearn_start(struct rules_worker *w, uv_loop_t *loop, struct rules_job *j,
    int cls)
{
	struct rules_learn_job *l = calloc(1, sizeof(*l));

	if (l == NULL || loop == NULL)
		goto fail;
	l->b = bayes_ref(w->bayes);
	l->msg = j->msg;
	l->len = j->len;
	l->cls = cls;
	l->req.data = l;
	j->msg = NULL;
	if (uv_queue_work(loop, &l->req, rules_learn_work_cb, rules_learn_after_cb) == 0)
		return;
	j->msg = l->msg;
	bayes_free(l->b);
fail:
	free(l);
}

static void rules_after_work_cb(uv_work_t *req, int status)
{
	struct rules_job *j = req->data;
	struct rules_worker *w = j->w;

	if (j->env != NULL) {
		j->env->module_ctx[j->slot] = NULL;
		if (status != 0 || j->failed) {
			struct verdict v;

			verdict_set(&v, VERDICT_TEMPFAIL, 451, "rules",
			    "4.3.0 content check failed, try again later");
			hook_call_done(j->call, &v);
		} else {
			uv_loop_t *loop = j->env->loop;
			int learn = -1;

			rules_apply(w, j->env, j->call, &j->res, &j->bayes, &learn);
			if (learn >= 0)
				rules_autolearn_start(w, loop, j, learn);
		}
	}
	rules_job_free(j);
	rules_worker_unref(w);
}

static void rules_run(void *wstate, int slot, struct hook_call *call)
{
	struct rules_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct rules_job *j;
	const char *data;
	size_t len;

	if (hook_call_stage(call) != HOOK_EOM || env->msg == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	data = msgbuf_data(env->msg, &len);
	j = calloc(1, sizeof(*j));
	if (data == NULL || j == NULL || (j->msg = malloc(len + 1)) == NULL) {
		struct verdict v;

		free(j);
		verdict_set(&v, VERDICT_TEMPFAIL, 451, "rules", "4.3.0 cannot read message");
		hook_call_done(call, &v);
		return;
	}
	memcpy(j->msg, data, len);
	j->msg[len] = '\0';
	j->len = len;
	j->max_size = env->cfg->rules.max_size;
	j->w = w;
	j->call = call;
	j->env = env;
	j->slot = slot;
	j->helo = rules_dup_or_null(env->helo);
	j->mail_from = rules_dup_or_null(env->mail_from);
	j->rdns = rules_dup_or_null(env->client_name);
	j->client_ip = rules_dup_or_null(env->client_ip);
	j->client = env->client;
	if (env->nrcpts) {
		j->rcpts = calloc(env->nrcpts, sizeof(char *));
		if (j->rcpts == NULL)
			abort();
		for (size_t i = 0; i < env->nrcpts; i++)
			j->rcpts[i] = rules_dup_or_null(env->rcpts[i].addr ? env->rcpts[i].addr : "");
		j->nrcpts = env->nrcpts;
	}
	if (env->nsymbols) {
		j->ext.symbols = calloc(env->nsymbols, sizeof(*j->ext.symbols));
		if (j->ext.symbols == NULL)
			abort();
		for (size_t i = 0; i < env->nsymbols; i++)
			memcpy(j->ext.symbols[i].name, env->symbols[i].name,
			    sizeof(j->ext.symbols[i].name));
		j->ext.nsymbols = env->nsymbols;
	}
	j->req.data = j;
	w->refs++;
	if (env->loop == NULL ||
	    uv_queue_work(env->loop, &j->req, rules_work_cb, rules_after_work_cb) != 0) {
		/* no loop (tests) or the pool refused: scan right here */
		rules_work_cb(&j->req);
		rules_after_work_cb(&j->req, 0);
		return;
	}
	env->module_ctx[slot] = j;
}

/* The session goes away with a scan in flight: its result is dropped. */
static void rules_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rules_job *j = env->module_ctx[slot];

	if (j) {
		j->env = NULL;
		env->module_ctx[slot] = NULL;
	}
}

static uint64_t rules_timeout_ms(void *wstate) { return 0; }
static enum verdict_action rules_on_error(void *wstate) { return VERDICT_TEMPFAIL; }

const struct hook_module rules_module = {
	.name = "rules",
	.flags = HOOK_MODULE_SCORER,
	.worker_init = rules_worker_init,
	.worker_free = rules_worker_free,
	.stages = rules_stages,
	.run = rules_run,
	.session_free = rules_session_free,
	.timeout_ms = rules_timeout_ms,
	.on_error = rules_on_error,
};

/* ---------------------------------------------------------------- config */

static const char *const rules_mode_choices[] = { "enforce", "log", NULL };

static const struct cfg_field rules_actions_fields[] = {
	{ "add_header", CFG_DOUBLE, offsetof(struct rules_actions_config, add_header), "5",
	  -1000, 100000, .doc = "score from which X-Spam-Status says Yes (0 = off)" },
	{ "tempfail", CFG_DOUBLE, offsetof(struct rules_actions_config, tempfail), "0",
	  -1000, 100000, .doc = "score from which the message gets 451 4.7.1 (0 = off)" },
	{ "reject", CFG_DOUBLE, offsetof(struct rules_actions_config, reject), "0",
	  -1000, 100000, .doc = "score from which the message gets 550 5.7.1 (0 = off)" },
	{ .key = NULL }
};

static const struct cfg_table rules_actions_table = {
	"rules.actions", sizeof(struct rules_actions_config), rules_actions_fields, NULL
};

static const struct cfg_field rules_fields[] = {
	{ "files", CFG_STRLIST, offsetof(struct rules_config, files), NULL,
	  .doc = "rule files (globs, each sorted; SpamAssassin syntax); empty = rules off" },
	{ "actions", CFG_STRUCT, offsetof(struct rules_config, actions), NULL,
	  .sub = &rules_actions_table, .doc = "score thresholds: add_header, tempfail, reject" },
	{ "mode", CFG_ENUM, offsetof(struct rules_config, mode), "enforce",
	  .choices = rules_mode_choices,
	  .doc = "enforce, or log: compute and log the action but only add headers" },
	{ "required_score", CFG_DOUBLE, offsetof(struct rules_config, required_score), "0",
	  0, 100000, .doc = "required= in X-Spam-Status (0 = actions.add_header, else 5)" },
	{ "max_size", CFG_SIZE, offsetof(struct rules_config, max_size), "2M",
	  .doc = "bigger messages get header and envelope rules only" },
	{ "headers", CFG_BOOL, offsetof(struct rules_config, headers), "true",
	  .doc = "add X-Spam-Score, X-Spam-Status, X-Spam-Symbols to delivered mail" },
	{ "bayes", CFG_STRUCT, offsetof(struct rules_config, bayes), NULL,
	  .sub = &bayes_config_table,
	  .doc = "the learning classifier: BAYES_00..BAYES_99 (docs/classifier.md)" },
	{ .key = NULL }
};

const struct cfg_table rules_config_table = {
	"rules", sizeof(struct rules_config), rules_fields, NULL
};
