/* meta.c — meta-rule expressions compiled to a postfix program; see meta.h.
 * Precedence follows Perl: unary ! and -, then * /, + -, < > <= >=, == !=, &&, ||. */
#include "meta.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define META_MAX_TOKENS 4096
#define META_MAX_DEPTH  64

enum meta_op {
	OP_PUSH_ID = 0, OP_PUSH_NUM, OP_NOT, OP_NEG, OP_MUL, OP_DIV, OP_ADD, OP_SUB,
	OP_LT, OP_GT, OP_LE, OP_GE, OP_EQ, OP_NE, OP_AND, OP_OR,
};

struct meta_insn { enum meta_op op; int id; double num; };

struct meta_expr {
	struct meta_insn *code; size_t n, cap;
	int *deps; size_t ndeps;
	size_t max_stack;
};

struct meta_parser {
	const char *text, *p;
	meta_resolve_cb resolve;
	void *arg;
	struct meta_expr *e;
	const char *err;
	const char *errp;
	int depth;
	size_t ntok;
};

static int meta_emit(struct meta_parser *mp, enum meta_op op, int id, double num)
{
	struct meta_expr *e = mp->e;

	if (e->n >= META_MAX_TOKENS) {
		mp->err = "expression too long";
		mp->errp = mp->p;
		return -1;
	}
	if (e->n == e->cap) {
		size_t nc = e->cap ? e->cap * 2 : 16;
		struct meta_insn *c = realloc(e->code, nc * sizeof(*c));

		if (c == NULL)
			abort();
		e->code = c;
		e->cap = nc;
	}
	e->code[e->n].op = op;
	e->code[e->n].id = id;
	e->code[e->n].num = num;
	e->n++;
	return 0;
}

static void meta_ws(struct meta_parser *mp)
{
	while (*mp->p == ' ' || *mp->p == '\t')
		mp->p++;
}

static int meta_fail(struct meta_parser *mp, const char *why)
{
	if (mp->err == NULL) {
		mp->err = why;
		mp->errp = mp->p;
	}
	return -1;
}

static int meta_or(struct meta_parser *mp);

static int meta_unary(struct meta_parser *mp)
{
	int rc;

	meta_ws(mp);
	if (++mp->depth > META_MAX_DEPTH)
		return meta_fail(mp, "expression nested too deep");
	if (*mp->p == '!' && mp->p[1] != '=') {
		mp->p++;
		rc = meta_unary(mp);
		if (rc == 0)
			rc = meta_emit(mp, OP_NOT, 0, 0);
	} else if (*mp->p == '-') {
		mp->p++;
		rc = meta_unary(mp);
		if (rc == 0)
			rc = meta_emit(mp, OP_NEG, 0, 0);
	} else if (*mp->p == '(') {
		mp->p++;
		rc = meta_or(mp);
		meta_ws(mp);
		if (rc == 0 && *mp->p != ')')
			rc = meta_fail(mp, "missing )");
		else if (rc == 0)
			mp->p++;
	} else if (isdigit((unsigned char)*mp->p) || (*mp->p == '.' &&
	    isdigit((unsigned char)mp->p[1]))) {
		char *end;
		double v = strtod(mp->p, &end);

		mp->p = end;
		rc = meta_emit(mp, OP_PUSH_NUM, 0, v);
	} else if (isalpha((unsigned char)*mp->p) || *mp->p == '_') {
		const char *b = mp->p;
		int id;

		while (isalnum((unsigned char)*mp->p) || *mp->p == '_')
			mp->p++;
		id = mp->resolve(b, (size_t)(mp->p - b), mp->arg);
		if (id < 0) {
			mp->p = b;
			rc = meta_fail(mp, "unknown rule name");
		} else {
			rc = meta_emit(mp, OP_PUSH_ID, id, 0);
			if (rc == 0) {
				int *d = realloc(mp->e->deps, (mp->e->ndeps + 1) * sizeof(int));

				if (d == NULL)
					abort();
				mp->e->deps = d;
				d[mp->e->ndeps++] = id;
			}
		}
	} else {
		rc = meta_fail(mp, *mp->p ? "unexpected character" : "unexpected end");
	}
	mp->depth--;
	return rc;
}

