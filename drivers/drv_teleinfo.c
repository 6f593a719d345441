/* drv_teleinfo.c - French Linky / Téléinformation Client (PAYLOADS.md section 7), in three shapes:
 *
 *   raw frame, historic mode   STX LF "ADCO 021728123456 K" CR LF "BASE 002809218 3" CR ... ETX
 *   raw frame, standard mode   STX LF "ADSC\t021728123456\tK" CR LF "DATE\tH260301105930\t\tM" CR ... ETX
 *   Tasmota Teleinfo           {"Time":"2026-03-01T10:59:30","ENERGY":{...},"TIC":{"ADCO":"0217...",...}}
 *   teleinfo2mqtt              {"ADCO":{"raw":"021728123456","value":21728123456},"BASE":{"raw":...}}
 *
 * The sensor id is the meter number, ADCO (historic) or ADSC (standard): 12 digits, kept as text.
 * Readings (CONTRACT section 3, fine print):
 *   energy_import_kwh   historic: the sum of the index registers of the tariff (BASE, HCHC+HCHP,
 *                       EJPHN+EJPHPM, the six BBR registers), Wh -> kWh; standard: EAST
 *   energy_export_kwh   standard: EAIT (producers)
 *   apparent_power_va   PAPP (historic), SINSTS (standard)
 *   current_a           IINST, or IINST1..3 -> current_a_l1..l3; standard IRMS1 (IRMS1..3 -> _l1.._l3 on
 *                       a three-phase meter)
 *   voltage_v           standard URMS1 (URMS1..3 -> voltage_v_l1.._l3 on a three-phase meter)
 * Other labels are ignored. The observation time is the standard-mode DATE horodate (or the bridge's
 * copy of it, or Tasmota's Time), read in driver.teleinfo.timezone; historic frames carry none.
 *
 * Raw frames: each group has its own checksum. A group whose checksum is wrong, or whose value is not
 * what its label must hold (the 6-bit sum misses a flipped bit 6, which turns '0' into 'p'), is dropped
 * and the frame's valid groups still count. A damaged meter-id group rejects the whole frame
 * (CHECKSUM): readings must never land on the wrong meter. The energy total is withheld when one of
 * the registers it sums was dropped, since a partial sum would look like a counter reset.
 * The driver interface has one outcome per message, so a frame that still yields readings cannot
 * also report its dropped groups; a frame that loses every reading to damage is rejected (CHECKSUM).
 *
 * The JSON bridges have already checked the checksums, so a wrong value there rejects the message.
 * Settings: driver.teleinfo.timezone (the daemon passes agg.timezone; alone, Europe/Paris). */
#include "citypulse/cp_driver.h"
#include "citypulse/cp_json.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A standard-mode frame is about 1 KB; anything far larger is not one frame. */
#define TIC_MAX_BYTES 16384
/* Groups are short (the longest, PJOURF+1, is about 100 bytes). */
#define TIC_GROUP_MAX 256
#define METER_ID_LEN  12
/* How much of a damaged group is quoted in texts. */
#define QUOTE_MAX 48

/* The labels the driver reads. digits: the exact (ids) or maximum (values) digit count; 0 = text. */
#define TIC_LABEL_MAP(X)                                                                                     \
        X(ADCO, 12)                                                                                          \
        X(ADSC, 12)                                                                                          \
        X(OPTARIF, 0)                                                                                        \
        X(DATE, 0)                                                                                           \
        X(BASE, 9)                                                                                           \
        X(HCHC, 9)                                                                                           \
        X(HCHP, 9)                                                                                           \
        X(EJPHN, 9)                                                                                          \
        X(EJPHPM, 9)                                                                                         \
        X(BBRHCJB, 9)                                                                                        \
        X(BBRHPJB, 9)                                                                                        \
        X(BBRHCJW, 9)                                                                                        \
        X(BBRHPJW, 9)                                                                                        \
        X(BBRHCJR, 9)                                                                                        \
        X(BBRHPJR, 9)                                                                                        \
        X(PAPP, 5)                                                                                           \
        X(IINST, 3)                                                                                          \
        X(IINST1, 3)                                                                                         \
        X(IINST2, 3)                                                                                         \
        X(IINST3, 3)                                                                                         \
        X(EAST, 9)                                                                                           \
        X(EAIT, 9)                                                                                           \
        X(SINSTS, 5)                                                                                         \
        X(IRMS1, 3)                                                                                          \
        X(IRMS2, 3)                                                                                          \
        X(IRMS3, 3)                                                                                          \
        X(URMS1, 3)                                                                                          \
        X(URMS2, 3)                                                                                          \
        X(URMS3, 3)

