/* drv_chirpstack_v4.c - ChirpStack v4 MQTT integration, uplink events of parking sensors (PAYLOADS.md
 * section 2):
 *
 *   topic application/<application UUID>/device/<devEui>/event/up
 *   {"deduplicationId":"...","time":"2026-03-01T09:59:58.123456789+00:00",
 *    "deviceInfo":{"tenantId":"...","applicationId":"...","deviceName":"...","devEui":"70b3d57ed0001234",...},
 *    "devAddr":"...","fCnt":4211,"fPort":1,"data":"lQ==","object":{"occupied":true,...},"rxInfo":[...],
 *    "txInfo":{...}}
 *
 * The sensor id is deviceInfo.devEui in lower-case hex (16 digits); the devEui in the topic must be
 * the same one, compared without regard to case (ID_MISMATCH otherwise). Readings come from `object`,
 * the output of the device profile's codec, with the same decoders as on TTN:
 *   occupancy -> occupied (0/1), from any of
 *     occupied   boolean (Nwave NPS405/NPS310, Bosch TPS110; null means unknown and gives no reading)
 *     status     "occupied" / "free", state "OCCUPIED" / "FREE" (other decoders; case is ignored)
 *     alarmPark  boolean, vehicle detected (Dingtek DO201)
 *   object is a google.protobuf.Struct, so every number in it is a double (PAYLOADS.md: integers
 *   arrive as 10.0 and 1.0): for occupied and alarmPark the numbers 0 and 1 (0.0, 1.0) are accepted
 *   as false and true, any other number is OUT_OF_RANGE. When several fields are present they must
 *   agree (INCONSISTENT otherwise).
 *   battery_voltage (Nwave heartbeat) or volt (Dingtek), V -> battery_v (CONTRACT section 3 fine print)
 *   temperature, degrees C -> temperature_c; humidity, % -> humidity_pct (Dingtek)
 * All readings belong to the device itself (one spot, no channels). Every other field is ignored.
 *
 * Observation time: `time` (RFC 3339 with ns and "+00:00", cut to the ms), else the receive time.
 *
 * No reading, no reject (-ENODATA), for valid messages that carry no measurement:
 *   - the other events (event/join|status|ack|txack|log|location|integration) and commands
 *     (command/down): the status event's batteryLevel is a percentage of an unknown battery, not a
 *     voltage;
 *   - an uplink without `object` (no codec in the device profile, or the codec failed: ChirpStack
 *     then sends a log event);
 *   - an object without any field above.
 * A topic that does not end in device/<devEui>/event/<event> or device/<devEui>/command/<command>
 * (a bridge that renamed it) is read as an uplink, with no topic id to check. The Protobuf marshaler
 * (json=false) puts binary data on the same topics: it is rejected as not JSON.
 *
 * Settings: driver.chirpstack_v4.timezone reads a time without offset (ChirpStack always sends one,
 * but the rule is never to assume UTC); any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"
#include "lorawan_parking.h"

#include <errno.h>
#include <string.h>

enum topic_kind {
        TOPIC_FOREIGN, /* another shape: no device to compare, read as an uplink */
        TOPIC_UP,
        TOPIC_OTHER, /* the other events and the commands: no readings */
};

struct topic_info {
        enum topic_kind kind;
        const char *dev; /* points into the topic; not terminated */
        size_t dev_len;
};

/* `object` went through a protobuf Struct: the codec's 0/1 arrive as 0.0/1.0. */
static const struct cp_lorawan_parking_src codec_object = {NULL, "object", "object", true};

/* What decode_root() reads, for cp_json_load_pruned(): a 1.5 KB uplink event is mostly rxInfo,
 * txInfo and deviceInfo members, which no reading needs. */
