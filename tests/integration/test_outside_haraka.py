#!/usr/bin/env python3
"""From the outside: a Haraka operator's policy written from docs/ alone (docs/filters-limits.md,
"Coming from Haraka"), and a real Haraka 3.3.4 with that policy, side by side, both behind the
same PROXY-protocol front (haproxy) and in front of Postfix's smtp-sink, fed the same sessions
(raw sockets with a PROXY v1 header, as haproxy's `send-proxy` writes it; swaks; smtp-source).

Haraka's plugins and their mxgate keys:
    rcpt_to.in_host_list (host_list)       accept_domains: ["file:.../config/host_list"]
    relay (acl, relay_acl_allow)           relay_networks: ["file:.../config/relay_acl_allow"]
    helo.checks (reject bare_ip, valid_hostname, literal_mismatch)
                                           helo_checks.{syntax,not_fqdn,literal_mismatch,claims_us}: reject
    headers (reject missing_required, duplicate_singular)
                                           rules: exists: and ALL =~ with `action ... reject`
    limit concurrency / rate_conn / rate_rcpt_sender / rate_rcpt_null / recipients / errors
                                           ratelimit rules (Redis store) / limits.max_recipients, max_errors
    connection.ini [haproxy] hosts         listen[].proxy_protocol + trusted_proxies
    dns-list (zones, reject=true)          dnsbl.lists (rbldnsd serves the list to both)

Checked: each session's replies have the same class (2xx/4xx/5xx) at every step from both
(the documented differences are checked as such: Haraka's unrecognized-command
count), mxgate's enhanced codes, the same messages at both backends, the same counts from
smtp-source under the same rate limit; and mxgate's log: one `event=disconnect` line for each
session (a session ended by limits.max_errors logged two, one of them without the session's
figures) and only key=value lines (a client that reset its connection was logged as
`reason=connection reset by peer`, three words outside the contract).
"""
import os
import re
import shutil
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

# Haraka: scripts/install-deps.sh installs it into /opt/mxgate-peers/haraka (npm, Haraka@3.3.4)
HARAKA = os.environ.get('MX_HARAKA') or next(
    (p for p in ('/opt/mxgate-peers/haraka/node_modules/.bin/haraka', shutil.which('haraka') or '')
     if p and os.access(p, os.X_OK)), '/opt/mxgate-peers/haraka/node_modules/.bin/haraka')
mt.need('smtp-sink', 'swaks', 'smtp-source', 'redis-server', 'node', HARAKA)


