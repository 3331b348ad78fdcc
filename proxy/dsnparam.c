/* dsnparam.c — DSN parameter syntax (RFC 3461 4). See dsnparam.h. */
#include "dsnparam.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static int dsnparam_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')	/* RFC 3461 says upper case; Postfix takes both */
		return c - 'a' + 10;
	return -1;
}

/* xtext (RFC 3461 4): "!" to "~" but "+" and "=", or "+" and two hex digits. The value,
 * decoded, must be printable ASCII (what Postfix's smtpd asks of ENVID); with eight_bit,
 * octets 0x80-0xff decoded are taken too (ORCPT: Postfix's smtp client writes a UTF-8
 * original recipient as rfc822;+CE+B4...@domain, and Postfix's smtpd takes it). */
static bool dsnparam_is_xtext(const char *v, bool eight_bit)
{
	if (*v == '\0')
		return false;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '+') {
			int hi = dsnparam_hex(v[1]), lo = hi < 0 ? -1 : dsnparam_hex(v[2]);
			if (lo < 0)
				return false;
			int d = hi * 16 + lo;
			if (d < 0x20 || d == 0x7f || (d > 0x7f && !eight_bit))
				return false;
			v += 2;
		} else if (c < 0x21 || c > 0x7e || c == '=') {
			return false;
		}
	}
	return true;
}

/* utf-8-addr-xtext (RFC 6533 3): graphic ASCII but "+", "=" ("\x{HEX}" escapes fit), or
 * UTF-8 octets. */
static bool dsnparam_is_utf8_xtext(const char *v)
{
	if (*v == '\0')
		return false;
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c < 0x21 || c == 0x7f || c == '+' || c == '=')
			return false;
	}
	return true;
}

/* The parameter key of cmd once (NULL when absent); *dup set when it appears again. */
static const struct smtp_param *dsnparam_find(const struct smtp_cmd *cmd, const char *key, bool *dup)
{
	const struct smtp_param *found = NULL;

	*dup = false;
	for (size_t i = 0; i < cmd->nparams; i++) {
		if (strcasecmp(cmd->params[i].key, key) != 0)
			continue;
		if (found)
			*dup = true;
		else
			found = &cmd->params[i];
	}
	return found;
}

/* NOTIFY's value: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY, each once. */
static bool dsnparam_is_notify(const char *v)
{
	static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };
	unsigned seen = 0;

	if (strcasecmp(v, "NEVER") == 0)
		return true;
	for (;;) {
		size_t n = strcspn(v, ",");
		size_t k = 0;
		while (k < 3 && !(strlen(words[k]) == n && strncasecmp(v, words[k], n) == 0))
			k++;
		if (k == 3 || (seen & (1u << k)))
			return false;
		seen |= 1u << k;
		if (v[n] == '\0')
			return true;
		v += n + 1;
	}
}

/* ORCPT's value: addr-type ";" xtext (RFC 3461 4.2), the type not empty; the xtext may
 * decode to UTF-8 octets (see dsnparam_is_xtext). The lengths of
 * RFC 3461 (ENVID 100, ORCPT 500) are not enforced: Postfix's smtpd does not either. */
static bool dsnparam_is_orcpt(const char *v)
{
	const char *semi = strchr(v, ';');
	size_t tlen;

	if (semi == NULL || semi == v)
		return false;
	tlen = (size_t)(semi - v);
	if (tlen == 5 && strncasecmp(v, "utf-8", 5) == 0)
		return dsnparam_is_utf8_xtext(semi + 1);
	return dsnparam_is_xtext(semi + 1, true);
}

/* See dsnparam.h. */
const char *dsnparam_check_mail(const struct smtp_cmd *cmd)
{
	bool dup;
	const struct smtp_param *p;

	p = dsnparam_find(cmd, "RET", &dup);
	if (p && (dup || p->value == NULL || (strcasecmp(p->value, "FULL") != 0 && strcasecmp(p->value, "HDRS") != 0)))
		return "501 5.5.4 Bad RET parameter syntax";
	p = dsnparam_find(cmd, "ENVID", &dup);
	if (p && (dup || p->value == NULL || !dsnparam_is_xtext(p->value, false)))
		return "501 5.5.4 Bad ENVID parameter syntax";
	return NULL;
}

/* See dsnparam.h. */
const char *dsnparam_check_rcpt(const struct smtp_cmd *cmd)
{
	bool dup;
	const struct smtp_param *p;

	p = dsnparam_find(cmd, "NOTIFY", &dup);
	if (p && (dup || p->value == NULL || !dsnparam_is_notify(p->value)))
		return "501 5.5.4 Error: Bad NOTIFY parameter syntax";
	p = dsnparam_find(cmd, "ORCPT", &dup);
	if (p && (dup || p->value == NULL || !dsnparam_is_orcpt(p->value)))
		return "501 5.5.4 Error: Bad ORCPT parameter syntax";
	return NULL;
}
