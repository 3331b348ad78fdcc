/* rules.c — the `rules` hook module: one compiled rule set per config generation shared by
 * the workers, scans in libuv's thread pool, verdicts and X-Spam-* headers; and the rules
 * config section. See rules.h and docs/rules.md. */
#include "rules_int.h"

#include "actions.h"
#include "config.h"
#include "filters/greylist.h"
#include "headers.h"
#include "log.h"
#include "msgbuf.h"
#include "ownfields.h"
#include "recipient_actions.h"
#include "store/store.h"

#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>

/* ---------------------------------------------------------------- generations */

/* One compiled set per config generation, shared by its workers. */
struct rules_gen { const struct mx_config *cfg; struct rules_set *rs; int users; };

static pthread_mutex_t rules_gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rules_gen rules_gens[8];
static struct rules_set *rules_current;   /* newest, for counters */

/* One line naming the evals the rule files use that mxgate does not implement, each with
 * the rules it blocks (the start-up counterpart of `mxgate -t`). */
static void rules_log_missing_evals(const struct rules_set *rs)
{
	const char *fn;
	size_t nr, nm, n = rules_set_missing_evals(rs, 0, &fn, &nr, &nm), o = 0;
	char buf[4096];

	if (n == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < n && o + 1 < sizeof(buf); i++) {
		int w;

		rules_set_missing_evals(rs, i, &fn, &nr, &nm);
		w = snprintf(buf + o, sizeof(buf) - o, "%s%s:%zu+%zu", i ? "," : "", fn, nr, nm);
		if (w < 0 || (size_t)w >= sizeof(buf) - o)
			break;
		o += (size_t)w;
	}
	log_event(LOG_LVL_INFO, NULL, "event=rules_evals_missing count=%zu evals=%s "
	    "reason=\"each eval as function:rules+metas it blocks\"", n, buf);
}

/* What -t prints of the rule files (errors, skipped regexes, settings not applied), one
 * log line each at start and reload, at most RULES_LOG_PROBLEMS of them. */
#define RULES_LOG_PROBLEMS 20

static void rules_log_problems(const char *text)
{
	size_t n = 0;

	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char v[1500];   /* the line, its (rules.files[i] at ...) end included: under LOG_LINE_CAP */

		if (len && n++ < RULES_LOG_PROBLEMS)
			log_event(strstr(p, ": warning: ") && strstr(p, ": warning: ") < p + len ?
			    LOG_LVL_INFO : LOG_LVL_WARNING, NULL, "event=rules_problem detail=%s",
			    log_valn(v, sizeof(v), p, len));
		p += len + (nl ? 1 : 0);
	}
	if (n > RULES_LOG_PROBLEMS)
		log_event(LOG_LVL_WARNING, NULL, "event=rules_problem more=%zu reason=\"mxgate -t lists all\"",
		    n - RULES_LOG_PROBLEMS);
}

static struct rules_set *rules_gen_acquire(const struct mx_config *cfg)
{
	struct rules_set *rs = NULL;
	struct rules_gen *free_slot = NULL;

	pthread_mutex_lock(&rules_gen_lock);
	for (size_t i = 0; i < sizeof(rules_gens) / sizeof(rules_gens[0]); i++) {
		if (rules_gens[i].cfg == cfg && rules_gens[i].rs) {
			rules_gens[i].users++;
			rs = rules_set_ref(rules_gens[i].rs);
			goto out;
		}
		if (rules_gens[i].rs == NULL && free_slot == NULL)
			free_slot = &rules_gens[i];
	}
	{
		const struct rules_config *rc = &cfg->rules;
		struct rules_stats st;
		int nerr;

		struct rules_opts o;

		char *probs = NULL;
		size_t probs_len = 0;
		FILE *perr = open_memstream(&probs, &probs_len);

		rules_opts_from_config(cfg, &o);
		nerr = rules_set_load_opts((const char *const *)rc->files.v, rc->files.n, &rs, perr,
		    RULES_PREFILTER_ASYNC, &o);
		if (perr)
			fclose(perr);
		rules_log_problems(probs);
		free(probs);
		if (rs == NULL)
			goto out;
		rules_set_get_stats(rs, &st);
		log_event(nerr ? LOG_LVL_WARNING : LOG_LVL_INFO, NULL,
		    "event=rules_loaded files=%zu compiled=%zu skipped=%zu skipped_eval=%zu "
		    "skipped_net=%zu skipped_regex=%zu skipped_zero=%zu prefiltered=%zu errors=%zu",
		    st.files, st.compiled, st.skipped_total, st.skipped[SKIP_EVAL],
		    st.skipped[SKIP_NET], st.skipped[SKIP_REGEX], st.skipped[SKIP_ZERO],
		    st.prefiltered, st.errors);
		rules_log_missing_evals(rs);
		if (rs->nmeta_loops)
			log_event(LOG_LVL_WARNING, NULL, "event=rules_meta_loop rules=%zu first=%s "
			    "reason=\"meta rules in a dependency loop never run\"", rs->nmeta_loops, rs->meta_loop);
		{
			char names[512] = "";
			bool by_rule = rules_set_quarantine_rules(rs, names, sizeof(names));

			/* a rule's action quarantine, or the actions.quarantine threshold */
			bool by_score = rc->actions.quarantine > 0;

			for (size_t i = 0; i < rc->recipient_actions.n; i++) {
				const struct recipient_actions_entry *e =
				    (const struct recipient_actions_entry *)rc->recipient_actions.v + i;

				by_score |= (e->given & RECIPIENT_ACTIONS_QUARANTINE) && e->quarantine > 0;
			}
			if (rc->mode == RULES_MODE_ENFORCE && (by_rule || by_score) &&
			    (cfg->quarantine == NULL || cfg->quarantine[0] == '\0'))
				log_event(LOG_LVL_WARNING, NULL, "event=rules_quarantine_unavailable "
				    "rules=%s reason=\"%s without a quarantine backend: 451\"",
				    by_rule ? names : "none", by_rule && by_score ?
				    "action quarantine and actions.quarantine" : by_rule ?
				    "action quarantine" : "actions.quarantine");
		}
		if (free_slot) {
			free_slot->cfg = cfg;
			free_slot->rs = rules_set_ref(rs);
			free_slot->users = 1;
		}
		if (rules_current) {
			rules_set_carry_hits(rs, rules_current);
			rules_set_free(rules_current);
		}
		rules_current = rules_set_ref(rs);
	}
out:
	pthread_mutex_unlock(&rules_gen_lock);
	return rs;
}

static void rules_gen_release(const struct mx_config *cfg, struct rules_set *rs)
{
	pthread_mutex_lock(&rules_gen_lock);
	for (size_t i = 0; i < sizeof(rules_gens) / sizeof(rules_gens[0]); i++)
		if (rules_gens[i].cfg == cfg && rules_gens[i].rs == rs) {
			if (--rules_gens[i].users == 0) {
				rules_set_free(rules_gens[i].rs);
				rules_gens[i].rs = NULL;
				rules_gens[i].cfg = NULL;
			}
			break;
		}
	pthread_mutex_unlock(&rules_gen_lock);
	rules_set_free(rs);
}


void rules_foreach_counter(rules_counter_cb cb, void *arg)
{
	struct rules_set *rs;

	pthread_mutex_lock(&rules_gen_lock);
	rs = rules_current ? rules_set_ref(rules_current) : NULL;
	pthread_mutex_unlock(&rules_gen_lock);
	if (rs == NULL)
		return;
	rules_set_foreach_counter(rs, cb, arg);
	rules_set_free(rs);
}

/* ---------------------------------------------------------------- the hook module */

/* Per worker and generation. Scans run in libuv's thread pool (a big or hostile message
 * must not stall the worker's event loop), each with a scratch from a small pool. A job in
 * flight holds a reference, so the worker state outlives a retired generation's
 * worker_free until its last job completes. refs is touched on the loop thread only. */
struct rules_worker {
	const struct mx_config *cfg;
	struct rules_set *rs;
	struct actions_thresholds th;   /* rules.actions: a recipient no entry lists */
	struct actions_thresholds *th_for;  /* rules.recipient_actions[i]'s, nth_for of them */
	size_t nth_for;
	bool grey_any;                 /* a threshold of th or th_for greylists (greylist_message_wanted) */
	struct bayes *bayes;            /* the classifier, when rules.bayes.enabled */
	int refs;
	pthread_mutex_t lock;           /* the scratch pool, taken from pool threads */
	struct rules_scratch *pool[16];
	int npool;
};

static void rules_worker_unref(struct rules_worker *w)
{
	if (--w->refs > 0)
		return;
	for (int i = 0; i < w->npool; i++)
		rules_scratch_free(w->pool[i]);
	pthread_mutex_destroy(&w->lock);
	rules_gen_release(w->cfg, w->rs);
	bayes_free(w->bayes);
	free(w->th_for);
	free(w);
}

static struct rules_scratch *rules_worker_take_scratch(struct rules_worker *w)
{
	struct rules_scratch *sc = NULL;

	pthread_mutex_lock(&w->lock);
	if (w->npool > 0)
		sc = w->pool[--w->npool];
	pthread_mutex_unlock(&w->lock);
	return sc ? sc : rules_scratch_new(w->rs);
}

static void rules_worker_give_scratch(struct rules_worker *w, struct rules_scratch *sc)
{
	pthread_mutex_lock(&w->lock);
	if (w->npool < (int)(sizeof(w->pool) / sizeof(w->pool[0]))) {
		w->pool[w->npool++] = sc;
		sc = NULL;
	}
	pthread_mutex_unlock(&w->lock);
	rules_scratch_free(sc);
}

