/* module_sections.h — the config sections owned by filters/, plugins/ and rules/.
 *
 * Each module declares `struct <mod>_config` and `extern const struct cfg_table
 * <mod>_config_table;` in its own header; list it here twice:
 *   - in MX_CONFIG_MODULE_SECTIONS as a member of struct mx_config,
 *   - in MX_CONFIG_MODULE_FIELDS as an entry of the top config table (config.c).
 * Included by config.h after the cfg_* types are defined. */
#ifndef MX_MODULE_SECTIONS_H
#define MX_MODULE_SECTIONS_H

/* #include "../filters/dnsbl.h" etc. go here */
#include "pregreet.h"
#include "../filters/dns.h"
#include "../filters/dnsbl.h"
#include "../filters/helo.h"
#include "../filters/spf.h"
#include "../filters/ratelimit.h"
#include "../filters/reputation.h"
#include "../filters/greylist.h"
#include "../plugins/plugins.h"
#include "../rules/rules.h"

#define MX_CONFIG_MODULE_SECTIONS \
	struct pregreet_config pregreet; \
	struct dns_config dns; \
	struct dnsbl_config dnsbl; \
	struct helo_config helo_checks; \
	struct spf_config spf; \
	struct ratelimit_config ratelimit; \
	struct reputation_config reputation; \
	struct greylist_config greylist; \
	struct cfg_list plugins;   /* struct plugin_config */ \
	struct rules_config rules; \
	/* struct dnsbl_config dnsbl; */

#define MX_CONFIG_MODULE_FIELDS \
	{ "pregreet", CFG_STRUCT, offsetof(struct mx_config, pregreet), .sub = &pregreet_config_table, .doc = "talking before the greeting (postscreen's pregreet test)" }, \
	{ "dns", CFG_STRUCT, offsetof(struct mx_config, dns), .sub = &dns_config_table, .doc = "asynchronous DNS: resolvers, timeout, cache" }, \
	{ "dnsbl", CFG_STRUCT, offsetof(struct mx_config, dnsbl), .sub = &dnsbl_config_table, .doc = "DNS block/allow lists with weighted scoring" }, \
	{ "helo_checks", CFG_STRUCT, offsetof(struct mx_config, helo_checks), .sub = &helo_config_table, .doc = "HELO syntax, claims-to-be-us, FCrDNS" }, \
	{ "spf", CFG_STRUCT, offsetof(struct mx_config, spf), .sub = &spf_config_table, .doc = "SPF (RFC 7208) at MAIL FROM" }, \
	{ "ratelimit", CFG_STRUCT, offsetof(struct mx_config, ratelimit), .sub = &ratelimit_config_table, .doc = "rate limits (GCRA) per ip, prefix, helo, sender, recipient; local or Redis" }, \
	{ "reputation", CFG_STRUCT, offsetof(struct mx_config, reputation), .sub = &reputation_config_table, .doc = "per-IP/network reputation with decay (LMDB or Redis), allow/deny CIDR lists" }, \
	{ "greylist", CFG_STRUCT, offsetof(struct mx_config, greylist), .sub = &greylist_config_table, .doc = "greylisting of unknown (network, sender, recipient) triplets at RCPT" }, \
	{ "plugins", CFG_STRUCT_LIST, offsetof(struct mx_config, plugins), .sub = &plugin_config_table, .doc = "content filters in order: clamd, milter, spamd, dlopen plugins" }, \
	{ "rules", CFG_STRUCT, offsetof(struct mx_config, rules), .sub = &rules_config_table, .doc = "rules and scoring: SpamAssassin-syntax rule files, thresholds, dry-run mode" }, \
	/* { "dnsbl", CFG_STRUCT, offsetof(struct mx_config, dnsbl), .sub = &dnsbl_config_table, .doc = "DNS lists" }, */

#endif
