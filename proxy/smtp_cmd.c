/* smtp_cmd.c — SMTP command line parser (RFC 5321 4.1, 4.5.3.1; RFC 1870 SIZE, RFC 6152
 * 8BITMIME, RFC 3030 BINARYMIME/BDAT, RFC 6531 SMTPUTF8). Pure: no I/O, no allocation. */
#include "smtp_cmd.h"
#include "domain.h"

#include <string.h>
#include <strings.h>

/* RFC 5321 4.5.3.1.4 is 512; we accept up to 1000 octets incl. CRLF (extensions). */
#define SMTP_CMD_MAX_LINE 998
/* RFC 5321 4.5.3.1.2-3. The local part has no limit of its own: 4.5.3.1.1's 64 octets is
 * a size every server must take, and 4.5.3.1 asks for no limits "to the maximum extent
 * possible"; real senders pass it (Gmail's forwarding "user+caf_=...", SRS, VERP, list
 * confirmations), and Postfix, Exim and Sendmail take them. The path's 256 bounds it. */
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_PATH 256

static const char R_UNRECOGNIZED[] = "500 5.5.2 Syntax error, command unrecognized";
static const char R_TOO_LONG[] = "500 5.5.2 Line too long";
static const char R_NUL[] = "500 5.5.2 Syntax error, NUL character in command";
static const char R_CTRL[] = "501 5.5.2 Syntax error, control character in command";
static const char R_HTTP[] = "500 5.5.2 Syntax error, this is an SMTP server, not HTTP";
static const char R_TLS_HELLO[] = "500 5.5.2 Syntax error, TLS handshake without STARTTLS";
static const char R_HELO[] = "501 5.5.4 Syntax: HELO hostname";
static const char R_EHLO[] = "501 5.5.4 Syntax: EHLO hostname";
static const char R_MAIL[] = "501 5.5.4 Syntax: MAIL FROM:<address>";
static const char R_RCPT[] = "501 5.5.4 Syntax: RCPT TO:<address>";
static const char R_NULL_RCPT[] = "501 5.1.3 Null recipient address not allowed";
static const char R_PARAM[] = "501 5.5.4 Bad parameter syntax";
static const char R_PARAMS_MANY[] = "501 5.5.4 Too many parameters";
static const char R_SIZE[] = "501 5.5.4 Bad SIZE parameter syntax";
static const char R_BODY[] = "501 5.5.4 Bad BODY parameter value";
static const char R_UTF8[] = "501 5.5.4 Bad SMTPUTF8 parameter syntax";
static const char R_DATA[] = "501 5.5.4 Syntax: DATA";
static const char R_RSET[] = "501 5.5.4 Syntax: RSET";
static const char R_QUIT[] = "501 5.5.4 Syntax: QUIT";
static const char R_STARTTLS[] = "501 5.5.4 Syntax: STARTTLS";
static const char R_VRFY[] = "501 5.5.4 Syntax: VRFY address";
static const char R_EXPN[] = "501 5.5.4 Syntax: EXPN list";
static const char R_AUTH[] = "501 5.5.4 Syntax: AUTH mechanism";
static const char R_BDAT[] = "501 5.5.4 Syntax: BDAT chunk-size [LAST]";
static const char R_XCLIENT[] = "501 5.5.4 Syntax: XCLIENT attribute=value...";

enum smtp_argmode { ARG_ANY = 0, ARG_NONE, ARG_REQUIRED, ARG_SPECIAL };

struct smtp_verb_def {
    const char *name;
    size_t len;             /* strlen(name) */
    enum smtp_verb verb;
    enum smtp_argmode mode;
    const char *syntax;     /* reply when the argument rule is broken */
};

/* A four-octet verb as one word: octet i in bits 8i..8i+7, as smtp_word4 reads a line. */
#define SMTP_W4(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

bool smtp_cmd_force_slow;

