/* arc.c — RFC 8617 5.2 chain validation. */
#include "filters/arc.h"

#include <stdio.h>
#include <string.h>

const char *arc_result_name(enum arc_result r)
{
	switch (r) {
	case ARC_RESULT_NONE: return "none";
	case ARC_RESULT_PASS: return "pass";
	case ARC_RESULT_FAIL: return "fail";
	}
	return "none";
}

unsigned arc_aar_instance(const char *v, size_t len)
{
	size_t i = 0;
	unsigned n = 0, digits = 0;

	while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
		i++;
	if (i >= len || v[i] != 'i')
		return 0;
	i++;
	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	if (i >= len || v[i] != '=')
		return 0;
	i++;
	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	while (i < len && v[i] >= '0' && v[i] <= '9' && digits < 3) {
		n = n * 10 + (unsigned)(v[i] - '0');
		i++;
		digits++;
	}
	while (i < len && (v[i] == ' ' || v[i] == '\t'))
		i++;
	if (digits == 0 || i >= len || v[i] != ';' || n > ARC_MAX_INSTANCES)
		return 0;
	return n;
}

static void chain_decide(struct arc_chain *c, enum arc_result r, const char *reason)
{
	c->result = r;
	c->reason = reason;
	c->decided = true;
}

void arc_chain_plan(struct dkim_msg *m, struct arc_chain *c)
{
	size_t nf = dkim_msg_nfields(m), nsigs = dkim_msg_nsigs(m);
	size_t n_as = 0, n_ams = 0, n_aar = 0;
	unsigned maxi = 0;
	bool seen_aar[ARC_MAX_INSTANCES + 1] = { false };

	memset(c, 0, sizeof(*c));
	/* step 1: every ARC field of the message */
	for (size_t i = 0; i < nf; i++) {
		if (dkim_msg_field_is(m, i, "ARC-Seal"))
			n_as++;
		else if (dkim_msg_field_is(m, i, "ARC-Message-Signature"))
			n_ams++;
		else if (dkim_msg_field_is(m, i, "ARC-Authentication-Results")) {
			const char *name, *value;
			size_t nl, vl;
			unsigned inst;

			n_aar++;
			dkim_msg_field(m, i, &name, &nl, &value, &vl);
			inst = arc_aar_instance(value, vl);
			if (inst == 0) {
				chain_decide(c, ARC_RESULT_FAIL, "ARC-Authentication-Results without i=");
				return;
			}
			if (seen_aar[inst]) {
				chain_decide(c, ARC_RESULT_FAIL, "duplicate ARC instance");
				return;
			}
			seen_aar[inst] = true;
			c->aar[inst] = i;
			if (inst > maxi)
				maxi = inst;
		}
	}
	if (n_as + n_ams + n_aar == 0) {
		chain_decide(c, ARC_RESULT_NONE, NULL);
		return;
	}
	if (dkim_msg_headers_truncated(m)) {
		chain_decide(c, ARC_RESULT_FAIL, "too many header fields");
		return;
	}
	if (n_as != n_ams || n_as != n_aar || maxi != n_as) {
		chain_decide(c, ARC_RESULT_FAIL, "incomplete ARC sets");
		return;
	}
	{
		size_t collected = 0;

		for (size_t i = 0; i < nsigs; i++)
			if (dkim_msg_sig(m, i)->kind != DKIM_SIG_DKIM)
				collected++;
		if (collected != n_as + n_ams) {
			chain_decide(c, ARC_RESULT_FAIL, "ARC chain longer than the limit");
			return;
		}
	}
	/* step 2: one AMS and one AS per instance 1..N */
	for (size_t i = 0; i < nsigs; i++) {
		struct dkim_sig *s = dkim_msg_sig(m, i);
		struct dkim_sig **slot;

		if (s->kind == DKIM_SIG_DKIM)
			continue;
		if (s->instance == 0 || s->instance > maxi) {
			chain_decide(c, ARC_RESULT_FAIL, "ARC instance out of range");
			return;
		}
		slot = s->kind == DKIM_SIG_ARC_SEAL ? &c->as[s->instance] : &c->ams[s->instance];
		if (*slot != NULL) {
			chain_decide(c, ARC_RESULT_FAIL, "duplicate ARC instance");
			return;
		}
		*slot = s;
	}
	c->n = maxi;
	for (unsigned i = 1; i <= c->n; i++)
		if (c->as[i] == NULL || c->ams[i] == NULL || !seen_aar[i]) {
			chain_decide(c, ARC_RESULT_FAIL, "incomplete ARC sets");
			return;
		}
	snprintf(c->sealer, sizeof(c->sealer), "%s", c->as[c->n]->d);
	/* step 3: the newest seal says the chain already failed */
	if (c->as[c->n]->cv == DKIM_CV_FAIL) {
		chain_decide(c, ARC_RESULT_FAIL, "newest seal has cv=fail");
		return;
	}
	/* step 4: cv=none at instance 1, cv=pass above */
	for (unsigned i = 1; i <= c->n; i++)
		if (c->as[i]->cv != (i == 1 ? DKIM_CV_NONE : DKIM_CV_PASS)) {
			chain_decide(c, ARC_RESULT_FAIL, "ARC seal cv= out of order");
			return;
		}
}

size_t arc_chain_nsigs(const struct arc_chain *c)
{
	return c->decided ? 0 : 2 * (size_t)c->n;
}

struct dkim_sig *arc_chain_sig(const struct arc_chain *c, size_t i)
{
	unsigned inst = (unsigned)(i / 2) + 1;

	if (c->decided || inst > c->n)
		return NULL;
	return i % 2 == 0 ? c->ams[inst] : c->as[inst];
}

void arc_chain_finish(struct dkim_msg *m, struct arc_chain *c,
    const struct dkim_key *(*key_for)(void *arg, const struct dkim_sig *sig), void *arg,
    long long now)
{
	size_t fields[3 * ARC_MAX_INSTANCES];

	if (c->decided)
		return;
	/* step 5: the newest AMS must verify */
	if (dkim_msg_verify(m, c->ams[c->n], key_for(arg, c->ams[c->n]), now) != DKIM_RESULT_PASS) {
		chain_decide(c, ARC_RESULT_FAIL, "newest ARC-Message-Signature did not verify");
		return;
	}
	/* step 6: oldest-pass, walking down from N-1 */
	c->oldest_pass = 0;
	for (unsigned i = c->n - 1; i >= 1; i--)
		if (dkim_msg_verify(m, c->ams[i], key_for(arg, c->ams[i]), now) != DKIM_RESULT_PASS) {
			c->oldest_pass = i + 1;
			break;
		}
	/* step 7: every seal, N down to 1, over the sets 1..i */
	for (unsigned i = c->n; i >= 1; i--) {
		size_t nfields = 0;

		for (unsigned k = 1; k <= i; k++) {
			fields[nfields++] = c->aar[k];
			fields[nfields++] = c->ams[k]->field;
			if (k < i)
				fields[nfields++] = c->as[k]->field;
		}
		if (dkim_msg_verify_seal(m, c->as[i], key_for(arg, c->as[i]), fields, nfields, now) !=
		    DKIM_RESULT_PASS) {
			chain_decide(c, ARC_RESULT_FAIL, "ARC-Seal did not verify");
			return;
		}
	}
	chain_decide(c, ARC_RESULT_PASS, NULL);
}
