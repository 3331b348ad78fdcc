/* plugins.c — the `plugins:` section, the dlopen loader, the host side of the plugin ABI,
 * and the per-session plugin chain exposed to the session as one hook module.
 *
 * The session's chain sees `plugins_module` as a single module without a timeout of its
 * own: this file runs the configured plugins in order, gives each call its own timer
 * (`timeout`), maps failures through each entry's `on_error`, and reports one verdict. */
#include "plugins.h"

#include "config.h"
#include "hook.h"
#include "log.h"
#include "msgbuf.h"

#include <dlfcn.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------- config */

static const char *const plugin_on_error_names[] = { "tempfail", "accept", "reject", NULL };

int plugins_load_so(const char *path, void **handle, const struct mxgate_plugin **desc,
    char *err, size_t errlen)
{
	void *h;
	const struct mxgate_plugin *d;

	*handle = NULL;
	*desc = NULL;
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "cannot load plugin: %s", dlerror());
		return -1;
	}
	d = dlsym(h, "mxgate_plugin");
	if (d == NULL) {
		snprintf(err, errlen, "%s: no `mxgate_plugin` descriptor exported", path);
		goto fail;
	}
	if (d->abi_version != MXGATE_PLUGIN_ABI_VERSION) {
		snprintf(err, errlen, "%s: plugin ABI version %u, this mxgate needs %u (rebuild the "
		    "plugin against this plugin.h)", path, (unsigned)d->abi_version,
		    (unsigned)MXGATE_PLUGIN_ABI_VERSION);
		goto fail;
	}
	if (d->name == NULL || d->init == NULL) {
		snprintf(err, errlen, "%s: descriptor lacks name or init", path);
		goto fail;
	}
	*handle = h;
	*desc = d;
	return 0;
fail:
	dlclose(h);
	return -1;
}

/* CFG_CUSTOM for `path:`: loads the object now so `mxgate -t` catches a bad plugin. */
static int plugin_path_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct plugin_so *so = dst;
	const char *s;
	char err[512];

	memset(so, 0, sizeof(*so));
	if (n == NULL)
		return 0;
	if (fy_node_get_type(n) != FYNT_SCALAR || (s = fy_node_get_scalar0(n)) == NULL || !*s)
		return cfg_error(p, n, "want a path to a shared object");
	if (plugins_load_so(s, &so->handle, &so->desc, err, sizeof(err)) < 0)
		return cfg_error(p, n, "%s", err);
	so->path = strdup(s);
	return 0;
}

static void plugin_path_free(void *dst)
{
	struct plugin_so *so = dst;

	if (so->handle)
		dlclose(so->handle);
	free(so->path);
	memset(so, 0, sizeof(*so));
}

static void plugin_options_free(void *dst)
{
	struct plugin_options *o = dst;

	for (size_t i = 0; i < o->n; i++) {
		free((char *)o->v[i].key);
		free((char *)o->v[i].value);
	}
	free(o->v);
	memset(o, 0, sizeof(*o));
}

/* CFG_CUSTOM for `options:`: a mapping of scalar values. */
static int plugin_options_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct plugin_options *o = dst;
	struct fy_node_pair *pair;
	void *it = NULL;

	memset(o, 0, sizeof(*o));
	if (n == NULL)
		return 0;
	if (fy_node_get_type(n) != FYNT_MAPPING)
		return cfg_error(p, n, "want a mapping of plugin options");
	while ((pair = fy_node_mapping_iterate(n, &it)) != NULL) {
		struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
		const char *ks, *vs;
		struct mxgate_option *nv;

		if (k == NULL || fy_node_get_type(k) != FYNT_SCALAR || (ks = fy_node_get_scalar0(k)) == NULL)
			return cfg_error(p, k, "option names must be scalars");
		if (v == NULL)
			vs = "";
		else if (fy_node_get_type(v) != FYNT_SCALAR || (vs = fy_node_get_scalar0(v)) == NULL)
			return cfg_error(p, v, "option %s: want a scalar value", ks);
		nv = realloc(o->v, (o->n + 1) * sizeof(*o->v));
		if (nv == NULL)
			return cfg_error(p, n, "out of memory");
		o->v = nv;
		o->v[o->n].key = strdup(ks);
		o->v[o->n].value = strdup(vs);
		o->n++;
	}
	return 0;
}

const char *plugins_option(const struct mxgate_plugin_args *args, const char *key)
{
	for (size_t i = 0; i < args->noptions; i++)
		if (strcmp(args->options[i].key, key) == 0)
			return args->options[i].value;
	return NULL;
}

const struct mxgate_plugin *plugins_find_builtin(const char *name)
{
	static const struct mxgate_plugin *const builtins[] = {
		&clamd_plugin, &milter_plugin, &spamd_plugin, &rspamd_plugin, NULL
	};

	for (size_t i = 0; name && builtins[i]; i++)
		if (strcmp(builtins[i]->name, name) == 0)
			return builtins[i];
	return NULL;
}

static const struct mxgate_plugin *plugin_config_desc(const struct plugin_config *pc)
{
	return pc->so.desc ? pc->so.desc : plugins_find_builtin(pc->name);
}

