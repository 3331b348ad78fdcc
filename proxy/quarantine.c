/* quarantine.c — the quarantine maildir's envelope block and its files (see quarantine.h). */
#include "quarantine.h"
#include "counters.h"
#include "maildir.h"
#include "quarantine_index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
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
		if (it->has_fd)
			close(it->fd);
		it->has_fd = false;
	}
}

/* path opened to read; lockable: for writing too when it may be (flock's LOCK_EX over NFS
 * needs a file open for writing: the client maps it to a whole-file write lock), else to
 * read (a folder mxgate may only read: a local file system locks it all the same). Never
 * blocks on a FIFO put there. */
static int quarantine_open(const char *path, bool lockable)
{
	int fl = O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
	int fd = lockable ? open(path, O_RDWR | fl) : -1;

	/* any refusal but a missing name or a link: read-only (EACCES, EROFS, EPERM; EISDIR for a
	 * directory in new/, which the caller's S_ISREG then skips as not a held message) */
	if (fd < 0 && (!lockable || (errno != ENOENT && errno != ELOOP)))
		fd = open(path, O_RDONLY | fl);
	return fd;
}

/* Reads path's first octets into it: the envelope block and the header block after it (up
 * to QUARANTINE_SHOW_MAX). 1 a held message, 0 not one (or gone meanwhile), -1 an error.
 * keep_fd: a held message's file stays open in it (it->fd). */
static int quarantine_read_head(const char *path, struct quarantine_item *it, bool keep_fd, char *err,
    size_t errlen)
{
	size_t cap = QUARANTINE_ENV_MAX + QUARANTINE_SHOW_MAX, len = 0, chunk = 8192;
	int fd = quarantine_open(path, keep_fd), rc = 0;
	struct stat st;

	memset(it, 0, sizeof(*it));
	counter_inc(COUNTER_QUARANTINE_FILES_READ);
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
	if (keep_fd) {
		it->fd = fd;
		it->has_fd = true;
		return rc;
	}
out:
	close(fd);
	if (rc != 1) {
		free(it->head);
		it->head = NULL;
	}
	return rc;
}

/* Calls each(path, name, ino, mtime, arg) for every entry of root/new and root/cur whose name does
 * not start with '.' (name: "new/NAME" or "cur/NAME", a suffix of path). With want_mtime only
 * regular files, mtime from lstat; without it every name, mtime 0 and no stat (a lookup by ID
 * reads names only: quarantine_read_head refuses what is not a regular file). each returns
 * nonzero to stop (that value is returned). -1 with err when a folder cannot be read (one
 * that does not exist is empty). */
typedef int (*quarantine_each_fn)(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg);

/* quarantine_walk over the folders subs[0..nsubs) of root. */
static int quarantine_walk_in(const char *root, const char *const *subs, size_t nsubs, bool want_mtime,
    quarantine_each_fn each, void *arg, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	size_t rootlen = strlen(root);

	for (size_t i = 0; i < nsubs; i++) {
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
			    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
				continue;
			if (want_mtime && (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)))
				continue;
			rc = each(path, path + rootlen + 1, (uint64_t)de->d_ino, want_mtime ? st.st_mtime : 0, arg);
		}
		closedir(d);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int quarantine_walk(const char *root, bool want_mtime, quarantine_each_fn each, void *arg, char *err,
    size_t errlen)
{
	static const char *const subs[] = { "new", "cur" };

	return quarantine_walk_in(root, subs, 2, want_mtime, each, arg, err, errlen);
}

/* ------------------------------------------------------------ lookup by ID: the index */

bool quarantine_name_id(const char *name, char *id)
{
	const char *base = strrchr(name, '/'), *f = NULL, *p;
	size_t k = sizeof(MAILDIR_ID_FIELD) - 1, n;

	base = base ? base + 1 : name;
	/* the last ",QID=" of the base name (before ":2,FLAGS"): a host part cannot hold one
	 * behind it, as the field follows the unique name */
	for (p = base; (p = strstr(p, MAILDIR_ID_FIELD)) != NULL; p += k)
		f = p + k;
	if (f == NULL)
		return false;
	n = strcspn(f, ",:");
	if (n == 0 || n > QUARANTINE_ID_MAX)
		return false;
	memcpy(id, f, n);
	id[n] = '\0';
	return quarantine_id_is_valid(id);
}

