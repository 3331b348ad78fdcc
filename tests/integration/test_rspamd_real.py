#!/usr/bin/env python3
"""mxgate's rspamd entry (use_action: true) against a running rspamd 3.4, and the same
messages through rspamd's own milter gateway (its proxy worker in milter mode, scanning
itself) as a `milter` entry, side by side. rspamd is Debian's package unpacked into
/opt/mxgate-peers/rspamd by scripts/install-deps.sh (installed, its package's scripts would
start a system rspamd; it runs against the system's libhs.so.5, docs/testing.md), its stock
configuration with tests/peers/rspamd/ as the local one: offline (no DNS answers, no RBL,
no fuzzy, no Redis), milter_headers' common routines, dkim_signing for example.org with a
key made here, and a rule (rspamd.local.lua) that forces an action or a milter reply by a
word in the Subject. Checks: each action (reject, soft reject, rewrite subject, add header,
greylist, no action), milter_headers' fields, the DKIM-Signature reaching the backend and
verifying, the envelope changes, discard, quarantine, no_action, spam_header, a body a Lua
rule rewrote (the reply's body block, also with the discard action), add_headers' negative
orders (also after remove_headers of the same name) and orders that are no number, an
smtp_message holding a CRLF or a bare LF (a well-formed reply), rspamd's discard and
quarantine actions, a STARTTLS client's hop (RCVD_TLS_ALL both ways: TLS-Cipher), options.settings_id (rspamd's
Settings-ID: a settings rule by id, tests/peers/rspamd/local.d/settings.conf), and a proxy worker's renamed spam_header (a second milter worker with
X-Spam-Flag against an entry with options.spam_header); and where mxgate's entry and
rspamd's milter differ (printed; docs/plugins.md's table)."""
import base64
import glob
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

ROOT = os.environ.get('MX_RSPAMD_ROOT', '/opt/mxgate-peers/rspamd')
mt.need(ROOT + '/usr/bin/rspamd', 'openssl', 'redis-server')
HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL = os.path.join(os.path.dirname(HERE), 'peers', 'rspamd')


def start_rspamd():
    """rspamd's normal worker and its milter-mode proxy on held ports; waits for both."""
    normal, milter, milter2 = mt.hold_port().port, mt.hold_port().port, mt.hold_port().port
    redis = mt.redis()                    # the greylist module's store
    d = os.path.join(mt.TMP, 'rspamd')
    for sub in ('db', 'run', 'log'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    key = os.path.join(d, 'db', 'example.org.mxtest.key')
    subprocess.run(['openssl', 'genrsa', '-out', key, '2048'], check=True, capture_output=True)
    der = subprocess.run(['openssl', 'rsa', '-in', key, '-pubout', '-outform', 'DER'], check=True,
                         capture_output=True).stdout
    share = ROOT + '/usr/share/rspamd'
    var = {'CONFDIR': ROOT + '/etc/rspamd', 'LOCAL_CONFDIR': LOCAL, 'RULESDIR': share + '/rules',
           'LUALIBDIR': share + '/lualib', 'PLUGINSDIR': share + '/plugins', 'SHAREDIR': share,
           'WWWDIR': share + '/www', 'DBDIR': d + '/db', 'RUNDIR': d + '/run', 'LOGDIR': d + '/log',
           'NORMAL_PORT': normal, 'MILTER_PORT': milter, 'MILTER2_PORT': milter2, 'DNS_PORT': mt.dead_port(),
           'REDIS_PORT': redis.port}
    argv = ['env', 'LD_LIBRARY_PATH=' + ROOT + '/usr/lib/rspamd', ROOT + '/usr/bin/rspamd', '-f', '-i',
            '-c', os.path.join(LOCAL, 'rspamd.conf')] + ['--var=%s=%s' % kv for kv in var.items()]
    p = mt.start_peer(argv, 'rspamd', normal, timeout=mt.slack(60))
    mt.check(mt.wait_port(milter, mt.slack(60), proc=p), 'rspamd: its milter worker listens')
    mt.check(mt.wait_port(milter2, mt.slack(60), proc=p), 'rspamd: its second milter worker listens')
    p.milter, p.milter2 = milter, milter2
    p.pubkey = base64.b64encode(der).decode()
    p.log = os.path.join(d, 'log', 'rspamd.log')
    return p


rs = start_rspamd()
be = mt.Backend()
qd = os.path.join(mt.TMP, 'quarantine')
entry = {'name': 'rspamd', 'address': '127.0.0.1:%d' % rs.port, 'on_error': 'tempfail', 'timeout': '30s',
         'options': {'use_action': True}}
gateway = {'name': 'milter', 'address': 'inet:127.0.0.1:%d' % rs.milter, 'on_error': 'tempfail', 'timeout': '30s'}
mx = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[entry], quarantine='maildir:' + qd),
               name='mx-rspamd')
