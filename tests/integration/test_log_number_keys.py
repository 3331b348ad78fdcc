#!/usr/bin/env python3
"""A key a log line writes as a number is a number in every JSON log line (log.format: json),
and a key written as text in some line is a string in all of them. proxy/logkv.c decides by a
sorted table of keys (logkv_number_keys): a key added to a log line with `key=%d` but not to
that table would be a JSON string, and a table key that some other line writes with `%s`
would switch type between lines (a log index refuses the second type).

Read from the C sources (proxy/, filters/, plugins/, rules/, store/; comments skipped, literals
joined, `"key=%" PRIu64` read as `key=%llu`), no daemon needed:
- every `key=%d / %i / %u / %ld / %lu / %lld / %llu / %zu / %zd / %.Nf / %g` of a log format
  (the format of a call of a function that logs, LOG_FUNCS: log_event, opstats_refusal,
  session_refusal_log; any literal that starts with `event=`; and a piece built apart, a
  literal that starts with a blank and a `key=`, as `snprintf(buf, .., " wait=%llu", ..)`
  whose buf a format's %s then takes) has its key in
  logkv_number_keys, or in TEXT_TOO below (a key also written as text somewhere: it stays a
  string in JSON), and the failure says which to do;
- a key in logkv_number_keys is never written by a log format with a text conversion (`%s`,
  `%.*s`, `%c`, `%x`) or a literal text value (`key=none`), but for DIGITS (a %s that is
  always a decimal), and the table is sorted and without duplicates (logkv_is_number
  bsearches it);
- every key of TEXT_TOO is written as text somewhere (else it belongs in the table) and as a
  number somewhere (else it is not needed here).

Every function the sources declare with a printf format attribute (headers and .c files,
whatever its parameters) is in LOG_FUNCS or in NOT_LOG, so a new logging function is read too;
and every key of logkv_number_keys is written as a number by some log format (a key nothing
logs is a key left behind).

Before session 33 the table was kept by hand: nothing said that a new numeric key was a
string in JSON. Other lanes that add log events meet this test after merging. Before session
34 only log_event's formats and `event=` literals were read: opstats_refusal's `added=%zu
limit=%d` (smtp_tx.c) and rules.c's piece ` bayes=%.4f` (text `bayes=none` elsewhere) went
unseen. Before session 35 the table kept 6 keys no log line writes (expires first_seen: a
control reply; intl msa: the X-Spam-Relays text; tlport trport: Dovecot's auth protocol, read
from "\\tlport=") and the attribute scan read only headers, with a regex a parameter list
holding parentheses (a function pointer) defeated."""
import glob
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from csource import blank_comments, call_args, lineno, lit_value, literals  # noqa: E402

SRC = mt.SRC
CODE_DIRS = ('proxy', 'filters', 'plugins', 'rules', 'store')
TABLE = 'proxy/logkv.c'
ME = 'tests/integration/' + os.path.basename(__file__)

# Keys written with a numeric conversion by some log line and with text by another (or
# whose value is text in some lines): a string in every JSON line. key -> why.
TEXT_TOO = {
    'added': 'smtp_tx.c: added=yes|no (a recipient the backend took), a count in lmtp_too_many_recipients',
    'bayes': 'rules.c: the spam probability (%.4f), or why there is none (bayes=none, a reason)',
    'count': 'filters/ratelimit.c: event=ratelimit count=connections|messages|... (what is counted)',
    'id': 'a quarantine id, a request id elsewhere (quarantine_control.c id=%s)',
    'rcpts': 'event=ledger_add rcpts= lists the addresses (smtp_tx.c)',
    'limit': 'session_io.c: limit=command_timeout (which timer), ratelimit.c limit=30/1m (a rate); '
             'a count in lmtp_too_many_recipients',
    'queued': 'main.c: event=reload_abandoned queued=yes|no; a count in the stores\' lines',
    'removed': 'reputation_control.c: event=reputation_flush removed= names what went; a count in bayes_expire',
    'rules': 'rules.c: the names of the rules that asked for a quarantine',
    'signal': 'main.c: event=signal_ignored signal=USR2 (a name), a number in event=stopping',
    'skipped': 'smtp_tx.c / chain.c: the names of what was skipped',
    'state': 'a session or backend state name (session_io.c, relay.c), a number in backend_error',
}
# The functions that write a log line from a printf format: name -> the format's argument
# (from 1), as their format(printf, N, M) attribute says (checked below).
LOG_FUNCS = {'log_event': 3, 'opstats_refusal': 2, 'session_refusal_log': 3, 'log': 3}
# Functions with a printf format that write no log line.
# (session_check_reply, session_check_refuse and xclient_error write an SMTP reply; the log
# takes a refusal's reply quoted, as reply="...", a value, not fields.)
NOT_LOG = {'strbuf_printf', 'verdict_set', 'sdnotify_printf', 'session_reply', 'rule_src_add_error',
           'rule_src_add_warning', 'cfg_error', 'cfg_error_key', 'sb_printf', 'session_check_reply',
           'session_check_refuse', 'xclient_error'}
