/* addr_fixture.h — a socket address from its text, for the unit tests that hand a client's
 * address to a module (test_cidr.c, test_netaddr.c, test_reputation.c, test_greylist.c,
 * test_ratelimit.c, test_conncount.c, test_cfg_value.c, stage_fixture.h). Header-only
 * (static inline), included after cmocka.h. */
#ifndef ADDR_FIXTURE_H
#define ADDR_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* ip with port: anything with ':' as AF_INET6 (a v4-mapped address stays AF_INET6, as a
 * dual-stack listener hands it over), else AF_INET. Fails the test on text that is not an
 * address of that family. */
static inline struct sockaddr_storage sockaddr_of_port(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

/* sockaddr_of_port with port 0. */
static inline struct sockaddr_storage sockaddr_of(const char *ip)
{
	return sockaddr_of_port(ip, 0);
}

#endif