/* The check of a Redis store (at start and at each reload: bayes_check), on a detached
 * thread of its own: the connect, which may wait the store's timeouts (a silent Sentinel,
 * each in turn), never holds a worker's loop, not even to stop: a job on the loop's thread
 * pool would keep uv_run from returning until the connect did, past drain_timeout. Its
 * connection is pooled for the first scan; a failure is logged by the store
 * (event=bayes_error store=redis). The thread holds a reference to the classifier (not to
 * w) and drops it when done; at exit it may still be waiting, which costs nothing.
 *
 * At most one check runs per store URL: a reload while the last one still waits for a
 * silent store starts none (its first scan connects), logged at debug level. Else every
 * SIGHUP would leave one more thread waiting out the store's timeouts. */
struct rules_bayes_checking {
	struct rules_bayes_checking *next;
	char url[];
};

static pthread_mutex_t rules_bayes_checking_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rules_bayes_checking *rules_bayes_checking;   /* the URLs being checked */

/* Takes url's check: false when one is under way. */
static bool rules_bayes_checking_take(const char *url)
{
	struct rules_bayes_checking *k;
	size_t n = strlen(url) + 1;

	pthread_mutex_lock(&rules_bayes_checking_mu);
	for (k = rules_bayes_checking; k != NULL; k = k->next)
		if (strcmp(k->url, url) == 0)
			break;
	if (k == NULL && (k = malloc(sizeof(*k) + n)) != NULL) {
		memcpy(k->url, url, n);
		k->next = rules_bayes_checking;
		rules_bayes_checking = k;
		k = NULL;
	}
	pthread_mutex_unlock(&rules_bayes_checking_mu);
	return k == NULL;
}

static void rules_bayes_checking_drop(const char *url)
{
	struct rules_bayes_checking **pk, *k = NULL;

	pthread_mutex_lock(&rules_bayes_checking_mu);
	for (pk = &rules_bayes_checking; *pk != NULL; pk = &(*pk)->next)
		if (strcmp((*pk)->url, url) == 0) {
			k = *pk;
			*pk = k->next;
			break;
		}
	pthread_mutex_unlock(&rules_bayes_checking_mu);
	free(k);
}

static void *rules_bayes_check_main(void *arg)
{
	struct bayes *b = arg;
	char err[256];

	(void)prctl(PR_SET_NAME, "mx-bayes-check");   /* ps -L, /proc/PID/task/N/comm */
	(void)bayes_check(b, err, sizeof(err));
	rules_bayes_checking_drop(bayes_get_config(b)->store);
	bayes_free(b);
	return NULL;
}

static void rules_bayes_check_start(struct rules_worker *w, const uv_loop_t *loop)
{
	const char *url = bayes_get_config(w->bayes)->store;
	pthread_attr_t a;
	pthread_t t;
	struct bayes *b;

	if (loop == NULL)
		return;           /* not the daemon (a config check): the first scan connects */
	if (!rules_bayes_checking_take(url)) {
		log_event(LOG_LVL_DEBUG, NULL, "event=bayes_check_skipped store=redis "
		    "reason=\"a check of the store is still under way (a silent store: it waits out "
		    "its timeouts); this generation's first scan connects\"");
		return;
	}
	b = bayes_ref(w->bayes);
	if (pthread_attr_init(&a) != 0) {
		rules_bayes_checking_drop(url);
		bayes_free(b);
		return;           /* the first scan connects */
	}
	(void)pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, rules_bayes_check_main, b) != 0) {
		rules_bayes_checking_drop(url);
		bayes_free(b);    /* the first scan connects */
	}
	pthread_attr_destroy(&a);
}

static int rules_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker,
    void **wstate)
{
	const struct rules_config *rc = &cfg->rules;
	struct rules_worker *w;

	*wstate = NULL;
	if (!config_rules_engine_wanted(cfg) || !rc->bayes.enabled)
		bayes_set_current(NULL);     /* POST /learn: the newest generation has none */
	if (!config_rules_engine_wanted(cfg))
		return 0;       /* with no rule file, a spamd plugin's score still runs it */
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->cfg = cfg;
	w->refs = 1;
	pthread_mutex_init(&w->lock, NULL);
	w->rs = rules_gen_acquire(cfg);
	if (w->rs == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=rules_init_failed worker=%d", worker);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return -1;
	}
	w->th.add_header = rc->actions.add_header;
	w->th.tempfail = rc->actions.tempfail;
	w->th.reject = rc->actions.reject;
	w->th.quarantine = rc->actions.quarantine;
	w->th.greylist = rc->actions.greylist;
	recipient_actions_thresholds(NULL, &w->th, rc->required_score, &w->th);   /* required */
	if (rc->recipient_actions.n > 0) {
		const struct recipient_actions_entry *ev = rc->recipient_actions.v;

		w->th_for = calloc(rc->recipient_actions.n, sizeof(*w->th_for));
		if (w->th_for == NULL) {
			rules_worker_unref(w);
			return -1;
		}
		w->nth_for = rc->recipient_actions.n;
		for (size_t i = 0; i < w->nth_for; i++)
			recipient_actions_thresholds(&ev[i], &w->th, rc->required_score, &w->th_for[i]);
	}
	w->grey_any = greylist_message_wanted(cfg);
	if (rc->bayes.enabled) {
		char err[256];
		const char *const *ignore;
		size_t nignore = rules_set_ignore_headers(w->rs, &ignore);   /* bayes_ignore_header */

		/* a store that cannot be opened leaves the classifier out, logged; a Redis
		 * store is not connected to here (this is the worker's loop): one check per
		 * generation, on the pool */
		w->bayes = bayes_acquire(&rc->bayes, ignore, nignore, err, sizeof(err));
		if (w->bayes == NULL)
			log_event(LOG_LVL_ERROR, NULL, "event=bayes_error worker=%d reason=\"%s\"",
			    worker, err);
		else if (!w->rs->uses_bayes && worker == 0)
			log_event(LOG_LVL_WARNING, NULL, "event=bayes_unused reason=\"no rule calls "
			    "eval:check_bayes (SpamAssassin's 23_bayes.cf, or rules/default.rules)\"");
		if (w->bayes != NULL && worker == 0 && store_spec_is_redis(rc->bayes.store))
			rules_bayes_check_start(w, loop);
	}
	*wstate = w;
	return 0;
}

static void rules_worker_free(void *wstate)
{
	if (wstate)
		rules_worker_unref(wstate);
}

static unsigned rules_stages(void *wstate)
{
	return 1u << HOOK_EOM;
}

static int rules_sym_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Re-scores symbols of other modules that a rule file gives a `score` line (in the score
 * set in use: set 2 when bayes). */
static void rules_rescore_symbols(const struct rules_set *rs, struct hook_env *env,
    size_t ours_from, bool bayes)
{
	for (size_t i = 0; i < ours_from; i++) {
		struct hook_symbol *s = &env->symbols[i];

		for (size_t k = 0; k < rs->n; k++)
			if (rs->r[k].kind == RULE_SYMBOL && rs->r[k].has_score &&
			    strcmp(rs->r[k].name, s->name) == 0) {
				double sc = bayes ? rs->r[k].score_bayes : rs->r[k].score;

				env->score += sc - s->score;
				s->score = sc;
				break;
			}
	}
}

/* Deletes every X-Spam-* field of the message but X-Spam-Prev-* (SpamAssassin: delete_header
 * 'X-Spam-.*' in PerMsgStatus::check, rewrite_no_report_safe), a sender's forged "X-Spam-Status:
 * No" and any name it makes up alike, in one pass over the fields. */
static void rules_delete_spam_fields(struct hook_env *env)
{
	hook_env_delete_headers_prefix(env, "X-Spam-", "X-Spam-Prev-");
}

/* The hit count of a rule of res (tflags multiple), 1 for anything else. */
static int rules_hit_count(const struct rules_result *res, const char *name)
{
	for (size_t i = 0; res && i < res->n; i++)
		if (strcmp(res->v[i].name, name) == 0)
			return res->v[i].count > 1 ? res->v[i].count : 1;
	return 1;
}

/* The area SpamAssassin's REPORT names a hit of rule r by (Check.pm's got_hit calls): its
 * kind's, "" for header, meta and others' symbols (r NULL). */
static const char *rules_report_area(const struct rules_rule *r)
{
	if (r == NULL)
		return "";
	switch (r->kind) {
	case RULE_BODY: return "BODY: ";
	case RULE_RAWBODY: return "RAW: ";
	case RULE_URI: return "URI: ";
	case RULE_FULL: return "FULL: ";
	default: return "";
	}
}

/* The rule of res named name, NULL for another module's symbol. */
static const struct rules_hit *rules_find_hit(const struct rules_result *res, const char *name)
{
	for (size_t i = 0; res && i < res->n; i++)
		if (strcmp(res->v[i].name, name) == 0)
			return &res->v[i];
	return NULL;
}

/* What rules_add_headers leaves for report_safe 1 or 2: the fields ("Name: value\n"), the
 * report and unsafe report expanded, rewrite_header Subject's tag expanded (or NULL). */
struct rules_wrap { struct strbuf fields; char *report, *unsafe, *subject_tag, *from_tag, *to_tag; };

/* Where our fields go (report_safe 0): each at *at of the message's header, then *at moves
 * past it; or, wrap non-NULL, collected for the wrapped message. */
