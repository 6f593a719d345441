/* config.c - table-driven parser for citypulse.conf. Every key, its type, default and bounds live in
 * one table (Redis static_configs[], nginx offsetof rows); defaults go through the same parser as the
 * file, so a default can never be a value the file could not hold. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mosquitto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "citypulse/cp_common.h"
#include "log.h"
#include "netaddr.h"

enum conf_type {
        T_STR,
        T_INT,
        T_BOOL,
        T_DURATION,
        T_SIZE,
        T_LEVEL,
};

#define F_RESTART 1 /* a change needs a restart; reload warns and keeps the old value */

struct conf_key {
        const char *key;
        enum conf_type type;
        size_t off;
        const char *def; /* NULL: unset */
        int64_t min, max;
        unsigned flags;
};

#define O(f) offsetof(struct cp_config, f)
#define DAY  (86400LL * 1000)

static const struct conf_key schema[] = {
        {"mqtt.host", T_STR, O(mqtt_host), "127.0.0.1", 0, 0, 0},
        {"mqtt.port", T_INT, O(mqtt_port), "1883", 1, 65535, 0},
        {"mqtt.client_id", T_STR, O(mqtt_client_id), NULL, 0, 0, F_RESTART},
        {"mqtt.qos", T_INT, O(mqtt_qos), "1", 0, 2, 0},
        {"mqtt.clean_session", T_BOOL, O(mqtt_clean_session), "no", 0, 0, F_RESTART},
        {"mqtt.keepalive", T_DURATION, O(mqtt_keepalive_ms), "30s", 5000, 65535000, 0},
        {"mqtt.username", T_STR, O(mqtt_username), NULL, 0, 0, 0},
        {"mqtt.password_file", T_STR, O(mqtt_password_file), NULL, 0, 0, 0},
        {"mqtt.tls.cafile", T_STR, O(mqtt_tls_cafile), NULL, 0, 0, 0},
        {"mqtt.tls.certfile", T_STR, O(mqtt_tls_certfile), NULL, 0, 0, 0},
        {"mqtt.tls.keyfile", T_STR, O(mqtt_tls_keyfile), NULL, 0, 0, 0},
        {"mqtt.shared_group", T_STR, O(mqtt_shared_group), NULL, 0, 0, F_RESTART},
        {"mqtt.reconnect_max", T_DURATION, O(mqtt_reconnect_max_ms), "30s", 1000, 3600000, 0},
        {"mqtt.max_payload", T_SIZE, O(mqtt_max_payload), "256k", 64, 256LL << 20, 0},
        {"http.admin_token_file", T_STR, O(http_admin_token_file), NULL, 0, 0, 0},
        {"http.ttl", T_DURATION, O(http_ttl_ms), "10s", 0, 3600000, 0},
        {"http.max_connections", T_INT, O(http_max_connections), "4096", 16, 1000000, F_RESTART},
        {"data_dir", T_STR, O(data_dir), "/var/lib/citypulse", 0, 0, F_RESTART},
        {"registry.facilities", T_STR, O(registry_facilities), NULL, 0, 0, 0},
        {"registry.sensors", T_STR, O(registry_sensors), NULL, 0, 0, 0},
        {"registry.max_unregistered", T_INT, O(registry_max_unregistered), "100000", 0, 100000000, 0},
        {"live.stale_after", T_DURATION, O(live_stale_after_ms), "5m", 1000, 30 * DAY, 0},
        {"live.full_threshold", T_INT, O(live_full_threshold), "0", 0, 1000000, 0},
        {"agg.timezone", T_STR, O(agg_timezone), "Europe/Paris", 0, 0, F_RESTART},
        {"agg.allowed_lateness", T_DURATION, O(agg_allowed_lateness_ms), "2d", 0, 366 * DAY, F_RESTART},
        {"agg.max_future_skew", T_DURATION, O(agg_max_future_skew_ms), "5m", 0, 366 * DAY, 0},
        {"store.retention.readings", T_DURATION, O(store_retention_readings_ms), "30d", 3600000, 36600 * DAY, 0},
        {"store.retention.rejects", T_DURATION, O(store_retention_rejects_ms), "7d", 3600000, 36600 * DAY, 0},
        {"store.retention.buckets_1m", T_DURATION, O(store_retention_buckets_ms[0]), "7d", 3600000, 36600 * DAY, F_RESTART},
        {"store.retention.buckets_15m", T_DURATION, O(store_retention_buckets_ms[1]), "400d", 3600000, 36600 * DAY, F_RESTART},
        {"store.retention.buckets_hourly", T_DURATION, O(store_retention_buckets_ms[2]), "3660d", 3600000, 36600 * DAY, F_RESTART},
        {"store.retention.buckets_daily", T_DURATION, O(store_retention_buckets_ms[3]), "36600d", 3600000, 36600 * DAY, F_RESTART},
        {"rejects.max_payload", T_SIZE, O(rejects_max_payload), "4k", 0, 1LL << 20, 0},
        {"rrd.cached_address", T_STR, O(rrd_cached_address), NULL, 0, 0, F_RESTART},
        {"rrd.step", T_DURATION, O(rrd_step_ms), "60s", 1000, 3600000, F_RESTART},
        {"publish.prefix", T_STR, O(publish_prefix), "citypulse", 0, 0, F_RESTART},
        {"ods_push.url", T_STR, O(ods_push_url), NULL, 0, 0, 0},
        {"ods_push.pushkey_file", T_STR, O(ods_push_pushkey_file), NULL, 0, 0, 0},
        {"log.level", T_LEVEL, O(log_level), "info", 0, 0, 0},
        {"log.summary_interval", T_DURATION, O(log_summary_interval_ms), "1m", 1000, 86400000, F_RESTART},
};

