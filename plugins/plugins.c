/* plugins.c — the `plugins:` section (typed options for the built-ins), the dlopen loader,
 * and the adapter from the plugin ABI (plugin.h) to the chain: each entry is its own chain
 * entry (hook_plugin_entries). The chain owns the timer, on_error and late completions; the
 * adapter maps verdicts, walks a plugin through the header / body / end-of-message calls
 * of HOOK_EOM (restarting the call's timeout after each), and owns the plugin's call
 * handles (tokens into a per-thread call table: a handle used after its call ended is ignored). */
#include "plugins.h"
#include "pconn.h"

#include "clamd.h"
#include "config.h"
#include "headers.h"
#include "hook.h"
#include "log.h"
#include "msgbuf.h"
#include "smtp_reply.h"
#include "tls.h"
#include "../rules/rules.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <link.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern const struct mxgate_host plugins_host;

/* ------------------------------------------------------------------- config */

static const char *const plugin_on_error_names[] = { "tempfail", "accept", "reject", "tag", NULL };

/* Whether the exported `mxgate_plugin` can be read as a descriptor: a data object, aligned
 * for the struct and at least as large as its abi_version field (a function of that name,
 * or a small variable, must not be read as one). *size: the object's size from its symbol
 * table entry, 0 when there is none. */
static bool plugins_symbol_is_descriptor(const void *sym, size_t *size)
{
	Dl_info info;
	const ElfW(Sym) *es = NULL;

	*size = 0;
	if ((uintptr_t)sym % _Alignof(struct mxgate_plugin) != 0)
		return false;
	if (dladdr1(sym, &info, (void **)&es, RTLD_DL_SYMENT) == 0 || es == NULL)
		return true;   /* no symbol table entry to judge by: trust the name */
	*size = es->st_size;
	return ELF64_ST_TYPE(es->st_info) == STT_OBJECT &&
	    es->st_size >= offsetof(struct mxgate_plugin, abi_version) + sizeof(((struct mxgate_plugin *)0)->abi_version);
}

/* The descriptor's size as the host may read it (plugin.h, "Growing ABI 1"): its
 * desc_size when the exported object (object bytes; 0 = unknown) holds that field and it
 * is set, else the first release's; (size_t)-1 when desc_size is impossible (below the
 * first release's, or past the object). A hook added after desc_size is called only when
 * MXGATE_DESC_HAS(this size, hook): on_abort (plugin_entry_skipped). */
static size_t plugins_desc_size_of(const struct mxgate_plugin *d, size_t object)
{
	if (object < offsetof(struct mxgate_plugin, desc_size) + sizeof(d->desc_size) || d->desc_size == 0)
		return MXGATE_DESC_FIRST_SIZE;
	if (d->desc_size < MXGATE_DESC_FIRST_SIZE || d->desc_size > object)
		return (size_t)-1;
	return d->desc_size;
}


/* dlopen() hands back the object already loaded under the same name, so a plugin rebuilt
 * at its path (a new file renamed over the old one) and loaded again at SIGHUP, while the
 * running generation still holds the old object, would silently stay the old code. A new
 * file is loaded through /proc/self/fd/N of a descriptor opened on the path: a name no
 * loaded object has. The loader keeps that name for the object (and adds every other name
 * it was opened by), so the descriptor stays open while the object is loaded, and a file
 * already loaded (same device and inode) is opened again by the name it was first loaded
 * by, adding none: the registry below. */
struct plugins_so_ref { void *handle; int fd; dev_t dev; ino_t ino; unsigned refs; };
static struct plugins_so_ref *plugins_so_refs;
static size_t plugins_so_nrefs;
static pthread_mutex_t plugins_so_lock = PTHREAD_MUTEX_INITIALIZER;

static struct plugins_so_ref *plugins_so_ref_find(void *handle, const struct stat *st)
{
	for (size_t i = 0; i < plugins_so_nrefs; i++)
		if (handle ? plugins_so_refs[i].handle == handle :
		    plugins_so_refs[i].dev == st->st_dev && plugins_so_refs[i].ino == st->st_ino)
			return &plugins_so_refs[i];
	return NULL;
}

/* dlerror()'s text with the /proc/self/fd alias put back as the path the operator wrote. */
static void plugins_dlerror(char *err, size_t errlen, const char *prefix, const char *alias, const char *path)
{
	const char *e = dlerror();
	const char *at;
	size_t al = strlen(alias);

	if (e == NULL)
		e = "unknown error";
	if (*alias && (at = strstr(e, alias)) != NULL && (at[al] < '0' || at[al] > '9'))
		snprintf(err, errlen, "%s%.*s%s%s", prefix, (int)(at - e), e, path, at + al);
	else
		snprintf(err, errlen, "%s%s", prefix, e);
}

/* Releases one load of handle (dlclose), and the registry's descriptor with the last one. */
static void plugins_unload_so(void *handle)
{
	struct plugins_so_ref *r;
	char alias[64];
	void *still;

	if (handle == NULL)
		return;
	pthread_mutex_lock(&plugins_so_lock);
	dlclose(handle);
	r = plugins_so_ref_find(handle, NULL);
	if (r && --r->refs == 0) {
		/* Gone, unless the loader keeps it (an object marked NODELETE): then its name
		 * must stay unique, and the descriptor open. */
		snprintf(alias, sizeof(alias), "/proc/self/fd/%d", r->fd);
		still = dlopen(alias, RTLD_NOW | RTLD_NOLOAD);
		if (still)
			dlclose(still);
		if (still != handle) {
			close(r->fd);
			*r = plugins_so_refs[--plugins_so_nrefs];
		}
	}
	pthread_mutex_unlock(&plugins_so_lock);
}

int plugins_load_so(const char *path, void **handle, const struct mxgate_plugin **desc,
    size_t *desc_size, char *err, size_t errlen)
{
	void *h, *pin;
	const struct mxgate_plugin *d;
	char alias[64] = "";
	int fd;
	size_t object;
	struct stat st;
	struct plugins_so_ref *r = NULL;

	*handle = NULL;
	*desc = NULL;
	pthread_mutex_lock(&plugins_so_lock);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && (r = plugins_so_ref_find(NULL, &st)) != NULL) {
		/* Loaded already: by the name it has. */
		close(fd);
		fd = -1;
		snprintf(alias, sizeof(alias), "/proc/self/fd/%d", r->fd);
	} else if (fd >= 0) {
		snprintf(alias, sizeof(alias), "/proc/self/fd/%d", fd);
		if (access(alias, F_OK) != 0) {   /* no /proc: the path itself */
			close(fd);
			fd = -1;
			alias[0] = '\0';
		}
	}
	h = dlopen(*alias ? alias : path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		plugins_dlerror(err, errlen, "cannot load plugin: ", alias, path);
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&plugins_so_lock);
		return -1;
	}
	if (r == NULL)
		r = plugins_so_ref_find(h, NULL);
	if (r)
		r->refs++;
	else if (fd >= 0) {
		struct plugins_so_ref *nr = realloc(plugins_so_refs, (plugins_so_nrefs + 1) * sizeof(*nr));

		if (nr == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			dlclose(h);
			close(fd);
			pthread_mutex_unlock(&plugins_so_lock);
			return -1;
		}
		plugins_so_refs = nr;
		nr[plugins_so_nrefs++] = (struct plugins_so_ref){ .handle = h, .fd = fd, .dev = st.st_dev,
		    .ino = st.st_ino, .refs = 1 };
		fd = -1;
	}
	/* fd still open: the object was loaded before under another name, which the loader
	 * has now given this alias too; the descriptor must stay open with it (not closed). */
	pthread_mutex_unlock(&plugins_so_lock);
	d = dlsym(h, "mxgate_plugin");
	if (d == NULL) {
		snprintf(err, errlen, "%s: no `mxgate_plugin` descriptor exported", path);
		goto fail;
	}
	if (!plugins_symbol_is_descriptor(d, &object)) {
		snprintf(err, errlen, "%s: `mxgate_plugin` is not a descriptor (a function, or an object too "
		    "small for its ABI version)", path);
		goto fail;
	}
	if (d->abi_version != MXGATE_PLUGIN_ABI_VERSION) {
		snprintf(err, errlen, "%s: plugin ABI version %u, this mxgate needs %u (rebuild the "
		    "plugin against this plugin.h)", path, (unsigned)d->abi_version,
		    (unsigned)MXGATE_PLUGIN_ABI_VERSION);
		goto fail;
	}
	if ((*desc_size = plugins_desc_size_of(d, object)) == (size_t)-1) {
		snprintf(err, errlen, "%s: descriptor size %zu is not that of a descriptor of %zu bytes (set "
		    ".desc_size = MXGATE_DESC_SIZE)", path, d->desc_size, object);
		goto fail;
	}
	if (d->name == NULL || d->init == NULL) {
		snprintf(err, errlen, "%s: descriptor lacks name or init", path);
		goto fail;
	}
	/* A plugin's code stays mapped for the life of the process once it loaded as one: a
	 * generation retires (SIGHUP) in a turn of its worker's loop, fini() closes the
	 * plugin's handles there, and libuv runs their close callbacks — code of the plugin —
	 * on a later turn, as it does a timer or a connection's callback the plugin left
	 * behind, or a uv_queue_work job still running; unmapped by dlclose() in between, the
	 * next turn jumped into nothing (SIGSEGV after a reload that took the plugin out, or
	 * one after it was rebuilt). Haraka cannot unload a plugin's code either. Only a
	 * descriptor that passed the checks above is pinned: a file that is no plugin is
	 * released. The registry keeps its descriptor open (plugins_unload_so). */
	pin = dlopen(*alias ? alias : path, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
	if (pin)
		dlclose(pin);
	*handle = h;
	*desc = d;
	return 0;
fail:
	plugins_unload_so(h);
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
	if (plugins_load_so(s, &so->handle, &so->desc, &so->desc_size, err, sizeof(err)) < 0)
		return cfg_error(p, n, "%s", err);
	so->path = strdup(s);
	return 0;
}

