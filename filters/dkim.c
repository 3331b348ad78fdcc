/* dkim.c — DKIM / ARC signature verification over OpenSSL 3 EVP.
 *
 * Why not libopendkim: its key lookups go through a blocking resolver (or callbacks bolted
 * around one), it is barely maintained, and it would hash through its own buffers. Here the
 * caller does the DNS (c-ares on the session's loop, cached), the hashing is incremental,
 * and every bound is ours. */
#include "filters/dkim.h"
#include "filters/dkim_tags.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* OpenSSL 3 looks an algorithm up (under a lock) on every EVP_sha256() init: fetch it once. */
static EVP_MD *dkim_sha256_md;
static pthread_once_t dkim_sha256_once = PTHREAD_ONCE_INIT;

static void dkim_sha256_fetch(void)
{
	dkim_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *dkim_sha256(void)
{
	pthread_once(&dkim_sha256_once, dkim_sha256_fetch);
	return dkim_sha256_md ? dkim_sha256_md : EVP_sha256();
}

const char *dkim_result_name(enum dkim_result r)
{
	switch (r) {
	case DKIM_RESULT_NONE: return "none";
	case DKIM_RESULT_PASS: return "pass";
	case DKIM_RESULT_FAIL: return "fail";
	case DKIM_RESULT_POLICY: return "policy";
	case DKIM_RESULT_NEUTRAL: return "neutral";
	case DKIM_RESULT_TEMPERROR: return "temperror";
	case DKIM_RESULT_PERMERROR: return "permerror";
	}
	return "none";
}

void dkim_limits_default(struct dkim_limits *l)
{
	l->max_signatures = 8;
	l->max_arc_instances = 16;
	l->max_headers = 1000;
	l->min_rsa_bits = 1024;
	l->max_rsa_bits = 4096;
	l->clock_skew = 300;
}

bool dkim_domain_within(const char *sub, const char *dom)
{
	size_t sl = strlen(sub), dl = strlen(dom);

	if (dl == 0 || sl < dl)
		return false;
	if (strcasecmp(sub + sl - dl, dom) != 0)
		return false;
	return sl == dl || sub[sl - dl - 1] == '.';
}

/* ---- keys ------------------------------------------------------------------------------ */

void dkim_key_set_error(struct dkim_key *k, enum dkim_result r, const char *reason)
{
	dkim_key_clear(k);
	k->result = r;
	k->reason = reason;
}

void dkim_key_copy(struct dkim_key *dst, const struct dkim_key *src)
{
	*dst = *src;
	if (dst->pkey != NULL && EVP_PKEY_up_ref(dst->pkey) != 1)
		dkim_key_set_error(dst, DKIM_RESULT_TEMPERROR, "out of memory");
}

void dkim_key_clear(struct dkim_key *k)
{
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}

struct key_list_scan { const char *want1, *want2; bool found; bool testing, strict; };

static int key_list_has_cb(const char *item, size_t n, void *arg)
{
	struct key_list_scan *s = arg;

	if ((s->want1 && strlen(s->want1) == n && strncasecmp(item, s->want1, n) == 0) ||
	    (s->want2 && strlen(s->want2) == n && strncasecmp(item, s->want2, n) == 0))
		s->found = true;
	return 0;
}

static int key_flags_cb(const char *item, size_t n, void *arg)
{
	struct key_list_scan *s = arg;

	if (n == 1 && item[0] == 'y')
		s->testing = true;
	else if (n == 1 && item[0] == 's')
		s->strict = true;
	return 0;	/* unknown flags are ignored (RFC 6376 3.6.1) */
}

static enum dkim_result key_fail(struct dkim_key *k, const char *reason)
{
	dkim_key_set_error(k, DKIM_RESULT_PERMERROR, reason);
	return k->result;
}

enum dkim_result dkim_key_parse(const char *txt, size_t len, const struct dkim_limits *lim,
    struct dkim_key *k)
{
	struct dkim_tags tags;
	const struct dkim_tag *t;
	struct key_list_scan scan;
	unsigned char der[4096];	/* a 16384-bit RSA key (max_key_bits) is 2086 octets */
	const unsigned char *dp;
	long dlen;
	EVP_PKEY *pk = NULL;

	memset(k, 0, sizeof(*k));
	if (dkim_tags_parse(txt, len, &tags) != DKIM_TAGS_OK)
		return key_fail(k, "key record syntax");
	t = dkim_tags_find(&tags, "v");
	if (t != NULL && (t != &tags.v[0] || !dkim_tag_value_is(t, "DKIM1", false)))
		return key_fail(k, "key record version");
	t = dkim_tags_find(&tags, "k");
	if (t == NULL || dkim_tag_value_is(t, "rsa", true))
		k->type = DKIM_KEY_RSA;
	else if (dkim_tag_value_is(t, "ed25519", true))
		k->type = DKIM_KEY_ED25519;
	else
		return key_fail(k, "unknown key type");
	t = dkim_tags_find(&tags, "h");
	if (t != NULL) {
		memset(&scan, 0, sizeof(scan));
		scan.want1 = "sha256";
		if (dkim_tag_each(t, ':', 16, key_list_has_cb, &scan) != 0 || !scan.found)
			return key_fail(k, "key does not allow sha256");
	}
	t = dkim_tags_find(&tags, "s");
	if (t != NULL) {
		memset(&scan, 0, sizeof(scan));
		scan.want1 = "*";
		scan.want2 = "email";
		if (dkim_tag_each(t, ':', 16, key_list_has_cb, &scan) != 0 || !scan.found)
			return key_fail(k, "key not for email");
	}
	t = dkim_tags_find(&tags, "t");
	if (t != NULL) {
		memset(&scan, 0, sizeof(scan));
		dkim_tag_each(t, ':', 16, key_flags_cb, &scan);
		k->testing = scan.testing;
		k->strict = scan.strict;
	}
	t = dkim_tags_find(&tags, "p");
	if (t == NULL)
		return key_fail(k, "key record without p=");
	if (t->value_len == 0)
		return key_fail(k, "key revoked");
	dlen = dkim_base64_decode(t->value, t->value_len, der, sizeof(der));
	if (dlen <= 0)
		return key_fail(k, "key p= not base64");
	if (k->type == DKIM_KEY_ED25519) {
		/* RFC 8463 4.2: the raw 32-byte public key */
		if (dlen != 32)
			return key_fail(k, "ed25519 key size");
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, 32);
		k->bits = 256;
	} else {
		/* SubjectPublicKeyInfo in practice; a bare PKCS#1 RSAPublicKey also occurs */
		dp = der;
		pk = d2i_PUBKEY(NULL, &dp, dlen);
		if (pk == NULL) {
			dp = der;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &dp, dlen);
		}
		if (pk != NULL && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			pk = NULL;
		}
		if (pk != NULL)
			k->bits = (unsigned)EVP_PKEY_get_bits(pk);
	}
	ERR_clear_error();
	if (pk == NULL)
		return key_fail(k, "key p= not a public key");
	if (k->type == DKIM_KEY_RSA && (k->bits < lim->min_rsa_bits || k->bits > lim->max_rsa_bits)) {
		EVP_PKEY_free(pk);
		return key_fail(k, k->bits < lim->min_rsa_bits ? "key too small" : "key too large");
	}
	k->pkey = pk;
	k->result = DKIM_RESULT_PASS;
	return k->result;
}

