/* drv_nwave_group.c - Nwave RTA Group Availability (PAYLOADS.md section 3), as delivered over RabbitMQ
 * and bridged to MQTT:
 *
 *   {"timestamp":"2026-03-01T09:59:58.412Z","group_id":1187,"group_custom_id":"P-GARE-L1","level_id":7,
 *    "floor_number":1,"positions_availability":[{"position":{"id":48213,"network_id":"<uuid>",
 *    "custom_id":"GARE-L1-001","group_inner_id":1,"lat":48.87,"lon":2.32},"occupation_status":"occupied"},
 *    ...],"summary":{"total":12,"occupied":7,"available":4,"undefined":1}}
 *
 * Readings: one spot sensor per position (CONTRACT section 3), `occupied` 1 for "occupied" and 0 for
 * "free", for sensor position.custom_id, or position.id (in decimal) when custom_id is absent, null
 * or "". "n/a" is Nwave's "unknown" (a damaged or silent sensor): it gives no reading, because
 * reporting it as free would invent a vacancy. A group whose positions are all "n/a" is a valid
 * message without a measurement (-ENODATA). The summary is Nwave's own count, computed with rules we
 * do not see (parking type, sensor health), so it is neither a reading nor checked against the
 * positions. Observation time: `timestamp` (the message generation time), else the receive time.
 *
 * The whole message is refused when any position is wrong (unknown status, missing id, two positions
 * with one id): a group that contradicts itself is not trustworthy for any of its spots.
 * A group larger than CP_BATCH_CAP positions is refused whole (TOO_MANY_READINGS) whatever the mix of
 * statuses: counting only the positions that yield a reading would make one group's messages pass or
 * fail with the number of "n/a" sensors, which is harder to diagnose than a constant refusal.
 *
 * No topic check: one message carries many spot sensors, so no single sensor id can appear in the
 * topic, and the group id is not a sensor id.
 *
 * Settings: driver.nwave_group.timezone reads a timestamp without offset (never as UTC); the daemon
 * passes agg.timezone when unset, alone the driver uses Europe/Paris. Any other key is refused. */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define POSITIONS        "positions_availability"
/* Room for "positions_availability[63].position". */
#define PATH_LEN 64

/* What nwave_decode() reads, for cp_json_load_pruned(): the time, and of each element its status
 * and its position's ids. */
static const struct cp_json_keep keep_position[] = {{"id", NULL}, {"custom_id", NULL}, {NULL, NULL}};
static const struct cp_json_keep keep_element[] = {
    {"position", keep_position},
    {"occupation_status", NULL},
    {NULL, NULL},
};
static const struct cp_json_keep keep_root[] = {
    {"timestamp", NULL},
    {POSITIONS, keep_element},
    {NULL, NULL},
};

/* The spot's sensor id: a non-empty custom_id (the operator's own bay name), else the numeric id.
 * `path` names the position object ("positions_availability[3].position"). */
static int read_position_id(struct cp_batch *b, const json_t *pos, const char *path, char *ret)
{
        const json_t *custom = json_object_get(pos, "custom_id"), *id;

        if (custom && !json_is_null(custom)) {
                if (!json_is_string(custom))
                        return cp_json_fail_type(b, path, "custom_id", custom, "string");
                if (json_string_length(custom) > 0)
                        return cp_json_get_id(b, pos, path, "custom_id", false, ret);
        }
        /* A negative id is no Nwave id; written out it would look like a valid sensor name. */
        id = json_object_get(pos, "id");
        if (json_is_integer(id) && json_integer_value(id) < 0)
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     "%s.id is %" JSON_INTEGER_FORMAT ", expected >= 0", path,
                                     json_integer_value(id));
        return cp_json_get_id(b, pos, path, "id", true, ret);
}

/* Maps occupation_status to 1 (occupied), 0 (free) or -1 (n/a, no reading). */
static int read_status(struct cp_batch *b, const json_t *pa, const char *path, int *ret)
{
        const char *s;
        size_t len;
        int r;

        r = cp_json_get_string(b, pa, path, "occupation_status", true, SIZE_MAX, &s, NULL);
        if (r < 0)
                return r;
        len = strlen(s);
        if (len == 8 && memcmp(s, "occupied", 8) == 0)
                *ret = 1;
        else if (len == 4 && memcmp(s, "free", 4) == 0)
                *ret = 0;
        else if (len == 3 && memcmp(s, "n/a", 3) == 0)
                *ret = -1;
        else
                return cp_batch_fail(b, CP_REASON_OUT_OF_RANGE,
                                     "%s.occupation_status '%.40s' is not one of occupied, free, n/a", path,
                                     s);
        return 0;
}

