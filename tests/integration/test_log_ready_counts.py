#!/usr/bin/env python3
"""event=ready carries the domain counts event=reloaded has since session 26:
accept_domains=N (the patterns of accept_domains, its file: items read; 0: no list) and
routes_domains=M (those of every backends.routes entry together). The start is when the lists'
files are read first: an operator checking that a provisioning script's file loaded whole had
the counts after a SIGHUP, and nothing at the start.

Before the fix the line was `event=ready generation=1 backends_up=yes` and nothing more.

- a start with accept_domains (two inline patterns and a file of three) and two routes (one
  and two domains): event=ready ... accept_domains=5 routes_domains=3;
- a start with neither: accept_domains=0 routes_domains=0.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()
a = mt.Backend(name='RA')
b = mt.Backend(name='RB')
listfile = os.path.join(mt.TMP, 'accept-list')
with open(listfile, 'w') as f:
    f.write('one.test\ntwo.test\n*.three.test\n')

mx = mt.Mxgate(mt.config([a.url], workers=1, accept_domains=['ours.test', '*.ours.test', 'file:' + listfile],
                         backends={'routes': [{'domains': ['r1.test'], 'servers': [b.url]},
                                              {'domains': ['r2.test', '*.r2.test'], 'servers': [b.url]}]}),
               name='mx-ready-counts')
m = mx.wait_log(r'event=ready generation=1 backends_up=\w+ accept_domains=(\d+) routes_domains=(\d+)\b', 15)
mt.check(m is not None and (m.group(1), m.group(2)) == ('5', '3'),
         'event=ready says accept_domains=5 routes_domains=3 (%s)\n%s' % (m and m.group(0), mx.tail()))
mx.stop()

mx = mt.Mxgate(mt.config([a.url], workers=1), name='mx-ready-nolists')
m = mx.wait_log(r'event=ready generation=1 backends_up=\w+ accept_domains=(\d+) routes_domains=(\d+)\b', 15)
mt.check(m is not None and (m.group(1), m.group(2)) == ('0', '0'),
         'no lists: event=ready says accept_domains=0 routes_domains=0 (%s)\n%s' % (m and m.group(0), mx.tail()))
mx.stop()
mt.finish()
