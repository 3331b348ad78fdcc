/* arc_seal.c — the ARC sealer (RFC 8617 5.1) over OpenSSL 3 EVP: the key, the set. */
#include "filters/arc_seal.h"
#include "filters/arc.h"
#include "filters/authres.h"
#include "filters/dkim.h"
#include "filters/dkim_canon.h"
#include "proxy/config.h"
#include "proxy/headers.h"
#include "proxy/hook.h"
#include "proxy/log.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SEAL_MIN_BITS 1024u   /* RFC 8301 */
#define SEAL_MAX_BITS 8192u   /* DKIM_MAX_SIG_BYTES */

/* ---- the key ---------------------------------------------------------------------------- */

void arc_seal_key_free(struct arc_seal_key *k)
{
	free(k->path);
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}

int arc_seal_key_load(const char *path, struct arc_seal_key *k, char *buf, size_t cap,
    const char **why)
{
	FILE *f;
	EVP_PKEY *pk;

	memset(k, 0, sizeof(*k));
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(buf, cap, "cannot read %s: %s", path, strerror(errno));
		*why = buf;
		return -1;
	}
	pk = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
	fclose(f);
	ERR_clear_error();
	if (pk == NULL) {
		*why = "not a PEM private key (unencrypted PKCS#8 or PKCS#1)";
		return -1;
	}
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pk);
		*why = "not an RSA key (rsa-sha256 is the only algorithm RFC 8617 defines)";
		return -1;
	}
	k->bits = (unsigned)EVP_PKEY_get_bits(pk);
	if (k->bits < SEAL_MIN_BITS || k->bits > SEAL_MAX_BITS) {
		snprintf(buf, cap, "RSA key of %u bits: %s", k->bits,
		    k->bits < SEAL_MIN_BITS ? "at least 1024 (RFC 8301)" : "at most 8192");
		EVP_PKEY_free(pk);
		*why = buf;
		return -1;
	}
	k->path = strdup(path);
	if (k->path == NULL) {
		EVP_PKEY_free(pk);
		*why = "out of memory";
		return -1;
	}
	k->pkey = pk;
	return 0;
}

/* ---- config ------------------------------------------------------------------------------ */

/* CFG_CUSTOM parser of `private_key:` (a path): the key is read now, so `-t` reports an
 * unreadable, wrong or short key at its line. */
static int seal_key_custom(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct arc_seal_key *k = dst;
	char path[4096], reason[4200];
	const char *why;

	memset(k, 0, sizeof(*k));
	if (cfg_node_is_null(n))
		return 0;	/* the section's validate says it is required when enabled */
	if (cfg_node_cstr(p, n, "a file name", path, sizeof(path)) != 0)
		return -1;
	if (arc_seal_key_load(path, k, reason, sizeof(reason), &why) != 0)
		return cfg_error(p, n, "%s", why);
	return 0;
}

static void seal_key_free(void *dst)
{
	arc_seal_key_free(dst);
}

/* RFC 6376 5.4.1's list (OpenDKIM's and OpenARC's default SignHeaders). */
#define SEAL_DEFAULT_HEADERS "[from, sender, reply-to, subject, date, message-id, to, cc, " \
	"mime-version, content-type, content-transfer-encoding, content-id, content-description, " \
	"resent-date, resent-from, resent-sender, resent-to, resent-cc, resent-message-id, " \
	"in-reply-to, references, list-id, list-help, list-unsubscribe, list-subscribe, list-post, " \
	"list-owner, list-archive]"

