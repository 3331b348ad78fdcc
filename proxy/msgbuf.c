/* msgbuf.c — a held message: memory up to a threshold, then an unlinked temp file read
 * back through mmap. */
#include "msgbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct msgbuf {
    size_t threshold;
    char *dir;              /* spill directory (owned) */
    char *mem;              /* in-memory content while not spilled */
    size_t cap;
    size_t len;
    int fd;                 /* spill file, -1 while in memory */
    void *map;              /* current mapping of the spill file, NULL if none */
    size_t maplen;
    bool failed;            /* a file error happened: every later append fails */
    int err;                /* its errno (msgbuf_error) */
    size_t hdr_len;         /* msgbuf_header_len's answer, valid while hdr_known */
    bool hdr_known;         /* (until the next append or reset) */
    struct msgbuf_pin *pin; /* the pin of the in-memory content, which mem still is */
};

/* See msgbuf.h. While mb is set, data is mb->mem (the buffer's storage, which must not
 * change); once the buffer left the storage to the pin, mem and cap are the pin's (still
 * counted in msgbuf_mem_used). A spilled message's pin has its own mapping, never an mb. */
struct msgbuf_pin {
    unsigned refs;
    struct msgbuf *mb;
    const char *data;
    size_t len;
    char *mem;
    size_t cap;
    void *map;
    size_t maplen;
};

/* Message bytes held in memory by every buffer of the process (their allocations), and the
 * budget past which a buffer spills to its file whatever its threshold (0: none). */
static atomic_size_t msgbuf_mem_used;
static atomic_size_t msgbuf_mem_budget;

bool
msgbuf_spool_fits(const char *dir, uint64_t size, uint64_t *avail)
{
    struct statvfs sv;
    uint64_t free_octets;

    *avail = UINT64_MAX;
    if (statvfs(dir ? dir : "/tmp", &sv) != 0)
        return true;
    /* in blocks, as Postfix compares, so nothing overflows */
    if (sv.f_frsize == 0)
        return true;
    free_octets = (uint64_t)sv.f_bavail * sv.f_frsize;
    *avail = free_octets / sv.f_frsize == sv.f_bavail ? free_octets : UINT64_MAX;
    return size / sv.f_frsize < sv.f_bavail / 2;
}

void
msgbuf_set_budget(size_t budget)
{
    atomic_store_explicit(&msgbuf_mem_budget, budget, memory_order_relaxed);
}

size_t
msgbuf_mem_in_use(void)
{
    return atomic_load_explicit(&msgbuf_mem_used, memory_order_relaxed);
}

/* Warm allocations: the storage of a large message buffer, kept at the end of its message
 * (msgbuf_clear_warm) for the next large message of the same thread, so its pages are not
 * given back to the kernel by malloc's trim and faulted in again. At most MSGBUF_WARM_SLOTS
 * a thread (a worker), each over MSGBUF_WARM_MIN and at most MSGBUF_WARM_MAX octets, counted
 * in msgbuf_mem_used while kept. A slot holds the allocation, its capacity in its first
 * word. Any thread may empty any slot (an atomic exchange): a growth that would pass the
 * budget frees every thread's first (msgbuf_warm_drop); a thread's own go when its worker
 * has no session left (msgbuf_warm_release). */
#define MSGBUF_WARM_THREADS 64
#define MSGBUF_WARM_SLOTS 4
#define MSGBUF_WARM_MIN 16384
#define MSGBUF_WARM_MAX (1024 * 1024)
static _Atomic(char *) msgbuf_warm[MSGBUF_WARM_THREADS][MSGBUF_WARM_SLOTS];
static atomic_int msgbuf_warm_rows;
static _Thread_local int msgbuf_warm_row = -1;     /* this thread's row; -1 none yet */

static size_t
msgbuf_warm_cap(const char *p)
{
    size_t cap;

    memcpy(&cap, p, sizeof(cap));
    return cap;
}

/* Frees the allocation a slot held (taken out of it already). */
static void
msgbuf_warm_free(char *p)
{
    atomic_fetch_sub_explicit(&msgbuf_mem_used, msgbuf_warm_cap(p), memory_order_relaxed);
    free(p);
}

