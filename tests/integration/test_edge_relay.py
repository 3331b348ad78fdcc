#!/usr/bin/env python3
"""SMTP edge, against the running daemon: accept_domains with the open-relay battery (nmap
smtp-open-relay forms and the rest), routes in the domain normal form (the trailing-dot
bypass; an internationalised domain as its U-label or A-label, any case, is one domain), the file re-read on SIGHUP, the -t warning, address syntax (RFC 5321 4.1.2 /
4.5.3.1, RFC 6531) and NUL bytes in DATA (limits.nul reject / strip, never relayed).
Peers: two scripted backends (default set and a route)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
default_be = mt.Backend(name='default')
route_be = mt.Backend(name='route')
domains_file = os.path.join(mt.TMP, 'domains')
with open(domains_file, 'w') as f:
    f.write('# hosted\nhosted.test\n')


def cfg(**extra):
    c = mt.config([default_be.url],
                  backends={'routes': [{'domains': ['Local.Test'], 'servers': [route_be.url]}]},
                  # the battery runs on one connection: its refusals and its transactions
                  # that deliver nothing are the point, not limits to cut it short
                  limits={'max_errors': 1000, 'max_mail_commands': 1000},
                  accept_domains=['local.test', '*.sub.test', 'file:' + domains_file])
    c.update(extra)
    return c


mx = mt.Mxgate(cfg())

# ---------------------------------------------------------------- the open-relay battery
# Every row: the RCPT path, and what mxgate must answer without asking a backend.
DENIED, SYNTAX, OK = '550 5.7.1', '5', '250'
battery = [
    ('<relaytest@other.test>', DENIED),
    ('<relaytest%other.test@[127.0.0.1]>', DENIED),
    ('<relaytest%other.test@mx.test>', DENIED),
    ('<"relaytest@other.test">', SYNTAX),
    ('<"relaytest%other.test">', SYNTAX),
    ('<relaytest@other.test@[127.0.0.1]>', SYNTAX),
    ('<"relaytest@other.test"@[127.0.0.1]>', DENIED),
    ('<relaytest@other.test@mx.test>', SYNTAX),
    ('<@[127.0.0.1]:relaytest@other.test>', DENIED),
    ('<@mx.test:relaytest@other.test>', DENIED),
    ('<other.test!relaytest>', SYNTAX),
    ('<other.test!relaytest@[127.0.0.1]>', DENIED),
    ('<other.test!relaytest@mx.test>', DENIED),
    ('<user%other.test@local.test>', DENIED),
    ('<"user@other.test"@local.test>', DENIED),
    ('<"user%other.test"@local.test>', DENIED),
    ('<other.test!user@local.test>', DENIED),
    ('<user@other.test@local.test>', SYNTAX),
    ('<user@[other.test]>', SYNTAX),
    ('<user@[192.0.2.1]>', DENIED),
    ('<user@local.test.other.test>', DENIED),
    ('<user@evillocal.test>', DENIED),
    ('<user@sub.test>', DENIED),
    ('<postmaster@other.test>', DENIED),
    ('<user@local.test>', OK),
    ('<USER@LOCAL.TEST.>', OK),
    ('<user@a.b.sub.test>', OK),
    ('<user@hosted.test>', OK),
    ('<@other.test:user@local.test>', OK),
    ('<Postmaster>', OK),
]
c = mt.Client(mx.port)
c.ehlo()
for path, want in battery:
    code, text = c.cmd('MAIL FROM:<tester@example.org>')
    if code != 250:
        mt.check(False, 'MAIL for %s: %s %s' % (path, code, text))
        continue
    code, text = c.cmd('RCPT TO:' + path)
    got = text
    mt.check(got.startswith(want), 'RCPT TO:%s -> %s (got %s)' % (path, want, got))
    c.cmd('RSET')
c.close()
outside = [cmd for be in (default_be, route_be) for cmd in be.commands
           if cmd.upper().startswith('RCPT') and 'other.test' in cmd.lower() and 'local.test>' not in cmd.lower()]
mt.check(not outside, 'no recipient outside accept_domains reached a backend (%r)' % outside[:3])
mt.check(mx.wait_log(r'event=reject stage=rcpt reason=relay_denied rcpt=<relaytest@other.test> domain=other.test', 3)
         is not None, 'relay denial logged with the domain')

# ---------------------------------------------------------------- routes: normal form
before_default, before_route = len(default_be.messages), len(route_be.messages)
for tag, rcpt in (('plain', 'a@local.test'), ('dot', 'b@local.test.'), ('case', 'c@LOCAL.Test')):
    code, text = mt.send_mail(mx.port, 'sender@example.org', [rcpt], mt.message('route-' + tag))
    mt.check(code == 250, 'route %s: delivered (%s %s)' % (rcpt, code, text))
mt.check(len(route_be.messages) - before_route == 3 and len(default_be.messages) == before_default,
         'user@local.test, user@local.test. and user@LOCAL.Test all take the route (route %d, default %d)'
         % (len(route_be.messages) - before_route, len(default_be.messages) - before_default))
code, _ = mt.send_mail(mx.port, 'sender@example.org', ['x@hosted.test'], mt.message('default-set'))
mt.check(code == 250 and len(default_be.messages) == before_default + 1, 'hosted.test goes to the default set')

# ---------------------------------------------------------------- the file, re-read on SIGHUP
c = mt.Client(mx.port)
c.ehlo()
c.cmd('MAIL FROM:<a@example.org>')
mt.check(c.cmd('RCPT TO:<u@new.test>')[0] == 550, 'new.test is not accepted yet')
c.close()
with open(domains_file, 'a') as f:
    f.write('new.test\n')
start = mx.log_size()
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded')
ok = mt.wait_for(lambda: mt.send_mail(mx.port, 'a@example.org', ['u@new.test'], mt.message('new'))[0] == 250, 10)
mt.check(ok, 'after SIGHUP the re-read file accepts new.test')
with open(domains_file, 'w') as f:
    f.write('bad domain.test\n')
start = mx.log_size()
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reload_failed', 10, start) is not None, 'the bad file fails the reload')
code, _ = mt.send_mail(mx.port, 'a@example.org', ['u@new.test'], mt.message('bad-reload'))
mt.check(code == 250 and mx.alive(), 'a bad file on reload keeps the running config (%s)' % code)

# ---------------------------------------------------------------- -t
p = mt.run_mxgate('-t', '-c', mx.conf)
mt.check(p.returncode == 1 and 'bad domain.test' in p.stderr and 'accept_domains[2]' in p.stderr,
         '-t reports the bad line with the file and the item (%r)' % p.stderr[:300])
open_cfg = os.path.join(mt.TMP, 'open.yaml')
with open(open_cfg, 'w') as f:
    f.write(mt.to_yaml(mt.config([default_be.url], listen=[{'address': '127.0.0.1:%d' % mt.free_port()}])))
p = mt.run_mxgate('-t', '-c', open_cfg)
mt.check(p.returncode == 0 and 'warning: accept_domains is empty' in p.stderr,
         '-t warns when accept_domains is empty and still exits 0 (rc %d, %r)' % (p.returncode, p.stderr[:200]))
with open(domains_file, 'w') as f:
    f.write('hosted.test\n')
start = mx.log_size()
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reloaded', 10, start) is not None, 'reloaded with hosted.test only')

# ---------------------------------------------------------------- address syntax
c = mt.Client(mx.port)
c.ehlo()
syntax = [
    ('MAIL FROM:<.user@example.org>', '501 5.1.7'),
    ('MAIL FROM:<user.@example.org>', '501 5.1.7'),
    ('MAIL FROM:<j\u00f6rg@example.org>', '553 5.6.7'),
    ('MAIL FROM:<a@[example.org]>', '501 5.1.7'),
]
for line, want in syntax:
    code, text = c.cmd(line)
    mt.check(text.startswith(want), '%s -> %s (got %d %s)' % (line, want, code, text))
    if code == 250:
        c.cmd('RSET')
c.cmd('MAIL FROM:<a@example.org>')
rows = [
    ('RCPT TO:<us..er@local.test>', '501 5.1.3'),
    ('RCPT TO:<%s@local.test>' % ('a' * 65), '250'),        # no limit of its own (session 21)
    ('RCPT TO:<%s@local.test>' % ('a' * 250), '501 5.1.3'),  # the path over 256 octets
    ('RCPT TO:<u@%s.local.test>' % ('b' * 64), '501 5.1.3'),
    ('RCPT TO:<j\u00f6rg@local.test>', '553 5.6.7'),
    ('RCPT TO:<u@[x400:c=us]>', '553 5.1.3'),
    ('RCPT TO:<"quoted  user"@local.test>', '250'),
]
for line, want in rows:
    code, text = c.cmd(line)
    mt.check(text.startswith(want), '%s -> %s (got %d %s)' % (line[:60], want, code, text))
c.cmd('RSET')
c.cmd('MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8')
code, text = c.cmd('RCPT TO:<j\u00f6rg@local.test>')
mt.check(code == 250, 'UTF-8 recipient in an SMTPUTF8 transaction: 250 (%d %s)' % (code, text))
c.cmd('RSET')
c.close()
quoted = [r for m in route_be.commands if 'quoted  user' in m for r in [m]]
mt.check(any('"quoted  user"@local.test' in m for m in route_be.commands),
         'the quoted local part reached the backend exactly as sent (%r)' % quoted[:1])

# ---------------------------------------------------------------- NUL bytes (limits.nul)
def nul_transaction(port, tag):
    c = mt.Client(port)
    c.ehlo()
    c.cmd('MAIL FROM:<nul@example.org>')
    c.cmd('RCPT TO:<user@local.test>')
    c.cmd('DATA')
    # the scanner's <CR><LF>NUL.<CR><LF> variant, then a smuggled transaction
    c.send(b'Subject: ' + tag.encode() + b'\r\n\r\nbody\r\n\x00.\r\nMAIL FROM:<evil@example.org>\r\n'
           b'RCPT TO:<victim@local.test>\r\nDATA\r\nsmuggled\r\n.\r\n')
    res = c.reply()
    extra = c.pending(0.5)
    c.close()
    return res, extra


before = len(route_be.attempts)
(code, text), extra = nul_transaction(mx.port, 'nul-reject')
mt.check(code == 554 and '5.6.0' in text, 'nul: reject (default): 554 5.6.0 after the real end (%s %s)' % (code, text))
mt.check(not extra.strip(), 'nul: reject: one reply, the rest was content (%r)' % extra[:80])
mt.check(len(route_be.attempts) == before, 'nul: reject: nothing reached the backend')
mt.check(not any('evil@' in cmd for cmd in route_be.commands), 'nul: the smuggled MAIL never reached a backend')
mt.check(mx.wait_log(r'event=reject stage=data reason=nul nuls=1', 3) is not None, 'nul: logged reason=nul')
mx.stop()

mx2 = mt.Mxgate(cfg(limits={'nul': 'strip', 'max_errors': 1000, 'max_mail_commands': 1000}), name='mx-strip')
before = len(route_be.messages)
(code, text), extra = nul_transaction(mx2.port, 'nul-strip')
mt.check(code == 250, 'nul: strip: 250 (%s %s)' % (code, text))
mt.check(not extra.strip(), 'nul: strip: one reply (%r)' % extra[:80])
new = route_be.messages[before:]
mt.check(len(new) == 1, 'nul: strip: exactly one message at the backend (%d)' % len(new))
if new:
    data = new[0]['data']
    mt.check(b'\x00' not in data, 'nul: strip: no NUL reached the backend')
    mt.check(b'\r\n.\r\nMAIL FROM:<evil@example.org>\r\n' in data,
             'nul: strip: the dot line and the smuggled commands stayed inside the one message')
mt.check(not any('evil@' in cmd for cmd in route_be.commands), 'nul: strip: the smuggled MAIL never reached a backend')
mt.check(mx2.wait_log(r'event=nul_stripped nuls=1', 3) is not None, 'nul: strip: logged')
mt.check(not mx2.malformed_log_lines(), 'log lines keep the contract form (%r)' % mx2.malformed_log_lines()[:2])
mx2.stop()

# ---------------------------------------------------------------- internationalised domains
# A domain reaches an MX as its U-label (a sender with SMTPUTF8) or as its A-label (one
# without, RFC 6531 3.2 lets any domain go as A-labels): both are the same domain, as Postfix
# compares them (its table lookups take the A-label, UTS #46 mapping: case folded, NFC).
# Before the fix the operator's spelling only matched: the other one got 550 5.7.1 relaying
# denied, a permanent refusal of mail for a hosted domain.
idn_cfg = cfg(accept_domains=['b\u00fccher.test', 'xn--exmple-cua.test', '*.\u00f6l.test'])
idn_cfg['backends']['routes'] = [{'domains': ['xn--bcher-kva.test'], 'servers': [route_be.url]}]
mx3 = mt.Mxgate(idn_cfg, name='mx-idn')
c = mt.Client(mx3.port)
c.ehlo()
# the route's domain first, in its own transaction (recipients of one route go together)
mt.check(c.cmd('MAIL FROM:<idn@example.org> SMTPUTF8')[0] == 250, 'idn: MAIL SMTPUTF8 250')
for rcpt in ('a@b\u00fccher.test', 'a@xn--bcher-kva.test', 'a@B\u00dcCHER.TEST'):
    code, text = c.cmd('RCPT TO:<%s>' % rcpt)
    mt.check(code == 250, 'idn: RCPT TO:<%s>: 250 (%s)' % (rcpt, text))
mt.check(c.cmd('DATA')[0] == 354, 'idn: DATA 354')
before = len(route_be.messages)
c.send(mt.stuff(mt.message('idn-route')))
code, text = c.reply()
mt.check(code == 250, 'idn: delivered (%s)' % text)
got = route_be.messages[before:]
mt.check(len(got) == 1 and got[0]['rcpts'] == ['a@b\u00fccher.test', 'a@xn--bcher-kva.test', 'a@B\u00dcCHER.TEST'],
         'idn: the route named by its A-label takes every spelling, each passed as sent (%r)'
         % (got and got[0]['rcpts']))
mt.check(c.cmd('MAIL FROM:<idn@example.org> SMTPUTF8')[0] == 250, 'idn: MAIL SMTPUTF8 250')
for rcpt, want in (('a@ex\u00e4mple.test', 250), ('a@XN--EXMPLE-CUA.test', 250), ('a@EX\u00c4MPLE.test', 250),
                   ('a@x.\u00f6l.test', 250), ('a@x.xn--l-0ga.test', 250), ('a@\u00f6l.test', 550),
                   ('a@b\u00fccher2.test', 550), ('a@xn--bcher-kva2.test', 550)):
    code, text = c.cmd('RCPT TO:<%s>' % rcpt)
    mt.check(code == want, 'idn: RCPT TO:<%s>: %d (%s)' % (rcpt, want, text))
c.cmd('RSET')
c.close()
mx3.stop()
mt.finish()
