/* session_int.h — what the session's own files share: struct session, its states and the
 * calls between the state machine (session.c: states, command table, checks and applies)
 * and the client I/O (session_io.c: socket, TLS, held input, write queue, timers, close).
 * The backend side of a transaction is smtp_tx.c. Nothing outside these files includes
 * this header, except the unit tests of the command checks. */
#ifndef MX_SESSION_INT_H
#define MX_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bdat.h"
#include "chain.h"
#include "dataparse.h"
#include "headers.h"
#include "hook.h"
#include "linebuf.h"
#include "opstats.h"
#include "session.h"
#include "smtp_cmd.h"
#include "smtp_tx.h"

struct worker;
struct worker_gen;
struct mx_config;
struct listen_config;
struct tlsconn;

/* One state, changed only by session_enter_state(). In order of a session's life:
 *   new -> [proxy] -> [tls] -> connect -> [pregreet] -> command | rejected
 *   command | rejected <-> busy (a command in flight) ; busy -> data -> busy
 *   command | rejected -> starttls -> command | rejected ; any -> closing
 *   busy (AUTH) <-> auth (a challenge answered by one line) ; busy -> command | rejected */
enum session_state {
	SESSION_NEW = 0,       /* accepted, nothing read yet */
	SESSION_PROXY,         /* waiting for the PROXY header (proxy_protocol listeners) */
	SESSION_TLS,           /* implicit TLS: the handshake before the session starts */
	SESSION_CONNECT,       /* the connect stage's chain runs; no greeting yet (a pregreet
	                        * delay may run alongside: the timer is active then) */
	SESSION_PREGREET,      /* the connect stage is done; the greeting waits for pregreet.delay */
	SESSION_COMMAND,       /* greeted: reading commands */
	SESSION_REJECTED,      /* greeted, refused at connect (or for talking early): reading
	                        * commands, MAIL is answered with the refusal (postscreen-style) */
	SESSION_BUSY,          /* a command (or the end of data) is in flight: input is held */
	SESSION_DATA,          /* reading the message: a DATA body, or a BDAT chunk (bdat_chunk) */
	SESSION_STARTTLS,      /* the TLS handshake after STARTTLS */
	SESSION_AUTH,          /* AUTH: a 334 challenge waits for the client's answer line (auth.c) */
	SESSION_CLOSING,
	SESSION_NSTATES
};

#define SESSION_MAX_QUEUED_OUTPUT (64 * 1024)   /* replies the client has not read */

struct session_cmd;
struct auth_session;

