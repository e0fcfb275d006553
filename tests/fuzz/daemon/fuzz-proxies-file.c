/* fuzz-proxies-file: ROOT/proxies.json, the daemon's proxy profile file
 * (sl_control_parse_profiles, daemonset/control/request.h), as a user or a broken disk may
 * leave it. Invariants (abort on violation): a failure carries a message and leaves no
 * profile; a parsed file holds at most SL_CONTROL_MAX_PROFILES profiles with unique names,
 * http(s) URLs, and reads back to the same profiles from the document the daemon writes. */
#include "cleanup.h"
#include "request.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = sl_xmalloc(size ? size : 1); /* exact size: ASan sees any over-read */
    memcpy(copy, data, size);
    struct sl_control_profiles ps;
    sl_error_t err = NULL;
    int r = sl_control_parse_profiles(copy, size, &ps, &err);
    free(copy);
    if (r < 0) {
        if (!err || ps.n || ps.v)
            abort();
        sl_error_free(&err);
        return 0;
    }
    if (ps.n > SL_CONTROL_MAX_PROFILES)
        abort();
    for (size_t i = 0; i < ps.n; i++) {
        if (sl_control_profiles_find(&ps, ps.v[i].name) != (ssize_t)i)
            abort();
        if (strncmp(ps.v[i].url, "http://", 7) != 0 && strncmp(ps.v[i].url, "https://", 8) != 0)
            abort();
    }
    json_t *j = sl_control_profiles_json(&ps);
    size_t len = 0;
    char *text = json_dumps(j, 0);
    len = strlen(text);
    struct sl_control_profiles back;
    if (sl_control_parse_profiles(text, len, &back, NULL) < 0 || back.n != ps.n)
        abort();
    for (size_t i = 0; i < ps.n; i++) {
        const struct sl_control_profile *a = &ps.v[i], *b = &back.v[i];
        if (strcmp(a->name, b->name) || strcmp(a->url, b->url) || !a->user != !b->user ||
            !a->token != !b->token || (a->user && strcmp(a->user, b->user)) ||
            (a->token && strcmp(a->token, b->token)))
            abort();
    }
    free(text);
    json_decref(j);
    sl_control_profiles_clear(&back);
    sl_control_profiles_clear(&ps);
    return 0;
}