static void plugin_path_free(void *dst)
{
	struct plugin_so *so = dst;

	plugins_unload_so(so->handle);
	free(so->path);
	memset(so, 0, sizeof(*so));
}

const struct plugin_builtin *plugins_find_builtin(const char *name)
{
	static const struct plugin_builtin *const builtins[] = {
		&clamd_builtin, &milter_builtin, &spamd_builtin, &rspamd_builtin, NULL
	};

	for (size_t i = 0; name && builtins[i]; i++)
		if (strcmp(builtins[i]->desc->name, name) == 0)
			return builtins[i];
	return NULL;
}

/* The built-in an entry names (none when it loads a shared object). */
static const struct plugin_builtin *plugin_config_builtin(const struct plugin_config *pc)
{
	return pc->so.desc || pc->so.path ? NULL : plugins_find_builtin(pc->name);
}

static const struct mxgate_plugin *plugin_config_desc(const struct plugin_config *pc)
{
	const struct plugin_builtin *b = plugin_config_builtin(pc);

	return pc->so.desc ? pc->so.desc : b ? b->desc : NULL;
}

static void plugin_options_free(void *dst)
{
	struct plugin_options *o = dst;

	for (size_t i = 0; i < o->n; i++) {
		free((char *)o->v[i].key);
		free((char *)o->v[i].value);
	}
	free(o->v);
	if (o->table)
		cfg_table_free(o->table, o->typed);
	free(o->typed);
	memset(o, 0, sizeof(*o));
}

