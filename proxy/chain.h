/* chain.h — runs the chain entries of one stage for one session, in order, one at a time,
 * with each entry's timeout and on_error, and reports one verdict; tells every module how
 * each transaction and the session ended.
 *
 * The entries of a worker's config generation are a vector: the registry's filters, one
 * entry per `plugins:` entry, then the scorer (rules). This is the only place with timers,
 * on_error and late completions: modules and the plugin adapter never run timers of their
 * own for a call.
 *
 * A session runs at most one chain at a time. The chain owns the calls it starts; a call a
 * module has not completed (timed out, or outstanding when the session closes) is kept
 * until the module completes it or the session is freed, and a completed call is kept
 * until the next stage starts, so a second completion is recognised and ignored. */
#ifndef MX_CHAIN_H
#define MX_CHAIN_H

#include "hook.h"

/* One entry of the chain, per worker and config generation. */
struct chain_entry {
	const struct hook_module *mod;
	void *wstate;            /* the module's (or the plugin instance's) worker state */
	unsigned stages;         /* bit (1u << HOOK_x) per stage it takes part in */
	const char *name;        /* for logs and error replies: the module's, or the plugin entry's */
};

/* The entries of one worker for one config generation. */
struct chain_modules {
	struct chain_entry *v;   /* filters, plugin entries, scorer; NULL when none */
	size_t n;
	unsigned any_stages;     /* union */
	/* The modules whose worker_init failed (event=module_init_failed), comma-separated:
	 * configured but not running in this worker ("" when none). */
	char failed[128];
};

typedef void (*chain_done_fn)(void *arg, const struct verdict *v);
/* The connect stage moved on after an entry answered asynchronously (or timed out) and is
 * still running: called with the stage's arg once the entries that answer at once ran. */
typedef void (*chain_progress_fn)(void *arg);

struct chain {
	const struct chain_modules *mods;
	struct hook_env *env;
	enum hook_stage stage;
	size_t next;              /* next entry index */
	chain_done_fn done;
	chain_progress_fn progress;   /* NULL: none (chain_on_progress) */
	void *arg;
	struct hook_call *cur;    /* the call in progress (NULL when none) */
	uint64_t deadline;        /* loop time (ms) the stage must be decided by: the end of
	                           * data's limits.filter_deadline; 0 = none */
	uint64_t began;           /* loop time the stage began (for the deadline's log line) */
	bool deadline_armed;      /* the timer runs to the deadline, not the call's timeout */
	bool *tagged;             /* per entry: its failure tagged the transaction's message
	                           * (on_error: tag), once each; allocated at the first tag,
	                           * so any number of entries (no 64-bit mask) */
	struct hook_call *orphans;/* calls abandoned after a timeout, still owned */
	struct hook_call *spent;  /* completed calls, freed when the next stage starts */
	struct hook_call *spare;  /* freed calls kept for the next steps (up to CHAIN_SPARE_MAX):
	                           * no calloc/free per module step and message */
	size_t nspare;
	uv_timer_t *timer;        /* borrowed from the session */
	unsigned depth;           /* module callbacks on the stack (spent calls stay while > 0) */
	bool running, in_step;
	bool accepted;            /* an ACCEPT at this stage: only scorers still run */
	bool *bypassed;           /* per entry: `bypass:` skips it at this stage
	                           * (chain_bypass_begin); allocated at the first skip */
	size_t nbypassed;         /* entries skipped at this stage (0: bypassed is all false) */
	struct verdict result;
	/* where the HELO stage's symbols begin (helo_seen: it ran): a new EHLO (after STARTTLS)
	 * replaces them instead of adding a second set */
	size_t helo_symbols;
	bool helo_seen;
	/* entries from this index on were not asked at connect (an earlier one refused the
	 * client): those that take part in the connect stage never opened their side of the
	 * session (a milter's connection) and are not asked about any later stage */
	size_t connect_cut;
	/* the transaction, for the outcome notifications */
	bool txn_open, session_ended;
	enum hook_stage txn_stage;   /* the last stage the open transaction reached */
	/* a discard/quarantine decided before EOM, applied there (allocated when one happens:
	 * rare, and a verdict is large next to the rest of a session) */
	struct verdict *txn_pending;
};

/* Builds this worker's entries for cfg: every registry module whose worker_init leaves a
 * state, then every plugin instance. Entries that fail are logged and left off; 0 (or -1
 * when out of memory, nothing built). */
