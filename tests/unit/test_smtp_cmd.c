/* test_smtp_cmd.c — command line parsing: one labelled row per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "smtp_cmd.h"

struct cmd_row {
    const char *label;
    const char *line;
    size_t len;                 /* 0: strlen(line) */
    enum smtp_verb verb;
    const char *reply;          /* NULL: must parse */
    const char *arg;            /* checked when not NULL */
    const char *addr;           /* checked when not NULL */
    const char *params_raw;     /* checked when not NULL */
};

#define R_SYN "500 5.5.2 Syntax error, command unrecognized"
#define R_MAIL "501 5.5.4 Syntax: MAIL FROM:<address>"
#define R_RCPT "501 5.5.4 Syntax: RCPT TO:<address>"
#define R_BADS "501 5.1.7 Bad sender address syntax"
#define R_BADR "501 5.1.3 Bad recipient address syntax"

static const struct cmd_row rows[] = {
    { "EHLO", "EHLO mx.example.org", 0, SMTP_EHLO, NULL, "mx.example.org" },
    { "ehlo lower case", "ehlo x", 0, SMTP_EHLO, NULL, "x" },
    { "HELO trailing blanks trimmed", "HELO x \t", 0, SMTP_HELO, NULL, "x" },
    { "EHLO without name", "EHLO", 0, SMTP_EHLO, "501 5.5.4 Syntax: EHLO hostname" },
    { "HELO with only blanks", "HELO   ", 0, SMTP_HELO, "501 5.5.4 Syntax: HELO hostname" },
    { "empty line", "", 0, SMTP_UNKNOWN, R_SYN },
    { "unknown verb", "FOO bar", 0, SMTP_UNKNOWN, R_SYN },
    { "verb prefix is not a verb", "DAT", 0, SMTP_UNKNOWN, R_SYN },
    { "leading space", " QUIT", 0, SMTP_UNKNOWN, R_SYN },
    { "verb glued to arg", "MAIL:FROM:<a@b>", 0, SMTP_UNKNOWN, R_SYN },
    { "NUL in command", "NOOP a\0b", 8, SMTP_NOOP, "500 5.5.2 Syntax error, NUL character in command" },
    { "NUL in verb", "NO\0P", 4, SMTP_UNKNOWN, "500 5.5.2 Syntax error, NUL character in command" },
    { "bare CR in command", "NOOP a\rb", 0, SMTP_NOOP, "501 5.5.2 Syntax error, control character in command" },
    { "HTTP GET", "GET / HTTP/1.1", 0, SMTP_HTTP, "500 5.5.2 Syntax error, this is an SMTP server, not HTTP" },
    { "HTTP CONNECT", "CONNECT mx:25 HTTP/1.0", 0, SMTP_HTTP, "500 5.5.2 Syntax error, this is an SMTP server, not HTTP" },
    { "HTTP POST lower", "post /x", 0, SMTP_HTTP, "500 5.5.2 Syntax error, this is an SMTP server, not HTTP" },
    { "TLS ClientHello record (NULs inside)", "\x16\x03\x01\x02\x00\x01\x00", 7, SMTP_HTTP,
      "500 5.5.2 Syntax error, TLS handshake without STARTTLS" },
    { "0x16 alone is not a TLS record", "\x16", 0, SMTP_UNKNOWN, R_SYN },
    { "DATA", "DATA", 0, SMTP_DATA, NULL, "" },
    { "DATA trailing space", "DATA ", 0, SMTP_DATA, NULL, "" },
    { "DATA with argument", "DATA x", 0, SMTP_DATA, "501 5.5.4 Syntax: DATA" },
    { "RSET with argument", "RSET now", 0, SMTP_RSET, "501 5.5.4 Syntax: RSET" },
    { "QUIT", "quit", 0, SMTP_QUIT, NULL },
    { "QUIT with argument", "QUIT x", 0, SMTP_QUIT, "501 5.5.4 Syntax: QUIT" },
    { "STARTTLS", "STARTTLS", 0, SMTP_STARTTLS, NULL },
    { "STARTTLS with argument", "STARTTLS x", 0, SMTP_STARTTLS, "501 5.5.4 Syntax: STARTTLS" },
    { "NOOP with argument", "NOOP hello there", 0, SMTP_NOOP, NULL, "hello there" },
    { "HELP", "HELP", 0, SMTP_HELP, NULL, "" },
    { "VRFY needs an argument", "VRFY", 0, SMTP_VRFY, "501 5.5.4 Syntax: VRFY address" },
    { "VRFY", "VRFY user", 0, SMTP_VRFY, NULL, "user" },
    { "EXPN needs an argument", "EXPN", 0, SMTP_EXPN, "501 5.5.4 Syntax: EXPN list" },
    { "AUTH", "AUTH PLAIN AGFAAGI=", 0, SMTP_AUTH, NULL, "PLAIN AGFAAGI=" },
    { "AUTH needs a mechanism", "AUTH", 0, SMTP_AUTH, "501 5.5.4 Syntax: AUTH mechanism" },
    { "XCLIENT", "XCLIENT ADDR=1.2.3.4", 0, SMTP_XCLIENT, NULL, "ADDR=1.2.3.4" },
    { "BDAT", "BDAT 100", 0, SMTP_BDAT, NULL },
    { "BDAT LAST", "BDAT 0 LAST", 0, SMTP_BDAT, NULL },
    { "BDAT bad size", "BDAT x", 0, SMTP_BDAT, "501 5.5.4 Syntax: BDAT chunk-size [LAST]" },
    { "BDAT bad trailer", "BDAT 5 FIRST", 0, SMTP_BDAT, "501 5.5.4 Syntax: BDAT chunk-size [LAST]" },
    { "BDAT no size", "BDAT", 0, SMTP_BDAT, "501 5.5.4 Syntax: BDAT chunk-size [LAST]" },
    /* A TAB ends the verb as a space does (Postfix's smtpd splits on white space). Until
     * session 23 "BDAT<TAB>10" was an unknown verb and the chunk's octets were read as
     * commands. */
    { "TAB after BDAT", "BDAT\t10 LAST", 0, SMTP_BDAT, NULL, "10 LAST" },
    { "TAB between BDAT's size and LAST", "BDAT 10\tLAST", 0, SMTP_BDAT, NULL, "10\tLAST" },
    { "TAB after BDAT, bad size: the verb is named", "BDAT\tx", 0, SMTP_BDAT,
      "501 5.5.4 Syntax: BDAT chunk-size [LAST]" },
    { "TAB after MAIL", "MAIL\tFROM:<a@b.c>", 0, SMTP_MAIL, NULL, "FROM:<a@b.c>", "a@b.c", "" },
    { "TAB after FROM:", "MAIL FROM:\t<a@b.c> SIZE=10", 0, SMTP_MAIL, NULL, NULL, "a@b.c", "SIZE=10" },
    { "TAB after RCPT", "rcpt\tTO:<c@d.e>", 0, SMTP_RCPT, NULL, "TO:<c@d.e>", "c@d.e", "" },
    /* ... and before a parameter and between parameters, as Postfix takes them (until
     * session 24 "MAIL FROM:<a@b.c><TAB>SIZE=10" was 501); relayed with spaces */
    { "TAB before a MAIL parameter", "MAIL FROM:<a@b.c>\tSIZE=10", 0, SMTP_MAIL, NULL, NULL, "a@b.c", "SIZE=10" },
    { "TABs between MAIL parameters", "MAIL FROM:<a@b.c> \tSIZE=10\tBODY=8BITMIME", 0, SMTP_MAIL, NULL, NULL, "a@b.c",
      "SIZE=10 BODY=8BITMIME" },
    { "TAB before a RCPT parameter", "RCPT TO:<c@d.e>\tNOTIFY=NEVER", 0, SMTP_RCPT, NULL, NULL, "c@d.e", "NOTIFY=NEVER" },
    { "TAB then a bad parameter", "MAIL FROM:<a@b.c>\t=x", 0, SMTP_MAIL, "501 5.5.4 Bad parameter syntax" },
    { "TAB after EHLO", "EHLO\tmx.example.org", 0, SMTP_EHLO, NULL, "mx.example.org" },
    { "TABs after HELO", "HELO\t\tmx.example.org", 0, SMTP_HELO, NULL, "mx.example.org" },
    { "DATA then TAB", "DATA\t", 0, SMTP_DATA, NULL, "" },
    { "QUIT then TAB", "QUIT\t", 0, SMTP_QUIT, NULL, "" },
    { "DATA TAB argument", "DATA\tnow", 0, SMTP_DATA, "501 5.5.4 Syntax: DATA" },
    { "TAB before the verb", "\tQUIT", 0, SMTP_UNKNOWN, R_SYN },
    { "TAB inside a verb", "DA\tTA", 0, SMTP_UNKNOWN, R_SYN },

    { "MAIL simple", "MAIL FROM:<a@example.org>", 0, SMTP_MAIL, NULL, "FROM:<a@example.org>", "a@example.org", "" },
    { "MAIL lower case", "mail from:<a@b.c>", 0, SMTP_MAIL, NULL, NULL, "a@b.c" },
    { "MAIL space after colon", "MAIL FROM: <a@b.c>", 0, SMTP_MAIL, NULL, NULL, "a@b.c" },
    { "MAIL null sender", "MAIL FROM:<>", 0, SMTP_MAIL, NULL, NULL, "", "" },
    { "MAIL null sender with params", "MAIL FROM:<> SIZE=10 BODY=8BITMIME", 0, SMTP_MAIL, NULL, NULL, "", "SIZE=10 BODY=8BITMIME" },
    { "MAIL params trimmed", "MAIL FROM:<a@b.c>   SIZE=10  ", 0, SMTP_MAIL, NULL, NULL, "a@b.c", "SIZE=10" },
    { "MAIL missing <>", "MAIL FROM:a@b.c", 0, SMTP_MAIL, R_MAIL },
    /* RFC 3463 3.2 X.1.7: the path is the address's syntax (until session 22: R_MAIL) */
    { "MAIL missing >", "MAIL FROM:<a@b.c", 0, SMTP_MAIL, R_BADS },
    { "MAIL missing > with parameters", "MAIL FROM:<a@b.c SIZE=10", 0, SMTP_MAIL, R_BADS },
    { "MAIL lone <", "MAIL FROM:<", 0, SMTP_MAIL, R_BADS },
    { "MAIL missing FROM", "MAIL <a@b.c>", 0, SMTP_MAIL, R_MAIL },
    { "MAIL no argument", "MAIL", 0, SMTP_MAIL, R_MAIL },
    { "MAIL FROM without colon", "MAIL FROM <a@b.c>", 0, SMTP_MAIL, R_MAIL },
    { "MAIL junk after >", "MAIL FROM:<a@b.c>x", 0, SMTP_MAIL, R_MAIL },
    { "MAIL nested <", "MAIL FROM:<a<b@c.d>", 0, SMTP_MAIL, R_BADS },
    { "MAIL double >", "MAIL FROM:<a@b.c>>", 0, SMTP_MAIL, R_MAIL },
    { "MAIL no domain", "MAIL FROM:<user>", 0, SMTP_MAIL, R_BADS },
    { "MAIL postmaster is not a sender", "MAIL FROM:<postmaster>", 0, SMTP_MAIL, R_BADS },
    { "MAIL empty local part", "MAIL FROM:<@b.c>", 0, SMTP_MAIL, R_BADS },
    { "MAIL empty domain", "MAIL FROM:<a@>", 0, SMTP_MAIL, R_BADS },
    { "MAIL space in address", "MAIL FROM:<a b@c.d>", 0, SMTP_MAIL, R_BADS },
    { "MAIL tab in address", "MAIL FROM:<a\tb@c.d>", 0, SMTP_MAIL, R_BADS },
    { "MAIL bad domain char", "MAIL FROM:<a@b!c>", 0, SMTP_MAIL, R_BADS },
    { "MAIL domain double dot", "MAIL FROM:<a@b..c>", 0, SMTP_MAIL, R_BADS },
    { "MAIL address literal", "MAIL FROM:<a@[192.0.2.1]>", 0, SMTP_MAIL, NULL, NULL, "a@[192.0.2.1]" },
    { "MAIL IPv6 literal", "MAIL FROM:<a@[IPv6:2001:db8::1]>", 0, SMTP_MAIL, NULL, NULL, "a@[IPv6:2001:db8::1]" },
    { "MAIL broken literal", "MAIL FROM:<a@[192.0.2.1>", 0, SMTP_MAIL, R_BADS },
    { "MAIL quoted local part", "MAIL FROM:<\"john doe\"@b.c>", 0, SMTP_MAIL, NULL, NULL, "\"john doe\"@b.c" },
    { "MAIL quoted with > inside", "MAIL FROM:<\"a>b\"@c.d>", 0, SMTP_MAIL, NULL, NULL, "\"a>b\"@c.d" },
    { "MAIL quoted-pair", "MAIL FROM:<\"a\\\"b\"@c.d>", 0, SMTP_MAIL, NULL, NULL, "\"a\\\"b\"@c.d" },
    { "MAIL unbalanced quote", "MAIL FROM:<\"ab@c.d>", 0, SMTP_MAIL, R_BADS },
    { "MAIL quoted then junk", "MAIL FROM:<\"a\"b@c.d>", 0, SMTP_MAIL, R_BADS },
    { "MAIL source route stripped", "MAIL FROM:<@a.b,@c.d:u@e.f>", 0, SMTP_MAIL, NULL, NULL, "u@e.f" },
    { "MAIL source route without mailbox", "MAIL FROM:<@a.b:>", 0, SMTP_MAIL, R_BADS },
    { "MAIL bad source route", "MAIL FROM:<@a.b,c.d:u@e.f>", 0, SMTP_MAIL, R_BADS },
    { "MAIL UTF-8 address", "MAIL FROM:<j\xc3\xb6rg@b\xc3\xbc.de> SMTPUTF8", 0, SMTP_MAIL, NULL, NULL, "j\xc3\xb6rg@b\xc3\xbc.de", "SMTPUTF8" },
    { "MAIL UTF-8 local part without SMTPUTF8", "MAIL FROM:<j\xc3\xb6rg@b.de>", 0, SMTP_MAIL, "553 5.6.7 Non-ASCII sender address needs SMTPUTF8" },
    { "MAIL UTF-8 domain without SMTPUTF8", "MAIL FROM:<a@b\xc3\xbc.de> SIZE=10", 0, SMTP_MAIL, "553 5.6.7 Non-ASCII sender address needs SMTPUTF8" },
    { "MAIL broken UTF-8 even with SMTPUTF8", "MAIL FROM:<j\xc3rg@b.de> SMTPUTF8", 0, SMTP_MAIL, R_BADS },
    { "MAIL local part 64", "MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.c>", 0, SMTP_MAIL, NULL },
    /* RFC 5321 4.5.3.1: 64 is what every server must take, not a ceiling (session 21) */
    { "MAIL local part 65", "MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.c>", 0, SMTP_MAIL, NULL },
    { "MAIL Gmail forwarding sender, local part 73", "MAIL FROM:<gmailuser+caf_=website_8b506e99-b5c5-4e14-8294-f5ebd6083faa=mail.jam.in@gmail.com> SIZE=10569", 0, SMTP_MAIL, NULL, NULL, "gmailuser+caf_=website_8b506e99-b5c5-4e14-8294-f5ebd6083faa=mail.jam.in@gmail.com" },
    { "MAIL SRS sender", "MAIL FROM:<SRS0=3Ypr33=QM=crm.nothappyjohn.org.au=bounce+b.25211.6039846.eb7e7e8ba282f9d0@airquotes.com.au>", 0, SMTP_MAIL, NULL },
    { "MAIL SIZE", "MAIL FROM:<a@b.c> SIZE=12345", 0, SMTP_MAIL, NULL },
    { "MAIL SIZE not digits", "MAIL FROM:<a@b.c> SIZE=12k", 0, SMTP_MAIL, "501 5.5.4 Bad SIZE parameter syntax" },
    { "MAIL SIZE without value", "MAIL FROM:<a@b.c> SIZE", 0, SMTP_MAIL, "501 5.5.4 Bad SIZE parameter syntax" },
    { "MAIL SIZE empty value", "MAIL FROM:<a@b.c> SIZE=", 0, SMTP_MAIL, "501 5.5.4 Bad parameter syntax" },
    { "MAIL SIZE 21 digits", "MAIL FROM:<a@b.c> SIZE=123456789012345678901", 0, SMTP_MAIL, "501 5.5.4 Bad SIZE parameter syntax" },
    { "MAIL BODY bad", "MAIL FROM:<a@b.c> BODY=9BIT", 0, SMTP_MAIL, "501 5.5.4 Bad BODY parameter value" },
    { "MAIL SMTPUTF8 with value", "MAIL FROM:<a@b.c> SMTPUTF8=yes", 0, SMTP_MAIL, "501 5.5.4 Bad SMTPUTF8 parameter syntax" },
    { "MAIL bad keyword", "MAIL FROM:<a@b.c> -X=1", 0, SMTP_MAIL, "501 5.5.4 Bad parameter syntax" },
    { "MAIL '=' only", "MAIL FROM:<a@b.c> =", 0, SMTP_MAIL, "501 5.5.4 Bad parameter syntax" },
    { "MAIL value with =", "MAIL FROM:<a@b.c> X=a=b", 0, SMTP_MAIL, "501 5.5.4 Bad parameter syntax" },
    { "MAIL unknown params kept", "MAIL FROM:<a@b.c> AUTH=<> ENVID=x RET=HDRS", 0, SMTP_MAIL, NULL, NULL, "a@b.c", "AUTH=<> ENVID=x RET=HDRS" },
    { "MAIL 16 params", "MAIL FROM:<a@b.c> A B C D E F G H I J K L M N O P", 0, SMTP_MAIL, NULL },
    { "MAIL 17 params", "MAIL FROM:<a@b.c> A B C D E F G H I J K L M N O P Q", 0, SMTP_MAIL, "501 5.5.4 Too many parameters" },

    { "RCPT simple", "RCPT TO:<c@d.e>", 0, SMTP_RCPT, NULL, NULL, "c@d.e", "" },
    { "RCPT Postmaster without domain", "RCPT TO:<Postmaster>", 0, SMTP_RCPT, NULL, NULL, "Postmaster" },
    { "RCPT other local without domain", "RCPT TO:<webmaster>", 0, SMTP_RCPT, R_BADR },
    { "RCPT null", "RCPT TO:<>", 0, SMTP_RCPT, "501 5.1.3 Null recipient address not allowed" },
    { "RCPT FROM instead of TO", "RCPT FROM:<c@d.e>", 0, SMTP_RCPT, R_RCPT },
    { "RCPT space after colon", "RCPT TO: <c@d.e> NOTIFY=NEVER", 0, SMTP_RCPT, NULL, NULL, "c@d.e", "NOTIFY=NEVER" },
    { "RCPT missing <>", "RCPT TO:c@d.e", 0, SMTP_RCPT, R_RCPT },
    { "RCPT missing >", "RCPT TO:<c@d.e", 0, SMTP_RCPT, R_BADR },
    { "RCPT control char", "RCPT TO:<c\x01@d.e>", 0, SMTP_RCPT, "501 5.5.2 Syntax error, control character in command" },
    { "RCPT DEL char", "RCPT TO:<c\x7f@d.e>", 0, SMTP_RCPT, "501 5.5.2 Syntax error, control character in command" },
};

