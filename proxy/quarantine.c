/* quarantine.c — the quarantine maildir's envelope block and its files (see quarantine.h). */
#include "quarantine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum quarantine_field {
	QF_RETURN_PATH = 0, QF_FROM, QF_TO, QF_TO_BLOCKED, QF_REASON, QF_ID, QF_OTHER,
};

static enum quarantine_field quarantine_field_kind(const char *name, size_t n)
{
	static const char *const names[] = { "Return-Path", "X-Envelope-From", "X-Envelope-To",
		"X-Envelope-To-Blocked", "X-Quarantine-Reason", "X-Quarantine-ID" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
			return (enum quarantine_field)i;
	return QF_OTHER;
}

static bool quarantine_is_sep(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',';
}

/* The addresses "<a>" in v[0..n) (separated by commas and folding white space), as spans
 * relative to base; at most max. Returns how many, or -1 when v is not such a list. */
static long quarantine_addr_list(const char *v, size_t n, size_t base, struct quarantine_span *out,
    size_t max)
{
	size_t i = 0, k = 0;

	for (;;) {
		while (i < n && quarantine_is_sep(v[i]))
			i++;
		if (i == n)
			return (long)k;
		if (v[i] != '<' || k == max)
			return -1;
		size_t start = ++i;
		/* the address ends at a '>' followed by a separator or the end (a '>' inside a
		 * quoted local part stays in it) */
		while (i < n && !(v[i] == '>' && (i + 1 == n || quarantine_is_sep(v[i + 1])))) {
			/* the writer turns these into '?': one here is not its block, and would
			 * reach a backend's command line on release */
			if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
				return -1;
			i++;
		}
		if (i == n)
			return -1;
		out[k].off = base + start;
		out[k].len = i - start;
		k++;
		i++;
	}
}

/* See quarantine.h. */
int quarantine_envelope_parse(const char *buf, size_t len, bool eof, struct quarantine_envelope *e)
{
	size_t pos = 0;
	bool have_from = false, have_to = false;
	struct quarantine_span one;

	memset(e, 0, sizeof(*e));
	if (len > QUARANTINE_ENV_MAX) {   /* only the first QUARANTINE_ENV_MAX octets count */
		len = QUARANTINE_ENV_MAX;
		eof = false;
	}
	for (;;) {
		/* one field: its first line and the lines that continue it (RFC 5322 2.2.3) */
		size_t end = pos;
		for (;;) {
			const char *lf = memchr(buf + end, '\n', len - end);
			if (lf == NULL)
				goto incomplete;
			end = (size_t)(lf - buf) + 1;
			if (end == len) {
				if (!eof)
					goto incomplete;
				break;
			}
			if (buf[end] != ' ' && buf[end] != '\t')
				break;
		}
		const char *colon = memchr(buf + pos, ':', end - pos);
		if (colon == NULL || colon == buf + pos) {
			e->err = "not a held message: no envelope block (X-Quarantine-ID) on top";
			return -1;
		}
		size_t nlen = (size_t)(colon - (buf + pos)), voff = nlen + 1 + (size_t)pos;
		enum quarantine_field f = quarantine_field_kind(buf + pos, nlen);
		const char *v = buf + voff;
		size_t vn = end - voff;
		long k;

		switch (f) {
		case QF_RETURN_PATH:
		case QF_FROM:
			if (quarantine_addr_list(v, vn, voff, &one, 1) != 1) {
				e->err = "malformed envelope sender";
				return -1;
			}
			e->sender = one;
			have_from = true;
			break;
		case QF_TO:
			k = quarantine_addr_list(v, vn, voff, e->rcpts, QUARANTINE_RCPTS_MAX);
			if (k < 1) {
				e->err = k == 0 ? "no envelope recipient" : "malformed or too many envelope recipients";
				return -1;
			}
			e->nrcpts = (size_t)k;
			have_to = true;
			break;
		case QF_TO_BLOCKED:
			break;
		case QF_REASON: {
			size_t a = 0, b = vn;
			while (a < b && (v[a] == ' ' || v[a] == '\t'))
				a++;
			while (b > a && quarantine_is_sep(v[b - 1]) && v[b - 1] != ',')
				b--;
			e->reason.off = voff + a;
			e->reason.len = b - a;
			break;
		}
		case QF_ID:
			if (quarantine_addr_list(v, vn, voff, &one, 1) != 1 || one.len == 0 ||
			    one.len > QUARANTINE_ID_MAX) {
				e->err = "malformed X-Quarantine-ID";
				return -1;
			}
			if (!have_from || !have_to) {
				e->err = "envelope block without sender or recipients";
				return -1;
			}
			e->id = one;
			e->end = end;
			return 1;
		case QF_OTHER:
			e->err = "not a held message: no envelope block (X-Quarantine-ID) on top";
			return -1;
		}
		pos = end;
	}
incomplete:
	if (eof || len >= QUARANTINE_ENV_MAX) {
		e->err = len >= QUARANTINE_ENV_MAX ? "envelope block too long" : "envelope block cut short";
		return -1;
	}
	return 0;
}

bool quarantine_id_is_valid(const char *id)
{
	size_t n = 0;

	for (; id[n]; n++) {
		char c = id[n];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) ||
		    n >= QUARANTINE_ID_MAX)
			return false;
	}
	return n > 0;
}

