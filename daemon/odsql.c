/* odsql.c - see odsql.h. `where` goes through a tokenizer, a recursive-descent parser that builds a
 * bounded tree, then an emitter that writes SQL from the tree; literals only ever travel as `?`
 * parameters and column names only ever come from the dataset catalog. */
#include "odsql.h"

#include "citypulse/cp_common.h"
#include "citypulse/cp_driver.h"
#include "citypulse/cp_tz.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ARGS      8  /* arguments of one function call */
#define MAX_ORDER     32 /* order_by items */
#define NUM_TEXT_MAX  64 /* longest number literal */
#define SHOW_MAX      40 /* bytes of user text quoted in a message */
#define DATE_TEXT_MAX 64 /* longest date literal */

/* ---- SQL text with parameters ---- */

void cp_sqlq_init(struct cp_sqlq *q)
{
        memset(q, 0, sizeof(*q));
}

void cp_sqlq_done(struct cp_sqlq *q)
{
        if (!q)
                return;
        for (size_t i = 0; i < q->n_params; i++)
                free(q->params[i].text);
        free(q->params);
        cp_buf_free(&q->sql);
        memset(q, 0, sizeof(*q));
}

int cp_sqlq_bind(const struct cp_sqlq *q, sqlite3_stmt *st)
{
        int r = SQLITE_OK;

        if ((size_t)sqlite3_bind_parameter_count(st) != q->n_params)
                return SQLITE_RANGE;
        for (size_t i = 0; i < q->n_params && r == SQLITE_OK; i++) {
                const struct cp_sqlparam *p = &q->params[i];
                int idx = (int)i + 1;

                switch (p->type) {
                case CP_SP_TEXT:
                        r = sqlite3_bind_text(st, idx, p->text, -1, SQLITE_TRANSIENT);
                        break;
                case CP_SP_INT:
                        r = sqlite3_bind_int64(st, idx, p->i);
                        break;
                case CP_SP_DOUBLE:
                        r = sqlite3_bind_double(st, idx, p->d);
                        break;
                default:
                        r = SQLITE_MISUSE;
                        break;
                }
        }
        return r;
}

/* A new zeroed parameter, or NULL (and sql.oom set) when the array cannot grow. */
static struct cp_sqlparam *sqlq_push(struct cp_sqlq *q)
{
        struct cp_sqlparam *p;

        if (q->sql.oom)
                return NULL;
        if (q->n_params == q->cap_params) {
                size_t cap = q->cap_params ? q->cap_params * 2 : 8;

                p = realloc(q->params, cap * sizeof(*p));
                if (!p) {
                        q->sql.oom = true;
                        return NULL;
                }
                q->params = p;
                q->cap_params = cap;
        }
        p = &q->params[q->n_params++];
        memset(p, 0, sizeof(*p));
        return p;
}

void cp_sqlq_int(struct cp_sqlq *q, int64_t v)
{
        struct cp_sqlparam *p = sqlq_push(q);

        if (!p)
                return;
        p->type = CP_SP_INT;
        p->i = v;
        cp_buf_putc(&q->sql, '?');
}

static void sqlq_double(struct cp_sqlq *q, double v)
{
        struct cp_sqlparam *p = sqlq_push(q);

        if (!p)
                return;
        p->type = CP_SP_DOUBLE;
        p->d = v;
        cp_buf_putc(&q->sql, '?');
}

void cp_sqlq_text(struct cp_sqlq *q, const char *s, size_t len)
{
        struct cp_sqlparam *p = sqlq_push(q);

        if (!p)
                return;
        p->type = CP_SP_TEXT;
        p->text = malloc(len + 1);
        if (!p->text) {
                q->n_params--;
                q->sql.oom = true;
                return;
        }
        if (len)
                memcpy(p->text, s, len);
        p->text[len] = '\0';
        cp_buf_putc(&q->sql, '?');
}

/* Appends src's text and copies of its parameters to dst. */
static void sqlq_append(struct cp_sqlq *dst, const struct cp_sqlq *src)
{
        size_t start = dst->sql.len;

        for (size_t i = 0; i < src->n_params; i++) {
                const struct cp_sqlparam *s = &src->params[i];

                if (s->type == CP_SP_TEXT)
                        cp_sqlq_text(dst, s->text, strlen(s->text));
                else if (s->type == CP_SP_INT)
                        cp_sqlq_int(dst, s->i);
                else
                        sqlq_double(dst, s->d);
        }
        /* The '?' the helpers wrote were only a side effect: put the real text in their place. */
        if (dst->sql.oom)
                return;
        dst->sql.len = start;
        dst->sql.p[start] = '\0';
        cp_buf_append(&dst->sql, src->sql.p ? src->sql.p : "", src->sql.len);
}

/* A catalog column name, quoted. Never user text. */
static void put_col(struct cp_buf *b, const char *col)
{
        cp_buf_putc(b, '"');
        cp_buf_puts(b, col);
        cp_buf_putc(b, '"');
}

/* ---- messages ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...) CP_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen) {
                va_start(ap, fmt);
                (void)vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* Copies user text s[0..len) for a message: at most SHOW_MAX bytes cut at a character boundary,
 * control bytes as '?', "..." when cut. s is valid UTF-8 (checked on entry). */
