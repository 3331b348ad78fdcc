#!/usr/bin/env python3
"""Counters across reloads, as a Prometheus user reads them. docs/operations.md: "Counters
only go up (until a restart; a reload keeps them)". Every exposition is parsed by the
reference parser (python3-prometheus-client's text parser, run under /usr/bin/python3
where Debian installs it), and every sample of a family typed `counter` must be at least
what it was before SIGHUP and before `mxgatectl reload`. The per-backend counters are
checked in all three views (/metrics, /status.json, mxgatectl --json backends), with a
message whose transaction was open across the reload (it finishes on the old generation's
backend) counted too.

Before the fix the pool was rebuilt from scratch on every reload:
mxgate_backend_delivered_total went back to 0, and so did DELIVERED in mxgatectl."""
import json
import os
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink')
CTL = mt.mxgatectl()
SYS_PY = '/usr/bin/python3'
PARSER = r'''
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, sorted(s.labels.items()), s.value, fam.type])
print(json.dumps(out))
'''
if subprocess.run([SYS_PY, '-c', 'import prometheus_client'], capture_output=True).returncode != 0:
    mt.skip('python3-prometheus-client (the reference exposition parser) is not installed')


def scrape(mport, path='/metrics'):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (mport, path), timeout=mt.slack(5)) as r:
        return r.read().decode()


def samples(mport):
    """{(name, labels): (value, type)} from the reference parser (a parse error fails)."""
    text = scrape(mport)
    r = subprocess.run([SYS_PY, '-c', PARSER], input=text, capture_output=True, text=True,
                       timeout=mt.slack(30))
    if r.returncode != 0:
        mt.fail('the reference parser refused the exposition: %s' % r.stderr.strip()[-400:])
    return {(n, tuple(tuple(x) for x in lab)): (v, t) for n, lab, v, t in json.loads(r.stdout)}


def delivered(mport, url):
    v = samples(mport).get(('mxgate_backend_delivered_total', (('backend', url),)))
    return v[0] if v else None


def no_counter_went_back(before, after, what):
    back = ['%s%s %g -> %s' % (n, dict(lab), v, after.get((n, lab), ('gone',))[0])
            for (n, lab), (v, t) in before.items()
            if t == 'counter' and ((n, lab) not in after or after[(n, lab)][0] < v)]
    mt.check(not back, '%s: no counter went backwards (%s)' % (what, '; '.join(back[:5])))


sink = mt.Sink()
mport = mt.hold_port()
sock = os.path.join(mt.TMP, 'control.sock')
rules = os.path.join(mt.TMP, 'counted.cf')
with open(rules, 'w') as f:      # a rule every message hits: mxgate_rule_hits_total{rule="MXT_MSGID"}
    f.write('header MXT_MSGID exists:Message-ID\nscore MXT_MSGID 0.1\n')
cfg = mt.config([sink.url], metrics={'listen': '127.0.0.1:%d' % mport.port}, control={'socket': sock},
                rules={'files': [rules]})
mx = mt.Mxgate(cfg, name='mx-counters')
mp = mport.port

for i in range(3):
    code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('pre%d' % i))
    mt.check(code == 250, 'message %d delivered before the reload (%s %s)' % (i, code, text))
mt.check(mt.wait_for(lambda: delivered(mp, sink.url) == 3, mt.slack(10)),
         'mxgate_backend_delivered_total is 3 (%s)' % delivered(mp, sink.url))
a = samples(mp)

# A transaction open across the reload: it ends on the old generation's backend.
c = mt.Client(mx.port)
c.ehlo()
mt.check(c.cmd('MAIL FROM:<a@example.org>')[0] == 250 and c.cmd('RCPT TO:<b@example.test>')[0] == 250,
         'a transaction is open before the reload')

start = mx.log_size()
mx.reload(cfg)
mt.check(mx.wait_log(r'event=reloaded generation=2', mt.slack(10), start) is not None, 'SIGHUP: generation 2')
b = samples(mp)
mt.check(a.get(('mxgate_rule_hits_total', (('rule', 'MXT_MSGID'),)), (0,))[0] == 3,
         'mxgate_rule_hits_total{rule="MXT_MSGID"} is 3 before the reload')
no_counter_went_back(a, b, 'SIGHUP')
mt.check(delivered(mp, sink.url) == 3, 'after SIGHUP the backend still counts 3 (%s)' % delivered(mp, sink.url))

mt.check(c.cmd('DATA')[0] == 354, 'DATA on the open transaction')   # (scored by the new rule set)
c.send(mt.stuff(mt.message('across')))
code, text = c.reply()
mt.check(code == 250, 'the transaction open across the reload is delivered (%s %s)' % (code, text))
c.close()
mt.check(mt.wait_for(lambda: delivered(mp, sink.url) == 4, mt.slack(10)),
         'its delivery is counted though it ran on the old generation (%s)' % delivered(mp, sink.url))

r = subprocess.run([CTL, '-s', sock, 'reload'], capture_output=True, text=True, timeout=mt.slack(30))
mt.check(r.returncode == 0 and 'generation 3' in r.stdout, 'mxgatectl reload: generation 3 (%r)' % r.stdout)
code, _ = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], mt.message('post'))
mt.check(code == 250, 'a message after the second reload')
mt.check(mt.wait_for(lambda: delivered(mp, sink.url) == 5, mt.slack(10)),
         '/metrics: delivered 5 after two reloads (%s)' % delivered(mp, sink.url))
no_counter_went_back(b, samples(mp), 'mxgatectl reload')
st = json.loads(scrape(mp, '/status.json'))
mt.check([x['delivered'] for x in st['backends']] == [5], '/status.json: delivered 5 (%r)' % st['backends'])
r = subprocess.run([CTL, '-s', sock, '--json', 'backends'], capture_output=True, text=True, timeout=mt.slack(30))
j = json.loads(r.stdout or '{}')
mt.check([x['delivered'] for x in j.get('backends', [])] == [5],
         'mxgatectl --json backends: delivered 5 (%r)' % r.stdout[:300])
mt.check(len(sink.messages()) == 5, 'the sink has the 5 messages')

mx.stop()
mt.finish()
