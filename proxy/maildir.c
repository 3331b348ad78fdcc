/* maildir.c — Maildir delivery (the classic qmail protocol: write into tmp/, fsync, move
 * into new/). All file system work happens in the libuv thread pool. */
#include "maildir.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "fnv.h"
#include "headers.h"
#include "msgbuf.h"

struct maildir_job {
	uv_work_t req;
	char *root;
	char *prefix;
	size_t prefix_len;
	char tag[64];               /* ",QID=ID" after the unique name, or "" */
	const char *body;           /* msgbuf view taken on the loop thread */
	size_t body_len;
	maildir_done_cb cb;
	void *arg;
	int status;
	char name[256];
	char err[512];
};

/* The unique name's longest: "<sec>.M<usec>P<pid>Q<n>." (20 + 2 + 6 + 1 + 20 + 1 + 20 + 1
 * octets, each number at its type's widest) and the host part: 135. With the ",QID=" field
 * (5 + 40 octets at most: maildir_id_fits_name) it stays under NAME_MAX (255) with 64 to
 * spare for what a maildir reader adds (",S=<size>,W=<vsize>:2,<flags>"). */
#define MAILDIR_UNIQUE_MAX (71 + MAILDIR_HOST_MAX)
_Static_assert(MAILDIR_UNIQUE_MAX + 45 + 64 <= NAME_MAX, "a maildir name leaves a reader room");
_Static_assert(MAILDIR_UNIQUE_MAX < 256 - 64, "the job's name buffer holds the unique name and the tag");

static char maildir_host[MAILDIR_HOST_MAX + 1];
static pthread_once_t maildir_host_once = PTHREAD_ONCE_INIT;
static atomic_ulong maildir_seq;

/* '/' and ':' as the Maildir spec asks; ',' too, so a name's fields (",QID=": a quarantine
 * lookup reads the last one) never start in the host part. */
static bool maildir_host_escapes(char c)
{
	return c == '/' || c == ':' || c == ',';
}

/* See maildir.h. */
size_t maildir_host_part(const char *raw, char *out)
{
	size_t n = strnlen(raw, 1024), full = 0, room = MAILDIR_HOST_MAX, o = 0;

	if (n == 0)
		raw = "localhost", n = 9;
	for (size_t i = 0; i < n; i++)
		full += maildir_host_escapes(raw[i]) ? 4 : 1;
	/* too long: its start, never cut inside an escape, then '-' and 8 hex digits of the
	 * whole name's hash (two long names alike at the start stay apart) */
	if (full > MAILDIR_HOST_MAX)
		room = MAILDIR_HOST_MAX - 9;
	for (size_t i = 0; i < n; i++) {
		bool esc = maildir_host_escapes(raw[i]);
		if (o + (esc ? 4 : 1) > room)
			break;
		if (esc)
			o += (size_t)snprintf(out + o, 5, "\\%03o", (unsigned)(unsigned char)raw[i]);
		else
			out[o++] = raw[i];
	}
	if (full > MAILDIR_HOST_MAX)
		o += (size_t)snprintf(out + o, 10, "-%08x", (unsigned)(fnv1a64(raw, n) & 0xffffffffu));
	out[o] = '\0';
	return o;
}

/* The host part of unique names (maildir_host_part). */
static void maildir_init_host(void)
{
	char raw[HOST_NAME_MAX + 1] = "";

	if (gethostname(raw, sizeof raw) != 0)
		raw[0] = '\0';
	raw[sizeof raw - 1] = '\0';
	maildir_host_part(raw, maildir_host);
}