/* ---- signature fields ---------------------------------------------------------------- */

static void sig_error(struct dkim_sig *sig, enum dkim_result r, const char *reason)
{
	if (sig->result == DKIM_RESULT_NONE) {
		sig->result = r;
		sig->reason = reason;
	}
}

static int sig_copy_domain(const struct dkim_tag *t, char *out, size_t cap)
{
	long n = dkim_tag_copy_nows(t, out, cap);

	if (n <= 0)
		return -1;
	for (long i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];

		if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
			return -1;
		out[i] = (char)tolower(c);
	}
	if (out[n - 1] == '.')
		out[n - 1] = '\0';	/* a trailing root dot says nothing */
	return out[0] != '\0' && out[0] != '.' ? 0 : -1;
}

static int sig_find_from_cb(const char *item, size_t n, void *arg)
{
	if (n == 4 && strncasecmp(item, "from", 4) == 0)
		*(bool *)arg = true;
	return 0;
}

static int sig_check_hname_cb(const char *item, size_t n, void *arg)
{
	/* RFC 5322 field-name: printable ASCII except ':' (the separator), at least one */
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)item[i] <= 32 || (unsigned char)item[i] >= 127)
			return -1;
	return 0;
}

static int sig_find_dnstxt_cb(const char *item, size_t n, void *arg)
{
	if (n == 7 && strncasecmp(item, "dns/txt", 7) == 0)
		*(bool *)arg = true;
	return 0;
}

void dkim_sig_clear(struct dkim_sig *sig)
{
	free(sig->h);
	sig->h = NULL;
}

