/* clamd.h — ClamAV's clamd as a built-in plugin: the message is streamed with zINSTREAM
 * (4-byte big-endian chunk lengths, a zero-length chunk ends it) over TCP or a unix
 * socket, one connection per message.
 *
 *   "stream: OK"              -> continue
 *   "stream: <Name> FOUND"    -> symbol CLAM_VIRUS (desc = Name) and `action`:
 *                                reject (554 5.7.1 Virus found: Name; default),
 *                                quarantine, or tempfail
 *   "... ERROR", I/O, timeout -> the entry's on_error
 *
 * Keys: address, timeout, on_error; options (or the entry's own keys): action, max_size
 * (bytes sent, default 25M = clamd's default StreamMaxLength; a longer message is scanned
 * up to that size). The built-in is `clamd_builtin` (plugins.h). */
#ifndef MX_CLAMD_H
#define MX_CLAMD_H

#include "plugin.h"

#include <stdbool.h>

/* Parses a clamd reply line ("stream: OK", "stream: Eicar FOUND", "... ERROR").
 * Returns 0 clean, 1 found (virus name copied to name), -1 error / unparseable. */
int clamd_reply_parse(const char *reply, size_t len, char *name, size_t namelen);

struct plugin_options;
/* True when a clamd entry's options (typed by clamd_options_table) say action quarantine. */
bool clamd_options_quarantine(const struct plugin_options *o);

#endif
