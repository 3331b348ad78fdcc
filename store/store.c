/* store.c — the `store:` setting, see store.h. */
#include "store.h"

#include <string.h>
#include <sys/stat.h>

#include "redis.h"

int store_kind_of(const char *spec)
{
	if (spec == NULL || spec[0] == '\0')
		return STORE_NONE;
	if (strcmp(spec, "local") == 0)
		return STORE_LOCAL;
	if (strncmp(spec, "lmdb:", 5) == 0)
		return spec[5] ? STORE_LMDB : -1;
	if (strncmp(spec, "redis://", 8) == 0 || strncmp(spec, "redis-sentinel://", 17) == 0)
		return redis_url_is_store(spec) ? STORE_REDIS : -1;
	return -1;
}

bool store_spec_is_redis(const char *spec)
{
	return store_kind_of(spec) == STORE_REDIS;
}

const char *store_lmdb_dir(const char *spec)
{
	return store_kind_of(spec) == STORE_LMDB ? spec + 5 : NULL;
}

/* Compares a and b with repeated slashes as one and trailing ones dropped. */
static bool store_same_path(const char *a, const char *b)
{
	for (;;) {
		while (a[0] == '/' && (a[1] == '/' || a[1] == '\0'))
			a++;
		while (b[0] == '/' && (b[1] == '/' || b[1] == '\0'))
			b++;
		if (*a != *b)
			return false;
		if (*a == '\0')
			return true;
		a++;
		b++;
	}
}

bool store_lmdb_same_dir(const char *a, const char *b)
{
	struct stat sa, sb;

	if (a == NULL || b == NULL)
		return false;
	if (store_same_path(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	    sa.st_ino == sb.st_ino;
}