/* Builds the option array handed to init: `options:` plus the generic keys. The strings
 * are borrowed from pc; free only the array. */
static struct mxgate_option *plugin_config_options(const struct plugin_config *pc, size_t *n,
    char *sizebuf, size_t sizelen)
{
	struct mxgate_option *v = calloc(pc->options.n + 2, sizeof(*v));
	size_t k = 0;

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < pc->options.n; i++)
		v[k++] = pc->options.v[i];
	if (pc->action)
		v[k++] = (struct mxgate_option){ "action", pc->action };
	if (pc->max_size) {
		snprintf(sizebuf, sizelen, "%llu", (unsigned long long)pc->max_size);
		v[k++] = (struct mxgate_option){ "max_size", sizebuf };
	}
	*n = k;
	return v;
}

extern const struct mxgate_host plugins_host;

static int plugin_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct plugin_config *pc = obj;
	const struct mxgate_plugin *d;
	struct mxgate_plugin_args args;
	struct mxgate_option *opts;
	char err[512] = "", sizebuf[32];
	void *inst = NULL;
	size_t nopts = 0;
	int rc;

	if (pc->name == NULL || !*pc->name)
		return cfg_error(p, n, "name: required");
	d = plugin_config_desc(pc);
	if (d == NULL)
		return cfg_error(p, n, "name: unknown built-in plugin `%s` (built-ins: clamd, milter, "
		    "spamd, rspamd; give `path:` to load a shared object)", pc->name);
	opts = plugin_config_options(pc, &nopts, sizebuf, sizeof(sizebuf));
	memset(&args, 0, sizeof(args));
	args.name = pc->name;
	args.address = pc->address;
	args.timeout_ms = pc->timeout;
	args.options = opts;
	args.noptions = nopts;
	args.loop = NULL;   /* check only */
	rc = d->init(&plugins_host, &args, &inst, err, sizeof(err));
	if (rc == 0 && d->fini)
		d->fini(inst);
	free(opts);
	if (rc != 0)
		return cfg_error(p, n, "plugin %s: %s", pc->name, err[0] ? err : "invalid configuration");
	return 0;
}

static const struct cfg_field plugin_config_fields[] = {
	{ "name", CFG_STRING, offsetof(struct plugin_config, name), .flags = CFG_REQUIRED,
	  .doc = "built-in plugin (clamd, milter, spamd, rspamd) or the name of a loaded one" },
	{ "path", CFG_CUSTOM, offsetof(struct plugin_config, so), .custom = plugin_path_parse,
	  .free_custom = plugin_path_free, .doc = "shared object to dlopen (absolute path)" },
	{ "address", CFG_STRING, offsetof(struct plugin_config, address),
	  .doc = "peer: HOST:PORT, inet:HOST:PORT, inet:PORT@HOST or unix:/path" },
	{ "on_error", CFG_ENUM, offsetof(struct plugin_config, on_error), "tempfail",
	  .choices = plugin_on_error_names, .doc = "what a failed or timed-out call does" },
	{ "timeout", CFG_DURATION, offsetof(struct plugin_config, timeout), "30s", 1, 3600000,
	  .doc = "per call (connect, each stage, end of message scan)" },
	{ "action", CFG_STRING, offsetof(struct plugin_config, action),
	  .doc = "clamd: reject | quarantine | tempfail when a virus is found (default reject)" },
	{ "max_size", CFG_SIZE, offsetof(struct plugin_config, max_size), "0",
	  .doc = "bytes of the message sent to the peer (0 = plugin default)" },
	{ "options", CFG_CUSTOM, offsetof(struct plugin_config, options),
	  .custom = plugin_options_parse, .free_custom = plugin_options_free,
	  .doc = "plugin-specific settings (a mapping)" },
	{ .key = NULL }
};

const struct cfg_table plugin_config_table = {
	.name = "plugins[]",
	.size = sizeof(struct plugin_config),
	.fields = plugin_config_fields,
	.validate = plugin_config_validate,
};

/* ------------------------------------------------------------------- worker state */

struct plugin_inst {
	const struct plugin_config *pc;
	const struct mxgate_plugin *d;
	void *instance;
	bool broken;                 /* init failed: every call takes on_error */
	struct mxgate_option *opts;
	char sizebuf[32];
	unsigned hstages;            /* hook stages this plugin takes part in */
};

struct plugins_worker {
	const struct mx_config *cfg;
	uv_loop_t *loop;
	int worker;
	size_t n;
	struct plugin_inst *v;
	unsigned stages;
};

/* Which hook stages a descriptor needs (CLOSE whenever it keeps session state). */
static unsigned plugin_desc_stages(const struct mxgate_plugin *d)
{
	unsigned s = 0;

	if (d->on_connect) s |= 1u << HOOK_CONNECT;
	if (d->on_helo) s |= 1u << HOOK_HELO;
	if (d->on_mail) s |= 1u << HOOK_MAIL;
	if (d->on_rcpt) s |= 1u << HOOK_RCPT;
	if (d->on_data) s |= 1u << HOOK_DATA;
	if (d->on_header || d->on_body || d->on_eom) s |= 1u << HOOK_EOM;
	if (d->on_close) s |= 1u << HOOK_CLOSE;
	return s;
}