enum tic_label {
#define TIC_L_ENUM(name, digits) L_##name,
        TIC_LABEL_MAP(TIC_L_ENUM)
#undef TIC_L_ENUM
            _L_MAX,
        L_UNKNOWN = _L_MAX,
};

static const struct {
        const char *name;
        unsigned char len;
        unsigned char digits;
} tic_labels[] = {
#define TIC_L_ROW(name, digits) {#name, sizeof(#name) - 1, digits},
    TIC_LABEL_MAP(TIC_L_ROW)
#undef TIC_L_ROW
};

/* Label sets are 32-bit masks. */
_Static_assert(_L_MAX <= 32, "too many TIC labels for a uint32_t mask");
#define BIT(l) (UINT32_C(1) << (l))
/* Historic index registers, by tariff option (OPTARIF). */
#define IDX_BASE BIT(L_BASE)
#define IDX_HC   (BIT(L_HCHC) | BIT(L_HCHP))
#define IDX_EJP  (BIT(L_EJPHN) | BIT(L_EJPHPM))
#define IDX_BBR                                                                                              \
        (BIT(L_BBRHCJB) | BIT(L_BBRHPJB) | BIT(L_BBRHCJW) | BIT(L_BBRHPJW) | BIT(L_BBRHCJR) | BIT(L_BBRHPJR))
#define IDX_ALL  (IDX_BASE | IDX_HC | IDX_EJP | IDX_BBR)
#define TRIPHASE (BIT(L_IRMS2) | BIT(L_IRMS3) | BIT(L_URMS2) | BIT(L_URMS3))

enum season {
        SEASON_NONE,   /* local time, resolved with the zone's own rules */
        SEASON_WINTER, /* horodate 'H', teleinfo2mqtt dst "winter": standard time */
        SEASON_SUMMER, /* horodate 'E', dst "summer": standard time + 1 h */
};

/* What one message says, whatever its shape. */
struct tic {
        uint64_t val[_L_MAX];
        uint32_t has;  /* labels read with a valid value */
        uint32_t seen; /* labels present, valid or dropped (a damaged group still names its label) */
        enum tic_label id_label;
        char id[METER_ID_LEN + 1];
        char optarif[5];
        bool has_ts;
        int64_t ts_ms;
        unsigned groups, dropped; /* raw frames only */
        char drop_why[160];       /* why the first dropped group was dropped */
};

static enum tic_label find_label(const char *s, size_t len)
{
        for (size_t i = 0; i < _L_MAX; i++) {
                if (tic_labels[i].len == len && memcmp(tic_labels[i].name, s, len) == 0)
                        return (enum tic_label)i;
        }
        return L_UNKNOWN;
}

/* A value of `max` digits at most (exactly `max` for the meter ids); false for anything else. */
static bool parse_digits(const char *s, size_t len, unsigned max, bool exact, uint64_t *ret)
{
        uint64_t v = 0;

        if (len == 0 || len > max || (exact && len != max))
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return true;
}

/* ---- time ---- */

struct civil {
        int y, mo, d, h, mi, s, ms;
};

static bool take2(const char *s, int *ret)
{
        if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
                return false;
        *ret = (s[0] - '0') * 10 + (s[1] - '0');
        return true;
}

static bool civil_valid(const struct civil *c)
{
        int64_t y;
        unsigned m, d;

        if (c->mo < 1 || c->mo > 12 || c->d < 1 || c->d > 31 || c->h > 23 || c->mi > 59 || c->s > 59)
                return false;
        /* The 31st of a 30-day month comes back as the 1st of the next one. */
        cp_civil_from_days(cp_days_from_civil(c->y, (unsigned)c->mo, (unsigned)c->d), &y, &m, &d);
        return y == c->y && m == (unsigned)c->mo && d == (unsigned)c->d;
}

/* A horodate: season letter + YYMMDDhhmmss. Lower-case letters mean the meter's clock runs in degraded
 * mode (not recently synchronised); it is still the best time there is. A space: no season given. */
