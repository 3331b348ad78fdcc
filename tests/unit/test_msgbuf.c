/* test_msgbuf.c — held message: memory, spill to an unlinked file, mmap view, header
 * length, reset, file errors, the budget and pins. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <cmocka.h>

#include "msgbuf.h"

/* Number of entries in dir other than . and .. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

struct hdr_row {
    const char *label;
    const char *msg;
    size_t header_len;
};

static const struct hdr_row hdr_rows[] = {
    { "headers and body", "A: b\r\nC: d\r\n\r\nbody\r\n", 14 },
    { "no body", "A: b\r\n", 6 },
    { "no blank line, no CRLF", "A: b", 4 },
    { "starts with blank line", "\r\nbody\r\n", 2 },
    { "empty message", "", 0 },
    { "LF LF is not a blank line", "A: b\n\nbody", 10 },
    { "blank line at the end", "A: b\r\n\r\n", 8 },
};

/* threshold 8: rows longer than that spill to a file; the answers must not change. */
static void
test_header_len(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(hdr_rows) / sizeof(hdr_rows[0]); r++) {
        for (size_t th = 0; th <= 64; th += 8) {
            struct msgbuf *mb = msgbuf_new(th, NULL);
            assert_non_null(mb);
            const char *m = hdr_rows[r].msg;
            /* appended in 3-octet pieces */
            for (size_t i = 0; i < strlen(m); i += 3) {
                size_t n = strlen(m) - i < 3 ? strlen(m) - i : 3;
                assert_int_equal(msgbuf_append(mb, m + i, n), 0);
            }
            if (msgbuf_header_len(mb) != hdr_rows[r].header_len)
                fail_msg("%s (threshold %zu): header_len %zu", hdr_rows[r].label, th,
                         msgbuf_header_len(mb));
            size_t len;
            const char *d = msgbuf_data(mb, &len);
            assert_non_null(d);
            assert_int_equal(len, strlen(m));
            assert_memory_equal(d, m, len);
            msgbuf_free(mb);
        }
    }
}

static void
test_spill(void **state)
{
    (void)state;
    char dir[] = "/tmp/mx-msgbuf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct msgbuf *mb = msgbuf_new(1000, dir);
    char chunk[777];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (char)('a' + i % 26);
    /* in memory below the threshold */
    assert_int_equal(msgbuf_append(mb, chunk, 777), 0);
    assert_int_equal(msgbuf_len(mb), 777);
    assert_int_equal(count_entries(dir), 0);
    /* over it: an unlinked file, nothing visible in dir */
    for (int i = 0; i < 200; i++)
        assert_int_equal(msgbuf_append(mb, chunk, 777), 0);
    assert_int_equal(msgbuf_len(mb), 201 * 777);
    assert_int_equal(count_entries(dir), 0);
    size_t len;
    const char *d = msgbuf_data(mb, &len);
    assert_non_null(d);
    assert_int_equal(len, 201 * 777);
    for (int i = 0; i < 201; i++)
        assert_memory_equal(d + i * 777, chunk, 777);
    /* view again without appends: same mapping; after an append: the new length */
    assert_ptr_equal(msgbuf_data(mb, &len), d);
    assert_int_equal(msgbuf_append(mb, "\r\n\r\n", 4), 0);
    d = msgbuf_data(mb, &len);
    assert_int_equal(len, 201 * 777 + 4);
    assert_memory_equal(d + len - 4, "\r\n\r\n", 4);
    assert_int_equal(msgbuf_header_len(mb), len);
    /* reset: empty, reusable, back in memory */
    msgbuf_reset(mb);
    assert_int_equal(msgbuf_len(mb), 0);
    d = msgbuf_data(mb, &len);
    assert_non_null(d);
    assert_int_equal(len, 0);
    assert_int_equal(msgbuf_header_len(mb), 0);
    assert_int_equal(msgbuf_append(mb, "x", 1), 0);
    assert_int_equal(msgbuf_len(mb), 1);
    msgbuf_free(mb);
    msgbuf_free(NULL);
    assert_int_equal(count_entries(dir), 0);
    rmdir(dir);
}

/* A spill directory that cannot be used: append fails (the session tempfails), then keeps
 * failing until reset, and nothing crashes. */