/* The general decode, on a jansson tree: every message the fast path gives up on, with the texts of every
 * reject. */
static int decode_tree(const struct cp_tz *tz, const struct cp_msg *msg, struct cp_batch *out)
{
        char ids[CP_BATCH_CAP][CP_SENSOR_ID_MAX];
        int status[CP_BATCH_CAP];
        char path[PATH_LEN], ppath[PATH_LEN];
        json_t *root = NULL, *positions;
        size_t n, nread = 0;
        bool has_ts;
        int64_t ts;
        int r;

        cp_batch_reset(out);
        r = cp_json_load_pruned(msg, out, keep_root, &root);
        if (r < 0)
                return r;
        r = cp_json_get_array(out, root, NULL, POSITIONS, true, &positions, NULL);
        if (r < 0)
                goto out_decref;
        n = json_array_size(positions);
        if (n > CP_BATCH_CAP) {
                r = cp_batch_fail(out, CP_REASON_TOO_MANY_READINGS,
                                  POSITIONS " has %zu positions, limit %d per message", n, CP_BATCH_CAP);
                goto out_decref;
        }
        /* Without init (a fuzzer, a test) there is no zone, and a time without offset is refused. */
        r = cp_json_get_time(out, root, NULL, "timestamp", false, tz, &ts, &has_ts);
        if (r < 0)
                goto out_decref;
        if (!has_ts)
                ts = msg->rx_ms;

        /* Everything is checked before the first reading is added: a bad position refuses the group. */
        for (size_t i = 0; i < n; i++) {
                const json_t *pa = json_array_get(positions, i);
                json_t *pos;

                (void)snprintf(path, sizeof(path), POSITIONS "[%zu]", i);
                if (!json_is_object(pa)) {
                        r = cp_json_fail_type(out, POSITIONS, path + strlen(POSITIONS), pa, "object");
                        goto out_decref;
                }
                r = cp_json_get_object(out, pa, path, "position", true, &pos, NULL);
                if (r < 0)
                        goto out_decref;
                (void)snprintf(ppath, sizeof(ppath), POSITIONS "[%zu].position", i);
                r = read_position_id(out, pos, ppath, ids[i]);
                if (r < 0)
                        goto out_decref;
                r = read_status(out, pa, path, &status[i]);
                if (r < 0)
                        goto out_decref;
                /* One spot twice would give two values for one sensor at one instant. */
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(ids[i], ids[j]) == 0) {
                                r = cp_batch_fail(out, CP_REASON_INCONSISTENT,
                                                  "%s: sensor id '%s' repeats " POSITIONS "[%zu]", path,
                                                  ids[i], j);
                                goto out_decref;
                        }
                }
                if (status[i] >= 0)
                        nread++;
        }
        if (nread == 0) {
                r = -ENODATA;
                goto out_decref;
        }
        for (size_t i = 0; i < n; i++) {
                if (status[i] < 0)
                        continue;
                r = cp_batch_add(out, ids[i], CP_Q_OCCUPIED, status[i], ts, msg->rx_ms);
                if (r < 0)
                        goto out_decref;
        }
        r = 0;
out_decref:
        json_decref(root);
        return r;
}

