#!/usr/bin/env python3
"""A filter peer's host name follows the DNS while running, as the backends' do
(test_backend_dns.py), and idle pooled backend connections to an address that left are closed
without waiting for a message. Against a real DNS server (dns_peer.py) on 127.0.0.1, two
milters (tests/peers/mx_milter_ops.py, python3-milter: A on 127.0.0.1, B on 127.0.0.2, one
port) reached by one name, and two backends (A on 127.0.0.1, B on 127.0.0.2) by another:

- both names move to 127.0.0.2 in the zone (TTL 1 s): mxgate resolves them again, logs
  event=backend_addrs_changed plugin=milter for the milter's and backend=URL for the
  backend's; the idle pooled connection to the old backend is closed with no message sent
  (event=backend_pool_dropped reason="address no longer resolved"): before, only when a
  message next opened one, and the milter's name was resolved once per load (every message
  kept meeting the old milter until a reload);
- the next message is filtered by milter B (X-Seen-B) and lands on backend B;
- a session opened before the move, whose milter connection went to A, sends its next
  message after it: filtered by milter B (event=milter_reconnect reason=address_left, the
  connection to A ended with QUIT); before, the session kept meeting milter A until it
  ended (and a transaction failed with the milter's on_error once A was gone);
- the milter's name vanishes (NXDOMAIN): event=backend_resolve_failed plugin=milter, once,
  the last address kept: mail still goes through milter B.
"""
import os
import re
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
mt.need_python_milter()
# longer than 63 octets, as a pod of a headless Service is (63 was the limit before)
MILTER = 'mx-milter-0.mx-milter-headless.mail-filtering-prod.svc.cluster.k8s.test'
MTA = 'mta.k8s.test'
dns = mt.dns_peer({MILTER: [{'a': '127.0.0.1'}, {'ttl': 1}], MTA: [{'a': '127.0.0.1'}, {'ttl': 1}]},
                  name='dns-plugin')


def listening(host, port):
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


ops = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'peers', 'mx_milter_ops.py')
mport = mt.hold_port().port
milter_a = mt.start_peer(['/usr/bin/python3', ops, 'inet:%d@127.0.0.1' % mport, 'A'], 'dns-milter-A', mport)
milter_b = mt.spawn(['/usr/bin/python3', ops, 'inet:%d@127.0.0.2' % mport, 'B'], 'dns-milter-B')
if not mt.wait_for(lambda: listening('127.0.0.2', mport) or milter_b.poll() is not None, 20) or \
        not listening('127.0.0.2', mport):
    mt.peer_failed('dns-milter-B', 'milter B did not listen on 127.0.0.2:%d' % mport)

a = mt.Backend(name='A')
b = mt.Backend(name='B', host='127.0.0.2', port=a.port)
mx = mt.Mxgate(mt.config(['smtp://%s:%d' % (MTA, a.port)], workers=1,
                         backends={'resolve_interval': '2s'},
                         dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '1s', 'tries': 1},
                         plugins=[{'name': 'milter', 'address': 'inet:%s:%d' % (MILTER, mport),
                                   'on_error': 'tempfail', 'timeout': '%gs' % mt.slack(10)}],
                         metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port}), name='mx-plugin-dns')
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 30) is not None, 'ready:\n' + mx.tail())


def send(tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag)).code


def seen(backend, tag, milter):
    """How many of the messages tagged tag on backend milter filtered (its X-Seen header)."""
    return len([m for m in backend.messages
                if tag.encode() in m['data'] and b'X-Seen-%s:' % milter.encode() in m['data']])


mt.check(send('first') == 250 and seen(a, 'first', 'A') == 1, 'first: milter A, backend 127.0.0.1')
# a session kept across the move: its milter connection goes to A
held = mt.Client(mx.port, timeout=30)
mt.check(held.ehlo()[0] == 250 and held.transaction('held1') == [250, 250, 354, 250] and
         seen(a, 'held1', 'A') == 1, 'held: a session\'s first message filtered by milter A')

# The pods move: both names now have 127.0.0.2.
start = mx.log_size()
dns.set_zone({MILTER: [{'a': '127.0.0.2'}, {'ttl': 1}], MTA: [{'a': '127.0.0.2'}, {'ttl': 1}]})
mt.check(mx.wait_log(r'event=backend_addrs_changed plugin=milter name=%s addrs=127\.0\.0\.2 ttl=1' % re.escape(MILTER),
                     30, start) is not None, 'changed: the milter\'s new address logged:\n' + mx.tail())
mt.check(mx.wait_log(r'event=backend_addrs_changed backend=smtp://%s:%d name=%s addrs=127\.0\.0\.2'
                     % (re.escape(MTA), a.port, re.escape(MTA)), 30, start) is not None,
         'changed: the backend\'s new address logged:\n' + mx.tail())
# no message sent: the sweep alone closes the idle connection to 127.0.0.1
mt.check(mx.wait_log(r'event=backend_pool_dropped backend=smtp://%s:%d connections=1 '
                     r'reason="address no longer resolved"' % (re.escape(MTA), a.port), 30, start) is not None,
         'changed: the idle connection to 127.0.0.1 closed without a message:\n' + mx.tail())
mt.check(send('second') == 250 and seen(b, 'second', 'B') == 1 and seen(b, 'second', 'A') == 0,
         'changed: the next message is filtered by milter B (A %d, B %d) and lands on 127.0.0.2'
         % (seen(b, 'second', 'A') + seen(a, 'second', 'A'), seen(b, 'second', 'B')))



def seen_any(tag, milter):
    return seen(a, tag, milter) + seen(b, tag, milter)


codes = held.transaction('held2')
mt.check(codes == [250, 250, 354, 250] and seen_any('held2', 'B') == 1 and seen_any('held2', 'A') == 0,
         'held: the session\'s next message after the move is filtered by milter B (%s; A %d, B %d)'
         % (codes, seen_any('held2', 'A'), seen_any('held2', 'B')))
mt.check(mx.count_log(r'event=milter_reconnect plugin=milter reason=address_left', start) == 1,
         'held: the session reconnected once, to the new address:\n' + mx.tail())
held.cmd('QUIT')

# The milter's name vanishes (NXDOMAIN): the last address stays.
start = mx.log_size()
dns.set_zone({MTA: [{'a': '127.0.0.2'}, {'ttl': 1}]})
mt.check(mx.wait_log(r'event=backend_resolve_failed plugin=milter name=%s reason="cannot resolve host: no such '
                     r'name[^"]*" addrs=127\.0\.0\.2' % re.escape(MILTER), 30, start) is not None,
         'nxdomain: logged, the last address kept:\n' + mx.tail())
mt.check(send('third') == 250 and seen(b, 'third', 'B') == 1, 'nxdomain: mail still goes through milter B')
mt.check(mx.count_log(r'event=backend_resolve_failed', start) == 1,
         'nxdomain: backend_resolve_failed logged once while the name fails:\n' + mx.tail())
mt.check(not mx.malformed_log_lines(), 'log lines well formed: %s' % mx.malformed_log_lines()[:3])
mt.finish()