static bool parse_horodate(const char *s, size_t len, struct civil *c, enum season *season)
{
        if (len != 13)
                return false;
        switch (s[0]) {
        case 'H':
        case 'h':
                *season = SEASON_WINTER;
                break;
        case 'E':
        case 'e':
                *season = SEASON_SUMMER;
                break;
        case ' ':
                *season = SEASON_NONE;
                break;
        default:
                return false;
        }
        if (!take2(s + 1, &c->y) || !take2(s + 3, &c->mo) || !take2(s + 5, &c->d) || !take2(s + 7, &c->h) ||
            !take2(s + 9, &c->mi) || !take2(s + 11, &c->s))
                return false;
        c->y += 2000;
        c->ms = 0;
        return civil_valid(c);
}

/* teleinfo2mqtt's "2026-03-01T10:59:30.000Z": a local time despite the Z. */
static bool parse_bridge_date(const char *s, size_t len, struct civil *c)
{
        size_t i = 19;
        int hi, lo;

        if (len < 19 || !take2(s, &hi) || !take2(s + 2, &lo) || s[4] != '-' || !take2(s + 5, &c->mo) ||
            s[7] != '-' || !take2(s + 8, &c->d) || s[10] != 'T' || !take2(s + 11, &c->h) || s[13] != ':' ||
            !take2(s + 14, &c->mi) || s[16] != ':' || !take2(s + 17, &c->s))
                return false;
        c->y = hi * 100 + lo;
        c->ms = 0;
        if (i < len && s[i] == '.') {
                int nd = 0;

                for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++) {
                        if (nd < 3)
                                c->ms = c->ms * 10 + (s[i] - '0');
                }
                if (nd == 0 || nd > 9)
                        return false;
                for (; nd < 3; nd++)
                        c->ms *= 10;
        }
        if (i < len && s[i] == 'Z')
                i++;
        return i == len && civil_valid(c);
}

/* A French local time to UTC. The season says which offset was in force: winter is the zone's standard
 * offset (the smaller of two instants half a year apart, whatever the hemisphere), summer one hour
 * more; that also settles the repeated hour of the autumn change, which the zone alone cannot. */
static int local_to_utc(const struct cp_tz *tz, const struct civil *c, enum season season, int64_t *ret_ms)
{
        int64_t naive, ms;
        int32_t o1, o2, off;

        if (!tz)
                return -EINVAL;
        if (season == SEASON_NONE) {
                if (cp_tz_local_to_utc(tz, c->y, c->mo, c->d, c->h, c->mi, c->s, c->ms, &ms) < 0)
                        return -EINVAL;
        } else {
                naive = cp_days_from_civil(c->y, (unsigned)c->mo, (unsigned)c->d) * 86400 + c->h * 3600 +
                        c->mi * 60 + c->s;
                naive = naive * 1000 + c->ms;
                o1 = cp_tz_offset_at(tz, naive);
                o2 = cp_tz_offset_at(tz, naive - INT64_C(182) * 86400 * 1000);
                off = CP_MIN(o1, o2) + (season == SEASON_SUMMER ? 3600 : 0);
                ms = naive - (int64_t)off * 1000;
        }
        if (ms < CP_TIME_MIN_MS || ms >= CP_TIME_MAX_MS)
                return -ERANGE;
        *ret_ms = ms;
        return 0;
}

/* ---- the meter id ---- */

/* Records the meter id; `what` names it in texts ("ADCO", "TIC.ADSC", "ADCO.raw"). */
static int set_meter_id(struct cp_batch *b, struct tic *t, enum tic_label l, const char *what, const char *s,
                        size_t len)
{
        uint64_t v;

        if (!parse_digits(s, len, METER_ID_LEN, true, &v))
                return cp_batch_fail(b, CP_REASON_BAD_ID, "%s '%.*s' is not %d digits", what,
                                     (int)CP_MIN(len, QUOTE_MAX), s, METER_ID_LEN);
        if (t->id[0] && (t->id_label != l || memcmp(t->id, s, METER_ID_LEN) != 0)) {
                if (t->id_label != l)
                        return cp_batch_fail(b, CP_REASON_INCONSISTENT, "the payload has both ADCO and ADSC");
                return cp_batch_fail(b, CP_REASON_INCONSISTENT, "%s '%.12s' repeats with '%.12s'", what,
                                     t->id, s);
        }
        t->id_label = l;
        memcpy(t->id, s, METER_ID_LEN);
        t->id[METER_ID_LEN] = '\0';
        return 0;
}

