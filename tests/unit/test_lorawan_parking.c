/* test_lorawan_parking.c - unit tests for drivers/lorawan_parking.c: the decoder output of LoRaWAN
 * parking sensors as ttn_v3 (booleans only) and chirpstack_v4 (0/1 numbers too) hand it over. The
 * drivers' envelopes are covered by the golden vectors. */
#include "citypulse/cp_json.h"
#include "lorawan_parking.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* cmocka.h uses jmp_buf, va_list and size_t without including their headers. */
#include <cmocka.h>

#define RX INT64_C(1772359200000)
#define TS (RX - 2000)

static const struct cp_lorawan_parking_src ttn = {"uplink_message", "decoded_payload",
                                                  "uplink_message.decoded_payload", false};
static const struct cp_lorawan_parking_src chirpstack = {NULL, "object", "object", true};

/* Decodes the decoder output `json` (NULL: none) as src hands it over. */
static int decode(const struct cp_lorawan_parking_src *src, const char *json, struct cp_batch *b)
{
        json_t *parent = json_object(), *obj = NULL;
        json_error_t err;
        int r;

        if (json && !(obj = json_loads(json, JSON_DECODE_ANY, &err)))
                fail_msg("'%s': %s", json, err.text);
        if (obj)
                json_object_set_new(parent, src->key, obj);
        cp_batch_reset(b);
        r = cp_lorawan_parking_decode(b, src, parent, "nps-p12-017", TS, RX);
        json_decref(parent);
        return r;
}

static void expect_fail(const struct cp_lorawan_parking_src *src, const char *json, enum cp_reason reason,
                        const char *text)
{
        struct cp_batch b;

        assert_int_equal(decode(src, json, &b), -EPROTO);
        assert_int_equal(b.n, 0);
        assert_string_equal(cp_reason_label(b.reason), cp_reason_label(reason));
        assert_string_equal(b.text, text);
}

static void expect_reading(const struct cp_batch *b, size_t i, enum cp_quantity q, double v)
{
        assert_true(i < b->n);
        assert_string_equal(b->v[i].sensor_id, "nps-p12-017");
        assert_string_equal(cp_quantity_name(b->v[i].quantity), cp_quantity_name(q));
        assert_true(b->v[i].value == v);
        assert_int_equal(b->v[i].ts_ms, TS);
        assert_int_equal(b->v[i].rx_ms, RX);
}

static void test_readings(void **state)
{
        struct cp_batch b;

        (void)state;
        assert_int_equal(
            decode(&ttn, "{\"type\":\"parking_status\",\"occupied\":true,\"battery_voltage\":3.6}", &b), 0);
        assert_int_equal(b.n, 2);
        expect_reading(&b, 0, CP_Q_OCCUPIED, 1);
        expect_reading(&b, 1, CP_Q_BATTERY_V, 3.6);

        /* Every source of one state, agreeing; volt is battery_voltage's other name. */
        assert_int_equal(
            decode(&chirpstack,
                   "{\"occupied\":0.0,\"status\":\"FREE\",\"state\":\"free\",\"alarmPark\":false,"
                   "\"volt\":3.3,\"temperature\":-12.5,\"humidity\":55}",
                   &b),
            0);
        assert_int_equal(b.n, 4);
        expect_reading(&b, 0, CP_Q_OCCUPIED, 0);
        expect_reading(&b, 1, CP_Q_BATTERY_V, 3.3);
        expect_reading(&b, 2, CP_Q_TEMPERATURE_C, -12.5);
        expect_reading(&b, 3, CP_Q_HUMIDITY_PCT, 55);

        /* Nothing known, or an occupancy the sensor does not know yet: no reading, no reject. */
        assert_int_equal(decode(&ttn, "{\"type\":\"debug\"}", &b), -ENODATA);
        assert_int_equal(decode(&ttn, "{\"occupied\":null}", &b), -ENODATA);
        assert_int_equal(b.n, 0);
        /* No output at all: no decoder, or it failed. */
        assert_int_equal(decode(&ttn, NULL, &b), -ENODATA);
        assert_int_equal(decode(&chirpstack, "null", &b), -ENODATA);
}

