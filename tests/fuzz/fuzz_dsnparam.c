/* fuzz_dsnparam.c — the DSN parameters' syntax (dsnparam.c) on any MAIL or RCPT line that
 * smtp_cmd_parse takes: the answer is NULL or one of the four Postfix replies, the same on
 * a second call, and a line whose parameters have no DSN keyword is never refused. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsnparam.h"
#include "smtp_cmd.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_cmd *cmd = malloc(sizeof(*cmd));
    const char *reply = NULL;

    if (cmd == NULL)
        return 0;
    if (smtp_cmd_parse((const char *)data, size, cmd, &reply) != 0 ||
        (cmd->verb != SMTP_MAIL && cmd->verb != SMTP_RCPT)) {
        free(cmd);
        return 0;
    }
    bool mail = cmd->verb == SMTP_MAIL;
    const char *r = mail ? dsnparam_check_mail(cmd) : dsnparam_check_rcpt(cmd);
    const char *again = mail ? dsnparam_check_mail(cmd) : dsnparam_check_rcpt(cmd);
    if (r != again)
        abort();
    if (r != NULL) {
        static const char *const replies[] = {
            "501 5.5.4 Bad RET parameter syntax", "501 5.5.4 Bad ENVID parameter syntax",
            "501 5.5.4 Error: Bad NOTIFY parameter syntax", "501 5.5.4 Error: Bad ORCPT parameter syntax",
        };
        size_t k = mail ? 0 : 2;
        if (strcmp(r, replies[k]) != 0 && strcmp(r, replies[k + 1]) != 0)
            abort();
    }
    bool dsn = false;
    for (size_t i = 0; i < cmd->nparams; i++) {
        const char *key = cmd->params[i].key;
        dsn |= mail ? strcasecmp(key, "RET") == 0 || strcasecmp(key, "ENVID") == 0
                    : strcasecmp(key, "NOTIFY") == 0 || strcasecmp(key, "ORCPT") == 0;
    }
    if (!dsn && r != NULL)
        abort();
    free(cmd);
    return 0;
}