void dkim_sig_parse(enum dkim_sig_kind kind, const char *value, size_t len, struct dkim_sig *sig)
{
	struct dkim_tags tags;
	const struct dkim_tag *t;
	unsigned long long u;
	long n;
	bool seal = kind == DKIM_SIG_ARC_SEAL;

	memset(sig, 0, sizeof(*sig));
	sig->kind = kind;
	sig->t = sig->x = -1;
	sig->body = -1;
	if (dkim_tags_parse(value, len, &tags) != DKIM_TAGS_OK) {
		sig_error(sig, DKIM_RESULT_NEUTRAL, "signature syntax");
		return;
	}
	if (kind == DKIM_SIG_DKIM) {
		t = dkim_tags_find(&tags, "v");
		if (t == NULL || !dkim_tag_value_is(t, "1", false))
			sig_error(sig, DKIM_RESULT_NEUTRAL, "signature version");
	} else {
		/* RFC 8617 4.2.1: i= 1..50 */
		t = dkim_tags_find(&tags, "i");
		if (dkim_tag_uint(t, 2, &u) != 0 || u < 1 || u > 50)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "ARC instance");
		else
			sig->instance = (unsigned)u;
	}
	t = dkim_tags_find(&tags, "a");
	if (t == NULL)
		sig_error(sig, DKIM_RESULT_NEUTRAL, "no a=");
	else if (dkim_tag_value_is(t, "rsa-sha256", true))
		sig->alg = DKIM_ALG_RSA_SHA256;
	else if (dkim_tag_value_is(t, "ed25519-sha256", true))
		sig->alg = DKIM_ALG_ED25519_SHA256;
	else if (dkim_tag_value_is(t, "rsa-sha1", true)) {
		sig->alg = DKIM_ALG_RSA_SHA1;
		sig_error(sig, DKIM_RESULT_PERMERROR, "rsa-sha1 not accepted (RFC 8301)");
	} else
		sig_error(sig, DKIM_RESULT_NEUTRAL, "unknown algorithm");
	sig->alg_known = t != NULL && (sig->alg != DKIM_ALG_RSA_SHA256 ||
	    dkim_tag_value_is(t, "rsa-sha256", true));
	t = dkim_tags_find(&tags, "b");
	if (t == NULL) {
		sig_error(sig, DKIM_RESULT_NEUTRAL, "no b=");
	} else {
		n = dkim_base64_decode(t->value, t->value_len, sig->b, sizeof(sig->b));
		if (n <= 0)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "b= not base64");
		else
			sig->blen = (size_t)n;
		/* RFC 6008 2: header.b carries the leading characters of b= */
		size_t o = 0;
		for (size_t i = 0; i < t->value_len && o < 8; i++)
			if (!isspace((unsigned char)t->value[i]))
				sig->b_prefix[o++] = t->value[i];
		sig->b_prefix[o] = '\0';
	}
	if (!seal) {
		t = dkim_tags_find(&tags, "bh");
		if (t == NULL)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "no bh=");
		else if (dkim_base64_decode(t->value, t->value_len, sig->bh, sizeof(sig->bh)) != 32)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "bh= not a SHA-256 hash");
		t = dkim_tags_find(&tags, "c");
		sig->hcanon = sig->bcanon = DKIM_CANON_SIMPLE;
		if (t != NULL) {
			char c[32], *slash;

			if (dkim_tag_copy_nows(t, c, sizeof(c)) < 0) {
				sig_error(sig, DKIM_RESULT_NEUTRAL, "c= syntax");
			} else {
				slash = strchr(c, '/');
				if (slash != NULL)
					*slash++ = '\0';
				if (strcasecmp(c, "relaxed") == 0)
					sig->hcanon = DKIM_CANON_RELAXED;
				else if (strcasecmp(c, "simple") != 0)
					sig_error(sig, DKIM_RESULT_NEUTRAL, "c= unknown");
				if (slash != NULL && strcasecmp(slash, "relaxed") == 0)
					sig->bcanon = DKIM_CANON_RELAXED;
				else if (slash != NULL && strcasecmp(slash, "simple") != 0)
					sig_error(sig, DKIM_RESULT_NEUTRAL, "c= unknown");
			}
		}
		t = dkim_tags_find(&tags, "h");
		if (t == NULL || t->value_len == 0) {
			sig_error(sig, DKIM_RESULT_NEUTRAL, "no h=");
		} else if (dkim_tag_each(t, ':', 256, sig_check_hname_cb, NULL) != 0) {
			sig_error(sig, DKIM_RESULT_NEUTRAL, "h= syntax");
		} else {
			sig->h = malloc(t->value_len + 1);
			if (sig->h == NULL || dkim_tag_copy_nows(t, sig->h, t->value_len + 1) < 0)
				sig_error(sig, DKIM_RESULT_PERMERROR, "out of memory");
			if (kind == DKIM_SIG_DKIM) {
				bool from = false;

				/* RFC 6376 5.4: From MUST be signed */
				dkim_tag_each(t, ':', 256, sig_find_from_cb, &from);
				if (!from)
					sig_error(sig, DKIM_RESULT_PERMERROR, "From not signed");
			}
		}
		t = dkim_tags_find(&tags, "l");
		if (t != NULL) {
			if (dkim_tag_uint(t, 18, &u) != 0)
				sig_error(sig, DKIM_RESULT_NEUTRAL, "l= syntax");
			sig->has_l = true;
			sig->l = u;
		}
	} else {
		if (dkim_tags_find(&tags, "h") != NULL)
			sig_error(sig, DKIM_RESULT_PERMERROR, "h= in ARC-Seal");	/* RFC 8617 4.1.3 */
		t = dkim_tags_find(&tags, "cv");
		if (dkim_tag_value_is(t, "none", true))
			sig->cv = DKIM_CV_NONE;
		else if (dkim_tag_value_is(t, "pass", true))
			sig->cv = DKIM_CV_PASS;
		else if (dkim_tag_value_is(t, "fail", true))
			sig->cv = DKIM_CV_FAIL;
		else {
			sig->cv = DKIM_CV_INVALID;
			sig_error(sig, DKIM_RESULT_NEUTRAL, "cv= missing or unknown");
		}
		sig->hcanon = DKIM_CANON_RELAXED;	/* RFC 8617 4.1.3: seals are relaxed only */
	}
	t = dkim_tags_find(&tags, "d");
	if (t == NULL || sig_copy_domain(t, sig->d, sizeof(sig->d)) != 0)
		sig_error(sig, DKIM_RESULT_NEUTRAL, "d= missing or bad");
	t = dkim_tags_find(&tags, "s");
	if (t == NULL || sig_copy_domain(t, sig->s, sizeof(sig->s)) != 0)
		sig_error(sig, DKIM_RESULT_NEUTRAL, "s= missing or bad");
	if (kind == DKIM_SIG_DKIM) {
		t = dkim_tags_find(&tags, "i");
		if (t != NULL) {
			const char *at;

			if (dkim_tag_copy_nows(t, sig->auid, sizeof(sig->auid)) <= 0 ||
			    (at = strrchr(sig->auid, '@')) == NULL)
				sig_error(sig, DKIM_RESULT_NEUTRAL, "i= syntax");
			else if (sig->d[0] && !dkim_domain_within(at + 1, sig->d))
				sig_error(sig, DKIM_RESULT_PERMERROR, "i= not within d=");	/* 6.1.1 */
		}
		t = dkim_tags_find(&tags, "q");
		if (t != NULL) {
			bool ok = false;

			dkim_tag_each(t, ':', 16, sig_find_dnstxt_cb, &ok);
			if (!ok)
				sig_error(sig, DKIM_RESULT_PERMERROR, "q= without dns/txt");
		}
	}
	t = dkim_tags_find(&tags, "t");
	if (t != NULL) {
		if (dkim_tag_uint(t, 12, &u) != 0)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "t= syntax");
		else
			sig->t = (long long)u;
	}
	if (!seal && (t = dkim_tags_find(&tags, "x")) != NULL) {
		if (dkim_tag_uint(t, 12, &u) != 0)
			sig_error(sig, DKIM_RESULT_NEUTRAL, "x= syntax");
		else
			sig->x = (long long)u;
		if (sig->t >= 0 && sig->x >= 0 && sig->x < sig->t)
			sig_error(sig, DKIM_RESULT_PERMERROR, "x= before t=");	/* 3.5 */
	}
}