static const char *show(char out[SHOW_MAX + 4], const char *s, size_t len)
{
        size_t n = len;

        if (n > SHOW_MAX) {
                n = SHOW_MAX;
                while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                        n--;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
        if (n < len) {
                memcpy(out + n, "...", 4);
        } else {
                out[n] = '\0';
        }
        return out;
}

/* 1-based character position of byte offset off. */
static size_t char_pos(const char *s, size_t off)
{
        size_t n = 1;

        for (size_t i = 0; i < off; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        n++;
        return n;
}

/* Checks one request parameter: at most CP_ODSQL_MAX_TEXT bytes of valid UTF-8. */
static int check_text(const char *what, const char *s, size_t *ret_len, char *err, size_t errlen)
{
        size_t len = strnlen(s, CP_ODSQL_MAX_TEXT + 1), n;
        uint32_t cp;

        *ret_len = 0;
        if (len > CP_ODSQL_MAX_TEXT)
                return fail(err, errlen, "%s: longer than %d bytes", what, CP_ODSQL_MAX_TEXT);
        for (size_t i = 0; i < len; i += n) {
                n = cp_utf8_seq((const uint8_t *)s + i, len - i, &cp);
                if (n == 0)
                        return fail(err, errlen, "%s: invalid UTF-8 at position %zu", what, char_pos(s, i));
        }
        *ret_len = len;
        return 0;
}

/* ---- values in text: numbers, booleans, dates ---- */

/* A whole string as a number: [+-]digits[.digits][e[+-]digits], nothing else (no spaces, hex, inf). */
static bool text_number(const char *s, size_t len, bool *ret_is_int, int64_t *ret_i, double *ret_d)
{
        char buf[NUM_TEXT_MAX + 1], *end;
        size_t i = 0, nd = 0;
        bool is_int = true;

        if (len == 0 || len > NUM_TEXT_MAX)
                return false;
        if (s[i] == '+' || s[i] == '-')
                i++;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                nd++;
        if (i < len && s[i] == '.') {
                is_int = false;
                for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                        nd++;
        }
        if (nd == 0)
                return false;
        if (i < len && (s[i] == 'e' || s[i] == 'E')) {
                size_t ne = 0;

                is_int = false;
                i++;
                if (i < len && (s[i] == '+' || s[i] == '-'))
                        i++;
                for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                        ne++;
                if (ne == 0)
                        return false;
        }
        if (i != len)
                return false;
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (is_int) {
                errno = 0;
                *ret_i = strtoll(buf, &end, 10);
                if (errno == 0 && *end == '\0') {
                        *ret_is_int = true;
                        *ret_d = (double)*ret_i;
                        return true;
                }
        }
        /* The program never calls setlocale(), so strtod reads '.' as the decimal point. */
        *ret_d = strtod(buf, &end);
        if (*end != '\0' || !isfinite(*ret_d))
                return false;
        *ret_is_int = false;
        return true;
}

static bool text_bool(const char *s, size_t len, bool *ret)
{
        if ((len == 4 && strncasecmp(s, "true", 4) == 0) || (len == 1 && s[0] == '1')) {
                *ret = true;
                return true;
        }
        if ((len == 5 && strncasecmp(s, "false", 5) == 0) || (len == 1 && s[0] == '0')) {
                *ret = false;
                return true;
        }
        return false;
}

static bool digits(const char *s, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

/* Local midnight of y-m-d in tz, tolerating a month 13 (January of the next year). */
static int local_day(const struct cp_tz *tz, int y, int m, int d, int64_t *ret)
{
        if (m == 13) {
                y++;
                m = 1;
        }
        return cp_tz_local_to_utc(tz, y, m, d, 0, 0, 0, 0, ret);
}

/* Reads a date or a datetime as ODS writes them: YYYY, YYYY-MM, YYYY-MM-DD (or with '/'), or an ISO
 * datetime (seconds optional) with or without offset; a time without offset is read in tz. Sets the
 * period it names, [*ret_start, *ret_end): a year, a month, a local day, or one millisecond. */
static bool text_when(const char *s, size_t len, const struct cp_tz *tz, int64_t *ret_start, int64_t *ret_end)
{
        char buf[DATE_TEXT_MAX + 4];
        int y, m = 1, d = 1;
        int64_t ny;
        unsigned nm, nd;

        if (len < 4 || !digits(s, 4, &y))
                return false;
        if (len > 4 && s[4] != '-' && s[4] != '/')
                return false;
        if (len == 4)
                return local_day(tz, y, 1, 1, ret_start) == 0 && local_day(tz, y + 1, 1, 1, ret_end) == 0;
        if (len < 7 || !digits(s + 5, 2, &m))
                return false;
        if (m < 1 || m > 12)
                return false;
        if (len == 7)
                return local_day(tz, y, m, 1, ret_start) == 0 && local_day(tz, y, m + 1, 1, ret_end) == 0;
        if (len < 10 || s[7] != s[4] || !digits(s + 8, 2, &d))
                return false;
        if (len == 10) {
                /* local_day() checked the date before it is used for arithmetic. */
                if (local_day(tz, y, m, d, ret_start) < 0)
                        return false;
                cp_civil_from_days(cp_days_from_civil(y, (unsigned)m, (unsigned)d) + 1, &ny, &nm, &nd);
                return local_day(tz, (int)ny, (int)nm, (int)nd, ret_end) == 0;
        }
        if (len > DATE_TEXT_MAX || len < 16)
                return false;
        memcpy(buf, s, len);
        buf[4] = buf[7] = '-';
        /* "2026-03-14T09:00" and "2026-03-14T09:00+01:00": seconds are optional. */
        if (len == 16 || buf[16] != ':') {
                memmove(buf + 19, buf + 16, len - 16);
                memcpy(buf + 16, ":00", 3);
                len += 3;
        }
        if (cp_time_parse(buf, len, tz, ret_start) < 0)
                return false;
        *ret_end = *ret_start + 1;
        return true;
}

/* ---- tokens ---- */

enum tk {
        T_END,
        T_IDENT,  /* name or keyword */
        T_QIDENT, /* `back-quoted name` */
        T_STRING,
        T_NUMBER,
        T_DATE, /* date'...' */
        T_GEOM, /* geom'...' */
        T_LP,
        T_RP,
        T_COMMA,
        T_LBRACK,
        T_RBRACK,
        T_DOTDOT,
        T_STAR,
        T_OP,
};

enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

struct tok {
        enum tk k;
        enum op op;
        bool is_int;
        uint32_t pos, len;   /* source span */
        uint32_t s, slen;    /* decoded text in the scratch buffer: STRING, DATE, GEOM */
        uint32_t unit, ulen; /* NUMBER: letters right after it ("500m"), source span */
        int64_t i;
        double d;
};

enum nkind { N_AND, N_OR, N_NOT, N_CMP, N_IN, N_RANGE, N_NULL, N_LIKE, N_TEXT, N_BBOX, N_DIST };
enum like_mode { LM_ODS, LM_CONTAINS, LM_PREFIX };

struct node {
        enum nkind k;
        enum op op;
        enum like_mode mode;
        bool neg, lo_incl, hi_incl;
        uint32_t pos;
        int a, b; /* children (AND OR NOT), or token indices (literals) */
        int n;    /* IN: values, at tokens a, a+2, a+4... */
        const struct cp_ods_field *f;
        double g[4];
};

struct parser {
        const char *src;
        size_t len;
        struct tok *t;
        size_t nt, cap_t, cur;
        char *scratch;
        size_t sl;
        struct node nodes[CP_ODSQL_MAX_NODES];
        int nn, terms, depth;
        const struct cp_dataset *ds;
        const struct cp_tz *tz;
        char *err;
        size_t errlen;
        bool oom;
};

static int perr(struct parser *p, size_t pos, const char *fmt, ...) CP_PRINTF(3, 4);
static int perr(struct parser *p, size_t pos, const char *fmt, ...)
{
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return fail(p->err, p->errlen, "where: %s at position %zu", msg, char_pos(p->src, pos));
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static struct tok *tok_new(struct parser *p, enum tk k, size_t pos)
{
        struct tok *t;

        if (p->nt == p->cap_t) {
                size_t cap = p->cap_t ? p->cap_t * 2 : 32;

                t = realloc(p->t, cap * sizeof(*t));
                if (!t) {
                        p->oom = true;
                        return NULL;
                }
                p->t = t;
                p->cap_t = cap;
        }
        t = &p->t[p->nt++];
        memset(t, 0, sizeof(*t));
        t->k = k;
        t->pos = (uint32_t)pos;
        return t;
}

static void put_utf8(struct parser *p, uint32_t cp)
{
        char *o = p->scratch + p->sl;

        if (cp < 0x80) {
                o[0] = (char)cp;
                p->sl += 1;
        } else if (cp < 0x800) {
                o[0] = (char)(0xC0 | (cp >> 6));
                o[1] = (char)(0x80 | (cp & 0x3F));
                p->sl += 2;
        } else if (cp < 0x10000) {
                o[0] = (char)(0xE0 | (cp >> 12));
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[2] = (char)(0x80 | (cp & 0x3F));
                p->sl += 3;
        } else {
                o[0] = (char)(0xF0 | (cp >> 18));
                o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[3] = (char)(0x80 | (cp & 0x3F));
                p->sl += 4;
        }
}

static bool hex_digits(const char *s, size_t n, uint32_t *ret)
{
        uint32_t v = 0;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                uint32_t d;

                if (c >= '0' && c <= '9')
                        d = (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (uint32_t)(c - 'A' + 10);
                else
                        return false;
                v = v * 16 + d;
        }
        *ret = v;
        return true;
}

/* A backslash escape at src[*i] (just after the backslash). Decoding never grows the text: every
 * escape is at least as long as what it stands for, and a string's quotes pay for its NUL. */
static int lex_escape(struct parser *p, size_t *i, size_t start)
{
        const char *s = p->src;
        size_t at = *i - 1;
        uint32_t cp, lo;
        char e = s[*i];

        switch (e) {
        case 'b':
                cp = '\b';
                break;
        case 'f':
                cp = '\f';
                break;
        case 'n':
                cp = '\n';
                break;
        case 'r':
                cp = '\r';
                break;
        case 't':
                cp = '\t';
                break;
        case 'v':
                cp = '\v';
                break;
        case '\n':
                (*i)++;
                return 0; /* line continuation */
        case '\r':
                (*i)++;
                if (*i < p->len && s[*i] == '\n')
                        (*i)++;
                return 0;
        case 'x':
                if (*i + 2 >= p->len || !hex_digits(s + *i + 1, 2, &cp))
                        return perr(p, at, "bad \\x escape in the string starting");
                *i += 2;
                break;
        case 'u':
                if (*i + 4 >= p->len || !hex_digits(s + *i + 1, 4, &cp))
                        return perr(p, at, "bad \\u escape in the string starting");
                *i += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                        return perr(p, at, "bad \\u escape in the string starting");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (*i + 6 >= p->len || s[*i + 1] != '\\' || s[*i + 2] != 'u' ||
                            !hex_digits(s + *i + 3, 4, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                                return perr(p, at, "bad \\u escape in the string starting");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        *i += 6;
                }
                break;
        default:
                /* \' \" \\ \0 and any other character stand for themselves (ODS, as JavaScript). */
                if (e == '0' && !(*i + 1 < p->len && is_digit(s[*i + 1])))
                        cp = 0;
                else
                        cp = (unsigned char)e;
                break;
        }
        if (cp == 0)
                return perr(p, start, "NUL character in the string starting");
        (*i)++;
        if (cp >= 0x80 && cp < 0x100 && e != 'x' && e != 'u') {
                /* A non-ASCII byte after a backslash: the first byte of a character, copied as is. */
                p->scratch[p->sl++] = (char)cp;
                return 0;
        }
        put_utf8(p, cp);
        return 0;
}

/* A quoted string at src[*i] (on the quote); its decoded text goes to the scratch buffer. */
static int lex_string(struct parser *p, size_t *i, struct tok *t)
{
        const char *s = p->src;
        char q = s[*i];
        size_t start = *i;

        t->s = (uint32_t)p->sl;
        (*i)++;
        for (;;) {
                if (*i >= p->len)
                        return perr(p, start, "unterminated string starting");
                if (s[*i] == q) {
                        if (*i + 1 < p->len && s[*i + 1] == q) {
                                p->scratch[p->sl++] = q;
                                *i += 2;
                                continue;
                        }
                        (*i)++;
                        break;
                }
                if (s[*i] == '\\') {
                        (*i)++;
                        if (*i >= p->len)
                                return perr(p, start, "unterminated string starting");
                        if (lex_escape(p, i, start) < 0)
                                return -1;
                        continue;
                }
                p->scratch[p->sl++] = s[(*i)++];
        }
        t->slen = (uint32_t)(p->sl - t->s);
        p->scratch[p->sl++] = '\0';
        t->len = (uint32_t)(*i - t->pos);
        return 0;
}

static int lex_number(struct parser *p, size_t *i, struct tok *t)
{
        const char *s = p->src;
        size_t j = *i;

        if (s[j] == '+' || s[j] == '-')
                j++;
        while (j < p->len && is_digit(s[j]))
                j++;
        if (j + 1 < p->len && s[j] == '.' && is_digit(s[j + 1])) {
                for (j++; j < p->len && is_digit(s[j]); j++)
                        ;
        }
        if (j < p->len && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;

                if (k < p->len && (s[k] == '+' || s[k] == '-'))
                        k++;
                if (k < p->len && is_digit(s[k])) {
                        for (j = k; j < p->len && is_digit(s[j]); j++)
                                ;
                }
        }
        t->len = (uint32_t)(j - *i);
        if (!text_number(s + *i, j - *i, &t->is_int, &t->i, &t->d))
                return perr(p, *i, "bad number");
        if (j < p->len && is_alpha(s[j])) {
                t->unit = (uint32_t)j;
                while (j < p->len && is_alpha(s[j]))
                        j++;
                t->ulen = (uint32_t)(j - t->unit);
        }
        *i = j;
        return 0;
}

static int lex_punct(struct parser *p, size_t *i, struct tok *t)
{
        const char *s = p->src;
        char c = s[*i], n = *i + 1 < p->len ? s[*i + 1] : '\0';
        char what[SHOW_MAX + 4];
        size_t w;
        uint32_t cp;

        t->len = 1;
        switch (c) {
        case '(':
                t->k = T_LP;
                break;
        case ')':
                t->k = T_RP;
                break;
        case ',':
                t->k = T_COMMA;
                break;
        case '[':
                t->k = T_LBRACK;
                break;
        case ']':
                t->k = T_RBRACK;
                break;
        case '*':
                t->k = T_STAR;
                break;
        case '=':
        case ':':
                t->k = T_OP;
                t->op = OP_EQ;
                break;
        case '!':
                if (n != '=')
                        goto bad;
                t->k = T_OP;
                t->op = OP_NE;
                t->len = 2;
                break;
        case '<':
                t->k = T_OP;
                t->op = n == '=' ? OP_LE : n == '>' ? OP_NE : OP_LT;
                t->len = n == '=' || n == '>' ? 2 : 1;
                break;
        case '>':
                t->k = T_OP;
                t->op = n == '=' ? OP_GE : OP_GT;
                t->len = n == '=' ? 2 : 1;
                break;
        case '.':
                if (n != '.')
                        goto bad;
                t->k = T_DOTDOT;
                t->len = 2;
                break;
        default:
                goto bad;
        }
        *i += t->len;
        return 0;
bad:
        w = cp_utf8_seq((const uint8_t *)s + *i, p->len - *i, &cp);
        return perr(p, *i, "unexpected character '%s'", show(what, s + *i, w ? w : 1));
}

static int tokenize(struct parser *p)
{
        const char *s = p->src;
        size_t i = 0;
        struct tok *t;

        for (;;) {
                while (i < p->len && is_space(s[i]))
                        i++;
                t = tok_new(p, T_END, i);
                if (!t)
                        return -1;
                if (i >= p->len)
                        return 0;
                if (is_alpha(s[i])) {
                        size_t j = i;

                        while (j < p->len && (is_alpha(s[j]) || is_digit(s[j])))
                                j++;
                        t->k = T_IDENT;
                        t->len = (uint32_t)(j - i);
                        /* date'...' and geom'...': the prefix must touch the quote. */
                        if (j < p->len && (s[j] == '\'' || s[j] == '"') && j - i == 4 &&
                            (strncasecmp(s + i, "date", 4) == 0 || strncasecmp(s + i, "geom", 4) == 0)) {
                                t->k = (s[i] | 0x20) == 'd' ? T_DATE : T_GEOM;
                                i = j;
                                if (lex_string(p, &i, t) < 0)
                                        return -1;
                                t->len = (uint32_t)(i - t->pos);
                                continue;
                        }
                        i = j;
                } else if (s[i] == '`') {
                        const char *e = memchr(s + i + 1, '`', p->len - i - 1);

                        if (!e)
                                return perr(p, i, "unterminated back-quoted name starting");
                        if (e == s + i + 1)
                                return perr(p, i, "empty back-quoted name");
                        t->k = T_QIDENT;
                        t->len = (uint32_t)(e + 1 - (s + i));
                        i += t->len;
                } else if (s[i] == '"' || s[i] == '\'') {
                        t->k = T_STRING;
                        if (lex_string(p, &i, t) < 0)
                                return -1;
                } else if (is_digit(s[i]) || ((s[i] == '-' || s[i] == '+' || s[i] == '.') && i + 1 < p->len &&
                                              is_digit(s[i + 1]))) {
                        t->k = T_NUMBER;
                        if (lex_number(p, &i, t) < 0)
                                return -1;
                } else if (lex_punct(p, &i, t) < 0) {
                        return -1;
                }
        }
}

/* ---- parser ---- */

static const struct tok *cur(const struct parser *p)
{
        return &p->t[p->cur];
}

static const struct tok *peek(const struct parser *p, size_t ahead)
{
        size_t i = p->cur + ahead;

        return &p->t[i < p->nt ? i : p->nt - 1];
}

static void advance(struct parser *p)
{
        if (p->t[p->cur].k != T_END)
                p->cur++;
}

static bool tok_is_word(const struct parser *p, const struct tok *t, const char *w)
{
        size_t n = strlen(w);

        return t->k == T_IDENT && t->len == n && strncasecmp(p->src + t->pos, w, n) == 0;
}

static bool is_kw(const struct parser *p, const char *w)
{
        return tok_is_word(p, cur(p), w);
}

static bool tok_is_keyword(const struct parser *p, const struct tok *t)
{
        static const char *const kw[] = {"and",  "or",   "not",  "in",    "is",
                                         "like", "null", "true", "false", "to"};

        for (size_t i = 0; i < CP_ARRAY_LEN(kw); i++)
                if (tok_is_word(p, t, kw[i]))
                        return true;
        return false;
}

static bool tok_is_field(const struct parser *p, const struct tok *t)
{
        return t->k == T_QIDENT || (t->k == T_IDENT && !tok_is_keyword(p, t));
}

static int unexpected(struct parser *p, const struct tok *t)
{
        char what[SHOW_MAX + 4];

        if (t->k == T_END)
                return perr(p, t->pos, "unexpected end of text");
        return perr(p, t->pos, "unexpected '%s'", show(what, p->src + t->pos, t->len));
}

/* The dataset field a name token stands for, or NULL with "Unknown field: x". */
static const struct cp_ods_field *tok_field(struct parser *p, const struct tok *t)
{
        const char *name = p->src + t->pos;
        size_t len = t->len;
        const struct cp_ods_field *f;
        char what[SHOW_MAX + 4];

        if (t->k == T_QIDENT) {
                name++;
                len -= 2;
        }
        f = cp_dataset_field(p->ds, name, len);
        if (!f)
                (void)fail(p->err, p->errlen, "Unknown field: %s", show(what, name, len));
        return f;
}

static int count_term(struct parser *p, size_t pos)
{
        if (++p->terms > CP_ODSQL_MAX_NODES)
                return perr(p, pos, "more than %d terms", CP_ODSQL_MAX_NODES);
        return 0;
}

static int node_new(struct parser *p, enum nkind k, size_t pos)
{
        struct node *n;

        if (count_term(p, pos) < 0)
                return -1;
        n = &p->nodes[p->nn];
        memset(n, 0, sizeof(*n));
        n->k = k;
        n->pos = (uint32_t)pos;
        return p->nn++;
}

static const char *type_name(const struct cp_ods_field *f)
{
        return cp_ods_type_name(f->type);
}

/* One literal token (string, number, date, true, false, null); its index, or -1. */
static int parse_literal(struct parser *p)
{
        const struct tok *t = cur(p);
        char what[SHOW_MAX + 4];
        int idx = (int)p->cur;

        if (t->k == T_NUMBER && t->ulen)
                return perr(p, t->unit, "unexpected '%s' after a number",
                            show(what, p->src + t->unit, t->ulen));
        if (t->k == T_GEOM)
                return perr(p, t->pos, "geom literals only work in within_distance()");
        if (!(t->k == T_STRING || t->k == T_NUMBER || t->k == T_DATE || tok_is_word(p, t, "true") ||
              tok_is_word(p, t, "false") || tok_is_word(p, t, "null")))
                return unexpected(p, t);
        if (count_term(p, t->pos) < 0)
                return -1;
        advance(p);
        return idx;
}

static int parse_or(struct parser *p);

static int parse_in(struct parser *p, const struct cp_ods_field *f, size_t pos)
{
        const struct tok *t = cur(p);
        struct node *n;
        int idx, first, count = 0, lo, hi;
        bool lo_incl;

        if (t->k == T_LP) {
                advance(p);
                first = (int)p->cur;
                if (cur(p)->k == T_RP)
                        return perr(p, cur(p)->pos, "empty IN list");
                for (;;) {
                        if (count == CP_ODSQL_MAX_IN)
                                return perr(p, cur(p)->pos, "IN list longer than %d values", CP_ODSQL_MAX_IN);
                        if (parse_literal(p) < 0)
                                return -1;
                        count++;
                        if (cur(p)->k == T_COMMA) {
                                advance(p);
                                continue;
                        }
                        if (cur(p)->k != T_RP)
                                return unexpected(p, cur(p));
                        advance(p);
                        break;
                }
                idx = node_new(p, N_IN, pos);
                if (idx < 0)
                        return -1;
                n = &p->nodes[idx];
                n->f = f;
                n->a = first;
                n->n = count;
                return idx;
        }
        if (t->k != T_LBRACK && t->k != T_RBRACK)
                return unexpected(p, t);
        lo_incl = t->k == T_LBRACK;
        advance(p);
        lo = parse_literal(p);
        if (lo < 0)
                return -1;
        if (cur(p)->k != T_DOTDOT && !is_kw(p, "to"))
                return unexpected(p, cur(p));
        advance(p);
        hi = parse_literal(p);
        if (hi < 0)
                return -1;
        t = cur(p);
        if (t->k != T_LBRACK && t->k != T_RBRACK)
                return unexpected(p, t);
        advance(p);
        idx = node_new(p, N_RANGE, pos);
        if (idx < 0)
                return -1;
        n = &p->nodes[idx];
        n->f = f;
        n->a = lo;
        n->b = hi;
        n->lo_incl = lo_incl;
        n->hi_incl = t->k == T_RBRACK;
        return idx;
}

static int parse_like(struct parser *p, const struct cp_ods_field *f, size_t pos)
{
        int idx, lit;

        if (cur(p)->k != T_STRING)
                return perr(p, cur(p)->pos, "LIKE needs a quoted pattern");
        lit = parse_literal(p);
        if (lit < 0)
                return -1;
        idx = node_new(p, N_LIKE, pos);
        if (idx < 0)
                return -1;
        p->nodes[idx].f = f;
        p->nodes[idx].a = lit;
        p->nodes[idx].mode = LM_ODS;
        return idx;
}

static int wrap_not(struct parser *p, int child, size_t pos)
{
        int idx;

        if (child < 0)
                return -1;
        idx = node_new(p, N_NOT, pos);
        if (idx < 0)
                return -1;
        p->nodes[idx].a = child;
        return idx;
}

/* field op literal, field IS [NOT] NULL, field [NOT] IN ..., field [NOT] LIKE "..." */
static int parse_field_pred(struct parser *p)
{
        const struct tok *ft = cur(p);
        const struct cp_ods_field *f = tok_field(p, ft);
        size_t pos = ft->pos;
        char what[SHOW_MAX + 4];
        int idx, lit;
        bool neg = false;

        if (!f)
                return -1;
        advance(p);
        if (cur(p)->k == T_OP) {
                enum op op = cur(p)->op;

                advance(p);
                lit = parse_literal(p);
                if (lit < 0)
                        return -1;
                idx = node_new(p, N_CMP, pos);
                if (idx < 0)
                        return -1;
                p->nodes[idx].f = f;
                p->nodes[idx].op = op;
                p->nodes[idx].a = lit;
                return idx;
        }
        if (is_kw(p, "is")) {
                advance(p);
                if (is_kw(p, "not")) {
                        neg = true;
                        advance(p);
                }
                if (!is_kw(p, "null"))
                        return unexpected(p, cur(p));
                advance(p);
                idx = node_new(p, N_NULL, pos);
                if (idx < 0)
                        return -1;
                p->nodes[idx].f = f;
                p->nodes[idx].neg = neg;
                return idx;
        }
        if (is_kw(p, "not")) {
                size_t npos = cur(p)->pos;

                advance(p);
                if (is_kw(p, "in")) {
                        advance(p);
                        return wrap_not(p, parse_in(p, f, pos), npos);
                }
                if (is_kw(p, "like")) {
                        advance(p);
                        return wrap_not(p, parse_like(p, f, pos), npos);
                }
                return unexpected(p, cur(p));
        }
        if (is_kw(p, "in")) {
                advance(p);
                return parse_in(p, f, pos);
        }
        if (is_kw(p, "like")) {
                advance(p);
                return parse_like(p, f, pos);
        }
        if (cur(p)->k == T_END)
                return perr(p, cur(p)->pos, "expected an operator after '%s'",
                            show(what, p->src + pos, ft->len));
        return unexpected(p, cur(p));
}

/* literal op field, as `5 < free_spaces`. */
static int parse_literal_first(struct parser *p)
{
        static const enum op flip[] = {[OP_EQ] = OP_EQ, [OP_NE] = OP_NE, [OP_LT] = OP_GT,
                                       [OP_LE] = OP_GE, [OP_GT] = OP_LT, [OP_GE] = OP_LE};
        size_t pos = cur(p)->pos;
        const struct cp_ods_field *f;
        enum op op;
        int lit, idx;

        lit = parse_literal(p);
        if (lit < 0)
                return -1;
        if (cur(p)->k != T_OP)
                return unexpected(p, cur(p));
        op = cur(p)->op;
        advance(p);
        if (!tok_is_field(p, cur(p)))
                return unexpected(p, cur(p));
        f = tok_field(p, cur(p));
        if (!f)
                return -1;
        advance(p);
        idx = node_new(p, N_CMP, pos);
        if (idx < 0)
                return -1;
        p->nodes[idx].f = f;
        p->nodes[idx].op = flip[op];
        p->nodes[idx].a = lit;
        return idx;
}

static bool unit_factor(const char *u, size_t len, double *ret)
{
        static const struct {
                const char *name;
                double m;
        } units[] = {{"m", 1},       {"km", 1000}, {"mi", 1609.344}, {"yd", 0.9144},
                     {"ft", 0.3048}, {"cm", 0.01}, {"mm", 0.001}};

        if (len == 0) {
                *ret = 1;
                return true;
        }
        for (size_t i = 0; i < CP_ARRAY_LEN(units); i++) {
                if (strlen(units[i].name) == len && strncasecmp(units[i].name, u, len) == 0) {
                        *ret = units[i].m;
                        return true;
                }
        }
        return false;
}

/* geom'POINT(lon lat)' (WKT) or a GeoJSON Point or Feature with a Point geometry. */
static bool geom_point(const char *s, size_t len, double *ret_lat, double *ret_lon)
{
        json_t *j, *g, *c;
        const char *type;
        bool ok = false;
        size_t i = 0;

        while (i < len && is_space(s[i]))
                i++;
        if (i < len && s[i] == '{') {
                j = json_loadb(s, len, JSON_REJECT_DUPLICATES, NULL);
                if (!j)
                        return false;
                g = j;
                type = json_string_value(json_object_get(g, "type"));
                if (type && strcmp(type, "Feature") == 0) {
                        g = json_object_get(g, "geometry");
                        type = json_string_value(json_object_get(g, "type"));
                }
                c = json_object_get(g, "coordinates");
                if (type && strcmp(type, "Point") == 0 && json_array_size(c) == 2 &&
                    json_is_number(json_array_get(c, 0)) && json_is_number(json_array_get(c, 1))) {
                        *ret_lon = json_number_value(json_array_get(c, 0));
                        *ret_lat = json_number_value(json_array_get(c, 1));
                        ok = true;
                }
                json_decref(j);
                return ok;
        }
        if (len - i < 5 || strncasecmp(s + i, "POINT", 5) != 0)
                return false;
        for (i += 5; i < len && is_space(s[i]);)
                i++;
        if (i >= len || s[i++] != '(')
                return false;
        for (int k = 0; k < 2; k++) {
                size_t j0;
                bool is_int;
                int64_t iv;
                double *out = k == 0 ? ret_lon : ret_lat;

                while (i < len && is_space(s[i]))
                        i++;
                for (j0 = i; i < len && !is_space(s[i]) && s[i] != ')';)
                        i++;
                if (!text_number(s + j0, i - j0, &is_int, &iv, out))
                        return false;
        }
        while (i < len && is_space(s[i]))
                i++;
        if (i >= len || s[i++] != ')')
                return false;
        while (i < len && is_space(s[i]))
                i++;
        return i == len;
}

static bool lat_ok(double v)
{
        return isfinite(v) && v >= -90 && v <= 90;
}

static bool lon_ok(double v)
{
        return isfinite(v) && v >= -180 && v <= 180;
}

/* Arguments of in_bbox() and within_distance(). */
static int parse_geo_fn(struct parser *p, const char *fn, size_t pos, const int *args, int n,
                        const struct cp_ods_field *f)
{
        const struct tok *t;
        double lat, lon, factor, m;
        struct node *nd;
        int idx;

        if (f->type != CP_ODS_GEO_POINT)
                return perr(p, pos, "%s() needs a geo_point_2d field, '%s' is %s", fn, f->name, type_name(f));
        if (strcmp(fn, "in_bbox") == 0) {
                double v[4];

                for (int k = 0; k < 4; k++) {
                        t = &p->t[args[k + 1]];
                        if (t->k != T_NUMBER || t->ulen)
                                return perr(p, t->pos, "in_bbox() argument %d must be a number", k + 2);
                        v[k] = t->d;
                        if (!(k % 2 == 0 ? lat_ok(v[k]) : lon_ok(v[k])))
                                return perr(p, t->pos, "in_bbox() argument %d is not a %s", k + 2,
                                            k % 2 == 0 ? "latitude" : "longitude");
                }
                idx = node_new(p, N_BBOX, pos);
                if (idx < 0)
                        return -1;
                nd = &p->nodes[idx];
                nd->f = f;
                nd->g[0] = fmin(v[0], v[2]);
                nd->g[1] = fmax(v[0], v[2]);
                nd->g[2] = fmin(v[1], v[3]);
                nd->g[3] = fmax(v[1], v[3]);
                return idx;
        }
        (void)n;
        t = &p->t[args[1]];
        if (t->k != T_GEOM || !geom_point(p->scratch + t->s, t->slen, &lat, &lon))
                return perr(p, t->pos, "within_distance() argument 2 must be geom'POINT(lon lat)'");
        if (!lat_ok(lat) || !lon_ok(lon))
                return perr(p, t->pos, "within_distance() point is not a longitude and a latitude");
        t = &p->t[args[2]];
        if (t->k != T_NUMBER)
                return perr(p, t->pos, "within_distance() argument 3 must be a distance such as 500m");
        if (!unit_factor(p->src + t->unit, t->ulen, &factor))
                return perr(p, t->unit, "unknown distance unit (use m, km, mi, yd, ft, cm or mm)");
        m = t->d * factor;
        if (!isfinite(m) || m < 0)
                return perr(p, t->pos, "within_distance() needs a distance of 0 or more");
        idx = node_new(p, N_DIST, pos);
        if (idx < 0)
                return -1;
        nd = &p->nodes[idx];
        nd->f = f;
        nd->g[0] = lat;
        nd->g[1] = lon;
        nd->g[2] = m;
        return idx;
}

/* name(args...): in_bbox, within_distance, search, startswith. */
static int parse_function(struct parser *p)
{
        static const struct {
                const char *name;
                int nargs;
        } fns[] = {{"in_bbox", 5}, {"within_distance", 3}, {"search", 2}, {"startswith", 2}};
        const struct tok *nt = cur(p), *t;
        size_t pos = nt->pos;
        char what[SHOW_MAX + 4];
        const char *fn = NULL;
        const struct cp_ods_field *f = NULL;
        int args[MAX_ARGS], n = 0, want = -1, idx;
        double factor;

        for (size_t i = 0; i < CP_ARRAY_LEN(fns); i++) {
                if (tok_is_word(p, nt, fns[i].name)) {
                        want = fns[i].nargs;
                        fn = fns[i].name;
                }
        }
        if (want < 0)
                return perr(p, pos, "unknown function '%s'", show(what, p->src + pos, nt->len));
        advance(p);
        advance(p); /* '(' */
        while (cur(p)->k != T_RP) {
                t = cur(p);
                if (n == MAX_ARGS)
                        return perr(p, t->pos, "too many arguments to %s()", fn);
                if (!(tok_is_field(p, t) || t->k == T_STAR || t->k == T_STRING || t->k == T_NUMBER ||
                      t->k == T_DATE || t->k == T_GEOM || tok_is_word(p, t, "true") ||
                      tok_is_word(p, t, "false") || tok_is_word(p, t, "null")))
                        return unexpected(p, t);
                if (count_term(p, t->pos) < 0)
                        return -1;
                args[n++] = (int)p->cur;
                advance(p);
                /* "500 m": a unit written apart from its number. */
                if (t->k == T_NUMBER && !t->ulen && cur(p)->k == T_IDENT &&
                    unit_factor(p->src + cur(p)->pos, cur(p)->len, &factor) &&
                    (peek(p, 1)->k == T_COMMA || peek(p, 1)->k == T_RP)) {
                        p->t[args[n - 1]].unit = cur(p)->pos;
                        p->t[args[n - 1]].ulen = cur(p)->len;
                        advance(p);
                }
                if (cur(p)->k == T_COMMA) {
                        advance(p);
                        if (cur(p)->k == T_RP)
                                return unexpected(p, cur(p));
                } else if (cur(p)->k != T_RP) {
                        return unexpected(p, cur(p));
                }
        }
        advance(p);
        if (n != want)
                return perr(p, pos, "%s() takes %d arguments, not %d", fn, want, n);
        t = &p->t[args[0]];
        if (!(strcmp(fn, "search") == 0 && t->k == T_STAR)) {
                if (!tok_is_field(p, t))
                        return perr(p, t->pos, "%s() argument 1 must be a field name", fn);
                f = tok_field(p, t);
                if (!f)
                        return -1;
        }
        if (strcmp(fn, "in_bbox") == 0 || strcmp(fn, "within_distance") == 0)
                return parse_geo_fn(p, fn, pos, args, n, f);
        if (f && f->type != CP_ODS_TEXT)
                return perr(p, pos, "%s() needs a text field, '%s' is %s", fn, f->name, type_name(f));
        t = &p->t[args[1]];
        if (t->k != T_STRING)
                return perr(p, t->pos, "%s() argument 2 must be a quoted string", fn);
        idx = node_new(p, N_TEXT, pos);
        if (idx < 0)
                return -1;
        p->nodes[idx].f = f;
        p->nodes[idx].a = args[1];
        p->nodes[idx].mode = strcmp(fn, "startswith") == 0 ? LM_PREFIX : LM_CONTAINS;
        return idx;
}

static int parse_not(struct parser *p);

static int enter(struct parser *p, size_t pos)
{
        if (++p->depth > CP_ODSQL_MAX_DEPTH)
                return fail(p->err, p->errlen, "where: nesting deeper than %d levels (at position %zu)",
                            CP_ODSQL_MAX_DEPTH, char_pos(p->src, pos));
        return 0;
}

static int parse_primary(struct parser *p)
{
        const struct tok *t = cur(p);
        int n, idx;

        switch (t->k) {
        case T_LP:
                if (enter(p, t->pos) < 0)
                        return -1;
                advance(p);
                n = parse_or(p);
                if (n < 0)
                        return -1;
                if (cur(p)->k != T_RP)
                        return cur(p)->k == T_END ? perr(p, cur(p)->pos, "missing ')'")
                                                  : unexpected(p, cur(p));
                advance(p);
                p->depth--;
                return n;
        case T_STRING:
                if (peek(p, 1)->k == T_OP)
                        return parse_literal_first(p);
                /* A bare string: full-text search over the text fields. */
                idx = node_new(p, N_TEXT, t->pos);
                if (idx < 0)
                        return -1;
                p->nodes[idx].a = (int)p->cur;
                p->nodes[idx].mode = LM_CONTAINS;
                advance(p);
                return idx;
        case T_NUMBER:
        case T_DATE:
                return parse_literal_first(p);
        case T_IDENT:
                if (tok_is_word(p, t, "true") || tok_is_word(p, t, "false") || tok_is_word(p, t, "null"))
                        return parse_literal_first(p);
                if (peek(p, 1)->k == T_LP && !tok_is_keyword(p, t))
                        return parse_function(p);
                if (tok_is_keyword(p, t))
                        return unexpected(p, t);
                return parse_field_pred(p);
        case T_QIDENT:
                return parse_field_pred(p);
        default:
                return unexpected(p, t);
        }
}

static int parse_not(struct parser *p)
{
        size_t pos = cur(p)->pos;
        int n;

        if (!is_kw(p, "not"))
                return parse_primary(p);
        if (enter(p, pos) < 0)
                return -1;
        advance(p);
        n = wrap_not(p, parse_not(p), pos);
        p->depth--;
        return n;
}

static int parse_binary(struct parser *p, const char *word, enum nkind k)
{
        int l = k == N_OR ? parse_binary(p, "and", N_AND) : parse_not(p), r, idx;

        if (l < 0)
                return -1;
        while (is_kw(p, word)) {
                size_t pos = cur(p)->pos;

                advance(p);
                r = k == N_OR ? parse_binary(p, "and", N_AND) : parse_not(p);
                if (r < 0)
                        return -1;
                idx = node_new(p, k, pos);
                if (idx < 0)
                        return -1;
                p->nodes[idx].a = l;
                p->nodes[idx].b = r;
                l = idx;
        }
        return l;
}

static int parse_or(struct parser *p)
{
        return parse_binary(p, "or", N_OR);
}

/* ---- SQL from the tree ---- */

/* A literal converted to a field's SQL type. */
struct value {
        int type; /* enum cp_sqlparam_type */
        const char *s;
        size_t slen;
        int64_t i;
        double d;
};

static void put_value(struct cp_sqlq *q, const struct value *v)
{
        if (v->type == CP_SP_TEXT)
                cp_sqlq_text(q, v->s, v->slen);
        else if (v->type == CP_SP_INT)
                cp_sqlq_int(q, v->i);
        else
                sqlq_double(q, v->d);
}

static int convert(struct parser *p, const struct cp_ods_field *f, int ti, struct value *v)
{
        const struct tok *t = &p->t[ti];
        const char *s = t->k == T_STRING || t->k == T_DATE ? p->scratch + t->s : p->src + t->pos;
        size_t len = t->k == T_STRING || t->k == T_DATE ? t->slen : t->len;
        bool is_int, b = false, is_bool = t->k == T_IDENT;
        char what[SHOW_MAX + 4];
        int64_t end;

        memset(v, 0, sizeof(*v));
        switch (f->type) {
        case CP_ODS_TEXT:
                if (t->k == T_DATE)
                        return perr(p, t->pos, "text field '%s' cannot be compared with a date", f->name);
                /* A number is compared as the text it was written as, true and false as words. */
                v->type = CP_SP_TEXT;
                v->s = is_bool ? (tok_is_word(p, t, "true") ? "true" : "false") : s;
                v->slen = is_bool ? strlen(v->s) : len;
                return 0;
        case CP_ODS_INT:
        case CP_ODS_DOUBLE:
                if (t->k == T_NUMBER) {
                        v->type = t->is_int ? CP_SP_INT : CP_SP_DOUBLE;
                        v->i = t->i;
                        v->d = t->d;
                        return 0;
                }
                if (t->k == T_STRING && text_number(s, len, &is_int, &v->i, &v->d)) {
                        v->type = is_int ? CP_SP_INT : CP_SP_DOUBLE;
                        return 0;
                }
                return perr(p, t->pos, "'%s' is not a number (field '%s' is %s)", show(what, s, len), f->name,
                            type_name(f));
        case CP_ODS_BOOLEAN:
                if (is_bool ||
                    ((t->k == T_STRING || (t->k == T_NUMBER && t->is_int)) && text_bool(s, len, &b))) {
                        v->type = CP_SP_INT;
                        v->i = is_bool ? tok_is_word(p, t, "true") : b;
                        return 0;
                }
                return perr(p, t->pos, "'%s' is not a boolean (field '%s')", show(what, s, len), f->name);
        case CP_ODS_DATETIME:
                if ((t->k == T_DATE || t->k == T_STRING) && text_when(s, len, p->tz, &v->i, &end)) {
                        v->type = CP_SP_INT;
                        return 0;
                }
                if (t->k == T_DATE || t->k == T_STRING)
                        return perr(p, t->pos, "'%s' is not a date", show(what, s, len));
                return perr(p, t->pos, "datetime field '%s' needs a date such as date'2026-03-14'", f->name);
        case CP_ODS_GEO_POINT:
                break;
        }
        return perr(p, t->pos, "geo field '%s' only works in in_bbox(), within_distance() and IS NULL",
                    f->name);
}

static bool tok_is_null(const struct parser *p, int ti)
{
        return tok_is_word(p, &p->t[ti], "null");
}

static int geo_refused(struct parser *p, const struct node *n)
{
        return perr(p, n->pos, "geo field '%s' only works in in_bbox(), within_distance() and IS NULL",
                    n->f->name);
}

static int emit_cmp(struct parser *p, struct cp_sqlq *q, const struct node *n)
{
        static const char *const ops[] = {[OP_EQ] = " = ",  [OP_NE] = " <> ", [OP_LT] = " < ",
                                          [OP_LE] = " <= ", [OP_GT] = " > ",  [OP_GE] = " >= "};
        struct value v;

        if (n->f->type == CP_ODS_GEO_POINT)
                return geo_refused(p, n);
        if (tok_is_null(p, n->a)) {
                if (n->op != OP_EQ && n->op != OP_NE)
                        return perr(p, p->t[n->a].pos, "null can only be compared with = or !=");
                put_col(&q->sql, n->f->col);
                cp_buf_puts(&q->sql, n->op == OP_EQ ? " IS NULL" : " IS NOT NULL");
                return 0;
        }
        if (convert(p, n->f, n->a, &v) < 0)
                return -1;
        if (n->op == OP_NE) {
                /* As on ODS, a row without a value is "not equal". */
                cp_buf_putc(&q->sql, '(');
                put_col(&q->sql, n->f->col);
                cp_buf_puts(&q->sql, " IS NULL OR ");
        }
        put_col(&q->sql, n->f->col);
        cp_buf_puts(&q->sql, ops[n->op]);
        put_value(q, &v);
        if (n->op == OP_NE)
                cp_buf_putc(&q->sql, ')');
        return 0;
}

static int emit_in(struct parser *p, struct cp_sqlq *q, const struct node *n)
{
        struct value v;
        int k = 0;
        bool has_null = false;

        if (n->f->type == CP_ODS_GEO_POINT)
                return geo_refused(p, n);
        cp_buf_putc(&q->sql, '(');
        for (int j = 0; j < n->n; j++) {
                int ti = n->a + 2 * j;

                if (tok_is_null(p, ti)) {
                        has_null = true;
                        continue;
                }
                if (convert(p, n->f, ti, &v) < 0)
                        return -1;
                if (k++ == 0) {
                        put_col(&q->sql, n->f->col);
                        cp_buf_puts(&q->sql, " IN (");
                } else {
                        cp_buf_putc(&q->sql, ',');
                }
                put_value(q, &v);
        }
        if (k)
                cp_buf_putc(&q->sql, ')');
        if (has_null) {
                if (k)
                        cp_buf_puts(&q->sql, " OR ");
                put_col(&q->sql, n->f->col);
                cp_buf_puts(&q->sql, " IS NULL");
        }
        cp_buf_putc(&q->sql, ')');
        return 0;
}

static int emit_range(struct parser *p, struct cp_sqlq *q, const struct node *n)
{
        struct value lo, hi;

        if (n->f->type == CP_ODS_GEO_POINT)
                return geo_refused(p, n);
        if (tok_is_null(p, n->a) || tok_is_null(p, n->b))
                return perr(p, n->pos, "a range cannot have a null end");
        if (convert(p, n->f, n->a, &lo) < 0 || convert(p, n->f, n->b, &hi) < 0)
                return -1;
        cp_buf_putc(&q->sql, '(');
        put_col(&q->sql, n->f->col);
        cp_buf_puts(&q->sql, n->lo_incl ? " >= " : " > ");
        put_value(q, &lo);
        cp_buf_puts(&q->sql, " AND ");
        put_col(&q->sql, n->f->col);
        cp_buf_puts(&q->sql, n->hi_incl ? " <= " : " < ");
        put_value(q, &hi);
        cp_buf_putc(&q->sql, ')');
        return 0;
}

static void emit_null(struct cp_sqlq *q, const struct node *n)
{
        if (n->f->type == CP_ODS_GEO_POINT) {
                cp_buf_putc(&q->sql, '(');
                put_col(&q->sql, n->f->col);
                cp_buf_puts(&q->sql, n->neg ? " IS NOT NULL AND " : " IS NULL OR ");
                put_col(&q->sql, n->f->col2);
                cp_buf_puts(&q->sql, n->neg ? " IS NOT NULL)" : " IS NULL)");
                return;
        }
        put_col(&q->sql, n->f->col);
        cp_buf_puts(&q->sql, n->neg ? " IS NOT NULL" : " IS NULL");
}

/* The SQL LIKE pattern (ESCAPE '\') for user text s in a mode; see odsql.h for LM_ODS. */
static void like_pattern(struct cp_buf *b, const char *s, size_t len, enum like_mode mode)
{
        bool wild = false;

        if (mode == LM_ODS)
                wild = memchr(s, '*', len) || memchr(s, '%', len);
        if (mode == LM_CONTAINS || (mode == LM_ODS && !wild))
                cp_buf_putc(b, '%');
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (mode == LM_ODS && (c == '*' || c == '%')) {
                        cp_buf_putc(b, '%');
                        continue;
                }
                if (c == '%' || c == '_' || c == '\\')
                        cp_buf_putc(b, '\\');
                cp_buf_putc(b, c);
        }
        if (mode != LM_ODS || !wild)
                cp_buf_putc(b, '%');
}

static void emit_like_col(struct cp_sqlq *q, const char *col, const char *pat, size_t len)
{
        put_col(&q->sql, col);
        cp_buf_puts(&q->sql, " LIKE ");
        cp_sqlq_text(q, pat, len);
        cp_buf_puts(&q->sql, " ESCAPE '\\'");
}

static int emit_like(struct parser *p, struct cp_sqlq *q, const struct node *n)
{
        const struct tok *t = &p->t[n->a];
        struct cp_buf pat = CP_BUF_INIT;
        int k = 0;

        if (n->f && n->f->type != CP_ODS_TEXT)
                return perr(p, n->pos, "LIKE needs a text field, '%s' is %s", n->f->name, type_name(n->f));
        like_pattern(&pat, p->scratch + t->s, t->slen, n->mode);
        if (pat.oom) {
                q->sql.oom = true;
                cp_buf_free(&pat);
                return 0;
        }
        if (n->f) {
                emit_like_col(q, n->f->col, pat.p, pat.len);
                cp_buf_free(&pat);
                return 0;
        }
        /* Full text: any text field of the dataset. */
        cp_buf_putc(&q->sql, '(');
        for (size_t i = 0; i < p->ds->n_fields; i++) {
                if (p->ds->fields[i].type != CP_ODS_TEXT)
                        continue;
                if (k++)
                        cp_buf_puts(&q->sql, " OR ");
                emit_like_col(q, p->ds->fields[i].col, pat.p, pat.len);
        }
        if (!k)
                cp_buf_putc(&q->sql, '0');
        cp_buf_putc(&q->sql, ')');
        cp_buf_free(&pat);
        return 0;
}

static void emit_between(struct cp_sqlq *q, const char *col, double lo, double hi)
{
        put_col(&q->sql, col);
        cp_buf_puts(&q->sql, " BETWEEN ");
        sqlq_double(q, lo);
        cp_buf_puts(&q->sql, " AND ");
        sqlq_double(q, hi);
}

static void emit_bbox(struct cp_sqlq *q, const struct node *n)
{
        cp_buf_putc(&q->sql, '(');
        emit_between(q, n->f->col, n->g[0], n->g[1]);
        cp_buf_puts(&q->sql, " AND ");
        emit_between(q, n->f->col2, n->g[2], n->g[3]);
        cp_buf_putc(&q->sql, ')');
}

/* within_distance: a latitude/longitude box that surely holds the circle (so an index on lat or lon
 * can help), then the exact great-circle distance. */
static void emit_dist(struct cp_sqlq *q, const struct node *n)
{
        const double deg = 180.0 / M_PI;
        double lat = n->g[0], lon = n->g[1], m = n->g[2];
        double dlat = m / CP_EARTH_RADIUS_M * deg * 1.001 + 1e-9, dlon, far;

        cp_buf_putc(&q->sql, '(');
        emit_between(q, n->f->col, fmax(-90, lat - dlat), fmin(90, lat + dlat));
        cp_buf_puts(&q->sql, " AND ");
        far = fabs(lat) + dlat;
        if (far < 89 && dlat < 45) {
                dlon = dlat / cos(far / deg);
                if (lon - dlon >= -180 && lon + dlon <= 180) {
                        emit_between(q, n->f->col2, lon - dlon, lon + dlon);
                        cp_buf_puts(&q->sql, " AND ");
                }
        }
        cp_buf_puts(&q->sql, "cp_distance_m(");
        put_col(&q->sql, n->f->col);
        cp_buf_puts(&q->sql, ", ");
        put_col(&q->sql, n->f->col2);
        cp_buf_puts(&q->sql, ", ");
        sqlq_double(q, lat);
        cp_buf_puts(&q->sql, ", ");
        sqlq_double(q, lon);
        cp_buf_puts(&q->sql, ") <= ");
        sqlq_double(q, m);
        cp_buf_putc(&q->sql, ')');
}

/* The kind an AND or OR node has once negated (De Morgan). */
static enum nkind eff_kind(enum nkind k, bool neg)
{
        return !neg ? k : k == N_AND ? N_OR : N_AND;
}

struct operand {
        int ni;
        bool neg;
        int height;
};

/* Gathers the operands of the chain of kind k rooted at node ni: "a AND (b AND NOT (c OR d))" is one
 * chain a, b, NOT c, NOT d. Negations are pushed down to the leaves on the way. */
static void chain_operands(const struct parser *p, int ni, bool neg, enum nkind k, struct operand *ops,
                           int *n)
{
        const struct node *nd = &p->nodes[ni];

        while (nd->k == N_NOT) {
                neg = !neg;
                ni = nd->a;
                nd = &p->nodes[ni];
        }
        if ((nd->k == N_AND || nd->k == N_OR) && eff_kind(nd->k, neg) == k) {
                chain_operands(p, nd->a, neg, k, ops, n);
                chain_operands(p, nd->b, neg, k, ops, n);
                return;
        }
        ops[*n].ni = ni;
        ops[*n].neg = neg;
        ops[*n].height = 0;
        (*n)++;
}

static int sql_height(const struct parser *p, int ni, bool neg);

/* The greatest height among the operands of the chain of kind k rooted at ni. */
static int chain_height(const struct parser *p, int ni, bool neg, enum nkind k)
{
        const struct node *nd = &p->nodes[ni];

        while (nd->k == N_NOT) {
                neg = !neg;
                ni = nd->a;
                nd = &p->nodes[ni];
        }
        if ((nd->k == N_AND || nd->k == N_OR) && eff_kind(nd->k, neg) == k) {
                /* Locals, because CP_MAX() evaluates an argument twice: the walk would be exponential. */
                int ha = chain_height(p, nd->a, neg, k), hb = chain_height(p, nd->b, neg, k);

                return CP_MAX(ha, hb);
        }
        return sql_height(p, ni, neg);
}

/* How deeply the SQL of node ni nests groups in parentheses. */
static int sql_height(const struct parser *p, int ni, bool neg)
{
        const struct node *nd = &p->nodes[ni];
        int ha, hb;

        while (nd->k == N_NOT) {
                neg = !neg;
                ni = nd->a;
                nd = &p->nodes[ni];
        }
        if (nd->k != N_AND && nd->k != N_OR)
                return 0;
        ha = chain_height(p, nd->a, neg, eff_kind(nd->k, neg));
        hb = chain_height(p, nd->b, neg, eff_kind(nd->k, neg));
        return 1 + CP_MAX(ha, hb);
}

static int emit_leaf(struct parser *p, struct cp_sqlq *q, const struct node *n)
{
        switch (n->k) {
        case N_CMP:
                return emit_cmp(p, q, n);
        case N_IN:
                return emit_in(p, q, n);
        case N_RANGE:
                return emit_range(p, q, n);
        case N_NULL:
                emit_null(q, n);
                return 0;
        case N_LIKE:
        case N_TEXT:
                return emit_like(p, q, n);
        case N_BBOX:
                emit_bbox(q, n);
                return 0;
        case N_DIST:
                emit_dist(q, n);
                return 0;
        default:
                return -1;
        }
}

/* Writes node ni, negated when neg. Two constraints shape the SQL:
 * - two-valued logic as on ODS: a test on a null field is false, so its negation is true; a negated
 *   leaf is written NOT IFNULL(leaf, 0) and negations are pushed down to the leaves (De Morgan);
 * - SQLite's parser has a fixed stack (about 30 levels of "x AND (" ...), so a chain of one kind is
 *   written flat, and its deepest operands first: "((... AND x) OR y)" costs one level per group
 *   where "y OR (x AND (...))" costs three. AND and OR commute, so the order changes nothing else. */
static int emit(struct parser *p, struct cp_sqlq *q, int ni, bool neg)
{
        const struct node *nd = &p->nodes[ni];
        struct operand *ops;
        enum nkind k;
        int n = 0, r = 0;

        while (nd->k == N_NOT) {
                neg = !neg;
                nd = &p->nodes[nd->a];
        }
        if (nd->k != N_AND && nd->k != N_OR) {
                if (!neg)
                        return emit_leaf(p, q, nd);
                cp_buf_puts(&q->sql, "NOT IFNULL(");
                r = emit_leaf(p, q, nd);
                cp_buf_puts(&q->sql, ", 0)");
                return r;
        }
        ops = malloc(CP_ODSQL_MAX_NODES * sizeof(*ops));
        if (!ops) {
                q->sql.oom = true;
                return 0;
        }
        k = eff_kind(nd->k, neg);
        chain_operands(p, (int)(nd - p->nodes), neg, k, ops, &n);
        for (int i = 0; i < n; i++)
                ops[i].height = sql_height(p, ops[i].ni, ops[i].neg);
        /* Stable insertion sort, deepest first. */
        for (int i = 1; i < n; i++) {
                struct operand o = ops[i];
                int j = i;

                for (; j > 0 && ops[j - 1].height < o.height; j--)
                        ops[j] = ops[j - 1];
                ops[j] = o;
        }
        cp_buf_putc(&q->sql, '(');
        for (int i = 0; i < n && r == 0; i++) {
                if (i)
                        cp_buf_puts(&q->sql, k == N_AND ? " AND " : " OR ");
                r = emit(p, q, ops[i].ni, ops[i].neg);
        }
        cp_buf_putc(&q->sql, ')');
        free(ops);
        return r;
}

static bool blank(const char *s)
{
        for (; *s; s++)
                if (!is_space(*s))
                        return false;
        return true;
}

/* Appends "(<where as SQL>)" to q. */
static int where_to_sql(const struct cp_dataset *ds, const char *where, const struct cp_tz *tz,
                        struct cp_sqlq *q, char *err, size_t errlen)
{
        struct parser *p;
        size_t len;
        int r, root;

        r = check_text("where", where, &len, err, errlen);
        if (r < 0)
                return r;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->src = where;
        p->len = len;
        p->ds = ds;
        p->tz = tz;
        p->err = err;
        p->errlen = errlen;
        p->scratch = malloc(len + 1);
        r = -ENOMEM;
        if (!p->scratch)
                goto out;
        r = -EINVAL;
        if (tokenize(p) < 0)
                goto out;
        root = parse_or(p);
        if (root < 0)
                goto out;
        if (cur(p)->k != T_END) {
                (void)unexpected(p, cur(p));
                goto out;
        }
        cp_buf_putc(&q->sql, '(');
        if (emit(p, q, root, false) < 0)
                goto out;
        cp_buf_putc(&q->sql, ')');
        r = 0;
out:
        if (p->oom)
                r = -ENOMEM;
        free(p->t);
        free(p->scratch);
        free(p);
        return r;
}

/* ---- refine, exclude, updated_since ---- */

static void trim(const char **s, size_t *len)
{
        while (*len && is_space(**s)) {
                (*s)++;
                (*len)--;
        }
        while (*len && is_space((*s)[*len - 1]))
                (*len)--;
}

/* A field name as written in select, order_by or refine: plain or `back-quoted`. */
static const struct cp_ods_field *name_field(const struct cp_dataset *ds, const char *name, size_t len,
                                             char *err, size_t errlen)
{
        const struct cp_ods_field *f;
        char what[SHOW_MAX + 4];

        if (len >= 2 && name[0] == '`' && name[len - 1] == '`') {
                name++;
                len -= 2;
        }
        f = cp_dataset_field(ds, name, len);
        if (!f)
                (void)fail(err, errlen, "Unknown field: %s", show(what, name, len));
        return f;
}

static int refine_to_sql(const struct cp_dataset *ds, const char *what, const char *s, bool neg,
                         const struct cp_tz *tz, struct cp_sqlq *q, char *err, size_t errlen)
{
        const struct cp_ods_field *f;
        const char *colon, *name = s, *v;
        char shown[SHOW_MAX + 4];
        size_t len, nlen, vlen;
        int64_t i, start, end;
        double d;
        bool is_int, b;
        int r;

        r = check_text(what, s, &len, err, errlen);
        if (r < 0)
                return r;
        colon = memchr(s, ':', len);
        if (!colon)
                return fail(err, errlen, "%s: expected field:value, got '%s'", what, show(shown, s, len));
        nlen = (size_t)(colon - s);
        trim(&name, &nlen);
        f = name_field(ds, name, nlen, err, errlen);
        if (!f)
                return -EINVAL;
        v = colon + 1;
        vlen = (size_t)(s + len - v);
        cp_buf_puts(&q->sql, neg ? "(NOT IFNULL(" : "(");
        switch (f->type) {
        case CP_ODS_TEXT:
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " = ");
                cp_sqlq_text(q, v, vlen);
                break;
        case CP_ODS_INT:
        case CP_ODS_DOUBLE:
                if (!text_number(v, vlen, &is_int, &i, &d))
                        return fail(err, errlen, "%s: '%s' is not a number (field '%s' is %s)", what,
                                    show(shown, v, vlen), f->name, type_name(f));
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " = ");
                if (is_int)
                        cp_sqlq_int(q, i);
                else
                        sqlq_double(q, d);
                break;
        case CP_ODS_BOOLEAN:
                if (!text_bool(v, vlen, &b))
                        return fail(err, errlen, "%s: '%s' is not a boolean (field '%s')", what,
                                    show(shown, v, vlen), f->name);
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " = ");
                cp_sqlq_int(q, b);
                break;
        case CP_ODS_DATETIME:
                /* YYYY, YYYY-MM or YYYY-MM-DD mean that whole local period. */
                if (!text_when(v, vlen, tz, &start, &end))
                        return fail(err, errlen,
                                    "%s: '%s' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or ISO 8601)", what,
                                    show(shown, v, vlen));
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " >= ");
                cp_sqlq_int(q, start);
                cp_buf_puts(&q->sql, " AND ");
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " < ");
                cp_sqlq_int(q, end);
                break;
        case CP_ODS_GEO_POINT:
                return fail(err, errlen, "%s: geo field '%s' cannot be refined", what, f->name);
        }
        cp_buf_puts(&q->sql, neg ? ", 0))" : ")");
        return 0;
}

