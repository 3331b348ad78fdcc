/* bayes_learn.c — `mxgate -c FILE learn spam|ham PATH...`: teaches the classifier offline
 * from files, maildirs (cur/ and new/) and mbox files, into the store rules.bayes names
 * (whether or not the daemon has the classifier enabled yet, and while it runs: LMDB and
 * Redis both take a second process). See bayes_learn.h. */
#include "bayes_learn.h"
#include "rules.h"
#include "store/store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct learn_run {
	struct bayes *b;
	enum bayes_class cls;
	uint64_t max_size;
	FILE *err;                      /* may be NULL */
	struct bayes_learn_counts n;
	unsigned long files;
};

static void learn_one(struct learn_run *r, const char *msg, size_t len, const char *where)
{
	enum bayes_learn_result res;

	/* an mbox separator is not part of the message */
	if (len > 5 && strncmp(msg, "From ", 5) == 0) {
		const char *nl = memchr(msg, '\n', len);
		size_t skip = nl ? (size_t)(nl - msg) + 1 : len;

		msg += skip;
		len -= skip;
	}
	{
		size_t k = 0;       /* blank: nothing to learn, not a message without tokens */

		while (k < len && isspace((unsigned char)msg[k]))
			k++;
		if (k == len)
			return;
	}
	if (r->max_size && len > r->max_size) {
		r->n.skipped++;
		return;
	}
	if (r->n.store_failed)
		return;
	if (bayes_learn(r->b, msg, len, r->cls, &res) < 0) {
		/* A store that failed once (a silent or refusing Redis, a full LMDB map, its
		 * write lock held past the timeout) fails the next message too, each after up
		 * to rules.bayes.timeout: stop here rather than wait that for every message. */
		if (r->err)
			fprintf(r->err, "mxgate: learn: %s: store error: stopped, the rest not tried\n",
			    where);
		r->n.errors++;
		r->n.store_failed = true;
		return;
	}
	switch (res) {
	case BAYES_LEARNED: r->n.learned++; break;
	case BAYES_ALREADY: r->n.already++; break;
	case BAYES_MOVED: r->n.moved++; break;
	case BAYES_OPPOSITE: r->n.already++; break;   /* not from bayes_learn */
	}
}

/* Matches pat at s (up to e): 'S' a non-space, 'd' a digit, 'o' an optional character
 * (not a line end), anything else itself. Small fixed patterns: bounded recursion. */
static bool learn_from_pat(const char *s, const char *e, const char *pat)
{
	for (; *pat; pat++, s++) {
		if (*pat == 'o')
			return (s < e && *s != '\n' && learn_from_pat(s + 1, e, pat + 1)) ||
			    learn_from_pat(s, e, pat + 1);
		if (s >= e)
			return false;
		if (*pat == 'S' ? isspace((unsigned char)*s) :
		    *pat == 'd' ? !isdigit((unsigned char)*s) : *s != *pat)
			return false;
	}
	return true;
}

/* A mbox separator at p (a line start), as SpamAssassin's ArchiveIterator knows one:
 * /^From \S+  ?(\S\S\S \S\S\S .?\d .?\d:\d\d:\d\d \d{4}|.?\d-\d\d-\d{4}_\d\d:\d\d:\d\d_)/
 * ("From sender@example.org  Mon Jan  1 00:00:01 2024"): a body line that merely starts
 * with "From " is not one. */
static bool learn_from_line(const char *p, const char *e)
{
	const char *nl = memchr(p, '\n', (size_t)(e - p));

	if (nl)
		e = nl;
	if (e - p < 6 || strncmp(p, "From ", 5) != 0)
		return false;
	p += 5;
	if (p >= e || isspace((unsigned char)*p))
		return false;
	while (p < e && !isspace((unsigned char)*p))
		p++;
	if (p >= e || *p++ != ' ')
		return false;
	if (p < e && *p == ' ')
		p++;
	return learn_from_pat(p, e, "SSS SSS od od:dd:dd dddd") ||
	    learn_from_pat(p, e, "od-dd-dddd_dd:dd:dd_");
}

/* Does buf[k..end) hold a line that mboxrd quoting made (">From ", ">>From ", ...)? */
static bool learn_quoted(const char *buf, size_t k, size_t end)
{
	while (k < end) {
		const char *nl = memchr(buf + k, '\n', end - k);
		size_t le = nl ? (size_t)(nl - buf) + 1 : end, q = k;

		while (q < le && buf[q] == '>')
			q++;
		if (q > k && q + 5 <= le && strncmp(buf + q, "From ", 5) == 0)
			return true;
		k = le;
	}
	return false;
}