/* RFC 5321 4.1.2 / 4.5.3.1 / RFC 6531 address syntax, recipient side: one row per rule. */
#define L64 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LAB63 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define R_RDOM "501 5.1.3 Bad recipient address syntax: domain over 255 octets or a label over 63"
#define R_RLIT "553 5.1.3 Recipient address literal not supported"
struct addr_row {
    const char *label;
    const char *addr;           /* inside RCPT TO:<...> */
    const char *reply;          /* NULL: accepted */
    const char *want;           /* the address passed on, when accepted (NULL: same) */
    bool utf8;
};

static const struct addr_row addr_rows[] = {
    { "plain", "user@example.org", NULL },
    { "every atext", "a!#$%&'*+-/=?^_`{|}~z@example.org", NULL },
    { "dotted local part", "first.last@example.org", NULL },
    { "leading dot", ".user@example.org", R_BADR },
    { "trailing dot in local part", "user.@example.org", R_BADR },
    { "doubled dot", "us..er@example.org", R_BADR },
    { "lone dot", ".@example.org", R_BADR },
    { "bracket in local part", "us[er@example.org", R_BADR },
    { "comma in local part", "us,er@example.org", R_BADR },
    { "backslash unquoted", "us\\er@example.org", R_BADR },
    { "second @ unquoted", "user@other.test@example.org", R_BADR },
    { "local part 64", L64 "@example.org", NULL },
    { "local part 65", L64 "a@example.org", NULL },
    { "quoted 64 incl. quotes", "\"" L64 "\"@example.org", NULL },
    { "local part 192", L64 L64 L64 "@example.org", NULL },
    { "quoted local part kept exact", "\"John  Doe\"@example.org", NULL, "\"John  Doe\"@example.org" },
    { "quoted @ kept exact", "\"user@other\"@example.org", NULL },
    { "quoted-pair kept exact", "\"a\\\"b\"@example.org", NULL, "\"a\\\"b\"@example.org" },
    { "quoted dots need no rules", "\".a..b.\"@example.org", NULL },
    { "empty quoted local part", "\"\"@example.org", R_BADR },
    { "quoted then text", "\"a\"b@example.org", R_BADR },
    { "label 63", "u@" LAB63 ".example.org", NULL },
    { "label 64", "u@" LAB63 "b.example.org", R_RDOM },
    { "hyphen inside label", "u@mail-1.example.org", NULL },
    { "label starts with hyphen", "u@-mail.example.org", R_BADR },
    { "label ends with hyphen", "u@mail-.example.org", R_BADR },
    { "underscore tolerated", "u@mail_1.example.org", NULL },
    { "empty label", "u@example..org", R_BADR },
    { "domain starts with dot", "u@.example.org", R_BADR },
    { "one trailing dot", "u@example.org.", NULL, "u@example.org." },
    { "two trailing dots", "u@example.org..", R_BADR },
    { "domain is a dot", "u@.", R_BADR },
    { "bang in domain", "u@ex!ample.org", R_BADR },
    { "percent in domain", "u@ex%ample.org", R_BADR },
    { "IPv4 literal", "u@[192.0.2.1]", NULL },
    { "IPv6 literal", "u@[IPv6:2001:db8::1]", NULL },
    { "IPv6 literal lower-case tag", "u@[ipv6:::1]", NULL },
    { "IPv4 literal out of range", "u@[192.0.2.300]", R_BADR },
    { "IPv4 literal short", "u@[192.0.2]", R_BADR },
    { "IPv6 literal without tag", "u@[2001:db8::1]", R_RLIT },
    { "IPv6 literal broken", "u@[IPv6:2001:db8:::1]", R_BADR },
    { "domain name as literal", "u@[other.test]", R_BADR },
    { "general literal", "u@[x400:c=us;a=x]", R_RLIT },
    { "empty literal", "u@[]", R_BADR },
    { "literal with junk after", "u@[192.0.2.1]x", R_BADR },
    { "UTF-8 local part", "j\xc3\xb6rg@example.org", NULL, NULL, true },
    { "UTF-8 quoted local part", "\"j\xc3\xb6 rg\"@example.org", NULL, NULL, true },
    { "UTF-8 domain", "u@b\xc3\xbc" "cher.example", NULL, NULL, true },
    { "overlong UTF-8", "\xc0\xafuser@example.org", R_BADR },
    { "UTF-8 surrogate", "\xed\xa0\x80@example.org", R_BADR },
    { "truncated UTF-8 in domain", "u@b\xc3.example", R_BADR },
    { "Latin-1 octet", "j\xf6rg@example.org", R_BADR },
    { "source route stripped", "@relay.test,@hop.test:u@example.org", NULL, "u@example.org" },
    { "source route bad hop", "@relay..test:u@example.org", R_BADR },
    { "source route literal hop", "@[192.0.2.1]:u@example.org", NULL, "u@example.org" },
    { "Postmaster", "Postmaster", NULL },
    { "POSTMASTER", "POSTMASTER", NULL },
    { "postmaster quoted", "\"postmaster\"", R_BADR },
};

