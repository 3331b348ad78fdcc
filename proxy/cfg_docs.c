/* cfg_docs.c — the configuration reference, generated from the tables.
 *
 * cfg_docs_walk() visits a table tree in reference order, format-neutral: each section,
 * then its keys with their type, default and bounds already worked out, then its
 * sub-sections. The Markdown writer below (docs/config.md, `mxgate --dump-config-docs`) is
 * one visitor; a man page (mxgate.yaml(5)) would be another over the same walk. */
#include "config.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- the walk */

const char *cfg_docs_type_name(enum cfg_type t)
{
	switch (t) {
	case CFG_BOOL: return "bool";
	case CFG_INT: return "integer";
	case CFG_DOUBLE: return "number";
	case CFG_SIZE: return "size";
	case CFG_DURATION: return "duration";
	case CFG_STRING: return "string";
	case CFG_ENUM: return NULL;
	case CFG_RATE: return "rate";
	case CFG_STRLIST: return "list of strings";
	case CFG_STRUCT: return "section";
	case CFG_STRUCT_LIST: return "list of sections";
	case CFG_CIDRLIST: return "list of CIDRs";
	case CFG_CUSTOM: return "see description";
	}
	return "?";
}

static void cfg_docs_section(const struct cfg_table *t, const char *prefix,
			     const struct cfg_docs_visitor *v, void *arg)
{
	char path[256];
	struct cfg_docs_key k;

	if (v->section)
		v->section(arg, prefix, t);
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		memset(&k, 0, sizeof(k));
		k.field = f;
		k.section = prefix;
		k.type = cfg_docs_type_name(f->type);
		k.required = (f->flags & CFG_REQUIRED) != 0;
		k.defval = k.required ? NULL : f->defval;
		if (cfg_has_bounds(f) && (f->type == CFG_INT || f->type == CFG_DOUBLE ||
					  f->type == CFG_SIZE || f->type == CFG_DURATION)) {
			k.bounded = true;
			cfg_format_bound(f, f->min, k.lo, sizeof(k.lo));
			cfg_format_bound(f, f->max, k.hi, sizeof(k.hi));
		}
		if (v->key)
			v->key(arg, &k);
	}
	for (const struct cfg_field *f = t->fields; f && f->key; f++) {
		if (f->type == CFG_CUSTOM && f->sub) {
			/* the alternative tables of a custom value: "plugins[].options (clamd)" */
			for (const struct cfg_field *alt = f->sub->fields; alt->key; alt++) {
				snprintf(path, sizeof(path), "%s%s%s (%s)", prefix, prefix[0] ? "." : "",
					 f->key, alt->key);
				if (alt->sub)
					cfg_docs_section(alt->sub, path, v, arg);
			}
			continue;
		}
		if ((f->type != CFG_STRUCT && f->type != CFG_STRUCT_LIST) || !f->sub)
			continue;
		snprintf(path, sizeof(path), "%s%s%s%s", prefix, prefix[0] ? "." : "", f->key,
			 f->type == CFG_STRUCT_LIST ? "[]" : "");
		cfg_docs_section(f->sub, path, v, arg);
	}
}

void cfg_docs_walk(const struct cfg_table *t, const struct cfg_docs_visitor *v, void *arg)
{
	if (t)
		cfg_docs_section(t, "", v, arg);
}

/* ---------------------------------------------------------------- Markdown */

/* Text for a Markdown table cell: `|` escaped, line breaks flattened. */
static void cfg_md_cell(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '|')
			fputs("\\|", out);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

static void cfg_md_section(void *arg, const char *path, const struct cfg_table *t)
{
	FILE *out = arg;

	fprintf(out, "\n### `%s`\n\n", path[0] ? path : "(top level)");
	fprintf(out, "| key | type | default | bounds | description |\n|---|---|---|---|---|\n");
}

