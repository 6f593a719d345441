/* registry.c - strict CSV reader for the registry files: ';'-separated, UTF-8 (a BOM is skipped), one
 * header row naming the columns (any order, extra columns allowed), RFC 4180 double quotes. */
#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "citypulse/cp_common.h"
#include "citypulse/cp_driver.h"

#define MAX_FIELDS 32

const char *cp_skind_name(enum cp_skind k)
{
        switch (k) {
        case CP_SK_SPOT:
                return "spot";
        case CP_SK_FACILITY:
                return "facility";
        case CP_SK_METER:
                return "meter";
        case CP_SK_PV:
                return "pv";
        case CP_SK_UNREGISTERED:
                break;
        }
        return "unregistered";
}

struct csv_row {
        char *field[MAX_FIELDS];
        size_t n;
};

/* Splits one line in place. Returns 0, or -EINVAL with why set (unbalanced quote, too many fields). */
static int split_row(char *line, struct csv_row *row, const char **why)
{
        char *r = line, *w = line;

        row->n = 0;
        for (;;) {
                if (row->n == MAX_FIELDS) {
                        *why = "more than 32 columns";
                        return -EINVAL;
                }
                row->field[row->n++] = w;
                if (*r == '"') {
                        r++;
                        for (;;) {
                                if (!*r) {
                                        *why = "unterminated quoted field";
                                        return -EINVAL;
                                }
                                if (*r == '"' && r[1] == '"') {
                                        *w++ = '"';
                                        r += 2;
                                } else if (*r == '"') {
                                        r++;
                                        break;
                                } else {
                                        *w++ = *r++;
                                }
                        }
                        if (*r && *r != ';') {
                                *why = "text after a closing quote";
                                return -EINVAL;
                        }
                } else {
                        while (*r && *r != ';') {
                                if (*r == '"') {
                                        *why = "quote inside an unquoted field";
                                        return -EINVAL;
                                }
                                *w++ = *r++;
                        }
                }
                if (!*r) {
                        *w = '\0';
                        return 0;
                }
                *w++ = '\0';
                r++;
        }
}

static bool valid_utf8(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        while (*p) {
                int n;
                if (*p < 0x80) {
                        if (*p < 0x20 && *p != '\t')
                                return false;
                        p++;
                        continue;
                } else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
                        n = 1;
                else if ((*p & 0xf0) == 0xe0)
                        n = 2;
                else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
                        n = 3;
                else
                        return false;
                p++;
                for (int i = 0; i < n; i++, p++)
                        if ((*p & 0xc0) != 0x80)
                                return false;
        }
        return true;
}

struct csv {
        const char *name;
        char *buf;
        char *p;
        int line;
        const char *cols[MAX_FIELDS]; /* wanted column names */
        int idx[MAX_FIELDS];          /* their index in the header, or -1 */
        size_t n_cols;
};

/* Next non-empty line into row; returns 1, 0 at the end, -EINVAL on a bad line (reported). */
static int csv_next(struct csv *c, struct csv_row *row, struct cp_config_errors *errs)
{
        const char *why = NULL;

        while (c->p && *c->p) {
                char *line = c->p, *nl = strchr(line, '\n');
                size_t len;

                c->line++;
                if (nl) {
                        *nl = '\0';
                        c->p = nl + 1;
                } else {
                        c->p = NULL;
                }
                len = strlen(line);
                if (len && line[len - 1] == '\r')
                        line[--len] = '\0';
                if (len == 0)
                        continue;
                if (!valid_utf8(line)) {
                        cp_config_error(errs, c->name, c->line, "invalid UTF-8 or control character");
                        return -EINVAL;
                }
                if (split_row(line, row, &why) < 0) {
                        cp_config_error(errs, c->name, c->line, "%s", why);
                        return -EINVAL;
                }
                for (size_t i = 0; i < row->n; i++) {
                        char *f = row->field[i], *e = f + strlen(f);
                        while (*f == ' ')
                                f++;
                        while (e > f && e[-1] == ' ')
                                *--e = '\0';
                        row->field[i] = f;
                }
                return 1;
        }
        return 0;
}

