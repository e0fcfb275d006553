/* json.h — jansson helpers: capped parsing and typed field access with path errors.
 *
 * Documents from registries and peers are hostile: every parse has a byte cap and a depth
 * limit, and a missing or mistyped field yields an error naming its JSON path
 * ("manifest: .layers[2].digest: expected a string"). Thread-safe (no shared state). */
#ifndef SL_JSON_JSON_H
#define SL_JSON_JSON_H

#include "error.h"

#include <jansson.h>
#include <stdint.h>

#define SL_JSON_MAX_DEPTH 64

/* Parses `len` bytes (rejects more than `max` bytes, nesting deeper than SL_JSON_MAX_DEPTH,
 * and duplicate object keys). `what` names the document in errors. */
int sl_json_parse(const char *data, size_t len, size_t max, const char *what, json_t **ret,
                  sl_error_t *err);

/* Field access. `path` is the JSON path of `obj` for errors (e.g. ".layers[2]").
 * Required getters fail with -EINVAL when the key is missing or has the wrong type; optional
 * getters return 0 and leave *ret untouched when the key is missing (1 when found). Returned
 * strings are borrowed from obj. */
int sl_json_get_str(const json_t *obj, const char *key, const char *path, const char **ret,
                    sl_error_t *err);
int sl_json_opt_str(const json_t *obj, const char *key, const char *path, const char **ret,
                    sl_error_t *err);
int sl_json_get_i64(const json_t *obj, const char *key, const char *path, int64_t *ret,
                    sl_error_t *err);
int sl_json_opt_i64(const json_t *obj, const char *key, const char *path, int64_t *ret,
                    sl_error_t *err);
int sl_json_get_obj(const json_t *obj, const char *key, const char *path, json_t **ret,
                    sl_error_t *err);
int sl_json_get_arr(const json_t *obj, const char *key, const char *path, json_t **ret,
                    sl_error_t *err);

/* Compact, key-order-preserving dump of any value (scalars too); caller frees. Aborts on
 * OOM. */
char *sl_json_dump(const json_t *j, size_t *ret_len);

#endif
