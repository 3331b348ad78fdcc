/* hook.h — the stage interface between the SMTP session and everything that judges it:
 * filters/ (dnsbl, ratelimit, reputation, spf, ...), plugins/ (milter, clamd, spamd, *.so,
 * each `plugins:` entry its own chain entry) and rules/ (the scorer, always last).
 *
 * The session runs the chain at each stage (connect, helo, mail, rcpt, data, eom, close),
 * and tells the modules that want it when a message's header block has arrived (headers).
 * Each module is called in turn with a `struct hook_call`; it completes the call exactly
 * once with hook_call_done(), synchronously or later from the same loop thread. The chain
 * (chain.c, the only place with timers, on_error and late completions) stops at the first
 * decisive verdict, enforces each entry's timeout (then applies its on_error), and reports
 * one verdict to the session. Scores, symbols, flags, header edits and envelope changes
 * accumulate in the `struct hook_env` every module sees. When a transaction ends, and once
 * more when the session ends, every module hears the outcome (`outcome`). */
#ifndef MX_HOOK_H
#define MX_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <uv.h>

struct mx_config;
struct msgbuf;

enum hook_stage {
	HOOK_CONNECT = 0,  /* after PROXY header, before the greeting is sent */
	HOOK_HELO,         /* env->helo set */
	HOOK_MAIL,         /* env->mail_from set (empty string for the null sender) */
	HOOK_RCPT,         /* env->cur_rcpt is the recipient being judged */
	HOOK_DATA,         /* DATA command, before 354 */
	HOOK_EOM,          /* whole message in env->msg (headers as received, no Received yet) */
	HOOK_CLOSE,        /* session ends; verdict ignored; must complete promptly */
	HOOK_NSTAGES
};

/* The one verdict set of filters, plugins (plugins/plugin.h's MXGATE_* map onto it one to
 * one, see plugins.c) and the rules engine. */
/* "connect", "helo", "mail", "rcpt", "data", "eom", "close"; "?" otherwise. */
const char *hook_stage_name(enum hook_stage st);

enum verdict_action {
	VERDICT_CONTINUE = 0, /* no objection: next module */
	VERDICT_ACCEPT,       /* no objection and no further checks at this stage: the remaining
	                       * entries of the stage are skipped, except the scorer (rules),
	                       * which still runs and may still refuse */
	VERDICT_TEMPFAIL,     /* 4xx */
	VERDICT_REJECT,       /* 5xx */
	VERDICT_DISCARD,      /* tell the client 250, deliver nowhere (logged); decided before
	                       * EOM it is kept for the transaction and applied at EOM, and the
	                       * stage ends as ACCEPT */
	VERDICT_QUARANTINE,   /* deliver to the quarantine backend with a reason header; before
	                       * EOM like DISCARD */
	VERDICT_ERROR,        /* the module or its peer failed: the chain applies the entry's
	                       * on_error (as after a timeout); reason says what failed */
};

/* The scalars and reason fill the first 64 octets: verdict_clear (each stage a chain runs)
 * writes three cache lines of it (reply and log_extra at their starts), not four. */
struct verdict {
	enum verdict_action action;
	int code;             /* 0 = the default for the action (451 / 550 / 554 ...) */
	bool not_an_error;    /* a deferral every well-behaved client gets (greylisting): not
	                       * one of the client's errors (limits.max_errors) */
	uint32_t delay_ms;    /* tarpit: hold the reply this long before sending it */
	char reason[48];      /* short log word: "dnsbl", "ratelimit", "virus", ... */
	char log_extra[128];  /* "" or key=value pairs (log form, values escaped) the session
	                       * adds to its event=reject/tempfail line: "list=bl.test" */
	char reply[400];      /* "5.7.1 listed in bl.test" — enhanced code + text; "" = default */
};

/* Makes v "continue" with every string empty: each field set, the strings' bytes after
 * their NUL left as they were (nothing reads past a NUL; verdict_set clears them all). */
