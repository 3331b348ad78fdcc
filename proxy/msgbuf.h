/* msgbuf.h — a held message: bytes in memory up to a threshold, then in an unlinked
 * temporary file. Append-only while receiving; read by filters and the relay afterwards.
 * Content is the message as the client meant it: dot-unstuffed, CRLF line endings,
 * without the final ".\r\n". */
#ifndef MX_MSGBUF_H
#define MX_MSGBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgbuf;

/* The process's budget for message bytes in memory, every buffer together (limits.
 * memory_budget; 0: none): a buffer whose growth would pass it spills to its file then,
 * below its threshold. Any thread. */
void msgbuf_set_budget(size_t budget);
/* The bytes the buffers hold in memory now (their allocations), every thread's. */
size_t msgbuf_mem_in_use(void);

/* Whether a message announced at size octets (MAIL SIZE=) may be spooled in dir (NULL =
 * /tmp) now: the space its file system gives an unprivileged writer (statvfs f_bavail) is
 * more than twice size, Postfix's rule for its queue (smtpd_check_size: a message may take
 * at most half of what is free, the rest stays for the messages arriving with it). The free
 * octets in *avail. True, *avail UINT64_MAX, when statvfs fails: the end of data then says
 * what is wrong (451). One statvfs(2), no other I/O: cheap on a local file system. */
bool msgbuf_spool_fits(const char *dir, uint64_t size, uint64_t *avail);

/* threshold: bytes kept in memory before spilling to a file in dir (NULL = /tmp). */
struct msgbuf *msgbuf_new(size_t threshold, const char *dir);
void msgbuf_free(struct msgbuf *mb);          /* NULL is a no-op */
/* Appends; returns 0 or -1 (file error: the message must be tempfailed). */
int msgbuf_append(struct msgbuf *mb, const void *data, size_t len);
size_t msgbuf_len(const struct msgbuf *mb);
/* The errno of the file error that failed the buffer (ENOSPC: the spool is full), 0 when none
 * or the failure was no file's (out of memory, a size overflow). */
int msgbuf_error(const struct msgbuf *mb);
/* The free space after the content of an in-memory buffer, at least want octets (grown
 * within the threshold when grow is true), its size in *avail: a reader may put octets
 * there and append them with msgbuf_append(mb, that pointer, n), which then copies nothing.
 * NULL when the buffer is spilled or failed, the threshold leaves less than want, there is
 * less and grow is false (unless the thread has a warm allocation, msgbuf_clear_warm, that
 * holds it: taken), or out of memory. Valid until the next append, reset, clear or
 * free. */
char *msgbuf_spare(struct msgbuf *mb, size_t want, bool grow, size_t *avail);

/* A contiguous read-only view of the whole message (mmap for spilled ones). Valid until
 * the next append or free. Returns NULL only on error (len 0 gives a valid pointer). */
const char *msgbuf_data(struct msgbuf *mb, size_t *len);
/* A pinned view of a message: its bytes as they were when pinned, readable from any thread
 * until msgbuf_unpin, whatever the buffer does meanwhile. The buffer is left as it is; only
 * when it would change or release the pinned bytes (an append, reset, clear or free while
 * in memory) does it leave that storage to the pin (an append then copies the content to a
 * new allocation) and go on with other. So a reader on another thread (the rules scan in
 * the thread pool) needs no copy of its own, and the bytes it reads stay counted in
 * msgbuf_mem_in_use, the budget, until unpinned. A spilled message's pin is its own
 * read-only mapping of the (unlinked) spool file: it keeps the file until unpinned, no
 * memory of the budget's. Pinning the same unchanged in-memory content again shares the
 * pin. msgbuf_pin and msgbuf_unpin on the buffer's thread only (the loop thread). */
struct msgbuf_pin;
/* Pins mb's content: *data (len octets, not NUL-terminated) valid until msgbuf_unpin.
 * NULL when out of memory or the spill file cannot be mapped. */
struct msgbuf_pin *msgbuf_pin(struct msgbuf *mb, const char **data, size_t *len);
/* Releases a pin (its storage once the buffer left it to the pin); NULL is a no-op. */
void msgbuf_unpin(struct msgbuf_pin *p);

/* Length of the header block including the blank line that ends it (or the whole message
 * when there is no blank line). */
size_t msgbuf_header_len(struct msgbuf *mb);
void msgbuf_reset(struct msgbuf *mb);
/* Empties the buffer for the next message like msgbuf_reset, but keeps an in-memory
 * allocation of at most keep bytes (no malloc, realloc and free per message). */
void msgbuf_clear(struct msgbuf *mb, size_t keep);
/* msgbuf_clear, but an in-memory allocation over keep (and over 16 KiB, at most 1 MiB) is
 * kept warm for the next message of this thread that grows past 16 KiB, its pages still
 * mapped, when one of the thread's 4 slots is free (else freed). Kept allocations stay
 * counted in msgbuf_mem_in_use; one that the budget needs is freed before any message
 * spills (whichever thread kept it). The buffer's thread only. */
void msgbuf_clear_warm(struct msgbuf *mb, size_t keep);
/* Frees the calling thread's kept allocations (a worker left with no session). */
void msgbuf_warm_release(void);
/* Sets the threshold and spill directory (copied) of an empty buffer, as msgbuf_new does.
 * 0, or -1 when out of memory (the buffer is unchanged). */
int msgbuf_configure(struct msgbuf *mb, size_t threshold, const char *dir);

#endif
