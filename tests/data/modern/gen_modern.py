#!/usr/bin/env python3
"""gen_modern.py — synthetic mail of today, to compare mxgate's rules engine with SpamAssassin
on messages unlike the 2002 public corpus (issue 9: general evals must carry over).

    gen_modern.py OUTDIR [VARIANTS]     (default 12 variants of each template)
    gen_modern.py --pinned OUTDIR       (the committed set: 3 of each, and PINNED_EXTRA)

Writes OUTDIR/<template>-<nn>.eml. Deterministic: the same arguments give the same bytes
(one random.Random per message, seeded from the template name and variant; MIME boundaries
and every date, id and address come from it). Templates: personal mail from Gmail, Outlook /
Exchange Online (IPv6 internal hops), Apple Mail; ESP newsletters (Amazon SES, SendGrid,
Mailchimp: long base64 HTML, multipart/related with inline images, List-Unsubscribe-Post);
calendar invites; DSNs (multipart/report); forwarded message/rfc822; S/MIME signed; RFC 2231
file names; mailing-list mail through Mailman/Exim; qmail; very long header lines; IDN and
punycode; today's spam (account phishing, invoice attachments, crypto, shortened URLs).
Every message carries a Received chain ending at the receiving MX (mx.example.net, Postfix),
with dates consistent with its Date header, so nothing depends on the time it is run.
"""
import base64
import email
import email.policy
import hashlib
import os
import random
import sys
from email.message import EmailMessage
from email.headerregistry import Address
from email.utils import format_datetime
import datetime

POL = email.policy.default.clone(linesep='\n', max_line_length=78)
MX = 'mx.example.net'
MX_IP = '198.51.100.25'
RCPT = 'alice@example.net'

FIRST = ['Anna', 'Jörg', 'Zoë', 'Łukasz', 'Søren', 'José', 'Mei', 'Olga', 'Ahmed', 'Chloé',
         'Dmitri', 'Ingrid', 'Hiroshi', 'Priya', 'Tom', 'Émilie', 'Ольга', '太郎', 'Müller']
LAST = ['Schäfer', 'Nowak', 'García', 'Dubois', 'Smith', 'Jensen', 'Kowalski', 'Ødegaard',
        'Tanaka', 'Иванова', 'Nguyễn', "O'Brien", 'van der Berg']
WORDS = ('meeting project report update schedule budget review quarter design draft team '
         'notes lunch friday travel plan contract proposal offer invoice delivery feedback '
         'agenda minutes release version build server backup photos weekend family').split()
TZS = [(60, 'CET'), (120, 'CEST'), (-480, 'PST'), (-420, 'PDT'), (0, 'UTC'), (0, 'GMT'),
       (330, 'IST'), (540, 'JST'), (-300, 'EST'), (600, 'AEST'), (-180, None), (345, None)]
SHORTENERS = ['bit.ly', 'tinyurl.com', 't.co', 'rb.gy', 'is.gd', 'cutt.ly', 'ow.ly']


class Gen:
    def __init__(self, name, k):
        self.r = random.Random(hashlib.sha256(('%s/%d' % (name, k)).encode()).digest())
        self.name = name
        self.k = k
        base = datetime.datetime(2026, 3, 2, 8, 0, 0, tzinfo=datetime.timezone.utc)
        self.t = base + datetime.timedelta(days=self.r.randrange(0, 270),
                                           seconds=self.r.randrange(0, 86400))
        self.nb = 0

    # ---- small pieces
    def pick(self, seq):
        return self.r.choice(seq)

    def hexs(self, n):
        return ''.join(self.r.choice('0123456789abcdef') for _ in range(n))

    def alnum(self, n, alphabet='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'):
        return ''.join(self.r.choice(alphabet) for _ in range(n))

    def ip4(self):
        return '%d.%d.%d.%d' % (self.pick([203, 198, 185, 91, 45, 80, 62, 104, 149, 192]),
                                self.r.randrange(1, 255), self.r.randrange(0, 255),
                                self.r.randrange(1, 254))

    def ip6(self, prefix='2a01:111:f403'):
        return '%s:%x::%x' % (prefix, self.r.randrange(1, 0xffff), self.r.randrange(1, 0xffff))

    def name_(self):
        return '%s %s' % (self.pick(FIRST), self.pick(LAST))

    def words(self, n):
        return ' '.join(self.pick(WORDS) for _ in range(n))

    def sentence(self):
        s = self.words(self.r.randrange(5, 14))
        return s[0].upper() + s[1:] + self.pick(['.', '.', '.', '?', '!'])

    def paragraph(self, n=None):
        return ' '.join(self.sentence() for _ in range(n or self.r.randrange(2, 6)))

    def when(self, secs_before=0, tz=None):
        """the message time minus secs_before, in a zone (minutes, name)."""
        off, nm = tz or (0, None)
        z = datetime.timezone(datetime.timedelta(minutes=off))
        d = (self.t - datetime.timedelta(seconds=secs_before)).astimezone(z)
        s = format_datetime(d)
        if nm and self.r.random() < 0.6:
            s += ' (%s)' % nm
        return s

    def date_hdr(self, tz=None):
        tz = tz or self.pick(TZS)
        s = self.when(self.r.randrange(2, 40), tz)
        form = self.r.randrange(4)
        if form == 1:       # no leading zero in the day: "Thu, 3 Dec"
            s = s.replace(', 0', ', ', 1)
        elif form == 2:     # no weekday
            s = s.split(', ', 1)[1]
        return s

    def boundary(self):
        self.nb += 1
        return self.pick(['----=_Part_%d_%d.%d' % (self.r.randrange(10**6), self.r.randrange(10**9),
                                                   self.r.randrange(10**13)),
                          '000000000000%s' % self.hexs(16),
                          'Apple-Mail=_%s-%s-%s' % (self.hexs(8).upper(), self.hexs(4).upper(),
                                                    self.hexs(12).upper()),
                          '_%03d_%s_' % (self.nb, self.alnum(20)),
                          '=_%s' % self.hexs(32)])

    def mid(self, domain, style=None):
        style = style or self.r.randrange(6)
        if style == 0:     # Gmail
            return '<CA%s%s@mail.gmail.com>' % (self.pick(['+', 'F', 'J', 'K']), self.alnum(40))
        if style == 1:     # Outlook
            return '<%s%s@%s.%s.prod.outlook.com>' % (
                self.pick(['AM', 'DB', 'VI', 'PA', 'BN', 'CH']), self.alnum(20).upper(),
                self.pick(['AM0PR02MB', 'DB9PR07MB', 'PAXPR04MB']) + str(self.r.randrange(1000, 9999)),
                self.pick(['eurprd02', 'eurprd07', 'namprd11']))
        if style == 2:     # Apple
            return '<%s-%s-%s-%s-%s@%s>' % (self.hexs(8).upper(), self.hexs(4).upper(),
                                            self.hexs(4).upper(), self.hexs(4).upper(),
                                            self.hexs(12).upper(), domain)
        if style == 3:     # Amazon SES
            return '<0102%s-%s-%s-%s-%s-000000@eu-west-1.amazonses.com>' % (
                self.hexs(12), self.hexs(8), self.hexs(4), self.hexs(4), self.hexs(12))
        if style == 4:     # Thunderbird / generic
            return '<%s-%s-%s@%s>' % (self.hexs(8), self.hexs(4), self.hexs(4), domain)
        return '<%s.%s@%s>' % (self.r.randrange(10**12), self.alnum(10), domain)

    # ---- trace headers
    def rcvd_mx(self, helo, rdns, ip, secs, tls=True, ident=None):
        """our MX, Postfix"""
        if ':' in ip:
            addr = 'IPv6:' + ip
        else:
            addr = ip
        s = 'Received: from %s (%s [%s])\n' % (helo, rdns or 'unknown', addr)
        if tls:
            s += ('\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n'
                  '\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\n'
                  '\t(No client certificate requested)\n')
        s += '\tby %s (Postfix) with %s id %s\n\tfor <%s>; %s\n' % (
            MX, 'ESMTPS' if tls else 'ESMTP', ident or self.alnum(11, 'BCDFGHJKLMNPQRSTVWXYZ0123456789'),
            RCPT, self.when(secs, (60, 'CET')))
        return s

    def auth_results(self, dom, spf='pass', dkim='pass', dmarc='pass'):
        return ('Authentication-Results: %s;\n\tdkim=%s (2048-bit key; unprotected) header.d=%s '
                'header.i=@%s header.a=rsa-sha256 header.s=%s header.b=%s;\n\tspf=%s '
                'smtp.mailfrom=%s;\n\tdmarc=%s (p=%s dis=NONE) header.from=%s\n') % (
            MX, dkim, dom, dom, self.pick(['s1', 'selector1', '20230601', 'google', 'k1']),
            self.alnum(8), spf, dom, dmarc, self.pick(['none', 'quarantine', 'reject']), dom)

    def dkim(self, dom, hdrs='from:to:subject:date:message-id'):
        b = base64.b64encode(bytes(self.r.randrange(256) for _ in range(256))).decode()
        bh = base64.b64encode(bytes(self.r.randrange(256) for _ in range(32))).decode()
        lines = ['DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s;' % dom,
                 '\ts=%s; t=%d; x=%d;' % (self.pick(['20230601', 's1', 'selector1', 'k2']),
                                          int(self.t.timestamp()) - 30, int(self.t.timestamp()) + 604800),
                 '\th=%s;' % hdrs, '\tbh=%s;' % bh, '\tb=' + b[:70]]
        b = b[70:]
        while b:
            lines.append('\t ' + b[:72])
            b = b[72:]
        return '\n'.join(lines) + '\n'

    def arc(self, dom):
        b = base64.b64encode(bytes(self.r.randrange(256) for _ in range(128))).decode()
        return ('ARC-Seal: i=1; a=rsa-sha256; t=%d; cv=none;\n\td=google.com; s=arc-20240605;\n'
                '\tb=%s\n\t %s\n'
                'ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=google.com;\n'
                '\ts=arc-20240605; h=to:subject:message-id:date:from:mime-version\n'
                '\t :dkim-signature; bh=%s;\n\tb=%s\n'
                'ARC-Authentication-Results: i=1; mx.google.com;\n'
                '\tdkim=pass header.i=@%s header.s=20230601 header.b=%s;\n'
                '\tspf=pass (google.com: domain of x@%s designates %s as permitted sender)'
                ' smtp.mailfrom=x@%s;\n\tdmarc=pass (p=NONE sp=QUARANTINE dis=NONE) header.from=%s\n') % (
            int(self.t.timestamp()), b[:60], b[60:120], self.alnum(43) + '=', b[:64], dom,
            self.alnum(8), dom, self.ip4(), dom, dom)


def finish(g, msg, trace, order=None):
    """msg (EmailMessage) with deterministic boundaries, trace headers (raw text) on top."""
    for part in msg.walk():
        if part.get_content_maintype() == 'multipart':
            part.set_boundary(g.boundary())
    body = msg.as_bytes(policy=POL)
    return trace.encode('utf-8') + body


def set_addr(msg, hdr, display, addr):
    msg[hdr] = Address(display, addr_spec=addr) if display else addr


