#!/usr/bin/env python3
"""The log contract (INTERFACE.md "Logs"): one line per event, the session id first, then
key=value pairs; each delivered message logs its backend and the backend's queue id.

Every line mxgate writes here, at log.level debug, is parsed strictly: "TIMESTAMP LEVEL ID"
then space-separated key=value tokens whose value is either a run without blanks or double
quotes, or a double-quoted string with \\" and \\\\ escapes. Client-chosen text that
RFC 5321 allows in an address (a quoted local part with spaces, '=' and '"') must not
break a line into extra keys: `from=<"a b event=x"@example.test>` would read as a second
`event` key to any key=value parser (logfmt, Loki, fluent-bit, a grep for event=)."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

HEAD = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error) (-|[0-9a-f]{6,16}) (.*)$')
PAIR = re.compile(r'([a-z][a-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')


def pairs(rest):
    """The key=value pairs of rest, or None when rest is not exactly such pairs."""
    out, pos = [], 0
    while pos < len(rest):
        m = PAIR.match(rest, pos)
        if not m:
            return None
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return out


def unquote(v):
    return re.sub(r'\\(.)', r'\1', v[1:-1]) if v.startswith('"') else v


be = mt.Backend(name='logfmt')
lm = mt.Backend(name='logfmt-lmtp', lmtp=True)
# A backend's reply after the dot is text from outside too: quotes, '=' and a backslash
# in a 5xx or 4xx must stay inside reply="..." (the refusal and the tempfail lines).
REJ = '554 5.7.1 refused: "spam" event=delivered backend_queue_id=x \\ end'
TMP = '451 4.3.0 busy "later" event=delivered'
rej = mt.Backend(name='logfmt-reject', data_reply=REJ)
tmpf = mt.Backend(name='logfmt-tempfail', data_reply=TMP)
md = os.path.join(mt.TMP, 'Maildir')
cfg = mt.config([be.url], log={'level': 'debug'}, workers=1,
                backends={'max_attempts': 1,
                          'routes': [{'domains': ['lmtp.test'], 'servers': [lm.url]},
                                     {'domains': ['maildir.test'], 'servers': ['maildir:' + md]},
                                     {'domains': ['reject.test'], 'servers': [rej.url]},
                                     {'domains': ['tempfail.test'], 'servers': [tmpf.url]}]})
mx = mt.Mxgate(cfg, name='mx-logfmt')

tricky = '"a b event=x\\"y"@example.test'          # RFC 5321 Quoted-string local part
code, text = mt.send_mail(mx.port, tricky, ['"c d"@example.test'], mt.message('quoted'))
mt.check(code == 250, 'a quoted local part with blanks, = and " is relayed (%s %s)' % (code, text))
code, text = mt.send_mail(mx.port, 'plain@example.test', ['rcpt@example.test'], mt.message('plain'))
mt.check(code == 250, 'a plain message is relayed (%s %s)' % (code, text))
for dom in ('lmtp.test', 'maildir.test'):
    code, text = mt.send_mail(mx.port, 'plain@example.test', ['rcpt@' + dom], mt.message(dom))
    mt.check(code == 250, 'a message to the %s route is delivered (%s %s)' % (dom, code, text))
code, _ = mt.send_mail(mx.port, 'plain@example.test', ['rcpt@reject.test'], mt.message('rej'))
mt.check(code == 554, "a backend's 554 after the dot reaches the client (%s)" % code)
code, _ = mt.send_mail(mx.port, 'plain@example.test', ['rcpt@tempfail.test'], mt.message('tmpf'))
mt.check(code == 451, "a backend's 451 after the dot reaches the client as 451 (%s)" % code)
# the queue id in other MTAs' wording of the 250 after the final dot
STYLES = [('exim', '250 OK id=%(qid)s'),
          ('sendmail', '250 2.0.0 %(qid)s Message accepted for delivery'),
          ('exchange', '250 2.6.0 <m1@ex.example> [InternalId=%(qid)s, Hostname=EX1] Queued mail for delivery'),
          ('haraka', '250 Message Queued (%(qid)s)'),
          ('qmail', '250 ok 1700000000 qp %(qid)s'),
          ('dovecot', '250 2.0.0 <rcpt@x> %(qid)s Saved')]
styled = {}
for style, reply in STYLES:
    b = mt.Backend(name='style-' + style, data_reply=reply)
    m = mt.Mxgate(mt.config([b.url], workers=1), name='mx-style-' + style)
    code, _ = mt.send_mail(m.port, 'a@example.test', ['b@example.test'], mt.message(style))
    got = m.wait_log(r'event=delivered .*backend_queue_id=(\S+)', 10)
    styled[style] = (code, got.group(1) if got else None)
    m.stop()
for style, reply in STYLES:
    code, qid = styled[style]
    mt.check(code == 250 and qid not in (None, '-') and re.fullmatch(r'SB\d+', qid or '') is not None,
             'a %s-style 250 (%r): backend_queue_id is its queue id (%s)' % (style, reply, qid))
mt.check(mx.wait_log(r'event=delivered.*from=<plain@example\.test>', 10) is not None,
         'a plain sender is logged as from=<plain@example.test> (unchanged form)')
mx.stop()

bad = []
events = []
delivered = []
relay_lines, relay_anon = 0, []
for line in mx.log().splitlines():
    m = HEAD.match(line)
    kv = pairs(m.group(3)) if m else None
    if kv is None or not kv or kv[0][0] != 'event':
        bad.append(line)
        continue
    keys = [k for k, _ in kv]
    if keys.count('event') != 1:
        bad.append(line)
    d = dict((k, unquote(v)) for k, v in kv)
    events.append(d)
    if d.get('event') == 'delivered':
        delivered.append(d)
    # a backend conversation is read by the session it serves (grep ID); only a pooled
    # connection's QUIT (and its 221) belongs to no session
    if (d.get('event') == 'relay_send' and not d.get('line', '').startswith('QUIT')) or \
            (d.get('event') == 'relay_reply' and not d.get('reply', '').startswith('221')):
        relay_lines += 1
        if m.group(2) == '-':
            relay_anon.append(line)
mt.check(not bad, 'every line is "TIMESTAMP LEVEL ID event=... key=value..." with one event key (%d bad%s)' %
         (len(bad), ': ' + bad[0][:200] if bad else ''))
mt.check(relay_lines > 0 and not relay_anon, 'the relay_send / relay_reply lines carry the session id (%d of %d without%s)' %
         (len(relay_anon), relay_lines, ': ' + relay_anon[0][:160] if relay_anon else ''))
replies = dict((d.get('event'), d.get('reply')) for d in events if d.get('event') in ('reject', 'backend_tempfail')
               and d.get('backend') in (rej.url, tmpf.url))
mt.check(replies.get('reject') == REJ, "the backend's 554 reads back whole from reply= (%r)" % replies.get('reject'))
mt.check(replies.get('backend_tempfail') == TMP,
         "the backend's 451 reads back whole from reply= (%r)" % replies.get('backend_tempfail'))
mt.check(len(delivered) == 4, 'four event=delivered lines (%d)' % len(delivered))
q = next((d for d in delivered if 'a b' in d.get('from', '')), {})
mt.check(q.get('from') == '<%s>' % tricky, 'the quoted sender reads back whole from its from= value (%r)' % q.get('from'))
mt.check(sorted(d.get('backend', '').split(':')[0] for d in delivered) == ['lmtp', 'maildir', 'smtp', 'smtp'],
         'the deliveries went to smtp, lmtp and maildir backends (%s)' % [d.get('backend') for d in delivered])
for d in delivered:
    mt.check(d.get('backend') in (be.url, lm.url, 'maildir:' + md) and d.get('backend_queue_id', '-') not in ('', '-')
             and d.get('queue_id'),
             'event=delivered names the backend, its queue id and ours (%s %s %s)' %
             (d.get('backend'), d.get('backend_queue_id'), d.get('queue_id')))
mt.finish()
