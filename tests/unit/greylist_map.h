/* greylist_map.h — the greylist tests' look at a client record in an LMDB map, the way a
 * later reader finds it (test_greylist, test_greylist_control). */
#ifndef MX_TEST_GREYLIST_MAP_H
#define MX_TEST_GREYLIST_MAP_H

#include <stdint.h>
#include <string.h>

#include "filters/greylist.h"
#include "store/lmdb_store.h"

/* The state (GREYLIST_IP_NONE, _TRAPPED, _ALLOWED) of the client record under key in the
 * map at dir, as of now (ms): none when absent or expired. */
static inline int greylist_map_state(const char *dir, const char *key, uint64_t now)
{
	struct lmdb_store *st = lmdb_store_open(dir, 0);
	unsigned char val[GREYLIST_RECORD_LEN];
	uint64_t since, exp;
	size_t len = 0;
	int got;

	assert_non_null(st);
	got = lmdb_store_get(st, key, strlen(key), val, sizeof(val), &len);
	lmdb_store_close(st);
	assert_true(got >= 0);
	return got == 1 ? greylist_ip_decode(val, len, now, &since, &exp) : GREYLIST_IP_NONE;
}

#endif