def html_page(g, title, paras, links, imgs=(), footer=True, dark=False):
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<title>%s</title>' % title,
           '<style>body{font-family:Arial,sans-serif;color:#222}.btn{background:#0a66c2;'
           'color:#fff;padding:12px 20px;border-radius:4px;text-decoration:none}</style>',
           '</head><body%s>' % (' style="background:#111;color:#eee"' if dark else ''),
           '<table role="presentation" width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">',
           '<table width="600" style="max-width:600px">']
    for src, w, h in imgs:
        out.append('<tr><td><img src="%s" width="%d" height="%d" alt="" style="display:block"></td></tr>'
                   % (src, w, h))
    for p in paras:
        out.append('<tr><td style="padding:8px 24px;font-size:16px;line-height:24px">%s</td></tr>' % p)
    for text, url in links:
        out.append('<tr><td align="center" style="padding:16px"><a class="btn" href="%s">%s</a></td></tr>'
                   % (url, text))
    if footer:
        out.append('<tr><td style="font-size:11px;color:#888;padding:24px">You are receiving this '
                   'because you signed up. <a href="https://email.example-shop.com/unsub?u=%s&amp;'
                   'id=%s">Unsubscribe</a> &middot; <a href="https://example-shop.com/privacy">Privacy'
                   '</a><br>Example Shop GmbH, Musterstraße 1, 10115 Berlin</td></tr>' % (
                       g.alnum(24), g.hexs(10)))
    out.append('</table></td></tr></table></body></html>')
    return '\n'.join(out) + '\n'


# ------------------------------------------------------------------------ templates

def t_gmail_personal(g):
    first, last = g.pick(FIRST), g.pick(LAST)
    user = ('%s.%s%d' % (first, last, g.r.randrange(100))).lower()
    user = '.'.join(w for w in ''.join(c for c in user if c.isascii() and (c.isalnum() or c == '.'))
                    .split('.') if w) or 'someone'
    addr = user + '@gmail.com'
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', '%s %s' % (first, last), addr)
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid('mail.gmail.com', 0)
    subj = g.pick(['Re: ', '', 'Fwd: ', 'AW: ', '']) + g.words(g.r.randrange(2, 6)).capitalize()
    if g.r.random() < 0.4:
        subj += ' ' + g.pick(['🎉', '✈️', 'für dich', '— quick question', '(Zoë)', '☕'])
    msg['Subject'] = subj
    set_addr(msg, 'To', g.pick(['Alice', 'Alice Müller', '']), RCPT)
    if subj.startswith(('Re:', 'AW:')):
        msg['In-Reply-To'] = g.mid('example.net', 4)
        msg['References'] = msg['In-Reply-To']
    text = 'Hi Alice,\n\n%s\n\n%s\n\nCheers,\n%s\n' % (g.paragraph(), g.paragraph(), first)
    if g.r.random() < 0.5:
        text += '\nOn %s, Alice <%s> wrote:\n> %s\n> %s\n' % (g.when(86400), RCPT, g.sentence(),
                                                            g.sentence())
    msg.set_content(text, charset='utf-8', cte=g.pick(['quoted-printable', '7bit' if text.isascii()
                                                       else '8bit', 'base64']))
    html = '<div dir="ltr">%s</div>\n' % '<br>'.join(
        '<div>%s</div>' % l for l in text.split('\n') if l)
    msg.add_alternative(html, subtype='html', charset='utf-8',
                        cte=g.pick(['quoted-printable', 'base64']))
    if g.r.random() < 0.3:
        msg.add_attachment(bytes(g.r.randrange(256) for _ in range(3000)), maintype='image',
                           subtype='jpeg', filename='IMG_%04d.jpg' % g.r.randrange(10000))
    ip = g.ip4()
    sor = 'mail-%s-f%d.google.com' % (g.pick(['sor', 'ej1', 'wm1', 'lf1', 'pj1']), g.r.randrange(10, 99))
    trace = g.rcvd_mx(sor, sor, '209.85.%d.%d' % (g.r.randrange(128, 255), g.r.randrange(1, 254)), 3)
    trace += g.auth_results('gmail.com')
    trace += g.dkim('gmail.com', 'mime-version:from:date:message-id:subject:to:content-type')
    trace += ('X-Google-DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\n\td=1e100.net; '
              's=20230601; t=%d; x=%d;\n\th=to:subject:message-id:date:from:mime-version\n'
              '\t :x-gm-message-state:from:to:cc:subject:date:message-id:reply-to;\n\tbh=%s;\n'
              '\tb=%s\n') % (int(g.t.timestamp()), int(g.t.timestamp()) + 604800,
                             g.alnum(43) + '=', g.alnum(70))
    trace += 'X-Gm-Message-State: AOJu0Y%s\n' % g.alnum(60)
    trace += 'X-Google-Smtp-Source: AGHT+I%s==\n' % g.alnum(70)
    trace += 'X-Received: by 2002:a05:6512:%x:b0:%x:%x with SMTP id %s-%s.%d.%d;\n\t %s\n' % (
        g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(65536), g.alnum(10), g.hexs(8),
        g.r.randrange(100), g.r.randrange(1000000), g.when(6, (-480, 'PST')))
    if g.r.random() < 0.5:
        trace = ('Received: by 2002:a05:%x:%x:b0:%x:%x with SMTP id %s;\n\t%s\n' % (
            g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(65536),
            g.alnum(10), g.when(2, (-480, 'PST')))) + trace
    trace = 'Return-Path: <%s>\nDelivered-To: %s\n' % (addr, RCPT) + trace
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_outlook_business(g):
    dom = g.pick(['contoso.com', 'fabrikam.de', 'northwind-traders.co.uk', 'example-gmbh.de'])
    first, last = g.pick(FIRST), g.pick(LAST)
    addr = '%s.%s@%s' % (''.join(c for c in first.lower() if c.isascii() and c.isalpha()) or 'info',
                         ''.join(c for c in last.lower() if c.isascii() and c.isalpha()) or 'x', dom)
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', '%s, %s' % (last, first) if g.r.random() < 0.3 else '%s %s' % (first, last), addr)
    set_addr(msg, 'To', 'Alice Example', RCPT)
    if g.r.random() < 0.5:
        msg['CC'] = ', '.join('%s@%s' % (w, dom) for w in g.r.sample(WORDS, 3))
    subj = g.pick(['RE: ', 'AW: ', 'WG: ', 'FW: ', '']) + g.words(g.r.randrange(2, 7)).capitalize()
    msg['Subject'] = subj
    msg['Thread-Topic'] = subj.split(': ', 1)[-1]
    msg['Thread-Index'] = 'AQH' + g.alnum(40) + '=='
    msg['Date'] = g.date_hdr((0, None))
    msg['Message-ID'] = g.mid(dom, 1)
    if subj.startswith(('RE:', 'AW:')):
        msg['References'] = ' '.join(g.mid(dom, 1) for _ in range(g.r.randrange(1, 4)))
        msg['In-Reply-To'] = msg['References'].split()[-1]
    msg['Accept-Language'] = g.pick(['en-US', 'de-DE, en-US'])
    msg['Content-Language'] = g.pick(['en-US', 'de-DE', 'en-GB'])
    msg['X-MS-Has-Attach'] = ''
    msg['X-MS-TNEF-Correlator'] = ''
    msg['msip_labels'] = ''
    text = 'Hello Alice,\n\n%s\n\n%s\n\nBest regards\n%s %s\n%s\n' % (
        g.paragraph(), g.paragraph(), first, last, dom)
    msg.set_content(text, charset=g.pick(['utf-8', 'iso-8859-1', 'us-ascii']) if all(
        ord(c) < 128 for c in text) else 'utf-8', cte='quoted-printable')
    html = ('<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:'
            'office:office" xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://'
            'schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">\n'
            '<head>\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
            '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\n'
            '<style><!--\n/* Font Definitions */\n@font-face\n\t{font-family:"Cambria Math";}\n'
            'p.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;font-size:11.0pt;'
            'font-family:"Calibri",sans-serif;}\n--></style>\n</head>\n<body lang="EN-US" '
            'link="#0563C1" vlink="#954F72" style="word-wrap:break-word">\n<div class="WordSection1">\n')
    for l in text.split('\n'):
        html += '<p class="MsoNormal">%s<o:p></o:p></p>\n' % (l or '&nbsp;')
    inline = g.r.random() < 0.5
    if inline:
        cid = 'image001.png@01DA%s.%s' % (g.hexs(4).upper(), g.hexs(8).upper())
        html += '<p class="MsoNormal"><img width="120" height="40" id="Picture_x0020_1" src="cid:%s"></p>\n' % cid
    html += '</div>\n</body>\n</html>\n'
    msg.add_alternative(html, subtype='html', charset='utf-8', cte='quoted-printable')
    if inline:
        alt = msg.get_payload()[1]
        alt.add_related(bytes(g.r.randrange(256) for _ in range(1500)), maintype='image',
                        subtype='png', cid='<%s>' % cid, filename='image001.png')
    if g.r.random() < 0.4:
        fn = g.pick(['Angebot_%d.pdf', 'Präsentation Q%d.pptx', 'Rechnung Nr. %d – März.pdf',
                     'report_%d.xlsx'])
        fn = fn % g.r.randrange(1, 9999) if '%d' in fn else fn
        msg.add_attachment(b'%PDF-1.7\n' + bytes(g.r.randrange(256) for _ in range(4000)),
                           maintype='application', subtype='octet-stream', filename=fn)
        msg['X-MS-Has-Attach'] = 'yes'
    # Exchange Online: internal hops over IPv6, then the outbound protection relay
    hop1 = '%s%04d.%s.prod.outlook.com' % (g.pick(['AM0PR02MB', 'DB9PR07MB', 'PAXPR04MB', 'BN0PR11MB']),
                                           g.r.randrange(10000), g.pick(['eurprd02', 'eurprd07', 'namprd11']))
    hop2 = hop1.replace('MB', 'MB', 1).replace(hop1[:9], g.pick(['AM9PR02MB', 'VI1PR07MB', 'DU0PR04MB']))
    ob_ip = '40.107.%d.%d' % (g.r.randrange(0, 255), g.r.randrange(1, 254))
    ob = 'mail-%s.outbound.protection.outlook.com' % g.alnum(14).lower()
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx('%s.outbound.protection.outlook.com' % g.pick(['EUR05-AM6-obe', 'EUR03-DBA-obe',
                                                                     'NAM11-DM6-obe']),
                       ob, ob_ip, 4)
    trace += 'ARC-Seal: i=1; a=rsa-sha256; s=arcselector10001; d=microsoft.com; cv=none;\n\tb=%s\n' % g.alnum(80)
    trace += g.dkim(dom, 'From:Date:Subject:Message-ID:Content-Type:MIME-Version:X-MS-Exchange-SenderADCheck')
    ts = g.when(5, (0, None))
    trace += ('Received: from %s (2603:10a6:%x:%x::%x) by\n %s (2603:10a6:%x:%x::%x) with\n'
              ' Microsoft SMTP Server (version=TLS1_2,\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)'
              ' id 15.20.%d.%d; %s\n') % (
        hop1, g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(4096), hop2, g.r.randrange(4096),
        g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(9999), g.r.randrange(99),
        ts.split(' (')[0])
    trace += ('Received: from %s\n ([fe80::%x:%x:%x:%x]) by %s\n ([fe80::%x:%x:%x:%x%%7]) with '
              'mapi id 15.20.%d.%d; %s\n') % (
        hop1, g.r.randrange(65536), g.r.randrange(65536), g.r.randrange(65536), g.r.randrange(65536),
        hop1, g.r.randrange(65536), g.r.randrange(65536), g.r.randrange(65536), g.r.randrange(65536),
        g.r.randrange(9999), g.r.randrange(99), g.when(7, (0, None)).split(' (')[0])
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    msg['X-MS-Exchange-Organization-SCL'] = str(g.pick([-1, 1, 5]))
    msg['X-MS-Exchange-CrossTenant-originalarrivaltime'] = g.when(6, (0, None)).split(' (')[0]
    msg['x-ms-publictraffictype'] = 'Email'
    return finish(g, msg, trace)


