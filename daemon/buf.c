/* buf.c - see buf.h. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cp_buf_reserve(struct cp_buf *b, size_t more)
{
        size_t need, cap;
        char *p;

        if (b->oom)
                return false;
        if (more > SIZE_MAX - b->len - 1)
                goto oom;
        need = b->len + more + 1;
        if (need <= b->cap)
                return true;
        cap = b->cap ? b->cap : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        p = realloc(b->p, cap);
        if (!p)
                goto oom;
        b->p = p;
        b->cap = cap;
        return true;
oom:
        b->oom = true;
        return false;
}

void cp_buf_append(struct cp_buf *b, const void *data, size_t len)
{
        if (!cp_buf_reserve(b, len))
                return;
        if (len)
                memcpy(b->p + b->len, data, len);
        b->len += len;
        b->p[b->len] = '\0';
}

void cp_buf_puts(struct cp_buf *b, const char *s)
{
        cp_buf_append(b, s, strlen(s));
}

void cp_buf_putc(struct cp_buf *b, char c)
{
        cp_buf_append(b, &c, 1);
}

void cp_buf_printf(struct cp_buf *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (b->oom)
                return;
        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || !cp_buf_reserve(b, (size_t)n))
                return;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
}

void cp_buf_reset(struct cp_buf *b)
{
        b->len = 0;
        b->oom = false;
        if (b->p)
                b->p[0] = '\0';
}

char *cp_buf_steal(struct cp_buf *b)
{
        char *p = b->oom || b->len == 0 ? NULL : b->p;

        if (!p)
                free(b->p);
        b->p = NULL;
        b->len = b->cap = 0;
        b->oom = false;
        return p;
}

void cp_buf_free(struct cp_buf *b)
{
        free(b->p);
        b->p = NULL;
        b->len = b->cap = 0;
        b->oom = false;
}

uint64_t cp_fnv64(const void *p, size_t n, uint64_t h)
{
        const unsigned char *s = p;

        for (size_t i = 0; i < n; i++) {
                h ^= s[i];
                h *= 1099511628211ull;
        }
        return h;
}

void cp_topic_level(char *dst, size_t len, const char *id)
{
        size_t o = 0;

        if (!len)
                return;
        for (const char *p = id; *p && o + 4 < len; p++) {
                if (*p == '/' || *p == '+' || *p == '#' || *p == '%')
                        o += (size_t)snprintf(dst + o, len - o, "%%%02X", (unsigned char)*p);
                else
                        dst[o++] = *p;
        }
        dst[o] = '\0';
}