static void and_sep(struct cp_sqlq *q)
{
        if (q->sql.len)
                cp_buf_puts(&q->sql, " AND ");
}

static int filter_to_sql(const struct cp_dataset *ds, const struct cp_odsql_request *req,
                         const struct cp_tz *tz, struct cp_sqlq *q, char *err, size_t errlen)
{
        const struct cp_ods_field *f;
        int64_t since, end;
        size_t len;
        int r;

        if (req->where && !blank(req->where)) {
                r = where_to_sql(ds, req->where, tz, q, err, errlen);
                if (r < 0)
                        return r;
        }
        if (req->n_refine + req->n_exclude > CP_ODSQL_MAX_REFINE)
                return fail(err, errlen, "at most %d refine and exclude parameters", CP_ODSQL_MAX_REFINE);
        for (size_t i = 0; i < req->n_refine + req->n_exclude; i++) {
                bool neg = i >= req->n_refine;

                and_sep(q);
                r = refine_to_sql(ds, neg ? "exclude" : "refine",
                                  neg ? req->exclude[i - req->n_refine] : req->refine[i], neg, tz, q, err,
                                  errlen);
                if (r < 0)
                        return r;
        }
        if (req->updated_since) {
                f = cp_dataset_field(ds, "updated_at", 10);
                if (!f || f->type != CP_ODS_DATETIME)
                        return fail(err, errlen, "updated_since: dataset %s has no updated_at field", ds->id);
                r = check_text("updated_since", req->updated_since, &len, err, errlen);
                if (r < 0)
                        return r;
                if (!text_when(req->updated_since, len, tz, &since, &end))
                        return fail(err, errlen, "updated_since: not an ISO 8601 date or datetime");
                and_sep(q);
                put_col(&q->sql, f->col);
                cp_buf_puts(&q->sql, " >= ");
                cp_sqlq_int(q, since);
        }
        return 0;
}

