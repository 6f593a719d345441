/* log.h - one event, one line (CONTRACT section 8). Loop thread and store thread may both log. */
#ifndef CP_LOG_H
#define CP_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "citypulse/cp_common.h"

enum cp_log_level {
        CP_LOG_ERR = 3,
        CP_LOG_WARNING = 4,
        CP_LOG_NOTICE = 5,
        CP_LOG_INFO = 6,
        CP_LOG_DEBUG = 7,
};

enum cp_log_sink {
        CP_LOG_SINK_AUTO,    /* journal when $JOURNAL_STREAM matches stderr, else timestamps */
        CP_LOG_SINK_JOURNAL, /* "<N>" priority prefix */
        CP_LOG_SINK_PLAIN,   /* ISO 8601 UTC timestamp and level letter */
};

extern int cp_log_threshold;

void cp_log_init(enum cp_log_sink sink, int level);
/* Parses "err warning notice info debug"; returns the level or -EINVAL. */
int cp_log_level_parse(const char *s);
const char *cp_log_level_name(int level);
/* Writes one line. The module prefix and ": " are added; fmt must not end in a newline. */
void cp_log_write(int level, const char *module, const char *fmt, ...) CP_PRINTF(3, 4);

/* Level is checked before the arguments are formatted. */
#define cp_log(level, module, ...)                                                                           \
        do {                                                                                                 \
                if ((level) <= cp_log_threshold)                                                             \
                        cp_log_write((level), (module), __VA_ARGS__);                                        \
        } while (0)

/* Writes s into buf as a single-quoted log value with control bytes, quotes and backslashes escaped,
 * cut at buflen (marked with "..."). Returns buf. */
const char *cp_log_quote(char *buf, size_t buflen, const char *s, size_t len);

/* A repeating problem (collectd's c_complain): the first occurrence is logged at WARNING, repeats are
 * counted and reported with exponential back-off (1 min, 2 min ... 1 h), and cp_complain_release()
 * logs "recovered" at NOTICE once the problem went away. */
struct cp_complaint {
        int64_t last_seen_ms;
        int64_t last_report_ms;
        int64_t interval_ms;
        uint64_t suppressed;
        uint64_t total;
        bool active;
};
/* Returns true when this call produced a log line. */
bool cp_complain(struct cp_complaint *c, int64_t now_ms, const char *module, const char *fmt, ...)
        CP_PRINTF(4, 5);
void cp_complain_release(struct cp_complaint *c, const char *module, const char *what);
/* Releases the complaint ("recovered") when it has not recurred for quiet_ms. For problems with no
 * success event of their own, such as a driver's reject reason. */
void cp_complain_expire(struct cp_complaint *c, int64_t now_ms, int64_t quiet_ms, const char *module,
                        const char *what);

#endif
