/* main.c — the mxgate daemon: options, config, listening sockets, privileges, workers,
 * signals (SIGHUP reload, SIGTERM/SIGINT drain), health checks and metrics. */
#include "backend.h"
#include "cfg_man.h"
#include "config.h"
#include "control.h"
#include "conncount.h"
#include "counters.h"
#include "domain.h"
#include "backendres.h"
#include "health.h"
#include "hostres.h"
#include "log.h"
#include "msgbuf.h"
#include "metrics.h"
#include "modules.h"
#include "rules/bayes_db.h"
#include "ops.h"
#include "sdnotify.h"
#include "store/lmdb_store.h"
#include "statuspage.h"
#include "tls.h"
#include "worker.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#define MAX_WORKERS 64

static struct worker *workers;
static int nworkers;
static struct shared_gen *current;
static struct health *health;
static struct backendres *resolver;   /* backend names resolved again (backendres.h) */
static struct metrics *metrics;
static uv_loop_t *main_loop;
static const char *config_path;
static struct listen_config listen_copies[WORKER_MAX_LISTENERS];
static int nlisten;
static uv_signal_t sig_hup, sig_term, sig_int, sig_usr1, sig_usr2;
static int stopping;
static struct control *control;
static uv_timer_t watchdog_timer;
/* The drain after SIGTERM: the metrics listener (probes, /metrics) and the control socket
 * stay until every worker has ended; workers already joined are marked here. */
static uv_timer_t drain_watch;
static bool *worker_joined;
static uint64_t drain_started_ms;
static bool drain_watched;       /* the watch ran: its limit has passed for any worker left */
/* What was made once at start from these keys (listen: listen_copies; workers: nworkers;
 * metrics: the address the running metrics listener was started on); a reload that changes
 * them says they wait for the next start. */
static struct { char *user, *metrics, *csocket, *cmode, *cowner, *cgroup, *logfile; } boot;

static void usage(void)
{
	fprintf(stderr, "usage: mxgate -c FILE      run in the foreground\n"
	    "       mxgate -t -c FILE   check FILE and exit (0 valid, 1 errors as FILE:LINE:COL: key: reason)\n"
	    "       mxgate -c FILE learn spam|ham PATH...   teach the classifier (files, maildirs, mbox)\n"
	    "       mxgate -V           print the version\n"
	    "       mxgate --dump-config-docs   print the config reference (Markdown)\n"
	    "       mxgate --dump-config-man    print mxgate.yaml(5) (roff)\n");
}

static void main_apply_logging(const struct mx_config *cfg)
{
	int lvl = cfg->log.level;

	if (cfg->log_level > lvl)
		lvl = cfg->log_level;
	log_set_level((enum log_level)lvl);
	log_set_format((enum log_format)cfg->log.format);
	log_enable_syslog_facility(cfg->log.syslog, cfg->log.facility);
}

/* The process-wide settings of a config, at start and on each reload: logging, the bound
 * on message bytes held in memory by all sessions together (msgbuf.c), and where the
 * metrics listener holds POST bodies (as messages). */
static void main_apply_process(const struct mx_config *cfg)
{
	main_apply_logging(cfg);
	msgbuf_set_budget((size_t)cfg->limits.memory_budget);
	metrics_set_spool((size_t)cfg->limits.memory_threshold, cfg->limits.spool_dir);
}

/* Whether cfg's classifier keeps its tokens in an lmdb:/dir store (rules.bayes). */
static bool main_bayes_lmdb(const struct mx_config *cfg)
{
	const struct bayes_config *bc = &cfg->rules.bayes;

	return bc->enabled && bc->store && strncmp(bc->store, "lmdb:", 5) == 0;
}

/* Opens g's required LMDB stores (config_lmdb_stores) into g->stores: 0, or -1 after logging and
 * (errfp) writing `FILE: KEY: cannot open the LMDB store in DIR: REASON` for the first one
 * that cannot open (a file where the directory should be, a read-only directory, a full
 * disk). Greylisting without its store would pass every message, reputation would forget:
 * the operator must fix it, so the start refuses and a reload keeps the running config. An
 * open of a directory this process has open already only takes a reference. */
static int main_gen_open_stores(struct shared_gen *g, FILE *errfp)
{
	struct config_lmdb_store sv[CONFIG_LMDB_STORES_MAX];
	size_t n = config_lmdb_stores(g->cfg, sv);
	char why[192], at[PATH_MAX + 32];

	for (size_t i = 0; i < n; i++) {
		if (!sv[i].required)	/* a pass cache: its module logs and goes on */
			continue;
		g->stores[g->nstores] = lmdb_store_open_why(sv[i].dir, sv[i].map_size, why, sizeof(why));
		if (g->stores[g->nstores] == NULL) {
			log_event(LOG_LVL_ERROR, NULL, "event=config_error key=%s store=lmdb:%s reason=\"cannot "
			    "open the LMDB store: %s\"", sv[i].key, sv[i].dir, why);
			if (errfp)
				fprintf(errfp, "%s: %s: cannot open the LMDB store in %s: %s (mxgate keeps %s "
				    "there)\n", config_key_where(g->cfg, sv[i].key, at, sizeof(at)), sv[i].key, sv[i].dir, why, sv[i].what);
			return -1;
		}
		g->nstores++;
	}
	/* the classifier's: it would classify nothing and learn nothing (the workers logged
	 * bayes_error and went on without it, /readyz ready) */
	const struct bayes_config *bc = &g->cfg->rules.bayes;
	if (main_bayes_lmdb(g->cfg)) {
		struct bayes_db_options o = { .map_size = bc->map_size, .timeout_ms = bc->timeout,
			.ttl_s = (uint32_t)(bc->expire_after / 1000) };

		g->bayes_db = bayes_db_open(bc->store, &o, why, sizeof(why));
		if (g->bayes_db == NULL) {
			/* bayes_db's reason reads "lmdb DIR: REASON": the directory is said below */
			size_t dl = strlen(bc->store + 5);
			const char *r = strncmp(why, "lmdb ", 5) == 0 && strncmp(why + 5, bc->store + 5, dl) == 0 &&
			    strncmp(why + 5 + dl, ": ", 2) == 0 ? why + 5 + dl + 2 : why;
			log_event(LOG_LVL_ERROR, NULL, "event=config_error key=rules.bayes.store store=%s "
			    "reason=\"cannot open the LMDB store: %s\"", bc->store, r);
			if (errfp)
				fprintf(errfp, "%s: rules.bayes.store: cannot open the LMDB store in %s: %s "
				    "(mxgate keeps the classifier's tokens there)\n",
				    config_key_where(g->cfg, "rules.bayes.store", at, sizeof(at)), bc->store + 5, r);
			return -1;
		}
	}
	return 0;
}