static const struct cp_json_keep keep_device[] = {{"devEui", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_root[] = {
    {"deviceInfo", keep_device},
    {"time", NULL},
    {"object", cp_lorawan_parking_keep},
    {NULL, NULL},
};

/* .../device/<devEui>/event/<event> or .../device/<devEui>/command/<command>. ChirpStack's default is
 * application/<application_id>/device/<devEui>/event/<event>, but the integration's topic template is
 * configurable, so only the end is matched. */
static void parse_topic(const char *topic, struct topic_info *t)
{
        const char *slash[4], *p, *first;
        size_t found = 0;

        t->kind = TOPIC_FOREIGN;
        t->dev = NULL;
        t->dev_len = 0;
        if (!topic)
                return;
        for (p = topic + strlen(topic); p > topic && found < 4;) {
                if (*--p == '/')
                        slash[found++] = p;
        }
        if (found < 3 || slash[0][1] == '\0')
                return;
        /* slash[2] ends "device", which starts the topic or follows slash[3]. */
        first = found == 4 ? slash[3] + 1 : topic;
        if (slash[2] - first != 6 || memcmp(first, "device", 6) != 0 || slash[1] == slash[2] + 1)
                return;
        if (slash[0] - slash[1] == 6 && memcmp(slash[1] + 1, "event", 5) == 0)
                t->kind = strcmp(slash[0] + 1, "up") == 0 ? TOPIC_UP : TOPIC_OTHER;
        else if (slash[0] - slash[1] == 8 && memcmp(slash[1] + 1, "command", 7) == 0)
                t->kind = TOPIC_OTHER;
        else
                return;
        t->dev = slash[2] + 1;
        t->dev_len = (size_t)(slash[1] - t->dev);
}

/* A hex digit in lower case, or 0. */
static char hex_lower(char c)
{
        if (c >= 'A' && c <= 'F')
                return (char)(c - 'A' + 'a');
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ? c : 0;
}

/* deviceInfo.devEui, an EUI-64 in hex, into ret[17] in lower case: the id is the same whichever case
 * a tool wrote it in. */
static int get_dev_eui(struct cp_batch *b, const json_t *info, char *ret)
{
        char id[CP_SENSOR_ID_MAX];
        int r;

        r = cp_json_get_id(b, info, "deviceInfo", "devEui", false, id);
        if (r < 0)
                return r;
        if (strlen(id) != 16)
                goto out_not_eui;
        for (size_t i = 0; i < 16; i++) {
                ret[i] = hex_lower(id[i]);
                if (!ret[i])
                        goto out_not_eui;
        }
        ret[16] = '\0';
        return 0;
out_not_eui:
        return cp_batch_fail(b, CP_REASON_BAD_ID, "deviceInfo.devEui '%s' is not 16 hex digits", id);
}

/* Whether the topic's devEui names the same device, in either case. */
static bool same_eui(const char *eui, const char *topic_dev, size_t len)
{
        if (len != 16)
                return false;
        for (size_t i = 0; i < 16; i++) {
                if (hex_lower(topic_dev[i]) != eui[i])
                        return false;
        }
        return true;
}

/* Decodes a loaded message (the pruned tree or, after a fallback, the full one: the same result). */
static int decode_root(const struct cp_tz *tz, const struct cp_msg *msg, json_t *root, struct cp_batch *out)
{
        json_t *info;
        struct topic_info topic;
        char eui[17];
        bool present;
        int64_t ts;
        int r;

        parse_topic(msg->topic, &topic);
        /* Only event/up carries readings; the other events and the commands are valid and empty. */
        if (topic.kind == TOPIC_OTHER)
                return -ENODATA;
        r = cp_json_get_object(out, root, NULL, "deviceInfo", true, &info, NULL);
        if (r < 0)
                return r;
        r = get_dev_eui(out, info, eui);
        if (r < 0)
                return r;
        if (topic.dev && !same_eui(eui, topic.dev, topic.dev_len))
                return cp_batch_fail(out, CP_REASON_ID_MISMATCH,
                                     "deviceInfo.devEui '%s' does not match the topic's device '%.*s'", eui,
                                     (int)CP_MIN(topic.dev_len, 64), topic.dev);
        r = cp_json_get_time(out, root, NULL, "time", false, tz, &ts, &present);
        if (r < 0)
                return r;
        if (!present)
                ts = msg->rx_ms;
        return cp_lorawan_parking_decode(out, &codec_object, root, eui, ts, msg->rx_ms);
}

static int chirpstack_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
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

const struct cp_driver cp_driver_chirpstack_v4 = {
    .abi = CP_DRIVER_ABI,
    .name = "chirpstack_v4",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = chirpstack_decode,
};