static int csv_header(struct csv *c, struct csv_row *row, struct cp_config_errors *errs)
{
        int r = csv_next(c, row, errs);

        if (r == 0) {
                cp_config_error(errs, c->name, 0, "empty file, expected a header row");
                return -EINVAL;
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_cols; i++) {
                c->idx[i] = -1;
                for (size_t j = 0; j < row->n; j++)
                        if (strcmp(row->field[j], c->cols[i]) == 0)
                                c->idx[i] = (int)j;
                if (c->idx[i] < 0) {
                        cp_config_error(errs, c->name, c->line, "header: missing column '%s'", c->cols[i]);
                        r = -EINVAL;
                }
        }
        return r < 0 ? r : 0;
}

static const char *col(const struct csv *c, const struct csv_row *row, size_t i)
{
        int j = c->idx[i];
        return j >= 0 && (size_t)j < row->n ? row->field[j] : "";
}

static int parse_double(const char *s, double *ret)
{
        char *end;

        if (!*s)
                return -EINVAL;
        errno = 0;
        *ret = strtod(s, &end);
        if (errno || *end || !isfinite(*ret))
                return -EINVAL;
        return 0;
}

static char *dup_or_null(const char *s)
{
        return strdup(s ? s : "");
}

/* Turns map values holding index + 1 into pointers to the array's members. */
static void index_to_pointer(struct cp_map *m, void *base, size_t size)
{
        for (size_t i = 0; i < m->cap; i++)
                if (m->e[i].key)
                        m->e[i].value = (char *)base + ((uintptr_t)m->e[i].value - 1) * size;
}

enum { F_ID, F_NAME, F_TOTAL, F_LAT, F_LON, F_CITY, F_OPERATOR };
enum { S_ID, S_KIND, S_PARKING, S_SPOT, S_DISTRICT };

