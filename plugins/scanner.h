/* scanner.h — one request/reply exchange with a content scanner over a stream socket (clamd,
 * spamd, rspamd): opens the peer (plugins/pconn.h), lets the protocol codec queue its request
 * once connected, collects the reply up to a bound (or hands each read to the codec, which
 * keeps what it needs: rspamd's body block), and ends with exactly one outcome — the
 * reply is complete (the codec says so, or the peer closed), or an error (connect, I/O, reply
 * too big, timeout). The codecs build requests and read replies; they hold no socket code.
 *
 * Lifetime: after done the exchange is over (no more callbacks); the owner frees it with
 * scanner_free(), which may be called from inside done or at any time before (a cancelled
 * call: nothing is called then). Memory goes once libuv closed the handles. */
#ifndef MX_SCANNER_H
#define MX_SCANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pconn.h"

enum scanner_status {
	SCANNER_OK = 0,         /* the reply is complete (err: an I/O error that followed it) */
	SCANNER_UNREACHABLE,    /* connect failed (err) */
	SCANNER_CLOSED,         /* the peer closed without a byte of reply */
	SCANNER_IO_ERROR,       /* read/write error, the reply incomplete (err) */
	SCANNER_TOO_BIG,        /* more reply than max_reply before it was complete */
	SCANNER_BAD_REPLY,      /* the codec called the reply malformed */
	SCANNER_TIMEOUT,        /* no complete reply within timeout_ms */
	SCANNER_SEND_FAILED,    /* the codec could not queue its request */
};

struct scanner;

struct scanner_codec {
	/* Connected: queue the request with scanner_write() (in pieces if it likes). 0 or -1. */
	int (*send)(struct scanner *s, void *arg);
	/* The reply so far (len bytes; eof: the peer closed or failed after sending them):
	 * 1 = needs more, 0 = complete, -1 = malformed. NULL: complete when the peer closes. */
	int (*complete)(const char *reply, size_t len, bool eof, void *arg);
	/* The outcome, once. reply is the bytes read (NUL-terminated after len; writable; NULL
	 * when none, or with feed), valid during the call. err: the libuv error, else 0. */
	void (*done)(void *arg, enum scanner_status st, char *reply, size_t len, int err);
	/* Optional, instead of complete and the scanner's buffer: each read as it comes (len > 0),
	 * and once with eof (data NULL, len 0) when the peer closed or failed after sending some;
	 * the codec keeps what it needs, within its own bounds (max_reply is not used). 1 = needs
	 * more, 0 = complete, -1 = malformed, -2 = too big. done then gets reply NULL and len the
	 * octets read. */
	int (*feed)(const char *data, size_t len, bool eof, void *arg);
};

/* Starts connecting to addr on loop. max_reply bounds the reply (>= 1); timeout_ms bounds
 * the whole exchange (0: none here — the plugin host's per-entry timeout still cancels the
 * call). The codec is borrowed (static). NULL when the connection cannot even start (out of
 * memory, bad loop state): nothing will be called. */
struct scanner *scanner_start(uv_loop_t *loop, const struct pconn_addr *addr,
    const struct scanner_codec *codec, size_t max_reply, uint64_t timeout_ms, void *arg);

/* Queues request bytes (from the codec's send). owned: free()d once written (data may point
 * into it); otherwise data stays valid until the exchange ends (the message being scanned).
 * 0 or -1 (owned is freed either way). */
int scanner_write(struct scanner *s, const void *data, size_t len, void *owned);

/* Ends the exchange (drops the connection, nothing more is called). NULL is a no-op. */
void scanner_free(struct scanner *s);

/* "ok", "unreachable", "closed", "io_error", "too_big", "bad_reply", "timeout",
 * "send_failed". */
const char *scanner_status_name(enum scanner_status st);

#endif