int dkim_sig_key_name(const struct dkim_sig *sig, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s._domainkey.%s", sig->s, sig->d);

	return n > 0 && (size_t)n < cap && (size_t)n <= 253 ? 0 : -1;
}

/* ---- the message ------------------------------------------------------------------------ */

struct dkim_field { size_t off, len, name_len, value_off; /* value_off: past the colon, relative */ };

#define DKIM_MAX_BODIES 8

struct dkim_bodyhash {
	enum dkim_canon canon;
	uint64_t limit;
	EVP_MD_CTX *md;
	struct dkim_body_canon c;
	unsigned char digest[32];
	bool ok;                   /* digest computed */
};

struct dkim_msg {
	struct dkim_limits lim;
	char *hdr;
	size_t hdr_len;
	struct dkim_field *f;
	size_t nf;
	bool truncated;
	struct dkim_sig **sigs;
	size_t nsigs, skipped;
	struct dkim_bodyhash bodies[DKIM_MAX_BODIES];
	size_t nbodies;
	bool body_done;
};

struct dkim_msg *dkim_msg_new(const struct dkim_limits *lim)
{
	struct dkim_msg *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->lim = *lim;
	if (m->lim.max_headers == 0)
		m->lim.max_headers = 1;
	return m;
}

void dkim_msg_free(struct dkim_msg *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nsigs; i++) {
		dkim_sig_clear(m->sigs[i]);
		free(m->sigs[i]);
	}
	free(m->sigs);
	for (size_t i = 0; i < m->nbodies; i++)
		EVP_MD_CTX_free(m->bodies[i].md);
	free(m->f);
	free(m->hdr);
	free(m);
}

