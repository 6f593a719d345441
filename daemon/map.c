/* map.c - see map.h. Deletion uses backward-shift, so there are no tombstones to age. */
#include "map.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

uint32_t cp_map_hash(const char *key, size_t len)
{
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char)key[i];
                h *= 16777619u;
        }
        return h;
}

static bool key_eq(const struct cp_map_entry *e, uint32_t h, const char *key, size_t len)
{
        return e->hash == h && strncmp(e->key, key, len) == 0 && e->key[len] == '\0';
}

void *cp_map_get(const struct cp_map *m, const char *key, size_t len)
{
        uint32_t h;

        if (!m->cap)
                return NULL;
        h = cp_map_hash(key, len);
        for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                const struct cp_map_entry *e = &m->e[i];
                if (!e->key)
                        return NULL;
                if (key_eq(e, h, key, len))
                        return e->value;
        }
}

static void insert_raw(struct cp_map_entry *tab, size_t cap, const struct cp_map_entry *src)
{
        size_t i = src->hash & (cap - 1);

        while (tab[i].key)
                i = (i + 1) & (cap - 1);
        tab[i] = *src;
}

static int grow(struct cp_map *m)
{
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct cp_map_entry *t = calloc(ncap, sizeof(*t));

        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++)
                if (m->e[i].key)
                        insert_raw(t, ncap, &m->e[i]);
        free(m->e);
        m->e = t;
        m->cap = ncap;
        return 0;
}

int cp_map_put(struct cp_map *m, const char *key, void *value)
{
        size_t len = strlen(key);
        uint32_t h = cp_map_hash(key, len);

        if ((m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)
                return -ENOMEM;
        for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                struct cp_map_entry *e = &m->e[i];
                if (!e->key) {
                        e->key = key;
                        e->hash = h;
                        e->value = value;
                        m->n++;
                        return 0;
                }
                if (key_eq(e, h, key, len)) {
                        e->key = key;
                        e->value = value;
                        return 0;
                }
        }
}

void *cp_map_del(struct cp_map *m, const char *key)
{
        size_t len = strlen(key), mask = m->cap - 1, i, j;
        uint32_t h = cp_map_hash(key, len);
        void *v;

        if (!m->cap)
                return NULL;
        for (i = h & mask;; i = (i + 1) & mask) {
                if (!m->e[i].key)
                        return NULL;
                if (key_eq(&m->e[i], h, key, len))
                        break;
        }
        v = m->e[i].value;
        /* Backward shift: move later members of the probe run into the hole when their home allows. */
        for (j = (i + 1) & mask; m->e[j].key; j = (j + 1) & mask) {
                size_t home = m->e[j].hash & mask;
                bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (between)
                        continue;
                m->e[i] = m->e[j];
                i = j;
        }
        memset(&m->e[i], 0, sizeof(m->e[i]));
        m->n--;
        return v;
}

void cp_map_done(struct cp_map *m)
{
        free(m->e);
        memset(m, 0, sizeof(*m));
}

int cp_map_next(const struct cp_map *m, size_t *iter, void **ret_value)
{
        while (*iter < m->cap) {
                const struct cp_map_entry *e = &m->e[(*iter)++];
                if (e->key) {
                        *ret_value = e->value;
                        return 1;
                }
        }
        return 0;
}