/* One index for the process (the quarantine folder in force; a reload naming another one
 * starts it afresh), shared by the thread pool's show/delete and the release thread. */
static pthread_mutex_t quarantine_index_lock = PTHREAD_MUTEX_INITIALIZER;
static struct quarantine_index *quarantine_idx;
static char *quarantine_idx_root;

struct quarantine_find_ctx {
	const char *id;
	struct quarantine_index *x;
	struct strbuf hits, unknown;    /* "path\0name\0" pairs, each with its inode number */
};

static int quarantine_find_each(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg)
{
	struct quarantine_find_ctx *c = arg;
	char known[QUARANTINE_ID_MAX + 1];
	struct strbuf *to;

	(void)mtime;
	/* the ID in the name (a file held since w-quarstore): no read, no index entry */
	if (quarantine_name_id(name, known)) {
		if (strcmp(known, c->id) != 0)
			return 0;
		to = &c->hits;
	} else if (quarantine_index_get(c->x, name, ino, known)) {
		if (strcmp(known, c->id) != 0)
			return 0;
		to = &c->hits;
	} else
		to = &c->unknown;
	strbuf_append(to, path, strlen(path) + 1);
	strbuf_append(to, name, strlen(name) + 1);
	strbuf_append(to, (const char *)&ino, sizeof(ino));
	return 0;
}

/* Reads the files listed in pairs (c->hits or c->unknown) up to the first whose ID is c->id
 * (into it), recording each one's ID. 1 found, 0 not, -1 a read error (err). */
static int quarantine_find_read(struct quarantine_find_ctx *c, const struct strbuf *pairs,
    struct quarantine_item *it, char *err, size_t errlen)
{
	struct quarantine_item tmp;

	for (size_t off = 0; off < pairs->len;) {
		const char *path = pairs->v + off, *name = path + strlen(path) + 1;
		uint64_t ino;
		off = (size_t)(name - pairs->v) + strlen(name) + 1;
		memcpy(&ino, pairs->v + off, sizeof(ino));
		off += sizeof(ino);
		int r = quarantine_read_head(path, &tmp, true, err, errlen);
		if (r < 0)
			return -1;
		char id[QUARANTINE_ID_MAX + 1] = "";
		if (r > 0)
			snprintf(id, sizeof(id), "%.*s", (int)tmp.env.id.len, tmp.head + tmp.env.id.off);
		(void)quarantine_index_put(c->x, name, ino, id);   /* no memory: read again next time */
		if (r > 0 && strcmp(id, c->id) == 0) {
			*it = tmp;
			return 1;
		}
		quarantine_item_free(&tmp);
	}
	return 0;
}

