/* listfile.h — the `file:` lists' contents kept from one config load to the next.
 *
 * Every config load (the start, each SIGHUP or `mxgatectl reload`, `-t`) reads the `file:`
 * items of its lists (accept_domains, backends.routes' domains, bypass, deny_senders,
 * rules.recipient_actions, every list of CIDRs). A hosting platform reloads every minute
 * with thousands of them, most unchanged. A load asks listfile_get for a file's text: when
 * the file is the one the last load read (the same device, inode, size, mtime and ctime,
 * to the nanosecond: a stat, and on a file system not known as local (NFS, CIFS, FUSE ...)
 * an fstat of the file opened too, as NFS revalidates a file at open where a stat may
 * answer from its attribute cache) and had settled by then (listfile_is_settled), the text
 * kept from that read is handed back without reading the file; else the file is read now (cidr_file_read's
 * rules) and kept for the next load. A list of CIDRs keeps its parsed prefixes with the text
 * (listfile_cidrs), so an unchanged CIDR file is not parsed again either.
 *
 * What is kept is the process's, not a generation's: each generation's matchers are built
 * from the text (they merge a list's items and files into one set and index), so a running
 * generation owns nothing here. listfile_load_begin/listfile_load_end bracket one load: at
 * its end, the files that load did not ask for are forgotten (a path taken out of the
 * config, or one that failed to read, is not held). One mutex guards the table; the loads
 * run on the main thread. */
#ifndef MX_LISTFILE_H
#define MX_LISTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "cfg_value.h"

/* One file's text as a load read it. What is kept lives outside the malloc heap, in blocks
 * of its own (listfile.c's header says why); a text stays where it is while a reference
 * from listfile_get is out. */
struct listfile;

/* How long after a change a file's stat is trusted to show the next change (see
 * listfile_is_settled): 2 s covers file systems that keep whole seconds (ext3's small
 * inodes, FAT's 2 s, some NFS servers) and a little clock skew; a file changed within it
 * is read again at every load until it is older. */
#define LISTFILE_SETTLE_NS 2000000000LL

/* Whether a read made at time `read_at` (CLOCK_REALTIME, taken before the file was opened)
 * of a file with this stat can stand for the file as long as its stat stays the same: its
 * ctime (set by the kernel at every write, rename, chmod or utime; no program can set it
 * back, as `cp -p`, `rsync -t` or `touch -d` do the mtime) is at least LISTFILE_SETTLE_NS
 * before read_at. A write after such a read gets a later ctime than the one kept, even on a
 * file system whose clock ticks coarsely: nanosecond timestamps are only as fine as the
 * kernel's timestamp clock (a few ms), so two writes within one tick, the same size, can
 * leave dev/ino/size/mtime/ctime all equal. Pure: the unit test drives it. */
bool listfile_is_settled(const struct stat *st, const struct timespec *read_at);

/* Whether statfs(2)'s f_type magic is a local file system's (ext4, XFS, Btrfs, tmpfs,
 * overlayfs, ZFS ...), whose stat shows the file's state without an open. Pure. */
bool listfile_fs_is_local(unsigned long magic);

/* Starts one config load (a generation number for listfile_load_end's sweep). */
void listfile_load_begin(void);

/* Ends the load begun last: forgets every kept file it did not ask for. *nread and *nkept
 * (either may be NULL) are the files it read and those it took as kept. */
void listfile_load_end(size_t *nread, size_t *nkept);

/* The text of the file at path (at most CIDR_FILE_MAX octets; a regular file or /dev/null),
 * read now or kept (see above), with a reference the caller drops with listfile_release.
 * NULL with *errstr (strerror text or static) when it cannot be read; nothing is kept then.
 * Logs `event=list_file path=P action=read|kept octets=N` at debug level. */
struct listfile *listfile_get(const char *path, const char **errstr);

/* f's text, NUL-terminated, and its length in *len; valid while the caller's reference is. */
const char *listfile_text(const struct listfile *f, size_t *len);

/* Whether f holds the CIDRs of its text (listfile_keep_cidrs; not when not parsed yet or
 * its text had bad lines): then *v and *n are they, valid while the reference is. */
bool listfile_cidrs(const struct listfile *f, const struct cfg_cidr **v, size_t *n);

/* Keeps a copy of the n CIDRs at v (a whole, good parse of f's text, in cfg_cidrlist_sort's
 * order) with f; v stays the caller's. Nothing when f has them already, f is not the file's
 * text any more (read again since) or the copy finds no memory: the caller uses v then
 * (listfile_cidrs says false or gives the earlier ones). */
void listfile_keep_cidrs(struct listfile *f, const struct cfg_cidr *v, size_t n);

/* Drops a reference from listfile_get; NULL is a no-op. */
void listfile_release(struct listfile *f);

/* What is kept: *live the octets of the kept files' objects in the shared blocks (texts,
 * CIDRs, entries with their paths; not the texts and CIDRs of 64 KB or more, which have
 * mappings of their own), *mapped those of all the mappings (the tests). */
void listfile_usage(size_t *live, size_t *mapped);

/* Forgets every kept file (tests, exit). */
void listfile_forget_all(void);

#endif
