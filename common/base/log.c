#include "log.h"
#include "buf.h"
#include "cleanup.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_component[64] = "starlight";
static enum sl_log_format log_format = SL_LOG_TEXT;
static enum sl_log_level log_level = SL_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sl_log_setup(const char *component, enum sl_log_format format, enum sl_log_level level)
{
    if (component)
        snprintf(log_component, sizeof(log_component), "%s", component);
    log_format = format;
    log_level = level;
}

void sl_log_set_fd(int fd)
{
    log_fd = fd;
}

enum sl_log_level sl_log_get_level(void)
{
    return log_level;
}

int sl_log_parse_format(const char *s, enum sl_log_format *ret)
{
    if (strcmp(s, "text") == 0)
        *ret = SL_LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *ret = SL_LOG_JSON;
    else
        return -EINVAL;
    return 0;
}

int sl_log_parse_level(const char *s, enum sl_log_level *ret)
{
    for (size_t i = 0; i < SL_ELEMENTSOF(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (enum sl_log_level)i;
            return 0;
        }
    if (strcmp(s, "warning") == 0) {
        *ret = SL_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

static void timestamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

void sl_log_kv(enum sl_log_level level, const char *const *kv, const char *fmt, ...)
{
    if (level > log_level)
        return;
    int saved_errno = errno;
    char ts[40];
    timestamp(ts, sizeof(ts));

    char msgbuf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap);
    va_end(ap);

    struct sl_buf b;
    sl_buf_init(&b, 16384);
    if (log_format == SL_LOG_JSON) {
        sl_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, level_names[level]);
        sl_buf_json_string(&b, log_component);
        sl_buf_puts(&b, ",\"msg\":");
        sl_buf_json_string(&b, msgbuf);
        for (size_t i = 0; kv && kv[i]; i += 2) {
            if (!kv[i + 1])
                continue;
            sl_buf_puts(&b, ",");
            sl_buf_json_string(&b, kv[i]);
            sl_buf_puts(&b, ":");
            sl_buf_json_string(&b, kv[i + 1]);
        }
        sl_buf_puts(&b, "}\n");
    } else {
        sl_buf_printf(&b, "%s %-5s %s: %s", ts, level_names[level], log_component, msgbuf);
        for (size_t i = 0; kv && kv[i]; i += 2) {
            if (!kv[i + 1])
                continue;
            sl_buf_printf(&b, " %s=%s", kv[i], kv[i + 1]);
        }
        sl_buf_puts(&b, "\n");
    }
    /* One write per record so concurrent threads never interleave inside a line. */
    if (b.data) {
        ssize_t w = write(log_fd, b.data, b.len);
        (void)w;
    }
    sl_buf_free(&b);
    errno = saved_errno;
}

int sl_log_error_err(sl_error_t *err, int r, const char *fmt, ...)
{
    char ctx[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    sl_log(SL_LOG_ERROR, "%s: %s", ctx, sl_error_msg(err ? *err : NULL, r));
    if (r >= 0)
        r = (err && *err) ? -(*err)->code : -EIO;
    sl_error_free(err);
    return r;
}