/* `options:` of a shared object: a mapping of scalars, kept as strings. */
static int plugin_options_parse_strings(struct cfg_parse *p, struct fy_node *n, struct plugin_options *o)
{
	struct fy_node_pair *pair;
	void *it = NULL;

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

/* CFG_CUSTOM for `options:`. The entry's other keys are parsed already (options is the
 * last field): a built-in's options are checked against its table (types, units, bounds,
 * unknown keys), a shared object's are kept as strings. */
static int plugin_options_parse(struct cfg_parse *p, struct fy_node *n, void *dst)
{
	struct plugin_options *o = dst;
	const struct plugin_config *pc = (const struct plugin_config *)(void *)
	    ((char *)dst - offsetof(struct plugin_config, options));
	const struct plugin_builtin *b = plugin_config_builtin(pc);

	memset(o, 0, sizeof(*o));
	if (b == NULL)
		return plugin_options_parse_strings(p, n, o);
	o->typed = calloc(1, b->options->size);
	if (o->typed == NULL)
		return cfg_error(p, n, "out of memory");
	o->table = b->options;
	return cfg_parse_section(p, b->options, n, o->typed);
}

/* Builds the option array handed to a shared object's init: `options:` plus the entry's
 * own action and max_size. The strings are borrowed from pc; free only the array. */
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

/* Creates an instance of pc's plugin (loop NULL: config check, start nothing). For a shared
 * object *opts is the string array handed to init (the caller frees it; NULL for a
 * built-in). 0, or -1 with a reason in err. */
static int plugin_instance_new(const struct plugin_config *pc, uv_loop_t *loop, int worker,
    void **inst, struct mxgate_option **opts, char *sizebuf, size_t sizelen, char *err, size_t errlen)
{
	const struct plugin_builtin *b = plugin_config_builtin(pc);
	struct mxgate_plugin_args args;
	size_t nopts = 0;

	*opts = NULL;
	*inst = NULL;
	memset(&args, 0, sizeof(args));
	args.name = pc->name;
	args.address = pc->address;
	args.timeout_ms = pc->timeout;
	args.connect_timeout_ms = pc->connect_timeout;
	args.loop = loop;
	args.worker = worker;
	if (b) {
		if (pc->options.typed == NULL) {
			snprintf(err, errlen, "options not parsed");
			return -1;
		}
		return b->init(&plugins_host, &args, pc->options.typed, inst, err, errlen);
	}
	if (pc->so.desc == NULL) {
		snprintf(err, errlen, "unknown plugin");
		return -1;
	}
	*opts = plugin_config_options(pc, &nopts, sizebuf, sizelen);
	args.options = *opts;
	args.noptions = nopts;
	return pc->so.desc->init(&plugins_host, &args, inst, err, errlen);
}

/* The entry's own `action:` / `max_size:` (the older spelling of options.action and
 * options.max_size) go into a built-in's typed options. 0 or -1. */
static int plugin_fold_key(struct cfg_parse *p, struct fy_node *n, struct plugin_config *pc,
    const char *key)
{
	struct plugin_options *o = &pc->options;
	const struct cfg_field *f = o->table->fields;
	struct fy_node *opts = NULL;
	void *dst;

	while (f->key && strcmp(f->key, key) != 0)
		f++;
	if (f->key == NULL) {
		if (strcmp(key, "max_size") == 0)
			return 0;   /* a plugin that sends no message (milter) never minded it */
		return cfg_error_key(p, n, key, -1, "%s has no option %s", pc->name, key);
	}
	if (n && fy_node_is_mapping(n))
		opts = fy_node_mapping_lookup_by_string(n, "options", FY_NT);
	if (opts && fy_node_is_mapping(opts) && fy_node_mapping_lookup_by_string(opts, key, FY_NT))
		return cfg_error_key(p, n, key, -1, "also given under options: keep one");
	dst = (char *)o->typed + f->offset;
	if (f->type == CFG_SIZE) {
		*(uint64_t *)dst = pc->max_size;
		return 0;
	}
	if (f->type == CFG_ENUM) {
		for (int i = 0; f->choices[i]; i++)
			if (strcmp(f->choices[i], pc->action) == 0) {
				*(int *)dst = i;
				return 0;
			}
		return cfg_error_key(p, n, key, -1, "%s: unknown value \"%s\"", pc->name, pc->action);
	}
	return cfg_error_key(p, n, key, -1, "internal: option of an unexpected type");
}

static int plugin_config_validate(struct cfg_parse *p, struct fy_node *n, void *obj)
{
	struct plugin_config *pc = obj;
	const struct mxgate_plugin *d;
	struct mxgate_option *opts;
	char err[512] = "", sizebuf[32];
	void *inst = NULL;
	int rc;

	if (pc->name == NULL || !*pc->name)
		return cfg_error_key(p, n, "name", -1, "required");
	d = plugin_config_desc(pc);
	if (d == NULL)
		return cfg_error_key(p, n, "name", -1, "unknown built-in plugin `%s` (built-ins: clamd, milter, "
		    "spamd, rspamd; give `path:` to load a shared object)", pc->name);
	if (pc->options.table) {
		if (pc->action && plugin_fold_key(p, n, pc, "action") < 0)
			return -1;
		if (pc->max_size && plugin_fold_key(p, n, pc, "max_size") < 0)
			return -1;
	}
	pconn_names_checking(true);	/* a peer's host name: resolved by the load next (config.c) */
	rc = plugin_instance_new(pc, NULL, 0, &inst, &opts, sizebuf, sizeof(sizebuf), err, sizeof(err));
	pconn_names_checking(false);
	if (rc == 0 && d->fini)
		d->fini(inst);
	free(opts);
	if (rc != 0)
		return cfg_error(p, n, "plugin %s: %s", pc->name, err[0] ? err : "invalid configuration");
	return 0;
}

/* Documentation (and self-check) of the built-ins' `options:` tables. Never instantiated. */
static const struct cfg_field plugin_options_variant_fields[] = {
	{ "clamd", CFG_STRUCT, 0, .sub = &clamd_options_table, .doc = "options of a clamd entry" },
	{ "milter", CFG_STRUCT, 0, .sub = &milter_options_table, .doc = "options of a milter entry" },
	{ "spamd", CFG_STRUCT, 0, .sub = &spamd_options_table, .doc = "options of a spamd entry" },
	{ "rspamd", CFG_STRUCT, 0, .sub = &rspamd_options_table, .doc = "options of an rspamd entry" },
	{ .key = NULL }
};

static const struct cfg_table plugin_options_variants = {
	.name = "plugins[].options",
	.size = 1,
	.fields = plugin_options_variant_fields,
};

static const struct cfg_field plugin_config_fields[] = {
	{ "name", CFG_STRING, offsetof(struct plugin_config, name), .flags = CFG_REQUIRED,
	  .doc = "built-in plugin (clamd, milter, spamd, rspamd) or the name of a loaded one" },
	{ "path", CFG_CUSTOM, offsetof(struct plugin_config, so), .custom = plugin_path_parse,
	  .free_custom = plugin_path_free, .doc = "shared object to dlopen (absolute path)" },
	{ "address", CFG_STRING, offsetof(struct plugin_config, address),
	  .doc = "peer: HOST:PORT, inet:HOST:PORT, inet:PORT@HOST or unix:/path (absolute); HOST is an IP address, localhost or a host name resolved when the file is loaded, as a backend's (dns.resolvers, within dns.timeout), and again while running as a backend's (backends.resolve_interval: the next connection goes to the new addresses; an address that refuses or cannot be reached: the next of its addresses)" },
	{ "on_error", CFG_ENUM, offsetof(struct plugin_config, on_error), "tempfail",
	  .choices = plugin_on_error_names, .doc = "what a failed or timed-out call does: tempfail (451 4.7.1), reject (550 5.7.1), accept (go on without it) or tag (go on without it, the message delivered with X-Mxgate-Filter-Error: NAME; stage=STAGE; error=WHY)" },
	{ "timeout", CFG_DURATION, offsetof(struct plugin_config, timeout), "30s", 1, 3600000,
	  .doc = "per call (connect, each stage, end of message scan)" },
	{ "connect_timeout", CFG_DURATION, offsetof(struct plugin_config, connect_timeout), "5s", 1, 3600000,
	  .doc = "a TCP connect to one address of the peer (a host name with several addresses: then the next address; the last one's failure is on_error); `timeout` still bounds the whole call" },
	{ "action", CFG_STRING, offsetof(struct plugin_config, action),
	  .doc = "clamd: reject | quarantine | tempfail when a virus is found (same as options.action)" },
	{ "max_size", CFG_SIZE, offsetof(struct plugin_config, max_size), "0",
	  .doc = "bytes of the message sent to the peer (same as options.max_size; 0 = plugin default)" },
	/* last: its parser reads name and path */
	{ "options", CFG_CUSTOM, offsetof(struct plugin_config, options),
	  .custom = plugin_options_parse, .free_custom = plugin_options_free,
	  .sub = &plugin_options_variants,
	  .doc = "plugin-specific settings (a mapping): typed for the built-ins (tables below), strings for a shared object" },
	{ .key = NULL }
};

const struct cfg_table plugin_config_table = {
	.name = "plugins[]",
	.size = sizeof(struct plugin_config),
	.fields = plugin_config_fields,
	.validate = plugin_config_validate,
};

/* ------------------------------------------------------------------- chain entries */

/* One `plugins:` entry on one worker for one config generation: the chain entry's wstate. */
struct plugin_entry {
	const struct plugin_config *pc;
	const struct mxgate_plugin *d;   /* NULL: unknown (not after a valid config) */
	void *instance;
	bool broken;                     /* init failed: every call takes on_error */
	struct mxgate_option *opts;      /* shared objects: the strings handed to init */
	char sizebuf[32];
	unsigned stages;
	uv_loop_t *loop;
};

enum plugin_phase { PHASE_START = 0, PHASE_HEADERS, PHASE_BODY, PHASE_EOM, PHASE_END };

/* One entry in one session: env->module_ctx[slot]. */
struct plugin_sess {
	struct plugin_entry *pe;
	struct hook_env *env;
	struct hook_call *hc;        /* the chain's call in progress (NULL when none) */
	struct plugin_call *cur;     /* the plugin's call in progress */
	enum hook_stage stage;
	enum plugin_phase phase;     /* HOOK_EOM: headers, body chunks, end of message */
	size_t off;                  /* header / body offset in the message */
	char *hname, *hvalue;        /* current header (on_header) */
	bool dispatching, have_result, closed;
	enum mxgate_action res_action;
	int res_code;
	char res_reply[400], res_reason[48];
	void *slot;                  /* the plugin's session slot (host->session_slot) */
	void *txn;                   /* the plugin's transaction data (host->txn_set) */
	void (*txn_release)(void *);
	char txn_qid[24];            /* the queue id of its transaction */
	/* HOOK_EOM: the message as the entries before this one left it (their header edits
	 * and replaced body applied), as Postfix hands each milter the edited queue file;
	 * NULL when nobody changed it (the plugin reads env->msg). Kept until the next stage. */
	struct msgbuf *view;
	struct strbuf received;      /* MXGATE_RECEIVED, built per call that asks */
};

/* One invocation of one hook. The plugin never sees this pointer: it gets c->h, a token
 * naming the call's slot in its thread's call table (see "call handles" below), so a handle
 * used after its call ended (a second done(), a done() after the timeout or cancel) finds a
 * retired slot and is ignored, never freed memory. */
struct plugin_call {
	struct plugin_sess *s;       /* the session entry; NULL for a close call after session end */
	struct mxgate_call *h;       /* the plugin's handle (token) */
	uint32_t slot;               /* index in the thread's call table */
	bool in_cancel, is_close;
	char client_port[8], local_ip[64], local_port[8], max_size[24], cipher_bits[12], max_rcpts[24];   /* formatted items, one buffer each */
};

/* ------------------------------------------------------------------- call handles
 *
 * A plugin holds its call's handle as long as it likes: a Haraka-style plugin answers from
 * two places (a reply and its own timer), or late after the host gave up on the call. So the
 * handle is no pointer but a token, slot index + generation, into a table of the thread the
 * call runs on (every call of an instance runs on its worker's loop thread). A call that
 * ends (answered, given up, its session gone) frees its memory at once and retires its
 * slot: the slot keeps, as a tombstone, how the call ended, the plugin's name and the
 * session, so a later done() on it is logged once, with whom it concerns, and ignored. A
 * retired slot is reused (its generation bumped: the old token no longer matches) only once
 * CALL_RETAIN others retired after it, so the table holds the calls in progress plus
 * CALL_RETAIN tombstones: bounded by the worker's sessions, not by its calls over time. A
 * token from another thread, or garbage, matches nothing and is ignored too. */
enum call_end { CALL_LIVE = 0, CALL_ANSWERED, CALL_GIVEN_UP, CALL_CANCELLED, CALL_CLOSED };

#define CALL_IDX_BITS 24u
#define CALL_IDX_MASK ((1u << CALL_IDX_BITS) - 1u)
#define CALL_MAX_SLOTS (CALL_IDX_MASK - 1u)
#define CALL_GEN_MASK (UINTPTR_MAX >> CALL_IDX_BITS)
#define CALL_CHUNK 256u
#define CALL_RETAIN 256u

struct call_slot {
	uintptr_t gen;
	struct plugin_call *call;    /* the live call, or NULL (retired or never used) */
	uint32_t next;               /* retired FIFO: the next slot's index + 1, 0 = none */
	uint8_t end;                 /* enum call_end: how the retired call ended */
	bool logged;                 /* a late done() on it was logged */
	char plugin[48], session[24];
};

struct call_table {
	struct call_slot **chunks;   /* CALL_CHUNK slots each: slots never move */
	uint32_t nslots, nchunks;
	uint32_t head, tail, nretired;   /* retired FIFO (index + 1, 0 = none) */
};

static __thread struct call_table *call_tab;
static pthread_key_t call_tab_key;
static pthread_once_t call_tab_once = PTHREAD_ONCE_INIT;

static void call_table_free(void *p)
{
	struct call_table *t = p;

	if (t == NULL)
		return;
	for (uint32_t i = 0; i < t->nchunks; i++)
		free(t->chunks[i]);
	free(t->chunks);
	free(t);
	if (call_tab == t)
		call_tab = NULL;
}

static void call_tab_key_make(void)
{
	/* a worker thread's table goes when the thread ends */
	(void)pthread_key_create(&call_tab_key, call_table_free);
}

static struct call_slot *call_slot_at(const struct call_table *t, uint32_t i)
{
	return &t->chunks[i / CALL_CHUNK][i % CALL_CHUNK];
}

/* A slot for c on this thread's table; 0, or -1 when the table cannot grow. */
static int call_slot_take(struct plugin_call *c)
{
	struct call_table *t = call_tab;
	struct call_slot *sl;
	uint32_t i;

	if (t == NULL) {
		pthread_once(&call_tab_once, call_tab_key_make);
		if ((t = calloc(1, sizeof(*t))) == NULL)
			return -1;
		call_tab = t;
		(void)pthread_setspecific(call_tab_key, t);
	}
	if (t->nretired > CALL_RETAIN || (t->nretired && t->nslots >= CALL_MAX_SLOTS)) {
		i = t->head - 1;
		sl = call_slot_at(t, i);
		t->head = sl->next;
		if (t->head == 0)
			t->tail = 0;
		t->nretired--;
		sl->gen = (sl->gen + 1) & CALL_GEN_MASK;
	} else {
		if (t->nslots >= CALL_MAX_SLOTS)
			return -1;
		if (t->nslots == t->nchunks * CALL_CHUNK) {
			struct call_slot **nc = realloc(t->chunks, (t->nchunks + 1) * sizeof(*nc));

			if (nc == NULL)
				return -1;
			t->chunks = nc;
			if ((nc[t->nchunks] = calloc(CALL_CHUNK, sizeof(**nc))) == NULL)
				return -1;
			t->nchunks++;
		}
		i = t->nslots++;
		sl = call_slot_at(t, i);
	}
	sl->call = c;
	sl->next = 0;
	sl->end = CALL_LIVE;
	sl->logged = false;
	c->slot = i;
	c->h = (struct mxgate_call *)((sl->gen << CALL_IDX_BITS) | (uintptr_t)(i + 1));
	return 0;
}

/* Ends c: its slot becomes a tombstone saying how (end), and c is freed. */
static void call_retire(struct plugin_call *c, enum call_end end)
{
	struct call_table *t = call_tab;
	struct call_slot *sl;

	if (t == NULL || c->slot >= t->nslots || (sl = call_slot_at(t, c->slot))->call != c) {
		free(c);   /* not this thread's (cannot happen): never leave a pointer to it */
		return;
	}
	sl->call = NULL;
	sl->end = (uint8_t)end;
	sl->logged = false;
	snprintf(sl->plugin, sizeof(sl->plugin), "%s", c->s ? c->s->pe->pc->name : "-");
	snprintf(sl->session, sizeof(sl->session), "%s",
	    c->s && c->s->env && c->s->env->session_id ? c->s->env->session_id : "-");
	if (t->tail)
		call_slot_at(t, t->tail - 1)->next = c->slot + 1;
	else
		t->head = c->slot + 1;
	t->tail = c->slot + 1;
	t->nretired++;
	free(c);
}

/* The slot a token names on this thread, whatever its state; NULL when it names none (a
 * garbage value, another thread's token, a slot reused since). */
static struct call_slot *call_slot_find(const struct mxgate_call *h)
{
	struct call_table *t = call_tab;
	uintptr_t v = (uintptr_t)h;
	uint32_t i = (uint32_t)(v & CALL_IDX_MASK);
	struct call_slot *sl;

	if (t == NULL || i == 0 || i > t->nslots)
		return NULL;
	sl = call_slot_at(t, i - 1);
	return sl->gen == (v >> CALL_IDX_BITS) ? sl : NULL;
}

/* The live call a token names, or NULL (ended, or no call of this thread). */
static struct plugin_call *plugin_call_get(const struct mxgate_call *h)
{
	struct call_slot *sl = call_slot_find(h);

	return sl ? sl->call : NULL;
}

/* A new call of session s; its handle is c->h. NULL when no slot can be had. */
static struct plugin_call *plugin_call_new(struct plugin_sess *s)
{
	struct plugin_call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->s = s;
	if (call_slot_take(c) != 0) {
		free(c);
		return NULL;
	}
	return c;
}

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

/* "FILE:LINE:COL" of plugins[i]SUB (".timeout"; "": the entry) into at: a message at the
 * key it is about, at the entry when that key is not written. */
static const char *plugin_where(const struct mx_config *cfg, size_t i, const char *sub, char *at, size_t cap)
{
	char key[64];

	snprintf(key, sizeof(key), "plugins[%zu]%s", i, sub);
	return config_key_where(cfg, key, at, cap);
}

int plugins_check_config(const struct mx_config *cfg, FILE *err)
{
	char at[PATH_MAX + 32];

	for (size_t i = 0; i < cfg->plugins.n; i++) {
		const struct plugin_config *pc = (const struct plugin_config *)cfg->plugins.v + i;

		if (clamd_options_quarantine(&pc->options) && (cfg->quarantine == NULL || !cfg->quarantine[0]))
			fprintf(err, "%s: warning: plugins[%zu] (clamd): action quarantine without a "
			    "quarantine backend (top-level `quarantine`): a virus gets 451 4.3.0 and is "
			    "retried for days\n", plugin_where(cfg, i, pc->action ? ".action" : ".options.action", at,
			    sizeof(at)), i);
		if (pc->timeout >= cfg->limits.filter_deadline && cfg->limits.filter_deadline)
			fprintf(err, "%s: warning: plugins[%zu] (%s): timeout %llums is not below "
			    "limits.filter_deadline (%llums): at end of data the deadline ends its call "
			    "first (filter_deadline_action, not its on_error)\n", plugin_where(cfg, i, ".timeout", at, sizeof(at)), i, pc->name,
			    (unsigned long long)pc->timeout, (unsigned long long)cfg->limits.filter_deadline);
		if (pc->so.desc == NULL && strcmp(pc->name, "rspamd") == 0 && !config_rules_engine_wanted(cfg))
			/* RSPAMD_SCORE is summed by the rules engine only, which a spamd plugin turns on
			 * without rule files but rspamd (its reply's action decides) does not */
			fprintf(err, "%s: warning: plugins[%zu] (%s): rules.actions do not judge its score "
			    "and no X-Spam-* header is added (its reply's action still applies): the rules "
			    "engine is off without rules.files (an empty rules file will do)\n",
			    plugin_where(cfg, i, "", at, sizeof(at)), i, pc->name);
		if (pc->max_size && pc->options.table) {
			/* plugin_fold_key lets it through for a built-in without the option (milter) */
			const struct cfg_field *f = pc->options.table->fields;
			while (f->key && strcmp(f->key, "max_size") != 0)
				f++;
			if (f->key == NULL)
				fprintf(err, "%s: warning: plugins[%zu] (%s): max_size has no effect: "
				    "it is sent every message whole (no size limit of its own)\n",
				    plugin_where(cfg, i, ".max_size", at, sizeof(at)), i, pc->name);
		}
	}
	return 0;
}

static size_t plugin_entries_count(const struct mx_config *cfg)
{
	return cfg ? cfg->plugins.n : 0;
}

static int plugin_entry_init(const struct mx_config *cfg, size_t i, uv_loop_t *loop, int worker,
    void **wstate, const char **name)
{
	const struct plugin_config *pc = (const struct plugin_config *)cfg->plugins.v + i;
	struct plugin_entry *pe = calloc(1, sizeof(*pe));
	char err[512] = "";

	*wstate = NULL;
	if (pe == NULL)
		return -1;
	pe->pc = pc;
	pe->loop = loop;
	pe->d = plugin_config_desc(pc);
	if (pe->d == NULL || plugin_instance_new(pc, loop, worker, &pe->instance, &pe->opts,
	    pe->sizebuf, sizeof(pe->sizebuf), err, sizeof(err)) != 0) {
		log_event(LOG_LVL_ERROR, NULL, "event=plugin_init plugin=%s worker=%d error=\"%s\"",
		    pc->name, worker, pe->d ? err : "unknown plugin");
		pe->broken = true;   /* calls take on_error rather than silently skipping */
	}
	pe->stages = pe->broken ? (1u << HOOK_EOM) | (1u << HOOK_MAIL) : plugin_desc_stages(pe->d);
	*wstate = pe;
	*name = pc->name;
	return 0;
}

static void plugin_entry_free(void *wstate)
{
	struct plugin_entry *pe = wstate;

	if (pe == NULL)
		return;
	if (!pe->broken && pe->d->fini)
		pe->d->fini(pe->instance);
	free(pe->opts);
	free(pe);
}

static unsigned plugin_entry_stages(void *wstate)
{
	return ((struct plugin_entry *)wstate)->stages;
}

static uint64_t plugin_entry_timeout_ms(void *wstate)
{
	return ((struct plugin_entry *)wstate)->pc->timeout;
}

static enum verdict_action plugin_entry_on_error(void *wstate)
{
	switch (((struct plugin_entry *)wstate)->pc->on_error) {
	case PLUGIN_ON_ERROR_ACCEPT: return VERDICT_CONTINUE;
	case PLUGIN_ON_ERROR_TAG: return VERDICT_CONTINUE;
	case PLUGIN_ON_ERROR_REJECT: return VERDICT_REJECT;
	default: return VERDICT_TEMPFAIL;
	}
}

static bool plugin_entry_on_error_tag(void *wstate)
{
	return ((struct plugin_entry *)wstate)->pc->on_error == PLUGIN_ON_ERROR_TAG;
}

/* Hands the plugin's transaction data back to its release (once). */
static void plugin_txn_release(struct plugin_sess *s)
{
	void *d = s->txn;
	void (*release)(void *) = s->txn_release;

	s->txn = NULL;
	s->txn_release = NULL;
	s->txn_qid[0] = '\0';
	if (d && release)
		release(d);
}

/* Releases the data of a transaction that is over (RSET, HELO, after the end of data:
 * smtp_tx_reset clears the queue id; a new MAIL makes another). */
static void plugin_txn_expire(struct plugin_sess *s)
{
	if (s->txn && (s->env == NULL || strcmp(s->txn_qid, s->env->queue_id) != 0))
		plugin_txn_release(s);
}

static struct plugin_sess *plugin_sess_get(struct plugin_entry *pe, int slot, struct hook_env *env)
{
	struct plugin_sess *s = env->module_ctx[slot];

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	s->pe = pe;
	s->env = env;
	env->module_ctx[slot] = s;
	return s;
}

static const char *plugin_action_name(enum mxgate_action a)
{
	static const char *const names[] = { "continue", "accept", "tempfail", "reject", "discard",
		"quarantine", "error" };

	return (unsigned)a <= MXGATE_ERROR ? names[a] : "?";
}

/* A message buffer with the session config's memory threshold and spool directory. */
static struct msgbuf *plugin_msgbuf_new(const struct hook_env *env)
{
	size_t threshold = 1024 * 1024;
	const char *dir = NULL;

	if (env->cfg) {
		if (env->cfg->limits.memory_threshold)
			threshold = env->cfg->limits.memory_threshold;
		dir = env->cfg->limits.spool_dir;
	}
	return msgbuf_new(threshold, dir);
}

/* Builds s->view when earlier entries edited the headers or replaced the body. 0, or -1
 * when the message cannot be read or copied. */
static int plugin_view_build(struct plugin_sess *s)
{
	struct hook_env *env = s->env;
	struct strbuf hb = { 0 };
	const char *data, *body;
	size_t len, hlen, blen;
	int rc = 0;

	msgbuf_free(s->view);
	s->view = NULL;
	if (env->msg == NULL || (env->nhdr_edits == 0 && env->new_body == NULL))
		return 0;
	if ((data = msgbuf_data(env->msg, &len)) == NULL)
		return -1;
	hlen = msgbuf_header_len(env->msg);
	if (hlen > len)
		hlen = len;
	body = data + hlen;
	blen = len - hlen;
	if (env->new_body && (body = msgbuf_data(env->new_body, &blen)) == NULL)
		return -1;
	headers_apply_edits(data, hlen, env->hdr_edits, env->nhdr_edits, &hb);
	if (env->new_body)
		headers_end_block(&hb);
	s->view = plugin_msgbuf_new(env);
	if (s->view == NULL || msgbuf_append(s->view, hb.v ? hb.v : "", hb.len) < 0 ||
	    msgbuf_append(s->view, body, blen) < 0) {
		msgbuf_free(s->view);
		s->view = NULL;
		rc = -1;
	}
	strbuf_free(&hb);
	return rc;
}

/* The message this entry is shown at end of data (see plugin_sess.view), or NULL. */
static struct msgbuf *plugin_msg(const struct plugin_sess *s)
{
	return s->view ? s->view : s->env->msg;
}

/* Reports the entry's verdict for the stage to the chain. Must be the last thing touching s:
 * the chain may run the next stage (and this entry again) before it returns. */
/* The recipient changes the plugin's call left past their bound (hook_env_add_rcpt): too
 * many added is a 4xx (the excess is the filter's or the limit's doing, not the sender's: the
 * message waits in the sender's queue while the operator raises limits.max_recipients or
 * fixes the filter), too many deleted is the filter's error (on_error). Fills ov and returns
 * it, or v. */
static const struct verdict *plugin_rcpt_bound(struct plugin_sess *s, const struct verdict *v,
    struct verdict *ov)
{
	struct hook_env *env = s->env;

	if (env == NULL || (!env->add_rcpts_over && !env->del_rcpts_over))
		return v;
	if (v && (v->action == VERDICT_TEMPFAIL || v->action == VERDICT_REJECT ||
	    v->action == VERDICT_DISCARD || v->action == VERDICT_ERROR))
		return v;   /* nothing is relayed anyway */
	if (env->del_rcpts_over) {
		verdict_set(ov, VERDICT_ERROR, 0, "too many recipient deletions", NULL);
		return ov;
	}
	log_event(LOG_LVL_WARNING, env->session_id, "event=plugin_too_many_rcpts plugin=%s max=%ld",
	    s->pe->pc->name, env->cfg ? env->cfg->limits.max_recipients : 0L);
	verdict_set(ov, VERDICT_TEMPFAIL, 451, "too-many-rcpts", "4.5.3 Too many recipients added by a filter");
	return ov;
}

static void plugin_finish(struct plugin_sess *s, const struct verdict *v)
{
	struct hook_call *hc = s->hc;
	struct verdict ov;

	v = plugin_rcpt_bound(s, v, &ov);

	s->hc = NULL;
	s->cur = NULL;
	free(s->hname);
	free(s->hvalue);
	s->hname = s->hvalue = NULL;
	if (hc)
		hook_call_done(hc, v);
}

/* Releases the plugin's call in progress: cancel() when the plugin has one, then the call
 * ends (its handle retired: a done() after it is logged once and ignored). A plugin without
 * cancel() may still answer late; that answer is ignored the same way. */
static void plugin_detach_call(struct plugin_sess *s)
{
	struct plugin_call *c = s->cur;
	struct plugin_entry *pe = s->pe;

	if (c == NULL)
		return;
	s->cur = NULL;
	if (pe->d && pe->d->cancel && !pe->broken) {
		/* the call stays live during cancel so the plugin can find its session slot; a
		 * done() from inside cancel is ignored (s->cur no longer points at c) */
		c->in_cancel = true;
		pe->d->cancel(pe->instance, c->h);
		call_retire(c, CALL_CANCELLED);
		return;
	}
	call_retire(c, CALL_GIVEN_UP);
}

/* A plugin's reply text as the client gets it, in place: CRLF separates the lines of a
 * multi-line reply; in each line every octet that is no text (a lone CR or LF, which would
 * split it into lines of its own — "\nRCPT ..." —, ESC, BEL, TAB, DEL, a C1 control, a byte
 * that is no UTF-8) is '?', by the censor a backend's reply goes through
 * (smtp_reply_printable: Postfix's printable()), so a filter's text reaches the client and
 * the log as a backend's would. Line ends, blanks and tabs at the end of the text are dropped
 * (a C habit: "text\n", "text\r\n"), a line loses its trailing blanks and an empty line is
 * dropped: the session gives each line but the last "NNN-", so "text\r\n" ended the reply
 * with a continuation line and the client waited for a last line that never came. */
static void plugin_reply_clean(char *r)
{
	size_t n = strlen(r);
	char *o = r;

	while (n > 0 && strchr(" \t\r\n", r[n - 1]) != NULL)
		r[--n] = '\0';
	for (char *p = r; *p; ) {
		char *e = strstr(p, "\r\n");
		size_t len = e ? (size_t)(e - p) : strlen(p);

		smtp_reply_printable(p, len);
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len > 0) {
			/* o never passes p: each line taken had its CRLF, each put one before it */
			if (o > r) {
				*o++ = '\r';
				*o++ = '\n';
			}
			memmove(o, p, len);
			o += len;
		}
		if (e == NULL)
			break;
		p = e + 2;
	}
	*o = '\0';
}

