/* opstats.c — per-worker top-K tables and the main thread's minute history (opstats.h). */
#include "opstats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "domain.h"
#include "hook.h"

#define OPSTATS_SLOTS 64            /* as many as workers can be (main.c MAX_WORKERS) */

struct opstats_slot {
	pthread_mutex_t mu;
	bool used;                  /* noted anything since the start (or opstats_reset) */
	struct opstats_top t;
};

static struct opstats_slot opstats_slots[OPSTATS_SLOTS];
static pthread_once_t opstats_once = PTHREAD_ONCE_INIT;

static void opstats_init_slots(void)
{
	for (int i = 0; i < OPSTATS_SLOTS; i++)
		pthread_mutex_init(&opstats_slots[i].mu, NULL);
}

static struct opstats_slot *opstats_slot(int worker)
{
	pthread_once(&opstats_once, opstats_init_slots);
	return &opstats_slots[(unsigned)worker % OPSTATS_SLOTS];
}

void opstats_note_session(int worker, const char *client_ip)
{
	struct opstats_slot *s = opstats_slot(worker);

	pthread_mutex_lock(&s->mu);
	s->used = true;
	topk_add(&s->t.sessions, client_ip, 1);
	pthread_mutex_unlock(&s->mu);
}

/* The domain key of addr into out (TOPK_KEY_MAX): lower case as domain_normalize gives it
 * (a domain too long for it is cut, lower-cased); "<>" for the null sender, "-" for an
 * address without a domain. Returns out. */
static const char *opstats_domain_key(const char *addr, char *out)
{
	char d[DOMAIN_MAX + 1];
	const char *dom = domain_of_address(addr);
	size_t i;

	if (*addr == '\0')
		return strcpy(out, "<>");
	if (dom == NULL || *dom == '\0')
		return strcpy(out, "-");
	if (domain_normalize(dom, strlen(dom), d, sizeof(d)) >= 0)
		dom = d;
	for (i = 0; dom[i] && i < TOPK_KEY_MAX - 1; i++)
		out[i] = (char)(dom[i] >= 'A' && dom[i] <= 'Z' ? dom[i] + 32 : dom[i]);
	out[i] = '\0';
	return out;
}

/* The address key of addr into out (TOPK_KEY_MAX): ASCII lower case, cut. Returns out. */
static const char *opstats_addr_key(const char *addr, char *out)
{
	size_t i;

	for (i = 0; addr[i] && i < TOPK_KEY_MAX - 1; i++)
		out[i] = (char)(addr[i] >= 'A' && addr[i] <= 'Z' ? addr[i] + 32 : addr[i]);
	out[i] = '\0';
	return out;
}

void opstats_note_rcpt(int worker, const char *sender, const char *rcpt, bool accepted)
{
	struct opstats_slot *s;
	char sk[TOPK_KEY_MAX], rk[TOPK_KEY_MAX], dk[TOPK_KEY_MAX];
	enum opstats_mail_count c = accepted ? OPS_RCPT_ACCEPTED : OPS_RCPT_REFUSED;

	if (sender == NULL || rcpt == NULL || *rcpt == '\0')
		return;
	opstats_domain_key(sender, sk);
	opstats_addr_key(rcpt, rk);
	opstats_domain_key(rcpt, dk);
	s = opstats_slot(worker);
	pthread_mutex_lock(&s->mu);
	s->used = true;
	topk_add(&s->t.mail[OPS_BY_SENDER_DOMAIN][c], sk, 1);
	topk_add(&s->t.mail[OPS_BY_RCPT][c], rk, 1);
	topk_add(&s->t.mail[OPS_BY_RCPT_DOMAIN][c], dk, 1);
	pthread_mutex_unlock(&s->mu);
}

/* Counts rcpts[0..n) by address and domain in what (the slot's lock held); for
 * OPS_MSG_DELIVERED only the ones whose status is 2xx. */