int chain_modules_init(struct chain_modules *m, const struct mx_config *cfg, uv_loop_t *loop, int worker);
/* Releases every entry's worker state; m is empty afterwards (a second call does nothing). */
void chain_modules_free(struct chain_modules *m);
/* Sets m up as a chain of one module, mod with worker state ws, kept in the caller's *entry
 * (nothing is allocated: release ws yourself, not with chain_modules_free). Its slot is 0.
 * For tests and tools that drive one module. */
void chain_modules_single(struct chain_modules *m, struct chain_entry *entry,
    const struct hook_module *mod, void *ws);

/* Sets c up for a session over mods (may be NULL: no entries) and env, and gives env its
 * module_ctx slots. timer may be NULL (no timeouts). */
void chain_init(struct chain *c, const struct chain_modules *mods, struct hook_env *env, uv_timer_t *timer);
/* True when at least one entry wants this stage. */
bool chain_wants(const struct chain_modules *m, enum hook_stage st);

/* `bypass:` with bypass_mixed: split (bypass.h): true when recipient addr may not join a
 * transaction from sender (the envelope sender without <>, "" for <>) whose first accepted
 * recipient is first, because a content check of c (a plugin entry or the scorer, at DATA
 * or end of data; not greylisting; not one a connect refusal cut off, connect_cut: it judges
 * no message) is bypassed for one of the two and not for the other; the caller answers 452 4.5.3
 * and the client sends addr in a transaction of its own. False when first is NULL (no
 * recipient yet), without bypass entries, or with bypass_mixed: check. No I/O. */
bool chain_bypass_splits(const struct chain *c, const char *sender, const char *first, const char *addr);
/* True when running stage st now would change nothing: no entry that would run wants it,
 * or every one that does says it is settled (hook_module.settled). */
bool chain_settled(const struct chain *c, enum hook_stage st);
/* Runs the stage; done is called exactly once (possibly before chain_run returns). At
 * HOOK_EOM a discard/quarantine kept from earlier in the transaction answers at once. */
void chain_run(struct chain *c, enum hook_stage st, chain_done_fn done, void *arg);
/* A connect refusal was lifted (AUTH): the entries the refusal cut off that take part in
 * the connect stage (from connect_cut on) run it now, and the cut is cleared, so they take
 * part in the later stages. One that refuses now cuts again. done as for chain_run; with
 * no cut it answers at once, a continue. */
void chain_run_cut(struct chain *c, chain_done_fn done, void *arg);
/* The connect stage is not run now (a front end in xclient_hosts: not the client): every
 * entry taking part in it is cut, as after a refusal by the first entry, so the later
 * stages leave them out until chain_run_cut runs it (or the chain is begun afresh). */
void chain_cut_connect(struct chain *c);
/* fn hears each asynchronous step of a connect stage that leaves it running (the session:
 * a held pregreet teaser may go). */
void chain_on_progress(struct chain *c, chain_progress_fn fn);
/* True while the connect stage runs and an entry flagged HOOK_MODULE_BEFORE_TEASER is in
 * progress or still to be asked. */
bool chain_teaser_waits(const struct chain *c);
/* The timer callback the session forwards to when the chain owns the timer. */
void chain_on_timeout(struct chain *c);

/* During DATA the message's header block hdr[0..len) is complete: every entry's headers
 * callback hears of it (hook.h), in chain order. Synchronous; no verdict. */
void chain_headers(struct chain *c, const char *hdr, size_t len);

/* A transaction starts (MAIL accepted for filtering): its outcome will be reported once. */
void chain_txn_begin(struct chain *c);
/* The open transaction ended with code at stage (reason may be NULL): every module's
 * outcome hears of it. Returns false (and does nothing) when none is open. */
bool chain_txn_end(struct chain *c, int code, enum hook_stage st, const char *reason);
/* The open transaction (if any) ends without a reply: code 0 at the last stage it reached. */
void chain_txn_abandon(struct chain *c);
/* The session ends: an open transaction is abandoned, then every module hears the session
 * outcome (code 0 unless refused at connect). Once; later calls do nothing. */
void chain_session_end(struct chain *c, int code, enum hook_stage st, const char *reason);

/* The session goes away: modules' session_free, then every call and env's slots are
 * released. */
void chain_release(struct chain *c);

#endif