/* ---- the fast path ----
 *
 * decode_tree() spends most of its time building jansson values (24 position objects of a typical
 * group, each with its strings) and formatting two paths per position: ~40 us for a 5 KB group. The
 * fast path reads the payload once and allocates nothing: it checks the whole document against the
 * JSON grammar with the rules of cp_json.c's scanner (the same byte classes, escapes, UTF-8 sequences
 * and number limits; nesting at most 64 levels), keeps pointers to the few strings it reads, and writes
 * the readings straight into the batch.
 *
 * It ends only in a success or -ENODATA. On anything else it gives up, having written nothing into the
 * batch, and decode_tree() decodes the message from the start, so every reject keeps its reason and
 * text. It gives up on any error (JSON, types, ids, statuses, repeats, the timestamp), on an escape in a
 * string whose value it reads or in a member name of an object whose members it picks (it would have
 * to unescape them), on a repeated member it reads (jansson keeps the last one), on a numeric
 * timestamp, on more than CP_BATCH_CAP positions, and on a number or a depth beyond the scanner's
 * limits. So a message it accepts is one jansson accepts, and decode_tree() gives it the same readings.
 *
 * Each step takes the position of the next byte and returns the position after what it read, or NULL
 * to give up: the position stays in a register, which matters at ~1000 tokens a message. */

#define FAST_MAX_DEPTH  64 /* as cp_json.c's scanner; jansson allows 2048 */
#define FAST_MAX_NUMBER 40 /* bytes; with at most 2 exponent digits no double overflows */

/* JSON's white space: space, tab, line feed, carriage return. */
static const bool ws_byte[256] = {[' '] = true, ['\t'] = true, ['\n'] = true, ['\r'] = true};
/* Bytes that stand for themselves inside a string: ASCII from 0x20, but '"' (0x22) and '\\' (0x5c). */
static const bool plain_byte[256] = {[0x20 ... 0x21] = true, [0x23 ... 0x5b] = true, [0x5d ... 0x7f] = true};

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* What a member the decode reads holds. */
enum fast_kind {
        FAST_ABSENT, /* not seen (so a second one is a repeat) */
        FAST_NULL,
        FAST_INT,   /* an integer of at most 18 digits, in i */
        FAST_STR,   /* a string without escapes, its bytes in s[0..len) */
        FAST_OTHER, /* any other valid value, not read */
};

struct fast_value {
        enum fast_kind kind;
        const char *s;
        size_t len;
        int64_t i;
};

/* One position: its sensor id (in the payload, or in num for a numeric id) and its status. */
struct fast_spot {
        const char *id;
        size_t len;
        uint64_t hash;
        int status; /* 1 occupied, 0 free, -1 n/a */
        char num[20];
};

static inline const char *skip_ws(const char *p, const char *end)
{
        while (p < end && ws_byte[(unsigned char)*p])
                p++;
        return p;
}

/* The bytes among the 8 at q that may end a run of plain string bytes: a '"', a '\\', a control byte or
 * a non-ASCII byte, as the high bit of each byte of the result. The zero-byte tests have no false
 * negative, and a false positive only ever sits above a true one: the lowest bit set is exact. */
static inline uint64_t special8(const char *q)
{
        uint64_t w, quote, bslash;

        memcpy(&w, q, sizeof(w));
        quote = w ^ (ONES * '"');
        bslash = w ^ (ONES * '\\');
        return (((quote - ONES) & ~quote) | ((bslash - ONES) & ~bslash) | ((w - ONES * 0x20) & ~w) | w) &
               HIGHS;
}

/* The first byte at or after q that is not plain (plain_byte[]), or end: 16 bytes at a time with SSE2
 * (a signed compare below 0x20 catches both control and non-ASCII bytes), else 8 with special8(). */
static inline const char *skip_plain(const char *q, const char *end)
{
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);

        while (end - q >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
                __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                         _mm_cmplt_epi8(v, space));
                unsigned bits = (unsigned)_mm_movemask_epi8(m);

                if (bits)
                        return q + __builtin_ctz(bits);
                q += 16;
        }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        while (end - q >= 8) {
                uint64_t m = special8(q);

                if (m)
                        return q + __builtin_ctzll(m) / 8;
                q += 8;
        }
#endif
        while (q < end && plain_byte[(unsigned char)*q])
                q++;
        return q;
}

