/* annotations.c — Node annotation parsers of the node watcher (annotations.h). */
#include "annotations.h"
#include "cleanup.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool sl_nodewatch_ref_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SL_NODEWATCH_MAX_REF)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static bool listed(const json_t *done, const char *ref)
{
    size_t i;
    json_t *d;
    json_array_foreach(done, i, d) if (json_is_string(d) &&
                                       strcmp(json_string_value(d), ref) == 0) return true;
    return false;
}

int sl_nodewatch_parse_prewarm(const char *prewarm, const char *prewarmed,
                               struct sl_nodewatch_prewarm **ret, size_t *ret_n,
                               size_t *ret_skipped, sl_error_t *err)
{
    *ret = NULL;
    *ret_n = *ret_skipped = 0;
    json_auto_t *list = NULL, *done = NULL;
    int r = sl_json_parse(prewarm, strlen(prewarm), SL_NODEWATCH_PREWARM_JSON_MAX,
                          "starlight-c.dev/prewarm", &list, err);
    if (r < 0)
        return r;
    if (!json_is_array(list))
        return sl_error_make(err, EINVAL, "starlight-c.dev/prewarm: not a JSON list");
    if (!prewarmed ||
        sl_json_parse(prewarmed, strlen(prewarmed), SL_NODEWATCH_PREWARM_JSON_MAX, "prewarmed",
                      &done, NULL) < 0 ||
        !json_is_array(done)) {
        json_decref(done);
        done = json_array();
    }
    size_t cap = SL_MIN(json_array_size(list), (size_t)SL_NODEWATCH_MAX_PREWARM);
    struct sl_nodewatch_prewarm *v = sl_xcalloc(cap + 1, sizeof(*v));
    size_t n = 0, skipped = 0;
    for (size_t i = 0; i < cap; i++) {
        json_t *it = json_array_get(list, i);
        const char *to = json_string_value(json_object_get(it, "to"));
        const char *from = json_string_value(json_object_get(it, "from"));
        if (!sl_nodewatch_ref_valid(to)) {
            skipped++;
            continue;
        }
        if (listed(done, to))
            continue;
        v[n].to = sl_xstrdup(to);
        v[n].from = sl_nodewatch_ref_valid(from) ? sl_xstrdup(from) : NULL;
        n++;
    }
    *ret = v;
    *ret_n = n;
    *ret_skipped = skipped;
    return 0;
}

void sl_nodewatch_prewarm_free(struct sl_nodewatch_prewarm *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].to);
        free(v[i].from);
    }
    free(v);
}

int sl_nodewatch_parse_duration_ms(const char *s, int64_t *ret)
{
    double total = 0;
    if (!s || !*s)
        return -EINVAL;
    while (*s) {
        /* Digits and dots only: strtod alone would also take spaces, signs, hex, "inf" and
         * "nan". The sum stays a double until it is known to be in range (casting a huge
         * double to int64_t is undefined; fuzz-pod-annotations found "1m111…13s"). */
        size_t len = strspn(s, "0123456789.");
        char num[32];
        if (len == 0 || len >= sizeof(num))
            return -EINVAL;
        memcpy(num, s, len);
        num[len] = '\0';
        char *end = NULL;
        double v = strtod(num, &end);
        if (end != num + len || !isfinite(v))
            return -EINVAL;
        s += len;
        double unit;
        if (strncmp(s, "ms", 2) == 0)
            unit = 1, s += 2;
        else if (*s == 's')
            unit = 1000, s++;
        else if (*s == 'm')
            unit = 60000, s++;
        else if (*s == 'h')
            unit = 3600000, s++;
        else
            return -EINVAL;
        total += v * unit;
        if (!(total <= SL_NODEWATCH_TRACE_MAX_MS))
            return -EINVAL;
    }
    *ret = (int64_t)total;
    return 0;
}