struct session {
	struct session *next, *prev;      /* worker's list */
	struct worker *w;
	struct worker_gen *wg;
	const struct mx_config *cfg;
	const struct listen_config *lc;
	uv_tcp_t tcp;
	uv_timer_t timer;                 /* protocol timeouts, pregreet delay, tarpit */
	bool timer_tarpit;                /* ... armed by session_arm_tarpit */
	uint64_t timer_due;               /* loop time the protocol timeout is due (0: none) */
	uint64_t timer_fire;              /* loop time the uv timer was started for */
	const char *timer_limit;          /* the config key of the bound timer_due is (event=timeout) */
	int open_handles;
	char id[20];
	enum session_state state;
	/* genuine flags, not states */
	bool reading;                     /* uv_read_start is in force */
	bool counted_ip;                  /* holds a slot of max_connections_per_ip */
	bool pregreet_hit;                /* the client talked before the greeting */
	bool pregreet_waited;             /* the pregreet delay ran out (a pass, if it kept quiet) */
	unsigned protocol_failed;         /* after-220 tests failed, 1 << enum session_protocol_test */
	bool teaser_sent;                 /* the greeting's "220-" first line is out */
	bool teaser_held;                 /* the pregreet test runs, its "220-" line waits for the
	                                     connect stage's synchronous checks (session_start_connect) */
	bool lb_check;                    /* the balancer's own connection (a health check): a PROXY
	                                     header with no client (v2 LOCAL, v1 UNKNOWN), or one
	                                     naming the connection itself */
	bool xclient_allowed;             /* the peer is in xclient_hosts (session_xclient.c) */
	bool xclient_seen;                /* an XCLIENT named the client: the identity is its */
	bool xclient_helo_pending;        /* XCLIENT HELO=: the HELO stage judges it before the 220 */
	bool connect_deferred;            /* a front end in xclient_hosts greeted without its connect
	                                     stage: run for the client XCLIENT names, or for the
	                                     front end itself at its own first MAIL */
	bool quit_after_flush;            /* close once the replies queued now are written */
	const char *quit_reason;          /* static: the disconnect line's reason= for that close */
	bool eof;                         /* the client closed (or half-closed) its side */
	bool drain;                       /* the worker is draining: no new transaction */
	bool write_failed, out_blocked;   /* the client's socket: dead / not reading replies */
	/* what a delivered message writes (session_message_accepted): mails and nmessages in
	 * 16 octets on a 16-octet boundary, so in one cache line whatever calloc's alignment;
	 * junk, deferrals and errors are written only when not 0 already */
	long mails;                       /* MAILs begun since the last delivered message */
	unsigned long nmessages;
	long junk;                        /* NOOP/RSET/VRFY/HELP since the last delivered message */
	long deferrals;                   /* greylisting's 451s since the last delivered message */
	int errors;                       /* cleared with each delivered message: by nmessages */
	bool helo_given;                  /* an EHLO/HELO was answered 250 since the connect,
	                                     STARTTLS or XCLIENT: one more is junk */
	long rcpt_overshoot;              /* RCPTs past max_recipients in this transaction */
	long bad_sequence;                /* commands out of order (503), the first one logged */
	unsigned long ncommands;
	struct linebuf lb;
	struct session_memo *memo;        /* commands parsed ahead (session_next_group), or NULL */
	char *in;                         /* held input */
	size_t inlen, incap;
	struct strbuf out;                /* replies not yet written */
	int writes_inflight;
	struct tlsconn *tls;
	uint32_t tarpit_ms;               /* hold the next replies this long (a filter's delay) */
	const struct session_cmd *cmd;    /* the command (or stage) in flight */
	uv_timer_t chain_timer;           /* module timeouts (the chain's) */
	struct hook_env env;
	struct chain chain;
	struct smtp_tx tx;                /* the backend side of the transaction */
	struct dataparse dp;
	struct bdat bdat;                 /* CHUNKING: the transaction's chunks (RFC 3030) */
	bool bdat_chunk;                  /* in the data state: reading a BDAT chunk */
	enum bdat_verdict bdat_verdict;   /* the chunk in flight: read into the message or not */
	uint64_t bdat_chunk_size;
	struct auth_session *auth;        /* SMTP AUTH exchange (auth.c); NULL until AUTH */
	uint64_t started_ms;
	uint64_t data_deadline_at;        /* loop ms by which the DATA phase must end */
	/* Cold: set at the connect stage or by XCLIENT, read at MAIL or at the close. Kept
	 * behind the rest so that the fields a pipelined command writes (the timer's due time,
	 * the state and flags, the counters, the input and reply buffers) share a few lines. */
	struct verdict conn_verdict;      /* the connect stage's refusal, answered at MAIL */
	int refused_code;                 /* the refusal the client got at connect (0 none), */
	char refused_reason[48];          /* for the session outcome */
	char xclient_login[256];          /* XCLIENT LOGIN=: env.auth_user points here */
};

/* ---- the command table (session.c) ----------------------------------------------------- */

/* What a command's check decided. */
enum session_check {
	SESSION_CHECK_OK = 0,   /* go on: the command's stage, then its apply */
	SESSION_CHECK_REPLY,    /* answered with the reply; not a client error */
	SESSION_CHECK_ERROR,    /* answered with the reply; a client error (limits.max_errors) */
	SESSION_CHECK_CLOSE,    /* answered with the reply, then the session closes */
	SESSION_CHECK_REFUSED,  /* answered with the connect stage's refusal (conn_verdict) */
};

