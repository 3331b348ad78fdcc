/* arc_seal.h — ARC sealing (RFC 8617 5.1): mxgate adds the next ARC set to the message as
 * it goes to the backend, so that a service behind it (Microsoft 365 with mxgate as a
 * "trusted ARC sealer", Google Workspace) can take over the SPF / DKIM / DMARC results
 * mxgate found, which it cannot re-check itself (it sees mxgate's address, not the sender's).
 *
 * The set i = N+1 (N: the highest instance the message carries) is
 *   ARC-Authentication-Results: i=N+1; <the Authentication-Results mxgate wrote>
 *   ARC-Message-Signature:      relaxed/relaxed over the final header block (`headers`)
 *                               and the final body (after every filter's edits)
 *   ARC-Seal:                   cv= none (N = 0), pass (the chain validated), fail (it did
 *                               not: the seal then covers this set only, 5.1.2)
 * and is put on top of the header block. No set is added when the chain already carries a
 * seal with cv=fail (it ended there), when it has 50 instances (4.2.1) or more than
 * arc.max_instances, or when mxgate wrote no Authentication-Results field for the message.
 *
 * arc_seal_build is pure (no I/O; the clock is an argument); arc_seal_message is the call
 * proxy/smtp_tx.c makes once the outgoing header block is built. RSA-SHA256 only (the one
 * algorithm RFC 8617 defines); the key is read when the config is loaded. */
#ifndef MX_ARC_SEAL_H
#define MX_ARC_SEAL_H

#include "proxy/cfg.h"

#include <uv.h>

#include <stdbool.h>
#include <stddef.h>

struct hook_env;
struct strbuf;

/* The private key: the PEM file's path and the key read from it (EVP_PKEY *). */
struct arc_seal_key { char *path; void *pkey; unsigned bits; };

struct arc_seal_config {
	bool enabled;
	char *domain;                /* d= */
	char *selector;              /* s=: the key is published at <selector>._domainkey.<domain> */
	struct arc_seal_key private_key;
	struct cfg_strlist headers;  /* the AMS h= candidates (each occurrence present is signed) */
};
extern const struct cfg_table arc_seal_config_table;

/* Reads a PEM private key (PKCS#8 or PKCS#1) for sealing: RSA, 1024..8192 bits. 0, or -1
 * with a static-or-buf reason in *why (buf of cap bytes). */
int arc_seal_key_load(const char *path, struct arc_seal_key *k, char *buf, size_t cap,
    const char **why);
void arc_seal_key_free(struct arc_seal_key *k);

/* The "arc=" result of an Authentication-Results value: "none", "pass", "fail" (any other
 * result word counts as fail), or NULL when it has no arc method. Bounded; any input. */
const char *arc_seal_ar_result(const char *value, size_t len);

struct arc_seal_params {
	const char *domain, *selector;
	void *pkey;                        /* EVP_PKEY *, RSA */
	char *const *headers;
	size_t nheaders;
	unsigned max_instances;            /* arc.max_instances (<= 50) */
	long long now;                     /* t= */
	const unsigned char *body_hash;    /* the body's relaxed SHA-256 when already known (32
	                                      octets: senderauth's, env->body_hash), else NULL:
	                                      arc_seal_build hashes the body itself */
};

enum arc_seal_status { ARC_SEAL_SEALED = 0, ARC_SEAL_SKIPPED, ARC_SEAL_ERROR };

struct arc_seal_result {
	enum arc_seal_status status;
	unsigned instance;                 /* i= of the set added */
	const char *cv;                    /* "none", "pass", "fail" */
	const char *why;                   /* static: why it was skipped / failed */
	bool body_hash_shared;             /* bh= came from params.body_hash, not hashed here */
};

/* Builds the next ARC set for the message whose final header block is hdr[0..hlen) (its
 * blank line may be included) and whose body is body[0..blen); ar[0..ar_len) is the value of
 * the Authentication-Results field mxgate added ("authserv-id; method=result ..."). On
 * ARC_SEAL_SEALED the three fields (CRLF-terminated, ARC-Seal first) are appended to out. */
void arc_seal_build(const struct arc_seal_params *p, const char *ar, size_t ar_len,
    const char *hdr, size_t hlen, const char *body, size_t blen, struct strbuf *out,
    struct arc_seal_result *res);

/* smtp_tx's call: seals in libuv's thread pool the outgoing message whose header block is
 * *prefix and whose body is body[0..blen) (both must stay as they are until done runs), when
 * env's config has arc.seal enabled. The body hash senderauth computed (env->body_hash) is
 * used when the body is the one it hashed (no filter replaced it, the same length). 0: queued, done(arg) runs on loop once *prefix has the
 * set on top (or was left as it was: skipped, failed; logged either way). -1: nothing queued
 * (sealing off, nothing to seal, or the work could not be queued: then sealed here, on the
 * loop): the caller goes on at once. */
int arc_seal_start(uv_loop_t *loop, struct hook_env *env, struct strbuf *prefix, const char *body,
    size_t blen, void (*done)(void *arg), void *arg);

/* The same on the calling thread: seals the outgoing message whose header block is *prefix (Received and
 * the filters' edits applied) and whose body is body[0..blen), when env's config has
 * arc.seal enabled: the set goes on top of *prefix. Logs what it did. */
void arc_seal_message(struct hook_env *env, struct strbuf *prefix, const char *body, size_t blen);

#endif