static void
test_file_errors(void **state)
{
    (void)state;
    struct msgbuf *mb = msgbuf_new(4, "/nonexistent/mxgate-dir");
    assert_non_null(mb);
    assert_int_equal(msgbuf_append(mb, "abcd", 4), 0);
    assert_int_equal(msgbuf_error(mb), 0);
    assert_int_equal(msgbuf_append(mb, "e", 1), -1);
    assert_int_equal(msgbuf_error(mb), ENOENT);     /* the session logs it, ENOSPC: 452 */
    assert_int_equal(msgbuf_append(mb, "f", 1), -1);
    assert_int_equal(msgbuf_error(mb), ENOENT);
    assert_int_equal(msgbuf_len(mb), 4);
    msgbuf_reset(mb);
    assert_int_equal(msgbuf_error(mb), 0);
    assert_int_equal(msgbuf_append(mb, "abcd", 4), 0);
    msgbuf_free(mb);

    /* a read-only directory (skipped as root, who may write anyway) */
    if (geteuid() != 0) {
        char dir[] = "/tmp/mx-msgbuf-ro-XXXXXX";
        assert_non_null(mkdtemp(dir));
        chmod(dir, 0500);
        mb = msgbuf_new(0, dir);
        assert_int_equal(msgbuf_append(mb, "x", 1), -1);
        msgbuf_free(mb);
        chmod(dir, 0700);
        rmdir(dir);
    }

    /* a write error while spilling (file size limit: EFBIG, like a full disk) */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 8192;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    mb = msgbuf_new(1024, NULL);
    char big[4096];
    memset(big, 'x', sizeof(big));
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = msgbuf_append(mb, big, sizeof(big));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_true(msgbuf_len(mb) <= 8192);
    msgbuf_free(mb);
}

/* msgbuf_clear keeps a small in-memory buffer for the next message (same memory, empty,
 * failure flag gone), drops a big or spilled one; msgbuf_configure sets threshold and dir. */
static void
test_clear_reuse(void **state)
{
    (void)state;
    char dir[] = "/tmp/mx-msgbuf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct msgbuf *mb = msgbuf_new(100000, NULL);
    size_t len;
    char chunk[3000];
    memset(chunk, 'q', sizeof(chunk));
    assert_int_equal(msgbuf_append(mb, chunk, sizeof(chunk)), 0);
    const char *before = msgbuf_data(mb, &len);
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_len(mb), 0);
    assert_int_equal(msgbuf_header_len(mb), 0);
    static const char msg[] = "A: b\r\n\r\nbody\r\n";
    assert_int_equal(msgbuf_append(mb, msg, sizeof msg - 1), 0);
    const char *d = msgbuf_data(mb, &len);
    assert_ptr_equal(d, before);                  /* no new allocation */
    assert_int_equal(len, sizeof msg - 1);
    assert_memory_equal(d, msg, sizeof msg - 1);
    assert_int_equal(msgbuf_header_len(mb), 8);
    /* the header length is asked again after appends: never a stale answer */
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_append(mb, "A: b\r\n", 6), 0);
    assert_int_equal(msgbuf_header_len(mb), 6);   /* no blank line yet: all of it */
    assert_int_equal(msgbuf_header_len(mb), 6);
    assert_int_equal(msgbuf_append(mb, "C: d\r\n\r\nx\r\n", 11), 0);
    assert_int_equal(msgbuf_header_len(mb), 14);
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_append(mb, "E: f\r\n\r\n", 8), 0);
    assert_int_equal(msgbuf_header_len(mb), 8);
    /* bigger than keep: released, still usable */
    for (int i = 0; i < 10; i++)
        assert_int_equal(msgbuf_append(mb, chunk, sizeof(chunk)), 0);
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_len(mb), 0);
    assert_int_equal(msgbuf_append(mb, "x", 1), 0);
    assert_int_equal(msgbuf_len(mb), 1);
    /* a new threshold and dir: the next message spills there */
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_configure(mb, 1000, dir), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(msgbuf_append(mb, chunk, sizeof(chunk)), 0);
    d = msgbuf_data(mb, &len);
    assert_int_equal(len, 3 * sizeof(chunk));
    assert_memory_equal(d + 2 * sizeof(chunk), chunk, sizeof(chunk));
    /* a spilled one is closed by clear, back in memory */
    msgbuf_clear(mb, 16384);
    assert_int_equal(msgbuf_len(mb), 0);
    assert_int_equal(msgbuf_configure(mb, 1000, NULL), 0);
    assert_int_equal(msgbuf_append(mb, "yz", 2), 0);
    d = msgbuf_data(mb, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(d, "yz", 2);
    msgbuf_clear(NULL, 0);
    msgbuf_free(mb);
    assert_int_equal(count_entries(dir), 0);
    rmdir(dir);
}