/* A plugin's reason (a log word, plugin.h) or quarantine reason, in place: its octets that
 * are no text '?' (smtp_reply_printable), as its reply's. */
static void plugin_text_clean(char *t)
{
	smtp_reply_printable(t, strlen(t));
}

static void plugin_set_result(struct plugin_sess *s, enum mxgate_action a, int code,
    const char *reply, const char *reason)
{
	s->have_result = true;
	s->res_action = a;
	s->res_code = code;
	snprintf(s->res_reply, sizeof(s->res_reply), "%s", reply ? reply : "");
	plugin_reply_clean(s->res_reply);
	snprintf(s->res_reason, sizeof(s->res_reason), "%s", reason ? reason : "");
	plugin_text_clean(s->res_reason);
}

/* The length of the RFC 3463 enhanced status code opening p[0..n) ("class.subject.detail",
 * 1-3 digits each, then a blank or the end), or 0. */
static size_t plugin_enhanced_len(const char *p, size_t n)
{
	size_t a, b;

	if (n < 5 || p[0] < '0' || p[0] > '9' || p[1] != '.')
		return 0;
	for (a = 0; 2 + a < n && a < 4 && p[2 + a] >= '0' && p[2 + a] <= '9'; a++)
		;
	if (a < 1 || a > 3 || 2 + a >= n || p[2 + a] != '.')
		return 0;
	for (b = 0; 3 + a + b < n && b < 4 && p[3 + a + b] >= '0' && p[3 + a + b] <= '9'; b++)
		;
	if (b < 1 || b > 3 || (3 + a + b < n && p[3 + a + b] != ' '))
		return 0;
	return 3 + a + b;
}

