/* fuzz_domain.c — the domain matcher behind routes and accept_domains: lines before an
 * empty line are patterns, the rest addresses. Checks: an accepted exact pattern matches
 * itself in any case and with a root dot, a wildcard matches a name below it and not its
 * apex, matching ignores case, domain_check's fast path agrees with its general path
 * on every prefix of every line, the relay check never accepts an address whose domain
 * does not match, and a pattern holding U-labels matches its A-label form (libidn2, UTS #46
 * non-transitional, as domain_normalize and Postfix) in any ASCII case (seeds idn_*). */
#include <ctype.h>
#include <idn2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"

/* The A-label form of a name with an octet over 0x7f matches the set, lower and upper case
 * (prefix: "x." for a wildcard's name below it). */
static void fuzz_idn_check(const struct domain_set *set, const char *name, const char *prefix)
{
    char *ascii = NULL, v[600];
    bool eight = false;

    for (const char *p = name; *p; p++)
        eight |= (unsigned char)*p >= 0x80;
    if (!eight)
        return;
    if (idn2_to_ascii_8z(name, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) == IDN2_OK &&
        ascii != NULL && strlen(ascii) + strlen(prefix) <= DOMAIN_MAX) {
        snprintf(v, sizeof(v), "%s%s", prefix, ascii);
        if (!domain_set_match(set, v))
            abort();
        for (char *p = v; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        if (!domain_set_match(set, v))
            abort();
    }
    idn2_free(ascii);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct domain_set *set = domain_set_new();
    bool patterns = true;
    char *save = NULL;

    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(line);
        /* the syntax check's fast path and its general path agree on every prefix */
        for (size_t k = 0; k <= n && k <= DOMAIN_MAX + 2; k++) {
            bool u1 = true, u2 = false;
            enum domain_syntax a = domain_check(line, k, &u1);
            if (a != domain_check_general(line, k, &u2) || (a == DOMAIN_OK && u1 != u2))
                abort();
        }
        if (n == 1 && line[0] == '-') {
            patterns = false;
            continue;
        }
        if (patterns) {
            const char *why;
            if (domain_set_add(set, line, &why) != 0) {
                if (why == NULL || domain_pattern_check(line) == NULL)
                    abort();
                continue;
            }
            if (domain_pattern_check(line) != NULL)
                abort();
            char up[300], v[600];
            if (n >= 2 && line[0] == '*' && line[1] == '.') {
                if (n < 250) {
                    snprintf(v, sizeof(v), "x.%s", line + 2);
                    if (!domain_set_match(set, v))
                        abort();
                    fuzz_idn_check(set, line + 2, "x.");
                }
            } else if (n < 250) {
                for (size_t i = 0; i <= n; i++)
                    up[i] = (char)toupper((unsigned char)line[i]);
                if (!domain_set_match(set, line) || !domain_set_match(set, up))
                    abort();
                if (line[0] != '[')
                    fuzz_idn_check(set, line, "");
                /* (a name ending in a non-ASCII character may end in a root dot UTS #46
                 * maps to '.': "x\xe3\x80\x82." is then "x..", not "x") */
                if (line[n - 1] != '.' && (unsigned char)line[n - 1] < 0x80 && line[0] != '[') {
                    snprintf(v, sizeof(v), "%s.", line);
                    if (!domain_set_match(set, v))
                        abort();
                }
            }
            continue;
        }
        char denied[DOMAIN_MAX + 1];
        bool ok = domain_set_accepts_address(set, line, denied, sizeof(denied));
        const char *dom = domain_of_address(line);
        if (ok && dom != NULL && !domain_set_match(set, dom))
            abort();
        if (!ok && denied[0] == '\0' && dom != NULL && domain_set_match(set, dom)) {
            /* denied for a hop inside the local part: it must have named one */
            if (strpbrk(line, "%!@") == NULL)
                abort();
        }
    }
    domain_set_free(set);
    free(s);
    return 0;
}
