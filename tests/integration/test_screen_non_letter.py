#!/usr/bin/env python3
"""A command line that does not start with a letter is a non-SMTP command, as in postscreen
and smtpd, whose forbidden-commands default (Postfix 3.7: `CONNECT, GET, POST,
regexp:{{/^[^A-Z]/ Bogus}}`) ends such a session: compared against Postfix 3.7's
postscreen on this machine, `{"jsonrpc":"2.0"}` and `123 hello` get `521 5.7.0 ...
Goodbye.` and the connection closes.

Before, mxgate answered each such line `500 5.5.2 Syntax error, command unrecognized` and
kept the session (a JSON-RPC or Redis probe, a port scanner's binary junk held a connection
until max_errors), while docs/smtp-edge.md said it behaved as Postfix's default. Now such a
line is judged by pregreet.non_smtp_command_action as an HTTP command is (drop by default:
421 and closed; enforce / score / ignore as configured), scored NON_SMTP_COMMAND and logged.
A letter in either case still starts a command (an unknown one is a plain 500), and an
empty line is a syntax error, not a non-SMTP command.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
be = mt.Backend()
a = mt.Mxgate(mt.proxied_config([be.url]), 'drop')
b = mt.Mxgate(mt.proxied_config([be.url], pregreet={'non_smtp_command_action': 'ignore'}), 'ignore')

for n, line in enumerate(('{"jsonrpc":"2.0"}', '123 hello', '*1', '\x05\x01\x00 socks')):
    src = '198.18.52.%d' % (n + 1)
    c = mt.Client(a.port, proxy_src=src)
    r = c.cmd(line)
    e = c.reply()
    c.close()
    mt.check(r[0] == 421 and 'non-SMTP command' in r[1] and e[0] is None,
             'drop (default): %r is a non-SMTP command, 421 and closed: %r then %r' % (line, r, e))
    mt.check(a.wait_log(r'event=non_smtp client=%s after=CONNECT' % src.replace('.', r'\.')),
             '%r: logged as event=non_smtp' % line)

c = mt.Client(a.port, proxy_src='198.18.52.9')
r1 = c.cmd('xyzzy')
r2 = c.cmd('')
r3 = c.cmd('ehlo lower.example')
c.close()
mt.check(r1[0] == 500 and r2[0] == 500 and r3[0] == 250,
         'an unknown word, an empty line: plain 500s, the session goes on: %r %r %r' % (r1, r2, r3))
mt.check(a.count_log(r'event=non_smtp client=198\.18\.52\.9') == 0, 'and no non_smtp event for them')

c = mt.Client(b.port, proxy_src='198.18.52.10')
r = c.cmd('{"jsonrpc":"2.0"}')
r2 = c.cmd('EHLO client.example')
c.close()
mt.check(r[0] == 500 and r2[0] == 250, 'ignore: answered 500 and the session goes on: %r %r' % (r, r2))
mt.check(b.wait_log(r'event=protocol_test test=non_smtp_command client=198\.18\.52\.10 action=ignore'),
         'ignore: the failure is logged')
mt.finish()
