#!/usr/bin/env python3
"""Every name an operator sees is documented, in one obvious place, and the documentation
names nothing the code no longer has. The names are read from the C sources (proxy/,
filters/, plugins/, rules/, store/, tools/; comments skipped, adjacent string literals
joined, so a format split over lines or reflowed still reads the same), not from a running
daemon, so this runs in a second without peers:

- every `event=NAME` a log call can write has a row in docs/operations.md's "Log events"
  table, and that row names every key=value field the code's formats give the event; a
  row whose event no format writes any more fails too;
- every metric (`mxgate_` + the names of proxy/counters.c's table, proxy/metrics.c's
  series, `metrics_register*()` and every `*_total` literal) has a row in the tables of
  docs/operations.md's "Counters and metrics", each label the code gives a sample
  (`backend`, `reason`, `rule`, `store`, `version`) is shown there as `label="...`, and
  every `mxgate_*` row names a metric the code serves;
- every control verb (proxy/control_cmd.c's table and the modules' `.usage`) and its
  sub-words are in the first column of docs/operations.md's mxgatectl command table;
- every header field mxgate writes into a message is a row of docs/operations.md's
  "Header fields mxgate writes" table;
- every key of the configuration tables (`{ "key", CFG_...`) is a row of docs/config.md
  (generated from those tables: a table the generator does not reach fails here);
- every environment variable the code reads is named in README.md or docs/.

A name made at run time (`event=%s_error`) is expanded by EXPANSIONS below; a new one
fails, naming its place, until it is added there. The only names exempt are test hooks
(MXGATE_TEST_*: read by the daemon only for the test suite, never set in production)."""
import glob
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

SRC = mt.SRC
CODE_DIRS = ('proxy', 'filters', 'plugins', 'rules', 'store', 'tools')   # not plugins/examples
# Names a format makes at run time: the format's text -> the names it can make. The code
# next to each decides which (session.c: the verdict; chain.c: a content filter or not;
# limits_control.c: the greylist verb; milter.c: which part went past the size).
EXPANSIONS = {
    'event=%s': ('reject', 'tempfail'),
    'event=%s_error': ('module_error', 'plugin_error'),
    'event=greylist_%s': ('greylist_pass', 'greylist_delete'),
    'event=milter_%s_too_big': ('milter_body_too_big', 'milter_headers_too_big'),
    'X-Spam-%s': ('X-Spam-Status', 'X-Spam-Level', 'X-Spam-Flag'),   # rules.c: 10_default_prefs' add_header
}
TEST_ONLY = re.compile(r'^MXGATE_TEST_')   # test hooks, never set in production


from csource import blank_comments, call_args, lineno, lit_value, literals  # noqa: E402


sources = {}
for d in CODE_DIRS:
    for path in sorted(glob.glob(os.path.join(SRC, d, '*.[ch]'))):
        sources[os.path.relpath(path, SRC)] = blank_comments(open(path, errors='replace').read())


def read(rel):
    with open(os.path.join(SRC, rel)) as f:
        return f.read()


def section(text, title, level='##'):
    """The text of the section whose heading is `level title`, up to the next heading of
    that level or above."""
    m = re.search(r'^%s %s\n(.*?)(?=^#{1,%d} |\Z)' % (re.escape(level), re.escape(title), len(level)),
                  text, re.M | re.S)
    mt.check(m is not None, 'docs has the section "%s %s"' % (level, title))
    return m.group(1) if m else ''


def rows(text):
    """{first cell's backticked name: the whole row} of the Markdown tables in text."""
    out = {}
    for line in text.split('\n'):
        m = re.match(r'^\| `([^`]+)`', line)
        if m:
            out[m.group(1)] = line
    return out


ops = read('docs/operations.md')
alldocs = read('README.md') + ''.join(read(os.path.relpath(p, SRC)) for p in sorted(glob.glob(os.path.join(SRC, 'docs', '*.md'))))
missing = []

