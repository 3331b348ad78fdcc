/* fuzz_rules_scan.c — the rules engine's scan of a message: any octets as the message (the
 * header block, MIME parts, HTML, URIs, Received fields, addresses), through every view and
 * every eval mxgate implements (tests/fuzz/fuzz_rules_scan.cf: one rule per eval with
 * SpamAssassin's own arguments, a sample of the stock regex rules, then rules/default.rules).
 * The first octet chooses: the envelope from the first line (TAB-separated HELO, MAIL FROM,
 * rDNS, client IP, recipients) or none, a body limit (max_body, so the header-only path runs),
 * and a classifier verdict for check_bayes. Checks, beyond no crash, leak or UB: the scan with
 * the multi-pattern prefilter and the scan with PCRE2 alone give the same rules (hit, missed,
 * unknown) and the same score, unless either ran out of its time budget; the result's hits are
 * sorted by name, their scores add up to the total, and the verdict's action is one a hit has.
 * After the scan, what the report and add_header read from it: the header view's tags
 * (rules_message_tag: HEADER(...), RELAYS*, LASTEXTERNAL*), each a string, and the body,
 * rawbody and URI lines (rules_scratch_foreach_line), each read to its length, the body
 * lines SpamAssassin's cut of its paragraphs (check_body_lines).
 *
 * The spill mode: a first octet of bit 1 set and high nibble 0 (a body limit of 0, the same
 * as bit 1 clear, so no other mode is lost) repeats the body (what follows the first empty
 * line) to FZ_SPILL_BODY octets, the last copy cut: a paragraph of one text part then grows
 * past the body view's 64 KiB hold (rules_view.c, rules_text_spill), which no input of
 * max_len 4096 reached (test_rules_spill checks the lines it cuts; here it runs under the
 * sanitizers and the prefilter check on any text). About 1 input in 32 when the first octet
 * is random; each such scan reads 80 KiB (the cost: docs/fuzzing.md). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/bayes.h"
#include "rules/eval_int.h"
#include "rules/match.h"
#include "rules/rules.h"
#include "rules/rules_int.h"

static struct rules_set *fz_rs;
/* The two scratches, kept for the process as a worker keeps its pool's (rules.c's
 * rules_worker_take_scratch): a scan starts from whatever the message before it left, the
 * path mxgate runs, and the scratches' set-up (a Hyperscan scratch per prefilter database,
 * the 48 KiB eval_msg, a PCRE2 JIT stack, the evals' patterns) is paid once, not per input. */
static struct rules_scratch *fz_pre, *fz_pcre;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *globs[2] = { MX_SOURCE_DIR "/tests/fuzz/fuzz_rules_scan.cf",
                             MX_SOURCE_DIR "/rules/default.rules" };
    struct rules_opts o = { .client_relay = true, .hostname = "mx.example" };
    /* a rule with an error is left out (the error is printed as FILE:LINE:COL): the target
     * then fuzzes a little less than it says, which the log shows; no set at all is fatal */
    int errors = rules_set_load_opts(globs, 2, &fz_rs, stderr, RULES_PREFILTER_SYNC, &o);
    if (fz_rs == NULL)
        abort();
    if (errors != 0)
        fprintf(stderr, "fuzz_rules_scan: %d rule errors, those rules left out "
                "(tests/fuzz/gen_rules_scan_cf.py regenerates the set)\n", errors);
    fz_pre = rules_scratch_new(fz_rs);
    fz_pcre = rules_scratch_new(fz_rs);
    if (fz_pre == NULL || fz_pcre == NULL)
        abort();
    rules_scratch_set_prefilter(fz_pcre, false);
    /* a library that fails rules/match.c's self-test (vectorscan 5.4.9 on AVX-512) gets no
     * prefilter: the prefilter-vs-PCRE2 check then compares PCRE2 with itself */
    const struct match_selftest *t = match_prefilter_selftest();
    if (!t->ok)
        fprintf(stderr, "fuzz_rules_scan: libhs %s failed the prefilter's self-test (%s): no "
                "prefilter, its check against PCRE2 checks nothing; run with Hyperscan\n",
                t->version, t->probe);
    return 0;
}

/* Every rule's outcome after a scan, as "name=value," in one string (the order of
 * rules_scratch_foreach_hit, the same for both scratches). */
struct outcome { char *s; size_t len, cap; };

static void outcome_cb(const char *name, double value, void *arg)
{
    struct outcome *o = arg;
    char buf[160];
    int n = isnan(value) ? snprintf(buf, sizeof(buf), "%s=?,", name)
                         : snprintf(buf, sizeof(buf), "%s=%.17g,", name, value);
    if (n < 0 || (size_t)n >= sizeof(buf))
        abort();
    if (o->len + (size_t)n + 1 > o->cap) {
        o->cap = (o->len + (size_t)n + 1) * 2;
        o->s = realloc(o->s, o->cap);
    }
    memcpy(o->s + o->len, buf, (size_t)n + 1);
    o->len += (size_t)n;
}