static void
test_addr_rows(void **state)
{
    (void)state;
    struct smtp_cmd *cmd = malloc(sizeof(*cmd));
    for (size_t r = 0; r < sizeof(addr_rows) / sizeof(addr_rows[0]); r++) {
        const struct addr_row *row = &addr_rows[r];
        char line[1100];
        const char *reply = NULL;
        snprintf(line, sizeof(line), "RCPT TO:<%s>", row->addr);
        memset(cmd, 0x5a, sizeof(*cmd));
        int rc = smtp_cmd_parse(line, strlen(line), cmd, &reply);
        if (row->reply == NULL && rc != 0)
            fail_msg("%s: refused with '%s'", row->label, reply);
        if (row->reply != NULL && (rc == 0 || strcmp(reply, row->reply) != 0))
            fail_msg("%s: rc %d reply '%s', want '%s'", row->label, rc, rc ? reply : "(none)", row->reply);
        if (rc != 0)
            continue;
        const char *want = row->want ? row->want : row->addr;
        if (strcmp(cmd->addr, want) != 0)
            fail_msg("%s: addr '%s', want '%s'", row->label, cmd->addr, want);
        if (cmd->addr_utf8 != row->utf8)
            fail_msg("%s: addr_utf8 %d", row->label, cmd->addr_utf8);
        /* a recipient's UTF-8 is judged against the transaction */
        const char *u = smtp_cmd_check_utf8(cmd, false);
        if (row->utf8 != (u != NULL) || smtp_cmd_check_utf8(cmd, true) != NULL)
            fail_msg("%s: smtp_cmd_check_utf8", row->label);
        if (u != NULL && strcmp(u, "553 5.6.7 Non-ASCII recipient address needs SMTPUTF8") != 0)
            fail_msg("%s: utf8 reply '%s'", row->label, u);
        /* the same address as a sender (Postmaster aside) */
        if (strncasecmp(row->addr, "postmaster", 10) == 0)
            continue;
        snprintf(line, sizeof(line), "MAIL FROM:<%s>%s", row->addr, row->utf8 ? " SMTPUTF8" : "");
        if (smtp_cmd_parse(line, strlen(line), cmd, &reply) != 0)
            fail_msg("%s: refused as a sender with '%s'", row->label, reply);
    }
    free(cmd);
}

