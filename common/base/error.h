/* error.h — error chains.
 *
 * A fallible function returns int: >= 0 on success, a negative errno class on failure, and
 * (when the caller passed a non-NULL `sl_error_t *`) an allocated error carrying the message
 * chain. Callers add context with sl_error_wrap(): the message becomes "context: inner".
 *
 *     return sl_error_make(err, EACCES, "GET manifest `%s`: HTTP 401", ref);
 *     ...
 *     if (r < 0)
 *         return sl_error_wrap(err, r, "pull `%s`", ref);
 *
 * `err` may be NULL everywhere: the class is still returned. Errors are not thread-shared. */
#ifndef SL_BASE_ERROR_H
#define SL_BASE_ERROR_H

#include <stdarg.h>

struct sl_error {
    int code;  /* positive errno class */
    char *msg; /* full chain, outermost context first */
};
typedef struct sl_error *sl_error_t;

/* Sets *err (freeing any previous one) to a new error of class `code` (positive errno).
 * Returns -code. */
int sl_error_make(sl_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sl_error_makev(sl_error_t *err, int code, const char *fmt, va_list ap);

/* Prefixes the message of *err with "context: ". When *err is NULL (the callee gave no
 * detail) a new error is made from `r` and strerror. Returns r (negative) unchanged, or
 * -(*err)->code when r >= 0. */
int sl_error_wrap(sl_error_t *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Message of an error, or strerror(-r) when err is NULL. Never returns NULL. */
const char *sl_error_msg(sl_error_t err, int r);

void sl_error_free(sl_error_t *err);
#define _cleanup_error_ __attribute__((cleanup(sl_error_free)))

#endif
