#!/usr/bin/env python3
"""The reply text a shared-object plugin hands to done() as a Haraka plugin author writes it
(Haraka's next(DENY, msg) takes any string): one ending in CRLF ("...\\r\\n", a C habit), empty
lines between lines, control characters (a terminal colour, a bell, DEL, a lone CR or LF, C1
controls, bytes that are no UTF-8: each shown as '?', as a backend's reply text), a code in the text
("550 5.7.1 ..."), none at all ("No such user", Haraka's usual), and 421 (Haraka's DENYSOFTDISCONNECT). The client always reads one
complete reply of printable text, every line with the reply's code, and is never left
waiting for the last line of a reply."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include <string.h>
#include "plugin.h"
static const struct mxgate_host *host;
static int r_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static int is(const char *r, const char *w) { return r && strncmp(r, w, strlen(w)) == 0; }
static void r_rcpt(void *i, struct mxgate_call *c)
{
	const char *r = host->get(c, MXGATE_RCPT);
	if (is(r, "crlfend"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 Ends with CRLF\r\n", "replies");
	if (is(r, "lfend"))
		return host->done(c, MXGATE_TEMPFAIL, 451, "4.7.1 Ends with LF\n", "replies");
	if (is(r, "twoend"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 First line\r\n5.7.1 Second line\r\n\r\n", "replies");
	if (is(r, "blank"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 Above\r\n\r\n5.7.1 Below", "replies");
	if (is(r, "onlycrlf"))
		return host->done(c, MXGATE_REJECT, 550, "\r\n", "replies");
	if (is(r, "ctl"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 \x1b[31mred\x1b[0m bell\x07 del\x7f tab\tend", "replies");
	if (is(r, "c1"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 csi\xc2\x9b" "31m raw\x9b" " latin\xe9" " utf8 \xc3\xa9" " end", "replies");
	if (is(r, "loneends"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 lone\rcr lone\nRCPT TO:<x@example.test>", "replies");
	if (is(r, "spacedreason"))
		return host->done(c, MXGATE_REJECT, 550, "5.7.1 Refused", "two words stage=\"eom\"");
	if (is(r, "withcode"))
		return host->done(c, MXGATE_REJECT, 0, "554 5.7.1 Code in the text", "replies");
	if (is(r, "plain"))
		return host->done(c, MXGATE_REJECT, 550, "No such user here", "replies");
	if (is(r, "softplain"))
		return host->done(c, MXGATE_TEMPFAIL, 450, "Mailbox busy\r\n4.2.1 Try later\r\nreally", "replies");
	if (is(r, "mixed"))
		return host->done(c, MXGATE_REJECT, 0, "5.1.1 Unknown user\r\nsee the web page", "replies");
	if (is(r, "close421"))
		return host->done(c, MXGATE_TEMPFAIL, 421, "4.7.0 Closing, come back later", "replies");
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "replies", .init = r_init, .on_rcpt = r_rcpt };
'''

so = t.build_plugin('replies', SRC)

be = t.Backend()
m = t.Mxgate(t.config([be.url], hostname='mx.example.test', workers=1, plugins=[
    {'name': 'replies', 'path': so, 'on_error': 'tempfail', 'timeout': '10s'}]))


def rcpt(local):
    """The RCPT reply, whether the session still answers after it, and the raw bytes."""
    c = t.Client(m.port, timeout=5)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    rep = c.cmd('RCPT TO:<%s@example.test>' % local)
    after = c.cmd('NOOP')
    c.close()
    return rep, after


cases = (
    ('crlfend', (550, '550 5.7.1 Ends with CRLF')),
    ('lfend', (451, '451 4.7.1 Ends with LF')),
    ('twoend', (550, '550-5.7.1 First line\n550 5.7.1 Second line')),
    ('blank', (550, '550-5.7.1 Above\n550 5.7.1 Below')),
    ('onlycrlf', (550, '550 5.7.1 Command rejected')),
    # every octet that is no text as '?', as a backend's reply (smtp_reply.c, Postfix's
    # printable()): ESC, BEL, DEL, TAB, a lone CR or LF, a C1 control (raw or in UTF-8) and a
    # byte that is no UTF-8; UTF-8 text stays
    ('ctl', (550, '550 5.7.1 ?[31mred?[0m bell? del? tab?end')),
    ('c1', (550, '550 5.7.1 csi??31m raw? latin? utf8 \u00e9 end')),
    ('loneends', (550, '550 5.7.1 lone?cr lone?RCPT TO:<x@example.test>')),
    ('spacedreason', (550, '550 5.7.1 Refused')),
    ('withcode', (550, '550 5.7.1 Code in the text')),
    # Haraka's next(DENY, 'No such user here') has no enhanced status code; mxgate announces
    # ENHANCEDSTATUSCODES, so each line gets one (RFC 2034): X.0.0, or the line's above.
    ('plain', (550, '550 5.0.0 No such user here')),
    ('softplain', (450, '450-4.0.0 Mailbox busy\n450-4.2.1 Try later\n450 4.2.1 really')),
    ('mixed', (550, '550-5.1.1 Unknown user\n550 5.1.1 see the web page')),
)
for local, want in cases:
    rep, after = rcpt(local)
    t.check(rep == want, '%s: one complete reply %r (got %r)' % (local, want, rep))
    t.check(after[0] == 250, '%s: and the session goes on (NOOP: %r)' % (local, after))

# 421 is "closing the transmission channel" (RFC 5321 4.2.2; Haraka's DENYSOFTDISCONNECT):
# the connection ends after it, as after a milter's 421.
c = t.Client(m.port, timeout=5)
c.ehlo('client.example.org')
c.cmd('MAIL FROM:<a@example.org>')
rep = c.cmd('RCPT TO:<close421@example.test>')
t.check(rep == (421, '421 4.7.0 Closing, come back later'), '421 reaches the client: %r' % (rep,))
t.check(c.is_closed(), 'and the connection is closed after it')
c.close()

t.check(m.alive(), 'the process lives through all of it')
t.check(not m.malformed_log_lines(), 'every log line in the contract form: %s' % m.malformed_log_lines()[:3])
# a plugin's reason is one value of the log line, however it is written (a "short log word"
# by plugin.h, but a plugin's text all the same), never a field of its own: whole and quoted
# in the plugin_verdict line, a word in the session's reject line
t.check(m.count_log(r'event=reject stage=rcpt reason=two_words_stage__eom_ client=') == 1 and
        m.count_log(r'event=plugin_verdict .*reason="two words stage=\\"eom\\"" ') == 1,
        'a reason with blanks and quotes: no field of its own in the log lines')
m.stop()
t.finish()
