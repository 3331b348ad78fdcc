/* cfg_load.c — the table engine's front end: from a file or a buffer to a checked YAML
 * document (bounded size, UTF-8 and YAML's printable set, libfyaml's syntax errors as
 * FILE:LINE:COL lines, a budget for alias expansion), then the walk of cfg.c. */
#include "cfg_parse.h"

#include <libfyaml.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CFG_MAX_FILE_SIZE   (16u * 1024 * 1024)  /* a config larger than this is a mistake */
#define CFG_MAX_EXPANDED    200000               /* nodes after alias expansion */

/* Counts nodes with aliases expanded, up to *budget; -1 when the budget runs out (a
 * "billion laughs" document) or aliases nest too deep. */
static int cfg_expanded_size(struct fy_node *n, long *budget, int depth)
{
	if (!n)
		return 0;
	if (--*budget < 0 || depth > 1000)
		return -1;
	if (fy_node_is_alias(n)) {
		struct fy_node *t = fy_node_resolve_alias(n);
		return t ? cfg_expanded_size(t, budget, depth + 1) : 0;
	}
	if (fy_node_is_mapping(n)) {
		void *it = NULL;
		struct fy_node_pair *pr;
		while ((pr = fy_node_mapping_iterate(n, &it)))
			if (cfg_expanded_size(fy_node_pair_key(pr), budget, depth + 1) < 0 ||
			    cfg_expanded_size(fy_node_pair_value(pr), budget, depth + 1) < 0)
				return -1;
	} else if (fy_node_is_sequence(n)) {
		void *it = NULL;
		struct fy_node *c;
		while ((c = fy_node_sequence_iterate(n, &it)))
			if (cfg_expanded_size(c, budget, depth + 1) < 0)
				return -1;
	}
	return 0;
}

/* The position (1-based) of a second YAML document in text ("---" after a first one):
 * libfyaml builds the first document only and would leave the rest unread, so keys an
 * operator pasted below a "---" (or a file concatenated to another) would be ignored.
 * Returns 1 with *line, *col set, 0 when there is one document (or the text does not
 * parse, which the document build reports). */
static int cfg_second_document(const char *text, size_t len, int *line, int *col)
{
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 };
	struct fy_parser *fyp = fy_parser_create(&pc);
	struct fy_event *e;
	int docs = 0, found = 0;

	if (fyp == NULL || fy_parser_set_string(fyp, len ? text : "", len) != 0) {
		fy_parser_destroy(fyp);
		return 0;
	}
	while (!found && (e = fy_parser_parse(fyp)) != NULL) {
		if (e->type == FYET_DOCUMENT_START && ++docs == 2) {
			const struct fy_mark *m = fy_event_start_mark(e);
			*line = m && m->line >= 0 ? m->line + 1 : 1;
			*col = m && m->column >= 0 ? m->column + 1 : 1;
			found = 1;
		}
		fy_parser_event_free(fyp, e);
	}
	fy_parser_destroy(fyp);
	return found;
}

/* Reads a whole file (bounded); malloc'd NUL-terminated text, or NULL with errno. */
static char *cfg_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	for (;;) {
		if (cap - n < 4096) {
			if (cap >= CFG_MAX_FILE_SIZE) {
				errno = EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				goto fail;
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				errno = EIO;
				goto fail;
			}
			break;
		}
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	{
		int e = errno;
		free(buf);
		fclose(f);
		errno = e;
	}
	return NULL;
}

/* YAML 1.2 5.1 c-printable over UTF-8: 0, or -1 with the 1-based line:col of the first bad
 * byte. Checked before libfyaml sees the text (0.7.12 can loop on invalid UTF-8). */
static int cfg_check_text(const char *text, size_t len, int *line, int *col, const char **why)
{
	const unsigned char *s = (const unsigned char *)text;
	int l = 1, c = 1;
	for (size_t i = 0; i < len;) {
		unsigned ch = s[i];
		size_t n = 1;
		uint32_t cp;
		if (ch < 0x80) {
			cp = ch;
		} else if (ch >= 0xc2 && ch <= 0xdf) {
			n = 2;
			cp = ch & 0x1f;
		} else if (ch >= 0xe0 && ch <= 0xef) {
			n = 3;
			cp = ch & 0x0f;
		} else if (ch >= 0xf0 && ch <= 0xf4) {
			n = 4;
			cp = ch & 0x07;
		} else {
			goto bad_utf8;
		}
		if (i + n > len)
			goto bad_utf8;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto bad_utf8;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			goto bad_utf8;
		if (!(cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0x7e) || cp == 0x85 ||
		      (cp >= 0xa0 && cp <= 0xfffd) || cp >= 0x10000)) {
			*line = l;
			*col = c;
			*why = "control character not allowed in YAML";
			return -1;
		}
		if (cp == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
		i += n;
	}
	return 0;
bad_utf8:
	*line = l;
	*col = c;
	*why = "invalid UTF-8";
	return -1;
}