# Keys whose text conversion always writes a decimal number: the table keeps them numbers.
# (key, file) -> why
DIGITS = {
    ('max', 'plugins/rspamd.c'): "h->get(MXGATE_MAX_SIZE): the plugin ABI's size, in decimal",
    ('score', 'rules/rules.c'): 'sbuf: the score formatted with %.1f (or %.2f), no other text',
}

NUM = re.compile(r'(?<![\w.])([a-z_][a-z0-9_]*)=%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?'
                 r'(hh|h|ll|l|z|j|t|L)?([diufFgGeE])')
TEXT = re.compile(r'(?<![\w.])([a-z_][a-z0-9_]*)=(?:"?%[-+ #0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t)?[scxXp]'
                  r'|"?([A-Za-z_][^ %"\\]*)(?=[ "\\]|$))')


def unpri(code):
    """code with `"...%" PRIu64 "..."` joined into one literal `"...%llu..."` (and a PRI macro
    ending a literal run: `"%" PRIu64)`)."""
    code = re.sub(r'"\s*PRI([diouxX])\w*\s*"', lambda m: 'll' + m.group(1), code)
    return re.sub(r'"\s*PRI([diouxX])\w*', lambda m: 'll' + m.group(1) + '"', code)


PIECE = re.compile(r' [a-z_][a-z0-9_]*=')


def formats(code):
    """[(line, format text)] of the log formats in code: the format argument of each call of
    a LOG_FUNCS function (plugin.h's h->log too), every literal (adjacent ones joined) that
    starts with event=, and every piece built apart (a literal that starts with " key="),
    each once."""
    out = []
    for fn, arg in sorted(LOG_FUNCS.items()):
        for line, args in call_args(code, fn):
            for a in args[arg - 1:arg]:
                v = lit_value(a)
                if v is not None:
                    out.append((line, v))
    for line, s in literals(code):
        if (s.startswith('event=') or PIECE.match(s)) and (line, s) not in out:
            out.append((line, s))
    return out


ATTR = re.compile(r'__attribute__\s*\(\(\s*format\s*\(\s*(?:__)?(?:gnu_)?printf(?:__)?\s*,\s*(\d+)')


def printf_decls(code):
    """[(offset, name, format argument)] of the declarations in code that carry a printf
    format attribute, found from the attribute: after the parameter list (`name(...)
    __attribute__`, `(*name)(...) __attribute__`), whatever the parameters hold (a function
    pointer's own parentheses), or before the declaration (`__attribute__((...)) int
    name(...)`)."""
    out = []
    for m in ATTR.finditer(code):
        i = m.start() - 1
        while i >= 0 and code[i].isspace():
            i -= 1
        if i >= 0 and code[i] == ')':
            depth = 0
            while i >= 0:
                depth += code[i] == ')'
                depth -= code[i] == '('
                if depth == 0:
                    break
                i -= 1
            n = re.search(r'(\w+)\s*\)?\s*$', code[:i])
        else:
            n = re.search(r'\)\)\s*[^;{(]*?(\w+)\s*\(', code[m.end():])
        out.append((m.start(), n.group(1) if n else '?', int(m.group(1))))
    return out


# the scan finds what these declare: a parameter that is a function pointer, a member that
# is one, the attribute before the declaration
SAMPLE = (
    'void cb_logf(void (*done)(void *arg), void *arg, const char *fmt, ...)\n'
    '    __attribute__((format(printf, 3, 4)));\n'
    'struct x { void (*member_logf)(int (*cmp)(const void *, const void *), const char *fmt, ...)\n'
    '    __attribute__((format(printf, 2, 3))); };\n'
    '__attribute__((format(printf, 1, 2))) int before_logf(const char *fmt, ...);\n')
mt.check([(n, a) for _, n, a in printf_decls(SAMPLE)] == [('cb_logf', 3), ('member_logf', 2), ('before_logf', 1)],
         'the attribute scan finds a declaration with function-pointer parameters, a member, an attribute '
         'before: %s' % [(n, a) for _, n, a in printf_decls(SAMPLE)])