static void rules_field_out(struct hook_env *env, struct rules_wrap *wrap, int *at,
    const char *name, const char *value)
{
	if (wrap == NULL) {
		hook_env_insert_header(env, (*at)++, name, value);
		return;
	}
	strbuf_append(&wrap->fields, name, strlen(name));
	strbuf_append(&wrap->fields, ": ", 2);
	strbuf_append(&wrap->fields, value, strlen(value));
	strbuf_append(&wrap->fields, "\n", 1);
}

/* Where SpamAssassin's rewrite_no_report_safe puts its fields: at the top of the header
 * (bug 3409), below a first Return-Path field; the message's own X-Spam-* (not -Prev-),
 * which go, are not counted. The index of that place among the fields left. */
static int rules_fields_top(struct hook_env *env)
{
	size_t len = 0;
	const char *m = env->msg ? msgbuf_data(env->msg, &len) : NULL;

	for (size_t i = 0; m != NULL && i < len && m[i] != '\n' && m[i] != '\r';) {
		const char *lf = memchr(m + i, '\n', len - i);
		size_t e = lf ? (size_t)(lf - m) + 1 : len;

		if (m[i] != ' ' && m[i] != '\t' && !(e - i > 7 && strncasecmp(m + i, "X-Spam-", 7) == 0 &&
		    !(e - i > 12 && strncasecmp(m + i, "X-Spam-Prev-", 12) == 0)))
			return e - i > 12 && strncasecmp(m + i, "Return-Path:", 12) == 0 ? 1 : 0;
		i = e;
	}
	return 0;
}

/* What the worker read off the message for the templates' tags while its views lived. */
struct rules_msg_tags {
	char *preview;                 /* _PREVIEW_, when a template has it (report_safe's) */
	struct addhdr_mtag *m;         /* _HEADER(x)_, _RELAYS*_, _LASTEXTERNAL*_ the templates */
	size_t n;                      /* write, each with its value */
};

/* rules_add_headers: X-Spam-Score, then SpamAssassin's add_header fields for this class of
 * message (the rule files' add_header / remove_header / clear_headers over
 * 10_default_prefs.cf's Flag, Level, Status), then X-Spam-Symbols, of a scored message.
 * autolearn: _AUTOLEARN_'s value (rules_status_tail); bayes: the classifier's
 * probability, < 0 when there is none. */
static void rules_add_headers(const struct rules_worker *w, struct hook_env *env,
    double total, double required, const struct rules_result *res, const char *autolearn,
    double bayes, const struct rules_msg_tags *tags, struct rules_wrap *wrap)
{
	size_t n = env->nsymbols, k = 0, nt = 0, nh, rlen = 0;
	const char **names = calloc(n + 1, sizeof(char *));
	const char **tests;
	double *tscores, *scores = calloc(n + 1, sizeof(double));
	char sbuf[32], *report = NULL, *summary = NULL, version[64];
	size_t slen = 0;
	int at;
	const struct addhdr_spec *h;
	struct addhdr_vals av = { 0 };
	bool spam = round(total * 1000) / 1000 >= required;

	if (!names || !scores)
		abort();
	for (size_t i = 0; i < n; i++)
		names[k++] = env->symbols[i].name;
	qsort(names, k, sizeof(char *), rules_sym_cmp);
	/* drop duplicates (a symbol set twice is listed once, as SA does) */
	{
		size_t o = 0;

		for (size_t i = 0; i < k; i++)
			if (o == 0 || strcmp(names[o - 1], names[i]) != 0)
				names[o++] = names[i];
		k = o;
	}
	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; j < n; j++)
			if (strcmp(env->symbols[j].name, names[i]) == 0)
				scores[i] += env->symbols[j].score;
	/* tests=: a tflags multiple rule once per hit, as SpamAssassin's _TESTS_ lists it
	 * (get_names_of_tests_hit), each with a hit's score; REPORT a line per hit too */
	for (size_t i = 0; i < k; i++)
		nt += (size_t)rules_hit_count(res, names[i]);
	tests = calloc(nt + 1, sizeof(char *));
	tscores = calloc(nt + 1, sizeof(double));
	if (tests == NULL || tscores == NULL)
		abort();
	nt = 0;
	for (size_t i = 0; i < k; i++) {
		int c = rules_hit_count(res, names[i]);
		const struct rules_hit *hit = rules_find_hit(res, names[i]);
		const char *desc = hit ? hit->desc : NULL;

		for (size_t j = 0; hit == NULL && j < n; j++)
			if (strcmp(env->symbols[j].name, names[i]) == 0 && env->symbols[j].desc)
				desc = env->symbols[j].desc;
		for (int m = 0; m < c; m++) {
			tscores[nt] = scores[i] / c;
			tests[nt++] = names[i];
			addhdr_report_add(&report, &rlen, scores[i] / c, names[i],
			    rules_report_area(hit ? hit->rule : NULL),
			    desc && *desc ? desc : "No description available.");
			addhdr_summary_add(&summary, &slen, scores[i] / c, names[i],
			    rules_report_area(hit ? hit->rule : NULL),
			    desc && *desc ? desc : "No description available.");
		}
	}
	snprintf(version, sizeof(version), "mxgate-%s", MX_VERSION);
	av.score = total;
	av.required = required;
	av.tests = tests;
	av.test_scores = tscores;
	av.ntests = nt;
	av.autolearn = autolearn;
	av.version = version;
	av.hostname = env->cfg && env->cfg->hostname ? env->cfg->hostname : "";
	av.bayes = bayes;
	av.report = report;
	av.summary = summary;
	av.preview = tags->preview;
	av.subversion = MX_VERSION;
	av.mtags = tags->m;
	av.nmtags = tags->n;
	av.contact = rules_set_safe(w->rs)->contact;
	av.now = time(NULL);
	if (rules_set_safe(w->rs)->hostname && *rules_set_safe(w->rs)->hostname)
		av.hostname = rules_set_safe(w->rs)->hostname;   /* report_hostname */
	if (wrap == NULL)
		rules_delete_spam_fields(env);   /* a wrapped message loses every field */
	at = rules_fields_top(env);
	{
		/* the score X-Spam-Status shows (SpamAssassin's rounding, below required on ham):
		 * a filter on X-Spam-Score >= required files as one on X-Spam-Status: Yes */
		char rbuf[32];

		actions_shown_score(sbuf, rbuf, total, required);
	}
	rules_field_out(env, wrap, &at, "X-Spam-Score", sbuf);
	/* SpamAssassin's fields (_get_added_headers), in the list's order; X-Spam-Checker-Version
	 * names SpamAssassin's own version and is not written */
	nh = rules_set_headers(w->rs, spam, &h);
	for (size_t i = 0; i < nh; i++) {
		char name[128], *val;

		if (strcasecmp(h[i].name, "Checker-Version") == 0)
			continue;
		snprintf(name, sizeof(name), "X-Spam-%s", h[i].name);
		val = addhdr_value(h[i].name, h[i].tmpl, &av);
		rules_field_out(env, wrap, &at, name, val);
		free(val);
	}
	if (k) {
		size_t cap = 256;
		char *buf;

		for (size_t i = 0; i < k; i++)
			cap += strlen(names[i]) + 40;   /* "NAME=%.3f, " and a fold */
		if ((buf = malloc(cap)) == NULL)
			abort();
		actions_format_symbols(buf, cap, names, scores, k);
		rules_field_out(env, wrap, &at, "X-Spam-Symbols", buf);
		free(buf);
	}
	if (wrap) {
		/* the report part's text: report_template and unsafe_report_template with their
		 * tags (get_report: "\n\n" at its end), the Subject's tag */
		const struct addhdr_safe *c = rules_set_safe(w->rs);
		char *r = addhdr_expand(c->report && *c->report ? c->report :
		    "(no report template found)", &av);
		size_t rl = strlen(r);

		while (rl > 0 && r[rl - 1] == '\n')
			rl--;
		if ((wrap->report = malloc(rl + 3)) == NULL)
			abort();
		memcpy(wrap->report, r, rl);
		memcpy(wrap->report + rl, "\n\n", 3);
		free(r);
		wrap->unsafe = addhdr_expand(c->unsafe_report ? c->unsafe_report : "", &av);
		if (rules_set_rewrite_subject(w->rs))
			wrap->subject_tag = addhdr_expand(rules_set_rewrite_subject(w->rs), &av);
		if (c->rewrite_from)
			wrap->from_tag = addhdr_expand(c->rewrite_from, &av);
		if (c->rewrite_to)
			wrap->to_tag = addhdr_expand(c->rewrite_to, &av);
	}
	free(names);
	free(tests);
	free(tscores);
	free(scores);
	free(report);
	free(summary);
}

/* The message as the backend would get it without the rules engine's own changes: env->msg
 * with the edits of the filters before applied (a milter's, rspamd's), their new body if
 * any. In two pieces, no copy of the body: the header block (its blank line included, or
 * the whole message when it has none) into *hdr, the body borrowed in *body (*body_len
 * octets: env->new_body's or env->msg's, in memory or mapped, valid until that buffer
 * changes). False when the message cannot be read. */