static void test_rejects(void **state)
{
        (void)state;
        expect_fail(&ttn, "{\"occupied\":true,\"status\":\"free\"}", CP_REASON_INCONSISTENT,
                    "uplink_message.decoded_payload.status 'free' contradicts "
                    "uplink_message.decoded_payload.occupied true");
        expect_fail(&chirpstack, "{\"occupied\":1,\"alarmPark\":0.0}", CP_REASON_INCONSISTENT,
                    "object.alarmPark 0 contradicts object.occupied 1");
        expect_fail(&chirpstack, "{\"volt\":3.3,\"battery_voltage\":3.6}", CP_REASON_INCONSISTENT,
                    "object.volt 3.3 contradicts object.battery_voltage 3.6");
        expect_fail(&ttn, "{\"occupied\":1}", CP_REASON_WRONG_TYPE,
                    "uplink_message.decoded_payload.occupied is a number, expected boolean");
        expect_fail(&chirpstack, "{\"occupied\":2}", CP_REASON_OUT_OF_RANGE,
                    "object.occupied is 2, expected 0 or 1");
        expect_fail(&chirpstack, "{\"alarmPark\":\"yes\"}", CP_REASON_WRONG_TYPE,
                    "object.alarmPark is a string, expected boolean or 0/1");
        expect_fail(&ttn, "{\"status\":\"ok\"}", CP_REASON_OUT_OF_RANGE,
                    "uplink_message.decoded_payload.status is 'ok', expected 'occupied' or 'free'");
        expect_fail(&chirpstack, "{\"temperature\":125.5}", CP_REASON_OUT_OF_RANGE,
                    "object.temperature is 125.5, expected -90 to 125");
        expect_fail(&chirpstack, "{\"battery_voltage\":20.1}", CP_REASON_OUT_OF_RANGE,
                    "object.battery_voltage is 20.1, expected 0 to 20");
        expect_fail(&ttn, "{\"humidity\":-1}", CP_REASON_OUT_OF_RANGE,
                    "uplink_message.decoded_payload.humidity is -1, expected 0 to 100");
        expect_fail(&ttn, "[true]", CP_REASON_WRONG_TYPE,
                    "uplink_message.decoded_payload is an array, expected object");
}

/* The keep table lists everything the decoder reads: a pruned load decodes as the full one. */
static void test_keep_table(void **state)
{
        static const struct cp_json_keep keep[] = {{"object", cp_lorawan_parking_keep}, {NULL, NULL}};
        static const char *const payloads[] = {
            "{\"object\":{\"occupied\":true,\"volt\":3.1,\"temperature\":21,\"humidity\":40,\"x\":[1]}}",
            "{\"object\":{\"status\":\"Occupied\",\"state\":\"OCCUPIED\",\"alarmPark\":1.0,\"battery_voltage\":3}}",
            "{\"object\":{\"occupied\":false,\"alarmPark\":true}}",
            "{\"object\":{\"temperature\":{}}}",
        };
        struct cp_batch full, pruned;

        (void)state;
        for (size_t i = 0; i < CP_ARRAY_LEN(payloads); i++) {
                struct cp_msg msg = {"t", (const uint8_t *)payloads[i], strlen(payloads[i]), RX};
                json_t *a, *b;
                int ra, rb;

                assert_int_equal(cp_json_load(&msg, &full, &a), 0);
                assert_int_equal(cp_json_load_pruned(&msg, &pruned, keep, &b), 0);
                cp_batch_reset(&full);
                cp_batch_reset(&pruned);
                ra = cp_lorawan_parking_decode(&full, &chirpstack, a, "d", TS, RX);
                rb = cp_lorawan_parking_decode(&pruned, &chirpstack, b, "d", TS, RX);
                assert_int_equal(ra, rb);
                assert_int_equal(full.n, pruned.n);
                assert_string_equal(full.text, pruned.text);
                for (size_t k = 0; k < full.n; k++) {
                        assert_int_equal(full.v[k].quantity, pruned.v[k].quantity);
                        assert_true(full.v[k].value == pruned.v[k].value);
                }
                json_decref(a);
                json_decref(b);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_readings),
            cmocka_unit_test(test_rejects),
            cmocka_unit_test(test_keep_table),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
