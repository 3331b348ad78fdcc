#!/usr/bin/env python3
"""`make run` (README "Two commands", examples/run-demo.sh, examples/demo.yaml): the first five
minutes of a newcomer, run as the banner tells them, ports moved to free ones.

- the banner names the listen address, the status page and the control socket the config
  really has, and says how to stop it;
- the demo starts without a warning (it had: event=fd_limit for max_connections 16000 under
  an ordinary `ulimit -n`; and `mxgate -t` warned of the empty accept_domains);
- README's swaks command delivers; the message lands in demo-maildir/new/ with mxgate's
  Received: on top; a recipient in another domain gets 550;
- the status page and `mxgatectl -s demo-control.sock status` answer and count the message
  (they did not exist in the demo: no metrics, no control socket);
- SIGINT (Ctrl-C) stops it: exit 0, event=stopped.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('swaks')
SRC = mt.SRC
BIN, CTL = os.path.abspath(mt.BIN), os.path.abspath(mt.mxgatectl())   # run from the demo's directory
demo = open(os.path.join(SRC, 'examples', 'demo.yaml')).read()
banner = open(os.path.join(SRC, 'examples', 'run-demo.sh')).read()
readme = open(os.path.join(SRC, 'README.md')).read()

listen = re.search(r'address: (127\.0\.0\.1:\d+)', demo).group(1)
metrics = re.search(r'listen: (127\.0\.0\.1:\d+)', demo)
sock = re.search(r'socket: (\S+)', demo)
mt.check(metrics is not None and sock is not None, 'demo.yaml has a status page and a control socket')
mt.check('listening on %s' % listen in banner, 'the banner names the listen address %s' % listen)
mt.check(metrics is not None and 'http://%s/' % metrics.group(1) in banner,
         'the banner names the status page of demo.yaml')
mt.check(sock is not None and '-s %s status' % os.path.basename(sock.group(1)) in banner,
         'the banner shows mxgatectl status on the demo\'s socket')
mt.check('Ctrl-C' in banner and 'stops it' in banner, 'the banner says how to stop it')
swaks = re.search(r'^(swaks --server 127\.0\.0\.1 --port \d+ [^\n#]*)', readme, re.M)
mt.check(swaks is not None and str(listen.split(':')[1]) in swaks.group(1), 'README shows swaks on the demo\'s port')

# The demo as make run starts it, from a directory of its own, ports moved.
port, mport = mt.hold_port().port, mt.hold_port().port
os.makedirs(os.path.join(mt.TMP, 'examples'))
os.makedirs(os.path.join(mt.TMP, 'demo-maildir'))
cfg = os.path.join(mt.TMP, 'examples', 'demo.yaml')
open(cfg, 'w').write(demo.replace(listen, '127.0.0.1:%d' % port)
                     .replace(metrics.group(1), '127.0.0.1:%d' % mport))
t = subprocess.run([BIN, '-t', '-c', 'examples/demo.yaml'], cwd=mt.TMP, capture_output=True, text=True,
                   timeout=mt.slack(20))
mt.check(t.returncode == 0 and 'warning' not in t.stdout + t.stderr,
         'mxgate -t on the demo: ok without a warning\n%s%s' % (t.stdout, t.stderr))
errlog = open(os.path.join(mt.TMP, 'demo.log'), 'w+')
p = subprocess.Popen([BIN, '-c', 'examples/demo.yaml'], cwd=mt.TMP, stdout=errlog, stderr=subprocess.STDOUT)


def log():
    errlog.flush()
    return open(errlog.name).read()


mt.check(mt.wait_for(lambda: 'event=ready' in log(), timeout=10), 'the demo starts\n%s' % log())
warns = [ln for ln in log().splitlines() if re.search(r' (warning|error) ', ln)]
mt.check(not warns, 'the demo starts without a warning: %s' % warns)

cmd = swaks.group(1).split() if swaks else ['swaks', '--server', '127.0.0.1', '--port', '0']
cmd[cmd.index('--port') + 1] = str(port)
r = subprocess.run(cmd, capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and re.search(r'<-  250 .*queued', r.stdout) is not None,
         'README\'s swaks command is accepted (rc %s)\n%s' % (r.returncode, r.stdout[-600:]))
got = glob.glob(os.path.join(mt.TMP, 'demo-maildir', 'new', '*'))
mt.check(len(got) == 1 and open(got[0]).read().startswith('Received: from ') and
         'by mx.demo.test (mxgate)' in open(got[0]).read(), 'the message is in demo-maildir/new/, our Received: on top')
other = list(cmd)
if '--to' in other:
    other[other.index('--to') + 1] = 'someone@other.test'
r = subprocess.run(other, capture_output=True, text=True, timeout=mt.slack(30))
mt.check(re.search(r'<\*\* 550 ', r.stdout) is not None, 'another domain: 550\n%s' % r.stdout[-400:])

st = mt.http_get(mport, '/')
mt.check(st[0] == 200, 'the status page answers (%s)' % st[0])
st = mt.http_get(mport, '/metrics')
mt.check(st[0] == 200 and re.search(r'^mxgate_messages_delivered_total\S* 1$', st[1], re.M) is not None,
         'README\'s curl of /metrics shows the message delivered')
ctl = subprocess.run([CTL, '-s', os.path.basename(sock.group(1)), 'status'], cwd=mt.TMP,
                     capture_output=True, text=True, timeout=mt.slack(20))
mt.check(ctl.returncode == 0 and re.search(r'\b1 delivered', ctl.stdout) is not None,
         'mxgatectl -s demo-control.sock status counts the message (rc %s)\n%s%s'
         % (ctl.returncode, ctl.stdout, ctl.stderr))

p.send_signal(signal.SIGINT)
try:
    rc = p.wait(timeout=mt.slack(20))
except subprocess.TimeoutExpired:
    p.kill()
    rc = 'still running'
mt.check(rc == 0 and 'event=stopped' in log(), 'Ctrl-C stops it: exit 0 (%s)\n%s' % (rc, log()[-600:]))
mt.check(re.search(r'AddressSanitizer|LeakSanitizer|runtime error:', log()) is None, 'no sanitizer report')
shutil.rmtree(os.path.join(mt.TMP, 'demo-maildir'), ignore_errors=True)
mt.finish()