static void plugins_worker_free(void *wstate)
{
	struct plugins_worker *w = wstate;

	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n; i++) {
		if (!w->v[i].broken && w->v[i].d->fini)
			w->v[i].d->fini(w->v[i].instance);
		free(w->v[i].opts);
	}
	free(w->v);
	free(w);
}

static int plugins_worker_init(const struct mx_config *cfg, uv_loop_t *loop, int worker, void **wstate)
{
	const struct cfg_list *list = &cfg->plugins;
	struct plugins_worker *w;

	*wstate = NULL;
	if (list->n == 0)
		return 0;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->v = calloc(list->n, sizeof(*w->v));
	if (w->v == NULL)
		goto fail;
	w->cfg = cfg;
	w->loop = loop;
	w->worker = worker;
	w->n = list->n;
	for (size_t i = 0; i < list->n; i++) {
		const struct plugin_config *pc = (const struct plugin_config *)list->v + i;
		struct plugin_inst *pi = &w->v[i];
		struct mxgate_plugin_args args;
		size_t nopts = 0;
		char err[512] = "";

		pi->pc = pc;
		pi->d = plugin_config_desc(pc);
		if (pi->d == NULL) {
			log_event(LOG_LVL_ERROR, NULL, "event=plugin_init plugin=%s error=\"unknown plugin\"", pc->name);
			pi->broken = true;
			pi->hstages = (1u << HOOK_EOM) | (1u << HOOK_MAIL);
			continue;
		}
		pi->hstages = plugin_desc_stages(pi->d);
		pi->opts = plugin_config_options(pc, &nopts, pi->sizebuf, sizeof(pi->sizebuf));
		memset(&args, 0, sizeof(args));
		args.name = pc->name;
		args.address = pc->address;
		args.timeout_ms = pc->timeout;
		args.options = pi->opts;
		args.noptions = nopts;
		args.loop = loop;
		args.worker = worker;
		if (pi->d->init(&plugins_host, &args, &pi->instance, err, sizeof(err)) != 0) {
			log_event(LOG_LVL_ERROR, NULL, "event=plugin_init plugin=%s worker=%d error=\"%s\"",
			    pc->name, worker, err);
			pi->broken = true;   /* calls take on_error rather than silently skipping */
		}
		w->stages |= pi->hstages;
	}
	*wstate = w;
	return 0;
fail:
	plugins_worker_free(w);
	return -1;
}

static unsigned plugins_stages(void *wstate)
{
	struct plugins_worker *w = wstate;

	return w ? w->stages : 0;
}

/* The chain's own timer would cut across the per-plugin timers: none at module level. */
static uint64_t plugins_timeout_ms(void *wstate)
{
	return 0;
}

static enum verdict_action plugins_on_error(void *wstate)
{
	return VERDICT_TEMPFAIL;
}

/* ------------------------------------------------------------------- per session */

enum plugins_phase { PHASE_START = 0, PHASE_HEADERS, PHASE_BODY, PHASE_EOM, PHASE_END };

struct plugins_sess;

struct mxgate_call {
	struct plugins_sess *s;      /* NULL once detached (timed out, session gone) */
	size_t idx;                  /* plugin index */
	bool in_cancel, done_in_cancel, is_close;
	char client_port[8], local_ip[64], local_port[8];   /* formatted items, one buffer each */
};

struct plugins_sess {
	struct plugins_worker *w;
	struct hook_env *env;
	struct hook_call *hc;        /* outstanding hook call */
	enum hook_stage stage;
	size_t idx;                  /* plugin being run */
	enum plugins_phase phase;
	size_t off;                  /* header / body offset in the message */
	char *hname, *hvalue;        /* current header (on_header) */
	struct mxgate_call *cur;
	uv_timer_t *timer;
	bool dispatching, have_result, closed;
	enum mxgate_action res_action;
	int res_code;
	char res_reply[400], res_reason[48];
	/* A discard/quarantine decided before end of data, applied at EOM. */
	enum mxgate_action txn_pending;
	char txn_reply[400], txn_reason[48];
	void *slots[];
};

static void plugins_advance(struct plugins_sess *s);

static void plugins_timer_free_cb(uv_handle_t *h)
{
	struct plugins_sess *s = h->data;

	free(h);
	free(s);
}

static struct plugins_sess *plugins_sess_get(struct plugins_worker *w, int slot, struct hook_env *env)
{
	struct plugins_sess *s = env->module_ctx[slot];

	if (s)
		return s;
	s = calloc(1, sizeof(*s) + w->n * sizeof(void *));
	if (s == NULL)
		abort();
	s->timer = malloc(sizeof(*s->timer));
	if (s->timer == NULL)
		abort();
	uv_timer_init(w->loop, s->timer);
	s->timer->data = s;
	s->w = w;
	s->env = env;
	env->module_ctx[slot] = s;
	return s;
}

static const char *plugins_stage_name(enum hook_stage st)
{
	static const char *const names[] = { "connect", "helo", "mail", "rcpt", "data", "eom", "close" };

	return st < HOOK_NSTAGES ? names[st] : "?";
}

static const char *plugins_action_name(enum mxgate_action a)
{
	static const char *const names[] = { "continue", "accept", "tempfail", "reject", "discard",
		"quarantine", "error" };

	return (unsigned)a <= MXGATE_ERROR ? names[a] : "?";
}