/* The plugin's refusal text as the client gets it, into out (outlen): every line opens with
 * an enhanced status code of the reply's class (RFC 3463; mxgate announces
 * ENHANCEDSTATUSCODES, so RFC 2034 wants one on each line). A line's own code gets the
 * class digit (a plugin's "5.7.1 ..." with tempfail goes out as 451 4.7.1, never as
 * "451 5.7.1"); a line without one — "No such user", as a Haraka plugin writes
 * next(DENY, msg) — gets the code of the line before it, or X.0.0 (RFC 3463: other or
 * undefined status) on the first. A leading "550 " in the text, which the session drops,
 * is dropped here. The action decides the class: a code of another class (250 with
 * reject) becomes dflt. Returns the SMTP code. */
static int plugin_reply_class(const char *reply, int code, int cls, int dflt, char *out, size_t outlen)
{
	char enh[16];
	size_t o = 0;

	if (code / 100 != cls)
		code = dflt;
	snprintf(enh, sizeof(enh), "%d.0.0", cls);
	out[0] = '\0';
	for (const char *p = reply; *p; ) {
		const char *e = strstr(p, "\r\n");
		size_t n = e ? (size_t)(e - p) : strlen(p), k;
		int w;

		if (n >= 4 && p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
		    p[2] <= '9' && (p[3] == ' ' || p[3] == '-')) {
			p += 4;
			n -= 4;
		}
		if ((k = plugin_enhanced_len(p, n)) != 0) {
			snprintf(enh, sizeof(enh), "%d%.*s", cls, (int)k - 1, p + 1);
			p += k;
			n -= k;
			while (n && *p == ' ') {
				p++;
				n--;
			}
		}
		/* whole lines only: a line that does not fit ends the reply there, but the first,
		 * whose text is cut instead */
		if (o + (o ? 2 : 0) + strlen(enh) + (n ? 1 + n : 0) >= outlen) {
			if (o)
				break;
			n = outlen > strlen(enh) + 2 ? outlen - strlen(enh) - 2 : 0;
			while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80)
				n--;	/* not inside a UTF-8 sequence: its first octets are no text */
		}
		w = snprintf(out + o, outlen - o, "%s%s%s%.*s", o ? "\r\n" : "", enh, n ? " " : "", (int)n, p);
		if (w < 0)
			break;
		o += (size_t)w;
		if (e == NULL)
			break;
		p = e + 2;
	}
	return code;
}

/* The plugin's reason as the verdict's log word, into out: the session writes it unquoted
 * (reason=WORD in its reject, tempfail, discard and connect lines, and opstats keys on it),
 * so an octet that cannot stand there — a blank, '"', '\\', '=' — is '_': "two words
 * stage=eom" would have written a field of its own. The plugin_verdict line has it whole. */
static const char *plugin_reason_word(const char *reason, char *out, size_t outlen)
{
	size_t i = 0;

	for (; reason[i] && i + 1 < outlen; i++)
		out[i] = reason[i] == ' ' || reason[i] == '"' || reason[i] == '\\' || reason[i] == '=' ? '_' : reason[i];
	out[i] = '\0';
	return out;
}

static void plugin_verdict(struct plugin_sess *s, struct verdict *v)
{
	const char *name = s->pe->pc->name;
	char word[sizeof(s->res_reason)];
	const char *reason = plugin_reason_word(s->res_reason[0] ? s->res_reason : name, word, sizeof(word));
	char text[sizeof(v->reply)];
	int code;

	/* Before MAIL there is no message to discard or quarantine: the plugin's error, as
	 * Postfix judges a milter's ("DISCARD action is not allowed for connect or helo") and
	 * milter.c does; taken as it came, it ended the stage as an accept and was dropped at
	 * MAIL, so the session's messages went through without a word. */
	if ((s->res_action == MXGATE_DISCARD || s->res_action == MXGATE_QUARANTINE) && s->stage < HOOK_MAIL) {
		const char *what = s->res_action == MXGATE_DISCARD ? "discard" : "quarantine";

		log_event(LOG_LVL_WARNING, s->env->session_id, "event=plugin_bad_output plugin=%s what=%s_before_mail "
		    "stage=%s", name, what, hook_stage_name(s->stage));
		verdict_set(v, VERDICT_ERROR, 0, s->res_action == MXGATE_DISCARD ? "discard before mail" :
		    "quarantine before mail", NULL);
		return;
	}
	switch (s->res_action) {
	case MXGATE_CONTINUE:
		verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
		break;
	case MXGATE_ACCEPT:
		verdict_set(v, VERDICT_ACCEPT, 0, reason, NULL);
		break;
	case MXGATE_TEMPFAIL:
		code = plugin_reply_class(s->res_reply, s->res_code, 4, 451, text, sizeof(text));
		verdict_set(v, VERDICT_TEMPFAIL, code, reason, "%s", text[0] ? text : "4.7.1 Try again later");
		break;
	case MXGATE_REJECT:
		code = plugin_reply_class(s->res_reply, s->res_code, 5, 550, text, sizeof(text));
		verdict_set(v, VERDICT_REJECT, code, reason, "%s", text[0] ? text : s->stage == HOOK_EOM ?
		    "5.7.1 Message rejected" : "5.7.1 Command rejected");
		break;
	case MXGATE_DISCARD:
		verdict_set(v, VERDICT_DISCARD, s->res_code, reason, "%s", s->res_reply);
		break;
	case MXGATE_QUARANTINE:
		verdict_set(v, VERDICT_QUARANTINE, s->res_code, reason, "%s", s->res_reply);
		if (!s->env->quarantine_reason[0])
			snprintf(s->env->quarantine_reason, sizeof(s->env->quarantine_reason), "%s: %s",
			    name, s->res_reason[0] ? s->res_reason : "quarantine");
		break;
	default:
		verdict_set(v, VERDICT_ERROR, 0, s->res_reason[0] ? s->res_reason : "error", NULL);
		break;
	}
}

