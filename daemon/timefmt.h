/* timefmt.h - ISO 8601 times for people and portals: local time in the city's zone with its offset. */
#ifndef CP_TIMEFMT_H
#define CP_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

struct cp_tz;

#define CP_ISO_MAX 40

/* "2026-03-01T11:00:00.123+01:00" (tz NULL: UTC with "Z"). Returns buf. */
const char *cp_time_iso(char *buf, size_t len, int64_t ms, const struct cp_tz *tz);
/* Current wall-clock time in UTC ms. */
int64_t cp_now_ms(void);

#endif