/* Splits an mbox at its separator lines (learn_from_line: with or without a blank line
 * before, as SpamAssassin) and undoes the mboxrd quoting of ">From " lines. A message
 * without a quoted line is learned where it is in buf; one with is copied unquoted, into
 * a buffer as big as the biggest such message, not the whole mbox. */
static void learn_mbox(struct learn_run *r, const char *buf, size_t len, const char *where)
{
	size_t start = 0, i = 0, cap = 0;
	char *msg = NULL;

	while (start < len && !r->n.store_failed) {
		size_t end = len, o = 0;

		/* the next separator */
		for (i = start + 1; i + 5 <= len; i++)
			if (buf[i - 1] == '\n' && learn_from_line(buf + i, buf + len)) {
				end = i;
				break;
			}
		if (!learn_quoted(buf, start, end)) {
			learn_one(r, buf + start, end - start, where);
			start = end;
			continue;
		}
		if (end - start > cap) {
			char *nm = realloc(msg, end - start);

			if (nm == NULL) {
				r->n.errors++;
				start = end;
				continue;
			}
			msg = nm;
			cap = end - start;
		}
		for (size_t k = start; k < end;) {
			const char *nl = memchr(buf + k, '\n', end - k);
			size_t le = nl ? (size_t)(nl - buf) + 1 : end, q = k;

			while (q < le && buf[q] == '>')
				q++;
			if (q > k && q + 5 <= le && strncmp(buf + q, "From ", 5) == 0)
				k++;                      /* ">From " -> "From " */
			memcpy(msg + o, buf + k, le - k);
			o += le - k;
			k = le;
		}
		learn_one(r, msg, o, where);
		start = end;
	}
	free(msg);
}

static int learn_read(const char *path, char **buf, size_t *len, uint64_t max)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	size_t n;

	if (f == NULL)
		return -1;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		errno = EINVAL;
		return -1;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (*buf == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(*buf, 1, (size_t)st.st_size, f);
	fclose(f);
	(*buf)[n] = '\0';
	*len = n;
	(void)max;
	return 0;
}

/* One file's content: an mbox (it starts with a "From " line; its messages, its separator
 * lines stripped), or one message. */
static void learn_content(struct learn_run *r, const char *buf, size_t len, const char *where)
{
	if (len > 5 && strncmp(buf, "From ", 5) == 0)
		learn_mbox(r, buf, len, where);
	else
		learn_one(r, buf, len, where);
}

void bayes_learn_buffer(struct bayes *b, enum bayes_class cls, const char *buf, size_t len,
    uint64_t max_size, const char *where, FILE *err, struct bayes_learn_counts *n)
{
	struct learn_run r = { .b = b, .cls = cls, .max_size = max_size, .err = err, .n = *n };

	learn_content(&r, buf, len, where);
	*n = r.n;
}

void bayes_learn_summary(char *buf, size_t size, enum bayes_class cls,
    const struct bayes_learn_counts *n)
{
	bool spam = cls == BAYES_SPAM;

	snprintf(buf, size, "learned %lu %s (%lu already known, %lu moved from %s, %lu too big), "
	    "%lu errors%s", n->learned + n->moved, spam ? "spam" : "ham", n->already, n->moved,
	    spam ? "ham" : "spam", n->skipped, n->errors,
	    n->store_failed ? "; stopped at a store error, the rest not tried" : "");
}

static void learn_file(struct learn_run *r, const char *path)
{
	char *buf;
	size_t len;

	if (learn_read(path, &buf, &len, r->max_size) < 0) {
		fprintf(r->err, "mxgate: learn: %s: %s\n", path, strerror(errno));
		r->n.errors++;
		return;
	}
	r->files++;
	learn_content(r, buf, len, path);
	free(buf);
}

static int learn_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void learn_path(struct learn_run *r, const char *path, int depth);

/* A maildir (it has cur/ or new/): only those two hold mail — tmp/ holds messages being
 * written, and beside them are the IMAP server's own files (dovecot-uidlist,
 * dovecot.index*, courierimapuiddb, maildirfolder, ...). Maildir++ subfolders (.Sent/)
 * are left to be named. False when path is not a maildir. */
static bool learn_maildir(struct learn_run *r, const char *path, int depth)
{
	static const char *const subs[] = { "cur", "new" };
	char *p[2] = { NULL, NULL };
	bool any = false;

	for (int i = 0; i < 2; i++) {
		struct stat st;

		if (asprintf(&p[i], "%s/%s", path, subs[i]) < 0) {
			p[i] = NULL;
			continue;
		}
		if (stat(p[i], &st) == 0 && S_ISDIR(st.st_mode))
			any = true;
		else {
			free(p[i]);
			p[i] = NULL;
		}
	}
	for (int i = 0; i < 2; i++) {
		if (p[i])
			learn_path(r, p[i], depth + 1);
		free(p[i]);
	}
	return any;
}

