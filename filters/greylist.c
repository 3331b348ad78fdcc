/* greylist.c — greylisting at RCPT, see greylist.h. */
#include "greylist.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rules/recipient_actions.h"
#include "proxy/config.h"
#include "proxy/hook.h"
#include "proxy/listfile.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/netaddr.h"
#include "dnsbl.h"
#include "ratelimit.h"
#include "store/lmdb_store.h"
#include "store/local_table.h"
#include "store/mailbox.h"
#include "store/redis.h"
#include "store/store.h"

#define GL_KEY_MAX 700
/* a client network's text, or "spf:" + a domain (spf_key) */
#define GL_NET_MAX 300

/* ---- pure pieces ------------------------------------------------------------------------ */

bool greylist_decide(struct greylist_entry *e, bool exists, uint64_t now_ms, uint64_t delay_ms,
    uint64_t window_ms, uint64_t expire_ms, uint64_t *wait_s, uint64_t *keep_ms)
{
	*wait_s = 0;
	if (exists && e->passed) {
		*keep_ms = expire_ms;           /* renewed by every use */
		return true;
	}
	if (!exists || now_ms < e->first_ms || now_ms - e->first_ms > window_ms) {
		/* first attempt, or the retry came too late: start over */
		e->first_ms = now_ms;
		e->passed = false;
		*wait_s = (delay_ms + 999) / 1000;
		*keep_ms = window_ms;
		return false;
	}
	if (now_ms - e->first_ms < delay_ms) {
		/* retried too early: keep the first time, do not restart the clock */
		*wait_s = (delay_ms - (now_ms - e->first_ms) + 999) / 1000;
		*keep_ms = window_ms - (now_ms - e->first_ms);
		return false;
	}
	e->passed = true;
	*keep_ms = expire_ms;
	return true;
}

/* An address in the triplet's form into out (truncating): lower case, without the one
 * trailing dot a domain may carry (user@example.org. is user@example.org, as everywhere a
 * domain is compared: domain.c). Returns the length written. */
static size_t gl_lower(char *out, size_t outlen, const char *s)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';		/* before strchr reads it */
	if (i > 1 && out[i - 1] == '.' && out[i - 2] != '.' && strchr(out, '@') != NULL)
		out[--i] = '\0';
	return i;
}

/* Skips "<prefix><field>=" at the start of local (lowercase), returning what follows, or
 * local when it does not start so or nothing follows. */
static const char *gl_skip_tagged(const char *local, const char *prefix, int fields)
{
	size_t n = strlen(prefix);
	const char *p;

	if (strncmp(local, prefix, n) != 0)
		return local;
	p = local + n;
	for (int i = 0; i < fields; i++) {
		p = strchr(p, '=');
		if (p == NULL || p[1] == '\0')
			return local;
		p++;
	}
	return p;
}

/* An SRS address's local part (lowercase) without its hashes and time, which change from
 * day to day for one original sender: "srs0=HASH=TT=domain=user" -> "srs0=domain=user",
 * "srs1=HASH=fwd.example==HASH=TT=domain=user" -> "srs1=fwd.example=domain=user". The
 * separator after SRS0/SRS1 may be '=', '+' or '-' (libsrs2, Mail::SRS, postsrsd), as may
 * the one SRS1 keeps of the original SRS0. The form's prefix goes to out (*n its length);
 * returns what follows it, or local when it is no SRS address. */
static const char *gl_srs_form(const char *local, char *out, size_t *n)
{
	const char *p, *host = NULL;
	size_t hlen = 0;
	bool srs1;

	if (strncmp(local, "srs0", 4) != 0 && strncmp(local, "srs1", 4) != 0)
		return local;
	srs1 = local[3] == '1';
	if (local[4] != '=' && local[4] != '+' && local[4] != '-')
		return local;
	p = strchr(local + 5, '=');             /* past the hash */
	if (p == NULL)
		return local;
	p++;
	if (srs1) {
		host = p;
		p = strchr(p, '=');
		if (p == NULL || p == host)
			return local;
		hlen = (size_t)(p - host);
		p++;
		if (*p == '=' || *p == '+' || *p == '-')
			p++;            /* the original SRS0's separator */
		p = strchr(p, '=');  /* past the SRS0 hash */
		if (p == NULL)
			return local;
		p++;
	}
	p = strchr(p, '=');     /* past the time stamp */
	if (p == NULL || p[1] == '\0' || hlen > 200)
		return local;
	memcpy(out, srs1 ? "srs1=" : "srs0=", 5);
	*n = 5;
	if (srs1) {
		memcpy(out + 5, host, hlen);
		out[5 + hlen] = '=';
		*n += hlen + 1;
	}
	return p + 1;
}

static bool gl_word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* The sender as the triplet keeps it (lowercased, in place, snd holding at least as much as
 * it has): the parts of a local part that change from message to message or from day to
 * day for one sender, as postgrey drops them, so a sender that passed once passes again:
 * a BATV tag ("prvs=TAG=user", "msprvs1=TAG=user", "btv1==TAG==user" -> "user"), the hashes
 * and time of an SRS address (gl_srs_form), an extension ("list+bnc123"
 * -> "list": VERP, Google Groups) and each number standing alone ("bounce-1234-5" ->
 * "bounce-#-#"; "user123" stays). */
static void gl_sender_form(char *snd)
{
	char *at = strrchr(snd, '@');
	char local[300], out[300];
	const char *l;
	size_t n = 0;

	if (at == NULL || at == snd)
		return;
	memcpy(local, snd, (size_t)(at - snd));
	local[at - snd] = '\0';
	l = gl_skip_tagged(local, "prvs=", 1);
	if (l == local)
		l = gl_skip_tagged(local, "msprvs1=", 1);
	if (l == local && strncmp(local, "btv1==", 6) == 0) {
		/* Barracuda's BATV: btv1==TAG==user */
		const char *e = strstr(local + 6, "==");

		if (e != NULL && e[2] != '\0')
			l = e + 2;
	}
	if (l == local)
		l = gl_srs_form(local, out, &n);
	for (size_t i = 0; l[i] && l[i] != '+' && n + 1 < sizeof(out); i++) {
		if (isdigit((unsigned char)l[i]) && (i == 0 || !gl_word_char(l[i - 1]))) {
			size_t j = i;

			while (isdigit((unsigned char)l[j]))
				j++;
			if (!gl_word_char(l[j]) || l[j] == '\0') {
				out[n++] = '#';
				i = j - 1;
				continue;
			}
		}
		out[n++] = l[i];
	}
	if (n == 0)
		return;             /* "+x@dom": keep it whole */
	out[n] = '\0';
	/* out is no longer than local: the domain moves left, never past the end */
	memmove(snd + n, at, strlen(at) + 1);
	memcpy(snd, out, n);
}

int greylist_triplet(const struct sockaddr *sa, long prefix_v4, long prefix_v6,
    const char *sender, const char *rcpt, char *out, size_t outlen)
{
	char net[GL_NET_MAX], snd[300], rc[300];

	if (sender == NULL || rcpt == NULL ||
	    netaddr_prefix_string(sa, (int)prefix_v4, (int)prefix_v6, net, sizeof(net)) < 0)
		return -1;
	if (strlen(sender) >= sizeof(snd) || strlen(rcpt) >= sizeof(rc))
		return -1;
	gl_lower(snd, sizeof(snd), sender[0] ? sender : "<>");
	gl_sender_form(snd);
	gl_lower(rc, sizeof(rc), rcpt);
	if ((size_t)snprintf(out, outlen, "%s|%s|%s", net, snd, rc) >= outlen)
		return -1;
	return 0;
}

/* ---- allow by host name (postgrey's whitelist_clients) ---------------------------------- */

/* postgrey 1.37 reads "a.b" as a.b.0.0/24 (its comment says /16; NetAddr::IP is handed 24):
 * kept, so its file allows here what it allowed there. */
static int gl_names_ip(const char *e, struct netaddr *net, int *prefix)
{
	unsigned a, b, c, d, n;
	char tail;
	char buf[64];

	if (strchr(e, ':'))
		return netaddr_parse_cidr(e, net, prefix);
	if (sscanf(e, "%3u.%3u.%3u.%3u/%2u%c", &a, &b, &c, &d, &n, &tail) == 5 ||
	    sscanf(e, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) == 4)
		return netaddr_parse_cidr(e, net, prefix);
	if (sscanf(e, "%3u.%3u.%3u%c", &a, &b, &c, &tail) == 3)
		snprintf(buf, sizeof(buf), "%u.%u.%u.0/24", a, b, c);
	else if (sscanf(e, "%3u.%3u%c", &a, &b, &tail) == 2)
		snprintf(buf, sizeof(buf), "%u.%u.0.0/24", a, b);
	else
		return 1;                /* not an address */
	return netaddr_parse_cidr(buf, net, prefix);
}

/* See greylist.h. */
int greylist_names_add(struct greylist_names *l, const char *entry, char *err, size_t errlen)
{
	struct greylist_name_rule r = { .prefix = -1 };
	struct greylist_name_rule *v;
	size_t len = strlen(entry);
	int rc;

	if (len == 0 || len > 1000 || strpbrk(entry, " \t\r\n")) {
		snprintf(err, errlen, "expected a host name, /regex/ or address, got \"%.64s\"", entry);
		return -1;
	}
	if (len >= 3 && entry[0] == '/' && entry[len - 1] == '/') {
		int ec;
		PCRE2_SIZE eo;
		PCRE2_UCHAR msg[120];

		r.re = pcre2_compile((PCRE2_SPTR)entry + 1, len - 2, PCRE2_CASELESS, &ec, &eo, NULL);
		if (r.re == NULL) {
			pcre2_get_error_message(ec, msg, sizeof(msg));
			snprintf(err, errlen, "regex %.64s: %s at offset %zu", entry, (char *)msg, (size_t)eo);
			return -1;
		}
	} else if ((rc = gl_names_ip(entry, &r.net, &r.prefix)) <= 0) {
		if (rc < 0) {
			snprintf(err, errlen, "not an address or network: \"%.64s\"", entry);
			return -1;
		}
	} else {
		r.prefix = -1;
		if (entry[len - 1] == '.')
			len--;
		if (len == 0 || len > 253 || entry[0] == '.' || entry[0] == '/') {
			snprintf(err, errlen, "expected a host name, /regex/ or address, got \"%.64s\"", entry);
			return -1;
		}
		r.domain = malloc(len + 1);
		if (r.domain == NULL)
			goto nomem;
		for (size_t i = 0; i < len; i++)
			r.domain[i] = (char)tolower((unsigned char)entry[i]);
		r.domain[len] = '\0';
	}
	v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (v == NULL)
		goto nomem;
	l->v = v;
	l->v[l->n++] = r;
	return 0;
nomem:
	free(r.domain);
	pcre2_code_free(r.re);
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* One entry added to a list (greylist_names_add, greylist_traps_add): 0, or -1 with why. */
typedef int (*gl_add_fn)(void *list, const char *entry, char *why, size_t whylen);

/* Every line of path without its "# comment" and surrounding blanks, blank lines skipped,
 * handed to add; 0, or -1 with "PATH:LINE: reason" (or the open error) in err. Lines are at
 * most 1098 bytes. */
static int gl_load_lines(const char *path, gl_add_fn add, void *list, char *err, size_t errlen)
{
	/* the text through listfile (kept from the last load while the file is unchanged; a
	 * regular file or /dev/null: a FIFO or a device is refused, not waited on) */
	const char *errstr = NULL, *text, *p, *nl;
	struct listfile *f = listfile_get(path, &errstr);
	char line[1100], why[300];
	unsigned lineno = 0;
	size_t len;
	int rc = 0;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, errstr ? errstr : "?");
		return -1;
	}
	text = listfile_text(f, &len);
	for (p = text; rc == 0 && p < text + len; p = nl + 1) {
		char *s = line, *e;
		size_t n;

		if ((nl = memchr(p, '\n', (size_t)(text + len - p))) == NULL)
			nl = text + len;	/* the last line without its newline */
		n = (size_t)(nl - p);
		lineno++;
		if (n > sizeof(line) - 2) {
			snprintf(err, errlen, "%s:%u: line longer than %zu bytes", path, lineno, sizeof(line) - 2);
			rc = -1;
			break;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		if ((e = strchr(s, '#')) != NULL)       /* postgrey: s/#.*$// */
			*e = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (*s == '\0')
			continue;
		if (add(list, s, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			rc = -1;
		}
	}
	listfile_release(f);
	return rc;
}

static int gl_names_add_fn(void *list, const char *entry, char *why, size_t whylen)
{
	return greylist_names_add(list, entry, why, whylen);
}

/* See greylist.h. */
int greylist_names_load(struct greylist_names *l, const char *path, char *err, size_t errlen)
{
	return gl_load_lines(path, gl_names_add_fn, l, err, errlen);
}

/* A regex from the operator on a name of at most 253 bytes, with a match limit: a rule that
 * backtracks without end fails to match (the client is greylisted), it does not stall. */
static bool gl_names_re(void *re, const char *name)
{
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	int rc = -1;

	if (md && mc) {
		pcre2_set_match_limit(mc, 100000);
		pcre2_set_depth_limit(mc, 1000);
		rc = pcre2_match(re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, mc);
	}
	pcre2_match_context_free(mc);
	pcre2_match_data_free(md);
	return rc >= 0;
}

/* See greylist.h. */
bool greylist_names_match(const struct greylist_names *l, const char *name,
    const struct sockaddr *sa)
{
	struct netaddr a;
	bool have_addr = sa != NULL && netaddr_from_sockaddr(sa, &a) == 0;
	size_t nlen = name ? strlen(name) : 0;

	if (nlen && name[nlen - 1] == '.')
		nlen--;
	for (size_t i = 0; i < l->n; i++) {
		const struct greylist_name_rule *r = &l->v[i];

		if (r->prefix >= 0) {
			if (have_addr && netaddr_in_prefix(&a, &r->net, r->prefix))
				return true;
		} else if (nlen == 0 || nlen > 253) {
			continue;
		} else if (r->re) {
			char buf[256];

			memcpy(buf, name, nlen);
			buf[nlen] = '\0';
			if (gl_names_re(r->re, buf))
				return true;
		} else {
			size_t dl = strlen(r->domain);

			/* postgrey: (?:^|\.)\Qdomain\E$, caseless */
			if (nlen >= dl && strncasecmp(name + nlen - dl, r->domain, dl) == 0 &&
			    (nlen == dl || name[nlen - dl - 1] == '.'))
				return true;
		}
	}
	return false;
}

void greylist_names_free(struct greylist_names *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].domain);
		pcre2_code_free(l->v[i].re);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

