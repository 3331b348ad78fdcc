/* dkim.h — DKIM verification (RFC 6376) on OpenSSL 3: RSA-SHA256 and Ed25519-SHA256
 * (RFC 8463); rsa-sha1 is recognised and refused (RFC 8301). The same machinery verifies
 * ARC-Message-Signature and ARC-Seal (RFC 8617; the chain logic is arc.c).
 *
 * Pure and resumable: no I/O, no clock, no DNS. The caller
 *   1. hands over the header block (dkim_msg_set_headers): fields are indexed (bounded),
 *      every DKIM-Signature / ARC-* field is parsed, one body hasher is set up per distinct
 *      (canonicalisation, l=) pair;
 *   2. feeds the body in any slices (dkim_msg_feed_body, dkim_msg_end_body);
 *   3. looks up the keys itself (`<s>._domainkey.<d>` TXT), parses each answer with
 *      dkim_key_parse, and calls dkim_msg_verify per signature once the body has ended.
 * Work is bounded by struct dkim_limits (signatures, ARC instances, header fields, key
 * size). Results and reasons are per signature. */
#ifndef MX_DKIM_H
#define MX_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/dkim_canon.h"

/* RFC 8601 2.7.1 result words. */
enum dkim_result {
	DKIM_RESULT_NONE = 0,    /* not (yet) evaluated */
	DKIM_RESULT_PASS,
	DKIM_RESULT_FAIL,        /* signature or body hash does not verify */
	DKIM_RESULT_POLICY,
	DKIM_RESULT_NEUTRAL,     /* the signature field could not be parsed */
	DKIM_RESULT_TEMPERROR,   /* key lookup failed for now (timeout, SERVFAIL) */
	DKIM_RESULT_PERMERROR,   /* no key, revoked key, expired, unacceptable algorithm ... */
};
const char *dkim_result_name(enum dkim_result r);

enum dkim_alg { DKIM_ALG_RSA_SHA256 = 0, DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA1 };
enum dkim_sig_kind { DKIM_SIG_DKIM = 0, DKIM_SIG_ARC_MS, DKIM_SIG_ARC_SEAL };
enum dkim_arc_cv { DKIM_CV_NONE = 0, DKIM_CV_PASS, DKIM_CV_FAIL, DKIM_CV_INVALID };

#define DKIM_MAX_SIG_BYTES 1024   /* an 8192-bit RSA signature */

struct dkim_limits {
	size_t max_signatures;     /* DKIM-Signature fields verified; later ones are ignored */
	size_t max_arc_instances;  /* ARC sets looked at (RFC 8617 caps chains at 50) */
	size_t max_headers;        /* header fields indexed; a longer header block: permerror */
	unsigned min_rsa_bits;     /* RFC 8301: at least 1024 */
	unsigned max_rsa_bits;
	uint64_t clock_skew;       /* seconds allowed around t= / x= */
};
/* Sensible defaults: 8 signatures, 16 ARC sets, 1000 fields, 1024..4096 bits, 300 s. */
void dkim_limits_default(struct dkim_limits *l);

/* One parsed DKIM-Signature, ARC-Message-Signature or ARC-Seal. */
struct dkim_sig {
	enum dkim_sig_kind kind;
	size_t field;              /* index of its header field */
	enum dkim_result result;   /* NONE until verified; set at parse for a broken field */
	const char *reason;        /* static text for comments and logs, or NULL */
	enum dkim_alg alg;
	bool alg_known;            /* a= named one of enum dkim_alg (else alg is meaningless) */
	enum dkim_canon hcanon, bcanon;
	char d[254];               /* signing domain, lowercased */
	char s[254];               /* selector */
	char auid[256];            /* DKIM i= ("" = "@" d) */
	char b_prefix[16];         /* the first characters of b= (RFC 6008 header.b) */
	unsigned instance;         /* ARC i= */
	enum dkim_arc_cv cv;       /* ARC-Seal cv= */
	unsigned char b[DKIM_MAX_SIG_BYTES];
	size_t blen;
	unsigned char bh[32];
	bool has_l;
	uint64_t l;
	long long t, x;            /* -1 = absent */
	char *h;                   /* h= with whitespace removed (owned), NULL for ARC-Seal */
	int body;                  /* body hasher index, -1 for ARC-Seal */
	bool testing;              /* verified with a t=y key */
};

/* A parsed key record (RFC 6376 3.6.1). */
enum dkim_key_type { DKIM_KEY_RSA = 0, DKIM_KEY_ED25519 };
struct dkim_key {
	enum dkim_result result;   /* PASS = usable; TEMPERROR / PERMERROR otherwise */
	const char *reason;
	enum dkim_key_type type;
	unsigned bits;
	bool testing;              /* t=y */
	bool strict;               /* t=s: i= must be in d= exactly */
	void *pkey;                /* EVP_PKEY * (owned) */
};