static const struct smtp_verb_def smtp_verbs[] = {
    { "HELO", 4, SMTP_HELO, ARG_REQUIRED, R_HELO },
    { "EHLO", 4, SMTP_EHLO, ARG_REQUIRED, R_EHLO },
    { "MAIL", 4, SMTP_MAIL, ARG_SPECIAL, R_MAIL },
    { "RCPT", 4, SMTP_RCPT, ARG_SPECIAL, R_RCPT },
    { "DATA", 4, SMTP_DATA, ARG_NONE, R_DATA },
    { "RSET", 4, SMTP_RSET, ARG_NONE, R_RSET },
    { "NOOP", 4, SMTP_NOOP, ARG_ANY, NULL },
    { "QUIT", 4, SMTP_QUIT, ARG_NONE, R_QUIT },
    { "VRFY", 4, SMTP_VRFY, ARG_REQUIRED, R_VRFY },
    { "EXPN", 4, SMTP_EXPN, ARG_REQUIRED, R_EXPN },
    { "HELP", 4, SMTP_HELP, ARG_ANY, NULL },
    { "STARTTLS", 8, SMTP_STARTTLS, ARG_NONE, R_STARTTLS },
    { "AUTH", 4, SMTP_AUTH, ARG_REQUIRED, R_AUTH },
    { "BDAT", 4, SMTP_BDAT, ARG_SPECIAL, R_BDAT },
    { "XCLIENT", 7, SMTP_XCLIENT, ARG_REQUIRED, R_XCLIENT },
    /* A web client or proxy probe talking to the SMTP port. */
    { "GET", 3, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "POST", 4, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "HEAD", 4, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "PUT", 3, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "CONNECT", 7, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "OPTIONS", 7, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "DELETE", 6, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "TRACE", 5, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
    { "PATCH", 5, SMTP_HTTP, ARG_SPECIAL, R_HTTP },
};

/* Returns the upper-case name of v; "UNKNOWN" for anything not in the table. */
const char *
smtp_verb_name(enum smtp_verb v)
{
    switch (v) {
    case SMTP_HTTP: return "HTTP";
    case SMTP_UNKNOWN: return "UNKNOWN";
    default: break;
    }
    for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++)
        if (smtp_verbs[i].verb == v)
            return smtp_verbs[i].name;
    return "UNKNOWN";
}

static inline bool
smtp_is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static inline bool
smtp_is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* s[0..4) as one word, each octet with bit 5 cleared (the ASCII case fold of a letter;
 * compared with a word of upper-case letters it is smtp_upper_eq). */
static inline uint32_t
smtp_word4(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    return SMTP_W4(u[0], u[1], u[2], u[3]) & 0xdfdfdfdfu;
}

/* The four-letter verbs a transaction is made of, by word (smtp_word4); NULL for others
 * (then the table). */
static const struct smtp_verb_def *
smtp_verb_quick(const char *line)
{
    static const struct { uint32_t w; size_t i; } quick[] = {
        { SMTP_W4('M', 'A', 'I', 'L'), 2 }, { SMTP_W4('R', 'C', 'P', 'T'), 3 },
        { SMTP_W4('D', 'A', 'T', 'A'), 4 }, { SMTP_W4('Q', 'U', 'I', 'T'), 7 },
    };
    uint32_t w = smtp_word4(line);

    for (size_t i = 0; i < sizeof(quick) / sizeof(quick[0]); i++)
        if (quick[i].w == w)
            return &smtp_verbs[quick[i].i];
    return NULL;
}

/* s[0..n) equals the upper-case ASCII name[0..n) in any case (verbs are letters only). */
static inline bool
smtp_upper_eq(const char *s, const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xdf) != (unsigned char)name[i])
            return false;
    return true;
}

/* s[0..n) equals name[0..n) (upper-case letters and ':') in any case: strncasecmp for a
 * name of letters and non-letters whose case fold is themselves (the fold of a letter,
 * c & 0xdf, is used only where name has a letter). */
static inline bool
smtp_upper_eq_any(const char *s, const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i], w = (unsigned char)name[i];
        if (w >= 'A' && w <= 'Z' ? (c & 0xdf) != w : c != w)
            return false;
    }
    return true;
}

/* Whether s[0..n) holds any octet below 0x20 (TAB and NUL included) or 0x7f: eight octets
 * at a time (a word has an octet below 0x20 when (w - 0x20..) & ~w & 0x80.. is non-zero,
 * one equal to 0x7f when w ^ 0x7f.. has a zero octet). A false "true" is impossible; the
 * caller looks at the octets one by one only when this says true. */
static bool
smtp_any_ctl(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w, d;
        memcpy(&w, s + i, 8);
        d = w ^ (0x7f * ones);
        if ((((w - 0x20 * ones) & ~w) | ((d - ones) & ~d)) & highs)
            return true;
    }
    if (i < n && n >= 8) {
        /* the tail as the last eight octets (some looked at twice: no matter) */
        uint64_t w, d;
        memcpy(&w, s + n - 8, 8);
        d = w ^ (0x7f * ones);
        return ((((w - 0x20 * ones) & ~w) | ((d - ones) & ~d)) & highs) != 0;
    }
    for (; i < n; i++)
        if (smtp_is_ctl((unsigned char)s[i]))
            return true;
    return false;
}