bool greylist_wants_client_name(const struct greylist_config *c)
{
	for (size_t i = 0; i < c->allow_names.n; i++)
		if (c->allow_names.v[i].prefix < 0)
			return true;
	for (size_t i = 0; i < c->allow_names_file.n; i++)
		if (c->allow_names_file.v[i].prefix < 0)
			return true;
	return false;
}

/* ---- greytrapping: trap addresses and a client's own record ---------------------------- */

/* See greylist.h. */
int greylist_traps_add(struct greylist_traps *t, const char *addr, char *err, size_t errlen)
{
	char buf[320], **v;
	size_t n = strlen(addr);
	const char *at;

	if (n >= 2 && addr[0] == '<' && addr[n - 1] == '>') {
		addr++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf) - 1 || memchr(addr, '@', n) == NULL) {
		snprintf(err, errlen, "expected an address (trap@example.org), got \"%.64s\"", addr);
		return -1;
	}
	memcpy(buf, addr, n);
	buf[n] = '\0';
	at = strrchr(buf, '@');
	if (at == buf || at[1] == '\0' || strpbrk(buf, " \t\r\n<>") != NULL) {
		snprintf(err, errlen, "expected an address (trap@example.org), got \"%.64s\"", buf);
		return -1;
	}
	v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (v == NULL)
		goto nomem;
	t->v = v;
	if ((t->v[t->n] = malloc(n + 1)) == NULL)
		goto nomem;
	gl_lower(t->v[t->n], n + 1, buf);
	t->n++;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static int gl_traps_add_fn(void *list, const char *entry, char *why, size_t whylen)
{
	return greylist_traps_add(list, entry, why, whylen);
}

/* See greylist.h. */
int greylist_traps_load(struct greylist_traps *t, const char *path, char *err, size_t errlen)
{
	return gl_load_lines(path, gl_traps_add_fn, t, err, errlen);
}

static int gl_traps_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void greylist_traps_sort(struct greylist_traps *t)
{
	size_t k = 0;

	if (t->n == 0)
		return;
	qsort(t->v, t->n, sizeof(*t->v), gl_traps_cmp);
	for (size_t i = 1; i < t->n; i++) {
		if (strcmp(t->v[i], t->v[k]) == 0)
			free(t->v[i]);
		else
			t->v[++k] = t->v[i];
	}
	t->n = k + 1;
}

bool greylist_traps_match(const struct greylist_traps *t, const char *rcpt)
{
	char buf[320], *key = buf;
	size_t n;

	if (t->n == 0 || rcpt == NULL)
		return false;
	n = strlen(rcpt);
	if (n >= 2 && rcpt[0] == '<' && rcpt[n - 1] == '>') {
		rcpt++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf) - 1)
		return false;
	memcpy(buf, rcpt, n);
	buf[n] = '\0';
	gl_lower(buf, sizeof(buf), buf);
	return bsearch(&key, t->v, t->n, sizeof(*t->v), gl_traps_cmp) != NULL;
}

void greylist_traps_free(struct greylist_traps *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* A client record in LMDB: struct gl_rec's layout (below) with `passed` one of these marks
 * (a triplet's is 0 or 1, a network's passes 2 or 3). */
#define GL_IP_TRAP_MARK 4
#define GL_IP_ALLOW_MARK 5

int greylist_ip_decode(const void *val, size_t len, uint64_t now_ms, uint64_t *since_ms,
    uint64_t *expires_ms)
{
	uint64_t rec[3];

	*since_ms = *expires_ms = 0;
	if (val == NULL || len != sizeof(rec))
		return GREYLIST_IP_NONE;
	memcpy(rec, val, sizeof(rec));
	if (rec[0] <= now_ms || (rec[2] != GL_IP_TRAP_MARK && rec[2] != GL_IP_ALLOW_MARK))
		return GREYLIST_IP_NONE;
	*expires_ms = rec[0];
	*since_ms = rec[1];
	return rec[2] == GL_IP_TRAP_MARK ? GREYLIST_IP_TRAPPED : GREYLIST_IP_ALLOWED;
}

void greylist_ip_encode(int state, uint64_t since_ms, uint64_t expires_ms, void *out)
{
	uint64_t rec[3] = { expires_ms, since_ms,
		state == GREYLIST_IP_TRAPPED ? GL_IP_TRAP_MARK : GL_IP_ALLOW_MARK };

	memcpy(out, rec, sizeof(rec));
}

uint64_t greylist_ip_local_val(int state, uint64_t since_ms)
{
	return ((uint64_t)(state & 3) << 62) | (since_ms & ((1ull << 62) - 1));
}

int greylist_ip_local_state(uint64_t val, uint64_t *since_ms)
{
	*since_ms = val & ((1ull << 62) - 1);
	return (int)(val >> 62);
}

int greylist_ip_client(const struct sockaddr *sa, long ipv6_prefix, char *out, size_t outlen)
{
	return netaddr_client_string(sa, (int)ipv6_prefix, out, outlen) < 0 ? -1 : 0;
}

/* traps: addresses and "file:PATH" items (accept_domains' form), each file read now, so -t
 * reports a missing file or a bad line and SIGHUP reads them again. */
static int gl_traps_item(void *list, const char *item, char *why, size_t whylen)
{
	return strncmp(item, "file:", 5) == 0 ? greylist_traps_load(list, item + 5, why, whylen) :
	    greylist_traps_add(list, item, why, whylen);
}

static int gl_list_parse(struct cfg_parse *p, struct fy_node *n, void *dst, size_t dstlen,
    const char *what, size_t cap, gl_add_fn item);

static int gl_traps_custom(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	int rc = gl_list_parse(p, n, dst, sizeof(struct greylist_traps), "an address or file:PATH",
	    4096, gl_traps_item);

	greylist_traps_sort(dst);
	return rc;
}

static void gl_traps_free_custom(void *dst)
{
	greylist_traps_free(dst);
}

/* A CFG_CUSTOM list (a lone value is a list of one) into dst (dstlen bytes, zeroed first):
 * each item a string of at most cap - 1 bytes (what: its description in an error), handed to
 * item, whose refusal is the item's error. Files an item names are read now, so -t reports a
 * missing file or a bad line, and SIGHUP reads them again. 0 or -1 after reporting. */
static int gl_list_parse(struct cfg_parse *p, struct fy_node *n, void *dst, size_t dstlen,
    const char *what, size_t cap, gl_add_fn item)
{
	struct fy_node *it;
	char buf[4096], why[4400];
	int rc = 0;

	memset(dst, 0, dstlen);
	if (cfg_node_is_null(n))
		return 0;
	for (size_t i = 0; (it = cfg_seq_item(n, i)) != NULL; i++) {
		size_t old = cfg_path_push_index(p, i);

		if (cfg_node_cstr(p, it, what, buf, cap < sizeof(buf) ? cap : sizeof(buf)) != 0)
			rc = -1;
		else if (item(dst, buf, why, sizeof(why)) < 0)
			rc = cfg_error(p, it, "%s", why);
		cfg_path_pop(p, old);
	}
	return rc;
}

static int gl_names_load_fn(void *list, const char *path, char *why, size_t whylen)
{
	return greylist_names_load(list, path, why, whylen);
}

/* allow_names, a list of rules (also reputation.forwarders: greylist.h); allow_names_file,
 * one file or a list. */
int greylist_names_cfg_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	return gl_list_parse(p, n, dst, sizeof(struct greylist_names), "a host name, /regex/ or address",
	    1100, gl_names_add_fn);
}

static int gl_names_file_custom(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	return gl_list_parse(p, n, dst, sizeof(struct greylist_names), "a file name", 4096, gl_names_load_fn);
}

void greylist_names_cfg_free(void *dst)
{
	greylist_names_free(dst);
}

/* ---- configuration --------------------------------------------------------------------- */

/* The section: a known store form, and a retry window longer than the delay. */
static int gl_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct greylist_config *c = obj;
	int kind = store_kind_of(c->store);

	if (c->store && kind != STORE_LOCAL && kind != STORE_LMDB && kind != STORE_REDIS)
		return cfg_error_key(p, n, "store", -1, "expected local, lmdb:/dir, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	if (c->retry_window <= c->delay)
		return cfg_error(p, n, "retry_window must be longer than delay");
	return 0;
}

static const char *const gl_null_sender_names[] = { "rcpt", "data", NULL };