/* The 4 hex digits at q (end excluded), or -1. */
static long hex4(const char *q, const char *end)
{
        long v = 0;

        if (end - q < 4)
                return -1;
        for (int i = 0; i < 4; i++) {
                char c = q[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

/* The escape after the backslash at q as jansson accepts it (cp_json.c's escape_len()): \" \\ \/ \b \f
 * \n \r \t, or \uXXXX that is not \u0000, with surrogates only in high-low pairs. Returns the bytes
 * after the backslash, or 0. */
static size_t escape_len(const char *q, const char *end)
{
        long v, lo;

        if (q + 1 >= end)
                return 0;
        if (q[1] != '\0' && strchr("\"\\/bfnrt", q[1]))
                return 1;
        if (q[1] != 'u' || (v = hex4(q + 2, end)) <= 0 || (v >= 0xdc00 && v <= 0xdfff))
                return 0;
        if (v < 0xd800 || v > 0xdbff)
                return 5;
        if (end - q < 12 || q[6] != '\\' || q[7] != 'u' || (lo = hex4(q + 8, end)) < 0xdc00 || lo > 0xdfff)
                return 0;
        return 11;
}

/* A string, p at its opening quote: its raw bytes in *ret and whether it holds an escape; the position
 * after its closing quote. */
static const char *string_slow(const char *p, const char *end, const char **ret, size_t *ret_len,
                               bool *ret_escaped)
{
        const char *q = p + 1;
        bool escaped = false;

        for (;;) {
                unsigned char c;
                uint32_t cp;
                size_t n;

                q = skip_plain(q, end);
                if (q >= end)
                        return NULL;
                c = (unsigned char)*q;
                if (c == '"')
                        break;
                if (c == '\\') {
                        n = escape_len(q, end);
                        if (n == 0)
                                return NULL;
                        q += n + 1;
                        escaped = true;
                        continue;
                }
                if (c < 0x20)
                        return NULL;
                n = cp_utf8_seq((const uint8_t *)q, (size_t)(end - q), &cp);
                if (n == 0)
                        return NULL;
                q += n;
        }
        *ret = p + 1;
        *ret_len = (size_t)(q - *ret);
        *ret_escaped = escaped;
        return q + 1;
}

/* string_slow(), with the common case inline: plain bytes up to the closing quote. */
static inline const char *scan_string(const char *p, const char *end, const char **ret, size_t *ret_len,
                                      bool *ret_escaped)
{
#ifdef __SSE2__
        const char *q = p + 1;

        while (end - q >= 16) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
                const __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                            _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                               _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
                unsigned bits = (unsigned)_mm_movemask_epi8(m);

                if (bits) {
                        q += __builtin_ctz(bits);
                        if (*q != '"')
                                break;
                        *ret = p + 1;
                        *ret_len = (size_t)(q - *ret);
                        *ret_escaped = false;
                        return q + 1;
                }
                q += 16;
        }
#endif
        return string_slow(p, end, ret, ret_len, ret_escaped);
}

static inline bool is_digit(const char *q, const char *end)
{
        return q < end && *q >= '0' && *q <= '9';
}

/* An RFC 8259 number within cp_json.c's scanner limits (integers of at most 18 digits, reals of at most
 * FAST_MAX_NUMBER bytes with at most 2 exponent digits). With ret_kind, FAST_INT (the value in *ret_int)
 * or FAST_OTHER for a real. */
static const char *scan_number(const char *p, const char *end, enum fast_kind *ret_kind, int64_t *ret_int)
{
        const char *q = p, *digits, *exp;
        bool real = false;
        uint64_t v = 0; /* 19 digits at most: no overflow */

        if (q < end && *q == '-')
                q++;
        digits = q;
        if (!is_digit(q, end))
                return NULL;
        if (*q == '0') {
                q++;
        } else {
                do
                        v = v * 10 + (uint64_t)(*q++ - '0');
                while (is_digit(q, end) && q - digits < 19);
        }
        if (q < end && *q == '.') {
                real = true;
                if (!is_digit(++q, end))
                        return NULL;
                while (is_digit(q, end))
                        q++;
        }
        if (q < end && (*q == 'e' || *q == 'E')) {
                real = true;
                if (++q < end && (*q == '+' || *q == '-'))
                        q++;
                exp = q;
                if (!is_digit(q, end))
                        return NULL;
                while (is_digit(q, end))
                        q++;
                if (q - exp > 2)
                        return NULL;
        }
        /* An integer part cut at 19 digits leaves a digit here: given up, though a real that long is
         * valid. */
        if (q - p > FAST_MAX_NUMBER || (!real && q - digits > 18) || is_digit(q, end))
                return NULL;
        if (ret_kind)
                *ret_kind = real ? FAST_OTHER : FAST_INT;
        if (ret_kind && !real)
                *ret_int = p[0] == '-' ? -(int64_t)v : (int64_t)v;
        return q;
}

static inline const char *scan_literal(const char *p, const char *end, const char *word, size_t n)
{
        return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* After a member or an element: the position after the ',' (*ret_done false) or after `close` (*ret_done
 * true). */
static inline const char *scan_next(const char *p, const char *end, char close, bool *ret_done)
{
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
                *ret_done = false;
                return p + 1;
        }
        *ret_done = true;
        return p < end && *p == close ? p + 1 : NULL;
}

static const char *skip_value(const char *p, const char *end, unsigned depth);

/* An object or array whose content is not read, p at its opening bracket, `depth` its level. */
static const char *skip_container(const char *p, const char *end, unsigned depth)
{
        bool is_object = *p == '{', escaped, done;
        char close = is_object ? '}' : ']';
        const char *key;
        size_t len;

        if (depth > FAST_MAX_DEPTH)
                return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
                return p + 1;
        do {
                if (is_object) {
                        p = skip_ws(p, end);
                        if (p >= end || *p != '"' || !(p = scan_string(p, end, &key, &len, &escaped)))
                                return NULL;
                        p = skip_ws(p, end);
                        if (p >= end || *p != ':')
                                return NULL;
                        p++;
                }
                if (!(p = skip_value(p, end, depth + 1)) || !(p = scan_next(p, end, close, &done)))
                        return NULL;
        } while (!done);
        return p;
}

/* Any value whose content is not read; a container in it is at level `depth`. */
static const char *skip_value(const char *p, const char *end, unsigned depth)
{
        const char *s;
        size_t len;
        bool flag;

        p = skip_ws(p, end);
        if (p >= end)
                return NULL;
        switch (*p) {
        case '{':
        case '[':
                return skip_container(p, end, depth);
        case '"':
                return scan_string(p, end, &s, &len, &flag);
        case 't':
                return scan_literal(p, end, "true", 4);
        case 'f':
                return scan_literal(p, end, "false", 5);
        case 'n':
                return scan_literal(p, end, "null", 4);
        default:
                return scan_number(p, end, NULL, NULL);
        }
}

/* A member the decode reads; a repeated one gives up (jansson keeps the last). */
static const char *read_value(const char *p, const char *end, unsigned depth, struct fast_value *v)
{
        bool flag;

        if (v->kind != FAST_ABSENT)
                return NULL;
        p = skip_ws(p, end);
        if (p >= end)
                return NULL;
        switch (*p) {
        case '"':
                if (!(p = scan_string(p, end, &v->s, &v->len, &flag)))
                        return NULL;
                v->kind = flag ? FAST_OTHER : FAST_STR;
                return p;
        case 'n':
                v->kind = FAST_NULL;
                return scan_literal(p, end, "null", 4);
        case '-':
        case '0' ... '9':
                return scan_number(p, end, &v->kind, &v->i);
        default:
                v->kind = FAST_OTHER;
                return skip_value(p, end, depth);
        }
}

/* A member name as it is written, quotes included ("\"id\"", len 4), zero-padded for 32-byte loads. */
struct fast_name {
        char quoted[32];
        size_t len;
};
#define FAST_NAME(s)                                                                                         \
        {                                                                                                    \
                "\"" s "\"", sizeof(s) + 1                                                                   \
        }

/* The members of the objects whose members are picked, read or not, in the order Nwave writes them
 * (PAYLOADS.md section 3); the constants name the ones the decode reads. */
static const struct fast_name root_names[] = {
    FAST_NAME("timestamp"),    FAST_NAME("group_id"), FAST_NAME("group_custom_id"), FAST_NAME("level_id"),
    FAST_NAME("floor_number"), FAST_NAME(POSITIONS),  FAST_NAME("summary"),
};
enum { ROOT_TIMESTAMP = 0, ROOT_POSITIONS = 5 };
static const struct fast_name element_names[] = {FAST_NAME("position"), FAST_NAME("occupation_status")};
enum { ELEMENT_POSITION = 0, ELEMENT_STATUS = 1 };
static const struct fast_name position_names[] = {
    FAST_NAME("id"),  FAST_NAME("network_id"), FAST_NAME("group_inner_id"),
    FAST_NAME("lat"), FAST_NAME("lon"),        FAST_NAME("custom_id"),
};
enum { POSITION_ID = 0, POSITION_CUSTOM_ID = 5 };

/* Whether the bytes at p are nm's quoted name. */
static inline bool name_at(const char *p, const char *end, const struct fast_name *nm)
{
#ifdef __SSE2__
        if (end - p >= 32) {
                const __m128i *a = (const __m128i *)(const void *)p;
                const __m128i *b = (const __m128i *)(const void *)nm->quoted;
                uint32_t lo =
                    (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(a), _mm_loadu_si128(b)));
                uint32_t hi = (uint32_t)_mm_movemask_epi8(
                    _mm_cmpeq_epi8(_mm_loadu_si128(a + 1), _mm_loadu_si128(b + 1)));
                uint32_t need = nm->len >= 32 ? UINT32_MAX : (UINT32_C(1) << nm->len) - 1;

                return ((lo | hi << 16) & need) == need;
        }
#endif
        return (size_t)(end - p) >= nm->len && memcmp(p, nm->quoted, nm->len) == 0;
}

/* A member name and its colon, in an object whose members are picked: in *ret_index the index of the
 * name in names[n], or n for any other name; NULL for an escaped name. The name expected next, *next
 * (the one after the previous member's), is compared in place, which spares scanning for its end. */
static inline const char *scan_member(const char *p, const char *end, const struct fast_name *names, int n,
                                      int *next, int *ret_index)
{
        const char *key;
        bool escaped;
        size_t len;
        int i;

        p = skip_ws(p, end);
        if (*next < n && name_at(p, end, &names[*next])) {
                i = *next;
                p += names[i].len;
        } else {
                if (p >= end || *p != '"' || !(p = scan_string(p, end, &key, &len, &escaped)) || escaped)
                        return NULL;
                for (i = 0; i < n; i++) {
                        if (names[i].len == len + 2 && memcmp(names[i].quoted + 1, key, len) == 0)
                                break;
                }
        }
        if (i < n)
                *next = i + 1;
        *ret_index = i;
        p = skip_ws(p, end);
        return p < end && *p == ':' ? p + 1 : NULL;
}

static inline bool span_is(const char *s, size_t len, const char *word, size_t word_len)
{
        return len == word_len && memcmp(s, word, len) == 0;
}
#define SPAN_IS(s, len, word) span_is(s, len, word, sizeof(word) - 1)

/* A position object (level 4), p at its brace: its id and custom_id. */
static const char *scan_position(const char *p, const char *end, struct fast_value *id,
                                 struct fast_value *custom)
{
        int next = 0, m;
        bool done;

        p = skip_ws(p + 1, end);
        if (p < end && *p == '}')
                return p + 1;
        do {
                if (!(p = scan_member(p, end, position_names, (int)CP_ARRAY_LEN(position_names), &next, &m)))
                        return NULL;
                if (m == POSITION_ID)
                        p = read_value(p, end, 5, id);
                else if (m == POSITION_CUSTOM_ID)
                        p = read_value(p, end, 5, custom);
                else
                        p = skip_value(p, end, 5);
                if (!p || !(p = scan_next(p, end, '}', &done)))
                        return NULL;
        } while (!done);
        return p;
}

/* Whether a byte of w is not printable ASCII (0x20..0x7e), or is '+' or '#'. */
static inline bool id_word_odd(uint64_t w)
{
        uint64_t del = w ^ (ONES * 0x7f), plus = w ^ (ONES * '+'), hash = w ^ (ONES * '#');

        return (((w - ONES * 0x20) & ~w) | w | ((del - ONES) & ~del) | ((plus - ONES) & ~plus) |
                ((hash - ONES) & ~hash)) &
               HIGHS;
}

/* A hash of id[0..len), to find repeats, and in *ret_plain whether every byte is printable ASCII other
 * than '+' and '#'. Ids of 8 to 16 bytes, the usual, are read as two words that cover them. */
static uint64_t id_hash(const char *id, size_t len, bool *ret_plain)
{
        uint64_t h = UINT64_C(0xcbf29ce484222325), a, z;
        bool plain = true;

        if (len >= 8 && len <= 16) {
                memcpy(&a, id, sizeof(a));
                memcpy(&z, id + len - 8, sizeof(z));
                *ret_plain = !id_word_odd(a) && !id_word_odd(z);
                /* Ids that differ only in their last bytes differ in z's high bits: fold them down. */
                h = (a * UINT64_C(0x9e3779b97f4a7c15)) ^ z ^ len;
                h = (h ^ (h >> 32)) * UINT64_C(0xbf58476d1ce4e5b9);
                return h ^ (h >> 29);
        }
        /* FNV-1a */
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)id[i];

                plain &= c >= 0x20 && c < 0x7f && c != '+' && c != '#';
                h = (h ^ c) * UINT64_C(0x100000001b3);
        }
        *ret_plain = plain;
        return h;
}

