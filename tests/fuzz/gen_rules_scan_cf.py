#!/usr/bin/env python3
"""gen_rules_scan_cf.py — writes tests/fuzz/fuzz_rules_scan.cf, the rule set fuzz_rules_scan
compiles: one rule per eval of rules/eval.c's table (the first stock rule that calls it, else
one written below) and every 12th header, body, rawbody, uri, full, mimeheader and meta rule
of the stock SpamAssassin rules (/usr/share/spamassassin, the spamassassin package).
Run from anywhere: tests/fuzz/gen_rules_scan_cf.py"""
import glob
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
# the table's entries: EV("name", ...), EVRE("name", ...) and the two written out in full
# ({ "check_uri_detail", ... }, { "html_text_match", ... }: an argument prepared per rule)
evals = re.findall(r'^\t(?:EV(?:RE)?\(|\{ )"([a-z_0-9]+)"', open(os.path.join(SRC, 'rules', 'eval.c')).read(), re.M)
rules = {'eval': {}, 'header': [], 'body': [], 'rawbody': [], 'uri': [], 'full': [], 'meta': [], 'mimeheader': []}
for f in sorted(glob.glob('/usr/share/spamassassin/*.cf')):
    depth = 0
    for l in open(f, errors='replace'):
        l = l.rstrip('\n')
        s = l.strip()
        if re.match(r'(if|ifplugin)\b', s): depth += 1; continue
        if s.startswith('endif'): depth -= 1; continue
        m = re.match(r'(header|body|rawbody|full|uri|meta|mimeheader)\s+(\S+)\s+(.*)$', s)
        if not m: continue
        kind, name, rest = m.groups()
        e = re.match(r'eval:(\w+)\(', rest)
        if e:
            if e.group(1) in evals and e.group(1) not in rules['eval']:
                rules['eval'][e.group(1)] = s
            continue
        if 'eval:' in rest: continue
        rules[kind].append(s)
