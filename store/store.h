/* store.h — the `store:` setting the modules share: "local" (this process), "lmdb:/dir" (this
 * host, store/lmdb_store.h) or a Redis URL, "redis://[:password@]host[:port][/db]" or
 * "redis-sentinel://[:password@]host[:port][,host[:port]...]/master[/db]" (every node,
 * store/redis.h). Each module says which kinds it takes; this only reads the text. */
#ifndef MX_STORE_H
#define MX_STORE_H

#include <stdbool.h>

enum store_kind { STORE_NONE = 0, STORE_LOCAL, STORE_LMDB, STORE_REDIS };

/* The kind of spec: STORE_NONE for NULL or "", else STORE_LOCAL / STORE_LMDB / STORE_REDIS,
 * or -1 when malformed (lmdb: without a directory, a Redis URL that does not parse,
 * anything else). */
int store_kind_of(const char *spec);

/* Whether spec is a Redis store of either form that parses: the one test every module
 * taking a Redis store makes (never a prefix comparison of its own). */
bool store_spec_is_redis(const char *spec);

/* The directory of an "lmdb:/dir" spec (borrowed from spec), NULL for any other kind. */
const char *store_lmdb_dir(const char *spec);

/* Whether two LMDB directories are one: the same path but for repeated and trailing slashes,
 * or the same directory on disk (a symbolic link, a bind mount) when both exist. */
bool store_lmdb_same_dir(const char *a, const char *b);

#endif