/* ---- select, order_by, limit, offset ---- */

static bool out_has(const struct cp_odsql_plan *plan, const struct cp_ods_field *f)
{
        for (size_t i = 0; i < plan->n_out; i++)
                if (plan->out[i] == f)
                        return true;
        return false;
}

static void out_add(struct cp_odsql_plan *plan, const struct cp_ods_field *f)
{
        if (out_has(plan, f))
                return;
        plan->out[plan->n_out++] = f;
        plan->n_cols += f->type == CP_ODS_GEO_POINT ? 2 : 1;
}

static int resolve_select(const struct cp_dataset *ds, const char *select, struct cp_odsql_plan *plan,
                          char *err, size_t errlen)
{
        const char *s, *e;
        size_t len;
        int r;

        plan->out = calloc(ds->n_fields ? ds->n_fields : 1, sizeof(*plan->out));
        if (!plan->out)
                return -ENOMEM;
        if (!select || blank(select)) {
                for (size_t i = 0; i < ds->n_fields; i++)
                        out_add(plan, &ds->fields[i]);
                return 0;
        }
        r = check_text("select", select, &len, err, errlen);
        if (r < 0)
                return r;
        for (s = select;; s = e + 1) {
                const struct cp_ods_field *f;
                const char *name = s;
                size_t nlen;

                e = memchr(s, ',', (size_t)(select + len - s));
                if (!e)
                        e = select + len;
                nlen = (size_t)(e - s);
                trim(&name, &nlen);
                if (nlen == 1 && name[0] == '*') {
                        for (size_t i = 0; i < ds->n_fields; i++)
                                out_add(plan, &ds->fields[i]);
                } else if (nlen == 0) {
                        return fail(err, errlen, "select: empty field name");
                } else {
                        f = name_field(ds, name, nlen, err, errlen);
                        if (!f)
                                return -EINVAL;
                        out_add(plan, f);
                }
                if (e == select + len)
                        return 0;
        }
}

