/* test_config.c - the config parser: defaults, every type, every error with FILE:LINE, the docs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "route.h"

static struct cp_config *parse_ok(const char *text)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;
        int r = cp_config_parse("t.conf", text, strlen(text), cp_driver_known, &c, &errs);

        for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "unexpected: %s\n", errs.msg[i]);
        assert_int_equal(r, 0);
        assert_int_equal(errs.n, 0);
        cp_config_errors_done(&errs);
        return c;
}

/* Expects failure and that the first error equals want. */
static void parse_bad(const char *text, const char *want)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;
        int r = cp_config_parse("t.conf", text, strlen(text), cp_driver_known, &c, &errs);

        assert_true(r < 0);
        assert_null(c);
        assert_true(errs.n >= 1);
        if (strcmp(errs.msg[0], want) != 0)
                fprintf(stderr, "got:  %s\nwant: %s\n", errs.msg[0], want);
        assert_string_equal(errs.msg[0], want);
        cp_config_errors_done(&errs);
}

static void test_defaults(void **state)
{
        struct cp_config *c = parse_ok("");

        (void)state;
        assert_string_equal(c->mqtt_host, "127.0.0.1");
        assert_int_equal(c->mqtt_port, 1883);
        assert_int_equal(c->mqtt_qos, 1);
        assert_false(c->mqtt_clean_session);
        assert_int_equal(c->mqtt_keepalive_ms, 30000);
        assert_int_equal(strncmp(c->mqtt_client_id, "citypulse-", 10), 0);
        assert_int_equal(c->n_http_listen, 1);
        assert_string_equal(c->http_listen[0], "127.0.0.1:8080");
        assert_string_equal(c->data_dir, "/var/lib/citypulse");
        assert_int_equal(c->live_stale_after_ms, 5 * 60000);
        assert_int_equal(c->live_full_threshold, 0);
        assert_string_equal(c->agg_timezone, "Europe/Paris");
        assert_int_equal(c->agg_allowed_lateness_ms, 2 * 86400000LL);
        assert_int_equal(c->agg_max_future_skew_ms, 5 * 60000);
        assert_int_equal(c->store_retention_readings_ms, 30 * 86400000LL);
        assert_string_equal(c->publish_prefix, "citypulse");
        assert_int_equal(c->rejects_max_payload, 4096);
        assert_int_equal(c->log_level, 6);
        assert_null(c->mqtt_username);
        assert_null(c->registry_facilities);
        cp_config_free(c);
}

static void test_values(void **state)
{
        struct cp_config *c = parse_ok("# comment\n"
                                       "\n"
                                       "  mqtt.host   10.1.2.3  \r\n"
                                       "mqtt.port 8883\n"
                                       "mqtt.clean_session yes\n"
                                       "live.stale_after 90s\n"
                                       "agg.allowed_lateness 500ms\n"
                                       "rejects.max_payload 16k\n"
                                       "log.level debug\n"
                                       "route city/# facility_json\n"
                                       "route other/+/x facility_json\n"
                                       "http.listen [::1]:9000\n"
                                       "http.listen 127.0.0.1:9001\n"
                                       "driver.facility_json.timezone UTC\n");

        (void)state;
        assert_string_equal(c->mqtt_host, "10.1.2.3");
        assert_int_equal(c->mqtt_port, 8883);
        assert_true(c->mqtt_clean_session);
        assert_int_equal(c->live_stale_after_ms, 90000);
        assert_int_equal(c->agg_allowed_lateness_ms, 500);
        assert_int_equal(c->rejects_max_payload, 16384);
        assert_int_equal(c->log_level, 7);
        assert_int_equal(c->n_routes, 2);
        assert_string_equal(c->routes[0].filter, "city/#");
        assert_string_equal(c->routes[1].driver, "facility_json");
        assert_int_equal(c->routes[1].line, 11);
        assert_int_equal(c->n_http_listen, 2);
        assert_int_equal(c->n_driver_kv, 1);
        assert_string_equal(c->driver_kv[0].kv.key, "timezone");
        cp_config_free(c);
}

