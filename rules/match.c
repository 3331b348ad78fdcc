/* match.c — PCRE2 regexes and the vectorscan prefilter; see match.h. */
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include "match.h"

#include <ctype.h>
#include <stdbool.h>
#include "log.h"
#include "rule_parse.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef MX_HAVE_HYPERSCAN
#include <hs/hs.h>
#endif

/* Bounded work per match: SpamAssassin's rules are not all benign on hostile input. */
#define MATCH_LIMIT       200000
#define MATCH_DEPTH_LIMIT 5000
#define MATCH_HEAP_KB     4096

struct match_re { pcre2_code *code; bool jit; };

struct match_scratch {
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jstack;
#ifdef MX_HAVE_HYPERSCAN
	hs_scratch_t *hs;
#endif
};

/* PCRE2's compile errors that are its limits or features it lacks, not a pattern Perl
 * rejects too: sizes, nesting, internal errors, lookbehinds Perl 5.30+ takes, Unicode. */
static bool match_error_is_limit(int ec)
{
	switch (ec) {
	case PCRE2_ERROR_QUANTIFIER_TOO_BIG:
	case PCRE2_ERROR_PARENTHESES_NEST_TOO_DEEP:
	case PCRE2_ERROR_PATTERN_TOO_LARGE:
	case PCRE2_ERROR_HEAP_FAILED:
	case PCRE2_ERROR_INTERNAL_CODE_OVERFLOW:
	case PCRE2_ERROR_LOOKBEHIND_NOT_FIXED_LENGTH:
	case PCRE2_ERROR_INTERNAL_STUDY_ERROR:
	case PCRE2_ERROR_UNICODE_NOT_SUPPORTED:
	case PCRE2_ERROR_PARENTHESES_STACK_CHECK:
	case PCRE2_ERROR_LOOKBEHIND_TOO_COMPLICATED:
	case PCRE2_ERROR_UNICODE_PROPERTIES_UNAVAILABLE:
	case PCRE2_ERROR_SUBPATTERN_NAME_TOO_LONG:
	case PCRE2_ERROR_TOO_MANY_NAMED_SUBPATTERNS:
	case PCRE2_ERROR_INTERNAL_OVERRAN_WORKSPACE:
	case PCRE2_ERROR_INTERNAL_MISSING_SUBPATTERN:
	case PCRE2_ERROR_INTERNAL_UNKNOWN_NEWLINE:
	case PCRE2_ERROR_SUBPATTERN_NUMBER_TOO_BIG:
	case PCRE2_ERROR_INTERNAL_PARSED_OVERFLOW:
	case PCRE2_ERROR_INTERNAL_BAD_CODE_LOOKBEHINDS:
	case PCRE2_ERROR_UTF_IS_DISABLED:
	case PCRE2_ERROR_UCP_IS_DISABLED:
	case PCRE2_ERROR_INTERNAL_BAD_CODE_AUTO_POSSESS:
	case PCRE2_ERROR_QUERY_BARJX_NEST_TOO_DEEP:
	case PCRE2_ERROR_PATTERN_TOO_COMPLICATED:
	case PCRE2_ERROR_LOOKBEHIND_TOO_LONG:
	case PCRE2_ERROR_PATTERN_STRING_TOO_LONG:
	case PCRE2_ERROR_INTERNAL_BAD_CODE:
	case PCRE2_ERROR_INTERNAL_BAD_CODE_IN_SKIP:
	case PCRE2_ERROR_SUPPORTED_ONLY_IN_UNICODE:
	case PCRE2_ERROR_SCRIPT_RUN_NOT_AVAILABLE:
	case PCRE2_ERROR_TOO_MANY_CAPTURES:
		return true;
	default:
		return false;
	}
}

/* A valid Perl quantifier at p ("{n}", "{n,}", "{n,m}", "{,m}", spaces allowed): its
 * length, else 0. */
static size_t match_blanks(const char *p)
{
	return strspn(p, " \t");
}