static const struct cfg_field gl_fields[] = {
	{ "enabled", CFG_BOOL, offsetof(struct greylist_config, enabled), "false",
	  .doc = "greylist unknown (network, sender, recipient) triplets at RCPT" },
	{ "store", CFG_STRING, offsetof(struct greylist_config, store), "local",
	  .doc = "local (this process), lmdb:/dir (this host, survives restarts; may be the reputation directory) or redis://host:port[/db] | redis-sentinel://host:port[,...]/master[/db] (all nodes)" },
	{ "delay", CFG_DURATION, offsetof(struct greylist_config, delay), "5m", 0, 86400000,
	  .doc = "a retry passes after this long" },
	{ "retry_window", CFG_DURATION, offsetof(struct greylist_config, retry_window), "4h", 1000, 7.0 * 86400000,
	  .doc = "a first attempt waits this long for its retry" },
	{ "expire", CFG_DURATION, offsetof(struct greylist_config, expire), "36d", 1000, 365.0 * 86400000,
	  .doc = "a passed triplet passes at once for this long (renewed on use)" },
	{ "prefix_v4", CFG_INT, offsetof(struct greylist_config, prefix_v4), "24", 0, 32,
	  .doc = "client network for IPv4 (senders retry from other hosts of a pool)" },
	{ "prefix_v6", CFG_INT, offsetof(struct greylist_config, prefix_v6), "64", 0, 128,
	  .doc = "client network for IPv6" },
	{ "skip_good", CFG_BOOL, offsetof(struct greylist_config, skip_good), "true",
	  .doc = "no greylisting for clients with REP_GOOD, REP_ALLOW or DNSBL_ALLOW" },
	{ "allow", CFG_CIDRLIST, offsetof(struct greylist_config, allow), NULL,
	  .doc = "clients never greylisted" },
	{ "allow_names", CFG_CUSTOM, offsetof(struct greylist_config, allow_names), NULL,
	  .custom = greylist_names_cfg_parse, .free_custom = greylist_names_cfg_free,
	  .doc = "clients never greylisted, by host name as postgrey's whitelist_clients: a domain (the client's forward-confirmed name is it or ends in .domain), a /regex/ (caseless) or an address/network; a client without a confirmed name matches no name" },
	{ "allow_names_file", CFG_CUSTOM, offsetof(struct greylist_config, allow_names_file), NULL,
	  .custom = gl_names_file_custom, .free_custom = greylist_names_cfg_free,
	  .doc = "files of allow_names rules, one a line, # comments (postgrey's /etc/postgrey/whitelist_clients as it is); read at load and at each reload (SIGHUP)" },
	{ "spf_key", CFG_BOOL, offsetof(struct greylist_config, spf_key), "false",
	  .doc = "a sender whose SPF passed (spf.enabled: the SPF_PASS symbol) is greylisted by (\"spf:\" + the domain SPF checked, sender, recipient) instead of its network, so its retry from any host its SPF record names passes (OpenSMTPD's filter-spfgreylist); auto_allow_clients then counts per domain" },
	{ "null_sender", CFG_ENUM, offsetof(struct greylist_config, null_sender), "data",
	  .choices = gl_null_sender_names,
	  .doc = "where mail from the null sender <> is greylisted: data (at DATA, by its first recipient: a sender or recipient callout, MAIL FROM:<> and RCPT without DATA, is not deferred; a bounce is, at DATA) | rcpt (at each RCPT as any sender, as postgrey: callouts get 451 too)" },
	{ "defer_at", CFG_ENUM, offsetof(struct greylist_config, defer_at), "rcpt",
	  .choices = gl_null_sender_names,
	  .doc = "where mail from a sender other than <> is greylisted: rcpt (at each RCPT, before the backend is asked, as postgrey: a recipient that does not exist gets 451 on a first attempt) | data (at DATA, by its first accepted recipient: the backend answers each RCPT first, so an unknown recipient gets its 550 at once; a new triplet defers the whole message at DATA, nothing reaches the backend)" },
	{ "timeout", CFG_DURATION, offsetof(struct greylist_config, timeout), "200ms", 1, 60000,
	  .doc = "Redis answer deadline; then the local table decides" },
	{ "max_keys", CFG_INT, offsetof(struct greylist_config, max_keys), "100000", 16, 100000000,
	  .doc = "bound of the local triplet table (store: local, and the fallback while Redis is down); when full the triplet closest to expiring is evicted (logged, counted); takes effect at the next start" },
	{ "auto_allow_clients", CFG_INT, offsetof(struct greylist_config, auto_allow_clients), "0", 0, 1000000,
	  .doc = "a client network (prefix_v4/prefix_v6) that passed greylisting this many times (triplets whose retry passed) is not greylisted any more (postgrey's --auto-whitelist-clients); 0 = off" },
	{ "auto_allow_expire", CFG_DURATION, offsetof(struct greylist_config, auto_allow_expire), "36d", 1000, 365.0 * 86400000,
	  .doc = "an auto-allowed client network stays so this long after its last mail (renewed on use); its count of passes is kept as long" },
	{ "traps", CFG_CUSTOM, offsetof(struct greylist_config, traps), NULL,
	  .custom = gl_traps_custom, .free_custom = gl_traps_free_custom,
	  .doc = "spam trap addresses (spamd's spamdb -T -a) and \"file:PATH\" items (one address a line, # comments; read at load and at each reload): a client that sends RCPT to one while greylisted (not allowed, auto-allowed or passed by mxgatectl greylist allow) is trapped for trap_ttl, and every later RCPT of it is refused" },
	{ "trap_ttl", CFG_DURATION, offsetof(struct greylist_config, trap_ttl), "24h", 1000, 365.0 * 86400000,
	  .doc = "how long a trapped client stays refused (spamd's trapexp)" },
	{ "trap_delay", CFG_DURATION, offsetof(struct greylist_config, trap_delay), "5s", 0, 600000,
	  .doc = "how long a trapped client's 550 is held (the tarpit, as reputation's delay; spamd stutters a trapped host's whole dialogue)" },
	{ .key = NULL }
};

const struct cfg_table greylist_config_table = {
	.name = "greylist", .size = sizeof(struct greylist_config), .fields = gl_fields,
	.validate = gl_validate,
};

/* ---- Redis ------------------------------------------------------------------------------- */

/* KEYS[1] the triplet ("" for a trap check alone), KEYS[2] its client network's passes,
 * KEYS[3] the client's own record ("" for none: a message greylisted by score); ARGV
 * delay_ms, window_ms, expire_ms, auto_allow_clients, auto_allow_expire_ms, trap (1: the RCPT is a trap address), trap_ttl_ms. Returns {passed,
 * wait_s} or, about the client network, {1, 0, 1} (this pass made it allowed) and {1, 0, 2}
 * (passed as allowed); about the client, {1, 0, 3} (allowed by the control verb), {0,
 * seconds left, 4} (trapped) and {0, wait_s, 5} (trapped now). Same logic as
 * greylist_decide and gl_check_local, on the server's clock. */
static const char gl_lua[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local delay, window, expire = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"local awl = tonumber(ARGV[4])\n"
	"local ip = KEYS[3] ~= '' and redis.call('HGET', KEYS[3], 's')\n"
	"if ip == '2' then return {1, 0, 3} end\n"
	"if ip == '1' then return {0, math.ceil(redis.call('PTTL', KEYS[3]) / 1000), 4} end\n"
	"if awl > 0 then\n"
	"  local c = tonumber(redis.call('GET', KEYS[2]))\n"
	"  if c and c >= awl then redis.call('PEXPIRE', KEYS[2], ARGV[5]) return {1, 0, 2} end\n"
	"end\n"
	"if ARGV[6] == '1' then\n"
	"  redis.call('HSET', KEYS[3], 's', '1', 't', string.format('%.0f', now))\n"
	"  redis.call('PEXPIRE', KEYS[3], ARGV[7])\n"
	"  return {0, math.ceil(delay / 1000), 5}\n"
	"end\n"
	"if KEYS[1] == '' then return {1, 0} end\n"
	"local v = redis.call('HMGET', KEYS[1], 'first', 'pass')\n"
	"if v[2] then redis.call('PEXPIRE', KEYS[1], expire) return {1, 0} end\n"
	"local first = tonumber(v[1])\n"
	"if not first or now < first or now - first > window then\n"
	"  redis.call('HSET', KEYS[1], 'first', string.format('%.0f', now))\n"
	"  redis.call('PEXPIRE', KEYS[1], window)\n"
	"  return {0, math.ceil(delay / 1000)}\n"
	"end\n"
	"if now - first < delay then return {0, math.ceil((delay - (now - first)) / 1000)} end\n"
	"redis.call('HSET', KEYS[1], 'pass', '1')\n"
	"redis.call('PEXPIRE', KEYS[1], expire)\n"
	"if awl > 0 then\n"
	"  local c = redis.call('INCR', KEYS[2])\n"
	"  redis.call('PEXPIRE', KEYS[2], ARGV[5])\n"
	"  if c == awl then return {1, 0, 1} end\n"
	"end\n"
	"return {1, 0}\n";

/* What the local table decided while Redis gave no answer, merged in when it is back (the
 * write queue): KEYS[1]; ARGV first_ms (wall clock), passed (0/1), window_ms, expire_ms. A
 * pass is kept; otherwise the earlier first attempt wins, so a sender that retried on time
 * is not greylisted again because its first attempt fell into an outage. Idempotent: a
 * second delivery of the same merge changes nothing. A triplet deleted by the control verb
 * leaves GREYLIST_DELETED_PREFIX + triplet holding the time of the delete (Redis's clock):
 * a merge of a first attempt made before it is dropped, so what any node decided during an
 * outage cannot bring a deleted triplet back (the key is derived here, not passed in KEYS,
 * so that redis_store_write_forget cuts the write whole). */
static const char gl_lua_merge[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local first, window, expire = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local del = tonumber(redis.call('GET', '" GREYLIST_DELETED_PREFIX "' .. "
	"string.sub(KEYS[1], string.len('" GREYLIST_KEY_PREFIX "') + 1)))\n"
	"if del and first <= del then return 0 end\n"
	"local v = redis.call('HMGET', KEYS[1], 'first', 'pass')\n"
	"if v[2] then return 0 end\n"
	"if ARGV[2] == '1' then\n"
	"  redis.call('HSET', KEYS[1], 'pass', '1')\n"
	"  if not v[1] then redis.call('HSET', KEYS[1], 'first', string.format('%.0f', first)) end\n"
	"  redis.call('PEXPIRE', KEYS[1], expire)\n"
	"  return 1\n"
	"end\n"
	"if now - first >= window then return 0 end\n"
	"local cur = tonumber(v[1])\n"
	"if cur and cur <= first and now - cur <= window then return 0 end\n"
	"redis.call('HSET', KEYS[1], 'first', string.format('%.0f', first))\n"
	"redis.call('PEXPIRE', KEYS[1], window - math.max(0, now - first))\n"
	"return 1\n";

/* A trap the local table set while Redis gave no answer (a greylisted client sent RCPT to a
 * trap address during an outage), written when Redis is back (the write queue), so that it
 * does not stay in this process alone: KEYS[1] the client's record; ARGV since_ms (wall
 * clock), trap_ttl_ms. Set for what is left of trap_ttl; dropped when that has passed, when
 * the record holds a decision made after it (its t: an allow or trap verb, another node's
 * trap), or when `greylist untrap` deleted a trap after it (GREYLIST_UNTRAPPED_PREFIX, the
 * key derived here as gl_lua_merge's). Idempotent. */
static const char gl_lua_trap[] =
	"if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"local since, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
	"local left = math.min(since + ttl - now, ttl)\n"
	"if left <= 0 then return 0 end\n"
	"local del = tonumber(redis.call('GET', '" GREYLIST_UNTRAPPED_PREFIX "' .. "
	"string.sub(KEYS[1], string.len('" GREYLIST_IP_PREFIX "') + 1)))\n"
	"if del and since <= del then return 0 end\n"
	"local cur = tonumber(redis.call('HGET', KEYS[1], 't'))\n"
	"if cur and cur >= since then return 0 end\n"
	"redis.call('HSET', KEYS[1], 's', '1', 't', string.format('%.0f', since))\n"
	"redis.call('PEXPIRE', KEYS[1], left)\n"
	"return 1\n";

/* ---- module ------------------------------------------------------------------------------ */

/* The LMDB value, expiry first (the sweep reads it); the layout is on disk: keep it. */
struct gl_rec { uint64_t expires_ms, first_ms, passed; };

_Static_assert(sizeof(struct gl_rec) == GREYLIST_RECORD_LEN, "the record's size is on disk");

bool greylist_record_decode(const void *val, size_t len, uint64_t now_ms,
    struct greylist_entry *e)
{
	struct gl_rec rec;

	e->first_ms = 0;
	e->passed = false;
	if (val == NULL || len != sizeof(rec))
		return false;
	memcpy(&rec, val, sizeof(rec));
	if (rec.expires_ms <= now_ms)
		return false;
	e->first_ms = rec.first_ms;
	e->passed = rec.passed != 0;
	return true;
}

void greylist_record_encode(const struct greylist_entry *e, uint64_t expires_ms, void *out)
{
	struct gl_rec rec = { expires_ms, e->first_ms, e->passed };

	memcpy(out, &rec, sizeof(rec));
}

bool greylist_record_expired(const void *val, size_t len, uint64_t now_ms)
{
	uint64_t exp;

	if (len < sizeof(exp))
		return true;
	memcpy(&exp, val, sizeof(exp));
	return exp < now_ms;
}

int greylist_parse_reply(const struct redisReply *r, bool *pass, uint64_t *wait_s)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || (r->elements != 2 && r->elements != 3) ||
	    r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
	    (r->elements == 3 && r->element[2]->type != REDIS_REPLY_INTEGER))
		return -1;
	*pass = r->element[0]->integer != 0;
	*wait_s = r->element[1]->integer > 0 ? (uint64_t)r->element[1]->integer : 0;
	return 0;
}

struct gl_worker {
	const struct greylist_config *cfg;
	struct local_table *local;
	struct redis_store *rs;
	int lua, lua_merge, lua_trap;
	struct lmdb_store *st;         /* lmdb store: reads inline ... */
	struct lmdb_writer *wr;        /* ... writes batched in the pool */
	char awl_logged[GL_NET_MAX + 8]; /* LMDB: the client network last logged auto-allowed */
	/* LMDB or Redis: on gl_board, with a mailbox for the control verbs' writes */
	uv_loop_t *loop;
	struct mailbox mb;
	long ipv6_prefix;              /* limits.client_ipv6_prefix: a client record's key */
	int worker;                    /* its index: greylist_message_check finds it by it */
	struct gl_worker *reg_next;    /* on gl_reg */
};

static struct mailbox_board gl_board = MAILBOX_BOARD_INIT("greylist");
static void gl_write_run(void *owner, void *msg);
static void gl_worker_closed(void *owner);

/* Wall clock in ms (LMDB records outlive the process). */
static uint64_t gl_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The LMDB sweep rule: a triplet whose expiry passed goes. */
static bool gl_expired(const void *key, size_t klen, const void *val, size_t vlen,
    uint64_t now_ms, const void *ctx)
{
	return greylist_record_expired(val, vlen, now_ms);
}

/* The eviction rank when the map is near full: the expiry (the first attempt waiting the
 * longest, the passed triplet unused the longest go first, as in the local table). */
static uint64_t gl_rank(const void *key, size_t klen, const void *val, size_t vlen,
    const void *ctx)
{
	uint64_t exp = 0;

	if (vlen >= sizeof(exp))
		memcpy(&exp, val, sizeof(exp));
	return exp;
}

/* ---- auto-allowed client networks (auto_allow_clients) ---------------------------------
 * A client network's passes (triplets whose retry passed) are counted under its own key
 * (local and Redis GREYLIST_AWL_PREFIX + network, LMDB "gla:" + network), kept for
 * auto_allow_expire after its last mail; at auto_allow_clients its RCPTs are not greylisted.
 * The LMDB record is a triplet's layout with first_ms = the count and passed = GL_AWL_MARK
 * (GL_AWL_LOGGED once a worker logged the network allowed), expiry first (the sweep and the
 * eviction rank read it); counts are merged in the batch, so two workers counting at once
 * lose nothing — and a worker sees them once the batch is applied, so with LMDB the network
 * is logged allowed at its first RCPT let through (by each worker that sees it first). */
#define GL_AWL_MARK 2
#define GL_AWL_LOGGED 3
#define GL_AWL_LMDB "gla:"
/* a message the rules engine greylisted by score (greylist_message_check): + its digest */
#define GL_MSG_PREFIX GREYLIST_MSG_PREFIX    /* local table and Redis */
#define GL_MSG_LMDB GREYLIST_MSG_LMDB

struct gl_awl_op { uint64_t expires_ms, add, logged; };

bool greylist_awl_decode(const void *val, size_t len, uint64_t now_ms, uint64_t *count,
    bool *logged)
{
	struct gl_rec rec;

	*count = 0;
	*logged = false;
	if (val == NULL || len != sizeof(rec))
		return false;
	memcpy(&rec, val, sizeof(rec));
	if (rec.expires_ms <= now_ms || (rec.passed != GL_AWL_MARK && rec.passed != GL_AWL_LOGGED))
		return false;
	*count = rec.first_ms;
	*logged = rec.passed == GL_AWL_LOGGED;
	return true;
}

long greylist_awl_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	struct gl_rec rec = { 0, 0, GL_AWL_MARK };
	struct gl_awl_op op;
	uint64_t count = 0;
	bool logged;

	(void)ctx;
	if (oplen != sizeof(op) || cap < sizeof(rec))
		return -1;
	memcpy(&op, operand, sizeof(op));
	if (!greylist_awl_decode(cur, curlen, now_ms, &count, &logged) && op.add == 0)
		return -1;              /* a renewal of nothing live: leave it */
	rec.expires_ms = op.expires_ms;
	rec.first_ms = count + op.add;
	rec.passed = logged || op.logged ? GL_AWL_LOGGED : GL_AWL_MARK;
	memcpy(out, &rec, sizeof(rec));
	return (long)sizeof(rec);
}

long greylist_ip_del_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	uint64_t op[2], since, exp;

	(void)out;
	(void)cap;
	(void)ctx;
	if (oplen != sizeof(op))
		return -1;
	memcpy(op, operand, sizeof(op));
	if (op[0] != GREYLIST_IP_DEL_MARK ||
	    (op[1] != GREYLIST_IP_TRAPPED && op[1] != GREYLIST_IP_ALLOWED))
		return -1;              /* not one, or no state a record has */
	return greylist_ip_decode(cur, curlen, now_ms, &since, &exp) == (int)op[1] ? 0 : -1;
}