/* Builds a generation (pool, TLS contexts) from a loaded config; takes ownership of cfg.
 * On failure returns NULL and, when errfp is not NULL, writes the reason there too. */
static struct shared_gen *main_gen_new(struct mx_config *cfg, FILE *errfp)
{
	static unsigned next_id;
	struct shared_gen *g = calloc(1, sizeof(*g));
	const char *err = NULL;
	char tlserr[256], at[PATH_MAX + 32];

	if (g == NULL)
		return NULL;
	atomic_store(&g->refs, 1);
	g->cfg = cfg;
	g->id = ++next_id;
	g->pool = pool_new(cfg, &err);
	if (g->pool != NULL)
		g->pool->gen = g;	/* relay.c: a connection holds its backend's generation */
	if (g->pool == NULL) {
		log_event(LOG_LVL_ERROR, NULL, "event=config_error reason=\"backends: %s\"", err ? err : "?");
		if (errfp)
			fprintf(errfp, "%s: backends: %s\n", config_key_where(cfg, "backends", at, sizeof(at)),
			    err ? err : "?");
		goto fail;
	}
	if (cfg->tls.certificate && cfg->tls.key) {
		g->tls_server = tls_ctx_new_server(cfg->tls.certificate, cfg->tls.key, cfg->tls.second_certificate,
		    cfg->tls.second_key, cfg->tls.min_version, cfg->tls.ciphers, tlserr, sizeof(tlserr));
		for (size_t i = 0; g->tls_server && i < cfg->tls.sni.n; i++) {
			const struct tls_sni_config *e = &((const struct tls_sni_config *)cfg->tls.sni.v)[i];

			if (tls_ctx_add_sni(g->tls_server, e->certificate, e->key, e->second_certificate,
			    e->second_key, cfg->tls.min_version, cfg->tls.ciphers, tlserr, sizeof(tlserr)) != 0) {
				tls_ctx_unref(g->tls_server);
				g->tls_server = NULL;
			}
		}
		if (g->tls_server && tls_ctx_set_client_verify(g->tls_server, cfg->tls.client_certificate,
		    cfg->tls.client_ca_file, tlserr, sizeof(tlserr)) != 0) {
			tls_ctx_unref(g->tls_server);
			g->tls_server = NULL;
		}
		if (g->tls_server && tls_ctx_set_ciphersuites(g->tls_server, cfg->tls.ciphersuites, tlserr,
		    sizeof(tlserr)) != 0) {
			tls_ctx_unref(g->tls_server);
			g->tls_server = NULL;
		}
		if (g->tls_server == NULL) {
			log_event(LOG_LVL_ERROR, NULL, "event=config_error reason=\"tls: %s\"", tlserr);
			if (errfp)
				fprintf(errfp, "%s: tls: %s\n", config_key_where(cfg, "tls", at, sizeof(at)), tlserr);
			goto fail;
		}
	}
	g->tls_client = cfg->backends.tls_verify ?
	    tls_ctx_new_client_verify(cfg->backends.tls_ca_file, tlserr, sizeof(tlserr)) :
	    tls_ctx_new_client(tlserr, sizeof(tlserr));
	if (g->tls_client == NULL && cfg->backends.tls_verify) {
		/* never clear text instead of the verified TLS asked for */
		log_event(LOG_LVL_ERROR, NULL, "event=config_error reason=\"backends.tls_verify: %s\"", tlserr);
		if (errfp)
			fprintf(errfp, "%s: backends.tls_verify: %s\n",
			    config_key_where(cfg, "backends.tls_verify", at, sizeof(at)), tlserr);
		goto fail;
	}
	if (main_gen_open_stores(g, errfp) != 0)
		goto fail;
	return g;
fail:
	g->cfg = NULL;
	shared_gen_unref(g);
	return NULL;
}

static struct shared_gen *main_current(void)
{
	return current;
}

static struct pool *main_get_pool(void)
{
	return current ? current->pool : NULL;
}

/* The domain counts an operator checks after editing the lists' files (event=ready and
 * event=reloaded): accept_domains' patterns, and those of every backends.routes entry. */
static void main_domain_counts(const struct mx_config *cfg, size_t *accept_n, size_t *routes_n)
{
	const struct backend_route_config *routes = cfg->backends.routes.v;

	*accept_n = domain_set_count(cfg->accept_set);
	*routes_n = 0;
	for (size_t i = 0; i < cfg->backends.routes.n; i++)
		*routes_n += domain_set_count(routes[i].match);
}

/* The first round of health checks is in: with the listeners bound, the daemon is ready. */
static void main_first_round_cb(void *arg)
{
	size_t accept_n, routes_n;

	(void)arg;
	ops_set_checked();
	sdnotify_printf("READY=1\nSTATUS=ready: config generation %u, %s", current->id,
	    ops_is_ready() ? "backends up" : "no backend up yet");
	main_domain_counts(current->cfg, &accept_n, &routes_n);
	log_event(LOG_LVL_INFO, NULL, "event=ready generation=%u backends_up=%s accept_domains=%zu "
	    "routes_domains=%zu", current->id, ops_is_ready() ? "yes" : "no", accept_n, routes_n);
}

/* A re-resolution changed a backend's addresses (backendres.h): each worker closes its idle
 * connections to an address that left now, not when it next opens one to the backend. */
static void main_backend_addrs_changed(void *arg)
{
	(void)arg;
	for (int i = 0; i < nworkers; i++)
		worker_post_sweep(&workers[i]);
}

static void main_start_side_services(void)
{
	const struct mx_config *cfg = current->cfg;

	health = health_start(main_loop, current->pool, cfg->backends.health_check.interval,
	    cfg->backends.health_check.timeout, cfg->hostname, current->tls_client);
	resolver = backendres_start(main_loop, current->pool, cfg, main_backend_addrs_changed, NULL);
	if (!ops_is_started())
		health_on_first_round(health, main_first_round_cb, NULL);
	/* Started at start (main); a reload starts it only when the start had none. */
	if (cfg->metrics.listen && metrics == NULL)
		metrics = metrics_start(main_loop, cfg->metrics.listen, main_get_pool);
	if (metrics && boot.metrics == NULL) {
		boot.metrics = strdup(cfg->metrics.listen);
		modules_register_metrics(cfg);	/* the modules' families and POST /learn */
		metrics_set_router(statuspage_route);
	}
}

