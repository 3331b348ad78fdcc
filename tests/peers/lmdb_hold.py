#!/usr/bin/python3
"""lmdb_hold.py MODE DIR — another process on an LMDB directory, for the store tests (runs
under Debian's /usr/bin/python3: python3-lmdb, the real library).

  write    holds a write transaction (LMDB's write lock: what a stopped `mxgate learn` or any
           LMDB tool does); prints 'held', lets go when its stdin closes
  readers  holds the reader table's mutex (lock.mdb mapped, pthread_mutex_lock through
           ctypes: what a process stopped while it took a read slot does); prints 'held 0'
  keys P   prints the keys that start with P, blank-separated (a read-only look)"""
import ctypes
import mmap
import os
import struct
import sys

import lmdb

mode, d = sys.argv[1], sys.argv[2]
if mode == 'write':
    env = lmdb.open(d, map_size=512 << 20, max_readers=1022, subdir=True, lock=True)
    txn = env.begin(write=True)
    txn.put(b'holder', b'1')
    print('held', flush=True)
    sys.stdin.read()         # until the test closes our stdin
    txn.abort()
    env.close()
elif mode == 'readers':
    # lock.mdb starts with MDB_txninfo: magic, format, then (Linux: robust POSIX mutexes)
    # the reader table's pthread mutex
    fd = os.open(os.path.join(d, 'lock.mdb'), os.O_RDWR)
    m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    if struct.unpack_from('<I', m, 0)[0] != 0xBEEFC0DE:
        sys.exit('not an LMDB lock file')
    mutex = ctypes.byref((ctypes.c_char * 4096).from_buffer(m), 8)
    libc = ctypes.CDLL('libc.so.6')
    print('held', libc.pthread_mutex_lock(mutex), flush=True)
    sys.stdin.read()
    libc.pthread_mutex_unlock(mutex)
elif mode == 'keys':
    env = lmdb.open(d, map_size=512 << 20, max_readers=1022, subdir=True, readonly=True)
    with env.begin() as txn:
        print(' '.join(k.decode('latin-1') for k, _ in txn.cursor()
                       if k.startswith(sys.argv[3].encode())))
else:
    sys.exit('usage: lmdb_hold.py write|readers|keys DIR [PREFIX]')
