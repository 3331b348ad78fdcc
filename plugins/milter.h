/* milter.h — the MTA side of the milter protocol (version 6) as a built-in plugin.
 *
 * One connection per client session, opened at connect: option negotiation, then per
 * stage the macros and the command (skipped / without reply as the filter asked), the
 * header, body (<= 65535-byte chunks) and end of message at end of data; ABORT between
 * messages when a transaction was abandoned, QUIT at close. A filter that failed (timeout,
 * garbage, disconnect) answers on_error for the rest of the transaction; the next MAIL
 * reconnects and replays connect and helo. Modification actions map onto
 * the host's header/envelope/body outputs; SMFIR_REPLYCODE sets the reply text.
 *
 * Milters have no verdict for "virus": a refusal whose text says virus / infected, or an
 * X-Virus-Status: Infected header (clamav-milter), marks the transaction (HOOK_FLAG_VIRUS).
 *
 * Options (under `options:`): max_frame (bytes, default 1M+: larger replies are an error),
 * daemon_name (macro {daemon_name}, default "mxgate"). The built-in is `milter_builtin`
 * (plugins.h). */
#ifndef MX_MILTER_H
#define MX_MILTER_H

#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

/* For tests/fuzz/fuzz_milter_symlists.c only: the macro lists of an OPTNEG reply's data
 * taken as a session takes them (milter_symlists_take), each name kept passed to
 * each(stage, name, arg); then freed. 0, or -1 when the lists are malformed. */
int milter_symlists_take_fuzz(const unsigned char *data, size_t len,
    void (*each)(int stage, const char *name, void *arg), void *arg);

/* For tests/fuzz/fuzz_milter_mods.c only: frames (len bytes of a filter's reply stream,
 * frames of at most max_frame) read by a session of an entry on host whose end of data was
 * sent and whose reply is awaited, the filter having negotiated actions (SMFIF_*; a
 * modification outside them is its error), as a connection's data is read (milter_on_frame): the
 * modifications collected within their bounds, then the verdict (the stream's own, or a
 * SMFIR_CONTINUE after it when the stream ends without one) applied through host on call
 * and reported by host->done. The session is freed before it returns. */
void milter_eob_fuzz(const struct mxgate_host *host, struct mxgate_call *call, const void *frames,
    size_t len, uint32_t max_frame, uint32_t actions);

#endif
