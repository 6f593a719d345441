/* timefmt.c - see timefmt.h. */
#include "timefmt.h"

#include <stdio.h>
#include <time.h>

#include "citypulse/cp_tz.h"

static int64_t floor_div(int64_t a, int64_t b)
{
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

const char *cp_time_iso(char *buf, size_t len, int64_t ms, const struct cp_tz *tz)
{
        int32_t off = tz ? cp_tz_offset_at(tz, ms) : 0;
        int64_t local = ms + (int64_t)off * 1000;
        int64_t days = floor_div(local, 86400000), rem = local - days * 86400000;
        int64_t y;
        unsigned m, d;
        int aoff = off < 0 ? -off : off;

        cp_civil_from_days(days, &y, &m, &d);
        if (!tz) {
                snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d, (int)(rem / 3600000),
                         (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000));
                return buf;
        }
        snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02d.%03d%c%02d:%02d", (long long)y, m, d,
                 (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000),
                 off < 0 ? '-' : '+', aoff / 3600, aoff / 60 % 60);
        return buf;
}

int64_t cp_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