/* A directory: a maildir (learn_maildir), else every file in it (sorted), recursively;
 * dot files are skipped. Anything else but a regular file is an error. */
static void learn_path(struct learn_run *r, const char *path, int depth)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (r->n.store_failed)
		return;
	if (stat(path, &st) < 0) {
		fprintf(r->err, "mxgate: learn: %s: %s\n", path, strerror(errno));
		r->n.errors++;
		return;
	}
	if (S_ISREG(st.st_mode)) {
		learn_file(r, path);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		/* a FIFO, socket or device: opening a FIFO would wait for a writer */
		fprintf(r->err, "mxgate: learn: %s: not a regular file or directory\n", path);
		r->n.errors++;
		return;
	}
	if (depth > 8)
		return;
	if (learn_maildir(r, path, depth))
		return;
	d = opendir(path);
	if (d == NULL) {
		fprintf(r->err, "mxgate: learn: %s: %s\n", path, strerror(errno));
		r->n.errors++;
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **x = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(char *));

			if (x == NULL)
				break;
			names = x;
		}
		if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0)
			break;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(char *), learn_name_cmp);
	for (size_t i = 0; i < n; i++) {
		learn_path(r, names[i], depth + 1);
		free(names[i]);
	}
	free(names);
}

int bayes_learn_main(const struct bayes_config *c, const struct cfg_strlist *files, int argc,
    char **argv, FILE *out, FILE *err)
{
	struct learn_run r = { .err = err };
	struct bayes_totals t;
	char ebuf[256];
	struct bayes_config cc = *c;

	if (argc < 3 || (strcmp(argv[1], "spam") != 0 && strcmp(argv[1], "ham") != 0)) {
		fprintf(err, "usage: mxgate -c FILE learn spam|ham PATH...\n");
		return 2;
	}
	r.cls = strcmp(argv[1], "spam") == 0 ? BAYES_SPAM : BAYES_HAM;
	r.max_size = c->max_learn_size;
	cc.enabled = true;
	cc.one_shot = true;
	r.b = bayes_open(&cc, ebuf, sizeof(ebuf));
	/* a Redis store opens without a connect (the daemon's loop opens it): connect now, so
	 * that a wrong address is this command's error before it reads a file */
	if (r.b != NULL && bayes_check(r.b, ebuf, sizeof(ebuf)) < 0) {
		bayes_free(r.b);
		r.b = NULL;
	}
	if (r.b == NULL) {
		fprintf(err, "mxgate: learn: store %s: %s\n", c->store ? c->store : "?", ebuf);
		return 1;
	}
	{
		/* tokens as the daemon makes them: the bayes_ignore_header lines of the rule
		 * files, read by the rule parser (its conditionals, its errors on err) */
		struct rule_src *src = files && files->n ? rules_src_read((const char *const *)files->v,
		    files->n, err) : NULL;
		size_t n = 0;
		const char *const *names = src ? rule_src_ignore_headers(src, &n) : NULL;

		bayes_ignore_headers_load(r.b, names, n);
		rule_src_free(src);
	}
	for (int i = 2; i < argc; i++)
		learn_path(&r, argv[i], 0);
	bayes_learn_summary(ebuf, sizeof(ebuf), r.cls, &r.n);
	fprintf(out, "%s\n", ebuf);
	/* after a store failure the totals would wait the timeout again, for nothing */
	if (!r.n.store_failed && bayes_totals(r.b, &t) == 0) {
		char toks[48];

		/* Redis keeps no token count (its keys expire on their own) */
		if (store_spec_is_redis(c->store))
			snprintf(toks, sizeof(toks), "tokens not counted (Redis)");
		else
			snprintf(toks, sizeof(toks), "%llu tokens", (unsigned long long)t.ntokens);
		fprintf(out, "store %s: %llu spam, %llu ham, %s%s\n", c->store,
		    (unsigned long long)t.nspam, (unsigned long long)t.nham, toks,
		    bayes_is_trained(r.b, &t) ? "" : " (below min_spam/min_ham: the classifier abstains)");
	}
	if (!c->enabled)
		fprintf(err, "mxgate: learn: note: rules.bayes.enabled is not set in this config: the daemon "
		    "does not use the store %s until it is\n", c->store);
	bayes_free(r.b);
	return r.n.errors ? 1 : 0;
}
