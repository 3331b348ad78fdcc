/* fuzz_ratelimit.c — peer- and operator-controlled text through the ratelimit, greylist and
 * reputation pieces: limit strings, store specs and Redis URLs, addresses and CIDRs
 * (proxy/netaddr.c), key values built from a HELO / sender /
 * recipient (bytes up to the first NUL of each third of the input), triplets, and the GCRA
 * math with arbitrary state. Nothing may crash, overflow or hang. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "filters/gcra.h"
#include "filters/greylist.h"
#include "filters/ratelimit.h"
#include "filters/reputation.h"
#include "proxy/hook.h"
#include "proxy/netaddr.h"
#include "store/redis.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), host[256], pw[128], out[600];
	struct ratelimit_limit lim;
	struct hook_env env;
	struct sockaddr_in6 *s6;
	size_t third = size / 3;
	int port, db;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	ratelimit_limit_parse(text, true, &lim);
	redis_store_parse_url(text, host, sizeof(host), &port, &db, pw, sizeof(pw));
	store_kind_of(text);
	{
		struct netaddr na;
		int plen;

		if (netaddr_parse_cidr(text, &na, &plen) == 0 || netaddr_from_string(text, &na) == 0)
			netaddr_to_string(&na, out, sizeof(out));
	}

	memset(&env, 0, sizeof(env));
	s6 = (struct sockaddr_in6 *)&env.client;
	s6->sin6_family = AF_INET6;
	if (size >= 16)
		memcpy(&s6->sin6_addr, data, 16);
	char *helo = text, *from = text + third, *rcpt = text + 2 * third;
	snprintf(env.helo, sizeof(env.helo), "%s", helo);
	env.mail_from = from;
	env.cur_rcpt = rcpt;
	for (int k = 0; k <= RATELIMIT_KEY_RECIPIENT; k++) {
		struct ratelimit_rule_config r = { .key = k, .prefix_v4 = size % 40, .prefix_v6 = size % 140 };

		ratelimit_key_value(&r, &env, NULL, out, sizeof(out));
	}
	greylist_triplet((struct sockaddr *)&env.client, (long)(size % 40), (long)(size % 140), from,
	    rcpt, out, sizeof(out));
	{
		char k1[80], k2[80];

		reputation_keys((struct sockaddr *)&env.client, 24, 64, 64, k1, sizeof(k1), k2, sizeof(k2));
	}
	if (size >= 40) {
		struct gcra_limit l;
		struct gcra_result res;
		uint64_t tat, now, cost;

		memcpy(&l.count, data, 8);
		memcpy(&l.period_ns, data + 8, 8);
		memcpy(&tat, data + 16, 8);
		memcpy(&now, data + 24, 8);
		memcpy(&cost, data + 32, 8);
		if (gcra_check(&l, tat, now, cost, &res) == 0 && res.allowed && res.new_tat < now)
			abort();   /* an allowed cell never moves the TAT into the past */
	}
	free(text);
	return 0;
}