/* True when line `lineno` (1-based) of text holds an unquoted "[v6]:port", which YAML reads
 * as the start of a flow list: worth a hint next to libfyaml's message. */
static bool cfg_line_has_bare_ipv6(const char *text, size_t len, int lineno);

/* libfyaml's collected errors as FILE:LINE:COL lines, with a hint for the usual cause: a
 * bare bracketed IPv6 address (parsing), an alias or merge key (resolving). False when
 * libfyaml collected none. */
static bool cfg_diag_errors(struct cfg_parse *p, struct fy_diag *diag, const char *text, size_t len,
    bool resolving)
{
	void *it = NULL;
	struct fy_diag_error *e;
	bool any = false;
	char line[800];

	while ((e = fy_diag_errors_iterate(diag, &it))) {
		if (e->type < FYET_ERROR)
			continue;
		if (resolving)
			snprintf(line, sizeof(line), "%s:%d:%d: YAML: %s (%s)", p->file, e->line, e->column,
			    e->msg ? e->msg : "error",
			    "an alias *NAME needs an anchor &NAME earlier in the file; a merge key takes "
			    "aliases only: <<: *NAME or <<: [*A, *B]");
		else
			snprintf(line, sizeof(line), "%s:%d:%d: YAML syntax: %s%s", p->file, e->line,
			    e->column, e->msg ? e->msg : "error",
			    cfg_line_has_bare_ipv6(text, len, e->line)
				? " (quote bracketed IPv6 addresses: \"[::1]:25\")" : "");
		cfg_error_add(p, e->line, e->column, line);
		any = true;
	}
	return any;
}

static bool cfg_line_has_bare_ipv6(const char *text, size_t len, int lineno)
{
	const char *s = text, *end = text + len;
	for (int l = 1; l < lineno && s < end; l++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			return false;
		s = nl + 1;
	}
	for (; s < end && *s != '\n'; s++) {
		if (*s == '"' || *s == '\'')
			return false;
		if (*s != '[')
			continue;
		const char *q = s + 1;
		while (q < end && (isxdigit((unsigned char)*q) || *q == ':' || *q == '.'))
			q++;
		if (q + 1 < end && q > s + 1 && q[0] == ']' && q[1] == ':')
			return true;
	}
	return false;
}

/* What the probe does with the text: libfyaml's parse and resolve as cfg_table_load does them,
 * bounded by CFG_MAX_EXPANDED; it returns only if libfyaml did. */
static void cfg_probe_parse(const char *text, size_t len)
{
	struct fy_diag_cfg dc;
	struct fy_diag *diag;
	int l2, c2;

	fy_diag_cfg_default(&dc);     /* as cfg_table_load: errors collected, nothing printed */
	dc.fp = NULL;
	dc.colorize = false;
	diag = fy_diag_create(&dc);
	if (diag)
		fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = diag };
	struct fy_document *doc = fy_document_build_from_string(&pc, len ? text : "", len);
	long budget = CFG_MAX_EXPANDED;

	if (doc && fy_document_root(doc) &&
	    cfg_expanded_size(fy_document_root(doc), &budget, 0) == 0)
		(void)fy_document_resolve(doc);
	fy_document_destroy(doc);
	if (diag)
		fy_diag_destroy(diag);
	(void)cfg_second_document(text, len, &l2, &c2);
}

/* Set by mxgate's main: only that binary knows `--yaml-probe` (a unit test or mxgatectl that
 * loads a file probes in a plain fork). */
static bool cfg_probe_exec;

void cfg_probe_use_exec(void)
{
	cfg_probe_exec = true;
}