/* Content read into the free space (msgbuf_spare) and appended from there: no copy, the
 * same bytes as an append from elsewhere; the space grows within the threshold, and none
 * is offered near it, once spilled, or after a failure. */
static void
test_spare(void **state)
{
    (void)state;
    char dir[] = "/tmp/mx-msgbuf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct msgbuf *mb = msgbuf_new(40000, dir);
    size_t avail = 0, len;
    char *sp = msgbuf_spare(mb, 8192, true, &avail);
    assert_non_null(sp);
    assert_true(avail >= 8192);
    memcpy(sp, "A: b\r\n\r\nbo", 10);
    assert_int_equal(msgbuf_append(mb, sp, 10), 0);
    char *sp2 = msgbuf_spare(mb, 100, false, &avail);   /* there is room: not moved */
    assert_ptr_equal(sp2, sp + 10);               /* right after the content */
    memcpy(sp2, "dy\r\n", 4);
    assert_int_equal(msgbuf_append(mb, sp2, 4), 0);
    assert_int_equal(msgbuf_append(mb, "x", 1), 0);   /* from elsewhere, after it */
    const char *d = msgbuf_data(mb, &len);
    assert_int_equal(len, 15);
    assert_memory_equal(d, "A: b\r\n\r\nbody\r\nx", 15);
    assert_int_equal(msgbuf_header_len(mb), 8);
    /* not grown when not asked to */
    assert_null(msgbuf_spare(mb, 20000, false, &avail));
    /* grows: more than there is, within the threshold */
    sp = msgbuf_spare(mb, 20000, true, &avail);
    assert_non_null(sp);
    assert_true(avail >= 20000 && 15 + avail <= 40000);
    memset(sp, 'q', 20000);
    assert_int_equal(msgbuf_append(mb, sp, 20000), 0);
    d = msgbuf_data(mb, &len);
    assert_int_equal(len, 20015);
    assert_memory_equal(d, "A: b\r\n\r\nbody\r\nx", 15);
    assert_int_equal(d[20014], 'q');
    /* the threshold leaves less than asked: none */
    assert_null(msgbuf_spare(mb, 40000 - 20015 + 1, true, &avail));
    assert_non_null(msgbuf_spare(mb, 40000 - 20015, true, &avail));
    /* spilled: none, appends go on to the file */
    char chunk[30000];
    memset(chunk, 'r', sizeof(chunk));
    assert_int_equal(msgbuf_append(mb, chunk, sizeof(chunk)), 0);
    assert_null(msgbuf_spare(mb, 1, true, &avail));
    d = msgbuf_data(mb, &len);
    assert_int_equal(len, 50015);
    assert_memory_equal(d, "A: b\r\n\r\nbody\r\nx", 15);
    msgbuf_clear(mb, 16384);
    assert_non_null(msgbuf_spare(mb, 8192, true, &avail));  /* in memory again */
    msgbuf_free(mb);
    assert_int_equal(count_entries(dir), 0);
    rmdir(dir);
}

/* limits.memory_budget: the buffers' allocations are summed over the process; a buffer whose
 * growth would pass the budget spills to its file below its own threshold, and what it
 * held is given back to the budget. */