static size_t match_perl_quant_len(const char *p)
{
	size_t i = 1, d1, d2 = 0;
	bool comma = false;

	i += match_blanks(p + i);
	d1 = strspn(p + i, "0123456789");
	i += d1;
	i += match_blanks(p + i);
	if (p[i] == ',') {
		comma = true;
		i++;
		i += match_blanks(p + i);
		d2 = strspn(p + i, "0123456789");
		i += d2;
		i += match_blanks(p + i);
	}
	if (p[i] != '}' || (d1 == 0 && (!comma || d2 == 0)))
		return 0;
	return i + 1;
}

/* Perl 5.36 (SpamAssassin's compile_regexp makes its warnings fatal) rejects a "{" that
 * follows an atom (a character, an escape, ".", a class, a group) and does not start a
 * quantifier: "Unescaped left brace in regex is passed through" or "is illegal here"; PCRE2
 * takes it as a literal. A "{" at the start, after "(", "|", "^", an inline "(?i)" or a
 * quantifier is a literal to Perl too. Returns the offset of the first such "{", or -1. */
static long match_perl_bad_brace(const char *re, unsigned flags)
{
	bool atom = false, xmode = (flags & RULE_RE_X) != 0;
	unsigned char nomod[64] = { 0 };   /* per open group: 1 = "(?flags)" (no atom) */
	size_t depth = 0;

	for (size_t i = 0; re[i]; i++) {
		char c = re[i];

		if (xmode && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'))
			continue;
		if (xmode && c == '#') {
			while (re[i + 1] && re[i + 1] != '\n')
				i++;
			continue;
		}
		if (c == '%' && re[i + 1] == '{' && isupper((unsigned char)re[i + 2])) {
			/* a capture template %{NAME} or %{NAME(args)}: SA escapes it before Perl
			 * compiles the pattern (Conf::Parser::parse_captures) */
			size_t j = i + 3;

			while (isupper((unsigned char)re[j]) || isdigit((unsigned char)re[j]) ||
			    re[j] == '_')
				j++;
			if (re[j] == '(')
				while (re[j] && re[j] != ')' && re[j] != '}')
					j++;
			if (re[j] == ')')
				j++;
			if (re[j] == '}') {
				i = j;
				atom = true;
				continue;
			}
		}
		switch (c) {
		case '\\':
			if (re[i + 1] == '\0')
				return -1;
			i++;
			if (strchr("xNpPgko", re[i]) && re[i + 1] == '{') {
				const char *e = strchr(re + i + 1, '}');

				if (e == NULL)
					return -1;
				i = (size_t)(e - re);
			} else if (re[i] == 'Q') {
				return -1;             /* \Q...\E: leave it to PCRE2 */
			}
			atom = true;
			break;
		case '[': {
			size_t j = i + 1;

			if (re[j] == '^')
				j++;
			if (re[j] == ']')
				j++;
			while (re[j] && re[j] != ']') {
				if (re[j] == '\\' && re[j + 1])
					j++;
				else if (re[j] == '[' && re[j + 1] == ':') {
					const char *e = strstr(re + j + 2, ":]");

					if (e)
						j = (size_t)(e - re) + 1;
				}
				j++;
			}
			if (re[j] == '\0')
				return -1;
			i = j;
			atom = true;
			break;
		}
		case '(':
			if (re[i + 1] == '?' && re[i + 2] == '#') {
				const char *e = strchr(re + i, ')');

				if (e == NULL)
					return -1;
				i = (size_t)(e - re);  /* a comment: transparent */
				break;
			}
			if (depth < sizeof(nomod)) {
				size_t j = i + 1;

				nomod[depth] = 0;
				if (re[j] == '?') {
					j++;
					while (isalpha((unsigned char)re[j]) || re[j] == '-' || re[j] == '^')
						j++;
					nomod[depth] = re[j] == ')';
				}
			}
			depth++;
			atom = false;
			break;
		case ')':
			if (depth > 0)
				depth--;
			atom = depth < sizeof(nomod) ? !nomod[depth] : true;
			break;
		case '|': case '^': case '$':
			atom = false;
			break;
		case '*': case '+': case '?':
			atom = false;
			break;
		case '{': {
			size_t q = match_perl_quant_len(re + i);

			if (q) {
				i += q - 1;
				atom = false;
			} else if (atom) {
				return (long)i;
			} else {
				atom = true;           /* a literal "{" is itself an atom */
			}
			break;
		}
		default:
			atom = true;
			break;
		}
	}
	return -1;
}

int match_re_compile(const char *re, unsigned flags, struct match_re **out,
    char *err, size_t errlen)
{
	uint32_t opts = 0;
	int ec;
	PCRE2_SIZE eo;
	struct match_re *r;

	*out = NULL;
	if (flags & RULE_RE_I) opts |= PCRE2_CASELESS;
	if (flags & RULE_RE_M) opts |= PCRE2_MULTILINE;
	if (flags & RULE_RE_S) opts |= PCRE2_DOTALL;
	if (flags & RULE_RE_X) opts |= PCRE2_EXTENDED;
	if (flags & MATCH_PERL_CHECK) {
		long bad = match_perl_bad_brace(re, flags);

		if (bad >= 0) {
			snprintf(err, errlen, "regex at offset %ld: unescaped left brace, which Perl "
			    "rejects (write \\{)", bad);
			return MATCH_ERR_SYNTAX;
		}
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		abort();
	r->code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, opts, &ec, &eo, NULL);
	if (r->code == NULL) {
		PCRE2_UCHAR msg[160];

		pcre2_get_error_message(ec, msg, sizeof(msg));
		snprintf(err, errlen, "regex at offset %zu: %s", (size_t)eo, (char *)msg);
		free(r);
		return match_error_is_limit(ec) ? MATCH_ERR_LIMIT : MATCH_ERR_SYNTAX;
	}
	r->jit = !(flags & MATCH_NO_JIT) && pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
	*out = r;
	return 0;
}

void match_re_free(struct match_re *r)
{
	if (r == NULL)
		return;
	pcre2_code_free(r->code);
	free(r);
}

int match_re_exec(const struct match_re *r, const char *s, size_t len,
    struct match_scratch *sc, int max)
{
	PCRE2_SIZE off = 0;
	int n = 0;

	if (max < 1)
		max = 1;
	while (n < max && off <= len) {
		int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, off, 0, sc->md, sc->mctx);
		PCRE2_SIZE *ov;

		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return n ? n : -1;
		n++;
		ov = pcre2_get_ovector_pointer(sc->md);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

int match_re_exec_named(const struct match_re *r, const char *s, size_t len,
    struct match_scratch *sc, int max, match_named_cb cb, void *arg)
{
	PCRE2_SIZE off = 0;
	PCRE2_SPTR table = NULL;
	uint32_t count = 0, esize = 0;
	int n = 0;

	if (pcre2_pattern_info(r->code, PCRE2_INFO_NAMECOUNT, &count) != 0 ||
	    pcre2_pattern_info(r->code, PCRE2_INFO_NAMEENTRYSIZE, &esize) != 0 ||
	    pcre2_pattern_info(r->code, PCRE2_INFO_NAMETABLE, &table) != 0)
		count = 0;
	if (max < 1)
		max = 1;
	while (n < max && off <= len) {
		int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, off, 0, sc->md, sc->mctx);
		PCRE2_SIZE *ov;
		uint32_t np;

		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return n ? n : -1;
		n++;
		ov = pcre2_get_ovector_pointer(sc->md);
		np = pcre2_get_ovector_count(sc->md);
		/* each entry: the group number (2 bytes, big-endian), then the name */
		for (uint32_t k = 0; k < count; k++) {
			PCRE2_SPTR e = table + (size_t)k * esize;
			uint32_t g = ((uint32_t)e[0] << 8) | e[1];

			if (g < np && (rc == 0 || g < (uint32_t)rc) && ov[2 * g] != PCRE2_UNSET &&
			    ov[2 * g + 1] > ov[2 * g])
				cb((const char *)e + 2, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g], arg);
		}
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

int match_re_groups(const struct match_re *r, const char *s, size_t len, size_t start,
    struct match_scratch *sc, size_t *ov, int nov)
{
	int rc;
	PCRE2_SIZE *pv;
	uint32_t np;

	if (start > len)
		return 0;
	rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, start, 0, sc->md, sc->mctx);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0)
		return -1;
	pv = pcre2_get_ovector_pointer(sc->md);
	np = pcre2_get_ovector_count(sc->md);
	for (int k = 0; k < nov; k++) {
		if ((uint32_t)k < np && (k < rc || rc == 0) && pv[2 * k] != PCRE2_UNSET) {
			ov[2 * k] = pv[2 * k];
			ov[2 * k + 1] = pv[2 * k + 1];
		} else {
			ov[2 * k] = ov[2 * k + 1] = SIZE_MAX;
		}
	}
	return 1;
}

