#!/usr/bin/env python3
"""The macros a milter is sent, against a real python3-milter filter reporting what
smfi_getsymval returns (tests/peers/mx_milter_macros.py), over STARTTLS with SMTP AUTH
checked by a real Dovecot.

- Postfix's defaults: milter_helo_macros has {tls_version} {cipher} {cipher_bits}
  {cert_subject} {cert_issuer}; milter_mail_macros has {auth_author} (MAIL's AUTH=, xtext
  decoded). mxgate sent neither {cipher_bits} nor {auth_author}. {cert_subject} and
  {cert_issuer} stay undefined (mxgate asks clients for no certificate, as Postfix without
  smtpd_tls_ask_ccert), so they are not sent.
- A filter's own lists (SMFIR_SETSYMLIST in the option negotiation, milter protocol 6, as
  libmilter's smfi_setsymlist asks): mxgate ignored them; they replace the defaults for
  their stage, and may name a macro of another stage ({client_ptr} at MAIL), as Postfix
  sends them."""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as t  # noqa: E402

t.need('dovecot')
t.need_python_milter()


def macro_milter(mode):
    port = t.hold_port().port
    log = os.path.join(t.TMP, 'macros-%s.txt' % mode)
    p = t.start_peer(['/usr/bin/python3', os.path.join(t.PEERS, 'mx_milter_macros.py'), 'inet:%d@127.0.0.1' % port,
                      log] + ([mode] if mode == 'symlist' else []), 'macro-milter-%s' % mode, port)
    p.log = log
    return p


def stages(m):
    """{stage: {name: value}} from the milter's log (the last line of each stage)."""
    out = {}
    try:
        lines = open(m.log).read().splitlines()
    except OSError:
        return out
    for ln in lines:
        st, _, rest = ln.partition(' ')
        kv = {}
        for w in rest.split(' ') if rest else []:
            k, _, v = w.partition('=')
            if k in kv or not k:
                kv[list(kv)[-1]] += ' ' + w     # a value with spaces ("_")
            else:
                kv[k] = v
        out[st] = kv
    return out


def run(m, tag):
    c = t.Client(mx.port, timeout=30)
    c.ehlo('client.example.org')
    code, _ = c.starttls()
    t.check(code == 220, 'STARTTLS 220')
    c.ehlo('client.example.org')
    code, text = c.cmd('AUTH PLAIN ' + base64.b64encode(b'\0alice\0secret').decode())
    t.check(code == 235, 'AUTH 235 (%s %s)' % (code, text))
    code, text = c.cmd('MAIL FROM:<alice@example.org> AUTH=alice+2Bsub@example.org')
    t.check(code == 250, 'MAIL with AUTH= 250 (%s %s)' % (code, text))
    c.cmd('RCPT TO:<b@example.test>')
    c.cmd('DATA')
    c.send(t.message(tag, 'x\r\n') + b'\r\n.\r\n')
    code, text = c.reply()
    c.cmd('QUIT')
    c.close()
    t.check(code == 250, '%s: 250 (%s %s)' % (tag, code, text))
    t.wait_for(lambda: 'eom' in stages(m), 10)
    return stages(m)


dv = t.dovecot({'alice': 'secret'})
crt, key = t.cert()
be = t.Backend()
md, ms = macro_milter('default'), macro_milter('symlist')
cfg = t.config([be.url], listen=[{'address': '127.0.0.1:0', 'tls': 'starttls', 'submission': True}],
               hostname='mx.example.test', tls={'certificate': crt, 'key': key},
               auth={'dovecot': dv.sock, 'timeout': '10s'},
               plugins=[{'name': 'milter', 'address': 'inet:127.0.0.1:%d' % md.port, 'on_error': 'tempfail',
                         'timeout': '10s'}])
mx = t.Mxgate(cfg)
s = run(md, 'def1')
helo, mail, rcpt = s.get('helo', {}), s.get('mail', {}), s.get('rcpt', {})
t.check(helo.get('{tls_version}', '').startswith('TLS') and helo.get('{cipher}'),
        'helo: {tls_version} and {cipher} (%s)' % helo)
t.check(helo.get('{cipher_bits}', '').isdigit() and int(helo['{cipher_bits}']) >= 128,
        'helo: {cipher_bits}, as Postfix\'s milter_helo_macros (%s)' % helo.get('{cipher_bits}'))
t.check('{cert_subject}' not in helo and '{cert_issuer}' not in helo,
        'no {cert_subject} / {cert_issuer}: no client certificate is asked for')
t.check(mail.get('{auth_authen}') == 'alice' and mail.get('{auth_type}') == 'PLAIN',
        'mail: {auth_authen} and {auth_type} (%s)' % mail)
t.check(mail.get('{auth_author}') == 'alice+sub@example.org',
        'mail: {auth_author} is MAIL\'s AUTH= decoded from xtext, as Postfix\'s milter_mail_macros (%s)'
        % mail.get('{auth_author}'))
t.check(mail.get('{mail_addr}') == 'alice@example.org' and rcpt.get('{rcpt_addr}') == 'b@example.test',
        'mail and rcpt addresses as before')
mx.stop()

# The filter's own lists replace the defaults for their stages.
cfg['plugins'][0]['address'] = 'inet:127.0.0.1:%d' % ms.port
mx = t.Mxgate(cfg, name='mx-symlist')
s = run(ms, 'sym1')
con, mail, rcpt, eom = s.get('connect', {}), s.get('mail', {}), s.get('rcpt', {}), s.get('eom', {})
t.check(set(con) == {'{client_addr}'}, 'connect: only the {client_addr} the filter asked for (%s)' % sorted(con))
t.check('{mail_addr}' not in mail and '{auth_authen}' not in mail and mail.get('i') and
        mail.get('{client_ptr}'), 'mail: i and {client_ptr} as asked, not the default {mail_addr} (%s)' % sorted(mail))
t.check(rcpt.get('{rcpt_addr}') == 'b@example.test' and '{rcpt_host}' not in rcpt,
        'rcpt: {rcpt_addr} only (%s)' % sorted(rcpt))
t.check(eom.get('{mail_host}') == 'example.org', 'eom: {mail_host} asked at end of message (%s)' % sorted(eom))
t.check('{tls_version}' in s.get('helo', {}), 'helo: no list asked, the defaults (%s)' % sorted(s.get('helo', {})))
mx.stop()
t.stop_proc(md)
t.stop_proc(ms)
t.finish()
