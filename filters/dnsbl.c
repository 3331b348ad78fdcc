/* dnsbl.c — weighted DNS block/allow lists (postscreen's model, without the reconnect).
 *
 * One `struct dnsbl_op` per hook call: it owns a lookup per list (and a TXT lookup per hit
 * that needs a reason) and completes the call when the last lookup answered or timed out.
 * The session's context keeps the sum of the connect and HELO stages and the ops in flight,
 * so session_free can cancel them: no callback ever reaches freed memory. */
#include "filters/dnsbl.h"
#include "filters/dns.h"
#include "filters/passcache.h"
#include "proxy/config.h"
#include "proxy/counters.h"
#include "proxy/hook.h"
#include "proxy/log.h"
#include "proxy/netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- config ------------------------------------------------------------------------- */

static const char *const dnsbl_type_names[] = { "ip", "domain", NULL };
static const char *const dnsbl_action_names[] = { "reject", "tempfail", "score", "drop", "delay", NULL };

static const struct cfg_field dnsbl_list_fields[] = {
	{ "zone", CFG_STRING, offsetof(struct dnsbl_list_config, zone), NULL, .flags = CFG_REQUIRED,
	  .doc = "the list's DNS zone (bl.example.org)" },
	{ "weight", CFG_DOUBLE, offsetof(struct dnsbl_list_config, weight), "1", -1000, 1000,
	  .doc = "added to the sum when listed; negative for allow lists" },
	{ "type", CFG_ENUM, offsetof(struct dnsbl_list_config, type), "ip",
	  .choices = dnsbl_type_names, .doc = "ip: client address; domain: HELO name and MAIL FROM domain" },
	{ "codes", CFG_STRLIST, offsetof(struct dnsbl_list_config, codes), NULL,
	  .doc = "answers that count: \"127.0.0.2\", \"127.0.0.2-127.0.0.11\", \"127.0.0.[2..11]\" (postscreen), \"0x04/bitmask\" (default: any 127.x)" },
	{ "reason", CFG_STRING, offsetof(struct dnsbl_list_config, reason), NULL,
	  .doc = "reply text template with {ip} {zone} {txt} (default: the list's TXT record)" },
	{ "symbol", CFG_STRING, offsetof(struct dnsbl_list_config, symbol), NULL,
	  .doc = "symbol name for the rules engine (default DNSBL_<ZONE>, of reply_name when set)" },
	{ "reply_name", CFG_STRING, offsetof(struct dnsbl_list_config, reply_name), NULL,
	  .doc = "the list's name in the client's reply, {zone} and the symbol (default: zone): keeps a key in the zone (Spamhaus DQS) from the clients, as postscreen_dnsbl_reply_map" },
	{ .key = NULL }
};

static int dnsbl_list_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct dnsbl_list_config *l = obj;
	struct dnsbl_code code;

	if (l->zone == NULL || *l->zone == '\0' || strlen(l->zone) > 200)
		return cfg_error_key(p, n, "zone", -1, "expected a DNS zone name");
	if (l->reply_name != NULL) {
		if (*l->reply_name == '\0' || strlen(l->reply_name) > 200)
			return cfg_error_key(p, n, "reply_name", -1, "expected a name");
		for (const char *z = l->reply_name; *z; z++)
			if ((unsigned char)*z <= ' ' || *z == 0x7f || *z == ';' || *z == '"')
				return cfg_error_key(p, n, "reply_name", -1, "\"%s\": a name without blanks, ';' or '\"'",
				    l->reply_name);
	}
	for (const char *z = l->zone; *z; z++)
		if (!isalnum((unsigned char)*z) && *z != '-' && *z != '.' && *z != '_')
			return cfg_error_key(p, n, "zone", -1, "\"%s\": not a DNS name", l->zone);
	for (size_t i = 0; i < l->codes.n; i++)
		if (dnsbl_code_parse(l->codes.v[i], &code) < 0)
			return cfg_error_key(p, n, "codes", (long)i, "\"%s\": expected 127.0.0.2, 127.0.0.2-127.0.0.11, "
			    "127.0.0.[2..11], 127.0.0.[17;18] or 0x04/bitmask", l->codes.v[i]);
	return 0;
}

static const struct cfg_table dnsbl_list_table = {
	.name = "dnsbl.lists[]", .size = sizeof(struct dnsbl_list_config),
	.fields = dnsbl_list_fields, .validate = dnsbl_list_validate,
};

static const struct cfg_field dnsbl_config_fields[] = {
	{ "threshold", CFG_DOUBLE, offsetof(struct dnsbl_config, threshold), "1", -1000, 1000,
	  .doc = "summed weight at which `action` fires" },
	{ "allow_threshold", CFG_DOUBLE, offsetof(struct dnsbl_config, allow_threshold), "0", -1000, 0,
	  .doc = "negative: a client whose IP lists sum to this or less is allow-listed (DNSBL_ALLOW): "
	  "the other connect checks and greylisting are skipped, as postscreen_dnsbl_whitelist_threshold (0: off)" },
	{ "action", CFG_ENUM, offsetof(struct dnsbl_config, action), "reject",
	  .choices = dnsbl_action_names, .doc = "reject (550 5.7.1 at MAIL; a listed HELO name at HELO/EHLO) | tempfail (IP lists: 421 4.7.1 in place of the greeting, or to the first command after pregreet's teaser, and disconnect, RFC 5321 3.1; 450 4.7.1 at MAIL on a listener offering AUTH, at RCPT with exempt_recipients; domain lists: 450 4.7.1 at HELO/EHLO for the HELO name, at MAIL for the sender domain) | score (symbols only) | drop (IP lists: 521 5.7.1 in place of the greeting and disconnect, as postscreen_dnsbl_action = drop; domain lists: 550) | delay (spamd's tarpit, as reputation.deny_action: delay: the reply is held `delay` (for IP lists the greeting), then the client is refused as with reject)" },
	{ "delay", CFG_DURATION, offsetof(struct dnsbl_config, delay), "5s", 0, 600000,
	  .doc = "how long action delay holds the reply (the greeting for IP lists) before the refusal" },
	{ "lists", CFG_STRUCT_LIST, offsetof(struct dnsbl_config, lists), NULL,
	  .sub = &dnsbl_list_table, .doc = "the lists: { zone, weight, type, codes, reason }" },
	{ "pass_ttl", CFG_DURATION, offsetof(struct dnsbl_config, pass_ttl), "1h", 0, 604800000,
	  .doc = "a client that passed is not queried again for at most this long, or the smallest TTL of the lists' answers if shorter (0: no pass cache), as postscreen_dnsbl_max_ttl" },
	{ "pass_min_ttl", CFG_DURATION, offsetof(struct dnsbl_config, pass_min_ttl), "60s", 1000, 604800000,
	  .doc = "the least time a pass is remembered, however short the answers' TTLs, as postscreen_dnsbl_min_ttl" },
	{ "pass_store", CFG_STRING, offsetof(struct dnsbl_config, pass_store), "local",
	  .doc = "where passes are kept besides this process's memory (at most 100000 addresses): local (only there: a restart or another node tests again) | lmdb:/dir (this host, survives a restart; may be the reputation directory) | redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db] (every node sharing it), as postscreen_cache_map; a store that fails or does not answer in pass_store_timeout means not known: the lists are queried" },
	{ "pass_store_timeout", CFG_DURATION, offsetof(struct dnsbl_config, pass_store_timeout), "100ms", 1, 5000,
	  .doc = "Redis answer deadline of a pass_store lookup (the lists' queries start after it: keep it short)" },
	{ "timeout", CFG_DURATION, offsetof(struct dnsbl_config, timeout), "0", 0, 60000,
	  .doc = "time limit per lookup (0: dns.timeout)" },
	{ "skip_private", CFG_BOOL, offsetof(struct dnsbl_config, skip_private), "false",
	  .doc = "no lookups for loopback and private clients" },
	{ "error_flag_after", CFG_INT, offsetof(struct dnsbl_config, error_flag_after), "5", 1, 1000000,
	  .doc = "consecutive errors after which a list is flagged as failing in the log" },
	{ .key = NULL }
};