/* See maildir.h. */
int maildir_make_name(char *buf, size_t len)
{
	struct timeval tv;
	unsigned long q = atomic_fetch_add(&maildir_seq, 1) + 1;

	pthread_once(&maildir_host_once, maildir_init_host);
	gettimeofday(&tv, NULL);
	int n = snprintf(buf, len, "%lld.M%ldP%ldQ%lu.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), q, maildir_host);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* mkdir -p path with mode 0700 for the components it creates. 0 or -1 (errno set). */
static int maildir_mkdirs(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, len + 1);
	while (len > 1 && tmp[len - 1] == '/')
		tmp[--len] = '\0';
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Creates root and its tmp/, new/, cur/ when missing. 0 or -1 with err. */
static int maildir_prepare(const char *root, char *err, size_t errlen)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];
	struct stat st;

	if (stat(root, &st) != 0 && maildir_mkdirs(root) != 0) {
		snprintf(err, errlen, "mkdir %.400s: %s", root, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < 3; i++) {
		if (snprintf(path, sizeof path, "%s/%s", root, subs[i]) >= (int)sizeof path) {
			snprintf(err, errlen, "%.400s: path too long", root);
			return -1;
		}
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %.400s: %s", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* See maildir.h. */
int maildir_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len > (1u << 30) ? (1u << 30) : len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* See maildir.h. */
int maildir_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

/* Thread pool side: the whole delivery. Sets j->status and j->err. */
static void maildir_work_cb(uv_work_t *req)
{
	struct maildir_job *j = req->data;
	char tmp_path[PATH_MAX], new_path[PATH_MAX], new_dir[PATH_MAX];
	int fd = -1;

	j->status = -1;
	if (maildir_prepare(j->root, j->err, sizeof j->err) != 0)
		return;
	/* the unique name, then the tag (room for it kept) */
	if (maildir_make_name(j->name, sizeof j->name - sizeof j->tag) != 0 ||
	    snprintf(j->name + strlen(j->name), sizeof j->tag, "%s", j->tag) < 0 ||
	    snprintf(tmp_path, sizeof tmp_path, "%s/tmp/%s", j->root, j->name) >= (int)sizeof tmp_path ||
	    snprintf(new_path, sizeof new_path, "%s/new/%s", j->root, j->name) >= (int)sizeof new_path ||
	    snprintf(new_dir, sizeof new_dir, "%s/new", j->root) >= (int)sizeof new_dir) {
		snprintf(j->err, sizeof j->err, "%.400s: path too long", j->root);
		return;
	}
	fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(j->err, sizeof j->err, "open %.400s: %s", tmp_path, strerror(errno));
		return;
	}
	if (maildir_write_all(fd, j->prefix, j->prefix_len) != 0 ||
	    maildir_write_all(fd, j->body, j->body_len) != 0) {
		snprintf(j->err, sizeof j->err, "write %.400s: %s", tmp_path, strerror(errno));
		goto fail;
	}
	if (fsync(fd) != 0) {
		snprintf(j->err, sizeof j->err, "fsync %.400s: %s", tmp_path, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(j->err, sizeof j->err, "close %.400s: %s", tmp_path, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp_path, new_path) != 0) {
		snprintf(j->err, sizeof j->err, "rename into %.400s: %s", new_dir, strerror(errno));
		goto fail;
	}
	/* The file is in new/ already and readers see it; failing now would make the relay
	 * deliver it a second time elsewhere, so a failed directory fsync is not an error. */
	(void)maildir_sync_dir(new_dir);
	j->status = 0;
	return;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp_path);
}

/* Loop side: report and free. */
static void maildir_after_work_cb(uv_work_t *req, int status)
{
	struct maildir_job *j = req->data;

	if (status == UV_ECANCELED) {
		j->status = -1;
		snprintf(j->err, sizeof j->err, "delivery cancelled");
	}
	j->cb(j->arg, j->status, j->status == 0 ? j->name : "", j->status == 0 ? "" : j->err);
	free(j->root);
	free(j->prefix);
	free(j);
}

/* See maildir.h. */
int maildir_deliver(uv_loop_t *loop, const char *root, const char *prefix, size_t prefix_len,
    struct msgbuf *msg, size_t off, maildir_done_cb cb, void *arg)
{
	return maildir_deliver_tagged(loop, root, NULL, prefix, prefix_len, msg, off, cb, arg);
}

/* Whether id may go into a file name: 1..40 octets of [0-9A-Za-z] (no '/', ':' or ','). An
 * id that may not is left out of it (the file is found by reading its head). */
static bool maildir_id_fits_name(const char *id)
{
	size_t n = 0;

	if (id == NULL)
		return false;
	for (; id[n]; n++)
		if (n >= 40 || !isalnum((unsigned char)id[n]))
			return false;
	return n > 0;
}

/* See maildir.h. */
int maildir_deliver_tagged(uv_loop_t *loop, const char *root, const char *id, const char *prefix,
    size_t prefix_len, struct msgbuf *msg, size_t off, maildir_done_cb cb, void *arg)
{
	struct maildir_job *j;
	size_t len = 0;
	const char *data;

	if (!loop || !root || !*root || !cb)
		return -1;
	data = msg ? msgbuf_data(msg, &len) : "";
	if (!data)
		return -1;
	if (off > len)
		off = len;
	j = calloc(1, sizeof *j);
	if (!j)
		return -1;
	j->root = strdup(root);
	if (!j->root)
		goto fail;
	if (maildir_id_fits_name(id))
		snprintf(j->tag, sizeof j->tag, MAILDIR_ID_FIELD "%s", id);
	if (prefix && prefix_len) {
		j->prefix = malloc(prefix_len);
		if (!j->prefix)
			goto fail;
		memcpy(j->prefix, prefix, prefix_len);
		j->prefix_len = prefix_len;
	}
	j->body = data + off;
	j->body_len = len - off;
	j->cb = cb;
	j->arg = arg;
	j->req.data = j;
	if (uv_queue_work(loop, &j->req, maildir_work_cb, maildir_after_work_cb) != 0)
		goto fail;
	return 0;
fail:
	free(j->root);
	free(j->prefix);
	free(j);
	return -1;
}

/* See maildir.h. */
int maildir_check_writable(const char *root, char *err, size_t errlen)
{
	char name[256], path[PATH_MAX];
	int fd;

	if (maildir_prepare(root, err, errlen) != 0)
		return -1;
	if (maildir_make_name(name, sizeof name) != 0 ||
	    snprintf(path, sizeof path, "%s/tmp/%s.probe", root, name) >= (int)sizeof path) {
		snprintf(err, errlen, "%.400s: path too long", root);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "open %.400s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	unlink(path);
	/* new/ must take a rename too; a writable tmp/ with a read-only new/ is still down. */
	if (snprintf(path, sizeof path, "%s/new", root) < (int)sizeof path && access(path, W_OK | X_OK) != 0) {
		snprintf(err, errlen, "%.400s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* a with control octets as '?'. */
static void maildir_append_clean(struct strbuf *out, const char *a)
{
	for (const char *p = a ? a : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;

		strbuf_append(out, c < 0x20 || c == 0x7f ? "?" : p, 1);
	}
}

/* "<addr>" with control octets as '?'. */
static void maildir_append_addr(struct strbuf *out, const char *a)
{
	strbuf_append(out, "<", 1);
	maildir_append_clean(out, a);
	strbuf_append(out, ">", 1);
}

static void maildir_append_rcpts(struct strbuf *out, const char *field, const struct rcpt *rcpts,
    size_t n)
{
	strbuf_append(out, field, strlen(field));
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			strbuf_append(out, ",\r\n ", 4);
		maildir_append_addr(out, rcpts[i].addr);
	}
	strbuf_append(out, "\r\n", 2);
}

void maildir_quarantine_fields(struct strbuf *out, const char *sender, const struct rcpt *rcpts,
    size_t nrcpts, const char *queue_id, const char *reason)
{
	static const char rp[] = "Return-Path: ", ef[] = "X-Envelope-From: ",
	    qi[] = "X-Quarantine-ID: ";

	strbuf_append(out, rp, sizeof(rp) - 1);
	maildir_append_addr(out, sender);
	strbuf_append(out, "\r\n", 2);
	strbuf_append(out, ef, sizeof(ef) - 1);
	maildir_append_addr(out, sender);
	strbuf_append(out, "\r\n", 2);
	maildir_append_rcpts(out, "X-Envelope-To: ", rcpts, nrcpts);
	maildir_append_rcpts(out, "X-Envelope-To-Blocked: ", rcpts, nrcpts);
	if (reason && *reason) {
		static const char qr[] = "X-Quarantine-Reason: ";
		strbuf_append(out, qr, sizeof(qr) - 1);
		maildir_append_clean(out, reason);
		strbuf_append(out, "\r\n", 2);
	}
	strbuf_append(out, qi, sizeof(qi) - 1);
	maildir_append_addr(out, queue_id);
	strbuf_append(out, "\r\n", 2);
}