int quarantine_find(const char *root, const char *id, struct quarantine_item *it, char *err, size_t errlen)
{
	struct quarantine_find_ctx c = { .id = id };
	int rc;

	memset(it, 0, sizeof(*it));
	if (!quarantine_id_is_valid(id))
		return 0;
	pthread_mutex_lock(&quarantine_index_lock);
	if (quarantine_idx == NULL || quarantine_idx_root == NULL || strcmp(quarantine_idx_root, root) != 0) {
		quarantine_index_free(quarantine_idx);
		free(quarantine_idx_root);
		quarantine_idx = quarantine_index_new();
		quarantine_idx_root = strdup(root);
		if (quarantine_idx == NULL || quarantine_idx_root == NULL) {
			quarantine_index_free(quarantine_idx);
			free(quarantine_idx_root);
			quarantine_idx = NULL;
			quarantine_idx_root = NULL;
			pthread_mutex_unlock(&quarantine_index_lock);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	c.x = quarantine_idx;
	quarantine_index_begin(c.x);
	/* the folders' names only; a file is read when its name is new, or to confirm a hit */
	rc = quarantine_walk(root, false, quarantine_find_each, &c, err, errlen);
	if (rc == 0) {
		/* the new names up to the one found (the first lookup reads no more than one did
		 * without an index; the names left are read by a later one) */
		rc = quarantine_find_read(&c, &c.hits, it, err, errlen);
		if (rc == 0)
			rc = quarantine_find_read(&c, &c.unknown, it, err, errlen);
		if (rc >= 0)
			quarantine_index_sweep(c.x);   /* every name was seen: the gone ones go */
	}
	pthread_mutex_unlock(&quarantine_index_lock);
	strbuf_free(&c.hits);
	strbuf_free(&c.unknown);
	if (rc != 1)
		quarantine_item_free(it);
	return rc;
}

/* ------------------------------------------------------------ one operation per file */

/* fd (open on path) locked, without waiting: 1 locked and path still names it, 0 path names
 * it no more (gone, or another file renamed over it: the lock is worth nothing, the caller
 * looks again), QUARANTINE_BUSY another open file description holds it, -1 flock failed
 * (errno: a file system without locks, ENOLCK). */
static int quarantine_lock_fd(int fd, const char *path)
{
	struct stat held, now;

	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? QUARANTINE_BUSY : -1;
	}
	if (fstat(fd, &held) != 0 || stat(path, &now) != 0 || held.st_dev != now.st_dev || held.st_ino != now.st_ino)
		return 0;
	return 1;
}

int quarantine_find_locked(const char *root, const char *id, struct quarantine_item *it, unsigned wait_ms,
    bool (*waiting)(void *arg), void *arg, char *err, size_t errlen)
{
	unsigned waited = 0;

	for (unsigned round = 0; round < QUARANTINE_LOCK_ROUNDS;) {
		int f = quarantine_find(root, id, it, err, errlen);
		if (f != 1)
			return f;
		int l = it->has_fd ? quarantine_lock_fd(it->fd, it->path) : 0;
		if (l == 1)
			return 1;
		if (l < 0 && l != QUARANTINE_BUSY)
			snprintf(err, errlen, "flock %.400s: %s", it->path, strerror(errno));
		quarantine_item_free(it);   /* closes the fd: any lock taken goes with it */
		if (l < 0 && l != QUARANTINE_BUSY)
			return -1;
		if (l == 0) {
			round++;   /* changed under us: look again */
			continue;
		}
		if (waited >= wait_ms || (waiting && waiting(arg)))
			return QUARANTINE_BUSY;
		struct timespec ts = { 0, QUARANTINE_LOCK_POLL_MS * 1000000L };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		waited += QUARANTINE_LOCK_POLL_MS;
	}
	return QUARANTINE_BUSY;
}

/* ------------------------------------------------------------ expiry */

struct quarantine_expire_ctx {
	time_t before;
	size_t count, busy, lock_failed;
	int lock_errno;            /* the first flock failure's (lock_failed) */
};

/* Removes path when no operation holds it (a release under way, a delete): the count it
 * goes to, busy, or lock_failed (flock refused otherwise: ENOLCK on a file system without
 * locks), the first such errno kept. */
static void quarantine_expire_unlink(struct quarantine_expire_ctx *c, const char *path)
{
	int fd = quarantine_open(path, true);
	int l;

	if (fd < 0)
		return;   /* gone meanwhile (a delete, a release's move): not this sweep's */
	l = quarantine_lock_fd(fd, path);
	if (l == QUARANTINE_BUSY) {   /* held by an operation under way: left */
		c->busy++;
	} else if (l < 0) {           /* no lock to be had: left, and the sweep says why */
		if (c->lock_failed++ == 0)
			c->lock_errno = errno;
	} else if (l == 1 && unlink(path) == 0)
		c->count++;
	close(fd);
}

static int quarantine_expire_each(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg)
{
	struct quarantine_expire_ctx *c = arg;
	char id[QUARANTINE_ID_MAX + 1];
	struct quarantine_item it;
	char err[64];

	(void)ino;
	if (mtime >= c->before)
		return 0;
	/* Only what mxgate held: the ID in the name, or (a file an older mxgate named) an
	 * envelope block at its head. A folder shared with anything else (a mailbox a
	 * mail client reads, mail moved there by hand) keeps that other mail. */
	if (!quarantine_name_id(name, id)) {
		int held = quarantine_read_head(path, &it, false, err, sizeof(err));
		quarantine_item_free(&it);
		if (held != 1)
			return 0;
	}
	quarantine_expire_unlink(c, path);
	return 0;
}

/* tmp/: a file older than the bound is a write a crash cut (never renamed into new/). */
static int quarantine_expire_tmp_each(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg)
{
	struct quarantine_expire_ctx *c = arg;

	(void)name;
	(void)ino;
	if (mtime < c->before && unlink(path) == 0)
		c->count++;
	return 0;
}

int quarantine_expire(const char *root, time_t before, time_t tmp_before, struct quarantine_expired *n,
    char *err, size_t errlen)
{
	static const char *const rel[] = { "released" }, *const tmp[] = { "tmp" };
	struct quarantine_expire_ctx c = { .before = before }, r = { .before = before }, t = { .before = tmp_before };
	int rc = 0;

	/* before 0: no quarantine.expire, only tmp/ is swept */
	if (before != 0)
		rc = quarantine_walk(root, true, quarantine_expire_each, &c, err, errlen);
	/* released/: the copies kept for the record, dated by their release
	 * (quarantine_move_released); one that cannot be read still lets new/ and cur/ count */
	if (before != 0 &&
	    quarantine_walk_in(root, rel, 1, true, quarantine_expire_each, &r, rc ? NULL : err, rc ? 0 : errlen) != 0)
		rc = -1;
	/* tmp/: what a crash left between a write and its rename (a hold, a rewrite) */
	if (quarantine_walk_in(root, tmp, 1, true, quarantine_expire_tmp_each, &t, rc ? NULL : err, rc ? 0 : errlen) != 0)
		rc = -1;
	n->held = c.count;
	n->released = r.count;
	n->stale_tmp = t.count;
	n->busy = c.busy + r.busy;
	n->lock_failed = c.lock_failed + r.lock_failed;
	n->lock_errno = c.lock_failed ? c.lock_errno : r.lock_errno;
	return rc;
}

/* ------------------------------------------------------------ the newest N */

struct quarantine_list_file {
	char *path;
	time_t mtime;
};

/* Newest first: mtime, then the name (maildir names start with the time). */
static int quarantine_newest_first(const void *a, const void *b)
{
	const struct quarantine_list_file *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? 1 : -1;
	return strcmp(y->path, x->path);
}

/* The newest k files of a walk, newest first, in files[0..n) (paths malloc'd): each file
 * is placed by insertion, or dropped at once when older than the k-th. */
struct quarantine_list_ctx {
	struct quarantine_list_file *files;
	size_t n, k, total;
	bool oom;
};

static int quarantine_list_each(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg)
{
	struct quarantine_list_ctx *c = arg;
	struct quarantine_list_file f = { (char *)path, mtime };
	size_t i;

	(void)name;
	(void)ino;
	c->total++;
	if (c->n == c->k && quarantine_newest_first(&f, &c->files[c->n - 1]) >= 0)
		return 0;
	if ((f.path = strdup(path)) == NULL) {
		c->oom = true;
		return -1;
	}
	if (c->n == c->k)
		free(c->files[--c->n].path);
	for (i = c->n; i > 0 && quarantine_newest_first(&f, &c->files[i - 1]) < 0; i--)
		c->files[i] = c->files[i - 1];
	c->files[i] = f;
	c->n++;
	return 0;
}

/* ------------------------------------------------------------ filters */

/* Whether needle occurs in h[0..n), ASCII case-insensitive. */
static bool quarantine_has_text(const char *h, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; k <= n && i <= n - k; i++)
		if (strncasecmp(h + i, needle, k) == 0)
			return true;
	return false;
}