long greylist_ip_new_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	uint64_t op[4], since, exp;

	(void)ctx;
	if (oplen != sizeof(op) || cap < GREYLIST_RECORD_LEN)
		return -1;
	memcpy(op, operand, sizeof(op));
	if (op[0] != GREYLIST_IP_NEW_MARK ||
	    (op[1] != GREYLIST_IP_TRAPPED && op[1] != GREYLIST_IP_ALLOWED) || op[3] <= now_ms)
		return -1;              /* not one, no state a record has, or expired already */
	if (greylist_ip_decode(cur, curlen, now_ms, &since, &exp) != GREYLIST_IP_NONE)
		return -1;              /* a live record: decided meanwhile, it stands */
	greylist_ip_encode((int)op[1], op[2], op[3], out);
	return GREYLIST_RECORD_LEN;
}

/* The greylist writer's merge, by its operand's size: a client record's conditional delete
 * (16 octets, marked), a client record written where there is none (32, marked), else a
 * client network's passes (24). */
static long gl_merge(const void *cur, size_t curlen, const void *operand, size_t oplen,
    void *out, size_t cap, uint64_t now_ms, const void *ctx)
{
	if (oplen == 2 * sizeof(uint64_t))
		return greylist_ip_del_merge(cur, curlen, operand, oplen, out, cap, now_ms, ctx);
	if (oplen == 4 * sizeof(uint64_t))
		return greylist_ip_new_merge(cur, curlen, operand, oplen, out, cap, now_ms, ctx);
	return greylist_awl_merge(cur, curlen, operand, oplen, out, cap, now_ms, ctx);
}

/* The client network of sa as the triplet has it; 0 or -1. */
static int gl_net(const struct greylist_config *c, const struct sockaddr *sa, char *out, size_t outlen)
{
	return netaddr_prefix_string(sa, (int)c->prefix_v4, (int)c->prefix_v6, out, outlen);
}

static void gl_awl_log(struct hook_call *call, const char *net, uint64_t passes, const char *store)
{
	struct hook_env *env = hook_call_env(call);

	log_event(LOG_LVL_INFO, env->session_id,
	    "event=greylist_auto_allow client=%s net=%s passes=%llu store=%s", env->client_ip, net,
	    (unsigned long long)passes, store);
}

struct gl_awl_arg { uint64_t expire_ms, need, add, count; };

/* Local records: val = the count, expiry on the table's clock. add 0: a check (renews an
 * allowed network), 1: a pass counted. Returns 1 when the network is allowed. */
static int gl_awl_local_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct gl_awl_arg *a = arg;

	if (!exists)
		rec->val = 0;
	a->count = rec->val;
	if (a->add == 0 && rec->val < a->need)
		return 0;
	rec->val += a->add;
	rec->expires_ns = now_ns + a->expire_ms * 1000000;
	a->count = rec->val;
	return rec->val >= a->need;
}

struct gl_session {
	struct gl_worker *w;
	struct hook_call *call;
	struct redis_req *req;
	char key[GL_KEY_MAX];
	char awl_key[sizeof(GREYLIST_AWL_PREFIX) + GL_NET_MAX];
	char ip_key[sizeof(GREYLIST_IP_PREFIX) + 80];
	const char *ip;                /* in ip_key */
	bool trap_hit;
};

struct gl_local_arg {
	const struct greylist_config *cfg;
	uint64_t expire_ms;            /* a passed record's lifetime: cfg->expire, or a message's
	                                * rules.greylist_expire */
	uint64_t wait_s;
	uint64_t first_ms;             /* the record after the decision (monotonic ms) */
	bool passed;
	bool retried;                  /* this attempt was a retry that passed */
};

/* Local records: expiry in monotonic ns (the table's clock), val = first attempt (ms on
 * the same clock) with bit 63 = passed. */
static int gl_local_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct gl_local_arg *a = arg;
	struct greylist_entry e = { rec->val & ~(1ull << 63), (rec->val >> 63) != 0 };
	bool was_passed = exists && e.passed;
	uint64_t keep_ms;
	bool pass;

	pass = greylist_decide(&e, exists, now_ns / 1000000, a->cfg->delay, a->cfg->retry_window,
	    a->expire_ms, &a->wait_s, &keep_ms);
	rec->val = e.first_ms | (e.passed ? 1ull << 63 : 0);
	rec->expires_ns = now_ns + keep_ms * 1000000;
	a->first_ms = e.first_ms;
	a->passed = e.passed;
	a->retried = pass && !was_passed;
	return pass ? 1 : 0;
}

/* The local triplets: a process-wide table of their own (not local_table_shared(), where
 * they crowded out the rate limits' buckets), made once with the first generation's
 * max_keys (a reload that changes it is logged as waiting for the next start). */
static struct local_table *gl_table;
static size_t gl_table_max;
static pthread_mutex_t gl_table_mu = PTHREAD_MUTEX_INITIALIZER;

static struct local_table *gl_table_get(size_t max_keys, int worker)
{
	struct local_table *t;

	pthread_mutex_lock(&gl_table_mu);
	if (gl_table == NULL) {
		gl_table = local_table_new(max_keys);
		gl_table_max = max_keys;
		if (gl_table)
			local_table_set_name(gl_table, "greylist");
	} else if (max_keys != gl_table_max && worker == 0) {
		log_event(LOG_LVL_WARNING, NULL, "event=config_unchanged key=greylist.max_keys "
		    "reason=\"takes effect at the next start\" running=%zu", gl_table_max);
	}
	t = gl_table;
	pthread_mutex_unlock(&gl_table_mu);
	return t;
}

/* Every worker state, for greylist_message_check (the rules engine's sessions find their
 * worker's and generation's by its config). */
static pthread_mutex_t gl_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gl_worker *gl_reg;

static void gl_reg_add(struct gl_worker *w)
{
	pthread_mutex_lock(&gl_reg_mu);
	w->reg_next = gl_reg;
	gl_reg = w;
	pthread_mutex_unlock(&gl_reg_mu);
}

static void gl_reg_del(struct gl_worker *w)
{
	pthread_mutex_lock(&gl_reg_mu);
	for (struct gl_worker **p = &gl_reg; *p; p = &(*p)->reg_next)
		if (*p == w) {
			*p = w->reg_next;
			break;
		}
	pthread_mutex_unlock(&gl_reg_mu);
}

/* The worker state of config c and worker index worker, or NULL. Used on that worker's loop
 * thread, where its worker_free runs too: it stays valid for the caller's synchronous use. */
static struct gl_worker *gl_reg_find(const struct greylist_config *c, int worker)
{
	struct gl_worker *w;

	pthread_mutex_lock(&gl_reg_mu);
	for (w = gl_reg; w && !(w->cfg == c && w->worker == worker); w = w->reg_next)
		;
	pthread_mutex_unlock(&gl_reg_mu);
	return w;
}

bool greylist_message_wanted(const struct mx_config *cfg)
{
	return config_rules_engine_wanted(cfg) && (cfg->rules.actions.greylist > 0 ||
	    recipient_actions_greylist(cfg->rules.recipient_actions.v, cfg->rules.recipient_actions.n));
}

static int gl_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct greylist_config *c = &cfg->greylist;
	struct gl_worker *w;

	*wstate = NULL;
	/* the store serves greylisting at RCPT and the rules engine's greylist action */
	if (!c->enabled && !greylist_message_wanted(cfg))
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = c;
	w->worker = worker;
	w->ipv6_prefix = cfg->limits.client_ipv6_prefix;
	w->local = gl_table_get((size_t)c->max_keys, worker);
	if (w->local == NULL)
		goto fail;
	if (store_kind_of(c->store) == STORE_REDIS) {
		w->rs = redis_store_new(loop, c->store, c->timeout, worker);
		if (w->rs == NULL)
			goto fail;
		redis_store_set_name(w->rs, "greylist");
		w->lua = redis_store_add_script(w->rs, gl_lua);
		w->lua_merge = redis_store_add_script(w->rs, gl_lua_merge);
		w->lua_trap = redis_store_add_script(w->rs, gl_lua_trap);
		w->loop = loop;
		/* on failure a verb's Redis change does not wait for this worker's queue */
		mailbox_open(&w->mb, &gl_board, loop, gl_write_run, w);
	} else if (store_kind_of(c->store) == STORE_LMDB) {
		static const char *const prefixes[] = { "gl:", GL_AWL_LMDB, GREYLIST_IP_LMDB,
			GL_MSG_LMDB, NULL };
		struct lmdb_writer_config wc = {
			.sweep_prefixes = prefixes, .expired = gl_expired, .rank = gl_rank,
			.merge = gl_merge, .name = "greylist",
		};

		w->st = lmdb_store_open(store_lmdb_dir(c->store), 0);
		if (w->st == NULL || (w->wr = lmdb_writer_new(w->st, loop, &wc)) == NULL)
			goto fail;
		w->loop = loop;
		/* on failure the verbs write beside this worker (greylist_write_post) */
		mailbox_open(&w->mb, &gl_board, loop, gl_write_run, w);
	}
	gl_reg_add(w);
	*wstate = w;
	return 0;
