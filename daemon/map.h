/* map.h - string-keyed open-addressing hash map (linear probing, power-of-two capacity, FNV-1a).
 * Keys are borrowed: the value owns its key, and must outlive its entry. Loop thread only. */
#ifndef CP_MAP_H
#define CP_MAP_H

#include <stddef.h>
#include <stdint.h>

struct cp_map_entry {
        const char *key;
        uint32_t hash;
        void *value;
};

struct cp_map {
        struct cp_map_entry *e;
        size_t cap; /* power of two, or 0 */
        size_t n;
};

uint32_t cp_map_hash(const char *key, size_t len);
/* Value for key[len] or NULL. */
void *cp_map_get(const struct cp_map *m, const char *key, size_t len);
/* Inserts or replaces. key must stay valid while the entry exists. Returns 0 or -ENOMEM. */
int cp_map_put(struct cp_map *m, const char *key, void *value);
/* Removes key; returns the value that was there or NULL. */
void *cp_map_del(struct cp_map *m, const char *key);
void cp_map_done(struct cp_map *m);

/* Iteration: for (size_t i = 0; cp_map_next(m, &i, &v);) ... */
int cp_map_next(const struct cp_map *m, size_t *iter, void **ret_value);

#endif