static void test_errors(void **state)
{
        (void)state;
        parse_bad("mqtt.hots x\n", "t.conf:1: unknown key 'mqtt.hots'");
        parse_bad("\nmqtt.port 0\n", "t.conf:2: mqtt.port: invalid value '0': out of range 1..65535");
        parse_bad("mqtt.port 70000\n", "t.conf:1: mqtt.port: invalid value '70000': out of range 1..65535");
        parse_bad("mqtt.port 12x\n", "t.conf:1: mqtt.port: invalid value '12x': expected an integer");
        parse_bad("mqtt.port 99999999999999999999\n",
                  "t.conf:1: mqtt.port: invalid value '99999999999999999999': expected an integer");
        parse_bad("mqtt.port\n", "t.conf:1: mqtt.port: missing value");
        parse_bad("mqtt.host a b\n", "t.conf:1: mqtt.host: unexpected 'b' after the value");
        parse_bad("mqtt.host a\nmqtt.host b\n", "t.conf:2: mqtt.host: duplicate key, first set at line 1");
        parse_bad("live.stale_after 5\n",
                  "t.conf:1: live.stale_after: invalid value '5': expected a duration such as 500ms, 30s, 5m, 2h or 7d");
        parse_bad("live.stale_after 5y\n",
                  "t.conf:1: live.stale_after: invalid value '5y': expected a duration such as 500ms, 30s, 5m, 2h or 7d");
        parse_bad("live.stale_after -5s\n",
                  "t.conf:1: live.stale_after: invalid value '-5s': expected a duration such as 500ms, 30s, 5m, 2h or 7d");
        parse_bad("mqtt.clean_session maybe\n", "t.conf:1: mqtt.clean_session: invalid value 'maybe': expected yes or no");
        parse_bad("log.level loud\n",
                  "t.conf:1: log.level: invalid value 'loud': expected one of err warning notice info debug");
        parse_bad("rejects.max_payload 2g\n",
                  "t.conf:1: rejects.max_payload: invalid value '2g': out of range 0..1048576");
        parse_bad("route city/#\n", "t.conf:1: route: expected 'route <topic-filter> <driver>'");
        parse_bad("route city/# nope\n", "t.conf:1: route: unknown driver 'nope'");
        parse_bad("route city/#/x facility_json\n", "t.conf:1: route: 'city/#/x' is not a valid MQTT topic filter");
        parse_bad("route a/+b facility_json\n", "t.conf:1: route: 'a/+b' is not a valid MQTT topic filter");
        parse_bad("route a facility_json extra\n", "t.conf:1: route: unexpected 'extra' after the driver name");
        parse_bad("route a facility_json\nroute a facility_json\n",
                  "t.conf:2: route: filter 'a' already routed at line 1");
        parse_bad("http.listen 8080\n",
                  "t.conf:1: http.listen: '8080' is not host:port (IPv4, [IPv6] or localhost, port 1-65535)");
        parse_bad("http.listen 127.0.0.1:0\n",
                  "t.conf:1: http.listen: '127.0.0.1:0' is not host:port (IPv4, [IPv6] or localhost, port 1-65535)");
        parse_bad("http.listen example.com:80\n",
                  "t.conf:1: http.listen: 'example.com:80' is not host:port (IPv4, [IPv6] or localhost, port 1-65535)");
        parse_bad("driver.nope.x 1\n", "t.conf:1: driver.nope.x: unknown driver 'nope'");
        parse_bad("driver.facility_json 1\n", "t.conf:1: driver.facility_json: expected driver.<name>.<key>");
        parse_bad("driver.facility_json.tz a\ndriver.facility_json.tz b\n",
                  "t.conf:2: driver.facility_json.tz: duplicate key, first set at line 1");
        parse_bad("mqtt.password_file /x\n", "t.conf:1: mqtt.password_file needs mqtt.username");
        parse_bad("mqtt.tls.certfile /x\n", "t.conf:1: mqtt.tls.certfile needs mqtt.tls.keyfile");
        parse_bad("mqtt.shared_group a/b\n", "t.conf:1: mqtt.shared_group: 'a/b' must not contain '/', '+' or '#'");
        parse_bad("publish.prefix a/#\n", "t.conf:1: publish.prefix: 'a/#' is not a valid topic prefix");
        parse_bad("ods_push.url http://127.0.0.1/\n", "t.conf:1: ods_push.url needs ods_push.pushkey_file");
}