static int dnsbl_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	const struct dnsbl_config *c = obj;

	if (!passcache_spec_ok(c->pass_store))
		return cfg_error_key(p, n, "pass_store", -1, "expected local, lmdb:/dir, redis://host:port[/db] or redis-sentinel://host:port[,...]/master[/db]");
	return 0;
}

const struct cfg_table dnsbl_config_table = {
	.name = "dnsbl", .size = sizeof(struct dnsbl_config), .fields = dnsbl_config_fields,
	.validate = dnsbl_validate,
};

/* ---- code filters ------------------------------------------------------------------- */

static int dnsbl_parse_v4(const char *s, size_t len, uint32_t *out)
{
	char buf[32];
	struct in_addr a;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

/* One decimal octet value at *s (1-3 digits, <= 255); advances *s. */
static int dnsbl_parse_octet_value(const char **s, unsigned *out)
{
	unsigned v = 0;
	int digits = 0;

	while (isdigit((unsigned char)**s) && digits < 4) {
		v = v * 10 + (unsigned)(**s - '0');
		(*s)++;
		digits++;
	}
	if (digits == 0 || digits > 3 || v > 255)
		return -1;
	*out = v;
	return 0;
}

/* postscreen's reply filter: four octets, each a number or "[" items "]" with items
 * "n" or "n..m" separated by ";" (Postfix's ip_match). */
static int dnsbl_parse_octets(const char *s, struct dnsbl_code *out)
{
	for (int o = 0; o < 4; o++) {
		unsigned lo, hi;

		if (o > 0 && *s++ != '.')
			return -1;
		if (*s != '[') {
			if (dnsbl_parse_octet_value(&s, &lo) < 0)
				return -1;
			out->set[o][lo / 8] |= (uint8_t)(1u << (lo % 8));
			continue;
		}
		s++;
		for (;;) {
			if (dnsbl_parse_octet_value(&s, &lo) < 0)
				return -1;
			hi = lo;
			if (s[0] == '.' && s[1] == '.') {
				s += 2;
				if (dnsbl_parse_octet_value(&s, &hi) < 0 || hi < lo)
					return -1;
			}
			for (unsigned v = lo; v <= hi; v++)
				out->set[o][v / 8] |= (uint8_t)(1u << (v % 8));
			if (*s == ';') {
				s++;
				continue;
			}
			if (*s++ != ']')
				return -1;
			break;
		}
	}
	if (*s != '\0')
		return -1;
	out->octets = true;
	return 0;
}

int dnsbl_code_parse(const char *s, struct dnsbl_code *out)
{
	const char *slash, *dash;
	uint32_t a, b;

	if (s == NULL || out == NULL)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	memset(out, 0, sizeof(*out));
	if (strchr(s, '[') != NULL)
		return dnsbl_parse_octets(s, out);
	slash = strchr(s, '/');
	if (slash != NULL && strcmp(slash, "/bitmask") == 0) {
		char *end;
		unsigned long m;

		if (dnsbl_parse_v4(s, (size_t)(slash - s), &a) == 0) {
			m = a & 0x00ffffffu;	/* 127.0.0.4/bitmask: the bits below 127. */
		} else {
			errno = 0;
			m = strtoul(s, &end, 0);
			if (errno != 0 || end != slash || m == 0 || m > 0xffffffu)
				return -1;
		}
		if (m == 0)
			return -1;
		out->mask = (uint32_t)m;
		return 0;
	}
	if (slash != NULL) {	/* 127.0.0.0/24 */
		char *end;
		unsigned long pfx;

		if (dnsbl_parse_v4(s, (size_t)(slash - s), &a) < 0)
			return -1;
		errno = 0;
		pfx = strtoul(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || end == slash + 1 || pfx > 32)
			return -1;
		b = pfx == 0 ? 0 : 0xffffffffu << (32 - pfx);
		out->lo = a & b;
		out->hi = (a & b) | ~b;
		return 0;
	}
	dash = strchr(s, '-');
	if (dash != NULL) {
		if (dnsbl_parse_v4(s, (size_t)(dash - s), &a) < 0 ||
		    dnsbl_parse_v4(dash + 1, strlen(dash + 1), &b) < 0 || b < a)
			return -1;
		out->lo = a;
		out->hi = b;
		return 0;
	}
	if (dnsbl_parse_v4(s, strlen(s), &a) < 0)
		return -1;
	out->lo = out->hi = a;
	return 0;
}

bool dnsbl_code_match(const struct dnsbl_code *codes, size_t n, uint32_t answer)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		if (codes[i].octets) {
			bool all = true;

			for (int o = 0; o < 4 && all; o++) {
				unsigned v = (answer >> (24 - 8 * o)) & 0xffu;

				all = (codes[i].set[o][v / 8] >> (v % 8)) & 1u;
			}
			if (all)
				return true;
		} else if (codes[i].mask != 0) {
			if ((answer & codes[i].mask) != 0)
				return true;
		} else if (answer >= codes[i].lo && answer <= codes[i].hi) {
			return true;
		}
	}
	return false;
}

