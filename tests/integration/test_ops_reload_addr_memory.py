#!/usr/bin/env python3
"""A reload keeps what the pool learnt about a server's addresses when the server (its URL:
name and port) stays: the address that last took a connection, and the ones passed over for
60 s after they could not be connected to (backend.h, BACKEND_ADDR_RETRY_MS). Before the fix
every reload forgot it: the first connections after each reload went to the dead first
address again (a host that drops SYNs costs connect_timeout there, per reload; a reload storm
made the 60 s memory worthless), logged event=backend_address_failed anew.

- a server named by a name whose first address drops SYNs (127.0.0.2: a listener whose
  accept queue is full) and second answers: the start's probe learns it; after a reload of
  the same server (another key changed), a message sent at once is not held by the first
  address (no event=backend_address_failed: a try there would cost connect_timeout, then fail);
- a reload that changes the server's port: the memory is the old server's, not carried.
"""
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
dns = mt.dns_peer({'two.mem.test': [{'a': '127.0.0.2'}, {'a': '127.0.0.1'}, {'in_order': True}]},
                  name='dns-addr-memory')
b = mt.Backend(name='M1')          # 127.0.0.1 only: 127.0.0.2 refuses
b2 = mt.Backend(name='M2')
CONNECT = 3


def syn_hole(port):
    """127.0.0.2:port drops SYNs: its listener's accept queue (listen(0)) is full."""
    ls = socket.socket()
    ls.bind(('127.0.0.2', port))
    ls.listen(0)
    filler = socket.socket()
    filler.connect(('127.0.0.2', port))
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(('127.0.0.2', port))
        mt.fail('127.0.0.2:%d should drop SYNs (a full accept queue)' % port)
    except OSError:
        pass
    probe.close()
    return ls, filler


holes = [syn_hole(b.port), syn_hole(b2.port)]


def send(mx, tag):
    return mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message(tag)).code


def cfg_for(port, hostname='mx.test'):
    return mt.config(['smtp://two.mem.test:%d' % port], workers=1, hostname=hostname,
                     dns={'resolvers': ['127.0.0.1:%d' % dns.port], 'timeout': '5s', 'tries': 1},
                     backends={'connect_timeout': '%ds' % CONNECT,
                               'health_check': {'interval': '30s', 'timeout': '%ds' % (CONNECT * 3)}})


FAILED = r'event=backend_address_failed backend=smtp://two\.mem\.test:%d address=127\.0\.0\.2 '
mx = mt.Mxgate(cfg_for(b.port), name='mx-addr-memory')
mt.check(mx.wait_log(r'event=ready generation=1 backends_up=yes', 20) is not None, 'started\n%s' % mx.tail())
codes = [send(mx, 'before%d' % i) for i in range(3)]
mt.check(codes == [250] * 3, 'before: delivered (%s)' % codes)
before = mx.count_log(FAILED % b.port)
mt.check(before <= 1, 'before: the refusing address is tried once at most (%d)' % before)

for n in (2, 3):
    mark = mx.log_size()
    mx.reload(cfg_for(b.port, hostname='mx%d.test' % n))
    mt.check(mx.wait_log(r'event=reloaded generation=%d' % n, 10, mark) is not None, 'reload %d\n%s' % (n, mx.tail()))
    codes = [send(mx, 'after%d-%d' % (n, i)) for i in range(3)]
    mt.check(codes == [250] * 3, 'after reload %d: delivered (%s)' % (n, codes))
    # a try of the dead address would have cost connect_timeout and logged its failure before
    # the message went to the next address: the count shows it, the clock is not needed
    tried = mx.count_log(FAILED % b.port, mark)
    mt.check(tried == 0, 'after reload %d: the address passed over stays passed over (%d tries of 127.0.0.2)\n%s'
             % (n, tried, mx.tail()))

# another port: another server, learnt afresh (a connection or probe meets 127.0.0.2 again)
mark = mx.log_size()
mx.reload(cfg_for(b2.port))
mt.check(mx.wait_log(r'event=reloaded generation=4', 10, mark) is not None, 'reload 4\n%s' % mx.tail())
codes = [send(mx, 'other%d' % i) for i in range(2)]
mt.check(codes == [250] * 2, 'another port: delivered (%s)' % codes)
mt.check(mt.wait_for(lambda: mx.count_log(FAILED % b2.port, mark) >= 1, CONNECT + 2),
         'another port: not carried over, 127.0.0.2 met again\n%s' % mx.tail())
mx.stop()
for ls, filler in holes:
    filler.close()
    ls.close()
mt.finish()