static bool quarantine_span_is(const char *buf, struct quarantine_span sp, const char *s)
{
	return strlen(s) == sp.len && strncasecmp(buf + sp.off, s, sp.len) == 0;
}

bool quarantine_item_rcpt_is(const struct quarantine_item *it, size_t i, const char *rcpt)
{
	return quarantine_span_is(it->head, it->env.rcpts[i], rcpt);
}

long quarantine_item_rcpt_index(const struct quarantine_item *it, const char *rcpt)
{
	for (size_t i = 0; i < it->env.nrcpts; i++)
		if (quarantine_span_is(it->head, it->env.rcpts[i], rcpt))
			return (long)i;
	return -1;
}

/* The Subject field's value in the header block h[0..n) (its folded lines too): *len octets
 * from the returned pointer, NULL without one. */
static const char *quarantine_subject(const char *h, size_t n, size_t *len)
{
	for (size_t i = 0; i < n;) {
		const char *lf = memchr(h + i, '\n', n - i);
		size_t end = lf ? (size_t)(lf - h) + 1 : n;
		if (end - i > 8 && strncasecmp(h + i, "Subject:", 8) == 0) {
			size_t v = i + 8;
			while (end < n && (h[end] == ' ' || h[end] == '\t')) {   /* RFC 5322 2.2.3 */
				lf = memchr(h + end, '\n', n - end);
				end = lf ? (size_t)(lf - h) + 1 : n;
			}
			*len = end - v;
			return h + v;
		}
		if (end - i <= 2 && (h[i] == '\r' || h[i] == '\n'))   /* the header block's end */
			break;
		i = end;
	}
	return NULL;
}