/* Parses one TXT record into k (zeroed first) and checks it against lim: v=DKIM1 first if
 * present, k= rsa | ed25519, h= includes sha256, s= * or email, p= base64 (empty = revoked),
 * RSA size in [min_rsa_bits, max_rsa_bits], Ed25519 32 bytes. Returns k->result. Release
 * with dkim_key_clear. */
enum dkim_result dkim_key_parse(const char *txt, size_t len, const struct dkim_limits *lim,
    struct dkim_key *k);
/* A key that could not be had: result TEMPERROR / PERMERROR with a static reason. */
void dkim_key_set_error(struct dkim_key *k, enum dkim_result r, const char *reason);
void dkim_key_clear(struct dkim_key *k);
/* dst becomes a second reference to src's key (released with dkim_key_clear). */
void dkim_key_copy(struct dkim_key *dst, const struct dkim_key *src);

/* Parses a DKIM-Signature (kind DKIM), ARC-Message-Signature or ARC-Seal field value into
 * sig (zeroed first). A broken field leaves sig->result NEUTRAL or PERMERROR with a reason;
 * otherwise NONE. The caller frees sig->h (dkim_sig_clear). */
void dkim_sig_parse(enum dkim_sig_kind kind, const char *value, size_t len, struct dkim_sig *sig);
void dkim_sig_clear(struct dkim_sig *sig);

/* ---- a message ------------------------------------------------------------------------ */

struct dkim_msg;

struct dkim_msg *dkim_msg_new(const struct dkim_limits *lim);
void dkim_msg_free(struct dkim_msg *m);	/* NULL is a no-op */

/* Indexes the header block hdr[0..len) (the blank line may be included; copied) and parses
 * its signatures. Call once. Returns 0, or -1 on allocation failure. */
int dkim_msg_set_headers(struct dkim_msg *m, const char *hdr, size_t len);

/* The header fields: count, and field i as name / raw value (after the colon, with any
 * folding; no final CRLF). Borrowed until dkim_msg_free. */
size_t dkim_msg_nfields(const struct dkim_msg *m);
void dkim_msg_field(const struct dkim_msg *m, size_t i, const char **name, size_t *name_len,
    const char **value, size_t *value_len);
/* The whole raw field i ("Name: value", no final CRLF). */
const char *dkim_msg_field_raw(const struct dkim_msg *m, size_t i, size_t *len);
/* Is field i named name (case-insensitive)? */
bool dkim_msg_field_is(const struct dkim_msg *m, size_t i, const char *name);
/* The header block had more fields than max_headers. */
bool dkim_msg_headers_truncated(const struct dkim_msg *m);

/* The signatures, DKIM-Signature fields first (top to bottom), then the ARC ones. */
size_t dkim_msg_nsigs(const struct dkim_msg *m);
struct dkim_sig *dkim_msg_sig(struct dkim_msg *m, size_t i);
/* DKIM-Signature fields beyond max_signatures that were not parsed. */
size_t dkim_msg_sigs_skipped(const struct dkim_msg *m);

/* Feeds body bytes to every hasher; any slicing. */
void dkim_msg_feed_body(struct dkim_msg *m, const char *p, size_t n);
void dkim_msg_end_body(struct dkim_msg *m);
bool dkim_msg_body_done(const struct dkim_msg *m);
/* The SHA-256 of the whole body (no l=) in canonicalisation c into out, when a signature
 * asked for that hash and the body has ended: true; false otherwise (nothing written). */
bool dkim_msg_body_hash(const struct dkim_msg *m, enum dkim_canon c, unsigned char out[32]);

/* Verifies a DKIM-Signature or ARC-Message-Signature with key (after dkim_msg_end_body);
 * now is the Unix time for x= / t=. Sets and returns sig->result. A sig already carrying a
 * parse error keeps it. */
enum dkim_result dkim_msg_verify(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, long long now);
/* Verifies an ARC-Seal over the given header fields, in order (RFC 8617 5.1.1: the ARC sets
 * 1..i, the seal itself last; its b= is emptied). Sets and returns sig->result. */
enum dkim_result dkim_msg_verify_seal(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, const size_t *fields, size_t nfields, long long now);

/* The key's DNS name "<s>._domainkey.<d>" into out; 0 or -1 when it does not fit. */
int dkim_sig_key_name(const struct dkim_sig *sig, char *out, size_t cap);

/* Is sub equal to dom or a subdomain of it (case-insensitive)? */
bool dkim_domain_within(const char *sub, const char *dom);

#endif
