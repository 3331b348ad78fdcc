/* dns.c — c-ares on a libuv loop, a process-wide TTL cache, cancellable queries.
 *
 * c-ares tells us which sockets it wants watched (ARES_OPT_SOCK_STATE_CB); each gets a
 * uv_poll_t. One uv_timer_t per resolver fires at the earlier of c-ares' next retry and the
 * oldest query's deadline. A query's memory belongs to c-ares' callback: cancelling or
 * timing out only detaches the user callback, so nothing ever fires into freed memory. */
#include "filters/dns.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"
#include "proxy/siphash.h"

#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- config ------------------------------------------------------------------------- */

static const struct cfg_field dns_config_fields[] = {
	{ "resolvers", CFG_STRLIST, offsetof(struct dns_config, resolvers), NULL,
	  .doc = "DNS servers as \"ip:port\" (default: /etc/resolv.conf)" },
	{ "timeout", CFG_DURATION, offsetof(struct dns_config, timeout), "2s", 10, 60000,
	  .doc = "time limit for one query, all tries included" },
	{ "tries", CFG_INT, offsetof(struct dns_config, tries), "2", 1, 10,
	  .doc = "attempts per server within the timeout" },
	{ "cache_size", CFG_INT, offsetof(struct dns_config, cache_size), "10000", 0, 10000000,
	  .doc = "answers cached process-wide (0 disables the cache)" },
	{ "negative_ttl", CFG_DURATION, offsetof(struct dns_config, negative_ttl), "5m", 0, 86400000,
	  .doc = "upper bound for caching NXDOMAIN/NODATA (the zone's SOA minimum is used below it)" },
	{ "max_ttl", CFG_DURATION, offsetof(struct dns_config, max_ttl), "1h", 0, 604800000,
	  .doc = "upper bound for caching any answer" },
	{ .key = NULL }
};

static int dns_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct dns_config *c = obj;

	for (size_t i = 0; i < c->resolvers.n; i++) {
		const char *s = c->resolvers.v[i];

		if (s == NULL || *s == '\0' || strchr(s, ',') != NULL || strlen(s) > 64)
			return cfg_error_key(p, n, "resolvers", (long)i, "\"%s\": expected ip or ip:port", s ? s : "");
	}
	return 0;
}

const struct cfg_table dns_config_table = {
	.name = "dns", .size = sizeof(struct dns_config), .fields = dns_config_fields,
	.validate = dns_config_validate,
};

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t dns_now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

const char *dns_status_name(enum dns_status s)
{
	switch (s) {
	case DNS_S_OK: return "ok";
	case DNS_S_NXDOMAIN: return "nxdomain";
	case DNS_S_NODATA: return "nodata";
	case DNS_S_SERVFAIL: return "servfail";
	case DNS_S_TIMEOUT: return "timeout";
	case DNS_S_ERROR: return "error";
	case DNS_S_FAILED: return "failed";
	}
	return "error";
}

void dns_result_free(struct dns_result *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	free(r);
}