static int parse_facilities(struct cp_registry *reg, const char *name, char *text, struct cp_config_errors *errs)
{
        struct csv c = {.name = name, .p = text,
                        .cols = {"parking_id", "name", "total_spaces", "lat", "lon", "city", "operator"},
                        .n_cols = 7};
        struct csv_row row;
        int r, bad = 0;

        if ((r = csv_header(&c, &row, errs)) < 0)
                return r;
        while ((r = csv_next(&c, &row, errs)) != 0) {
                struct cp_reg_facility *f, *v;
                const char *id = col(&c, &row, F_ID), *lat = col(&c, &row, F_LAT), *lon = col(&c, &row, F_LON);
                char *end;
                long long total;

                if (r < 0) {
                        bad++;
                        continue;
                }
                if (cp_sensor_id_valid(id, strlen(id)) < 0) {
                        cp_config_error(errs, name, c.line, "parking_id '%s' is empty or has forbidden characters", id);
                        bad++;
                        continue;
                }
                if (cp_map_get(&reg->by_facility, id, strlen(id))) {
                        cp_config_error(errs, name, c.line, "parking_id '%s' appears twice", id);
                        bad++;
                        continue;
                }
                errno = 0;
                total = strtoll(col(&c, &row, F_TOTAL), &end, 10);
                if (errno || *end || end == col(&c, &row, F_TOTAL) || total < 0 || total > 1000000) {
                        cp_config_error(errs, name, c.line, "total_spaces '%s' is not a count 0..1000000",
                                        col(&c, &row, F_TOTAL));
                        bad++;
                        continue;
                }
                v = realloc(reg->facilities, (reg->n_facilities + 1) * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                reg->facilities = v;
                f = &v[reg->n_facilities];
                memset(f, 0, sizeof(*f));
                if (*lat || *lon) {
                        if (parse_double(lat, &f->lat) < 0 || parse_double(lon, &f->lon) < 0 || f->lat < -90 ||
                            f->lat > 90 || f->lon < -180 || f->lon > 180) {
                                cp_config_error(errs, name, c.line,
                                                "lat '%s' lon '%s': expected decimal degrees, lat -90..90, lon -180..180",
                                                lat, lon);
                                bad++;
                                continue;
                        }
                        f->has_geo = true;
                }
                f->id = strdup(id);
                f->name = dup_or_null(col(&c, &row, F_NAME));
                f->city = dup_or_null(col(&c, &row, F_CITY));
                f->operator_ = dup_or_null(col(&c, &row, F_OPERATOR));
                f->total_spaces = total;
                reg->n_facilities++;
                if (!f->id || !f->name || !f->city || !f->operator_)
                        return -ENOMEM;
                /* The array may still move: the map holds index + 1 until parsing ends. */
                if (cp_map_put(&reg->by_facility, f->id, (void *)(uintptr_t)reg->n_facilities) < 0)
                        return -ENOMEM;
        }
        index_to_pointer(&reg->by_facility, reg->facilities, sizeof(*reg->facilities));
        return bad ? -EINVAL : 0;
}

static struct cp_reg_district *district_get(struct cp_registry *reg, const char *name)
{
        struct cp_reg_district *v;

        for (size_t i = 0; i < reg->n_districts; i++)
                if (strcmp(reg->districts[i].name, name) == 0)
                        return &reg->districts[i];
        v = realloc(reg->districts, (reg->n_districts + 1) * sizeof(*v));
        if (!v)
                return NULL;
        reg->districts = v;
        memset(&v[reg->n_districts], 0, sizeof(*v));
        v[reg->n_districts].name = strdup(name);
        if (!v[reg->n_districts].name)
                return NULL;
        return &v[reg->n_districts++];
}

static int parse_sensors(struct cp_registry *reg, const char *name, char *text, struct cp_config_errors *errs)
{
        struct csv c = {.name = name, .p = text,
                        .cols = {"sensor_id", "kind", "parking_id", "spot_id", "district"}, .n_cols = 5};
        struct csv_row row;
        /* Districts are referenced by index until the array stops moving. */
        size_t *district_of = NULL;
        int r, bad = 0;

        if ((r = csv_header(&c, &row, errs)) < 0)
                return r;
        while ((r = csv_next(&c, &row, errs)) != 0) {
                const char *id = col(&c, &row, S_ID), *kind = col(&c, &row, S_KIND);
                const char *pid = col(&c, &row, S_PARKING), *spot = col(&c, &row, S_SPOT);
                const char *dist = col(&c, &row, S_DISTRICT);
                struct cp_reg_sensor *s, *v;
                struct cp_reg_facility *f = NULL;
                struct cp_reg_district *d = NULL;
                enum cp_skind k;
                size_t *dv;

                if (r < 0) {
                        bad++;
                        continue;
                }
                if (cp_sensor_id_valid(id, strlen(id)) < 0) {
                        cp_config_error(errs, name, c.line, "sensor_id '%s' is empty or has forbidden characters", id);
                        bad++;
                        continue;
                }
                if (strcmp(kind, "spot") == 0)
                        k = CP_SK_SPOT;
                else if (strcmp(kind, "facility") == 0)
                        k = CP_SK_FACILITY;
                else if (strcmp(kind, "meter") == 0)
                        k = CP_SK_METER;
                else if (strcmp(kind, "pv") == 0)
                        k = CP_SK_PV;
                else {
                        cp_config_error(errs, name, c.line, "kind '%s' is not one of spot, facility, meter, pv", kind);
                        bad++;
                        continue;
                }
                if (cp_map_get(&reg->by_sensor, id, strlen(id))) {
                        cp_config_error(errs, name, c.line, "sensor_id '%s' appears twice", id);
                        bad++;
                        continue;
                }
                if (k == CP_SK_SPOT || k == CP_SK_FACILITY) {
                        f = *pid ? cp_map_get(&reg->by_facility, pid, strlen(pid)) : NULL;
                        if (!f) {
                                cp_config_error(errs, name, c.line, "%s sensor '%s': parking_id '%s' is not in the facilities file",
                                                kind, id, pid);
                                bad++;
                                continue;
                        }
                } else if (!*dist) {
                        cp_config_error(errs, name, c.line, "%s sensor '%s': district is empty", kind, id);
                        bad++;
                        continue;
                }
                if (*dist && !(d = district_get(reg, dist)))
                        return -ENOMEM;
                v = realloc(reg->sensors, (reg->n_sensors + 1) * sizeof(*v));
                dv = realloc(district_of, (reg->n_sensors + 1) * sizeof(*dv));
                if (v)
                        reg->sensors = v;
                if (dv)
                        district_of = dv;
                if (!v || !dv) {
                        free(district_of);
                        return -ENOMEM;
                }
                s = &v[reg->n_sensors];
                memset(s, 0, sizeof(*s));
                district_of[reg->n_sensors] = d ? (size_t)(d - reg->districts) : SIZE_MAX;
                s->id = strdup(id);
                s->kind = k;
                s->spot_id = strdup(*spot ? spot : id);
                s->facility = f;
                reg->n_sensors++;
                if (!s->id || !s->spot_id) {
                        free(district_of);
                        return -ENOMEM;
                }
                if (cp_map_put(&reg->by_sensor, s->id, (void *)(uintptr_t)reg->n_sensors) < 0) {
                        free(district_of);
                        return -ENOMEM;
                }
        }
        index_to_pointer(&reg->by_sensor, reg->sensors, sizeof(*reg->sensors));
        for (size_t i = 0; i < reg->n_sensors; i++)
                reg->sensors[i].district = district_of[i] == SIZE_MAX ? NULL : &reg->districts[district_of[i]];
        free(district_of);
        return bad ? -EINVAL : 0;
}

void cp_registry_free(struct cp_registry *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_facilities; i++) {
                struct cp_reg_facility *f = &r->facilities[i];
                free(f->id);
                free(f->name);
                free(f->city);
                free(f->operator_);
                free(f->spots);
                free(f->counters);
        }
        for (size_t i = 0; i < r->n_sensors; i++) {
                free(r->sensors[i].id);
                free(r->sensors[i].spot_id);
        }
        for (size_t i = 0; i < r->n_districts; i++) {
                free(r->districts[i].name);
                free(r->districts[i].meters);
        }
        free(r->facilities);
        free(r->sensors);
        free(r->districts);
        cp_map_done(&r->by_facility);
        cp_map_done(&r->by_sensor);
        free(r);
}

