/* buf.h — growable byte buffers with a hard cap.
 *
 * Every buffer filled from the network is created with a maximum size; appends past it fail
 * with -EFBIG and leave the buffer unchanged (curl's dynbuf `toobig`). The data is always
 * NUL-terminated (not counted in len) so text can be used as a C string. Not thread-safe. */
#ifndef SL_BASE_BUF_H
#define SL_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct sl_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len */
};

void sl_buf_init(struct sl_buf *b, size_t max);
/* Returns 0, or -EFBIG when the cap would be exceeded. */
int sl_buf_append(struct sl_buf *b, const void *p, size_t n);
int sl_buf_puts(struct sl_buf *b, const char *s);
int sl_buf_printf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a JSON string literal with quotes and escapes. */
int sl_buf_json_string(struct sl_buf *b, const char *s);
/* Makes sure `n` more bytes fit (within the cap); returns a pointer to write them at. */
int sl_buf_reserve(struct sl_buf *b, size_t n, char **ret_tail);
void sl_buf_reset(struct sl_buf *b);
/* Gives the data away (caller frees); the buffer is left empty. May return NULL if empty. */
char *sl_buf_steal(struct sl_buf *b, size_t *ret_len);
void sl_buf_free(struct sl_buf *b);

#define _cleanup_buf_ __attribute__((cleanup(sl_buf_free)))

#endif