mm = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[gateway], quarantine='maildir:' + qd),
               name='mx-milter')
# rspamd's milter with its spam_header renamed, and an entry told the same
entry2 = dict(entry, options={'use_action': True, 'spam_header': 'X-Spam-Flag'})
gateway2 = dict(gateway, address='inet:127.0.0.1:%d' % rs.milter2)
mx2 = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[entry2]), name='mx-rspamd2')
mm2 = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[gateway2]), name='mx-milter2')


def send(m, tag, rcpts=('b@example.test',), headers=()):
    return mt.send_mail(m.port, 'sender@example.org', list(rcpts), mt.message(tag, headers=headers), timeout=60)


def delivered(tag):
    got = be.by_tag(tag)
    return got[0] if got else None


def body(tag):
    got = delivered(tag)
    return got['data'].split(b'\r\n\r\n', 1)[1] if got else None


def fields(tag):
    got = delivered(tag)
    h = got['data'].split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace') if got else ''
    return [(g.group(1), re.sub(r'\r\n[ \t]+', ' ', g.group(2)))
            for g in re.finditer(r'(?m)^([^\s:]+):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', h)]


def values(f, name):
    return [v for n, v in f if n.lower() == name.lower()]


def quarantined(tag):
    for p in glob.glob(qd + '/new/*'):
        with open(p, 'rb') as fh:
            if ('<%s@mxtest.example>' % tag).encode() in fh.read():
                return True
    return False


def dkim_verifies(data):
    """dkimpy (python3-dkim, under Debian's python3) with the key made here as the DNS record."""
    src = ('import dkim, sys\nrec = b"v=DKIM1; k=rsa; p=%s"\n'
           'ok = dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda name, timeout=5: rec)\n'
           'sys.exit(0 if ok else 1)\n' % rs.pubkey)
    r = subprocess.run(['/usr/bin/python3', '-c', src], input=data, capture_output=True)
    return r.returncode == 0, r.stderr.decode(errors='replace')[-300:]


# Each case: (word in the Subject, what mxgate's entry must do). Sent through both daemons;
# the outcome (SMTP code, delivered or not, the header names in order) compared.
outcome = {}
# SCORE-GREYLIST last: the greylist module then holds back every later message of the same
# sender and client network until its timeout (5 min)
WORDS = ('HAM', 'FORCE-REJECT', 'FORCE-SOFT', 'FORCE-REWRITE', 'FORCE-ADDHDR', 'FORCE-GREYLIST',
         'FORCE-ENVELOPE', 'FORCE-DISCARD', 'FORCE-QUARANTINE', 'FORCE-NOACT', 'FORCE-SPAMHDR', 'FORCE-BODY',
         'FORCE-ORDER', 'FORCE-ACT-DISCARD', 'FORCE-ACT-QUARANTINE', 'FORCE-OTYPE', 'FORCE-RMORDER',
         'FORCE-RMALL', 'FORCE-BODY-DISCARD', 'SCORE-GREYLIST')
# the renamed spam_header: these through the second pair
WORDS2 = ('FORCE-ADDHDR', 'FORCE-SPAMHDR')
# FORCE-ORDER's message keeps its last fields (a forged field the reply removes would hide
# where an insert counted from the end went)
HEADERS = {'FORCE-ORDER': ('X-Keep-A: a', 'X-Keep-B: b'), 'FORCE-OTYPE': ('X-Keep-A: a', 'X-Keep-B: b'),
           'FORCE-RMORDER': ('X-Dup: d1', 'X-Dup: d2', 'X-Keep-B: b'),
           'FORCE-RMALL': ('X-Dup: d1', 'X-Dup: d2', 'X-Keep-B: b')}
RUNS = [(w, 'entry', mx) for w in WORDS] + [(w, 'milter', mm) for w in WORDS] + \
    [(w, 'entry2', mx2) for w in WORDS2] + [(w, 'milter2', mm2) for w in WORDS2]
