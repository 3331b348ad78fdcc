/* store.c — the `store:` setting, see store.h. */
#include "store.h"

#include <string.h>

#include "redis.h"

int store_kind_of(const char *spec)
{
	char host[256], pw[128];
	int port, db;

	if (spec == NULL || spec[0] == '\0')
		return STORE_NONE;
	if (strcmp(spec, "local") == 0)
		return STORE_LOCAL;
	if (strncmp(spec, "lmdb:", 5) == 0)
		return spec[5] ? STORE_LMDB : -1;
	if (strncmp(spec, "redis://", 8) == 0)
		return redis_store_parse_url(spec, host, sizeof(host), &port, &db, pw, sizeof(pw)) == 0 ?
		    STORE_REDIS : -1;
	return -1;
}

const char *store_lmdb_dir(const char *spec)
{
	return store_kind_of(spec) == STORE_LMDB ? spec + 5 : NULL;
}
