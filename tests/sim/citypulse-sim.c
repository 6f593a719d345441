/* citypulse-sim - MQTT sensor traffic simulator for citypulse.
 *
 * Three modes share one MQTT engine (libmosquitto driven by mosquitto_loop() from a single thread):
 *   city   a demo town modelled on Issy-les-Moulineaux: spot sensors behind TTN v3 and ChirpStack v4,
 *          gate counters publishing the generic facility JSON, Tasmota and Shelly Gen2 energy meters and
 *          PV producers, all driven by daily occupancy, load and sun curves;
 *   seq    numbered facility-counter messages that must all be acknowledged, across broker restarts;
 *   flood  facility-counter load for benchmarks.
 * --write-registry writes the demo town's registry CSVs (CONTRACT.md section 4) and exits.
 *
 * The engine keeps at most WINDOW messages in flight (published, PUBACK not yet seen). libmosquitto
 * keeps unacknowledged QoS 1 messages across reconnects and resends them after CONNACK; the engine
 * also republishes, with a new message id, any message still unacknowledged STALE_AFTER_S seconds
 * into a connection, in case the library lost it.
 *
 * Build (see the Makefile for the full warning set):
 *   gcc -std=gnu11 -O2 -Wall -Wextra -o build/citypulse-sim tests/sim/citypulse-sim.c -lmosquitto -lm
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SIM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_LEN(a)     (sizeof(a) / sizeof((a)[0]))

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL

#define WINDOW            1000 /* messages in flight, all modes */
#define LIB_INFLIGHT_MAX  65535
#define BACKOFF_MIN_MS    100
#define BACKOFF_MAX_MS    2000
#define CONNACK_TIMEOUT_S 10
#define STALE_AFTER_S     30
#define SUMMARY_EVERY_S   10
#define DRAIN_MAX_S       3
#define PAYLOAD_MAX       8192
#define TOPIC_MAX         256

/* Where the demo town is, for the sun. */
#define CITY_LAT  48.8240
#define CITY_LON  2.2680
#define CITY_NAME "Issy-les-Moulineaux"

static volatile sig_atomic_t stop_requested;

/* ------------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

static void logmsg(const char *fmt, ...) SIM_PRINTF(1, 2);

static void logmsg(const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        fprintf(stderr, "citypulse-sim: %s\n", line);
}

static int64_t clock_ns(clockid_t id)
{
        struct timespec ts;

        (void)clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
        return clock_ns(CLOCK_MONOTONIC);
}

static int64_t real_ns(void)
{
        return clock_ns(CLOCK_REALTIME);
}

static void sleep_ns(int64_t ns)
{
        struct timespec ts;

        if (ns <= 0)
                return;
        ts.tv_sec = (time_t)(ns / NS_PER_S);
        ts.tv_nsec = (long)(ns % NS_PER_S);
        /* A signal cuts the sleep short; the caller re-checks stop_requested. */
        (void)nanosleep(&ts, NULL);
}

static double clampd(double v, double lo, double hi)
{
        return v < lo ? lo : (v > hi ? hi : v);
}

/* RFC 3339 in UTC: digits is 0, 3 or 9 fractional digits; zone is "Z" or "+00:00". */
static void fmt_utc(char *out, size_t len, int64_t ns, int digits, const char *zone)
{
        time_t sec = (time_t)(ns / NS_PER_S);
        int64_t frac = ns % NS_PER_S;
        struct tm tm;
        size_t n;

        (void)gmtime_r(&sec, &tm);
        n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
        if (digits == 3)
                (void)snprintf(out + n, len - n, ".%03d%s", (int)(frac / NS_PER_MS), zone);
        else if (digits == 9)
                (void)snprintf(out + n, len - n, ".%09d%s", (int)frac, zone);
        else
                (void)snprintf(out + n, len - n, "%s", zone);
}

/* Local civil time without offset, as Tasmota prints it (TZ is Europe/Paris, set in main). */
static void fmt_local(char *out, size_t len, int64_t ns)
{
        time_t sec = (time_t)(ns / NS_PER_S);
        struct tm tm;

        (void)localtime_r(&sec, &tm);
        (void)strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

struct moment {
        int64_t ns;
        double hour; /* local, fractional */
        int wday;    /* 0 = Sunday */
        int daykey;  /* changes at local midnight */
};

static void moment_at(struct moment *m, int64_t ns)
{
        time_t sec = (time_t)(ns / NS_PER_S);
        struct tm tm;

        (void)localtime_r(&sec, &tm);
        m->ns = ns;
        m->hour = tm.tm_hour + tm.tm_min / 60.0 + (tm.tm_sec + (double)(ns % NS_PER_S) / NS_PER_S) / 3600.0;
        m->wday = tm.tm_wday;
        m->daykey = tm.tm_year * 400 + tm.tm_yday;
}

static int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (s[0] == '\0' || *end != '\0' || errno == ERANGE || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_double(const char *s, double min, double max, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v) || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "2024-05-01T12:00:00Z" or unix seconds. */
static int parse_time(const char *s, int64_t *ret_ns)
{
        struct tm tm;
        int64_t secs;
        char z = 0, extra = 0;
        time_t t;

        if (parse_int64(s, 0, INT64_MAX / NS_PER_S, &secs) == 0) {
                *ret_ns = secs * NS_PER_S;
                return 0;
        }
        memset(&tm, 0, sizeof(tm));
        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec, &z, &extra) != 7 ||
            z != 'Z')
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        t = timegm(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        *ret_ns = (int64_t)t * NS_PER_S;
        return 0;
}

/* splitmix64: small, fast, good enough for a simulator. */
struct rng {
        uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
        uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
        return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double rng_range(struct rng *r, double lo, double hi)
{
        return lo + (hi - lo) * rng_unit(r);
}

static int rng_int(struct rng *r, int lo, int hi)
{
        return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static double rng_normal(struct rng *r)
{
        double u1 = 1.0 - rng_unit(r), u2 = rng_unit(r);

        return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Bounded string builder: output past the capacity is dropped and flagged. */
struct sbuf {
        char *p;
        size_t len, cap;
        bool overflow;
};

static void sb_init(struct sbuf *b, char *mem, size_t cap)
{
        b->p = mem;
        b->len = 0;
        b->cap = cap;
        b->overflow = false;
        mem[0] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) SIM_PRINTF(2, 3);

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (b->overflow)
                return;
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= b->cap - b->len) {
                b->overflow = true;
                b->p[b->len] = '\0';
                return;
        }
        b->len += (size_t)n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
        sb_printf(b, "%s", s);
}

/* A JSON string literal, quotes included. */
static void sb_json_str(struct sbuf *b, const char *s)
{
        sb_puts(b, "\"");
        for (; *s && !b->overflow; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '"' || c == '\\')
                        sb_printf(b, "\\%c", c);
                else if (c < 0x20)
                        sb_printf(b, "\\u%04x", c);
                else
                        sb_printf(b, "%c", c);
        }
        sb_puts(b, "\"");
}

static void sb_base64(struct sbuf *b, const uint8_t *data, size_t n)
{
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t i;

        for (i = 0; i + 2 < n; i += 3) {
                uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];

                sb_printf(b, "%c%c%c%c", tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]);
        }
        if (n - i == 1) {
                uint32_t v = (uint32_t)data[i] << 16;

                sb_printf(b, "%c%c==", tab[v >> 18], tab[(v >> 12) & 63]);
        } else if (n - i == 2) {
                uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;

                sb_printf(b, "%c%c%c=", tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63]);
        }
}

static void sb_random_base64(struct sbuf *b, struct rng *r, size_t n)
{
        uint8_t bytes[64] = {0};
        size_t i;

        if (n > sizeof(bytes))
                n = sizeof(bytes);
        for (i = 0; i < n; i++)
                bytes[i] = (uint8_t)rng_next(r);
        sb_base64(b, bytes, n);
}

static void sb_uuid(struct sbuf *b, struct rng *r)
{
        uint64_t hi = rng_next(r), lo = rng_next(r);

        hi = (hi & ~0xf000ULL) | 0x4000ULL;       /* version 4 */
        lo = (lo & ~(3ULL << 62)) | (2ULL << 62); /* variant 10 */
        sb_printf(b, "%08x-%04x-%04x-%04x-%012" PRIx64, (unsigned)(hi >> 32), (unsigned)((hi >> 16) & 0xffff),
                  (unsigned)(hi & 0xffff), (unsigned)(lo >> 48), (uint64_t)(lo & 0xffffffffffffULL));
}

/* A ULID-looking id, as TTN puts in correlation_ids. */
static void sb_ulid(struct sbuf *b, struct rng *r)
{
        static const char tab[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        int i;

        sb_puts(b, "01");
        for (i = 0; i < 24; i++)
                sb_printf(b, "%c", tab[rng_next(r) & 31]);
}

/* ------------------------------------------------------------------------------------------------ */
/* Options                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

enum sim_mode {
        MODE_CITY,
        MODE_SEQ,
        MODE_FLOOD,
};

struct options {
        const char *host;
        int port;
        int qos;
        const char *client_id;
        char client_id_buf[64];
        int keepalive;
        bool clean;
        enum sim_mode mode;
        double rate; /* < 0: the mode's default */
        double speed;
        double duration; /* < 0: unset */
        const char *sensor;
        int64_t count; /* < 0: unset */
        int64_t start_ms;
        bool start_ms_set;
        double timeout;
        int64_t sensors;
        const char *registry_dir;
        int64_t start_ns;
        bool start_set;
        uint64_t seed;
        bool seed_set;
};

/* ------------------------------------------------------------------------------------------------ */
/* MQTT engine                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

enum conn_state {
        CONN_IDLE,       /* no socket; waiting for retry_at */
        CONN_CONNECTING, /* CONNECT sent, waiting for CONNACK */
        CONN_UP,
};

struct slot {
        int64_t tag;   /* caller's id for the message (seq: its index) */
        int64_t t_pub; /* monotonic ns of the (re)publish */
        int mid;
        int next_free;
};

typedef void (*ack_fn)(void *ctx, int64_t tag); /* NOLINT: function pointer alias */

struct engine {
        struct mosquitto *mosq;
        const struct options *opt;
        enum conn_state state;
        bool ever_up;
        int64_t retry_at, conn_started, up_since;
        int backoff_ms;
        int fail_streak;
        uint16_t midmap[65536]; /* mid -> slot index + 1 */
        struct slot slots[WINDOW];
        int free_head;
        int inflight;
        bool in_publish;
        int early[16]; /* mids acknowledged (QoS 0: written) inside mosquitto_publish() */
        int n_early;
        bool qos0_replay; /* QoS 0: hand messages unwritten at a disconnect back to the caller */
        bool replay_due;
        ack_fn on_ack;
        void *ack_ctx;
        uint64_t n_published, n_acked, n_connects, n_republished;
};

static void slot_free(struct engine *e, int s)
{
        e->midmap[e->slots[s].mid] = 0;
        e->slots[s].mid = 0;
        e->slots[s].next_free = e->free_head;
        e->free_head = s;
        e->inflight--;
}

static void slots_reset(struct engine *e)
{
        int i;

        memset(e->midmap, 0, sizeof(e->midmap));
        for (i = 0; i < WINDOW; i++) {
                e->slots[i].mid = 0;
                e->slots[i].next_free = i + 1 < WINDOW ? i + 1 : -1;
        }
        e->free_head = 0;
        e->inflight = 0;
}

static void engine_schedule_retry(struct engine *e, const char *why)
{
        if (e->state == CONN_IDLE && e->retry_at != 0)
                return;
        /* Log the first failures, then about once a minute while the broker stays away. */
        e->fail_streak++;
        if (e->fail_streak <= 3 || e->fail_streak % 30 == 0)
                logmsg(
                    "%s; reconnecting to %s:%d in %d ms (attempt %d, %d message(s) awaiting acknowledgement)",
                    why, e->opt->host, e->opt->port, e->backoff_ms, e->fail_streak, e->inflight);
        e->state = CONN_IDLE;
        e->retry_at = mono_ns() + (int64_t)e->backoff_ms * NS_PER_MS;
        e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
}

static void on_connect_cb(struct mosquitto *mosq, void *obj, int rc, int flags)
{
        struct engine *e = obj;
        int i;

        (void)mosq;
        if (rc != 0) {
                logmsg("broker %s:%d refused the connection: %s", e->opt->host, e->opt->port,
                       mosquitto_connack_string(rc));
                return;
        }
        e->state = CONN_UP;
        e->up_since = mono_ns();
        e->backoff_ms = BACKOFF_MIN_MS;
        e->fail_streak = 0;
        e->retry_at = 0;
        e->n_connects++;
        logmsg("%s %s:%d as '%s' (%s session, session present: %s, %d in flight)",
               e->ever_up ? "reconnected to" : "connected to", e->opt->host, e->opt->port, e->opt->client_id,
               e->opt->clean ? "clean" : "persistent", (flags & 1) ? "yes" : "no", e->inflight);
        e->ever_up = true;
        if (e->opt->qos == 0 && e->inflight > 0) {
                /* Unwritten QoS 0 packets died with the old socket and will never be reported. */
                if (e->qos0_replay) {
                        e->replay_due = true;
                } else {
                        for (i = 0; i < WINDOW; i++)
                                if (e->slots[i].mid != 0)
                                        slot_free(e, i);
                }
        }
}

static void on_disconnect_cb(struct mosquitto *mosq, void *obj, int rc)
{
        struct engine *e = obj;
        char why[160];

        (void)mosq;
        if (rc == 0) {
                e->state = CONN_IDLE;
                return;
        }
        (void)snprintf(why, sizeof(why), "connection lost (%s)", mosquitto_strerror(rc));
        engine_schedule_retry(e, why);
}

static void on_publish_cb(struct mosquitto *mosq, void *obj, int mid)
{
        struct engine *e = obj;
        int s;
        int64_t tag;

        (void)mosq;
        if (mid <= 0 || mid > 65535)
                return;
        s = e->midmap[mid];
        if (s == 0) {
                /* Either the message being published right now (QoS 0 written at once), or an old id that
                 * was already given up on and republished; only the first kind counts. */
                if (e->in_publish && e->n_early < (int)ARRAY_LEN(e->early))
                        e->early[e->n_early++] = mid;
                return;
        }
        tag = e->slots[s - 1].tag;
        slot_free(e, s - 1);
        e->n_acked++;
        if (e->on_ack)
                e->on_ack(e->ack_ctx, tag);
}