# ---- log events ---------------------------------------------------------------------------
events = {}   # name -> {'keys': [...], 'at': [...]}
for rel, code in sources.items():
    for line, s in literals(code):
        for m in re.finditer(r'event=([A-Za-z0-9_%]+)', s):
            token = 'event=' + m.group(1)
            if '%' in token and token not in EXPANSIONS:
                mt.check(False, '%s:%d: %s makes an event name at run time: add what it can be to '
                         'EXPANSIONS in %s' % (rel, line, token, os.path.basename(__file__)))
                continue
            names = EXPANSIONS.get(token, (m.group(1),))
            # the fields: only a log format (it starts with event=) says them; a doc string
            # that mentions an event names it, nothing more
            keys = []
            if s.startswith('event='):
                rest = s[m.end():]
                keys = re.findall(r'(?:^|[ "(])([a-z_][a-z0-9_]*)=', rest.split(' event=')[0])
            for n in names:
                e = events.setdefault(n, {'keys': [], 'at': []})
                e['keys'] += [k for k in keys if k not in e['keys']]
                e['at'].append('%s:%d' % (rel, line))
mt.check(len(events) > 100, 'the sources write events (%d found)' % len(events))
ev_rows = rows(section(ops, 'Log events'))
for name in sorted(events):
    row = ev_rows.get(name)
    if row is None:
        missing.append('event=%s (%s) has no row in docs/operations.md "Log events"'
                       % (name, ' '.join(events[name]['at'][:3])))
        continue
    cells = row.split(' | ')
    fields = set(re.findall(r'`([a-z_][a-z0-9_]*)`', cells[2] if len(cells) > 3 else ''))
    for k in events[name]['keys']:
        if k not in fields:
            missing.append('event=%s: its field %s= (%s) is not in its row of docs/operations.md "Log events"'
                           % (name, k, ' '.join(events[name]['at'][:3])))
for name in sorted(set(ev_rows) - set(events)):
    missing.append('docs/operations.md "Log events" has a row for event=%s, which no format in the code writes'
                   % name)

# ---- metrics ------------------------------------------------------------------------------
metrics, labels = {}, {}
for rel, code in sources.items():
    for m in re.finditer(r'\[(?:COUNTER|SERIES)_\w+\]\s*=\s*\{\s*"(\w+)"', code):
        metrics.setdefault(m.group(1), rel)
    for m in re.finditer(r'#define\s+COUNTER_\w+_NAME\s+"(\w+)"', code):
        metrics.setdefault(m.group(1), rel)
    for fn in ('metrics_register', 'metrics_register_family', 'sb_header'):
        for line, args in call_args(code, fn):
            i = 1 if fn == 'sb_header' else 0
            v = lit_value(args[i]) if len(args) > i else None
            if v:
                metrics.setdefault(v, '%s:%d' % (rel, line))
    for line, s in literals(code):
        if re.fullmatch(r'[a-z][a-z0-9_]*_total', s):
            metrics.setdefault(s, '%s:%d' % (rel, line))
    for fn, i in (('sb_sample', 2), ('metrics_out_sample', 1)):
        for line, args in call_args(code, fn):
            v = lit_value(args[i]) if len(args) > i else None
            if v:
                labels.setdefault(v, '%s:%d' % (rel, line))
metrics.pop('name', None)   # sb_header's parameter in its own definition
mt.check(len(metrics) > 50, 'the sources serve metrics (%d found)' % len(metrics))
msec = section(ops, 'Counters and metrics')
m_rows = {re.match(r'mxgate_(\w+)', k).group(1): v for k, v in rows(msec).items() if k.startswith('mxgate_')}
for name in sorted(metrics):
    if name not in m_rows:
        missing.append('metric mxgate_%s (%s) has no row in docs/operations.md "Counters and metrics"'
                       % (name, metrics[name]))
for name in sorted(set(m_rows) - set(metrics)):
    missing.append('docs/operations.md "Counters and metrics" has a row for mxgate_%s, which the code does not serve'
                   % name)
for label in sorted(labels):
    if not re.search(r'\b%s="' % re.escape(label), msec):
        missing.append('metric label %s= (%s) is not shown in docs/operations.md "Counters and metrics"'
                       % (label, labels[label]))

# ---- control verbs ------------------------------------------------------------------------
usages = []
for rel, code in sources.items():
    for m in re.finditer(r'\.usage\s*=\s*"([^"]+)"', code):
        usages.append((rel, m.group(1)))
    if rel == 'proxy/control_cmd.c':
        for m in re.finditer(r'\{\s*"([a-z]+)",\s*"([^"]+)",\s*\d+,\s*\d+,', code):
            usages.append((rel, m.group(2)))