fail:
	log_event(LOG_LVL_ERROR, NULL, "event=module_error module=greylist worker=%d reason=init", worker);
	redis_store_free(w->rs);
	lmdb_store_close(w->st);
	free(w);
	return -1;
}

static void gl_worker_free(void *wstate)
{
	struct gl_worker *w = wstate;

	bool live;

	if (w == NULL)
		return;
	gl_reg_del(w);
	/* off the board first; the verbs' writes still in the mailbox go into the writer's
	 * last batch */
	live = mailbox_leave(&w->mb);
	if (live)
		mailbox_drain(&w->mb);
	redis_store_free(w->rs);
	lmdb_writer_free(w->wr);       /* the last triplets are written now */
	lmdb_store_close(w->st);
	if (live)
		mailbox_close(&w->mb, gl_worker_closed);
	else
		free(w);
}

static void gl_worker_closed(void *owner)
{
	free(owner);
}

/* ---- the control verbs' LMDB writes (greylist_write_post) --------------------------------
 * Every worker with an LMDB writer is on gl_board, with a mailbox on its loop: a verb's
 * write is handed to each and queued in its writer after what the worker has queued, then
 * the batch is pushed to the pool; the verb completes when every batch is applied. So a
 * worker's update in flight lands before the verb's, never over it, and the worker's next
 * read (its queue first) sees the verb's. */

static void gl_write_part_end(struct greylist_write *gw)
{
	if (atomic_fetch_sub(&gw->parts, 1) == 1)
		gw->done(gw);
}

static void gl_write_lmdb_cb(void *arg, int status)
{
	struct greylist_write *gw = arg;

	if (status != 0)
		atomic_fetch_add(&gw->failed, 1);
	gl_write_part_end(gw);
}

static pthread_mutex_t gl_seen_mu = PTHREAD_MUTEX_INITIALIZER;

/* A client record's verb (gw->want_seen): the record w has for gw's key before the verb's
 * write, its queue first, kept in gw when it is live, not the verb's own record and the
 * newest seen so far. */
static void gl_write_see(struct gl_worker *w, struct greylist_write *gw)
{
	unsigned char val[GREYLIST_RECORD_LEN];
	size_t len = 0;
	uint64_t since, exp, kept_since = 0;

	if (lmdb_writer_get_merged(w->wr, gw->key, strlen(gw->key), val, sizeof(val), &len) != 1 ||
	    greylist_ip_decode(val, len, gl_wall_ms(), &since, &exp) == GREYLIST_IP_NONE ||
	    (len == gw->vlen && memcmp(val, gw->val, len) == 0))
		return;         /* none, or the verb's own (another worker's batch applied first) */
	pthread_mutex_lock(&gl_seen_mu);
	if (gw->seen_len > 0)
		greylist_ip_decode(gw->seen, gw->seen_len, 0, &kept_since, &exp);
	if (gw->seen_len == 0 || since > kept_since) {
		memcpy(gw->seen, val, len);
		gw->seen_len = len;
	}
	pthread_mutex_unlock(&gl_seen_mu);
}

/* Does gw's part on w's loop (the mailbox's run): an LMDB write after what w queued, or the
 * Redis writes of the key w queued forgotten. A request for the other kind of store (a
 * reload between the two) is no part of w's. */
static void gl_write_run(void *owner, void *msg)
{
	struct gl_worker *w = owner;
	struct greylist_write *gw = msg;
	int rc;

	if (gw->redis || w->wr == NULL) {
		if (gw->redis && w->rs != NULL)
			redis_store_write_forget(w->rs, gw->key, strlen(gw->key));
		gl_write_part_end(gw);
		return;
	}
	if (gw->want_seen)
		gl_write_see(w, gw);
	if (gw->vlen == 0 && gw->del_only != 0) {
		/* the condition goes with the delete and is checked against the record inside the
		 * batch's write transaction (greylist_ip_del_merge): what this worker sees now
		 * (its queue, then the map) misses another worker's write queued before this
		 * batch — a trap there, and the map's allow record here, was deleted by disallow */
		uint64_t op[2] = { GREYLIST_IP_DEL_MARK, (uint64_t)gw->del_only };

		rc = lmdb_writer_merge(w->wr, gw->key, strlen(gw->key), op, sizeof(op));
	} else {
		rc = gw->vlen ? lmdb_writer_put(w->wr, gw->key, strlen(gw->key), gw->val, gw->vlen) :
		    lmdb_writer_del(w->wr, gw->key, strlen(gw->key));
	}

	if (rc < 0)
		atomic_fetch_add(&gw->failed, 1);
	rc = lmdb_writer_flush(w->wr, gl_write_lmdb_cb, gw);
	if (rc == 0)
		return;
	if (rc < 0)
		atomic_fetch_add(&gw->failed, 1);
	gl_write_part_end(gw);
}

size_t greylist_write_post(struct greylist_write *gw)
{
	size_t n, full;

	atomic_init(&gw->failed, 0);
	atomic_init(&gw->parts, 1);     /* held while posting */
	n = mailbox_post_all(&gl_board, gw, &gw->parts, &full);
	atomic_fetch_add(&gw->failed, (int)full);
	gw->workers = n + full;
	if (n == 0 && full == 0) {
		atomic_store(&gw->parts, 0);
		return 0;               /* done is not called: the caller writes itself */
	}
	gl_write_part_end(gw);
	return gw->workers;
}

static unsigned gl_stages(void *wstate)
{
	struct gl_worker *w = wstate;

	if (w == NULL || !w->cfg->enabled)
		return 0;               /* the store for the rules engine's greylist action alone */
	return (1u << HOOK_RCPT) | (w->cfg->null_sender == GREYLIST_NULL_DATA ||
	    w->cfg->defer_at == GREYLIST_NULL_DATA ? 1u << HOOK_DATA : 0);
}

/* The recipient a call judges: the RCPT's candidate, or at DATA (the null sender under
 * null_sender: data, another under defer_at: data) the transaction's first recipient (the
 * first the backend accepted). NULL: nothing to judge. */
static const char *gl_call_rcpt(const struct greylist_config *c, const struct hook_env *env,
    enum hook_stage st)
{
	bool null = env->mail_from != NULL && env->mail_from[0] == '\0';
	bool at_data = (null ? c->null_sender : c->defer_at) == GREYLIST_NULL_DATA;

	if (st == HOOK_RCPT)
		return at_data ? NULL : env->cur_rcpt;
	if (st == HOOK_DATA && at_data && env->nrcpts > 0)
		return env->rcpts[0].addr;
	return NULL;
}

/* The recipient a decision's log line names: at DATA the first (gl_call_rcpt). */
static const char *gl_log_rcpt(struct hook_call *call)
{
	const struct hook_env *env = hook_call_env(call);

	if (hook_call_stage(call) == HOOK_DATA)
		return env->nrcpts > 0 ? env->rcpts[0].addr : "";
	return env->cur_rcpt ? env->cur_rcpt : "";
}

/* The sender and the recipient a decision's log line names, made safe for the line. */
static void gl_log_names(struct hook_call *call, char *from, size_t fromlen, char *rcpt,
    size_t rcptlen)
{
	const struct hook_env *env = hook_call_env(call);

	ratelimit_safe_copy(env->mail_from ? env->mail_from : "", from, fromlen);
	ratelimit_safe_copy(gl_log_rcpt(call), rcpt, rcptlen);
}

static uint64_t gl_timeout_ms(void *wstate)
{
	struct gl_worker *w = wstate;

	return w ? w->cfg->timeout * 2 + 100 : 0;
}

/* ---- what greylisting decided: /metrics and the log ------------------------------------
 * Per recipient, one of: greylisted (451), passed (its triplet: a retry after the delay, or
 * one that passed before) or allowed without a triplet, by reason. Process-wide, kept
 * across reloads, any thread. */
enum gl_count {
	GL_COUNT_GREYLISTED = 0,
	GL_COUNT_PASSED,
	GL_COUNT_TRAPPED,           /* clients trapped (a trap address, or the control verb) */
	GL_COUNT_TRAP_REFUSED,      /* recipients refused: their client is trapped */
	/* allowed, by reason: the order of gl_allow_reasons */
	GL_ALLOW_ALLOW,             /* greylist.allow */
	GL_ALLOW_NAMES,             /* allow_names */
	GL_ALLOW_NAMES_FILE,        /* allow_names_file */
	GL_ALLOW_SKIP_GOOD,         /* skip_good: REP_GOOD, REP_ALLOW or DNSBL_ALLOW */
	GL_ALLOW_AUTO,              /* auto_allow_clients */
	GL_ALLOW_AUTH,              /* an authenticated client (SMTP AUTH) */
	GL_ALLOW_RUNTIME,           /* mxgatectl greylist allow IP */
	GL_COUNT__N
};
static atomic_ullong gl_counts[GL_COUNT__N];
static const char *const gl_allow_reasons[GL_COUNT__N] = {
	[GL_ALLOW_ALLOW] = "allow", [GL_ALLOW_NAMES] = "allow_names",
	[GL_ALLOW_NAMES_FILE] = "allow_names_file", [GL_ALLOW_SKIP_GOOD] = "skip_good",
	[GL_ALLOW_AUTO] = "auto_allow", [GL_ALLOW_AUTH] = "auth", [GL_ALLOW_RUNTIME] = "runtime",
};

static void gl_count(enum gl_count c)
{
	atomic_fetch_add_explicit(&gl_counts[c], 1, memory_order_relaxed);
}

/* The families' collector; arg: GL_COUNT_GREYLISTED, GL_COUNT_PASSED, or GL_ALLOW_ALLOW for
 * the labelled one (every reason, from the start). */
static void gl_collect(void *arg, struct metrics_out *out)
{
	intptr_t which = (intptr_t)arg;

	if (which != GL_ALLOW_ALLOW) {
		metrics_out_sample(out, NULL, NULL, (double)atomic_load(&gl_counts[which]));
		return;
	}
	for (int i = GL_ALLOW_ALLOW; i < GL_COUNT__N; i++)
		metrics_out_sample(out, "reason", gl_allow_reasons[i], (double)atomic_load(&gl_counts[i]));
}

/* ---- fail-open: greylisting could not decide --------------------------------------------
 * A recipient is let through when greylisting cannot decide (never refuse mail for its own
 * failure), but not silently: each cause is counted (mxgate_greylist_errors_total{reason})
 * and logged as event=greylist_error at most once a minute per cause, as the LMDB store
 * logs its write errors (it can repeat for every RCPT). Process-wide, any thread. */
enum gl_error {
	GL_ERR_STORE_READ = 0,      /* LMDB: the read of the triplet's record failed */
	GL_ERR_NO_MEMORY,           /* the local table (or the session's state) could not grow */
	GL_ERR_TRIPLET,             /* no triplet could be made (an address past its bound) */
	GL_ERR__N
};
static const char *const gl_error_reasons[GL_ERR__N] = {
	[GL_ERR_STORE_READ] = "store_read", [GL_ERR_NO_MEMORY] = "no_memory",
	[GL_ERR_TRIPLET] = "triplet",
};
static const char *const gl_error_texts[GL_ERR__N] = {
	[GL_ERR_STORE_READ] = "the LMDB map could not be read (damaged or unreadable: stop mxgate "
	    "and move it away)",
	[GL_ERR_NO_MEMORY] = "out of memory",
	[GL_ERR_TRIPLET] = "no triplet could be made of the client, sender and recipient",
};
static struct log_rated gl_errors[GL_ERR__N];
#define GL_ERROR_LOG_EVERY_MS 60000

/* Lets the recipient through (the call completes with no objection) after counting the
 * cause and logging it, at most once a minute per cause (errors= the total so far). */