static bool main_same_string(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* The keys made once at start that differ between the running config and cfg, comma-
 * separated into out ("" when none): a reload cannot apply them. */
static void main_start_only_changes(const struct mx_config *cfg, char *out, size_t cap)
{
	const struct listen_config *a = listen_copies, *b = cfg->listen.v;
	bool listen = (size_t)nlisten != cfg->listen.n;
	size_t n = 0;

	for (size_t i = 0; !listen && i < cfg->listen.n; i++)
		listen = !main_same_string(a[i].address, b[i].address) || a[i].tls != b[i].tls ||
		    a[i].proxy_protocol != b[i].proxy_protocol || a[i].submission != b[i].submission ||
		    a[i].auth != b[i].auth;
	const struct { const char *key; bool changed; } keys[] = {
		{ "listen", listen },
		{ "workers", config_worker_count(cfg) != nworkers },
		{ "user", !main_same_string(cfg->user, boot.user) },
		{ "log.file", !main_same_string(cfg->log.file, boot.logfile) },
		/* a client keyed at connect must have the same key at its close (conncount) */
		{ "nat64_prefixes", !netaddr_nat64_equal(&cfg->nat64_prefixes, netaddr_nat64_get()) },
		/* a listener that runs stays where it is; none running: a reload starts it */
		{ "metrics.listen", metrics && !main_same_string(cfg->metrics.listen, boot.metrics) },
		{ "control", !main_same_string(cfg->control.socket, boot.csocket) ||
		    !main_same_string(cfg->control.mode, boot.cmode) ||
		    !main_same_string(cfg->control.owner, boot.cowner) ||
		    !main_same_string(cfg->control.group, boot.cgroup) },
	};
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!keys[i].changed)
			continue;
		log_event(LOG_LVL_WARNING, NULL, "event=config_unchanged key=%s reason=\"takes effect at the next start\"",
		    keys[i].key);
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? "," : "", keys[i].key);
	}
}

/* Loads the config file and puts it in force (the second half of a reload). resolve: the
 * backend names are resolved (off: an invalid file's errors only, no DNS); seed: names
 * already resolved, not asked again (config_resolve_seed); loaded: the file loaded already,
 * its names resolved (config_take_resolved), put in force as it is (taken). Returns the new generation
 * id, or 0 when the file is invalid (the running generation stays) with *errors set to a
 * malloc'd text of the FILE:LINE:COL lines when errors is not NULL. On success *errors is
 * the comma-separated keys that take effect only at the next start, or NULL (ops.h). */
static unsigned main_reload_apply(char **errors, bool resolve, const struct hostres_set *seed,
    struct mx_config *loaded)
{
	struct mx_config *cfg = loaded;
	char *text = NULL;
	size_t textlen = 0;
	FILE *errfp = open_memstream(&text, &textlen);
	int rc = 0;

	if (cfg == NULL) {
		config_resolve_seed(seed);
		config_resolve_hosts(resolve);
		rc = config_load(config_path, &cfg, errfp ? errfp : stderr);
		config_resolve_hosts(true);
		config_resolve_seed(NULL);
	}
	if (rc != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=reload_failed file=%s reason=invalid_config keeping=old", config_path);
		goto failed;
	}
	struct shared_gen *g = main_gen_new(cfg, errfp);
	if (g == NULL) {
		config_free(cfg);
		log_event(LOG_LVL_ERROR, NULL, "event=reload_failed file=%s keeping=old", config_path);
		goto failed;
	}
	if (errfp)
		fclose(errfp);
	free(text);
	main_apply_process(cfg);
	control_set_config(control, &cfg->control);
	char later[128];
	main_start_only_changes(cfg, later, sizeof(later));
	if (errors)
		*errors = later[0] ? strdup(later) : NULL;
	if (health)
		health_stop(health);
	health = NULL;
	backendres_stop(resolver);
	resolver = NULL;
	struct shared_gen *old = current;
	/* Backends keep their known state across a reload (a dead one stays out: the state is
	 * the URL's, backend.h), what they learnt of their addresses, and drained ones stay
	 * drained until `mxgatectl enable`. */
	ops_apply_drains(g->pool);
	ops_carry_addr_memory(g->pool, old ? old->pool : NULL);
	current = g;
	/* event=reloaded comes from the last worker to put g in force (worker.c), with the
	 * domain counts an operator checks after editing the lists' files */
	size_t accept_n, routes_n;
	main_domain_counts(cfg, &accept_n, &routes_n);
	if (nworkers > 0)
		worker_note_reload(g->id, accept_n, routes_n);
	for (int i = 0; i < nworkers; i++)
		worker_post_gen(&workers[i], g);
	shared_gen_unref(old);
	main_start_side_services();
	if (nworkers == 0)
		log_event(LOG_LVL_INFO, NULL, "event=reloaded generation=%u accept_domains=%zu routes_domains=%zu",
		    g->id, accept_n, routes_n);
	sdnotify_printf("READY=1\nSTATUS=ready: config generation %u", g->id);
	return g->id;
failed:
	if (errfp) {
		fclose(errfp);
		/* Each error as a log line of its own. */
		for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
			char esc[1024];
			size_t k = 0;
			nl = strchr(line, '\n');
			for (const char *c = line; *c && c != nl && k + 2 < sizeof(esc); c++) {
				if (*c == '"' || *c == '\\')
					esc[k++] = '\\';
				esc[k++] = *c;
			}
			esc[k] = '\0';
			log_event(LOG_LVL_ERROR, NULL, "event=config_error error=\"%s\"", esc);
		}
	}
	if (errors)
		*errors = text;
	else
		free(text);
	sdnotify_printf("READY=1\nSTATUS=reload failed: config generation %u stays", current->id);
	return 0;
}

/* A SIGHUP reload's backend names, resolved in the thread pool (hostres_set_resolve blocks
 * up to dns.timeout): meanwhile the main loop serves the status page, /metrics, the control
 * socket and the probes, and the running generation the mail. */
struct main_resolve {
	uv_work_t work;
	struct hostres_set *names;
	struct mx_config *cfg;       /* the file as read for the reload, put in force with names */
	char servers[1024];
	uint64_t timeout_ms;
	int tries;
	/* the required LMDB stores this process does not have open yet: opened on the work's
	 * thread (mdb_env_open waits without a bound for lock.mdb's lock while another process
	 * holds it) and held until the reload is applied, where main_gen_open_stores then only
	 * takes a reference: the main loop (control socket, /metrics) never waits on a lock */
	struct config_lmdb_store stores[CONFIG_LMDB_STORES_MAX];
	size_t nstores;
	struct lmdb_store *held[CONFIG_LMDB_STORES_MAX];
	struct bayes_db *held_bayes;   /* the same for rules.bayes.store (bayes_spec set) */
	bool bayes_open;
};
static struct main_resolve *reload_resolving;   /* a reload waiting for its names */
static bool reload_again;                       /* a reload was asked for meanwhile */