static void
test_budget(void **state)
{
    (void)state;
    static char chunk[48 * 1024];
    size_t avail;
    size_t base = msgbuf_mem_in_use();

    memset(chunk, 'x', sizeof(chunk));
    msgbuf_set_budget(64 * 1024);
    struct msgbuf *a = msgbuf_new(1 << 20, "/tmp");
    struct msgbuf *b = msgbuf_new(1 << 20, "/tmp");
    assert_int_equal(msgbuf_append(a, chunk, sizeof(chunk)), 0);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);     /* doubled from 4 KiB */
    assert_non_null(msgbuf_spare(a, 1024, false, &avail));       /* a: in memory */
    assert_int_equal(msgbuf_append(b, chunk, 1000), 0);           /* b: 4 KiB passes it */
    assert_null(msgbuf_spare(b, 1, true, &avail));                /* spilled */
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    assert_int_equal(msgbuf_len(b), 1000);
    size_t len;
    const char *d = msgbuf_data(b, &len);
    assert_non_null(d);
    assert_int_equal(len, 1000);
    assert_memory_equal(d, chunk, 1000);
    msgbuf_free(a);
    assert_int_equal(msgbuf_mem_in_use(), base);
    msgbuf_reset(b);                                              /* room again: in memory */
    assert_int_equal(msgbuf_append(b, chunk, 1000), 0);
    assert_non_null(msgbuf_spare(b, 1, false, &avail));
    assert_int_equal(msgbuf_mem_in_use(), base + 4096);
    msgbuf_free(b);
    assert_int_equal(msgbuf_mem_in_use(), base);
    msgbuf_set_budget(0);
}

/* msgbuf_spool_fits, MAIL SIZE='s look ahead: the rule at its edges, against the real file
 * system of the current directory (its free space measured here, in its own blocks). */
static void
test_spool_fits(void **state)
{
    struct statvfs sv;
    uint64_t avail, half;
    (void)state;

    /* statvfs fails (no such directory): true, nothing known; the end of data says why */
    assert_true(msgbuf_spool_fits("/nonexistent/mxgate-spool", UINT64_MAX, &avail));
    assert_true(avail == UINT64_MAX);
    assert_int_equal(statvfs(".", &sv), 0);
    if (sv.f_bavail < 4)
        skip();    /* a file system this full says nothing about the rule */
    /* "nothing" fits; the largest size does not */
    assert_true(msgbuf_spool_fits(".", 0, &avail));
    assert_true(avail > 0 && avail != UINT64_MAX);
    assert_false(msgbuf_spool_fits(".", UINT64_MAX, &avail));
    /* the line is half of the free blocks (Postfix's rule): a quarter fits, all of them do
     * not (wide margins: other writers of this file system move the count meanwhile) */
    half = (uint64_t)(sv.f_bavail / 2) * sv.f_frsize;
    if (half > 4 * (uint64_t)sv.f_frsize) {
        assert_true(msgbuf_spool_fits(".", half / 2, &avail));
        assert_false(msgbuf_spool_fits(".", half * 2, &avail));
    }
}

/* msgbuf_pin: the bytes a reader pinned stay as they were, and counted, whatever the buffer
 * does after (the rules scan reads them in the thread pool while the session may clear the
 * buffer for its next message, append, or free it); unpinned, they are released. */
