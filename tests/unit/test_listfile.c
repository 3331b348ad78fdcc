/* test_listfile.c — the `file:` lists' texts kept between config loads (listfile.c): when a
 * read may stand for a file (listfile_is_settled, table-driven: each row labelled), that a
 * changed file is read again whatever its stat's timing, that a file gone is an error and
 * not the kept text, that a load forgets what it did not ask for, and that what is kept is
 * not in the malloc heap, stays within bounds of what is live as files change and is right
 * after it moved. Whether a settled, unchanged file of the test's own is taken without a read
 * is tests/integration/test_reload_listcache.py's (it needs a file older than
 * LISTFILE_SETTLE_NS, which a unit test cannot make without waiting; test_moved_kept takes
 * /etc/passwd and /etc/group). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listfile.h"

#define NS 1000000000LL

static void test_settled_rows(void **state)
{
	static const struct {
		const char *label;
		long long ctime_ns, read_ns;
		bool settled;
	} rows[] = {
		{ "changed 3 s before the read", 100 * NS, 103 * NS, true },
		{ "changed exactly the settle time before", 100 * NS, 100 * NS + LISTFILE_SETTLE_NS, true },
		{ "changed 1 ns too late", 100 * NS + 1, 100 * NS + LISTFILE_SETTLE_NS, false },
		{ "changed 1 s before (a whole-second file system's tick)", 100 * NS, 101 * NS, false },
		{ "changed in the read's own clock tick", 100 * NS + 4000000, 100 * NS + 4000000, false },
		{ "changed after the read began (clock of another host)", 105 * NS, 100 * NS, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct stat st;
		struct timespec at = { (time_t)(rows[i].read_ns / NS), (long)(rows[i].read_ns % NS) };

		memset(&st, 0, sizeof(st));
		st.st_ctim.tv_sec = (time_t)(rows[i].ctime_ns / NS);
		st.st_ctim.tv_nsec = (long)(rows[i].ctime_ns % NS);
		if (listfile_is_settled(&st, &at) != rows[i].settled)
			fail_msg("row \"%s\": settled %d, want %d", rows[i].label, !rows[i].settled,
				 rows[i].settled);
	}
}

/* Which file systems' stat is trusted alone (else the file is opened for its fstat). */
static void test_fs_rows(void **state)
{
	static const struct {
		const char *label;
		unsigned long magic;
		bool local;
	} rows[] = {
		{ "ext4", 0xEF53, true },
		{ "XFS", 0x58465342, true },
		{ "tmpfs", 0x01021994, true },
		{ "overlayfs (a container's root)", 0x794C7630, true },
		{ "NFS: attributes cached, revalidated at open", 0x6969, false },
		{ "CIFS", 0xFF534D42, false },
		{ "FUSE", 0x65735546, false },
		{ "unknown", 0x12345678, false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (listfile_fs_is_local(rows[i].magic) != rows[i].local)
			fail_msg("row \"%s\": local %d, want %d", rows[i].label, !rows[i].local, rows[i].local);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "r+");	/* in place: the same inode */

	if (f == NULL)
		f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

/* The text of path through one load; *nread, *nkept its counts. */
static char *load_text(const char *path, size_t *nread, size_t *nkept)
{
	const char *err = NULL, *t;
	size_t len;
	char *copy;
	struct listfile *f;

	listfile_load_begin();
	f = listfile_get(path, &err);
	assert_non_null(f);
	t = listfile_text(f, &len);
	assert_int_equal(strlen(t), len);
	copy = strdup(t);
	listfile_release(f);
	listfile_load_end(nread, nkept);
	return copy;
}

/* An edit in place to the same size with the mtime put back (as `cp -p` onto the file does)
 * within the same second: the next load has the new text. */
static void test_changed_same_size_same_mtime(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX", path[80];
	struct stat st;
	struct timespec times[2];
	size_t nread, nkept;
	char *t;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/domains", dir);
	write_file(path, "cust1.example\n");
	t = load_text(path, &nread, &nkept);
	assert_string_equal(t, "cust1.example\n");
	assert_int_equal(nread + nkept, 1);
	free(t);

	assert_int_equal(stat(path, &st), 0);
	write_file(path, "cust2.example\n");
	times[0] = st.st_atim;
	times[1] = st.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
	t = load_text(path, &nread, &nkept);
	assert_string_equal(t, "cust2.example\n");
	free(t);

	/* the same load asking twice: one text */
	listfile_load_begin();
	const char *err = NULL;
	struct listfile *a = listfile_get(path, &err), *b = listfile_get(path, &err);
	size_t la, lb;
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(listfile_text(a, &la), listfile_text(b, &lb));
	listfile_release(a);
	listfile_release(b);
	listfile_load_end(NULL, NULL);

	unlink(path);
	rmdir(dir);
	listfile_forget_all();
}

/* A file gone since the last load is an error ("No such file"), not the kept text; a load
 * that does not ask for a file forgets it. */
static void test_gone_and_forgotten(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX", path[80];
	const char *err = NULL;
	size_t nread = 9, nkept = 9;
	char *t;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/nets", dir);
	write_file(path, "192.0.2.0/24\n");
	t = load_text(path, NULL, NULL);
	free(t);
	assert_int_equal(unlink(path), 0);
	listfile_load_begin();
	assert_null(listfile_get(path, &err));
	assert_non_null(strstr(err, "No such file"));
	listfile_load_end(&nread, &nkept);
	assert_int_equal(nread, 0);
	assert_int_equal(nkept, 0);

	/* back, another text; then a load without it and one with it again */
	write_file(path, "198.51.100.0/24\n");
	t = load_text(path, NULL, NULL);
	assert_string_equal(t, "198.51.100.0/24\n");
	free(t);
	listfile_load_begin();
	listfile_load_end(&nread, &nkept);
	assert_int_equal(nread + nkept, 0);
	t = load_text(path, &nread, &nkept);
	assert_string_equal(t, "198.51.100.0/24\n");
	assert_int_equal(nread, 1);	/* forgotten by the load between: read, not kept */
	assert_int_equal(nkept, 0);
	free(t);

	/* CIDRs kept with the text go with it */
	listfile_load_begin();
	struct listfile *f = listfile_get(path, &err);
	const struct cfg_cidr *v;
	size_t n;
	assert_non_null(f);
	assert_false(listfile_cidrs(f, &v, &n));
	struct cfg_cidr *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(cfg_parse_cidr("198.51.100.0/24", c), 0);
	listfile_keep_cidrs(f, c, 1);
	free(c);	/* a copy is kept */
	assert_true(listfile_cidrs(f, &v, &n));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].prefix, 24);
	struct cfg_cidr zero = { 0 };
	listfile_keep_cidrs(f, &zero, 1);	/* a second: not kept, the first stays */
	assert_true(listfile_cidrs(f, &v, &n));
	assert_int_equal(n, 1);
	assert_int_equal(v[0].prefix, 24);
	listfile_release(f);
	listfile_load_end(NULL, NULL);

	unlink(path);
	rmdir(dir);
	listfile_forget_all();
}

