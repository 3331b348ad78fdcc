/* listfile.c — the `file:` lists' contents kept between config loads (see listfile.h). */
#include "listfile.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/vfs.h>

#include "cidr.h"
#include "fnv.h"
#include "log.h"

/* Where what is kept lives: not in the malloc heap but in blocks of its own, mapped with
 * mmap. A load's parse makes many short-lived allocations; the kept texts, read among them
 * and living on, would each pin the heap page it sits on, and the malloc_trim(0) at the end
 * of a load (cfg_load.c) cannot give a page back while one chunk on it is in use: the
 * 3,000-customer hosting bench (6,300 files, 5-6 MB kept) went from 52 MB to 67 MB resident
 * over its reloads, its heap 53 MB resident for 22 MB in use. Objects (an entry
 * with its path, a text, a list of CIDRs) are bump-allocated in the last block and never
 * freed one by one: one that is not needed any more (a file forgotten, or read again) is
 * counted dead, and at the end of a load whose dead octets pass a quarter of the live ones
 * (and LISTFILE_DEAD_MIN) every live object is copied into one new block and the old blocks
 * are unmapped. So what is mapped stays within 1.25 times what is kept, plus
 * LISTFILE_DEAD_MIN and the untouched tail of the last block (pages never written cost no
 * memory). The move is made only while no caller holds a reference (listfile_lent): between
 * loads, none does (cfg.c copies what it takes). */
struct listfile_block {
	struct listfile_block *next;
	size_t size, used;        /* mapped octets (this header included), used of them */
};

#define LISTFILE_BLOCK_MIN  (1024 * 1024)
#define LISTFILE_DEAD_MIN   (64 * 1024)
#define LISTFILE_ALIGN      16
/* A text or a list of CIDRs this large gets a mapping of its own, never moved (a move of the
 * 100,000-line files of bench_reload_files.py at every reload that re-read one cost 40 ms),
 * unmapped at the end of the first load after it died (listfile_free_dead_locked). */
#define LISTFILE_BIG        (64 * 1024)

struct listfile {
	char *text;               /* NUL-terminated: in the block after this, or its own (big) */
	size_t len;
	struct cfg_cidr *cidr;    /* listfile_keep_cidrs's: in a block, or its own (big) */
	size_t ncidr;
	bool has_cidr;            /* cidr and ncidr set (an empty list too) */
	bool dead;                /* out of the table (listfile_text_dead_locked) */
	struct listfile *next_dead;   /* listfile_dead_big's chain */
};

/* One path the last loads read: its stat at the read and whether that read can stand for
 * the file while the stat stays (listfile_is_settled). */
struct listfile_entry {
	struct listfile_entry *next;   /* the bucket's chain */
	uint64_t hash;
	struct stat st;
	bool settled;
	unsigned long seen;            /* the last load that asked for it */
	struct listfile *f;            /* the text read last */
	char path[];
};

static pthread_mutex_t listfile_mu = PTHREAD_MUTEX_INITIALIZER;
static struct listfile_entry **listfile_buckets;
static size_t listfile_nbuckets, listfile_n;
static unsigned long listfile_load;     /* the current load's number */
static size_t listfile_nread, listfile_nkept;
static struct listfile_block *listfile_blocks;   /* the newest first: allocations go there */
static size_t listfile_live, listfile_dead;      /* octets of the objects in use, not in use */
static size_t listfile_lent;                     /* references listfile_get handed out */
static struct listfile *listfile_dead_big;       /* dead, with a big text or CIDRs */
static size_t listfile_big_mapped;               /* octets of the big ones' mappings */

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

static size_t listfile_round(size_t n)
{
	return (n + LISTFILE_ALIGN - 1) & ~(size_t)(LISTFILE_ALIGN - 1);
}

/* Maps a block for at least n octets past its header (NULL: out of memory). */
static struct listfile_block *listfile_block_map(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = listfile_round(sizeof(struct listfile_block)) + n;
	struct listfile_block *b;

	size = (size + page - 1) / page * page;
	b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return NULL;
	b->next = NULL;
	b->size = size;
	b->used = listfile_round(sizeof(*b));
	return b;
}

/* A copy of the n octets at p in a mapping of its own (listfile_big_unmap_locked), or NULL. Under
 * listfile_mu. */
static void *listfile_big_copy_locked(const void *p, size_t n)
{
	struct listfile_block *b = listfile_block_map(n);

	if (b == NULL)
		return NULL;
	listfile_big_mapped += b->size;
	memcpy((char *)b + b->used, p, n);
	return (char *)b + b->used;
}

static void listfile_big_unmap_locked(void *p)
{
	struct listfile_block *b = (void *)((char *)p - listfile_round(sizeof(*b)));

	listfile_big_mapped -= b->size;
	munmap(b, b->size);
}

static void listfile_blocks_unmap(struct listfile_block *b)
{
	for (struct listfile_block *next; b; b = next) {
		next = b->next;
		munmap(b, b->size);
	}
}

/* n octets in the newest block (a new one mapped when they do not fit), counted live; NULL
 * out of memory. Under listfile_mu. */