bool quarantine_item_matches(const struct quarantine_item *it, const struct quarantine_filter *f)
{
	const struct quarantine_envelope *e = &it->env;

	if (f == NULL)
		return true;
	if (f->older_than && it->mtime >= f->older_than)
		return false;
	if (f->from && !quarantine_has_text(it->head + e->sender.off, e->sender.len, f->from))
		return false;
	if (f->rcpt) {
		bool hit = false;
		size_t k = strlen(f->rcpt);
		for (size_t i = 0; i < e->nrcpts && !hit; i++) {
			struct quarantine_span sp = e->rcpts[i];
			if (f->rcpt[0] == '@')   /* the domain: the address ends in it */
				hit = sp.len > k && strncasecmp(it->head + sp.off + sp.len - k, f->rcpt, k) == 0;
			else
				hit = quarantine_span_is(it->head, sp, f->rcpt);
		}
		if (!hit)
			return false;
	}
	if (f->subject) {
		size_t hl, sl;
		const char *h = quarantine_item_headers(it, &hl), *sub = quarantine_subject(h, hl, &sl);
		if (sub == NULL || !quarantine_has_text(sub, sl, f->subject))
			return false;
	}
	return true;
}

bool quarantine_filter_is_set(const struct quarantine_filter *f)
{
	return f && (f->rcpt || f->from || f->subject || f->older_than);
}

/* Every file of a walk, to be sorted. */
struct quarantine_all_ctx {
	struct quarantine_list_file *files;
	size_t n, cap;
};

static int quarantine_all_each(const char *path, const char *name, uint64_t ino, time_t mtime, void *arg)
{
	struct quarantine_all_ctx *c = arg;

	(void)name;
	(void)ino;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct quarantine_list_file *f = realloc(c->files, cap * sizeof(*f));
		if (f == NULL)
			return 1;   /* out of memory: stops the walk */
		c->files = f;
		c->cap = cap;
	}
	if ((c->files[c->n].path = strdup(path)) == NULL)
		return 1;
	c->files[c->n++].mtime = mtime;
	return 0;
}