static int meta_mul(struct meta_parser *mp)
{
	if (meta_unary(mp) < 0)
		return -1;
	for (;;) {
		enum meta_op op;

		meta_ws(mp);
		if (*mp->p == '*')
			op = OP_MUL;
		else if (*mp->p == '/')
			op = OP_DIV;
		else
			return 0;
		mp->p++;
		if (meta_unary(mp) < 0 || meta_emit(mp, op, 0, 0) < 0)
			return -1;
	}
}

static int meta_add(struct meta_parser *mp)
{
	if (meta_mul(mp) < 0)
		return -1;
	for (;;) {
		enum meta_op op;

		meta_ws(mp);
		if (*mp->p == '+')
			op = OP_ADD;
		else if (*mp->p == '-')
			op = OP_SUB;
		else
			return 0;
		mp->p++;
		if (meta_mul(mp) < 0 || meta_emit(mp, op, 0, 0) < 0)
			return -1;
	}
}

static int meta_rel(struct meta_parser *mp)
{
	if (meta_add(mp) < 0)
		return -1;
	for (;;) {
		enum meta_op op;
		const char *p;

		meta_ws(mp);
		p = mp->p;
		if (p[0] == '<' && p[1] == '=')
			op = OP_LE;
		else if (p[0] == '>' && p[1] == '=')
			op = OP_GE;
		else if (p[0] == '<')
			op = OP_LT;
		else if (p[0] == '>')
			op = OP_GT;
		else
			return 0;
		mp->p += (op == OP_LE || op == OP_GE) ? 2 : 1;
		if (meta_add(mp) < 0 || meta_emit(mp, op, 0, 0) < 0)
			return -1;
	}
}

static int meta_eq(struct meta_parser *mp)
{
	if (meta_rel(mp) < 0)
		return -1;
	for (;;) {
		enum meta_op op;

		meta_ws(mp);
		if (mp->p[0] == '=' && mp->p[1] == '=')
			op = OP_EQ;
		else if (mp->p[0] == '!' && mp->p[1] == '=')
			op = OP_NE;
		else
			return 0;
		mp->p += 2;
		if (meta_rel(mp) < 0 || meta_emit(mp, op, 0, 0) < 0)
			return -1;
	}
}

static int meta_and(struct meta_parser *mp)
{
	if (meta_eq(mp) < 0)
		return -1;
	for (;;) {
		meta_ws(mp);
		if (mp->p[0] != '&' || mp->p[1] != '&')
			return 0;
		mp->p += 2;
		if (meta_eq(mp) < 0 || meta_emit(mp, OP_AND, 0, 0) < 0)
			return -1;
	}
}

static int meta_or(struct meta_parser *mp)
{
	if (meta_and(mp) < 0)
		return -1;
	for (;;) {
		meta_ws(mp);
		if (mp->p[0] != '|' || mp->p[1] != '|')
			return 0;
		mp->p += 2;
		if (meta_and(mp) < 0 || meta_emit(mp, OP_OR, 0, 0) < 0)
			return -1;
	}
}

/* Compiles text; see meta.h. */
int meta_compile(const char *text, meta_resolve_cb resolve_cb, void *arg,
    struct meta_expr **out, int *errcol, const char **err)
{
	struct meta_parser mp = { .text = text, .p = text, .resolve = resolve_cb, .arg = arg };
	size_t sp = 0;