def t_apple_mail(g):
    dom = g.pick(['icloud.com', 'me.com', 'posteo.de', 'mailbox.org', 'fastmail.com'])
    first = g.pick(FIRST)
    addr = '%s%d@%s' % (''.join(c for c in first.lower() if c.isascii() and c.isalpha()) or 'me',
                        g.r.randrange(1, 99), dom)
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', '%s %s' % (first, g.pick(LAST)), addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['', 'Re: ']) + g.words(3).capitalize()
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, 2)
    msg['X-Mailer'] = g.pick(['iPhone Mail (21E236)', 'Apple Mail (2.3774.500.171.1.1)',
                              'iPad Mail (20H115)'])
    text = '%s\n\n%s\n\nSent from my iPhone\n' % (g.paragraph(), g.paragraph(2))
    msg.set_content(text, charset='utf-8', cte=g.pick(['quoted-printable', '8bit', '7bit']) if all(
        ord(c) < 128 for c in text) else g.pick(['quoted-printable', '8bit']))
    if g.r.random() < 0.5:
        msg.add_alternative('<html><head><meta http-equiv="content-type" content="text/html; '
                            'charset=utf-8"></head><body dir="auto"><div dir="ltr">%s</div></body></html>\n'
                            % text.replace('\n', '<br>'), subtype='html', charset='utf-8',
                            cte='quoted-printable')
    ip = g.ip4()
    helo = g.pick(['mout.%s' % dom, 'mail-%s.%s' % (g.alnum(4).lower(), dom), 'st43p00im-zteg10062001.me.com'])
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx(helo, helo, ip, 3)
    trace += g.dkim(dom)
    if g.r.random() < 0.5:
        trace += ('Received: from smtpclient.apple (unknown [%s])\n\tby %s (Postfix) with ESMTPSA id %s;\n'
                  '\t%s\n') % (g.ip6('2a02:8108'), helo, g.alnum(10, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789'),
                               g.when(5, (60, 'CET')))
    del msg['MIME-Version']
    msg['Mime-Version'] = '1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))'
    return finish(g, msg, trace)


def esp_headers(g, esp, dom):
    """Received + DKIM of an ESP."""
    if esp == 'ses':
        ip = '54.240.%d.%d' % (g.r.randrange(0, 64), g.r.randrange(1, 254))
        h = 'a%d-%d.smtp-out.eu-west-1.amazonses.com' % (g.r.randrange(1, 255), g.r.randrange(1, 255))
        t = g.rcvd_mx(h, h, ip, 3)
        t += g.dkim(dom, 'Subject:From:To:Date:Mime-Version:Content-Type:Message-Id:List-Unsubscribe:'
                    'List-Unsubscribe-Post:Feedback-ID')
        t += g.dkim('amazonses.com', 'Subject:From:To:Date:Mime-Version:Content-Type:Message-Id:Feedback-ID')
        return t, 'X-SES-Outgoing: 2026.%02d.%02d-%s\nFeedback-ID: ::1.eu-west-1.%s=:AmazonSES\n' % (
            g.t.month, g.t.day, ip, g.alnum(43))
    if esp == 'sendgrid':
        ip = '149.72.%d.%d' % (g.r.randrange(0, 255), g.r.randrange(1, 254))
        h = 'o%d.ptr%d.%s' % (g.r.randrange(1, 99), g.r.randrange(1000, 9999), dom)
        t = g.rcvd_mx(h, h, ip, 3)
        t += g.dkim(dom, 'content-type:from:mime-version:subject:list-unsubscribe:list-unsubscribe-post:to:cc')
        t += ('Received: by filterdrecv-%s-%s with SMTP id filterdrecv-%s-%s-1-%s-2\n\t%s\n' % (
            g.hexs(10), g.alnum(5).lower(), g.hexs(10), g.alnum(5).lower(), g.hexs(8).upper(),
            g.when(6, (0, None)).split(' (')[0] + ' (UTC)'))
        return t, 'X-SG-EID: u001.%s\nX-Entity-ID: u001.%s\n' % (g.alnum(60), g.alnum(20))
    # mailchimp
    ip = '198.2.%d.%d' % (g.r.randrange(128, 191), g.r.randrange(1, 254))
    h = 'mail%d.sea%d.mcsv.net' % (g.r.randrange(1, 200), g.r.randrange(1, 99))
    t = g.rcvd_mx(h, h, ip, 3)
    t += g.dkim(dom, 'Subject:From:Reply-To:To:Date:Message-ID:List-ID:List-Unsubscribe:'
                'List-Unsubscribe-Post:Content-Type:MIME-Version')
    t += 'Received: from localhost (localhost [127.0.0.1])\n\tby %s (Mailchimp) with ESMTP id 4Z%s\n\tfor <%s>; %s\n' % (
        h, g.alnum(10), RCPT, g.when(8, (0, None)))
    return t, 'X-MC-User: %s\nX-Campaign: mailchimp%s.%s\nX-campaignid: mailchimp%s.%s\nX-Mailer: Mailchimp Mailer - **CID%s**\n' % (
        g.hexs(25), g.hexs(25), g.hexs(10), g.hexs(25), g.hexs(10), g.hexs(10))


def t_newsletter(g):
    dom = g.pick(['example-shop.com', 'news.example-airline.com', 'mail.example-bank.de',
                  'updates.example-saas.io'])
    esp = g.pick(['ses', 'sendgrid', 'mailchimp'])
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.pick(['Example Shop', 'Example Airline ✈', 'Die Bank', 'Product Updates']),
             g.pick(['news', 'hello', 'no-reply', 'team']) + '@' + dom)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Your weekly digest', '🔥 Black Friday: up to 50% off', 'Neu: Ihre '
                             'Kontoauszüge sind da', 'What’s new in March', 'Last chance — '
                             'ends tonight', 'Ihr Flug nach München: jetzt einchecken'])
    msg['Date'] = g.date_hdr((0, None))
    msg['Message-ID'] = g.mid(dom, 3 if esp == 'ses' else 5)
    msg['List-Unsubscribe'] = '<https://%s/unsubscribe/%s?e=%s>, <mailto:unsub-%s@%s>' % (
        dom, g.alnum(32), g.alnum(16), g.hexs(16), dom)
    msg['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click'
    if g.r.random() < 0.5:
        msg['List-ID'] = '%s <%s.list-id.%s>' % (g.alnum(20), g.hexs(10), dom)
    msg['Precedence'] = g.pick(['bulk', 'list'])
    if g.r.random() < 0.5:
        msg['Reply-To'] = 'support@' + dom.split('.', 1)[-1]
    paras = [g.paragraph() for _ in range(g.r.randrange(3, 9))]
    links = [(g.pick(['Shop now', 'Read more', 'Jetzt ansehen', 'Check in']),
              'https://click.%s/ls/click?upn=%s-2B%s&amp;utm_source=newsletter&amp;utm_medium=email'
              '&amp;utm_campaign=%s' % (dom, g.alnum(120), g.alnum(40), g.words(1)))
             for _ in range(g.r.randrange(1, 5))]
    kind = g.r.randrange(3)
    imgs = [('https://cdn.%s/img/%s.png' % (dom, g.hexs(12)), g.pick([600, 300, 200]),
             g.pick([200, 100, 50, 300])) for _ in range(g.r.randrange(0, 4))]
    if kind == 2:
        imgs = [('cid:img%d@%s' % (i, dom), 600, 200) for i in range(g.r.randrange(1, 3))]
    html = html_page(g, msg['Subject'], paras, links, imgs, dark=g.r.random() < 0.2)
    if kind == 0:       # HTML only, long base64 lines
        msg.set_content(html, subtype='html', charset='utf-8', cte='base64')
    else:
        text = '\n\n'.join(paras + ['%s: %s' % (t, u.replace('&amp;', '&')) for t, u in links])
        msg.set_content(text + '\n', charset='utf-8', cte='quoted-printable')
        msg.add_alternative(html, subtype='html', charset='utf-8',
                            cte=g.pick(['base64', 'quoted-printable']))
        if kind == 2:
            alt = msg.get_payload()[1]
            for i in range(len(imgs)):
                alt.add_related(bytes(g.r.randrange(256) for _ in range(2500)), maintype='image',
                                subtype=g.pick(['png', 'jpeg', 'gif']), cid='<img%d@%s>' % (i, dom))
    trace, extra = esp_headers(g, esp, dom)
    trace = 'Return-Path: <bounce-%s@%s>\n' % (g.hexs(20), 'bounces.' + dom) + trace
    for line in extra.strip().split('\n'):
        k, v = line.split(': ', 1)
        msg[k] = v
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_calendar(g):
    first, last = g.pick(FIRST), g.pick(LAST)
    org = 'organizer%d@gmail.com' % g.r.randrange(1000)
    start = g.t + datetime.timedelta(days=g.r.randrange(1, 20))
    uid = '%s@google.com' % g.alnum(26).lower()
    ics = '\r\n'.join([
        'BEGIN:VCALENDAR', 'PRODID:-//Google Inc//Google Calendar 70.9054//EN', 'VERSION:2.0',
        'CALSCALE:GREGORIAN', 'METHOD:REQUEST', 'BEGIN:VEVENT',
        'DTSTART:%s' % start.strftime('%Y%m%dT%H%M%SZ'),
        'DTEND:%s' % (start + datetime.timedelta(hours=1)).strftime('%Y%m%dT%H%M%SZ'),
        'DTSTAMP:%s' % g.t.strftime('%Y%m%dT%H%M%SZ'),
        'ORGANIZER;CN=%s %s:mailto:%s' % (first, last, org), 'UID:%s' % uid,
        'ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=',
        ' TRUE;CN=%s;X-NUM-GUESTS=0:mailto:%s' % (RCPT, RCPT),
        'X-GOOGLE-CONFERENCE:https://meet.google.com/%s-%s-%s' % (g.alnum(3, 'abcdefghijkmnpqrstuvwxyz'),
                                                                  g.alnum(4, 'abcdefghijkmnpqrstuvwxyz'),
                                                                  g.alnum(3, 'abcdefghijkmnpqrstuvwxyz')),
        'DESCRIPTION:%s' % g.sentence(), 'LOCATION:', 'SEQUENCE:0', 'STATUS:CONFIRMED',
        'SUMMARY:%s' % g.words(3).capitalize(), 'TRANSP:OPAQUE', 'END:VEVENT', 'END:VCALENDAR', ''])
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', '%s %s' % (first, last), org)
    set_addr(msg, 'To', None, RCPT)
    msg['Reply-To'] = '%s %s <%s>' % (first, last, org)
    msg['Subject'] = 'Invitation: %s @ %s (GMT) (%s)' % (g.words(3).capitalize(),
                                                       start.strftime('%a %b %d, %Y %I%p'), RCPT)
    msg['Date'] = g.date_hdr((0, None))
    msg['Message-ID'] = g.mid('google.com', 0)
    msg['Sender'] = 'Google Calendar <calendar-notification@google.com>'
    msg.set_content('You have been invited to the following event.\n\n%s\n\nJoin with Google Meet\n'
                    'https://meet.google.com/abc-defg-hij\n\nInvitation from Google Calendar\n'
                    % g.paragraph(1), charset='utf-8')
    msg.add_alternative('<p>You have been invited to the following event.</p><p>%s</p>'
                        '<a href="https://calendar.google.com/calendar/event?action=RESPOND&amp;eid=%s'
                        '&amp;rst=1&amp;tok=%s&amp;ctz=Europe%%2FBerlin&amp;hl=en&amp;es=0">Yes</a>\n'
                        % (g.paragraph(1), g.alnum(60), g.alnum(40)), subtype='html', charset='utf-8')
    cal = EmailMessage(policy=POL)
    cal.set_content(ics, subtype='calendar', charset='UTF-8', cte='7bit' if ics.isascii() else '8bit')
    cal.set_param('method', 'REQUEST')
    msg.attach(cal)
    msg.make_mixed()
    inv = EmailMessage(policy=POL)
    inv.set_content(ics.encode(), maintype='application', subtype='ics', filename='invite.ics')
    msg.attach(inv)
    h = 'mail-%s-f%d.google.com' % (g.pick(['sor', 'ot1']), g.r.randrange(10, 99))
    trace = 'Return-Path: <%s>\n' % org
    trace += g.rcvd_mx(h, h, '209.85.220.%d' % g.r.randrange(1, 254), 2)
    trace += g.dkim('google.com')
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_dsn(g):
    orig_to = '%s@%s' % (g.pick(['bob', 'info', 'nobody', 'j.doe']),
                         g.pick(['example.org', 'example.com', 'xn--mller-kva.de']))
    msg = EmailMessage(policy=POL)
    msg['From'] = 'MAILER-DAEMON@%s (Mail Delivery System)' % MX
    msg['To'] = RCPT
    msg['Subject'] = g.pick(['Undelivered Mail Returned to Sender', 'Delivery Status Notification (Failure)',
                             'Mail delivery failed: returning message to sender',
                             'Unzustellbar: ' + g.words(3)])
    msg['Date'] = g.date_hdr((60, 'CET'))
    msg['Message-ID'] = '<%s.%s@%s>' % (g.alnum(10).upper(), g.alnum(10).upper(), MX)
    msg['Auto-Submitted'] = 'auto-replied'
    text = ('This is the mail system at host %s.\n\nI\'m sorry to have to inform you that your message '
            'could not\nbe delivered to one or more recipients. It\'s attached below.\n\n'
            '<%s>: host mx.%s[%s] said: 550 5.1.1\n    <%s>: Recipient address rejected: User unknown '
            '(in reply to RCPT TO command)\n') % (MX, orig_to, orig_to.split('@')[1], g.ip4(), orig_to)
    msg.set_content(text, charset='us-ascii', disposition='inline')
    ds = ('Reporting-MTA: dns; %s\nX-Postfix-Queue-ID: %s\nArrival-Date: %s\n\nFinal-Recipient: '
          'rfc822; %s\nOriginal-Recipient: rfc822;%s\nAction: failed\nStatus: 5.1.1\nRemote-MTA: '
          'dns; mx.%s\nDiagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected: User '
          'unknown\n') % (MX, g.alnum(10), g.when(60), orig_to, orig_to, orig_to.split('@')[1], orig_to)
    orig = EmailMessage(policy=POL)
    orig['From'] = 'Alice <%s>' % RCPT
    orig['To'] = orig_to
    orig['Subject'] = g.words(4).capitalize()
    orig['Date'] = g.date_hdr()
    orig['Message-ID'] = g.mid('example.net', 4)
    orig.set_content(g.paragraph() + '\n')
    msg.make_mixed()
    dsp = email.message_from_string('Content-Type: message/delivery-status\n\n' + ds, policy=POL)
    msg.attach(dsp)
    if g.r.random() < 0.5:
        op = EmailMessage(policy=POL)
        op.set_content(orig)
        msg.attach(op)
    else:
        op = EmailMessage(policy=POL)
        op['Content-Type'] = 'text/rfc822-headers'
        op.set_payload(str(orig).split('\n\n', 1)[0] + '\n')
        msg.attach(op)
    msg.replace_header('Content-Type', 'multipart/report; report-type=delivery-status')
    trace = 'Return-Path: <>\n'
    trace += ('Received: by %s (Postfix)\n\tid %s; %s\n' % (MX, g.alnum(10), g.when(1, (60, 'CET'))))
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_forward_rfc822(g):
    dom = g.pick(['example.org', 'uni-example.de', 'example.ac.uk'])
    first = g.pick(FIRST)
    addr = 'fwd%d@%s' % (g.r.randrange(100), dom)
    inner = EmailMessage(policy=POL)
    set_addr(inner, 'From', g.name_(), 'someone%d@example.com' % g.r.randrange(100))
    set_addr(inner, 'To', first, addr)
    inner['Subject'] = g.words(4).capitalize()
    inner['Date'] = g.date_hdr()
    inner['Message-ID'] = g.mid('example.com')
    inner.set_content(g.paragraph() + '\n', charset='utf-8')
    if g.r.random() < 0.5:
        inner.add_alternative('<p>%s</p>\n' % g.paragraph(), subtype='html', charset='utf-8')
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', first, addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = 'Fwd: ' + str(inner['Subject'])
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, 4)
    msg['User-Agent'] = g.pick(['Mozilla Thunderbird', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) '
                                'Gecko/20100101 Thunderbird/128.5.0', 'Roundcube Webmail/1.6.9',
                                'Evolution 3.50.2', 'K-9 Mail for Android'])
    msg['Content-Language'] = 'en-US'
    msg.set_content('FYI, see below.\n\n-- \n%s\n' % first, charset='utf-8')
    msg.add_attachment(inner, filename='%s.eml' % inner['Subject'])
    ip = g.ip4()
    helo = 'mail.' + dom
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx(helo, helo, ip, 3)
    trace += g.dkim(dom)
    trace += ('Received: from [%s] (p%s.dip0.t-ipconnect.de [%s])\n\t(Authenticated sender: %s)\n'
              '\tby %s (Postfix) with ESMTPSA id %s\n\tfor <%s>; %s\n') % (
        '192.168.%d.%d' % (g.r.randrange(256), g.r.randrange(1, 254)), g.hexs(8).upper(), g.ip4(),
        addr, helo, g.alnum(10), RCPT, g.when(6, (60, 'CET')))
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_smime(g):
    dom = g.pick(['bund.example.de', 'example-bank.com', 'example-lab.org'])
    addr = '%s@%s' % (g.pick(['pki', 'kontakt', 'legal', 'j.smith']), dom)
    inner = EmailMessage(policy=POL)
    inner.set_content('%s\n\n%s\n' % (g.paragraph(), g.paragraph()), charset='utf-8',
                      cte='quoted-printable')
    if g.r.random() < 0.5:
        inner.add_alternative('<p>%s</p>\n' % g.paragraph(), subtype='html', charset='utf-8')
    sig = EmailMessage(policy=POL)
    sig.set_content(bytes(g.r.randrange(256) for _ in range(2200)), maintype='application',
                    subtype='pkcs7-signature', filename='smime.p7s', disposition='attachment')
    sig.set_param('name', 'smime.p7s')
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.name_(), addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Signed: ', '']) + g.words(4).capitalize()
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, g.pick([1, 4]))
    msg['Content-Type'] = ('multipart/signed; protocol="application/pkcs7-signature"; '
                           'micalg=sha-256')
    msg.set_payload([inner, sig])
    ip = g.ip4()
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx('mail.' + dom, 'mail.' + dom, ip, 3)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_list_mail(g):
    lst = g.pick(['dev', 'users', 'announce', 'discuss'])
    ldom = g.pick(['lists.example.org', 'lists.debian.example', 'mail.python.example'])
    first, last = g.pick(FIRST), g.pick(LAST)
    sdom = g.pick(['gmail.com', 'example.com', 'yahoo.com', 'outlook.com', 'posteo.de'])
    saddr = '%s@%s' % (''.join(c for c in (first + last).lower() if c.isascii() and c.isalpha()) or 'u', sdom)
    dmarc_rewrite = g.r.random() < 0.4
    msg = EmailMessage(policy=POL)
    if dmarc_rewrite:
        set_addr(msg, 'From', '%s %s via %s' % (first, last, lst), '%s@%s' % (lst, ldom))
        msg['Reply-To'] = '%s %s <%s>' % (first, last, saddr)
    else:
        set_addr(msg, 'From', '%s %s' % (first, last), saddr)
    msg['To'] = '%s@%s' % (lst, ldom)
    subj = '[%s] %s%s' % (lst, g.pick(['Re: ', '', 'ANN: ']), g.words(g.r.randrange(3, 8)))
    msg['Subject'] = subj
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(sdom, g.pick([0, 4, 5]))
    if 'Re: ' in subj:
        refs = [g.mid(g.pick(['gmail.com', 'example.com']), g.pick([0, 4, 5])) for _ in range(g.r.randrange(1, 30))]
        msg['References'] = ' '.join(refs)
        msg['In-Reply-To'] = refs[-1]
    msg['List-Id'] = '%s discussion <%s.%s>' % (lst.capitalize(), lst, ldom)
    msg['List-Archive'] = '<https://%s/archives/list/%s@%s/>' % (ldom, lst, ldom)
    msg['List-Help'] = '<mailto:%s-request@%s?subject=help>' % (lst, ldom)
    msg['List-Owner'] = '<mailto:%s-owner@%s>' % (lst, ldom)
    msg['List-Post'] = '<mailto:%s@%s>' % (lst, ldom)
    msg['List-Subscribe'] = '<mailto:%s-join@%s>' % (lst, ldom)
    msg['List-Unsubscribe'] = '<mailto:%s-leave@%s>' % (lst, ldom)
    if g.r.random() < 0.5:
        msg['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click'
    msg['Precedence'] = 'list'
    msg['X-Mailman-Version'] = '3.3.9'
    text = '%s\n\n%s\n\n' % (g.paragraph(), g.paragraph())
    if 'Re: ' in subj:
        text = 'On %s, %s wrote:\n> %s\n> %s\n\n' % (g.when(90000), g.name_(), g.sentence(),
                                                      g.sentence()) + text
    text += '_______________________________________________\n%s mailing list -- %s@%s\n' \
            'To unsubscribe send an email to %s-leave@%s\n' % (lst, lst, ldom, lst, ldom)
    msg.set_content(text, charset='utf-8', cte=g.pick(['8bit', 'quoted-printable', '7bit'])
                    if all(ord(c) < 128 for c in text) else g.pick(['8bit', 'quoted-printable']))
    ip = g.ip4()
    lip = g.ip4()
    trace = 'Return-Path: <%s-bounces@%s>\n' % (lst, ldom)
    if g.r.random() < 0.5:      # Exim at the list
        trace += ('Received: from %s ([%s])\n\tby %s (Postfix) with ESMTPS id %s\n\tfor <%s>; %s\n' % (
            'mail.' + ldom, lip, MX, g.alnum(10), RCPT, g.when(2, (60, 'CET'))))
        trace += ('Received: from [%s] (helo=%s)\n\tby mail.%s with esmtps  (TLS1.3) tls '
                  'TLS_AES_256_GCM_SHA384\n\t(Exim 4.96)\n\t(envelope-from <%s>)\n\tid 1t%s-%s-%s\n'
                  '\tfor %s@%s;\n\t%s\n') % (ip, 'mail.' + sdom, ldom, saddr, g.alnum(5), g.alnum(6),
                                             g.alnum(2), lst, ldom, g.when(5, (0, 'GMT')))
    else:
        trace += g.rcvd_mx('mail.' + ldom, 'mail.' + ldom, lip, 2)
        trace += ('Received: from mail-%s.%s (mail-%s.%s [%s])\n\t(using TLSv1.3 with cipher '
                  'TLS_AES_128_GCM_SHA256 (128/128 bits))\n\t(No client certificate requested)\n'
                  '\tby mail.%s (Postfix) with ESMTPS id %s\n\tfor <%s@%s>; %s\n') % (
            g.alnum(4).lower(), sdom, g.alnum(4).lower(), sdom, ip, ldom, g.alnum(10), lst, ldom,
            g.when(5, (0, 'UTC')))
    if g.r.random() < 0.6:
        trace = g.arc(sdom) + trace
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_qmail(g):
    dom = g.pick(['example-hosting.com', 'old-isp.example', 'shop.example.it'])
    addr = 'info@' + dom
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.pick(['Info', 'Servizio Clienti', 'Webmaster']), addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Conferma ordine n. %d', 'Order confirmation #%d', 'Ihre Bestellung %d'
                             ]) % g.r.randrange(10000, 99999)
    msg['Date'] = g.date_hdr((60, None))
    msg['Message-ID'] = '<%d.%d.qmail@%s>' % (int(g.t.timestamp()), g.r.randrange(100000), dom)
    msg.set_content('%s\n\n%s\n' % (g.paragraph(), g.paragraph()),
                    charset=g.pick(['iso-8859-1', 'utf-8', 'windows-1252']), cte='quoted-printable')
    ip = g.ip4()
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx('mail.' + dom, g.pick(['mail.' + dom, None]), ip, 3, tls=g.r.random() < 0.5)
    trace += 'Received: (qmail %d invoked by uid %d); %s\n' % (g.r.randrange(1, 99999), g.r.randrange(
        100, 9999), format_datetime((g.t - datetime.timedelta(seconds=8)).astimezone(datetime.timezone.utc)).replace(
        '+0000', '-0000').split(', ', 1)[1])
    if g.r.random() < 0.5:
        trace += ('Received: from unknown (HELO %s) (%s@%s)\n  by mail.%s with ESMTPA; %s\n' % (
            g.pick(['localhost', 'web01', '[192.168.1.10]']), addr, g.ip4(), dom,
            format_datetime((g.t - datetime.timedelta(seconds=9)).astimezone(datetime.timezone.utc)).replace(
                '+0000', '-0000').split(', ', 1)[1]))
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_attach_2231(g):
    dom = g.pick(['example-gmbh.de', 'example.fr', 'example.co.jp'])
    first, last = g.pick(FIRST), g.pick(LAST)
    addr = 'office@' + dom
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', '%s %s' % (first, last), addr)
    set_addr(msg, 'To', g.pick(['Alice Müller', 'Alice']), RCPT)
    msg['Subject'] = g.pick(['Unterlagen für die Sitzung', 'Documents pour la réunion',
                             '会議の資料', 'Lebenslauf und Zeugnisse', 'Photos from the weekend'])
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, g.pick([1, 2, 4]))
    msg['User-Agent'] = 'Mozilla Thunderbird'
    msg.set_content('%s\n\n-- \n%s %s\n' % (g.paragraph(), first, last), charset='utf-8',
                    cte=g.pick(['8bit', 'quoted-printable']))
    for _ in range(g.r.randrange(1, 4)):
        fn = g.pick(['Übersicht_Q3 (endgültig).pdf', 'résumé – 2026.docx', '議事録_2026年.pdf',
                     'Foto %d.jpeg', 'a very long file name that goes on and on and on for the '
                     'purpose of testing RFC 2231 continuations %d.pdf', 'Kostenvoranschlag_Nr_%d.xlsx'])
        fn = fn % g.r.randrange(1000) if '%d' in fn else fn
        mt, st = ('image', 'jpeg') if fn.endswith('jpeg') else ('application', g.pick(
            ['pdf', 'octet-stream', 'vnd.openxmlformats-officedocument.wordprocessingml.document']))
        msg.add_attachment(bytes(g.r.randrange(256) for _ in range(g.r.randrange(500, 6000))),
                           maintype=mt, subtype=st, filename=fn)
    ip = g.ip4()
    trace = 'Return-Path: <%s>\n' % addr
    trace += g.rcvd_mx('mail.' + dom, 'mail.' + dom, ip, 3)
    trace += g.dkim(dom)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_long_headers(g):
    dom = g.pick(['example.org', 'example.com'])
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.name_(), 'team@' + dom)
    msg['To'] = ', '.join('%s <%s%d@%s>' % (g.name_(), g.pick(WORDS), i, g.pick(['example.net', dom]))
                          for i in range(g.r.randrange(20, 60)))
    msg['Subject'] = 'Re: ' * g.r.randrange(1, 4) + ' '.join(g.pick(WORDS) for _ in range(g.r.randrange(20, 40)))
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, 4)
    refs = [g.mid(dom, g.pick([0, 1, 4])) for _ in range(g.r.randrange(30, 80))]
    msg['References'] = ' '.join(refs)
    msg['In-Reply-To'] = refs[-1]
    msg['X-Custom-Tracking'] = g.alnum(g.r.randrange(900, 2000))
    msg.set_content(g.paragraph() + '\n', charset='utf-8')
    ip = g.ip4()
    trace = 'Return-Path: <team@%s>\n' % dom
    trace += g.rcvd_mx('mail.' + dom, 'mail.' + dom, ip, 3)
    trace += g.dkim(dom)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_idn(g):
    dom_u, dom_a = g.pick([('müller-bäckerei.de', 'xn--mller-bckerei-rkb0f.de'),
                           ('bücher.example', 'xn--bcher-kva.example'),
                           ('пример.рф', 'xn--e1afmkfd.xn--p1ai'),
                           ('例え.jp', 'xn--r8jz45g.jp')])
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.name_(), 'info@' + dom_a)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Ihre Bestellung bei ', 'Новости ', 'お知らせ ', 'News from ']) + dom_u
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom_a, 5)
    urls = ['https://%s/angebote?id=%d&lang=de' % (dom_a, g.r.randrange(1000)),
            'https://www.%s/' % dom_u, 'http://%s/%s' % (dom_u, g.alnum(6)),
            'https://%s/r/%s' % (g.pick(SHORTENERS), g.alnum(7))]
    text = '%s\n\n%s\n\n%s\n' % (g.paragraph(), '\n'.join(g.r.sample(urls, 3)), g.paragraph(2))
    msg.set_content(text, charset='utf-8', cte=g.pick(['8bit', 'quoted-printable', 'base64']))
    if g.r.random() < 0.6:
        msg.add_alternative('<p>%s</p><p>%s</p>\n' % (g.paragraph(), ' '.join(
            '<a href="%s">%s</a>' % (u, g.pick([dom_u, 'hier', 'link', u])) for u in urls)),
            subtype='html', charset='utf-8')
    ip = g.ip4()
    trace = 'Return-Path: <info@%s>\n' % dom_a
    trace += g.rcvd_mx('mail.' + dom_a, 'mail.' + dom_a, ip, 3)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