enum dnsbl_answer_class dnsbl_answer_classify(const struct dnsbl_code *codes, size_t n,
    uint32_t answer)
{
	/* Listings live in 127.0.0.0/8; 127.255.255.0/24 are Spamhaus-style error codes
	 * ("query via public resolver", "excessive queries"); anything else is a hijacking
	 * resolver's answer. None of those is a listing. */
	if ((answer >> 24) != 127 || (answer & 0xffffff00u) == 0x7fffff00u)
		return DNSBL_ANSWER_ERROR;
	return dnsbl_code_match(codes, n, answer) ? DNSBL_ANSWER_LISTED : DNSBL_ANSWER_FILTERED;
}

void dnsbl_symbol_name(const char *zone, char *out, size_t outlen)
{
	size_t o;

	if (outlen == 0)
		return;
	o = (size_t)snprintf(out, outlen, "DNSBL_");
	if (o >= outlen)
		o = outlen - 1;
	for (; zone && *zone && o + 1 < outlen; zone++)
		out[o++] = isalnum((unsigned char)*zone) ? (char)toupper((unsigned char)*zone) : '_';
	out[o] = '\0';
}

/* Copies src into out as printable ASCII (the reply must stay one clean line). */
static size_t dnsbl_append_clean(char *out, size_t outlen, size_t o, const char *src)
{
	for (; src && *src && o + 1 < outlen; src++) {
		unsigned char ch = (unsigned char)*src;

		out[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
	}
	out[o] = '\0';
	return o;
}

void dnsbl_reason_format(const char *tmpl, const char *ip, const char *zone, const char *txt,
    char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (const char *t = tmpl ? tmpl : "{txt}"; *t && o + 1 < outlen; ) {
		if (strncmp(t, "{ip}", 4) == 0) {
			o = dnsbl_append_clean(out, outlen, o, ip);
			t += 4;
		} else if (strncmp(t, "{zone}", 6) == 0) {
			o = dnsbl_append_clean(out, outlen, o, zone);
			t += 6;
		} else if (strncmp(t, "{txt}", 5) == 0) {
			o = dnsbl_append_clean(out, outlen, o, txt);
			t += 5;
		} else {
			char one[2] = { *t++, '\0' };

			o = dnsbl_append_clean(out, outlen, o, one);
		}
	}
}

/* ---- per worker --------------------------------------------------------------------- */

/* Error counters per zone, process-wide (all workers, all generations), never freed: a
 * zone's record survives reloads and there are only as many as zones ever configured. */
struct dnsbl_stats {
	struct dnsbl_stats *next;
	unsigned long consec_errors, total_errors;   /* __atomic */
	char zone[];
};

static pthread_mutex_t dnsbl_stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dnsbl_stats *dnsbl_stats_list;

/* Returns the counters of zone (created on first use), or NULL without memory. */
static struct dnsbl_stats *dnsbl_stats_for(const char *zone)
{
	struct dnsbl_stats *st;
	size_t n = strlen(zone);

	pthread_mutex_lock(&dnsbl_stats_mu);
	for (st = dnsbl_stats_list; st != NULL; st = st->next)
		if (strcasecmp(st->zone, zone) == 0)
			break;
	if (st == NULL && (st = calloc(1, sizeof(*st) + n + 1)) != NULL) {
		memcpy(st->zone, zone, n + 1);
		st->next = dnsbl_stats_list;
		dnsbl_stats_list = st;
	}
	pthread_mutex_unlock(&dnsbl_stats_mu);
	return st;
}

struct dnsbl_list {
	const struct dnsbl_list_config *c;
	const char *shown;         /* the name clients and mail see: reply_name or the zone */
	struct dnsbl_code *codes;
	size_t ncodes;
	char symbol[64];
	struct dnsbl_stats *stats;
};

struct dnsbl_worker {
	const struct mx_config *cfg;
	const struct dnsbl_config *dc;
	struct dns_resolver *r;
	struct dnsbl_list *lists;
	size_t nlists, nip, ndomain;
	uint64_t timeout;          /* ms per lookup */
	uint32_t pass_tag;         /* fingerprint of the lists, threshold and action: part of
	                              the pass cache key, so a reload that changes them does not
	                              wave through clients that passed under the old ones */
	struct passcache *pc;      /* pass_store lmdb or redis, or NULL */
};

/* The pass cache: process-wide, client address and section fingerprint -> indexes of the
 * lists that hit (allow lists, weights below the threshold), so their symbols come back on
 * a hit. */
static pthread_once_t dnsbl_pass_once = PTHREAD_ONCE_INIT;
static struct dns_cache *dnsbl_pass;

static void dnsbl_pass_init(void)
{
	dnsbl_pass = dns_cache_new(100000);
}

static struct dns_cache *dnsbl_pass_cache(void)
{
	pthread_once(&dnsbl_pass_once, dnsbl_pass_init);
	return dnsbl_pass;
}

/* The pass cache key: the client's address and the configuration it passed under. */
static void dnsbl_pass_key(const struct dnsbl_worker *w, const char *ip, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s#%08x", ip, (unsigned)w->pass_tag);
}

size_t dnsbl_pass_cache_flush(void)
{
	return dns_cache_clear(dnsbl_pass_cache());
}

size_t dnsbl_pass_cache_count(void)
{
	return dns_cache_count(dnsbl_pass_cache());
}

static uint32_t dnsbl_fnv(uint32_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static uint32_t dnsbl_fnv_str(uint32_t h, const char *s)
{
	return dnsbl_fnv(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* The same for every worker and every generation of an unchanged dnsbl section. */
static uint32_t dnsbl_pass_tag(const struct dnsbl_config *dc)
{
	uint32_t h = 2166136261u;

	h = dnsbl_fnv(h, &dc->threshold, sizeof(dc->threshold));
	h = dnsbl_fnv(h, &dc->allow_threshold, sizeof(dc->allow_threshold));
	h = dnsbl_fnv(h, &dc->action, sizeof(dc->action));
	for (size_t i = 0; i < dc->lists.n; i++) {
		const struct dnsbl_list_config *l = &((const struct dnsbl_list_config *)dc->lists.v)[i];

		h = dnsbl_fnv_str(h, l->zone);
		h = dnsbl_fnv(h, &l->type, sizeof(l->type));
		h = dnsbl_fnv(h, &l->weight, sizeof(l->weight));
		h = dnsbl_fnv_str(h, l->symbol);
		h = dnsbl_fnv_str(h, l->reply_name);
		for (size_t k = 0; k < l->codes.n; k++)
			h = dnsbl_fnv_str(h, l->codes.v[k]);
		h = dnsbl_fnv_str(h, "|");
	}
	return h;
}

static int dnsbl_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct dnsbl_config *dc = &cfg->dnsbl;
	struct dnsbl_worker *w;

	*wstate = NULL;
	if (dc->lists.n == 0)
		return 0;	/* not configured */
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->dc = dc;
	w->nlists = dc->lists.n;
	w->lists = calloc(w->nlists, sizeof(*w->lists));
	if (w->lists == NULL)
		goto fail;
	for (size_t i = 0; i < w->nlists; i++) {
		struct dnsbl_list *l = &w->lists[i];

		l->c = &((const struct dnsbl_list_config *)dc->lists.v)[i];
		l->stats = dnsbl_stats_for(l->c->zone);
		if (l->stats == NULL)
			goto fail;
		if (l->c->type == DNSBL_TYPE_DOMAIN)
			w->ndomain++;
		else
			w->nip++;
		l->shown = l->c->reply_name ? l->c->reply_name : l->c->zone;
		if (l->c->symbol != NULL && *l->c->symbol != '\0')
			snprintf(l->symbol, sizeof(l->symbol), "%s", l->c->symbol);
		else
			dnsbl_symbol_name(l->shown, l->symbol, sizeof(l->symbol));
		if (l->c->codes.n > 0) {
			l->codes = calloc(l->c->codes.n, sizeof(*l->codes));
			if (l->codes == NULL)
				goto fail;
			for (size_t k = 0; k < l->c->codes.n; k++)
				if (dnsbl_code_parse(l->c->codes.v[k], &l->codes[l->ncodes]) == 0)
					l->ncodes++;
		}
	}
	w->timeout = dc->timeout ? dc->timeout : (cfg->dns.timeout ? cfg->dns.timeout : 2000);
	w->pass_tag = dnsbl_pass_tag(dc);
	w->r = dns_resolver_for_loop(loop, cfg);
	if (w->r == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=dnsbl_error reason=\"no resolver\"");
		goto fail;
	}
	/* without it (logged) the passes stay in this process's memory only */
	if (dc->pass_ttl >= 1000 && w->nip > 0 && passcache_spec_shared(dc->pass_store))
		w->pc = passcache_new(dc->pass_store, "dnsbl", dc->pass_store_timeout, loop, worker);
	*wstate = w;
	return 0;
fail:
	if (w->lists != NULL)
		for (size_t i = 0; i < w->nlists; i++)
			free(w->lists[i].codes);
	free(w->lists);
	free(w);
	return -1;
}

static void dnsbl_worker_free(void *wstate)
{
	struct dnsbl_worker *w = wstate;

	if (w == NULL)
		return;
	dns_resolver_release(w->r);
	passcache_free(w->pc);
	for (size_t i = 0; i < w->nlists; i++)
		free(w->lists[i].codes);
	free(w->lists);
	free(w);
}

static unsigned dnsbl_stages(void *wstate)
{
	struct dnsbl_worker *w = wstate;
	unsigned st = 0;

	if (w == NULL)
		return 0;
	if (w->nip > 0)
		st |= 1u << HOOK_CONNECT;
	if (w->ndomain > 0)
		st |= 1u << HOOK_HELO | 1u << HOOK_MAIL;
	return st;
}

static uint64_t dnsbl_timeout_ms(void *wstate)
{
	struct dnsbl_worker *w = wstate;

	/* the pass store's answer, the A lookups, then a TXT for a hit's reason, plus slack:
	 * our own deadlines fire first, the chain's timeout is the backstop */
	return w ? 2 * w->timeout + 1000 + (w->pc ? w->dc->pass_store_timeout : 0) : 0;
}

static enum verdict_action dnsbl_on_error(void *wstate)
{
	return VERDICT_CONTINUE;	/* a list that does not answer never blocks mail */
}

/* ---- per session -------------------------------------------------------------------- */

struct dnsbl_op;

struct dnsbl_lookup {
	struct dnsbl_op *op;
	size_t list;               /* index into w->lists */
	struct dns_query *q;       /* in flight, or NULL */
	struct dns_query *txt_q;   /* the reason lookup, or NULL */
	bool hit, error, done;
	char answer[16];           /* the listing answer, for the log */
	char txt[256];
};

struct dnsbl_session {
	struct dnsbl_worker *w;
	struct hook_env *env;
	struct dnsbl_op *ops;      /* in flight */
	double connect_sum;        /* the IP lists at connect */
	double helo_sum;           /* the domain lists for the latest HELO/EHLO (replaced by a
	                              repeated EHLO, e.g. after STARTTLS, never added twice) */
	/* The pass store's lookup at connect, started when the stage begins (dnsbl_prefetch)
	 * so it runs together with the entries before this one (rDNS, the pregreet test's own
	 * store), or at the connect call when it was not */
	struct passcache_req *pass_req; /* in flight, or NULL */
	struct hook_call *pass_call;    /* the connect call waiting for it, or NULL */
	char pass_key[80];              /* the key it asked about */
	bool pass_answered;             /* answered before the connect call came: */
	char *pass_hits;                /* known: the payload (NUL added), else NULL */
	size_t pass_hits_len;
	uint64_t pass_left_ms;
};

struct dnsbl_op {
	struct dnsbl_session *s;
	struct dnsbl_op *next;
	struct hook_call *call;
	enum hook_stage stage;
	char subject[256];         /* the address or domain looked up */
	int outstanding;           /* lookups not yet answered */
	bool starting;             /* still inside dnsbl_run: don't finish early */
	uint32_t min_ttl;          /* the smallest TTL of the lists' answers (s; 0: none) */
	size_t nsym0;              /* the session's symbols before this stage's lookups */
	uint64_t started;          /* loop time the lookups went out: the TXT queries get
	                            * what is left of the timeout, not one of their own */
	size_t n;
	struct dnsbl_lookup lk[];
};

static void dnsbl_op_finish(struct dnsbl_op *op);

/* A sum of weights as the operator adds them: to a millionth (weights are decimals, and
 * 0.3 + 0.3 + 0.3 is 0.8999999999999999 in binary, which would miss a threshold of 0.9). */
static double dnsbl_sum_round(double sum)
{
	return round(sum * 1e6) / 1e6;
}

/* Loopback, RFC 1918, link-local and ULA clients (as dns_name_reverse sees them): never listed. */
static bool dnsbl_client_is_private(const struct sockaddr_storage *ss)
{
	struct netaddr a;
	const uint8_t *b = a.b;

	if (netaddr_client_from_sockaddr((const struct sockaddr *)ss, &a) < 0)
		return false;
	if (a.family == AF_INET)
		return b[0] == 127 || b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
		    (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254);
	/* ::1, fe80::/10, fc00::/7 */
	static const uint8_t loopback6[16] = { [15] = 1 };

	return memcmp(b, loopback6, 16) == 0 || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||
	    (b[0] & 0xfe) == 0xfc;
}

static void dnsbl_list_error(struct dnsbl_op *op, struct dnsbl_lookup *lk, const char *answer)
{
	struct dnsbl_list *l = &op->s->w->lists[lk->list];
	unsigned long consec, total;
	unsigned long every = (unsigned long)(op->s->w->dc->error_flag_after > 0 ?
	    op->s->w->dc->error_flag_after : 5);

	lk->error = true;
	counter_inc(COUNTER_DNSBL_ERRORS);	/* mxgate_dnsbl_errors_total, the status page's plot */
	consec = __atomic_add_fetch(&l->stats->consec_errors, 1, __ATOMIC_RELAXED);
	total = __atomic_add_fetch(&l->stats->total_errors, 1, __ATOMIC_RELAXED);
	log_event(LOG_LVL_INFO, op->s->env->session_id,
	    "event=dnsbl_error list=%s answer=%s client=%s subject=%s errors=%lu",
	    l->c->zone, answer, op->s->env->client_ip, op->subject, total);
	if (consec % every == 0)
		log_event(LOG_LVL_WARNING, NULL,
		    "event=dnsbl_list_failing list=%s consecutive_errors=%lu total_errors=%lu",
		    l->c->zone, consec, total);
}

/* A clean answer from the list: its run of errors is over. */
static void dnsbl_list_ok(struct dnsbl_list *l)
{
	__atomic_store_n(&l->stats->consec_errors, 0, __ATOMIC_RELAXED);
}

unsigned long dnsbl_list_errors(const char *zone)
{
	struct dnsbl_stats *st;
	unsigned long n = 0;

	pthread_mutex_lock(&dnsbl_stats_mu);
	for (st = dnsbl_stats_list; st != NULL; st = st->next)
		if (strcasecmp(st->zone, zone) == 0)
			n = __atomic_load_n(&st->total_errors, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&dnsbl_stats_mu);
	return n;
}

static void dnsbl_lookup_settle(struct dnsbl_op *op)
{
	if (--op->outstanding == 0 && !op->starting)
		dnsbl_op_finish(op);
}

static void dnsbl_txt_cb(void *arg, const struct dns_result *res)
{
	struct dnsbl_lookup *lk = arg;

	lk->txt_q = NULL;
	if (res->status == DNS_S_OK && res->n > 0)
		snprintf(lk->txt, sizeof(lk->txt), "%s", res->v[0]);
	dnsbl_lookup_settle(lk->op);
}

static void dnsbl_a_cb(void *arg, const struct dns_result *res)
{
	struct dnsbl_lookup *lk = arg;
	struct dnsbl_op *op = lk->op;
	struct dnsbl_worker *w = op->s->w;
	struct dnsbl_list *l = &w->lists[lk->list];
	char name[300];

	lk->q = NULL;
	/* postscreen's pass TTL: the smallest TTL of the answers (a negative one's from its
	 * SOA; none without an SOA), so a pass lasts no longer than the lists vouch for it */
	if ((res->status == DNS_S_OK || res->status == DNS_S_NXDOMAIN || res->status == DNS_S_NODATA) &&
	    res->ttl > 0 && (op->min_ttl == 0 || res->ttl < op->min_ttl))
		op->min_ttl = res->ttl;
	switch (res->status) {
	case DNS_S_OK: {
		const char *bad = NULL;

		for (size_t i = 0; i < res->n; i++) {
			struct in_addr a;
			uint32_t v;

			if (inet_pton(AF_INET, res->v[i], &a) != 1)
				continue;
			v = ntohl(a.s_addr);
			switch (dnsbl_answer_classify(l->codes, l->ncodes, v)) {
			case DNSBL_ANSWER_LISTED:
				if (!lk->hit)
					snprintf(lk->answer, sizeof(lk->answer), "%s", res->v[i]);
				lk->hit = true;
				break;
			case DNSBL_ANSWER_ERROR:
				bad = res->v[i];
				break;
			case DNSBL_ANSWER_FILTERED:
				break;
			}
		}
		if (bad != NULL)
			dnsbl_list_error(op, lk, bad);
		else
			dnsbl_list_ok(l);
		if (lk->hit)
			lk->error = false;	/* a real listing next to an odd code still counts */
		break;
	}
	case DNS_S_NXDOMAIN:
	case DNS_S_NODATA:
		dnsbl_list_ok(l);
		break;
	default:
		dnsbl_list_error(op, lk, dns_status_name(res->status));
		break;
	}
	/* A blocking hit needs its TXT for the reply, unless the template does without it. */
	if (lk->hit && l->c->weight > 0 && w->dc->action != DNSBL_ACTION_SCORE &&
	    (l->c->reason == NULL || strstr(l->c->reason, "{txt}") != NULL)) {
		int k = snprintf(name, sizeof(name), "%s.%s", op->subject, l->c->zone);

		if (op->stage == HOOK_CONNECT)
			k = dns_name_reverse((const struct sockaddr *)&op->s->env->client, l->c->zone,
			    name, sizeof(name));
		uint64_t spent = uv_now(op->s->env->loop) - op->started;

		/* a late A answer leaves its TXT only the rest of the timeout (none: no reason) */
		if (k >= 0 && (size_t)k < sizeof(name) && spent + 10 < w->timeout) {
			op->outstanding++;
			lk->txt_q = dns_query_start(w->r, DNS_T_TXT, name, w->timeout - spent, dnsbl_txt_cb, lk);
		}
	}
	dnsbl_lookup_settle(op);
}

/* postscreen_dnsbl_whitelist_threshold: an allow-listed client (its connect sum at or below
 * allow_threshold) skips the other connect checks (VERDICT_ACCEPT) and greylisting, which
 * looks for the symbol. */
static bool dnsbl_allow(const struct dnsbl_worker *w, struct hook_env *env, double sum,
    struct verdict *v)
{
	if (w->dc->allow_threshold >= 0 || sum > w->dc->allow_threshold)
		return false;
	hook_env_add_symbol(env, DNSBL_ALLOW_SYMBOL, 0, "allow-listed by the DNS lists");
	verdict_set(v, VERDICT_ACCEPT, 0, "dnsbl", NULL);
	return true;
}

static const char *dnsbl_stage_word(enum hook_stage st)
{
	return st == HOOK_CONNECT ? "client" : st == HOOK_HELO ? "helo" : "sender";
}

static void dnsbl_op_unlink(struct dnsbl_op *op)
{
	struct dnsbl_op **pp;

	for (pp = &op->s->ops; *pp != NULL; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			return;
		}
}

/* Was name among the first n symbols of env (those before this stage's lookups)? */
static bool dnsbl_had_symbol(const struct hook_env *env, size_t n, const char *name)
{
	for (size_t i = 0; i < n && i < env->nsymbols; i++)
		if (strcmp(env->symbols[i].name, name) == 0)
			return true;
	return false;
}

/* The indexes of the lists that hit, as a pass keeps them: "0,3" (truncated at cap). */
static void dnsbl_hits_join(char *const *v, size_t n, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", v[i]);
}

/* All lookups are in: sum, symbols, verdict, pass cache. Frees op. */
static void dnsbl_op_finish(struct dnsbl_op *op)
{
	struct dnsbl_session *s = op->s;
	struct dnsbl_worker *w = s->w;
	struct hook_env *env = s->env;
	struct hook_call *call = op->call;
	struct verdict v;
	double sum = 0, top = 0;
	struct dnsbl_lookup *best = NULL;
	bool errors = false;
	char hits[512] = "";
	size_t hl = 0;

	for (size_t i = 0; i < op->n; i++) {
		struct dnsbl_lookup *lk = &op->lk[i];
		const struct dnsbl_list *l = &w->lists[lk->list];

		errors |= lk->error;
		if (!lk->hit)
			continue;
		counter_inc(COUNTER_DNSBL_HITS);	/* mxgate_dnsbl_hits_total */
		sum += l->c->weight;
		/* a repeated EHLO (after STARTTLS) must not score the same listing twice; two
		 * lists of one zone (and so one symbol) both score at the first */
		if (op->stage != HOOK_HELO || !dnsbl_had_symbol(env, op->nsym0, l->symbol))
			hook_env_add_symbol(env, l->symbol, l->c->weight, l->shown);
		if (l->c->weight > top) {
			top = l->c->weight;
			best = lk;
		}
		if (hl < sizeof(hits))
			hl += (size_t)snprintf(hits + hl, sizeof(hits) - hl, "%s%s", hl ? "," : "",
			    l->c->zone);
	}
	if (op->stage == HOOK_CONNECT)
		s->connect_sum = sum;
	else if (op->stage == HOOK_HELO)
		s->helo_sum = sum;
	if (op->stage == HOOK_MAIL)
		sum += s->connect_sum + s->helo_sum;
	else
		sum = s->connect_sum + s->helo_sum;
	sum = dnsbl_sum_round(sum);

	memset(&v, 0, sizeof(v));
	v.action = VERDICT_CONTINUE;
	bool allowed = op->stage == HOOK_CONNECT && dnsbl_allow(w, env, sum, &v);

	if (hl > 0 || log_is_debug())
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=dnsbl stage=%s client=%s subject=%s score=%g threshold=%g lists=%s%s",
		    op->stage == HOOK_CONNECT ? "connect" : op->stage == HOOK_HELO ? "helo" : "mail",
		    env->client_ip, op->subject, sum, w->dc->threshold, hl ? hits : "-",
		    allowed ? " allow=yes" : "");
	if (!allowed && best != NULL && sum >= w->dc->threshold && w->dc->action != DNSBL_ACTION_SCORE) {
		const struct dnsbl_list *l = &w->lists[best->list];
		char reason[300] = "";

		if (l->c->reason != NULL || best->txt[0] != '\0')
			dnsbl_reason_format(l->c->reason, env->client_ip, l->shown, best->txt,
			    reason, sizeof(reason));
		if (w->dc->action == DNSBL_ACTION_TEMPFAIL)
			verdict_set(&v, VERDICT_TEMPFAIL, 450, "dnsbl",
			    "4.7.1 Service unavailable; %s [%s] blocked using %s%s%.280s",
			    dnsbl_stage_word(op->stage), op->subject, l->shown,
			    reason[0] ? "; " : "", reason);
		else    /* drop: 521 in place of the greeting (the session closes); no greeting
			 * is left to replace at HELO or MAIL, where it refuses as reject does.
			 * delay: refused as reject, the reply held first (spamd's tarpit; at connect
			 * the greeting, as reputation's deny_action: delay) */
			verdict_set(&v, VERDICT_REJECT,
			    w->dc->action == DNSBL_ACTION_DROP && op->stage == HOOK_CONNECT ? 521 : 550, "dnsbl",
			    "5.7.1 Service unavailable; %s [%s] blocked using %s%s%.280s",
			    dnsbl_stage_word(op->stage), op->subject, l->shown,
			    reason[0] ? "; " : "", reason);
		if (w->dc->action == DNSBL_ACTION_DELAY)
			v.delay_ms = w->dc->delay > 600000 ? 600000 : (uint32_t)w->dc->delay;
		{
			char zv[100];

			snprintf(v.log_extra, sizeof(v.log_extra), "list=%s",
			    log_val(zv, sizeof(zv), l->c->zone));
		}
	} else if (op->stage == HOOK_CONNECT && !errors && w->dc->pass_ttl >= 1000) {
		/* postscreen's pass cache: remember the zones that did hit (allow lists) */
		struct dns_result pr;
		char *hitv[64];
		char idx[64][12];
		char key[80];

		/* the lists by index, not by zone: one zone may be two lists with different
		 * codes and weights (postscreen's zen=127.0.0.[10..11]*-2 next to zen*3); the
		 * key's fingerprint keeps the indexes meaningful */
		memset(&pr, 0, sizeof(pr));
		pr.status = DNS_S_OK;
		pr.ttl = (uint32_t)(w->dc->pass_ttl / 1000);
		if (op->min_ttl > 0 && op->min_ttl < pr.ttl) {
			uint32_t floor_s = (uint32_t)(w->dc->pass_min_ttl / 1000);

			pr.ttl = op->min_ttl > floor_s ? op->min_ttl : floor_s < pr.ttl ? floor_s : pr.ttl;
		}
		pr.v = hitv;
		for (size_t i = 0; i < op->n && pr.n < 64; i++)
			if (op->lk[i].hit) {
				snprintf(idx[pr.n], sizeof(idx[pr.n]), "%zu", op->lk[i].list);
				hitv[pr.n] = idx[pr.n];
				pr.n++;
			}
		dnsbl_pass_key(w, env->client_ip, key, sizeof(key));
		dns_cache_put(dnsbl_pass_cache(), DNS_T_A, key, &pr, uv_now(env->loop));
		if (w->pc != NULL) {
			char hitsv[64 * 12];

			dnsbl_hits_join(hitv, pr.n, hitsv, sizeof(hitsv));
			passcache_note(w->pc, key, hitsv, strlen(hitsv), (uint64_t)pr.ttl * 1000);
		}
	}
	dnsbl_op_unlink(op);
	free(op);
	hook_call_done(call, &v);
}

static struct dnsbl_session *dnsbl_session_get(struct dnsbl_worker *w, int slot,
    struct hook_env *env)
{
	struct dnsbl_session *s = env->module_ctx[slot];

	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return NULL;
		s->w = w;
		s->env = env;
		env->module_ctx[slot] = s;
	}
	return s;
}