static void
test_rows(void **state)
{
    (void)state;
    struct smtp_cmd *cmd = malloc(sizeof(*cmd));
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        const struct cmd_row *row = &rows[r];
        size_t len = row->len ? row->len : strlen(row->line);
        const char *reply = NULL;
        memset(cmd, 0x5a, sizeof(*cmd));
        int rc = smtp_cmd_parse(row->line, len, cmd, &reply);
        if (row->reply == NULL && rc != 0)
            fail_msg("%s: failed with '%s'", row->label, reply);
        if (row->reply != NULL && (rc != -1 || reply == NULL || strcmp(reply, row->reply) != 0))
            fail_msg("%s: rc %d reply '%s', want '%s'", row->label, rc, reply ? reply : "(null)", row->reply);
        if (cmd->verb != row->verb)
            fail_msg("%s: verb %s", row->label, smtp_verb_name(cmd->verb));
        if (rc != 0)
            continue;
        if (row->arg != NULL && strcmp(cmd->arg, row->arg) != 0)
            fail_msg("%s: arg '%s'", row->label, cmd->arg);
        if (row->addr != NULL && strcmp(cmd->addr, row->addr) != 0)
            fail_msg("%s: addr '%s'", row->label, cmd->addr);
        if (row->params_raw != NULL && strcmp(cmd->params_raw, row->params_raw) != 0)
            fail_msg("%s: params_raw '%s'", row->label, cmd->params_raw);
    }
    free(cmd);
}

