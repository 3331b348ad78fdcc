#!/usr/bin/env python3
"""From the outside: the mail admin of a web-hosting provider puts mxgate in front of its MX
for 5,000 customer domains on two backend clusters, adds and removes customers every day,
and has a few big customers whose domains attract dictionary attacks. What must hold:

- `accept_domains` from a file of 5,000 names and a wildcard: `mxgate -t` says ok; an empty
  file, a bad line or a missing file is an error at the file's position (exit 1);
- every listed domain takes mail, its capitals and trailing root dot too; `*.x` takes every
  name below x but not x; a domain not listed gets `550 5.7.1` at RCPT and the backends never
  see it;
- `backends.routes` sends each customer's mail to its cluster (2,500 domains from a `file:`
  item, a customer moved by the file and a SIGHUP); a
  recipient of the other cluster in the same transaction gets `452 4.5.3` (sent again in a
  transaction of its own), never a loss;
- `<Postmaster>` (no domain) and postmaster@ / abuse@ of every one of the 5,000 domains reach
  the customer's cluster (RFC 5321 4.5.1);
- SIGHUP after the file changed: a session open across the reload finishes under the old
  list and its message is delivered; new sessions see the new list (a removed customer's
  recipient `550 5.7.1` without a backend round trip, an added one delivered); the log says
  `event=reload` and `event=reloaded generation=N accept_domains=A routes_domains=R` (the
  lists' sizes after the files were read again); a broken file is refused
  (`event=reload_failed ... keeping=old`) and the running list stays;
- a dictionary attack on a big customer's domain (a real Postfix behind, with
  relay_recipient_maps): each attacking connection gets the backend's `550 5.1.1` ten times,
  then `421` (`limits.max_errors`), so the Postfix never reaches its own error limit
  (`smtpd_soft_error_limit` 10: sleeps) on mxgate's connections, and another customer's mail
  on the same backend is delivered meanwhile;
- `-t` names a route domain that an earlier route takes (the first matching route wins);
- a per-recipient-domain rate limit (`key: recipient_domain`, session 26) passes `-t` for
  messages; counting connections by it is an error of `-t`, not silently ignored
  (test_ratelimit_recipient_domain.py tests what it does).

docs/filters-limits.md "A hosting provider's view" is the table of what was seen."""
import os
import re
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'postfix')
mt.need_postfix()

N = 5000
DOMAINS = ['cust%04d.example' % i for i in range(N)]
EVEN = DOMAINS[0::2]            # cluster B (a route, smtp-sink)
ODD = DOMAINS[1::2]             # cluster A (the default servers, a real Postfix)
BIG = 'cust0001.example'        # a big customer on cluster A: only its real users exist
BIG_USERS = ('info', 'postmaster', 'abuse')

domfile = os.path.join(mt.TMP, 'domains')


def write_domains(names):
    with open(domfile + '.new', 'w') as f:
        f.write('# customers, one a line\n' + '\n'.join(names) + '\n*.wild.example\n')
    os.rename(domfile + '.new', domfile)    # as a provisioning script should: never half a file


write_domains(DOMAINS)
routefile = os.path.join(mt.TMP, 'route-cluster-b')      # backends.routes file: (until session 25: inline only)
with open(routefile, 'w') as f:
    f.write('\n'.join(EVEN) + '\n')

# Cluster A: a real Postfix taking every domain mxgate sends it (mxgate's accept_domains
# decides), verifying recipients of the big customer (relay_recipient_maps: the user, then
# @domain), discarding what it accepts (its log says status=sent).
users = os.path.join(mt.TMP, 'relay_recipients')
with open(users, 'w') as f:
    for u in BIG_USERS:
        f.write('%s@%s OK\n' % (u, BIG))
    for d in ODD + ['newcust.example', 'a.b.wild.example']:
        if d != BIG:
            f.write('@%s OK\n' % d)