#define NFILES 300

static void write_files(const char *dir, unsigned round)
{
	char path[80], text[1100];

	for (unsigned i = 0; i < NFILES; i++) {
		snprintf(path, sizeof(path), "%s/cust%u", dir, i);
		memset(text, 'a' + (int)((i + round) % 26), 1000);
		snprintf(text + 1000, 100, "\ncust%u-%u.example\n", i, round);
		write_file(path, text);
	}
}

/* One load of the NFILES files, each text checked; *heap the malloc heap's octets in use
 * after it. */
static void load_files(const char *dir, unsigned round, size_t *heap)
{
	char path[80], want[40];
	const char *err = NULL, *t;
	size_t len;

	listfile_load_begin();
	for (unsigned i = 0; i < NFILES; i++) {
		struct listfile *f;

		snprintf(path, sizeof(path), "%s/cust%u", dir, i);
		assert_non_null(f = listfile_get(path, &err));
		t = listfile_text(f, &len);
		snprintf(want, sizeof(want), "\ncust%u-%u.example\n", i, round);
		assert_int_equal(len, 1000 + strlen(want));
		assert_string_equal(t + 1000, want);
		assert_int_equal(t[0], 'a' + (int)((i + round) % 26));
		listfile_release(f);
	}
	listfile_load_end(NULL, NULL);
#ifdef __GLIBC__
	*heap = mallinfo2().uordblks;
#else
	*heap = 0;
#endif
}