# ---- spam of today

def spam_relay(g, helo_dom, from_addr):
    ip = g.ip4()
    rdns = g.pick([None, 'ip-%s.static.example-hosting.net' % ip.replace('.', '-'),
                   'mail.' + helo_dom, '%s.vps.example-cloud.com' % g.alnum(8).lower()])
    helo = g.pick(['mail.' + helo_dom, helo_dom, 'localhost', '[%s]' % ip, 'WIN-%s' % g.alnum(11).upper()])
    trace = 'Return-Path: <%s>\n' % from_addr
    trace += g.rcvd_mx(helo, rdns, ip, 3, tls=g.r.random() < 0.7)
    return trace


def t_spam_phish(g):
    brand = g.pick(['Microsoft 365', 'PayPal', 'Netflix', 'Apple ID', 'DHL Express', 'Sparkasse',
                    'Amazon', 'Office365 Admin', 'WeTransfer'])
    dom = g.pick(['secure-%s.com' % g.alnum(6).lower(), '%s-support.info' % g.alnum(5).lower(),
                  'account-verify-%d.xyz' % g.r.randrange(1000), 'xn--pypal-4ve.com',
                  'mail%d.%s.top' % (g.r.randrange(99), g.alnum(7).lower())])
    from_addr = g.pick(['no-reply', 'security', 'service', 'account']) + '@' + dom
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.pick([brand, brand + ' Security', '%s Support Team' % brand]), from_addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Your account has been suspended', 'Action required: verify your '
                             'account', '⚠️ Unusual sign-in activity', 'Ihr Konto wurde gesperrt',
                             'Your password expires today', 'Final notice: update your payment '
                             'information', 'You have (3) undelivered messages',
                             'Ihre Sendung konnte nicht zugestellt werden']) + g.pick(
        ['', ' #%d' % g.r.randrange(10**6), ' [%s]' % RCPT])
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, g.pick([5, 4, 1]))
    if g.r.random() < 0.4:
        msg['X-Mailer'] = g.pick(['PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)',
                                  'Microsoft Outlook 16.0', 'Open-Xchange Mailer v7.10.6'])
    url = g.pick(['https://%s/login?session=%s&email=%s' % (dom, g.alnum(32), RCPT),
                  'https://%s/%s' % (g.pick(SHORTENERS), g.alnum(7)),
                  'http://%s/%s/index.php?u=%s' % (g.ip4(), g.alnum(6), g.alnum(12)),
                  'https://storage.googleapis.com/%s/index.html#%s' % (g.alnum(12).lower(), RCPT),
                  'https://%s.web.app/?email=%s' % (g.alnum(10).lower(), RCPT)])
    paras = ['Dear Customer,' if g.r.random() < 0.5 else 'Hello %s,' % RCPT,
             'We detected unusual activity on your account and have temporarily limited access. '
             'To restore full access, please verify your information within 24 hours.',
             'If you do not verify, your account will be permanently closed.',
             'Thank you,<br>The %s Team' % brand]
    shown = g.pick(['Verify Now', 'Restore Access', 'https://www.paypal.com/signin',
                    'https://account.microsoft.com/security', 'Konto bestätigen'])
    html = html_page(g, 'Account notice', paras, [(shown, url)], footer=g.r.random() < 0.5)
    if g.r.random() < 0.5:
        msg.set_content(html, subtype='html', charset='utf-8', cte=g.pick(['base64', 'quoted-printable']))
    else:
        msg.set_content('Verify your account: %s\n' % url, charset='utf-8')
        msg.add_alternative(html, subtype='html', charset='utf-8', cte='quoted-printable')
    trace = spam_relay(g, dom, from_addr)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_spam_invoice(g):
    dom = g.pick(['billing-%s.com' % g.alnum(5).lower(), 'example-accounting.net', 'docs-%d.online' % g.r.randrange(99)])
    from_addr = g.pick(['invoice', 'accounts', 'billing', 'rechnung']) + '@' + dom
    n = g.r.randrange(10000, 999999)
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.pick(['Accounts Payable', 'Buchhaltung', g.name_()]), from_addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Invoice #%d overdue', 'Rechnung %d', 'RE: Payment confirmation %d',
                             'Remittance advice %d', 'INV-%d attached']) % n
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, g.pick([1, 5]))
    msg.set_content('Hello,\n\nPlease find attached the invoice %d for your review. Payment is due '
                    'within 3 days.\n\nKind regards\nAccounts\n' % n, charset=g.pick(['utf-8', 'us-ascii']))
    kind = g.pick(['zip', 'html', 'pdf', 'iso', 'docm', 'xlsm', 'pdf.exe', 'img'])
    fn = g.pick(['Invoice_%d', 'Rechnung-%d', 'INV%d', 'Payment Advice %d']) % n + '.' + kind
    payload = bytes(g.r.randrange(256) for _ in range(g.r.randrange(800, 5000)))
    if kind == 'html':
        payload = ('<html><body><script>window.location="https://%s/pay?i=%d"</script></body></html>'
                   % (dom, n)).encode()
        msg.add_attachment(payload, maintype='text', subtype='html', filename=fn)
    else:
        msg.add_attachment(payload, maintype='application', subtype=g.pick(
            ['octet-stream', 'zip', 'x-zip-compressed', 'pdf']), filename=fn)
    trace = spam_relay(g, dom, from_addr)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


