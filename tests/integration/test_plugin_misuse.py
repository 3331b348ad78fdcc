#!/usr/bin/env python3
"""A shared-object plugin that breaks the contract the way a first plugin does, against the
running daemon: done() twice in one hook (a forgotten `return` after `host->done(...)`, as
in the docs' example), host calls after its done(), a verdict out of range, and a reply whose
enhanced status code is of another class than the SMTP code. The process survives each
(a second done() used to free the call twice: SIGSEGV at end of data), the first verdict
stands, the misuse is logged, and the client's reply is consistent RFC 3463 (`451 4.x.x`,
`550 5.x.x`). A body replaced or headers added past limits.max_message_size are refused."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need()

SRC = r'''#include <stdio.h>
#include <string.h>
#include "plugin.h"
static const struct mxgate_host *host;
static int m_init(const struct mxgate_host *h, const struct mxgate_plugin_args *a, void **i,
    char *e, size_t el) { host = h; *i = 0; return 0; }
static int is(const char *r, const char *w) { return r && strncmp(r, w, strlen(w)) == 0; }
static void m_rcpt(void *i, struct mxgate_call *c)
{
	const char *r = host->get(c, MXGATE_RCPT);
	if (is(r, "twice")) {
		host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
		host->done(c, MXGATE_REJECT, 550, "5.7.1 second done", "misuse");
		return;
	}
	if (is(r, "tf5"))
		return host->done(c, MXGATE_TEMPFAIL, 0, "5.7.1 tempfail text of class 5", "misuse");
	if (is(r, "rej4"))
		return host->done(c, MXGATE_REJECT, 0, "4.7.1 reject text of class 4", "misuse");
	if (is(r, "code450rej"))
		return host->done(c, MXGATE_REJECT, 450, "5.7.1 code 450 with a 5.x.x", "misuse");
	if (is(r, "notenh"))
		return host->done(c, MXGATE_TEMPFAIL, 0, "1.5 million reasons", "misuse");
	if (is(r, "code250"))
		return host->done(c, MXGATE_REJECT, 250, "2.0.0 not a refusal", "misuse");
	if (is(r, "logtext")) {   /* Haraka's this.loginfo("...") */
		host->log(c, 1, "checked recipient %s, all fine", r);
		host->log(c, 1, "event=Bad-Name text=x");
		host->log(c, 1, "event=rcpt_checked rcpt=%s", r);
		return host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
	}
	if (is(r, "badaction"))
		return host->done(c, (enum mxgate_action)99, 0, NULL, "misuse");
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
static void m_helo(void *i, struct mxgate_call *c)
{
	const char *h = host->get(c, MXGATE_HELO);
	if (is(h, "discard"))   /* there is no message yet to discard */
		return host->done(c, MXGATE_DISCARD, 0, NULL, "misuse");
	if (is(h, "quarantine"))
		return host->done(c, MXGATE_QUARANTINE, 0, NULL, "misuse");
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
static void m_eom(void *i, struct mxgate_call *c)
{
	const char *r = host->rcpt_at(c, 0);
	if (is(r, "eomtwice")) {
		host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
		host->add_header(c, "X-After-Done", "yes");
		host->add_symbol(c, "AFTER_DONE", 1.0, NULL);
		host->done(c, MXGATE_REJECT, 0, NULL, NULL);
		return;
	}
	if (is(r, "eombig")) {
		static char big[2000000];
		const char *max = host->get(c, MXGATE_MAX_SIZE);
		memset(big, 'b', sizeof(big));
		host->add_header(c, "X-Replace", host->replace_body(c, big, sizeof(big)) < 0 ? "refused" : "done");
		host->add_header(c, "X-Max", max ? max : "none");
	}
	if (is(r, "eomhdr")) {
		static char val[1000];
		memset(val, 'h', sizeof(val) - 1);
		for (int k = 0; k < 3000; k++)
			host->add_header(c, "X-Many", val);
	}
	if (is(r, "eomrcpts")) {   /* far more recipients than limits.max_recipients */
		char a[64];
		for (int k = 0; k < 100000; k++) {
			snprintf(a, sizeof(a), "added%d@example.test", k);
			host->add_rcpt(c, a, NULL);
		}
	}
	if (is(r, "eomtwoadd")) {  /* within the bound, one of them twice and one the client's */
		host->add_rcpt(c, "extra@example.test", NULL);
		host->add_rcpt(c, "EXTRA@example.test", NULL);
		host->add_rcpt(c, "eomtwoadd@example.test", NULL);
	}
	if (is(r, "eomdels")) {    /* more deletions than twice limits.max_recipients */
		char a[64];
		for (int k = 0; k < 100000; k++) {
			snprintf(a, sizeof(a), "gone%d@example.test", k);
			host->del_rcpt(c, a);
		}
	}
	host->add_header(c, "X-Misuse", "checked");
	host->done(c, MXGATE_CONTINUE, 0, NULL, NULL);
}
const struct mxgate_plugin mxgate_plugin = { .abi_version = MXGATE_PLUGIN_ABI_VERSION,
    .name = "misuse", .init = m_init, .on_helo = m_helo, .on_rcpt = m_rcpt, .on_eom = m_eom };
'''

so = t.build_plugin('misuse', SRC)

be = t.Backend()
cfg = t.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'misuse', 'path': so, 'on_error': 'tempfail', 'timeout': '10s'}])
cfg.setdefault('limits', {})['max_message_size'] = '1M'
m = t.Mxgate(cfg)


def rcpt_reply(local):
    c = t.Client(m.port, timeout=15)
    c.ehlo('client.example.org')
    c.cmd('MAIL FROM:<a@example.org>')
    rep = c.cmd('RCPT TO:<%s@example.test>' % local)
    c.cmd('QUIT')
    c.close()
    return rep


def send(local, tag):
    return t.send_mail(m.port, 'a@example.org', ['%s@example.test' % local], t.message(tag, 'body of %s\r\n' % tag),
                       timeout=30)


code, text = send('twice', 'm-twice')
got = be.find('body of m-twice')
t.check(m.alive() and code == 250 and len(got) == 1, 'done() twice at RCPT: the first (continue) stands: %s %s' % (code, text))
t.check(m.count_log(r'event=plugin_bad_output plugin=misuse what=done_twice') >= 1, 'and the second is logged')

code, text = send('eomtwice', 'm-eomtwice')
got = be.find('body of m-eomtwice')
t.check(m.alive(), 'done() twice at end of data, with host calls between: the process lives')
t.check(code == 250 and len(got) == 1 and b'X-After-Done' not in got[0]['data'],
        'the first verdict (continue) stands, the calls after it do nothing: %s %s' % (code, text))
code, text = send('ok', 'm-ok')
got = be.find('body of m-ok')
t.check(code == 250 and len(got) == 1 and b'X-Misuse: checked' in got[0]['data'], 'the next message as usual: %s' % code)

for local, want in (('tf5', '451 4.7.1 tempfail text of class 5'), ('rej4', '550 5.7.1 reject text of class 4'),
                    ('code450rej', '550 5.7.1 code 450 with a 5.x.x')):
    rep = rcpt_reply(local)
    t.check(rep == (int(want[:3]), want), '%s: the enhanced code of the reply\'s class: %s' % (local, rep))
rep = rcpt_reply('notenh')
t.check(rep == (451, '451 4.0.0 1.5 million reasons'),
        'a text that only looks like a code is left alone, an enhanced code (4.0.0) put before it: %s' % (rep,))
rep = rcpt_reply('code250')
t.check(rep == (550, '550 5.0.0 not a refusal'), 'code 250 with reject: 550 5.0.0: %s' % (rep,))
code, text = send('eombig', 'm-eombig')
got = be.find('body of m-eombig')
t.check(code == 250 and len(got) == 1 and b'X-Replace: refused' in got[0]['data'] and
        b'X-Max: 1048576' in got[0]['data'] and len(got[0]['data']) < 10000,
        'replace_body past limits.max_message_size (1M) is refused (-1), the body kept; MXGATE_MAX_SIZE says 1048576')
t.check(m.count_log(r'event=plugin_bad_output plugin=misuse what=body_too_big') == 1, 'and logged')
# Added headers are bounded the same way: 3,000 headers of 1,000 octets (3 MB) used to be
# kept and relayed past the 1M limit; those past it are dropped and logged once per message.
code, text = send('eomhdr', 'm-eomhdr')
got = be.find('body of m-eomhdr')
t.check(code == 250 and len(got) == 1 and len(got[0]['data']) <= 1048576 + 1024 and  # + our Received
        0 < got[0]['data'].count(b'X-Many: hhh') < 3000,
        'headers added past limits.max_message_size are dropped, the message within it: %s %s %s' %
        (code, text, len(got[0]['data']) if got else None))
t.check(m.count_log(r'event=plugin_bad_output plugin=misuse what=header_too_big') == 1,
        'and logged once for the message')
# A plugin's add_rcpt is bounded as a milter's is (one path, hook_env_add_rcpt): 100,000
# added recipients were each kept and compared with the envelope's, and every one was a RCPT
# to the backend; past limits.max_recipients (100) the message is tempfailed, nothing relayed.
code, text = send('eomrcpts', 'm-eomrcpts')
t.check(code == 451 and '4.5.3' in text and not be.find('body of m-eomrcpts'),
        'a plugin adding 100000 recipients (limits.max_recipients 100): 451 4.5.3, not relayed: %s %s' % (code, text))
t.check(m.count_log(r'event=plugin_too_many_rcpts plugin=misuse max=100') == 1, 'logged as too many recipients added')
code, text = send('eomtwoadd', 'm-eomtwoadd')
got = be.find('body of m-eomtwoadd')
rcpts = sorted(r.lower() for r in got[0]['rcpt']) if got else None
t.check(code == 250 and rcpts == ['eomtwoadd@example.test', 'extra@example.test'],
        'recipients added twice, or the envelope\'s own, go once: %s %s' % (code, rcpts))
code, text = send('eomdels', 'm-eomdels')
t.check(code == 451 and '4.7.1' in text and not be.find('body of m-eomdels'),
        '100000 deletions (more than twice limits.max_recipients) are the plugin\'s error (on_error tempfail): %s %s'
        % (code, text))
# DISCARD or QUARANTINE at HELO, where there is no message: the plugin's error (on_error),
# as Postfix judges a milter's ("DISCARD action is not allowed for connect or helo") and
# mxgate's milter client does; it was taken as an accept of the stage, silently, and the
# session's messages were delivered.
for helo in ('discard.example.org', 'quarantine.example.org'):
    start = m.log_size()
    c = t.Client(m.port, timeout=15)
    rep = c.ehlo(helo)
    c.close()
    t.check(rep == (451, '451 4.3.0 HELO check unavailable, please try again later'), '%s at HELO: on_error tempfail: %r' % (helo.split('.')[0], rep))
    t.check(m.wait_log(r'event=plugin_bad_output plugin=misuse what=%s_before_mail' % helo.split('.')[0], 5, start),
            'and logged as the plugin\'s bad output')
# A free text logged as Haraka's this.loginfo() is written is one key=value of the line
# (text="..."), as is a text whose event= name is not one (the log's contract form).
start = m.log_size()
rep = rcpt_reply('logtext')
t.check(rep[0] == 250, 'a plugin that logs: %r' % (rep,))
t.check(m.wait_log(r'event=plugin_log plugin=misuse text="checked recipient logtext@example.test, all fine"', 5, start),
        'a free text is logged as text="..."')
t.check(m.wait_log(r'event=plugin_log plugin=misuse text="event=Bad-Name text=x"', 5, start),
        'a text whose event name is not one too')
t.check(m.wait_log(r'event=rcpt_checked plugin=misuse rcpt=logtext@example.test', 5, start),
        'an event= line of the plugin\'s own is kept as written, plugin= put after its name')
t.check(not m.malformed_log_lines(), 'every log line in the contract form: %s' % m.malformed_log_lines()[:3])
rep = rcpt_reply('badaction')
t.check(rep[0] == 451, 'a verdict out of range is the plugin\'s error (on_error tempfail): %s' % (rep,))
t.check(m.alive(), 'the process lives through all of it')
m.stop()
t.finish()
