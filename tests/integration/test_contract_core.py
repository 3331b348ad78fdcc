#!/usr/bin/env python3
"""The older parts of the user-facing contract (INTERFACE.md "The daemon", "Configuration
(YAML)", "What reaches the backend", "Logs"), written as an outsider would from those words
alone: the contract's example configuration, with its key spellings and example values, and
only its ports and paths replaced by the test's (and proxy_protocol: true, so that clients
pose as 198.18.x.y with PROXY v2 from 127.0.0.1, a trusted proxy).

- `mxgate -t -c FILE` accepts the example whole (plugins and rules included) and exits 0;
- the daemon runs on it (its `plugins:` left out: clamd, milter and spamd have tests of their
  own, test_clamd, test_milter, test_spamd) with real peers behind: the recording backend,
  an LMTP backend, a Maildir, a DNS server for the DNS lists and SPF;
- what reaches the backend: `X-Spam-Score: 7.5` and `X-Spam-Status: Yes, score=7.5
  required=5.0 tests=...RULE_A,RULE_B...` on a message the rules scored 7.5 (rules.actions
  add_header: 5), `Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=example.org`
  (spf: { enabled: true }), and the client's identity by XCLIENT (client_identity: xclient);
- round_robin over the smtp, lmtp and maildir servers; a recipient of a routes: domain goes
  to its own server;
- the DNS lists as the example weighs them: bl.test (weight 3, codes 127.0.0.2-127.0.0.11)
  refuses at threshold 3, an answer outside the codes does not count, wl.test (-5) lifts a
  listed client, dbl.test (type domain, weight 2) alone stays under the threshold;
- the ratelimit rules of the example: 30 connections of an address at once, then 4xx (a
  token bucket, burst 30, one more every 2 s), and the 11th concurrent one gets 4xx (action
  tempfail; the concurrency rule's default);
- pregreet { delay: 2s, action: reject }: a client talking first is refused at MAIL, 550;
- the log: one line per event, the session id first, then key=value: a refusal as
  `ID event=reject stage=... reason=dnsbl list=bl.test client=198.18.1.7`, and each delivered
  message with its backend and the backend's queue id from its 250 reply;
- limits: max_recipients 100 (the 101st RCPT 452), bare_lf: reject (550), SIZE 52428800
  (max_message_size 50M) in the EHLO reply; metrics.listen answers /metrics;
- SIGHUP with an invalid file: logged, the old config stays and serves; SIGTERM with a
  session in a transaction: no new connection, the message finished, exit 0.

And `dnsbl: { action: tempfail }` against its own description in the key table (docs/config.md
and the man page are made from it): an IP list's tempfail is 421 in place of the greeting (a
greeting says "try later" only with 421, RFC 5321 3.1; after pregreet's teaser, a 220 line
already, the 421 answers the first command), which the description called "450 4.7.1 at
MAIL" until session 37.
"""
import os
import re
import signal
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

crt, key = mt.cert()
plugin = os.path.join(os.path.dirname(mt.BIN), 'example_plugin.so')
rules_dir = os.path.join(mt.TMP, 'rules')
os.makedirs(rules_dir)
with open(os.path.join(rules_dir, 'contract.rules'), 'w') as f:
    f.write('header RULE_A Subject =~ /\\bcheap\\b/i\nscore RULE_A 4.0\n'
            'body RULE_B /\\bpills\\b/i\nscore RULE_B 3.5\n')
maildir = os.path.join(mt.TMP, 'Maildir')
reputation = os.path.join(mt.TMP, 'reputation')

be, lm, routed = mt.Backend(), mt.Backend(lmtp=True), mt.Backend()


def listed(ip, zone, code='127.0.0.2', txt=None):
    name = '.'.join(reversed(ip.split('.'))) + '.' + zone
    return name, [{'a': code}] + ([{'txt': [txt]}] if txt else [])


