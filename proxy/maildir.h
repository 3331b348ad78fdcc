/* maildir.h — the `maildir:` backend: delivers a held message into a Maildir
 * (tmp/ -> fsync -> rename into new/), with the file I/O in the libuv thread pool. */
#ifndef MX_MAILDIR_H
#define MX_MAILDIR_H

#include <stddef.h>
#include <uv.h>

struct msgbuf;

/* status 0 = delivered, -1 = error (err says why). queue_id is the file name in new/;
 * queue_id and err are valid during the call only. */
typedef void (*maildir_done_cb)(void *arg, int status, const char *queue_id, const char *err);

/* Writes prefix (e.g. trace + added headers; may be NULL/0, copied here) followed by
 * msg[off..] to <root>/tmp/<unique>, fsyncs it, renames it into <root>/new/ and fsyncs
 * new/ (creating root, tmp, new, cur with mode 0700 if missing). msg stays owned by the
 * caller and must stay alive and unmodified until cb. Runs in uv_queue_work; cb runs on
 * the loop thread. Returns 0 if queued, -1 if not (then cb is never called). */
int maildir_deliver(uv_loop_t *loop, const char *root, const char *prefix, size_t prefix_len,
    struct msgbuf *msg, size_t off, maildir_done_cb cb, void *arg);

/* As maildir_deliver, with ",QID=<id>" (MAILDIR_ID_FIELD) after the unique name when id is
 * not NULL or "" (the quarantine's X-Quarantine-ID, [0-9A-Za-z]): an extra field of the base
 * name as Dovecot's ",S=<size>" (maildir readers keep the base name when they move a file
 * into cur/ and add ":2,FLAGS"), so a lookup by ID reads names, not files. */
#define MAILDIR_ID_FIELD ",QID="
int maildir_deliver_tagged(uv_loop_t *loop, const char *root, const char *id, const char *prefix,
    size_t prefix_len, struct msgbuf *msg, size_t off, maildir_done_cb cb, void *arg);

/* Makes a Maildir file name: "<sec>.M<usec>P<pid>Q<n>.<host>" (host: maildir_host_part of
 * the host name). Unique within the process and across processes on the host. At most 135
 * octets, so a ",QID=" field and a reader's ":2,FLAGS" keep it under NAME_MAX. Returns 0, or
 * -1 if buf is too small. Thread-safe. */
int maildir_make_name(char *buf, size_t len);

/* The host part of a unique name from the host name raw (NUL-terminated; "" or NULL-free
 * garbage alike): '/' and ':' escaped as \057 and \072 (the Maildir spec), and ',' as
 * \054 (a name's fields, ",QID=", never start in it), into out
 * (MAILDIR_HOST_MAX + 1 octets). A part longer than MAILDIR_HOST_MAX (a long generated
 * name, or one the escapes quadruple) is cut to its first octets, never inside an escape,
 * followed by "-" and 8 hex digits of a hash of the whole name. "" becomes "localhost".
 * Returns its length. Pure. */
#define MAILDIR_HOST_MAX 64
size_t maildir_host_part(const char *raw, char *out);

/* Synchronously checks that root is (or can be made) a writable Maildir: creates the
 * directories if missing, then creates and removes a probe file in tmp/. Blocking: call it
 * from the thread pool (health checks do). Returns 0, or -1 with the reason in err. */
int maildir_check_writable(const char *root, char *err, size_t errlen);

/* Blocking. write(2) all of buf, retrying short writes and EINTR. 0 or -1 (errno). */
int maildir_write_all(int fd, const char *buf, size_t len);
/* Blocking. fsync a directory so a rename into it survives a crash. 0 or -1. */
int maildir_sync_dir(const char *dir);

struct strbuf;
struct rcpt;

/* Appends the envelope of a quarantined message as header fields, amavisd-new's names (the
 * ones quarantine review and release tools read): "Return-Path: <sender>",
 * "X-Envelope-From: <sender>", "X-Envelope-To:" and "X-Envelope-To-Blocked:" with every
 * recipient ("<a>,<CRLF> <b>": one per line), "X-Quarantine-Reason: <reason>" when reason
 * is not NULL or "" (what held it: `quarantine list` shows it), "X-Quarantine-ID: <queue_id>"
 * last (it ends the block: quarantine.h). An octet below 0x20 or 0x7f in an address or the
 * reason becomes '?' (no field is split); sender "" is "<>". */
void maildir_quarantine_fields(struct strbuf *out, const char *sender, const struct rcpt *rcpts,
    size_t nrcpts, const char *queue_id, const char *reason);

#endif