# every printf-style function the sources declare (headers, and static ones in .c files) is
# known to log or not to
for d in CODE_DIRS:
    for path in sorted(glob.glob(os.path.join(SRC, d, '*.[ch]'))):
        code = blank_comments(open(path, errors='replace').read())
        rel = os.path.relpath(path, SRC)
        for pos, name, arg in printf_decls(code):
            mt.check(name in NOT_LOG or LOG_FUNCS.get(name) == arg,
                     '%s:%d: %s takes a printf format (argument %s): add it to LOG_FUNCS (it logs) or NOT_LOG in %s'
                     % (rel, lineno(code, pos), name, arg, ME) if name not in LOG_FUNCS else
                     '%s:%d: %s\'s format is argument %s: LOG_FUNCS says %d' % (rel, lineno(code, pos), name,
                                                                             arg, LOG_FUNCS[name]))


number_at, text_at = {}, {}     # key -> ['file:line', ...]
nformats = 0
for d in CODE_DIRS:
    for path in sorted(glob.glob(os.path.join(SRC, d, '*.[ch]'))):
        rel = os.path.relpath(path, SRC)
        code = unpri(blank_comments(open(path, errors='replace').read()))
        for line, fmt in formats(code):
            nformats += 1
            for m in NUM.finditer(fmt):
                number_at.setdefault(m.group(1), []).append('%s:%d' % (rel, line))
            for m in TEXT.finditer(fmt):
                if (m.group(1), rel) not in DIGITS:
                    text_at.setdefault(m.group(1), []).append('%s:%d' % (rel, line))
mt.check(nformats > 300 and len(number_at) > 50,
         'the sources have log formats (%d) with numeric keys (%d)' % (nformats, len(number_at)))

src = blank_comments(open(os.path.join(SRC, TABLE)).read())
m = re.search(r'logkv_number_keys\[\]\s*=\s*\{(.*?)\};', src, re.S)
mt.check(m is not None, '%s has the table logkv_number_keys' % TABLE)
table = re.findall(r'"([^"]*)"', m.group(1)) if m else []
line = lineno(src, m.start()) if m else 0
mt.check(table == sorted(table, key=lambda k: k.encode()) and len(set(table)) == len(table),
         '%s:%d: logkv_number_keys is sorted by octet, each key once (bsearch): %s'
         % (TABLE, line, [k for i, k in enumerate(table) if i and table[i - 1].encode() >= k.encode()]))

for key in sorted(number_at):
    if key in table or key in TEXT_TOO:
        continue
    mt.check(False, '%s writes `%s=` with a numeric conversion: add "%s" to logkv_number_keys in %s:%d '
             '(sorted by octet: a JSON number), or, when some line writes it as text, to TEXT_TOO in %s '
             'with why (a JSON string in every line)'
             % (' '.join(number_at[key][:3]), key, key, TABLE, line, ME))
for key in table:
    if key in text_at:
        mt.check(False, '%s: "%s" is in logkv_number_keys (%s:%d) but %s writes it as text: a JSON number '
                 'in some lines, a string in others; write it as a number there, or move it from the table '
                 'to TEXT_TOO in %s' % (' '.join(text_at[key][:3]), key, TABLE, line,
                                         'that line' if len(text_at[key]) == 1 else 'those lines', ME))
for key in sorted(TEXT_TOO):
    mt.check(key not in table, '"%s" is both in TEXT_TOO and in logkv_number_keys (%s:%d)' % (key, TABLE, line))
    mt.check(key in number_at and key in text_at,
             'TEXT_TOO has "%s", which %s: take it out of %s' %
             (key, 'no format writes as a number' if key not in number_at else
              'no format writes as text (then it belongs in logkv_number_keys, %s:%d)' % (TABLE, line), ME))
# a table key no format here writes as a number: nothing logs it (a key left behind, or one
# that only a control reply or a header writes), or a piece built apart the reading cannot
# follow (strbuf, snprintf into a buffer a format's %s takes) writes it
for key in table:
    mt.check(key in number_at,
             '"%s" is in logkv_number_keys (%s:%d) but no log format writes it as a number: take it out, '
             'or, when a piece built apart writes it, make that piece a literal that starts with " %s=%%" '
             '(what this test reads)' % (key, TABLE, line, key))
mt.say('%d log formats, %d keys written as numbers, %d in the table, %d text too'
       % (nformats, len(number_at), len(table), len(TEXT_TOO)))
mt.finish()
