/* listfile.c — the `file:` lists' contents kept between config loads (see listfile.h). */
#include "listfile.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/vfs.h>

#include "cidr.h"
#include "fnv.h"
#include "log.h"

struct listfile {
	unsigned refs;            /* under listfile_mu */
	char *text;               /* NUL-terminated */
	size_t len;
	struct cfg_cidr *cidr;    /* listfile_keep_cidrs's */
	size_t ncidr;
	bool has_cidr;            /* cidr and ncidr set (an empty list too) */
};

/* One path the last loads read: its stat at the read and whether that read can stand for
 * the file while the stat stays (listfile_is_settled). */
struct listfile_entry {
	struct listfile_entry *next;   /* the bucket's chain */
	uint64_t hash;
	char *path;
	struct stat st;
	bool settled;
	unsigned long seen;            /* the last load that asked for it */
	struct listfile *f;            /* the table's reference */
};

static pthread_mutex_t listfile_mu = PTHREAD_MUTEX_INITIALIZER;
static struct listfile_entry **listfile_buckets;
static size_t listfile_nbuckets, listfile_n;
static unsigned long listfile_load;     /* the current load's number */
static size_t listfile_nread, listfile_nkept;

/* The devices whose file system one load asked statfs about (a device number freed by an
 * unmount can come back for another file system: asked again at each load). */
static struct { dev_t dev; bool local; } listfile_devs[16];
static size_t listfile_ndevs;