static int engine_init(struct engine *e, const struct options *opt)
{
        int rc;

        memset(e, 0, sizeof(*e));
        e->opt = opt;
        e->state = CONN_IDLE;
        e->backoff_ms = BACKOFF_MIN_MS;
        slots_reset(e);
        e->mosq = mosquitto_new(opt->client_id, opt->clean, e);
        if (!e->mosq) {
                logmsg("cannot create the MQTT client: %s", strerror(errno));
                return -ENOMEM;
        }
        mosquitto_connect_with_flags_callback_set(e->mosq, on_connect_cb);
        mosquitto_disconnect_callback_set(e->mosq, on_disconnect_cb);
        mosquitto_publish_callback_set(e->mosq, on_publish_cb);
        /* Our own window bounds what is in flight; the library must never hold messages back. */
        rc = mosquitto_max_inflight_messages_set(e->mosq, LIB_INFLIGHT_MAX);
        if (rc != MOSQ_ERR_SUCCESS) {
                logmsg("cannot set the in-flight limit: %s", mosquitto_strerror(rc));
                mosquitto_destroy(e->mosq);
                e->mosq = NULL;
                return -EINVAL;
        }
        return 0;
}

static void engine_done(struct engine *e)
{
        if (e->mosq)
                mosquitto_destroy(e->mosq);
        e->mosq = NULL;
}