size_t dkim_msg_nfields(const struct dkim_msg *m)
{
	return m->nf;
}

void dkim_msg_field(const struct dkim_msg *m, size_t i, const char **name, size_t *name_len,
    const char **value, size_t *value_len)
{
	const struct dkim_field *f = &m->f[i];

	*name = m->hdr + f->off;
	*name_len = f->name_len;
	*value = m->hdr + f->off + f->value_off;
	*value_len = f->len - f->value_off;
}

const char *dkim_msg_field_raw(const struct dkim_msg *m, size_t i, size_t *len)
{
	*len = m->f[i].len;
	return m->hdr + m->f[i].off;
}

static bool field_name_is(const char *name, size_t nl, const char *want)
{
	size_t wl = strlen(want);

	return nl == wl && strncasecmp(name, want, wl) == 0;
}

bool dkim_msg_field_is(const struct dkim_msg *m, size_t i, const char *name)
{
	return field_name_is(m->hdr + m->f[i].off, m->f[i].name_len, name);
}

bool dkim_msg_headers_truncated(const struct dkim_msg *m)
{
	return m->truncated;
}

size_t dkim_msg_nsigs(const struct dkim_msg *m)
{
	return m->nsigs;
}

struct dkim_sig *dkim_msg_sig(struct dkim_msg *m, size_t i)
{
	return i < m->nsigs ? m->sigs[i] : NULL;
}

size_t dkim_msg_sigs_skipped(const struct dkim_msg *m)
{
	return m->skipped;
}

bool dkim_msg_body_done(const struct dkim_msg *m)
{
	return m->body_done;
}

bool dkim_msg_body_hash(const struct dkim_msg *m, enum dkim_canon c, unsigned char out[32])
{
	for (size_t i = 0; m->body_done && i < m->nbodies; i++) {
		const struct dkim_bodyhash *b = &m->bodies[i];

		if (b->canon == c && b->limit == UINT64_MAX && b->ok) {
			memcpy(out, b->digest, 32);
			return true;
		}
	}
	return false;
}

/* Splits the header block into fields: a field starts at a line that does not begin with
 * WSP and runs over its continuation lines; the block ends at an empty line. */
static int msg_index_fields(struct dkim_msg *m)
{
	size_t i = 0, cap = 0;
	const char *h = m->hdr;

	while (i < m->hdr_len) {
		size_t start = i, end, name_len;
		const char *colon;

		if (h[i] == '\n' || (h[i] == '\r' && i + 1 < m->hdr_len && h[i + 1] == '\n'))
			break;	/* the blank line */
		/* find the end of the field: a line end not followed by WSP */
		for (;;) {
			const char *nl = memchr(h + i, '\n', m->hdr_len - i);

			if (nl == NULL) {
				i = m->hdr_len;
				end = i;
				break;
			}
			i = (size_t)(nl - h) + 1;
			if (i < m->hdr_len && (h[i] == ' ' || h[i] == '\t'))
				continue;
			end = (size_t)(nl - h);
			if (end > start && h[end - 1] == '\r')
				end--;
			break;
		}
		if (m->nf >= m->lim.max_headers) {
			m->truncated = true;
			break;
		}
		if (m->nf == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			struct dkim_field *nf = realloc(m->f, ncap * sizeof(*nf));

			if (nf == NULL)
				return -1;
			m->f = nf;
			cap = ncap;
		}
		colon = memchr(h + start, ':', end - start);
		name_len = colon ? (size_t)(colon - (h + start)) : end - start;
		/* obsolete syntax allows WSP before the colon (RFC 5322 4.5.8) */
		while (name_len > 0 && (h[start + name_len - 1] == ' ' || h[start + name_len - 1] == '\t'))
			name_len--;
		m->f[m->nf].off = start;
		m->f[m->nf].len = end - start;
		m->f[m->nf].name_len = name_len;
		m->f[m->nf].value_off = colon ? (size_t)(colon - (h + start)) + 1 : end - start;
		m->nf++;
	}
	return 0;
}

