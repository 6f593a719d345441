/* drv_ngsi.c - FIWARE Smart Data Models parking entities (PAYLOADS.md section 3, FORMATS.md section 3):
 *
 *   {"id":"urn:ngsi-ld:OffStreetParking:porto-ParkingLot-23889","type":"OffStreetParking",
 *    "totalSpotNumber":414,"availableSpotNumber":132,"occupiedSpotNumber":282,
 *    "occupancyModified":"2018-09-21T12:00:00Z","location":{"type":"Point","coordinates":[-8.61,41.15]}}
 *   {"id":"urn:ngsi-ld:ParkingSpot:santander:daoiz_velarde_1_5:3","type":"ParkingSpot","status":"free"}
 *
 * Forms: keyValues (attribute = its value), NGSI-LD normalized ({"type":"Property","value":132,
 * "observedAt":"..."}) and NGSI v2 normalized ({"type":"Number","value":132,"metadata":{"timestamp":
 * {"type":"DateTime","value":"..."}}}): an attribute that is an object is read through its "value".
 * The entity may come alone, in an array, in a broker notification ({"subscriptionId":..,"data":[..]},
 * what Orion publishes for an MQTT subscription) or in the NGSI-LD MQTT envelope {"metadata":{..},
 * "body":<notification>}.
 *
 * Readings, for sensor id = the entity id as sent:
 *   OffStreetParking, OnStreetParking: availableSpotNumber -> free_spaces, totalSpotNumber ->
 *     total_spaces, occupiedSpotNumber -> occupied_spaces (facility counter). The model allows
 *     available <= total and occupied <= total; available + occupied > total is refused too. Spots
 *     that are neither (closed bays) make the sum smaller, so it need not equal total.
 *   ParkingSpot: status "occupied" -> occupied 1, "free" -> 0; "closed" and "unknown" give no reading
 *     (a closed bay is not a vacancy); any other value is refused (the model's enum is closed).
 * An entity that carries none of these attributes (a notification of a name change, a partial
 * update) gives no reading; a message without any reading is -ENODATA.
 *
 * Observation time of a reading: the attribute's own observedAt (NGSI-LD) or metadata.timestamp /
 * metadata.TimeInstant (NGSI v2); else the entity's occupancyModified (the model's "when the
 * occupancy changed"), dateObserved, observationDateTime or TimeInstant (IoT Agent), first found;
 * else the first attribute-level time of the entity, so that one message stays one snapshot; else
 * the receive time. dateModified and modifiedAt are storage times, not observations, and are not
 * used.
 *
 * Topic: when the topic's last level is an entity id (a URN, "urn:ngsi-ld:OffStreetParking:p1"),
 * every entity of the message must have that id (ID_MISMATCH).
 *
 * Settings: driver.ngsi.timezone reads a time without offset (the models' own examples send
 * "2018-09-21T12:00:00"); the daemon passes agg.timezone when unset, alone the driver uses
 * Europe/Paris. Any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Room for the longest path in a text: "body.data[63].availableSpotNumber.metadata.TimeInstant". */
#define PATH_LEN 96

/* What decode needs while it walks the entities of one message. */
struct ngsi_ctx {
        const struct cp_tz *tz;
        const struct cp_msg *msg;
        struct cp_batch *out;
        const char *topic_id; /* the topic's last level when it is an entity id, else NULL */
        size_t topic_id_len;
};

/* One attribute: its value (borrowed, NULL when absent), its own time, and the path of the value
 * ("data[0].availableSpotNumber.value") for texts. */
struct attr {
        const json_t *obj; /* the object holding the value under `key` */
        const char *key;
        char path[PATH_LEN]; /* path of obj */
        bool present;
        bool has_ts;
        int64_t ts;
};

enum entity_kind {
        KIND_FACILITY,
        KIND_SPOT,
};

static const struct {
        const char *type;
        enum entity_kind kind;
} entity_types[] = {
    {"OffStreetParking", KIND_FACILITY},
    {"OnStreetParking", KIND_FACILITY},
    {"ParkingSpot", KIND_SPOT},
};

