/* cleanup.h — scope-bound ownership helpers (systemd/crun style).
 *
 * An owning local is declared with a cleanup attribute and initialised where declared:
 *     _cleanup_free_ char *url = NULL;
 *     _cleanup_close_ int fd = -EBADF;
 * Ownership leaves a function only through `*ret = TAKE_PTR(x);` or `TAKE_FD(fd)`.
 * GCC/Clang only; the project is Linux-only. */
#ifndef SL_BASE_CLEANUP_H
#define SL_BASE_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void sl_freep(void *p)
{
    free(*(void **)p);
}
static inline void sl_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void sl_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_free_   _cleanup_(sl_freep)
#define _cleanup_close_  _cleanup_(sl_closep)
#define _cleanup_fclose_ _cleanup_(sl_fclosep)

/* Defines `static inline void NAMEp(TYPE **p)` calling FUNC(*p) when non-NULL. */
#define SL_DEFINE_CLEANUP(type, func)                                                              \
    static inline void func##p(type **p)                                                           \
    {                                                                                              \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tmp_ = (p);                                                                 \
        (p) = NULL;                                                                                \
        _tmp_;                                                                                     \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tmp_ = (fd);                                                                          \
        (fd) = -EBADF;                                                                             \
        _tmp_;                                                                                     \
    })

#define SL_ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Out-of-memory aborts (crun, h2o): allocation failure is not threaded through every caller. */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);
void *sl_xrealloc(void *p, size_t n);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t n);
/* printf into a new string; aborts on OOM. */
char *sl_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