static void gl_fail_open(struct hook_call *call, enum gl_error e, const char *store)
{
	struct hook_env *env = hook_call_env(call);
	bool log_now;
	unsigned long long n = log_rated_note(&gl_errors[e], GL_ERROR_LOG_EVERY_MS, &log_now);
	char from[200], rcpt[200];

	if (log_now) {
		/* at DATA the triplet's recipient is the first (gl_call_rcpt), not cur_rcpt */
		gl_log_names(call, from, sizeof(from), rcpt, sizeof(rcpt));
		log_event(LOG_LVL_WARNING, env->session_id, "event=greylist_error reason=%s store=%s "
		    "client=%s from=<%s> rcpt=<%s> action=pass errors=%llu detail=\"%s\"",
		    gl_error_reasons[e], store, env->client_ip, from, rcpt, n, gl_error_texts[e]);
	}
	hook_call_done(call, NULL);
}

static void gl_error_collect(void *arg, struct metrics_out *out)
{
	(void)arg;
	for (int i = 0; i < GL_ERR__N; i++)
		metrics_out_sample(out, "reason", gl_error_reasons[i], (double)atomic_load(&gl_errors[i].count));
}

static void gl_msg_collect(void *arg, struct metrics_out *out);

void greylist_metrics(void)
{
	metrics_register_family("greylist_errors_total",
	    "recipients greylisting let through because it could not decide, by reason (event=greylist_error)",
	    "counter", gl_error_collect, NULL);
	metrics_register_family("greylist_greylisted_total",
	    "recipients greylisting deferred with 451 (a new triplet, or a retry before the delay)",
	    "counter", gl_collect, (void *)(intptr_t)GL_COUNT_GREYLISTED);
	metrics_register_family("greylist_passed_total",
	    "recipients whose greylisting triplet passed (a retry after the delay, or a triplet that passed before)",
	    "counter", gl_collect, (void *)(intptr_t)GL_COUNT_PASSED);
	metrics_register_family("greylist_trapped_total",
	    "clients trapped: a greylisted client sent RCPT to a greylist.traps address (event=greylist_trap), or mxgatectl greylist trap",
	    "counter", gl_collect, (void *)(intptr_t)GL_COUNT_TRAPPED);
	metrics_register_family("greylist_trap_refused_total",
	    "recipients refused with 550 because their client is trapped (event=greylist_trapped)",
	    "counter", gl_collect, (void *)(intptr_t)GL_COUNT_TRAP_REFUSED);
	metrics_register_family("greylist_messages_total",
	    "messages the rules engine's greylist action (rules.actions.greylist) sent to the greylist store, by result: deferred (451), passed (delivered), error (rules.greylist_on_error)",
	    "counter", gl_msg_collect, NULL);
	metrics_register_family("greylist_allowed_total",
	    "recipients greylisting let through without a triplet, by reason (event=greylist_allow)",
	    "counter", gl_collect, (void *)(intptr_t)GL_ALLOW_ALLOW);
}

/* Completes the call: pass, or 451 4.7.1 with the wait and a log line. */
static void gl_finish(struct hook_call *call, bool pass, uint64_t wait_s, const char *store)
{
	struct hook_env *env = hook_call_env(call);
	struct verdict v;

	gl_count(pass ? GL_COUNT_PASSED : GL_COUNT_GREYLISTED);
	if (pass) {
		hook_call_done(call, NULL);
		return;
	}
	char from[200], rcpt[200];

	gl_log_names(call, from, sizeof(from), rcpt, sizeof(rcpt));
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=greylist client=%s from=<%s> rcpt=<%s> wait=%llu store=%s%s", env->client_ip,
	    from, rcpt, (unsigned long long)wait_s, store,
	    hook_call_stage(call) == HOOK_DATA ? " stage=data" : "");
	verdict_set(&v, VERDICT_TEMPFAIL, 451, "greylist",
	    "4.7.1 greylisted, please try again in %llu seconds", (unsigned long long)wait_s);
	v.not_an_error = true;    /* every new sender gets it: not a client error */
	hook_call_done(call, &v);
}

/* Completes the call with a pass that needed no triplet (reason r), logged at info as
 * postgrey logs "action=pass, reason=client whitelist": one line per RCPT, the same event
 * for every reason; what (may be NULL) is the reason's detail (the network auto-allowed,
 * the symbol skip_good found), written as "key=value". */
static void gl_allow(struct hook_call *call, enum gl_count r, const char *what)
{
	struct hook_env *env = hook_call_env(call);
	const char *name = env->client_name_status == HOOK_NAME_OK ? env->client_name : NULL;
	char from[200], rcpt[200], host[260];

	/* a trap check alone (defer_at: data's RCPT of a trap address): the pass is the one
	 * logged and counted at DATA, where the transaction is judged */
	if (hook_call_stage(call) == HOOK_RCPT && gl_call_rcpt(&env->cfg->greylist, env, HOOK_RCPT) == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	gl_count(r);
	gl_log_names(call, from, sizeof(from), rcpt, sizeof(rcpt));
	ratelimit_safe_copy(name ? name : "unknown", host, sizeof(host));
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=greylist_allow reason=%s client=%s client_name=%s from=<%s> rcpt=<%s>%s%s",
	    gl_allow_reasons[r], env->client_ip, host, from, rcpt, what ? " " : "", what ? what : "");
	hook_call_done(call, NULL);
}

void greylist_count_trapped(void)
{
	gl_count(GL_COUNT_TRAPPED);
}

/* A trapped client's recipient refused: 550 5.7.1, held trap_delay (the tarpit). spamd
 * blacklists a trapped host for trapexp: tarpitted, then 550 (450 only with its -4), so it
 * never reaches the real server; a 4xx would only invite the spammer's retries. left_ms: how
 * long the trap lasts yet. */
static void gl_trap_refuse(struct gl_worker *w, struct hook_call *call, uint64_t left_ms,
    const char *store)
{
	struct hook_env *env = hook_call_env(call);
	uint64_t left_s = (left_ms + 999) / 1000;
	char from[200], rcpt[200];
	struct verdict v;

	gl_count(GL_COUNT_TRAP_REFUSED);
	gl_log_names(call, from, sizeof(from), rcpt, sizeof(rcpt));
	log_event(LOG_LVL_INFO, env->session_id,
	    "event=greylist_trapped client=%s from=<%s> rcpt=<%s> left=%llu store=%s%s", env->client_ip,
	    from, rcpt, (unsigned long long)left_s, store,
	    hook_call_stage(call) == HOOK_DATA ? " stage=data" : "");
	verdict_set(&v, VERDICT_REJECT, 550, "greytrap",
	    "5.7.1 %s has sent mail to a spam trap here: refused for %llu more seconds",
	    env->client_ip, (unsigned long long)left_s);
	v.delay_ms = w->cfg->trap_delay > 600000 ? 600000 : (uint32_t)w->cfg->trap_delay;
	hook_call_done(call, &v);
}

/* A greylisted client mailed a trap address: it is trapped now (its record written by the
 * caller), logged and counted; the RCPT itself gets greylisting's 451, as any new triplet's
 * (spamd answers the trap's RCPT as it answers a greylisted host: nothing tells the sender). */
static void gl_trap_now(struct gl_worker *w, struct hook_call *call, const char *store)
{
	struct hook_env *env = hook_call_env(call);
	char from[200], rcpt[200];

	gl_count(GL_COUNT_TRAPPED);
	gl_log_names(call, from, sizeof(from), rcpt, sizeof(rcpt));
	log_event(LOG_LVL_WARNING, env->session_id,
	    "event=greylist_trap client=%s from=<%s> rcpt=<%s> ttl=%llu store=%s", env->client_ip,
	    from, rcpt, (unsigned long long)(w->cfg->trap_ttl / 1000), store);
	gl_finish(call, false, (w->cfg->delay + 999) / 1000, store);
}

/* The client's own record decides (allowed: it passes; trapped: refused): true when the call
 * is completed. */
static bool gl_client_decided(struct gl_worker *w, struct hook_call *call, int state,
    uint64_t left_ms, const char *store)
{
	if (state == GREYLIST_IP_ALLOWED) {
		gl_allow(call, GL_ALLOW_RUNTIME, NULL);
		return true;
	}
	if (state == GREYLIST_IP_TRAPPED) {
		gl_trap_refuse(w, call, left_ms, store);
		return true;
	}
	return false;
}

/* The local table's client record: read (set 0), written (set TRAPPED/ALLOWED, for ttl_ms)
 * or deleted (set -1). */
struct gl_ip_arg { int set; uint64_t ttl_ms, wall_ms; int state; uint64_t left_ms; };

static int gl_ip_local_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	struct gl_ip_arg *a = arg;
	uint64_t since;

	a->state = GREYLIST_IP_NONE;
	a->left_ms = 0;
	if (exists && rec->expires_ns > now_ns) {
		a->state = greylist_ip_local_state(rec->val, &since);
		a->left_ms = (rec->expires_ns - now_ns) / 1000000;
	}
	if (a->set > 0) {
		rec->val = greylist_ip_local_val(a->set, a->wall_ms);
		rec->expires_ns = now_ns + a->ttl_ms * 1000000;
	} else if (a->set < 0) {
		memset(rec, 0, sizeof(*rec));
	}
	return a->state;
}

/* See gl_ip_local_cb; returns the state the record had (GREYLIST_IP_NONE when absent). */
int greylist_ip_local(const char *client, int set, uint64_t ttl_ms, uint64_t *left_ms)
{
	struct local_table *t = greylist_local_table();
	struct gl_ip_arg a = { set, ttl_ms, gl_wall_ms(), GREYLIST_IP_NONE, 0 };
	char key[sizeof(GREYLIST_IP_PREFIX) + 80];
	int rc;

	*left_ms = 0;
	if (t == NULL)
		return GREYLIST_IP_NONE;
	snprintf(key, sizeof(key), "%s%s", GREYLIST_IP_PREFIX, client);
	rc = local_table_update(t, key, uv_hrtime(), set > 0, gl_ip_local_cb, &a);
	*left_ms = a.left_ms;
	return rc < 0 ? GREYLIST_IP_NONE : rc;
}

/* A recipient of an auto-allowed client network (auto_allow_clients) let through. */
static void gl_allow_net(struct hook_call *call, const char *net)
{
	char what[GL_NET_MAX + 8];

	snprintf(what, sizeof(what), "net=%s", net);
	gl_allow(call, GL_ALLOW_AUTO, what);
}

/* Decides key (a triplet's or a message's: GL_MSG_PREFIX) in the process-wide table at
 * now_ns; with Redis configured (it gave no answer) the decision is also queued for Redis
 * (gl_lua_merge), so it outlives the outage. 1 pass, 0 greylisted (a->wait_s), -1 out of
 * memory. */
static int gl_local_decide(struct gl_worker *w, const char *key, uint64_t now_ns,
    struct gl_local_arg *a)
{
	int rc = local_table_update(w->local, key, now_ns, true, gl_local_cb, a);

	if (rc >= 0 && w->rs) {
		uint64_t age_ms = now_ns / 1000000 - a->first_ms;
		char a1[24], a2[4], a3[24], a4[24];
		const char *argv[5] = { key, a1, a2, a3, a4 };

		snprintf(a1, sizeof(a1), "%llu", (unsigned long long)(gl_wall_ms() - age_ms));
		snprintf(a2, sizeof(a2), "%d", a->passed ? 1 : 0);
		snprintf(a3, sizeof(a3), "%llu", (unsigned long long)w->cfg->retry_window);
		snprintf(a4, sizeof(a4), "%llu", (unsigned long long)a->expire_ms);
		/* a full queue is counted and logged by the store */
		redis_store_write(w->rs, w->lua_merge, 1, 4, argv, NULL, NULL, NULL);
	}
	return rc;
}

/* Decides in the process-wide table (monotonic clock). With Redis configured (it gave no
 * answer), the decision is also queued for Redis (gl_lua_merge), so it outlives the outage. */
