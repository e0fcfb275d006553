/* annotations.c — Node annotation parsers of the node watcher (annotations.h). */
#include "annotations.h"
#include "cleanup.h"
#include "json.h"

#include <errno.h>
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
