#!/usr/bin/env python3
"""edgecov.py — which blocks of the code under test no input of a corpus reaches, sanitizer
traps set apart (docs/fuzzing.md, "Edge coverage").

    tests/fuzz/edgecov.py fuzz_backend_reply                      # its committed corpus
    tests/fuzz/edgecov.py fuzz_backend_reply --src proxy/smtp_reply.c [DIR|FILE ...]

Links build-fuzz's object of the harness with tests/fuzz/edgecov.c (no libFuzzer: every input
once, the inline 8-bit counters ORed; build-fuzz/edgecov/TARGET), then reads each counter no
input hit from the binary's disassembly: a block that calls __ubsan_handle_* or
__asan_report_* before it branches (following up to three jumps) is a trap only a defect
reaches; the others are printed, with function and source line, when their function was
entered at all (a function no input entered is listed once). The counters hit match
libFuzzer's `cov` over the same corpus (-runs=0)."""
import argparse
import bisect
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, '..', '..'))
TRAP = re.compile(r'call.*<__(ubsan_handle|asan_report|asan_handle_no_return)')


def link(build, target):
    out = os.path.join(build, 'edgecov')
    os.makedirs(out, exist_ok=True)
    drv = os.path.join(out, 'edgecov.o')
    subprocess.run(['clang', '-g', '-O1', '-fsanitize=address,undefined', '-c',
                    os.path.join(HERE, 'edgecov.c'), '-o', drv], check=True)
    with open(os.path.join(build, 'CMakeFiles', target + '.dir', 'link.txt')) as f:
        argv = f.read().split()
    exe = os.path.join(out, target)
    argv = [a for a in argv if a != '-fsanitize=fuzzer']
    argv[argv.index('-o') + 1] = exe
    argv.insert(argv.index('-o'), drv)
    subprocess.run(argv, check=True, cwd=build)
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('target')
    ap.add_argument('inputs', nargs='*', help='files or directories (default: its corpus)')
    ap.add_argument('--build', default=os.path.join(SRC, 'build-fuzz'))
    ap.add_argument('--src', default='', help='list only blocks whose source path holds this')
    a = ap.parse_intermixed_args()
    exe = link(a.build, a.target)
    inputs = a.inputs or [os.path.join(HERE, 'corpus', a.target)]
    env = dict(os.environ, ASAN_OPTIONS='detect_leaks=0')
    lines = subprocess.run([exe] + inputs, capture_output=True, text=True, check=True, env=env).stdout.split('\n')
    nm = subprocess.run(['nm', exe], capture_output=True, text=True, check=True).stdout
    main_at = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(' T main')), 16)
    base = int(lines[0].split()[1], 16) - main_at
    cov = [(int(p, 16) - base, h == '1') for p, h in (l.split() for l in lines[1:] if l.strip())]
    dis = subprocess.run(['objdump', '-d', '--no-show-raw-insn', exe], capture_output=True, text=True,
                         check=True).stdout
    addrs, insns, fn_at, fn = [], [], {}, None
    for l in dis.splitlines():
        m = re.match(r'^([0-9a-f]+) <(.*)>:$', l)
        if m:
            fn = m.group(2)
            continue
        m = re.match(r'^\s+([0-9a-f]+):\s+(.*)$', l)
        if m:
            addrs.append(int(m.group(1), 16))
            insns.append(m.group(2))
            fn_at[addrs[-1]] = fn

    def func(pc):
        i = bisect.bisect_right(addrs, pc) - 1
        return fn_at.get(addrs[i]) if i >= 0 else None

    def trap(pc):
        j, hops = bisect.bisect_left(addrs, pc), 0
        for _ in range(60):
            if j >= len(insns):
                return False
            if TRAP.search(insns[j]):
                return True
            m = re.match(r'jmp\s+([0-9a-f]+)\b', insns[j])
            if m and hops < 3:
                hops += 1
                j = bisect.bisect_left(addrs, int(m.group(1), 16))
                continue
            if re.match(r'(j[a-z]+|ret)\b', insns[j]):
                return False
            j += 1
        return False

    entered = set(func(pc) for pc, hit in cov if hit)
    missed = [pc for pc, hit in cov if not hit]
    traps = [pc for pc in missed if trap(pc)]
    real = [pc for pc in missed if pc not in set(traps)]
    where = subprocess.run(['addr2line', '-e', exe] + ['%x' % pc for pc in real], capture_output=True,
                           text=True).stdout.splitlines() if real else []
    print('%s: %d counters, %d hit; not hit: %d sanitizer traps, %d others' % (
        a.target, len(cov), len(cov) - len(missed), len(traps), len(real)))
    unentered = set()
    for pc, w in zip(real, where):
        w = w.replace(SRC + '/', '')
        if a.src not in w:
            continue
        f = func(pc)
        if f in entered:
            print('  %-36s %s' % (f, w))
        elif f not in unentered:
            unentered.add(f)
            print('  %-36s %s (not entered)' % (f, w))
    return 0


if __name__ == '__main__':
    sys.exit(main())