	*out = NULL;
	mp.e = calloc(1, sizeof(*mp.e));
	if (mp.e == NULL)
		abort();
	if (meta_or(&mp) < 0)
		goto fail;
	meta_ws(&mp);
	if (*mp.p != '\0') {
		meta_fail(&mp, "unexpected text after expression");
		goto fail;
	}
	/* stack depth for eval */
	for (size_t i = 0; i < mp.e->n; i++) {
		enum meta_op op = mp.e->code[i].op;

		if (op == OP_PUSH_ID || op == OP_PUSH_NUM)
			sp++;
		else if (op != OP_NOT && op != OP_NEG)
			sp--;
		if (sp > mp.e->max_stack)
			mp.e->max_stack = sp;
	}
	*out = mp.e;
	return 0;
fail:
	*errcol = (int)(mp.errp - text) + 1;
	*err = mp.err;
	meta_free(mp.e);
	return -1;
}

void meta_free(struct meta_expr *e)
{
	if (e == NULL)
		return;
	free(e->code);
	free(e->deps);
	free(e);
}

double meta_eval(const struct meta_expr *e, const double *values)
{
	double stack[META_MAX_TOKENS > 256 ? 256 : META_MAX_TOKENS], *heap = NULL, *st = stack;
	size_t sp = 0;
	double r;

	if (e->max_stack > 256) {
		heap = malloc(e->max_stack * sizeof(double));
		if (heap == NULL)
			abort();
		st = heap;
	}
	for (size_t i = 0; i < e->n; i++) {
		const struct meta_insn *in = &e->code[i];
		double a, b;

		switch (in->op) {
		case OP_PUSH_ID: st[sp++] = values[in->id]; continue;
		case OP_PUSH_NUM: st[sp++] = in->num; continue;
		case OP_NOT: st[sp - 1] = st[sp - 1] == 0; continue;
		case OP_NEG: st[sp - 1] = -st[sp - 1]; continue;
		default: break;
		}
		b = st[--sp];
		a = st[sp - 1];
		switch (in->op) {
		case OP_MUL: a = a * b; break;
		case OP_DIV: a = b == 0 ? 0 : a / b; break;
		case OP_ADD: a = a + b; break;
		case OP_SUB: a = a - b; break;
		case OP_LT: a = a < b; break;
		case OP_GT: a = a > b; break;
		case OP_LE: a = a <= b; break;
		case OP_GE: a = a >= b; break;
		case OP_EQ: a = a == b; break;
		case OP_NE: a = a != b; break;
		/* Perl's && and || yield an operand's value; as a truth value this is the same */
		case OP_AND: a = (a != 0) ? b : a; break;
		case OP_OR: a = (a != 0) ? a : b; break;
		default: break;
		}
		st[sp - 1] = a;
	}
	r = sp ? st[0] : 0;
	free(heap);
	return r;
}

/* ---------------------------------------------------------------- interval evaluation */

struct meta_iv { double lo, hi; };

static inline struct meta_iv meta_iv(double lo, double hi)
{
	struct meta_iv r = { lo, hi };

	return r;
}

static inline bool meta_iv_has_zero(struct meta_iv a) { return a.lo <= 0 && a.hi >= 0; }
static inline bool meta_iv_is_zero(struct meta_iv a) { return a.lo == 0 && a.hi == 0; }

static struct meta_iv meta_iv_hull(struct meta_iv a, struct meta_iv b)
{
	return meta_iv(a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi);
}

/* The hull of the four corner values (products or quotients). */
static struct meta_iv meta_iv_corners(double p, double q, double r, double s)
{
	struct meta_iv v = meta_iv(p, p);

	v = meta_iv_hull(v, meta_iv(q, q));
	v = meta_iv_hull(v, meta_iv(r, r));
	return meta_iv_hull(v, meta_iv(s, s));
}

/* A truth value: 1 (certainly true), 0 (certainly false) or [0,1]. */
static struct meta_iv meta_iv_truth(bool can_true, bool can_false)
{
	return meta_iv(can_false ? 0 : 1, can_true ? 1 : 0);
}

/* The values other than 0 of a range that holds 0: a value is a hit count, a truth value
 * or arithmetic over them, never this close to 0 but 0, so (0, hi] is [META_IV_TINY, hi]
 * (and the mirror); a range on both sides of 0 stays as it is. */
#define META_IV_TINY 1e-9