/* Who waits for a reload's result (`mxgatectl reload`): those of the reload under way, and
 * those that asked while it resolved (answered by the reload queued after it). */
struct main_reload_waiter {
	void (*done)(void *arg, unsigned gen, char *errors);
	void *arg;
	struct main_reload_waiter *next;
};
static struct main_reload_waiter *reload_waiters, *reload_waiters_next;

/* Answers the waiters of the reload that just ended (errors: its text, or NULL). */
static void main_reload_answer(unsigned gen, const char *errors)
{
	struct main_reload_waiter *w = reload_waiters;

	reload_waiters = NULL;        /* an answer may ask for the next reload */
	while (w) {
		struct main_reload_waiter *next = w->next;
		w->done(w->arg, gen, errors ? strdup(errors) : NULL);
		free(w);
		w = next;
	}
}

/* main_reload_apply, its result to the waiters. */
static void main_reload_finish(bool resolve, const struct hostres_set *seed, struct mx_config *loaded)
{
	char *errors = NULL;
	unsigned gen = main_reload_apply(&errors, resolve, seed, loaded);

	main_reload_answer(gen, errors);
	free(errors);
}

static void main_reload_begin(void);

/* The names of m->cfg are resolved (ok: the work ran): the file as it was read is put in
 * force with them, parsed once. A name that did not resolve: the file is loaded again with
 * the names as the seed (no DNS asked again), for the FILE:LINE:COL lines of the refusal. */
static void main_reload_resolved(struct main_resolve *m, bool ok)
{
	if (ok && m->names && m->cfg) {
		struct hostres_set *names = m->names;
		m->names = NULL;
		if (config_take_resolved(m->cfg, names) == 0) {
			struct mx_config *cfg = m->cfg;
			m->cfg = NULL;
			main_reload_finish(true, NULL, cfg);
			return;
		}
		m->cfg->resolved = NULL;    /* m's again: the seed below */
		m->names = names;
		main_reload_finish(true, names, NULL);
		return;
	}
	main_reload_finish(true, ok ? m->names : NULL, NULL);
}

static void main_reload_resolve_cb(uv_work_t *w)
{
	struct main_resolve *m = w->data;

	if (m->names)
		hostres_set_resolve(m->names, m->servers, m->timeout_ms, m->tries);
	for (size_t i = 0; i < m->nstores; i++)   /* a failure: main_gen_open_stores says why */
		m->held[i] = lmdb_store_open(m->stores[i].dir, m->stores[i].map_size);
	if (m->bayes_open) {
		const struct bayes_config *bc = &m->cfg->rules.bayes;
		struct bayes_db_options o = { .map_size = bc->map_size, .timeout_ms = bc->timeout,
			.ttl_s = (uint32_t)(bc->expire_after / 1000) };
		char why[192];

		m->held_bayes = bayes_db_open(bc->store, &o, why, sizeof(why));
	}
}

/* Lets go of the references main_reload_resolve_cb took (the generation has its own). */
static void main_reload_release_stores(struct main_resolve *m)
{
	for (size_t i = 0; i < m->nstores; i++)
		if (m->held[i])
			lmdb_store_close(m->held[i]);
	m->nstores = 0;
	bayes_db_close(m->held_bayes);
	m->held_bayes = NULL;
	m->bayes_open = false;
}

static void main_reload_resolved_cb(uv_work_t *w, int status)
{
	struct main_resolve *m = w->data;

	reload_resolving = NULL;
	/* Stopping: the reload was abandoned (main_reload_abandon), its waiters answered. */
	if (!stopping)
		main_reload_resolved(m, status == 0);
	main_reload_release_stores(m);
	config_free(m->cfg);
	hostres_set_free(m->names);
	free(m);
	if (reload_again && !stopping) {
		reload_again = false;
		/* those who asked meanwhile wait for the queued reload; one that an answer above
		 * started already (a pipelined `reload`) read the file after them: theirs too */
		struct main_reload_waiter **tail = &reload_waiters;
		while (*tail)
			tail = &(*tail)->next;
		*tail = reload_waiters_next;
		reload_waiters_next = NULL;
		if (reload_resolving == NULL)
			main_reload_begin();
	}
}

/* SIGHUP and `mxgatectl reload`: reads the file for its backend names (no DNS), resolves
 * them off the main loop, then loads the file with them and puts it in force
 * (main_reload_apply); a file that is invalid, or names that do not resolve, keep the
 * running generation, as before. */
static void main_reload_begin(void)
{
	struct mx_config *cfg = NULL;
	char *text = NULL;
	size_t textlen = 0;

	if (reload_resolving) {
		reload_again = true;
		log_event(LOG_LVL_INFO, NULL, "event=reload_queued reason=\"a reload is resolving backend names\"");
		return;
	}
	sdnotify_reloading();
	log_event(LOG_LVL_INFO, NULL, "event=reload file=%s", config_path);
	FILE *sink = open_memstream(&text, &textlen);   /* main_reload_apply reports the errors */
	config_resolve_hosts(false);
	int rc = sink ? config_load(config_path, &cfg, sink) : -1;
	config_resolve_hosts(true);
	if (sink)
		fclose(sink);
	free(text);
	if (rc != 0) {
		main_reload_finish(false, NULL, NULL);
		return;
	}
	struct main_resolve *m = calloc(1, sizeof(*m));
	if (m)
		m->names = config_host_names(cfg, m->servers, sizeof(m->servers));
	if (m) {
		m->timeout_ms = cfg->dns.timeout ? cfg->dns.timeout : 2000;
		m->tries = cfg->dns.tries ? (int)cfg->dns.tries : 2;
		m->cfg = cfg;
	} else {
		config_free(cfg);
	}
	bool pending = false;
	for (size_t i = 0; m && m->names && i < m->names->n; i++)
		pending |= !m->names->v[i].done;
	bool stores = false;
	if (m) {
		struct config_lmdb_store sv[CONFIG_LMDB_STORES_MAX];
		size_t n = config_lmdb_stores(m->cfg, sv);

		for (size_t i = 0; i < n; i++)
			if (sv[i].required && lmdb_store_open_existing(sv[i].dir) == NULL)
				m->stores[m->nstores++] = sv[i];
		/* the classifier's store, also when this process has it open: a reference only */
		m->bayes_open = main_bayes_lmdb(m->cfg);
		stores = m->nstores > 0 || m->bayes_open;
	}
	if (pending || stores) {
		m->work.data = m;
		if (uv_queue_work(main_loop, &m->work, main_reload_resolve_cb, main_reload_resolved_cb) == 0) {
			reload_resolving = m;
			return;
		}
	}
	/* nothing to ask (addresses only) nor open, or no thread for it: at once */
	if (m) {
		if (pending)
			hostres_set_resolve(m->names, m->servers, m->timeout_ms, m->tries);
		m->nstores = 0;
		m->bayes_open = false;
		main_reload_resolved(m, true);
		config_free(m->cfg);
		hostres_set_free(m->names);
		free(m);
	} else {
		main_reload_finish(true, NULL, NULL);
	}
}