static void engine_connect(struct engine *e)
{
        char why[256];
        int rc;

        e->retry_at = 0;
        if (e->ever_up)
                rc = mosquitto_reconnect(e->mosq);
        else
                rc = mosquitto_connect(e->mosq, e->opt->host, e->opt->port, e->opt->keepalive);
        if (rc == MOSQ_ERR_SUCCESS) {
                e->state = CONN_CONNECTING;
                e->conn_started = mono_ns();
                return;
        }
        (void)snprintf(why, sizeof(why), "cannot connect to %s:%d: %s", e->opt->host, e->opt->port,
                       rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        e->state = CONN_CONNECTING; /* so that the failure is logged */
        engine_schedule_retry(e, why);
}

/* Waits for network activity or timeout_ms, and keeps the connection alive or re-establishes it.
 * Never returns at once unless there was something to do, so callers cannot spin. */
static void engine_service(struct engine *e, int timeout_ms)
{
        int64_t now = mono_ns();
        int rc;

        if (timeout_ms < 0)
                timeout_ms = 0;
        if (e->state == CONN_IDLE) {
                if (now < e->retry_at) {
                        int64_t wait = e->retry_at - now;

                        if (wait > (int64_t)timeout_ms * NS_PER_MS)
                                wait = (int64_t)timeout_ms * NS_PER_MS;
                        sleep_ns(wait > NS_PER_MS ? wait : NS_PER_MS);
                        return;
                }
                engine_connect(e);
                return;
        }
        if (e->state == CONN_CONNECTING && now - e->conn_started > CONNACK_TIMEOUT_S * NS_PER_S) {
                (void)mosquitto_disconnect(e->mosq);
                e->state = CONN_CONNECTING;
                engine_schedule_retry(e, "no CONNACK within 10 s");
                return;
        }
        rc = mosquitto_loop(e->mosq, timeout_ms, 1);
        if (rc != MOSQ_ERR_SUCCESS && e->state != CONN_IDLE) {
                char why[160];

                (void)snprintf(why, sizeof(why), "connection lost (%s)",
                               rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
                engine_schedule_retry(e, why);
        }
}

static bool engine_ready(struct engine *e)
{
        return e->state == CONN_UP && e->inflight < WINDOW && !mosquitto_want_write(e->mosq);
}

/* Returns 0 when the message is in the library's hands (and tracked until acknowledged), -EAGAIN when
 * the engine cannot take it now, -EIO when the library refused it. */
static int engine_publish(struct engine *e, const char *topic, const void *payload, size_t len, bool retain,
                          int64_t tag)
{
        int mid = 0, rc, s, i;

        if (!engine_ready(e))
                return -EAGAIN;
        e->in_publish = true;
        e->n_early = 0;
        rc = mosquitto_publish(e->mosq, &mid, topic, (int)len, payload, e->opt->qos, retain);
        e->in_publish = false;
        switch (rc) {
        case MOSQ_ERR_SUCCESS:
        case MOSQ_ERR_NO_CONN:
        case MOSQ_ERR_CONN_LOST:
        case MOSQ_ERR_ERRNO:
                /* At QoS 1 the message is queued in the library even when the write failed; at QoS 0 it
                 * is tracked until written, and a lost one is handled at the next CONNACK. */
                break;
        default:
                logmsg("publish on '%s' refused: %s", topic, mosquitto_strerror(rc));
                return -EIO;
        }
        if (mid <= 0 || mid > 65535)
                return -EIO;
        e->n_published++;
        for (i = 0; i < e->n_early; i++) {
                if (e->early[i] == mid) {
                        e->n_acked++;
                        if (e->on_ack)
                                e->on_ack(e->ack_ctx, tag);
                        return 0;
                }
        }
        if (e->midmap[mid] != 0) /* an abandoned id came round again: forget the old message */
                slot_free(e, e->midmap[mid] - 1);
        s = e->free_head;
        e->free_head = e->slots[s].next_free;
        e->slots[s].tag = tag;
        e->slots[s].t_pub = mono_ns();
        e->slots[s].mid = mid;
        e->midmap[mid] = (uint16_t)(s + 1);
        e->inflight++;
        return 0;
}

/* Gives up on messages unacknowledged for STALE_AFTER_S seconds of connected time (or, with all, on
 * every tracked message) and returns their tags so that the caller republishes them. */
static int engine_take_stale(struct engine *e, bool all, int64_t *tags, int max)
{
        int64_t now = mono_ns();
        int i, n = 0;

        for (i = 0; i < WINDOW && n < max; i++) {
                struct slot *sl = &e->slots[i];
                int64_t since;

                if (sl->mid == 0)
                        continue;
                since = sl->t_pub > e->up_since ? sl->t_pub : e->up_since;
                if (!all && now - since < STALE_AFTER_S * NS_PER_S)
                        continue;
                tags[n++] = sl->tag;
                slot_free(e, i);
        }
        e->n_republished += (uint64_t)n;
        return n;
}

/* After the last publish: wait (bounded) for outstanding acknowledgements, then disconnect. */
static void engine_finish(struct engine *e)
{
        int64_t deadline = mono_ns() + DRAIN_MAX_S * NS_PER_S;

        while (e->state == CONN_UP && e->inflight > 0 && mono_ns() < deadline)
                engine_service(e, 100);
        if (e->state == CONN_UP || e->state == CONN_CONNECTING) {
                (void)mosquitto_disconnect(e->mosq);
                (void)mosquitto_loop(e->mosq, 10, 1);
        }
        e->state = CONN_IDLE;
}

/* Milliseconds to wait until the next token of a rate limiter, rounded up. */
static int wait_ms_until(int64_t t, int64_t now)
{
        int64_t d = t - now;

        if (d <= 0)
                return 0;
        d = (d + NS_PER_MS - 1) / NS_PER_MS;
        return d > 1000 ? 1000 : (int)d;
}

/* ------------------------------------------------------------------------------------------------ */
/* The demo town                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

enum feed {
        FEED_TTN,
        FEED_CHIRPSTACK,
        FEED_COUNTER,
};

enum occ_profile {
        OCC_CIVIC,
        OCC_RETAIL,
        OCC_RESIDENTIAL,
        OCC_COMMUTER,
        OCC_OFFICE,
        OCC_LEISURE,
};

struct facility_def {
        const char *id;
        const char *code; /* short code in spot device ids */
        const char *name;
        int total;
        double lat, lon;
        const char *operator_name;
        enum feed feed;
        enum occ_profile profile;
        int levels; /* counters: levels reported in "levels" (0: none) */
};

/* Names and places are modelled on Issy-les-Moulineaux; operators and capacities are made up. */
static const struct facility_def facility_defs[] = {
    {"issy-hotel-de-ville", "hdv", "Parking Hôtel de Ville", 150, 48.824470, 2.273180, "Indigo", FEED_TTN,
     OCC_CIVIC, 0},
    {"issy-coeur-de-ville", "cdv", "Parking Cœur de Ville", 100, 48.823720, 2.270410, "Indigo", FEED_TTN,
     OCC_RETAIL, 0},
    {"issy-epinettes", "epi", "Parking des Épinettes", 130, 48.819650, 2.269030,
     "Ville d'Issy-les-Moulineaux", FEED_CHIRPSTACK, OCC_RESIDENTIAL, 0},
    {"issy-fort", "fort", "Parking du Fort d'Issy", 120, 48.818320, 2.263720, "Q-Park", FEED_CHIRPSTACK,
     OCC_RESIDENTIAL, 0},
    {"issy-corentin-celton", "cel", "Parking Corentin Celton", 320, 48.826930, 2.279050, "Indigo",
     FEED_COUNTER, OCC_COMMUTER, 0},
    {"issy-val-de-seine", "vds", "Parking Issy Val de Seine", 480, 48.830060, 2.263980, "Effia", FEED_COUNTER,
     OCC_OFFICE, 3},
    {"issy-les-3-moulins", "3ml", "Parking Les 3 Moulins", 400, 48.822050, 2.258730, "Saemes", FEED_COUNTER,
     OCC_RETAIL, 2},
    {"issy-ile-saint-germain", "isg", "Parking Île Saint-Germain", 180, 48.825650, 2.253180,
     "Ville d'Issy-les-Moulineaux", FEED_COUNTER, OCC_LEISURE, 0},
    {"issy-palais-des-sports", "pds", "Parking Palais des Sports", 250, 48.821360, 2.262310, "Indigo",
     FEED_COUNTER, OCC_LEISURE, 0},
    {"issy-jean-monnet", "jmo", "Parking Jean Monnet", 220, 48.831780, 2.267860, "Onepark", FEED_COUNTER,
     OCC_OFFICE, 0},
};

#define N_FACILITIES ((int)ARRAY_LEN(facility_defs))
#define MAX_SPACES   512
#define MAX_SPOTS    600

static const char *const district_ids[] = {"centre-ville", "val-de-seine", "les-epinettes",
                                           "corentin-celton"};
#define N_DISTRICTS ((int)ARRAY_LEN(district_ids))

#define TTN_APP        "issy-parking"
#define TTN_TENANT     "ttn"
#define CS_APP_ID      "5c2b9a8e-7d41-4f0e-9c36-1a2b3c4d5e6f"
#define CS_APP_NAME    "issy-parking-lorawan"
#define CS_TENANT_ID   "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
#define CS_TENANT_NAME "Ville d'Issy-les-Moulineaux"
#define CS_PROFILE_ID  "b0c3a6c2-5e2d-4c7b-8f4e-2d9b1e6a7c30"
#define LAYOUT_SEED    0x155e5eedc17eULL

struct gateway {
        const char *ttn_id;
        const char *eui; /* upper-case, TTN style; ChirpStack uses it lower-case */
        double lat, lon;
};

static const struct gateway gateways[] = {
    {"issy-gw-hotel-de-ville", "B827EBFFFE61A3C2", 48.82462, 2.27305},
    {"issy-gw-val-de-seine", "7076FFFFFF0195E4", 48.83020, 2.26420},
    {"issy-gw-fort", "AC1F09FFFE05B7D1", 48.81815, 2.26390},
};

struct facility {
        const struct facility_def *def;
        int first_spot, n_spots; /* spot-equipped facilities */
        /* gate counters */
        uint8_t space[MAX_SPACES];
        int occupied;
        int64_t entries, exits;
        int daykey;
        int64_t last_ns;
};

struct spot {
        int fac;
        int num;
        char dev_id[32]; /* TTN device_id, or ChirpStack deviceName */
        char eui[17];    /* lower-case hex */
        char spot_id[8];
        uint32_t dev_addr;
        uint32_t fcnt;
        int gw;
        int rssi_base;
        uint8_t session_key[16];
        bool occ;
        int64_t last_change_ns, last_visit_ns;
        double battery_v;
};

enum meter_dev {
        DEV_TASMOTA,
        DEV_TASMOTA_DUAL,
        DEV_SHELLY_PRO3EM,
        DEV_SHELLY_PLUS1PM,
        DEV_SHELLY_PLUS2PM,
};

enum meter_role {
        ROLE_LOAD,   /* consumption meter */
        ROLE_NET_PV, /* building with PV behind the meter: signed power, import and export */
        ROLE_PV,     /* production meter: export (negative power), standby import at night */
};

enum load_shape {
        LS_RESIDENTIAL,
        LS_OFFICE,
        LS_SCHOOL,
        LS_SHOP,
        LS_LIGHTING,
        LS_EV,
        LS_HVAC,
};

struct meter {
        enum meter_dev dev;
        enum meter_role role;
        int district;
        char id[48]; /* Tasmota topic or Shelly device id (= MQTT prefix = src) */
        int nch;
        enum load_shape shape[2];
        double base_w[2], peak_w[2];
        double pv_peak_w;
        double pf;
        int64_t total_start_ns;
        double energy_offset_kwh[2];
        /* runtime */
        double imp_wh[2], exp_wh[2];
        double day_base_wh[2], yesterday_kwh[2];
        double last_report_wh[2];
        int daykey;
        int64_t last_ns;
        int64_t last_emdata_min;
        double boot_ns;
};

#define MAX_METERS 64

enum msg_fmt {
        FMT_TTN,
        FMT_CHIRPSTACK,
        FMT_FACILITY,
        FMT_TASMOTA,
        FMT_SHELLY,
        _FMT_MAX,
};

enum msg_class {
        CLASS_SPOT,
        CLASS_COUNTER,
        CLASS_ENERGY,
        _CLASS_MAX,
};

static const int class_weight[_CLASS_MAX] = {50, 15, 35};

struct district_sky {
        double cloud;
        int64_t ns;
};

struct city {
        struct facility fac[N_FACILITIES];
        struct spot spots[MAX_SPOTS];
        int n_spots;
        struct meter meters[MAX_METERS];
        int n_meters;
        int spot_order[MAX_SPOTS];
        int counter_fac[N_FACILITIES];
        int n_counters;
        int cursor[_CLASS_MAX];
        int credit[_CLASS_MAX];
        int lwt_next; /* Tasmota LWT "Online" announcements still to send */
        struct district_sky sky[N_DISTRICTS];
        struct rng rng;
        uint64_t sent[_FMT_MAX];
};

/* The layout (ids, places, sizes) comes from a fixed seed, so it never changes between runs. */
static void city_build(struct city *c)
{
        struct rng lay = {LAYOUT_SEED};
        int f, i, d, k, n;

        memset(c, 0, sizeof(*c));
        for (f = 0; f < N_FACILITIES; f++) {
                const struct facility_def *def = &facility_defs[f];
                struct facility *fa = &c->fac[f];

                fa->def = def;
                if (def->feed == FEED_COUNTER) {
                        c->counter_fac[c->n_counters++] = f;
                        continue;
                }
                fa->first_spot = c->n_spots;
                fa->n_spots = def->total;
                for (i = 0; i < def->total && c->n_spots < MAX_SPOTS; i++) {
                        struct spot *sp = &c->spots[c->n_spots];
                        uint32_t bij = (uint32_t)((c->n_spots * 0x9E3779u + 0x51A7C3u) & 0xFFFFFFu);

                        sp->fac = f;
                        sp->num = i + 1;
                        (void)snprintf(sp->spot_id, sizeof(sp->spot_id), "P%03d", sp->num % 1000);
                        (void)snprintf(sp->dev_id, sizeof(sp->dev_id), "nps-%s-%03d", def->code,
                                       sp->num % 1000);
                        if (def->feed == FEED_TTN)
                                (void)snprintf(sp->eui, sizeof(sp->eui), "70b3d57ed005%04x", bij & 0xffffu);
                        else
                                (void)snprintf(sp->eui, sizeof(sp->eui), "0004a30b01%06x", bij);
                        sp->dev_addr = 0x260B0000u | (uint32_t)(rng_next(&lay) & 0xffffu);
                        sp->gw = f == 0 || f == 1 ? 0 : 2;
                        sp->rssi_base = rng_int(&lay, -112, -72);
                        for (k = 0; k < 16; k++)
                                sp->session_key[k] = (uint8_t)rng_next(&lay);
                        sp->battery_v = rng_range(&lay, 3.58, 3.67);
                        c->n_spots++;
                }
        }
        /* Visit spots in an order that interleaves facilities and networks. */
        for (i = 0; i < c->n_spots; i++)
                c->spot_order[i] = i;
        for (i = c->n_spots - 1; i > 0; i--) {
                int j = (int)(rng_next(&lay) % (uint64_t)(i + 1));
                int t = c->spot_order[i];

                c->spot_order[i] = c->spot_order[j];
                c->spot_order[j] = t;
        }

        /* Energy: per district 8 Tasmota consumption meters (one dual-channel in centre-ville), 2 Tasmota
         * net meters of buildings with PV, 1 Tasmota PV producer, and one Shelly Gen2 device. */
        n = 0;
        for (d = 0; d < N_DISTRICTS; d++) {
                static const enum load_shape shapes[8] = {LS_RESIDENTIAL, LS_RESIDENTIAL, LS_RESIDENTIAL,
                                                          LS_OFFICE,      LS_SHOP,        LS_SCHOOL,
                                                          LS_LIGHTING,    LS_EV};
                for (i = 0; i < 11; i++) {
                        struct meter *m = &c->meters[n];
                        uint32_t bij = (uint32_t)((n * 0x6F4A7Du + 0x3A5C1Du) & 0xFFFFFFu);

                        m->dev = DEV_TASMOTA;
                        m->district = d;
                        m->nch = 1;
                        (void)snprintf(m->id, sizeof(m->id), "tasmota_%06X", bij);
                        if (i < 8) {
                                m->role = ROLE_LOAD;
                                m->shape[0] = shapes[i];
                                if (d == 0 && i == 7) {
                                        m->dev = DEV_TASMOTA_DUAL;
                                        m->nch = 2;
                                        m->shape[0] = LS_HVAC;
                                        m->shape[1] = LS_LIGHTING;
                                }
                        } else if (i < 10) {
                                m->role = ROLE_NET_PV;
                                m->shape[0] = i == 8 ? LS_RESIDENTIAL : LS_OFFICE;
                        } else {
                                m->role = ROLE_PV;
                                m->shape[0] = LS_OFFICE;
                        }
                        n++;
                }
        }
        {
                static const struct {
                        int district;
                        enum meter_dev dev;
                        enum meter_role role;
                        const char *prefix;
                        enum load_shape s0, s1;
                } shellies[] = {
                    {0, DEV_SHELLY_PRO3EM, ROLE_NET_PV, "shellypro3em-c8f09e", LS_OFFICE, LS_OFFICE},
                    {1, DEV_SHELLY_PRO3EM, ROLE_LOAD, "shellypro3em-c8f09e", LS_OFFICE, LS_OFFICE},
                    {2, DEV_SHELLY_PLUS1PM, ROLE_LOAD, "shellyplus1pm-a8032a", LS_LIGHTING, LS_LIGHTING},
                    {3, DEV_SHELLY_PLUS2PM, ROLE_LOAD, "shellyplus2pm-80646f", LS_EV, LS_HVAC},
                };
                for (i = 0; i < (int)ARRAY_LEN(shellies); i++) {
                        struct meter *m = &c->meters[n];
                        uint32_t bij = (uint32_t)((n * 0x2C9277u + 0x7B1E55u) & 0xFFFFFFu);

                        m->dev = shellies[i].dev;
                        m->role = shellies[i].role;
                        m->district = shellies[i].district;
                        m->nch = m->dev == DEV_SHELLY_PLUS2PM ? 2 : 1;
                        m->shape[0] = shellies[i].s0;
                        m->shape[1] = shellies[i].s1;
                        (void)snprintf(m->id, sizeof(m->id), "%s%06x", shellies[i].prefix, bij);
                        n++;
                }
        }
        c->n_meters = n;
        for (i = 0; i < n; i++) {
                struct meter *m = &c->meters[i];

                for (k = 0; k < m->nch; k++) {
                        switch (m->shape[k]) {
                        case LS_RESIDENTIAL:
                                m->base_w[k] = rng_range(&lay, 1500, 6000);
                                m->peak_w[k] = rng_range(&lay, 8000, 30000);
                                break;
                        case LS_OFFICE:
                                m->base_w[k] = rng_range(&lay, 3000, 12000);
                                m->peak_w[k] = rng_range(&lay, 20000, 60000);
                                break;
                        case LS_SCHOOL:
                                m->base_w[k] = rng_range(&lay, 1500, 4000);
                                m->peak_w[k] = rng_range(&lay, 10000, 25000);
                                break;
                        case LS_SHOP:
                                m->base_w[k] = rng_range(&lay, 800, 2500);
                                m->peak_w[k] = rng_range(&lay, 5000, 15000);
                                break;
                        case LS_LIGHTING:
                                m->base_w[k] = rng_range(&lay, 20, 60);
                                m->peak_w[k] = rng_range(&lay, 1500, 4500);
                                break;
                        case LS_EV:
                                m->base_w[k] = rng_range(&lay, 30, 80);
                                m->peak_w[k] = rng_range(&lay, 7000, 22000);
                                break;
                        case LS_HVAC:
                                m->base_w[k] = rng_range(&lay, 400, 1200);
                                m->peak_w[k] = rng_range(&lay, 2500, 6000);
                                break;
                        }
                        m->energy_offset_kwh[k] = rng_range(&lay, 500, 20000);
                }
                if (m->dev == DEV_SHELLY_PLUS1PM || m->dev == DEV_SHELLY_PLUS2PM) {
                        /* A relay carries one load: keep it within a 16 A circuit. */
                        for (k = 0; k < m->nch; k++) {
                                m->peak_w[k] = fmin(m->peak_w[k], 3400);
                                m->base_w[k] = fmin(m->base_w[k], 150);
                        }
                }
                if (m->role == ROLE_NET_PV)
                        m->pv_peak_w = rng_range(&lay, 6000, 36000);
                else if (m->role == ROLE_PV)
                        m->pv_peak_w = rng_range(&lay, 9000, 60000);
                m->pf = rng_range(&lay, 0.86, 0.99);
                m->total_start_ns = (1640995200LL + (int64_t)rng_range(&lay, 0, 3.0e7)) * NS_PER_S;
        }
}

static double bump(double h, double mu, double sigma)
{
        double x = (h - mu) / sigma;

        return exp(-0.5 * x * x);
}

static double plateau(double h, double on, double off, double width)
{
        return 1.0 / (1.0 + exp(-(h - on) / width)) / (1.0 + exp(-(off - h) / width));
}

/* Target share of occupied spaces. */
static double occupancy_target(enum occ_profile p, const struct moment *m)
{
        double h = m->hour, v;
        bool sat = m->wday == 6, sun = m->wday == 0, weekend = sat || sun;

        switch (p) {
        case OCC_CIVIC:
                if (sun)
                        v = 0.10 + 0.30 * bump(h, 11, 2);
                else if (sat)
                        v = 0.12 + 0.65 * bump(h, 11, 2.2) + 0.3 * bump(h, 16, 2);
                else
                        v = 0.15 + 0.62 * bump(h, 10.5, 2) + 0.55 * bump(h, 16, 2.2) +
                            0.25 * bump(h, 20, 1.5);
                break;
        case OCC_RETAIL:
                v = 0.06 + 0.50 * bump(h, 12.5, 1.8) + 0.72 * bump(h, 17.5, 2.0);
                if (sat)
                        v *= 1.25;
                else if (sun)
                        v = 0.05 + 0.30 * bump(h, 11.5, 1.8);
                break;
        case OCC_RESIDENTIAL:
                /* Cars leave in the morning peak and come back in the evening peak. */
                if (weekend)
                        v = 0.80 - 0.30 * bump(h, 15, 3);
                else
                        v = 0.88 - 0.55 * plateau(h, 8.0, 18.0, 0.7);
                break;
        case OCC_COMMUTER:
                v = weekend ? 0.08 + 0.15 * bump(h, 14, 4) : 0.06 + 0.86 * plateau(h, 7.5, 18.5, 0.6);
                break;
        case OCC_OFFICE:
                v = weekend ? 0.04 + 0.10 * bump(h, 14, 3) : 0.05 + 0.85 * plateau(h, 8.7, 18.2, 0.6);
                break;
        case OCC_LEISURE:
        default:
                v = 0.05 + (weekend ? 0.60 : 0.30) * bump(h, 15, 2.5) + 0.40 * bump(h, 20.5, 1.5);
                break;
        }
        return clampd(v, 0.02, 0.97);
}

/* How fast occupancy follows its target, per hour. The mean stay of a car is 1 / ((1 - target) * rate):
 * long when the car park is meant to be full, short when it is meant to empty. */
static double follow_rate(enum occ_profile p)
{
        switch (p) {
        case OCC_CIVIC:
                return 1.5;
        case OCC_RETAIL:
                return 2.0;
        case OCC_RESIDENTIAL:
                return 0.6;
        case OCC_COMMUTER:
                return 0.8;
        case OCC_OFFICE:
                return 0.9;
        case OCC_LEISURE:
        default:
                return 1.5;
        }
}

/* One space as a two-state Markov chain with stationary occupancy pi (arrival rate pi * k, departure rate
 * (1 - pi) * k): exact transition over dt seconds. */
static bool space_step(struct rng *r, bool occ, double pi, double rate_per_h, double dt_s)
{
        double e = exp(-rate_per_h / 3600.0 * dt_s);
        double p_occ = pi + ((occ ? 1.0 : 0.0) - pi) * e;

        return rng_unit(r) < p_occ;
}

/* Sine of the sun's elevation over the town (NOAA-style approximation, good to a degree). */
static double sun_sin_elevation(int64_t ns)
{
        time_t sec = (time_t)(ns / NS_PER_S);
        struct tm tm;
        double n, hour_utc, decl, b, eot, solar, ha, lat = CITY_LAT * M_PI / 180.0;

        (void)gmtime_r(&sec, &tm);
        n = tm.tm_yday + 1;
        hour_utc = tm.tm_hour + tm.tm_min / 60.0 + tm.tm_sec / 3600.0;
        decl = -23.44 * M_PI / 180.0 * cos(2.0 * M_PI / 365.0 * (n + 10));
        b = 2.0 * M_PI * (n - 81) / 364.0;
        eot = 9.87 * sin(2 * b) - 7.53 * cos(b) - 1.5 * sin(b);
        solar = hour_utc + CITY_LON / 15.0 + eot / 60.0;
        ha = (solar - 12.0) * 15.0 * M_PI / 180.0;
        return sin(lat) * sin(decl) + cos(lat) * cos(decl) * cos(ha);
}

/* Share of the peak load, 0..1. */
static double load_factor(enum load_shape s, const struct moment *m, double sun)
{
        double h = m->hour;
        bool weekend = m->wday == 0 || m->wday == 6;

        switch (s) {
        case LS_RESIDENTIAL:
                return 0.12 + 0.35 * bump(h, 7.5, 1.1) + 0.75 * bump(h, 19.8, 1.8) +
                       (weekend ? 0.30 * bump(h, 12.5, 2) : 0.08 * bump(h, 12.5, 1.5));
        case LS_OFFICE:
                return weekend ? 0.05 : 0.05 + 0.85 * plateau(h, 8.0, 19.0, 0.7) + 0.10 * bump(h, 9, 1);
        case LS_SCHOOL:
                if (weekend || (m->wday == 3 && h > 12.5))
                        return 0.05;
                return 0.05 + 0.90 * plateau(h, 7.8, 17.0, 0.5);
        case LS_SHOP:
                if (m->wday == 0)
                        return 0.05 + 0.5 * plateau(h, 9.5, 13.0, 0.3);
                return 0.05 + 0.9 * plateau(h, 9.5, 20.0, 0.3);
        case LS_LIGHTING:
                return sun < -0.05 ? 1.0 : (sun < 0.05 ? 0.5 : 0.0);
        case LS_EV:
                return 0.05 + 0.85 * bump(h, 20.5, 2.0) + 0.85 * bump(h, -3.5, 2.0) + 0.35 * bump(h, 13, 2);
        case LS_HVAC:
        default:
                return weekend ? 0.25 : 0.25 + 0.70 * plateau(h, 7.0, 20.0, 0.8);
        }
}

static double district_cloud(struct city *c, int d, int64_t ns)
{
        struct district_sky *s = &c->sky[d];
        double dt_h = (double)(ns - s->ns) / 3600e9, th = 0.6, mu = 0.72, sigma = 0.35, e;

        if (dt_h <= 0)
                return s->cloud;
        if (dt_h > 24)
                dt_h = 24;
        e = exp(-th * dt_h);
        s->cloud = mu + (s->cloud - mu) * e + sigma * sqrt((1 - e * e) / (2 * th)) * rng_normal(&c->rng);
        s->cloud = clampd(s->cloud, 0.1, 1.0);
        s->ns = ns;
        return s->cloud;
}

static double pv_power(const struct meter *m, double sun, double cloud)
{
        if (m->pv_peak_w <= 0 || sun <= 0)
                return 0;
        return m->pv_peak_w * 0.92 * pow(sun, 1.2) * cloud;
}

/* Consumption of channel ch, W, noise-free (a PV producer only draws its inverter's standby at night). */
static double meter_load(const struct meter *m, int ch, const struct moment *mo, double sun)
{
        if (m->role == ROLE_PV)
                return sun > 0 ? 0 : 4.0;
        return m->base_w[ch] + m->peak_w[ch] * load_factor(m->shape[ch], mo, sun);
}

/* Signed power of channel ch (+ import, - export), noise-free. */
static double meter_power(const struct meter *m, int ch, const struct moment *mo, double sun, double cloud)
{
        return meter_load(m, ch, mo, sun) - (m->role == ROLE_LOAD ? 0 : pv_power(m, sun, cloud));
}

/* Energy from last_ns to ns, in steps of at most 5 simulated minutes. */
static void meter_integrate(struct meter *m, int64_t ns, double cloud)
{
        int64_t span = ns - m->last_ns, step;
        int n, i, ch;

        if (span <= 0)
                return;
        n = (int)((span + 300 * NS_PER_S - 1) / (300 * NS_PER_S));
        if (n > 288)
                n = 288;
        step = span / n;
        for (i = 0; i < n; i++) {
                struct moment mo;
                int64_t t = m->last_ns + step * i + step / 2;
                double sun = sun_sin_elevation(t), hours = (double)step / 3600e9;

                moment_at(&mo, t);
                for (ch = 0; ch < m->nch; ch++) {
                        double p = meter_power(m, ch, &mo, sun, cloud);

                        if (p >= 0)
                                m->imp_wh[ch] += p * hours;
                        else
                                m->exp_wh[ch] += -p * hours;
                }
        }
        m->last_ns = ns;
}

static void city_init_state(struct city *c, int64_t start_ns, uint64_t seed)
{
        struct moment mo;
        int i, k, f, d;

        c->rng.s = seed;
        moment_at(&mo, start_ns);
        for (d = 0; d < N_DISTRICTS; d++) {
                c->sky[d].cloud = rng_range(&c->rng, 0.4, 1.0);
                c->sky[d].ns = start_ns;
        }
        for (i = 0; i < c->n_spots; i++) {
                struct spot *sp = &c->spots[i];
                double pi = occupancy_target(facility_defs[sp->fac].profile, &mo);

                sp->occ = rng_unit(&c->rng) < pi;
                sp->last_change_ns = start_ns - (int64_t)rng_range(&c->rng, 60, 4 * 3600) * NS_PER_S;
                sp->last_visit_ns = start_ns;
                sp->fcnt = (uint32_t)rng_int(&c->rng, 1, 40000);
        }
        for (k = 0; k < c->n_counters; k++) {
                struct facility *fa = &c->fac[c->counter_fac[k]];
                struct moment mid;
                double pi = occupancy_target(fa->def->profile, &mo), pi0;
                int occ_midnight, total = fa->def->total;

                fa->occupied = 0;
                for (f = 0; f < total && f < MAX_SPACES; f++) {
                        fa->space[f] = rng_unit(&c->rng) < pi;
                        fa->occupied += fa->space[f];
                }
                /* Entries and exits count from local midnight: start from a plausible day so far. */
                moment_at(&mid, start_ns);
                mid.hour = 0;
                pi0 = occupancy_target(fa->def->profile, &mid);
                occ_midnight = (int)lround(pi0 * total);
                fa->entries = (fa->occupied > occ_midnight ? fa->occupied - occ_midnight : 0) +
                              (int64_t)(mo.hour / 24.0 * total * rng_range(&c->rng, 0.5, 1.5));
                fa->exits = fa->entries - (fa->occupied - occ_midnight);
                if (fa->exits < 0) {
                        fa->entries -= fa->exits;
                        fa->exits = 0;
                }
                fa->daykey = mo.daykey;
                fa->last_ns = start_ns;
        }
        for (i = 0; i < c->n_meters; i++) {
                struct meter *m = &c->meters[i];
                /* Totals count from the device's TotalStartTime and grow with the simulated date, so a later
                 * run does not go backwards (a counter reset to a daemon). */
                double hours = (double)(start_ns - m->total_start_ns) / 3600e9;

                if (hours < 0)
                        hours = 0;
                for (k = 0; k < m->nch; k++) {
                        double mean_kw = (m->base_w[k] + 0.3 * m->peak_w[k]) / 1000.0;

                        m->imp_wh[k] = (m->energy_offset_kwh[k] * 0.01 + mean_kw * hours) * 1000.0;
                        /* About 1100 kWh per kWp and year around Paris. */
                        m->exp_wh[k] = m->pv_peak_w / 1000.0 * 0.1256 * hours * 1000.0;
                        if (m->role == ROLE_PV)
                                m->imp_wh[k] = 0.004 * hours * 1000.0;
                        m->day_base_wh[k] = m->imp_wh[k] - (m->base_w[k] + 0.3 * m->peak_w[k]) * mo.hour;
                        if (m->day_base_wh[k] < 0)
                                m->day_base_wh[k] = 0;
                        m->yesterday_kwh[k] = (m->base_w[k] + 0.3 * m->peak_w[k]) * 24.0 / 1000.0 *
                                              rng_range(&c->rng, 0.85, 1.15);
                        m->last_report_wh[k] = m->imp_wh[k];
                }
                m->daykey = mo.daykey;
                m->last_ns = start_ns - NS_PER_S; /* as if each had reported a second ago */
                m->last_emdata_min = start_ns / (60 * NS_PER_S);
                m->boot_ns = (double)(start_ns - (int64_t)rng_range(&c->rng, 3600, 40 * 86400) * NS_PER_S);
        }
        for (i = 0; i < _CLASS_MAX; i++) {
                c->cursor[i] = 0;
                c->credit[i] = 0;
        }
        c->lwt_next = 0;
}

/* --- LoRaWAN spot sensors ------------------------------------------------------------------------ */

struct lora_rx {
        int rssi, sf, freq_idx;
        double snr;
        int64_t gw_ns, ns_ns, as_ns; /* gateway time, network server time, application server time */
};

static const int eu868_freq[] = {868100000, 868300000, 868500000, 867100000,
                                 867300000, 867500000, 867700000, 867900000};

static void lora_radio(struct rng *r, const struct spot *sp, int64_t now, struct lora_rx *rx)
{
        rx->rssi = sp->rssi_base + rng_int(r, -3, 3);
        rx->snr = clampd(10.0 - (-rx->rssi - 72) / 3.5 + rng_normal(r), -15.0, 12.5);
        rx->sf = rx->rssi > -95 ? 7 : rx->rssi > -103 ? 8 : rx->rssi > -109 ? 9 : 10;
        rx->freq_idx = rng_int(r, 0, (int)ARRAY_LEN(eu868_freq) - 1);
        /* Every stamp is at or before the simulated "now". */
        rx->as_ns = now - rng_int(r, 0, 3) * NS_PER_MS - rng_int(r, 0, 999999);
        rx->ns_ns = rx->as_ns - rng_int(r, 8, 25) * NS_PER_MS - rng_int(r, 0, 999999);
        rx->gw_ns = rx->ns_ns - rng_int(r, 30, 180) * NS_PER_MS - rng_int(r, 0, 999999);
}

static double lora_airtime(int sf, bool heartbeat)
{
        static const double short_frame[] = {0.041216, 0.072192, 0.144384, 0.247808};
        static const double long_frame[] = {0.046336, 0.082432, 0.164864, 0.288768};

        return heartbeat ? long_frame[sf - 7] : short_frame[sf - 7];
}

/* Nwave-style compressed "previous state duration": minutes up to 63, then 15-minute steps. */
static int compress_duration(int64_t minutes, int *ret_minutes, int *ret_error, bool *ret_overflow)
{
        int code;

        if (minutes < 0)
                minutes = 0;
        if (minutes < 64) {
                code = (int)minutes;
                *ret_minutes = code;
                *ret_error = 0;
                *ret_overflow = false;
        } else {
                int64_t steps = (minutes - 64) / 15;

                *ret_overflow = steps > 63;
                code = 64 + (int)(steps > 63 ? 63 : steps);
                *ret_minutes = 64 + (code - 64) * 15;
                *ret_error = 7;
        }
        return code;
}

struct spot_reading {
        bool heartbeat;
        bool occ;
        int dur_min, dur_err;
        bool dur_overflow;
        double battery_v;
        int temperature;
        uint8_t frame[4];
        size_t frame_len;
};

/* decoded_payload (TTN) or object (ChirpStack, whose Struct turns every number into a double). */
static void sb_spot_object(struct sbuf *b, const struct spot_reading *sr, bool doubles)
{
        const char *num = doubles ? ".0" : "";

        if (sr->heartbeat) {
                sb_printf(b, "{\"type\":\"heartbeat\",\"occupied\":%s,\"battery_voltage\":%.2f,",
                          sr->occ ? "true" : "false", sr->battery_v);
                sb_printf(b, "\"temperature\":%d%s,\"battery_health\":\"normal\",\"hw_health_status\":0%s}",
                          sr->temperature, num, num);
        } else {
                sb_printf(b,
                          "{\"type\":\"parking_status\",\"occupied\":%s,\"previous_state_duration\":%d%s,"
                          "\"previous_state_duration_error\":%d%s,\"previous_state_duration_overflow\":%s}",
                          sr->occ ? "true" : "false", sr->dur_min, num, sr->dur_err, num,
                          sr->dur_overflow ? "true" : "false");
        }
}

static void ttn_uplink(struct city *c, const struct spot *sp, const struct spot_reading *sr, int64_t now,
                       char *topic, struct sbuf *b)
{
        const struct gateway *gw = &gateways[sp->gw];
        struct lora_rx rx;
        char t_gw[48], t_ns[48], t_as[48], eui[17];
        int i;

        lora_radio(&c->rng, sp, now, &rx);
        fmt_utc(t_gw, sizeof(t_gw), rx.gw_ns, 9, "Z");
        fmt_utc(t_ns, sizeof(t_ns), rx.ns_ns, 9, "Z");
        fmt_utc(t_as, sizeof(t_as), rx.as_ns, 9, "Z");
        for (i = 0; i < 16; i++)
                eui[i] = (char)(sp->eui[i] >= 'a' ? sp->eui[i] - 'a' + 'A' : sp->eui[i]);
        eui[16] = '\0';
        (void)snprintf(topic, TOPIC_MAX, "v3/%s@%s/devices/%s/up", TTN_APP, TTN_TENANT, sp->dev_id);

        sb_printf(b,
                  "{\"end_device_ids\":{\"device_id\":\"%s\",\"application_ids\":{\"application_id\":\"%s\"},"
                  "\"dev_eui\":\"%s\",\"join_eui\":\"70B3D57ED0000001\",\"dev_addr\":\"%08X\"},",
                  sp->dev_id, TTN_APP, eui, sp->dev_addr);
        sb_puts(b, "\"correlation_ids\":[\"as:up:");
        sb_ulid(b, &c->rng);
        sb_puts(b, "\",\"gs:conn:");
        sb_ulid(b, &c->rng);
        sb_puts(b, "\",\"gs:uplink:");
        sb_ulid(b, &c->rng);
        sb_puts(b, "\",\"ns:uplink:");
        sb_ulid(b, &c->rng);
        sb_printf(b, "\"],\"received_at\":\"%s\",\"uplink_message\":{\"session_key_id\":\"", t_as);
        sb_base64(b, sp->session_key, sizeof(sp->session_key));
        sb_printf(b, "\",\"f_port\":%d,", sr->heartbeat ? 2 : 1);
        if (sp->fcnt != 0) /* TTN omits zero values */
                sb_printf(b, "\"f_cnt\":%u,", sp->fcnt);
        sb_puts(b, "\"frm_payload\":\"");
        sb_base64(b, sr->frame, sr->frame_len);
        sb_puts(b, "\",\"decoded_payload\":");
        sb_spot_object(b, sr, false);
        sb_printf(b, ",\"rx_metadata\":[{\"gateway_ids\":{\"gateway_id\":\"%s\",\"eui\":\"%s\"},", gw->ttn_id,
                  gw->eui);
        sb_printf(b, "\"time\":\"%s\",\"timestamp\":%u,\"rssi\":%d,\"channel_rssi\":%d,\"snr\":%.2f,", t_gw,
                  (unsigned)((rx.gw_ns / 1000) & 0xffffffff), rx.rssi, rx.rssi, rx.snr);
        sb_printf(b, "\"location\":{\"latitude\":%.5f,\"longitude\":%.5f,\"source\":\"SOURCE_REGISTRY\"},",
                  gw->lat, gw->lon);
        sb_puts(b, "\"uplink_token\":\"");
        sb_random_base64(b, &c->rng, 30);
        sb_printf(b, "\",\"channel_index\":%d,\"received_at\":\"%s\"}],", rx.freq_idx, t_ns);
        sb_printf(b,
                  "\"settings\":{\"data_rate\":{\"lora\":{\"bandwidth\":125000,\"spreading_factor\":%d,"
                  "\"coding_rate\":\"4/5\"}},\"frequency\":\"%d\",\"timestamp\":%u,\"time\":\"%s\"},",
                  rx.sf, eu868_freq[rx.freq_idx], (unsigned)((rx.gw_ns / 1000) & 0xffffffff), t_gw);
        sb_printf(b, "\"received_at\":\"%s\",\"consumed_airtime\":\"%.6fs\",", t_ns,
                  lora_airtime(rx.sf, sr->heartbeat));
        sb_puts(
            b, "\"version_ids\":{\"brand_id\":\"nwave\",\"model_id\":\"nps405\",\"hardware_version\":\"1.0\","
               "\"firmware_version\":\"1.0\",\"band_id\":\"EU_863_870\"},"
               "\"network_ids\":{\"net_id\":\"000013\",\"ns_id\":\"EC656E0000000181\",\"tenant_id\":\"ttn\","
               "\"cluster_id\":\"eu1\",\"cluster_address\":\"eu1.cloud.thethings.network\"}}}");
}

static void chirpstack_uplink(struct city *c, const struct spot *sp, const struct spot_reading *sr,
                              int64_t now, char *topic, struct sbuf *b)
{
        const struct gateway *gw = &gateways[sp->gw];
        const struct facility_def *def = &facility_defs[sp->fac];
        struct lora_rx rx;
        char t_gw[48], t_ns[48], t_as[48], gw_eui[17];
        uint8_t ctx[4];
        int i;

        lora_radio(&c->rng, sp, now, &rx);
        fmt_utc(t_gw, sizeof(t_gw), rx.gw_ns, 9, "Z");
        fmt_utc(t_ns, sizeof(t_ns), rx.ns_ns, 9, "Z");
        fmt_utc(t_as, sizeof(t_as), rx.as_ns, 9, "+00:00");
        for (i = 0; i < 16; i++)
                gw_eui[i] =
                    (char)(gw->eui[i] >= 'A' && gw->eui[i] <= 'F' ? gw->eui[i] - 'A' + 'a' : gw->eui[i]);
        gw_eui[16] = '\0';
        (void)snprintf(topic, TOPIC_MAX, "application/%s/device/%s/event/up", CS_APP_ID, sp->eui);

        sb_puts(b, "{\"deduplicationId\":\"");
        sb_uuid(b, &c->rng);
        sb_printf(b,
                  "\",\"time\":\"%s\",\"deviceInfo\":{\"tenantId\":\"%s\",\"tenantName\":\"%s\","
                  "\"applicationId\":\"%s\",\"applicationName\":\"%s\",\"deviceProfileId\":\"%s\","
                  "\"deviceProfileName\":\"Nwave NPS310\",\"deviceName\":\"%s\",\"devEui\":\"%s\","
                  "\"deviceClassEnabled\":\"CLASS_A\",\"tags\":{\"parking_id\":\"%s\",\"spot_id\":\"%s\"}},",
                  t_as, CS_TENANT_ID, CS_TENANT_NAME, CS_APP_ID, CS_APP_NAME, CS_PROFILE_ID, sp->dev_id,
                  sp->eui, def->id, sp->spot_id);
        sb_printf(b,
                  "\"devAddr\":\"%08x\",\"adr\":true,\"dr\":%d,\"fCnt\":%u,\"fPort\":%d,\"confirmed\":false,"
                  "\"data\":\"",
                  sp->dev_addr, 12 - rx.sf, sp->fcnt, sr->heartbeat ? 2 : 1);
        sb_base64(b, sr->frame, sr->frame_len);
        sb_puts(b, "\",\"object\":");
        sb_spot_object(b, sr, true);
        sb_printf(b,
                  ",\"rxInfo\":[{\"gatewayId\":\"%s\",\"uplinkId\":%u,\"gwTime\":\"%s\",\"nsTime\":\"%s\",",
                  gw_eui, (unsigned)(rng_next(&c->rng) & 0xffff), t_gw, t_ns);
        sb_printf(b, "\"rssi\":%d,\"snr\":%.1f,\"channel\":%d,", rx.rssi, rx.snr, rx.freq_idx);
        sb_printf(b, "\"location\":{\"latitude\":%.5f,\"longitude\":%.5f},", gw->lat, gw->lon);
        sb_puts(b, "\"context\":\"");
        for (i = 0; i < 4; i++)
                ctx[i] = (uint8_t)((rx.gw_ns / 1000) >> (8 * (3 - i)));
        sb_base64(b, ctx, sizeof(ctx));
        sb_printf(b,
                  "\",\"metadata\":{\"region_config_id\":\"eu868\",\"region_common_name\":\"EU868\"},"
                  "\"crcStatus\":\"CRC_OK\"}],\"txInfo\":{\"frequency\":%d,\"modulation\":{\"lora\":"
                  "{\"bandwidth\":125000,\"spreadingFactor\":%d,\"codeRate\":\"CR_4_5\"}}},"
                  "\"regionConfigId\":\"eu868\"}",
                  eu868_freq[rx.freq_idx], rx.sf);
}

static enum msg_fmt gen_spot(struct city *c, struct spot *sp, int64_t now, char *topic, struct sbuf *b)
{
        const struct facility_def *def = &facility_defs[sp->fac];
        struct spot_reading sr;
        struct moment mo;
        double dt = (double)(now - sp->last_visit_ns) / NS_PER_S;
        bool occ;

        moment_at(&mo, now);
        occ = space_step(&c->rng, sp->occ, occupancy_target(def->profile, &mo), follow_rate(def->profile),
                         dt > 0 ? dt : 0);
        memset(&sr, 0, sizeof(sr));
        sr.occ = occ;
        if (occ != sp->occ) {
                int code = compress_duration((now - sp->last_change_ns) / (60 * NS_PER_S), &sr.dur_min,
                                             &sr.dur_err, &sr.dur_overflow);

                sr.frame[0] = (uint8_t)((occ ? 0x80 : 0) | code);
                sr.frame_len = 1;
                sp->occ = occ;
                sp->last_change_ns = now;
        } else {
                /* No change since the last uplink: the sensor sends a heartbeat. */
                sr.heartbeat = true;
                sp->battery_v = fmax(3.2, sp->battery_v - 0.000002);
                sr.battery_v = sp->battery_v;
                sr.temperature =
                    (int)lround(12 + 6 * sin((mo.hour - 9) / 24 * 2 * M_PI) + rng_normal(&c->rng));
                sr.frame[0] = (uint8_t)(occ ? 0x80 : 0);
                sr.frame[1] = (uint8_t)lround((sr.battery_v - 2.0) * 100);
                sr.frame[2] = (uint8_t)(sr.temperature + 40);
                sr.frame[3] = 0;
                sr.frame_len = 4;
        }
        sp->last_visit_ns = now;
        sp->fcnt++;
        if (def->feed == FEED_TTN) {
                ttn_uplink(c, sp, &sr, now, topic, b);
                return FMT_TTN;
        }
        chirpstack_uplink(c, sp, &sr, now, topic, b);
        return FMT_CHIRPSTACK;
}

/* --- gate counters -------------------------------------------------------------------------------- */

static enum msg_fmt gen_counter(struct city *c, struct facility *fa, int64_t now, char *topic, struct sbuf *b)
{
        const struct facility_def *def = fa->def;
        struct moment mo;
        double dt = (double)(now - fa->last_ns) / NS_PER_S, pi;
        char ts[48];
        int i, lv;

        moment_at(&mo, now);
        if (mo.daykey != fa->daykey) { /* counter_reset at local midnight */
                fa->entries = 0;
                fa->exits = 0;
                fa->daykey = mo.daykey;
        }
        pi = occupancy_target(def->profile, &mo);
        for (i = 0; i < def->total && i < MAX_SPACES; i++) {
                bool occ = space_step(&c->rng, fa->space[i], pi, follow_rate(def->profile), dt > 0 ? dt : 0);

                if (occ && !fa->space[i]) {
                        fa->entries++;
                        fa->occupied++;
                } else if (!occ && fa->space[i]) {
                        fa->exits++;
                        fa->occupied--;
                }
                fa->space[i] = occ;
        }
        fa->last_ns = now;
        fmt_utc(ts, sizeof(ts), now, 3, "Z");
        (void)snprintf(topic, TOPIC_MAX, "city/parking/%s/counter", def->id);
        sb_printf(b,
                  "{\"facility\":\"%s\",\"total\":%d,\"free\":%d,\"occupied\":%d,\"entries\":%" PRId64
                  ",\"exits\":%" PRId64 ",\"timestamp\":\"%s\"",
                  def->id, def->total, def->total - fa->occupied, fa->occupied, fa->entries, fa->exits, ts);
        if (def->levels > 0) {
                int per = def->total / def->levels, first = 0;

                sb_puts(b, ",\"levels\":[");
                for (lv = 0; lv < def->levels; lv++) {
                        int n = lv == def->levels - 1 ? def->total - first : per, occ = 0;

                        for (i = first; i < first + n; i++)
                                occ += fa->space[i];
                        sb_printf(b, "%s{\"level\":%d,\"total\":%d,\"free\":%d}", lv ? "," : "", -(lv + 1), n,
                                  n - occ);
                        first += n;
                }
                sb_puts(b, "]");
        }
        sb_puts(b, "}");
        return FMT_FACILITY;
}

/* --- energy meters -------------------------------------------------------------------------------- */

struct meter_sample {
        double p[2]; /* signed W */
        double voltage;
        double pf[2];
        double cloud;
};

static void meter_sample_now(struct city *c, struct meter *m, int64_t now, struct meter_sample *ms)
{
        struct moment mo;
        double sun = sun_sin_elevation(now);
        int ch;

        moment_at(&mo, now);
        ms->cloud = district_cloud(c, m->district, now);
        meter_integrate(m, now, ms->cloud);
        if (mo.daykey != m->daykey) {
                for (ch = 0; ch < m->nch; ch++) {
                        m->yesterday_kwh[ch] = (m->last_report_wh[ch] - m->day_base_wh[ch]) / 1000.0;
                        m->day_base_wh[ch] = m->last_report_wh[ch];
                }
                m->daykey = mo.daykey;
        }
        ms->voltage = 231.0 + 2.5 * rng_normal(&c->rng);
        for (ch = 0; ch < m->nch; ch++) {
                double load = meter_load(m, ch, &mo, sun) * (1.0 + 0.04 * rng_normal(&c->rng));
                double pv = m->role == ROLE_LOAD ? 0 : pv_power(m, sun, ms->cloud);
                double p = load - pv * (1.0 + 0.02 * rng_normal(&c->rng));

                ms->p[ch] = p;
                ms->pf[ch] = clampd(m->pf + 0.02 * rng_normal(&c->rng), 0.5, 1.0);
        }
}

static void sb_tasmota_values(struct sbuf *b, const char *key, const double *v, int n, int decimals)
{
        int i;

        sb_printf(b, ",\"%s\":", key);
        if (n > 1)
                sb_puts(b, "[");
        for (i = 0; i < n; i++) {
                if (i)
                        sb_puts(b, ",");
                sb_printf(b, "%.*f", decimals, v[i]);
        }
        if (n > 1)
                sb_puts(b, "]");
}

static enum msg_fmt gen_tasmota(struct city *c, struct meter *m, int64_t now, char *topic, struct sbuf *b)
{
        struct meter_sample ms;
        double total[2], yday[2], today[2], period[2], power[2], aprt[2], react[2], factor[2], current[2];
        double exp_kwh[2];
        char t_local[32], t_start[32];
        int ch;

        meter_sample_now(c, m, now, &ms);
        fmt_local(t_local, sizeof(t_local), now);
        if (rng_unit(&c->rng) < 0.02) {
                /* Now and then the periodic STATE message, which carries no energy values. */
                int64_t up = (now - (int64_t)m->boot_ns) / NS_PER_S;
                int rssi = rng_int(&c->rng, 40, 95);

                (void)snprintf(topic, TOPIC_MAX, "tele/%s/STATE", m->id);
                sb_printf(b, "{\"Time\":\"%s\",\"Uptime\":\"%" PRId64 "T%02d:%02d:%02d\",", t_local,
                          up / 86400, (int)(up / 3600 % 24), (int)(up / 60 % 60), (int)(up % 60));
                sb_printf(b, "\"UptimeSec\":%" PRId64 ",\"Heap\":%d,\"SleepMode\":\"Dynamic\",\"Sleep\":50,",
                          up, rng_int(&c->rng, 20, 28));
                sb_printf(b, "\"LoadAvg\":%d,\"MqttCount\":%d,", rng_int(&c->rng, 12, 30),
                          rng_int(&c->rng, 1, 4));
                if (m->nch > 1)
                        sb_puts(b, "\"POWER1\":\"ON\",\"POWER2\":\"ON\",");
                else
                        sb_puts(b, "\"POWER\":\"ON\",");
                sb_printf(b,
                          "\"Wifi\":{\"AP\":1,\"SSId\":\"issy-iot\",\"BSSId\":\"30:B5:C2:4E:12:%02X\","
                          "\"Channel\":6,\"Mode\":\"11n\",\"RSSI\":%d,\"Signal\":%d,\"LinkCount\":1,"
                          "\"Downtime\":\"0T00:00:04\"}}",
                          m->district * 16 + 3, rssi, rssi / 2 - 100);
                return FMT_TASMOTA;
        }
        fmt_local(t_start, sizeof(t_start), m->total_start_ns);
        for (ch = 0; ch < m->nch; ch++) {
                double s;

                total[ch] = m->imp_wh[ch] / 1000.0;
                exp_kwh[ch] = m->exp_wh[ch] / 1000.0;
                yday[ch] = m->yesterday_kwh[ch];
                today[ch] = (m->imp_wh[ch] - m->day_base_wh[ch]) / 1000.0;
                period[ch] = round(m->imp_wh[ch] - m->last_report_wh[ch]);
                m->last_report_wh[ch] = m->imp_wh[ch];
                power[ch] = round(ms.p[ch]);
                factor[ch] = ms.pf[ch];
                s = fabs(ms.p[ch]) / ms.pf[ch];
                aprt[ch] = round(s);
                react[ch] = round(sqrt(fmax(0, s * s - ms.p[ch] * ms.p[ch])));
                current[ch] = s / ms.voltage;
        }
        (void)snprintf(topic, TOPIC_MAX, "tele/%s/SENSOR", m->id);
        sb_printf(b, "{\"Time\":\"%s\",\"ENERGY\":{\"TotalStartTime\":\"%s\"", t_local, t_start);
        sb_tasmota_values(b, "Total", total, m->nch, 3);
        if (m->role != ROLE_LOAD)
                sb_tasmota_values(b, "ExportActive", exp_kwh, m->nch, 3);
        sb_tasmota_values(b, "Yesterday", yday, m->nch, 3);
        sb_tasmota_values(b, "Today", today, m->nch, 3);
        sb_tasmota_values(b, "Period", period, m->nch, 0);
        sb_tasmota_values(b, "Power", power, m->nch, 0);
        sb_tasmota_values(b, "ApparentPower", aprt, m->nch, 0);
        sb_tasmota_values(b, "ReactivePower", react, m->nch, 0);
        sb_tasmota_values(b, "Factor", factor, m->nch, 2);
        sb_printf(b, ",\"Voltage\":%.0f", ms.voltage);
        sb_tasmota_values(b, "Current", current, m->nch, 3);
        sb_puts(b, "}}");
        return FMT_TASMOTA;
}

static enum msg_fmt gen_shelly(struct city *c, struct meter *m, int64_t now, char *topic, struct sbuf *b)
{
        struct meter_sample ms;
        int64_t minute = now / (60 * NS_PER_S);
        int ch;

        meter_sample_now(c, m, now, &ms);
        (void)snprintf(topic, TOPIC_MAX, "%s/events/rpc", m->id);
        sb_printf(b, "{\"src\":\"%s\",\"dst\":\"%s/events\",\"method\":\"NotifyStatus\",", m->id, m->id);
        /* ts with two decimals, truncated like the device's own clock. */
        sb_printf(b, "\"params\":{\"ts\":%" PRId64 ".%02d", (int64_t)(now / NS_PER_S),
                  (int)(now % NS_PER_S / (10 * NS_PER_MS)));
        if (m->dev == DEV_SHELLY_PRO3EM) {
                static const double split[3] = {0.41, 0.34, 0.25};
                static const char ph[3] = {'a', 'b', 'c'};
                double tot_i = 0, tot_p = 0, tot_s = 0;
                int k;

                sb_puts(b, ",\"em:0\":{\"id\":0");
                for (k = 0; k < 3; k++) {
                        double v = ms.voltage + 1.5 * rng_normal(&c->rng), p = ms.p[0] * split[k];
                        double pf = clampd(ms.pf[0] + 0.01 * rng_normal(&c->rng), 0.5, 1.0), s = fabs(p) / pf;

                        sb_printf(b,
                                  ",\"%c_current\":%.3f,\"%c_voltage\":%.1f,\"%c_act_power\":%.1f,"
                                  "\"%c_aprt_power\":%.1f,\"%c_pf\":%.2f,\"%c_freq\":%.1f",
                                  ph[k], s / v, ph[k], v, ph[k], p, ph[k], s, ph[k], pf, ph[k],
                                  50.0 + 0.02 * rng_normal(&c->rng));
                        tot_i += s / v;
                        tot_p += p;
                        tot_s += s;
                }
                sb_printf(b,
                          ",\"n_current\":null,\"total_current\":%.3f,\"total_act_power\":%.3f,"
                          "\"total_aprt_power\":%.3f,\"user_calibrated_phase\":[]}",
                          tot_i, tot_p, tot_s);
                if (minute != m->last_emdata_min) {
                        /* emdata comes once a minute, Wh, cumulative. */
                        sb_puts(b, ",\"emdata:0\":{\"id\":0");
                        for (k = 0; k < 3; k++)
                                sb_printf(b, ",\"%c_total_act_energy\":%.2f,\"%c_total_act_ret_energy\":%.2f",
                                          ph[k], m->imp_wh[0] * split[k], ph[k], m->exp_wh[0] * split[k]);
                        sb_printf(b, ",\"total_act\":%.2f,\"total_act_ret\":%.2f}", m->imp_wh[0],
                                  m->exp_wh[0]);
                        m->last_emdata_min = minute;
                }
        } else {
                for (ch = 0; ch < m->nch; ch++) {
                        double p = fmax(0, ms.p[ch]), mwh = p * 1000.0 / 60.0;
                        double s = p / ms.pf[ch], cur = s / ms.voltage;

                        sb_printf(b, ",\"switch:%d\":{\"id\":%d", ch, ch);
                        /* NotifyStatus carries only what changed: sometimes just the energy counter. */
                        if (rng_unit(&c->rng) >= 0.2)
                                sb_printf(b,
                                          ",\"apower\":%.1f,\"voltage\":%.1f,\"current\":%.3f,\"freq\":%.1f,"
                                          "\"pf\":%.2f",
                                          p, ms.voltage, cur, 50.0 + 0.02 * rng_normal(&c->rng), ms.pf[ch]);
                        sb_printf(b, ",\"aenergy\":{\"total\":%.3f,", m->imp_wh[ch]);
                        sb_printf(b, "\"by_minute\":[%.3f,%.3f,%.3f],\"minute_ts\":%" PRId64 "}",
                                  mwh * (1 + 0.02 * rng_normal(&c->rng)),
                                  mwh * (1 + 0.02 * rng_normal(&c->rng)),
                                  mwh * (1 + 0.02 * rng_normal(&c->rng)), minute * 60);
                        if (rng_unit(&c->rng) < 0.1) {
                                double tc = 38 + 10 * p / 3400 + rng_normal(&c->rng);

                                sb_printf(b, ",\"temperature\":{\"tC\":%.1f,\"tF\":%.1f}", tc,
                                          tc * 9 / 5 + 32);
                        }
                        sb_puts(b, "}");
                }
        }
        sb_puts(b, "}}");
        return FMT_SHELLY;
}

static enum msg_fmt gen_meter(struct city *c, struct meter *m, int64_t now, char *topic, struct sbuf *b)
{
        if (m->dev == DEV_TASMOTA || m->dev == DEV_TASMOTA_DUAL)
                return gen_tasmota(c, m, now, topic, b);
        return gen_shelly(c, m, now, topic, b);
}

static bool is_tasmota(const struct meter *m)
{
        return m->dev == DEV_TASMOTA || m->dev == DEV_TASMOTA_DUAL;
}

/* Whether a report at now would carry a new timestamp: Tasmota stamps whole seconds, Shelly ts has two
 * decimals, the facility JSON milliseconds. A repeated stamp is a duplicate observation to a daemon. */
static bool meter_can_report(const struct meter *m, int64_t now)
{
        int64_t res = is_tasmota(m) ? NS_PER_S : 10 * NS_PER_MS;

        return m->last_ns / res != now / res;
}

/* Smooth weighted round robin over the message classes, then round robin within the class. When no
 * counter or meter could report a new timestamp yet (very high rates), a spot sensor reports instead. */
static enum msg_fmt city_next(struct city *c, int64_t now, char *topic, struct sbuf *b)
{
        int i, best = 0, sum = 0, tries;

        for (i = 0; i < _CLASS_MAX; i++) {
                c->credit[i] += class_weight[i];
                sum += class_weight[i];
                if (c->credit[i] > c->credit[best])
                        best = i;
        }
        c->credit[best] -= sum;
        if (best == CLASS_COUNTER) {
                for (tries = 0; tries < c->n_counters; tries++) {
                        struct facility *fa =
                            &c->fac[c->counter_fac[c->cursor[CLASS_COUNTER]++ % c->n_counters]];

                        if (fa->last_ns / NS_PER_MS != now / NS_PER_MS)
                                return gen_counter(c, fa, now, topic, b);
                }
        } else if (best == CLASS_ENERGY) {
                for (tries = 0; tries < c->n_meters; tries++) {
                        struct meter *m = &c->meters[c->cursor[CLASS_ENERGY]++ % c->n_meters];

                        if (meter_can_report(m, now))
                                return gen_meter(c, m, now, topic, b);
                }
        }
        return gen_spot(c, &c->spots[c->spot_order[c->cursor[CLASS_SPOT]++ % c->n_spots]], now, topic, b);
}

/* ------------------------------------------------------------------------------------------------ */
/* Registry files                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

static void csv_field(FILE *f, const char *s, bool last)
{
        if (strpbrk(s, ";\"\r\n")) {
                fputc('"', f);
                for (; *s; s++) {
                        if (*s == '"')
                                fputc('"', f);
                        fputc(*s, f);
                }
                fputc('"', f);
        } else {
                fputs(s, f);
        }
        fputc(last ? '\n' : ';', f);
}

static int mkdir_p(const char *dir)
{
        char path[PATH_MAX];
        size_t i, n = strlen(dir);

        if (n == 0 || n >= sizeof(path))
                return -ENAMETOOLONG;
        memcpy(path, dir, n + 1);
        for (i = 1; i <= n; i++) {
                if (path[i] != '/' && path[i] != '\0')
                        continue;
                path[i] = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (i < n)
                        path[i] = '/';
        }
        return 0;
}

static int write_facilities(FILE *f, const struct city *c)
{
        int i;

        fputs("parking_id;name;total_spaces;lat;lon;city;operator\n", f);
        for (i = 0; i < N_FACILITIES; i++) {
                const struct facility_def *d = c->fac[i].def;
                char num[64];

                csv_field(f, d->id, false);
                csv_field(f, d->name, false);
                (void)snprintf(num, sizeof(num), "%d", d->total);
                csv_field(f, num, false);
                (void)snprintf(num, sizeof(num), "%.6f", d->lat);
                csv_field(f, num, false);
                (void)snprintf(num, sizeof(num), "%.6f", d->lon);
                csv_field(f, num, false);
                csv_field(f, CITY_NAME, false);
                csv_field(f, d->operator_name, true);
        }
        return ferror(f) ? -EIO : 0;
}

static int write_sensors(FILE *f, const struct city *c)
{
        int i, k;

        fputs("sensor_id;kind;parking_id;spot_id;district\n", f);
        for (i = 0; i < c->n_counters; i++) {
                const struct facility_def *d = c->fac[c->counter_fac[i]].def;

                csv_field(f, d->id, false); /* the facility JSON "facility" field */
                csv_field(f, "facility", false);
                csv_field(f, d->id, false);
                csv_field(f, "", false);
                csv_field(f, "", true);
        }
        for (i = 0; i < c->n_spots; i++) {
                const struct spot *sp = &c->spots[i];
                const struct facility_def *d = &facility_defs[sp->fac];

                csv_field(f, d->feed == FEED_TTN ? sp->dev_id : sp->eui, false);
                csv_field(f, "spot", false);
                csv_field(f, d->id, false);
                csv_field(f, sp->spot_id, false);
                csv_field(f, "", true);
        }
        for (i = 0; i < c->n_meters; i++) {
                const struct meter *m = &c->meters[i];
                const char *kind = m->role == ROLE_PV ? "pv" : "meter";

                for (k = 0; k < m->nch; k++) {
                        char id[64];

                        if (m->dev == DEV_TASMOTA)
                                (void)snprintf(id, sizeof(id), "%s", m->id);
                        else if (m->dev == DEV_TASMOTA_DUAL)
                                (void)snprintf(id, sizeof(id), "%s:%d", m->id, k + 1);
                        else
                                (void)snprintf(id, sizeof(id), "%s:%d", m->id, k);
                        csv_field(f, id, false);
                        csv_field(f, kind, false);
                        csv_field(f, "", false);
                        csv_field(f, "", false);
                        csv_field(f, district_ids[m->district], true);
                }
        }
        return ferror(f) ? -EIO : 0;
}