/* Empties row's slots (every row's when row < 0); the number of octets freed. */
static size_t
msgbuf_warm_drop(int row)
{
    int first = row < 0 ? 0 : row, last = row < 0 ? atomic_load(&msgbuf_warm_rows) - 1 : row;
    size_t freed = 0;

    if (last >= MSGBUF_WARM_THREADS)
        last = MSGBUF_WARM_THREADS - 1;
    for (int r = first; r <= last; r++)
        for (int i = 0; i < MSGBUF_WARM_SLOTS; i++) {
            char *p = atomic_exchange(&msgbuf_warm[r][i], NULL);
            if (p != NULL) {
                freed += msgbuf_warm_cap(p);
                msgbuf_warm_free(p);
            }
        }
    return freed;
}

/* A kept allocation of this thread's of at least need and at most max octets, taken out of
 * its slot (still counted: the taker's now), its capacity in *cap; NULL when none. */
static char *
msgbuf_warm_take(size_t need, size_t max, size_t *cap)
{
    int row = msgbuf_warm_row;

    if (row < 0 || need <= MSGBUF_WARM_MIN)
        return NULL;
    for (int i = 0; i < MSGBUF_WARM_SLOTS; i++) {
        char *p = atomic_load(&msgbuf_warm[row][i]);
        if (p != NULL && msgbuf_warm_cap(p) >= need && msgbuf_warm_cap(p) <= max &&
            atomic_compare_exchange_strong(&msgbuf_warm[row][i], &p, NULL)) {
            *cap = msgbuf_warm_cap(p);
            return p;
        }
    }
    return NULL;
}

/* Whether msgbuf_warm_take would give an allocation now (another thread may take it away
 * first under budget pressure: a bound, as msgbuf_fits_budget says). */
static bool
msgbuf_warm_has(size_t need, size_t max)
{
    int row = msgbuf_warm_row;

    if (row < 0 || need <= MSGBUF_WARM_MIN)
        return false;
    for (int i = 0; i < MSGBUF_WARM_SLOTS; i++) {
        char *p = atomic_load(&msgbuf_warm[row][i]);
        if (p != NULL && msgbuf_warm_cap(p) >= need && msgbuf_warm_cap(p) <= max)
            return true;
    }
    return false;
}

/* Keeps p (cap octets, counted) in a free slot of this thread's; false when none is free or
 * it is not a size kept (the caller frees it). */
static bool
msgbuf_warm_put(char *p, size_t cap)
{
    if (cap <= MSGBUF_WARM_MIN || cap > MSGBUF_WARM_MAX)
        return false;
    if (msgbuf_warm_row < 0) {
        int row = atomic_fetch_add(&msgbuf_warm_rows, 1);
        if (row >= MSGBUF_WARM_THREADS) {
            atomic_fetch_sub(&msgbuf_warm_rows, 1);
            return false;
        }
        msgbuf_warm_row = row;
    }
    memcpy(p, &cap, sizeof(cap));
    for (int i = 0; i < MSGBUF_WARM_SLOTS; i++) {
        char *none = NULL;
        if (atomic_compare_exchange_strong(&msgbuf_warm[msgbuf_warm_row][i], &none, p))
            return true;
    }
    return false;
}

/* See msgbuf.h. */
void
msgbuf_warm_release(void)
{
    if (msgbuf_warm_row >= 0)
        (void)msgbuf_warm_drop(msgbuf_warm_row);
}

/* The in-memory allocation of mb released (freed, or moved to its spill file). */
static void
msgbuf_mem_release(struct msgbuf *mb)
{
    if (mb->cap > 0)
        atomic_fetch_sub_explicit(&msgbuf_mem_used, mb->cap, memory_order_relaxed);
    free(mb->mem);
    mb->mem = NULL;
    mb->cap = 0;
}

/* Returns a new empty buffer or NULL when out of memory. dir is copied. */
struct msgbuf *
msgbuf_new(size_t threshold, const char *dir)
{
    struct msgbuf *mb = calloc(1, sizeof(*mb));
    if (mb == NULL)
        goto fail;
    mb->threshold = threshold;
    mb->fd = -1;
    mb->dir = strdup(dir != NULL ? dir : "/tmp");
    if (mb->dir == NULL)
        goto fail;
    return mb;

fail:
    free(mb);
    return NULL;
}