/* Decimal digits of v (0 <= v < 10^18, the integers scan_number() takes) into buf[20]; their count. */
static size_t fmt_id(char *buf, int64_t v)
{
        char tmp[20];
        size_t n = 0;

        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v > 0);
        for (size_t i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return n;
}

/* read_position_id() on what the fast path read: false wherever it would fail. */
static bool fast_sensor_id(const struct fast_value *id, const struct fast_value *custom,
                           struct fast_spot *spot)
{
        bool plain;

        /* custom_id: absent, null, or a string; read only when not empty. */
        if (custom->kind == FAST_INT || custom->kind == FAST_OTHER)
                return false;
        if (custom->kind == FAST_STR && custom->len > 0) {
                spot->id = custom->s;
                spot->len = custom->len;
        } else if (id->kind == FAST_INT && id->i >= 0) {
                spot->len = fmt_id(spot->num, id->i);
                spot->id = spot->num;
        } else if (id->kind == FAST_STR) {
                spot->id = id->s;
                spot->len = id->len;
        } else {
                return false;
        }
        spot->hash = id_hash(spot->id, spot->len, &plain);
        /* Printable ASCII but '+' and '#' is what cp_sensor_id_problem() takes at once; the rest is left
         * to it. */
        return (plain && spot->len > 0 && spot->len < CP_SENSOR_ID_MAX) ||
               !cp_sensor_id_problem(spot->id, spot->len);
}

