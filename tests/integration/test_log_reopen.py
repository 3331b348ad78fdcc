#!/usr/bin/env python3
"""Log files and logrotate, as a Postfix operator (maillog_file + `postfix logrotate`) or an
nginx one (`kill -USR1`) would run them outside the journal: `log.file: PATH` appends the
log lines to PATH, and SIGUSR1 reopens it after logrotate has moved it away (logrotate's
`postrotate kill -USR1 $(pidof mxgate)` or `create` + the signal).

Before: there was no log file, and SIGUSR1 (the reopen signal of nginx, and the one a
copied logrotate stanza sends) killed the daemon at once: no drain, no exit line, the
control socket left behind."""
import os
import pwd
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
sink = mt.Sink()


def read(path):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def start_with_file(cfg, name, path):
    mx = mt.Mxgate(cfg, name=name, wait=False)
    mx.logpath = path          # the daemon's own file: what the harness reads from now on
    if not mt.wait_for(lambda: mx.wait_log(r'event=started', 0) or not mx.alive(), mt.slack(15)) \
            or not mx.alive():
        mt.fail('%s did not start: %s' % (name, read(os.path.join(mt.TMP, name + '.log'))[-2000:]))
    return mx


# 1. SIGUSR1 without log.file: nothing to reopen, and the daemon goes on
mx0 = mt.Mxgate(mt.config([sink.url]), name='mx-nofile')
mx0.send_signal(signal.SIGUSR1)
mt.check(mx0.wait_log(r'event=log_reopen .*reason="no log.file', mt.slack(5)) is not None,
         'SIGUSR1 without log.file: logged, nothing to reopen (%s)' % mx0.tail(3))
mt.check(mx0.alive(), 'SIGUSR1 does not kill the daemon')
# SIGUSR2 is HAProxy's reload: an operator used to it must not stop the mail with no drain
mx0.send_signal(signal.SIGUSR2)
mt.check(mx0.wait_log(r'warning - event=signal_ignored signal=USR2 reason="reload is SIGHUP', mt.slack(5)) is not None,
         'SIGUSR2: ignored with a warning that names the reload signal (%s)' % mx0.tail(2))
mt.check(mx0.alive(), 'SIGUSR2 does not kill the daemon')
code, _ = mt.send_mail(mx0.port, 'a@example.org', ['b@example.test'], mt.message('nofile'))
mt.check(code == 250, 'it still delivers after SIGUSR1 and SIGUSR2 (%s)' % code)
mx0.stop()

# 2. log.file, then a rotation: rename + SIGUSR1
logdir = os.path.join(mt.TMP, 'logs')
os.mkdir(logdir)
path = os.path.join(logdir, 'mxgate.log')
cfg = mt.config([sink.url], log={'file': path})
mx = start_with_file(cfg, 'mx-file', path)
mt.check(read(os.path.join(mt.TMP, 'mx-file.log')).strip() == '',
         'with log.file nothing goes to standard error (%r)' % read(os.path.join(mt.TMP, 'mx-file.log'))[:200])
mt.check(oct(os.stat(path).st_mode & 0o777) == oct(0o640), 'the file is made 0640 (%o)' % (os.stat(path).st_mode & 0o777))
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('before-rotate'))
mt.check(code == 250 and mx.wait_log(r'event=delivered', mt.slack(5)) is not None, 'a delivery logged in the file')

os.rename(path, path + '.1')
mx.send_signal(signal.SIGUSR1)
mt.check(mt.wait_for(lambda: 'event=log_reopened' in read(path), mt.slack(5)),
         'SIGUSR1: the file is made again and says event=log_reopened (%r)' % read(path)[:300])
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('after-rotate'))
mt.check(code == 250 and mx.wait_log(r'event=delivered', mt.slack(5)) is not None,
         'the next delivery is logged in the new file')
old = read(path + '.1')
mt.check(old.count('event=delivered') == 1 and 'event=log_reopened' not in old,
         'the rotated file kept the old lines only (%d deliveries)' % old.count('event=delivered'))
mt.check(not mx.malformed_log_lines(), 'the new file has well-formed lines (%r)' % mx.malformed_log_lines()[:2])

# 3. a reopen that fails (the directory is gone) keeps the old file and says why there
os.rename(logdir, logdir + '.gone')
mx.send_signal(signal.SIGUSR1)
gone = os.path.join(logdir + '.gone', 'mxgate.log')
mt.check(mt.wait_for(lambda: 'event=log_reopen_failed' in read(gone), mt.slack(5)),
         'a failed reopen is logged in the file still open (%r)' % read(gone)[-300:])
mt.check(mx.alive(), 'and the daemon goes on')
os.rename(logdir + '.gone', logdir)
mx.send_signal(signal.SIGUSR1)
mt.check(mt.wait_for(lambda: read(path).count('event=log_reopened') == 2, mt.slack(5)),
         'the directory back: the next SIGUSR1 reopens')

# 4. log.file is opened once at start: a reload that changes it says so
cfg2 = mt.config([sink.url], log={'file': path + '.other'})
start = mx.log_size()
mx.reload(cfg2)
mt.check(mx.wait_log(r'event=config_unchanged key=log.file reason="takes effect at the next start"',
                     mt.slack(5), start) is not None, 'a changed log.file is named as taking effect at the next start')
mx.stop()
mt.check('event=stopped' in read(path), 'the exit is logged in the file')

# 5. as root with user:, the file is given to that user, who can reopen a file logrotate
# made with `create 0640 USER GROUP`
if os.geteuid() == 0:
    nobody = pwd.getpwnam('nobody')
    path3 = os.path.join(logdir, 'user.log')
    mx3 = start_with_file(mt.config([sink.url], user='nobody', log={'file': path3}), 'mx-user', path3)
    st = os.stat(path3)
    mt.check(st.st_uid == nobody.pw_uid, 'the file belongs to user: (uid %d)' % st.st_uid)
    os.rename(path3, path3 + '.1')
    fd = os.open(path3, os.O_WRONLY | os.O_CREAT, 0o640)
    os.fchown(fd, nobody.pw_uid, nobody.pw_gid)
    os.close(fd)
    mx3.send_signal(signal.SIGUSR1)
    mt.check(mt.wait_for(lambda: 'event=log_reopened' in read(path3), mt.slack(5)),
             'after dropping root the daemon reopens the file logrotate made (%r)' % read(path3 + '.1')[-300:])
    mx3.stop()

mt.finish()