/* Keys that are not scalar rows of the table, for the documentation test. */
static const char *const special_keys[] = {"route", "http.listen", "driver.<name>.<key>"};
static const char *const special_defaults[] = {NULL, "127.0.0.1:8080", NULL};

size_t cp_config_schema_size(void)
{
        return CP_ARRAY_LEN(schema) + CP_ARRAY_LEN(special_keys);
}

const char *cp_config_schema_key(size_t i)
{
        if (i < CP_ARRAY_LEN(schema))
                return schema[i].key;
        i -= CP_ARRAY_LEN(schema);
        return i < CP_ARRAY_LEN(special_keys) ? special_keys[i] : NULL;
}

const char *cp_config_schema_default(size_t i)
{
        if (i < CP_ARRAY_LEN(schema))
                return schema[i].def;
        i -= CP_ARRAY_LEN(schema);
        return i < CP_ARRAY_LEN(special_defaults) ? special_defaults[i] : NULL;
}

void cp_config_error(struct cp_config_errors *errs, const char *file, int line, const char *fmt, ...)
{
        char msg[768], full[1024];
        va_list ap;
        char **v;

        if (!errs)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (line > 0)
                snprintf(full, sizeof(full), "%s:%d: %s", file, line, msg);
        else
                snprintf(full, sizeof(full), "%s: %s", file, msg);
        v = realloc(errs->msg, (errs->n + 1) * sizeof(*v));
        if (!v)
                return;
        errs->msg = v;
        errs->msg[errs->n] = strdup(full);
        if (errs->msg[errs->n])
                errs->n++;
}

void cp_config_errors_done(struct cp_config_errors *errs)
{
        for (size_t i = 0; i < errs->n; i++)
                free(errs->msg[i]);
        free(errs->msg);
        errs->msg = NULL;
        errs->n = 0;
}

