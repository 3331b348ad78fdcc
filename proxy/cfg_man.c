/* cfg_man.c — mxgate.yaml(5) in roff, one more visitor of cfg_docs_walk (cfg_docs.c writes
 * the Markdown reference from the same walk). */
#include "cfg_man.h"
#include "config.h"

#include <stdio.h>
#include <string.h>

#ifndef MX_VERSION
#define MX_VERSION "unknown"
#endif

/* Text for roff: backslashes and minus signs escaped, a leading '.' or '\'' defused, line
 * breaks flattened (every table string is one line). */
static void cfg_man_text(FILE *out, const char *s)
{
	if (s && (*s == '.' || *s == '\''))
		fputs("\\&", out);
	for (; s && *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', out);
		else
			fputc(*s, out);
	}
}

static void cfg_man_section(void *arg, const char *path, const struct cfg_table *t)
{
	FILE *out = arg;

	(void)t;
	fputs(".SS ", out);
	if (path[0]) {
		fputc('"', out);
		cfg_man_text(out, path);
		fputc('"', out);
	} else {
		fputs("\"top level\"", out);
	}
	fputc('\n', out);
}

static void cfg_man_key(void *arg, const struct cfg_docs_key *k)
{
	FILE *out = arg;

	fputs(".TP\n.B ", out);
	cfg_man_text(out, k->field->key);
	fputs("\n.RI ", out);
	/* the type, then what is known of the value, on one line */
	fputc('"', out);
	if (k->type) {
		cfg_man_text(out, k->type);
	} else {
		for (int i = 0; k->field->choices && k->field->choices[i]; i++) {
			if (i)
				fputs(" | ", out);
			cfg_man_text(out, k->field->choices[i]);
		}
	}
	fputc('"', out);
	if (k->required) {
		fputs(" \"; \" \"required\"", out);
	} else if (k->defval) {
		fputs(" \"; default \" \"", out);
		cfg_man_text(out, k->defval);
		fputc('"', out);
	}
	if (k->bounded) {
		fputs(" \"; \" \"", out);
		cfg_man_text(out, k->lo);
		fputs(" .. ", out);
		cfg_man_text(out, k->hi);
		fputc('"', out);
	}
	fputs("\n.br\n", out);
	cfg_man_text(out, k->field->doc);
	fputc('\n', out);
}

static const struct cfg_docs_visitor cfg_man_visitor = { cfg_man_section, cfg_man_key };

