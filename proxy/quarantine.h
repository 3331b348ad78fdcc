/* quarantine.h — the quarantine maildir as an operator works with it: the envelope block on
 * top of every held file (maildir_quarantine_fields writes it, amavisd-new's field names),
 * read back by a bounded parser without I/O; and the file side of the control verbs
 * `quarantine list|show|delete` (proxy/quarantine_control.c), which the caller runs off
 * the main loop (the thread pool): they read directories and files.
 *
 * The block: the leading header fields Return-Path, X-Envelope-From, X-Envelope-To,
 * X-Envelope-To-Blocked, X-Quarantine-Reason (optional) and X-Quarantine-ID, which ends it;
 * the held message (mxgate's Received field first) follows. */
#ifndef MX_QUARANTINE_H
#define MX_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "headers.h"

/* The envelope block is read from the first QUARANTINE_ENV_MAX octets of a file: a longer
 * one (more recipients than limits.max_recipients allows at its maximum) is refused. */
#define QUARANTINE_ENV_MAX (256u * 1024)
#define QUARANTINE_RCPTS_MAX 1000
#define QUARANTINE_ID_MAX 23     /* hook_env.queue_id's room */

/* A span of the parsed buffer: buf[off..off+len). */
struct quarantine_span {
	size_t off, len;
};

struct quarantine_envelope {
	struct quarantine_span sender;       /* between < and >; "" for <> */
	struct quarantine_span id;           /* X-Quarantine-ID's value without < > */
	struct quarantine_span reason;       /* X-Quarantine-Reason's value, len 0 without one */
	struct quarantine_span rcpts[QUARANTINE_RCPTS_MAX];  /* X-Envelope-To's addresses */
	size_t nrcpts;
	size_t end;                          /* where the held message starts */
	const char *err;                     /* -1: why (static text) */
};

/* Parses the envelope block at the start of buf[0..len). eof: buf holds the whole file.
 * Returns 1 with e filled (spans into buf), 0 when the block is not complete in buf yet (len
 * < QUARANTINE_ENV_MAX and not eof: call again with more of the file), -1 when buf does not
 * start with a complete, well-formed block (e->err). Pure: no I/O, no allocation, reads
 * nothing past buf[len). */
int quarantine_envelope_parse(const char *buf, size_t len, bool eof, struct quarantine_envelope *e);

/* An ID a request may name: 1..QUARANTINE_ID_MAX octets of [0-9A-Za-z] (a queue id); so no
 * path ("../x", "/etc") ever reaches the file system. */
bool quarantine_id_is_valid(const char *id);

/* The ID a held file's name carries (",QID=ID" in the base name: maildir_deliver_tagged)
 * into id (QUARANTINE_ID_MAX + 1 octets): true; false for a name without a valid one (a
 * file held by an older mxgate: its head says). name: "new/NAME", "cur/NAME" or a path. Pure. */
bool quarantine_name_id(const char *name, char *id);

/* A release's queue id from the one smtp_tx_begin made for it (sess: a session's form, 12
 * characters of an alphabet without vowels): "A" + sess into q (cap >= 14). A session's id has
 * no 'A' and 12 characters, so a release's can never be a session's (nor one a session
 * could ever be given), while two releases differ as their session-form ids do. Pure. */
void quarantine_release_queue_id(char *q, size_t cap, const char *sess);

/* A held file, found by quarantine_find / listed by quarantine_list. */
struct quarantine_item {
	char path[4096];
	char *head;                  /* malloc'd: the file's first octets (up to the header
	                              * block's end, at most QUARANTINE_ENV_MAX + QUARANTINE_SHOW_MAX) */
	size_t head_len;
	struct quarantine_envelope env;   /* spans into head */
	time_t mtime;
	uint64_t size;               /* of the held message (the file less the block) */
	bool has_fd;                 /* quarantine_find's: fd is the file head was read from */
	int fd;                      /* (open until quarantine_item_free): a release reads the
	                              * message from it, so a sweep's unlink or a rewrite's rename
	                              * meanwhile never mixes two files nor cuts one */
};
#define QUARANTINE_SHOW_MAX (64u * 1024)   /* header octets `show` prints at most */

void quarantine_item_free(struct quarantine_item *it);

/* Blocking (call from the thread pool). Looks in root's new/ and cur/ for the file whose
 * X-Quarantine-ID is id: 1 found (it filled in, quarantine_item_free), 0 none, -1 an error
 * reading root (err). Reads the folders' names and, through the process's index
 * (quarantine_index.h, under a lock: any thread), the head of a file only when its name is
 * new to it (up to the one found) or to confirm a hit. */
int quarantine_find(const char *root, const char *id, struct quarantine_item *it, char *err, size_t errlen);

/* One operation at a time on a held message, in this process and in any other sharing the
 * folder (another node on the same file system): release, delete and the expiry sweep take
 * an exclusive flock(2) on the held file (its open file description: threads of one process
 * exclude each other too; over NFS the client maps it to a whole-file lock) before they act,
 * and hold it until done (quarantine_item_free). A rewrite renames a new file over the name,
 * so once locked the name is checked to still be the file locked; if it is not (deleted,
 * released or rewritten meanwhile), the ID is looked up again. list and show read, never
 * lock. */