/* teleinfo2mqtt publishes on teleinfo/<meter id>: a last topic level of 12 digits must be the id. */
static int check_topic(struct cp_batch *b, const struct tic *t, const char *topic)
{
        const char *last;
        uint64_t v;

        if (!topic)
                return 0;
        last = strrchr(topic, '/');
        last = last ? last + 1 : topic;
        if (!parse_digits(last, strlen(last), METER_ID_LEN, true, &v) || strcmp(last, t->id) == 0)
                return 0;
        return cp_batch_fail(b, CP_REASON_ID_MISMATCH, "%s '%s' does not match topic '%s'",
                             tic_labels[t->id_label].name, t->id, topic);
}

/* Tasmota's LWT ("Online") and STATE carry no measurement (CONTRACT section 3). */
static bool is_status_topic(const char *topic)
{
        const char *last;

        if (!topic)
                return false;
        last = strrchr(topic, '/');
        last = last ? last + 1 : topic;
        return strcmp(last, "LWT") == 0 || strcmp(last, "STATE") == 0;
}

/* ---- readings ---- */

static int add(struct cp_batch *b, const struct tic *t, enum cp_quantity q, double v, int64_t ts, int64_t rx)
{
        return cp_batch_add(b, t->id, q, v, ts, rx);
}

/* OPTARIF is 4 characters ("BASE", "HC..", "BBR(" + a letter...); only its start matters. */
static void copy_optarif(struct tic *t, const char *s, size_t len)
{
        len = CP_MIN(len, sizeof(t->optarif) - 1);
        memcpy(t->optarif, s, len);
        t->optarif[len] = '\0';
}

/* The registers an OPTARIF value sums ("BASE", "HC..", "EJP.", "BBR" + a letter), or 0 if unknown. */
static uint32_t tariff_registers(const char *optarif)
{
        if (strncmp(optarif, "BASE", 4) == 0)
                return IDX_BASE;
        if (strncmp(optarif, "HC", 2) == 0)
                return IDX_HC;
        if (strncmp(optarif, "EJP", 3) == 0)
                return IDX_EJP;
        if (strncmp(optarif, "BBR", 3) == 0)
                return IDX_BBR;
        return 0;
}

static int emit_historic(struct cp_batch *b, const struct tic *t, int64_t ts, int64_t rx)
{
        uint32_t need = (t->has & BIT(L_OPTARIF)) ? tariff_registers(t->optarif) : 0;
        uint32_t idx = t->has & IDX_ALL;
        bool energy;
        uint64_t wh = 0;
        int r = 0;

        /* Without a known tariff, every register present counts, unless one may have been lost. */
        if (need)
                energy = (t->has & need) == need;
        else
                energy = idx != 0 && t->dropped == 0;
        if (need)
                idx = need;
        for (unsigned l = 0; energy && l < _L_MAX; l++) {
                if (idx & BIT(l))
                        wh += t->val[l];
        }
        if (energy)
                r = add(b, t, CP_Q_ENERGY_IMPORT_KWH, (double)wh / 1000.0, ts, rx);
        if (r == 0 && (t->has & BIT(L_PAPP)))
                r = add(b, t, CP_Q_APPARENT_POWER_VA, (double)t->val[L_PAPP], ts, rx);
        if (r == 0 && (t->has & BIT(L_IINST)))
                r = add(b, t, CP_Q_CURRENT_A, (double)t->val[L_IINST], ts, rx);
        for (unsigned i = 0; r == 0 && i < 3; i++) {
                if (t->has & BIT(L_IINST1 + i))
                        r = add(b, t, (enum cp_quantity)(CP_Q_CURRENT_A_L1 + i), (double)t->val[L_IINST1 + i],
                                ts, rx);
        }
        return r;
}

static int emit_standard(struct cp_batch *b, const struct tic *t, int64_t ts, int64_t rx)
{
        bool tri = (t->seen & TRIPHASE) != 0;
        int r = 0;

        if (t->has & BIT(L_EAST))
                r = add(b, t, CP_Q_ENERGY_IMPORT_KWH, (double)t->val[L_EAST] / 1000.0, ts, rx);
        if (r == 0 && (t->has & BIT(L_EAIT)))
                r = add(b, t, CP_Q_ENERGY_EXPORT_KWH, (double)t->val[L_EAIT] / 1000.0, ts, rx);
        if (r == 0 && (t->has & BIT(L_SINSTS)))
                r = add(b, t, CP_Q_APPARENT_POWER_VA, (double)t->val[L_SINSTS], ts, rx);
        for (unsigned i = 0; r == 0 && i < 3; i++) {
                if (t->has & BIT(L_IRMS1 + i))
                        r = add(b, t, tri ? (enum cp_quantity)(CP_Q_CURRENT_A_L1 + i) : CP_Q_CURRENT_A,
                                (double)t->val[L_IRMS1 + i], ts, rx);
        }
        for (unsigned i = 0; r == 0 && i < 3; i++) {
                if (t->has & BIT(L_URMS1 + i))
                        r = add(b, t, tri ? (enum cp_quantity)(CP_Q_VOLTAGE_V_L1 + i) : CP_Q_VOLTAGE_V,
                                (double)t->val[L_URMS1 + i], ts, rx);
        }
        return r;
}

