#!/usr/bin/env python3
"""From the outside: an OpenBSD spamd operator's policy written from docs/ alone, driven
with swaks (PROXY v2 sources) into mxgate in front of Postfix's smtp-sink.

spamd (spamd(8), spamd-setup(8)) sorts clients three ways: blacklisted hosts (spamd-setup's
lists) are tarpitted and "will not be allowed to talk to a real mail server" — their mail
gets 450 or 550 after the stutter; greylisted hosts get a temporary failure until their
retry comes after `passtime`; whitelisted hosts talk to the real server.

What the operator writes (docs/filters-limits.md, "Coming from postgrey or OpenBSD spamd"):
    reputation: { deny: [<spamd-setup's list>], deny_action: delay, delay: 3s }
    greylist:   { enabled: true, prefix_v4: 32, delay: <passtime>, retry_window: <greyexp>,
                  expire: <whiteexp>, auto_allow_clients: 1, auto_allow_expire: <whiteexp> }

Checked here:
- a spamd-setup list file served by rbldnsd as it is (comments, addresses, CIDRs) refuses
  the clients it lists, naming the list;
- a deny-listed client with deny_action: delay is held at the greeting (the tarpit) and then
  refused: its mail never reaches the backend, as spamd never lets a blacklisted host through.
  Before, `delay` on the deny list held the greeting and then served the client: swaks's
  message was delivered (a deny list that did not deny);
- spamd's greylisting with the exact IP (prefix_v4: 32, spamd keys by IP): the first attempt
  451, a retry before passtime 451 again (the clock not restarted), one after it delivered,
  then passed at once; with auto_allow_clients: 1 the IP is then whitelisted for every
  sender and recipient (spamd's WHITE entry is per IP, whiteexp 36 days); a neighbour in the
  same /24 is still greylisted (as with spamd), where the default /24 would have passed it;
- greytrapping (spamd(8) GREYTRAPPING, `spamdb -T -a trap@...`): greylist.traps lists the
  trap; a greylisted client that mails it is trapped: its retry after passtime, to a real
  recipient, is refused 550 after the tarpit and never delivered (spamd blacklists it for
  trapexp); the trap's own RCPT got the usual 451. Before, greylist.traps was an unknown key;
- the rbldnsd list with dnsbl.action: delay: held at the greeting, then refused (spamd's
  tarpit for spamd-setup's lists, where before the dnsbl section had no tarpit).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'swaks', 'rbldnsd')

sink = mt.Sink(name='sink-spamd')
# a spamd-setup list as spamd.conf fetches it (comments, addresses, CIDRs), served as it is
# by rbldnsd (ip4set reads the same lines): the way docs/filters-limits.md gives for a list
# too big or too changing for reputation.deny
rbl = mt.rbldnsd({'uatraps.test': ('ip4set', '# uatraps, as spamd-setup fetches it\n'
                                   '198.18.98.0/24\n198.18.95.5\n')})
TARPIT_S = 3
PASSTIME_S = 3
TRAP_S = 2
cfg = mt.proxied_config(
    [sink.url],
    reputation={'deny': ['198.18.96.0/24'], 'deny_action': 'delay', 'delay': '%ds' % TARPIT_S},
    greylist={'enabled': True, 'store': 'local', 'prefix_v4': 32, 'delay': '%ds' % PASSTIME_S,
              'retry_window': '4h', 'expire': '36d', 'auto_allow_clients': 1, 'auto_allow_expire': '36d',
              'traps': ['spamtrap@example.test'], 'trap_ttl': '24h', 'trap_delay': '%ds' % TRAP_S},
    dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
    dnsbl={'threshold': 1, 'action': 'reject', 'pass_ttl': 0,
           'lists': [{'zone': 'uatraps.test', 'weight': 1, 'reason': '{ip} is listed in uatraps'}]})
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]),
                          'spamd')
mt.check(rc == 0, 'mxgate -t accepts the spamd operator\'s config: %s %s' % (rc, out.strip()[:300]))
mx = mt.Mxgate(cfg, 'mx-spamd')


def swaks(src, tag, rcpt='u@example.test'):
    t0 = time.time()
    p = mt.swaks(mx.port, '--from', 'news@example.org', '--to', rcpt, '--ehlo', 'mta.example.org',
                 '--header', 'Message-ID: <%s@spamd.test>' % tag,
                 '--proxy-version', '2', '--proxy-family', 'AF_INET', '--proxy-source', src, '--proxy-source-port', '40000',
                 '--proxy-dest', '127.0.0.1', '--proxy-dest-port', str(mx.port))
    return p, time.time() - t0


def delivered(tag):
    return [m for m in sink.messages() if ('<%s@spamd.test>' % tag).encode() in m['data']]


# ------------------------------------------------------------------ spamd-setup's blacklist
p, took = swaks('198.18.96.7', 'black')
mt.check(took >= TARPIT_S - 0.2, 'a deny-listed client is tarpitted at the greeting: %.1fs (delay %ds)'
         % (took, TARPIT_S))
mt.check(p.returncode != 0 and '<** 550 5.7.1 deny list entry of 198.18.96.7' in p.stdout,
         'and then refused (spamd: a blacklisted host never talks to the real server): %s'
         % p.stdout[-600:])
# its retry after passtime (spamd's blacklisted hosts retry too): still refused, never greylisted
# into a pass
time.sleep(PASSTIME_S + 0.5)
p, took = swaks('198.18.96.7', 'black-retry')
mt.check('<** 550 5.7.1 deny list entry of 198.18.96.7' in p.stdout,
         'its retry after passtime is refused too: %s' % p.stdout[-400:])
time.sleep(0.5)
mt.check(not delivered('black') and not delivered('black-retry'),
         'nothing from the deny-listed client reached the backend')
mt.check(mx.wait_log(r'event=reputation client=198\.18\.96\.7 class=deny action=delay'),
         'the deny-list hit is logged with its action')
mt.check(mx.wait_log(r'event=reject stage=connect reason=reputation client=198\.18\.96\.7'),
         'and the refusal as a connect-stage reject')

# ------------------------------------------------------------------ the list through rbldnsd
for src in ('198.18.98.40', '198.18.95.5'):
    p, _ = swaks(src, 'uatraps-%s' % src)
    mt.check('<** 550 5.7.1 Service unavailable; client [%s] blocked using uatraps.test; %s is listed in uatraps'
             % (src, src) in p.stdout, 'the spamd-setup file served by rbldnsd refuses %s: %s' % (src, p.stdout[-300:]))
mt.check(not delivered('uatraps-198.18.98.40') and not delivered('uatraps-198.18.95.5'),
         'nothing from the listed clients reached the backend')

# ------------------------------------------------------------------ the same list with a tarpit
mx2 = mt.Mxgate(mt.proxied_config(
    [sink.url], dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
    dnsbl={'threshold': 1, 'action': 'delay', 'delay': '%ds' % TARPIT_S, 'pass_ttl': 0,
           'lists': [{'zone': 'uatraps.test', 'weight': 1, 'reason': '{ip} is listed in uatraps'}]}), 'mx-spamd-delay')
t0 = time.time()
p = mt.swaks(mx2.port, '--from', 'news@example.org', '--to', 'u@example.test', '--ehlo', 'mta.example.org',
             '--header', 'Message-ID: <uatraps-delay@spamd.test>',
             '--proxy-version', '2', '--proxy-family', 'AF_INET', '--proxy-source', '198.18.98.41',
             '--proxy-source-port', '40000', '--proxy-dest', '127.0.0.1', '--proxy-dest-port', str(mx2.port))
took = time.time() - t0
mt.check(took >= TARPIT_S - 0.2 and '<** 550 5.7.1 Service unavailable; client [198.18.98.41] blocked using uatraps.test'
         in p.stdout, 'dnsbl.action: delay: the listed client held %.1fs at the greeting (delay %ds), then refused: %s'
         % (took, TARPIT_S, p.stdout[-300:]))
time.sleep(0.3)
mt.check(not delivered('uatraps-delay'), 'nothing from it reached the backend')
mx2.stop()

# ------------------------------------------------------------------ greytrapping
p, _ = swaks('198.18.99.1', 'trap1', rcpt='spamtrap@example.test')
mt.check('<** 451 4.7.1 greylisted' in p.stdout, 'a greylisted client mails the trap: 451 as any: %s' % p.stdout[-300:])
mt.check(mx.wait_log(r'event=greylist_trap client=198\.18\.99\.1 .*rcpt=<spamtrap@example\.test> ttl=86400'),
         'and is trapped (logged)')
time.sleep(PASSTIME_S + 0.5)
p, took = swaks('198.18.99.1', 'trap2')
mt.check('<** 550 5.7.1 198.18.99.1 has sent mail to a spam trap here' in p.stdout and took >= TRAP_S - 0.2,
         'its retry after passtime, to a real recipient: tarpitted %.1fs (trap_delay %ds), then 550: %s'
         % (took, TRAP_S, p.stdout[-300:]))
time.sleep(0.3)
mt.check(not delivered('trap2'), 'the trapped client\'s mail never reaches the backend')

# ------------------------------------------------------------------ spamd's greylisting, by IP
p, _ = swaks('198.18.97.1', 'grey1')
mt.check(p.returncode != 0 and '<** 451 4.7.1 greylisted' in p.stdout,
         'a new client is greylisted at RCPT: %s' % p.stdout[-300:])
p, _ = swaks('198.18.97.1', 'grey2')
mt.check('<** 451 4.7.1 greylisted' in p.stdout, 'a retry before passtime: 451 again: %s' % p.stdout[-300:])
time.sleep(PASSTIME_S + 0.5)
p, _ = swaks('198.18.97.1', 'grey3')
mt.check(p.returncode == 0 and delivered('grey3'), 'the retry after passtime is delivered: %s'
         % p.stdout[-300:])
p, _ = swaks('198.18.97.1', 'grey4')
mt.check(p.returncode == 0 and delivered('grey4'), 'and the passed triplet at once: %s' % p.stdout[-300:])
p, _ = swaks('198.18.97.1', 'white', rcpt='other@example.test')
mt.check(p.returncode == 0 and delivered('white'),
         'auto_allow_clients: 1 whitelists the IP as spamd does (WHITE per IP): another recipient at once: %s'
         % p.stdout[-300:])
p, _ = swaks('198.18.97.2', 'neighbour')
mt.check('<** 451 4.7.1 greylisted' in p.stdout,
         'prefix_v4: 32 keys by the exact IP, as spamd: a neighbour is greylisted: %s' % p.stdout[-300:])
mt.finish()