manual = {
 'check_dkim_verified': 'header FZ_DKIM_VERIFIED eval:check_dkim_verified()',
 'check_for_forged_gw05_received_headers': 'header FZ_GW05 eval:check_for_forged_gw05_received_headers()',
 'check_for_forged_received_ip_helo': 'header FZ_RCVD_IP_HELO eval:check_for_forged_received_ip_helo()',
 'check_for_from_domain_in_received_headers': "header FZ_FROM_IN_RCVD eval:check_for_from_domain_in_received_headers('example.com', 'true')",
 'check_for_illegal_ip': 'header FZ_ILLEGAL_IP eval:check_for_illegal_ip()',
 'check_for_msn_groups_headers': 'header FZ_MSN_GROUPS eval:check_for_msn_groups_headers()',
 'check_for_numeric_helo': 'header FZ_NUMERIC_HELO eval:check_for_numeric_helo()',
 'check_for_sender_no_reverse': 'header FZ_SENDER_NO_REV eval:check_for_sender_no_reverse()',
 'check_for_unique_subject_id': 'header FZ_UNIQUE_SUBJ_ID eval:check_for_unique_subject_id()',
 'check_freemail_body': "body FZ_FREEMAIL_BODY eval:check_freemail_body('\\\\d+@')",
 'check_messageid_not_usable': 'header FZ_MSGID_NOT_USABLE eval:check_messageid_not_usable()',
 'check_qp_ratio': "body FZ_QP_RATIO eval:check_qp_ratio('0.5')",
 # SA has no stock uri_detail rule: a URIDetail definition over every key
 'check_uri_detail': 'uri_detail FZ_URI_DETAIL raw =~ /%2e|%40/i type =~ /^(?:a|img|parsed)$/ '
                     'cleaned =~ /\\bclick\\b|@/i text =~ /./ domain =~ /^(?!example\\.com$)/ '
                     'host =~ /\\d/',
 'received_within_months': "header FZ_RCVD_MONTHS eval:received_within_months('1','6')",
}
# What the sampled rules leave out, so the scan's code behind it runs (session 21's coverage
# pass, -print_coverage=1 over the corpus): a TLD list (20_aux_tlds.cf's util_rb_tld, a few of
# them: without one the URI finder and FreeMail's address pattern match no bare domain or
# address at all, "no_tlds_defined"), the settings the evals read (freemail domains, the
# address lists with their globs, URI host lists, the trust path's networks), a capture rule
# and template rules that use its tag (72_active.cf's GB_TO_ADDR), and the Received ranges.
extra = '''util_rb_tld com org net edu gov info biz io xyz top de uk jp ru cn fr nl br au example
util_rb_2tld co.uk com.au co.jp
util_rb_3tld act.edu.au
freemail_domains gmail.com yahoo.com *.freemail.example mail.*.example
freemail_welcomelist newsletter@gmail.com
welcomelist_from *@example.org friend?@*.example.net
whitelist_from boss@example.com
blocklist_from *@spam.example *spam*@*
unwelcomelist_from friend1@*.example.net
welcomelist_from_rcvd *@example.org example.org
def_welcomelist_from_rcvd *@*.example.com example.com
welcomelist_to postmaster@* *@list.example
blocklist_to bad*@example.*
welcomelist_subject [list]* *newsletter*
blocklist_subject *viagra* free*money
welcomelist_uri_host example.org
blocklist_uri_host spam.example bad.example.net
enlist_uri_host (FZLIST) list.example
trusted_networks 10.0.0.0/8 192.0.2.0/24 2001:db8::/32
internal_networks 10.0.0.0/8
msa_networks 10.9.0.0/16
originating_ip_headers X-Originating-IP X-Yahoo-Post-IP
header   __GB_TO_ADDR       To:addr =~ /(?<GB_TO_ADDR>.*)/
header   __FZ_FROM_USER     From:addr =~ /^(?<FZ_FROM_USER>[^@]{3,})@/
body     FZ_BODY_TO_ADDR    /%{GB_TO_ADDR}/i
uri      FZ_URI_TO_ADDR     m|^https?://.{4,128}[\\#=/]%{GB_TO_ADDR}|i
header   FZ_SUBJ_FROM_USER  Subject =~ /%{FZ_FROM_USER}/i
header   FZ_ALL_TRUSTED     ALL-TRUSTED =~ /\\bby\\b/
header   FZ_ALL_INTERNAL    ALL-INTERNAL =~ /\\[10\\./
header   FZ_ALL_UNTRUSTED   ALL-UNTRUSTED =~ /\\bfrom\\b/i
header   FZ_ALL_EXTERNAL    ALL-EXTERNAL:raw =~ /\\n\\s/'''
out = ['# fuzz_rules_scan.cf — the rule set fuzz_rules_scan compiles once: one rule for every eval',
       '# mxgate implements (rules/eval.c), with the arguments SpamAssassin\'s stock rules give it',
       '# (14 without a stock rule: arguments from the generator), the settings, capture rules and',
       '# Received ranges those evals and the scan read (the generator\'s extra), and every 12th',
       '# header, body, rawbody, uri, full, mimeheader and meta rule of the stock set (Apache',
       '# SpamAssassin 4.0 rules, Apache License 2.0), so the scan walks every view of a message.',
       '# Regenerate with the script tests/fuzz/gen_rules_scan_cf.py; the stock rules are not',
       '# needed to build or run the target.',
       '', '# ---- evals']
for e in evals:
    out.append(rules['eval'].get(e) or manual[e])
out += ['', '# ---- settings, captures and Received ranges (the generator\'s extra)']
out.extend(extra.split('\n'))
for kind in ('header', 'body', 'rawbody', 'uri', 'full', 'mimeheader', 'meta'):
    out.append('')
    out.append('# ---- %s' % kind)
    out.extend(rules[kind][::12])
open(os.path.join(HERE, 'fuzz_rules_scan.cf'), 'w').write('\n'.join(out) + '\n')
