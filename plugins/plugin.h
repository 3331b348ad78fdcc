/* plugin.h — the public, versioned ABI for mxgate content plugins.
 *
 * A plugin is a shared object that exports one symbol:
 *
 *     const struct mxgate_plugin mxgate_plugin = {
 *         .abi_version = MXGATE_PLUGIN_ABI_VERSION,
 *         .desc_size = MXGATE_DESC_SIZE,
 *         .name = "mine",
 *         .init = mine_init, .fini = mine_fini,
 *         .on_eom = mine_eom, ...
 *     };
 *
 * The daemon refuses (at `mxgate -t` and at load) a plugin whose abi_version differs from
 * its own. Plugins never link against the daemon: everything they may ask of or tell the
 * host goes through the `struct mxgate_host` function table handed to init().
 *
 * Threading: mxgate runs one libuv loop per worker thread. init() is called once per
 * worker (and once with loop == NULL at config check); every hook of one instance runs on
 * that worker's loop thread, so an instance needs no locking of its own state.
 *
 * Calls: each hook receives a `struct mxgate_call *`, the handle of one invocation. The
 * plugin completes it exactly once with host->done(), synchronously inside the hook or
 * later from the same loop thread (after its own async I/O on host->loop()). The host
 * enforces the configured `timeout`; when it fires (or the client goes away) the host
 * calls cancel() if the plugin has one: the plugin must then stop the work and never touch
 * the call again. A plugin without cancel() may still call done() late; the host ignores
 * that verdict.
 * A handle stays safe to use after its call ended (done(), the timeout, cancel, the
 * session's end): it is a token the host checks, not a pointer, so a second or late done()
 * is ignored and logged once (event=plugin_bad_output what=done_twice|late_done), and
 * every other host call on it returns NULL / 0 and does nothing. Still give a call answered
 * from two places (a reply and the plugin's own timer) one owner that clears its pointer
 * before it answers: the second answer is a bug, logged.
 *
 * Reload (SIGHUP): new instances are made with the new options; sessions already open keep
 * theirs to their end, then fini() runs on the worker's loop. The plugin's code is never
 * unmapped (handles closed in fini() call back into it on a later turn of the loop).
 *
 * The built-in plugins (clamd, milter, spamd, rspamd) implement this same interface, except
 * that their init receives typed options (plugins.h: struct plugin_builtin). */
#ifndef MXGATE_PLUGIN_H
#define MXGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define MXGATE_PLUGIN_ABI_VERSION 1u

/* What a call concludes. */
enum mxgate_action {
	MXGATE_CONTINUE = 0,  /* no objection: the next plugin runs */
	MXGATE_ACCEPT,        /* no objection and no further checks at this stage: the later
	                       * filters and plugins of the stage are skipped (the rules engine
	                       * still runs) */
	MXGATE_TEMPFAIL,      /* 4xx to the client */
	MXGATE_REJECT,        /* 5xx to the client */
	MXGATE_DISCARD,       /* 250 to the client, delivered nowhere (decided before the end of
	                       * the message, it applies there) */
	MXGATE_QUARANTINE,    /* deliver to the quarantine backend (likewise) */
	MXGATE_ERROR,         /* the plugin or its peer failed: apply the entry's on_error */
};