zone = dict([listed('198.18.1.7', 'bl.test', txt='Listed in bl.test'),
             listed('198.18.2.7', 'bl.test', code='127.0.0.12'),      # outside the codes
             listed('198.18.3.7', 'bl.test'), listed('198.18.3.7', 'wl.test'),
             ('bad.example.dbl.test', [{'a': '127.0.0.2'}])])
zone['example.org'] = [{'txt': ['v=spf1 ip4:198.18.0.0/15 -all']}]
dnsp = mt.dns_peer(zone)
metrics = mt.hold_port()

EXAMPLE = '''hostname: mx.example.test
workers: auto                       # event-loop threads
listen:
  - address: 127.0.0.1:0
    tls: starttls                   # none | starttls | implicit
    proxy_protocol: true            # expect PROXY v1/v2 from trusted_proxies only
trusted_proxies: [127.0.0.0/8]
tls: { certificate: %(crt)s, key: %(key)s }
limits:
  max_connections: 20000
  max_connections_per_ip: 50
  max_message_size: 50M
  max_recipients: 100
  command_timeout: 300s
  data_timeout: 600s
  drain_timeout: 30s
  bare_lf: reject                   # reject | normalize
backends:
  balance: round_robin              # round_robin | least_conn | source_hash
  client_identity: xclient          # none | xclient | proxy_v2
  health_check: { interval: 5s, timeout: 3s }
  servers:
    - { address: "%(smtp)s", weight: 1 }
    - { address: "%(lmtp)s" }
    - { address: "maildir:%(maildir)s" }
  routes:                           # optional: recipient domain -> its own servers
    - { domains: [example.org], servers: ["%(routed)s"] }
dns:
  resolvers: ["127.0.0.1:%(dns)d"]     # default: /etc/resolv.conf
  timeout: 2s
dnsbl:
  threshold: 3                      # summed weight at which `action` fires
  action: %(dnsbl_action)s                    # reject | tempfail | score
  lists:
    - { zone: bl.test, weight: 3, codes: ["127.0.0.2-127.0.0.11"] }
    - { zone: wl.test, weight: -5 }
    - { zone: dbl.test, type: domain, weight: 2 }   # HELO / MAIL FROM domains
reputation: { store: "lmdb:%(reputation)s" }   # or "redis://127.0.0.1:6379"
ratelimit:
  store: local                      # local | "redis://127.0.0.1:6379" (shared by all nodes)
  rules:
    - { key: ip, count: connections, limit: 30/60s, action: tempfail }
    - { key: ip, count: concurrency, limit: 10 }
    - { key: sender_domain, count: messages, limit: 1000/1h }
pregreet: { delay: 2s, action: reject }
spf: { enabled: true }
%(plugins)srules:
  files: ["%(rules)s/*.rules"]
  actions: { add_header: 5, tempfail: 10, reject: 15 }
metrics: { listen: "127.0.0.1:%(metrics)d" }
'''
PLUGINS = '''plugins:
  - { name: clamd,  address: "127.0.0.1:3310", on_error: tempfail, timeout: 30s }
  - { name: milter, address: "inet:127.0.0.1:8891", on_error: accept }
  - { name: spamd,  address: "127.0.0.1:783" }
  - { name: mine,   path: "%s" }
''' % plugin
values = {'crt': crt, 'key': key, 'smtp': be.url, 'lmtp': lm.url, 'maildir': maildir,
          'routed': routed.url, 'dns': dnsp.port, 'reputation': reputation, 'rules': rules_dir,
          'metrics': metrics.port, 'dnsbl_action': 'reject'}

# ---------------------------------------------------------------- -t on the whole example
check_port = mt.hold_port()     # -t binds nothing: a held port stands for the listener's
code, out = mt.config_check((EXAMPLE % dict(values, plugins=PLUGINS)).replace('127.0.0.1:0', '127.0.0.1:%d' % check_port.port),
                            name='example-check')
mt.check(code == 0 and ': ok' in out, 'mxgate -t accepts the contract\'s example whole (rc %s):\n%s' % (code, out))

mx = mt.Mxgate(EXAMPLE % dict(values, plugins=''), name='mx-contract')
port = mx.port


