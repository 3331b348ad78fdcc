#!/usr/bin/python3
"""A small authoritative DNS server with dnspython (Debian's python3-dnspython), for tests
that need answers dnsmasq cannot give: TXT records split into several character-strings,
several TXT records at one name, SERVFAIL, REFUSED, a name that is never answered, and
answers too large for 512-byte UDP (truncated, then served over TCP).

    dns_peer.py ZONE.json PORT [ADDR]       (ADDR: 127.0.0.1 by default, ::1 for IPv6)

ZONE.json maps a name (no trailing dot, any case) to a list of entries:
    {"txt": ["part one", "part two"]}     one TXT record of these character-strings
    {"a": "198.51.100.1"} / {"aaaa": "2001:db8::1"} / {"mx": "mail.example.org"} (preference
    10) / {"mx": "20 mail.example.org"} / {"mx": "0 ."} (RFC 7505's null MX) /
    {"ptr": "host.example.org"}
    {"cname": "other.example"}           a CNAME answered to any type, not followed (a chain
                                         or a loop is the client's to follow)
    {"!a": "198.51.100.1"} (any "!TYPE")  a record of TYPE answered whatever type was asked
                                         (the wrong type)
    {"owner": "other.example"}           the answer's records carry this owner name instead
                                         of the name asked (a wrong qname)
    {"delay": 1.5}                       seconds to wait before answering (a slow name)
    {"until": "/path", "most": 30}       no answer before the file /path exists (a test lets
                                         it go at a chosen event), at most `most` s; past
                                         that it answers and logs "until_expired NAME"
    {"ttl": 1}                           the TTL of the name's records (60 by default)
    {"in_order": true}                   the records in the order listed (dnspython shuffles
                                         them otherwise, as a round-robin DNS does)
    {"no_edns": true}                    a query with EDNS0 gets FORMERR without an OPT record
                                         (a server that predates RFC 6891); one without, the
                                         records
    {"no_edns": "additional"}            the same FORMERR with an A record in its additional
                                         section (ARCOUNT 1, still no OPT)
    {"no_edns": "tcp"}                   only a query over TCP with EDNS0 gets that FORMERR
                                         (over UDP: the records, truncated when too large)
    {"spoof": "servfail"}                over UDP, before the answer: a SERVFAIL (or "refused",
                                         "formerr") to the same question with another id (an
                                         off-path forgery that guessed the port, not the id);
                                         "spoofed NAME" logged
    "tcp_servfail"                       UDP: an empty truncated answer; TCP: SERVFAIL
    "servfail" | "refused" | "drop"       the whole answer for that name
    "tcp_stall" | "tcp_huge" | "tcp_close"  UDP: an empty truncated (TC) answer; TCP: the
                                         query is read and never answered / a length of 65535
                                         followed by a few octets, then silence / the
                                         connection is closed without an answer
    "tcp_trickle"                        UDP: an empty truncated answer; TCP: a SERVFAIL
                                         answer sent an octet every 0.3 s (a slow peer),
                                         then "trickle sent=N/M" logged (N < M: the
                                         client closed first)
A list may hold one of those strings besides its entries ([{"spoof": "servfail"},
"tcp_close"]): the string decides the answer, the entries add to it.
SIGHUP reads ZONE.json again (a name whose address changes) and logs "reloaded" when the new
zone answers. Any other name in the file's zones is NXDOMAIN; a name with records but none of the asked
type is NODATA. Listens on UDP and TCP 127.0.0.1:PORT (0: a port of its own, printed as
"port N"); prints "ready" when it does; logs each
query to stderr as "query NAME TYPE" (with " tcp" when it came over TCP, then " edns=N" when
the query carried EDNS0 with a UDP payload size of N)."""
import json
import os
import signal
import socket
import time
import socketserver
import sys
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset



def load_zone():
    return {k.lower().rstrip('.'): v for k, v in json.load(open(sys.argv[1])).items()}


zone = load_zone()