/* Is d a plausible domain to look up (letters, digits, '-', '_', dots)? */
static bool dnsbl_domain_ok(const char *d)
{
	size_t n = 0;

	if (d == NULL || *d == '\0' || *d == '.' || *d == '[')
		return false;
	for (; d[n]; n++)
		if (!isalnum((unsigned char)d[n]) && d[n] != '-' && d[n] != '.' && d[n] != '_')
			return false;
	return n <= 200 && strchr(d, '.') != NULL;
}

/* Starts the lookups of stage st for subject in the n lists of want_type; completes call
 * when they are in (at once when there is nothing to look up). */
static void dnsbl_query(struct dnsbl_worker *w, struct dnsbl_session *s, struct hook_call *call,
    enum hook_stage st, const char *subject, int want_type, size_t n)
{
	struct hook_env *env = s->env;
	struct dnsbl_op *op;

	op = calloc(1, sizeof(*op) + n * sizeof(op->lk[0]));
	if (op == NULL) {
		hook_call_done(call, NULL);
		return;
	}
	op->s = s;
	op->call = call;
	op->stage = st;
	snprintf(op->subject, sizeof(op->subject), "%s", subject);
	op->next = s->ops;
	s->ops = op;
	op->starting = true;
	op->started = uv_now(env->loop);
	op->nsym0 = env->nsymbols;
	for (size_t k = 0; k < w->nlists; k++) {
		char name[300];
		struct dnsbl_lookup *lk;
		int rc;

		if (w->lists[k].c->type != want_type)
			continue;
		lk = &op->lk[op->n++];
		lk->op = op;
		lk->list = k;
		if (want_type == DNSBL_TYPE_IP)
			rc = dns_name_reverse((const struct sockaddr *)&env->client, w->lists[k].c->zone,
			    name, sizeof(name));
		else
			rc = snprintf(name, sizeof(name), "%s.%s", subject, w->lists[k].c->zone) <
			    (int)sizeof(name) ? 0 : -1;
		if (rc < 0)
			continue;
		op->outstanding++;
		lk->q = dns_query_start(w->r, DNS_T_A, name, w->timeout, dnsbl_a_cb, lk);
	}
	op->starting = false;
	if (op->outstanding == 0)
		dnsbl_op_finish(op);	/* everything came from the cache */
}