def since(n):
    return mx.log()[n:]


# ---------------------------------------------------------------- pregreet
n = mx.log_size()
c = mt.Client(port, proxy_src='198.18.9.1', greet=False)
c.send(b'EHLO eager.example\r\n')
codes = []
try:
    codes += [c.reply()[0], c.reply()[0], c.cmd('MAIL FROM:<a@example.org>')[0]]
except OSError as e:
    codes.append(repr(e))
c.close()
mt.check(codes[-1] == 550, 'pregreet { delay: 2s, action: reject }: a client talking first is refused at MAIL, 550 (%s)' % codes)

# ---------------------------------------------------------------- what reaches the backend
spam = mt.message('scored', 'buy pills now\r\n').replace(b'Subject: test scored', b'Subject: cheap scored')
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], spam, proxy_src='198.18.0.2')
got = be.by_tag('scored') or lm.by_tag('scored')
got = got[0]['data'] if got else b''
if not got:
    for d in ('new', 'cur'):
        for fn in os.listdir(os.path.join(maildir, d)) if os.path.isdir(os.path.join(maildir, d)) else ():
            data = open(os.path.join(maildir, d, fn), 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
            got = data if b'<scored@' in data else got
mt.check(r.code == 250 and got, 'a message scored 7.5 (add_header 5) is delivered: %s %s' % (r.code, r.text))
score = mt.header_values(got, 'X-Spam-Score')
status = mt.header_values(got, 'X-Spam-Status')
mt.check(score == ['7.5'], 'X-Spam-Score: 7.5 (%s)' % score)
m = re.match(r'Yes, score=7\.5 required=5\.0 tests=(\S+)', status[0] if len(status) == 1 else '')
tests = m.group(1).split(',') if m else []
mt.check(m is not None and 'RULE_A' in tests and 'RULE_B' in tests and tests.index('RULE_A') < tests.index('RULE_B'),
         'X-Spam-Status: Yes, score=7.5 required=5.0 tests=...RULE_A,RULE_B... (%s)' % status)
ar = mt.header_values(got, 'Authentication-Results')
mt.check('mx.example.test; spf=pass smtp.mailfrom=example.org' in ar,
         'Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=example.org (%s)' % ar)

# round_robin over smtp, lmtp and maildir; the routes: domain to its own server
for i in range(6):
    r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], mt.message('rr%d' % i), proxy_src='198.18.0.2')
    mt.check(r.code == 250, 'message rr%d delivered (%s %s)' % (i, r.code, r.text))
files = [f for d in ('new', 'cur') for f in (os.listdir(os.path.join(maildir, d)) if os.path.isdir(os.path.join(maildir, d)) else ())]
mt.check(len(be.messages) >= 2 and len(lm.messages) >= 2 and len(files) >= 2,
         'round_robin: the smtp, lmtp and maildir servers each take their share (%d %d %d)'
         % (len(be.messages), len(lm.messages), len(files)))
xc = [x['xclient'] for x in be.messages]
mt.check(xc and all(x.get('ADDR') == '198.18.0.2' for x in xc),
         'client_identity: xclient: the backend learns the client\'s address (%s)' % xc[:1])
r = mt.send_mail(port, 'alice@example.org', ['carol@example.org'], mt.message('routed'), proxy_src='198.18.0.2')
mt.check(r.code == 250 and routed.by_tag('routed') and not be.by_tag('routed') and not lm.by_tag('routed'),
         'routes: a recipient in example.org goes to its own server (%s %s)' % (r.code, r.text))