static void
test_params(void **state)
{
    (void)state;
    struct smtp_cmd cmd;
    const char *reply;
    const char *l = "MAIL FROM:<a@b.c> size=1000 BODY=8bitmime SMTPUTF8 AUTH=<> X-FOO";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.size, 1000);
    assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
    assert_true(cmd.smtputf8);
    assert_int_equal(cmd.nparams, 5);
    assert_string_equal(cmd.params[0].key, "size");
    assert_string_equal(cmd.params[0].value, "1000");
    assert_string_equal(cmd.params[3].key, "AUTH");
    assert_string_equal(cmd.params[3].value, "<>");
    assert_string_equal(cmd.params[4].key, "X-FOO");
    assert_null(cmd.params[4].value);
    /* raw text and arg stay intact */
    assert_string_equal(cmd.params_raw, "size=1000 BODY=8bitmime SMTPUTF8 AUTH=<> X-FOO");
    assert_string_equal(cmd.arg, l + 5);
    /* a TAB separates parameters as a space does */
    l = "MAIL FROM:<a@b.c>\tSIZE=10\tBODY=7BIT";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.nparams, 2);
    assert_int_equal(cmd.size, 10);
    assert_int_equal(cmd.body, SMTP_BODY_7BIT);
    assert_string_equal(cmd.params[1].key, "BODY");

    l = "MAIL FROM:<a@b.c> BODY=BINARYMIME SIZE=99999999999999999999";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.body, SMTP_BODY_BINARYMIME);
    assert_true(cmd.size == UINT64_MAX);  /* saturates: over any limit */

    l = "MAIL FROM:<a@b.c> BODY=7BIT";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.body, SMTP_BODY_7BIT);
    assert_int_equal(cmd.size, 0);
    assert_false(cmd.smtputf8);

    l = "BDAT 4096 LAST";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.size, 4096);
    assert_true(cmd.last);
    /* TABs where the spaces were: the same chunk (session 23) */
    l = "BDAT\t4096\t LAST";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.verb, SMTP_BDAT);
    assert_int_equal(cmd.size, 4096);
    assert_true(cmd.last);
    l = "BDAT\t77";
    assert_int_equal(smtp_cmd_parse(l, strlen(l), &cmd, &reply), 0);
    assert_int_equal(cmd.size, 77);
    assert_false(cmd.last);
    assert_string_equal(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
    assert_string_equal(smtp_verb_name(SMTP_UNKNOWN), "UNKNOWN");
    assert_string_equal(smtp_verb_name(SMTP_HTTP), "HTTP");
}

