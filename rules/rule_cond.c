/* rule_cond.c — SpamAssassin's `if` expressions in rule files: version, perl_version,
 * can()/has()/plugin(), ! && || and comparisons. See rule_src_int.h. */
#include "rule_src_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- `if` expressions */

/* Evaluates SA's `if` syntax: version >= N, can(X), plugin(X), perl_version, !, &&, ||,
 * parentheses. Unknown terms are false. Returns 1/0, or -1 on a syntax error. */
struct rule_cond { const char *p; struct rule_src *s; int err; int depth; };

static double rule_cond_or(struct rule_cond *c);

static double rule_cond_atom(struct rule_cond *c)
{
	const char *b;
	double v;

	c->p = rule_skip_ws(c->p);
	if (++c->depth > 32) {
		c->err = 1;
		return 0;
	}
	if (*c->p == '!') {
		c->p++;
		v = !rule_cond_atom(c);
		goto out;
	}
	if (*c->p == '(') {
		c->p++;
		v = rule_cond_or(c);
		c->p = rule_skip_ws(c->p);
		if (*c->p != ')')
			c->err = 1;
		else
			c->p++;
		goto out;
	}
	if (isdigit((unsigned char)*c->p)) {
		char *e;

		v = strtod(c->p, &e);
		c->p = e;
		goto out;
	}
	b = c->p;
	while (isalnum((unsigned char)*c->p) || *c->p == '_' || *c->p == ':')
		c->p++;
	if (c->p == b) {
		c->err = 1;
		v = 0;
		goto out;
	}
	if (rule_word_is(b, c->p, "version")) {
		v = 4.000001;   /* the rule syntax of SA 4.0.1, whose stock rules we run */
	} else if (rule_word_is(b, c->p, "perl_version")) {
		v = 5.036;
	} else if (rule_word_is(b, c->p, "can") || rule_word_is(b, c->p, "has") ||
	    rule_word_is(b, c->p, "plugin")) {
		bool is_plugin = rule_word_is(b, c->p, "plugin");
		const char *a;

		c->p = rule_skip_ws(c->p);
		if (*c->p != '(') {
			c->err = 1;
			v = 0;
			goto out;
		}
		a = rule_skip_ws(c->p + 1);
		c->p = a;
		while (*c->p && *c->p != ')')
			c->p++;
		if (*c->p != ')') {
			c->err = 1;
			v = 0;
			goto out;
		}
		{
			const char *e = c->p;

			while (e > a && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			/* plugin(): the loaded set; can()/has(): SA 4.0.1's methods */
			v = is_plugin ? rule_has_plugin(c->s, a, (size_t)(e - a)) :
			    rule_sa_can(c->s, a, (size_t)(e - a));
		}
		c->p++;
	} else {
		v = 0;
	}
out:
	c->depth--;
	return v;
}

static double rule_cond_cmp(struct rule_cond *c)
{
	double a = rule_cond_atom(c), b;
	const char *p;

	p = c->p = rule_skip_ws(c->p);
	if ((p[0] == '>' || p[0] == '<' || p[0] == '=' || p[0] == '!') && p[1] == '=') {
		c->p += 2;
		b = rule_cond_atom(c);
		switch (p[0]) {
		case '>': return a >= b - 1e-9;
		case '<': return a <= b + 1e-9;
		case '=': return a == b;
		default: return a != b;
		}
	}
	if (p[0] == '>' || p[0] == '<') {
		c->p++;
		b = rule_cond_atom(c);
		return p[0] == '>' ? a > b : a < b;
	}
	return a;
}

static double rule_cond_and(struct rule_cond *c)
{
	double v = rule_cond_cmp(c);

	for (;;) {
		c->p = rule_skip_ws(c->p);
		if (c->p[0] != '&' || c->p[1] != '&' || c->err)
			return v;
		c->p += 2;
		v = rule_cond_cmp(c) && v;
	}
}

static double rule_cond_or(struct rule_cond *c)
{
	double v = rule_cond_and(c);

	for (;;) {
		c->p = rule_skip_ws(c->p);
		if (c->p[0] != '|' || c->p[1] != '|' || c->err)
			return v;
		c->p += 2;
		v = rule_cond_and(c) || v;
	}
}

int rule_cond_eval(struct rule_src *s, const char *text)
{
	struct rule_cond c = { .p = text, .s = s };
	double v = rule_cond_or(&c);

	if (*rule_skip_ws(c.p) != '\0')
		c.err = 1;
	return c.err ? -1 : v != 0;
}
