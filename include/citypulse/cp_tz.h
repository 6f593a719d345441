/* cp_tz.h - IANA time zones from the system's TZif files, without touching the process-wide TZ.
 * Loaded once (at config or driver init), then read-only and safe to share between threads. */
#ifndef CP_TZ_H
#define CP_TZ_H

#include <stdint.h>

struct cp_tz;

/* Loads zone `name` ("Europe/Paris", "UTC") from /usr/share/zoneinfo (or $TZDIR). Returns 0, -EINVAL
 * for a malformed name, -ENOENT for an unknown zone, -EPROTO for a damaged file, -ENOMEM, -ENOTSUP
 * for a leap-second ("right/") zone, or another negative errno from open/read (-EACCES). "UTC" and
 * "Etc/UTC" work even without tzdata installed. The caller frees *ret with cp_tz_free(). */
int cp_tz_load(const char *name, struct cp_tz **ret);
void cp_tz_free(struct cp_tz *tz);
const char *cp_tz_name(const struct cp_tz *tz);

/* UTC offset in seconds in force at UTC instant `utc_ms`. */
int32_t cp_tz_offset_at(const struct cp_tz *tz, int64_t utc_ms);
/* Converts a local civil time to UTC ms. In a gap (spring forward) the time is read with the offset
 * in force before the gap; in an overlap (fall back) the earlier instant is chosen. Returns 0 or
 * -ERANGE for an impossible date. */
int cp_tz_local_to_utc(const struct cp_tz *tz, int year, int mon, int day, int hour, int min, int sec, int ms,
                       int64_t *ret_ms);
/* Start of the local day containing `utc_ms`, as UTC ms (local midnight). */
int64_t cp_tz_day_start(const struct cp_tz *tz, int64_t utc_ms);
/* Start of the next local day after the one containing `utc_ms` (23, 24 or 25 hours later). */
int64_t cp_tz_next_day(const struct cp_tz *tz, int64_t utc_ms);

/* Days since 1970-01-01 for a proleptic Gregorian date, and back (Howard Hinnant's algorithms). */
int64_t cp_days_from_civil(int64_t y, unsigned m, unsigned d);
void cp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