/* A client that passed before (from where: "memory" or "store"): the IP lists that hit then
 * (hits: their indexes, comma separated) give their symbols and weights again, no lookup
 * is made; completes call (an allow-listed sum: ACCEPT). */
static void dnsbl_pass_restore(struct dnsbl_worker *w, struct dnsbl_session *s, struct hook_call *call,
    const char *hits, uint64_t left_s, const char *from)
{
	struct hook_env *env = s->env;
	struct verdict v;

	for (const char *p = hits; *p != '\0';) {
		char *end;
		unsigned long k = strtoul(p, &end, 10);

		if (end != p && (*end == ',' || *end == '\0') && k < w->nlists &&
		    w->lists[k].c->type == DNSBL_TYPE_IP) {
			hook_env_add_symbol(env, w->lists[k].symbol, w->lists[k].c->weight,
			    w->lists[k].shown);
			s->connect_sum += w->lists[k].c->weight;
		}
		p = strchr(p, ',');
		if (p == NULL)
			break;
		p++;
	}
	if (log_is_debug())
		log_event(LOG_LVL_DEBUG, env->session_id,
		    "event=dnsbl_pass_cache client=%s ttl=%llu from=%s", env->client_ip,
		    (unsigned long long)left_s, from);
	memset(&v, 0, sizeof(v));
	s->connect_sum = dnsbl_sum_round(s->connect_sum);
	if (dnsbl_allow(w, env, s->connect_sum, &v)) {
		hook_call_done(call, &v);
		return;
	}
	hook_call_done(call, NULL);
}