/* Appends a copy of s to r->v; 0 or -1 (out of memory). */
static int dns_result_push(struct dns_result *r, const char *s)
{
	char **v = realloc(r->v, (r->n + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	r->v = v;
	if ((v[r->n] = strdup(s)) == NULL)
		return -1;
	r->n++;
	return 0;
}

/* ---- names -------------------------------------------------------------------------- */

static int dns_name_append_zone(char *out, size_t outlen, size_t used, const char *zone,
    const char *dflt)
{
	int k;

	if (zone == NULL || *zone == '\0')
		zone = dflt;
	k = snprintf(out + used, outlen - used, "%s", zone);
	if (k < 0 || (size_t)k >= outlen - used)
		return -1;
	return 0;
}

/* The reverse name of a canonical address (a v4-mapped client is IPv4 here). */
static int dns_name_reverse_addr(const struct netaddr *a, const char *zone, char *out,
    size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *b = a->b;
	size_t used = 0;
	int k;

	if (out == NULL || outlen == 0)
		return -1;
	if (a->family == AF_INET6) {
		/* RFC 3596 2.5: nibbles, least significant first */
		if (outlen < 64 + 1)
			return -1;
		for (int i = 15; i >= 0; i--) {
			out[used++] = hex[b[i] & 0xf];
			out[used++] = '.';
			out[used++] = hex[b[i] >> 4];
			out[used++] = '.';
		}
		out[used] = '\0';
		return dns_name_append_zone(out, outlen, used, zone, "ip6.arpa");
	}
	/* RFC 1035 3.5: octets reversed */
	k = snprintf(out, outlen, "%u.%u.%u.%u.", b[3], b[2], b[1], b[0]);
	if (k < 0 || (size_t)k >= outlen)
		return -1;
	return dns_name_append_zone(out, outlen, (size_t)k, zone, "in-addr.arpa");
}

int dns_name_reverse(const struct sockaddr *sa, const char *zone, char *out, size_t outlen)
{
	struct netaddr a;

	if (netaddr_client_from_sockaddr(sa, &a) < 0)
		return -1;
	return dns_name_reverse_addr(&a, zone, out, outlen);
}

int dns_name_reverse_str(const char *ip, const char *zone, char *out, size_t outlen)
{
	struct netaddr a;

	if (netaddr_from_string(ip, &a) < 0)
		return -1;
	return dns_name_reverse_addr(&a, zone, out, outlen);
}

/* ---- raw reply scanning (bounded, no I/O) ------------------------------------------- */

/* Skips a possibly compressed name at *off; 0 or -1 when it runs off the buffer. */
static int dns_reply_skip_name(const unsigned char *b, size_t len, size_t *off)
{
	size_t o = *off;

	for (int labels = 0; labels < 128; labels++) {
		if (o >= len)
			return -1;
		if ((b[o] & 0xc0) == 0xc0) {	/* RFC 1035 4.1.4: pointer ends the name */
			if (o + 2 > len)
				return -1;
			*off = o + 2;
			return 0;
		}
		if ((b[o] & 0xc0) != 0)
			return -1;
		if (b[o] == 0) {
			*off = o + 1;
			return 0;
		}
		o += 1u + b[o];
	}
	return -1;
}

static uint32_t dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int dns_reply_negative_ttl(const unsigned char *buf, size_t len, uint32_t *ttl)
{
	size_t off = 12;
	unsigned qd, an, ns;

	if (buf == NULL || len < 12 || ttl == NULL)
		return -1;
	qd = (unsigned)buf[4] << 8 | buf[5];
	an = (unsigned)buf[6] << 8 | buf[7];
	ns = (unsigned)buf[8] << 8 | buf[9];
	for (unsigned i = 0; i < qd; i++) {
		if (dns_reply_skip_name(buf, len, &off) < 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	for (unsigned i = 0; i < an + ns; i++) {
		unsigned type, rdlen;
		uint32_t rttl;
		size_t rd;

		if (dns_reply_skip_name(buf, len, &off) < 0 || off + 10 > len)
			return -1;
		type = (unsigned)buf[off] << 8 | buf[off + 1];
		rttl = dns_get32(buf + off + 4);
		rdlen = (unsigned)buf[off + 8] << 8 | buf[off + 9];
		off += 10;
		rd = off;
		if (off + rdlen > len)
			return -1;
		off += rdlen;
		if (i < an || type != 6 /* SOA */)
			continue;
		/* SOA RDATA: MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM */
		if (dns_reply_skip_name(buf, off, &rd) < 0 || dns_reply_skip_name(buf, off, &rd) < 0)
			return -1;
		if (rd + 20 > off)
			return -1;
		{
			uint32_t minimum = dns_get32(buf + rd + 16);

			/* RFC 2308 5: the lesser of the SOA's TTL and its MINIMUM field */
			*ttl = rttl < minimum ? rttl : minimum;
			if (*ttl > 0x7fffffffu)
				*ttl = 0;
		}
		return 0;
	}
	return -1;
}

/* Expands the possibly compressed name at *off into out ("a.b.c", no trailing dot), moving
 * *off past it. *clean is cleared when a label holds an octet that has no place in a host
 * name's text (a control, a space, DEL, non-ASCII, '.' or '\\' inside a label): such a name
 * must reach no header, XCLIENT line or log. 0, or -1 when malformed or longer than outlen. */
static int dns_reply_expand_name(const unsigned char *b, size_t len, size_t *off, char *out,
    size_t outlen, bool *clean)
{
	size_t o = *off, used = 0;
	bool jumped = false;

	*clean = true;
	for (int hops = 0; hops < 128; hops++) {
		if (o >= len)
			return -1;
		if ((b[o] & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return -1;
			if (!jumped)
				*off = o + 2;
			jumped = true;
			o = ((size_t)(b[o] & 0x3f) << 8) | b[o + 1];
			continue;
		}
		if ((b[o] & 0xc0) != 0)
			return -1;
		if (b[o] == 0) {
			if (!jumped)
				*off = o + 1;
			if (used >= outlen)
				return -1;
			out[used] = '\0';
			return 0;
		}
		size_t n = b[o];

		if (o + 1 + n > len || used + n + 1 >= outlen)
			return -1;
		if (used > 0)
			out[used++] = '.';
		for (size_t i = 0; i < n; i++) {
			unsigned char c = b[o + 1 + i];

			if (c <= 0x20 || c >= 0x7f || c == '.' || c == '\\')
				*clean = false;
			out[used++] = (char)c;
		}
		o += 1 + n;
	}
	return -1;
}

/* The names of the records of type rrtype (12 PTR, 15 MX) in a raw reply to one question
 * (dns_reply_ptr_names, dns_reply_mx_names): owned by the question's name or a CNAME
 * target reached from it, of class IN; an MX as "PREFERENCE NAME", its root name as ".". */
static int dns_reply_names(const unsigned char *buf, size_t len, struct dns_result *res,
    size_t max, size_t *skipped, unsigned rrtype)
{
	char owners[8][DNS_NAME_TEXT_MAX], name[DNS_NAME_TEXT_MAX], item[DNS_NAME_TEXT_MAX + 8];
	size_t nowners = 0, off = 12;
	unsigned qd, an;
	bool clean;

	if (skipped != NULL)
		*skipped = 0;
	if (buf == NULL || len < 12 || res == NULL)
		return -1;
	qd = (unsigned)buf[4] << 8 | buf[5];
	an = (unsigned)buf[6] << 8 | buf[7];
	if (qd != 1)
		return -1;
	if (dns_reply_expand_name(buf, len, &off, owners[0], sizeof(owners[0]), &clean) < 0 ||
	    off + 4 > len)
		return -1;
	nowners = 1;
	off += 4;
	for (unsigned i = 0; i < an; i++) {
		unsigned type, klass, rdlen, pref = 0;
		size_t rd;
		bool ours = false;

		if (dns_reply_expand_name(buf, len, &off, name, sizeof(name), &clean) < 0 || off + 10 > len)
			return -1;
		type = (unsigned)buf[off] << 8 | buf[off + 1];
		klass = (unsigned)buf[off + 2] << 8 | buf[off + 3];
		rdlen = (unsigned)buf[off + 8] << 8 | buf[off + 9];
		off += 10;
		rd = off;
		if (off + rdlen > len)
			return -1;
		off += rdlen;
		for (size_t k = 0; k < nowners; k++)
			ours |= strcasecmp(name, owners[k]) == 0;
		if (!ours || klass != 1 || (type != 5 /* CNAME */ && type != rrtype))
			continue;	/* another name's record (a wrong qname) or another type */
		if (type == 15) {
			/* RFC 1035 3.3.9: PREFERENCE (16 bits), EXCHANGE */
			if (rdlen < 3)
				return -1;
			pref = (unsigned)buf[rd] << 8 | buf[rd + 1];
			rd += 2;
		}
		if (dns_reply_expand_name(buf, off, &rd, name, sizeof(name), &clean) < 0 || rd != off)
			return -1;
		if (type == 5) {
			if (nowners < sizeof(owners) / sizeof(owners[0]))
				memcpy(owners[nowners++], name, sizeof(name));
			continue;
		}
		if (!clean || (name[0] == '\0' && type != 15)) {
			if (skipped != NULL)
				(*skipped)++;
			continue;
		}
		if (type == 15)	/* RFC 7505: the root, "0 .", is the null MX */
			snprintf(item, sizeof(item), "%u %s", pref, name[0] ? name : ".");
		else
			snprintf(item, sizeof(item), "%s", name);

		bool dup = false;

		for (size_t k = 0; k < res->n; k++)
			dup |= strcasecmp(res->v[k], item) == 0;
		if (!dup && res->n < max && dns_result_push(res, item) < 0)
			return -1;
	}
	return 0;
}

int dns_reply_ptr_names(const unsigned char *buf, size_t len, struct dns_result *res,
    size_t max, size_t *skipped)
{
	return dns_reply_names(buf, len, res, max, skipped, 12);
}

int dns_reply_mx_names(const unsigned char *buf, size_t len, struct dns_result *res,
    size_t max, size_t *skipped)
{
	return dns_reply_names(buf, len, res, max, skipped, 15);
}

/* See dns.h. */
int dns_msg_question(const unsigned char *buf, size_t len, char *name, size_t namelen,
    struct dns_msg_head *h)
{
	size_t off = 12;
	bool clean;

	if (buf == NULL || len < 12 || name == NULL || namelen == 0 || h == NULL)
		return -1;
	h->id = (unsigned)buf[0] << 8 | buf[1];
	h->response = (buf[2] & 0x80u) != 0;
	h->rcode = buf[3] & 0x0fu;
	h->qtype = 0;
	/* RFC 1035 4.1.1: QDCOUNT 1, the one question c-ares asks and matches */
	if (buf[4] != 0 || buf[5] != 1)
		return 0;
	if (dns_reply_expand_name(buf, len, &off, name, namelen, &clean) < 0 || off + 4 > len)
		return -1;
	h->qtype = (unsigned)buf[off] << 8 | buf[off + 1];
	return 1;
}

/* See dns.h. */
size_t dns_frame_feed(struct dns_frame *f, const unsigned char *p, size_t n, bool *done)
{
	size_t used = 0;

	*done = false;
	/* RFC 1035 4.2.2: each message over TCP after a two-octet length */
	while (used < n && f->lenhave < 2) {
		f->len = f->len << 8 | p[used++];
		if (++f->lenhave == 2) {
			f->need = f->len;
			f->have = 0;
		}
	}
	if (f->lenhave < 2)
		return used;
	size_t take = n - used < f->need ? n - used : f->need;

	if (f->have < sizeof(f->head)) {
		size_t c = take < sizeof(f->head) - f->have ? take : sizeof(f->head) - f->have;

		memcpy(f->head + f->have, p + used, c);
		f->have += c;
	}
	used += take;
	f->need -= take;
	if (f->need == 0) {
		*done = true;
		f->lenhave = 0;
		f->len = 0;
	}
	return used;
}

/* ---- the cache ---------------------------------------------------------------------- */

struct dns_cache_entry {
	struct dns_cache_entry *hnext;          /* hash chain */
	struct dns_cache_entry *lprev, *lnext;  /* LRU list, most recent at head */
	uint64_t expires;                       /* ms */
	enum dns_status status;
	size_t n;
	char **v;
	char key[];                             /* "<type>:<lowercased name>" */
};

struct dns_cache {
	pthread_mutex_t mu;
	size_t max, count, nbuckets;
	struct dns_cache_entry **buckets;
	struct dns_cache_entry *head, *tail;
};

static int dns_cache_key(char *out, size_t outlen, enum dns_type t, const char *name)
{
	size_t i, n = strlen(name);

	if (n + 3 > outlen)
		return -1;
	out[0] = (char)('0' + t);
	out[1] = ':';
	for (i = 0; i < n; i++)
		out[2 + i] = (char)tolower((unsigned char)name[i]);
	if (i > 0 && out[1 + i] == '.')	/* "name." and "name" are one key */
		i--;
	out[2 + i] = '\0';
	return 0;
}

struct dns_cache *dns_cache_new(size_t max)
{
	struct dns_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	c->max = max;
	c->nbuckets = 1024;
	while (c->nbuckets < max && c->nbuckets < (1u << 22))
		c->nbuckets <<= 1;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		pthread_mutex_destroy(&c->mu);
		free(c);
		return NULL;
	}
	return c;
}

/* The bucket of key: keyed (siphash.h), as a client chooses many of the names asked (its
 * HELO name, its sender's domain, the hosts of the URLs in its message). */
static size_t dns_cache_bucket(const struct dns_cache *c, const char *key)
{
	return (size_t)siphash_str(key) & (c->nbuckets - 1);
}

static void dns_cache_entry_free(struct dns_cache_entry *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	free(e);
}

/* Unlinks e from its chain and the LRU list and frees it. Caller holds the lock. */
static void dns_cache_remove(struct dns_cache *c, struct dns_cache_entry *e)
{
	struct dns_cache_entry **pp = &c->buckets[dns_cache_bucket(c, e->key)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp == e)
		*pp = e->hnext;
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		c->head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		c->tail = e->lprev;
	c->count--;
	dns_cache_entry_free(e);
}

static struct dns_cache_entry *dns_cache_find(struct dns_cache *c, const char *key)
{
	struct dns_cache_entry *e = c->buckets[dns_cache_bucket(c, key)];

	while (e != NULL && strcmp(e->key, key) != 0)
		e = e->hnext;
	return e;
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	while (c->head != NULL)
		dns_cache_remove(c, c->head);
	free(c->buckets);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

size_t dns_cache_longest_chain(struct dns_cache *c)
{
	size_t most = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t b = 0; b < c->nbuckets; b++) {
		size_t n = 0;

		for (const struct dns_cache_entry *e = c->buckets[b]; e != NULL; e = e->hnext)
			n++;
		if (n > most)
			most = n;
	}
	pthread_mutex_unlock(&c->mu);
	return most;
}

size_t dns_cache_count(struct dns_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->count;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void dns_cache_put(struct dns_cache *c, enum dns_type t, const char *name,
    const struct dns_result *r, uint64_t now_ms)
{
	char key[300];
	struct dns_cache_entry *e, **bucket;
	size_t klen;

	if (c == NULL || r == NULL || r->ttl == 0 || dns_cache_key(key, sizeof(key), t, name) < 0)
		return;
	klen = strlen(key);
	e = calloc(1, sizeof(*e) + klen + 1);
	if (e == NULL)
		return;
	memcpy(e->key, key, klen + 1);
	e->status = r->status;
	e->expires = now_ms + (uint64_t)r->ttl * 1000u;
	if (r->n > 0) {
		e->v = calloc(r->n, sizeof(*e->v));
		if (e->v == NULL)
			goto fail;
		for (size_t i = 0; i < r->n; i++) {
			if ((e->v[i] = strdup(r->v[i])) == NULL)
				goto fail;
			e->n++;
		}
	}
	pthread_mutex_lock(&c->mu);
	if (c->max == 0) {
		pthread_mutex_unlock(&c->mu);
		goto fail;
	}
	{
		struct dns_cache_entry *old = dns_cache_find(c, key);

		if (old != NULL)
			dns_cache_remove(c, old);
	}
	while (c->count >= c->max && c->tail != NULL)
		dns_cache_remove(c, c->tail);	/* least recently used */
	bucket = &c->buckets[dns_cache_bucket(c, key)];
	e->hnext = *bucket;
	*bucket = e;
	e->lnext = c->head;
	if (c->head)
		c->head->lprev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
	c->count++;
	pthread_mutex_unlock(&c->mu);
	return;
fail:
	dns_cache_entry_free(e);
}

struct dns_result *dns_cache_get(struct dns_cache *c, enum dns_type t, const char *name,
    uint64_t now_ms)
{
	char key[300];
	struct dns_cache_entry *e;
	struct dns_result *r = NULL;

	if (c == NULL || dns_cache_key(key, sizeof(key), t, name) < 0)
		return NULL;
	pthread_mutex_lock(&c->mu);
	e = dns_cache_find(c, key);
	if (e == NULL)
		goto out;
	if (e->expires <= now_ms) {
		dns_cache_remove(c, e);
		goto out;
	}
	/* move to the LRU head */
	if (e != c->head) {
		e->lprev->lnext = e->lnext;
		if (e->lnext)
			e->lnext->lprev = e->lprev;
		else
			c->tail = e->lprev;
		e->lprev = NULL;
		e->lnext = c->head;
		c->head->lprev = e;
		c->head = e;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->status = e->status;
	r->type = t;
	r->cached = true;
	r->ttl = (uint32_t)((e->expires - now_ms + 999) / 1000);
	for (size_t i = 0; i < e->n; i++) {
		if (dns_result_push(r, e->v[i]) < 0) {
			dns_result_free(r);
			r = NULL;
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&c->mu);
	return r;
}

static pthread_mutex_t dns_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dns_cache *dns_shared;

struct dns_cache *dns_cache_shared(size_t max)
{
	struct dns_cache *c;

	pthread_mutex_lock(&dns_shared_mu);
	if (dns_shared == NULL)
		dns_shared = dns_cache_new(max);
	c = dns_shared;
	pthread_mutex_unlock(&dns_shared_mu);
	if (c != NULL) {
		pthread_mutex_lock(&c->mu);
		c->max = max;
		while (c->count > c->max && c->tail != NULL)
			dns_cache_remove(c, c->tail);
		pthread_mutex_unlock(&c->mu);
	}
	return c;
}

struct dns_cache *dns_cache_for(const struct dns_config *dc)
{
	if (dc == NULL)
		return dns_cache_shared(10000);
	return dc->cache_size > 0 ? dns_cache_shared((size_t)dc->cache_size) : NULL;
}

uint64_t dns_cache_now_ms(void)
{
	return dns_now_ms();
}

size_t dns_cache_clear(struct dns_cache *c)
{
	size_t n;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->mu);
	n = c->count;
	while (c->head != NULL)
		dns_cache_remove(c, c->head);
	pthread_mutex_unlock(&c->mu);
	return n;
}

size_t dns_cache_flush_shared(void)
{
	struct dns_cache *c;

	pthread_mutex_lock(&dns_shared_mu);
	c = dns_shared;
	pthread_mutex_unlock(&dns_shared_mu);
	return dns_cache_clear(c);
}

/* ---- the resolver ------------------------------------------------------------------- */

struct dns_sock {
	uv_poll_t poll;
	struct dns_resolver *r;
	ares_socket_t fd;
	struct dns_sock *next;
};

struct dns_query {
	struct dns_resolver *r;
	enum dns_type type;
	void (*cb)(void *arg, const struct dns_result *res);  /* NULL once delivered/cancelled */
	void *arg;
	uint64_t deadline;                  /* ms (uv_now of the loop) */
	uint64_t started;                   /* ms (uv_now of the loop) */
	struct dns_query *prev, *next;      /* the resolver's deadline-ordered list */
	bool linked;
	/* Coalescing: a query for a (type, name) already asked and not answered yet does not
	 * ask again; it follows that one (its leader) and gets the same answer. A follower's
	 * memory is ours (freed when it is delivered or cancelled), a leader's c-ares'. */
	bool follower;
	bool inflight;                      /* a leader whose c-ares query is running */
	bool asked_again;                   /* sent a second time after FORMERR (dns_ares_cb) */
	bool asked_after_reset;             /* ... after ECONNREFUSED (dns_ares_cb) */
	bool saw_failure_rcode;             /* a server answered it SERVFAIL/NOTIMP/REFUSED
	                                     * (dns_resolver_note_answer) */
	bool qid_set;                       /* qid holds the id c-ares sent it with */
	uint16_t qid;                       /* (dns_sock_sendv; the same on every try) */
	struct dns_query *leader;           /* a follower: whom it follows (NULL while delivered) */
	struct dns_query *fhead;            /* a leader: its followers */
	struct dns_query *fprev, *fnext;    /* in the leader's list of followers */
	struct dns_query *hnext;            /* in the resolver's table of running leaders */
	char name[];
};

#define DNS_EDNS_UDP_SIZE 1232   /* EDNS0 UDP payload advertised (DNS flag day 2020) */

/* A TCP socket c-ares opened: the answers it reads there, reassembled (dns_sock_recvfrom) */
struct dns_tcp {
	ares_socket_t fd;
	struct dns_frame in;
	struct dns_tcp *next;
};
#define DNS_INFLIGHT_BUCKETS 256

struct dns_resolver {
	uv_loop_t *loop;
	const struct mx_config *cfg;        /* registry key (NULL for private resolvers) */
	ares_channel ch;
	bool ch_ok;
	uv_timer_t timer;
	struct dns_sock *socks;
	struct dns_query *qhead, *qtail;    /* waiting for an answer, by deadline */
	struct dns_query *inflight[DNS_INFLIGHT_BUCKETS]; /* leaders whose query runs */
	size_t npending;
	size_t coalesced;                   /* queries that followed another (tests) */
	uint64_t timeout_ms;
	struct dns_cache *cache;            /* NULL: no caching */
	uint64_t negative_ttl_ms, max_ttl_ms;
	int refs;
	int handles;                        /* open uv handles (timer + polls) */
	int busy;                           /* inside c-ares processing */
	bool destroy_pending;               /* last reference dropped while busy */
	struct dns_query *starting;         /* the query ares_query() is being called for */
	struct dns_query *sending;          /* ... by dns_query_start or dns_ares_cb (its id) */
	struct dns_tcp *tcp;                /* c-ares' TCP sockets */
	bool starting_done;                 /* ... and it completed synchronously */
	bool dying;
	struct dns_resolver *reg_next;
	/* a FORMERR answer c-ares takes came: c-ares 1.18 may have turned EDNS0 off for the
	 * channel (dns_resolver_check_edns) */
	bool formerr_seen;
	bool edns_off_logged;               /* event=dns_edns_off logged for this resolver */
	char formerr_from[INET6_ADDRSTRLEN + 8];  /* the server that answered it, "ip:port" */
};

static pthread_once_t dns_lib_once = PTHREAD_ONCE_INIT;
static int dns_lib_status;

static void dns_lib_init(void)
{
	dns_lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void dns_resolver_schedule(struct dns_resolver *r);
static void dns_resolver_destroy(struct dns_resolver *r);

/* Leaves a c-ares processing section: re-arms the timer, or finishes a release that a
 * callback made while c-ares was still on the stack. */
static void dns_resolver_unbusy(struct dns_resolver *r)
{
	if (--r->busy > 0)
		return;
	if (r->destroy_pending) {
		r->destroy_pending = false;
		dns_resolver_destroy(r);
		return;
	}
	dns_resolver_schedule(r);
}

static void dns_query_unlink(struct dns_query *q)
{
	struct dns_resolver *r = q->r;

	if (!q->linked)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		r->qhead = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		r->qtail = q->prev;
	q->prev = q->next = NULL;
	q->linked = false;
	r->npending--;
}

/* Inserts q by deadline; queries mostly share one timeout, so scan from the tail. */
static void dns_query_link(struct dns_query *q)
{
	struct dns_resolver *r = q->r;
	struct dns_query *p = r->qtail;

	while (p != NULL && p->deadline > q->deadline)
		p = p->prev;
	q->prev = p;
	q->next = p ? p->next : r->qhead;
	if (q->next)
		q->next->prev = q;
	else
		r->qtail = q;
	if (p)
		p->next = q;
	else
		r->qhead = q;
	q->linked = true;
	r->npending++;
}

/* Delivers res to q's callback once and detaches it. */
static void dns_query_deliver(struct dns_query *q, const struct dns_result *res)
{
	void (*cb)(void *, const struct dns_result *) = q->cb;

	dns_query_unlink(q);
	q->cb = NULL;
	if (cb != NULL)
		cb(q->arg, res);
}

/* ---- coalescing --------------------------------------------------------------------- */

/* The bucket of (t, name), case folded: keyed (siphash.h), the names being a client's to
 * choose. A name past the buffer (none is askable) is hashed by its first octets. */
static size_t dns_inflight_bucket(enum dns_type t, const char *name)
{
	unsigned char k[1 + DNS_NAME_TEXT_MAX];
	size_t n = 0;

	k[n++] = (unsigned char)t;
	for (const unsigned char *p = (const unsigned char *)name; *p && n < sizeof(k); p++)
		k[n++] = (unsigned char)tolower(*p);
	return (size_t)(siphash_mem(k, n) % DNS_INFLIGHT_BUCKETS);
}

static void dns_inflight_add(struct dns_query *q)
{
	struct dns_resolver *r = q->r;
	size_t b = dns_inflight_bucket(q->type, q->name);

	q->hnext = r->inflight[b];
	r->inflight[b] = q;
	q->inflight = true;
}

static void dns_inflight_remove(struct dns_query *q)
{
	struct dns_query **pp;

	if (!q->inflight)
		return;
	for (pp = &q->r->inflight[dns_inflight_bucket(q->type, q->name)]; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == q) {
			*pp = q->hnext;
			break;
		}
	q->hnext = NULL;
	q->inflight = false;
}

/* A running query for (t, name) asked recently enough that a follower joining it still
 * gets most of its own time: asked at most half the resolver's timeout ago. */
static struct dns_query *dns_inflight_find(struct dns_resolver *r, enum dns_type t,
    const char *name, uint64_t now)
{
	for (struct dns_query *q = r->inflight[dns_inflight_bucket(t, name)]; q != NULL; q = q->hnext)
		if (q->type == t && strcasecmp(q->name, name) == 0 && now - q->started <= r->timeout_ms / 2)
			return q;
	return NULL;
}

static void dns_follower_detach(struct dns_query *f)
{
	struct dns_query *l = f->leader;

	if (l == NULL)
		return;
	if (f->fprev)
		f->fprev->fnext = f->fnext;
	else
		l->fhead = f->fnext;
	if (f->fnext)
		f->fnext->fprev = f->fprev;
	f->fprev = f->fnext = NULL;
	f->leader = NULL;
}

/* Hands res to every follower of leader l (res NULL: the resolver is going away, nobody
 * hears), and frees them. A callback may cancel a follower not delivered yet: it then only
 * loses its callback (leader == NULL marks "being delivered") and is freed here. */
static void dns_followers_deliver(struct dns_query *l, const struct dns_result *res)
{
	struct dns_query *list = l->fhead;

	l->fhead = NULL;
	for (struct dns_query *f = list; f != NULL; f = f->fnext)
		f->leader = NULL;
	while (list != NULL) {
		struct dns_query *f = list;

		list = f->fnext;
		f->fnext = f->fprev = NULL;
		if (res != NULL)
			dns_query_deliver(f, res);
		else
			dns_query_unlink(f);
		free(f);
	}
}

static enum dns_status dns_status_from_ares(int status)
{
	switch (status) {
	case ARES_SUCCESS: return DNS_S_OK;
	case ARES_ENOTFOUND: return DNS_S_NXDOMAIN;
	case ARES_ENODATA: return DNS_S_NODATA;
	case ARES_ESERVFAIL:
	case ARES_EREFUSED: return DNS_S_SERVFAIL;
	/* c-ares 1.18 ends a query whose every try got SERVFAIL/REFUSED with ECONNREFUSED, as
	 * it does one whose server refuses (ICMP port unreachable): failed at once, no timeout.
	 * dns_ares_cb tells the first apart (saw_failure_rcode) and gives it ESERVFAIL. */
	case ARES_ECONNREFUSED: return DNS_S_FAILED;
	case ARES_ETIMEOUT: return DNS_S_TIMEOUT;
	default: return DNS_S_ERROR;
	}
}

/* See dns.h. */
enum dns_status dns_reply_parse(enum dns_type t, const unsigned char *abuf, int alen,
    struct dns_result *res, uint32_t *min_ttl)
{
	char txt[INET6_ADDRSTRLEN];
	int rc, n;

	*min_ttl = 0xffffffffu;
	switch (t) {
	case DNS_T_A: {
		struct ares_addrttl at[32];

		n = 32;
		rc = ares_parse_a_reply(abuf, alen, NULL, at, &n);
		if (rc != ARES_SUCCESS)
			return dns_status_from_ares(rc);
		for (int i = 0; i < n; i++) {
			inet_ntop(AF_INET, &at[i].ipaddr, txt, sizeof(txt));
			if (dns_result_push(res, txt) < 0)
				return DNS_S_ERROR;
			if ((uint32_t)at[i].ttl < *min_ttl)
				*min_ttl = at[i].ttl < 0 ? 0 : (uint32_t)at[i].ttl;
		}
		break;
	}
	case DNS_T_AAAA: {
		struct ares_addr6ttl at[32];

		n = 32;
		rc = ares_parse_aaaa_reply(abuf, alen, NULL, at, &n);
		if (rc != ARES_SUCCESS)
			return dns_status_from_ares(rc);
		for (int i = 0; i < n; i++) {
			inet_ntop(AF_INET6, &at[i].ip6addr, txt, sizeof(txt));
			if (dns_result_push(res, txt) < 0)
				return DNS_S_ERROR;
			if ((uint32_t)at[i].ttl < *min_ttl)
				*min_ttl = at[i].ttl < 0 ? 0 : (uint32_t)at[i].ttl;
		}
		break;
	}
	case DNS_T_TXT: {
		struct ares_txt_ext *list = NULL, *e;
		char *buf = NULL;
		size_t used = 0, cap = 0;
		bool have = false;

		rc = ares_parse_txt_reply_ext(abuf, alen, &list);
		if (rc != ARES_SUCCESS)
			return dns_status_from_ares(rc);
		/* RFC 7208 3.3: a record's character-strings are concatenated, whatever the
		 * record's length (a DKIM key of 8192 bits is ~1400 octets of base64); the reply
		 * itself (at most 64 KiB) bounds it */
		for (e = list; e != NULL; e = e->next) {
			if (e->record_start && have) {
				if (dns_result_push(res, buf) < 0)
					goto txt_fail;
				used = 0;
			}
			have = true;
			if (used + e->length + 1 > cap) {
				size_t ncap = (used + e->length + 1) * 2;
				char *nb = realloc(buf, ncap);

				if (nb == NULL)
					goto txt_fail;
				buf = nb;
				cap = ncap;
			}
			memcpy(buf + used, e->txt, e->length);
			used += e->length;
			buf[used] = '\0';
		}
		if (have && dns_result_push(res, buf) < 0)
			goto txt_fail;
		free(buf);
		ares_free_data(list);
		break;
txt_fail:
		free(buf);
		ares_free_data(list);
		return DNS_S_ERROR;
	}
	case DNS_T_PTR:
	case DNS_T_MX: {
		size_t skipped = 0;
		bool mx = t == DNS_T_MX;

		/* our own reader, not ares_parse_ptr_reply / ares_parse_mx_reply: c-ares 1.18
		 * refuses the whole answer (EBADRESP, a temporary failure) when one name holds a
		 * character a host name cannot, so a hostile PTR made the client's name "try
		 * again" and hid a good name next to it; a malformed name is no name (Postfix:
		 * "unknown", 5xx). An MX of the root (RFC 7505's null MX, "0 .") is an answer. */
		if (dns_reply_names(abuf, alen > 0 ? (size_t)alen : 0, res, mx ? 32 : 16, &skipped,
		    mx ? 15 : 12) < 0)
			return DNS_S_ERROR;
		if (skipped > 0)
			log_event(LOG_LVL_INFO, NULL, "event=dns_malformed_name type=%s skipped=%zu kept=%zu",
			    mx ? "mx" : "ptr", skipped, res->n);
		break;
	}
	default:
		return DNS_S_ERROR;
	}
	return res->n > 0 ? DNS_S_OK : DNS_S_NODATA;
}

/* Scans the answer section for the smallest TTL (for TXT and PTR, where c-ares hides it). */
int dns_reply_answer_ttl(const unsigned char *buf, size_t len, uint32_t *ttl)
{
	size_t off = 12;
	unsigned qd, an;
	uint32_t best = 0xffffffffu;

	if (len < 12)
		return -1;
	qd = (unsigned)buf[4] << 8 | buf[5];
	an = (unsigned)buf[6] << 8 | buf[7];
	for (unsigned i = 0; i < qd; i++) {
		if (dns_reply_skip_name(buf, len, &off) < 0 || off + 4 > len)
			return -1;
		off += 4;
	}
	for (unsigned i = 0; i < an; i++) {
		uint32_t t;
		unsigned rdlen;

		if (dns_reply_skip_name(buf, len, &off) < 0 || off + 10 > len)
			return -1;
		t = dns_get32(buf + off + 4);
		rdlen = (unsigned)buf[off + 8] << 8 | buf[off + 9];
		off += 10 + rdlen;
		if (off > len)
			return -1;
		if (t < best)
			best = t;
	}
	if (best == 0xffffffffu)
		return -1;
	*ttl = best;
	return 0;
}

static const int dns_ares_type[DNS_T_COUNT] = {
	[DNS_T_A] = 1, [DNS_T_AAAA] = 28, [DNS_T_TXT] = 16, [DNS_T_PTR] = 12, [DNS_T_MX] = 15,
};

/* How long res, the result of the raw reply abuf (alen), is cached (s): parsed (the reply
 * was NOERROR with an answer section and dns_reply_parse read it, min_ttl its A/AAAA TTL):
 * the answer records' smallest TTL (60 s when it cannot be read), nothing for an error;
 * otherwise NXDOMAIN and NODATA for the SOA's negative TTL (RFC 2308: one without an SOA is
 * not cached, 5: "SHOULD NOT be cached"), at most negative_ttl_ms; every one at most
 * max_ttl_ms. The one rule for the resolvers (dns_ares_cb) and dns_cache_put_reply. */
static uint32_t dns_reply_cache_ttl(const struct dns_result *res, bool parsed, const unsigned char *abuf,
    int alen, uint32_t min_ttl, uint64_t negative_ttl_ms, uint64_t max_ttl_ms)
{
	uint32_t ttl = 0;

	if (parsed) {
		ttl = min_ttl;
		if ((res->type == DNS_T_TXT || res->type == DNS_T_PTR || res->type == DNS_T_MX) &&
		    dns_reply_answer_ttl(abuf, (size_t)alen, &ttl) < 0)
			ttl = 60;
		if (ttl == 0xffffffffu)
			ttl = 0;
		if (res->status != DNS_S_OK && res->status != DNS_S_NODATA)
			ttl = 0;
	} else if (res->status == DNS_S_NXDOMAIN || res->status == DNS_S_NODATA) {
		if (abuf == NULL || dns_reply_negative_ttl(abuf, (size_t)(alen > 0 ? alen : 0), &ttl) < 0)
			ttl = 0;
		if ((uint64_t)ttl * 1000u > negative_ttl_ms)
			ttl = (uint32_t)(negative_ttl_ms / 1000u);
	}
	if ((uint64_t)ttl * 1000u > max_ttl_ms)
		ttl = (uint32_t)(max_ttl_ms / 1000u);
	return ttl;
}

/* See dns.h. */
void dns_cache_put_reply(struct dns_cache *c, enum dns_type t, const char *name,
    const unsigned char *abuf, int alen, uint64_t negative_ttl_ms, uint64_t max_ttl_ms)
{
	struct dns_result res;
	uint32_t min_ttl = 0;
	bool parsed = false;

	if (c == NULL || abuf == NULL || alen < 12)
		return;
	memset(&res, 0, sizeof(res));
	res.type = t;
	if ((abuf[3] & 0x0f) == 3)
		res.status = DNS_S_NXDOMAIN;
	else if ((abuf[3] & 0x0f) != 0)
		return;	/* a failure is asked again, never cached */
	else if (abuf[6] == 0 && abuf[7] == 0)
		res.status = DNS_S_NODATA;	/* as c-ares ends a NOERROR reply without answers */
	else {
		res.status = dns_reply_parse(t, abuf, alen, &res, &min_ttl);
		parsed = true;
	}
	res.ttl = dns_reply_cache_ttl(&res, parsed, abuf, alen, min_ttl, negative_ttl_ms, max_ttl_ms);
	if (res.ttl > 0 && (res.status == DNS_S_OK || res.status == DNS_S_NXDOMAIN ||
	    res.status == DNS_S_NODATA))
		dns_cache_put(c, t, name, &res, dns_now_ms());
	for (size_t i = 0; i < res.n; i++)
		free(res.v[i]);
	free(res.v);
}

static void dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

/* Asks c-ares q's question; the id it goes with is noted (dns_sock_sendv) for the answers
 * that count (dns_resolver_note_answer). The callback may run inside: q is not touched
 * after. */
static void dns_query_ask(struct dns_query *q)
{
	struct dns_resolver *r = q->r;
	struct dns_query *was = r->sending;

	q->qid_set = false;
	r->sending = q;
	ares_query(r->ch, q->name, 1 /* IN */, dns_ares_type[q->type], dns_ares_cb, q);
	r->sending = was;
}

static void dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	struct dns_resolver *r = q->r;
	struct dns_result res;
	uint32_t ttl = 0;

	(void)timeouts;
	if (q == r->starting)
		r->starting_done = true;
	dns_inflight_remove(q);
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED ||
	    (q->cb == NULL && q->fhead == NULL)) {
		dns_followers_deliver(q, NULL);
		dns_query_unlink(q);
		free(q);
		return;
	}
	if (status == ARES_EFORMERR && !q->asked_again && q != r->starting) {
		/* RFC 6891 7: a server that does not know EDNS0 answers FORMERR. c-ares 1.18 asks
		 * such a query again without EDNS0, but for the first one only: it then turns EDNS0
		 * off for the whole channel, and the queries already out with EDNS0 end here with
		 * FORMERR (a key lookup failing for nothing). Asked once more, they go without it.
		 * The callback may run inside ares_query: q is not touched after it. */
		q->asked_again = true;
		dns_inflight_add(q);
		dns_query_ask(q);
		return;
	}
	if (status == ARES_ECONNREFUSED && q->saw_failure_rcode) {
		/* c-ares 1.18 ends a query whose every try was answered SERVFAIL, NOTIMP or
		 * REFUSED with ECONNREFUSED, the status of an ICMP refusal: an answer came, so it
		 * is the server's failure (servfail), not an unreachable server (failed); and no
		 * round more (below): the servers answered */
		status = ARES_ESERVFAIL;
	}
	if (status == ARES_ECONNREFUSED && !q->asked_after_reset && q != r->starting) {
		/* c-ares 1.18: when a server closes a TCP connection unanswered, every socket to
		 * it is reset, and a query out to it at that moment (a UDP one that had nothing to
		 * do with it) moves on to another try or server; with none left it ends here with
		 * ECONNREFUSED, the status of a refusal (ICMP) and of SERVFAIL/REFUSED on every try
		 * too (that one is servfail above, not asked again). Asked once more: a reset query
		 * is answered, a refused one costs one more round; the query's deadline
		 * (dns_resolver's timer) bounds it either way. Never for an answer (NXDOMAIN,
		 * NODATA). q is not touched after ares_query. */
		q->asked_after_reset = true;
		dns_inflight_add(q);
		dns_query_ask(q);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.type = q->type;
	if (status == ARES_SUCCESS && abuf != NULL)
		res.status = dns_reply_parse(q->type, abuf, alen, &res, &ttl);
	else
		res.status = dns_status_from_ares(status);
	res.ttl = dns_reply_cache_ttl(&res, status == ARES_SUCCESS && abuf != NULL, abuf, alen, ttl,
	    r->negative_ttl_ms, r->max_ttl_ms);
	if (r->cache != NULL && res.ttl > 0 && (res.status == DNS_S_OK || res.status == DNS_S_NXDOMAIN ||
	    res.status == DNS_S_NODATA))
		dns_cache_put(r->cache, q->type, q->name, &res, dns_now_ms());
	dns_query_deliver(q, &res);
	dns_followers_deliver(q, &res);
	for (size_t i = 0; i < res.n; i++)
		free(res.v[i]);
	free(res.v);
	free(q);
}

/* Whether q asks name (text, no trailing dot, any case) of type qtype. */
static bool dns_query_asks(const struct dns_query *q, const char *name, unsigned qtype)
{
	size_t qlen = strlen(q->name), nlen = strlen(name);

	if (qlen > 0 && q->name[qlen - 1] == '.')
		qlen--;
	return (unsigned)dns_ares_type[q->type] == qtype && qlen == nlen &&
	    strncasecmp(q->name, name, nlen) == 0;
}

/* An answer c-ares read from a server, a UDP datagram (from: its sender; NULL: fd's peer) or
 * a message of a TCP stream (fd's peer), before c-ares processes it. Counted only when c-ares takes it too
 * (process_answer): its id the one a running query of that question went with (noted by
 * dns_sock_sendv), not a forgery or a stray. A SERVFAIL, NOTIMP or REFUSED marks the query
 * (saw_failure_rcode), for dns_ares_cb to tell the end c-ares 1.18 gives it (ECONNREFUSED)
 * from an ICMP refusal; a FORMERR has c-ares' EDNS0 state looked at (formerr_seen). */
static void dns_resolver_note_answer(struct dns_resolver *r, const unsigned char *buf, size_t len,
    ares_socket_t fd, const struct sockaddr *from)
{
	char name[DNS_NAME_TEXT_MAX];
	struct dns_msg_head h;
	bool taken = false;

	if (dns_msg_question(buf, len, name, sizeof(name), &h) != 1 || !h.response ||
	    (h.rcode != 1 && h.rcode != 2 && h.rcode != 4 && h.rcode != 5))
		return;
	/* every bucket: a name asked with a trailing dot hashes apart (failures are rare) */
	for (size_t b = 0; b < DNS_INFLIGHT_BUCKETS; b++)
		for (struct dns_query *q = r->inflight[b]; q != NULL; q = q->hnext)
			if (q->qid_set && q->qid == h.id && dns_query_asks(q, name, h.qtype)) {
				taken = true;
				if (h.rcode != 1)
					q->saw_failure_rcode = true;
			}
	/* RFC 6891 7: a server that does not know EDNS0 answers FORMERR without an OPT record;
	 * c-ares 1.18 then turns EDNS0 off (none in the additional section, another record
	 * there, or one it cannot read: whether it did is asked of it after) */
	if (!taken || h.rcode != 1 || r->edns_off_logged || r->formerr_seen)
		return;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (from == NULL && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		from = (const struct sockaddr *)&ss;
	char a[INET6_ADDRSTRLEN];
	unsigned port = from == NULL ? 0 : from->sa_family == AF_INET6 ?
	    ntohs(((const struct sockaddr_in6 *)from)->sin6_port) :
	    from->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)from)->sin_port) : 0;
	int fam = from == NULL ? -1 : netaddr_sockaddr_string(from, a, sizeof(a));

	snprintf(r->formerr_from, sizeof(r->formerr_from), fam == AF_INET6 ? "[%s]:%u" : "%s:%u",
	    fam < 0 ? "?" : a, port);
	r->formerr_seen = true;
}

/* A query c-ares sends (dns_sock_sendv) for the one being asked (dns_query_ask): the id it
 * goes with, the same on its every try and over TCP. */
static void dns_resolver_note_query(struct dns_resolver *r, const struct iovec *iov, int n)
{
	unsigned char buf[DNS_FRAME_HEAD];
	char name[DNS_NAME_TEXT_MAX];
	struct dns_msg_head h;
	size_t len = 0;
	struct dns_query *q = r->sending;

	if (q == NULL || q->qid_set)
		return;
	for (int i = 0; i < n && len < sizeof(buf); i++) {
		size_t c = iov[i].iov_len < sizeof(buf) - len ? iov[i].iov_len : sizeof(buf) - len;

		memcpy(buf + len, iov[i].iov_base, c);
		len += c;
	}
	if (dns_msg_question(buf, len, name, sizeof(name), &h) == 1 && !h.response &&
	    dns_query_asks(q, name, h.qtype)) {
		q->qid = (uint16_t)h.id;
		q->qid_set = true;
	}
}

/* c-ares' socket calls (ares_set_socket_functions), the system's, so that the resolver
 * sees the id of each query c-ares sends (dns_resolver_note_query) and each answer it reads
 * (dns_resolver_note_answer). As c-ares' own: a send that cannot raise SIGPIPE
 * (MSG_NOSIGNAL). c-ares makes the sockets non-blocking and close-on-exec. */
static ares_socket_t dns_sock_open(int family, int type, int protocol, void *data)
{
	struct dns_resolver *r = data;
	ares_socket_t fd = socket(family, type | SOCK_CLOEXEC, protocol);

	if (fd >= 0 && (type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) == SOCK_STREAM) {
		struct dns_tcp *t = calloc(1, sizeof(*t));

		if (t == NULL) {
			close(fd);
			errno = ENOMEM;
			return ARES_SOCKET_BAD;
		}
		t->fd = fd;
		t->next = r->tcp;
		r->tcp = t;
	}
	return fd;
}

static int dns_sock_close(ares_socket_t fd, void *data)
{
	struct dns_resolver *r = data;

	for (struct dns_tcp **pp = &r->tcp; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->fd == fd) {
			struct dns_tcp *t = *pp;

			*pp = t->next;
			free(t);
			break;
		}
	return close(fd);
}

static int dns_sock_connect(ares_socket_t fd, const struct sockaddr *sa, ares_socklen_t len, void *data)
{
	(void)data;
	return connect(fd, sa, len);
}

/* c-ares 1.18 reads a UDP datagram whole (from: the server), a TCP answer in pieces: the
 * two-octet length, then the message, reassembled here (dns_frame_feed). */
static ares_ssize_t dns_sock_recvfrom(ares_socket_t fd, void *buf, size_t len, int flags,
    struct sockaddr *from, ares_socklen_t *fromlen, void *data)
{
	struct dns_resolver *r = data;
	ares_ssize_t n = recvfrom(fd, buf, len, flags, from, fromlen);
	int e = errno;
	struct dns_tcp *t = r->tcp;

	while (t != NULL && t->fd != fd)
		t = t->next;
	if (n > 0 && t == NULL)
		dns_resolver_note_answer(r, buf, (size_t)n, fd, from);
	for (size_t off = 0; n > 0 && t != NULL && off < (size_t)n;) {
		bool done;

		off += dns_frame_feed(&t->in, (const unsigned char *)buf + off, (size_t)n - off, &done);
		if (done)
			dns_resolver_note_answer(r, t->in.head, t->in.have, fd, NULL);
	}
	errno = e;
	return n;
}

static ares_ssize_t dns_sock_sendv(ares_socket_t fd, const struct iovec *iov, int n, void *data)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	ares_ssize_t rc = sendmsg(fd, &m, MSG_NOSIGNAL);
	int e = errno;

	/* inside ares_query (dns_query_ask) c-ares 1.18 sends over UDP only, the query whole */
	if (rc > 0)
		dns_resolver_note_query(data, iov, n);
	errno = e;
	return rc;
}

static const struct ares_socket_functions dns_socket_functions = {
	.asocket = dns_sock_open, .aclose = dns_sock_close, .aconnect = dns_sock_connect,
	.arecvfrom = dns_sock_recvfrom, .asendv = dns_sock_sendv,
};

static void dns_sock_close_cb(uv_handle_t *h)
{
	struct dns_sock *s = h->data;
	struct dns_resolver *r = s->r;

	free(s);
	if (--r->handles == 0 && r->dying)
		free(r);
}

static void dns_timer_close_cb(uv_handle_t *h)
{
	struct dns_resolver *r = h->data;

	if (--r->handles == 0 && r->dying)
		free(r);
}

/* Expires queries whose deadline passed: their callbacks get DNS_S_TIMEOUT. */
static void dns_resolver_expire(struct dns_resolver *r)
{
	uint64_t now = uv_now(r->loop);

	while (r->qhead != NULL && r->qhead->deadline <= now) {
		struct dns_query *q = r->qhead;
		struct dns_result res;

		memset(&res, 0, sizeof(res));
		res.status = DNS_S_TIMEOUT;
		res.type = q->type;
		dns_query_deliver(q, &res);	/* a leader stays allocated until c-ares lets go */
		if (q->follower) {
			dns_follower_detach(q);
			free(q);
		}
	}
}

static void dns_timer_cb(uv_timer_t *t)
{
	struct dns_resolver *r = t->data;

	r->busy++;
	ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);	/* retries, timeouts */
	dns_resolver_expire(r);
	dns_resolver_unbusy(r);
}

/* A FORMERR c-ares takes was read (dns_resolver_note_answer) and c-ares has processed it:
 * c-ares 1.18 turns EDNS0 off for the whole channel at the first such answer without an OPT
 * record to a query that carried it, until the resolver is made anew (a reload). Logged
 * once per resolver, with the server that answered, so an operator knows why answers over
 * 512 octets now go over TCP (docs/filters-dns.md). */
static void dns_resolver_check_edns(struct dns_resolver *r)
{
	struct ares_options o;
	int mask = 0;

	r->formerr_seen = false;
	if (r->edns_off_logged || ares_save_options(r->ch, &o, &mask) != ARES_SUCCESS)
		return;
	bool off = (o.flags & ARES_FLAG_EDNS) == 0;

	ares_destroy_options(&o);
	if (!off)
		return;
	r->edns_off_logged = true;
	log_event(LOG_LVL_WARNING, NULL, "event=dns_edns_off server=%s reason=\"the server answered FORMERR to "
	    "EDNS0: c-ares leaves EDNS0 off on this worker's resolver until a reload, answers over 512 octets "
	    "come truncated and are asked again over TCP\"", r->formerr_from);
}

static void dns_poll_cb(uv_poll_t *p, int status, int events)
{
	struct dns_sock *s = p->data;
	struct dns_resolver *r = s->r;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (status < 0) {
		/* let c-ares read the error and fail over */
		rfd = wfd = s->fd;
	} else {
		if (events & UV_READABLE)
			rfd = s->fd;
		if (events & UV_WRITABLE)
			wfd = s->fd;
	}
	r->busy++;
	ares_process_fd(r->ch, rfd, wfd);	/* may free s through the socket callback */
	if (r->formerr_seen)
		dns_resolver_check_edns(r);
	dns_resolver_unbusy(r);
}

static void dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock *s, **pp;

	for (pp = &r->socks; *pp != NULL && (*pp)->fd != fd; pp = &(*pp)->next)
		;
	s = *pp;
	if (!readable && !writable) {
		if (s == NULL)
			return;
		*pp = s->next;
		uv_poll_stop(&s->poll);
		uv_close((uv_handle_t *)&s->poll, dns_sock_close_cb);
		return;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return;	/* the query times out */
		if (uv_poll_init_socket(r->loop, &s->poll, fd) != 0) {
			free(s);
			return;
		}
		s->poll.data = s;
		s->r = r;
		s->fd = fd;
		s->next = r->socks;
		r->socks = s;
		r->handles++;
	}
	uv_poll_start(&s->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
	    dns_poll_cb);
}

/* Arms the timer for the earlier of c-ares' next timeout and the oldest deadline. */
static void dns_resolver_schedule(struct dns_resolver *r)
{
	struct timeval tv, *tvp;
	uint64_t ms = UINT64_MAX, now;

	if (r->dying)
		return;
	tvp = ares_timeout(r->ch, NULL, &tv);
	if (tvp != NULL)
		ms = (uint64_t)tvp->tv_sec * 1000u + (uint64_t)(tvp->tv_usec + 999) / 1000u;
	if (r->qhead != NULL) {
		now = uv_now(r->loop);
		uint64_t d = r->qhead->deadline > now ? r->qhead->deadline - now : 0;

		if (d < ms)
			ms = d;
	}
	if (ms == UINT64_MAX)
		uv_timer_stop(&r->timer);
	else
		uv_timer_start(&r->timer, dns_timer_cb, ms, 0);
}

struct dns_resolver *dns_resolver_new(uv_loop_t *loop, const char *servers, uint64_t timeout_ms,
    int tries)
{
	struct dns_resolver *r;
	struct ares_options opt;
	int optmask, rc;

	pthread_once(&dns_lib_once, dns_lib_init);
	if (dns_lib_status != ARES_SUCCESS) {
		log_event(LOG_LVL_ERROR, NULL, "event=dns_error reason=ares_library_init");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->loop = loop;
	r->refs = 1;
	r->timeout_ms = timeout_ms ? timeout_ms : 2000;
	r->negative_ttl_ms = 300000;
	r->max_ttl_ms = 3600000;
	if (tries < 1)
		tries = 1;
	memset(&opt, 0, sizeof(opt));
	opt.sock_state_cb = dns_sock_state_cb;
	opt.sock_state_cb_data = r;
	/* c-ares doubles the per-try timeout on later rounds; the deadline list bounds the
	 * whole query at timeout_ms regardless. */
	opt.timeout = (int)(r->timeout_ms / (uint64_t)tries);
	if (opt.timeout < 50)
		opt.timeout = 50;
	opt.tries = tries;
	/* EDNS0 (RFC 6891) with a UDP payload of 1232 octets (DNS flag day 2020: no IP
	 * fragmentation on a 1280-octet IPv6 path): a 4096-bit DKIM key, a long DMARC or SPF
	 * record fits in one datagram instead of a truncated answer and a TCP retry. Larger
	 * answers are still truncated and asked again over TCP (never ARES_FLAG_IGNTC: a
	 * truncated answer read as it is would be an empty one, "no key"). A server that
	 * answers FORMERR to EDNS0 is asked again without it by c-ares. */
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	opt.ednspsz = DNS_EDNS_UDP_SIZE;
	optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
	    ARES_OPT_EDNSPSZ;
	rc = ares_init_options(&r->ch, &opt, optmask);
	if (rc != ARES_SUCCESS) {
		log_event(LOG_LVL_ERROR, NULL, "event=dns_error reason=\"%s\"", ares_strerror(rc));
		free(r);
		return NULL;
	}
	r->ch_ok = true;
	ares_set_socket_functions(r->ch, &dns_socket_functions, r);
	if (servers != NULL && *servers != '\0') {
		rc = ares_set_servers_ports_csv(r->ch, servers);
		if (rc != ARES_SUCCESS) {
			log_event(LOG_LVL_ERROR, NULL, "event=dns_error servers=\"%s\" reason=\"%s\"",
			    servers, ares_strerror(rc));
			goto fail;
		}
	}
	if (uv_timer_init(loop, &r->timer) != 0)
		goto fail;
	r->timer.data = r;
	r->handles = 1;
	return r;
fail:
	ares_destroy(r->ch);
	free(r);
	return NULL;
}

void dns_resolver_set_cache(struct dns_resolver *r, struct dns_cache *c)
{
	if (r != NULL)
		r->cache = c;
}

size_t dns_resolver_pending(const struct dns_resolver *r)
{
	return r ? r->npending : 0;
}

static void dns_resolver_destroy(struct dns_resolver *r)
{
	/* Detach every callback first: ares_destroy fails queries with ARES_EDESTRUCTION and
	 * nobody may hear about it. */
	while (r->qhead != NULL) {
		r->qhead->cb = NULL;
		dns_query_unlink(r->qhead);
	}
	r->dying = true;
	if (r->ch_ok)
		ares_destroy(r->ch);	/* closes sockets: the socket callback closes the polls */
	r->ch_ok = false;
	while (r->tcp != NULL) {	/* ares_destroy closed them (dns_sock_close) */
		struct dns_tcp *t = r->tcp;

		r->tcp = t->next;
		free(t);
	}
	while (r->socks != NULL) {
		struct dns_sock *s = r->socks;

		r->socks = s->next;
		uv_poll_stop(&s->poll);
		uv_close((uv_handle_t *)&s->poll, dns_sock_close_cb);
	}
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, dns_timer_close_cb);
}

/* ---- registry: one resolver per (loop, config generation) --------------------------- */

static pthread_mutex_t dns_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dns_resolver *dns_reg;

struct dns_resolver *dns_resolver_for_loop(uv_loop_t *loop, const struct mx_config *cfg)
{
	struct dns_resolver *r;
	char servers[1024] = "";
	size_t used = 0;
	const struct dns_config *dc = cfg ? &cfg->dns : NULL;

	pthread_mutex_lock(&dns_reg_mu);
	for (r = dns_reg; r != NULL; r = r->reg_next)
		if (r->loop == loop && r->cfg == cfg && !r->dying) {
			r->refs++;
			pthread_mutex_unlock(&dns_reg_mu);
			return r;
		}
	pthread_mutex_unlock(&dns_reg_mu);

	for (size_t i = 0; dc != NULL && i < dc->resolvers.n; i++) {
		int k = snprintf(servers + used, sizeof(servers) - used, "%s%s", i ? "," : "",
		    dc->resolvers.v[i]);

		if (k < 0 || (size_t)k >= sizeof(servers) - used)
			break;
		used += (size_t)k;
	}
	r = dns_resolver_new(loop, servers, dc && dc->timeout ? dc->timeout : 2000,
	    dc && dc->tries ? (int)dc->tries : 2);
	if (r == NULL)
		return NULL;
	r->cfg = cfg;
	r->cache = dns_cache_for(dc);
	if (dc != NULL) {
		r->negative_ttl_ms = dc->negative_ttl;
		r->max_ttl_ms = dc->max_ttl;
	}
	pthread_mutex_lock(&dns_reg_mu);
	r->reg_next = dns_reg;
	dns_reg = r;
	pthread_mutex_unlock(&dns_reg_mu);
	return r;
}

void dns_resolver_release(struct dns_resolver *r)
{
	struct dns_resolver **pp;

	if (r == NULL)
		return;
	pthread_mutex_lock(&dns_reg_mu);
	if (--r->refs > 0) {
		pthread_mutex_unlock(&dns_reg_mu);
		return;
	}
	for (pp = &dns_reg; *pp != NULL; pp = &(*pp)->reg_next)
		if (*pp == r) {
			*pp = r->reg_next;
			break;
		}
	pthread_mutex_unlock(&dns_reg_mu);
	if (r->busy > 0) {
		r->destroy_pending = true;
		return;
	}
	dns_resolver_destroy(r);
}

/* ---- queries ------------------------------------------------------------------------ */

/* See dns.h. */
bool dns_name_askable(const char *name, size_t n)
{
	size_t label = 0;

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (name[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (++label > 63) {
			return false;
		}
	}
	return true;
}

struct dns_query *dns_query_start(struct dns_resolver *r, enum dns_type t, const char *name,
    uint64_t timeout_ms, void (*cb)(void *arg, const struct dns_result *res), void *arg)
{
	struct dns_query *q;
	struct dns_result *hit, res;
	size_t nlen;
	bool sync;

	memset(&res, 0, sizeof(res));
	res.type = t;
	nlen = name ? strlen(name) : 0;
	if (r == NULL || r->dying || (unsigned)t >= DNS_T_COUNT || nlen == 0) {
		res.status = DNS_S_ERROR;
		cb(arg, &res);
		return NULL;
	}
	if (!dns_name_askable(name, nlen)) {
		/* no such name can exist: that is the answer (not "try again": a DKIM key name
		 * with a 64-octet selector label made DMARC temperror, and p=reject let a forgery
		 * through); not cached */
		res.status = DNS_S_NXDOMAIN;
		cb(arg, &res);
		return NULL;
	}
	if (r->cache != NULL && (hit = dns_cache_get(r->cache, t, name, dns_now_ms())) != NULL) {
		cb(arg, hit);
		dns_result_free(hit);
		return NULL;
	}
	q = calloc(1, sizeof(*q) + nlen + 1);
	if (q == NULL) {
		res.status = DNS_S_ERROR;
		cb(arg, &res);
		return NULL;
	}
	memcpy(q->name, name, nlen + 1);
	q->r = r;
	q->type = t;
	q->cb = cb;
	q->arg = arg;
	uv_update_time(r->loop);
	q->started = uv_now(r->loop);
	q->deadline = q->started + (timeout_ms ? timeout_ms : r->timeout_ms);
	dns_query_link(q);
	if ((q->leader = dns_inflight_find(r, t, name, q->started)) != NULL) {
		/* the same question is on its way: wait for its answer, within our own time */
		q->follower = true;
		q->fnext = q->leader->fhead;
		if (q->fnext)
			q->fnext->fprev = q;
		q->leader->fhead = q;
		r->coalesced++;
		/* its own deadline may come before the timer's: armed again (inside a c-ares
		 * section, leaving it does) */
		if (r->busy == 0)
			dns_resolver_schedule(r);
		return q;
	}
	r->starting = q;
	r->starting_done = false;
	r->busy++;
	dns_query_ask(q);
	r->starting = NULL;
	/* ares_query may have answered synchronously (then q is gone) */
	sync = r->starting_done;
	if (!sync)
		dns_inflight_add(q);
	dns_resolver_unbusy(r);
	return sync ? NULL : q;
}

void dns_query_cancel(struct dns_query *q)
{
	if (q == NULL)
		return;
	/* c-ares keeps a leader's memory until it calls back; it then sees cb == NULL and
	 * frees (its followers still get the answer). A follower is ours: gone at once, unless
	 * it is among those being delivered right now (then that loop frees it). */
	q->cb = NULL;
	dns_query_unlink(q);
	if (q->follower && q->leader != NULL) {
		dns_follower_detach(q);
		free(q);
	}
}

size_t dns_resolver_inflight_longest(const struct dns_resolver *r)
{
	size_t most = 0;

	for (size_t b = 0; b < DNS_INFLIGHT_BUCKETS; b++) {
		size_t n = 0;

		for (const struct dns_query *q = r->inflight[b]; q != NULL; q = q->hnext)
			n++;
		if (n > most)
			most = n;
	}
	return most;
}

size_t dns_resolver_coalesced(const struct dns_resolver *r)
{
	return r ? r->coalesced : 0;
}
