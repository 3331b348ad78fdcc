#!/usr/bin/env python3
"""The status views name the config file in force by its absolute path. Started as
`mxgate -c ./name.yaml` from the file's directory, `mxgatectl status`, its --json and the
status page said "./name.yaml" (the path as given): an operator comparing it with the file
they edit, or with a unit's -c /etc/mxgate/mxgate.yaml, could not tell which file it was.
Before the fix each showed the relative path."""
import json
import os
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
CTL = mt.mxgatectl()
SOCK = os.path.join(mt.TMP, 'cfgpath-control.sock')
a = mt.Backend(name='PA')
cfg = mt.config([a.url], workers=1, control={'socket': SOCK},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port})
# the config file written (its ports filled in) by a first start, then the daemon started on it
# again from its directory, named relatively
first = mt.Mxgate(cfg, name='cfgpath')
first.stop()
abs_path = os.path.realpath(first.conf)
p = mt.spawn([os.path.abspath(mt.BIN), '-c', './' + os.path.basename(first.conf)], 'cfgpath-rel', cwd=os.path.dirname(abs_path))
mt.check(mt.wait_for(lambda: 'event=ready ' in mt.log_of('cfgpath-rel') or p.poll() is not None, 15),
         'started from a relative path\n%s' % mt.log_of('cfgpath-rel')[-2000:])
mt.check('event=started version=' in mt.log_of('cfgpath-rel') and
         'config=%s' % abs_path in mt.log_of('cfgpath-rel'),
         'event=started names the absolute path\n%s' % mt.log_of('cfgpath-rel')[-1500:])
r = subprocess.run([CTL, '-s', SOCK, 'status'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and '(%s)\n' % abs_path in r.stdout,
         'mxgatectl status names %s (rc %s)\n%s%s' % (abs_path, r.returncode, r.stdout, r.stderr))
r = subprocess.run([CTL, '-s', SOCK, '--json', 'status'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and json.loads(r.stdout).get('config') == abs_path,
         'mxgatectl --json status: "config" is %s\n%s' % (abs_path, r.stdout[:300]))
port = int(cfg['metrics']['listen'].rsplit(':', 1)[1])
with urllib.request.urlopen('http://127.0.0.1:%d/status.json' % port, timeout=mt.slack(30)) as resp:
    page = json.loads(resp.read().decode())
mt.check(page.get('config') == abs_path, 'the status page names %s (%s)' % (abs_path, page.get('config')))
# a reload reads the same file
r = subprocess.run([CTL, '-s', SOCK, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and 'reloaded: generation 2' in r.stdout, 'reload (rc %s)\n%s%s'
         % (r.returncode, r.stdout, r.stderr))
mt.stop_proc(p)
mt.check(p.returncode == 0, 'stops (%s)' % p.returncode)
mt.check(not any(pat in mt.log_of('cfgpath-rel') for pat in mt.SANITIZER_PATTERNS),
         'no sanitizer report in its stderr\n%s' % mt.log_of('cfgpath-rel')[-3000:])
mt.finish()