static void remove_files(const char *dir)
{
	char path[80];

	for (unsigned i = 0; i < NFILES; i++) {
		snprintf(path, sizeof(path), "%s/cust%u", dir, i);
		unlink(path);
	}
	rmdir(dir);
}

/* The kept texts are not in the malloc heap: a load's parse allocates among them, and each
 * small text living on pinned a heap page that malloc_trim could not give back (the
 * 3,000-customer hosting bench: 52 MB resident before the texts were kept, 67 MB after, for
 * 5-6 MB of texts). 300 files of 1 KB kept: the heap in use grows by the table's buckets
 * only, not by 300 KB. */
static void test_kept_outside_heap(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX";
	size_t before, after, live, mapped;

	(void)state;
	assert_non_null(mkdtemp(dir));
	write_files(dir, 0);
	listfile_forget_all();
	load_files(dir, 0, &before);	/* the table's buckets made */
	listfile_forget_all();
	load_files(dir, 0, &before);
	listfile_forget_all();
#ifdef __GLIBC__
	before = mallinfo2().uordblks;
#endif
	load_files(dir, 0, &after);
	listfile_usage(&live, &mapped);
	assert_true(live >= NFILES * 1000);
	assert_true(mapped >= live);
	if (after > before && after - before >= 16 * 1024)
		fail_msg("kept files in the heap: %zu octets in use after a load, %zu before", after, before);
	listfile_forget_all();
	remove_files(dir);
}

/* Files read again at every load (changed, or written less than LISTFILE_SETTLE_NS before:
 * all of these are) leave their old texts behind: what is mapped stays within bounds of
 * what is live (the old texts' blocks given back), and each text read is right after the
 * moves. 40 loads of 300 KB: 12 MB mapped without the moves. */
static void test_blocks_bounded(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX";
	size_t heap, live, mapped, most = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	listfile_forget_all();
	for (unsigned round = 0; round < 40; round++) {
		if (round % 4 == 0)
			write_files(dir, round);
		load_files(dir, round - round % 4, &heap);
		listfile_usage(&live, &mapped);
		if (mapped > most)
			most = mapped;
	}
	/* a quarter of the live ones dead at most, and the last block's free tail (1 MB) */
	if (most > live + live / 4 + 64 * 1024 + 2 * 1024 * 1024)
		fail_msg("%zu octets mapped for %zu live", most, live);
	listfile_forget_all();
	listfile_usage(&live, &mapped);
	assert_int_equal(live, 0);
	assert_int_equal(mapped, 0);
	remove_files(dir);
}

/* A text or a list of CIDRs of 64 KB or more has a mapping of its own, unmapped once the file
 * is read again (not moved with the small ones): 30 loads of a 100 KB file and its 3,000
 * CIDRs, rewritten before each, with the 300 small files; what is mapped stays bounded, the
 * texts are right, and nothing is left mapped once all is forgotten. */
static void test_big_own_mapping(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX", path[80], *text;
	const char *err = NULL, *t;
	size_t heap, live, mapped, most = 0, len, n;
	const struct cfg_cidr *v;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/big", dir);
	assert_non_null(text = malloc(100001));
	listfile_forget_all();
	for (unsigned round = 0; round < 30; round++) {
		struct listfile *f;
		struct cfg_cidr *c = calloc(3000, sizeof(*c));

		assert_non_null(c);
		memset(text, 'A' + (int)(round % 26), 100000);
		text[100000] = '\0';
		write_file(path, text);
		if (round % 4 == 0)
			write_files(dir, round);
		load_files(dir, round - round % 4, &heap);	/* its own load: the small ones */
		listfile_load_begin();
		assert_non_null(f = listfile_get(path, &err));
		t = listfile_text(f, &len);
		assert_int_equal(len, 100000);
		assert_int_equal(t[0], 'A' + (int)(round % 26));
		assert_int_equal(t[99999], 'A' + (int)(round % 26));
		for (unsigned i = 0; i < 3000; i++)
			c[i].prefix = (int)round;
		listfile_keep_cidrs(f, c, 3000);
		free(c);
		assert_true(listfile_cidrs(f, &v, &n));
		assert_int_equal(n, 3000);
		assert_int_equal(v[2999].prefix, (int)round);
		listfile_release(f);
		listfile_load_end(NULL, NULL);
		listfile_usage(&live, &mapped);
		if (mapped > most)
			most = mapped;
	}
	/* 30 x 176 KB without the unmaps: 5 MB */
	if (most > 4 * 1024 * 1024)
		fail_msg("%zu octets mapped", most);
	listfile_forget_all();
	listfile_usage(&live, &mapped);
	assert_int_equal(mapped, 0);
	free(text);
	unlink(path);
	remove_files(dir);
}