/* The replies for one direction: X.1.7 is the sender's address, X.1.3 the recipient's
 * (RFC 3463 3.2); X.6.7 a non-ASCII address without SMTPUTF8 (RFC 6531 3.7.4.2). */
struct smtp_addr_replies {
    const char *bad, *domain_long, *path_long, *literal, *utf8;
};

static const struct smtp_addr_replies smtp_sender_replies = {
    "501 5.1.7 Bad sender address syntax",
    "501 5.1.7 Bad sender address syntax: domain over 255 octets or a label over 63",
    "501 5.1.7 Bad sender address syntax: path over 256 octets",
    "553 5.1.7 Sender address literal not supported",
    "553 5.6.7 Non-ASCII sender address needs SMTPUTF8",
};

static const struct smtp_addr_replies smtp_rcpt_replies = {
    "501 5.1.3 Bad recipient address syntax",
    "501 5.1.3 Bad recipient address syntax: domain over 255 octets or a label over 63",
    "501 5.1.3 Bad recipient address syntax: path over 256 octets",
    "553 5.1.3 Recipient address literal not supported",
    "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8",
};

/* RFC 5321 4.1.2 atext (RFC 5322 3.2.3), ASCII only. */
static bool
smtp_is_atext(unsigned char c)
{
    return smtp_is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Checks a domain or address literal of n octets (domain.c); NULL or the reply. */
static const char *
smtp_check_domain(const char *d, size_t n, const struct smtp_addr_replies *r, bool *utf8)
{
    switch (domain_check(d, n, utf8)) {
    case DOMAIN_OK: return NULL;
    case DOMAIN_TOO_LONG: return r->domain_long;
    case DOMAIN_LITERAL_UNSUPPORTED: return r->literal;
    case DOMAIN_BAD: break;
    }
    return r->bad;
}

/* Finds the '>' closing a path that starts at s[0] == '<', honouring quoted strings and
 * quoted-pairs. Returns its index, or -1 for unbalanced or control characters. ctl: whether
 * the line holds any control octet (smtp_any_ctl); without one, and without a '"' or '<'
 * before the first '>', that '>' is the end (what the octet loop below finds then): three
 * memchr instead of a loop over the octets. */
static long
smtp_find_path_end(const char *s, size_t n, bool ctl)
{
    bool quoted = false;

    if (!ctl && !smtp_cmd_force_slow && n > 1) {
        const char *gt = memchr(s + 1, '>', n - 1);
        if (gt != NULL && memchr(s + 1, '"', (size_t)(gt - s - 1)) == NULL &&
            memchr(s + 1, '<', (size_t)(gt - s - 1)) == NULL)
            return (long)(gt - s);
    }
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (smtp_is_ctl(c))
            return -1;
        if (quoted) {
            if (c == '\\') {
                if (i + 1 >= n || smtp_is_ctl((unsigned char)s[i + 1]))
                    return -1;
                i++;
            } else if (c == '"') {
                quoted = false;
            }
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (c == '>')
            return (long)i;
        else if (c == '<')
            return -1;
    }
    return -1;
}

/* The run of non-ASCII octets at m[0..n) (m[0] >= 0x80): its length when it is well-formed
 * UTF-8 (RFC 6531 3.3; *utf8 is then set), else 0. */
static size_t
smtp_utf8_run(const char *m, size_t n, bool *utf8)
{
    size_t k = 1;
    while (k < n && (unsigned char)m[k] >= 0x80)
        k++;
    if (!domain_utf8_valid(m, k))
        return 0;
    *utf8 = true;
    return k;
}

/* Length of the RFC 5321 4.1.2 Local-part at the start of m[0..n): a Dot-string (atoms
 * separated by single dots: no leading, trailing or doubled dot) or a Quoted-string
 * (qtextSMTP and quoted-pairSMTP), with UTF-8 octets in either (RFC 6531 3.3, reported via
 * *utf8). Returns the octets up to the '@' or the end, or -1 on a syntax error. */
static long
smtp_local_part_len(const char *m, size_t n, bool *utf8)
{
    size_t i = 0;

    if (n > 0 && m[0] == '"') {
        for (i = 1; i < n; i++) {
            unsigned char c = (unsigned char)m[i];
            if (c == '"')
                break;
            if (c == '\\') {
                /* quoted-pairSMTP = %d92 %d32-126 */
                if (i + 1 >= n || m[i + 1] < 32 || m[i + 1] > 126)
                    return -1;
                i++;
            } else if (c >= 0x80) {
                size_t k = smtp_utf8_run(m + i, n - i, utf8);
                if (k == 0)
                    return -1;
                i += k - 1;
            } else if (c < 32 || c == 127) {
                return -1;
            }
        }
        if (i >= n || i == 1)           /* unterminated, or "" (no zero-length local part) */
            return -1;
        return (long)i + 1;
    }
    bool atom = false;                  /* inside an atom (after at least one atext) */
    for (i = 0; i < n && m[i] != '@'; i++) {
        unsigned char c = (unsigned char)m[i];
        if (c == '.') {
            if (!atom)                  /* leading or doubled dot */
                return -1;
            atom = false;
        } else if (c >= 0x80) {
            size_t k = smtp_utf8_run(m + i, n - i, utf8);
            if (k == 0)
                return -1;
            atom = true;
            i += k - 1;
        } else if (smtp_is_atext(c)) {
            atom = true;
        } else {
            return -1;
        }
    }
    if (!atom)                          /* empty, or a trailing dot */
        return -1;
    return (long)i;
}

/* Validates mailbox m[0..n) (no <>, no source route): Local-part "@" (Domain /
 * address-literal), or a bare "postmaster" when allow_postmaster (RFC 5321 4.1.1.3).
 * Lengths per RFC 5321 4.5.3.1.2 (the local part: bounded by the path, above). *utf8 is set when any part holds UTF-8. Returns NULL
 * or the reply for the error. */
static const char *
smtp_check_mailbox(const char *m, size_t n, bool allow_postmaster,
                   const struct smtp_addr_replies *r, bool *utf8)
{
    bool dutf8 = false;

    if (allow_postmaster && n == 10 && strncasecmp(m, "postmaster", 10) == 0)
        return NULL;
    long l = smtp_local_part_len(m, n, utf8);
    if (l < 0 || (size_t)l >= n || m[l] != '@')
        return r->bad;
    const char *err = smtp_check_domain(m + l + 1, n - (size_t)l - 1, r, &dutf8);
    if (dutf8)
        *utf8 = true;
    return err;
}

/* Checks an A-d-l source route "@a,@b" (RFC 5321 4.1.2). 0 if acceptable. */
static int
smtp_check_route(const char *r, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || r[i] == ',') {
            if (i - start < 2 || r[start] != '@')
                return -1;
            if (domain_check(r + start + 1, i - start - 1, NULL) != DOMAIN_OK)
                return -1;
            start = i + 1;
        }
    }
    return 0;
}