/* The pass store's answer at connect: a pass restores (and fills this process's cache for
 * the time it has left), anything else queries the lists. Completes call. */
static void dnsbl_pass_store_answer(struct dnsbl_worker *w, struct dnsbl_session *s,
    struct hook_call *call, bool known, const char *val, size_t vlen, uint64_t left_ms)
{
	char hits[PASSCACHE_VALUE_MAX + 1];

	if (known && left_ms >= 1000 && vlen < sizeof(hits)) {
		struct dns_result pr;
		char *hitv[64];
		char key[80];

		memcpy(hits, val, vlen);
		hits[vlen] = '\0';
		memset(&pr, 0, sizeof(pr));
		pr.status = DNS_S_OK;
		pr.ttl = (uint32_t)(left_ms / 1000);
		pr.v = hitv;
		for (char *p = hits, *save = NULL, *t; pr.n < 64 && (t = strtok_r(p, ",", &save)) != NULL; p = NULL)
			hitv[pr.n++] = t;
		dnsbl_pass_key(w, s->env->client_ip, key, sizeof(key));
		dns_cache_put(dnsbl_pass_cache(), DNS_T_A, key, &pr, uv_now(s->env->loop));
		memcpy(hits, val, vlen);        /* strtok_r cut it */
		hits[vlen] = '\0';
		dnsbl_pass_restore(w, s, call, hits, left_ms / 1000, "store");
		return;
	}
	dnsbl_query(w, s, call, HOOK_CONNECT, s->env->client_ip, DNSBL_TYPE_IP, w->nip);
}