/* Reports the stage's verdict to the session. Must be the last thing touching s. */
static void plugins_finish(struct plugins_sess *s, const struct verdict *v)
{
	struct hook_call *hc = s->hc;

	s->hc = NULL;
	s->cur = NULL;
	free(s->hname);
	free(s->hvalue);
	s->hname = s->hvalue = NULL;
	if (hc)
		hook_call_done(hc, v);
}

/* Releases a call the plugin will not complete any more (timeout / session end). */
static void plugins_detach_call(struct plugins_sess *s)
{
	struct mxgate_call *c = s->cur;
	struct plugin_inst *pi;

	if (c == NULL)
		return;
	s->cur = NULL;
	uv_timer_stop(s->timer);
	pi = &s->w->v[c->idx];
	if (pi->d && pi->d->cancel && !pi->broken) {
		/* c->s stays set during cancel so the plugin can find its session slot; a done()
		 * from inside cancel is ignored (s->cur no longer points at c). */
		c->in_cancel = true;
		pi->d->cancel(pi->instance, c);
		free(c);
		return;
	}
	/* Without cancel the plugin may still call done(): the handle is freed then. */
	c->s = NULL;
}

static void plugins_set_result(struct plugins_sess *s, enum mxgate_action a, int code,
    const char *reply, const char *reason)
{
	s->have_result = true;
	s->res_action = a;
	s->res_code = code;
	snprintf(s->res_reply, sizeof(s->res_reply), "%s", reply ? reply : "");
	snprintf(s->res_reason, sizeof(s->res_reason), "%s", reason ? reason : "");
}

static void plugins_timeout_cb(uv_timer_t *t)
{
	struct plugins_sess *s = t->data;
	struct mxgate_call *c = s->cur;

	if (c == NULL)
		return;
	log_event(LOG_LVL_WARNING, s->env->session_id, "event=plugin_timeout plugin=%s stage=%s "
	    "timeout_ms=%llu", s->w->v[c->idx].pc->name, plugins_stage_name(s->stage),
	    (unsigned long long)s->w->v[c->idx].pc->timeout);
	plugins_detach_call(s);
	plugins_set_result(s, MXGATE_ERROR, 0, NULL, "timeout");
	plugins_advance(s);
}

/* Builds the verdict for a failed call from the entry's on_error; returns true when the
 * chain stops. */
static bool plugins_on_error_verdict(struct plugins_sess *s, const struct plugin_inst *pi,
    struct verdict *v)
{
	const char *why = s->res_reason[0] ? s->res_reason : "error";

	log_event(LOG_LVL_WARNING, s->env->session_id, "event=plugin_error plugin=%s stage=%s "
	    "error=%s on_error=%s", pi->pc->name, plugins_stage_name(s->stage), why,
	    plugin_on_error_names[pi->pc->on_error]);
	switch (pi->pc->on_error) {
	case PLUGIN_ON_ERROR_ACCEPT:
		return false;
	case PLUGIN_ON_ERROR_REJECT:
		verdict_set(v, VERDICT_REJECT, 550, "plugin", "5.7.1 Message content rejected");
		return true;
	default:
		verdict_set(v, VERDICT_TEMPFAIL, 451, "plugin",
		    "4.7.1 Content filter unavailable, please try again later");
		return true;
	}
}

/* Finds a header line at s->off inside the header block; fills hname/hvalue and moves
 * off past it. Returns false at the end of the header block. */
static bool plugins_next_header(struct plugins_sess *s, const char *msg, size_t hlen)
{
	size_t i = s->off, start = s->off, colon = 0;

	while (i < hlen) {
		if (msg[i] == '\n' && (i + 1 >= hlen || (msg[i + 1] != ' ' && msg[i + 1] != '\t')))
			break;
		i++;
	}
	if (i >= hlen || i - start <= 1)   /* the blank line or end of block */
		return false;
	s->off = i + 1;
	for (size_t k = start; k < i; k++)
		if (msg[k] == ':') {
			colon = k;
			break;
		}
	free(s->hname);
	free(s->hvalue);
	if (colon == 0) {   /* not a header field: pass it as a name-less line */
		s->hname = strndup(msg + start, 0);
		s->hvalue = strndup(msg + start, i - start - (msg[i - 1] == '\r'));
	} else {
		size_t v = colon + 1, end = i;

		while (v < i && (msg[v] == ' ' || msg[v] == '\t'))
			v++;
		if (end > v && msg[end - 1] == '\r')
			end--;
		s->hname = strndup(msg + start, colon - start);
		s->hvalue = strndup(msg + v, end > v ? end - v : 0);
	}
	if (s->hname == NULL || s->hvalue == NULL)
		abort();
	return true;
}

/* Decides the next call for the current plugin at the current stage/phase. Returns a hook
 * to invoke via *kind (0 none: plugin finished this stage). */
enum plugins_kind { KIND_NONE = 0, KIND_STAGE, KIND_HEADER, KIND_BODY };

