/* drv_json_map.c - a JSON feed that no driver knows, read through a mapping set in the config
 * (CONTRACT section 3):
 *
 *   driver.json_map.id /device/id                  the sensor id (RFC 6901 JSON pointer), and/or
 *   driver.json_map.id_topic_level 3              the topic level that holds it (-1 = last; "2.." =
 *                                                  from level 2 to the end); with both, they must agree
 *   driver.json_map.time /ts                       optional observation time (RFC 3339 or epoch s/ms/us)
 *   driver.json_map.map.power_w /data/p            one line per quantity: pointer[*scale]
 *   driver.json_map.map.energy_import_kwh /data/e*0.001
 *   driver.json_map.timezone Europe/Paris          for times without offset (the daemon passes it)
 *
 * Each mapped value is a JSON number multiplied by its scale (`occupied` also takes true/false). A
 * value that is absent or null gives no reading; a message with none of them is -ENODATA. Readings
 * come in the order of the config lines. Values the quantity cannot hold (a negative energy, an
 * occupancy of 2) reject the message, as in every driver.
 *
 * JSON pointers follow RFC 6901: "" is the whole document, "/a/0/b" walks members and array indexes,
 * "~1" stands for '/' and "~0" for '~' in a member name. jansson has no pointer support, so they are
 * parsed once at init into tokens and walked with json_object_getn()/json_array_get(). A '*' in a
 * mapping line always starts the scale: a member name containing '*' cannot be mapped.
 *
 * The payload is read with cp_json_load_pruned_any() through a keep table built at init from the
 * pointers: one table per level, pointers sharing a prefix sharing its tables. The reader copies an
 * array's elements by the table of the array itself, so it cannot keep one element: a value a pointer
 * indexes into ("/sensors/0") is kept whole, and so is one holding a member name with a '*', which the
 * reader would take for a pattern. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PTR_MAX_LEN    255
#define PTR_MAX_TOKENS 16

/* One RFC 6901 pointer, parsed. Token i is buf[off..off+len) (unescaped); `end` is where it ends in
 * text, so that texts can name the part of the pointer that failed. */
struct jptr {
        char text[PTR_MAX_LEN + 1];
        char buf[PTR_MAX_LEN + 1];
        struct {
                uint16_t off, len, end;
                int32_t idx; /* array index ("-": INT32_MAX, past any end), or -1 when not one ("01") */
        } tok[PTR_MAX_TOKENS];
        unsigned n;
};

struct mapping {
        enum cp_quantity q;
        double scale;
        bool has_scale;
        struct jptr ptr;
};

struct json_map_state {
        struct cp_tz *tz;
        bool has_id, has_time;
        struct jptr id, time;
        struct cp_topic_span id_span; /* level 0: the topic holds no id */
        size_t nmap;
        struct mapping map[_CP_Q_MAX];
        /* The keep table of the payload and the one allocation holding every level of it (NULL when
         * no level has a member: a pointer "" only, or the root kept whole). */
        const struct cp_json_keep *keep;
        struct cp_json_keep *keep_pool;
};

/* ---- settings ---- */

static void json_map_free(void *state)
{
        struct json_map_state *st = state;

        if (!st)
                return;
        cp_tz_free(st->tz);
        free(st->keep_pool);
        free(st);
}

