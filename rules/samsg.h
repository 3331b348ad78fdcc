/* samsg.h — a message's MIME tree as SpamAssassin's own parser (Mail::SpamAssassin::Message
 * 4.0.1) builds it: the header block read SA's way (continuations, up to three stray lines,
 * a missing separator), multipart bodies split at their boundaries line by line, each
 * leaf's raw (still encoded) lines, message/rfc822 parts decoded and parsed again, and the
 * parse flags SA's rules test (missing_mime_headers, mime_epilogue_exists ...).
 *
 * This is the structure the MIME evals read and the body, rawbody, URI and mimeheader views
 * of rules_view.c are built from. Bounded: 1000 parts, 20 levels of nested messages, lines cut at 2 KiB
 * like SA; the nested messages it decodes (base64, quoted-printable) twice the message's
 * size in all, not SA's (further ones stay leaves). No I/O. */
#ifndef MX_SAMSG_H
#define MX_SAMSG_H

#include <stdbool.h>
#include <stddef.h>

struct samsg_line { const char *p; size_t n; };   /* one line, its "\n" included */

struct samsg_hdr {
	char *name;
	char *value;        /* unfolded, trimmed, decoded (Node::header) */
	char *raw;          /* as received after the ':' (folds and the line break kept; CRLF
	                     * as LF): Node::raw_header */
};

struct samsg_part {
	int parent;                     /* index into parts, -1 for the top */
	int depth;
	char *type;                     /* SA's parse_content_type(): lower case, text/plain
	                                 * when missing */
	char *boundary, *charset, *name;
	bool ct_missing;
	struct samsg_hdr *hdrs; size_t nhdrs, hdrcap;
	struct samsg_line *raw; size_t nraw;   /* a leaf's body lines, as received */
	int *kids; size_t nkids, kidcap;
};

struct samsg {
	struct samsg_part *parts; size_t nparts, cap;   /* parts[0] is the message */
	/* SA's parse flags */
	bool missing_head_body_separator, missing_mime_head_body_separator;
	bool missing_mime_headers, mime_epilogue_exists, truncated_header;
	bool mimepart_limit_exceeded, mime_missing_boundary;
	bool nested_limit_exceeded;     /* not SA's: a nested message left unparsed, the
	                                 * decoded ones already twice the message */
	size_t head_lines;              /* lines of the message before its body (the mbox line,
	                                 * the header block and its blank line): SA's
	                                 * pristine_body begins after as many lines of the input */
	/* storage */
	bool copy;                      /* samsg_parse_copying */
	size_t nested_cap, nested_bytes;   /* decoded nested text: bound, used */
	char **bufs; size_t nbufs, bufcap;
	struct { char *b; int state; } *bstate; size_t nbstate, bstatecap;
};

/* Parses msg (len bytes). Fills *m (free with samsg_free). msg is read during the call
 * only: the lines point into m's copy of it (its CRLF endings as LF). A nested message
 * (message/rfc822, message/global) is parsed where its octets are in that copy when it has
 * no transfer encoding, else from its decoded text kept in m: no other copy. */
void samsg_parse(struct samsg *m, const char *msg, size_t len);
/* samsg_parse with every nested message decoded into a copy and split into another, as it
 * was: the same tree, the reference fuzz_mime compares samsg_parse with. */
void samsg_parse_copying(struct samsg *m, const char *msg, size_t len);
void samsg_free(struct samsg *m);

/* The value of the last header of part so named ("" when none): SA's get_header in
 * scalar context. */
const char *samsg_header(const struct samsg_part *p, const char *name);

/* A leaf's body decoded (base64 / quoted-printable per its Content-Transfer-Encoding,
 * else as is): malloc'd, NUL-terminated, *outlen bytes. */
char *samsg_decode(const struct samsg_part *p, size_t *outlen);
/* The same octets (*len), not copied when there is nothing to decode (no base64, no
 * quoted-printable) and the part's lines are one run of octets in the parse (no blank lines
 * cut out between them): then *owned is NULL and the text is valid until samsg_free, not
 * NUL-terminated. Else samsg_decode's result, also in *owned for the caller to free. */
const char *samsg_body(const struct samsg_part *p, size_t *len, char **owned);

/* SA's Util::parse_content_type on a Content-Type value (NULL = missing): the type
 * (malloc'd) and, when wanted, boundary, charset and name (malloc'd or NULL). */
char *samsg_parse_content_type(const char *ct, char **boundary, char **charset, char **name,
    bool *missing);

#endif