static void
test_pin(void **state)
{
    (void)state;
    static char a[6000], b[6000];
    const char *d, *d2;
    size_t len, len2, avail;
    size_t base = msgbuf_mem_in_use();
    struct msgbuf_pin *p, *p2;

    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    msgbuf_set_budget(0);
    /* "in memory, unchanged: no copy, the buffer's own bytes, shared by a second pin" */
    struct msgbuf *mb = msgbuf_new(1 << 20, "/tmp");
    assert_int_equal(msgbuf_append(mb, a, sizeof(a)), 0);
    assert_int_equal(msgbuf_mem_in_use(), base + 8192);
    p = msgbuf_pin(mb, &d, &len);
    assert_non_null(p);
    assert_int_equal(len, sizeof(a));
    assert_ptr_equal(d, msgbuf_data(mb, &len2));
    assert_int_equal(msgbuf_mem_in_use(), base + 8192);
    p2 = msgbuf_pin(mb, &d2, &len2);
    assert_ptr_equal(p2, p);
    assert_ptr_equal(d2, d);
    msgbuf_unpin(p2);
    /* "cleared for the next message while pinned: the pin keeps the bytes, counted" */
    msgbuf_clear(mb, 64 * 1024);
    assert_int_equal(msgbuf_append(mb, b, sizeof(b)), 0);
    assert_memory_equal(d, a, sizeof(a));
    assert_int_equal(msgbuf_mem_in_use(), base + 2 * 8192);
    msgbuf_unpin(p);
    assert_int_equal(msgbuf_mem_in_use(), base + 8192);
    /* "unpinned while the buffer still has it: the buffer keeps it" */
    p = msgbuf_pin(mb, &d, &len);
    msgbuf_unpin(p);
    assert_int_equal(msgbuf_append(mb, a, 10), 0);
    d2 = msgbuf_data(mb, &len2);
    assert_int_equal(len2, sizeof(b) + 10);
    assert_memory_equal(d2, b, sizeof(b));
    /* "appended to while pinned: the buffer goes on with a copy" */
    p = msgbuf_pin(mb, &d, &len);
    assert_int_equal(len, sizeof(b) + 10);
    assert_non_null(msgbuf_spare(mb, 100, true, &avail));
    assert_int_equal(msgbuf_append(mb, b, 100), 0);
    assert_true(msgbuf_data(mb, &len2) != d);
    assert_int_equal(len2, sizeof(b) + 110);
    assert_memory_equal(d, b, sizeof(b));
    assert_memory_equal(d + sizeof(b), a, 10);
    /* "freed while pinned" */
    msgbuf_free(mb);
    assert_int_equal(msgbuf_mem_in_use(), base + 8192);
    assert_memory_equal(d, b, sizeof(b));
    msgbuf_unpin(p);
    assert_int_equal(msgbuf_mem_in_use(), base);
    /* "spilled: its own mapping, outliving the buffer's file descriptor" */
    mb = msgbuf_new(4096, "/tmp");
    assert_int_equal(msgbuf_append(mb, a, sizeof(a)), 0);
    p = msgbuf_pin(mb, &d, &len);
    assert_non_null(p);
    assert_int_equal(len, sizeof(a));
    assert_int_equal(msgbuf_mem_in_use(), base);
    assert_int_equal(msgbuf_append(mb, b, 10), 0);
    msgbuf_clear(mb, 64 * 1024);
    assert_int_equal(msgbuf_append(mb, b, sizeof(b)), 0);
    msgbuf_free(mb);
    assert_memory_equal(d, a, sizeof(a));
    msgbuf_unpin(p);
    /* "empty" */
    mb = msgbuf_new(4096, "/tmp");
    p = msgbuf_pin(mb, &d, &len);
    assert_non_null(p);
    assert_int_equal(len, 0);
    msgbuf_free(mb);
    msgbuf_unpin(p);
    msgbuf_unpin(NULL);
    assert_int_equal(msgbuf_mem_in_use(), base);
}

/* msgbuf_clear_warm: a large message's storage stays allocated, counted, for the thread's
 * next message that grows past 16 KiB (no malloc giving pages back and the next message
 * faulting them in again); a small one stays with its buffer as msgbuf_clear keeps it; a
 * pinned one is the pin's; the budget frees the kept ones before a message spills;
 * msgbuf_warm_release gives them back. */
