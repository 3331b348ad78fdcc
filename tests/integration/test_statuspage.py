#!/usr/bin/env python3
"""The live status page in a real browser: Debian's chromium, headless, loads / from a
running mxgate (two smtp-sink backends, a DNS list behind a dead resolver, the default
rules), dumps the DOM and takes a screenshot (saved as MX_BUILD_DIR/statuspage.png).

- the DOM has the backends table with both backends up, the sessions figure, the per-minute
  plot (one SVG polyline per series), top refused clients and reasons, top rule hits and
  the DNS list errors; the page names no external asset (no http(s):// src or href);
- a connection refused before any session (max_connections_per_ip) shows on the page with
  its reason (/status.json's connections_refused);
- /status.json is valid JSON with the same figures; /healthz is 200; /readyz is 200 while a
  backend is up and not drained, 503 once none is, 200 again when one comes back."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('smtp-sink', 'chromium')


def get(port, path):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=mt.slack(10)) as r:
            return r.status, r.headers.get('Content-Type', ''), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get('Content-Type', ''), e.read().decode()


def chromium(*args):
    profile = tempfile.mkdtemp(prefix='chromium-', dir=mt.TMP)
    argv = [mt.tool('chromium'), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            '--disable-dev-shm-usage', '--hide-scrollbars', '--user-data-dir=' + profile] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=mt.slack(120))
    return r


a, b = mt.Sink(name='sinkA'), mt.Sink(name='sinkB')
dead_dns = mt.hold_port(udp=True).port   # bound, never answers: every DNS list lookup fails
cfg = mt.config([a.url, b.url], limits={'max_message_size': '4K', 'max_connections_per_ip': 3},
                metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                dns={'resolvers': ['127.0.0.1:%d' % dead_dns], 'timeout': '500ms', 'tries': 1},
                dnsbl={'lists': [{'zone': 'bl.test'}], 'skip_private': False},
                rules={'files': [os.path.join(mt.SRC, 'rules', 'default.rules')]})
mx = mt.Mxgate(cfg)
mport = mx.metrics_port
mt.wait_for(lambda: get(mport, '/readyz')[0] == 200, 15)
code, ctype, text = get(mport, '/healthz')
mt.check(code == 200 and text.strip() == 'ok', '/healthz: 200 ok')
code, _, text = get(mport, '/readyz')
mt.check(code == 200 and 'ready' in text, '/readyz: 200 once the backends are checked and up (%s %r)' % (code, text))

# some traffic: accepted messages (one without a Date header for a rule hit), refused ones
no_date = (b'From: <sender@example.org>\r\nTo: <rcpt@example.test>\r\nSubject: no date\r\n'
           b'Message-ID: <nodate@mxtest>\r\n\r\nHello.\r\n')
for i in range(6):
    code, _ = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], mt.message('page-%d' % i))
    mt.check(code == 250, 'message %d accepted (%s)' % (i, code))
code, _ = mt.send_mail(mx.port, 'sender@example.org', ['rcpt@example.test'], no_date)
mt.check(code == 250, 'a message without Date accepted (%s)' % code)
for src in ('127.0.0.5', '127.0.0.5', '127.0.0.6'):
    code, _ = mt.send_mail(mx.port, 's@example.org', ['r@example.test'], mt.message('big', size=8000), source=src)
    mt.check(code == 552, 'an over-size message from %s refused (%s)' % (src, code))

# a client turned away before a session (its fourth connection while it holds three)
import socket  # noqa: E402
held = []
for i in range(4):
    c = socket.socket()
    c.settimeout(mt.slack(10))
    c.bind(('127.0.0.7', 0))
    c.connect(('127.0.0.1', mx.port))
    line = c.recv(512)
    held.append(c)
mt.check(line.startswith(b'421'), 'a fourth connection from 127.0.0.7 refused (%r)' % line)
for c in held:
    c.close()

code, ctype, text = get(mport, '/status.json')
mt.check(code == 200 and ctype.startswith('application/json'), '/status.json: 200 application/json')
st = json.loads(text)
mt.check(sum(st['history']['accepted']) >= 7 and len(st['history']['accepted']) == 60,
         'status.json: 60 minute buckets, the accepted messages in them (%d)' % sum(st['history']['accepted']))
mt.check(sum(st['history']['refused']) >= 3, 'status.json: the refusals in the history')
mt.check(st['top_refused_clients'][0] == {'client': '127.0.0.5', 'count': 2}, 'status.json: top refused client')
mt.check(any(r['rule'] == 'MX_MISSING_DATE' for r in st['top_rules']), 'status.json: the rule hit (%r)' % st['top_rules'][:3])
# `mxgatectl top senders|domains`' delivered counts, on the page too (they were only there)
mt.check(st.get('top_sender_domains', [None])[0] == {'domain': 'example.org', 'count': 7} and
         st.get('top_recipient_domains', [None])[0] == {'domain': 'example.test', 'count': 7},
         'status.json: the sender and recipient domains by messages delivered (%r %r)'
         % (st.get('top_sender_domains'), st.get('top_recipient_domains')))
mt.check(any(e['zone'] == 'bl.test' and e['errors'] > 0 for e in st['dnsbl_errors']),
         'status.json: errors of the DNS list behind a dead resolver (%r)' % st['dnsbl_errors'])

# ---------------------------------------------------------------- the page in chromium
code, ctype, html = get(mport, '/')
mt.check(code == 200 and ctype.startswith('text/html'), '/: 200 text/html')
mt.check(not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html, re.I), 'the page names no external asset')
r = chromium('--dump-dom', 'http://127.0.0.1:%d/' % mport)
dom = r.stdout
mt.check(r.returncode == 0 and '<table id="backends">' in dom, 'chromium --dump-dom renders the page (rc %d, %s)' % (
    r.returncode, r.stderr.strip()[-200:]))
body = re.search(r'<table id="backends">.*?</table>', dom, re.S)
rows = re.findall(r'<tr><td>([^<]*)</td><td class="state (\w+)">', body.group(0)) if body else []
mt.check(sorted(rows) == sorted([(a.url, 'up'), (b.url, 'up')]), 'the backends table: both backends up (%r)' % rows)
mt.check(re.search(r'id="sessions">\d+<', dom), 'the sessions figure is filled in')
mt.check(re.search(r'id="accepted">([7-9]|\d\d+)<', dom), 'the accepted-in-the-last-hour figure counts the messages')
mt.check(re.search(r'id="connrefused">1<', dom) and re.search(r'id="connrefused-why">max_connections_per_ip 1<', dom),
         'connections turned away before a session: the figure and its reason')
polys = re.findall(r'<polyline points="([^"]+)"[^>]*class="series-(\w+)"', dom)
mt.check(sorted(p[1] for p in polys) == ['accepted', 'dnsbl_errors', 'refused', 'tempfailed'] and
         all(len(p[0].split()) == 60 for p in polys), 'the plot: four series of 60 points (%r)' % [p[1] for p in polys])
mt.check(re.search(r'<table id="top-clients">.*127\.0\.0\.5.*</table>', dom, re.S), 'top refused clients listed')
mt.check(re.search(r'<table id="top-reasons">.*data/size.*</table>', dom, re.S), 'top refusal reasons listed')
mt.check(re.search(r'<table id="top-rules">.*MX_MISSING_DATE.*</table>', dom, re.S), 'top rule hits listed')
mt.check(re.search(r'<table id="top-senders">.*example\.org.*</table>', dom, re.S) and
         re.search(r'<table id="top-domains">.*example\.test.*</table>', dom, re.S),
         'top sender and recipient domains listed')
mt.check(re.search(r'<table id="dnsbl-errors">.*bl\.test.*</table>', dom, re.S), 'DNS list errors listed')
mt.check('data-rendered="1"' in dom, 'the script ran to the end')
shot = os.path.join(mt.BUILD, 'statuspage.png')
if os.path.exists(shot):
    os.unlink(shot)
r = chromium('--window-size=1280,1300', '--screenshot=' + shot, 'http://127.0.0.1:%d/' % mport)
mt.check(r.returncode == 0 and os.path.getsize(shot) > 10000 if os.path.exists(shot) else False,
         'chromium --screenshot saved %s' % shot)

# ---------------------------------------------------------------- readiness follows the backends
a.kill()
b.kill()
mt.check(mt.wait_for(lambda: get(mport, '/readyz')[0] == 503, 15), '/readyz: 503 once no backend is up')
code, _, text = get(mport, '/healthz')
mt.check(code == 200, '/healthz: still 200 (the process is alive)')
b.start()
mt.check(mt.wait_for(lambda: get(mport, '/readyz')[0] == 200, 15), '/readyz: 200 again when a backend is back')
code, _, _ = get(mport, '/nothing-here')
mt.check(code == 404, 'other paths: 404')
mx.stop()
mt.finish()
