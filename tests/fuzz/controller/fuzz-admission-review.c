/* fuzz-admission-review — hostile AdmissionReview bodies through the webhook's decision: any
 * input either fails cleanly (-EINVAL/-EFBIG with a message) or yields an AdmissionReview
 * answer carrying the request's uid whose patch (when present) decodes and applies to the Pod
 * it was made for, leaving starlight-init first. */
#include "base64.h"
#include "json.h"
#include "mutate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int half(void *ud, const char *image)
{
    (void)ud;
    return image[0] == 'x' ? 0 : image[0] == 'e' ? -5 : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ns[] = {"apps"};
    struct sl_mutate_options o = {
        .init_image = "init:1", .opt_in_ns = ns, .n_opt_in_ns = 1, .is_starlight = half};
    json_t *review = NULL;
    sl_error_t err = NULL;
    if (sl_json_parse((const char *)data, size, SL_REVIEW_MAX, "review", &review, &err) < 0) {
        sl_error_free(&err);
        return 0;
    }
    json_t *ans = NULL;
    enum sl_mutate_result res;
    if (sl_mutate_review(review, &o, &ans, &res, &err) < 0) {
        if (!sl_error_msg(err, -1)[0])
            abort();
        sl_error_free(&err);
        json_decref(review);
        return 0;
    }
    const json_t *resp = json_object_get(ans, "response");
    const char *uid = json_string_value(json_object_get(resp, "uid"));
    const char *want =
        json_string_value(json_object_get(json_object_get(review, "request"), "uid"));
    if (!uid || !want || strcmp(uid, want) != 0 || !json_is_true(json_object_get(resp, "allowed")))
        abort();
    const char *p = json_string_value(json_object_get(resp, "patch"));
    if ((p != NULL) != (res == SL_MUTATE_PATCHED))
        abort();
    if (p) {
        uint8_t *raw = NULL;
        size_t n = 0;
        if (sl_base64_decode(p, strlen(p), &raw, &n) < 0)
            abort();
        json_t *patch = json_loadb((const char *)raw, n, 0, NULL);
        json_t *pod = json_deep_copy(json_object_get(json_object_get(review, "request"), "object"));
        if (!patch || sl_jsonpatch_apply_adds(pod, patch, &err) < 0)
            abort();
        const json_t *first =
            json_array_get(json_object_get(json_object_get(pod, "spec"), "initContainers"), 0);
        const char *name = json_string_value(json_object_get(first, "name"));
        if (!name || strcmp(name, SL_INIT_NAME) != 0)
            abort();
        json_decref(patch);
        json_decref(pod);
        free(raw);
    }
    json_decref(ans);
    json_decref(review);
    return 0;
}
