#!/usr/bin/env python3
"""The scanners' host names follow the DNS while running (test_plugin_dns.py does the
milter's): real clamd, spamd and rspamd, each reached by a name of its own in a real DNS
server's zone (dns_peer.py, TTL 1 s), and all three in one chain (on_error tempfail: a scan
that fails is a 451, never a 250).

Each peer listens on 127.0.0.2 only; the names first have 127.0.0.1, where a forwarder per
peer (on the peer's port) passes the connections on to it and counts them: the first
message's three scans go through the forwarders (one connection each). The names move to
127.0.0.2 (event=backend_addrs_changed plugin=clamd|spamd|rspamd): the next messages are
scanned with no new connection to 127.0.0.1, so by the peers at their new address — a
clean one delivered (250), EICAR refused with clamd's answer (our signature's name), a
Subject rspamd's test rule refuses with its text, GTUBE scored by spamd. A scanner
keeps no connection between scans (one per scan: plugins/scanner.h), so none to the old
address is left open."""
import os
import re
import socket
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

ROOT = os.environ.get('MX_RSPAMD_ROOT', '/opt/mxgate-peers/rspamd')
mt.need('clamd', 'spamd', ROOT + '/usr/bin/rspamd', 'openssl', 'redis-server')
HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL = os.path.join(os.path.dirname(HERE), 'peers', 'rspamd')
NAMES = {'clamd': 'clamd.scan.k8s.test', 'spamd': 'spamd.scan.k8s.test', 'rspamd': 'rspamd.scan.k8s.test'}
EICAR = r'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'


def zone(addr):
    return {n: [{'a': addr}, {'ttl': 1}] for n in NAMES.values()}


def listening(host, port):
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


def start_rspamd(host):
    """rspamd's normal worker on host (its milter workers on 127.0.0.1, unused here), the
    suite's local configuration (tests/peers/rspamd), as test_rspamd_real.py starts it."""
    normal, milter, milter2 = mt.hold_port().port, mt.hold_port().port, mt.hold_port().port
    redis = mt.redis()
    d = os.path.join(mt.TMP, 'rspamd')
    for sub in ('db', 'run', 'log'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    subprocess.run(['openssl', 'genrsa', '-out', os.path.join(d, 'db', 'example.org.mxtest.key'), '2048'],
                   check=True, capture_output=True)
    with open(os.path.join(LOCAL, 'rspamd.conf')) as f:
        conf = f.read()
    mt.check('"127.0.0.1:${NORMAL_PORT}"' in conf, 'rspamd.conf binds its normal worker as expected')
    conf = conf.replace('"127.0.0.1:${NORMAL_PORT}"', '"%s:${NORMAL_PORT}"' % host)
    cf = os.path.join(d, 'rspamd.conf')
    with open(cf, 'w') as f:
        f.write(conf)
    share = ROOT + '/usr/share/rspamd'
    var = {'CONFDIR': ROOT + '/etc/rspamd', 'LOCAL_CONFDIR': LOCAL, 'RULESDIR': share + '/rules',
           'LUALIBDIR': share + '/lualib', 'PLUGINSDIR': share + '/plugins', 'SHAREDIR': share,
           'WWWDIR': share + '/www', 'DBDIR': d + '/db', 'RUNDIR': d + '/run', 'LOGDIR': d + '/log',
           'NORMAL_PORT': normal, 'MILTER_PORT': milter, 'MILTER2_PORT': milter2, 'DNS_PORT': mt.dead_port(),
           'REDIS_PORT': redis.port}
    argv = ['env', 'LD_LIBRARY_PATH=' + ROOT + '/usr/lib/rspamd', ROOT + '/usr/bin/rspamd', '-f', '-i',
            '-c', cf] + ['--var=%s=%s' % kv for kv in var.items()]
    return mt.start_peer(argv, 'rspamd', normal, timeout=mt.slack(60), host=host)


dns = mt.dns_peer(zone('127.0.0.1'), name='dns-scanners')
peers = {'clamd': mt.clamd(host='127.0.0.2'), 'spamd': mt.spamd(host='127.0.0.2'), 'rspamd': start_rspamd('127.0.0.2')}
for kind, p in peers.items():
    mt.check(not listening('127.0.0.1', p.port), '%s listens on 127.0.0.2 only' % kind)
# the old address: a forwarder on each peer's port of 127.0.0.1, counting connections
fwd = {kind: mt.TcpForwarder(p.port, target_host='127.0.0.2', port=p.port) for kind, p in peers.items()}

be = mt.Backend()
rules = os.path.join(mt.TMP, 'none.rules')   # the rules engine with no rules of its own
with open(rules, 'w') as f:
    f.write('# only the plugins score\n')
plugins = [
    {'name': 'clamd', 'address': '%s:%d' % (NAMES['clamd'], peers['clamd'].port), 'on_error': 'tempfail',
     'timeout': '%gs' % mt.slack(30)},
    {'name': 'spamd', 'address': '%s:%d' % (NAMES['spamd'], peers['spamd'].port), 'on_error': 'tempfail',
     'timeout': '%gs' % mt.slack(60)},
    {'name': 'rspamd', 'address': '%s:%d' % (NAMES['rspamd'], peers['rspamd'].port), 'on_error': 'tempfail',
     'timeout': '%gs' % mt.slack(30), 'options': {'use_action': True}},
]
mx = mt.Mxgate(mt.config([be.url], workers=1, backends={'resolve_interval': '2s'},
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                         plugins=plugins, rules={'files': [rules], 'actions': {'add_header': 5, 'reject': 500}}),
               name='mx-scanners-dns')


def send(tag, body='Hello.\r\n'):
    """One message; its Subject is 'test TAG' (rspamd's test rule reads a word of it)."""
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag, body=body),
                        timeout=mt.slack(90))