/* A TLS record header where a command starts, told from its first octets (no line end). */
static void
test_tls_record(void **state)
{
    (void)state;
    assert_int_equal(smtp_cmd_tls_record("\x16\x03\x01\x00\x31", 5), 1);
    assert_int_equal(smtp_cmd_tls_record("\x16\x03\x03", 3), 1);
    assert_int_equal(smtp_cmd_tls_record("\x16\x03\x00", 3), 1);     /* SSL 3.0 */
    assert_int_equal(smtp_cmd_tls_record("\x16\x03\x04", 3), 1);
    assert_int_equal(smtp_cmd_tls_record("\x16\x03\x05", 3), 0);
    assert_int_equal(smtp_cmd_tls_record("\x16\x03", 2), -1);        /* wait for more */
    assert_int_equal(smtp_cmd_tls_record("\x16", 1), -1);
    assert_int_equal(smtp_cmd_tls_record("", 0), -1);
    assert_int_equal(smtp_cmd_tls_record("\x16\x02\x01", 3), 0);
    assert_int_equal(smtp_cmd_tls_record("\x17\x03\x03", 3), 0);    /* application data */
    assert_int_equal(smtp_cmd_tls_record("EHLO x", 6), 0);
    assert_int_equal(smtp_cmd_tls_record("E", 1), 0);
}