void quarantine_release_queue_id(char *q, size_t cap, const char *sess)
{
	snprintf(q, cap, "A%s", sess);
}

void quarantine_item_free(struct quarantine_item *it)
{
	if (it) {
		free(it->head);
		it->head = NULL;
	}
}

/* Reads path's first octets into it: the envelope block and the header block after it (up
 * to QUARANTINE_SHOW_MAX). 1 a held message, 0 not one (or gone meanwhile), -1 an error. */
static int quarantine_read_head(const char *path, struct quarantine_item *it, char *err, size_t errlen)
{
	size_t cap = QUARANTINE_ENV_MAX + QUARANTINE_SHOW_MAX, len = 0, chunk = 8192;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;
	struct stat st;

	memset(it, 0, sizeof(*it));
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 0 : (snprintf(err, errlen, "open %.400s: %s", path,
		    strerror(errno)), -1);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	it->head = malloc(cap + 1);
	if (it->head == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
		goto out;
	}
	/* read the block in growing chunks (most are a few hundred octets), then the headers */
	for (;;) {
		size_t want = len + chunk > cap ? cap - len : chunk;
		ssize_t n = want ? read(fd, it->head + len, want) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "read %.400s: %s", path, strerror(errno));
			rc = -1;
			goto out;
		}
		len += (size_t)n;
		bool eof = n == 0 || len == (size_t)st.st_size;
		if (it->env.end == 0) {
			int p = quarantine_envelope_parse(it->head, len, eof, &it->env);
			if (p < 0)
				goto out;
			if (p == 0) {
				chunk *= 2;
				continue;
			}
		}
		/* the header block's end, or enough of it */
		if (eof || len == cap || memmem(it->head + it->env.end, len - it->env.end, "\r\n\r\n", 4) ||
		    (len - it->env.end >= 2 && memcmp(it->head + it->env.end, "\r\n", 2) == 0))
			break;
	}
	it->head[len] = '\0';
	it->head_len = len;
	it->mtime = st.st_mtime;
	it->size = (uint64_t)st.st_size - it->env.end;
	snprintf(it->path, sizeof(it->path), "%s", path);
	rc = 1;
out:
	close(fd);
	if (rc != 1) {
		free(it->head);
		it->head = NULL;
	}
	return rc;
}

/* Calls each(path, mtime, arg) for every regular file of root/new and root/cur (names not
 * starting with '.'); each returns nonzero to stop (that value is returned). -1 with err
 * when a folder cannot be read (one that does not exist is empty). */
