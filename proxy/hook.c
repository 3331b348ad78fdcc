/* hook.c — verdicts and the hook_env output helpers (the chain runner is chain.c, the module
 * list modules.def). */
#include "hook.h"
#include "config.h"
#include "msgbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- verdicts ------------------------------------------------------------------------ */

const char *hook_stage_name(enum hook_stage st)
{
	static const char *const names[HOOK_NSTAGES] = { "connect", "helo", "mail", "rcpt", "data",
		"eom", "close" };

	return (unsigned)st < HOOK_NSTAGES ? names[st] : "?";
}

void verdict_set(struct verdict *v, enum verdict_action a, int code, const char *reason,
    const char *reply_fmt, ...)
{
	va_list ap;

	memset(v, 0, sizeof(*v));
	v->action = a;
	v->code = code;
	if (reason)
		snprintf(v->reason, sizeof(v->reason), "%s", reason);
	if (reply_fmt) {
		va_start(ap, reply_fmt);
		vsnprintf(v->reply, sizeof(v->reply), reply_fmt, ap);
		va_end(ap);
	}
}

/* ---- env output helpers: every one copies its arguments ---------------------------- */

static char *hook_strdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	if (d == NULL)
		abort();	/* out of memory: nothing sane to do mid-session */
	return d;
}

static void *hook_grow(void *v, size_t n, size_t size)
{
	/* Grows an array by one element; n is the count before the append. */
	void *p = realloc(v, (n + 1) * size);

	if (p == NULL)
		abort();
	return p;
}