static const struct cfg_field seal_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct arc_seal_config, enabled), "false",
	  .doc = "add an ARC set (RFC 8617) to each message on its way to the backend (needs arc.enabled)" },
	{ "domain", CFG_STRING, offsetof(struct arc_seal_config, domain), NULL,
	  .doc = "the sealing domain (d=); the key is published at SELECTOR._domainkey.DOMAIN" },
	{ "selector", CFG_STRING, offsetof(struct arc_seal_config, selector), NULL,
	  .doc = "the key's selector (s=)" },
	{ "private_key", CFG_CUSTOM, offsetof(struct arc_seal_config, private_key), NULL,
	  .custom = seal_key_custom, .free_custom = seal_key_free,
	  .doc = "PEM file of the RSA private key (1024..8192 bits; 2048 advised), read at load and reload" },
	{ "headers", CFG_STRLIST, offsetof(struct arc_seal_config, headers), SEAL_DEFAULT_HEADERS,
	  .doc = "header fields the ARC-Message-Signature covers (h=: every occurrence present); must name From" },
	{ .key = NULL }
};

static bool seal_domain_ok(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

static int seal_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct arc_seal_config *c = obj;
	bool from = false;

	for (size_t i = 0; i < c->headers.n; i++) {
		const char *h = c->headers.v[i];

		if (h[0] == '\0' || strpbrk(h, ": \t\r\n") != NULL)
			return cfg_error_key(p, n, "headers", (long)i, "not a header field name");
		if (strcasecmp(h, "arc-seal") == 0)
			return cfg_error_key(p, n, "headers", (long)i,
			    "ARC-Seal must not be signed by the ARC-Message-Signature (RFC 8617 4.1.2)");
		from |= strcasecmp(h, "from") == 0;
	}
	if (!from)
		return cfg_error_key(p, n, "headers", -1, "must include From");
	if (!c->enabled)
		return 0;
	if (c->domain == NULL || !seal_domain_ok(c->domain))
		return cfg_error_key(p, n, "domain", -1, c->domain ? "not a domain name" : "required when sealing is enabled");
	if (c->selector == NULL || !seal_domain_ok(c->selector))
		return cfg_error_key(p, n, "selector", -1, c->selector ? "not a selector" : "required when sealing is enabled");
	if (c->private_key.pkey == NULL)
		return cfg_error_key(p, n, "private_key", -1, "required when sealing is enabled");
	return 0;
}

const struct cfg_table arc_seal_config_table = {
	.name = "arc.seal", .size = sizeof(struct arc_seal_config), .fields = seal_fields,
	.validate = seal_validate,
};

/* ---- the Authentication-Results value ----------------------------------------------------- */

const char *arc_seal_ar_result(const char *v, size_t len)
{
	size_t i = 0;
	int depth = 0;
	bool quoted = false, seg_start = false;

	/* walk the value; at each top-level ';' a resinfo starts: "arc" CFWS? "=" result */
	for (; i < len; i++) {
		char c = v[i];

		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (depth > 0) {
			if (c == '\\')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '"') {
			quoted = true;
		} else if (c == '(') {
			if (++depth > 32)
				return NULL;
		} else if (c == ';') {
			seg_start = true;
		} else if (seg_start && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			size_t j = i, w;

			seg_start = false;
			if (len - j < 3 || strncasecmp(v + j, "arc", 3) != 0)
				continue;
			j += 3;
			while (j < len && (v[j] == ' ' || v[j] == '\t' || v[j] == '\r' || v[j] == '\n'))
				j++;
			if (j >= len || v[j] != '=')
				continue;
			j++;
			while (j < len && (v[j] == ' ' || v[j] == '\t' || v[j] == '\r' || v[j] == '\n'))
				j++;
			for (w = 0; j + w < len && ((v[j + w] >= 'a' && v[j + w] <= 'z') ||
			    (v[j + w] >= 'A' && v[j + w] <= 'Z')); w++)
				;
			if (w == 4 && strncasecmp(v + j, "none", 4) == 0)
				return "none";
			if (w == 4 && strncasecmp(v + j, "pass", 4) == 0)
				return "pass";
			return "fail";
		}
	}
	return NULL;
}

/* ---- building the set ---------------------------------------------------------------------- */

struct seal_hash {
	EVP_MD_CTX *md;
	char *scratch;
	size_t cap;
};