/* The buffer is about to change or release its in-memory storage: a pin of it gets that
 * storage, counted as it was, and the buffer goes on with a copy of its content when keep
 * is true (an append), with none otherwise (a reset). 0, or -1 when out of memory (the
 * buffer and the pin are unchanged). */
static int
msgbuf_pin_detach(struct msgbuf *mb, bool keep)
{
    struct msgbuf_pin *p = mb->pin;
    char *copy = NULL;

    if (p == NULL)
        return 0;
    if (keep && mb->len > 0) {
        if ((copy = malloc(mb->cap)) == NULL)
            return -1;
        memcpy(copy, mb->mem, mb->len);
        atomic_fetch_add_explicit(&msgbuf_mem_used, mb->cap, memory_order_relaxed);
    }
    p->mem = mb->mem;
    p->cap = mb->cap;
    p->mb = NULL;
    mb->pin = NULL;
    mb->mem = copy;
    if (copy == NULL)
        mb->cap = 0;
    return 0;
}

static void
msgbuf_unmap(struct msgbuf *mb)
{
    if (mb->map != NULL) {
        munmap(mb->map, mb->maplen);
        mb->map = NULL;
        mb->maplen = 0;
    }
}

/* Empties the buffer: memory and spill file released, threshold and dir kept. */
void
msgbuf_reset(struct msgbuf *mb)
{
    if (mb == NULL)
        return;
    (void)msgbuf_pin_detach(mb, false);  /* cannot fail: nothing to copy */
    msgbuf_unmap(mb);
    if (mb->fd >= 0)
        close(mb->fd);
    mb->fd = -1;
    msgbuf_mem_release(mb);
    mb->len = 0;
    mb->failed = false;
    mb->err = 0;
    mb->hdr_known = false;
}

/* See msgbuf.h. */
void
msgbuf_clear(struct msgbuf *mb, size_t keep)
{
    if (mb == NULL)
        return;
    (void)msgbuf_pin_detach(mb, false);  /* the next message must not write over it */
    if (mb->fd >= 0 || mb->cap > keep) {
        msgbuf_reset(mb);
        return;
    }
    mb->len = 0;
    mb->failed = false;
    mb->err = 0;
    mb->hdr_known = false;
}

/* See msgbuf.h. */
void
msgbuf_clear_warm(struct msgbuf *mb, size_t keep)
{
    if (mb == NULL)
        return;
    (void)msgbuf_pin_detach(mb, false);  /* a pinned storage is the pin's: never kept warm */
    if (mb->fd < 0 && mb->cap > keep && msgbuf_warm_put(mb->mem, mb->cap)) {
        mb->mem = NULL;                  /* the slot's now, still counted */
        mb->cap = 0;
    }
    msgbuf_clear(mb, keep);
}

/* See msgbuf.h. */
int
msgbuf_configure(struct msgbuf *mb, size_t threshold, const char *dir)
{
    if (dir == NULL)
        dir = "/tmp";
    if (strcmp(mb->dir, dir) != 0) {
        char *d = strdup(dir);
        if (d == NULL)
            return -1;
        free(mb->dir);
        mb->dir = d;
    }
    mb->threshold = threshold;
    return 0;
}

/* Releases everything; NULL is a no-op. */
void
msgbuf_free(struct msgbuf *mb)
{
    if (mb == NULL)
        return;
    msgbuf_reset(mb);
    free(mb->dir);
    free(mb);
}