/* Flags of a command row. */
enum session_cmd_flag {
	CMD_NEEDS_HELO = 1u << 0,   /* 503 before HELO/EHLO */
	CMD_NEEDS_MAIL = 1u << 1,   /* 503 outside a transaction */
	CMD_NO_MAIL = 1u << 2,      /* 503 inside a transaction */
	CMD_NEEDS_RCPT = 1u << 3,   /* 554 before an accepted recipient */
	CMD_RESETS_TXN = 1u << 4,   /* the open transaction ends (abandoned) before it runs */
	CMD_BUSY = 1u << 5,         /* runs in the busy state even when no module wants its stage:
	                             * the apply waits for the backend */
	CMD_QUIT = 1u << 6,         /* the session closes after the reply */
	CMD_HELP = 1u << 7,         /* named in the HELP reply */
	CMD_TLS_OFFER = 1u << 8,    /* ... only when STARTTLS is offered */
	CMD_JUNK = 1u << 9,         /* counted toward limits.max_junk_commands */
	CMD_AUTH_OFFER = 1u << 10,  /* named in the HELP reply only when EHLO offers AUTH */
};

#define SESSION_NO_STAGE HOOK_NSTAGES

/* One verb: check (syntax and state, synchronous) -> stage (the chain, async) -> apply
 * (the verdict: relay, reply). A verb that is only refused has just `refuse`; one answered
 * with a fixed text after its flags' effects has just `reply`. */
struct session_cmd {
	enum smtp_verb verb;
	unsigned flags;             /* enum session_cmd_flag */
	/* NULL: nothing to check beyond the flags. May log and count a refusal; changes nothing
	 * of the session; reply (cap bytes) is the full reply line for anything but OK. */
	enum session_check (*check)(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap);
	/* Records the arguments the stage's modules judge (env); NULL: none. */
	void (*start)(struct session *s, const struct smtp_cmd *cmd);
	enum hook_stage stage;      /* SESSION_NO_STAGE: none */
	/* The chain's verdict (CONTINUE when no stage ran): answers the command, at once or
	 * after the backend, and then calls session_cmd_done() (which carries on with held
	 * input when the command ran busy), unless it moves the session on itself (DATA's 354,
	 * STARTTLS). NULL: `reply` is the answer. */
	void (*apply)(struct session *s, const struct verdict *v);
	const char *reply;          /* apply == NULL: the answer */
	const char *refuse;         /* not taken here: the check's answer, a client error */
};

/* The row of verb (a fallback row for verbs not in the table). */
const struct session_cmd *session_cmd_find(enum smtp_verb verb);
/* The checks of cmd's verb for s as it is now: the flags', then the row's. reply gets the
 * reply line for anything but SESSION_CHECK_OK. Changes nothing. */
enum session_check session_cmd_check(const struct session *s, const struct smtp_cmd *cmd, char *reply, size_t cap);

/* ---- the state machine (session.c) ------------------------------------------------------- */

void session_enter_state(struct session *s, enum session_state st);
const char *session_state_name(enum session_state st);
/* Reading lines: greeted and idle (command or rejected), or an AUTH answer (auth). */
bool session_takes_commands(const struct session *s);
/* Greeted and idle: command, or rejected when the connect stage refused. */
void session_enter_idle(struct session *s);
/* Appends one reply line (CRLF added). */
void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Works through held input until it runs out or a command goes async; then flushes and
 * arms the timers for what comes next. */
void session_process(struct session *s);
/* SESSION_DATA: feeds in[0..n) to the data parser (or BDAT's chunk framing), the message
 * into the transaction; starts the modules' header lookups once the header block is
 * complete. Returns the octets taken; *done = 1 when the message (or chunk) ended there,
 * then the caller holds what follows in s->in and calls session_data_input_end. */
size_t session_data_input(struct session *s, const char *in, size_t n, int *done);
void session_data_input_end(struct session *s);
/* Message content read straight into the message buffer's free space (session_io.c):
 * takes the prefix of in[0..n) that is content as it stands (dataparse_take_clean) into
 * the message, copying nothing when in is that free space; returns its length. The rest
 * goes to session_data_input from elsewhere (it may write more than it reads). */
