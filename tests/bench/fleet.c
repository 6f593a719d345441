/* fleet.c - a synthetic city of N sensors for the memory and start-up benchmarks (tests/bench/rss.sh,
 * tests/bench/coldstart.sh): writes its registry, and publishes one reading per sensor.
 *
 *   fleet registry DIR N              DIR/facilities.csv (N/500 facilities), DIR/sensors.csv (N sensors);
 *                                     prints "spots S counters C meters M pv P readings R"
 *   fleet publish HOST PORT N [QOS [AGE_MS]]  one message per sensor of the same city, QoS 1 by default, at
 *                                     most WINDOW unacknowledged, observed AGE_MS (default 0) before it is
 *                                     sent; prints "sent N acked A ms T"
 *
 * The city: facility i (P00000..) is watched by a gate counter (kind facility, the sensor id is the
 * parking id) when i % 10 == 9, else by spot sensors spread evenly over those facilities. N/100 meters
 * and N/500 pv meters sit in 8 districts. Spot ids look like TTN device ids ("eui-70b3d57e0000002a", 20
 * characters), so per-sensor memory is measured with realistic key lengths.
 *
 * Payloads, one driver per kind (the routes rss.sh configures):
 *   spot     bench/spot/<id>               json_map  {"id":"eui-..","occupied":1,"ts":<ms>}   1 reading
 *   facility city/parking/<id>/counter     facility_json {"facility":..,"total":..,"free":..,"timestamp":<ms>}  2
 *   meter/pv bench/meter/<id>              senml     [{"bn":"<id>:","bt":<s>,"n":"power","u":"W","v":..},
 *                                                     {"n":"energy","u":"kWh","s":..}]               2 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPOTS_PER_FACILITY 500
#define N_DISTRICTS        8
#define WINDOW             2000

struct city {
        long n, n_fac, n_counter, n_spotfac, n_meter, n_pv, n_spot, per_fac;
};

static void city_init(struct city *c, long n)
{
        c->n = n;
        c->n_fac = n / SPOTS_PER_FACILITY > 0 ? n / SPOTS_PER_FACILITY : 1;
        c->n_counter = c->n_fac / 10;
        c->n_spotfac = c->n_fac - c->n_counter;
        c->n_meter = n / 100;
        c->n_pv = n / 500;
        c->n_spot = n - c->n_counter - c->n_meter - c->n_pv;
        c->per_fac = (c->n_spot + c->n_spotfac - 1) / c->n_spotfac;
}

/* Spot facilities are the facilities i with i % 10 != 9, in order: the k-th of them. */
static long spotfac_index(long k)
{
        return k / 9 * 10 + k % 9;
}

static void spot_id(char *b, size_t sz, long j)
{
        snprintf(b, sz, "eui-70b3d57e%08lx", (unsigned long)j);
}

static long facility_spots(const struct city *c, long i)
{
        long k, first;

        if (i % 10 == 9)
                return 0;
        k = i / 10 * 9 + i % 10;
        first = k * c->per_fac;
        if (first >= c->n_spot)
                return 0;
        return first + c->per_fac <= c->n_spot ? c->per_fac : c->n_spot - first;
}

static int write_registry(const char *dir, long n)
{
        struct city c;
        char path[4096], id[64];
        FILE *f;

        city_init(&c, n);
        snprintf(path, sizeof(path), "%s/facilities.csv", dir);
        if (!(f = fopen(path, "w")))
                return perror(path), 1;
        fputs("parking_id;name;total_spaces;lat;lon;city;operator\n", f);
        for (long i = 0; i < c.n_fac; i++)
                fprintf(f, "P%05ld;Bench parking %ld;%ld;%.6f;%.6f;Benchville;Bench\n", i, i,
                        i % 10 == 9 ? 500L : facility_spots(&c, i), 48.80 + (double)(i % 97) * 0.001,
                        2.25 + (double)(i % 89) * 0.001);
        if (fclose(f))
                return perror(path), 1;
        snprintf(path, sizeof(path), "%s/sensors.csv", dir);
        if (!(f = fopen(path, "w")))
                return perror(path), 1;
        fputs("sensor_id;kind;parking_id;spot_id;district\n", f);
        for (long j = 0; j < c.n_spot; j++) {
                long k = j / c.per_fac;
                spot_id(id, sizeof(id), j);
                fprintf(f, "%s;spot;P%05ld;B%ld;\n", id, spotfac_index(k), j % c.per_fac);
        }
        for (long i = 0; i < c.n_counter; i++)
                fprintf(f, "P%05ld;facility;P%05ld;;\n", i * 10 + 9, i * 10 + 9);
        for (long m = 0; m < c.n_meter; m++)
                fprintf(f, "M%07ld;meter;;;D%d\n", m, (int)(m % N_DISTRICTS));
        for (long m = 0; m < c.n_pv; m++)
                fprintf(f, "PV%06ld;pv;;;D%d\n", m, (int)(m % N_DISTRICTS));
        if (fclose(f))
                return perror(path), 1;
        printf("spots %ld counters %ld meters %ld pv %ld readings %ld\n", c.n_spot, c.n_counter, c.n_meter, c.n_pv,
               c.n_spot + 2 * (c.n_counter + c.n_meter + c.n_pv));
        return 0;
}

