#include "fmtutil.h"

#include "cleanup.h"

#include <string.h>

static uint64_t hash_str(const char *s)
{
    /* FNV-1a: names are short, this is quick and good enough for open addressing. */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static size_t find_slot(const char *const *keys, size_t cap, const char *key)
{
    size_t i = (size_t)hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

void *sl_strmap_get(const struct sl_strmap *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    size_t i = find_slot(m->keys, m->cap, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

static void grow(struct sl_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    const char **nkeys = sl_xcalloc(ncap, sizeof(*nkeys));
    void **nvals = sl_xcalloc(ncap, sizeof(*nvals));
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = find_slot(nkeys, ncap, m->keys[i]);
        nkeys[j] = m->keys[i];
        nvals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = nkeys;
    m->vals = nvals;
    m->cap = ncap;
}

void *sl_strmap_put(struct sl_strmap *m, const char *key, void *val)
{
    if ((m->len + 1) * 2 > m->cap)
        grow(m);
    size_t i = find_slot(m->keys, m->cap, key);
    void *old = m->keys[i] ? m->vals[i] : NULL;
    if (!m->keys[i])
        m->len++;
    m->keys[i] = key;
    m->vals[i] = val;
    return old;
}

void sl_strmap_free(struct sl_strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

struct sl_arena_block {
    struct sl_arena_block *next;
    max_align_t data[];
};

#define ARENA_BLOCK (64u << 10)

void *sl_arena_alloc(struct sl_arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (!a->head || a->used + n > a->cap) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        struct sl_arena_block *b = sl_xmalloc(sizeof(*b) + cap);
        b->next = a->head;
        a->head = b;
        a->used = 0;
        a->cap = cap;
    }
    void *p = (char *)a->head->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *sl_arena_strndup(struct sl_arena *a, const char *s, size_t n)
{
    char *p = sl_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void sl_arena_free(struct sl_arena *a)
{
    while (a->head) {
        struct sl_arena_block *b = a->head;
        a->head = b->next;
        free(b);
    }
    a->used = a->cap = 0;
}

bool sl_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}