/* the tags add_header and the report take from the header view (addhdr_tag_from_message) */
static const char *const fz_tags[] = {
    "HEADER(From:addr)", "HEADER(To:name)", "HEADER(Subject)", "HEADER(ALL)",
    "HEADER(EnvelopeFrom)", "HEADER(Received:ip)", "HEADER(X-Spam-Relays-Untrusted)", "HEADER(",
    "HEADER()", "RELAYSTRUSTED", "RELAYSUNTRUSTED", "RELAYSINTERNAL", "RELAYSEXTERNAL",
    "LASTEXTERNALIP", "LASTEXTERNALRDNS", "LASTEXTERNALHELO",
};

static void line_cb(const char *line, size_t len, void *arg)
{
    size_t *sum = arg;
    for (size_t i = 0; i < len; i++)       /* every octet of the line is the scratch's */
        *sum += (unsigned char)line[i];
}

/* The body view's lines, kept for check_body_lines. */
struct fz_lines { char *p; size_t n, cap, *len, nl, capl; };

static void lines_keep_cb(const char *line, size_t len, void *arg)
{
    struct fz_lines *l = arg;
    if (l->n + len > l->cap) {
        l->cap = (l->n + len) * 2;
        l->p = realloc(l->p, l->cap);
    }
    if (l->nl == l->capl) {
        l->capl = l->capl ? 2 * l->capl : 64;
        l->len = realloc(l->len, l->capl * sizeof(size_t));
    }
    if ((len && l->p == NULL) || l->len == NULL)
        abort();
    if (len)
        memcpy(l->p + l->n, line, len);
    l->n += len;
    l->len[l->nl++] = len;
}

/* The body lines are SpamAssassin's cut of its paragraphs (split_into_array_of_short_lines
 * on each piece ending in "\n"), the spill's cuts too: a line not ending in "\n" (but the
 * view's last, an empty one aside) was cut from a rest (it and the lines after it to one
 * ending in "\n") of more than 2048 octets, after the last space of the rest's first 2049
 * octets, or at 2048 when there is none. */
static void check_body_lines(const struct fz_lines *l)
{
    size_t off = 0;
    for (size_t i = 0; i + 1 < l->nl; off += l->len[i++]) {
        size_t n = l->len[i], rest = 0, o = off, j, k;
        if (n == 0 || l->p[off + n - 1] == '\n')
            continue;
        for (j = i; j < l->nl && rest <= 2048; o += l->len[j++]) {
            rest += l->len[j];
            if (l->len[j] && l->p[o + l->len[j] - 1] == '\n')
                break;
        }
        if (rest <= 2048 && j == l->nl && l->nl >= RULES_MAX_LINES)
            continue;       /* the view ends at its line bound: the rest is not all there */
        if (rest <= 2048)
            abort();
        for (k = 2049; k > 0 && l->p[off + k - 1] != ' '; k--)
            ;
        if (n != (k ? k : 2048))
            abort();
    }
}

static void check_after_scan(struct rules_scratch *sc)
{
    size_t sum = 0;
    for (size_t i = 0; i < sizeof(fz_tags) / sizeof(fz_tags[0]); i++) {
        char *v = rules_message_tag(sc, fz_tags[i]);
        if (v == NULL)
            abort();
        sum += strlen(v);
        free(v);
    }
    rules_scratch_foreach_line(sc, RULE_BODY, line_cb, &sum);
    /* unless the freemail evals blanked URLs and addresses in the lines, as SA's
     * _parse_body does in its body array */
    if (sc->ctx.m == NULL || !sc->ctx.m->fm_mutated) {
        struct fz_lines body = { 0 };
        rules_scratch_foreach_line(sc, RULE_BODY, lines_keep_cb, &body);
        check_body_lines(&body);
        free(body.p);
        free(body.len);
    }
    rules_scratch_foreach_line(sc, RULE_RAWBODY, line_cb, &sum);
    rules_scratch_foreach_line(sc, RULE_URI, line_cb, &sum);
    volatile size_t sink = sum;
    (void)sink;
}

static void check_result(const struct rules_result *r)
{
    double sum = 0;
    bool action_seen = r->action == RULE_ACT_NONE;
    for (size_t i = 0; i < r->n; i++) {
        if (i > 0 && strcmp(r->v[i - 1].name, r->v[i].name) >= 0)
            abort();
        sum += r->v[i].score;
        if (r->v[i].action == r->action)
            action_seen = true;
    }
    if (fabs(sum - r->score) > 1e-6 * (1 + fabs(sum)) || !action_seen)
        abort();
}