/* RFC 5321 4.5.3.1: path, domain, line length limits. */
static void
test_lengths(void **state)
{
    (void)state;
    struct smtp_cmd cmd;
    const char *reply;
    char line[1200], dom[300];

    /* domain of 255 octets: 63-octet labels */
    size_t d = 0;
    while (d < 255) {
        size_t n = 255 - d >= 64 ? 63 : 255 - d;
        memset(dom + d, 'x', n);
        d += n;
        if (d < 255)
            dom[d++] = '.';
    }
    dom[255] = '\0';
    /* <a@255> is 259 octets of path: over 256 */
    snprintf(line, sizeof(line), "RCPT TO:<a@%s>", dom);
    assert_int_equal(smtp_cmd_parse(line, strlen(line), &cmd, &reply), -1);
    assert_string_equal(reply, "501 5.1.3 Bad recipient address syntax: path over 256 octets");
    /* path of exactly 256 octets */
    snprintf(line, sizeof(line), "RCPT TO:<a@%s>", dom + 3);
    assert_int_equal(smtp_cmd_parse(line, strlen(line), &cmd, &reply), 0);
    /* the local part is bounded by the path alone: <250 x's@b.c> is 256 octets, 251 over */
    char lp[252];
    memset(lp, 'x', sizeof(lp));
    lp[250] = '\0';
    snprintf(line, sizeof(line), "RCPT TO:<%s@b.c>", lp);
    assert_int_equal(smtp_cmd_parse(line, strlen(line), &cmd, &reply), 0);
    lp[250] = 'x';
    lp[251] = '\0';
    snprintf(line, sizeof(line), "RCPT TO:<%s@b.c>", lp);
    assert_int_equal(smtp_cmd_parse(line, strlen(line), &cmd, &reply), -1);
    assert_string_equal(reply, "501 5.1.3 Bad recipient address syntax: path over 256 octets");

    /* line exactly 998 octets passes, 999 is too long */
    memset(line, 'x', sizeof(line));
    memcpy(line, "NOOP ", 5);
    assert_int_equal(smtp_cmd_parse(line, 998, &cmd, &reply), 0);
    assert_int_equal(strlen(cmd.arg), 993);
    assert_int_equal(smtp_cmd_parse(line, 999, &cmd, &reply), -1);
    assert_string_equal(reply, "500 5.5.2 Line too long");

    /* a long MAIL line with many long params fits the storage */
    size_t o = (size_t)snprintf(line, sizeof(line), "MAIL FROM:<a@b.c>");
    for (int i = 0; i < 16; i++)
        o += (size_t)snprintf(line + o, sizeof(line) - o, " K%d=%055d", i, i);
    assert_true(o <= 998);
    assert_int_equal(smtp_cmd_parse(line, o, &cmd, &reply), 0);
    assert_int_equal(cmd.nparams, 16);
    assert_string_equal(cmd.params[15].key, "K15");
}

/* Every octet at every position of an argument (lengths around the 8-octet words of the
 * quick control check): a NUL is R_NUL, another control but TAB is R_CTRL, anything else
 * parses; and every verb in any case mix is found (the verb compare folds case itself). */
static void
test_ctl_every_octet(void **state)
{
    (void)state;
    static struct smtp_cmd cmd;
    char line[64];
    for (size_t n = 6; n <= 30; n++) {
        for (size_t pos = 5; pos < n; pos++) {
            for (int v = 0; v < 256; v++) {
                const char *reply = NULL;
                memcpy(line, "NOOP ", 5);
                memset(line + 5, 'a', n - 5);
                line[pos] = (char)v;
                int rc = smtp_cmd_parse(line, n, &cmd, &reply);
                if (v == 0) {
                    assert_int_equal(rc, -1);
                    assert_string_equal(reply, "500 5.5.2 Syntax error, NUL character in command");
                } else if ((v < 0x20 && v != '\t') || v == 0x7f) {
                    assert_int_equal(rc, -1);
                    assert_string_equal(reply, "501 5.5.2 Syntax error, control character in command");
                } else {
                    assert_int_equal(rc, 0);
                }
                assert_int_equal(cmd.verb, SMTP_NOOP);
            }
        }
    }
    static const char *const verbs[] = { "helo x", "Ehlo x", "mAIL FROM:<a@b.c>", "rcpt to:<a@b.c>", "dAtA",
                                         "rset", "starttls", "xclient A=b", "bdat 1 last" };
    static const enum smtp_verb want[] = { SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA,
                                           SMTP_RSET, SMTP_STARTTLS, SMTP_XCLIENT, SMTP_BDAT };
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        const char *reply = NULL;
        assert_int_equal(smtp_cmd_parse(verbs[i], strlen(verbs[i]), &cmd, &reply), 0);
        assert_int_equal(cmd.verb, want[i]);
    }
    /* octets that fold to a verb's letters only when they are that letter */
    static const char *const near[] = { "MAI\x0c", "MAI\xcc", "MA\x09L", "M@IL", "QUI\x14" };
    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
        const char *reply = NULL;
        assert_int_equal(smtp_cmd_parse(near[i], strlen(near[i]), &cmd, &reply), -1);
        assert_int_equal(cmd.verb, SMTP_UNKNOWN);
    }
}

/* A string of c: NULL, or inside c's own buffers. */
static void assert_own(const struct smtp_cmd *c, const char *p)
{
    if (p == NULL)
        return;
    assert_true((p >= c->buf && p < c->buf + sizeof(c->buf)) || (p >= c->xbuf && p < c->xbuf + sizeof(c->xbuf)));
}

/* smtp_cmd_copy gives what a fresh parse gives, in the copy's own buffers: every row that
 * parses, the source then overwritten, the copy's buffers filled with junk before. */
static void
test_copy(void **state)
{
    (void)state;
    static struct smtp_cmd a, b, c;
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        const struct cmd_row *row = &rows[r];
        size_t len = row->len ? row->len : strlen(row->line);
        const char *reply = NULL;
        if (smtp_cmd_parse(row->line, len, &a, &reply) != 0)
            continue;
        memset(&b, 0xa5, sizeof(b));
        smtp_cmd_copy(&b, &a);
        memset(&a, 0x5a, sizeof(a));
        assert_int_equal(smtp_cmd_parse(row->line, len, &c, &reply), 0);
        assert_int_equal(b.verb, c.verb);
        assert_string_equal(b.arg, c.arg);
        assert_string_equal(b.addr, c.addr);
        assert_string_equal(b.params_raw, c.params_raw);
        assert_own(&b, b.arg);
        assert_own(&b, b.addr);
        assert_own(&b, b.params_raw);
        assert_int_equal(b.nparams, c.nparams);
        for (size_t i = 0; i < c.nparams; i++) {
            assert_own(&b, b.params[i].key);
            assert_own(&b, b.params[i].value);
            assert_string_equal(b.params[i].key, c.params[i].key);
            assert_int_equal(b.params[i].value == NULL, c.params[i].value == NULL);
            if (c.params[i].value != NULL)
                assert_string_equal(b.params[i].value, c.params[i].value);
        }
        assert_int_equal(b.size, c.size);
        assert_int_equal(b.body, c.body);
        assert_int_equal(b.smtputf8, c.smtputf8);
        assert_int_equal(b.addr_utf8, c.addr_utf8);
        assert_int_equal(b.last, c.last);
    }
}

