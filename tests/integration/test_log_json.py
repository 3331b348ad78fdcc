#!/usr/bin/env python3
"""log.format: json (docs/operations.md "JSON logs"): each line is one JSON object carrying
the fields of the text line.

The real daemon runs with log.format text, takes a refused recipient (accept_domains: 550
5.7.1) and a relayed message (smtp-sink), from a sender whose quoted local part holds a
blank, '=' and '"'; then a reload turns on json and the same two sessions run again, then a
second reload. Every line after the switch must parse as JSON (json.loads) with ts, level,
event; and each event line of the json sessions carries the same keys, in the same order,
with the same values (a session's id, queue ids, ports and durations aside) as the same
event's line of the text sessions, read by this test's own key=value parser; numbers are
JSON numbers (code=550), a peer's text stays a string (helo=123)."""
import json
import os
import re
import signal
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()
SRC = '198.18.72.1'

HEAD = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (debug|info|warning|error) (-|[0-9a-f]+) (.*)$')
PAIR = re.compile(r'([a-z][a-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: +|$)')
# values that differ between two runs of the same session
VOLATILE = re.compile(r'^(queue_id|backend_queue_id|port|generation|uptime.*|.*_ms|.*_us|ms|us)$')
# fields that carry a peer's text or an id: strings in JSON whatever they look like
TEXT_KEYS = {'helo', 'from', 'rcpt', 'rcpts', 'user', 'reply', 'queue_id', 'client_name', 'version'}


def unquote(v):
    """A text value as log_val wrote it, decoded."""
    if not v.startswith('"'):
        return v
    out, i, s = bytearray(), 1, v[:-1]
    while i < len(s):
        c = s[i]
        if c == '\\' and i + 1 < len(s):
            e = s[i + 1]
            if e == 'x':
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += {'r': b'\r', 'n': b'\n', 't': b'\t'}.get(e, e.encode())
            i += 2
            continue
        out += c.encode()
        i += 1
    return out.decode('utf-8', 'replace')


def text_line(line):
    """(level, session, [(key, value, quoted)]) of a text line, or None."""
    m = HEAD.match(line)
    if not m:
        return None
    rest, pos, out = m.group(4), 0, []
    while pos < len(rest):
        p = PAIR.match(rest, pos)
        mt.check(p is not None, 'text line in key=value form: %r' % line)
        if p is None:
            return None
        out.append((p.group(1), unquote(p.group(2)), p.group(2).startswith('"')))
        pos = p.end()
    return m.group(2), m.group(3), out


def session(mx, tag, h):
    rc = mt.send_mail(mx.port, '"a b=%s"@example.org' % tag, ['x@outside.example'], mt.message('r' + h),
                      ehlo='123', proxy_src=SRC)[0]
    mt.check(rc == 550, '%s: a recipient outside accept_domains is refused (%s)' % (tag, rc))
    rc = mt.send_mail(mx.port, '"a b=%s"@example.org' % tag, ['y@example.test'], mt.message('d' + h),
                      ehlo='123', proxy_src=SRC)[0]
    mt.check(rc == 250, '%s: a recipient in accept_domains is relayed (%s)' % (tag, rc))


def cfg(fmt):
    return mt.proxied_config([sink.url], workers=1, accept_domains=['example.test'],
                             log={'level': 'info', 'format': fmt})


mx = mt.Mxgate(cfg('text'), name='mx-json')
session(mx, 'q', '1')
# both sessions' last lines (disconnect) are there before the switch
mt.check(mt.wait_for(lambda: mx.log().count(' event=disconnect') >= 2, 30), 'text: the sessions ended')
switch = mx.log_size()
mx.reload(cfg('json'))
mt.check(mx.wait_log(r'"event":"reloaded"', timeout=30, start=switch) is not None,
         'the reload to json logs event reloaded in JSON\n' + mx.tail(5))
at = mx.log_size()
session(mx, 'q', '1')
# the second session's disconnects: two sessions, two lines
mt.check(mt.wait_for(lambda: mx.log()[at:].count('"event":"disconnect"') >= 2, 30),
         'json: both sessions logged their disconnect\n' + mx.tail(5))
at2 = mx.log_size()
mx.reload(cfg('json'))
mt.check(mx.wait_log(r'"event":"reloaded"', timeout=30, start=at2) is not None, 'a reload in json: reloaded')
mx.stop()

