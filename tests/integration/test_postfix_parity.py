#!/usr/bin/env python3
"""Reply-by-reply parity with a real Postfix smtpd: the same scripted dialogues (raw sockets)
go to a private Postfix 3.x smtpd configured as an MX (reject_non_fqdn_sender/recipient,
reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, reject_unauth_pipelining,
smtpd_helo_required, message_size_limit, smtpd_recipient_limit, relay_domains,
smtputf8_enable) and to mxgate with the equivalent config (accept_domains,
reject_non_fqdn_sender/recipient, helo_checks with `reject`, limits) in front of smtp-sink.

Each case's outcome is the replies of its steps (code; the enhanced code of a refusal), any
reply that came unasked after the last step (before the reply to a NOOP sent then), and
whether the session still answers that NOOP.
docs/postfix-parity.md holds the table: per case Postfix's outcome, mxgate's, and why where
they differ. The test checks both peers against it (a change on either side shows), and that
every row where the two differ in reply class, enhanced code or the session going on has a
reason. A case missing from the table, or a row without a case, fails.

MX_PARITY_PRINT=1 prints the observed rows in the table's format (to write the table)."""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402
from parity_dialogue import MSG, dialogue, judge, judge_rows, load_table, run  # noqa: E402

mt.need('postfix', 'smtp-sink')
mt.need_postfix()

SIZE = 20480          # message_size_limit / limits.max_message_size
RCPTS = 5             # smtpd_recipient_limit / limits.max_recipients

# ---------------------------------------------------------------- the two servers
pf_port = mt.hold_port().port
mt.postfix_instance('postfix', pf_port, '''relay_domains = example.test
mynetworks = 192.0.2.255/32
default_transport = discard
relay_transport = discard
smtpd_helo_required = yes
smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname
smtpd_sender_restrictions = reject_non_fqdn_sender
smtpd_relay_restrictions = reject_non_fqdn_recipient, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_data_restrictions = reject_unauth_pipelining
message_size_limit = {size}
header_size_limit = 10240
smtpd_recipient_limit = {rcpts}
smtputf8_enable = yes
strict_rfc821_envelopes = no
smtpd_error_sleep_time = 0
in_flow_delay = 0
'''.format(size=SIZE, rcpts=RCPTS), hostname='pf.example.test')

sink = mt.Sink()
helo_reject = {'action': 'reject'}
mx = mt.Mxgate(mt.config([sink.url], hostname='mx.example.test', workers=1,
                         limits={'max_message_size': SIZE, 'max_recipients': RCPTS},
                         accept_domains=['example.test'],
                         reject_non_fqdn_sender=True, reject_non_fqdn_recipient=True,
                         pregreet={'pipelining_action': 'enforce'},   # reject_unauth_pipelining
                         helo_checks={'enabled': True, 'syntax': helo_reject, 'not_fqdn': helo_reject,
                                      'claims_us': {'enabled': False}, 'literal_mismatch': {'enabled': False},
                                      'fcrdns': {'enabled': False}}),
               name='mx-parity')

# ---------------------------------------------------------------- the dialogues
# A case: (id, ehlo first?, steps). A step is a command line (str or bytes; CRLF added to a
# str, bytes sent as they are) answered by one reply, or ('raw', bytes, n): bytes in one
# write, n replies.
F = 'MAIL FROM:<a@example.org>'
R = 'RCPT TO:<u@example.test>'


def body(data):
    """The message after DATA's 354: dot-stuffed, the terminator appended; one reply."""
    return ('raw', mt.stuff(data), 1)


def bdat(data, last=True, size=None):
    return ('raw', b'BDAT %d%s\r\n' % (len(data) if size is None else size, b' LAST' if last else b'') + data, 1)