/* Builds the readings of a decoded message whose meter id is known. */
static int emit(struct cp_batch *b, const struct tic *t, const struct cp_msg *msg)
{
        int64_t ts = t->has_ts ? t->ts_ms : msg->rx_ms;
        int r;

        r = check_topic(b, t, msg->topic);
        if (r < 0)
                return r;
        if (t->id_label == L_ADCO)
                r = emit_historic(b, t, ts, msg->rx_ms);
        else
                r = emit_standard(b, t, ts, msg->rx_ms);
        if (r < 0)
                return r;
        if (b->n > 0)
                return 0;
        if (t->dropped > 0)
                return cp_batch_fail(b, CP_REASON_CHECKSUM, "%u of %u groups dropped, no reading left: %s",
                                     t->dropped, t->groups, t->drop_why);
        return -ENODATA;
}

/* ---- raw frames ---- */

struct group {
        const char *label, *horodate, *value;
        size_t label_len, horodate_len, value_len;
        bool has_horodate;
};

static bool is_separator(uint8_t c)
{
        /* STX, ETX, EOT (a frame cut short by the meter), LF, CR. */
        return c == 0x02 || c == 0x03 || c == 0x04 || c == '\n' || c == '\r';
}

/* Splits one group and checks its checksum. Returns NULL when valid, else why it is not (written into
 * why[]); gr->label names the label even then, when one could be read. */
static const char *split_group(const char *g, size_t n, struct group *gr, char *why, size_t whylen)
{
        bool standard = memchr(g, '\t', n) != NULL;
        char sep = standard ? '\t' : ' ';
        unsigned sum = 0;
        uint8_t want;
        size_t end, i;

        memset(gr, 0, sizeof(*gr));
        for (i = 0; i < n && g[i] != sep; i++)
                ;
        gr->label = g;
        gr->label_len = i;
        for (i = 0; i < n; i++) {
                uint8_t c = (uint8_t)g[i];

                if ((c < 0x20 && c != '\t') || c > 0x7e) {
                        (void)snprintf(why, whylen, "group '%.*s' has a byte 0x%02x",
                                       (int)CP_MIN(n, QUOTE_MAX), g, c);
                        return why;
                }
        }
        /* LABEL sep ... sep CHECKSUM: the checksum is one character after the last separator. */
        if (n < 4 || gr->label_len == 0 || gr->label_len + 2 >= n || g[n - 2] != sep) {
                (void)snprintf(why, whylen, "group '%.*s' is malformed", (int)CP_MIN(n, QUOTE_MAX), g);
                return why;
        }
        /* Historic sums LABEL SP VALUE; standard also sums the separator before the checksum. */
        end = standard ? n - 1 : n - 2;
        for (i = 0; i < end; i++)
                sum += (uint8_t)g[i];
        want = (uint8_t)((sum & 0x3f) + 0x20);
        if ((uint8_t)g[n - 1] != want) {
                (void)snprintf(why, whylen, "%.*s checksum '%c', expected '%c'",
                               (int)CP_MIN(gr->label_len, 16), g, g[n - 1], want);
                return why;
        }
        gr->value = g + gr->label_len + 1;
        gr->value_len = n - 2 - (gr->label_len + 1);
        if (standard) {
                const char *ht = memchr(gr->value, '\t', gr->value_len);

                if (ht) {
                        /* LABEL HT HORODATE HT VALUE HT CHECKSUM; a third HT is one too many. */
                        gr->has_horodate = true;
                        gr->horodate = gr->value;
                        gr->horodate_len = (size_t)(ht - gr->value);
                        gr->value = ht + 1;
                        gr->value_len -= gr->horodate_len + 1;
                        if (memchr(gr->value, '\t', gr->value_len)) {
                                (void)snprintf(why, whylen, "group '%.*s' is malformed",
                                               (int)CP_MIN(n, QUOTE_MAX), g);
                                return why;
                        }
                }
        }
        return NULL;
}