static char *strip_bom(char *s)
{
        return strncmp(s, "\xef\xbb\xbf", 3) == 0 ? s + 3 : s;
}

int cp_registry_parse(const char *fac_name, const char *fac_text, const char *sen_name, const char *sen_text,
                      struct cp_registry **ret, struct cp_config_errors *errs)
{
        struct cp_registry *reg = calloc(1, sizeof(*reg));
        char *ft = NULL, *st = NULL;
        int r = 0, r2;

        if (!reg)
                return -ENOMEM;
        if (fac_text) {
                if (!(ft = strdup(fac_text))) {
                        r = -ENOMEM;
                        goto out;
                }
                r = parse_facilities(reg, fac_name, strip_bom(ft), errs);
                if (r == -ENOMEM)
                        goto out;
        }
        if (sen_text) {
                if (!(st = strdup(sen_text))) {
                        r = -ENOMEM;
                        goto out;
                }
                /* Parse the sensors even when the facilities had errors, to report everything at once. */
                r2 = parse_sensors(reg, sen_name, strip_bom(st), errs);
                if (r2 < 0 && r == 0)
                        r = r2;
        }
out:
        free(ft);
        free(st);
        if (r < 0) {
                cp_registry_free(reg);
                return r;
        }
        *ret = reg;
        return 0;
}

static int slurp(const char *path, char **ret, struct cp_config_errors *errs)
{
        FILE *f = fopen(path, "re");
        long n;
        char *buf;

        if (!f) {
                int r = -errno;
                cp_config_error(errs, path, 0, "cannot open: %s", strerror(-r));
                return r;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0 || n > (256L << 20)) {
                cp_config_error(errs, path, 0, "cannot read (or larger than 256 MiB)");
                fclose(f);
                return -EIO;
        }
        buf = malloc((size_t)n + 1);
        if (!buf) {
                fclose(f);
                return -ENOMEM;
        }
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                cp_config_error(errs, path, 0, "read error");
                free(buf);
                fclose(f);
                return -EIO;
        }
        fclose(f);
        buf[n] = '\0';
        if (strlen(buf) != (size_t)n) {
                cp_config_error(errs, path, 0, "NUL byte in file");
                free(buf);
                return -EINVAL;
        }
        *ret = buf;
        return 0;
}

int cp_registry_load(const struct cp_config *c, struct cp_registry **ret, struct cp_config_errors *errs)
{
        char *ft = NULL, *st = NULL;
        int r = 0;

        if (c->registry_sensors && !c->registry_facilities) {
                cp_config_error(errs, c->file, 0, "registry.sensors needs registry.facilities");
                return -EINVAL;
        }
        if (c->registry_facilities && (r = slurp(c->registry_facilities, &ft, errs)) < 0)
                return r;
        if (c->registry_sensors && (r = slurp(c->registry_sensors, &st, errs)) < 0) {
                free(ft);
                return r;
        }
        r = cp_registry_parse(c->registry_facilities, ft, c->registry_sensors, st, ret, errs);
        free(ft);
        free(st);
        return r;
}

const struct cp_reg_facility *cp_registry_facility(const struct cp_registry *r, const char *id)
{
        return cp_map_get(&r->by_facility, id, strlen(id));
}