static void *listfile_alloc_locked(size_t n)
{
	struct listfile_block *b = listfile_blocks;
	void *p;

	n = listfile_round(n ? n : 1);
	if (b == NULL || b->size - b->used < n) {
		if ((b = listfile_block_map(n > LISTFILE_BLOCK_MIN ? n : LISTFILE_BLOCK_MIN)) == NULL)
			return NULL;
		b->next = listfile_blocks;
		listfile_blocks = b;
	}
	p = (char *)b + b->used;
	b->used += n;
	listfile_live += n;
	return p;
}

static bool listfile_big_text(const struct listfile *f)
{
	return f->len + 1 >= LISTFILE_BIG;
}

static bool listfile_big_cidrs(const struct listfile *f)
{
	return f->has_cidr && f->ncidr * sizeof(*f->cidr) >= LISTFILE_BIG;
}

/* The octets of f in blocks (listfile_alloc_locked's rounding). */
static size_t listfile_text_size(const struct listfile *f)
{
	size_t n = listfile_round(sizeof(*f) + (listfile_big_text(f) ? 0 : f->len + 1));

	if (f->has_cidr && !listfile_big_cidrs(f))
		n += listfile_round(f->ncidr ? f->ncidr * sizeof(*f->cidr) : 1);
	return n;
}

/* Counts f dead: its big parts unmapped by listfile_free_dead_locked. Under listfile_mu. */
static void listfile_text_dead_locked(struct listfile *f)
{
	size_t n = listfile_text_size(f);

	f->dead = true;
	listfile_live -= n;
	listfile_dead += n;
	if (listfile_big_text(f) || listfile_big_cidrs(f)) {
		f->next_dead = listfile_dead_big;
		listfile_dead_big = f;
	}
}

/* Unmaps the big texts and CIDRs of the dead, when no reference is out. Under
 * listfile_mu. */
static void listfile_free_dead_locked(void)
{
	if (listfile_lent > 0)
		return;
	for (struct listfile *f = listfile_dead_big; f; f = f->next_dead) {
		if (listfile_big_text(f))
			listfile_big_unmap_locked(f->text);
		if (listfile_big_cidrs(f))
			listfile_big_unmap_locked(f->cidr);
	}
	listfile_dead_big = NULL;
}

static size_t listfile_entry_size(const struct listfile_entry *e)
{
	return listfile_round(sizeof(*e) + strlen(e->path) + 1) + (e->f ? listfile_text_size(e->f) : 0);
}

/* Counts e (out of the table) and its text dead. Under listfile_mu. */
static void listfile_entry_free_locked(struct listfile_entry *e)
{
	size_t n = listfile_round(sizeof(*e) + strlen(e->path) + 1);

	listfile_live -= n;
	listfile_dead += n;
	if (e->f != NULL)
		listfile_text_dead_locked(e->f);
}

/* A copy of f in the newest block (its big parts not copied: the copy takes them);
 * NULL out of memory. Under listfile_mu. */
static struct listfile *listfile_text_copy_locked(const struct listfile *f)
{
	bool big = listfile_big_text(f);
	struct listfile *c = listfile_alloc_locked(sizeof(*f) + (big ? 0 : f->len + 1));

	if (c == NULL)
		return NULL;
	*c = *f;
	if (!big) {
		c->text = (char *)(c + 1);
		memcpy(c->text, f->text, f->len + 1);
	}
	if (f->has_cidr && !listfile_big_cidrs(f)) {
		if ((c->cidr = listfile_alloc_locked(f->ncidr * sizeof(*f->cidr))) == NULL)
			return NULL;
		if (f->ncidr)
			memcpy(c->cidr, f->cidr, f->ncidr * sizeof(*f->cidr));
	}
	return c;
}

static int listfile_insert_locked(struct listfile_entry *e);

/* When the dead octets pass a quarter of the live ones (and LISTFILE_DEAD_MIN) and no
 * reference is out: every entry and text copied into one new block, the old blocks
 * unmapped (none when nothing is kept). On out of memory, nothing moves. Under listfile_mu. */
static void listfile_compact_locked(void)
{
	struct listfile_block *old = listfile_blocks, *b = NULL;
	struct listfile_entry *chain = NULL;
	size_t live = 0;

	if (listfile_lent > 0 || listfile_dead < LISTFILE_DEAD_MIN || listfile_dead <= listfile_live / 4)
		return;
	/* the size from the entries themselves (the counts are the threshold's) */
	for (size_t i = 0; i < listfile_nbuckets; i++)
		for (struct listfile_entry *e = listfile_buckets[i]; e; e = e->next)
			live += listfile_entry_size(e);
	if (live > 0 && (b = listfile_block_map(live)) == NULL)
		return;
	listfile_blocks = b;
	listfile_live = 0;
	/* every entry out of its bucket into one chain, then a copy of each back in (the
	 * bucket array stays as large: the inserts cannot fail) */
	for (size_t i = 0; i < listfile_nbuckets; i++) {
		for (struct listfile_entry *e = listfile_buckets[i], *next; e; e = next) {
			next = e->next;
			e->next = chain;
			chain = e;
		}
		listfile_buckets[i] = NULL;
	}
	listfile_n = 0;
	for (struct listfile_entry *e = chain; e; e = e->next) {
		size_t plen = strlen(e->path) + 1;
		struct listfile_entry *c = listfile_alloc_locked(sizeof(*e) + plen);

		memcpy(c, e, sizeof(*e) + plen);
		if (e->f)
			c->f = listfile_text_copy_locked(e->f);
		listfile_insert_locked(c);
	}
	listfile_dead = 0;
	listfile_blocks_unmap(old);
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
	listfile_free_dead_locked();
	listfile_compact_locked();
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
	listfile_lent++;
	return e->f;
}