pf_port = mt.hold_port().port
mt.postfix_instance('pf-a', pf_port, '''relay_domains = static:ALL
relay_recipient_maps = texthash:%s
relay_transport = discard:cluster-a
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_recipient_restrictions = reject_unauth_destination
''' % users)
sink_b = mt.Sink(name='cluster-b')


def cfg(listen='127.0.0.1:0'):
    c = mt.proxied_config(['smtp://127.0.0.1:%d' % pf_port], workers=1, hostname='mx.hosting.test',
                          listen=[{'address': listen, 'proxy_protocol': True}],
                          accept_domains=['file:' + domfile],
                          # the defaults' timeouts (mt.config's 2 s connect is for dead peers): a Postfix
                          # starting 8 smtpd processes at once under load greets late, not never
                          backends={'routes': [{'domains': ['file:' + routefile], 'servers': [sink_b.url]}],
                                    'connect_timeout': '10s', 'reply_timeout': '60s', 'data_timeout': '300s'},
                          limits={'max_recipients': 1000, 'max_connections_per_ip': 1000})
    return c


def pf_log():
    return mt.log_of('pf-a')


def pf_took(rcpt):
    return re.search(r'to=<%s>, relay=none.*status=sent' % re.escape(rcpt), pf_log())


def sink_rcpts():
    return [r.split()[0].strip('<>') for m in sink_b.messages() for r in m['rcpts']]


# ---------------------------------------------------------------- what -t says
CHECK_LISTEN = '127.0.0.1:%d' % mt.hold_port().port     # -t binds nothing
rc, out = mt.config_check(cfg(CHECK_LISTEN), 'hosting')
mt.check(rc == 0 and out.strip().endswith(': ok'), '-t: 5,000 domains from a file, 2,500 in a route: ok (%s)' % out.strip()[-200:])
for content, why in (('', 'the files name no domain'), ('cust1.example\nbad domain!\n', ':2: "bad domain!"')):
    bad = os.path.join(mt.TMP, 'bad-domains')
    with open(bad, 'w') as f:
        f.write(content)
    c = cfg(CHECK_LISTEN)
    c['accept_domains'] = ['file:' + bad]
    rc, out = mt.config_check(c, 'bad')
    mt.check(rc == 1 and why in out, '-t: a file with %r is an error naming it (%s)' % (content[-14:], out.strip()[-160:]))
c = cfg(CHECK_LISTEN)
c['accept_domains'] = ['file:' + domfile + '.missing']
rc, out = mt.config_check(c, 'missing')
mt.check(rc == 1 and 'cannot read' in out, '-t: a missing file is an error (%s)' % out.strip()[-120:])
# a dedicated cluster for one big customer's subdomain, listed after the shared wildcard:
# the first matching route wins (Postfix's transport_maps would take the exact entry), so
# -t names each route domain an earlier route takes (until session 25: "ok", nothing more)
c = cfg(CHECK_LISTEN)
c['backends']['routes'] = [{'domains': ['*.wild.example'], 'servers': [sink_b.url]},
                           {'domains': ['vip.wild.example', 'cust0002.example'], 'servers': [sink_b.url]}]
rc, out = mt.config_check(c, 'shadowed')
mt.check(rc == 0 and 'warning: backends.routes[1].domains[0]: "vip.wild.example" is matched by routes[0] first' in out
         and 'routes[1].domains[1]' not in out,
         '-t: a route domain an earlier route takes is named in a warning (%s)' % out.strip()[-300:])
c = cfg(CHECK_LISTEN)
c['ratelimit'] = {'rules': [{'key': 'recipient_domain', 'count': 'messages', 'limit': '100/1h'}]}
rc, out = mt.config_check(c, 'rcptdomain')
mt.check(rc == 0, '-t: a per-recipient-domain message rate limit is accepted (%s)' % out.strip()[-160:])
c['ratelimit'] = {'rules': [{'key': 'recipient_domain', 'count': 'connections', 'limit': '100/1h'}]}
rc, out = mt.config_check(c, 'rcptdomain_conn')
mt.check(rc == 1 and 'ratelimit.rules[0]' in out,
         '-t: key recipient_domain counting connections is an error, not ignored (%s)' % out.strip()[-160:])