struct match_scratch *match_scratch_new(void)
{
	struct match_scratch *sc = calloc(1, sizeof(*sc));

	if (sc == NULL)
		return NULL;
	sc->md = pcre2_match_data_create(32, NULL);
	sc->mctx = pcre2_match_context_create(NULL);
	sc->jstack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
	if (sc->md == NULL || sc->mctx == NULL || sc->jstack == NULL)
		goto fail;
	pcre2_set_match_limit(sc->mctx, MATCH_LIMIT);
	pcre2_set_depth_limit(sc->mctx, MATCH_DEPTH_LIMIT);
	pcre2_set_heap_limit(sc->mctx, MATCH_HEAP_KB);
	pcre2_jit_stack_assign(sc->mctx, NULL, sc->jstack);
	return sc;
fail:
	match_scratch_free(sc);
	return NULL;
}

void match_scratch_free(struct match_scratch *sc)
{
	if (sc == NULL)
		return;
	pcre2_match_data_free(sc->md);
	pcre2_match_context_free(sc->mctx);
	pcre2_jit_stack_free(sc->jstack);
#ifdef MX_HAVE_HYPERSCAN
	if (sc->hs)
		hs_free_scratch(sc->hs);
#endif
	free(sc);
}

/* ------------------------------------------------------- the library's self-test */