void hook_env_add_symbol(struct hook_env *env, const char *name, double score, const char *desc)
{
	struct hook_symbol *s;

	env->symbols = hook_grow(env->symbols, env->nsymbols, sizeof(*env->symbols));
	s = &env->symbols[env->nsymbols++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->score = score;
	s->desc = hook_strdup(desc);
	env->score += score;
}

const struct hook_symbol *hook_env_find_symbol(const struct hook_env *env, const char *name)
{
	for (size_t i = 0; i < env->nsymbols; i++)
		if (strcmp(env->symbols[i].name, name) == 0)
			return &env->symbols[i];
	return NULL;
}

static void hook_env_push_edit(struct hook_env *env, enum hdr_edit_op op, const char *name,
    const char *value, int index)
{
	struct hdr_edit *e;

	env->hdr_edits = hook_grow(env->hdr_edits, env->nhdr_edits, sizeof(*env->hdr_edits));
	e = &env->hdr_edits[env->nhdr_edits++];
	e->op = op;
	e->name = hook_strdup(name);
	e->value = hook_strdup(value);
	e->index = index;
	env->hdr_edit_bytes += (name ? strlen(name) : 0) + (value ? strlen(value) : 0) + 4;
}

void hook_env_add_header(struct hook_env *env, const char *name, const char *value)
{
	hook_env_push_edit(env, HDR_ADD, name, value, 0);
}

void hook_env_insert_header(struct hook_env *env, int index, const char *name, const char *value)
{
	hook_env_push_edit(env, HDR_INSERT, name, value, index);
}

void hook_env_insert_header_delivered(struct hook_env *env, int index, const char *name, const char *value)
{
	hook_env_push_edit(env, HDR_INSERT_DELIVERED, name, value, index);
}

void hook_env_change_header(struct hook_env *env, const char *name, int index, const char *value)
{
	hook_env_push_edit(env, HDR_CHANGE, name, value, index);
}

void hook_env_delete_headers(struct hook_env *env, const char *name)
{
	hook_env_push_edit(env, HDR_DELETE_ALL, name, NULL, 0);
}

void hook_env_delete_headers_prefix(struct hook_env *env, const char *prefix, const char *except)
{
	hook_env_push_edit(env, HDR_DELETE_PREFIX, prefix, except, 0);
}

void hook_env_set_sender(struct hook_env *env, const char *addr)
{
	free(env->new_mail_from);
	env->new_mail_from = hook_strdup(addr);
}

/* limits.max_recipients of env's config; no bound without one (unit tests). */
static size_t hook_env_max_rcpts(const struct hook_env *env)
{
	return env->cfg && env->cfg->limits.max_recipients > 0 ? (size_t)env->cfg->limits.max_recipients
	    : SIZE_MAX / 2;
}

int hook_env_add_rcpt(struct hook_env *env, const char *addr, const char *params)
{
	struct rcpt *r;

	if (env->add_rcpts_over || env->nadd_rcpts >= hook_env_max_rcpts(env)) {
		env->add_rcpts_over = true;
		return -1;
	}
	env->add_rcpts = hook_grow(env->add_rcpts, env->nadd_rcpts, sizeof(*env->add_rcpts));
	r = &env->add_rcpts[env->nadd_rcpts++];
	r->addr = hook_strdup(addr);
	r->params = hook_strdup(params ? params : "");
	r->status = 0;
	return 0;
}

int hook_env_del_rcpt(struct hook_env *env, const char *addr)
{
	if (env->del_rcpts_over || env->ndel_rcpts >= 2 * hook_env_max_rcpts(env)) {
		env->del_rcpts_over = true;
		return -1;
	}
	env->del_rcpts = hook_grow(env->del_rcpts, env->ndel_rcpts, sizeof(*env->del_rcpts));
	env->del_rcpts[env->ndel_rcpts++] = hook_strdup(addr);
	return 0;
}

void hook_env_replace_body(struct hook_env *env, struct msgbuf *body)
{
	msgbuf_free(env->new_body);
	env->new_body = body;
}

/* Releases the per-transaction outputs (header edits, envelope changes, body, txn symbols). */
void hook_env_reset_txn(struct hook_env *env)
{
	/* As a rule no module asked for any change: nothing to free (no call per field) */
	if (env->hdr_edits != NULL) {
		for (size_t i = 0; i < env->nhdr_edits; i++) {
			free(env->hdr_edits[i].name);
			free(env->hdr_edits[i].value);
		}
		free(env->hdr_edits);
		env->hdr_edits = NULL;
	}
	env->nhdr_edits = 0;
	env->hdr_edit_bytes = 0;
	env->hdr_edit_refused = false;
	if (env->new_body != NULL) {
		msgbuf_free(env->new_body);
		env->new_body = NULL;
	}
	if (env->new_mail_from != NULL) {
		free(env->new_mail_from);
		env->new_mail_from = NULL;
	}
	if (env->add_rcpts != NULL) {
		for (size_t i = 0; i < env->nadd_rcpts; i++) {
			free(env->add_rcpts[i].addr);
			free(env->add_rcpts[i].params);
		}
		free(env->add_rcpts);
		env->add_rcpts = NULL;
	}
	env->nadd_rcpts = 0;
	if (env->del_rcpts != NULL) {
		for (size_t i = 0; i < env->ndel_rcpts; i++)
			free(env->del_rcpts[i]);
		free(env->del_rcpts);
		env->del_rcpts = NULL;
	}
	env->ndel_rcpts = 0;
	env->add_rcpts_over = env->del_rcpts_over = false;
	env->quarantine_reason[0] = '\0';
	env->flags = 0;
	env->body_hash_set = false;
	/* Drop the transaction's symbols; keep the session's (connect/helo stage). */
	hook_env_truncate_symbols(env, env->txn_symbols_start);
}

void hook_env_truncate_symbols(struct hook_env *env, size_t n)
{
	if (n >= env->nsymbols)
		return;
	for (size_t i = n; i < env->nsymbols; i++)
		free(env->symbols[i].desc);
	env->nsymbols = n;
	if (env->txn_symbols_start > n)
		env->txn_symbols_start = n;
	/* The score is summed again rather than subtracted, so it cannot drift. */
	env->score = 0;
	for (size_t i = 0; i < env->nsymbols; i++)
		env->score += env->symbols[i].score;
}

/* Releases everything the env owns (the session's strings are the session's). */
void hook_env_free_outputs(struct hook_env *env)
{
	hook_env_reset_txn(env);
	for (size_t i = 0; i < env->nsymbols; i++)
		free(env->symbols[i].desc);
	free(env->symbols);
	env->symbols = NULL;
	env->nsymbols = env->txn_symbols_start = 0;
	env->score = 0;
}