/* Finds a header line at s->off inside the header block; fills hname/hvalue and moves
 * off past it. Returns false at the end of the header block. */
static bool plugin_next_header(struct plugin_sess *s, const char *msg, size_t hlen)
{
	size_t i = s->off, start = s->off, nlen;

	while (i < hlen) {
		if (msg[i] == '\n' && (i + 1 >= hlen || (msg[i + 1] != ' ' && msg[i + 1] != '\t')))
			break;
		i++;
	}
	if (i >= hlen || i - start <= 1)   /* the blank line or end of block */
		return false;
	s->off = i + 1;
	/* "Subject : x" is a field named Subject, as Postfix's milter client passes it */
	nlen = headers_field_name_len(msg + start, i - start);
	free(s->hname);
	free(s->hvalue);
	if (nlen == 0) {   /* not a header field: pass it as a name-less line */
		s->hname = strndup(msg + start, 0);
		s->hvalue = strndup(msg + start, i - start - (msg[i - 1] == '\r'));
	} else {
		size_t v = (size_t)((const char *)memchr(msg + start, ':', i - start) - msg) + 1, end = i;

		while (v < i && (msg[v] == ' ' || msg[v] == '\t'))
			v++;
		if (end > v && msg[end - 1] == '\r')
			end--;
		s->hname = strndup(msg + start, nlen);
		s->hvalue = strndup(msg + v, end > v ? end - v : 0);
	}
	if (s->hname == NULL || s->hvalue == NULL)
		abort();
	return true;
}

/* The next plugin call of the stage (HOOK_EOM: each header, the body chunks, then end of
 * message); KIND_NONE when the plugin is done with the stage. */
enum plugin_kind { KIND_NONE = 0, KIND_STAGE, KIND_HEADER, KIND_BODY };

static enum plugin_kind plugin_next_call(struct plugin_sess *s, const char **chunk, size_t *chunklen)
{
	struct plugin_entry *pe = s->pe;
	const struct mxgate_plugin *d = pe->d;

	if (s->stage != HOOK_EOM) {
		if (s->phase != PHASE_START)
			return KIND_NONE;
		s->phase = PHASE_END;
		return (pe->stages & (1u << s->stage)) ? KIND_STAGE : KIND_NONE;
	}
	for (;;) {
		const char *msg;
		size_t len = 0, hlen;

		switch (s->phase) {
		case PHASE_START:
			s->phase = PHASE_HEADERS;
			s->off = 0;
			if (pe->broken) {
				s->phase = PHASE_END;
				return KIND_STAGE;
			}
			if (plugin_view_build(s) < 0) {
				s->phase = PHASE_END;
				plugin_set_result(s, MXGATE_ERROR, 0, NULL, "message unreadable");
				return KIND_NONE;
			}
			continue;
		case PHASE_HEADERS:
			if (d->on_header && plugin_msg(s) && (msg = msgbuf_data(plugin_msg(s), &len)) != NULL) {
				hlen = msgbuf_header_len(plugin_msg(s));
				if (plugin_next_header(s, msg, hlen < len ? hlen : len))
					return KIND_HEADER;
			}
			s->phase = PHASE_BODY;
			s->off = plugin_msg(s) ? msgbuf_header_len(plugin_msg(s)) : 0;
			continue;
		case PHASE_BODY:
			if (d->on_body && plugin_msg(s) && (msg = msgbuf_data(plugin_msg(s), &len)) != NULL &&
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

static void plugin_invoke(struct plugin_sess *s, enum plugin_kind kind, const char *chunk,
    size_t chunklen)
{
	struct plugin_entry *pe = s->pe;
	const struct mxgate_plugin *d = pe->d;
	struct plugin_call *c;

	if (pe->broken) {
		plugin_set_result(s, MXGATE_ERROR, 0, NULL, "plugin not initialised");
		return;
	}
	c = plugin_call_new(s);
	if (c == NULL) {
		plugin_set_result(s, MXGATE_ERROR, 0, NULL, "no call slot");
		return;
	}
	s->cur = c;
	s->dispatching = true;
	switch (kind) {
	case KIND_HEADER:
		d->on_header(pe->instance, c->h, s->hname, s->hvalue);
		break;
	case KIND_BODY:
		d->on_body(pe->instance, c->h, chunk, chunklen);
		break;
	default:
		switch (s->stage) {
		case HOOK_CONNECT: d->on_connect(pe->instance, c->h); break;
		case HOOK_HELO: d->on_helo(pe->instance, c->h); break;
		case HOOK_MAIL: d->on_mail(pe->instance, c->h); break;
		case HOOK_RCPT: d->on_rcpt(pe->instance, c->h); break;
		case HOOK_DATA: d->on_data(pe->instance, c->h); break;
		case HOOK_EOM: d->on_eom(pe->instance, c->h); break;
		default: break;
		}
	}
	/* c is not touched after the hook: a done() inside it ended (and freed) it */
	s->dispatching = false;
}

/* Runs the plugin's calls of the stage until one is pending or the stage is decided. */
static void plugin_advance(struct plugin_sess *s)
{
	struct verdict v;

	for (;;) {
		if (s->have_result) {
			s->have_result = false;
			if (s->res_action != MXGATE_CONTINUE) {
				char rv[sizeof(s->res_reason) * 4 + 8];   /* the plugin's word, escaped */

				log_event(s->res_action == MXGATE_ERROR ? LOG_LVL_DEBUG : LOG_LVL_INFO,
				    s->env->session_id, "event=plugin_verdict plugin=%s stage=%s action=%s reason=%s code=%d",
				    s->pe->pc->name, hook_stage_name(s->stage), plugin_action_name(s->res_action),
				    log_val(rv, sizeof(rv), s->res_reason[0] ? s->res_reason : "-"), s->res_code);
			}
			if (s->res_action != MXGATE_CONTINUE) {
				plugin_verdict(s, &v);
				return plugin_finish(s, &v);
			}
			/* One call of several (end of message) answered: the next gets a full timeout. */
			if (s->hc)
				hook_call_progress(s->hc);
		}
		if (s->cur)
			return;   /* a call is pending */
		const char *chunk = NULL;
		size_t chunklen = 0;
		enum plugin_kind k = plugin_next_call(s, &chunk, &chunklen);

		if (k == KIND_NONE) {
			if (s->have_result)
				continue;   /* the message could not be shown: the error is the verdict */
			return plugin_finish(s, NULL);
		}
		plugin_invoke(s, k, chunk, chunklen);
		/* A synchronous done() left a result; otherwise wait for it. */
		if (!s->have_result && s->cur)
			return;
	}
}

/* HOOK_CLOSE and session end: the plugin's on_close, once. */
static void plugin_run_close(struct plugin_sess *s)
{
	struct plugin_entry *pe = s->pe;
	struct plugin_call *c;

	if (s->closed)
		return;
	s->closed = true;
	if (pe->broken || pe->d->on_close == NULL)
		return;
	if ((c = plugin_call_new(s)) == NULL) {
		log_event(LOG_LVL_ERROR, s->env ? s->env->session_id : NULL,
		    "event=plugin_error plugin=%s stage=close error=\"no call slot\"", pe->pc->name);
		return;
	}
	c->is_close = true;
	pe->d->on_close(pe->instance, c->h);
	call_retire(c, CALL_CLOSED);
}

/* The entry's on_abort (plugin.h), or NULL: a built-in's descriptor is this host's own, a
 * shared object's is read only as far as its desc_size covers it. */
static void (*plugin_entry_on_abort(const struct plugin_entry *pe))(void *, struct mxgate_call *)
{
	size_t size = pe->pc->so.desc ? pe->pc->so.desc_size : MXGATE_DESC_SIZE;

	return pe->d && MXGATE_DESC_HAS(size, on_abort) ? pe->d->on_abort : NULL;
}

/* bypass: the entry is not asked at st; at DATA and end of data the transaction goes on
 * without it: its on_abort hears it (a milter sends SMFIC_ABORT). */
static void plugin_entry_skipped(void *wstate, int slot, struct hook_env *env, enum hook_stage st)
{
	struct plugin_entry *pe = wstate;
	void (*on_abort)(void *, struct mxgate_call *) = plugin_entry_on_abort(pe);
	struct plugin_sess *s;
	struct plugin_call *c;

	if ((st != HOOK_DATA && st != HOOK_EOM) || pe->broken || on_abort == NULL)
		return;
	/* told even when no hook of it ran in the transaction yet (every RCPT bypassed it and it
	 * has no on_mail): every transaction bypass takes it out of is one on_abort */
	s = plugin_sess_get(pe, slot, env);
	if (s->closed)
		return;
	if ((c = plugin_call_new(s)) == NULL) {
		log_event(LOG_LVL_ERROR, env->session_id,
		    "event=plugin_error plugin=%s stage=%s error=\"no call slot\"", pe->pc->name,
		    hook_stage_name(st));
		return;
	}
	c->is_close = true;	/* no done() expected: one is ignored quietly */
	on_abort(pe->instance, c->h);
	call_retire(c, CALL_CLOSED);
}

static void plugin_entry_run(void *wstate, int slot, struct hook_call *call)
{
	struct plugin_sess *s = plugin_sess_get(wstate, slot, hook_call_env(call));

	plugin_detach_call(s);   /* defensive: nothing should be outstanding */
	plugin_txn_expire(s);    /* before the plugin's first call of a new transaction */
	msgbuf_free(s->view);    /* the last message's view: nothing borrows it any more */
	s->view = NULL;
	s->stage = hook_call_stage(call);
	s->hc = call;
	s->phase = PHASE_START;
	s->have_result = false;
	if (s->stage == HOOK_CLOSE) {
		plugin_run_close(s);
		return plugin_finish(s, NULL);
	}
	plugin_advance(s);
}

/* The chain gave up on the call (timeout): the plugin's call is cancelled or detached. */
static void plugin_entry_cancel(void *wstate, int slot, struct hook_call *call)
{
	struct plugin_sess *s = hook_call_env(call)->module_ctx[slot];

	if (s == NULL || s->hc != call)
		return;
	s->hc = NULL;
	plugin_detach_call(s);
	free(s->hname);
	free(s->hvalue);
	s->hname = s->hvalue = NULL;
}

static void plugin_entry_session_free(void *wstate, int slot, struct hook_env *env)
{
	struct plugin_sess *s = env->module_ctx[slot];

	if (s == NULL)
		return;
	env->module_ctx[slot] = NULL;
	s->hc = NULL;   /* never complete it now */
	plugin_detach_call(s);
	plugin_run_close(s);
	plugin_txn_release(s);
	free(s->hname);
	free(s->hvalue);
	msgbuf_free(s->view);
	strbuf_free(&s->received);
	free(s);
}

static const struct hook_module plugin_entry_module = {
	.name = "plugin",
	.flags = HOOK_MODULE_CONTENT,
	.worker_free = plugin_entry_free,
	.stages = plugin_entry_stages,
	.run = plugin_entry_run,
	.session_free = plugin_entry_session_free,
	.timeout_ms = plugin_entry_timeout_ms,
	.on_error = plugin_entry_on_error,
	.on_error_tag = plugin_entry_on_error_tag,
	.cancel = plugin_entry_cancel,
	.skipped = plugin_entry_skipped,
};

const struct hook_instances hook_plugin_entries = {
	.module = &plugin_entry_module,
	.count = plugin_entries_count,
	.instance_init = plugin_entry_init,
};

/* ------------------------------------------------------------------- the host table */

/* The env of a live call, or NULL (detached / close after session end). */
static struct hook_env *host_env(struct plugin_call *c)
{
	return c && c->s ? c->s->env : NULL;
}

static uv_loop_t *host_loop(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	return c && c->s ? c->s->pe->loop : NULL;
}

static const char *host_get(struct mxgate_call *h, enum mxgate_item item)
{
	struct plugin_call *c = plugin_call_get(h);
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
	case MXGATE_TLS_CIPHER_BITS:
		if (!env->tls || env->tls_cipher_bits <= 0)
			return "";
		snprintf(c->cipher_bits, sizeof(c->cipher_bits), "%d", env->tls_cipher_bits);
		return c->cipher_bits;
	case MXGATE_TLS_CERT_SUBJECT:
		return env->tls && env->tls_cert == TLSCONN_CERT_VERIFIED ? env->tls_cert_subject : "";
	case MXGATE_TLS_CERT_ISSUER:
		return env->tls && env->tls_cert == TLSCONN_CERT_VERIFIED ? env->tls_cert_issuer : "";
	case MXGATE_TLS_CERT_FINGERPRINT:
		return env->tls && env->tls_cert >= TLSCONN_CERT_UNVERIFIED ? env->tls_cert_fingerprint : "";
	case MXGATE_AUTH_USER: return env->auth_user ? env->auth_user : "";
	case MXGATE_AUTH_TYPE: return env->auth_mech ? env->auth_mech : "";
	case MXGATE_CLIENT_PTR: return env->client_ptr;
	case MXGATE_RECEIVED: {
		/* As smtp_tx.c builds it (RFC 3848 with-protocol) */
		const char *with = !env->esmtp ? (env->tls ? "SMTPS" : "SMTP") : env->auth_user ?
		    (env->tls ? "ESMTPSA" : "ESMTPA") : (env->tls ? "ESMTPS" : "ESMTP");

		if (c->s->stage != HOOK_EOM || env->cfg == NULL)
			return NULL;
		c->s->received.len = 0;
		headers_build_received(&c->s->received, env, env->cfg->hostname, with);
		return c->s->received.v;
	}
	case MXGATE_MAX_SIZE:
		if (env->cfg == NULL)
			return NULL;
		snprintf(c->max_size, sizeof(c->max_size), "%llu", (unsigned long long)env->cfg->limits.max_message_size);
		return c->max_size;
	case MXGATE_MAX_RCPTS:
		if (env->cfg == NULL)
			return NULL;
		snprintf(c->max_rcpts, sizeof(c->max_rcpts), "%ld", env->cfg->limits.max_recipients);
		return c->max_rcpts;
	default: return NULL;
	}
}

static size_t host_rcpt_count(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	return env ? env->nrcpts : 0;
}

static const char *host_rcpt_at(struct mxgate_call *h, size_t i)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	return env && i < env->nrcpts ? env->rcpts[i].addr : NULL;
}

static const char *host_message(struct mxgate_call *h, size_t *len)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	*len = 0;
	if (env == NULL || env->msg == NULL || c->s->stage != HOOK_EOM)
		return NULL;
	return msgbuf_data(plugin_msg(c->s), len);
}

static size_t host_header_len(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL || env->msg == NULL || c->s->stage != HOOK_EOM)
		return 0;
	return msgbuf_header_len(plugin_msg(c->s));
}

