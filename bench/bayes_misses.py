#!/usr/bin/env python3
"""bayes_misses.py — what the errors of rules + classifier are (docs/classifier.md, "The
errors at the operating point"): for each message `bayes_cv.sh --test --misses FILE` lists
(spam under 5, ham at 5 or more, stock rules in set 2 + BAYES_xx), its token evidence and its
shape, and one cause per message.

    bench/bayes_cv.sh --split both --test --hits mxgate --misses /tmp/misses.txt --explain
    bench/bayes_misses.py BAYES_CV /tmp/misses.txt [--rows FILE.jsonl]
    bench/bayes_misses.py - - --from-rows FILE.jsonl

BAYES_CV: bench/bayes_cv.c built against libmxcore.a (bayes_cv.sh's command line). For each
message: `bayes_cv -d` against its split's training half (the significant tokens: how many
on each side, the strongest three of each), `bayes_cv -t` (how many tokens the message
gave), the rule hits and score from the misses file, and its MIME shape (Python's email
package: text length after decoding, HTML-only, images and attachments, charsets, transfer
encodings, list headers). The nearest training message of the same class by the Jaccard
index of the token sets says whether a campaign was learned (near-duplicate >= 0.5) or not.
Causes, the first that applies:
  abstain      no significant token (p -1)
  cap          the classifier is right (spam p > 0.95, ham p <= 0.05) and the rules' points
               outweigh it (the stock scores give the classifier at most 4 points)
  image        the text is an image or an attachment: under 200 bytes of text and a non-text part
  short        under 200 bytes of text
  charset      a text part in a charset other than ASCII, UTF-8, Latin-1/-15 or windows-1252
  sa-wrapped   a SpamAssassin report_safe wrapper (the message was tagged by SpamAssassin before)
  big          over 30,000 bytes of text (digests, long newsletters: the 150 strongest tokens
               come from both sides)
  list         came through a mailing list (list headers; the ham learned is mostly lists)
  unsure       p between 0.2 and 0.8 (two-sided evidence, neither wins)
  wrong-side   the classifier is confident the wrong way (spam at p <= 0.2, ham at p >= 0.8)
  lean         the classifier leans the right way but not to BAYES_95 / BAYES_05
Prints one line per message and a table of causes per split and kind (FN: spam missed, FP:
ham misfiled), with how many are near-duplicates of another miss (a campaign the training
half does not hold).
"""
import argparse
import concurrent.futures
import email
import email.policy
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_classifier as bc  # noqa: E402

STOCK = '/usr/share/spamassassin'
PLAIN_CHARSETS = {'us-ascii', 'ascii', 'utf-8', 'iso-8859-1', 'iso-8859-15', 'windows-1252',
                  'latin1', 'latin-1', ''}
LIST_HEADERS = ('list-id', 'list-unsubscribe', 'list-post', 'mailing-list', 'x-mailman-version',
                'x-list', 'x-beenthere')


def tokens(tool, path):
    out = subprocess.run([tool, '-t', path], capture_output=True, text=True,
                         errors='replace').stdout
    return set(out.split('\n')) - {''}


def words(path):
    """The message's lower-cased words of 3-15 letters (raw bytes): cheap enough for the
    Jaccard index against every training message."""
    return set(re.findall(rb'[a-z]{3,15}', open(path, 'rb').read().lower()))


def evidence(tool, path, lst):
    """[(f, spam, ham, token)] of bayes_cv -d (the message's significant tokens)."""
    out = subprocess.run([tool, '-i', STOCK + '/*.cf', '-d', path, lst], capture_output=True,
                         text=True, errors='replace').stdout
    ev = {}
    for line in out.splitlines():
        f = line.split(' ', 3)
        if len(f) == 4:
            ev[f[3]] = (float(f[0]), int(f[1]), int(f[2]), f[3])
    return list(ev.values())