static void
test_warm(void **state)
{
    (void)state;
    static char chunk[40 * 1024];
    const char *d, *pd;
    size_t len, avail;
    size_t base = msgbuf_mem_in_use();
    struct msgbuf_pin *p;

    memset(chunk, 'w', sizeof(chunk));
    msgbuf_set_budget(0);
    struct msgbuf *a = msgbuf_new(1 << 20, "/tmp");
    struct msgbuf *b = msgbuf_new(1 << 20, "/tmp");
    /* "a large message's storage is kept, counted, and taken by the next large growth" */
    assert_int_equal(msgbuf_append(a, chunk, sizeof(chunk)), 0);     /* 64 KiB */
    const char *old = msgbuf_data(a, &len);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    msgbuf_clear_warm(a, 16384);
    assert_int_equal(msgbuf_len(a), 0);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    /* "a small growth does not take it" */
    assert_int_equal(msgbuf_append(b, chunk, 1000), 0);
    assert_true(msgbuf_data(b, &len) != old);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    /* "past 16 KiB it does, the content moved there, the small one freed" */
    assert_int_equal(msgbuf_append(b, chunk, 20000), 0);
    d = msgbuf_data(b, &len);
    assert_ptr_equal(d, old);
    assert_int_equal(len, 21000);
    assert_memory_equal(d, chunk, 21000);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    /* "read straight into it: the free space is the kept allocation's" */
    assert_non_null(msgbuf_spare(b, 8192, false, &avail));
    assert_int_equal(avail, 64 * 1024 - 21000);
    /* "the emptied buffer starts over in memory" */
    assert_int_equal(msgbuf_append(a, "x", 1), 0);
    assert_int_equal(msgbuf_len(a), 1);
    msgbuf_clear_warm(b, 16384);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    /* "a small one (at most keep) stays with its buffer, not kept warm" */
    msgbuf_clear_warm(a, 16384);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    assert_int_equal(msgbuf_append(a, chunk, 100), 0);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    /* "a threshold below the kept size: not taken (a buffer never holds more)" */
    struct msgbuf *c = msgbuf_new(32 * 1024, "/tmp");
    assert_int_equal(msgbuf_append(c, chunk, 30000), 0);
    assert_true(msgbuf_data(c, &len) != old);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096 + 32 * 1024);
    msgbuf_free(c);
    /* "released: the count is back where it was" */
    msgbuf_warm_release();
    assert_int_equal(msgbuf_mem_in_use(), base + 4096);
    /* "pinned: the storage is the pin's until unpinned, never kept for the next message" */
    assert_int_equal(msgbuf_append(b, chunk, sizeof(chunk)), 0);
    p = msgbuf_pin(b, &pd, &len);
    assert_non_null(p);
    msgbuf_clear_warm(b, 16384);
    assert_int_equal(msgbuf_append(a, chunk + 100, 30000), 0);      /* grows past 16 KiB */
    assert_true(msgbuf_data(a, &len) != pd);
    assert_memory_equal(pd, chunk, sizeof(chunk));
    msgbuf_unpin(p);
    msgbuf_reset(a);
    assert_int_equal(msgbuf_mem_in_use(), base);
    /* "the budget frees the kept ones before a message spills for them" */
    assert_int_equal(msgbuf_append(a, chunk, sizeof(chunk)), 0);     /* 64 KiB, kept */
    msgbuf_clear_warm(a, 16384);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    msgbuf_set_budget(base + 100 * 1024);
    struct msgbuf *big = msgbuf_new(1 << 20, "/tmp");
    assert_int_equal(msgbuf_append(big, chunk, sizeof(chunk)), 0);   /* takes the kept one */
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    msgbuf_clear_warm(big, 16384);
    /* a threshold of 48 KiB: the kept 64 KiB is not for it */
    c = msgbuf_new(48 * 1024, "/tmp");
    assert_int_equal(msgbuf_append(c, chunk, 1000), 0);             /* 4 KiB: fits beside it */
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    assert_int_equal(msgbuf_append(c, chunk, 40000), 0);            /* 48 KiB: only without it */
    assert_non_null(msgbuf_spare(c, 1, false, &avail));              /* in memory, not spilled */
    assert_int_equal(msgbuf_mem_in_use(), base + 48 * 1024);
    msgbuf_set_budget(0);
    msgbuf_free(c);
    msgbuf_free(big);
    msgbuf_free(a);
    msgbuf_free(b);
    msgbuf_warm_release();
    assert_int_equal(msgbuf_mem_in_use(), base);
    /* "a full buffer not grown for a read (msgbuf_spare, grow false): none, unless a kept
     * allocation is there, which it takes, the content moved" */
    b = msgbuf_new(1 << 20, "/tmp");
    assert_int_equal(msgbuf_append(b, chunk + 1, 4096), 0);
    assert_null(msgbuf_spare(b, 8192, false, &avail));
    a = msgbuf_new(1 << 20, "/tmp");
    assert_int_equal(msgbuf_append(a, chunk, sizeof(chunk)), 0);
    old = msgbuf_data(a, &len);
    msgbuf_clear_warm(a, 16384);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024 + 4096);
    assert_ptr_equal(msgbuf_spare(b, 8192, false, &avail), old + 4096);
    assert_int_equal(avail, 64 * 1024 - 4096);
    assert_int_equal(msgbuf_mem_in_use(), base + 64 * 1024);
    d = msgbuf_data(b, &len);
    assert_int_equal(len, 4096);
    assert_memory_equal(d, chunk + 1, 4096);
    msgbuf_free(a);
    msgbuf_free(b);
    assert_int_equal(msgbuf_mem_in_use(), base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_len),
        cmocka_unit_test(test_spill),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_clear_reuse),
        cmocka_unit_test(test_spare),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_spool_fits),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_warm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