/* Drops a prefetched answer not taken. */
static void dnsbl_pass_forget(struct dnsbl_session *s)
{
	free(s->pass_hits);
	s->pass_hits = NULL;
	s->pass_hits_len = 0;
	s->pass_answered = false;
}

static void dnsbl_pass_store_cb(void *arg, bool known, const char *val, size_t vlen, uint64_t left_ms)
{
	struct dnsbl_session *s = arg;
	struct hook_call *call = s->pass_call;

	s->pass_req = NULL;
	if (call == NULL) {
		/* prefetched: the connect call has not come yet, it takes the answer */
		dnsbl_pass_forget(s);
		s->pass_answered = true;
		s->pass_left_ms = left_ms;
		if (known && (s->pass_hits = malloc(vlen + 1)) != NULL) {
			memcpy(s->pass_hits, val, vlen);
			s->pass_hits[vlen] = '\0';
			s->pass_hits_len = vlen;
		}
		return;
	}
	s->pass_call = NULL;
	dnsbl_pass_store_answer(s->w, s, call, known, val, vlen, left_ms);
}

/* The connect stage begins: a client this process's memory does not know is looked up in
 * the pass store now (Redis: an answer that takes a while), while the entries before this
 * one run; the connect call takes the answer (dnsbl_run). */
