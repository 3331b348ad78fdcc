/* domain.h — domain names as mxgate compares them: the syntax check (RFC 5321 4.1.2,
 * 4.1.3, 4.5.3.1.2; RFC 6531 U-labels), the normal form, and the one matcher that routes
 * (backends.routes[].domains) and accept_domains share.
 *
 * Normal form: ASCII letters lower-cased, one trailing root dot removed ("Example.ORG." ->
 * "example.org"), U-labels as their A-labels (libidn2, UTS #46 non-transitional mapping:
 * "BÜCHER.example", "bücher.example" and "xn--bcher-kva.example" are one name, as Postfix
 * compares them); a non-ASCII name that is not valid IDNA is kept as it is and compared
 * octet by octet.
 *
 * Patterns: "example.org" (that name only), "*.example.org" (every name below it, at any
 * depth, not example.org itself), "[192.0.2.1]" / "[IPv6:2001:db8::1]" (that address
 * literal). Pure code: no I/O; the set allocates. */
#ifndef MX_DOMAIN_H
#define MX_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>

#define DOMAIN_MAX 255          /* RFC 5321 4.5.3.1.2 */
#define DOMAIN_MAX_LABEL 63     /* RFC 1035 2.3.4 */

enum domain_syntax {
	DOMAIN_OK = 0,
	DOMAIN_BAD,                 /* not a Domain or address literal */
	DOMAIN_TOO_LONG,            /* over 255 octets, or a label over 63 */
	DOMAIN_LITERAL_UNSUPPORTED, /* a well-formed General-address-literal ("[tag:...]") */
};

/* Checks d[0..n) as the domain part of a mailbox: a Domain (letter/digit labels with inner
 * hyphens, '_' tolerated as Postfix does, UTF-8 octets allowed and reported through *utf8),
 * optionally one trailing root dot, or an IPv4 / "IPv6:" address literal. *utf8 (may be
 * NULL) is set when an octet >= 0x80 was seen; the octets must then be well-formed UTF-8. */
enum domain_syntax domain_check(const char *d, size_t n, bool *utf8);

/* domain_check without its fast path for the usual ASCII name (same results; for the
 * tests that compare the two). */
enum domain_syntax domain_check_general(const char *d, size_t n, bool *utf8);

/* True when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code
 * points past U+10FFFF). */
bool domain_utf8_valid(const char *s, size_t n);

/* The length of the well-formed UTF-8 sequence at s (n >= 1 octets left): 1 for ASCII, 2-4,
 * or 0 when s[0] begins none (the same rules as domain_utf8_valid). */
size_t domain_utf8_seq(const unsigned char *s, size_t n);

/* Writes the normal form of d[0..n) into out (cap octets, NUL-terminated): ASCII case
 * folded, one trailing root dot removed, U-labels as A-labels, an IPv6 literal as "[ipv6:" + its RFC 5952 text
 * + "]" (so "[IPv6:2001:db8:0:0:0:0:0:1]" is "[ipv6:2001:db8::1]"). Returns its length, or
 * -1 when it is empty, longer than DOMAIN_MAX, contains a NUL, or cap is too small. No
 * syntax check beyond that. */
int domain_normalize(const char *d, size_t n, char *out, size_t cap);

/* True when a and b have the same normal form. */
bool domain_equal(const char *a, const char *b);

/* The domain of an address: after its last '@' (quoted local parts may hold '@'), or NULL
 * when there is none ("Postmaster"). Borrowed from addr. */
const char *domain_of_address(const char *addr);

/* Whether addr's domain is fully qualified (Postfix's reject_non_fqdn_sender/recipient): it
 * holds a dot other than a trailing root dot ("a@example.org", "a@example.org."), or it is an
 * address literal ("a@[192.0.2.1]"). An address without a domain ("Postmaster") counts as
 * qualified (RFC 5321 4.5.1 makes it local), "a@localname" and "a@localname." do not. */
bool domain_address_is_fqdn(const char *addr);

/* ---- sets of patterns ----------------------------------------------------------------- */

struct domain_set;

struct domain_set *domain_set_new(void);
void domain_set_free(struct domain_set *s);

/* NULL when pattern is a valid pattern, else the reason (static text). */
const char *domain_pattern_check(const char *pattern);
/* Adds a pattern (copied, normalised). 0, or -1 with *err (static text): not a valid name,
 * a lone "*", a wildcard not of the form "*.name", out of memory. A pattern already in the
 * set is not an error. */
int domain_set_add(struct domain_set *s, const char *pattern, const char **err);
/* Patterns in the set (duplicates counted once). */
size_t domain_set_count(const struct domain_set *s);
/* The most slots a lookup of a pattern the set holds looks at (tests: the slots are keyed,
 * siphash.h). */
size_t domain_set_longest_probe(const struct domain_set *s);
/* Calls fn(arg, name, below) for each pattern of s in no particular order: name its normal
 * form (borrowed for the call), below true for "*.name". Stops at the first fn that returns
 * non-zero and returns that; 0 when every call returned 0 (s NULL: none). For an index over
 * many sets (bypass.c). */
int domain_set_each(const struct domain_set *s, int (*fn)(void *arg, const char *name, bool below), void *arg);
/* True when domain (any case, with or without a trailing dot) matches a pattern. NULL or
 * empty domain: false. */
bool domain_set_match(const struct domain_set *s, const char *domain);

/* True when every name the pattern (as domain_set_add takes it) matches is matched by s:
 * "x.example" when s matches it, "*.x.example" when s holds "*.x.example" or a wildcard of a
 * parent ("*.example"). An invalid pattern: false. (For -t: a route shadowed by an earlier
 * one.) */
bool domain_set_covers(const struct domain_set *s, const char *pattern);

/* Relay check for a recipient address (as RCPT gives it, without <>): true when every
 * destination the address names is in s. The destinations are the domain after the last
 * '@' and, looking inside quotes as Postfix's resolver does by default
 * (resolve_dequoted_address), the routing operators a backend might still honour in the
 * local part: a domain after its last '@' or '%' ("user%other@local", "\"u@other\"@local")
 * and a host before its first '!' ("other!user@local"). An address without a domain
 * ("Postmaster") is accepted: RFC 5321 4.5.1 makes it local. On false, the first domain not
 * accepted is copied into denied (cap octets; may be NULL). */
bool domain_set_accepts_address(const struct domain_set *s, const char *addr, char *denied,
    size_t cap);

/* addr (a recipient's path, "Postmaster" alone too) is one of items[0..n): an item with an
 * @ is the whole address, one without a local part of any domain. Local parts compare
 * case-insensitively, domains as domain_equal does (case, one trailing root dot, U-labels),
 * so "abuse@Example.ORG." is abuse@example.org. exempt_recipients and bypass: share it. */
bool domain_address_listed(char *const *items, size_t n, const char *addr);

#endif