def reload_zone(signum, frame):
    global zone
    zone = load_zone()
    sys.stderr.write('reloaded\n')
    sys.stderr.flush()


signal.signal(signal.SIGHUP, reload_zone)
port = int(sys.argv[2])
addr = sys.argv[3] if len(sys.argv) > 3 else '127.0.0.1'   # '::1': an IPv6 server


RCODES = {'servfail': dns.rcode.SERVFAIL, 'refused': dns.rcode.REFUSED, 'formerr': dns.rcode.FORMERR}


def entries_of(name):
    """name's entries and the string deciding its whole answer (None: the entries do)."""
    entries = zone.get(name)
    if not isinstance(entries, list):
        return [], entries
    mode = next((e for e in entries if isinstance(e, str)), None)
    return [e for e in entries if not isinstance(e, str)], mode


def spoof(wire):
    """The forgery to send before the answer to a UDP query (None: none)."""
    q = dns.message.from_wire(wire)
    name = q.question[0].name.to_text().lower().rstrip('.')
    what = next((e['spoof'] for e in entries_of(name)[0] if 'spoof' in e), None)
    if what is None:
        return None
    r = dns.message.make_response(q)
    r.id = (q.id + 1) & 0xffff
    r.use_edns(False)
    r.set_rcode(RCODES[what])
    sys.stderr.write('spoofed %s\n' % name)
    sys.stderr.flush()
    return r.to_wire()


