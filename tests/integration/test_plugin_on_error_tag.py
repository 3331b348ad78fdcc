#!/usr/bin/env python3
"""on_error: tag — "scanner down: deliver, but marked" (Amavis passes a message on when
SpamAssassin fails, and a site that lets mail through while ClamAV is down wants to see
which messages were not scanned). A clamd and a milter that are down, and a spamd that never
answers, with on_error: tag: the message is relayed with one `X-Mxgate-Filter-Error: NAME;
stage=STAGE; error=WHY` per filter that failed (once, though a milter that failed at MAIL
answers on_error at every later stage), logged on_error=tag. A filter that works adds none.
limits.filter_deadline_action: tag does the same for the filter given up at the deadline."""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()

down = t.hold_port().port               # held, never listening: connection refused
silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # spamd that accepts and never answers
silent.bind(('127.0.0.1', 0))
silent.listen(16)
held = []
threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(16)], daemon=True).start()
good = t.milter(stall=10)
be = t.Backend()
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'clamd', 'address': '127.0.0.1:%d' % down, 'on_error': 'tag', 'timeout': '5s'},
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % down, 'on_error': 'tag', 'timeout': '5s'},
    {'name': 'spamd', 'address': '127.0.0.1:%d' % silent.getsockname()[1], 'on_error': 'tag',
     'timeout': '%ds' % t.slack(1)},
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % good.port, 'on_error': 'tag', 'timeout': '5s'}])
mx = t.Mxgate(cfg)
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test', 'c@example.test'], t.message('tag1', 'hello\r\n'),
                timeout=t.slack(30))
got = be.find('Message-ID: <tag1@')
data = got[0]['data'] if got else b''
data = data.replace(b'\r\n ', b' ').replace(b'\r\n\t', b' ')   # unfolded
tags = [ln for ln in data.split(b'\n') if ln.startswith(b'X-Mxgate-Filter-Error:')]
t.check(r.code == 250 and len(got) == 1, 'relayed although three filters failed: %s %s' % (r.code, r.text))
t.check(len(tags) == 3, 'one header per failed filter, no more: %s' % tags)
t.check(any(ln.startswith(b'X-Mxgate-Filter-Error: clamd; stage=eom; error=') for ln in tags),
        'clamd named, at end of data')
t.check(b'X-Mxgate-Filter-Error: milter; stage=mail; error=milter-unreachable:ECONNREFUSED' in [x.rstrip(b'\r') for x in tags],
        'the milter that is down named, at MAIL (where it reconnected and failed again), with why: %s' % tags)
t.check(any(ln.startswith(b'X-Mxgate-Filter-Error: spamd; stage=eom; error=timeout') for ln in tags),
        'spamd that never answered: error=timeout')
t.check(b'X-Test-Milter: passed' in data, 'the milter that works still filtered it')
t.check(mx.count_log(r'event=plugin_error plugin=clamd stage=eom error=\S+ on_error=tag') == 1, 'logged on_error=tag')
t.check(mx.count_log(r'event=plugin_error plugin=milter stage=mail error=milter-unreachable:ECONNREFUSED on_error=tag') >= 1,
        'the milter error logged with why')
mx.stop()

# a milter that accepts, reads our first command and closes unanswered: error=milter-closed
closer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
closer.bind(('127.0.0.1', 0))
closer.listen(16)


def close_all():
    while True:
        conn, _ = closer.accept()
        conn.settimeout(5)
        try:
            conn.recv(4096)     # the option negotiation: read, so the close is a FIN, not a reset
        except OSError:
            pass
        conn.close()


threading.Thread(target=close_all, daemon=True).start()
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % closer.getsockname()[1], 'on_error': 'tag', 'timeout': '5s'}])
mx = t.Mxgate(cfg, name='mx-closed')
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('tag4', 'hello\r\n'), timeout=t.slack(30))
got = be.find('Message-ID: <tag4@')
t.check(r.code == 250 and got and b'X-Mxgate-Filter-Error: milter; stage=mail; error=milter-closed' in got[0]['data'],
        'a milter that closed the connection: error=milter-closed: %s %s' % (r.code, got and got[0]['data'][:300]))
mx.stop()

# a working chain: no header at all
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % good.port, 'on_error': 'tag', 'timeout': '5s'}])
mx = t.Mxgate(cfg, name='mx-good')
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('tag2', 'hello\r\n'))
got = be.find('Message-ID: <tag2@')
t.check(r.code == 250 and got and b'X-Mxgate-Filter-Error' not in got[0]['data'], 'nothing failed: no header')
mx.stop()

# the deadline's tag
slow = t.milter(stall=t.slack(3))
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % slow.port, 'on_error': 'tempfail',
     'timeout': '%ds' % t.slack(5)}])
cfg.setdefault('limits', {}).update({'filter_deadline': '%ds' % t.slack(1), 'filter_deadline_action': 'tag'})
mx = t.Mxgate(cfg, name='mx-deadline')
r = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], t.message('tag3', 'SLOWME\r\n'), timeout=t.slack(30))
got = be.find('Message-ID: <tag3@')
t.check(r.code == 250 and got and b'X-Mxgate-Filter-Error: milter; stage=eom; error=deadline' in got[0]['data'],
        'filter_deadline_action tag: relayed, the milter given up named: %s %s' % (r.code, r.text))
mx.stop()
t.finish()