def counts():
    return {kind: f.accepted for kind, f in fwd.items()}


code, text = send('first')
mt.check(code == 250 and be.by_tag('first'), 'first: scanned and delivered (%s %s)' % (code, text))
mt.check(counts() == {'clamd': 1, 'spamd': 1, 'rspamd': 1},
         'first: each scan went to 127.0.0.1 (the forwarders\' connections: %s)' % counts())

start = mx.log_size()
dns.set_zone(zone('127.0.0.2'))
for kind, name in NAMES.items():
    mt.check(mx.wait_log(r'event=backend_addrs_changed plugin=%s name=%s addrs=127\.0\.0\.2 ttl=1'
                         % (kind, re.escape(name)), 30, start) is not None,
             'moved: %s\'s new address logged:\n%s' % (kind, mx.tail()))

code, text = send('second')
mt.check(code == 250 and be.by_tag('second'), 'moved: a clean message scanned and delivered (%s %s)' % (code, text))
code, text = send('eicar', body=EICAR + '\r\n')
mt.check(code == 554 and 'MxGate.Test.EICAR' in text and not be.by_tag('eicar'),
         'moved: EICAR refused with clamd\'s answer, our signature\'s name (%s %s)' % (code, text))
code, text = send('FORCE-REJECT')
mt.check(code == 550 and 'mxtest says no' in text and not be.by_tag('FORCE-REJECT'),
         'moved: rspamd\'s test rule refused it (%s %s)' % (code, text))
code, text = send('gtube', body=mt.GTUBE + '\r\n')
spamd_scores = [float(x) for x in re.findall(r'event=spamd_result plugin=\S+ score=([-0-9.]+)', mx.log())]
mt.check(code is not None and code // 100 == 5 and not be.by_tag('gtube') and spamd_scores and max(spamd_scores) >= 500,
         'moved: GTUBE refused, spamd at its new address scoring it (%s %s; scores %s)' % (code, text, spamd_scores))
mt.check(counts() == {'clamd': 1, 'spamd': 1, 'rspamd': 1},
         'moved: no scan went to 127.0.0.1 any more (the forwarders\' connections: %s)' % counts())
mt.check(not mx.malformed_log_lines(), 'log lines well formed: %s' % mx.malformed_log_lines()[:3])
mt.finish()
