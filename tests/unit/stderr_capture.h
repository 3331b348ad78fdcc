/* stderr_capture.h — what a unit test's code logs (log_event writes standard error), caught
 * in a temporary file to be read back: the log line a store writes when it fails. */
#ifndef MX_TEST_STDERR_CAPTURE_H
#define MX_TEST_STDERR_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct stderr_capture { char path[40]; int fd, saved; };

/* From here standard error goes to a new file in /tmp (until stderr_capture_end). */
static inline void stderr_capture_start(struct stderr_capture *c)
{
	snprintf(c->path, sizeof(c->path), "/tmp/mxgate-stderr-XXXXXX");
	c->fd = mkstemp(c->path);
	assert_true(c->fd >= 0);
	fflush(stderr);
	c->saved = dup(2);
	assert_true(c->saved >= 0);
	dup2(c->fd, 2);
}

/* Standard error back; what was written meanwhile in text (at most cap - 1 octets, NUL
 * ended), the file removed. Returns its length. */
static inline size_t stderr_capture_end(struct stderr_capture *c, char *text, size_t cap)
{
	ssize_t n;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	n = pread(c->fd, text, cap - 1, 0);
	close(c->fd);
	unlink(c->path);
	text[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

#endif