class Haraka:
    """haraka -c DIR in the foreground on a free port: `haraka -i` makes DIR with Haraka's own
    defaults, then `files` ({config file: text}) replace or add config files. Haraka binds
    without SO_REUSEPORT, so the port's hold is released just before the start."""

    def __init__(self, files, plugins, name='haraka', haproxy=True, dns=None):
        self.name, self.dir = name, os.path.join(mt.TMP, name)
        r = mt.subprocess.run([HARAKA, '-i', self.dir], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            mt.fail('haraka -i failed: %s' % (r.stdout + r.stderr)[-500:])
        hold = mt.hold_port()
        self.port = hold.port
        conn = os.path.join(self.dir, 'config', 'connection.ini')
        with open(conn) as f:
            conn_ini = f.read()
        conf = {'smtp.ini': 'listen=127.0.0.1:%d\nnodes=\n' % self.port,
                'me': 'mx.example.test\n', 'plugins': '\n'.join(plugins) + '\n',
                'log.ini': '[main]\nlevel=info\n',
                # haproxy's addresses may send PROXY (v1); everyone else gets 421
                'connection.ini': re.sub(r'(?m)^hosts\[\] *=.*$', 'hosts[] = 127.0.0.1' if haproxy else
                                         'hosts[] =', conn_ini)}
        conf.update(files)
        for fn, text in conf.items():
            with open(os.path.join(self.dir, 'config', fn), 'w') as f:
                f.write(text)
        hold.release()
        env = dict(os.environ)
        if dns:     # its DNS lists asked at dns (host:port) instead of resolv.conf
            env.update(HARAKA_DNS=dns, NODE_OPTIONS='--require ' + os.path.join(mt.SRC, 'tests/peers/haraka_dns.js'))
        self.proc = mt.spawn([HARAKA, '-c', self.dir], name, env=env)
        if not mt.wait_port(self.port, 60, self.proc):
            mt.fail('haraka did not start:\n' + mt.log_of(name)[-3000:])

    def log(self):
        return mt.log_of(self.name)

    def wait_redis(self):
        """Haraka's limit admits everything until its Redis connection is up (a message or two
        right after the start): the comparison starts after that."""
        if not mt.wait_for(lambda: '[limit] connected to redis' in self.log(), 30, 0.2):
            mt.fail('haraka: limit did not connect to redis:\n' + self.log()[-2000:])


def session(port, lines, src, ehlo='mta.example.org', data=None):
    """One session from src (a PROXY v1 header first): the greeting, EHLO, then each line
    ('BODY' sends data, dot-stuffed and terminated). Returns [(command, code or None if the
    connection was closed)]; stops at a close."""
    s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(20))
    f = s.makefile('rb')

    def reply():
        while True:
            line = f.readline()
            if len(line) < 4:
                return None
            if line[3:4] != b'-':
                return int(line[:3])
    out = []
    try:
        s.sendall(b'PROXY TCP4 %s 127.0.0.1 40000 %d\r\n' % (src.encode(), port))
        out.append(('connect', reply()))
        for cmd in (['EHLO ' + ehlo] if ehlo else []) + lines:
            if out[-1][1] is None or out[-1][1] == 421:
                break
            s.sendall(mt.stuff(data) if cmd == 'BODY' else cmd.encode() + b'\r\n')
            out.append((cmd, reply()))
    except OSError:
        out.append(('io', None))
    s.close()
    return out