def t_spam_crypto(g):
    dom = g.pick(['%s.ru' % g.alnum(8).lower(), '%s.top' % g.alnum(6).lower(), 'gmail.com',
                  'outlook.com', 'proton.me'])
    from_addr = '%s%d@%s' % (g.alnum(8).lower(), g.r.randrange(100), dom)
    msg = EmailMessage(policy=POL)
    set_addr(msg, 'From', g.pick(['Crypto Wallet', 'Bitcoin Support', 'Elon', '💰 Investments', None]),
             from_addr)
    set_addr(msg, 'To', None, RCPT)
    msg['Subject'] = g.pick(['Your Bitcoin withdrawal of 0.%d BTC is pending' % g.r.randrange(10**5),
                             '💰 Earn $%d a day with crypto' % g.r.randrange(500, 9000),
                             'I have access to your device. Pay %d USD in BTC' % g.r.randrange(500, 3000),
                             'Ihr Guthaben: %d,00 EUR' % g.r.randrange(1000, 99999),
                             'USDT airdrop claim — last day'])
    msg['Date'] = g.date_hdr()
    msg['Message-ID'] = g.mid(dom, g.pick([0, 5]))
    wallet = 'bc1q' + g.alnum(38, 'qpzry9x8gf2tvdw0s3jn54khce6mua7l')
    body = g.pick([
        'Hello!\n\nI am a hacker who has access to your operating system. I also have full access '
        'to your account.\n\nSend $%d in Bitcoin to my wallet: %s\n\nYou have 48 hours.\n' % (
            g.r.randrange(500, 3000), wallet),
        'Congratulations!\n\nYou have received %d USDT. To withdraw your funds, log in at '
        'https://%s/claim?ref=%s and confirm your wallet.\n\nBest regards,\nSupport\n' % (
            g.r.randrange(1000, 90000), g.pick(SHORTENERS), g.alnum(8)),
        'Dear friend,\n\nOur AI trading platform earns up to 3000%% per year. Start with only $250.\n'
        'Register now: https://%s.%s/register?aff=%d\n\nUnsubscribe: reply STOP\n' % (
            g.alnum(6).lower(), g.pick(['top', 'xyz', 'online', 'site']), g.r.randrange(10**5))])
    msg.set_content(body, charset=g.pick(['utf-8', 'us-ascii', 'iso-8859-1']),
                    cte=g.pick(['7bit', 'quoted-printable', 'base64']))
    trace = spam_relay(g, dom, from_addr)
    del msg['MIME-Version']
    msg['MIME-Version'] = '1.0'
    return finish(g, msg, trace)