static void body_sink_cb(void *arg, const void *data, size_t len)
{
	EVP_DigestUpdate((EVP_MD_CTX *)arg, data, len);
}

/* The hasher for (canon, l=), shared by every signature that asks for the same. */
static int msg_body_for(struct dkim_msg *m, const struct dkim_sig *sig)
{
	uint64_t limit = sig->has_l ? sig->l : UINT64_MAX;
	struct dkim_bodyhash *b;

	for (size_t i = 0; i < m->nbodies; i++)
		if (m->bodies[i].canon == sig->bcanon && m->bodies[i].limit == limit)
			return (int)i;
	if (m->nbodies == DKIM_MAX_BODIES)
		return -1;
	b = &m->bodies[m->nbodies];
	memset(b, 0, sizeof(*b));
	b->canon = sig->bcanon;
	b->limit = limit;
	b->md = EVP_MD_CTX_new();
	if (b->md == NULL || EVP_DigestInit_ex(b->md, dkim_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(b->md);
		return -1;
	}
	dkim_body_canon_init(&b->c, b->canon, limit, body_sink_cb, b->md);
	return (int)m->nbodies++;
}

static int msg_add_sig(struct dkim_msg *m, enum dkim_sig_kind kind, size_t fi)
{
	const char *name, *value;
	size_t nl, vl;
	struct dkim_sig *sig, **ns;

	ns = realloc(m->sigs, (m->nsigs + 1) * sizeof(*ns));
	if (ns == NULL)
		return -1;
	m->sigs = ns;
	sig = malloc(sizeof(*sig));
	if (sig == NULL)
		return -1;
	dkim_msg_field(m, fi, &name, &nl, &value, &vl);
	dkim_sig_parse(kind, value, vl, sig);
	sig->field = fi;
	if (kind != DKIM_SIG_ARC_SEAL && sig->result == DKIM_RESULT_NONE) {
		sig->body = msg_body_for(m, sig);
		if (sig->body < 0)
			sig_error(sig, DKIM_RESULT_PERMERROR, "too many body hashes");
	}
	m->sigs[m->nsigs++] = sig;
	return 0;
}

int dkim_msg_set_headers(struct dkim_msg *m, const char *hdr, size_t len)
{
	size_t ndkim = 0, narc = 0;

	m->hdr = malloc(len ? len : 1);
	if (m->hdr == NULL)
		return -1;
	memcpy(m->hdr, hdr, len);
	m->hdr_len = len;
	if (msg_index_fields(m) != 0)
		return -1;
	for (size_t i = 0; i < m->nf; i++) {
		if (!dkim_msg_field_is(m, i, "DKIM-Signature"))
			continue;
		if (ndkim++ >= m->lim.max_signatures) {
			m->skipped++;
			continue;
		}
		if (msg_add_sig(m, DKIM_SIG_DKIM, i) != 0)
			return -1;
	}
	for (size_t i = 0; i < m->nf; i++) {
		enum dkim_sig_kind k;

		if (dkim_msg_field_is(m, i, "ARC-Seal"))
			k = DKIM_SIG_ARC_SEAL;
		else if (dkim_msg_field_is(m, i, "ARC-Message-Signature"))
			k = DKIM_SIG_ARC_MS;
		else
			continue;
		/* two fields per set; beyond the bound the chain is judged too long (arc.c) */
		if (narc++ >= 2 * m->lim.max_arc_instances)
			continue;
		if (msg_add_sig(m, k, i) != 0)
			return -1;
	}
	return 0;
}

void dkim_msg_feed_body(struct dkim_msg *m, const char *p, size_t n)
{
	for (size_t i = 0; i < m->nbodies; i++)
		dkim_body_canon_feed(&m->bodies[i].c, p, n);
}

void dkim_msg_end_body(struct dkim_msg *m)
{
	unsigned int dl;

	if (m->body_done)
		return;
	for (size_t i = 0; i < m->nbodies; i++) {
		struct dkim_bodyhash *b = &m->bodies[i];

		dkim_body_canon_end(&b->c);
		dl = sizeof(b->digest);
		b->ok = EVP_DigestFinal_ex(b->md, b->digest, &dl) == 1 && dl == 32;
	}
	m->body_done = true;
}

/* ---- verification ----------------------------------------------------------------------- */

/* Hashes one field, canonicalised, into md; with_crlf for all but the signature itself.
 * strip_b: remove the b= value (RFC 6376 3.7 / RFC 8617 5.1.1). */
static int hash_field(EVP_MD_CTX *md, enum dkim_canon c, const char *raw, size_t len,
    bool strip_b, bool with_crlf, char *scratch)
{
	char *tmp = NULL;
	size_t n;

	if (strip_b) {
		const char *colon = memchr(raw, ':', len);
		struct dkim_tags tags;
		const struct dkim_tag *t;
		size_t a, e;

		if (colon == NULL)
			return -1;
		if (dkim_tags_parse(colon + 1, len - (size_t)(colon + 1 - raw), &tags) != DKIM_TAGS_OK ||
		    (t = dkim_tags_find(&tags, "b")) == NULL)
			return -1;
		a = (size_t)(t->after_eq - raw);
		e = (size_t)(t->value + t->value_len - raw);
		tmp = malloc(len);
		if (tmp == NULL)
			return -1;
		memcpy(tmp, raw, a);
		memcpy(tmp + a, raw + e, len - e);
		len -= e - a;
		raw = tmp;
	}
	n = dkim_canon_header(c, raw, len, scratch);
	EVP_DigestUpdate(md, scratch, n);
	if (with_crlf)
		EVP_DigestUpdate(md, "\r\n", 2);
	free(tmp);
	return 0;
}

static bool crypto_verify(const struct dkim_key *k, const unsigned char digest[32],
    const unsigned char *sig, size_t siglen)
{
	bool ok = false;

	if (k->type == DKIM_KEY_RSA) {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);

		ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		    EVP_PKEY_verify(ctx, sig, siglen, digest, 32) == 1;
		EVP_PKEY_CTX_free(ctx);
	} else {
		/* RFC 8463 3: PureEdDSA over the SHA-256 hash of the header data */
		EVP_MD_CTX *mc = EVP_MD_CTX_new();

		ok = mc != NULL && EVP_DigestVerifyInit(mc, NULL, NULL, NULL, k->pkey) == 1 &&
		    EVP_DigestVerify(mc, sig, siglen, digest, 32) == 1;
		EVP_MD_CTX_free(mc);
	}
	ERR_clear_error();
	return ok;
}