RUNS.sort(key=lambda r: r[0] == 'SCORE-GREYLIST')
for word, label, m in RUNS:
    tag = '%s-%s' % (word, label)
    rcpts = ('b@example.test', 'gone@example.test') if word == 'FORCE-ENVELOPE' else ('b@example.test',)
    forged = ('X-Spam-Flag: forged',) if label.endswith('2') else ('X-Spam: forged', 'X-Spamd-Result: forged')
    code, text = send(m, tag, rcpts, headers=HEADERS.get(word, forged))
    if code == 250:
        mt.wait_for(lambda: delivered(tag) or quarantined(tag) or 'DISCARD' in word, timeout=mt.slack(10))
    got = delivered(tag)
    outcome[(word, label)] = (code, text, got, fields(tag))

for word, (code, text, got, f) in ((w, outcome[(w, 'entry')]) for w in ('HAM',)):
    names = [n for n, _ in f]
    mt.check(code == 250 and got is not None, 'no action: relayed: %s %s' % (code, text))
    mt.check(names[:2] == ['Received', 'DKIM-Signature'],
             "dkim_signing's signature (the reply's top-level dkim-signature) inserted below mxgate's Received: %s"
             % names[:4])
    ok, err = dkim_verifies(got['data'] if got else b'')
    mt.check(ok, 'the DKIM-Signature verifies at the backend (dkimpy): %s' % err)
    mt.check(values(f, 'X-Rspamd-Server') == ['rspamd.mxtest'] and len(values(f, 'X-Rspamd-Queue-Id')) == 1,
             "milter_headers' X-Rspamd-Server and X-Rspamd-Queue-Id added: %s" % names)
    mt.check(len(values(f, 'X-Spamd-Result')) == 1 and values(f, 'X-Spamd-Result')[0].startswith('default: False'),
             "milter_headers' X-Spamd-Result added, the forged one removed: %s" % values(f, 'X-Spamd-Result'))
    mt.check(values(f, 'X-Spam') == [], 'no action: the forged X-Spam removed (the reply removes X-Spam 0)')
    mt.check(any(v.startswith('vm;') or ';' in v for v in values(f, 'Authentication-Results')),
             "milter_headers' Authentication-Results added: %s" % values(f, 'Authentication-Results'))

code, text, got, f = outcome[('FORCE-REJECT', 'entry')]
mt.check(code == 550 and '5.7.1 mxtest says no' in text and got is None,
         'reject: 550 5.7.1 with rspamd\'s smtp_message: %s %s' % (code, text))
code, text, got, f = outcome[('FORCE-SOFT', 'entry')]
mt.check(code == 451 and '4.7.1 mxtest says later' in text and got is None,
         'soft reject: 451 4.7.1 with its message: %s %s' % (code, text))
code, text, got, f = outcome[('FORCE-REWRITE', 'entry')]
mt.check(code == 250 and values(f, 'Subject') == ['*** SPAM *** test FORCE-REWRITE-entry'],
         'rewrite subject: the Subject rspamd made: %s' % values(f, 'Subject'))
code, text, got, f = outcome[('FORCE-ADDHDR', 'entry')]
mt.check(code == 250 and values(f, 'X-Spam') == ['Yes'], 'add header: X-Spam: Yes, once: %s' % values(f, 'X-Spam'))
code, text, got, f = outcome[('FORCE-GREYLIST', 'entry')]
mt.check(code == 250 and got is not None and values(f, 'X-Spam') == [],
         'greylist without the greylist module: relayed, unmarked: %s %s' % (code, text))
code, text, got, f = outcome[('SCORE-GREYLIST', 'entry')]
mt.check(code == 451 and text.startswith('451 4.7.1') and got is None,
         'greylist by the score, with the greylist module: 451 4.7.1, its message: %s %s' % (code, text))
code, text, got, f = outcome[('FORCE-ENVELOPE', 'entry')]
mt.check(code == 250 and got is not None and got['mail'].strip('<>') == 'bounces@example.org' and
         sorted(r.strip('<>') for r in got['rcpts']) == ['added@example.test', 'b@example.test'],
         'change_from, add_rcpt, del_rcpt applied: %r' % (((got['mail'], got['rcpts']) if got else (code, text)),))