/* The end of a listing: the walk's names freed, and on a failure (rc) the items read. */
static int quarantine_list_end(struct quarantine_list_file *files, size_t nfiles, struct quarantine_item *items,
    size_t *count, int rc)
{
	for (size_t i = 0; i < nfiles; i++)
		free(files[i].path);
	free(files);
	if (rc != 0) {
		for (size_t i = 0; i < *count; i++)
			quarantine_item_free(&items[i]);
		*count = 0;
	}
	return rc;
}

/* The newest n files that match f: every name sorted by time (one walk), then the heads
 * read newest first until n match. */
static int quarantine_list_filtered(const char *root, size_t n, const struct quarantine_filter *f,
    struct quarantine_item *items, size_t *count, char *err, size_t errlen)
{
	struct quarantine_all_ctx c = { 0 };
	int rc = quarantine_walk(root, true, quarantine_all_each, &c, err, errlen);

	if (rc > 0) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	}
	if (rc == 0)
		qsort(c.files, c.n, sizeof(*c.files), quarantine_newest_first);
	for (size_t i = 0; rc == 0 && i < c.n && *count < n; i++) {
		int r = quarantine_read_head(c.files[i].path, &items[*count], false, err, errlen);
		if (r < 0)
			rc = -1;
		else if (r > 0 && quarantine_item_matches(&items[*count], f))
			(*count)++;
		else if (r > 0)
			quarantine_item_free(&items[*count]);
	}
	return quarantine_list_end(c.files, c.n, items, count, rc);
}

int quarantine_list(const char *root, size_t n, const struct quarantine_filter *f, struct quarantine_item *items,
    size_t *count, char *err, size_t errlen)
{
	struct quarantine_list_ctx c = { 0 };
	int rc = 0;

	*count = 0;
	if (n > QUARANTINE_LIST_MAX)
		n = QUARANTINE_LIST_MAX;
	if (n == 0)
		return 0;
	if (quarantine_filter_is_set(f))
		return quarantine_list_filtered(root, n, f, items, count, err, errlen);
	/* the newest n names, then their heads; a file that is not a held message takes a place,
	 * so with fewer than n held among them the walk goes again for twice as many */
	for (c.k = n;; c.k *= 2) {
		c.files = calloc(c.k, sizeof(*c.files));
		c.n = c.total = 0;
		if (c.files == NULL || quarantine_walk(root, true, quarantine_list_each, &c, err, errlen) != 0) {
			if (c.files == NULL || c.oom)
				snprintf(err, errlen, "out of memory");
			rc = -1;
			break;
		}
		for (size_t i = 0; i < c.n && *count < n; i++) {
			int r = quarantine_read_head(c.files[i].path, &items[*count], false, err, errlen);
			if (r < 0) {
				rc = -1;
				break;
			}
			if (r > 0)
				(*count)++;
		}
		if (rc != 0 || *count == n || c.total <= c.k)
			break;
		for (size_t i = 0; i < *count; i++)
			quarantine_item_free(&items[i]);
		*count = 0;
		for (size_t i = 0; i < c.n; i++)
			free(c.files[i].path);
		free(c.files);
		c.files = NULL;
	}
	return quarantine_list_end(c.files, c.files ? c.n : 0, items, count, rc);
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
		if (errno == ENOENT)
			return 1;   /* gone meanwhile: the sweep's (or a delete's) */
		snprintf(err, errlen, "rename %.400s into %.400s: %s", it->path, dir, strerror(errno));
		return -1;
	}
	/* dated by the release: quarantine.expire keeps the record that long after it (a file
	 * held 29 days and released stays 30 more, not one); failing leaves the hold's date */
	(void)utimensat(AT_FDCWD, to, NULL, AT_SYMLINK_NOFOLLOW);
	return 0;
}

