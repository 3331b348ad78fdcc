#!/usr/bin/env python3
"""A Redis ACL user in the store URL (redis://USER:PASSWORD@host:port, Redis 6+): the limits'
store authenticates as that user (AUTH USER PASSWORD). Before, the user name was dropped and
AUTH PASSWORD went to the default user: refused (WRONGPASS), the store stayed down and every
limit fell back to each node's local table, while `mxgate -t` had accepted the URL. The
password alone (requirepass) still authenticates the default user."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('redis-server')
port = mt.hold_port().port
red = mt.start_peer([mt.tool('redis-server'), '--bind', '127.0.0.1', '--port', str(port), '--save', '',
                     '--appendonly', 'no', '--requirepass', 'defaultpw',
                     '--user', 'mxgate', 'on', '>s3cret', '~mxgate:*', '+@all'], 'redis-acl', port)
be = mt.Backend()


def node(url, name):
    return mt.Mxgate(mt.proxied_config([be.url], workers=1, ratelimit={'store': url, 'rules': [
        {'key': 'ip', 'count': 'messages', 'limit': '1/1h'}]}), name)


for url, name in (('redis://mxgate:s3cret@127.0.0.1:%d' % port, 'acl-user'),
                  ('redis://:defaultpw@127.0.0.1:%d' % port, 'default-user')):
    n = node(url, name)
    src = '198.18.76.1' if name == 'acl-user' else '198.18.76.2'
    codes = [mt.send_mail(n.port, 'a@example.org', ['b@example.test'], mt.message('%s%d' % (name, i)),
                          proxy_src=src)[0] for i in range(2)]
    mt.check(codes == [250, 451] and n.count_log(r'event=ratelimit .* store=redis client=') == 1,
             '%s: the limit is decided by Redis: %s' % (name, codes))
    mt.check(n.count_log(r'event=redis_(down|error) ') == 0, '%s: no Redis error logged' % name)
    mt.check('s3cret' not in n.log() and 'defaultpw' not in n.log(), '%s: no password in the log' % name)
    n.stop()
n = node('redis://mxgate:wrong@127.0.0.1:%d' % port, 'wrong')
mt.check(n.wait_log(r'event=redis_down .*reason=handshake_failed', 10) is not None, 'a wrong password: handshake_failed')
n.stop()
mt.finish()