/* Reads a group whose checksum is right. Returns 0, 1 when the group is dropped (why[] says why), or a
 * negative errno for a meter id that rejects the frame. */
static int read_group(struct cp_batch *b, struct tic *t, const struct cp_tz *tz, enum tic_label l,
                      const struct group *g, char *why, size_t whylen)
{
        struct civil c;
        enum season season;

        if (l == L_ADCO || l == L_ADSC)
                return set_meter_id(b, t, l, tic_labels[l].name, g->value, g->value_len);
        if (l == L_OPTARIF) {
                copy_optarif(t, g->value, g->value_len);
        } else if (l == L_DATE) {
                /* The meter's clock (standard mode); a time we cannot place is no time at all. */
                if (!g->has_horodate || !parse_horodate(g->horodate, g->horodate_len, &c, &season) ||
                    local_to_utc(tz, &c, season, &t->ts_ms) < 0) {
                        (void)snprintf(why, whylen, "DATE horodate '%.*s' is not a valid time",
                                       (int)CP_MIN(g->horodate_len, QUOTE_MAX),
                                       g->horodate ? g->horodate : "");
                        return 1;
                }
                t->has_ts = true;
        } else if (!parse_digits(g->value, g->value_len, tic_labels[l].digits, false, &t->val[l])) {
                (void)snprintf(why, whylen, "%s value '%.*s' is not a number of at most %u digits",
                               tic_labels[l].name, (int)CP_MIN(g->value_len, QUOTE_MAX), g->value,
                               tic_labels[l].digits);
                return 1;
        }
        t->has |= BIT(l);
        return 0;
}

static void note_drop(struct tic *t, const char *why)
{
        if (t->dropped++ == 0)
                (void)snprintf(t->drop_why, sizeof(t->drop_why), "%s", why);
}

static int decode_raw(const struct cp_tz *tz, const struct cp_msg *msg, struct cp_batch *out)
{
        const char *p = (const char *)msg->payload;
        size_t len = msg->len, i = 0;
        struct tic t;
        char why[160];
        int r;

        if (memchr(p, 0, len))
                return cp_batch_fail(out, CP_REASON_BAD_FORMAT,
                                     "binary payload, expected a TIC frame or JSON");
        if (len > TIC_MAX_BYTES)
                return cp_batch_fail(out, CP_REASON_TOO_LARGE, "payload is %zu bytes, limit %d", len,
                                     TIC_MAX_BYTES);
        memset(&t, 0, sizeof(t));
        while (i < len) {
                const char *g;
                struct group gr;
                enum tic_label l;
                size_t n;

                while (i < len && is_separator((uint8_t)p[i]))
                        i++;
                if (i == len)
                        break;
                g = p + i;
                while (i < len && !is_separator((uint8_t)p[i]))
                        i++;
                n = (size_t)(p + i - g);
                t.groups++;
                if (n > TIC_GROUP_MAX) {
                        (void)snprintf(why, sizeof(why), "group '%.*s...' is %zu bytes long", QUOTE_MAX, g,
                                       n);
                        note_drop(&t, why);
                        continue;
                }
                if (split_group(g, n, &gr, why, sizeof(why))) {
                        l = find_label(gr.label, gr.label_len);
                        /* Readings must never land on the wrong meter: a bad id loses the frame. */
                        if (l == L_ADCO || l == L_ADSC)
                                return cp_batch_fail(out, CP_REASON_CHECKSUM, "%s group dropped: %s",
                                                     tic_labels[l].name, why);
                        if (l != L_UNKNOWN)
                                t.seen |= BIT(l);
                        note_drop(&t, why);
                        continue;
                }
                l = find_label(gr.label, gr.label_len);
                if (l == L_UNKNOWN)
                        continue;
                t.seen |= BIT(l);
                r = read_group(out, &t, tz, l, &gr, why, sizeof(why));
                if (r < 0)
                        return r;
                if (r > 0)
                        note_drop(&t, why);
        }
        if (!t.id[0]) {
                if (t.groups > 0 && t.dropped == t.groups)
                        return cp_batch_fail(out, CP_REASON_BAD_FORMAT,
                                             "not a TIC frame: none of its %u groups is valid (%s)", t.groups,
                                             t.drop_why);
                if (t.groups == 0)
                        return cp_batch_fail(out, CP_REASON_BAD_FORMAT, "not a TIC frame: no group");
                return cp_batch_fail(out, CP_REASON_MISSING_FIELD, "the frame has no ADCO or ADSC group");
        }
        return emit(out, &t, msg);
}