/* The control socket's `reload` (ops_host.reload): as SIGHUP, done called with the result. */
static void main_reload(void (*done)(void *arg, unsigned gen, char *errors), void *arg)
{
	struct main_reload_waiter *w = calloc(1, sizeof(*w));

	if (w == NULL || stopping) {
		free(w);
		done(arg, 0, strdup(stopping ? "mxgate is shutting down: no reload\n" : "out of memory\n"));
		return;
	}
	w->done = done;
	w->arg = arg;
	if (reload_resolving) {
		w->next = reload_waiters_next;
		reload_waiters_next = w;
	} else {
		w->next = reload_waiters;
		reload_waiters = w;
	}
	main_reload_begin();
}

/* ops_host.behind: the first worker still on a generation older than gen. */
static int main_behind(unsigned gen, unsigned *runs)
{
	for (int i = 0; i < nworkers; i++) {
		unsigned id = atomic_load(&workers[i].gen_id);
		if (id < gen) {
			*runs = id;
			return i;
		}
	}
	return -1;
}

/* SIGTERM: a reload under way is not waited for (its names could take dns.timeout): the
 * resolution gives up at once (hostres_set_cancel; main_reload_resolved_cb then only frees
 * it), the waiters are told, a queued reload is forgotten. */
static void main_reload_abandon(void)
{
	if (reload_resolving) {
		hostres_set_cancel(reload_resolving->names);
		/* a SIGHUP queued behind it (event=reload_queued) is forgotten with it: said, so
		 * that the file it was sent for is known not to have been read */
		log_event(LOG_LVL_INFO, NULL, "event=reload_abandoned reason=stopping queued=%s",
		    reload_again ? "yes" : "no");
	}
	reload_again = false;
	struct main_reload_waiter *w = reload_waiters_next;
	reload_waiters_next = NULL;
	if (w) {
		struct main_reload_waiter **tail = &w;
		while (*tail)
			tail = &(*tail)->next;
		*tail = reload_waiters;
		reload_waiters = w;
	}
	main_reload_answer(0, "mxgate is shutting down: the reload was abandoned\n");
}

/* How long the workers may take to drain: limits.drain_timeout, and a little more. */
static uint64_t main_drain_limit_ms(void)
{
	return current->cfg->limits.drain_timeout + 5000;
}

/* The end of a drain: the metrics listener (probes, /metrics, the status page) and the
 * control socket close (its file removed), so the main loop can end. */
static void main_close_operator_listeners(void)
{
	metrics_set_router(NULL);
	if (metrics)
		metrics_stop(metrics);
	metrics = NULL;
	control_stop(control);
	control = NULL;
}

/* Every 100 ms of the drain: joins the workers that have ended; once all have (or the limit
 * has passed: the join after the loop reports the overrun), closes the metrics listener so
 * the main loop can end. Until then /healthz says the process lives, /readyz that it is
 * shutting down. */
static void main_drain_watch_cb(uv_timer_t *t)
{
	int left = 0;

	for (int k = 0; k < nworkers; k++) {
		if (!worker_joined[k] && pthread_tryjoin_np(workers[k].thread, NULL) == 0)
			worker_joined[k] = true;
		left += !worker_joined[k];
	}
	if (left > 0 && uv_now(t->loop) - drain_started_ms < main_drain_limit_ms())
		return;
	main_close_operator_listeners();
	uv_close((uv_handle_t *)t, NULL);
}

/* SIGUSR1: logrotate moved log.file away; the lines go to a file at the path again. A
 * failure keeps the old file (its line says why there). Never ends the process: SIGUSR1's
 * default action would, with no drain (nginx's reopen signal, sent by copied logrotate
 * stanzas). */
static void main_reopen_log(void)
{
	int rc = log_reopen_file();
	char path[600];

	if (rc == 1) {
		log_event(LOG_LVL_INFO, NULL, "event=log_reopen reason=\"no log.file: nothing to reopen "
		    "(standard error stays)\"");
		return;
	}
	log_val(path, sizeof(path), log_file_path());
	if (rc < 0)
		log_event(LOG_LVL_ERROR, NULL, "event=log_reopen_failed file=%s reason=\"%s\" keeping=old",
		    path, strerror(errno));
	else
		log_event(LOG_LVL_INFO, NULL, "event=log_reopened file=%s", path);
}

