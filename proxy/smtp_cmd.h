/* smtp_cmd.h — one command line -> verb + arguments. RFC 5321 4.1, 4.5.3.1 limits.
 * Pure: no I/O, no allocation; all strings live in cmd->buf. */
#ifndef MX_SMTP_CMD_H
#define MX_SMTP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
    SMTP_UNKNOWN = 0, SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
    SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP, SMTP_STARTTLS,
    SMTP_AUTH, SMTP_BDAT, SMTP_XCLIENT,
    SMTP_HTTP /* GET/POST/HEAD/PUT/CONNECT/OPTIONS..., a TLS ClientHello: a non-SMTP client */
};

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_param {
    char *key;
    char *value;        /* NULL when no '=' */
};

#define SMTP_MAX_PARAMS 16

/* The layout is the parse's footprint: every field smtp_cmd_parse sets for each command
 * (the scalars, then the start of buf) is in the first 64 octets, one cache line; params
 * and xbuf are written only for MAIL/RCPT with what they hold. The struct lives in the
 * session's look-ahead memo (cold between a session's turns), and its scalars spread over
 * three lines cost the pipelined path about 4 of its 88 simulated write misses a message
 * (bench_core_cost.py lines PROFILE proxy/smtp_cmd.c 0.2 D1mw). */
struct smtp_cmd {
    enum smtp_verb verb;
    char *arg;          /* everything after the verb and one space or TAB, trimmed of blanks,
                         * NUL-terminated ("" if none) */
    /* MAIL / RCPT only: */
    char *addr;         /* the path without <> and without source route; "" for <> */
    char *params_raw;   /* the raw ESMTP parameter text after '>' (trimmed), "" if none */
    size_t nparams;
    uint64_t size;      /* SIZE=, 0 if absent */
    enum smtp_body body;
    bool smtputf8;
    bool last;          /* BDAT ... LAST (the chunk size is in size) */
    bool addr_utf8;     /* MAIL / RCPT: the address holds UTF-8 (RFC 6531) */
    char buf[1100];     /* storage for the strings above; commands are <= 1000 octets here */
    struct smtp_param params[SMTP_MAX_PARAMS];
    char xbuf[1100];    /* storage for addr and the split params */
};

/* Parses line (len bytes, no CRLF). Returns 0, or -1 with *reply set to a full static reply
 * for the client, e.g. "501 5.5.4 Syntax: MAIL FROM:<address>" or
 * "500 5.5.2 Syntax error, command unrecognized" (verb SMTP_UNKNOWN). cmd->verb is set even
 * on error when the verb was recognised. Verbs are case-insensitive and end at a space or a
 * TAB (Postfix's smtpd splits on both: "BDAT<TAB>10 LAST" is a BDAT).
 * MAIL FROM:<addr> [params] and RCPT TO:<addr> [params]: accept "FROM: <addr>"; reject a
 * missing <> (501 5.5.4, the command's syntax) and a path without its '>' (501 5.1.7 /
 * 5.1.3, the address's); strip a source route <@a,@b:u@d> (RFC 5321 4.1.1.3, C); the mailbox follows
 * RFC 5321 4.1.2: a Dot-string local part (atext atoms, single inner dots) or a
 * Quoted-string (kept exactly as sent, quotes included), "@", a Domain (domain.c: LDH labels,
 * '_' tolerated, one trailing root dot) or an IPv4/IPv6 address literal; lengths per
 * 4.5.3.1 (local part <= 64, domain <= 255, label <= 63, path <= 256). Errors: 501 5.1.7
 * (sender) / 501 5.1.3 (recipient) for syntax and lengths, 553 5.1.7 / 553 5.1.3 for a
 * General-address-literal, 553 5.6.7 for a non-ASCII sender without SMTPUTF8 (RFC 6531;
 * UTF-8 must be well-formed). A recipient's UTF-8 only sets addr_utf8: check it with
 * smtp_cmd_check_utf8 against the transaction. RCPT TO:<Postmaster> is valid. Null sender <>
 * only for MAIL. Params: keyword[=value] separated by spaces, max SMTP_MAX_PARAMS, SIZE
 * digits, BODY=7BIT|8BITMIME|BINARYMIME, SMTPUTF8 without value; unknown keywords are kept.
 * Lines containing NUL are syntax errors, so are other control characters (TAB aside).
 * HTTP verbs, and a line that starts as a TLS record (a ClientHello without STARTTLS),
 * return -1 with verb SMTP_HTTP (the session should close the connection).
 * BDAT <size> [LAST] (spaces or TABs between) fills size and last. Lines over 998 octets: "500 5.5.2 Line too long". */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd, const char **reply);
/* The first octets of a command line, as they arrive: 1 when they are a TLS handshake
 * record's header (0x16 0x03 0x00..0x04: a ClientHello without STARTTLS, which usually holds
 * no line end to wait for), 0 when they are not, -1 when too few to tell yet. */
int smtp_cmd_tls_record(const char *data, size_t len);
/* Tests and fuzzing: true makes smtp_cmd_parse take its octet-by-octet forms only (no
 * quick ones); both give the same parse (test_smtp_cmd, fuzz_smtp_cmd compare them). */
extern bool smtp_cmd_force_slow;
/* Copies a parsed command: dst gets src's fields with its strings in dst's own buffers
 * (what a fresh smtp_cmd_parse of the same line would give). */
void smtp_cmd_copy(struct smtp_cmd *dst, const struct smtp_cmd *src);
/* A MAIL or RCPT whose address holds UTF-8 in a transaction without SMTPUTF8 (RFC 6531
 * 3.4): returns "553 5.6.7 ..." for it; NULL when the address is ASCII or smtputf8 is set. */
const char *smtp_cmd_check_utf8(const struct smtp_cmd *cmd, bool smtputf8);
/* Upper-case name of v ("MAIL", "UNKNOWN", "HTTP"); static string. */
const char *smtp_verb_name(enum smtp_verb v);

#endif
