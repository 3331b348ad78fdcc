/* cfg_value.h — the value syntax of the configuration: sizes, durations, rates, CIDRs,
 * booleans, numbers, backend URLs and listen addresses, parsed from C strings (no YAML, no
 * I/O), and the CIDR matchers filters use at run time.
 *
 * The table engine (cfg.h) parses every scalar through these; custom fields and rule files
 * use them directly. Each parser returns 0 on success and -1 on bad text, leaving *out
 * untouched on failure unless it says otherwise. */
#ifndef MX_CFG_VALUE_H
#define MX_CFG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define CFG_SCALAR_MAX 256  /* longest number/size/duration text a parser is handed */

struct cfg_rate { uint64_t count; uint64_t period_ms; };

struct cfg_cidr { int family; uint8_t addr[16]; int prefix; };
/* sorted: v is in cfg_cidrlist_sort's order, so a match is a binary search per prefix length
 * instead of a walk of every entry. Set only by cfg_cidrlist_sort (the config load sorts
 * every list it parses); code that appends to or edits v must clear it. */
struct cfg_cidrlist { struct cfg_cidr *v; size_t n; bool sorted; };

/* Sizes are binary: "512", "4K", "4KB", "4KiB", "50M", "1G", "1T", "10B". */
int cfg_parse_size(const char *s, uint64_t *out);
/* "300s", "5m", "1h", "250ms", "2d", "1h30m"; a plain number is seconds. Result in ms. */
int cfg_parse_duration(const char *s, uint64_t *out_ms);
/* "30/60s", "1000/1h", "10/m" (per one minute). count >= 1, period > 0. */
int cfg_parse_rate(const char *s, struct cfg_rate *out);
/* "10.0.0.0/8", "192.0.2.1" (= /32), "2001:db8::/32", "::1" (= /128); a v4-mapped prefix
 * (::ffff:10.0.0.0/104) is stored as IPv4. Host bits beyond the prefix are cleared. */
int cfg_parse_cidr(const char *s, struct cfg_cidr *out);
/* 1 when sa (AF_INET or AF_INET6; v4-mapped v6 treated as v4) is inside any entry. A sorted
 * list costs O(P log n) for P distinct prefix lengths, an unsorted one O(n). */
bool cfg_cidrlist_match(const struct cfg_cidrlist *l, const struct sockaddr *sa);
/* Sorts l's entries by family, prefix length and address (entries must come from
 * cfg_parse_cidr: bytes past the family's length zero) and sets l->sorted. */
void cfg_cidrlist_sort(struct cfg_cidrlist *l);
bool cfg_cidr_match(const struct cfg_cidr *c, const struct sockaddr *sa);

/* true/false/yes/no/on/off/y/n/1/0, case-insensitive. 0 or -1. */
int cfg_parse_bool(const char *s, bool *out);
/* Decimal integer with an optional sign, blanks around it allowed, nothing else. */
int cfg_parse_long(const char *s, long *out);
/* A finite floating-point number, blanks around it allowed, nothing else. */
int cfg_parse_double(const char *s, double *out);

/* The inverse of the parsers, in the largest unit that is exact: 90000 ms -> "90s",
 * 3600000 -> "1h"; 1048576 bytes -> "1M". For messages and docs. */
void cfg_format_duration(uint64_t ms, char *buf, size_t sz);
void cfg_format_size(uint64_t v, char *buf, size_t sz);

/* Backend URLs: smtp://host[:port] (25), lmtp://host[:port] (24), lmtp:unix:/path,
 * maildir:/path. host: IPv4, [IPv6] or a DNS name. 0, or -1 with *errstr (static text). */
enum cfg_backend_kind { CFG_BACKEND_SMTP = 0, CFG_BACKEND_LMTP, CFG_BACKEND_LMTP_UNIX,
			CFG_BACKEND_MAILDIR };
struct cfg_backend_url {
	int kind;                   /* enum cfg_backend_kind */
	char host[256];             /* SMTP/LMTP: host without brackets */
	uint16_t port;
	char path[4096];            /* LMTP_UNIX / MAILDIR */
};
int cfg_parse_backend_url(const char *s, struct cfg_backend_url *out, const char **errstr);

/* Listen addresses: "127.0.0.1:2525", "[::1]:25", ":25" / "*:25" (every IPv4 address),
 * "[::]:25" (every IPv6 address), "localhost:25". Numeric only (no DNS). 0, or -1 with
 * *errstr. */
int cfg_parse_listen_address(const char *s, struct sockaddr_storage *ss, socklen_t *len,
			     const char **errstr);

#endif