/* Writes DIR/name through a temporary file and rename(), so readers never see half a file. */
static int write_file(const char *dir, const char *name, int (*fill)(FILE *, const struct city *),
                      const struct city *c)
{
        char path[PATH_MAX], tmp[PATH_MAX];
        FILE *f;
        int r;

        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
            snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp))
                return -ENAMETOOLONG;
        f = fopen(tmp, "w");
        if (!f)
                return -errno;
        r = fill(f, c);
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void)unlink(tmp);
        return r;
}

static int run_write_registry(const char *dir)
{
        struct city *c = calloc(1, sizeof(*c));
        int r;

        if (!c) {
                logmsg("out of memory");
                return 1;
        }
        city_build(c);
        r = mkdir_p(dir);
        if (r == 0)
                r = write_file(dir, "facilities.csv", write_facilities, c);
        if (r == 0)
                r = write_file(dir, "sensors.csv", write_sensors, c);
        if (r < 0)
                logmsg("cannot write the registry to '%s': %s", dir, strerror(-r));
        else
                logmsg("wrote %s/facilities.csv (%d facilities) and %s/sensors.csv", dir, N_FACILITIES, dir);
        free(c);
        return r < 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Modes                                                                                            */
/* ------------------------------------------------------------------------------------------------ */

static void city_summary(const struct city *c, const struct engine *e, int64_t sim_ns)
{
        char t[32];
        uint64_t total = 0;
        int i;

        for (i = 0; i < _FMT_MAX; i++)
                total += c->sent[i];
        fmt_local(t, sizeof(t), sim_ns);
        logmsg("sim %s sent %" PRIu64 " (ttn %" PRIu64 " chirpstack %" PRIu64 " facility %" PRIu64
               " tasmota %" PRIu64 " shelly %" PRIu64 ") acked %" PRIu64 " in flight %d reconnects %" PRIu64,
               t, total, c->sent[FMT_TTN], c->sent[FMT_CHIRPSTACK], c->sent[FMT_FACILITY],
               c->sent[FMT_TASMOTA], c->sent[FMT_SHELLY], e->n_acked, e->inflight,
               e->n_connects > 0 ? e->n_connects - 1 : 0);
}

static int city_emit(struct city *c, struct engine *e, int64_t sim_now)
{
        static char payload[PAYLOAD_MAX];
        char topic[TOPIC_MAX];
        struct sbuf b;
        enum msg_fmt fmt;
        bool retain = false;
        int r;

        sb_init(&b, payload, sizeof(payload));
        /* First announce every Tasmota device as online (retained LWT), as real ones do on boot. */
        while (c->lwt_next < c->n_meters && !is_tasmota(&c->meters[c->lwt_next]))
                c->lwt_next++;
        if (c->lwt_next < c->n_meters) {
                (void)snprintf(topic, sizeof(topic), "tele/%s/LWT", c->meters[c->lwt_next].id);
                sb_puts(&b, "Online");
                retain = true;
                fmt = FMT_TASMOTA;
        } else {
                fmt = city_next(c, sim_now, topic, &b);
        }
        if (b.overflow) {
                logmsg("payload for '%s' too large, dropped", topic);
                return -EMSGSIZE;
        }
        r = engine_publish(e, topic, b.p, b.len, retain, 0);
        if (r == 0) {
                c->sent[fmt]++;
                if (retain)
                        c->lwt_next++;
        }
        return r;
}

static int64_t city_start_ns(const struct options *opt, int64_t now_real)
{
        if (opt->start_set)
                return opt->start_ns;
        if (opt->speed > 1.0 && opt->duration > 0) {
                /* Start in the past so that the last simulated timestamp is about "now". */
                return now_real - (int64_t)((opt->speed - 1.0) * opt->duration * NS_PER_S);
        }
        if (opt->speed > 1.0)
                logmsg(
                    "warning: --speed %.3g without --duration or --start: timestamps will run ahead of the "
                    "clock and a daemon will reject them as future_timestamp",
                    opt->speed);
        return now_real;
}

static int run_city(const struct options *opt)
{
        struct city *c = calloc(1, sizeof(*c));
        struct engine *e = calloc(1, sizeof(*e));
        int64_t t0, sim0, next_due, next_summary, end, interval;
        double rate = opt->rate < 0 ? 50 : opt->rate;
        int ret = 1;

        if (!c || !e) {
                logmsg("out of memory");
                goto out_free;
        }
        city_build(c);
        if (engine_init(e, opt) < 0)
                goto out_free;
        /* Simulated time is sim0 + speed * (monotonic - t0): take both clocks at one instant, since any
         * gap is multiplied by the speed. */
        t0 = mono_ns();
        sim0 = city_start_ns(opt, real_ns());
        city_init_state(c, sim0,
                        opt->seed_set ? opt->seed : (uint64_t)real_ns() ^ ((uint64_t)getpid() << 32));
        interval = rate > 0 ? (int64_t)(NS_PER_S / rate) : 0;
        next_due = t0;
        next_summary = t0 + SUMMARY_EVERY_S * NS_PER_S;
        end = opt->duration > 0 ? t0 + (int64_t)(opt->duration * NS_PER_S) : INT64_MAX;
        logmsg("city mode: %d facilities, %d spot sensors, %d gate counters, %d energy devices; %.6g msg/s, "
               "speed %.6g",
               N_FACILITIES, c->n_spots, c->n_counters, c->n_meters, rate, opt->speed);
        while (!stop_requested) {
                int64_t now = mono_ns();
                int wait, burst = 0;

                if (now >= end)
                        break;
                if (e->state == CONN_UP) {
                        if (next_due < now - NS_PER_S)
                                next_due = now; /* do not catch up after a stall */
                        while (burst < 256 && (rate <= 0 || next_due <= now) && engine_ready(e)) {
                                int64_t sim_now = sim0 + (int64_t)((double)(mono_ns() - t0) * opt->speed);

                                if (city_emit(c, e, sim_now) == -EAGAIN)
                                        break;
                                next_due += interval;
                                burst++;
                        }
                } else {
                        next_due = now;
                }
                if (now >= next_summary) {
                        city_summary(c, e, sim0 + (int64_t)((double)(now - t0) * opt->speed));
                        next_summary += SUMMARY_EVERY_S * NS_PER_S;
                }
                if (e->state != CONN_UP || !engine_ready(e))
                        wait = 100;
                else if (rate > 0)
                        wait = wait_ms_until(next_due, mono_ns());
                else
                        wait = 0;
                if (wait > wait_ms_until(next_summary, now) + 1)
                        wait = wait_ms_until(next_summary, now) + 1;
                if (end != INT64_MAX && wait > wait_ms_until(end, now))
                        wait = wait_ms_until(end, now);
                engine_service(e, wait);
        }
        engine_finish(e);
        city_summary(c, e, sim0 + (int64_t)((double)((mono_ns() < end ? mono_ns() : end) - t0) * opt->speed));
        ret = 0;
out_free:
        if (e)
                engine_done(e);
        free(e);
        free(c);
        return ret;
}

/* --- seq ---------------------------------------------------------------------------------------- */

struct seq {
        const struct options *opt;
        int64_t n, start_ms, acked;
        uint8_t *bits;
        char topic[TOPIC_MAX];
};

static bool seq_is_acked(const struct seq *q, int64_t i)
{
        return q->bits[i >> 3] & (1u << (i & 7));
}

static void seq_on_ack(void *ctx, int64_t tag)
{
        struct seq *q = ctx;

        if (tag < 0 || tag >= q->n || seq_is_acked(q, tag))
                return;
        q->bits[tag >> 3] |= (uint8_t)(1u << (tag & 7));
        q->acked++;
}

static int seq_publish(struct seq *q, struct engine *e, int64_t i)
{
        char payload[512], ts[48];
        struct sbuf b;

        fmt_utc(ts, sizeof(ts), (q->start_ms + i * 1000) * NS_PER_MS, 3, "Z");
        sb_init(&b, payload, sizeof(payload));
        sb_puts(&b, "{\"facility\":");
        sb_json_str(&b, q->opt->sensor);
        sb_printf(&b,
                  ",\"total\":1000,\"free\":%" PRId64 ",\"occupied\":%" PRId64 ",\"entries\":%" PRId64
                  ",\"exits\":%" PRId64 ",\"timestamp\":\"%s\"}",
                  1000 - i % 1000, i % 1000, i, i - i % 1000, ts);
        if (b.overflow)
                return -EMSGSIZE;
        return engine_publish(e, q->topic, b.p, b.len, false, i);
}

static int run_seq(const struct options *opt)
{
        struct seq q = {.opt = opt};
        struct engine *e = NULL;
        int64_t redo[WINDOW], t0, deadline, next_due, next_check, next_progress, next_idx = 0;
        int n_redo = 0, redo_pos = 0, ret = 1;
        double rate = opt->rate < 0 ? 0 : opt->rate;
        int64_t interval = rate > 0 ? (int64_t)(NS_PER_S / rate) : 0;

        q.n = opt->count;
        q.start_ms = opt->start_ms_set ? opt->start_ms : real_ns() / NS_PER_S * 1000 - q.n * 1000;
        (void)snprintf(q.topic, sizeof(q.topic), "city/parking/%s/counter", opt->sensor);
        q.bits = calloc((size_t)(q.n / 8 + 1), 1);
        e = calloc(1, sizeof(*e));
        if (!q.bits || !e) {
                logmsg("out of memory");
                goto out_free;
        }
        if (q.n == 0) {
                printf("acked 0\n");
                ret = 0;
                goto out_free;
        }
        if (engine_init(e, opt) < 0)
                goto out_free;
        e->on_ack = seq_on_ack;
        e->ack_ctx = &q;
        e->qos0_replay = true;

        t0 = mono_ns();
        deadline = t0 + (int64_t)(opt->timeout * NS_PER_S);
        next_due = t0;
        next_check = t0 + NS_PER_S;
        next_progress = t0 + SUMMARY_EVERY_S * NS_PER_S;
        while (!stop_requested && q.acked < q.n) {
                int64_t now = mono_ns();
                int wait, burst = 0;

                if (now >= deadline) {
                        logmsg("timeout after %.6g s: %" PRId64 " of %" PRId64 " acknowledged", opt->timeout,
                               q.acked, q.n);
                        break;
                }
                if (e->state == CONN_UP) {
                        if (n_redo == 0 && (e->replay_due || (opt->qos > 0 && now >= next_check))) {
                                n_redo = engine_take_stale(e, e->replay_due, redo, WINDOW);
                                redo_pos = 0;
                                e->replay_due = false;
                                next_check = now + NS_PER_S;
                                if (n_redo > 0)
                                        logmsg("republishing %d unacknowledged message(s)", n_redo);
                        }
                        if (next_due < now - NS_PER_S)
                                next_due = now;
                        while (burst < 256 && (rate <= 0 || next_due <= now) && engine_ready(e)) {
                                int64_t i;
                                int r;

                                if (redo_pos < n_redo) {
                                        i = redo[redo_pos];
                                        if (seq_is_acked(&q, i)) {
                                                redo_pos++;
                                                continue;
                                        }
                                } else if (next_idx < q.n) {
                                        i = next_idx;
                                } else {
                                        break;
                                }
                                r = seq_publish(&q, e, i);
                                if (r == -EAGAIN)
                                        break;
                                if (r < 0) {
                                        logmsg("cannot publish message %" PRId64 ": %s", i, strerror(-r));
                                        goto out_done;
                                }
                                if (redo_pos < n_redo)
                                        redo_pos++;
                                else
                                        next_idx++;
                                next_due += interval;
                                burst++;
                        }
                        if (redo_pos >= n_redo)
                                n_redo = redo_pos = 0;
                }
                if (now >= next_progress) {
                        logmsg("seq: %" PRId64 " of %" PRId64 " acknowledged, %d in flight", q.acked, q.n,
                               e->inflight);
                        next_progress += SUMMARY_EVERY_S * NS_PER_S;
                }
                if (q.acked >= q.n)
                        break;
                if (e->state != CONN_UP || !engine_ready(e) || (next_idx >= q.n && redo_pos >= n_redo))
                        wait = 100;
                else if (rate > 0)
                        wait = wait_ms_until(next_due, mono_ns());
                else
                        wait = 0;
                if (wait > wait_ms_until(deadline, now) + 1)
                        wait = wait_ms_until(deadline, now) + 1;
                engine_service(e, wait);
        }
out_done:
        engine_finish(e);
        printf("acked %" PRId64 "\n", q.acked);
        ret = q.acked == q.n ? 0 : 1;
out_free:
        if (e)
                engine_done(e);
        free(e);
        free(q.bits);
        return ret;
}

/* --- flood -------------------------------------------------------------------------------------- */

struct flood_fac {
        int free;
        int64_t entries, exits;
};

static int run_flood(const struct options *opt)
{
        struct engine *e = calloc(1, sizeof(*e));
        struct flood_fac *fac = calloc((size_t)opt->sensors, sizeof(*fac));
        double rate = opt->rate < 0 ? 1000 : opt->rate;
        double duration = opt->duration > 0 ? opt->duration : 10;
        int64_t t0, end, next_due, interval = rate > 0 ? (int64_t)(NS_PER_S / rate) : 0, k = 0;
        struct rng r = {0};
        uint64_t sent = 0;
        int ret = 1, i;

        if (!e || !fac) {
                logmsg("out of memory");
                goto out_free;
        }
        r.s = opt->seed_set ? opt->seed : (uint64_t)real_ns();
        for (i = 0; i < opt->sensors; i++)
                fac[i].free = rng_int(&r, 0, 500);
        if (engine_init(e, opt) < 0)
                goto out_free;
        t0 = mono_ns();
        end = t0 + (int64_t)(duration * NS_PER_S);
        next_due = t0;
        while (!stop_requested) {
                int64_t now = mono_ns();
                int wait, burst = 0;

                if (now >= end || (opt->count > 0 && (int64_t)sent >= opt->count))
                        break;
                if (e->state == CONN_UP) {
                        if (next_due < now - NS_PER_S)
                                next_due = now;
                        while (burst < 256 && (rate <= 0 || next_due <= now) && engine_ready(e) &&
                               (opt->count <= 0 || (int64_t)sent < opt->count)) {
                                struct flood_fac *f = &fac[k % opt->sensors];
                                char topic[TOPIC_MAX], payload[256], ts[48];
                                int len;

                                if (f->free > 0 && (f->free == 500 || (rng_next(&r) & 1))) {
                                        f->free--;
                                        f->entries++;
                                } else {
                                        f->free++;
                                        f->exits++;
                                }
                                fmt_utc(ts, sizeof(ts), real_ns(), 3, "Z");
                                (void)snprintf(topic, sizeof(topic),
                                               "city/parking/flood-%05" PRId64 "/counter", k % opt->sensors);
                                len = snprintf(
                                    payload, sizeof(payload),
                                    "{\"facility\":\"flood-%05" PRId64 "\",\"total\":500,\"free\":%d,"
                                    "\"occupied\":%d,\"entries\":%" PRId64 ",\"exits\":%" PRId64
                                    ",\"timestamp\":\"%s\"}",
                                    k % opt->sensors, f->free, 500 - f->free, f->entries, f->exits, ts);
                                if (len < 0 || len >= (int)sizeof(payload) ||
                                    engine_publish(e, topic, payload, (size_t)len, false, k) != 0)
                                        break;
                                sent++;
                                k++;
                                next_due += interval;
                                burst++;
                        }
                } else {
                        next_due = now;
                }
                if (e->state != CONN_UP || !engine_ready(e))
                        wait = 100;
                else if (rate > 0)
                        wait = wait_ms_until(next_due, mono_ns());
                else
                        wait = 0;
                if (wait > wait_ms_until(end, now))
                        wait = wait_ms_until(end, now);
                engine_service(e, wait);
        }
        engine_finish(e);
        logmsg("flood: %" PRIu64 " sent, %" PRIu64 " acknowledged in %.3f s", sent, e->n_acked,
               (double)(mono_ns() - t0) / NS_PER_S);
        printf("sent %" PRIu64 "\n", sent);
        ret = 0;
out_free:
        if (e)
                engine_done(e);
        free(e);
        free(fac);
        return ret;
}

/* ------------------------------------------------------------------------------------------------ */
/* Command line                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

static const char usage_text[] =
    "Usage: citypulse-sim [OPTION]...\n"
    "Publishes simulated parking and energy sensor traffic to an MQTT broker, for citypulse.\n"
    "\n"
    "Connection (all modes):\n"
    "  -H, --host HOST         broker host (default 127.0.0.1)\n"
    "  -p, --port PORT         broker port (default 1883)\n"
    "  -q, --qos 0|1           QoS of every publish (default 1)\n"
    "  -i, --id ID             MQTT client id (default citypulse-sim-<pid>)\n"
    "  -k, --keepalive SECS    MQTT keepalive (default 30)\n"
    "      --clean             clean session (default: persistent session at QoS 1, clean at QoS 0)\n"
    "  The connection is re-established after a broker restart, with a backoff of 100 ms doubling to 2 s;\n"
    "  at most 1000 messages are in flight (published, not yet acknowledged).\n"
    "\n"
    "  -m, --mode city|seq|flood   what to publish (default city)\n"
    "      --write-registry DIR    write DIR/facilities.csv and DIR/sensors.csv of the demo town and exit\n"
    "  -h, --help                  this text\n"
    "\n"
    "City mode: a demo town modelled on Issy-les-Moulineaux. 10 car parks; 4 of them have 500 spot\n"
    "sensors in all (TTN v3 uplinks on v3/issy-parking@ttn/devices/<device_id>/up and ChirpStack v4\n"
    "uplinks on application/<app-uuid>/device/<devEui>/event/up), the other 6 gate counters publishing\n"
    "the facility JSON on city/parking/<facility>/counter; 48 energy devices (50 metering channels) in\n"
    "4 districts: Tasmota tele/<topic>/SENSOR (also a retained LWT at start and now and then STATE)\n"
    "and Shelly Gen2 <id>/events/rpc NotifyStatus. Daily occupancy and load curves and the sun drive\n"
    "the values; timestamps are simulated time. A spot sensor sends parking_status (fPort 1) when its\n"
    "state changed since its last uplink, else a heartbeat (fPort 2); both carry occupied. PV is signed\n"
    "as + import, - export: net meters of buildings with PV and PV producer meters report negative Power\n"
    "and ExportActive. A device never reports twice with the same timestamp (Tasmota stamps seconds);\n"
    "at very high rates the surplus goes to spot sensors.\n"
    "Sensor ids (as in sensors.csv): TTN device_id, ChirpStack devEui (lower-case hex), the facility\n"
    "JSON 'facility' (= parking_id), the Tasmota topic (a dual-channel device: <topic>:1, <topic>:2),\n"
    "Shelly Gen2 <src>:<N> per channel.\n"
    "      --rate N            messages per second over all formats (default 50; 0 = as fast as possible)\n"
    "      --speed K           simulated time runs K times faster than real time (default 1)\n"
    "      --duration S        stop after S seconds (default: run until SIGINT/SIGTERM)\n"
    "      --start TIME        simulated start, YYYY-MM-DDTHH:MM:SSZ or unix seconds (default: now; with\n"
    "                          --speed K > 1 and --duration S: now - (K-1)*S, so timestamps end near now)\n"
    "      --seed N            seed of the run's randomness (the town's ids never change)\n"
    "  A summary line goes to stderr every 10 s.\n"
    "\n"
    "Seq mode (durability tests): N facility-JSON messages for one facility on\n"
    "city/parking/<ID>/counter; message i has entries=i, exits=i-(i%1000), total=1000,\n"
    "free=1000-(i%1000), occupied=i%1000, timestamp=T+i*1000 ms (RFC 3339, ms, Z). Finishes when every\n"
    "message is acknowledged (PUBACK at QoS 1, written at QoS 0), republishing across reconnects.\n"
    "      --sensor ID         facility id (required)\n"
    "      --count N           number of messages (required)\n"
    "      --start-ms T        timestamp of message 0, ms since the epoch (default: now rounded down to\n"
    "                          the second, minus N seconds)\n"
    "      --rate N            messages per second (default 0 = as fast as the window allows)\n"
    "      --timeout S         give up after S seconds (default 120)\n"
    "  Prints one line 'acked K' to stdout, also on timeout or SIGINT/SIGTERM; exit status 0 when K = N,\n"
    "  else 1.\n"
    "\n"
    "Flood mode (benchmarks): facility-JSON messages of about 130 bytes over K facilities\n"
    "flood-00000 ... on city/parking/flood-NNNNN/counter.\n"
    "      --rate N            messages per second (default 1000; 0 = as fast as possible)\n"
    "      --duration S        seconds (default 10)\n"
    "      --sensors K         number of facility ids (default 100)\n"
    "      --count N           stop after N messages (default: run for --duration)\n"
    "  Prints one line 'sent N' to stdout.\n"
    "\n"
    "SIGINT/SIGTERM stop cleanly. Exit status: 0 success, 1 failure, 2 bad command line.\n";

enum {
        OPT_CLEAN = 256,
        OPT_RATE,
        OPT_SPEED,
        OPT_DURATION,
        OPT_SENSOR,
        OPT_COUNT,
        OPT_START_MS,
        OPT_TIMEOUT,
        OPT_SENSORS,
        OPT_WRITE_REGISTRY,
        OPT_START,
        OPT_SEED,
};

static const struct option long_opts[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"qos", required_argument, NULL, 'q'},
    {"id", required_argument, NULL, 'i'},
    {"keepalive", required_argument, NULL, 'k'},
    {"mode", required_argument, NULL, 'm'},
    {"help", no_argument, NULL, 'h'},
    {"clean", no_argument, NULL, OPT_CLEAN},
    {"rate", required_argument, NULL, OPT_RATE},
    {"speed", required_argument, NULL, OPT_SPEED},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"sensor", required_argument, NULL, OPT_SENSOR},
    {"count", required_argument, NULL, OPT_COUNT},
    {"start-ms", required_argument, NULL, OPT_START_MS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"sensors", required_argument, NULL, OPT_SENSORS},
    {"write-registry", required_argument, NULL, OPT_WRITE_REGISTRY},
    {"start", required_argument, NULL, OPT_START},
    {"seed", required_argument, NULL, OPT_SEED},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...) SIM_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "citypulse-sim: %s\nTry 'citypulse-sim --help' for more information.\n", msg);
        return 2;
}

static int bad_value(const char *option, const char *value, const char *expected)
{
        return usage_error("invalid value '%s' for option %s (expected %s)", value, option, expected);
}

/* Returns 0, or 2 after printing a message naming the offending option; *done is set for --help. */
static int parse_args(int argc, char **argv, struct options *o, bool *done)
{
        unsigned set_city = 0, set_seq = 0, set_flood = 0, set_dur = 0, set_count = 0;
        int c;
        int64_t v;

        memset(o, 0, sizeof(*o));
        o->host = "127.0.0.1";
        o->port = 1883;
        o->qos = 1;
        o->keepalive = 30;
        o->mode = MODE_CITY;
        o->rate = -1;
        o->speed = 1;
        o->duration = -1;
        o->count = -1;
        o->timeout = 120;
        o->sensors = 100;
        *done = false;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":H:p:q:i:k:m:h", long_opts, NULL)) != -1) {
                switch (c) {
                case 'H':
                        if (optarg[0] == '\0')
                                return bad_value("--host", optarg, "a host name or address");
                        o->host = optarg;
                        break;
                case 'p':
                        if (parse_int64(optarg, 1, 65535, &v) < 0)
                                return bad_value("--port", optarg, "an integer 1..65535");
                        o->port = (int)v;
                        break;
                case 'q':
                        if (parse_int64(optarg, 0, 1, &v) < 0)
                                return bad_value("--qos", optarg, "0 or 1");
                        o->qos = (int)v;
                        break;
                case 'i':
                        if (optarg[0] == '\0' || strlen(optarg) > 65535 ||
                            mosquitto_validate_utf8(optarg, (int)strlen(optarg)) != MOSQ_ERR_SUCCESS)
                                return bad_value("--id", optarg, "a non-empty UTF-8 client id");
                        o->client_id = optarg;
                        break;
                case 'k':
                        if (parse_int64(optarg, 5, 65535, &v) < 0)
                                return bad_value("--keepalive", optarg, "seconds, 5..65535");
                        o->keepalive = (int)v;
                        break;
                case 'm':
                        if (strcmp(optarg, "city") == 0)
                                o->mode = MODE_CITY;
                        else if (strcmp(optarg, "seq") == 0)
                                o->mode = MODE_SEQ;
                        else if (strcmp(optarg, "flood") == 0)
                                o->mode = MODE_FLOOD;
                        else
                                return bad_value("--mode", optarg, "city, seq or flood");
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        *done = true;
                        return 0;
                case OPT_CLEAN:
                        o->clean = true;
                        break;
                case OPT_RATE:
                        if (parse_double(optarg, 0, 1e7, &o->rate) < 0)
                                return bad_value("--rate", optarg, "messages per second, 0..10000000");
                        break;
                case OPT_SPEED:
                        if (parse_double(optarg, 1e-3, 1e6, &o->speed) < 0)
                                return bad_value("--speed", optarg, "a factor, 0.001..1000000");
                        set_city |= 1;
                        break;
                case OPT_DURATION:
                        if (parse_double(optarg, 0.001, 1e9, &o->duration) < 0)
                                return bad_value("--duration", optarg, "seconds > 0");
                        set_dur = 1;
                        break;
                case OPT_SENSOR:
                        if (optarg[0] == '\0' || strpbrk(optarg, "/+#") || strlen(optarg) > 200 ||
                            mosquitto_validate_utf8(optarg, (int)strlen(optarg)) != MOSQ_ERR_SUCCESS)
                                return bad_value("--sensor", optarg, "a facility id without '/', '+' or '#'");
                        o->sensor = optarg;
                        set_seq |= 1;
                        break;
                case OPT_COUNT:
                        if (parse_int64(optarg, 0, 1000000000, &o->count) < 0)
                                return bad_value("--count", optarg, "an integer 0..1000000000");
                        set_count = 1;
                        break;
                case OPT_START_MS:
                        if (parse_int64(optarg, 0, 253402300799999LL, &o->start_ms) < 0)
                                return bad_value("--start-ms", optarg, "milliseconds since the epoch");
                        o->start_ms_set = true;
                        set_seq |= 1;
                        break;
                case OPT_TIMEOUT:
                        if (parse_double(optarg, 0.001, 1e9, &o->timeout) < 0)
                                return bad_value("--timeout", optarg, "seconds > 0");
                        set_seq |= 1;
                        break;
                case OPT_SENSORS:
                        if (parse_int64(optarg, 1, 100000, &o->sensors) < 0)
                                return bad_value("--sensors", optarg, "an integer 1..100000");
                        set_flood |= 1;
                        break;
                case OPT_WRITE_REGISTRY:
                        if (optarg[0] == '\0')
                                return bad_value("--write-registry", optarg, "a directory");
                        o->registry_dir = optarg;
                        break;
                case OPT_START:
                        if (parse_time(optarg, &o->start_ns) < 0)
                                return bad_value("--start", optarg, "YYYY-MM-DDTHH:MM:SSZ or unix seconds");
                        o->start_set = true;
                        set_city |= 1;
                        break;
                case OPT_SEED:
                        if (parse_int64(optarg, 0, INT64_MAX, &v) < 0)
                                return bad_value("--seed", optarg, "a non-negative integer");
                        o->seed = (uint64_t)v;
                        o->seed_set = true;
                        break;
                case ':':
                        if (strncmp(argv[optind - 1], "--", 2) == 0)
                                return usage_error("option '%s' requires an argument", argv[optind - 1]);
                        return usage_error("option '-%c' requires an argument", optopt);
                case '?':
                default:
                        if (strncmp(argv[optind - 1], "--", 2) == 0) {
                                const char *arg = argv[optind - 1];
                                int len = (int)strcspn(arg, "=");

                                if (arg[len] == '=' && optopt != 0)
                                        return usage_error("option '%.*s' takes no argument", len, arg);
                                return usage_error("unknown option '%.*s'", len, arg);
                        }
                        return usage_error("unknown option '-%c'", optopt);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (o->registry_dir)
                return 0;
        if (set_city && o->mode != MODE_CITY)
                return usage_error("options --speed and --start are only valid with --mode city");
        if (set_seq && o->mode != MODE_SEQ)
                return usage_error("options --sensor, --start-ms and --timeout are only valid with --mode seq");
        if (set_count && o->mode != MODE_SEQ && o->mode != MODE_FLOOD)
                return usage_error("option --count is only valid with --mode seq or flood");
        if (set_flood && o->mode != MODE_FLOOD)
                return usage_error("option --sensors is only valid with --mode flood");
        if (set_dur && o->mode == MODE_SEQ)
                return usage_error("option --duration is not valid with --mode seq (use --timeout)");
        if (o->mode == MODE_SEQ && !o->sensor)
                return usage_error("--mode seq requires option --sensor");
        if (o->mode == MODE_SEQ && o->count < 0)
                return usage_error("--mode seq requires option --count");
        if (!o->client_id) {
                (void)snprintf(o->client_id_buf, sizeof(o->client_id_buf), "citypulse-sim-%ld",
                               (long)getpid());
                o->client_id = o->client_id_buf;
        }
        if (o->qos == 0)
                o->clean = true;
        return 0;
}

static void on_signal(int sig)
{
        (void)sig;
        stop_requested = 1;
}

static void install_signals(void)
{
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; /* no SA_RESTART: blocking calls return early so the loop sees the flag */
        (void)sigaction(SIGINT, &sa, NULL);
        (void)sigaction(SIGTERM, &sa, NULL);
        sa.sa_handler = SIG_IGN;
        (void)sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
        struct options opt;
        bool done;
        int r;

        r = parse_args(argc, argv, &opt, &done);
        if (r != 0 || done)
                return r;
        /* Tasmota prints local time without an offset; the simulator owns its process, so TZ is fine. */
        (void)setenv("TZ", "Europe/Paris", 1);
        tzset();
        if (opt.registry_dir)
                return run_write_registry(opt.registry_dir);

        install_signals();
        setvbuf(stdout, NULL, _IOLBF, 0);
        mosquitto_lib_init();
        switch (opt.mode) {
        case MODE_SEQ:
                r = run_seq(&opt);
                break;
        case MODE_FLOOD:
                r = run_flood(&opt);
                break;
        case MODE_CITY:
        default:
                r = run_city(&opt);
                break;
        }
        mosquitto_lib_cleanup();
        return r;
}