static void test_nul_and_all_errors_reported(void **state)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;
        const char text[] = "mqtt.port 1\0x\nbad.key 1\nmqtt.qos 9\n";

        (void)state;
        assert_true(cp_config_parse("t.conf", text, sizeof(text) - 1, cp_driver_known, &c, &errs) < 0);
        assert_int_equal(errs.n, 3);
        assert_string_equal(errs.msg[0], "t.conf:1: NUL byte in line");
        assert_string_equal(errs.msg[1], "t.conf:2: unknown key 'bad.key'");
        assert_string_equal(errs.msg[2], "t.conf:3: mqtt.qos: invalid value '9': out of range 0..2");
        cp_config_errors_done(&errs);
}

static void test_missing_file(void **state)
{
        struct cp_config_errors errs = {0};
        struct cp_config *c = NULL;

        (void)state;
        assert_int_equal(cp_config_load("/nonexistent/citypulse.conf", NULL, &c, &errs), -ENOENT);
        assert_int_equal(errs.n, 1);
        assert_string_equal(errs.msg[0], "/nonexistent/citypulse.conf: cannot open: No such file or directory");
        cp_config_errors_done(&errs);
}

static void test_units(void **state)
{
        int64_t v;

        (void)state;
        assert_int_equal(cp_parse_duration_ms("7d", &v), 0);
        assert_int_equal(v, 7 * 86400000LL);
        assert_int_equal(cp_parse_duration_ms("1w", &v), 0);
        assert_int_equal(v, 7 * 86400000LL);
        assert_int_equal(cp_parse_duration_ms("2h", &v), 0);
        assert_int_equal(v, 7200000);
        assert_true(cp_parse_duration_ms("", &v) < 0);
        assert_true(cp_parse_duration_ms("s", &v) < 0);
        assert_true(cp_parse_duration_ms("99999999999999999999d", &v) < 0);
        assert_true(cp_parse_duration_ms("9999999999999999d", &v) < 0);
        assert_int_equal(cp_parse_size("16m", &v), 0);
        assert_int_equal(v, 16 << 20);
        assert_int_equal(cp_parse_size("512", &v), 0);
        assert_int_equal(v, 512);
        assert_true(cp_parse_size("1.5k", &v) < 0);
}

static void test_restart_keys(void **state)
{
        struct cp_config *a = parse_ok("mqtt.client_id a\nlive.stale_after 1m\n");
        struct cp_config *b = parse_ok("mqtt.client_id b\nlive.stale_after 2m\nhttp.listen 127.0.0.1:1\n");
        char buf[256];

        (void)state;
        assert_int_equal(cp_config_restart_keys(a, b, buf, sizeof(buf)), 2);
        assert_string_equal(buf, "mqtt.client_id,http.listen");
        cp_config_keep_restart_keys(a, b);
        assert_string_equal(b->mqtt_client_id, "a");
        assert_string_equal(b->http_listen[0], "127.0.0.1:8080");
        assert_int_equal(b->live_stale_after_ms, 120000);
        cp_config_free(a);
        cp_config_free(b);
}

/* Every key of the schema is documented, with its default, in config/citypulse.conf. */
static void test_documented(void **state)
{
        FILE *f = fopen("config/citypulse.conf", "r");
        static char text[65536];
        size_t n;

        (void)state;
        assert_non_null(f);
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        for (size_t i = 0; i < cp_config_schema_size(); i++) {
                const char *k = cp_config_schema_key(i), *def = cp_config_schema_default(i);
                char line[256];
                if (strcmp(k, "route") == 0 || strcmp(k, "driver.<name>.<key>") == 0) {
                        snprintf(line, sizeof(line), "# %s ", strcmp(k, "route") == 0 ? "route" : "driver.");
                        if (!strstr(text, strcmp(k, "route") == 0 ? "\n# route " : "\n# driver."))
                                fail_msg("%s is not documented", k);
                        continue;
                }
                if (def)
                        snprintf(line, sizeof(line), "\n# %s %s\n", k, def);
                else
                        snprintf(line, sizeof(line), "\n# %s ", k);
                if (!strstr(text, line))
                        fail_msg("config/citypulse.conf does not document '%s' with its default '%s'", k,
                                 def ? def : "(unset)");
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_nul_and_all_errors_reported),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_units),
                cmocka_unit_test(test_restart_keys),
                cmocka_unit_test(test_documented),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
