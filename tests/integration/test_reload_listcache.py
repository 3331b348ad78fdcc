#!/usr/bin/env python3
"""test_reload_listcache — a reload takes the `file:` lists that did not change as the last
load read them, without reading them (proxy/listfile.c), and reads those that changed:

  - files older than the settle time (2 s, LISTFILE_SETTLE_NS) and unchanged: the reload logs
    `event=list_file path=P action=kept` for each (debug level), no `action=read`, and every
    answer stays (accept_domains from one file, relay_networks, a list of CIDRs, from another);
  - each file edited in place to the same size with its mtime put back to the nanosecond (as
    `cp -p` onto it does; the same second too): both read again (`action=read`), the answers
    follow the new texts;
  - a bad line in the CIDR file: event=reload_failed, and the running lists stay.

The wait for the files to be older than the settle time watches the file system's own clock
(a file touched until its ctime is 2 s past theirs), the state the daemon judges by. Peers:
smtp-sink."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink(name='sink-listcache')
SETTLE_NS = 2000000000


def write(name, text):
    path = os.path.join(mt.TMP, name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def rewrite_keeping_mtime(path, text):
    """text into path in place (the same inode and, here, size), the mtime put back."""
    st = os.stat(path)
    with open(path, 'r+') as f:
        f.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.stat(path)
    return now.st_size == st.st_size and now.st_mtime_ns == st.st_mtime_ns and now.st_ino == st.st_ino


accept = write('accept', 'cust1.example\n')
nets = write('nets', '192.0.2.0/24\n')


def cfg():
    return mt.config([sink.url], accept_domains=['file:' + accept], relay_networks=['file:' + nets],
                     log={'level': 'debug'})


def answers(port):
    """RCPT codes from 127.0.0.1: a customer of each text; and from 127.0.0.3 to a domain
    outside accept_domains (relayed only when 127.0.0.3 is in relay_networks)."""
    got = {rcpt: mt.send_mail(port, 'a@example.org', ['u@' + rcpt], mt.message(rcpt), timeout=30)[0]
           for rcpt in ('cust1.example', 'cust2.example')}
    got['outside.example'] = mt.send_mail(port, 'a@example.org', ['u@outside.example'], mt.message('o'),
                                          source='127.0.0.3', timeout=30)[0]
    return got


def reload_to(mx, gen):
    start = mx.log_size()
    mx.reload(cfg())
    ok = mx.wait_log(r'event=reloaded generation=%d' % gen, timeout=mt.slack(30), start=start) is not None
    return ok, mx.log()[start:]


def settle(paths):
    """Waits until the file system's clock is past the settle time after every path's ctime:
    a probe file's ctime, touched again each turn, says where that clock is."""
    newest = max(os.stat(p).st_ctime_ns for p in paths)
    probe = os.path.join(mt.TMP, 'clock-probe')

    def past():
        with open(probe, 'w') as f:
            f.write('x')
        return os.stat(probe).st_ctime_ns > newest + SETTLE_NS
    return mt.wait_for(past, timeout=30)


mx = mt.Mxgate(cfg(), 'mx-listcache')
first = answers(mx.port)
mt.check(first == {'cust1.example': 250, 'cust2.example': 550, 'outside.example': 550},
         'answers at start: %s' % first)

mt.check(settle([accept, nets]), 'the list files are older than the settle time')
ok, _ = reload_to(mx, 2)     # reads what the start read too soon after it was written
mt.check(ok, 'a reload after the files settled: generation 2')
ok, log = reload_to(mx, 3)
mt.check(ok, 'a reload with nothing changed: generation 3')
for path in (accept, nets):
    mt.check('event=list_file path=%s action=kept' % path in log,
             'unchanged %s is kept, not read again' % os.path.basename(path))
mt.check('action=read' not in log, 'no list file read by the unchanged reload')
got = answers(mx.port)
mt.check(got == first, 'the unchanged reload keeps every answer (%s)' % got)

mt.check(rewrite_keeping_mtime(accept, 'cust2.example\n'), 'accept_domains\' file edited in place, '
         'the same size and mtime')
mt.check(rewrite_keeping_mtime(nets, '127.0.0.3/32\n'), 'relay_networks\' file edited in place, '
         'the same size and mtime')
ok, log = reload_to(mx, 4)
mt.check(ok, 'a reload after the edits: generation 4')
for path in (accept, nets):
    mt.check('event=list_file path=%s action=read' % path in log,
             'edited %s is read again' % os.path.basename(path))
got = answers(mx.port)
mt.check(got == {'cust1.example': 550, 'cust2.example': 250, 'outside.example': 250},
         'the answers follow the edited texts (cust2 accepted, 127.0.0.3 relays) (%s)' % got)

start = mx.log_size()
write('nets', 'not-a-prefix\n')
mx.reload(cfg())
mt.check(mx.wait_log(r'event=reload_failed', timeout=mt.slack(30), start=start) is not None,
         'a bad line in the CIDR file: event=reload_failed (%s)' % mx.tail(3))
got = answers(mx.port)
mt.check(got == {'cust1.example': 550, 'cust2.example': 250, 'outside.example': 250},
         'the failed reload keeps the running lists (%s)' % got)
write('nets', '192.0.2.0/24\n')
ok, log = reload_to(mx, 5)
mt.check(ok, 'the file mended: generation 5')
got = answers(mx.port)
mt.check(got['outside.example'] == 550, 'the mended file is read: 127.0.0.3 relays no more (%s)' % got)
mt.check(not mx.malformed_log_lines(), 'log lines in form: %s' % mx.malformed_log_lines()[:3])
mx.stop()
sink.stop()
mt.finish()