static void opstats_note_rcpts_locked(struct opstats_slot *s, const struct rcpt *rcpts, size_t n,
    enum opstats_mail_count what)
{
	char rk[TOPK_KEY_MAX], dk[TOPK_KEY_MAX];

	for (size_t i = 0; i < n; i++) {
		if (rcpts[i].addr == NULL || rcpts[i].addr[0] == '\0')
			continue;
		/* an LMTP server refused it after the dot (smtp_tx.c): not delivered to it */
		if (what == OPS_MSG_DELIVERED && rcpts[i].status / 100 != 2)
			continue;
		/* keyed under the lock: a few octets each, no call that can block */
		topk_add(&s->t.mail[OPS_BY_RCPT][what], opstats_addr_key(rcpts[i].addr, rk), 1);
		topk_add(&s->t.mail[OPS_BY_RCPT_DOMAIN][what], opstats_domain_key(rcpts[i].addr, dk), 1);
	}
}

void opstats_note_message(int worker, const char *sender, const struct rcpt *rcpts, size_t n,
    enum opstats_mail_count what)
{
	struct opstats_slot *s;
	char sk[TOPK_KEY_MAX];

	if (sender == NULL || (unsigned)what >= OPS__NCOUNTS)
		return;
	opstats_domain_key(sender, sk);
	s = opstats_slot(worker);
	pthread_mutex_lock(&s->mu);
	s->used = true;
	topk_add(&s->t.mail[OPS_BY_SENDER_DOMAIN][what], sk, 1);
	opstats_note_rcpts_locked(s, rcpts, n, what);
	pthread_mutex_unlock(&s->mu);
}

void opstats_note_rcpts(int worker, const struct rcpt *rcpts, size_t n, enum opstats_mail_count what)
{
	struct opstats_slot *s;

	if ((unsigned)what >= OPS__NCOUNTS)
		return;
	s = opstats_slot(worker);
	pthread_mutex_lock(&s->mu);
	s->used = true;
	opstats_note_rcpts_locked(s, rcpts, n, what);
	pthread_mutex_unlock(&s->mu);
}

void opstats_note_refusal(int worker, const char *client_ip, const char *stage, const char *reason,
    bool tempfail)
{
	struct opstats_slot *s = opstats_slot(worker);
	char key[TOPK_KEY_MAX];

	counter_inc(tempfail ? COUNTER_TEMPFAILS : COUNTER_REFUSALS);
	snprintf(key, sizeof(key), "%s/%s", stage && *stage ? stage : "-", reason && *reason ? reason : "filter");
	pthread_mutex_lock(&s->mu);
	s->used = true;
	topk_add(&s->t.refusals, client_ip, 1);
	topk_add(&s->t.reasons, key, 1);
	pthread_mutex_unlock(&s->mu);
}

/* The line counts (opstats_refusal): one table for the process, behind its own mutex, held
 * for a scan of at most OPSTATS_EVENT_ROWS short keys (refusals are not the hot path).
 * Measured (session 28): a flood of clients refused at connect (ratelimit, 421), two
 * workers, about 10700 refusals a second on a loaded 2-core machine: 27 futex calls in 10 s
 * for every lock of the process (the mutex is all but never contended), and
 * opstats_refusal, opstats_event_find and every pthread_mutex_lock together under 0.5 % of
 * mxgate's CPU, beside 5 % in write(2) for the log lines. Per-worker tables summed on read
 * (as counters.c) would save nothing measurable; kept as it is. */
static struct {
	pthread_mutex_t mu;
	size_t n;
	struct opstats_event_row row[OPSTATS_EVENT_ROWS];
} opstats_events = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The row of (tempfail, stage, reason), or NULL. Caller holds the mutex. */
static struct opstats_event_row *opstats_event_find(bool tempfail, const char *stage, const char *reason)
{
	for (size_t i = 0; i < opstats_events.n; i++) {
		struct opstats_event_row *e = &opstats_events.row[i];
		/* keys are kept cut to the row's size: a longer word matches its cut */
		if (e->tempfail == tempfail && strncmp(e->stage, stage, sizeof(e->stage) - 1) == 0 &&
		    strncmp(e->reason, reason, sizeof(e->reason) - 1) == 0)
			return e;
	}
	return NULL;
}

