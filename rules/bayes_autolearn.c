/* bayes_autolearn.c — when a scanned message teaches the classifier: SpamAssassin's
 * autolearn points (PerMsgStatus::_get_autolearn_points, 4.0) over a scan's hits and its
 * decision (Plugin/AutoLearnThreshold.pm). See bayes.h and docs/classifier.md. */
#include "rules_int.h"

#include "bayes.h"
#include "meta.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* SA's _get_autolearn_testtype: 'h' header (and header evals; mxgate's envelope rules are
 * read as headers), 'b' body, rawbody, uri; 'm' meta; 0 the rest (full, mimeheader,
 * symbols of other modules). */
static char al_type(const struct rules_rule *x)
{
	switch (x->kind) {
	case RULE_HEADER: case RULE_ENVELOPE: return 'h';
	case RULE_BODY: case RULE_RAWBODY: case RULE_URI: return 'b';
	case RULE_META: return 'm';
	default: return 0;
	}
}

/* SA rounds the meta shares and the total to 3 decimals (sprintf "%0.3f") */
static double al_round3(double v) { return round(v * 1000) / 1000; }

void bayes_autolearn_points(const struct rules_set *rs, const struct rules_hit *v, size_t n,
    struct bayes_autolearn_points *p)
{
	for (size_t i = 0; i < n; i++) {
		const struct rules_rule *x = v[i].rule;
		double s;
		char ty;

		if (x == NULL)
			continue;
		if (x->tflags & (RULE_TF_NOAUTOLEARN | RULE_TF_USERCONF))
			continue;
		if ((x->tflags & RULE_TF_LEARN) || v[i].classifier) {
			p->learned += v[i].score;          /* the score set in use */
			p->said_spam |= strcmp(x->name, "BAYES_99") == 0;
			p->said_ham |= strcmp(x->name, "BAYES_00") == 0;
			continue;
		}
		if (x->tflags & RULE_TF_AL_FORCE) {
			size_t o = strlen(p->force_names), l = strlen(x->name);

			p->force = true;
			if (o + l + 2 <= sizeof(p->force_names))
				snprintf(p->force_names + o, sizeof(p->force_names) - o, "%s%s",
				    o ? "," : "", x->name);
		}
		s = x->score * v[i].count;             /* score set 0 (SA: scoreset & ~2) */
		if (s == 0)
			continue;
		ty = al_type(x);
		if ((x->tflags & RULE_TF_AL_HEADER) || (!(x->tflags & RULE_TF_AL_BODY) && ty == 'h')) {
			p->head += s;
		} else if ((x->tflags & RULE_TF_AL_BODY) || ty == 'b') {
			p->body += s;
		} else if (ty == 'm' && x->meta) {
			/* split by the types of the rules it names, each occurrence counted */
			const int *ids;
			size_t nd = meta_deps(x->meta, &ids), dh = 0, db = 0;

			for (size_t k = 0; k < nd; k++) {
				char dt = ids[k] >= 0 && (size_t)ids[k] < rs->n ? al_type(&rs->r[ids[k]]) : 0;

				dh += dt == 'h';
				db += dt == 'b';
			}
			if (dh + db) {
				p->head += al_round3(s * (double)dh / (double)(dh + db));
				p->body += al_round3(s * (double)db / (double)(dh + db));
			}
		}
		p->total += s;
	}
	p->total = al_round3(p->total);
}

int bayes_autolearn_decide(const struct bayes_config *c, const struct bayes_autolearn_points *p,
    bool is_spam)
{
	if (!c->enabled || !c->autolearn)
		return -1;
	if (p->total < c->autolearn_ham)
		return p->learned <= 1.0 && !is_spam && !(c->autolearn_on_error && p->said_ham) ?
		    0 : -1;
	if (p->total < c->autolearn_spam)
		return -1;
	if (!p->force && (p->body < 3.0 || p->head < 3.0))
		return -1;
	return p->learned >= -1.0 && is_spam && !(c->autolearn_on_error && p->said_spam) ? 1 : -1;
}