static inline void
verdict_clear(struct verdict *v)
{
	v->action = VERDICT_CONTINUE;
	v->code = 0;
	v->reply[0] = '\0';
	v->reason[0] = '\0';
	v->log_extra[0] = '\0';
	v->not_an_error = false;
	v->delay_ms = 0;
}

/* Helpers to fill a verdict; reply may be NULL. */
void verdict_set(struct verdict *v, enum verdict_action a, int code, const char *reason,
    const char *reply_fmt, ...) __attribute__((format(printf, 5, 6)));

/* A symbol (named signal with a score) — what the rules engine sums. */
/* A symbol's name: at most HOOK_SYMBOL_NAME_MAX characters (SpamAssassin's limit for rule
 * names); a longer one is cut there. */
#define HOOK_SYMBOL_NAME_MAX 100
struct hook_symbol { char name[HOOK_SYMBOL_NAME_MAX + 1]; double score; char *desc; /* may be NULL */ };

/* Header edits, applied in order when the message is sent on. */
enum hdr_edit_op { HDR_ADD = 0 /* append at end of header */, HDR_INSERT /* at index */,
	HDR_CHANGE /* replace n-th occurrence (1-based) value; NULL value deletes */,
	HDR_DELETE_ALL /* every header with this name */,
	HDR_DELETE_PREFIX /* every header whose name starts with name but not with value (NULL: none) */,
	HDR_INSERT_DELIVERED /* at index in the header block as delivered, mxgate's Received counted
	                      * (a milter's smfi_insheader, Sendmail's and Postfix's sense): 0 above
	                      * that Received, 1 just below it (headers_apply_edits_at) */ };
struct hdr_edit { enum hdr_edit_op op; char *name; char *value; int index; };

/* What is known of a client name (Postfix's peer status codes, as XCLIENT sends them):
 * not looked up (yet), found, temporarily unavailable (DNS trouble), unavailable. */
enum hook_name_status { HOOK_NAME_UNKNOWN = 0, HOOK_NAME_OK, HOOK_NAME_TEMP, HOOK_NAME_PERM };

struct rcpt {
	char *addr;
	char *params;
	int status;     /* last backend reply code */
	bool added;     /* env->rcpts: added by a filter at end of data (smfi_addrcpt), not by
	                 * the client: a backend's 5xx drops it alone (smtp_tx.c) */
	size_t cap;     /* env->rcpts: smtp_tx's; addr and params are one block of cap octets
	                 * (read them, never free or keep them) */
};

/* What modules learn about a transaction and tell the ones that learn from outcomes
 * (reputation). Set with env->flags |= ...; reset with the transaction. */
enum hook_flag {
	HOOK_FLAG_SPAM = 1u << 0,        /* judged spam: the rules engine's score reached its
	                                  * add_header threshold (required_score), or spamd /
	                                  * rspamd said so */
	HOOK_FLAG_VIRUS = 1u << 1,       /* an antivirus (clamd, a milter) found malware */
	HOOK_FLAG_DISCARDED = 1u << 2,   /* the session: a filter's discard (250, not delivered) */
	HOOK_FLAG_QUARANTINED = 1u << 3, /* the session: delivered to the quarantine */
};

/* What modules see of a session. Owned by the session; stable until HOOK_CLOSE completes.
 * Strings are NUL-terminated; addresses are without angle brackets. */
enum hook_pregreet_pass { HOOK_PREGREET_NONE = 0, HOOK_PREGREET_TESTING, HOOK_PREGREET_KNOWN,
	HOOK_PREGREET_PASSED, HOOK_PREGREET_NOTED };

struct hook_env {
	const char *session_id;
	uv_loop_t *loop;
	const struct mx_config *cfg;   /* the config generation this session runs under */
	int worker;                    /* worker index, 0-based */

