/* log.h — the one logging sink.
 *
 * Text for people (default, to stderr) or JSON lines for Kubernetes (`--log-format=json`).
 * Fixed fields: ts, level, component, msg, plus optional key/value fields (image, digest,
 * pod, snapshot ...). Library code in common/ logs at debug only; executables log once where
 * they consume an error. Thread-safe: each record is written with one write(2). */
#ifndef SL_BASE_LOG_H
#define SL_BASE_LOG_H

#include "error.h"

enum sl_log_level { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };
enum sl_log_format { SL_LOG_TEXT, SL_LOG_JSON };

/* Configures the sink. `component` is copied. Not thread-safe: call once at start. */
void sl_log_setup(const char *component, enum sl_log_format format, enum sl_log_level level);
/* Parses "text"/"json" and "error"/"warn"/"info"/"debug". Return 0 or -EINVAL. */
int sl_log_parse_format(const char *s, enum sl_log_format *ret);
int sl_log_parse_level(const char *s, enum sl_log_level *ret);
/* Redirects output to fd (default 2). */
void sl_log_set_fd(int fd);
enum sl_log_level sl_log_get_level(void);

/* Writes one record. `kv` is NULL or a NULL-terminated array of key, value, key, value...
 * (NULL values are skipped). */
void sl_log_kv(enum sl_log_level level, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sl_log(level, ...) sl_log_kv(level, NULL, __VA_ARGS__)
#define log_error(...)     sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)      sl_log(SL_LOG_WARN, __VA_ARGS__)
#define log_info(...)      sl_log(SL_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (sl_log_get_level() >= SL_LOG_DEBUG)                                                    \
            sl_log(SL_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* Logs "<context>: <error chain>" at error level, frees *err and returns r (or -EIO). */
int sl_log_error_err(sl_error_t *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