/* One element of positions_availability (level 3), p at its brace. */
static const char *scan_element(const char *p, const char *end, struct fast_spot *spot)
{
        struct fast_value id = {0}, custom = {0};
        bool has_position = false, has_status = false, done, escaped;
        int next = 0, m;
        const char *s;
        size_t len;

        p++;
        do {
                if (!(p = scan_member(p, end, element_names, (int)CP_ARRAY_LEN(element_names), &next, &m)))
                        return NULL;
                if (m == ELEMENT_POSITION) {
                        p = skip_ws(p, end);
                        if (has_position || p >= end || *p != '{' ||
                            !(p = scan_position(p, end, &id, &custom)))
                                return NULL;
                        has_position = true;
                } else if (m == ELEMENT_STATUS) {
                        p = skip_ws(p, end);
                        if (has_status || p >= end || *p != '"' ||
                            !(p = scan_string(p, end, &s, &len, &escaped)) || escaped)
                                return NULL;
                        if (SPAN_IS(s, len, "occupied"))
                                spot->status = 1;
                        else if (SPAN_IS(s, len, "free"))
                                spot->status = 0;
                        else if (SPAN_IS(s, len, "n/a"))
                                spot->status = -1;
                        else
                                return NULL;
                        has_status = true;
                } else if (!(p = skip_value(p, end, 4))) {
                        return NULL;
                }
                if (!(p = scan_next(p, end, '}', &done)))
                        return NULL;
        } while (!done);
        return has_position && has_status && fast_sensor_id(&id, &custom, spot) ? p : NULL;
}