static pthread_mutex_t match_st_lock = PTHREAD_MUTEX_INITIALIZER;
static struct match_selftest match_st;       /* under match_st_lock */
static int match_st_done;                    /* 0: not run yet */
static bool match_st_inject;                 /* tests: every answer of the library a miss */
static atomic_bool match_st_logged;

#ifdef MX_HAVE_HYPERSCAN
/* libvectorscan 5.4.9 (Debian 12) on an AVX-512 CPU reports no match of a six-letter
 * a.?b.?c... pattern in about 78% of texts where it stands after 63 or more octets (the
 * 64-octet vector boundary; every mode and flag, fuzz_rules_scan's finding
 * prefilter_vectorscan_miss), while Intel's Hyperscan 5.4.0 with the same ABI hits them all.
 * A prefilter that misses a pattern drops a rule PCRE2 hits, so before the first database is
 * built the loaded library scans probes of those shapes — fill octets of lengths around the
 * boundary, then a needle — with the prefilter's own flags, and its answer is compared with
 * PCRE2's; on any miss no prefilter is built (every rule runs in PCRE2: the same results,
 * slower). Once a process: 3 patterns x 2 fills x 161 lengths; PCRE2 runs only where
 * the library says no. */
static const struct { const char *re; const char *needle; } match_probes[] = {
	{ "\\bV.?i.?a.?g.?r.?a\\b", " VIAGRA " },
	{ "c.?i.?a.?l.?i.?s", " Cialis " },
	{ "f.?r.?e.?e.?m", " freem " },
};
static const char *const match_probe_fills[] = { "x", "hello world... " };
#define MATCH_PROBE_MAXFILL 160

/* hs_scan's callback: marks the pattern id in the byte array ctx. */
static int match_on_hs_cb(unsigned int id, unsigned long long from, unsigned long long to,
    unsigned int flags, void *ctx)
{
	(void)from; (void)to; (void)flags;
	((uint8_t *)ctx)[id] = 1;
	return 0;
}