/* ---- JSON bridges ---- */

/* 10^digits - 1: the largest value a label of that many digits holds. */
static uint64_t label_max(enum tic_label l)
{
        uint64_t m = 1;

        for (unsigned i = 0; i < tic_labels[l].digits; i++)
                m *= 10;
        return m - 1;
}

/* Tasmota: ADCO/ADSC are strings; an integer lost its leading zeros, which 12 digits bring back. */
static int read_tasmota_id(struct cp_batch *b, struct tic *t, enum tic_label l, const json_t *v)
{
        const char *what = l == L_ADCO ? "TIC.ADCO" : "TIC.ADSC";
        char num[32];

        if (json_is_integer(v) && json_integer_value(v) >= 0) {
                (void)snprintf(num, sizeof(num), "%012" JSON_INTEGER_FORMAT, json_integer_value(v));
                return set_meter_id(b, t, l, what, num, strlen(num));
        }
        if (!json_is_string(v))
                return cp_json_fail_type(b, "TIC", tic_labels[l].name, v, "string");
        return set_meter_id(b, t, l, what, json_string_value(v), json_string_length(v));
}

static int decode_tasmota(const struct cp_tz *tz, const json_t *root, json_t *tic, const struct cp_msg *msg,
                          struct cp_batch *out)
{
        struct tic t;
        int r;

        memset(&t, 0, sizeof(t));
        for (void *it = json_object_iter(tic); it; it = json_object_iter_next(tic, it)) {
                const char *key = json_object_iter_key(it);
                json_t *v = json_object_iter_value(it);
                enum tic_label l = find_label(key, strlen(key));
                int64_t n;

                /* DATE: Tasmota's own Time stamps the message. */
                if (l == L_UNKNOWN || l == L_DATE || json_is_null(v))
                        continue;
                t.seen |= BIT(l);
                if (l == L_ADCO || l == L_ADSC) {
                        r = read_tasmota_id(out, &t, l, v);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (l == L_OPTARIF) {
                        if (!json_is_string(v))
                                return cp_json_fail_type(out, "TIC", key, v, "string");
                        copy_optarif(&t, json_string_value(v), json_string_length(v));
                        t.has |= BIT(l);
                        continue;
                }
                /* Tasmota converts numeric values to numbers: a string means another format. */
                r = cp_json_get_count(out, tic, "TIC", key, true, &n, NULL);
                if (r < 0)
                        return r;
                if ((uint64_t)n > label_max(l))
                        return cp_batch_fail(out, CP_REASON_OUT_OF_RANGE, "TIC.%s is %lld, expected <= %llu",
                                             key, (long long)n, (unsigned long long)label_max(l));
                t.val[l] = (uint64_t)n;
                t.has |= BIT(l);
        }
        if (!t.id[0])
                return cp_batch_fail(out, CP_REASON_MISSING_FIELD,
                                     "TIC has no ADCO or ADSC (Tasmota sends them only with full frames)");
        /* Tasmota's Time is local unless SetOption52 appends the offset. */
        r = cp_json_get_time(out, root, NULL, "Time", false, tz, &t.ts_ms, &t.has_ts);
        if (r < 0)
                return r;
        return emit(out, &t, msg);
}

/* teleinfo2mqtt's DATE.timestamp {date, dst}: the local horodate written with a 'Z'. */
static int read_bridge_time(struct cp_batch *b, struct tic *t, const struct cp_tz *tz, const json_t *label)
{
        const char *date, *dst;
        json_t *stamp;
        bool present;
        enum season season;
        struct civil c;
        int r;

        r = cp_json_get_object(b, label, "DATE", "timestamp", false, &stamp, &present);
        if (r < 0 || !present)
                return r;
        r = cp_json_get_string(b, stamp, "DATE.timestamp", "date", true, 64, &date, NULL);
        if (r < 0)
                return r;
        r = cp_json_get_string(b, stamp, "DATE.timestamp", "dst", true, 16, &dst, NULL);
        if (r < 0)
                return r;
        if (strcmp(dst, "summer") == 0)
                season = SEASON_SUMMER;
        else if (strcmp(dst, "winter") == 0)
                season = SEASON_WINTER;
        else
                return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP,
                                     "DATE.timestamp.dst is '%s', expected 'summer' or 'winter'", dst);
        if (!parse_bridge_date(date, strlen(date), &c))
                return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP, "DATE.timestamp.date '%s' is not a time",
                                     date);
        if (local_to_utc(tz, &c, season, &t->ts_ms) < 0)
                return cp_batch_fail(b, CP_REASON_BAD_TIMESTAMP,
                                     "DATE.timestamp.date '%s' cannot be placed in time%s", date,
                                     tz ? "" : " without a time zone");
        t->has_ts = true;
        return 0;
}