/* What ngsi_decode() reads, for cp_json_load_pruned_any(). An attribute is read as a keyValues value
 * or a normalized object: its "value" (itself maybe a typed literal with "@value"), "@value",
 * "observedAt" and metadata.timestamp/TimeInstant.value. */
static const struct cp_json_keep keep_literal[] = {{"@value", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_meta_time[] = {{"value", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_meta[] = {
    {"timestamp", keep_meta_time},
    {"TimeInstant", keep_meta_time},
    {NULL, NULL},
};
static const struct cp_json_keep keep_attr[] = {
    {"value", keep_literal}, {"@value", NULL}, {"observedAt", NULL}, {"metadata", keep_meta}, {NULL, NULL},
};
/* clang-format off */
#define KEEP_ENTITY                                                                                        \
        {"id", NULL}, {"type", NULL}, {"totalSpotNumber", keep_attr}, {"availableSpotNumber", keep_attr},   \
        {"occupiedSpotNumber", keep_attr}, {"status", keep_attr}, {"occupancyModified", keep_attr},         \
        {"dateObserved", keep_attr}, {"observationDateTime", keep_attr}, {"TimeInstant", keep_attr}
/* clang-format on */
static const struct cp_json_keep keep_entity[] = {KEEP_ENTITY, {NULL, NULL}};
/* An entity or a notification ("data" of entities): the body of the NGSI-LD envelope. */
static const struct cp_json_keep keep_body[] = {
    KEEP_ENTITY,
    {"data", keep_entity},
    {"subscriptionId", NULL},
    {NULL, NULL},
};
/* The root: an entity, a notification or the envelope; an array root holds entities. */
static const struct cp_json_keep keep_root[] = {
    KEEP_ENTITY, {"data", keep_entity}, {"subscriptionId", NULL}, {"body", keep_body}, {NULL, NULL},
};

/* Appends s at buf[n] within buf[size] (n < size), cut to fit; returns the new length. Paths are
 * built from our own ASCII keys and indices, so a cut never splits a character. */
static size_t append(char *buf, size_t size, size_t n, const char *s)
{
        size_t len = strlen(s);

        if (len > size - 1 - n)
                len = size - 1 - n;
        memcpy(buf + n, s, len);
        buf[n + len] = '\0';
        return n + len;
}

/* "prefix.key", or either alone when the other is "" (a top-level field, a copy of a path). */
static void join(char *buf, size_t size, const char *prefix, const char *key)
{
        size_t n = append(buf, size, 0, prefix);

        if (prefix[0] && key[0])
                n = append(buf, size, n, ".");
        (void)append(buf, size, n, key);
}

/* Reads the time of a normalized attribute `a` (an object) at `path`: observedAt, else
 * metadata.timestamp.value or metadata.TimeInstant.value. */
static int read_attr_time(struct ngsi_ctx *c, const json_t *a, const char *path, bool *has_ts, int64_t *ts)
{
        static const char *const meta_keys[] = {"timestamp", "TimeInstant"};
        char mpath[PATH_LEN], kpath[PATH_LEN];
        json_t *meta, *m;
        int r;

        r = cp_json_get_time(c->out, a, path, "observedAt", false, c->tz, ts, has_ts);
        if (r < 0 || *has_ts)
                return r;
        r = cp_json_get_object(c->out, a, path, "metadata", false, &meta, NULL);
        if (r < 0 || !meta)
                return r;
        join(mpath, sizeof(mpath), path, "metadata");
        for (size_t i = 0; i < CP_ARRAY_LEN(meta_keys); i++) {
                r = cp_json_get_object(c->out, meta, mpath, meta_keys[i], false, &m, NULL);
                if (r < 0)
                        return r;
                if (!m)
                        continue;
                join(kpath, sizeof(kpath), mpath, meta_keys[i]);
                r = cp_json_get_time(c->out, m, kpath, "value", true, c->tz, ts, has_ts);
                if (r < 0 || *has_ts)
                        return r;
        }
        return 0;
}

/* Finds attribute `key` of entity `e` (at `epath`, "" at the top level) and where its value is:
 * under `key` itself (keyValues) or under "value" of the attribute object (normalized), with the
 * attribute's own time. A null attribute or value is absent, as everywhere in cp_json. */
static int find_attr(struct ngsi_ctx *c, const json_t *e, const char *epath, const char *key, struct attr *a)
{
        const json_t *v = json_object_get(e, key);
        char apath[PATH_LEN];

        a->present = false;
        a->has_ts = false;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_object(v)) {
                a->obj = e;
                a->key = key;
                join(a->path, sizeof(a->path), epath, "");
                a->present = true;
                return 0;
        }
        /* A JSON-LD typed literal ({"@type":"DateTime","@value":"..."}) is a keyValues value. */
        if (!json_object_get(v, "value") && json_object_get(v, "@value")) {
                a->obj = e;
                a->key = key;
                join(a->path, sizeof(a->path), epath, "");
                a->present = true;
                return 0;
        }
        join(apath, sizeof(apath), epath, key);
        /* A Relationship carries "object" instead: it is no measured value. */
        if (!json_object_get(v, "value"))
                return cp_batch_fail(c->out, CP_REASON_MISSING_FIELD, "%s.value is missing", apath);
        if (json_is_null(json_object_get(v, "value")))
                return 0;
        a->obj = v;
        a->key = "value";
        join(a->path, sizeof(a->path), apath, "");
        a->present = true;
        return read_attr_time(c, v, apath, &a->has_ts, &a->ts);
}

/* An entity-level time attribute. Its value may be a string or number, or in NGSI-LD a typed
 * literal {"@type":"DateTime","@value":"..."} (the models' observationDateTime). */
static int read_entity_time(struct ngsi_ctx *c, const json_t *e, const char *epath, const char *key,
                            bool *has_ts, int64_t *ts)
{
        char vpath[PATH_LEN];
        struct attr a;
        json_t *v;
        int r;

        *has_ts = false;
        r = find_attr(c, e, epath, key, &a);
        if (r < 0 || !a.present)
                return r;
        v = json_object_get(a.obj, a.key);
        if (json_is_object(v)) {
                join(vpath, sizeof(vpath), a.path, a.key);
                return cp_json_get_time(c->out, v, vpath, "@value", true, c->tz, ts, has_ts);
        }
        return cp_json_get_time(c->out, a.obj, a.path, a.key, true, c->tz, ts, has_ts);
}

/* The entity's default observation time, or has_ts false. */
static int read_entity_times(struct ngsi_ctx *c, const json_t *e, const char *epath, bool *has_ts,
                             int64_t *ts)
{
        static const char *const keys[] = {"occupancyModified", "dateObserved", "observationDateTime",
                                           "TimeInstant"};
        int r;

        for (size_t i = 0; i < CP_ARRAY_LEN(keys); i++) {
                r = read_entity_time(c, e, epath, keys[i], has_ts, ts);
                if (r < 0 || *has_ts)
                        return r;
        }
        return 0;
}

static int decode_facility(struct ngsi_ctx *c, const json_t *e, const char *epath, const char *id)
{
        static const char *const keys[] = {"totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber"};
        static const enum cp_quantity qs[] = {CP_Q_TOTAL_SPACES, CP_Q_FREE_SPACES, CP_Q_OCCUPIED_SPACES};
        struct attr a[3];
        int64_t v[3] = {0}, ts = 0, first_ts = 0;
        bool has_ts, has_first = false;
        char names[3][PATH_LEN];
        int r;

        for (size_t i = 0; i < 3; i++) {
                r = find_attr(c, e, epath, keys[i], &a[i]);
                if (r < 0)
                        return r;
                if (!a[i].present)
                        continue;
                r = cp_json_get_count(c->out, a[i].obj, a[i].path, a[i].key, true, &v[i], NULL);
                if (r < 0)
                        return r;
                join(names[i], sizeof(names[i]), epath, keys[i]);
                if (a[i].has_ts && !has_first) {
                        first_ts = a[i].ts;
                        has_first = true;
                }
        }
        if (!a[0].present && !a[1].present && !a[2].present)
                return 0;
        if (a[0].present && a[1].present && v[1] > v[0])
                return cp_batch_fail(c->out, CP_REASON_INCONSISTENT, "%s %lld is greater than %s %lld",
                                     names[1], (long long)v[1], names[0], (long long)v[0]);
        if (a[0].present && a[2].present && v[2] > v[0])
                return cp_batch_fail(c->out, CP_REASON_INCONSISTENT, "%s %lld is greater than %s %lld",
                                     names[2], (long long)v[2], names[0], (long long)v[0]);
        if (a[0].present && a[1].present && a[2].present && v[1] + v[2] > v[0])
                return cp_batch_fail(c->out, CP_REASON_INCONSISTENT,
                                     "%s %lld + %s %lld is greater than %s %lld", names[1], (long long)v[1],
                                     names[2], (long long)v[2], names[0], (long long)v[0]);
        r = read_entity_times(c, e, epath, &has_ts, &ts);
        if (r < 0)
                return r;
        if (!has_ts)
                ts = has_first ? first_ts : c->msg->rx_ms;
        for (size_t i = 0; i < 3; i++) {
                if (!a[i].present)
                        continue;
                r = cp_batch_add(c->out, id, qs[i], (double)v[i], a[i].has_ts ? a[i].ts : ts, c->msg->rx_ms);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int decode_spot(struct ngsi_ctx *c, const json_t *e, const char *epath, const char *id)
{
        char name[PATH_LEN];
        struct attr a;
        const char *s;
        bool has_ts;
        int64_t ts;
        int occupied, r;

        r = find_attr(c, e, epath, "status", &a);
        if (r < 0 || !a.present)
                return r;
        r = cp_json_get_string(c->out, a.obj, a.path, a.key, true, SIZE_MAX, &s, NULL);
        if (r < 0)
                return r;
        if (strcmp(s, "occupied") == 0) {
                occupied = 1;
        } else if (strcmp(s, "free") == 0) {
                occupied = 0;
        } else if (strcmp(s, "closed") == 0 || strcmp(s, "unknown") == 0) {
                return 0;
        } else {
                join(name, sizeof(name), epath, "status");
                return cp_batch_fail(c->out, CP_REASON_OUT_OF_RANGE,
                                     "%s '%.40s' is not one of free, occupied, closed, unknown", name, s);
        }
        has_ts = a.has_ts;
        ts = a.ts;
        if (!has_ts) {
                r = read_entity_times(c, e, epath, &has_ts, &ts);
                if (r < 0)
                        return r;
        }
        return cp_batch_add(c->out, id, CP_Q_OCCUPIED, occupied, has_ts ? ts : c->msg->rx_ms, c->msg->rx_ms);
}

/* One entity at `epath` ("" for a lone entity, "data[2]", "[2]"). */
static int decode_entity(struct ngsi_ctx *c, const json_t *e, const char *epath)
{
        char id[CP_SENSOR_ID_MAX];
        const char *type;
        int r;

        if (!json_is_object(e))
                return cp_json_fail_type(c->out, NULL, epath, e, "object");
        r = cp_json_get_id(c->out, e, epath, "id", false, id);
        if (r < 0)
                return r;
        if (c->topic_id && (strlen(id) != c->topic_id_len || memcmp(id, c->topic_id, c->topic_id_len) != 0))
                return cp_batch_fail(c->out, CP_REASON_ID_MISMATCH,
                                     "%s%sid '%s' does not match the topic's entity '%.*s'", epath,
                                     epath[0] ? "." : "", id, (int)c->topic_id_len, c->topic_id);
        r = cp_json_get_string(c->out, e, epath, "type", true, SIZE_MAX, &type, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < CP_ARRAY_LEN(entity_types); i++) {
                if (strcmp(type, entity_types[i].type) != 0)
                        continue;
                if (entity_types[i].kind == KIND_SPOT)
                        return decode_spot(c, e, epath, id);
                return decode_facility(c, e, epath, id);
        }
        return cp_batch_fail(c->out, CP_REASON_UNSUPPORTED,
                             "%s%stype '%.100s' is not OffStreetParking, OnStreetParking or ParkingSpot",
                             epath, epath[0] ? "." : "", type);
}

/* The entities of an array at `path` ("data", "body.data", or "" for a top-level array). */
static int decode_list(struct ngsi_ctx *c, const json_t *list, const char *path)
{
        size_t n = json_array_size(list);
        char epath[PATH_LEN];
        int r;

        /* Each entity may give a reading; more than the batch holds cannot be stored whole. */
        if (n > CP_BATCH_CAP)
                return cp_batch_fail(c->out, CP_REASON_TOO_MANY_READINGS, "%s has %zu entities, limit %d",
                                     path[0] ? path : "payload", n, CP_BATCH_CAP);
        for (size_t i = 0; i < n; i++) {
                (void)snprintf(epath, sizeof(epath), "%s[%zu]", path, i);
                r = decode_entity(c, json_array_get(list, i), epath);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A notification ({"subscriptionId":..,"data":[..]}, NGSI v2 and NGSI-LD) has "data" and is not an
 * entity: an entity always has "id" and its own "type"; the NGSI-LD notification's type is
 * "Notification". */
static bool is_notification(const json_t *root)
{
        const json_t *type = json_object_get(root, "type");

        if (!json_object_get(root, "data"))
                return false;
        return json_object_get(root, "subscriptionId") || !type ||
               (json_is_string(type) && strcmp(json_string_value(type), "Notification") == 0);
}

static int decode_object(struct ngsi_ctx *c, const json_t *root, const char *path)
{
        char dpath[PATH_LEN];
        json_t *data;
        int r;

        if (!is_notification(root))
                return decode_entity(c, root, path);
        join(dpath, sizeof(dpath), path, "data");
        r = cp_json_get_array(c->out, root, path, "data", true, &data, NULL);
        if (r < 0)
                return r;
        return decode_list(c, data, dpath);
}

/* The topic's last level, when it names an entity: NGSI-LD ids are URIs, and a level starting with
 * "urn:" is no generic topic word. Plain NGSI v2 ids ("porto-ParkingLot-23889") cannot be told from
 * a topic word and are not checked. */
static void find_topic_id(struct ngsi_ctx *c)
{
        const char *t = c->msg->topic, *last;

        c->topic_id = NULL;
        c->topic_id_len = 0;
        if (!t)
                return;
        last = strrchr(t, '/');
        last = last ? last + 1 : t;
        if (strncasecmp(last, "urn:", 4) != 0)
                return;
        c->topic_id = last;
        c->topic_id_len = strlen(last);
}

static int ngsi_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct cp_tz *tz = state;
        struct ngsi_ctx c = {.tz = tz, .msg = msg, .out = out};
        json_t *root = NULL, *body;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_pruned_any(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        find_topic_id(&c);
        if (json_is_array(root)) {
                r = decode_list(&c, root, "");
        } else if (!json_is_object(root)) {
                r = cp_json_fail_type(out, NULL, "payload", root, "object or array");
        } else if (!json_object_get(root, "id") && !json_object_get(root, "type") &&
                   json_object_get(root, "body")) {
                /* The NGSI-LD MQTT binding: {"metadata":{<headers>},"body":<notification>}. */
                r = cp_json_get_object(out, root, NULL, "body", true, &body, NULL);
                if (r == 0)
                        r = decode_object(&c, body, "body");
        } else {
                r = decode_object(&c, root, "");
        }
        if (r == 0 && out->n == 0)
                r = -ENODATA;
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_ngsi = {
    .abi = CP_DRIVER_ABI,
    .name = "ngsi",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = ngsi_decode,
};