_Static_assert(CP_BATCH_CAP < 255, "scan_positions() keeps a position's index + 1 in a byte");

/* The positions_availability array (level 2), p at its bracket, into spots[*ret_n]. */
static const char *scan_positions(const char *p, const char *end, struct fast_spot *spots, size_t *ret_n)
{
        /* Open addressing over the positions' id hashes: a slot holds a position's index + 1, or 0. */
        uint8_t slot[2 * CP_BATCH_CAP] = {0};
        size_t n = 0;
        bool done;

        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
                *ret_n = 0;
                return p + 1;
        }
        do {
                p = skip_ws(p, end);
                if (n == CP_BATCH_CAP || p >= end || *p != '{' || !(p = scan_element(p, end, &spots[n])))
                        return NULL;
                /* One spot twice is refused: decode_tree() names the repeat. */
                for (size_t i = spots[n].hash % (2 * CP_BATCH_CAP);; i = (i + 1) % (2 * CP_BATCH_CAP)) {
                        const struct fast_spot *o;

                        if (slot[i] == 0) {
                                slot[i] = (uint8_t)(n + 1);
                                break;
                        }
                        o = &spots[slot[i] - 1];
                        if (o->hash == spots[n].hash && o->len == spots[n].len &&
                            memcmp(o->id, spots[n].id, o->len) == 0)
                                return NULL;
                }
                n++;
                if (!(p = scan_next(p, end, ']', &done)))
                        return NULL;
        } while (!done);
        *ret_n = n;
        return p;
}