# ---- a mixture: each message draws its parts from pools of today's variants

CHARSET_TEXTS = [
    ('utf-8', 'Здравствуйте! Ваш заказ №%d отправлен. Спасибо за покупку в нашем магазине.'),
    ('windows-1251', 'Здравствуйте! Ваш заказ №%d отправлен. Спасибо за покупку.'),
    ('koi8-r', 'Добрый день, счёт %d во вложении.'),
    ('iso-2022-jp', 'お世話になっております。ご注文番号%dの件でご連絡いたします。'),
    ('shift_jis', 'ご注文番号%dを承りました。'),
    ('gb2312', '您好，您的订单%d已发货，感谢您的购买。'),
    ('big5', '您好，訂單%d已出貨。'),
    ('euc-kr', '안녕하세요, 주문 %d 이 발송되었습니다.'),
    ('utf-8', 'مرحبا، تم شحن طلبك رقم %d. شكرا لك.'),
    ('utf-8', 'שלום, ההזמנה שלך %d נשלחה.'),
    ('iso-8859-2', 'Dzień dobry, zamówienie %d zostało wysłane. Żółć.'),
    ('iso-8859-15', 'Grüße aus Köln, Rechnung %d über 100 € anbei.'),
    ('windows-1252', 'Bonjour, la facture %d est jointe — merci.'),
    ('utf-8', 'Xin chào, đơn hàng %d của bạn đã được giao. Cảm ơn!'),
    ('utf-8', 'Hello 👋 your order %d has shipped 📦🚚 — track it here ✅'),
    ('utf-8', 'Ρ‌а‌у‌Р‌а‌l: y\u200bour acc\u200bount %d is l\u200bimited'),
    ('us-ascii', 'Your order %d has shipped.'),
]

SUBJECTS = ['Ваш заказ отправлен', 'ご注文ありがとうございます', '订单确认', 'Bestellbestätigung',
            'RE: Angebot', '=?utf-8?B?broken', 'FREE GIFT CARD!!! CLAIM NOW', 'Re: Re: Fwd: hi',
            'Your order has shipped 📦', 'Facture n° 2026-118', '', '   ', 'hello',
            'URGENT: Payment Overdue', 'Zahlungserinnerung – letzte Mahnung',
            'Meeting notes 03/12', 'ＦＲＥＥ　ＯＦＦＥＲ', 'Ｖｉａｇｒａ', 'You won $1,000,000.00 USD']

DATES = ['%a, %d %b %Y %H:%M:%S %z', '%a, %d %b %Y %H:%M:%S %z (%Z)', '%d %b %Y %H:%M:%S %z',
         '%a, %d %b %Y %H:%M:%S GMT', '%a, %d %b %Y %H:%M:%S UT', '%a, %d %b %Y %H:%M %z',
         '%a, %-d %b %Y %H:%M:%S %z', '%a, %d %b %Y %H:%M:%S %z (GMT+01:00)',
         '%a %b %d %H:%M:%S %Y', '%Y-%m-%dT%H:%M:%S%z', '%a, %d %b %y %H:%M:%S %z',
         '%A, %d %B %Y %H:%M:%S %z']

MIDS = ['<{h32}@{dom}>', '<{uuid}@{dom}>', '<{n}.{n2}.JavaMail.{user}@{host}>',
        '<{uuidu}@{host}>', '<{h16}${h8}$@{dom}>', '<{n}@localhost>', '<{h32}>', '{h32}@{dom}',
        '<{uuid}@{uuid}.local>', '<mail.{h16}.{n}@{dom}>', '<{b64}@swift.generated>',
        '<{h16}.{n}@email.amazonses.com>', '<CAL{b64}@mail.gmail.com>']

MAILERS = [None, None, 'Microsoft Outlook 16.0', 'Microsoft Office Outlook 12.0',
           'Microsoft Outlook Express 6.00.2900.5512', 'PHPMailer 6.9.1 (https://github.com/PHPMailer/PHPMailer)',
           'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0',
           'Apple Mail (2.3776.700.51)', 'iPhone Mail (22B83)', 'Zimbra 10.0.6_GA_4637 (ZimbraWebClient - GC131 (Win)/10.0.6_GA_4637)',
           'Roundcube Webmail/1.6.7', 'Foxmail 7.2.25.228[cn]', 'WPMailSMTP/Mailer/smtp 4.0.1',
           'Mailchimp Mailer - **CID5f1e**', 'Outlook-iOS/2.0', 'The Bat! (v10.4.0.3) Professional',
           'SquirrelMail/1.4.23', 'Sendinblue', 'nodemailer (6.9.8; +https://nodemailer.com/; SES/4.1.0)']


def rcvd_pool(g, dom):
    ip, ip6 = g.ip4(), g.ip6(g.pick(['2a01:111:f403', '2a00:1450:4864', '2607:f8b0:4864', '2001:db8:1']))
    host = g.pick(['mail.' + dom, 'smtp%d.%s' % (g.r.randrange(9), dom), 'out.%s' % dom])
    t = g.r.randrange(9)
    if t == 0:   # IPv6 client at our MX
        return g.rcvd_mx(host, host, ip6, 3)
    if t == 1:   # no rDNS, HELO an address literal
        return g.rcvd_mx('[%s]' % ip, None, ip, 3, tls=False)
    if t == 2:   # Exim style at our MX
        return ('Received: from %s ([%s] helo=%s)\n\tby %s with esmtps  (TLS1.3) tls TLS_AES_256_GCM_SHA384\n'
                '\t(Exim 4.97)\n\t(envelope-from <x@%s>)\n\tid 1t%s-%s-%s\n\tfor %s;\n\t%s\n') % (
            host, ip, host, MX, dom, g.alnum(5), g.alnum(6), g.alnum(2), RCPT, g.when(3, (0, 'GMT')))
    if t == 3:   # Exchange at our MX with IPv6
        return ('Received: from %s (%s) by\n %s (2603:10a6:10:%x::%x) with Microsoft SMTP Server\n'
                ' (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\n 15.20.8207.18; %s\n') % (
            host, ip6, MX, g.r.randrange(4096), g.r.randrange(4096), g.when(3, (0, None)).split(' (')[0])
    if t == 4:   # sendmail
        return ('Received: from %s (%s [%s])\n\tby %s (8.17.1.9/8.17.1.9) with ESMTPS id 3B%sU%s\n'
                '\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NOT)\n\tfor <%s>; %s\n') % (
            host, host, ip, MX, g.alnum(6), g.alnum(6), RCPT, g.when(3, (60, None)))
    if t == 5:   # a private hop behind, then the MX
        return g.rcvd_mx(host, host, ip, 3) + (
            'Received: from localhost (localhost [127.0.0.1])\n\tby %s (Postfix) with ESMTP id %s\n'
            '\tfor <%s>; %s\n' % (host, g.alnum(10), RCPT, g.when(5, (60, 'CET')))) + (
            'Received: from [10.%d.%d.%d] (unknown [10.0.0.%d])\n\tby %s (Postfix) with ESMTPSA id %s;\n\t%s\n' % (
                g.r.randrange(256), g.r.randrange(256), g.r.randrange(256), g.r.randrange(1, 254), host,
                g.alnum(10), g.when(7, (60, 'CET'))))
    if t == 6:   # a forged-looking chain
        return g.rcvd_mx(host, None, ip, 3) + (
            'Received: from mail.%s (mail.%s [%s]) by smtp.gmail.com with ESMTPSA id x%s;\n\t%s\n' % (
                'yahoo.com', 'yahoo.com', g.ip4(), g.alnum(10), g.when(9, (-480, 'PST'))))
    if t == 7:   # Postfix with the MX's own date in another zone, ESMTPSA, authenticated
        return ('Received: from %s (%s [%s])\n\t(Authenticated sender: x@%s)\n\tby %s (Postfix) with '
                'ESMTPSA id %s\n\tfor <%s>; %s\n') % (host, host, ip, dom, MX, g.alnum(10), RCPT,
                                                     g.when(3, (-300, 'EST')))
    # Google's own hops before ours
    return g.rcvd_mx('mail-%s.google.com' % g.alnum(6).lower(), 'mail-%s.google.com' % g.alnum(6).lower(),
                     '209.85.%d.%d' % (g.r.randrange(128, 255), g.r.randrange(254)), 3) + (
        'Received: by 2002:a17:90a:%x:b0:%x:%x with SMTP id %s;\n        %s\n' % (
            g.r.randrange(4096), g.r.randrange(4096), g.r.randrange(65536), g.alnum(10),
            g.when(5, (-480, 'PST'))))