	/* connection */
	struct sockaddr_storage client;       /* after PROXY protocol / as accepted */
	char client_ip[46];
	int client_port;
	struct sockaddr_storage local;
	char client_name[256];                /* forward-confirmed reverse DNS name (filters/rdns.c),
	                                         "" until known or when there is none */
	char client_ptr[256];                 /* the PTR name, not confirmed; "" when none */
	int client_name_status;               /* enum hook_name_status of client_name */
	int client_ptr_status;                /* enum hook_name_status of client_ptr */
	const char *client_name_why;          /* static text: why client_name is not confirmed
	                                         (filters/rdns.c: ptr_nxdomain, forward_mismatch,
	                                         ...) for refusal lines; NULL when it is */
	void *rdns_lookup;                    /* filters/rdns.c's lookup of the name while its
	                                         session state lives, for rdns_wait_name (a
	                                         module before rdns in the chain that needs the
	                                         name); NULL when none */
	char helo[256];
	bool esmtp, tls;
	char tls_version[16], tls_cipher[64];
	int tls_cipher_bits;                  /* the cipher's secret bits (0 without TLS) */
	int tls_cert;                         /* the client's certificate: enum tlsconn_peer_cert
	                                         (tls.h; 0: none asked for) */
	const char *tls_cert_subject;         /* from tls_cert >= TLSCONN_CERT_UNVERIFIED on: its */
	const char *tls_cert_issuer;          /* subject's and issuer's CN and SHA-256 fingerprint */
	const char *tls_cert_fingerprint;     /* (tls.h), owned by the session's TLS connection */
	const char *auth_user;                /* SMTP AUTH: the user as the service knows it, and */
	const char *auth_mech;                /* its mechanism ("PLAIN"); both NULL when not
	                                         authenticated. Owned by the session's AUTH state
	                                         (proxy/auth.c), valid while they are set */

	/* transaction (reset by RSET / after each message) */
	char *mail_from;                      /* NULL before MAIL; "" for <> */
	char *mail_params;                    /* after the address, may be "" */
	struct rcpt *rcpts;                   /* accepted recipients */
	size_t nrcpts;
	const char *cur_rcpt;                 /* HOOK_RCPT: the candidate */
	const char *cur_rcpt_params;
	char queue_id[24];                    /* per message, set at MAIL */
	struct msgbuf *msg;                   /* HOOK_EOM: the message as received (unstuffed)
	                                         but for a sender's copies of the fields mxgate
	                                         owns (ownfields.h), which no filter is shown (the
	                                         edits' indexes count the fields shown);
	                                         no module changes it (hdr_edits, new_body do);
	                                         a module reading it in the thread pool after
	                                         its call pins it (msgbuf_pin: no copy outside
	                                         limits.memory_budget) */
	struct msgbuf *msg_sent;              /* HOOK_EOM: the message as the client sent it,
	                                         the same buffer as msg when it holds no owned
	                                         field: what a signature covers (senderauth's
	                                         DKIM, ARC); read it by hook_env_msg_sent */

	/* outputs accumulated by modules */
	struct hook_symbol *symbols;          /* for the whole session (connect-stage ones too) */
	size_t nsymbols, txn_symbols_start;   /* symbols from txn_symbols_start on belong to the txn */
	double score;                         /* sum of symbol scores */
	struct hdr_edit *hdr_edits;  size_t nhdr_edits;
	size_t hdr_edit_bytes;                /* octets the edits' names and values hold (a bound) */
	bool hdr_edit_refused;                /* a plugin's header was refused by that bound */
	struct msgbuf *new_body;              /* replaced body (owned), or NULL */
	char *new_mail_from;                  /* changed sender (owned), or NULL */
	struct rcpt *add_rcpts; size_t nadd_rcpts;  /* recipients added by filters */
	char **del_rcpts; size_t ndel_rcpts;        /* recipients removed by filters */
	/* a filter asked to add more than limits.max_recipients recipients (the rest were not
	 * kept: the message is tempfailed, 451 4.5.3) or to delete more than twice as many
	 * (a broken filter: its on_error); see hook_env_add_rcpt */
	bool add_rcpts_over, del_rcpts_over;
	char quarantine_reason[256];
	unsigned flags;                       /* enum hook_flag, for the transaction */
	/* The relaxed body hash (RFC 6376 3.4.4, SHA-256) of msg's body, the body_hash_len octets
	 * after its header block, that senderauth computed while verifying: the ARC sealer
	 * (filters/arc_seal.c) takes it instead of hashing the body again when the body goes
	 * out unchanged (new_body NULL, the same length). */
	bool body_hash_set;
	unsigned char body_hash[32];
	size_t body_hash_len;

