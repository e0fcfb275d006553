#include "json.h"
#include "cleanup.h"

#include <stdbool.h>
#include <string.h>

static int depth_ok(const json_t *j, int depth)
{
    if (depth > SL_JSON_MAX_DEPTH)
        return 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            if (!depth_ok(v, depth + 1))
                return 0;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!depth_ok(v, depth + 1))
                return 0;
        }
    }
    return 1;
}

int sl_json_parse(const char *data, size_t len, size_t max, const char *what, json_t **ret,
                  sl_error_t *err)
{
    if (len > max)
        return sl_error_make(err, EFBIG, "%s: %zu bytes is larger than the %zu-byte limit", what,
                             len, max);
    /* jansson recurses while parsing; a quick scan bounds the nesting before it does. */
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > SL_JSON_MAX_DEPTH)
                return sl_error_make(err, EINVAL, "%s: nested deeper than %d levels", what,
                                     SL_JSON_MAX_DEPTH);
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    json_error_t je;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return sl_error_make(err, EINVAL, "%s: invalid JSON at line %d column %d: %s", what,
                             je.line, je.column, je.text);
    if (!depth_ok(j, 0)) {
        json_decref(j);
        return sl_error_make(err, EINVAL, "%s: nested deeper than %d levels", what,
                             SL_JSON_MAX_DEPTH);
    }
    *ret = j;
    return 0;
}

static int typed(const json_t *obj, const char *key, const char *path, json_t **ret, json_type type,
                 const char *tname, bool required, sl_error_t *err)
{
    if (!json_is_object(obj))
        return sl_error_make(err, EINVAL, "%s: expected an object", path && *path ? path : ".");
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return sl_error_make(err, EINVAL, "%s.%s: missing", path ? path : "", key);
        return 0;
    }
    if (json_typeof(v) != type && !(type == JSON_INTEGER && json_is_integer(v)))
        return sl_error_make(err, EINVAL, "%s.%s: expected %s", path ? path : "", key, tname);
    *ret = v;
    return 1;
}

int sl_json_get_str(const json_t *obj, const char *key, const char *path, const char **ret,
                    sl_error_t *err)
{
    json_t *v = NULL;
    int r = typed(obj, key, path, &v, JSON_STRING, "a string", true, err);
    if (r > 0)
        *ret = json_string_value(v);
    return r < 0 ? r : 0;
}

int sl_json_opt_str(const json_t *obj, const char *key, const char *path, const char **ret,
                    sl_error_t *err)
{
    json_t *v = NULL;
    int r = typed(obj, key, path, &v, JSON_STRING, "a string", false, err);
    if (r > 0)
        *ret = json_string_value(v);
    return r;
}

int sl_json_get_i64(const json_t *obj, const char *key, const char *path, int64_t *ret,
                    sl_error_t *err)
{
    json_t *v = NULL;
    int r = typed(obj, key, path, &v, JSON_INTEGER, "an integer", true, err);
    if (r > 0)
        *ret = json_integer_value(v);
    return r < 0 ? r : 0;
}

int sl_json_opt_i64(const json_t *obj, const char *key, const char *path, int64_t *ret,
                    sl_error_t *err)
{
    json_t *v = NULL;
    int r = typed(obj, key, path, &v, JSON_INTEGER, "an integer", false, err);
    if (r > 0)
        *ret = json_integer_value(v);
    return r;
}

int sl_json_get_obj(const json_t *obj, const char *key, const char *path, json_t **ret,
                    sl_error_t *err)
{
    int r = typed(obj, key, path, ret, JSON_OBJECT, "an object", true, err);
    return r < 0 ? r : 0;
}

int sl_json_get_arr(const json_t *obj, const char *key, const char *path, json_t **ret,
                    sl_error_t *err)
{
    int r = typed(obj, key, path, ret, JSON_ARRAY, "an array", true, err);
    return r < 0 ? r : 0;
}

char *sl_json_dump(const json_t *j, size_t *ret_len)
{
    /* JSON_ENCODE_ANY: a scalar from hostile input (a registry's `"detail": true`) is dumped
     * like a container; without it jansson returns NULL (found by fuzz-error-bodies). */
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!s)
        abort();
    if (ret_len)
        *ret_len = strlen(s);
    return s;
}