mx = mt.Mxgate(cfg())
mt.check(mx.wait_log(r'event=ready', mt.slack(20)) is not None, 'started with 5,000 domains')

# ---------------------------------------------------------------- routing and the list
SRC = iter('198.18.%d.%d' % (i // 200, 1 + i % 200) for i in range(100000))
cases = [('a@cust0000.example', 'b'), ('a@cust0003.example', 'a'), ('a@CUST0002.EXAMPLE.', 'b'),
         ('a@Cust0005.Example.', 'a'), ('a@a.b.wild.example', 'a')]
for rcpt, cluster in cases:
    r = mt.send_mail(mx.port, 'sender@elsewhere.example', [rcpt], mt.message(rcpt), proxy_src=next(SRC))
    mt.check(r.code == 250, '%s: delivered (%s %s)' % (rcpt, r.code, r.text))
    if cluster == 'a':
        mt.check(mt.wait_for(lambda: pf_took(rcpt), 20), '%s: at cluster A (the default servers)' % rcpt)
    else:
        mt.check(mt.wait_for(lambda: rcpt in sink_rcpts(), 20), '%s: at cluster B (its route)' % rcpt)
for rcpt in ('a@wild.example', 'a@former-customer.example', 'a@cust5000.example'):
    start = mx.log_size()
    r = mt.send_mail(mx.port, 'sender@elsewhere.example', [rcpt], mt.message(rcpt), proxy_src=next(SRC))
    mt.check(r.code == 550 and r.text.startswith('550 5.7.1') and r.stage == 'rcpt',
             '%s: 550 5.7.1 at RCPT (%s %s)' % (rcpt, r.code, r.text))
    mt.check(mx.wait_log(r'event=reject stage=rcpt reason=relay_denied rcpt=<%s>' % re.escape(rcpt), 10, start),
             '%s: logged reason=relay_denied' % rcpt)
    mt.check(rcpt not in pf_log() and rcpt not in sink_rcpts(), '%s: no backend saw it' % rcpt)

# one transaction, customers on both clusters
c = mt.Client(mx.port, proxy_src=next(SRC))
c.ehlo()
codes = [c.cmd('MAIL FROM:<sender@elsewhere.example>')[0]]
both = ('mixed@cust0010.example', 'mixed@cust0011.example', 'mixed@cust0012.example')
replies = [c.cmd('RCPT TO:<%s>' % r) for r in both]
mt.check([x[0] for x in replies] == [250, 452, 250] and replies[1][1].startswith('452 4.5.3'),
         'a recipient on the other cluster: 452 4.5.3 in that transaction (%s)' % replies)
mt.check(c.cmd('DATA')[0] == 354, 'DATA')
c.send(mt.stuff(mt.message('mixed1')))
mt.check(c.reply()[0] == 250, 'the transaction for cluster B delivered')
r = mt.send_mail(mx.port, 'sender@elsewhere.example', [both[1]], mt.message('mixed2'), client=c)
mt.check(r.code == 250, 'the 452 recipient sent again in its own transaction: delivered (%s)' % (r,))
c.close()
mt.check(mt.wait_for(lambda: both[0] in sink_rcpts() and both[2] in sink_rcpts(), 20) and mt.wait_for(lambda: pf_took(both[1]), 20),
         'each recipient at its own cluster, none lost')

# ---------------------------------------------------------------- postmaster and abuse everywhere
r = mt.send_mail(mx.port, 'sender@elsewhere.example', ['Postmaster'], mt.message('pm'), proxy_src=next(SRC))
mt.check(r.code == 250, '<Postmaster> without a domain: delivered (%s)' % (r,))
for part, names in (('B', EVEN), ('A', ODD)):
    for local in ('postmaster', 'abuse'):
        # 1,000 a transaction: the example's max_recipients, and Postfix's smtpd_recipient_limit
        codes, bad = [], []
        for k in range(0, len(names), 1000):
            rcpts = ['%s@%s' % (local, d) for d in names[k:k + 1000]]
            r = mt.send_mail(mx.port, 'sender@elsewhere.example', rcpts, mt.message('%s-%s-%d' % (local, part, k)),
                             proxy_src=next(SRC), timeout=mt.slack(120))
            codes.append(r.code)
            bad += [x for x in r.rcpt_codes if x != 250]
        mt.check(codes == [250] * 3 and not bad, '%s@ each of the %d domains of cluster %s: 250 (%s; %d not 250)'
                 % (local, len(names), part, codes, len(bad)))
mt.check(mt.wait_for(lambda: pf_took('abuse@cust4999.example') and pf_took('postmaster@' + BIG), 60),
         "cluster A's Postfix took postmaster@ and abuse@, the big customer's too")
mt.check(mt.wait_for(lambda: (lambda got: all('postmaster@' + d in got and 'abuse@' + d in got for d in EVEN))(set(sink_rcpts())), 20),
         "cluster B took postmaster@ and abuse@ of each of its 2,500 domains")

# ---------------------------------------------------------------- a customer leaves, one arrives
c = mt.Client(mx.port, proxy_src=next(SRC))
c.ehlo()
open_codes = [c.cmd('MAIL FROM:<sender@elsewhere.example>')[0], c.cmd('RCPT TO:<open@cust0003.example>')[0]]
mt.check(open_codes == [250, 250], 'a session begun before the change: RCPT to cust0003 taken (%s)' % open_codes)
write_domains([d for d in DOMAINS if d != 'cust0003.example'] + ['newcust.example'])
with open(routefile, 'a') as f:
    f.write('cust0005.example\n')                 # a customer moves to cluster B
start = mx.log_size()
mx.send_signal(1)
mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(30), start) is not None,
         'SIGHUP: the log says event=reloaded generation=2')
