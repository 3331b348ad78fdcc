#!/usr/bin/env python3
"""test_owned_fields — the header fields mxgate owns (proxy/ownfields.h): X-Mxgate-Filter-Error
(on_error: tag), X-Mxgate-Quarantine (a held message's reason) and X-Mxgate-Greylist
(greylisting by score). A mailbox filter may trust them, so a sender's own copy never
reaches a backend: it is removed once per message on the way out, whatever stage adds
mxgate's own and whether or not mxgate adds one this time. Before, only X-Mxgate-Greylist was
removed (by the rules engine, and only when it ran): a sender's `X-Mxgate-Filter-Error:` or
`X-Mxgate-Quarantine:` reached the mailbox, beside mxgate's or alone.

- no filter at all (the message goes out as it came, unedited): each forged field, in any
  case, with a blank before its colon, folded, arrives without it; `X-Mxgate-Other` and
  `X-Mxgate-Filter-Errors` (no field of ours) stay, and the rest of the message is untouched;
- on_error: tag with a clamd that is down: the message carries mxgate's X-Mxgate-Filter-Error
  once, the forged one gone;
- actions.quarantine: the held file carries mxgate's X-Mxgate-Quarantine alone, and
  `quarantine release` delivers it with that one (the release keeps mxgate's own).

Peers: the scripted backend (mxtest.Backend), the rules engine, a closed port as clamd,
mxgatectl on the control socket."""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
OWNED = ('X-Mxgate-Filter-Error', 'X-Mxgate-Quarantine', 'X-Mxgate-Greylist')
FORGED = ('X-Mxgate-Filter-Error: clamd; stage=eom; error=forged',
          'x-mxgate-quarantine: forged reason',
          'X-MXGATE-GREYLIST : passed digest=0000000000000000 store=forged',
          'X-Mxgate-Filter-Error: milter;\r\n\tstage=mail;\r\n error=folded-forgery',
          'X-Mxgate-Other: kept',
          'X-Mxgate-Filter-Errors: kept too')


def unfolded(data):
    head = data.split(b'\r\n\r\n', 1)[0].decode('latin-1')
    return re.sub(r'\r\n[ \t]', ' ', head).split('\r\n')


def owned_lines(data):
    """The header lines (unfolded) whose name is one of ours, any case, blanks before ':'."""
    out = []
    for ln in unfolded(data):
        name = ln.split(':', 1)[0].rstrip(' \t').lower()
        if ':' in ln and name in [o.lower() for o in OWNED]:
            out.append(ln)
    return out


def send(mx, tag):
    return mt.send_mail(mx.port, 'a@example.org', ['u@example.test'],
                        mt.message(tag, headers=FORGED), timeout=60)


# ---- no filter: the message goes out as it came, but for the forged fields
mx = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', workers=1), 'mx-plain')
code, text = send(mx, 'plain')
got = be.by_tag('plain')
mt.check(code == 250 and len(got) == 1, 'plain: delivered (%s %s)' % (code, text))
if got:
    d = got[0]['data']
    mt.check(owned_lines(d) == [], 'plain: no forged X-Mxgate-Filter-Error, -Quarantine, -Greylist arrives '
             '(any case, a blank before the colon, folded): %s' % owned_lines(d))
    mt.check(b'X-Mxgate-Other: kept\r\n' in d and b'X-Mxgate-Filter-Errors: kept too\r\n' in d,
             'plain: the fields that are no field of ours stay')
    sent = mt.message('plain', headers=('X-Mxgate-Other: kept', 'X-Mxgate-Filter-Errors: kept too'))
    mt.check(d.endswith(sent), 'plain: the rest of the message as sent, under our Received (%r)' % d[-400:])
mx.stop()

# ---- on_error: tag: mxgate's own Filter-Error once, the sender's gone
down = mt.hold_port().port      # held, never listening: connection refused
cfg = mt.config([be.url], hostname='mx.example.test', workers=1, plugins=[
    {'name': 'clamd', 'address': '127.0.0.1:%d' % down, 'on_error': 'tag', 'timeout': '5s'}])
mx = mt.Mxgate(cfg, 'mx-tag')
code, text = send(mx, 'tagged')
got = be.by_tag('tagged')
mt.check(code == 250 and len(got) == 1, 'tag: delivered although clamd is down (%s %s)' % (code, text))
if got:
    lines = owned_lines(got[0]['data'])
    mt.check(len(lines) == 1 and lines[0].startswith('X-Mxgate-Filter-Error: clamd; stage=eom; error=')
             and 'forged' not in lines[0], 'tag: mxgate\'s X-Mxgate-Filter-Error alone, once: %s' % lines)
mt.check(mx.count_log(r'event=plugin_error plugin=clamd stage=eom error=\S+ on_error=tag') == 1,
         'tag: logged on_error=tag')
mx.stop()

# ---- quarantine: the held file and its release carry mxgate's X-Mxgate-Quarantine alone
rules_file = os.path.join(mt.TMP, 'own.cf')
with open(rules_file, 'w') as f:
    f.write('header OWN_HOLD Subject =~ /\\bheld/\nscore OWN_HOLD 7\n')
qdir = os.path.join(mt.TMP, 'quarantine')
sock = os.path.join(mt.TMP, 'control.sock')
cfg = mt.config([be.url], hostname='mx.example.test', workers=1, quarantine='maildir:' + qdir,
                control={'socket': sock},
                rules={'files': [rules_file], 'actions': {'add_header': 4, 'quarantine': 6, 'reject': 10}})
mx = mt.Mxgate(cfg, 'mx-quarantine')
code, text = send(mx, 'held')
m = re.search(r'queued as (\S+)', text or '')
held = sorted(glob.glob(os.path.join(qdir, 'new', '*')))
mt.check(code == 250 and m is not None and len(held) == 1 and not be.by_tag('held'),
         'quarantine: held, 250 (%s %s, %d files)' % (code, text, len(held)))
if held:
    with open(held[0], 'rb') as f:
        lines = owned_lines(f.read().split(b'X-Quarantine-ID: ', 1)[-1].split(b'\r\n', 1)[-1])
    mt.check(lines == ['X-Mxgate-Quarantine: rules: score=7.0'],
             'quarantine: the held file carries mxgate\'s X-Mxgate-Quarantine alone: %s' % lines)
rc, out, err = mt.ctl(sock, 'quarantine', 'release', m.group(1) if m else 'NONE')
got = be.by_tag('held')
mt.check(rc == 0 and len(got) == 1, 'quarantine: released (%s %r %r)' % (rc, out, err))
if got:
    lines = owned_lines(got[0]['data'])
    mt.check(lines == ['X-Mxgate-Quarantine: rules: score=7.0'],
             'quarantine: the released message keeps mxgate\'s X-Mxgate-Quarantine, once: %s' % lines)
mx.stop()
mt.finish()
