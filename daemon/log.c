/* log.c - formatting and sinks. A line is built in one buffer and written with one write(2), so
 * lines from the loop thread and the store thread never interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cp_log_threshold = CP_LOG_INFO;
static bool journal_sink;

static const char *const level_names[] = {
        [CP_LOG_ERR] = "err",       [CP_LOG_WARNING] = "warning", [CP_LOG_NOTICE] = "notice",
        [CP_LOG_INFO] = "info",     [CP_LOG_DEBUG] = "debug",
};
static const char level_letters[] = {[CP_LOG_ERR] = 'E',  [CP_LOG_WARNING] = 'W', [CP_LOG_NOTICE] = 'N',
                                     [CP_LOG_INFO] = 'I', [CP_LOG_DEBUG] = 'D'};

/* systemd sets JOURNAL_STREAM=<dev>:<ino> of the stream it connected to stderr. Compare, because a
 * child of a unit may inherit the variable with stderr redirected elsewhere. */
static bool stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void cp_log_init(enum cp_log_sink sink, int level)
{
        if (sink == CP_LOG_SINK_AUTO)
                journal_sink = stderr_is_journal();
        else
                journal_sink = sink == CP_LOG_SINK_JOURNAL;
        if (level >= CP_LOG_ERR && level <= CP_LOG_DEBUG)
                cp_log_threshold = level;
}

int cp_log_level_parse(const char *s)
{
        for (int i = CP_LOG_ERR; i <= CP_LOG_DEBUG; i++)
                if (strcmp(s, level_names[i]) == 0)
                        return i;
        return -EINVAL;
}

const char *cp_log_level_name(int level)
{
        if (level < CP_LOG_ERR || level > CP_LOG_DEBUG)
                return "?";
        return level_names[level];
}

static void vwrite_line(int level, const char *module, const char *fmt, va_list ap)
{
        char buf[2048];
        size_t n = 0;
        int r;

        if (level < CP_LOG_ERR)
                level = CP_LOG_ERR;
        if (level > CP_LOG_DEBUG)
                level = CP_LOG_DEBUG;
        if (journal_sink) {
                r = snprintf(buf, sizeof(buf), "<%d>", level);
        } else {
                struct timespec ts;
                struct tm tm;

                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                r = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %c ", tm.tm_year + 1900,
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                             level_letters[level]);
        }
        n = r > 0 ? (size_t)r : 0;
        r = snprintf(buf + n, sizeof(buf) - n, "%s: ", module);
        if (r > 0)
                n = CP_MIN(n + (size_t)r, sizeof(buf) - 1);
        r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
        if (r > 0)
                n = CP_MIN(n + (size_t)r, sizeof(buf) - 2);
        /* A message never spans lines: a newline in a formatted value would let one event look like two. */
        for (size_t i = 0; i < n; i++)
                if (buf[i] == '\n' || buf[i] == '\r')
                        buf[i] = ' ';
        buf[n++] = '\n';
        for (size_t off = 0; off < n;) {
                ssize_t w = write(STDERR_FILENO, buf + off, n - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                off += (size_t)w;
        }
}

void cp_log_write(int level, const char *module, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vwrite_line(level, module, fmt, ap);
        va_end(ap);
}

const char *cp_log_quote(char *buf, size_t buflen, const char *s, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (buflen < 8) {
                if (buflen)
                        buf[0] = '\0';
                return buf;
        }
        buf[o++] = '\'';
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[5];
                size_t el = 0;

                if (c == '\'' || c == '\\') {
                        esc[el++] = '\\';
                        esc[el++] = (char)c;
                } else if (c < 0x20 || c == 0x7f) {
                        esc[el++] = '\\';
                        esc[el++] = 'x';
                        esc[el++] = hex[c >> 4];
                        esc[el++] = hex[c & 15];
                } else {
                        esc[el++] = (char)c;
                }
                if (o + el + 5 > buflen) {
                        memcpy(buf + o, "...", 3);
                        o += 3;
                        break;
                }
                memcpy(buf + o, esc, el);
                o += el;
        }
        buf[o++] = '\'';
        buf[o] = '\0';
        return buf;
}

#define COMPLAIN_MIN_MS (60 * 1000)
#define COMPLAIN_MAX_MS (3600 * 1000)

bool cp_complain(struct cp_complaint *c, int64_t now_ms, const char *module, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        c->total++;
        c->last_seen_ms = now_ms;
        if (c->active && now_ms - c->last_report_ms < c->interval_ms) {
                c->suppressed++;
                return false;
        }
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (!c->active) {
                c->active = true;
                c->interval_ms = COMPLAIN_MIN_MS;
                cp_log(CP_LOG_WARNING, module, "%s", msg);
        } else {
                cp_log(CP_LOG_WARNING, module, "%s, repeated=%llu since_last_report_s=%lld", msg,
                       (unsigned long long)c->suppressed + 1, (long long)((now_ms - c->last_report_ms) / 1000));
                c->interval_ms = CP_MIN(c->interval_ms * 2, COMPLAIN_MAX_MS);
        }
        c->suppressed = 0;
        c->last_report_ms = now_ms;
        return true;
}

void cp_complain_release(struct cp_complaint *c, const char *module, const char *what)
{
        if (!c->active)
                return;
        cp_log(CP_LOG_NOTICE, module, "recovered %s, suppressed=%llu", what, (unsigned long long)c->suppressed);
        c->active = false;
        c->suppressed = 0;
        c->interval_ms = 0;
}

void cp_complain_expire(struct cp_complaint *c, int64_t now_ms, int64_t quiet_ms, const char *module,
                        const char *what)
{
        if (c->active && now_ms - c->last_seen_ms >= quiet_ms)
                cp_complain_release(c, module, what);
}