/* Strings a plugin may read about the session (host->get). NULL when not (yet) known. */
enum mxgate_item {
	MXGATE_SESSION_ID = 0,
	MXGATE_HOSTNAME,      /* this mxgate's `hostname:` */
	MXGATE_CLIENT_IP,
	MXGATE_CLIENT_PORT,   /* decimal */
	MXGATE_CLIENT_NAME,   /* forward-confirmed reverse DNS name, "" when none */
	MXGATE_LOCAL_IP,
	MXGATE_LOCAL_PORT,
	MXGATE_HELO,
	MXGATE_MAIL_FROM,     /* "" for the null sender; without angle brackets */
	MXGATE_MAIL_PARAMS,   /* ESMTP parameters after MAIL FROM:<...>, may be "" */
	MXGATE_RCPT,          /* rcpt stage: the recipient being judged */
	MXGATE_RCPT_PARAMS,
	MXGATE_QUEUE_ID,      /* per message, from MAIL on */
	MXGATE_TLS_VERSION,   /* "" without TLS */
	MXGATE_TLS_CIPHER,
	MXGATE_AUTH_USER,     /* "" when not authenticated */
	MXGATE_CLIENT_PTR,    /* the PTR name, not forward-confirmed; "" when none */
	MXGATE_AUTH_TYPE,     /* the SMTP AUTH mechanism ("PLAIN", "LOGIN"), "" when not authenticated */
	MXGATE_MAX_SIZE,      /* limits.max_message_size in bytes, decimal: no message grows past it
	                       * (replace_body refuses it); NULL from a host older than this item */
	MXGATE_RECEIVED,      /* end of data: the Received field mxgate puts on top of the message it
	                       * relays (CRLF-terminated, folded), which host->message() lacks; a
	                       * scanner that reads relays from Received (SpamAssassin) needs it */
	MXGATE_TLS_CIPHER_BITS, /* the TLS cipher's secret bits, decimal; "" without TLS; NULL from an
	                       * older host */
	MXGATE_TLS_CERT_SUBJECT, /* the client certificate's subject CN, when it verified against
	                       * tls.client_ca_file; "" otherwise; NULL from an older host */
	MXGATE_TLS_CERT_ISSUER, /* its issuer's CN, likewise */
	MXGATE_TLS_CERT_FINGERPRINT, /* the SHA-256 fingerprint ("AB:CD:...") of a client certificate
	                       * that was sent, verified or not; "" when none; NULL from an older host */
	MXGATE_MAX_RCPTS,     /* limits.max_recipients, decimal: a transaction's recipients, and the
	                       * most a filter may add; NULL from an older host */
	MXGATE_NITEMS
};

/* What a plugin knows about the transaction (host->set_flags): the modules that learn from
 * outcomes (reputation) read them when the transaction ends. */
enum mxgate_flag {
	MXGATE_FLAG_SPAM = 1u << 0,    /* the message is spam */
	MXGATE_FLAG_VIRUS = 1u << 1,   /* the message carries malware */
};

struct mxgate_call;   /* opaque: one invocation of one hook */

/* Options from the plugin's config entry: every key of `options:` plus the generic keys. */
struct mxgate_option { const char *key; const char *value; };

struct mxgate_plugin_args {
	const char *name;              /* the entry's `name:` */
	const char *address;           /* `address:` or NULL */
	uint64_t timeout_ms;           /* per call */
	const struct mxgate_option *options;
	size_t noptions;
	uv_loop_t *loop;               /* NULL at config check: validate only, start nothing */
	int worker;                    /* worker index */
	/* Fields below were added after the first release of ABI 1: read one only when
	 * MXGATE_ARGS_HAS(host, field) (an older daemon's struct ends before it). */
	/* `connect_timeout:`: how long a connect to one address of the peer may take */
	uint64_t connect_timeout_ms;
};

/* Services the host offers. Function pointers stay valid for the process lifetime. */
struct mxgate_host {
	uint32_t abi_version;
	size_t size;                   /* sizeof(struct mxgate_host) of the host: fields may be added at the end */

	uv_loop_t *(*loop)(struct mxgate_call *c);
	/* A session string; borrowed, valid until the call completes. */
	const char *(*get)(struct mxgate_call *c, enum mxgate_item item);
	/* Accepted recipients of the transaction (addresses without angle brackets). */
	size_t (*rcpt_count)(struct mxgate_call *c);
	const char *(*rcpt_at)(struct mxgate_call *c, size_t i);
	/* At end of message (and header/body hooks): the whole message as received —
	 * dot-unstuffed, CRLF lines, headers first. Borrowed until the call completes.
	 * NULL before the end of data. */
	const char *(*message)(struct mxgate_call *c, size_t *len);
	/* Length of the header block including its terminating blank line. */
	size_t (*header_len)(struct mxgate_call *c);
	/* A per-session, per-plugin pointer the plugin owns (initially NULL); free what it
	 * points to in on_close. */
	void **(*session_slot)(struct mxgate_call *c);

