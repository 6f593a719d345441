/* ngsild.c - see ngsild.h. */
#include "ngsild.h"

#include "buf.h"
#include "citypulse/cp_driver.h"
#include "timefmt.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define URN_PREFIX "urn:ngsi-ld:"

const char *cp_ngsild_context_url(void)
{
        return CP_NGSILD_SDM_CONTEXT;
}

/* --- ids --- */

/* Locale-independent, unlike isalpha(). */
static bool ascii_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool urn_safe(unsigned char c)
{
        return ascii_alpha((char)c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
               c == '~' || c == ':';
}

static void put_urn(struct cp_buf *b, const char *type, const char *prefix, const char *local)
{
        static const char hex[] = "0123456789ABCDEF";

        cp_buf_printf(b, URN_PREFIX "%s:%s", type, prefix);
        for (const unsigned char *p = (const unsigned char *)local; *p; p++) {
                if (urn_safe(*p)) {
                        cp_buf_putc(b, (char)*p);
                } else {
                        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
                        cp_buf_append(b, esc, 3);
                }
        }
}

char *cp_ngsild_id(const char *type, const char *local)
{
        struct cp_buf b = CP_BUF_INIT;

        put_urn(&b, type, "", local);
        return cp_buf_steal(&b);
}

static json_t *urn_json(const char *type, const char *prefix, const char *local)
{
        struct cp_buf b = CP_BUF_INIT;
        json_t *j;

        put_urn(&b, type, prefix, local);
        j = b.oom ? NULL : json_stringn(b.p, b.len);
        cp_buf_free(&b);
        return j;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes the local id s into out (NULL: only checks and measures). Returns the decoded length or
 * -EINVAL. */
static ssize_t decode_local(const char *s, char *out)
{
        size_t n = 0;

        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '%') {
                        int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
                        if (lo < 0 || (hi | lo) == 0)
                                return -EINVAL;
                        c = (unsigned char)(hi << 4 | lo);
                        s += 2;
                } else if (c <= ' ' || c == 0x7f) {
                        return -EINVAL;
                }
                if (out)
                        out[n] = (char)c;
                n++;
        }
        return n ? (ssize_t)n : -EINVAL;
}

static bool utf8_ok(const char *s, size_t len)
{
        for (size_t i = 0, n; i < len; i += n) {
                uint32_t cp;

                n = (unsigned char)s[i] < 0x80 ? 1 : cp_utf8_seq((const uint8_t *)s + i, len - i, &cp);
                if (n == 0)
                        return false;
        }
        return true;
}

int cp_ngsild_parse_id(const char *urn, char *type, size_t tlen, char *id, size_t idlen)
{
        const char *t, *colon;
        size_t n_type;
        ssize_t n_id;
        char *tmp;

        if (!urn || strncasecmp(urn, URN_PREFIX, strlen(URN_PREFIX)) != 0)
                return -EINVAL;
        t = urn + strlen(URN_PREFIX);
        colon = strchr(t, ':');
        if (!colon || colon == t)
                return -EINVAL;
        n_type = (size_t)(colon - t);
        if (!ascii_alpha(t[0]))
                return -EINVAL;
        for (size_t i = 1; i < n_type; i++)
                if (!ascii_alpha(t[i]) && !(t[i] >= '0' && t[i] <= '9') && t[i] != '_')
                        return -EINVAL;
        n_id = decode_local(colon + 1, NULL);
        if (n_id < 0)
                return (int)n_id;
        if (n_type >= tlen || (size_t)n_id >= idlen)
                return -ENAMETOOLONG;
        tmp = malloc((size_t)n_id + 1);
        if (!tmp)
                return -ENOMEM;
        (void)decode_local(colon + 1, tmp);
        if (!utf8_ok(tmp, (size_t)n_id)) {
                free(tmp);
                return -EINVAL;
        }
        memcpy(type, t, n_type);
        type[n_type] = '\0';
        memcpy(id, tmp, (size_t)n_id);
        id[n_id] = '\0';
        free(tmp);
        return 0;
}

