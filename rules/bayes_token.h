/* bayes_token.h — the classifier's tokenizer: a message becomes a set of 64-bit token
 * hashes, SpamAssassin-style (Plugin/Bayes.pm's tokenize): words of the rendered body
 * text (GMime decoding and the HTML renderer of rules/mime.c), of the URLs (rules/uri.c)
 * and of selected headers ("H<name>:" prefixes, addresses split into user/domain parts,
 * Received lines stripped of ids and dates, IPs cut to /24), plus optional word pairs
 * (OSB-style, rspamd's idea) that give the classifier some context.
 *
 * No I/O; work is bounded (body text examined, tokens per region, unique tokens kept). */
#ifndef MX_BAYES_TOKEN_H
#define MX_BAYES_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bayes_token_opts {
	bool pairs;              /* add "P:a b" tokens for adjacent body words */
	/* Measured by cross-validation (bench/bayes_cv, docs/classifier.md "Tried and not
	 * adopted") and not adopted: no config key sets these; 0 is the daemon's tokenizer. */
	int window;              /* with pairs: rspamd's OSB window (3..5 words: "P:a b" for
	                          * adjacent words, "P2:".."P4:" with 1..3 words between) */
	int meta;                /* BAYES_META_*: structural "M:" tokens */
	int footer;              /* BAYES_FOOTER_*: body text after a list footer separator */
	char **ignore; size_t nignore;  /* header fields not tokenized (SA's
	                                 * bayes_ignore_header), lower case */
	size_t max_text;         /* body text bytes examined (0 = 512 KiB) */
	size_t max_tokens;       /* unique tokens kept (0 = 20000) */
};

/* bayes_token_opts.meta: rspamd-style meta tokens (size, header count and order, missing
 * MIME-Version / mailer / Message-ID, the Date's shape, the top Content-Type, leaf, text,
 * HTML, image, application and attachment part counts, URL count, HTML's text share);
 * the other bits leave one group out. */
enum {
	BAYES_META_ON = 1,
	BAYES_META_NO_ORDER = 2,     /* no "M:order:" (the order of From, To, Subject ...) */
	BAYES_META_NO_HTMLTEXT = 4,  /* no "M:htmltext<tenths>" */
	BAYES_META_NO_HDRS = 8,      /* no "M:hdrs<bucket>" (the header count) */
};

/* bayes_token_opts.footer: what becomes of body lines after a footer separator (a line
 * of 20 or more '_' or '=', "-- ", or one that says "unsubscribe") in a text part. */
enum {
	BAYES_FOOTER_KEEP = 0,       /* body text like the rest */
	BAYES_FOOTER_DROP = 1,       /* left out */
	BAYES_FOOTER_PREFIX = 2,     /* tokens with an "F:" prefix */
	BAYES_FOOTER_MODE = 3,       /* the bits above */
	BAYES_FOOTER_LAST20 = 4,     /* only a separator among the part's last 20 lines */
	BAYES_FOOTER_LISTS = 8,      /* only in mail with List-Id, List-Unsubscribe,
	                              * Mailing-List or X-Mailman-Version */
};

/* A message's tokens: sorted, unique hashes. */
struct bayes_tokens { uint64_t *v; size_t n, cap; bool truncated; };

/* Receives every token (before de-duplication) as bytes, not NUL-terminated. */
typedef void (*bayes_token_cb)(const char *tok, size_t len, void *arg);

/* Tokenizes msg (len bytes, a whole RFC 5322 message, CRLF or LF; a leading mbox
 * "From " line is skipped) and calls cb for each token. o may be NULL (defaults).
 * Returns the number of tokens emitted. */
size_t bayes_tokenize_cb(const char *msg, size_t len, const struct bayes_token_opts *o,
    bayes_token_cb cb, void *arg);

/* The same into *out (hashes, sorted and unique; free with bayes_tokens_free). Returns
 * out->n. */
size_t bayes_tokenize(const char *msg, size_t len, const struct bayes_token_opts *o,
    struct bayes_tokens *out);
void bayes_tokens_free(struct bayes_tokens *t);

/* The token hash stored in the database (stable across versions: changing it forgets
 * every learned message). */
uint64_t bayes_token_hash(const char *tok, size_t len);

/* Tokenizes one line the way body (region 1), URI (2) or header (0) text is, with prefix
 * before each token. For tests and for callers with their own text. */
void bayes_tokenize_line(const char *line, size_t len, const char *prefix, int region,
    bayes_token_cb cb, void *arg);

#endif
