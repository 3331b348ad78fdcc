/* store.h — the `store:` setting the modules share: "local" (this process), "lmdb:/dir" (this
 * host, store/lmdb_store.h) or "redis://[:password@]host[:port][/db]" (every node,
 * store/redis.h). Each module says which kinds it takes; this only reads the text. */
#ifndef MX_STORE_H
#define MX_STORE_H

enum store_kind { STORE_NONE = 0, STORE_LOCAL, STORE_LMDB, STORE_REDIS };

/* The kind of spec: STORE_NONE for NULL or "", else STORE_LOCAL / STORE_LMDB / STORE_REDIS,
 * or -1 when malformed (lmdb: without a directory, a redis:// URL that does not parse,
 * anything else). */
int store_kind_of(const char *spec);

/* The directory of an "lmdb:/dir" spec (borrowed from spec), NULL for any other kind. */
const char *store_lmdb_dir(const char *spec);

#endif