	/* Outputs (the host copies every argument). Scores add up with the rules engine's. */
	void (*add_symbol)(struct mxgate_call *c, const char *name, double score, const char *desc);
	void (*add_header)(struct mxgate_call *c, const char *name, const char *value);
	/* index 0 = before the first header */
	void (*insert_header)(struct mxgate_call *c, int index, const char *name, const char *value);
	/* Replaces the index-th (1-based) header called name; value NULL deletes it. */
	void (*change_header)(struct mxgate_call *c, const char *name, int index, const char *value);
	void (*delete_header)(struct mxgate_call *c, const char *name);
	void (*set_sender)(struct mxgate_call *c, const char *addr);
	void (*add_rcpt)(struct mxgate_call *c, const char *addr, const char *params);
	void (*del_rcpt)(struct mxgate_call *c, const char *addr);
	/* Replaces the message body (everything after the header block). 0, or -1 (no memory,
	 * or the message would be larger than limits.max_message_size: the body is unchanged). */
	int (*replace_body)(struct mxgate_call *c, const void *data, size_t len);
	/* Sets the quarantine reason (the verdict itself is MXGATE_QUARANTINE). */
	void (*set_quarantine_reason)(struct mxgate_call *c, const char *reason);
	/* The peer is alive and working: restart this call's timeout (at end of message, where
	 * limits.filter_deadline bounds every filter together; before it a call has its
	 * timeout from its start, progress() or not). */
	void (*progress)(struct mxgate_call *c);
	/* level: 0 debug, 1 info, 2 warning, 3 error. fmt "event=NAME k=v..." is logged as
	 * "<session> event=NAME plugin=<name> k=v..." (NAME of a-z and _); any other text as
	 * "event=plugin_log plugin=<name> text=\"...\"" (quoted, escaped). Quote values from
	 * outside (log form). */
	void (*log)(struct mxgate_call *c, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/* Completes the call. code 0 = the default for the action; reply is "5.7.1 text"
	 * (enhanced status code and text, no SMTP code; lines separated by "\r\n"; a line
	 * without an enhanced status code gets one of the reply's class; control characters
	 * become spaces; at most 399 octets) or NULL; code 421 with MXGATE_TEMPFAIL closes the
	 * connection after the reply; code and reply are used with TEMPFAIL and REJECT only.
	 * reason is a short log word ("virus", "spam", ...) or NULL. After done() the call
	 * has ended: a further done() on its handle is ignored (and logged once). */
	void (*done)(struct mxgate_call *c, enum mxgate_action action, int code,
	    const char *reply, const char *reason);

	/* Added after the first release of ABI 1: check that host->size covers it
	 * (offsetof(struct mxgate_host, set_flags) + sizeof(void *) <= host->size) before use. */
	/* Marks the transaction (enum mxgate_flag, or'ed in; unknown bits are ignored). */
	void (*set_flags)(struct mxgate_call *c, unsigned flags);
	/* Added after set_flags (check host->size the same way). Inserts a header at index in
	 * the header block as delivered, mxgate's own Received counted (Sendmail's and Postfix's
	 * sense of a milter's smfi_insheader): 0 above that Received, 1 just below it, n after
	 * n - 1 of the headers shown. */
	void (*insert_header_delivered)(struct mxgate_call *c, int index, const char *name, const char *value);
	/* Added after insert_header_delivered: sizeof(struct mxgate_plugin_args) as the host
	 * passes it to init, so a plugin built against a newer plugin.h knows which fields of
	 * args an older host fills (MXGATE_ARGS_HAS). */
	size_t args_size;
	/* Added after args_size (MXGATE_HOST_HAS(host, txn_get)): one pointer per transaction
	 * and plugin instance, as Haraka's transaction.notes. txn_set hands data to the host
	 * with release (may be NULL), called once on the loop thread when the transaction is
	 * over: the host releases it before the plugin's first call of the next transaction
	 * (after RSET or the end of data, at the next MAIL) or at the session's end, whichever
	 * comes first; setting again releases the data set before (unless it is the same
	 * pointer). Outside a transaction (connect, helo, close: no MAIL yet) txn_set returns
	 * -1 and takes nothing (the plugin still owns data); else 0. txn_get returns the
	 * transaction's data, NULL when none was set or outside a transaction. */
	int (*txn_set)(struct mxgate_call *c, void *data, void (*release)(void *data));
	void *(*txn_get)(struct mxgate_call *c);
};

/* Growing ABI 1 (how a plugin and a host built against different plugin.h revisions of the
 * same MXGATE_PLUGIN_ABI_VERSION stay safe):
 * - fields are only ever added at the end of struct mxgate_host, struct
 *   mxgate_plugin_args and struct mxgate_plugin, never moved, removed or changed in
 *   meaning (that is a new MXGATE_PLUGIN_ABI_VERSION, which the loader refuses, naming
 *   both versions);
 * - the descriptor says its own size: desc_size = MXGATE_DESC_SIZE. The host reads a
 *   member added after cancel only when MXGATE_DESC_HAS(size, member) for the size it
 *   found: desc_size when the exported object (its ELF symbol's size) holds that field,
 *   else the first release's (MXGATE_DESC_FIRST_SIZE). So a plugin built against an
 *   older plugin.h, whose descriptor ends at cancel, is never read past its end, and a
 *   newer plugin's added hooks are simply not called by an older host. A desc_size below
 *   MXGATE_DESC_FIRST_SIZE or past the exported object is refused at load;
 * - host->size and host->args_size say how much of each the running host has: before
 *   reading a member added after the first release, a plugin checks MXGATE_HOST_HAS(host,
 *   member) or MXGATE_ARGS_HAS(host, field) and falls back to its own default when false
 *   (a host without args_size fills the first release's args only: name .. worker);
 * - a plugin built against an older plugin.h never reads what it does not know, so it
 *   loads into a newer host unchanged.
 * Both macros evaluate host more than once. */
#define MXGATE_HOST_HAS(host, member) \
	(offsetof(struct mxgate_host, member) + sizeof(((struct mxgate_host *)0)->member) <= (host)->size)
#define MXGATE_ARGS_HAS(host, field) \
	(MXGATE_HOST_HAS(host, args_size) && offsetof(struct mxgate_plugin_args, field) + \
	    sizeof(((struct mxgate_plugin_args *)0)->field) <= (host)->args_size)
/* The host's side of the descriptor's growth (size: what the loader found, see above). */
#define MXGATE_DESC_HAS(size, member) \
	(offsetof(struct mxgate_plugin, member) + sizeof(((struct mxgate_plugin *)0)->member) <= (size))
#define MXGATE_DESC_FIRST_SIZE \
	(offsetof(struct mxgate_plugin, cancel) + sizeof(((struct mxgate_plugin *)0)->cancel))
#define MXGATE_DESC_SIZE sizeof(struct mxgate_plugin)

/* The descriptor a plugin exports as `mxgate_plugin`. Any hook may be NULL (= the plugin
 * does not take part in that stage). */
struct mxgate_plugin {
	uint32_t abi_version;          /* MXGATE_PLUGIN_ABI_VERSION */
	const char *name;