/* Whether SQL column col appears as an item of the comma-separated default order. */
static bool order_has(const char *order, const char *col)
{
        size_t n = strlen(col);

        for (const char *s = order; *s;) {
                const char *e = strchr(s, ',');
                const char *it = s;
                size_t len = e ? (size_t)(e - s) : strlen(s);

                trim(&it, &len);
                if (len >= n && strncmp(it, col, n) == 0 && (len == n || is_space(it[n])))
                        return true;
                if (!e)
                        break;
                s = e + 1;
        }
        return false;
}

/* Appends the dataset's key columns not yet in the ORDER BY, so that paging is stable. */
static void order_keys(const struct cp_dataset *ds, struct cp_buf *b, const char **used, size_t n_used)
{
        for (const char *s = ds->key; *s;) {
                const char *e = strchr(s, ',');
                const char *name = s;
                size_t len = e ? (size_t)(e - s) : strlen(s);
                const struct cp_ods_field *f;
                bool seen = false;

                trim(&name, &len);
                f = cp_dataset_field(ds, name, len);
                if (f) {
                        for (size_t i = 0; i < n_used; i++)
                                seen = seen || strcmp(used[i], f->col) == 0;
                        if (!used)
                                seen = order_has(ds->default_order, f->col);
                        if (!seen) {
                                cp_buf_puts(b, ", ");
                                put_col(b, f->col);
                        }
                }
                if (!e)
                        break;
                s = e + 1;
        }
}