# discarded (250, delivered nowhere) or quarantined (250, in the quarantine only)
for word, held, what in (('FORCE-DISCARD', False, 'reject with the milter block\'s reject "discard"'),
                         ('FORCE-QUARANTINE', True, 'reject with reject "quarantine"'),
                         ('FORCE-ACT-DISCARD', False, "rspamd's discard action"),
                         ('FORCE-ACT-QUARANTINE', True, "rspamd's quarantine action")):
    code, text, got, f = outcome[(word, 'entry')]
    mt.check(code == 250 and got is None and quarantined(word + '-entry') == held,
             '%s: 250, %s: %s %s' % (what, 'in the quarantine' if held else 'delivered nowhere', code, text))
code, text, got, f = outcome[('FORCE-NOACT', 'entry')]
mt.check(code == 250 and values(f, 'X-Rspamd-Action') == ['reject'],
         'no_action: the reject not applied, X-Rspamd-Action: reject: %s %s' % (code, text))
code, text, got, f = outcome[('FORCE-SPAMHDR', 'entry')]
mt.check(code == 250 and values(f, 'X-Spam') == ['spammy'], 'spam_header "spammy": X-Spam: spammy: %s' % values(f, 'X-Spam'))
code, text, got, f = outcome[('FORCE-BODY', 'entry')]
mt.check(code == 250 and body('FORCE-BODY-entry') == b'Rewritten by mxtest.\r\n',
         'a body rewritten by a Lua rule (task:set_message) reaches the backend: %s %r' % (code, body('FORCE-BODY-entry')))


def order(label):
    """FORCE-ORDER's fields, X-Order by its value (o3: order -3, o1: -1, o99: -99)."""
    return [v if n == 'X-Order' else n for n, v in outcome[('FORCE-ORDER', label)][3]]


# rspamd 3.4's milter, shown the message's 7 fields, counts from 8 (one more with each add):
# -3 -> INSHEADER 6 (below Date), -1 -> ADDHEADER (appended), -99 -> INSHEADER 0 (on top)
mt.check(order('entry') == ['o99', 'DKIM-Signature', 'Received', 'From', 'To', 'Subject', 'Message-ID', 'Date', 'o3',
                            'X-Keep-A', 'X-Keep-B', 'o1'],
         "add_headers' negative orders counted from the end of the fields rspamd was shown: %s" % order('entry'))
mt.check(order('entry') == order('milter'), "the negative orders land where rspamd's milter puts them: %s / %s"
         % (order('entry'), order('milter')))
# an order that is no number (a string, a boolean): rspamd 3.4's milter appends the field as
# if it had none (seen here; the entry skips such an order); a float is cut (1.5 -> INSHEADER
# 1, below mxgate's Received and the DKIM-Signature inserted at 1 after it)
otype = {lb: [n for n, _ in outcome[('FORCE-OTYPE', lb)][3]] for lb in ('entry', 'milter')}
mt.check(otype['entry'][:3] == ['Received', 'DKIM-Signature', 'X-Ofloat'] and
         sorted(otype['entry'][-2:]) == ['X-Obool', 'X-Ostr'] and otype['entry'][-4:-2] == ['X-Keep-A', 'X-Keep-B'],
         "add_headers' order that is no number: appended; a float's cut: %s" % otype['entry'])
mt.check(otype['entry'][:-2] + sorted(otype['entry'][-2:]) == otype['milter'][:-2] + sorted(otype['milter'][-2:]),
         "where rspamd's milter puts them: %s / %s" % (otype['entry'], otype['milter']))
# remove_headers X-Dup -1 with two X-Dup inserts counted from the end (-1, -3): the first
# X-Dup kept, the two added: three, where rspamd's milter leaves them
dup = {lb: [v if n == 'X-Dup' else n for n, v in outcome[('FORCE-RMORDER', lb)][3]] for lb in ('entry', 'milter')}
mt.check([v for v in dup['entry'] if v in ('d1', 'd2', 'n1', 'n3')] == ['d1', 'n3', 'n1'],
         'remove_headers X-Dup -1 with inserts of X-Dup at -1 and -3: d1 kept, d2 gone, n3, n1 added: %s'
         % dup['entry'])
mt.check(dup['entry'] == dup['milter'], "the same fields in the same order as rspamd's milter: %s / %s"
         % (dup['entry'], dup['milter']))
