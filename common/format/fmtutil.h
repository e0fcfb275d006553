/* fmtutil.h — internal helpers of common/format: a string-keyed hash map, a bump arena and
 * UTF-8 validation. Not part of the public API. Not thread-safe (one instance per thread). */
#ifndef SL_FORMAT_FMTUTIL_H
#define SL_FORMAT_FMTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open-addressing map from NUL-terminated keys to pointers. Keys are borrowed: they must
 * outlive the map. */
struct sl_strmap {
    const char **keys;
    void **vals;
    size_t cap; /* power of two, or 0 */
    size_t len;
};

/* Returns the value stored under key, or NULL. */
void *sl_strmap_get(const struct sl_strmap *m, const char *key);
/* Inserts or replaces. Returns the previous value (NULL if none). Aborts on OOM. */
void *sl_strmap_put(struct sl_strmap *m, const char *key, void *val);
void sl_strmap_free(struct sl_strmap *m);

/* Bump allocator: many small allocations freed together. Memory is zeroed. */
struct sl_arena_block;
struct sl_arena {
    struct sl_arena_block *head;
    size_t used, cap;
};

void *sl_arena_alloc(struct sl_arena *a, size_t n);
char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n);
void sl_arena_free(struct sl_arena *a);

/* True when p[0..n) is valid UTF-8 without NUL bytes (overlongs and surrogates rejected). */
bool sl_utf8_valid(const char *p, size_t n);

#endif
