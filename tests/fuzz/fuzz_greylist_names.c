/* fuzz_greylist_names.c — greylist.allow_names rules (postgrey's whitelist_clients syntax:
 * domains, /regex/, addresses and networks, a.b.c and a.b) and their matching. Input: lines;
 * the first line is the client's name (empty: none), the second its address, every other
 * line a rule. Each rule is added alone (a refused one must leave the list as it was) and
 * then all are matched against the name and address; the file reader is run on the same
 * lines written to a temporary file. The same lines are greylist.traps entries too (added
 * alone, sorted, each one added must then match itself; the first line as a recipient; the
 * file read as a traps file). Nothing may crash, leak or run without bound. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/greylist.h"
#include "proxy/netaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct greylist_names l = { 0 }, f = { 0 };
	struct greylist_traps t = { 0 }, tf = { 0 };
	struct sockaddr_storage ss;
	char *buf, *line, *save = NULL, name[300] = "", addr[80] = "198.18.0.1", err[300];
	bool have_addr;
	int n = 0;
	char path[] = "/tmp/fuzz_greylist_namesXXXXXX";
	int fd;

	if (size > 8192)
		return 0;
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		if (n == 0) {
			snprintf(name, sizeof(name), "%s", line);
		} else if (n == 1) {
			snprintf(addr, sizeof(addr), "%s", line);
		} else {
			size_t before = l.n;

			if (greylist_names_add(&l, line, err, sizeof(err)) != 0 && l.n != before)
				abort();
			before = t.n;
			if (greylist_traps_add(&t, line, err, sizeof(err)) != 0 && t.n != before)
				abort();
		}
	}
	have_addr = netaddr_sockaddr_from_string(addr, &ss) == 0;
	(void)greylist_names_match(&l, name[0] ? name : NULL, have_addr ? (struct sockaddr *)&ss : NULL);
	greylist_names_free(&l);
	if (l.n != 0 || l.v != NULL)
		abort();
	greylist_traps_sort(&t);
	for (size_t i = 0; i < t.n; i++)
		if (!greylist_traps_match(&t, t.v[i]))
			abort();
	(void)greylist_traps_match(&t, name);
	greylist_traps_free(&t);
	fd = mkstemp(path);
	if (fd >= 0) {
		if (write(fd, data, size) == (ssize_t)size) {
			(void)greylist_names_load(&f, path, err, sizeof(err));
			(void)greylist_names_match(&f, name[0] ? name : NULL, have_addr ? (struct sockaddr *)&ss : NULL);
			(void)greylist_traps_load(&tf, path, err, sizeof(err));
			greylist_traps_sort(&tf);
			(void)greylist_traps_match(&tf, name);
		}
		close(fd);
		unlink(path);
	}
	greylist_names_free(&f);
	greylist_traps_free(&tf);
	free(buf);
	return 0;
}