dup = {lb: [v if n == 'X-Dup' else n for n, v in outcome[('FORCE-RMALL', lb)][3]] for lb in ('entry', 'milter')}
mt.check(dup['entry'] == dup['milter'] and sorted(v for v in dup['entry'] if v in ('d1', 'd2', 'n1', 'n3')) == ['n1', 'n3'],
         "remove_headers X-Dup 0 with the same inserts: both gone, the two added where rspamd's milter puts them: "
         "%s / %s" % (dup['entry'], dup['milter']))
# a body rspamd rewrote, with its discard action: nothing delivered (no action: FORCE-BODY)
for lb in ('entry', 'milter'):
    code, text, got, f = outcome[('FORCE-BODY-DISCARD', lb)]
    mt.check(code == 250 and got is None, '%s: a rewritten body with the discard action: 250, delivered nowhere: %s %s'
             % (lb, code, text))
code, text, got, f = outcome[('FORCE-BODY', 'milter')]
mt.check(code == 250 and body('FORCE-BODY-milter') == b'Rewritten by mxtest.\r\n',
         "milter: the rewritten body (SMFIR_REPLBODY) reaches the backend too: %r" % body('FORCE-BODY-milter'))


def raw_reply(m, tag):
    """The end-of-data reply's lines as the client reads them, and whether the session is
    still in step after it (RSET answered 250)."""
    c = mt.Client(m.port, timeout=60)
    c.ehlo()
    c.cmd('MAIL FROM:<sender@example.org>')
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('DATA')
    c.send(mt.stuff(mt.message(tag)))
    code, text = c.reply()
    after = c.cmd('RSET')
    c.close()
    return code, text.split('\n'), after[0]


# rspamd's smtp_message holding a CRLF or a bare LF: a well-formed reply (every line
# "NNN-" but the last "NNN ", the same code), and the session in step after it
for word, want in (('FORCE-CRLF', 550), ('FORCE-BARELF', 451)):
    for lb, m in (('entry', mx), ('milter', mm)):
        code, lines, after = raw_reply(m, '%s-%s' % (word, lb))
        ok = code == want and all(re.match(r'%d[- ]' % want, ln) for ln in lines) and \
            all(ln[3] == '-' for ln in lines[:-1]) and lines[-1][3] == ' ' and after == 250
        if lb == 'entry':
            mt.check(ok, 'entry: smtp_message with %s: a well-formed %d reply, the session in step: %r then %s'
                     % (word[6:], want, lines, after))
        else:
            print('%s milter: %r then %s' % (word, lines, after))
code, text, got, f = outcome[('FORCE-ADDHDR', 'entry2')]
mt.check(code == 250 and values(f, 'X-Spam-Flag') == ['Yes'] and values(f, 'X-Spam') == [],
         'options.spam_header X-Spam-Flag: add header sets it, once: %s' % f)
code, text, got, f = outcome[('FORCE-SPAMHDR', 'entry2')]
mt.check(code == 250 and values(f, 'X-Spam-Flag') == ['spammy'] and values(f, 'X-Spam') == [],
         'options.spam_header X-Spam-Flag: the reply\'s spam_header string sets it: %s' % f)

# mxgate's entry against rspamd's own milter (both applied by mxgate: the entry's reading of
# the reply against the gateway's milter actions): the outcome and the header names in order,
# values that differ by run (queue ids, times, signatures) aside
print('-- rspamd entry vs rspamd milter gateway --')
SHOWN = ('subject', 'x-spam', 'x-spam-flag', 'x-rspamd-action', 'x-rspamd-server')


def state(o, label):
    code, _, got, f = o
    names = [n for n, _ in f]
    end = names.index('Date') + 1 if 'Date' in names else 0   # the appended fields: in any order
    return (code, got is not None, names[:end] + sorted(names[end:]),
            [(n, v.replace('-' + label, '')) for n, v in f if n.lower() in SHOWN],
            got and (got['mail'], sorted(got['rcpts'])), got and got['data'].split(b'\r\n\r\n', 1)[1])


