/* arc.h — ARC chain validation (RFC 8617 5.2) on top of the DKIM verifier (dkim.h).
 *
 * Two steps around the key lookups, like DKIM:
 *   arc_chain_plan(): collects the ARC sets of the message and checks the chain's form
 *     (steps 1-4: contiguous instances 1..N, one AAR/AMS/AS each, cv= none at 1 and pass
 *     above, the newest cv not fail); the result is then known (none / fail) or the chain
 *     needs the keys of its signatures (arc_chain_sig);
 *   arc_chain_finish(): verifies AMS(N) (fail if it does not pass), the older AMS for
 *     oldest-pass, and every seal from N down to 1.
 * Pure: no I/O; the caller resolves the keys. */
#ifndef MX_ARC_H
#define MX_ARC_H

#include <stdbool.h>
#include <stddef.h>

#include "filters/dkim.h"

#define ARC_MAX_INSTANCES 50   /* RFC 8617 4.2.1 */

enum arc_result { ARC_RESULT_NONE = 0, ARC_RESULT_PASS, ARC_RESULT_FAIL };
const char *arc_result_name(enum arc_result r);

struct arc_chain {
	enum arc_result result;
	bool decided;              /* result known without keys (none / structural fail) */
	const char *reason;        /* static, for comments and logs */
	unsigned n;                /* instances */
	unsigned oldest_pass;      /* RFC 8617 5.2 step 6: 0 = every AMS passed */
	struct dkim_sig *as[ARC_MAX_INSTANCES + 1], *ams[ARC_MAX_INSTANCES + 1];
	size_t aar[ARC_MAX_INSTANCES + 1];     /* field index of ARC-Authentication-Results */
	char sealer[254];          /* d= of the newest seal (the last hop that sealed) */
};

/* Reads "i=N;" at the start of an ARC-Authentication-Results value; N or 0. */
unsigned arc_aar_instance(const char *value, size_t len);

void arc_chain_plan(struct dkim_msg *m, struct arc_chain *c);

/* The signatures whose keys the chain needs (after plan, when !decided): 2 * n of them. */
size_t arc_chain_nsigs(const struct arc_chain *c);
struct dkim_sig *arc_chain_sig(const struct arc_chain *c, size_t i);

/* key_for returns the key for a signature (NULL = none answered: temperror). The body
 * must have ended (dkim_msg_end_body). */
void arc_chain_finish(struct dkim_msg *m, struct arc_chain *c,
    const struct dkim_key *(*key_for)(void *arg, const struct dkim_sig *sig), void *arg,
    long long now);

#endif