static struct opstats_event_row *opstats_event_add(bool tempfail, const char *stage, const char *reason)
{
	struct opstats_event_row *e = &opstats_events.row[opstats_events.n++];

	e->tempfail = tempfail;
	snprintf(e->stage, sizeof(e->stage), "%s", stage);
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	e->count = 0;
	return e;
}

/* Counts one line. The last two rows are kept for stage and reason "other", one per event,
 * where lines go once the table is full. */
static void opstats_count_event(bool tempfail, const char *stage, const char *reason)
{
	pthread_mutex_lock(&opstats_events.mu);
	struct opstats_event_row *e = opstats_event_find(tempfail, stage, reason);
	if (e == NULL && opstats_events.n < OPSTATS_EVENT_ROWS - 2)
		e = opstats_event_add(tempfail, stage, reason);
	if (e == NULL && (e = opstats_event_find(tempfail, "other", "other")) == NULL)
		e = opstats_event_add(tempfail, "other", "other");
	e->count++;
	pthread_mutex_unlock(&opstats_events.mu);
}

void opstats_refusal(const struct opstats_refusal *r, const char *fmt, ...)
{
	const char *reason = r->reason && *r->reason ? r->reason : "filter";
	const char *stage = r->stage && *r->stage ? r->stage : "-";
	/* The reply's class decides, when there is a code: a 421 is event=tempfail and counts
	 * in tempfails_total, so the line, refusal_events_total and the decision's counter
	 * agree (the connect stage's limits said event=reject and counted a tempfail). */
	bool tempfail = r->code ? r->code / 100 == 4 : r->tempfail;
	char rest[2048];
	va_list ap;

	rest[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(rest, sizeof(rest), fmt, ap);
		va_end(ap);
	}
	log_event(r->level > LOG_LVL_INFO ? r->level : LOG_LVL_INFO, r->id, "event=%s stage=%s reason=%s%s%s",
	    tempfail ? "tempfail" : "reject", stage, reason, rest[0] ? " " : "", rest);
	opstats_count_event(tempfail, stage, reason);
	if (!r->repeat)
		opstats_note_refusal(r->worker, r->client_ip, stage, reason, tempfail);
}

size_t opstats_refusal_events(struct opstats_event_row *out, size_t max)
{
	pthread_mutex_lock(&opstats_events.mu);
	size_t n = opstats_events.n < max ? opstats_events.n : max;
	memcpy(out, opstats_events.row, n * sizeof(*out));
	pthread_mutex_unlock(&opstats_events.mu);
	return n;
}

static void opstats_top_merge(struct opstats_top *dst, const struct opstats_top *src)
{
	topk_merge(&dst->sessions, &src->sessions);
	topk_merge(&dst->refusals, &src->refusals);
	topk_merge(&dst->reasons, &src->reasons);
	for (int k = 0; k < OPS__NKEYS; k++)
		for (int c = 0; c < OPS__NCOUNTS; c++)
			topk_merge(&dst->mail[k][c], &src->mail[k][c]);
}

/* Each worker's tables are copied under its mutex (a memcpy of sizeof(struct opstats_top),
 * about 80 KB) and merged outside it: a merge of the fifteen tables is some 60,000 key
 * comparisons, not to be made while the worker waits to count a recipient. */
void opstats_collect(struct opstats_top *out)
{
	struct opstats_top *copy = malloc(sizeof(*copy));

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < OPSTATS_SLOTS; i++) {
		struct opstats_slot *s = opstats_slot(i);
		bool used;

		pthread_mutex_lock(&s->mu);
		used = s->used;
		if (used && copy)
			memcpy(copy, &s->t, sizeof(*copy));
		else if (used)	/* no memory for the copy: merged under the lock, as it is */
			opstats_top_merge(out, &s->t);
		pthread_mutex_unlock(&s->mu);
		if (used && copy)
			opstats_top_merge(out, copy);
	}
	free(copy);
}

