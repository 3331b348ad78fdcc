#!/usr/bin/env python3
"""Milter modifications and replies as an operator moving from Postfix's smtpd_milters
expects them, against real python3-milter filters scripted by the message
(tests/peers/mx_milter_ops.py): two milters in a chain (the second sees the message as
the first changed it, as Postfix's cleanup hands each milter the edited queue file),
header index edge cases (chgheader past the last occurrence adds, index 0, insheader
past the end, case-insensitive names), an empty and a large replaced body, a body given
to a headers-only message, recipients added with ESMTP arguments (a duplicate sent once),
every recipient deleted (550 5.1.0, nothing relayed), a sender changed with ESMTP
arguments, multi-line replies, a milter's discard after another's changes."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()
t.need_python_milter()


def send(port, tag, ops, body='', rcpts=('b@example.test',), extra=()):
    hdrs = ['X-Ops-%s: %s' % (k, v) for k, v in ops.items()] + list(extra)
    data = t.message(tag, 'body of %s\r\n%s' % (tag, body), headers=hdrs)
    return t.send_mail(port, 'a@example.org', list(rcpts), data, ehlo='client.example.org', timeout=30)


def one(tag):
    got = be.find('Message-ID: <%s@' % tag)
    t.check(len(got) == 1, '%s delivered once (%d)' % (tag, len(got)))
    return got[0] if got else {'data': b'', 'rcpt': [], 'from': '', 'mail': '', 'rcpts': []}


def headers_of(d):
    """The header fields, unfolded."""
    hb = d.split(b'\r\n\r\n', 1)[0]
    return hb.replace(b'\r\n ', b' ').replace(b'\r\n\t', b'\t').split(b'\r\n')


def body_of(d):
    return d.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in d else b''


m1, m2 = t.milter_ops('one'), t.milter_ops('two')
be = t.Backend()
mx = t.Mxgate(t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '10s'},
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m2.port, 'on_error': 'tempfail', 'timeout': '10s'}]))

# --- The chain: the second milter sees the first one's changes (Postfix semantics). A
# signing milter (opendkim) behind a body- or Subject-changing one must sign what is sent.
code, text = send(mx.port, 'chain1', {'one': 'chg,Subject,1,changed by one ; body,new body from one ; '
                                             'ins,0,X-Top,from one'})
d = one('chain1')['data']
t.check(code == 250, 'chain: 250 (%s %s)' % (code, text))
want_sha = hashlib.sha1(b'new body from one\r\n').hexdigest()[:12]
seen2 = [h for h in headers_of(d) if h.startswith(b'X-Seen-two:')]
t.check(body_of(d) == b'new body from one\r\n', 'chain: the body replaced by the first milter is relayed')
t.check(len(seen2) == 1 and (b'body=%s' % want_sha.encode()) in seen2[0],
        'chain: the second milter saw the body the first one replaced: %s' % seen2)
t.check(len(seen2) == 1 and b'subject=changed by one' in seen2[0],
        'chain: the second milter saw the Subject the first one changed: %s' % seen2)
t.check(len(seen2) == 1 and b'hdrs=X-Top,' in seen2[0] and b'X-Seen-one' in seen2[0],
        'chain: the second milter saw the headers the first one inserted and added: %s' % seen2)

# The second milter's header index refers to the message it was shown: it inserts at 1
# (after the X-Top the first inserted at 0) and changes the 2nd X-Dup, which the first
# milter added.
code, text = send(mx.port, 'chain2', {'one': 'ins,0,X-Top,from one ; add,X-Dup,first ; add,X-Dup,second ; noseen',
                                      'two': 'ins,1,X-Second,from two ; chg,X-Dup,2,changed by two ; noseen'})
h = headers_of(one('chain2')['data'])
names = [x.split(b':', 1)[0] for x in h if x and x[:1] not in (b' ', b'\t')]
t.check(code == 250, 'chain2: 250 (%s)' % code)
t.check(b'X-Top' in names and b'X-Second' in names and names.index(b'X-Second') == names.index(b'X-Top') + 1,
        'chain: the second milter\'s insheader index counts the first one\'s inserted header: %s' % names[:8])
t.check(b'X-Dup: first' in h and b'X-Dup: changed by two' in h and b'X-Dup: second' not in h,
        'chain: the second milter changed the 2nd occurrence added by the first: %s' %
        [x for x in h if x.startswith(b'X-Dup')])

# --- Header index edge cases (one milter).
code, text = send(mx.port, 'idx1', {'one': 'chg,X-Multi,2,two changed ; chg,x-multi,5,past the end ; '
                                           'chg,X-Absent,1, ; ins,1000,X-Bottom,inserted past the end ; noseen'},
                  extra=('X-Multi: one', 'X-Multi: two', 'X-Multi: three'))
h = headers_of(one('idx1')['data'])
multi = [x for x in h if x.lower().startswith(b'x-multi:')]
t.check(code == 250, 'idx: 250 (%s)' % code)
t.check(multi[:3] == [b'X-Multi: one', b'X-Multi: two changed', b'X-Multi: three'],
        'chgheader index 2 changes the second occurrence only: %s' % multi)
t.check(len(multi) == 4 and multi[3].endswith(b'past the end'),
        'chgheader past the last occurrence adds the header (Sendmail/Postfix): %s' % multi)
t.check(not any(x.lower().startswith(b'x-absent') for x in h), 'deleting an absent header is a no-op')
t.check(any(x.startswith(b'X-Bottom: inserted past the end') for x in h),
        'insheader past the end appends')

# chgheader with an empty value deletes that occurrence only.
code, text = send(mx.port, 'idx2', {'one': 'chg,X-Multi,1, ; noseen'},
                  extra=('X-Multi: one', 'X-Multi: two'))
h = headers_of(one('idx2')['data'])
t.check([x for x in h if x.startswith(b'X-Multi')] == [b'X-Multi: two'],
        'chgheader index 1 with an empty value deletes the first occurrence only')

# --- Bodies: replaced by an empty one, and by a 3 MB one (many SMFIR_REPLBODY frames).
code, text = send(mx.port, 'empty1', {'one': 'bodyempty ; noseen', 'two': 'noseen'})
d = one('empty1')['data']
t.check(code == 250 and body_of(d) == b'', 'an empty replacement body is relayed empty: %s %r' % (code, body_of(d)[:40]))
code, text = send(mx.port, 'big1', {'one': 'bodybig,3000024 ; noseen'})
d = one('big1')['data']
t.check(code == 250 and len(body_of(d)) == 3000024, 'a 3 MB replacement body arrives whole: %s %d' % (code, len(body_of(d))))

# A message of headers only (no blank line, no body) whose body a milter replaces: the new
# body is a body (after a blank line), at the backend and for the next milter.
data = (b'From: <sender@example.org>\r\nSubject: headers only\r\nMessage-ID: <hdronly1@mxtest.example>\r\n'
        b'X-Ops-one: body,body for a headers-only message')
code, text = t.send_mail(mx.port, 'a@example.org', ['b@example.test'], data, ehlo='client.example.org', timeout=30)
d = one('hdronly1')['data']
want_sha = hashlib.sha1(b'body for a headers-only message\r\n').hexdigest()[:12].encode()
t.check(code == 250 and body_of(d) == b'body for a headers-only message\r\n',
        'headers-only message, body replaced: the body follows a blank line (%s %r)' % (code, d[-120:]))
t.check(b'body=' + want_sha in d, 'and the next milter saw it as the body')

# --- Envelope: recipients added with and without ESMTP arguments, one deleted, the sender
# changed with arguments.
code, text = send(mx.port, 'env1', {'one': 'addrcpt,<added@example.test> ; addrcpt,<dsn@example.test>,NOTIFY=NEVER ; '
                                           'delrcpt,<b@example.test> ; chgfrom,<new@example.test>,BODY=8BITMIME ; noseen'},
                  rcpts=('b@example.test', 'c@example.test'))
r = one('env1')
t.check(code == 250, 'env: 250 (%s %s)' % (code, text))
t.check(r['from'] == 'new@example.test', 'sender changed: %r' % r['mail'])
t.check('BODY=8BITMIME' not in r['mail'] and
        mx.count_log(r"warning \S+ event=milter_chgfrom_args_ignored plugin=milter args=BODY=8BITMIME") == 1,
        'its ESMTP arguments ignored with a warning, as Postfix\'s cleanup does: %r' % r['mail'])
t.check(sorted(r['rcpt']) == ['added@example.test', 'c@example.test', 'dsn@example.test'],
        'recipients added and deleted: %s' % r['rcpt'])
t.check(mx.count_log(r"warning \S+ event=milter_addrcpt_args_ignored plugin=milter rcpt=dsn@example.test "
                     r"args=NOTIFY=NEVER") == 1,
        'an added recipient\'s ESMTP arguments ignored with a warning, as Postfix\'s cleanup does (a '
        'backend refusing one it does not know, 555 5.5.4, tempfailed the whole message at every retry)')

# A milter that deletes every recipient (and adds none): never DATA without RCPT to the
# backend and its "503 need RCPT" passed on; the client learns with a 550 5.1.0.
code, text = send(mx.port, 'norcpt1', {'one': 'delrcpt,<b@example.test> ; noseen'})
t.check(code == 550 and '5.1.0' in text and not be.find('Message-ID: <norcpt1@'),
        'every recipient deleted by a milter: 550 5.1.0, nothing sent on (%s %s)' % (code, text))
t.check(not [a for a in be.attempts if b'<norcpt1@' in a['data']], 'no DATA reached the backend without a recipient')
# Adding a recipient the message already has (any case) delivers once, as Postfix's
# cleanup drops duplicate recipients.
code, text = send(mx.port, 'duprcpt1', {'one': 'addrcpt,<B@example.test> ; addrcpt,<new@example.test> ; '
                                               'addrcpt,<new@example.test> ; noseen'})
r = one('duprcpt1')
t.check(code == 250 and sorted(x.lower() for x in r['rcpt']) == ['b@example.test', 'new@example.test'],
        'recipients added twice or already present are sent once: %s' % r['rcpt'])

# The first milter changes the envelope, the second discards / rejects: nothing is
# delivered, not even to the recipient the first one added.
for verdict, want in (('discard', 250), ('reject', 550), ('tempfail', 451)):
    tag = 'late-' + verdict
    code, text = send(mx.port, tag, {'one': 'addrcpt,<extra@example.test> ; add,X-One,yes ; noseen',
                                     'two': verdict + ' ; noseen'})
    t.check(code == want and not [a for a in be.attempts if (b'<%s@' % tag.encode()) in a['data']],
            'first milter adds a recipient, second says %s: %s to the client, nothing delivered (%s %s)'
            % (verdict, want, code, text))

# --- Replies: a multi-line reply code reaches the client, each line with its code.
c = t.Client(mx.port, timeout=30)
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<a@example.org>')
c.cmd('RCPT TO:<b@example.test>')
c.cmd('DATA')
c.send(t.message('ml1', 'x\r\n', headers=('X-Ops-one: reply,550,5.7.1,first line,second line',)) + b'\r\n.\r\n')
code, text = c.reply()
c.close()
lines = text.split('\n')
t.check(code == 550 and lines[0].startswith('550-5.7.1 first line') and lines[-1] == '550 5.7.1 second line',
        'a multi-line milter reply is passed on whole: %s' % lines)
t.check(not be.find('Message-ID: <ml1@'), 'multi-line reject: not delivered')

mx.stop()

# A body replaced by one that makes the message larger than limits.max_message_size:
# Postfix's cleanup refuses it (552 5.3.4 message file too big) rather than queue it, and
# mxgate must neither relay it nor buffer whatever a filter sends.
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % m1.port, 'on_error': 'tempfail', 'timeout': '30s'}])
cfg.setdefault('limits', {})['max_message_size'] = '1M'
msmall = t.Mxgate(cfg, name='mx-1m')
code, text = send(msmall.port, 'grow1', {'one': 'bodybig,3000000 ; noseen'})
t.check(code == 552 and '5.3.4' in text and not be.find('Message-ID: <grow1@'),
        'a body replaced past max_message_size (1M): 552 5.3.4, nothing relayed: %s %s' % (code, text))
t.check(msmall.count_log(r'event=milter_body_too_big') == 1, 'and logged')
code, text = send(msmall.port, 'grow2', {'one': 'bodybig,900000 ; noseen'})
t.check(code == 250 and len(be.find('Message-ID: <grow2@')) == 1, 'one that stays under it is relayed: %s' % code)
msmall.stop()
t.stop_proc(m1)
t.stop_proc(m2)
t.finish()