/* What a message leaves in a scratch until the next scan (the eval state's arena but its
 * first chunk, the header fields' copies) freed now, so an input's mallocs and frees
 * balance and libFuzzer does not run it again under its leak check (session 16: half the
 * inputs were, with scratches that kept it); the next scan resets the rest as it would. */
static void fz_scratch_release(struct rules_scratch *sc)
{
    eval_msg_reset(sc->em);
    rules_scratch_clear_headers(sc);
    rules_scratch_set_bayes(sc, NULL);   /* br was the input's */
}

#define FZ_SPILL_BODY (80u << 10)

/* msg with its body repeated to FZ_SPILL_BODY octets, in a new buffer; NULL (scan msg as it
 * is) when it has no empty line or nothing after it */
static char *fz_spill_message(const char *msg, size_t len, size_t *out_len)
{
    size_t hdr = 0;
    for (size_t i = 0; i < len && hdr == 0; i++) {
        if (msg[i] != '\n')
            continue;
        if (i == 0 || msg[i - 1] == '\n')
            hdr = i + 1;
        else if (msg[i - 1] == '\r' && (i == 1 || msg[i - 2] == '\n'))
            hdr = i + 1;
    }
    if (hdr == 0 || hdr == len)
        return NULL;
    size_t body = len - hdr;
    char *m = malloc(hdr + FZ_SPILL_BODY);
    if (m == NULL)
        abort();
    memcpy(m, msg, hdr);
    for (size_t o = 0; o < FZ_SPILL_BODY; o += body)
        memcpy(m + hdr + o, msg + hdr, FZ_SPILL_BODY - o < body ? FZ_SPILL_BODY - o : body);
    *out_len = hdr + FZ_SPILL_BODY;
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;

    /* the envelope from the first line: HELO, MAIL FROM, rDNS, client IP, recipients */
    struct rules_envelope env = { 0 }, *envp = NULL;
    char *line = NULL;
    const char *rcpts[4];
    if (flags & 1) {
        const char *nl = memchr(msg, '\n', len);
        size_t ll = nl ? (size_t)(nl - msg) : len;
        line = malloc(ll + 1);
        memcpy(line, msg, ll);
        line[ll] = '\0';
        msg += nl ? ll + 1 : ll;
        len -= nl ? ll + 1 : ll;
        char *f[8] = { 0 }, *save = NULL;
        size_t nf = 0;
        for (char *t = strtok_r(line, "\t", &save); t && nf < 8; t = strtok_r(NULL, "\t", &save))
            f[nf++] = t;
        env.helo = f[0];
        env.mail_from = f[1];
        env.rdns = f[2];
        env.client_ip = f[3];
        for (size_t i = 4; i < nf; i++)
            rcpts[env.nrcpts++] = f[i];
        env.rcpts = rcpts;
        envp = &env;
    }
    char *spill = NULL;
    if ((flags & 0xf2) == 0x02 && (spill = fz_spill_message(msg, len, &len)) != NULL)
        msg = spill;
    size_t max_body = flags & 2 ? (size_t)(flags >> 4) * 64 : 0;
    struct bayes_result br = { .available = flags & 4, .scanned = flags & 8,
                               .prob = (double)(flags >> 4) / 15.0, .ntokens = 20, .nknown = 20,
                               .nused = 15, .why = "untrained" };
    rules_scratch_set_bayes(fz_pre, flags & 12 ? &br : NULL);
    rules_scratch_set_bayes(fz_pcre, flags & 12 ? &br : NULL);

    struct rules_result ra, rb;
    struct outcome oa = { 0 }, ob = { 0 };
    rules_set_scan(fz_rs, fz_pre, msg, len, envp, NULL, max_body, &ra);
    rules_scratch_foreach_hit(fz_rs, fz_pre, outcome_cb, &oa);
    check_after_scan(fz_pre);
    rules_set_scan(fz_rs, fz_pcre, msg, len, envp, NULL, max_body, &rb);
    rules_scratch_foreach_hit(fz_rs, fz_pcre, outcome_cb, &ob);
    check_result(&ra);
    check_result(&rb);
    if (!ra.over_budget && !rb.over_budget &&
        (oa.len != ob.len || (oa.len && memcmp(oa.s, ob.s, oa.len) != 0) || ra.n != rb.n ||
         ra.score != rb.score || ra.action != rb.action || ra.body_skipped != rb.body_skipped)) {
        fprintf(stderr, "prefilter: %.*s\npcre2:     %.*s\n", (int)oa.len, oa.s ? oa.s : "",
                (int)ob.len, ob.s ? ob.s : "");
        abort();
    }
    rules_result_free(&ra);
    rules_result_free(&rb);
    free(oa.s);
    free(ob.s);
    free(line);
    free(spill);
    fz_scratch_release(fz_pre);
    fz_scratch_release(fz_pcre);
    return 0;
}
