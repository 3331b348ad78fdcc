/* received.c — Received headers into relays, and the trust path; see received.h.
 *
 * The parse follows SA 4.0.1's Metadata/Received.pm step by step: normalise the line, skip
 * what SA skips, cut the date, pick up id/helo/by/auth/envelope-from anywhere, then try the
 * MTA dialects in SA's order (one MTA-specific section chosen by a marker, then the general
 * patterns, then the handovers to ignore). Each dialect is a row of rcvd_rows below: a
 * regex and which group gives which field. The patterns describe header formats and are
 * kept as SA has them so that both read a header the same way. */
#include "received.h"

#include "match.h"
#include "rule_parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* SA's IP_ADDRESS (IPv4, IPv6, IPv4-mapped) and LOCALHOST, as PCRE2 subpatterns */
#define RX_IP4 "(?:1\\d\\d|2[0-4]\\d|25[0-5]|[1-9]\\d|\\d)"
#define RX_IPV4 RX_IP4 "\\." RX_IP4 "\\." RX_IP4 "\\." RX_IP4
#define RX_H16 "[a-f0-9]{1,4}"
#define RX_IP "(?i:\\b(?<!:)" RX_IPV4 "\\b|(?:IPv6:|(?<![a-f0-9:]))(?:" \
	"(?:(?:" RX_H16 ":){6}|::(?:" RX_H16 ":){0,5}|(?:" RX_H16 ":){1,5}:|" \
	RX_H16 "::(?:" RX_H16 ":){1,4}|(?:" RX_H16 ":){2}:(?:" RX_H16 ":){1,3}|" \
	"(?:" RX_H16 ":){3}:(?:" RX_H16 ":){1,2}|(?:" RX_H16 ":){4}:" RX_H16 ":)" RX_IPV4 "|" \
	"(?:" RX_H16 ":){7}" RX_H16 "|:(?::" RX_H16 "){1,7}|(?:" RX_H16 ":){1,7}:|" \
	"(?:" RX_H16 ":){1,6}:" RX_H16 "|(?:" RX_H16 ":){1,5}(?::" RX_H16 "){1,2}|" \
	"(?:" RX_H16 ":){1,4}(?::" RX_H16 "){1,3}|(?:" RX_H16 ":){1,3}(?::" RX_H16 "){1,4}|" \
	"(?:" RX_H16 ":){1,2}(?::" RX_H16 "){1,5}|" RX_H16 ":(?::" RX_H16 "){1,6}|::" \
	")(?![a-f0-9:]))"
#define RX_LH "(?i:localhost(?:\\.localdomain)?|\\b(?<!:)127\\.0\\.0\\.1\\b|" \
	"(?:IPv6:|(?<![a-f0-9:]))(?:(?:0{1,4}:){5}ffff:|::(?:0{1,4}:){0,4}ffff:)127\\.0\\.0\\.1|" \
	"(?:IPv6:|(?<![a-f0-9:]))(?:(?:0{1,4}:){7}0{0,3}1|:(?::0{1,4}){0,6}:0{0,3}1)(?![a-f0-9:]))"

/* What a row does besides filling fields. */
#define RW_DNS        0x001u  /* the MTA looks rDNS up: empty rdns = none */
#define RW_NODNS      0x002u  /* it does not */
#define RW_SKIP       0x004u  /* a handover SA ignores: return 0 */
#define RW_RDNS_UNK   0x008u  /* rdns "unknown" means none */
#define RW_HELO_RDNS  0x010u  /* helo = rdns */
#define RW_SUB        0x020u  /* the sub group holds helo=X ident=Y */
#define RW_IDENT_AT   0x040u  /* drop a trailing '@' from ident */
#define RW_NO_ID      0x080u  /* id = '' */
#define RW_IDENT_PFX  0x100u  /* rdns may start with IDENT:x@ or x@ (sendmail) */
#define RW_SOFTDNS    0x200u  /* rdns "softdnserr" = not looked up (couriertcpd) */
#define RW_XMAIL      0x400u  /* id <X>, from <Y> */
#define RW_UNKNOWN_DNS 0x800u /* rdns "UNKNOWN" = no lookup recorded, else looked up */
#define RW_FETCHER    0x1000u /* POP/IMAP fetch: restart the trust walk, skip */
#define RW_QMAIL      0x2000u /* the qmail family (sub-patterns below) */
#define RW_EXIM_ODD   0x4000u /* Exim's odd formats: pick up bits, maybe fall through */
#define RW_MAY_IP     0x8000u /* ip from "^IP " if present (hotmail HTTP) */
#define RW_QMS        0x10000u /* qmail-scanner: skip, its envelope-from goes to the next */
#define RW_NO_BY      0x20000u /* by = '' (the synthetic X-Originating-IP relay) */

enum { SEC_GENERAL = 0, SEC_SMTPSVC, SEC_MSSMTP, SEC_XMAIL, SEC_ECEL, SEC_EXIM, SEC_POSTFIX,
	SEC_SCALIX, SEC_DOMINO, SEC_N };

/* Section markers, tried in order; the first that matches picks its rows (SA's elsif). */
static const char *const rcvd_sections[SEC_N] = {
	[SEC_SMTPSVC] = " SMTPSVC",
	[SEC_MSSMTP] = " with (?:Microsoft SMTP Server|mapi id) (?:\\([^\\)]+\\) )?\\d+\\.\\d+\\.\\d+\\.\\d+(?:$| )",
	[SEC_XMAIL] = "\\[XMail ",
	[SEC_ECEL] = "\\(ecelerity\\b",
	[SEC_EXIM] = "Exim",
	[SEC_POSTFIX] = " \\(Postfix\\) with",
	[SEC_SCALIX] = "\\(Scalix SMTP Relay",
	[SEC_DOMINO] = " \\(Lotus Domino ",
};

struct rcvd_row {
	unsigned char sec;
	const char *guard;        /* must match first (NULL: none) */
	const char *unless;       /* must not match (NULL: none) */
	const char *re;
	signed char helo, rdns, ip, by, ident, sub;   /* group numbers, 0 = none */
	unsigned flags;
};

#define G(h, r, i, b, id, s) h, r, i, b, id, s

