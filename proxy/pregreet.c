/* pregreet.c — the `pregreet:` config table and the pass cache, see pregreet.h. */
#include "config.h"
#include "pregreet.h"

#include <pthread.h>
#include <stdatomic.h>

#include "store/local_table.h"

static const char *const pregreet_actions[] = { "score", "reject", "tempfail", "drop", NULL };
static const char *const protocol_actions[] = { "score", "enforce", "drop", "ignore", NULL };

static const struct cfg_field pregreet_fields[] = {
	{ "delay", CFG_DURATION, offsetof(struct pregreet_config, delay), "0s", 0, 60000,
	  .doc = "how long the greeting's last line waits at least (0 = test off); a client talking before that line (also while the connect checks still hold it) fails the test; not on submission listeners" },
	{ "action", CFG_ENUM, offsetof(struct pregreet_config, action), "reject", .choices = pregreet_actions,
	  .doc = "score | reject (550 at MAIL) | tempfail (450 at MAIL) | drop (521 and disconnect)" },
	{ "score", CFG_DOUBLE, offsetof(struct pregreet_config, score), "5", -100, 100,
	  .doc = "score of the PREGREET symbol handed to the rules engine" },
	{ "pass_ttl", CFG_DURATION, offsetof(struct pregreet_config, pass_ttl), "1d", 0, 30.0 * 86400000,
	  .doc = "a client that waited for the greeting without talking is greeted at once (no teaser, no wait) for this long (postscreen_greet_ttl; this process, at most 100000 addresses); 0 = test every connection" },
	{ "pipelining_action", CFG_ENUM, offsetof(struct pregreet_config, pipelining_action), "score", .choices = protocol_actions,
	  .doc = "commands pipelined without EHLO (postscreen_pipelining_action): score (PIPELINING_UNANNOUNCED) | enforce (and 550 5.5.1 at every MAIL) | drop (521 and disconnect) | ignore (logged only); every listener" },
	{ "bare_newline_action", CFG_ENUM, offsetof(struct pregreet_config, bare_newline_action), "score", .choices = protocol_actions,
	  .doc = "a command line ended by a bare LF (postscreen_bare_newline_action): score (BARE_LF_COMMAND) | enforce | drop | ignore" },
	{ "non_smtp_command_action", CFG_ENUM, offsetof(struct pregreet_config, non_smtp_command_action), "drop", .choices = protocol_actions,
	  .doc = "an HTTP or proxy command (postscreen_non_smtp_command_action): drop (421 and disconnect, NON_SMTP_COMMAND) | enforce (and 550 5.5.1 at every MAIL; the session goes on) | score | ignore (the command is answered 500 and the session goes on)" },
	{ .key = NULL }
};

const struct cfg_table pregreet_config_table = {
	.name = "pregreet", .size = sizeof(struct pregreet_config), .fields = pregreet_fields,
};

/* ---- the pass cache ---------------------------------------------------------------------- */

/* Records: expiry, val = when the pass was noted; passes noted before pg_flushed_ns are
 * forgotten (a flush without walking the shards). */
static struct local_table *pg_table;
static pthread_once_t pg_once = PTHREAD_ONCE_INIT;
static atomic_ullong pg_flushed_ns;

static void pg_table_make(void)
{
	pg_table = local_table_new(PREGREET_PASS_MAX);
	if (pg_table)
		local_table_set_name(pg_table, "pregreet");
}

static struct local_table *pg_pass_table(void)
{
	pthread_once(&pg_once, pg_table_make);
	return pg_table;        /* NULL when out of memory: no cache */
}

static int pg_known_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	(void)now_ns;
	(void)arg;
	return exists && rec->val >= atomic_load(&pg_flushed_ns);
}

static int pg_note_cb(struct local_rec *rec, bool exists, uint64_t now_ns, void *arg)
{
	(void)exists;
	rec->expires_ns = now_ns + *(const uint64_t *)arg * 1000000;
	rec->val = now_ns;
	return 1;
}

struct pg_count { uint64_t before; size_t n; };

static bool pg_count_fn(const char *key, const struct local_rec *rec, void *arg)
{
	struct pg_count *c = arg;

	(void)key;
	c->n += rec->val >= atomic_load(&pg_flushed_ns) && rec->val < c->before;
	return true;
}

size_t pregreet_pass_flush(uint64_t now_ns)
{
	struct pg_count c = { now_ns, 0 };
	struct local_table *t = pg_pass_table();

	if (t == NULL)
		return 0;
	local_table_foreach(t, now_ns, pg_count_fn, &c);
	atomic_store(&pg_flushed_ns, now_ns);
	return c.n;
}

bool pregreet_pass_known(const char *ip, uint64_t now_ns)
{
	struct local_table *t = pg_pass_table();

	return t != NULL && local_table_update(t, ip, now_ns, false, pg_known_cb, NULL) == 1;
}

void pregreet_pass_note(const char *ip, uint64_t ttl_ms, uint64_t now_ns)
{
	struct local_table *t = ttl_ms ? pg_pass_table() : NULL;

	if (t != NULL)
		local_table_update(t, ip, now_ns, true, pg_note_cb, &ttl_ms);
}