void opstats_reset(void)
{
	for (int i = 0; i < OPSTATS_SLOTS; i++) {
		struct opstats_slot *s = opstats_slot(i);
		pthread_mutex_lock(&s->mu);
		s->used = false;
		memset(&s->t, 0, sizeof(s->t));
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_lock(&opstats_events.mu);
	opstats_events.n = 0;
	pthread_mutex_unlock(&opstats_events.mu);
}

/* ------------------------------------------------------------ history */

void ophist_read_counters(long cur[OPS__NSERIES], long *received)
{
	cur[OPS_ACCEPTED] = counter_get(COUNTER_MESSAGES_DELIVERED);
	cur[OPS_REFUSED] = counter_get(COUNTER_REFUSALS);
	cur[OPS_TEMPFAILED] = counter_get(COUNTER_TEMPFAILS);
	cur[OPS_DNSBL_ERRORS] = counter_get(COUNTER_DNSBL_ERRORS);
	*received = counter_get(COUNTER_MESSAGES_RECEIVED);
}

void ophist_tick(struct ophist *h, uint64_t now_ms, const long cur[OPS__NSERIES], long received)
{
	uint64_t m = now_ms / 60000 + 1;	/* +1: minute 0 means "never ticked" */

	if (h->minute == 0) {
		h->minute = m;
		memcpy(h->base, cur, sizeof(h->base));
	} else if (m > h->minute) {
		/* Close the current minute with what came in up to now. */
		unsigned slot = (unsigned)(h->minute % OPS_MINUTES);
		h->b[slot].minute = h->minute;
		for (int k = 0; k < OPS__NSERIES; k++)
			h->b[slot].v[k] = cur[k] - h->base[k];
		h->minute = m;
		memcpy(h->base, cur, sizeof(h->base));
	}
	memcpy(h->last, cur, sizeof(h->last));
	/* Rate samples: one per second at most. */
	unsigned last = (h->nrate + OPS_RATE_SAMPLES - 1) % OPS_RATE_SAMPLES;
	if (h->nrate == 0 || now_ms >= h->rate[last].ms + 1000) {
		unsigned i = h->nrate % OPS_RATE_SAMPLES;
		h->rate[i].ms = now_ms;
		h->rate[i].received = received;
		h->nrate++;
	}
}

size_t ophist_minutes(const struct ophist *h, long out[OPS_MINUTES][OPS__NSERIES])
{
	if (h->minute == 0)
		return 0;
	for (int r = 0; r < OPS_MINUTES; r++) {
		uint64_t back = (uint64_t)(OPS_MINUTES - 1 - r);
		uint64_t want = h->minute > back ? h->minute - back : 0;
		for (int k = 0; k < OPS__NSERIES; k++)
			out[r][k] = 0;
		if (r == OPS_MINUTES - 1) {
			for (int k = 0; k < OPS__NSERIES; k++)
				out[r][k] = h->last[k] - h->base[k];
		} else if (want > 0 && want < h->minute && h->b[want % OPS_MINUTES].minute == want) {
			for (int k = 0; k < OPS__NSERIES; k++)
				out[r][k] = h->b[want % OPS_MINUTES].v[k];
		}
	}
	return OPS_MINUTES;
}

double ophist_rate(const struct ophist *h)
{
	if (h->nrate < 2)
		return 0;
	unsigned newest = (h->nrate - 1) % OPS_RATE_SAMPLES;
	unsigned back = h->nrate - 1 < 10 ? h->nrate - 1 : 10;
	unsigned oldest = (h->nrate - 1 - back) % OPS_RATE_SAMPLES;
	uint64_t dt = h->rate[newest].ms - h->rate[oldest].ms;
	if (dt == 0)
		return 0;
	return (double)(h->rate[newest].received - h->rate[oldest].received) * 1000.0 / (double)dt;
}