	/* set by the session before HOOK_CONNECT: the process is near limits.max_connections;
	 * a module that tells known clients from unknown ones (reputation) refuses the unknown
	 * ones at connect with 421 so the known ones keep being served */
	bool overloaded;
	/* The pregreet test's pass store (proxy/pregreet.c, enum hook_pregreet_pass): the session
	 * sets TESTING when it sent the teaser, the pregreet module KNOWN when the store knows the
	 * client passed (the session then greets without waiting out the delay), the session
	 * PASSED when the client kept quiet for the whole delay, which the module writes. */
	int pregreet_pass;

	/* per-session private slots, one per chain entry (allocated by chain_init, released by
	 * chain_release), owned by the modules: module_ctx[slot] */
	void **module_ctx;
};

/* The message as the client sent it (env->msg_sent; env->msg when a caller set msg alone). */
static inline struct msgbuf *hook_env_msg_sent(const struct hook_env *env)
{
	return env->msg_sent ? env->msg_sent : env->msg;
}

/* Output helpers (copy their arguments). */
void hook_env_add_symbol(struct hook_env *env, const char *name, double score, const char *desc);
/* Returns the symbol with that name or NULL. */
const struct hook_symbol *hook_env_find_symbol(const struct hook_env *env, const char *name);
void hook_env_add_header(struct hook_env *env, const char *name, const char *value);
void hook_env_insert_header(struct hook_env *env, int index, const char *name, const char *value);
/* HDR_INSERT_DELIVERED: index counts the header block as delivered, mxgate's Received included. */
void hook_env_insert_header_delivered(struct hook_env *env, int index, const char *name, const char *value);
void hook_env_change_header(struct hook_env *env, const char *name, int index, const char *value);
void hook_env_delete_headers(struct hook_env *env, const char *name);
/* Deletes every field whose name starts with prefix (any case), but those starting with
 * except (NULL: none): "X-Spam-" but "X-Spam-Prev-", in one pass over the fields. An empty
 * prefix deletes every line of the header block, a line that is no field too (report_safe's
 * new header block, which keeps none of them). */
void hook_env_delete_headers_prefix(struct hook_env *env, const char *prefix, const char *except);
void hook_env_set_sender(struct hook_env *env, const char *addr);
/* Recipient changes, bounded as the client's recipients are: at most limits.max_recipients
 * added (one more sets add_rcpts_over and is not kept) and twice that deleted (more sets
 * del_rcpts_over). The one bound every filter's changes go through (a milter's and a
 * shared object's alike): each added one is a RCPT to the backend and is compared with the
 * envelope's when relayed, so an unbounded list cost time squared. 0, or -1 past the bound. */
int hook_env_add_rcpt(struct hook_env *env, const char *addr, const char *params);
int hook_env_del_rcpt(struct hook_env *env, const char *addr);
/* Takes ownership of body. */
void hook_env_replace_body(struct hook_env *env, struct msgbuf *body);

/* Drops the symbols from index n on (and their scores). */
void hook_env_truncate_symbols(struct hook_env *env, size_t n);

/* Session side: drop the transaction's outputs (after each message / RSET), or all. */
void hook_env_reset_txn(struct hook_env *env);
void hook_env_free_outputs(struct hook_env *env);