int cfg_probe_main(void)
{
	size_t len = 0, cap = 0;
	char *text = NULL;

	for (;;) {
		if (len == cap) {
			if (cap >= CFG_MAX_FILE_SIZE)
				return 0;     /* the daemon refuses it anyway (cfg_read_file) */
			cap = cap ? cap * 2 : 65536;
			char *n = realloc(text, cap);
			if (!n)
				return 0;
			text = n;
		}
		ssize_t r = read(STDIN_FILENO, text + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	cfg_probe_parse(text ? text : "", len);
	free(text);
	return 0;
}

/* Waits up to 10 s for the probe pid: 0 when it exited 0, 127 when it exited 127 (the exec
 * failed), -1 (with *why) when it died or did not finish. */
static int cfg_probe_wait(pid_t pid, const char **why)
{
	int status = 0;

	for (int waited_ms = 0;; waited_ms += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return 0;
		if (waited_ms >= 10000) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			*why = "the YAML parser (libfyaml) did not finish on this file in 10 s";
			return -1;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return 127;
	*why = "the YAML parser (libfyaml) crashed on this file: check its syntax near "
	       "'?' (complex keys), tabs and indentation";
	return -1;
}

/* libfyaml 0.7.12 (Debian 12) can crash on malformed YAML (SIGSEGV in fy_parse_cleanup:
 * `? ?:<TAB>?` in a block mapping, found by fuzz_plugin_options), which would take the running
 * daemon down on a SIGHUP. A file an operator wrote is therefore parsed once in another
 * process first: 0 when it finished, -1 (with *why) when it died or did not finish in 10 s.
 * Strings (tests, fuzzers) are not probed.
 * The probe is this binary started afresh (`--yaml-probe`, cfg_probe_main; the text on its
 * stdin from a memfd): a fork of the running daemon that went on to parse would inherit its
 * threads' locks — the sanitizer build's allocator is not fork-safe, and a child that
 * allocated while a worker thread held its lock at the fork never finished (a SIGHUP under
 * ASan failed "did not finish in 10 s", session 29's CI). Where the exec cannot be made (no
 * memfd, no /proc/self/exe) or the binary is not mxgate (cfg_probe_use_exec), the parse runs
 * in a plain fork as before. */
static int cfg_probe_yaml(const char *text, size_t len, const char **why)
{
	static char *const argv[] = { "mxgate", "--yaml-probe", NULL };
	int mfd = cfg_probe_exec ? (int)syscall(SYS_memfd_create, "mxgate-yaml-probe", 1u /* MFD_CLOEXEC */) : -1;
	pid_t pid;
	int rc;

	if (mfd >= 0) {
		size_t off = 0;
		while (off < len) {
			ssize_t w = write(mfd, text + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		if (off == len && lseek(mfd, 0, SEEK_SET) == 0) {
			int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
			pid = fork();
			if (pid == 0) {
				/* only async-signal-safe calls between the fork and the exec */
				if (dup2(mfd, STDIN_FILENO) < 0)
					_exit(127);
				if (devnull >= 0)  /* a crash report (sanitizers) is the parent's to word */
					dup2(devnull, STDERR_FILENO);
				execv("/proc/self/exe", argv);
				_exit(127);
			}
			if (devnull >= 0)
				close(devnull);
			close(mfd);
			if (pid < 0)
				return 0;        /* cannot probe: parse as before */
			rc = cfg_probe_wait(pid, why);
			if (rc != 127)
				return rc;
		} else {
			close(mfd);
		}
	}
	pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		cfg_probe_parse(text, len);
		_exit(0);
	}
	rc = cfg_probe_wait(pid, why);
	return rc == 127 ? -1 : rc;
}

/* The last text a probe finished on (a copy), and the probes run. A reload that changed only
 * the lists' files (a hosting MX's provisioning: docs/operations.md "Hosting many domains")
 * reads the same bytes again: libfyaml parses the same bytes the same way, so they are not
 * probed again (the probe, a second process parsing the whole file, was a third of a reload's
 * CPU with 3,000 customers' entries: session 31). Any other text is probed. */
static pthread_mutex_t cfg_probed_lock = PTHREAD_MUTEX_INITIALIZER;
static char *cfg_probed_text;
static size_t cfg_probed_len;
static unsigned long cfg_probe_count;

/* True when text[0..len) is the last text a probe finished on. */
static bool cfg_probe_known(const char *text, size_t len)
{
	bool known;

	pthread_mutex_lock(&cfg_probed_lock);
	known = cfg_probed_text != NULL && cfg_probed_len == len && memcmp(cfg_probed_text, text, len) == 0;
	pthread_mutex_unlock(&cfg_probed_lock);
	return known;
}

/* Remembers text[0..len) as probed (out of memory: nothing remembered, the next load probes). */
static void cfg_probe_remember(const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy != NULL)
		memcpy(copy, text, len);
	pthread_mutex_lock(&cfg_probed_lock);
	free(cfg_probed_text);
	cfg_probed_text = copy;
	cfg_probed_len = copy ? len : 0;
	pthread_mutex_unlock(&cfg_probed_lock);
}

unsigned long cfg_probe_runs(void)
{
	unsigned long n;

	pthread_mutex_lock(&cfg_probed_lock);
	n = cfg_probe_count;
	pthread_mutex_unlock(&cfg_probed_lock);
	return n;
}

/* cfg_probe_yaml unless text is the last one it finished on: 0, or -1 with *why. */
static int cfg_probe_text(const char *text, size_t len, const char **why)
{
	if (cfg_probe_known(text, len))
		return 0;
	pthread_mutex_lock(&cfg_probed_lock);
	cfg_probe_count++;
	pthread_mutex_unlock(&cfg_probed_lock);
	if (cfg_probe_yaml(text, len, why) < 0)
		return -1;
	cfg_probe_remember(text, len);
	return 0;
}

int cfg_table_load(const char *name, const char *text, size_t len, const struct cfg_table *t,
		   void *obj, void *err_fp)
{
	return cfg_table_load_marked(name, text, len, t, obj, err_fp, NULL);
}

int cfg_table_load_marked(const char *name, const char *text, size_t len, const struct cfg_table *t,
			  void *obj, void *err_fp, struct cfg_marks **marks)
{
	FILE *err = err_fp;
	struct cfg_parse p = { .file = name ? name : "<config>" };
	struct fy_diag *diag = NULL;
	struct fy_document *doc = NULL;
	char *owned = NULL;
	int rc = -1;

	if (!text) {
		owned = cfg_read_file(name, &len);
		if (!owned) {
			if (err)
				fprintf(err, "%s: cannot read: %s\n", p.file, strerror(errno));
			return -1;
		}
		text = owned;
	}
	{
		int l, c;
		const char *why;
		if (cfg_check_text(text, len, &l, &c, &why) < 0) {
			char line[600];
			snprintf(line, sizeof(line), "%s:%d:%d: %s", p.file, l, c, why);
			cfg_error_add(&p, l, c, line);
			cfg_parse_finish(&p, err);
			goto out;
		}
		if (owned && cfg_probe_text(text, len, &why) < 0) {
			char line[600];
			snprintf(line, sizeof(line), "%s:1:1: %s", p.file, why);
			cfg_error_add(&p, 1, 1, line);
			cfg_parse_finish(&p, err);
			goto out;
		}
	}
	struct fy_diag_cfg dc;
	fy_diag_cfg_default(&dc);
	dc.fp = NULL;
	dc.colorize = false;
	diag = fy_diag_create(&dc);
	if (!diag) {
		if (err)
			fprintf(err, "%s: out of memory\n", p.file);
		goto out;
	}
	fy_diag_set_collect_errors(diag, true);
	struct fy_parse_cfg pc = { .flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2, .diag = diag };
	doc = fy_document_build_from_string(&pc, len ? text : "", len);
	if (!doc || fy_diag_got_error(diag)) {
		bool any = cfg_diag_errors(&p, diag, text, len, false);
		char line[800];

		if (!any && doc) {
			snprintf(line, sizeof(line), "%s:1:1: YAML syntax error", p.file);
			cfg_error_add(&p, 1, 1, line);
			any = true;
		}
		if (any) {
			cfg_parse_finish(&p, err);
			goto out;
		}
		/* an empty file builds no document and reports nothing: an empty mapping */
	}
	struct fy_node *root = doc ? fy_document_root(doc) : NULL;
	long budget = CFG_MAX_EXPANDED;
	if (root && cfg_expanded_size(root, &budget, 0) < 0) {
		cfg_error(&p, root, "too many nodes after expanding aliases (limit %d)",
			  CFG_MAX_EXPANDED);
		cfg_parse_finish(&p, err);
		goto out;
	}
	if (doc && fy_document_resolve(doc) < 0) {
		/* libfyaml says where (an alias without its anchor, a merge key of something
		 * other than aliases) in its collected errors */
		if (!cfg_diag_errors(&p, diag, text, len, true))
			cfg_error(&p, root, "cannot resolve anchors/aliases");
		cfg_parse_finish(&p, err);
		goto out;
	}
	{
		int l2, c2;

		if (cfg_second_document(text, len, &l2, &c2)) {
			char line[600];

			snprintf(line, sizeof(line), "%s:%d:%d: a second YAML document: mxgate reads one "
			    "mapping per file, put these keys in the first", p.file, l2, c2);
			cfg_error_add(&p, l2, c2, line);
			cfg_parse_finish(&p, err);
			goto out;
		}
	}
	root = doc ? fy_document_root(doc) : NULL;
	if (cfg_node_is_null(root))
		root = NULL;
	if (root && !fy_node_is_mapping(root)) {
		cfg_error(&p, root, "the file must be a YAML mapping (key: value lines), got %s",
			  cfg_node_kind(root));
		cfg_parse_finish(&p, err);
		goto out;
	}
	cfg_table_walk(&p, t, root, obj, false);
	rc = (p.nerr || p.dropped) ? -1 : 0;
	cfg_parse_finish(&p, err);
	if (marks != NULL && rc == 0)
		*marks = cfg_marks_build(p.file, root);   /* NULL (no memory): FILE:1:1 */
out:
	fy_document_destroy(doc);
	fy_diag_destroy(diag);
	free(owned);
#ifdef __GLIBC__
	/* The parse tree and the lists' file buffers are freed, but glibc keeps the pages: with
	 * thousands of bypass/deny_senders entries (docs/operations.md "Hosting many domains")
	 * the daemon kept the load's peak, 46 MB for 3,000 customers where 25 MB are in use. */
	malloc_trim(0);
#endif
	return rc;
}