/* ---- publisher ---------------------------------------------------------------------------------------- */

static long acked;
static int connected;

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
        (void)m;
        (void)ud;
        connected = rc == 0 ? 1 : -1;
}

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
        (void)m;
        (void)ud;
        (void)mid;
        acked++;
}

static long long now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Message k of the city (0 <= k < n): topic and payload, observed at ts (the time of sending, as a device
 * would stamp it). Meters go first: an energy counter whose reading reaches an already closed 1-minute
 * bucket makes the bucket code look for its previous reading in SQLite, and for a first reading that
 * search scans the whole look-back (see the README figures); sent first, they arrive in the open window. */
static int message(const struct city *c, long k, long long ts, char *topic, size_t tsz, char *pl, size_t psz)
{
        char id[64];
        long n_met = c->n_meter + c->n_pv;

        if (k < n_met) {
                if (k < c->n_meter)
                        snprintf(id, sizeof(id), "M%07ld", k);
                else
                        snprintf(id, sizeof(id), "PV%06ld", k - c->n_meter);
                snprintf(topic, tsz, "bench/meter/%s", id);
                return snprintf(pl, psz,
                                "[{\"bn\":\"%s:\",\"bt\":%lld.%03lld,\"n\":\"power\",\"u\":\"W\",\"v\":%ld},"
                                "{\"n\":\"energy\",\"u\":\"kWh\",\"s\":%ld.%ld}]",
                                id, ts / 1000, ts % 1000, 100 + k % 5000, 1000 + k, k % 10);
        }
        k -= n_met;
        if (k < c->n_counter) {
                snprintf(id, sizeof(id), "P%05ld", k * 10 + 9);
                snprintf(topic, tsz, "city/parking/%s/counter", id);
                return snprintf(pl, psz, "{\"facility\":\"%s\",\"total\":500,\"free\":%ld,\"timestamp\":%lld}", id,
                                k * 37 % 500, ts);
        }
        k -= c->n_counter;
        spot_id(id, sizeof(id), k);
        snprintf(topic, tsz, "bench/spot/%s", id);
        return snprintf(pl, psz, "{\"id\":\"%s\",\"occupied\":%ld,\"ts\":%lld}", id, (k * 7) % 3 == 0 ? 0L : 1L, ts);
}

static int publish(const char *host, int port, long n, int qos, long long age_ms)
{
        struct city c;
        struct mosquitto *m;
        char topic[256], pl[512], cid[64];
        long sent = 0;
        long long start;
        int rc;

        city_init(&c, n);
        mosquitto_lib_init();
        snprintf(cid, sizeof(cid), "cp-bench-fleet-%ld", (long)getpid());
        m = mosquitto_new(cid, true, NULL);
        if (!m)
                return fprintf(stderr, "fleet: mosquitto_new failed\n"), 1;
        mosquitto_connect_callback_set(m, on_connect);
        mosquitto_publish_callback_set(m, on_publish);
        mosquitto_max_inflight_messages_set(m, 0); /* the window below is ours */
        if ((rc = mosquitto_connect(m, host, port, 60)) != MOSQ_ERR_SUCCESS)
                return fprintf(stderr, "fleet: connect: %s\n", mosquitto_strerror(rc)), 1;
        while (connected == 0)
                if ((rc = mosquitto_loop(m, 100, 1)) != MOSQ_ERR_SUCCESS)
                        return fprintf(stderr, "fleet: %s\n", mosquitto_strerror(rc)), 1;
        if (connected < 0)
                return fprintf(stderr, "fleet: connection refused\n"), 1;
        start = now_ms();
        while (acked < n) {
                long limit = qos ? acked + WINDOW : sent + WINDOW;
                while (sent < n && sent < limit) {
                        int len = message(&c, sent, now_ms() - age_ms, topic, sizeof(topic), pl, sizeof(pl));
                        if ((rc = mosquitto_publish(m, NULL, topic, len, pl, qos, false)) != MOSQ_ERR_SUCCESS)
                                return fprintf(stderr, "fleet: publish: %s\n", mosquitto_strerror(rc)), 1;
                        sent++;
                }
                if ((rc = mosquitto_loop(m, 100, 1)) != MOSQ_ERR_SUCCESS)
                        return fprintf(stderr, "fleet: loop: %s after %ld acks\n", mosquitto_strerror(rc), acked), 1;
                if (!qos && sent == n && !mosquitto_want_write(m))
                        acked = n;
        }
        printf("sent %ld acked %ld ms %lld\n", sent, acked, now_ms() - start);
        mosquitto_disconnect(m);
        mosquitto_destroy(m);
        mosquitto_lib_cleanup();
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 4 && strcmp(argv[1], "registry") == 0)
                return write_registry(argv[2], atol(argv[3]));
        if (argc >= 5 && argc <= 7 && strcmp(argv[1], "publish") == 0)
                return publish(argv[2], atoi(argv[3]), atol(argv[4]), argc >= 6 ? atoi(argv[5]) : 1,
                               argc == 7 ? atoll(argv[6]) : 0);
        fprintf(stderr, "usage: fleet registry DIR N | fleet publish HOST PORT N [QOS [AGE_MS]]\n");
        return 2;
}