static void gl_check_local(struct gl_worker *w, struct hook_call *call, const char *key,
    const char *net, const char *ip, bool trap_hit)
{
	const struct greylist_config *c = w->cfg;
	struct gl_local_arg a = { c, c->expire, 0, 0, false, false };
	struct gl_awl_arg aa = { c->auto_allow_expire, (uint64_t)c->auto_allow_clients, 0, 0 };
	char awl_key[sizeof(GREYLIST_AWL_PREFIX) + GL_NET_MAX];
	uint64_t now_ns = uv_hrtime(), left_ms = 0;
	int rc = greylist_ip_local(ip, 0, 0, &left_ms);

	if (gl_client_decided(w, call, rc, left_ms, "local"))
		return;
	if (c->auto_allow_clients > 0) {
		snprintf(awl_key, sizeof(awl_key), "%s%s", GREYLIST_AWL_PREFIX, net);
		if (local_table_update(w->local, awl_key, now_ns, false, gl_awl_local_cb, &aa) == 1) {
			gl_allow_net(call, net);
			return;
		}
	}
	if (trap_hit) {
		greylist_ip_local(ip, GREYLIST_IP_TRAPPED, c->trap_ttl, &left_ms);
		if (w->rs) {
			char k[sizeof(GREYLIST_IP_PREFIX) + 80], a1[24], a2[24];
			const char *argv[3] = { k, a1, a2 };

			snprintf(k, sizeof(k), "%s%s", GREYLIST_IP_PREFIX, ip);
			snprintf(a1, sizeof(a1), "%llu", (unsigned long long)gl_wall_ms());
			snprintf(a2, sizeof(a2), "%llu", (unsigned long long)c->trap_ttl);
			/* for every node once Redis is back; a full queue is counted and logged by
			 * the store */
			redis_store_write(w->rs, w->lua_trap, 1, 2, argv, NULL, NULL, NULL);
		}
		gl_trap_now(w, call, "local");
		return;
	}
	if (key == NULL) {              /* a trap check alone (defer_at: data's RCPT) */
		hook_call_done(call, NULL);
		return;
	}
	rc = gl_local_decide(w, key, now_ns, &a);
	if (rc == 1 && a.retried && c->auto_allow_clients > 0) {
		aa.add = 1;
		if (local_table_update(w->local, awl_key, now_ns, true, gl_awl_local_cb, &aa) == 1 &&
		    aa.count == aa.need)
			gl_awl_log(call, net, aa.count, "local");
	}
	if (rc < 0) {
		gl_fail_open(call, GL_ERR_NO_MEMORY, "local");  /* not counted as passed */
		return;
	}
	gl_finish(call, rc != 0, a.wait_s, "local");
}

struct local_table *greylist_local_table(void)
{
	struct local_table *t;

	pthread_mutex_lock(&gl_table_mu);
	t = gl_table;
	pthread_mutex_unlock(&gl_table_mu);
	return t;
}

int greylist_lmdb_key(size_t max_key, const char *triplet, char *out, size_t outlen)
{
	size_t n = strlen(triplet);

	if (3 + n <= max_key) {
		if (3 + n + 1 > outlen)
			return -1;
		memcpy(out, "gl:", 3);
		memcpy(out + 3, triplet, n + 1);
		return 0;
	}
	unsigned char md[SHA256_DIGEST_LENGTH];

	if (outlen < 4 + 2 * sizeof(md) + 1)
		return -1;
	SHA256((const unsigned char *)triplet, n, md);
	memcpy(out, "gl:#", 4);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(out + 4 + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* Decides key (an LMDB key: a triplet's or a message's) from this worker's queued writes or
 * the map (inline read) at now (wall clock ms) and queues the new state. 1 pass, 0
 * greylisted (*wait_s), -1 the read failed; *was_passed: it had passed before. */
static int gl_lmdb_decide(struct gl_worker *w, const char *key, uint64_t now, uint64_t expire_ms,
    uint64_t *wait_s, bool *was_passed)
{
	unsigned char rec[GREYLIST_RECORD_LEN];
	struct greylist_entry e;
	uint64_t keep_ms;
	size_t len = 0;
	bool exists, pass;
	int rc = lmdb_writer_get(w->wr, key, strlen(key), rec, sizeof(rec), &len);

	if (rc < 0)
		return -1;
	exists = rc == 1 && greylist_record_decode(rec, len, now, &e);
	*was_passed = exists && e.passed;
	pass = greylist_decide(&e, exists, now, w->cfg->delay, w->cfg->retry_window, expire_ms,
	    wait_s, &keep_ms);
	greylist_record_encode(&e, now + keep_ms, rec);
	lmdb_writer_put(w->wr, key, strlen(key), rec, sizeof(rec));
	return pass ? 1 : 0;
}

/* Decides from this worker's queued writes or the map (inline read), queues the new state. */
static void gl_check_lmdb(struct gl_worker *w, struct hook_call *call, const char *triplet,
    const char *net, const char *ip, bool trap_hit)
{
	const struct greylist_config *c = w->cfg;
	unsigned char rec[GREYLIST_RECORD_LEN];
	uint64_t now = gl_wall_ms(), wait_s, count = 0;
	char key[GL_KEY_MAX], awl_key[sizeof(GL_AWL_LMDB) + GL_NET_MAX];
	struct gl_awl_op op = { now + c->auto_allow_expire, 0, 0 };
	size_t len = 0;
	bool pass, was_passed, logged;
	int rc;
	char ip_key[sizeof(GREYLIST_IP_LMDB) + 80];
	uint64_t since, exp;

	snprintf(ip_key, sizeof(ip_key), "%s%s", GREYLIST_IP_LMDB, ip);
	/* with its queued merges: a trap this worker made (greylist_ip_new_merge), a verb's
	 * conditional delete */
	if (lmdb_writer_get_merged(w->wr, ip_key, strlen(ip_key), rec, sizeof(rec), &len) == 1) {
		int state = greylist_ip_decode(rec, len, now, &since, &exp);

		if (gl_client_decided(w, call, state, exp > now ? exp - now : 0, "lmdb"))
			return;
	}
	if (c->auto_allow_clients > 0) {
		snprintf(awl_key, sizeof(awl_key), "%s%s", GL_AWL_LMDB, net);
		if (lmdb_writer_get(w->wr, awl_key, strlen(awl_key), rec, sizeof(rec), &len) == 1 &&
		    greylist_awl_decode(rec, len, now, &count, &logged) &&
		    count >= (uint64_t)c->auto_allow_clients) {
			/* not logged yet: once (the record says so after the batch; until then the
			 * network this worker logged last) */
			if (!logged && strcmp(w->awl_logged, awl_key) != 0) {
				gl_awl_log(call, net, count, "lmdb");
				snprintf(w->awl_logged, sizeof(w->awl_logged), "%s", awl_key);
			}
			op.logged = 1;
			lmdb_writer_merge(w->wr, awl_key, strlen(awl_key), &op, sizeof(op));  /* renewed */
			gl_allow_net(call, net);
			return;
		}
	}
	if (trap_hit) {
		/* only where there is still no record when the batch is applied: an allow (or a
		 * trap) another worker or process wrote after the read above stands — a put wrote
		 * the trap over it (greylist_ip_new_merge; this worker's next read sees the trap) */
		uint64_t op[4] = { GREYLIST_IP_NEW_MARK, GREYLIST_IP_TRAPPED, now, now + c->trap_ttl };

		lmdb_writer_merge(w->wr, ip_key, strlen(ip_key), op, sizeof(op));
		gl_trap_now(w, call, "lmdb");
		return;
	}
	if (triplet == NULL) {          /* a trap check alone (defer_at: data's RCPT) */
		hook_call_done(call, NULL);
		return;
	}
	if (greylist_lmdb_key(lmdb_store_max_key(w->st), triplet, key, sizeof(key)) < 0 ||
	    (rc = gl_lmdb_decide(w, key, now, w->cfg->expire, &wait_s, &was_passed)) < 0) {
		gl_fail_open(call, GL_ERR_STORE_READ, "lmdb");   /* never refuse mail for it */
		return;
	}
	pass = rc == 1;
	if (pass && !was_passed && c->auto_allow_clients > 0) {
		op.add = 1;             /* counted in the batch */
		lmdb_writer_merge(w->wr, awl_key, strlen(awl_key), &op, sizeof(op));
	}
	gl_finish(call, pass, wait_s, "lmdb");
}

/* The Redis decision, or the local table when Redis gave none. */
static void gl_redis_cb(void *arg, const redisReply *reply)
{
	struct gl_session *s = arg;
	struct hook_call *call = s->call;

	bool pass;
	uint64_t wait_s;

	s->req = NULL;
	s->call = NULL;
	if (greylist_parse_reply(reply, &pass, &wait_s) == 0) {
		const char *net = s->awl_key + sizeof(GREYLIST_AWL_PREFIX) - 1;

		long long what = reply->elements == 3 ? reply->element[2]->integer : 0;

		if (what == 2) {
			gl_allow_net(call, net);        /* passed as an allowed network */
			return;
		}
		if (what == 3) {                /* the client's record: allowed */
			gl_allow(call, GL_ALLOW_RUNTIME, NULL);
			return;
		}
		if (what == 4) {                /* the client's record: trapped (wait: what is left) */
			gl_trap_refuse(s->w, call, wait_s * 1000, "redis");
			return;
		}
		if (what == 5) {                /* trapped now */
			gl_trap_now(s->w, call, "redis");
			return;
		}
		if (reply->elements == 3 && reply->element[2]->integer == 1)
			gl_awl_log(call, net, (uint64_t)s->w->cfg->auto_allow_clients, "redis");
		gl_finish(call, pass, wait_s, "redis");
		return;
	}
	gl_check_local(s->w, call, s->key[sizeof(GREYLIST_KEY_PREFIX) - 1] ? s->key : NULL,
	    s->awl_key + sizeof(GREYLIST_AWL_PREFIX) - 1, s->ip, s->trap_hit);
}

#define GL_PREFIX GREYLIST_KEY_PREFIX  /* local table and Redis keys */

/* spf_key: when SPF passed for this transaction (the SPF_PASS symbol filters/spf.c set at
 * MAIL, whose description is the domain it checked), the triplet's network becomes
 * "spf:<domain>", and so does the network auto_allow_clients counts. Without a pass the
 * triplet is left as it is. 0, or -1 (too long: not greylisted, as any triplet that does
 * not fit). */
static int gl_spf_key(const struct hook_env *env, char *triplet, size_t cap, char *net, size_t netcap)
{
	const struct hook_symbol *y = hook_env_find_symbol(env, "SPF_PASS");
	const char *bar = strchr(triplet, '|');
	char dom[256], rest[GL_KEY_MAX];

	if (y == NULL || y->desc == NULL || y->desc[0] == '\0' || bar == NULL)
		return 0;
	gl_lower(dom, sizeof(dom), y->desc);
	snprintf(rest, sizeof(rest), "%s", bar);
	if ((size_t)snprintf(triplet, cap, "spf:%s%s", dom, rest) >= cap ||
	    (size_t)snprintf(net, netcap, "spf:%s", dom) >= netcap)
		return -1;
	return 0;
}

/* allow_names / allow_names_file: the name counts only when forward-confirmed (a PTR alone
 * is the sender's to choose). Which list let the client through (GL_ALLOW_NAMES,
 * GL_ALLOW_NAMES_FILE), or -1. */
static int gl_names_allow(const struct greylist_config *c, const struct hook_env *env,
    const struct sockaddr *sa)
{
	const char *name = env->client_name_status == HOOK_NAME_OK ? env->client_name : NULL;

	if (c->allow_names.n == 0 && c->allow_names_file.n == 0)
		return -1;
	if (greylist_names_match(&c->allow_names, name, sa))
		return GL_ALLOW_NAMES;
	if (greylist_names_match(&c->allow_names_file, name, sa))
		return GL_ALLOW_NAMES_FILE;
	return -1;
}

/* skip_good: the symbol that marks the client good (REP_GOOD, REP_ALLOW, DNSBL_ALLOW), or
 * NULL. */
static const char *gl_good_symbol(const struct hook_env *env)
{
	static const char *const good[] = { "REP_GOOD", "REP_ALLOW", DNSBL_ALLOW_SYMBOL };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (hook_env_find_symbol(env, good[i]))
			return good[i];
	return NULL;
}

static void gl_run(void *wstate, int slot, struct hook_call *call)
{
	struct gl_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	const struct greylist_config *c = w->cfg;
	const struct sockaddr *sa = (const struct sockaddr *)&env->client;
	const size_t plen = sizeof(GL_PREFIX) - 1;
	struct gl_session *s;
	char key[GL_KEY_MAX];           /* GL_PREFIX + triplet */
	const char *triplet = key + plen;
	char net[GL_NET_MAX];
	char a1[24], a2[24], a3[24], a4[24], a5[24], a7[24], what[64], ip[80];
	const char *argv[10], *good;
	int names;
	const char *rcpt = gl_call_rcpt(c, env, hook_call_stage(call));
	/* a trap address is looked for at each RCPT, also where the triplet waits for DATA */
	bool trap_hit = hook_call_stage(call) == HOOK_RCPT && c->traps.n > 0 &&
	    greylist_traps_match(&c->traps, env->cur_rcpt);

	memcpy(key, GL_PREFIX, plen);
	key[plen] = '\0';
	if ((rcpt == NULL && !trap_hit) || env->mail_from == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	/* a client let through without a triplet says why (event=greylist_allow, counted); an
	 * authenticated client's mail (SMTP AUTH) is never greylisted: its MUA would not retry */
	if (env->auth_user != NULL) {
		gl_allow(call, GL_ALLOW_AUTH, NULL);
		return;
	}
	if (c->allow.n && cfg_cidrlist_match(&c->allow, sa)) {
		gl_allow(call, GL_ALLOW_ALLOW, NULL);
		return;
	}
	if ((names = gl_names_allow(c, env, sa)) >= 0) {
		gl_allow(call, (enum gl_count)names, NULL);
		return;
	}
	if (c->skip_good && (good = gl_good_symbol(env)) != NULL) {
		snprintf(what, sizeof(what), "symbol=%s", good);
		gl_allow(call, GL_ALLOW_SKIP_GOOD, what);
		return;
	}
	/* a triplet that cannot be made (an address past the bound the SMTP limits already
	 * keep it under): let through, as a store error is */
	if ((rcpt != NULL && greylist_triplet(sa, c->prefix_v4, c->prefix_v6, env->mail_from, rcpt,
	    key + plen, sizeof(key) - plen) < 0) || gl_net(c, sa, net, sizeof(net)) < 0 ||
	    greylist_ip_client(sa, w->ipv6_prefix, ip, sizeof(ip)) < 0 ||
	    (rcpt != NULL && c->spf_key && gl_spf_key(env, key + plen, sizeof(key) - plen, net, sizeof(net)) < 0)) {
		gl_fail_open(call, GL_ERR_TRIPLET, w->wr ? "lmdb" : w->rs ? "redis" : "local");
		return;
	}
	if (w->wr) {
		gl_check_lmdb(w, call, rcpt ? triplet : NULL, net, ip, trap_hit);
		return;
	}
	if (w->rs == NULL) {
		gl_check_local(w, call, rcpt ? key : NULL, net, ip, trap_hit);
		return;
	}
	s = env->module_ctx[slot];
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL) {
			gl_fail_open(call, GL_ERR_NO_MEMORY, "redis");
			return;
		}
		s->w = w;
		env->module_ctx[slot] = s;
	}
	memcpy(s->key, key, strlen(key) + 1);   /* same size as key */
	snprintf(s->awl_key, sizeof(s->awl_key), "%s%s", GREYLIST_AWL_PREFIX, net);
	snprintf(s->ip_key, sizeof(s->ip_key), "%s%s", GREYLIST_IP_PREFIX, ip);
	s->ip = s->ip_key + sizeof(GREYLIST_IP_PREFIX) - 1;
	s->trap_hit = trap_hit;
	snprintf(a7, sizeof(a7), "%llu", (unsigned long long)c->trap_ttl);
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)c->delay);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)c->retry_window);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)c->expire);
	snprintf(a4, sizeof(a4), "%ld", c->auto_allow_clients);
	snprintf(a5, sizeof(a5), "%llu", (unsigned long long)c->auto_allow_expire);
	argv[0] = rcpt ? s->key : "";
	argv[1] = s->awl_key;
	argv[2] = s->ip_key;
	argv[3] = a1;
	argv[4] = a2;
	argv[5] = a3;
	argv[6] = a4;
	argv[7] = a5;
	argv[8] = trap_hit ? "1" : "0";
	argv[9] = a7;
	if (rcpt == NULL)
		s->key[plen] = '\0';   /* gl_redis_cb: no triplet */
	s->call = call;
	if (redis_store_eval(w->rs, w->lua, 3, 7, argv, NULL, gl_redis_cb, s, &s->req) == 0)
		return;
	s->call = NULL;
	gl_check_local(w, call, rcpt ? s->key : NULL, net, s->ip, trap_hit);
}