/* Hashes one raw field ("Name: value", no final CRLF) relaxed, with CRLF when crlf. */
static int seal_hash_field(struct seal_hash *h, const char *raw, size_t len, bool crlf)
{
	size_t n;

	if (len + 1 > h->cap) {
		char *ns = realloc(h->scratch, len + 1);

		if (ns == NULL)
			return -1;
		h->scratch = ns;
		h->cap = len + 1;
	}
	n = dkim_canon_header(DKIM_CANON_RELAXED, raw, len, h->scratch);
	if (EVP_DigestUpdate(h->md, h->scratch, n) != 1)
		return -1;
	return crlf ? (EVP_DigestUpdate(h->md, "\r\n", 2) == 1 ? 0 : -1) : 0;
}

static void seal_body_sink(void *arg, const void *data, size_t len)
{
	EVP_DigestUpdate((EVP_MD_CTX *)arg, data, len);
}

/* RSA PKCS#1 v1.5 over SHA-256 of digest, base64 into b64 (cap >= 4 * 1024 / 3 + 4). */
static int seal_sign(void *pkey, const unsigned char digest[32], char *b64, size_t cap)
{
	unsigned char sig[DKIM_MAX_SIG_BYTES];
	size_t slen = sizeof(sig);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	bool ok;

	ok = ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
	    EVP_PKEY_sign(ctx, sig, &slen, digest, 32) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	if (!ok || (slen + 2) / 3 * 4 + 1 > cap)
		return -1;
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)slen);
	return 0;
}

/* Appends base64 text folded into lines of at most 72 characters after "\tb=". */
static void seal_append_b64(struct strbuf *out, const char *b64)
{
	size_t n = strlen(b64), first = 67;

	while (n > 0) {
		size_t k = n < first ? n : first;

		strbuf_append(out, b64, k);
		b64 += k;
		n -= k;
		first = 71;
		if (n > 0)
			strbuf_append(out, "\r\n\t", 3);
	}
	strbuf_append(out, "\r\n", 2);
}

/* Ends h's SHA-256, signs it and appends the folded b= value to out. 0, -1 (SHA-256
 * failed) or -2 (signing failed). */
static int seal_sign_append(struct seal_hash *h, void *pkey, struct strbuf *out)
{
	unsigned char digest[32];
	unsigned int dl = sizeof(digest);
	char b64[DKIM_MAX_SIG_BYTES * 4 / 3 + 8];

	if (EVP_DigestFinal_ex(h->md, digest, &dl) != 1)
		return -1;
	if (seal_sign(pkey, digest, b64, sizeof(b64)) != 0)
		return -2;
	seal_append_b64(out, b64);
	return 0;
}

/* The field i of m taken by the AMS h= list: each name takes the last not yet used
 * instance, bottom up (RFC 6376 5.4.2), as the verifier will. */
static void seal_select(const struct dkim_msg *m, char *const *names, size_t nnames,
    bool *used, size_t *sel, size_t *nsel, struct strbuf *hlist)
{
	size_t nf = dkim_msg_nfields(m);

	*nsel = 0;
	for (size_t k = 0; k < nnames; k++) {
		for (size_t i = nf; i-- > 0;) {
			if (used[i] || !dkim_msg_field_is(m, i, names[k]))
				continue;
			used[i] = true;
			sel[(*nsel)++] = i;
			if (hlist->len > 0)
				strbuf_append(hlist, ":", 1);
			strbuf_append(hlist, names[k], strlen(names[k]));
			k--;	/* the same name again: its next occurrence up */
			break;
		}
	}
	if (*nsel == 0)
		strbuf_append(hlist, "from", 4);	/* h= may not be empty; From then signs as absent */
}

/* Appends the h= list folded at its colons into lines of about 76 characters. */
static void seal_append_hlist(struct strbuf *out, const char *h, size_t col)
{
	size_t n = strlen(h);

	while (n > 0) {
		const char *colon = NULL;
		size_t k = n;

		if (col + n > 76)
			for (size_t j = 0; j < n && col + j < 76; j++)
				if (h[j] == ':')
					colon = h + j;
		if (colon != NULL)
			k = (size_t)(colon - h) + 1;
		strbuf_append(out, h, k);
		h += k;
		n -= k;
		if (n > 0) {
			strbuf_append(out, "\r\n\t", 3);
			col = 8;
		}
	}
}

