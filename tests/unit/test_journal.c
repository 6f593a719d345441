/* test_journal.c - journal segments: append, rotate, read back, torn tails, and import into SQLite
 * (idempotent, so a segment imported twice changes nothing). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"
#include "store.h"

struct counts {
        int readings, rejects;
        double sum;
        char last_topic[64];
        size_t last_payload_len;
};

static int count_reading(void *ud, const struct cp_reading *r)
{
        struct counts *c = ud;
        c->readings++;
        c->sum += r->value;
        return 0;
}

static int count_reject(void *ud, const struct cp_jreject *x)
{
        struct counts *c = ud;
        c->rejects++;
        snprintf(c->last_topic, sizeof(c->last_topic), "%s", x->topic);
        c->last_payload_len = x->payload_len;
        return 0;
}

static char dir[64];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof(dir), "/tmp/cp-journal-XXXXXX");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state)
{
        char cmd[128];
        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void fill(struct cp_reading *v, size_t n, int64_t t0)
{
        memset(v, 0, n * sizeof(*v));
        for (size_t i = 0; i < n; i++) {
                snprintf(v[i].sensor_id, sizeof(v[i].sensor_id), "sensor-%zu", i % 3);
                v[i].quantity = CP_Q_POWER_W;
                v[i].value = (double)i;
                v[i].ts_ms = t0 + (int64_t)i;
                v[i].rx_ms = t0 + 1000;
        }
}

static void test_roundtrip(void **state)
{
        struct cp_journal j;
        struct cp_reading v[10];
        struct cp_jreject x = {.rx_ms = 5, .topic = "a/b", .driver = "facility_json", .reason = "bad_json",
                               .text = "facility_json: invalid JSON", .payload = "{\x00", .payload_len = 2};
        struct counts c = {0};
        struct cp_jvisitor vis = {count_reading, count_reject, &c};
        char *path = NULL, jdir[128];
        int torn;

        (void)state;
        snprintf(jdir, sizeof(jdir), "%s/journal", dir);
        assert_int_equal(cp_journal_open(&j, jdir), 0);
        assert_int_equal(cp_journal_rotate(&j, &path), 0);
        assert_null(path); /* nothing written: nothing to hand over */
        fill(v, 10, 1000);
        assert_int_equal(cp_journal_append_readings(&j, v, 10), 0);
        assert_int_equal(cp_journal_append_reject(&j, &x), 0);
        assert_int_equal(cp_journal_rotate(&j, &path), 0);
        assert_non_null(path);
        assert_int_equal(cp_journal_read(path, &vis, &torn), 11);
        assert_int_equal(torn, 0);
        assert_int_equal(c.readings, 10);
        assert_int_equal(c.rejects, 1);
        assert_true(c.sum == 45);
        assert_string_equal(c.last_topic, "a/b");
        assert_int_equal(c.last_payload_len, 2);
        /* A new journal continues the numbering after what is on disk. */
        cp_journal_close(&j);
        assert_int_equal(cp_journal_open(&j, jdir), 0);
        assert_int_equal(j.seq, 2);
        cp_journal_close(&j);
        free(path);
}

static void test_torn_tail(void **state)
{
        struct cp_journal j;
        struct cp_reading v[5];
        struct counts c = {0};
        struct cp_jvisitor vis = {count_reading, count_reject, &c};
        char *path = NULL;
        int torn, fd;

        (void)state;
        assert_int_equal(cp_journal_open(&j, dir), 0);
        fill(v, 5, 0);
        assert_int_equal(cp_journal_append_readings(&j, v, 5), 0);
        assert_int_equal(cp_journal_rotate(&j, &path), 0);
        /* Half a record at the end, as a power cut leaves it. */
        fd = open(path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "\x30\x00\x00\x00\x01\x02", 6), 6);
        close(fd);
        assert_int_equal(cp_journal_read(path, &vis, &torn), 5);
        assert_int_equal(torn, 1);
        /* A flipped byte in the middle stops at the last good record. */
        fd = open(path, O_WRONLY);
        assert_int_equal(pwrite(fd, "X", 1, 60), 1);
        close(fd);
        memset(&c, 0, sizeof(c));
        assert_int_equal(cp_journal_read(path, &vis, &torn), 1);
        assert_int_equal(torn, 1);
        cp_journal_close(&j);
        free(path);
}

static void test_import_idempotent(void **state)
{
        struct cp_journal j;
        struct cp_reading v[100];
        struct cp_store *st;
        struct cp_import_result res;
        char db[128], err[256], *path = NULL;
        struct cp_jreject x = {.rx_ms = 5, .topic = "t", .driver = "d", .reason = "bad_json", .text = "why",
                               .payload = "zz", .payload_len = 2};

        (void)state;
        snprintf(db, sizeof(db), "%s/t.db", dir);
        assert_int_equal(cp_store_open(db, &st, err, sizeof(err)), 0);
        assert_int_equal(cp_store_schema_version(st), 3); /* readings, buckets, the carry's oldest reading */
        assert_int_equal(cp_journal_open(&j, dir), 0);
        fill(v, 100, 1000);
        assert_int_equal(cp_journal_append_readings(&j, v, 100), 0);
        assert_int_equal(cp_journal_append_readings(&j, v, 10), 0); /* QoS 1 redelivery */
        assert_int_equal(cp_journal_append_reject(&j, &x), 0);
        assert_int_equal(cp_journal_rotate(&j, &path), 0);
        assert_int_equal(cp_store_import(st, path, &res, err, sizeof(err)), 0);
        assert_int_equal(res.records, 111);
        assert_int_equal(res.readings_new, 100);
        assert_int_equal(res.readings_dup, 10);
        assert_int_equal(res.rejects, 1);
        assert_int_equal(cp_store_import(st, path, &res, err, sizeof(err)), 0);
        assert_int_equal(res.readings_new, 0);
        assert_int_equal(res.readings_dup, 110);
        assert_int_equal(cp_store_import(st, "/nonexistent/x.seg", &res, err, sizeof(err)), -ENOENT);
        cp_store_close(st);
        /* Re-opening does not migrate twice. */
        assert_int_equal(cp_store_open(db, &st, err, sizeof(err)), 0);
        assert_int_equal(cp_store_schema_version(st), 3); /* readings, buckets, the carry's oldest reading */
        cp_store_close(st);
        cp_journal_close(&j);
        free(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
                cmocka_unit_test_setup_teardown(test_import_idempotent, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
