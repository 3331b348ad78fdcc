/* fuzz_smtp_cmd.c — any line parses or fails with a reply; parsed fields stay inside the
 * command's storage and within RFC 5321 limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_cmd.h"

static int
inside(const struct smtp_cmd *c, const char *p)
{
    return (p >= c->buf && p < c->buf + sizeof(c->buf)) ||
           (p >= c->xbuf && p < c->xbuf + sizeof(c->xbuf));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_cmd *cmd = malloc(sizeof(*cmd));
    const char *reply = NULL;
    int rc = smtp_cmd_parse((const char *)data, size, cmd, &reply);
    if (rc != 0) {
        if (rc != -1 || reply == NULL || reply[0] < '4' || reply[0] > '5' || strlen(reply) < 10)
            abort();
    } else {
        if (!inside(cmd, cmd->arg) || strlen(cmd->arg) > size)
            abort();
        if (memchr(data, 0, size) != NULL)
            abort();
        if (cmd->verb == SMTP_MAIL || cmd->verb == SMTP_RCPT) {
            if (!inside(cmd, cmd->addr) || !inside(cmd, cmd->params_raw))
                abort();
            if (strlen(cmd->addr) > 256 || cmd->nparams > SMTP_MAX_PARAMS)
                abort();
            if (cmd->verb == SMTP_RCPT && cmd->addr[0] == '\0')
                abort();
            for (size_t i = 0; i < cmd->nparams; i++) {
                if (!inside(cmd, cmd->params[i].key) || cmd->params[i].key[0] == '\0')
                    abort();
                if (cmd->params[i].value != NULL && !inside(cmd, cmd->params[i].value))
                    abort();
            }
            for (const char *p = cmd->addr; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    abort();
        }
        if (cmd->verb == SMTP_HTTP || cmd->verb == SMTP_UNKNOWN)
            abort();
    }
    (void)smtp_verb_name(cmd->verb);
    free(cmd);
    return 0;
}
