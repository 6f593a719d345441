/* fuzz_decode.c - libFuzzer harness over every driver (drivers/drivers.def).
 *
 * Input: byte 0 picks the driver (modulo the driver count), byte 1 is the topic length L, the next L
 * bytes the topic, the rest the payload. Seeds come from the golden vectors (tests/fuzz/seed.sh).
 * Besides crashes and sanitizer reports, it enforces the driver contract: success means at least one
 * reading, every reading finite with a known quantity and a valid id; failure means no reading and a
 * reason with a text. Drivers are initialised with tests/drivers/<name>/driver.conf when present
 * ($CP_FUZZ_DRIVERS, default tests/drivers). */
#include "citypulse/cp_driver.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CP_DRIVER(n) extern const struct cp_driver cp_driver_##n;
#include "drivers.def"
#undef CP_DRIVER

static const struct cp_driver *const drivers[] = {
#define CP_DRIVER(n) &cp_driver_##n,
#include "drivers.def"
#undef CP_DRIVER
};
#define N_DRIVERS (sizeof(drivers) / sizeof(drivers[0]))

static void *states[N_DRIVERS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads `key value` lines of <dir>/<driver>/driver.conf into kv (strings leak on purpose: they live
 * as long as the process). */
static size_t read_conf(const char *dir, const char *name, struct cp_conf_kv *kv, size_t cap)
{
        char path[512], line[512];
        size_t n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s/driver.conf", dir, name);
        f = fopen(path, "r");
        if (!f)
                return 0;
        while (n < cap && fgets(line, sizeof(line), f)) {
                char *sp, *end = line + strcspn(line, "\r\n");
                *end = '\0';
                if (!line[0] || line[0] == '#' || !(sp = strchr(line, ' ')))
                        continue;
                *sp = '\0';
                kv[n].key = strdup(line);
                kv[n].value = strdup(sp + 1);
                n++;
        }
        fclose(f);
        return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *dir = getenv("CP_FUZZ_DRIVERS") ? getenv("CP_FUZZ_DRIVERS") : "tests/drivers";

        (void)argc;
        (void)argv;
        for (size_t i = 0; i < N_DRIVERS; i++) {
                static struct cp_conf_kv kv[N_DRIVERS][32];
                struct cp_conf_section sec = {.driver = drivers[i]->name, .kv = kv[i]};
                char err[256];

                sec.n = read_conf(dir, drivers[i]->name, kv[i], 31);
                if (!cp_conf_get(&sec, "timezone")) {
                        kv[i][sec.n].key = "timezone";
                        kv[i][sec.n].value = "Europe/Paris";
                        sec.n++;
                }
                if (drivers[i]->init && drivers[i]->init(&sec, &states[i], err, sizeof(err)) < 0) {
                        fprintf(stderr, "fuzz: driver %s init failed: %s\n", drivers[i]->name, err);
                        abort();
                }
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct cp_batch b;
        char topic[256];
        size_t tl, di;
        struct cp_msg msg;
        int r;

        if (size < 2)
                return 0;
        di = data[0] % N_DRIVERS;
        tl = data[1];
        if (tl > size - 2)
                tl = size - 2;
        memcpy(topic, data + 2, tl);
        topic[tl] = '\0';
        for (size_t i = 0; i < tl; i++)
                if (topic[i] == '\0')
                        topic[i] = '_';
        msg.topic = topic;
        msg.payload = data + 2 + tl;
        msg.len = size - 2 - tl;
        msg.rx_ms = INT64_C(1772359200000);
        memset(&b, 0xa5, sizeof(b)); /* garbage in: a driver must not rely on a cleared batch */
        cp_batch_reset(&b);
        r = drivers[di]->decode(states[di], &msg, &b);
        if (r == 0) {
                if (b.n == 0 || b.n > CP_BATCH_CAP)
                        abort();
                for (size_t i = 0; i < b.n; i++) {
                        const struct cp_reading *rd = &b.v[i];
                        if (!isfinite(rd->value) || rd->quantity >= _CP_Q_MAX ||
                            cp_sensor_id_valid(rd->sensor_id, strnlen(rd->sensor_id, CP_SENSOR_ID_MAX)) < 0)
                                abort();
                }
                if (b.partial != CP_REASON_NONE && (b.partial >= _CP_REASON_MAX || !b.partial_text[0]))
                        abort();
        } else if (r != -ENODATA) {
                if (b.n != 0 || b.reason == CP_REASON_NONE || b.reason >= _CP_REASON_MAX || !b.text[0] ||
                    !memchr(b.text, '\0', sizeof(b.text)))
                        abort();
        }
        return 0;
}