/* Highest ARC instance present (AAR i=, AMS / AS i=) and the newest seal's cv. */
static unsigned seal_highest(struct dkim_msg *m, enum dkim_arc_cv *newest_cv)
{
	unsigned n = 0, seal_n = 0;

	*newest_cv = DKIM_CV_NONE;
	for (size_t i = 0; i < dkim_msg_nfields(m); i++) {
		const char *name, *value;
		size_t nl, vl;
		unsigned inst;

		if (!dkim_msg_field_is(m, i, "ARC-Authentication-Results"))
			continue;
		dkim_msg_field(m, i, &name, &nl, &value, &vl);
		inst = arc_aar_instance(value, vl);
		if (inst > n)
			n = inst;
	}
	for (size_t i = 0; i < dkim_msg_nsigs(m); i++) {
		const struct dkim_sig *s = dkim_msg_sig(m, i);

		if (s->kind == DKIM_SIG_DKIM)
			continue;
		if (s->instance > n)
			n = s->instance;
		if (s->kind == DKIM_SIG_ARC_SEAL && s->instance >= seal_n) {
			seal_n = s->instance;
			*newest_cv = s->cv;
		}
	}
	return n;
}

static void seal_result(struct arc_seal_result *res, enum arc_seal_status st, const char *why)
{
	res->status = st;
	res->why = why;
}

void arc_seal_build(const struct arc_seal_params *p, const char *ar, size_t ar_len,
    const char *hdr, size_t hlen, const char *body, size_t blen, struct strbuf *out,
    struct arc_seal_result *res)
{
	struct dkim_limits lim;
	struct dkim_msg *m = NULL;
	struct arc_chain *chain = NULL;
	struct seal_hash h = { 0 };
	struct dkim_body_canon bc;
	struct strbuf aar = { 0 }, ams = { 0 }, as = { 0 }, hlist = { 0 };
	const char *arc_ar;
	enum dkim_arc_cv newest_cv;
	unsigned n, inst;
	bool *used = NULL;
	size_t *sel = NULL, nsel = 0, v0;
	unsigned char bh[32];
	unsigned int dl;
	int rc;
	char bh64[48];

	memset(res, 0, sizeof(*res));
	res->cv = "none";
	arc_ar = arc_seal_ar_result(ar, ar_len);
	if (arc_ar == NULL) {
		seal_result(res, ARC_SEAL_SKIPPED, "no arc result in Authentication-Results");
		return;
	}
	dkim_limits_default(&lim);
	lim.max_signatures = 0;                 /* DKIM-Signature fields are not looked at */
	lim.max_arc_instances = ARC_MAX_INSTANCES + 1;
	lim.max_headers = 100000;
	m = dkim_msg_new(&lim);
	chain = calloc(1, sizeof(*chain));
	h.md = EVP_MD_CTX_new();
	if (m == NULL || chain == NULL || h.md == NULL || dkim_msg_set_headers(m, hdr, hlen) != 0) {
		seal_result(res, ARC_SEAL_ERROR, "out of memory");
		goto done;
	}
	if (dkim_msg_headers_truncated(m)) {
		seal_result(res, ARC_SEAL_SKIPPED, "too many header fields");
		goto done;
	}
	/* the instance and cv= (5.1 steps 1-2; 5.1.2) */
	n = seal_highest(m, &newest_cv);
	if (n >= ARC_MAX_INSTANCES) {
		seal_result(res, ARC_SEAL_SKIPPED, "the chain has 50 instances");
		goto done;
	}
	if (n > p->max_instances) {
		seal_result(res, ARC_SEAL_SKIPPED, "the chain is longer than arc.max_instances");
		goto done;
	}
	if (n > 0 && newest_cv == DKIM_CV_FAIL) {
		seal_result(res, ARC_SEAL_SKIPPED, "the chain already ended with cv=fail");
		goto done;
	}
	inst = n + 1;
	arc_chain_plan(m, chain);
	if (n == 0 && chain->decided && chain->result == ARC_RESULT_NONE)
		res->cv = "none";
	else if (!chain->decided && chain->n == n && strcmp(arc_ar, "pass") == 0)
		res->cv = "pass";
	else
		res->cv = "fail";
	res->instance = inst;