/* One invocation of one module at one stage. */
struct hook_call;
enum hook_stage hook_call_stage(const struct hook_call *c);
struct hook_env *hook_call_env(const struct hook_call *c);
/* Completes the call. v may be NULL (= CONTINUE). Must be called exactly once, on the
 * session's loop thread. After a timeout the chain has moved on: the late completion is
 * accepted and ignored; a second completion of a call is ignored too. */
void hook_call_done(struct hook_call *c, const struct verdict *v);
/* The module's peer is alive and working: the call's timeout starts again. */
void hook_call_progress(struct hook_call *c);

/* How a transaction (or the session) ended, for hook_module.outcome. */
struct hook_outcome {
	bool session;          /* false: one transaction ended; true: the session ends (last) */
	/* Transactions: the reply that ended it — 250 delivered (or discarded: flags), 4xx or
	 * 5xx refused at MAIL, DATA or end of data; 0 abandoned (RSET, HELO, STARTTLS, QUIT or
	 * a disconnect before the end). Session: the refusal the client got at connect (421,
	 * 550 answered at MAIL, ...), 0 when none. */
	int code;
	/* The stage that decided (abandoned: the last one the transaction reached; session:
	 * HOOK_CONNECT for a refusal at connect, else HOOK_CLOSE). */
	enum hook_stage stage;
	const char *reason;    /* short log word of whoever decided ("ratelimit", "backend"), or "" */
	unsigned flags;        /* enum hook_flag of the transaction (session: 0) */
};

enum hook_module_flag {
	/* Runs after every filter and plugin, and still after an ACCEPT at its stage (the
	 * rules engine: it sums every symbol). */
	HOOK_MODULE_SCORER = 1u << 0,
	/* A content filter (`plugins:` entries): a failure logs `event=plugin_error plugin=NAME`,
	 * counts in plugin_errors_total and reads, under on_error tempfail, "Content filter
	 * unavailable" at DATA and end of data, "<Stage> check unavailable" before (chain.c). */
	HOOK_MODULE_CONTENT = 1u << 1,
	/* Its connect decision comes before the pregreet teaser (a rate limit: the client it
	 * refuses hears the 421 alone), even when it answers asynchronously (a Redis store):
	 * the session holds the teaser until the connect stage is past it (chain_teaser_waits). */
	HOOK_MODULE_BEFORE_TEASER = 1u << 2,
};

