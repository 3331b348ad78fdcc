#!/usr/bin/env python3
"""From the outside: a Postfix postscreen operator's after-220 and pregreet policy, the same
client bytes from a raw socket to a real postscreen (Postfix 3.7, a private instance on a
free port, its cache in btree:) and to mxgate configured from docs/filters-dns.md's
"From postscreen" table:

    postscreen_greet_wait = 2s, postscreen_greet_action = enforce
                                        -> pregreet: { delay: 2s, action: reject }
    postscreen_bare_newline_enable = yes, ..._action = enforce
                                        -> pregreet.bare_newline_action: enforce
    postscreen_non_smtp_command_enable = yes, ..._action = drop
                                        -> pregreet.non_smtp_command_action: drop
    postscreen_pipelining_enable = yes, ..._action = enforce
                                        -> pregreet.pipelining_action: enforce

Each client is its own loopback address (127.0.0.N), the same for both. What must agree:
who is refused and with which enhanced code (5.5.1), who is let through, who is cut off,
and that both log the test with the client's bytes. The documented differences are checked
as documented (docs/filters-dns.md): mxgate refuses at MAIL where postscreen's dummy engine
refuses at RCPT; a non-SMTP command gets 421 4.7.0 where postscreen says 521 5.7.0; a client
that passes the deep tests is served on the same connection where postscreen answers
450 4.3.2 and makes it come back; a client that passed greets without the teaser next time.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
mt.need_postfix()

sink = mt.Sink(name='sink-ps')


def postscreen(name, main):
    """A private Postfix whose port-25 role is postscreen (greet wait 2s, the non-SMTP test
    dropping, no access list: loopback clients are tested), the main.cf lines `main` added;
    returns its port."""
    port = mt.hold_port().port
    mt.postfix_instance(name, port, '''relay_domains = example.test
mynetworks = 192.0.2.0/24
postscreen_access_list =
postscreen_greet_wait = 2s
postscreen_non_smtp_command_enable = yes
postscreen_non_smtp_command_action = drop
''' + main, hostname='mx.test', listener='''127.0.0.1:{port} inet n - n - 1 postscreen
smtpd pass - - n - - smtpd
dnsblog unix - - n - 0 dnsblog
tlsproxy unix - - n - 0 tlsproxy
''')
    return port


ps_port = postscreen('postscreen', '''postscreen_greet_action = enforce
postscreen_pipelining_enable = yes
postscreen_pipelining_action = enforce
postscreen_bare_newline_enable = yes
postscreen_bare_newline_action = enforce
postscreen_cache_map = btree:$data_directory/postscreen_cache
''')
mx = mt.Mxgate(mt.config([sink.url], pregreet={
    'delay': '2s', 'action': 'reject', 'bare_newline_action': 'enforce',
    'non_smtp_command_action': 'drop', 'pipelining_action': 'enforce'}), 'mx-ps')


def _reply(s, buf):
    """One reply (all its lines) from s: (code or None, text, rest of buf); None at EOF."""
    lines = []
    while True:
        while b'\n' not in buf:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, OSError):
                chunk = b''
            if not chunk:
                return None, '\n'.join(lines), buf
            buf += chunk
        line, buf = buf.split(b'\n', 1)
        line = line.rstrip(b'\r').decode(errors='replace')
        lines.append(line)
        if len(line) < 4 or line[3] != '-':
            code = int(line[:3]) if line[:3].isdigit() else None
            return code, '\n'.join(lines), buf


def dialogue(port, src, steps, early=None):
    """Connects from src, sends `early` before reading anything, reads the greeting, then
    each step (bytes holding one or more commands; as many replies read as it holds line
    feeds). Returns [(what, code, text)], ('greeting', ...) first, ('close', None, '') when
    the server closed before a reply."""
    s = socket.create_connection(('127.0.0.1', port), mt.slack(10), source_address=(src, 0))
    out, buf = [], b''
    try:
        if early:
            s.sendall(early)
        code, text, buf = _reply(s, buf)
        if early and code == 220:
            out.append(('greeting', code, text))
            code, text, buf = _reply(s, buf)        # the early EHLO's reply
            out.append(('EHLO', code, text))
        elif early:
            # postscreen answers the early EHLO inside its teaser's reply: `220-` then the
            # 250 lines (the greeting never ends as 220)
            out.append(('greeting', 220 if text.startswith('220-') else None, text))
            out.append(('EHLO', code, text))
        else:
            out.append(('greeting', code, text))
        for step in steps:
            if code is None:
                break
            try:
                s.sendall(step)
            except OSError:             # closed after its last reply (a drop)
                out.append(('close', None, ''))
                break
            for cmd in step.split(b'\n')[:-1]:
                code, text, buf = _reply(s, buf)
                out.append((cmd.decode().strip().split(' ')[0].split(':')[0], code, text))
                if code is None:
                    out[-1] = ('close', None, '')
                    break
    finally:
        s.close()
    return out


def codes(d):
    return [(w, c) for w, c, _ in d]


def step_code(d, what):
    for w, c, t in d:
        if w == what:
            return c, t
    return None, ''


MAIL = b'MAIL FROM:<a@example.org>\r\n'
RCPT = b'RCPT TO:<u@example.test>\r\n'
QUIT = b'QUIT\r\n'
both = {}
for name, port in (('postscreen', ps_port), ('mxgate', mx.port)):
    both[name] = {
        'pregreet': dialogue(port, '127.0.0.2', [MAIL, RCPT, QUIT], early=b'EHLO bot.example\r\n'),
        'non_smtp': dialogue(port, '127.0.0.3', [b'GET / HTTP/1.0\r\n']),
        'bare_newline': dialogue(port, '127.0.0.4', [b'EHLO c.example\n', MAIL, RCPT, QUIT]),
        'pipelining': dialogue(port, '127.0.0.5', [b'EHLO p.example\r\n' + MAIL, RCPT, QUIT]),
        'good': dialogue(port, '127.0.0.6', [b'EHLO good.example\r\n', MAIL, RCPT, QUIT]),
        'good_again': dialogue(port, '127.0.0.6', [b'EHLO good.example\r\n', MAIL, RCPT, QUIT]),
    }
ps, mg = both['postscreen'], both['mxgate']
for case in ps:
    mt.say('%-12s postscreen %s' % (case, codes(ps[case])))
    mt.say('%-12s mxgate     %s' % (case, codes(mg[case])))

# ---- pregreet: both refuse the talker with 5.5.1; postscreen at RCPT, mxgate at MAIL.
# postscreen answers the early EHLO's 250 lines inside its unfinished `220-` reply; mxgate ends
# the greeting as a 220 reply first, then answers the EHLO (one code per reply, RFC 5321 4.2.1)
mt.check(mg['pregreet'][0][2].endswith('220 mx.test ESMTP mxgate') and mg['pregreet'][1][1] == 250,
         'mxgate: the talker\'s greeting ends as 220, then its EHLO gets 250: %r' % (mg['pregreet'][:2],))


def refused_alike(case, ps_log, mx_log):
    """Both refuse the case's client with 5.5.1 (postscreen at RCPT after MAIL 250, mxgate at
    MAIL, as documented) and log the test."""
    mc, _ = step_code(ps[case], 'MAIL')
    c, t = step_code(ps[case], 'RCPT')
    mt.check(mc == 250 and c == 550 and '5.5.1' in t, '%s: postscreen MAIL 250, RCPT 550 5.5.1: %r' % (case, ps[case]))
    c, t = step_code(mg[case], 'MAIL')
    mt.check(c == 550 and '5.5.1' in t, '%s: mxgate 550 5.5.1 at MAIL (docs: at MAIL, not RCPT): %r' % (case, mg[case]))
    mt.check(mt.wait_log_of('postscreen', ps_log), '%s: postscreen logs %s' % (case, ps_log))
    mt.check(mx.wait_log(mx_log), '%s: mxgate logs %s' % (case, mx_log))


refused_alike('pregreet', r'PREGREET 18 after .* from \[127\.0\.0\.2\]:\d+: EHLO bot\.example\\r\\n',
              r'event=pregreet client=127\.0\.0\.2 port=\d+ bytes=18 after_ms=\d+ data="EHLO bot\.example\\r\\n"')
refused_alike('bare_newline', r'BARE NEWLINE from \[127\.0\.0\.4\]:\d+ after EHLO c\.example',
              r'event=protocol_test test=bare_newline client=127\.0\.0\.4 action=enforce')
# pipelining without PIPELINING announced: EHLO and MAIL in one write
refused_alike('pipelining', r'COMMAND PIPELINING from \[127\.0\.0\.5\]:\d+ after EHLO',
              r'event=protocol_test test=pipelining client=127\.0\.0\.5 action=enforce')

# ---- a non-SMTP command after the greeting: both close at once; the codes differ (documented)
mt.check(codes(ps['non_smtp'])[1:] == [('GET', 521)] and '5.7.0' in ps['non_smtp'][1][2],
         'postscreen: GET after 220 gets 521 5.7.0 and the close: %r' % (ps['non_smtp'],))
mt.check(codes(mg['non_smtp'])[1:] == [('GET', 421)] and '4.7.0' in mg['non_smtp'][1][2],
         'mxgate: 421 4.7.0 and the close (docs: RFC 5321 3.8\'s closing reply): %r' % (mg['non_smtp'],))
mt.check(mt.wait_log_of('postscreen', r'NON-SMTP COMMAND from \[127\.0\.0\.3\]:\d+ after CONNECT: GET / HTTP/1\.0'),
         'postscreen logs NON-SMTP COMMAND after CONNECT')
mt.check(mx.wait_log(r'event=non_smtp client=127\.0\.0\.3 after=CONNECT command="GET / HTTP/1\.0"'),
         'mxgate logs event=non_smtp after=CONNECT with the command')

# ---- a good client: postscreen makes it come back after its deep tests, mxgate serves it
c, t = step_code(ps['good'], 'RCPT')
mt.check(c == 450 and '4.3.2' in t, 'postscreen: a client passing the deep tests gets RCPT 450 4.3.2 (come back): %r'
         % (ps['good'],))
mt.check(step_code(ps['good_again'], 'RCPT')[0] == 250 and ps['good_again'][0][2].startswith('220 '),
         'postscreen: on its next connection, from the cache, no teaser and RCPT 250: %r' % (ps['good_again'],))
mt.check(step_code(mg['good'], 'RCPT')[0] == 250 and mg['good'][0][2].startswith('220-'),
         'mxgate: the same client is served on its first connection (teaser, then RCPT 250): %r' % (mg['good'],))
mt.check(step_code(mg['good_again'], 'RCPT')[0] == 250 and mg['good_again'][0][2].startswith('220 '),
         'mxgate: on its next connection no teaser (pregreet.pass_ttl) and RCPT 250: %r' % (mg['good_again'],))

# ---- the drop actions: postscreen_greet_action = drop and a web request sent before the
# greeting, on a second pair (postscreen and mxgate with pregreet.action: drop)
ps2_port = postscreen('postscreen-drop', 'postscreen_greet_action = drop\n')
mx2 = mt.Mxgate(mt.config([sink.url], pregreet={'delay': '2s', 'action': 'drop',
                                                 'non_smtp_command_action': 'drop'}), 'mx-ps-drop')
drop = {}
for name, port in (('postscreen', ps2_port), ('mxgate', mx2.port)):
    drop[name] = {
        'pregreet': dialogue(port, '127.0.0.7', [MAIL, QUIT], early=b'EHLO bot.example\r\n'),
        'early_get': dialogue(port, '127.0.0.8', [], early=b'GET / HTTP/1.0\r\n'),
    }
    for case, d in drop[name].items():
        mt.say('drop %-10s %-10s %s' % (case, name, [(w, c, t[-60:]) for w, c, t in d]))
d = drop['postscreen']['pregreet']
mt.check(d[0][2].startswith('220-') and any(c == 521 for _, c, _ in d),
         'postscreen greet drop: the teaser, then 521 and the close: %r' % (d,))
# mxgate ends its greeting as a 220 reply first (every line of one reply has one code, RFC
# 5321 4.2.1, as its DNS lists' drop does); until session 18 it sent postscreen's `220-` then
# `521` as one reply of two codes
d = drop['mxgate']['pregreet']
mt.check(d[0][2].split('\n')[-1].startswith('220 ') and d[1][1] == 521 and '5.5.1' in d[1][2]
         and '220' not in d[1][2] and d[-1][0] == 'close',
         'mxgate pregreet drop: the greeting ends as 220, then 521 5.5.1 on its own and the close: %r' % (d,))
d = drop['postscreen']['early_get']
mt.check(any(c == 521 for _, c, _ in d), 'postscreen: a web request before the greeting is dropped with 521: %r' % (d,))
d = drop['mxgate']['early_get']
mt.check(d[0][2].split('\n')[-1].startswith('220 ') and len(d) >= 2 and d[1][1] == 521 and '220' not in d[1][2],
         'mxgate: the same request ends the greeting as 220, then 521 on its own: %r' % (d,))
mt.finish()