	/* ARC-Authentication-Results: i=N+1; our results */
	while (ar_len > 0 && (ar[0] == ' ' || ar[0] == '\t' || ar[0] == '\r' || ar[0] == '\n')) {
		ar++;
		ar_len--;
	}
	{
		char *v = malloc(ar_len + 16);
		int k;

		if (v == NULL) {
			seal_result(res, ARC_SEAL_ERROR, "out of memory");
			goto done;
		}
		k = snprintf(v, 16, "i=%u; ", inst);
		memcpy(v + k, ar, ar_len);
		v[(size_t)k + ar_len] = '\0';
		headers_append_field(&aar, "ARC-Authentication-Results", v);
		free(v);
	}

	/* the body hash, relaxed: the verifier's when it made one over this body */
	if (p->body_hash != NULL) {
		memcpy(bh, p->body_hash, sizeof(bh));
		res->body_hash_shared = true;
	} else {
		if (EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1) {
			seal_result(res, ARC_SEAL_ERROR, "sha256");
			goto done;
		}
		dkim_body_canon_init(&bc, DKIM_CANON_RELAXED, UINT64_MAX, seal_body_sink, h.md);
		dkim_body_canon_feed(&bc, body, blen);
		dkim_body_canon_end(&bc);
		dl = sizeof(bh);
		if (EVP_DigestFinal_ex(h.md, bh, &dl) != 1) {
			seal_result(res, ARC_SEAL_ERROR, "sha256");
			goto done;
		}
	}
	EVP_EncodeBlock((unsigned char *)bh64, bh, 32);

	/* ARC-Message-Signature over the selected fields, then itself with b= empty */
	used = calloc(dkim_msg_nfields(m) + 1, sizeof(*used));
	sel = calloc(dkim_msg_nfields(m) + 1, sizeof(*sel));
	if (used == NULL || sel == NULL) {
		seal_result(res, ARC_SEAL_ERROR, "out of memory");
		goto done;
	}
	seal_select(m, p->headers, p->nheaders, used, sel, &nsel, &hlist);
	strbuf_printf(&ams, "ARC-Message-Signature: i=%u; a=rsa-sha256; c=relaxed/relaxed; d=%s;\r\n"
	    "\ts=%s; t=%lld; h=", inst, p->domain, p->selector, p->now);
	seal_append_hlist(&ams, hlist.v, 11);
	strbuf_printf(&ams, ";\r\n\tbh=%s;\r\n\tb=", bh64);
	if (EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1)
		goto sha_fail;
	for (size_t i = 0; i < nsel; i++) {
		const char *raw;
		size_t rl;

		raw = dkim_msg_field_raw(m, sel[i], &rl);
		if (seal_hash_field(&h, raw, rl, true) != 0)
			goto sha_fail;
	}
	if (seal_hash_field(&h, ams.v, ams.len, false) != 0)
		goto sha_fail;
	if ((rc = seal_sign_append(&h, p->pkey, &ams)) != 0)
		goto sign_fail;