/* teleinfo2mqtt: {LABEL:{raw, value, timestamp?}}. `value` went through parseInt() (ADCO lost its
 * leading zeros, hex STGE became a small number), so only `raw` is read. */
static int decode_bridge(const struct cp_tz *tz, json_t *root, const struct cp_msg *msg, struct cp_batch *out)
{
        const char *raw;
        struct tic t;
        int r;

        memset(&t, 0, sizeof(t));
        for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
                const char *key = json_object_iter_key(it);
                json_t *v = json_object_iter_value(it);
                enum tic_label l = find_label(key, strlen(key));
                size_t len;

                if (l == L_UNKNOWN)
                        continue;
                if (!json_is_object(v))
                        return cp_json_fail_type(out, NULL, key, v, "object");
                t.seen |= BIT(l);
                if (l == L_DATE) {
                        r = read_bridge_time(out, &t, tz, v);
                        if (r < 0)
                                return r;
                        continue;
                }
                r = cp_json_get_string(out, v, key, "raw", true, 64, &raw, NULL);
                if (r < 0)
                        return r;
                len = strlen(raw);
                if (l == L_ADCO || l == L_ADSC) {
                        r = set_meter_id(out, &t, l, l == L_ADCO ? "ADCO.raw" : "ADSC.raw", raw, len);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (l == L_OPTARIF) {
                        copy_optarif(&t, raw, len);
                } else if (!parse_digits(raw, len, tic_labels[l].digits, false, &t.val[l])) {
                        if (len > 0 && strspn(raw, "0123456789") == len)
                                return cp_batch_fail(out, CP_REASON_OUT_OF_RANGE,
                                                     "%s.raw '%s' has %zu digits, limit %u", key, raw, len,
                                                     tic_labels[l].digits);
                        return cp_batch_fail(out, CP_REASON_WRONG_TYPE,
                                             "%s.raw '%s' is not an unsigned integer", key, raw);
                }
                t.has |= BIT(l);
        }
        if (!t.id[0])
                return cp_batch_fail(out, CP_REASON_MISSING_FIELD, "payload has no ADCO or ADSC label");
        return emit(out, &t, msg);
}

static int decode_json(const struct cp_tz *tz, const struct cp_msg *msg, struct cp_batch *out)
{
        json_t *root = NULL, *tic;
        bool has_tic;
        int r;

        r = cp_json_load_object(msg, out, &root);
        if (r < 0)
                return r;
        r = cp_json_get_object(out, root, NULL, "TIC", false, &tic, &has_tic);
        if (r < 0)
                goto out_decref;
        if (has_tic)
                r = decode_tasmota(tz, root, tic, msg, out);
        else if (json_object_get(root, "ADCO") || json_object_get(root, "ADSC"))
                r = decode_bridge(tz, root, msg, out);
        else
                r = cp_batch_fail(out, CP_REASON_MISSING_FIELD,
                                  "payload has neither TIC (Tasmota) nor ADCO/ADSC labels (teleinfo2mqtt)");
out_decref:
        json_decref(root);
        return r;
}

static int teleinfo_decode(void *state, const struct cp_msg *msg, struct cp_batch *out)
{
        const struct cp_tz *tz = state;
        size_t i = 0;

        cp_batch_reset(out);
        if (is_status_topic(msg->topic))
                return -ENODATA;
        if (!msg->payload || msg->len == 0)
                return cp_batch_fail(out, CP_REASON_EMPTY, "empty payload");
        /* A frame starts with STX or LF and a label; JSON with '{' (or anything JSON can start with). */
        while (i < msg->len && (msg->payload[i] == ' ' || msg->payload[i] == '\t' ||
                                msg->payload[i] == '\n' || msg->payload[i] == '\r'))
                i++;
        if (i < msg->len && (msg->payload[i] == '{' || msg->payload[i] == '['))
                return decode_json(tz, msg, out);
        return decode_raw(tz, msg, out);
}

const struct cp_driver cp_driver_teleinfo = {
    .abi = CP_DRIVER_ABI,
    .name = "teleinfo",
    .init = cp_driver_tz_init,
    .free = cp_driver_tz_free,
    .decode = teleinfo_decode,
};