static void gl_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct gl_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	redis_req_cancel(s->req);
	free(s);
	env->module_ctx[slot] = NULL;
}

/* ---- message greylisting: the rules engine's greylist action ------------------------------
 * A message in rules.actions.greylist's band is one record of the greylist store, keyed by
 * its digest and decided as a triplet is (greylist_decide: delay, retry_window; a passed
 * record kept rules.greylist_expire, rspamd's day, not a triplet's greylist.expire),
 * with no allow lists, auto-allow or traps: the score chose it. A client `mxgatectl
 * greylist allow` passed passes here too (Redis: the check script's client record). */

static const char *const gl_msg_results[GREYLIST_MSG__N] = {
	[GREYLIST_MSG_DEFER] = "deferred", [GREYLIST_MSG_PASS] = "passed",
	[GREYLIST_MSG_ERROR] = "error",
};
static atomic_ullong gl_msg_counts[GREYLIST_MSG__N];

static void gl_msg_collect(void *arg, struct metrics_out *out)
{
	(void)arg;
	for (int i = 0; i < GREYLIST_MSG__N; i++)
		metrics_out_sample(out, "result", gl_msg_results[i], (double)atomic_load(&gl_msg_counts[i]));
}

const char *greylist_message_result_name(int result)
{
	return result >= 0 && result < GREYLIST_MSG__N ? gl_msg_results[result] : "?";
}

void greylist_message_digest(const char *sender, const char *const *rcpts, size_t n,
    const char *msg, size_t len, char hex[GREYLIST_DIGEST_HEX + 1])
{
	static const char x[] = "0123456789abcdef";
	const char *body = msg;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char addr[300];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char **low = n ? calloc(n, sizeof(*low)) : NULL;

	/* the body: what follows the header block's blank line (a message without one is all
	 * header: its whole text) */
	for (size_t i = 0; i < len; i++) {
		if (msg[i] != '\n')
			continue;
		if (i + 1 < len && msg[i + 1] == '\n') {
			body = msg + i + 2;
			break;
		}
		if (i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n') {
			body = msg + i + 3;
			break;
		}
	}
	if (ctx == NULL || (n && low == NULL))
		abort();                /* out of memory, as the rules job's copies */
	/* each recipient lower-cased once, then sorted: n log n (a selection that lowered
	 * every candidate on each pass took seconds for 20,000 recipients) */
	for (size_t i = 0; i < n; i++) {
		gl_lower(addr, sizeof(addr), rcpts[i] ? rcpts[i] : "");
		if ((low[i] = strdup(addr)) == NULL)
			abort();
	}
	if (n > 1)
		qsort(low, n, sizeof(*low), gl_traps_cmp);   /* strcmp of char * */
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	gl_lower(addr, sizeof(addr), sender && sender[0] ? sender : "<>");
	EVP_DigestUpdate(ctx, addr, strlen(addr) + 1);
	/* the recipients as a set (lower case, sorted): a retry may list them in another
	 * order (n is at most limits.max_recipients) */
	for (size_t i = 0; i < n; i++) {
		EVP_DigestUpdate(ctx, low[i], strlen(low[i]) + 1);
		free(low[i]);
	}
	free(low);
	EVP_DigestUpdate(ctx, "\n", 1);
	EVP_DigestUpdate(ctx, body, (size_t)(msg + len - body));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (size_t i = 0; i < GREYLIST_DIGEST_HEX / 2; i++) {
		hex[2 * i] = x[md[i] >> 4];
		hex[2 * i + 1] = x[md[i] & 15];
	}
	hex[GREYLIST_DIGEST_HEX] = '\0';
}

struct greylist_msg_req {
	struct gl_worker *w;
	struct redis_req *req;
	greylist_msg_cb cb;
	void *arg;
	uint64_t expire_ms;            /* rules.greylist_expire: a passed record's lifetime */
	char key[sizeof(GL_MSG_PREFIX) + GREYLIST_DIGEST_HEX];
};

static void gl_msg_answer(struct greylist_msg_answer *a, int result, uint64_t wait_s,
    const char *store)
{
	a->result = result;
	a->wait_s = wait_s;
	a->store = store;
	atomic_fetch_add_explicit(&gl_msg_counts[result], 1, memory_order_relaxed);
}

/* The local table decides key (store local, or Redis gave no answer); a passed record is
 * kept expire_ms (rules.greylist_expire). */
static void gl_msg_local(struct gl_worker *w, const char *key, uint64_t expire_ms,
    struct greylist_msg_answer *a)
{
	struct gl_local_arg la = { w->cfg, expire_ms, 0, 0, false, false };
	int rc = gl_local_decide(w, key, uv_hrtime(), &la);

	if (rc < 0)
		gl_msg_answer(a, GREYLIST_MSG_ERROR, 0, "local");
	else
		gl_msg_answer(a, rc ? GREYLIST_MSG_PASS : GREYLIST_MSG_DEFER, la.wait_s, "local");
}

static void gl_msg_redis_cb(void *arg, const redisReply *reply)
{
	struct greylist_msg_req *r = arg;
	struct greylist_msg_answer a = { 0 };
	greylist_msg_cb cb = r->cb;
	void *cbarg = r->arg;
	uint64_t wait_s;
	bool pass;

	r->req = NULL;
	if (greylist_parse_reply(reply, &pass, &wait_s) == 0)
		gl_msg_answer(&a, pass ? GREYLIST_MSG_PASS : GREYLIST_MSG_DEFER, pass ? 0 : wait_s, "redis");
	else
		gl_msg_local(r->w, r->key, r->expire_ms, &a);
	free(r);
	cb(cbarg, &a);
}

int greylist_message_check(const struct hook_env *env, const char *hex,
    struct greylist_msg_answer *a, greylist_msg_cb cb, void *arg, struct greylist_msg_req **reqp)
{
	struct gl_worker *w = gl_reg_find(&env->cfg->greylist, env->worker);
	const struct greylist_config *c;
	struct greylist_msg_req *r;
	char a1[24], a2[24], a3[24];
	const char *argv[10];
	/* a passed message's record: rules.greylist_expire (rspamd's day), not a triplet's
	 * greylist.expire */
	uint64_t expire_ms = env->cfg->rules.greylist_expire;

	*reqp = NULL;
	if (w == NULL) {                /* its worker_init failed: logged there */
		gl_msg_answer(a, GREYLIST_MSG_ERROR, 0, "none");
		return 1;
	}
	c = w->cfg;
	if (w->wr) {
		char key[sizeof(GL_MSG_LMDB) + GREYLIST_DIGEST_HEX];
		uint64_t wait_s = 0;
		bool was_passed;
		int rc;

		snprintf(key, sizeof(key), "%s%s", GL_MSG_LMDB, hex);
		rc = gl_lmdb_decide(w, key, gl_wall_ms(), expire_ms, &wait_s, &was_passed);
		gl_msg_answer(a, rc < 0 ? GREYLIST_MSG_ERROR : rc ? GREYLIST_MSG_PASS : GREYLIST_MSG_DEFER,
		    wait_s, "lmdb");
		return 1;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		gl_msg_answer(a, GREYLIST_MSG_ERROR, 0, w->rs ? "redis" : "local");
		return 1;
	}
	snprintf(r->key, sizeof(r->key), "%s%s", GL_MSG_PREFIX, hex);
	if (w->rs == NULL) {
		gl_msg_local(w, r->key, expire_ms, a);
		free(r);
		return 1;
	}
	r->w = w;
	r->cb = cb;
	r->arg = arg;
	r->expire_ms = expire_ms;
	/* the triplet's script: no auto-allow (0), no trap, and no client record ("": the
	 * RCPT greylisting's trap or allow of the client is not read), as the local and LMDB
	 * stores */
	snprintf(a1, sizeof(a1), "%llu", (unsigned long long)c->delay);
	snprintf(a2, sizeof(a2), "%llu", (unsigned long long)c->retry_window);
	snprintf(a3, sizeof(a3), "%llu", (unsigned long long)expire_ms);
	argv[0] = r->key;
	argv[1] = GREYLIST_AWL_PREFIX;  /* not read: auto_allow_clients 0 */
	argv[2] = "";
	argv[3] = a1;
	argv[4] = a2;
	argv[5] = a3;
	argv[6] = "0";
	argv[7] = "0";
	argv[8] = "0";
	argv[9] = "0";
	if (redis_store_eval(w->rs, w->lua, 3, 7, argv, NULL, gl_msg_redis_cb, r, &r->req) == 0) {
		*reqp = r;
		return 0;
	}
	gl_msg_local(w, r->key, expire_ms, a);     /* Redis down: the local table decides */
	free(r);
	return 1;
}

void greylist_message_cancel(struct greylist_msg_req *req)
{
	if (req == NULL)
		return;
	redis_req_cancel(req->req);
	free(req);
}

const struct hook_module greylist_module = {
	.name = "greylist",
	.worker_init = gl_worker_init,
	.worker_free = gl_worker_free,
	.stages = gl_stages,
	.run = gl_run,
	.session_free = gl_session_free,
	.timeout_ms = gl_timeout_ms,
};
