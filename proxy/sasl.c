/* sasl.c — AUTH PLAIN / LOGIN message handling (RFC 4954, RFC 4616, RFC 4648). No I/O.
 * Base64 decoding is OpenSSL's (EVP_DecodeBlock) behind a strict syntax check: SASL wants a
 * single canonical encoding, OpenSSL alone would take whitespace and drop stray bits. */
#include "sasl.h"
#include "domain.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

static const char R_UNKNOWN_MECH[] = "504 5.5.4 Unrecognized authentication type";
static const char R_AUTH_SYNTAX[] = "501 5.5.4 Syntax: AUTH mechanism [initial-response]";
static const char R_AUTH_B64[] = "501 5.5.2 Cannot decode the initial response";

const char sasl_login_user_challenge[] = "VXNlcm5hbWU6";   /* "Username:" */
const char sasl_login_pass_challenge[] = "UGFzc3dvcmQ6";   /* "Password:" */

/* See sasl.h. */
const char *sasl_mech_name(enum sasl_mech m)
{
	switch (m) {
	case SASL_MECH_PLAIN: return "PLAIN";
	case SASL_MECH_LOGIN: return "LOGIN";
	default: return "NONE";
	}
}

/* See sasl.h. */
void sasl_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

/* ---- base64 ---------------------------------------------------------------------------- */

static int sasl_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* See sasl.h. */
ssize_t sasl_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
	size_t pad = 0;
	unsigned char tmp[3];

	if (n == 1 && in[0] == '=')
		return 0;               /* RFC 4954 4: "=" is an empty response */
	if (n == 0 || n % 4 != 0 || n > SASL_MAX_B64)
		return -1;
	if (in[n - 1] == '=')
		pad = in[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (sasl_b64_value((unsigned char)in[i]) < 0)
			return -1;
	/* canonical: the bits the padding leaves over are zero */
	if (pad == 2 && (sasl_b64_value((unsigned char)in[n - 3]) & 0x0f) != 0)
		return -1;
	if (pad == 1 && (sasl_b64_value((unsigned char)in[n - 2]) & 0x03) != 0)
		return -1;
	size_t len = n / 4 * 3 - pad;
	if (len > cap)
		return -1;
	/* EVP_DecodeBlock writes whole groups of 3: the last group goes through tmp */
	if (n > 4 && EVP_DecodeBlock(out, (const unsigned char *)in, (int)(n - 4)) != (int)((n - 4) / 4 * 3))
		return -1;
	if (EVP_DecodeBlock(tmp, (const unsigned char *)in + n - 4, 4) != 3)
		return -1;
	memcpy(out + (n - 4) / 4 * 3, tmp, 3 - pad);
	sasl_wipe(tmp, sizeof(tmp));
	return (ssize_t)len;
}

/* See sasl.h. */
ssize_t sasl_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap)
{
	size_t need = 4 * ((n + 2) / 3) + 1;

	if (cap < need || n > (size_t)1 << 30)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* ---- AUTH command ---------------------------------------------------------------------- */

/* See sasl.h. */
int sasl_parse_auth_arg(const char *arg, enum sasl_mech *mech, const char **initial,
    const char **reply)
{
	const char *sp = strchr(arg, ' ');
	size_t mlen = sp ? (size_t)(sp - arg) : strlen(arg);

	*mech = SASL_MECH_NONE;
	*initial = NULL;
	if (mlen == 5 && strncasecmp(arg, "PLAIN", 5) == 0)
		*mech = SASL_MECH_PLAIN;
	else if (mlen == 5 && strncasecmp(arg, "LOGIN", 5) == 0)
		*mech = SASL_MECH_LOGIN;
	else {
		*reply = mlen == 0 ? R_AUTH_SYNTAX : R_UNKNOWN_MECH;
		return -1;
	}
	if (sp == NULL)
		return 0;
	const char *ir = sp + 1;
	size_t n = strlen(ir);
	if (n == 0 || strchr(ir, ' ') != NULL) {
		*reply = R_AUTH_SYNTAX;
		return -1;
	}
	unsigned char probe[SASL_MAX_B64];
	ssize_t k = sasl_base64_decode(ir, n, probe, sizeof(probe));
	sasl_wipe(probe, sizeof(probe));
	if (k < 0) {
		*reply = R_AUTH_B64;
		return -1;
	}
	*initial = ir;
	return 0;
}

/* See sasl.h. */
bool sasl_is_cancel(const char *line, size_t len)
{
	return len == 1 && line[0] == '*';
}

/* ---- PLAIN and LOGIN ------------------------------------------------------------------- */

/* Copies a field of n octets: 1..max (0 allowed when may_be_empty), UTF-8, no NUL. */
static int sasl_field(const unsigned char *p, size_t n, char *out, size_t max, bool may_be_empty)
{
	if ((n == 0 && !may_be_empty) || n > max || memchr(p, '\0', n) != NULL ||
	    !domain_utf8_valid((const char *)p, n))
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* See sasl.h. */
int sasl_plain_split(const unsigned char *msg, size_t n, struct sasl_plain *out,
    const char **why)
{
	const unsigned char *nul1 = memchr(msg, '\0', n), *nul2;

	sasl_wipe(out, sizeof(*out));
	if (nul1 == NULL || (nul2 = memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - msg))) == NULL) {
		*why = "not authzid NUL authcid NUL passwd";
		return -1;
	}
	size_t zlen = (size_t)(nul1 - msg), clen = (size_t)(nul2 - nul1 - 1);
	size_t plen = n - (size_t)(nul2 + 1 - msg);
	if (sasl_field(msg, zlen, out->authzid, SASL_MAX_FIELD, true) != 0 ||
	    sasl_field(nul1 + 1, clen, out->authcid, SASL_MAX_FIELD, false) != 0 ||
	    sasl_field(nul2 + 1, plen, out->passwd, SASL_MAX_PASSWD, false) != 0) {
		sasl_wipe(out, sizeof(*out));
		*why = "a field is empty, too long (names 255 octets), holds a NUL or is not UTF-8";
		return -1;
	}
	return 0;
}

/* See sasl.h. */
int sasl_login_decode(const char *b64, size_t n, char *out, size_t cap)
{
	unsigned char buf[SASL_MAX_FIELD + 3];
	ssize_t k = sasl_base64_decode(b64, n, buf, sizeof(buf));
	int rc = -1;

	if (k > 0 && (size_t)k < cap && sasl_field(buf, (size_t)k, out, SASL_MAX_FIELD, false) == 0)
		rc = 0;
	sasl_wipe(buf, sizeof(buf));
	if (rc != 0 && cap > 0)
		out[0] = '\0';
	return rc;
}
