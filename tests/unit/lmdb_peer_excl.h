/* lmdb_peer_excl.h — one more peer for the stores' tests (beside lmdb_peer.h, included
 * first): a process that holds lock.mdb's fcntl lock exclusively, so that every open of the
 * directory elsewhere waits (test_lmdb_env, test_reputation_control). */
#ifndef MX_TEST_LMDB_PEER_EXCL_H
#define MX_TEST_LMDB_PEER_EXCL_H

#include "lmdb_peer.h"

/* A peer with the environment open and byte 0 of lock.mdb locked exclusively (fcntl: its own
 * shared lock made exclusive): every mdb_env_open of the directory elsewhere waits for it, as
 * it waits for a process stopped inside its own open. Its pid once it holds the lock; let it
 * go with lmdb_peer_end(pid, *release, false). */
static pid_t lmdb_peer_start_excl(const char *dir, int *release)
{
	int up[2], down[2];
	pid_t pid;
	char c;

	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		MDB_env *env;
		char path[512];
		int fd;

		close(up[0]);
		close(down[1]);
		mkdir(dir, 0750);
		if (mdb_env_create(&env) != 0 || mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0640) != 0)
			_exit(2);
		/* the descriptor stays open: closing it would drop this process's lock */
		snprintf(path, sizeof(path), "%s/lock.mdb", dir);
		if ((fd = open(path, O_RDWR)) < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(3);
		if (write(up[1], "h", 1) != 1)
			_exit(4);
		while (read(down[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	assert_int_equal(read(up[0], &c, 1), 1);
	close(up[0]);
	*release = down[1];
	return pid;
}


#endif