static int resolve_order(const struct cp_dataset *ds, const char *order_by, struct cp_buf *b, char *err,
                         size_t errlen)
{
        const char *used[MAX_ORDER];
        size_t n_used = 0, len;
        const char *s, *e;
        char shown[SHOW_MAX + 4];
        int r;

        if (!order_by || blank(order_by)) {
                /* The catalog's own SQL, never user text. */
                cp_buf_puts(b, ds->default_order);
                order_keys(ds, b, NULL, 0);
                return 0;
        }
        r = check_text("order_by", order_by, &len, err, errlen);
        if (r < 0)
                return r;
        for (s = order_by;; s = e + 1) {
                const struct cp_ods_field *f;
                const char *item = s, *dir;
                size_t ilen, nlen, dlen;
                bool desc = false;

                e = memchr(s, ',', (size_t)(order_by + len - s));
                if (!e)
                        e = order_by + len;
                ilen = (size_t)(e - s);
                trim(&item, &ilen);
                if (ilen == 0)
                        return fail(err, errlen, "order_by: empty field name");
                if (n_used == MAX_ORDER)
                        return fail(err, errlen, "order_by: more than %d fields", MAX_ORDER);
                for (nlen = 0; nlen < ilen && !is_space(item[nlen]); nlen++)
                        ;
                dir = item + nlen;
                dlen = ilen - nlen;
                trim(&dir, &dlen);
                if (dlen == 4 && strncasecmp(dir, "desc", 4) == 0)
                        desc = true;
                else if (dlen != 0 && !(dlen == 3 && strncasecmp(dir, "asc", 3) == 0))
                        return fail(err, errlen,
                                    "order_by: expected 'field', 'field asc' or 'field desc', got '%s'",
                                    show(shown, item, ilen));
                f = name_field(ds, item, nlen, err, errlen);
                if (!f)
                        return -EINVAL;
                if (f->type == CP_ODS_GEO_POINT)
                        return fail(err, errlen, "order_by: geo field '%s' cannot be ordered", f->name);
                if (n_used)
                        cp_buf_puts(b, ", ");
                put_col(b, f->col);
                cp_buf_puts(b, desc ? " DESC" : " ASC");
                used[n_used++] = f->col;
                if (e == order_by + len)
                        break;
        }
        order_keys(ds, b, used, n_used);
        return 0;
}