	/* Creates an instance from the config entry. On error return -1 with a reason in err
	 * (shown as the config error). host stays valid for the process lifetime. */
	int (*init)(const struct mxgate_host *host, const struct mxgate_plugin_args *args,
	    void **instance, char *err, size_t errlen);
	void (*fini)(void *instance);

	void (*on_connect)(void *instance, struct mxgate_call *c);
	void (*on_helo)(void *instance, struct mxgate_call *c);
	void (*on_mail)(void *instance, struct mxgate_call *c);
	void (*on_rcpt)(void *instance, struct mxgate_call *c);
	void (*on_data)(void *instance, struct mxgate_call *c);
	/* End of data, before on_eom: once per header (the value as received, folds kept,
	 * without the leading space and the final CRLF), then the body (everything after the
	 * blank line) in chunks of at most 64 KiB. */
	void (*on_header)(void *instance, struct mxgate_call *c, const char *name, const char *value);
	void (*on_body)(void *instance, struct mxgate_call *c, const char *chunk, size_t len);
	void (*on_eom)(void *instance, struct mxgate_call *c);
	/* The session ends: release the session slot. No done() is expected (it is ignored);
	 * must not block. Called once for every session (the slot may still be NULL). */
	void (*on_close)(void *instance, struct mxgate_call *c);
	/* Stop the outstanding call c (timeout, client gone); never touch c afterwards. */
	void (*cancel)(void *instance, struct mxgate_call *c);
#ifndef MXGATE_PLUGIN_DESC_FIRST_RELEASE   /* test-only: the descriptor as ABI 1 first shipped */
	/* Added after the first release of ABI 1: set it to MXGATE_DESC_SIZE (0 reads as the
	 * first release's descriptor). Members added after it are read only when it covers
	 * them (see "Growing ABI 1"). */
	size_t desc_size;
	/* Added after desc_size (read only when MXGATE_DESC_HAS(desc_size, on_abort)): the
	 * transaction goes on without this plugin. `bypass:` covers every accepted recipient for
	 * it (the operator's "no such check for them"), decided at DATA or at the end of data
	 * (maybe at both: a second call is harmless), after its on_mail / on_rcpt of the
	 * transaction may have run: drop what those started (a peer's transaction, a scan
	 * under way), as a milter is sent SMFIC_ABORT. No on_data, on_header, on_body nor
	 * on_eom follows for this transaction, and no verdict of the plugin is applied to it.
	 * Synchronous; no done() is expected (one is ignored); host->get, rcpt_count and
	 * rcpt_at still answer, txn_get still has the transaction's data. NULL: nothing to
	 * drop. */
	void (*on_abort)(void *instance, struct mxgate_call *c);
#endif
};

#endif