/* Writes all of data to fd, retrying short writes and EINTR. 0 or -1. */
static int
msgbuf_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = ENOSPC;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Moves the in-memory content to a new unlinked temporary file in mb->dir. 0 or -1. */
static int
msgbuf_spill(struct msgbuf *mb)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/mxgate-msg-XXXXXX", mb->dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -1;
    unlink(path);                       /* nothing is left behind, whatever happens */
    if (msgbuf_write_all(fd, mb->mem, mb->len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    mb->fd = fd;
    msgbuf_mem_release(mb);
    return 0;
}

/* The capacity msgbuf_grow would give for need octets (need <= threshold): doubled from
 * 4 KiB until it holds them, never past the threshold. */
static size_t
msgbuf_grown_cap(const struct msgbuf *mb, size_t need)
{
    size_t ncap = mb->cap ? mb->cap : 4096;
    while (ncap < need)
        ncap *= 2;
    return ncap > mb->threshold ? mb->threshold : ncap;
}

/* Whether growing to hold need octets stays within the process's budget (the sessions'
 * sum of memory_threshold would otherwise be the only bound: 16000 x 256 KiB). Workers
 * growing at the same moment may pass it by their growth: a bound, not an exact sum. */
static bool
msgbuf_fits_budget(const struct msgbuf *mb, size_t need)
{
    size_t budget = atomic_load_explicit(&msgbuf_mem_budget, memory_order_relaxed);

    if (budget == 0 || need <= mb->cap)
        return true;
    if (msgbuf_warm_has(msgbuf_grown_cap(mb, need), mb->threshold))
        return true;        /* counted already: the growth takes nothing new */
    if (msgbuf_mem_in_use() + (msgbuf_grown_cap(mb, need) - mb->cap) <= budget)
        return true;
    /* the kept allocations go before any message spills for them */
    return msgbuf_warm_drop(-1) > 0 &&
        msgbuf_mem_in_use() + (msgbuf_grown_cap(mb, need) - mb->cap) <= budget;
}

/* Moves the content to a kept allocation of at least need octets (over 16 KiB), its pages
 * in place, as realloc would move it; the old allocation goes. False when there is none. */
static bool
msgbuf_take_warm(struct msgbuf *mb, size_t need)
{
    size_t wcap;
    char *p = mb->pin == NULL ? msgbuf_warm_take(need, mb->threshold, &wcap) : NULL;

    if (p == NULL)
        return false;
    if (mb->len > 0)
        memcpy(p, mb->mem, mb->len);
    msgbuf_mem_release(mb);
    mb->mem = p;
    mb->cap = wcap;
    return true;
}

/* Room in memory for need octets (need <= threshold), msgbuf_grown_cap's. 0, or -1 when out
 * of memory. */
static int
msgbuf_grow(struct msgbuf *mb, size_t need)
{
    size_t ncap = msgbuf_grown_cap(mb, need);
    char *p;

    if (msgbuf_take_warm(mb, ncap))
        return 0;
    p = realloc(mb->mem, ncap);
    if (p == NULL)
        return -1;
    atomic_fetch_add_explicit(&msgbuf_mem_used, ncap - mb->cap, memory_order_relaxed);
    mb->mem = p;
    mb->cap = ncap;
    return 0;
}

/* See msgbuf.h. After a failure the buffer refuses further appends until reset. */
int
msgbuf_append(struct msgbuf *mb, const void *data, size_t len)
{
    if (mb->failed)
        return -1;
    if (len == 0)
        return 0;
    mb->hdr_known = false;
    if (mb->len + len < mb->len || msgbuf_pin_detach(mb, true) != 0)
        goto fail;
    if (mb->fd < 0 && (mb->len + len > mb->threshold || !msgbuf_fits_budget(mb, mb->len + len))) {
        if (msgbuf_spill(mb) != 0)
            goto fail_file;
    }
    if (mb->fd >= 0) {
        msgbuf_unmap(mb);
        if (msgbuf_write_all(mb->fd, data, len) != 0)
            goto fail_file;
        mb->len += len;
        return 0;
    }
    if (mb->len + len > mb->cap && msgbuf_grow(mb, mb->len + len) != 0)
        goto fail;
    if (data != mb->mem + mb->len)     /* else read there already (msgbuf_spare) */
        memcpy(mb->mem + mb->len, data, len);
    mb->len += len;
    return 0;

fail_file:
    mb->err = errno;    /* the spill file's (mkostemp, write): ENOSPC, ENOENT, EACCES ... */
fail:
    mb->failed = true;
    return -1;
}

/* See msgbuf.h. Grows like msgbuf_append (doubling, never past the threshold); when grow is
 * false, takes a kept allocation (msgbuf_clear_warm) instead of giving NULL for want of room. */
char *
msgbuf_spare(struct msgbuf *mb, size_t want, bool grow, size_t *avail)
{
    if (mb->failed || mb->fd >= 0 || want == 0 || mb->threshold - mb->len < want ||
        mb->len > mb->threshold || msgbuf_pin_detach(mb, true) != 0)
        return NULL;
    /* not grown but a kept allocation is there: taken, it costs no new memory (its free
     * space is the whole next read, not a doubling step's) */
    if (mb->cap - mb->len < want && !grow &&
        !msgbuf_take_warm(mb, mb->len + want > MSGBUF_WARM_MIN ? mb->len + want : MSGBUF_WARM_MIN + 1))
        return NULL;
    if (mb->cap - mb->len < want && (!grow || !msgbuf_fits_budget(mb, mb->len + want) ||
        msgbuf_grow(mb, mb->len + want) != 0))
        return NULL;
    *avail = mb->cap - mb->len;
    return mb->mem + mb->len;
}

size_t
msgbuf_len(const struct msgbuf *mb)
{
    return mb->len;
}

int
msgbuf_error(const struct msgbuf *mb)
{
    return mb->failed ? mb->err : 0;
}

/* See msgbuf.h. The mapping of a spilled message is cached until the next append. */
const char *
msgbuf_data(struct msgbuf *mb, size_t *len)
{
    static const char empty[1] = "";
    if (len != NULL)
        *len = mb->len;
    if (mb->len == 0)
        return empty;
    if (mb->fd < 0)
        return mb->mem;
    if (mb->map != NULL && mb->maplen == mb->len)
        return mb->map;
    msgbuf_unmap(mb);
    void *p = mmap(NULL, mb->len, PROT_READ, MAP_SHARED, mb->fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    mb->map = p;
    mb->maplen = mb->len;
    return p;
}

/* See msgbuf.h: up to and including the first empty line (RFC 5322 2.1). */
size_t
msgbuf_header_len(struct msgbuf *mb)
{
    size_t len;
    const char *d = msgbuf_data(mb, &len);
    if (d == NULL || len == 0)
        return 0;
    if (len >= 2 && d[0] == '\r' && d[1] == '\n')
        return 2;
    if (mb->hdr_known)
        return mb->hdr_len;     /* asked more than once per message */
    const char *e = memmem(d, len, "\r\n\r\n", 4);
    mb->hdr_len = e != NULL ? (size_t)(e - d) + 4 : len;
    mb->hdr_known = true;
    return mb->hdr_len;
}

/* See msgbuf.h. */
struct msgbuf_pin *
msgbuf_pin(struct msgbuf *mb, const char **data, size_t *len)
{
    struct msgbuf_pin *p;

    if (mb->pin != NULL) {          /* unchanged since: a change would have detached it */
        mb->pin->refs++;
        *data = mb->pin->data;
        *len = mb->pin->len;
        return mb->pin;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    p->refs = 1;
    p->len = mb->len;
    p->data = "";
    if (mb->fd >= 0 && mb->len > 0) {
        /* its own mapping: it outlives the buffer's (unmapped at the next append) and its
         * descriptor (closed at reset); the file only grows while the buffer has it */
        void *m = mmap(NULL, mb->len, PROT_READ, MAP_SHARED, mb->fd, 0);

        if (m == MAP_FAILED) {
            free(p);
            return NULL;
        }
        p->map = m;
        p->maplen = mb->len;
        p->data = m;
    } else if (mb->fd < 0 && mb->len > 0) {
        p->mb = mb;
        p->data = mb->mem;
        mb->pin = p;
    }
    *data = p->data;
    *len = p->len;
    return p;
}

/* See msgbuf.h. */
void
msgbuf_unpin(struct msgbuf_pin *p)
{
    if (p == NULL || --p->refs > 0)
        return;
    if (p->mb != NULL)
        p->mb->pin = NULL;          /* the buffer still has the storage: it stays its */
    if (p->cap > 0)
        atomic_fetch_sub_explicit(&msgbuf_mem_used, p->cap, memory_order_relaxed);
    free(p->mem);
    if (p->map != NULL)
        munmap(p->map, p->maplen);
    free(p);
}