/* Parses `s` (len bytes) into p. Returns NULL or why it is not a pointer. */
static const char *parse_pointer(const char *s, size_t len, struct jptr *p)
{
        size_t i = 0, o = 0;

        if (len > PTR_MAX_LEN)
                return "is longer than 255 bytes";
        memcpy(p->text, s, len);
        p->text[len] = '\0';
        p->n = 0;
        if (len == 0)
                return NULL;
        if (s[0] != '/')
                return "is not a JSON pointer: it must be empty or start with '/'";
        while (i < len) {
                size_t start = o;
                bool digits = true;

                if (p->n == PTR_MAX_TOKENS)
                        return "has more than 16 levels";
                i++; /* the '/' */
                for (; i < len && s[i] != '/'; i++) {
                        char c = s[i];

                        if (c == '~') {
                                if (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1'))
                                        return "is not a JSON pointer: '~' must be followed by 0 or 1";
                                c = s[++i] == '0' ? '~' : '/';
                        }
                        digits = digits && c >= '0' && c <= '9';
                        p->buf[o++] = c;
                }
                p->tok[p->n].off = (uint16_t)start;
                p->tok[p->n].len = (uint16_t)(o - start);
                p->tok[p->n].end = (uint16_t)i;
                /* RFC 6901 4: an index is "0" or digits without a leading zero; "-" is the element
                 * after the last, which never exists, and so is an index too large to hold. */
                if (digits && o > start && (o - start == 1 || p->buf[start] != '0'))
                        p->tok[p->n].idx =
                            o - start <= 9 ? (int32_t)strtol(p->buf + start, NULL, 10) : INT32_MAX;
                else if (o - start == 1 && p->buf[start] == '-')
                        p->tok[p->n].idx = INT32_MAX;
                else
                        p->tok[p->n].idx = -1;
                p->buf[o++] = '\0';
                p->n++;
        }
        return NULL;
}

/* "<pointer>[*<scale>]"; spaces around '*' are allowed. */
static int parse_mapping(const char *driver, const char *key, const char *value, struct mapping *m, char *err,
                         size_t errlen)
{
        const char *star = strrchr(value, '*'), *why;
        size_t plen = star ? (size_t)(star - value) : strlen(value);
        char *end;

        if (star) {
                errno = 0;
                m->scale = strtod(star + 1, &end);
                while (*end == ' ' || *end == '\t')
                        end++;
                if (end == star + 1 || *end) {
                        (void)snprintf(err, errlen, "driver.%s.%s: scale '%s' is not a number", driver, key,
                                       star + 1);
                        return -EINVAL;
                }
                if (errno == ERANGE || !isfinite(m->scale)) {
                        (void)snprintf(err, errlen, "driver.%s.%s: scale '%s' is out of range", driver, key,
                                       star + 1);
                        return -EINVAL;
                }
                if (m->scale == 0) {
                        (void)snprintf(err, errlen, "driver.%s.%s: scale '%s' is zero", driver, key,
                                       star + 1);
                        return -EINVAL;
                }
                m->has_scale = true;
                while (plen > 0 && (value[plen - 1] == ' ' || value[plen - 1] == '\t'))
                        plen--;
        } else {
                m->scale = 1;
        }
        why = parse_pointer(value, plen, &m->ptr);
        if (why) {
                (void)snprintf(err, errlen, "driver.%s.%s: '%.*s' %s", driver, key, (int)CP_MIN(plen, 64),
                               value, why);
                return -EINVAL;
        }
        return 0;
}

static int read_key(const char *driver, const char *key, const char *value, struct json_map_state *st,
                    char *err, size_t errlen)
{
        const char *why;

        if (strcmp(key, "timezone") == 0)
                return 0;
        if (strcmp(key, "id") == 0 || strcmp(key, "time") == 0) {
                bool is_id = key[0] == 'i';

                why = parse_pointer(value, strlen(value), is_id ? &st->id : &st->time);
                if (why) {
                        (void)snprintf(err, errlen, "driver.%s.%s: '%.64s' %s", driver, key, value, why);
                        return -EINVAL;
                }
                *(is_id ? &st->has_id : &st->has_time) = true;
                return 0;
        }
        if (strcmp(key, "id_topic_level") == 0)
                return cp_conf_parse_topic_span(driver, key, value, &st->id_span, err, errlen);
        if (strncmp(key, "map.", 4) == 0) {
                struct mapping *m = &st->map[st->nmap];

                if (cp_quantity_parse(key + 4, &m->q) < 0) {
                        (void)snprintf(err, errlen, "driver.%s.%s: unknown quantity '%s'", driver, key,
                                       key + 4);
                        return -EINVAL;
                }
                /* Duplicates were refused before, so there is a free slot for every quantity. */
                if (parse_mapping(driver, key, value, m, err, errlen) < 0)
                        return -EINVAL;
                st->nmap++;
                return 0;
        }
        (void)snprintf(err, errlen, "driver.%s.%s: unknown key", driver, key);
        return -EINVAL;
}

/* ---- the keep table ----
 *
 * The pointers are first merged into a tree of nodes, one per distinct prefix (children as index
 * lists), then laid out as keep tables in one allocation. */

struct knode {
        const char *key; /* the member name, NUL-terminated in a struct jptr buf */
        int first, next; /* the first child and the next sibling, -1 for none */
        unsigned nkids;
        bool all; /* kept whole */
};

/* Adds the levels of p below node 0 (the root), nodes[] having room for p->n more. */
static void keep_add(struct knode *nodes, size_t *nn, const struct jptr *p)
{
        int cur = 0;

        for (unsigned i = 0; i < p->n && !nodes[cur].all; i++) {
                const char *tok = p->buf + p->tok[i].off;
                int c;

                if (p->tok[i].idx >= 0 || memchr(tok, '*', p->tok[i].len)) {
                        nodes[cur].all = true;
                        return;
                }
                for (c = nodes[cur].first; c >= 0 && strcmp(nodes[c].key, tok) != 0; c = nodes[c].next)
                        ;
                if (c < 0) {
                        c = (int)(*nn)++;
                        nodes[c] = (struct knode){tok, -1, nodes[cur].first, 0, false};
                        nodes[cur].first = c;
                        nodes[cur].nkids++;
                }
                cur = c;
        }
}

/* The number of table entries below node i, terminators included. */
static size_t keep_count(const struct knode *nodes, int i)
{
        size_t n;

        if (nodes[i].all || nodes[i].first < 0)
                return 0;
        n = nodes[i].nkids + 1;
        for (int c = nodes[i].first; c >= 0; c = nodes[c].next)
                n += keep_count(nodes, c);
        return n;
}

/* The sub of node i, its tables laid out from pool[*pos]. */
static const struct cp_json_keep *keep_emit(const struct knode *nodes, int i, struct cp_json_keep *pool,
                                            size_t *pos)
{
        struct cp_json_keep *t;
        size_t k = 0;

        if (nodes[i].all)
                return CP_JSON_KEEP_ALL;
        if (nodes[i].first < 0)
                return NULL;
        t = pool + *pos;
        *pos += nodes[i].nkids + 1;
        for (int c = nodes[i].first; c >= 0; c = nodes[c].next, k++) {
                t[k].key = nodes[c].key;
                t[k].sub = keep_emit(nodes, c, pool, pos);
        }
        t[k] = (struct cp_json_keep){NULL, NULL};
        return t;
}

static int keep_build(struct json_map_state *st)
{
        size_t max = 1 + (2 + st->nmap) * PTR_MAX_TOKENS, nn = 1, n, pos = 0;
        struct knode *nodes = calloc(max, sizeof(*nodes));

        if (!nodes)
                return -ENOMEM;
        nodes[0] = (struct knode){"", -1, -1, 0, false};
        if (st->has_id)
                keep_add(nodes, &nn, &st->id);
        if (st->has_time)
                keep_add(nodes, &nn, &st->time);
        for (size_t i = 0; i < st->nmap; i++)
                keep_add(nodes, &nn, &st->map[i].ptr);
        n = keep_count(nodes, 0);
        if (n) {
                st->keep_pool = calloc(n, sizeof(*st->keep_pool));
                if (!st->keep_pool) {
                        free(nodes);
                        return -ENOMEM;
                }
        }
        st->keep = keep_emit(nodes, 0, st->keep_pool, &pos);
        free(nodes);
        return 0;
}

static int json_map_init(const struct cp_conf_section *conf, void **ret_state, char *err, size_t errlen)
{
        const char *driver = conf && conf->driver ? conf->driver : "json_map";
        struct json_map_state *st;
        int r = -EINVAL;

        st = calloc(1, sizeof(*st));
        if (!st) {
                (void)snprintf(err, errlen, "driver.%s: out of memory", driver);
                return -ENOMEM;
        }
        for (size_t i = 0; conf && i < conf->n; i++) {
                const char *key = conf->kv[i].key ? conf->kv[i].key : "";
                const char *value = conf->kv[i].value ? conf->kv[i].value : "";

                for (size_t j = 0; j < i; j++) {
                        if (conf->kv[j].key && strcmp(conf->kv[j].key, key) == 0) {
                                (void)snprintf(err, errlen, "driver.%s.%s: duplicate key", driver, key);
                                goto out_free;
                        }
                }
                if (read_key(driver, key, value, st, err, errlen) < 0)
                        goto out_free;
        }
        if (!st->has_id && !st->id_span.level) {
                (void)snprintf(err, errlen, "driver.%s: id or id_topic_level is required", driver);
                goto out_free;
        }
        if (st->nmap == 0) {
                (void)snprintf(err, errlen, "driver.%s: no map.<quantity> key, nothing to read", driver);
                goto out_free;
        }
        r = cp_conf_load_tz(conf, &st->tz, err, errlen);
        if (r < 0)
                goto out_free;
        r = keep_build(st);
        if (r < 0) {
                (void)snprintf(err, errlen, "driver.%s: out of memory", driver);
                goto out_free;
        }
        *ret_state = st;
        return 0;
out_free:
        json_map_free(st);
        return r;
}

/* ---- decoding ---- */

/* Walks p from root. Returns 1 with *ret set, 0 when the value is absent (a missing member, an index
 * past the end, a null on the way), or -EPROTO when the document has another shape than the pointer
 * (a member asked of a number, a name asked of an array). */
static int resolve(struct cp_batch *b, json_t *root, const struct jptr *p, json_t **ret)
{
        json_t *cur = root;

        for (unsigned i = 0; i < p->n; i++) {
                const char *tok = p->buf + p->tok[i].off;
                json_t *next;

                if (json_is_object(cur)) {
                        next = json_object_getn(cur, tok, p->tok[i].len);
                } else if (json_is_array(cur) && p->tok[i].idx >= 0) {
                        next = json_array_get(cur, (size_t)p->tok[i].idx);
                } else {
                        /* The part of the pointer walked so far names what has the wrong shape. */
                        const char *walked = i ? p->text : "payload";
                        int wlen = i ? p->tok[i - 1].end : (int)strlen("payload");

                        return cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%.*s is %s, expected %s (reading %s)",
                                             wlen, walked, cp_json_type_name(cur),
                                             json_is_array(cur) ? "an object" : "an object or array",
                                             p->text);
                }
                if (!next || json_is_null(next))
                        return 0;
                cur = next;
        }
        if (json_is_null(cur))
                return 0;
        *ret = cur;
        return 1;
}