/* A whole decimal integer: [-]digits, at most 18 of them. */
static bool text_int(const char *s, int64_t *ret)
{
        size_t i = s[0] == '-' ? 1 : 0, n = 0;
        int64_t v = 0;

        for (; s[i]; i++, n++) {
                if (!is_digit(s[i]) || n == 18)
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        if (n == 0)
                return false;
        *ret = s[0] == '-' ? -v : v;
        return true;
}

static int resolve_paging(const struct cp_odsql_request *req, struct cp_odsql_plan *plan, char *err,
                          size_t errlen)
{
        int64_t limit = 0, offset = 0;

        if (req->limit && !text_int(req->limit, &limit))
                return fail(err, errlen, "limit must be an integer");
        if (req->export_) {
                if (req->offset)
                        return fail(err, errlen, "offset is not allowed on exports");
                if (!req->limit)
                        limit = -1;
                if (limit < -1)
                        return fail(err, errlen, "limit must be -1 (everything) or a number of records");
                plan->limit = limit;
                plan->offset = 0;
                return 0;
        }
        if (!req->limit)
                limit = CP_ODSQL_LIMIT_DEF;
        if (limit < 0)
                return fail(err, errlen, "limit must not be negative");
        if (limit > CP_ODSQL_LIMIT_MAX)
                return fail(err, errlen, "limit must be at most %d", CP_ODSQL_LIMIT_MAX);
        if (req->offset && !text_int(req->offset, &offset))
                return fail(err, errlen, "offset must be an integer");
        if (offset < 0)
                return fail(err, errlen, "offset must not be negative");
        if (offset + limit > CP_ODSQL_WINDOW_MAX)
                return fail(err, errlen, "offset + limit must be at most %d", CP_ODSQL_WINDOW_MAX);
        plan->limit = limit;
        plan->offset = offset;
        return 0;
}

static int load_tz(const char *name, struct cp_tz **ret, char *err, size_t errlen)
{
        char shown[SHOW_MAX + 4];
        size_t len;
        int r;

        if (!name || blank(name))
                name = "UTC";
        r = check_text("timezone", name, &len, err, errlen);
        if (r < 0)
                return r;
        r = cp_tz_load(name, ret);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(err, errlen, "Unknown timezone: %s", show(shown, name, len));
        return 0;
}

/* ---- the plan ---- */

static void select_from(const struct cp_dataset *ds, struct cp_sqlq *q, const struct cp_sqlq *filter)
{
        cp_buf_puts(&q->sql, " FROM ");
        put_col(&q->sql, ds->table);
        if (filter->sql.len) {
                cp_buf_puts(&q->sql, " WHERE ");
                sqlq_append(q, filter);
        }
}

int cp_odsql_plan(const struct cp_dataset *ds, const struct cp_odsql_request *req, struct cp_odsql_plan *plan,
                  char *err, size_t errlen)
{
        struct cp_sqlq filter;
        struct cp_buf order = CP_BUF_INIT;
        int r;

        memset(plan, 0, sizeof(*plan));
        cp_sqlq_init(&filter);
        if (err && errlen)
                err[0] = '\0';
        r = load_tz(req->timezone, &plan->tz, err, errlen);
        if (r < 0)
                goto out;
        r = resolve_paging(req, plan, err, errlen);
        if (r < 0)
                goto out;
        r = resolve_select(ds, req->select, plan, err, errlen);
        if (r < 0)
                goto out;
        r = resolve_order(ds, req->order_by, &order, err, errlen);
        if (r < 0)
                goto out;
        r = filter_to_sql(ds, req, plan->tz, &filter, err, errlen);
        if (r < 0)
                goto out;

        cp_buf_puts(&plan->rows.sql, "SELECT ");
        for (size_t i = 0; i < plan->n_out; i++) {
                if (i)
                        cp_buf_puts(&plan->rows.sql, ", ");
                put_col(&plan->rows.sql, plan->out[i]->col);
                if (plan->out[i]->type == CP_ODS_GEO_POINT) {
                        cp_buf_puts(&plan->rows.sql, ", ");
                        put_col(&plan->rows.sql, plan->out[i]->col2);
                }
        }
        select_from(ds, &plan->rows, &filter);
        cp_buf_puts(&plan->rows.sql, " ORDER BY ");
        cp_buf_append(&plan->rows.sql, order.p ? order.p : "", order.len);
        cp_buf_puts(&plan->rows.sql, " LIMIT ");
        cp_sqlq_int(&plan->rows, plan->limit);
        cp_buf_puts(&plan->rows.sql, " OFFSET ");
        cp_sqlq_int(&plan->rows, plan->offset);

        cp_buf_puts(&plan->count.sql, "SELECT count(*)");
        select_from(ds, &plan->count, &filter);
        r = 0;
        if (order.oom || filter.sql.oom || plan->rows.sql.oom || plan->count.sql.oom)
                r = -ENOMEM;
out:
        if (r == -ENOMEM)
                (void)snprintf(err, err ? errlen : 0, "out of memory");
        if (r < 0)
                cp_odsql_plan_done(plan);
        cp_buf_free(&order);
        cp_sqlq_done(&filter);
        return r;
}

void cp_odsql_plan_done(struct cp_odsql_plan *plan)
{
        if (!plan)
                return;
        cp_sqlq_done(&plan->rows);
        cp_sqlq_done(&plan->count);
        free(plan->out);
        cp_tz_free(plan->tz);
        memset(plan, 0, sizeof(*plan));
}

/* ---- SQL functions ---- */

double cp_distance_m(double lat1, double lon1, double lat2, double lon2)
{
        const double rad = M_PI / 180.0;
        double dp = (lat2 - lat1) * rad, dl = (lon2 - lon1) * rad;
        double a = sin(dp / 2) * sin(dp / 2) + cos(lat1 * rad) * cos(lat2 * rad) * sin(dl / 2) * sin(dl / 2);

        a = fmin(1.0, fmax(0.0, a));
        return 2 * CP_EARTH_RADIUS_M * asin(sqrt(a));
}

static void sql_distance_m(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
        double v[4] = {0, 0, 0, 0};

        for (int i = 0; i < argc && i < 4; i++) {
                if (sqlite3_value_type(argv[i]) == SQLITE_NULL) {
                        sqlite3_result_null(ctx);
                        return;
                }
                v[i] = sqlite3_value_double(argv[i]);
        }
        sqlite3_result_double(ctx, cp_distance_m(v[0], v[1], v[2], v[3]));
}

int cp_odsql_register(sqlite3 *db)
{
        return sqlite3_create_function_v2(db, "cp_distance_m", 4,
                                          SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                          sql_distance_m, NULL, NULL, NULL);
}