def html_text(s):
    s = re.sub(r'(?is)<(script|style)\b.*?</\1\s*>', ' ', s)
    s = re.sub(r'(?s)<[^>]*>', ' ', s)
    s = re.sub(r'&[a-zA-Z#0-9]+;', ' ', s)
    return s


def shape(path):
    raw = open(path, 'rb').read()
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    text, parts, charsets, ctes = 0, [], set(), set()
    html_only, has_plain, has_html, nontext = False, False, False, 0
    wrapped = False
    for p in m.walk():
        ct = p.get_content_type()
        if p.is_multipart():
            continue
        parts.append(ct)
        cte = (p.get('Content-Transfer-Encoding') or '').strip().lower()
        if cte:
            ctes.add(cte)
        if ct.startswith('text/'):
            cs = (p.get_content_charset() or '').lower()
            charsets.add(cs)
            body = p.get_payload(decode=True) or b''
            s = body.decode('latin-1')
            if ct == 'text/html':
                has_html = True
                s = html_text(s)
            elif ct == 'text/plain':
                has_plain = True
            text += len(re.sub(r'\s+', ' ', s).strip())
            if 'spam detection software' in s.lower() and 'identified this incoming' in s.lower():
                wrapped = True
        elif ct != 'message/rfc822':
            nontext += 1
    html_only = has_html and not has_plain
    lst = any(m.get(h) for h in LIST_HEADERS) or \
        re.match(r'(?i)(owner-|.*-(request|admin|bounces?)@)', m.get('Sender', '') or '') is not None
    return {'text': text, 'parts': parts, 'charsets': sorted(charsets), 'ctes': sorted(ctes),
            'html_only': html_only, 'nontext': nontext, 'list': bool(lst),
            'wrapped': wrapped or 'X-Spam-Status' in (m.get_payload()[0].get_payload()
                                                       if m.is_multipart() and
                                                       isinstance(m.get_payload()[0].get_payload(), str)
                                                       else '')}


