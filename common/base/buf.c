#include "buf.h"
#include "cleanup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sl_buf_init(struct sl_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int sl_buf_reserve(struct sl_buf *b, size_t n, char **ret_tail)
{
    if (n > b->max || b->len > b->max - n)
        return -EFBIG;
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        b->data = sl_xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (ret_tail)
        *ret_tail = b->data + b->len;
    return 0;
}

int sl_buf_append(struct sl_buf *b, const void *p, size_t n)
{
    char *tail;
    int r = sl_buf_reserve(b, n, &tail);
    if (r < 0)
        return r;
    if (n)
        memcpy(tail, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int sl_buf_puts(struct sl_buf *b, const char *s)
{
    return sl_buf_append(b, s, strlen(s));
}

int sl_buf_printf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    char *tail;
    int r = sl_buf_reserve(b, (size_t)n, &tail);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(tail, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int sl_buf_json_string(struct sl_buf *b, const char *s)
{
    int r = sl_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; r >= 0 && *p; p++) {
        char esc[8];
        switch (*p) {
        case '"':
            r = sl_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            r = sl_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            r = sl_buf_append(b, "\\n", 2);
            break;
        case '\t':
            r = sl_buf_append(b, "\\t", 2);
            break;
        case '\r':
            r = sl_buf_append(b, "\\r", 2);
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                r = sl_buf_append(b, esc, 6);
            } else {
                r = sl_buf_append(b, p, 1);
            }
        }
    }
    if (r >= 0)
        r = sl_buf_append(b, "\"", 1);
    return r;
}

void sl_buf_reset(struct sl_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

char *sl_buf_steal(struct sl_buf *b, size_t *ret_len)
{
    char *p = b->data;
    if (ret_len)
        *ret_len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void sl_buf_free(struct sl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
