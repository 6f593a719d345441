/* drv_shelly_gen1.c - Shelly Gen1 over MQTT (PAYLOADS.md section 5, "Gen1"): one plain-text value per
 * topic, no JSON and no timestamp:
 *
 *   shellies/shelly1pm-84cca8a1b2c3/relay/0/power     42.17    W
 *   shellies/shelly1pm-84cca8a1b2c3/relay/0/energy    123456   watt-minutes, since power-up
 *   shellies/shellyem3-c45bbe6a1b2c/emeter/2/total    5321.7   Wh, kept across reboots
 *
 * Readings, for sensor "<id>:<N>" (CONTRACT section 3: Gen1 `relay/N` gives `:N`), observed at
 * msg->rx_ms because Gen1 sends no time:
 *   relay|roller|light/<N>/power           power_w
 *   relay|roller|light/<N>/energy          energy_import_kwh (Wmin / 60000)
 *   emeter/<N>/power                       power_w (signed: negative is export)
 *   emeter/<N>/reactive_power              reactive_power_var (signed)
 *   emeter/<N>/voltage, current, pf        voltage_v, current_a, power_factor
 *   emeter/<N>/total, total_returned       energy_import_kwh, energy_export_kwh (Wh / 1000)
 * and for sensor "<id>" itself:
 *   temperature                            temperature_c (the device's internal sensor, in degC)
 *
 * Every other topic under shellies/ is a valid message without a measurement and gives -ENODATA
 * without looking at its payload: the relay state (`relay/0` "on"/"off"), `online`, `announce`,
 * `info` (JSON), `input/N`, `temperature_f` (the same sensor in degF), `relay/0/overpower_value` and
 * any tail a newer firmware adds. Two numeric tails are left out on purpose: `emeter/N/energy` and
 * `emeter/N/returned_energy` are watt-minute counters since power-up of the same meter whose
 * persistent Wh counters are `total` and `total_returned`. Feeding both into one energy series
 * would make every other reading look like a counter reset (CONTRACT section 5) and count the
 * whole total again each time.
 *
 * The body must be a plain decimal number: an optional '-', digits, optionally '.' and digits,
 * and at most one trailing '\n'. No sign '+', no exponent, no spaces, no hex, no "nan"/"inf": the
 * firmware never writes them, so anything else is a different payload on the topic. Magnitudes
 * of 1e15 and more are refused: doubles stop holding such values exactly and no meter gets near.
 *
 * Topics: `shellies/<id>/<tail>` with exactly one level for the id (Gen1 fixes the `shellies/`
 * prefix; only the id part is configurable). A topic outside `shellies/` means a wrong route and
 * is refused. There is no id in the payload, so no id can contradict the topic.
 *
 * Settings: only driver.shelly_gen1.timezone (filled in by the daemon), checked but unused since
 * Gen1 sends no times. Any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_PREFIX     "shellies/"
#define TOPIC_PREFIX_LEN (sizeof(TOPIC_PREFIX) - 1)
/* Longest accepted body, without the trailing newline. The firmware prints about ten characters
 * ("-1520.33", "123456"); 32 leaves room for a script that writes every decimal of a double. */
#define VALUE_MAX_LEN 32
/* Longest channel number: devices have 1 to 4 channels; three digits leave ample room. */
#define CHANNEL_MAX_LEN 3
#define VALUE_LIMIT     1e15

/* One topic tail "<kind>/<N>/<name>". */
struct channel_value {
        const char *kind;
        const char *name;
        enum cp_quantity q;
        double divisor; /* from the topic's unit to the quantity's */
        enum cp_value_check check;
};