/* A module. All functions run on a worker's loop thread. */
struct hook_module {
	const char *name;
	unsigned flags;        /* enum hook_module_flag */
	/* Per worker and config generation: set *wstate (NULL = module not configured; the
	 * module is then skipped). Return 0, or -1 after logging (the worker keeps going
	 * without the module). */
	int (*worker_init)(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate);
	/* Releases wstate; called on the loop thread when the generation is retired and no
	 * session uses it. May close handles (free their memory in their close callbacks). */
	void (*worker_free)(void *wstate);
	/* Which stages the module wants: bit (1u << HOOK_x). May depend on wstate. */
	unsigned (*stages)(void *wstate);
	/* Runs one stage. Per-session state lives in env->module_ctx[slot] (slot given). */
	void (*run)(void *wstate, int slot, struct hook_call *call);
	/* The session is being freed; abort any outstanding work for it and release
	 * env->module_ctx[slot]; never call hook_call_done afterwards. A module without it
	 * must complete every call synchronously (inside run). */
	void (*session_free)(void *wstate, int slot, struct hook_env *env);
	/* Per-call timeout (ms) and on_error action for this module; 0 = none. on_error is
	 * what a timeout or a VERDICT_ERROR turns into (CONTINUE or ACCEPT: go on without it). */
	uint64_t (*timeout_ms)(void *wstate);
	enum verdict_action (*on_error)(void *wstate);
	/* Optional: true when an on_error that goes on (CONTINUE) also tags the message: the
	 * chain adds `X-Mxgate-Filter-Error: NAME; stage=STAGE; error=WHY` (once per entry and
	 * transaction), so what was not filtered is delivered but recognisable. */
	bool (*on_error_tag)(void *wstate);
	/* Optional: the chain gave up on call (timeout): stop its work now. A completion from
	 * inside or after it is ignored. */
	void (*cancel)(void *wstate, int slot, struct hook_call *call);
	/* Optional: a transaction ended, or (o->session) the session ends — once each, before
	 * session_free. Synchronous and cheap; env is the session's. */
	void (*outcome)(void *wstate, int slot, struct hook_env *env, const struct hook_outcome *o);
	/* Optional: stage st begins (chain_run, chain_run_cut). Every entry that will be asked
	 * at st hears it first, in chain order, before the first entry runs: a hint to start a
	 * slow lookup now (a pass store's request, a PTR query) that the module's own call at
	 * st then uses, so it runs together with the entries before it instead of after them.
	 * No verdict; synchronous and must not block. What it starts is the module's, kept in
	 * env->module_ctx[slot]: its run at st takes the answer (or waits for it), session_free
	 * drops it (an entry before it may refuse the client: run is then never called). */
	void (*prefetch)(void *wstate, int slot, struct hook_env *env, enum hook_stage st);
	/* Optional, for the entries that take part in some stage: during DATA the client's
	 * header block is complete (hdr[0..len), up to and including the blank line that ends
	 * it, unstuffed, CRLF lines) while the body may still be arriving. A hint to start slow
	 * work early (DNS lookups) whose results the module keeps in env->module_ctx[slot] for
	 * its HOOK_EOM call; no verdict. Synchronous and must not block; hdr is valid during
	 * the call only (env->msg is still NULL). At most once per message, before HOOK_EOM;
	 * a message without a blank line, or one over limits.max_message_size or failing
	 * the spool before its header block ends, gets none, and one refused before end of
	 * data gets no HOOK_EOM after it: HOOK_EOM must judge without it, and what it started
	 * is the module's to drop (the next message's call, session_free). */
	void (*headers)(void *wstate, int slot, struct hook_env *env, const char *hdr, size_t len);
	/* Optional: true when this module's call at stage st would now complete at once with
	 * CONTINUE and change nothing (say a per-session lookup that is done). The session may
	 * then act on a pipelining client's commands ahead of their stage (RFC 2920: the next
	 * transaction sent to the backend with a message's final dot); the stage still runs
	 * at its turn. Without it the module's stages are never settled. */
	bool (*settled)(void *wstate, int slot, const struct hook_env *env, enum hook_stage st);
	/* Optional: `bypass:` leaves this entry out at stage st (bypass.h): it is not asked at
	 * st. Called when st begins, before the entries run; no verdict, synchronous, must not
	 * block. At HOOK_DATA and HOOK_EOM the transaction goes on without the entry (every
	 * recipient is covered): what it keeps of the transaction is to be dropped (a milter is
	 * sent ABORT). */
	void (*skipped)(void *wstate, int slot, struct hook_env *env, enum hook_stage st);
};

/* The registry (modules.def, modules.c): the modules of the config sections, filters
 * first, the scorer (HOOK_MODULE_SCORER) last. The chain puts the `plugins:` entries
 * (hook_plugin_entries) between the filters and the scorer. */
extern const struct hook_module *const hook_modules[];
extern const size_t hook_nmodules;

/* A module that takes one chain entry per configured instance: each `plugins:` entry. */
struct hook_instances {
	const struct hook_module *module;   /* shared by the instances; wstate tells them apart
	                                     * (its worker_init is not used) */
	size_t (*count)(const struct mx_config *cfg);
	/* Like worker_init for instance i; *name (borrowed from cfg) names it in logs. */
	int (*instance_init)(const struct mx_config *cfg, size_t i, uv_loop_t *loop, int worker,
	    void **wstate, const char **name);
};
/* plugins/plugins.c: one chain entry per `plugins:` entry (the plugin ABI adapter). */
extern const struct hook_instances hook_plugin_entries;

#endif