static struct meta_iv meta_iv_nonzero(struct meta_iv a)
{
	if (a.lo >= 0)
		return meta_iv(a.hi < META_IV_TINY ? a.hi : META_IV_TINY, a.hi);
	if (a.hi <= 0)
		return meta_iv(a.lo, a.lo > -META_IV_TINY ? a.lo : -META_IV_TINY);
	return a;
}

static struct meta_iv meta_iv_binop(enum meta_op op, struct meta_iv a, struct meta_iv b)
{
	const double big = 1e12;

	switch (op) {
	case OP_MUL:
		return meta_iv_corners(a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi);
	case OP_DIV:
		if (meta_iv_is_zero(b))
			return meta_iv(0, 0);                  /* as meta_eval: x / 0 = 0 */
		if (meta_iv_has_zero(b))
			return meta_iv(-big, big);
		return meta_iv_corners(a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi);
	case OP_ADD: return meta_iv(a.lo + b.lo, a.hi + b.hi);
	case OP_SUB: return meta_iv(a.lo - b.hi, a.hi - b.lo);
	case OP_LT: return meta_iv_truth(a.lo < b.hi, a.hi >= b.lo);
	case OP_GT: return meta_iv_truth(a.hi > b.lo, a.lo <= b.hi);
	case OP_LE: return meta_iv_truth(a.lo <= b.hi, a.hi > b.lo);
	case OP_GE: return meta_iv_truth(a.hi >= b.lo, a.lo < b.hi);
	case OP_EQ:
	case OP_NE: {
		bool can_eq = !(a.hi < b.lo || b.hi < a.lo);
		bool can_ne = !(a.lo == a.hi && b.lo == b.hi && a.lo == b.lo);

		return op == OP_EQ ? meta_iv_truth(can_eq, can_ne) : meta_iv_truth(can_ne, can_eq);
	}
	/* Perl: A && B is B when A is true, else A (0); A || B is A when true, else B */
	case OP_AND:
		if (!meta_iv_has_zero(a))
			return b;
		if (meta_iv_is_zero(a))
			return a;
		return meta_iv_hull(meta_iv(0, 0), b);
	case OP_OR:
		if (!meta_iv_has_zero(a))
			return a;
		if (meta_iv_is_zero(a))
			return b;
		/* A when A is not 0, else B: `UNKNOWN || TRUE` is true whatever UNKNOWN is */
		return meta_iv_hull(meta_iv_nonzero(a), b);
	default:
		return meta_iv(-big, big);
	}
}

void meta_eval_range(const struct meta_expr *e, const double *lo, const double *hi,
    double *out_lo, double *out_hi)
{
	struct meta_iv stack[256], *heap = NULL, *st = stack, r;
	size_t sp = 0;

	if (e->max_stack > 256) {
		heap = malloc(e->max_stack * sizeof(*heap));
		if (heap == NULL)
			abort();
		st = heap;
	}
	for (size_t i = 0; i < e->n; i++) {
		const struct meta_insn *in = &e->code[i];
		struct meta_iv a, b;

		switch (in->op) {
		case OP_PUSH_ID: st[sp++] = meta_iv(lo[in->id], hi[in->id]); continue;
		case OP_PUSH_NUM: st[sp++] = meta_iv(in->num, in->num); continue;
		case OP_NOT:
			a = st[sp - 1];
			st[sp - 1] = meta_iv_truth(meta_iv_has_zero(a), !meta_iv_is_zero(a));
			continue;
		case OP_NEG:
			a = st[sp - 1];
			st[sp - 1] = meta_iv(-a.hi, -a.lo);
			continue;
		default:
			break;
		}
		b = st[--sp];
		a = st[sp - 1];
		st[sp - 1] = meta_iv_binop(in->op, a, b);
	}
	r = sp ? st[0] : meta_iv(0, 0);
	free(heap);
	*out_lo = r.lo;
	*out_hi = r.hi;
}

size_t meta_deps(const struct meta_expr *e, const int **ids)
{
	*ids = e->deps;
	return e->ndeps;
}