static bool
smtp_is_keyword(const char *k)
{
    /* RFC 5321 4.1.2 esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
    if (!smtp_is_alnum((unsigned char)k[0]))
        return false;
    for (const char *p = k + 1; *p; p++)
        if (!smtp_is_alnum((unsigned char)*p) && *p != '-')
            return false;
    return true;
}

static bool
smtp_is_value(const char *v)
{
    /* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 allowed (RFC 6531 3.3) */
    if (*v == '\0')
        return false;
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '=' || c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Parses a decimal number of up to 20 digits; saturates at UINT64_MAX. 0 or -1. */
static int
smtp_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            v = UINT64_MAX;
        else
            v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Splits the parameter text (already copied to *store, NUL-terminated) into cmd->params
 * and interprets SIZE, BODY, SMTPUTF8. Returns NULL or the error reply. */
static const char *
smtp_parse_params(struct smtp_cmd *cmd, char *p)
{
    while (*p) {
        while (*p == ' ' || *p == '\t')   /* a TAB separates them too, as Postfix takes it */
            p++;
        if (*p == '\0')
            break;
        char *key = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p)
            *p++ = '\0';
        if (cmd->nparams >= SMTP_MAX_PARAMS)
            return R_PARAMS_MANY;
        char *eq = strchr(key, '=');
        char *value = NULL;
        if (eq != NULL) {
            *eq = '\0';
            value = eq + 1;
            if (!smtp_is_value(value))
                return R_PARAM;
        }
        if (!smtp_is_keyword(key))
            return R_PARAM;
        cmd->params[cmd->nparams].key = key;
        cmd->params[cmd->nparams].value = value;
        cmd->nparams++;
        if (strcasecmp(key, "SIZE") == 0) {
            /* RFC 1870: size-value = 1*20DIGIT */
            if (value == NULL || strlen(value) > 20 || smtp_parse_u64(value, &cmd->size) != 0)
                return R_SIZE;
        } else if (strcasecmp(key, "BODY") == 0) {
            if (value == NULL)
                return R_BODY;
            if (strcasecmp(value, "7BIT") == 0)
                cmd->body = SMTP_BODY_7BIT;
            else if (strcasecmp(value, "8BITMIME") == 0)
                cmd->body = SMTP_BODY_8BITMIME;
            else if (strcasecmp(value, "BINARYMIME") == 0)
                cmd->body = SMTP_BODY_BINARYMIME;
            else
                return R_BODY;
        } else if (strcasecmp(key, "SMTPUTF8") == 0) {
            if (value != NULL)          /* RFC 6531 3.4: no value */
                return R_UTF8;
            cmd->smtputf8 = true;
        }
    }
    return NULL;
}