/* An enum's type cell: its choices, "`a` \| `b`". */
static const char *cfg_md_choices(const char *const *choices, char *buf, size_t sz)
{
	char list[200];
	size_t off = 0;

	list[0] = '\0';
	for (int i = 0; choices && choices[i] && off < sizeof(list); i++) {
		int k = snprintf(list + off, sizeof(list) - off, "%s`%s`", i ? " \\| " : "",
				 choices[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
	snprintf(buf, sz, "%s", list);
	return buf;
}

static void cfg_md_key(void *arg, const struct cfg_docs_key *k)
{
	FILE *out = arg;
	char type[256], bounds[160];

	bounds[0] = '\0';
	if (k->bounded)
		snprintf(bounds, sizeof(bounds), "%s .. %s", k->lo, k->hi);
	fprintf(out, "| `%s` | %s | ", k->field->key,
		k->type ? k->type : cfg_md_choices(k->field->choices, type, sizeof(type)));
	if (k->required) {
		fputs("**required**", out);
	} else if (k->defval) {
		fputc('`', out);
		cfg_md_cell(out, k->defval);
		fputc('`', out);
	}
	fprintf(out, " | %s | ", bounds);
	cfg_md_cell(out, k->field->doc);
	fputs(" |\n", out);
}

static const struct cfg_docs_visitor cfg_md_visitor = { cfg_md_section, cfg_md_key };

void config_write_docs(void *out_fp)
{
	FILE *out = out_fp;
	fprintf(out,
		"# mxgate configuration reference\n\n"
		"<!-- Generated from the tables in proxy/config.c (config_write_docs); regenerate with\n"
		"     `build/mxgate --dump-config-docs > docs/config.md`. Do not edit by hand. -->\n\n"
		"The configuration is one YAML file (`mxgate -c FILE`; `mxgate -t -c FILE` checks it).\n"
		"Every key has a default except `listen` and `backends.servers`. Unknown keys are errors.\n"
		"Errors are printed one per line as `FILE:LINE:COL: key.path: reason`, all of them, "
		"not just the first. The checks made on the loaded file (`-t`'s warnings, a directory "
		"the start cannot write, a store it cannot open) name their key the same way: LINE:COL "
		"is the key's value (a section's, a list's or an empty value's: its key), a list item "
		"(`plugins[2]`: its first key), or for a key not written the section it would be in "
		"(`FILE:1:1` only when none of it is in the file).\n\n"
		"## Value syntax\n\n"
		"- **bool**: `true`/`false`, `yes`/`no`, `on`/`off`.\n"
		"- **size**: bytes, with an optional binary suffix `K`, `M`, `G`, `T` (also `KB`, `KiB`; "
		"case-insensitive): `512`, `64K`, `50M`, `1G`.\n"
		"- **duration**: `250ms`, `30s`, `5m`, `1h`, `2d`, `1w`, combinations such as `1h30m`; a "
		"plain number is seconds. Duration bounds below are shown in the same units.\n"
		"- **rate**: `COUNT/DURATION`: `30/60s`, `1000/1h`; `10/m` means 10 per minute.\n"
		"- **CIDR**: `192.0.2.0/24`, `2001:db8::/32`; a bare address is a /32 or /128; an "
		"IPv4-mapped IPv6 client (`::ffff:192.0.2.1`) matches IPv4 entries. In a list of CIDRs, an "
		"item `file:PATH` reads the file at start and on every reload (SIGHUP): one CIDR per line, "
		"blank lines and `#` comments allowed; a bad line is an error at `PATH:LINE:COL`, and a "
		"reload that meets one keeps the running config. `file:/dev/null` is an empty list (no other "
		"device or FIFO is read).\n"
		"- **list**: a YAML sequence; a lone value where a list is expected is a list of one. In a "
		"list of sections, a plain string item sets the section's first key (`servers: "
		"[\"smtp://127.0.0.1:2526\"]`).\n"
		"- **backend URL**: `smtp://host[:port]` (default port 25), `lmtp://host[:port]` (24), "
		"`lmtp:unix:/path`, `maildir:/path` (a relative path is relative to mxgate's working "
		"directory). IPv6 hosts in brackets: `smtp://[::1]:2526`. A host name is resolved when the "
		"file is loaded (`-t`, the start, a reload), once per load, A and AAAA (and /etc/hosts), "
		"through dns.resolvers (default /etc/resolv.conf), every name at once within "
		"dns.timeout: one that does not resolve or gets no answer in time is an error at its "
		"place (a reload keeps the running pool and logs why). A name with several addresses is "
		"one server: a connection that cannot be made to one address (refused, unreachable, no "
		"answer within connect_timeout) is tried to the next, in the resolver's order, as "
		"Postfix's smtp client tries each address of a destination (event=backend_address_failed); "
		"only when every address failed is it a failure of the server; its health probe does the "
		"same.\n"
		"- **listen address**: `127.0.0.1:2525`, `\"[::1]:25\"`, `:25` or `\"*:25\"` (every IPv4 "
		"address), `\"[::]:25\"` (every IPv6 address), `localhost:25`; numeric only, no DNS. "
		"Quote bracketed IPv6 addresses and `*:25`: unquoted, `[` starts a YAML list and `*` an "
		"alias.\n"
		"- Anchors, aliases and merge keys of aliases (`<<: *base`, `<<: [*a, *b]`) work; an anchor comes before its aliases. One YAML document per file: a second `---` is an error.\n\n"
		"## Keys\n");
	cfg_docs_walk(&config_table, &cfg_md_visitor, out);
}