/* The text and CIDRs of "path" through one load, checked against the file and the CIDRs kept
 * with it (prefix i % 129 each, n of them). */
static void check_kept(const char *path, size_t ncidr)
{
	const char *err = NULL, *t;
	const struct cfg_cidr *v;
	size_t len, n, got;
	struct listfile *f = listfile_get(path, &err);
	char *want;
	FILE *fp;

	assert_non_null(f);
	assert_non_null(fp = fopen(path, "rb"));
	assert_non_null(want = calloc(1, 1 << 20));
	got = fread(want, 1, (1 << 20) - 1, fp);
	assert_int_equal(got, strlen(want));
	fclose(fp);
	t = listfile_text(f, &len);
	assert_int_equal(len, strlen(want));
	assert_string_equal(t, want);
	free(want);
	assert_true(listfile_cidrs(f, &v, &n));
	assert_int_equal(n, ncidr);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(v[i].prefix, (int)(i % 129));
	listfile_release(f);
}

static void keep_cidrs(const char *path, size_t n)
{
	const char *err = NULL;
	struct listfile *f = listfile_get(path, &err);
	struct cfg_cidr *c = calloc(n, sizeof(*c));

	assert_non_null(f);
	assert_non_null(c);
	for (size_t i = 0; i < n; i++)
		c[i].prefix = (int)(i % 129);
	listfile_keep_cidrs(f, c, n);
	free(c);
	listfile_release(f);
}

/* Kept texts and CIDRs moved into a new block (the 300 small files forgotten: their octets
 * dead) are taken again, right, by the next load. Taking a kept text needs a file that last
 * changed 2 s before (listfile_is_settled): /etc/passwd and /etc/group, a system's, not
 * written by the test. */
static void test_moved_kept(void **state)
{
	char dir[] = "/tmp/test_listfile_XXXXXX";
	const char *a = "/etc/passwd", *b = "/etc/group";
	size_t heap, live, mapped, nread, nkept;

	(void)state;
	assert_non_null(mkdtemp(dir));
	write_files(dir, 0);
	listfile_forget_all();
	listfile_load_begin();
	keep_cidrs(a, 2);
	keep_cidrs(b, 3000);	/* big: a mapping of its own */
	listfile_load_end(NULL, NULL);
	load_files(dir, 0, &heap);	/* a and b forgotten: asked again */
	listfile_load_begin();
	keep_cidrs(a, 2);
	keep_cidrs(b, 3000);
	for (unsigned i = 0; i < NFILES; i++) {
		char path[80];
		const char *err = NULL;

		snprintf(path, sizeof(path), "%s/cust%u", dir, i);
		listfile_release(listfile_get(path, &err));
	}
	listfile_load_end(NULL, NULL);	/* the 300 read again: moved */
	listfile_load_begin();	/* the 300 forgotten: moved again */
	check_kept(a, 2);
	check_kept(b, 3000);
	listfile_load_end(&nread, &nkept);
	assert_int_equal(nread + nkept, 2);
	listfile_usage(&live, &mapped);
	if (mapped >= 256 * 1024)
		fail_msg("not moved: %zu octets mapped for %zu live", mapped, live);
	listfile_load_begin();
	check_kept(a, 2);
	check_kept(b, 3000);
	listfile_load_end(&nread, &nkept);
	assert_int_equal(nread, 0);	/* taken as kept, from where they were moved */
	assert_int_equal(nkept, 2);
	listfile_forget_all();
	remove_files(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settled_rows),
		cmocka_unit_test(test_fs_rows),
		cmocka_unit_test(test_changed_same_size_same_mtime),
		cmocka_unit_test(test_gone_and_forgotten),
		cmocka_unit_test(test_kept_outside_heap),
		cmocka_unit_test(test_blocks_bounded),
		cmocka_unit_test(test_big_own_mapping),
		cmocka_unit_test(test_moved_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