/* strtoll with every check atoi skips: empty, trailing garbage, overflow. */
static int parse_int(const char *s, int64_t *ret)
{
        char *end;
        long long v;

        if (!*s || isspace((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (end == s || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* A number followed by a unit from `units`; multiplies without overflow. */
struct unit {
        const char *suffix;
        int64_t mul;
};

static int parse_with_units(const char *s, const struct unit *units, size_t n_units, bool unit_required,
                            int64_t *ret)
{
        const char *p = s;
        int64_t v = 0;

        if (!isdigit((unsigned char)*p))
                return -EINVAL;
        while (isdigit((unsigned char)*p)) {
                if (v > (INT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (*p++ - '0');
        }
        if (!*p) {
                if (unit_required)
                        return -EINVAL;
                *ret = v;
                return 0;
        }
        for (size_t i = 0; i < n_units; i++) {
                if (strcmp(p, units[i].suffix) == 0) {
                        if (v > INT64_MAX / units[i].mul)
                                return -ERANGE;
                        *ret = v * units[i].mul;
                        return 0;
                }
        }
        return -EINVAL;
}

int cp_parse_duration_ms(const char *s, int64_t *ret)
{
        static const struct unit u[] = {
                {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 7 * 86400000LL},
        };
        return parse_with_units(s, u, CP_ARRAY_LEN(u), true, ret);
}

int cp_parse_size(const char *s, int64_t *ret)
{
        static const struct unit u[] = {
                {"k", 1024}, {"K", 1024}, {"m", 1 << 20}, {"M", 1 << 20}, {"g", 1 << 30}, {"G", 1 << 30},
        };
        return parse_with_units(s, u, CP_ARRAY_LEN(u), false, ret);
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};

        for (size_t i = 0; i < CP_ARRAY_LEN(yes); i++) {
                if (strcmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Sets one table row from its text. On error writes the reason into why. */
static int set_value(struct cp_config *c, const struct conf_key *k, const char *val, char *why, size_t whylen)
{
        void *field = (char *)c + k->off;
        int64_t v = 0;
        bool b;
        int r;

        switch (k->type) {
        case T_STR: {
                char *dup = strdup(val);
                if (!dup)
                        return -ENOMEM;
                free(*(char **)field);
                *(char **)field = dup;
                return 0;
        }
        case T_BOOL:
                if (parse_bool(val, &b) < 0) {
                        snprintf(why, whylen, "expected yes or no");
                        return -EINVAL;
                }
                *(bool *)field = b;
                return 0;
        case T_LEVEL:
                r = cp_log_level_parse(val);
                if (r < 0) {
                        snprintf(why, whylen, "expected one of err warning notice info debug");
                        return -EINVAL;
                }
                *(int64_t *)field = r;
                return 0;
        case T_INT:
                r = parse_int(val, &v);
                if (r < 0) {
                        snprintf(why, whylen, "expected an integer");
                        return r;
                }
                break;
        case T_DURATION:
                r = cp_parse_duration_ms(val, &v);
                if (r < 0) {
                        snprintf(why, whylen, "expected a duration such as 500ms, 30s, 5m, 2h or 7d");
                        return r;
                }
                break;
        case T_SIZE:
                r = cp_parse_size(val, &v);
                if (r < 0) {
                        snprintf(why, whylen, "expected a size such as 512, 64k or 16m");
                        return r;
                }
                break;
        }
        if (v < k->min || v > k->max) {
                if (k->type == T_DURATION)
                        snprintf(why, whylen, "out of range %lldms..%lldms", (long long)k->min, (long long)k->max);
                else
                        snprintf(why, whylen, "out of range %lld..%lld", (long long)k->min, (long long)k->max);
                return -ERANGE;
        }
        *(int64_t *)field = v;
        return 0;
}

static const struct conf_key *find_key(const char *key)
{
        for (size_t i = 0; i < CP_ARRAY_LEN(schema); i++)
                if (strcmp(schema[i].key, key) == 0)
                        return &schema[i];
        return NULL;
}

static int apply_defaults(struct cp_config *c)
{
        char why[128];
        char host[64];
        char id[128];

        for (size_t i = 0; i < CP_ARRAY_LEN(schema); i++) {
                if (!schema[i].def)
                        continue;
                /* A default that does not parse is a programming error; the unit test proves it cannot. */
                if (set_value(c, &schema[i], schema[i].def, why, sizeof(why)) < 0)
                        return -EINVAL;
        }
        if (gethostname(host, sizeof(host)) < 0 || !*host)
                snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(id, sizeof(id), "citypulse-%s", host);
        c->mqtt_client_id = strdup(id);
        return c->mqtt_client_id ? 0 : -ENOMEM;
}

struct cp_config *cp_config_new_default(void)
{
        struct cp_config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        if (apply_defaults(c) < 0) {
                cp_config_free(c);
                return NULL;
        }
        return c;
}

void cp_config_free(struct cp_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < CP_ARRAY_LEN(schema); i++)
                if (schema[i].type == T_STR)
                        free(*(char **)((char *)c + schema[i].off));
        for (size_t i = 0; i < c->n_routes; i++) {
                free(c->routes[i].filter);
                free(c->routes[i].driver);
        }
        free(c->routes);
        for (size_t i = 0; i < c->n_http_listen; i++)
                free(c->http_listen[i]);
        free(c->http_listen);
        for (size_t i = 0; i < c->n_driver_kv; i++) {
                free(c->driver_kv[i].driver);
                free((char *)(uintptr_t)c->driver_kv[i].kv.key);
                free((char *)(uintptr_t)c->driver_kv[i].kv.value);
        }
        free(c->driver_kv);
        free(c->file);
        free(c);
}

/* Splits off the next whitespace-separated token; returns NULL at the end. */
static char *next_token(char **p)
{
        char *s = *p, *start;

        while (*s == ' ' || *s == '\t')
                s++;
        if (!*s)
                return NULL;
        start = s;
        while (*s && *s != ' ' && *s != '\t')
                s++;
        if (*s)
                *s++ = '\0';
        *p = s;
        return start;
}

static bool valid_driver_name(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
                        return false;
        return true;
}

static int add_route(struct cp_config *c, const char *filter, const char *driver, int line)
{
        struct cp_route *v = realloc(c->routes, (c->n_routes + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        c->routes = v;
        v[c->n_routes].filter = strdup(filter);
        v[c->n_routes].driver = strdup(driver);
        v[c->n_routes].line = line;
        c->n_routes++;
        if (!v[c->n_routes - 1].filter || !v[c->n_routes - 1].driver)
                return -ENOMEM;
        return 0;
}

static int add_listen(struct cp_config *c, const char *addr)
{
        char **v = realloc(c->http_listen, (c->n_http_listen + 1) * sizeof(*v));

        if (!v)
                return -ENOMEM;
        c->http_listen = v;
        v[c->n_http_listen] = strdup(addr);
        if (!v[c->n_http_listen])
                return -ENOMEM;
        c->n_http_listen++;
        return 0;
}

static int add_driver_kv(struct cp_config *c, const char *driver, const char *key, const char *val, int line)
{
        struct cp_driver_kv *v = realloc(c->driver_kv, (c->n_driver_kv + 1) * sizeof(*v));
        struct cp_driver_kv *e;

        if (!v)
                return -ENOMEM;
        c->driver_kv = v;
        e = &v[c->n_driver_kv++];
        e->driver = strdup(driver);
        e->kv.key = strdup(key);
        e->kv.value = strdup(val);
        e->line = line;
        if (!e->driver || !e->kv.key || !e->kv.value)
                return -ENOMEM;
        return 0;
}

/* One "key value" line. `seen` marks scalar rows already set, to refuse duplicates. */
static void parse_line(struct cp_config *c, const char *name, int line, char *text, int *seen,
                       bool (*known_driver)(const char *), struct cp_config_errors *errs)
{
        char *p = text, *key, *val, *extra;
        const struct conf_key *k;
        char why[160];

        key = next_token(&p);
        if (!key)
                return;
        if (strcmp(key, "route") == 0) {
                char *filter = next_token(&p), *driver = next_token(&p);
                if (!filter || !driver) {
                        cp_config_error(errs, name, line, "route: expected 'route <topic-filter> <driver>'");
                        return;
                }
                if ((extra = next_token(&p))) {
                        cp_config_error(errs, name, line, "route: unexpected '%s' after the driver name", extra);
                        return;
                }
                if (mosquitto_sub_topic_check(filter) != MOSQ_ERR_SUCCESS) {
                        cp_config_error(errs, name, line, "route: '%s' is not a valid MQTT topic filter", filter);
                        return;
                }
                if (known_driver && !known_driver(driver)) {
                        cp_config_error(errs, name, line, "route: unknown driver '%s'", driver);
                        return;
                }
                for (size_t i = 0; i < c->n_routes; i++)
                        if (strcmp(c->routes[i].filter, filter) == 0) {
                                cp_config_error(errs, name, line, "route: filter '%s' already routed at line %d",
                                                filter, c->routes[i].line);
                                return;
                        }
                if (add_route(c, filter, driver, line) < 0)
                        cp_config_error(errs, name, line, "out of memory");
                return;
        }
        val = next_token(&p);
        if (!val) {
                cp_config_error(errs, name, line, "%s: missing value", key);
                return;
        }
        if ((extra = next_token(&p))) {
                cp_config_error(errs, name, line, "%s: unexpected '%s' after the value", key, extra);
                return;
        }
        if (strcmp(key, "http.listen") == 0) {
                struct cp_netaddr a;
                if (cp_netaddr_parse(val, &a) < 0) {
                        cp_config_error(errs, name, line,
                                        "http.listen: '%s' is not host:port (IPv4, [IPv6] or localhost, port 1-65535)",
                                        val);
                        return;
                }
                if (add_listen(c, val) < 0)
                        cp_config_error(errs, name, line, "out of memory");
                return;
        }
        if (strncmp(key, "driver.", 7) == 0) {
                char *drv = key + 7, *dot = strchr(drv, '.');
                if (!dot || dot == drv || !dot[1]) {
                        cp_config_error(errs, name, line, "%s: expected driver.<name>.<key>", key);
                        return;
                }
                *dot = '\0';
                if (!valid_driver_name(drv) || (known_driver && !known_driver(drv))) {
                        cp_config_error(errs, name, line, "driver.%s.%s: unknown driver '%s'", drv, dot + 1, drv);
                        return;
                }
                for (size_t i = 0; i < c->n_driver_kv; i++)
                        if (strcmp(c->driver_kv[i].driver, drv) == 0 && strcmp(c->driver_kv[i].kv.key, dot + 1) == 0) {
                                cp_config_error(errs, name, line, "driver.%s.%s: duplicate key, first set at line %d",
                                                drv, dot + 1, c->driver_kv[i].line);
                                return;
                        }
                if (add_driver_kv(c, drv, dot + 1, val, line) < 0)
                        cp_config_error(errs, name, line, "out of memory");
                return;
        }
        k = find_key(key);
        if (!k) {
                cp_config_error(errs, name, line, "unknown key '%s'", key);
                return;
        }
        if (seen[k - schema]) {
                cp_config_error(errs, name, line, "%s: duplicate key, first set at line %d", key, seen[k - schema]);
                return;
        }
        seen[k - schema] = line;
        why[0] = '\0';
        if (set_value(c, k, val, why, sizeof(why)) < 0)
                cp_config_error(errs, name, line, "%s: invalid value '%s': %s", key, val, why);
}

/* Checks that span several keys. */
static void validate(struct cp_config *c, const char *name, const int *seen, struct cp_config_errors *errs)
{
        int ln;

#define LINE_OF(field) (seen[find_key(field) - schema])
        if (c->mqtt_tls_certfile && !c->mqtt_tls_keyfile)
                cp_config_error(errs, name, LINE_OF("mqtt.tls.certfile"), "mqtt.tls.certfile needs mqtt.tls.keyfile");
        if (c->mqtt_tls_keyfile && !c->mqtt_tls_certfile)
                cp_config_error(errs, name, LINE_OF("mqtt.tls.keyfile"), "mqtt.tls.keyfile needs mqtt.tls.certfile");
        if ((c->mqtt_tls_certfile || c->mqtt_tls_keyfile) && !c->mqtt_tls_cafile)
                cp_config_error(errs, name, LINE_OF(c->mqtt_tls_certfile ? "mqtt.tls.certfile" : "mqtt.tls.keyfile"),
                                "client certificates need mqtt.tls.cafile");
        if (c->mqtt_password_file && !c->mqtt_username)
                cp_config_error(errs, name, LINE_OF("mqtt.password_file"), "mqtt.password_file needs mqtt.username");
        if (c->ods_push_url && !c->ods_push_pushkey_file)
                cp_config_error(errs, name, LINE_OF("ods_push.url"), "ods_push.url needs ods_push.pushkey_file");
        ln = LINE_OF("mqtt.client_id");
        if (ln && (!*c->mqtt_client_id || strlen(c->mqtt_client_id) > 65535))
                cp_config_error(errs, name, ln, "mqtt.client_id: must be 1 to 65535 bytes");
        ln = LINE_OF("mqtt.shared_group");
        if (c->mqtt_shared_group && (strpbrk(c->mqtt_shared_group, "/+#") || !*c->mqtt_shared_group))
                cp_config_error(errs, name, ln, "mqtt.shared_group: '%s' must not contain '/', '+' or '#'",
                                c->mqtt_shared_group);
        ln = LINE_OF("publish.prefix");
        if (mosquitto_pub_topic_check(c->publish_prefix) != MOSQ_ERR_SUCCESS || !*c->publish_prefix)
                cp_config_error(errs, name, ln, "publish.prefix: '%s' is not a valid topic prefix", c->publish_prefix);
#undef LINE_OF
}

int cp_config_parse(const char *name, const char *text, size_t len, bool (*known_driver)(const char *),
                    struct cp_config **ret, struct cp_config_errors *errs)
{
        int seen[CP_ARRAY_LEN(schema)] = {0};
        size_t errs_before = errs ? errs->n : 0;
        struct cp_config *c;
        const char *p = text, *end = text + len;
        int line = 0;
        char *buf;

        c = cp_config_new_default();
        if (!c)
                return -ENOMEM;
        c->file = strdup(name);
        buf = malloc(len + 1);
        if (!buf || !c->file) {
                free(buf);
                cp_config_free(c);
                return -ENOMEM;
        }
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                char *s;

                line++;
                memcpy(buf, p, n);
                buf[n] = '\0';
                p += n + (nl ? 1 : 0);
                if (n && buf[n - 1] == '\r')
                        buf[--n] = '\0';
                if (memchr(buf, '\0', n) || strlen(buf) != n) {
                        cp_config_error(errs, name, line, "NUL byte in line");
                        continue;
                }
                s = buf;
                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s || *s == '#')
                        continue;
                parse_line(c, name, line, s, seen, known_driver, errs);
        }
        free(buf);
        if (c->n_http_listen == 0 && add_listen(c, "127.0.0.1:8080") < 0) {
                cp_config_free(c);
                return -ENOMEM;
        }
        validate(c, name, seen, errs);
        if (errs && errs->n > errs_before) {
                cp_config_free(c);
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

int cp_config_load(const char *path, bool (*known_driver)(const char *), struct cp_config **ret,
                   struct cp_config_errors *errs)
{
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t len = 0, cap = 0;
        int r;

        if (!f) {
                r = -errno;
                cp_config_error(errs, path, 0, "cannot open: %s", strerror(-r));
                return r;
        }
        for (;;) {
                if (len + 4096 > cap) {
                        char *t;
                        if (cap > (16u << 20)) {
                                cp_config_error(errs, path, 0, "file larger than 16 MiB");
                                free(text);
                                fclose(f);
                                return -EFBIG;
                        }
                        cap = cap ? cap * 2 : 8192;
                        t = realloc(text, cap);
                        if (!t) {
                                free(text);
                                fclose(f);
                                return -ENOMEM;
                        }
                        text = t;
                }
                size_t n = fread(text + len, 1, cap - len, f);
                len += n;
                if (n == 0)
                        break;
        }
        r = ferror(f) ? -EIO : 0;
        fclose(f);
        if (r < 0) {
                cp_config_error(errs, path, 0, "read error");
                free(text);
                return r;
        }
        r = cp_config_parse(path, text ? text : "", len, known_driver, ret, errs);
        free(text);
        return r;
}

static bool str_eq(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

size_t cp_config_restart_keys(const struct cp_config *old, const struct cp_config *new, char *buf, size_t len)
{
        size_t n = 0, o = 0;

        if (len)
                buf[0] = '\0';
        for (size_t i = 0; i < CP_ARRAY_LEN(schema); i++) {
                const struct conf_key *k = &schema[i];
                const void *a = (const char *)old + k->off, *b = (const char *)new + k->off;
                bool same;

                if (!(k->flags & F_RESTART))
                        continue;
                if (k->type == T_STR)
                        same = str_eq(*(char *const *)a, *(char *const *)b);
                else if (k->type == T_BOOL)
                        same = *(const bool *)a == *(const bool *)b;
                else
                        same = *(const int64_t *)a == *(const int64_t *)b;
                if (same)
                        continue;
                n++;
                if (o < len) {
                        int w = snprintf(buf + o, len - o, "%s%s", o ? "," : "", k->key);
                        if (w > 0)
                                o += (size_t)w;
                }
        }
        bool listen_same = old->n_http_listen == new->n_http_listen;
        for (size_t i = 0; listen_same && i < old->n_http_listen; i++)
                listen_same = strcmp(old->http_listen[i], new->http_listen[i]) == 0;
        if (!listen_same) {
                n++;
                if (o < len)
                        snprintf(buf + o, len - o, "%shttp.listen", o ? "," : "");
        }
        return n;
}

int cp_config_driver_section(const struct cp_config *c, const char *driver, struct cp_conf_section *ret,
                             struct cp_conf_kv **ret_kv)
{
        struct cp_conf_kv *kv = NULL;
        size_t n = 0;

        for (size_t i = 0; i < c->n_driver_kv; i++) {
                if (strcmp(c->driver_kv[i].driver, driver) != 0)
                        continue;
                struct cp_conf_kv *t = realloc(kv, (n + 1) * sizeof(*t));
                if (!t) {
                        free(kv);
                        return -ENOMEM;
                }
                kv = t;
                kv[n++] = c->driver_kv[i].kv;
        }
        ret->driver = driver;
        ret->kv = kv;
        ret->n = n;
        *ret_kv = kv;
        return 0;
}

void cp_config_keep_restart_keys(struct cp_config *old, struct cp_config *new)
{
        for (size_t i = 0; i < CP_ARRAY_LEN(schema); i++) {
                const struct conf_key *k = &schema[i];
                char *a = (char *)old + k->off, *b = (char *)new + k->off;
                char tmp[sizeof(int64_t)];
                size_t sz = k->type == T_STR ? sizeof(char *) : k->type == T_BOOL ? sizeof(bool) : sizeof(int64_t);

                if (!(k->flags & F_RESTART))
                        continue;
                /* Swap, so that each struct still owns exactly what it frees. */
                memcpy(tmp, a, sz);
                memcpy(a, b, sz);
                memcpy(b, tmp, sz);
        }
        char **tl = old->http_listen;
        size_t tn = old->n_http_listen;
        old->http_listen = new->http_listen;
        old->n_http_listen = new->n_http_listen;
        new->http_listen = tl;
        new->n_http_listen = tn;
}

int cp_read_secret(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0) {
                snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
                return -errno;
        }
        n = read(fd, buf, len - 1);
        close(fd);
        if (n < 0) {
                snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
                return -EIO;
        }
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        return 0;
}
