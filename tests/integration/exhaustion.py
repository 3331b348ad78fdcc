"""exhaustion — what the tests of resources running out (test_exhaustion_*.py) share: the
daemon's use of memory and CPU as /proc and /metrics show it, and the spool cases' daemon.

    import exhaustion as ex
    ex.anon_kb(pid)            # RssAnon of the process, kB
    ex.cpu_s(pid, task=None)   # user + system CPU seconds of the process (or of one thread)
    ex.message_memory(mx)      # mxgate_message_memory_bytes, -1 when /metrics does not answer
    ex.spool_sizes(pid, spool) # the sizes of the files in spool that process pid holds open
    sp = ex.SpoolDaemon(spool, **top)   # a Sink, and before it mxgate (one worker) spooling
                                        # every message above 16K in `spool`: .sink .mx
    sp.send(tag, size) -> Result;  sp.at_sink(tag) -> the sink's messages with that tag
"""
import glob
import os

import mxtest as mt


def anon_kb(pid):
    """The anonymous memory (RssAnon) of process pid in kB; 0 when /proc does not say."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    return 0


def cpu_s(pid, task=None):
    """The CPU seconds (user + system) process pid used, or its thread task."""
    path = '/proc/%d/stat' % pid if task is None else '/proc/%d/task/%d/stat' % (pid, task)
    with open(path) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def message_memory(mx):
    """The gauge mxgate_message_memory_bytes of mx (its metrics listener): the message
    buffers' bytes held in memory; -1 when there is no answer."""
    v = mx.metric('message_memory_bytes')
    return -1 if v is None else int(v)


def spool_sizes(pid, spool):
    """The sizes of the files of directory spool that process pid has open (a message
    buffer's spool file is unlinked at once: only its descriptor shows it)."""
    sizes = []
    for fd in glob.glob('/proc/%d/fd/*' % pid):
        try:
            if os.readlink(fd).startswith(spool + '/'):
                sizes.append(os.stat(fd).st_size)
        except OSError:
            pass   # closed meanwhile
    return sizes


class SpoolDaemon:
    """smtp-sink and mxgate before it (workers=1), limits.memory_threshold 16K and
    limits.spool_dir `spool`, a metrics listener; `top`: more top-level config keys (user=)."""

    def __init__(self, spool, **top):
        self.sink = mt.Sink()
        self.mx = mt.Mxgate(mt.config([self.sink.url], workers=1,
                                      limits={'memory_threshold': '16K', 'spool_dir': spool},
                                      metrics={'listen': '127.0.0.1:%d' % mt.hold_port().port},
                                      **top))

    def send(self, tag, size):
        """One message of size octets tagged tag, a@example.org to b@example.test."""
        return mt.send_mail(self.mx.port, 'a@example.org', ['b@example.test'], mt.message(tag, size=size))

    def at_sink(self, tag):
        """The sink's messages tagged tag (mt.message)."""
        return [m for m in self.sink.messages() if mt.message_ids([m['data']]) == {tag}]