def t_mixed(g):
    dom = g.pick(['example.com', 'example-shop.de', 'xn--bcher-kva.example', 'mail.example.co.jp',
                  'example.ru', 'gmail.com', 'yahoo.com', 'hotmail.com', 'outlook.com', 'example.cn',
                  'a1b2c3d4.top', 'example.co.uk'])
    user = g.pick(['info', 'no-reply', 'john.smith', 'support', 'x%d' % g.r.randrange(10**6), 'mailer-daemon',
                   'sales2', 'a.b-c_d'])
    addr = '%s@%s' % (user, dom)
    fmt = g.r.randrange(7)
    disp = g.pick(FIRST) + ' ' + g.pick(LAST)
    if fmt == 0:
        frm = addr
    elif fmt == 1:
        frm = '<%s>' % addr
    elif fmt == 2:
        frm = '%s (%s)' % (addr, disp)
    elif fmt == 3:
        frm = '"%s" <%s>' % (disp, addr)
    elif fmt == 4:
        frm = '=?UTF-8?B?%s?= <%s>' % (base64.b64encode(disp.encode()).decode(), addr)
    elif fmt == 5:
        frm = '=?utf-8?Q?%s?= <%s>' % (''.join(c if c.isascii() and c.isalnum() else ''.join(
            '=%02X' % b for b in c.encode()) for c in disp), addr)
    else:
        frm = '"%s via Example" <%s>' % (disp, 'noreply@example.com')
    subj = g.pick(SUBJECTS)
    senc = g.r.randrange(5)
    if senc == 1 and not subj.isascii():
        subj = '=?UTF-8?B?%s?=' % base64.b64encode(subj.encode()).decode()
    elif senc == 2 and not subj.isascii():
        b = subj.encode()
        subj = ' '.join('=?utf-8?b?%s?=' % base64.b64encode(b[i:i + 12]).decode() for i in range(0, len(b), 12))
    elif senc == 3:
        subj = '=?iso-8859-1?Q?%s?=' % subj.encode('latin-1', 'replace').decode('latin-1').replace(' ', '_') \
            if all(ord(c) < 256 for c in subj) else subj
    cs, text = g.pick(CHARSET_TEXTS)
    text = text % g.r.randrange(10**5)
    hdrs = ['From: ' + frm, 'To: ' + g.pick([RCPT, '<%s>' % RCPT, 'Alice <%s>' % RCPT,
                                              'undisclosed-recipients:;', '%s, bob@example.net' % RCPT,
                                              '"alice@example.net" <%s>' % RCPT])]
    if subj or g.r.random() < 0.5:
        hdrs.append('Subject: ' + subj)
    if g.r.random() < 0.9:
        fmt = g.pick(DATES)
        off, nm = g.pick(TZS)
        d = (g.t - datetime.timedelta(seconds=g.r.randrange(0, 90))).astimezone(
            datetime.timezone(datetime.timedelta(minutes=off), nm or 'UTC'))
        hdrs.append('Date: ' + d.strftime(fmt))
    if g.r.random() < 0.9:
        uuid = '%s-%s-%s-%s-%s' % (g.hexs(8), g.hexs(4), g.hexs(4), g.hexs(4), g.hexs(12))
        hdrs.append('Message-ID: ' + g.pick(MIDS).format(
            h32=g.hexs(32), h16=g.hexs(16), h8=g.hexs(8), dom=dom, uuid=uuid, uuidu=uuid.upper(),
            n=g.r.randrange(10**12), n2=g.r.randrange(10**4), user=user, host='app%d.%s' % (g.r.randrange(9), dom),
            b64=g.alnum(30)))
    ml = g.pick(MAILERS)
    if ml:
        hdrs.append('%s: %s' % (g.pick(['X-Mailer', 'User-Agent']), ml))
    if g.r.random() < 0.3:
        hdrs.append('Reply-To: %s' % g.pick(['reply-%s@%s' % (g.hexs(6), g.pick(['gmail.com', 'example.org'])),
                                             addr, '<%s>' % addr]))
    if g.r.random() < 0.2:
        hdrs.append('X-Priority: %s' % g.pick(['1 (Highest)', '3', '3 (Normal)', '1']))
    if g.r.random() < 0.2:
        hdrs.append('Importance: ' + g.pick(['high', 'Normal']))
    if g.r.random() < 0.3:
        hdrs.append('X-Originating-IP: [%s]' % g.ip4())
    if g.r.random() < 0.2:
        hdrs.append('Organization: ' + g.pick(['Example GmbH', 'Ｅｘａｍｐｌｅ']))
    if g.r.random() < 0.3:
        hdrs.append('List-Unsubscribe: <mailto:unsub@%s>' % dom)
    if g.r.random() < 0.2:
        hdrs.append('X-Spam-Status: No, score=-1.0')
    hdrs.append('MIME-Version: 1.0')
    shape = g.r.randrange(8)
    B = g.boundary()
    try:
        enc = text.encode(cs)
    except (UnicodeEncodeError, LookupError):
        cs, enc = 'utf-8', text.encode()
    cte = g.pick(['base64', 'quoted-printable', '8bit', '7bit'])
    if cte == '7bit' and not all(b < 128 for b in enc):
        cte = g.pick(['8bit', '7bit'])      # 7bit but 8-bit data: mislabelled, as seen
    def encode(b, c):
        if c == 'base64':
            s = base64.b64encode(b).decode()
            w = g.pick([76, 76, 72, 78, 64, 998])
            return '\n'.join(s[i:i + w] for i in range(0, len(s), w)) + '\n'
        if c == 'quoted-printable':
            import quopri
            return quopri.encodestring(b).decode('ascii') + '\n'
        return b.decode('latin-1') + '\n'
    html_text = '<html><body><p style="font-size:%dpx;color:%s">%s</p>%s%s</body></html>' % (
        g.pick([1, 10, 14, 22, 40]), g.pick(['#000', '#fff', '#fefefe', 'red', '#333']),
        text.replace('&', '&amp;').replace('<', '&lt;'),
        g.pick(['', '<img src="https://cdn.%s/x.gif" width="1" height="1">' % dom,
                '<img src="data:image/png;base64,%s">' % base64.b64encode(bytes(40)).decode(),
                '<a href="https://%s/%s?utm_source=x&amp;e=%s">%s</a>' % (
                    g.pick(['bit.ly', 'example.com', 'xn--80ak6aa92e.com', 'tinyurl.com', '1.2.3.4']),
                    g.alnum(6), RCPT, g.pick(['click here', 'https://www.paypal.com/', 'Unsubscribe'])),
                '<form action="https://%s/login.php"><input type="password"></form>' % dom,
                '<div style="display:none">%s</div>' % g.words(30)]),
        g.pick(['', '<!-- %s -->' % g.words(5), '<style>p{color:red}</style>', '<font color="white">%s</font>' % g.words(9)]))
    hp = html_text.encode(cs if cs not in ('iso-2022-jp',) else 'utf-8', 'replace')
    hcs = cs if cs not in ('iso-2022-jp',) else 'utf-8'
    fl = g.pick(['', '; format=flowed', '; format=flowed; delsp=yes'])
    csp = g.pick(['charset="%s"', 'charset=%s', 'CHARSET=%s']) % (cs if g.r.random() < 0.8 else cs.upper())
    if shape == 0:
        hdrs += ['Content-Type: text/plain; %s%s' % (csp, fl), 'Content-Transfer-Encoding: ' + cte]
        body = encode(enc, cte)
    elif shape == 1:
        hdrs += ['Content-Type: text/html; %s' % csp, 'Content-Transfer-Encoding: ' + cte]
        body = encode(hp, cte)
    elif shape in (2, 3):
        hdrs.append('Content-Type: multipart/alternative; boundary="%s"' % B)
        body = ('--%s\nContent-Type: text/plain; %s%s\nContent-Transfer-Encoding: %s\n\n%s\n--%s\n'
                'Content-Type: text/html; charset=%s\nContent-Transfer-Encoding: %s\n\n%s\n--%s--\n') % (
            B, csp, fl, cte, encode(enc, cte), B, hcs, cte, encode(hp, cte), B)
    elif shape == 4:   # attachment with an RFC 2047 name (Outlook) or RFC 2231 (others)
        fn = g.pick(['Rechnung_%d.pdf', 'счет_%d.pdf', '請求書_%d.zip', 'invoice %d.pdf.exe', 'scan_%d.html',
                     'Doc%d.docm', 'IMG_%d.HEIC', 'voice_message_%d.wav.htm'])
        fn = fn % g.r.randrange(10**4)
        if g.r.random() < 0.5:
            nm = 'name="=?UTF-8?B?%s?="' % base64.b64encode(fn.encode()).decode()
            dn = 'filename="=?UTF-8?B?%s?="' % base64.b64encode(fn.encode()).decode()
        else:
            import urllib.parse
            nm = 'name="%s"' % fn.encode('ascii', 'replace').decode()
            dn = "filename*=UTF-8''%s" % urllib.parse.quote(fn)
        ct = g.pick(['application/pdf', 'application/octet-stream', 'application/zip', 'text/html',
                     'application/vnd.ms-word.document.macroEnabled.12', 'image/heic', 'audio/wav'])
        data = base64.b64encode(bytes(g.r.randrange(256) for _ in range(g.r.randrange(300, 3000)))).decode()
        body = ('--%s\nContent-Type: text/plain; %s\nContent-Transfer-Encoding: %s\n\n%s\n--%s\n'
                'Content-Type: %s; %s\nContent-Disposition: attachment; %s\nContent-Transfer-Encoding: base64\n\n'
                '%s\n--%s--\n') % (B, csp, cte, encode(enc, cte), B, ct, nm, dn,
                                   '\n'.join(data[i:i + 76] for i in range(0, len(data), 76)), B)
        hdrs.append('Content-Type: multipart/mixed; boundary="%s"' % B)
    elif shape == 5:   # multipart/related, HTML + inline image, no text part
        body = ('--%s\nContent-Type: text/html; charset=%s\nContent-Transfer-Encoding: %s\n\n%s\n--%s\n'
                'Content-Type: image/png\nContent-ID: <logo@%s>\nContent-Disposition: inline; filename="logo.png"\n'
                'Content-Transfer-Encoding: base64\n\n%s\n--%s--\n') % (
            B, hcs, cte, encode(hp.replace(b'</body>', b'<img src="cid:logo@' + dom.encode() + b'"></body>'), cte),
            B, dom, base64.b64encode(bytes(g.r.randrange(256) for _ in range(600))).decode(), B)
        hdrs.append('Content-Type: multipart/related; boundary="%s"; type="text/html"' % B)
    elif shape == 6:   # no MIME headers at all, 8-bit text
        hdrs.remove('MIME-Version: 1.0')
        body = enc.decode('latin-1') + '\n'
    else:              # text/plain + text/calendar reply / vcard
        body = ('--%s\nContent-Type: text/plain; %s\n\n%s\n--%s\nContent-Type: text/vcard; charset=utf-8; name="c.vcf"\n'
                'Content-Disposition: attachment; filename="c.vcf"\n\nBEGIN:VCARD\nVERSION:3.0\nFN:%s\nEMAIL:%s\nEND:VCARD\n'
                '--%s--\n') % (B, csp, enc.decode('latin-1'), B, disp, addr, B)
        hdrs.append('Content-Type: multipart/mixed; boundary="%s"' % B)
    g.r.shuffle(hdrs)
    trace = 'Return-Path: <%s>\n' % g.pick([addr, '', 'bounce@%s' % dom]) + rcvd_pool(g, dom)
    if g.r.random() < 0.4:
        trace += g.dkim(dom)
    if g.r.random() < 0.3:
        trace = g.auth_results(dom, g.pick(['pass', 'fail', 'softfail', 'none']), g.pick(['pass', 'fail', 'none']),
                               g.pick(['pass', 'fail'])) + trace
    msg = (trace + '\n'.join(hdrs) + '\n\n').encode('utf-8') + body.encode('latin-1', 'replace')
    if g.r.random() < 0.25:
        msg = msg.replace(b'\n', b'\r\n')
    return msg


# ---- edges of today's mail: raw 8-bit headers, skewed dates, broken MIME, TNEF, nesting

