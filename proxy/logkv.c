/* logkv.c — a log line's key=value text back into fields, and as JSON (see logkv.h). */
#include "logkv.h"
#include "jsonw.h"

#include <stdlib.h>
#include <string.h>

static int logkv_hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	    c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes the quoted value whose inside starts at t[i] (past the opening quote) up to its
 * closing quote (or the end) into out; returns the index past the closing quote. log_val's
 * escapes: \" \\ \r \n \t \xHH; any other backslash stays as it is. */
static size_t logkv_unquote(const char *t, size_t i, size_t len, char *out, size_t *olen)
{
	size_t k = 0;

	while (i < len && t[i] != '"') {
		char c = t[i];
		if (c == '\\' && i + 1 < len) {
			char e = t[i + 1];
			if (e == '"' || e == '\\')
				c = e, i++;
			else if (e == 'r' || e == 'n' || e == 't')
				c = e == 'r' ? '\r' : e == 'n' ? '\n' : '\t', i++;
			else if (e == 'x' && i + 3 < len && logkv_hex(t[i + 2]) >= 0 && logkv_hex(t[i + 3]) >= 0)
				c = (char)(logkv_hex(t[i + 2]) * 16 + logkv_hex(t[i + 3])), i += 3;
		}
		out[k++] = c;
		i++;
	}
	*olen = k;
	return i < len ? i + 1 : i;
}

/* See logkv.h. */
size_t logkv_parse(const char *text, size_t len, struct logkv_field *f, size_t nf, char *scratch,
    size_t scap, const char **rest, size_t *rest_len)
{
	size_t n = 0, i = 0, used = 0;
	struct logkv_field *prev = NULL;     /* an unquoted value a bare word may continue */

	*rest = NULL;
	*rest_len = 0;
	while (i < len) {
		size_t w = i, eq, end;

		if (text[i] == ' ') {
			i++;
			continue;
		}
		for (end = w; end < len && text[end] != ' '; end++)
			;
		eq = w;
		while (eq < end && text[eq] != '=' && text[eq] != '"')
			eq++;
		if (eq == end || text[eq] != '=' || eq == w) {
			/* a word with no key: the rest of an unquoted value written with blanks
			 * (a reason=%s of strerror), else a word of its own */
			if (prev != NULL) {
				prev->vlen = (size_t)(text + end - prev->val);
				i = end;
				continue;
			}
			if (n == nf)
				goto full;
			f[n++] = (struct logkv_field){ .key = NULL, .klen = 0, .val = text + w, .vlen = end - w };
			i = end;
			continue;
		}
		if (n == nf)
			goto full;
		struct logkv_field *x = &f[n++];
		x->key = text + w;
		x->klen = eq - w;
		if (eq + 1 < len && text[eq + 1] == '"') {
			/* the decoded value is no longer than its text: scratch holds them all */
			size_t dl = 0;
			char *out = scratch + used;
			if (used + (len - eq) > scap) {
				n--;
				goto full;
			}
			i = logkv_unquote(text, eq + 2, len, out, &dl);
			/* anything up to the next blank after the closing quote belongs to it */
			while (i < len && text[i] != ' ')
				out[dl++] = text[i++];
			x->val = out;
			x->vlen = dl;
			x->quoted = true;
			used += dl;
			prev = NULL;
		} else {
			x->val = text + eq + 1;
			x->vlen = end - eq - 1;
			x->quoted = false;
			prev = x;
			i = end;
		}
		continue;
full:
		*rest = text + w;
		*rest_len = len - w;
		break;
	}
	return n;
}

/* The keys whose values are numbers (sorted by octet; the keys mxgate's log lines write
 * with a numeric conversion, less those also written with text: `id`, `rcpts`, `state`,
 * `rules`, `skipped` ...; tests/integration/test_log_number_keys.py reads the sources and
 * fails for a numeric key that is neither here nor on its TEXT_TOO list). Every other field
 * is a string whatever its value looks like, so a field's JSON type never changes between
 * lines (an index that mapped it one way refuses
 * the other: Postfix's all-digit queue ids, a HELO of "123"). */
static const char *const logkv_number_keys[] = {
	"accept_domains", "accepted", "after_ms", "already", "answered", "attempt", "avail", "buckets",
	"busy", "bytes", "capacity", "cleared", "client_family", "code", "commands", "compiled",
	"connections", "consecutive_errors", "deadline_ms", "delay_ms", "delivered", "drain_timeout_ms",
	"dropped", "elapsed_ms", "entries", "errors", "evicted", "failed", "fails", "failures", "fd",
	"files", "flushed_ms", "full", "generation", "hits", "i", "idle_ms", "instance", "kept", "keys",
	"latency_us", "learned", "left", "lift", "local_family", "lookups", "map_bytes", "map_records",
	"max", "max_connections", "max_entries", "max_keys", "max_message_size", "max_size", "messages",
	"misses", "more", "moved", "ms", "nofile", "nuls", "octets", "open", "passes", "port",
	"prefiltered", "probe_len", "rc", "read", "received", "records", "refused", "rejected",
	"released", "remaining", "report_safe", "requests", "required", "retry_ms", "route",
	"routes_domains", "rule", "running", "runs", "score", "sessions", "share", "size", "skipped_eval",
	"skipped_net", "skipped_regex", "skipped_zero", "spam", "stale_tmp", "status", "tempfailed",
	"threshold", "too_big", "total", "total_errors", "ttl", "uid", "uncounted", "unlogged",
	"used_pct", "user_failures", "wait", "waited_ms", "worker", "workers",
};