static enum plugins_kind plugins_next_call(struct plugins_sess *s, struct plugin_inst *pi,
    const char **chunk, size_t *chunklen)
{
	const struct mxgate_plugin *d = pi->d;

	if (s->stage != HOOK_EOM) {
		if (s->phase != PHASE_START)
			return KIND_NONE;
		s->phase = PHASE_END;
		return (pi->hstages & (1u << s->stage)) ? KIND_STAGE : KIND_NONE;
	}
	for (;;) {
		const char *msg;
		size_t len = 0, hlen;

		switch (s->phase) {
		case PHASE_START:
			s->phase = PHASE_HEADERS;
			s->off = 0;
			if (!(pi->hstages & (1u << HOOK_EOM)))
				return KIND_NONE;
			if (pi->broken) {
				s->phase = PHASE_END;
				return KIND_STAGE;
			}
			continue;
		case PHASE_HEADERS:
			if (d->on_header && s->env->msg && (msg = msgbuf_data(s->env->msg, &len)) != NULL) {
				hlen = msgbuf_header_len(s->env->msg);
				if (plugins_next_header(s, msg, hlen < len ? hlen : len))
					return KIND_HEADER;
			}
			s->phase = PHASE_BODY;
			s->off = s->env->msg ? msgbuf_header_len(s->env->msg) : 0;
			continue;
		case PHASE_BODY:
			if (d->on_body && s->env->msg && (msg = msgbuf_data(s->env->msg, &len)) != NULL &&
			    s->off < len) {
				*chunk = msg + s->off;
				*chunklen = len - s->off > 65536 ? 65536 : len - s->off;
				s->off += *chunklen;
				return KIND_BODY;
			}
			s->phase = PHASE_EOM;
			continue;
		case PHASE_EOM:
			s->phase = PHASE_END;
			if (d->on_eom)
				return KIND_STAGE;
			continue;
		default:
			return KIND_NONE;
		}
	}
}

static void plugins_invoke(struct plugins_sess *s, struct plugin_inst *pi, enum plugins_kind kind,
    const char *chunk, size_t chunklen)
{
	const struct mxgate_plugin *d = pi->d;
	struct mxgate_call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->s = s;
	c->idx = s->idx;
	s->cur = c;
	if (pi->broken) {
		free(c);
		s->cur = NULL;
		plugins_set_result(s, MXGATE_ERROR, 0, NULL, "plugin not initialised");
		return;
	}
	if (pi->pc->timeout)
		uv_timer_start(s->timer, plugins_timeout_cb, pi->pc->timeout, 0);
	s->dispatching = true;
	switch (kind) {
	case KIND_HEADER:
		d->on_header(pi->instance, c, s->hname, s->hvalue);
		break;
	case KIND_BODY:
		d->on_body(pi->instance, c, chunk, chunklen);
		break;
	default:
		switch (s->stage) {
		case HOOK_CONNECT: d->on_connect(pi->instance, c); break;
		case HOOK_HELO: d->on_helo(pi->instance, c); break;
		case HOOK_MAIL: d->on_mail(pi->instance, c); break;
		case HOOK_RCPT: d->on_rcpt(pi->instance, c); break;
		case HOOK_DATA: d->on_data(pi->instance, c); break;
		case HOOK_EOM: d->on_eom(pi->instance, c); break;
		default: break;
		}
	}
	s->dispatching = false;
}

/* Runs plugins until one is pending or the chain ends. */
static void plugins_advance(struct plugins_sess *s)
{
	struct verdict v;

	for (;;) {
		if (s->have_result) {
			struct plugin_inst *pi = &s->w->v[s->idx];
			enum mxgate_action a = s->res_action;

			s->have_result = false;
			if (a != MXGATE_CONTINUE)
				log_event(a == MXGATE_ERROR ? LOG_LVL_DEBUG : LOG_LVL_INFO, s->env->session_id,
				    "event=plugin_verdict plugin=%s stage=%s action=%s reason=%s code=%d",
				    pi->pc->name, plugins_stage_name(s->stage), plugins_action_name(a),
				    s->res_reason[0] ? s->res_reason : "-", s->res_code);
			switch (a) {
			case MXGATE_CONTINUE:
				break;
			case MXGATE_ERROR:
				if (plugins_on_error_verdict(s, pi, &v))
					return plugins_finish(s, &v);
				s->phase = PHASE_END;   /* skip the rest of this plugin's stage */
				break;
			case MXGATE_ACCEPT:
				return plugins_finish(s, NULL);
			case MXGATE_TEMPFAIL:
				verdict_set(&v, VERDICT_TEMPFAIL, s->res_code ? s->res_code : 451,
				    s->res_reason[0] ? s->res_reason : pi->pc->name, "%s",
				    s->res_reply[0] ? s->res_reply : "4.7.1 Try again later");
				return plugins_finish(s, &v);
			case MXGATE_REJECT:
				verdict_set(&v, VERDICT_REJECT, s->res_code ? s->res_code : 550,
				    s->res_reason[0] ? s->res_reason : pi->pc->name, "%s",
				    s->res_reply[0] ? s->res_reply : "5.7.1 Message rejected");
				return plugins_finish(s, &v);
			case MXGATE_DISCARD:
			case MXGATE_QUARANTINE:
				if (s->stage == HOOK_EOM) {
					verdict_set(&v, a == MXGATE_DISCARD ? VERDICT_DISCARD : VERDICT_QUARANTINE,
					    s->res_code, s->res_reason[0] ? s->res_reason : pi->pc->name,
					    "%s", s->res_reply);
					if (a == MXGATE_QUARANTINE && !s->env->quarantine_reason[0])
						snprintf(s->env->quarantine_reason, sizeof(s->env->quarantine_reason),
						    "%s: %s", pi->pc->name, s->res_reason[0] ? s->res_reason : "quarantine");
					return plugins_finish(s, &v);
				}
				/* Decided before the end of data: remembered for EOM. */
				s->txn_pending = a;
				snprintf(s->txn_reply, sizeof(s->txn_reply), "%s", s->res_reply);
				snprintf(s->txn_reason, sizeof(s->txn_reason), "%s",
				    s->res_reason[0] ? s->res_reason : pi->pc->name);
				return plugins_finish(s, NULL);
			}
		}
		if (s->cur)
			return;   /* a call is pending */
		if (s->idx >= s->w->n)
			return plugins_finish(s, NULL);
		{
			struct plugin_inst *pi = &s->w->v[s->idx];
			const char *chunk = NULL;
			size_t chunklen = 0;
			enum plugins_kind k = plugins_next_call(s, pi, &chunk, &chunklen);

			if (k == KIND_NONE) {
				s->idx++;
				s->phase = PHASE_START;
				continue;
			}
			plugins_invoke(s, pi, k, chunk, chunklen);
			/* A synchronous done() left a result; otherwise wait for it. */
			if (!s->have_result && s->cur)
				return;
		}
	}
}