static void main_signal_cb(uv_signal_t *h, int signum)
{
	(void)h;
	if (signum == SIGHUP) {
		if (stopping) {
			/* the drain goes on under the generation in force */
			log_event(LOG_LVL_WARNING, NULL, "event=reload_ignored reason=stopping");
			return;
		}
		main_reload_begin();
		return;
	}
	if (signum == SIGUSR1) {
		main_reopen_log();
		return;
	}
	if (signum == SIGUSR2) {
		/* HAProxy's reload signal: an operator used to it must not end mail service
		 * (SIGUSR2's default action) with no drain */
		log_event(LOG_LVL_WARNING, NULL, "event=signal_ignored signal=USR2 reason=\"reload is SIGHUP "
		    "or mxgatectl reload\"");
		return;
	}
	if (stopping++) {
		/* A second signal during the drain: the operator wants out now. */
		log_event(LOG_LVL_WARNING, NULL, "event=exit reason=second_signal signal=%d", signum);
		fflush(stderr);
		_exit(0);
	}
	log_event(LOG_LVL_INFO, NULL, "event=shutdown signal=%d drain_timeout_ms=%llu", signum,
	    (unsigned long long)current->cfg->limits.drain_timeout);
	sdnotify_printf("STOPPING=1\nSTATUS=draining %ld sessions", counter_get(COUNTER_SESSIONS_ACTIVE));
	main_reload_abandon();
	/* The control socket answers during the drain (status, backends: `"stopping": true`, the
	 * sessions left), as HAProxy's stats socket does during a soft stop; a reload, and the
	 * verbs that ask the workers, are refused. It closes with the metrics listener. */
	ops_set_stopping();
	ops_stop();
	if (!uv_is_closing((uv_handle_t *)&watchdog_timer))
		uv_close((uv_handle_t *)&watchdog_timer, NULL);
	for (int i = 0; i < nworkers; i++)
		worker_post_stop(&workers[i]);
	if (health)
		health_stop(health);
	health = NULL;
	backendres_stop(resolver);
	resolver = NULL;
	/* The probes answer during the drain: the listener closes when the workers are done.
	 * The watch runs without a metrics listener too: it keeps the main loop (and with it
	 * the signal handlers: a second SIGTERM ends the drain at once) until then. */
	worker_joined = calloc((size_t)nworkers, sizeof(*worker_joined));
	if (worker_joined && uv_timer_init(main_loop, &drain_watch) == 0) {
		drain_started_ms = uv_now(main_loop);
		drain_watched = true;
		uv_timer_start(&drain_watch, main_drain_watch_cb, 100, 100);
	} else {
		main_close_operator_listeners();
	}
	/* The signal handlers stay (a second signal ends the drain; SIGHUP is refused, not left
	 * to its default action, which would end the process mid-drain) but no longer keep
	 * the main loop alive. */
	uv_unref((uv_handle_t *)&sig_hup);
	uv_unref((uv_handle_t *)&sig_term);
	uv_unref((uv_handle_t *)&sig_int);
	uv_unref((uv_handle_t *)&sig_usr1);
	uv_unref((uv_handle_t *)&sig_usr2);
}

/* One listening socket per worker and address, SO_REUSEPORT so the kernel spreads
 * connections across workers. Created before privileges are dropped. */
static int main_bind(const struct listen_config *lc, int *fd_out)
{
	int one = 1;
	int fd = socket(lc->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (lc->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&lc->sa, lc->salen) != 0 || listen(fd, 4096) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*fd_out = fd;
	return 0;
}

/* Whether another process listens on lc's address already: a bind without SO_REUSEPORT
 * (SO_REUSEADDR only, so a socket merely bound or in TIME_WAIT does not count) fails with
 * EADDRINUSE then. The workers' sockets share the address through SO_REUSEPORT, which
 * would otherwise let a second mxgate of the same user bind beside the first and take a
 * share of its connections. -1 with errno set when the address is taken. */
static int main_bind_probe(const struct listen_config *lc)
{
	int one = 1, rc = 0;
	int fd = socket(lc->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port = lc->sa.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&lc->sa)->sin6_port :
	    ((const struct sockaddr_in *)&lc->sa)->sin_port;

	if (fd < 0 || port == 0) {
		if (fd >= 0)
			close(fd);
		return 0;	/* the binds below say what is wrong */
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lc->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&lc->sa, lc->salen) != 0 && errno == EADDRINUSE)
		rc = -1;
	close(fd);
	if (rc)
		errno = EADDRINUSE;
	return rc;
}

/* The strings kept from the config the daemon started with. */
static void main_boot_free(void)
{
	free(boot.user);
	free(boot.metrics);
	free(boot.csocket);
	free(boot.cmode);
	free(boot.cowner);
	free(boot.cgroup);
	free(boot.logfile);
	memset(&boot, 0, sizeof(boot));
}

/* A start that fails after the listeners were begun: undoes what main made so far (the
 * first ncopies listen copies, the descriptors' array, the boot strings, the control and
 * metrics listeners, the config), so a sanitizer build exits clean. */
static void main_start_undo(struct mx_config *cfg, int ncopies, int *fds)
{
	if (control)
		control_stop(control);	/* removes its socket file */
	if (metrics)
		metrics_stop(metrics);
	control = NULL;
	metrics = NULL;
	uv_run(uv_default_loop(), UV_RUN_NOWAIT);	/* their handles' close callbacks */
	for (int i = 0; i < ncopies; i++)
		free(listen_copies[i].address);
	free(fds);
	main_boot_free();
	config_free(cfg);
}

static int main_drop_privileges(const char *user)
{
	struct passwd *pw;

	if (user == NULL || *user == '\0' || geteuid() != 0)
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		fprintf(stderr, "mxgate: user %s: no such user\n", user);
		return -1;
	}
	if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || initgroups(user, pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		fprintf(stderr, "mxgate: cannot drop privileges to %s: %s\n", user, strerror(errno));
		return -1;
	}
	log_event(LOG_LVL_INFO, NULL, "event=privileges user=%s uid=%d", user, (int)pw->pw_uid);
	return 0;
}

/* Descriptors per session: an idle session holds one (its client's); one in a transaction
 * adds its backend's, and at the end of data a milter's and a scanner's (4.03 at the
 * heaviest, measured with a backend, STARTTLS, a milter, rspamd, clamd and spamd,
 * bench/fd_per_session.py). The sessions are sized at one descriptor each over three
 * quarters of what is left after those held at start and the reserve (metrics and control
 * connections, health probes, DNS, spool files); the last quarter is for the extra
 * descriptors of the sessions in a transaction. Sizing every session at its heaviest (4)
 * turned clients away at a quarter of the limit while they were idle (10,000 idle sessions
 * under a limit of 20,000: 4,978 greeted); past the quarter, session_io.c's live check
 * (event=fd_low) and a 451 for a backend or filter connection that finds no descriptor keep
 * the promise. docs/operations.md has the arithmetic behind the default
 * limits.max_connections (16000 under the unit's LimitNOFILE=65536). */
#define MAIN_FDS_SHARE_NUM 3
#define MAIN_FDS_SHARE_DEN 4
#define MAIN_FDS_RESERVE 64

static long main_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;

	if (d == NULL)
		return MAIN_FDS_RESERVE;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n > 3 ? n - 3 : n;	/* ".", ".." and the DIR's own */
}

/* The soft RLIMIT_NOFILE goes up to the hard one (as HAProxy raises its own to what maxconn
 * needs); when that still cannot hold limits.max_connections sessions, say so and cap the
 * sessions at what fits: past it a client gets 421 (reason fd_limit) instead of libuv
 * accepting and closing it unheard once the descriptors run out. */