static int logkv_key_cmp(const void *k, const void *e)
{
	const struct logkv_field *f = k;
	const char *s = *(const char *const *)e;
	size_t n = strlen(s);
	int c = memcmp(f->key, s, f->klen < n ? f->klen : n);

	return c != 0 ? c : f->klen < n ? -1 : f->klen > n ? 1 : 0;
}

/* See logkv.h. */
bool logkv_is_number(const struct logkv_field *f)
{
	const char *v = f->val;
	size_t n = f->vlen, i = 0;

	if (f->quoted || f->klen == 0 || n == 0 || n > 20)
		return false;
	if (bsearch(f, logkv_number_keys, sizeof(logkv_number_keys) / sizeof(logkv_number_keys[0]),
	    sizeof(logkv_number_keys[0]), logkv_key_cmp) == NULL)
		return false;
	if (v[i] == '-')
		i++;
	if (i == n || v[i] < '0' || v[i] > '9')
		return false;
	if (v[i] == '0' && i + 1 < n && v[i + 1] != '.')
		return false;                     /* 007: not a JSON number */
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++;
	if (i < n && v[i] == '.') {
		i++;
		if (i == n)
			return false;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
	}
	return i == n;
}

static bool logkv_same_key(const struct logkv_field *a, const struct logkv_field *b)
{
	return a->klen == b->klen && a->klen > 0 && memcmp(a->key, b->key, a->klen) == 0;
}

static void logkv_value(struct jsonw *j, const char *key, const struct logkv_field *f)
{
	if (logkv_is_number(f))
		jsonw_raw(j, key, f->val, f->vlen);
	else
		jsonw_strn(j, key, f->val, f->vlen);
}

/* See logkv.h. */
void logkv_json(struct strbuf *out, const char *ts, const char *level, const char *id, const char *text,
    size_t len)
{
	struct logkv_field f[LOGKV_MAX];
	char scratch[4096], *big = NULL, *sc = scratch;
	const char *rest;
	size_t rest_len, n;
	struct jsonw j;
	bool words = false;

	if (len > sizeof(scratch)) {
		big = malloc(len);
		if (big == NULL)
			len = sizeof(scratch);        /* the tail goes to "unparsed" */
		else
			sc = big;
	}
	n = logkv_parse(text, len, f, LOGKV_MAX, sc, big ? len : sizeof(scratch), &rest, &rest_len);
	jsonw_init(&j, out);
	jsonw_obj(&j, NULL);
	jsonw_str(&j, "ts", ts);
	jsonw_str(&j, "level", level);
	if (id != NULL && id[0] != '\0' && strcmp(id, "-") != 0)
		jsonw_str(&j, "session", id);
	for (size_t i = 0; i < n; i++) {
		char key[80];
		size_t seen = 0, count = 0;

		if (f[i].klen == 0) {
			words = true;
			continue;
		}
		for (size_t k = 0; k < i && seen == 0; k++)
			seen = logkv_same_key(&f[k], &f[i]);
		if (seen)
			continue;
		for (size_t k = i; k < n; k++)
			count += logkv_same_key(&f[k], &f[i]);
		bool reserved = (f[i].klen == 2 && memcmp(f[i].key, "ts", 2) == 0) ||
		    (f[i].klen == 5 && memcmp(f[i].key, "level", 5) == 0) ||
		    (f[i].klen == 7 && memcmp(f[i].key, "session", 7) == 0) ||
		    (f[i].klen == 8 && memcmp(f[i].key, "unparsed", 8) == 0);
		size_t kl = f[i].klen < sizeof(key) - 7 ? f[i].klen : sizeof(key) - 7;
		size_t off = reserved ? 6 : 0;
		if (reserved)
			memcpy(key, "field_", 6);
		memcpy(key + off, f[i].key, kl);
		key[off + kl] = '\0';
		if (count == 1) {
			logkv_value(&j, key, &f[i]);
			continue;
		}
		jsonw_arr(&j, key);
		for (size_t k = i; k < n; k++)
			if (logkv_same_key(&f[k], &f[i]))
				logkv_value(&j, NULL, &f[k]);
		jsonw_end(&j);
	}
	if (words || rest != NULL) {
		struct strbuf u = { 0 };
		for (size_t i = 0; i < n; i++) {
			if (f[i].klen != 0)
				continue;
			if (u.len > 0)
				strbuf_append(&u, " ", 1);
			strbuf_append(&u, f[i].val, f[i].vlen);
		}
		if (rest != NULL) {
			if (u.len > 0)
				strbuf_append(&u, " ", 1);
			strbuf_append(&u, rest, rest_len);
		}
		jsonw_strn(&j, "unparsed", u.v ? u.v : "", u.len);
		strbuf_free(&u);
	}
	jsonw_end(&j);
	free(big);
}
