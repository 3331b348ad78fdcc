/* test_growbuf.c — growbuf_append: content and NUL kept across growth, capacity doubling
 * from `first`, appends of every size from an empty and a non-empty buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "growbuf.h"

static void
test_append_grows(void **state)
{
    (void)state;
    char src[600];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)('a' + i % 26);
    for (size_t first = 1; first <= 64; first *= 4) {
        for (size_t n = 0; n < sizeof(src); n += 7) {
            char *buf = NULL;
            size_t len = 0, cap = 0;
            growbuf_append(&buf, &len, &cap, first, "", 0);
            assert_non_null(buf);
            assert_int_equal(len, 0);
            assert_int_equal(buf[0], '\0');
            growbuf_append(&buf, &len, &cap, first, src, 3);
            growbuf_append(&buf, &len, &cap, first, src + 3, n);
            assert_int_equal(len, 3 + n);
            assert_true(cap >= len + 1);
            assert_memory_equal(buf, src, len);
            assert_int_equal(buf[len], '\0');
            /* the capacity is first doubled as often as needed */
            size_t want = first;
            while (want < len + 1)
                want *= 2;
            assert_int_equal(cap, want);
            /* emptied and refilled in place: no growth */
            len = 0;
            growbuf_append(&buf, &len, &cap, first, src, 2);
            assert_int_equal(cap, want);
            assert_memory_equal(buf, src, 2);
            assert_int_equal(buf[2], '\0');
            free(buf);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