def cause(r):
    spam = r['kind'] == 'FN'
    s = r['shape']
    if r['p'] < 0 or r['nsig'] == 0:
        return 'abstain'
    if (spam and r['p'] > 0.95) or (not spam and r['p'] <= 0.05):
        return 'cap'
    if s['text'] < 200 and s['nontext']:
        return 'image'
    if s['text'] < 200:
        return 'short'
    if any(c not in PLAIN_CHARSETS for c in s['charsets']):
        return 'charset'
    if s['wrapped']:
        return 'sa-wrapped'
    if s['text'] > 30000:
        return 'big'
    if s['list'] or 'MAILING_LIST_MULTI' in r['tests']:
        return 'list'
    if 0.2 < r['p'] < 0.8:
        return 'unsure'
    if (spam and r['p'] <= 0.2) or (not spam and r['p'] >= 0.8):
        return 'wrong-side'
    return 'lean'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('tool')
    ap.add_argument('misses')
    ap.add_argument('--rows', default='', help='write one JSON line per message here')
    ap.add_argument('--from-rows', default='',
                    help="the table again from a --rows file (no bayes_cv runs; MISSES unused)")
    a = ap.parse_args()
    if a.from_rows:
        misses = [json.loads(x) for x in open(a.from_rows)]
        for m in misses:
            m['cause'] = cause(m)
        summary(misses)
        return
    cache = bc.cache_dir()
    groups = bc.messages_prepare(cache)
    misses = []
    for line in open(a.misses):
        f = line.split()
        if len(f) >= 5:
            misses.append({'split': f[0], 'group': f[1], 'path': f[2], 'total': float(f[3]),
                           'p': float(f[4]), 'tests': f[5].split(',') if len(f) > 5 else [],
                           'kind': 'FN' if f[1].startswith('spam') else 'FP'})
    rows_out = open(a.rows, 'w') if a.rows else None
    for split in sorted({m['split'] for m in misses}):
        train, _ = bc.split_make(groups, split, 0)
        lst = '/tmp/bayes-misses-%s-%d.lst' % (split, os.getpid())
        with open(lst, 'w') as f:
            for c in ('spam', 'ham'):
                for p in train[c]:
                    f.write('-1 %s %s\n' % (c, p))
        tsets = {c: [(p, words(p)) for p in train[c]] for c in ('spam', 'ham')}
        mine = [m for m in misses if m['split'] == split]
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            evs = list(ex.map(lambda m: evidence(a.tool, m['path'], lst), mine))
        for m, ev in zip(mine, evs):
            ts = words(m['path'])
            m['ntokens'] = len(tokens(a.tool, m['path']))
            m['nsig'] = len(ev)
            m['nspamtok'] = sum(1 for e in ev if e[0] > 0.5)
            m['nhamtok'] = sum(1 for e in ev if e[0] < 0.5)
            strong = sorted(ev, key=lambda e: -abs(math.log(max(e[0], 1e-9) / max(1 - e[0], 1e-9))))
            m['top_spam'] = [e[3] for e in strong if e[0] > 0.5][:3]
            m['top_ham'] = [e[3] for e in strong if e[0] < 0.5][:3]
            same = 'spam' if m['kind'] == 'FN' else 'ham'
            m['near_train'] = max((len(ts & t) / max(1, len(ts | t)) for _, t in tsets[same]),
                                  default=0)
            m['shape'] = shape(m['path'])
            m['tokens_set'] = ts
        for m in mine:
            m['near_miss'] = max((len(m['tokens_set'] & o['tokens_set']) /
                                  max(1, len(m['tokens_set'] | o['tokens_set']))
                                  for o in mine if o is not m and o['kind'] == m['kind']), default=0)
        for m in mine:
            m['cause'] = cause(m)
            del m['tokens_set']
            s = m['shape']
            print('%s %s %-12s %s/%s total %5.2f p %.3f tok %4d sig %3d (+%d/-%d) text %5d%s%s%s '
                  'near %.2f/%.2f  spam: %s  ham: %s' % (
                      split, m['kind'], m['cause'], m['group'], os.path.basename(m['path']),
                      m['total'], m['p'], m['ntokens'], m['nsig'], m['nspamtok'], m['nhamtok'],
                      s['text'], ' html-only' if s['html_only'] else '',
                      ' nontext=%d' % s['nontext'] if s['nontext'] else '',
                      ' cs=' + ','.join(c for c in s['charsets'] if c not in PLAIN_CHARSETS)
                      if any(c not in PLAIN_CHARSETS for c in s['charsets']) else '',
                      m['near_train'], m['near_miss'], ' '.join(m['top_spam']),
                      ' '.join(m['top_ham'])), flush=True)
            if rows_out:
                rows_out.write(json.dumps(m) + '\n')
        os.unlink(lst)
    summary(misses)


def summary(misses):
    print()
    table = defaultdict(Counter)
    camp = defaultdict(Counter)
    for m in misses:
        table[(m['split'], m['kind'])][m['cause']] += 1
        if m['near_miss'] >= 0.5:
            camp[(m['split'], m['kind'])][m['cause']] += 1
    for key in sorted(table):
        tot = sum(table[key].values())
        print('%s %s (%d): %s' % (key[0], key[1], tot, ', '.join(
            '%s %d (%d near-dup)' % (c, n, camp[key][c]) for c, n in table[key].most_common())))
    for key in sorted(table):
        mm = [m for m in misses if (m['split'], m['kind']) == key]
        print('%s %s: html-only %d, list %d, nontext %d, near a training message (>= 0.5) %d, '
              'BAYES_99 %d, p <= 0.2 %d' % (
                  key[0], key[1], sum(m['shape']['html_only'] for m in mm),
                  sum(m['shape']['list'] or 'MAILING_LIST_MULTI' in m['tests'] for m in mm),
                  sum(bool(m['shape']['nontext']) for m in mm),
                  sum(m['near_train'] >= 0.5 for m in mm), sum(m['p'] > 0.99 for m in mm),
                  sum(0 <= m['p'] <= 0.2 for m in mm)))


if __name__ == '__main__':
    main()
