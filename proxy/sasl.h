/* sasl.h — the SMTP AUTH exchange's messages (RFC 4954) for the PLAIN (RFC 4616) and LOGIN
 * mechanisms: the AUTH argument, strict base64, the PLAIN message split, LOGIN's two
 * answers, cancellation. No I/O, no allocation: the session (state machine, phase B) and the
 * Dovecot client (sasl_dovecot.h) use these; the password itself only passes through
 * caller-owned buffers that sasl_wipe() clears.
 *
 * The credentials are checked by the authentication service (Dovecot), which receives the
 * client's base64 as sent; decoding here serves the checks before it (syntax, lengths, the
 * user name for logs, per-user failure counts and rate limits). */
#ifndef MX_SASL_H
#define MX_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define SASL_MAX_FIELD 255        /* RFC 4616 2: authzid and authcid are 1..255 octets */
/* The AUTH command line, CRLF included: 12,288 octets. RFC 4954 4: servers MUST handle the
 * longest encoded response their mechanisms make, independent of their line limits
 * elsewhere; clients send long ones (an OAuth bearer token through PLAIN, 2-8 KB) as the
 * initial response. Every other command stays at limits.max_line_length. */
#define SASL_MAX_LINE 12288
/* Longest base64 text accepted from a client (an initial response or a 334 answer): the
 * AUTH line's bound less CRLF, down to a multiple of 4. */
#define SASL_MAX_B64 12284
/* PLAIN's passwd: RFC 4616 2 has servers take 255 octets at least; a token is longer, and
 * the passwd is only checked for syntax here (Dovecot judges it): what the base64 holds. */
#define SASL_MAX_PASSWD (SASL_MAX_B64 / 4 * 3)

enum sasl_mech { SASL_MECH_NONE = 0, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

/* Mechanism name, upper-case ("PLAIN"), for the EHLO AUTH line and the Dovecot request. */
const char *sasl_mech_name(enum sasl_mech m);

/* Parses the argument of "AUTH mechanism [initial-response]" (RFC 4954 4). On success
 * returns 0 with *mech and *initial: a pointer into arg at the initial response ("=" stands
 * for an empty one), or NULL when none was given. Returns -1 with *reply set to the full
 * static reply: 504 5.5.4 for an unknown mechanism, 501 5.5.4 for bad syntax (extra words,
 * an initial response that is not base64). Mechanism names are case-insensitive. */
int sasl_parse_auth_arg(const char *arg, enum sasl_mech *mech, const char **initial,
    const char **reply);

/* True for the client's "*" line cancelling an exchange (RFC 4954 4: reply 501 5.0.0). */
bool sasl_is_cancel(const char *line, size_t len);

/* Strict base64 (RFC 4648 4): the standard alphabet, '=' padding required to a multiple of
 * 4, no whitespace, no data after padding, and zero pad bits (a canonical encoding). "=" is
 * RFC 4954's empty response and decodes to 0 octets. Writes at most cap octets to out.
 * Returns the decoded length, or -1 (invalid, or does not fit). */
ssize_t sasl_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);
/* Encodes n octets into out (cap >= 4 * ((n + 2) / 3) + 1, NUL-terminated). Returns the
 * length of the text, or -1 when cap is too small. */
ssize_t sasl_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap);

/* RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
struct sasl_plain {
	char authzid[SASL_MAX_FIELD + 1];   /* "" when absent: act as authcid */
	char authcid[SASL_MAX_FIELD + 1];
	char passwd[SASL_MAX_PASSWD + 1];
};

/* Splits a decoded PLAIN message: exactly two NULs, authcid 1..255 octets, passwd
 * 1..SASL_MAX_PASSWD, authzid 0..255, each valid UTF-8 without NUL. 0, or -1 with *why (static, for logs; the
 * client gets 501 5.5.2). out is always left wiped or filled. */
int sasl_plain_split(const unsigned char *msg, size_t n, struct sasl_plain *out,
    const char **why);

/* Decodes one base64 LOGIN answer (the user name or the password) into out (cap octets,
 * NUL-terminated): 1..255 octets of UTF-8 without NUL. 0 or -1. */
int sasl_login_decode(const char *b64, size_t n, char *out, size_t cap);

/* The LOGIN challenges (base64 of "Username:" and "Password:"), sent as "334 <text>". */
extern const char sasl_login_user_challenge[];
extern const char sasl_login_pass_challenge[];

/* Clears n octets at p in a way the compiler keeps (passwords, decoded messages). */
void sasl_wipe(void *p, size_t n);

#endif