/* MAIL FROM:<path> [params] / RCPT TO:<path> [params]; arg is cmd->arg. Returns NULL or the
 * error reply. */
static const char *
smtp_parse_path_cmd(struct smtp_cmd *cmd, bool is_mail, bool ctl)
{
    const char *syntax = is_mail ? R_MAIL : R_RCPT;
    const struct smtp_addr_replies *r = is_mail ? &smtp_sender_replies : &smtp_rcpt_replies;
    const char *bad = r->bad;
    const char *prefix = is_mail ? "FROM:" : "TO:";
    size_t plen = strlen(prefix);
    const char *a = cmd->arg;
    size_t alen = strlen(a);

    if (alen < plen)
        return syntax;
    if (smtp_cmd_force_slow ? !smtp_upper_eq_any(a, prefix, plen)
        : is_mail ? smtp_word4(a) != SMTP_W4('F', 'R', 'O', 'M') || a[4] != ':'
                  : ((unsigned char)a[0] & 0xdf) != 'T' || ((unsigned char)a[1] & 0xdf) != 'O' || a[2] != ':')
        return syntax;      /* the quick form: "FROM" as one case-folded word */
    const char *s = a + plen;
    while (*s == ' ' || *s == '\t')    /* "FROM: <addr>", as Postfix accepts */
        s++;
    if (*s != '<')
        return syntax;
    size_t rest = alen - (size_t)(s - a);
    long end = smtp_find_path_end(s, rest, ctl);
    if (end < 0) {
        /* No '>' closing the path (none at all, or it stands inside a quoted string after
         * a '<' or a control octet): the path is bad address syntax, X.1.7 / X.1.3 (RFC
         * 3463 3.2, "can apply to any field in the address"), as Postfix answers
         * "MAIL FROM:<a@b.test"; X.5.4 is for the command's other arguments (until
         * session 22 a missing '>' got the command's 501 5.5.4 Syntax reply). */
        return bad;
    }
    if ((size_t)end + 1 > SMTP_MAX_PATH)
        return r->path_long;
    const char *after = s + end + 1;
    if (*after != '\0' && *after != ' ' && *after != '\t')
        return syntax;
    const char *inner = s + 1;
    size_t ilen = (size_t)end - 1;

    /* RFC 5321 4.1.2 / C: a source route "@a,@b:" is accepted and ignored. */
    if (ilen > 0 && inner[0] == '@') {
        const char *colon = memchr(inner, ':', ilen);
        if (colon == NULL || smtp_check_route(inner, (size_t)(colon - inner)) != 0)
            return bad;
        ilen -= (size_t)(colon - inner) + 1;
        inner = colon + 1;
        if (ilen == 0)
            return bad;
    }
    if (ilen == 0) {
        if (!is_mail)
            return R_NULL_RCPT;
    } else {
        const char *err = smtp_check_mailbox(inner, ilen, !is_mail, r, &cmd->addr_utf8);
        if (err != NULL)
            return err;
    }

    /* addr and params go into xbuf: together they are shorter than the line. */
    char *x = cmd->xbuf;
    memcpy(x, inner, ilen);
    x[ilen] = '\0';
    cmd->addr = x;
    x += ilen + 1;
    while (*after == ' ' || *after == '\t')
        after++;
    cmd->params_raw = (char *)after;    /* a suffix of arg (already trimmed) */
    for (char *t = cmd->params_raw; (t = strchr(t, '\t')) != NULL; t++)
        *t = ' ';       /* relayed as the backend's parameters: spaces only */
    size_t prlen = strlen(after);
    memcpy(x, after, prlen + 1);
    const char *err = smtp_parse_params(cmd, x);
    /* RFC 6531 3.4: a non-ASCII sender needs MAIL's SMTPUTF8 (a recipient: the session
     * knows, see smtp_cmd_check_utf8) */
    if (err == NULL && is_mail && cmd->addr_utf8 && !cmd->smtputf8)
        err = r->utf8;
    return err;
}

