#!/usr/bin/env python3
"""examples/mxgate.yaml tells the newcomer "the values below are the defaults unless a comment
says otherwise": so every key set there outside a list item (a list item is an example of an
entry, not a default) holds the default docs/config.md gives for it, or its comment says
"default". And a range a comment gives ("512..1000") is the key's bounds in docs/config.md
(docs/config.md is generated from the tables in the code, so this is the binary's word).

Parsed line by line (block mappings by indentation, one-line flow mappings { k: v, ... }), so
no YAML module is needed."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

EXAMPLE = os.path.join(mt.SRC, 'examples', 'mxgate.yaml')


def reference():
    """docs/config.md's tables: {dotted.key: (default, bounds, description)}."""
    table, sec = {}, None
    for line in open(os.path.join(mt.SRC, 'docs', 'config.md')):
        m = re.match(r'^### `(.*)`$', line.rstrip('\n'))
        if m:
            sec = '' if m.group(1) == '(top level)' else m.group(1)
            continue
        m = re.match(r'^\| `(\w+)` \| .*? \| (.*?) \| (.*?) \| (.*) \|$', line.rstrip('\n'))
        if m and sec is not None:
            table[(sec + '.' if sec else '') + m.group(1)] = (m.group(2).strip('`'), m.group(3), m.group(4))
    return table


def split_comment(line):
    """(code, comment) of one YAML line: the first '#' outside quotes after a blank."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in '"\'':
            quote = c
        elif c == '#' and (i == 0 or line[i - 1] in ' \t'):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ''


def norm(v):
    v = v.strip()
    if v.startswith('[') and v.endswith(']'):
        return '[' + ','.join(norm(x) for x in v[1:-1].split(',') if x.strip()) + ']'
    return v.strip('"\'')


def flow_pairs(text):
    """'{ a: 1, b: [x, y] }' -> [('a', '1'), ('b', '[x, y]')] (one level, as the example uses)."""
    body, parts, depth, cur = text.strip()[1:-1], [], 0, ''
    for c in body:
        depth += c in '[{'
        depth -= c in ']}'
        if c == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += c
    parts.append(cur)
    return [tuple(x.strip() for x in p.split(':', 1)) for p in parts if ':' in p]


def settings():
    """[(lineno, dotted.key, value, comment)] of examples/mxgate.yaml, list items left out."""
    out, stack, item_indent = [], [], None
    for n, raw in enumerate(open(EXAMPLE), 1):
        code, comment = split_comment(raw.rstrip('\n'))
        if not code.strip():
            continue
        indent = len(code) - len(code.lstrip())
        if item_indent is not None and indent > item_indent:
            continue                       # inside a list item
        item_indent = None
        stack = [(i, k) for i, k in stack if i < indent]
        if code.lstrip().startswith('- '):
            item_indent = indent
            continue
        m = re.match(r'^\s*([\w]+):\s*(.*)$', code)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        path = '.'.join([k for _, k in stack] + [key])
        if not value:
            stack.append((indent, key))
        elif value.startswith('{'):
            out += [(n, path + '.' + k, v, comment) for k, v in flow_pairs(value)]
        else:
            out.append((n, path, value, comment))
    return out


ref = reference()
mt.check(len(ref) > 200, 'docs/config.md tables read (%d keys)' % len(ref))
seen = 0
for n, path, value, comment in settings():
    where = 'examples/mxgate.yaml:%d: %s: %s' % (n, path, value)
    if path not in ref:
        mt.check(False, '%s: a key docs/config.md lists' % where)
        continue
    default, bounds, desc = ref[path]
    seen += 1
    if norm(value) != norm(default) and default != '**required**':
        mt.check('default' in comment,
                 '%s: the default is %s, or the comment says "default" (it says: %s)'
                 % (where, default or '(unset)', comment or 'nothing'))
    for lo, hi in re.findall(r'(?<![\w.])(-?\d+)\.\.(-?\d+)(?![\w.])', comment):
        m = re.match(r'^(-?[\d.]+) \.\. (-?[\d.]+)$', bounds) or re.search(r'(-?\d+)\.\.(-?\d+)', desc)
        mt.check(m and (lo, hi) == (m.group(1), m.group(2)),
                 '%s: the comment\'s range %s..%s is the bounds docs/config.md gives (%s)'
                 % (where, lo, hi, bounds or desc))
mt.check(seen >= 40, 'the example\'s settings were read (%d)' % seen)
mt.finish()
