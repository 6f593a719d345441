/* bench_drivers.c - decodes per second per driver on its typical payload, one core.
 * Usage: bench_drivers <tests/drivers dir> [seconds per driver]
 * The typical payload of a driver is its golden case whose name contains "typical", else its first
 * case that yields readings. Prints one row per driver and the ratio to the 200,000/s goal. */
#include "citypulse/cp_driver.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CP_DRIVER(n) extern const struct cp_driver cp_driver_##n;
#include "drivers.def"
#undef CP_DRIVER

static const struct cp_driver *const drivers[] = {
#define CP_DRIVER(n) &cp_driver_##n,
#include "drivers.def"
#undef CP_DRIVER
};

#define GOAL 200000.0

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        char *buf;
        long n;

        if (!f)
                return NULL;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        if (buf) {
                buf[n] = '\0';
                *len = (size_t)n;
        }
        return buf;
}

static int cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Picks the case: "typical" in the name first, else the first whose .want.json has readings. */
static int pick_case(const char *dir, char *ret, size_t len)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char *names[512];
        size_t n = 0;
        int found = -1;

        if (!d)
                return -1;
        while ((de = readdir(d)) && n < 512)
                if (strstr(de->d_name, ".want.json"))
                        names[n++] = strdup(de->d_name);
        closedir(d);
        qsort(names, n, sizeof(*names), cmp);
        for (int pass = 0; pass < 2 && found < 0; pass++) {
                for (size_t i = 0; i < n && found < 0; i++) {
                        char p[1024];
                        size_t wl;
                        char *want;
                        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
                        want = slurp(p, &wl);
                        if (want && strstr(want, "\"readings\"") && (pass == 1 || strstr(names[i], "typical"))) {
                                snprintf(ret, len, "%s/%.*s", dir, (int)(strlen(names[i]) - 10), names[i]);
                                found = 0;
                        }
                        free(want);
                }
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        return found;
}

int main(int argc, char **argv)
{
        const char *dir = argc > 1 ? argv[1] : "tests/drivers";
        double secs = argc > 2 ? atof(argv[2]) : 0.5;
        int below = 0;

        printf("%-14s %-34s %7s %12s %9s %7s\n", "driver", "case", "bytes", "decodes/s", "ns/msg", "x goal");
        for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
                const struct cp_driver *drv = drivers[i];
                struct cp_conf_kv kv[] = {{"timezone", "Europe/Paris"}};
                struct cp_conf_section sec = {.driver = drv->name, .kv = kv, .n = 1};
                char base[1024], path[1100], err[256], ddir[512], topic[512] = "city/parking/test/counter";
                static struct cp_batch b;
                void *state = NULL;
                char *payload, *t;
                size_t len, tl;
                double t0, el;
                long iters = 0;

                snprintf(ddir, sizeof(ddir), "%s/%s", dir, drv->name);
                if (pick_case(ddir, base, sizeof(base)) < 0) {
                        printf("%-14s (no golden case with readings)\n", drv->name);
                        continue;
                }
                snprintf(path, sizeof(path), "%s.in", base);
                payload = slurp(path, &len);
                snprintf(path, sizeof(path), "%s.topic", base);
                if ((t = slurp(path, &tl))) {
                        snprintf(topic, sizeof(topic), "%.*s", (int)strcspn(t, "\r\n"), t);
                        free(t);
                }
                snprintf(path, sizeof(path), "%s/driver.conf", ddir);
                if ((t = slurp(path, &tl))) {
                        /* Drivers that need settings (json_map) get their golden driver.conf. */
                        static struct cp_conf_kv ckv[32];
                        size_t n = 0;
                        for (char *line = strtok(t, "\n"); line && n < 31; line = strtok(NULL, "\n")) {
                                char *sp = strchr(line, ' ');
                                if (!sp || line[0] == '#')
                                        continue;
                                *sp = '\0';
                                ckv[n].key = strdup(line);
                                ckv[n].value = strdup(sp + 1);
                                n++;
                        }
                        sec.kv = ckv;
                        sec.n = n;
                        if (!cp_conf_get(&sec, "timezone")) {
                                ckv[n].key = "timezone";
                                ckv[n].value = "Europe/Paris";
                                sec.n = n + 1;
                        }
                }
                if (drv->init && drv->init(&sec, &state, err, sizeof(err)) < 0) {
                        printf("%-14s init failed: %s\n", drv->name, err);
                        free(payload);
                        continue;
                }
                struct cp_msg msg = {.topic = topic, .payload = (const uint8_t *)payload, .len = len,
                                     .rx_ms = INT64_C(1772359200000)};
                t0 = now_s();
                do {
                        for (int k = 0; k < 1000; k++) {
                                cp_batch_reset(&b);
                                if (drv->decode(state, &msg, &b) < 0 || b.n == 0) {
                                        printf("%-14s decode failed on %s: %s\n", drv->name, base, b.text);
                                        exit(1);
                                }
                        }
                        iters += 1000;
                        el = now_s() - t0;
                } while (el < secs);
                double rate = (double)iters / el;
                const char *cname = strrchr(base, '/') ? strrchr(base, '/') + 1 : base;
                printf("%-14s %-34.34s %7zu %12.0f %9.0f %7.2f\n", drv->name, cname, len, rate, 1e9 / rate, rate / GOAL);
                below += rate < GOAL;
                if (drv->free)
                        drv->free(state);
                free(payload);
        }
        printf("goal: >= %.0f decodes/s per driver on one core; %d below\n", GOAL, below);
        return 0;
}