void config_write_man(void *out_fp)
{
	FILE *out = out_fp;

	fprintf(out,
	    ".\\\" mxgate.yaml.5 \\(em GENERATED from the config tables by `mxgate \\-\\-dump\\-config\\-man`\n"
	    ".\\\" (proxy/cfg_man.c); do not edit: change the tables and regenerate.\n"
	    ".TH MXGATE.YAML 5 \"\" \"mxgate %s\" \"File Formats Manual\"\n"
	    ".nh\n.ad l\n"
	    ".SH NAME\n"
	    "mxgate.yaml \\- configuration of mxgate\n"
	    ".SH SYNOPSIS\n"
	    ".I /etc/mxgate/mxgate.yaml\n"
	    ".SH DESCRIPTION\n"
	    "The configuration of\n"
	    ".BR mxgate (8)\n"
	    "is one YAML file, given with\n"
	    ".BR \"mxgate \\-c\" ;\n"
	    ".B \"mxgate \\-t \\-c\"\n"
	    ".I file\n"
	    "checks it.\n"
	    "Every key has a default except\n"
	    ".B listen\n"
	    "and\n"
	    ".BR backends.servers .\n"
	    "Unknown keys are errors.\n"
	    "Errors are printed one per line, all of them, as\n"
	    ".IR file : line : column \": \" key.path \": \" reason .\n"
	    "The checks made on the loaded file (the warnings of\n"
	    ".BR \"mxgate -t\" ,\n"
	    "a directory the start cannot write, a store it cannot open) name their key the same\n"
	    "way: at its value, a section's or a list's key, a list item's first key, or for a\n"
	    "key not written the section it would be in.\n"
	    ".PP\n"
	    "A reload (SIGHUP or\n"
	    ".BR \"mxgatectl reload\" )\n"
	    "reads the file again; a file with errors changes nothing.\n"
	    ".SH VALUES\n"
	    ".TP\n.B bool\n"
	    ".BR true / false ,\n.BR yes / no ,\n.BR on / off .\n"
	    ".TP\n.B size\n"
	    "Bytes, with an optional binary suffix K, M, G or T (also KB, KiB; any case):\n"
	    ".BR 512 ,\n.BR 64K ,\n.BR 50M ,\n.BR 1G .\n"
	    ".TP\n.B duration\n"
	    ".BR 250ms ,\n.BR 30s ,\n.BR 5m ,\n.BR 1h ,\n.BR 2d ,\n.BR 1w ,\n"
	    "or combinations such as\n.BR 1h30m ;\n"
	    "a plain number is seconds.\n"
	    ".TP\n.B rate\n"
	    ".IR count / duration :\n"
	    ".BR 30/60s ,\n.BR 1000/1h ;\n"
	    ".B 10/m\n"
	    "is ten a minute.\n"
	    ".TP\n.B CIDR\n"
	    ".B 192.0.2.0/24\n"
	    "or\n"
	    ".BR 2001:db8::/32 ;\n"
	    "a bare address is a /32 or /128; an IPv4\\-mapped IPv6 client matches IPv4 entries.\n"
	    "In a list of CIDRs, an item\n.BI file: PATH\n"
	    "reads the file at start and on every reload: one CIDR per line, blank lines and\n"
	    ".B #\n"
	    "comments allowed; a bad line is an error at\n.IR PATH : LINE : COL ,\n"
	    "and a reload that meets one keeps the running configuration.\n"
	    ".B file:/dev/null\n"
	    "is an empty list (no other device or FIFO is read).\n"
	    ".TP\n.B list\n"
	    "A YAML sequence; a lone value where a list is expected is a list of one.\n"
	    "In a list of sections, a plain string item sets the section's first key.\n"
	    ".TP\n.B backend URL\n"
	    ".BI smtp:// host\\fR[\\fP: port\\fR]\\fP\n"
	    "(port 25 by default),\n"
	    ".BI lmtp:// host\\fR[\\fP: port\\fR]\\fP\n"
	    "(24),\n"
	    ".BI lmtp:unix: path\n"
	    "or\n"
	    ".BI maildir: path\\fR;\\fP\n"
	    "IPv6 hosts in brackets.\n"
	    "A host name is resolved when the file is loaded (\\-t, the start, a reload),\n"
	    "once per load, A and AAAA (and /etc/hosts), through\n"
	    ".B dns.resolvers\n"
	    "(default /etc/resolv.conf), every name at once within\n"
	    ".BR dns.timeout :\n"
	    "one that does not resolve or gets no answer in time is an error\n"
	    "(a reload keeps the running pool and logs why).\n"
	    "A name with several addresses is one server: a connection that cannot be made\n"
	    "to one address (refused, unreachable, no answer within connect_timeout) is\n"
	    "tried to the next, as Postfix's smtp client does; only when every address\n"
	    "failed is it a failure of the server; its health probe does the same.\n"
	    ".TP\n.B listen address\n"
	    ".BR 127.0.0.1:2525 ,\n"
	    ".B \"[::1]:25\"\n"
	    "(quoted: unquoted, [ starts a YAML list),\n"
	    ".B :25\n"
	    "(every IPv4 address),\n"
	    ".B \"[::]:25\"\n"
	    "(every IPv6 address); numeric only.\n"
	    ".PP\n"
	    "Anchors, aliases and merge keys of aliases work; an anchor comes before its aliases.\nOne YAML document per file: a second \\-\\-\\- is an error.\n"
	    ".SH KEYS\n"
	    "Each key with its type, default and bounds, section by section; a section of a list\n"
	    "is written\n"
	    ".IR name [].\n", MX_VERSION);
	cfg_docs_walk(&config_table, &cfg_man_visitor, out);
	fputs(".SH EXAMPLE\n"
	    ".RS\n.nf\n"
	    "listen:\n"
	    "  \\- address: \":25\"\n"
	    "    tls: starttls\n"
	    "tls: { certificate: /etc/mxgate/cert.pem, key: /etc/mxgate/key.pem }\n"
	    "backends:\n"
	    "  servers: [\"smtp://127.0.0.1:10025\"]\n"
	    "dnsbl:\n"
	    "  lists: [ { zone: zen.spamhaus.org, weight: 3 } ]\n"
	    "metrics: { listen: \"127.0.0.1:9125\" }\n"
	    "control: { socket: /run/mxgate/control.sock }\n"
	    ".fi\n.RE\n"
	    ".SH FILES\n"
	    ".TP\n.I /etc/mxgate/mxgate.yaml\n"
	    "The configuration of the Debian package.\n"
	    ".SH SEE ALSO\n"
	    ".BR mxgate (8),\n"
	    ".BR mxgatectl (8)\n", out);
}