/* --- attributes --- */

/* An entity being built; any failed allocation makes the whole entity NULL at the end. */
struct ent {
        json_t *e;
        const struct cp_ngsild_opts *o;
        bool oom;
};

static void put(struct ent *b, const char *name, json_t *attr)
{
        if (json_object_set_new(b->e, name, attr) < 0)
                b->oom = true;
}

static json_t *utc_iso(int64_t ms)
{
        char buf[CP_ISO_MAX];

        return json_string(cp_time_iso(buf, sizeof(buf), ms, NULL));
}

/* {"type": type, key: value}; value is stolen on every path. */
static json_t *wrap_in(json_t *value, const char *type, const char *key)
{
        json_t *a = json_object();

        if (!a || json_object_set_new(a, "type", json_string(type)) < 0) {
                json_decref(value);
                json_decref(a);
                return NULL;
        }
        if (json_object_set_new(a, key, value) < 0) {
                json_decref(a);
                return NULL;
        }
        return a;
}

/* value (stolen) as a Property; observedAt when observed_ms > 0, unitCode when unit. */
static json_t *prop(const struct ent *b, json_t *value, int64_t observed_ms, const char *unit)
{
        json_t *a;

        if (!value || b->o->key_values)
                return value;
        a = wrap_in(value, "Property", "value");
        if (!a)
                return NULL;
        if ((observed_ms > 0 && json_object_set_new(a, "observedAt", utc_iso(observed_ms)) < 0) ||
            (unit && json_object_set_new(a, "unitCode", json_string(unit)) < 0)) {
                json_decref(a);
                return NULL;
        }
        return a;
}

static json_t *wrap(const struct ent *b, const char *type, const char *key, json_t *value)
{
        if (!value || b->o->key_values)
                return value;
        return wrap_in(value, type, key);
}

static void put_location(struct ent *b, double lat, double lon)
{
        json_t *pt = json_pack("{s:s, s:[f, f]}", "type", "Point", "coordinates", lon, lat);

        put(b, "location", wrap(b, "GeoProperty", "value", pt));
}

static void put_time(struct ent *b, const char *name, int64_t ms)
{
        char buf[CP_ISO_MAX];

        if (ms > 0)
                put(b, name, prop(b, json_string(cp_time_iso(buf, sizeof(buf), ms, b->o->tz)), 0, NULL));
}

static void put_text(struct ent *b, const char *name, const char *s)
{
        if (s && *s)
                put(b, name, prop(b, json_string(s), 0, NULL));
}

static bool ent_begin(struct ent *b, const struct cp_ngsild_opts *o, const char *type, const char *prefix,
                      const char *local)
{
        b->o = o;
        b->oom = false;
        b->e = json_object();
        if (!b->e)
                return false;
        put(b, "id", urn_json(type, prefix, local));
        put(b, "type", json_string(type));
        return true;
}

static json_t *ent_end(struct ent *b)
{
        if (b->o->context_in_body)
                put(b, "@context", json_pack("[s, s]", CP_NGSILD_SDM_CONTEXT, CP_NGSILD_CORE_CONTEXT));
        if (b->oom) {
                json_decref(b->e);
                return NULL;
        }
        return b->e;
}

/* --- entities --- */

static const char *parking_status(enum cp_fstatus s)
{
        switch (s) {
        case CP_FS_OPEN:
                return "spacesAvailable";
        case CP_FS_FULL:
                return "full";
        case CP_FS_CLOSED:
                return "closed";
        case CP_FS_UNKNOWN:
        default:
                return "unknown";
        }
}