/* The name of a pointer in texts: "" (the whole payload) reads as "payload". */
static const char *ptr_name(const struct jptr *p)
{
        return p->text[0] ? p->text : "payload";
}

static int id_problem(struct cp_batch *b, const char *what, const char *s, size_t len)
{
        const char *problem = cp_sensor_id_problem(s, len);

        if (!problem)
                return 0;
        if (len == 0)
                return cp_batch_fail(b, CP_REASON_BAD_ID, "%s is empty", what);
        if (len >= CP_SENSOR_ID_MAX)
                return cp_batch_fail(b, CP_REASON_BAD_ID, "%s is %zu bytes long, limit %d", what, len,
                                     CP_SENSOR_ID_MAX - 1);
        return cp_batch_fail(b, CP_REASON_BAD_ID, "%s '%.*s' %s", what, (int)len, s, problem);
}

static int read_id(struct cp_batch *b, const struct json_map_state *st, const struct cp_msg *msg,
                   json_t *root, char *id)
{
        char what[PTR_MAX_LEN + 40], num[32];
        const char *s = NULL, *tl = NULL;
        size_t len = 0, tl_len = 0;
        json_t *v;
        int r;

        if (st->id_span.level) {
                (void)snprintf(what, sizeof(what), "topic level %d%s", st->id_span.level,
                               st->id_span.to_end ? ".." : "");
                if (!msg->topic || !cp_topic_span_get(msg->topic, &st->id_span, &tl, &tl_len))
                        return cp_batch_fail(b, CP_REASON_MISSING_FIELD, "topic '%s' has no level %d",
                                             msg->topic ? msg->topic : "", st->id_span.level);
                r = id_problem(b, what, tl, tl_len);
                if (r < 0)
                        return r;
        }
        if (st->has_id) {
                r = resolve(b, root, &st->id, &v);
                if (r < 0)
                        return r;
                if (r == 0)
                        return cp_batch_fail(b, CP_REASON_MISSING_FIELD, "%s is missing", ptr_name(&st->id));
                if (json_is_string(v)) {
                        s = json_string_value(v);
                        len = json_string_length(v);
                } else if (json_is_integer(v)) {
                        /* Numeric device ids (Nwave positions, counters numbered by the operator). */
                        (void)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                        s = num;
                        len = strlen(num);
                } else {
                        return cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%s is %s, expected string or integer",
                                             ptr_name(&st->id), cp_json_type_name(v));
                }
                r = id_problem(b, ptr_name(&st->id), s, len);
                if (r < 0)
                        return r;
                if (tl && (len != tl_len || memcmp(s, tl, len) != 0))
                        return cp_batch_fail(b, CP_REASON_ID_MISMATCH,
                                             "%s '%.*s' does not match topic level %d%s '%.*s'",
                                             ptr_name(&st->id), (int)len, s, st->id_span.level,
                                             st->id_span.to_end ? ".." : "", (int)tl_len, tl);
        } else {
                s = tl;
                len = tl_len;
        }
        memcpy(id, s, len);
        id[len] = '\0';
        return 0;
}