U8 = '\u00e4'.encode()    # a-umlaut, UTF-8
CASES = [
    # HELO / EHLO
    ('helo-noarg', False, ['HELO']),
    ('ehlo-noarg', False, ['EHLO']),
    ('helo-invalid', False, ['HELO bad_name!.example', F, R]),
    ('helo-nonfqdn', False, ['HELO localname', F, R]),
    ('helo-literal', False, ['HELO [127.0.0.1]', F, R]),
    ('helo-bad-literal', False, ['HELO [999.0.0.1]', F, R]),
    ('ehlo-two-words', False, ['EHLO one.example two.example', F, R]),
    ('helo-trailing-dot', False, ['HELO client.example.', F, R]),
    ('mail-before-helo', False, [F]),
    ('helo-again', True, ['HELO other.example', 'EHLO third.example']),
    # MAIL
    ('mail-noarg', True, ['MAIL']),
    ('mail-no-from', True, ['MAIL TO:<a@example.org>']),
    ('mail-no-brackets', True, ['MAIL FROM:a@example.org', R]),
    ('mail-null', True, ['MAIL FROM:<>', R]),
    ('mail-nonfqdn', True, ['MAIL FROM:<a@localname>', R]),
    ('mail-no-domain', True, ['MAIL FROM:<a>', R]),
    ('mail-twice', True, [F, F]),
    ('mail-unknown-param', True, [F + ' FOO=bar']),
    ('mail-size-over', True, [F + ' SIZE=%d' % (SIZE + 1)]),
    ('mail-size-at', True, [F + ' SIZE=%d' % SIZE]),
    ('mail-size-junk', True, [F + ' SIZE=12k']),
    ('mail-body-bad', True, [F + ' BODY=9BIT']),
    ('mail-body-8bit', True, [F + ' BODY=8BITMIME']),
    ('mail-binarymime', True, [F + ' BODY=BINARYMIME']),
    ('mail-ret-bad', True, [F + ' RET=SOME']),
    ('mail-ret-envid', True, [F + ' RET=HDRS ENVID=abc']),
    ('mail-smtputf8', True, [b'MAIL FROM:<' + U8 + b'@example.org> SMTPUTF8\r\n', R]),
    ('mail-8bit-no-smtputf8', True, [b'MAIL FROM:<' + U8 + b'@example.org>\r\n']),
    ('mail-bad-utf8', True, [b'MAIL FROM:<\xc3@example.org> SMTPUTF8\r\n']),
    ('mail-quoted', True, ['MAIL FROM:<"a b"@example.org>', R]),
    ('mail-literal', True, ['MAIL FROM:<a@[192.0.2.1]>', R]),
    ('mail-trailing-dot', True, ['MAIL FROM:<a@example.org.>', R]),
    ('mail-source-route', True, ['MAIL FROM:<@relay.example:a@example.org>', R]),
    ('mail-unbalanced', True, ['MAIL FROM:<a@example.org']),
    ('mail-double-at', True, ['MAIL FROM:<a@b@example.org>']),
    ('mail-long-local', True, ['MAIL FROM:<%s@example.org>' % ('l' * 65), R]),
    ('mail-gmail-forward', True, ['MAIL FROM:<gmailuser+caf_=website_8b506e99-b5c5-4e14-8294-f5ebd6083faa='
                                  'mail.example.test@gmail.com> SIZE=10569', R]),
    ('mail-size-21-digits', True, [F + ' SIZE=' + '9' * 21]),
    ('mail-auth-param', True, [F + ' AUTH=<>']),
    # RCPT
    ('rcpt-before-mail', True, [R]),
    ('rcpt-noarg', True, [F, 'RCPT']),
    ('rcpt-no-to', True, [F, 'RCPT FROM:<u@example.test>']),
    ('rcpt-no-brackets', True, [F, 'RCPT TO:u@example.test']),
    ('rcpt-null', True, [F, 'RCPT TO:<>']),
    ('rcpt-relay', True, [F, 'RCPT TO:<u@other.example>']),
    ('rcpt-nonfqdn', True, [F, 'RCPT TO:<u@localname>']),
    ('rcpt-no-domain', True, [F, 'RCPT TO:<user>']),
    ('rcpt-postmaster', True, [F, 'RCPT TO:<Postmaster>']),
    ('rcpt-percent-hack', True, [F, 'RCPT TO:<u%other.example@example.test>']),
    ('rcpt-bang-path', True, [F, 'RCPT TO:<other.example!u@example.test>']),
    ('rcpt-source-route', True, [F, 'RCPT TO:<@hop.example:u@example.test>']),
    ('rcpt-quoted', True, [F, 'RCPT TO:<"u x"@example.test>']),
    ('rcpt-quoted-at', True, [F, 'RCPT TO:<"u@other.example"@example.test>']),
    ('rcpt-literal', True, [F, 'RCPT TO:<u@[192.0.2.1]>']),
    ('rcpt-trailing-dot', True, [F, 'RCPT TO:<u@example.test.>']),
    ('rcpt-8bit-no-smtputf8', True, [F, b'RCPT TO:<' + U8 + b'@example.test>\r\n']),
    ('rcpt-unknown-param', True, [F, R + ' FOO=1']),
    ('rcpt-notify-bad', True, [F, R + ' NOTIFY=SOMETIMES']),
    ('rcpt-orcpt', True, [F, R + ' NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@example.test']),
    ('rcpt-too-many', True, [F] + ['RCPT TO:<u%d@example.test>' % i for i in range(RCPTS + 1)]),
    ('rcpt-long-local', True, [F, 'RCPT TO:<%s@example.test>' % ('l' * 65)]),
    ('rcpt-unbalanced', True, [F, 'RCPT TO:<u@example.test']),
    # DATA
    ('data-no-mail', True, ['DATA']),
    ('data-no-rcpt', True, [F, 'DATA']),
    ('data-ok', True, [F, R, 'DATA', body(MSG)]),
    ('data-size-over', True, [F, R, 'DATA', body(MSG + (b'x' * 70 + b'\r\n') * (SIZE // 72 + 10))]),
    ('data-nul', True, [F, R, 'DATA', body(MSG + b'a\x00b\r\n')]),
    ('data-bare-lf', True, [F, R, 'DATA', body(MSG + b'one\ntwo\r\n')]),
    ('data-bare-cr', True, [F, R, 'DATA', body(MSG + b'one\rtwo\r\n')]),
    ('data-long-line', True, [F, R, 'DATA', body(MSG + b'y' * 1500 + b'\r\n')]),
    ('data-8bit-body', True, [F, R, 'DATA', body(MSG + U8 + b'\r\n')]),
    ('data-arg', True, [F, R, 'DATA now']),
    ('data-after-rcpt-refused', True, [F, 'RCPT TO:<u@other.example>', 'DATA']),
    ('pipelined-data-after-helo', False, ['HELO client.example.test',
                                          ('raw', ('%s\r\n%s\r\nDATA\r\n' % (F, R)).encode(), 3)]),
    ('pipelined-data-after-ehlo', True, [('raw', ('%s\r\n%s\r\nDATA\r\n' % (F, R)).encode(), 3), body(MSG)]),
    # BDAT
    ('bdat-before-mail', True, [bdat(b'abc\r\n')]),
    ('bdat-noarg', True, [F, R, 'BDAT']),
    ('bdat-bad-size', True, [F, R, 'BDAT x LAST']),
    ('bdat-ok', True, [F, R, bdat(MSG)]),
    ('bdat-two-chunks', True, [F, R, bdat(MSG[:20], last=False), bdat(MSG[20:])]),
    ('bdat-zero-last', True, [F, R, bdat(MSG, last=False), bdat(b'')]),
    ('bdat-no-rcpt', True, [F, bdat(MSG)]),
    ('bdat-then-data', True, [F, R, bdat(MSG[:20], last=False), 'DATA']),
    ('bdat-over-size', True, [F, R, bdat(b'z' * (SIZE + 100))]),
    ('bdat-bad-keyword', True, [F, R, 'BDAT 3 FINAL']),
    ('bdat-bad-size-with-chunk', True, [F, R, ('raw', b'BDAT x LAST\r\nNOOP\r\n', 1)]),  # the chunk reads as a command
    # other verbs
    ('vrfy-noarg', True, ['VRFY']),
    ('vrfy-arg', True, ['VRFY u@example.test']),
    ('expn-arg', True, ['EXPN staff']),
    ('help', True, ['HELP']),
    ('help-arg', True, ['HELP MAIL']),
    ('noop-arg', True, ['NOOP anything']),
    ('rset-arg', True, [F, 'RSET now', R]),
    ('quit-arg', True, ['QUIT now']),
    ('unknown-verb', True, ['FOO bar']),
    ('empty-line', True, ['']),
    ('lower-case-verbs', True, ['mail from:<a@example.org>', 'rcpt to:<u@example.test>']),
    ('etrn', True, ['ETRN example.test']),
    ('turn', True, ['TURN']),
    ('auth-no-tls', True, ['AUTH PLAIN AGFsaWNlAHNlY3JldA==']),
    ('starttls-not-offered', True, ['STARTTLS']),
    ('xclient', True, ['XCLIENT ADDR=192.0.2.9']),
    # line-level
    ('long-command', True, ['NOOP ' + 'n' * 1200]),
    ('very-long-command', True, ['NOOP ' + 'n' * 5000]),
    ('long-mail', True, ['MAIL FROM:<%s@example.org>' % ('m' * 1000)]),
    ('nul-in-command', True, [b'NOOP a\x00b\r\n']),
    ('bare-lf-command', True, [b'NOOP\n']),
    ('bare-cr-command', True, [b'NOOP\rNOOP\r\n']),
    ('space-before-verb', True, [' NOOP']),
    ('space-before-json', True, [' {"jsonrpc":"2.0"}']),
    ('tab-only-line', True, ['\t']),
    # a TAB where the verb ends (session 23: until then an unknown verb, and BDAT's chunk
    # was then read as commands)
    ('ehlo-tab', False, [b'EHLO\tclient.example.test\r\n', F, R]),
    ('mail-tab', True, [b'MAIL\tFROM:<a@example.org>\r\n', R]),
    ('rcpt-tab', True, [F, b'RCPT\tTO:<u@example.test>\r\n']),
    ('data-tab', True, [F, R, b'DATA\t\r\n', body(MSG)]),
    ('bdat-tab', True, [F, R, ('raw', b'BDAT\t%d LAST\r\n' % len(MSG) + MSG, 1)]),
    ('bdat-tab-last', True, [F, R, ('raw', b'BDAT %d\tLAST\r\n' % len(MSG) + MSG, 1)]),
    ('quit-tab', True, [b'QUIT\t\r\n']),
    # ... and before a MAIL or RCPT parameter (session 24: until then 501 5.5.4 here)
    ('mail-tab-param', True, [b'MAIL FROM:<a@example.org>\tSIZE=10\r\n', R]),
    ('rcpt-tab-param', True, [F, b'RCPT TO:<u@example.test>\tNOTIFY=NEVER\r\n']),
    ('non-letter-command', True, ['{"jsonrpc":"2.0"}']),
    ('http-command', False, ['GET / HTTP/1.0']),
]

table = {k: v for k, v in load_table().items() if not k.startswith('dns-')}   # dns-: the DNS test
differ = 0
for cid, ehlo, steps in CASES:
    t0 = time.time()
    pf = run(pf_port, ehlo, steps)
    t1 = time.time()
    mxr = run(mx.port, ehlo, steps)
    if os.environ.get('MX_PARITY_TIME'):
        mt.say('%s: postfix %.2fs mxgate %.2fs' % (cid, t1 - t0, time.time() - t1))
    differ += not judge(cid, dialogue(ehlo, steps), pf, mxr, table)
judge_rows(table, [c[0] for c in CASES])
mt.check(len(CASES) >= 60, '%d cases' % len(CASES))
mt.say('%d cases, %d differ in class, enhanced code or the session going on' % (len(CASES), differ))
mx.stop()
mt.finish()
