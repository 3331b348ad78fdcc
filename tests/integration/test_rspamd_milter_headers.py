#!/usr/bin/env python3
"""The "milter" block of rspamd's /checkv2 reply, applied with use_action: true as rspamd's
milter gateway (its proxy worker in milter mode, behind Postfix) applies it: rspamd's
milter_headers module (X-Spamd-Result, X-Rspamd-Server, Authentication-Results ...) and its
dkim_signing module (DKIM-Signature) put their headers there, and task:set_milter_reply
anything a local rule wants. remove_headers first ({"Name": N}: N > 0 the N-th field, 0 all,
-N from the last), then add_headers ({"Name": "value"}, {"value", "order"} or an array of
those; order N inserts at N of the delivered header block, without order the field is
appended). Before, mxgate read none of it: an operator moving from rspamd's milter lost the
DKIM signature and every milter_headers field, and a forged X-Spamd-Result from outside
reached the mailbox. rspamd's "add header" action sets X-Spam: Yes as its milter does (its
spam_header; mxgate added nothing). Without use_action only the score counts (nothing changes). Against
tests/peers/fake_rspamd.py (rspamd itself is not installed here)."""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need()

rs = mt.fake_rspamd()
be = mt.Backend()
plugin = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '10s'}


def message(tag):
    return mt.message(tag, 'MILTERHDRS %s\r\n' % tag,
                      headers=('X-Spamd-Result: forged', 'X-Old: 1', 'X-Old: 2', 'X-Last: a', 'X-Last: b',
                               'X-Bad: keep'))


def fields(tag):
    got = be.by_tag(tag)
    h = got[0]['data'].split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace') if got else ''
    return [(m.group(1), re.sub(r'\r\n[ \t]+', ' ', m.group(2)))
            for m in re.finditer(r'(?m)^([^\s:]+):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', h)]


m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test',
                        plugins=[dict(plugin, options={'use_action': True})]), name='mx-act')
code, text = mt.send_mail(m.port, 'a@example.org', ['b@example.test'], message('mh1'), timeout=30)
mt.check(code == 250, 'use_action: the message is relayed: %s %s' % (code, text))
f = fields('mh1')
names = [n for n, _ in f]
# order 0 goes above mxgate's Received (counted as Postfix counts its own), and the inserts
# apply one after the other as a milter's INSHEADERs: order 1 lands below the order-0 field
mt.check(names[:3] == ['Authentication-Results', 'DKIM-Signature', 'Received'],
         "order 0 at the top, order 1 below it, then mxgate's Received: %s" % names[:4])
mt.check(('DKIM-Signature', 'v=1; a=rsa-sha256; d=example.org; s=dkim; b=AAAA') in f,
         "dkim_signing's DKIM-Signature applied")
mt.check([v for n, v in f if n == 'X-Spamd-Result'] == ['default: False [2.00 / 15.00]; FAKE(2.00)[x]'],
         "remove X-Spamd-Result 0: the forged one gone, rspamd's (array form, folded) added: %s"
         % [v for n, v in f if n == 'X-Spamd-Result'])
mt.check(names[-1] in ('X-Spamd-Result', 'X-Rspamd-Server') and ('X-Rspamd-Server', 'rspamd.example.test') in f,
         'fields without order are appended: %s' % names[-3:])
mt.check([v for n, v in f if n == 'X-Old'] == ['2'], 'remove X-Old 1: the first one gone: %s' % f)
mt.check([v for n, v in f if n == 'X-Last'] == ['a'], 'remove X-Last -1: the last one gone: %s' % f)
mt.check([v for n, v in f if n == 'X-Bad'] == ['keep'], 'a remove with a string index is ignored (rspamd: integers)')
mt.check('Bad Name' not in names and 'X-Long' not in names, 'a bad field name and a value over 8 KiB are not applied')
mt.check(m.wait_log(r'event=rspamd_error plugin=rspamd error="bad header name" header="Bad Name"', 5) is not None and
         m.wait_log(r'event=rspamd_error plugin=rspamd error="header value too long" header=X-Long', 5) is not None,
         'both logged')

# a field with a blank before its colon ("X-Last : b", RFC 5322's obsolete syntax) is one
# named X-Last for the count that resolves -1 as for the edit: the last one goes, not the first
code, text = mt.send_mail(m.port, 'a@example.org', ['b@example.test'],
                          mt.message('mh4', 'MILTERHDRS mh4\r\n', headers=('X-Last: a', 'X-Last : b')), timeout=30)
got = be.by_tag('mh4')
h = got[0]['data'].split(b'\r\n\r\n', 1)[0] if got else b''
mt.check(code == 250 and b'\r\nX-Last: a\r\n' in h and b'X-Last : b' not in h,
         'remove X-Last -1 with "X-Last : b" last: that one gone, "X-Last: a" kept: %r' % h)

# "add header": rspamd's milter sets its spam_header, X-Spam: Yes (what users' Sieve rules
# file on), once: one from outside goes first
code, text = mt.send_mail(m.port, 'a@example.org', ['b@example.test'],
                          mt.message('mh3', 'ADDHDRME\r\n', headers=('X-Spam: No',)), timeout=30)
f = fields('mh3')
mt.check(code == 250 and [v for n, v in f if n == 'X-Spam'] == ['Yes'],
         'add header: X-Spam: Yes, the forged X-Spam: No gone: %s %s' % (code, [v for n, v in f if n == 'X-Spam']))
m.stop()

m = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plugin]), name='mx-noact')
code, text = mt.send_mail(m.port, 'a@example.org', ['b@example.test'], message('mh2'), timeout=30)
f = fields('mh2')
mt.check(code == 250 and ('X-Spamd-Result', 'forged') in f and 'DKIM-Signature' not in [n for n, _ in f],
         'without use_action nothing of the milter block is applied: %s' % f)
m.stop()
mt.finish()
