/* dataparse.h — the DATA phase: find the one true end <CRLF>.<CRLF>, undo dot-stuffing,
 * and make SMTP smuggling impossible; plus the encoder for the way out. No I/O. */
#ifndef MX_DATAPARSE_H
#define MX_DATAPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum data_bare_lf { DATA_BARE_LF_REJECT = 0, DATA_BARE_LF_NORMALIZE };

struct dataparse {
    int state;                  /* private */
    enum data_bare_lf policy;
    bool bad_line_ending;       /* a bare LF or bare CR was seen */
    uint64_t bytes;             /* content bytes passed to out */
    bool weak;                  /* private: this line started after a bare CR/LF */
    bool nul_seen;              /* a NUL octet was seen (and dropped) */
    uint64_t nuls;              /* how many */
    bool restuff;               /* a content line may start with "." (a stuffed or NUL-led
                                 * line) or a bare CR/LF was seen; false: every content line
                                 * ends in CRLF and none starts with ".", so the content is
                                 * its own dot-stuffed form (dotstuff_encode leaves it as is) */
};

void dataparse_init(struct dataparse *p, enum data_bare_lf policy);

/* out receives unstuffed content in order, always with CRLF line endings; it returns 0 or
 * -1 (then dataparse_feed stops and returns -1). */
typedef int (*dataparse_out_fn)(void *arg, const char *data, size_t len);

/* Consumes in[0..len) up to and including the end-of-data marker. Returns the number of
 * bytes consumed, with *done = 1 when <CRLF>.<CRLF> was seen (bytes after it belong to the
 * next command — pipelining); -1 if out failed. Only "\r\n.\r\n" ends DATA (the first line
 * being ".\r\n" counts: DATA's own CRLF precedes it). A bare LF or a bare CR (not part of
 * CRLF) sets p->bad_line_ending; with DATA_BARE_LF_REJECT the content keeps flowing to out
 * in a safe form (the session rejects the message at the end with 550 5.6.0 anyway); with
 * DATA_BARE_LF_NORMALIZE a bare LF becomes CRLF and a bare CR becomes CRLF too. In no mode
 * can "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n" end the message or make the output
 * contain a line that is a lone "." — the output is re-stuffed and sent to a backend.
 * A NUL octet is never passed to out: it is dropped and sets p->nul_seen (the session
 * rejects the message or accepts it without them, per limits.nul); a line that starts
 * with NUL does not start with its next octet, so "<CRLF>NUL.<CRLF>" is content, not the
 * end (it reaches the backend as a stuffed "..").
 * A split anywhere (byte by byte) gives the same result as one buffer. */
ssize_t dataparse_feed(struct dataparse *p, const char *in, size_t len, dataparse_out_fn out,
                       void *arg, int *done);

/* Zero-copy input: the length of the prefix of in[0..len) that dataparse_feed would pass
 * to out as it stands (plain line content and whole clean CRLF lines; it stops before a
 * line starting with ".", any bare CR or LF, a NUL, a CR that is in[len-1]), and p advanced
 * over it exactly as dataparse_feed would have. The caller passes in[0..k) to out itself and
 * feeds the rest to dataparse_feed: the same output, counters and end as feeding it all.
 * Nothing is written, so in may be the place out writes to (the message buffer's free
 * space); dataparse_feed may write more than it reads and must not be fed from there. */
size_t dataparse_take_clean(struct dataparse *p, const char *in, size_t len);
/* True when dataparse_take_clean can take anything (p is at or inside a plain line). */
bool dataparse_takes_clean(const struct dataparse *p);

/* The index of the first octet <= DATAPARSE_SCAN_MAX in s[0..n), or n: the data parser's
 * scan for the end of a line (CR, LF and NUL are all <= 13; so are TAB and a few rare
 * controls, which the caller steps over). dataparse_scan uses SSE2 where the compiler
 * targets it (every x86-64) and is otherwise dataparse_scan_scalar; the two agree on every
 * input (test_dataparse, fuzz_dataparse). */
#define DATAPARSE_SCAN_MAX 13
size_t dataparse_scan(const char *s, size_t n);
size_t dataparse_scan_scalar(const char *s, size_t n);
/* Tests and fuzzing: true makes dataparse_feed use dataparse_scan_scalar (and no block
 * path); dataparse_force_sse2 makes its block path use SSE2 where the CPU has AVX2 (the
 * two make the same bit masks; each path is run over the same inputs and compared). */
extern bool dataparse_force_scalar;
extern bool dataparse_force_sse2;

/* The encoder for the relay: content (CRLF lines) -> wire form with dot-stuffing. Stateful
 * across calls (a line may span chunks). A CR or LF in the content that is not part of a
 * CRLF pair is written as CRLF (and the next line stuffed), so no content — even a
 * plugin's or milter's — can end the data early at the backend. */
struct dotstuff { bool at_line_start; bool last_cr; };
void dotstuff_init(struct dotstuff *d);
/* Writes the stuffed form of in to out via the same callback type. 0 or -1. */
int dotstuff_encode(struct dotstuff *d, const char *in, size_t len, dataparse_out_fn out,
                    void *arg);
/* Emits the terminator: CRLF first if the content did not end with one, then ".\r\n". */
int dotstuff_finish(struct dotstuff *d, dataparse_out_fn out, void *arg);

#endif