/* The whole decode of a message without surprises (see above): true with *ret the decode's result,
 * false to leave the message to decode_tree(). Writes into the batch only when it returns true. */
static bool decode_fast(const struct cp_tz *tz, const struct cp_msg *msg, struct cp_batch *out, int *ret)
{
        struct fast_spot spots[CP_BATCH_CAP];
        struct fast_value ts = {0};
        bool has_positions = false, done;
        size_t n = 0, nread = 0;
        const char *p, *end;
        int next = 0, m;
        int64_t ts_ms;

        if (!msg || !msg->payload || msg->len == 0 || msg->len > CP_JSON_MAX_BYTES)
                return false;
        p = (const char *)msg->payload;
        end = p + msg->len;
        p = skip_ws(p, end);
        if (p >= end || *p != '{')
                return false;
        p++;
        do {
                if (!(p = scan_member(p, end, root_names, (int)CP_ARRAY_LEN(root_names), &next, &m)))
                        return false;
                if (m == ROOT_TIMESTAMP) {
                        p = read_value(p, end, 2, &ts);
                } else if (m == ROOT_POSITIONS) {
                        p = skip_ws(p, end);
                        if (has_positions || p >= end || *p != '[')
                                return false;
                        p = scan_positions(p, end, spots, &n);
                        has_positions = true;
                } else {
                        p = skip_value(p, end, 2);
                }
                if (!p || !(p = scan_next(p, end, '}', &done)))
                        return false;
        } while (!done);
        if (skip_ws(p, end) != end || !has_positions)
                return false;

        if (ts.kind == FAST_ABSENT || ts.kind == FAST_NULL)
                ts_ms = msg->rx_ms;
        else if (ts.kind != FAST_STR || cp_time_parse(ts.s, ts.len, tz, &ts_ms) < 0 ||
                 ts_ms < CP_TIME_MIN_MS || ts_ms >= CP_TIME_MAX_MS)
                return false;

        for (size_t i = 0; i < n; i++)
                nread += spots[i].status >= 0;
        if (nread == 0) {
                *ret = -ENODATA;
                return true;
        }
        /* What cp_batch_add() stores: the ids have passed cp_sensor_id_problem() and the batch has room. */
        for (size_t i = 0; i < n; i++) {
                struct cp_reading *r;

                if (spots[i].status < 0)
                        continue;
                r = &out->v[out->n++];
                memcpy(r->sensor_id, spots[i].id, spots[i].len);
                r->sensor_id[spots[i].len] = '\0';
                r->quantity = CP_Q_OCCUPIED;
                r->value = spots[i].status;
                r->ts_ms = ts_ms;
                r->rx_ms = msg->rx_ms;
        }
        *ret = 0;
        return true;
}

static int nwave_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        int r;

        cp_batch_reset(out);
        if (decode_fast(state, msg, out, &r))
                return r;
        return decode_tree(state, msg, out);
}

const struct cp_driver cp_driver_nwave_group = {
    .abi = CP_DRIVER_ABI,
    .name = "nwave_group",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = nwave_decode,
};