static int read_time(struct cp_batch *b, const struct json_map_state *st, json_t *root, int64_t rx_ms,
                     int64_t *ret_ms)
{
        const char *name = ptr_name(&st->time);
        char num[40];
        json_t *v;
        int r;

        *ret_ms = rx_ms;
        if (!st->has_time)
                return 0;
        r = resolve(b, root, &st->time, &v);
        if (r <= 0)
                return r;
        if (json_is_string(v)) {
                if (cp_time_parse(json_string_value(v), json_string_length(v), st->tz, ret_ms) < 0)
                        return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP, "%s '%.64s' is not an RFC 3339 time",
                                             name, json_string_value(v));
                if (*ret_ms < CP_TIME_MIN_MS || *ret_ms >= CP_TIME_MAX_MS)
                        return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP,
                                             "%s '%.64s' is not between 1970 and 2200", name,
                                             json_string_value(v));
                return 0;
        }
        if (!json_is_number(v))
                return cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%s is %s, expected string or number", name,
                                     cp_json_type_name(v));
        if (cp_time_from_epoch(json_number_value(v), ret_ms) < 0) {
                cp_fmt_double(json_number_value(v), num, sizeof(num));
                return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP, "%s %s is not between 1970 and 2200", name,
                                     num);
        }
        return 0;
}