static void dnsbl_prefetch(void *wstate, int slot, struct hook_env *env, enum hook_stage st)
{
	struct dnsbl_worker *w = wstate;
	struct dnsbl_session *s;
	struct dns_result *pc;
	struct passcache_req *req;
	char key[80];

	if (st != HOOK_CONNECT || w == NULL || w->pc == NULL || passcache_answers_inline(w->pc) ||
	    (w->dc->skip_private && dnsbl_client_is_private(&env->client)))
		return;
	dnsbl_pass_key(w, env->client_ip, key, sizeof(key));
	pc = dns_cache_get(dnsbl_pass_cache(), DNS_T_A, key, uv_now(env->loop));
	if (pc != NULL) {
		dns_result_free(pc);
		return;                 /* the connect call finds it in memory */
	}
	s = dnsbl_session_get(w, slot, env);
	if (s == NULL || s->pass_req != NULL)
		return;
	dnsbl_pass_forget(s);
	snprintf(s->pass_key, sizeof(s->pass_key), "%s", key);
	if (passcache_lookup(w->pc, key, dnsbl_pass_store_cb, s, &req) == 0)
		s->pass_req = req;
	else
		s->pass_answered = true;        /* failed (counted, logged): not known */
}

static void dnsbl_run(void *wstate, int slot, struct hook_call *call)
{
	struct dnsbl_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	enum hook_stage st = hook_call_stage(call);
	struct dnsbl_session *s;
	const char *subject = NULL;
	char dombuf[256];
	int want_type;
	size_t n;

	s = dnsbl_session_get(w, slot, env);
	if (s == NULL)
		goto pass;
	if (st == HOOK_CONNECT) {
		struct dns_result *pc;

		if (w->dc->skip_private && dnsbl_client_is_private(&env->client))
			goto pass;
		subject = env->client_ip;
		want_type = DNSBL_TYPE_IP;
		n = w->nip;
		pc = NULL;
		if (n > 0 && w->dc->pass_ttl >= 1000) {
			char key[80];

			dnsbl_pass_key(w, env->client_ip, key, sizeof(key));
			pc = dns_cache_get(dnsbl_pass_cache(), DNS_T_A, key, uv_now(env->loop));
			if (pc == NULL && w->pc != NULL && strcmp(s->pass_key, key) == 0 &&
			    (s->pass_answered || s->pass_req != NULL)) {
				/* asked when the stage began (dnsbl_prefetch): its answer, now or
				 * when it comes */
				if (s->pass_req != NULL) {
					s->pass_call = call;
					return;
				}
				char *h = s->pass_hits;
				size_t hl = s->pass_hits_len;

				s->pass_hits = NULL;
				dnsbl_pass_forget(s);
				dnsbl_pass_store_answer(w, s, call, h != NULL, h, hl, s->pass_left_ms);
				free(h);
				return;
			}
			if (pc == NULL && w->pc != NULL) {
				struct passcache_req *req;

				/* not in this process's memory: the store (a restart, another node);
				 * whatever fails there is not known and the lists are queried */
				passcache_cancel(s->pass_req);  /* one for another key: not ours */
				s->pass_req = NULL;
				dnsbl_pass_forget(s);
				s->pass_call = call;
				if (passcache_lookup(w->pc, key, dnsbl_pass_store_cb, s, &req) == 0) {
					s->pass_req = req;
					return;
				}
				s->pass_call = NULL;
			}
		}
		if (pc != NULL) {
			/* passed before: restore the symbols of the lists that hit, skip the lookups
			 * (a store lookup the stage began with is not needed) */
			char hits[64 * 12];
			uint32_t ttl = pc->ttl;

			passcache_cancel(s->pass_req);
			s->pass_req = NULL;
			dnsbl_pass_forget(s);

			dnsbl_hits_join(pc->v, pc->n, hits, sizeof(hits));
			dns_result_free(pc);
			dnsbl_pass_restore(w, s, call, hits, ttl, "memory");
			return;
		}
	} else if (st == HOOK_HELO) {
		s->helo_sum = 0;	/* a new HELO/EHLO replaces the previous one's listings */
		subject = env->helo;
		want_type = DNSBL_TYPE_DOMAIN;
		n = w->ndomain;
	} else if (st == HOOK_MAIL) {
		const char *at = env->mail_from ? strrchr(env->mail_from, '@') : NULL;

		/* an authenticated client (SMTP AUTH): the lists judge unauthenticated mail (its
		 * address's listing at connect is lifted by AUTH too; see proxy/auth.c) */
		if (env->auth_user != NULL)
			goto pass;

		subject = at ? at + 1 : NULL;
		want_type = DNSBL_TYPE_DOMAIN;
		n = w->ndomain;
	} else {
		goto pass;
	}
	if (want_type == DNSBL_TYPE_DOMAIN && subject != NULL) {
		/* "example.org." and "example.org" are one name */
		size_t len = strlen(subject);

		if (len > 0 && len < sizeof(dombuf) && subject[len - 1] == '.') {
			memcpy(dombuf, subject, len - 1);
			dombuf[len - 1] = '\0';
			subject = dombuf;
		}
	}
	if (n == 0 || subject == NULL || (want_type == DNSBL_TYPE_DOMAIN && !dnsbl_domain_ok(subject)))
		goto pass;
	dnsbl_query(w, s, call, st, subject, want_type, n);
	return;
pass:
	hook_call_done(call, NULL);
}

static void dnsbl_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct dnsbl_session *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	passcache_cancel(s->pass_req);
	free(s->pass_hits);
	while (s->ops != NULL) {
		struct dnsbl_op *op = s->ops;

		s->ops = op->next;
		for (size_t i = 0; i < op->n; i++) {
			dns_query_cancel(op->lk[i].q);
			dns_query_cancel(op->lk[i].txt_q);
		}
		free(op);
	}
	free(s);
	env->module_ctx[slot] = NULL;
}

const struct hook_module dnsbl_module = {
	.name = "dnsbl",
	.worker_init = dnsbl_worker_init,
	.worker_free = dnsbl_worker_free,
	.stages = dnsbl_stages,
	.run = dnsbl_run,
	.prefetch = dnsbl_prefetch,
	.session_free = dnsbl_session_free,
	.timeout_ms = dnsbl_timeout_ms,
	.on_error = dnsbl_on_error,
};