static bool rules_view(struct hook_env *env, struct strbuf *hdr, const char **body,
    size_t *body_len)
{
	size_t len = 0, hl, bl;
	const char *m = env->msg ? msgbuf_data(env->msg, &len) : NULL, *b;

	if (m == NULL)
		return false;
	hl = msgbuf_header_len(env->msg);
	if (hl > len)
		hl = len;
	b = m + hl;
	bl = len - hl;
	if (env->new_body && (b = msgbuf_data(env->new_body, &bl)) == NULL)
		return false;
	if (env->nhdr_edits == 0 && env->new_body == NULL)
		strbuf_append(hdr, m, hl);
	else
		headers_apply_edits(m, hl, env->hdr_edits, env->nhdr_edits, hdr);
	if (env->new_body)
		headers_end_block(hdr);
	strbuf_append(hdr, "", 0);
	*body = b;
	*body_len = bl;
	return true;
}

/* 32 random bits for the MIME boundary (SpamAssassin's int(rand(2 ** 32))), from the kernel:
 * a sender who could guess the boundary could end the report part inside his message. */
static unsigned long rules_random32(void)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)random() ^ (uint32_t)time(NULL);
	return r;
}

/* report_safe 1 or 2 (SpamAssassin's rewrite_report_safe): the spam message becomes a new
 * one, SpamAssassin's header fields (wrap's X-Spam-* among them) and a multipart body of
 * the report and the original, intact (as the backend would have had it). Every field of
 * the message goes (one prefix delete), the new ones are added in order, the body is
 * replaced. False, with nothing changed, when the wrapped message would pass
 * limits.max_message_size or cannot be built: the caller marks it as report_safe 0 does. */
static bool rules_wrap_apply(const struct rules_worker *w, struct hook_env *env,
    const struct rules_wrap *wrap)
{
	const struct addhdr_safe *c = rules_set_safe(w->rs);
	struct strbuf view = { 0 }, rcv = { 0 };
	struct addhdr_safe_parts nm = { 0 };
	char version[64], date[64];
	const char *hn, *ob = NULL;
	size_t nl, obl = 0, i = 0, hend, bstart;
	struct msgbuf *body;
	uint64_t max = env->cfg ? env->cfg->limits.max_message_size : 0;
	struct addhdr_vals dv = { .now = time(NULL) };
	char *d;

	if (!rules_view(env, &view, &ob, &obl)) {
		strbuf_free(&view);
		return false;
	}
	/* "Received: from localhost by HOST\n\twith SpamAssassin (version V);\n\tDATE": the
	 * fetchmail-style field SpamAssassin adds, naming mxgate */
	snprintf(version, sizeof(version), "%s", MX_VERSION);
	d = addhdr_expand("_DATE_", &dv);
	snprintf(date, sizeof(date), "%s", d);
	free(d);
	hn = env->cfg && env->cfg->hostname ? env->cfg->hostname : "localhost";
	strbuf_printf(&rcv, "Received: from localhost by %s\n\twith mxgate (version %s);\n\t%s\n",
	    hn, version, date);
	/* the wrapper around the original, which is not copied: the new body is written into a
	 * message buffer from the pieces, in memory within limits.memory_budget or spooled */
	addhdr_safe_build_parts(c, view.v, view.len, ob, obl, wrap->report, wrap->unsafe,
	    wrap->fields.v ? wrap->fields.v : "", &(struct addhdr_rewrite){ wrap->subject_tag,
	    wrap->from_tag, wrap->to_tag }, rcv.v, (unsigned long)time(NULL),
	    rules_random32(), &nm);
	strbuf_free(&rcv);
	nl = nm.head_len + view.len + obl + nm.tail_len;
	if (max && nl > max) {
		log_event(LOG_LVL_WARNING, env->session_id, "event=rules_report_safe_skipped "
		    "reason=size size=%zu max_message_size=%llu", nl, (unsigned long long)max);
		addhdr_safe_parts_free(&nm);
		strbuf_free(&view);
		return false;
	}
	/* the body first: nothing of the message changes unless all of it can */
	hend = 0;
	while (hend < nm.head_len && nm.head[hend] != '\n' && !(nm.head[hend] == '\r' &&
	    hend + 1 < nm.head_len && nm.head[hend + 1] == '\n')) {
		const char *lf = memchr(nm.head + hend, '\n', nm.head_len - hend);

		hend = lf ? (size_t)(lf - nm.head) + 1 : nm.head_len;
	}
	bstart = hend + (hend < nm.head_len && nm.head[hend] == '\r' ? 2 : 1);
	body = msgbuf_new(env->cfg && env->cfg->limits.memory_threshold ?
	    env->cfg->limits.memory_threshold : 1024 * 1024, env->cfg ? env->cfg->limits.spool_dir :
	    NULL);
	if (body == NULL || bstart > nm.head_len ||
	    msgbuf_append(body, nm.head + bstart, nm.head_len - bstart) < 0 ||
	    msgbuf_append(body, view.v, view.len) < 0 || msgbuf_append(body, ob, obl) < 0 ||
	    msgbuf_append(body, nm.tail, nm.tail_len) < 0) {
		log_event(LOG_LVL_WARNING, env->session_id, "event=rules_report_safe_skipped "
		    "reason=spool");
		msgbuf_free(body);
		addhdr_safe_parts_free(&nm);
		strbuf_free(&view);
		return false;
	}
	strbuf_free(&view);
	/* the new header block: every line of the message's goes (a line that is no field
	 * too, which SpamAssassin's new header never has), ours come in order */
	hook_env_delete_headers_prefix(env, "", NULL);
	while (i < hend) {
		size_t st = i, colon, ve;
		char *name, *val;

		for (;;) {
			const char *lf = memchr(nm.head + i, '\n', hend - i);

			i = lf ? (size_t)(lf - nm.head) + 1 : hend;
			if (i >= hend || (nm.head[i] != ' ' && nm.head[i] != '\t'))
				break;
		}
		for (colon = st; colon < i && nm.head[colon] != ':'; colon++)
			;
		ve = i;
		while (ve > colon && (nm.head[ve - 1] == '\n' || nm.head[ve - 1] == '\r'))
			ve--;
		if (colon >= ve)
			continue;
		name = strndup(nm.head + st, colon - st);
		val = strndup(nm.head + colon + 1, ve - colon - 1);
		if (name == NULL || val == NULL)
			abort();
		hook_env_add_header(env, name, val);
		free(name);
		free(val);
	}
	hook_env_replace_body(env, body);
	log_event(LOG_LVL_INFO, env->session_id, "event=rules_report_safe report_safe=%ld size=%zu",
	    c->mode, nl);
	addhdr_safe_parts_free(&nm);
	return true;
}

/* rewrite_header Subject, as SpamAssassin with report_safe 0 (the rule files' tmpl): on spam,
 * each "Subject:" field gets the tag before its value (encoded words and folds kept), the
 * value it had goes into X-Spam-Prev-Subject; a message without one gets "Subject: TAG" and
 * "X-Spam-Prev-Subject: (nonexistent)"; ham without one gets an empty "Subject: ", as from
 * spamd. The value tagged is the one the backend would get without the tag: the message's
 * header with the edits of the filters before (rspamd's "rewrite subject", a milter's
 * chgheader) applied, so their change stays and the tag comes once, in front (the order of a
 * Postfix chain of those filters, then spamc). A "Subject :" field (blank before the colon),
 * which SpamAssassin's /^Subject:/i skips, is counted (the edit's index counts every Subject
 * field) but left as it is. */
static void rules_rewrite_subject(struct hook_env *env, const char *tmpl, double total,
    double required, bool spam)
{
	size_t len = 0, i = 0, hl = 0;
	const char *m = env->msg ? msgbuf_data(env->msg, &len) : NULL;
	int n = 0;
	struct strbuf view = { 0 };

	/* the header block (to its blank line), as the edits so far leave it */
	while (m != NULL && hl < len) {
		const char *lf = memchr(m + hl, '\n', len - hl);

		if (lf == NULL) {
			hl = len;
			break;
		}
		hl = (size_t)(lf - m) + 1;
		if (hl < len && (m[hl] == '\n' || (m[hl] == '\r' && hl + 1 < len && m[hl + 1] == '\n')))
			break;
	}
	if (m != NULL && env->nhdr_edits > 0) {
		headers_apply_edits(m, hl, env->hdr_edits, env->nhdr_edits, &view);
		m = view.v;
		len = view.len;
	}

	while (m != NULL && i < len && m[i] != '\n' && !(m[i] == '\r' && i + 1 < len &&
	    m[i + 1] == '\n')) {
		size_t s = i, e, nl;

		for (;;) {      /* the field runs to the LF not followed by a blank */
			const char *lf = memchr(m + i, '\n', len - i);

			i = lf ? (size_t)(lf - m) + 1 : len;
			if (i >= len || (m[i] != ' ' && m[i] != '\t'))
				break;
		}
		for (nl = 0; s + nl < i && m[s + nl] != ':' && m[s + nl] != '\n'; nl++)
			;
		e = s + nl;
		while (e > s && (m[e - 1] == ' ' || m[e - 1] == '\t'))
			e--;
		if (s + nl >= i || m[s + nl] != ':' || e - s != 7 || strncasecmp(m + s, "Subject", 7))
			continue;
		n++;
		if (nl == 7 && spam) {
			size_t ve = i;
			char *old, *nv;

			while (ve > s + 8 && (m[ve - 1] == '\n' || m[ve - 1] == '\r'))
				ve--;
			if ((old = strndup(m + s + 8, ve - (s + 8))) == NULL)
				abort();
			nv = actions_rewrite_subject(tmpl, total, required, old);
			hook_env_change_header(env, "Subject", n, nv);
			hook_env_add_header(env, "X-Spam-Prev-Subject", old);
			free(old);
			free(nv);
		}
	}
	if (n == 0 && !spam)
		hook_env_add_header(env, "Subject", "");   /* spamd's empty one on ham too */
	else if (n == 0) {
		char *nv = actions_rewrite_subject(tmpl, total, required, NULL);

		hook_env_add_header(env, "Subject", nv);
		hook_env_add_header(env, "X-Spam-Prev-Subject", "(nonexistent)");
		free(nv);
	}
	strbuf_free(&view);
}

