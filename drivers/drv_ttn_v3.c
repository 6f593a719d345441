/* drv_ttn_v3.c - The Things Stack v3 (TTN / TTS) MQTT uplinks of parking sensors (PAYLOADS.md section 1):
 *
 *   topic v3/<app>@<tenant>/devices/<device_id>/up   (TTS Open Source: v3/<app>/devices/<device_id>/up)
 *   {"end_device_ids":{"device_id":"nps-p12-017",...},"received_at":"...",
 *    "uplink_message":{"f_port":1,"decoded_payload":{"type":"parking_status","occupied":true,...},
 *                      "rx_metadata":[...],"settings":{...},"received_at":"2026-03-01T09:59:58.123456789Z"}}
 *
 * The sensor id is end_device_ids.device_id; the device named by the topic must be the same one
 * (ID_MISMATCH otherwise). Readings come from the payload formatter's output, decoded_payload:
 *   occupancy -> occupied (0/1), from any of
 *     occupied   JSON boolean (Nwave NPS405/NPS310, Bosch TPS110: status, heartbeat and startup frames;
 *                null, as Nwave sends on SDI tag registration, means unknown and gives no reading)
 *     status     "occupied" / "free", state "OCCUPIED" / "FREE" (other decoders; case is ignored)
 *     alarmPark  JSON boolean, vehicle detected (Dingtek DO201)
 *   When several are present they must agree (INCONSISTENT otherwise): one spot, one state.
 *   battery_voltage (Nwave heartbeat) or volt (Dingtek), V -> battery_v (CONTRACT section 3 fine print)
 *   temperature, degrees C -> temperature_c; humidity, % -> humidity_pct (Dingtek)
 * All readings belong to the device itself (one spot, no channels). Every other field is ignored.
 * The formatter's JSON reaches us unchanged, so a number where a boolean belongs ("occupied": 1) is
 * WRONG_TYPE here, unlike chirpstack_v4 where PAYLOADS.md documents integers arriving as doubles.
 *
 * Observation time: uplink_message.received_at, the Network Server's reception time (ns precision,
 * cut to the ms), else the top-level received_at (Application Server), else the receive time. The
 * gateways' rx_metadata[].time is not used: a gateway without GPS reports its own clock, which may
 * be anything, while the servers' clocks are synchronised.
 *
 * No reading, no reject (-ENODATA), for valid messages that carry no measurement:
 *   - other events of the device tree (/join, /down/..., /service/data, /location/solved);
 *   - an uplink without decoded_payload (no formatter configured, or the formatter failed: only
 *     frm_payload remains, and its bytes mean nothing without the device's codec);
 *   - a decoded_payload without any field above (debug frames, Bosch device information, Nwave tag
 *     registration with "occupied": null);
 *   - a simulated uplink ("simulated": true, typed into the console): open data must not carry
 *     made-up occupancy.
 * A topic of another shape (a bridge that renamed it) is accepted: the message kind then comes from
 * the payload (uplink_message, or one of the other events' fields) and there is no topic id to check.
 *
 * Settings: driver.ttn_v3.timezone reads a time without offset (TTS always sends "Z", but the rule
 * is never to assume UTC); any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"
#include "lorawan_parking.h"

#include <errno.h>
#include <string.h>

enum topic_kind {
        TOPIC_FOREIGN, /* not v3/<app>/devices/<id>/<event>: no device to compare, kind from payload */
        TOPIC_UP,
        TOPIC_OTHER, /* join, down/..., service/data, location/solved: no readings */
};

struct topic_info {
        enum topic_kind kind;
        const char *dev; /* points into the topic; not terminated */
        size_t dev_len;
};

/* The formatter's JSON reaches us unchanged: booleans stay booleans. */
static const struct cp_lorawan_parking_src decoded_payload = {"uplink_message", "decoded_payload",
                                                              "uplink_message.decoded_payload", false};

/* Without a TTS topic, the payload says what it is: the fields that name the other events. */
#define OTHER_EVENT_MAP(X)                                                                                   \
        X(join_accept)                                                                                       \
        X(downlink_ack)                                                                                      \
        X(downlink_nack)                                                                                     \
        X(downlink_sent)                                                                                     \
        X(downlink_failed)                                                                                   \
        X(downlink_queued)                                                                                   \
        X(downlink_queue_invalidated)                                                                        \
        X(service_data)                                                                                      \
        X(location_solved)

static const char *const other_event_keys[] = {
#define OTHER_EVENT_KEY(k) #k,
    OTHER_EVENT_MAP(OTHER_EVENT_KEY)
#undef OTHER_EVENT_KEY
};