diffs = []
for word, ea, mb in [(w, 'entry', 'milter') for w in WORDS] + [(w, 'entry2', 'milter2') for w in WORDS2]:
    a, b = outcome[(word, ea)], outcome[(word, mb)]
    sa, sb = state(a, ea), state(b, mb)
    word = word + ('' if ea == 'entry' else ' (2)')
    if sa == sb:
        print('same  %-20s %s' % (word, sa[:4]))
    else:
        diffs.append(word)
        print('DIFF  %-20s entry:  %s %s\n      %-20s milter: %s %s' % (word, sa, a[1][:60], '', sb, b[1][:60]))
# the one known difference: rspamd's milter refuses with 554, mxgate's refusals are 550
mt.check(diffs == ['FORCE-REJECT'] and outcome[('FORCE-REJECT', 'milter')][0] == 554,
         "mxgate's entry does what rspamd's own milter does, but for reject's 550 (its 554): %s differ" % diffs)

# A STARTTLS client, a message with a Received from the sender's side: rspamd prepends the hop
# it was not shown (the MTA's own), TLS by the request's TLS-Cipher, which its milter gateway
# takes from Postfix's {cipher} (mxgate's milter client passes that macro too). Both ways:
# RCVD_TLS_ALL. Before, the entry sent no TLS-Cipher: RCVD_NO_TLS_LAST (0.1, and the
# composite VIOLATED_DIRECT_SPF, 3.5, with an SPF fail or softfail) for every TLS client.
crt, key = mt.cert()
tls_listen = [{'address': '127.0.0.1:0', 'tls': 'starttls'}]
rcvd = {}
for label, plug in (('entry', entry), ('milter', gateway)):
    t = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[plug], listen=tls_listen,
                            tls={'certificate': crt, 'key': key}), name='mx-tls-' + label)
    for tls in (False, True):
        tag = 'tlshop-%s-%d' % (label, tls)
        c = mt.Client(t.port, timeout=60)
        c.ehlo('client.example.org')
        if tls:
            c.starttls()
            c.ehlo('client.example.org')
        # a sender and a body of its own: rspamd's greylist module holds the ones above
        mt.send_mail(t.port, tag + '@example.org', ['b@example.test'], mt.message(tag, 'Body %s.\r\n' % tag, headers=[
            'Received: from [10.1.2.3] by smtp.sender.example (Postfix) with ESMTPSA id 4AB12;'
            ' Mon, 01 Jan 2024 00:00:00 +0000']), client=c)
        c.cmd('QUIT')
        res = values(fields(tag), 'X-Spamd-Result')
        rcvd[(label, tls)] = sorted(set(re.findall(r'\b(RCVD_(?:TLS_ALL|TLS_LAST|NO_TLS_LAST))\(', ' '.join(res))))
    t.stop()
mt.check(rcvd[('entry', True)] == rcvd[('milter', True)] == ['RCVD_TLS_ALL']
         and rcvd[('entry', False)] == rcvd[('milter', False)] == ['RCVD_NO_TLS_LAST'],
         "a STARTTLS client: rspamd's TLS hop through the entry as through its milter (%s)" % rcvd)

# options.settings_id: rspamd applies the settings rule of that id (tests/peers/rspamd/local.d/
# settings.conf: its greylist module off) to the entry's mail. A score in rspamd's greylist
# band: 451 from the greylist module without it, delivered with `add header` with it; an id
# rspamd does not know: its defaults (and its log names the id).
sid = {}
for label, opts in (('none', {}), ('nogrey', {'settings_id': 'mxgate-nogrey'}), ('unknown', {'settings_id': 'no-such-id'})):
    t = mt.Mxgate(mt.config([be.url], hostname='mx.example.test',
                            plugins=[dict(entry, options=dict(entry['options'], **opts))]), name='mx-sid-' + label)
    tag = 'SCORE-GREYLIST-sid-' + label
    r = mt.send_mail(t.port, tag + '@example.org', ['b@example.test'], mt.message(tag, 'Body %s.\r\n' % tag), timeout=60)
    sid[label] = (r.code, delivered(tag) is not None)
    t.stop()
mt.check(sid == {'none': (451, False), 'nogrey': (250, True), 'unknown': (451, False)},
         "settings_id: rspamd's settings rule of that id applies (greylist module off), an unknown id is rspamd's defaults (%s)" % sid)
mt.check(re.search(r'unknown settings id: no-such-id', open(rs.log, errors='replace').read()) is not None,
         "rspamd logs the unknown Settings-ID")
for m in (mx, mm, mx2, mm2):
    m.stop()
mt.finish()