#define QUARANTINE_BUSY (-2)
/* At most this many lookups when the file keeps changing under us: then busy. */
#define QUARANTINE_LOCK_ROUNDS 8
/* How often a waiting quarantine_find_locked tries the lock again. */
#define QUARANTINE_LOCK_POLL_MS 20

/* Blocking. As quarantine_find, and the file found locked (it->fd): 1. When another operation
 * holds it: tried again every QUARANTINE_LOCK_POLL_MS for up to wait_ms (0: not at all; each
 * try calls waiting(arg) first when not NULL, which returns true to give up), then
 * QUARANTINE_BUSY. 0 none (gone meanwhile too), -1 an error reading root (err). */
int quarantine_find_locked(const char *root, const char *id, struct quarantine_item *it, unsigned wait_ms,
    bool (*waiting)(void *arg), void *arg, char *err, size_t errlen);

/* Blocking. The newest n (<= QUARANTINE_LIST_MAX) held files of root, newest first, into
 * items (an array of n, each to be freed); *count how many. Files that are not held
 * messages (no envelope block) are skipped. 0, or -1 with err. */
#define QUARANTINE_LIST_MAX 200

/* What an admin looks for (each NULL/0: any): rcpt, a recipient the file names ("@DOMAIN":
 * any recipient of that domain; case-insensitive); from, text in the envelope sender; subject,
 * text in the held message's Subject field (case-insensitive, as it is in the file: an
 * encoded word is not decoded); older_than, a file time before it. */
struct quarantine_filter {
	const char *rcpt, *from, *subject;
	time_t older_than;
};

/* Whether f names anything to look for. */
bool quarantine_filter_is_set(const struct quarantine_filter *f);

/* Whether it matches f (NULL: yes). Pure. */
bool quarantine_item_matches(const struct quarantine_item *it, const struct quarantine_filter *f);

/* f: the newest n that match it (NULL: the newest n). With a filter every file's name is
 * sorted by time, then heads are read newest first until n match. */
int quarantine_list(const char *root, size_t n, const struct quarantine_filter *f, struct quarantine_item *items,
    size_t *count, char *err, size_t errlen);

/* The index of rcpt (case-insensitive) among it's recipients, or -1. Pure. */
/* Whether the item's recipient i is rcpt (case ignored, as rcpt_index compares). */
bool quarantine_item_rcpt_is(const struct quarantine_item *it, size_t i, const char *rcpt);
long quarantine_item_rcpt_index(const struct quarantine_item *it, const char *rcpt);

/* A file in the quarantine maildir's tmp/ older than this (its mtime: the last write) is
 * what a crash between the write and the rename into new/ left: the Maildir convention's
 * 36 hours (no write takes that long), whatever quarantine.expire says. */
#define QUARANTINE_TMP_STALE_S (36 * 3600)

/* How many files one sweep removed, by folder. */
struct quarantine_expired {
	size_t held;       /* from new/ and cur/ */
	size_t released;   /* from released/ */
	size_t stale_tmp;  /* from tmp/ */
	size_t busy;       /* old enough, but locked by an operation under way: the next sweep's */
	size_t lock_failed;   /* old enough, but flock failed otherwise (ENOLCK: a file system
	                       * without locks): left */
	int lock_errno;    /* the first of those failures' errno */
};

/* Blocking. Removes every held file of root's new/ and cur/ whose time (the hold's: a rewrite
 * keeps it) is before `before` (0: none, those folders are not read), every one of root's
 * released/ whose time (the release's) is,
 * and every regular file of root's tmp/ whose time is before tmp_before (a write a crash cut:
 * QUARANTINE_TMP_STALE_S): quarantine.expire's sweep. Only what mxgate held goes from new/
 * and cur/ (a ",QID=" in the name, or an envelope block at the head). n: how many went from
 * each. 0, or -1 with err when a folder cannot be read (the files removed until then are
 * counted, the other folders still swept). */
int quarantine_expire(const char *root, time_t before, time_t tmp_before, struct quarantine_expired *n,
    char *err, size_t errlen);

/* Blocking. Moves the held file into root/released/ (created 0700 when missing), where
 * list, show and release no longer see it (amavis keeps released files too), dated now (the
 * release: the sweep's age of a released file). 0, 1 when the file was gone (expired or
 * deleted meanwhile), or -1 err. */
int quarantine_move_released(const char *root, const struct quarantine_item *it, char *err, size_t errlen);

struct rcpt;
/* Blocking. Rewrites the held file it (in root's new/ or cur/) so that its envelope block
 * names only rcpts[0..n) (n >= 1; their addr) as X-Envelope-To and X-Envelope-To-Blocked:
 * the block written anew (maildir_quarantine_fields: the sender, reason and ID as they
 * were), the held message copied after it, into root/tmp/, fsync'd, the file's time kept,
 * then renamed over it->path: the file names everyone or only these, never half. 0, or -1
 * with err (the file is then as it was). */
int quarantine_rewrite_rcpts(const char *root, const struct quarantine_item *it, const struct rcpt *rcpts,
    size_t n, char *err, size_t errlen);

/* The header block of a held message (after the envelope), cut at QUARANTINE_SHOW_MAX:
 * *len octets from the returned pointer into it->head. */
const char *quarantine_item_headers(const struct quarantine_item *it, size_t *len);

#endif