static json_t *spot_refs(const struct cp_reg_facility *f)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < f->n_spots; i++) {
                const struct cp_sensor *s = f->spots[i];

                if (json_array_append_new(a, urn_json("ParkingSpot", "", s->id)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

json_t *cp_ngsild_parking(const struct cp_reg_facility *f, const struct cp_facility_view *v,
                          const struct cp_ngsild_opts *o)
{
        int64_t t = v->last_reported_ms;
        struct ent b;

        if (!ent_begin(&b, o, "OffStreetParking", "", f->id))
                return NULL;
        put_text(&b, "name", f->name);
        if (f->city && *f->city)
                put(&b, "address",
                    prop(&b, json_pack("{s:s, s:s}", "type", "PostalAddress", "addressLocality", f->city), 0,
                         NULL));
        if (f->has_geo)
                put_location(&b, f->lat, f->lon);
        put(&b, "totalSpotNumber", prop(&b, json_integer(v->total_spaces), 0, NULL));
        if (v->known) {
                int64_t occ = (v->from_spots ? v->known_spots : v->total_spaces) - v->free_spaces;

                put(&b, "availableSpotNumber", prop(&b, json_integer(v->free_spaces), t, NULL));
                put(&b, "occupiedSpotNumber", prop(&b, json_integer(occ < 0 ? 0 : occ), t, NULL));
                put(&b, "occupancy",
                    prop(&b, json_real(round(v->occupancy_rate * 1000.0) / 1000.0), t, NULL));
        }
        put(&b, "status", prop(&b, json_string(parking_status(v->status)), v->known ? t : 0, NULL));
        put_time(&b, "occupancyModified", t);
        if (f->n_spots)
                put(&b, "refParkingSpot", wrap(&b, "Relationship", "object", spot_refs(f)));
        return ent_end(&b);
}

json_t *cp_ngsild_spot(const struct cp_reg_sensor *s, const struct cp_qval *occupied, bool fresh,
                       const struct cp_ngsild_opts *o)
{
        const struct cp_reg_facility *f = s->facility;
        const char *status = "unknown";
        int64_t obs = 0;
        struct ent b;

        if (!ent_begin(&b, o, "ParkingSpot", "", s->id))
                return NULL;
        put_text(&b, "name", s->spot_id);
        if (f)
                put(&b, "category", prop(&b, json_pack("[s]", "offStreet"), 0, NULL));
        if (occupied && fresh) {
                status = occupied->value != 0 ? "occupied" : "free";
                obs = occupied->ts_ms;
        }
        put(&b, "status", prop(&b, json_string(status), obs, NULL));
        if (occupied)
                put_time(&b, "observationDateTime", occupied->ts_ms);
        if (f) {
                put(&b, "refParkingSite",
                    wrap(&b, "Relationship", "object", urn_json("OffStreetParking", "", f->id)));
                if (f->has_geo)
                        put_location(&b, f->lat, f->lon);
        }
        return ent_end(&b);
}

static json_t *energy(const char *prefix, const char *local, const char *name, const char *district,
                      const struct cp_energy_view *v, const struct cp_ngsild_opts *o)
{
        int64_t t = v->last_reported_ms;
        struct ent b;

        if (!ent_begin(&b, o, "ACMeasurement", prefix, local))
                return NULL;
        put_text(&b, "name", name);
        put_text(&b, "areaServed", district);
        put_time(&b, "dateObserved", t);
        if (v->known && v->has_power && isfinite(v->power_w))
                put(&b, "totalActivePower", prop(&b, json_real(v->power_w), t, "WTT"));
        if (v->known && v->has_import && isfinite(v->energy_import_kwh))
                put(&b, "totalActiveEnergyImport", prop(&b, json_real(v->energy_import_kwh), t, "KWH"));
        if (v->known && v->has_export && isfinite(v->energy_export_kwh))
                put(&b, "totalActiveEnergyExport", prop(&b, json_real(v->energy_export_kwh), t, "KWH"));
        return ent_end(&b);
}

json_t *cp_ngsild_meter(const char *id, const char *district, const struct cp_energy_view *v,
                        const struct cp_ngsild_opts *o)
{
        return energy("", id, id, district, v, o);
}

json_t *cp_ngsild_district(const char *name, const struct cp_energy_view *v, const struct cp_ngsild_opts *o)
{
        return energy(CP_NGSILD_DISTRICT_PREFIX, name, name, name, v, o);
}
