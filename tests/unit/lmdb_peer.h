/* lmdb_peer.h — another process on an LMDB directory, for the stores' tests: one that holds
 * the write lock (a `mxgate learn` stopped inside its transaction), one that holds the reader
 * table's mutex (a process stopped while it takes a read slot), one that only keeps the
 * environment open (so the lock file's table is not reset by the next opener), one that
 * takes every read slot there is (then killed: the stale slots of a dead process), one that
 * holds lock.mdb's fcntl lock exclusively (every open of the directory waits). */
#ifndef MX_TEST_LMDB_PEER_H
#define MX_TEST_LMDB_PEER_H

#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum lmdb_peer_kind {
	LMDB_PEER_WRITE = 0,    /* a write transaction */
	LMDB_PEER_RMUTEX,       /* LMDB's reader-table mutex (the lock file must exist) */
	LMDB_PEER_OPEN,         /* the environment open, nothing else */
	LMDB_PEER_READERS,      /* a read transaction in every slot of the table */
	LMDB_PEER_EXCL,         /* the environment open and byte 0 of lock.mdb locked exclusively
	                         * (fcntl): an mdb_env_open elsewhere waits for it, as it waits for
	                         * a process stopped inside its own open */
};

/* A record a WRITE peer puts inside its transaction and commits when it is let go: another
 * process's change that lands between what this one read and what it writes. */
struct lmdb_peer_put { const char *key; const void *val; size_t vlen; };

static MDB_txn *lmdb_peer_txn;          /* the peer's (in the child): committed at the end */

static int lmdb_peer_hold(const char *dir, enum lmdb_peer_kind kind, const struct lmdb_peer_put *put)
{
	MDB_env *env;
	MDB_txn *txn;
	char path[512];
	unsigned char *p;
	int fd;

	if (kind == LMDB_PEER_RMUTEX) {
		/* lock.mdb starts with MDB_txninfo: magic, format, then (Linux: robust POSIX
		 * mutexes) the reader table's pthread mutex */
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		if ((fd = open(path, O_RDWR)) < 0)
			return 2;
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED || *(uint32_t *)p != 0xBEEFC0DEu)
			return 3;
		pthread_mutex_lock((pthread_mutex_t *)(p + 8));
		return 0;
	}
	mkdir(dir, 0750);
	if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, 512u << 20) != 0 ||
	    mdb_env_set_maxreaders(env, 1022) != 0 ||
	    mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0640) != 0)
		return 2;
	if (kind == LMDB_PEER_WRITE && mdb_txn_begin(env, NULL, 0, &txn) != 0)
		return 3;
	if (kind == LMDB_PEER_EXCL) {
		/* this process's shared lock on byte 0 made exclusive (a lock of its own: no
		 * conflict); the descriptor stays open, or closing it would drop both */
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };

		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		if ((fd = open(path, O_RDWR)) < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			return 3;
	}
	if (kind == LMDB_PEER_WRITE && put != NULL) {
		MDB_dbi dbi;
		MDB_val k = { strlen(put->key), (void *)put->key }, v = { put->vlen, (void *)put->val };

		if (mdb_dbi_open(txn, NULL, 0, &dbi) != 0 || mdb_put(txn, dbi, &k, &v, 0) != 0)
			return 5;
		lmdb_peer_txn = txn;
	}
	if (kind == LMDB_PEER_READERS) {
		int n = 0, rc;

		while ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) == 0)
			n++;
		if (rc != MDB_READERS_FULL || n == 0)
			return 3;
	}
	return 0;
}

/* Starts the peer; returns its pid once it holds what it holds. *release: the pipe end whose
 * close lets it go (it exits 0 then; a READERS peer is to be killed instead). put (a WRITE
 * peer; NULL: none): put in its transaction, committed as it lets go — before any other
 * writer's transaction can start. */
static pid_t lmdb_peer_start_put(const char *dir, enum lmdb_peer_kind kind,
    const struct lmdb_peer_put *put, int *release)
{
	int up[2], down[2];
	pid_t pid;
	char c;

	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc;

		close(up[0]);
		close(down[1]);
		if ((rc = lmdb_peer_hold(dir, kind, put)) != 0)
			_exit(rc);
		if (write(up[1], "h", 1) != 1)
			_exit(4);
		while (read(down[0], &c, 1) > 0)
			;
		if (lmdb_peer_txn != NULL && mdb_txn_commit(lmdb_peer_txn) != 0)
			_exit(6);
		_exit(0);             /* a robust mutex held by a dead process: LMDB recovers it */
	}
	close(up[1]);
	close(down[0]);
	assert_int_equal(read(up[0], &c, 1), 1);
	close(up[0]);
	*release = down[1];
	return pid;
}

static pid_t lmdb_peer_start(const char *dir, enum lmdb_peer_kind kind, int *release)
{
	return lmdb_peer_start_put(dir, kind, NULL, release);
}

/* Lets the peer go and reaps it (killed, with kill_it). */
static void lmdb_peer_end(pid_t pid, int release, bool kill_it)
{
	int st;

	if (kill_it)
		kill(pid, SIGKILL);
	close(release);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!kill_it)
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* How many descriptors of this process are open on dir's lock.mdb: one per environment. */
static int lmdb_peer_lock_fds(const char *dir)
{
	char want[512], link[64], got[512];
	int n = 0;

	snprintf(want, sizeof(want), "%s/lock.mdb", dir);
	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;

		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		if ((len = readlink(link, got, sizeof(got) - 1)) <= 0)
			continue;
		got[len] = '\0';
		n += strcmp(got, want) == 0;
	}
	return n;
}

#endif