/* What decode_root() reads, for cp_json_load_pruned(): a 2 KB TTS envelope is mostly rx_metadata,
 * settings and correlation_ids, which no reading needs. */
static const struct cp_json_keep keep_ids[] = {{"device_id", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_uplink[] = {
    {"received_at", NULL}, {"decoded_payload", cp_lorawan_parking_keep}, {NULL, NULL}};
static const struct cp_json_keep keep_root[] = {
    {"end_device_ids", keep_ids},
    {"uplink_message", keep_uplink},
    {"received_at", NULL},
    {"simulated", NULL},
/* Only their presence is read (is_other_event()). */
#define OTHER_EVENT_KEEP(k) {#k, NULL},
    OTHER_EVENT_MAP(OTHER_EVENT_KEEP)
#undef OTHER_EVENT_KEEP
        {NULL, NULL},
};

/* v3/<application_id>[@<tenant_id>]/devices/<device_id>/<event...>; TTS fixes this layout. */
static void parse_topic(const char *topic, struct topic_info *t)
{
        const char *app, *slash, *dev, *end;

        t->kind = TOPIC_FOREIGN;
        t->dev = NULL;
        t->dev_len = 0;
        if (!topic || strncmp(topic, "v3/", 3) != 0)
                return;
        app = topic + 3;
        slash = strchr(app, '/');
        if (!slash || slash == app || strncmp(slash, "/devices/", 9) != 0)
                return;
        dev = slash + 9;
        end = strchr(dev, '/');
        if (!end || end == dev || end[1] == '\0')
                return;
        t->dev = dev;
        t->dev_len = (size_t)(end - dev);
        t->kind = strcmp(end + 1, "up") == 0 ? TOPIC_UP : TOPIC_OTHER;
}

static bool is_other_event(const json_t *root)
{
        for (size_t i = 0; i < CP_ARRAY_LEN(other_event_keys); i++) {
                if (json_object_get(root, other_event_keys[i]))
                        return true;
        }
        return false;
}

/* Decodes a loaded message (the pruned tree or, after a fallback, the full one: the same result). */
static int decode_root(const struct cp_tz *tz, const struct cp_msg *msg, json_t *root, struct cp_batch *out)
{
        char dev[CP_SENSOR_ID_MAX];
        json_t *ids, *up;
        bool present, simulated = false;
        struct topic_info topic;
        int64_t ts;
        int r;

        parse_topic(msg->topic, &topic);
        /* Only /up carries readings; the other events of the device tree are valid and empty. */
        if (topic.kind == TOPIC_OTHER)
                return -ENODATA;
        r = cp_json_get_object(out, root, NULL, "end_device_ids", true, &ids, NULL);
        if (r < 0)
                return r;
        r = cp_json_get_id(out, ids, "end_device_ids", "device_id", false, dev);
        if (r < 0)
                return r;
        if (topic.dev && (strlen(dev) != topic.dev_len || memcmp(dev, topic.dev, topic.dev_len) != 0))
                return cp_batch_fail(out, CP_REASON_ID_MISMATCH,
                                     "end_device_ids.device_id '%s' does not match the topic's device '%.*s'",
                                     dev, (int)CP_MIN(topic.dev_len, 64), topic.dev);
        /* On a TTS /up topic the uplink must be there; elsewhere its absence may mean another event. */
        r = cp_json_get_object(out, root, NULL, "uplink_message", topic.kind == TOPIC_UP, &up, &present);
        if (r < 0)
                return r;
        if (!present) {
                if (is_other_event(root))
                        return -ENODATA;
                return cp_batch_fail(out, CP_REASON_MISSING_FIELD, "uplink_message is missing");
        }
        r = cp_json_get_bool(out, root, NULL, "simulated", false, &simulated, NULL);
        if (r < 0)
                return r;
        if (simulated)
                return -ENODATA;
        r = cp_json_get_time(out, up, "uplink_message", "received_at", false, tz, &ts, &present);
        if (r == 0 && !present)
                r = cp_json_get_time(out, root, NULL, "received_at", false, tz, &ts, &present);
        if (r < 0)
                return r;
        if (!present)
                ts = msg->rx_ms;
        return cp_lorawan_parking_decode(out, &decoded_payload, up, dev, ts, msg->rx_ms);
}

static int ttn_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        json_t *root;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        r = decode_root(state, msg, root, out);
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_ttn_v3 = {
    .abi = CP_DRIVER_ABI,
    .name = "ttn_v3",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = ttn_decode,
};