/* The built-in filters that score (spamd, rspamd: SPAMD_SCORE, RSPAMD_SCORE) configured for
 * this message but whose score is missing: failed with on_error accept or tag, timed out,
 * given up at limits.filter_deadline, or skipped (an earlier filter's accept, a message over
 * their max_size). Their names ("spamd,rspamd") in buf; false when every one scored. */
static bool rules_missing_scorers(const struct hook_env *env, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; env->cfg && i < env->cfg->plugins.n; i++) {
		const struct plugin_config *pc = (const struct plugin_config *)env->cfg->plugins.v + i;
		const char *sym;

		if (pc->so.desc || pc->so.path || pc->name == NULL)
			continue;       /* a shared object: whether it scores is its own business */
		sym = strcmp(pc->name, "spamd") == 0 ? "SPAMD_SCORE" :
		    strcmp(pc->name, "rspamd") == 0 ? "RSPAMD_SCORE" : NULL;
		if (sym == NULL || hook_env_find_symbol(env, sym) || strstr(buf, pc->name))
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? "," : "", pc->name);
		if (o >= len)
			o = len - 1;
	}
	return o > 0;
}

/* SpamAssassin's auto_learn_status (PerMsgStatus::learn_timed) of a message autolearn
 * chose: learned; "unavailable" when nothing was learned (the message was learned before,
 * as either class — SA's no_relearn — or the store could not be read for this message);
 * "failed" when the store failed while learning. */
enum rules_al_status { RULES_AL_NO = 0, RULES_AL_LEARNED, RULES_AL_UNAVAILABLE, RULES_AL_FAILED };

/* One scan in the thread pool: what it reads is its own, so the session may go away
 * (session_free marks the job cancelled) or end the transaction (the chain's deadline,
 * rules_cancel) while the scan runs. The message is not copied: msg is a pin of the
 * session's message buffer (msgbuf_pin), the bytes as they were at end of data, which the
 * buffer leaves to the pin should it be cleared, freed or appended to before the job ends;
 * until then they are the buffer's, in memory within limits.memory_budget (an unaccounted
 * copy per scan was up to max_message_size more per message in flight) or mapped from the
 * spool. At EOM the message no module changes: the filters' header edits and new body are
 * env->hdr_edits and env->new_body, the scan reads the message as received. The envelope
 * strings are copies. */

struct rules_job {
	uv_work_t req;
	struct rules_worker *w;
	struct hook_call *call;
	struct hook_env *env;          /* NULL once cancelled */
	int slot;
	const char *msg; size_t len; size_t max_size;
	struct msgbuf_pin *pin;        /* msg's (the job's, released in rules_job_free) */
	char *helo, *mail_from, *rdns, *client_ip;
	char **rcpts; size_t nrcpts;
	struct sockaddr_storage client;
	struct hook_env ext;           /* other modules' symbols (names only) */
	struct rules_result res;
	struct bayes_result bayes;     /* the classifier's verdict (check_bayes reads it) */
	struct rules_msg_tags tags;    /* the templates' tags read off the message */
	bool failed;
	/* between rules_apply_begin and rules_apply_end (an autolearn in the pool between) */
	double total;                  /* the message's score, every module's symbols */
	struct bayes_autolearn_points alp;
	int learn;                     /* bayes_autolearn_decide: 1 spam, 0 ham, -1 no */
	enum rules_al_status al;       /* what X-Spam-Status and the log say of it */
	/* the thresholds of the recipients (rules_job_thresholds): ths[0..nths), th1 or owned */
	struct actions_thresholds th1, *ths;
	size_t nths;
	double required;               /* the message's required= (the lowest of ths) */
	char policies[96];             /* " thresholds=actions,recipient_actions[0]" or "" */
	uv_work_t learn_req;
	/* rules.actions.greylist: the message's digest (made in the pool when the action is
	 * configured, there or in a recipient_actions entry), the store's request in flight, its
	 * answer (asked: the answer is set) */
	char grey_hex[GREYLIST_DIGEST_HEX + 1];
	struct greylist_msg_req *grey_req;
	struct greylist_msg_answer grey;
	bool grey_asked;
};

static char *rules_dup_or_null(const char *s)
{
	return s ? rules_xstrdup(s) : NULL;
}

static void rules_job_free(struct rules_job *j)
{
	msgbuf_unpin(j->pin);
	free(j->helo); free(j->mail_from); free(j->rdns); free(j->client_ip);
	for (size_t i = 0; i < j->nrcpts; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j->ext.symbols);
	rules_result_free(&j->res);
	free(j->tags.preview);
	addhdr_mtags_free(j->tags.m, j->tags.n);
	if (j->ths != &j->th1)
		free(j->ths);
	free(j);
}

/* Does a template of rs write _PREVIEW_ (the report of report_safe 1 or 2, a field)? */
static bool rules_wants_preview(const struct rules_set *rs)
{
	const struct addhdr_spec *h;

	if (rules_set_safe(rs)->mode != 0)
		return true;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0, n = rules_set_headers(rs, k, &h); i < n; i++)
			if (strstr(h[i].tmpl, "_PREVIEW_"))
				return true;
	return false;
}

/* The tags of rs's templates (the add_header fields, the report_safe reports, rewrite_header
 * Subject) whose value the header view of the message sc scanned gives, into t. */
static void rules_message_tags(const struct rules_set *rs, struct rules_scratch *sc,
    struct rules_msg_tags *t)
{
	const struct addhdr_safe *c = rules_set_safe(rs);
	const struct addhdr_spec *h;

	for (int k = 0; k < 2; k++)
		for (size_t i = 0, n = rules_set_headers(rs, k, &h); i < n; i++)
			addhdr_mtags_collect(h[i].tmpl, &t->m, &t->n);
	if (c->mode != 0) {
		addhdr_mtags_collect(c->report, &t->m, &t->n);
		addhdr_mtags_collect(c->unsafe_report, &t->m, &t->n);
	}
	addhdr_mtags_collect(rules_set_rewrite_subject(rs), &t->m, &t->n);
	for (size_t i = 0; i < t->n; i++)
		t->m[i].value = rules_message_tag(sc, t->m[i].tag);
}

struct rules_lines_acc { const char **v; size_t *l; size_t n, cap; };

static void rules_line_acc_cb(const char *line, size_t len, void *arg)
{
	struct rules_lines_acc *a = arg;

	if (a->n >= a->cap)
		return;
	a->v[a->n] = line;
	a->l[a->n++] = len;
}

/* _PREVIEW_ of the message sc scanned: its body lines, the Subject's first left out. */
static char *rules_preview(const struct rules_scratch *sc)
{
	const char *v[5];
	size_t l[5];
	struct rules_lines_acc a = { v, l, 0, 5 };

	rules_scratch_foreach_line(sc, RULE_BODY, rules_line_acc_cb, &a);
	return addhdr_preview(a.n ? v + 1 : v, a.n ? l + 1 : l, a.n ? a.n - 1 : 0);
}

static void rules_work_cb(uv_work_t *req)
{
	struct rules_job *j = req->data;
	struct rules_envelope envl = { .helo = j->helo, .mail_from = j->mail_from,
		.rdns = j->rdns, .client_ip = j->client_ip,
		.rcpts = (const char *const *)j->rcpts, .nrcpts = j->nrcpts,
		.client = (const struct sockaddr *)&j->client };
	struct rules_scratch *sc = rules_worker_take_scratch(j->w);

	if (sc == NULL) {
		j->failed = true;
		return;
	}
	/* SA's check_bayes scans on first use; every BAYES_xx rule asks, so classify first */
	/* a message over rules.max_size is not tokenized (its body rules, the BAYES_ ones
	 * among them, do not run; spamc does not even send it): the tokenizer's parse holds
	 * a few times the message, outside limits.memory_budget */
	if (j->w->bayes && j->w->rs->uses_bayes && j->max_size && j->len > j->max_size)
		bayes_classify_skip(j->w->bayes, &j->bayes, "too_big");
	else if (j->w->bayes && j->w->rs->uses_bayes)
		bayes_classify(j->w->bayes, j->msg, j->len, &j->bayes);
	if (j->w->grey_any)
		greylist_message_digest(j->mail_from, (const char *const *)j->rcpts, j->nrcpts, j->msg,
		    j->len, j->grey_hex);
	rules_scratch_set_bayes(sc, j->w->bayes ? &j->bayes : NULL);
	rules_set_scan(j->w->rs, sc, j->msg, j->len, &envl, &j->ext, j->max_size, &j->res);
	rules_scratch_set_bayes(sc, NULL);
	if (rules_wants_preview(j->w->rs))
		j->tags.preview = rules_preview(sc);
	rules_message_tags(j->w->rs, sc, &j->tags);
	rules_worker_give_scratch(j->w, sc);
}

/* SpamAssassin's _AUTOLEARN_ (PerMsgStatus::get_autolearn_status), what X-Spam-Status's
 * default template says after "autolearn=": "disabled" without a classifier or with
 * autolearn off (SA: use_bayes 0 or bayes_auto_learn 0); "no" when autolearn did not choose
 * the message; when it did, "spam" or "ham" once learned, "unavailable" when nothing was
 * learned (learned before, or the store unreadable), "failed" when learning failed. Each
 * with " autolearn_force=no", or "=yes (RULES)" when a forcing rule made the choice. */