static void **host_session_slot(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	static __thread void *dummy;

	if (c == NULL || c->s == NULL) {
		dummy = NULL;
		return &dummy;
	}
	return &c->s->slot;
}

/* The session entry of a live call in a transaction (a queue id: from MAIL on, until RSET,
 * HELO or the end of data), its expired data released; NULL outside one or for close. */
static struct plugin_sess *host_txn_sess(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL || c->is_close || env->queue_id[0] == '\0')
		return NULL;
	plugin_txn_expire(c->s);
	return c->s;
}

static int host_txn_set(struct mxgate_call *h, void *data, void (*release)(void *data))
{
	struct plugin_sess *s = host_txn_sess(h);

	if (s == NULL)
		return -1;
	if (s->txn != data)
		plugin_txn_release(s);
	s->txn = data;
	s->txn_release = data ? release : NULL;
	snprintf(s->txn_qid, sizeof(s->txn_qid), "%s", data ? s->env->queue_id : "");
	return 0;
}

static void *host_txn_get(struct mxgate_call *h)
{
	struct plugin_sess *s = host_txn_sess(h);

	return s ? s->txn : NULL;
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

/* An envelope address from a plugin (without its angle brackets): at most 512 octets, no
 * space, control character, '<' or '>', except inside a local part written as an RFC
 * 5321 4.1.2 Quoted-string ("A B"@example.org: qtextSMTP is %d32-33 / %d35-91 / %d93-126,
 * a backslash quotes one of %d32-126), which must then be followed by '@' and a domain.
 * Taken as written (Postfix's cleanup takes such a recipient from smfi_addrcpt too). */
static bool host_addr_ok(const char *a, bool allow_empty)
{
	const unsigned char *p = (const unsigned char *)a;

	if (a == NULL || (!*a && !allow_empty) || strlen(a) > 512)
		return false;
	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\\')
				p++;
			if (*p < 0x20 || *p > 0x7e)
				return false;	/* the end, or a character no quoting allows */
		}
		if (p[1] != '@' || p[2] == '\0')
			return false;
		p++;
	}
	for (; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' || *p == '"')
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

/* See plugins.h (fuzz_plugin_output). */
int plugins_reply_fuzz(const char *reply, int code, int cls, char *out, size_t outlen)
{
	char r[sizeof(((struct plugin_sess *)0)->res_reply)];

	snprintf(r, sizeof(r), "%s", reply);
	plugin_reply_clean(r);
	return plugin_reply_class(r, code, cls, cls * 100 + 50, out, outlen);
}

/* See plugins.h (fuzz_plugin_output). */
void plugins_output_check_fuzz(const char *s, bool ok[4], char **clean)
{
	ok[0] = host_addr_ok(s, false);
	ok[1] = host_addr_ok(s, true);
	ok[2] = host_params_ok(s);
	ok[3] = host_header_name_ok(s);
	*clean = host_header_value_clean(s);
}

/* See plugins.h (fuzz_milter_mods). The call is a real one (a token of this thread's call
 * table: the host functions take nothing else), ended when fn returns. */
void plugins_eom_call_fuzz(struct hook_env *env, const char *name,
    void (*done)(struct mxgate_call *c, enum mxgate_action a, int code, const char *reply, const char *reason),
    void (*fn)(const struct mxgate_host *host, struct mxgate_call *c, void *arg), void *arg)
{
	struct plugin_config pc = { .name = (char *)name };
	struct plugin_entry pe = { .pc = &pc };
	struct plugin_sess s = { .pe = &pe, .env = env, .stage = HOOK_EOM, .phase = PHASE_EOM };
	struct plugin_call *c = plugin_call_new(&s);
	struct mxgate_host host = plugins_host;

	if (c != NULL) {
		host.done = done;
		s.cur = c;
		fn(&host, c->h, arg);
		call_retire(c, CALL_ANSWERED);
	}
	msgbuf_free(s.view);
	strbuf_free(&s.received);
}

static void host_reject_output(struct plugin_call *c, const char *what)
{
	struct plugin_sess *s = c ? c->s : NULL;

	if (s)
		log_event(LOG_LVL_WARNING, s->env->session_id, "event=plugin_bad_output plugin=%s what=%s",
		    s->pe->pc->name, what);
}

static void host_add_symbol(struct mxgate_call *h, const char *name, double score, const char *desc)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	/* AUTH_DOMAIN is filters/senderauth.c's hand-over of the authenticated sender domain
	 * (ratelimit and reputation key on it): a plugin cannot claim one */
	if (name && strcmp(name, "AUTH_DOMAIN") == 0) {
		host_reject_output(c, "reserved_symbol");
		return;
	}
	if (env && name && *name)
		hook_env_add_symbol(env, name, score, desc);
}