/* Runs the probes into match_st (ok, or the first miss). */
static void match_selftest_run(struct match_selftest *st)
{
	enum { NP = sizeof(match_probes) / sizeof(match_probes[0]) };
	pcre2_code *re[NP] = { 0 };
	hs_database_t *db[NP] = { 0 };
	pcre2_match_data *md = NULL;
	hs_scratch_t *hs = NULL;
	char text[MATCH_PROBE_MAXFILL + 16];
	bool ready;

	memset(st, 0, sizeof(*st));
	snprintf(st->version, sizeof(st->version), "%s", hs_version());
	for (size_t k = strlen(st->version); k > 0 && st->version[k - 1] == ' '; k--)
		st->version[k - 1] = '\0';     /* "5.4.9 ": a build without a date */
	md = pcre2_match_data_create(4, NULL);
	ready = md != NULL;
	for (unsigned i = 0; i < NP && ready; i++) {
		/* the flags match_multi_build gives a caseless rule; one database a pattern, the
		 * shape 5.4.9 misses in (the three in one database scan right here: whether a
		 * rule set's database misses depends on what else is in it) */
		unsigned f = HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY | HS_FLAG_SINGLEMATCH |
		    HS_FLAG_MULTILINE | HS_FLAG_CASELESS;
		hs_compile_error_t *cerr = NULL;
		int ec;
		PCRE2_SIZE eo;

		re[i] = pcre2_compile((PCRE2_SPTR)match_probes[i].re, PCRE2_ZERO_TERMINATED,
		    PCRE2_CASELESS, &ec, &eo, NULL);
		if (hs_compile(match_probes[i].re, f, HS_MODE_BLOCK, NULL, &db[i], &cerr) !=
		    HS_SUCCESS) {
			hs_free_compile_error(cerr);
			db[i] = NULL;
		}
		ready = re[i] != NULL && db[i] != NULL && hs_alloc_scratch(db[i], &hs) == HS_SUCCESS;
	}
	if (!ready) {
		snprintf(st->pattern, sizeof(st->pattern), "%s", "(self-test set-up)");
		snprintf(st->probe, sizeof(st->probe), "%s", "compiling the probes failed");
		goto out;
	}
	for (size_t f = 0; f < sizeof(match_probe_fills) / sizeof(match_probe_fills[0]); f++) {
		const char *fill = match_probe_fills[f];
		size_t fl_len = strlen(fill);

		for (size_t n = 0; n <= MATCH_PROBE_MAXFILL; n++) {
			for (unsigned i = 0; i < NP; i++) {
				size_t nl = strlen(match_probes[i].needle), len = n + nl;
				uint8_t hit = 0;

				for (size_t k = 0; k < n; k++)
					text[k] = fill[k % fl_len];
				memcpy(text + n, match_probes[i].needle, nl);
				if (hs_scan(db[i], text, (unsigned)len, 0, hs, match_on_hs_cb, &hit) !=
				    HS_SUCCESS || match_st_inject)
					hit = 0;
				if (!hit && pcre2_match(re[i], (PCRE2_SPTR)text, len, 0, 0, md, NULL) > 0) {
					snprintf(st->pattern, sizeof(st->pattern), "%s", match_probes[i].re);
					snprintf(st->probe, sizeof(st->probe), "'%s' x %zu octets + '%s'",
					    fill, n, match_probes[i].needle);
					st->probe_len = len;
					goto out;
				}
			}
		}
	}
	st->ok = true;
out:
	hs_free_scratch(hs);
	pcre2_match_data_free(md);
	for (unsigned i = 0; i < NP; i++) {
		hs_free_database(db[i]);
		pcre2_code_free(re[i]);
	}
}

/* Logs the failed self-test, once a process (every rule set of a reload meets it again). */
static void match_selftest_log(const struct match_selftest *st)
{
	char v[128], p[96], q[160];

	if (atomic_exchange(&match_st_logged, true))
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=rules_prefilter_off hs_version=%s pattern=%s "
	    "probe=%s probe_len=%zu reason=\"the loaded libhs missed a match PCRE2 finds: the "
	    "prefilter is off, every rule runs in PCRE2 (same results, slower)\"",
	    log_val(v, sizeof(v), st->version), log_val(p, sizeof(p), st->pattern),
	    log_val(q, sizeof(q), st->probe), st->probe_len);
}
#endif

const struct match_selftest *match_prefilter_selftest(void)
{
	pthread_mutex_lock(&match_st_lock);
	if (!match_st_done) {
#ifdef MX_HAVE_HYPERSCAN
		match_selftest_run(&match_st);
#else
		memset(&match_st, 0, sizeof(match_st));
		match_st.ok = true;     /* no library, no prefilter: nothing to fail */
#endif
		match_st_done = 1;
	}
	pthread_mutex_unlock(&match_st_lock);
	return &match_st;
}

