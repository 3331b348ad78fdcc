/* stream.h — writing to a libuv stream without a request when the kernel takes it all. */
#ifndef MX_STREAM_H
#define MX_STREAM_H

#include <stddef.h>
#include <uv.h>

/* Writes what the kernel takes now of *data (*len bytes) with uv_try_write, advancing
 * *data and *len past it: saves the write request and libuv's epoll re-registration.
 * Returns 1 when all of it went, 0 when a rest is left to queue with uv_write (the socket
 * is full, or a write or connect is pending: uv_try_write refuses then, so order is kept),
 * -1 when the stream failed. */
static inline int stream_try_write(uv_stream_t *st, const char **data, size_t *len)
{
	uv_buf_t b = uv_buf_init((char *)*data, (unsigned)*len);
	int n = uv_try_write(st, &b, 1);

	if (n == (int)*len)
		return 1;
	if (n > 0) {
		*data += n;
		*len -= (size_t)n;
		return 0;
	}
	return n == UV_EAGAIN ? 0 : -1;
}

#endif