static int quarantine_walk(const char *root, int (*each)(const char *path, time_t mtime, void *arg),
    void *arg, char *err, size_t errlen)
{
	static const char *const subs[] = { "new", "cur" };
	char dir[PATH_MAX], path[PATH_MAX];

	for (size_t i = 0; i < 2; i++) {
		if (snprintf(dir, sizeof(dir), "%s/%s", root, subs[i]) >= (int)sizeof(dir)) {
			snprintf(err, errlen, "%.400s: path too long", root);
			return -1;
		}
		DIR *d = opendir(dir);
		if (d == NULL) {
			if (errno == ENOENT)
				continue;
			snprintf(err, errlen, "opendir %.400s: %s", dir, strerror(errno));
			return -1;
		}
		struct dirent *de;
		int rc = 0;
		while (rc == 0 && (de = readdir(d)) != NULL) {
			struct stat st;
			if (de->d_name[0] == '.' ||
			    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
			    lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			rc = each(path, st.st_mtime, arg);
		}
		closedir(d);
		if (rc != 0)
			return rc;
	}
	return 0;
}

struct quarantine_find_ctx {
	const char *id;
	struct quarantine_item *it;
	char *err;
	size_t errlen;
};

static int quarantine_find_each(const char *path, time_t mtime, void *arg)
{
	struct quarantine_find_ctx *c = arg;
	int r = quarantine_read_head(path, c->it, c->err, c->errlen);

	(void)mtime;
	if (r <= 0)
		return r;   /* -1 stops the walk; 0: not a held message */
	if (c->it->env.id.len == strlen(c->id) &&
	    memcmp(c->it->head + c->it->env.id.off, c->id, c->it->env.id.len) == 0)
		return 1;
	quarantine_item_free(c->it);
	return 0;
}

int quarantine_find(const char *root, const char *id, struct quarantine_item *it, char *err, size_t errlen)
{
	struct quarantine_find_ctx c = { id, it, err, errlen };

	memset(it, 0, sizeof(*it));
	if (!quarantine_id_is_valid(id))
		return 0;
	return quarantine_walk(root, quarantine_find_each, &c, err, errlen);
}

struct quarantine_list_ctx {
	struct { char path[PATH_MAX]; time_t mtime; } *files;
	size_t n, cap;
};

static int quarantine_list_each(const char *path, time_t mtime, void *arg)
{
	struct quarantine_list_ctx *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *p = realloc(c->files, cap * sizeof(*c->files));
		if (p == NULL)
			return -1;
		c->files = p;
		c->cap = cap;
	}
	snprintf(c->files[c->n].path, sizeof(c->files[c->n].path), "%s", path);
	c->files[c->n].mtime = mtime;
	c->n++;
	return 0;
}

static int quarantine_newest_first(const void *a, const void *b)
{
	const struct { char path[PATH_MAX]; time_t mtime; } *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? 1 : -1;
	return strcmp(y->path, x->path);   /* maildir names start with the time */
}

int quarantine_list(const char *root, size_t n, struct quarantine_item *items, size_t *count,
    char *err, size_t errlen)
{
	struct quarantine_list_ctx c = { 0 };
	int rc = 0;

	*count = 0;
	if (n > QUARANTINE_LIST_MAX)
		n = QUARANTINE_LIST_MAX;
	if (quarantine_walk(root, quarantine_list_each, &c, err, errlen) != 0) {
		if (!*err)
			snprintf(err, errlen, "out of memory");
		free(c.files);
		return -1;
	}
	if (c.n > 1)
		qsort(c.files, c.n, sizeof(*c.files), quarantine_newest_first);
	for (size_t i = 0; i < c.n && *count < n; i++) {
		int r = quarantine_read_head(c.files[i].path, &items[*count], err, errlen);
		if (r < 0) {
			rc = -1;
			break;
		}
		if (r > 0)
			(*count)++;
	}
	free(c.files);
	if (rc != 0) {
		for (size_t i = 0; i < *count; i++)
			quarantine_item_free(&items[i]);
		*count = 0;
	}
	return rc;
}

int quarantine_move_released(const char *root, const struct quarantine_item *it, char *err, size_t errlen)
{
	char dir[PATH_MAX], to[PATH_MAX];
	const char *base = strrchr(it->path, '/');

	base = base ? base + 1 : it->path;
	if (snprintf(dir, sizeof(dir), "%s/released", root) >= (int)sizeof(dir) ||
	    snprintf(to, sizeof(to), "%s/%s", dir, base) >= (int)sizeof(to)) {
		snprintf(err, errlen, "%.400s: path too long", root);
		return -1;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %.400s: %s", dir, strerror(errno));
		return -1;
	}
	if (rename(it->path, to) != 0) {
		snprintf(err, errlen, "rename %.400s into %.400s: %s", it->path, dir, strerror(errno));
		return -1;
	}
	return 0;
}

const char *quarantine_item_headers(const struct quarantine_item *it, size_t *len)
{
	const char *h = it->head + it->env.end;
	size_t n = it->head_len - it->env.end;
	const char *e = memmem(h, n, "\r\n\r\n", 4);

	if (e)
		n = (size_t)(e - h) + 2;
	if (n > QUARANTINE_SHOW_MAX)
		n = QUARANTINE_SHOW_MAX;
	*len = n;
	return h;
}
