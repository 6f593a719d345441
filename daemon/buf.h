/* buf.h - a growable byte buffer for building responses, SQL and records. Allocation failure is sticky:
 * once an append fails, `oom` is set, later appends do nothing, and the owner checks once at the end. */
#ifndef CP_BUF_H
#define CP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "citypulse/cp_common.h"

struct cp_buf {
        char *p;     /* NUL-terminated when len > 0 or after any append */
        size_t len;
        size_t cap;
        bool oom;
};

#define CP_BUF_INIT {NULL, 0, 0, false}

/* Makes room for `more` bytes plus a NUL; false (and oom set) when that cannot be had. */
bool cp_buf_reserve(struct cp_buf *b, size_t more);
void cp_buf_append(struct cp_buf *b, const void *data, size_t len);
void cp_buf_puts(struct cp_buf *b, const char *s);
void cp_buf_putc(struct cp_buf *b, char c);
void cp_buf_printf(struct cp_buf *b, const char *fmt, ...) CP_PRINTF(2, 3);
/* Empties the buffer and keeps its memory. */
void cp_buf_reset(struct cp_buf *b);
/* Hands the bytes to the caller (NULL when empty or oom) and empties the buffer. */
char *cp_buf_steal(struct cp_buf *b);
void cp_buf_free(struct cp_buf *b);

#define CP_FNV64_INIT 1469598103934665603ull
/* FNV-1a over n bytes, continuing from h (CP_FNV64_INIT to start): ETags, change detection. */
uint64_t cp_fnv64(const void *p, size_t n, uint64_t h);

/* One MQTT topic level from an id: '/', '+', '#' and '%' percent-encoded, cut to fit dst. */
void cp_topic_level(char *dst, size_t len, const char *id);

#endif