bool listfile_is_settled(const struct stat *st, const struct timespec *read_at)
{
	long long c = (long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
	long long r = (long long)read_at->tv_sec * 1000000000LL + read_at->tv_nsec;

	return c <= r - LISTFILE_SETTLE_NS;
}

/* Whether a and b are the same file in the same state as far as stat tells. */
static bool listfile_same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	    a->st_mode == b->st_mode && a->st_rdev == b->st_rdev &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Under listfile_mu. */
static void listfile_unref_locked(struct listfile *f)
{
	if (f == NULL || --f->refs > 0)
		return;
	free(f->text);
	free(f->cidr);
	free(f);
}

static void listfile_entry_free_locked(struct listfile_entry *e)
{
	listfile_unref_locked(e->f);
	free(e->path);
	free(e);
}

/* The entry of path (hash h), or NULL. Under listfile_mu. */
static struct listfile_entry *listfile_find_locked(const char *path, uint64_t h)
{
	if (listfile_nbuckets == 0)
		return NULL;
	for (struct listfile_entry *e = listfile_buckets[h % listfile_nbuckets]; e; e = e->next)
		if (e->hash == h && strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

/* Adds e (not in the table). 0, or -1 out of memory (e not added). Under listfile_mu. */
static int listfile_insert_locked(struct listfile_entry *e)
{
	if (listfile_n >= listfile_nbuckets) {
		size_t nb = listfile_nbuckets ? listfile_nbuckets * 2 : 64;
		struct listfile_entry **b = calloc(nb, sizeof(*b));

		if (b == NULL)
			return -1;
		for (size_t i = 0; i < listfile_nbuckets; i++) {
			struct listfile_entry *x = listfile_buckets[i], *next;

			for (; x; x = next) {
				next = x->next;
				x->next = b[x->hash % nb];
				b[x->hash % nb] = x;
			}
		}
		free(listfile_buckets);
		listfile_buckets = b;
		listfile_nbuckets = nb;
	}
	e->next = listfile_buckets[e->hash % listfile_nbuckets];
	listfile_buckets[e->hash % listfile_nbuckets] = e;
	listfile_n++;
	return 0;
}

/* Removes and frees the entries for which drop(e) holds. Under listfile_mu. */
static void listfile_sweep_locked(bool (*drop)(const struct listfile_entry *))
{
	for (size_t i = 0; i < listfile_nbuckets; i++) {
		struct listfile_entry **pp = &listfile_buckets[i];

		while (*pp) {
			struct listfile_entry *e = *pp;

			if (drop(e)) {
				*pp = e->next;
				listfile_n--;
				listfile_entry_free_locked(e);
			} else {
				pp = &e->next;
			}
		}
	}
}

static bool listfile_is_unused(const struct listfile_entry *e)
{
	return e->seen != listfile_load;
}

static bool listfile_is_any(const struct listfile_entry *e)
{
	(void)e;
	return true;
}

void listfile_load_begin(void)
{
	pthread_mutex_lock(&listfile_mu);
	listfile_load++;
	listfile_nread = listfile_nkept = 0;
	listfile_ndevs = 0;
	pthread_mutex_unlock(&listfile_mu);
}

void listfile_load_end(size_t *nread, size_t *nkept)
{
	pthread_mutex_lock(&listfile_mu);
	listfile_sweep_locked(listfile_is_unused);
	if (nread)
		*nread = listfile_nread;
	if (nkept)
		*nkept = listfile_nkept;
	pthread_mutex_unlock(&listfile_mu);
}

bool listfile_fs_is_local(unsigned long magic)
{
	/* statfs(2)'s f_type of the file systems whose stat is the inode's own state: ext2/3/4,
	 * XFS, Btrfs, tmpfs (and devtmpfs), ramfs, overlayfs, ZFS, F2FS, squashfs */
	static const unsigned long local[] = { 0xEF53, 0x58465342, 0x9123683E, 0x01021994,
		0x858458F6, 0x794C7630, 0x2FC12FC1, 0xF2F52010, 0x73717368 };

	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		if (local[i] == magic)
			return true;
	return false;
}

/* Whether dev (of path) is on a local file system: statfs once per device and load (up to
 * 16 devices; past them, asked each time). Under listfile_mu. */
static bool listfile_dev_is_local_locked(dev_t dev, const char *path)
{
	struct statfs sf;
	bool local;

	for (size_t i = 0; i < listfile_ndevs; i++)
		if (listfile_devs[i].dev == dev)
			return listfile_devs[i].local;
	local = statfs(path, &sf) == 0 && listfile_fs_is_local((unsigned long)sf.f_type);
	if (listfile_ndevs < sizeof(listfile_devs) / sizeof(listfile_devs[0])) {
		listfile_devs[listfile_ndevs].dev = dev;
		listfile_devs[listfile_ndevs].local = local;
		listfile_ndevs++;
	}
	return local;
}

/* The kept text of path when the file is still the one read (an extra reference), else
 * NULL. Under listfile_mu. */
static struct listfile *listfile_take_kept_locked(struct listfile_entry *e, const char *path)
{
	struct stat st;
	int fd, rc;

	if (e == NULL || !e->settled)
		return NULL;
	if (stat(path, &st) != 0 || !listfile_same_stat(&st, &e->st))
		return NULL;
	/* on a file system other than the local ones, open and fstat too: an NFS client
	 * revalidates a file's attributes at open (close-to-open consistency), while a stat may
	 * answer from its attribute cache (up to acregmax, 60 s) with a file another host
	 * changed; O_NONBLOCK as cidr_file_read's */
	if (!listfile_dev_is_local_locked(st.st_dev, path)) {
		if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
			return NULL;
		rc = fstat(fd, &st);
		close(fd);
		if (rc != 0 || !listfile_same_stat(&st, &e->st))
			return NULL;
	}
	e->f->refs++;
	return e->f;
}

struct listfile *listfile_get(const char *path, const char **errstr)
{
	uint64_t h = fnv1a64_str(path);
	struct listfile *f;
	struct listfile_entry *e;
	struct timespec read_at;
	struct stat st;

	pthread_mutex_lock(&listfile_mu);
	e = listfile_find_locked(path, h);
	if (e != NULL)
		e->seen = listfile_load;
	f = listfile_take_kept_locked(e, path);
	if (f != NULL) {
		listfile_nkept++;
		pthread_mutex_unlock(&listfile_mu);
		log_event(LOG_LVL_DEBUG, NULL, "event=list_file path=%s action=kept octets=%zu", path, f->len);
		return f;
	}
	pthread_mutex_unlock(&listfile_mu);

	/* read outside the lock: a load is the only caller, and the file may be large */
	clock_gettime(CLOCK_REALTIME, &read_at);
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		*errstr = "out of memory";
		return NULL;
	}
	if ((f->text = cidr_file_read_stat(path, &f->len, &st, errstr)) == NULL) {
		free(f);
		/* what was kept is not the file any more: never taken again (forgotten at the
		 * load's end unless a later ask reads the file) */
		pthread_mutex_lock(&listfile_mu);
		if ((e = listfile_find_locked(path, h)) != NULL) {
			e->settled = false;
			e->seen = 0;
		}
		pthread_mutex_unlock(&listfile_mu);
		return NULL;
	}
	f->refs = 1;
	log_event(LOG_LVL_DEBUG, NULL, "event=list_file path=%s action=read octets=%zu", path, f->len);

	pthread_mutex_lock(&listfile_mu);
	listfile_nread++;
	e = listfile_find_locked(path, h);
	if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
		e->hash = h;
		if ((e->path = strdup(path)) == NULL || listfile_insert_locked(e) < 0) {
			free(e->path);
			free(e);
			e = NULL;	/* not kept: read again next time */
		}
	}
	if (e != NULL) {
		listfile_unref_locked(e->f);
		e->f = f;
		f->refs++;
		e->st = st;
		e->settled = listfile_is_settled(&st, &read_at);
		e->seen = listfile_load;
	}
	pthread_mutex_unlock(&listfile_mu);
	return f;
}

const char *listfile_text(const struct listfile *f, size_t *len)
{
	*len = f->len;
	return f->text;
}

bool listfile_cidrs(const struct listfile *f, const struct cfg_cidr **v, size_t *n)
{
	*v = f->cidr;
	*n = f->ncidr;
	return f->has_cidr;
}

void listfile_keep_cidrs(struct listfile *f, struct cfg_cidr *v, size_t n)
{
	pthread_mutex_lock(&listfile_mu);
	if (!f->has_cidr) {
		f->cidr = v;
		f->ncidr = n;
		f->has_cidr = true;
		v = NULL;
	}
	pthread_mutex_unlock(&listfile_mu);
	free(v);
}

void listfile_release(struct listfile *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&listfile_mu);
	listfile_unref_locked(f);
	pthread_mutex_unlock(&listfile_mu);
}

void listfile_forget_all(void)
{
	pthread_mutex_lock(&listfile_mu);
	listfile_sweep_locked(listfile_is_any);
	free(listfile_buckets);
	listfile_buckets = NULL;
	listfile_nbuckets = 0;
	pthread_mutex_unlock(&listfile_mu);
}