/* HOOK_CLOSE and session end: every plugin's on_close, once. */
static void plugins_run_close(struct plugins_sess *s)
{
	if (s->closed)
		return;
	s->closed = true;
	for (size_t i = 0; i < s->w->n; i++) {
		struct plugin_inst *pi = &s->w->v[i];
		struct mxgate_call c;

		if (pi->broken || pi->d->on_close == NULL)
			continue;
		memset(&c, 0, sizeof(c));
		c.s = s;
		c.idx = i;
		c.is_close = true;
		pi->d->on_close(pi->instance, &c);
	}
}

static void plugins_run(void *wstate, int slot, struct hook_call *call)
{
	struct plugins_worker *w = wstate;
	struct hook_env *env = hook_call_env(call);
	struct plugins_sess *s = plugins_sess_get(w, slot, env);
	struct verdict v;

	plugins_detach_call(s);   /* defensive: nothing should be outstanding */
	s->stage = hook_call_stage(call);
	s->hc = call;
	s->idx = 0;
	s->phase = PHASE_START;
	s->have_result = false;
	if (s->stage == HOOK_CLOSE) {
		plugins_detach_call(s);
		plugins_run_close(s);
		return plugins_finish(s, NULL);
	}
	if (s->stage == HOOK_MAIL)
		s->txn_pending = MXGATE_CONTINUE;
	if (s->stage == HOOK_EOM && s->txn_pending != MXGATE_CONTINUE) {
		verdict_set(&v, s->txn_pending == MXGATE_DISCARD ? VERDICT_DISCARD : VERDICT_QUARANTINE,
		    0, s->txn_reason, "%s", s->txn_reply);
		if (s->txn_pending == MXGATE_QUARANTINE && !env->quarantine_reason[0])
			snprintf(env->quarantine_reason, sizeof(env->quarantine_reason), "%s", s->txn_reason);
		s->txn_pending = MXGATE_CONTINUE;
		return plugins_finish(s, &v);
	}
	plugins_advance(s);
}

static void plugins_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct plugins_sess *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	env->module_ctx[slot] = NULL;
	s->hc = NULL;   /* never complete it now */
	plugins_detach_call(s);
	plugins_run_close(s);
	free(s->hname);
	free(s->hvalue);
	s->hname = s->hvalue = NULL;
	uv_timer_stop(s->timer);
	uv_close((uv_handle_t *)s->timer, plugins_timer_free_cb);
}

const struct hook_module plugins_module = {
	.name = "plugins",
	.worker_init = plugins_worker_init,
	.worker_free = plugins_worker_free,
	.stages = plugins_stages,
	.run = plugins_run,
	.session_free = plugins_session_free,
	.timeout_ms = plugins_timeout_ms,
	.on_error = plugins_on_error,
};

/* ------------------------------------------------------------------- the host table */

/* The env of a live call, or NULL (detached / close after session end). */
static struct hook_env *host_env(struct mxgate_call *c)
{
	return c && c->s ? c->s->env : NULL;
}

static uv_loop_t *host_loop(struct mxgate_call *c)
{
	return c && c->s ? c->s->w->loop : NULL;
}