static void main_fd_budget(const struct mx_config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	long open = main_open_fds();
	long cap = ((long)rl.rlim_cur - open - MAIN_FDS_RESERVE) * MAIN_FDS_SHARE_NUM / MAIN_FDS_SHARE_DEN;
	if (cap < 1)
		cap = 1;
	conncount_set_fd_cap(cap);	/* whatever max_connections a reload sets */
	if (cap >= cfg->limits.max_connections)
		return;
	log_event(LOG_LVL_WARNING, NULL, "event=fd_limit nofile=%lu open=%ld sessions=%ld max_connections=%ld "
	    "reason=\"the file limit holds %ld sessions (one descriptor each, a quarter kept for those in a "
	    "transaction): more get 421; raise LimitNOFILE= (ulimit -n) to %ld for max_connections\"",
	    (unsigned long)rl.rlim_cur, open, cap, cfg->limits.max_connections, cap,
	    ((long)cfg->limits.max_connections * MAIN_FDS_SHARE_DEN + MAIN_FDS_SHARE_NUM - 1) /
	    MAIN_FDS_SHARE_NUM + open + MAIN_FDS_RESERVE);
}

/* log.file, opened before privileges go (its directory may be root's) and given to the
 * `user:` mxgate drops to, so that a reopen (SIGUSR1) as that user can write to it. */
static int main_open_log(const struct mx_config *cfg)
{
	long uid = -1, gid = -1;

	if (cfg->user && *cfg->user && geteuid() == 0) {
		struct passwd *pw = getpwnam(cfg->user);
		if (pw == NULL) {
			fprintf(stderr, "mxgate: user %s: no such user\n", cfg->user);
			return -1;
		}
		uid = (long)pw->pw_uid;
		gid = (long)pw->pw_gid;
	}
	if (log_open_file(cfg->log.file, uid, gid) != 0) {
		config_log_file_error(cfg, errno, stderr);	/* -t's words for it */
		return -1;
	}
	return 0;
}

/* The daemon's config file as an absolute path (the working directory joined to a relative
 * one, "./" dropped; links kept as named): the status page, `mxgatectl status` and the log
 * say which file is in force, and a reload reads the same file whatever the directory.
 * path itself when it is absolute or the directory is unknown. Kept for the process. */