static void rules_status_tail(char *buf, size_t len, const struct rules_worker *w,
    const struct rules_config *rc, const struct rules_job *j)
{
	static const char *const st[] = { "no", NULL, "unavailable", "failed" };
	char force[sizeof(j->alp.force_names) + 8];

	if (w->bayes == NULL || !rc->bayes.enabled || !rc->bayes.autolearn) {
		snprintf(buf, len, "disabled");
		return;
	}
	if (j->learn >= 0 && j->alp.force)
		snprintf(force, sizeof(force), "yes (%s)", j->alp.force_names);
	else
		snprintf(force, sizeof(force), "no");
	snprintf(buf, len, "%s autolearn_force=%s", j->learn < 0 ? "no" :
	    j->al == RULES_AL_LEARNED ? (j->learn ? "spam" : "ham") : st[j->al], force);
}

/* The thresholds of j's recipients (rules.recipient_actions, rules/recipient_actions.h):
 * j->ths one per policy they fall under, in the entries' order, rules.actions' last;
 * j->required the lowest required=; j->policies names them for the log when entries are
 * configured. Out of memory: rules.actions' alone. */
static void rules_job_thresholds(const struct rules_worker *w, struct rules_job *j)
{
	const struct recipient_actions_entry *ev = w->cfg->rules.recipient_actions.v;
	size_t ne = w->nth_for, o = 0;
	bool *seen;

	j->th1 = w->th;
	j->ths = &j->th1;
	j->nths = 1;
	j->required = w->th.required;
	j->policies[0] = '\0';
	if (ne == 0 || (seen = calloc(ne + 1, sizeof(*seen))) == NULL)
		return;
	for (size_t i = 0; i < j->nrcpts; i++)
		seen[recipient_actions_find(ev, ne, j->rcpts[i])] = true;
	if (j->nrcpts == 0)
		seen[ne] = true;
	if ((j->ths = calloc(ne + 1, sizeof(*j->ths))) == NULL) {
		j->ths = &j->th1;
		free(seen);
		return;
	}
	j->nths = 0;
	for (size_t k = 0; k <= ne; k++) {
		if (!seen[k])
			continue;
		j->ths[j->nths] = k < ne ? w->th_for[k] : w->th;
		if (j->nths == 0 || j->ths[j->nths].required < j->required)
			j->required = j->ths[j->nths].required;
		j->nths++;
		if (o < sizeof(j->policies)) {
			int n = k < ne ? snprintf(j->policies + o, sizeof(j->policies) - o, "%s[%zu]",
			    o ? ",recipient_actions" : " thresholds=recipient_actions", k) :
			    snprintf(j->policies + o, sizeof(j->policies) - o, "%s",
			    o ? ",actions" : " thresholds=actions");
			o += n > 0 ? (size_t)n : 0;
		}
	}
	if (o >= sizeof(j->policies))
		snprintf(j->policies + sizeof(j->policies) - 5, 5, ",...");
	free(seen);
}

/* Back on the loop thread, first half: the symbols and the total; j->learn: the autolearn
 * decision (bayes_autolearn_decide), -1 without a classifier. */
static void rules_apply_begin(struct rules_worker *w, struct rules_job *j)
{
	struct hook_env *env = j->env;
	const struct rules_config *rc = &env->cfg->rules;
	struct rules_result *res = &j->res;

	rules_rescore_symbols(w->rs, env, env->nsymbols, j->bayes.available);
	for (size_t i = 0; i < env->nsymbols; i++)
		j->alp.total += env->symbols[i].score;   /* other modules' symbols */
	for (size_t i = 0; i < res->n; i++)
		hook_env_add_symbol(env, res->v[i].name, res->v[i].score, res->v[i].desc);
	j->total = 0;
	for (size_t i = 0; i < env->nsymbols; i++)
		j->total += env->symbols[i].score;
	/* never learn from the classifier's own verdict: its rules' score is left out (SA's
	 * autolearn points: set 0, 3 header + 3 body points for spam) */
	j->learn = -1;
	rules_job_thresholds(w, j);
	if (w->bayes) {
		bayes_autolearn_points(w->rs, res->v, res->n, &j->alp);
		j->learn = bayes_autolearn_decide(&rc->bayes, &j->alp, j->total >= j->required);
		if (j->max_size && j->len > j->max_size)
			j->learn = -1;      /* not read, not learned (above) */
	}
}

/* rules.actions.greylist: what the greylist store answered for j's message turns the first
 * sight's 451 in *v (actions_decide's) into a delivery when the message passed (a retry after
 * greylist.delay), or when the store could not decide and rules.greylist_on_error is
 * deliver; logged event=rules_greylist with the digest's short form. */
static void rules_greylist_apply(struct hook_env *env, const struct rules_job *j, struct verdict *v)
{
	const struct greylist_msg_answer *a = &j->grey;
	bool deliver = a->result == GREYLIST_MSG_PASS || (a->result == GREYLIST_MSG_ERROR &&
	    env->cfg->rules.greylist_on_error == RULES_GREYLIST_DELIVER);
	char wait[32] = "";

	if (a->result == GREYLIST_MSG_DEFER)
		snprintf(wait, sizeof(wait), " wait=%llu", (unsigned long long)a->wait_s);
	log_event(a->result == GREYLIST_MSG_ERROR ? LOG_LVL_WARNING : LOG_LVL_INFO, env->session_id,
	    "event=rules_greylist result=%s digest=%.*s store=%s action=%s%s",
	    greylist_message_result_name(a->result), GREYLIST_DIGEST_SHORT, j->grey_hex, a->store,
	    deliver ? "deliver" : "tempfail", wait);
	if (deliver)
		verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
}

static void rules_apply_end(struct rules_worker *w, struct rules_job *j);
static void rules_job_free(struct rules_job *j);

static void rules_greylist_cb(void *arg, const struct greylist_msg_answer *a)
{
	struct rules_job *j = arg;
	struct rules_worker *w = j->w;

	j->grey_req = NULL;
	j->grey = *a;
	if (j->env != NULL) {
		j->env->module_ctx[j->slot] = NULL;
		rules_apply_end(w, j);
	}
	rules_job_free(j);
	rules_worker_unref(w);
}

/* Before the verdict: when j's message falls in rules.actions.greylist's band (mode enforce),
 * asks the greylist store whether it passes. True when the answer comes later (the job is
 * the session's, rules_greylist_cb finishes it); false when the verdict can go on now. */
static bool rules_greylist_start(struct rules_job *j)
{
	struct verdict v;
	const char *act;

	if (!j->w->grey_any || j->env->cfg->rules.mode != RULES_MODE_ENFORCE)
		return false;
	act = actions_decide_recipients(j->ths, j->nths, j->total, j->res.action, j->res.action_rule,
	    &v, NULL);
	if (strcmp(act, "greylist") != 0)
		return false;
	j->grey_asked = true;
	if (greylist_message_check(j->env, j->grey_hex, &j->grey, rules_greylist_cb, j,
	    &j->grey_req) == 1)
		return false;
	j->env->module_ctx[j->slot] = j;
	return true;
}