static const struct rcvd_row rcvd_rows[] = {
	/* ---- Microsoft SMTPSVC */
	{ SEC_SMTPSVC, NULL, NULL, "^(\\S*) \\(\\[(" RX_IP ")\\][^\\)]{0,40}\\) by (\\S+) with Microsoft SMTPSVC",
	  G(1, 0, 2, 3, 0, 0), 0 },
	{ SEC_SMTPSVC, NULL, NULL, "^mail pickup service by (\\S+) with Microsoft SMTPSVC$", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	/* ---- Microsoft SMTP Server */
	{ SEC_MSSMTP, NULL, NULL, "^(\\S+) \\(\\[?(" RX_IP ")(?:%[A-Z0-9._~-]*)?\\]?\\) by (\\S+) ",
	  G(1, 0, 2, 3, 0, 0), RW_NO_ID },
	/* ---- XMail */
	{ SEC_XMAIL, NULL, NULL, "^(\\S+) \\((\\[?" RX_IP "\\]?)(?::\\d+)\\) by (\\S+)(?: \\(\\S+\\))? with \\[XMail",
	  G(1, 0, 2, 3, 0, 0), RW_XMAIL },
	/* ---- ecelerity */
	{ SEC_ECEL, NULL, NULL, "^\\(\\[(" RX_IP "):\\d+\\] helo=(\\S+)\\) by (\\S+) ", G(2, 0, 1, 3, 0, 0), 0 },
	{ SEC_ECEL, NULL, NULL, "^\\S+ \\(\\[(" RX_IP "):\\d+\\]\\) by (\\S+) ", G(0, 0, 1, 2, 0, 0), 0 },
	/* ---- Exim */
	{ SEC_EXIM, NULL, NULL, "\\bwith local(?:-\\S+)? ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ SEC_EXIM, NULL, NULL, "^\\[(" RX_IP ")\\] \\((.*?)\\) by (\\S+) ", G(0, 0, 1, 3, 0, 2), RW_SUB },
	{ SEC_EXIM, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\](.*?)\\) by (\\S+) ", G(0, 1, 2, 4, 0, 3),
	  RW_SUB | RW_HELO_RDNS },
	{ SEC_EXIM, NULL, NULL, "^(\\S+) \\[(" RX_IP ")\\](:\\d+)? by (\\S+) ", G(1, 1, 2, 4, 0, 0), 0 },
	{ SEC_EXIM, NULL, NULL, "", G(0, 0, 0, 0, 0, 0), RW_EXIM_ODD },
	/* ---- Postfix */
	{ SEC_POSTFIX, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 2, 3, 4, 0, 0),
	  RW_DNS | RW_RDNS_UNK },
	{ SEC_POSTFIX, NULL, NULL, "^(\\S+) \\((\\S+)\\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 2, 3, 4, 0, 0),
	  RW_DNS | RW_RDNS_UNK },
	/* ---- Scalix, Lotus Domino */
	{ SEC_SCALIX, NULL, NULL, "^(\\S+) \\( ?(" RX_IP ")\\) by (\\S+)", G(1, 0, 2, 3, 0, 0), 0 },
	{ SEC_DOMINO, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\]\\) by (\\S+) \\(Lotus", G(1, 0, 2, 3, 0, 0), RW_NODNS },

	/* ---- general dialects, in SA's order */
	{ 0, "\\bwith HTTP\\b", NULL, "^(" RX_IP ") \\(\\[" RX_IP "\\]\\) by (\\S+)", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, " by \\S+ \\(qmail-\\S+\\) with ", "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\].*\\) by (\\S+) \\(",
	  G(1, 2, 3, 4, 0, 0), RW_DNS | RW_IDENT_PFX },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\) by (\\S+) with \\S+ \\(", G(1, 2, 3, 4, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\] helo=(\\S+)\\) by (\\S+) with ", G(3, 1, 2, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\(<unknown\\S*>\\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+\\.\\S+)\\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 2, 3, 4, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S*)\\@\\[(" RX_IP ")\\].*\\) by (\\S+) \\(", G(1, 0, 3, 4, 2, 0), RW_DNS },
	{ 0, NULL, NULL, "by (\\S+\\.hotmail\\.msn\\.com) ", G(0, 0, 0, 1, 0, 0), RW_MAY_IP },
	{ 0, NULL, NULL, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((" RX_IP ")\\) by (\\S+) \\(qpsmtpd\\/\\S+\\) with (?:ESMTP|SMTP)",
	  G(2, 1, 3, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\(LHLO (\\S*)\\) \\((" RX_IP ")\\) by (\\S+) with LMTP", G(2, 1, 3, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\[(" RX_IP ")\\] by (\\S+) \\([^\\)]+\\) with (?:ESMTP|SMTP)",
	  G(2, 1, 3, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\]\\) by (\\S+) via smtpd \\(for \\S+\\) with SMTP\\(",
	  G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\S+( \\((?:HELO|EHLO) \\S*\\))? \\((\\S+\\@)?\\[?" RX_IP "\\]?\\)( \\(envelope-sender <\\S+>\\))? by \\S+( \\(.+\\))* with (.* )?(SMTP|QMQP)(?! id )",
	  G(0, 0, 0, 0, 0, 0), RW_QMAIL },
	{ 0, " via HTTP$", NULL, "^\\[(" RX_IP ")\\] by (\\S+) via HTTP$", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\( \\[(" RX_IP ")\\]\\).*? by (\\S+) ", G(0, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\((\\S+) \\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\[(" RX_IP ")\\] by (\\S+) ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\(\\[?(" RX_IP ")\\]?\\) by (\\S+) ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\[(" RX_IP ")\\] by (\\S+) \\[" RX_IP "\\] with ", G(1, 0, 2, 3, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\[\\((" RX_IP ")\\)\\] by (\\S+) \\(" RX_IP "\\) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\]\\) by (\\S+) \\(", G(1, 0, 2, 3, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\).*? by (\\S+)\\b", G(1, 2, 3, 4, 0, 0),
	  RW_DNS | RW_SOFTDNS },
	{ 0, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")(?:[.:]\\d+)?\\]\\).*? by (\\S+) ", G(1, 0, 2, 3, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\)(?: \\(authenticated bits=\\d+\\))? by (\\S+) \\(",
	  G(1, 2, 3, 4, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "with (?:POP3|IMAP)", G(0, 0, 0, 0, 0, 0), RW_FETCHER | RW_SKIP },
	{ 0, NULL, NULL, "^(\\S+) \\((?:HELO|EHLO) ([^\\)]*)\\) \\((\\S*@)?\\[?(" RX_IP ")\\]?\\).* by (\\S+) ",
	  G(2, 1, 4, 5, 3, 0), RW_DNS | RW_IDENT_AT },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S*@)?\\[?(" RX_IP ")\\]?\\).* by (\\S+) ", G(1, 1, 3, 4, 2, 0),
	  RW_DNS | RW_IDENT_AT },
	{ 0, " with http for ", NULL, "^\\[(" RX_IP ")\\] by (\\S+) with http for ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, " via smap ", NULL, "^(\\S+)\\((" RX_IP ")\\) by (\\S+) via smap ", G(0, 1, 2, 3, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+)\\((" RX_IP "), (?:HELO|EHLO) (\\S*)\\) by (\\S+) via smap ", G(3, 1, 2, 4, 0, 0),
	  RW_DNS },
	{ 0, " \\(Post", NULL, "^\\[(" RX_IP ")\\] by (\\S+) \\(Post", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, " \\(ArGoSoft", NULL, "^\\[(" RX_IP ")\\] by (\\S+) \\(ArGoSoft", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^(" RX_IP ") by (\\S+) \\((?:SMTPL|InterScan)\\b", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, " with BSMTP", NULL, "^\\S+ by \\S+ with BSMTP", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\) by (\\S+) with ", G(1, 2, 3, 4, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\((?:HELO|EHLO) (\\S*)\\) \\((?:(\\S+)\\@)?(" RX_IP ").*?\\) by (\\S+) with ",
	  G(2, 1, 4, 5, 3, 0), RW_DNS },
	{ 0, NULL, NULL, "^\\[(" RX_IP ")\\] \\((?:account \\S+ )?(?:HELO|EHLO) (\\S*)\\) by (\\S+) \\(",
	  G(2, 0, 1, 3, 0, 0), 0 },
	{ 0, " \\(CommuniGate Pro", NULL, "^(\\S+) \\(\\[(" RX_IP ")\\] verified\\) by (\\S+) \\(",
	  G(1, 1, 2, 3, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^\\(\\[(" RX_IP ")\\]\\) by (\\S+) with ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^([^\\d]\\S+) \\((" RX_IP ")\\) by (\\S+) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\S+ \\(\\S+\\) by \\S+ \\(Content Technologies ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^(\\S+) \\(\\[(" RX_IP ")\\] \\[(\\S+)\\]\\) by (\\S+) with ", G(1, 0, 2, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^(" RX_IP ") by (\\S+) with ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+)\\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 2, 3, 4, 0, 0), RW_DNS },
	{ 0, NULL, NULL, "^\\[(" RX_IP ")\\]\\S+ \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", G(2, 0, 1, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(" RX_IP ") \\((?:HELO|EHLO) (\\S*)\\) by (\\S+) ", G(2, 0, 1, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\[(" RX_IP ")\\] by (\\S+) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+)\\((" RX_IP ")\\) by (\\S+) ", G(0, 1, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\[(" RX_IP ")\\] by (\\S+) \\(MailGate ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+) \\(unverified \\[(" RX_IP ")\\]\\) by (\\S+) ", G(1, 0, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(" RX_IP ") \\([A-Za-z][^\\)]+\\) by (\\S+) with ", G(0, 0, 1, 2, 0, 0), 0 },
	{ 0, NULL, NULL, "^\\[(" RX_IP ")\\] \\(([^\\)]+)\\) by (\\S+) ", G(0, 0, 1, 3, 0, 2), RW_SUB },
	{ 0, NULL, NULL, "^(\\S+) \\((?:\\S+\\@)?(" RX_IP ")\\) by (\\S+) with ", G(0, 1, 2, 3, 0, 0), 0 },
	{ 0, NULL, NULL, "^(\\S+)\\((" RX_IP ")\\)(?:, claiming to be \"(\\S+)\")? via \\S+ by (\\S+),",
	  G(3, 1, 2, 4, 0, 0), RW_UNKNOWN_DNS },
	{ 0, NULL, NULL, "^(\\S+) \\((\\S+)@(" RX_IP ") with login\\) by (\\S+\\.yahoo\\.com) with SMTP",
	  G(1, 0, 3, 4, 0, 0), 0 },
	{ 0, NULL, NULL, "^X-Originating-IP: (" RX_IP ")$", G(0, 0, 1, 0, 0, 0), RW_NO_BY },
	/* ---- handovers to ignore */
	{ 0, NULL, NULL, "^\\S+ \\([^\\s\\@]+\\@" RX_LH "\\) by \\S+ \\(", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\S+ by \\S+ with local-e?smtp ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^127\\.0\\.0\\.1 \\(AVG SMTP \\S+ \\[\\S+\\]\\)", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+\\@\\S+ by \\S+ by uid \\S+ ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+\\@\\S+ by \\S+ ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^Unknown\\/Local \\(", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^" RX_LH " \\((?:\\S+\\@)?" RX_LH "[\\)\\[]", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\((?:\\S+\\@)?" RX_LH "\\) ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\(\\S+\\@\\S+ \\[" RX_LH "\\]\\) ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\(AUTH: \\S+\\) by \\S+ with ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^localhost \\(localhost \\[\\[UNIX: localhost\\]\\]\\) by ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+\\.amazon\\.com by \\S+\\.amazon\\.com with ESMTP \\(peer crosscheck: ",
	  G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^[^\\.]+ by \\S+ with Novell_GroupWise", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^no\\.name\\.available by \\S+ via smtpd \\(for ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ by \\S+ \\(.{0,100}\\) with qmail-scanner", G(0, 0, 0, 0, 0, 0), RW_SKIP | RW_QMS },
	{ 0, NULL, NULL, "^\\S+ by \\S+ with local", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\(\\[unix socket\\]\\) by \\S+ \\(Cyrus v[0-9]*?\\.[0-9]*?\\.[0-9]*?\\) with LMTPA",
	  G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ by \\S+ (?:with|via|for|\\()", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ (?:(?:with|via|for) \\S+|\\(unverified\\)) by\\b", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\(unknown\\) by \\S+ \\(SG\\) with \\b", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ \\(\\S+ \\[local\\]\\) by \\S+ \\(OpenSMTPD\\) with \\b", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "\\(LSMTP for", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\(\\[" RX_LH "\\]\\) with MailEnable ", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^facebook\\.com \\([^\\)]+\\) by facebook\\.com with Thrift id \\S+$", G(0, 0, 0, 0, 0, 0),
	  RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ named \\S+ by gmailapi\\.google\\.com with HTTPREST$", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\S+ id \\S+$", G(0, 0, 0, 0, 0, 0), RW_SKIP },
	{ 0, NULL, NULL, "^\\[<.*? \\(Jetsend", G(0, 0, 0, 0, 0, 0), RW_SKIP },
};

#define RCVD_NROWS (sizeof(rcvd_rows) / sizeof(rcvd_rows[0]))

/* Fixed patterns used outside the rows. */
enum {
	P_SKIP_WITH_LOCAL = 0, P_SKIP_FROM_BY, P_DATE, P_ID, P_HELO1, P_HELO2, P_BY,
	P_AUTH1, P_AUTH2G, P_AUTH2V, P_AUTH3, P_AUTH4, P_AUTH5, P_AUTH6, P_AUTH7, P_AUTH8,
	P_AUTH9, P_AUTH10, P_ENVFROM, P_SQUIRREL, P_SQUIRREL_IP, P_AOL_IP, P_XMAIL_ID,
	P_XMAIL_FROM, P_SUB_HELO, P_SUB_IDENT, P_ODD_RDNS, P_ODD_HELO, P_ODD_IP, P_ODD_BY,
	P_QM1, P_QM2, P_QM3, P_QM4, P_MAY_IP, P_GUESS_HELO, P_FROM_SIMTA, P_NAVGW,
	P_SENDMAIL_T, P_JQUEUE, P_FALL_IP, P_ANY_IP, P_N
};

static const struct { const char *re; unsigned flags; } rcvd_pats[P_N] = {
	[P_SKIP_WITH_LOCAL] = { "\\bwith local for\\b", 0 },
	[P_SKIP_FROM_BY] = { "^from (\\S+) by [^\\s;]+ ?;", RULE_RE_I },
	[P_DATE] = { "[\\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\\d+ (?:J(?:an|u[nl])|Feb|Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \\d+ \\d+:\\d+(?::\\d+)? \\S+$", 0 },
	[P_ID] = { " id <?([^\\s<>;]{3,})", 0 },
	[P_HELO1] = { "\\bhelo=([-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\\\/]+)(?:[^-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\\\/]|$)", 0 },
	[P_HELO2] = { "\\b(?:HELO|EHLO) ([-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\\\/]+)(?:[^-A-Za-z0-9\\.\\^+_&:=?!@%*\\$\\\\\\/]|$)", 0 },
	[P_BY] = { " by (\\S+)(?:[^-A-Za-z0-9\\;\\.]|$)", 0 },
	[P_AUTH1] = { " with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)", RULE_RE_I },
	[P_AUTH2G] = { " by mx\\.google\\.com with ESMTPS id [a-z0-9]{1,4}sm[0-9]{2,9}[a-z]{3}\\.[0-9]{1,3}\\.[0-9]{4}\\.(?:[0-6][0-9]\\.){4}[0-6][0-9]", 0 },
	[P_AUTH2V] = { "\\(version=([^ ]+) cipher=([^\\)]+)\\)", 0 },
	[P_AUTH3] = { "^from .*?(?:\\]\\)|\\)\\]) \\(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) \\S+(?:, .*?)?\\) by ", 0 },
	[P_AUTH4] = { "^from .*?(?:\\](?: \\([^)]*\\))?\\)|\\)\\]) .*?\\(.*?authenticated.*?\\).*? by", 0 },
	[P_AUTH5] = { "from \\S* \\((?:HELO|EHLO) (\\S*)\\) \\[(" RX_IP ")\\] by (mail\\.gmx\\.(?:net|com)) \\([^\\)]+\\) with ((?:ESMTP|SMTP))", 0 },
	[P_AUTH6] = { "\\) by .+ \\(\\d{1,2}\\.\\d\\.\\d{3}(?:\\.\\d{1,3})?\\) \\(authenticated as .+\\) id ", 0 },
	[P_AUTH7] = { "\\) \\(Authenticated sender: \\S+\\) by \\S+ \\(([^\\)]+)\\) with ", 0 },
	[P_AUTH8] = { "CommuniGate Pro (HTTP|SMTP|XIMSS|IMAP)", 0 },
	[P_AUTH9] = { " with Microsoft Exchange Server HTTP-DAV\\b", 0 },
	[P_AUTH10] = { " \\(via (HTTP.?)\\)(?: |;|$)", RULE_RE_I },
	[P_ENVFROM] = { "(?:return-path:? |envelope-(?:sender|from)[ =])(\\S+)\\b", RULE_RE_I },
	[P_SQUIRREL] = { " \\((?:SquirrelMail|NaSMail) authenticated user ", 0 },
	[P_SQUIRREL_IP] = { "(" RX_IP ")\\b(?![.-]).{10,80}by (\\S+) with HTTP", 0 },
	[P_AOL_IP] = { "(" RX_IP ") by (\\S+) \\(" RX_IP "\\) with HTTP \\(WebMailUI\\)", 0 },
	[P_XMAIL_ID] = { " id <(\\S+)>", 0 },
	[P_XMAIL_FROM] = { " from <(\\S+)>", 0 },
	[P_SUB_HELO] = { "helo=(\\S+)", 0 },
	[P_SUB_IDENT] = { "ident=(\\S*)", 0 },
	[P_ODD_RDNS] = { "^(\\S+) ", 0 },
	[P_ODD_HELO] = { " \\((\\S+)\\) ", 0 },
	[P_ODD_IP] = { " \\[(" RX_IP ")(?:\\.\\d+)?\\] ", 0 },
	[P_ODD_BY] = { "by (\\S+) ", 0 },
	[P_QM1] = { "^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\((\\S*)\\@\\[?(" RX_IP ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)", 0 },
	[P_QM2] = { "^(\\S+) \\((?:HELO|EHLO) ([^ \\(\\)]*)\\) \\(\\[?(" RX_IP ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)", 0 },
	[P_QM3] = { "^(\\S+) \\((\\S*)\\@\\[?(" RX_IP ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)", 0 },
	[P_QM4] = { "^(\\S+) \\(\\[?(" RX_IP ")\\]?\\)( \\(envelope-sender <\\S+>\\))? by (\\S+)", 0 },
	[P_MAY_IP] = { "^(" RX_IP ") ", 0 },
	[P_GUESS_HELO] = { "^(\\S+)[^-A-Za-z0-9\\.]", 0 },
	[P_FROM_SIMTA] = { "^(\\S+) \\((\\S+) \\[(" RX_IP ")\\]\\) BY (\\S+) (?:\\([^\\)]+\\) WITH SMTP )?ID <?(\\S+?)>?(?: FOR <[^>]+>)?$", 0 },
	[P_NAVGW] = { "^(\\S*) \\[(" RX_IP ")\\]\\) by (\\S+) \\(NAVGW .*?\\) with ", 0 },
	[P_SENDMAIL_T] = { "^\\S+\\@localhost\\) by \\S+ ", 0 },
	[P_JQUEUE] = { "^[^\\s\\@]+\\@[^)]+\\) by \\S+\\(jqueuemail\\) id [^\\s;]+", 0 },
	[P_FALL_IP] = { "\\[(" RX_IP ")\\]", 0 },
	[P_ANY_IP] = { "(" RX_IP ")", 0 },
};

static struct match_re *rcvd_re_rows[RCVD_NROWS], *rcvd_re_guard[RCVD_NROWS],
    *rcvd_re_unless[RCVD_NROWS], *rcvd_re_sec[SEC_N], *rcvd_re_pat[P_N];
static pthread_once_t rcvd_once = PTHREAD_ONCE_INIT;

static struct match_re *rcvd_compile(const char *re, unsigned flags)
{
	struct match_re *r = NULL;
	char err[200];

	if (match_re_compile(re, flags, &r, err, sizeof(err)) < 0) {
		fprintf(stderr, "received: bad built-in pattern %s: %s\n", re, err);
		abort();
	}
	return r;
}

static void rcvd_init(void)
{
	for (size_t i = 0; i < RCVD_NROWS; i++) {
		if (rcvd_rows[i].re[0])
			rcvd_re_rows[i] = rcvd_compile(rcvd_rows[i].re, 0);
		if (rcvd_rows[i].guard)
			rcvd_re_guard[i] = rcvd_compile(rcvd_rows[i].guard, 0);
		if (rcvd_rows[i].unless)
			rcvd_re_unless[i] = rcvd_compile(rcvd_rows[i].unless, 0);
	}
	for (int s = 1; s < SEC_N; s++)
		rcvd_re_sec[s] = rcvd_compile(rcvd_sections[s], 0);
	for (int p = 0; p < P_N; p++)
		rcvd_re_pat[p] = rcvd_compile(rcvd_pats[p].re, rcvd_pats[p].flags);
}

/* ---------------------------------------------------------------- one line */

struct rcvd_parse {
	const char *s; size_t len;        /* the line being matched */
	struct match_scratch *ms;
	size_t ov[2 * 10];
};

static bool rcvd_match(struct rcvd_parse *p, const struct match_re *re)
{
	return match_re_groups(re, p->s, p->len, 0, p->ms, p->ov, 10) > 0;
}

static bool rcvd_pat(struct rcvd_parse *p, int id)
{
	return rcvd_match(p, rcvd_re_pat[id]);
}

/* Copies group g of the last match into dst (cap bytes); false when unset. */
static bool rcvd_group(const struct rcvd_parse *p, int g, char *dst, size_t cap)
{
	size_t b = p->ov[2 * g], e = p->ov[2 * g + 1], n;

	if (g <= 0 || b == SIZE_MAX)
		return false;
	n = e - b < cap - 1 ? e - b : cap - 1;
	memcpy(dst, p->s + b, n);
	dst[n] = '\0';
	return true;
}

/* Removes the match of re (group 0) from buf, once. */
static bool rcvd_cut(struct rcvd_parse *p, char *buf, const struct match_re *re)
{
	size_t b, e;

	if (!rcvd_match(p, re))
		return false;
	b = p->ov[0];
	e = p->ov[1];
	memmove(buf + b, buf + e, strlen(buf + e) + 1);
	p->len -= e - b;
	return true;
}

/* helo=X and ident=Y inside an Exim-style comment. */
static void rcvd_sub(struct match_scratch *ms, const char *sub, struct rcvd_relay *r)
{
	struct rcvd_parse q = { .s = sub, .len = strlen(sub), .ms = ms };

	if (rcvd_pat(&q, P_SUB_HELO))
		rcvd_group(&q, 1, r->helo, sizeof(r->helo));
	if (rcvd_pat(&q, P_SUB_IDENT))
		rcvd_group(&q, 1, r->ident, sizeof(r->ident));
}

static void rcvd_strip_chars(char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || *s == '#' || *s == '[' || *s == ']' || *s == '(' ||
		    *s == ')' || *s == '<' || *s == '>' || *s == '|')
			*s = '!';
}

static void rcvd_lower_cmp_unknown(char *rdns)
{
	if (strcasecmp(rdns, "unknown") == 0)
		rdns[0] = '\0';
}

bool received_ip_is_private(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;
	const char *p = ip;

	if (strncasecmp(p, "IPv6:", 5) == 0)
		p += 5;
	if (inet_pton(AF_INET, p, &a4) == 1) {
		uint32_t v = ntohl(a4.s_addr);

		return (v >> 24) == 10 || (v >> 24) == 127 || (v >> 16) == 0xa9fe ||
		    (v >> 20) == 0xac1 || (v >> 16) == 0xc0a8 || (v >> 22) == (0x64400000u >> 22);
	}
	if (inet_pton(AF_INET6, p, &a6) == 1) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		char v4[INET_ADDRSTRLEN];

		if (memcmp(a6.s6_addr, mapped, 12) == 0) {
			inet_ntop(AF_INET, a6.s6_addr + 12, v4, sizeof(v4));
			return received_ip_is_private(v4);
		}
		if (a6.s6_addr[0] == 0xfe && (a6.s6_addr[1] & 0xc0) == 0x80)
			return true;                       /* fe80::/10 */
		return IN6_IS_ADDR_LOOPBACK(&a6);
	}
	return false;
}

static void rcvd_make_string(struct rcvd_relay *r)
{
	int n;

	free(r->as_string);
	n = snprintf(NULL, 0, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s "
	    "auth=%s msa=%d ]", r->ip, r->rdns, r->helo, r->by, r->ident, r->envfrom,
	    r->internal ? 1 : 0, r->id, r->auth, r->msa ? 1 : 0);
	r->as_string = malloc((size_t)n + 1);
	if (r->as_string == NULL)
		abort();
	snprintf(r->as_string, (size_t)n + 1, "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s "
	    "intl=%d id=%s auth=%s msa=%d ]", r->ip, r->rdns, r->helo, r->by, r->ident,
	    r->envfrom, r->internal ? 1 : 0, r->id, r->auth, r->msa ? 1 : 0);
}

/* SA's "enough:" — tidy the fields of a parsed relay. */
static void rcvd_finish(struct rcvd_relay *r, int looked_up_dns)
{
	size_t l;
	char *p;

	l = strlen(r->rdns);
	while (l && r->rdns[l - 1] == '.')
		r->rdns[--l] = '\0';
	if (strcasecmp(r->rdns, "unknown") == 0 || r->rdns[0] == '[')
		r->rdns[0] = '\0';
	p = r->ip;
	if (strncasecmp(p, "ipv6:", 5) == 0)
		memmove(p, p + 5, strlen(p + 5) + 1);
	if (p[0] == '[')
		memmove(p, p + 1, strlen(p + 1) + 1);
	l = strlen(p);
	if (l && p[l - 1] == ']')
		p[--l] = '\0';
	if ((p = strchr(r->ip, '%')) != NULL)
		*p = '\0';
	if (strncasecmp(r->ip, "::ffff:", 7) == 0 && strchr(r->ip + 7, ':') == NULL &&
	    strchr(r->ip + 7, '.') != NULL)
		memmove(r->ip, r->ip + 7, strlen(r->ip + 7) + 1);
	l = strlen(r->by);
	if (l && r->by[l - 1] == ';')
		r->by[--l] = '\0';
	rcvd_strip_chars(r->ip);
	rcvd_strip_chars(r->rdns);
	rcvd_strip_chars(r->helo);
	rcvd_strip_chars(r->by);
	rcvd_strip_chars(r->ident);
	if (r->has_envfrom) {
		char *e = r->envfrom;

		while (*e == ' ' || *e == '\t' || *e == '<')
			e++;
		memmove(r->envfrom, e, strlen(e) + 1);
		l = strlen(r->envfrom);
		while (l && (r->envfrom[l - 1] == '>' || isspace((unsigned char)r->envfrom[l - 1])))
			r->envfrom[--l] = '\0';
		for (e = r->envfrom; *e; e++)
			if (isspace((unsigned char)*e) || *e == '#' || *e == '[' || *e == ']' ||
			    *e == '(' || *e == ')' || *e == '<' || *e == '>' || *e == '|')
				*e = '!';
	}
	if (r->rdns[0] == '\0') {
		if (looked_up_dns == 1)
			r->no_reverse_dns = true;
		else
			r->rdns_not_in_headers = true;
	}
	r->ip_private = received_ip_is_private(r->ip);
}

/* The auth chain: how the line says the client authenticated, if it does. */
static void rcvd_auth(struct rcvd_parse *p, const char *line, struct rcvd_relay *r)
{
	char a[64], b[64];
	bool by = strstr(line, " by ") != NULL;

	if (by && rcvd_pat(p, P_AUTH1)) {
		rcvd_group(p, 1, r->auth, sizeof(r->auth));
	} else if (rcvd_pat(p, P_AUTH2G) && rcvd_pat(p, P_AUTH2V)) {
		rcvd_group(p, 1, a, sizeof(a));
		rcvd_group(p, 2, b, sizeof(b));
		snprintf(r->auth, sizeof(r->auth), "GMail - transport=%s cipher=%s", a, b);
	} else if (rcvd_pat(p, P_AUTH3)) {
		rcvd_group(p, 1, r->auth, sizeof(r->auth));
	} else if (strstr(line, "authenticated") && rcvd_pat(p, P_AUTH4)) {
		strcpy(r->auth, "Sendmail");
	} else if (rcvd_pat(p, P_AUTH5)) {
		rcvd_group(p, 4, a, sizeof(a));
		rcvd_group(p, 3, b, sizeof(b));
		snprintf(r->auth, sizeof(r->auth), "GMX (%s / %s)", a, b);
	} else if (strstr(line, " (authenticated as ") && rcvd_pat(p, P_AUTH6)) {
		strcpy(r->auth, "CriticalPath");
	} else if (rcvd_pat(p, P_AUTH7)) {
		rcvd_group(p, 1, a, sizeof(a));
		if (strcmp(a, "Postfix") == 0)
			strcpy(r->auth, "Postfix");
		else
			snprintf(r->auth, sizeof(r->auth), "Postfix (%s)", a);
	} else if (rcvd_pat(p, P_AUTH8) && strstr(line, " (account ")) {
		strcpy(r->auth, "Communigate");
	} else if (rcvd_pat(p, P_AUTH9)) {
		strcpy(r->auth, "HTTP-DAV");
	} else if (by && rcvd_pat(p, P_AUTH10)) {
		rcvd_group(p, 1, r->auth, sizeof(r->auth));
	}
}

/* The qmail family: one of four shapes, then rdns "unknown" means none. */
static void rcvd_qmail(struct rcvd_parse *p, struct rcvd_relay *r, int *dns)
{
	if (rcvd_pat(p, P_QM1)) {
		rcvd_group(p, 1, r->rdns, sizeof(r->rdns));
		rcvd_group(p, 2, r->helo, sizeof(r->helo));
		rcvd_group(p, 3, r->ident, sizeof(r->ident));
		rcvd_group(p, 4, r->ip, sizeof(r->ip));
		rcvd_group(p, 6, r->by, sizeof(r->by));
	} else if (rcvd_pat(p, P_QM2)) {
		rcvd_group(p, 1, r->rdns, sizeof(r->rdns));
		rcvd_group(p, 2, r->helo, sizeof(r->helo));
		rcvd_group(p, 3, r->ip, sizeof(r->ip));
		rcvd_group(p, 5, r->by, sizeof(r->by));
	} else if (rcvd_pat(p, P_QM3)) {
		rcvd_group(p, 1, r->rdns, sizeof(r->rdns));
		rcvd_group(p, 1, r->helo, sizeof(r->helo));
		rcvd_group(p, 2, r->ident, sizeof(r->ident));
		rcvd_group(p, 3, r->ip, sizeof(r->ip));
		rcvd_group(p, 5, r->by, sizeof(r->by));
	} else if (rcvd_pat(p, P_QM4)) {
		rcvd_group(p, 1, r->rdns, sizeof(r->rdns));
		rcvd_group(p, 1, r->helo, sizeof(r->helo));
		rcvd_group(p, 2, r->ip, sizeof(r->ip));
		rcvd_group(p, 4, r->by, sizeof(r->by));
	}
	if (strcmp(r->rdns, "unknown") != 0)
		*dns = 1;
	else
		r->rdns[0] = '\0';
}

/* Applies a matched row. Returns 1 (enough), 0 (skip the header), 2 (fall through). */
static int rcvd_apply_row(struct rcvd_parse *p, const struct rcvd_row *row,
    struct rcvd_relay *r, int *dns, bool *fetcher, char *qms_envfrom)
{
	char sub[512];

	if (row->flags & RW_SKIP) {
		if (row->flags & RW_FETCHER)
			*fetcher = true;
		if ((row->flags & RW_QMS) && r->has_envfrom)
			snprintf(qms_envfrom, 256, "%s", r->envfrom);
		return 0;
	}
	if (row->flags & RW_QMAIL) {
		rcvd_qmail(p, r, dns);
		return 1;
	}
	if (row->helo)
		rcvd_group(p, row->helo, r->helo, sizeof(r->helo));
	if (row->rdns)
		rcvd_group(p, row->rdns, r->rdns, sizeof(r->rdns));
	if (row->ip)
		rcvd_group(p, row->ip, r->ip, sizeof(r->ip));
	if (row->by)
		rcvd_group(p, row->by, r->by, sizeof(r->by));
	if (row->flags & RW_NO_BY)
		r->by[0] = '\0';
	if (row->ident && !rcvd_group(p, row->ident, r->ident, sizeof(r->ident)))
		r->ident[0] = '\0';
	if (row->flags & RW_SUB) {
		if (row->flags & RW_HELO_RDNS)
			snprintf(r->helo, sizeof(r->helo), "%s", r->rdns);
		if (rcvd_group(p, row->sub, sub, sizeof(sub)))
			rcvd_sub(p->ms, sub, r);
	} else if (row->flags & RW_HELO_RDNS) {
		snprintf(r->helo, sizeof(r->helo), "%s", r->rdns);
	}
	if (row->flags & RW_IDENT_AT) {
		size_t l = strlen(r->ident);

		if (l && r->ident[l - 1] == '@')
			r->ident[l - 1] = '\0';
	}
	if (row->flags & RW_IDENT_PFX) {
		char *at = strchr(r->rdns, '@');

		if (at) {
			char *id0 = r->rdns;

			if (strncmp(id0, "IDENT:", 6) == 0)
				id0 += 6;
			snprintf(r->ident, sizeof(r->ident), "%.*s", (int)(at - id0), id0);
			memmove(r->rdns, at + 1, strlen(at + 1) + 1);
		}
	}
	if (row->flags & RW_SOFTDNS) {
		if (strcmp(r->rdns, "softdnserr") == 0) {
			r->rdns[0] = '\0';
			*dns = 0;
			return 1;
		}
	}
	if (row->flags & RW_RDNS_UNK)
		rcvd_lower_cmp_unknown(r->rdns);
	if (row->flags & RW_NO_ID)
		r->id[0] = '\0';
	if (row->flags & RW_XMAIL) {
		if (rcvd_pat(p, P_XMAIL_ID))
			rcvd_group(p, 1, r->id, sizeof(r->id));
		if (rcvd_pat(p, P_XMAIL_FROM)) {
			rcvd_group(p, 1, r->envfrom, sizeof(r->envfrom));
			r->has_envfrom = true;
		}
	}
	if (row->flags & RW_MAY_IP) {
		if (rcvd_pat(p, P_MAY_IP))
			rcvd_group(p, 1, r->ip, sizeof(r->ip));
	}
	if (row->flags & RW_UNKNOWN_DNS) {
		if (strcmp(r->rdns, "UNKNOWN") != 0)
			*dns = 1;
	}
	if (row->flags & RW_DNS)
		*dns = 1;
	if (row->flags & RW_NODNS)
		*dns = 0;
	return 1;
}

/* Exim's odd formats: pick up what is there; enough once there is an ip and a by. */
static int rcvd_exim_odd(struct rcvd_parse *p, struct rcvd_relay *r)
{
	if (rcvd_pat(p, P_ODD_RDNS))
		rcvd_group(p, 1, r->rdns, sizeof(r->rdns));
	if (rcvd_pat(p, P_ODD_HELO))
		rcvd_group(p, 1, r->helo, sizeof(r->helo));
	if (rcvd_pat(p, P_ODD_IP))
		rcvd_group(p, 1, r->ip, sizeof(r->ip));
	if (rcvd_pat(p, P_ODD_BY)) {
		rcvd_group(p, 1, r->by, sizeof(r->by));
		if (r->ip[0])
			return 1;
	}
	return 2;
}

/* Whitespace runs become one space, trimmed, trailing ';' dropped (SA's first steps). */
static size_t rcvd_normalise(const char *line, char *buf, size_t cap)
{
	size_t n = 0;
	bool sp = false;

	for (const char *c = line; *c && n + 2 < cap; c++) {
		if (isspace((unsigned char)*c)) {
			sp = n > 0;
			continue;
		}
		if (sp)
			buf[n++] = ' ';
		sp = false;
		buf[n++] = *c;
	}
	buf[n] = '\0';
	for (;;) {             /* 1 while s/\s?;$// */
		if (n && buf[n - 1] == ';') {
			buf[--n] = '\0';
			if (n && buf[n - 1] == ' ')
				buf[--n] = '\0';
			continue;
		}
		break;
	}
	return n;
}

static int rcvd_parse(const char *line, struct rcvd_relay *r, bool *fetcher,
    struct match_scratch *ms, char *qms_envfrom)
{
	char buf[4096], tmp[64], *b;
	struct rcvd_parse p = { .s = buf, .ms = ms };
	int dns = 0, sec = 0;

	pthread_once(&rcvd_once, rcvd_init);
	memset(r, 0, sizeof(*r));
	*fetcher = false;
	p.len = rcvd_normalise(line, buf, sizeof(buf));
	if (!(strncasecmp(buf, "from ", 5) == 0 || strncasecmp(buf, "(from ", 6) == 0))
		return 0;
	if (rcvd_pat(&p, P_SKIP_WITH_LOCAL))
		return 0;
	if (rcvd_pat(&p, P_SKIP_FROM_BY)) {
		bool literal;

		rcvd_group(&p, 1, tmp, sizeof(tmp));
		literal = tmp[0] == '[' && tmp[strlen(tmp) - 1] == ']' && strlen(tmp) > 2 &&
		    strspn(tmp + 1, "0123456789.") == strlen(tmp) - 2;
		if (!literal)
			return 0;
	}
	rcvd_cut(&p, buf, rcvd_re_pat[P_DATE]);
	if ((b = strstr(buf, ")by ")) != NULL) {
		memmove(b + 2, b + 1, strlen(b + 1) + 1);
		b[1] = ' ';
		p.len++;
	}
	if (rcvd_pat(&p, P_ID))
		rcvd_group(&p, 1, r->id, sizeof(r->id));
	if (rcvd_pat(&p, P_HELO1) || rcvd_pat(&p, P_HELO2))
		rcvd_group(&p, 1, r->helo, sizeof(r->helo));
	if (rcvd_pat(&p, P_BY))
		rcvd_group(&p, 1, r->by, sizeof(r->by));
	rcvd_auth(&p, buf, r);

	if (strncmp(buf, "from ", 5) == 0) {
		memmove(buf, buf + 5, p.len - 5 + 1);
		p.len -= 5;
		if (rcvd_pat(&p, P_ENVFROM)) {
			rcvd_group(&p, 1, r->envfrom, sizeof(r->envfrom));
			r->has_envfrom = true;
		}
		if (rcvd_pat(&p, P_SQUIRREL) && rcvd_pat(&p, P_SQUIRREL_IP)) {
			rcvd_group(&p, 1, r->ip, sizeof(r->ip));
			rcvd_group(&p, 2, r->by, sizeof(r->by));
			goto enough;
		}
		if (strstr(buf, "aol.com") && strstr(buf, "with HTTP (WebMailUI)") &&
		    rcvd_pat(&p, P_AOL_IP)) {
			rcvd_group(&p, 1, r->ip, sizeof(r->ip));
			rcvd_group(&p, 2, r->by, sizeof(r->by));
			goto enough;
		}
		for (int s = 1; s < SEC_N; s++)
			if (rcvd_match(&p, rcvd_re_sec[s])) {
				sec = s;
				break;
			}
		for (int pass = sec ? 0 : 1; pass < 2; pass++) {
			for (size_t i = 0; i < RCVD_NROWS; i++) {
				const struct rcvd_row *row = &rcvd_rows[i];
				int rc;

				if (row->sec != (pass == 0 ? sec : 0))
					continue;
				if (rcvd_re_guard[i] && !rcvd_match(&p, rcvd_re_guard[i]))
					continue;
				if (rcvd_re_unless[i] && rcvd_match(&p, rcvd_re_unless[i]))
					continue;
				if (row->flags & RW_EXIM_ODD) {
					if (rcvd_exim_odd(&p, r) == 1)
						goto enough;
					continue;
				}
				if (!rcvd_match(&p, rcvd_re_rows[i]))
					continue;
				rc = rcvd_apply_row(&p, row, r, &dns, fetcher, qms_envfrom);
				if (rc == 0)
					return 0;
				if (rc == 1)
					goto enough;
			}
		}
		if (r->helo[0] == '\0' && rcvd_pat(&p, P_GUESS_HELO))
			rcvd_group(&p, 1, r->helo, sizeof(r->helo));
	} else if (strncmp(buf, "FROM ", 5) == 0) {
		memmove(buf, buf + 5, p.len - 5 + 1);
		p.len -= 5;
		if (rcvd_pat(&p, P_FROM_SIMTA)) {
			dns = 1;
			rcvd_group(&p, 1, r->helo, sizeof(r->helo));
			rcvd_group(&p, 2, r->rdns, sizeof(r->rdns));
			rcvd_group(&p, 3, r->ip, sizeof(r->ip));
			rcvd_group(&p, 4, r->by, sizeof(r->by));
			rcvd_group(&p, 5, r->id, sizeof(r->id));
			if (strcmp(r->rdns, "unverified") == 0)
				r->rdns[0] = '\0';
			goto enough;
		}
	} else if (strncmp(buf, "(from ", 6) == 0) {
		memmove(buf, buf + 6, p.len - 6 + 1);
		p.len -= 6;
		if (rcvd_pat(&p, P_NAVGW)) {
			rcvd_group(&p, 1, r->helo, sizeof(r->helo));
			rcvd_group(&p, 2, r->ip, sizeof(r->ip));
			rcvd_group(&p, 3, r->by, sizeof(r->by));
			goto enough;
		}
		if (rcvd_pat(&p, P_SENDMAIL_T) || rcvd_pat(&p, P_JQUEUE))
			return 0;
	}
	if (r->ip[0] == '\0' && rcvd_pat(&p, P_FALL_IP))
		rcvd_group(&p, 1, r->ip, sizeof(r->ip));
	if (r->ip[0] && r->by[0])
		goto enough;
	return -1;
enough:
	rcvd_finish(r, dns);
	return 1;
}

int received_parse_line(const char *line, struct rcvd_relay *out, bool *fetcher,
    struct match_scratch *ms)
{
	char qms[256] = "";

	return rcvd_parse(line, out, fetcher, ms, qms);
}

/* ---------------------------------------------------------------- the trust path */

/* Is ip in l? Loopback always is when loopback_in: SpamAssassin adds 127/8 and ::1 to
 * trusted_networks and internal_networks, not to msa_networks. */
static bool rcvd_in_list(const struct cfg_cidrlist *l, const char *ip, bool loopback_in)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		if (loopback_in && (ntohl(s4->sin_addr.s_addr) >> 24) == 127)
			return true;
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		if (loopback_in && IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return true;
	} else {
		return false;
	}
	return cfg_cidrlist_match(l, (struct sockaddr *)&ss);
}

static bool rcvd_in_set(const struct cfg_cidrlist *l, const char *ip)
{
	return rcvd_in_list(l, ip, true);
}

static char *rcvd_join(struct rcvd_relay **v, size_t n)
{
	size_t len = 1;
	char *s, *o;

	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]->as_string) + 1;
	s = o = malloc(len);
	if (s == NULL)
		abort();
	*o = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(v[i]->as_string);

		if (i)
			*o++ = ' ';
		memcpy(o, v[i]->as_string, l);
		o += l;
		*o = '\0';
	}
	return s;
}

void received_client_relay(struct rcvd_relay *r, const char *ip, const char *rdns,
    const char *helo, const char *by, const char *mail_from)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->ip, sizeof(r->ip), "%s", ip ? ip : "");
	snprintf(r->rdns, sizeof(r->rdns), "%s", rdns && strcmp(rdns, "unknown") ? rdns : "");
	snprintf(r->helo, sizeof(r->helo), "%s", helo && *helo ? helo : "unknown");
	snprintf(r->by, sizeof(r->by), "%s", by ? by : "");
	if (mail_from) {
		snprintf(r->envfrom, sizeof(r->envfrom), "%s", mail_from);
		r->has_envfrom = true;
	}
	rcvd_finish(r, 1);      /* mxgate's header reads like Postfix's: rDNS looked up */
}

void received_info_build(struct rcvd_info *ri, const char *const *rcvd, size_t nrcvd,
    const char *const *orig_ip_values, size_t norig, const struct rcvd_relay *client,
    const struct rcvd_conf *conf, struct match_scratch *ms)
{
	const struct cfg_cidrlist *trusted = &conf->trusted, *internal = &conf->internal;
	bool did_trust = conf->trusted_set, did_internal = conf->internal_set;
	bool in_trusted = true, in_internal = true, found_msa = false, allow_fetch = true;
	size_t total = nrcvd + norig + 1;
	char qms[256] = "";

	pthread_once(&rcvd_once, rcvd_init);
	memset(ri, 0, sizeof(*ri));
	ri->last_trusted_relay_index = ri->last_internal_relay_index = -1;
	if (did_trust != did_internal) {        /* one names both */
		if (!did_internal)
			internal = trusted;
		else
			trusted = internal;
	}
	ri->v = calloc(total, sizeof(*ri->v));
	ri->trusted = calloc(total, sizeof(*ri->trusted));
	ri->untrusted = calloc(total, sizeof(*ri->untrusted));
	ri->internal = calloc(total, sizeof(*ri->internal));
	ri->external = calloc(total, sizeof(*ri->external));
	if (!ri->v || !ri->trusted || !ri->untrusted || !ri->internal || !ri->external)
		abort();
	ri->cap = total;
	for (size_t k = 0; k < total; k++) {
		struct rcvd_relay *r = &ri->v[ri->n];
		bool fetcher = false;
		char line[600];
		int rc;

		if (k == 0) {
			if (client == NULL)
				continue;
			*r = *client;
			r->as_string = NULL;
			rc = 1;
		} else if (k <= nrcvd) {
			char qprev[256];

			snprintf(qprev, sizeof(qprev), "%s", qms);
			qms[0] = '\0';
			rc = rcvd_parse(rcvd[k - 1], r, &fetcher, ms, qms);
			if (rc > 0 && qprev[0]) {
				snprintf(r->envfrom, sizeof(r->envfrom), "%s", qprev);
				r->has_envfrom = true;
			}
		} else {
			/* originating-IP headers become synthetic relays (SA bug 5680) */
			const char *v = orig_ip_values[k - 1 - nrcvd];
			struct rcvd_parse q = { .s = v, .len = strlen(v), .ms = ms };
			char ip[64];

			if (!rcvd_pat(&q, P_ANY_IP) || !rcvd_group(&q, 1, ip, sizeof(ip)))
				continue;
			snprintf(line, sizeof(line), "from X-Originating-IP: %s", ip);
			rc = rcvd_parse(line, r, &fetcher, ms, qms);
		}
		if (fetcher && allow_fetch) {       /* restart the walk at a fetch marker */
			ri->ntrusted = ri->ninternal = ri->nexternal = 0;
		}
		if (rc < 0)
			ri->nunparseable++;
		if (rc <= 0) {
			if (in_trusted)
				ri->last_trusted_relay_index++;
			if (in_internal)
				ri->last_internal_relay_index++;
			continue;
		}
		if (in_trusted && !found_msa) {
			if (!did_trust && !did_internal) {
				/* SA's inference: private addresses and authenticated hops */
				if (!r->ip_private && !r->auth[0])
					in_trusted = in_internal = false;
			} else if (!r->auth[0] && !rcvd_in_set(trusted, r->ip)) {
				in_trusted = in_internal = false;
			} else {
				if (in_internal && !r->auth[0] && !rcvd_in_set(internal, r->ip))
					in_internal = false;
				if (rcvd_in_list(&conf->msa, r->ip, false)) {
					found_msa = true;
					r->msa = true;
				}
			}
		}
		r->internal = in_internal;
		r->trusted = in_trusted;
		rcvd_make_string(r);
		ri->n++;
		if (in_trusted) {
			ri->trusted[ri->ntrusted++] = r;
			allow_fetch = true;
			ri->last_trusted_relay_index++;
		} else {
			ri->untrusted[ri->nuntrusted++] = r;
			allow_fetch = false;
		}
		if (in_internal) {
			ri->internal[ri->ninternal++] = r;
			ri->last_internal_relay_index++;
		} else {
			ri->external[ri->nexternal++] = r;
		}
	}
	ri->trusted_str = rcvd_join(ri->trusted, ri->ntrusted);
	ri->untrusted_str = rcvd_join(ri->untrusted, ri->nuntrusted);
	ri->internal_str = rcvd_join(ri->internal, ri->ninternal);
	ri->external_str = rcvd_join(ri->external, ri->nexternal);
}

void received_info_free(struct rcvd_info *ri)
{
	if (ri == NULL)
		return;
	for (size_t i = 0; i < ri->n; i++)
		free(ri->v[i].as_string);
	free(ri->v);
	free(ri->trusted);
	free(ri->untrusted);
	free(ri->internal);
	free(ri->external);
	free(ri->trusted_str);
	free(ri->untrusted_str);
	free(ri->internal_str);
	free(ri->external_str);
	memset(ri, 0, sizeof(*ri));
}