	/* ARC-Seal over the sets 1..N (not after a failed chain: this set only), then this set */
	strbuf_printf(&as, "ARC-Seal: i=%u; a=rsa-sha256; t=%lld; cv=%s;\r\n\td=%s; s=%s;\r\n\tb=",
	    inst, p->now, res->cv, p->domain, p->selector);
	if (EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1)
		goto sha_fail;
	if (strcmp(res->cv, "pass") == 0)
		for (unsigned k = 1; k <= n; k++) {
			size_t f[3] = { chain->aar[k], chain->ams[k]->field, chain->as[k]->field };

			for (size_t j = 0; j < 3; j++) {
				const char *raw = dkim_msg_field_raw(m, f[j], &v0);

				if (seal_hash_field(&h, raw, v0, true) != 0)
					goto sha_fail;
			}
		}
	/* the new AAR and AMS, without their final CRLF (seal_hash_field adds one) */
	if (seal_hash_field(&h, aar.v, aar.len - 2, true) != 0 ||
	    seal_hash_field(&h, ams.v, ams.len - 2, true) != 0 ||
	    seal_hash_field(&h, as.v, as.len, false) != 0)
		goto sha_fail;
	if ((rc = seal_sign_append(&h, p->pkey, &as)) != 0)
		goto sign_fail;
	strbuf_append(out, as.v, as.len);
	strbuf_append(out, ams.v, ams.len);
	strbuf_append(out, aar.v, aar.len);
	seal_result(res, ARC_SEAL_SEALED, NULL);
	goto done;
sign_fail:
	if (rc == -2) {
		seal_result(res, ARC_SEAL_ERROR, "RSA signing failed");
		goto done;
	}
sha_fail:
	seal_result(res, ARC_SEAL_ERROR, "sha256");
done:
	free(used);
	free(sel);
	free(chain);
	free(h.scratch);
	EVP_MD_CTX_free(h.md);
	dkim_msg_free(m);
	strbuf_free(&aar);
	strbuf_free(&ams);
	strbuf_free(&as);
	strbuf_free(&hlist);
}

/* ---- the call from the transaction --------------------------------------------------------- */

/* Our Authentication-Results value: the one senderauth added (an edit, never the sender's),
 * or NULL. */
static const char *seal_our_ar(const struct hook_env *env, const char *hostname)
{
	const char *ar = NULL;

	for (size_t i = 0; i < env->nhdr_edits; i++) {
		const struct hdr_edit *e = &env->hdr_edits[i];

		if ((e->op == HDR_ADD || e->op == HDR_INSERT) && e->value != NULL &&
		    strcasecmp(e->name, "Authentication-Results") == 0 &&
		    authres_is_ours(e->value, strlen(e->value), hostname))
			ar = e->value;
	}
	return ar;
}

/* The sealing parameters of env's config; the body hash senderauth left in env when the body
 * body[0..blen) going out is the one it hashed: copied into bh_buf (32 octets). */
static void seal_params(const struct hook_env *env, size_t blen, unsigned char *bh_buf,
    struct arc_seal_params *p)
{
	const struct mx_config *cfg = env->cfg;
	const struct arc_seal_config *sc = &cfg->arc.seal;

	memset(p, 0, sizeof(*p));
	p->domain = sc->domain;
	p->selector = sc->selector;
	p->pkey = sc->private_key.pkey;
	p->headers = sc->headers.v;
	p->nheaders = sc->headers.n;
	p->max_instances = (unsigned)cfg->arc.max_instances;
	p->now = (long long)time(NULL);
	/* the same octets: the message buffer's body (no filter replaced it), as long */
	if (env->body_hash_set && env->new_body == NULL && env->body_hash_len == blen) {
		memcpy(bh_buf, env->body_hash, 32);
		p->body_hash = bh_buf;
	}
}

/* Puts the set on top of *prefix (consumed) when sealed; logs the outcome. */
static void seal_finish(const char *sid, const char *qid, const struct arc_seal_result *res,
    struct strbuf *set, struct strbuf *prefix)
{
	if (res->status == ARC_SEAL_SEALED) {
		strbuf_append(set, prefix->v, prefix->len);
		strbuf_free(prefix);
		*prefix = *set;
		memset(set, 0, sizeof(*set));
		log_event(LOG_LVL_INFO, sid, "event=arc_seal queue_id=%s action=sealed i=%u cv=%s body_hash=%s",
		    qid, res->instance, res->cv, res->body_hash_shared ? "shared" : "computed");
		return;
	}
	strbuf_free(set);
	log_event(res->status == ARC_SEAL_ERROR ? LOG_LVL_WARNING : LOG_LVL_INFO, sid,
	    "event=arc_seal queue_id=%s action=%s reason=\"%s\"", qid,
	    res->status == ARC_SEAL_ERROR ? "error" : "skip", res->why);
}

