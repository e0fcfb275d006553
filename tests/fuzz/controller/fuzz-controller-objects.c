/* fuzz-controller-objects — what the controllers read from the API server, hostile: the input
 * is split at the first NUL into a Node's starlight-c.dev/prewarm annotation text and a JSON
 * document {"workload": {...}, "pods": [...], "job": {...}, "events": [...], "uids": [...]}.
 * The annotation merge must always produce a JSON list of at most SL_PREWARM_MAX_ENTRIES
 * entries containing the new one (or say it is there); desired entries must carry the fields
 * the node daemon reads; the trace outcome must not read out of bounds. */
#include "json.h"
#include "prewarm.h"
#include "tracejobs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t alen = nul ? (size_t)(nul - data) : size;
    char *ann = malloc(alen + 1);
    memcpy(ann, data, alen);
    ann[alen] = 0;
    json_t *entry = json_pack("{s:s,s:s,s:s,s:i}", "from", "r/a:1", "to", "r/a:2", "owner",
                              "ns/Deployment/a", "generation", 2);
    char *text = NULL;
    int r = sl_prewarm_merge(ann, entry, &text);
    if (r == 1) {
        json_t *l = json_loads(text, 0, NULL);
        if (!json_is_array(l) || json_array_size(l) == 0 ||
            json_array_size(l) > SL_PREWARM_MAX_ENTRIES)
            abort();
        json_t *last = json_array_get(l, json_array_size(l) - 1);
        if (strcmp(json_string_value(json_object_get(last, "to")), "r/a:2") != 0)
            abort();
        json_decref(l);
        free(text);
    } else if (r != 0 || text) {
        abort();
    }
    json_decref(entry);
    free(ann);

    if (!nul)
        return 0;
    json_t *doc = NULL;
    sl_error_t err = NULL;
    if (sl_json_parse((const char *)nul + 1, size - alen - 1, 1u << 20, "objects", &doc, &err) <
        0) {
        sl_error_free(&err);
        return 0;
    }
    json_t *pods = json_object_get(doc, "pods");
    if (json_is_array(pods)) {
        json_t *d = sl_prewarm_desired("Deployment", json_object_get(doc, "workload"), pods);
        size_t i;
        json_t *e;
        json_array_foreach(d, i, e)
        {
            if (!json_string_value(json_object_get(e, "node")) ||
                !json_string_value(json_object_get(e, "from")) ||
                !json_string_value(json_object_get(e, "to")) ||
                !json_string_value(json_object_get(e, "owner")))
                abort();
        }
        json_decref(d);
    }
    const char *msg = NULL;
    (void)sl_tracejobs_finished(json_object_get(doc, "job"), &msg);
    json_t *events = json_object_get(doc, "events"), *uids = json_object_get(doc, "uids");
    long acc = 0;
    if (json_is_array(events) && json_is_array(uids))
        (void)sl_tracejobs_outcome(events, uids, &acc, &msg);
    json_decref(doc);
    return 0;
}