static const char *host_get(struct mxgate_call *c, enum mxgate_item item)
{
	struct hook_env *env = host_env(c);
	const struct sockaddr *sa;
	char ip[64];

	if (env == NULL)
		return NULL;
	switch (item) {
	case MXGATE_SESSION_ID: return env->session_id;
	case MXGATE_HOSTNAME: return env->cfg && env->cfg->hostname ? env->cfg->hostname : "localhost";
	case MXGATE_CLIENT_IP: return env->client_ip;
	case MXGATE_CLIENT_PORT:
		snprintf(c->client_port, sizeof(c->client_port), "%d", env->client_port);
		return c->client_port;
	case MXGATE_CLIENT_NAME: return env->client_name;
	case MXGATE_LOCAL_IP:
	case MXGATE_LOCAL_PORT:
		sa = (const struct sockaddr *)&env->local;
		if (sa->sa_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)sa;

			if (item == MXGATE_LOCAL_PORT) {
				snprintf(c->local_port, sizeof(c->local_port), "%d", ntohs(in->sin_port));
				return c->local_port;
			}
			uv_ip4_name(in, c->local_ip, sizeof(c->local_ip));
			return c->local_ip;
		}
		if (sa->sa_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const void *)sa;

			if (item == MXGATE_LOCAL_PORT) {
				snprintf(c->local_port, sizeof(c->local_port), "%d", ntohs(in6->sin6_port));
				return c->local_port;
			}
			uv_ip6_name(in6, ip, sizeof(ip));
			snprintf(c->local_ip, sizeof(c->local_ip), "%s", ip);
			return c->local_ip;
		}
		return NULL;
	case MXGATE_HELO: return env->helo;
	case MXGATE_MAIL_FROM: return env->mail_from;
	case MXGATE_MAIL_PARAMS: return env->mail_params;
	case MXGATE_RCPT: return env->cur_rcpt;
	case MXGATE_RCPT_PARAMS: return env->cur_rcpt_params;
	case MXGATE_QUEUE_ID: return env->queue_id[0] ? env->queue_id : NULL;
	case MXGATE_TLS_VERSION: return env->tls ? env->tls_version : "";
	case MXGATE_TLS_CIPHER: return env->tls ? env->tls_cipher : "";
	case MXGATE_AUTH_USER: return "";
	default: return NULL;
	}
}

static size_t host_rcpt_count(struct mxgate_call *c)
{
	struct hook_env *env = host_env(c);

	return env ? env->nrcpts : 0;
}

static const char *host_rcpt_at(struct mxgate_call *c, size_t i)
{
	struct hook_env *env = host_env(c);

	return env && i < env->nrcpts ? env->rcpts[i].addr : NULL;
}

static const char *host_message(struct mxgate_call *c, size_t *len)
{
	struct hook_env *env = host_env(c);

	*len = 0;
	if (env == NULL || env->msg == NULL || c->s->stage != HOOK_EOM)
		return NULL;
	return msgbuf_data(env->msg, len);
}

static size_t host_header_len(struct mxgate_call *c)
{
	struct hook_env *env = host_env(c);

	if (env == NULL || env->msg == NULL || c->s->stage != HOOK_EOM)
		return 0;
	return msgbuf_header_len(env->msg);
}

static void **host_session_slot(struct mxgate_call *c)
{
	static __thread void *dummy;

	if (c == NULL || c->s == NULL) {
		dummy = NULL;
		return &dummy;
	}
	return &c->s->slots[c->idx];
}

/* Output hygiene: what plugins and milters send ends up in the relayed message and in the
 * SMTP commands to the backend, so nothing in it may break a line. A header name is
 * printable ASCII without ':'; a value may fold (a line break followed by a space or tab)
 * but any other CR/LF becomes a space; addresses and ESMTP parameters have no control
 * characters, spaces or angle brackets. */
static bool host_header_name_ok(const char *name)
{
	if (name == NULL || !*name || strlen(name) > 200)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == ':')
			return false;
	return true;
}

/* Returns a cleaned copy of v (caller frees), NULL for NULL. */
static char *host_header_value_clean(const char *v)
{
	char *out, *o;

	if (v == NULL)
		return NULL;
	out = malloc(strlen(v) * 2 + 1);
	if (out == NULL)
		abort();
	o = out;
	for (const char *p = v; *p; p++) {
		if (*p == '\r' || *p == '\n') {
			const char *q = p;

			if (*q == '\r' && q[1] == '\n')
				q++;
			if (q[1] == ' ' || q[1] == '\t') {
				*o++ = '\r';        /* a fold: keep it, as CRLF */
				*o++ = '\n';
			} else
				*o++ = ' ';
			p = q;
			continue;
		}
		*o++ = (*p == '\0' || (unsigned char)*p < 0x20) && *p != '\t' ? ' ' : *p;
	}
	*o = '\0';
	return out;
}