int quarantine_rewrite_rcpts(const char *root, const struct quarantine_item *it, const struct rcpt *rcpts,
    size_t n, char *err, size_t errlen)
{
	char tmp[PATH_MAX], name[256], *sender = NULL, *reason = NULL, *id = NULL, *buf = NULL;
	struct strbuf block = { 0 };
	int in = -1, out = -1, rc = -1;
	off_t off = (off_t)it->env.end;
	const struct quarantine_envelope *e = &it->env;

	if (n == 0 || maildir_make_name(name, sizeof(name)) != 0 ||
	    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", root, name) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%.400s: no name for the rewritten file", root);
		return -1;
	}
	sender = strndup(it->head + e->sender.off, e->sender.len);
	reason = strndup(it->head + e->reason.off, e->reason.len);
	id = strndup(it->head + e->id.off, e->id.len);
	buf = malloc(64 * 1024);
	if (sender == NULL || reason == NULL || id == NULL || buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* the block as the hold wrote it, for these recipients (X-Envelope-To-Blocked too) */
	maildir_quarantine_fields(&block, sender, rcpts, n, id, reason);
	/* the file the block was read from (quarantine_find's), not whatever has the name now */
	in = it->has_fd ? dup(it->fd) : open(it->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0) {
		snprintf(err, errlen, "open %.400s: %s", it->path, strerror(errno));
		goto out;
	}
	/* aside in the maildir's tmp/ (the hold made it; the same file system as the file) */
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0) {
		snprintf(err, errlen, "create %.400s: %s", tmp, strerror(errno));
		goto out;
	}
	if (maildir_write_all(out, block.v, block.len) != 0)
		goto write_fail;
	for (;;) {
		ssize_t r = pread(in, buf, 64 * 1024, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "read %.400s: %s", it->path, strerror(errno));
			goto drop;
		}
		if (r == 0)
			break;
		if (maildir_write_all(out, buf, (size_t)r) != 0)
			goto write_fail;
		off += r;
	}
	if (fsync(out) != 0)
		goto write_fail;
	/* Still the file the block was read from? A delete, the expiry sweep or another
	 * rewrite may have removed or replaced it meanwhile: renaming this copy over the name
	 * would bring back what the operator was told is gone (or undo the other rewrite). */
	if (it->has_fd) {
		struct stat held, now;
		if (fstat(in, &held) != 0 || stat(it->path, &now) != 0 ||
		    held.st_dev != now.st_dev || held.st_ino != now.st_ino) {
			snprintf(err, errlen, "%.400s was deleted, expired or rewritten meanwhile: left as it is",
			    it->path);
			goto drop;
		}
	}
	/* in one step: the file names everyone or only these, never half of it */
	if (rename(tmp, it->path) != 0) {
		snprintf(err, errlen, "rename %.400s over %.400s: %s", tmp, it->path, strerror(errno));
		goto drop;
	}
	/* the held time kept (list shows it where it was, expiry counts from the hold), set only
	 * now: in tmp/ the copy keeps its write's time, so the sweep of stale tmp/ files
	 * (QUARANTINE_TMP_STALE_S) never takes it for one a crash left there */
	struct timespec ts[2] = { { it->mtime, 0 }, { it->mtime, 0 } };
	(void)futimens(out, ts);
	close(out);   /* fsync'd: its data are on disk */
	out = -1;
	/* the rename kept over a crash: the old file (naming everyone) never comes back */
	char dir[PATH_MAX];
	const char *slash = strrchr(it->path, '/');
	if (slash && (size_t)(slash - it->path) < sizeof(dir)) {
		memcpy(dir, it->path, (size_t)(slash - it->path));
		dir[slash - it->path] = '\0';
		(void)maildir_sync_dir(dir);
	}
	rc = 0;
	goto out;
write_fail:
	snprintf(err, errlen, "write %.400s: %s", tmp, strerror(errno));
drop:
	if (out >= 0)
		close(out);
	out = -1;
	unlink(tmp);
out:
	if (in >= 0)
		close(in);
	free(block.v);
	free(buf);
	free(sender);
	free(reason);
	free(id);
	return rc;
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