# ---------------------------------------------------------------- DNS lists
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], mt.message('listed'), proxy_src='198.18.1.7')
mt.check(r.code == 550 and 'bl.test' in r.text and not (be.by_tag('listed') or lm.by_tag('listed')),
         'bl.test (weight 3 at threshold 3) refuses a listed client, 550 naming the list (%s %s)' % (r.code, r.text))
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], mt.message('outside'), proxy_src='198.18.2.7')
mt.check(r.code == 250, 'an answer outside codes 127.0.0.2-127.0.0.11 does not count (%s %s)' % (r.code, r.text))
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], mt.message('lifted'), proxy_src='198.18.3.7')
mt.check(r.code == 250, 'wl.test (weight -5) lifts a client bl.test lists (%s %s)' % (r.code, r.text))
r = mt.send_mail(port, 'eve@bad.example', ['bob@example.test'], mt.message('dbl'), proxy_src='198.18.4.7')
mt.check(r.code == 250, 'dbl.test (type domain, weight 2) alone stays under threshold 3 (%s %s)' % (r.code, r.text))
r = mt.send_mail(port, 'eve@bad.example', ['bob@example.test'], mt.message('dbl2'), ehlo='bad.example',
                 proxy_src='198.18.4.8')
mt.check(r.code == 550 and 'dbl.test' in r.text,
         'dbl.test listing the HELO name and the MAIL FROM domain sums 4: refused (%s %s)' % (r.code, r.text))

# ---------------------------------------------------------------- limits
c = mt.Client(port, proxy_src='198.18.0.2')
code, text = c.ehlo()
mt.check(code == 250 and 'SIZE 52428800' in text, 'max_message_size: 50M is SIZE 52428800 in the EHLO reply')
c.cmd('MAIL FROM:<alice@example.org>')
codes = [c.cmd('RCPT TO:<r%d@example.test>' % i)[0] for i in range(101)]
mt.check(set(codes[:100]) == {250} and codes[100] == 452, 'max_recipients: 100: the 101st RCPT gets 452 (%s)' % codes[98:])
c.close()
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], b'Subject: bare\r\n\r\nbare\nLF\r\n', proxy_src='198.18.0.2')
mt.check(r.code == 550, 'bare_lf: reject: a bare LF in DATA is refused, 550 (%s %s)' % (r.code, r.text))

# ---------------------------------------------------------------- ratelimit
# a token bucket (docs/config.md: burst N): 30 at once, then one more each 2 s; the first
# connection waits out pregreet's 2 s, so the 31st may find a token refilled: a 4xx comes
# within the next 30 (30 more tokens take a minute)
got = []
while len(got) < 60 and 421 not in got and 450 not in got and 451 not in got:
    c = mt.Client(port, proxy_src='198.18.7.1')
    got.append(c.greeting[0])
    if got[-1] == 220:
        c.cmd('QUIT')      # its session over before the next: never 11 at once (the concurrency rule)
    c.close()
mt.check(got[:30] == [220] * 30 and got[-1] // 100 == 4,
         '{ key: ip, count: connections, limit: 30/60s, action: tempfail }: 30 connections at once, then 4xx '
         '(%d greeted, then %s)' % (len(got) - 1, got[-1]))
held = [mt.Client(port, proxy_src='198.18.8.1') for _ in range(11)]
got = [c.greeting[0] for c in held]
mt.check(got[:10] == [220] * 10 and got[10] // 100 == 4,
         '{ key: ip, count: concurrency, limit: 10 }: the 11th concurrent connection gets 4xx (%s)' % got)
for c in held:
    c.close()

# ---------------------------------------------------------------- metrics
try:
    body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % metrics.port, timeout=10).read().decode()
except OSError as e:
    body = repr(e)
mt.check('mxgate_' in body, 'metrics: { listen } serves /metrics (%s)' % body[:80])

# ---------------------------------------------------------------- SIGHUP with an invalid file
good = open(mx.conf).read()
with open(mx.conf, 'w') as f:
    f.write(good.replace('balance: round_robin', 'balance: fastest'))
n = mx.log_size()
mx.send_signal(signal.SIGHUP)
mt.check(bool(mx.wait_log(r'event=config_error .*backends\.balance', 20, n)),
         'SIGHUP with an invalid file: the error is logged, with its key')
with open(mx.conf, 'w') as f:
    f.write(good)
r = mt.send_mail(port, 'alice@example.org', ['bob@example.test'], mt.message('afterhup'), proxy_src='198.18.0.2')
mt.check(r.code == 250, 'after it the old config serves (%s %s)' % (r.code, r.text))

