/* quarantine_index.h — which held file has which X-Quarantine-ID: a map from a file's name in
 * the quarantine maildir ("new/NAME", "cur/NAME") to the ID its envelope block names, so a
 * lookup by ID (quarantine show|release|delete) reads the folders' names, not every file's
 * head: a file is read once, when its name is first seen. Entries carry the generation of
 * the last walk that saw them; a sweep drops the names gone since (released, deleted, or
 * renamed by a reader). No I/O; not thread-safe (quarantine.c holds a lock around it). */
#ifndef MX_QUARANTINE_INDEX_H
#define MX_QUARANTINE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarantine.h"

struct quarantine_index;

/* NULL when out of memory. quarantine_index_free(NULL) is a no-op. */
struct quarantine_index *quarantine_index_new(void);
void quarantine_index_free(struct quarantine_index *x);

/* A new walk: names seen from now on (get, put) are kept by the next sweep. */
void quarantine_index_begin(struct quarantine_index *x);

/* name's ID into id (QUARANTINE_ID_MAX + 1 octets; "" for a file that is not a held
 * message) and marks it seen: true; false when name is not known with inode ino. */
bool quarantine_index_get(struct quarantine_index *x, const char *name, uint64_t ino, char *id);

/* name (copied) with inode ino has ID id ("" for not a held message), seen in this walk. 0,
 * -1 out of memory (name stays unknown and is read again next time). */
int quarantine_index_put(struct quarantine_index *x, const char *name, uint64_t ino, const char *id);

/* Drops every name not seen since quarantine_index_begin. */
void quarantine_index_sweep(struct quarantine_index *x);

size_t quarantine_index_count(const struct quarantine_index *x);

#endif