static int read_value(struct cp_batch *b, const struct mapping *m, json_t *root, bool *ret_present,
                      double *ret)
{
        const char *name = ptr_name(&m->ptr), *problem;
        char num[40], scaled[40];
        json_t *v;
        double d, raw;
        int r;

        *ret_present = false;
        r = resolve(b, root, &m->ptr, &v);
        if (r <= 0)
                return r;
        if (m->q == CP_Q_OCCUPIED && json_is_boolean(v)) {
                d = json_is_true(v) ? 1 : 0;
        } else if (json_is_number(v)) {
                d = json_number_value(v);
        } else {
                return cp_batch_fail(b, CP_REASON_WRONG_TYPE, "%s is %s, expected %s", name,
                                     cp_json_type_name(v),
                                     m->q == CP_Q_OCCUPIED ? "number or boolean" : "number");
        }
        raw = d;
        d *= m->scale;
        /* Numbers are formatted only for a text: snprintf costs more than the rest of the mapping. */
        if (!isfinite(d)) {
                cp_fmt_double(raw, num, sizeof(num));
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s %s times %g is out of range", name, num,
                                     m->scale);
        }
        problem = cp_quantity_range_problem(m->q, d);
        if (problem) {
                cp_fmt_double(raw, num, sizeof(num));
                cp_fmt_double(d, scaled, sizeof(scaled));
                if (m->has_scale)
                        return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s %s gives %s %s, %s", name, num,
                                             cp_quantity_name(m->q), scaled, problem);
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE, "%s is %s, %s for %s", name, num, problem,
                                     cp_quantity_name(m->q));
        }
        *ret = d;
        *ret_present = true;
        return 0;
}

static int json_map_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct json_map_state *st = state;
        char id[CP_SENSOR_ID_MAX];
        json_t *root = NULL;
        int64_t ts;
        int r;

        cp_batch_reset(out);
        /* Without init there is no mapping at all. */
        if (!st)
                return cp_batch_fail(out, CP_REASON_UNSUPPORTED, "json_map has no mapping configured");
        r = cp_json_load_pruned_any(msg, out, st->keep, &root);
        if (r < 0)
                return r;
        r = read_id(out, st, msg, root, id);
        if (r < 0)
                goto out_decref;
        r = read_time(out, st, root, msg->rx_ms, &ts);
        if (r < 0)
                goto out_decref;
        for (size_t i = 0; i < st->nmap; i++) {
                bool present;
                double v;

                r = read_value(out, &st->map[i], root, &present, &v);
                if (r < 0)
                        goto out_decref;
                if (!present)
                        continue;
                r = cp_batch_add(out, id, st->map[i].q, v, ts, msg->rx_ms);
                if (r < 0)
                        goto out_decref;
        }
        r = out->n > 0 ? 0 : -ENODATA;
out_decref:
        json_decref(root);
        return r;
}

const struct cp_driver cp_driver_json_map = {
    .abi = CP_DRIVER_ABI,
    .name = "json_map",
    .init = json_map_init,
    .free = json_map_free,
    .decode = json_map_decode,
};