struct listfile *listfile_get(const char *path, const char **errstr)
{
	uint64_t h = fnv1a64_str(path);
	struct listfile *f;
	struct listfile_entry *e;
	struct timespec read_at;
	struct stat st;
	char *text;
	size_t len;
	bool big;

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

	/* read outside the lock: a load is the only caller, and the file may be large; into
	 * the heap, short-lived, as the parse's allocations, then copied into a block */
	clock_gettime(CLOCK_REALTIME, &read_at);
	if ((text = cidr_file_read_stat(path, &len, &st, errstr)) == NULL) {
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
	log_event(LOG_LVL_DEBUG, NULL, "event=list_file path=%s action=read octets=%zu", path, len);

	pthread_mutex_lock(&listfile_mu);
	big = len + 1 >= LISTFILE_BIG;
	f = listfile_alloc_locked(sizeof(*f) + (big ? 0 : len + 1));
	if (f != NULL) {
		memset(f, 0, sizeof(*f));
		f->len = len;
		f->text = big ? listfile_big_copy_locked(text, len + 1) : (char *)(f + 1);
	}
	if (f == NULL || f->text == NULL) {
		if (f != NULL) {	/* the header alone, dead */
			listfile_live -= listfile_round(sizeof(*f));
			listfile_dead += listfile_round(sizeof(*f));
		}
		pthread_mutex_unlock(&listfile_mu);
		free(text);
		*errstr = "out of memory";
		return NULL;
	}
	if (!big)
		memcpy(f->text, text, len + 1);
	free(text);
	listfile_lent++;
	listfile_nread++;
	e = listfile_find_locked(path, h);
	if (e == NULL && (e = listfile_alloc_locked(sizeof(*e) + strlen(path) + 1)) != NULL) {
		memset(e, 0, sizeof(*e));
		e->hash = h;
		strcpy(e->path, path);
		if (listfile_insert_locked(e) < 0) {
			listfile_entry_free_locked(e);
			e = NULL;	/* not kept: read again next time */
		}
	}
	if (e != NULL) {
		if (e->f != NULL)	/* the text read before */
			listfile_text_dead_locked(e->f);
		e->f = f;
		e->st = st;
		e->settled = listfile_is_settled(&st, &read_at);
		e->seen = listfile_load;
	} else {
		listfile_text_dead_locked(f);
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

void listfile_keep_cidrs(struct listfile *f, const struct cfg_cidr *v, size_t n)
{
	struct cfg_cidr *c;

	pthread_mutex_lock(&listfile_mu);
	/* a copy; not kept when out of memory (parsed again at the next load) */
	if (f->dead || f->has_cidr) {
		c = NULL;	/* dead: read again, a text no load takes again */
	} else if (n * sizeof(*c) >= LISTFILE_BIG) {
		c = listfile_big_copy_locked(v, n * sizeof(*c));
	} else if ((c = listfile_alloc_locked(n * sizeof(*c))) != NULL && n) {
		memcpy(c, v, n * sizeof(*c));
	}
	if (c != NULL) {
		f->cidr = c;
		f->ncidr = n;
		f->has_cidr = true;
	}
	pthread_mutex_unlock(&listfile_mu);
}

void listfile_release(struct listfile *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&listfile_mu);
	listfile_lent--;
	pthread_mutex_unlock(&listfile_mu);
}

void listfile_usage(size_t *live, size_t *mapped)
{
	pthread_mutex_lock(&listfile_mu);
	*live = listfile_live;
	*mapped = 0;
	for (const struct listfile_block *b = listfile_blocks; b; b = b->next)
		*mapped += b->size;
	*mapped += listfile_big_mapped;
	pthread_mutex_unlock(&listfile_mu);
}

void listfile_forget_all(void)
{
	pthread_mutex_lock(&listfile_mu);
	listfile_sweep_locked(listfile_is_any);
	free(listfile_buckets);
	listfile_buckets = NULL;
	listfile_nbuckets = 0;
	/* the blocks with them, unless a reference is out (then at a later load's end) */
	listfile_free_dead_locked();
	if (listfile_lent == 0) {
		listfile_blocks_unmap(listfile_blocks);
		listfile_blocks = NULL;
		listfile_live = listfile_dead = 0;
	}
	pthread_mutex_unlock(&listfile_mu);
}
