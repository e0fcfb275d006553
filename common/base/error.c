#include "error.h"
#include "cleanup.h"

#include <stdio.h>
#include <string.h>

void *sl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *sl_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

void *sl_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

char *sl_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

char *sl_xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        abort();
    return p;
}

char *sl_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return s;
}

int sl_error_makev(sl_error_t *err, int code, const char *fmt, va_list ap)
{
    if (code < 0)
        code = -code;
    if (code == 0)
        code = EIO;
    if (!err)
        return -code;
    sl_error_free(err);
    struct sl_error *e = sl_xcalloc(1, sizeof(*e));
    e->code = code;
    if (vasprintf(&e->msg, fmt, ap) < 0)
        abort();
    *err = e;
    return -code;
}

int sl_error_make(sl_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = sl_error_makev(err, code, fmt, ap);
    va_end(ap);
    return r;
}

int sl_error_wrap(sl_error_t *err, int r, const char *fmt, ...)
{
    if (!err)
        return r < 0 ? r : -EIO;
    _cleanup_free_ char *ctx = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&ctx, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (!*err) {
        int code = r < 0 ? -r : EIO;
        return sl_error_make(err, code, "%s: %s", ctx, strerror(code));
    }
    char *m = sl_xasprintf("%s: %s", ctx, (*err)->msg);
    free((*err)->msg);
    (*err)->msg = m;
    return r < 0 ? r : -(*err)->code;
}

const char *sl_error_msg(sl_error_t err, int r)
{
    if (err && err->msg)
        return err->msg;
    return strerror(r < 0 ? -r : (r ? r : EIO));
}

void sl_error_free(sl_error_t *err)
{
    if (!err || !*err)
        return;
    free((*err)->msg);
    free(*err);
    *err = NULL;
}
