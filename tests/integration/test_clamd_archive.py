#!/usr/bin/env python3
"""A virus inside archives, against a real clamd (ScanArchive yes, tests/peers/clamav): EICAR
in a zip inside a zip inside a tar.gz, attached base64, is found through zINSTREAM (554 5.7.1
Virus found, never relayed), with action quarantine it reaches the quarantine maildir only,
and the same archives without EICAR are relayed whole."""
import base64
import glob
import io
import os
import sys
import tarfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest as mt  # noqa: E402

mt.need('clamd')

EICAR = b'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'


def nested(payload):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('readme.txt', 'hello\n')
        z.writestr('eicar.com', payload)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('inner.zip', inner.getvalue())
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode='w:gz') as t:
        info = tarfile.TarInfo('outer.zip')
        info.size = len(outer.getvalue())
        t.addfile(info, io.BytesIO(outer.getvalue()))
    return tgz.getvalue()


def message(tag, payload):
    b64 = base64.encodebytes(nested(payload)).decode().replace('\n', '\r\n')
    return ('From: <a@example.org>\r\nTo: <b@example.test>\r\nSubject: archive %s\r\n'
            'Message-ID: <%s@mxtest.example>\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            '--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
            '--b1\r\nContent-Type: application/gzip; name="a.tar.gz"\r\n'
            'Content-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="a.tar.gz"\r\n\r\n%s'
            '--b1--\r\n' % (tag, tag, b64)).encode()


cl = mt.clamd()
be = mt.Backend()
mx = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', plugins=[
    {'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'on_error': 'tempfail', 'timeout': '30s'}]))

code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], message('arc1', EICAR), timeout=60)
mt.check(code == 554 and 'MxGate.Test.EICAR' in text and not be.by_tag('arc1'),
         'EICAR in zip in zip in tar.gz: 554 with the name, not relayed (%s %s)' % (code, text))
code, text = mt.send_mail(mx.port, 'a@example.org', ['b@example.test'], message('arc2', b'just text\n'), timeout=60)
mt.check(code == 250 and len(be.by_tag('arc2')) == 1, 'the same archives, clean: relayed once (%s %s)' % (code, text))
mx.stop()

qd = os.path.join(mt.TMP, 'quarantine')
mq = mt.Mxgate(mt.config([be.url], hostname='mx.example.test', quarantine='maildir:' + qd, plugins=[
    {'name': 'clamd', 'address': '127.0.0.1:%d' % cl.port, 'on_error': 'tempfail', 'timeout': '30s',
     'options': {'action': 'quarantine'}}]), name='mx-quarantine')
code, text = mt.send_mail(mq.port, 'a@example.org', ['b@example.test'], message('arc3', EICAR), timeout=60)
held = [f for f in glob.glob(qd + '/new/*') if b'<arc3@' in open(f, 'rb').read()]
mt.check(code == 250 and not be.by_tag('arc3') and len(held) == 1,
         'action quarantine: 250, to the quarantine backend only (%s %s)' % (code, text))
mq.stop()
mt.stop_proc(cl)
mt.finish()