static bool host_addr_ok(const char *a, bool allow_empty)
{
	if (a == NULL || (!*a && !allow_empty) || strlen(a) > 512)
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

static bool host_params_ok(const char *a)
{
	if (a == NULL)
		return true;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return strlen(a) < 1000;
}

static void host_reject_output(struct mxgate_call *c, const char *what)
{
	struct plugins_sess *s = c ? c->s : NULL;

	if (s)
		log_event(LOG_LVL_WARNING, s->env->session_id, "event=plugin_bad_output plugin=%s what=%s",
		    s->w->v[c->idx].pc->name, what);
}

static void host_add_symbol(struct mxgate_call *c, const char *name, double score, const char *desc)
{
	struct hook_env *env = host_env(c);

	if (env && name && *name)
		hook_env_add_symbol(env, name, score, desc);
}

static void host_add_header(struct mxgate_call *c, const char *name, const char *value)
{
	struct hook_env *env = host_env(c);
	char *v;

	if (env == NULL || value == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	v = host_header_value_clean(value);
	hook_env_add_header(env, name, v);
	free(v);
}

static void host_insert_header(struct mxgate_call *c, int index, const char *name, const char *value)
{
	struct hook_env *env = host_env(c);
	char *v;

	if (env == NULL || value == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	v = host_header_value_clean(value);
	hook_env_insert_header(env, index < 0 ? 0 : index, name, v);
	free(v);
}

static void host_change_header(struct mxgate_call *c, const char *name, int index, const char *value)
{
	struct hook_env *env = host_env(c);
	char *v;

	if (env == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	v = host_header_value_clean(value);
	hook_env_change_header(env, name, index < 1 ? 1 : index, v);
	free(v);
}

static void host_delete_header(struct mxgate_call *c, const char *name)
{
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	hook_env_delete_headers(env, name);
}

static void host_set_sender(struct mxgate_call *c, const char *addr)
{
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, true))
		return host_reject_output(c, "sender");
	hook_env_set_sender(env, addr);
}

static void host_add_rcpt(struct mxgate_call *c, const char *addr, const char *params)
{
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, false) || !host_params_ok(params))
		return host_reject_output(c, "recipient");
	hook_env_add_rcpt(env, addr, params);
}

static void host_del_rcpt(struct mxgate_call *c, const char *addr)
{
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, false))
		return host_reject_output(c, "recipient");
	hook_env_del_rcpt(env, addr);
}

static int host_replace_body(struct mxgate_call *c, const void *data, size_t len)
{
	struct hook_env *env = host_env(c);
	struct msgbuf *mb;
	size_t threshold = 1024 * 1024;
	const char *dir = NULL;

	if (env == NULL)
		return -1;
	if (env->cfg) {
		if (env->cfg->limits.memory_threshold)
			threshold = env->cfg->limits.memory_threshold;
		dir = env->cfg->limits.spool_dir;
	}
	mb = msgbuf_new(threshold, dir);
	if (mb == NULL || msgbuf_append(mb, data, len) < 0) {
		msgbuf_free(mb);
		return -1;
	}
	hook_env_replace_body(env, mb);
	return 0;
}

static void host_set_quarantine_reason(struct mxgate_call *c, const char *reason)
{
	struct hook_env *env = host_env(c);

	if (env && reason)
		snprintf(env->quarantine_reason, sizeof(env->quarantine_reason), "%s", reason);
}

static void host_progress(struct mxgate_call *c)
{
	struct plugins_sess *s = c ? c->s : NULL;

	if (s && s->cur == c && s->w->v[c->idx].pc->timeout)
		uv_timer_start(s->timer, plugins_timeout_cb, s->w->v[c->idx].pc->timeout, 0);
}

static void host_log(struct mxgate_call *c, int level, const char *fmt, ...)
{
	struct plugins_sess *s = c ? c->s : NULL;
	char buf[1024];
	va_list ap;
	enum log_level lvl = level <= 0 ? LOG_LVL_DEBUG : level == 1 ? LOG_LVL_INFO :
	    level == 2 ? LOG_LVL_WARNING : LOG_LVL_ERROR;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_event(lvl, s ? s->env->session_id : NULL, "plugin=%s %s",
	    s ? s->w->v[c->idx].pc->name : "-", buf);
}

static void host_done(struct mxgate_call *c, enum mxgate_action action, int code,
    const char *reply, const char *reason)
{
	struct plugins_sess *s;

	if (c == NULL || c->is_close)
		return;
	s = c->s;
	if (s == NULL) {   /* detached: the verdict came too late */
		if (c->in_cancel)
			c->done_in_cancel = true;   /* freed by the canceller */
		else
			free(c);
		return;
	}
	if (s->cur != c)
		return;   /* cancelled, or not the live call: ignore */
	uv_timer_stop(s->timer);
	s->cur = NULL;
	free(c);
	if ((unsigned)action > MXGATE_ERROR)
		action = MXGATE_ERROR;
	plugins_set_result(s, action, code, reply, reason);
	if (s->dispatching)
		return;   /* plugins_advance picks the result up when the hook returns */
	plugins_advance(s);
}

const struct mxgate_host plugins_host = {
	.abi_version = MXGATE_PLUGIN_ABI_VERSION,
	.size = sizeof(struct mxgate_host),
	.loop = host_loop,
	.get = host_get,
	.rcpt_count = host_rcpt_count,
	.rcpt_at = host_rcpt_at,
	.message = host_message,
	.header_len = host_header_len,
	.session_slot = host_session_slot,
	.add_symbol = host_add_symbol,
	.add_header = host_add_header,
	.insert_header = host_insert_header,
	.change_header = host_change_header,
	.delete_header = host_delete_header,
	.set_sender = host_set_sender,
	.add_rcpt = host_add_rcpt,
	.del_rcpt = host_del_rcpt,
	.replace_body = host_replace_body,
	.set_quarantine_reason = host_set_quarantine_reason,
	.progress = host_progress,
	.log = host_log,
	.done = host_done,
};