void match_prefilter_selftest_inject_miss(bool on)
{
	pthread_mutex_lock(&match_st_lock);
	match_st_inject = on;
	match_st_done = 0;
	pthread_mutex_unlock(&match_st_lock);
	atomic_store(&match_st_logged, false);
}

/* ---------------------------------------------------------------- prefilter */

struct match_multi {
	char **re; unsigned *flags; unsigned *ids; size_t n, cap;
	uint8_t *always;      /* by id: not covered by the prefilter */
	size_t nids;
	size_t covered;
#ifdef MX_HAVE_HYPERSCAN
	hs_database_t *db;
#endif
};

struct match_multi *match_multi_new(void)
{
	return calloc(1, sizeof(struct match_multi));
}

void match_multi_free(struct match_multi *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->re[i]);
	free(m->re);
	free(m->flags);
	free(m->ids);
	free(m->always);
#ifdef MX_HAVE_HYPERSCAN
	if (m->db)
		hs_free_database(m->db);
#endif
	free(m);
}

void match_multi_add(struct match_multi *m, const char *re, unsigned flags, unsigned id)
{
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;

		m->re = realloc(m->re, nc * sizeof(*m->re));
		m->flags = realloc(m->flags, nc * sizeof(*m->flags));
		m->ids = realloc(m->ids, nc * sizeof(*m->ids));
		if (!m->re || !m->flags || !m->ids)
			abort();
		m->cap = nc;
	}
	m->re[m->n] = strdup(re);
	if (m->re[m->n] == NULL)
		abort();
	m->flags[m->n] = flags;
	m->ids[m->n] = id;
	m->n++;
	if (id + 1 > m->nids)
		m->nids = id + 1;
}

size_t match_multi_covered(const struct match_multi *m) { return m->covered; }

#ifdef MX_HAVE_HYPERSCAN      /* what goes into the prefilter: used by match_multi_build's libhs part */
/* True when re uses an assertion whose meaning changes once lines are joined into one
 * buffer (\A \z \Z \G): such a pattern could miss in the joined scan, so PCRE2 always
 * runs it. */
static bool match_has_buffer_anchor(const char *re)
{
	for (const char *p = re; *p; p++) {
		if (*p != '\\')
			continue;
		p++;
		if (*p == 'A' || *p == 'z' || *p == 'Z' || *p == 'G')
			return true;
		if (*p == '\0')
			break;
	}
	return false;
}

/* Vectorscan compile time explodes on large bounded repeats, long alternations of
 * character-class soup (SpamAssassin's ReplaceTags rules) and back references; such
 * patterns stay PCRE2-only so that building a set takes seconds, not minutes. */
static bool match_is_cheap_for_hs(const char *re, unsigned flags)
{
	size_t len = strlen(re);

	if (flags & MATCH_NO_PREFILTER)
		return false;
	if (len > 600)
		return false;
	for (const char *p = re; *p; p++) {
		if (*p == '\\') {
			if (p[1] >= '1' && p[1] <= '9')
				return false;
			if (p[1])
				p++;
			continue;
		}
		if (*p == '{') {
			char *e;
			long a = strtol(p + 1, &e, 10), b = a;

			if (e == p + 1)
				continue;
			if (*e == ',') {
				const char *q = e + 1;

				b = *q == '}' ? 1000 : strtol(q, &e, 10);
			}
			if (a > 30 || b > 30)
				return false;
		}
	}
	return true;
}
#endif