size_t session_data_take_clean(struct session *s, const char *in, size_t n);
/* A client error: counted; past limits.max_errors 421 and the session ends. */
void session_error(struct session *s);
/* Remembers the refusal the client got at connect (the first one), for the session outcome. */
void session_note_refusal(struct session *s, int code, const char *reason);
/* The connect stage's verdict v, if a refusal: TEMPFAIL is answered (421) and the session
 * ends after the flush (true); REJECT is kept in conn_verdict, answered at MAIL. Logged. */
bool session_connect_refusal(struct session *s, const struct verdict *v);
/* A refusal's line and its counts (opstats_refusal, the one place refusals are logged):
 * r's worker, id and client are set from s; fmt gives the fields after reason=. */
void session_refusal_log(const struct session *s, struct opstats_refusal *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Before the session starts (limits): the 421 queued by the caller goes out, then the
 * session closes. reason: the log word for the outcome (the caller logged and counted the
 * refusal: session_refusal_log). */
void session_refuse_early(struct session *s, const char *reason);
/* The command in flight is answered: carry on with held input (after a tarpit delay). */
void session_resume(struct session *s);
/* An apply has answered its command (see struct session_cmd). */
void session_cmd_done(struct session *s);
/* Starts the connect stage (after accept, the PROXY header or the implicit TLS handshake). */
void session_start_connect(struct session *s);
/* The pregreet delay is over (the timer fired). */
void session_pregreet_over(struct session *s);
/* The client talked before the greeting (len octets): the pregreet test failed. */
void session_note_pregreet(struct session *s, const char *data, size_t len);

/* ---- XCLIENT from a trusted front end (session_xclient.c) ------------------------------- */

/* Before the first connect stage: whether the peer (the PROXY header's client, if any) is
 * in xclient_hosts; kept for the session, whatever XCLIENT names later. */
void session_xclient_note_peer(struct session *s);
/* EHLO offers XCLIENT (to xclient_hosts only). */
bool session_xclient_offered(const struct session *s);
/* The XCLIENT row: 503 in a transaction, 550 5.7.0 to others, 501 for bad syntax; start
 * takes the new identity, apply runs the connect stage again (its end greets: 220). */
enum session_check session_xclient_check(const struct session *s, const struct smtp_cmd *cmd, char *reply,
    size_t cap);
void session_xclient_start(struct session *s, const struct smtp_cmd *cmd);
void session_xclient_apply(struct session *s, const struct verdict *v);

/* ---- client I/O (session_io.c) ----------------------------------------------------------- */

/* Writes the queued replies (through TLS when on); closes after them when quit_after_flush. */
void session_flush(struct session *s);
/* Starts TLS on the connection (implicit, or after STARTTLS); -1 when it cannot be set up. */
int session_start_tls(struct session *s);
/* The event=tls line (version, cipher) of an established handshake. */
void session_log_tls(struct session *s);
void session_pause(struct session *s);
void session_unpause(struct session *s);
/* The protocol timer: ms (0: 300 s) from now. A later due time than the running timer's
 * is only noted (no timer stop and start per command or message): the timer fires at its
 * first due time and starts again for the rest. limit: the config key whose bound ms is
 * (event=timeout's limit=), or NULL for a delay whose end greets (pregreet, tarpit). */
void session_arm(struct session *s, uint64_t ms, const char *limit);
/* No protocol timeout until the next session_arm (a stage runs): the uv timer may still
 * run, its callback then does nothing. */
void session_disarm(struct session *s);
/* True when a protocol timeout (or the tarpit) runs. */
bool session_timer_running(const struct session *s);
/* The DATA phase's timer: data_timeout since the last read or the DATA deadline. */
void session_arm_data(struct session *s);
/* command_timeout, cut to the BDAT message's deadline while one is open */
void session_arm_command(struct session *s);
/* The tarpit: session_resume() after ms. */
void session_arm_tarpit(struct session *s, uint32_t ms);
/* Ends the session (reason: a log word, NULL when the client quit or replies close it):
 * modules hear the outcome, handles close, memory goes in the last close callback. */
void session_close(struct session *s, const char *reason);

#endif
