/* test_map.c - the hash map: insert, replace, delete with backward shift, growth, iteration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "map.h"

static void test_many(void **state)
{
        struct cp_map m = {0};
        enum { N = 20000 };
        static char keys[N][16];
        size_t seen = 0;
        void *v;

        (void)state;
        for (int i = 0; i < N; i++) {
                snprintf(keys[i], sizeof(keys[i]), "k%d", i);
                assert_int_equal(cp_map_put(&m, keys[i], (void *)(uintptr_t)(i + 1)), 0);
        }
        assert_int_equal(m.n, N);
        for (int i = 0; i < N; i += 2)
                assert_ptr_equal(cp_map_del(&m, keys[i]), (void *)(uintptr_t)(i + 1));
        assert_int_equal(m.n, N / 2);
        for (int i = 0; i < N; i++) {
                void *got = cp_map_get(&m, keys[i], strlen(keys[i]));
                if (i % 2)
                        assert_ptr_equal(got, (void *)(uintptr_t)(i + 1));
                else
                        assert_null(got);
        }
        assert_null(cp_map_del(&m, "nope"));
        assert_int_equal(cp_map_put(&m, keys[1], (void *)7), 0);
        assert_ptr_equal(cp_map_get(&m, "k1", 2), (void *)7);
        assert_null(cp_map_get(&m, "k1x", 2 + 1));
        assert_ptr_equal(cp_map_get(&m, "k1x", 2), (void *)7); /* lengths bound the key */
        for (size_t it = 0; cp_map_next(&m, &it, &v);)
                seen++;
        assert_int_equal(seen, N / 2);
        cp_map_done(&m);
}

int main(void)
{
        const struct CMUnitTest tests[] = {cmocka_unit_test(test_many)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
