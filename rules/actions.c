/* actions.c — score to verdict, and the X-Spam-* header values; see actions.h. */
#include "actions.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int actions_rank(enum rule_action a)
{
	switch (a) {
	case RULE_ACT_REJECT: return 5;
	case RULE_ACT_TEMPFAIL: return 4;
	case RULE_ACT_QUARANTINE: return 3;
	case RULE_ACT_DISCARD: return 2;
	case RULE_ACT_ACCEPT: return 1;
	default: return 0;
	}
}

const char *actions_decide(const struct actions_thresholds *t, double score,
    enum rule_action immediate, const char *immediate_rule, struct verdict *v)
{
	const char *rule = immediate_rule ? immediate_rule : "";

	score = round(score * 1000) / 1000;     /* SA decides on the score to 3 decimals */
	verdict_set(v, VERDICT_CONTINUE, 0, NULL, NULL);
	switch (immediate) {
	case RULE_ACT_REJECT:
		verdict_set(v, VERDICT_REJECT, 550, "rules", "5.7.1 message rejected (%s)", rule);
		return "reject";
	case RULE_ACT_TEMPFAIL:
		verdict_set(v, VERDICT_TEMPFAIL, 451, "rules",
		    "4.7.1 message deferred (%s), try again later", rule);
		return "tempfail";
	case RULE_ACT_QUARANTINE:
		verdict_set(v, VERDICT_QUARANTINE, 0, "rules", NULL);
		return "quarantine";
	case RULE_ACT_DISCARD:
		verdict_set(v, VERDICT_DISCARD, 0, "rules", NULL);
		return "discard";
	case RULE_ACT_ACCEPT:
		/* an allow-list rule: deliver whatever the score */
		return "accept";
	default:
		break;
	}
	if (t->reject > 0 && score >= t->reject) {
		verdict_set(v, VERDICT_REJECT, 550, "spam", "5.7.1 spam message rejected");
		return "reject";
	}
	if (t->tempfail > 0 && score >= t->tempfail) {
		verdict_set(v, VERDICT_TEMPFAIL, 451, "spam",
		    "4.7.1 message looks like spam, try again later");
		return "tempfail";
	}
	if (t->add_header > 0 && score >= t->add_header)
		return "add_header";
	return "none";
}

void actions_format_score(char *buf, size_t len, double score)
{
	/* SA prints with %2.1f; avoid "-0.0" */
	double r = round(score * 10) / 10;

	if (r == 0)
		r = 0;
	snprintf(buf, len, "%.1f", r);
}

/* Appends items with a separator, folding with "\n\t" when the line passes 78 columns. */
static size_t actions_fold_list(char *buf, size_t len, size_t o, size_t col,
    const char *const *items, size_t n, const char *sep)
{
	for (size_t i = 0; i < n && o + 1 < len; i++) {
		size_t il = strlen(items[i]) + (i + 1 < n ? strlen(sep) : 0);
		int w;

		if (i > 0 && col + il > 78) {
			while (o > 0 && buf[o - 1] == ' ')
				o--;	/* no white space at the end of a folded line */
			w = snprintf(buf + o, len - o, "\n\t");
			if (w < 0 || (size_t)w >= len - o)
				break;
			o += (size_t)w;
			col = 8;
		}
		w = snprintf(buf + o, len - o, "%s%s", items[i], i + 1 < n ? sep : "");
		if (w < 0 || (size_t)w >= len - o) {
			o = len - 1;
			break;
		}
		o += (size_t)w;
		col += (size_t)w;
	}
	return o;
}

size_t actions_format_status(char *buf, size_t len, double score, double required,
    const char *const *tests, size_t ntests)
{
	char s[32], r[32];
	int w;
	/* SA: the score rounded to 3 decimals decides; the shown one (2.1f) never contradicts
	 * the verdict (get_tag_value_for_score) */
	double s3 = round(score * 1000) / 1000, shown;
	bool spam = s3 >= required;

	if (len == 0)
		return 0;
	actions_format_score(s, sizeof(s), s3);
	snprintf(r, sizeof(r), "%.1f", required);
	shown = strtod(s, NULL);
	if (spam && shown < strtod(r, NULL))
		snprintf(s, sizeof(s), "%s", r);
	else if (!spam && shown >= strtod(r, NULL))
		snprintf(s, sizeof(s), "%.1f", strtod(r, NULL) - 0.1);
	w = snprintf(buf, len, "%s, score=%s required=%s tests=", spam ? "Yes" : "No", s, r);
	if (w < 0 || (size_t)w >= len)
		return len - 1;
	if (ntests == 0) {
		int x = snprintf(buf + w, len - (size_t)w, "none");

		return (size_t)w + (x > 0 && (size_t)x < len - (size_t)w ? (size_t)x : 0);
	}
	/* "X-Spam-Status: " is 15 columns */
	return actions_fold_list(buf, len, (size_t)w, 15 + (size_t)w, tests, ntests, ",");
}

size_t actions_format_symbols(char *buf, size_t len, const char *const *names,
    const double *scores, size_t n)
{
	char items[64][HOOK_SYMBOL_NAME_MAX + 32];
	const char *ptrs[64];
	size_t o = 0;

	if (len == 0)
		return 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i += 64) {
		size_t k = n - i < 64 ? n - i : 64;

		for (size_t j = 0; j < k; j++) {
			snprintf(items[j], sizeof(items[j]), "%s=%.3f", names[i + j], scores[i + j]);
			ptrs[j] = items[j];
		}
		if (i > 0 && o + 3 < len) {
			memcpy(buf + o, ",\n\t", 3);
			o += 3;
			buf[o] = '\0';
		}
		o = actions_fold_list(buf, len, o, i ? 8 : 16, ptrs, k, ", ");
	}
	return o;
}