/* line parses the same with the quick forms and without them (smtp_cmd_force_slow): the
 * return, the reply, the verb and every field. */
static void
parse_both_same(const char *line, size_t len)
{
    static struct smtp_cmd a, b;
    const char *ra = NULL, *rb = NULL;
    bool was = smtp_cmd_force_slow;

    smtp_cmd_force_slow = false;
    int ca = smtp_cmd_parse(line, len, &a, &ra);
    smtp_cmd_force_slow = true;
    int cb = smtp_cmd_parse(line, len, &b, &rb);
    smtp_cmd_force_slow = was;
    if (ca != cb || a.verb != b.verb || (ca != 0 && ra != rb))
        fail_msg("'%.*s': quick %d %s '%s', slow %d %s '%s'", (int)len, line, ca, smtp_verb_name(a.verb),
                 ca ? ra : "", cb, smtp_verb_name(b.verb), cb ? rb : "");
    if (ca != 0)
        return;
    assert_string_equal(a.arg, b.arg);
    assert_string_equal(a.addr, b.addr);
    assert_string_equal(a.params_raw, b.params_raw);
    assert_int_equal(a.nparams, b.nparams);
    assert_int_equal(a.size, b.size);
    assert_int_equal(a.addr_utf8, b.addr_utf8);
}

/* The quick forms against the octet loops: every row; every four-octet verb over letters
 * of both cases, their neighbours under the case fold ('@', '`', 0xcd...) and a space; every
 * path of up to 4 octets over the octets the path scan treats apart ('<', '>', '"', '\\',
 * TAB, '@', a letter), inside MAIL and RCPT, with and without parameters. */
static void
test_quick_same(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
        parse_both_same(rows[r].line, rows[r].len ? rows[r].len : strlen(rows[r].line));

    static const char vo[] = { 'M', 'm', 'A', 'a', 'I', 'L', 'l', 'R', 'C', 'P', 'T', 't', 'D', 'Q', 'U', 'q',
                               '@', '`', (char)0xcd, (char)0xc1, ' ', '\0' };
    char line[64];
    for (size_t i = 0; i < sizeof(vo) * sizeof(vo) * sizeof(vo) * sizeof(vo); i++) {
        size_t k = i;
        for (int j = 0; j < 4; j++) {
            line[j] = vo[k % sizeof(vo)];
            k /= sizeof(vo);
        }
        memcpy(line + 4, " FROM:<a@b.c>", 13);
        parse_both_same(line, 17);
        parse_both_same(line, 4);
    }
    /* every octet at every place of "FROM:" and "TO:" (and of the space before them) */
    static const char *const pfx[] = { "MAIL FROM:<a@b.c>", "RCPT TO:<a@b.c>", "MAIL FROM:", "RCPT TO:" };
    for (size_t p = 0; p < sizeof(pfx) / sizeof(pfx[0]); p++) {
        size_t len = strlen(pfx[p]);
        for (size_t at = 4; at < (pfx[p][0] == 'M' ? 10u : 8u); at++)
            for (int c = 0; c < 256; c++) {
                memcpy(line, pfx[p], len);
                line[at] = (char)c;
                parse_both_same(line, len);
                parse_both_same(line, at + 1);
            }
    }
    static const char po[] = { '<', '>', '"', '\\', '\t', '@', 'a' };
    static const char *const pre[] = { "MAIL FROM:<", "RCPT TO:<", "MAIL FROM:<x@y.z" };
    static const char *const post[] = { "", ">", "@b.c>", "@b.c> SIZE=10", "\"@b.c> X=<y>" };
    for (size_t n = 0; n <= 4; n++) {
        size_t count = 1;
        for (size_t j = 0; j < n; j++)
            count *= sizeof(po);
        for (size_t i = 0; i < count; i++) {
            char mid[8];
            size_t k = i;
            for (size_t j = 0; j < n; j++) {
                mid[j] = po[k % sizeof(po)];
                k /= sizeof(po);
            }
            for (size_t a = 0; a < 3; a++)
                for (size_t b = 0; b < 5; b++) {
                    int len = snprintf(line, sizeof(line), "%s%.*s%s", pre[a], (int)n, mid, post[b]);
                    parse_both_same(line, (size_t)len);
                }
        }
    }
}

static int
slow_on(void **state)
{
    (void)state;
    smtp_cmd_force_slow = true;
    return 0;
}

static int
slow_off(void **state)
{
    (void)state;
    smtp_cmd_force_slow = false;
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_ctl_every_octet),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_tls_record),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_addr_rows),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_quick_same),
    };
    /* the whole set with the quick forms, then again with the octet loops only */
    int rc = cmocka_run_group_tests_name("smtp_cmd", tests, NULL, NULL);
    return rc + cmocka_run_group_tests_name("smtp_cmd_slow", tests, slow_on, slow_off);
}