/* A string of src (in buf or xbuf) moved to the same place in dst's buffers. */
static char *
smtp_cmd_move(char *p, const struct smtp_cmd *src, struct smtp_cmd *dst)
{
    if (p == NULL)
        return NULL;
    if (p >= src->buf && p < src->buf + sizeof(src->buf))
        return dst->buf + (p - src->buf);
    if (p >= src->xbuf && p < src->xbuf + sizeof(src->xbuf))
        return dst->xbuf + (p - src->xbuf);
    return p;   /* not in src: a static string */
}

/* See smtp_cmd.h. */
void
smtp_cmd_copy(struct smtp_cmd *dst, const struct smtp_cmd *src)
{
    char *arg = src->arg, *addr = src->addr, *raw = src->params_raw;
    /* buf holds arg (NUL-terminated at its start); xbuf what was split off it (the address
     * and the parameters, or BDAT's size): neither is longer than arg and its NUL + 1 */
    size_t used = strlen(src->buf) + 2;
    size_t np = src->nparams < SMTP_MAX_PARAMS ? src->nparams : SMTP_MAX_PARAMS;

    if (used > sizeof(src->buf))
        used = sizeof(src->buf);
    /* the scalars (all before buf), then of each array only the part in use (dst's other
     * octets stay as they were: nothing reads past a NUL or past nparams) */
    _Static_assert(offsetof(struct smtp_cmd, buf) < offsetof(struct smtp_cmd, params) &&
        offsetof(struct smtp_cmd, params) < offsetof(struct smtp_cmd, xbuf) &&
        offsetof(struct smtp_cmd, xbuf) + sizeof(src->xbuf) + 8 > sizeof(struct smtp_cmd),
        "smtp_cmd_copy: the scalars before buf, nothing but padding after xbuf");
    memcpy(dst, src, offsetof(struct smtp_cmd, buf));
    memcpy(dst->buf, src->buf, used);
    memcpy(dst->params, src->params, np * sizeof(src->params[0]));
    memcpy(dst->xbuf, src->xbuf, used < sizeof(src->xbuf) ? used : sizeof(src->xbuf));
    dst->arg = smtp_cmd_move(arg, src, dst);
    dst->addr = smtp_cmd_move(addr, src, dst);
    dst->params_raw = smtp_cmd_move(raw, src, dst);
    for (size_t i = 0; i < src->nparams; i++) {
        dst->params[i].key = smtp_cmd_move(src->params[i].key, src, dst);
        dst->params[i].value = smtp_cmd_move(src->params[i].value, src, dst);
    }
}

/* See smtp_cmd.h. */
const char *
smtp_cmd_check_utf8(const struct smtp_cmd *cmd, bool smtputf8)
{
    if (!cmd->addr_utf8 || smtputf8)
        return NULL;
    return cmd->verb == SMTP_MAIL ? smtp_sender_replies.utf8 : smtp_rcpt_replies.utf8;
}

/* BDAT chunk-size [LAST] (RFC 3030 2); the two words apart by spaces or TABs, as the verb
 * from its argument (smtp_cmd_parse). */
static const char *
smtp_parse_bdat(struct smtp_cmd *cmd)
{
    char *x = cmd->xbuf;
    size_t n = strlen(cmd->arg);
    memcpy(x, cmd->arg, n + 1);
    char *sp = strpbrk(x, " \t");
    if (sp != NULL) {
        *sp++ = '\0';
        while (*sp == ' ' || *sp == '\t')
            sp++;
        if (strcasecmp(sp, "LAST") != 0)
            return R_BDAT;
        cmd->last = true;
    }
    if (strlen(x) > 20 || smtp_parse_u64(x, &cmd->size) != 0)
        return R_BDAT;
    return NULL;
}