static const struct channel_value channel_values[] = {
    {"relay", "power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {"relay", "energy", CP_Q_ENERGY_IMPORT_KWH, 60000, CP_CHECK_NONNEG},
    {"roller", "power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {"roller", "energy", CP_Q_ENERGY_IMPORT_KWH, 60000, CP_CHECK_NONNEG},
    {"light", "power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {"light", "energy", CP_Q_ENERGY_IMPORT_KWH, 60000, CP_CHECK_NONNEG},
    {"emeter", "power", CP_Q_POWER_W, 1, CP_CHECK_SIGNED},
    {"emeter", "reactive_power", CP_Q_REACTIVE_POWER_VAR, 1, CP_CHECK_SIGNED},
    {"emeter", "voltage", CP_Q_VOLTAGE_V, 1, CP_CHECK_NONNEG},
    {"emeter", "current", CP_Q_CURRENT_A, 1, CP_CHECK_NONNEG},
    {"emeter", "pf", CP_Q_POWER_FACTOR, 1, CP_CHECK_PF},
    {"emeter", "total", CP_Q_ENERGY_IMPORT_KWH, 1000, CP_CHECK_NONNEG},
    {"emeter", "total_returned", CP_Q_ENERGY_EXPORT_KWH, 1000, CP_CHECK_NONNEG},
};

static const struct channel_value device_temperature = {NULL, "temperature", CP_Q_TEMPERATURE_C, 1,
                                                        CP_CHECK_ABOVE_0K};

/* A channel number as the firmware writes it: 1 to CHANNEL_MAX_LEN digits, no leading zero. */
static bool channel_valid(const char *s, size_t len)
{
        if (len == 0 || len > CHANNEL_MAX_LEN || (len > 1 && s[0] == '0'))
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
        }
        return true;
}

/* Finds the value a tail "<kind>/<N>/<name>" carries; NULL when the tail is not a measurement.
 * *ret_ch and *ret_ch_len give <N>, not yet validated. */
static const struct channel_value *find_channel_value(const char *tail, const char **ret_ch,
                                                      size_t *ret_ch_len)
{
        const char *s1 = strchr(tail, '/'), *s2, *name;

        if (!s1)
                return NULL;
        s2 = strchr(s1 + 1, '/');
        if (!s2)
                return NULL;
        name = s2 + 1;
        if (strchr(name, '/'))
                return NULL;
        for (size_t i = 0; i < CP_ARRAY_LEN(channel_values); i++) {
                const struct channel_value *cv = &channel_values[i];

                if (cp_span_is(tail, (size_t)(s1 - tail), cv->kind) && strcmp(name, cv->name) == 0) {
                        *ret_ch = s1 + 1;
                        *ret_ch_len = (size_t)(s2 - s1 - 1);
                        return cv;
                }
        }
        return NULL;
}

/* Checks the grammar -?[0-9]+(\.[0-9]+)? over the whole of s[0..len). */
static bool decimal_valid(const char *s, size_t len)
{
        size_t i = 0, digits = 0;

        if (i < len && s[i] == '-')
                i++;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                digits++;
        if (digits == 0)
                return false;
        if (i == len)
                return true;
        if (s[i++] != '.')
                return false;
        for (digits = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                digits++;
        return digits > 0 && i == len;
}

/* Reads the body as a number; `field` names the topic tail in texts. On success *ret_len is the
 * length of the number's text at msg->payload, for quoting it in later texts exactly as sent. */
static int read_value(struct cp_batch *b, const struct cp_msg *msg, const char *field, double *ret,
                      int *ret_len)
{
        const char *s = (const char *)msg->payload;
        size_t len = msg->payload ? msg->len : 0;
        char buf[VALUE_MAX_LEN + 1];

        /* mosquitto_pub -l and shell scripts append a newline; the firmware does not. */
        if (len > 0 && s[len - 1] == '\n')
                len--;
        if (len == 0)
                return cp_batch_fail(b, CP_REASON_EMPTY, "%s is empty, expected a decimal number", field);
        if (memchr(s, 0, len))
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "%s is binary data, expected a decimal number",
                                     field);
        if (len > VALUE_MAX_LEN)
                return cp_batch_fail(b, CP_REASON_TOO_LARGE, "%s is %zu bytes long, limit %d", field, len,
                                     VALUE_MAX_LEN);
        if (!decimal_valid(s, len))
                return cp_batch_fail(b, CP_REASON_BAD_FORMAT, "%s '%.*s' is not a decimal number", field,
                                     (int)len, s);
        /* The grammar is checked, so strtod() only converts; the copy gives it a terminator. */
        memcpy(buf, s, len);
        buf[len] = '\0';
        *ret = strtod(buf, NULL);
        if (!(fabs(*ret) < VALUE_LIMIT))
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %s, expected a magnitude below 1e15",
                                     field, buf);
        *ret_len = (int)len;
        return 0;
}

static int gen1_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const char *topic = msg->topic ? msg->topic : "", *id, *slash, *tail, *ch = NULL, *problem;
        const struct channel_value *cv;
        char dev[CP_SENSOR_ID_MAX], chan[CHANNEL_MAX_LEN + 1];
        size_t id_len, ch_len = 0;
        int r, text_len = 0;
        double v = 0;

        (void)state;
        cp_batch_reset(out);
        if (strncmp(topic, TOPIC_PREFIX, TOPIC_PREFIX_LEN) != 0)
                return cp_batch_fail(out, CP_REASON_BAD_FORMAT, "topic '%s' is not shellies/<device id>/...",
                                     topic);
        id = topic + TOPIC_PREFIX_LEN;
        slash = strchr(id, '/');
        /* shellies/announce and shellies/command: for all devices, never a measurement. */
        if (!slash)
                return -ENODATA;
        id_len = (size_t)(slash - id);
        tail = slash + 1;
        if (strcmp(tail, device_temperature.name) == 0)
                cv = &device_temperature;
        else
                cv = find_channel_value(tail, &ch, &ch_len);
        if (!cv)
                return -ENODATA;

        problem = cp_sensor_id_problem(id, id_len);
        if (problem && id_len >= CP_SENSOR_ID_MAX)
                return cp_batch_fail(out, CP_REASON_BAD_ID, "device id in topic is %zu bytes long, limit %d",
                                     id_len, CP_SENSOR_ID_MAX - 1);
        if (problem && id_len == 0)
                return cp_batch_fail(out, CP_REASON_BAD_ID, "topic '%s' has an empty device id", topic);
        if (problem)
                return cp_batch_fail(out, CP_REASON_BAD_ID, "device id '%.*s' in topic %s", (int)id_len, id,
                                     problem);
        memcpy(dev, id, id_len);
        dev[id_len] = '\0';
        if (ch) {
                if (!channel_valid(ch, ch_len))
                        return cp_batch_fail(out, CP_REASON_BAD_FORMAT,
                                             "channel '%.*s' in topic '%s' is not a number", (int)ch_len, ch,
                                             topic);
                memcpy(chan, ch, ch_len);
                chan[ch_len] = '\0';
        }

        r = read_value(out, msg, tail, &v, &text_len);
        if (r < 0)
                return r;
        problem = cp_value_check_problem(v, cv->check);
        if (problem) {
                (void)cp_batch_fail(out, CP_REASON_OUT_OF_RANGE, "%s is %.*s, %s", tail, text_len,
                                    (const char *)msg->payload, problem);
                return -ERANGE;
        }
        v /= cv->divisor;
        if (ch)
                return cp_batch_add_ch(out, dev, chan, cv->q, v, msg->rx_ms, msg->rx_ms);
        return cp_batch_add(out, dev, cv->q, v, msg->rx_ms, msg->rx_ms);
}

const struct cp_driver cp_driver_shelly_gen1 = {
    .abi = CP_DRIVER_ABI,
    .name = "shelly_gen1",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = gen1_decode,
};