/* What the sealer needs of env, or false (logged) when there is nothing to seal. */
static bool seal_ready(struct hook_env *env, const char **ar)
{
	const struct mx_config *cfg = env->cfg;
	const char *hostname = cfg->hostname ? cfg->hostname : "localhost";

	if (!cfg->arc.seal.enabled || cfg->arc.seal.private_key.pkey == NULL)
		return false;
	*ar = seal_our_ar(env, hostname);
	if (*ar == NULL) {
		log_event(LOG_LVL_INFO, env->session_id, "event=arc_seal queue_id=%s action=skip "
		    "reason=\"no Authentication-Results of %s\"", env->queue_id, hostname);
		return false;
	}
	return true;
}

void arc_seal_message(struct hook_env *env, struct strbuf *prefix, const char *body, size_t blen)
{
	const char *ar;
	struct arc_seal_params p;
	struct arc_seal_result res;
	struct strbuf set = { 0 };
	unsigned char bh[32];

	if (!seal_ready(env, &ar))
		return;
	seal_params(env, blen, bh, &p);
	arc_seal_build(&p, ar, strlen(ar), prefix->v, prefix->len, body, blen, &set, &res);
	seal_finish(env->session_id, env->queue_id, &res, &set, prefix);
}

/* ---- in the thread pool ---------------------------------------------------------------- */

/* One message's sealing: everything the thread reads is its own copy, but the body (the
 * transaction's, which waits for done) and the config (the session's generation, kept as
 * long as the session is). */
struct seal_job {
	uv_work_t req;
	struct arc_seal_params p;
	unsigned char bh[32];               /* p.body_hash points here when set */
	char *ar, *hdr;
	size_t hlen;
	const char *body;
	size_t blen;
	struct strbuf set;
	struct arc_seal_result res;
	struct strbuf *prefix;
	char sid[64], qid[24];
	void (*done)(void *arg);
	void *arg;
};

static void seal_work_cb(uv_work_t *req)
{
	struct seal_job *j = req->data;

	arc_seal_build(&j->p, j->ar, strlen(j->ar), j->hdr, j->hlen, j->body, j->blen, &j->set, &j->res);
}

static void seal_after_cb(uv_work_t *req, int status)
{
	struct seal_job *j = req->data;

	if (status != 0) {
		j->res.status = ARC_SEAL_ERROR;
		j->res.why = "the sealing work was cancelled";
	}
	seal_finish(j->sid, j->qid, &j->res, &j->set, j->prefix);
	j->done(j->arg);
	free(j->ar);
	free(j->hdr);
	free(j);
}

int arc_seal_start(uv_loop_t *loop, struct hook_env *env, struct strbuf *prefix, const char *body,
    size_t blen, void (*done)(void *arg), void *arg)
{
	const char *ar;
	struct seal_job *j;

	if (!seal_ready(env, &ar))
		return -1;
	j = calloc(1, sizeof(*j));
	if (j != NULL) {
		j->ar = strdup(ar);
		j->hdr = malloc(prefix->len ? prefix->len : 1);
	}
	if (j == NULL || j->ar == NULL || j->hdr == NULL)
		goto sync;
	memcpy(j->hdr, prefix->v, prefix->len);
	j->hlen = prefix->len;
	seal_params(env, blen, j->bh, &j->p);
	j->body = body;
	j->blen = blen;
	j->prefix = prefix;
	snprintf(j->sid, sizeof(j->sid), "%s", env->session_id ? env->session_id : "-");
	snprintf(j->qid, sizeof(j->qid), "%s", env->queue_id);
	j->done = done;
	j->arg = arg;
	j->req.data = j;
	if (uv_queue_work(loop, &j->req, seal_work_cb, seal_after_cb) == 0)
		return 0;
sync:
	if (j != NULL) {
		free(j->ar);
		free(j->hdr);
		free(j);
	}
	arc_seal_message(env, prefix, body, blen);
	return -1;
}