static enum dkim_result sig_set(struct dkim_sig *sig, enum dkim_result r, const char *reason)
{
	sig->result = r;
	sig->reason = reason;
	return r;
}

/* Checks shared by every kind before hashing; returns NONE to go on. */
static enum dkim_result sig_precheck(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, long long now)
{
	long long skew = (long long)m->lim.clock_skew;

	if (sig->result != DKIM_RESULT_NONE)
		return sig->result;
	if (m->truncated)
		return sig_set(sig, DKIM_RESULT_PERMERROR, "too many header fields");
	if (key == NULL) {
		char name[300];

		/* s._domainkey.d over 253 characters: no such key can exist (RFC 6376 6.1.2:
		 * PERMFAIL, no key). A temperror there made DMARC temperror, and p=reject let a
		 * forged signature through. */
		if (dkim_sig_key_name(sig, name, sizeof(name)) != 0)
			return sig_set(sig, DKIM_RESULT_PERMERROR, "no key (name too long)");
		return sig_set(sig, DKIM_RESULT_TEMPERROR, "no key answer");
	}
	if (key->result != DKIM_RESULT_PASS)
		return sig_set(sig, key->result, key->reason);
	if ((sig->alg == DKIM_ALG_ED25519_SHA256) != (key->type == DKIM_KEY_ED25519))
		return sig_set(sig, DKIM_RESULT_PERMERROR, "key type does not match a=");
	if (sig->x >= 0 && now > sig->x + skew)
		return sig_set(sig, DKIM_RESULT_PERMERROR, "signature expired");
	if (sig->t >= 0 && sig->t > now + skew)
		return sig_set(sig, DKIM_RESULT_PERMERROR, "signature in the future");
	sig->testing = key->testing;
	return DKIM_RESULT_NONE;
}

static size_t msg_max_field_len(const struct dkim_msg *m)
{
	size_t mx = 0;

	for (size_t i = 0; i < m->nf; i++)
		if (m->f[i].len > mx)
			mx = m->f[i].len;
	return mx;
}

/* Hashes the fields (CRLF after each), then the signature field with b= emptied, and
 * checks the signature. */
