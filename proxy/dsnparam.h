/* dsnparam.h — the syntax of the DSN parameters a client sends (RFC 3461 4): MAIL's RET and
 * ENVID, RCPT's NOTIFY and ORCPT, each at most once. Pure: no I/O, no allocation.
 *
 * mxgate announces DSN and relays the parameters to a backend that announces it too (they
 * are dropped for one that does not): a malformed one is refused here, with Postfix's
 * smtpd reply, rather than accepted for one backend and refused by the next. */
#ifndef MX_DSNPARAM_H
#define MX_DSNPARAM_H

#include "smtp_cmd.h"

/* MAIL's parameters: RET=FULL|HDRS, ENVID=xtext (printable once decoded;
 * no length limit, as Postfix). Returns NULL, or "501 5.5.4 Bad RET parameter syntax" /
 * "501 5.5.4 Bad ENVID parameter syntax". */
const char *dsnparam_check_mail(const struct smtp_cmd *cmd);
/* RCPT's parameters: NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY (each once);
 * ORCPT=addr-type;xtext (decoding to printable ASCII or 8-bit octets, as Postfix sends a UTF-8
 * address; utf-8: RFC 6533's utf-8-addr-xtext). Returns NULL, or
 * "501 5.5.4 Error: Bad NOTIFY parameter syntax" / "501 5.5.4 Error: Bad ORCPT parameter
 * syntax". */
const char *dsnparam_check_rcpt(const struct smtp_cmd *cmd);

#endif