int match_multi_build(struct match_multi *m)
{
	m->always = calloc(m->nids ? m->nids : 1, 1);
	if (m->always == NULL)
		abort();
	for (size_t i = 0; i < m->n; i++)
		m->always[m->ids[i]] = 1;
	m->covered = 0;
#ifdef MX_HAVE_HYPERSCAN
	{
		const struct match_selftest *st = match_prefilter_selftest();

		if (!st->ok) {
			match_selftest_log(st);
			return -1;
		}
	}
	{
		const char **exprs = calloc(m->n + 1, sizeof(char *));
		unsigned *fl = calloc(m->n + 1, sizeof(unsigned));
		unsigned *ids = calloc(m->n + 1, sizeof(unsigned));
		char **own = calloc(m->n + 1, sizeof(char *));
		size_t k = 0;
		hs_compile_error_t *cerr = NULL;
		int tries = 0;

		if (!exprs || !fl || !ids || !own)
			abort();
		for (size_t i = 0; i < m->n; i++) {
			unsigned f = HS_FLAG_PREFILTER | HS_FLAG_ALLOWEMPTY | HS_FLAG_SINGLEMATCH |
			    HS_FLAG_MULTILINE;
			hs_expr_info_t *info = NULL;
			char *e;

			if (match_has_buffer_anchor(m->re[i]) ||
			    !match_is_cheap_for_hs(m->re[i], m->flags[i]))
				continue;
			if (m->flags[i] & RULE_RE_I) f |= HS_FLAG_CASELESS;
			if (m->flags[i] & RULE_RE_S) f |= HS_FLAG_DOTALL;
			if (m->flags[i] & RULE_RE_X) {
				/* Hyperscan has no /x flag; the inline form is parsed */
				if (asprintf(&e, "(?x)%s", m->re[i]) < 0)
					abort();
			} else {
				e = strdup(m->re[i]);
				if (e == NULL)
					abort();
			}
			if (hs_expression_info(e, f, &info, &cerr) != HS_SUCCESS) {
				hs_free_compile_error(cerr);
				cerr = NULL;
				free(e);
				continue;
			}
			free(info);
			exprs[k] = e;
			own[k] = e;
			fl[k] = f;
			ids[k] = m->ids[i];
			k++;
		}
		/* A pattern may still fail in the combined compile ("too large"): drop it and
		 * retry a bounded number of times. */
		while (k > 0 && tries++ < 32) {
			if (hs_compile_multi(exprs, fl, ids, (unsigned)k, HS_MODE_BLOCK, NULL, &m->db,
			    &cerr) == HS_SUCCESS)
				break;
			m->db = NULL;
			if (cerr->expression < 0 || (size_t)cerr->expression >= k) {
				hs_free_compile_error(cerr);
				cerr = NULL;
				k = 0;
				break;
			}
			{
				size_t x = (size_t)cerr->expression;

				free(own[x]);
				memmove(&exprs[x], &exprs[x + 1], (k - x - 1) * sizeof(*exprs));
				memmove(&own[x], &own[x + 1], (k - x - 1) * sizeof(*own));
				memmove(&fl[x], &fl[x + 1], (k - x - 1) * sizeof(*fl));
				memmove(&ids[x], &ids[x + 1], (k - x - 1) * sizeof(*ids));
				k--;
			}
			hs_free_compile_error(cerr);
			cerr = NULL;
		}
		if (m->db) {
			for (size_t i = 0; i < k; i++)
				m->always[ids[i]] = 0;
			m->covered = k;
		}
		for (size_t i = 0; i < k; i++)
			free(own[i]);
		free(own);
		free(exprs);
		free(fl);
		free(ids);
		return m->db ? 0 : -1;
	}
#else
	return -1;
#endif
}

int match_scratch_prepare(struct match_scratch *sc, const struct match_multi *m)
{
#ifdef MX_HAVE_HYPERSCAN
	if (m->db && hs_alloc_scratch(m->db, &sc->hs) != HS_SUCCESS)
		return -1;
#endif
	return 0;
}

int match_multi_scan(const struct match_multi *m, const char *text, size_t len,
    struct match_scratch *sc, uint8_t *cand)
{
	for (size_t i = 0; i < m->nids; i++)
		if (m->always[i])
			cand[i] = 1;
#ifdef MX_HAVE_HYPERSCAN
	if (m->db) {
		if (sc->hs == NULL || len > 0xffffffffu ||
		    hs_scan(m->db, text, (unsigned)len, 0, sc->hs, match_on_hs_cb, cand) !=
		    HS_SUCCESS) {
			memset(cand, 1, m->nids);
			return -1;
		}
	}
#endif
	return 0;
}