/* How a header a plugin writes is placed. */
enum host_header_place { HOST_HEADER_ADD, HOST_HEADER_INSERT, HOST_HEADER_INSERT_DELIVERED };

/* The one path of the three header-writing calls: the name checked, the value cleaned, then
 * placed. A bad name is the plugin's output error; no env or no value does nothing. */
static void host_header_put(struct plugin_call *c, enum host_header_place place, int index,
			    const char *name, const char *value)
{
	struct hook_env *env = host_env(c);
	char *v;

	if (env == NULL || value == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	/* The message with every header added stays within limits.max_message_size, as a
	 * replaced body does: past it a header is dropped (logged once per message) rather
	 * than kept in memory and relayed. */
	if (env->cfg && (env->msg ? msgbuf_len(env->msg) : 0) + env->hdr_edit_bytes + strlen(name) +
	    strlen(value) + 4 > env->cfg->limits.max_message_size) {
		if (!env->hdr_edit_refused)
			host_reject_output(c, "header_too_big");
		env->hdr_edit_refused = true;
		return;
	}
	v = host_header_value_clean(value);
	if (place == HOST_HEADER_ADD)
		hook_env_add_header(env, name, v);
	else if (place == HOST_HEADER_INSERT)
		hook_env_insert_header(env, index < 0 ? 0 : index, name, v);
	else
		hook_env_insert_header_delivered(env, index < 0 ? 0 : index, name, v);
	free(v);
}

static void host_add_header(struct mxgate_call *h, const char *name, const char *value)
{
	struct plugin_call *c = plugin_call_get(h);
	host_header_put(c, HOST_HEADER_ADD, 0, name, value);
}

static void host_insert_header(struct mxgate_call *h, int index, const char *name, const char *value)
{
	struct plugin_call *c = plugin_call_get(h);
	host_header_put(c, HOST_HEADER_INSERT, index, name, value);
}

static void host_insert_header_delivered(struct mxgate_call *h, int index, const char *name, const char *value)
{
	struct plugin_call *c = plugin_call_get(h);
	host_header_put(c, HOST_HEADER_INSERT_DELIVERED, index, name, value);
}

static void host_change_header(struct mxgate_call *h, const char *name, int index, const char *value)
{
	struct plugin_call *c = plugin_call_get(h);
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

static void host_delete_header(struct mxgate_call *h, const char *name)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_header_name_ok(name))
		return host_reject_output(c, "header_name");
	hook_env_delete_headers(env, name);
}

static void host_set_sender(struct mxgate_call *h, const char *addr)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, true))
		return host_reject_output(c, "sender");
	hook_env_set_sender(env, addr);
}

static void host_add_rcpt(struct mxgate_call *h, const char *addr, const char *params)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, false) || !host_params_ok(params))
		return host_reject_output(c, "recipient");
	hook_env_add_rcpt(env, addr, params);
}

static void host_del_rcpt(struct mxgate_call *h, const char *addr)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (!host_addr_ok(addr, false))
		return host_reject_output(c, "recipient");
	hook_env_del_rcpt(env, addr);
}

/* The checks of a new body of len octets; 0, or -1 (logged when too big). */
static int host_body_check(struct plugin_call *c, struct hook_env *env, size_t len)
{
	if (env == NULL)
		return -1;
	if (env->cfg && env->msg && c->s->stage == HOOK_EOM &&
	    msgbuf_header_len(plugin_msg(c->s)) + len > env->cfg->limits.max_message_size) {
		log_event(LOG_LVL_WARNING, env->session_id, "event=plugin_bad_output plugin=%s what=body_too_big "
		    "size=%zu max=%llu", c->s->pe->pc->name, len, (unsigned long long)env->cfg->limits.max_message_size);
		return -1;
	}
	return 0;
}

static int host_replace_body(struct mxgate_call *h, const void *data, size_t len)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);
	struct msgbuf *mb;

	if (host_body_check(c, env, len) < 0)
		return -1;
	mb = plugin_msgbuf_new(env);
	if (mb == NULL || msgbuf_append(mb, data, len) < 0) {
		msgbuf_free(mb);
		return -1;
	}
	hook_env_replace_body(env, mb);
	return 0;
}

/* See plugins.h. */
struct msgbuf *plugins_body_new(struct mxgate_call *h)
{
	struct hook_env *env = h ? host_env(plugin_call_get(h)) : NULL;

	return env ? plugin_msgbuf_new(env) : NULL;
}

/* See plugins.h. */
int plugins_replace_body_buf(struct mxgate_call *h, struct msgbuf *mb)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (mb == NULL || host_body_check(c, env, msgbuf_len(mb)) < 0) {
		msgbuf_free(mb);
		return -1;
	}
	hook_env_replace_body(env, mb);
	return 0;
}

static void host_set_quarantine_reason(struct mxgate_call *h, const char *reason)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env && reason) {
		snprintf(env->quarantine_reason, sizeof(env->quarantine_reason), "%s", reason);
		plugin_text_clean(env->quarantine_reason);
	}
}

static void host_progress(struct mxgate_call *h)
{
	struct plugin_call *c = plugin_call_get(h);
	struct plugin_sess *s = c ? c->s : NULL;

	/* At end of message only, where limits.filter_deadline bounds the calls together;
	 * before it a call that restarted its timeout on every progress() (a plugin relaying
	 * its peer's trickle) held the session at that stage for ever. */
	if (s && s->cur == c && s->hc && s->stage == HOOK_EOM)
		hook_call_progress(s->hc);
}

static void host_log(struct mxgate_call *h, int level, const char *fmt, ...)
{
	struct plugin_call *c = plugin_call_get(h);
	struct plugin_sess *s = c ? c->s : NULL;
	char buf[1024];
	va_list ap;
	enum log_level lvl = level <= 0 ? LOG_LVL_DEBUG : level == 1 ? LOG_LVL_INFO :
	    level == 2 ? LOG_LVL_WARNING : LOG_LVL_ERROR;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* the log form puts event= first: "event=NAME plugin=P rest", as every other line, for
	 * a name of the log's form ([a-z_]); any other text — a sentence, as Haraka's
	 * this.loginfo() is written — is one value of the line, quoted, so the line stays
	 * key=value for whatever reads the log */
	size_t n = strcspn(buf, " ");

	if (strncmp(buf, "event=", 6) == 0 && n > 6 && strspn(buf + 6, "abcdefghijklmnopqrstuvwxyz_") == n - 6) {
		log_event(lvl, s ? s->env->session_id : NULL, "%.*s plugin=%s%s", (int)n, buf,
		    s ? s->pe->pc->name : "-", buf + n);
	} else {
		char v[sizeof(buf) + 64];

		log_event(lvl, s ? s->env->session_id : NULL, "event=plugin_log plugin=%s text=%s",
		    s ? s->pe->pc->name : "-", log_val(v, sizeof(v), buf));
	}
}

/* A done() on a handle whose call has ended: logged once per handle (the tombstone says
 * whose it was and how it ended) and ignored. Haraka ignores a second next() too. */
static void host_done_late(const struct mxgate_call *h)
{
	struct call_slot *sl = call_slot_find(h);

	if (sl == NULL) {   /* not a handle of this thread, or its tombstone reused since */
		log_event(LOG_LVL_WARNING, NULL, "event=plugin_bad_output plugin=- what=late_done");
		return;
	}
	if (sl->logged || sl->end == CALL_CLOSED)
		return;   /* on_close expects no done(): ignored quietly, as inside it */
	sl->logged = true;
	/* A plugin without cancel() may answer after the timeout (plugin.h): told, not warned. */
	log_event(sl->end == CALL_GIVEN_UP ? LOG_LVL_INFO : LOG_LVL_WARNING, sl->session,
	    "event=plugin_bad_output plugin=%s what=%s ended=%s", sl->plugin,
	    sl->end == CALL_ANSWERED ? "done_twice" : "late_done",
	    sl->end == CALL_ANSWERED ? "answered" : sl->end == CALL_CANCELLED ? "cancelled" : "given_up");
}

static void host_done(struct mxgate_call *h, enum mxgate_action action, int code,
    const char *reply, const char *reason)
{
	struct plugin_call *c = plugin_call_get(h);
	struct plugin_sess *s;

	if (c == NULL)
		return host_done_late(h);
	if (c->is_close || c->in_cancel)
		return;   /* ignored: no verdict is expected there */
	s = c->s;
	if (s == NULL || s->cur != c)
		return;   /* not the live call (cannot happen: every other call is retired) */
	s->cur = NULL;
	call_retire(c, CALL_ANSWERED);
	if ((unsigned)action > MXGATE_ERROR)
		action = MXGATE_ERROR;
	plugin_set_result(s, action, code, reply, reason);
	if (s->dispatching)
		return;   /* plugin_advance picks the result up when the hook returns */
	plugin_advance(s);
}

static void host_set_flags(struct mxgate_call *h, unsigned flags)
{
	struct plugin_call *c = plugin_call_get(h);
	struct hook_env *env = host_env(c);

	if (env == NULL)
		return;
	if (flags & MXGATE_FLAG_SPAM)
		env->flags |= HOOK_FLAG_SPAM;
	if (flags & MXGATE_FLAG_VIRUS)
		env->flags |= HOOK_FLAG_VIRUS;
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
	.insert_header_delivered = host_insert_header_delivered,
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
	.set_flags = host_set_flags,
	.args_size = sizeof(struct mxgate_plugin_args),
	.txn_set = host_txn_set,
	.txn_get = host_txn_get,
};
