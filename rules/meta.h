/* meta.h — SpamAssassin meta-rule expressions: boolean and arithmetic over rule hits.
 *
 *   (A && !B) || C        A + B + C >= 2        (__X > 3) * 2
 *
 * Compiled once into a small postfix program over ids the caller resolves names to;
 * evaluated per message against an array of values (hit counts). No I/O; bounded. */
#ifndef MX_META_H
#define MX_META_H

#include <stddef.h>

struct meta_expr;

/* Maps a rule name (len bytes, not NUL-terminated) to an id >= 0, or < 0 to fail. */
typedef int (*meta_resolve_cb)(const char *name, size_t len, void *arg);

/* Compiles text. On success returns 0 and *out (free with meta_free). On a syntax error
 * or a failed resolve returns -1, *out NULL, *errcol the 1-based column and *err a
 * static reason. Expressions are limited to 4096 tokens and 64 levels of nesting. */
int meta_compile(const char *text, meta_resolve_cb resolve_cb, void *arg,
    struct meta_expr **out, int *errcol, const char **err);
void meta_free(struct meta_expr *e);

/* Evaluates with values[id] for each referenced id. Division by zero gives 0. */
double meta_eval(const struct meta_expr *e, const double *values);

/* Evaluates over ranges: each value is known only to lie in [lo[id], hi[id]] (a rule
 * mxgate cannot run is [0, 1]: it may or may not hit in SpamAssassin). Sets the range of
 * the result: Kleene logic for ! && ||, interval arithmetic for the rest, so a result
 * with out_lo == out_hi is the same whatever the unknown values are. With lo == hi for
 * every id the result equals meta_eval(). */
void meta_eval_range(const struct meta_expr *e, const double *lo, const double *hi,
    double *out_lo, double *out_hi);

/* The ids the expression references (possibly repeated); borrowed. */
size_t meta_deps(const struct meta_expr *e, const int **ids);

#endif