/* See smtp_cmd.h. */
int
smtp_cmd_tls_record(const char *data, size_t len)
{
    static const unsigned char head[] = { 0x16, 0x03 };

    for (size_t i = 0; i < len && i < 3; i++) {
        unsigned char c = (unsigned char)data[i];
        if (i < 2 ? c != head[i] : c > 0x04)
            return 0;
    }
    return len >= 3 ? 1 : -1;
}

int
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd, const char **reply)
{
    const char *err = NULL;

    cmd->verb = SMTP_UNKNOWN;
    cmd->arg = cmd->addr = cmd->params_raw = cmd->buf;
    cmd->buf[0] = '\0';
    cmd->nparams = 0;
    cmd->size = 0;
    cmd->body = SMTP_BODY_NONE;
    cmd->smtputf8 = false;
    cmd->addr_utf8 = false;
    cmd->last = false;

    /* the verb: up to the first space or TAB. RFC 5321 4.1.1 writes SP, but a TAB there is
     * white space to Postfix's smtpd (smtpd_token splits the line on it) and to its
     * clients: "BDAT<TAB>10 LAST" read as an unknown verb left the chunk's octets to be
     * read as commands (each a 500: the client's data taken for commands). */
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ' && line[vlen] != '\t')
        vlen++;
    const struct smtp_verb_def *def = NULL;
    if (vlen == 4 && !smtp_cmd_force_slow && (def = smtp_verb_quick(line)) != NULL)
        cmd->verb = def->verb;
    for (size_t i = 0; def == NULL && i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
        if (smtp_verbs[i].len == vlen && smtp_upper_eq(line, smtp_verbs[i].name, vlen)) {
            def = &smtp_verbs[i];
            cmd->verb = def->verb;
            break;
        }
    }
    if (len > SMTP_CMD_MAX_LINE) {
        err = R_TOO_LONG;
        goto fail;
    }
    /* A TLS record (handshake 0x16, version 0x03 0x0N) where a command belongs: a client
     * speaking TLS first on a plaintext port; a non-SMTP client like an HTTP one (Postfix's
     * smtpd_forbidden_commands default disconnects any line not starting with a letter). */
    if (len >= 2 && (unsigned char)line[0] == 0x16 && line[1] == 0x03) {
        cmd->verb = SMTP_HTTP;
        err = R_TLS_HELLO;
        goto fail;
    }
    /* NULs and other controls: the exact checks below only when the quick one finds any */
    bool ctl = smtp_any_ctl(line, len);
    if (ctl && memchr(line, '\0', len) != NULL) {
        err = R_NUL;
        goto fail;
    }
    if (def == NULL) {
        err = R_UNRECOGNIZED;
        goto fail;
    }
    if (def->verb == SMTP_HTTP) {
        err = R_HTTP;
        goto fail;
    }
    for (size_t i = 0; ctl && i < len; i++) {
        if (line[i] != '\t' && smtp_is_ctl((unsigned char)line[i])) {
            err = R_CTRL;
            goto fail;
        }
    }

    /* arg: after the verb and its space or TAB, trimmed of surrounding blanks */
    size_t s = vlen < len ? vlen + 1 : len;
    size_t e = len;
    while (s < e && (line[s] == ' ' || line[s] == '\t'))
        s++;
    while (e > s && (line[e - 1] == ' ' || line[e - 1] == '\t'))
        e--;
    memcpy(cmd->buf, line + s, e - s);
    cmd->buf[e - s] = '\0';
    cmd->arg = cmd->buf;
    cmd->addr = cmd->params_raw = cmd->buf + (e - s);   /* "" */

    bool has_arg = e > s;
    switch (def->mode) {
    case ARG_NONE:
        if (has_arg)
            err = def->syntax;
        break;
    case ARG_REQUIRED:
        if (!has_arg)
            err = def->syntax;
        break;
    case ARG_ANY:
        break;
    case ARG_SPECIAL:
        if (def->verb == SMTP_MAIL || def->verb == SMTP_RCPT)
            err = smtp_parse_path_cmd(cmd, def->verb == SMTP_MAIL, ctl);
        else if (def->verb == SMTP_BDAT)
            err = has_arg ? smtp_parse_bdat(cmd) : R_BDAT;
        break;
    }
    if (err != NULL)
        goto fail;
    return 0;

fail:
    *reply = err;
    return -1;
}