def t_edge(g):
    dom = g.pick(['example.com', 'example.de', 'example.ru', 'example.jp', 'gmail.com', 'outlook.com'])
    addr = '%s@%s' % (g.pick(['info', 'j.doe', 'kontakt', 'x%d' % g.r.randrange(999)]), dom)
    hb = []           # header lines, bytes
    body = b''
    cs8 = g.pick(['latin-1', 'cp1251', 'utf-8', 'cp1252', 'koi8-r'])
    def raw(text):
        return text.encode(cs8, 'replace')
    name = g.pick(['Jörg Müller', 'Ольга Иванова', 'Zoë', 'José Núñez', 'Łukasz'])
    hb.append(b'From: ' + g.pick([raw('%s <%s>' % (name, addr)), ('"%s" <%s>' % (name, addr)).encode(),
                                  ('=?%s?Q?%s?= <%s>' % (g.pick(['UTF-8', 'unknown-8bit', 'x-unknown']),
                                                          name.encode('utf-8').hex('=').upper().replace('=', '=') if False else
                                                          ''.join('=%02X' % b for b in name.encode()), addr)).encode()]))
    hb.append(b'To: ' + g.pick([RCPT.encode(), ('Alice <%s>' % RCPT).encode(),
                                raw('Алиса <%s>' % RCPT), ('%s (Alice)' % RCPT).encode()]))
    subj = g.pick(['Grüße aus Köln', 'Счёт на оплату', 'Re: Ihre Anfrage', 'Factura pendiente nº 123',
                   'Confirm your account now', 'Meeting moved to 3pm', '【重要】お支払い情報の更新'])
    enc = g.r.randrange(5)
    if enc == 0:
        hb.append(b'Subject: ' + raw(subj))
    elif enc == 1:
        hb.append(('Subject: =?utf-8?Q?%s?=' % ''.join(c if c.isascii() and c.isalnum() else '_' if c == ' ' else
                                                      ''.join('=%02X' % b for b in c.encode()) for c in subj)).encode())
    elif enc == 2:
        b = subj.encode('utf-8')
        hb.append(('Subject: =?UTF-8?B?%s?=\n =?UTF-8?B?%s?=' % (base64.b64encode(b[:len(b) // 2]).decode(),
                                                                  base64.b64encode(b[len(b) // 2:]).decode())).encode())
    elif enc == 3:
        hb.append(('Subject: prefix =?utf-8?b?%s?= suffix' % base64.b64encode(subj.encode()).decode()).encode())
    else:
        hb.append(('Subject: =?iso-2022-jp?B?%s?=' % base64.b64encode(subj.encode('iso-2022-jp', 'replace')).decode()).encode())
    skew = g.pick([0, 0, 0, -3600 * 30, 3600 * 30, -86400 * 200, 3600 * 5, -600, 86400 * 400])
    d = (g.t + datetime.timedelta(seconds=skew)).astimezone(datetime.timezone(datetime.timedelta(hours=g.pick([0, 2, -5, 9]))))
    hb.append(('Date: ' + g.pick([format_datetime(d), format_datetime(d).replace(' +', ' +0') if False else format_datetime(d),
                                  d.strftime('%a, %d %b %Y %H:%M:%S'), d.strftime('%a, %d %b %Y %H:%M:%S +2500'),
                                  d.strftime('%d.%m.%Y %H:%M')])).encode())
    if g.r.random() < 0.85:
        hb.append(('Message-ID: ' + g.mid(dom)).encode())
    if g.r.random() < 0.7:
        hb.append(b'MIME-Version: 1.0')
    shape = g.r.randrange(8)
    B = g.boundary()
    if shape == 0:    # charset label empty / unknown, 8-bit text
        hb.append(('Content-Type: text/plain; charset=%s' % g.pick(['', '""', 'unknown-8bit', 'x-user-defined',
                                                                    'utf8', 'UTF-8; format=flowed'])).encode())
        hb.append(b'Content-Transfer-Encoding: 8bit')
        body = raw('%s\n\n%s\n' % (subj, g.paragraph()))
    elif shape == 1:  # multipart without its closing boundary, bad base64 in a part
        hb.append(('Content-Type: multipart/mixed; boundary="%s"' % B).encode())
        body = ('--%s\nContent-Type: text/plain; charset=utf-8\n\n%s\n--%s\nContent-Type: application/pdf; '
                'name="a.pdf"\nContent-Transfer-Encoding: base64\n\nJVBERi0x!!!not*base64===\nAAAA\n' % (
                    B, g.paragraph(), B)).encode()
    elif shape == 2:  # TNEF from Outlook
        hb.append(('Content-Type: multipart/mixed; boundary="%s"' % B).encode())
        tnef = base64.b64encode(b'\x78\x9f\x3e\x22' + bytes(g.r.randrange(256) for _ in range(900))).decode()
        body = ('--%s\nContent-Type: text/plain; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n%s\n\n'
                '--%s\nContent-Type: application/ms-tnef; name="winmail.dat"\nContent-Transfer-Encoding: base64\n'
                'Content-Disposition: attachment; filename="winmail.dat"\n\n%s\n--%s--\n' % (
                    B, g.paragraph(), B, '\n'.join(tnef[i:i + 76] for i in range(0, len(tnef), 76)), B)).encode()
    elif shape == 3:  # a forwarded message/rfc822 that is itself multipart/alternative with HTML
        B2 = g.boundary() + 'x'
        hb.append(('Content-Type: multipart/mixed; boundary="%s"' % B).encode())
        body = ('--%s\nContent-Type: text/plain; charset=utf-8\n\nForwarded.\n--%s\nContent-Type: message/rfc822\n'
                'Content-Disposition: attachment; filename="fwd.eml"\n\nFrom: bank <service@example-bank.com>\n'
                'To: %s\nSubject: Verify your account\nDate: %s\nMIME-Version: 1.0\nContent-Type: multipart/'
                'alternative; boundary="%s"\n\n--%s\nContent-Type: text/plain\n\nClick here to verify: '
                'https://bit.ly/%s\n--%s\nContent-Type: text/html\n\n<html><body><a href="https://%s/login?x=1">'
                'https://www.example-bank.com/</a><img src="https://t.example.net/p.gif" width=1 height=1></body>'
                '</html>\n--%s--\n\n--%s--\n' % (B, B, RCPT, format_datetime(g.t), B2, B2, g.alnum(7), B2,
                                                  g.pick(['xn--exmple-bank-cjb.com', '203.0.113.9', 'example-bank.com.evil.top']),
                                                  B2, B)).encode()
    elif shape == 4:  # QP with long lines and soft breaks inside words, HTML entity obfuscation
        hb.append(b'Content-Type: text/html; charset="utf-8"')
        hb.append(b'Content-Transfer-Encoding: quoted-printable')
        html = ('<html><body><p>&#86;&#105;&#97;&#103;&#114;&#97; &amp; C&#105;al&#105;s — '
                '<b>V</b><b>I</b><b>A</b>GRA for $%d.99</p><p style="font-size:0px">%s</p>'
                '<a href="https://%s/?u=%s">Order now</a></body></html>' % (
                    g.r.randrange(1, 9), g.words(40), g.pick(['bit.ly', 'xn--80ak6aa92e.com', 'rb.gy']), g.alnum(8)))
        import quopri
        body = quopri.encodestring(html.encode()) + b'\n'
        if g.r.random() < 0.5:
            body = body.replace(b'=\n', b'')       # lines far over 76
    elif shape == 5:  # uuencoded attachment inside a text body (old MUAs, some spam kits)
        import binascii
        data = bytes(g.r.randrange(256) for _ in range(180))
        uu = b''.join(binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45))
        hb.append(b'Content-Type: text/plain; charset=us-ascii')
        body = ('%s\n\nbegin 644 invoice.zip\n' % g.paragraph()).encode() + uu + b'`\nend\n'
    elif shape == 6:  # one big inline image and a little text: image ratio rules
        hb.append(('Content-Type: multipart/related; boundary="%s"' % B).encode())
        png = base64.b64encode(b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR' + (g.pick([600, 800, 300])).to_bytes(4, 'big') +
                               (g.pick([400, 900, 200])).to_bytes(4, 'big') + b'\x08\x02\x00\x00\x00' +
                               bytes(g.r.randrange(256) for _ in range(g.r.randrange(2000, 12000)))).decode()
        body = ('--%s\nContent-Type: text/html; charset=utf-8\n\n<html><body><a href="https://%s/"><img src="cid:'
                'p1@x" width="%d" height="%d"></a><p>%s</p></body></html>\n--%s\nContent-Type: image/png\n'
                'Content-ID: <p1@x>\nContent-Transfer-Encoding: base64\n\n%s\n--%s--\n' % (
                    B, dom, g.pick([600, 800, 300]), g.pick([400, 900, 200]), g.words(g.r.randrange(0, 30)), B,
                    '\n'.join(png[i:i + 76] for i in range(0, len(png), 76)), B)).encode()
    else:             # deep nesting and an empty part
        B2, B3 = g.boundary() + 'a', g.boundary() + 'b'
        hb.append(('Content-Type: multipart/mixed; boundary="%s"' % B).encode())
        body = ('--%s\nContent-Type: multipart/alternative; boundary="%s"\n\n--%s\nContent-Type: multipart/related; '
                'boundary="%s"\n\n--%s\nContent-Type: text/html; charset=utf-8\n\n<p>%s</p>\n--%s--\n--%s\n'
                'Content-Type: text/plain\n\n\n--%s--\n--%s\nContent-Type: application/octet-stream\n\n--%s--\n' % (
                    B, B2, B2, B3, B3, g.paragraph(), B3, B2, B2, B, B)).encode()
    if g.r.random() < 0.3:
        hb.append(('X-Mailer: ' + g.pick(MAILERS[2:])).encode())
    g.r.shuffle(hb)
    trace = ('Return-Path: <%s>\n' % addr + rcvd_pool(g, dom)).encode()
    msg = trace + b'\n'.join(hb) + b'\n\n' + body
    if g.r.random() < 0.2:
        msg = msg.replace(b'\n', b'\r\n')
    return msg


TEMPLATES = [t_gmail_personal, t_outlook_business, t_apple_mail, t_newsletter, t_calendar, t_dsn,
             t_forward_rfc822, t_smime, t_list_mail, t_qmail, t_attach_2231, t_long_headers, t_idn,
             t_spam_phish, t_spam_invoice, t_spam_crypto, t_mixed, t_edge]


# The committed set (tests/data/modern/msg/): PINNED_VARIANTS of every template, plus the
# messages where mxgate and SpamAssassin 4.0.1 parted when this set was made (docs/rules.md,
# "Agreement on modern mail").
PINNED_VARIANTS = 3
PINNED_MORE = {'mixed': 12, 'edge': 12}      # the mixtures vary most: more of them
PINNED_EXTRA = [('spam-phish', 7), ('mixed', 39), ('mixed', 105), ('mixed', 153), ('mixed', 1109),
                ('edge', 39)]


def write(out, t, name, k):
    g = Gen(name, k)
    with open(os.path.join(out, '%s-%02d.eml' % (name, k)), 'wb') as f:
        f.write(t(g))


def main():
    args = sys.argv[1:]
    pinned = '--pinned' in args
    args = [a for a in args if a != '--pinned']
    if not args:
        raise SystemExit('usage: gen_modern.py [--pinned] OUTDIR [VARIANTS]')
    out = args[0]
    n = int(args[1]) if len(args) > 1 else (PINNED_VARIANTS if pinned else 12)
    os.makedirs(out, exist_ok=True)
    by_name = {}
    for t in TEMPLATES:
        name = t.__name__[2:].replace('_', '-')
        by_name[name] = t
        for k in range(PINNED_MORE.get(name, n) if pinned else n):
            write(out, t, name, k)
    if pinned:
        for name, k in PINNED_EXTRA:
            write(out, by_name[name], name, k)


if __name__ == '__main__':
    main()