# with the lists' sizes (until session 26 the generation alone): 4,999 customers, the new one
# and the wildcard; cluster B's 2,500 and the customer moved there
mt.check(re.search(r'event=reloaded generation=2 accept_domains=5001 routes_domains=2501\b', mx.log()[start:]) is not None,
         'and the domain counts: accept_domains=5001 routes_domains=2501 (%s)'
         % re.findall(r'event=reloaded .*', mx.log()[start:]))
mt.check(re.search(r'event=reload file=', mx.log()[start:]) is not None, 'and event=reload file=... before it')
mt.check(c.cmd('DATA')[0] == 354, 'the open session goes on after the reload')
c.send(mt.stuff(mt.message('across-reload')))
code = c.reply()[0]
c.cmd('QUIT')
c.close()
mt.check(code == 250 and mt.wait_for(lambda: pf_took('open@cust0003.example'), 20),
         'its message (begun under the old list) delivered: no session lost')
r = mt.send_mail(mx.port, 'sender@elsewhere.example', ['late@cust0003.example'], mt.message('late'), proxy_src=next(SRC))
mt.check(r.code == 550 and r.text.startswith('550 5.7.1'), 'a removed customer: 550 5.7.1 in a new session (%s)' % (r,))
mt.check('late@cust0003.example' not in pf_log(), 'and its backend was not asked')
r = mt.send_mail(mx.port, 'sender@elsewhere.example', ['hello@newcust.example'], mt.message('new'), proxy_src=next(SRC))
mt.check(r.code == 250 and mt.wait_for(lambda: pf_took('hello@newcust.example'), 20),
         'an added customer: delivered (%s)' % (r,))
