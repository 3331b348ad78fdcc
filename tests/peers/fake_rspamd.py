#!/usr/bin/env python3
"""A stand-in for rspamd's normal worker (POST /checkv2): replies shaped as rspamd 3.4's
(tests/integration/test_rspamd_real.py runs the real one), and the malformed ones it never
sends. Answers like rspamd 3.x: GTUBE in the message -> score
15 and action "reject", SOFTME -> "soft reject", GARBAGEME -> invalid JSON, REWRITEME ->
"rewrite subject" with "subject" made as rspamd 3.x makes it (subject_template "*** SPAM ***
%s" over the Subject's value, a non-ASCII result MIME-encoded; REWRITEEVIL: a subject with a
line break and a header after it, REWRITELONG: one of 3,000 octets), MILTERHDRS -> a
"milter" block of removes and adds (milter_headers, dkim_signing), ADDHDRME -> "add header",
and the rest of what rspamd 3.4 was seen to send (tests/integration/test_rspamd_real.py):
ENVELOPEME -> a milter block with change_from, add_rcpt, del_rcpt (task:set_milter_reply);
DISCARDME / QUARME -> "reject" with the milter block's reject "discard" / "quarantine";
NOACTME -> "reject" with no_action; SPAMHDRME / SPAMHDROBJ -> "add header" with
spam_header as a string / an object; DKIMME / DKIMTWO -> the top-level "dkim-signature"
dkim_signing writes by default (one, folded / an array of two); BODYME -> a body a Lua rule
rewrote (task:set_message), sent after the JSON with a Message-Offset header when the request
said Flags: body_block (the body only with milter, as rspamd's protocol.c; BODYSPAMHDR with
"add header" and spam_header too, BODYBIG one of 300,000 octets, BODYBADOFF / BODYPASTOFF a
Message-Offset that is no number / past the reply; "BODYHOLD SIZE DIR": a body of SIZE
octets, all but its last octet sent, then the file DIR/sent-PORT written and the last octet
held until DIR/go exists, then sent, or not when DIR/go says "cut": the connection closed
short of it); otherwise ham with two symbols. Records the request headers it saw in requests.log next to the script's
log (first line of each request: the envelope headers as JSON).
usage: fake_rspamd.py PORT LOGFILE"""
import email.header, json, os, re, socket, sys, threading, time

GTUBE = b'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'


def flags_of(hdrs):
    return [f.strip() for v in hdrs.get('flags', []) for f in v.split(',')]