mt.check(len(usages) >= 10, 'the sources have control verbs (%d found)' % len(usages))
cmd_cells = [row.split(' | ')[0] for row in rows(section(ops, 'The control socket and mxgatectl')).values()]
for rel, usage in usages:
    for form in usage.split(' | '):
        words = form.split()
        need = [words[0]] + (words[1].split('|') if len(words) > 1 and re.fullmatch(r'[a-z|]+', words[1]) else [])
        if not any(re.search(r'`%s\b' % re.escape(words[0]), c) and all(re.search(r'\b%s\b' % re.escape(w), c)
                                                                          for w in need) for c in cmd_cells):
            missing.append('control verb "%s" (%s) is not in docs/operations.md\'s mxgatectl command table'
                           % (form, rel))

# ---- header fields written ----------------------------------------------------------------
headers = {}
HDR = r'[A-Z][A-Za-z0-9]*(?:-[A-Za-z0-9%]+)+|Received'
# a field's name may be a header's define (proxy/ownfields.h's OWNFIELD_*)
header_defines = {}
for rel, code in sources.items():
    if rel.endswith('.h'):
        header_defines.update(re.findall(r'#define\s+(\w+)\s+"([^"]+)"', code))
for rel, code in sources.items():
    defines = dict(header_defines)
    defines.update(re.findall(r'#define\s+(\w+)\s+"([^"]+)"', code))
    for fn in ('hook_env_add_header', 'hook_env_insert_header', 'hook_env_change_header', 'headers_append_field', 'rules_field_out',
               'snprintf'):
        for line, args in call_args(code, fn):
            for a in args[1:]:
                v = lit_value(a) if lit_value(a) is not None else defines.get(a)
                if v and re.fullmatch(HDR, v) and (fn != 'snprintf' or v in EXPANSIONS):
                    for h in EXPANSIONS.get(v, (v,)):
                        headers.setdefault(h, '%s:%d' % (rel, line))
    for line, s in literals(code):   # a field written out whole: "Received: from ..."
        m = re.match(r'^(Received|ARC-[A-Za-z-]+|X-[A-Za-z-]+|Authentication-Results): ', s)
        if m:
            headers.setdefault(m.group(1), '%s:%d' % (rel, line))
mt.check(len(headers) >= 8, 'the sources write header fields (%d found)' % len(headers))
h_rows = rows(section(ops, 'Header fields mxgate writes'))
for h in sorted(headers):
    if h not in h_rows:
        missing.append('header field %s: (%s) has no row in docs/operations.md "Header fields mxgate writes"'
                       % (h, headers[h]))
for h in sorted(set(h_rows) - set(headers)):
    missing.append('docs/operations.md "Header fields mxgate writes" has a row for %s, which the code does not write' % h)

# ---- configuration keys -------------------------------------------------------------------
config = read('docs/config.md')
cfg_rows = set(re.findall(r'^\| `(\w+)` \|', config, re.M))
variants = set(re.findall(r'^### `[^`]*\((\w+)\)`$', config, re.M))
keys = {}
for rel, code in sources.items():
    for m in re.finditer(r'\{\s*"([a-z0-9_]+)",\s*CFG_[A-Z_]+', code):
        keys.setdefault(m.group(1), '%s:%d' % (rel, lineno(code, m.start())))
mt.check(len(keys) > 150, 'the sources have configuration keys (%d found)' % len(keys))
for k in sorted(keys):
    if k not in cfg_rows and k not in variants:
        missing.append('config key %s (%s) is not in docs/config.md (is its table reached from config_table?)'
                       % (k, keys[k]))

# ---- environment ----------------------------------------------------------------------------
for rel, code in sources.items():
    for line, args in call_args(code, 'getenv'):
        v = lit_value(args[0]) if args else None
        if v and not TEST_ONLY.match(v) and not re.search(r'\b%s\b' % re.escape(v), alldocs):
            missing.append('environment variable %s (%s:%d) is not named in README.md or docs/' % (v, rel, line))

for what in missing:
    mt.check(False, what)
mt.say('%d events, %d metrics, %d labels, %d control verb forms, %d header fields, %d config keys checked'
       % (len(events), len(metrics), len(labels), len(usages), len(headers), len(keys)))
mt.finish()