def answer(wire, tcp):
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    qn = q.question[0]
    name = qn.name.to_text().lower().rstrip('.')
    sys.stderr.write('query %s %s%s%s\n' % (name, dns.rdatatype.to_text(qn.rdtype), ' tcp' if tcp else '',
                                         ' edns=%d' % q.payload if q.edns >= 0 else ''))
    sys.stderr.flush()
    entries, mode = entries_of(name)
    if mode is not None or name not in zone:
        entries = mode if name in zone else None
    if entries in ('tcp_stall', 'tcp_huge', 'tcp_close', 'tcp_trickle', 'tcp_servfail'):
        if tcp and entries == 'tcp_trickle':
            r.set_rcode(dns.rcode.SERVFAIL)
            return ('trickle', r.to_wire())
        if tcp and entries == 'tcp_servfail':
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        if tcp:
            return entries
        r.flags |= dns.flags.TC
        return r.to_wire()
    if entries in ('servfail', 'refused', 'drop'):
        if entries == 'drop':
            return None
        r.set_rcode(dns.rcode.SERVFAIL if entries == 'servfail' else dns.rcode.REFUSED)
        return r.to_wire()
    if entries is None:
        r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()
    no_edns = next((e['no_edns'] for e in entries if e.get('no_edns')), None)
    if q.edns >= 0 and no_edns is not None and (tcp or no_edns != 'tcp'):
        r = dns.message.make_response(q)
        r.use_edns(False)
        r.set_rcode(dns.rcode.FORMERR)
        if no_edns == 'additional':
            r.additional.append(dns.rrset.from_text(qn.name, 60, 'IN', 'A', '192.0.2.1'))
        return r.to_wire()
    rds = []
    owner = qn.name
    for e in entries:
        if 'delay' in e:
            time.sleep(float(e['delay']))
        if 'until' in e:
            end = time.time() + float(e.get('most', 30))
            while not os.path.exists(e['until']) and time.time() < end:
                time.sleep(0.01)
            if not os.path.exists(e['until']):
                sys.stderr.write('until_expired %s\n' % name)
                sys.stderr.flush()
        if 'owner' in e:
            owner = dns.name.from_text(e['owner'])
        if 'cname' in e and qn.rdtype != dns.rdatatype.CNAME:
            rr = dns.rrset.from_text(owner, 60, 'IN', 'CNAME', e['cname'].rstrip('.') + '.')
            r.answer.append(rr)
            return r.to_wire()
    for e in entries:
        for t, v in e.items():
            if t in ('delay', 'until', 'most', 'owner', 'in_order', 'no_edns', 'spoof', 'ttl'):
                continue
            rdtype = qn.rdtype
            if t.startswith('!'):
                t = t[1:]
                rdtype = dns.rdatatype.from_text(t)
            elif dns.rdatatype.from_text(t) != qn.rdtype:
                continue
            if t == 'txt':
                text = ' '.join('"%s"' % s.replace('\\', '\\\\').replace('"', '\\"') for s in v)
            elif t == 'mx' and ' ' in v:      # "PREFERENCE NAME": "0 ." is RFC 7505's null MX
                pref, host = v.split(' ', 1)
                text = pref + ' ' + (host.rstrip('.') + '.' if host != '.' else '.')
            elif t in ('mx', 'ptr', 'cname'):
                text = ('10 ' if t == 'mx' else '') + v.rstrip('.') + '.'
            else:
                text = v
            rds.append(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text))
    for rdtype in sorted(set(rd.rdtype for rd in rds)):
        rr = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
        rr.update_ttl(next((int(e['ttl']) for e in entries if 'ttl' in e), 60))
        for rd in rds:
            if rd.rdtype == rdtype:
                rr.add(rd)
        r.answer.append(rr)
    # rendered whole (not cut at the query's EDNS payload size by dnspython), then truncated here
    out = r.to_wire(want_shuffle=not any(e.get('in_order') for e in entries), max_size=65535)
    limit = 65535 if tcp else (max(512, q.payload) if q.edns >= 0 else 512)
    if len(out) > limit:
        r.answer = []
        r.flags |= dns.flags.TC
        out = r.to_wire()
    return out


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        forged = spoof(data)
        if forged is not None:
            sock.sendto(forged, self.client_address)
        out = answer(data, False)
        if out is not None:
            sock.sendto(out, self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        f = self.request.makefile('rb')
        while True:
            n = f.read(2)
            if len(n) < 2:
                return
            out = answer(f.read(int.from_bytes(n, 'big')), True)
            if out is None:
                return
            if out == 'tcp_close':
                return
            if isinstance(out, tuple):
                wire = len(out[1]).to_bytes(2, 'big') + out[1]
                sent = 0
                try:
                    for i in range(len(wire)):
                        self.request.sendall(wire[i:i + 1])
                        sent += 1
                        time.sleep(0.3)
                except OSError:
                    pass
                sys.stderr.write('trickle sent=%d/%d\n' % (sent, len(wire)))
                sys.stderr.flush()
                return
            if out == 'tcp_huge':
                self.request.sendall(b'\xff\xff' + b'\0' * 12)
            if out in ('tcp_stall', 'tcp_huge'):
                while self.request.recv(4096):
                    pass
                return
            self.request.sendall(len(out).to_bytes(2, 'big') + out)


FAMILY = socket.AF_INET6 if ':' in addr else socket.AF_INET


class UdpServer(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = FAMILY


class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = FAMILY


if port == 0:
    # a port of its own, UDP and TCP alike (no port chosen by the test, freed, then taken by
    # another test's peer before this binds it): the UDP one the kernel picks, TCP on it if
    # free there, else another pick; printed ("port N") before "ready"
    # without SO_REUSEADDR: Linux's port-0 UDP bind may pick a port another socket holds
    # with that option (a test's PortHold(udp=True), a "never answers" DNS server), and the
    # two would share it (the review showed 18 of 300 picks landing on 2,000 such holds)
    class UdpOwn(UdpServer):
        allow_reuse_address = False

    for _ in range(100):
        u = UdpOwn((addr, 0), Udp)
        try:
            t = TcpServer((addr, u.server_address[1]), Tcp)
            break
        except OSError:
            u.server_close()
    else:
        sys.exit('no port free for both UDP and TCP')
    port = u.server_address[1]
    print('port %d' % port, flush=True)
else:
    u = UdpServer((addr, port), Udp)
    t = TcpServer((addr, port), Tcp)
threading.Thread(target=t.serve_forever, daemon=True).start()
print('ready', flush=True)
u.serve_forever()