# ---------------------------------------------------------------- the log
log = mx.log()
m = re.search(r'(?m)^\S+ \w+ ([0-9a-f]{6,16}) event=reject stage=\w+ reason=dnsbl list=bl\.test client=198\.18\.1\.7( |$)', log)
mt.check(m is not None, 'the refusal is logged as "ID event=reject stage=... reason=dnsbl list=bl.test client=198.18.1.7"')
for msg in be.messages + lm.messages:
    m = re.search(r'(?m)^\S+ \w+ [0-9a-f]{6,16} event=delivered .*\bbackend=(\S+) backend_queue_id=%s( |$)' % msg['qid'], log)
    mt.check(m is not None and m.group(1) in (be.url, lm.url),
             'the delivered message logs its backend and the queue id of its 250 (%s)' % msg['qid'])
files = [f for d in ('new', 'cur') for f in os.listdir(os.path.join(maildir, d)) if os.path.isdir(os.path.join(maildir, d))]
for fn in files:
    mt.check(bool(re.search(r'event=delivered .*\bbackend=maildir:%s backend_queue_id=%s( |$)' % (re.escape(maildir), re.escape(fn.split(':')[0])), log)),
             'the Maildir delivery logs its file name as the queue id (%s)' % fn)

# ---------------------------------------------------------------- SIGTERM drains
c = mt.Client(port, proxy_src='198.18.0.2')
c.ehlo()
c.cmd('MAIL FROM:<alice@example.org>')
c.cmd('RCPT TO:<bob@example.test>')
n = mx.log_size()
mx.send_signal(signal.SIGTERM)
mx.wait_log(r'event=shutdown', 10, n)
try:          # refused, closed unheard, or 421: anything but a session
    late = mt.Client(port, proxy_src='198.18.0.3', timeout=5)
    heard = late.greeting[0]
    if heard == 220:
        # Reached a worker whose drain had not begun: its pregreet teaser's 220 came first and
        # the drain ends that session with 421 at once (the listener closes when the worker
        # handles the stop, after event=shutdown is logged). Not served either.
        nxt = late.reply()[0]
        if nxt in (421, None):
            heard = '220 then %s' % nxt
    late.close()
except (OSError, ConnectionError):
    heard = None
mt.check(heard != 220, 'SIGTERM: a new connection is not served (%s)' % heard)
code, _ = c.cmd('DATA')
c.send(mt.stuff(mt.message('draining')))
code2, text2 = c.reply()
c.close()
mt.check(code == 354 and code2 == 250, 'SIGTERM: the session under way finishes its message (%s %s %s)' % (code, code2, text2))
mx.stop(sig=None)

# ---------------------------------------------------------------- dnsbl tempfail, as its description says
docs = mt.run_mxgate('--dump-config-docs').stdout
row = next((ln for ln in docs.split('\n') if ln.startswith('| `action` | `reject` \\| `tempfail` \\| `score`')), '')
said = re.search(r'tempfail \(((?:[^()]|\([^()]*\))*)\)', row)
said = said.group(1) if said else ''
metrics2 = mt.hold_port()
mx = mt.Mxgate(EXAMPLE % dict(values, plugins='', dnsbl_action='tempfail', metrics=metrics2.port), name='mx-tempfail')
r = mt.send_mail(mx.port, 'alice@example.org', ['bob@example.test'], mt.message('tempfailed'), proxy_src='198.18.1.7')
mt.check(r.code is not None and r.code // 100 == 4 and not (be.by_tag('tempfailed') or lm.by_tag('tempfailed')),
         'dnsbl action: tempfail: a listed client gets 4xx, nothing delivered (%s %s, at %s)' % (r.code, r.text, r.stage))
mt.check(r.stage in ('connect', 'helo') and r.code == 421 and '421' in said,
         'dnsbl.action\'s description says what an IP list\'s tempfail answers (%s at %s; it says "%s")'
         % (r.code, r.stage, said))
mx.stop()
mt.finish()
