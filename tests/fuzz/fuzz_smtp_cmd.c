/* fuzz_smtp_cmd.c — any line parses or fails with a reply; parsed fields stay inside the
 * command's storage and within RFC 5321 limits; smtp_cmd_copy gives the parse again; the
 * quick forms and the octet loops (smtp_cmd_force_slow) give the same parse; a TLS record
 * header told by smtp_cmd_tls_record parses as SMTP_HTTP; a TAB that ends the verb reads
 * as a space would (session 23: "BDAT<TAB>10" was an unknown verb, its chunk then read as
 * commands), and so does a TAB before or between MAIL / RCPT parameters, which are relayed
 * with spaces only (session 24: "MAIL FROM:<a@b.c><TAB>SIZE=10" was 501). */
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
    struct smtp_cmd *cmd = malloc(sizeof(*cmd)), *slow = malloc(sizeof(*slow));
    const char *reply = NULL, *slow_reply = NULL;
    int rc = smtp_cmd_parse((const char *)data, size, cmd, &reply);
    /* the octet loops alone (no quick forms) give the same parse */
    smtp_cmd_force_slow = true;
    int slow_rc = smtp_cmd_parse((const char *)data, size, slow, &slow_reply);
    smtp_cmd_force_slow = false;
    if (slow_rc != rc || slow->verb != cmd->verb || (rc != 0 && slow_reply != reply) ||
        (rc == 0 && (strcmp(slow->arg, cmd->arg) != 0 || strcmp(slow->addr, cmd->addr) != 0 ||
                     strcmp(slow->params_raw, cmd->params_raw) != 0 || slow->nparams != cmd->nparams ||
                     slow->size != cmd->size || slow->body != cmd->body || slow->smtputf8 != cmd->smtputf8 ||
                     slow->addr_utf8 != cmd->addr_utf8 || slow->last != cmd->last)))
        abort();
    free(slow);
    /* the verb ends at a space or a TAB: with a space in place of that TAB, the same parse */
    size_t k = 0;
    while (k < size && data[k] != ' ' && data[k] != '\t')
        k++;
    if (k < size && data[k] == '\t') {
        char *sp = malloc(size);
        struct smtp_cmd *c2 = malloc(sizeof(*c2));
        const char *r2 = NULL;
        memcpy(sp, data, size);
        sp[k] = ' ';
        int rc2 = smtp_cmd_parse(sp, size, c2, &r2);
        if (rc2 != rc || c2->verb != cmd->verb || (rc != 0 && r2 != reply) ||
            (rc == 0 && (strcmp(c2->arg, cmd->arg) != 0 || strcmp(c2->addr, cmd->addr) != 0 ||
                         strcmp(c2->params_raw, cmd->params_raw) != 0 || c2->nparams != cmd->nparams ||
                         c2->size != cmd->size || c2->last != cmd->last)))
            abort();
        free(c2);
        free(sp);
    }
    /* TABs after the path (after the line's last '>') read as spaces: the same parse, or
     * the same refusal; the relayed parameters hold none */
    if (cmd->verb == SMTP_MAIL || cmd->verb == SMTP_RCPT) {
        const char *gt = memrchr(data, '>', size);
        if (rc == 0 && strchr(cmd->params_raw, '\t') != NULL)
            abort();
        if (gt != NULL && memchr(gt, '\t', size - (size_t)(gt - (const char *)data)) != NULL) {
            char *sp = malloc(size);
            struct smtp_cmd *c2 = malloc(sizeof(*c2));
            const char *r2 = NULL;
            memcpy(sp, data, size);
            for (size_t i = (size_t)(gt - (const char *)data); i < size; i++)
                if (sp[i] == '\t')
                    sp[i] = ' ';
            int rc2 = smtp_cmd_parse(sp, size, c2, &r2);
            if (rc2 != rc || c2->verb != cmd->verb || (rc != 0 && r2 != reply) ||
                (rc == 0 && (strcmp(c2->addr, cmd->addr) != 0 || strcmp(c2->params_raw, cmd->params_raw) != 0 ||
                             c2->nparams != cmd->nparams || c2->size != cmd->size || c2->body != cmd->body ||
                             c2->smtputf8 != cmd->smtputf8)))
                abort();
            free(c2);
            free(sp);
        }
    }
    /* a TLS record header told early (as it arrives) is what the whole line parses as
     * (a line over 998 octets is "too long" first) */
    if (smtp_cmd_tls_record((const char *)data, size) == 1 && size <= 998 &&
        (rc != -1 || cmd->verb != SMTP_HTTP))
        abort();
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
        /* a copy is the parse again, in its own storage (the source overwritten) */
        struct smtp_cmd *cp = malloc(sizeof(*cp)), *again = malloc(sizeof(*again));
        memset(cp, 0xa5, sizeof(*cp));
        smtp_cmd_copy(cp, cmd);
        memset(cmd, 0x5a, sizeof(*cmd));
        if (smtp_cmd_parse((const char *)data, size, again, &reply) != 0)
            abort();
        if (cp->verb != again->verb || !inside(cp, cp->arg) || strcmp(cp->arg, again->arg) != 0 ||
            strcmp(cp->addr, again->addr) != 0 || strcmp(cp->params_raw, again->params_raw) != 0 ||
            cp->nparams != again->nparams || cp->size != again->size || cp->body != again->body ||
            cp->smtputf8 != again->smtputf8 || cp->addr_utf8 != again->addr_utf8 || cp->last != again->last)
            abort();
        if ((cp->verb == SMTP_MAIL || cp->verb == SMTP_RCPT) && (!inside(cp, cp->addr) || !inside(cp, cp->params_raw)))
            abort();
        for (size_t i = 0; i < cp->nparams; i++) {
            if (!inside(cp, cp->params[i].key) || strcmp(cp->params[i].key, again->params[i].key) != 0 ||
                (cp->params[i].value == NULL) != (again->params[i].value == NULL) ||
                (cp->params[i].value != NULL && (!inside(cp, cp->params[i].value) ||
                                                 strcmp(cp->params[i].value, again->params[i].value) != 0)))
                abort();
        }
        cmd->verb = again->verb;
        free(cp);
        free(again);
    }
    (void)smtp_verb_name(cmd->verb);
    free(cmd);
    return 0;
}