def hold(c, body, flags):
    """BODYHOLD SIZE DIR: a body block of SIZE octets (whole lines), its last octet held
    until DIR/go exists (DIR/sent-PORT, the client's port, written once the rest was sent);
    a DIR/go that says "cut": closed without it."""
    m = re.search(rb'BODYHOLD (\d+) (\S+)', body)
    size, d = int(m.group(1)), m.group(2).decode()
    line = b'0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n'
    new = (line * (size // len(line) + 1))[:size]
    if 'milter' not in flags or 'body_block' not in flags:
        new = b''
    out = json.dumps({'score': 0.5, 'required_score': 15.0, 'action': 'no action', 'symbols': {},
                      'messages': {}, 'milter': {'remove_headers': {'X-Spam': 0}}}).encode()
    head = (b'HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\nContent-Type: application/json\r\n'
            b'Message-Offset: %d\r\nContent-Length: %d\r\n\r\n' % (len(out), len(out) + len(new)))
    reply = head + out + new
    c.sendall(reply[:-1])
    with open(os.path.join(d, 'sent-%d' % c.getpeername()[1]), 'w'):
        pass
    while not os.path.exists(os.path.join(d, 'go')):
        time.sleep(0.05)
    with open(os.path.join(d, 'go')) as f:
        if f.read() == 'cut':   # the reply ends early: closed without its last octet
            return
    c.sendall(reply[-1:])


def serve(c, log):
    f = c.makefile('rb')
    try:
        req = f.readline()
        hdrs = {}
        while True:
            l = f.readline().decode('latin-1').rstrip('\r\n')
            if not l:
                break
            k, _, v = l.partition(':')
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        body = f.read(int(hdrs.get('content-length', ['0'])[0]))
        with open(log, 'a') as lf:
            lf.write(json.dumps({'request': req.decode().strip(), 'headers': hdrs, 'size': len(body)}) + '\n')
        if GTUBE in body:
            res = {'is_skipped': False, 'score': 15.0, 'required_score': 15.0, 'action': 'reject',
                   'symbols': {'GTUBE': {'name': 'GTUBE', 'score': 0.0, 'metric_score': 0.0,
                                         'description': 'GTUBE \\"test\\" \u00e9'}},
                   'messages': {'smtp_message': 'Gtube pattern'}, 'message-id': 'x@y'}
        elif b'CTLMSG' in body:
            # an smtp_message with a terminal colour (ESC), a bell, a C1 CSI (U+009B) and text
            # past ASCII: the reply's cleaning is the shared one ('?' for what is no text)
            res = {'is_skipped': False, 'score': 15.0, 'required_score': 15.0, 'action': 'reject', 'symbols': {},
                   'messages': {'smtp_message': 'bad \x1b[31mred\x1b[0m bell\x07 csi\x9b caf\u00e9 end'}}
        elif b'REWRITE' in body:
            head = body.split(b'\r\n\r\n', 1)[0].decode('utf-8', 'replace')
            m = re.search(r'(?im)^Subject:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)', head)
            old = re.sub(r'\r\n[ \t]*', ' ', m.group(1)) if m else ''
            subj = '*** SPAM *** %s' % old
            if b'REWRITEEVIL' in body:
                subj = '*** SPAM *** x\r\nBcc: evil@example.org'
            elif b'REWRITELONG' in body:
                subj = '*** SPAM *** ' + 'y' * 3000
            elif any(ord(ch) > 127 for ch in subj):
                subj = email.header.Header(subj, 'utf-8').encode()
            res = {'is_skipped': False, 'score': 7.5, 'required_score': 15.0, 'action': 'rewrite subject',
                   'thresholds': {'reject': 15.0, 'add header': 6.0, 'rewrite subject': 7.0, 'greylist': 4.0},
                   'symbols': {'FAKE_SPAM': {'name': 'FAKE_SPAM', 'score': 7.5, 'metric_score': 7.5}},
                   'messages': {}, 'subject': subj, 'time_real': 0.01, 'milter': {'remove_headers': {'X-Spam': 0}}}
        elif b'MILTERHDRS' in body:
            # the "milter" block of rspamd 3.x: milter_headers' routines (their remove: 0
            # strips what came from outside) and dkim_signing's DKIM-Signature (order 1)
            res = {'score': 2.0, 'required_score': 15.0, 'action': 'no action', 'symbols': {},
                   'milter': {'remove_headers': {'X-Spamd-Result': 0, 'X-Old': 1, 'X-Last': -1, 'X-Bad': 'x'},
                              'add_headers': {
                                  'X-Spamd-Result': [{'value': 'default: False [2.00 / 15.00];\n\tFAKE(2.00)[x]',
                                                      'order': None}],
                                  'X-Rspamd-Server': 'rspamd.example.test',
                                  'Authentication-Results': {'value': 'rspamd.example.test; none', 'order': 0},
                                  'DKIM-Signature': {'value': 'v=1; a=rsa-sha256; d=example.org; s=dkim; b=AAAA',
                                                     'order': 1},
                                  'Bad Name': 'x',
                                  'X-Long': 'z' * 9000}}}
        elif b'ENVELOPEME' in body:
            res = {'score': -0.1, 'required_score': 15.0, 'action': 'no action', 'symbols': {}, 'messages': {},
                   'milter': {'add_rcpt': ['added@example.test'], 'change_from': 'bounces@example.org',
                              'del_rcpt': ['gone@example.test'], 'remove_headers': {'X-Spam': 0}}}
        elif b'DISCARDME' in body or b'QUARME' in body:
            res = {'score': 0.0, 'required_score': 15.0, 'action': 'reject', 'symbols': {},
                   'messages': {'smtp_message': ''},
                   'milter': {'reject': 'discard' if b'DISCARDME' in body else 'quarantine',
                              'remove_headers': {'X-Spam': 0}}}
        elif b'NOACTME' in body:
            res = {'score': 0.0, 'required_score': 15.0, 'action': 'reject', 'symbols': {},
                   'messages': {'smtp_message': 'not applied'},
                   'milter': {'no_action': True, 'remove_headers': {'X-Spam': 0}}}
        elif b'SPAMHDR' in body:
            res = {'score': 0.0, 'required_score': 15.0, 'action': 'add header', 'symbols': {},
                   'messages': {'smtp_message': ''},
                   'milter': {'spam_header': {'X-Spam-Flag': 'YES'} if b'SPAMHDROBJ' in body else 'spammy',
                              'remove_headers': {'X-Spam': 0}}}
        elif b'DKIMME' in body or b'DKIMTWO' in body:
            sig = 'v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=mxtest;\r\n\tt=1796429068;\r\n\tb=AAAA'
            res = {'score': -0.1, 'required_score': 15.0, 'action': 'no action', 'symbols': {}, 'messages': {},
                   'dkim-signature': [sig, sig.replace('s=mxtest', 's=two')] if b'DKIMTWO' in body else sig,
                   'milter': {'remove_headers': {'X-Spam': 0}}}
        elif b'BODYSPAMHDR' in body:
            res = {'score': 6.5, 'required_score': 15.0, 'action': 'add header', 'symbols': {},
                   'milter': {'spam_header': 'spammy', 'remove_headers': {'X-Spam': 0}}}
        elif b'BODYHOLD' in body:
            hold(c, body, flags_of(hdrs))
            return
        elif b'BODY' in body:
            res = {'score': 0.5, 'required_score': 15.0, 'action': 'no action', 'symbols': {}, 'messages': {},
                   'milter': {'remove_headers': {'X-Spam': 0}}}
        elif b'ADDHDRME' in body:
            res = {'score': 6.5, 'required_score': 15.0, 'action': 'add header', 'symbols': {}}
        elif b'SOFTME' in body:
            res = {'score': 6.5, 'required_score': 15.0, 'action': 'soft reject', 'symbols': {}}
        else:
            res = {'score': 1.2, 'required_score': 15.0, 'action': 'no action',
                   'symbols': {'MISSING_MID': {'name': 'MISSING_MID', 'score': 0.5, 'options': ['a', 'b']},
                               'R_SPF_NA': {'name': 'R_SPF_NA', 'score': 0.7, 'group': 'spf'}},
                   'time_real': 0.01, 'milter': {'add_headers': {'X-Rspamd': {'value': 'x', 'order': 0}}}}
        out = b'{"score": oops' if b'GARBAGEME' in body else json.dumps(res).encode()
        extra = b''
        flags = flags_of(hdrs)
        if b'BODY' in body and 'body_block' in flags:
            new = b'Rewritten by fake rspamd.\r\n' * (11000 if b'BODYBIG' in body else 1)
            if 'milter' not in flags:      # the whole message then
                new = body.split(b'\r\n\r\n', 1)[0] + b'\r\n\r\n' + new
            off = b'%d' % len(out)
            if b'BODYBADOFF' in body:
                off = b'x1'
            elif b'BODYPASTOFF' in body:
                off = b'%d' % (len(out) + len(new) + 1)
            extra = b'Message-Offset: ' + off + b'\r\n'
            out += new
        c.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\nContent-Type: application/json\r\n'
                  + extra + b'Content-Length: %d\r\n\r\n' % len(out) + out)
    except OSError:
        pass
    finally:
        c.close()


def main():
    port, log = int(sys.argv[1]), sys.argv[2]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, log), daemon=True).start()


if __name__ == '__main__':
    main()