static enum dkim_result sig_finish(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, const size_t *fields, size_t nfields)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char *scratch = malloc(msg_max_field_len(m) + 1);
	unsigned char digest[32];
	unsigned int dl = sizeof(digest);
	enum dkim_result r;
	int rc = 0;

	if (md == NULL || scratch == NULL || EVP_DigestInit_ex(md, dkim_sha256(), NULL) != 1) {
		r = sig_set(sig, DKIM_RESULT_TEMPERROR, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < nfields && rc == 0; i++)
		rc = hash_field(md, sig->hcanon, m->hdr + m->f[fields[i]].off, m->f[fields[i]].len,
		    false, true, scratch);
	if (rc == 0)
		rc = hash_field(md, sig->hcanon, m->hdr + m->f[sig->field].off, m->f[sig->field].len,
		    true, false, scratch);
	if (rc != 0 || EVP_DigestFinal_ex(md, digest, &dl) != 1) {
		r = sig_set(sig, DKIM_RESULT_PERMERROR, "signature field unusable");
		goto done;
	}
	if (crypto_verify(key, digest, sig->b, sig->blen))
		r = sig_set(sig, DKIM_RESULT_PASS, NULL);
	else
		r = sig_set(sig, DKIM_RESULT_FAIL, "signature did not verify");
done:
	EVP_MD_CTX_free(md);
	free(scratch);
	return r;
}

struct hsel {
	struct dkim_msg *m;
	bool *used;
	size_t *fields;
	size_t n;
};

/* RFC 6376 5.4.2: each name takes the last not yet used instance, bottom up; a name with
 * no instance left contributes nothing (the null string). */
static int hsel_cb(const char *item, size_t n, void *arg)
{
	struct hsel *s = arg;

	for (size_t i = s->m->nf; i-- > 0;) {
		if (s->used[i] || s->m->f[i].name_len != n ||
		    strncasecmp(s->m->hdr + s->m->f[i].off, item, n) != 0)
			continue;
		s->used[i] = true;
		s->fields[s->n++] = i;
		return 0;
	}
	return 0;
}

enum dkim_result dkim_msg_verify(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, long long now)
{
	enum dkim_result r;
	struct dkim_tag ht;
	struct hsel sel;

	if (sig->kind == DKIM_SIG_ARC_SEAL)
		return sig_set(sig, DKIM_RESULT_PERMERROR, "seal verified as a signature");
	r = sig_precheck(m, sig, key, now);
	if (r != DKIM_RESULT_NONE)
		return r;
	if (sig->kind == DKIM_SIG_DKIM && key->strict && sig->auid[0]) {
		const char *at = strrchr(sig->auid, '@');

		if (at == NULL || strcasecmp(at + 1, sig->d) != 0)
			return sig_set(sig, DKIM_RESULT_PERMERROR, "key t=s: i= must be d=");
	}
	if (!m->body_done || sig->body < 0 || !m->bodies[sig->body].ok)
		return sig_set(sig, DKIM_RESULT_TEMPERROR, "body hash unavailable");
	if (memcmp(m->bodies[sig->body].digest, sig->bh, 32) != 0)
		return sig_set(sig, DKIM_RESULT_FAIL, "body hash did not verify");
	memset(&sel, 0, sizeof(sel));
	sel.m = m;
	sel.used = calloc(m->nf + 1, sizeof(bool));
	sel.fields = calloc(256, sizeof(size_t));
	if (sel.used == NULL || sel.fields == NULL) {
		free(sel.used);
		free(sel.fields);
		return sig_set(sig, DKIM_RESULT_TEMPERROR, "out of memory");
	}
	memset(&ht, 0, sizeof(ht));
	ht.value = sig->h;
	ht.value_len = strlen(sig->h);
	dkim_tag_each(&ht, ':', 256, hsel_cb, &sel);
	r = sig_finish(m, sig, key, sel.fields, sel.n);
	free(sel.used);
	free(sel.fields);
	return r;
}

enum dkim_result dkim_msg_verify_seal(struct dkim_msg *m, struct dkim_sig *sig,
    const struct dkim_key *key, const size_t *fields, size_t nfields, long long now)
{
	enum dkim_result r;

	if (sig->kind != DKIM_SIG_ARC_SEAL)
		return sig_set(sig, DKIM_RESULT_PERMERROR, "not a seal");
	r = sig_precheck(m, sig, key, now);
	if (r != DKIM_RESULT_NONE)
		return r;
	for (size_t i = 0; i < nfields; i++)
		if (fields[i] >= m->nf)
			return sig_set(sig, DKIM_RESULT_PERMERROR, "seal input out of range");
	return sig_finish(m, sig, key, fields, nfields);
}