/* Second half, once what autolearn chose is learned (j->al): verdict, headers, log line. */
static void rules_apply_end(struct rules_worker *w, struct rules_job *j)
{
	struct hook_env *env = j->env;
	struct hook_call *call = j->call;
	const struct rules_config *rc = &env->cfg->rules;
	const struct rules_result *res = &j->res;
	const struct bayes_result *br = &j->bayes;
	double total = j->total;
	struct verdict v;
	const char *act;
	char tests[512], sbuf[32], bbuf[64] = "", al[sizeof(j->alp.force_names) + 128];
	char missing[64], scan[96] = "", alog[32] = "";
	size_t to = 0;
	bool incomplete, marked, spam, wrapped = false;

	if (w->bayes && br->scanned)
		snprintf(bbuf, sizeof(bbuf), " bayes=%.4f", br->prob);
	else if (w->bayes && w->rs->uses_bayes)
		snprintf(bbuf, sizeof(bbuf), " bayes=%s", br->why ? br->why : "none");
	rules_status_tail(al, sizeof(al), w, rc, j);
	if (j->learn >= 0)
		snprintf(alog, sizeof(alog), " autolearn=%.*s", (int)strcspn(al, " "), al);
	act = actions_decide_recipients(j->ths, j->nths, total, res->action, res->action_rule, &v, NULL);
	if (j->grey_asked)
		rules_greylist_apply(env, j, &v);
	tests[0] = '\0';
	for (size_t i = 0; i < env->nsymbols && to + 1 < sizeof(tests); i++) {
		int n = snprintf(tests + to, sizeof(tests) - to, "%s%s", i ? "," : "",
		    env->symbols[i].name);

		if (n < 0 || (size_t)n >= sizeof(tests) - to)
			break;
		to += (size_t)n;
	}
	actions_format_score(sbuf, sizeof(sbuf), total);
	/* a scorer's part is missing: the total is not the message's score, and an X-Spam-Status
	 * saying "No, score=0.0" would make unscanned mail look like clean ham to the mail client
	 * and to sieve rules. Like spamc with spamd down, no X-Spam-* verdict is written (the
	 * sender's are still removed); the thresholds still act on what did score. */
	incomplete = rules_missing_scorers(env, missing, sizeof(missing));
	if (incomplete || res->over_budget)
		snprintf(scan, sizeof(scan), " scan=%s%s%s%s", res->over_budget ? "over_budget" : "",
		    res->over_budget && incomplete ? "," : "", incomplete ? "incomplete missing=" : "",
		    incomplete ? missing : "");
	if (total >= j->required)   /* spam as X-Spam-Status says it: for reputation */
		env->flags |= HOOK_FLAG_SPAM;
	if (rc->mode == RULES_MODE_LOG) {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=rules score=%s required=%.1f action=%s%s tests=%s%s%s%s%s%s", sbuf,
		    j->required, act, v.action != VERDICT_CONTINUE ? "(dry-run)" : "",
		    tests[0] ? tests : "none", res->body_skipped ? " body=skipped" : "",
		    incomplete ? scan : "", bbuf, alog, j->policies);
		verdict_set(&v, VERDICT_CONTINUE, 0, NULL, NULL);
	} else {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=rules score=%s required=%.1f action=%s tests=%s%s%s%s%s%s", sbuf,
		    j->required, act, tests[0] ? tests : "none",
		    res->body_skipped ? " body=skipped" : "", scan, bbuf, alog, j->policies);
	}
	marked = !incomplete && (v.action == VERDICT_CONTINUE || v.action == VERDICT_ACCEPT ||
	    v.action == VERDICT_QUARANTINE);
	spam = round(total * 1000) / 1000 >= j->required;
	/* report_safe 1 or 2: spam SpamAssassin would wrap (a message the body rules saw: a
	 * bigger one spamc does not even send) becomes the report with the original inside;
	 * it falls back to the fields alone when the wrapped message cannot be made, and in
	 * mode log, whose promise is the fields alone */
	if (rc->headers && marked && spam && rules_set_safe(w->rs)->mode != 0 &&
	    !res->body_skipped && rc->mode != RULES_MODE_LOG) {
		struct rules_wrap wrap = { 0 };

		rules_add_headers(w, env, total, j->required, res, al,
		    w->bayes && br->scanned ? br->prob : -1, &j->tags, &wrap);
		wrapped = rules_wrap_apply(w, env, &wrap);
		strbuf_free(&wrap.fields);
		free(wrap.report);
		free(wrap.unsafe);
		free(wrap.subject_tag);
		free(wrap.from_tag);
		free(wrap.to_tag);
	}
	if (wrapped)
		;
	else if (rc->headers && marked)
		rules_add_headers(w, env, total, j->required, res, al,
		    w->bayes && br->scanned ? br->prob : -1, &j->tags, NULL);
	else if (!rc->headers || incomplete)
		/* no verdict of ours goes on, and no sender's either: a forged "X-Spam-Status:
		 * No" or "X-Spam-Flag: NO" must not reach a mailbox filter that reads it
		 * (SpamAssassin removes X-Spam-* whatever it adds) */
		rules_delete_spam_fields(env);
	if (!wrapped && rules_set_rewrite_subject(w->rs) && marked)
		rules_rewrite_subject(env, rules_set_rewrite_subject(w->rs), total, j->required,
		    spam);
	/* the sender's own field goes on the way out, whatever we add (proxy/ownfields.h): a
	 * forged "passed" must not reach a mailbox filter that trusts it */
	if (j->grey_asked && j->grey.result != GREYLIST_MSG_DEFER && v.action == VERDICT_CONTINUE) {
		char gv[128];

		/* what let the message through greylisting, for the mailbox and its filters */
		snprintf(gv, sizeof(gv), "%s digest=%.*s store=%s",
		    j->grey.result == GREYLIST_MSG_PASS ? "passed" : "error", GREYLIST_DIGEST_SHORT,
		    j->grey_hex, j->grey.store);
		hook_env_add_header(env, OWNFIELD_GREYLIST, gv);
	}
	if (v.action == VERDICT_QUARANTINE)
		snprintf(env->quarantine_reason, sizeof(env->quarantine_reason),
		    "rules: %s%sscore=%s", res->action_rule ? res->action_rule : "",
		    res->action_rule ? " " : "", sbuf);
	hook_call_done(call, v.action == VERDICT_CONTINUE ? NULL : &v);
}

/* Autolearn, in the pool before the verdict goes out (as SpamAssassin learns before it
 * writes X-Spam-Status, so the header says what happened): j's message as j->learn, never
 * moved from the other class (bayes_learn_once). */
static void rules_learn_work_cb(uv_work_t *req)
{
	struct rules_job *j = req->data;
	enum bayes_learn_result lr = BAYES_LEARNED;

	if (bayes_learn_once(j->w->bayes, j->msg, j->len, j->learn ? BAYES_SPAM : BAYES_HAM,
	    &lr) < 0) {
		log_event(LOG_LVL_WARNING, NULL, "event=bayes_error op=autolearn");
		j->al = RULES_AL_FAILED;
	} else {
		j->al = lr == BAYES_LEARNED ? RULES_AL_LEARNED : RULES_AL_UNAVAILABLE;
	}
}

static void rules_learn_after_cb(uv_work_t *req, int status)
{
	struct rules_job *j = req->data;
	struct rules_worker *w = j->w;

	bayes_learn_leave();
	if (status != 0)
		j->al = RULES_AL_FAILED;    /* cancelled: not learned */
	if (j->env != NULL) {
		j->env->module_ctx[j->slot] = NULL;
		if (rules_greylist_start(j))
			return;
		rules_apply_end(w, j);
	}
	rules_job_free(j);
	rules_worker_unref(w);
}

static void rules_after_work_cb(uv_work_t *req, int status)
{
	struct rules_job *j = req->data;
	struct rules_worker *w = j->w;

	if (j->env != NULL) {
		if (status != 0 || j->failed) {
			struct verdict v;

			j->env->module_ctx[j->slot] = NULL;
			log_event(LOG_LVL_WARNING, j->env->session_id, "event=rules_unscored reason=%s",
			    status != 0 ? "scan_cancelled" : "no_scratch");
			verdict_set(&v, VERDICT_TEMPFAIL, 451, "rules",
			    "4.3.0 content check failed, try again later");
			hook_call_done(j->call, &v);
		} else {
			uv_loop_t *loop = j->env->loop;
			unsigned busy, share;

			rules_apply_begin(w, j);
			/* the store could not be read for this message: SA's "unavailable" (no
			 * second wait on a store that is down) */
			if (j->learn >= 0 && j->bayes.why && strcmp(j->bayes.why, "store_error") == 0)
				j->al = RULES_AL_UNAVAILABLE;
			else if (j->learn >= 0 && !bayes_learn_enter(&busy, &share)) {
				/* learning's share of the pool is taken (a slow store): not learned,
				 * rather than a scan's thread held */
				log_event(LOG_LVL_WARNING, j->env->session_id, "event=bayes_learn_busy "
				    "via=autolearn running=%u share=%u", busy, share);
				j->al = RULES_AL_UNAVAILABLE;
			} else if (j->learn >= 0) {
				/* the job stays the session's (rules_session_free) until learned */
				j->learn_req.data = j;
				if (loop != NULL && uv_queue_work(loop, &j->learn_req, rules_learn_work_cb,
				    rules_learn_after_cb) == 0) {
					j->env->module_ctx[j->slot] = j;
					return;
				}
				rules_learn_work_cb(&j->learn_req);   /* no loop (tests) */
				bayes_learn_leave();
			}
			j->env->module_ctx[j->slot] = NULL;
			if (rules_greylist_start(j))
				return;
			rules_apply_end(w, j);
		}
	}
	rules_job_free(j);
	rules_worker_unref(w);
}

static void rules_run(void *wstate, int slot, struct hook_call *call)
{
	struct rules_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct rules_job *j;

	if (hook_call_stage(call) != HOOK_EOM) {
		hook_call_done(call, NULL);
		return;
	}
	if (env->msg == NULL) {
		log_event(LOG_LVL_WARNING, env->session_id, "event=rules_unscored reason=no_message");
		hook_call_done(call, NULL);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->pin = msgbuf_pin(env->msg, &j->msg, &j->len)) == NULL) {
		struct verdict v;

		log_event(LOG_LVL_WARNING, env->session_id, "event=rules_unscored reason=%s",
		    j == NULL ? "out_of_memory" : "unreadable");
		free(j);
		verdict_set(&v, VERDICT_TEMPFAIL, 451, "rules", "4.3.0 cannot read message");
		hook_call_done(call, &v);
		return;
	}
	j->max_size = env->cfg->rules.max_size;
	j->w = w;
	j->call = call;
	j->env = env;
	j->slot = slot;
	j->helo = rules_dup_or_null(env->helo);
	j->mail_from = rules_dup_or_null(env->mail_from);
	j->rdns = rules_dup_or_null(env->client_name);
	j->client_ip = rules_dup_or_null(env->client_ip);
	j->client = env->client;
	if (env->nrcpts) {
		j->rcpts = calloc(env->nrcpts, sizeof(char *));
		if (j->rcpts == NULL)
			abort();
		for (size_t i = 0; i < env->nrcpts; i++)
			j->rcpts[i] = rules_dup_or_null(env->rcpts[i].addr ? env->rcpts[i].addr : "");
		j->nrcpts = env->nrcpts;
	}
	if (env->nsymbols) {
		j->ext.symbols = calloc(env->nsymbols, sizeof(*j->ext.symbols));
		if (j->ext.symbols == NULL)
			abort();
		for (size_t i = 0; i < env->nsymbols; i++)
			memcpy(j->ext.symbols[i].name, env->symbols[i].name,
			    sizeof(j->ext.symbols[i].name));
		j->ext.nsymbols = env->nsymbols;
	}
	j->req.data = j;
	w->refs++;
	if (env->loop == NULL ||
	    uv_queue_work(env->loop, &j->req, rules_work_cb, rules_after_work_cb) != 0) {
		/* no loop (tests) or the pool refused: scan right here */
		rules_work_cb(&j->req);
		rules_after_work_cb(&j->req, 0);
		return;
	}
	env->module_ctx[slot] = j;
}

