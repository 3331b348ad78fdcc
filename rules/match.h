/* match.h — regular expressions for rules: PCRE2 (JIT) for every rule, plus an optional
 * multi-pattern prefilter (vectorscan/Hyperscan, when built with MX_HAVE_HYPERSCAN) that
 * scans a text once for all patterns of a rule kind and names the candidates; PCRE2 then
 * confirms only those, so results equal PCRE2-only matching.
 *
 * Compiled objects are read-only after building and shared by all worker threads; each
 * thread brings its own `struct match_scratch`. */
#ifndef MX_MATCH_H
#define MX_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct match_re;
struct match_multi;
struct match_scratch;

/* Flags as in rule_parse.h (RULE_RE_I/M/S/X), plus: */
#define MATCH_NO_PREFILTER 0x100u   /* keep this pattern out of the prefilter */
#define MATCH_PERL_CHECK   0x400u   /* a rule's pattern: also what Perl rejects and PCRE2
                                       takes (an unescaped "{" after an atom) is an error */
#define MATCH_NO_JIT       0x200u   /* used once: PCRE2's interpreter (JIT compiling costs
                                       far more than one short match; same results) */

/* Compiles a Perl-syntax regex with PCRE2 (byte mode, JIT when available). Returns 0 and
 * *out, or a negative code with a reason in err (errlen bytes): MATCH_ERR_SYNTAX for a
 * pattern Perl rejects too (unbalanced parentheses or brackets, a range out of order, a
 * quantifier after nothing, ...: SpamAssassin's "invalid regexp"), MATCH_ERR_LIMIT for one
 * PCRE2 cannot take whatever Perl says (too large or complex, a lookbehind of varying
 * length, Unicode-only features). */
#define MATCH_ERR_LIMIT  (-1)
#define MATCH_ERR_SYNTAX (-2)
int match_re_compile(const char *re, unsigned flags, struct match_re **out,
    char *err, size_t errlen);
void match_re_free(struct match_re *r);

/* Searches s[0..len). Returns 1 (match), 0 (none) or -1 (match limit hit: no match).
 * With max > 1 counts non-overlapping matches up to max and returns the count. */
int match_re_exec(const struct match_re *r, const char *s, size_t len,
    struct match_scratch *sc, int max);

/* match_re_exec that also reports, after each match, every named group the match set to a
 * non-empty string: cb(name, value, vlen, arg) (Perl's %- after a match, as SA's capture
 * rules read it). Same return values. */
typedef void (*match_named_cb)(const char *name, const char *v, size_t vlen, void *arg);
int match_re_exec_named(const struct match_re *r, const char *s, size_t len,
    struct match_scratch *sc, int max, match_named_cb cb, void *arg);

/* Searches s[0..len) from offset start for one match and reports its groups: ov[2k],
 * ov[2k+1] = start and end of group k (k < nov; SIZE_MAX when the group is unset).
 * Returns 1 (match), 0 (none) or -1 (match limit hit). */
int match_re_groups(const struct match_re *r, const char *s, size_t len, size_t start,
    struct match_scratch *sc, size_t *ov, int nov);

/* Per-thread working memory (PCRE2 match data and JIT stack with bounded limits, the
 * prefilter's scratch). NULL on out-of-memory. */
struct match_scratch *match_scratch_new(void);
void match_scratch_free(struct match_scratch *sc);

/* The prefilter library's self-test (once a process, before the first prefilter is built,
 * about 3 ms): the loaded libhs scans probes of the shapes libvectorscan 5.4.9 is
 * known to miss on AVX-512 (a.?b.?c... patterns after 63+ octets) and its answers are
 * compared with PCRE2's. ok false: the library missed `pattern` in `probe` (probe_len
 * octets); match_multi_build then builds nothing (every rule runs in PCRE2) and logs
 * event=rules_prefilter_off once. Without MX_HAVE_HYPERSCAN ok is true (no prefilter). The
 * result lives as long as the process. Thread-safe. */
struct match_selftest {
	bool ok;
	char version[96];    /* hs_version() of the library loaded */
	char pattern[64];    /* the probe's pattern (caseless) */
	char probe[96];      /* its text, described: 'x' x 63 octets + ' VIAGRA ' */
	size_t probe_len;
};
const struct match_selftest *match_prefilter_selftest(void);
/* Tests only: on, the next self-test takes the library's answer to every probe as a miss
 * (as a broken library); off, it runs again as it is. Either way the next build reruns it. */
void match_prefilter_selftest_inject_miss(bool on);

/* A prefilter over n patterns. Add patterns with ids 0..n-1, then build once. A pattern
 * the prefilter cannot take (or any pattern without MX_HAVE_HYPERSCAN) is reported as
 * "always a candidate". */
struct match_multi *match_multi_new(void);
void match_multi_free(struct match_multi *m);
void match_multi_add(struct match_multi *m, const char *re, unsigned flags, unsigned id);
/* Compiles the prefilter; 0 or -1 (then every pattern is always a candidate). */
int match_multi_build(struct match_multi *m);
/* Number of patterns the prefilter covers. */
size_t match_multi_covered(const struct match_multi *m);
/* Makes sc usable with m (allocates/grows the prefilter scratch). 0 or -1. */
int match_scratch_prepare(struct match_scratch *sc, const struct match_multi *m);
/* Sets cand[id] = 1 for every pattern that may match somewhere in text (a text made of
 * lines joined by '\n'; every pattern that matches inside one line is reported). cand has
 * one byte per id and is not cleared here. Returns 0, or -1 when the scan failed (then all
 * ids are marked). */
int match_multi_scan(const struct match_multi *m, const char *text, size_t len,
    struct match_scratch *sc, uint8_t *cand);

#endif