def classes(out):
    return [(cmd, None if code is None else code // 100) for cmd, code in out]


sink_h = mt.Sink(name='sink-haraka')
sink_m = mt.Sink(name='sink-mxgate')
redis = mt.redis()
# a DNS list as dns-list and mxgate's dnsbl ask it (RFC 5782's 127.0.0.2 test point listed)
rbl = mt.rbldnsd({'bl.test': ('ip4set', '127.0.0.2\n198.18.66.0/24 :127.0.0.2:listed in bl.test\n')})
rules = os.path.join(mt.TMP, 'haraka-headers.rules')
with open(rules, 'w') as f:
    # Haraka's headers plugin with reject on: RFC 5322 3.6's required (Date, From) and singular
    # fields, as docs/rules.md's exists: and ALL tests with an immediate action
    f.write('header   __HAS_DATE      exists:Date\n'
            'header   __HAS_FROM      exists:From\n'
            'meta     HDR_MISSING_DATE !__HAS_DATE\n'
            'meta     HDR_MISSING_FROM !__HAS_FROM\n'
            'header   HDR_DUP_SUBJECT ALL =~ /^Subject:.*\\n(?:.*\\n)*Subject:/mi\n'
            'score    HDR_MISSING_DATE 0.1\nscore HDR_MISSING_FROM 0.1\nscore HDR_DUP_SUBJECT 0.1\n'
            'action   HDR_MISSING_DATE reject\naction HDR_MISSING_FROM reject\naction HDR_DUP_SUBJECT reject\n')

h = Haraka({
    # as an operator keeps it: a comment, a blank line, a name in capitals, CRLF
    'host_list': '# the domains we are MX for\n\nExample.TEST\r\n',
    'smtp_forward.ini': 'host=127.0.0.1\nport=%d\nenable_outbound=false\nenable_tls=false\n' % sink_h.port,
    # database 0 for both (their keys differ), so the test reads both counts with one client
    'limit.ini': '[main]\ntarpit_delay=0\n[redis]\nhost=127.0.0.1\nport=%d\ndatabase=0\n'
                 '[concurrency]\nenabled=true\nmax=2\n[rate_conn]\nenabled=true\ndefault=3/10m\n'
                 '[rate_rcpt_sender]\nenabled=true\ndefault=3/10m\n[rate_rcpt_null]\nenabled=true\ndefault=1/10m\n'
                 '[recipients]\nenabled=true\nmax=5\n[errors]\nenabled=true\nmax=3\n' % redis.port,
    'helo.checks.ini': '[check]\ndynamic=false\nforward_dns=false\nrdns_match=false\nliteral_mismatch=1\n'
                       '[reject]\nbare_ip=true\nliteral_mismatch=true\nvalid_hostname=true\n',
    'headers.ini': '[reject]\nduplicate_singular=true\nmissing_required=true\n',
    'relay.ini': '[relay]\nacl=true\nforce_routing=false\ndest_domains=false\n',
    'relay_acl_allow': '198.18.50.0/24\n',
    'dns-list.ini': '[main]\nperiodic_checks=0\nzones=bl.test\n[bl.test]\ntype=block\nreject=true\n',
}, ['limit', 'dns-list', 'helo.checks', 'relay', 'rcpt_to.in_host_list', 'headers', 'queue/smtp_forward'],
    dns='127.0.0.1:%d' % rbl.port)

cfg = mt.proxied_config(
    # Haraka's own host_list and relay_acl_allow files, read as they are (docs/filters-limits.md)
    [sink_m.url], accept_domains=['file:' + os.path.join(h.dir, 'config', 'host_list')],
    relay_networks=['file:' + os.path.join(h.dir, 'config', 'relay_acl_allow')],
    limits={'max_recipients': 5, 'max_errors': 3},
    helo_checks={'enabled': True, 'syntax': {'action': 'reject'}, 'not_fqdn': {'action': 'reject'},
                 'literal_mismatch': {'action': 'reject'}, 'claims_us': {'action': 'reject'},
                 'fcrdns': {'enabled': False}},
    dns={'resolvers': ['127.0.0.1:%d' % rbl.port], 'timeout': '2s'},
    dnsbl={'threshold': 1, 'action': 'reject', 'lists': [{'zone': 'bl.test', 'weight': 1}]},
    ratelimit={'store': 'redis://127.0.0.1:%d' % redis.port, 'rules': [
        {'key': 'ip', 'count': 'concurrency', 'limit': 2},
        {'key': 'ip', 'count': 'connections', 'limit': '3/10m'},
        {'key': 'sender', 'count': 'recipients', 'limit': '3/10m'},
        # rate_rcpt_null
        {'key': 'recipient', 'count': 'recipients', 'limit': '1/10m', 'sender': 'null'}]},
    rules={'files': [rules], 'actions': {'reject': 0, 'tempfail': 0, 'add_header': 0}})
rc, out = mt.config_check(dict(cfg, listen=[{'address': '127.0.0.1:2525', 'proxy_protocol': True}]), 'haraka')
mt.check(rc == 0, "mxgate -t accepts the Haraka operator's config: %s %s" % (rc, out.strip()[:300]))
mx = mt.Mxgate(cfg, 'mx-haraka')

h.wait_redis()
# Haraka reads its TLD lists after it listens: helo.checks' valid_hostname refuses good names
# until then, so the comparison starts once a good name passes
if not mt.wait_for(lambda: session(h.port, ['QUIT'], '198.18.99.1')[1:2] == [('EHLO mta.example.org', 250)], 30, 0.5):
    mt.fail('haraka does not take EHLO mta.example.org:\n' + h.log()[-2000:])

DATED = b'From: a@example.org\r\nDate: Sat, 05 Dec 2026 03:00:00 +0000\r\n'
CASES = [
    # name, src, ehlo, lines, data, what mxgate answers at the step that differs in class
    ('delivered', '198.18.7.1', 'mta.example.org',
     ['MAIL FROM:<n1@example.org>', 'RCPT TO:<u@example.test>', 'DATA', 'BODY', 'QUIT'], mt.message('hk-1')),
    ('host_list', '198.18.7.2', 'mta.example.org',
     ['MAIL FROM:<n2@example.org>', 'RCPT TO:<u@other.example>', 'QUIT'], None),
    ('bare IP HELO', '198.18.7.3', '198.18.7.3', ['MAIL FROM:<n3@example.org>', 'QUIT'], None),
    ('literal mismatch', '198.18.7.4', '[198.18.9.9]', ['MAIL FROM:<n4@example.org>', 'QUIT'], None),
    ('literal match', '198.18.7.4', '[198.18.7.4]', ['MAIL FROM:<n4@example.org>', 'QUIT'], None),
    ('not a FQDN', '198.18.7.5', 'localhost', ['MAIL FROM:<n5@example.org>', 'QUIT'], None),
    ('our own name', '198.18.7.5', 'mx.example.test', ['MAIL FROM:<n5@example.org>', 'QUIT'], None),
    ('missing Date', '198.18.7.6', 'mta.example.org',
     ['MAIL FROM:<n6@example.org>', 'RCPT TO:<u@example.test>', 'DATA', 'BODY', 'QUIT'],
     b'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n'),
    ('two Subjects', '198.18.7.7', 'mta.example.org',
     ['MAIL FROM:<n7@example.org>', 'RCPT TO:<u@example.test>', 'DATA', 'BODY', 'QUIT'],
     DATED + b'Subject: x\r\nSubject: y\r\n\r\nbody\r\n'),
    ('null sender, twice to one recipient', '198.18.7.8', 'mta.example.org',
     ['MAIL FROM:<>', 'RCPT TO:<pm@example.test>', 'RSET', 'MAIL FROM:<>', 'RCPT TO:<pm@example.test>', 'QUIT'],
     None),
    ('rate_rcpt_sender then errors', '198.18.8.2', 'mta.example.org',
     ['MAIL FROM:<s@example.org>'] + ['RCPT TO:<u%d@example.test>' % i for i in range(7)] + ['QUIT'], None),
] + [('rate_conn %d' % i, '198.18.8.1', 'mta.example.org', ['QUIT'], None) for i in range(5)]
# rate_rcpt_null (recipient keyed, null sender): the second null-sender RCPT to pm@ is 4xx in
# both (mxgate: a recipient rule with sender: null)
SKIP_STEP = set()
# documented differences (docs/filters-limits.md, "Coming from Haraka")
DIFFER = {
    # Haraka's limit counts every error and disconnects past errors.max; its rate_rcpt_sender
    # refusals are 450 without counting as errors, its `recipients` max answers 450 past 5
    # attempts. mxgate counts each refusal towards limits.max_errors (Postfix's
    # smtpd_hard_error_limit): the third 451 is followed by 421 and the session ends
    ('rate_rcpt_sender then errors', 9): (4, 4),
}

EXPECT_MX = {
    'delivered': [220, 250, 250, 250, 354, 250, 221],
    'host_list': [220, 250, 250, 550, 221],
    'bare IP HELO': [220, 501, 503, 221],     # a name of bad syntax: 501 5.5.2, as Postfix
    'literal mismatch': [220, 550, 503, 221],
    'literal match': [220, 250, 250, 221],
    'not a FQDN': [220, 504, 503, 221],   # 504 5.5.2, as Postfix's reject_non_fqdn_helo_hostname
    'our own name': [220, 550, 503, 221],
    'missing Date': [220, 250, 250, 250, 354, 550, 221],
    'two Subjects': [220, 250, 250, 250, 354, 550, 221],
    'rate_rcpt_sender then errors': [220, 250, 250, 250, 250, 250, 451, 451, 451, 421],
    'null sender, twice to one recipient': [220, 250, 250, 250, 250, 250, 451, 221],
    'rate_conn 0': [220, 250, 221], 'rate_conn 1': [220, 250, 221], 'rate_conn 2': [220, 250, 221],
    'rate_conn 3': [421], 'rate_conn 4': [421],
}
for name, src, ehlo, lines, data in CASES:
    a = session(h.port, lines, src, ehlo, data)
    b = session(mx.port, lines, src, ehlo, data)
    ca, cb = classes(a), classes(b)
    same = True
    for i in range(min(len(ca), len(cb))):
        if (name, i) in SKIP_STEP:
            continue
        if (name, i) in DIFFER:
            same = same and (ca[i][1], cb[i][1]) == DIFFER[(name, i)]
            break       # the sessions part here
        same = same and ca[i] == cb[i]
    else:
        same = same and len(ca) == len(cb)
    mt.check(same, '%s: the same reply classes from Haraka and mxgate (Haraka %s, mxgate %s)'
             % (name, [c for _, c in a], [c for _, c in b]))
    if name in EXPECT_MX:
        mt.check([c for _, c in b] == EXPECT_MX[name], '%s: mxgate answers %s (%s)'
                 % (name, EXPECT_MX[name], [c for _, c in b]))

# HELO names where the two read differently (documented): Haraka's valid_hostname wants a
# public suffix it knows and no trailing dot, takes a leading hyphen and a 64-octet label;
# mxgate checks RFC 5321/1035 syntax only
HELOS = [('mta.local', 550, 250), ('mta.example.invalidtld', 550, 250), ('mta.example.org.', 550, 250),
         ('-bad.example.org', 250, 501), ('x' * 64 + '.example.org', 250, 501),
         ('mta_x.example.org', 250, 250), ('a..b.example', 550, 501), ('mta.example.123', 550, 501)]
for i, (helo, want_h, want_m) in enumerate(HELOS):
    src = '198.18.7.%d' % (30 + i)      # one client each: rate_conn allows 3
    a = session(h.port, ['QUIT'], src, helo)[1:2]
    b = session(mx.port, ['QUIT'], src, helo)[1:2]
    mt.check(a == [('EHLO ' + helo, want_h)] and b == [('EHLO ' + helo, want_m)],
             'EHLO %s: Haraka %d, mxgate %d (%s %s)' % (helo[:24], want_h, want_m, a, b))

# the relay ACL: both relay for the relay_acl_allow network (mxgate reads Haraka's file as
# relay_networks) and refuse a client outside it
for src, want in (('198.18.50.2', 250), ('198.18.51.2', 550)):
    a = session(h.port, ['MAIL FROM:<n9@example.org>', 'RCPT TO:<u@other.example>', 'QUIT'], src)
    b = session(mx.port, ['MAIL FROM:<n9@example.org>', 'RCPT TO:<u@other.example>', 'QUIT'], src)
    mt.check(a[3] == ('RCPT TO:<u@other.example>', want) and b[3] == ('RCPT TO:<u@other.example>', want),
             'relay_acl_allow from %s: Haraka and mxgate %d: %s %s' % (src, want, a, b))
mt.check(mx.wait_log(r'event=relay rcpt=<u@other\.example> domain=other\.example relay=network client=198\.18\.50\.2'),
         'mxgate logs the relayed recipient with relay=network')

# dns-list and dnsbl: Haraka refuses a listed client at connect (554 to every command),
# mxgate greets it and refuses its MAIL (postscreen's way; documented)
lines = ['MAIL FROM:<n10@example.org>', 'QUIT']
a = session(h.port, lines, '198.18.66.5')
b = session(mx.port, lines, '198.18.66.5')
mt.check(a == [('connect', 554), ('EHLO mta.example.org', 554), ('MAIL FROM:<n10@example.org>', 554),
              ('QUIT', 221)] and b == [('connect', 220), ('EHLO mta.example.org', 250),
                                           ('MAIL FROM:<n10@example.org>', 550), ('QUIT', 221)],
         'a listed client: Haraka 554 at connect, mxgate 550 at MAIL (documented): %s %s' % (a, b))

# haproxy's "PROXY UNKNOWN" (its health checks with send-proxy, a source it cannot name):
# proxy-protocol.txt 2.1 says to take the connection's own addresses; Haraka refuses it
got = {}
for port, who in ((h.port, 'Haraka'), (mx.port, 'mxgate')):
    s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(10))
    s.sendall(b'PROXY UNKNOWN\r\n')
    got[who] = s.recv(200)[:3]
    s.close()
mt.check(got == {'Haraka': b'421', 'mxgate': b'220'},
         'PROXY UNKNOWN: Haraka 421 Invalid PROXY format, mxgate greets (documented): %s' % got)

# concurrency: two sessions held open, the third refused at connect by both
for port, who in ((h.port, 'Haraka'), (mx.port, 'mxgate')):
    held = []
    for _ in range(2):
        s = socket.create_connection(('127.0.0.1', port), timeout=mt.slack(10))
        s.sendall(b'PROXY TCP4 198.18.9.9 127.0.0.1 40000 %d\r\n' % port)
        held.append((s, s.recv(200)))
    third = session(port, ['QUIT'], '198.18.9.9')

    def open_count():
        return (int(mt.redis_cmd(redis.port, 'GET', 'concurrency|198.18.9.9') or 0) if who == 'Haraka' else
                mt.redis_cmd(redis.port, 'ZCARD', 'mxgate:rl:concurrency:ip:198.18.9.9'))
    # Haraka counts the refused connection too until its disconnect hook: 3 for a moment
    mt.wait_for(lambda: open_count() == 2, 5)
    mt.check(open_count() == 2, 'concurrency: %s counts the two sessions open, not the refused one (%r)'
             % (who, open_count()))
    mt.check(all(g.startswith(b'220 ') for _, g in held) and third == [('connect', 421)],
             'concurrency 2: %s greets two sessions from one client and refuses the third (%s)' % (who, third))
    for s, _ in held:
        s.close()
# the limits' counts once those sessions ended: Haraka's counter back to 0, mxgate's set empty
mt.check(mt.wait_for(lambda: int(mt.redis_cmd(redis.port, 'GET', 'concurrency|198.18.9.9') or 0) == 0 and
                     mt.redis_cmd(redis.port, 'ZCARD', 'mxgate:rl:concurrency:ip:198.18.9.9') == 0, 5),
         'concurrency: both counts back to 0 when the sessions end (Haraka %r, mxgate %r)'
         % (mt.redis_cmd(redis.port, 'GET', 'concurrency|198.18.9.9'),
            mt.redis_cmd(redis.port, 'ZCARD', 'mxgate:rl:concurrency:ip:198.18.9.9')))
# Haraka's disconnect line keeps the reply (lr="421 Too many concurrent connections"); mxgate's
# refusal line has it, as every other refusal's line (docs/operations.md: code, reply)
mt.check(mx.wait_log(r'event=tempfail stage=connect reason=ratelimit client=198\.18\.9\.9 code=421 '
                     r'reply="4\.7\.0 rate limit exceeded for ip 198\.18\.9\.9: 2, try again later"', 5),
         'the refusal at connect is logged with its code and reply: %s'
         % re.findall(r'.*event=tempfail stage=connect reason=ratelimit client=198\.18\.9\.9.*', mx.log())[-1:])

# what reaches the backends: the one delivered message, the same body below the trace line
time.sleep(0.5)
mh, mm = sink_h.messages(), sink_m.messages()
mt.check(len(mh) == 1 and len(mm) == 1, 'one message at each backend (Haraka %d, mxgate %d)' % (len(mh), len(mm)))
if len(mh) == 1 and len(mm) == 1:
    def below_trace(m):
        return m['data'].split(b'\nFrom: ', 1)[-1]
    mt.check(below_trace(mh[0]) == below_trace(mm[0]) and mh[0]['rcpts'] == mm[0]['rcpts'],
             'the same message and recipients at both backends')
    mt.check(b'[198.18.7.1]' in mm[0]['data'].split(b'\nFrom: ')[0],
             "mxgate's Received: names the client haproxy named, as Haraka's does")

# the same rate limit, the same count: smtp-source (no PROXY header) into both, 20 messages
# in 4 sessions, 10 recipients a minute for the client
h2 = Haraka({'host_list': 'example.test\n',
             'smtp_forward.ini': 'host=127.0.0.1\nport=%d\nenable_outbound=false\nenable_tls=false\n' % sink_h.port,
             'limit.ini': '[main]\ntarpit_delay=0\n[redis]\nhost=127.0.0.1\nport=%d\ndatabase=6\n'
                          '[rate_rcpt_sender]\nenabled=true\ndefault=10/10m\n' % redis.port},
            ['limit', 'rcpt_to.in_host_list', 'queue/smtp_forward'], name='haraka-plain', haproxy=False)
mx2 = mt.Mxgate(mt.config([sink_m.url], accept_domains=['example.test'],
                          ratelimit={'store': 'redis://127.0.0.1:%d/7' % redis.port, 'rules': [
                              {'key': 'sender', 'count': 'recipients', 'limit': '10/10m'}]}), 'mx-plain')
h2.wait_redis()
mt.wait_for(lambda: 'Hello' in mt.swaks(h2.port, '--quit-after', 'EHLO').stdout, 30, 0.5)
got = {}


def bulk(sink):
    return sum(1 for m in sink.messages() if m['attrs'].get('X-Mail-Args') == '<bulk@example.org>')


for port, who, sink in ((h2.port, 'Haraka', sink_h), (mx2.port, 'mxgate', sink_m)):
    p = mt.smtp_source(port, '-s', '1', '-m', '20', '-f', 'bulk@example.org', '-t', 'u@example.test')
    mt.wait_for(lambda: bulk(sink) >= 10, 5)
    got[who] = (bulk(sink), p.stderr.strip().splitlines()[-1:])
    sw = mt.swaks(port, '--from', 'bulk@example.org', '--to', 'u@example.test')
    got[who] += (sw.returncode, re.findall(r'<\*\* (\d{3})', sw.stdout)[:1])
mt.check(got['Haraka'][0] == got['mxgate'][0] == 10 and got['Haraka'][2] == got['mxgate'][2] != 0 and
         got['Haraka'][3] == ['450'] and got['mxgate'][3] == ['451'],
         'rate_rcpt_sender 10/10m: ten messages through from each, the eleventh and a swaks retry 4xx: %s' % got)

# a client that resets its connection (smtp-source's other sessions when one fails, a scanner)
c = socket.create_connection(('127.0.0.1', mx.port))
c.sendall(b'PROXY TCP4 198.18.9.20 127.0.0.1 40000 %d\r\nEHLO rst.example.org\r\n' % mx.port)
c.settimeout(mt.slack(10))
buf = b''
while not re.search(rb'(^|\n)250 ', buf):
    more = c.recv(4096)
    if not more:
        break
    buf += more
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
c.close()
mt.check(mx.wait_log(r'event=disconnect client=198\.18\.9\.20 .*reason=ECONNRESET', 5) is not None,
         'a reset connection: its disconnect line says reason=ECONNRESET (%s)'
         % re.findall(r'.*client=198\.18\.9\.20 .*', mx.log())[-1:])

# the log: one disconnect for every session, every line key=value
time.sleep(0.5)
log = mx.log()
connects = re.findall(r'^\S+ \S+ (\S+) event=connect ', log, re.M)
disconnects = re.findall(r'^\S+ \S+ (\S+) event=disconnect ', log, re.M)
twice = sorted({s for s in disconnects if disconnects.count(s) > 1})
mt.check(sorted(connects) == sorted(disconnects) and not twice,
         'one event=disconnect line per session (%d connects, %d disconnects; twice: %s)'
         % (len(connects), len(disconnects), [l for l in log.splitlines() if twice and twice[0] in l
                                               and 'event=disconnect' in l]))
m = re.search(r'event=disconnect client=198\.18\.8\.2 commands=\d+ messages=0 errors=3 ms=\d+ reason=too_many_errors',
              log)
mt.check(m is not None, 'the session ended by limits.max_errors: its figures and reason=too_many_errors on one line')
bad = mx.malformed_log_lines()
mt.check(not bad, 'every log line is key=value (%s)' % bad[:3])
mt.finish()