/* A job waiting for the greylist store's answer whose session or call is gone: the request
 * is cancelled (its callback never comes) and the job freed. */
static void rules_greylist_drop(struct rules_job *j)
{
	struct rules_worker *w = j->w;

	greylist_message_cancel(j->grey_req);
	j->grey_req = NULL;
	rules_job_free(j);
	rules_worker_unref(w);
}

/* The session goes away with a scan in flight: its result is dropped. */
static void rules_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct rules_job *j = env->module_ctx[slot];

	if (j) {
		log_event(LOG_LVL_INFO, env->session_id,
		    "event=rules_unscored reason=session_closed");
		j->env = NULL;
		env->module_ctx[slot] = NULL;
		if (j->grey_req != NULL)
			rules_greylist_drop(j);
	}
}

/* The chain gave up on a scan (limits.filter_deadline passed): one still queued in the
 * thread pool is taken out of it (its after_work runs with UV_ECANCELED and frees it), one
 * running finishes and its result is dropped (env NULL, as for a session gone). Else the
 * scans of messages already answered 451 would go on filling the pool, and every message
 * after a burst would wait behind them past its own deadline. */
static void rules_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct hook_env *env = hook_call_env(call);
	struct rules_job *j = env->module_ctx[slot];

	(void)wstate;
	if (j == NULL || j->call != call)
		return;
	j->env = NULL;
	env->module_ctx[slot] = NULL;
	if (j->grey_req != NULL) {
		rules_greylist_drop(j);
		return;
	}
	uv_cancel((uv_req_t *)&j->req);
}

static uint64_t rules_timeout_ms(void *wstate) { return 0; }
static enum verdict_action rules_on_error(void *wstate) { return VERDICT_TEMPFAIL; }

const struct hook_module rules_module = {
	.name = "rules",
	.flags = HOOK_MODULE_SCORER,
	.worker_init = rules_worker_init,
	.worker_free = rules_worker_free,
	.stages = rules_stages,
	.run = rules_run,
	.session_free = rules_session_free,
	.cancel = rules_cancel,
	.timeout_ms = rules_timeout_ms,
	.on_error = rules_on_error,
};

/* ---------------------------------------------------------------- config */

static const char *const rules_mode_choices[] = { "enforce", "log", NULL };
static const char *const rules_greylist_on_error_choices[] = { "deliver", "tempfail", NULL };

static const struct cfg_field rules_actions_fields[] = {
	{ "add_header", CFG_DOUBLE, offsetof(struct rules_actions_config, add_header), "5",
	  -1000, 100000, .doc = "score from which X-Spam-Status says Yes (0 = off)" },
	{ "tempfail", CFG_DOUBLE, offsetof(struct rules_actions_config, tempfail), "0",
	  -1000, 100000, .doc = "score from which the message gets 451 4.7.1 (0 = off)" },
	{ "reject", CFG_DOUBLE, offsetof(struct rules_actions_config, reject), "0",
	  -1000, 100000, .doc = "score from which the message gets 550 5.7.1 (0 = off)" },
	{ "quarantine", CFG_DOUBLE, offsetof(struct rules_actions_config, quarantine), "0",
	  -1000, 100000, .doc = "score from which the message goes to the quarantine backend "
	  "only, 250 once stored (0 = off; reject, and a higher tempfail, win over it)" },
	{ "greylist", CFG_DOUBLE, offsetof(struct rules_actions_config, greylist), "0",
	  -1000, 100000, .doc = "score from which the message is greylisted (rspamd's greylist "
	  "action): its first delivery attempt gets 451 4.7.1, a retry of the same message (body, "
	  "sender and recipients) after greylist.delay and within greylist.retry_window is "
	  "delivered, tagged; records in greylist.store (0 = off; reject, quarantine and tempfail "
	  "win over it, it wins over add_header)" },
	{ .key = NULL }
};

static const struct cfg_table rules_actions_table = {
	"rules.actions", sizeof(struct rules_actions_config), rules_actions_fields, NULL
};

static const struct cfg_field rules_fields[] = {
	{ "files", CFG_STRLIST, offsetof(struct rules_config, files), NULL,
	  .doc = "rule files (globs, each sorted; SpamAssassin syntax); empty = rules off" },
	{ "actions", CFG_STRUCT, offsetof(struct rules_config, actions), NULL,
	  .sub = &rules_actions_table, .doc = "score thresholds: add_header, greylist, tempfail, quarantine, reject" },
	{ "recipient_actions", CFG_STRUCT_LIST, offsetof(struct rules_config, recipient_actions),
	  .sub = &recipient_actions_entry_table,
	  .doc = "other thresholds for some recipients (MailScanner's Required/High SpamAssassin Score "
	  "rulesets, amavis's spam_tag2_level_maps/spam_kill_level_maps): a list of { recipients, "
	  "add_header, greylist, tempfail, quarantine, reject }, a key left out is actions'; a recipient takes the "
	  "first entry that lists it, one no entry lists takes actions. A message is not split: it gets "
	  "the mildest of its recipients' actions (refused only at a score every one's policy refuses; "
	  "quarantine before tempfail before reject), X-Spam-Status the lowest required= of theirs "
	  "(docs/rules.md). Empty (the default): actions for everyone" },
	{ "mode", CFG_ENUM, offsetof(struct rules_config, mode), "enforce",
	  .choices = rules_mode_choices,
	  .doc = "enforce, or log: compute and log the action but only add headers" },
	{ "required_score", CFG_DOUBLE, offsetof(struct rules_config, required_score), "0",
	  0, 100000, .doc = "required= in X-Spam-Status (0 = actions.add_header, else 5)" },
	{ "max_size", CFG_SIZE, offsetof(struct rules_config, max_size), "2M",
	  .doc = "bigger messages get header and envelope rules only" },
	{ "headers", CFG_BOOL, offsetof(struct rules_config, headers), "true",
	  .doc = "add X-Spam-Score, X-Spam-Symbols and SpamAssassin's add_header fields (X-Spam-Status, X-Spam-Level, X-Spam-Flag: YES on spam, and the rule files' add_header lines) to delivered mail; the message's own X-Spam-* are removed either way" },
	{ "greylist_on_error", CFG_ENUM, offsetof(struct rules_config, greylist_on_error), "deliver",
	  .choices = rules_greylist_on_error_choices,
	  .doc = "a message actions.greylist greylists when the greylist store cannot decide (an "
	  "LMDB read error, out of memory; an unreachable Redis store leaves it to the local table as "
	  "greylisting at RCPT does): deliver (tagged as add_header would) | tempfail (451 4.7.1)" },
	{ "greylist_expire", CFG_DURATION, offsetof(struct rules_config, greylist_expire), "1d",
	  1000, 365.0 * 86400000,
	  .doc = "how long a message that passed greylisting by score (actions.greylist) stays passed "
	  "(a copy sent again within it is delivered at once; renewed on use), in greylist.store: "
	  "rspamd's expire (1d); greylist.expire is a passed triplet's (greylisting at RCPT)" },
	{ "trusted_networks", CFG_CIDRLIST, offsetof(struct rules_config, trusted_networks), NULL,
	  .doc = "SpamAssassin's trusted_networks: relays there are trusted (empty: SA infers)" },
	{ "internal_networks", CFG_CIDRLIST, offsetof(struct rules_config, internal_networks),
	  NULL, .doc = "SpamAssassin's internal_networks: your MXes (empty: trusted_networks)" },
	{ "client_relay", CFG_BOOL, offsetof(struct rules_config, client_relay), "true",
	  .doc = "count the SMTP client as the newest relay, as spamd behind mxgate sees it "
	  "(false when mxgate is not the MX and the message has its Received already)" },
	{ "bayes", CFG_STRUCT, offsetof(struct rules_config, bayes), NULL,
	  .sub = &bayes_config_table,
	  .doc = "the learning classifier: BAYES_00..BAYES_99 (docs/classifier.md)" },
	{ .key = NULL }
};

/* A glob that matches no file is the config's error, at the glob (the compiler's own report
 * names only the glob, at 0:0); recipient_actions indexed (recipient_actions_index_build). */
static int rules_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct rules_config *rc = obj;
	int ret = 0;

	/* recipient_actions indexed by recipient: thousands of customers' entries are not each
	 * compared with every recipient of every message */
	if (recipient_actions_index_build(rc->recipient_actions.v, rc->recipient_actions.n) < 0)
		ret = cfg_error(p, n, "out of memory");

	for (size_t i = 0; i < rc->files.n; i++) {
		glob_t gl;
		int r = glob(rc->files.v[i], GLOB_ERR, NULL, &gl);

		if (r != GLOB_NOMATCH)
			globfree(&gl);
		if (r != 0)
			ret = cfg_error_key(p, n, "files", (long)i, "\"%s\" matches no readable file",
			    rc->files.v[i]);
	}
	return ret;
}

const struct cfg_table rules_config_table = {
	"rules", sizeof(struct rules_config), rules_fields, rules_config_validate
};

