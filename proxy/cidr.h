/* cidr.h — CIDR list files: the text of a `file:PATH` entry in any list of CIDRs
 * (relay_networks, trusted_proxies, reputation.allow, ratelimit.allow, greylist.allow ...).
 *
 * Format (as Haraka's relay_acl_allow and a Postfix mynetworks file written one per line):
 * one address or prefix per line ("192.0.2.0/24", "2001:db8::/32", "::ffff:10.0.0.0/104"
 * stored as 10.0.0.0/8, a bare address is a /32 or /128), blanks around it, blank lines, and
 * comments from '#' to the end of the line; CRLF line ends are fine. Matching is
 * cfg_cidrlist_match (cfg_value.h): v4-mapped IPv6 clients match IPv4 entries.
 *
 * cidr_text_parse is pure (no I/O) and bounded; cidr_file_read adds the reading. */
#ifndef MX_CIDR_H
#define MX_CIDR_H

#include <stddef.h>
#include <sys/stat.h>

#include "cfg_value.h"

#define CIDR_FILE_MAX (16u * 1024 * 1024)  /* largest file read: ~1 M prefixes */

/* Called once per bad line: line and col are 1-based (col: the first octet of the bad
 * text), reason static text, text the bad token (NUL-terminated, at most 64 octets,
 * borrowed for the call). */
typedef void (*cidr_error_cb)(void *arg, size_t line, size_t col, const char *reason,
			      const char *text);

/* Parses text[0..len) and appends its entries to *l (l->v grows by realloc; *l owns it as
 * cfg_table_free expects; l->sorted is cleared: cfg_cidrlist_sort after the last append). Every bad line is reported through bad (may be NULL) and skipped.
 * Returns the number of bad lines (0 = all good), or -1 when out of memory. */
int cidr_text_parse(const char *text, size_t len, struct cfg_cidrlist *l, cidr_error_cb bad,
		    void *arg);

/* Reads the file path (at most CIDR_FILE_MAX octets) into a malloc'd buffer the caller
 * frees, with its length in *len. NULL with *errstr (strerror text or static) on failure. */
char *cidr_file_read(const char *path, size_t *len, const char **errstr);

/* cidr_file_read that also fills *st (when not NULL) with the opened file's fstat (on
 * success, and on a failure after the open). */
char *cidr_file_read_stat(const char *path, size_t *len, struct stat *st, const char **errstr);

#endif
