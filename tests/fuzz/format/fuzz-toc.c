/* fuzz-toc: footer + TOC JSON parsing and validation, and whole-blob loading.
 *
 * Input: the first byte selects the mode. Even: the rest is TOC JSON for a blob whose TOC
 * starts at offset 1 MiB, and its last bytes are also tried as a footer. Odd: the rest is a
 * whole blob given to sl_toc_load (footer, TOC member inflate, tar header, JSON). Every index
 * that loads is walked and its invariants checked (abort on violation). */
#include "toc.h"

#include <stdlib.h>
#include <string.h>

struct mem {
    const uint8_t *p;
    size_t n;
};

static int mem_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    struct mem *m = ud;
    if (off > m->n || len > m->n - off)
        return sl_error_make(err, EIO, "read past the end");
    memcpy(buf, m->p + off, len);
    return 0;
}

static void check(const struct sl_toc *toc, uint64_t toc_offset)
{
    size_t n = sl_toc_count(toc);
    if (n == 0 || sl_toc_entry_at(toc, 0) != sl_toc_root(toc))
        abort();
    for (size_t i = 0; i < n; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (sl_toc_find(toc, e->name) != e)
            abort();
        if ((e->parent == NULL) != (e->name[0] == 0))
            abort();
        if (e->parent && e->parent->type != SL_TOC_DIR)
            abort();
        if (e->type == SL_TOC_HARDLINK &&
            (!e->link || e->link->type == SL_TOC_HARDLINK || e->link->type == SL_TOC_DIR))
            abort();
        uint64_t pos = 0;
        for (size_t c = 0; c < e->n_chunks; c++) {
            const struct sl_toc_chunk *ch = &e->chunks[c];
            if (ch->chunk_offset != pos || ch->size == 0 || ch->size > SL_TOC_MAX_CHUNK ||
                ch->offset + ch->compressed_size > toc_offset || !sl_digest_valid(ch->digest))
                abort();
            pos += ch->size;
        }
        if (e->type == SL_TOC_REG && pos != e->size)
            abort();
        for (size_t c = 0; c < e->n_children; c++)
            if (e->children[c]->parent != e ||
                (c && strcmp(e->children[c - 1]->base, e->children[c]->base) > 0))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    sl_error_t err = NULL;
    struct sl_toc *toc = NULL;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        uint64_t off;
        size_t fs;
        (void)sl_toc_parse_footer(p, n, &off, &fs, &err);
        sl_error_free(&err);
        const uint64_t toc_offset = 1u << 20;
        if (sl_toc_parse_json((const char *)p, n, toc_offset, &toc, &err) == 0) {
            check(toc, toc_offset);
            sl_toc_free(toc);
        }
        sl_error_free(&err);
        return 0;
    }
    struct mem m = {p, n};
    if (sl_toc_load(mem_read_at, &m, n, NULL, &toc, &err) == 0) {
        check(toc, sl_toc_offset(toc));
        /* decode every chunk: corrupt members must fail cleanly */
        for (size_t i = 0; i < sl_toc_count(toc); i++) {
            const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
            for (size_t c = 0; c < e->n_chunks; c++) {
                if (e->chunks[c].size > (1u << 20))
                    continue;
                uint8_t *buf = malloc(e->chunks[c].size);
                sl_error_t cerr = NULL;
                (void)sl_toc_read_chunk(mem_read_at, &m, &e->chunks[c], buf, &cerr);
                sl_error_free(&cerr);
                free(buf);
            }
        }
        sl_toc_free(toc);
    }
    sl_error_free(&err);
    return 0;
}