static const char *main_absolute_path(const char *path)
{
	char cwd[4096];
	char *abs;

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return path;
	while (path[0] == '.' && path[1] == '/') {
		path += 2;
		while (*path == '/')
			path++;
	}
	size_t n = strlen(cwd) + strlen(path) + 2;
	if ((abs = malloc(n)) == NULL)
		return path;
	snprintf(abs, n, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
	return abs;
}

int main(int argc, char **argv)
{
	int check_only = 0, ch;
	struct mx_config *cfg = NULL;
	static const struct option longopts[] = {
		{ "dump-config-docs", no_argument, NULL, 'D' },
		{ "dump-config-man", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};

	if (argc == 2 && strcmp(argv[1], "--yaml-probe") == 0)
		_exit(cfg_probe_main());      /* cfg_probe_yaml's process, not for operators: it
		                               * ends as the fork it replaces did (no exit-time work) */
	cfg_probe_use_exec();

	/* Maildir writes, SPF lookups and health probes share libuv's thread pool: make it
	 * wide enough that slow DNS cannot hold up deliveries. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 't': check_only = 1; break;
		case 'V': printf("mxgate %s\n", MX_VERSION); return 0;
		case 'D': config_write_docs(stdout); return 0;
		case 'M': config_write_man(stdout); return 0;
		default: usage(); return ch == 'h' ? 0 : 2;
		}
	}
	if (config_path == NULL) {
		usage();
		return 2;
	}
	/* The only word after the options is the learn command: anything else (a typo such
	 * as "lern") is a bad command line, not a reason to start the daemon. */
	if (optind < argc && strcmp(argv[optind], "learn") != 0) {
		fprintf(stderr, "mxgate: unexpected argument \"%s\"\n", argv[optind]);
		usage();
		return 2;
	}
	/* The daemon: SIGHUP, SIGUSR1 and SIGUSR2 are held from here until their handlers are
	 * in place (after the workers start), then delivered. Their default action would end a
	 * daemon still starting (loading rules, resolving backends) with no word: logrotate's
	 * `kill -USR1`, a `kill -HUP` landing in that window. Threads started meanwhile keep
	 * them blocked, so they reach the main thread. */
	sigset_t held;
	sigemptyset(&held);
	sigaddset(&held, SIGHUP);
	sigaddset(&held, SIGUSR1);
	sigaddset(&held, SIGUSR2);
	if (!check_only && optind >= argc)
		pthread_sigmask(SIG_BLOCK, &held, NULL);
	config_resolve_hosts(true);
	if (!check_only && optind >= argc)
		config_path = main_absolute_path(config_path);
	if (config_load(config_path, &cfg, stderr) != 0)
		return 1;
	if (optind < argc && strcmp(argv[optind], "learn") == 0) {
		int rc = modules_learn_main(cfg, argc - optind, argv + optind, stdout,
		    stderr);

		config_free(cfg);
		return rc;
	}
	if (check_only) {
		int rc = modules_check_config(cfg, stderr);
		config_warnings(cfg, stderr);	/* TLS files are tried by the config's own check */
		/* an error where the start would refuse (a store or the control socket it cannot
		 * make), a warning above where it goes on */
		if (config_start_refusals(cfg, stderr) > 0)
			rc = -1;
		config_free(cfg);
		if (rc != 0)
			return 1;
		printf("%s: ok\n", config_path);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	main_apply_process(cfg);
	if (cfg->log.file && main_open_log(cfg) != 0) {
		config_free(cfg);
		return 1;
	}
	/* Like the listeners (and HAProxy's or nginx's binds): an address that cannot be had stops
	 * the start, rather than a daemon running without its probes and /metrics. First, before
	 * anything else is made that the failure would have to undo. */
	if (cfg->metrics.listen &&
	    (metrics = metrics_start(uv_default_loop(), cfg->metrics.listen, main_get_pool)) == NULL) {
		char at[PATH_MAX + 32];

		fprintf(stderr, "%s: metrics.listen: cannot listen on %s (the log line above says why)\n",
		    config_key_where(cfg, "metrics.listen", at, sizeof(at)), cfg->metrics.listen);
		uv_run(uv_default_loop(), UV_RUN_NOWAIT);	/* the failed listener's close */
		config_free(cfg);
		return 1;
	}

	nworkers = config_worker_count(cfg);	/* 1 .. 64 = MAX_WORKERS */
	nlisten = (int)(cfg->listen.n < WORKER_MAX_LISTENERS ? cfg->listen.n : WORKER_MAX_LISTENERS);
#define MAIN_DUP(s) ((s) ? strdup(s) : NULL)
	boot.user = MAIN_DUP(cfg->user);
	boot.csocket = MAIN_DUP(cfg->control.socket);
	boot.cmode = MAIN_DUP(cfg->control.mode);
	boot.cowner = MAIN_DUP(cfg->control.owner);
	boot.cgroup = MAIN_DUP(cfg->control.group);
	boot.logfile = MAIN_DUP(cfg->log.file);
#undef MAIN_DUP
	netaddr_nat64_set(&cfg->nat64_prefixes);
	const struct listen_config *lv = cfg->listen.v;
	const struct listen_config *lcs[WORKER_MAX_LISTENERS];
	int *fds = calloc((size_t)nworkers * (size_t)nlisten + 1, sizeof(int));
	for (int i = 0; i < nlisten; i++) {
		listen_copies[i] = lv[i];
		listen_copies[i].address = strdup(lv[i].address);
		lcs[i] = &listen_copies[i];
		for (int k = 0; k < nworkers; k++) {
			if ((k == 0 && main_bind_probe(&lv[i]) != 0) || main_bind(&lv[i], &fds[k * nlisten + i]) != 0) {
				int err = errno;
				char key[48], at[PATH_MAX + 32];

				snprintf(key, sizeof(key), "listen[%d].address", i);
				fprintf(stderr, "%s: listen[%d]: cannot listen on %s: %s\n",
				    config_key_where(cfg, key, at, sizeof(at)), i, lv[i].address, strerror(err));
				main_start_undo(cfg, i + 1, fds);
				return 1;
			}
		}
	}
	/* Root read the TLS files at the config's check; the first generation (below) and every
	 * reload load them as `user:`, which may not be able to: say which file and why, where
	 * OpenSSL would only say "system lib". */
	int tls_unreadable = config_tls_access_warnings(cfg, stderr);
	if (tls_unreadable > 0)
		log_event(LOG_LVL_WARNING, NULL, "event=config_notice key=tls files=%d reason=\"user %s cannot "
		    "read them: the start and every reload fail (standard error and mxgate -t name them)\"",
		    tls_unreadable, cfg->user);
	/* The control socket is made before privileges go, so its owner can be anyone. */
	if (cfg->control.socket && (control = control_start(uv_default_loop(), &cfg->control)) == NULL) {
		char at[PATH_MAX + 32];

		fprintf(stderr, "%s: control.socket: cannot make the control socket %s (the log line above "
		    "says why); the start fails\n", config_key_where(cfg, "control.socket", at, sizeof(at)),
		    cfg->control.socket);
		main_start_undo(cfg, nlisten, fds);
		return 1;
	}
	if (main_drop_privileges(cfg->user) != 0) {
		main_start_undo(cfg, nlisten, fds);
		return 1;
	}
	/* The workers own the sockets from here (uv_tcp_open). */

	current = main_gen_new(cfg, stderr);
	if (current == NULL) {
		main_start_undo(cfg, nlisten, fds);	/* the config and the sockets: leaked before */
		return 1;
	}
	main_loop = uv_default_loop();
	workers = calloc((size_t)nworkers, sizeof(*workers));
	for (int k = 0; k < nworkers; k++) {
		if (worker_init(&workers[k], k, current, &fds[k * nlisten], lcs, nlisten) != 0) {
			fprintf(stderr, "mxgate: worker %d failed to start\n", k);
			return 1;
		}
	}
	main_fd_budget(cfg);
	worker_set_peers(workers, nworkers);
	for (int k = 0; k < nworkers; k++)
		uv_thread_create(&workers[k].thread, worker_run, &workers[k]);
	uv_signal_init(main_loop, &sig_hup);
	uv_signal_init(main_loop, &sig_term);
	uv_signal_init(main_loop, &sig_int);
	uv_signal_start(&sig_hup, main_signal_cb, SIGHUP);
	uv_signal_start(&sig_term, main_signal_cb, SIGTERM);
	uv_signal_start(&sig_int, main_signal_cb, SIGINT);
	uv_signal_init(main_loop, &sig_usr1);
	uv_signal_start(&sig_usr1, main_signal_cb, SIGUSR1);
	uv_signal_init(main_loop, &sig_usr2);
	uv_signal_start(&sig_usr2, main_signal_cb, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &held, NULL);	/* what came during the start is handled now */
	static const struct ops_host host = { .current = main_current, .reload = main_reload,
	    .behind = main_behind };
	ops_start(main_loop, &host);
	ops_set_listening();
	sdnotify_watchdog_start(main_loop, &watchdog_timer);
	sdnotify_printf("STATUS=started, checking backends");
	main_start_side_services();
	for (int i = 0; i < nlisten; i++)
		/* the words of the config (listen[].tls, .proxy_protocol), not enum numbers */
		log_event(LOG_LVL_INFO, NULL, "event=listening address=%s workers=%d tls=%s proxy_protocol=%s",
		    lv[i].address, nworkers, lv[i].tls == LISTEN_TLS_IMPLICIT ? "implicit" :
		    lv[i].tls == LISTEN_TLS_STARTTLS ? "starttls" : "none", lv[i].proxy_protocol ? "true" : "false");
	log_event(LOG_LVL_INFO, NULL, "event=started version=%s config=%s", MX_VERSION, config_path);
	if (cfg->accept_set == NULL)
		/* INTERFACE.md: an empty accept_domains is a `-t` warning; at start it is a notice. */
		log_event(LOG_LVL_INFO, NULL, "event=config_notice key=accept_domains "
		    "reason=\"empty: every recipient domain is accepted, the backends decide relaying\"");
	uv_run(main_loop, UV_RUN_DEFAULT);

	/* Workers drain (bounded by drain_timeout); give them a little more, then go. */
	uint64_t limit_ms = drain_watched ? 1000 : main_drain_limit_ms();
	for (int k = 0; k < nworkers; k++) {
		struct timespec ts;

		if (worker_joined && worker_joined[k])
			continue;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(limit_ms / 1000) + 1;
		if (pthread_timedjoin_np(workers[k].thread, NULL, &ts) != 0) {
			log_event(LOG_LVL_WARNING, NULL, "event=exit reason=drain_overrun worker=%d", k);
			/* Diagnostics only (racy by nature): what kept that loop alive. */
			uv_print_active_handles(&workers[k].loop, stderr);
			fflush(stderr);
			_exit(0);
		}
	}
	for (int k = 0; k < nworkers; k++)
		uv_loop_close(&workers[k].loop);
	shared_gen_unref(current);
	for (int i = 0; i < nlisten; i++)
		free(listen_copies[i].address);
	free(workers);
	free(worker_joined);
	free(fds);
	main_boot_free();
	uv_loop_close(main_loop);
	log_event(LOG_LVL_INFO, NULL, "event=stopped");
	return 0;
}
