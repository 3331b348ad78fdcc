/* fuzz_sasl.c — the AUTH argument, strict base64 (decode then encode gives the input back),
 * the PLAIN split, LOGIN answers, the Dovecot server-line parser and the Dovecot address
 * (auth.dovecot's unix:/path or inet:host:port) on any input: no crash, outputs inside their
 * bounds, a taken address one that connect() can use. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"
#include "sasl_dovecot.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    /* AUTH mechanism [initial] */
    enum sasl_mech m;
    const char *ir, *reply;
    if (sasl_parse_auth_arg(s, &m, &ir, &reply) == 0) {
        if (m != SASL_MECH_PLAIN && m != SASL_MECH_LOGIN)
            abort();
        if (ir != NULL && (ir < s || ir > s + size))
            abort();
    } else if (reply == NULL || (reply[0] != '5'))
        abort();

    /* base64: canonical round trip */
    unsigned char out[SASL_MAX_B64];
    ssize_t k = sasl_base64_decode(s, size, out, sizeof(out));
    if (k > 0) {
        char enc[SASL_MAX_B64 + 8];
        if (sasl_base64_encode(out, (size_t)k, enc, sizeof(enc)) != (ssize_t)size || memcmp(enc, s, size) != 0)
            abort();
    }

    /* PLAIN split on the raw bytes */
    struct sasl_plain p;
    const char *why;
    if (sasl_plain_split(data, size, &p, &why) == 0) {
        if (strlen(p.authcid) == 0 || strlen(p.passwd) == 0 || strlen(p.authcid) > SASL_MAX_FIELD ||
            strlen(p.authzid) > SASL_MAX_FIELD || strlen(p.passwd) > SASL_MAX_PASSWD)
            abort();
    } else if (p.authcid[0] || p.passwd[0]) {
        abort();
    }

    char login[SASL_MAX_FIELD + 1];
    if (sasl_login_decode(s, size, login, sizeof(login)) == 0 && strlen(login) == 0)
        abort();

    /* Dovecot lines: the input split at LF, through one parser */
    struct sd_parser dp;
    struct sd_reply r;
    sd_parser_init(&dp);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        enum sd_event ev = sd_parse_line(&dp, s + start, i - start, &r);
        if (ev == SD_EV_ERROR && r.error == NULL)
            abort();
        if (ev == SD_EV_CONT && (r.data < s + start || r.data + r.data_len > s + i))
            abort();
        if ((ev == SD_EV_OK || ev == SD_EV_FAIL) && (strlen(r.user) > SASL_MAX_FIELD || strlen(r.reason) >= sizeof(r.reason)))
            abort();
        for (const char *u = r.user; *u; u++)
            if ((unsigned char)*u < 0x20)
                abort();
        start = i + 1;
    }
    /* the Dovecot auth server's address: taken only as an absolute socket path or a numeric
     * host with a port 1..65535; refused with a reason */
    {
        struct sasl_dovecot_addr a;
        const char *why2 = NULL;
        unsigned char tmp[16];
        if (sasl_dovecot_parse_addr(s, &a, &why2) == 0) {
            if (a.unix_socket ? a.path[0] != '/' || strlen(a.path) != strlen(s) - 5
                              : a.port == 0 || (inet_pton(AF_INET, a.host, tmp) != 1 &&
                                                inet_pton(AF_INET6, a.host, tmp) != 1))
                abort();
        } else if (why2 == NULL) {
            abort();
        }
    }
    free(s);
    return 0;
}