r = mt.send_mail(mx.port, 'sender@elsewhere.example', ['moved@cust0005.example'], mt.message('moved'), proxy_src=next(SRC))
mt.check(r.code == 250 and mt.wait_for(lambda: 'moved@cust0005.example' in sink_rcpts(), 20),
         'a customer added to the route file: at cluster B after the reload (%s)' % (r,))

# a provisioning script that leaves a bad line, then one that empties the file
for content, what in (('\n'.join(DOMAINS) + '\nnot a domain\n', 'a bad line'), ('# nothing\n', 'no domain')):
    with open(domfile, 'w') as f:
        f.write(content)
    start = mx.log_size()
    mx.send_signal(1)
    mt.check(mx.wait_log(r'event=reload_failed[^\n]*keeping=old', mt.slack(30), start) is not None,
             'a file with %s: event=reload_failed ... keeping=old' % what)
    r = mt.send_mail(mx.port, 'sender@elsewhere.example', ['again@newcust.example', 'again@cust0003.example'],
                     mt.message('kept-' + what), proxy_src=next(SRC))
    mt.check(r.code == 250 and r.rcpt_codes == [250, 550], 'and the running list stays (%s)' % (r.rcpt_codes,))
write_domains([d for d in DOMAINS if d != 'cust0003.example'] + ['newcust.example'])

# ---------------------------------------------------------------- a dictionary attack on BIG
results, lock = [], threading.Lock()


def attacker(n):
    cl = mt.Client(mx.port, proxy_src='198.19.%d.%d' % (n // 200, 1 + n % 200))
    cl.ehlo()
    cl.cmd('MAIL FROM:<harvest@spam.example>')
    codes = []
    for i in range(15):
        try:
            codes.append(cl.cmd('RCPT TO:<guess%d-%d@%s>' % (n, i, BIG))[0])
        except OSError:
            codes.append('closed')
            break
        if codes[-1] in (421, None):
            break
    cl.close()
    with lock:
        results.append(codes)


threads = [threading.Thread(target=attacker, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
legit = mt.send_mail(mx.port, 'friend@elsewhere.example', ['info@' + BIG, 'sales@cust0007.example'],
                     mt.message('during-attack'), proxy_src=next(SRC))
for t in threads:
    t.join(mt.slack(120))
mt.check(legit.code == 250 and legit.rcpt_codes == [250, 250],
         'during the attack, mail to the big customer and to another customer of its cluster: delivered (%s)' % (legit,))
mt.check(len(results) == 8 and all(r[:10] == [550] * 10 and r[10] == 421 for r in results),
         'each attacking connection: ten 550 from the backend, then 421 (%s)' % results[:2])
mt.check(mt.wait_for(lambda: pf_took('sales@cust0007.example'), 20), "the other customer's message at cluster A")
# (Postfix logs through postlogd, a datagram away: its lines come a little after the replies)
mt.check(mt.wait_for(lambda: len(re.findall(r'NOQUEUE: reject: RCPT from unknown\[198\.19\.', pf_log())) == 80, 20),
         'the Postfix refused 80 guesses, as the real clients (%d)'
         % len(re.findall(r'NOQUEUE: reject: RCPT from unknown\[198\.19\.', pf_log())))
per_conn = re.findall(r'disconnect from unknown\[198\.19\.[^\]]*\][^\n]*rcpt=0/(\d+)', pf_log())
mt.check(all(int(x) <= 10 for x in per_conn),
         "no mxgate connection to the Postfix passed its smtpd_soft_error_limit (10): no error sleeps (%s)" % per_conn)
mt.check(not re.search(r'too many errors after RCPT from unknown\[198\.19\.', pf_log()),
         'the Postfix never said too many errors to mxgate for an attacker')
mt.check(mx.count_log(r'event=disconnect client=198\.19\.[^\n]*reason=too_many_errors') == 8,
         'mxgate logged each attacker out with reason=too_many_errors')

mx.stop()
mt.finish()