log = mx.log()
text_lines = [l for l in log[:switch].split('\n') if l]
json_lines = [l for l in log[switch:].split('\n') if l]
mt.check(len(json_lines) > 6, 'json lines were written (%d)' % len(json_lines))

# every line after the switch is one JSON object (the reload's own first lines may be text:
# those written before the new config was in force)
objs = []
for l in json_lines:
    if not l.startswith('{') and HEAD.match(l) and not objs:
        continue
    try:
        o = json.loads(l)
    except ValueError as e:
        mt.check(False, 'a line that is no JSON: %r (%s)' % (l, e))
        continue
    mt.check(isinstance(o, dict) and isinstance(o.get('ts'), str) and o.get('level') in
             ('debug', 'info', 'warning', 'error'), 'JSON line with ts and level: %r' % l)
    objs.append(o)
mt.check(all('event' in o for o in objs), 'every JSON line has an event')

parsed = [t for t in (text_line(l) for l in text_lines) if t is not None]
mt.check(len(parsed) == len(text_lines), 'every text line parses')


def sess_events(items, getev):
    """{event: [item, ...]} of the lines of sessions (not process events), in order."""
    out = {}
    for it in items:
        ev = getev(it)
        if ev:
            out.setdefault(ev, []).append(it)
    return out


t_ev = sess_events([p for p in parsed if p[1] != '-'],
                   lambda p: next((v for k, v, q in p[2] if k == 'event'), None))
j_ev = sess_events([o for o in objs if 'session' in o], lambda o: o.get('event'))
t_last = {ev: lines[-2:] for ev, lines in t_ev.items()}   # the two sessions of the text phase
j_first = {ev: lines[:2] for ev, lines in j_ev.items()}
mt.check(sorted(t_last) == sorted(j_first), 'the same session events in both forms: %s / %s'
         % (sorted(t_last), sorted(j_first)))
compared = 0
for ev in sorted(set(t_last) & set(j_first)):
    for (lvl, sid, fields), o in zip(t_last[ev], j_first[ev]):
        keys = []
        for k, v, q in fields:
            if k not in keys:
                keys.append(k)
        jkeys = [k for k in o if k not in ('ts', 'level', 'session')]
        mt.check(jkeys == keys, '%s: the same keys in the same order: %s / %s' % (ev, keys, jkeys))
        mt.check(o['level'] == lvl, '%s: the same level' % ev)
        for k in keys:
            tv = [(v, q) for kk, v, q in fields if kk == k]
            jv = o.get(k)
            if len(tv) > 1:
                mt.check(isinstance(jv, list) and len(jv) == len(tv), '%s: %s repeated: an array' % (ev, k))
                continue
            v, q = tv[0]
            numeric = not q and k not in TEXT_KEYS and re.fullmatch(r'-?(0|[1-9]\d*)(\.\d+)?', v)
            if numeric:
                mt.check(isinstance(jv, (int, float)) and not isinstance(jv, bool),
                         '%s: %s=%s is a JSON number (%r)' % (ev, k, v, jv))
                if not VOLATILE.match(k):
                    mt.check(float(jv) == float(v), '%s: %s the same number (%s / %r)' % (ev, k, v, jv))
            else:
                mt.check(isinstance(jv, str), '%s: %s is a string (%r)' % (ev, k, jv))
                if not VOLATILE.match(k):
                    mt.check(jv == v, '%s: %s the same value (%r / %r)' % (ev, k, v, jv))
        compared += 1
mt.check(compared >= 6, 'session lines compared: %d (%s)' % (compared, ' '.join(sorted(set(t_last) & set(j_first)))))
rej = [o for o in objs if o.get('event') == 'reject']
mt.check(len(rej) == 1 and rej[0].get('code') == 550 if 'code' in rej[0] else len(rej) == 1,
         'the refusal in JSON: %r' % rej)
conn = [o for o in objs if o.get('event') == 'helo' or 'helo' in o]
mt.check(all(isinstance(o['helo'], str) for o in conn), 'helo=123 stays a string')
frm = [o for o in objs if 'from' in o]
mt.check(len(frm) > 0 and all(o['from'] == '<"a b=q"@example.org>' for o in frm),
         'the quoted sender unescaped: %r' % [o['from'] for o in frm])
dl = [o for o in objs if o.get('event') == 'delivered']
mt.check(len(dl) == 1 and isinstance(dl[0].get('backend'), str), 'the delivery in JSON: %r' % dl)
mt.finish()
